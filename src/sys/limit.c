/*
 * The effective memory limit: the one number a process here is held to —
 * the tightest cgroup limit on its way to the root, or physical memory when
 * that is smaller or there is none. The report, the monitor's samples and the
 * default budget all take it from here, so they cannot disagree about it.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "sys/sys_file.h"

const char *memfit_limit_kind_name(enum memfit_limit_kind kind)
{
    switch (kind) {
    case MEMFIT_LIMIT_KIND_CGROUP:
        return "cgroup limit";
    case MEMFIT_LIMIT_KIND_MEMORY:
        return "physical memory";
    case MEMFIT_LIMIT_KIND_NONE:
        break;
    }
    return "no known memory limit";
}

void memfit_limit_choose(const struct memfit_cgroup *cgroup, const struct memfit_meminfo *system,
                         struct memfit_limit *out)
{
    uint64_t cg = cgroup ? cgroup->limit_bytes : MEMFIT_SYS_UNKNOWN;
    uint64_t total = system ? system->total_bytes : MEMFIT_SYS_UNKNOWN;
    memset(out, 0, sizeof(*out));
    out->kind = MEMFIT_LIMIT_KIND_NONE;
    out->bytes = MEMFIT_SYS_UNKNOWN;
    /* A cgroup limit equal to MemTotal holds nothing back: name the machine. */
    if (cg != MEMFIT_SYS_UNKNOWN && cg < total) {
        out->kind = MEMFIT_LIMIT_KIND_CGROUP;
        out->bytes = cg;
    } else if (total != MEMFIT_SYS_UNKNOWN) {
        out->kind = MEMFIT_LIMIT_KIND_MEMORY;
        out->bytes = total;
    }
    if (out->kind == MEMFIT_LIMIT_KIND_NONE) {
        mf_sys_copy(out->text, sizeof(out->text), memfit_limit_kind_name(out->kind));
        return;
    }
    char size[32];
    snprintf(out->text, sizeof(out->text), "%s %s", memfit_limit_kind_name(out->kind),
             memfit_format_size(out->bytes, size, sizeof(size)));
}

enum memfit_status memfit_limit_read(const char *root, pid_t pid, struct memfit_limit *out)
{
    if (!out)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_limit_read: out is NULL");
    struct memfit_cgroup cgroup;
    struct memfit_meminfo system;
    enum memfit_status st = memfit_cgroup_read(root, pid, &cgroup);
    if (st == MEMFIT_E_NOT_FOUND)
        return st;
    bool have_cgroup = st == MEMFIT_OK;
    /* An unreadable meminfo leaves the cgroup's limit, or none: not an error. */
    bool have_system = memfit_meminfo_read(root, &system) == MEMFIT_OK;
    if (!have_cgroup || !have_system)
        memfit_clear_error();
    memfit_limit_choose(have_cgroup ? &cgroup : NULL, have_system ? &system : NULL, out);
    return MEMFIT_OK;
}

const char *memfit_scope_name(enum memfit_scope scope)
{
    switch (scope) {
    case MEMFIT_SCOPE_CGROUP:
        return "cgroup";
    case MEMFIT_SCOPE_PROCESS:
        return "process";
    case MEMFIT_SCOPE_MACHINE:
        return "machine";
    }
    return "unknown";
}

void memfit_judge(const struct memfit_cgroup *cgroup, const struct memfit_meminfo *system,
                  const struct memfit_proc_mem *tree, struct memfit_judged *out)
{
    memset(out, 0, sizeof(*out));
    memfit_limit_choose(cgroup, system, &out->limit);
    out->limit_bytes = out->limit.bytes;
    uint64_t total = system ? system->total_bytes : MEMFIT_SYS_UNKNOWN;
    uint64_t avail = system ? system->available_bytes : MEMFIT_SYS_UNKNOWN;
    if (out->limit.kind == MEMFIT_LIMIT_KIND_CGROUP) {
        out->scope = MEMFIT_SCOPE_CGROUP;
        out->working_set_bytes = cgroup->working_set_bytes;
        out->in_use_bytes = cgroup->in_use_bytes;
    } else {
        out->scope = MEMFIT_SCOPE_MACHINE;
        out->working_set_bytes = mf_sys_sub_floor(total, avail);
        out->in_use_bytes = out->working_set_bytes;
        uint64_t rss = tree ? tree->rss_bytes : MEMFIT_SYS_UNKNOWN;
        if (rss != MEMFIT_SYS_UNKNOWN && avail != MEMFIT_SYS_UNKNOWN &&
            rss <= UINT64_MAX - 1 - avail) {
            out->scope = MEMFIT_SCOPE_PROCESS;
            out->in_use_bytes = rss;
            out->limit_bytes = rss + avail;
        }
    }
    out->available_bytes = mf_sys_sub_floor(out->limit_bytes, out->in_use_bytes);
    out->percent = NAN;
    if (out->in_use_bytes != MEMFIT_SYS_UNKNOWN && out->limit_bytes != MEMFIT_SYS_UNKNOWN &&
        out->limit_bytes > 0)
        out->percent = 100.0 * (double)out->in_use_bytes / (double)out->limit_bytes;
}

/*
 * The sampler: one call reads the system, the cgroup of the watched process
 * (or of memfit itself), the watched process tree, PSI and the GPU, and
 * derives the figures the alert levels judge: memory in use against the
 * effective limit (memfit_limit_choose: the cgroup's; without one, a watched
 * tree's RSS against RSS + MemAvailable, else the machine's use against
 * physical memory).
 *
 * Sampling every 100 ms must stay cheap, so two findings are cached: the
 * watched tree's pids (re-listed when processes come or go, and at least
 * every second; listing reads every process on the machine) and the cgroup's
 * location (found again every few seconds, or when reading it fails). PSS
 * comes from smaps_rollup, for which the kernel walks every mapping of the
 * process (slow for a model with gigabytes mapped): it is read once a second
 * and carried between.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "memfit/monitor.h"

#define RELIST_NS    1000000000ull
#define RELOCATE_NS  5000000000ull
#define PSS_EVERY_NS 1000000000ull

struct memfit_sampler {
    char root[PATH_MAX];
    char psi_path[PATH_MAX];
    pid_t pid;
    memfit_gpu *gpu;
    /* the watched tree, as last listed */
    pid_t *pids;
    size_t n_pids;
    uint64_t listed_ns;
    uint64_t listed_hint;
    /* PSS (smaps_rollup makes the kernel walk every mapping): once a second */
    uint64_t pss_ns;
    uint64_t pss_bytes, pss_anon_bytes, pss_file_bytes;
    /* where the cgroup was last found */
    struct memfit_cgroup located;
    bool have_located;
    uint64_t located_ns;
};

struct memfit_sampler_options memfit_sampler_options_default(void)
{
    return (struct memfit_sampler_options){.root = NULL, .pid = 0, .gpu = true};
}

enum memfit_status memfit_sampler_create(const struct memfit_sampler_options *opts,
                                         memfit_sampler **out)
{
    struct memfit_sampler_options defaults = memfit_sampler_options_default();
    if (!opts)
        opts = &defaults;
    const char *root = opts->root ? opts->root : "/";
    memfit_sampler *s = memfit_calloc_in(MEMFIT_ALLOC_MONITOR, 1, sizeof(*s));
    if (!s)
        return MEMFIT_E_NOMEM;
    if ((size_t)snprintf(s->root, sizeof(s->root), "%s", root) >= sizeof(s->root) ||
        (size_t)snprintf(s->psi_path, sizeof(s->psi_path), "%s/proc/pressure/memory", root) >=
            sizeof(s->psi_path)) {
        memfit_free(s);
        return memfit_fail(MEMFIT_E_RANGE, "root path too long: %s", root);
    }
    s->pid = opts->pid;
    if (opts->gpu) {
        enum memfit_status st = memfit_gpu_open(&s->gpu);
        if (st != MEMFIT_OK) {
            memfit_free(s);
            return st;
        }
    }
    *out = s;
    return MEMFIT_OK;
}

static void forget_tree(memfit_sampler *s)
{
    memfit_free(s->pids);
    s->pids = NULL;
    s->n_pids = 0;
}

void memfit_sampler_set_pid(memfit_sampler *s, pid_t pid)
{
    s->pid = pid;
    forget_tree(s);
    s->have_located = false;
    s->pss_ns = 0;
}

void memfit_sampler_destroy(memfit_sampler *s)
{
    if (!s)
        return;
    memfit_gpu_close(s->gpu);
    forget_tree(s);
    memfit_free(s);
}

/* The summary fields of docs/monitor-log.md. Memory in use is measured in
 * the scope of the limit: the cgroup's against its limit; without one, a
 * watched tree's RSS against what it could grow to (its RSS plus what the
 * machine has available), so that a leaking command is judged by its own
 * memory and not by everything else the machine runs; else the machine's
 * (MemTotal - MemAvailable) against physical memory. */
static void derive(struct memfit_sample *out)
{
    struct memfit_judged j;
    memfit_judge(out->have_cgroup ? &out->cgroup : NULL, &out->system,
                 out->have_process ? &out->process : NULL, &j);
    out->limit_source =
        j.limit.kind == MEMFIT_LIMIT_KIND_CGROUP ? MEMFIT_LIMIT_CGROUP : MEMFIT_LIMIT_MEMORY;
    out->scope = j.scope;
    out->working_set_bytes = j.working_set_bytes;
    out->in_use_bytes = j.in_use_bytes;
    out->limit_bytes = j.limit_bytes;
    out->available_bytes = j.available_bytes;
    out->percent = isnan(j.percent) ? 0.0 : j.percent;
}

/* The cgroup of the watched process (or of memfit): located now and then,
 * re-read from its directory in between. */
static bool read_cgroup(memfit_sampler *s, uint64_t now, struct memfit_cgroup *out)
{
    if (s->have_located && now - s->located_ns < RELOCATE_NS &&
        memfit_cgroup_read_dir(s->located.dir,
                               s->located.mount_dir[0] ? s->located.mount_dir : NULL,
                               s->located.memory_version, out) == MEMFIT_OK) {
        out->mode = s->located.mode;
        memcpy(out->path, s->located.path, sizeof(out->path));
        return true;
    }
    enum memfit_status st = memfit_cgroup_read(s->root, s->pid, out);
    if (st != MEMFIT_OK && s->pid)
        st = memfit_cgroup_read(s->root, 0, out); /* the process is gone: memfit's own */
    s->have_located = st == MEMFIT_OK && out->mode != MEMFIT_CGROUP_NONE && out->dir[0];
    if (s->have_located) {
        s->located = *out;
        s->located_ns = now;
    }
    return st == MEMFIT_OK && out->mode != MEMFIT_CGROUP_NONE;
}

/* The watched tree, summed; re-listed when processes came or went. */
static bool read_tree(memfit_sampler *s, uint64_t now, struct memfit_sample *out)
{
    uint64_t hint = memfit_proc_count_hint(s->root);
    if (!s->pids || hint == 0 || hint != s->listed_hint || now - s->listed_ns >= RELIST_NS) {
        forget_tree(s);
        if (memfit_proc_tree_list(s->root, s->pid, &s->pids, &s->n_pids) != MEMFIT_OK)
            return false;
        s->listed_hint = hint;
        s->listed_ns = now;
    }
    bool pss = s->pss_ns == 0 || now - s->pss_ns >= PSS_EVERY_NS;
    struct memfit_proc_mem *p = &out->process;
    if (memfit_proc_sum(s->root, s->pids, s->n_pids, pss ? MEMFIT_PROC_PSS : 0, p, &out->n_procs) !=
        MEMFIT_OK)
        return false;
    if (pss) {
        s->pss_ns = now;
        s->pss_bytes = p->pss_bytes;
        s->pss_anon_bytes = p->pss_anon_bytes;
        s->pss_file_bytes = p->pss_file_bytes;
    } else {
        p->pss_bytes = s->pss_bytes;
        p->pss_anon_bytes = s->pss_anon_bytes;
        p->pss_file_bytes = s->pss_file_bytes;
    }
    return true;
}

enum memfit_status memfit_sampler_read(memfit_sampler *s, struct memfit_sample *out)
{
    memset(out, 0, sizeof(*out));
    out->t_ns = memfit_now_ns();
    out->wall_ns = memfit_wall_ns();
    enum memfit_status st = memfit_meminfo_read(s->root, &out->system);
    if (st != MEMFIT_OK)
        return st;
    out->have_cgroup = read_cgroup(s, out->t_ns, &out->cgroup);
    if (s->pid)
        out->have_process = read_tree(s, out->t_ns, out);
    if (memfit_psi_read(s->psi_path, &out->psi) != MEMFIT_OK)
        out->psi.present = false;
    if (s->gpu && memfit_gpu_read(s->gpu, &out->gpu) == MEMFIT_OK)
        out->have_gpu = out->gpu.available;
    memfit_clear_error();
    derive(out);
    return MEMFIT_OK;
}

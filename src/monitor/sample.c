/*
 * The sampler: one call reads the system, the cgroup of the watched process
 * (or of memfit itself), the watched process tree, PSI and the GPU, and
 * derives the figures the alert levels judge: the working set against the
 * effective limit (the cgroup's, else physical memory).
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "memfit/monitor.h"

struct memfit_sampler {
    char root[PATH_MAX];
    char psi_path[PATH_MAX];
    pid_t pid;
    memfit_gpu *gpu;
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

void memfit_sampler_set_pid(memfit_sampler *s, pid_t pid)
{
    s->pid = pid;
}

void memfit_sampler_destroy(memfit_sampler *s)
{
    if (!s)
        return;
    memfit_gpu_close(s->gpu);
    memfit_free(s);
}

static bool known(uint64_t v)
{
    return v != MEMFIT_SYS_UNKNOWN;
}

/* The summary fields of docs/monitor-log.md. */
static void derive(struct memfit_sample *out)
{
    const struct memfit_cgroup *cg = &out->cgroup;
    const struct memfit_meminfo *m = &out->system;
    out->limit_bytes = MEMFIT_SYS_UNKNOWN;
    out->working_set_bytes = MEMFIT_SYS_UNKNOWN;
    if (out->have_cgroup && known(cg->limit_bytes) && known(cg->working_set_bytes) &&
        (!known(m->total_bytes) || cg->limit_bytes < m->total_bytes)) {
        out->limit_source = MEMFIT_LIMIT_CGROUP;
        out->limit_bytes = cg->limit_bytes;
        out->working_set_bytes = cg->working_set_bytes;
    } else if (known(m->total_bytes) && known(m->available_bytes)) {
        out->limit_source = MEMFIT_LIMIT_MEMORY;
        out->limit_bytes = m->total_bytes;
        out->working_set_bytes =
            m->total_bytes > m->available_bytes ? m->total_bytes - m->available_bytes : 0;
    }
    if (known(out->limit_bytes) && known(out->working_set_bytes) && out->limit_bytes > 0) {
        out->available_bytes = out->working_set_bytes >= out->limit_bytes
                                   ? 0
                                   : out->limit_bytes - out->working_set_bytes;
        out->percent = 100.0 * (double)out->working_set_bytes / (double)out->limit_bytes;
    } else {
        out->available_bytes = MEMFIT_SYS_UNKNOWN;
        out->percent = 0.0;
    }
}

enum memfit_status memfit_sampler_read(memfit_sampler *s, struct memfit_sample *out)
{
    memset(out, 0, sizeof(*out));
    out->t_ns = memfit_now_ns();
    out->wall_ns = memfit_wall_ns();
    enum memfit_status st = memfit_meminfo_read(s->root, &out->system);
    if (st != MEMFIT_OK)
        return st;

    /* The cgroup that constrains the watched process (or memfit itself). A
     * process that is gone falls back to memfit's own cgroup. */
    st = memfit_cgroup_read(s->root, s->pid, &out->cgroup);
    if (st != MEMFIT_OK && s->pid)
        st = memfit_cgroup_read(s->root, 0, &out->cgroup);
    out->have_cgroup = st == MEMFIT_OK && out->cgroup.mode != MEMFIT_CGROUP_NONE;

    if (s->pid) {
        st = memfit_proc_tree_read(s->root, s->pid, &out->process, &out->n_procs);
        out->have_process = st == MEMFIT_OK;
    }
    if (memfit_psi_read(s->psi_path, &out->psi) != MEMFIT_OK)
        out->psi.present = false;
    if (s->gpu && memfit_gpu_read(s->gpu, &out->gpu) == MEMFIT_OK)
        out->have_gpu = out->gpu.available;
    memfit_clear_error();
    derive(out);
    return MEMFIT_OK;
}

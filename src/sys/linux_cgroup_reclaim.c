/*
 * Reclaiming a cgroup's page cache on request (`memfit cleanup --cgroup`):
 * clean file pages are memory the kernel would reclaim anyway under
 * pressure, but until then they count against the cgroup's limit and its
 * usage figure, and a container's orchestrator may act on that. Reclaiming
 * anonymous memory instead would push the processes to swap, so both paths
 * make sure that cannot happen.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "sys/sys_file.h"

static void figures(const struct memfit_cgroup *cg, struct memfit_cgroup_figures *out)
{
    out->usage_bytes = cg->usage_bytes;
    out->in_use_bytes = cg->in_use_bytes;
    out->file_bytes = cg->file_bytes;
    out->anon_bytes = cg->anon_bytes;
    out->swap_bytes = cg->swap_bytes;
}

/* Writes text to dir/name; 0 or an errno value. */
static int write_control(const char *dir, const char *name, const char *text)
{
    char path[MEMFIT_SYS_PATH_MAX];
    if (!mf_sys_path(path, sizeof(path), NULL, "%s/%s", dir, name))
        return ENAMETOOLONG;
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    ssize_t n = write(fd, text, strlen(text));
    int e = n < 0 ? errno : 0;
    close(fd);
    return e;
}

static enum memfit_status control_error(const char *dir, const char *name, int e)
{
    enum memfit_status st = e == ENOENT                 ? MEMFIT_E_NOT_FOUND
                            : e == EACCES || e == EPERM ? MEMFIT_E_PERMISSION
                                                        : MEMFIT_E_IO;
    return memfit_fail(st, "%s/%s: %s", dir, name, strerror(e));
}

/* True when the machine has swap (SwapTotal > 0). */
static bool machine_swaps(void)
{
    struct memfit_meminfo mi;
    return memfit_meminfo_read(NULL, &mi) == MEMFIT_OK &&
           mi.swap_total_bytes != MEMFIT_SYS_UNKNOWN && mi.swap_total_bytes > 0;
}

static enum memfit_status reclaim_v2(const char *dir, const struct memfit_cgroup *cg,
                                     struct memfit_cgroup_reclaim *out)
{
    snprintf(out->method, sizeof(out->method), "memory.reclaim");
    /* Page cache a process maps would only fault back in at once. */
    uint64_t cache = mf_sys_sub_floor(cg->file_bytes, cg->file_mapped_bytes);
    out->asked_bytes = cache;
    if (cache == 0)
        return MEMFIT_OK;
    char text[64];
    snprintf(text, sizeof(text), "%llu swappiness=0", (unsigned long long)cache);
    int e = write_control(dir, "memory.reclaim", text);
    if (e == EINVAL) {
        /* A kernel without the swappiness argument (before 6.12) balances
         * file and anonymous pages itself: safe only where nothing can swap. */
        if (machine_swaps() && cg->swap_limit_bytes != 0)
            return memfit_fail(MEMFIT_E_UNSUPPORTED,
                               "%s: this kernel's memory.reclaim takes no swappiness=0 and the "
                               "cgroup may swap (memory.swap.max is not 0): reclaiming could "
                               "push its processes to swap; not done",
                               dir);
        snprintf(text, sizeof(text), "%llu", (unsigned long long)cache);
        e = write_control(dir, "memory.reclaim", text);
    }
    /* EAGAIN: less than asked could be reclaimed, which is an answer too. */
    return e == 0 || e == EAGAIN ? MEMFIT_OK : control_error(dir, "memory.reclaim", e);
}

static enum memfit_status reclaim_v1(const char *dir, struct memfit_cgroup_reclaim *out)
{
    snprintf(out->method, sizeof(out->method), "memory.force_empty");
    if (machine_swaps()) {
        char path[MEMFIT_SYS_PATH_MAX];
        uint64_t swappiness = 0;
        bool is_max;
        if (!mf_sys_path(path, sizeof(path), NULL, "%s/memory.swappiness", dir) ||
            mf_sys_read_u64(path, &swappiness, &is_max) != 0 || swappiness != 0)
            return memfit_fail(MEMFIT_E_UNSUPPORTED,
                               "%s: the machine has swap and the cgroup's memory.swappiness is "
                               "not 0: memory.force_empty would push its processes' memory to "
                               "swap; not done (echo 0 > %s/memory.swappiness allows it)",
                               dir, dir);
    }
    int e = write_control(dir, "memory.force_empty", "0");
    return e == 0 ? MEMFIT_OK : control_error(dir, "memory.force_empty", e);
}

enum memfit_status memfit_cgroup_reclaim_cache(const char *dir, int version,
                                               struct memfit_cgroup_reclaim *out)
{
    if (!dir || !dir[0] || !out || (version != 1 && version != 2))
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_cgroup_reclaim_cache: bad arguments");
    char probe[MEMFIT_SYS_PATH_MAX];
    const char *own = version == 2 ? "memory.max" : "memory.force_empty";
    if (!mf_sys_path(probe, sizeof(probe), NULL, "%s/%s", dir, own))
        return memfit_fail(MEMFIT_E_RANGE, "%s: path too long", dir);
    if (access(probe, F_OK) != 0)
        return memfit_fail(MEMFIT_E_UNSUPPORTED,
                           "%s: no %s: the root cgroup, or not a memory cgroup (v%d)", dir, own,
                           version);
    struct memfit_cgroup cg;
    enum memfit_status st = memfit_cgroup_read_dir(dir, NULL, version, &cg);
    if (st != MEMFIT_OK)
        return st;
    struct memfit_cgroup_reclaim r = {0};
    figures(&cg, &r.before);
    st = version == 2 ? reclaim_v2(dir, &cg, &r) : reclaim_v1(dir, &r);
    if (st != MEMFIT_OK)
        return st;
    st = memfit_cgroup_read_dir(dir, NULL, version, &cg);
    if (st != MEMFIT_OK)
        return st;
    figures(&cg, &r.after);
    *out = r;
    return MEMFIT_OK;
}

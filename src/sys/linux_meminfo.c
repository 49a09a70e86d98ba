/*
 * The machine's memory from ROOT/proc/meminfo (kB values become bytes).
 * Inside a container these are the host's numbers: the cgroup reader gives
 * the container's own (see linux_cgroup.c).
 */
#include <errno.h>
#include <string.h>

#include "sys/sys_file.h"

enum memfit_status memfit_meminfo_read(const char *root, struct memfit_meminfo *out)
{
    if (!out)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_meminfo_read: out is NULL");
    char path[MEMFIT_SYS_PATH_MAX];
    if (!mf_sys_path(path, sizeof(path), root, "/proc/meminfo"))
        return memfit_fail(MEMFIT_E_RANGE, "%s: root path too long", root);
    char text[MF_SYS_SMALL_FILE];
    int err = mf_sys_read_text(path, text, sizeof(text), NULL);
    if (err && err != E2BIG)
        return memfit_fail(MEMFIT_E_IO, "%s: %s", path, strerror(err));

    struct memfit_meminfo m;
    memset(&m, 0, sizeof(m));
    m.total_bytes = m.available_bytes = m.free_bytes = m.buffers_bytes = MEMFIT_SYS_UNKNOWN;
    m.cached_bytes = m.shmem_bytes = m.swap_total_bytes = m.swap_free_bytes = MEMFIT_SYS_UNKNOWN;
    const struct mf_sys_kv fields[] = {
        {"MemTotal", &m.total_bytes},       {"MemAvailable", &m.available_bytes},
        {"MemFree", &m.free_bytes},         {"Buffers", &m.buffers_bytes},
        {"Cached", &m.cached_bytes},        {"Shmem", &m.shmem_bytes},
        {"SwapTotal", &m.swap_total_bytes}, {"SwapFree", &m.swap_free_bytes},
    };
    const char *bad = NULL;
    if (mf_sys_kv_parse(text, fields, sizeof(fields) / sizeof(fields[0]), &bad) > 0)
        mf_sys_reason_add(m.reason, "meminfo: %s malformed", bad);
    if (m.total_bytes == MEMFIT_SYS_UNKNOWN || m.total_bytes == 0)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: no valid MemTotal line", path);
    if (m.available_bytes == MEMFIT_SYS_UNKNOWN && m.free_bytes != MEMFIT_SYS_UNKNOWN &&
        m.buffers_bytes != MEMFIT_SYS_UNKNOWN && m.cached_bytes != MEMFIT_SYS_UNKNOWN) {
        /* Kernels before 3.14 have no MemAvailable; this is the old estimate. */
        m.available_bytes = m.free_bytes + m.buffers_bytes + m.cached_bytes;
        mf_sys_reason_add(m.reason, "MemAvailable absent: estimated as MemFree+Buffers+Cached");
    }
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        if (*fields[i].dst == MEMFIT_SYS_UNKNOWN && fields[i].dst != &m.available_bytes)
            mf_sys_reason_add(m.reason, "meminfo: no %s", fields[i].key);
    *out = m;
    return MEMFIT_OK;
}

/*
 * The GPU levels of `memfit monitor` (see monitor_gpu.h). GPU levels run no
 * --on-* actions: those answer the memory levels of the watched container.
 */
#include <stdio.h>

#include "monitor_gpu.h"

enum memfit_status monitor_gpu_judge(const struct memfit_gpu_thresholds *t,
                                     enum memfit_level levels[MEMFIT_GPU_MAX_DEVICES],
                                     struct memfit_sample *s, memfit_logfile *log, bool quiet,
                                     bool live_line)
{
    if (!s->have_gpu)
        return MEMFIT_OK;
    enum memfit_status st = MEMFIT_OK;
    for (unsigned i = 0; i < s->gpu.n_devices && i < MEMFIT_GPU_MAX_DEVICES; i++) {
        const struct memfit_gpu_device *d = &s->gpu.devices[i];
        enum memfit_level prev = levels[i];
        levels[i] = memfit_gpu_level_next(t, prev, d->used_bytes, d->total_bytes);
        s->gpu_level[i] = levels[i];
        if (levels[i] == prev)
            continue;
        if (log && st == MEMFIT_OK)
            st = memfit_logfile_write_gpu_level(log, s, i, prev, levels[i]);
        if (quiet)
            continue;
        char used[32], total[32];
        if (live_line)
            fputs("\r\033[K", stderr);
        fprintf(stderr, "memfit monitor: GPU %u %s -> %s at %.1f%% (%s of %s)\n", d->index,
                memfit_level_name(prev), memfit_level_name(levels[i]), memfit_gpu_device_percent(d),
                memfit_format_size(d->used_bytes, used, sizeof(used)),
                memfit_format_size(d->total_bytes, total, sizeof(total)));
    }
    return st;
}

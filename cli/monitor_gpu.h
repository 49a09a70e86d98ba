/*
 * The GPU levels of `memfit monitor`: each GPU judged on every sample with
 * memfit_gpu_level_next, its changes logged (`gpu_level` records) and told
 * on stderr. Kept apart from cmd_monitor.c, whose loop calls it once a tick.
 */
#ifndef MEMFIT_CLI_MONITOR_GPU_H
#define MEMFIT_CLI_MONITOR_GPU_H

#include <stdbool.h>

#include "memfit/memfit.h"

/*
 * Judges each GPU of `s` from its level in levels[] (per s->gpu.devices[i],
 * updated), writes the new levels into s->gpu_level[] for the sample record,
 * and for each change writes a `gpu_level` record to `log` (when not NULL)
 * and, unless `quiet`, a line on stderr (clearing the live line first when
 * `live_line`). Returns the log's error, else MEMFIT_OK.
 */
enum memfit_status monitor_gpu_judge(const struct memfit_gpu_thresholds *t,
                                     enum memfit_level levels[MEMFIT_GPU_MAX_DEVICES],
                                     struct memfit_sample *s, memfit_logfile *log, bool quiet,
                                     bool live_line);

#endif

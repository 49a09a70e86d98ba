/*
 * memfit monitor: sampling memory over time, alert levels with hysteresis
 * and actions, the JSON-lines log (docs/monitor-log.md), and the analysis
 * and SVG charts made from such logs.
 */
#ifndef MEMFIT_MONITOR_H
#define MEMFIT_MONITOR_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "memfit/core.h"
#include "memfit/sys.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ==== Sampling and alert levels ========================================= */

/* (section owned by the sampler; see src/monitor/sample.c, alert.c) */

/* ==== end of sampling section ========================================== */

/*
 * Spacer: the two sections are edited separately; keep this comment between
 * them so their changes never touch the same lines.
 */

/* ==== Analysis and charts =============================================== */

/* (section owned by the analysis; see src/monitor/analyze.c, plot.c) */

/* ==== end of analysis section ========================================== */

#ifdef __cplusplus
}
#endif

#endif

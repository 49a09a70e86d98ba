/*
 * Alert levels with hysteresis: ok < warning < critical < danger, judged on
 * the working set against the effective limit. Entering a level is
 * immediate; leaving it needs the value back by a margin, so a measurement
 * hovering at a threshold does not flap between two levels. GPUs get the
 * same treatment on the percent of their own memory.
 */
#include <math.h>

#include "memfit/monitor.h"

const char *memfit_level_name(enum memfit_level level)
{
    switch (level) {
    case MEMFIT_LEVEL_OK:
        return "ok";
    case MEMFIT_LEVEL_WARNING:
        return "warning";
    case MEMFIT_LEVEL_CRITICAL:
        return "critical";
    case MEMFIT_LEVEL_DANGER:
        return "danger";
    }
    return "unknown";
}

struct memfit_alert_thresholds memfit_alert_thresholds_default(void)
{
    return (struct memfit_alert_thresholds){
        .warning_percent = 80.0,
        .critical_percent = 90.0,
        .danger_available_bytes = 0,
        .hysteresis_percent = 2.0,
    };
}

enum memfit_status memfit_alert_thresholds_check(const struct memfit_alert_thresholds *t)
{
    if (!(t->warning_percent >= 0 && t->warning_percent <= 100) ||
        !(t->critical_percent >= 0 && t->critical_percent <= 100))
        return memfit_fail(MEMFIT_E_RANGE, "thresholds must lie between 0 and 100 percent");
    if (t->warning_percent >= t->critical_percent)
        return memfit_fail(MEMFIT_E_RANGE,
                           "the warning threshold (%g%%) must be below the critical one (%g%%)",
                           t->warning_percent, t->critical_percent);
    if (!(t->hysteresis_percent >= 0 && t->hysteresis_percent < 50))
        return memfit_fail(MEMFIT_E_RANGE, "hysteresis %g%% out of range [0, 50)",
                           t->hysteresis_percent);
    return MEMFIT_OK;
}

uint64_t memfit_alert_danger_bytes(const struct memfit_alert_thresholds *t, uint64_t limit_bytes)
{
    return memfit_danger_headroom_bytes(t->danger_available_bytes, t->critical_percent,
                                        limit_bytes);
}

/* The level a measurement reaches, with every threshold moved by `margin`
 * percent of the limit toward safety (margin 0: the plain thresholds). */
static enum memfit_level level_at(const struct memfit_alert_thresholds *t, double percent,
                                  double available, double limit, double margin)
{
    double danger = (double)memfit_alert_danger_bytes(t, (uint64_t)limit);
    if (available < danger + margin / 100.0 * limit)
        return MEMFIT_LEVEL_DANGER;
    if (percent >= t->critical_percent - margin)
        return MEMFIT_LEVEL_CRITICAL;
    if (percent >= t->warning_percent - margin)
        return MEMFIT_LEVEL_WARNING;
    return MEMFIT_LEVEL_OK;
}

enum memfit_level memfit_alert_next(const struct memfit_alert_thresholds *t,
                                    enum memfit_level current, uint64_t working_set_bytes,
                                    uint64_t limit_bytes)
{
    if (limit_bytes == 0 || limit_bytes == MEMFIT_SYS_UNKNOWN ||
        working_set_bytes == MEMFIT_SYS_UNKNOWN)
        return current;
    double limit = (double)limit_bytes;
    double ws = (double)working_set_bytes;
    double percent = 100.0 * ws / limit;
    double available = ws >= limit ? 0.0 : limit - ws;
    enum memfit_level up = level_at(t, percent, available, limit, 0.0);
    if (up >= current)
        return up;
    /* Going down: only as far as the level reached with the margin allows. */
    enum memfit_level down = level_at(t, percent, available, limit, t->hysteresis_percent);
    return down < current ? down : current;
}

enum memfit_level memfit_gpu_level_next(const struct memfit_gpu_thresholds *t,
                                        enum memfit_level current, uint64_t used_bytes,
                                        uint64_t total_bytes)
{
    struct memfit_gpu_device d = {.used_bytes = used_bytes, .total_bytes = total_bytes};
    double percent = memfit_gpu_device_percent(&d);
    int up = memfit_gpu_level_at(t, percent);
    if (up == MEMFIT_GPU_LEVEL_UNKNOWN || up >= (int)current)
        return up == MEMFIT_GPU_LEVEL_UNKNOWN ? current : (enum memfit_level)up;
    /* Going down: as far as the reading plus the margin allows. */
    int down = memfit_gpu_level_at(t, percent + t->hysteresis_percent);
    return down < (int)current ? (enum memfit_level)down : current;
}

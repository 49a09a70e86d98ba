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

/* (section owned by the sampler; see src/monitor/sample.c, alert.c, logfile.c) */

/* ---- Alert levels -------------------------------------------------------- */

enum memfit_level {
    MEMFIT_LEVEL_OK = 0,
    MEMFIT_LEVEL_WARNING = 1,
    MEMFIT_LEVEL_CRITICAL = 2,
    MEMFIT_LEVEL_DANGER = 3,
};

/* "ok", "warning", "critical", "danger". */
MEMFIT_API const char *memfit_level_name(enum memfit_level level);

/*
 * Thresholds on the working set against the effective limit. A level is
 * entered as soon as its threshold is crossed, and left only once the value
 * is back `hysteresis_percent` (of the limit) on the safe side, so a value
 * hovering at a threshold does not flap.
 */
struct memfit_alert_thresholds {
    double warning_percent;          /* default 80 */
    double critical_percent;         /* default 90 */
    uint64_t danger_available_bytes; /* danger below this headroom; 0 = automatic */
    double hysteresis_percent;       /* default 2 */
};

MEMFIT_API struct memfit_alert_thresholds memfit_alert_thresholds_default(void);

/*
 * The danger headroom in force for `limit_bytes`: the configured value, or
 * automatically min(50 MB, half the room above the critical threshold), so
 * that danger always lies above critical even for small limits.
 */
MEMFIT_API uint64_t memfit_alert_danger_bytes(const struct memfit_alert_thresholds *t,
                                              uint64_t limit_bytes);

/* E_RANGE naming the problem when warning >= critical, or values are out of 0..100. */
MEMFIT_API enum memfit_status
memfit_alert_thresholds_check(const struct memfit_alert_thresholds *t);

/*
 * The next level, from the current one and a new measurement (working set
 * and effective limit, in bytes). Pure function: no state besides `current`.
 */
MEMFIT_API enum memfit_level memfit_alert_next(const struct memfit_alert_thresholds *t,
                                               enum memfit_level current,
                                               uint64_t working_set_bytes, uint64_t limit_bytes);

/* ---- Samples ------------------------------------------------------------- */

enum memfit_limit_source {
    MEMFIT_LIMIT_MEMORY = 0, /* physical memory: no cgroup limit */
    MEMFIT_LIMIT_CGROUP = 1,
};

/* One reading of everything the monitor watches. */
struct memfit_sample {
    uint64_t t_ns;    /* monotonic */
    uint64_t wall_ns; /* since the epoch */
    struct memfit_meminfo system;
    bool have_cgroup;
    struct memfit_cgroup cgroup;
    bool have_process;
    struct memfit_proc_mem process; /* the watched tree, summed */
    unsigned n_procs;
    struct memfit_psi psi; /* system PSI (/proc/pressure/memory) */
    bool have_gpu;
    struct memfit_gpu_info gpu;
    /* Derived summary (docs/monitor-log.md): */
    enum memfit_limit_source limit_source;
    uint64_t limit_bytes;
    uint64_t working_set_bytes;
    uint64_t available_bytes; /* limit - working set, floored at 0 */
    double percent;           /* 100 * working set / limit */
};

struct memfit_sampler_options {
    const char *root; /* "/" (NULL) or a fixture tree */
    pid_t pid;        /* process tree to watch; 0 = none */
    bool gpu;         /* read NVML (default true) */
};

MEMFIT_API struct memfit_sampler_options memfit_sampler_options_default(void);

/* Reads the machine; keeps the NVML session and paths between samples. Not thread-safe. */
typedef struct memfit_sampler memfit_sampler;

MEMFIT_API enum memfit_status memfit_sampler_create(const struct memfit_sampler_options *opts,
                                                    memfit_sampler **out);

/*
 * Takes one sample. A watched process that has gone leaves have_process
 * false (not an error). E_IO only when /proc/meminfo cannot be read.
 */
MEMFIT_API enum memfit_status memfit_sampler_read(memfit_sampler *s, struct memfit_sample *out);

/* Changes the watched pid (0 = none). */
MEMFIT_API void memfit_sampler_set_pid(memfit_sampler *s, pid_t pid);

MEMFIT_API void memfit_sampler_destroy(memfit_sampler *s);

/* ---- The JSON-lines log (docs/monitor-log.md) ---------------------------- */

/* Appends records to a log file, one line each, flushed per line. Not thread-safe. */
typedef struct memfit_logfile memfit_logfile;

/* Opens `path` for appending ("-" = standard output). */
MEMFIT_API enum memfit_status memfit_logfile_open(const char *path, memfit_logfile **out);

/* The run's first record. `command` is a NULL-terminated argv or NULL. */
struct memfit_log_start {
    pid_t pid;
    char *const *command;
    double interval_s;
    struct memfit_alert_thresholds thresholds;
};

MEMFIT_API enum memfit_status memfit_logfile_write_start(memfit_logfile *log,
                                                         const struct memfit_log_start *start,
                                                         const struct memfit_sample *first);

MEMFIT_API enum memfit_status memfit_logfile_write_sample(memfit_logfile *log,
                                                          const struct memfit_sample *s,
                                                          enum memfit_level level);

MEMFIT_API enum memfit_status memfit_logfile_write_level(memfit_logfile *log,
                                                         const struct memfit_sample *s,
                                                         enum memfit_level from,
                                                         enum memfit_level to);

MEMFIT_API enum memfit_status memfit_logfile_write_action(memfit_logfile *log, uint64_t t_ns,
                                                          enum memfit_level level,
                                                          const char *command, int exit_code);

MEMFIT_API enum memfit_status memfit_logfile_write_oom(memfit_logfile *log, uint64_t t_ns,
                                                       uint64_t oom_kill_count);

struct memfit_log_exit {
    pid_t pid;
    int exit_code; /* -1 when killed by a signal */
    int signal;    /* 0 when it exited */
    bool oom_killed;
    uint64_t peak_rss_bytes;
    uint64_t peak_working_set_bytes;
    uint64_t samples;
};

MEMFIT_API enum memfit_status memfit_logfile_write_exit(memfit_logfile *log, uint64_t t_ns,
                                                        const struct memfit_log_exit *e);

/* Closes the file (flushing it); accepts NULL. */
MEMFIT_API void memfit_logfile_close(memfit_logfile *log);

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

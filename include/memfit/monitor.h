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
    uint64_t working_set_bytes; /* the kubelet's: cgroup usage - inactive_file, or the machine's */
    /* What levels judge: the cgroup's in_use_bytes (mapped file pages in use
     * count, memfit/sys.h), or MemTotal - MemAvailable without a cgroup limit */
    uint64_t in_use_bytes;
    uint64_t available_bytes; /* limit - in use, floored at 0 */
    double percent;           /* 100 * in use / limit */
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

/*
 * Reading a monitor log (docs/monitor-log.md) back: per-run statistics,
 * alert-level times, OOM events, the wrapped command's exit, a least-squares
 * growth trend with a leak verdict (rules in docs/analyze.md), a text or
 * JSON report, and an SVG chart. Malformed lines are skipped and counted,
 * never fatal.
 *
 * Sizes are bytes. Slopes are bytes per second in the structs; reports show
 * MB/hour with MB = 10^6 bytes. A value that is not known is NaN (doubles)
 * or 0 with a flag (see each field).
 */

/* The result of reading a log. Not thread-safe; read-only after it is made. */
typedef struct memfit_analysis memfit_analysis;

/* Verdicts of the growth trend, weakest evidence first. */
enum memfit_leak_verdict {
    MEMFIT_LEAK_INSUFFICIENT_DATA = 0, /* fitted span or sample count too small */
    MEMFIT_LEAK_NONE = 1,
    MEMFIT_LEAK_POSSIBLE = 2,
    MEMFIT_LEAK_LIKELY = 3, /* reported as "leak" */
};

/* "insufficient_data", "no_leak", "possible_leak", "leak" (the JSON ids); never NULL. */
MEMFIT_API const char *memfit_leak_verdict_name(enum memfit_leak_verdict verdict);

/* Alert levels as the analysis counts them: the four of the log, then samples
 * whose `level` was missing or unknown. Index of memfit_run_summary.level_seconds. */
#define MEMFIT_ANALYSIS_N_LEVELS 5

/* "ok", "warning", "critical", "danger", "unknown"; NULL outside [0, N_LEVELS). */
MEMFIT_API const char *memfit_analysis_level_name(unsigned level);

/* What the monitor judged (its log's `scope`, docs/monitor-log.md). */
enum memfit_analysis_scope {
    MEMFIT_ANALYSIS_SCOPE_UNKNOWN = 0, /* neither scope nor limit_source in the log */
    MEMFIT_ANALYSIS_SCOPE_CGROUP = 1,  /* the cgroup's memory in use against its limit */
    MEMFIT_ANALYSIS_SCOPE_PROCESS = 2, /* no cgroup limit: the watched process tree's RSS */
    MEMFIT_ANALYSIS_SCOPE_MACHINE = 3, /* the machine's memory in use */
};

/* "unknown", "cgroup", "process", "machine" (the JSON ids); never NULL. */
MEMFIT_API const char *memfit_analysis_scope_name(enum memfit_analysis_scope scope);

/*
 * Parses an RFC 3339 time ("2026-11-23T19:40:00.123Z", "...+02:00") into
 * seconds since the epoch. E_INVALID naming the text when it is not one.
 */
MEMFIT_API enum memfit_status memfit_analysis_parse_time(const char *text, double *out_unix_s);

/* How many malformed lines, pid restarts, ... are listed one by one. */
#define MEMFIT_ANALYSIS_MAX_LISTED 5

struct memfit_analyze_options {
    double warmup_percent;          /* share of the sampled span left out of the fit: 10 */
    double leak_min_span_s;         /* fitted span needed for any verdict: 10 */
    uint64_t leak_min_samples;      /* fitted samples needed for any verdict: 10 */
    double leak_min_r2;             /* R^2 for "leak": 0.8 */
    double possible_leak_min_r2;    /* R^2 for "possible leak": 0.5 */
    double leak_min_growth_percent; /* growth over the fit, % of its mean: 5 */
    uint64_t leak_min_growth_bytes; /* and at least this many bytes: 1000000 */
    double gap_factor;              /* a step > factor x interval is a gap: 3 */
    unsigned run;                   /* 0: the last run with samples; N: run N (1-based) */
    bool all_runs;                  /* reports show every run, not only the selected one */
    /* Periodic series (docs/analyze.md): 0 detects the period of each fitted
     * series; > 0 takes this period in seconds; < 0 never fits per period. */
    double period_s;
    uint64_t leak_min_periods; /* per-period minima needed to judge on them: 4 */
    /* The window: records of each run with since_s <= t <= until_s are read,
     * the others skipped (defaults 0 and INFINITY). The wall-clock bounds
     * (seconds since the epoch, NaN: none) are placed in each run by its
     * start record's `time` (else its first sample's `time` - t); a run
     * whose time is unknown has no records in a wall-clock window. */
    double since_s, until_s;
    double since_unix_s, until_unix_s;
};

/* The defaults above. */
MEMFIT_API struct memfit_analyze_options memfit_analyze_options_default(void);

/* Minimum, mean, percentiles (linear interpolation between closest ranks)
 * and maximum of a series. n == 0: no value was known (the rest is NaN). */
struct memfit_value_stats {
    uint64_t n;
    double min, mean, p50, p95, max;
};

/* Ordinary least squares of a series against t, after the warm-up. */
struct memfit_trend {
    enum memfit_leak_verdict verdict;
    uint64_t n_points;           /* samples in the fit */
    double fit_from_s, fit_to_s; /* first and last t in the fit (NaN: no point) */
    double slope_bytes_per_s;    /* NaN when fewer than 2 points or no time span */
    double intercept_bytes;      /* the fitted value at t = 0 */
    double r2;                   /* NaN when the series is flat or the slope unknown */
    double growth_bytes;         /* slope x fitted span */
    double mean_bytes;           /* mean of the fitted values */
    double limit_eta_s;          /* rising trend: seconds from the last sample to the
                                    limit at this slope (0: already there); else NaN */
    /* The periodic case. With per_period the fit above (slope, intercept,
     * r2, growth, mean) is of the lowest value of each full period window
     * in the fitted span, and the verdict rests on it; n_points stays the
     * samples in the span. */
    double period_s;            /* detected or given period; NaN: none */
    bool period_given;          /* from the options, not detected */
    double period_strength;     /* autocorrelation of the detrended series at the
                                   period (0..1); NaN when given */
    uint64_t n_periods;         /* full period windows with samples in the span */
    bool per_period;            /* the fit is of the per-period minima (n_periods >=
                                   leak_min_periods) */
    double period_growth_bytes; /* slope x period_s; NaN unless per_period */
    double amplitude_bytes;     /* mean highest - lowest value of the windows; NaN */
};

struct memfit_pid_restart {
    double t_s; /* t of the first sample with the new pid */
    int64_t from_pid, to_pid;
};

/*
 * One run of the log (from a `start` record to the next, or the samples
 * before the first `start`). String fields are "" when unknown and stay
 * valid until memfit_analysis_close().
 */
struct memfit_run_summary {
    unsigned number;        /* 1-based position in the log */
    uint64_t start_line;    /* line of its `start` record; 0: the run has none */
    const char *start_time; /* wall clock of the start (RFC 3339) */
    const char *hostname;
    const char *command;      /* the wrapped command, arguments joined by spaces */
    const char *limit_source; /* "cgroup", "memory" or "" */
    int64_t pid;              /* watched pid of the start record; -1: none */
    double interval_s;        /* nominal: the start's interval_s, else the median step; NaN */
    double duration_s;        /* last t of the run minus its first (0 with a start) */
    uint64_t n_samples;
    double first_sample_s, last_sample_s; /* NaN without samples */
    uint64_t n_gaps;                      /* steps longer than gap_factor x interval_s */
    double gap_total_s;                   /* their summed length */
    struct memfit_value_stats working_set, rss;
    uint64_t limit_bytes; /* the last known limit; 0: unknown */
    double peak_percent;  /* 100 x max(working set / limit) over the samples; NaN */
    double warning_percent, critical_percent; /* thresholds of the start record; NaN */
    uint64_t danger_available_bytes;          /* 0: unknown */
    /* Time per level: each sample counts the time to the next one, except
     * across a gap (that time is in gap_total_s); the last sample counts 0. */
    double level_seconds[MEMFIT_ANALYSIS_N_LEVELS];
    uint64_t n_level_changes; /* level differing from the previous sample's */
    uint64_t n_oom_events;    /* `oom` records; 1 if none but the exit says oom_killed */
    double first_oom_s;       /* NaN: none */
    bool has_exit;            /* an `exit` record was seen */
    bool exit_code_known;
    int exit_code;
    int exit_signal; /* 0: not killed by a signal */
    bool oom_killed;
    uint64_t n_pid_restarts; /* process.pid changing between samples */
    struct memfit_pid_restart pid_restarts[MEMFIT_ANALYSIS_MAX_LISTED]; /* the first ones */
    struct memfit_trend working_set_trend, rss_trend;
    /* What the verdict judges: what the monitor judged (its `scope`), or
     * for logs without one, inferred from limit_source and the process. */
    enum memfit_analysis_scope scope;
    bool scope_inferred;               /* the log had no `scope` */
    bool judged_rss;                   /* the verdict is rss_trend's (else working_set_trend's) */
    struct memfit_trend judged_trend;  /* a copy of the trend the verdict rests on */
    double window_from_s, window_to_s; /* the window in this run's t (0, INFINITY: none) */
};

/* What was read, over the whole log. */
struct memfit_log_info {
    const char *name; /* the path or stream name given */
    uint64_t n_lines;
    uint64_t n_records;   /* lines understood (blank lines are neither) */
    uint64_t n_malformed; /* lines skipped: not JSON, not an object, bad or missing fields */
    uint64_t malformed_lines[MEMFIT_ANALYSIS_MAX_LISTED]; /* the first ones (1-based) */
    const char *first_malformed_reason; /* "line 4: working_set_bytes is not a number"; "" */
    uint64_t n_unknown_types;           /* objects with a type this reader does not know */
    uint64_t n_samples;                 /* over all runs (in the window) */
    unsigned n_runs;
    unsigned selected_run;     /* 0-based index of the run reports and charts use */
    uint64_t n_outside_window; /* samples skipped as outside the window */
};

/*
 * Reads the log at `path` entirely (closing it before returning) and
 * analyzes it with `opts` (NULL: defaults). On success *out owns the
 * result; free it with memfit_analysis_close(). A log without samples is
 * not an error (check memfit_log_info.n_samples). Errors: E_NOT_FOUND,
 * E_PERMISSION or E_IO naming the path when it cannot be read; E_RANGE for
 * bad options or a run number beyond the log's runs; E_NOMEM.
 */
MEMFIT_API enum memfit_status memfit_analysis_open(const char *path,
                                                   const struct memfit_analyze_options *opts,
                                                   memfit_analysis **out);

/* The same from an open stream, read to its end (the caller closes it);
 * `name` is used in messages and reports. */
MEMFIT_API enum memfit_status memfit_analysis_open_stream(FILE *stream, const char *name,
                                                          const struct memfit_analyze_options *opts,
                                                          memfit_analysis **out);

/* Frees the analysis; accepts NULL. */
MEMFIT_API void memfit_analysis_close(memfit_analysis *analysis);

/* Fills *out with what was read (pointers valid until close). */
MEMFIT_API void memfit_analysis_get_info(const memfit_analysis *analysis,
                                         struct memfit_log_info *out);

/* Fills *out with run `index` (0-based); E_RANGE when there is no such run. */
MEMFIT_API enum memfit_status memfit_analysis_get_run(const memfit_analysis *analysis,
                                                      unsigned index,
                                                      struct memfit_run_summary *out);

/*
 * Writes the human report (the selected run, or every run with
 * opts.all_runs) to `out`. E_IO when writing fails.
 */
MEMFIT_API enum memfit_status memfit_analysis_write_report(const memfit_analysis *analysis,
                                                           FILE *out);

/* Writes the report as one JSON document (schema in docs/analyze.md). E_IO, E_NOMEM. */
MEMFIT_API enum memfit_status memfit_analysis_write_json(const memfit_analysis *analysis,
                                                         FILE *out);

struct memfit_plot_options {
    const char *title; /* NULL: "Memory of <command>" (or of the log's name) */
    unsigned width;    /* pixels, 320 to 10000: 1000 */
    unsigned height;   /* pixels, 240 to 10000: 500 */
};

/* The defaults above. */
MEMFIT_API struct memfit_plot_options memfit_plot_options_default(void);

/*
 * Draws the selected run as an SVG document: working set, RSS, limit,
 * threshold bands, level changes, OOM events, the trend over the fitted
 * span, axes and legend. On success *out_svg (NUL-terminated, *out_len
 * bytes) is owned by the caller: free it with memfit_free(). E_NOT_FOUND
 * when the run has no samples, E_RANGE for a bad size, E_NOMEM.
 */
MEMFIT_API enum memfit_status memfit_plot_svg(const memfit_analysis *analysis,
                                              const struct memfit_plot_options *opts,
                                              char **out_svg, size_t *out_len);

/*
 * memfit_plot_svg() written to `path` through a temporary file in the same
 * folder renamed at the end, so `path` is never left half-written. E_IO,
 * E_PERMISSION or E_NOSPACE naming the path, and the errors above.
 */
MEMFIT_API enum memfit_status memfit_plot_write_svg(const memfit_analysis *analysis,
                                                    const struct memfit_plot_options *opts,
                                                    const char *path);

/* ==== end of analysis section ========================================== */

#ifdef __cplusplus
}
#endif

#endif

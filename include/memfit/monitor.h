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

/*
 * The next level of one GPU (memfit/sys.h's GPU thresholds), from its
 * current one and a new reading of its memory: entered as soon as a
 * threshold is reached, left once the percent is hysteresis_percent below
 * it. Unknown or zero figures keep the current level. Pure function.
 */
MEMFIT_API enum memfit_level memfit_gpu_level_next(const struct memfit_gpu_thresholds *t,
                                                   enum memfit_level current, uint64_t used_bytes,
                                                   uint64_t total_bytes);

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
    enum memfit_scope scope; /* what in_use_bytes, limit_bytes and percent are about */
    uint64_t limit_bytes;
    uint64_t working_set_bytes; /* the kubelet's: cgroup usage - inactive_file, or the machine's */
    /* What levels judge: the cgroup's in_use_bytes (mapped file pages in use
     * count, memfit/sys.h); without a cgroup limit the watched tree's RSS
     * (limit: that RSS + MemAvailable), or else MemTotal - MemAvailable */
    uint64_t in_use_bytes;
    uint64_t available_bytes; /* limit - in use, floored at 0 */
    double percent;           /* 100 * in use / limit */
    /* Each GPU's level, per gpu.devices[i], as judged by the caller with
     * memfit_gpu_level_next (the sampler leaves them ok); the log writes them. */
    enum memfit_level gpu_level[MEMFIT_GPU_MAX_DEVICES];
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

/* A `gpu_level` record: device gpu.devices[device] of `s` changed level. */
MEMFIT_API enum memfit_status
memfit_logfile_write_gpu_level(memfit_logfile *log, const struct memfit_sample *s, unsigned device,
                               enum memfit_level from, enum memfit_level to);

MEMFIT_API enum memfit_status memfit_logfile_write_action(memfit_logfile *log, uint64_t t_ns,
                                                          enum memfit_level level,
                                                          const char *command, int exit_code);

/* A signal sent to the watched process on a level (`repeat`: again while
 * the level persists, not on entering it). */
struct memfit_log_signal {
    enum memfit_level level;
    pid_t pid;
    int signal;
    bool repeat;
    const char *error; /* why kill() failed; NULL when it was sent */
};

MEMFIT_API enum memfit_status memfit_logfile_write_signal(memfit_logfile *log, uint64_t t_ns,
                                                          const struct memfit_log_signal *sig);

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

/* ---- The pressure channel (docs/channel.md) ------------------------------ */

/*
 * `step_bytes` is the largest trough-to-peak rise of memory in use over the
 * recent samples: the last MEMFIT_CHANNEL_WINDOW_S seconds or the last
 * MEMFIT_CHANNEL_WINDOW_MIN samples, whichever is more samples (at most
 * MEMFIT_CHANNEL_WINDOW_MAX). Rises below MEMFIT_CHANNEL_NOISE_BYTES are
 * noise: the step is then 0 (not measured).
 */
#define MEMFIT_CHANNEL_WINDOW_S     10.0
#define MEMFIT_CHANNEL_WINDOW_MIN   64
#define MEMFIT_CHANNEL_WINDOW_MAX   4096
#define MEMFIT_CHANNEL_NOISE_BYTES  (1024u * 1024u)
#define MEMFIT_CHANNEL_FACTOR_MIN   0.125
#define MEMFIT_CHANNEL_FACTOR_MAX   2.0
#define MEMFIT_CHANNEL_FACTOR_ALERT 0.5 /* the most at warning and above */

/* Samples in the step window for a sampling interval (see above). */
MEMFIT_API size_t memfit_channel_window(double interval_s);

/* The largest rise from a value to a later one in `in_use_bytes[0..n)`
 * (oldest first), or 0 when below the noise floor. Pure. */
MEMFIT_API uint64_t memfit_channel_step_bytes(const uint64_t *in_use_bytes, size_t n);

/* Bytes left below the warning threshold (negative above it). Pure. */
MEMFIT_API int64_t memfit_channel_headroom_bytes(const struct memfit_alert_thresholds *t,
                                                 uint64_t in_use_bytes, uint64_t limit_bytes);

/*
 * What to multiply a batch size by (docs/channel.md): with a measured step,
 * (step + headroom) / step bounded to [FACTOR_MIN, FACTOR_MAX], and at most
 * FACTOR_ALERT at warning and above; without one (step 0), 1 at ok, 0.5 at
 * warning, 0.25 at critical, 0.125 at danger. Pure.
 */
MEMFIT_API double memfit_channel_batch_factor(enum memfit_level level, uint64_t step_bytes,
                                              int64_t headroom_bytes);

/* One state of the channel: the fields of state.json. Sizes unknown to the
 * sampler are MEMFIT_SYS_UNKNOWN (written as null). */
struct memfit_channel_state {
    uint64_t seq;     /* 1, 2, ... */
    uint64_t wall_ns; /* the sample's wall clock */
    double interval_s;
    pid_t monitor_pid;
    pid_t pid; /* the watched process; 0: none (null) */
    enum memfit_scope scope;
    enum memfit_level level;
    uint64_t level_since_wall_ns;
    double percent;
    uint64_t in_use_bytes, limit_bytes, available_bytes;
    int64_t headroom_bytes;
    uint64_t step_bytes;
    double batch_factor;
    /* The GPUs as the sample read them, each with its level (hysteresis in
     * memfit_gpu_level_next); n_gpus 0: none read ("gpu" left out). */
    unsigned n_gpus;
    struct memfit_channel_gpu {
        unsigned index;
        uint64_t used_bytes, total_bytes;
        double percent;
        enum memfit_level level;
    } gpus[MEMFIT_GPU_MAX_DEVICES];
};

/*
 * Formats `state` as state.json's line (one JSON object and a newline) into
 * buf; returns its length, or 0 when it does not fit in `cap` bytes. Pure.
 */
MEMFIT_API size_t memfit_channel_format(const struct memfit_channel_state *state, char *buf,
                                        size_t cap);

/* Writes state.json in a channel directory after every sample. Not thread-safe. */
typedef struct memfit_channel memfit_channel;

struct memfit_channel_options {
    /* The channel directory. NULL: a new private one (mode 0700) named
     * memfit-channel-XXXXXX under $TMPDIR (else /tmp), removed with everything
     * in it on close. A given directory is made (0700) when missing and then
     * removed on close too; one that existed is left, less state.json. */
    const char *dir;
    double interval_s;                         /* the sampling interval, for the step window */
    struct memfit_alert_thresholds thresholds; /* for the headroom */
};

MEMFIT_API struct memfit_channel_options memfit_channel_options_default(void);

/* Makes or opens the directory. E_IO or E_PERMISSION naming the path, E_RANGE
 * for a path too long, E_NOMEM. */
MEMFIT_API enum memfit_status memfit_channel_open(const struct memfit_channel_options *opts,
                                                  memfit_channel **out);

/* The directory and the absolute path of state.json; valid until close. */
MEMFIT_API const char *memfit_channel_dir(const memfit_channel *ch);
MEMFIT_API const char *memfit_channel_state_path(const memfit_channel *ch);

/*
 * Adds a sample to the step window, derives headroom, step and batch factor,
 * and replaces state.json atomically (a temporary file renamed over it).
 * `pid` is the watched process (0: none), `level` the level after hysteresis,
 * entered at `level_since_wall_ns`. Fills *out (may be NULL) with what was
 * written. E_IO/E_NOSPACE naming the file when writing fails (the previous
 * state stays in place).
 */
MEMFIT_API enum memfit_status memfit_channel_update(memfit_channel *ch,
                                                    const struct memfit_sample *s, pid_t pid,
                                                    enum memfit_level level,
                                                    uint64_t level_since_wall_ns,
                                                    struct memfit_channel_state *out);

/* Removes what the channel made (see memfit_channel_options.dir) and frees it;
 * accepts NULL. */
MEMFIT_API void memfit_channel_close(memfit_channel *ch);

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

/* What a chart is written as. */
enum memfit_plot_format {
    MEMFIT_PLOT_FORMAT_AUTO = 0, /* from the path: PNG for a name ending in .png, else SVG */
    MEMFIT_PLOT_FORMAT_SVG = 1,
    MEMFIT_PLOT_FORMAT_PNG = 2,
};

struct memfit_plot_options {
    const char *title;              /* NULL: "Memory of <command>" (or of the log's name) */
    unsigned width;                 /* pixels, 320 to 10000: 1000 */
    unsigned height;                /* pixels, 240 to 10000: 500 */
    enum memfit_plot_format format; /* for memfit_plot_write(): AUTO */
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
 * The same chart painted into pixels: *out_rgb (width x height x 3 bytes,
 * row-major RGB, owned by the caller: memfit_free()). Text is a built-in
 * 5x7 bitmap font. Errors as memfit_plot_svg().
 */
MEMFIT_API enum memfit_status memfit_plot_rgb(const memfit_analysis *analysis,
                                              const struct memfit_plot_options *opts,
                                              uint8_t **out_rgb);

/* memfit_plot_rgb() encoded as a PNG in memory (*out_png owned by the
 * caller: memfit_free()). Errors as memfit_plot_rgb(), E_IO from libpng. */
MEMFIT_API enum memfit_status memfit_plot_png(const memfit_analysis *analysis,
                                              const struct memfit_plot_options *opts,
                                              uint8_t **out_png, size_t *out_len);

/* "svg" or "png" (any case) as a format; E_RANGE naming the text otherwise. */
MEMFIT_API enum memfit_status memfit_plot_format_parse(const char *name,
                                                       enum memfit_plot_format *out);

/* The format a path asks for: PNG when it ends in ".png" (any case), else SVG. */
MEMFIT_API enum memfit_plot_format memfit_plot_format_of_path(const char *path);

/*
 * The chart written to `path` in opts->format (AUTO: from the path's
 * extension) through a temporary file in the same folder renamed at the
 * end, so `path` is never left half-written and a failure leaves no file
 * behind. E_IO, E_PERMISSION or E_NOSPACE naming the path, E_RANGE for an
 * unknown format, and the errors of memfit_plot_svg()/memfit_plot_png().
 */
MEMFIT_API enum memfit_status memfit_plot_write(const memfit_analysis *analysis,
                                                const struct memfit_plot_options *opts,
                                                const char *path);

/* memfit_plot_write() as SVG whatever opts->format and the path say. */
MEMFIT_API enum memfit_status memfit_plot_write_svg(const memfit_analysis *analysis,
                                                    const struct memfit_plot_options *opts,
                                                    const char *path);

/* What one redraw found. */
struct memfit_plot_redraw_info {
    uint64_t n_samples;   /* in the selected run; 0: nothing was drawn yet */
    bool written;         /* the chart was (re)written */
    bool ended;           /* the selected run has its `exit` record */
    double last_sample_s; /* t of its last sample; NaN without samples */
};

/*
 * One step of a live chart: reads the monitor log at `log_path` again,
 * analyzes it with `analyze` (NULL: defaults) and rewrites the chart at
 * `path` with memfit_plot_write(). A log without samples yet is not an
 * error: nothing is written and info.n_samples is 0. `out` (may be NULL)
 * is filled on success. The whole log is read each time: about 0.35 s of
 * CPU for a day of 1 s samples (86,400 lines, 15 MB), nearly all of it
 * parsing JSON, drawing included; call it every several seconds, not in a
 * tight loop. Errors of memfit_analysis_open() and
 * memfit_plot_write().
 */
MEMFIT_API enum memfit_status memfit_plot_redraw(const char *log_path,
                                                 const struct memfit_analyze_options *analyze,
                                                 const struct memfit_plot_options *opts,
                                                 const char *path,
                                                 struct memfit_plot_redraw_info *out);

/* ==== end of analysis section ========================================== */

/*
 * Spacer: the sections are edited separately; keep this comment between
 * them so their changes never touch the same lines.
 */

/* ==== Asking a process to clean up (docs/channel.md) ==================== */

/* A process's answer to a cleanup request (its cleanup.done). */
struct memfit_cleanup_answer {
    char id[64];               /* the request's id, echoed */
    uint64_t rss_before_bytes; /* as the process measured itself; MEMFIT_SYS_UNKNOWN if left out */
    uint64_t rss_after_bytes;
    uint64_t gpu_freed_bytes;
    char actions[160]; /* what it did, comma-separated: "gc,malloc_trim" */
};

/*
 * Finds the channel directory of process `pid` into out: the directory of
 * MEMFIT_PRESSURE_FILE in ROOT/proc/PID/environ when that exists, else
 * ${XDG_RUNTIME_DIR:-/tmp}/memfit-UID/pid-PID (XDG_RUNTIME_DIR from the
 * process's environment, then /tmp; UID the process's owner) when that is a
 * directory owned by the process's user. E_NOT_FOUND "no process with pid N"
 * or naming the places looked at; E_PERMISSION when its environment cannot
 * be read; E_RANGE when out is too small.
 */
MEMFIT_API enum memfit_status memfit_channel_find(const char *root, pid_t pid, char *out,
                                                  size_t size);

/*
 * Writes cleanup.request (addressed to `pid`, with a fresh id) atomically
 * into `channel_dir`, then waits up to `timeout_ns` for a cleanup.done
 * with the same id and reads it into *out. E_TIMEOUT when no answer came
 * (the request is then withdrawn), E_NOT_FOUND when the process exited
 * meanwhile, E_FORMAT for an answer that is not the documented JSON, and
 * the I/O errors of writing the request (naming the path).
 */
MEMFIT_API enum memfit_status memfit_cleanup_request(const char *channel_dir, pid_t pid,
                                                     uint64_t timeout_ns,
                                                     struct memfit_cleanup_answer *out);

/* ==== end of cleanup request section ==================================== */

#ifdef __cplusplus
}
#endif

#endif

/*
 * Internal side of the log analysis: the layout of memfit_analysis and the
 * sample series of the selected run, which the chart (plot.c) draws from so
 * that the statistics exist only once, in analyze.c.
 */
#ifndef MF_MONITOR_ANALYSIS_H
#define MF_MONITOR_ANALYSIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memfit/monitor.h"

/* One `sample` record, as far as the analysis uses it. */
struct mf_sample {
    double t_s;
    double working_set_bytes;
    double rss_bytes;   /* NaN: null or absent */
    double limit_bytes; /* NaN: null or absent */
    int64_t pid;        /* process.pid; -1: absent */
    uint8_t level;      /* index into memfit_analysis_level_name() */
    bool gap_before;    /* the step from the previous sample is a gap */
};

/* A run being read or already summarized. */
struct mf_run {
    struct memfit_run_summary summary; /* its strings point at the fields below */
    char *start_time, *hostname, *command, *limit_source, *scope;
    double last_t_s;  /* last t of any record of the run (in the window) */
    double unix_t0_s; /* wall clock at t = 0 (seconds since the epoch); NaN: unknown */
    bool has_process; /* a sample named a process */
    uint64_t n_oom_records;
};

/* The samples and OOM times of one run (kept for the selected run only). */
struct mf_series {
    struct mf_sample *samples;
    size_t n_samples, cap_samples;
    double *oom_t_s;
    size_t n_oom, cap_oom;
};

struct memfit_analysis {
    struct memfit_analyze_options opts;
    struct memfit_log_info info;
    char *name;
    char *first_malformed_reason;
    struct mf_run *runs;
    size_t n_runs, cap_runs;
    struct mf_series series; /* of runs[info.selected_run] */
};

/* The series of the selected run (empty when the log had no run). */
static inline const struct mf_series *mf_analysis_series(const memfit_analysis *a)
{
    return &a->series;
}

/* The selected run's summary, or NULL when the log had no run. */
static inline const struct memfit_run_summary *mf_analysis_selected(const memfit_analysis *a)
{
    return a->n_runs ? &a->runs[a->info.selected_run].summary : NULL;
}

/* What the verdict judges, for people: "process tree of pid 1234 (RSS), no
 * cgroup limit", "memory in use of the cgroup", ... (report and chart). */
void mf_format_judged(const struct memfit_run_summary *s, char *buf, size_t size);

/* "1 h 3 min", "4 min 12 s", "12.3 s": a duration for people. */
void mf_format_duration(double seconds, char *buf, size_t size);

/* "~31 s", "~3 min", "~2.5 h", "~4.0 days": a rough time to come. */
void mf_format_eta(double seconds, char *buf, size_t size);

#endif

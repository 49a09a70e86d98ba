/*
 * The reports of an analysis: the compact human text of `memfit analyze`
 * and the JSON document of `memfit analyze --json` (schema version 1 in
 * docs/analyze.md; fields are only ever added). Both print what
 * analyze.c computed and compute nothing themselves.
 */
#include <errno.h>
#include <math.h>
#include <string.h>

#include <jansson.h>

#include "monitor/analysis.h"

#define MB 1e6 /* slopes are reported in MB/h with MB = 10^6 bytes */

/* The words of the human report. */
static const char *verdict_words(enum memfit_leak_verdict verdict)
{
    switch (verdict) {
    case MEMFIT_LEAK_INSUFFICIENT_DATA:
        return "insufficient data";
    case MEMFIT_LEAK_NONE:
        return "no leak";
    case MEMFIT_LEAK_POSSIBLE:
        return "possible leak";
    case MEMFIT_LEAK_LIKELY:
        return "leak";
    }
    return "unknown";
}

/* ---- The human report --------------------------------------------------- */

static const char *size_text(double bytes, char *buf, size_t size)
{
    if (isnan(bytes))
        return "n/a";
    return memfit_format_size(bytes >= 1.8e19 ? UINT64_MAX : (uint64_t)llround(bytes), buf, size);
}

static void report_stats_row(FILE *out, const char *label, const struct memfit_value_stats *v)
{
    if (!v->n) {
        fprintf(out, "  %-13s n/a\n", label);
        return;
    }
    char b[5][32];
    fprintf(out, "  %-13s %-11s%-11s%-11s%-11s%s\n", label, size_text(v->min, b[0], 32),
            size_text(v->mean, b[1], 32), size_text(v->p50, b[2], 32), size_text(v->p95, b[3], 32),
            size_text(v->max, b[4], 32));
}

static void report_trend(FILE *out, const char *label, const struct memfit_trend *t)
{
    fprintf(out, "  %-13s ", label);
    if (t->n_points == 0) {
        fprintf(out, "n/a\n");
        return;
    }
    if (isnan(t->slope_bytes_per_s)) {
        fprintf(out, "%s (%llu sample%s)\n", verdict_words(t->verdict),
                (unsigned long long)t->n_points, t->n_points == 1 ? "" : "s");
        return;
    }
    fprintf(out, "%+.1f MB/h", t->slope_bytes_per_s * 3600.0 / MB);
    if (t->per_period) {
        char g[32], p[48];
        double growth = fabs(t->period_growth_bytes);
        mf_format_duration(t->period_s, p, sizeof(p));
        fprintf(out, " of the per-period lows (%c%s per %s period, %llu periods)",
                t->period_growth_bytes < 0.0 ? '-' : '+', size_text(growth, g, sizeof(g)), p,
                (unsigned long long)t->n_periods);
    }
    fprintf(out, ", R\xC2\xB2 ");
    if (isnan(t->r2))
        fprintf(out, "n/a (flat)");
    else
        fprintf(out, "%.3f", t->r2);
    fprintf(out, ": %s", verdict_words(t->verdict));
    if (!isnan(t->limit_eta_s)) {
        char eta[48];
        mf_format_eta(t->limit_eta_s, eta, sizeof(eta));
        if (t->limit_eta_s <= 0.0)
            fprintf(out, "; the trend has reached the limit");
        else
            fprintf(out, "; at this rate the limit is reached in %s", eta);
    }
    fputc('\n', out);
}

/* The period of the judged series, found or given, and what came of it. */
static void report_period(FILE *out, const struct memfit_trend *t)
{
    if (isnan(t->period_s))
        return;
    char p[48], amp[32];
    mf_format_duration(t->period_s, p, sizeof(p));
    fprintf(out, "  %-13s %s", "period", p);
    if (t->period_given)
        fprintf(out, " (given)");
    else
        fprintf(out, " (detected, autocorrelation %.2f)", t->period_strength);
    fprintf(out, ", %llu full period%s in the fit", (unsigned long long)t->n_periods,
            t->n_periods == 1 ? "" : "s");
    if (!isnan(t->amplitude_bytes))
        fprintf(out, ", swing %s", size_text(t->amplitude_bytes, amp, sizeof(amp)));
    if (!t->per_period)
        fprintf(out, "; too few periods: the whole series is fitted");
    fputc('\n', out);
}

static void report_levels(FILE *out, const struct memfit_run_summary *s)
{
    double total = 0.0;
    for (unsigned i = 0; i < MEMFIT_ANALYSIS_N_LEVELS; i++)
        total += s->level_seconds[i];
    fprintf(out, "  %-13s ", "levels");
    if (total <= 0.0) {
        fprintf(out, "n/a\n");
        return;
    }
    fprintf(out, "%llu change%s", (unsigned long long)s->n_level_changes,
            s->n_level_changes == 1 ? "" : "s");
    /* Two levels a line keeps the line short. */
    unsigned shown = 0;
    for (unsigned i = 0; i < MEMFIT_ANALYSIS_N_LEVELS; i++) {
        if (s->level_seconds[i] <= 0.0 && i != 0)
            continue;
        char d[48];
        mf_format_duration(s->level_seconds[i], d, sizeof(d));
        fprintf(out, "%s%s %.1f %% (%s)", shown % 2 ? ", " : "\n                ",
                memfit_analysis_level_name(i), 100.0 * s->level_seconds[i] / total, d);
        shown++;
    }
    fputc('\n', out);
}

static void report_run(FILE *out, const memfit_analysis *a, const struct memfit_run_summary *s)
{
    char b1[48], b2[48];
    fprintf(out, "run %u of %zu", s->number, a->n_runs);
    if (s->start_line)
        fprintf(out, " (line %llu)", (unsigned long long)s->start_line);
    else
        fprintf(out, " (no start record)");
    if (s->start_time[0])
        fprintf(out, ", started %s", s->start_time);
    if (s->hostname[0])
        fprintf(out, " on %s", s->hostname);
    fputc('\n', out);
    if (s->command[0] || s->pid >= 0) {
        fprintf(out, "  %-13s %s", "command", s->command[0] ? s->command : "-");
        if (s->pid >= 0)
            fprintf(out, " (pid %lld)", (long long)s->pid);
        fputc('\n', out);
    }
    mf_format_duration(s->duration_s, b1, sizeof(b1));
    fprintf(out, "  %-13s %s, %llu sample%s", "duration", b1, (unsigned long long)s->n_samples,
            s->n_samples == 1 ? "" : "s");
    if (!isnan(s->interval_s)) {
        mf_format_duration(s->interval_s, b2, sizeof(b2));
        fprintf(out, " every %s", b2);
    }
    if (s->n_gaps) {
        mf_format_duration(s->gap_total_s, b2, sizeof(b2));
        fprintf(out, ", %llu gap%s (%s)", (unsigned long long)s->n_gaps, s->n_gaps == 1 ? "" : "s",
                b2);
    } else {
        fprintf(out, ", no gaps");
    }
    fputc('\n', out);
    if (s->window_from_s > 0.0 || s->window_to_s < INFINITY) {
        mf_format_duration(s->window_from_s, b1, sizeof(b1));
        mf_format_duration(s->window_to_s, b2, sizeof(b2));
        fprintf(out, "  %-13s t = %s .. %s (--since/--until)\n", "window", b1,
                isfinite(s->window_to_s) ? b2 : "the end");
    }
    fprintf(out, "  %-13s ", "limit");
    if (s->limit_bytes) {
        fprintf(out, "%s", memfit_format_size(s->limit_bytes, b1, sizeof(b1)));
        if (s->limit_source[0])
            fprintf(out, " (%s)", s->limit_source);
        if (!isnan(s->peak_percent))
            fprintf(out, ", peak %.1f %%", s->peak_percent);
        fputc('\n', out);
    } else {
        fprintf(out, "unknown\n");
    }
    if (s->n_samples) {
        fprintf(out, "  %-13s %-11s%-11s%-11s%-11s%s\n", "", "min", "mean", "p50", "p95", "max");
        report_stats_row(out, "in use", &s->working_set);
        report_stats_row(out, "RSS", &s->rss);
    }
    report_levels(out, s);
    fprintf(out, "  %-13s ", "OOM events");
    if (s->n_oom_events) {
        mf_format_duration(s->first_oom_s, b1, sizeof(b1));
        fprintf(out, "%llu, first at t = %s\n", (unsigned long long)s->n_oom_events, b1);
    } else {
        fprintf(out, "none\n");
    }
    if (s->has_exit) {
        fprintf(out, "  %-13s ", "exit");
        if (s->exit_signal)
            fprintf(out, "killed by signal %d", s->exit_signal);
        else if (s->exit_code_known)
            fprintf(out, "code %d", s->exit_code);
        else
            fprintf(out, "status unknown");
        fprintf(out, "%s\n", s->oom_killed ? " (OOM-killed)" : "");
    }
    if (s->n_pid_restarts) {
        fprintf(out, "  %-13s %llu:", "pid restarts", (unsigned long long)s->n_pid_restarts);
        for (uint64_t i = 0; i < s->n_pid_restarts && i < MEMFIT_ANALYSIS_MAX_LISTED; i++) {
            const struct memfit_pid_restart *p = &s->pid_restarts[i];
            mf_format_duration(p->t_s, b1, sizeof(b1));
            fprintf(out, "%s %lld -> %lld at t = %s", i ? "," : "", (long long)p->from_pid,
                    (long long)p->to_pid, b1);
        }
        fprintf(out, "%s\n", s->n_pid_restarts > MEMFIT_ANALYSIS_MAX_LISTED ? ", ..." : "");
    }
    const struct memfit_trend *t = &s->working_set_trend;
    if (t->n_points) {
        mf_format_duration(t->fit_from_s, b1, sizeof(b1));
        mf_format_duration(t->fit_to_s, b2, sizeof(b2));
        fprintf(out,
                "  %-13s fitted t = %s .. %s, %llu sample%s (after a %g %% warm-up; MB = 10^6 "
                "bytes)\n",
                "trend", b1, b2, (unsigned long long)t->n_points, t->n_points == 1 ? "" : "s",
                a->opts.warmup_percent);
    }
    report_trend(out, "in use", &s->working_set_trend);
    report_trend(out, "RSS", &s->rss_trend);
    report_period(out, s->judged_rss ? &s->rss_trend : &s->working_set_trend);
    if (s->working_set_trend.n_points || s->rss_trend.n_points) {
        char judged[160];
        mf_format_judged(s, judged, sizeof(judged));
        fprintf(out, "  %-13s %s: %s%s\n", "verdict", verdict_words(s->judged_trend.verdict),
                judged,
                s->scope_inferred && s->scope != MEMFIT_ANALYSIS_SCOPE_UNKNOWN
                    ? " (inferred: the log names no scope)"
                    : "");
    }
}

enum memfit_status memfit_analysis_write_report(const memfit_analysis *a, FILE *out)
{
    const struct memfit_log_info *info = &a->info;
    fprintf(out, "%s: %llu line%s, %u run%s, %llu sample%s\n", a->name,
            (unsigned long long)info->n_lines, info->n_lines == 1 ? "" : "s", info->n_runs,
            info->n_runs == 1 ? "" : "s", (unsigned long long)info->n_samples,
            info->n_samples == 1 ? "" : "s");
    if (info->n_malformed || info->n_unknown_types) {
        fprintf(out, "skipped: %llu malformed line%s", (unsigned long long)info->n_malformed,
                info->n_malformed == 1 ? "" : "s");
        for (uint64_t i = 0; i < info->n_malformed && i < MEMFIT_ANALYSIS_MAX_LISTED; i++)
            fprintf(out, "%s%llu", i ? ", " : " (line ",
                    (unsigned long long)info->malformed_lines[i]);
        if (info->n_malformed)
            fprintf(out, "%s)", info->n_malformed > MEMFIT_ANALYSIS_MAX_LISTED ? ", ..." : "");
        fprintf(out, ", %llu of unknown type\n", (unsigned long long)info->n_unknown_types);
        if (a->first_malformed_reason)
            fprintf(out, "first: %s\n", a->first_malformed_reason);
    }
    for (size_t i = 0; i < a->n_runs; i++) {
        if (!a->opts.all_runs && i != info->selected_run)
            continue;
        fputc('\n', out);
        report_run(out, a, &a->runs[i].summary);
    }
    if (fflush(out) != 0 || ferror(out))
        return memfit_fail(MEMFIT_E_IO, "writing the report: %s", strerror(errno));
    return MEMFIT_OK;
}

/* ---- The JSON report ---------------------------------------------------- */

/* Any failed allocation below leaves a NULL that json_object_set_new()
 * refuses; the first refusal is remembered and the document dropped. */
struct jbuild {
    bool failed;
};

static void jset(struct jbuild *jb, json_t *obj, const char *key, json_t *value)
{
    if (json_object_set_new(obj, key, value) != 0)
        jb->failed = true;
}

static json_t *jreal(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static json_t *jbytes(double v)
{
    if (!isfinite(v))
        return json_null();
    if (v >= 0.0 && v < 9.2e18)
        return json_integer((json_int_t)llround(v));
    return json_real(v);
}

static json_t *jstr_or_null(const char *s)
{
    return s[0] ? json_string(s) : json_null();
}

static json_t *json_stats(struct jbuild *jb, const struct memfit_value_stats *v)
{
    if (!v->n)
        return json_null();
    json_t *o = json_object();
    jset(jb, o, "min", jbytes(v->min));
    jset(jb, o, "mean", jbytes(v->mean));
    jset(jb, o, "p50", jbytes(v->p50));
    jset(jb, o, "p95", jbytes(v->p95));
    jset(jb, o, "max", jbytes(v->max));
    return o;
}

static json_t *json_trend(struct jbuild *jb, const struct memfit_trend *t)
{
    json_t *o = json_object();
    jset(jb, o, "verdict", json_string(memfit_leak_verdict_name(t->verdict)));
    jset(jb, o, "points", json_integer((json_int_t)t->n_points));
    jset(jb, o, "fit_from_s", jreal(t->fit_from_s));
    jset(jb, o, "fit_to_s", jreal(t->fit_to_s));
    jset(jb, o, "slope_bytes_per_s", jreal(t->slope_bytes_per_s));
    jset(jb, o, "slope_mb_per_hour", jreal(t->slope_bytes_per_s * 3600.0 / MB));
    jset(jb, o, "r2", jreal(t->r2));
    jset(jb, o, "growth_bytes", jbytes(t->growth_bytes));
    jset(jb, o, "mean_bytes", jbytes(t->mean_bytes));
    jset(jb, o, "limit_eta_s", jreal(t->limit_eta_s));
    jset(jb, o, "basis", json_string(t->per_period ? "period_minima" : "samples"));
    json_t *p = json_null();
    if (!isnan(t->period_s)) {
        p = json_object();
        jset(jb, p, "period_s", json_real(t->period_s));
        jset(jb, p, "given", json_boolean(t->period_given));
        jset(jb, p, "strength", jreal(t->period_strength));
        jset(jb, p, "periods", json_integer((json_int_t)t->n_periods));
        jset(jb, p, "growth_per_period_bytes", jreal(t->period_growth_bytes));
        jset(jb, p, "amplitude_bytes", jbytes(t->amplitude_bytes));
    }
    jset(jb, o, "period", p);
    return o;
}

static json_t *json_run(struct jbuild *jb, const struct memfit_run_summary *s)
{
    json_t *o = json_object();
    jset(jb, o, "run", json_integer(s->number));
    jset(jb, o, "start_line",
         s->start_line ? json_integer((json_int_t)s->start_line) : json_null());
    jset(jb, o, "start_time", jstr_or_null(s->start_time));
    jset(jb, o, "hostname", jstr_or_null(s->hostname));
    jset(jb, o, "command", jstr_or_null(s->command));
    jset(jb, o, "pid", s->pid >= 0 ? json_integer(s->pid) : json_null());
    jset(jb, o, "interval_s", jreal(s->interval_s));
    jset(jb, o, "duration_s", jreal(s->duration_s));
    jset(jb, o, "samples", json_integer((json_int_t)s->n_samples));
    json_t *gaps = json_object();
    jset(jb, gaps, "count", json_integer((json_int_t)s->n_gaps));
    jset(jb, gaps, "total_s", json_real(s->gap_total_s));
    jset(jb, o, "gaps", gaps);
    jset(jb, o, "working_set_bytes", json_stats(jb, &s->working_set));
    jset(jb, o, "rss_bytes", json_stats(jb, &s->rss));
    jset(jb, o, "limit_bytes", s->limit_bytes ? jbytes((double)s->limit_bytes) : json_null());
    jset(jb, o, "limit_source", jstr_or_null(s->limit_source));
    jset(jb, o, "peak_percent", jreal(s->peak_percent));
    json_t *levels = json_object();
    for (unsigned i = 0; i < MEMFIT_ANALYSIS_N_LEVELS; i++)
        jset(jb, levels, memfit_analysis_level_name(i), json_real(s->level_seconds[i]));
    jset(jb, o, "level_seconds", levels);
    jset(jb, o, "level_changes", json_integer((json_int_t)s->n_level_changes));
    jset(jb, o, "oom_events", json_integer((json_int_t)s->n_oom_events));
    jset(jb, o, "first_oom_s", jreal(s->first_oom_s));
    json_t *ex = json_null();
    if (s->has_exit) {
        ex = json_object();
        jset(jb, ex, "exit_code", s->exit_code_known ? json_integer(s->exit_code) : json_null());
        jset(jb, ex, "signal", s->exit_signal ? json_integer(s->exit_signal) : json_null());
        jset(jb, ex, "oom_killed", json_boolean(s->oom_killed));
    }
    jset(jb, o, "exit", ex);
    json_t *pr = json_object();
    jset(jb, pr, "count", json_integer((json_int_t)s->n_pid_restarts));
    json_t *events = json_array();
    for (uint64_t i = 0; i < s->n_pid_restarts && i < MEMFIT_ANALYSIS_MAX_LISTED; i++) {
        json_t *e = json_object();
        jset(jb, e, "t", json_real(s->pid_restarts[i].t_s));
        jset(jb, e, "from", json_integer(s->pid_restarts[i].from_pid));
        jset(jb, e, "to", json_integer(s->pid_restarts[i].to_pid));
        if (json_array_append_new(events, e) != 0)
            jb->failed = true;
    }
    jset(jb, pr, "events", events);
    jset(jb, o, "pid_restarts", pr);
    json_t *trend = json_object();
    jset(jb, trend, "working_set", json_trend(jb, &s->working_set_trend));
    jset(jb, trend, "rss", json_trend(jb, &s->rss_trend));
    jset(jb, o, "trend", trend);
    char judged[160];
    mf_format_judged(s, judged, sizeof(judged));
    json_t *v = json_object();
    jset(jb, v, "verdict", json_string(memfit_leak_verdict_name(s->judged_trend.verdict)));
    jset(jb, v, "scope", json_string(memfit_analysis_scope_name(s->scope)));
    jset(jb, v, "scope_inferred", json_boolean(s->scope_inferred));
    jset(jb, v, "series", json_string(s->judged_rss ? "rss" : "working_set"));
    jset(jb, v, "text", json_string(judged));
    jset(jb, o, "judged", v);
    json_t *w = json_null();
    if (s->window_from_s > 0.0 || s->window_to_s < INFINITY) {
        w = json_object();
        jset(jb, w, "since_s", jreal(s->window_from_s));
        jset(jb, w, "until_s", jreal(s->window_to_s));
    }
    jset(jb, o, "window", w);
    return o;
}

enum memfit_status memfit_analysis_write_json(const memfit_analysis *a, FILE *out)
{
    struct jbuild jb = {false};
    const struct memfit_log_info *info = &a->info;
    json_t *root = json_object();
    jset(&jb, root, "memfit_analysis", json_integer(1));
    jset(&jb, root, "file", json_string(a->name));
    jset(&jb, root, "lines", json_integer((json_int_t)info->n_lines));
    jset(&jb, root, "records", json_integer((json_int_t)info->n_records));
    jset(&jb, root, "malformed_lines", json_integer((json_int_t)info->n_malformed));
    json_t *bad = json_array();
    for (uint64_t i = 0; i < info->n_malformed && i < MEMFIT_ANALYSIS_MAX_LISTED; i++)
        if (json_array_append_new(bad, json_integer((json_int_t)info->malformed_lines[i])) != 0)
            jb.failed = true;
    jset(&jb, root, "malformed_line_numbers", bad);
    jset(&jb, root, "first_malformed_reason",
         a->first_malformed_reason ? json_string(a->first_malformed_reason) : json_null());
    jset(&jb, root, "unknown_type_lines", json_integer((json_int_t)info->n_unknown_types));
    jset(&jb, root, "samples", json_integer((json_int_t)info->n_samples));
    jset(&jb, root, "samples_outside_window", json_integer((json_int_t)info->n_outside_window));
    jset(&jb, root, "runs_found", json_integer(info->n_runs));
    jset(&jb, root, "selected_run", a->n_runs ? json_integer(info->selected_run + 1) : json_null());
    jset(&jb, root, "warmup_percent", json_real(a->opts.warmup_percent));
    json_t *runs = json_array();
    for (size_t i = 0; i < a->n_runs; i++) {
        if (!a->opts.all_runs && i != info->selected_run)
            continue;
        if (json_array_append_new(runs, json_run(&jb, &a->runs[i].summary)) != 0)
            jb.failed = true;
    }
    jset(&jb, root, "runs", runs);
    enum memfit_status st = MEMFIT_OK;
    if (jb.failed || !root)
        st = memfit_fail(MEMFIT_E_NOMEM, "building the JSON report: out of memory");
    else if (json_dumpf(root, out, JSON_INDENT(2) | JSON_REAL_PRECISION(10)) != 0 ||
             fputc('\n', out) == EOF || fflush(out) != 0)
        st = memfit_fail(MEMFIT_E_IO, "writing the JSON report: %s", strerror(errno));
    json_decref(root);
    return st;
}

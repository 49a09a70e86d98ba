/*
 * `memfit analyze`: reads a monitor log (docs/monitor-log.md) line by line
 * with jansson, skips and counts what it cannot use, and sums each run up:
 * statistics of the working set and RSS, time per alert level, gaps, OOM
 * events, the command's exit, pid restarts, and an ordinary least-squares
 * trend with a leak verdict. The exact rules are in docs/analyze.md; the
 * numbers here are the only implementation of them (report.c prints them,
 * plot.c draws them).
 *
 * Memory: only the selected run's samples are kept (at most two runs' at a
 * time while reading), so a long log with many runs stays cheap.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/alloc.h"
#include "monitor/analysis.h"

/* A line longer than this is not a monitor record: skipped as malformed. */
#define LINE_MAX_BYTES (1u << 20)
/* Sizes at or above 2^64 bytes and times beyond ~300 years are not
 * measurements: such a line is malformed (and charts keep sane scales). */
#define MAX_BYTES 1.8e19
#define MAX_T_S   1e10

static const char *const level_names[MEMFIT_ANALYSIS_N_LEVELS] = {"ok", "warning", "critical",
                                                                  "danger", "unknown"};
enum { LEVEL_UNKNOWN = MEMFIT_ANALYSIS_N_LEVELS - 1 };

const char *memfit_analysis_level_name(unsigned level)
{
    return level < MEMFIT_ANALYSIS_N_LEVELS ? level_names[level] : NULL;
}

const char *memfit_leak_verdict_name(enum memfit_leak_verdict verdict)
{
    switch (verdict) {
    case MEMFIT_LEAK_INSUFFICIENT_DATA:
        return "insufficient_data";
    case MEMFIT_LEAK_NONE:
        return "no_leak";
    case MEMFIT_LEAK_POSSIBLE:
        return "possible_leak";
    case MEMFIT_LEAK_LIKELY:
        return "leak";
    }
    return "unknown";
}

const char *memfit_analysis_scope_name(enum memfit_analysis_scope scope)
{
    switch (scope) {
    case MEMFIT_ANALYSIS_SCOPE_UNKNOWN:
        break;
    case MEMFIT_ANALYSIS_SCOPE_CGROUP:
        return "cgroup";
    case MEMFIT_ANALYSIS_SCOPE_PROCESS:
        return "process";
    case MEMFIT_ANALYSIS_SCOPE_MACHINE:
        return "machine";
    }
    return "unknown";
}

/* Reads `width` digits at *p into *out and moves past them. */
static bool read_digits(const char **p, int width, int *out)
{
    int v = 0;
    for (int i = 0; i < width; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return false;
        v = v * 10 + (c - '0');
    }
    *p += width;
    *out = v;
    return true;
}

/* RFC 3339 to seconds since the epoch; false when `text` is not one. */
static bool parse_rfc3339(const char *text, double *out_unix_s)
{
    const char *p = text;
    int year, mon, day, hour, min, sec;
    bool ok = read_digits(&p, 4, &year) && *p++ == '-' && read_digits(&p, 2, &mon) && *p++ == '-' &&
              read_digits(&p, 2, &day) && (*p == 'T' || *p == 't' || *p == ' ');
    if (ok)
        p++;
    ok = ok && read_digits(&p, 2, &hour) && *p++ == ':' && read_digits(&p, 2, &min) &&
         *p++ == ':' && read_digits(&p, 2, &sec);
    double frac = 0.0;
    if (ok && *p == '.') {
        double scale = 0.1;
        p++;
        ok = *p >= '0' && *p <= '9';
        for (; *p >= '0' && *p <= '9'; p++, scale /= 10.0)
            frac += (*p - '0') * scale;
    }
    int offset_min = 0;
    if (ok && (*p == 'Z' || *p == 'z')) {
        p++;
    } else if (ok && (*p == '+' || *p == '-')) {
        int sign = *p++ == '-' ? -1 : 1, oh = 0, om = 0;
        ok =
            read_digits(&p, 2, &oh) && *p++ == ':' && read_digits(&p, 2, &om) && oh < 24 && om < 60;
        offset_min = sign * (oh * 60 + om);
    } else {
        ok = false;
    }
    ok = ok && *p == '\0' && mon >= 1 && mon <= 12 && day >= 1 && day <= 31 && hour < 24 &&
         min < 60 && sec <= 60;
    if (!ok)
        return false;
    /* Days from the civil date (proleptic Gregorian), without the C library's
     * time zone state. */
    int y = year - (mon <= 2);
    int era = y / 400;
    int yoe = y - era * 400;
    int doy = (153 * (mon + (mon > 2 ? -3 : 9)) + 2) / 5 + day - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    double days = (double)era * 146097.0 + (double)doe - 719468.0;
    *out_unix_s = days * 86400.0 + hour * 3600.0 + min * 60.0 + sec + frac - offset_min * 60.0;
    return true;
}

enum memfit_status memfit_analysis_parse_time(const char *text, double *out_unix_s)
{
    if (!text || !out_unix_s)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_analysis_parse_time: NULL argument");
    if (!parse_rfc3339(text, out_unix_s))
        return memfit_fail(MEMFIT_E_INVALID,
                           "'%s' is not an RFC 3339 time (like 2026-11-23T19:40:00Z)", text);
    return MEMFIT_OK;
}

struct memfit_analyze_options memfit_analyze_options_default(void)
{
    struct memfit_analyze_options o = {
        .warmup_percent = 10.0,
        .leak_min_span_s = 10.0,
        .leak_min_samples = 10,
        .leak_min_r2 = 0.8,
        .possible_leak_min_r2 = 0.5,
        .leak_min_growth_percent = 5.0,
        .leak_min_growth_bytes = 1000000,
        .gap_factor = 3.0,
        .run = 0,
        .all_runs = false,
        .period_s = 0.0,
        .leak_min_periods = 4,
        .since_s = 0.0,
        .until_s = INFINITY,
        .since_unix_s = NAN,
        .until_unix_s = NAN,
    };
    return o;
}

static enum memfit_status check_options(const struct memfit_analyze_options *o)
{
    if (!(o->warmup_percent >= 0.0 && o->warmup_percent <= 90.0))
        return memfit_fail(MEMFIT_E_RANGE, "warm-up %g %% outside [0, 90]", o->warmup_percent);
    if (!(o->gap_factor >= 1.0 && isfinite(o->gap_factor)))
        return memfit_fail(MEMFIT_E_RANGE, "gap factor %g below 1", o->gap_factor);
    if (!(o->leak_min_span_s >= 0.0 && isfinite(o->leak_min_span_s)))
        return memfit_fail(MEMFIT_E_RANGE, "leak minimum span %g s is negative",
                           o->leak_min_span_s);
    if (!(o->leak_min_r2 >= 0.0 && o->leak_min_r2 <= 1.0 && o->possible_leak_min_r2 >= 0.0 &&
          o->possible_leak_min_r2 <= o->leak_min_r2))
        return memfit_fail(MEMFIT_E_RANGE,
                           "R^2 thresholds %g (possible leak) and %g (leak) not in order in [0, 1]",
                           o->possible_leak_min_r2, o->leak_min_r2);
    if (!(o->leak_min_growth_percent >= 0.0 && isfinite(o->leak_min_growth_percent)))
        return memfit_fail(MEMFIT_E_RANGE, "leak minimum growth %g %% is negative",
                           o->leak_min_growth_percent);
    if (!isfinite(o->period_s))
        return memfit_fail(MEMFIT_E_RANGE, "period %g s is not a number of seconds", o->period_s);
    if (o->leak_min_periods < 3)
        return memfit_fail(MEMFIT_E_RANGE, "%llu periods cannot show a trend (3 at least)",
                           (unsigned long long)o->leak_min_periods);
    if (isnan(o->since_s) || isnan(o->until_s) || !(o->since_s <= o->until_s) ||
        (!isnan(o->since_unix_s) && !isnan(o->until_unix_s) &&
         !(o->since_unix_s <= o->until_unix_s)))
        return memfit_fail(MEMFIT_E_RANGE, "the window ends before it begins");
    return MEMFIT_OK;
}

void mf_format_duration(double s, char *buf, size_t size)
{
    if (!(s >= 0.0) || !isfinite(s)) {
        snprintf(buf, size, "n/a");
    } else if (s < 1.0) {
        snprintf(buf, size, "%.0f ms", s * 1000.0);
    } else if (s < 59.95) {
        snprintf(buf, size, "%.1f s", s);
    } else if (s < 3600.0) {
        long v = lround(s);
        snprintf(buf, size, "%ld min %ld s", v / 60, v % 60);
    } else if (s < 86400.0) {
        long v = lround(s / 60.0);
        snprintf(buf, size, "%ld h %ld min", v / 60, v % 60);
    } else if (s < 1e9) {
        long v = lround(s / 3600.0);
        snprintf(buf, size, "%ld d %ld h", v / 24, v % 24);
    } else {
        snprintf(buf, size, "%.3g years", s / (365.25 * 86400.0));
    }
}

void mf_format_eta(double s, char *buf, size_t size)
{
    if (s < 90.0)
        snprintf(buf, size, "~%.0f s", s);
    else if (s < 90.0 * 60.0)
        snprintf(buf, size, "~%.0f min", s / 60.0);
    else if (s < 48.0 * 3600.0)
        snprintf(buf, size, "~%.1f h", s / 3600.0);
    else if (s < 1e9)
        snprintf(buf, size, "~%.1f days", s / 86400.0);
    else
        snprintf(buf, size, "more than 30 years");
}

/* ---- Reading lines ------------------------------------------------------ */

struct line_reader {
    FILE *stream;
    char *buf;
    size_t cap;
};

/*
 * Reads the next line (without its '\n') into r->buf. Returns 1 with a line,
 * 0 at the end, -1 on a read error; *too_long when the line passed
 * LINE_MAX_BYTES (it is consumed to its end, and only its start is kept).
 */
static int read_line(struct line_reader *r, size_t *len, bool *too_long, enum memfit_status *st)
{
    size_t n = 0;
    int c;
    bool any = false;
    *too_long = false;
    while ((c = getc_unlocked(r->stream)) != EOF) {
        any = true;
        if (c == '\n')
            break;
        if (n >= LINE_MAX_BYTES) {
            *too_long = true;
            continue;
        }
        if (n + 1 >= r->cap) {
            size_t cap = r->cap ? r->cap * 2 : 4096;
            char *p = memfit_realloc(r->buf, cap);
            if (!p) {
                *st = MEMFIT_E_NOMEM;
                return -1;
            }
            r->buf = p;
            r->cap = cap;
        }
        r->buf[n++] = (char)c;
    }
    if (ferror(r->stream)) {
        *st = MEMFIT_E_IO;
        return -1;
    }
    if (!any)
        return 0;
    *len = n;
    return 1;
}

/* ---- Building the analysis ---------------------------------------------- */

struct builder {
    memfit_analysis *a;
    struct mf_series cur; /* samples of the run being read */
    uint64_t line;
    double cur_last_sample_t;
    bool have_kept; /* a->series holds a finished run's samples */
};

static void series_free(struct mf_series *s)
{
    memfit_free(s->samples);
    memfit_free(s->oom_t_s);
    memset(s, 0, sizeof(*s));
}

static struct mf_run *current_run(struct builder *b)
{
    return b->a->n_runs ? &b->a->runs[b->a->n_runs - 1] : NULL;
}

static void malformed(struct builder *b, const char *fmt, ...) MEMFIT_PRINTF(2, 3);

/* Counts line b->line as malformed and keeps the first reason. */
static void malformed(struct builder *b, const char *fmt, ...)
{
    struct memfit_log_info *info = &b->a->info;
    if (info->n_malformed < MEMFIT_ANALYSIS_MAX_LISTED)
        info->malformed_lines[info->n_malformed] = b->line;
    info->n_malformed++;
    if (!b->a->first_malformed_reason) {
        char reason[256];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(reason, sizeof(reason), fmt, ap);
        va_end(ap);
        /* Losing the reason to a failed allocation loses nothing else. */
        b->a->first_malformed_reason =
            memfit_asprintf("line %llu: %s", (unsigned long long)b->line, reason);
    }
}

static void run_init_summary(struct mf_run *r, unsigned number)
{
    struct memfit_run_summary *s = &r->summary;
    memset(r, 0, sizeof(*r));
    s->number = number;
    s->pid = -1;
    s->interval_s = NAN;
    s->first_sample_s = s->last_sample_s = NAN;
    s->peak_percent = NAN;
    s->warning_percent = s->critical_percent = NAN;
    s->first_oom_s = NAN;
    s->start_time = s->hostname = s->command = s->limit_source = "";
    s->window_from_s = 0.0;
    s->window_to_s = INFINITY;
    r->unix_t0_s = NAN;
}

static void run_free_strings(struct mf_run *r)
{
    memfit_free(r->start_time);
    memfit_free(r->hostname);
    memfit_free(r->command);
    memfit_free(r->limit_source);
    memfit_free(r->scope);
}

/* Appends an empty run; its strings are filled by the caller. */
static enum memfit_status add_run(struct builder *b, struct mf_run **out)
{
    memfit_analysis *a = b->a;
    if (a->n_runs == a->cap_runs) {
        size_t cap = a->cap_runs ? a->cap_runs * 2 : 4;
        struct mf_run *p = memfit_realloc(a->runs, cap * sizeof(*p));
        if (!p)
            return MEMFIT_E_NOMEM;
        a->runs = p;
        a->cap_runs = cap;
    }
    if (a->n_runs >= UINT32_MAX)
        return memfit_fail(MEMFIT_E_RANGE, "%s: more than %u runs", a->name, UINT32_MAX);
    struct mf_run *r = &a->runs[a->n_runs];
    run_init_summary(r, (unsigned)(a->n_runs + 1));
    a->n_runs++;
    a->info.n_runs = (unsigned)a->n_runs;
    b->cur_last_sample_t = -INFINITY;
    *out = r;
    return MEMFIT_OK;
}

enum field { FIELD_ABSENT, FIELD_NULL, FIELD_OK, FIELD_BAD };

static enum field get_number(const json_t *obj, const char *key, double *out)
{
    const json_t *v = json_object_get(obj, key);
    if (!v)
        return FIELD_ABSENT;
    if (json_is_null(v))
        return FIELD_NULL;
    if (!json_is_number(v))
        return FIELD_BAD;
    *out = json_number_value(v);
    return isfinite(*out) ? FIELD_OK : FIELD_BAD;
}

static enum field get_integer(const json_t *obj, const char *key, long long *out)
{
    const json_t *v = json_object_get(obj, key);
    if (!v)
        return FIELD_ABSENT;
    if (json_is_null(v))
        return FIELD_NULL;
    if (!json_is_integer(v))
        return FIELD_BAD;
    *out = json_integer_value(v);
    return FIELD_OK;
}

/* A copy of a string field, or NULL (*st set on allocation failure only). */
static char *dup_string(const json_t *obj, const char *key, enum memfit_status *st)
{
    const json_t *v = json_object_get(obj, key);
    if (!json_is_string(v))
        return NULL;
    char *s = memfit_strndup(json_string_value(v), json_string_length(v));
    if (!s)
        *st = MEMFIT_E_NOMEM;
    return s;
}

/* The command array joined by spaces (strings only; others are skipped). */
static char *join_command(const json_t *cmd, enum memfit_status *st)
{
    if (!json_is_array(cmd))
        return NULL;
    size_t total = 1, i;
    const json_t *v;
    json_array_foreach(cmd, i, v)
    {
        if (json_is_string(v))
            total += json_string_length(v) + 1; /* bounded by the line length */
    }
    char *s = memfit_malloc(total);
    if (!s) {
        *st = MEMFIT_E_NOMEM;
        return NULL;
    }
    size_t n = 0;
    json_array_foreach(cmd, i, v)
    {
        if (!json_is_string(v))
            continue;
        if (n)
            s[n++] = ' ';
        size_t len = json_string_length(v);
        memcpy(s + n, json_string_value(v), len);
        n += len;
    }
    s[n] = '\0';
    return s;
}

static enum memfit_status finish_run(struct builder *b);

/* A `start` record: a new run. Optional fields of the wrong type are
 * ignored, so one odd field does not merge two runs. */
static enum memfit_status on_start(struct builder *b, const json_t *root, double t)
{
    enum memfit_status st = finish_run(b);
    if (st != MEMFIT_OK)
        return st;
    struct mf_run *r;
    st = add_run(b, &r);
    if (st != MEMFIT_OK)
        return st;
    struct memfit_run_summary *s = &r->summary;
    s->start_line = b->line;
    r->start_time = dup_string(root, "time", &st);
    r->hostname = dup_string(root, "hostname", &st);
    r->limit_source = dup_string(root, "limit_source", &st);
    r->scope = dup_string(root, "scope", &st);
    r->command = join_command(json_object_get(root, "command"), &st);
    if (st != MEMFIT_OK)
        return st;
    s->start_time = r->start_time ? r->start_time : "";
    s->hostname = r->hostname ? r->hostname : "";
    s->limit_source = r->limit_source ? r->limit_source : "";
    s->command = r->command ? r->command : "";
    long long pid;
    if (get_integer(root, "pid", &pid) == FIELD_OK && pid >= 0)
        s->pid = pid;
    double v;
    if (r->start_time && parse_rfc3339(r->start_time, &v))
        r->unix_t0_s = v - t;
    if (get_number(root, "interval_s", &v) == FIELD_OK && v > 0.0 && v <= MAX_T_S)
        s->interval_s = v;
    if (get_number(root, "limit_bytes", &v) == FIELD_OK && v > 0.0 && v < MAX_BYTES)
        s->limit_bytes = (uint64_t)v;
    const json_t *th = json_object_get(root, "thresholds");
    if (json_is_object(th)) {
        if (get_number(th, "warning_percent", &v) == FIELD_OK && v > 0.0 && v <= 100.0)
            s->warning_percent = v;
        if (get_number(th, "critical_percent", &v) == FIELD_OK && v > 0.0 && v <= 100.0)
            s->critical_percent = v;
        if (get_number(th, "danger_available_bytes", &v) == FIELD_OK && v > 0.0 && v < MAX_BYTES)
            s->danger_available_bytes = (uint64_t)v;
    }
    return MEMFIT_OK;
}

/* The window of run r in its own t: the options' bounds, the wall-clock
 * ones placed by the run's time (nothing fits them when it is unknown). */
static void run_window(const struct memfit_analyze_options *o, const struct mf_run *r, double *from,
                       double *to)
{
    *from = o->since_s;
    *to = o->until_s;
    if (!isnan(o->since_unix_s))
        *from = fmax(*from, isnan(r->unix_t0_s) ? INFINITY : o->since_unix_s - r->unix_t0_s);
    if (!isnan(o->until_unix_s))
        *to = fmin(*to, isnan(r->unix_t0_s) ? -INFINITY : o->until_unix_s - r->unix_t0_s);
}

static bool in_window(const struct builder *b, const struct mf_run *r, double t)
{
    double from, to;
    run_window(&b->a->opts, r, &from, &to);
    return t >= from && t <= to;
}

/* The run a record without a `start` before it belongs to. */
static enum memfit_status run_for_record(struct builder *b, struct mf_run **out)
{
    struct mf_run *r = current_run(b);
    if (r) {
        *out = r;
        return MEMFIT_OK;
    }
    return add_run(b, out);
}

/* A size field of a sample: absent or null is NaN; bad is malformed. */
static bool sample_size(struct builder *b, const json_t *obj, const char *key, double *out)
{
    switch (get_number(obj, key, out)) {
    case FIELD_ABSENT:
    case FIELD_NULL:
        *out = NAN;
        return true;
    case FIELD_OK:
        if (*out >= 0.0 && *out < MAX_BYTES)
            return true;
        malformed(b, "%s out of range (%g)", key, *out);
        return false;
    case FIELD_BAD:
        break;
    }
    malformed(b, "%s is not a number", key);
    return false;
}

static enum memfit_status on_sample(struct builder *b, const json_t *root, double t)
{
    struct mf_sample smp = {.t_s = t, .pid = -1, .level = LEVEL_UNKNOWN};
    switch (get_number(root, "working_set_bytes", &smp.working_set_bytes)) {
    case FIELD_ABSENT:
        malformed(b, "sample without working_set_bytes");
        return MEMFIT_OK;
    case FIELD_NULL:
        malformed(b, "working_set_bytes is null");
        return MEMFIT_OK;
    case FIELD_BAD:
        malformed(b, "working_set_bytes is not a number");
        return MEMFIT_OK;
    case FIELD_OK:
        break;
    }
    if (!(smp.working_set_bytes >= 0.0 && smp.working_set_bytes < MAX_BYTES)) {
        malformed(b, "working_set_bytes out of range (%g)", smp.working_set_bytes);
        return MEMFIT_OK;
    }
    /* The figure levels judge (mapped file pages in use count) when the log
     * has it; logs written before it judged the working set. The series
     * keeps the name working_set throughout analyze and plot. */
    double in_use;
    if (get_number(root, "in_use_bytes", &in_use) == FIELD_OK && in_use >= 0.0 &&
        in_use < MAX_BYTES)
        smp.working_set_bytes = in_use;
    if (!sample_size(b, root, "rss_bytes", &smp.rss_bytes) ||
        !sample_size(b, root, "limit_bytes", &smp.limit_bytes))
        return MEMFIT_OK;
    if (smp.limit_bytes == 0.0)
        smp.limit_bytes = NAN;
    const json_t *level = json_object_get(root, "level");
    if (json_is_string(level)) {
        for (unsigned i = 0; i < LEVEL_UNKNOWN; i++)
            if (strcmp(json_string_value(level), level_names[i]) == 0)
                smp.level = (uint8_t)i;
    } else if (level && !json_is_null(level)) {
        malformed(b, "level is not a string");
        return MEMFIT_OK;
    }
    const json_t *proc = json_object_get(root, "process");
    if (json_is_object(proc)) {
        long long pid;
        switch (get_integer(proc, "pid", &pid)) {
        case FIELD_OK:
            smp.pid = pid >= 0 ? pid : -1;
            break;
        case FIELD_BAD:
            malformed(b, "process.pid is not an integer");
            return MEMFIT_OK;
        default:
            break;
        }
    } else if (proc && !json_is_null(proc)) {
        malformed(b, "process is not an object");
        return MEMFIT_OK;
    }

    struct mf_run *r = NULL;
    enum memfit_status st = run_for_record(b, &r);
    if (st != MEMFIT_OK)
        return st;
    if (t < b->cur_last_sample_t) {
        malformed(b, "t %g goes back before the previous sample's %g", t, b->cur_last_sample_t);
        return MEMFIT_OK;
    }
    b->cur_last_sample_t = t;
    double wall;
    if (isnan(r->unix_t0_s) && json_is_string(json_object_get(root, "time")) &&
        parse_rfc3339(json_string_value(json_object_get(root, "time")), &wall))
        r->unix_t0_s = wall - t;
    if (!in_window(b, r, t)) {
        b->a->info.n_outside_window++;
        return MEMFIT_OK;
    }
    const json_t *scope = json_object_get(root, "scope");
    if (json_is_string(scope) && !r->scope) {
        r->scope = memfit_strdup(json_string_value(scope));
        if (!r->scope)
            return MEMFIT_E_NOMEM;
    }
    if (smp.pid >= 0)
        r->has_process = true;
    struct mf_series *s = &b->cur;
    if (s->n_samples == s->cap_samples) {
        size_t cap = s->cap_samples ? s->cap_samples * 2 : 256, bytes;
        if (mf_mul_overflow(cap, sizeof(*s->samples), &bytes))
            return memfit_fail(MEMFIT_E_NOMEM, "%s: too many samples", b->a->name);
        struct mf_sample *p = memfit_realloc(s->samples, bytes);
        if (!p)
            return MEMFIT_E_NOMEM;
        s->samples = p;
        s->cap_samples = cap;
    }
    s->samples[s->n_samples++] = smp;
    b->a->info.n_samples++;
    r->last_t_s = fmax(r->last_t_s, t);
    return MEMFIT_OK;
}

static enum memfit_status add_oom_time(struct mf_series *s, double t)
{
    if (s->n_oom == s->cap_oom) {
        size_t cap = s->cap_oom ? s->cap_oom * 2 : 8;
        double *p = memfit_realloc(s->oom_t_s, cap * sizeof(*p));
        if (!p)
            return MEMFIT_E_NOMEM;
        s->oom_t_s = p;
        s->cap_oom = cap;
    }
    s->oom_t_s[s->n_oom++] = t;
    return MEMFIT_OK;
}

static enum memfit_status on_oom(struct builder *b, double t)
{
    struct mf_run *r;
    enum memfit_status st = run_for_record(b, &r);
    if (st != MEMFIT_OK || !in_window(b, r, t))
        return st;
    r->n_oom_records++;
    r->last_t_s = fmax(r->last_t_s, t);
    return add_oom_time(&b->cur, t);
}

static enum memfit_status on_exit_record(struct builder *b, const json_t *root, double t)
{
    struct mf_run *r;
    enum memfit_status st = run_for_record(b, &r);
    if (st != MEMFIT_OK)
        return st;
    struct memfit_run_summary *s = &r->summary;
    s->has_exit = true;
    long long v;
    if (get_integer(root, "exit_code", &v) == FIELD_OK && v >= INT32_MIN && v <= INT32_MAX) {
        s->exit_code_known = true;
        s->exit_code = (int)v;
    }
    if (get_integer(root, "signal", &v) == FIELD_OK && v > 0 && v <= INT32_MAX)
        s->exit_signal = (int)v;
    s->oom_killed = json_is_true(json_object_get(root, "oom_killed"));
    if (!in_window(b, r, t))
        return MEMFIT_OK;
    r->last_t_s = fmax(r->last_t_s, t);
    /* An OOM kill the sampler only learned from the exit still gets a mark. */
    if (s->oom_killed && r->n_oom_records == 0 && b->cur.n_oom == 0)
        return add_oom_time(&b->cur, t);
    return MEMFIT_OK;
}

static enum memfit_status on_line(struct builder *b, const char *line, size_t len)
{
    json_error_t err;
    json_t *root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &err);
    if (!root) {
        malformed(b, "not JSON (%s, column %d)", err.text, err.column);
        return MEMFIT_OK;
    }
    enum memfit_status st = MEMFIT_OK;
    double t = 0.0;
    const json_t *type = json_object_get(root, "type");
    if (!json_is_object(root)) {
        malformed(b, "not a JSON object");
    } else if (!json_is_string(type)) {
        malformed(b, "type is missing or not a string");
    } else if (get_number(root, "t", &t) != FIELD_OK) {
        malformed(b, "t is missing or not a number");
    } else if (!(t >= 0.0 && t <= MAX_T_S)) {
        malformed(b, "t out of range (%g)", t);
    } else {
        const char *name = json_string_value(type);
        uint64_t bad_before = b->a->info.n_malformed, unknown_before = b->a->info.n_unknown_types;
        if (strcmp(name, "start") == 0)
            st = on_start(b, root, t);
        else if (strcmp(name, "sample") == 0)
            st = on_sample(b, root, t);
        else if (strcmp(name, "oom") == 0)
            st = on_oom(b, t);
        else if (strcmp(name, "exit") == 0)
            st = on_exit_record(b, root, t);
        else if (strcmp(name, "level") == 0 || strcmp(name, "action") == 0 ||
                 strcmp(name, "gpu_level") == 0)
            ; /* the samples' levels are the one source for the level times */
        else
            b->a->info.n_unknown_types++;
        if (st == MEMFIT_OK && b->a->info.n_malformed == bad_before &&
            b->a->info.n_unknown_types == unknown_before)
            b->a->info.n_records++;
    }
    json_decref(root);
    return st;
}

/* ---- Summing a run up --------------------------------------------------- */

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* Percentile p (0..100) of sorted values: linear interpolation between the
 * closest ranks (position (n - 1) * p / 100), as numpy's default. */
static double percentile_sorted(const double *v, size_t n, double p)
{
    double pos = (double)(n - 1) * p / 100.0;
    size_t lo = (size_t)pos;
    if (lo + 1 >= n)
        return v[n - 1];
    return v[lo] + (pos - (double)lo) * (v[lo + 1] - v[lo]);
}

static double sample_value(const struct mf_sample *s, bool rss)
{
    return rss ? s->rss_bytes : s->working_set_bytes;
}

static enum memfit_status value_stats(const struct mf_sample *s, size_t n, bool rss,
                                      struct memfit_value_stats *out)
{
    struct memfit_value_stats r = {0, NAN, NAN, NAN, NAN, NAN};
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += !isnan(sample_value(&s[i], rss));
    if (k == 0) {
        *out = r;
        return MEMFIT_OK;
    }
    double *v = memfit_malloc(k * sizeof(*v));
    if (!v)
        return MEMFIT_E_NOMEM;
    double sum = 0.0;
    k = 0;
    for (size_t i = 0; i < n; i++) {
        double x = sample_value(&s[i], rss);
        if (!isnan(x)) {
            v[k++] = x;
            sum += x;
        }
    }
    qsort(v, k, sizeof(*v), cmp_double);
    r.n = k;
    r.min = v[0];
    r.max = v[k - 1];
    r.mean = sum / (double)k;
    r.p50 = percentile_sorted(v, k, 50.0);
    r.p95 = percentile_sorted(v, k, 95.0);
    memfit_free(v);
    *out = r;
    return MEMFIT_OK;
}

/* The nominal interval when the start record gave none: the median step. */
static enum memfit_status median_step(const struct mf_sample *s, size_t n, double *out)
{
    *out = NAN;
    if (n < 2)
        return MEMFIT_OK;
    double *v = memfit_malloc((n - 1) * sizeof(*v));
    if (!v)
        return MEMFIT_E_NOMEM;
    for (size_t i = 1; i < n; i++)
        v[i - 1] = s[i].t_s - s[i - 1].t_s;
    qsort(v, n - 1, sizeof(*v), cmp_double);
    double m = percentile_sorted(v, n - 1, 50.0);
    memfit_free(v);
    if (m > 0.0)
        *out = m;
    return MEMFIT_OK;
}

/* ---- Trend and leak verdict --------------------------------------------- */

/* An ordinary least-squares line through (t, y). */
struct ols {
    double slope, intercept, r2, mean_t, mean_y, sxx;
};

static struct ols ols_fit(const double *t, const double *y, size_t n)
{
    struct ols f = {NAN, NAN, NAN, NAN, NAN, 0.0};
    if (n == 0)
        return f;
    double st = 0.0, sy = 0.0;
    for (size_t i = 0; i < n; i++) {
        st += t[i];
        sy += y[i];
    }
    f.mean_t = st / (double)n;
    f.mean_y = sy / (double)n;
    double sxy = 0.0, syy = 0.0;
    for (size_t i = 0; i < n; i++) {
        double dt = t[i] - f.mean_t, dy = y[i] - f.mean_y;
        f.sxx += dt * dt;
        sxy += dt * dy;
        syy += dy * dy;
    }
    if (f.sxx > 0.0) {
        f.slope = sxy / f.sxx;
        f.intercept = f.mean_y - f.slope * f.mean_t;
        if (syy > 0.0)
            f.r2 = fmin(1.0, (sxy * sxy) / (f.sxx * syy));
    }
    return f;
}

/*
 * Period detection (docs/analyze.md): the fitted points are resampled on a
 * uniform grid (the nominal interval, at most PERIOD_GRID points, linear
 * between samples), detrended by their least-squares line, and
 * autocorrelated. The period is the first local maximum of the
 * autocorrelation after it first goes below zero that reaches 80 % of the
 * highest value there, with lags up to a quarter of the span (so at least
 * four periods are seen), when that value is at least PERIOD_MIN_ACF and
 * the lag at least PERIOD_MIN_STEPS (an alternation between two samples is
 * no period: its multiples are not taken instead). It is
 * then refined on the peak near its largest multiple within half the span
 * (parabolic interpolation), which divides the grid's rounding error by
 * that multiple. O(grid^2 / 2) multiply-adds: a few million at most.
 */
#define PERIOD_GRID      4096
#define PERIOD_MIN_ACF   0.4
#define PERIOD_MIN_STEPS 4 /* a shorter fundamental is not told from sampling noise */

static double parabolic_peak(const double *r, size_t k, size_t n)
{
    if (k == 0 || k + 1 >= n)
        return (double)k;
    double den = r[k - 1] - 2.0 * r[k] + r[k + 1];
    if (!(den < 0.0))
        return (double)k;
    double d = 0.5 * (r[k - 1] - r[k + 1]) / den;
    return (double)k + fmax(-0.5, fmin(0.5, d));
}

static enum memfit_status detect_period(const double *t, const double *y, size_t n,
                                        double interval_s, double *period_s, double *strength)
{
    *period_s = NAN;
    *strength = NAN;
    if (n < 32)
        return MEMFIT_OK;
    double span = t[n - 1] - t[0];
    double dt = span / (PERIOD_GRID - 1);
    if (interval_s > dt)
        dt = interval_s;
    if (!(dt > 0.0))
        return MEMFIT_OK;
    size_t m = (size_t)(span / dt) + 1;
    if (m < 32)
        return MEMFIT_OK;
    size_t half = m / 2;
    double *x = memfit_malloc((m + half) * sizeof(*x));
    if (!x)
        return MEMFIT_E_NOMEM;
    double *r = x + m;
    size_t j = 0;
    for (size_t g = 0; g < m; g++) {
        double tg = t[0] + (double)g * dt;
        while (j + 1 < n && t[j + 1] <= tg)
            j++;
        double v = y[j];
        if (j + 1 < n && t[j + 1] > t[j])
            v += (y[j + 1] - y[j]) * (tg - t[j]) / (t[j + 1] - t[j]);
        x[g] = v;
    }
    /* Detrend against the grid index (the same line as against t). */
    double mg = (double)(m - 1) / 2.0, mx = 0.0, sgx = 0.0, sgg = 0.0;
    for (size_t g = 0; g < m; g++)
        mx += x[g];
    mx /= (double)m;
    for (size_t g = 0; g < m; g++) {
        sgx += ((double)g - mg) * (x[g] - mx);
        sgg += ((double)g - mg) * ((double)g - mg);
    }
    double b = sgx / sgg, var = 0.0;
    for (size_t g = 0; g < m; g++) {
        x[g] -= mx + b * ((double)g - mg);
        var += x[g] * x[g];
    }
    if (!(var > 0.0)) {
        memfit_free(x);
        return MEMFIT_OK;
    }
    for (size_t k = 0; k < half; k++) {
        double acc = 0.0;
        for (size_t g = 0; g + k < m; g++)
            acc += x[g] * x[g + k];
        r[k] = acc / var;
    }
    size_t kmax = m / 4, k0 = 1;
    while (k0 <= kmax && r[k0] >= 0.0)
        k0++;
    double best = -1.0;
    size_t kmin = k0 < 2 ? 2 : k0;
    for (size_t k = kmin; k <= kmax; k++)
        best = fmax(best, r[k]);
    size_t k1 = 0;
    if (best >= PERIOD_MIN_ACF)
        for (size_t k = kmin; k <= kmax && !k1; k++)
            if (r[k] >= 0.8 * best && r[k] >= r[k - 1] && r[k] >= r[k + 1])
                k1 = k;
    if (k1 >= PERIOD_MIN_STEPS) {
        size_t mult = (half - 1) / k1, peak = k1;
        if (mult >= 2) {
            size_t lo = mult * k1 - k1 / 2, hi = mult * k1 + k1 / 2;
            if (hi > half - 2)
                hi = half - 2;
            peak = lo;
            for (size_t k = lo; k <= hi; k++)
                if (r[k] > r[peak])
                    peak = k;
            if (!(r[peak] > 0.0)) {
                mult = 1;
                peak = k1;
            }
        } else {
            mult = 1;
        }
        *period_s = parabolic_peak(r, peak, half) * dt / (double)mult;
        *strength = r[k1];
    }
    memfit_free(x);
    return MEMFIT_OK;
}

/*
 * The lowest value of each full period window in [t[0], t[n-1]]. The windows
 * are placed so that the troughs fall in their middle: the detrended points
 * folded on the period into bins, the lowest bin's mean marks the trough's
 * phase, and windows start half a period before it. A window without a
 * sample (a gap) is skipped. Writes the minima to (mt, my), which hold n.
 */
static void period_minima(const double *t, const double *y, size_t n, double period,
                          const struct ols *line, double *mt, double *my, size_t *n_min,
                          double *amplitude)
{
    enum { BINS = 32 };
    double sum[BINS] = {0}, cnt[BINS] = {0};
    for (size_t i = 0; i < n; i++) {
        double ph = fmod(t[i] - t[0], period) / period;
        size_t bin = (size_t)(ph * BINS);
        if (bin >= BINS)
            bin = BINS - 1;
        sum[bin] += y[i] - (line->intercept + line->slope * t[i]);
        cnt[bin] += 1.0;
    }
    size_t low = BINS;
    for (size_t bin = 0; bin < BINS; bin++)
        if (cnt[bin] > 0.0 && (low == BINS || sum[bin] / cnt[bin] < sum[low] / cnt[low]))
            low = bin;
    double start = t[0] + ((double)low + 0.5) / BINS * period - 0.5 * period;
    if (start < t[0])
        start += period;
    size_t k = 0, i = 0;
    double amp_sum = 0.0;
    /* A tiny slack keeps a window ending on the last sample. */
    for (double w = start; w + period <= t[n - 1] + 1e-9 * period; w += period) {
        while (i < n && t[i] < w)
            i++;
        size_t lo = i, best = i;
        double hi = -INFINITY;
        for (; i < n && t[i] < w + period; i++) {
            if (y[i] < y[best])
                best = i;
            hi = fmax(hi, y[i]);
        }
        if (i == lo) {
            /* Over a gap, go straight to the window of the next sample. */
            double skip = i < n ? floor((t[i] - w) / period) - 1.0 : 0.0;
            if (skip > 0.0)
                w += skip * period;
            continue;
        }
        mt[k] = t[best];
        my[k] = y[best];
        amp_sum += hi - y[best];
        k++;
        if (k == n)
            break;
    }
    *n_min = k;
    *amplitude = k ? amp_sum / (double)k : NAN;
}

/* The fitted points: the known values of the series with t >= from_t. */
static enum memfit_status fitted_points(const struct mf_sample *s, size_t n, bool rss,
                                        double from_t, double **out, size_t *k)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += !isnan(sample_value(&s[i], rss)) && s[i].t_s >= from_t;
    *out = NULL;
    *k = c;
    if (c == 0)
        return MEMFIT_OK;
    double *p = memfit_malloc(4 * c * sizeof(*p)); /* t, y, and room for the minima */
    if (!p)
        return MEMFIT_E_NOMEM;
    c = 0;
    for (size_t i = 0; i < n; i++) {
        double y = sample_value(&s[i], rss);
        if (isnan(y) || s[i].t_s < from_t)
            continue;
        p[c] = s[i].t_s;
        p[*k + c] = y;
        c++;
    }
    *out = p;
    return MEMFIT_OK;
}

/* The least-squares trend of the series over t >= from_t (per period when
 * the series is periodic), and the verdict. */
static enum memfit_status fit_trend(const struct mf_sample *s, size_t n, bool rss, double from_t,
                                    const struct memfit_analyze_options *o,
                                    const struct memfit_run_summary *sum, struct memfit_trend *out)
{
    struct memfit_trend tr = {
        .verdict = MEMFIT_LEAK_INSUFFICIENT_DATA,
        .fit_from_s = NAN,
        .fit_to_s = NAN,
        .slope_bytes_per_s = NAN,
        .intercept_bytes = NAN,
        .r2 = NAN,
        .growth_bytes = NAN,
        .mean_bytes = NAN,
        .limit_eta_s = NAN,
        .period_s = NAN,
        .period_strength = NAN,
        .period_growth_bytes = NAN,
        .amplitude_bytes = NAN,
    };
    double *p;
    size_t k;
    enum memfit_status st = fitted_points(s, n, rss, from_t, &p, &k);
    if (st != MEMFIT_OK || k == 0) {
        *out = tr;
        return st;
    }
    double *t = p, *y = p + k, *mt = p + 2 * k, *my = p + 3 * k;
    tr.n_points = k;
    tr.fit_from_s = t[0];
    tr.fit_to_s = t[k - 1];
    struct ols line = ols_fit(t, y, k), fit = line;
    double span = tr.fit_to_s - tr.fit_from_s;
    if (o->period_s > 0.0) {
        tr.period_s = o->period_s;
        tr.period_given = true;
    } else if (o->period_s == 0.0 && line.sxx > 0.0) {
        st = detect_period(t, y, k, sum->interval_s, &tr.period_s, &tr.period_strength);
        if (st != MEMFIT_OK) {
            memfit_free(p);
            return st;
        }
    }
    if (!isnan(tr.period_s) && line.sxx > 0.0) {
        size_t n_min;
        period_minima(t, y, k, tr.period_s, &line, mt, my, &n_min, &tr.amplitude_bytes);
        tr.n_periods = n_min;
        if (n_min >= o->leak_min_periods) {
            fit = ols_fit(mt, my, n_min);
            tr.per_period = fit.sxx > 0.0;
            if (!tr.per_period)
                fit = line;
        }
    }
    memfit_free(p);
    tr.mean_bytes = fit.mean_y;
    if (fit.sxx > 0.0) {
        tr.slope_bytes_per_s = fit.slope;
        tr.intercept_bytes = fit.intercept;
        tr.growth_bytes = fit.slope * span;
        tr.r2 = fit.r2;
        if (tr.per_period)
            tr.period_growth_bytes = fit.slope * tr.period_s;
    }
    if (k < o->leak_min_samples || !(span >= o->leak_min_span_s) || line.sxx <= 0.0) {
        *out = tr;
        return MEMFIT_OK;
    }
    tr.verdict = MEMFIT_LEAK_NONE;
    bool grows = tr.slope_bytes_per_s > 0.0 && !isnan(tr.r2) &&
                 tr.growth_bytes >= o->leak_min_growth_percent / 100.0 * tr.mean_bytes &&
                 tr.growth_bytes >= (double)o->leak_min_growth_bytes;
    if (grows && tr.r2 >= o->leak_min_r2)
        tr.verdict = MEMFIT_LEAK_LIKELY;
    else if (grows && tr.r2 >= o->possible_leak_min_r2)
        tr.verdict = MEMFIT_LEAK_POSSIBLE;
    if (tr.verdict >= MEMFIT_LEAK_POSSIBLE && sum->limit_bytes > 0) {
        /* Per period, the peaks meet the limit first: the minima's line
         * plus the mean amplitude. */
        double now = tr.intercept_bytes + tr.slope_bytes_per_s * tr.fit_to_s;
        if (tr.per_period)
            now += tr.amplitude_bytes;
        tr.limit_eta_s = fmax(0.0, ((double)sum->limit_bytes - now) / tr.slope_bytes_per_s);
    }
    *out = tr;
    return MEMFIT_OK;
}
/* Everything one pass over the samples gives: gaps, levels, pids, limits. */
static void walk_samples(struct mf_series *ser, struct memfit_run_summary *s, double gap_s)
{
    double limit = NAN;
    int64_t last_pid = -1; /* a sample without a pid between two with one is no restart */
    for (size_t i = 0; i < ser->n_samples; i++) {
        struct mf_sample *x = &ser->samples[i];
        if (!isnan(x->limit_bytes)) {
            limit = x->limit_bytes;
            double pct = 100.0 * x->working_set_bytes / x->limit_bytes;
            if (isnan(s->peak_percent) || pct > s->peak_percent)
                s->peak_percent = pct;
        }
        if (i + 1 < ser->n_samples) {
            double dt = ser->samples[i + 1].t_s - x->t_s;
            if (dt > gap_s) {
                ser->samples[i + 1].gap_before = true;
                s->n_gaps++;
                s->gap_total_s += dt;
            } else {
                s->level_seconds[x->level] += dt;
            }
        }
        if (i > 0 && x->level != ser->samples[i - 1].level)
            s->n_level_changes++;
        if (x->pid < 0)
            continue;
        if (last_pid >= 0 && x->pid != last_pid) {
            if (s->n_pid_restarts < MEMFIT_ANALYSIS_MAX_LISTED)
                s->pid_restarts[s->n_pid_restarts] =
                    (struct memfit_pid_restart){x->t_s, last_pid, x->pid};
            s->n_pid_restarts++;
        }
        last_pid = x->pid;
    }
    if (!isnan(limit))
        s->limit_bytes = (uint64_t)limit;
    if (s->limit_bytes && isnan(s->peak_percent) && s->working_set.n)
        s->peak_percent = 100.0 * s->working_set.max / (double)s->limit_bytes;
}

/*
 * What the verdict judges: what the monitor judged. Logs written before
 * `scope` existed are read by their limit: a cgroup limit judged the
 * cgroup; physical memory judged the machine, where memfit now judges the
 * watched process tree when there is one (its RSS: in_use_bytes of those
 * logs was the machine's).
 */
static void judge(struct mf_run *r)
{
    struct memfit_run_summary *s = &r->summary;
    static const struct {
        const char *name;
        enum memfit_analysis_scope scope;
    } names[] = {{"cgroup", MEMFIT_ANALYSIS_SCOPE_CGROUP},
                 {"process", MEMFIT_ANALYSIS_SCOPE_PROCESS},
                 {"machine", MEMFIT_ANALYSIS_SCOPE_MACHINE}};
    s->scope = MEMFIT_ANALYSIS_SCOPE_UNKNOWN;
    s->scope_inferred = true;
    for (size_t i = 0; r->scope && i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(r->scope, names[i].name) == 0) {
            s->scope = names[i].scope;
            s->scope_inferred = false;
        }
    if (s->scope_inferred) {
        if (strcmp(s->limit_source, "cgroup") == 0)
            s->scope = MEMFIT_ANALYSIS_SCOPE_CGROUP;
        else if (strcmp(s->limit_source, "memory") == 0)
            s->scope = (r->has_process || s->pid >= 0) && s->rss.n ? MEMFIT_ANALYSIS_SCOPE_PROCESS
                                                                   : MEMFIT_ANALYSIS_SCOPE_MACHINE;
    }
    s->judged_rss = s->scope_inferred && s->scope == MEMFIT_ANALYSIS_SCOPE_PROCESS;
    s->judged_trend = s->judged_rss ? s->rss_trend : s->working_set_trend;
}

void mf_format_judged(const struct memfit_run_summary *s, char *buf, size_t size)
{
    char pid[32] = "";
    if (s->pid >= 0)
        snprintf(pid, sizeof(pid), " of pid %lld", (long long)s->pid);
    switch (s->scope) {
    case MEMFIT_ANALYSIS_SCOPE_CGROUP:
        snprintf(buf, size, "memory in use of the cgroup, against its limit");
        break;
    case MEMFIT_ANALYSIS_SCOPE_PROCESS:
        snprintf(buf, size, "process tree%s (RSS), no cgroup limit", pid);
        break;
    case MEMFIT_ANALYSIS_SCOPE_MACHINE:
        snprintf(buf, size, "memory in use of the machine, no cgroup limit");
        break;
    case MEMFIT_ANALYSIS_SCOPE_UNKNOWN:
        snprintf(buf, size, "memory in use");
        break;
    }
}

static enum memfit_status summarize(memfit_analysis *a, struct mf_run *r, struct mf_series *ser)
{
    struct memfit_run_summary *s = &r->summary;
    const struct mf_sample *smp = ser->samples;
    size_t n = ser->n_samples;
    s->n_samples = n;
    s->duration_s = r->last_t_s;
    run_window(&a->opts, r, &s->window_from_s, &s->window_to_s);
    if (n) {
        s->first_sample_s = smp[0].t_s;
        s->last_sample_s = smp[n - 1].t_s;
        if (s->start_line == 0 || s->window_from_s > 0.0)
            s->duration_s = r->last_t_s - smp[0].t_s;
    }
    enum memfit_status st = MEMFIT_OK;
    if (isnan(s->interval_s))
        st = median_step(smp, n, &s->interval_s);
    if (st == MEMFIT_OK)
        st = value_stats(smp, n, false, &s->working_set);
    if (st == MEMFIT_OK)
        st = value_stats(smp, n, true, &s->rss);
    if (st != MEMFIT_OK)
        return st;
    double gap_s = isnan(s->interval_s) ? INFINITY : a->opts.gap_factor * s->interval_s;
    walk_samples(ser, s, gap_s);
    s->n_oom_events = r->n_oom_records ? r->n_oom_records : (s->oom_killed ? 1 : 0);
    if (ser->n_oom)
        s->first_oom_s = ser->oom_t_s[0];
    double from_t = NAN;
    if (n)
        from_t = smp[0].t_s + a->opts.warmup_percent / 100.0 * (smp[n - 1].t_s - smp[0].t_s);
    st = fit_trend(smp, n, false, from_t, &a->opts, s, &s->working_set_trend);
    if (st == MEMFIT_OK)
        st = fit_trend(smp, n, true, from_t, &a->opts, s, &s->rss_trend);
    if (st != MEMFIT_OK)
        return st;
    judge(r);
    return MEMFIT_OK;
}

/* Sums the current run up and keeps its samples if it is the one to draw. */
static enum memfit_status finish_run(struct builder *b)
{
    memfit_analysis *a = b->a;
    struct mf_run *r = current_run(b);
    if (!r)
        return MEMFIT_OK;
    enum memfit_status st = summarize(a, r, &b->cur);
    if (st != MEMFIT_OK)
        return st;
    bool keep;
    if (a->opts.run)
        keep = r->summary.number == a->opts.run;
    else
        keep = b->cur.n_samples > 0 || !b->have_kept || a->series.n_samples == 0;
    if (keep) {
        series_free(&a->series);
        a->series = b->cur;
        memset(&b->cur, 0, sizeof(b->cur));
        a->info.selected_run = (unsigned)(a->n_runs - 1);
        b->have_kept = true;
    } else {
        series_free(&b->cur);
    }
    return MEMFIT_OK;
}

void memfit_analysis_close(memfit_analysis *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n_runs; i++)
        run_free_strings(&a->runs[i]);
    memfit_free(a->runs);
    series_free(&a->series);
    memfit_free(a->name);
    memfit_free(a->first_malformed_reason);
    memfit_free(a);
}

static enum memfit_status read_all(struct builder *b, FILE *stream)
{
    struct line_reader rd = {stream, NULL, 0};
    enum memfit_status st = MEMFIT_OK;
    for (;;) {
        size_t len = 0;
        bool too_long;
        int got = read_line(&rd, &len, &too_long, &st);
        if (got < 0) {
            if (st == MEMFIT_E_IO)
                st = memfit_fail(MEMFIT_E_IO, "%s: line %llu: %s", b->a->name,
                                 (unsigned long long)b->line + 1, strerror(errno));
            break;
        }
        if (got == 0)
            break;
        b->line++;
        b->a->info.n_lines = b->line;
        size_t start = 0;
        while (start < len &&
               (rd.buf[start] == ' ' || rd.buf[start] == '\t' || rd.buf[start] == '\r'))
            start++;
        if (start == len && !too_long)
            continue; /* blank lines are not records */
        if (too_long)
            malformed(b, "longer than %u bytes", LINE_MAX_BYTES);
        else
            st = on_line(b, rd.buf + start, len - start);
        if (st != MEMFIT_OK)
            break;
    }
    memfit_free(rd.buf);
    if (st == MEMFIT_OK)
        st = finish_run(b);
    return st;
}

enum memfit_status memfit_analysis_open_stream(FILE *stream, const char *name,
                                               const struct memfit_analyze_options *opts,
                                               memfit_analysis **out)
{
    if (!stream || !out)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_analysis_open_stream: NULL argument");
    struct memfit_analyze_options o = opts ? *opts : memfit_analyze_options_default();
    enum memfit_status st = check_options(&o);
    if (st != MEMFIT_OK)
        return st;
    memfit_analysis *a = memfit_calloc_in(MEMFIT_ALLOC_MONITOR, 1, sizeof(*a));
    if (!a)
        return MEMFIT_E_NOMEM;
    a->opts = o;
    a->name = memfit_strdup(name ? name : "(stream)");
    if (!a->name) {
        memfit_analysis_close(a);
        return MEMFIT_E_NOMEM;
    }
    struct builder b = {.a = a, .cur_last_sample_t = -INFINITY};
    st = read_all(&b, stream);
    series_free(&b.cur);
    if (st == MEMFIT_OK && o.run > a->n_runs)
        st = memfit_fail(MEMFIT_E_RANGE, "%s: run %u asked, the log holds %zu run%s", a->name,
                         o.run, a->n_runs, a->n_runs == 1 ? "" : "s");
    if (st != MEMFIT_OK) {
        memfit_analysis_close(a);
        return st;
    }
    a->info.name = a->name;
    *out = a;
    return MEMFIT_OK;
}

enum memfit_status memfit_analysis_open(const char *path, const struct memfit_analyze_options *opts,
                                        memfit_analysis **out)
{
    if (!path || !out)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_analysis_open: NULL argument");
    FILE *f = fopen(path, "r");
    if (!f) {
        int e = errno;
        enum memfit_status st = e == ENOENT                   ? MEMFIT_E_NOT_FOUND
                                : (e == EACCES || e == EPERM) ? MEMFIT_E_PERMISSION
                                                              : MEMFIT_E_IO;
        return memfit_fail(st, "%s: %s", path, strerror(e));
    }
    enum memfit_status st = memfit_analysis_open_stream(f, path, opts, out);
    fclose(f);
    return st;
}

void memfit_analysis_get_info(const memfit_analysis *a, struct memfit_log_info *out)
{
    *out = a->info;
    out->first_malformed_reason = a->first_malformed_reason ? a->first_malformed_reason : "";
}

enum memfit_status memfit_analysis_get_run(const memfit_analysis *a, unsigned index,
                                           struct memfit_run_summary *out)
{
    if (index >= a->n_runs)
        return memfit_fail(MEMFIT_E_RANGE, "%s: run index %u, the log holds %zu run%s", a->name,
                           index, a->n_runs, a->n_runs == 1 ? "" : "s");
    *out = a->runs[index].summary;
    return MEMFIT_OK;
}

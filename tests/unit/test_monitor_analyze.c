/*
 * Unit tests of the monitor log analysis (src/monitor/analyze.c) on logs the
 * tests write themselves: a linear leak, steady and sawtooth memory, gaps,
 * a restarted pid, malformed lines, empty and start-only files, two runs,
 * exact statistics on hand-made inputs, the reports, and the allocation
 * fault walk.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>

#include "test_util.h"
#include "log_gen.h"
#include "monitor/analysis.h"

static memfit_analysis *open_ok(const char *path, const struct memfit_analyze_options *o)
{
    memfit_analysis *a = NULL;
    enum memfit_status st = memfit_analysis_open(path, o, &a);
    if (st != MEMFIT_OK)
        fprintf(stderr, "%s: %s\n", path, memfit_last_error());
    assert_int_equal(st, MEMFIT_OK);
    assert_non_null(a);
    return a;
}

static void selected(const memfit_analysis *a, struct memfit_run_summary *s)
{
    struct memfit_log_info info;
    memfit_analysis_get_info(a, &info);
    assert_int_equal(memfit_analysis_get_run(a, info.selected_run, s), MEMFIT_OK);
}

static const char *shape_log(enum gen_shape shape, int n, const char *name, char *buf, size_t size)
{
    FILE *f = gen_open(name, buf, size);
    gen_run(f, shape, n, 4000000000ULL);
    fclose(f);
    return buf;
}

static void test_linear_leak(void **state)
{
    (void)state;
    char path[300];
    shape_log(GEN_LEAK, 300, "leak.jsonl", path, sizeof(path));
    memfit_analysis *a = open_ok(path, NULL);
    struct memfit_run_summary s;
    selected(a, &s);
    assert_int_equal(s.n_samples, 300);
    const struct memfit_trend *t = &s.working_set_trend;
    double mb_per_hour = t->slope_bytes_per_s * 3600.0 / 1e6;
    assert_true(fabs(mb_per_hour - 36000.0) <= 0.02 * 36000.0);
    assert_true(t->r2 > 0.99);
    assert_int_equal(t->verdict, MEMFIT_LEAK_LIKELY);
    assert_int_equal(s.rss_trend.verdict, MEMFIT_LEAK_LIKELY);
    /* 10 % warm-up of 0.1 .. 30.0 s: the fit starts at the first t >= 3.09. */
    assert_true(fabs(t->fit_from_s - 3.1) < 1e-9);
    assert_int_equal(t->n_points, 270);
    /* Limit 4e9, at 350e6 by t = 30 s, 10 MB/s: about 365 s to go. */
    assert_true(fabs(t->limit_eta_s - 365.0) < 5.0);
    assert_int_equal(s.n_gaps, 0);
    assert_true(fabs(s.interval_s - 0.1) < 1e-12);
    assert_int_equal(s.limit_bytes, 4000000000ULL);
    assert_string_equal(s.command, "python3 train.py");
    assert_string_equal(s.hostname, "web-1");
    assert_string_equal(s.limit_source, "cgroup");
    assert_int_equal(s.pid, 100);
    memfit_analysis_close(a);
}

static void test_steady_and_sawtooth_are_no_leak(void **state)
{
    (void)state;
    char path[300];
    memfit_analysis *a =
        open_ok(shape_log(GEN_STEADY, 600, "steady.jsonl", path, sizeof(path)), NULL);
    struct memfit_run_summary s;
    selected(a, &s);
    assert_int_equal(s.working_set_trend.verdict, MEMFIT_LEAK_NONE);
    assert_true(s.working_set_trend.r2 < 0.5);
    assert_true(isnan(s.working_set_trend.limit_eta_s));
    memfit_analysis_close(a);

    a = open_ok(shape_log(GEN_SAWTOOTH, 600, "saw.jsonl", path, sizeof(path)), NULL);
    selected(a, &s);
    assert_int_equal(s.working_set_trend.verdict, MEMFIT_LEAK_NONE);
    assert_true(s.working_set.max - s.working_set.min > 90e6);
    memfit_analysis_close(a);
}

static void test_possible_leak_and_insufficient_data(void **state)
{
    (void)state;
    char path[300];
    FILE *f = gen_open("possible.jsonl", path, sizeof(path));
    gen_start(f, 1.0, 8000000000ULL);
    /* 1 MB/s with +-21 MB alternating noise: R^2 about 0.6 after warm-up. */
    for (int i = 0; i < 100; i++)
        gen_sample(f, i, 100e6 + 1e6 * i + (i % 2 ? 21e6 : -21e6), -1, 8000000000ULL, "ok", 1);
    fclose(f);
    memfit_analysis *a = open_ok(path, NULL);
    struct memfit_run_summary s;
    selected(a, &s);
    assert_true(s.working_set_trend.r2 >= 0.5 && s.working_set_trend.r2 < 0.8);
    assert_int_equal(s.working_set_trend.verdict, MEMFIT_LEAK_POSSIBLE);
    assert_false(isnan(s.working_set_trend.limit_eta_s));
    /* No RSS at all: "n/a", not zero. */
    assert_int_equal(s.rss.n, 0);
    assert_true(isnan(s.rss.mean));
    assert_int_equal(s.rss_trend.n_points, 0);
    memfit_analysis_close(a);

    /* 9 samples, or 30 samples over 3 s: too little for any verdict. */
    shape_log(GEN_LEAK, 9, "short.jsonl", path, sizeof(path));
    a = open_ok(path, NULL);
    selected(a, &s);
    assert_int_equal(s.working_set_trend.verdict, MEMFIT_LEAK_INSUFFICIENT_DATA);
    memfit_analysis_close(a);
    shape_log(GEN_LEAK, 30, "short2.jsonl", path, sizeof(path));
    a = open_ok(path, NULL);
    selected(a, &s);
    assert_int_equal(s.working_set_trend.verdict, MEMFIT_LEAK_INSUFFICIENT_DATA);
    assert_false(isnan(s.working_set_trend.slope_bytes_per_s)); /* still computed */
    memfit_analysis_close(a);
}

/* Statistics on four hand-made samples, exactly. */
static void test_exact_statistics(void **state)
{
    (void)state;
    char path[300];
    gen_file("exact.jsonl",
             "{\"type\":\"start\",\"t\":0,\"interval_s\":1,\"limit_bytes\":100}\n"
             "{\"type\":\"sample\",\"t\":0,\"working_set_bytes\":40,\"rss_bytes\":7,"
             "\"limit_bytes\":100,\"level\":\"ok\"}\n"
             "{\"type\":\"sample\",\"t\":1,\"working_set_bytes\":10,\"rss_bytes\":null,"
             "\"limit_bytes\":100,\"level\":\"warning\"}\n"
             "{\"type\":\"sample\",\"t\":2,\"working_set_bytes\":30,\"limit_bytes\":100,"
             "\"level\":\"warning\"}\n"
             "{\"type\":\"sample\",\"t\":3,\"working_set_bytes\":20,\"rss_bytes\":3,"
             "\"limit_bytes\":200,\"level\":\"critical\"}\n",
             path, sizeof(path));
    memfit_analysis *a = open_ok(path, NULL);
    struct memfit_run_summary s;
    selected(a, &s);
    assert_int_equal(s.working_set.n, 4);
    assert_true(s.working_set.min == 10.0 && s.working_set.max == 40.0);
    assert_true(s.working_set.mean == 25.0);
    assert_true(s.working_set.p50 == 25.0);              /* between 20 and 30 */
    assert_true(fabs(s.working_set.p95 - 38.5) < 1e-12); /* 30 + 0.85 x 10 */
    assert_int_equal(s.rss.n, 2);
    assert_true(s.rss.min == 3.0 && s.rss.max == 7.0 && s.rss.p50 == 5.0);
    assert_true(fabs(s.rss.p95 - 6.8) < 1e-12);
    /* Each sample counts until the next; the last counts nothing. */
    assert_true(s.level_seconds[0] == 1.0);
    assert_true(s.level_seconds[1] == 2.0);
    assert_true(s.level_seconds[2] == 0.0);
    assert_int_equal(s.n_level_changes, 2);
    assert_int_equal(s.limit_bytes, 200); /* the last known */
    assert_true(s.peak_percent == 40.0);
    assert_true(s.duration_s == 3.0);
    memfit_analysis_close(a);
}

static void test_gaps_and_level_time(void **state)
{
    (void)state;
    char path[300];
    FILE *f = gen_open("gaps.jsonl", path, sizeof(path));
    gen_start(f, 0.1, 1000000000ULL);
    for (int i = 1; i <= 200; i++) {
        if ((i > 50 && i <= 70) || (i > 120 && i <= 125))
            continue; /* 2.1 s and 0.6 s without samples */
        gen_sample(f, 0.1 * i, 100e6, 90e6, 1000000000ULL, i > 150 ? "warning" : "ok", 7);
    }
    fclose(f);
    memfit_analysis *a = open_ok(path, NULL);
    struct memfit_run_summary s;
    selected(a, &s);
    assert_int_equal(s.n_samples, 175);
    assert_int_equal(s.n_gaps, 2);
    assert_true(fabs(s.gap_total_s - 2.7) < 1e-9);
    double levels = 0.0;
    for (unsigned i = 0; i < MEMFIT_ANALYSIS_N_LEVELS; i++)
        levels += s.level_seconds[i];
    assert_true(fabs(levels + s.gap_total_s - (s.last_sample_s - s.first_sample_s)) < 1e-9);
    assert_true(fabs(s.level_seconds[1] - 4.9) < 1e-9);
    assert_int_equal(s.n_level_changes, 1);
    /* The series marks where the lines break. */
    const struct mf_series *ser = mf_analysis_series(a);
    assert_true(ser->samples[50].gap_before);
    assert_false(ser->samples[49].gap_before);
    /* Flat: no slope to speak of, R^2 undefined, no leak. */
    assert_true(isnan(s.working_set_trend.r2));
    assert_int_equal(s.working_set_trend.verdict, MEMFIT_LEAK_NONE);
    memfit_analysis_close(a);
}

static void test_pid_restart_oom_and_exit(void **state)
{
    (void)state;
    char path[300];
    FILE *f = gen_open("restart.jsonl", path, sizeof(path));
    gen_start(f, 0.5, 1000000000ULL);
    for (int i = 1; i <= 40; i++)
        gen_sample(f, 0.5 * i, 100e6, 90e6, 1000000000ULL, "ok",
                   i <= 20   ? 100
                   : i == 21 ? -1
                             : 200);
    gen_oom(f, 20.2);
    gen_exit(f, 20.3, 0, 9, 1);
    fclose(f);
    memfit_analysis *a = open_ok(path, NULL);
    struct memfit_run_summary s;
    selected(a, &s);
    assert_int_equal(s.n_pid_restarts, 1);
    assert_int_equal(s.pid_restarts[0].from_pid, 100);
    assert_int_equal(s.pid_restarts[0].to_pid, 200);
    assert_true(fabs(s.pid_restarts[0].t_s - 11.0) < 1e-9);
    assert_int_equal(s.n_oom_events, 1);
    assert_true(fabs(s.first_oom_s - 20.2) < 1e-9);
    assert_true(s.has_exit);
    assert_int_equal(s.exit_signal, 9);
    assert_false(s.exit_code_known);
    assert_true(s.oom_killed);
    assert_true(fabs(s.duration_s - 20.3) < 1e-9);
    memfit_analysis_close(a);

    /* An OOM kill known only from the exit record still counts once. */
    f = gen_open("exit-oom.jsonl", path, sizeof(path));
    gen_start(f, 1, 1000000000ULL);
    gen_sample(f, 1, 5e6, 5e6, 1000000000ULL, "ok", 1);
    gen_exit(f, 2, 0, 9, 1);
    fclose(f);
    a = open_ok(path, NULL);
    selected(a, &s);
    assert_int_equal(s.n_oom_events, 1);
    assert_true(s.first_oom_s == 2.0);
    assert_int_equal(mf_analysis_series(a)->n_oom, 1);
    memfit_analysis_close(a);
}

static const char malformed_log[] =
    "{\"type\":\"start\",\"t\":0,\"interval_s\":1,\"limit_bytes\":1000,\"pid\":\"odd\"}\n" /* 1 */
    "{\"type\":\"sample\",\"t\":1,\"working_set_bytes\":100}\n"                            /* 2 */
    "garbage\n"                                                                            /* 3 */
    "{\"type\":\"sample\",\"t\":2,\"working_set_b\n"                                       /* 4 */
    "{\"type\":\"sample\",\"t\":2,\"working_set_bytes\":\"x\"}\n"                          /* 5 */
    "\n"                                                                                   /* 6 */
    "{\"type\":\"sample\",\"t\":2}\n"                                                      /* 7 */
    "{\"t\":2,\"working_set_bytes\":5}\n"                                                  /* 8 */
    "[1,2,3]\n"                                                                            /* 9 */
    "{\"type\":\"sample\",\"working_set_bytes\":5}\n"                                      /* 10 */
    "{\"type\":\"sample\",\"t\":2,\"working_set_bytes\":200,\"rss_bytes\":true}\n"         /* 11 */
    "{\"type\":\"sample\",\"t\":2,\"working_set_bytes\":-5}\n"                             /* 12 */
    "{\"type\":\"gpu_note\",\"t\":2,\"x\":1}\n"                                            /* 13 */
    "{\"type\":\"sample\",\"t\":3,\"working_set_bytes\":300,\"level\":7}\n"                /* 14 */
    "{\"type\":\"sample\",\"t\":3,\"working_set_bytes\":300,\"process\":{\"pid\":1.5}}\n"  /* 15 */
    "{\"type\":\"sample\",\"t\":0.5,\"working_set_bytes\":300}\n"                          /* 16 */
    "{\"type\":\"level\",\"t\":3,\"from\":\"ok\",\"to\":\"warning\"}\n"                    /* 17 */
    "{\"type\":\"sample\",\"t\":4,\"working_set_bytes\":400,\"level\":\"nope\"}\n"         /* 18 */
    "  \r\n"                                                                               /* 19 */
    "{\"type\":\"sample\",\"t\":5,\"working_set_bytes\":500,\"wo";                         /* 20 */

static void test_malformed_lines(void **state)
{
    (void)state;
    char path[300];
    gen_file("malformed.jsonl", malformed_log, path, sizeof(path));
    memfit_analysis *a = open_ok(path, NULL);
    struct memfit_log_info info;
    memfit_analysis_get_info(a, &info);
    assert_int_equal(info.n_lines, 20);
    assert_int_equal(info.n_malformed, 13);
    static const uint64_t first[] = {3, 4, 5, 7, 8};
    for (int i = 0; i < MEMFIT_ANALYSIS_MAX_LISTED; i++)
        assert_int_equal(info.malformed_lines[i], first[i]);
    assert_non_null(strstr(info.first_malformed_reason, "line 3: not JSON"));
    assert_int_equal(info.n_unknown_types, 1);
    assert_int_equal(info.n_records, 4); /* start, two samples, level */
    assert_int_equal(info.n_samples, 2);
    struct memfit_run_summary s;
    selected(a, &s);
    assert_int_equal(s.n_samples, 2);
    assert_int_equal(s.pid, -1); /* the odd pid of the start is ignored */
    assert_true(s.working_set.max == 400.0);
    assert_true(s.level_seconds[4] == 3.0); /* level missing, then unknown */
    memfit_analysis_close(a);

    /* Each reason names the field. */
    struct {
        const char *line, *reason;
    } cases[] = {
        {"{\"type\":\"sample\",\"t\":1,\"working_set_bytes\":\"x\"}",
         "working_set_bytes is not a number"},
        {"{\"type\":\"sample\",\"t\":1}", "without working_set_bytes"},
        {"{\"type\":\"sample\",\"t\":1,\"working_set_bytes\":null}", "working_set_bytes is null"},
        {"{\"type\":\"sample\",\"t\":1,\"working_set_bytes\":1,\"limit_bytes\":{}}",
         "limit_bytes is not a number"},
        {"{\"type\":\"sample\",\"t\":-1,\"working_set_bytes\":1}", "t out of range"},
        {"{\"type\":1,\"t\":1}", "type is missing"},
        {"{\"type\":\"sample\",\"t\":1,\"t\":2,\"working_set_bytes\":1}", "not JSON"},
        {"{\"type\":\"sample\",\"t\":1,\"working_set_bytes\":1,\"process\":3}",
         "process is not an object"},
        {"{\"type\":\"sample\",\"t\":1,\"working_set_bytes\":2e19}",
         "working_set_bytes out of range"},
        {"{\"type\":\"sample\",\"t\":1e11,\"working_set_bytes\":1}", "t out of range"},
        {"{\"type\":\"sample\",\"t\":1,\"working_set_bytes\":1,\"rss_bytes\":-1}",
         "rss_bytes out of range"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        FILE *f = fmemopen((void *)cases[i].line, strlen(cases[i].line), "r");
        assert_non_null(f);
        assert_int_equal(memfit_analysis_open_stream(f, "mem", NULL, &a), MEMFIT_OK);
        fclose(f);
        memfit_analysis_get_info(a, &info);
        assert_int_equal(info.n_malformed, 1);
        if (!strstr(info.first_malformed_reason, cases[i].reason))
            fail_msg("%s: got '%s'", cases[i].line, info.first_malformed_reason);
        memfit_analysis_close(a);
    }
}

static void test_long_line_and_nul(void **state)
{
    (void)state;
    size_t n = (1u << 20) + 100;
    char *text = memfit_malloc(n + 200);
    assert_non_null(text);
    memset(text, ' ', n);
    memcpy(text, "{\"type\":\"x\",", 12);
    text[n - 1] = '\n';
    static const char tail[] = "{\"type\":\"sample\",\"t\":1,\"working_set_bytes\":1}\n"
                               "{\"type\":\"sample\",\"t\":2,\0\"working_set_bytes\":1}\n";
    memcpy(text + n, tail, sizeof(tail) - 1);
    FILE *f = fmemopen(text, n + sizeof(tail) - 1, "r");
    assert_non_null(f);
    memfit_analysis *a;
    assert_int_equal(memfit_analysis_open_stream(f, "long", NULL, &a), MEMFIT_OK);
    fclose(f);
    memfit_free(text);
    struct memfit_log_info info;
    memfit_analysis_get_info(a, &info);
    assert_int_equal(info.n_lines, 3);
    assert_int_equal(info.n_malformed, 2);
    assert_int_equal(info.n_samples, 1);
    assert_non_null(strstr(info.first_malformed_reason, "longer than"));
    struct memfit_run_summary s;
    selected(a, &s);
    assert_int_equal(s.start_line, 0); /* samples without a start: a run of their own */
    memfit_analysis_close(a);
}

static void test_empty_and_start_only(void **state)
{
    (void)state;
    char path[300];
    memfit_analysis *a = open_ok(gen_file("empty.jsonl", "", path, sizeof(path)), NULL);
    struct memfit_log_info info;
    memfit_analysis_get_info(a, &info);
    assert_int_equal(info.n_lines, 0);
    assert_int_equal(info.n_runs, 0);
    assert_int_equal(info.n_samples, 0);
    struct memfit_run_summary s;
    assert_int_equal(memfit_analysis_get_run(a, 0, &s), MEMFIT_E_RANGE);
    memfit_analysis_close(a);

    a = open_ok(gen_file("start.jsonl",
                         "{\"type\":\"start\",\"v\":1,\"t\":0,\"interval_s\":0.1,"
                         "\"limit_bytes\":1000}\n",
                         path, sizeof(path)),
                NULL);
    memfit_analysis_get_info(a, &info);
    assert_int_equal(info.n_runs, 1);
    assert_int_equal(info.n_samples, 0);
    selected(a, &s);
    assert_int_equal(s.n_samples, 0);
    assert_int_equal(s.working_set.n, 0);
    assert_int_equal(s.working_set_trend.verdict, MEMFIT_LEAK_INSUFFICIENT_DATA);
    assert_int_equal(s.limit_bytes, 1000);
    memfit_analysis_close(a);
}

static void test_two_runs(void **state)
{
    (void)state;
    char path[300];
    FILE *f = gen_open("two.jsonl", path, sizeof(path));
    gen_run(f, GEN_STEADY, 200, 1000000000ULL);
    gen_run(f, GEN_LEAK, 200, 1000000000ULL);
    gen_start(f, 0.1, 1000000000ULL); /* a third run that died before its first sample */
    fclose(f);
    memfit_analysis *a = open_ok(path, NULL);
    struct memfit_log_info info;
    memfit_analysis_get_info(a, &info);
    assert_int_equal(info.n_runs, 3);
    assert_int_equal(info.selected_run, 1); /* the last run with samples */
    struct memfit_run_summary s;
    selected(a, &s);
    assert_int_equal(s.number, 2);
    assert_int_equal(s.start_line, 202);
    assert_int_equal(s.working_set_trend.verdict, MEMFIT_LEAK_LIKELY);
    assert_int_equal(memfit_analysis_get_run(a, 0, &s), MEMFIT_OK);
    assert_int_equal(s.working_set_trend.verdict, MEMFIT_LEAK_NONE);
    assert_int_equal(s.n_samples, 200);
    memfit_analysis_close(a);

    struct memfit_analyze_options o = memfit_analyze_options_default();
    o.run = 1;
    a = open_ok(path, &o);
    memfit_analysis_get_info(a, &info);
    assert_int_equal(info.selected_run, 0);
    assert_int_equal(mf_analysis_series(a)->n_samples, 200);
    memfit_analysis_close(a);

    o.run = 4;
    a = NULL;
    assert_int_equal(memfit_analysis_open(path, &o, &a), MEMFIT_E_RANGE);
    assert_null(a);
    assert_non_null(strstr(memfit_last_error(), "run 4 asked, the log holds 3 runs"));
}

static void test_open_errors_and_options(void **state)
{
    (void)state;
    memfit_analysis *a = NULL;
    assert_int_equal(memfit_analysis_open("/nonexistent/x.jsonl", NULL, &a), MEMFIT_E_NOT_FOUND);
    assert_non_null(strstr(memfit_last_error(), "/nonexistent/x.jsonl"));
    char path[300];
    gen_path("", path, sizeof(path));
    assert_int_equal(memfit_analysis_open(path, NULL, &a), MEMFIT_E_IO); /* a folder */
    assert_null(a);
    struct memfit_analyze_options o = memfit_analyze_options_default();
    o.warmup_percent = 95;
    assert_int_equal(memfit_analysis_open(path, &o, &a), MEMFIT_E_RANGE);
    o = memfit_analyze_options_default();
    o.possible_leak_min_r2 = 0.9;
    assert_int_equal(memfit_analysis_open(path, &o, &a), MEMFIT_E_RANGE);
    assert_null(a);
    memfit_analysis_close(NULL);
    assert_string_equal(memfit_leak_verdict_name(MEMFIT_LEAK_POSSIBLE), "possible_leak");
    assert_string_equal(memfit_analysis_level_name(3), "danger");
    assert_null(memfit_analysis_level_name(5));
}

/* Writes a report into a string (tests only: open_memstream's buffer). */
static char *report(const memfit_analysis *a, bool json)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    enum memfit_status st =
        json ? memfit_analysis_write_json(a, f) : memfit_analysis_write_report(a, f);
    assert_int_equal(st, MEMFIT_OK);
    fclose(f);
    return text;
}

static void test_reports(void **state)
{
    (void)state;
    char path[300];
    FILE *f = gen_open("report.jsonl", path, sizeof(path));
    gen_run(f, GEN_STEADY, 50, 1000000000ULL);
    gen_run(f, GEN_LEAK, 300, 1000000000ULL);
    gen_oom(f, 30.05);
    gen_exit(f, 30.1, 0, 9, 1);
    fputs("not json\n", f);
    fclose(f);
    struct memfit_analyze_options o = memfit_analyze_options_default();
    memfit_analysis *a = open_ok(path, &o);
    char *text = report(a, false);
    assert_non_null(strstr(text, "run 2 of 2"));
    assert_null(strstr(text, "run 1 of 2"));
    assert_non_null(strstr(text, " MB/h, R\xC2\xB2 "));
    assert_non_null(strstr(text, ": leak; at this rate the limit is reached in ~"));
    assert_non_null(strstr(text, "killed by signal 9 (OOM-killed)"));
    assert_non_null(strstr(text, "1 malformed line (line 355)"));
    assert_non_null(strstr(text, "RSS"));
    free(text); /* lint: allow: open_memstream's buffer comes from libc */

    text = report(a, true);
    json_error_t err;
    json_t *root = json_loads(text, 0, &err);
    assert_non_null(root);
    assert_int_equal(json_integer_value(json_object_get(root, "memfit_analysis")), 1);
    assert_int_equal(json_integer_value(json_object_get(root, "runs_found")), 2);
    assert_int_equal(json_integer_value(json_object_get(root, "selected_run")), 2);
    json_t *runs = json_object_get(root, "runs");
    assert_int_equal(json_array_size(runs), 1);
    json_t *run = json_array_get(runs, 0);
    json_t *trend = json_object_get(json_object_get(run, "trend"), "working_set");
    assert_string_equal(json_string_value(json_object_get(trend, "verdict")), "leak");
    double slope = json_real_value(json_object_get(trend, "slope_mb_per_hour"));
    assert_true(fabs(slope - 36000.0) < 720.0);
    assert_true(json_is_true(json_object_get(json_object_get(run, "exit"), "oom_killed")));
    assert_int_equal(json_integer_value(json_object_get(run, "oom_events")), 1);
    json_decref(root);
    free(text); /* lint: allow: open_memstream's buffer comes from libc */
    memfit_analysis_close(a);

    o.all_runs = true;
    a = open_ok(path, &o);
    text = report(a, false);
    assert_non_null(strstr(text, "run 1 of 2"));
    assert_non_null(strstr(text, "run 2 of 2"));
    free(text); /* lint: allow: open_memstream's buffer comes from libc */
    text = report(a, true);
    root = json_loads(text, 0, &err);
    assert_non_null(root);
    assert_int_equal(json_array_size(json_object_get(root, "runs")), 2);
    /* No RSS and no exit in a run: null, not 0. */
    json_decref(root);
    free(text); /* lint: allow: open_memstream's buffer comes from libc */
    memfit_analysis_close(a);
}

struct walk_ctx {
    const char *path;
    memfit_analysis *a;
};

static enum memfit_status walk_open(void *p)
{
    struct walk_ctx *c = p;
    struct memfit_analyze_options o = memfit_analyze_options_default();
    o.run = 0;
    return memfit_analysis_open(c->path, &o, &c->a);
}

static void walk_close(void *p)
{
    struct walk_ctx *c = p;
    memfit_analysis_close(c->a);
    c->a = NULL;
}

static void test_alloc_failures(void **state)
{
    (void)state;
    char path[300];
    FILE *f = gen_open("walk.jsonl", path, sizeof(path));
    fputs("{\"type\":\"sample\",\"t\":0,\"working_set_bytes\":1}\n", f);
    gen_run(f, GEN_LEAK, 600, 1000000000ULL);
    gen_oom(f, 60.0);
    fputs("garbage\n{\"type\":\"mystery\",\"t\":1}\n", f);
    gen_run(f, GEN_SAWTOOTH, 300, 1000000000ULL);
    for (int i = 0; i < 20; i++)
        gen_oom(f, 30.0 + i);
    gen_exit(f, 51, 1, 0, 0);
    gen_start(f, 0.1, 1000);
    fclose(f);
    struct walk_ctx c = {path, NULL};
    unsigned n = mf_test_alloc_failures(walk_open, walk_close, &c);
    assert_true(n > 10);
}

/* ---- Periodic workloads, scope and windows -------------------------------- */

#define MIB (1024.0 * 1024.0)

/*
 * A trainer without a cgroup limit: every `period` s an epoch takes 100 MiB
 * for 70 % of the period and gives it back, and keeps `leak` bytes; RSS has
 * +-2 MiB noise. The machine's memory (in_use_bytes) wanders around 30 GB.
 * `scope` NULL leaves it out (a log written before it existed).
 */
static const char *trainer_log(const char *name, double period, double phase, double leak,
                               double seconds, const char *scope, char *buf, size_t size)
{
    FILE *f = gen_open(name, buf, size);
    fprintf(f,
            "{\"type\":\"start\",\"t\":0,\"time\":\"2026-11-23T19:40:00.000Z\",\"pid\":42,"
            "\"command\":[\"python3\",\"train.py\"],\"interval_s\":0.05,"
            "\"limit_bytes\":68719476736,\"limit_source\":\"memory\"%s%s%s}\n",
            scope ? ",\"scope\":\"" : "", scope ? scope : "", scope ? "\"" : "");
    for (int i = 1; i <= (int)(seconds / 0.05); i++) {
        double t = 0.05 * i, x = t / period + phase;
        double rss = 50 * MIB + leak * floor(x) + (x - floor(x) < 0.7 ? 100 * MIB : 0.0) +
                     2 * MIB * gen_noise();
        double machine = 30e9 + 1e8 * gen_noise();
        fprintf(f,
                "{\"type\":\"sample\",\"t\":%.3f,\"time\":\"x\",\"working_set_bytes\":%.0f,"
                "\"in_use_bytes\":%.0f,\"limit_bytes\":68719476736,\"rss_bytes\":%.0f,"
                "\"level\":\"ok\",\"process\":{\"pid\":42,\"rss_bytes\":%.0f}%s%s%s}\n",
                t, machine, scope && strcmp(scope, "process") == 0 ? rss : machine, rss, rss,
                scope ? ",\"scope\":\"" : "", scope ? scope : "", scope ? "\"" : "");
    }
    fclose(f);
    return buf;
}

static void test_periodic_leak(void **state)
{
    (void)state;
    char path[300];
    memfit_analysis *a = open_ok(
        trainer_log("epochs.jsonl", 2.0, 0.0, 12 * MIB, 60.0, NULL, path, sizeof(path)), NULL);
    struct memfit_run_summary s;
    selected(a, &s);
    /* The log names no scope: no cgroup limit and a process, so RSS is judged. */
    assert_int_equal(s.scope, MEMFIT_ANALYSIS_SCOPE_PROCESS);
    assert_true(s.scope_inferred);
    assert_true(s.judged_rss);
    const struct memfit_trend *t = &s.judged_trend;
    assert_int_equal(t->verdict, MEMFIT_LEAK_LIKELY);
    assert_true(t->per_period);
    assert_false(t->period_given);
    assert_true(fabs(t->period_s - 2.0) < 0.05 * 2.0);
    assert_true(t->n_periods >= 20 && t->n_periods <= 27);
    assert_true(fabs(t->period_growth_bytes - 12 * MIB) < 0.2 * 12 * MIB);
    assert_true(fabs(t->amplitude_bytes - 100 * MIB) < 0.2 * 100 * MIB);
    assert_true(t->period_strength > 0.5);
    /* The whole samples alone give a poor fit: the case of issue 16. */
    struct memfit_analyze_options o = memfit_analyze_options_default();
    o.period_s = -1.0;
    memfit_analysis *b = open_ok(path, &o);
    struct memfit_run_summary sb;
    selected(b, &sb);
    assert_false(sb.judged_trend.per_period);
    assert_true(isnan(sb.judged_trend.period_s));
    assert_true(sb.judged_trend.r2 < t->r2);
    memfit_analysis_close(b);
    memfit_analysis_close(a);

    /* The same epochs without a leak. */
    a = open_ok(trainer_log("epochs0.jsonl", 2.0, 0.0, 0.0, 60.0, NULL, path, sizeof(path)), NULL);
    selected(a, &s);
    assert_true(s.judged_trend.per_period);
    assert_int_equal(s.judged_trend.verdict, MEMFIT_LEAK_NONE);
    memfit_analysis_close(a);

    /* A period given by the user is used as it is. */
    o = memfit_analyze_options_default();
    o.period_s = 2.0;
    a = open_ok(trainer_log("epochs1.jsonl", 2.0, 0.4, 12 * MIB, 60.0, NULL, path, sizeof(path)),
                &o);
    selected(a, &s);
    assert_true(s.judged_trend.period_given);
    assert_true(s.judged_trend.period_s == 2.0);
    assert_int_equal(s.judged_trend.verdict, MEMFIT_LEAK_LIKELY);
    assert_true(fabs(s.judged_trend.period_growth_bytes - 12 * MIB) < 0.2 * 12 * MIB);
    memfit_analysis_close(a);
}

static void test_period_detection(void **state)
{
    (void)state;
    static const double periods[] = {0.4, 1.0, 2.5, 7.3};
    static const double phases[] = {0.0, 0.3, 0.77};
    for (size_t i = 0; i < sizeof(periods) / sizeof(periods[0]); i++) {
        for (size_t j = 0; j < sizeof(phases) / sizeof(phases[0]); j++) {
            char path[300];
            memfit_analysis *a =
                open_ok(trainer_log("period.jsonl", periods[i], phases[j], 12 * MIB,
                                    40.0 * periods[i] + 5.0, NULL, path, sizeof(path)),
                        NULL);
            struct memfit_run_summary s;
            selected(a, &s);
            const struct memfit_trend *t = &s.rss_trend;
            if (!(fabs(t->period_s - periods[i]) < 0.03 * periods[i]) ||
                t->verdict != MEMFIT_LEAK_LIKELY ||
                !(fabs(t->period_growth_bytes - 12 * MIB) < 0.2 * 12 * MIB))
                fail_msg("period %g phase %g: found %g, %s, %g MiB per period", periods[i],
                         phases[j], t->period_s, memfit_leak_verdict_name(t->verdict),
                         t->period_growth_bytes / MIB);
            /* The machine's noise has no period. */
            assert_true(isnan(s.working_set_trend.period_s));
            assert_int_equal(s.working_set_trend.verdict, MEMFIT_LEAK_NONE);
            memfit_analysis_close(a);
        }
    }
    /* A linear leak and a flat series: no period, verdicts as before. */
    char path[300];
    memfit_analysis *a = open_ok(shape_log(GEN_LEAK, 600, "lin.jsonl", path, sizeof(path)), NULL);
    struct memfit_run_summary s;
    selected(a, &s);
    assert_false(s.working_set_trend.per_period);
    assert_int_equal(s.working_set_trend.verdict, MEMFIT_LEAK_LIKELY);
    memfit_analysis_close(a);
    a = open_ok(shape_log(GEN_STEADY, 600, "flat.jsonl", path, sizeof(path)), NULL);
    selected(a, &s);
    assert_true(isnan(s.working_set_trend.period_s));
    assert_int_equal(s.working_set_trend.verdict, MEMFIT_LEAK_NONE);
    memfit_analysis_close(a);
}

static void test_scope(void **state)
{
    (void)state;
    char path[300];
    struct memfit_run_summary s;
    /* A log that names its scope: in_use_bytes is what the monitor judged. */
    memfit_analysis *a = open_ok(
        trainer_log("proc.jsonl", 2.0, 0.0, 12 * MIB, 30.0, "process", path, sizeof(path)), NULL);
    selected(a, &s);
    assert_int_equal(s.scope, MEMFIT_ANALYSIS_SCOPE_PROCESS);
    assert_false(s.scope_inferred);
    assert_false(s.judged_rss);
    assert_int_equal(s.judged_trend.verdict, MEMFIT_LEAK_LIKELY);
    assert_true(s.judged_trend.slope_bytes_per_s == s.working_set_trend.slope_bytes_per_s);
    memfit_analysis_close(a);
    a = open_ok(trainer_log("mach.jsonl", 2.0, 0.0, 12 * MIB, 30.0, "machine", path, sizeof(path)),
                NULL);
    selected(a, &s);
    assert_int_equal(s.scope, MEMFIT_ANALYSIS_SCOPE_MACHINE);
    assert_int_equal(s.judged_trend.verdict, MEMFIT_LEAK_NONE);
    memfit_analysis_close(a);
    /* A cgroup log without scope judges the cgroup's memory in use. */
    a = open_ok(shape_log(GEN_LEAK, 300, "cg.jsonl", path, sizeof(path)), NULL);
    selected(a, &s);
    assert_int_equal(s.scope, MEMFIT_ANALYSIS_SCOPE_CGROUP);
    assert_true(s.scope_inferred);
    assert_false(s.judged_rss);
    assert_string_equal(memfit_analysis_scope_name(s.scope), "cgroup");
    memfit_analysis_close(a);
    char text[160];
    s.scope = MEMFIT_ANALYSIS_SCOPE_PROCESS;
    s.pid = 42;
    mf_format_judged(&s, text, sizeof(text));
    assert_string_equal(text, "process tree of pid 42 (RSS), no cgroup limit");
}

static void test_window(void **state)
{
    (void)state;
    char path[300];
    shape_log(GEN_LEAK, 300, "win.jsonl", path, sizeof(path)); /* t = 0.1 .. 30.0 */
    struct memfit_analyze_options o = memfit_analyze_options_default();
    o.since_s = 5.0;
    o.until_s = 25.0;
    memfit_analysis *a = open_ok(path, &o);
    struct memfit_run_summary s;
    struct memfit_log_info info;
    selected(a, &s);
    memfit_analysis_get_info(a, &info);
    assert_int_equal(s.n_samples, 201);
    assert_int_equal(info.n_outside_window, 99);
    assert_true(fabs(s.first_sample_s - 5.0) < 1e-9 && fabs(s.last_sample_s - 25.0) < 1e-9);
    assert_true(fabs(s.duration_s - 20.0) < 1e-9);
    assert_true(s.window_from_s == 5.0 && s.window_to_s == 25.0);
    assert_int_equal(s.working_set_trend.verdict, MEMFIT_LEAK_LIKELY);
    memfit_analysis_close(a);

    /* Wall-clock bounds are placed by the start's time (19:40:00.123). */
    o = memfit_analyze_options_default();
    assert_int_equal(memfit_analysis_parse_time("2026-11-23T20:40:05.123+01:00", &o.since_unix_s),
                     MEMFIT_OK);
    a = open_ok(path, &o);
    selected(a, &s);
    assert_int_equal(s.n_samples, 251);
    assert_true(fabs(s.window_from_s - 5.0) < 1e-6);
    memfit_analysis_close(a);

    double u;
    assert_int_equal(memfit_analysis_parse_time("1970-01-02T00:00:01Z", &u), MEMFIT_OK);
    assert_true(u == 86401.0);
    assert_int_equal(memfit_analysis_parse_time("2000-03-01T00:00:00.5Z", &u), MEMFIT_OK);
    assert_true(u == 951868800.5);
    assert_int_equal(memfit_analysis_parse_time("2026-11-23", &u), MEMFIT_E_INVALID);
    assert_int_equal(memfit_analysis_parse_time("2026-13-01T00:00:00Z", &u), MEMFIT_E_INVALID);
    assert_int_equal(memfit_analysis_parse_time("2026-11-23T19:40:00", &u), MEMFIT_E_INVALID);

    o = memfit_analyze_options_default();
    o.since_s = 5.0;
    o.until_s = 1.0;
    a = NULL;
    assert_int_equal(memfit_analysis_open(path, &o, &a), MEMFIT_E_RANGE);
    assert_null(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear_leak),
        cmocka_unit_test(test_steady_and_sawtooth_are_no_leak),
        cmocka_unit_test(test_possible_leak_and_insufficient_data),
        cmocka_unit_test(test_exact_statistics),
        cmocka_unit_test(test_gaps_and_level_time),
        cmocka_unit_test(test_pid_restart_oom_and_exit),
        cmocka_unit_test(test_malformed_lines),
        cmocka_unit_test(test_long_line_and_nul),
        cmocka_unit_test(test_empty_and_start_only),
        cmocka_unit_test(test_two_runs),
        cmocka_unit_test(test_open_errors_and_options),
        cmocka_unit_test(test_reports),
        cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_periodic_leak),
        cmocka_unit_test(test_period_detection),
        cmocka_unit_test(test_scope),
        cmocka_unit_test(test_window),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    gen_cleanup();
    return rc;
}

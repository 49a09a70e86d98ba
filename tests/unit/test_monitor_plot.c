/*
 * Unit tests of the SVG chart (src/monitor/plot.c): every chart must be
 * well-formed XML (checked with xmllint, or Python's minidom) with no NaN or
 * infinity in it — for a leak with an OOM kill, a single sample, flat data,
 * huge values, no limit, hostile titles — and writing must go through a
 * temporary file that never survives a failure. Plus the fault walk.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <strings.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "test_util.h"
#include "log_gen.h"
#include "monitor/analysis.h"

static const char *xml_checker;

/* Well-formed XML, checked by whichever tool this machine has. */
static void assert_well_formed(const char *path)
{
    char cmd[600];
    if (!xml_checker)
        return;
    if (strcmp(xml_checker, "xmllint") == 0)
        snprintf(cmd, sizeof(cmd), "xmllint --noout '%s'", path);
    else
        snprintf(cmd, sizeof(cmd),
                 "/usr/bin/python3 -c 'import sys, xml.dom.minidom; "
                 "xml.dom.minidom.parse(sys.argv[1])' '%s'",
                 path);
    if (system(cmd) != 0)
        fail_msg("%s is not well-formed XML", path);
}

static memfit_analysis *analyze_text(const char *name, const char *text)
{
    char path[300];
    gen_file(name, text, path, sizeof(path));
    memfit_analysis *a = NULL;
    assert_int_equal(memfit_analysis_open(path, NULL, &a), MEMFIT_OK);
    return a;
}

/* Draws, checks the text, writes it through the library and checks the file. */
static char *draw(const memfit_analysis *a, const struct memfit_plot_options *o, const char *name)
{
    char *svg = NULL;
    size_t len = 0;
    enum memfit_status st = memfit_plot_svg(a, o, &svg, &len);
    if (st != MEMFIT_OK)
        fail_msg("%s: %s", name, memfit_last_error());
    assert_int_equal(strlen(svg), len);
    assert_true(strncmp(svg, "<?xml", 5) == 0);
    assert_non_null(strstr(svg, "</svg>\n"));
    /* No number went wrong on the way (printf writes nan, -nan, inf). */
    static const char *const bad[] = {"\"nan", " nan", "-nan", ">nan", "\"inf",
                                      " inf",  "-inf", ">inf", "\"-",  "e+"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (strcasestr(svg, bad[i]))
            fail_msg("%s: '%s' in the SVG", name, bad[i]);
    char path[300];
    gen_path(name, path, sizeof(path));
    assert_int_equal(memfit_plot_write_svg(a, o, path), MEMFIT_OK);
    assert_well_formed(path);
    return svg;
}

static void test_leak_chart(void **state)
{
    (void)state;
    char path[300];
    FILE *f = gen_open("leak.jsonl", path, sizeof(path));
    gen_run(f, GEN_LEAK, 400, 420000000ULL);
    gen_oom(f, 40.05);
    gen_exit(f, 40.1, 0, 9, 1);
    fclose(f);
    memfit_analysis *a = NULL;
    assert_int_equal(memfit_analysis_open(path, NULL, &a), MEMFIT_OK);
    char *svg = draw(a, NULL, "leak.svg");
    assert_non_null(strstr(svg, "Memory of python3 train.py"));
    assert_non_null(strstr(svg, ">leak</tspan>"));
    assert_non_null(strstr(svg, "OOM kill"));
    assert_non_null(strstr(svg, "limit 401 MiB"));
    assert_non_null(strstr(svg, "stroke-dasharray=\"7 5\"")); /* the trend */
    assert_non_null(strstr(svg, "warning \xE2\x89\xA5 80 %"));
    assert_non_null(strstr(svg, "started 2026-11-23 19:40:00 UTC on web-1"));
    assert_non_null(strstr(svg, "time since start (s)"));
    assert_non_null(strstr(svg, ">300 MiB<")); /* nice ticks */
    assert_non_null(strstr(svg, "width=\"1000\" height=\"500\""));
    memfit_free(svg);

    struct memfit_plot_options o = memfit_plot_options_default();
    o.width = 320;
    o.height = 240;
    o.title = "small";
    svg = draw(a, &o, "small.svg");
    assert_non_null(strstr(svg, ">small</text>"));
    memfit_free(svg);
    o.width = 319;
    assert_int_equal(memfit_plot_svg(a, &o, &svg, &(size_t){0}), MEMFIT_E_RANGE);
    memfit_analysis_close(a);
}

static void test_edge_cases(void **state)
{
    (void)state;
    /* One sample, no start: a dot, a 1 s axis. */
    memfit_analysis *a =
        analyze_text("one.jsonl", "{\"type\":\"sample\",\"t\":5,\"working_set_bytes\":1000000}\n");
    char *svg = draw(a, NULL, "one.svg");
    assert_non_null(strstr(svg, "<circle"));
    assert_non_null(strstr(svg, "Memory of one.jsonl"));
    assert_non_null(strstr(svg, "insufficient data"));
    memfit_free(svg);
    memfit_analysis_close(a);

    /* All zero: the scales must not divide by zero. */
    a = analyze_text("zero.jsonl", "{\"type\":\"start\",\"t\":0}\n"
                                   "{\"type\":\"sample\",\"t\":0,\"working_set_bytes\":0}\n"
                                   "{\"type\":\"sample\",\"t\":0,\"working_set_bytes\":0}\n");
    memfit_free(draw(a, NULL, "zero.svg"));
    memfit_analysis_close(a);

    /* Huge values and a limit far above the data (left off the scale). */
    a = analyze_text(
        "huge.jsonl",
        "{\"type\":\"start\",\"t\":0,\"limit_bytes\":9000000000000000000}\n"
        "{\"type\":\"sample\",\"t\":1,\"working_set_bytes\":1000000000000000000}\n"
        "{\"type\":\"sample\",\"t\":9000000,\"working_set_bytes\":2000000000000000000}\n");
    svg = draw(a, NULL, "huge.svg");
    assert_non_null(strstr(svg, "EiB"));
    assert_non_null(strstr(svg, "(off the scale)"));
    assert_non_null(strstr(svg, "time since start (h)"));
    memfit_free(svg);
    memfit_analysis_close(a);

    /* Flat data at a limit, every level, flapping. */
    char path[300];
    FILE *f = gen_open("flap.jsonl", path, sizeof(path));
    gen_start(f, 1, 1000);
    static const char *const levels[] = {"ok", "warning", "critical", "danger", "bogus"};
    for (int i = 0; i < 500; i++)
        gen_sample(f, i, 1000, -1, 1000, levels[i % 5], -1);
    fclose(f);
    a = NULL;
    assert_int_equal(memfit_analysis_open(path, NULL, &a), MEMFIT_OK);
    memfit_free(draw(a, NULL, "flap.svg"));
    memfit_analysis_close(a);

    /* No samples: nothing to draw, and nothing written. */
    a = analyze_text("none.jsonl", "{\"type\":\"start\",\"t\":0}\n");
    size_t len;
    assert_int_equal(memfit_plot_svg(a, NULL, &svg, &len), MEMFIT_E_NOT_FOUND);
    gen_path("none.svg", path, sizeof(path));
    assert_int_equal(memfit_plot_write_svg(a, NULL, path), MEMFIT_E_NOT_FOUND);
    struct stat st;
    assert_int_not_equal(stat(path, &st), 0);
    memfit_analysis_close(a);
}

static void test_text_is_escaped(void **state)
{
    (void)state;
    memfit_analysis *a =
        analyze_text("esc.jsonl", "{\"type\":\"start\",\"t\":0,\"hostname\":\"<h&\\u0001>\","
                                  "\"command\":[\"sh\",\"-c\",\"a < b && echo '\\\"'\"]}\n"
                                  "{\"type\":\"sample\",\"t\":1,\"working_set_bytes\":5}\n");
    char *svg = draw(a, NULL, "esc.svg");
    assert_non_null(strstr(svg, "&lt;h&amp;?&gt;"));
    assert_non_null(strstr(svg, "a &lt; b &amp;&amp; echo &apos;&quot;&apos;"));
    memfit_free(svg);
    struct memfit_plot_options o = memfit_plot_options_default();
    o.title = "bad \xff\xfe utf-8 \xe2\x82 and \xf0\x9f\x98\x80 and ]]> <![CDATA[";
    svg = draw(a, &o, "esc2.svg");
    assert_non_null(strstr(svg, "bad ?? utf-8 ?? and \xf0\x9f\x98\x80 and ]]&gt; &lt;![CDATA["));
    memfit_free(svg);
    memfit_analysis_close(a);
}

/* Counts the entries of the scratch folder whose name contains `part`. */
static int count_files(const char *part)
{
    char dir[300];
    gen_path("", dir, sizeof(dir));
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += strstr(e->d_name, part) != NULL;
    closedir(d);
    return n;
}

static void test_write_is_atomic(void **state)
{
    (void)state;
    memfit_analysis *a =
        analyze_text("w.jsonl", "{\"type\":\"sample\",\"t\":1,\"working_set_bytes\":1}\n"
                                "{\"type\":\"sample\",\"t\":2,\"working_set_bytes\":2}\n");
    char path[300];
    gen_path("out.svg", path, sizeof(path));
    gen_file("out.svg", "old", path, sizeof(path));
    assert_int_equal(memfit_plot_write_svg(a, NULL, path), MEMFIT_OK);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(st.st_size > 1000);
    assert_int_equal(count_files(".tmp."), 0);

    assert_int_equal(memfit_plot_write_svg(a, NULL, "/nonexistent-dir/x.svg"), MEMFIT_E_NOT_FOUND);
    assert_non_null(strstr(memfit_last_error(), "/nonexistent-dir/x.svg"));
    /* A folder in the way of the rename: the temporary file is removed. */
    char dir[300];
    gen_path("adir.svg", dir, sizeof(dir));
    assert_int_equal(mkdir(dir, 0755), 0);
    char inner[320];
    snprintf(inner, sizeof(inner), "%s/x", dir);
    gen_file("adir.svg/x", "", inner, sizeof(inner));
    assert_int_not_equal(memfit_plot_write_svg(a, NULL, dir), MEMFIT_OK);
    assert_int_equal(count_files(".tmp."), 0);
    memfit_analysis_close(a);
}

struct walk_ctx {
    memfit_analysis *a;
    char *svg;
    const char *path;
};

static enum memfit_status walk_svg(void *p)
{
    struct walk_ctx *c = p;
    size_t len;
    return memfit_plot_svg(c->a, NULL, &c->svg, &len);
}

static void walk_svg_free(void *p)
{
    struct walk_ctx *c = p;
    memfit_free(c->svg);
    c->svg = NULL;
}

static enum memfit_status walk_write(void *p)
{
    struct walk_ctx *c = p;
    return memfit_plot_write_svg(c->a, NULL, c->path);
}

static void test_alloc_failures(void **state)
{
    (void)state;
    char path[300];
    FILE *f = gen_open("walk.jsonl", path, sizeof(path));
    gen_run(f, GEN_LEAK, 3000, 4000000000ULL);
    gen_oom(f, 300.1);
    fclose(f);
    struct walk_ctx c = {NULL, NULL, NULL};
    assert_int_equal(memfit_analysis_open(path, NULL, &c.a), MEMFIT_OK);
    assert_true(mf_test_alloc_failures(walk_svg, walk_svg_free, &c) > 2);
    char out[300];
    c.path = gen_path("walk.svg", out, sizeof(out));
    assert_true(mf_test_alloc_failures(walk_write, NULL, &c) > 2);
    assert_int_equal(count_files(".tmp."), 0);
    memfit_analysis_close(c.a);
}

int main(void)
{
    if (system("xmllint --version >/dev/null 2>&1") == 0)
        xml_checker = "xmllint";
    else if (system("/usr/bin/python3 -c 'import xml.dom.minidom' >/dev/null 2>&1") == 0)
        xml_checker = "python3";
    else
        printf("note: neither xmllint nor /usr/bin/python3: XML well-formedness not checked\n");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_leak_chart),      cmocka_unit_test(test_edge_cases),
        cmocka_unit_test(test_text_is_escaped), cmocka_unit_test(test_write_is_atomic),
        cmocka_unit_test(test_alloc_failures),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    gen_cleanup();
    return rc;
}

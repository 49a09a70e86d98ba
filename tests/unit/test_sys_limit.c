/* Unit tests of the effective memory limit (memfit_limit_*): the rule on
 * made-up values, on fixture trees copied from real systems, and the report
 * and the monitor's samples agreeing with it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "memfit/monitor.h"
#include "memfit/sys.h"
#include "test_util.h"

#define MIB (1024ull * 1024)
#define GIB (1024ull * MIB)

static const char *fixture(const char *name)
{
    static char buf[1024];
    char rel[256];
    snprintf(rel, sizeof(rel), "sys/%s", name);
    return mf_test_fixture(rel, buf, sizeof(buf));
}

static void expect_limit(const char *name, enum memfit_limit_kind kind, uint64_t bytes,
                         const char *text)
{
    struct memfit_limit l;
    assert_int_equal(memfit_limit_read(fixture(name), 0, &l), MEMFIT_OK);
    assert_int_equal(l.kind, kind);
    assert_int_equal(l.bytes, bytes);
    assert_string_equal(l.text, text);
}

static void test_limit_fixtures(void **state)
{
    (void)state;
    expect_limit("v2_limit", MEMFIT_LIMIT_KIND_CGROUP, GIB, "cgroup limit 1.00 GiB");
    /* The parent's 1 GiB is tighter than the pod's own 2 GiB. */
    expect_limit("v2_nested", MEMFIT_LIMIT_KIND_CGROUP, GIB, "cgroup limit 1.00 GiB");
    expect_limit("v2_container", MEMFIT_LIMIT_KIND_CGROUP, 512 * MIB, "cgroup limit 512 MiB");
    expect_limit("v2_nolimit", MEMFIT_LIMIT_KIND_MEMORY, 8 * GIB, "physical memory 8.00 GiB");
    expect_limit("no_cgroup", MEMFIT_LIMIT_KIND_MEMORY, 8 * GIB, "physical memory 8.00 GiB");
    /* Nothing readable is not an error: kind NONE. */
    expect_limit("does_not_exist", MEMFIT_LIMIT_KIND_NONE, MEMFIT_SYS_UNKNOWN,
                 "no known memory limit");
    struct memfit_limit l;
    assert_int_equal(memfit_limit_read(fixture("v2_limit"), 4242, &l), MEMFIT_E_NOT_FOUND);
    assert_string_equal(memfit_last_error(), "no process with pid 4242");
    assert_int_equal(memfit_limit_read(NULL, 0, NULL), MEMFIT_E_MISUSE);
}

static void test_limit_choose(void **state)
{
    (void)state;
    struct memfit_cgroup cg;
    struct memfit_meminfo mi;
    struct memfit_limit l;
    memset(&cg, 0, sizeof(cg));
    memset(&mi, 0, sizeof(mi));
    mi.total_bytes = 4 * GIB;
    cg.limit_bytes = 2 * GIB;
    memfit_limit_choose(&cg, &mi, &l);
    assert_int_equal(l.kind, MEMFIT_LIMIT_KIND_CGROUP);
    assert_int_equal(l.bytes, 2 * GIB);
    assert_string_equal(l.text, "cgroup limit 2.00 GiB");
    /* A cgroup limit at or above MemTotal holds nothing back. */
    cg.limit_bytes = 4 * GIB;
    memfit_limit_choose(&cg, &mi, &l);
    assert_int_equal(l.kind, MEMFIT_LIMIT_KIND_MEMORY);
    assert_string_equal(l.text, "physical memory 4.00 GiB");
    cg.limit_bytes = 64 * GIB;
    memfit_limit_choose(&cg, &mi, &l);
    assert_int_equal(l.bytes, 4 * GIB);
    cg.limit_bytes = MEMFIT_SYS_UNKNOWN;
    memfit_limit_choose(&cg, &mi, &l);
    assert_int_equal(l.kind, MEMFIT_LIMIT_KIND_MEMORY);
    /* Either side may be missing. */
    cg.limit_bytes = 300 * MIB;
    memfit_limit_choose(&cg, NULL, &l);
    assert_int_equal(l.kind, MEMFIT_LIMIT_KIND_CGROUP);
    assert_string_equal(l.text, "cgroup limit 300 MiB");
    memfit_limit_choose(NULL, &mi, &l);
    assert_int_equal(l.kind, MEMFIT_LIMIT_KIND_MEMORY);
    memfit_limit_choose(NULL, NULL, &l);
    assert_int_equal(l.kind, MEMFIT_LIMIT_KIND_NONE);
    assert_int_equal(l.bytes, MEMFIT_SYS_UNKNOWN);
    assert_string_equal(memfit_limit_kind_name(MEMFIT_LIMIT_KIND_CGROUP), "cgroup limit");
}

/* The report and the monitor's samples take their limit from the same rule. */
static void test_limit_report_and_sample_agree(void **state)
{
    (void)state;
    const char *cases[] = {"v2_limit", "v2_nested", "v2_nolimit", "v1_limit", "no_cgroup"};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char root[1024];
        snprintf(root, sizeof(root), "%s", fixture(cases[i]));
        struct memfit_limit l;
        assert_int_equal(memfit_limit_read(root, 0, &l), MEMFIT_OK);
        const char *source = l.kind == MEMFIT_LIMIT_KIND_CGROUP ? "cgroup" : "memory";

        struct memfit_report_options ro;
        memfit_report_options_default(&ro);
        ro.root = root;
        ro.gpu = false;
        ro.top_n = 0;
        struct memfit_report *r = memfit_calloc(1, sizeof(*r));
        assert_non_null(r);
        assert_int_equal(memfit_report_collect(&ro, r), MEMFIT_OK);
        assert_int_equal(r->limit_bytes, l.bytes);
        assert_string_equal(r->limit_source, source);

        struct memfit_sampler_options so = memfit_sampler_options_default();
        so.root = root;
        so.gpu = false;
        memfit_sampler *s;
        assert_int_equal(memfit_sampler_create(&so, &s), MEMFIT_OK);
        struct memfit_sample *sample = memfit_calloc(1, sizeof(*sample));
        assert_non_null(sample);
        assert_int_equal(memfit_sampler_read(s, sample), MEMFIT_OK);
        assert_int_equal(sample->limit_bytes, l.bytes);
        assert_int_equal(sample->limit_source, l.kind == MEMFIT_LIMIT_KIND_CGROUP
                                                   ? MEMFIT_LIMIT_CGROUP
                                                   : MEMFIT_LIMIT_MEMORY);
        assert_int_equal(sample->working_set_bytes, r->working_set_bytes);
        memfit_free(sample);
        memfit_sampler_destroy(s);
        memfit_free(r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limit_fixtures),
        cmocka_unit_test(test_limit_choose),
        cmocka_unit_test(test_limit_report_and_sample_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests of src/core: statuses, allocator wrapper and fault injection,
 * logging, configuration (.env and aliases), and the shared parsers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/dynlib.h"
#include "test_util.h"

static void test_status_names(void **state)
{
    (void)state;
    assert_string_equal(memfit_status_name(MEMFIT_E_NOMEM), "MEMFIT_E_NOMEM");
    assert_string_equal(memfit_status_message(MEMFIT_E_BUDGET), "memory budget exceeded");
    assert_int_equal(MEMFIT_E_TOO_LARGE, 18); /* values reach files and the wire */
    assert_string_equal(memfit_status_name(MEMFIT_E_TOO_LARGE), "MEMFIT_E_TOO_LARGE");
    assert_string_equal(memfit_status_message(MEMFIT_E_TOO_LARGE), "larger than the memory budget");
    assert_string_equal(memfit_status_name((enum memfit_status)999), "MEMFIT_UNKNOWN");
    assert_int_equal(memfit_fail(MEMFIT_E_IO, "x: %d", 42), MEMFIT_E_IO);
    assert_string_equal(memfit_last_error(), "x: 42");
    /* Wrapping the previous message with context must not corrupt it. */
    memfit_fail(MEMFIT_E_IO, "outer: %s", memfit_last_error());
    assert_string_equal(memfit_last_error(), "outer: x: 42");
    memfit_clear_error();
    assert_string_equal(memfit_last_error(), "");
}

static void test_alloc_counts_and_injection(void **state)
{
    (void)state;
    struct memfit_alloc_stats before, after;
    memfit_alloc_get_stats(&before);
    char *p = memfit_malloc_in(MEMFIT_ALLOC_SYS, 100);
    assert_non_null(p);
    memfit_alloc_get_stats(&after);
    assert_int_equal(after.live_bytes[MEMFIT_ALLOC_SYS] - before.live_bytes[MEMFIT_ALLOC_SYS], 100);
    p = memfit_realloc(p, 1000);
    assert_non_null(p);
    memfit_alloc_get_stats(&after);
    assert_int_equal(after.live_bytes[MEMFIT_ALLOC_SYS] - before.live_bytes[MEMFIT_ALLOC_SYS],
                     1000);

    mf_alloc_fail_after(1, false);
    void *q = memfit_realloc(p, 5000);
    assert_null(q); /* old block stays valid */
    assert_string_equal(memfit_last_error(), "out of memory allocating 5000 bytes");
    memfit_free(p);
    memfit_alloc_get_stats(&after);
    assert_int_equal(after.live_bytes[MEMFIT_ALLOC_SYS], before.live_bytes[MEMFIT_ALLOC_SYS]);

    mf_alloc_fail_after(2, true);
    void *a = memfit_malloc(1);
    assert_non_null(a);
    assert_null(memfit_malloc(1));
    assert_null(memfit_calloc(1, 1));
    assert_int_equal(mf_alloc_injected_failures(), 2);
    mf_alloc_fail_after(0, false);
    memfit_free(a);
    assert_null(memfit_calloc(SIZE_MAX / 2, 4)); /* overflow */
    char *s = memfit_asprintf("%s-%d", "ab", 7);
    assert_string_equal(s, "ab-7");
    memfit_free(s);
}

/* How many of `n` allocations fail under the schedule armed now (a bitmask of the first 64). */
static unsigned count_failures(unsigned n, uint64_t *mask)
{
    unsigned failed = 0;
    *mask = 0;
    for (unsigned i = 0; i < n; i++) {
        void *p = memfit_malloc(8);
        if (!p && i < 64)
            *mask |= UINT64_C(1) << i;
        failed += !p;
        memfit_free(p);
    }
    return failed;
}

static void test_alloc_fault_schedules(void **state)
{
    (void)state;
    static const char *const bad[] = {"",
                                      "every",
                                      "every=0",
                                      "every=x",
                                      "after=-1",
                                      "random=0",
                                      "random=101",
                                      "seed=3",
                                      "every=2,after=3",
                                      "every=2,seed=1",
                                      "bogus=1",
                                      "every=2,",
                                      "random=5,seed=1,seed=2"};
    struct memfit_alloc_faults f;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(memfit_alloc_faults_parse(bad[i], &f), MEMFIT_E_RANGE);
        assert_non_null(strstr(memfit_last_error(), "fault schedule"));
    }
    uint64_t mask;
    assert_int_equal(memfit_alloc_faults_parse("every=3", &f), MEMFIT_OK);
    memfit_alloc_faults_arm(&f);
    assert_int_equal(count_failures(30, &mask), 10);
    assert_int_equal(mask, 04444444444); /* the 3rd, 6th, ... */
    assert_int_equal(memfit_alloc_faults_injected(), 10);
    memfit_alloc_faults_toggle(); /* off */
    assert_int_equal(count_failures(30, &mask), 0);
    memfit_alloc_faults_toggle(); /* on again, where it was */
    assert_int_equal(count_failures(3, &mask), 1);

    assert_int_equal(memfit_alloc_faults_parse("after=5", &f), MEMFIT_OK);
    memfit_alloc_faults_arm(&f);
    assert_int_equal(count_failures(20, &mask), 1);
    assert_int_equal(mask, 1u << 4);

    /* random: about the share asked, the same for the same seed. */
    assert_int_equal(memfit_alloc_faults_parse("random=10%,seed=7", &f), MEMFIT_OK);
    memfit_alloc_faults_arm(&f);
    uint64_t first;
    unsigned n = count_failures(2000, &first);
    assert_true(n > 120 && n < 280);
    memfit_alloc_faults_arm(&f);
    assert_int_equal(count_failures(2000, &mask), n);
    assert_int_equal(mask, first);
    memfit_alloc_faults_arm(NULL);
    assert_int_equal(count_failures(100, &mask), 0);
}

static char log_seen[256];
static void capture_sink(enum memfit_log_level level, const char *message, void *user)
{
    (void)user;
    snprintf(log_seen, sizeof(log_seen), "%s:%s", memfit_log_level_name(level), message);
}

static void test_logging(void **state)
{
    (void)state;
    memfit_log_set_sink(capture_sink, NULL);
    memfit_log_set_level(MEMFIT_LOG_WARN);
    log_seen[0] = '\0';
    memfit_log(MEMFIT_LOG_INFO, "hidden");
    assert_string_equal(log_seen, "");
    memfit_log(MEMFIT_LOG_ERROR, "shown %d", 1);
    assert_string_equal(log_seen, "error:shown 1");

    setenv("LOG_LEVEL", "debug", 1);
    assert_int_equal(memfit_log_level_from_config(), MEMFIT_OK);
    assert_int_equal(memfit_log_get_level(), MEMFIT_LOG_DEBUG);
    setenv("MEMFIT_LOG_LEVEL", "loud", 1);
    assert_int_equal(memfit_log_level_from_config(), MEMFIT_E_RANGE);
    assert_non_null(strstr(memfit_last_error(), "loud"));
    unsetenv("MEMFIT_LOG_LEVEL");
    unsetenv("LOG_LEVEL");
    memfit_log_set_sink(NULL, NULL);
}

static const char *write_file(const char *name, const char *text)
{
    FILE *f = fopen(name, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return name;
}

static void test_dotenv_and_aliases(void **state)
{
    (void)state;
    const char *path = write_file("test_core.env", "# comment\n"
                                                   "\n"
                                                   "export MAX_MEMORY_USAGE_MB=512\n"
                                                   "MEMFIT_CACHE_DIR = \"/tmp/a b\" # trailing\n"
                                                   "AWS_REGION='eu-west-1'\n"
                                                   "PLAIN=value # note\n");
    assert_int_equal(memfit_config_load_dotenv(path), MEMFIT_OK);
    unsetenv("MEMFIT_MAX_MEMORY_MB");
    unsetenv("MAX_MEMORY_USAGE_MB");
    assert_string_equal(memfit_config_get("MEMFIT_MAX_MEMORY_MB"), "512");
    assert_string_equal(memfit_config_get("MEMFIT_CACHE_DIR"), "/tmp/a b");
    assert_string_equal(memfit_config_get("AWS_REGION"), "eu-west-1");
    assert_string_equal(memfit_config_get("PLAIN"), "value");
    /* The environment wins over .env, and the MEMFIT_ name over its alias. */
    setenv("MAX_MEMORY_USAGE_MB", "256", 1);
    assert_string_equal(memfit_config_get("MEMFIT_MAX_MEMORY_MB"), "256");
    setenv("MEMFIT_MAX_MEMORY_MB", "128", 1);
    assert_string_equal(memfit_config_get("MEMFIT_MAX_MEMORY_MB"), "128");
    unsetenv("MEMFIT_MAX_MEMORY_MB");
    unsetenv("MAX_MEMORY_USAGE_MB");

    /* A malformed file replaces nothing and names the line. */
    write_file("bad.env", "A=1\nthis line is wrong\n");
    assert_int_equal(memfit_config_load_dotenv("bad.env"), MEMFIT_E_FORMAT);
    assert_string_equal(memfit_last_error(), "bad.env:2: expected KEY=VALUE");
    assert_string_equal(memfit_config_get("PLAIN"), "value");
    write_file("bad2.env", "A=\"open\n");
    assert_int_equal(memfit_config_load_dotenv("bad2.env"), MEMFIT_E_FORMAT);
    assert_int_equal(memfit_config_load_dotenv("does-not-exist.env"), MEMFIT_OK);
    assert_null(memfit_config_get("PLAIN"));
    memfit_config_reset();
    remove("test_core.env");
    remove("bad.env");
    remove("bad2.env");
}

static enum memfit_status load_env_op(void *ctx)
{
    return memfit_config_load_dotenv((const char *)ctx);
}

static void reset_op(void *ctx)
{
    (void)ctx;
    memfit_config_reset();
}

static void test_dotenv_alloc_failures(void **state)
{
    (void)state;
    const char *path = write_file("fault.env", "A=1\nB=2\nC=3\n");
    unsigned steps = mf_test_alloc_failures(load_env_op, reset_op, (void *)path);
    assert_true(steps >= 4);
    remove(path);
}

static void test_parse_size(void **state)
{
    (void)state;
    uint64_t v;
    assert_int_equal(memfit_parse_size("4096", &v), MEMFIT_OK);
    assert_int_equal(v, 4096);
    assert_int_equal(memfit_parse_size("50MB", &v), MEMFIT_OK);
    assert_int_equal(v, 50000000);
    assert_int_equal(memfit_parse_size("512MiB", &v), MEMFIT_OK);
    assert_int_equal(v, 512ull << 20);
    assert_int_equal(memfit_parse_size("1.5gb", &v), MEMFIT_OK);
    assert_int_equal(v, 1500000000ull);
    assert_int_equal(memfit_parse_size("2 G", &v), MEMFIT_OK);
    assert_int_equal(v, 2ull << 30);
    const char *bad[] = {"",     "-1",  "MB",  "12XB", "1e9",
                         "0x10", "inf", "nan", "1..2", "99999999999999999999999TB"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(memfit_parse_size(bad[i], &v), MEMFIT_E_RANGE);
        assert_non_null(strstr(memfit_last_error(), "invalid size"));
    }
}

static void test_parse_duration_percent_int(void **state)
{
    (void)state;
    uint64_t ns;
    assert_int_equal(memfit_parse_duration("0.1", &ns), MEMFIT_OK);
    assert_int_equal(ns, 100000000);
    assert_int_equal(memfit_parse_duration("100ms", &ns), MEMFIT_OK);
    assert_int_equal(ns, 100000000);
    assert_int_equal(memfit_parse_duration("5m", &ns), MEMFIT_OK);
    assert_int_equal(ns, 300000000000ull);
    assert_int_equal(memfit_parse_duration("1s", &ns), MEMFIT_OK);
    assert_int_equal(ns, 1000000000);
    assert_int_equal(memfit_parse_duration("5 parsecs", &ns), MEMFIT_E_RANGE);
    assert_int_equal(memfit_parse_duration("-1s", &ns), MEMFIT_E_RANGE);

    double pct;
    assert_int_equal(memfit_parse_percent("80", &pct), MEMFIT_OK);
    assert_true(pct == 80.0);
    assert_int_equal(memfit_parse_percent("92.5%", &pct), MEMFIT_OK);
    assert_true(pct == 92.5);
    assert_int_equal(memfit_parse_percent("101", &pct), MEMFIT_E_RANGE);
    assert_int_equal(memfit_parse_percent("eighty", &pct), MEMFIT_E_RANGE);

    long long n;
    assert_int_equal(memfit_parse_int("42", 0, 100, &n), MEMFIT_OK);
    assert_int_equal(n, 42);
    assert_int_equal(memfit_parse_int("420", 0, 100, &n), MEMFIT_E_RANGE);
    assert_int_equal(memfit_parse_int("4x", 0, 100, &n), MEMFIT_E_RANGE);
    assert_int_equal(memfit_parse_int("", 0, 100, &n), MEMFIT_E_RANGE);
    assert_int_equal(memfit_parse_int(" 4", 0, 100, &n), MEMFIT_E_RANGE);

    char buf[32];
    assert_string_equal(memfit_format_size(37, buf, sizeof(buf)), "37 B");
    assert_string_equal(memfit_format_size(1536, buf, sizeof(buf)), "1.50 KiB");
    assert_string_equal(memfit_format_size(512ull << 20, buf, sizeof(buf)), "512 MiB");
}

static void test_anon_mapping(void **state)
{
    (void)state;
    struct memfit_alloc_stats before, after;
    memfit_alloc_get_stats(&before);
    char *p = mf_map_anon(1 << 20);
    assert_non_null(p);
    p[0] = 1;
    p[(1 << 20) - 1] = 2;
    memfit_alloc_get_stats(&after);
    assert_int_equal(after.total_live_bytes - before.total_live_bytes, 1 << 20);
    mf_unmap_anon(p, 1 << 20);
    memfit_alloc_get_stats(&after);
    assert_int_equal(after.total_live_bytes, before.total_live_bytes);
    mf_alloc_fail_after(1, false);
    assert_null(mf_map_anon(4096));
    mf_alloc_fail_after(0, false);
}

static void (*fake_fn)(void);
static int (*real_puts)(const char *);

static void test_dynlib(void **state)
{
    (void)state;
    static const struct mf_dl_symbol missing_syms[] = {{"whatever", &fake_fn}};
    static struct mf_dl_library missing =
        MF_DL_LIBRARY("libmemfit-does-not-exist.so.9", "memfit-nothing", "to test", missing_syms);
    assert_int_equal(mf_dl_load(&missing), MEMFIT_E_UNSUPPORTED);
    assert_string_equal(memfit_last_error(), "libmemfit-does-not-exist.so.9 not found (install "
                                             "memfit-nothing to test)");
    assert_int_equal(mf_dl_load(&missing), MEMFIT_E_UNSUPPORTED); /* remembered */

    static const struct mf_dl_symbol bad_syms[] = {{"no_such_symbol_in_libc", &fake_fn}};
    static struct mf_dl_library bad = MF_DL_LIBRARY("libc.so.6", "libc6", "to test", bad_syms);
    assert_int_equal(mf_dl_load(&bad), MEMFIT_E_UNSUPPORTED);
    assert_non_null(strstr(memfit_last_error(), "symbol no_such_symbol_in_libc missing"));

    static const struct mf_dl_symbol good_syms[] = {{"puts", &real_puts}};
    static struct mf_dl_library good = MF_DL_LIBRARY("libc.so.6", "libc6", "to test", good_syms);
    assert_int_equal(mf_dl_load(&good), MEMFIT_OK);
    assert_non_null(real_puts);
}

/* Dropping libc's resident code pages is safe: they come back on use. */
static void test_dynlib_release_pages(void **state)
{
    (void)state;
    static const char *const libc[] = {"libc.so"};
    size_t released = mf_dl_release_clean_pages(libc, 1);
    if (access("/proc/self/pagemap", R_OK) == 0)
        assert_true(released > 0);
    char buf[32];
    snprintf(buf, sizeof(buf), "%d-%s", 42, "ok");
    assert_string_equal(buf, "42-ok");
    static const char *const none[] = {"libmemfit-does-not-exist"};
    assert_int_equal(mf_dl_release_clean_pages(none, 1), 0);
}

/* Each parallel_for job adds 1 to every slot of its range: after all jobs every slot must hold
 * the job count, and each call must see the previous call's writes. */
struct pool_job {
    uint32_t *slots;
    uint32_t round;
    unsigned bad;
};

static void pool_fn(void *ctx, uint64_t begin, uint64_t end, unsigned thread)
{
    struct pool_job *j = ctx;
    (void)thread;
    for (uint64_t i = begin; i < end; i++) {
        if (j->slots[i] != j->round) /* the previous job's write is visible */
            __atomic_fetch_add(&j->bad, 1, __ATOMIC_RELAXED);
        j->slots[i]++;
    }
}

/* Back-to-back jobs (the polling path), jobs with pauses between them (the sleeping path), with
 * polling on and off (MEMFIT_POOL_SPIN=0), and sizes below and above the thread count; static
 * and dynamic jobs (grains 0, 1, 3 and 64) in turn, each item run exactly once per job. */
static void test_threadpool(void **state)
{
    (void)state;
    static const unsigned threads[] = {1, 2, 3, 8};
    static const uint64_t sizes[] = {1, 2, 7, 1000};
    uint32_t *slots = calloc(1000, sizeof(uint32_t));
    assert_non_null(slots);
    for (int spin = 0; spin < 2; spin++) {
        setenv("MEMFIT_POOL_SPIN", spin ? "1" : "0", 1);
        for (size_t t = 0; t < sizeof(threads) / sizeof(threads[0]); t++) {
            memfit_threadpool *pool = NULL;
            assert_int_equal(memfit_threadpool_create(threads[t], &pool), MEMFIT_OK);
            assert_int_equal(memfit_threadpool_size(pool), threads[t]);
            for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
                memset(slots, 0, 1000 * sizeof(uint32_t));
                struct pool_job j = {.slots = slots};
                for (j.round = 0; j.round < 300; j.round++) {
                    static const uint64_t grains[] = {0, 1, 3, 64};
                    if (j.round % 5 == 4)
                        memfit_threadpool_parallel_for(pool, sizes[k], pool_fn, &j);
                    else
                        memfit_threadpool_parallel_for_dynamic(pool, sizes[k], grains[j.round % 5],
                                                               pool_fn, &j);
                    if (j.round % 100 == 99)
                        usleep(2000); /* long enough for the workers to sleep */
                }
                assert_int_equal(j.bad, 0);
                for (uint64_t i = 0; i < sizes[k]; i++)
                    assert_int_equal(slots[i], 300);
            }
            memfit_threadpool_destroy(pool);
        }
    }
    unsetenv("MEMFIT_POOL_SPIN");
    free(slots);
}

/* A dynamic job whose caller (thread 0) is slow: the workers, done with their own chunks, take
 * the ranges of thread 0's chunk it has not reached, so some of it runs on another thread. */
struct steal_job {
    _Atomic unsigned runs[256];
    unsigned by[256];
};

static void steal_fn(void *ctx, uint64_t begin, uint64_t end, unsigned thread)
{
    struct steal_job *j = ctx;
    if (thread == 0)
        usleep(2000);
    for (uint64_t i = begin; i < end; i++) {
        atomic_fetch_add(&j->runs[i], 1);
        j->by[i] = thread;
    }
}

static void test_threadpool_steal(void **state)
{
    (void)state;
    memfit_threadpool *pool = NULL;
    assert_int_equal(memfit_threadpool_create(4, &pool), MEMFIT_OK);
    struct steal_job *j = calloc(1, sizeof(*j));
    assert_non_null(j);
    memfit_threadpool_parallel_for_dynamic(pool, 256, 4, steal_fn, j);
    unsigned stolen = 0;
    for (int i = 0; i < 256; i++) {
        assert_int_equal(atomic_load(&j->runs[i]), 1);
        stolen += i < 64 && j->by[i] != 0; /* thread 0's chunk is [0, 64) */
    }
    assert_true(stolen > 0);
    free(j);
    memfit_threadpool_destroy(pool);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_names),
        cmocka_unit_test(test_alloc_counts_and_injection),
        cmocka_unit_test(test_alloc_fault_schedules),
        cmocka_unit_test(test_logging),
        cmocka_unit_test(test_dotenv_and_aliases),
        cmocka_unit_test(test_dotenv_alloc_failures),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_parse_duration_percent_int),
        cmocka_unit_test(test_anon_mapping),
        cmocka_unit_test(test_threadpool),
        cmocka_unit_test(test_threadpool_steal),
        cmocka_unit_test(test_dynlib),
        cmocka_unit_test(test_dynlib_release_pages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Helpers shared by the unit tests (header-only; include after cmocka.h).
 *
 * mf_test_alloc_failures() is the allocation fault-injection walk: it runs an
 * operation with its 1st, 2nd, ... allocation failing until the operation
 * succeeds, and requires every failed run to return MEMFIT_E_NOMEM and to
 * leave no live allocation behind. mf_test_alloc_failures_sticky() is the
 * same walk with the n-th allocation and every one after it failing.
 */
#ifndef MF_TEST_UTIL_H
#define MF_TEST_UTIL_H

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "memfit/models.h"

/* Runs op(ctx); cleanup(ctx) must free whatever a successful run produced. */
typedef enum memfit_status (*mf_test_op)(void *ctx);
typedef void (*mf_test_cleanup)(void *ctx);

static inline unsigned mf_test_alloc_walk(mf_test_op op, mf_test_cleanup cleanup, void *ctx,
                                          bool sticky)
{
    unsigned n;
    for (n = 1; n < 100000; n++) {
        uint64_t live_before = mf_alloc_live_count();
        mf_alloc_fail_after(n, sticky);
        enum memfit_status st = op(ctx);
        uint64_t injected = mf_alloc_injected_failures();
        mf_alloc_fail_after(0, false);
        if (st == MEMFIT_OK) {
            if (cleanup)
                cleanup(ctx);
            assert_int_equal(mf_alloc_live_count(), live_before);
            if (injected == 0)
                break; /* every allocation of the operation has been failed once */
            continue;  /* a failure was absorbed (retried or optional): go on */
        }
        if (st != MEMFIT_E_NOMEM)
            fprintf(stderr, "allocation %u: status %s (%s)\n", n, memfit_status_name(st),
                    memfit_last_error());
        assert_int_equal(st, MEMFIT_E_NOMEM);
        assert_int_equal(mf_alloc_live_count(), live_before);
    }
    return n;
}

static inline unsigned mf_test_alloc_failures(mf_test_op op, mf_test_cleanup cleanup, void *ctx)
{
    return mf_test_alloc_walk(op, cleanup, ctx, false);
}

static inline unsigned mf_test_alloc_failures_sticky(mf_test_op op, mf_test_cleanup cleanup,
                                                     void *ctx)
{
    return mf_test_alloc_walk(op, cleanup, ctx, true);
}

/* Path of a fixture under tests/fixtures (MEMFIT_FIXTURES is set by CTest). */
static inline const char *mf_test_fixture(const char *rel, char *buf, size_t size)
{
    const char *root = getenv("MEMFIT_FIXTURES");
    snprintf(buf, size, "%s/%s", root ? root : "tests/fixtures", rel);
    return buf;
}

/* The n floats of the fixture DIR/NAME, which holds exactly that many (free with memfit_free). */
static inline float *mf_test_fixture_floats(const char *dir, const char *name, size_t n)
{
    char rel[256], buf[1024];
    snprintf(rel, sizeof(rel), "%s/%s", dir, name);
    FILE *f = fopen(mf_test_fixture(rel, buf, sizeof(buf)), "rb");
    assert_non_null(f);
    float *v = memfit_malloc(n * sizeof(float));
    assert_non_null(v);
    assert_int_equal(fread(v, sizeof(float), n, f), n);
    assert_int_equal(fgetc(f), EOF);
    fclose(f);
    return v;
}

/* The reference scripts' deterministic input: element i is a hash of i and
 * seed mapped to k / 500 for an integer k in [-1000, 1000]. */
static inline float *mf_test_hashed_floats(size_t n, uint32_t seed)
{
    float *x = memfit_malloc(n * sizeof(float));
    assert_non_null(x);
    for (size_t i = 0; i < n; i++) {
        uint32_t h = (uint32_t)((uint64_t)i * 2654435761u + (uint64_t)seed * 40503u);
        h ^= h >> 15;
        h *= 2246822519u;
        h ^= h >> 13;
        int k = (int)(h % 2001) - 1000;
        x[i] = (float)k / 500.0f;
    }
    return x;
}

/* The largest |a[i] - b[i]|; a NaN on either side wins. */
static inline double mf_test_max_abs_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m))
            m = d;
    }
    return m;
}

/* Skips the whole test program with a printed reason (CTest: exit code 77). */
#define MF_TEST_SKIP_ALL(...)                                                                      \
    do {                                                                                           \
        printf("SKIPPED: ");                                                                       \
        printf(__VA_ARGS__);                                                                       \
        printf("\n");                                                                              \
        exit(77);                                                                                  \
    } while (0)

/* A new directory $TMPDIR/<prefix>_XXXXXX (path freed by mf_test_remove_dir). */
static inline char *mf_test_tmp_dir(const char *prefix)
{
    const char *base = getenv("TMPDIR");
    char *t = memfit_asprintf("%s/%s_XXXXXX", base ? base : "/tmp", prefix);
    assert_non_null(t);
    assert_non_null(mkdtemp(t));
    return t;
}

/* $TMPDIR/<name>_<pid>.gguf: the model at `from` quantized to `target` (GGUF, overwriting);
 * the caller unlinks and frees the path. */
static inline char *mf_test_quantized_gguf(const char *from, enum memfit_quantize_target target,
                                           const char *name)
{
    const char *dir = getenv("TMPDIR");
    char *q = memfit_asprintf("%s/%s_%d.gguf", dir ? dir : "/tmp", name, (int)getpid());
    assert_non_null(q);
    struct memfit_quantize_options qo;
    memfit_quantize_options_default(&qo);
    qo.target = target;
    qo.format = MEMFIT_FORMAT_GGUF;
    qo.overwrite = true;
    assert_int_equal(memfit_quantize_file(from, q, &qo, NULL), MEMFIT_OK);
    return q;
}

/* Removes a flat directory (its files, then itself) and frees its path. */
static inline void mf_test_remove_dir(char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char *p = memfit_asprintf("%s/%s", dir, e->d_name);
        unlink(p);
        memfit_free(p);
    }
    closedir(d);
    rmdir(dir);
    memfit_free(dir);
}

#endif

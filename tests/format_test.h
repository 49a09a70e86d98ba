/*
 * Helpers shared by the format unit tests (header-only): a byte builder for
 * hand-made malformed files, temp paths, and reading a file into memory.
 */
#ifndef MF_FORMAT_TEST_H
#define MF_FORMAT_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "format/set.h"
#include "memfit/format.h"

struct bb {
    uint8_t *p;
    size_t len, cap;
};

static inline void bb_put(struct bb *b, const void *d, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = memfit_realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
}
static inline void bb_u8(struct bb *b, uint8_t v)
{
    bb_put(b, &v, 1);
}
static inline void bb_u32(struct bb *b, uint32_t v)
{
    uint8_t e[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    bb_put(b, e, 4);
}
static inline void bb_u64(struct bb *b, uint64_t v)
{
    bb_u32(b, (uint32_t)v);
    bb_u32(b, (uint32_t)(v >> 32));
}
static inline void bb_str(struct bb *b, const char *s)
{
    bb_u64(b, strlen(s));
    bb_put(b, s, strlen(s));
}
static inline void bb_pad(struct bb *b, size_t align)
{
    while (b->len % align)
        bb_u8(b, 0);
}
static inline void bb_free(struct bb *b)
{
    memfit_free(b->p);
    memset(b, 0, sizeof(*b));
}

/* A fresh path under TMPDIR (or /tmp) with the given suffix. */
static inline char *tmp_path(const char *suffix)
{
    static unsigned counter;
    const char *dir = getenv("TMPDIR");
    char *p = memfit_asprintf("%s/memfit-test-%d-%u%s", dir ? dir : "/tmp", (int)getpid(),
                              counter++, suffix);
    assert_non_null(p);
    return p;
}

static inline uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = memfit_malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static inline enum memfit_status open_mem(const struct bb *b, memfit_tensors **out)
{
    return mf_tensors_open_memory(b->p, b->len, "test.data", NULL, out);
}

/* Opens every strict prefix of buf: each must fail cleanly (or succeed only when
 * `ok_from` <= length, e.g. when only trailing padding is cut). */
static inline void check_truncations(const uint8_t *buf, size_t len, size_t ok_from)
{
    for (size_t n = 0; n < len; n++) {
        uint8_t *copy = memfit_malloc(n ? n : 1); /* exact size: ASan sees overreads */
        assert_non_null(copy);
        memcpy(copy, buf, n);
        memfit_tensors *set = NULL;
        enum memfit_status st = mf_tensors_open_memory(copy, n, "cut.bin", NULL, &set);
        if (n >= ok_from && st == MEMFIT_OK) {
            memfit_tensors_close(set);
        } else {
            if (st == MEMFIT_OK)
                fprintf(stderr, "prefix of %zu bytes opened\n", n);
            assert_int_not_equal(st, MEMFIT_OK);
            assert_true(strstr(memfit_last_error(), "cut.bin") != NULL || st == MEMFIT_E_NOMEM);
        }
        memfit_free(copy);
    }
}

/* The fault walk over memfit_tensors_open(walk_path): pass these to mf_test_alloc_failures. */
static const char *walk_path;
static memfit_tensors *walk_set;

static inline enum memfit_status walk_open_op(void *ctx)
{
    (void)ctx;
    return memfit_tensors_open(walk_path, NULL, &walk_set);
}

static inline void walk_close_op(void *ctx)
{
    (void)ctx;
    memfit_tensors_close(walk_set);
    walk_set = NULL;
}

#endif

/* Unit tests of header-only `.pth` sets (memfit_tensors_open_pth_header):
 * from the file's tail and its data.pkl record, read as a caller would
 * (asking for what the last call needs), each torch.save fixture gives the
 * tensors of the full open, offsets included; the stand-in written from it
 * opens to the same set; every tail length either opens or asks for more;
 * archives whose layout cannot be known from the directory are refused as
 * E_UNSUPPORTED; and fault walks leak nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_util.h"
#include "format_test.h"

static const char *const torch_fixtures[] = {
    "format/state_dict.pth", "format/nested.pth",      "format/param.pth",     "format/zip64.pth",
    "dinov2/vits_tiny.pth",  "dinov2/vitreg_tiny.pth", "dinov2/vitg_tiny.pth",
};

static uint8_t *fixture(const char *rel, size_t *len)
{
    char path[512];
    return read_file(mf_test_fixture(rel, path, sizeof(path)), len);
}

/* One call over exact-size copies of the pieces (ASan sees overreads). */
static enum memfit_status open_pieces(const uint8_t *buf, size_t len, size_t tail_len,
                                      uint64_t rec_off, size_t rec_len, memfit_tensors **out,
                                      struct memfit_pth_need *need)
{
    uint8_t *tail = memfit_malloc(tail_len ? tail_len : 1);
    uint8_t *rec = rec_len ? memfit_malloc(rec_len) : NULL;
    assert_non_null(tail);
    memcpy(tail, buf + len - tail_len, tail_len);
    if (rec_len) {
        assert_non_null(rec);
        memcpy(rec, buf + rec_off, rec_len);
    }
    enum memfit_status st = memfit_tensors_open_pth_header(tail, tail_len, rec, rec_len, rec_off,
                                                           len, "remote.pth", out, need);
    memfit_free(tail);
    memfit_free(rec);
    return st;
}

/* The loop a caller runs: a first tail, then what each call asks for. */
static enum memfit_status open_loop(const uint8_t *buf, size_t len, size_t first_tail,
                                    memfit_tensors **out, unsigned *out_steps)
{
    size_t tail = first_tail < len ? first_tail : len, rec_len = 0;
    uint64_t rec_off = 0;
    for (unsigned step = 1; step <= 5; step++) {
        struct memfit_pth_need need;
        memfit_tensors *set = NULL;
        enum memfit_status st = open_pieces(buf, len, tail, rec_off, rec_len, &set, &need);
        if (st != MEMFIT_OK)
            return st;
        if (set) {
            *out = set;
            if (out_steps)
                *out_steps = step;
            return MEMFIT_OK;
        }
        if (need.tail_bytes > tail) {
            assert_true(need.tail_bytes <= len);
            tail = (size_t)need.tail_bytes;
        } else {
            assert_true(need.record_bytes > 0 && need.record_offset < len &&
                        need.record_bytes <= len - need.record_offset);
            rec_off = need.record_offset;
            rec_len = (size_t)need.record_bytes;
        }
    }
    fail_msg("no set after 5 calls");
    return MEMFIT_E_FORMAT;
}

/* Same tensors (names, types, shapes, sizes, offsets); data only in the full set. */
static void assert_same(const memfit_tensors *h, const memfit_tensors *full, bool h_header_only)
{
    assert_int_equal(memfit_tensors_header_only(h), h_header_only);
    assert_int_equal(memfit_tensors_format(h), MEMFIT_FORMAT_PTH);
    assert_int_equal(memfit_tensors_file_bytes(h), memfit_tensors_file_bytes(full));
    assert_int_equal(memfit_tensors_count(h), memfit_tensors_count(full));
    for (size_t i = 0; i < memfit_tensors_count(full); i++) {
        struct memfit_tensor_info a, b;
        assert_int_equal(memfit_tensors_get(h, i, &a), MEMFIT_OK);
        assert_int_equal(memfit_tensors_get(full, i, &b), MEMFIT_OK);
        assert_string_equal(a.name, b.name);
        assert_int_equal(a.type, b.type);
        assert_int_equal(a.n_dims, b.n_dims);
        assert_memory_equal(a.shape, b.shape, sizeof(a.shape));
        assert_int_equal(a.n_bytes, b.n_bytes);
        assert_int_equal(a.file_offset, b.file_offset);
        if (h_header_only)
            assert_null(a.data);
        assert_non_null(b.data);
    }
}

static void test_fixtures(void **state)
{
    (void)state;
    for (size_t f = 0; f < sizeof(torch_fixtures) / sizeof(torch_fixtures[0]); f++) {
        size_t len;
        uint8_t *buf = fixture(torch_fixtures[f], &len);
        memfit_tensors *full;
        enum memfit_status fst = mf_tensors_open_memory(buf, len, "full.pth", NULL, &full);
        if (fst != MEMFIT_OK)
            fprintf(stderr, "%s: %s\n", torch_fixtures[f], memfit_last_error());
        assert_int_equal(fst, MEMFIT_OK);
        /* From nothing, a short tail, and the usual 64 KiB. */
        const size_t firsts[] = {0, 22, 200, 65536};
        for (size_t k = 0; k < sizeof(firsts) / sizeof(firsts[0]); k++) {
            memfit_tensors *h = NULL;
            unsigned steps = 0;
            enum memfit_status st = open_loop(buf, len, firsts[k], &h, &steps);
            if (st != MEMFIT_OK)
                fprintf(stderr, "%s: %s\n", torch_fixtures[f], memfit_last_error());
            assert_int_equal(st, MEMFIT_OK);
            assert_true(steps <= 4);
            assert_same(h, full, true);
            /* The stand-in opens (libzip included) to the same tensors. */
            char *path = tmp_path(".pth");
            assert_int_equal(memfit_tensors_write_standin(h, path), MEMFIT_OK);
            assert_int_equal(memfit_tensors_write_standin(h, path), MEMFIT_E_IO); /* exists */
            memfit_tensors *s;
            assert_int_equal(memfit_tensors_open(path, NULL, &s), MEMFIT_OK);
            assert_same(s, full, false);
            memfit_tensors_close(s);
            unlink(path);
            memfit_free(path);
            memfit_tensors_close(h);
        }
        assert_int_equal(memfit_tensors_write_standin(full, "/nonexistent/x"), MEMFIT_E_MISUSE);
        memfit_tensors_close(full);
        memfit_free(buf);
    }
}

/* Every tail length, with no record then with the record asked for: a set or a need. */
static void test_every_tail(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = fixture("format/state_dict.pth", &len);
    memfit_tensors *full;
    assert_int_equal(mf_tensors_open_memory(buf, len, "full.pth", NULL, &full), MEMFIT_OK);
    for (size_t n = 0; n <= len; n++) {
        struct memfit_pth_need need;
        memfit_tensors *h = NULL;
        assert_int_equal(open_pieces(buf, len, n, 0, 0, &h, &need), MEMFIT_OK);
        if (!h && need.tail_bytes <= n) {
            assert_true(need.record_bytes > 0);
            assert_int_equal(
                open_pieces(buf, len, n, need.record_offset, need.record_bytes, &h, &need),
                MEMFIT_OK);
        }
        if (h) {
            assert_same(h, full, true);
            memfit_tensors_close(h);
        } else {
            assert_true(need.tail_bytes > n && need.tail_bytes <= len);
        }
    }
    memfit_tensors_close(full);
    memfit_free(buf);
}

static void expect_refused(const char *rel, enum memfit_status want)
{
    size_t len;
    uint8_t *buf = fixture(rel, &len);
    memfit_tensors *h = NULL;
    enum memfit_status st = open_loop(buf, len, 65536, &h, NULL);
    if (st != want)
        fprintf(stderr, "%s: %s: %s\n", rel, memfit_status_name(st), memfit_last_error());
    assert_int_equal(st, want);
    assert_null(h);
    assert_non_null(strstr(memfit_last_error(), "remote.pth"));
    memfit_free(buf);
}

static void test_refused(void **state)
{
    (void)state;
    /* Compressed records: where their data lies is not in the directory. */
    expect_refused("format/compressed.pth", MEMFIT_E_UNSUPPORTED);
    expect_refused("format/compressed_pkl.pth", MEMFIT_E_UNSUPPORTED);
    /* Refused as the full open refuses it (a strided view). */
    expect_refused("format/strided.pth", MEMFIT_E_UNSUPPORTED);
    /* The legacy format is no zip. */
    expect_refused("format/legacy.pth", MEMFIT_E_FORMAT);
    /* Misuse: a tail longer than the file, a record past its end. */
    uint8_t b[4] = {0};
    memfit_tensors *h = NULL;
    struct memfit_pth_need need;
    assert_int_equal(memfit_tensors_open_pth_header(b, 4, NULL, 0, 0, 3, "x", &h, &need),
                     MEMFIT_E_MISUSE);
    assert_int_equal(memfit_tensors_open_pth_header(b, 4, b, 4, 8, 10, "x", &h, &need),
                     MEMFIT_E_MISUSE);
    assert_int_equal(memfit_tensors_open_pth_header(NULL, 4, NULL, 0, 0, 10, "x", &h, &need),
                     MEMFIT_E_MISUSE);
    assert_null(h);
    /* A directory entry pointing past the file is a format error, not a need. */
    size_t len;
    uint8_t *buf = fixture("format/param.pth", &len);
    size_t eocd = len - 22;
    assert_int_equal(mf_le32(buf + eocd), 0x06054b50);
    uint32_t cd = mf_le32(buf + eocd + 16);
    buf[cd + 42] = 0xF0, buf[cd + 43] = 0xFF, buf[cd + 44] = 0xFF, buf[cd + 45] = 0x7F;
    assert_int_equal(open_loop(buf, len, 65536, &h, NULL), MEMFIT_E_FORMAT);
    assert_non_null(strstr(memfit_last_error(), "local header"));
    memfit_free(buf);
}

/* The last call of the loop, over pieces of the file (the test allocates nothing). */
static const uint8_t *walk_buf;
static size_t walk_len, walk_tail;
static struct memfit_pth_need walk_need;
static memfit_tensors *walk_h;

static enum memfit_status walk_op(void *ctx)
{
    (void)ctx;
    struct memfit_pth_need need;
    enum memfit_status st = memfit_tensors_open_pth_header(
        walk_buf + walk_len - walk_tail, walk_tail, walk_buf + walk_need.record_offset,
        (size_t)walk_need.record_bytes, walk_need.record_offset, walk_len, "walk.pth", &walk_h,
        &need);
    if (st == MEMFIT_OK)
        assert_non_null(walk_h);
    return st;
}

static void walk_cleanup(void *ctx)
{
    (void)ctx;
    memfit_tensors_close(walk_h);
    walk_h = NULL;
}

static void test_fault_walk(void **state)
{
    (void)state;
    const char *rels[] = {"format/nested.pth", "dinov2/vits_tiny.pth"};
    for (size_t i = 0; i < 2; i++) {
        size_t len;
        uint8_t *buf = fixture(rels[i], &len);
        walk_buf = buf;
        walk_len = len;
        walk_tail = len < 65536 ? len : 65536;
        memfit_tensors *h = NULL;
        assert_int_equal(memfit_tensors_open_pth_header(buf + len - walk_tail, walk_tail, NULL, 0,
                                                        0, len, "walk.pth", &h, &walk_need),
                         MEMFIT_OK);
        if (h) { /* the tail holds the whole (small) file */
            memfit_tensors_close(h);
            memset(&walk_need, 0, sizeof(walk_need));
        }
        assert_true(mf_test_alloc_failures(walk_op, walk_cleanup, NULL) > 5);
        memfit_free(buf);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixtures),
        cmocka_unit_test(test_every_tail),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_fault_walk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

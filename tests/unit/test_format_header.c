/* Unit tests of header-only tensor sets (memfit_tensors_open_header): for
 * GGUF and safetensors, every head length either gives the same set as the
 * whole file (less the data) or asks for more bytes, within the file; the
 * "need more" loop converges; malformed headers still fail as format errors
 * (not as requests for more); and fault walks leak nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_util.h"
#include "format_test.h"

/* A file with metadata of several kinds (strings, a string array, a nested
 * array) and tensors of `n` sizes, written by the library's writer. */
static uint8_t *sample(enum memfit_format format, size_t *len)
{
    char *path = tmp_path(format == MEMFIT_FORMAT_GGUF ? ".gguf" : ".safetensors");
    memfit_writer *w;
    assert_int_equal(memfit_writer_create(path, format, &w), MEMFIT_OK);
    assert_int_equal(memfit_writer_set_meta_string(w, "general.architecture", "dinov2"), MEMFIT_OK);
    if (format == MEMFIT_FORMAT_GGUF) {
        struct bb s = {0};
        for (int i = 0; i < 40; i++) {
            char tok[16];
            snprintf(tok, sizeof(tok), "tok%d", i);
            bb_str(&s, tok);
        }
        struct memfit_meta_value v;
        memset(&v, 0, sizeof(v));
        v.type = MEMFIT_META_ARRAY;
        v.v.array.elem_type = MEMFIT_META_STRING;
        v.v.array.count = 40;
        v.v.array.raw = s.p;
        v.v.array.raw_bytes = s.len;
        assert_int_equal(memfit_writer_set_meta(w, "tokenizer.ggml.tokens", &v), MEMFIT_OK);
        bb_free(&s);
        bb_u32(&s, MEMFIT_META_BOOL);
        bb_u64(&s, 3);
        bb_u8(&s, 1);
        bb_u8(&s, 0);
        bb_u8(&s, 1);
        v.v.array.elem_type = MEMFIT_META_ARRAY;
        v.v.array.count = 1;
        v.v.array.raw = s.p;
        v.v.array.raw_bytes = s.len;
        assert_int_equal(memfit_writer_set_meta(w, "test.nested", &v), MEMFIT_OK);
        bb_free(&s);
    }
    for (int i = 0; i < 6; i++) {
        char name[32];
        snprintf(name, sizeof(name), "blocks.%d.weight", i);
        int64_t shape[2] = {i + 1, 64};
        assert_int_equal(memfit_writer_add_tensor(w, name, MEMFIT_TYPE_F32, 2, shape), MEMFIT_OK);
    }
    float data[6 * 64];
    for (int i = 0; i < 6 * 64; i++)
        data[i] = (float)i;
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(memfit_writer_write_tensor(w, i, 0, data, (i + 1) * 64 * sizeof(float)),
                         MEMFIT_OK);
    assert_int_equal(memfit_writer_commit(w), MEMFIT_OK);
    memfit_writer_destroy(w);
    uint8_t *buf = read_file(path, len);
    unlink(path);
    memfit_free(path);
    return buf;
}

/* The header-only set holds what the full one does, data excepted. */
static void assert_same(const memfit_tensors *h, const memfit_tensors *full)
{
    assert_true(memfit_tensors_header_only(h));
    assert_false(memfit_tensors_header_only(full));
    assert_int_equal(memfit_tensors_format(h), memfit_tensors_format(full));
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
        assert_null(a.data);
        assert_non_null(b.data);
    }
    assert_int_equal(memfit_tensors_meta_count(h), memfit_tensors_meta_count(full));
    for (size_t i = 0; i < memfit_tensors_meta_count(full); i++) {
        const char *ka, *kb;
        struct memfit_meta_value va, vb;
        assert_int_equal(memfit_tensors_meta_get(h, i, &ka, &va), MEMFIT_OK);
        assert_int_equal(memfit_tensors_meta_get(full, i, &kb, &vb), MEMFIT_OK);
        assert_string_equal(ka, kb);
        assert_int_equal(va.type, vb.type);
        if (va.type == MEMFIT_META_STRING)
            assert_memory_equal(va.v.str.data, vb.v.str.data, va.v.str.len);
        if (va.type == MEMFIT_META_ARRAY)
            assert_memory_equal(va.v.array.raw, vb.v.array.raw, va.v.array.raw_bytes);
    }
}

/* Every head length: a set equal to the full one, or a need within (len, size]. */
static void check_every_length(enum memfit_format format)
{
    size_t len;
    uint8_t *buf = sample(format, &len);
    memfit_tensors *full;
    assert_int_equal(mf_tensors_open_memory(buf, len, "x", NULL, &full), MEMFIT_OK);
    struct memfit_tensor_info first;
    assert_int_equal(memfit_tensors_get(full, 0, &first), MEMFIT_OK);
    size_t header_end = 0;
    for (size_t n = 0; n <= len; n++) {
        memfit_tensors *h = (memfit_tensors *)1;
        uint64_t need = 1;
        /* Half the lengths detect the format, half are told it. */
        enum memfit_format f = n % 2 ? format : MEMFIT_FORMAT_UNKNOWN;
        assert_int_equal(memfit_tensors_open_header(buf, n, len, f, "head", &h, &need), MEMFIT_OK);
        if (h) {
            assert_int_equal(need, 0);
            assert_same(h, full);
            memfit_tensors_close(h);
            if (!header_end)
                header_end = n;
        } else {
            assert_true(need > n && need <= len);
            assert_int_equal(header_end, 0); /* once it opens, longer heads open too */
        }
    }
    assert_true(header_end > 0 && header_end <= first.file_offset);
    /* The loop a caller runs, from nothing: a few steps, each asking for more. */
    uint64_t have = 0;
    unsigned steps = 0;
    memfit_tensors *h = NULL;
    for (;;) {
        uint64_t need;
        assert_int_equal(
            memfit_tensors_open_header(buf, have, len, MEMFIT_FORMAT_UNKNOWN, "head", &h, &need),
            MEMFIT_OK);
        if (h)
            break;
        assert_true(need > have);
        have = need;
        steps++;
    }
    assert_true(steps >= 2 && have == header_end);
    assert_same(h, full);
    memfit_tensors_close(h);
    memfit_tensors_close(full);
    memfit_free(buf);
}

static void test_gguf_lengths(void **state)
{
    (void)state;
    check_every_length(MEMFIT_FORMAT_GGUF);
}

static void test_safetensors_lengths(void **state)
{
    (void)state;
    check_every_length(MEMFIT_FORMAT_SAFETENSORS);
}

static void expect_error(const struct bb *b, uint64_t file_bytes, enum memfit_status want,
                         const char *needle)
{
    memfit_tensors *h = NULL;
    uint64_t need = 0;
    enum memfit_status st = memfit_tensors_open_header(b->p, b->len, file_bytes,
                                                       MEMFIT_FORMAT_UNKNOWN, "bad", &h, &need);
    if (st != want || !strstr(memfit_last_error(), needle))
        fprintf(stderr, "got %s: %s (wanted %s, '%s')\n", memfit_status_name(st),
                memfit_last_error(), memfit_status_name(want), needle);
    assert_int_equal(st, want);
    assert_non_null(strstr(memfit_last_error(), needle));
    assert_null(h);
}

static void test_malformed(void **state)
{
    (void)state;
    /* A string length beyond the whole file is an error, not a request for more. */
    struct bb b = {0};
    bb_put(&b, "GGUF", 4);
    bb_u32(&b, 3);
    bb_u64(&b, 0);
    bb_u64(&b, 1);
    bb_u64(&b, 1ull << 40); /* key length */
    expect_error(&b, 1 << 20, MEMFIT_E_FORMAT, "beyond the");
    bb_free(&b);
    /* A tensor whose data lies past the file's end. */
    bb_put(&b, "GGUF", 4);
    bb_u32(&b, 3);
    bb_u64(&b, 1);
    bb_u64(&b, 0);
    bb_str(&b, "w");
    bb_u32(&b, 1);
    bb_u64(&b, 1024);
    bb_u32(&b, MEMFIT_TYPE_F32);
    bb_u64(&b, 0);
    expect_error(&b, 1000, MEMFIT_E_FORMAT, "beyond file size 1000");
    /* ... and the same header in a file large enough opens. */
    memfit_tensors *h = NULL;
    uint64_t need = 0;
    assert_int_equal(
        memfit_tensors_open_header(b.p, b.len, 64 + 4096, MEMFIT_FORMAT_UNKNOWN, "ok", &h, &need),
        MEMFIT_OK);
    assert_non_null(h);
    struct memfit_tensor_info t;
    assert_int_equal(memfit_tensors_find(h, "w", &t, NULL), MEMFIT_OK);
    assert_int_equal(t.file_offset, 64);
    assert_null(t.data);
    memfit_tensors_close(h);
    bb_free(&b);
    /* A safetensors header length beyond the file. */
    bb_u64(&b, 5000);
    bb_put(&b, "{}", 2);
    expect_error(&b, 100, MEMFIT_E_FORMAT, "beyond file size 100");
    bb_free(&b);
    /* A zip (.pth) cannot be read from its head. */
    bb_put(&b, "PK\x03\x04", 4);
    bb_u64(&b, 0);
    expect_error(&b, 100, MEMFIT_E_UNSUPPORTED, ".pth");
    bb_free(&b);
    /* Misuse: more head than file. */
    bb_put(&b, "GGUF", 4);
    expect_error(&b, 2, MEMFIT_E_MISUSE, "head bytes");
    bb_free(&b);
}

static uint8_t *walk_buf;
static size_t walk_len;
static memfit_tensors *walk_header;

static enum memfit_status header_op(void *ctx)
{
    (void)ctx;
    uint64_t need;
    walk_header = NULL;
    enum memfit_status st = memfit_tensors_open_header(
        walk_buf, walk_len, walk_len, MEMFIT_FORMAT_UNKNOWN, "walk", &walk_header, &need);
    if (st == MEMFIT_OK && !walk_header)
        return MEMFIT_E_FORMAT;
    return st;
}

static void header_close(void *ctx)
{
    (void)ctx;
    memfit_tensors_close(walk_header);
    walk_header = NULL;
}

/* The "need more" path allocates too: fail each of its allocations. */
static enum memfit_status short_op(void *ctx)
{
    (void)ctx;
    uint64_t need = 0;
    memfit_tensors *h = (memfit_tensors *)1;
    enum memfit_status st = memfit_tensors_open_header(walk_buf, 40, walk_len,
                                                       MEMFIT_FORMAT_UNKNOWN, "walk", &h, &need);
    if (st == MEMFIT_OK && (h || need <= 40))
        return MEMFIT_E_FORMAT;
    return st;
}

static void test_fault_walks(void **state)
{
    (void)state;
    enum memfit_format formats[2] = {MEMFIT_FORMAT_GGUF, MEMFIT_FORMAT_SAFETENSORS};
    for (int i = 0; i < 2; i++) {
        walk_buf = sample(formats[i], &walk_len);
        assert_true(mf_test_alloc_failures(header_op, header_close, NULL) > 3);
        assert_true(mf_test_alloc_failures(short_op, NULL, NULL) >= 2);
        memfit_free(walk_buf);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gguf_lengths),
        cmocka_unit_test(test_safetensors_lengths),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_fault_walks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests of the GGUF reader and writer: round trips over every type and
 * metadata kind, truncation at every length, hand-made malformed headers,
 * huge lengths that must fail without allocating, and fault walks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_util.h"
#include "format_test.h"

/* Writes a GGUF with one tensor of every ggml type and metadata of every kind. */
static char *write_sample(unsigned seed)
{
    char *path = tmp_path(".gguf");
    memfit_writer *w;
    assert_int_equal(memfit_writer_create(path, MEMFIT_FORMAT_GGUF, &w), MEMFIT_OK);
    struct memfit_meta_value v;
    memset(&v, 0, sizeof(v));
    for (int t = 0; t <= MEMFIT_META_F64; t++) {
        if (t == MEMFIT_META_STRING || t == MEMFIT_META_ARRAY)
            continue;
        v.type = (enum memfit_meta_type)t;
        if (t == MEMFIT_META_F32 || t == MEMFIT_META_F64)
            v.v.f = 1.5;
        else if (t == MEMFIT_META_I8 || t == MEMFIT_META_I16 || t == MEMFIT_META_I32 ||
                 t == MEMFIT_META_I64)
            v.v.i = -7;
        else
            v.v.u = t == MEMFIT_META_BOOL ? 1 : 200;
        char key[32];
        snprintf(key, sizeof(key), "test.%s", memfit_meta_type_name(v.type));
        assert_int_equal(memfit_writer_set_meta(w, key, &v), MEMFIT_OK);
    }
    assert_int_equal(memfit_writer_set_meta_string(w, "general.architecture", "llama"), MEMFIT_OK);
    /* u32 array [1, 2, 3] */
    uint8_t raw[64];
    for (int i = 0; i < 3; i++) {
        uint32_t x = (uint32_t)i + 1;
        memcpy(raw + 4 * i, &x, 4);
    }
    v.type = MEMFIT_META_ARRAY;
    v.v.array.elem_type = MEMFIT_META_U32;
    v.v.array.count = 3;
    v.v.array.raw = raw;
    v.v.array.raw_bytes = 12;
    assert_int_equal(memfit_writer_set_meta(w, "test.array_u32", &v), MEMFIT_OK);
    /* string array ["a", "bc"] and array of arrays [[u8 9]] */
    struct bb s = {0};
    bb_str(&s, "a");
    bb_str(&s, "bc");
    v.v.array.elem_type = MEMFIT_META_STRING;
    v.v.array.count = 2;
    v.v.array.raw = s.p;
    v.v.array.raw_bytes = s.len;
    assert_int_equal(memfit_writer_set_meta(w, "tokenizer.ggml.tokens", &v), MEMFIT_OK);
    bb_free(&s);
    bb_u32(&s, MEMFIT_META_U8);
    bb_u64(&s, 1);
    bb_u8(&s, 9);
    v.v.array.elem_type = MEMFIT_META_ARRAY;
    v.v.array.count = 1;
    v.v.array.raw = s.p;
    v.v.array.raw_bytes = s.len;
    assert_int_equal(memfit_writer_set_meta(w, "test.nested", &v), MEMFIT_OK);
    /* A raw_bytes that lies about its contents is refused. */
    v.v.array.raw_bytes = s.len - 1;
    assert_int_not_equal(memfit_writer_set_meta(w, "test.bad", &v), MEMFIT_OK);
    bb_free(&s);

    size_t n = 0;
    for (int id = 0; id < 200; id++) {
        const struct memfit_type_info *info = memfit_type_get_info((enum memfit_type)id);
        if (!info)
            continue;
        char name[32];
        snprintf(name, sizeof(name), "t.%s", info->name);
        int64_t shape[2] = {3, (int64_t)info->block_size * 2};
        assert_int_equal(memfit_writer_add_tensor(w, name, info->type, 2, shape), MEMFIT_OK);
        n++;
    }
    int64_t one = 1;
    assert_int_equal(memfit_writer_add_tensor(w, "t.u8", MEMFIT_TYPE_U8, 1, &one),
                     MEMFIT_E_UNSUPPORTED);
    srand(seed);
    for (size_t i = 0; i < n; i++) {
        const struct memfit_type_info *info = NULL;
        size_t k = 0;
        for (int id = 0; id < 200; id++)
            if ((info = memfit_type_get_info((enum memfit_type)id)) && k++ == i)
                break;
        uint64_t bytes;
        assert_int_equal(memfit_type_bytes(info->type, 6 * (uint64_t)info->block_size, &bytes),
                         MEMFIT_OK);
        uint8_t *data = memfit_malloc(bytes);
        for (uint64_t b = 0; b < bytes; b++)
            data[b] = (uint8_t)rand();
        /* two chunks, to exercise chunked writes */
        assert_int_equal(memfit_writer_write_tensor(w, i, 0, data, bytes / 2), MEMFIT_OK);
        assert_int_equal(
            memfit_writer_write_tensor(w, i, bytes / 2, data + bytes / 2, bytes - bytes / 2),
            MEMFIT_OK);
        memfit_free(data);
    }
    assert_int_equal(memfit_writer_commit(w), MEMFIT_OK);
    memfit_writer_destroy(w);
    return path;
}

static void test_round_trip(void **state)
{
    (void)state;
    char *path = write_sample(1);
    memfit_tensors *set;
    assert_int_equal(memfit_tensors_open(path, NULL, &set), MEMFIT_OK);
    assert_int_equal(memfit_tensors_format(set), MEMFIT_FORMAT_GGUF);
    assert_int_equal(memfit_tensors_version(set), 3);
    srand(1);
    size_t i = 0;
    for (int id = 0; id < 200; id++) {
        const struct memfit_type_info *info = memfit_type_get_info((enum memfit_type)id);
        if (!info)
            continue;
        struct memfit_tensor_info t;
        assert_int_equal(memfit_tensors_get(set, i, &t), MEMFIT_OK);
        char name[32];
        snprintf(name, sizeof(name), "t.%s", info->name);
        assert_string_equal(t.name, name);
        assert_int_equal(t.type, info->type);
        assert_int_equal(t.n_dims, 2);
        assert_int_equal(t.shape[0], 3);
        assert_int_equal(t.shape[1], info->block_size * 2);
        assert_int_equal(t.file_offset % 32, 0);
        for (uint64_t b = 0; b < t.n_bytes; b++)
            assert_int_equal(((const uint8_t *)t.data)[b], (uint8_t)rand());
        size_t idx;
        assert_int_equal(memfit_tensors_find(set, name, NULL, &idx), MEMFIT_OK);
        assert_int_equal(idx, i);
        i++;
    }
    assert_int_equal(memfit_tensors_count(set), i);
    assert_int_equal(memfit_tensors_find(set, "nope", NULL, NULL), MEMFIT_E_NOT_FOUND);

    struct memfit_meta_value v, e;
    assert_int_equal(memfit_tensors_meta_find(set, "test.i8", &v), MEMFIT_OK);
    assert_int_equal(v.type, MEMFIT_META_I8);
    assert_int_equal(v.v.i, -7);
    assert_int_equal(memfit_tensors_meta_find(set, "test.u16", &v), MEMFIT_OK);
    assert_int_equal(v.v.u, 200);
    assert_int_equal(memfit_tensors_meta_find(set, "test.f32", &v), MEMFIT_OK);
    assert_true(v.v.f == 1.5);
    assert_int_equal(memfit_tensors_meta_find(set, "test.bool", &v), MEMFIT_OK);
    assert_int_equal(v.v.u, 1);
    assert_int_equal(memfit_tensors_meta_find(set, "general.architecture", &v), MEMFIT_OK);
    assert_int_equal(v.v.str.len, 5);
    assert_memory_equal(v.v.str.data, "llama", 5);
    assert_int_equal(memfit_tensors_meta_find(set, "test.array_u32", &v), MEMFIT_OK);
    assert_int_equal(memfit_meta_array_get(&v, 2, &e), MEMFIT_OK);
    assert_int_equal(e.v.u, 3);
    assert_int_equal(memfit_meta_array_get(&v, 3, &e), MEMFIT_E_RANGE);
    assert_int_equal(memfit_tensors_meta_find(set, "tokenizer.ggml.tokens", &v), MEMFIT_OK);
    assert_int_equal(memfit_meta_array_get(&v, 1, &e), MEMFIT_OK);
    assert_int_equal(e.v.str.len, 2);
    assert_memory_equal(e.v.str.data, "bc", 2);
    uint64_t cursor = 0;
    int count = 0;
    while (memfit_meta_array_next(&v, &cursor, &e))
        count++;
    assert_int_equal(count, 2);
    assert_int_equal(memfit_tensors_meta_find(set, "test.nested", &v), MEMFIT_OK);
    assert_int_equal(memfit_meta_array_get(&v, 0, &e), MEMFIT_OK);
    assert_int_equal(e.type, MEMFIT_META_ARRAY);
    struct memfit_meta_value inner;
    assert_int_equal(memfit_meta_array_get(&e, 0, &inner), MEMFIT_OK);
    assert_int_equal(inner.v.u, 9);
    assert_int_equal(memfit_tensors_meta_find(set, "test.bad", &v), MEMFIT_E_NOT_FOUND);
    memfit_tensors_close(set);
    unlink(path);
    memfit_free(path);
}

static void test_truncations(void **state)
{
    (void)state;
    char *path = write_sample(2);
    size_t len;
    uint8_t *buf = read_file(path, &len);
    memfit_tensors *set;
    assert_int_equal(mf_tensors_open_memory(buf, len, "x", NULL, &set), MEMFIT_OK);
    struct memfit_tensor_info last;
    memfit_tensors_get(set, memfit_tensors_count(set) - 1, &last);
    memfit_tensors_close(set);
    check_truncations(buf, len, last.file_offset + last.n_bytes);
    memfit_free(buf);
    unlink(path);
    memfit_free(path);
}

/* Header with n_kv key/values to be appended by the caller. */
static void header(struct bb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    bb_put(b, "GGUF", 4);
    bb_u32(b, version);
    bb_u64(b, n_tensors);
    bb_u64(b, n_kv);
}

static void tensor_info(struct bb *b, const char *name, uint32_t n_dims, const uint64_t *ne,
                        uint32_t type, uint64_t offset)
{
    bb_str(b, name);
    bb_u32(b, n_dims);
    for (uint32_t i = 0; i < n_dims; i++)
        bb_u64(b, ne[i]);
    bb_u32(b, type);
    bb_u64(b, offset);
}

static void expect_fail(struct bb *b, enum memfit_status want, const char *needle)
{
    memfit_tensors *set = NULL;
    enum memfit_status st = open_mem(b, &set);
    if (st != want || !strstr(memfit_last_error(), needle))
        fprintf(stderr, "got %s: %s (wanted %s, '%s')\n", memfit_status_name(st),
                memfit_last_error(), memfit_status_name(want), needle);
    assert_int_equal(st, want);
    assert_non_null(strstr(memfit_last_error(), "test.data"));
    assert_non_null(strstr(memfit_last_error(), needle));
    assert_null(set);
    bb_free(b);
}

static void test_bad_headers(void **state)
{
    (void)state;
    struct bb b = {0};
    bb_put(&b, "GGUX", 4);
    bb_u32(&b, 3);
    expect_fail(&b, MEMFIT_E_FORMAT, "unknown file format");
    header(&b, 1, 0, 0);
    expect_fail(&b, MEMFIT_E_UNSUPPORTED, "v1");
    header(&b, 4, 0, 0);
    expect_fail(&b, MEMFIT_E_UNSUPPORTED, "version 4");
    header(&b, 0x03000000, 0, 0);
    expect_fail(&b, MEMFIT_E_UNSUPPORTED, "big-endian");
    header(&b, 3, 0, UINT64_MAX);
    expect_fail(&b, MEMFIT_E_FORMAT, "key/value count");
    header(&b, 3, UINT64_MAX / 2, 0);
    expect_fail(&b, MEMFIT_E_FORMAT, "tensor count");

    /* 10 GB key and value lengths must fail without allocating them. */
    struct memfit_alloc_stats before, after;
    memfit_alloc_get_stats(&before);
    header(&b, 3, 0, 1);
    bb_u64(&b, 10000000000ull);
    bb_put(&b, "abcdefgh", 8);
    expect_fail(&b, MEMFIT_E_FORMAT, "length 10000000000");
    header(&b, 3, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, MEMFIT_META_STRING);
    bb_u64(&b, 10000000000ull);
    expect_fail(&b, MEMFIT_E_FORMAT, "string length 10000000000");
    header(&b, 3, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, MEMFIT_META_ARRAY);
    bb_u32(&b, MEMFIT_META_U64);
    bb_u64(&b, UINT64_MAX / 4);
    expect_fail(&b, MEMFIT_E_FORMAT, "array of");
    header(&b, 3, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, MEMFIT_META_ARRAY);
    bb_u32(&b, MEMFIT_META_STRING);
    bb_u64(&b, 1ull << 40);
    expect_fail(&b, MEMFIT_E_FORMAT, "array of");
    memfit_alloc_get_stats(&after);
    assert_true(after.peak_bytes < before.peak_bytes + (1u << 20));
    assert_true(after.total_live_bytes <= before.total_live_bytes + 1024);

    /* Arrays nested too deep, bad bool, unknown value type, empty and duplicate keys. */
    header(&b, 3, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, MEMFIT_META_ARRAY);
    for (int i = 0; i < 20; i++) {
        bb_u32(&b, MEMFIT_META_ARRAY);
        bb_u64(&b, 1);
    }
    expect_fail(&b, MEMFIT_E_FORMAT, "nested deeper");
    header(&b, 3, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, MEMFIT_META_BOOL);
    bb_u8(&b, 2);
    expect_fail(&b, MEMFIT_E_FORMAT, "bool");
    header(&b, 3, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, 99);
    bb_u64(&b, 0);
    expect_fail(&b, MEMFIT_E_FORMAT, "unknown value type 99");
    header(&b, 3, 0, 1);
    bb_str(&b, "");
    bb_u32(&b, MEMFIT_META_U8);
    bb_u8(&b, 0);
    expect_fail(&b, MEMFIT_E_FORMAT, "empty");
    header(&b, 3, 0, 2);
    for (int i = 0; i < 2; i++) {
        bb_str(&b, "dup");
        bb_u32(&b, MEMFIT_META_U8);
        bb_u8(&b, 0);
    }
    expect_fail(&b, MEMFIT_E_FORMAT, "duplicate metadata key 'dup'");
    header(&b, 3, 0, 1);
    bb_str(&b, "general.alignment");
    bb_u32(&b, MEMFIT_META_U32);
    bb_u32(&b, 24);
    expect_fail(&b, MEMFIT_E_FORMAT, "power of two");
    header(&b, 3, 0, 1);
    bb_str(&b, "general.alignment");
    bb_u32(&b, MEMFIT_META_U64);
    bb_u64(&b, 32);
    expect_fail(&b, MEMFIT_E_FORMAT, "must be u32");
}

static void test_bad_tensors(void **state)
{
    (void)state;
    struct bb b = {0};
    uint64_t ne[9] = {4, 1, 1, 1, 1, 1, 1, 1, 1};
    header(&b, 3, 1, 0);
    tensor_info(&b, "x", 9, ne, MEMFIT_TYPE_F32, 0);
    bb_pad(&b, 32);
    bb_put(&b, "0123456789abcdef", 16);
    expect_fail(&b, MEMFIT_E_FORMAT, "n_dims 9");

    uint64_t big[2] = {1ull << 40, 1ull << 40};
    header(&b, 3, 1, 0);
    tensor_info(&b, "x", 2, big, MEMFIT_TYPE_F32, 0);
    bb_pad(&b, 32);
    expect_fail(&b, MEMFIT_E_FORMAT, "overflow");
    uint64_t neg[1] = {UINT64_MAX};
    header(&b, 3, 1, 0);
    tensor_info(&b, "x", 1, neg, MEMFIT_TYPE_F32, 0);
    bb_pad(&b, 32);
    expect_fail(&b, MEMFIT_E_FORMAT, "INT64_MAX");

    header(&b, 3, 1, 0);
    tensor_info(&b, "x", 1, ne, 4, 0); /* removed type id */
    bb_pad(&b, 32);
    expect_fail(&b, MEMFIT_E_UNSUPPORTED, "type id 4");

    uint64_t q[1] = {48}; /* Q4_0 needs multiples of 32 */
    header(&b, 3, 1, 0);
    tensor_info(&b, "q", 1, q, MEMFIT_TYPE_Q4_0, 0);
    bb_pad(&b, 32);
    bb_put(&b, "0123456789abcdef0123456789abcdef", 32);
    expect_fail(&b, MEMFIT_E_FORMAT, "block size");

    header(&b, 3, 1, 0);
    tensor_info(&b, "x", 1, ne, MEMFIT_TYPE_F32, 32);
    bb_pad(&b, 32);
    bb_put(&b, "0123456789abcdef", 16);
    expect_fail(&b, MEMFIT_E_FORMAT, "beyond file size");

    header(&b, 3, 1, 0);
    tensor_info(&b, "x", 1, ne, MEMFIT_TYPE_F32, 8);
    bb_pad(&b, 32);
    bb_put(&b, "0123456789abcdef0123456789abcdef", 32);
    expect_fail(&b, MEMFIT_E_FORMAT, "not a multiple of the alignment");

    header(&b, 3, 1, 0);
    tensor_info(&b, "x", 1, ne, MEMFIT_TYPE_F32, UINT64_MAX - 31);
    bb_pad(&b, 32);
    expect_fail(&b, MEMFIT_E_FORMAT, "beyond file size");

    uint64_t ne16[1] = {16};
    header(&b, 3, 2, 0);
    tensor_info(&b, "a", 1, ne16, MEMFIT_TYPE_F32, 0);
    tensor_info(&b, "b", 1, ne16, MEMFIT_TYPE_F32, 32);
    bb_pad(&b, 32);
    for (int i = 0; i < 16; i++)
        bb_put(&b, "01234567", 8);
    expect_fail(&b, MEMFIT_E_FORMAT, "overlaps");

    header(&b, 3, 2, 0);
    tensor_info(&b, "a", 1, ne, MEMFIT_TYPE_F32, 0);
    tensor_info(&b, "a", 1, ne, MEMFIT_TYPE_F32, 32);
    bb_pad(&b, 32);
    bb_put(&b, "0123456789abcdef0123456789abcdef0123456789abcdef", 48);
    expect_fail(&b, MEMFIT_E_FORMAT, "duplicate tensor name 'a'");

    /* ggml's stricter rule: a gap is a warning by default, an error with strict. */
    header(&b, 3, 2, 0);
    tensor_info(&b, "a", 1, ne, MEMFIT_TYPE_F32, 0);
    tensor_info(&b, "b", 1, ne, MEMFIT_TYPE_F32, 64);
    bb_pad(&b, 32);
    for (int i = 0; i < 10; i++)
        bb_put(&b, "01234567", 8);
    memfit_tensors *set;
    assert_int_equal(open_mem(&b, &set), MEMFIT_OK);
    assert_int_equal(memfit_tensors_count(set), 2);
    struct memfit_tensor_info t;
    assert_int_equal(memfit_tensors_find(set, "b", &t, NULL), MEMFIT_OK);
    assert_int_equal(t.shape[0], 4);
    memfit_tensors_close(set);
    struct memfit_tensors_options o;
    memfit_tensors_options_default(&o);
    o.strict = true;
    assert_int_equal(mf_tensors_open_memory(b.p, b.len, "s.gguf", &o, &set), MEMFIT_E_FORMAT);
    assert_non_null(strstr(memfit_last_error(), "ggml expects 32"));
    bb_free(&b);

    /* v2 files have the same layout and open. */
    header(&b, 2, 1, 0);
    tensor_info(&b, "x", 1, ne, MEMFIT_TYPE_F32, 0);
    bb_pad(&b, 32);
    bb_put(&b, "0123456789abcdef", 16);
    assert_int_equal(open_mem(&b, &set), MEMFIT_OK);
    assert_int_equal(memfit_tensors_version(set), 2);
    memfit_tensors_close(set);
    bb_free(&b);
}

static enum memfit_status write_op(void *ctx)
{
    const char *path = ctx;
    memfit_writer *w;
    enum memfit_status st = memfit_writer_create(path, MEMFIT_FORMAT_GGUF, &w);
    if (st != MEMFIT_OK)
        return st;
    int64_t shape[2] = {2, 32};
    uint8_t data[68] = {0};
    if ((st = memfit_writer_set_meta_string(w, "general.name", "x")) == MEMFIT_OK &&
        (st = memfit_writer_add_tensor(w, "a", MEMFIT_TYPE_Q8_0, 2, shape)) == MEMFIT_OK &&
        (st = memfit_writer_add_tensor(w, "b", MEMFIT_TYPE_F32, 1, shape)) == MEMFIT_OK &&
        (st = memfit_writer_write_tensor(w, 0, 0, data, 68)) == MEMFIT_OK &&
        (st = memfit_writer_write_tensor(w, 1, 0, data, 8)) == MEMFIT_OK)
        st = memfit_writer_commit(w);
    memfit_writer_destroy(w);
    return st;
}

static void test_fault_walks(void **state)
{
    (void)state;
    walk_path = write_sample(3);
    assert_true(mf_test_alloc_failures(walk_open_op, walk_close_op, NULL) > 3);
    unlink(walk_path);
    memfit_free((char *)walk_path);
    char *path = tmp_path(".gguf");
    assert_true(mf_test_alloc_failures(write_op, NULL, path) > 3);
    unlink(path);
    memfit_free(path);
}

static void test_writer_misuse(void **state)
{
    (void)state;
    char *path = tmp_path(".gguf");
    memfit_writer *w;
    assert_int_equal(memfit_writer_create(path, MEMFIT_FORMAT_GGUF, &w), MEMFIT_OK);
    int64_t shape[1] = {4};
    assert_int_equal(memfit_writer_add_tensor(w, "a", MEMFIT_TYPE_F32, 1, shape), MEMFIT_OK);
    assert_int_equal(memfit_writer_add_tensor(w, "a", MEMFIT_TYPE_F32, 1, shape), MEMFIT_E_EXISTS);
    assert_int_equal(memfit_writer_add_tensor(w, "q", MEMFIT_TYPE_Q4_0, 1, shape), MEMFIT_E_FORMAT);
    char longname[80];
    memset(longname, 'n', 79);
    longname[79] = '\0';
    assert_int_equal(memfit_writer_add_tensor(w, longname, MEMFIT_TYPE_F32, 1, shape),
                     MEMFIT_E_RANGE);
    float data[4] = {1, 2, 3, 4};
    assert_int_equal(memfit_writer_write_tensor(w, 0, 4, data, 4), MEMFIT_E_MISUSE);
    assert_int_equal(memfit_writer_write_tensor(w, 0, 0, data, 20), MEMFIT_E_RANGE);
    assert_int_equal(memfit_writer_write_tensor(w, 0, 0, data, 8), MEMFIT_OK);
    assert_int_equal(memfit_writer_commit(w), MEMFIT_E_MISUSE); /* incomplete */
    memfit_writer_destroy(w);                                   /* removes the temp file */
    assert_int_not_equal(access(path, F_OK), 0);
    memfit_free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),  cmocka_unit_test(test_truncations),
        cmocka_unit_test(test_bad_headers), cmocka_unit_test(test_bad_tensors),
        cmocka_unit_test(test_fault_walks), cmocka_unit_test(test_writer_misuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests of the safetensors reader and writer: round trip over every
 * dtype, truncation at every length, the reference parser's checks (header
 * size, coverage, holes, overlaps, byte lengths), and fault walks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_util.h"
#include "format_test.h"

static const enum memfit_type st_types[] = {
    MEMFIT_TYPE_F64, MEMFIT_TYPE_F32, MEMFIT_TYPE_F16, MEMFIT_TYPE_BF16, MEMFIT_TYPE_I64,
    MEMFIT_TYPE_I32, MEMFIT_TYPE_I16, MEMFIT_TYPE_I8,  MEMFIT_TYPE_U8,   MEMFIT_TYPE_BOOL,
};
#define N_TYPES (sizeof(st_types) / sizeof(st_types[0]))

static char *write_sample(void)
{
    char *path = tmp_path(".safetensors");
    memfit_writer *w;
    assert_int_equal(memfit_writer_create(path, MEMFIT_FORMAT_SAFETENSORS, &w), MEMFIT_OK);
    assert_int_equal(memfit_writer_set_meta_string(w, "format", "pt"), MEMFIT_OK);
    struct memfit_meta_value v = {.type = MEMFIT_META_U32};
    assert_int_equal(memfit_writer_set_meta(w, "n", &v), MEMFIT_E_UNSUPPORTED);
    int64_t q[2] = {1, 32};
    assert_int_equal(memfit_writer_add_tensor(w, "q", MEMFIT_TYPE_Q4_0, 2, q),
                     MEMFIT_E_UNSUPPORTED);
    assert_non_null(strstr(memfit_last_error(), "cannot be stored in safetensors"));
    for (size_t i = 0; i < N_TYPES; i++) {
        char name[32];
        snprintf(name, sizeof(name), "t%zu.%s", i, memfit_type_get_info(st_types[i])->name);
        int64_t shape[2] = {3, (int64_t)i + 1};
        assert_int_equal(memfit_writer_add_tensor(w, name, st_types[i], 2, shape), MEMFIT_OK);
    }
    assert_int_equal(memfit_writer_add_tensor(w, "scalar", MEMFIT_TYPE_F32, 0, NULL), MEMFIT_OK);
    int64_t empty[2] = {0, 5};
    assert_int_equal(memfit_writer_add_tensor(w, "empty", MEMFIT_TYPE_F32, 2, empty), MEMFIT_OK);
    srand(5);
    for (size_t i = 0; i < N_TYPES + 2; i++) {
        uint64_t n = i < N_TYPES ? 3 * (i + 1) : i == N_TYPES ? 1 : 0;
        uint64_t bytes;
        assert_int_equal(memfit_type_bytes(i < N_TYPES ? st_types[i] : MEMFIT_TYPE_F32, n, &bytes),
                         MEMFIT_OK);
        uint8_t data[256];
        for (uint64_t b = 0; b < bytes; b++)
            data[b] = (uint8_t)rand();
        assert_int_equal(memfit_writer_write_tensor(w, i, 0, data, bytes), MEMFIT_OK);
    }
    assert_int_equal(memfit_writer_commit(w), MEMFIT_OK);
    memfit_writer_destroy(w);
    return path;
}

static void test_round_trip(void **state)
{
    (void)state;
    char *path = write_sample();
    size_t len;
    uint8_t *raw = read_file(path, &len);
    uint64_t n = mf_le64(raw);
    assert_int_equal(n % 8, 0); /* header padded to 8 */
    assert_int_equal(raw[8], '{');
    memfit_free(raw);
    memfit_tensors *set;
    assert_int_equal(memfit_tensors_open(path, NULL, &set), MEMFIT_OK);
    assert_int_equal(memfit_tensors_format(set), MEMFIT_FORMAT_SAFETENSORS);
    assert_int_equal(memfit_tensors_count(set), N_TYPES + 2);
    srand(5);
    for (size_t i = 0; i < N_TYPES; i++) {
        char name[32];
        snprintf(name, sizeof(name), "t%zu.%s", i, memfit_type_get_info(st_types[i])->name);
        struct memfit_tensor_info t;
        assert_int_equal(memfit_tensors_find(set, name, &t, NULL), MEMFIT_OK);
        assert_int_equal(t.type, st_types[i]);
        assert_int_equal(t.n_dims, 2);
        assert_int_equal(t.shape[0], 3);
        assert_int_equal(t.shape[1], (int64_t)i + 1);
        for (uint64_t b = 0; b < t.n_bytes; b++)
            assert_int_equal(((const uint8_t *)t.data)[b], (uint8_t)rand());
    }
    struct memfit_tensor_info t;
    assert_int_equal(memfit_tensors_find(set, "scalar", &t, NULL), MEMFIT_OK);
    assert_int_equal(t.n_dims, 0);
    assert_int_equal(t.n_elements, 1);
    assert_int_equal(memfit_tensors_find(set, "empty", &t, NULL), MEMFIT_OK);
    assert_int_equal(t.n_bytes, 0);
    /* file order = data-offset order: largest elements first */
    assert_int_equal(memfit_tensors_get(set, 0, &t), MEMFIT_OK);
    assert_true(t.type == MEMFIT_TYPE_F64 || t.type == MEMFIT_TYPE_I64);
    struct memfit_meta_value v;
    assert_int_equal(memfit_tensors_meta_find(set, "format", &v), MEMFIT_OK);
    assert_int_equal(v.type, MEMFIT_META_STRING);
    assert_string_equal(v.v.str.data, "pt");
    memfit_tensors_close(set);

    /* Truncation at every length. */
    raw = read_file(path, &len);
    check_truncations(raw, len, len);
    memfit_free(raw);
    unlink(path);
    memfit_free(path);
}

static void st_file(struct bb *b, const char *json, size_t data_bytes)
{
    bb_u64(b, strlen(json));
    bb_put(b, json, strlen(json));
    for (size_t i = 0; i < data_bytes; i++)
        bb_u8(b, (uint8_t)i);
}

static void expect_fail(struct bb *b, enum memfit_status want, const char *needle)
{
    memfit_tensors *set = NULL;
    enum memfit_status st = open_mem(b, &set);
    if (st != want || !strstr(memfit_last_error(), needle))
        fprintf(stderr, "got %s: %s (wanted '%s')\n", memfit_status_name(st), memfit_last_error(),
                needle);
    assert_int_equal(st, want);
    assert_non_null(strstr(memfit_last_error(), "test.data"));
    assert_non_null(strstr(memfit_last_error(), needle));
    bb_free(b);
}

#define T(name, dtype, shape, b, e)                                                                \
    "\"" name "\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e "]}"

static void test_bad_files(void **state)
{
    (void)state;
    struct bb b = {0};
    struct memfit_alloc_stats before, after;
    memfit_alloc_get_stats(&before);
    bb_u64(&b, 10000000000ull);
    bb_put(&b, "{}", 2);
    expect_fail(&b, MEMFIT_E_FORMAT, "over the limit");
    bb_u64(&b, 1000);
    bb_put(&b, "{}      ", 8);
    expect_fail(&b, MEMFIT_E_FORMAT, "beyond file size");
    memfit_alloc_get_stats(&after);
    assert_true(after.peak_bytes < before.peak_bytes + (1u << 20));

    st_file(&b, "{" T("a", "F32", "[2]", 0, 8) ",", 8);
    expect_fail(&b, MEMFIT_E_FORMAT, "header JSON");
    st_file(&b, "{" T("a", "F32", "[2]", 0, 8) "," T("a", "F32", "[2]", 0, 8) "}", 8);
    expect_fail(&b, MEMFIT_E_FORMAT, "duplicate");
    st_file(&b, "{" T("a", "U16", "[2]", 0, 4) "}", 4);
    expect_fail(&b, MEMFIT_E_UNSUPPORTED, "dtype U16");
    st_file(&b, "{" T("a", "F8_E4M3", "[2]", 0, 2) "}", 2);
    expect_fail(&b, MEMFIT_E_UNSUPPORTED, "dtype F8_E4M3");
    st_file(&b, "{" T("a", "Q9", "[2]", 0, 2) "}", 2);
    expect_fail(&b, MEMFIT_E_FORMAT, "unknown dtype");
    st_file(&b, "{" T("a", "F32", "[2]", 0, 8) "," T("b", "F32", "[2]", 12, 20) "}", 20);
    expect_fail(&b, MEMFIT_E_FORMAT, "hole");
    st_file(&b, "{" T("a", "F32", "[2]", 0, 8) "," T("b", "F32", "[2]", 4, 12) "}", 12);
    expect_fail(&b, MEMFIT_E_FORMAT, "overlaps");
    st_file(&b, "{" T("a", "F32", "[2]", 0, 8) "}", 9);
    expect_fail(&b, MEMFIT_E_FORMAT, "not fully covered");
    st_file(&b, "{" T("a", "F32", "[3]", 0, 8) "}", 8);
    expect_fail(&b, MEMFIT_E_FORMAT, "expected 12");
    st_file(&b, "{" T("a", "F32", "[2]", 0, 80) "}", 8);
    expect_fail(&b, MEMFIT_E_FORMAT, "beyond the 8-byte buffer");
    st_file(&b, "{" T("a", "F32", "[-2]", 0, 8) "}", 8);
    expect_fail(&b, MEMFIT_E_FORMAT, "non-negative");
    st_file(&b, "{" T("a", "F32", "[4294967296,4294967296,4294967296]", 0, 8) "}", 8);
    expect_fail(&b, MEMFIT_E_FORMAT, "overflow");
    st_file(&b, "{" T("a", "F32", "[1,1,1,1,1,1,1,1,1]", 0, 4) "}", 4);
    expect_fail(&b, MEMFIT_E_UNSUPPORTED, "9 dimensions");
    st_file(&b, "{\"__metadata__\":{\"n\":3}}", 0);
    expect_fail(&b, MEMFIT_E_FORMAT, "not a string");
    st_file(&b, "{\"a\":{\"dtype\":\"F32\"}}", 0);
    expect_fail(&b, MEMFIT_E_FORMAT, "needs");
    st_file(&b, "[1]     ", 0);
    expect_fail(&b, MEMFIT_E_FORMAT, "unknown file format");

    /* A header of 0x280 bytes starts 80 02, like a pickle: still safetensors. */
    bb_u64(&b, 0x280);
    bb_put(&b, "{}", 2);
    for (int i = 2; i < 0x280; i++)
        bb_u8(&b, ' ');
    memfit_tensors *st_set;
    assert_int_equal(open_mem(&b, &st_set), MEMFIT_OK);
    assert_int_equal(memfit_tensors_format(st_set), MEMFIT_FORMAT_SAFETENSORS);
    memfit_tensors_close(st_set);
    bb_free(&b);

    /* Leading whitespace and an empty header are fine, as in the reference parser. */
    st_file(&b, "  {}    ", 0);
    memfit_tensors *set;
    assert_int_equal(open_mem(&b, &set), MEMFIT_OK);
    assert_int_equal(memfit_tensors_count(set), 0);
    memfit_tensors_close(set);
    bb_free(&b);
}

static enum memfit_status write_op(void *ctx)
{
    memfit_writer *w;
    enum memfit_status st = memfit_writer_create(ctx, MEMFIT_FORMAT_SAFETENSORS, &w);
    if (st != MEMFIT_OK)
        return st;
    int64_t shape[1] = {2};
    float data[2] = {1, 2};
    if ((st = memfit_writer_set_meta_string(w, "format", "pt")) == MEMFIT_OK &&
        (st = memfit_writer_add_tensor(w, "a", MEMFIT_TYPE_F32, 1, shape)) == MEMFIT_OK &&
        (st = memfit_writer_add_tensor(w, "b", MEMFIT_TYPE_F32, 1, shape)) == MEMFIT_OK &&
        (st = memfit_writer_write_tensor(w, 1, 0, data, 8)) == MEMFIT_OK &&
        (st = memfit_writer_write_tensor(w, 0, 0, data, 8)) == MEMFIT_OK)
        st = memfit_writer_commit(w);
    memfit_writer_destroy(w);
    return st;
}

static void test_fault_walks(void **state)
{
    (void)state;
    walk_path = write_sample();
    assert_true(mf_test_alloc_failures(walk_open_op, walk_close_op, NULL) > 3);
    unlink(walk_path);
    memfit_free((char *)walk_path);
    char *path = tmp_path(".safetensors");
    assert_true(mf_test_alloc_failures(write_op, NULL, path) > 3);
    unlink(path);
    memfit_free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_fault_walks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests of the .pth reader: fixtures made by torch.save (values,
 * dtypes, shared storages, nesting, parameters, non-contiguous and legacy
 * files), truncation at every length, corrupted zip fields, hand-made
 * hostile pickles (unknown globals, deep and recursive structures), and
 * fault walks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "format/pickle.h"
#include "test_util.h"
#include "format_test.h"

#define BB_LIT(b, s) bb_put(b, s, sizeof(s) - 1)

static char fixture_buf[4096];

static const char *fixture(const char *name)
{
    char rel[256];
    snprintf(rel, sizeof(rel), "format/%s", name);
    return mf_test_fixture(rel, fixture_buf, sizeof(fixture_buf));
}

static void test_state_dict(void **state)
{
    (void)state;
    memfit_tensors *set;
    assert_int_equal(memfit_tensors_open(fixture("state_dict.pth"), NULL, &set), MEMFIT_OK);
    assert_int_equal(memfit_tensors_format(set), MEMFIT_FORMAT_PTH);
    assert_int_equal(memfit_tensors_count(set), 13);
    struct memfit_tensor_info t;
    assert_int_equal(memfit_tensors_get(set, 0, &t), MEMFIT_OK);
    assert_string_equal(t.name, "linear.weight");
    assert_int_equal(t.type, MEMFIT_TYPE_F32);
    assert_int_equal(t.n_dims, 2);
    assert_int_equal(t.shape[0], 3);
    assert_int_equal(t.shape[1], 4);
    assert_int_equal(t.file_offset % 64, 0); /* torch aligns records */
    for (int i = 0; i < 12; i++) {
        float f;
        memcpy(&f, (const char *)t.data + 4 * i, 4);
        assert_true(f == (float)i);
    }
    assert_int_equal(memfit_tensors_find(set, "view_tail", &t, NULL), MEMFIT_OK);
    assert_int_equal(t.shape[0], 6);
    float f;
    memcpy(&f, t.data, 4);
    assert_true(f == 4.0f); /* storage offset applied */
    struct memfit_tensor_info full;
    assert_int_equal(memfit_tensors_find(set, "view_full", &full, NULL), MEMFIT_OK);
    assert_ptr_equal((const char *)full.data + 16, t.data); /* one storage, two views */
    static const struct {
        const char *name;
        enum memfit_type type;
        uint32_t n_dims;
    } want[] = {
        {"emb.weight", MEMFIT_TYPE_F16, 2}, {"bf", MEMFIT_TYPE_BF16, 1},
        {"steps", MEMFIT_TYPE_I64, 1},      {"mask", MEMFIT_TYPE_BOOL, 1},
        {"scalar", MEMFIT_TYPE_F64, 0},     {"i8", MEMFIT_TYPE_I8, 1},
        {"u8", MEMFIT_TYPE_U8, 1},          {"i16", MEMFIT_TYPE_I16, 1},
        {"i32", MEMFIT_TYPE_I32, 1},
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        assert_int_equal(memfit_tensors_find(set, want[i].name, &t, NULL), MEMFIT_OK);
        assert_int_equal(t.type, want[i].type);
        assert_int_equal(t.n_dims, want[i].n_dims);
    }
    assert_int_equal(memfit_tensors_find(set, "scalar", &t, NULL), MEMFIT_OK);
    double d;
    memcpy(&d, t.data, 8);
    assert_true(d == 3.25);
    assert_int_equal(memfit_tensors_meta_count(set), 0);
    memfit_tensors_close(set);
}

static void test_other_fixtures(void **state)
{
    (void)state;
    memfit_tensors *set;
    struct memfit_tensor_info t;
    assert_int_equal(memfit_tensors_open(fixture("nested.pth"), NULL, &set), MEMFIT_OK);
    assert_int_equal(memfit_tensors_count(set), 2);
    assert_int_equal(memfit_tensors_find(set, "model.a.weight", &t, NULL), MEMFIT_OK);
    assert_int_equal(memfit_tensors_find(set, "opt.state.0.exp_avg", &t, NULL), MEMFIT_OK);
    memfit_tensors_close(set);
    assert_int_equal(memfit_tensors_open(fixture("param.pth"), NULL, &set), MEMFIT_OK);
    assert_int_equal(memfit_tensors_find(set, "p", &t, NULL), MEMFIT_OK);
    assert_int_equal(t.shape[0], 3);
    memfit_tensors_close(set);
    assert_int_equal(memfit_tensors_open(fixture("compressed_pkl.pth"), NULL, &set), MEMFIT_OK);
    assert_int_equal(memfit_tensors_count(set), 13);
    memfit_tensors_close(set);

    assert_int_equal(memfit_tensors_open(fixture("strided.pth"), NULL, &set), MEMFIT_E_UNSUPPORTED);
    assert_non_null(strstr(memfit_last_error(), "tensor w: stride"));
    assert_int_equal(memfit_tensors_open(fixture("legacy.pth"), NULL, &set), MEMFIT_E_UNSUPPORTED);
    assert_non_null(strstr(memfit_last_error(), "_use_new_zipfile_serialization=True"));
}

/* Every record deflated (a re-zipped archive): the storages are inflated into
 * memory the set owns, and the tensors equal those of the stored original. */
static void test_compressed_records(void **state)
{
    (void)state;
    memfit_tensors *plain, *packed;
    assert_int_equal(memfit_tensors_open(fixture("state_dict.pth"), NULL, &plain), MEMFIT_OK);
    assert_int_equal(memfit_tensors_open(fixture("compressed.pth"), NULL, &packed), MEMFIT_OK);
    assert_int_equal(memfit_tensors_count(packed), memfit_tensors_count(plain));
    for (size_t i = 0; i < memfit_tensors_count(plain); i++) {
        struct memfit_tensor_info a, b;
        assert_int_equal(memfit_tensors_get(plain, i, &a), MEMFIT_OK);
        assert_int_equal(memfit_tensors_find(packed, a.name, &b, NULL), MEMFIT_OK);
        assert_int_equal(a.type, b.type);
        assert_int_equal(a.n_bytes, b.n_bytes);
        assert_memory_equal(a.data, b.data, a.n_bytes);
        assert_true(a.file_offset != UINT64_MAX);
        assert_true(b.file_offset == UINT64_MAX || b.n_bytes == 0);
    }
    memfit_tensors_close(packed);
    memfit_tensors_close(plain);
}

static void test_truncations_and_corruption(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = read_file(fixture("state_dict.pth"), &len);
    check_truncations(buf, len, len);
    /* Corrupt the end-of-central-directory offset and entry count. */
    size_t eocd = len - 22;
    assert_int_equal(mf_le32(buf + eocd), 0x06054b50);
    uint8_t *bad = memfit_malloc(len);
    memfit_tensors *set;
    static const struct {
        size_t at;
        uint32_t value;
        int bytes;
        const char *needle;
    } cases[] = {
        {16, 0x7fffffff, 4, "central directory"},
        {12, 0x7fffffff, 4, "central directory"},
        {10, 0xfff0, 2, "entries cannot fit"},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        memcpy(bad, buf, len);
        for (int i = 0; i < cases[c].bytes; i++)
            bad[eocd + cases[c].at + (size_t)i] = (uint8_t)(cases[c].value >> (8 * i));
        assert_int_equal(mf_tensors_open_memory(bad, len, "z.pth", NULL, &set), MEMFIT_E_FORMAT);
        assert_non_null(strstr(memfit_last_error(), cases[c].needle));
    }
    /* Every single-byte corruption either opens or fails cleanly. */
    for (size_t i = 0; i < len; i += 3) {
        memcpy(bad, buf, len);
        bad[i] ^= 0x5a;
        if (mf_tensors_open_memory(bad, len, "z.pth", NULL, &set) == MEMFIT_OK)
            memfit_tensors_close(set);
    }
    memfit_free(bad);
    memfit_free(buf);
}

static enum memfit_status count_tensor(void *ctx, const struct mf_pickle_tensor *t)
{
    (void)t;
    (*(int *)ctx)++;
    return MEMFIT_OK;
}

static enum memfit_status run_pickle(const struct bb *b, int *count)
{
    *count = 0;
    return mf_pickle_load_state_dict(b->p, b->len, "p.pkl", count_tensor, count);
}

static void test_hostile_pickles(void **state)
{
    (void)state;
    struct bb b = {0};
    int n;
    /* os.system("...") */
    BB_LIT(&b, "\x80\x02"
               "cos\nsystem\nX\x02\x00\x00\x00lsR.");
    assert_int_equal(run_pickle(&b, &n), MEMFIT_E_UNSUPPORTED);
    assert_non_null(strstr(memfit_last_error(), "global 'os.system' not allowed"));
    bb_free(&b);
    /* builtins.eval via STACK_GLOBAL */
    BB_LIT(&b, "\x80\x04\x8c\x08"
               "builtins\x8c\x04"
               "eval\x93.");
    assert_int_equal(run_pickle(&b, &n), MEMFIT_E_UNSUPPORTED);
    assert_non_null(strstr(memfit_last_error(), "builtins.eval"));
    bb_free(&b);
    /* 100000 nested MARKs */
    BB_LIT(&b, "\x80\x02");
    for (int i = 0; i < 100000; i++)
        bb_u8(&b, '(');
    assert_int_equal(run_pickle(&b, &n), MEMFIT_E_FORMAT);
    assert_non_null(strstr(memfit_last_error(), "nesting deeper"));
    bb_free(&b);
    /* 100000 nested lists: ] q0 ] a ] a ... built without marks */
    BB_LIT(&b, "\x80\x02}");
    for (int i = 0; i < 2000; i++)
        BB_LIT(&b, "X\x01\x00\x00\x00k}"); /* key, new dict: left on the stack */
    for (int i = 0; i < 2000; i++)
        bb_u8(&b, 's'); /* d[k] = inner, innermost first */
    bb_u8(&b, '.');
    assert_int_equal(run_pickle(&b, &n), MEMFIT_E_FORMAT);
    assert_non_null(strstr(memfit_last_error(), "nested deeper than 64"));
    bb_free(&b);
    /* A dict holding itself: d = {}; d["x"] = d */
    BB_LIT(&b, "\x80\x02}q\x00X\x01\x00\x00\x00xh\x00s.");
    assert_int_equal(run_pickle(&b, &n), MEMFIT_E_FORMAT);
    assert_non_null(strstr(memfit_last_error(), "recursive"));
    bb_free(&b);
    /* memo index far beyond the pickle, unset memo, underflow, truncated string, big int */
    BB_LIT(&b, "\x80\x02}r\xff\xff\xff\x7f.");
    assert_int_equal(run_pickle(&b, &n), MEMFIT_E_FORMAT);
    bb_free(&b);
    BB_LIT(&b, "\x80\x02h\x05.");
    assert_int_equal(run_pickle(&b, &n), MEMFIT_E_FORMAT);
    bb_free(&b);
    BB_LIT(&b, "\x80\x02s.");
    assert_int_equal(run_pickle(&b, &n), MEMFIT_E_FORMAT);
    assert_non_null(strstr(memfit_last_error(), "underflow"));
    bb_free(&b);
    BB_LIT(&b, "\x80\x02X\xff\xff\xff\xff");
    assert_int_equal(run_pickle(&b, &n), MEMFIT_E_FORMAT);
    bb_free(&b);
    BB_LIT(&b, "\x80\x02\x8a\x10");
    assert_int_equal(run_pickle(&b, &n), MEMFIT_E_UNSUPPORTED);
    bb_free(&b);
    /* not a dict, no STOP, unknown opcode */
    BB_LIT(&b, "\x80\x02K\x01.");
    assert_int_equal(run_pickle(&b, &n), MEMFIT_E_UNSUPPORTED);
    bb_free(&b);
    BB_LIT(&b, "\x80\x02}");
    assert_int_equal(run_pickle(&b, &n), MEMFIT_E_FORMAT);
    assert_non_null(strstr(memfit_last_error(), "without STOP"));
    bb_free(&b);
    BB_LIT(&b, "\x80\x02I1\n.");
    assert_int_equal(run_pickle(&b, &n), MEMFIT_E_UNSUPPORTED);
    assert_non_null(strstr(memfit_last_error(), "opcode 0x49"));
    bb_free(&b);
    /* An OrderedDict with _metadata BUILD and an int value is fine and empty. */
    BB_LIT(&b, "\x80\x02"
               "ccollections\nOrderedDict\n)R}bX\x01\x00\x00\x00nK\x03s.");
    assert_int_equal(run_pickle(&b, &n), MEMFIT_OK);
    assert_int_equal(n, 0);
    bb_free(&b);
}

/* memfit_tensors_release: a released tensor reads the same (its pages come
 * back from the file); an inflated record and bad indexes are left alone. */
static void test_release(void **state)
{
    (void)state;
    const char *files[] = {"state_dict.pth", "compressed.pth"};
    for (size_t f = 0; f < 2; f++) {
        memfit_tensors *set;
        assert_int_equal(memfit_tensors_open(fixture(files[f]), NULL, &set), MEMFIT_OK);
        for (size_t i = 0; i < memfit_tensors_count(set); i++) {
            struct memfit_tensor_info t;
            assert_int_equal(memfit_tensors_get(set, i, &t), MEMFIT_OK);
            void *copy = memfit_malloc(t.n_bytes ? t.n_bytes : 1);
            assert_non_null(copy);
            memcpy(copy, t.data, t.n_bytes);
            memfit_tensors_release(set, i);
            assert_memory_equal(copy, t.data, t.n_bytes);
            memfit_free(copy);
        }
        memfit_tensors_release(set, memfit_tensors_count(set)); /* out of range: nothing */
        assert_string_equal(memfit_last_error(), "");
        memfit_tensors_close(set);
    }
    memfit_tensors_release(NULL, 0);
}

static void test_fault_walk(void **state)
{
    (void)state;
    static char path[4096];
    snprintf(path, sizeof(path), "%s", fixture("state_dict.pth"));
    walk_path = path;
    assert_true(mf_test_alloc_failures(walk_open_op, walk_close_op, NULL) > 10);
    snprintf(path, sizeof(path), "%s", fixture("compressed_pkl.pth"));
    assert_true(mf_test_alloc_failures(walk_open_op, walk_close_op, NULL) > 10);
    snprintf(path, sizeof(path), "%s", fixture("compressed.pth"));
    assert_true(mf_test_alloc_failures(walk_open_op, walk_close_op, NULL) > 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state_dict),
        cmocka_unit_test(test_release),
        cmocka_unit_test(test_other_fixtures),
        cmocka_unit_test(test_compressed_records),
        cmocka_unit_test(test_truncations_and_corruption),
        cmocka_unit_test(test_hostile_pickles),
        cmocka_unit_test(test_fault_walk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

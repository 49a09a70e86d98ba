/*
 * Unit tests of SAM's loader and image encoder against an independent
 * PyTorch reference (scripts/make_sam_reference.py, fixtures in
 * tests/fixtures/sam): the tiny model (G = 8, window 3 padded to 9, global
 * blocks 1 and 3) from the original .pth in F32 and from transformers'
 * names in safetensors (F16), the Q8_0 and Q4_0 copies memfit quantize
 * writes, detection from the header, the exact plan against the memory a
 * forward touches, bad files, and the allocation fault walk.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <sys/mman.h>
#include <unistd.h>

#include "test_util.h"
#include "memfit/memfit.h"

static char *fixture(const char *name)
{
    char buf[1024], rel[256];
    snprintf(rel, sizeof(rel), "sam/%s", name);
    return memfit_strdup(mf_test_fixture(rel, buf, sizeof(buf)));
}

static double cosine(const float *a, const float *b, size_t n)
{
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return ab / sqrt(aa * bb);
}

/* Encodes the hashed input with `path` on n_threads threads. */
static float *encode(const char *path, unsigned n_threads, struct memfit_sam_info *info_out)
{
    struct memfit_sam_options o;
    memfit_sam_options_default(&o);
    o.n_threads = n_threads;
    memfit_sam *m = NULL;
    enum memfit_status st = memfit_sam_open(path, &o, &m);
    if (st != MEMFIT_OK)
        fprintf(stderr, "%s\n", memfit_last_error());
    assert_int_equal(st, MEMFIT_OK);
    struct memfit_sam_info in;
    memfit_sam_get_info(m, &in);
    size_t work_bytes = 0;
    assert_int_equal(memfit_sam_encode_plan(m, &work_bytes), MEMFIT_OK);
    void *work = mmap(NULL, work_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(work != MAP_FAILED);
    size_t S = in.image_size, n_emb = (size_t)in.prompt_dim * in.grid * in.grid;
    float *px = mf_test_hashed_floats(3 * S * S, 5), *emb = memfit_malloc(n_emb * sizeof(float));
    assert_non_null(emb);
    assert_int_equal(memfit_sam_encode(m, px, work, work_bytes, emb), MEMFIT_OK);
    /* A short workspace is refused, not overrun. */
    assert_int_equal(memfit_sam_encode(m, px, work, work_bytes - 64, emb), MEMFIT_E_MISUSE);
    munmap(work, work_bytes);
    memfit_free(px);
    memfit_sam_close(m);
    if (info_out)
        *info_out = in;
    return emb;
}

static void test_info(void **state)
{
    (void)state;
    char *path = fixture("sam_tiny.pth");
    memfit_sam *m = NULL;
    assert_int_equal(memfit_sam_open(path, NULL, &m), MEMFIT_OK);
    struct memfit_sam_info in;
    memfit_sam_get_info(m, &in);
    assert_string_equal(in.variant, "custom");
    assert_int_equal(in.dim, 32);
    assert_int_equal(in.depth, 4);
    assert_int_equal(in.heads, 2);
    assert_int_equal(in.head_dim, 16);
    assert_int_equal(in.mlp_hidden, 128);
    assert_int_equal(in.patch_size, 16);
    assert_int_equal(in.grid, 8);
    assert_int_equal(in.image_size, 128);
    assert_int_equal(in.window, 3);
    assert_int_equal(in.n_global, 2);
    assert_int_equal(in.global[0], 1);
    assert_int_equal(in.global[1], 3);
    assert_int_equal(in.prompt_dim, 32);
    assert_int_equal(in.decoder_depth, 2);
    assert_int_equal(in.decoder_heads, 8);
    assert_int_equal(in.decoder_mlp, 64);
    assert_int_equal(in.n_mask_tokens, 4);
    assert_int_equal(in.mask_size, 32);
    assert_false(in.hf_names);
    assert_int_equal(in.weight_type, MEMFIT_TYPE_F32);
    assert_int_equal(in.converted_bytes, 0);
    assert_true(in.weight_bytes > 0);
    memfit_sam_close(m);
    /* Detection from the tensor set alone gives the same geometry. */
    memfit_tensors *set = NULL;
    assert_int_equal(memfit_tensors_open(path, NULL, &set), MEMFIT_OK);
    struct memfit_sam_info d;
    assert_int_equal(memfit_sam_detect(set, &d), MEMFIT_OK);
    assert_int_equal(d.grid, 8);
    assert_int_equal(d.window, 3);
    assert_int_equal(d.n_global, 2);
    assert_int_equal(d.prompt_dim, 32);
    memfit_tensors_close(set);
    memfit_free(path);
}

/* The F32 original checkpoint against the reference's embedding. */
static void test_encoder_f32(void **state)
{
    (void)state;
    char *path = fixture("sam_tiny.pth");
    size_t n = 32 * 8 * 8;
    float *ref = mf_test_fixture_floats("sam", "sam_tiny.embedding.bin", n);
    for (unsigned threads = 1; threads <= 2; threads++) {
        float *emb = encode(path, threads, NULL);
        double d = mf_test_max_abs_diff(emb, ref, n);
        printf("encoder F32, %u thread(s): max |diff| %.3g\n", threads, d);
        assert_true(d < 1e-4);
        memfit_free(emb);
    }
    memfit_free(ref);
    memfit_free(path);
}

/* transformers' names, F16 weights (converted at open), against the reference
 * run on the same F16-rounded weights. */
static void test_encoder_hf_f16(void **state)
{
    (void)state;
    char *path = fixture("sam_tiny_hf.safetensors");
    size_t n = 32 * 8 * 8;
    float *ref = mf_test_fixture_floats("sam", "hf.embedding.bin", n);
    struct memfit_sam_info in;
    float *emb = encode(path, 2, &in);
    assert_true(in.hf_names);
    assert_int_equal(in.weight_type, MEMFIT_TYPE_F16);
    assert_true(in.converted_bytes > 0);
    double d = mf_test_max_abs_diff(emb, ref, n);
    printf("encoder HF F16: max |diff| %.3g\n", d);
    assert_true(d < 1e-4);
    memfit_free(emb);
    memfit_free(ref);
    memfit_free(path);
}

/* memfit quantize's Q8_0 and Q4_0 GGUF copies: the tables stay F32, the
 * matrices are quantized, and the embedding stays close. */
static void test_encoder_quantized(void **state)
{
    (void)state;
    char *src = fixture("sam_tiny.pth");
    size_t n = 32 * 8 * 8;
    float *ref = mf_test_fixture_floats("sam", "sam_tiny.embedding.bin", n);
    static const enum memfit_quantize_target targets[] = {MEMFIT_QUANTIZE_Q8_0,
                                                          MEMFIT_QUANTIZE_Q4_0};
    static const enum memfit_type types[] = {MEMFIT_TYPE_Q8_0, MEMFIT_TYPE_Q4_0};
    /* Q4_0 on this tiny model (rows of one 32-block) reaches 0.979. */
    static const double min_cos[] = {0.999, 0.95};
    for (int k = 0; k < 2; k++) {
        const char *dir = getenv("TMPDIR");
        char *dst =
            memfit_asprintf("%s/memfit_sam_%d_%d.gguf", dir ? dir : "/tmp", (int)getpid(), k);
        struct memfit_quantize_options o;
        memfit_quantize_options_default(&o);
        o.target = targets[k];
        o.format = MEMFIT_FORMAT_GGUF;
        o.overwrite = true;
        enum memfit_status st = memfit_quantize_file(src, dst, &o, NULL);
        if (st != MEMFIT_OK)
            fprintf(stderr, "%s\n", memfit_last_error());
        assert_int_equal(st, MEMFIT_OK);
        struct memfit_sam_info in;
        float *emb = encode(dst, 2, &in);
        assert_int_equal(in.weight_type, types[k]);
        assert_int_equal(in.converted_bytes, 0); /* the tables are F32 in the copy */
        double c = cosine(emb, ref, n);
        printf("encoder %s: cosine %.6f, max |diff| %.3g\n", memfit_type_get_info(types[k])->name,
               c, mf_test_max_abs_diff(emb, ref, n));
        assert_true(c >= min_cos[k]);
        memfit_free(emb);
        unlink(dst);
        memfit_free(dst);
    }
    memfit_free(ref);
    memfit_free(src);
}

static void test_not_sam(void **state)
{
    (void)state;
    char buf[1024];
    char *path = memfit_strdup(mf_test_fixture("dinov2/vits_tiny.pth", buf, sizeof(buf)));
    memfit_sam *m = NULL;
    assert_int_equal(memfit_sam_open(path, NULL, &m), MEMFIT_E_FORMAT);
    assert_null(m);
    assert_non_null(strstr(memfit_last_error(), "not a SAM model"));
    memfit_free(path);
}

struct walk {
    char *path;
    memfit_sam *m;
};

static enum memfit_status open_and_plan(void *ctx)
{
    struct walk *w = ctx;
    struct memfit_sam_options o;
    memfit_sam_options_default(&o);
    o.n_threads = 2;
    enum memfit_status st = memfit_sam_open(w->path, &o, &w->m);
    if (st != MEMFIT_OK)
        return st;
    size_t a, b;
    st = memfit_sam_encode_plan(w->m, &a);
    if (st == MEMFIT_OK)
        st = memfit_sam_decode_plan(w->m, &b);
    if (st != MEMFIT_OK) {
        memfit_sam_close(w->m);
        w->m = NULL;
    }
    return st;
}

static void close_walk(void *ctx)
{
    struct walk *w = ctx;
    memfit_sam_close(w->m);
    w->m = NULL;
}

static void test_alloc_failures(void **state)
{
    (void)state;
    /* The .pth: jansson asserts when an allocation fails inside a safetensors
     * header (lex_scan_string), so the JSON path cannot be walked. */
    struct walk w = {.path = fixture("sam_tiny.pth")};
    mf_test_alloc_failures(open_and_plan, close_walk, &w);
    memfit_free(w.path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_info),           cmocka_unit_test(test_encoder_f32),
        cmocka_unit_test(test_encoder_hf_f16), cmocka_unit_test(test_encoder_quantized),
        cmocka_unit_test(test_not_sam),        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Unit tests of SAM's prompt encoder and mask decoder against an independent
 * PyTorch reference (scripts/make_sam_reference.py, tests/fixtures/sam):
 * the tiny model's decoder cases fed the reference's own image embedding,
 * from the original .pth (F32) and from the transformers-named safetensors
 * (F16); 1 and 2 threads; many prompts in one call against one at a time
 * (bit for bit); the plan exact at its edge; no allocation in decode; bad
 * prompts and a short workspace.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>

#include "test_util.h"
#include "memfit/memfit.h"

/* Logits and IoU of the reference within this (absolute). */
#define TOL 1e-4

#define MASK_SIDE  32 /* 4G for the tiny model's G = 8 */
#define MASK_PIX   (MASK_SIDE * MASK_SIDE)
#define EMB_FLOATS (32 * 8 * 8)

static memfit_sam *open_model(const char *name, unsigned n_threads)
{
    char rel[256], buf[1024];
    snprintf(rel, sizeof(rel), "sam/%s", name);
    struct memfit_sam_options opts;
    memfit_sam_options_default(&opts);
    opts.n_threads = n_threads;
    memfit_sam *m = NULL;
    enum memfit_status st = memfit_sam_open(mf_test_fixture(rel, buf, sizeof(buf)), &opts, &m);
    if (st != MEMFIT_OK)
        fail_msg("memfit_sam_open(%s): %s", name, memfit_last_error());
    return m;
}

static void *alloc_work(const memfit_sam *m, size_t extra, size_t *out_bytes)
{
    size_t bytes;
    assert_int_equal(memfit_sam_decode_plan(m, &bytes), MEMFIT_OK);
    void *w = NULL;
    assert_int_equal(posix_memalign(&w, 64, bytes + extra), 0);
    *out_bytes = bytes;
    return w;
}

/* The four cases of cases.txt (points in the 128 input frame). */
struct dcase {
    const char *name;
    bool multimask;
    float points[4];
    int32_t labels[2];
    size_t n_points;
    bool has_box;
    float box[4];
    bool mask_input; /* point1_multi's best low-res mask */
};

static const struct dcase cases[] = {
    {"point1_multi", true, {37.2f, 81.5f}, {1}, 1, false, {0}, false},
    {"box_single", false, {0}, {0}, 0, true, {10, 20, 90, 110}, false},
    {"mixed_multi", true, {20, 30, 100, 64}, {1, 0}, 2, true, {5, 5, 120, 100}, true},
    {"twopoints_single", false, {64, 64, 10, 100}, {1, 1}, 2, false, {0}, false},
};
#define N_CASES (sizeof(cases) / sizeof(cases[0]))

/* The reference outputs of one model's cases ("" or "hf_" prefix). */
struct refs {
    float *emb, *low_res[N_CASES], *iou[N_CASES], *best; /* best: point1_multi's top mask */
};

static void refs_load(struct refs *r, const char *prefix)
{
    char name[128];
    snprintf(name, sizeof(name), "%s.embedding.bin", prefix[0] ? "hf" : "sam_tiny");
    r->emb = mf_test_fixture_floats("sam", name, EMB_FLOATS);
    for (size_t c = 0; c < N_CASES; c++) {
        uint32_t M = memfit_sam_mask_count(cases[c].multimask);
        snprintf(name, sizeof(name), "%s%s.low_res.bin", prefix, cases[c].name);
        r->low_res[c] = mf_test_fixture_floats("sam", name, M * MASK_PIX);
        snprintf(name, sizeof(name), "%s%s.iou.bin", prefix, cases[c].name);
        r->iou[c] = mf_test_fixture_floats("sam", name, M);
    }
    int best = 0;
    for (int k = 1; k < 3; k++)
        if (r->iou[0][k] > r->iou[0][best])
            best = k;
    r->best = r->low_res[0] + best * MASK_PIX;
}

static void refs_free(struct refs *r)
{
    memfit_free(r->emb);
    for (size_t c = 0; c < N_CASES; c++) {
        memfit_free(r->low_res[c]);
        memfit_free(r->iou[c]);
    }
}

static struct memfit_sam_prompt make_prompt(const struct dcase *c, const struct refs *r)
{
    struct memfit_sam_prompt p = {.points = c->n_points ? c->points : NULL,
                                  .labels = c->n_points ? c->labels : NULL,
                                  .n_points = c->n_points,
                                  .has_box = c->has_box,
                                  .mask_input = c->mask_input ? r->best : NULL};
    memcpy(p.box, c->box, sizeof(p.box));
    return p;
}

/* Every case one prompt at a time against the reference. */
static void check_cases(const char *model, const char *prefix, unsigned n_threads)
{
    memfit_sam *m = open_model(model, n_threads);
    struct refs r;
    refs_load(&r, prefix);
    size_t bytes;
    void *work = alloc_work(m, 0, &bytes);
    for (size_t c = 0; c < N_CASES; c++) {
        uint32_t M = memfit_sam_mask_count(cases[c].multimask);
        float low_res[3 * MASK_PIX], iou[3];
        struct memfit_sam_prompt p = make_prompt(&cases[c], &r);
        enum memfit_status st =
            memfit_sam_decode(m, r.emb, &p, 1, cases[c].multimask, work, bytes, low_res, iou);
        if (st != MEMFIT_OK)
            fail_msg("%s: %s", cases[c].name, memfit_last_error());
        double dl = mf_test_max_abs_diff(low_res, r.low_res[c], M * MASK_PIX);
        double di = mf_test_max_abs_diff(iou, r.iou[c], M);
        print_message("%s%s, %u thread(s): max |low_res - ref| %.3g, max |iou - ref| %.3g\n",
                      prefix, cases[c].name, n_threads, dl, di);
        assert_true(dl <= TOL);
        assert_true(di <= TOL);
    }
    free(work);
    refs_free(&r);
    memfit_sam_close(m);
}

static void test_cases_pth_1thread(void **state)
{
    (void)state;
    check_cases("sam_tiny.pth", "", 1);
}

static void test_cases_pth_2threads(void **state)
{
    (void)state;
    check_cases("sam_tiny.pth", "", 2);
}

static void test_cases_hf_f16(void **state)
{
    (void)state;
    check_cases("sam_tiny_hf.safetensors", "hf_", 2);
}

/*
 * Several prompts in one call give, bit for bit, what each gives alone
 * (whole rounds run one prompt per thread, the rest split by bands), the
 * workspace past the plan is never touched, and decode allocates nothing.
 */
static void check_batch(unsigned n_threads, bool multimask)
{
    memfit_sam *m = open_model("sam_tiny.pth", n_threads);
    struct refs r;
    refs_load(&r, "");
    size_t bytes;
    const size_t guard = 4096;
    uint8_t *work = alloc_work(m, guard, &bytes);
    memset(work + bytes, 0xA5, guard);

    enum { N = 7 };
    struct memfit_sam_prompt p[N];
    size_t n_src = 0, src[N_CASES];
    for (size_t c = 0; c < N_CASES; c++)
        if (cases[c].multimask == multimask)
            src[n_src++] = c;
    for (size_t i = 0; i < N; i++)
        p[i] = make_prompt(&cases[src[i % n_src]], &r);
    uint32_t M = memfit_sam_mask_count(multimask);
    float *low_res = memfit_malloc(N * M * MASK_PIX * sizeof(float));
    float *iou = memfit_malloc(N * M * sizeof(float));
    assert_non_null(low_res);
    assert_non_null(iou);

    /* Every allocation fails meanwhile, and none is tried. (Not the live
     * count: a new pool's workers free their start-up argument when they
     * first run, which may be now.) */
    mf_alloc_fail_after(1, true);
    enum memfit_status st = memfit_sam_decode(m, r.emb, p, N, multimask, work, bytes, low_res, iou);
    uint64_t injected = mf_alloc_injected_failures();
    mf_alloc_fail_after(0, false);
    if (st != MEMFIT_OK)
        fail_msg("batch: %s", memfit_last_error());
    assert_int_equal(injected, 0);
    for (size_t i = 0; i < guard; i++)
        assert_int_equal(work[bytes + i], 0xA5);

    for (size_t i = 0; i < N; i++) {
        float one[3 * MASK_PIX], one_iou[3];
        assert_int_equal(
            memfit_sam_decode(m, r.emb, &p[i], 1, multimask, work, bytes, one, one_iou), MEMFIT_OK);
        assert_memory_equal(one, low_res + i * M * MASK_PIX, M * MASK_PIX * sizeof(float));
        assert_memory_equal(one_iou, iou + i * M, M * sizeof(float));
        size_t c = src[i % n_src];
        assert_true(mf_test_max_abs_diff(one, r.low_res[c], M * MASK_PIX) <= TOL);
    }
    memfit_free(low_res);
    memfit_free(iou);
    free(work);
    refs_free(&r);
    memfit_sam_close(m);
}

static void test_batch_1thread(void **state)
{
    (void)state;
    check_batch(1, true);
    check_batch(1, false);
}

static void test_batch_2threads(void **state)
{
    (void)state;
    check_batch(2, true);
    check_batch(2, false);
}

/* The same batch on 1 and 3 threads (two rounds of 3, then one prompt split
 * by bands): the same bits. */
static void test_thread_counts(void **state)
{
    (void)state;
    struct refs r;
    refs_load(&r, "");
    enum { N = 7 };
    struct memfit_sam_prompt p[N];
    for (size_t i = 0; i < N; i++)
        p[i] = make_prompt(&cases[i % 2 ? 2 : 0], &r); /* the multimask cases */
    float *out[2], iou[2][N * 3];
    const unsigned threads[2] = {1, 3};
    for (int t = 0; t < 2; t++) {
        memfit_sam *m = open_model("sam_tiny.pth", threads[t]);
        size_t bytes;
        void *work = alloc_work(m, 0, &bytes);
        out[t] = memfit_malloc(N * 3 * MASK_PIX * sizeof(float));
        assert_non_null(out[t]);
        assert_int_equal(memfit_sam_decode(m, r.emb, p, N, true, work, bytes, out[t], iou[t]),
                         MEMFIT_OK);
        free(work);
        memfit_sam_close(m);
    }
    assert_memory_equal(out[0], out[1], N * 3 * MASK_PIX * sizeof(float));
    assert_memory_equal(iou[0], iou[1], sizeof(iou[0]));
    memfit_free(out[0]);
    memfit_free(out[1]);
    refs_free(&r);
}

static void test_bad_prompts(void **state)
{
    (void)state;
    memfit_sam *m = open_model("sam_tiny.pth", 2);
    struct refs r;
    refs_load(&r, "");
    size_t bytes;
    void *work = alloc_work(m, 0, &bytes);
    float low_res[3 * MASK_PIX], iou[3];
    for (size_t i = 0; i < 3 * MASK_PIX; i++)
        low_res[i] = 7.0f;
    iou[0] = 7.0f;
    struct memfit_sam_prompt good = make_prompt(&cases[0], &r);

    /* The second prompt of two is bad: nothing is written for the first either. */
    struct memfit_sam_prompt two[2] = {good, {.n_points = 0, .has_box = false}};
    assert_int_equal(memfit_sam_decode(m, r.emb, two, 2, true, work, bytes, low_res, iou),
                     MEMFIT_E_RANGE);
    assert_non_null(strstr(memfit_last_error(), "prompt 1 has no point and no box"));
    assert_true(low_res[0] == 7.0f && iou[0] == 7.0f);

    float pt[2] = {10, 10};
    int32_t label = 5;
    struct memfit_sam_prompt bad = {.points = pt, .labels = &label, .n_points = 1};
    assert_int_equal(memfit_sam_decode(m, r.emb, &bad, 1, true, work, bytes, low_res, iou),
                     MEMFIT_E_RANGE);
    assert_non_null(strstr(memfit_last_error(), "label 5"));

    label = 1;
    pt[1] = NAN;
    assert_int_equal(memfit_sam_decode(m, r.emb, &bad, 1, true, work, bytes, low_res, iou),
                     MEMFIT_E_RANGE);
    assert_non_null(strstr(memfit_last_error(), "point 0 is (10, nan)"));

    struct memfit_sam_prompt box = {.has_box = true, .box = {0, 0, INFINITY, 5}};
    assert_int_equal(memfit_sam_decode(m, r.emb, &box, 1, false, work, bytes, low_res, iou),
                     MEMFIT_E_RANGE);
    assert_non_null(strstr(memfit_last_error(), "box coordinate 2 is inf"));

    struct memfit_sam_prompt many = {.points = pt, .labels = &label, .n_points = 65};
    assert_int_equal(memfit_sam_decode(m, r.emb, &many, 1, false, work, bytes, low_res, iou),
                     MEMFIT_E_RANGE);

    struct memfit_sam_prompt no_labels = {.points = pt, .n_points = 1};
    assert_int_equal(memfit_sam_decode(m, r.emb, &no_labels, 1, false, work, bytes, low_res, iou),
                     MEMFIT_E_MISUSE);

    assert_int_equal(memfit_sam_decode(m, r.emb, &good, 1, true, work, bytes - 1, low_res, iou),
                     MEMFIT_E_MISUSE);
    assert_non_null(strstr(memfit_last_error(), "workspace"));
    assert_int_equal(
        memfit_sam_decode(m, r.emb, &good, 1, true, (uint8_t *)work + 4, bytes - 64, low_res, iou),
        MEMFIT_E_MISUSE);
    assert_int_equal(memfit_sam_decode(m, NULL, &good, 1, true, work, bytes, low_res, iou),
                     MEMFIT_E_MISUSE);
    assert_int_equal(memfit_sam_decode_plan(NULL, &bytes), MEMFIT_E_MISUSE);
    assert_true(low_res[0] == 7.0f && iou[0] == 7.0f);

    /* Nothing to do is not an error. */
    assert_int_equal(memfit_sam_decode(m, r.emb, NULL, 0, true, NULL, 0, NULL, NULL), MEMFIT_OK);
    assert_int_equal(memfit_sam_mask_count(true), 3);
    assert_int_equal(memfit_sam_mask_count(false), 1);
    free(work);
    refs_free(&r);
    memfit_sam_close(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases_pth_1thread), cmocka_unit_test(test_cases_pth_2threads),
        cmocka_unit_test(test_cases_hf_f16),      cmocka_unit_test(test_batch_1thread),
        cmocka_unit_test(test_batch_2threads),    cmocka_unit_test(test_thread_counts),
        cmocka_unit_test(test_bad_prompts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests of src/models/sample.c: parameter checks, greedy, determinism
 * per seed, the distribution the draw follows (chi-square on a 4-token
 * vocabulary), the effect of each filter on both selection paths (top_k on
 * and off) against a sort-based reference, the repetition penalty, odd
 * logits (NaN, +inf, all -inf) and allocation failures at create; OpenAI's
 * presence/frequency penalties, logit_bias, the constraint hook, seeded
 * determinism with all of them, and logprobs (log-softmax, top ordering). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "memfit/models.h"
#include "test_util.h"

/* Parameters that leave only the draw: no filter, temperature 1. */
static struct memfit_sampling plain(uint64_t seed)
{
    struct memfit_sampling s;
    memfit_sampling_default(&s);
    s.temperature = 1.0f;
    s.top_k = 0;
    s.top_p = 1.0f;
    s.min_p = 0.0f;
    s.seed = seed;
    return s;
}

static memfit_token_sampler *make(const struct memfit_sampling *s, uint32_t n_vocab)
{
    memfit_token_sampler *smp = NULL;
    assert_int_equal(memfit_token_sampler_create(s, n_vocab, &smp), MEMFIT_OK);
    return smp;
}

static int32_t sample1(memfit_token_sampler *smp, const float *logits, size_t n)
{
    float copy[4096];
    assert_true(n <= 4096);
    memcpy(copy, logits, n * sizeof(float));
    int32_t tok = -1;
    assert_int_equal(memfit_token_sampler_sample(smp, copy, NULL, 0, &tok), MEMFIT_OK);
    assert_true(tok >= 0 && (size_t)tok < n);
    return tok;
}

static void test_defaults_and_check(void **state)
{
    (void)state;
    struct memfit_sampling s;
    memfit_sampling_default(&s);
    assert_true(s.temperature == 0.8f && s.top_k == 40 && s.top_p == 0.95f && s.min_p == 0.05f);
    assert_true(s.repeat_penalty == 1.0f && s.repeat_last_n == 64 && s.seed == 0);
    assert_int_equal(memfit_sampling_check(&s), MEMFIT_OK);

    struct {
        size_t offset;
        float value;
        const char *name;
    } bad[] = {
        {offsetof(struct memfit_sampling, temperature), -0.1f, "temperature"},
        {offsetof(struct memfit_sampling, temperature), 101.0f, "temperature"},
        {offsetof(struct memfit_sampling, temperature), NAN, "temperature"},
        {offsetof(struct memfit_sampling, top_p), 0.0f, "top_p"},
        {offsetof(struct memfit_sampling, top_p), 1.01f, "top_p"},
        {offsetof(struct memfit_sampling, top_p), NAN, "top_p"},
        {offsetof(struct memfit_sampling, min_p), -0.01f, "min_p"},
        {offsetof(struct memfit_sampling, min_p), 2.0f, "min_p"},
        {offsetof(struct memfit_sampling, min_p), NAN, "min_p"},
        {offsetof(struct memfit_sampling, repeat_penalty), 0.0f, "repeat_penalty"},
        {offsetof(struct memfit_sampling, repeat_penalty), 10.5f, "repeat_penalty"},
        {offsetof(struct memfit_sampling, repeat_penalty), NAN, "repeat_penalty"},
        {offsetof(struct memfit_sampling, temperature), INFINITY, "temperature"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct memfit_sampling b = s;
        memcpy((char *)&b + bad[i].offset, &bad[i].value, sizeof(float));
        assert_int_equal(memfit_sampling_check(&b), MEMFIT_E_RANGE);
        assert_non_null(strstr(memfit_last_error(), bad[i].name));
        assert_non_null(strstr(memfit_last_error(), "range"));
        memfit_token_sampler *smp = NULL;
        assert_int_equal(memfit_token_sampler_create(&b, 10, &smp), MEMFIT_E_RANGE);
        assert_null(smp);
    }
    /* The edges are in range. */
    struct memfit_sampling e = s;
    e.temperature = 0.0f;
    e.top_p = 1.0f;
    e.min_p = 1.0f;
    e.repeat_penalty = 10.0f;
    assert_int_equal(memfit_sampling_check(&e), MEMFIT_OK);
    e.temperature = 100.0f;
    e.min_p = 0.0f;
    assert_int_equal(memfit_sampling_check(&e), MEMFIT_OK);

    memfit_token_sampler *smp = NULL;
    assert_int_equal(memfit_token_sampler_create(&s, 0, &smp), MEMFIT_E_RANGE);
    assert_null(smp);
    memfit_token_sampler_free(NULL);
}

static void test_greedy(void **state)
{
    (void)state;
    struct memfit_sampling s = plain(1);
    s.temperature = 0.0f;
    s.top_k = 2; /* ignored by greedy */
    memfit_token_sampler *smp = make(&s, 6);
    float logits[6] = {0.5f, 3.0f, -1.0f, 3.0f, NAN, 2.9f};
    for (int i = 0; i < 10; i++)
        assert_int_equal(sample1(smp, logits, 6), 1); /* tie 1/3: the lower id */
    float nan_first[6] = {NAN, -INFINITY, -5.0f, NAN, -INFINITY, -6.0f};
    assert_int_equal(sample1(smp, nan_first, 6), 2);

    float all_bad[6] = {-INFINITY, NAN, -INFINITY, -INFINITY, NAN, -INFINITY};
    int32_t tok = 77;
    assert_int_equal(memfit_token_sampler_sample(smp, all_bad, NULL, 0, &tok), MEMFIT_E_INVALID);
    assert_int_equal(tok, 77);
    assert_non_null(strstr(memfit_last_error(), "-inf"));
    memfit_token_sampler_free(smp);
}

/* Every path, all -inf: E_INVALID, nothing written. */
static void test_all_invalid(void **state)
{
    (void)state;
    struct memfit_sampling configs[3];
    memfit_sampling_default(&configs[0]);
    configs[1] = plain(0);
    configs[2] = plain(0);
    configs[2].top_p = 0.5f;
    for (int c = 0; c < 3; c++) {
        memfit_token_sampler *smp = make(&configs[c], 100);
        float logits[100];
        for (int i = 0; i < 100; i++)
            logits[i] = i % 3 ? -INFINITY : NAN;
        int32_t tok = 77;
        assert_int_equal(memfit_token_sampler_sample(smp, logits, NULL, 0, &tok), MEMFIT_E_INVALID);
        assert_int_equal(tok, 77);
        memfit_token_sampler_free(smp);
    }
}

static void test_determinism(void **state)
{
    (void)state;
    float logits[50];
    for (int i = 0; i < 50; i++)
        logits[i] = (float)(i % 7) * 0.3f;
    struct memfit_sampling configs[3];
    memfit_sampling_default(&configs[0]);
    configs[1] = plain(0);
    configs[2] = plain(0);
    configs[2].top_p = 0.8f;
    for (int c = 0; c < 3; c++) {
        configs[c].seed = 1234;
        memfit_token_sampler *a = make(&configs[c], 50), *b = make(&configs[c], 50);
        configs[c].seed = 1235;
        memfit_token_sampler *d = make(&configs[c], 50);
        int differ = 0;
        for (int i = 0; i < 500; i++) {
            int32_t ta = sample1(a, logits, 50);
            assert_int_equal(ta, sample1(b, logits, 50));
            differ += ta != sample1(d, logits, 50);
        }
        assert_true(differ > 50); /* another seed, another sequence */
        memfit_token_sampler_free(a);
        memfit_token_sampler_free(b);
        memfit_token_sampler_free(d);
    }
}

/* Pearson's chi-square of `n` draws against `p` (k categories). */
static double chi_square(memfit_token_sampler *smp, const float *logits, size_t n_vocab,
                         const double *p, size_t k, int n)
{
    int counts[16] = {0};
    for (int i = 0; i < n; i++) {
        int32_t t = sample1(smp, logits, n_vocab);
        assert_true((size_t)t < k);
        counts[t]++;
    }
    double chi = 0.0;
    for (size_t j = 0; j < k; j++) {
        double expect = p[j] * n;
        if (expect == 0.0) {
            assert_int_equal(counts[j], 0);
            continue;
        }
        chi += (counts[j] - expect) * (counts[j] - expect) / expect;
    }
    return chi;
}

/* 99.9th percentiles of chi-square: a fixed seed, so this is a check, not a coin toss. */
#define CHI2_3DOF 16.27
#define CHI2_1DOF 10.83

static void test_distribution(void **state)
{
    (void)state;
    /* A fifth token at -inf: top_k 4 < n_vocab takes the heap path and keeps all four. */
    const double p[5] = {0.1, 0.2, 0.3, 0.4, 0.0};
    float logits[5];
    for (int i = 0; i < 4; i++)
        logits[i] = (float)log(p[i]) + 3.0f; /* any shift */
    logits[4] = -INFINITY;

    for (uint32_t k = 0; k <= 4; k += 4) {
        struct memfit_sampling s = plain(42);
        s.top_k = k;
        memfit_token_sampler *smp = make(&s, 5);
        assert_true(chi_square(smp, logits, 5, p, 5, 40000) < CHI2_3DOF);
        memfit_token_sampler_free(smp);

        /* Temperature 2 draws from p^(1/2), normalized. */
        s.temperature = 2.0f;
        smp = make(&s, 5);
        double q[5] = {0}, z = 0.0;
        for (int i = 0; i < 4; i++)
            z += q[i] = sqrt(p[i]);
        for (int i = 0; i < 4; i++)
            q[i] /= z;
        assert_true(chi_square(smp, logits, 5, q, 5, 40000) < CHI2_3DOF);
        memfit_token_sampler_free(smp);
    }
}

/* Sampling with `s` follows the distribution p (chi-square, one degree of freedom). */
static void expect_two(const struct memfit_sampling *s, const float *logits, const double *p)
{
    memfit_token_sampler *smp = make(s, 5);
    assert_true(chi_square(smp, logits, 5, p, 5, 20000) < CHI2_1DOF);
    memfit_token_sampler_free(smp);
}

/* Sampling with `s` always gives `tok`. */
static void expect_only(const struct memfit_sampling *s, const float *logits, int32_t tok)
{
    memfit_token_sampler *smp = make(s, 5);
    for (int i = 0; i < 200; i++)
        assert_int_equal(sample1(smp, logits, 5), tok);
    memfit_token_sampler_free(smp);
}

static void test_filters_small(void **state)
{
    (void)state;
    /* p = 0.4, 0.3, 0.2, 0.1 (ids shuffled so order comes from the logits); a fifth
     * token at -inf so that top_k 4 takes the heap path. */
    const double p[5] = {0.2, 0.4, 0.1, 0.3, 0.0};
    float logits[5];
    for (int i = 0; i < 4; i++)
        logits[i] = (float)log(p[i]);
    logits[4] = -INFINITY;
    const double pk[5] = {0, 4.0 / 7, 0, 3.0 / 7, 0};
    for (uint32_t k = 0; k <= 4; k += 4) {
        /* top_k 2: ids 1 and 3, renormalized 4:3. */
        struct memfit_sampling s = plain(3);
        s.top_k = 2;
        expect_two(&s, logits, pk);

        /* top_p 0.5: 0.4 < 0.5, 0.4 + 0.3 >= 0.5: the same two. */
        s = plain(4);
        s.top_k = k;
        s.top_p = 0.5f;
        expect_two(&s, logits, pk);
        /* top_p below the best token's probability: that token alone. */
        s.top_p = 0.39f;
        expect_only(&s, logits, 1);

        /* min_p 0.6: 0.3 / 0.4 = 0.75 kept, 0.2 / 0.4 = 0.5 not. */
        s = plain(5);
        s.top_k = k;
        s.min_p = 0.6f;
        expect_two(&s, logits, pk);
        /* min_p 1: only the best. */
        s.min_p = 1.0f;
        expect_only(&s, logits, 1);
    }
}

static int cmp_desc(const void *a, const void *b)
{
    const float *x = a, *y = b;
    return *x > *y ? -1 : *x < *y;
}

/*
 * A larger vocabulary with clustered logits (many in one 1/32 bin, exact
 * ties), against a reference: sort, top-k, top-p over the top-k softmax,
 * min-p, ties at the edge to the lower ids. Temperature 100 flattens the
 * draw so that every survivor shows up.
 */
static void check_filters_vs_reference(uint32_t top_k, float top_p, float min_p)
{
    enum { N = 3000 };
    static float logits[N], sorted[N];
    uint64_t x = 99;
    for (int i = 0; i < N; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        float r = (float)(x >> 40) / 16777216.0f; /* [0, 1) */
        logits[i] = i % 10 == 0 ? 4.0f + r * 2.0f : r * 3.0f;
        if (i % 97 == 0)
            logits[i] = 7.0f; /* exact ties at the top */
        else if (i % 89 == 0)
            logits[i] = 6.5f + r * 0.02f; /* in one bin */
    }
    memcpy(sorted, logits, sizeof(logits));
    qsort(sorted, N, sizeof(float), cmp_desc);
    size_t n = top_k ? top_k : N;
    double z = 0.0, cum = 0.0;
    for (size_t i = 0; i < n; i++)
        z += exp((double)sorted[i] - sorted[0]);
    size_t keep = 0;
    while (keep < n) {
        cum += exp((double)sorted[keep++] - sorted[0]);
        if (cum >= (double)top_p * z)
            break;
    }
    float min_d = min_p > 0.0f ? logf(min_p) : -INFINITY;
    size_t allowed = 1;
    while (allowed < keep && sorted[allowed] - sorted[0] >= min_d)
        allowed++;
    float edge = sorted[allowed - 1];
    size_t n_above = 0;
    while (sorted[n_above] > edge)
        n_above++;

    struct memfit_sampling s = plain(11);
    s.top_k = top_k;
    s.top_p = top_p;
    s.min_p = min_p;
    s.temperature = 100.0f;
    memfit_token_sampler *smp = make(&s, N);
    static int seen[N];
    memset(seen, 0, sizeof(seen));
    int n_draws = (int)allowed * 60 + 100;
    for (int i = 0; i < n_draws; i++) {
        int32_t t = -1;
        assert_int_equal(memfit_token_sampler_sample(smp, logits, NULL, 0, &t), MEMFIT_OK);
        seen[t]++;
    }
    size_t n_seen = 0, n_edge = 0;
    for (int i = 0; i < N; i++) {
        if (logits[i] == edge) { /* the lowest ids of the tie are in, the others out */
            assert_int_equal(seen[i] > 0, n_edge < allowed - n_above);
            n_edge++;
        } else {
            assert_int_equal(seen[i] > 0, logits[i] > edge);
        }
        n_seen += seen[i] > 0;
    }
    assert_int_equal(n_seen, allowed);
    memfit_token_sampler_free(smp);
}

static void test_filters_large(void **state)
{
    (void)state;
    check_filters_vs_reference(0, 0.05f, 0.0f); /* nucleus: cut inside the exact tie */
    check_filters_vs_reference(0, 0.7f, 0.0f);  /* cut inside the one-bin cluster */
    check_filters_vs_reference(0, 0.9f, 0.0f);  /* cut lower, many bins above */
    check_filters_vs_reference(20, 0.9f, 0.0f); /* top-k inside the tie, top-p over it */
    check_filters_vs_reference(0, 0.8f, 0.5f);  /* min-p cuts before top-p */
    check_filters_vs_reference(0, 1.0f, 0.7f);  /* min-p alone */
    check_filters_vs_reference(37, 1.0f, 0.0f); /* top-k alone, edge in the cluster */
    check_filters_vs_reference(40, 0.6f, 0.0f); /* top-k then top-p inside the cluster */
}

static void test_penalty(void **state)
{
    (void)state;
    struct memfit_sampling s = plain(0);
    s.temperature = 0.0f;
    s.repeat_penalty = 2.0f;
    s.repeat_last_n = 3;
    memfit_token_sampler *smp = make(&s, 4);
    float logits[4] = {2.0f, -2.0f, 1.0f, 1.5f};
    const int32_t hist[] = {3, 0, 0, 1}; /* window: 0, 0, 1 (3 too old) */
    int32_t tok = -1;
    assert_int_equal(memfit_token_sampler_sample(smp, logits, hist, 4, &tok), MEMFIT_OK);
    assert_true(logits[0] == 1.0f);  /* divided once, though twice in the window */
    assert_true(logits[1] == -4.0f); /* negative: multiplied */
    assert_true(logits[2] == 1.0f && logits[3] == 1.5f);
    assert_int_equal(tok, 3);
    /* Called again: the bitset was cleared, the same rule applies afresh. */
    float again[4] = {2.0f, -2.0f, 1.0f, 1.5f};
    assert_int_equal(memfit_token_sampler_sample(smp, again, hist, 4, &tok), MEMFIT_OK);
    assert_true(again[0] == 1.0f && again[1] == -4.0f);

    /* A history token outside the vocabulary: E_RANGE, logits untouched. */
    float keep[4] = {2.0f, -2.0f, 1.0f, 1.5f};
    const int32_t bad[] = {0, 9};
    tok = 77;
    assert_int_equal(memfit_token_sampler_sample(smp, keep, bad, 2, &tok), MEMFIT_E_RANGE);
    assert_int_equal(tok, 77);
    assert_true(keep[0] == 2.0f);
    assert_non_null(strstr(memfit_last_error(), "9"));
    memfit_token_sampler_free(smp);

    /* Penalty 1 (off) and no window: nothing changes, no history needed. */
    s.repeat_penalty = 1.0f;
    smp = make(&s, 4);
    float same[4] = {2.0f, -2.0f, 1.0f, 1.5f};
    assert_int_equal(memfit_token_sampler_sample(smp, same, hist, 4, &tok), MEMFIT_OK);
    assert_true(same[0] == 2.0f && same[1] == -2.0f);
    memfit_token_sampler_free(smp);
}

static void test_infinities(void **state)
{
    (void)state;
    float logits[5] = {1.0f, INFINITY, NAN, 2.0f, -INFINITY};
    for (uint32_t k = 0; k <= 3; k += 3) {
        struct memfit_sampling s = plain(9);
        s.top_k = k;
        memfit_token_sampler *smp = make(&s, 5);
        for (int i = 0; i < 100; i++)
            assert_int_equal(sample1(smp, logits, 5), 1);
        memfit_token_sampler_free(smp);
    }
    /* NaN and -inf are never drawn, whatever the temperature. */
    float flat[5] = {0.0f, NAN, 0.0f, -INFINITY, 0.0f};
    struct memfit_sampling s = plain(9);
    s.temperature = 100.0f;
    memfit_token_sampler *smp = make(&s, 5);
    for (int i = 0; i < 300; i++) {
        int32_t t = sample1(smp, flat, 5);
        assert_true(t == 0 || t == 2 || t == 4);
    }
    memfit_token_sampler_free(smp);
    /* A tiny temperature is greedy in effect, without overflow. */
    s.temperature = 1e-30f;
    smp = make(&s, 5);
    float close[5] = {1.0f, 1.001f, 0.5f, 1.0005f, -3.0f};
    for (int i = 0; i < 50; i++)
        assert_int_equal(sample1(smp, close, 5), 1);
    memfit_token_sampler_free(smp);
}

/* Presence and frequency penalties count the tokens this sampler picked. */
static void test_openai_penalties(void **state)
{
    (void)state;
    struct memfit_sampling s = plain(0);
    s.temperature = 0.0f;
    s.frequency_penalty = 0.5f;
    s.presence_penalty = 0.25f;
    memfit_token_sampler *smp = make(&s, 3);
    const float base[3] = {3.0f, 2.5f, 0.0f};
    float l[3];
    int32_t tok = -1;
    memcpy(l, base, sizeof(l));
    assert_int_equal(memfit_token_sampler_sample(smp, l, NULL, 0, &tok), MEMFIT_OK);
    assert_int_equal(tok, 0);
    assert_true(l[0] == 3.0f && l[1] == 2.5f); /* nothing picked yet: no penalty */
    memcpy(l, base, sizeof(l));
    assert_int_equal(memfit_token_sampler_sample(smp, l, NULL, 0, &tok), MEMFIT_OK);
    assert_true(l[0] == 3.0f - 0.5f - 0.25f); /* picked once: 2.25 */
    assert_int_equal(tok, 1);                 /* 2.5 now wins */
    memcpy(l, base, sizeof(l));
    assert_int_equal(memfit_token_sampler_sample(smp, l, NULL, 0, &tok), MEMFIT_OK);
    assert_true(l[0] == 2.25f && l[1] == 1.75f && l[2] == 0.0f);
    assert_int_equal(tok, 0);
    memfit_token_sampler_free(smp);

    s.frequency_penalty = 1.0f;
    s.presence_penalty = 0.0f;
    smp = make(&s, 3);
    int32_t picked[4];
    for (int i = 0; i < 4; i++) {
        memcpy(l, base, sizeof(l));
        assert_int_equal(memfit_token_sampler_sample(smp, l, NULL, 0, &picked[i]), MEMFIT_OK);
    }
    /* 3 -> 0; then 2 vs 2.5 -> 1; then 2 vs 1.5 -> 0; then 1 vs 1.5 -> 1. */
    assert_int_equal(picked[0], 0);
    assert_int_equal(picked[1], 1);
    assert_int_equal(picked[2], 0);
    assert_int_equal(picked[3], 1);
    memfit_token_sampler_free(smp);

    /* Negative penalties encourage repeats; out of range is refused. */
    s.frequency_penalty = -2.0f;
    smp = make(&s, 3);
    for (int i = 0; i < 5; i++) {
        memcpy(l, base, sizeof(l));
        assert_int_equal(memfit_token_sampler_sample(smp, l, NULL, 0, &tok), MEMFIT_OK);
        assert_int_equal(tok, 0);
    }
    memfit_token_sampler_free(smp);
    s.presence_penalty = 2.5f;
    assert_int_equal(memfit_sampling_check(&s), MEMFIT_E_RANGE);
    assert_non_null(strstr(memfit_last_error(), "presence_penalty"));
}

static void test_logit_bias(void **state)
{
    (void)state;
    const float base[4] = {1.0f, 3.0f, 2.0f, 0.5f};
    struct memfit_logit_bias bias[] = {{1, -100.0f}, {3, 1.75f}};
    struct memfit_sampling s = plain(5);
    s.temperature = 0.0f;
    s.logit_bias = bias;
    s.n_logit_bias = 2;
    memfit_token_sampler *smp = make(&s, 4);
    bias[1].bias = 0.0f; /* copied at create: later changes do not count */
    float l[4];
    memcpy(l, base, sizeof(l));
    int32_t tok = -1;
    assert_int_equal(memfit_token_sampler_sample(smp, l, NULL, 0, &tok), MEMFIT_OK);
    assert_int_equal(tok, 3); /* 1 banned, 3 at 2.25 beats 2 */
    assert_true(l[1] == -INFINITY && l[3] == 2.25f && l[0] == 1.0f);
    memfit_token_sampler_free(smp);

    /* A ban holds at any temperature. */
    bias[1].bias = 0.0f;
    s.temperature = 50.0f;
    s.n_logit_bias = 1;
    smp = make(&s, 4);
    for (int i = 0; i < 200; i++)
        assert_int_not_equal(sample1(smp, base, 4), 1);
    memfit_token_sampler_free(smp);

    /* Out of the vocabulary or of [-100, 100]: E_RANGE naming it. */
    struct memfit_logit_bias far[] = {{4, 1.0f}};
    s.logit_bias = far;
    memfit_token_sampler *none = NULL;
    assert_int_equal(memfit_token_sampler_create(&s, 4, &none), MEMFIT_E_RANGE);
    assert_non_null(strstr(memfit_last_error(), "token 4"));
    far[0] = (struct memfit_logit_bias){0, 101.0f};
    assert_int_equal(memfit_sampling_check(&s), MEMFIT_E_RANGE);
    assert_null(none);
}

/* A constraint that allows only even tokens and records what was accepted. */
struct even_only {
    int n_mask, n_accept;
    int32_t last;
};

static enum memfit_status even_mask(void *ctx, float *logits, uint32_t n_vocab)
{
    struct even_only *e = ctx;
    e->n_mask++;
    for (uint32_t i = 1; i < n_vocab; i += 2)
        logits[i] = -INFINITY;
    return MEMFIT_OK;
}

static enum memfit_status even_accept(void *ctx, int32_t token)
{
    struct even_only *e = ctx;
    e->n_accept++;
    e->last = token;
    return MEMFIT_OK;
}

static void test_constraint(void **state)
{
    (void)state;
    struct even_only e = {0, 0, -1};
    const struct memfit_token_constraint c = {even_mask, even_accept, &e};
    struct memfit_sampling s = plain(8);
    s.temperature = 2.0f;
    s.constraint = &c;
    memfit_token_sampler *smp = make(&s, 6);
    const float base[6] = {0.0f, 5.0f, 0.5f, 4.0f, 0.2f, 6.0f};
    for (int i = 0; i < 100; i++) {
        int32_t t = sample1(smp, base, 6);
        assert_true(t % 2 == 0);
        assert_int_equal(e.last, t);
    }
    assert_int_equal(e.n_mask, 100);
    assert_int_equal(e.n_accept, 100);
    memfit_token_sampler_free(smp);
}

/* The same seed gives the same tokens with every adjustment on. */
static void test_determinism_adjusted(void **state)
{
    (void)state;
    enum { N = 500, STEPS = 40 };
    static float base[N];
    for (int i = 0; i < N; i++)
        base[i] = (float)((i * 7919) % 101) / 25.0f;
    struct memfit_logit_bias bias[] = {{3, -100.0f}, {17, 2.0f}};
    int32_t runs[3][STEPS];
    for (int r = 0; r < 3; r++) {
        struct memfit_sampling s;
        memfit_sampling_default(&s);
        s.seed = r == 2 ? 1235 : 1234;
        s.presence_penalty = 0.3f;
        s.frequency_penalty = 0.2f;
        s.logit_bias = bias;
        s.n_logit_bias = 2;
        s.top_k = 0;
        s.temperature = 1.5f;
        memfit_token_sampler *smp = make(&s, N);
        for (int k = 0; k < STEPS; k++)
            runs[r][k] = sample1(smp, base, N);
        memfit_token_sampler_free(smp);
    }
    assert_memory_equal(runs[0], runs[1], sizeof(runs[0]));
    assert_memory_not_equal(runs[0], runs[2], sizeof(runs[0]));
}

static void test_logprobs(void **state)
{
    (void)state;
    enum { N = 70 };
    float logits[N];
    for (int i = 0; i < N; i++)
        logits[i] = (float)((i * 37) % 23) * 0.3f - 2.0f;
    logits[5] = logits[12]; /* a tie among the best: the lower id first */
    logits[40] = -INFINITY;
    logits[41] = NAN;
    struct memfit_sampling s = plain(2);
    s.temperature = 0.0f;
    s.logprobs = true;
    memfit_token_sampler *smp = make(&s, N);
    double z = 0.0;
    float mx = -INFINITY;
    for (int i = 0; i < N; i++)
        if (isfinite(logits[i]) && logits[i] > mx)
            mx = logits[i];
    for (int i = 0; i < N; i++)
        if (isfinite(logits[i]))
            z += exp((double)logits[i] - mx);
    double lse = mx + log(z);
    for (int32_t t = 0; t < N; t++) {
        float lp;
        struct memfit_token_logprob top[MEMFIT_MAX_TOP_LOGPROBS];
        uint32_t n = 0;
        assert_int_equal(memfit_token_sampler_logprobs(smp, logits, t, 20, &lp, top, &n),
                         MEMFIT_OK);
        if (t == 40 || t == 41) {
            assert_true(lp == -INFINITY);
        } else if (fabs(lp - (logits[t] - lse)) > 1e-5) {
            fail_msg("token %d: logprob %g, log-softmax %g", t, (double)lp, logits[t] - lse);
        }
        assert_int_equal(n, 20);
        for (uint32_t j = 0; j < n; j++) {
            assert_true(fabs(top[j].logprob - (logits[top[j].token] - lse)) < 1e-5);
            if (j > 0)
                assert_true(
                    top[j - 1].logprob > top[j].logprob ||
                    (top[j - 1].logprob == top[j].logprob && top[j - 1].token < top[j].token));
        }
        /* no token outside the list beats its last entry */
        for (int i = 0; i < N; i++) {
            bool in = false;
            for (uint32_t j = 0; j < n; j++)
                in |= top[j].token == i;
            if (!in && isfinite(logits[i]))
                assert_true(logits[i] - lse <= top[n - 1].logprob + 1e-6);
        }
    }
    /* The probabilities sum to 1. */
    double sum = 0.0;
    for (int32_t t = 0; t < N; t++) {
        float lp;
        assert_int_equal(memfit_token_sampler_logprobs(smp, logits, t, 0, &lp, NULL, NULL),
                         MEMFIT_OK);
        sum += exp((double)lp);
    }
    assert_true(fabs(sum - 1.0) < 1e-4);
    /* Fewer tokens than asked: all of the finite ones. */
    float small[3] = {0.0f, -INFINITY, 1.0f};
    memfit_token_sampler_free(smp);
    smp = make(&s, 3);
    struct memfit_token_logprob top[MEMFIT_MAX_TOP_LOGPROBS];
    uint32_t n = 99;
    float lp;
    assert_int_equal(memfit_token_sampler_logprobs(smp, small, 2, 5, &lp, top, &n), MEMFIT_OK);
    assert_int_equal(n, 2);
    assert_int_equal(top[0].token, 2);
    assert_int_equal(top[1].token, 0);
    assert_true(fabs(lp - (1.0 - log(1.0 + exp(1.0)))) < 1e-5);
    memfit_token_sampler_free(smp);
    /* Without s.logprobs: E_MISUSE. */
    s.logprobs = false;
    smp = make(&s, 3);
    assert_int_equal(memfit_token_sampler_logprobs(smp, small, 2, 0, &lp, NULL, NULL),
                     MEMFIT_E_MISUSE);
    memfit_token_sampler_free(smp);
}

struct create_ctx {
    struct memfit_sampling s;
    memfit_token_sampler *smp;
};

static enum memfit_status create_op(void *p)
{
    struct create_ctx *c = p;
    return memfit_token_sampler_create(&c->s, 1000, &c->smp);
}

static void create_cleanup(void *p)
{
    struct create_ctx *c = p;
    memfit_token_sampler_free(c->smp);
    c->smp = NULL;
}

static void test_create_fault_injection(void **state)
{
    (void)state;
    struct create_ctx c = {.smp = NULL};
    memfit_sampling_default(&c.s);
    c.s.repeat_penalty = 1.1f;
    /* The handle, candidates, exponentials, the penalty's bitset: 4, then success. */
    assert_int_equal(mf_test_alloc_failures(create_op, create_cleanup, &c), 5);
    c.s = plain(0);
    c.s.top_p = 0.9f;
    c.s.repeat_penalty = 1.3f;
    assert_int_equal(mf_test_alloc_failures(create_op, create_cleanup, &c), 5);
    c.s.top_p = 1.0f; /* no filter: no candidate list */
    assert_int_equal(mf_test_alloc_failures(create_op, create_cleanup, &c), 4);
    c.s.temperature = 0.0f; /* greedy: no scratch */
    assert_int_equal(mf_test_alloc_failures(create_op, create_cleanup, &c), 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_check), cmocka_unit_test(test_greedy),
        cmocka_unit_test(test_all_invalid),        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_distribution),       cmocka_unit_test(test_filters_small),
        cmocka_unit_test(test_filters_large),      cmocka_unit_test(test_penalty),
        cmocka_unit_test(test_infinities),         cmocka_unit_test(test_create_fault_injection),
        cmocka_unit_test(test_openai_penalties),   cmocka_unit_test(test_logit_bias),
        cmocka_unit_test(test_constraint),         cmocka_unit_test(test_determinism_adjusted),
        cmocka_unit_test(test_logprobs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Token sampling for generation: repetition penalty, then greedy or
 * top-k -> top-p -> min-p -> temperature -> a draw from the sampler's own
 * PRNG, the order and semantics of llama.cpp's default chain (the filters
 * see the untempered softmax; the temperature shapes only the final draw).
 *
 * Speed matters because it runs once per generated token over the whole
 * vocabulary (152k for Qwen); the vocabulary is never fully sorted, and the
 * passes over it are written so that the compiler vectorizes them.
 * - greedy: a max over lanes, then the first token with that value.
 * - top_k > 0: one pass keeping a k-entry min-heap, skipping 16 tokens at a
 *   time while none beats the heap's weakest; then the filters on k sorted
 *   candidates.
 * - top_k = 0: e^(l - max) for the whole row with the tensor layer's exp,
 *   then tokens are taken in bands of that value, best first, until the
 *   nucleus mass is reached; only the band where it is reached is sorted.
 *   With no top-p and no min-p, the draw runs over the row directly.
 * Scratch for all of it is allocated at create; sampling allocates nothing.
 *
 * Around the choice sit the request-level adjustments of OpenAI's API
 * (presence/frequency penalties over the tokens picked so far, logit_bias),
 * a per-request constraint hook (grammar-constrained output masks the
 * logits there), and the log-probabilities of the distribution they leave.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "memfit/models.h"
#include "memfit/tensor.h"

struct cand {
    float logit; /* after the penalty, sanitized */
    int32_t id;
};

struct memfit_token_sampler {
    struct memfit_sampling params;
    uint32_t n_vocab;
    uint64_t rng[4];     /* xoshiro256** state */
    struct cand *cand;   /* [top_k] or [n_vocab] candidates (none for greedy, no filter) */
    float *work;         /* [top_k] or [n_vocab] exponentials (none for greedy) */
    uint64_t *penalized; /* [n_vocab / 64] bitset: tokens already penalized this call */
    uint32_t *counts;    /* [n_vocab] times each token was picked (presence/frequency) */
    struct memfit_logit_bias *bias; /* [params.n_logit_bias], a copy */
    float *lp_work;                 /* [n_vocab] exponentials for logprobs */
};

void memfit_sampling_default(struct memfit_sampling *s)
{
    s->temperature = 0.8f;
    s->top_k = 40;
    s->top_p = 0.95f;
    s->min_p = 0.05f;
    s->repeat_penalty = 1.0f;
    s->repeat_last_n = 64;
    s->seed = 0;
    s->presence_penalty = 0.0f;
    s->frequency_penalty = 0.0f;
    s->logit_bias = NULL;
    s->n_logit_bias = 0;
    s->constraint = NULL;
    s->logprobs = false;
}

enum memfit_status memfit_sampling_check(const struct memfit_sampling *s)
{
    if (!s)
        return memfit_fail(MEMFIT_E_MISUSE, "sampling: NULL parameters");
    /* Written so that NaN fails every test. */
    if (!(s->temperature >= 0.0f && s->temperature <= 100.0f))
        return memfit_fail(MEMFIT_E_RANGE, "sampling: temperature %g out of range [0, 100]",
                           (double)s->temperature);
    if (!(s->top_p > 0.0f && s->top_p <= 1.0f))
        return memfit_fail(MEMFIT_E_RANGE, "sampling: top_p %g out of range (0, 1]",
                           (double)s->top_p);
    if (!(s->min_p >= 0.0f && s->min_p <= 1.0f))
        return memfit_fail(MEMFIT_E_RANGE, "sampling: min_p %g out of range [0, 1]",
                           (double)s->min_p);
    if (!(s->repeat_penalty > 0.0f && s->repeat_penalty <= 10.0f))
        return memfit_fail(MEMFIT_E_RANGE, "sampling: repeat_penalty %g out of range (0, 10]",
                           (double)s->repeat_penalty);
    if (!(s->presence_penalty >= -2.0f && s->presence_penalty <= 2.0f))
        return memfit_fail(MEMFIT_E_RANGE, "sampling: presence_penalty %g out of range [-2, 2]",
                           (double)s->presence_penalty);
    if (!(s->frequency_penalty >= -2.0f && s->frequency_penalty <= 2.0f))
        return memfit_fail(MEMFIT_E_RANGE, "sampling: frequency_penalty %g out of range [-2, 2]",
                           (double)s->frequency_penalty);
    if (s->n_logit_bias && !s->logit_bias)
        return memfit_fail(MEMFIT_E_MISUSE, "sampling: %zu logit biases and no array",
                           s->n_logit_bias);
    for (size_t i = 0; i < s->n_logit_bias; i++)
        if (!(s->logit_bias[i].bias >= -100.0f && s->logit_bias[i].bias <= 100.0f))
            return memfit_fail(MEMFIT_E_RANGE,
                               "sampling: logit_bias of token %d is %g; out of range [-100, 100]",
                               (int)s->logit_bias[i].token, (double)s->logit_bias[i].bias);
    if (s->constraint && !s->constraint->mask)
        return memfit_fail(MEMFIT_E_MISUSE, "sampling: a constraint without a mask function");
    return MEMFIT_OK;
}

/* ---- PRNG: splitmix64 to seed xoshiro256** (Vigna) --------------------- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t xoshiro_next(uint64_t s[4])
{
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Uniform in [0, 1) with 53 random bits. */
static double rng_uniform(uint64_t s[4])
{
    return (double)(xoshiro_next(s) >> 11) * 0x1.0p-53;
}

/* ---- create / free ------------------------------------------------------ */

enum memfit_status memfit_token_sampler_create(const struct memfit_sampling *s, uint32_t n_vocab,
                                               memfit_token_sampler **out)
{
    if (!s || !out)
        return memfit_fail(MEMFIT_E_MISUSE, "sampler: NULL argument");
    enum memfit_status st = memfit_sampling_check(s);
    if (st != MEMFIT_OK)
        return st;
    if (n_vocab == 0 || n_vocab > (uint32_t)INT32_MAX)
        return memfit_fail(MEMFIT_E_RANGE, "sampler: vocabulary of %u tokens out of range [1, %d]",
                           n_vocab, INT32_MAX);

    for (size_t i = 0; i < s->n_logit_bias; i++)
        if (s->logit_bias[i].token < 0 || (uint32_t)s->logit_bias[i].token >= n_vocab)
            return memfit_fail(MEMFIT_E_RANGE,
                               "sampler: logit_bias names token %d, outside the vocabulary of %u "
                               "tokens",
                               (int)s->logit_bias[i].token, n_vocab);

    memfit_token_sampler *smp = memfit_calloc_in(MEMFIT_ALLOC_MODEL, 1, sizeof(*smp));
    if (!smp)
        return MEMFIT_E_NOMEM;
    smp->params = *s;
    smp->params.logit_bias = NULL; /* the copy below, or none */
    smp->n_vocab = n_vocab;
    uint64_t x = s->seed;
    for (int i = 0; i < 4; i++)
        smp->rng[i] = splitmix64(&x);
    /* Scratch for the path the parameters take (see memfit_token_sampler_sample). */
    size_t n_cand = 0, n_work = 0;
    if (s->temperature > 0.0f && s->top_k > 0 && s->top_k < n_vocab) {
        n_cand = n_work = s->top_k;
    } else if (s->temperature > 0.0f) {
        n_work = n_vocab;
        n_cand = s->top_p >= 1.0f && s->min_p == 0.0f ? 0 : n_vocab;
    }
    if (n_cand) {
        smp->cand = memfit_malloc_in(MEMFIT_ALLOC_MODEL, n_cand * sizeof(struct cand));
        if (!smp->cand)
            goto nomem;
    }
    if (n_work) {
        smp->work = memfit_malloc_in(MEMFIT_ALLOC_MODEL, n_work * sizeof(float));
        if (!smp->work)
            goto nomem;
    }
    if (s->repeat_penalty != 1.0f && s->repeat_last_n > 0) {
        smp->penalized =
            memfit_calloc_in(MEMFIT_ALLOC_MODEL, (n_vocab + 63) / 64, sizeof(uint64_t));
        if (!smp->penalized)
            goto nomem;
    }
    if (s->presence_penalty != 0.0f || s->frequency_penalty != 0.0f) {
        smp->counts = memfit_calloc_in(MEMFIT_ALLOC_MODEL, n_vocab, sizeof(uint32_t));
        if (!smp->counts)
            goto nomem;
    }
    if (s->n_logit_bias) {
        smp->bias = memfit_malloc_in(MEMFIT_ALLOC_MODEL, s->n_logit_bias * sizeof(*smp->bias));
        if (!smp->bias)
            goto nomem;
        memcpy(smp->bias, s->logit_bias, s->n_logit_bias * sizeof(*smp->bias));
        smp->params.logit_bias = smp->bias;
    }
    if (s->logprobs) {
        smp->lp_work = memfit_malloc_in(MEMFIT_ALLOC_MODEL, (size_t)n_vocab * sizeof(float));
        if (!smp->lp_work)
            goto nomem;
    }
    *out = smp;
    return MEMFIT_OK;
nomem:
    memfit_token_sampler_free(smp);
    return MEMFIT_E_NOMEM;
}

void memfit_token_sampler_free(memfit_token_sampler *smp)
{
    if (!smp)
        return;
    memfit_free(smp->cand);
    memfit_free(smp->work);
    memfit_free(smp->penalized);
    memfit_free(smp->counts);
    memfit_free(smp->bias);
    memfit_free(smp->lp_work);
    memfit_free(smp);
}

/* ---- the steps ------------------------------------------------------------ */

/* A logit as the filters read it: NaN never wins (-inf), +inf is the largest finite
 * value so that differences with the maximum stay finite. */
static inline float sanitize(float x)
{
    x = x != x ? -INFINITY : x;
    return x > FLT_MAX ? FLT_MAX : x;
}

/*
 * Whole-vocabulary passes are written over LANES independent lanes, which
 * the compiler turns into vector code at -O2 without -ffast-math (a plain
 * running max or sum is a reduction it may not reorder).
 */
#define LANES 16

/* The largest of x[0..n), NaN skipped; -inf when there is none. */
static float max_lanes(const float *x, size_t n)
{
    float m[LANES];
    for (int j = 0; j < LANES; j++)
        m[j] = -INFINITY;
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++)
            m[j] = x[i + j] > m[j] ? x[i + j] : m[j];
    float r = -INFINITY;
    for (; i < n; i++)
        r = x[i] > r ? x[i] : r;
    for (int j = 0; j < LANES; j++)
        r = m[j] > r ? m[j] : r;
    return r;
}

/* The sum of x[0..n) (non-negative), in double. */
static double sum_lanes(const float *x, size_t n)
{
    double m[LANES] = {0};
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++)
            m[j] += x[i + j];
    double r = 0.0;
    for (; i < n; i++)
        r += x[i];
    for (int j = 0; j < LANES; j++)
        r += m[j];
    return r;
}

/* dst[i] = (sanitize(x[i]) - mx) / t: the exponents of the softmax. */
static void shifted(float *restrict dst, const float *restrict x, size_t n, float mx, float t)
{
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) {
            float v = x[i + j] > FLT_MAX ? FLT_MAX : x[i + j];
            dst[i + j] = ((v >= -FLT_MAX ? v : -INFINITY) - mx) / t; /* NaN fails >= */
        }
    for (; i < n; i++)
        dst[i] = (sanitize(x[i]) - mx) / t;
}

/* Whether any of x[0..LANES) is above t (NaN is not). */
static inline bool any_above(const float *x, float t)
{
    int any = 0;
    for (int j = 0; j < LANES; j++)
        any |= x[j] > t;
    return any != 0;
}

/* Whether any of x[0..LANES) is in [lo, hi). */
static inline bool any_in(const float *x, float lo, float hi)
{
    int any = 0;
    for (int j = 0; j < LANES; j++)
        any |= (x[j] >= lo) & (x[j] < hi);
    return any != 0;
}

/* The first i with x[i] == v (there is one). */
static size_t first_equal(const float *x, size_t n, float v)
{
    size_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        int any = 0;
        for (int j = 0; j < LANES; j++)
            any |= x[i + j] == v;
        if (any)
            break;
    }
    while (x[i] != v)
        i++;
    return i;
}

static enum memfit_status fail_all_invalid(uint32_t n_vocab)
{
    return memfit_fail(MEMFIT_E_INVALID, "sampler: all %u logits are -inf or NaN", n_vocab);
}

/* CTRL-style penalty, once per distinct token of the window (llama.cpp's rule). */
static enum memfit_status apply_penalty(memfit_token_sampler *smp, float *logits,
                                        const int32_t *history, size_t n_history)
{
    size_t n = smp->params.repeat_last_n;
    if (!smp->penalized || n_history == 0)
        return MEMFIT_OK;
    const int32_t *win = n_history > n ? history + (n_history - n) : history;
    size_t n_win = n_history > n ? n : n_history;
    for (size_t i = 0; i < n_win; i++)
        if (win[i] < 0 || (uint32_t)win[i] >= smp->n_vocab)
            return memfit_fail(MEMFIT_E_RANGE,
                               "sampler: history token %d outside the vocabulary of %u tokens",
                               (int)win[i], smp->n_vocab);
    float penalty = smp->params.repeat_penalty;
    for (size_t i = 0; i < n_win; i++) {
        uint32_t t = (uint32_t)win[i];
        uint64_t bit = 1ull << (t % 64);
        if (smp->penalized[t / 64] & bit)
            continue;
        smp->penalized[t / 64] |= bit;
        logits[t] = logits[t] > 0.0f ? logits[t] / penalty : logits[t] * penalty;
    }
    for (size_t i = 0; i < n_win; i++) /* clear only what was set */
        smp->penalized[(uint32_t)win[i] / 64] = 0;
    return MEMFIT_OK;
}

/* Min-heap by (logit, then higher id is worse): the root is the weakest kept. */
static inline bool cand_worse(const struct cand *a, const struct cand *b)
{
    return a->logit < b->logit || (a->logit == b->logit && a->id > b->id);
}

static inline void swap_cand(struct cand *a, struct cand *b)
{
    struct cand t = *a;
    *a = *b;
    *b = t;
}

static void heap_sift_down(struct cand *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < n && cand_worse(&h[l], &h[m]))
            m = l;
        if (l + 1 < n && cand_worse(&h[l + 1], &h[m]))
            m = l + 1;
        if (m == i)
            return;
        swap_cand(&h[i], &h[m]);
        i = m;
    }
}

static void heap_sift_up(struct cand *h, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_worse(&h[i], &h[p]))
            return;
        swap_cand(&h[i], &h[p]);
        i = p;
    }
}

/* Best first (higher logit, then lower id), in place: heapsort, which needs no
 * memory (glibc's qsort may call malloc) and finishes the top-k heap as it is. */
static void sort_best_first(struct cand *c, size_t n)
{
    for (size_t i = n / 2; i-- > 0;)
        heap_sift_down(c, n, i);
    for (size_t end = n; end-- > 1;) {
        swap_cand(&c[0], &c[end]);
        heap_sift_down(c, end, 0);
    }
}

/* The k best tokens (fewer when fewer are finite), sorted best first. */
static size_t select_top_k(memfit_token_sampler *smp, const float *logits, size_t k)
{
    struct cand *h = smp->cand;
    size_t n = 0;
    uint32_t i = 0;
    for (; i < smp->n_vocab && n < k; i++) {
        float x = sanitize(logits[i]);
        if (x == -INFINITY)
            continue;
        h[n] = (struct cand){x, (int32_t)i};
        heap_sift_up(h, n++);
    }
    /* Ids rise, so a token equal to the root's logit is never better: one compare,
     * made for LANES tokens at once until one of them gets in. */
    uint32_t n_vocab = smp->n_vocab;
    for (; i < n_vocab; i++) {
        if (i % LANES == 0 && i + LANES <= n_vocab && !any_above(logits + i, h[0].logit)) {
            i += LANES - 1;
            continue;
        }
        float x = sanitize(logits[i]);
        if (x > h[0].logit) {
            h[0] = (struct cand){x, (int32_t)i};
            heap_sift_down(h, n, 0);
        }
    }
    sort_best_first(h, n);
    return n;
}

/*
 * The band c[0..n) where the nucleus mass `target` is reached, `mass` being
 * that of all better tokens: how many of its tokens, moved to the front, are
 * in the nucleus. The band is halved by logit (better half to the front)
 * while it is large, keeping the half that holds the cut (quickselect on
 * values, so a band of 100k tokens is not sorted); what is left is sorted.
 */
static size_t cut_band(struct cand *c, size_t n, const float *e, double mass, double target)
{
    size_t kept = 0; /* c[0..kept) wholly in; the range under study is c[kept..kept+n) */
    while (n > 32) {
        struct cand *r = c + kept;
        float lo = r[0].logit, hi = lo;
        for (size_t j = 1; j < n; j++) {
            lo = r[j].logit < lo ? r[j].logit : lo;
            hi = r[j].logit > hi ? r[j].logit : hi;
        }
        float mid = lo + (hi - lo) * 0.5f;
        if (!(lo <= mid && mid < hi))
            break; /* all tied (or adjacent floats): the sort decides by id */
        size_t u = 0;
        double upper = 0.0;
        for (size_t j = 0; j < n; j++) {
            if (r[j].logit > mid) {
                swap_cand(&r[u], &r[j]);
                upper += e[r[u++].id];
            }
        }
        if (mass + upper >= target) {
            n = u; /* the cut is in the better half: the other is out */
        } else {
            mass += upper;
            kept += u;
            n -= u;
        }
    }
    sort_best_first(c + kept, n);
    size_t j = 0;
    while (j < n) {
        mass += e[c[kept + j++].id];
        if (mass >= target)
            break;
    }
    return kept + j;
}

/*
 * top_k off, top_p < 1 or min_p > 0: the survivors of the whole vocabulary,
 * in no particular order, given the largest logit `mx`. e = e^(l - mx) for
 * every token; tokens are taken in bands of e, best band first ([e^-1, 1],
 * [e^-4, e^-1), ... each four times as wide in logits, the last one down to
 * min_p or 0). A band whose mass takes the total past top_p x sum(e) is
 * sorted and cut; the bands before it are wholly in. min-p is the floor of
 * the last band (e >= min_p: p >= min_p x p_max).
 */
/* Appends token i when lo <= e[i] < hi and its logit is a number; its mass if taken. */
static inline double collect(struct cand *c, size_t *n, const float *logits, const float *e,
                             uint32_t i, float lo, float hi)
{
    if (!(e[i] >= lo && e[i] < hi))
        return 0.0;
    float x = sanitize(logits[i]);
    if (x == -INFINITY)
        return 0.0;
    c[(*n)++] = (struct cand){x, (int32_t)i};
    return e[i];
}

static size_t select_bands(memfit_token_sampler *smp, const float *logits, float mx)
{
    const struct memfit_sampling *p = &smp->params;
    uint32_t n_vocab = smp->n_vocab;
    float *e = smp->work;
    shifted(e, logits, n_vocab, mx, 1.0f);
    memfit_exp(e, n_vocab);
    double target = INFINITY;
    if (p->top_p < 1.0f)
        target = (double)p->top_p * sum_lanes(e, n_vocab);

    struct cand *c = smp->cand;
    size_t n = 0;
    double mass = 0.0;
    float hi = INFINITY, floor_e = p->min_p;
    for (int k = 0;; k++) {
        /* Bands down to e^-1, e^-4, e^-16, e^-64, then the rest (-inf and NaN have e
         * near 0 and are skipped): each a pass over the row, the first few short. */
        float lo = k < 4 ? expf(-(float)(1 << (2 * k))) : 0.0f;
        bool last = lo <= floor_e;
        if (last)
            lo = floor_e;
        size_t start = n;
        double band = 0.0;
        uint32_t i = 0;
        for (; i + LANES <= n_vocab; i += LANES) {
            if (!any_in(e + i, lo, hi))
                continue;
            for (uint32_t j = i; j < i + LANES; j++)
                band += collect(c, &n, logits, e, j, lo, hi);
        }
        for (; i < n_vocab; i++)
            band += collect(c, &n, logits, e, i, lo, hi);
        if (mass + band >= target) /* the cut is in this band */
            return start + cut_band(c + start, n - start, e, mass, target);
        mass += band;
        hi = lo;
        if (last)
            return n;
    }
}

/* top_k on: top-p and min-p over the k sorted candidates, in place. */
static size_t filter_sorted(memfit_token_sampler *smp, size_t n)
{
    const struct memfit_sampling *p = &smp->params;
    struct cand *c = smp->cand;
    float mx = c[0].logit;
    float *e = smp->work;
    for (size_t j = 0; j < n; j++)
        e[j] = c[j].logit - mx;
    memfit_exp(e, n);
    if (p->top_p < 1.0f) {
        double z = 0.0;
        for (size_t j = 0; j < n; j++)
            z += e[j];
        double target = (double)p->top_p * z, cum = 0.0;
        size_t keep = 0;
        while (keep < n) {
            cum += e[keep++];
            if (cum >= target)
                break;
        }
        n = keep;
    }
    size_t keep = 1; /* min-p: e^(l - max) >= min_p, the same test as the bands' floor */
    while (keep < n && e[keep] >= p->min_p)
        keep++;
    return keep;
}

/*
 * The index i of w[0..n) drawn with probability w[i] / sum(w), for a uniform
 * u in [0, 1); `logits` non-NULL: index i is only taken when logits[i] is a
 * number (the -inf and NaN of a whole row weigh about 1e-38 after exp's
 * clamp, not 0). The running sum is a serial chain of additions, so it is
 * taken a chunk at a time (vector sums) and only the chunk the draw falls
 * in is walked. SIZE_MAX when nothing can be taken.
 */
#define CHUNK 1024

static size_t pick(const float *w, size_t n, double u, const float *logits)
{
    double z = 0.0;
    for (size_t i = 0; i < n; i += CHUNK)
        z += sum_lanes(w + i, n - i < CHUNK ? n - i : CHUNK);
    double target = u * z, cum = 0.0;
    size_t last = SIZE_MAX;
    for (size_t i = 0; i < n; i += CHUNK) {
        size_t m = n - i < CHUNK ? n - i : CHUNK;
        double chunk = sum_lanes(w + i, m);
        if (cum + chunk <= target && i + m < n) {
            cum += chunk;
            continue;
        }
        for (size_t j = i; j < i + m; j++) {
            if (logits && sanitize(logits[j]) == -INFINITY)
                continue;
            last = j;
            cum += w[j];
            if (target < cum)
                return j;
        }
        if (last != SIZE_MAX) /* rounding between the chunk's sum and its walk */
            return last;
    }
    return last;
}

/* The draw: softmax of (l - max) / T over the candidates. */
static int32_t draw(memfit_token_sampler *smp, size_t n, float mx)
{
    const struct cand *c = smp->cand;
    float *w = smp->work;
    float t = smp->params.temperature; /* divided, not inverted: 1/T overflows for tiny T */
    for (size_t j = 0; j < n; j++)
        w[j] = (c[j].logit - mx) / t;
    memfit_exp(w, n);
    size_t j = pick(w, n, rng_uniform(smp->rng), NULL);
    return c[j == SIZE_MAX ? n - 1 : j].id;
}

/* No filter at all: the draw straight over the vocabulary, no candidate list. */
static int32_t draw_all(memfit_token_sampler *smp, const float *logits, float mx)
{
    float *w = smp->work;
    shifted(w, logits, smp->n_vocab, sanitize(mx), smp->params.temperature);
    memfit_exp(w, smp->n_vocab);
    size_t i = pick(w, smp->n_vocab, rng_uniform(smp->rng), logits);
    /* None taken: the draw fell on the -inf tokens' 1e-38 (or rounding); the best then. */
    return (int32_t)(i == SIZE_MAX ? first_equal(logits, smp->n_vocab, mx) : i);
}

/* OpenAI's presence and frequency penalties, then the logit bias (-100: a ban). */
static void adjust(memfit_token_sampler *smp, float *logits)
{
    const struct memfit_sampling *p = &smp->params;
    if (smp->counts) {
        float fp = p->frequency_penalty, pp = p->presence_penalty;
        const uint32_t *counts = smp->counts;
        for (uint32_t i = 0; i < smp->n_vocab; i++) {
            float c = (float)counts[i];
            logits[i] -= c * fp + (c > 0.0f ? pp : 0.0f);
        }
    }
    for (size_t i = 0; i < p->n_logit_bias; i++) {
        const struct memfit_logit_bias *b = &p->logit_bias[i];
        logits[b->token] = b->bias <= -100.0f ? -INFINITY : logits[b->token] + b->bias;
    }
}

/* The choice itself: greedy, or the filters and the draw. */
static enum memfit_status choose(memfit_token_sampler *smp, const float *logits, int32_t *out)
{
    const struct memfit_sampling *p = &smp->params;
    uint32_t n_vocab = smp->n_vocab;
    if (p->top_k > 0 && p->top_k < n_vocab && p->temperature > 0.0f) {
        size_t n = select_top_k(smp, logits, p->top_k);
        if (n == 0)
            return fail_all_invalid(n_vocab);
        float mx = smp->cand[0].logit;
        *out = draw(smp, filter_sorted(smp, n), mx);
        return MEMFIT_OK;
    }

    float mx = max_lanes(logits, n_vocab); /* NaN skipped */
    if (mx == -INFINITY)
        return fail_all_invalid(n_vocab);
    if (p->temperature == 0.0f)
        *out = (int32_t)first_equal(logits, n_vocab, mx); /* ties: the lowest id */
    else if (p->top_p >= 1.0f && p->min_p == 0.0f)
        *out = draw_all(smp, logits, mx);
    else
        *out = draw(smp, select_bands(smp, logits, sanitize(mx)), sanitize(mx));
    return MEMFIT_OK;
}

enum memfit_status memfit_token_sampler_sample(memfit_token_sampler *smp, float *logits,
                                               const int32_t *history, size_t n_history,
                                               int32_t *out)
{
    if (!smp || !logits || !out || (n_history && !history))
        return memfit_fail(MEMFIT_E_MISUSE, "sampler: NULL argument");
    enum memfit_status st = apply_penalty(smp, logits, history, n_history);
    if (st != MEMFIT_OK)
        return st;
    adjust(smp, logits);
    const struct memfit_token_constraint *c = smp->params.constraint;
    if (c && (st = c->mask(c->ctx, logits, smp->n_vocab)) != MEMFIT_OK)
        return st;
    int32_t id = 0;
    if ((st = choose(smp, logits, &id)) != MEMFIT_OK)
        return st;
    if (c && c->accept && (st = c->accept(c->ctx, id)) != MEMFIT_OK)
        return st;
    if (smp->counts && smp->counts[id] < UINT32_MAX)
        smp->counts[id]++;
    *out = id;
    return MEMFIT_OK;
}

/* ---- log-probabilities ------------------------------------------------------ */

/* Inserts (x, id) into the best-first list top[0..*n) of at most k entries. */
static void top_insert(struct memfit_token_logprob *top, uint32_t *n, uint32_t k, float x,
                       int32_t id)
{
    uint32_t j = *n < k ? (*n)++ : k - 1;
    /* ids rise, so an equal logit is never better than one already kept */
    while (j > 0 && top[j - 1].logprob < x) {
        top[j] = top[j - 1];
        j--;
    }
    top[j] = (struct memfit_token_logprob){id, x};
}

enum memfit_status memfit_token_sampler_logprobs(memfit_token_sampler *smp, const float *logits,
                                                 int32_t token, uint32_t n_top, float *logprob,
                                                 struct memfit_token_logprob *top,
                                                 uint32_t *n_written)
{
    if (!smp || !logits || !logprob || (n_top && (!top || !n_written)))
        return memfit_fail(MEMFIT_E_MISUSE, "sampler logprobs: NULL argument");
    if (!smp->lp_work)
        return memfit_fail(MEMFIT_E_MISUSE,
                           "sampler logprobs: the sampler was created without logprobs");
    if (token < 0 || (uint32_t)token >= smp->n_vocab)
        return memfit_fail(MEMFIT_E_RANGE, "sampler logprobs: token %d outside the vocabulary",
                           (int)token);
    if (n_top > MEMFIT_MAX_TOP_LOGPROBS)
        return memfit_fail(MEMFIT_E_RANGE, "sampler logprobs: %u top tokens; at most %d", n_top,
                           MEMFIT_MAX_TOP_LOGPROBS);
    uint32_t n_vocab = smp->n_vocab;
    float mx = sanitize(max_lanes(logits, n_vocab));
    if (mx == -INFINITY)
        return fail_all_invalid(n_vocab);
    float *e = smp->lp_work;
    shifted(e, logits, n_vocab, mx, 1.0f);
    memfit_exp(e, n_vocab);
    /* exp's clamp gives a -inf (banned) token about 1e-38: far below float's resolution of z */
    double z = 0.0;
    for (uint32_t i = 0; i < n_vocab; i += CHUNK)
        z += sum_lanes(e + i, n_vocab - i < CHUNK ? n_vocab - i : CHUNK);
    float lse = mx + (float)log(z);
    float x = sanitize(logits[token]);
    *logprob = x == -INFINITY ? -INFINITY : x - lse;
    if (n_top == 0) {
        if (n_written)
            *n_written = 0;
        return MEMFIT_OK;
    }
    uint32_t n = 0;
    for (uint32_t i = 0; i < n_vocab; i++) {
        if (n == n_top && i % LANES == 0 && i + LANES <= n_vocab &&
            !any_above(logits + i, top[n - 1].logprob)) {
            i += LANES - 1;
            continue;
        }
        float v = sanitize(logits[i]);
        if (v == -INFINITY || (n == n_top && !(v > top[n - 1].logprob)))
            continue;
        top_insert(top, &n, n_top, v, (int32_t)i);
    }
    for (uint32_t j = 0; j < n; j++)
        top[j].logprob -= lse;
    *n_written = n;
    return MEMFIT_OK;
}

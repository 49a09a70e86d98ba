/*
 * Unit tests of prompt scoring (memfit_llm_eval_score, issue 18): each
 * token's log-probability and top-n equal the log-softmax of the logits
 * computed one position at a time (within a tolerance: the chunk's logits
 * come from the matrix-matrix kernel, the reference's from the dot
 * products), across several chunks and vocabulary slices (the fixture's
 * vocabulary is wider than 2 x n_ff), with n_batch 1, on a group's session
 * beside another scoring sequence (the same numbers as alone), and for a
 * quantized copy; the last token's logits are memfit_llm_eval's; bad calls.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "test_util.h"
#include "memfit/memfit.h"

#define N_TOK 13
#define N_TOP 5

static const int32_t prompt[N_TOK] = {206, 276, 128, 273, 125, 165, 221,
                                      211, 240, 227, 206, 265, 3};
static const int32_t other[N_TOK] = {7, 3, 2, 8, 11, 4, 6, 1, 5, 9, 12, 10, 0};

static struct memfit_llm_options options(uint32_t n_batch)
{
    struct memfit_llm_options o;
    memfit_llm_options_default(&o);
    o.n_threads = 2;
    o.n_ctx = 32;
    o.n_batch = n_batch;
    return o;
}

/* Row i of logits [N_TOK, V]: token i + 1's log-softmax (ref[i]), every token's (all[i * V
 * ..]) and the same sorted, best first (sorted[i * V ..]); in double. */
static void log_softmax_rows(const float *rows, const int32_t *toks, uint32_t V, double *ref,
                             double *sorted, double *all)
{
    for (size_t i = 0; i + 1 < N_TOK; i++) {
        const float *logits = rows + i * V;
        double mx = -INFINITY, sum = 0;
        for (uint32_t v = 0; v < V; v++)
            mx = logits[v] > mx ? logits[v] : mx;
        for (uint32_t v = 0; v < V; v++)
            sum += exp((double)logits[v] - mx);
        double lse = mx + log(sum);
        ref[i] = logits[toks[i + 1]] - lse;
        for (uint32_t v = 0; v < V; v++)
            all[i * V + v] = sorted[i * V + v] = logits[v] - lse;
        /* descending: insertion sort is enough for a few hundred entries */
        double *a = sorted + i * V;
        for (uint32_t v = 1; v < V; v++) {
            double x = a[v];
            uint32_t k = v;
            for (; k > 0 && a[k - 1] < x; k--)
                a[k] = a[k - 1];
            a[k] = x;
        }
    }
}

/* The reference: the logits of each position evaluated alone (n_batch 1: the dot products). */
static void reference(memfit_llm *m, const int32_t *toks, uint32_t V, double *ref, double *sorted,
                      double *all)
{
    struct memfit_llm_options o = options(1);
    memfit_llm_session *s = NULL;
    assert_int_equal(memfit_llm_session_create(m, &o, &s), MEMFIT_OK);
    float *rows = memfit_malloc(N_TOK * V * sizeof(float));
    assert_non_null(rows);
    for (size_t i = 0; i < N_TOK; i++)
        assert_int_equal(memfit_llm_eval(s, &toks[i], 1, rows + i * V, false), MEMFIT_OK);
    log_softmax_rows(rows, toks, V, ref, sorted, all);
    memfit_free(rows);
    memfit_llm_session_free(s);
}

/* The scores against the reference: the token's logprob, and the top-n (values in order,
 * each token's own reference value): the largest difference. */
static double compare(const struct memfit_token_score *sc, const int32_t *toks, uint32_t V,
                      uint32_t n_top, const double *ref, const double *sorted, const double *all)
{
    double worst = 0;
    for (size_t i = 0; i + 1 < N_TOK; i++) {
        assert_int_equal(sc[i].token, toks[i + 1]);
        double d = fabs(sc[i].logprob - ref[i]);
        worst = d > worst ? d : worst;
        assert_true(sc[i].n_top == n_top);
        for (uint32_t t = 0; t < n_top; t++) {
            const struct memfit_token_logprob *e = &sc[i].top[t];
            assert_true(e->token >= 0 && (uint32_t)e->token < V);
            if (t)
                assert_true(e->logprob <= sc[i].top[t - 1].logprob);
            double d1 = fabs(e->logprob - sorted[i * V + t]);
            double d2 = fabs(e->logprob - all[i * V + (uint32_t)e->token]);
            worst = d1 > worst ? d1 : worst;
            worst = d2 > worst ? d2 : worst;
        }
    }
    return worst;
}

struct job {
    memfit_llm_session *s;
    const int32_t *toks;
    struct memfit_token_score *out;
};

static void *score_main(void *p)
{
    struct job *j = p;
    memfit_llm_session_join(j->s);
    enum memfit_status st = memfit_llm_eval_score(j->s, j->toks, N_TOK, NULL, N_TOP, j->out);
    memfit_llm_session_leave(j->s);
    return st == MEMFIT_OK ? j : NULL;
}

static void check_model(const char *path, double tol)
{
    memfit_llm *m = NULL;
    assert_int_equal(memfit_llm_open(path, &m), MEMFIT_OK);
    struct memfit_llm_info info;
    memfit_llm_get_info(m, &info);
    uint32_t V = info.n_vocab;
    assert_true(V > 2 * info.n_ff); /* several vocabulary slices */
    double ref[N_TOK], *sorted = memfit_malloc(N_TOK * V * sizeof(double));
    double *all = memfit_malloc(N_TOK * V * sizeof(double));
    float *logits = memfit_malloc(V * sizeof(float)), *want = memfit_malloc(V * sizeof(float));
    struct memfit_token_score sc[N_TOK - 1], sc0[N_TOK - 1], alone[N_TOK - 1], grp[2][N_TOK - 1];
    double *rsorted = memfit_malloc(N_TOK * V * sizeof(double));
    double *rall = memfit_malloc(N_TOK * V * sizeof(double));
    float *rows = memfit_malloc(N_TOK * V * sizeof(float));
    assert_true(sorted && all && logits && want && rsorted && rall && rows);
    reference(m, prompt, V, ref, sorted, all);

    static const uint32_t batches[] = {64, 5, 1};
    for (size_t b = 0; b < 3; b++) {
        struct memfit_llm_options o = options(batches[b]);
        memfit_llm_session *s = NULL;
        assert_int_equal(memfit_llm_session_create(m, &o, &s), MEMFIT_OK);
        assert_int_equal(memfit_llm_eval(s, prompt, N_TOK, want, false), MEMFIT_OK);
        assert_int_equal(memfit_llm_session_truncate(s, 0), MEMFIT_OK);
        assert_int_equal(memfit_llm_eval_score(s, prompt, N_TOK, logits, N_TOP, sc), MEMFIT_OK);
        assert_int_equal(memfit_llm_session_pos(s), N_TOK);
        /* the last token's logits are the plain evaluation's, bit for bit */
        assert_memory_equal(logits, want, V * sizeof(float));
        double worst = compare(sc, prompt, V, N_TOP, ref, sorted, all);
        /* and the same kernels' logits kept whole (all_logits), folded in double */
        assert_int_equal(memfit_llm_session_truncate(s, 0), MEMFIT_OK);
        assert_int_equal(memfit_llm_eval(s, prompt, N_TOK, rows, true), MEMFIT_OK);
        double rref[N_TOK];
        log_softmax_rows(rows, prompt, V, rref, rsorted, rall);
        /* n_batch 1: the logits kept come from the dot products, the scores from the
         * matrix-matrix kernel (float activations): as far apart as the reference */
        double same_tol = batches[b] == 1 ? tol : 1e-4;
        double same = compare(sc, prompt, V, N_TOP, rref, rsorted, rall);
        print_message("%s n_batch %u: largest difference %.3g from one position at a time, %.3g "
                      "from all_logits\n",
                      path, batches[b], worst, same);
        assert_true(worst < tol);
        assert_true(same < same_tol);
        /* no top-n: the same logprobs */
        assert_int_equal(memfit_llm_session_truncate(s, 0), MEMFIT_OK);
        assert_int_equal(memfit_llm_eval_score(s, prompt, N_TOK, NULL, 0, sc0), MEMFIT_OK);
        for (size_t i = 0; i + 1 < N_TOK; i++)
            assert_true(sc0[i].n_top == 0 && sc0[i].logprob == sc[i].logprob);
        if (batches[b] == 5) { /* kept for the group below: the same options */
            memcpy(alone, sc, sizeof(sc));
        }
        memfit_llm_session_free(s);
    }

    /* Two sequences scored at once on a group: each gets what it gets alone. */
    struct memfit_llm_options o = options(5);
    memfit_llm_group *g = NULL;
    assert_int_equal(memfit_llm_group_create(m, &o, 2, &g), MEMFIT_OK);
    struct job jobs[2] = {{memfit_llm_group_session(g, 0), prompt, grp[0]},
                          {memfit_llm_group_session(g, 1), other, grp[1]}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, score_main, &jobs[i]), 0);
    for (int i = 0; i < 2; i++) {
        void *ret = NULL;
        pthread_join(th[i], &ret);
        assert_non_null(ret);
    }
    for (size_t i = 0; i + 1 < N_TOK; i++) {
        assert_int_equal(grp[0][i].token, alone[i].token);
        assert_float_equal(grp[0][i].logprob, alone[i].logprob, 1e-5);
        assert_int_equal(grp[0][i].n_top, N_TOP);
        for (uint32_t t = 0; t < N_TOP; t++)
            assert_float_equal(grp[0][i].top[t].logprob, alone[i].top[t].logprob, 1e-5);
    }
    reference(m, other, V, ref, sorted, all);
    assert_true(compare(grp[1], other, V, N_TOP, ref, sorted, all) < tol);
    memfit_llm_group_free(g);

    memfit_free(sorted);
    memfit_free(all);
    memfit_free(rsorted);
    memfit_free(rall);
    memfit_free(rows);
    memfit_free(logits);
    memfit_free(want);
    memfit_llm_close(m);
}

static char *fixture_path(void)
{
    char buf[1024];
    return memfit_strdup(mf_test_fixture("llm/qwen2_gqa.gguf", buf, sizeof(buf)));
}

static void test_scores_equal_one_at_a_time(void **state)
{
    (void)state;
    char *path = fixture_path();
    check_model(path, 2e-2);
    char *q = mf_test_quantized_gguf(path, MEMFIT_QUANTIZE_Q8_0, "memfit_llm_score");
    check_model(q, 0.25); /* Q8_0: float activations in chunks, Q8_0 in the dot products */
    unlink(q);
    memfit_free(q);
    memfit_free(path);
}

static void test_bad_calls(void **state)
{
    (void)state;
    char *path = fixture_path();
    memfit_llm *m = NULL;
    assert_int_equal(memfit_llm_open(path, &m), MEMFIT_OK);
    struct memfit_llm_options o = options(4);
    memfit_llm_session *s = NULL;
    assert_int_equal(memfit_llm_session_create(m, &o, &s), MEMFIT_OK);
    struct memfit_token_score sc[N_TOK];
    assert_int_equal(memfit_llm_eval_score(s, prompt, 3, NULL, MEMFIT_MAX_TOP_LOGPROBS + 1, sc),
                     MEMFIT_E_RANGE);
    assert_int_equal(memfit_llm_eval_score(NULL, prompt, 3, NULL, 1, sc), MEMFIT_E_MISUSE);
    assert_int_equal(memfit_llm_eval_score(s, prompt, 3, NULL, 1, NULL), MEMFIT_E_MISUSE);
    assert_int_equal(memfit_llm_session_pos(s), 0);
    /* one token: nothing to score, scores may be NULL */
    assert_int_equal(memfit_llm_eval_score(s, prompt, 1, NULL, 1, NULL), MEMFIT_OK);
    assert_int_equal(memfit_llm_session_pos(s), 1);
    /* beyond the context: nothing done */
    int32_t many[40] = {0};
    assert_int_equal(memfit_llm_eval_score(s, many, 40, NULL, 1, sc), MEMFIT_E_RANGE);
    assert_int_equal(memfit_llm_session_pos(s), 1);
    memfit_llm_session_free(s);
    memfit_llm_close(m);
    memfit_free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scores_equal_one_at_a_time),
        cmocka_unit_test(test_bad_calls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

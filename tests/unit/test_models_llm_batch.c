/*
 * Unit tests of continuous batching (memfit_llm_group): sequences evaluated
 * at once from several threads on a group's sessions get exactly the logits
 * (and so the greedy text) they get alone on a session of their own, at
 * different positions, with prompts chunked beside other sequences' tokens,
 * joining and leaving mid-way (a session reused for a new sequence while the
 * others go on), all_logits requests included; the forwards really carry
 * several sequences; the plan of a group; bad calls. Run under TSan too.
 * Models: the F16 fixture and Q8_0 / Q4_0 copies of it, and an NF4 copy
 * (double-quantized, bitsandbytes' layout in place) of its HF twin.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_util.h"
#include "memfit/memfit.h"

#define N_SEQ     4
#define N_THREADS 2
#define MAX_GEN   24
#define MAX_PRMPT 20

/* One sequence: a prompt of n_prompt tokens then n_gen greedy tokens. */
struct seq {
    int32_t prompt[MAX_PRMPT];
    size_t n_prompt;
    int n_gen;
    bool all_logits; /* the prompt's every position */
};

/* What a sequence gave: the logits after the prompt and after each token, and the tokens. */
struct trace {
    float *logits; /* [(MAX_PRMPT + MAX_GEN + 1), n_vocab] */
    int32_t tokens[MAX_GEN];
};

static const struct seq seqs[] = {
    {.prompt = {1, 5, 9}, .n_prompt = 3, .n_gen = 20},
    {.prompt = {7, 3, 2, 8, 11, 4, 6}, .n_prompt = 7, .n_gen = 12, .all_logits = true},
    {.prompt = {2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24}, .n_prompt = 12, .n_gen = 24},
    {.prompt = {9}, .n_prompt = 1, .n_gen = 16},
    /* Run after sequence 1 on its session: joins while the others go on. */
    {.prompt = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4},
     .n_prompt = 20,
     .n_gen = 10},
};
#define N_SEQS (sizeof(seqs) / sizeof(*seqs))

static int32_t argmax(const float *v, size_t n)
{
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (v[i] > v[best])
            best = i;
    return (int32_t)best;
}

static struct memfit_llm_options options(void)
{
    struct memfit_llm_options o;
    memfit_llm_options_default(&o);
    o.n_threads = N_THREADS;
    o.n_ctx = 64;
    o.n_batch = 5; /* prompts in several chunks */
    return o;
}

/* Runs sequence q on session s (from position 0), recording its logits rows. */
static void run_seq(memfit_llm_session *s, const struct seq *q, uint32_t n_vocab, struct trace *t)
{
    size_t V = n_vocab;
    assert_int_equal(memfit_llm_session_truncate(s, 0), MEMFIT_OK);
    float *row = t->logits;
    if (q->all_logits) {
        assert_int_equal(memfit_llm_eval(s, q->prompt, q->n_prompt, row, true), MEMFIT_OK);
        row += (q->n_prompt - 1) * V;
    } else {
        assert_int_equal(memfit_llm_eval(s, q->prompt, q->n_prompt, row, false), MEMFIT_OK);
    }
    for (int i = 0; i < q->n_gen; i++) {
        t->tokens[i] = argmax(row, V);
        row += V;
        assert_int_equal(memfit_llm_eval(s, &t->tokens[i], 1, row, false), MEMFIT_OK);
    }
    assert_int_equal(memfit_llm_session_pos(s), q->n_prompt + (size_t)q->n_gen);
}

static void trace_alloc(struct trace *t, uint32_t n_vocab)
{
    memset(t, 0, sizeof(*t));
    t->logits = memfit_calloc((size_t)(MAX_PRMPT + MAX_GEN + 1) * n_vocab, sizeof(float));
    assert_non_null(t->logits);
}

struct worker {
    memfit_llm_session *s;
    uint32_t n_vocab;
    const size_t *which; /* sequences run one after the other on this session */
    size_t n_which;
    struct trace *traces; /* [N_SEQS] */
};

static void *worker_main(void *p)
{
    struct worker *w = p;
    for (size_t i = 0; i < w->n_which; i++) {
        size_t k = w->which[i];
        memfit_llm_session_join(w->s);
        run_seq(w->s, &seqs[k], w->n_vocab, &w->traces[k]);
        memfit_llm_session_leave(w->s);
    }
    return NULL;
}

/* Every sequence alone, then all of them batched on a group from N_SEQ threads. */
static void check_model(const char *path)
{
    memfit_llm *m = NULL;
    assert_int_equal(memfit_llm_open(path, &m), MEMFIT_OK);
    struct memfit_llm_info info;
    memfit_llm_get_info(m, &info);
    struct memfit_llm_options o = options();
    struct trace solo[N_SEQS], batched[N_SEQS];
    memfit_llm_session *s = NULL;
    assert_int_equal(memfit_llm_session_create(m, &o, &s), MEMFIT_OK);
    for (size_t k = 0; k < N_SEQS; k++) {
        trace_alloc(&solo[k], info.n_vocab);
        trace_alloc(&batched[k], info.n_vocab);
        run_seq(s, &seqs[k], info.n_vocab, &solo[k]);
    }
    memfit_llm_session_free(s);

    memfit_llm_group *g = NULL;
    assert_int_equal(memfit_llm_group_create(m, &o, N_SEQ, &g), MEMFIT_OK);
    /* Session 1 runs sequence 1 then 4 (joining mid-way); the others one each. */
    static const size_t w0[] = {0}, w1[] = {1, 4}, w2[] = {2}, w3[] = {3};
    static const size_t *which[N_SEQ] = {w0, w1, w2, w3};
    static const size_t n_which[N_SEQ] = {1, 2, 1, 1};
    struct worker w[N_SEQ];
    pthread_t th[N_SEQ];
    for (int i = 0; i < N_SEQ; i++) {
        w[i] = (struct worker){.s = memfit_llm_group_session(g, (uint32_t)i),
                               .n_vocab = info.n_vocab,
                               .which = which[i],
                               .n_which = n_which[i],
                               .traces = batched};
        assert_non_null(w[i].s);
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < N_SEQ; i++)
        pthread_join(th[i], NULL);
    assert_null(memfit_llm_group_session(g, N_SEQ));
    struct memfit_llm_group_stats st;
    memfit_llm_group_get_stats(g, &st);
    /* Batched: fewer forwards than rows (every token alone would be one forward each). */
    uint64_t n_rows = 0;
    for (size_t k = 0; k < N_SEQS; k++)
        n_rows += seqs[k].n_prompt + (size_t)seqs[k].n_gen;
    assert_int_equal(st.rows, n_rows);
    assert_true(st.steps < st.rows);
    print_message("%s: %llu rows in %llu forwards\n", path, (unsigned long long)st.rows,
                  (unsigned long long)st.steps);
    for (size_t k = 0; k < N_SEQS; k++) {
        size_t V = info.n_vocab;
        size_t rows = (seqs[k].all_logits ? seqs[k].n_prompt : 1) + (size_t)seqs[k].n_gen;
        assert_memory_equal(batched[k].tokens, solo[k].tokens, seqs[k].n_gen * sizeof(int32_t));
        assert_memory_equal(batched[k].logits, solo[k].logits, rows * V * sizeof(float));
        memfit_free(solo[k].logits);
        memfit_free(batched[k].logits);
    }
    /* Alone on a group's session: the same path, no one to wait for. */
    memfit_llm_session *gs = memfit_llm_group_session(g, 2);
    float *logits = memfit_malloc(info.n_vocab * sizeof(float));
    assert_non_null(logits);
    assert_int_equal(memfit_llm_session_truncate(gs, 0), MEMFIT_OK);
    assert_int_equal(memfit_llm_eval(gs, seqs[2].prompt, seqs[2].n_prompt, logits, false),
                     MEMFIT_OK);
    memfit_free(logits);
    memfit_llm_session_free(gs); /* the group's: ignored */
    memfit_llm_group_free(g);
    memfit_llm_close(m);
}

static char *fixture_path(void)
{
    char buf[1024];
    return memfit_strdup(mf_test_fixture("llm/qwen2_gqa.gguf", buf, sizeof(buf)));
}

static void test_batched_equals_alone(void **state)
{
    (void)state;
    char *path = fixture_path();
    check_model(path);
    static const enum memfit_quantize_target targets[] = {MEMFIT_QUANTIZE_Q8_0,
                                                          MEMFIT_QUANTIZE_Q4_0};
    for (size_t i = 0; i < 2; i++) {
        char *q = mf_test_quantized_gguf(path, targets[i], "memfit_llm_batch");
        check_model(q);
        unlink(q);
        memfit_free(q);
    }
    memfit_free(path);
}

static void test_plan_and_bad_calls(void **state)
{
    (void)state;
    char *path = fixture_path();
    memfit_llm *m = NULL;
    assert_int_equal(memfit_llm_open(path, &m), MEMFIT_OK);
    struct memfit_llm_info info;
    memfit_llm_get_info(m, &info);
    struct memfit_llm_options o = options();
    struct memfit_llm_plan one, grp1, grp4;
    assert_int_equal(memfit_llm_plan_for(&info, &o, &one), MEMFIT_OK);
    assert_int_equal(memfit_llm_plan_group(&info, &o, 1, &grp1), MEMFIT_OK);
    assert_int_equal(memfit_llm_plan_group(&info, &o, 4, &grp4), MEMFIT_OK);
    assert_memory_equal(&one, &grp1, sizeof(one));
    /* Each session its cache; one workspace for all, larger than a session's (more rows) but
     * far from four of them. */
    assert_int_equal(grp4.kv_bytes, one.kv_bytes);
    assert_true(grp4.work_bytes > one.work_bytes);
    assert_true(grp4.work_bytes < 2 * one.work_bytes);
    assert_int_equal(memfit_llm_plan_group(&info, &o, 0, &grp4), MEMFIT_E_RANGE);
    assert_int_equal(memfit_llm_plan_group(&info, &o, 65, &grp4), MEMFIT_E_RANGE);
    memfit_llm_group *g = NULL;
    assert_int_equal(memfit_llm_group_create(m, &o, 0, &g), MEMFIT_E_RANGE);
    assert_null(g);
    assert_int_equal(memfit_llm_group_create(NULL, &o, 2, &g), MEMFIT_E_MISUSE);
    assert_int_equal(memfit_llm_group_create(m, NULL, 2, &g), MEMFIT_OK);
    memfit_llm_session *s = memfit_llm_group_session(g, 0);
    int32_t bad = (int32_t)info.n_vocab;
    assert_int_equal(memfit_llm_eval(s, &bad, 1, NULL, false), MEMFIT_E_RANGE);
    assert_int_equal(memfit_llm_session_pos(s), 0);
    memfit_llm_session_join(NULL); /* no-ops */
    memfit_llm_session_leave(NULL);
    memfit_llm_group_free(g);
    memfit_llm_group_free(NULL);
    memfit_llm_close(m);
    memfit_free(path);
}

/* NF4 goes through its own row kernel: the same property. */
static void test_nf4_batched_equals_alone(void **state)
{
    (void)state;
    char buf[1024];
    const char *src = mf_test_fixture("llm/hf_qwen2_gqa", buf, sizeof(buf));
    char *dir = mf_test_tmp_dir("memfit_llm_batch_nf4");
    static const char *const linked[] = {"config.json", "tokenizer.json", "tokenizer_config.json"};
    for (size_t i = 0; i < 3; i++) {
        char *from = realpath(src, NULL); /* lint: allow: freed below */
        assert_non_null(from);
        char *target = memfit_asprintf("%s/%s", from, linked[i]);
        char *link = memfit_asprintf("%s/%s", dir, linked[i]);
        assert_int_equal(symlink(target, link), 0);
        free(from); /* lint: allow: from realpath */
        memfit_free(target);
        memfit_free(link);
    }
    char *from = memfit_asprintf("%s/model.safetensors", src);
    char *to = memfit_asprintf("%s/model.safetensors", dir);
    struct memfit_quantize_options qo;
    memfit_quantize_options_default(&qo);
    qo.target = MEMFIT_QUANTIZE_NF4;
    qo.double_quant = true;
    assert_int_equal(memfit_quantize_file(from, to, &qo, NULL), MEMFIT_OK);
    memfit_llm *m = NULL;
    struct memfit_llm_info info;
    assert_int_equal(memfit_llm_open(dir, &m), MEMFIT_OK);
    memfit_llm_get_info(m, &info);
    assert_int_equal(info.weight_type, MEMFIT_TYPE_NF4);
    memfit_llm_close(m);
    check_model(dir);
    memfit_free(from);
    memfit_free(to);
    mf_test_remove_dir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batched_equals_alone),
        cmocka_unit_test(test_nf4_batched_equals_alone),
        cmocka_unit_test(test_plan_and_bad_calls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

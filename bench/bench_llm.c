/*
 * LLM engine benchmark: evaluates a prompt of random token ids (batches of
 * n_batch, matrix-matrix), then generates N tokens one at a time (greedy
 * argmax, matrix-vector), and prints prompt and generation tokens per second
 * and the process's peak RSS (VmHWM). No tokenizer is needed, so any Qwen2 /
 * LLaMA GGUF works, e.g. one from scripts/make_llm_reference.py --bench.
 *
 * --chats N: then N chats at once on a group of N sessions (continuous
 * batching, one thread each): each evaluates its own prompt, then all
 * generate N tokens; prints their aggregate generation tokens/s and its ratio
 * to the one chat's above (issue 18's goal: >= 2.5 for 4 chats).
 *
 *   bench_llm MODEL.gguf [--threads N] [--prompt 128] [--gen 32] [--kv f16|q8_0|f32]
 *                        [--batch 64] [--ctx N] [--chats N] [--warmup 1|0]
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm_common.h"
#include "memfit/memfit.h"

/* The process's peak RSS (VmHWM) in bytes, 0 when unreadable. */
static uint64_t peak_rss_bytes(void)
{
    struct memfit_proc_mem pm;
    return memfit_proc_read_ex(NULL, 0, MEMFIT_PROC_STATUS_ONLY, &pm) == MEMFIT_OK ? pm.hwm_bytes
                                                                                   : 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: bench_llm MODEL.gguf [--threads N] [--prompt 128] [--gen 32] "
                    "[--kv f16|q8_0|f32] [--batch 64] [--ctx N] [--chats N] [--warmup 1|0]\n");
    return 2;
}

static int fail(const char *what)
{
    return bench_llm_fail("bench_llm", what);
}

/* One chat of a group: its prompt, then (all prompts done) its greedy tokens. */
struct chat {
    memfit_llm_session *s;
    uint32_t n_vocab;
    unsigned n_prompt, n_gen, index;
    pthread_barrier_t *ready;
    uint64_t end_ns;
    enum memfit_status st;
};

static void *chat_main(void *p)
{
    struct chat *c = p;
    int32_t *tokens = memfit_malloc(((size_t)c->n_prompt + 1) * sizeof(int32_t));
    float *logits = memfit_malloc((size_t)c->n_vocab * sizeof(float));
    c->st = tokens && logits ? MEMFIT_OK : MEMFIT_E_NOMEM;
    uint32_t seed = 777u + c->index * 7919u;
    for (unsigned i = 0; tokens && i < c->n_prompt; i++) {
        seed = seed * 1664525u + 1013904223u;
        tokens[i] = (int32_t)((seed >> 8) % c->n_vocab);
    }
    memfit_token_sampler *smp = bench_llm_greedy_sampler(c->n_vocab);
    if (!smp)
        c->st = MEMFIT_E_NOMEM;
    memfit_llm_session_join(c->s);
    if (c->st == MEMFIT_OK)
        c->st = memfit_llm_eval(c->s, tokens, c->n_prompt, logits, false);
    pthread_barrier_wait(c->ready);
    for (unsigned g = 0; g < c->n_gen && c->st == MEMFIT_OK; g++) {
        int32_t best = bench_llm_greedy(smp, logits);
        c->st = best < 0 ? MEMFIT_E_INVALID : memfit_llm_eval(c->s, &best, 1, logits, false);
    }
    memfit_token_sampler_free(smp);
    c->end_ns = memfit_now_ns();
    memfit_llm_session_leave(c->s);
    memfit_free(tokens);
    memfit_free(logits);
    return NULL;
}

/* n chats at once on a group: their aggregate generation tokens/s. */
static int run_chats(memfit_llm *m, const struct memfit_llm_options *o, unsigned n,
                     unsigned n_prompt, unsigned n_gen, double *agg_tps)
{
    struct memfit_llm_info info;
    memfit_llm_get_info(m, &info);
    struct memfit_llm_plan plan;
    memfit_llm_group *g;
    if (memfit_llm_plan_group(&info, o, n, &plan) != MEMFIT_OK ||
        memfit_llm_group_create(m, o, n, &g) != MEMFIT_OK)
        return 1;
    printf("group: %u sessions; plan: kv %.1f MiB each, work %.1f MiB shared\n", n,
           (double)plan.kv_bytes / 1048576.0, (double)plan.work_bytes / 1048576.0);
    struct chat c[64];
    pthread_t th[64];
    pthread_barrier_t ready;
    pthread_barrier_init(&ready, NULL, n + 1);
    for (unsigned i = 0; i < n; i++) {
        c[i] = (struct chat){.s = memfit_llm_group_session(g, i),
                             .n_vocab = info.n_vocab,
                             .n_prompt = n_prompt,
                             .n_gen = n_gen,
                             .index = i,
                             .ready = &ready};
        pthread_create(&th[i], NULL, chat_main, &c[i]);
    }
    pthread_barrier_wait(&ready);
    uint64_t t0 = memfit_now_ns(), t1 = t0;
    struct memfit_llm_group_stats before, after;
    memfit_llm_group_get_stats(g, &before);
    int rc = 0;
    for (unsigned i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        t1 = c[i].end_ns > t1 ? c[i].end_ns : t1;
        rc |= c[i].st != MEMFIT_OK;
    }
    memfit_llm_group_get_stats(g, &after);
    pthread_barrier_destroy(&ready);
    memfit_llm_group_free(g);
    double s = (double)(t1 - t0) / 1e9;
    *agg_tps = (double)n * n_gen / s;
    printf("chats: %u x %u tokens in %.3f s; %llu forwards, %.2f rows each\n", n, n_gen, s,
           (unsigned long long)(after.steps - before.steps),
           (double)(after.rows - before.rows) /
               (double)(after.steps - before.steps ? after.steps - before.steps : 1));
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argv[1][0] == '-')
        return usage();
    struct bench_llm_args a = bench_llm_args_default();
    long long prompt = 128, gen = 32, ctx = 0, chats = 0, warmup = 1;
    const struct bench_llm_int_option own[] = {
        {"--prompt", 1, 1 << 24, &prompt}, {"--gen", 0, 1 << 24, &gen}, {"--ctx", 0, 1 << 24, &ctx},
        {"--chats", 0, 64, &chats},        {"--warmup", 0, 1, &warmup}, {NULL, 0, 0, NULL}};
    if (!bench_llm_parse(argc, argv, 2, &a, own))
        return usage();
    unsigned n_prompt = (unsigned)prompt, n_gen = (unsigned)gen, n_ctx = (unsigned)ctx,
             n_chats = (unsigned)chats;
    uint64_t t0 = memfit_now_ns();
    memfit_llm *m;
    if (memfit_llm_open(argv[1], &m) != MEMFIT_OK)
        return fail("open");
    double open_s = (double)(memfit_now_ns() - t0) / 1e9;
    struct memfit_llm_info info;
    memfit_llm_get_info(m, &info);
    struct memfit_llm_options o = bench_llm_options(&a, n_ctx ? n_ctx : n_prompt + n_gen);
    struct memfit_llm_plan plan;
    if (memfit_llm_plan_for(&info, &o, &plan) != MEMFIT_OK)
        return fail("plan");
    memfit_llm_session *s;
    if (memfit_llm_session_create(m, &o, &s) != MEMFIT_OK)
        return fail("session");
    int32_t *tokens = memfit_malloc(((size_t)n_prompt + 1) * sizeof(int32_t));
    float *logits = memfit_malloc((size_t)info.n_vocab * sizeof(float));
    memfit_token_sampler *smp = bench_llm_greedy_sampler(info.n_vocab);
    if (!tokens || !logits || !smp)
        return fail("allocation");
    uint32_t seed = 12345;
    for (unsigned i = 0; i < n_prompt; i++) {
        seed = seed * 1664525u + 1013904223u;
        tokens[i] = (int32_t)((seed >> 8) % info.n_vocab);
    }
    printf("model %s: %s, %u layers, n_embd %u, heads %u/%u, n_ff %u, vocab %u, weights %s "
           "(%.1f MiB), open %.3f s\n",
           argv[1], info.arch, info.n_layer, info.n_embd, info.n_head, info.n_head_kv, info.n_ff,
           info.n_vocab, memfit_type_get_info(info.weight_type)->name,
           (double)info.weight_bytes / 1048576.0, open_s);
    printf("session: ctx %u, batch %u, kv %s, threads %u (%s); plan: kv %.1f MiB, work %.1f "
           "MiB\n",
           o.n_ctx, o.n_batch, memfit_type_get_info(a.kv)->name,
           a.threads ? a.threads : memfit_cpu_count(), memfit_tensor_isa(),
           (double)plan.kv_bytes / 1048576.0, (double)plan.work_bytes / 1048576.0);
    /* A warm-up pass first, as llama-bench does: the prompt and one token, then the
     * session emptied. The timed pass then finds the mapped weights faulted in (the
     * first request after a load pays for that once; --warmup 0 measures it). */
    if (warmup) {
        int32_t one = tokens[0];
        if (memfit_llm_eval(s, tokens, n_prompt, logits, false) != MEMFIT_OK ||
            (n_gen && memfit_llm_eval(s, &one, 1, logits, false) != MEMFIT_OK) ||
            memfit_llm_session_truncate(s, 0) != MEMFIT_OK)
            return fail("warm-up");
    }
    t0 = memfit_now_ns();
    if (memfit_llm_eval(s, tokens, n_prompt, logits, false) != MEMFIT_OK)
        return fail("prompt");
    double prompt_s = (double)(memfit_now_ns() - t0) / 1e9;
    t0 = memfit_now_ns();
    for (unsigned g = 0; g < n_gen; g++) {
        int32_t best = bench_llm_greedy(smp, logits);
        if (best < 0 || memfit_llm_eval(s, &best, 1, logits, false) != MEMFIT_OK)
            return fail("generate");
    }
    double gen_s = (double)(memfit_now_ns() - t0) / 1e9;
    printf("prompt: %u tokens in %.3f s = %.1f t/s\n", n_prompt, prompt_s, n_prompt / prompt_s);
    if (n_gen)
        printf("generation: %u tokens in %.3f s = %.2f t/s (%.1f ms/token)\n", n_gen, gen_s,
               n_gen / gen_s, gen_s * 1e3 / n_gen);
    if (n_gen) {
        /* Each generated token reads every weight but the embedding matrix (one row of it;
         * all of it when it is also the output matrix). */
        uint64_t embd = info.tied_output ? 0 : info.embd_bytes;
        double read_mb = (double)(info.weight_bytes - embd) / 1e6;
        printf("decode reads %.1f MB of weights per token: %.2f GB/s at the generation rate\n",
               read_mb, read_mb * n_gen / gen_s / 1e3);
    }
    printf("peak RSS (VmHWM): %.1f MiB\n", (double)peak_rss_bytes() / 1048576.0);
    /* One line for scripts (bench/llm_bench.sh). */
    printf("prompt_tps=%.2f gen_tps=%.2f peak_rss_mb=%.1f\n", n_prompt / prompt_s,
           n_gen ? n_gen / gen_s : 0.0, (double)peak_rss_bytes() / 1048576.0);
    memfit_free(tokens);
    memfit_free(logits);
    memfit_token_sampler_free(smp);
    memfit_llm_session_free(s);
    if (n_chats && n_gen) {
        double agg = 0;
        if (run_chats(m, &o, n_chats, n_prompt, n_gen, &agg) != 0)
            return fail("chats");
        double one = n_gen / gen_s;
        printf("chats: 1 chat %.2f t/s; %u chats at once %.2f t/s aggregate (%.2f t/s each); "
               "ratio %.2fx\n",
               one, n_chats, agg, agg / n_chats, agg / one);
        printf("chats_one_tps=%.2f chats_n=%u chats_agg_tps=%.2f chats_ratio=%.2f\n", one, n_chats,
               agg, agg / one);
    }
    memfit_llm_close(m);
    return 0;
}

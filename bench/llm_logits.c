/*
 * Writes an LLM's logits at every position of a token sequence, for the
 * logit-parity comparisons of bench/llm_parity.sh (against other types of
 * the same weights, and against llama.cpp's log-probabilities of the same
 * tokens). The tokens are little-endian int32 ids; the output is the magic
 * "MFLOGITS", the vocabulary size and the number of positions (u32 each),
 * then n_pos rows of n_vocab little-endian floats.
 *
 *   llm_logits MODEL.gguf TOKENS.bin OUT.bin [--threads N] [--batch 64]
 *              [--kv f16|q8_0|f32] [--prompt N] [--gen N]
 *
 * --prompt N evaluates the first N tokens in one call (as a prompt, in
 * batches of --batch) and the others one call each (as generation does);
 * by default all tokens are one prompt. --gen N then generates N tokens
 * greedily (argmax), prints their ids and adds their logits to OUT.bin.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm_common.h"
#include "memfit/memfit.h"

static int usage(void)
{
    fprintf(stderr, "usage: llm_logits MODEL.gguf TOKENS.bin OUT.bin [--threads N] [--batch 64] "
                    "[--kv f16|q8_0|f32] [--prompt N] [--gen N]\n");
    return 2;
}

static int fail(const char *what)
{
    return bench_llm_fail("llm_logits", what);
}

/* The int32 ids of PATH into *out (memfit_malloc'd), their count into *n. */
static int read_tokens(const char *path, int32_t **out, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return 1;
    }
    size_t cap = 4096, len = 0;
    int32_t *v = memfit_malloc(cap * sizeof(*v));
    while (v) {
        len += fread(v + len, sizeof(*v), cap - len, f);
        if (len < cap)
            break;
        cap *= 2;
        int32_t *grown = memfit_realloc(v, cap * sizeof(*v));
        if (!grown) {
            memfit_free(v);
            v = NULL;
        }
        v = grown;
    }
    fclose(f);
    if (!v || len == 0) {
        fprintf(stderr, "llm_logits: %s: %s\n", path, v ? "no tokens" : "out of memory");
        memfit_free(v);
        return 1;
    }
    *out = v;
    *n = len;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 4 || argv[1][0] == '-')
        return usage();
    struct bench_llm_args a = bench_llm_args_default();
    long long n_prompt = -1, gen = 0;
    const struct bench_llm_int_option own[] = {
        {"--prompt", 0, 1 << 24, &n_prompt}, {"--gen", 0, 1 << 24, &gen}, {NULL, 0, 0, NULL}};
    if (!bench_llm_parse(argc, argv, 4, &a, own))
        return usage();
    unsigned n_gen = (unsigned)gen;
    int32_t *tokens;
    size_t n;
    if (read_tokens(argv[2], &tokens, &n))
        return 1;
    memfit_llm *m;
    if (memfit_llm_open(argv[1], &m) != MEMFIT_OK)
        return fail("open");
    struct memfit_llm_info info;
    memfit_llm_get_info(m, &info);
    struct memfit_llm_options o = bench_llm_options(&a, (uint32_t)(n + n_gen));
    memfit_llm_session *s;
    if (memfit_llm_session_create(m, &o, &s) != MEMFIT_OK)
        return fail("session");
    float *logits = memfit_malloc((n + n_gen) * info.n_vocab * sizeof(float));
    int32_t *all = memfit_realloc(tokens, (n + n_gen) * sizeof(*tokens));
    if (all)
        tokens = all;
    if (!logits || !all)
        return fail("allocation");
    size_t first = n_prompt < 0 || (size_t)n_prompt > n ? n : (size_t)n_prompt;
    if (first && memfit_llm_eval(s, tokens, first, logits, true) != MEMFIT_OK)
        return fail("prompt");
    for (size_t i = first; i < n; i++)
        if (memfit_llm_eval(s, tokens + i, 1, logits + i * info.n_vocab, false) != MEMFIT_OK)
            return fail("eval");
    /* Greedy continuation: each token is the library's greedy pick from the previous row. */
    memfit_token_sampler *smp = n_gen ? bench_llm_greedy_sampler(info.n_vocab) : NULL;
    if (n_gen && !smp)
        return fail("allocation");
    for (size_t i = n; i < n + n_gen; i++) {
        int32_t best = bench_llm_greedy(smp, logits + (i - 1) * info.n_vocab);
        if (best < 0)
            return fail("greedy pick");
        tokens[i] = best;
        printf("%s%d", i == n ? "greedy:" : " ", (int)best);
        if (memfit_llm_eval(s, &best, 1, logits + i * info.n_vocab, false) != MEMFIT_OK)
            return fail("generate");
    }
    memfit_token_sampler_free(smp);
    if (n_gen)
        printf("\n");
    n += n_gen;
    FILE *f = fopen(argv[3], "wb");
    uint32_t head[2] = {info.n_vocab, (uint32_t)n};
    if (!f || fwrite("MFLOGITS", 1, 8, f) != 8 || fwrite(head, sizeof(head), 1, f) != 1 ||
        fwrite(logits, sizeof(float) * info.n_vocab, n, f) != n || fclose(f) != 0) {
        perror(argv[3]);
        return 1;
    }
    memfit_free(logits);
    memfit_free(tokens);
    memfit_llm_session_free(s);
    memfit_llm_close(m);
    return 0;
}

/*
 * What the LLM bench programs (bench_llm.c, llm_logits.c) share: their
 * error line, the options they both take (--threads, --batch, --kv) and the
 * session options made of them, and greedy picks through the library's sampler. A header of
 * static functions, since bench/CMakeLists.txt makes each .c file of bench/ a
 * program of its own.
 */
#ifndef MEMFIT_BENCH_LLM_COMMON_H
#define MEMFIT_BENCH_LLM_COMMON_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "memfit/memfit.h"

/* The options both programs take, with their defaults. */
struct bench_llm_args {
    unsigned threads; /* 0: every CPU */
    unsigned n_batch;
    enum memfit_type kv;
};

static inline struct bench_llm_args bench_llm_args_default(void)
{
    return (struct bench_llm_args){.threads = 0, .n_batch = 64, .kv = MEMFIT_TYPE_F16};
}

/* Prints "PROG: WHAT: <memfit_last_error()>"; returns 1 (the exit status). */
static inline int bench_llm_fail(const char *prog, const char *what)
{
    fprintf(stderr, "%s: %s: %s\n", prog, what, memfit_last_error());
    return 1;
}

/* A program's own integer option: "--name N", min <= N <= max, into *value. */
struct bench_llm_int_option {
    const char *name;
    long long min, max;
    long long *value;
};

/* Takes argv[first..] as "--option VALUE" pairs: --threads N, --batch N (> 0)
 * and --kv TYPE into *a, and the options of `own` (ended by a NULL name).
 * False on an unknown option, a missing or bad value. */
static inline bool bench_llm_parse(int argc, char **argv, int first, struct bench_llm_args *a,
                                   const struct bench_llm_int_option *own)
{
    for (int i = first; i < argc; i += 2) {
        if (i + 1 >= argc)
            return false;
        const char *opt = argv[i], *val = argv[i + 1];
        if (strcmp(opt, "--kv") == 0) {
            if (memfit_type_from_name(val, &a->kv) != MEMFIT_OK)
                return false;
            continue;
        }
        long long v = 0;
        if (memfit_parse_int(val, 0, 1 << 24, &v) != MEMFIT_OK)
            return false;
        if (strcmp(opt, "--threads") == 0) {
            a->threads = (unsigned)v;
            continue;
        }
        if (strcmp(opt, "--batch") == 0 && v > 0) {
            a->n_batch = (unsigned)v;
            continue;
        }
        const struct bench_llm_int_option *o = own;
        while (o->name && strcmp(o->name, opt) != 0)
            o++;
        if (!o->name || v < o->min || v > o->max)
            return false;
        *o->value = v;
    }
    return true;
}

/* The session options of *a for a context of n_ctx tokens. */
static inline struct memfit_llm_options bench_llm_options(const struct bench_llm_args *a,
                                                          uint32_t n_ctx)
{
    struct memfit_llm_options o;
    memfit_llm_options_default(&o);
    o.n_threads = a->threads;
    o.n_batch = a->n_batch;
    o.kv_type = a->kv;
    o.n_ctx = n_ctx;
    return o;
}

/* A greedy sampler (temperature 0) over n_vocab logits, NULL on failure: the library's pick, as
 * `memfit generate --temp 0` makes it (the largest logit, ties to the lowest id). */
static inline memfit_token_sampler *bench_llm_greedy_sampler(uint32_t n_vocab)
{
    struct memfit_sampling sp;
    memfit_sampling_default(&sp);
    sp.temperature = 0;
    memfit_token_sampler *smp = NULL;
    return memfit_token_sampler_create(&sp, n_vocab, &smp) == MEMFIT_OK ? smp : NULL;
}

/* The next greedy token after `logits` (left as they are: greedy with no penalties changes
 * nothing), or -1 when none can be picked (all logits NaN or -inf). */
static inline int32_t bench_llm_greedy(memfit_token_sampler *smp, float *logits)
{
    int32_t tok = -1;
    return memfit_token_sampler_sample(smp, logits, NULL, 0, &tok) == MEMFIT_OK ? tok : -1;
}

#endif

/*
 * What the LLM bench programs (bench_llm.c, llm_logits.c) share: their
 * error line, the options they both take (--threads, --batch, --kv) and the
 * session options made of them, and greedy argmax. A header of
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

/* The index of the largest of n values (the first of equals), found as the library's greedy
 * sampler finds it (src/models/sample.c): a max over 16 independent lanes, which the compiler
 * vectorizes, then the first value equal to it. A plain running argmax is a serial chain of
 * compares, about 2 % of a 1.8B model's decode time over a 152k vocabulary. */
static inline int32_t bench_llm_argmax(const float *logits, uint32_t n)
{
    enum { LANES = 16 };
    float m[LANES];
    for (int j = 0; j < LANES; j++)
        m[j] = logits[0];
    uint32_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++)
            m[j] = logits[i + j] > m[j] ? logits[i + j] : m[j];
    float best = m[0];
    for (; i < n; i++)
        best = logits[i] > best ? logits[i] : best;
    for (int j = 1; j < LANES; j++)
        best = m[j] > best ? m[j] : best;
    for (i = 0; i < n; i++)
        if (logits[i] == best)
            return (int32_t)i;
    return 0;
}

#endif

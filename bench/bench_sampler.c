/*
 * bench_sampler: microseconds per sampled token over a Qwen-sized
 * vocabulary (151936 logits), for the default chain and for the paths that
 * work on the whole vocabulary (top_k off). The logits look like a real
 * model's: a normal bulk (sigma 2.5) with a few dozen tokens well above it,
 * a new row every sample so no branch or cache learns one row.
 *
 * Median and best of the samples. Usage: bench_sampler [samples per setting (default 300)]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memfit/memfit.h"

#define N_VOCAB 151936
#define N_ROWS  8

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static double rnd_uniform(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return ((double)(rng_state >> 11) + 0.5) * 0x1.0p-53;
}

static float rnd_normal(void)
{
    return (float)(sqrt(-2.0 * log(rnd_uniform())) * cos(6.283185307179586 * rnd_uniform()));
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

struct setting {
    const char *name;
    float temperature;
    uint32_t top_k;
    float top_p, min_p, repeat_penalty;
};

int main(int argc, char **argv)
{
    int n_samples = argc > 1 ? (int)strtol(argv[1], NULL, 10) : 300;
    if (n_samples < 1)
        n_samples = 1;
    float *rows = memfit_malloc((size_t)N_ROWS * N_VOCAB * sizeof(float));
    float *logits = memfit_malloc(N_VOCAB * sizeof(float));
    if (!rows || !logits)
        return 1;
    for (size_t r = 0; r < N_ROWS; r++) {
        float *row = rows + r * N_VOCAB;
        for (size_t i = 0; i < N_VOCAB; i++)
            row[i] = 2.5f * rnd_normal();
        for (int j = 0; j < 40; j++) /* the plausible continuations */
            row[(size_t)(rnd_uniform() * N_VOCAB)] = 12.0f + 3.0f * rnd_normal();
    }
    int32_t history[64];
    for (int i = 0; i < 64; i++)
        history[i] = (int32_t)(rnd_uniform() * N_VOCAB);

    const struct setting settings[] = {
        {"default (T 0.8, top_k 40, top_p 0.95, min_p 0.05)", 0.8f, 40, 0.95f, 0.05f, 1.0f},
        {"default + repeat_penalty 1.1 over 64", 0.8f, 40, 0.95f, 0.05f, 1.1f},
        {"top_k 0 (top_p 0.95, min_p 0.05)", 0.8f, 0, 0.95f, 0.05f, 1.0f},
        {"top_k 0, min_p 0 (top_p 0.95 alone)", 0.8f, 0, 0.95f, 0.0f, 1.0f},
        {"top_k 0, top_p 1, min_p 0 (full softmax)", 0.8f, 0, 1.0f, 0.0f, 1.0f},
        {"greedy (T 0)", 0.0f, 40, 0.95f, 0.05f, 1.0f},
    };
    printf("bench_sampler: n_vocab %d, %d samples per setting\n", N_VOCAB, n_samples);
    for (size_t s = 0; s < sizeof(settings) / sizeof(settings[0]); s++) {
        struct memfit_sampling p;
        memfit_sampling_default(&p);
        p.temperature = settings[s].temperature;
        p.top_k = settings[s].top_k;
        p.top_p = settings[s].top_p;
        p.min_p = settings[s].min_p;
        p.repeat_penalty = settings[s].repeat_penalty;
        memfit_token_sampler *smp = NULL;
        if (memfit_token_sampler_create(&p, N_VOCAB, &smp) != MEMFIT_OK) {
            fprintf(stderr, "bench_sampler: %s\n", memfit_last_error());
            return 1;
        }
        uint64_t *ns = memfit_malloc((size_t)n_samples * sizeof(uint64_t));
        if (!ns)
            return 1;
        int64_t sum = 0;
        for (int i = 0; i < n_samples; i++) {
            /* A fresh copy each time (the penalty writes to it), outside the timing. */
            memcpy(logits, rows + (size_t)(i % N_ROWS) * N_VOCAB, N_VOCAB * sizeof(float));
            int32_t tok = 0;
            uint64_t t0 = memfit_now_ns();
            if (memfit_token_sampler_sample(smp, logits, history, 64, &tok) != MEMFIT_OK)
                return 1;
            ns[i] = memfit_now_ns() - t0;
            sum += tok;
        }
        qsort(ns, (size_t)n_samples, sizeof(uint64_t), cmp_u64);
        printf("  %-52s %8.1f us/sample median, %8.1f best (checksum %lld)\n", settings[s].name,
               (double)ns[n_samples / 2] / 1e3, (double)ns[0] / 1e3, (long long)sum);
        memfit_free(ns);
        memfit_token_sampler_free(smp);
    }
    memfit_free(rows);
    memfit_free(logits);
    return 0;
}

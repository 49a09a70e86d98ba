/*
 * Benchmark of the manager's hot path: acquire + release of a model that is
 * already loaded (what every request pays), on one thread and on two threads
 * sharing the model. Prints nanoseconds per pair.
 * Usage: bench_manager [PAIRS_PER_THREAD]  (default 2000000)
 */
#include <pthread.h>
#include <stdio.h>

#include "memfit/memfit.h"

static char weights[64];

static enum memfit_status plan(void *config, const char *identity, struct memfit_budget_cost *out)
{
    (void)config;
    (void)identity;
    *out = (struct memfit_budget_cost){{1 << 20, 0, 0, 0}};
    return MEMFIT_OK;
}

static enum memfit_status load(void *config, const char *identity,
                               const struct memfit_budget_cost *reserved, void **out)
{
    (void)config;
    (void)identity;
    (void)reserved;
    *out = weights;
    return MEMFIT_OK;
}

static void unload(void *config, void *model)
{
    (void)config;
    (void)model;
}

static const struct memfit_model_driver driver = {
    .family = "bench", .plan = plan, .load = load, .unload = unload};

struct run {
    memfit_manager *mgr;
    long pairs;
    long failures;
};

static void *pairs_main(void *arg)
{
    struct run *r = arg;
    for (long i = 0; i < r->pairs; i++) {
        memfit_handle *h;
        if (memfit_manager_acquire(r->mgr, "model", 1000, &h) != MEMFIT_OK) {
            r->failures++;
            continue;
        }
        if (memfit_handle_model(h) != weights)
            r->failures++;
        memfit_manager_release(h);
    }
    return NULL;
}

static double measure(memfit_manager *mgr, int threads, long pairs, long *failures)
{
    pthread_t t[2];
    struct run runs[2];
    uint64_t t0 = memfit_now_ns();
    for (int i = 0; i < threads; i++) {
        runs[i] = (struct run){mgr, pairs, 0};
        pthread_create(&t[i], NULL, pairs_main, &runs[i]);
    }
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        *failures += runs[i].failures;
    }
    uint64_t elapsed = memfit_now_ns() - t0;
    return (double)elapsed / (double)(pairs * threads);
}

int main(int argc, char **argv)
{
    long long pairs_arg = 2000000;
    if (argc > 1 && memfit_parse_int(argv[1], 1, 1000000000, &pairs_arg) != MEMFIT_OK) {
        fprintf(stderr, "bench_manager: %s\n", memfit_last_error());
        return 2;
    }
    long pairs = (long)pairs_arg;
    struct memfit_manager_options o;
    memfit_manager_options_default(&o);
    o.budget_bytes = 64 << 20;
    o.reaper_thread = false;
    memfit_manager *mgr;
    if (memfit_manager_create(&o, &mgr) != MEMFIT_OK) {
        fprintf(stderr, "bench_manager: %s\n", memfit_last_error());
        return 1;
    }
    struct memfit_model_options mo;
    memfit_model_options_default(&mo);
    mo.name = "model";
    mo.driver = &driver;
    mo.keep_alive_s = MEMFIT_KEEP_ALIVE_NEVER_UNLOAD;
    /* A few other models, so the lookup is not trivially the first entry. */
    static const char *const others[] = {"dino-s", "dino-b", "sam", "qwen"};
    for (int i = 0; i < 4; i++) {
        struct memfit_model_options other = mo;
        other.name = others[i];
        memfit_manager_register(mgr, &other);
    }
    if (memfit_manager_register(mgr, &mo) != MEMFIT_OK ||
        memfit_manager_load(mgr, "model", 0) != MEMFIT_OK) {
        fprintf(stderr, "bench_manager: %s\n", memfit_last_error());
        return 1;
    }
    long failures = 0;
    measure(mgr, 1, pairs / 10, &failures); /* warm up */
    double one = measure(mgr, 1, pairs, &failures);
    double two = measure(mgr, 2, pairs, &failures);
    printf("acquire+release of a loaded model (5 registered):\n");
    printf("  1 thread : %.1f ns per pair (%ld pairs)\n", one, pairs);
    printf("  2 threads: %.1f ns per pair (%ld pairs each, wall time / all pairs)\n", two, pairs);
    memfit_manager_destroy(mgr);
    if (failures) {
        fprintf(stderr, "bench_manager: %ld failed acquires\n", failures);
        return 1;
    }
    return 0;
}

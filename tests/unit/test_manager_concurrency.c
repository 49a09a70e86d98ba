/* Concurrency test of the manager: threads acquire and release at random
 * over fake models whose total exceeds the budget, some holding a handle
 * while reserving a workspace the way a driver would, with random
 * keep_alive, concurrency limits, timeouts and explicit unloads. Checks that
 * reservations never exceed the budget (the budget's peak and the most bytes
 * the fake models ever had loaded at once), that every acquire succeeds or
 * fails with E_BUDGET, E_TIMEOUT or E_BUSY, and that at the end everything
 * is released and unloadable. Run under the tsan preset too. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdlib.h>

#include "test_util.h"
#include "unit/manager_fake.h"

#define N_MODELS  5
#define N_THREADS 6
#define N_OPS     4000
#define BUDGET    (100 * MIB)

static const char *const names[N_MODELS] = {"m0", "m1", "m2", "m3", "m4"};

struct shared {
    memfit_manager *mgr;
    struct fake_world world;
    struct fake_model models[N_MODELS];
    _Atomic int ok, budget, timeout, busy, unexpected, workspace_ok;
    _Atomic int in_model[N_MODELS]; /* handles out, as the threads count them */
    _Atomic int over_concurrency;
};

static void *worker(void *arg)
{
    struct shared *s = arg;
    unsigned seed = (unsigned)(uintptr_t)&seed;
    for (int i = 0; i < N_OPS; i++) {
        int k = rand_r(&seed) % N_MODELS;
        int action = rand_r(&seed) % 20;
        if (action == 0) {
            memfit_manager_unload(s->mgr, names[k]); /* E_BUSY when in use: fine */
            continue;
        }
        if (action == 1) {
            memfit_manager_unload_idle(s->mgr);
            continue;
        }
        memfit_handle *h;
        enum memfit_status st = memfit_manager_acquire(s->mgr, names[k], rand_r(&seed) % 5, &h);
        if (st != MEMFIT_OK) {
            if (st == MEMFIT_E_BUDGET)
                atomic_fetch_add(&s->budget, 1);
            else if (st == MEMFIT_E_TIMEOUT)
                atomic_fetch_add(&s->timeout, 1);
            else if (st == MEMFIT_E_BUSY)
                atomic_fetch_add(&s->busy, 1);
            else
                atomic_fetch_add(&s->unexpected, 1);
            continue;
        }
        atomic_fetch_add(&s->ok, 1);
        if (memfit_handle_model(h) == NULL)
            atomic_fetch_add(&s->unexpected, 1);
        int out = atomic_fetch_add(&s->in_model[k], 1) + 1;
        if (k == 0 && out > 2) /* m0 has max_concurrency 2 */
            atomic_fetch_add(&s->over_concurrency, 1);
        if (action < 6) {
            /* A run that needs a workspace, reserved as a driver would. */
            memfit_reservation *r;
            if (memfit_budget_reserve(memfit_manager_budget(s->mgr), MEMFIT_BUDGET_WORKSPACE,
                                      (uint64_t)(1 + rand_r(&seed) % 8) * MIB, names[k], 1,
                                      &r) == MEMFIT_OK) {
                atomic_fetch_add(&s->workspace_ok, 1);
                memfit_budget_release(r);
            }
        }
        atomic_fetch_sub(&s->in_model[k], 1);
        memfit_manager_release(h);
    }
    return NULL;
}

static void test_random_acquire_release(void **state)
{
    (void)state;
    static struct shared s; /* large-ish, and threads share it */
    memset(&s, 0, sizeof(s));
    struct memfit_manager_options o;
    memfit_manager_options_default(&o);
    o.budget_bytes = BUDGET;
    o.reaper_interval_ms = 1; /* the reaper runs alongside, on the real clock */
    o.max_queue = 4;
    memfit_manager *mgr;
    assert_int_equal(memfit_manager_create(&o, &mgr), MEMFIT_OK);
    s.mgr = mgr;
    /* 40 + 35 + 30 + 25 + 20 = 150 MiB of models for a 100 MiB budget. */
    static const int64_t keep_alive[N_MODELS] = {-1, 0, 1, -1, 0};
    for (int k = 0; k < N_MODELS; k++) {
        s.models[k].world = &s.world;
        s.models[k].weights_bytes = (uint64_t)(40 - 5 * k) * MIB;
        s.models[k].workspace_bytes = (uint64_t)k * 1024;
        struct memfit_model_options mo;
        memfit_model_options_default(&mo);
        mo.name = names[k];
        mo.driver = k % 2 ? &fake_fetching_driver : &fake_driver;
        mo.config = &s.models[k];
        mo.keep_alive_s = keep_alive[k];
        mo.max_concurrency = k == 0 ? 2 : 0;
        assert_int_equal(memfit_manager_register(mgr, &mo), MEMFIT_OK);
    }
    pthread_t t[N_THREADS];
    for (int i = 0; i < N_THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, worker, &s), 0);
    for (int i = 0; i < N_THREADS; i++)
        pthread_join(t[i], NULL);

    struct memfit_manager_status *st;
    assert_int_equal(memfit_manager_snapshot(mgr, &st), MEMFIT_OK);
    printf("%d acquired, %d E_BUDGET, %d E_TIMEOUT, %d E_BUSY, %d workspaces; peak %llu MiB of "
           "%llu, fake models peak %llu MiB\n",
           atomic_load(&s.ok), atomic_load(&s.budget), atomic_load(&s.timeout),
           atomic_load(&s.busy), atomic_load(&s.workspace_ok),
           (unsigned long long)(st->budget.peak_reserved_bytes / MIB),
           (unsigned long long)(BUDGET / MIB),
           (unsigned long long)(atomic_load(&s.world.max_loaded_bytes) / MIB));
    assert_int_equal(atomic_load(&s.unexpected), 0);
    assert_int_equal(atomic_load(&s.over_concurrency), 0);
    assert_true(atomic_load(&s.ok) > 0);
    assert_true(st->budget.peak_reserved_bytes <= BUDGET);
    assert_true(atomic_load(&s.world.max_loaded_bytes) <= BUDGET);
    assert_int_equal(st->queue_depth, 0);
    for (size_t i = 0; i < st->n_models; i++) {
        assert_int_equal(st->models[i].in_use, 0);
        assert_int_equal(st->models[i].waiting, 0);
        assert_true(st->models[i].state == MEMFIT_MODEL_READY ||
                    st->models[i].state == MEMFIT_MODEL_UNLOADED);
    }
    memfit_free(st);
    for (int k = 0; k < N_MODELS; k++)
        assert_int_equal(atomic_load(&s.models[k].max_loaded), 1); /* never two copies */

    memfit_manager_unload_idle(mgr);
    struct memfit_budget_usage u;
    memfit_budget_get_usage(memfit_manager_budget(mgr), &u);
    assert_int_equal(u.reserved_bytes, 0);
    assert_int_equal(atomic_load(&s.world.loaded_bytes), 0);
    for (int k = 0; k < N_MODELS; k++) {
        assert_int_equal(atomic_load(&s.models[k].loaded), 0);
        assert_int_equal(atomic_load(&s.models[k].n_load), atomic_load(&s.models[k].n_unload));
    }
    memfit_manager_destroy(mgr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_acquire_release),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests of the memory budget (src/manager/budget.c): reservations by
 * category and owner, the refusal message, waiting and eviction, size
 * resolution, allocation failures, and the never-above-the-size rule under
 * concurrent reservations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>

#include "test_util.h"
#include "unit/manager_fake.h"
#include "manager/budget.h"

static void test_reserve_release_and_queries(void **state)
{
    (void)state;
    memfit_budget *b;
    assert_int_equal(memfit_budget_create(512 * MIB, &b), MEMFIT_OK);
    memfit_reservation *r1, *r2, *r3;
    assert_int_equal(memfit_budget_reserve(b, MEMFIT_BUDGET_WEIGHTS, 250 * MIB, "sam", 0, &r1),
                     MEMFIT_OK);
    assert_int_equal(memfit_budget_reserve(b, MEMFIT_BUDGET_WEIGHTS, 142 * MIB, "dino-s", 0, &r2),
                     MEMFIT_OK);
    assert_int_equal(memfit_budget_reserve(b, MEMFIT_BUDGET_WORKSPACE, 10 * MIB, "sam", 0, &r3),
                     MEMFIT_OK);
    struct memfit_budget_usage u;
    memfit_budget_get_usage(b, &u);
    assert_int_equal(u.size_bytes, 512 * MIB);
    assert_int_equal(u.reserved_bytes, 402 * MIB);
    assert_int_equal(u.free_bytes, 110 * MIB);
    assert_int_equal(u.by_category[MEMFIT_BUDGET_WEIGHTS], 392 * MIB);
    assert_int_equal(u.by_category[MEMFIT_BUDGET_WORKSPACE], 10 * MIB);
    assert_int_equal(u.n_reservations, 3);

    struct memfit_budget_owner *owners;
    size_t n;
    assert_int_equal(memfit_budget_get_owners(b, &owners, &n), MEMFIT_OK);
    assert_int_equal(n, 2);
    assert_string_equal(owners[0].owner, "sam");
    assert_int_equal(owners[0].total_bytes, 260 * MIB);
    assert_int_equal(owners[0].bytes[MEMFIT_BUDGET_WORKSPACE], 10 * MIB);
    assert_string_equal(owners[1].owner, "dino-s");
    memfit_free(owners);

    memfit_budget_release(r3);
    memfit_budget_release(r2);
    memfit_budget_release(r1);
    memfit_budget_release(NULL);
    memfit_budget_get_usage(b, &u);
    assert_int_equal(u.reserved_bytes, 0);
    assert_int_equal(u.peak_reserved_bytes, 402 * MIB);
    assert_int_equal(memfit_budget_get_owners(b, &owners, &n), MEMFIT_OK);
    assert_null(owners);
    assert_int_equal(n, 0);
    memfit_budget_destroy(b);
    memfit_budget_destroy(NULL);
}

static void test_refusal_message(void **state)
{
    (void)state;
    memfit_budget *b;
    assert_int_equal(memfit_budget_create(512 * MIB, &b), MEMFIT_OK);
    memfit_reservation *r1, *r2, *r3 = NULL;
    assert_int_equal(memfit_budget_reserve(b, MEMFIT_BUDGET_WEIGHTS, 250 * MIB, "sam", 0, &r1),
                     MEMFIT_OK);
    assert_int_equal(memfit_budget_reserve(b, MEMFIT_BUDGET_WEIGHTS, 142 * MIB, "dino-s", 0, &r2),
                     MEMFIT_OK);
    assert_int_equal(memfit_budget_reserve(b, MEMFIT_BUDGET_WORKSPACE, 300 * MIB, "dino-b", 0, &r3),
                     MEMFIT_E_BUDGET);
    assert_null(r3);
    assert_string_equal(memfit_last_error(),
                        "asked 300.0 MiB for dino-b workspace; 120.0 MiB free of 512.0 MiB; "
                        "in use: sam 250.0 MiB (weights), dino-s 142.0 MiB (weights)");

    /* Several categories at once, and an owner holding several. */
    memfit_reservation *r4;
    assert_int_equal(memfit_budget_reserve(b, MEMFIT_BUDGET_KV_CACHE, 20 * MIB, "sam", 0, &r4),
                     MEMFIT_OK);
    struct memfit_budget_cost cost = {{0}};
    cost.bytes[MEMFIT_BUDGET_WEIGHTS] = 100 * MIB;
    cost.bytes[MEMFIT_BUDGET_KV_CACHE] = 512 * 1024;
    assert_int_equal(memfit_budget_reserve_cost(b, &cost, "qwen", 0, &r3), MEMFIT_E_BUDGET);
    assert_string_equal(memfit_last_error(),
                        "asked 100.5 MiB for qwen (weights 100.0 MiB, KV cache 512.0 KiB); "
                        "100.0 MiB free of 512.0 MiB; in use: sam 270.0 MiB (weights 250.0 MiB, "
                        "KV cache 20.0 MiB), dino-s 142.0 MiB (weights)");

    /* More than the whole budget fails at once, whatever the timeout: no
     * release can ever make room for it. */
    assert_int_equal(memfit_budget_reserve(b, MEMFIT_BUDGET_WEIGHTS, 600 * MIB, "big", -1, &r3),
                     MEMFIT_E_TOO_LARGE);
    assert_non_null(strstr(memfit_last_error(), "(more than the whole budget)"));
    /* The same question asked before any reservation (the manager's, before a fetch). */
    cost.bytes[MEMFIT_BUDGET_WEIGHTS] = 900 * MIB;
    cost.bytes[MEMFIT_BUDGET_KV_CACHE] = 0;
    cost.bytes[MEMFIT_BUDGET_WORKSPACE] = 300 * MIB;
    assert_int_equal(mf_budget_check_whole(b, &cost, "model sam"), MEMFIT_E_TOO_LARGE);
    assert_string_equal(memfit_last_error(),
                        "model sam needs 1.2 GiB (weights 900.0 MiB, workspace 300.0 MiB) but the "
                        "whole budget is 512.0 MiB: it can never load; raise the budget or use a "
                        "smaller quantization");
    cost.bytes[MEMFIT_BUDGET_WEIGHTS] = 200 * MIB; /* fits once others are released */
    assert_int_equal(mf_budget_check_whole(b, &cost, "model sam"), MEMFIT_OK);
    struct memfit_budget_usage u;
    memfit_budget_get_usage(b, &u);
    assert_int_equal(u.n_refused, 4);
    memfit_budget_release(r4);
    memfit_budget_release(r2);
    memfit_budget_release(r1);

    memfit_budget_set_size(b, 1000);
    assert_int_equal(memfit_budget_reserve(b, MEMFIT_BUDGET_WEIGHTS, 2000, "x", 0, &r3),
                     MEMFIT_E_TOO_LARGE);
    assert_string_equal(memfit_last_error(), "asked 2.0 KiB for x weights; 1000 B free of 1000 B "
                                             "(more than the whole budget); in use: nothing");
    memfit_budget_destroy(b);
}

struct releaser {
    memfit_reservation *r;
    int delay_ms;
};

static void *release_later(void *arg)
{
    struct releaser *rl = arg;
    fake_sleep_ms(rl->delay_ms);
    memfit_budget_release(rl->r);
    return NULL;
}

static void test_wait_for_release_and_timeout(void **state)
{
    (void)state;
    memfit_budget *b;
    assert_int_equal(memfit_budget_create(100, &b), MEMFIT_OK);
    memfit_reservation *r1, *r2;
    assert_int_equal(memfit_budget_reserve(b, MEMFIT_BUDGET_WORKSPACE, 80, "a", 0, &r1), MEMFIT_OK);
    /* Not waiting: E_BUDGET, with the figures and no wait. */
    assert_int_equal(memfit_budget_reserve(b, MEMFIT_BUDGET_WORKSPACE, 50, "b", 0, &r2),
                     MEMFIT_E_BUDGET);
    assert_string_equal(
        memfit_last_error(),
        "asked 50 B for b workspace; 20 B free of 100 B; in use: a 80 B (workspace)");
    /* Waited and nothing was released: E_TIMEOUT, with the same figures. */
    assert_int_equal(memfit_budget_reserve(b, MEMFIT_BUDGET_WORKSPACE, 50, "b", 20, &r2),
                     MEMFIT_E_TIMEOUT);
    assert_non_null(strstr(memfit_last_error(), "asked 50 B for b workspace; 20 B free of 100 B; "
                                                "in use: a 80 B (workspace); waited "));
    /* Woken by a release from another thread. */
    struct releaser rl = {r1, 20};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, release_later, &rl), 0);
    assert_int_equal(memfit_budget_reserve(b, MEMFIT_BUDGET_WORKSPACE, 50, "b", 10000, &r2),
                     MEMFIT_OK);
    pthread_join(t, NULL);
    memfit_budget_release(r2);
    memfit_budget_destroy(b);
}

struct evictor_state {
    memfit_reservation *victim;
    uint64_t last_needed;
    char last_requester[32];
    int calls;
};

static uint64_t test_evictor(void *user, uint64_t needed, const char *requester)
{
    struct evictor_state *e = user;
    e->calls++;
    e->last_needed = needed;
    snprintf(e->last_requester, sizeof(e->last_requester), "%s", requester);
    if (!e->victim)
        return 0;
    uint64_t bytes = memfit_reservation_bytes(e->victim);
    memfit_budget_release(e->victim);
    e->victim = NULL;
    return bytes;
}

static void test_evictor_called_before_waiting(void **state)
{
    (void)state;
    memfit_budget *b;
    assert_int_equal(memfit_budget_create(100, &b), MEMFIT_OK);
    struct evictor_state e = {0};
    memfit_budget_set_evictor(b, test_evictor, &e);
    memfit_reservation *r1, *r2;
    assert_int_equal(memfit_budget_reserve(b, MEMFIT_BUDGET_WEIGHTS, 70, "old", 0, &r1), MEMFIT_OK);
    e.victim = r1;
    assert_int_equal(memfit_budget_reserve(b, MEMFIT_BUDGET_WEIGHTS, 60, "new", 0, &r2), MEMFIT_OK);
    assert_int_equal(e.calls, 1);
    assert_int_equal(e.last_needed, 30);
    assert_string_equal(e.last_requester, "new");
    /* Nothing left to evict: one more call, then the refusal. */
    memfit_reservation *r3;
    assert_int_equal(memfit_budget_reserve(b, MEMFIT_BUDGET_WEIGHTS, 60, "third", 0, &r3),
                     MEMFIT_E_BUDGET);
    assert_int_equal(e.calls, 2);
    memfit_budget_release(r2);
    memfit_budget_destroy(b);
}

struct reserve_ctx {
    memfit_budget *b;
    memfit_reservation *r;
};

static enum memfit_status reserve_op(void *arg)
{
    struct reserve_ctx *c = arg;
    return memfit_budget_reserve(c->b, MEMFIT_BUDGET_WEIGHTS, 10, "model", 0, &c->r);
}

static void reserve_cleanup(void *arg)
{
    struct reserve_ctx *c = arg;
    memfit_budget_release(c->r);
}

static enum memfit_status owners_op(void *arg)
{
    struct reserve_ctx *c = arg;
    struct memfit_budget_owner *o;
    size_t n;
    enum memfit_status st = memfit_budget_get_owners(c->b, &o, &n);
    if (st == MEMFIT_OK)
        memfit_free(o);
    return st;
}

static void test_alloc_failures(void **state)
{
    (void)state;
    struct reserve_ctx c;
    assert_int_equal(memfit_budget_create(100, &c.b), MEMFIT_OK);
    assert_true(mf_test_alloc_failures(reserve_op, reserve_cleanup, &c) > 1);
    memfit_reservation *held;
    assert_int_equal(memfit_budget_reserve(c.b, MEMFIT_BUDGET_WEIGHTS, 5, "other", 0, &held),
                     MEMFIT_OK);
    assert_true(mf_test_alloc_failures(owners_op, NULL, &c) > 1);
    memfit_budget_release(held);
    struct memfit_budget_usage u;
    memfit_budget_get_usage(c.b, &u);
    assert_int_equal(u.reserved_bytes, 0);
    memfit_budget_destroy(c.b);
}

/* ---- Concurrency: never above the size ---- */

#define N_THREADS 6
#define N_OPS     3000

struct stress {
    memfit_budget *b;
    _Atomic uint64_t held; /* what the threads believe they hold */
    _Atomic uint64_t max_held;
    _Atomic int ok, refused, unexpected;
};

static void *stress_main(void *arg)
{
    struct stress *s = arg;
    unsigned seed = (unsigned)(uintptr_t)&seed;
    memfit_reservation *mine[4] = {0};
    for (int i = 0; i < N_OPS; i++) {
        int slot = rand_r(&seed) % 4;
        if (mine[slot]) {
            atomic_fetch_sub(&s->held, memfit_reservation_bytes(mine[slot]));
            memfit_budget_release(mine[slot]);
            mine[slot] = NULL;
            continue;
        }
        uint64_t bytes = 1 + (uint64_t)(rand_r(&seed) % 300);
        enum memfit_status st =
            memfit_budget_reserve(s->b, (enum memfit_budget_category)(rand_r(&seed) % 4), bytes,
                                  "stress", rand_r(&seed) % 3, &mine[slot]);
        if (st == MEMFIT_OK) {
            uint64_t now = atomic_fetch_add(&s->held, bytes) + bytes;
            uint64_t max = atomic_load(&s->max_held);
            while (now > max && !atomic_compare_exchange_weak(&s->max_held, &max, now)) {
            }
            atomic_fetch_add(&s->ok, 1);
        } else if (st == MEMFIT_E_BUDGET || st == MEMFIT_E_TIMEOUT) {
            atomic_fetch_add(&s->refused, 1);
        } else {
            atomic_fetch_add(&s->unexpected, 1); /* cmocka asserts only on the main thread */
        }
    }
    for (int slot = 0; slot < 4; slot++) {
        if (mine[slot])
            atomic_fetch_sub(&s->held, memfit_reservation_bytes(mine[slot]));
        memfit_budget_release(mine[slot]);
    }
    return NULL;
}

static void test_concurrent_never_above_size(void **state)
{
    (void)state;
    struct stress s = {0};
    assert_int_equal(memfit_budget_create(1000, &s.b), MEMFIT_OK);
    pthread_t t[N_THREADS];
    for (int i = 0; i < N_THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, stress_main, &s), 0);
    for (int i = 0; i < N_THREADS; i++)
        pthread_join(t[i], NULL);
    struct memfit_budget_usage u;
    memfit_budget_get_usage(s.b, &u);
    assert_true(u.peak_reserved_bytes <= 1000);
    assert_true(atomic_load(&s.max_held) <= 1000);
    assert_int_equal(u.reserved_bytes, 0);
    assert_int_equal(u.n_reservations, 0);
    assert_true(atomic_load(&s.ok) > 0);
    assert_int_equal(atomic_load(&s.unexpected), 0);
    printf("budget stress: %d reserved, %d refused, peak %llu of 1000\n", atomic_load(&s.ok),
           atomic_load(&s.refused), (unsigned long long)u.peak_reserved_bytes);
    memfit_budget_destroy(s.b);
}

static void test_format_bytes(void **state)
{
    (void)state;
    char buf[32];
    assert_string_equal(mf_format_bytes(37, buf, sizeof(buf)), "37 B");
    assert_string_equal(mf_format_bytes(1536, buf, sizeof(buf)), "1.5 KiB");
    assert_string_equal(mf_format_bytes(250 * MIB, buf, sizeof(buf)), "250.0 MiB");
    assert_string_equal(mf_format_bytes(3 * 1024 * MIB / 2, buf, sizeof(buf)), "1.5 GiB");
    assert_string_equal(memfit_budget_category_name(MEMFIT_BUDGET_KV_CACHE), "KV cache");
    assert_string_equal(memfit_budget_category_name((enum memfit_budget_category)9), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reserve_release_and_queries),
        cmocka_unit_test(test_refusal_message),
        cmocka_unit_test(test_wait_for_release_and_timeout),
        cmocka_unit_test(test_evictor_called_before_waiting),
        cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_concurrent_never_above_size),
        cmocka_unit_test(test_format_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

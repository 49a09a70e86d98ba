/* Unit tests of memfit_manager_unregister (what a manifest reload uses to drop
 * a model): an idle loaded model is unloaded at once, a busy one when its
 * last handle is released, lookups and waiting acquires see E_NOT_FOUND, the
 * name can be registered again at once, snapshots no longer list it, the
 * record is freed (on_released) once nothing refers to it — at once when
 * idle, at the last release when busy, after a load that was in flight —
 * so 2000 register/load/unregister cycles leave the heap where it was, and a
 * thread race of unregister against acquire/release stays consistent (run
 * under the tsan preset too). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>

#include "core/alloc.h"
#include "test_util.h"
#include "unit/manager_fake.h"

static _Atomic int n_removed_events;
static _Atomic int n_released;
static void *_Atomic last_released;

static void on_released(const char *name, void *config, void *user)
{
    (void)user;
    assert_non_null(name);
    atomic_store(&last_released, config);
    atomic_fetch_add(&n_released, 1);
}

static void on_event(const struct memfit_manager_event *e, void *user)
{
    (void)user;
    if (e->kind == MEMFIT_EVENT_UNLOAD && strcmp(e->reason, "removed") == 0)
        atomic_fetch_add(&n_removed_events, 1);
}

static memfit_manager *make_manager(void)
{
    struct memfit_manager_options o;
    memfit_manager_options_default(&o);
    o.budget_bytes = 100 * MIB;
    o.reaper_thread = false;
    o.on_event = on_event;
    o.on_released = on_released;
    memfit_manager *mgr;
    assert_int_equal(memfit_manager_create(&o, &mgr), MEMFIT_OK);
    atomic_store(&n_removed_events, 0);
    atomic_store(&n_released, 0);
    atomic_store(&last_released, NULL);
    return mgr;
}

static void add(memfit_manager *mgr, const char *name, struct fake_model *f, unsigned max_conc)
{
    struct memfit_model_options o;
    memfit_model_options_default(&o);
    o.name = name;
    o.driver = &fake_driver;
    o.config = f;
    o.max_concurrency = max_conc;
    assert_int_equal(memfit_manager_register(mgr, &o), MEMFIT_OK);
}

static size_t n_listed(memfit_manager *mgr)
{
    struct memfit_manager_status *s;
    assert_int_equal(memfit_manager_snapshot(mgr, &s), MEMFIT_OK);
    size_t n = s->n_models;
    memfit_free(s);
    return n;
}

static void test_idle_unloaded_at_once(void **state)
{
    (void)state;
    memfit_manager *mgr = make_manager();
    struct fake_model a = {.weights_bytes = 10 * MIB}, b = {.weights_bytes = 5 * MIB};
    add(mgr, "a", &a, 0);
    add(mgr, "b", &b, 0);
    assert_int_equal(memfit_manager_load(mgr, "a", 1000), MEMFIT_OK);
    assert_int_equal(n_listed(mgr), 2);
    assert_int_equal(memfit_manager_unregister(mgr, "a"), MEMFIT_OK);
    assert_int_equal(atomic_load(&a.n_unload), 1);
    assert_int_equal(atomic_load(&n_removed_events), 1);
    assert_int_equal(n_listed(mgr), 1);
    struct memfit_budget_usage u;
    memfit_budget_get_usage(memfit_manager_budget(mgr), &u);
    assert_int_equal(u.reserved_bytes, 0);

    memfit_handle *h;
    assert_int_equal(memfit_manager_acquire(mgr, "a", 0, &h), MEMFIT_E_NOT_FOUND);
    assert_int_equal(memfit_manager_unregister(mgr, "a"), MEMFIT_E_NOT_FOUND);
    assert_int_equal(memfit_manager_unload(mgr, "a"), MEMFIT_E_NOT_FOUND);
    /* The name is free again; the new entry is a different model. */
    struct fake_model a2 = {.weights_bytes = 1 * MIB};
    add(mgr, "a", &a2, 0);
    assert_int_equal(memfit_manager_acquire(mgr, "a", 1000, &h), MEMFIT_OK);
    assert_int_equal(atomic_load(&a2.n_load), 1);
    assert_int_equal(atomic_load(&a.n_load), 1);
    memfit_manager_release(h);
    /* An unloaded model goes without a driver call. */
    assert_int_equal(memfit_manager_unregister(mgr, "b"), MEMFIT_OK);
    assert_int_equal(atomic_load(&b.n_unload), 0);
    assert_int_equal(n_listed(mgr), 1);
    memfit_manager_destroy(mgr);
    assert_int_equal(atomic_load(&a2.loaded), 0);
}

static void test_busy_unloaded_on_release(void **state)
{
    (void)state;
    memfit_manager *mgr = make_manager();
    struct fake_model a = {.weights_bytes = 10 * MIB};
    add(mgr, "a", &a, 0);
    memfit_handle *h1, *h2;
    assert_int_equal(memfit_manager_acquire(mgr, "a", 1000, &h1), MEMFIT_OK);
    assert_int_equal(memfit_manager_acquire(mgr, "a", 1000, &h2), MEMFIT_OK);
    assert_int_equal(memfit_manager_unregister(mgr, "a"), MEMFIT_OK);
    assert_int_equal(atomic_load(&a.n_unload), 0);
    assert_non_null(memfit_handle_model(h1)); /* still usable by its holders */
    memfit_manager_release(h1);
    assert_int_equal(atomic_load(&a.n_unload), 0);
    memfit_manager_release(h2);
    assert_int_equal(atomic_load(&a.n_unload), 1);
    assert_int_equal(atomic_load(&a.loaded), 0);
    assert_int_equal(atomic_load(&n_removed_events), 1);
    memfit_manager_destroy(mgr);
}

struct waiter {
    memfit_manager *mgr;
    enum memfit_status st;
};

static void *wait_acquire(void *arg)
{
    struct waiter *w = arg;
    memfit_handle *h;
    w->st = memfit_manager_acquire(w->mgr, "a", 5000, &h);
    if (w->st == MEMFIT_OK)
        memfit_manager_release(h);
    return NULL;
}

static void test_waiter_sees_removal(void **state)
{
    (void)state;
    memfit_manager *mgr = make_manager();
    struct fake_model a = {.weights_bytes = 10 * MIB};
    add(mgr, "a", &a, 1);
    memfit_handle *h;
    assert_int_equal(memfit_manager_acquire(mgr, "a", 1000, &h), MEMFIT_OK);
    struct waiter w = {.mgr = mgr, .st = MEMFIT_OK};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, wait_acquire, &w), 0);
    for (int i = 0; i < 500; i++) { /* until the waiter is queued */
        struct memfit_manager_status *s;
        assert_int_equal(memfit_manager_snapshot(mgr, &s), MEMFIT_OK);
        unsigned depth = s->queue_depth;
        memfit_free(s);
        if (depth == 1)
            break;
        fake_sleep_ms(2);
    }
    assert_int_equal(memfit_manager_unregister(mgr, "a"), MEMFIT_OK);
    pthread_join(t, NULL);
    assert_int_equal(w.st, MEMFIT_E_NOT_FOUND);
    memfit_manager_release(h);
    assert_int_equal(atomic_load(&a.loaded), 0);
    struct memfit_manager_status *s;
    assert_int_equal(memfit_manager_snapshot(mgr, &s), MEMFIT_OK);
    assert_int_equal(s->queue_depth, 0);
    memfit_free(s);
    memfit_manager_destroy(mgr);
}

struct racer {
    memfit_manager *mgr;
    struct fake_model *models;
    _Atomic int unexpected;
};

static void *race_acquire(void *arg)
{
    struct racer *r = arg;
    for (int i = 0; i < 2000; i++) {
        memfit_handle *h;
        enum memfit_status st = memfit_manager_acquire(r->mgr, "m", 2, &h);
        if (st == MEMFIT_OK)
            memfit_manager_release(h);
        else if (st != MEMFIT_E_NOT_FOUND && st != MEMFIT_E_TIMEOUT && st != MEMFIT_E_BUSY)
            atomic_fetch_add(&r->unexpected, 1);
    }
    return NULL;
}

static void test_race(void **state)
{
    (void)state;
    memfit_manager *mgr = make_manager();
    struct fake_model models[40];
    memset(models, 0, sizeof(models));
    struct racer r = {.mgr = mgr, .models = models};
    models[0].weights_bytes = MIB;
    add(mgr, "m", &models[0], 0);
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&t[i], NULL, race_acquire, &r), 0);
    for (int k = 1; k < 40; k++) {
        fake_sleep_ms(1);
        memfit_manager_unregister(mgr, "m");
        models[k].weights_bytes = MIB;
        add(mgr, "m", &models[k], 0);
    }
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(atomic_load(&r.unexpected), 0);
    memfit_manager_destroy(mgr);
    for (int k = 0; k < 40; k++) {
        assert_int_equal(atomic_load(&models[k].loaded), 0);
        assert_true(atomic_load(&models[k].max_loaded) <= 1);
    }
}

/* The record goes when nothing refers to it: at once, at the last release,
 * or when a load in flight ends; never while a handle is out. */
static void test_record_released(void **state)
{
    (void)state;
    memfit_manager *mgr = make_manager();
    struct fake_model a = {.weights_bytes = MIB}, b = {.weights_bytes = MIB};
    add(mgr, "a", &a, 0);
    assert_int_equal(memfit_manager_load(mgr, "a", 1000), MEMFIT_OK);
    assert_int_equal(memfit_manager_unregister(mgr, "a"), MEMFIT_OK);
    assert_int_equal(atomic_load(&n_released), 1);
    assert_ptr_equal(atomic_load(&last_released), &a);

    add(mgr, "b", &b, 0);
    memfit_handle *h;
    assert_int_equal(memfit_manager_acquire(mgr, "b", 1000, &h), MEMFIT_OK);
    assert_int_equal(memfit_manager_unregister(mgr, "b"), MEMFIT_OK);
    assert_int_equal(atomic_load(&n_released), 1); /* the handle holds it */
    assert_string_equal(memfit_handle_name(h), "b");
    memfit_manager_release(h);
    assert_int_equal(atomic_load(&n_released), 2);
    assert_ptr_equal(atomic_load(&last_released), &b);
    assert_int_equal(atomic_load(&b.loaded), 0);
    memfit_manager_destroy(mgr);
    assert_int_equal(atomic_load(&n_released), 2); /* destroy does not call it */
}

struct loader {
    memfit_manager *mgr;
    enum memfit_status st;
};

static void *slow_load(void *arg)
{
    struct loader *l = arg;
    l->st = memfit_manager_load(l->mgr, "a", 5000);
    return NULL;
}

static void test_released_after_load_in_flight(void **state)
{
    (void)state;
    memfit_manager *mgr = make_manager();
    struct fake_model a = {.weights_bytes = MIB};
    atomic_store(&a.load_delay_ms, 100);
    add(mgr, "a", &a, 0);
    struct loader l = {.mgr = mgr};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, slow_load, &l), 0);
    while (atomic_load(&a.n_load) == 0)
        fake_sleep_ms(1);
    assert_int_equal(memfit_manager_unregister(mgr, "a"), MEMFIT_OK);
    assert_int_equal(atomic_load(&n_released), 0); /* loading: kept */
    pthread_join(t, NULL);
    assert_int_equal(l.st, MEMFIT_OK); /* the load itself ran to its end */
    assert_int_equal(atomic_load(&a.loaded), 0);
    assert_int_equal(atomic_load(&n_released), 1);
    memfit_manager_destroy(mgr);
}

/* ModelMesh's loop: register, load, unregister, 2000 times. The heap the
 * manager holds must not grow with the cycles. */
static void test_cycles_leave_nothing(void **state)
{
    (void)state;
    enum { CYCLES = 2000, WARM = 20 };
    memfit_manager *mgr = make_manager();
    struct fake_model f = {.weights_bytes = MIB};
    struct memfit_alloc_stats before, after;
    char name[64];
    for (int i = 0; i < CYCLES + WARM; i++) {
        if (i == WARM)
            memfit_alloc_get_stats(&before);
        snprintf(name, sizeof(name), "model-%d-%08x", i, (unsigned)i * 2654435761u);
        add(mgr, name, &f, 0);
        assert_int_equal(memfit_manager_load(mgr, name, 1000), MEMFIT_OK);
        if (i % 3 == 0) { /* a request in flight at the unregister */
            memfit_handle *h;
            assert_int_equal(memfit_manager_acquire(mgr, name, 1000, &h), MEMFIT_OK);
            assert_int_equal(memfit_manager_unregister(mgr, name), MEMFIT_OK);
            memfit_manager_release(h);
        } else {
            assert_int_equal(memfit_manager_unregister(mgr, name), MEMFIT_OK);
        }
    }
    memfit_alloc_get_stats(&after);
    print_message("manager: %d register/load/unregister cycles: %llu allocation(s), %llu "
                  "byte(s) live before, %llu, %llu after\n",
                  CYCLES, (unsigned long long)before.total_live_count,
                  (unsigned long long)before.total_live_bytes,
                  (unsigned long long)after.total_live_count,
                  (unsigned long long)after.total_live_bytes);
    assert_int_equal(atomic_load(&n_released), CYCLES + WARM);
    assert_int_equal(after.live_count[MEMFIT_ALLOC_MANAGER],
                     before.live_count[MEMFIT_ALLOC_MANAGER]);
    assert_int_equal(after.total_live_count, before.total_live_count);
    assert_int_equal(after.total_live_bytes, before.total_live_bytes);
    assert_int_equal(n_listed(mgr), 0);
    memfit_manager_destroy(mgr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idle_unloaded_at_once),
        cmocka_unit_test(test_busy_unloaded_on_release),
        cmocka_unit_test(test_waiter_sees_removal),
        cmocka_unit_test(test_race),
        cmocka_unit_test(test_record_released),
        cmocka_unit_test(test_released_after_load_in_flight),
        cmocka_unit_test(test_cycles_leave_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

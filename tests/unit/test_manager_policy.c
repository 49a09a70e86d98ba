/* Unit tests of the manager's policy with fake drivers and a fake clock:
 * lazy loading and handles, eviction order (LRU, pinned and in-use never
 * evicted, one victim that frees enough preferred), keep_alive 0/N/-1,
 * refusal messages, unloading disabled, identity mismatch, FAILED back-off
 * and retry, single-flight loads, max concurrency and the admission queue,
 * events, and the snapshot; the load order (plan, fetch, plan again, then
 * reserve): a failed fetch or plan evicts nothing, a model larger than the
 * whole budget is refused before any fetch; an acquire waits for a busy
 * model's release, or times out with the figures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>

#include "test_util.h"
#include "unit/manager_fake.h"

#define SEC 1000000000ull

struct event_log {
    pthread_mutex_t lock;
    int count[5];
    char last[5][256];
};

static struct event_log events = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void record_event(const struct memfit_manager_event *e, void *user)
{
    (void)user;
    pthread_mutex_lock(&events.lock);
    events.count[e->kind]++;
    snprintf(events.last[e->kind], sizeof(events.last[e->kind]), "%s %s %llu %s%s", e->model,
             e->reason, (unsigned long long)e->bytes, memfit_status_name(e->status),
             e->message[0] ? ":" : "");
    pthread_mutex_unlock(&events.lock);
}

static memfit_manager *make_manager(uint64_t budget, bool unloading)
{
    struct memfit_manager_options o;
    memfit_manager_options_default(&o);
    o.budget_bytes = budget;
    o.unloading_enabled = unloading;
    o.reaper_thread = false;
    o.clock = fake_clock;
    o.on_event = record_event;
    atomic_store(&fake_clock_ns, 1000 * SEC);
    pthread_mutex_lock(&events.lock);
    memset(events.count, 0, sizeof(events.count));
    pthread_mutex_unlock(&events.lock);
    memfit_manager *mgr;
    assert_int_equal(memfit_manager_create(&o, &mgr), MEMFIT_OK);
    return mgr;
}

static void add_model_driver(memfit_manager *mgr, const char *name,
                             const struct memfit_model_driver *driver, struct fake_model *f,
                             int64_t keep_alive_s, bool pin)
{
    struct memfit_model_options o;
    memfit_model_options_default(&o);
    o.name = name;
    o.driver = driver;
    o.config = f;
    o.keep_alive_s = keep_alive_s;
    o.pin = pin;
    assert_int_equal(memfit_manager_register(mgr, &o), MEMFIT_OK);
}

static void add_model(memfit_manager *mgr, const char *name, struct fake_model *f,
                      int64_t keep_alive_s, bool pin)
{
    add_model_driver(mgr, name, &fake_driver, f, keep_alive_s, pin);
}

static struct memfit_model_status model_status(memfit_manager *mgr, const char *name)
{
    struct memfit_manager_status *s;
    assert_int_equal(memfit_manager_snapshot(mgr, &s), MEMFIT_OK);
    struct memfit_model_status out = {0};
    for (size_t i = 0; i < s->n_models; i++)
        if (strcmp(s->models[i].name, name) == 0)
            out = s->models[i];
    out.name = out.family = out.identity = out.last_error = NULL; /* they live in s */
    memfit_free(s);
    return out;
}

static enum memfit_model_state state_of(memfit_manager *mgr, const char *name)
{
    return model_status(mgr, name).state;
}

/* Acquire and release at once, one fake second later than the last use. */
static enum memfit_status use(memfit_manager *mgr, const char *name)
{
    atomic_fetch_add(&fake_clock_ns, SEC);
    memfit_handle *h;
    enum memfit_status st = memfit_manager_acquire(mgr, name, 0, &h);
    if (st == MEMFIT_OK)
        memfit_manager_release(h);
    return st;
}

static void test_lazy_load_and_handles(void **state)
{
    (void)state;
    memfit_manager *mgr = make_manager(100 * MIB, true);
    struct fake_model f = {.weights_bytes = 40 * MIB, .workspace_bytes = 2 * MIB};
    add_model(mgr, "dino", &f, -1, false);
    struct memfit_model_options dup;
    memfit_model_options_default(&dup);
    dup.name = "dino";
    dup.driver = &fake_driver;
    assert_int_equal(memfit_manager_register(mgr, &dup), MEMFIT_E_EXISTS);
    dup.name = "nodriver";
    dup.driver = NULL;
    assert_int_equal(memfit_manager_register(mgr, &dup), MEMFIT_E_MISUSE);

    assert_int_equal(state_of(mgr, "dino"), MEMFIT_MODEL_UNLOADED);
    assert_int_equal(atomic_load(&f.n_load), 0); /* lazy: nothing at registration */
    memfit_handle *h1, *h2;
    assert_int_equal(memfit_manager_acquire(mgr, "dino", 0, &h1), MEMFIT_OK);
    assert_int_equal(memfit_manager_acquire(mgr, "dino", 0, &h2), MEMFIT_OK);
    assert_int_equal(atomic_load(&f.n_load), 1);
    assert_non_null(memfit_handle_model(h1));
    assert_ptr_equal(memfit_handle_model(h1), memfit_handle_model(h2));
    assert_string_equal(memfit_handle_name(h1), "dino");
    struct memfit_model_status s = model_status(mgr, "dino");
    assert_int_equal(s.state, MEMFIT_MODEL_BUSY);
    assert_int_equal(s.in_use, 2);
    assert_int_equal(s.total_bytes, 42 * MIB);
    assert_int_equal(s.bytes.bytes[MEMFIT_BUDGET_WORKSPACE], 2 * MIB);
    /* A model with handles out is never unloaded. */
    assert_int_equal(memfit_manager_unload(mgr, "dino"), MEMFIT_E_BUSY);
    assert_string_equal(memfit_last_error(), "model dino is in use (2 handle(s) out)");
    assert_int_equal(memfit_manager_unload_idle(mgr), 0);
    memfit_manager_release(h1);
    memfit_manager_release(h2);
    memfit_manager_release(NULL);
    s = model_status(mgr, "dino");
    assert_int_equal(s.state, MEMFIT_MODEL_READY);
    assert_int_equal(s.n_requests, 2);
    assert_int_equal(s.n_loads, 1);
    assert_int_equal(memfit_manager_acquire(mgr, "nope", 0, &h1), MEMFIT_E_NOT_FOUND);
    assert_string_equal(memfit_last_error(), "no model named nope");

    assert_int_equal(memfit_manager_unload_idle(mgr), 42 * MIB);
    assert_int_equal(state_of(mgr, "dino"), MEMFIT_MODEL_UNLOADED);
    assert_int_equal(atomic_load(&f.n_unload), 1);
    memfit_manager_destroy(mgr);
    memfit_manager_destroy(NULL);
}

static void test_eviction_lru(void **state)
{
    (void)state;
    memfit_manager *mgr = make_manager(100 * MIB, true);
    struct fake_model a = {.weights_bytes = 40 * MIB}, b = a, c = a;
    add_model(mgr, "a", &a, -1, false);
    add_model(mgr, "b", &b, -1, false);
    add_model(mgr, "c", &c, -1, false);
    assert_int_equal(use(mgr, "a"), MEMFIT_OK);
    assert_int_equal(use(mgr, "b"), MEMFIT_OK);
    assert_int_equal(use(mgr, "a"), MEMFIT_OK); /* b is now the least recently used */
    assert_int_equal(use(mgr, "c"), MEMFIT_OK);
    assert_int_equal(state_of(mgr, "b"), MEMFIT_MODEL_UNLOADED);
    assert_int_equal(state_of(mgr, "a"), MEMFIT_MODEL_READY);
    assert_int_equal(model_status(mgr, "b").n_evictions, 1);
    assert_int_equal(events.count[MEMFIT_EVENT_EVICT], 1);
    assert_string_equal(events.last[MEMFIT_EVENT_EVICT], "b c 41943040 MEMFIT_OK");
    assert_int_equal(use(mgr, "b"), MEMFIT_OK); /* evicts a (LRU), not c */
    assert_int_equal(state_of(mgr, "a"), MEMFIT_MODEL_UNLOADED);
    assert_int_equal(state_of(mgr, "c"), MEMFIT_MODEL_READY);
    memfit_manager_destroy(mgr);
}

static void test_eviction_prefers_one_victim(void **state)
{
    (void)state;
    memfit_manager *mgr = make_manager(100 * MIB, true);
    struct fake_model s1 = {.weights_bytes = 10 * MIB}, s2 = s1, big = {.weights_bytes = 50 * MIB},
                      x = {.weights_bytes = 60 * MIB};
    add_model(mgr, "s1", &s1, -1, false);
    add_model(mgr, "s2", &s2, -1, false);
    add_model(mgr, "big", &big, -1, false);
    add_model(mgr, "x", &x, -1, false);
    assert_int_equal(use(mgr, "s1"), MEMFIT_OK);
    assert_int_equal(use(mgr, "s2"), MEMFIT_OK);
    assert_int_equal(use(mgr, "big"), MEMFIT_OK);
    /* x needs 30 MiB more: plain LRU would take s1, s2 and big; big alone is enough. */
    assert_int_equal(use(mgr, "x"), MEMFIT_OK);
    assert_int_equal(state_of(mgr, "big"), MEMFIT_MODEL_UNLOADED);
    assert_int_equal(state_of(mgr, "s1"), MEMFIT_MODEL_READY);
    assert_int_equal(state_of(mgr, "s2"), MEMFIT_MODEL_READY);
    /* big needs 30 more: s1 and s2 are older, but x alone is enough. */
    assert_int_equal(use(mgr, "big"), MEMFIT_OK);
    assert_int_equal(state_of(mgr, "x"), MEMFIT_MODEL_UNLOADED);
    assert_int_equal(state_of(mgr, "s1"), MEMFIT_MODEL_READY);
    memfit_manager_destroy(mgr);
}

static void test_lru_several_victims(void **state)
{
    (void)state;
    memfit_manager *mgr = make_manager(100 * MIB, true);
    struct fake_model a = {.weights_bytes = 30 * MIB}, b = a, c = a,
                      d = {.weights_bytes = 70 * MIB};
    add_model(mgr, "a", &a, -1, false);
    add_model(mgr, "b", &b, -1, false);
    add_model(mgr, "c", &c, -1, false);
    add_model(mgr, "d", &d, -1, false);
    assert_int_equal(use(mgr, "b"), MEMFIT_OK);
    assert_int_equal(use(mgr, "a"), MEMFIT_OK);
    assert_int_equal(use(mgr, "c"), MEMFIT_OK);
    /* d needs 60 more; no one model holds 60: b then a (LRU first). */
    assert_int_equal(use(mgr, "d"), MEMFIT_OK);
    assert_int_equal(state_of(mgr, "b"), MEMFIT_MODEL_UNLOADED);
    assert_int_equal(state_of(mgr, "a"), MEMFIT_MODEL_UNLOADED);
    assert_int_equal(state_of(mgr, "c"), MEMFIT_MODEL_READY);
    assert_int_equal(events.count[MEMFIT_EVENT_EVICT], 2);
    memfit_manager_destroy(mgr);
}

static void test_pinned_and_in_use_never_evicted(void **state)
{
    (void)state;
    memfit_manager *mgr = make_manager(100 * MIB, true);
    struct fake_model p = {.weights_bytes = 40 * MIB}, u = p, n = p;
    add_model(mgr, "p", &p, -1, true);
    add_model(mgr, "u", &u, -1, false);
    add_model(mgr, "n", &n, -1, false);
    assert_int_equal(memfit_manager_load_pinned(mgr, 0), MEMFIT_OK);
    assert_int_equal(state_of(mgr, "p"), MEMFIT_MODEL_READY);
    memfit_handle *hu, *hn;
    assert_int_equal(memfit_manager_acquire(mgr, "u", 0, &hu), MEMFIT_OK);
    assert_int_equal(memfit_manager_acquire(mgr, "n", 0, &hn), MEMFIT_E_BUDGET);
    assert_string_equal(memfit_last_error(),
                        "cannot load model n: asked 40.0 MiB for n weights; 20.0 MiB free of "
                        "100.0 MiB; in use: p 40.0 MiB (weights), u 40.0 MiB (weights)");
    assert_int_equal(state_of(mgr, "n"), MEMFIT_MODEL_UNLOADED); /* a refusal is not a failure */
    struct memfit_model_status s = model_status(mgr, "n");
    assert_int_equal(s.n_refusals, 1);
    assert_int_equal(s.n_failures, 0);
    assert_int_equal(s.last_status, MEMFIT_E_BUDGET);
    assert_int_equal(atomic_load(&n.n_load), 0); /* refused before fetch and load */
    assert_int_equal(events.count[MEMFIT_EVENT_REFUSE], 1);
    assert_int_equal(atomic_load(&p.n_unload) + atomic_load(&u.n_unload), 0);
    /* Pinned models ignore unload_idle and keep_alive, but obey an explicit unload. */
    assert_int_equal(memfit_manager_unload_idle(mgr), 0);
    memfit_manager_release(hu);
    assert_int_equal(memfit_manager_acquire(mgr, "n", 0, &hn), MEMFIT_OK); /* evicts u */
    assert_int_equal(state_of(mgr, "u"), MEMFIT_MODEL_UNLOADED);
    assert_int_equal(state_of(mgr, "p"), MEMFIT_MODEL_READY);
    memfit_manager_release(hn);
    assert_int_equal(memfit_manager_unload(mgr, "p"), MEMFIT_OK);
    assert_int_equal(state_of(mgr, "p"), MEMFIT_MODEL_UNLOADED);
    memfit_manager_destroy(mgr);
}

/* A reservation waiting for room evicts a model as soon as it becomes idle. */
struct acquirer {
    memfit_manager *mgr;
    const char *name;
    int64_t timeout_ms;
    enum memfit_status st;
    memfit_handle *h;
};

static void *acquire_thread(void *arg)
{
    struct acquirer *a = arg;
    a->st = memfit_manager_acquire(a->mgr, a->name, a->timeout_ms, &a->h);
    return NULL;
}

static void wait_until_budget_waiting(memfit_manager *mgr)
{
    for (int i = 0; i < 10000; i++) {
        struct memfit_budget_usage u;
        memfit_budget_get_usage(memfit_manager_budget(mgr), &u);
        if (u.n_waiting > 0)
            return;
        fake_sleep_ms(1);
    }
    fail_msg("nobody waited on the budget");
}

static void test_waiting_load_evicts_model_that_becomes_idle(void **state)
{
    (void)state;
    memfit_manager *mgr = make_manager(100 * MIB, true);
    struct fake_model a = {.weights_bytes = 60 * MIB}, b = a;
    add_model(mgr, "a", &a, -1, false);
    add_model(mgr, "b", &b, -1, false);
    memfit_handle *ha;
    assert_int_equal(memfit_manager_acquire(mgr, "a", 0, &ha), MEMFIT_OK);
    struct acquirer acq = {mgr, "b", 60000, MEMFIT_E_IO, NULL};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, acquire_thread, &acq), 0);
    wait_until_budget_waiting(mgr);
    assert_int_equal(state_of(mgr, "b"), MEMFIT_MODEL_LOADING);
    memfit_manager_release(ha);
    pthread_join(t, NULL);
    assert_int_equal(acq.st, MEMFIT_OK);
    assert_int_equal(state_of(mgr, "a"), MEMFIT_MODEL_UNLOADED);
    memfit_manager_release(acq.h);
    memfit_manager_destroy(mgr);
}

/* ---- Load order: plan, fetch, plan again, reserve, load ---- */

/* A budget of 100 MiB holding "a" (60 MiB, loaded and idle, so it would be
 * evicted for the next load) and a remote model "r" of 60 MiB. */
static memfit_manager *make_order_manager(struct fake_model *a, struct fake_model *r)
{
    memfit_manager *mgr = make_manager(100 * MIB, true);
    add_model(mgr, "a", a, -1, false);
    add_model_driver(mgr, "r", &fake_fetching_driver, r, -1, false);
    assert_int_equal(use(mgr, "a"), MEMFIT_OK);
    assert_int_equal(state_of(mgr, "a"), MEMFIT_MODEL_READY);
    return mgr;
}

/* "a" is still loaded, nothing was evicted or reserved for "r". */
static void assert_nothing_evicted(memfit_manager *mgr, struct fake_model *a)
{
    assert_int_equal(state_of(mgr, "a"), MEMFIT_MODEL_READY);
    assert_int_equal(atomic_load(&a->n_unload), 0);
    assert_int_equal(events.count[MEMFIT_EVENT_EVICT], 0);
    struct memfit_budget_usage u;
    memfit_budget_get_usage(memfit_manager_budget(mgr), &u);
    assert_int_equal(u.reserved_bytes, 60 * MIB);
}

static void test_failed_fetch_evicts_nothing(void **state)
{
    (void)state;
    struct fake_model a = {.weights_bytes = 60 * MIB}, r = a;
    atomic_store(&r.fail_fetches, 1);
    memfit_manager *mgr = make_order_manager(&a, &r);
    memfit_handle *h;
    assert_int_equal(memfit_manager_acquire(mgr, "r", 1000, &h), MEMFIT_E_NETWORK);
    assert_string_equal(memfit_last_error(),
                        "model r failed to load: fake://model: connection reset");
    assert_int_equal(state_of(mgr, "r"), MEMFIT_MODEL_FAILED);
    assert_int_equal(atomic_load(&r.n_plan), 1); /* no second plan without the file */
    assert_int_equal(atomic_load(&r.n_load), 0);
    assert_nothing_evicted(mgr, &a);
    assert_int_equal(events.count[MEMFIT_EVENT_FAIL], 1);
    /* After the back-off the fetch works: now, and only now, "a" makes room. */
    atomic_fetch_add(&fake_clock_ns, SEC);
    assert_int_equal(memfit_manager_acquire(mgr, "r", 1000, &h), MEMFIT_OK);
    assert_int_equal(state_of(mgr, "a"), MEMFIT_MODEL_UNLOADED);
    assert_int_equal(events.count[MEMFIT_EVENT_EVICT], 1);
    memfit_manager_release(h);
    memfit_manager_destroy(mgr);
}

static void test_failed_plan_after_fetch_evicts_nothing(void **state)
{
    (void)state;
    struct fake_model a = {.weights_bytes = 60 * MIB}, r = a;
    atomic_store(&r.fail_plan_call, 2); /* the file fetched is malformed */
    memfit_manager *mgr = make_order_manager(&a, &r);
    memfit_handle *h;
    assert_int_equal(memfit_manager_acquire(mgr, "r", 1000, &h), MEMFIT_E_FORMAT);
    assert_string_equal(memfit_last_error(), "model r failed to load: fake.gguf: truncated header");
    assert_int_equal(state_of(mgr, "r"), MEMFIT_MODEL_FAILED);
    assert_int_equal(atomic_load(&r.n_fetch), 1);
    assert_int_equal(atomic_load(&r.n_plan), 2);
    assert_int_equal(atomic_load(&r.n_load), 0);
    assert_nothing_evicted(mgr, &a);
    memfit_manager_destroy(mgr);
}

static void test_plan_twice_around_fetch(void **state)
{
    (void)state;
    /* A provisional plan (the file's size) of 10 MiB, 50 MiB exact once fetched. */
    struct fake_model a = {.weights_bytes = 60 * MIB},
                      r = {.weights_bytes = 10 * MIB, .fetched_weights_bytes = 50 * MIB};
    memfit_manager *mgr = make_order_manager(&a, &r);
    memfit_handle *h;
    assert_int_equal(memfit_manager_acquire(mgr, "r", 1000, &h), MEMFIT_OK);
    assert_int_equal(atomic_load(&r.n_plan), 2);
    assert_int_equal(atomic_load(&r.n_fetch), 1);
    assert_int_equal(atomic_load(&r.n_load), 1);
    assert_int_equal(model_status(mgr, "r").total_bytes, 50 * MIB); /* the exact plan */
    assert_int_equal(state_of(mgr, "a"), MEMFIT_MODEL_UNLOADED);    /* 10 MiB fitted beside it */
    memfit_manager_release(h);
    /* Loaded again later (the file is local): still one plan before, one after. */
    assert_int_equal(memfit_manager_unload(mgr, "r"), MEMFIT_OK);
    assert_int_equal(memfit_manager_acquire(mgr, "r", 0, &h), MEMFIT_OK);
    assert_int_equal(atomic_load(&r.n_plan), 4);
    memfit_manager_release(h);

    /* An exact plan larger than the whole budget: refused after the fetch,
     * nothing evicted, UNLOADED (not FAILED). */
    struct fake_model b = {.weights_bytes = 60 * MIB},
                      big = {.weights_bytes = 10 * MIB, .fetched_weights_bytes = 200 * MIB};
    memfit_manager *mgr2 = make_order_manager(&b, &big);
    assert_int_equal(memfit_manager_acquire(mgr2, "r", 1000, &h), MEMFIT_E_TOO_LARGE);
    assert_string_equal(memfit_last_error(),
                        "model r needs 200.0 MiB (weights) but the whole budget is 100.0 MiB: it "
                        "can never load; raise the budget or use a smaller quantization");
    assert_int_equal(state_of(mgr2, "r"), MEMFIT_MODEL_UNLOADED);
    assert_int_equal(atomic_load(&big.n_load), 0);
    assert_nothing_evicted(mgr2, &b);
    memfit_manager_destroy(mgr2);
    memfit_manager_destroy(mgr);
}

static void test_larger_than_budget_refused_before_fetch(void **state)
{
    (void)state;
    memfit_manager *mgr = make_manager(512 * MIB, true);
    struct fake_model a = {.weights_bytes = 60 * MIB},
                      sam = {.weights_bytes = 900 * MIB, .workspace_bytes = 300 * MIB};
    add_model(mgr, "a", &a, -1, false);
    add_model_driver(mgr, "sam", &fake_fetching_driver, &sam, -1, false);
    assert_int_equal(use(mgr, "a"), MEMFIT_OK);
    memfit_handle *h;
    uint64_t t0 = memfit_now_ns();
    assert_int_equal(memfit_manager_acquire(mgr, "sam", 5000, &h), MEMFIT_E_TOO_LARGE);
    assert_true(memfit_now_ns() - t0 < 2 * SEC); /* at once, not after the timeout */
    assert_string_equal(memfit_last_error(),
                        "model sam needs 1.2 GiB (weights 900.0 MiB, workspace 300.0 MiB) but the "
                        "whole budget is 512.0 MiB: it can never load; raise the budget or use a "
                        "smaller quantization");
    assert_int_equal(atomic_load(&sam.n_fetch), 0);
    assert_int_equal(atomic_load(&sam.n_load), 0);
    struct memfit_model_status s = model_status(mgr, "sam");
    assert_int_equal(s.state, MEMFIT_MODEL_UNLOADED);
    assert_int_equal(s.last_status, MEMFIT_E_TOO_LARGE);
    assert_int_equal(s.n_refusals, 1);
    assert_int_equal(s.n_failures, 0);
    assert_int_equal(events.count[MEMFIT_EVENT_REFUSE], 1);
    assert_int_equal(events.count[MEMFIT_EVENT_FAIL], 0);
    assert_int_equal(state_of(mgr, "a"), MEMFIT_MODEL_READY);
    /* No back-off: asked again, planned again, refused again. */
    assert_int_equal(memfit_manager_acquire(mgr, "sam", 0, &h), MEMFIT_E_TOO_LARGE);
    assert_int_equal(atomic_load(&sam.n_plan), 2);
    /* A larger budget makes it loadable. */
    memfit_budget_set_size(memfit_manager_budget(mgr), 2048 * MIB);
    assert_int_equal(memfit_manager_acquire(mgr, "sam", 0, &h), MEMFIT_OK);
    assert_int_equal(atomic_load(&sam.n_fetch), 1);
    memfit_manager_release(h);
    memfit_manager_destroy(mgr);
}

/* ---- Admission waits for a busy model's release ---- */

/* A budget of 100 MiB, "a" (60 MiB) loaded and held in *ha, and "b" (60
 * MiB) that fits only once "a" is released and evicted. */
static memfit_manager *make_busy_manager(struct fake_model *a, struct fake_model *b,
                                         memfit_handle **ha)
{
    memfit_manager *mgr = make_manager(100 * MIB, true);
    *a = (struct fake_model){.weights_bytes = 60 * MIB};
    *b = (struct fake_model){.weights_bytes = 60 * MIB};
    add_model(mgr, "a", a, -1, false);
    add_model(mgr, "b", b, -1, false);
    assert_int_equal(memfit_manager_acquire(mgr, "a", 0, ha), MEMFIT_OK);
    return mgr;
}

static void test_acquire_waits_for_busy_release(void **state)
{
    (void)state;
    struct fake_model a, b;
    memfit_handle *ha;
    memfit_manager *mgr = make_busy_manager(&a, &b, &ha);
    struct acquirer acq = {mgr, "b", 2000, MEMFIT_E_IO, NULL};
    pthread_t t;
    uint64_t t0 = memfit_now_ns();
    assert_int_equal(pthread_create(&t, NULL, acquire_thread, &acq), 0);
    fake_sleep_ms(300);
    struct memfit_budget_usage u; /* still waiting for room, past the old 200 ms give-up */
    memfit_budget_get_usage(memfit_manager_budget(mgr), &u);
    assert_int_equal(u.n_waiting, 1);
    assert_int_equal(state_of(mgr, "b"), MEMFIT_MODEL_LOADING);
    assert_int_equal(state_of(mgr, "a"), MEMFIT_MODEL_BUSY);
    memfit_manager_release(ha);
    pthread_join(t, NULL);
    assert_int_equal(acq.st, MEMFIT_OK);
    uint64_t waited = memfit_now_ns() - t0;
    assert_true(waited >= 300 * 1000000ull && waited < 2 * SEC);
    assert_int_equal(state_of(mgr, "a"), MEMFIT_MODEL_UNLOADED);
    assert_int_equal(events.count[MEMFIT_EVENT_EVICT], 1);
    assert_int_equal(events.count[MEMFIT_EVENT_REFUSE], 0);
    memfit_manager_release(acq.h);
    memfit_manager_destroy(mgr);
}

static void test_acquire_times_out_beside_busy_model(void **state)
{
    (void)state;
    struct fake_model a, b;
    memfit_handle *ha, *hb;
    memfit_manager *mgr = make_busy_manager(&a, &b, &ha);
    /* Not waiting: E_BUDGET at once. */
    assert_int_equal(memfit_manager_acquire(mgr, "b", 0, &hb), MEMFIT_E_BUDGET);
    /* Waiting: E_TIMEOUT once the timeout has passed, with the same figures. */
    uint64_t t0 = memfit_now_ns();
    assert_int_equal(memfit_manager_acquire(mgr, "b", 400, &hb), MEMFIT_E_TIMEOUT);
    assert_true(memfit_now_ns() - t0 >= 400 * 1000000ull);
    const char *want = "cannot load model b: asked 60.0 MiB for b weights; 40.0 MiB free of "
                       "100.0 MiB; in use: a 60.0 MiB (weights); waited ";
    assert_memory_equal(memfit_last_error(), want, strlen(want));
    struct memfit_model_status s = model_status(mgr, "b");
    assert_int_equal(s.state, MEMFIT_MODEL_UNLOADED); /* transient: no back-off */
    assert_int_equal(s.last_status, MEMFIT_E_TIMEOUT);
    assert_int_equal(s.n_failures, 0);
    assert_int_equal(s.n_refusals, 2);
    assert_int_equal(atomic_load(&b.n_load), 0);
    assert_int_equal(state_of(mgr, "a"), MEMFIT_MODEL_BUSY);
    memfit_manager_release(ha);
    assert_int_equal(memfit_manager_acquire(mgr, "b", 0, &hb), MEMFIT_OK); /* evicts a */
    memfit_manager_release(hb);
    memfit_manager_destroy(mgr);
}

/* A caller that goes away while waiting for room: E_CANCELLED within a
 * poll, no refusal recorded, the busy model untouched. */
static bool cancel_after(void *user)
{
    return memfit_now_ns() >= *(const uint64_t *)user;
}

static void test_acquire_cancelled_while_waiting(void **state)
{
    (void)state;
    struct fake_model a, b;
    memfit_handle *ha, *hb = NULL;
    memfit_manager *mgr = make_busy_manager(&a, &b, &ha);
    uint64_t t0 = memfit_now_ns(), stop_at = t0 + 250 * 1000000ull;
    struct memfit_acquire_options o = {
        .timeout_ms = 5000, .cancelled = cancel_after, .cancel_user = &stop_at};
    assert_int_equal(memfit_manager_acquire_ex(mgr, "b", &o, &hb), MEMFIT_E_CANCELLED);
    uint64_t waited = memfit_now_ns() - t0;
    assert_true(waited >= 250 * 1000000ull && waited < 1 * SEC);
    assert_null(hb);
    assert_int_equal(events.count[MEMFIT_EVENT_REFUSE], 0);
    assert_int_equal(model_status(mgr, "b").n_refusals, 0);
    assert_int_equal(state_of(mgr, "b"), MEMFIT_MODEL_UNLOADED);
    assert_int_equal(state_of(mgr, "a"), MEMFIT_MODEL_BUSY);
    struct memfit_budget_usage u;
    memfit_budget_get_usage(memfit_manager_budget(mgr), &u);
    assert_int_equal(u.n_waiting, 0);
    assert_int_equal(u.n_refused, 0);
    /* It can still be had once the busy model goes. */
    memfit_manager_release(ha);
    o.cancelled = NULL;
    assert_int_equal(memfit_manager_acquire_ex(mgr, "b", &o, &hb), MEMFIT_OK);
    memfit_manager_release(hb);
    memfit_manager_destroy(mgr);
}

static void test_keep_alive(void **state)
{
    (void)state;
    memfit_manager *mgr = make_manager(1000 * MIB, true);
    struct fake_model zero = {.weights_bytes = MIB}, ten = zero, never = zero, dflt = zero,
                      pinned = zero;
    add_model(mgr, "zero", &zero, 0, false);
    add_model(mgr, "ten", &ten, 10, false);
    add_model(mgr, "never", &never, MEMFIT_KEEP_ALIVE_NEVER_UNLOAD, false);
    add_model(mgr, "default", &dflt, MEMFIT_KEEP_ALIVE_DEFAULT, false);
    add_model(mgr, "pinned", &pinned, 5, true);

    /* 0: unloaded by the last release, on the releasing thread. */
    memfit_handle *h1, *h2;
    assert_int_equal(memfit_manager_acquire(mgr, "zero", 0, &h1), MEMFIT_OK);
    assert_int_equal(memfit_manager_acquire(mgr, "zero", 0, &h2), MEMFIT_OK);
    memfit_manager_release(h1);
    assert_int_equal(state_of(mgr, "zero"), MEMFIT_MODEL_BUSY);
    memfit_manager_release(h2);
    assert_int_equal(state_of(mgr, "zero"), MEMFIT_MODEL_UNLOADED);
    assert_int_equal(atomic_load(&zero.n_unload), 1);
    assert_string_equal(events.last[MEMFIT_EVENT_UNLOAD], "zero keep_alive 1048576 MEMFIT_OK");
    /* An explicit load keeps a keep_alive-0 model until the next tick. */
    assert_int_equal(memfit_manager_load(mgr, "zero", 0), MEMFIT_OK);
    assert_int_equal(state_of(mgr, "zero"), MEMFIT_MODEL_READY);

    uint64_t t0 = atomic_load(&fake_clock_ns);
    assert_int_equal(use(mgr, "ten"), MEMFIT_OK);
    assert_int_equal(use(mgr, "never"), MEMFIT_OK);
    assert_int_equal(use(mgr, "default"), MEMFIT_OK);
    assert_int_equal(memfit_manager_load_pinned(mgr, 0), MEMFIT_OK);
    uint64_t ten_idle = t0 + SEC; /* use() moved the clock one second before "ten" */
    struct memfit_model_status s = model_status(mgr, "ten");
    assert_int_equal(s.expires_at_ns, ten_idle + 10 * SEC);
    assert_int_equal(model_status(mgr, "default").keep_alive_s, 300);
    assert_int_equal(model_status(mgr, "never").expires_at_ns, 0);

    assert_int_equal(memfit_manager_tick(mgr, ten_idle + 9 * SEC), 1); /* only "zero" */
    assert_int_equal(state_of(mgr, "zero"), MEMFIT_MODEL_UNLOADED);
    assert_int_equal(state_of(mgr, "ten"), MEMFIT_MODEL_READY);
    assert_int_equal(memfit_manager_tick(mgr, ten_idle + 10 * SEC), 1);
    assert_int_equal(state_of(mgr, "ten"), MEMFIT_MODEL_UNLOADED);
    assert_int_equal(memfit_manager_tick(mgr, ten_idle + 299 * SEC), 0);
    assert_int_equal(memfit_manager_tick(mgr, ten_idle + 400 * SEC), 1); /* default, 300 s */
    assert_int_equal(memfit_manager_tick(mgr, UINT64_MAX), 0);
    assert_int_equal(state_of(mgr, "never"), MEMFIT_MODEL_READY);
    assert_int_equal(state_of(mgr, "pinned"), MEMFIT_MODEL_READY);
    /* A model in use does not expire. */
    memfit_handle *h;
    assert_int_equal(memfit_manager_acquire(mgr, "ten", 0, &h), MEMFIT_OK);
    assert_int_equal(memfit_manager_tick(mgr, UINT64_MAX), 0);
    memfit_manager_release(h);
    memfit_manager_destroy(mgr);
}

static void test_unloading_disabled(void **state)
{
    (void)state;
    memfit_manager *mgr = make_manager(100 * MIB, false);
    struct fake_model a = {.weights_bytes = 60 * MIB}, b = a, z = {.weights_bytes = MIB};
    add_model(mgr, "a", &a, 1, false);
    add_model(mgr, "b", &b, 1, false);
    add_model(mgr, "z", &z, 0, false);
    assert_int_equal(use(mgr, "a"), MEMFIT_OK);
    assert_int_equal(use(mgr, "b"), MEMFIT_E_BUDGET);
    assert_string_equal(memfit_last_error(),
                        "cannot load model b: asked 60.0 MiB for b weights; 40.0 MiB free of "
                        "100.0 MiB; in use: a 60.0 MiB (weights)");
    assert_int_equal(use(mgr, "z"), MEMFIT_OK);
    assert_int_equal(state_of(mgr, "z"), MEMFIT_MODEL_READY); /* keep_alive 0 not applied */
    assert_int_equal(memfit_manager_tick(mgr, UINT64_MAX), 0);
    assert_int_equal(memfit_manager_unload_idle(mgr), 0);
    assert_int_equal(atomic_load(&a.n_unload), 0);
    /* An explicit unload is still obeyed. */
    assert_int_equal(memfit_manager_unload(mgr, "a"), MEMFIT_OK);
    assert_int_equal(use(mgr, "b"), MEMFIT_OK);

    struct memfit_manager_options o;
    memfit_manager_options_default(&o);
    setenv("ENABLE_MODEL_UNLOADING", "false", 1);
    assert_int_equal(memfit_manager_options_from_config(&o), MEMFIT_OK);
    assert_false(o.unloading_enabled);
    setenv("MEMFIT_ENABLE_MODEL_UNLOADING", "maybe", 1);
    assert_int_equal(memfit_manager_options_from_config(&o), MEMFIT_E_RANGE);
    assert_string_equal(memfit_last_error(), "MEMFIT_ENABLE_MODEL_UNLOADING: invalid value "
                                             "'maybe' (expected true or false)");
    unsetenv("MEMFIT_ENABLE_MODEL_UNLOADING");
    unsetenv("ENABLE_MODEL_UNLOADING");
    memfit_manager_destroy(mgr);
}

static void test_identity_mismatch(void **state)
{
    (void)state;
    memfit_manager *mgr = make_manager(100 * MIB, true);
    struct fake_model q = {.weights_bytes = MIB};
    struct memfit_model_options o;
    memfit_model_options_default(&o);
    o.name = "qwen";
    o.driver = &fake_driver;
    o.config = &q;
    o.identity = "ctx=4096";
    assert_int_equal(memfit_manager_register(mgr, &o), MEMFIT_OK);
    memfit_handle *h1, *h2, *h3;
    assert_int_equal(memfit_manager_acquire_identity(mgr, "qwen", "ctx=4096", 0, &h1), MEMFIT_OK);
    assert_int_equal(memfit_manager_acquire_identity(mgr, "qwen", "ctx=8192", 0, &h2),
                     MEMFIT_E_BUSY);
    assert_string_equal(memfit_last_error(),
                        "model qwen is registered with options 'ctx=4096' but the request asks "
                        "for 'ctx=8192'; memfit does not reload a model for other options "
                        "(register another model with them)");
    assert_int_equal(memfit_manager_acquire_identity(mgr, "qwen", NULL, 0, &h2), MEMFIT_OK);
    assert_int_equal(memfit_manager_acquire_identity(mgr, "qwen", "", 0, &h3), MEMFIT_OK);
    assert_int_equal(atomic_load(&q.n_load), 1); /* never reloaded */
    memfit_manager_release(h1);
    memfit_manager_release(h2);
    memfit_manager_release(h3);
    /* Unloaded, the answer is the same: the identity is the registration's. */
    assert_int_equal(memfit_manager_unload(mgr, "qwen"), MEMFIT_OK);
    assert_int_equal(memfit_manager_acquire_identity(mgr, "qwen", "ctx=8192", 0, &h2),
                     MEMFIT_E_BUSY);
    assert_int_equal(atomic_load(&q.n_load), 1);
    memfit_manager_destroy(mgr);
}

static void test_failed_backoff_and_retry(void **state)
{
    (void)state;
    memfit_manager *mgr = make_manager(100 * MIB, true);
    struct fake_model f = {.weights_bytes = MIB, .fail_loads = 2};
    add_model(mgr, "bad", &f, -1, false);
    memfit_handle *h;
    assert_int_equal(memfit_manager_acquire(mgr, "bad", 0, &h), MEMFIT_E_FORMAT);
    assert_string_equal(memfit_last_error(), "model bad failed to load: fake.gguf: bad magic");
    struct memfit_model_status s = model_status(mgr, "bad");
    assert_int_equal(s.state, MEMFIT_MODEL_FAILED);
    assert_int_equal(s.n_failures, 1);
    assert_int_equal(s.total_bytes, 0);
    assert_int_equal(s.retry_at_ns, atomic_load(&fake_clock_ns) + SEC);
    struct memfit_budget_usage u;
    memfit_budget_get_usage(memfit_manager_budget(mgr), &u);
    assert_int_equal(u.reserved_bytes, 0); /* the reservation went back */
    assert_int_equal(events.count[MEMFIT_EVENT_FAIL], 1);

    /* During the back-off: fail fast with the kept message, no load. */
    assert_int_equal(memfit_manager_acquire(mgr, "bad", 0, &h), MEMFIT_E_FORMAT);
    assert_string_equal(memfit_last_error(), "model bad failed to load: fake.gguf: bad magic "
                                             "(failed 1 time(s); next try in 1.0 s)");
    assert_int_equal(atomic_load(&f.n_load), 1);
    /* After 1 s: tried again, fails again, back-off doubles to 2 s. */
    atomic_fetch_add(&fake_clock_ns, SEC);
    assert_int_equal(memfit_manager_acquire(mgr, "bad", 0, &h), MEMFIT_E_FORMAT);
    assert_int_equal(atomic_load(&f.n_load), 2);
    atomic_fetch_add(&fake_clock_ns, SEC);
    assert_int_equal(memfit_manager_acquire(mgr, "bad", 0, &h), MEMFIT_E_FORMAT);
    assert_string_equal(memfit_last_error(), "model bad failed to load: fake.gguf: bad magic "
                                             "(failed 2 time(s); next try in 1.0 s)");
    assert_int_equal(atomic_load(&f.n_load), 2);
    atomic_fetch_add(&fake_clock_ns, SEC);
    assert_int_equal(memfit_manager_acquire(mgr, "bad", 0, &h), MEMFIT_OK);
    s = model_status(mgr, "bad");
    assert_int_equal(s.n_failures, 2);
    assert_int_equal(s.last_status, MEMFIT_OK);
    memfit_manager_release(h);

    /* An explicit unload clears a failure and its back-off. */
    atomic_store(&f.fail_loads, 1);
    assert_int_equal(memfit_manager_unload(mgr, "bad"), MEMFIT_OK);
    assert_int_equal(memfit_manager_acquire(mgr, "bad", 0, &h), MEMFIT_E_FORMAT);
    assert_int_equal(memfit_manager_unload(mgr, "bad"), MEMFIT_OK);
    assert_int_equal(state_of(mgr, "bad"), MEMFIT_MODEL_UNLOADED);
    assert_int_equal(memfit_manager_acquire(mgr, "bad", 0, &h), MEMFIT_OK);
    memfit_manager_release(h);

    /* Out of memory in a driver is not the model's fault: no back-off. */
    f.fail_status = MEMFIT_E_NOMEM;
    atomic_store(&f.fail_loads, 1);
    assert_int_equal(memfit_manager_unload(mgr, "bad"), MEMFIT_OK);
    assert_int_equal(memfit_manager_acquire(mgr, "bad", 0, &h), MEMFIT_E_NOMEM);
    assert_int_equal(state_of(mgr, "bad"), MEMFIT_MODEL_UNLOADED);
    assert_int_equal(memfit_manager_acquire(mgr, "bad", 0, &h), MEMFIT_OK);
    memfit_manager_release(h);
    memfit_manager_destroy(mgr);
}

#define N_FLIGHT 8

static void test_single_flight(void **state)
{
    (void)state;
    memfit_manager *mgr = make_manager(100 * MIB, true);
    struct fake_model f = {.weights_bytes = MIB, .load_delay_ms = 50};
    struct memfit_model_options o;
    memfit_model_options_default(&o);
    o.name = "slow";
    o.driver = &fake_fetching_driver;
    o.config = &f;
    o.keep_alive_s = -1;
    assert_int_equal(memfit_manager_register(mgr, &o), MEMFIT_OK);
    struct acquirer acq[N_FLIGHT];
    pthread_t t[N_FLIGHT];
    for (int i = 0; i < N_FLIGHT; i++) {
        acq[i] = (struct acquirer){mgr, "slow", 60000, MEMFIT_E_IO, NULL};
        assert_int_equal(pthread_create(&t[i], NULL, acquire_thread, &acq[i]), 0);
    }
    for (int i = 0; i < N_FLIGHT; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < N_FLIGHT; i++) {
        assert_int_equal(acq[i].st, MEMFIT_OK);
        assert_ptr_equal(memfit_handle_model(acq[i].h), memfit_handle_model(acq[0].h));
    }
    assert_int_equal(atomic_load(&f.n_plan), 2); /* before and after the one fetch */
    assert_int_equal(atomic_load(&f.n_fetch), 1);
    assert_int_equal(atomic_load(&f.n_load), 1);
    assert_int_equal(model_status(mgr, "slow").in_use, N_FLIGHT);
    for (int i = 0; i < N_FLIGHT; i++)
        memfit_manager_release(acq[i].h);
    assert_int_equal(model_status(mgr, "slow").n_requests, N_FLIGHT);
    memfit_manager_destroy(mgr);
}

static void wait_until_queued(memfit_manager *mgr, unsigned depth)
{
    for (int i = 0; i < 10000; i++) {
        struct memfit_manager_status *s;
        assert_int_equal(memfit_manager_snapshot(mgr, &s), MEMFIT_OK);
        unsigned q = s->queue_depth;
        memfit_free(s);
        if (q >= depth)
            return;
        fake_sleep_ms(1);
    }
    fail_msg("the queue never reached %u", depth);
}

static void test_max_concurrency_and_queue(void **state)
{
    (void)state;
    struct memfit_manager_options mo;
    memfit_manager_options_default(&mo);
    mo.budget_bytes = 100 * MIB;
    mo.reaper_thread = false;
    mo.max_queue = 1;
    mo.on_event = record_event;
    memfit_manager *mgr;
    assert_int_equal(memfit_manager_create(&mo, &mgr), MEMFIT_OK);
    struct fake_model f = {.weights_bytes = MIB}, g = f;
    struct memfit_model_options o;
    memfit_model_options_default(&o);
    o.name = "one";
    o.driver = &fake_driver;
    o.config = &f;
    o.max_concurrency = 1;
    assert_int_equal(memfit_manager_register(mgr, &o), MEMFIT_OK);
    o.name = "other";
    o.config = &g;
    assert_int_equal(memfit_manager_register(mgr, &o), MEMFIT_OK);

    memfit_handle *h, *h2;
    assert_int_equal(memfit_manager_acquire(mgr, "one", 0, &h), MEMFIT_OK);
    assert_int_equal(memfit_manager_acquire(mgr, "one", 0, &h2), MEMFIT_E_TIMEOUT);
    assert_string_equal(memfit_last_error(), "model one: timed out after 0 ms waiting (state "
                                             "busy, 1 handle(s) out, max_concurrency 1)");
    struct acquirer acq = {mgr, "one", 60000, MEMFIT_E_IO, NULL};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, acquire_thread, &acq), 0);
    wait_until_queued(mgr, 1);
    /* The queue holds one waiting acquire: the next one that must wait is refused. */
    assert_int_equal(memfit_manager_acquire(mgr, "one", 1000, &h2), MEMFIT_E_BUSY);
    assert_string_equal(memfit_last_error(),
                        "model one: admission queue full (1 acquires waiting, max_queue 1)");
    /* An acquire that does not need to wait is not queued. */
    assert_int_equal(memfit_manager_acquire(mgr, "other", 0, &h2), MEMFIT_OK);
    memfit_manager_release(h2);
    memfit_manager_release(h);
    pthread_join(t, NULL);
    assert_int_equal(acq.st, MEMFIT_OK);
    memfit_manager_release(acq.h);
    assert_int_equal(atomic_load(&f.n_load), 1);
    memfit_manager_destroy(mgr);
}

static void test_snapshot_and_events(void **state)
{
    (void)state;
    memfit_manager *mgr = make_manager(100 * MIB, true);
    struct fake_model f = {.weights_bytes = 3 * MIB, .workspace_bytes = MIB};
    struct memfit_model_options o;
    memfit_model_options_default(&o);
    o.name = "dino";
    o.driver = &fake_driver;
    o.config = &f;
    o.identity = "size=518";
    o.max_concurrency = 4;
    assert_int_equal(memfit_manager_register(mgr, &o), MEMFIT_OK);
    assert_int_equal(use(mgr, "dino"), MEMFIT_OK);
    struct memfit_manager_status *s;
    assert_int_equal(memfit_manager_snapshot(mgr, &s), MEMFIT_OK);
    assert_int_equal(s->n_models, 1);
    assert_int_equal(s->budget.size_bytes, 100 * MIB);
    assert_int_equal(s->budget.reserved_bytes, 4 * MIB);
    assert_int_equal(s->budget.by_category[MEMFIT_BUDGET_WORKSPACE], MIB);
    assert_int_equal(s->max_queue, 512);
    assert_true(s->unloading_enabled);
    const struct memfit_model_status *m = &s->models[0];
    assert_string_equal(m->name, "dino");
    assert_string_equal(m->family, "fake");
    assert_string_equal(m->identity, "size=518");
    assert_string_equal(m->last_error, "");
    assert_string_equal(memfit_model_state_name(m->state), "ready");
    assert_int_equal(m->max_concurrency, 4);
    assert_int_equal(m->keep_alive_s, 300);
    assert_int_equal(m->n_loads, 1);
    assert_int_equal(m->last_used_ns, atomic_load(&fake_clock_ns));
    memfit_free(s);
    assert_int_equal(events.count[MEMFIT_EVENT_LOAD], 1);
    assert_string_equal(events.last[MEMFIT_EVENT_LOAD], "dino  4194304 MEMFIT_OK");
    assert_int_equal(memfit_manager_unload(mgr, "dino"), MEMFIT_OK);
    assert_string_equal(events.last[MEMFIT_EVENT_UNLOAD], "dino explicit 4194304 MEMFIT_OK");
    assert_string_equal(memfit_manager_event_name(MEMFIT_EVENT_REFUSE), "refuse");
    assert_string_equal(memfit_model_state_name((enum memfit_model_state)99), "unknown");
    memfit_manager_destroy(mgr);
}

/* A release's own keep_alive (Ollama's per-request field) for the idle time that follows. */
static void test_release_keep_alive(void **state)
{
    (void)state;
    memfit_manager *mgr = make_manager(1000 * MIB, true);
    struct fake_model a = {.weights_bytes = MIB}, pinned = a;
    add_model(mgr, "a", &a, 10, false);
    add_model(mgr, "pinned", &pinned, 10, true);
    memfit_handle *h, *h2;
    /* 0: unloaded by this release. */
    assert_int_equal(memfit_manager_acquire(mgr, "a", 0, &h), MEMFIT_OK);
    assert_int_equal(memfit_manager_release_keep_alive(h, 0), MEMFIT_OK);
    assert_int_equal(state_of(mgr, "a"), MEMFIT_MODEL_UNLOADED);
    /* 0 while another handle is out: the last release's keep_alive holds. */
    assert_int_equal(memfit_manager_acquire(mgr, "a", 0, &h), MEMFIT_OK);
    assert_int_equal(memfit_manager_acquire(mgr, "a", 0, &h2), MEMFIT_OK);
    assert_int_equal(memfit_manager_release_keep_alive(h, 0), MEMFIT_OK);
    assert_int_equal(state_of(mgr, "a"), MEMFIT_MODEL_BUSY);
    assert_int_equal(memfit_manager_release_keep_alive(h2, 0), MEMFIT_OK);
    assert_int_equal(state_of(mgr, "a"), MEMFIT_MODEL_UNLOADED);
    /* -1: never expires; the model's own 10 s is back after a plain release. */
    uint64_t t = atomic_load(&fake_clock_ns);
    assert_int_equal(memfit_manager_acquire(mgr, "a", 0, &h), MEMFIT_OK);
    assert_int_equal(memfit_manager_release_keep_alive(h, -1), MEMFIT_OK);
    assert_int_equal(model_status(mgr, "a").expires_at_ns, 0);
    assert_int_equal(memfit_manager_tick(mgr, t + 1000 * SEC), 0);
    assert_int_equal(state_of(mgr, "a"), MEMFIT_MODEL_READY);
    assert_int_equal(memfit_manager_acquire(mgr, "a", 0, &h), MEMFIT_OK);
    memfit_manager_release(h);
    assert_int_equal(model_status(mgr, "a").keep_alive_s, 10);
    assert_int_equal(memfit_manager_tick(mgr, atomic_load(&fake_clock_ns) + 11 * SEC), 1);
    /* N seconds. */
    t = atomic_load(&fake_clock_ns);
    assert_int_equal(memfit_manager_acquire(mgr, "a", 0, &h), MEMFIT_OK);
    assert_int_equal(memfit_manager_release_keep_alive(h, 100), MEMFIT_OK);
    assert_int_equal(memfit_manager_tick(mgr, t + 50 * SEC), 0);
    assert_int_equal(memfit_manager_tick(mgr, t + 101 * SEC), 1);
    /* A pinned model stays; a bad value is refused and the handle released all the same. */
    assert_int_equal(memfit_manager_acquire(mgr, "pinned", 0, &h), MEMFIT_OK);
    assert_int_equal(memfit_manager_release_keep_alive(h, 0), MEMFIT_OK);
    assert_int_equal(state_of(mgr, "pinned"), MEMFIT_MODEL_READY);
    assert_int_equal(memfit_manager_acquire(mgr, "pinned", 0, &h), MEMFIT_OK);
    assert_int_equal(memfit_manager_release_keep_alive(h, -5), MEMFIT_E_RANGE);
    assert_int_equal(model_status(mgr, "pinned").in_use, 0);
    memfit_manager_destroy(mgr);
}

/* The reaper thread applies keep_alive on its own. */
static void test_reaper_thread(void **state)
{
    (void)state;
    struct memfit_manager_options mo;
    memfit_manager_options_default(&mo);
    mo.budget_bytes = 100 * MIB;
    mo.reaper_interval_ms = 5;
    mo.clock = fake_clock;
    memfit_manager *mgr;
    assert_int_equal(memfit_manager_create(&mo, &mgr), MEMFIT_OK);
    struct fake_model f = {.weights_bytes = MIB};
    add_model(mgr, "m", &f, 2, false);
    assert_int_equal(use(mgr, "m"), MEMFIT_OK);
    atomic_fetch_add(&fake_clock_ns, 3 * SEC);
    for (int i = 0; i < 10000 && state_of(mgr, "m") != MEMFIT_MODEL_UNLOADED; i++)
        fake_sleep_ms(1);
    assert_int_equal(state_of(mgr, "m"), MEMFIT_MODEL_UNLOADED);
    memfit_manager_destroy(mgr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lazy_load_and_handles),
        cmocka_unit_test(test_eviction_lru),
        cmocka_unit_test(test_eviction_prefers_one_victim),
        cmocka_unit_test(test_lru_several_victims),
        cmocka_unit_test(test_pinned_and_in_use_never_evicted),
        cmocka_unit_test(test_waiting_load_evicts_model_that_becomes_idle),
        cmocka_unit_test(test_failed_fetch_evicts_nothing),
        cmocka_unit_test(test_failed_plan_after_fetch_evicts_nothing),
        cmocka_unit_test(test_plan_twice_around_fetch),
        cmocka_unit_test(test_larger_than_budget_refused_before_fetch),
        cmocka_unit_test(test_acquire_waits_for_busy_release),
        cmocka_unit_test(test_acquire_times_out_beside_busy_model),
        cmocka_unit_test(test_acquire_cancelled_while_waiting),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_release_keep_alive),
        cmocka_unit_test(test_unloading_disabled),
        cmocka_unit_test(test_identity_mismatch),
        cmocka_unit_test(test_failed_backoff_and_retry),
        cmocka_unit_test(test_single_flight),
        cmocka_unit_test(test_max_concurrency_and_queue),
        cmocka_unit_test(test_snapshot_and_events),
        cmocka_unit_test(test_reaper_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

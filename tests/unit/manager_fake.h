/*
 * Fake model drivers and a fake clock for the manager's unit tests
 * (header-only). A fake model costs what its config says, counts the driver
 * calls, can be told to fail (plan, fetch or load) or to load slowly, can
 * plan differently once fetched (a provisional plan, then the exact one), allocates through the
 * wrapper (so fault injection reaches it) and adds its bytes to a "world"
 * that records the most bytes ever loaded at once, which tests compare with
 * the budget.
 */
#ifndef MF_TEST_MANAGER_FAKE_H
#define MF_TEST_MANAGER_FAKE_H

#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "memfit/manager.h"

#define MIB (1024ull * 1024ull)

struct fake_world {
    _Atomic uint64_t loaded_bytes;
    _Atomic uint64_t max_loaded_bytes;
};

struct fake_model {
    struct fake_world *world;
    uint64_t weights_bytes;
    uint64_t workspace_bytes;
    _Atomic int n_plan, n_fetch, n_load, n_unload;
    _Atomic int fail_loads;         /* the next N loads fail with fail_status */
    enum memfit_status fail_status; /* E_FORMAT when left 0 */
    _Atomic int fail_fetches;       /* the next N fetches fail with E_NETWORK */
    _Atomic int fail_plan_call;     /* this plan call (1: the first) fails with E_FORMAT */
    uint64_t fetched_weights_bytes; /* non-zero: the weights planned once fetched */
    _Atomic int load_delay_ms;      /* a slow load, for single-flight tests */
    _Atomic int loaded;             /* loads minus unloads: must stay 0 or 1 */
    _Atomic int max_loaded;
};

static inline void fake_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static enum memfit_status fake_plan(void *config, const char *identity,
                                    struct memfit_budget_cost *out)
{
    (void)identity;
    struct fake_model *f = config;
    int call = atomic_fetch_add(&f->n_plan, 1) + 1;
    if (call == atomic_load(&f->fail_plan_call))
        return memfit_fail(MEMFIT_E_FORMAT, "fake.gguf: truncated header");
    memset(out, 0, sizeof(*out));
    out->bytes[MEMFIT_BUDGET_WEIGHTS] = f->fetched_weights_bytes && atomic_load(&f->n_fetch) > 0
                                            ? f->fetched_weights_bytes
                                            : f->weights_bytes;
    out->bytes[MEMFIT_BUDGET_WORKSPACE] = f->workspace_bytes;
    return MEMFIT_OK;
}

static enum memfit_status fake_fetch(void *config, const char *identity)
{
    (void)identity;
    struct fake_model *f = config;
    atomic_fetch_add(&f->n_fetch, 1);
    if (atomic_load(&f->fail_fetches) > 0) {
        atomic_fetch_sub(&f->fail_fetches, 1);
        return memfit_fail(MEMFIT_E_NETWORK, "fake://model: connection reset");
    }
    return MEMFIT_OK;
}

static enum memfit_status fake_load(void *config, const char *identity,
                                    const struct memfit_budget_cost *reserved, void **out)
{
    (void)identity;
    struct fake_model *f = config;
    atomic_fetch_add(&f->n_load, 1);
    int delay = atomic_load(&f->load_delay_ms);
    if (delay > 0)
        fake_sleep_ms(delay);
    if (atomic_load(&f->fail_loads) > 0) {
        atomic_fetch_sub(&f->fail_loads, 1);
        return memfit_fail(f->fail_status ? f->fail_status : MEMFIT_E_FORMAT,
                           "fake.gguf: bad magic");
    }
    void *model = memfit_malloc(64); /* something to leak if unload is missed */
    if (!model)
        return MEMFIT_E_NOMEM;
    int now = atomic_fetch_add(&f->loaded, 1) + 1;
    int max = atomic_load(&f->max_loaded);
    while (now > max && !atomic_compare_exchange_weak(&f->max_loaded, &max, now)) {
    }
    if (f->world) {
        uint64_t bytes = memfit_budget_cost_total(reserved);
        uint64_t total = atomic_fetch_add(&f->world->loaded_bytes, bytes) + bytes;
        uint64_t peak = atomic_load(&f->world->max_loaded_bytes);
        while (total > peak &&
               !atomic_compare_exchange_weak(&f->world->max_loaded_bytes, &peak, total)) {
        }
    }
    *out = model;
    return MEMFIT_OK;
}

static void fake_unload(void *config, void *model)
{
    struct fake_model *f = config;
    atomic_fetch_add(&f->n_unload, 1);
    atomic_fetch_sub(&f->loaded, 1);
    if (f->world)
        atomic_fetch_sub(&f->world->loaded_bytes, f->weights_bytes + f->workspace_bytes);
    memfit_free(model);
}

static const struct memfit_model_driver fake_driver = {
    .family = "fake",
    .plan = fake_plan,
    .load = fake_load,
    .unload = fake_unload,
};

static const struct memfit_model_driver fake_fetching_driver = {
    .family = "fake-remote",
    .plan = fake_plan,
    .fetch = fake_fetch,
    .load = fake_load,
    .unload = fake_unload,
};

/* A clock the test moves by hand. */
static _Atomic uint64_t fake_clock_ns;

static inline uint64_t fake_clock(void *user)
{
    (void)user;
    return atomic_load(&fake_clock_ns);
}

#endif

/* Unit tests of the manager's memory-pressure reaction, driven by made-up
 * samples through memfit_manager_pressure_tick (no timing involved): the
 * judged working set (cgroup working set vs usage minus unmapped inactive
 * file pages), warning unloading idle models but keeping pinned and busy
 * ones, critical pausing admission (acquires wait on other threads and go
 * on once the level falls, with the hysteresis), danger evicting every idle
 * model, events carrying the figures, the pressure thread, and an
 * allocation fault walk over the new entry points. Runs under TSan too. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdlib.h>

#include "test_util.h"
#include "unit/manager_fake.h"

#define LIMIT (1000 * MIB)

struct seen_event {
    enum memfit_manager_event_kind kind;
    char model[32];
    char reason[32];
    char message[512];
    enum memfit_level level, from;
    uint64_t pressure_bytes, pressure_limit;
    double percent;
    char cause[16];
    double psi_some, psi_full;
};

static struct {
    pthread_mutex_t lock;
    int n;
    struct seen_event e[64];
} seen = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void record(const struct memfit_manager_event *e, void *user)
{
    (void)user;
    pthread_mutex_lock(&seen.lock);
    if (seen.n < 64) {
        struct seen_event *s = &seen.e[seen.n++];
        s->kind = e->kind;
        snprintf(s->model, sizeof(s->model), "%s", e->model);
        snprintf(s->reason, sizeof(s->reason), "%s", e->reason);
        snprintf(s->message, sizeof(s->message), "%s", e->message);
        s->level = e->pressure_level;
        s->from = e->pressure_from;
        s->pressure_bytes = e->pressure_bytes;
        s->pressure_limit = e->pressure_limit_bytes;
        s->percent = e->pressure_percent;
        snprintf(s->cause, sizeof(s->cause), "%s", e->pressure_cause);
        s->psi_some = e->pressure_psi_some;
        s->psi_full = e->pressure_psi_full;
    }
    pthread_mutex_unlock(&seen.lock);
}

/* The first event of `kind` with `reason` (and `model` when not NULL), or NULL. */
static const struct seen_event *find_event(enum memfit_manager_event_kind kind, const char *reason,
                                           const char *model)
{
    const struct seen_event *found = NULL;
    pthread_mutex_lock(&seen.lock);
    for (int i = 0; i < seen.n && !found; i++)
        if (seen.e[i].kind == kind && strcmp(seen.e[i].reason, reason) == 0 &&
            (!model || strcmp(seen.e[i].model, model) == 0))
            found = &seen.e[i];
    pthread_mutex_unlock(&seen.lock);
    return found;
}

static int n_events(void)
{
    pthread_mutex_lock(&seen.lock);
    int n = seen.n;
    pthread_mutex_unlock(&seen.lock);
    return n;
}

static void clear_events(void)
{
    pthread_mutex_lock(&seen.lock);
    seen.n = 0;
    pthread_mutex_unlock(&seen.lock);
}

/* A cgroup sample: `usage` with `inactive_file` of it inactive file pages,
 * `file_mapped` of all file pages mapped. */
static struct memfit_sample cg_sample(uint64_t usage, uint64_t inactive_file, uint64_t file_mapped)
{
    struct memfit_sample s;
    memset(&s, 0, sizeof(s));
    s.have_cgroup = true;
    s.limit_source = MEMFIT_LIMIT_CGROUP;
    s.cgroup.limit_bytes = LIMIT;
    s.cgroup.usage_bytes = usage;
    s.cgroup.inactive_file_bytes = inactive_file;
    s.cgroup.file_mapped_bytes = file_mapped;
    s.cgroup.working_set_bytes = usage > inactive_file ? usage - inactive_file : 0;
    s.limit_bytes = LIMIT;
    s.working_set_bytes = s.cgroup.working_set_bytes;
    s.percent = 100.0 * (double)s.working_set_bytes / (double)LIMIT;
    return s;
}

/* A sample at `percent` of the limit, all of it anonymous memory. */
static struct memfit_sample at(double percent)
{
    return cg_sample((uint64_t)((double)LIMIT * percent / 100.0), 0, 0);
}

static memfit_manager *make_manager(bool unloading)
{
    struct memfit_manager_options o;
    memfit_manager_options_default(&o);
    o.budget_bytes = 100 * MIB;
    o.reaper_thread = false;
    o.unloading_enabled = unloading;
    o.on_event = record;
    memfit_manager *mgr;
    assert_int_equal(memfit_manager_create(&o, &mgr), MEMFIT_OK);
    clear_events();
    return mgr;
}

static void add(memfit_manager *mgr, const char *name, struct fake_model *f, bool pin)
{
    struct memfit_model_options o;
    memfit_model_options_default(&o);
    o.name = name;
    o.driver = &fake_driver;
    o.config = f;
    o.pin = pin;
    o.keep_alive_s = MEMFIT_KEEP_ALIVE_NEVER_UNLOAD;
    assert_int_equal(memfit_manager_register(mgr, &o), MEMFIT_OK);
}

static enum memfit_model_state state_of(memfit_manager *mgr, const char *name)
{
    struct memfit_manager_status *s;
    assert_int_equal(memfit_manager_snapshot(mgr, &s), MEMFIT_OK);
    enum memfit_model_state st = MEMFIT_MODEL_FAILED;
    for (size_t i = 0; i < s->n_models; i++)
        if (strcmp(s->models[i].name, name) == 0)
            st = s->models[i].state;
    memfit_free(s);
    return st;
}

static struct memfit_manager_status *snap(memfit_manager *mgr)
{
    struct memfit_manager_status *s;
    assert_int_equal(memfit_manager_snapshot(mgr, &s), MEMFIT_OK);
    return s;
}

/* Four models: idle "a", pinned idle "p", busy "b" (handle in *busy), never loaded "u". */
static void four_models(memfit_manager *mgr, struct fake_model f[4], memfit_handle **busy)
{
    memset(f, 0, 4 * sizeof(*f));
    for (int i = 0; i < 4; i++)
        f[i].weights_bytes = 10 * MIB;
    add(mgr, "a", &f[0], false);
    add(mgr, "p", &f[1], true);
    add(mgr, "b", &f[2], false);
    add(mgr, "u", &f[3], false);
    assert_int_equal(memfit_manager_load(mgr, "a", 0), MEMFIT_OK);
    assert_int_equal(memfit_manager_load_pinned(mgr, 0), MEMFIT_OK);
    assert_int_equal(memfit_manager_acquire(mgr, "b", 0, busy), MEMFIT_OK);
    clear_events();
}

static void test_judged_working_set(void **state)
{
    (void)state;
    uint64_t limit;
    /* Inactive file pages partly mapped (fresh weights): only the unmapped
     * part counts as reclaimable. */
    struct memfit_sample s = cg_sample(900 * MIB, 300 * MIB, 250 * MIB);
    assert_int_equal(s.cgroup.working_set_bytes, 600 * MIB);
    assert_int_equal(memfit_pressure_bytes(&s, &limit), 850 * MIB);
    assert_int_equal(limit, LIMIT);
    /* All inactive file pages mapped: the whole usage counts. */
    s = cg_sample(900 * MIB, 300 * MIB, 400 * MIB);
    assert_int_equal(memfit_pressure_bytes(&s, NULL), 900 * MIB);
    /* Nothing mapped: the plain working set. */
    s = cg_sample(900 * MIB, 300 * MIB, 0);
    assert_int_equal(memfit_pressure_bytes(&s, NULL), 600 * MIB);
    /* Missing memory.stat: the usage (the conservative figure). */
    s = cg_sample(900 * MIB, 0, 0);
    s.cgroup.inactive_file_bytes = MEMFIT_SYS_UNKNOWN;
    s.cgroup.working_set_bytes = MEMFIT_SYS_UNKNOWN;
    assert_int_equal(memfit_pressure_bytes(&s, NULL), 900 * MIB);
    /* No cgroup limit: the sample's own (system) working set. */
    s = cg_sample(900 * MIB, 0, 0);
    s.have_cgroup = false;
    s.limit_source = MEMFIT_LIMIT_MEMORY;
    s.limit_bytes = 4000 * MIB;
    s.working_set_bytes = 1000 * MIB;
    assert_int_equal(memfit_pressure_bytes(&s, &limit), 1000 * MIB);
    assert_int_equal(limit, 4000 * MIB);
    /* Nothing known: UNKNOWN, and a tick with it changes nothing. */
    s.limit_bytes = MEMFIT_SYS_UNKNOWN;
    assert_int_equal(memfit_pressure_bytes(&s, &limit), MEMFIT_SYS_UNKNOWN);
    assert_int_equal(limit, MEMFIT_SYS_UNKNOWN);
    memfit_manager *mgr = make_manager(true);
    assert_int_equal(memfit_manager_pressure_tick(mgr, &s), MEMFIT_LEVEL_OK);
    struct memfit_manager_status *st = snap(mgr);
    assert_int_equal(st->pressure_ticks, 0);
    memfit_free(st);
    /* The mapped inactive pages decide the level: 600 MiB working set is
     * OK, but 850 MiB judged is a warning. */
    s = cg_sample(850 * MIB, 300 * MIB, 250 * MIB);
    assert_int_equal(memfit_manager_pressure_tick(mgr, &s), MEMFIT_LEVEL_WARNING);
    memfit_manager_destroy(mgr);
}

static void test_warning_unloads_idle(void **state)
{
    (void)state;
    memfit_manager *mgr = make_manager(true);
    struct fake_model f[4];
    memfit_handle *busy;
    four_models(mgr, f, &busy);

    struct memfit_sample s = at(50);
    assert_int_equal(memfit_manager_pressure_tick(mgr, &s), MEMFIT_LEVEL_OK);
    assert_int_equal(state_of(mgr, "a"), MEMFIT_MODEL_READY);
    assert_int_equal(n_events(), 0);

    s = at(85);
    assert_int_equal(memfit_manager_pressure_tick(mgr, &s), MEMFIT_LEVEL_WARNING);
    assert_int_equal(state_of(mgr, "a"), MEMFIT_MODEL_UNLOADED);
    assert_int_equal(state_of(mgr, "p"), MEMFIT_MODEL_READY); /* pinned: kept */
    assert_int_equal(state_of(mgr, "b"), MEMFIT_MODEL_BUSY);  /* in use: kept */
    assert_int_equal(state_of(mgr, "u"), MEMFIT_MODEL_UNLOADED);
    assert_int_equal(atomic_load(&f[0].n_unload), 1);
    assert_int_equal(atomic_load(&f[1].n_unload), 0);

    const struct seen_event *e = find_event(MEMFIT_EVENT_PRESSURE, "level", NULL);
    assert_non_null(e);
    assert_int_equal(e->from, MEMFIT_LEVEL_OK);
    assert_int_equal(e->level, MEMFIT_LEVEL_WARNING);
    assert_int_equal(e->pressure_bytes, 850 * MIB);
    assert_int_equal(e->pressure_limit, LIMIT);
    assert_true(e->percent > 84.9 && e->percent < 85.1);
    assert_non_null(strstr(e->message, "ok -> warning"));
    assert_non_null(strstr(e->message, "850.0 MiB of cgroup limit 1000.0 MiB (85.0%"));
    e = find_event(MEMFIT_EVENT_UNLOAD, "pressure", "a");
    assert_non_null(e);
    assert_int_equal(e->level, MEMFIT_LEVEL_WARNING);
    assert_null(find_event(MEMFIT_EVENT_UNLOAD, "pressure", "p"));
    e = find_event(MEMFIT_EVENT_PRESSURE, "unload idle", NULL);
    assert_non_null(e);
    assert_non_null(strstr(e->message, "unloaded 1 idle model(s), freed 10.0 MiB"));
    assert_non_null(find_event(MEMFIT_EVENT_PRESSURE, "trim heap", NULL));
    assert_null(find_event(MEMFIT_EVENT_PRESSURE, "pause admission", NULL));

    struct memfit_manager_status *st = snap(mgr);
    assert_int_equal(st->pressure_level, MEMFIT_LEVEL_WARNING);
    assert_false(st->admission_paused);
    assert_int_equal(st->pressure_unloads, 1);
    assert_int_equal(st->pressure_freed_bytes, 10 * MIB);
    assert_int_equal(st->pressure_ticks, 2);
    memfit_free(st);

    /* Warning does not pause: a model still loads; the next tick at
     * warning unloads it once idle (and only then). */
    memfit_handle *h;
    assert_int_equal(memfit_manager_acquire(mgr, "a", 0, &h), MEMFIT_OK);
    clear_events();
    assert_int_equal(memfit_manager_pressure_tick(mgr, &s), MEMFIT_LEVEL_WARNING);
    assert_int_equal(state_of(mgr, "a"), MEMFIT_MODEL_BUSY);
    assert_int_equal(n_events(), 0); /* no change, nothing done: nothing said */
    memfit_manager_release(h);
    assert_int_equal(memfit_manager_pressure_tick(mgr, &s), MEMFIT_LEVEL_WARNING);
    assert_int_equal(state_of(mgr, "a"), MEMFIT_MODEL_UNLOADED);

    /* Hysteresis: 79% is below the 80% threshold but not by the 2% margin. */
    s = at(79);
    assert_int_equal(memfit_manager_pressure_tick(mgr, &s), MEMFIT_LEVEL_WARNING);
    s = at(77);
    clear_events();
    assert_int_equal(memfit_manager_pressure_tick(mgr, &s), MEMFIT_LEVEL_OK);
    e = find_event(MEMFIT_EVENT_PRESSURE, "level", NULL);
    assert_non_null(e);
    assert_int_equal(e->from, MEMFIT_LEVEL_WARNING);
    assert_int_equal(e->level, MEMFIT_LEVEL_OK);

    memfit_manager_release(busy);
    memfit_manager_destroy(mgr);
    for (int i = 0; i < 4; i++)
        assert_int_equal(atomic_load(&f[i].loaded), 0);
}

struct waiter {
    memfit_manager *mgr;
    const char *name;
    enum memfit_status st;
};

static void *waiter_main(void *arg)
{
    struct waiter *w = arg;
    memfit_handle *h = NULL;
    w->st = memfit_manager_acquire(w->mgr, w->name, 60000, &h);
    if (w->st == MEMFIT_OK)
        memfit_manager_release(h);
    return NULL;
}

static unsigned queue_depth(memfit_manager *mgr)
{
    struct memfit_manager_status *s = snap(mgr);
    unsigned n = s->queue_depth;
    memfit_free(s);
    return n;
}

static void test_critical_pauses_admission(void **state)
{
    (void)state;
    memfit_manager *mgr = make_manager(true);
    struct fake_model f[4];
    memfit_handle *busy;
    four_models(mgr, f, &busy);

    struct memfit_sample s = at(91);
    assert_int_equal(memfit_manager_pressure_tick(mgr, &s), MEMFIT_LEVEL_CRITICAL);
    struct memfit_manager_status *st = snap(mgr);
    assert_int_equal(st->pressure_level, MEMFIT_LEVEL_CRITICAL);
    assert_true(st->admission_paused);
    memfit_free(st);
    assert_non_null(find_event(MEMFIT_EVENT_PRESSURE, "pause admission", NULL));
    assert_int_equal(state_of(mgr, "a"), MEMFIT_MODEL_UNLOADED); /* critical >= warning */
    assert_int_equal(state_of(mgr, "p"), MEMFIT_MODEL_READY);

    /* A loaded model too: nothing new is admitted. Timeout 0 does not wait. */
    memfit_handle *h;
    assert_int_equal(memfit_manager_acquire(mgr, "p", 0, &h), MEMFIT_E_BUSY);
    assert_non_null(strstr(memfit_last_error(), "admission paused by memory pressure (critical"));
    assert_non_null(strstr(memfit_last_error(), "910.0 MiB of cgroup limit 1000.0 MiB"));
    assert_int_equal(memfit_manager_acquire(mgr, "u", 20, &h), MEMFIT_E_TIMEOUT);
    assert_non_null(strstr(memfit_last_error(), "timed out after 20 ms"));
    assert_non_null(strstr(memfit_last_error(), "memory pressure"));
    assert_int_equal(atomic_load(&f[3].n_load), 0);
    const struct seen_event *e = find_event(MEMFIT_EVENT_REFUSE, "", "u");
    assert_non_null(e);
    assert_int_equal(e->level, MEMFIT_LEVEL_CRITICAL);
    /* The handle already out is not touched. */
    assert_int_equal(state_of(mgr, "b"), MEMFIT_MODEL_BUSY);

    /* Two acquires on other threads wait... */
    struct waiter w[2] = {{mgr, "u", MEMFIT_E_IO}, {mgr, "p", MEMFIT_E_IO}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, waiter_main, &w[i]), 0);
    while (queue_depth(mgr) < 2)
        fake_sleep_ms(1);
    /* ...through a tick still within the hysteresis (89% > 90% - 2%)... */
    s = at(89);
    assert_int_equal(memfit_manager_pressure_tick(mgr, &s), MEMFIT_LEVEL_CRITICAL);
    st = snap(mgr);
    assert_true(st->admission_paused);
    assert_int_equal(st->queue_depth, 2);
    memfit_free(st);
    assert_null(find_event(MEMFIT_EVENT_PRESSURE, "resume admission", NULL));
    /* ...and go on once the level falls below critical. */
    s = at(87);
    assert_int_equal(memfit_manager_pressure_tick(mgr, &s), MEMFIT_LEVEL_WARNING);
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].st, MEMFIT_OK);
    }
    e = find_event(MEMFIT_EVENT_PRESSURE, "resume admission", NULL);
    assert_non_null(e);
    assert_int_equal(e->from, MEMFIT_LEVEL_CRITICAL);
    assert_int_equal(e->level, MEMFIT_LEVEL_WARNING);
    st = snap(mgr);
    assert_false(st->admission_paused);
    assert_true(st->pressure_paused_ns > 0);
    memfit_free(st);
    assert_int_equal(atomic_load(&f[3].n_load), 1);

    memfit_manager_release(busy);
    memfit_manager_destroy(mgr);
}

static void test_danger_evicts_all_idle(void **state)
{
    (void)state;
    memfit_manager *mgr = make_manager(true);
    struct fake_model f[4];
    memfit_handle *busy;
    four_models(mgr, f, &busy);

    /* Straight from OK to danger (less than 50 MB left). */
    struct memfit_sample s = at(97);
    assert_int_equal(memfit_manager_pressure_tick(mgr, &s), MEMFIT_LEVEL_DANGER);
    assert_int_equal(state_of(mgr, "a"), MEMFIT_MODEL_UNLOADED);
    assert_int_equal(state_of(mgr, "p"), MEMFIT_MODEL_UNLOADED); /* pinned: evicted too */
    assert_int_equal(state_of(mgr, "b"), MEMFIT_MODEL_BUSY);     /* in use: never */
    assert_non_null(find_event(MEMFIT_EVENT_EVICT, "pressure", "a"));
    const struct seen_event *e = find_event(MEMFIT_EVENT_EVICT, "pressure", "p");
    assert_non_null(e);
    assert_int_equal(e->level, MEMFIT_LEVEL_DANGER);
    e = find_event(MEMFIT_EVENT_PRESSURE, "evict idle", NULL);
    assert_non_null(e);
    assert_non_null(strstr(e->message, "evicted 2 idle model(s)"));
    assert_non_null(strstr(e->message, "danger: working set 970.0 MiB"));
    assert_non_null(find_event(MEMFIT_EVENT_PRESSURE, "pause admission", NULL));
    e = find_event(MEMFIT_EVENT_PRESSURE, "level", NULL);
    assert_non_null(e);
    assert_int_equal(e->from, MEMFIT_LEVEL_OK);

    /* The busy model goes at the next tick once it is released. */
    memfit_manager_release(busy);
    assert_int_equal(memfit_manager_pressure_tick(mgr, &s), MEMFIT_LEVEL_DANGER);
    assert_int_equal(state_of(mgr, "b"), MEMFIT_MODEL_UNLOADED);
    struct memfit_manager_status *st = snap(mgr);
    assert_int_equal(st->pressure_unloads, 3);
    assert_int_equal(st->budget.reserved_bytes, 0);
    assert_int_equal(st->models[1].n_evictions, 1);
    memfit_free(st);

    /* Down in steps: danger -> critical (still paused) -> ok. */
    s = at(93);
    assert_int_equal(memfit_manager_pressure_tick(mgr, &s), MEMFIT_LEVEL_CRITICAL);
    st = snap(mgr);
    assert_true(st->admission_paused);
    memfit_free(st);
    s = at(10);
    assert_int_equal(memfit_manager_pressure_tick(mgr, &s), MEMFIT_LEVEL_OK);
    st = snap(mgr);
    assert_false(st->admission_paused);
    memfit_free(st);
    assert_int_equal(memfit_manager_load(mgr, "p", 0), MEMFIT_OK);
    memfit_manager_destroy(mgr);
}

static void test_unloading_disabled(void **state)
{
    (void)state;
    memfit_manager *mgr = make_manager(false);
    struct fake_model f[4];
    memfit_handle *busy;
    four_models(mgr, f, &busy);
    struct memfit_sample s = at(99);
    assert_int_equal(memfit_manager_pressure_tick(mgr, &s), MEMFIT_LEVEL_DANGER);
    assert_int_equal(state_of(mgr, "a"), MEMFIT_MODEL_READY);
    assert_int_equal(state_of(mgr, "p"), MEMFIT_MODEL_READY);
    assert_null(find_event(MEMFIT_EVENT_PRESSURE, "evict idle", NULL));
    memfit_handle *h;
    assert_int_equal(memfit_manager_acquire(mgr, "a", 0, &h), MEMFIT_E_BUSY);
    memfit_manager_release(busy);
    memfit_manager_destroy(mgr);
}

static void test_bad_thresholds(void **state)
{
    (void)state;
    struct memfit_manager_options o;
    memfit_manager_options_default(&o);
    o.budget_bytes = MIB;
    o.pressure_thresholds.warning_percent = 95;
    memfit_manager *mgr;
    assert_int_equal(memfit_manager_create(&o, &mgr), MEMFIT_E_RANGE);
    assert_non_null(strstr(memfit_last_error(), "pressure thresholds"));
}

static void test_config(void **state)
{
    (void)state;
    struct memfit_manager_options o;
    memfit_manager_options_default(&o);
    assert_false(o.pressure_thread);
    setenv("MEMFIT_MEMORY_PRESSURE", "on", 1);
    assert_int_equal(memfit_manager_options_from_config(&o), MEMFIT_OK);
    assert_true(o.pressure_thread);
    setenv("MEMFIT_MEMORY_PRESSURE", "sometimes", 1);
    o.pressure_thread = false;
    assert_int_equal(memfit_manager_options_from_config(&o), MEMFIT_E_RANGE);
    assert_non_null(
        strstr(memfit_last_error(), "MEMFIT_MEMORY_PRESSURE: invalid value 'sometimes'"));
    assert_false(o.pressure_thread);
    unsetenv("MEMFIT_MEMORY_PRESSURE");
}

/* The thread samples the real machine: it only has to tick. */
static void test_pressure_thread(void **state)
{
    (void)state;
    struct memfit_manager_options o;
    memfit_manager_options_default(&o);
    o.budget_bytes = 100 * MIB;
    o.reaper_thread = false;
    o.pressure_thread = true;
    o.pressure_interval_ms = 1;
    memfit_manager *mgr;
    assert_int_equal(memfit_manager_create(&o, &mgr), MEMFIT_OK);
    for (;;) {
        struct memfit_manager_status *st = snap(mgr);
        uint64_t ticks = st->pressure_ticks;
        uint64_t limit = st->pressure_limit_bytes;
        memfit_free(st);
        if (ticks > 0) {
            assert_true(limit > 0);
            break;
        }
        fake_sleep_ms(1);
    }
    memfit_manager_destroy(mgr);
}

/* Fault walk: create (with the pressure thread's sampler), register, load,
 * ticks through every level, snapshot, destroy. */
static enum memfit_status pressure_op(void *arg)
{
    struct fake_model *f = arg;
    struct memfit_manager_options o;
    memfit_manager_options_default(&o);
    o.budget_bytes = 100 * MIB;
    o.reaper_thread = false;
    o.pressure_thread = true;
    o.pressure_interval_ms = 3600u * 1000u; /* never ticks during the walk */
    memfit_manager *mgr;
    enum memfit_status st = memfit_manager_create(&o, &mgr);
    if (st != MEMFIT_OK)
        return st;
    struct memfit_model_options mo;
    memfit_model_options_default(&mo);
    mo.name = "dino";
    mo.driver = &fake_driver;
    mo.config = f;
    mo.keep_alive_s = -1;
    st = memfit_manager_register(mgr, &mo);
    if (st == MEMFIT_OK)
        st = memfit_manager_load(mgr, "dino", 0);
    static const double levels[] = {85, 92, 99, 50};
    for (int i = 0; i < 4 && st == MEMFIT_OK; i++) {
        struct memfit_sample s = at(levels[i]);
        memfit_manager_pressure_tick(mgr, &s);
        struct memfit_manager_status *snapshot;
        st = memfit_manager_snapshot(mgr, &snapshot);
        if (st == MEMFIT_OK) {
            if (snapshot->models[0].state != MEMFIT_MODEL_UNLOADED)
                st = MEMFIT_E_IO; /* unloaded at the first tick */
            memfit_free(snapshot);
        }
    }
    memfit_manager_destroy(mgr);
    return st;
}

/* A sample at `percent` with the given memory PSI avg10 (system-wide). */
static struct memfit_sample with_psi(double percent, double some, double full)
{
    struct memfit_sample s = at(percent);
    s.psi.present = true;
    s.psi.some_avg10 = some;
    s.psi.full_avg10 = full;
    return s;
}

static void test_psi_raises_level(void **state)
{
    (void)state;
    memfit_manager *mgr = make_manager(true);
    struct fake_model f[4];
    memfit_handle *busy;
    four_models(mgr, f, &busy);

    /* PSI below its thresholds changes nothing; the cause is the memory. */
    struct memfit_sample s = with_psi(50, 9.9, 4.9);
    assert_int_equal(memfit_manager_pressure_tick(mgr, &s), MEMFIT_LEVEL_OK);
    assert_int_equal(n_events(), 0);

    /* some avg10 at 12% with the working set at half the limit: warning,
     * idle models unloaded, and the event says PSI was the cause. */
    s = with_psi(50, 12, 1);
    assert_int_equal(memfit_manager_pressure_tick(mgr, &s), MEMFIT_LEVEL_WARNING);
    assert_int_equal(state_of(mgr, "a"), MEMFIT_MODEL_UNLOADED);
    const struct seen_event *e = find_event(MEMFIT_EVENT_PRESSURE, "level", NULL);
    assert_non_null(e);
    assert_int_equal(e->level, MEMFIT_LEVEL_WARNING);
    assert_string_equal(e->cause, "psi");
    assert_true(e->psi_some == 12 && e->psi_full == 1);
    assert_non_null(strstr(e->message, "ok -> warning (memory PSI some avg10 12.0% >= 10%)"));
    assert_non_null(strstr(e->message, "memory PSI avg10 some 12.0%, full 1.0%"));
    e = find_event(MEMFIT_EVENT_UNLOAD, "pressure", "a");
    assert_non_null(e);
    assert_string_equal(e->cause, "psi");

    /* full avg10 at 6%: critical, admission paused. */
    clear_events();
    s = with_psi(50, 30, 6);
    assert_int_equal(memfit_manager_pressure_tick(mgr, &s), MEMFIT_LEVEL_CRITICAL);
    struct memfit_manager_status *st = snap(mgr);
    assert_true(st->admission_paused);
    assert_string_equal(st->pressure_cause, "psi");
    assert_true(st->pressure_psi_full == 6);
    memfit_free(st);
    e = find_event(MEMFIT_EVENT_PRESSURE, "level", NULL);
    assert_non_null(e);
    assert_non_null(strstr(e->message, "warning -> critical (memory PSI full avg10 6.0% >= 5%)"));
    assert_non_null(find_event(MEMFIT_EVENT_PRESSURE, "pause admission", NULL));

    /* Hysteresis (2 points, at most half the threshold): full 4% holds
     * critical, 2% lets it fall to warning (some 9% holds that), 7% to ok. */
    s = with_psi(50, 9, 4);
    assert_int_equal(memfit_manager_pressure_tick(mgr, &s), MEMFIT_LEVEL_CRITICAL);
    s = with_psi(50, 9, 2);
    assert_int_equal(memfit_manager_pressure_tick(mgr, &s), MEMFIT_LEVEL_WARNING);
    st = snap(mgr);
    assert_false(st->admission_paused);
    memfit_free(st);
    s = with_psi(50, 7, 0);
    assert_int_equal(memfit_manager_pressure_tick(mgr, &s), MEMFIT_LEVEL_OK);

    /* The working set above its threshold is named as the cause, PSI or not. */
    clear_events();
    s = with_psi(85, 12, 0);
    assert_int_equal(memfit_manager_pressure_tick(mgr, &s), MEMFIT_LEVEL_WARNING);
    e = find_event(MEMFIT_EVENT_PRESSURE, "level", NULL);
    assert_non_null(e);
    assert_string_equal(e->cause, "memory");
    assert_null(strstr(e->message, "(memory PSI"));

    /* The cgroup's own memory.pressure is preferred to the system's. */
    s = with_psi(50, 0, 0);
    s.cgroup.pressure.present = true;
    s.cgroup.pressure.some_avg10 = 0;
    s.cgroup.pressure.full_avg10 = 50;
    assert_int_equal(memfit_manager_pressure_tick(mgr, &s), MEMFIT_LEVEL_CRITICAL);
    s.cgroup.pressure.full_avg10 = 0;
    s.psi.full_avg10 = 50; /* the system's is ignored while the cgroup's is there */
    assert_int_equal(memfit_manager_pressure_tick(mgr, &s), MEMFIT_LEVEL_OK);
    /* No PSI at all: the working set alone. */
    s = at(50);
    assert_int_equal(memfit_manager_pressure_tick(mgr, &s), MEMFIT_LEVEL_OK);
    st = snap(mgr);
    assert_true(st->pressure_psi_some < 0);
    memfit_free(st);
    memfit_manager_release(busy);
    memfit_manager_destroy(mgr);

    /* Thresholds of 0 turn PSI off; out-of-range ones are refused. */
    struct memfit_manager_options o;
    memfit_manager_options_default(&o);
    assert_true(o.pressure_psi_some_percent == 10 && o.pressure_psi_full_percent == 5);
    o.budget_bytes = 100 * MIB;
    o.reaper_thread = false;
    o.pressure_psi_some_percent = 0;
    o.pressure_psi_full_percent = 0;
    assert_int_equal(memfit_manager_create(&o, &mgr), MEMFIT_OK);
    s = with_psi(50, 90, 90);
    assert_int_equal(memfit_manager_pressure_tick(mgr, &s), MEMFIT_LEVEL_OK);
    memfit_manager_destroy(mgr);
    o.pressure_psi_full_percent = 101;
    assert_int_equal(memfit_manager_create(&o, &mgr), MEMFIT_E_RANGE);
    assert_non_null(strstr(memfit_last_error(), "PSI"));
}

static void test_pressure_alloc_failures(void **state)
{
    (void)state;
    struct fake_model f;
    memset(&f, 0, sizeof(f));
    f.weights_bytes = MIB;
    assert_true(mf_test_alloc_failures(pressure_op, NULL, &f) > 1);
    assert_int_equal(atomic_load(&f.loaded), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_judged_working_set),
        cmocka_unit_test(test_warning_unloads_idle),
        cmocka_unit_test(test_critical_pauses_admission),
        cmocka_unit_test(test_danger_evicts_all_idle),
        cmocka_unit_test(test_unloading_disabled),
        cmocka_unit_test(test_bad_thresholds),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_pressure_thread),
        cmocka_unit_test(test_psi_raises_level),
        cmocka_unit_test(test_pressure_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * The model manager: a registry of named models driven through
 * struct memfit_model_driver, with lazy single-flight loading,
 * reference-counted handles, keep_alive, pinning, LRU eviction for the
 * budget, bounded admission and a status snapshot.
 *
 * DESIGN. One mutex guards every model's state and the admission queue; one
 * condition variable (monotonic clock) wakes acquires waiting for a load, an
 * unload or a concurrency slot. Driver calls (plan, fetch, load, unload) and
 * budget reservations never run under the mutex: the thread that does them
 * first moves the model to a transitional state (FETCHING, LOADING,
 * UNLOADING) that no other thread will touch, so loads are single-flight and
 * a model with handles out is never unloaded (only READY models with a zero
 * reference count are unloaded or evicted). Events are emitted with the
 * mutex released.
 *
 * Lock order: manager, then budget. The budget calls the evictor
 * (evict_for) with its own lock released, and the evictor takes the
 * manager's.
 *
 * Policy times (keep_alive, last use, back-off) come from an injectable
 * clock so tests drive them with a fake one; waits use the real monotonic
 * clock.
 *
 * Memory pressure: memfit_manager_pressure_tick() (the optional pressure
 * thread's, or a test's made-up samples) keeps the level and the "admission
 * paused" flag under the manager lock; acquires check the flag at the top
 * of their wait loop, so a paused acquire is an ordinary queued waiter woken
 * by the broadcast that lifts the pause. Ticks are serialized by their own
 * lock, taken before the manager's (order: pressure, manager, budget).
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "manager/budget.h"

struct mf_model;

struct memfit_handle {
    struct mf_model *model;
};

struct mf_model {
    struct memfit_handle handle; /* what acquire hands out; one per model */
    memfit_manager *mgr;
    char *name;
    char *family; /* for status: the options' label, else the driver's */
    char *identity;
    const struct memfit_model_driver *driver;
    void *config;
    int64_t keep_alive_s; /* resolved */
    /* The keep_alive of the idle time that runs now: the model's, or the one
     * the last release asked for (memfit_manager_release_keep_alive). */
    int64_t idle_keep_alive_s;
    bool pin;
    unsigned max_concurrency;

    enum memfit_model_state state;
    void *loaded;
    memfit_reservation *reservation;
    struct memfit_budget_cost cost; /* last plan */
    unsigned refcount;
    unsigned waiting;
    bool victim;    /* chosen by the evictor, being unloaded */
    bool retired;   /* unregistered: invisible to lookups, unloaded when idle */
    unsigned users; /* threads using the record with the lock released (besides handles) */
    struct mf_model *next_swept; /* sweep_locked's list */

    uint64_t lru_seq; /* manager-wide order of last use (clock ties are common) */
    uint64_t last_used_ns, loaded_at_ns, load_time_ns, idle_since_ns, retry_at_ns;
    uint64_t n_requests, n_loads, n_unloads, n_evictions, n_failures, n_refusals;
    unsigned consecutive_failures;
    enum memfit_status last_status;
    char last_error[512];
};

struct memfit_manager {
    pthread_mutex_t lock;
    pthread_cond_t cond; /* model state changes, for waiting acquires */
    memfit_budget *budget;
    struct memfit_manager_options opt;
    /* Retired records leave the array only while no walker runs, so the
     * indices of a loop that unlocks stay valid (sweep_locked). */
    struct mf_model **models;
    size_t n_models, cap_models;
    unsigned walkers;   /* loops over `models` that release the lock inside */
    unsigned n_waiting; /* the admission queue's depth */
    uint64_t seq;

    pthread_cond_t reaper_cond; /* also wakes the pressure thread to stop */
    pthread_t reaper;
    bool reaper_started;
    bool stopping;

    /* Memory pressure (under lock; pressure_lock serializes ticks). */
    pthread_mutex_t pressure_lock;
    enum memfit_level level;
    bool paused;
    uint64_t p_bytes, p_limit, p_cg_ws, p_cg_usage;
    bool p_cgroup;
    double p_percent;
    uint64_t p_ticks, p_unloads, p_freed, p_paused_ns, p_paused_since;
    const char *p_cause;           /* "memory", "psi", "" before the first tick */
    double p_psi_some, p_psi_full; /* memory PSI avg10 (percent); -1 when absent */
    pthread_t pressure;
    bool pressure_started;
    memfit_sampler *sampler;
};

static const char *const state_names[] = {"unloaded", "fetching",  "loading", "ready",
                                          "busy",     "unloading", "failed"};

const char *memfit_model_state_name(enum memfit_model_state state)
{
    if ((unsigned)state >= sizeof(state_names) / sizeof(state_names[0]))
        return "unknown";
    return state_names[state];
}

static const char *const event_names[] = {"load", "unload", "evict", "refuse", "fail", "pressure"};

const char *memfit_manager_event_name(enum memfit_manager_event_kind kind)
{
    if ((unsigned)kind >= sizeof(event_names) / sizeof(event_names[0]))
        return "unknown";
    return event_names[kind];
}

void memfit_model_options_default(struct memfit_model_options *options)
{
    memset(options, 0, sizeof(*options));
    options->keep_alive_s = MEMFIT_KEEP_ALIVE_DEFAULT;
}

void memfit_manager_options_default(struct memfit_manager_options *options)
{
    memset(options, 0, sizeof(*options));
    options->default_keep_alive_s = 300;
    options->unloading_enabled = true;
    options->admission_timeout_ms = 30000;
    options->max_queue = 512;
    options->backoff_initial_ms = 1000;
    options->backoff_max_ms = 300000;
    options->reaper_thread = true;
    options->reaper_interval_ms = 1000;
    options->pressure_interval_ms = 1000;
    options->pressure_thresholds = memfit_alert_thresholds_default();
    options->pressure_psi_some_percent = 10;
    options->pressure_psi_full_percent = 5;
}

/* A boolean setting: *out unchanged when unset; E_RANGE naming it when unreadable. */
static enum memfit_status config_bool(const char *name, bool *out)
{
    const char *v = memfit_config_get(name);
    if (!v || !v[0])
        return MEMFIT_OK;
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = true;
            return MEMFIT_OK;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *out = false;
            return MEMFIT_OK;
        }
    }
    return memfit_fail(MEMFIT_E_RANGE, "%s: invalid value '%s' (expected true or false)", name, v);
}

enum memfit_status memfit_manager_options_from_config(struct memfit_manager_options *options)
{
    bool unloading = options->unloading_enabled, pressure = options->pressure_thread;
    enum memfit_status st = config_bool("MEMFIT_ENABLE_MODEL_UNLOADING", &unloading);
    if (st == MEMFIT_OK)
        st = config_bool("MEMFIT_MEMORY_PRESSURE", &pressure);
    if (st != MEMFIT_OK)
        return st;
    options->unloading_enabled = unloading;
    options->pressure_thread = pressure;
    return MEMFIT_OK;
}

static uint64_t clock_now(const memfit_manager *mgr)
{
    return mgr->opt.clock ? mgr->opt.clock(mgr->opt.clock_user) : memfit_now_ns();
}

static uint64_t seconds_to_ns(int64_t s)
{
    return s < 0                                    ? UINT64_MAX
           : (uint64_t)s > UINT64_MAX / 1000000000u ? UINT64_MAX
                                                    : (uint64_t)s * 1000000000u;
}

static void wake_waiters_locked(memfit_manager *mgr)
{
    if (mgr->n_waiting > 0)
        pthread_cond_broadcast(&mgr->cond);
}

/* ---- Events ----------------------------------------------------------------- */

struct event_args {
    enum memfit_manager_event_kind kind;
    const char *model;
    enum memfit_status status;
    uint64_t bytes;
    uint64_t duration_ns;
    const char *reason;
    const char *message;
    enum memfit_level from; /* PRESSURE */
};

/* Logs the event and hands it to the callback. Called with the lock released. */
static void emit(memfit_manager *mgr, const struct event_args *a)
{
    char b1[32], b2[32], b3[32];
    struct memfit_budget_usage u;
    memfit_budget_get_usage(mgr->budget, &u);
    pthread_mutex_lock(&mgr->lock);
    enum memfit_level level = mgr->level;
    uint64_t p_bytes = mgr->p_bytes, p_limit = mgr->p_limit;
    double p_percent = mgr->p_percent, psi_some = mgr->p_psi_some, psi_full = mgr->p_psi_full;
    const char *cause = mgr->p_cause;
    pthread_mutex_unlock(&mgr->lock);
    mf_format_bytes(a->bytes, b1, sizeof(b1));
    mf_format_bytes(u.free_bytes, b2, sizeof(b2));
    mf_format_bytes(u.size_bytes, b3, sizeof(b3));
    switch (a->kind) {
    case MEMFIT_EVENT_LOAD:
        memfit_log(MEMFIT_LOG_INFO, "model %s loaded: %s in %.1f ms; %s free of %s", a->model, b1,
                   (double)a->duration_ns / 1e6, b2, b3);
        break;
    case MEMFIT_EVENT_UNLOAD:
        memfit_log(MEMFIT_LOG_INFO, "model %s unloaded (%s): freed %s; %s free of %s", a->model,
                   a->reason, b1, b2, b3);
        break;
    case MEMFIT_EVENT_EVICT:
        memfit_log(MEMFIT_LOG_INFO, "model %s evicted for %s: freed %s; %s free of %s", a->model,
                   a->reason, b1, b2, b3);
        break;
    case MEMFIT_EVENT_REFUSE:
        memfit_log(MEMFIT_LOG_WARN, "model %s refused: %s", a->model, a->message);
        break;
    case MEMFIT_EVENT_FAIL:
        memfit_log(MEMFIT_LOG_ERROR, "model %s failed: %s", a->model, a->message);
        break;
    case MEMFIT_EVENT_PRESSURE:
        memfit_log(level >= MEMFIT_LEVEL_WARNING ? MEMFIT_LOG_WARN : MEMFIT_LOG_INFO, "%s",
                   a->message);
        break;
    }
    if (!mgr->opt.on_event)
        return;
    struct memfit_manager_event e = {
        .kind = a->kind,
        .model = a->model,
        .status = a->status,
        .bytes = a->bytes,
        .duration_ns = a->duration_ns,
        .budget_size_bytes = u.size_bytes,
        .budget_free_bytes = u.free_bytes,
        .reason = a->reason ? a->reason : "",
        .message = a->message ? a->message : "",
        .pressure_level = level,
        .pressure_bytes = p_bytes,
        .pressure_limit_bytes = p_limit,
        .pressure_percent = p_percent,
        .pressure_from = a->kind == MEMFIT_EVENT_PRESSURE ? a->from : level,
        .pressure_cause = cause,
        .pressure_psi_some = psi_some,
        .pressure_psi_full = psi_full,
    };
    mgr->opt.on_event(&e, mgr->opt.event_user);
}

/* ---- Unloading --------------------------------------------------------------- */

/* True for a model that may be unloaded without anyone noticing. */
static bool is_idle(const struct mf_model *m)
{
    return m->state == MEMFIT_MODEL_READY && m->refcount == 0 && m->waiting == 0;
}

/*
 * Unloads a model the caller has moved to UNLOADING (lock held on entry and
 * on return; released around the driver call, the budget release and the
 * event). Returns the bytes given back to the budget.
 */
static uint64_t unload_locked(memfit_manager *mgr, struct mf_model *m,
                              enum memfit_manager_event_kind kind, const char *reason)
{
    void *loaded = m->loaded;
    memfit_reservation *res = m->reservation;
    uint64_t bytes = memfit_reservation_bytes(res);
    uint64_t loaded_for = 0;
    m->loaded = NULL;
    m->reservation = NULL;
    m->users++;
    pthread_mutex_unlock(&mgr->lock);

    m->driver->unload(m->config, loaded);
    memfit_budget_release(res);

    pthread_mutex_lock(&mgr->lock);
    uint64_t now = clock_now(mgr);
    if (now > m->loaded_at_ns)
        loaded_for = now - m->loaded_at_ns;
    m->state = MEMFIT_MODEL_UNLOADED;
    m->n_unloads++;
    if (kind == MEMFIT_EVENT_EVICT)
        m->n_evictions++;
    wake_waiters_locked(mgr);
    pthread_mutex_unlock(&mgr->lock);

    struct event_args e = {.kind = kind,
                           .model = m->name,
                           .bytes = bytes,
                           .duration_ns = loaded_for,
                           .reason = reason};
    emit(mgr, &e);
    pthread_mutex_lock(&mgr->lock);
    m->users--;
    return bytes;
}

/* Total bytes a loaded model holds. */
static uint64_t held_bytes(const struct mf_model *m)
{
    return memfit_reservation_bytes(m->reservation);
}

static bool evictable(const memfit_manager *mgr, const struct mf_model *m)
{
    return mgr->opt.unloading_enabled && !m->pin && !m->victim && is_idle(m) && held_bytes(m) > 0;
}

/*
 * The budget's evictor: frees at least `needed` bytes by unloading idle,
 * unpinned models — the least recently used one whose eviction alone is
 * enough if there is one, else least recently used first until enough.
 * Evicts nothing when all candidates together would not be enough (the
 * reservation waits or fails anyway, and the models stay useful).
 */
static uint64_t evict_for(void *user, uint64_t needed, const char *requester)
{
    memfit_manager *mgr = user;
    pthread_mutex_lock(&mgr->lock);
    uint64_t available = 0;
    struct mf_model *single = NULL;
    for (size_t i = 0; i < mgr->n_models; i++) {
        struct mf_model *m = mgr->models[i];
        if (!evictable(mgr, m))
            continue;
        available += held_bytes(m);
        if (held_bytes(m) >= needed && (!single || m->lru_seq < single->lru_seq))
            single = m;
    }
    if (available < needed) {
        pthread_mutex_unlock(&mgr->lock);
        return 0;
    }
    if (single) {
        single->victim = true;
    } else {
        uint64_t chosen = 0;
        while (chosen < needed) {
            struct mf_model *lru = NULL;
            for (size_t i = 0; i < mgr->n_models; i++) {
                struct mf_model *m = mgr->models[i];
                if (evictable(mgr, m) && (!lru || m->lru_seq < lru->lru_seq))
                    lru = m;
            }
            lru->victim = true;
            chosen += held_bytes(lru);
        }
    }
    /* Move every victim out of READY before the first unlock, so no acquire
     * takes one while the others are being unloaded. */
    for (size_t i = 0; i < mgr->n_models; i++)
        if (mgr->models[i]->victim)
            mgr->models[i]->state = MEMFIT_MODEL_UNLOADING;
    uint64_t freed = 0;
    mgr->walkers++;
    for (size_t i = 0; i < mgr->n_models; i++) {
        struct mf_model *m = mgr->models[i];
        if (!m->victim)
            continue;
        m->victim = false;
        freed += unload_locked(mgr, m, MEMFIT_EVENT_EVICT, requester);
    }
    mgr->walkers--;
    pthread_mutex_unlock(&mgr->lock);
    return freed;
}

/* ---- Life ------------------------------------------------------------------- */

/* Runs `work` every `interval_ms` (0: 1000) until the manager stops. */
static void periodic(memfit_manager *mgr, uint64_t interval_ms, void (*work)(memfit_manager *))
{
    if (interval_ms == 0)
        interval_ms = 1000;
    pthread_mutex_lock(&mgr->lock);
    while (!mgr->stopping) {
        mf_cond_wait_until(
            &mgr->reaper_cond, &mgr->lock,
            mf_deadline_ns(interval_ms > INT64_MAX ? INT64_MAX : (int64_t)interval_ms));
        if (mgr->stopping)
            break;
        pthread_mutex_unlock(&mgr->lock);
        work(mgr);
        pthread_mutex_lock(&mgr->lock);
    }
    pthread_mutex_unlock(&mgr->lock);
}

static void reap(memfit_manager *mgr)
{
    memfit_manager_tick(mgr, clock_now(mgr));
}

static void *reaper_main(void *arg)
{
    memfit_manager *mgr = arg;
    periodic(mgr, mgr->opt.reaper_interval_ms, reap);
    return NULL;
}

static void sample_pressure(memfit_manager *mgr)
{
    struct memfit_sample sample;
    if (memfit_sampler_read(mgr->sampler, &sample) == MEMFIT_OK)
        memfit_manager_pressure_tick(mgr, &sample);
    else
        memfit_log(MEMFIT_LOG_WARN, "memory pressure: cannot sample: %s", memfit_last_error());
}

/* The pressure thread: one sample every pressure_interval_ms, until stopped. */
static void *pressure_main(void *arg)
{
    memfit_manager *mgr = arg;
    periodic(mgr, mgr->opt.pressure_interval_ms, sample_pressure);
    return NULL;
}

/* Undoes a partly made manager: `locks` of lock, cond, reaper_cond,
 * pressure_lock were made; threads must not be running. */
static void discard_manager(memfit_manager *mgr, int locks)
{
    if (locks >= 4)
        pthread_mutex_destroy(&mgr->pressure_lock);
    if (locks >= 3)
        pthread_cond_destroy(&mgr->reaper_cond);
    if (locks >= 2)
        pthread_cond_destroy(&mgr->cond);
    if (locks >= 1)
        pthread_mutex_destroy(&mgr->lock);
    memfit_sampler_destroy(mgr->sampler);
    memfit_budget_destroy(mgr->budget);
    memfit_free(mgr);
}

static void stop_threads(memfit_manager *mgr)
{
    pthread_mutex_lock(&mgr->lock);
    mgr->stopping = true;
    pthread_cond_broadcast(&mgr->reaper_cond);
    pthread_mutex_unlock(&mgr->lock);
    if (mgr->reaper_started)
        pthread_join(mgr->reaper, NULL);
    if (mgr->pressure_started)
        pthread_join(mgr->pressure, NULL);
    mgr->reaper_started = mgr->pressure_started = false;
}

enum memfit_status memfit_manager_create(const struct memfit_manager_options *options,
                                         memfit_manager **out)
{
    if (!options || !out)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_manager_create: NULL argument");
    if (options->budget_bytes == 0)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_manager_create: the budget is 0 bytes");
    enum memfit_status st = memfit_alert_thresholds_check(&options->pressure_thresholds);
    if (st != MEMFIT_OK)
        return memfit_fail(st, "manager pressure thresholds: %s", memfit_last_error());
    if (!(options->pressure_psi_some_percent >= 0 && options->pressure_psi_some_percent <= 100 &&
          options->pressure_psi_full_percent >= 0 && options->pressure_psi_full_percent <= 100))
        return memfit_fail(MEMFIT_E_RANGE,
                           "manager pressure thresholds: PSI some %g%% and full %g%% must lie in "
                           "0..100 (0: off)",
                           options->pressure_psi_some_percent, options->pressure_psi_full_percent);
    memfit_manager *mgr = memfit_calloc_in(MEMFIT_ALLOC_MANAGER, 1, sizeof(*mgr));
    if (!mgr)
        return MEMFIT_E_NOMEM;
    mgr->opt = *options;
    mgr->opt.pressure_root = NULL; /* borrowed: only the sampler (which copies it) uses it */
    mgr->p_cause = "";
    mgr->p_psi_some = mgr->p_psi_full = -1;
    st = memfit_budget_create(options->budget_bytes, &mgr->budget);
    if (st != MEMFIT_OK) {
        memfit_free(mgr);
        return st;
    }
    if (options->pressure_thread) {
        struct memfit_sampler_options so = memfit_sampler_options_default();
        so.root = options->pressure_root;
        so.pid = 0;
        so.gpu = false;
        st = memfit_sampler_create(&so, &mgr->sampler);
        if (st != MEMFIT_OK) {
            discard_manager(mgr, 0);
            return st;
        }
    }
    int locks = 0;
    if (pthread_mutex_init(&mgr->lock, NULL) == 0 && ++locks && mf_cond_init(&mgr->cond) == 0 &&
        ++locks && mf_cond_init(&mgr->reaper_cond) == 0 && ++locks &&
        pthread_mutex_init(&mgr->pressure_lock, NULL) == 0)
        ++locks;
    if (locks == 4 && options->reaper_thread)
        mgr->reaper_started = pthread_create(&mgr->reaper, NULL, reaper_main, mgr) == 0;
    if (locks == 4 && options->pressure_thread)
        mgr->pressure_started = pthread_create(&mgr->pressure, NULL, pressure_main, mgr) == 0;
    if (locks < 4 || (options->reaper_thread && !mgr->reaper_started) ||
        (options->pressure_thread && !mgr->pressure_started)) {
        if (locks == 4)
            stop_threads(mgr);
        discard_manager(mgr, locks);
        return memfit_fail(MEMFIT_E_NOMEM, "manager: cannot create its locks or threads");
    }
    memfit_budget_set_evictor(mgr->budget, evict_for, mgr);
    *out = mgr;
    return MEMFIT_OK;
}

static void free_model(struct mf_model *m)
{
    if (!m)
        return;
    memfit_free(m->name);
    memfit_free(m->family);
    memfit_free(m->identity);
    memfit_free(m);
}

/* An unregistered record nothing refers to any more: no handle, no waiting
 * acquire, no thread inside a load, an unload or an event of it. */
static bool forgotten(const struct mf_model *m)
{
    return m->retired && m->refcount == 0 && m->waiting == 0 && m->users == 0 && !m->loaded &&
           !m->reservation &&
           (m->state == MEMFIT_MODEL_UNLOADED || m->state == MEMFIT_MODEL_FAILED);
}

/*
 * Takes the forgotten records out of the array (lock held) and returns them
 * as a list for free_swept, to be called once the lock is released. Nothing
 * moves while a walker runs: the next sweep takes them.
 */
static struct mf_model *sweep_locked(memfit_manager *mgr)
{
    struct mf_model *swept = NULL;
    if (mgr->walkers > 0)
        return NULL;
    size_t kept = 0;
    for (size_t i = 0; i < mgr->n_models; i++) {
        struct mf_model *m = mgr->models[i];
        if (forgotten(m)) {
            m->next_swept = swept;
            swept = m;
        } else {
            mgr->models[kept++] = m;
        }
    }
    mgr->n_models = kept;
    return swept;
}

/* Tells the owner that each swept model's driver and config are free to go
 * (no lock held), and frees the records. */
static void free_swept(memfit_manager *mgr, struct mf_model *swept)
{
    while (swept) {
        struct mf_model *next = swept->next_swept;
        if (mgr->opt.on_released)
            mgr->opt.on_released(swept->name, swept->config, mgr->opt.released_user);
        free_model(swept);
        swept = next;
    }
}

/* Drops a thread's use of `m` (lock not held) and frees what is forgotten. */
static void unuse(memfit_manager *mgr, struct mf_model *m)
{
    pthread_mutex_lock(&mgr->lock);
    m->users--;
    struct mf_model *swept = m->retired ? sweep_locked(mgr) : NULL;
    pthread_mutex_unlock(&mgr->lock);
    free_swept(mgr, swept);
}

void memfit_manager_destroy(memfit_manager *mgr)
{
    if (!mgr)
        return;
    stop_threads(mgr);
    memfit_budget_set_evictor(mgr->budget, NULL, NULL);

    pthread_mutex_lock(&mgr->lock);
    for (size_t i = 0; i < mgr->n_models; i++) {
        struct mf_model *m = mgr->models[i];
        if (m->refcount > 0)
            memfit_log(MEMFIT_LOG_WARN, "manager destroyed with %u handle(s) on model %s out",
                       m->refcount, m->name);
        if (m->loaded || m->reservation) {
            m->refcount = 0;
            m->state = MEMFIT_MODEL_UNLOADING;
            unload_locked(mgr, m, MEMFIT_EVENT_UNLOAD, "shutdown");
        }
    }
    pthread_mutex_unlock(&mgr->lock);
    for (size_t i = 0; i < mgr->n_models; i++)
        free_model(mgr->models[i]);
    memfit_free(mgr->models);
    discard_manager(mgr, 4);
}

memfit_budget *memfit_manager_budget(memfit_manager *mgr)
{
    return mgr->budget;
}

static struct mf_model *find_locked(const memfit_manager *mgr, const char *name)
{
    for (size_t i = 0; i < mgr->n_models; i++)
        if (!mgr->models[i]->retired && strcmp(mgr->models[i]->name, name) == 0)
            return mgr->models[i];
    return NULL;
}

enum memfit_status memfit_manager_register(memfit_manager *mgr,
                                           const struct memfit_model_options *o)
{
    if (!mgr || !o)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_manager_register: NULL argument");
    if (!o->name || !o->name[0])
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_manager_register: the model has no name");
    const struct memfit_model_driver *d = o->driver;
    if (!d || !d->plan || !d->load || !d->unload)
        return memfit_fail(MEMFIT_E_MISUSE,
                           "model %s: the driver must have plan, load and unload functions",
                           o->name);
    if (o->keep_alive_s < -1 && o->keep_alive_s != MEMFIT_KEEP_ALIVE_DEFAULT)
        return memfit_fail(MEMFIT_E_RANGE, "model %s: keep_alive %lld (expected -1, 0 or more)",
                           o->name, (long long)o->keep_alive_s);

    struct mf_model *m = memfit_calloc_in(MEMFIT_ALLOC_MANAGER, 1, sizeof(*m));
    if (!m)
        return MEMFIT_E_NOMEM;
    m->name = memfit_strdup(o->name);
    m->identity = memfit_strdup(o->identity ? o->identity : "");
    m->family = memfit_strdup(o->family ? o->family : d->family ? d->family : "");
    if (!m->name || !m->identity || !m->family) {
        free_model(m);
        return MEMFIT_E_NOMEM;
    }
    m->handle.model = m;
    m->mgr = mgr;
    m->driver = d;
    m->config = o->config;
    m->keep_alive_s = o->keep_alive_s == MEMFIT_KEEP_ALIVE_DEFAULT ? mgr->opt.default_keep_alive_s
                                                                   : o->keep_alive_s;
    m->idle_keep_alive_s = m->keep_alive_s;
    m->pin = o->pin;
    m->max_concurrency = o->max_concurrency;
    m->state = MEMFIT_MODEL_UNLOADED;

    pthread_mutex_lock(&mgr->lock);
    if (find_locked(mgr, o->name)) {
        pthread_mutex_unlock(&mgr->lock);
        free_model(m);
        return memfit_fail(MEMFIT_E_EXISTS, "model %s is already registered", o->name);
    }
    struct mf_model *swept = sweep_locked(mgr); /* what a busy unregister left */
    if (mgr->n_models == mgr->cap_models) {
        size_t cap = mgr->cap_models ? mgr->cap_models * 2 : 8;
        struct mf_model **grown = memfit_realloc(mgr->models, cap * sizeof(*grown));
        if (!grown) {
            pthread_mutex_unlock(&mgr->lock);
            free_swept(mgr, swept);
            free_model(m);
            return MEMFIT_E_NOMEM;
        }
        mgr->models = grown;
        mgr->cap_models = cap;
    }
    mgr->models[mgr->n_models++] = m;
    pthread_mutex_unlock(&mgr->lock);
    free_swept(mgr, swept);
    return MEMFIT_OK;
}

/* ---- Acquire and release -------------------------------------------------------- */

/* Failures that say nothing about the model itself: no back-off for them.
 * E_TOO_LARGE is about the budget's size, which can be changed. */
static bool is_transient(enum memfit_status st)
{
    return st == MEMFIT_E_NOMEM || st == MEMFIT_E_BUDGET || st == MEMFIT_E_TIMEOUT ||
           st == MEMFIT_E_BUSY || st == MEMFIT_E_CANCELLED || st == MEMFIT_E_TOO_LARGE;
}

static void set_state(memfit_manager *mgr, struct mf_model *m, enum memfit_model_state state)
{
    pthread_mutex_lock(&mgr->lock);
    m->state = state;
    pthread_mutex_unlock(&mgr->lock);
}

/* Takes a reference on a loaded model (lock held). */
static memfit_handle *take_locked(memfit_manager *mgr, struct mf_model *m)
{
    m->refcount++;
    m->state = MEMFIT_MODEL_BUSY;
    m->n_requests++;
    m->last_used_ns = clock_now(mgr);
    m->lru_seq = ++mgr->seq;
    return &m->handle;
}

/*
 * Asks the driver what the model costs, records it (for the snapshot while
 * it loads) and refuses at once, with E_TOO_LARGE and *never_fits set, a
 * cost the whole budget could never hold. Called with no lock held.
 */
static enum memfit_status plan_checked(memfit_manager *mgr, struct mf_model *m,
                                       struct memfit_budget_cost *cost, bool *never_fits)
{
    enum memfit_status st = m->driver->plan(m->config, m->identity, cost);
    if (st != MEMFIT_OK)
        return st;
    if (memfit_budget_cost_total(cost) == UINT64_MAX)
        return memfit_fail(MEMFIT_E_RANGE, "plan: sizes overflow");
    pthread_mutex_lock(&mgr->lock);
    m->cost = *cost;
    pthread_mutex_unlock(&mgr->lock);
    char what[300];
    snprintf(what, sizeof(what), "model %s", m->name);
    st = mf_budget_check_whole(mgr->budget, cost, what);
    *never_fits = st != MEMFIT_OK;
    return st;
}

/*
 * Loads `m`, which the caller found UNLOADED (or FAILED past its back-off),
 * as the single loader: lock held on entry, released on return. On success
 * *out is a handle taken before anyone else can evict the fresh model.
 *
 * The order keeps a model that will not load from costing anyone else:
 * plan (a model larger than the whole budget stops here, nothing fetched),
 * fetch and plan again with the file local (the exact plan), all with no
 * reservation held, so a failed fetch or a malformed file evicts nothing;
 * only then reserve (evicting idle models, waiting up to the deadline when
 * `wait` is set) and load.
 */
static enum memfit_status load_and_take(memfit_manager *mgr, struct mf_model *m, uint64_t deadline,
                                        bool wait, const struct memfit_acquire_options *o,
                                        memfit_handle **out)
{
    const struct memfit_model_driver *d = m->driver;
    m->state = d->fetch ? MEMFIT_MODEL_FETCHING : MEMFIT_MODEL_LOADING;
    m->users++; /* until the event is out, even when unregistered meanwhile */
    pthread_mutex_unlock(&mgr->lock);

    struct memfit_budget_cost cost = {{0}};
    memfit_reservation *res = NULL;
    void *loaded = NULL;
    bool refused = false, never_fits = false;
    uint64_t t0 = 0, t1 = 0;
    enum memfit_status st = plan_checked(mgr, m, &cost, &never_fits);
    if (st == MEMFIT_OK && d->fetch) {
        st = d->fetch(m->config, m->identity);
        if (st == MEMFIT_OK) {
            set_state(mgr, m, MEMFIT_MODEL_LOADING);
            st = plan_checked(mgr, m, &cost, &never_fits);
        }
    }
    if (st == MEMFIT_OK) {
        /* A caller that waits still gets the evictor and a last look when the
         * fetch used up its time, and then E_TIMEOUT, not "not waiting". */
        int64_t left_ms = mf_remaining_ms(deadline);
        if (wait && left_ms == 0)
            left_ms = 1;
        st = mf_budget_reserve_cancellable(mgr->budget, &cost, m->name, wait ? left_ms : 0,
                                           o->cancelled, o->cancel_user, &res);
        refused = st != MEMFIT_OK;
    }
    if (st == MEMFIT_OK) {
        t0 = clock_now(mgr);
        st = d->load(m->config, m->identity, &cost, &loaded);
        t1 = clock_now(mgr);
    }

    pthread_mutex_lock(&mgr->lock);
    if (st == MEMFIT_OK) {
        m->loaded = loaded;
        m->reservation = res;
        m->state = MEMFIT_MODEL_READY;
        m->load_time_ns = t1 - t0;
        m->loaded_at_ns = t1;
        m->idle_since_ns = t1;
        m->n_loads++;
        m->consecutive_failures = 0;
        m->last_error[0] = '\0';
        m->last_status = MEMFIT_OK;
        *out = take_locked(mgr, m);
        wake_waiters_locked(mgr);
        pthread_mutex_unlock(&mgr->lock);
        struct event_args e = {.kind = MEMFIT_EVENT_LOAD,
                               .model = m->name,
                               .bytes = memfit_reservation_bytes(res),
                               .duration_ns = t1 - t0};
        emit(mgr, &e);
        unuse(mgr, m);
        return MEMFIT_OK;
    }

    /* Keep the message: requests during the back-off fail fast with it. */
    char message[512];
    if (never_fits)
        snprintf(message, sizeof(message), "%s", memfit_last_error()); /* names the model */
    else if (refused || st == MEMFIT_E_BUDGET)
        snprintf(message, sizeof(message), "cannot load model %s: %s", m->name,
                 memfit_last_error());
    else
        snprintf(message, sizeof(message), "model %s failed to load: %s", m->name,
                 memfit_last_error());
    if (st == MEMFIT_E_CANCELLED) {
        /* The caller went away while waiting for room: no refusal. */
        m->state = MEMFIT_MODEL_UNLOADED;
        wake_waiters_locked(mgr);
        pthread_mutex_unlock(&mgr->lock);
        memfit_fail(st, "model %s: %s", m->name, memfit_last_error());
        unuse(mgr, m);
        return st;
    }
    bool transient = is_transient(st);
    memcpy(m->last_error, message, sizeof(m->last_error));
    m->last_status = st;
    if (transient) {
        m->state = MEMFIT_MODEL_UNLOADED;
        m->n_refusals++;
    } else {
        m->state = MEMFIT_MODEL_FAILED;
        m->n_failures++;
        m->consecutive_failures++;
        uint64_t backoff = mgr->opt.backoff_initial_ms;
        for (unsigned i = 1; i < m->consecutive_failures && backoff < mgr->opt.backoff_max_ms; i++)
            backoff *= 2;
        if (backoff > mgr->opt.backoff_max_ms)
            backoff = mgr->opt.backoff_max_ms;
        m->retry_at_ns = clock_now(mgr) + backoff * 1000000u;
    }
    wake_waiters_locked(mgr);
    pthread_mutex_unlock(&mgr->lock);
    memfit_budget_release(res);
    if (loaded)
        d->unload(m->config, loaded);
    struct event_args e = {.kind = transient ? MEMFIT_EVENT_REFUSE : MEMFIT_EVENT_FAIL,
                           .model = m->name,
                           .status = st,
                           .bytes = memfit_budget_cost_total(&cost),
                           .message = message};
    emit(mgr, &e);
    unuse(mgr, m);
    return memfit_fail(st, "%s", message);
}

/* "critical: working set 1.8 GiB of cgroup limit 2.0 GiB (90.0%; cgroup working
 * set 1.5 GiB, usage 1.9 GiB)": the figures of the last tick (lock held). */
static void pressure_figures_locked(const memfit_manager *mgr, char *buf, size_t size)
{
    char b1[32], b2[32], b3[32], b4[32];
    mf_format_bytes(mgr->p_bytes, b1, sizeof(b1));
    mf_format_bytes(mgr->p_limit, b2, sizeof(b2));
    if (mgr->p_cgroup) {
        mf_format_bytes(mgr->p_cg_ws, b3, sizeof(b3));
        mf_format_bytes(mgr->p_cg_usage, b4, sizeof(b4));
        snprintf(buf, size,
                 "%s: working set %s of cgroup limit %s (%.1f%%; cgroup working set %s, "
                 "usage %s)",
                 memfit_level_name(mgr->level), b1, b2, mgr->p_percent,
                 mgr->p_cg_ws == MEMFIT_SYS_UNKNOWN ? "unknown" : b3,
                 mgr->p_cg_usage == MEMFIT_SYS_UNKNOWN ? "unknown" : b4);
    } else {
        snprintf(buf, size, "%s: working set %s of memory %s (%.1f%%)",
                 memfit_level_name(mgr->level), b1, b2, mgr->p_percent);
    }
    size_t used = strlen(buf);
    if (mgr->p_psi_some >= 0 && used < size)
        snprintf(buf + used, size - used, "; memory PSI avg10 some %.1f%%, full %.1f%%",
                 mgr->p_psi_some, mgr->p_psi_full);
}

/* Records a refusal decided under the lock; releases it and emits the event. */
static enum memfit_status refuse_unlock(memfit_manager *mgr, struct mf_model *m,
                                        enum memfit_status st, const char *message)
{
    m->n_refusals++;
    m->last_status = st;
    snprintf(m->last_error, sizeof(m->last_error), "%s", message);
    m->users++;
    pthread_mutex_unlock(&mgr->lock);
    struct event_args e = {
        .kind = MEMFIT_EVENT_REFUSE, .model = m->name, .status = st, .message = message};
    emit(mgr, &e);
    unuse(mgr, m);
    return memfit_fail(st, "%s", message);
}

/* After a wait woke (lock held): true when the caller cancelled; it is then
 * dequeued and the lock released. */
static bool cancelled_unlock(memfit_manager *mgr, struct mf_model *m,
                             const struct memfit_acquire_options *o)
{
    if (!o->cancelled || !o->cancelled(o->cancel_user))
        return false;
    mgr->n_waiting--;
    m->waiting--;
    pthread_mutex_unlock(&mgr->lock);
    return true;
}

enum memfit_status memfit_manager_acquire_ex(memfit_manager *mgr, const char *name,
                                             const struct memfit_acquire_options *o,
                                             memfit_handle **out)
{
    if (!mgr || !name || !out || !o)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_manager_acquire: NULL argument");
    const char *identity = o->identity;
    int64_t timeout_ms = o->timeout_ms;
    int64_t wait_ms = timeout_ms < 0 ? mgr->opt.admission_timeout_ms : timeout_ms;
    uint64_t deadline = mf_deadline_ns(wait_ms);
    char message[512];
    pthread_mutex_lock(&mgr->lock);
    struct mf_model *m = find_locked(mgr, name);
    if (!m) {
        pthread_mutex_unlock(&mgr->lock);
        return memfit_fail(MEMFIT_E_NOT_FOUND, "no model named %s", name);
    }
    if (identity && identity[0] && strcmp(identity, m->identity) != 0) {
        snprintf(message, sizeof(message),
                 "model %s is registered with options '%s' but the request asks for '%s'; "
                 "memfit does not reload a model for other options (register another model "
                 "with them)",
                 m->name, m->identity, identity);
        return refuse_unlock(mgr, m, MEMFIT_E_BUSY, message);
    }
    bool queued = false;
    for (;;) {
        if (m->retired) {
            if (queued) {
                mgr->n_waiting--;
                m->waiting--;
            }
            pthread_mutex_unlock(&mgr->lock);
            return memfit_fail(MEMFIT_E_NOT_FOUND, "model %s was removed", name);
        }
        if (mgr->paused) {
            /* Memory pressure: nothing new is admitted, loaded model or not. */
            char figures[256];
            pressure_figures_locked(mgr, figures, sizeof(figures));
            if (wait_ms == 0) {
                if (queued) {
                    mgr->n_waiting--;
                    m->waiting--;
                }
                snprintf(message, sizeof(message),
                         "model %s: admission paused by memory pressure (%s); not waiting "
                         "(timeout 0)",
                         m->name, figures);
                return refuse_unlock(mgr, m, MEMFIT_E_BUSY, message);
            }
            if (!queued) {
                if (mgr->n_waiting >= mgr->opt.max_queue) {
                    snprintf(message, sizeof(message),
                             "model %s: admission paused by memory pressure (%s) and the "
                             "queue is full (%u acquires waiting, max_queue %u)",
                             m->name, figures, mgr->n_waiting, mgr->opt.max_queue);
                    return refuse_unlock(mgr, m, MEMFIT_E_BUSY, message);
                }
                mgr->n_waiting++;
                m->waiting++;
                queued = true;
            }
            bool woke =
                mf_cond_wait_until(&mgr->cond, &mgr->lock, mf_wake_ns(deadline, o->cancelled));
            if (cancelled_unlock(mgr, m, o))
                return memfit_fail(MEMFIT_E_CANCELLED, "model %s: cancelled while waiting", name);
            if (!woke && memfit_now_ns() < deadline)
                continue;
            if (!woke && mgr->paused) {
                mgr->n_waiting--;
                m->waiting--;
                pressure_figures_locked(mgr, figures, sizeof(figures));
                snprintf(message, sizeof(message),
                         "model %s: timed out after %lld ms waiting: admission paused by "
                         "memory pressure (%s)",
                         m->name, (long long)wait_ms, figures);
                return refuse_unlock(mgr, m, MEMFIT_E_TIMEOUT, message);
            }
            continue;
        }
        enum memfit_model_state s = m->state;
        if (s == MEMFIT_MODEL_READY || s == MEMFIT_MODEL_BUSY) {
            if (!m->max_concurrency || m->refcount < m->max_concurrency) {
                if (queued) {
                    mgr->n_waiting--;
                    m->waiting--;
                }
                *out = take_locked(mgr, m);
                pthread_mutex_unlock(&mgr->lock);
                return MEMFIT_OK;
            }
        } else if (s == MEMFIT_MODEL_FAILED && clock_now(mgr) < m->retry_at_ns) {
            if (queued) {
                mgr->n_waiting--;
                m->waiting--;
            }
            enum memfit_status st = m->last_status;
            double retry_s = (double)(m->retry_at_ns - clock_now(mgr)) / 1e9;
            unsigned failures = m->consecutive_failures;
            memcpy(message, m->last_error, sizeof(m->last_error));
            pthread_mutex_unlock(&mgr->lock);
            return memfit_fail(st, "%s (failed %u time(s); next try in %.1f s)", message, failures,
                               retry_s);
        } else if (s == MEMFIT_MODEL_UNLOADED || s == MEMFIT_MODEL_FAILED) {
            if (queued) {
                mgr->n_waiting--;
                m->waiting--;
            }
            return load_and_take(mgr, m, deadline, wait_ms != 0, o, out);
        }
        /* FETCHING, LOADING, UNLOADING, or all concurrency slots taken: wait. */
        if (!queued) {
            if (mgr->n_waiting >= mgr->opt.max_queue) {
                snprintf(message, sizeof(message),
                         "model %s: admission queue full (%u acquires waiting, max_queue %u)",
                         m->name, mgr->n_waiting, mgr->opt.max_queue);
                return refuse_unlock(mgr, m, MEMFIT_E_BUSY, message);
            }
            mgr->n_waiting++;
            m->waiting++;
            queued = true;
        }
        bool woke = mf_cond_wait_until(&mgr->cond, &mgr->lock, mf_wake_ns(deadline, o->cancelled));
        if (cancelled_unlock(mgr, m, o))
            return memfit_fail(MEMFIT_E_CANCELLED, "model %s: cancelled while waiting", name);
        if (!woke && memfit_now_ns() < deadline)
            continue;
        if (!woke) {
            mgr->n_waiting--;
            m->waiting--;
            snprintf(message, sizeof(message),
                     "model %s: timed out after %lld ms waiting (state %s, %u handle(s) out, "
                     "max_concurrency %u)",
                     m->name, (long long)wait_ms, memfit_model_state_name(m->state), m->refcount,
                     m->max_concurrency);
            return refuse_unlock(mgr, m, MEMFIT_E_TIMEOUT, message);
        }
    }
}

enum memfit_status memfit_manager_acquire_identity(memfit_manager *mgr, const char *name,
                                                   const char *identity, int64_t timeout_ms,
                                                   memfit_handle **out)
{
    struct memfit_acquire_options o = {.identity = identity, .timeout_ms = timeout_ms};
    return memfit_manager_acquire_ex(mgr, name, &o, out);
}

enum memfit_status memfit_manager_acquire(memfit_manager *mgr, const char *name, int64_t timeout_ms,
                                          memfit_handle **out)
{
    return memfit_manager_acquire_identity(mgr, name, NULL, timeout_ms, out);
}

void *memfit_handle_model(const memfit_handle *handle)
{
    return handle ? handle->model->loaded : NULL;
}

const char *memfit_handle_name(const memfit_handle *handle)
{
    return handle ? handle->model->name : NULL;
}

/* Drops a reference; `apply_zero_keep_alive` = false keeps a keep_alive-0
 * model loaded until the next tick (an explicit load). */
static void release_handle(memfit_handle *handle, bool apply_zero_keep_alive, int64_t keep_alive_s)
{
    struct mf_model *m = handle->model;
    memfit_manager *mgr = m->mgr;
    bool idle = false;
    struct mf_model *swept = NULL;
    pthread_mutex_lock(&mgr->lock);
    m->idle_keep_alive_s =
        keep_alive_s == MEMFIT_KEEP_ALIVE_DEFAULT ? m->keep_alive_s : keep_alive_s;
    m->refcount--;
    m->last_used_ns = clock_now(mgr);
    m->lru_seq = ++mgr->seq;
    if (m->refcount == 0) {
        m->state = MEMFIT_MODEL_READY;
        m->idle_since_ns = m->last_used_ns;
        idle = true;
        if (m->retired && is_idle(m)) {
            m->state = MEMFIT_MODEL_UNLOADING;
            unload_locked(mgr, m, MEMFIT_EVENT_UNLOAD, "removed");
            idle = false;
            swept = sweep_locked(mgr);
        } else if (apply_zero_keep_alive && m->idle_keep_alive_s == 0 &&
                   mgr->opt.unloading_enabled && !m->pin && is_idle(m)) {
            m->state = MEMFIT_MODEL_UNLOADING;
            unload_locked(mgr, m, MEMFIT_EVENT_UNLOAD, "keep_alive");
            idle = false;
        }
    }
    wake_waiters_locked(mgr);
    pthread_mutex_unlock(&mgr->lock);
    free_swept(mgr, swept);
    /* A reservation waiting for room may now evict this model. */
    if (idle)
        mf_budget_notify(mgr->budget);
}

void memfit_manager_release(memfit_handle *handle)
{
    if (handle)
        release_handle(handle, true, MEMFIT_KEEP_ALIVE_DEFAULT);
}

enum memfit_status memfit_manager_release_keep_alive(memfit_handle *handle, int64_t keep_alive_s)
{
    if (!handle)
        return MEMFIT_OK;
    if (keep_alive_s < -1 && keep_alive_s != MEMFIT_KEEP_ALIVE_DEFAULT) {
        release_handle(handle, true, MEMFIT_KEEP_ALIVE_DEFAULT);
        return memfit_fail(MEMFIT_E_RANGE, "keep_alive %lld (expected -1, 0 or more)",
                           (long long)keep_alive_s);
    }
    release_handle(handle, true, keep_alive_s);
    return MEMFIT_OK;
}

/* ---- Explicit control ---------------------------------------------------------- */

enum memfit_status memfit_manager_load(memfit_manager *mgr, const char *name, int64_t timeout_ms)
{
    memfit_handle *h;
    enum memfit_status st = memfit_manager_acquire(mgr, name, timeout_ms, &h);
    if (st == MEMFIT_OK)
        release_handle(h, false, MEMFIT_KEEP_ALIVE_DEFAULT);
    return st;
}

enum memfit_status memfit_manager_load_pinned(memfit_manager *mgr, int64_t timeout_ms)
{
    enum memfit_status first = MEMFIT_OK;
    char first_error[512] = "";
    pthread_mutex_lock(&mgr->lock);
    mgr->walkers++;
    for (size_t i = 0; i < mgr->n_models; i++) {
        struct mf_model *m = mgr->models[i];
        if (!m->pin || m->retired)
            continue;
        pthread_mutex_unlock(&mgr->lock);
        enum memfit_status st = memfit_manager_load(mgr, m->name, timeout_ms);
        if (st != MEMFIT_OK && first == MEMFIT_OK) {
            first = st;
            snprintf(first_error, sizeof(first_error), "%s", memfit_last_error());
        }
        pthread_mutex_lock(&mgr->lock);
    }
    mgr->walkers--;
    struct mf_model *swept = sweep_locked(mgr);
    pthread_mutex_unlock(&mgr->lock);
    free_swept(mgr, swept);
    if (first != MEMFIT_OK)
        return memfit_fail(first, "%s", first_error);
    return MEMFIT_OK;
}

enum memfit_status memfit_manager_unload(memfit_manager *mgr, const char *name)
{
    if (!mgr || !name)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_manager_unload: NULL argument");
    pthread_mutex_lock(&mgr->lock);
    struct mf_model *m = find_locked(mgr, name);
    if (!m) {
        pthread_mutex_unlock(&mgr->lock);
        return memfit_fail(MEMFIT_E_NOT_FOUND, "no model named %s", name);
    }
    m->users++; /* kept while this thread waits */
    while (m->state == MEMFIT_MODEL_UNLOADING) {
        mgr->n_waiting++;
        pthread_cond_wait(&mgr->cond, &mgr->lock);
        mgr->n_waiting--;
    }
    m->users--;
    enum memfit_status st = MEMFIT_OK;
    switch (m->state) {
    case MEMFIT_MODEL_UNLOADED:
    case MEMFIT_MODEL_UNLOADING:
        break;
    case MEMFIT_MODEL_FAILED:
        m->state = MEMFIT_MODEL_UNLOADED;
        m->consecutive_failures = 0;
        m->retry_at_ns = 0;
        break;
    case MEMFIT_MODEL_BUSY:
        st = memfit_fail(MEMFIT_E_BUSY, "model %s is in use (%u handle(s) out)", name, m->refcount);
        break;
    case MEMFIT_MODEL_FETCHING:
    case MEMFIT_MODEL_LOADING:
        st = memfit_fail(MEMFIT_E_BUSY, "model %s is loading", name);
        break;
    case MEMFIT_MODEL_READY:
        m->state = MEMFIT_MODEL_UNLOADING;
        unload_locked(mgr, m, MEMFIT_EVENT_UNLOAD, "explicit");
        break;
    }
    pthread_mutex_unlock(&mgr->lock);
    return st;
}

enum memfit_status memfit_manager_unregister(memfit_manager *mgr, const char *name)
{
    if (!mgr || !name)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_manager_unregister: NULL argument");
    pthread_mutex_lock(&mgr->lock);
    struct mf_model *m = find_locked(mgr, name);
    if (!m) {
        pthread_mutex_unlock(&mgr->lock);
        return memfit_fail(MEMFIT_E_NOT_FOUND, "no model named %s", name);
    }
    /* From here no lookup finds it; the record goes once nothing refers to
     * it (now, or at a later release, register or unregister). */
    m->retired = true;
    if (is_idle(m)) {
        m->state = MEMFIT_MODEL_UNLOADING;
        unload_locked(mgr, m, MEMFIT_EVENT_UNLOAD, "removed");
    }
    /* Waiters on it wake up to find it gone. */
    pthread_cond_broadcast(&mgr->cond);
    struct mf_model *swept = sweep_locked(mgr);
    pthread_mutex_unlock(&mgr->lock);
    free_swept(mgr, swept);
    return MEMFIT_OK;
}

/* Unloads every idle model whose keep_alive ran out at `now` (keep_alive_only)
 * or every idle one (pinned ones too with `pinned`), as events of `kind`;
 * returns bytes freed and counts models in *n. */
static uint64_t unload_where_kind(memfit_manager *mgr, uint64_t now, bool keep_alive_only,
                                  bool pinned, enum memfit_manager_event_kind kind,
                                  const char *reason, unsigned *n)
{
    uint64_t freed = 0;
    *n = 0;
    pthread_mutex_lock(&mgr->lock);
    if (!mgr->opt.unloading_enabled) {
        pthread_mutex_unlock(&mgr->lock);
        return 0;
    }
    mgr->walkers++;
    for (size_t i = 0; i < mgr->n_models; i++) {
        struct mf_model *m = mgr->models[i];
        if ((m->pin && !pinned) || !is_idle(m))
            continue;
        if (keep_alive_only) {
            if (m->idle_keep_alive_s < 0 || now < m->idle_since_ns ||
                now - m->idle_since_ns < seconds_to_ns(m->idle_keep_alive_s))
                continue;
        }
        m->state = MEMFIT_MODEL_UNLOADING;
        freed += unload_locked(mgr, m, kind, reason);
        (*n)++;
    }
    mgr->walkers--;
    pthread_mutex_unlock(&mgr->lock);
    return freed;
}

static uint64_t unload_where(memfit_manager *mgr, uint64_t now, bool keep_alive_only,
                             const char *reason, unsigned *n)
{
    return unload_where_kind(mgr, now, keep_alive_only, false, MEMFIT_EVENT_UNLOAD, reason, n);
}

uint64_t memfit_manager_unload_idle(memfit_manager *mgr)
{
    unsigned n;
    return unload_where(mgr, 0, false, "idle", &n);
}

unsigned memfit_manager_tick(memfit_manager *mgr, uint64_t now_ns)
{
    unsigned n;
    unload_where(mgr, now_ns, true, "keep_alive", &n);
    return n;
}

/* ---- Memory pressure ------------------------------------------------------------ */

uint64_t memfit_pressure_bytes(const struct memfit_sample *sample, uint64_t *limit_out)
{
    const uint64_t unknown = MEMFIT_SYS_UNKNOWN;
    uint64_t bytes = unknown, limit = unknown;
    if (sample && sample->have_cgroup && sample->limit_source == MEMFIT_LIMIT_CGROUP &&
        sample->cgroup.limit_bytes != unknown) {
        const struct memfit_cgroup *cg = &sample->cgroup;
        limit = cg->limit_bytes;
        bytes = memfit_cgroup_in_use_bytes(cg); /* mapped file pages in use count */
    } else if (sample) {
        limit = sample->limit_bytes;
        bytes = sample->working_set_bytes;
    }
    if (limit == 0 || limit == unknown || bytes == unknown)
        bytes = limit = unknown;
    if (limit_out)
        *limit_out = limit;
    return bytes;
}

/* Logs and emits one pressure action (no lock held but the pressure lock). */
static void pressure_event(memfit_manager *mgr, const char *reason, enum memfit_level from,
                           const char *fmt, ...) MEMFIT_PRINTF(4, 5);

static void pressure_event(memfit_manager *mgr, const char *reason, enum memfit_level from,
                           const char *fmt, ...)
{
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    struct event_args e = {.kind = MEMFIT_EVENT_PRESSURE,
                           .model = "",
                           .reason = reason,
                           .message = message,
                           .from = from};
    emit(mgr, &e);
}

/* The memory PSI of a sample: the cgroup's memory.pressure, else the
 * system's; false when neither was read. */
static bool sample_psi(const struct memfit_sample *sample, double *some, double *full)
{
    const struct memfit_psi *psi = NULL;
    if (sample->have_cgroup && sample->cgroup.pressure.present)
        psi = &sample->cgroup.pressure;
    else if (sample->psi.present)
        psi = &sample->psi;
    if (!psi)
        return false;
    *some = psi->some_avg10;
    *full = psi->full_avg10;
    return true;
}

/* At or above `threshold` (0: off), or above it less the hysteresis while
 * the level it gives is held. */
static bool psi_over(double value, double threshold, double hysteresis, bool held)
{
    if (threshold <= 0)
        return false;
    double h = hysteresis < threshold / 2 ? hysteresis : threshold / 2;
    return value >= (held ? threshold - h : threshold);
}

/* The level memory PSI alone calls for, and a note naming the figure. */
static enum memfit_level psi_level(const struct memfit_manager_options *o, enum memfit_level from,
                                   double some, double full, char *why, size_t why_size)
{
    double h = o->pressure_thresholds.hysteresis_percent;
    if (psi_over(full, o->pressure_psi_full_percent, h, from >= MEMFIT_LEVEL_CRITICAL)) {
        snprintf(why, why_size, "memory PSI full avg10 %.1f%% >= %g%%", full,
                 o->pressure_psi_full_percent);
        return MEMFIT_LEVEL_CRITICAL;
    }
    if (psi_over(some, o->pressure_psi_some_percent, h, from >= MEMFIT_LEVEL_WARNING)) {
        snprintf(why, why_size, "memory PSI some avg10 %.1f%% >= %g%%", some,
                 o->pressure_psi_some_percent);
        return MEMFIT_LEVEL_WARNING;
    }
    return MEMFIT_LEVEL_OK;
}

enum memfit_level memfit_manager_pressure_tick(memfit_manager *mgr,
                                               const struct memfit_sample *sample)
{
    uint64_t limit;
    uint64_t bytes = memfit_pressure_bytes(sample, &limit);
    char figures[256], freed_text[32];
    pthread_mutex_lock(&mgr->pressure_lock);
    pthread_mutex_lock(&mgr->lock);
    enum memfit_level from = mgr->level;
    if (bytes == MEMFIT_SYS_UNKNOWN) {
        pthread_mutex_unlock(&mgr->lock);
        pthread_mutex_unlock(&mgr->pressure_lock);
        return from;
    }
    enum memfit_level to = memfit_alert_next(&mgr->opt.pressure_thresholds, from, bytes, limit);
    double psi_some = -1, psi_full = -1;
    char psi_why[96] = "";
    if (sample_psi(sample, &psi_some, &psi_full)) {
        enum memfit_level by_psi =
            psi_level(&mgr->opt, from, psi_some, psi_full, psi_why, sizeof(psi_why));
        mgr->p_cause = by_psi > to ? "psi" : "memory";
        if (by_psi > to)
            to = by_psi;
    } else {
        psi_some = psi_full = -1;
        mgr->p_cause = "memory";
    }
    bool by_psi = strcmp(mgr->p_cause, "psi") == 0;
    mgr->p_psi_some = psi_some;
    mgr->p_psi_full = psi_full;
    mgr->level = to;
    mgr->p_bytes = bytes;
    mgr->p_limit = limit;
    mgr->p_percent = 100.0 * (double)bytes / (double)limit;
    mgr->p_cgroup = sample->have_cgroup && sample->limit_source == MEMFIT_LIMIT_CGROUP;
    mgr->p_cg_ws = sample->cgroup.working_set_bytes;
    mgr->p_cg_usage = sample->cgroup.usage_bytes;
    mgr->p_ticks++;
    bool was_paused = mgr->paused;
    bool pause = to >= MEMFIT_LEVEL_CRITICAL;
    uint64_t now = memfit_now_ns();
    if (pause && !was_paused) {
        mgr->paused = true;
        mgr->p_paused_since = now;
    } else if (!pause && was_paused) {
        mgr->paused = false;
        mgr->p_paused_ns += now - mgr->p_paused_since;
        pthread_cond_broadcast(&mgr->cond); /* the acquires held back */
    }
    unsigned queued = mgr->n_waiting;
    pressure_figures_locked(mgr, figures, sizeof(figures));
    pthread_mutex_unlock(&mgr->lock);

    if (to != from)
        pressure_event(mgr, "level", from, "memory pressure %s -> %s%s%s%s: %s",
                       memfit_level_name(from), memfit_level_name(to), by_psi ? " (" : "",
                       by_psi ? psi_why : "", by_psi ? ")" : "", figures);
    if (pause && !was_paused)
        pressure_event(mgr, "pause admission", from,
                       "memory pressure: admission paused (new acquires wait) at %s", figures);
    if (!pause && was_paused)
        pressure_event(mgr, "resume admission", from,
                       "memory pressure: admission resumed (%u acquire(s) waiting) at %s", queued,
                       figures);
    if (to >= MEMFIT_LEVEL_WARNING) {
        unsigned n = 0;
        uint64_t freed;
        if (to >= MEMFIT_LEVEL_DANGER)
            freed = unload_where_kind(mgr, 0, false, true, MEMFIT_EVENT_EVICT, "pressure", &n);
        else
            freed = unload_where_kind(mgr, 0, false, false, MEMFIT_EVENT_UNLOAD, "pressure", &n);
        if (n > 0) {
            pthread_mutex_lock(&mgr->lock);
            mgr->p_unloads += n;
            mgr->p_freed += freed;
            pthread_mutex_unlock(&mgr->lock);
            mf_format_bytes(freed, freed_text, sizeof(freed_text));
            if (to >= MEMFIT_LEVEL_DANGER)
                pressure_event(mgr, "evict idle", from,
                               "memory pressure: evicted %u idle model(s) (pinned included), "
                               "freed %s of budget, at %s",
                               n, freed_text, figures);
            else
                pressure_event(mgr, "unload idle", from,
                               "memory pressure: unloaded %u idle model(s), freed %s of budget, "
                               "at %s",
                               n, freed_text, figures);
        }
        if (n > 0 || to > from) {
            memfit_heap_trim();
            pressure_event(mgr, "trim heap", from, "memory pressure: heap trimmed at %s", figures);
        }
    }
    pthread_mutex_unlock(&mgr->pressure_lock);
    return to;
}

/* ---- Snapshot ------------------------------------------------------------------- */

enum memfit_status memfit_manager_snapshot(memfit_manager *mgr, struct memfit_manager_status **out)
{
    if (!mgr || !out)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_manager_snapshot: NULL argument");
    pthread_mutex_lock(&mgr->lock);
    size_t n = 0, text = 0;
    for (size_t i = 0; i < mgr->n_models; i++) {
        const struct mf_model *m = mgr->models[i];
        if (m->retired)
            continue;
        n++;
        text += strlen(m->name) + strlen(m->identity) + strlen(m->last_error) + 3;
        text += strlen(m->family) + 1;
    }
    struct memfit_manager_status *s = memfit_calloc_in(
        MEMFIT_ALLOC_MANAGER, 1, sizeof(*s) + n * sizeof(struct memfit_model_status) + text);
    if (!s) {
        pthread_mutex_unlock(&mgr->lock);
        return MEMFIT_E_NOMEM;
    }
    s->models = (struct memfit_model_status *)(s + 1);
    char *p = (char *)(s->models + n);
#define COPY_STRING(dst, src)                                                                      \
    do {                                                                                           \
        size_t len_ = strlen(src) + 1;                                                             \
        memcpy(p, src, len_);                                                                      \
        (dst) = p;                                                                                 \
        p += len_;                                                                                 \
    } while (0)
    size_t k = 0;
    for (size_t i = 0; i < mgr->n_models; i++) {
        const struct mf_model *m = mgr->models[i];
        if (m->retired)
            continue;
        struct memfit_model_status *ms = &s->models[k++];
        COPY_STRING(ms->name, m->name);
        COPY_STRING(ms->family, m->family);
        COPY_STRING(ms->identity, m->identity);
        COPY_STRING(ms->last_error, m->last_error);
        ms->state = m->state;
        ms->pinned = m->pin;
        ms->keep_alive_s = m->keep_alive_s;
        ms->max_concurrency = m->max_concurrency;
        ms->in_use = m->refcount;
        ms->waiting = m->waiting;
        bool holds = m->state != MEMFIT_MODEL_UNLOADED && m->state != MEMFIT_MODEL_FAILED;
        if (holds)
            ms->bytes = m->cost;
        ms->total_bytes = holds ? memfit_budget_cost_total(&m->cost) : 0;
        ms->load_time_ns = m->load_time_ns;
        ms->loaded_at_ns = m->loaded_at_ns;
        ms->last_used_ns = m->last_used_ns;
        if (m->state == MEMFIT_MODEL_READY && !m->pin && m->idle_keep_alive_s >= 0 &&
            mgr->opt.unloading_enabled)
            ms->expires_at_ns = seconds_to_ns(m->idle_keep_alive_s) > UINT64_MAX - m->idle_since_ns
                                    ? UINT64_MAX
                                    : m->idle_since_ns + seconds_to_ns(m->idle_keep_alive_s);
        ms->retry_at_ns = m->state == MEMFIT_MODEL_FAILED ? m->retry_at_ns : 0;
        ms->n_requests = m->n_requests;
        ms->n_loads = m->n_loads;
        ms->n_unloads = m->n_unloads;
        ms->n_evictions = m->n_evictions;
        ms->n_failures = m->n_failures;
        ms->n_refusals = m->n_refusals;
        ms->last_status = m->last_status;
    }
#undef COPY_STRING
    s->n_models = n;
    s->queue_depth = mgr->n_waiting;
    s->max_queue = mgr->opt.max_queue;
    s->unloading_enabled = mgr->opt.unloading_enabled;
    s->pressure_level = mgr->level;
    s->admission_paused = mgr->paused;
    s->pressure_bytes = mgr->p_bytes;
    s->pressure_limit_bytes = mgr->p_limit;
    s->pressure_percent = mgr->p_percent;
    s->pressure_ticks = mgr->p_ticks;
    s->pressure_unloads = mgr->p_unloads;
    s->pressure_freed_bytes = mgr->p_freed;
    s->pressure_paused_ns =
        mgr->p_paused_ns + (mgr->paused ? memfit_now_ns() - mgr->p_paused_since : 0);
    s->pressure_cause = mgr->p_cause;
    s->pressure_psi_some = mgr->p_psi_some;
    s->pressure_psi_full = mgr->p_psi_full;
    memfit_budget_get_usage(mgr->budget, &s->budget);
    pthread_mutex_unlock(&mgr->lock);
    *out = s;
    return MEMFIT_OK;
}

/*
 * memfit manager: the memory budget, the model registry and its lifecycle,
 * and the manifest file that describes the models.
 *
 * The budget is the one byte count a process may spend on large buffers
 * (weights, converted weights, workspaces, KV caches). Every such buffer is
 * reserved before it is created; a reservation that does not fit first asks
 * the registry to evict idle models, then waits, then fails with a message
 * naming who holds what: MEMFIT_E_BUDGET when it was not to wait (timeout
 * 0), MEMFIT_E_TIMEOUT when it waited and room never came, MEMFIT_E_TOO_LARGE
 * at once when it is more than the whole budget. It is never exceeded.
 *
 * The manager (registry) knows models by name and drives them through a small
 * driver interface (struct memfit_model_driver), so it does not depend on any
 * model family. A model is loaded on first use (lazily, single-flight), shared
 * by reference-counted handles, unloaded after its keep_alive or when the
 * budget needs its room (least recently used first, never while in use, never
 * when pinned), and refused — with a message, not an OOM kill — when it cannot
 * fit.
 *
 * Thread safety: a budget and a manager may be used from any number of
 * threads at once. Handles may be released from any thread. The manifest
 * functions are reentrant.
 *
 * Timeouts are milliseconds: 0 means do not wait. For the budget a negative
 * timeout waits without limit; for the manager a negative timeout means the
 * manager's admission_timeout_ms. Waits use the monotonic clock even when a
 * fake clock is installed for policy (keep_alive, back-off).
 */
#ifndef MEMFIT_MANAGER_H
#define MEMFIT_MANAGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memfit/core.h"
#include "memfit/monitor.h" /* pressure: levels, thresholds, samples */

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Budget -------------------------------------------------------------- */

/* What a reservation is for. Values are stable (they reach /metrics). */
enum memfit_budget_category {
    MEMFIT_BUDGET_WEIGHTS = 0,           /* weights mapped from the cache file */
    MEMFIT_BUDGET_CONVERTED_WEIGHTS = 1, /* weights repacked/dequantized into anonymous memory */
    MEMFIT_BUDGET_WORKSPACE = 2,         /* activations and scratch for one request */
    MEMFIT_BUDGET_KV_CACHE = 3,          /* attention key/value cache */
    MEMFIT_BUDGET_CATEGORY_COUNT
};

/* "weights", "converted weights", "workspace", "KV cache"; never NULL. */
MEMFIT_API const char *memfit_budget_category_name(enum memfit_budget_category category);

/* Bytes by category: what a model costs, or what a reservation holds. */
struct memfit_budget_cost {
    uint64_t bytes[MEMFIT_BUDGET_CATEGORY_COUNT];
};

/* The sum over categories (saturating at UINT64_MAX). */
MEMFIT_API uint64_t memfit_budget_cost_total(const struct memfit_budget_cost *cost);

typedef struct memfit_budget memfit_budget;
typedef struct memfit_reservation memfit_reservation;

/*
 * Called by a reservation that does not fit, with no budget lock held, to
 * free at least `needed_bytes` (by releasing reservations, e.g. unloading
 * idle models). `requester` is the owner label of the reservation waiting.
 * Returns the bytes it freed (0: nothing could be freed).
 */
typedef uint64_t (*memfit_budget_evict_fn)(void *user, uint64_t needed_bytes,
                                           const char *requester);

/* Creates a budget of `size_bytes`. E_NOMEM on failure. */
MEMFIT_API enum memfit_status memfit_budget_create(uint64_t size_bytes, memfit_budget **out);

/*
 * Destroys a budget; NULL is a no-op. Reservations still held are a misuse:
 * they are freed (and logged as a warning) so nothing leaks, and the pointers
 * the holders keep become invalid.
 */
MEMFIT_API void memfit_budget_destroy(memfit_budget *budget);

/* Installs the eviction callback (NULL removes it). The manager installs its own. */
MEMFIT_API void memfit_budget_set_evictor(memfit_budget *budget, memfit_budget_evict_fn evict,
                                          void *user);

/*
 * Changes the size. Reservations already held are kept even when they now
 * exceed it; new ones fail until enough is released. Waiters are woken.
 */
MEMFIT_API void memfit_budget_set_size(memfit_budget *budget, uint64_t size_bytes);

/*
 * Reserves `bytes` of `category` for `owner` (a label, usually the model
 * name; copied). When the bytes do not fit, asks the evictor to free room,
 * then waits up to `timeout_ms` (woken by releases), then fails with a
 * message such as
 *   "asked 300.0 MiB for dino-b workspace; 120.0 MiB free of 512.0 MiB;
 *    in use: sam 250.0 MiB (weights), dino-s 142.0 MiB (weights)"
 * and the status:
 *   E_BUDGET     timeout 0: it does not fit now and was not to wait;
 *   E_TIMEOUT    it waited timeout_ms and room never came (the message adds
 *                "; waited N ms");
 *   E_TOO_LARGE  more than the whole budget: fails at once, whatever the
 *                timeout (only a larger budget can help);
 *   E_NOMEM      the reservation record cannot be allocated.
 * *out is written only on success and must be given back with
 * memfit_budget_release().
 */
MEMFIT_API enum memfit_status memfit_budget_reserve(memfit_budget *budget,
                                                    enum memfit_budget_category category,
                                                    uint64_t bytes, const char *owner,
                                                    int64_t timeout_ms, memfit_reservation **out);

/* Same, for several categories at once: all of `cost` or nothing. */
MEMFIT_API enum memfit_status memfit_budget_reserve_cost(memfit_budget *budget,
                                                         const struct memfit_budget_cost *cost,
                                                         const char *owner, int64_t timeout_ms,
                                                         memfit_reservation **out);

/* Gives a reservation back and wakes waiters; NULL is a no-op. */
MEMFIT_API void memfit_budget_release(memfit_reservation *reservation);

/* Total bytes a reservation holds. */
MEMFIT_API uint64_t memfit_reservation_bytes(const memfit_reservation *reservation);

/* A consistent view of a budget at one moment. */
struct memfit_budget_usage {
    uint64_t size_bytes;
    uint64_t reserved_bytes;
    uint64_t free_bytes; /* size - reserved, 0 when the size was lowered below it */
    uint64_t peak_reserved_bytes;
    uint64_t by_category[MEMFIT_BUDGET_CATEGORY_COUNT];
    size_t n_reservations;
    unsigned n_waiting; /* reservations waiting for room now */
    uint64_t n_refused; /* reservations refused so far (E_BUDGET, E_TIMEOUT, E_TOO_LARGE),
                           and models refused as larger than the whole budget */
};

MEMFIT_API void memfit_budget_get_usage(memfit_budget *budget, struct memfit_budget_usage *out);

/* What one owner holds. */
struct memfit_budget_owner {
    const char *owner;
    uint64_t total_bytes;
    uint64_t bytes[MEMFIT_BUDGET_CATEGORY_COUNT];
};

/*
 * Totals by owner, largest first, as one allocation (the owner strings live
 * in it) that the caller frees with memfit_free(). E_NOMEM on failure.
 * With no reservation, *out = NULL and *n_out = 0.
 */
MEMFIT_API enum memfit_status
memfit_budget_get_owners(memfit_budget *budget, struct memfit_budget_owner **out, size_t *n_out);

/* The default budget: this share of the effective limit (memfit_limit_read). */
#define MEMFIT_BUDGET_DEFAULT_PERCENT 80.0

/* What the caller knows about the budget; the rest comes from the configuration. */
struct memfit_budget_settings {
    uint64_t flag_bytes;       /* the command line's size; 0: not given */
    const char *flag_name;     /* for the source: "--budget" (the default) */
    const char *flag_text;     /* the flag's value as written ("512MB"); NULL: the size */
    uint64_t manifest_bytes;   /* the manifest's `budget` in bytes; 0: not given */
    double manifest_percent;   /* the manifest's `budget: 50%`; 0: not given */
    const char *manifest_path; /* names the manifest in the source: "memfit.yaml" */
    const char *root;          /* where the limit is read: NULL the live machine, or a fixture */
    pid_t pid;                 /* whose cgroup limit: 0 the calling process */
};

/* Fills the defaults: nothing given, flag_name "--budget", the live machine. */
MEMFIT_API void memfit_budget_settings_default(struct memfit_budget_settings *settings);

/*
 * The one place that decides a process's budget. The first that is set wins:
 *   1. the flag (in->flag_bytes)            "--budget 512MB"
 *   2. MEMFIT_MAX_MEMORY_MB, or its alias MAX_MEMORY_USAGE_MB, in the
 *      environment                          "MEMFIT_MAX_MEMORY_MB=1024 (environment)"
 *   3. the same names in the `.env` table   "MAX_MEMORY_USAGE_MB=512 (.env)"
 *   4. the manifest's budget, in bytes      "memfit.yaml: budget 512 MiB"
 *      or a percent of the effective limit  "memfit.yaml: budget 50% of cgroup limit 2.00 GiB"
 *   5. MEMFIT_BUDGET_DEFAULT_PERCENT of the effective limit
 *                                           "80% of cgroup limit 2.00 GiB"
 * A setting's plain number is MiB; a number with a unit is taken as written
 * ("1.5GiB"); an empty one counts as unset. Writes the size to *out_bytes and
 * where it came from to `source` (NULL with size 0 allowed; truncated to
 * fit), for "budget: SIZE (SOURCE)" at start — both only on success.
 * E_RANGE naming the setting for a bad value ("MAX_MEMORY_USAGE_MB=lots
 * (.env): expected a size in MiB or with a unit"), a manifest percent
 * outside (0, 100], or when a share is asked of a limit that cannot be read;
 * E_NOT_FOUND for a missing in->pid.
 */
MEMFIT_API enum memfit_status memfit_budget_resolve(const struct memfit_budget_settings *in,
                                                    uint64_t *out_bytes, char *source,
                                                    size_t source_size);

/* ---- Model drivers ------------------------------------------------------- */

/*
 * How the manager talks to a model family. The manager never runs a model:
 * the caller runs the loaded pointer (memfit_handle_model) while it holds a
 * handle. `config` is the pointer given at registration; `identity` is the
 * registered identity options string ("" when none).
 *
 * Calls come from the thread that triggered them, with no manager or budget
 * lock held; for one model they never overlap (one load at a time, unload
 * only of a loaded model with no handle out). A driver may reserve more
 * budget itself (e.g. a workspace per request) from memfit_manager_budget().
 */
struct memfit_model_driver {
    /* Family name for status output ("dinov2", "qwen2"); required. */
    const char *family;
    /*
     * Required. What a load will reserve, by category, computed from metadata
     * BEFORE anything is fetched or loaded, so a model that cannot fit is
     * refused without downloading it. A load runs, with no budget held until
     * its last step:
     *   1. plan. A total larger than the whole budget is refused at once with
     *      MEMFIT_E_TOO_LARGE (message: both figures); nothing is fetched and
     *      the model stays UNLOADED (the budget may be resized later).
     *   2. fetch, when fetch is not NULL (FETCHING).
     *   3. plan again after a successful fetch, the file now local: a first
     *      plan may be provisional (e.g. a remote file's size), the second
     *      must be exact. The size check of 1 applies again.
     *   4. reserve the plan (evicting idle models, waiting up to the
     *      acquire's deadline for room), then load (LOADING).
     * So a fetch that fails, or a file whose second plan fails, evicts
     * nothing. A plan failure puts the model in FAILED (retried with
     * back-off).
     */
    enum memfit_status (*plan)(void *config, const char *identity, struct memfit_budget_cost *out);
    /*
     * Optional (NULL: nothing to fetch). Makes the model's files local (the
     * FETCHING state). Called after the first plan, with no budget reserved.
     * A failure puts the model in FAILED unless transient (as for load).
     */
    enum memfit_status (*fetch)(void *config, const char *identity);
    /*
     * Required. Loads the model within `reserved` (what plan asked for, now
     * held for it) and returns an opaque loaded-model pointer.
     * E_NOMEM/E_BUDGET/E_TIMEOUT/E_BUSY/E_CANCELLED/E_TOO_LARGE are transient
     * (the model goes back to UNLOADED); any other failure puts it in FAILED.
     */
    enum memfit_status (*load)(void *config, const char *identity,
                               const struct memfit_budget_cost *reserved, void **out_model);
    /* Required. Frees everything load made; cannot fail. */
    void (*unload)(void *config, void *model);
};

/* ---- Manager ------------------------------------------------------------- */

/* Lifecycle states. Values are stable (they reach /api/models). */
enum memfit_model_state {
    MEMFIT_MODEL_UNLOADED = 0,
    MEMFIT_MODEL_FETCHING = 1,
    MEMFIT_MODEL_LOADING = 2,
    MEMFIT_MODEL_READY = 3, /* loaded, no handle out */
    MEMFIT_MODEL_BUSY = 4,  /* loaded, handles out */
    MEMFIT_MODEL_UNLOADING = 5,
    MEMFIT_MODEL_FAILED = 6, /* last load failed; retried after a back-off */
};

/* "unloaded", "fetching", "loading", "ready", "busy", "unloading", "failed". */
MEMFIT_API const char *memfit_model_state_name(enum memfit_model_state state);

/* keep_alive values with a meaning of their own. */
#define MEMFIT_KEEP_ALIVE_NEVER_UNLOAD (-1)      /* keep loaded until evicted or unloaded */
#define MEMFIT_KEEP_ALIVE_DEFAULT      INT64_MIN /* use the manager's default_keep_alive_s */

/* A model to register. Strings are copied; `driver` and `config` are borrowed
 * and must outlive the manager. */
struct memfit_model_options {
    const char *name;
    const struct memfit_model_driver *driver;
    void *config;
    /*
     * Options that decide what is loaded ("ctx=4096"), or NULL. A request
     * that names a different identity is refused with MEMFIT_E_BUSY and a
     * message saying both: memfit never reloads a model silently because a
     * request asked for other options (register a second model instead).
     */
    const char *identity;
    /* Seconds a model stays loaded after its last handle is released; 0 =
     * unload at once; MEMFIT_KEEP_ALIVE_NEVER_UNLOAD; MEMFIT_KEEP_ALIVE_DEFAULT. */
    int64_t keep_alive_s;
    bool pin;                 /* loaded by memfit_manager_load_pinned, never evicted/expired */
    unsigned max_concurrency; /* handles out at once; 0 = unlimited */
    const char *family;       /* shown in status ("dinov2"); NULL: the driver's family */
};

/* Fills defaults: keep_alive_s = MEMFIT_KEEP_ALIVE_DEFAULT, unlimited, not pinned. */
MEMFIT_API void memfit_model_options_default(struct memfit_model_options *options);

typedef struct memfit_manager memfit_manager;
typedef struct memfit_handle memfit_handle;

enum memfit_manager_event_kind {
    MEMFIT_EVENT_LOAD = 0,     /* a model finished loading */
    MEMFIT_EVENT_UNLOAD = 1,   /* unloaded: keep_alive, explicit or idle cleanup */
    MEMFIT_EVENT_EVICT = 2,    /* unloaded to make room for another reservation */
    MEMFIT_EVENT_REFUSE = 3,   /* an acquire refused: budget, too large, queue full or
                                  timeout */
    MEMFIT_EVENT_FAIL = 4,     /* a load failed; the model is FAILED */
    MEMFIT_EVENT_PRESSURE = 5, /* memory pressure: a level change or an action (see
                                  memfit_manager_pressure_tick); model is "" */
};

/* "load", "unload", "evict", "refuse", "fail", "pressure". */
MEMFIT_API const char *memfit_manager_event_name(enum memfit_manager_event_kind kind);

/* An event with its figures. Pointers are valid during the callback only. */
struct memfit_manager_event {
    enum memfit_manager_event_kind kind;
    const char *model;
    enum memfit_status status;  /* REFUSE/FAIL: why; else MEMFIT_OK */
    uint64_t bytes;             /* the model's reserved (or asked) bytes */
    uint64_t duration_ns;       /* LOAD: load time; UNLOAD/EVICT: how long it was loaded */
    uint64_t budget_size_bytes; /* the budget after the event */
    uint64_t budget_free_bytes;
    const char *reason;  /* UNLOAD: "keep_alive", "explicit", "idle", "removed", "shutdown",
                            "pressure"; EVICT: the owner that needed the room, or
                            "pressure"; PRESSURE: "level", "unload idle", "trim heap",
                            "pause admission", "resume admission", "evict idle"; else "" */
    const char *message; /* REFUSE/FAIL: the error message; PRESSURE: what happened and
                            the figures that caused it (the log line); else "" */
    /* The memory pressure in force when the event was emitted (the last
     * pressure tick's figures; all 0 / OK before the first tick). */
    enum memfit_level pressure_level;
    uint64_t pressure_bytes;         /* the judged working set (memfit_pressure_bytes) */
    uint64_t pressure_limit_bytes;   /* the limit it was judged against */
    double pressure_percent;         /* 100 * pressure_bytes / pressure_limit_bytes */
    enum memfit_level pressure_from; /* PRESSURE "level": the level before; else = level */
    /* What set the level: "memory" (the working set against the limit), "psi"
     * (memory PSI above its threshold, the working set below) or "" before
     * any tick; and the memory PSI avg10 figures (percent; -1 when absent). */
    const char *pressure_cause;
    double pressure_psi_some;
    double pressure_psi_full;
};

/* Called on the thread that caused the event, with no manager lock held; it
 * may call the manager's query functions. Must be thread-safe. */
typedef void (*memfit_manager_event_fn)(const struct memfit_manager_event *event, void *user);

/*
 * Called once the record of a model removed by memfit_manager_unregister is
 * freed: nothing of the model is loaded, no handle, load or unload of it is
 * in progress, and the manager will never use its driver or `config` again
 * (the owner may free them now). Called on the thread that let it go, with
 * no manager lock held; it must not call memfit_manager_destroy. Not called
 * by memfit_manager_destroy: once it returns, every config is free to go.
 */
typedef void (*memfit_model_released_fn)(const char *name, void *config, void *user);

/* A clock for policy (keep_alive, last use, back-off): nanoseconds, monotonic. */
typedef uint64_t (*memfit_clock_fn)(void *user);

struct memfit_manager_options {
    uint64_t budget_bytes;        /* required: the budget the manager creates and owns */
    int64_t default_keep_alive_s; /* 300 */
    bool unloading_enabled;       /* true; false: nothing is evicted, expired or cleaned
                                     up, work that does not fit is refused */
    int64_t admission_timeout_ms; /* 30000: what a negative acquire timeout means */
    unsigned max_queue;           /* 512: acquires waiting at once; more get E_BUSY */
    uint64_t backoff_initial_ms;  /* 1000: first retry delay after a failed load */
    uint64_t backoff_max_ms;      /* 300000: the delay doubles up to this */
    bool reaper_thread;           /* true: a thread applies keep_alive every reaper_interval_ms */
    uint64_t reaper_interval_ms;  /* 1000 */
    memfit_clock_fn clock;        /* NULL: memfit_now_ns */
    void *clock_user;
    memfit_manager_event_fn on_event; /* NULL: none */
    void *event_user;
    /*
     * Memory pressure (DESIGN.md, the memory model, point 4). With
     * pressure_thread, a thread samples the machine (memfit_sampler, the
     * manager's own cgroup, no GPU) every pressure_interval_ms and hands each
     * sample to memfit_manager_pressure_tick(). Off by default: a process
     * without it still gets the budget's guarantees; tests drive the ticks
     * by hand with made-up samples.
     */
    bool pressure_thread;                               /* false */
    uint64_t pressure_interval_ms;                      /* 1000 */
    struct memfit_alert_thresholds pressure_thresholds; /* memfit_alert_thresholds_default() */
    const char *pressure_root; /* the sampler's root: NULL = "/", or a fixture tree */
    /*
     * Pressure stall information (the cgroup's memory.pressure, else
     * /proc/pressure/memory): memory PSI "some" avg10 at or above
     * pressure_psi_some_percent raises the level to at least warning, "full"
     * avg10 at or above pressure_psi_full_percent to at least critical, even
     * while the working set is below its thresholds (the kernel is already
     * stalling on reclaim). 0 turns that signal off. It falls back below
     * the threshold less the hysteresis (in points, at most half of it).
     */
    double pressure_psi_some_percent;     /* 10 */
    double pressure_psi_full_percent;     /* 5 */
    memfit_model_released_fn on_released; /* NULL: none */
    void *released_user;
};

/* Fills the defaults above (budget_bytes = 0, which create rejects). */
MEMFIT_API void memfit_manager_options_default(struct memfit_manager_options *options);

/*
 * Applies the environment/.env settings: MEMFIT_ENABLE_MODEL_UNLOADING
 * (alias ENABLE_MODEL_UNLOADING) and MEMFIT_MEMORY_PRESSURE (the pressure
 * thread), each true/false/1/0/yes/no/on/off. E_RANGE naming the variable
 * and value when unreadable; options unchanged then.
 */
MEMFIT_API enum memfit_status
memfit_manager_options_from_config(struct memfit_manager_options *options);

/* Creates a manager with its budget. E_MISUSE for a zero budget, E_RANGE for
 * bad pressure thresholds (memfit_alert_thresholds_check), E_NOMEM; with
 * pressure_thread, the errors of memfit_sampler_create. */
MEMFIT_API enum memfit_status memfit_manager_create(const struct memfit_manager_options *options,
                                                    memfit_manager **out);

/*
 * Stops the reaper, unloads every model and frees everything; NULL is a
 * no-op. Handles still out are a misuse (logged; their models are unloaded
 * anyway).
 */
MEMFIT_API void memfit_manager_destroy(memfit_manager *mgr);

/* The manager's budget (borrowed), for drivers that reserve workspaces. */
MEMFIT_API memfit_budget *memfit_manager_budget(memfit_manager *mgr);

/*
 * Registers a model (UNLOADED; nothing is loaded). E_EXISTS for a name
 * already registered, E_MISUSE for a missing name/driver/required callback,
 * E_NOMEM. A failed call registers nothing.
 */
MEMFIT_API enum memfit_status memfit_manager_register(memfit_manager *mgr,
                                                      const struct memfit_model_options *options);

/*
 * Gets a handle on a loaded model, loading it first if needed (in the
 * order that struct memfit_model_driver's plan describes). Concurrent first
 * acquires wait on one load. Waits (within timeout_ms) while the model loads
 * or unloads, while max_concurrency handles are out, and for budget room: a
 * model that does not fit beside models in use (handles out, so they cannot
 * be evicted) waits for them to be released, and evicts them once idle.
 * Failures:
 *   E_NOT_FOUND  no such model;
 *   E_BUSY       identity mismatch (see memfit_model_options.identity), or the
 *                admission queue is full;
 *   E_TOO_LARGE  the model's plan is larger than the whole budget: at once,
 *                nothing fetched, whatever the timeout; retrying cannot help
 *                until the budget grows;
 *   E_BUDGET     timeout 0 and the model does not fit now, even after evicting
 *                idle models (message: asked, free, size, who holds what);
 *   E_TIMEOUT    the wait ran out: for room (same figures, "; waited N ms"),
 *                or for a load, an unload or a concurrency slot;
 *   the kept status of the last failed load while the model is in back-off
 *   (fails fast, message says when it will be retried), or of a new failure.
 * E_TOO_LARGE, E_BUDGET and E_TIMEOUT leave the model UNLOADED (a REFUSE
 * event), never FAILED: no back-off. *out is written only on success.
 */
MEMFIT_API enum memfit_status memfit_manager_acquire(memfit_manager *mgr, const char *name,
                                                     int64_t timeout_ms, memfit_handle **out);

/* How memfit_manager_acquire_ex waits. */
struct memfit_acquire_options {
    const char *identity; /* NULL or "": any (see memfit_model_options.identity) */
    int64_t timeout_ms;   /* as memfit_manager_acquire's */
    /* Asked about every 100 ms while the acquire waits (for a load, a slot or
     * budget room); when it says true the acquire returns E_CANCELLED at once,
     * with no refusal recorded. NULL: never. */
    memfit_cancel_fn cancelled;
    void *cancel_user;
};

/* memfit_manager_acquire with options: identity, timeout and cancellation. */
MEMFIT_API enum memfit_status memfit_manager_acquire_ex(memfit_manager *mgr, const char *name,
                                                        const struct memfit_acquire_options *o,
                                                        memfit_handle **out);

/* Same, checking the model's identity options against `identity` (NULL or
 * "": any). */
MEMFIT_API enum memfit_status memfit_manager_acquire_identity(memfit_manager *mgr, const char *name,
                                                              const char *identity,
                                                              int64_t timeout_ms,
                                                              memfit_handle **out);

/* The loaded model (the driver's pointer); valid while the handle is held. */
MEMFIT_API void *memfit_handle_model(const memfit_handle *handle);

/* The model's registered name; valid while the handle is held (for a model
 * never unregistered, while the manager lives). */
MEMFIT_API const char *memfit_handle_name(const memfit_handle *handle);

/*
 * Gives a handle back; NULL is a no-op. The last release starts the model's
 * keep_alive (0: it is unloaded here, on this thread).
 */
MEMFIT_API void memfit_manager_release(memfit_handle *handle);

/*
 * memfit_manager_release with the keep_alive of the idle time that follows
 * (Ollama's per-request keep_alive): 0 unloads the model as soon as it is
 * idle (here, when this was its last handle), -1 keeps it loaded until it is
 * evicted or unloaded, N keeps it N seconds; MEMFIT_KEEP_ALIVE_DEFAULT is
 * the model's own. Of handles released in turn, the last one's keep_alive
 * holds; the model's own applies again from its next plain release. Pinned
 * models are never unloaded by it. The handle is released in every case;
 * E_RANGE (and the model's keep_alive) for a value below -1.
 */
MEMFIT_API enum memfit_status memfit_manager_release_keep_alive(memfit_handle *handle,
                                                                int64_t keep_alive_s);

/*
 * Loads a model now (as an acquire followed by a release that keeps it
 * loaded until its keep_alive runs out). Errors as memfit_manager_acquire.
 */
MEMFIT_API enum memfit_status memfit_manager_load(memfit_manager *mgr, const char *name,
                                                  int64_t timeout_ms);

/* Loads every pinned model; returns the first failure (and tries them all). */
MEMFIT_API enum memfit_status memfit_manager_load_pinned(memfit_manager *mgr, int64_t timeout_ms);

/*
 * Unloads a model now, pinned or not, even with unloading disabled (an
 * explicit request). A FAILED model goes back to UNLOADED (its back-off is
 * cleared). E_NOT_FOUND; E_BUSY while handles are out or it is loading.
 */
MEMFIT_API enum memfit_status memfit_manager_unload(memfit_manager *mgr, const char *name);

/*
 * Removes a model from the registry (a manifest reload dropped it): from now
 * on acquires of `name` fail with E_NOT_FOUND (so do acquires waiting on it),
 * snapshots no longer list it, and the name may be registered again at once.
 * A loaded idle model is unloaded here (event UNLOAD, reason "removed"); one
 * with handles out, or loading, is unloaded when its last handle is released.
 * Its driver and config must stay valid until then: the options'
 * on_released says when (keeping them until the manager is destroyed is
 * always enough). The record itself is freed then too, so a process that
 * registers and unregisters models forever (ModelMesh) keeps no trace of
 * the removed ones. E_NOT_FOUND, E_MISUSE.
 */
MEMFIT_API enum memfit_status memfit_manager_unregister(memfit_manager *mgr, const char *name);

/*
 * Unloads every loaded, idle, unpinned model (memory pressure, cleanup).
 * Returns the bytes freed; 0 when unloading is disabled.
 */
MEMFIT_API uint64_t memfit_manager_unload_idle(memfit_manager *mgr);

/*
 * Applies keep_alive at time `now_ns` (the manager's clock): unloads idle
 * models whose keep_alive has run out. The reaper thread calls it; tests
 * with a fake clock call it directly. Returns how many models it unloaded.
 */
MEMFIT_API unsigned memfit_manager_tick(memfit_manager *mgr, uint64_t now_ns);

/* ---- Memory pressure ------------------------------------------------------ */

/*
 * The working set the pressure levels are judged on, from one sample:
 *
 *   with a cgroup limit: max(working set, usage - max(0, inactive_file - file_mapped))
 *   else:                the sample's working set (total - available memory)
 *
 * Why not the cgroup working set alone (usage - inactive_file): the kernel
 * puts freshly faulted file pages on the INACTIVE file list, and weights
 * mapped from a file stay there until they are touched twice — so right
 * after a model loads, its weights are "inactive" and the working set
 * under-counts them by up to the model's size, exactly when memory grows.
 * Those pages are mapped by the process and in use: reclaiming them only
 * makes the next forward fault them back in. file_mapped counts every
 * mapped file page (active or inactive), so inactive_file - file_mapped is
 * a lower bound of the inactive file pages nobody maps (the truly cheap
 * ones to reclaim); usage minus that is an upper bound of what cannot be
 * given back without hurting. The max() with the working set only matters
 * when a field is missing (UNKNOWN) or the counters were read at slightly
 * different moments. Never above usage. Returns MEMFIT_SYS_UNKNOWN when the
 * sample has no usable figure; *limit_out (may be NULL) gets the limit
 * judged against (UNKNOWN likewise).
 */
MEMFIT_API uint64_t memfit_pressure_bytes(const struct memfit_sample *sample, uint64_t *limit_out);

/*
 * Applies one sample (the pressure thread's, or a made-up one in tests).
 * The level follows memfit_alert_next() on memfit_pressure_bytes() with the
 * manager's pressure_thresholds (so its hysteresis), then:
 *   warning and above: unloads idle, unpinned models (UNLOAD, reason
 *     "pressure"; as memfit_manager_unload_idle) and, when that freed
 *     anything or the level just rose, trims the heap (memfit_heap_trim);
 *   critical and above: pauses admission — every acquire (load included)
 *     waits until the level falls below critical (with the hysteresis),
 *     bounded by its timeout, then fails with E_TIMEOUT (E_BUSY for a
 *     timeout of 0) and a message naming the pressure and its figures;
 *     handles already out are not touched;
 *   danger: also evicts every idle model, pinned ones included (EVICT,
 *     reason "pressure"): the alternative is the OOM killer.
 * With unloading disabled nothing is unloaded (admission still pauses).
 * Busy and loading models are never touched. Each level change and action
 * is an event (kind PRESSURE, or UNLOAD/EVICT per model) and a log line with
 * the figures (judged working set, cgroup working set and usage, limit,
 * percent, level). A sample without figures changes nothing. Returns the
 * level now in force. Ticks are serialized; any thread may call it.
 */
MEMFIT_API enum memfit_level memfit_manager_pressure_tick(memfit_manager *mgr,
                                                          const struct memfit_sample *sample);

/*
 * Status snapshot. The layout is stable: the server's /api/models and
 * /metrics read it (fields are only appended). Times are the manager's
 * clock in nanoseconds (0: never).
 */
struct memfit_model_status {
    const char *name;
    const char *family;
    const char *identity;
    enum memfit_model_state state;
    bool pinned;
    int64_t keep_alive_s; /* resolved (never MEMFIT_KEEP_ALIVE_DEFAULT) */
    unsigned max_concurrency;
    unsigned in_use;                 /* handles out */
    unsigned waiting;                /* acquires waiting on this model */
    struct memfit_budget_cost bytes; /* held now (planned, while loading) */
    uint64_t total_bytes;
    uint64_t load_time_ns; /* of the last successful load */
    uint64_t loaded_at_ns;
    uint64_t last_used_ns;
    uint64_t expires_at_ns; /* idle and keep_alive >= 0: when it will be unloaded */
    uint64_t retry_at_ns;   /* FAILED: when a load is tried again */
    uint64_t n_requests;    /* successful acquires */
    uint64_t n_loads, n_unloads, n_evictions, n_failures, n_refusals;
    enum memfit_status last_status; /* of the last failed load or refusal */
    const char *last_error;         /* "" when none */
};

struct memfit_manager_status {
    struct memfit_budget_usage budget;
    unsigned queue_depth; /* acquires waiting now */
    unsigned max_queue;
    bool unloading_enabled;
    size_t n_models;
    struct memfit_model_status *models; /* in registration order */
    /* Memory pressure (memfit_manager_pressure_tick); OK and 0 before any tick. */
    enum memfit_level pressure_level;
    bool admission_paused;         /* pressure at critical or above: acquires wait */
    uint64_t pressure_bytes;       /* the last judged working set */
    uint64_t pressure_limit_bytes; /* and its limit */
    double pressure_percent;
    uint64_t pressure_ticks;       /* samples applied */
    uint64_t pressure_unloads;     /* models unloaded or evicted by pressure */
    uint64_t pressure_freed_bytes; /* budget bytes they gave back */
    uint64_t pressure_paused_ns;   /* total time admission was paused (monotonic) */
    const char *pressure_cause;    /* "memory", "psi" or "" (a static string) */
    double pressure_psi_some;      /* memory PSI avg10 of the last tick; -1 when absent */
    double pressure_psi_full;
};

/* Takes a snapshot as one allocation the caller frees with memfit_free().
 * E_NOMEM on failure. */
MEMFIT_API enum memfit_status memfit_manager_snapshot(memfit_manager *mgr,
                                                      struct memfit_manager_status **out);

/* ---- Manifest ------------------------------------------------------------ */

/*
 * memfit.yaml: the global settings and the models. Example:
 *
 *   budget: 512MB          # or 80% (of the cgroup limit / physical memory)
 *   cache_dir: /var/cache/memfit
 *   keep_alive: 5m         # default for models; -1 or never = never unload
 *   unloading: true
 *   admission_timeout: 30s
 *   max_queue: 512
 *   models:
 *     - name: dino
 *       family: dinov2
 *       sources: [s3://bucket/dino.gguf, https://example.com/dino.gguf]
 *       sha256: 9f86d0...
 *       options: {quantize: q8_0}
 *       keep_alive: 10m
 *       pin: false
 *       max_concurrency: 2
 *       limits: {max_batch: 8, max_image_size: 518, max_context: 0}
 *
 * Unknown keys, duplicate keys or models, wrong types and bad values are
 * E_FORMAT errors naming the file, line and column, e.g.
 *   "memfit.yaml:12:5: unknown key 'keepalive' in model 'dino' (did you mean
 *    keep_alive?)".
 * YAML aliases are refused (a small file must not expand into a large one).
 */
#define MEMFIT_MANIFEST_DEFAULT_PATH "memfit.yaml"

struct memfit_manifest_option {
    char *key;
    char *value;
};

struct memfit_manifest_limits {
    uint64_t max_batch;      /* 0 = unset */
    uint64_t max_image_size; /* pixels per side; 0 = unset */
    uint64_t max_context;    /* tokens; 0 = unset */
};

struct memfit_manifest_model {
    char *name;
    char *family;
    char **sources; /* in the order to try */
    size_t n_sources;
    char *sha256;                           /* 64 lowercase hex digits, or NULL */
    struct memfit_manifest_option *options; /* load options, in file order */
    size_t n_options;
    int64_t keep_alive_s; /* MEMFIT_KEEP_ALIVE_DEFAULT when not given */
    bool pin;
    unsigned max_concurrency; /* 0 = unlimited */
    struct memfit_manifest_limits limits;
    unsigned line; /* where the entry starts, for later messages */
};

struct memfit_manifest {
    char *path;            /* the name used in messages */
    uint64_t budget_bytes; /* 0 = not given */
    double budget_percent; /* 0 = not given; "budget: 80%" */
    char *cache_dir;       /* NULL = not given */
    int64_t keep_alive_s;  /* 300 when not given */
    bool unloading_enabled;
    int64_t admission_timeout_ms; /* 30000 when not given */
    unsigned max_queue;           /* 512 when not given */
    /* pressure: {warning: 80%, critical: 90%, psi_some: 10, psi_full: 5};
     * each -1 when not given (the manager's defaults then). */
    struct {
        double warning_percent, critical_percent, psi_some_percent, psi_full_percent;
    } pressure;
    struct memfit_manifest_model *models;
    size_t n_models;
};

/*
 * Reads and parses a manifest file (at most 1 MiB). E_IO naming the path when
 * it cannot be read (E_NOT_FOUND when missing), E_FORMAT as above, E_NOMEM.
 * *out is written only on success; free it with memfit_manifest_free().
 */
MEMFIT_API enum memfit_status memfit_manifest_load(const char *path, struct memfit_manifest **out);

/* Parses a manifest from memory; `name` is used in messages ("memfit.yaml"). */
MEMFIT_API enum memfit_status memfit_manifest_parse_string(const char *text, size_t len,
                                                           const char *name,
                                                           struct memfit_manifest **out);

/* Frees a manifest; NULL is a no-op. */
MEMFIT_API void memfit_manifest_free(struct memfit_manifest *manifest);

/*
 * Copies the manifest's pressure settings (those given) into manager
 * options: thresholds and PSI limits. The combination is checked by
 * memfit_manager_create (E_RANGE when warning >= critical).
 */
MEMFIT_API void memfit_manifest_apply_pressure(const struct memfit_manifest *manifest,
                                               struct memfit_manager_options *options);

/*
 * Copies every manager setting the manifest holds into manager options:
 * default keep_alive, unloading, admission_timeout, max_queue and the
 * pressure settings. What every program that builds a manager from a
 * manifest calls (the budget is memfit_budget_resolve's).
 */
MEMFIT_API void memfit_manifest_apply(const struct memfit_manifest *manifest,
                                      struct memfit_manager_options *options);

/* The model entry named `name`, or NULL. */
MEMFIT_API const struct memfit_manifest_model *
memfit_manifest_find(const struct memfit_manifest *manifest, const char *name);

#ifdef __cplusplus
}
#endif

#endif

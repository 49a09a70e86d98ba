/*
 * The memory budget: one byte count per process, spent by reservations
 * labelled with a category and an owner (usually a model name).
 *
 * A reservation that does not fit asks the evictor (installed by the
 * manager) to free room, then waits on a condition variable woken by
 * releases, then fails with a message that says what was asked, what is free
 * and who holds the rest — the message a user needs instead of an OOM kill:
 * E_BUDGET when it was not to wait (timeout 0), E_TIMEOUT when it waited and
 * room never came, E_TOO_LARGE at once when it is more than the whole budget
 * (no release can ever make room for it).
 * The reserved total is checked and updated under one lock, so it never goes
 * above the size, whatever the threads do.
 *
 * The evictor is called with the lock released (it unloads models, which
 * releases reservations), so the budget never calls out while holding its
 * lock and callers may hold their own locks around release().
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "manager/budget.h"

struct memfit_reservation {
    memfit_budget *budget;
    struct memfit_reservation *prev, *next;
    struct memfit_budget_cost cost;
    uint64_t total;
    char owner[]; /* copied label, in the same allocation */
};

struct memfit_budget {
    pthread_mutex_t lock;
    pthread_cond_t cond; /* signalled by releases, size changes and notify */
    uint64_t size;
    uint64_t reserved;
    uint64_t peak;
    uint64_t by_category[MEMFIT_BUDGET_CATEGORY_COUNT];
    struct memfit_reservation *head;
    size_t n_reservations;
    unsigned n_waiting;
    _Atomic unsigned waiting_hint; /* n_waiting, readable without the lock */
    uint64_t generation;           /* bumped whenever room may have appeared */
    uint64_t n_refused;
    memfit_budget_evict_fn evict;
    void *evict_user;
};

static const char *const category_names[MEMFIT_BUDGET_CATEGORY_COUNT] = {
    "weights", "converted weights", "workspace", "KV cache"};

const char *memfit_budget_category_name(enum memfit_budget_category category)
{
    if ((unsigned)category >= MEMFIT_BUDGET_CATEGORY_COUNT)
        return "unknown";
    return category_names[category];
}

uint64_t memfit_budget_cost_total(const struct memfit_budget_cost *cost)
{
    uint64_t total = 0;
    for (int c = 0; c < MEMFIT_BUDGET_CATEGORY_COUNT; c++)
        if (__builtin_add_overflow(total, cost->bytes[c], &total))
            return UINT64_MAX;
    return total;
}

char *mf_format_bytes(uint64_t bytes, char *buf, size_t size)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (bytes < 1024) {
        snprintf(buf, size, "%llu B", (unsigned long long)bytes);
        return buf;
    }
    double v = (double)bytes / 1024.0;
    int i = 0;
    while (v >= 1024.0 && i < 5) {
        v /= 1024.0;
        i++;
    }
    snprintf(buf, size, "%.1f %s", v, units[i]);
    return buf;
}

/* ---- Monotonic waits ------------------------------------------------------ */

uint64_t mf_deadline_ns(int64_t timeout_ms)
{
    if (timeout_ms < 0)
        return UINT64_MAX;
    uint64_t now = memfit_now_ns();
    uint64_t delta = (uint64_t)timeout_ms * 1000000u;
    if ((uint64_t)timeout_ms > UINT64_MAX / 1000000u || now > UINT64_MAX - delta)
        return UINT64_MAX - 1;
    return now + delta;
}

int64_t mf_remaining_ms(uint64_t deadline_ns)
{
    if (deadline_ns == UINT64_MAX)
        return -1;
    uint64_t now = memfit_now_ns();
    if (now >= deadline_ns)
        return 0;
    uint64_t ms = (deadline_ns - now + 999999u) / 1000000u;
    return ms > INT64_MAX ? INT64_MAX : (int64_t)ms;
}

int mf_cond_init(pthread_cond_t *cond)
{
    pthread_condattr_t attr;
    int rc = pthread_condattr_init(&attr);
    if (rc != 0)
        return rc;
    rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(cond, &attr);
    pthread_condattr_destroy(&attr);
    return rc;
}

bool mf_cond_wait_until(pthread_cond_t *cond, pthread_mutex_t *lock, uint64_t deadline_ns)
{
    if (deadline_ns == UINT64_MAX) {
        pthread_cond_wait(cond, lock);
        return true;
    }
    if (memfit_now_ns() >= deadline_ns)
        return false;
    struct timespec ts = {.tv_sec = (time_t)(deadline_ns / 1000000000u),
                          .tv_nsec = (long)(deadline_ns % 1000000000u)};
    int rc = pthread_cond_timedwait(cond, lock, &ts);
    return rc != ETIMEDOUT || memfit_now_ns() < deadline_ns;
}

/* ---- Life ------------------------------------------------------------------ */

enum memfit_status memfit_budget_create(uint64_t size_bytes, memfit_budget **out)
{
    if (!out)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_budget_create: out is NULL");
    memfit_budget *b = memfit_calloc_in(MEMFIT_ALLOC_MANAGER, 1, sizeof(*b));
    if (!b)
        return MEMFIT_E_NOMEM;
    if (pthread_mutex_init(&b->lock, NULL) != 0) {
        memfit_free(b);
        return memfit_fail(MEMFIT_E_NOMEM, "budget: cannot create a mutex");
    }
    if (mf_cond_init(&b->cond) != 0) {
        pthread_mutex_destroy(&b->lock);
        memfit_free(b);
        return memfit_fail(MEMFIT_E_NOMEM, "budget: cannot create a condition variable");
    }
    b->size = size_bytes;
    *out = b;
    return MEMFIT_OK;
}

void memfit_budget_destroy(memfit_budget *budget)
{
    if (!budget)
        return;
    if (budget->head)
        memfit_log(MEMFIT_LOG_WARN, "budget destroyed with %zu reservation(s) still held",
                   budget->n_reservations);
    struct memfit_reservation *r = budget->head;
    while (r) {
        struct memfit_reservation *next = r->next;
        memfit_free(r);
        r = next;
    }
    pthread_cond_destroy(&budget->cond);
    pthread_mutex_destroy(&budget->lock);
    memfit_free(budget);
}

void memfit_budget_set_evictor(memfit_budget *budget, memfit_budget_evict_fn evict, void *user)
{
    pthread_mutex_lock(&budget->lock);
    budget->evict = evict;
    budget->evict_user = user;
    pthread_mutex_unlock(&budget->lock);
}

static void wake_locked(memfit_budget *b)
{
    b->generation++;
    if (b->n_waiting > 0)
        pthread_cond_broadcast(&b->cond);
}

void memfit_budget_set_size(memfit_budget *budget, uint64_t size_bytes)
{
    pthread_mutex_lock(&budget->lock);
    budget->size = size_bytes;
    wake_locked(budget);
    pthread_mutex_unlock(&budget->lock);
}

void mf_budget_notify(memfit_budget *budget)
{
    if (atomic_load_explicit(&budget->waiting_hint, memory_order_relaxed) == 0)
        return;
    pthread_mutex_lock(&budget->lock);
    wake_locked(budget);
    pthread_mutex_unlock(&budget->lock);
}

/* ---- The refusal message ---------------------------------------------------- */

/* Appends to a fixed buffer, truncating quietly. */
struct text {
    char *buf;
    size_t size, len;
};

static void MEMFIT_PRINTF(2, 3) append(struct text *t, const char *fmt, ...)
{
    if (t->len + 1 >= t->size)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->buf + t->len, t->size - t->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        t->len = t->len + (size_t)n >= t->size ? t->size - 1 : t->len + (size_t)n;
}

/* "(weights)" when one category holds it all, else "(weights 1.0 MiB, workspace 2.0 MiB)". */
static void append_categories(struct text *t, const struct memfit_budget_cost *cost)
{
    int used = 0;
    for (int c = 0; c < MEMFIT_BUDGET_CATEGORY_COUNT; c++)
        used += cost->bytes[c] != 0;
    append(t, "(");
    bool first = true;
    for (int c = 0; c < MEMFIT_BUDGET_CATEGORY_COUNT; c++) {
        if (!cost->bytes[c])
            continue;
        char size[32];
        if (used == 1)
            append(t, "%s", category_names[c]);
        else
            append(t, "%s%s %s", first ? "" : ", ", category_names[c],
                   mf_format_bytes(cost->bytes[c], size, sizeof(size)));
        first = false;
    }
    append(t, ")");
}

static void owner_cost(const memfit_budget *b, const char *owner, struct memfit_budget_cost *out)
{
    memset(out, 0, sizeof(*out));
    for (const struct memfit_reservation *r = b->head; r; r = r->next)
        if (strcmp(r->owner, owner) == 0)
            for (int c = 0; c < MEMFIT_BUDGET_CATEGORY_COUNT; c++)
                out->bytes[c] += r->cost.bytes[c];
}

static bool first_of_owner(const memfit_budget *b, const struct memfit_reservation *r)
{
    for (const struct memfit_reservation *p = b->head; p != r; p = p->next)
        if (strcmp(p->owner, r->owner) == 0)
            return false;
    return true;
}

/* Orders owners by total descending, then name, so the message is stable. */
static bool owner_before(uint64_t a_total, const char *a, uint64_t b_total, const char *b)
{
    return a_total != b_total ? a_total > b_total : strcmp(a, b) < 0;
}

#define MAX_OWNERS_LISTED 8

/*
 * "asked 300.0 MiB for dino-b workspace; 120.0 MiB free of 512.0 MiB;
 *  in use: sam 250.0 MiB (weights), dino-s 142.0 MiB (weights)", failing
 * with `st`. Built without allocating (this is the out-of-memory path);
 * owners are picked largest first by repeated selection, fine for the few a
 * budget has.
 */
static enum memfit_status refuse_locked(memfit_budget *b, enum memfit_status st,
                                        const struct memfit_budget_cost *cost, uint64_t total,
                                        const char *owner, uint64_t waited_ms)
{
    char text_buf[1024], s1[32], s2[32];
    struct text t = {text_buf, sizeof(text_buf), 0};
    int used = 0, only = 0;
    for (int c = 0; c < MEMFIT_BUDGET_CATEGORY_COUNT; c++)
        if (cost->bytes[c]) {
            used++;
            only = c;
        }
    append(&t, "asked %s for %s", mf_format_bytes(total, s1, sizeof(s1)), owner);
    if (used == 1) {
        append(&t, " %s", category_names[only]);
    } else if (used > 1) {
        append(&t, " ");
        append_categories(&t, cost);
    }
    uint64_t free_bytes = b->reserved < b->size ? b->size - b->reserved : 0;
    append(&t, "; %s free of %s", mf_format_bytes(free_bytes, s1, sizeof(s1)),
           mf_format_bytes(b->size, s2, sizeof(s2)));
    if (total > b->size)
        append(&t, " (more than the whole budget)");
    append(&t, "; in use: ");
    if (!b->head)
        append(&t, "nothing");
    uint64_t last_total = UINT64_MAX;
    const char *last_owner = NULL;
    size_t listed = 0, owners = 0;
    for (const struct memfit_reservation *r = b->head; r; r = r->next)
        owners += first_of_owner(b, r);
    for (; listed < owners && listed < MAX_OWNERS_LISTED; listed++) {
        const char *best = NULL;
        uint64_t best_total = 0;
        struct memfit_budget_cost best_cost, c;
        for (const struct memfit_reservation *r = b->head; r; r = r->next) {
            if (!first_of_owner(b, r))
                continue;
            owner_cost(b, r->owner, &c);
            uint64_t tot = memfit_budget_cost_total(&c);
            if (last_owner && !owner_before(last_total, last_owner, tot, r->owner))
                continue;
            if (!best || owner_before(tot, r->owner, best_total, best)) {
                best = r->owner;
                best_total = tot;
                best_cost = c;
            }
        }
        append(&t, "%s%s %s ", listed ? ", " : "", best,
               mf_format_bytes(best_total, s1, sizeof(s1)));
        append_categories(&t, &best_cost);
        last_owner = best;
        last_total = best_total;
    }
    if (owners > listed)
        append(&t, ", and %zu more", owners - listed);
    if (waited_ms > 0)
        append(&t, "; waited %llu ms", (unsigned long long)waited_ms);
    b->n_refused++;
    return memfit_fail(st, "%s", text_buf);
}

enum memfit_status mf_budget_check_whole(memfit_budget *budget,
                                         const struct memfit_budget_cost *cost, const char *what)
{
    uint64_t total = memfit_budget_cost_total(cost);
    pthread_mutex_lock(&budget->lock);
    uint64_t size = budget->size;
    if (total <= size) {
        pthread_mutex_unlock(&budget->lock);
        return MEMFIT_OK;
    }
    budget->n_refused++;
    pthread_mutex_unlock(&budget->lock);
    char text_buf[256], s1[32], s2[32];
    struct text t = {text_buf, sizeof(text_buf), 0};
    append(&t, "%s needs %s ", what, mf_format_bytes(total, s1, sizeof(s1)));
    append_categories(&t, cost);
    append(&t,
           " but the whole budget is %s: it can never load; raise the budget or use a smaller "
           "quantization",
           mf_format_bytes(size, s2, sizeof(s2)));
    return memfit_fail(MEMFIT_E_TOO_LARGE, "%s", text_buf);
}

/* ---- Reserve and release -------------------------------------------------------- */

uint64_t mf_wake_ns(uint64_t deadline_ns, memfit_cancel_fn cancelled)
{
    if (!cancelled)
        return deadline_ns;
    uint64_t poll = memfit_now_ns() + (uint64_t)MF_CANCEL_POLL_MS * 1000000u;
    return poll < deadline_ns ? poll : deadline_ns;
}

enum memfit_status memfit_budget_reserve_cost(memfit_budget *budget,
                                              const struct memfit_budget_cost *cost,
                                              const char *owner, int64_t timeout_ms,
                                              memfit_reservation **out)
{
    return mf_budget_reserve_cancellable(budget, cost, owner, timeout_ms, NULL, NULL, out);
}

enum memfit_status mf_budget_reserve_cancellable(memfit_budget *budget,
                                                 const struct memfit_budget_cost *cost,
                                                 const char *owner, int64_t timeout_ms,
                                                 memfit_cancel_fn cancelled, void *cancel_user,
                                                 memfit_reservation **out)
{
    if (!budget || !cost || !owner || !out)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_budget_reserve: NULL argument");
    uint64_t total = memfit_budget_cost_total(cost);
    if (total == UINT64_MAX)
        return memfit_fail(MEMFIT_E_RANGE, "reservation for %s: sizes overflow", owner);
    size_t owner_len = strlen(owner);
    struct memfit_reservation *r =
        memfit_malloc_in(MEMFIT_ALLOC_MANAGER, sizeof(*r) + owner_len + 1);
    if (!r)
        return MEMFIT_E_NOMEM;
    memcpy(r->owner, owner, owner_len + 1);
    r->budget = budget;
    r->cost = *cost;
    r->total = total;
    r->prev = NULL;

    uint64_t start = memfit_now_ns();
    uint64_t deadline = mf_deadline_ns(timeout_ms);
    uint64_t evicted_at_generation = UINT64_MAX;
    pthread_mutex_lock(&budget->lock);
    for (;;) {
        if (total <= budget->size && budget->reserved <= budget->size - total)
            break;
        if (total > budget->size) {
            enum memfit_status st =
                refuse_locked(budget, MEMFIT_E_TOO_LARGE, cost, total, owner, 0);
            pthread_mutex_unlock(&budget->lock);
            memfit_free(r);
            return st;
        }
        /* Ask the evictor once per change of the budget: after that only a
         * release (or a model becoming idle, mf_budget_notify) can help. */
        if (budget->evict && evicted_at_generation != budget->generation) {
            evicted_at_generation = budget->generation;
            uint64_t needed = budget->reserved + total - budget->size;
            memfit_budget_evict_fn evict = budget->evict;
            void *user = budget->evict_user;
            pthread_mutex_unlock(&budget->lock);
            evict(user, needed, owner);
            pthread_mutex_lock(&budget->lock);
            continue;
        }
        budget->n_waiting++;
        atomic_store_explicit(&budget->waiting_hint, budget->n_waiting, memory_order_relaxed);
        bool in_time = timeout_ms != 0 && mf_cond_wait_until(&budget->cond, &budget->lock,
                                                             mf_wake_ns(deadline, cancelled));
        in_time = in_time || (cancelled && memfit_now_ns() < deadline);
        budget->n_waiting--;
        atomic_store_explicit(&budget->waiting_hint, budget->n_waiting, memory_order_relaxed);
        if (cancelled && cancelled(cancel_user)) {
            pthread_mutex_unlock(&budget->lock);
            memfit_free(r);
            return memfit_fail(MEMFIT_E_CANCELLED, "reservation for %s: cancelled while waiting",
                               owner);
        }
        if (!in_time) {
            /* One last look: the wake-up that timed out may have come with room. */
            if (total <= budget->size && budget->reserved <= budget->size - total)
                break;
            /* Not waiting: E_BUDGET (it does not fit now); waited in vain: E_TIMEOUT. */
            uint64_t waited_ms = timeout_ms != 0 ? (memfit_now_ns() - start) / 1000000u : 0;
            enum memfit_status st =
                refuse_locked(budget, timeout_ms != 0 ? MEMFIT_E_TIMEOUT : MEMFIT_E_BUDGET, cost,
                              total, owner, waited_ms);
            pthread_mutex_unlock(&budget->lock);
            memfit_free(r);
            return st;
        }
    }
    budget->reserved += total;
    if (budget->reserved > budget->peak)
        budget->peak = budget->reserved;
    for (int c = 0; c < MEMFIT_BUDGET_CATEGORY_COUNT; c++)
        budget->by_category[c] += cost->bytes[c];
    r->next = budget->head;
    if (budget->head)
        budget->head->prev = r;
    budget->head = r;
    budget->n_reservations++;
    pthread_mutex_unlock(&budget->lock);
    *out = r;
    return MEMFIT_OK;
}

enum memfit_status memfit_budget_reserve(memfit_budget *budget,
                                         enum memfit_budget_category category, uint64_t bytes,
                                         const char *owner, int64_t timeout_ms,
                                         memfit_reservation **out)
{
    if ((unsigned)category >= MEMFIT_BUDGET_CATEGORY_COUNT)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_budget_reserve: unknown category %d",
                           (int)category);
    struct memfit_budget_cost cost = {{0}};
    cost.bytes[category] = bytes;
    return memfit_budget_reserve_cost(budget, &cost, owner, timeout_ms, out);
}

void memfit_budget_release(memfit_reservation *reservation)
{
    if (!reservation)
        return;
    memfit_budget *b = reservation->budget;
    pthread_mutex_lock(&b->lock);
    if (reservation->prev)
        reservation->prev->next = reservation->next;
    else
        b->head = reservation->next;
    if (reservation->next)
        reservation->next->prev = reservation->prev;
    b->n_reservations--;
    b->reserved -= reservation->total;
    for (int c = 0; c < MEMFIT_BUDGET_CATEGORY_COUNT; c++)
        b->by_category[c] -= reservation->cost.bytes[c];
    wake_locked(b);
    pthread_mutex_unlock(&b->lock);
    memfit_free(reservation);
}

uint64_t memfit_reservation_bytes(const memfit_reservation *reservation)
{
    return reservation ? reservation->total : 0;
}

/* ---- Queries ------------------------------------------------------------------ */

void memfit_budget_get_usage(memfit_budget *budget, struct memfit_budget_usage *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&budget->lock);
    out->size_bytes = budget->size;
    out->reserved_bytes = budget->reserved;
    out->free_bytes = budget->reserved < budget->size ? budget->size - budget->reserved : 0;
    out->peak_reserved_bytes = budget->peak;
    memcpy(out->by_category, budget->by_category, sizeof(out->by_category));
    out->n_reservations = budget->n_reservations;
    out->n_waiting = budget->n_waiting;
    out->n_refused = budget->n_refused;
    pthread_mutex_unlock(&budget->lock);
}

static int compare_owners(const void *a, const void *b)
{
    const struct memfit_budget_owner *x = a, *y = b;
    if (x->total_bytes != y->total_bytes)
        return x->total_bytes > y->total_bytes ? -1 : 1;
    return strcmp(x->owner, y->owner);
}

enum memfit_status memfit_budget_get_owners(memfit_budget *budget, struct memfit_budget_owner **out,
                                            size_t *n_out)
{
    if (!budget || !out || !n_out)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_budget_get_owners: NULL argument");
    pthread_mutex_lock(&budget->lock);
    size_t n = 0, text = 0;
    for (const struct memfit_reservation *r = budget->head; r; r = r->next)
        if (first_of_owner(budget, r)) {
            n++;
            text += strlen(r->owner) + 1;
        }
    if (n == 0) {
        pthread_mutex_unlock(&budget->lock);
        *out = NULL;
        *n_out = 0;
        return MEMFIT_OK;
    }
    struct memfit_budget_owner *owners =
        memfit_malloc_in(MEMFIT_ALLOC_MANAGER, n * sizeof(*owners) + text);
    if (!owners) {
        pthread_mutex_unlock(&budget->lock);
        return MEMFIT_E_NOMEM;
    }
    char *strings = (char *)(owners + n);
    size_t i = 0;
    for (const struct memfit_reservation *r = budget->head; r; r = r->next) {
        if (!first_of_owner(budget, r))
            continue;
        struct memfit_budget_owner *o = &owners[i++];
        struct memfit_budget_cost c;
        owner_cost(budget, r->owner, &c);
        size_t len = strlen(r->owner) + 1;
        memcpy(strings, r->owner, len);
        o->owner = strings;
        strings += len;
        memcpy(o->bytes, c.bytes, sizeof(o->bytes));
        o->total_bytes = memfit_budget_cost_total(&c);
    }
    pthread_mutex_unlock(&budget->lock);
    qsort(owners, n, sizeof(*owners), compare_owners);
    *out = owners;
    *n_out = n;
    return MEMFIT_OK;
}

/* ---- Size resolution -------------------------------------------------------------- */

/* MEMFIT_MAX_MEMORY_MB: a plain number is MiB (what the older
 * MAX_MEMORY_USAGE_MB deployments mean); a number with a unit is a size. */
static enum memfit_status parse_max_memory_mb(const char *text, uint64_t *out)
{
    size_t n = strlen(text);
    bool plain = n > 0;
    for (size_t i = 0; i < n; i++)
        if (!((text[i] >= '0' && text[i] <= '9') || text[i] == '.'))
            plain = false;
    if (plain) {
        char with_unit[64];
        if (n + 4 > sizeof(with_unit))
            return MEMFIT_E_RANGE;
        snprintf(with_unit, sizeof(with_unit), "%sMiB", text);
        return memfit_parse_size(with_unit, out);
    }
    return memfit_parse_size(text, out);
}

void memfit_budget_settings_default(struct memfit_budget_settings *settings)
{
    memset(settings, 0, sizeof(*settings));
    settings->flag_name = "--budget";
}

/* A share of the effective limit: "50% of cgroup limit 2.00 GiB". */
static enum memfit_status share_of_limit(const struct memfit_budget_settings *in, double percent,
                                         const char *what, uint64_t *out, char *source,
                                         size_t source_size)
{
    struct memfit_limit limit;
    enum memfit_status st = memfit_limit_read(in->root, in->pid, &limit);
    if (st != MEMFIT_OK)
        return st;
    if (limit.kind == MEMFIT_LIMIT_KIND_NONE || limit.bytes == 0)
        return memfit_fail(MEMFIT_E_RANGE,
                           "no memory budget: %s%g%% of the memory limit, but neither a cgroup "
                           "limit nor physical memory could be read; give --budget or set "
                           "MEMFIT_MAX_MEMORY_MB",
                           what, percent);
    uint64_t bytes = (uint64_t)((double)limit.bytes * (percent / 100.0));
    *out = bytes ? bytes : 1;
    snprintf(source, source_size, "%s%g%% of %s", what, percent, limit.text);
    return MEMFIT_OK;
}

enum memfit_status memfit_budget_resolve(const struct memfit_budget_settings *in,
                                         uint64_t *out_bytes, char *source, size_t source_size)
{
    if (!in || !out_bytes || (!source && source_size))
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_budget_resolve: NULL argument");
    char scratch[1];
    if (!source_size) {
        source = scratch;
        source_size = sizeof(scratch);
    }
    char s[32];
    if (in->flag_bytes) {
        snprintf(source, source_size, "%s %s", in->flag_name ? in->flag_name : "--budget",
                 in->flag_text ? in->flag_text : memfit_format_size(in->flag_bytes, s, sizeof(s)));
        *out_bytes = in->flag_bytes;
        return MEMFIT_OK;
    }
    const char *name = NULL;
    enum memfit_config_origin origin = MEMFIT_CONFIG_UNSET;
    const char *configured = memfit_config_find("MEMFIT_MAX_MEMORY_MB", &name, &origin);
    if (configured && configured[0]) {
        uint64_t bytes = 0;
        if (parse_max_memory_mb(configured, &bytes) != MEMFIT_OK || bytes == 0)
            return memfit_fail(MEMFIT_E_RANGE, "%s=%s (%s): expected a size in MiB or with a unit",
                               name, configured, memfit_config_origin_name(origin));
        snprintf(source, source_size, "%s=%s (%s)", name, configured,
                 memfit_config_origin_name(origin));
        *out_bytes = bytes;
        return MEMFIT_OK;
    }
    const char *manifest = in->manifest_path ? in->manifest_path : "manifest";
    if (in->manifest_bytes) {
        snprintf(source, source_size, "%s: budget %s", manifest,
                 memfit_format_size(in->manifest_bytes, s, sizeof(s)));
        *out_bytes = in->manifest_bytes;
        return MEMFIT_OK;
    }
    if (in->manifest_percent != 0.0) {
        char what[256];
        snprintf(what, sizeof(what), "%s: budget ", manifest);
        if (!(in->manifest_percent > 0.0 && in->manifest_percent <= 100.0))
            return memfit_fail(MEMFIT_E_RANGE, "%s%g%%: expected a percent above 0 and at most 100",
                               what, in->manifest_percent);
        return share_of_limit(in, in->manifest_percent, what, out_bytes, source, source_size);
    }
    return share_of_limit(in, MEMFIT_BUDGET_DEFAULT_PERCENT, "", out_bytes, source, source_size);
}

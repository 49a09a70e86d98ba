/*
 * The allocator wrapper: every allocation in memfit goes through here so that
 * bytes are counted by category and tests can make the n-th allocation fail.
 *
 * Each block carries a 16-byte header (size and category) in front of the
 * pointer handed out, which keeps malloc's 16-byte alignment.
 */
#include <malloc.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/alloc.h"

#define HEADER_MAGIC 0x6d66616cu /* "mfal" */

struct block_header {
    uint64_t size;
    uint32_t category;
    uint32_t magic;
};
_Static_assert(sizeof(struct block_header) == 16, "header keeps 16-byte alignment");

static _Atomic uint64_t live_bytes[MEMFIT_ALLOC_CATEGORY_COUNT];
static _Atomic uint64_t live_count[MEMFIT_ALLOC_CATEGORY_COUNT];
static _Atomic uint64_t total_bytes;
static _Atomic uint64_t peak_bytes;

/*
 * Fault injection. `fault_mode` is the only thing an allocation reads while
 * injection is off (one relaxed load); the rest is read only when it is on.
 * FAULT_AFTER is mf_alloc_fail_after (tests); the periodic and random modes
 * are the daemon's schedule (memfit_alloc_faults_arm, MEMFIT_FAULT_ALLOC).
 */
enum fault_mode { FAULT_OFF = 0, FAULT_AFTER = 1, FAULT_EVERY = 2, FAULT_RANDOM = 3 };

static _Atomic unsigned fault_mode;
static _Atomic unsigned fault_paused; /* the mode memfit_alloc_faults_toggle turned off */
static _Atomic uint64_t fail_countdown;
static _Atomic bool fail_sticky;
static _Atomic bool fail_tripped;
static _Atomic uint64_t injected_failures;
static _Atomic uint64_t fault_period;    /* FAULT_EVERY: every n-th fails */
static _Atomic uint64_t fault_threshold; /* FAULT_RANDOM: fails when the hash is below */
static _Atomic uint64_t fault_seed;
static _Atomic uint64_t fault_count; /* allocations seen since arming */

void mf_alloc_fail_after(uint64_t n, bool sticky)
{
    atomic_store(&fault_mode, FAULT_OFF);
    atomic_store(&fault_paused, FAULT_OFF);
    atomic_store(&fail_sticky, sticky);
    atomic_store(&fail_tripped, false);
    atomic_store(&injected_failures, 0);
    atomic_store(&fail_countdown, n);
    if (n)
        atomic_store(&fault_mode, FAULT_AFTER);
}

uint64_t mf_alloc_injected_failures(void)
{
    return atomic_load(&injected_failures);
}

/* splitmix64's finalizer: allocation i of seed s fails or not, whatever thread makes it. */
static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x *= UINT64_C(0x94d049bb133111eb);
    return x ^ (x >> 31);
}

static bool inject_after(void)
{
    if (atomic_load(&fail_tripped))
        return true;
    uint64_t n = atomic_load(&fail_countdown);
    while (n != 0) {
        if (atomic_compare_exchange_weak(&fail_countdown, &n, n - 1)) {
            if (n != 1)
                return false;
            if (atomic_load(&fail_sticky))
                atomic_store(&fail_tripped, true);
            return true;
        }
    }
    return false;
}

/* True when this allocation must fail by injection. */
static bool inject_failure(void)
{
    unsigned mode = atomic_load_explicit(&fault_mode, memory_order_relaxed);
    if (mode == FAULT_OFF)
        return false;
    bool fail;
    if (mode == FAULT_AFTER) {
        fail = inject_after();
    } else {
        uint64_t i = atomic_fetch_add(&fault_count, 1) + 1;
        if (mode == FAULT_EVERY)
            fail = i % atomic_load(&fault_period) == 0;
        else
            fail = mix64(atomic_load(&fault_seed) + i * UINT64_C(0x9e3779b97f4a7c15)) <
                   atomic_load(&fault_threshold);
    }
    if (fail)
        atomic_fetch_add(&injected_failures, 1);
    return fail;
}

/* "every=N", "after=N", "random=P[,seed=S]": see core.h. */
enum memfit_status memfit_alloc_faults_parse(const char *spec, struct memfit_alloc_faults *out)
{
    struct memfit_alloc_faults f = {0};
    bool have_seed = false;
    unsigned n_modes = 0;
    const char *p = spec ? spec : "";
    if (!*p)
        return memfit_fail(MEMFIT_E_RANGE, "empty fault schedule (expected every=N, after=N or "
                                           "random=PERCENT[,seed=S])");
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char item[64], *value;
        if (len == 0 || len >= sizeof(item))
            return memfit_fail(MEMFIT_E_RANGE, "fault schedule '%s': bad item '%.*s'", spec,
                               (int)(len < 64 ? len : 64), p);
        memcpy(item, p, len);
        item[len] = '\0';
        p += len + (end ? 1 : 0);
        if (end && !*p)
            return memfit_fail(MEMFIT_E_RANGE, "fault schedule '%s': trailing ','", spec);
        if (!(value = strchr(item, '=')))
            return memfit_fail(MEMFIT_E_RANGE, "fault schedule '%s': '%s' is not KEY=VALUE", spec,
                               item);
        *value++ = '\0';
        long long n = 0;
        double percent = 0;
        enum memfit_status st = MEMFIT_OK;
        if (strcmp(item, "every") == 0 || strcmp(item, "after") == 0 || strcmp(item, "seed") == 0) {
            st = memfit_parse_int(value, strcmp(item, "seed") == 0 ? 0 : 1, INT64_MAX, &n);
        } else if (strcmp(item, "random") == 0) {
            st = memfit_parse_percent(value, &percent);
            if (st == MEMFIT_OK && percent <= 0)
                st = MEMFIT_E_RANGE;
        } else {
            return memfit_fail(MEMFIT_E_RANGE,
                               "fault schedule '%s': unknown key '%s' (every, after, random, seed)",
                               spec, item);
        }
        if (st != MEMFIT_OK)
            return memfit_fail(MEMFIT_E_RANGE, "fault schedule '%s': %s=%s is not %s", spec, item,
                               value,
                               strcmp(item, "random") == 0 ? "a percentage in (0, 100]"
                               : strcmp(item, "seed") == 0 ? "a whole number >= 0"
                                                           : "a whole number >= 1");
        if (strcmp(item, "seed") == 0) {
            if (have_seed)
                return memfit_fail(MEMFIT_E_RANGE, "fault schedule '%s': seed given twice", spec);
            have_seed = true;
            f.seed = (uint64_t)n;
            continue;
        }
        if (n_modes++)
            return memfit_fail(MEMFIT_E_RANGE,
                               "fault schedule '%s': give one of every=, after=, random=", spec);
        if (strcmp(item, "every") == 0)
            f.every = (uint64_t)n;
        else if (strcmp(item, "after") == 0)
            f.after = (uint64_t)n;
        else
            f.random_percent = percent;
    }
    if (!n_modes)
        return memfit_fail(MEMFIT_E_RANGE,
                           "fault schedule '%s': give one of every=N, after=N, random=PERCENT",
                           spec);
    if (have_seed && f.random_percent == 0)
        return memfit_fail(MEMFIT_E_RANGE, "fault schedule '%s': seed= goes with random=", spec);
    *out = f;
    return MEMFIT_OK;
}

void memfit_alloc_faults_arm(const struct memfit_alloc_faults *f)
{
    if (!f || (!f->every && !f->after && f->random_percent <= 0)) {
        mf_alloc_fail_after(0, false);
        return;
    }
    if (f->after) {
        mf_alloc_fail_after(f->after, false);
        return;
    }
    mf_alloc_fail_after(0, false);
    atomic_store(&fault_count, 0);
    atomic_store(&fault_period, f->every);
    atomic_store(&fault_seed, f->seed);
    double t = f->random_percent / 100.0 * 18446744073709551616.0; /* 2^64 */
    atomic_store(&fault_threshold, t >= 18446744073709551615.0 ? UINT64_MAX : (uint64_t)t);
    atomic_store(&fault_mode, f->every ? FAULT_EVERY : FAULT_RANDOM);
}

void memfit_alloc_faults_toggle(void)
{
    unsigned mode = atomic_exchange(&fault_mode, FAULT_OFF);
    if (mode != FAULT_OFF)
        atomic_store(&fault_paused, mode);
    else
        atomic_store(&fault_mode, atomic_exchange(&fault_paused, FAULT_OFF));
}

uint64_t memfit_alloc_faults_injected(void)
{
    return atomic_load(&injected_failures);
}

static void count_alloc(uint32_t category, uint64_t size)
{
    atomic_fetch_add(&live_bytes[category], size);
    atomic_fetch_add(&live_count[category], 1);
    uint64_t now = atomic_fetch_add(&total_bytes, size) + size;
    uint64_t peak = atomic_load(&peak_bytes);
    while (now > peak && !atomic_compare_exchange_weak(&peak_bytes, &peak, now)) {
    }
}

static void count_free(uint32_t category, uint64_t size)
{
    atomic_fetch_sub(&live_bytes[category], size);
    atomic_fetch_sub(&live_count[category], 1);
    atomic_fetch_sub(&total_bytes, size);
}

static void *out_of_memory(size_t size)
{
    memfit_fail(MEMFIT_E_NOMEM, "out of memory allocating %zu bytes", size);
    return NULL;
}

static void *alloc_block(enum memfit_alloc_category category, size_t size, bool zero)
{
    if ((unsigned)category >= MEMFIT_ALLOC_CATEGORY_COUNT)
        category = MEMFIT_ALLOC_GENERAL;
    if (size > SIZE_MAX - sizeof(struct block_header) || inject_failure())
        return out_of_memory(size);
    size_t total = size + sizeof(struct block_header);
    struct block_header *h = zero ? calloc(1, total) : malloc(total);
    if (!h)
        return out_of_memory(size);
    h->size = size;
    h->category = (uint32_t)category;
    h->magic = HEADER_MAGIC;
    count_alloc(h->category, size);
    return h + 1;
}

void *memfit_malloc_in(enum memfit_alloc_category category, size_t size)
{
    return alloc_block(category, size, false);
}

void *memfit_calloc_in(enum memfit_alloc_category category, size_t count, size_t size)
{
    size_t bytes;
    if (mf_mul_overflow(count, size, &bytes))
        return out_of_memory(SIZE_MAX);
    return alloc_block(category, bytes, true);
}

void *memfit_malloc(size_t size)
{
    return alloc_block(MEMFIT_ALLOC_GENERAL, size, false);
}

void *memfit_calloc(size_t count, size_t size)
{
    return memfit_calloc_in(MEMFIT_ALLOC_GENERAL, count, size);
}

void *memfit_realloc(void *ptr, size_t size)
{
    if (!ptr)
        return memfit_malloc(size);
    struct block_header *h = (struct block_header *)ptr - 1;
    if (size > SIZE_MAX - sizeof(struct block_header) || inject_failure())
        return out_of_memory(size);
    uint64_t old_size = h->size;
    uint32_t category = h->category;
    struct block_header *n = realloc(h, size + sizeof(struct block_header));
    if (!n)
        return out_of_memory(size);
    n->size = size;
    count_free(category, old_size);
    count_alloc(category, size);
    return n + 1;
}

void memfit_free(void *ptr)
{
    if (!ptr)
        return;
    struct block_header *h = (struct block_header *)ptr - 1;
    count_free(h->category, h->size);
    h->magic = 0;
    free(h);
}

char *memfit_strndup(const char *text, size_t max_len)
{
    size_t len = strnlen(text, max_len);
    char *copy = memfit_malloc(len + 1);
    if (!copy)
        return NULL;
    memcpy(copy, text, len);
    copy[len] = '\0';
    return copy;
}

char *memfit_strdup(const char *text)
{
    return memfit_strndup(text, SIZE_MAX);
}

char *memfit_asprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (len < 0) {
        memfit_fail(MEMFIT_E_FORMAT, "invalid format string");
        return NULL;
    }
    char *out = memfit_malloc((size_t)len + 1);
    if (!out)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(out, (size_t)len + 1, fmt, ap);
    va_end(ap);
    return out;
}

void memfit_alloc_get_stats(struct memfit_alloc_stats *out)
{
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < MEMFIT_ALLOC_CATEGORY_COUNT; i++) {
        out->live_bytes[i] = atomic_load(&live_bytes[i]);
        out->live_count[i] = atomic_load(&live_count[i]);
        out->total_live_count += out->live_count[i];
    }
    out->total_live_bytes = atomic_load(&total_bytes);
    out->peak_bytes = atomic_load(&peak_bytes);
}

uint64_t mf_alloc_live_count(void)
{
    uint64_t n = 0;
    for (int i = 0; i < MEMFIT_ALLOC_CATEGORY_COUNT; i++)
        n += atomic_load(&live_count[i]);
    return n;
}

void memfit_heap_trim(void)
{
    malloc_trim(0);
}

void *mf_map_anon(size_t bytes)
{
    if (bytes == 0 || inject_failure())
        return out_of_memory(bytes);
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return out_of_memory(bytes);
    count_alloc(MEMFIT_ALLOC_GENERAL, bytes);
    return p;
}

void mf_unmap_anon(void *ptr, size_t bytes)
{
    if (!ptr)
        return;
    munmap(ptr, bytes);
    count_free(MEMFIT_ALLOC_GENERAL, bytes);
}

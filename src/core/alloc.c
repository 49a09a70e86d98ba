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

static _Atomic uint64_t fail_countdown; /* 0 = disarmed */
static _Atomic bool fail_sticky;
static _Atomic bool fail_tripped;
static _Atomic uint64_t injected_failures;

void mf_alloc_fail_after(uint64_t n, bool sticky)
{
    atomic_store(&fail_sticky, sticky);
    atomic_store(&fail_tripped, false);
    atomic_store(&injected_failures, 0);
    atomic_store(&fail_countdown, n);
}

uint64_t mf_alloc_injected_failures(void)
{
    return atomic_load(&injected_failures);
}

/* True when this allocation must fail by injection. */
static bool inject_failure(void)
{
    if (atomic_load(&fail_tripped)) {
        atomic_fetch_add(&injected_failures, 1);
        return true;
    }
    uint64_t n = atomic_load(&fail_countdown);
    while (n != 0) {
        if (atomic_compare_exchange_weak(&fail_countdown, &n, n - 1)) {
            if (n == 1) {
                if (atomic_load(&fail_sticky))
                    atomic_store(&fail_tripped, true);
                atomic_fetch_add(&injected_failures, 1);
                return true;
            }
            return false;
        }
    }
    return false;
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

/*
 * Internal side of the allocator wrapper: fault injection for tests and
 * anonymous mappings for large buffers.
 *
 * Fault injection (SQLite's test_malloc idea): after
 * mf_alloc_fail_after(n), the n-th following allocation (1-based) fails,
 * and with `sticky` every one after it too. Tests walk n = 1, 2, ... over an
 * operation until it succeeds, requiring MEMFIT_E_NOMEM and no leak at each
 * step (mf_alloc_live_count() back where it started). The daemon's schedules
 * (periodic, seeded random) are public: memfit_alloc_faults_parse in core.h.
 */
#ifndef MF_CORE_ALLOC_H
#define MF_CORE_ALLOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memfit/core.h"

/* Arms the failure (n >= 1), or disarms it (n == 0). */
void mf_alloc_fail_after(uint64_t n, bool sticky);

/* How many allocations failed by injection since the last arming. */
uint64_t mf_alloc_injected_failures(void);

/* Live allocations over all categories (for leak checks in tests). */
uint64_t mf_alloc_live_count(void);

/*
 * Anonymous private mapping of `bytes` (rounded up to pages), zero-filled,
 * counted by the wrapper; returns NULL with E_NOMEM on failure. Unmapping
 * gives the pages back to the system at once. Subject to fault injection.
 */
void *mf_map_anon(size_t bytes);
void mf_unmap_anon(void *ptr, size_t bytes);

/* size_t multiplication that reports overflow (true = overflowed). */
static inline bool mf_mul_overflow(size_t a, size_t b, size_t *out)
{
    return __builtin_mul_overflow(a, b, out);
}

static inline bool mf_add_overflow(size_t a, size_t b, size_t *out)
{
    return __builtin_add_overflow(a, b, out);
}

#endif

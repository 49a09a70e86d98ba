/*
 * Software prefetch for the kernels that stream weight rows from memory
 * (decoding's matrix-vector products): each step of a row asks for the bytes
 * MF_PREFETCH_BYTES further on. Out-of-order execution alone keeps about
 * 2 KB of a Q4_0 row in flight (a step is some 60 instructions), too little
 * for two threads sharing the memory bus, and the hardware prefetcher does
 * not make up for it. 8 KB ahead decoded the 1.8B Q4_0 model 7 % faster on
 * 2 threads (dot_avx512.c); 6-8 KB did best, 0.5-2 KB was slower than none.
 * Past the last row the prefetches touch the next matrix or nothing: a
 * prefetch never faults.
 */
#ifndef MEMFIT_TENSOR_X86_PREFETCH_H
#define MEMFIT_TENSOR_X86_PREFETCH_H

#include <immintrin.h>
#include <stddef.h>

#define MF_PREFETCH_BYTES 8192

/* Prefetches the lines of [p + MF_PREFETCH_BYTES, p + MF_PREFETCH_BYTES + bytes). */
static inline __attribute__((always_inline)) void mf_prefetch_ahead(const void *p, size_t bytes)
{
    const char *q = (const char *)p + MF_PREFETCH_BYTES;
    for (size_t o = 0; o < bytes; o += 64)
        _mm_prefetch(q + o, _MM_HINT_T0);
}

#endif

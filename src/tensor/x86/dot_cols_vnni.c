/*
 * AVX-VNNI multi-column Q4_0/Q8_0 dots (the template in x86/dot_cols.h):
 * the 32-byte integer dot is one vpdpbusd, the same int32 lanes as the AVX2
 * maddubs + madd, so the same floats. Compiled with -mavxvnni; traits.c
 * hands it out only when mf_tensor_vnni_active().
 */
#define COLS_IDOT(ax, sy) _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), ax, sy)
#define COLS_NAME(x)      mf_avxvnni_##x
#include "tensor/x86/dot_cols.h"

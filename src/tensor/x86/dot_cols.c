/*
 * AVX2 multi-column Q4_0/Q8_0 dots (the template in x86/dot_cols.h): the
 * 32-byte integer dot as maddubs (|w| x sign-moved activation) then madd
 * with ones. Compiled with -mavx2 -mfma -mf16c; traits.c hands it out after
 * run-time detection.
 */
#define COLS_IDOT(ax, sy) _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), _mm256_set1_epi16(1))
#define COLS_NAME(x)      mf_avx2_##x
#include "tensor/x86/dot_cols.h"

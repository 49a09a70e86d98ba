/*
 * The K-quant integer tile's kernel with AVX-VNNI (built with -mavxvnni,
 * called only after mf_tensor_vnni_active): gemm_k_ymm.h with each
 * sub-block summed by vpdpbusd and then multiplied by the rows' scales in
 * int32. The same integer sums as the AVX2 kernel, so the same floats.
 */
#include <immintrin.h>
#include <string.h>

#include "tensor/blocks.h"
#include "tensor/kernels.h"
#include "tensor/x86/tile.h"

#define K_VNNI   1
#define K_KERNEL mf_avxvnni_k_kernel
#include "tensor/x86/gemm_k_ymm.h"

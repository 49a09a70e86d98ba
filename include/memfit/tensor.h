/*
 * memfit tensor: element types and their block layouts.
 *
 * Type ids are ggml's (`enum ggml_type`): they are written into GGUF files
 * and never change. NF4 (bitsandbytes' 4-bit NormalFloat) has no GGUF id;
 * it only lives in safetensors files and gets an id outside ggml's range.
 */
#ifndef MEMFIT_TENSOR_H
#define MEMFIT_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memfit/core.h"

#ifdef __cplusplus
extern "C" {
#endif

enum memfit_type {
    MEMFIT_TYPE_F32 = 0,
    MEMFIT_TYPE_F16 = 1,
    MEMFIT_TYPE_Q4_0 = 2,
    MEMFIT_TYPE_Q4_1 = 3,
    MEMFIT_TYPE_Q5_0 = 6,
    MEMFIT_TYPE_Q5_1 = 7,
    MEMFIT_TYPE_Q8_0 = 8,
    MEMFIT_TYPE_Q8_1 = 9,
    MEMFIT_TYPE_Q2_K = 10,
    MEMFIT_TYPE_Q3_K = 11,
    MEMFIT_TYPE_Q4_K = 12,
    MEMFIT_TYPE_Q5_K = 13,
    MEMFIT_TYPE_Q6_K = 14,
    MEMFIT_TYPE_Q8_K = 15,
    MEMFIT_TYPE_IQ4_NL = 20,
    MEMFIT_TYPE_IQ4_XS = 23,
    MEMFIT_TYPE_I8 = 24,
    MEMFIT_TYPE_I16 = 25,
    MEMFIT_TYPE_I32 = 26,
    MEMFIT_TYPE_I64 = 27,
    MEMFIT_TYPE_F64 = 28,
    MEMFIT_TYPE_BF16 = 30,
    MEMFIT_TYPE_MXFP4 = 39,
    /* Not ggml types: never written to GGUF. */
    MEMFIT_TYPE_U8 = 200,
    MEMFIT_TYPE_BOOL = 201,
    MEMFIT_TYPE_NF4 = 202,
};

/* Static facts about a type: a block of `block_size` elements takes
 * `type_size` bytes. */
struct memfit_type_info {
    enum memfit_type type;
    const char *name; /* lower case, as in file names: "q4_k", "f16" */
    uint32_t block_size;
    uint32_t type_size;
    bool is_quantized;
};

/* The facts of `type`, or NULL for an id memfit does not know. */
MEMFIT_API const struct memfit_type_info *memfit_type_get_info(enum memfit_type type);

/* The type named `name` (case-insensitive, "Q4_K" or "q4_k"); E_NOT_FOUND otherwise. */
MEMFIT_API enum memfit_status memfit_type_from_name(const char *name, enum memfit_type *out);

/*
 * Bytes taken by `n_elements` of `type`. E_FORMAT when n is not a multiple
 * of the block size, E_RANGE on overflow, E_UNSUPPORTED for an unknown type.
 */
MEMFIT_API enum memfit_status memfit_type_bytes(enum memfit_type type, uint64_t n_elements,
                                                uint64_t *out_bytes);

/* ---- Scalar conversions ------------------------------------------------ */

/* IEEE binary16 <-> binary32: round to nearest even, overflow to infinity,
 * NaN payloads kept (quieted). Bit-identical to the F16C instructions. */
MEMFIT_API float memfit_fp16_to_fp32(uint16_t h);
MEMFIT_API uint16_t memfit_fp32_to_fp16(float f);

/* bfloat16 <-> binary32: the top 16 bits, rounded to nearest even; a NaN
 * stays a (quiet) NaN. */
MEMFIT_API float memfit_bf16_to_fp32(uint16_t h);
MEMFIT_API uint16_t memfit_fp32_to_bf16(float f);

/* ---- Rows --------------------------------------------------------------- */
/*
 * A row is `n` elements of one type laid out as its blocks (ggml's layouts,
 * docs/quantization.md). Every row function checks that n is a multiple of
 * the type's block size (E_FORMAT otherwise, naming n and the block) and
 * returns E_UNSUPPORTED for a type it has no kernel for. The caller owns
 * all buffers; `dst` must hold the row's bytes (memfit_type_bytes).
 * Kernels never allocate and are safe to call from many threads at once.
 *
 * Readable types: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K,
 * Q4_K, Q5_K, Q6_K, Q8_K. Quantizers: F32, F16, BF16, Q8_0, Q4_0, Q4_K,
 * Q6_K, Q8_K (ggml's reference quantizers). NF4 has its own functions below.
 */

/* Decodes n elements of `type` at src into n floats at dst. */
MEMFIT_API enum memfit_status memfit_type_dequantize_row(enum memfit_type type, const void *src,
                                                         float *dst, uint64_t n);

/* Encodes n floats into a row of `type` at dst. */
MEMFIT_API enum memfit_status memfit_type_quantize_row(enum memfit_type type, const float *src,
                                                       void *dst, uint64_t n);

/*
 * The type the activation row of a dot product with `type` weights must
 * have: Q8_0 for Q4_0/Q4_1/Q5_0/Q5_1/Q8_0, Q8_K for the K-quants, F32 for
 * F32/F16/BF16. Make it with memfit_type_quantize_row(*out, ...).
 * E_UNSUPPORTED when `type` has no dot product.
 */
MEMFIT_API enum memfit_status memfit_type_dot_type(enum memfit_type type, enum memfit_type *out);

/*
 * *out = the dot product of a weight row (n elements of `type`) with an
 * activation row (n elements of memfit_type_dot_type(type)). Q8 activation
 * rows must come from memfit's quantizer (their quants are never -128).
 */
MEMFIT_API enum memfit_status memfit_vec_dot(enum memfit_type type, uint64_t n, const void *w_row,
                                             const void *act_row, float *out);

/*
 * Bytes of workspace memfit_matmul needs for `n_cols` activation vectors
 * of length n against weights of `type` (0 for F32 activations).
 */
MEMFIT_API enum memfit_status memfit_matmul_work_bytes(enum memfit_type type, uint64_t n,
                                                       uint64_t n_cols, size_t *out_bytes);

/*
 * y = W x for n_cols activation vectors: W is n_rows rows of n elements of
 * `type` (row r at w + r * row bytes), x is n_cols vectors of n floats
 * (x[c*n + i]), y receives n_cols vectors of n_rows floats (y[c*n_rows + r]).
 * The activations are quantized once to the dot type, into `work`
 * (work_bytes >= memfit_matmul_work_bytes()), or, with work == NULL, into a
 * buffer allocated and freed here (E_NOMEM if that fails). Single-threaded.
 */
MEMFIT_API enum memfit_status memfit_matmul(enum memfit_type type, const void *w, uint64_t n_rows,
                                            uint64_t n, const float *x, uint64_t n_cols, float *y,
                                            void *work, size_t work_bytes);

/*
 * One thread's share of a matrix product, for callers that split rows
 * across threads (each thread calls it on a disjoint [row_begin, row_end)):
 *   y[c * ldy + r] = (weight row r) . (activation row c)
 * for row_begin <= r < row_end and 0 <= c < n_cols.
 * Weight row r is n elements of `type` (any readable type) at
 * w + r * w_stride bytes (w_stride 0: packed rows), so a row range of a
 * fused tensor or a strided view is used in place. Activation row c is n
 * floats at act + c * act_stride bytes, whatever the weight type.
 * Cache-blocked and register-tiled (AVX2+FMA 6x16 micro-kernel when
 * available): weights are unpacked (converted or dequantized) a few rows x
 * 256 of k at a time into a stack panel and multiplied in F32 against each
 * block of 512 activations, so every type costs about what F32 costs in
 * arithmetic while reading 2-8x fewer bytes when quantized (for one or two
 * activation rows, memfit_matmul's integer dots are cheaper). Q8_0 weights
 * with at least 8 activation rows on AVX2 are multiplied in integers
 * instead: the activations are quantized to Q8_0 (by each call, a tile at
 * a time), which is about 1.4x faster than F32 and adds an error of the
 * order of Q8_0's own. Never allocates; thread-safe.
 * E_FORMAT when n is not a multiple of the block, E_UNSUPPORTED for a type
 * without a row decoder, E_RANGE for row_begin > row_end.
 */
MEMFIT_API enum memfit_status memfit_matmul_rows(enum memfit_type type, const void *w,
                                                 size_t w_stride, uint64_t n, uint64_t row_begin,
                                                 uint64_t row_end, const float *act,
                                                 size_t act_stride, uint64_t n_cols, float *y,
                                                 size_t ldy);

/* ---- Elementwise ---------------------------------------------------------- */

/* x = GELU(x) = x/2 (1 + erf(x/sqrt 2)) in place (erf to 1.5e-7; AVX2 when available). */
MEMFIT_API void memfit_gelu(float *x, size_t n);

/* x = e^x in place (about 1 ulp; e^-87.3 (1.2e-38) below -87.3, saturates above 88.7). */
MEMFIT_API void memfit_exp(float *x, size_t n);

/* ---- Transformer blocks (src/tensor/nn.c) -------------------------------- */
/*
 * The building blocks the vision models share (DINOv2, SAM): each a tested
 * kernel with a scalar reference and an AVX2 path chosen at run time (as
 * memfit_gelu). None allocates; all are safe to call from many threads on
 * disjoint outputs. Rows are `ld*` floats apart.
 */

/*
 * LayerNorm of n_rows rows of d floats (nn.LayerNorm / SAM's LayerNorm2d
 * per pixel): y = (x - mean) / sqrt(var + eps) * w + b, biased variance,
 * w and b of d floats (NULL: 1 and 0). y may equal x (in place).
 */
MEMFIT_API void memfit_layer_norm(const float *x, size_t ldx, float *y, size_t ldy, size_t n_rows,
                                  size_t d, const float *w, const float *b, float eps);

/*
 * One attention head over n_q queries and n_k keys, tiled with an online
 * softmax (flash attention): no n_q x n_k matrix exists, memory is the
 * tiles of `work`.
 *   out[i] = sum_j softmax_j(scale * q_i . k_j + bias(i, j)) v_j
 * q, k, v, out: rows of head_dim floats (ld* floats apart). The optional
 * bias is SAM's decomposed relative position: with keys on a k_h x k_w
 * grid (n_k = k_h * k_w, key j at row j / k_w, column j % k_w),
 *   bias(i, j) = rel_h[i * rel_ld + j / k_w] + rel_w[i * rel_ld + j % k_w]
 * -- rel_h NULL means no bias. A softmax over all -inf scores gives 0 rows.
 */
struct memfit_attention {
    const float *q, *k, *v;
    float *out;
    size_t ldq, ldk, ldv, ldo;
    size_t n_q, n_k, head_dim;
    float scale;
    const float *rel_h, *rel_w; /* [n_q][rel_ld] each, or NULL */
    size_t rel_ld, k_w;
};

/* Bytes of `work` memfit_attention needs for n_k keys of head_dim (the
 * score and output tiles and V transposed): a multiple of 64, SIZE_MAX when
 * that overflows. */
MEMFIT_API size_t memfit_attention_work_bytes(size_t n_k, size_t head_dim);

/* E_MISUSE for a NULL pointer, n_k or head_dim 0, k_w not dividing n_k, or
 * a work area smaller than memfit_attention_work_bytes (or not 64-byte
 * aligned). */
MEMFIT_API enum memfit_status memfit_attention(const struct memfit_attention *a, void *work,
                                               size_t work_bytes);

/*
 * im2col for a 2-D convolution of a channels-last image x (h x w pixels of
 * c floats, pixel (y, x) starting at float (y * w + x) * c) with a kh x kw
 * kernel, stride s and zero padding p: writes one row per output pixel
 * (oh = (h + 2p - kh) / s + 1 rows of ow, pixel (oy, ox) is row oy * ow +
 * ox), each c * kh * kw floats in PyTorch's weight order (channel, ky, kx),
 * so a conv is memfit_matmul_rows of the [out, c, kh, kw] weight flattened
 * to rows against these rows. Rows [row_begin, row_end) of the oh * ow only
 * (for tiling): `out` holds just those, row r at out + (r - row_begin) *
 * c * kh * kw. Nothing is written for a zero size or stride or a kernel
 * larger than the padded image.
 */
MEMFIT_API void memfit_im2col(const float *x, size_t h, size_t w, size_t c, size_t kh, size_t kw,
                              size_t stride, size_t pad, size_t row_begin, size_t row_end,
                              float *out);

/*
 * Bilinear resize of one plane as F.interpolate(mode="bilinear",
 * align_corners=False, antialias=False) given the output size: src =
 * max(scale * (dst + 0.5) - 0.5, 0) with scale = in / out, the upper
 * neighbour clamped to in - 1. The arithmetic is current ATen's for float
 * input (UpSample.h): scale, src and the weights in float, each output the
 * two rows' blends (value * weight, summed) blended the same way. PyTorch
 * builds differ from that by float rounding (1.13.1's CPU kernel by up to
 * about 1e-5 x the input's magnitude for non-integer ratios, about an ulp
 * for 256 -> 1024).
 * Output rows [row_begin, row_end) of out_h only (for threads), written at
 * their place in `out` (row y at out + y * ld_out).
 */
MEMFIT_API void memfit_resize_bilinear(const float *in, size_t in_h, size_t in_w, size_t ld_in,
                                       float *out, size_t out_h, size_t out_w, size_t ld_out,
                                       size_t row_begin, size_t row_end);

/* "avx2+fma+f16c" when the SIMD kernels are in use, "+avxvnni" added when the
 * Q8_0 integer tile uses AVX-VNNI too, "scalar" otherwise (no such CPU, or
 * MEMFIT_NO_SIMD=1 / MEMFIT_NO_VNNI=1 in the environment at first use). */
MEMFIT_API const char *memfit_tensor_isa(void);

/* ---- NF4 (bitsandbytes) -------------------------------------------------- */
/*
 * bitsandbytes' 4-bit NormalFloat: a flat tensor of n elements is cut into
 * blocks of `blocksize` (a power of two, 32..4096; bitsandbytes' default 64;
 * the last block may be short); absmax[b] = max |x| of block b as float;
 * each element is x/absmax mapped to the nearest of 16 codes (ties to the
 * lower code). Codes are packed two per byte, the FIRST element in the
 * HIGH nibble (ceil(n/2) bytes; an odd tail's low nibble holds 7, the
 * code of 0.0, as bitsandbytes pads with a zero).
 * The absmax array has ceil(n/blocksize) entries.
 */

/* The 16 NF4 code values, ascending (-1 .. 1); what files store as quant_map. */
MEMFIT_API const float *memfit_nf4_codebook(void);

/* Quantizes x into codes (ceil(n/2) bytes) and absmax (ceil(n/blocksize) floats). */
MEMFIT_API enum memfit_status memfit_nf4_quantize(const float *x, uint64_t n, uint32_t blocksize,
                                                  uint8_t *codes, float *absmax);

/* out[i] = codebook[code i] * absmax[i / blocksize] for n elements. */
MEMFIT_API enum memfit_status memfit_nf4_dequantize(const uint8_t *codes, const float *absmax,
                                                    uint64_t n, uint32_t blocksize, float *out);

/*
 * bitsandbytes' signed 8-bit "dynamic" map (create_dynamic_map(signed=True,
 * max_exponent_bits=7, total_bits=8)), 256 ascending values in [-1, 1],
 * used to compress absmax values (double quantization).
 */
MEMFIT_API void memfit_nf4_dynamic_map(float out[256]);

/*
 * Double quantization of n_blocks absmax values as bitsandbytes'
 * compress_statistics does: offset = mean(absmax); absmax - offset is
 * quantized blockwise (blocks of 256) with the dynamic map: qabsmax gets one
 * code per value, nested_absmax one float per 256 values
 * (ceil(n_blocks/256)), *offset the mean. nested_quant_map is the dynamic map.
 */
MEMFIT_API enum memfit_status memfit_nf4_pack_absmax(const float *absmax, uint64_t n_blocks,
                                                     uint8_t *qabsmax, float *nested_absmax,
                                                     float *offset);

/*
 * The inverse: absmax[i] = nested_map[qabsmax[i]] * nested_absmax[i/256] + offset,
 * with nested_map the 256 floats stored in the file (nested_quant_map).
 */
MEMFIT_API enum memfit_status memfit_nf4_unpack_absmax(const uint8_t *qabsmax,
                                                       const float *nested_absmax,
                                                       const float *nested_map, float offset,
                                                       uint64_t n_blocks, float *absmax);

/*
 * An NF4 weight matrix used in place, as bitsandbytes stores it (the codes
 * and scales straight from a file mapping): rows x cols elements, row r's
 * codes at codes + r * cols / 2, blocks of `blocksize` over the flat tensor.
 * The absmax of block b is absmax[b] (F32) or, with double quantization,
 * nested_map[qabsmax[b]] * nested_absmax[b / nested_blocksize] + offset.
 * Float arrays may be unaligned (safetensors only aligns the data start).
 */
struct memfit_nf4_matrix {
    const uint8_t *codes; /* rows * cols / 2 bytes */
    uint64_t rows, cols;
    uint32_t blocksize;
    bool double_quant;
    const void *absmax;        /* F32 [n_blocks], or U8 codes when double_quant */
    const void *nested_absmax; /* F32 [ceil(n_blocks / nested_blocksize)] */
    const void *nested_map;    /* F32 [256] */
    uint32_t nested_blocksize;
    float offset;
};

/* The longest row the NF4 matrix functions take. */
#define MEMFIT_NF4_MAX_COLS 65536

/*
 * Checks what the row functions rely on: cols a multiple of blocksize and of
 * 32 (the activation blocks), blocks that do not straddle rows, cols at most
 * MEMFIT_NF4_MAX_COLS, a blocksize and nested_blocksize bitsandbytes
 * accepts, and no NULL pointer. E_FORMAT (or E_RANGE) naming what is wrong.
 */
MEMFIT_API enum memfit_status memfit_nf4_matrix_check(const struct memfit_nf4_matrix *m);

/* Row r's absmax values (cols / blocksize floats) into out. */
MEMFIT_API void memfit_nf4_row_absmax(const struct memfit_nf4_matrix *m, uint64_t r, float *out);

/*
 * y[r - row_begin] = (row r) . act for row_begin <= r < row_end, act a row of cols
 * elements quantized to Q8_0 (memfit_type_quantize_row). The kernel sums
 * in integers against the NF4 levels times 127 rounded to int8 (at most
 * 0.5/127 of a block's absmax from the exact level), then in float per
 * 32 elements: AVX2 where active (MEMFIT_NO_SIMD=1: the scalar reference).
 * m must have passed memfit_nf4_matrix_check. Never allocates; thread-safe.
 */
MEMFIT_API void memfit_nf4_matvec_rows(const struct memfit_nf4_matrix *m, uint64_t row_begin,
                                       uint64_t row_end, const void *act, float *y);

/*
 * y[c * ldy + r] = (row r) . (x row c) for row_begin <= r < row_end and
 * c < n_cols, x rows of cols floats, ldx floats apart. For prompts (many
 * activation rows). With AVX2 active and at least 8 activation rows, the
 * activations are quantized to Q8_0 and summed against the int8 levels as
 * memfit_nf4_matvec_rows does, in the integer tiles; otherwise each
 * weight row is dequantized with the exact levels into `scratch` (cols
 * floats) and dotted in F32 with every activation row.
 */
MEMFIT_API void memfit_nf4_matmul_rows(const struct memfit_nf4_matrix *m, uint64_t row_begin,
                                       uint64_t row_end, const float *x, size_t ldx,
                                       uint64_t n_cols, float *y, size_t ldy, float *scratch);

#ifdef __cplusplus
}
#endif

#endif

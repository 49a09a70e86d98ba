/*
 * Internal side of the tensor kernels: the type-traits table (ggml's
 * type_traits idea) and the scalar and x86 kernel functions behind it.
 *
 * One row per element type says how to turn a row into floats, how to make
 * a row from floats, how to dot a row with an activation row and which type
 * that activation row has. The scalar table is always complete; the x86
 * table (AVX2+FMA+F16C) overrides some entries and is only used after
 * run-time detection. Kernels take lengths already checked against the
 * block size: they never fail and never allocate.
 */
#ifndef MF_TENSOR_KERNELS_H
#define MF_TENSOR_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memfit/tensor.h"

/* n elements of one row; n is a multiple of the type's block size. */
typedef void (*mf_to_float_fn)(const void *src, float *dst, size_t n);
typedef void (*mf_from_float_fn)(const float *src, void *dst, size_t n);
/* w: a row of the weight type, a: a row of its vec_dot_type. */
typedef float (*mf_vec_dot_fn)(size_t n, const void *w, const void *a);
/* out[r] = vec_dot(n, w + r * w_stride, a) for r < n_rows, bit for bit. */
typedef void (*mf_vec_dot_rows_fn)(size_t n, const void *w, size_t w_stride, const void *a,
                                   float *out, size_t n_rows);
/* out[c * ldo + r] = vec_dot(n, w + r * w_stride, a[c]) for r < n_rows, c < n_cols, bit for
 * bit: each weight row read and unpacked once for all the columns. */
typedef void (*mf_vec_dot_rows_cols_fn)(size_t n, const void *w, size_t w_stride,
                                        const void *const *a, size_t n_cols, float *out, size_t ldo,
                                        size_t n_rows);
/* acc[0..n) += sum over t < n_rows of p[t] * row t (rows `stride` bytes apart, added in order
 * of t): the value half of decode attention over a cache of this type. */
typedef void (*mf_axpy_rows_fn)(size_t n, const void *rows, size_t stride, const float *p,
                                size_t n_rows, float *acc);

struct mf_type_traits {
    mf_to_float_fn to_float;     /* NULL: rows of this type cannot be read */
    mf_from_float_fn from_float; /* NULL: no quantizer */
    mf_vec_dot_fn vec_dot;       /* NULL: no dot product */
    enum memfit_type vec_dot_type;
    mf_vec_dot_rows_fn vec_dot_rows;           /* NULL: no multi-row kernel, loop over vec_dot */
    mf_vec_dot_rows_cols_fn vec_dot_rows_cols; /* NULL: none (AVX-512 VNNI; Q4_0 with AVX2) */
    mf_axpy_rows_fn axpy_rows;                 /* NULL: each row through to_float (F16 has one) */
};

/*
 * Matrix-vector rows: out[r] = t->vec_dot(n, w + r * w_stride, a) for
 * r < n_rows (a: one activation row of t->vec_dot_type). Where the type has
 * a multi-row kernel it is used; its results must be bit-identical to the
 * one-row kernel, so a row's value does not depend on how rows are split
 * across threads. This is what an LLM forward should call for each
 * thread's range of rows of a matrix-vector product. (Rows streamed side by
 * side ran slower from memory than one at a time, with AVX-512 (four rows)
 * and with AVX2 (two); the Q4_0/Q8_0 ones arrange the activation once per
 * call and then take the rows one by one.)
 */
static inline void mf_vec_dot_rows(const struct mf_type_traits *t, size_t n, const void *w,
                                   size_t w_stride, const void *a, float *out, size_t n_rows)
{
    if (t->vec_dot_rows) {
        t->vec_dot_rows(n, w, w_stride, a, out, n_rows);
        return;
    }
    for (size_t r = 0; r < n_rows; r++)
        out[r] = t->vec_dot(n, (const uint8_t *)w + r * w_stride, a);
}

/* acc[0..n) += sum over t < n_rows of p[t] * row t: the type's axpy_rows, or each row
 * converted into `row` (n floats) by to_float and added in order. */
static inline void mf_axpy_rows(const struct mf_type_traits *t, size_t n, const void *rows,
                                size_t stride, const float *p, size_t n_rows, float *acc,
                                float *row)
{
    if (t->axpy_rows) {
        t->axpy_rows(n, rows, stride, p, n_rows, acc);
        return;
    }
    for (size_t r = 0; r < n_rows; r++) {
        t->to_float((const uint8_t *)rows + r * stride, row, n);
        for (size_t d = 0; d < n; d++)
            acc[d] += p[r] * row[d];
    }
}

/*
 * Multi-column dots (dot_cols.c, x86/dot_cols*.c): out[c] = the dot of the
 * weight row w with activation row a[c] (rows of the type's vec_dot_type) for
 * c < n_cols, each weight block loaded and unpacked once for all columns.
 * What a column gets depends only on n, w and a[c]: never on n_cols, the other
 * columns or the column's place (each column runs the same operations in the
 * same order), so a sequence decoded beside others gets the logits it gets
 * alone. Against vec_dot: the scalar kernels are bit-identical; the SIMD ones
 * keep the SIMD vec_dot's tolerance (exact integer block sums, float sums in
 * another order). n_cols may be 0.
 */
typedef void (*mf_vec_dot_cols_fn)(size_t n, const void *w, const void *const *a, size_t n_cols,
                                   float *out);

/* The multi-column kernel in use for a weight type, the scalar one, and the SIMD one
 * whatever MEMFIT_NO_SIMD says; NULL where the type has none (then loop over vec_dot,
 * which has the same column independence). */
mf_vec_dot_cols_fn mf_type_dot_cols(enum memfit_type type);
mf_vec_dot_cols_fn mf_type_dot_cols_scalar(enum memfit_type type);
mf_vec_dot_cols_fn mf_type_dot_cols_simd(enum memfit_type type);

void mf_dot_cols_q4_0(size_t n, const void *w, const void *const *a, size_t n_cols, float *out);
void mf_dot_cols_q8_0(size_t n, const void *w, const void *const *a, size_t n_cols, float *out);

/* The traits in use (SIMD where detected and not disabled), NULL for a type without any. */
const struct mf_type_traits *mf_type_traits(enum memfit_type type);

/* The scalar reference traits, whatever the CPU. */
const struct mf_type_traits *mf_type_traits_scalar(enum memfit_type type);

/*
 * The x86 traits (scalar entries where no SIMD version exists), or NULL
 * when the CPU lacks AVX2/FMA/F16C or this is not an x86 build. Ignores
 * MEMFIT_NO_SIMD, so tests can compare both paths.
 */
const struct mf_type_traits *mf_type_traits_simd(enum memfit_type type);

/* True when mf_type_traits() hands out the SIMD kernels. */
bool mf_tensor_simd_active(void);
/* True when the SIMD kernels are active and the CPU has AVX-VNNI (and
 * MEMFIT_NO_VNNI is not 1): the Q8_0 integer tile uses vpdpbusd. */
bool mf_tensor_vnni_active(void);
/* True when the AVX-512F kernels are active and the CPU also has AVX-512BW
 * and AVX-512 VNNI: the K-quant integer tile uses 512-bit vpdpbusd. */
bool mf_tensor_avx512vnni_active(void);
/* True when the SIMD kernels are active and the CPU (and OS) have AVX-512F
 * (and MEMFIT_NO_AVX512 is not 1): the float panels use 512-bit FMAs. */
bool mf_tensor_avx512_active(void);

/* ---- Scalar kernels (src/tensor, one file per job) ------------------------------------ */

void mf_f32_to_float(const void *src, float *dst, size_t n);
void mf_f32_from_float(const float *src, void *dst, size_t n);
void mf_f16_to_float(const void *src, float *dst, size_t n);
void mf_f16_from_float(const float *src, void *dst, size_t n);
void mf_bf16_to_float(const void *src, float *dst, size_t n);
void mf_bf16_from_float(const float *src, void *dst, size_t n);

void mf_dequant_q4_0(const void *src, float *dst, size_t n);
void mf_dequant_q4_1(const void *src, float *dst, size_t n);
void mf_dequant_q5_0(const void *src, float *dst, size_t n);
void mf_dequant_q5_1(const void *src, float *dst, size_t n);
void mf_dequant_q8_0(const void *src, float *dst, size_t n);
void mf_dequant_q2_k(const void *src, float *dst, size_t n);
void mf_dequant_q3_k(const void *src, float *dst, size_t n);
void mf_dequant_q4_k(const void *src, float *dst, size_t n);
void mf_dequant_q5_k(const void *src, float *dst, size_t n);
void mf_dequant_q6_k(const void *src, float *dst, size_t n);
void mf_dequant_q8_k(const void *src, float *dst, size_t n);

void mf_quant_q4_0(const float *src, void *dst, size_t n);
void mf_quant_q8_0(const float *src, void *dst, size_t n);
void mf_quant_q4_k(const float *src, void *dst, size_t n);
void mf_quant_q6_k(const float *src, void *dst, size_t n);
void mf_quant_q8_k(const float *src, void *dst, size_t n);

float mf_dot_f32(size_t n, const void *w, const void *a);
float mf_dot_f16(size_t n, const void *w, const void *a);
float mf_dot_bf16(size_t n, const void *w, const void *a);
float mf_dot_q4_0(size_t n, const void *w, const void *a);
float mf_dot_q4_1(size_t n, const void *w, const void *a);
float mf_dot_q5_0(size_t n, const void *w, const void *a);
float mf_dot_q5_1(size_t n, const void *w, const void *a);
float mf_dot_q8_0(size_t n, const void *w, const void *a);
float mf_dot_q2_k(size_t n, const void *w, const void *a);
float mf_dot_q3_k(size_t n, const void *w, const void *a);
float mf_dot_q4_k(size_t n, const void *w, const void *a);
float mf_dot_q5_k(size_t n, const void *w, const void *a);
float mf_dot_q6_k(size_t n, const void *w, const void *a);

/*
 * Float-weight matrix tiles (memfit_matmul_rows): y[c*ldy + r] = w row r . x row c
 * for r in [r0, r1), c < n_cols; w row r at w + r * w_stride bytes, x row c at
 * x + c * xs floats; with `accumulate` the products are added to y. Blocked by MF_GEMM_TB
 * activation rows x MF_GEMM_KC of k x MF_GEMM_RB weight rows.
 */
#define MF_GEMM_TB 512
#define MF_GEMM_KC 256
#define MF_GEMM_RB 24
typedef void (*mf_gemm_fn)(const void *w, size_t w_stride, size_t n, size_t r0, size_t r1,
                           const float *x, size_t xs, size_t n_cols, float *y, size_t ldy,
                           bool accumulate);
void mf_gemm_scalar_f32(const void *w, size_t w_stride, size_t n, size_t r0, size_t r1,
                        const float *x, size_t xs, size_t n_cols, float *y, size_t ldy,
                        bool accumulate);
void mf_gemm_scalar_f16(const void *w, size_t w_stride, size_t n, size_t r0, size_t r1,
                        const float *x, size_t xs, size_t n_cols, float *y, size_t ldy,
                        bool accumulate);
void mf_gemm_scalar_bf16(const void *w, size_t w_stride, size_t n, size_t r0, size_t r1,
                         const float *x, size_t xs, size_t n_cols, float *y, size_t ldy,
                         bool accumulate);

/* The scalar float-weight tile for F32/F16/BF16, NULL for other types. */
mf_gemm_fn mf_gemm_kernel(enum memfit_type type);

/*
 * Q8_0 weights by float activations in integers (the scalar reference of
 * x86/gemm_q8.c): each block of MF_GEMM_Q8_TB activations x MF_GEMM_KC of k
 * is quantized to Q8_0 (mf_quant_q8_0, the same bytes as the AVX2
 * quantizer), then for every weight row r in [r0, r1) and activation c,
 *   y[c*ldy + r] = sum over blocks of d_w * d_x * (integer sum of q_w * q_x)
 * accumulated in float block by block. Same contract as mf_gemm_fn without
 * `accumulate`. The AVX2 version gives the same integer block sums and the
 * same float order per block.
 */
void mf_gemm_q8_0_scalar(const void *w, size_t w_stride, size_t n, size_t r0, size_t r1,
                         const float *x, size_t xs, size_t n_cols, float *y, size_t ldy);

/*
 * Q4_K or Q6_K weights by float activations in integers (the scalar
 * reference of x86/gemm_k*.c): each 256-element slice of every activation
 * is quantized to one Q8_K block (mf_quant_q8_k, the bytes of the AVX2
 * quantizer) and y[c*ldy + r] is the sum over super-blocks of the scalar
 * vec_dot's super-block terms, in the same order: mf_dot_q4_k / mf_dot_q6_k
 * of the row with the activation's Q8_K row, bit for bit. Same contract as
 * mf_gemm_q8_0_scalar; n a multiple of 256.
 */
void mf_gemm_k_scalar(enum memfit_type type, const void *w, size_t w_stride, size_t n, size_t r0,
                      size_t r1, const float *x, size_t xs, size_t n_cols, float *y, size_t ldy);

/* Activation rows from which memfit_matmul_rows uses the integer path for Q8_0 and Q4_0
 * (below, quantizing the activations costs more than it saves). */
#define MF_GEMM_Q8_MIN_COLS 8
/* Activation rows per quantized tile (MF_GEMM_KC of k each, 34 KiB on the stack). */
#define MF_GEMM_Q8_TB 128
/* Weight rows per pass of the integer tiles over k: the outputs of MF_GEMM_Q8_TB activations
 * by this many rows (128 KiB) stay in L2 while every k slice adds to them (all of a thread's
 * rows at once went out to L3 on the 1.8B FFN); the activations are quantized again per pass. */
#define MF_GEMM_Q8_RC 256

/* F16's axpy_rows (float.c; the AVX2 twin keeps 64 sums in registers across the rows and uses
 * FMA: within 2 ulp per term of the scalar one). */
void mf_f16_axpy_rows_scalar(size_t n, const void *rows, size_t stride, const float *p,
                             size_t n_rows, float *acc);

/* Elementwise (act.c): e^x to about 1 ulp (e^-87.3 below -87.3, saturating above 88.7),
 * exact-erf GELU in place. */
float mf_expf(float x);
void mf_gelu_scalar(float *x, size_t n);
/* SwiGLU of an LLM's feed-forward in place: g[i] = silu(g[i]) * u[i] = g / (1 + e^-g) * u, e^x
 * as mf_expf (AVX2 when available: the same formula, eight at a time). */
void mf_swiglu(float *g, const float *u, size_t n);
void mf_swiglu_scalar(float *g, const float *u, size_t n);

/*
 * Transformer blocks (nn.c): the row steps of memfit_layer_norm and
 * memfit_attention that have an AVX2 twin, as a table so tests can run the
 * public loops over either.
 *
 * attn_softmax turns one query's scores s[0..n) of a key tile (keys k0 ..
 * k0 + n - 1) into unnormalised softmax weights against its running max *m:
 *   s[t] = scale * s[t] + rel_h[(k0 + t) / k_w] + rel_w[(k0 + t) % k_w]
 *          (no bias when rel_h is NULL);
 *   mx = max(*m, max_t s[t]); s[t] = e^(s[t] - mx), 0 where s[t] - mx < -87.3
 *   (so -inf scores weigh exactly 0); *alpha = e^(*m - mx), 0 when *m is
 *   -inf; *m = mx; returns the sum of the new s. With mx -inf (every score
 *   so far -inf) s is all 0, *alpha 0 and the sum 0.
 * attn_rescale: o[d] = o[d] * alpha + op[d] for d < n.
 */
struct mf_attn_bias {
    const float *rel_h, *rel_w; /* this query's rows, or rel_h NULL */
    size_t k0, k_w;
};
struct mf_nn_ops {
    void (*layer_norm_row)(const float *x, float *y, size_t d, const float *w, const float *b,
                           float eps);
    float (*attn_softmax)(float *s, size_t n, float scale, const struct mf_attn_bias *bias,
                          float *m, float *alpha);
    void (*attn_rescale)(float *o, const float *op, size_t n, float alpha);
    /* o += a * v (the few-query attention's P V, one key at a time) */
    void (*attn_axpy)(float *o, const float *v, size_t n, float a);
};

/* The row steps in use (AVX2 where active), the scalar ones, and the AVX2
 * ones whatever MEMFIT_NO_SIMD says (NULL without AVX2/FMA). */
const struct mf_nn_ops *mf_nn_ops(void);
const struct mf_nn_ops *mf_nn_ops_scalar(void);
const struct mf_nn_ops *mf_nn_ops_simd(void);

/* memfit_layer_norm and memfit_attention with the given row steps. */
void mf_layer_norm_with(const struct mf_nn_ops *ops, const float *x, size_t ldx, float *y,
                        size_t ldy, size_t n_rows, size_t d, const float *w, const float *b,
                        float eps);
enum memfit_status mf_attention_with(const struct mf_nn_ops *ops, const struct memfit_attention *a,
                                     void *work, size_t work_bytes);

/*
 * NF4 rows against Q8_0 activations (nf4.c, x86/nf4.c, x86/nf4_avx512.c): n
 * codes (the first element of a pair in the high nibble) that stand for
 * mf_nf4_q8[code] (the NF4 levels x 127, rounded); elements 32j..32j+31
 * have the absmax absmax[j >> shift] (blocks of 32 << shift elements).
 * Sums each 32 in integers, then absmax * d_act * isum in float, and the
 * total times 1/127; the SIMD kernels only order the float sums differently.
 */
typedef float (*mf_nf4_dot_fn)(size_t n, const uint8_t *codes, const float *absmax, unsigned shift,
                               const void *act);
extern const int8_t mf_nf4_q8[16];
float mf_nf4_dot_scalar(size_t n, const uint8_t *codes, const float *absmax, unsigned shift,
                        const void *act);
/* The NF4 kernel in use (AVX-512 VNNI, else AVX-512BW, else AVX2, where
 * active), the AVX2 one whatever MEMFIT_NO_SIMD says (NULL without
 * AVX2/FMA/F16C), the AVX-512BW one and the AVX-512 VNNI one whatever
 * MEMFIT_NO_SIMD/MEMFIT_NO_AVX512 say (NULL without AVX-512F/BW(/VNNI)). */
mf_nf4_dot_fn mf_nf4_dot_kernel(void);
mf_nf4_dot_fn mf_nf4_dot_kernel_simd(void);
mf_nf4_dot_fn mf_nf4_dot_kernel_avx512(void);
mf_nf4_dot_fn mf_nf4_dot_kernel_vnni512(void);
/* The absmax of the matrix's block b (counted over the flat tensor), double
 * quantization decoded. */
float mf_nf4_block_absmax(const struct memfit_nf4_matrix *m, uint64_t b);
/* The absmax of count blocks from block b0 into out: mf_nf4_block_absmax's floats. */
void mf_nf4_absmax_range(const struct memfit_nf4_matrix *m, uint64_t b0, size_t count, float *out);
/* memfit_nf4_matvec_rows with the given row kernel. */
void mf_nf4_matvec_rows_with(mf_nf4_dot_fn dot, const struct memfit_nf4_matrix *m,
                             uint64_t row_begin, uint64_t row_end, const void *act, float *y);

/* ---- x86 kernels (src/tensor/x86, AVX2+FMA+F16C) --------------------- */

#if defined(__x86_64__)
void mf_avx2_exp(float *x, size_t n);
void mf_avx2_gelu(float *x, size_t n);
void mf_avx2_swiglu(float *g, const float *u, size_t n);
/* F16 rows against F32: each row bit for bit mf_avx2_dot_f16 (the type's vec_dot_rows). */
void mf_avx2_dot_f16_rows(size_t n, const void *w, size_t w_stride, const void *a, float *out,
                          size_t n_rows);
void mf_avx2_f16_axpy_rows(size_t n, const void *rows, size_t stride, const float *p, size_t n_rows,
                           float *acc);
/* The struct mf_nn_ops row steps (x86/nn.c). */
void mf_avx2_layer_norm_row(const float *x, float *y, size_t d, const float *w, const float *b,
                            float eps);
float mf_avx2_attn_softmax(float *s, size_t n, float scale, const struct mf_attn_bias *bias,
                           float *m, float *alpha);
void mf_avx2_attn_rescale(float *o, const float *op, size_t n, float alpha);
void mf_avx2_attn_axpy(float *o, const float *v, size_t n, float a);
void mf_avx2_f16_to_float(const void *src, float *dst, size_t n);
void mf_avx2_f16_from_float(const float *src, void *dst, size_t n);
void mf_avx2_quant_q8_0(const float *src, void *dst, size_t n);
void mf_avx2_quant_q8_k(const float *src, void *dst, size_t n);
float mf_avx2_dot_f32(size_t n, const void *w, const void *a);
float mf_avx2_dot_f16(size_t n, const void *w, const void *a);
float mf_avx2_dot_bf16(size_t n, const void *w, const void *a);
/* Q4_0 against Q8_0 with AVX2 (x86/dot_quad.c): four blocks' float work in one vector; the one-,
 * multi-row and rows x columns kernels agree bit for bit. */
float mf_avx2_dot_q4_0(size_t n, const void *w, const void *a);
void mf_avx2_dot_q4_0_rows(size_t n, const void *w, size_t w_stride, const void *a, float *out,
                           size_t n_rows);
void mf_avx2_dot_q4_0_rows_cols(size_t n, const void *w, size_t w_stride, const void *const *a,
                                size_t n_cols, float *out, size_t ldo, size_t n_rows);
float mf_avx2_dot_q8_0(size_t n, const void *w, const void *a);
float mf_avx2_dot_q4_k(size_t n, const void *w, const void *a);
float mf_avx2_dot_q6_k(size_t n, const void *w, const void *a);
float mf_avx2_nf4_dot(size_t n, const uint8_t *codes, const float *absmax, unsigned shift,
                      const void *act);
/* memfit_nf4_matvec_rows with mf_avx2_nf4_dot (x86/nf4.c), the activation split once per call:
 * each row's value bit-identical to the row kernel's. */
void mf_avx2_nf4_matvec_rows(const struct memfit_nf4_matrix *m, uint64_t row_begin,
                             uint64_t row_end, const void *act, float *y);
/* The AVX-512BW NF4 row kernel (x86/nf4_avx512.c, -mavx512f -mavx512bw), and its
 * decoder of count double-quantized absmax values from block b0 (what
 * mf_nf4_block_absmax gives, bit for bit). */
void mf_avx512_nf4_absmax(const struct memfit_nf4_matrix *m, uint64_t b0, size_t count, float *out);
float mf_avx512_nf4_dot(size_t n, const uint8_t *codes, const float *absmax, unsigned shift,
                        const void *act);
/* The AVX-512 VNNI NF4 row kernel (x86/nf4_vnni512.c, built and chosen as dot_avx512.c),
 * and memfit_nf4_matvec_rows with it (the activation arranged once per call): each row's
 * value bit-identical to mf_avx512vnni_nf4_dot's. */
float mf_avx512vnni_nf4_dot(size_t n, const uint8_t *codes, const float *absmax, unsigned shift,
                            const void *act);
void mf_avx512vnni_nf4_matvec_rows(const struct memfit_nf4_matrix *m, uint64_t row_begin,
                                   uint64_t row_end, const void *act, float *y);
/* mf_avx512_nf4_absmax without gathers (VBMI byte lookups): the same floats. */
void mf_avx512vnni_nf4_absmax(const struct memfit_nf4_matrix *m, uint64_t b0, size_t count,
                              float *out);
/* Any readable weight type (rows unpacked with to_float; F32 read directly); same contract
 * as mf_gemm_fn, w_stride a multiple of 4 for F32. */
void mf_avx2_gemm(enum memfit_type type, mf_to_float_fn to_float, uint32_t block_size,
                  uint32_t type_size, const void *w, size_t w_stride, size_t n, size_t r0,
                  size_t r1, const float *x, size_t xs, size_t n_cols, float *y, size_t ldy);
/* Q8_0 or Q4_0 weights through the integer panel kernel (x86/gemm_q8.c),
 * activations quantized to Q8_0: for Q8_0 the result of mf_gemm_q8_0_scalar
 * to float rounding, for Q4_0 that of mf_dot_q4_0 per row and activation.
 * Type NF4: w is a checked const struct memfit_nf4_matrix * (w_stride
 * unused, n its cols), the result that of mf_nf4_dot_scalar per row and
 * activation to float rounding. */
void mf_avx2_gemm_int8(enum memfit_type type, const void *w, size_t w_stride, size_t n, size_t r0,
                       size_t r1, const float *x, size_t xs, size_t n_cols, float *y, size_t ldy);
/* Multi-column Q4_0 and Q8_0 dots against Q8_0 (x86/dot_cols.c; x86/dot_cols_vnni.c with
 * vpdpbusd, only after mf_tensor_vnni_active()): identical floats from both. */
void mf_avx2_dot_cols_q4_0(size_t n, const void *w, const void *const *a, size_t n_cols,
                           float *out);
void mf_avx2_dot_cols_q8_0(size_t n, const void *w, const void *const *a, size_t n_cols,
                           float *out);
void mf_avxvnni_dot_cols_q4_0(size_t n, const void *w, const void *const *a, size_t n_cols,
                              float *out);
void mf_avxvnni_dot_cols_q8_0(size_t n, const void *w, const void *const *a, size_t n_cols,
                              float *out);
/* Q4_0 and Q8_0 rows against a Q8_0 activation with AVX-512 VNNI (x86/dot_avx512.c,
 * -mavx512f/bw/vl/vnni/vbmi): the scalar reference's exact block sums, float lanes summed in
 * another order; the _rows kernels give each row bit for bit what the one-row kernel gives. */
float mf_avx512_dot_q4_0(size_t n, const void *w, const void *a);
float mf_avx512_dot_q8_0(size_t n, const void *w, const void *a);
void mf_avx512_dot_q4_0_rows(size_t n, const void *w, size_t w_stride, const void *a, float *out,
                             size_t n_rows);
void mf_avx512_dot_q4_0_rows_cols(size_t n, const void *w, size_t w_stride, const void *const *a,
                                  size_t n_cols, float *out, size_t ldo, size_t n_rows);
/* Q4_0's vec_dot_rows: mf_avx512_dot_q4_0_rows_cols with one column (x86/dot_cols512.c). */
void mf_avx512_dot_q4_0_rows_t(size_t n, const void *w, size_t w_stride, const void *a, float *out,
                               size_t n_rows);
void mf_avx512_dot_q8_0_rows_cols(size_t n, const void *w, size_t w_stride, const void *const *a,
                                  size_t n_cols, float *out, size_t ldo, size_t n_rows);
/* The rows x columns kernels live in x86/dot_cols512.c (the same flags); Q4_K and Q6_K against
 * Q8_K give what mf_avx2_dot_q4_k/q6_k and mf_dot_q4_k/q6_k give, bit for bit. */
void mf_avx512_dot_q4_k_rows_cols(size_t n, const void *w, size_t w_stride, const void *const *a,
                                  size_t n_cols, float *out, size_t ldo, size_t n_rows);
void mf_avx512_dot_q6_k_rows_cols(size_t n, const void *w, size_t w_stride, const void *const *a,
                                  size_t n_cols, float *out, size_t ldo, size_t n_rows);
void mf_avx512_dot_q6_k_rows(size_t n, const void *w, size_t w_stride, const void *a, float *out,
                             size_t n_rows);
void mf_avx512_dot_q8_0_rows(size_t n, const void *w, size_t w_stride, const void *a, float *out,
                             size_t n_rows);
/* The AVX-512F micro-kernel of mf_avx2_gemm (x86/gemm_avx512.c, -mavx512f):
 * nc <= MF_GEMM_AVX512_MR activations (rows of kc floats at x, stride xs)
 * against a k-major panel of 16 rows; same arithmetic as the AVX2 kernel. */
#define MF_GEMM_AVX512_MR 12
void mf_avx512_gemm_kernel(const float *panel, const float *x, size_t xs, size_t nc, size_t kc,
                           float *y, size_t ldy, size_t nr, bool acc);
/* The same with AVX-512 VNNI, 16 rows per panel (x86/gemm_q8_avx512.c): the
 * same results again; only after mf_tensor_avx512vnni_active(). */
void mf_avx512vnni_gemm_int8(enum memfit_type type, const void *w, size_t w_stride, size_t n,
                             size_t r0, size_t r1, const float *x, size_t xs, size_t n_cols,
                             float *y, size_t ldy);
/*
 * Q4_K or Q6_K weights through the K-quant integer tile (x86/gemm_k.c):
 * activations quantized to Q8_K a super-block at a time, 16-row panels of
 * unpacked quants, integer sums per sub-block scaled by the 6-bit (Q6_K
 * 8-bit) scales, the mins (Q6_K: the -32 offset) through the activation's
 * bsums. isa 0: AVX2 (maddubs), 1: AVX-VNNI (only after
 * mf_tensor_vnni_active), 2: AVX-512 VNNI (only after
 * mf_tensor_avx512vnni_active). Every isa gives mf_gemm_k_scalar's floats
 * exactly (same integer sums, same float steps).
 */
void mf_avx2_gemm_k(enum memfit_type type, int isa, const void *w, size_t w_stride, size_t n,
                    size_t r0, size_t r1, const float *x, size_t xs, size_t n_cols, float *y,
                    size_t ldy);
/* The tile's kernels: nc activations' Q8_K blocks x[0..nc) against the
 * first nr rows of a panel (struct mf_k_panel, x86/tile.h), written (or,
 * add, added) at y + c * ldy. */
struct mf_k_panel;
struct mf_block_q8_k;
typedef void (*mf_k_kernel_fn)(const struct mf_k_panel *p, bool q6, const struct mf_block_q8_k *x,
                               size_t nc, float *y, size_t ldy, size_t nr, bool add);
void mf_avx2_k_kernel(const struct mf_k_panel *p, bool q6, const struct mf_block_q8_k *x, size_t nc,
                      float *y, size_t ldy, size_t nr, bool add);
void mf_avxvnni_k_kernel(const struct mf_k_panel *p, bool q6, const struct mf_block_q8_k *x,
                         size_t nc, float *y, size_t ldy, size_t nr, bool add);
void mf_avx512vnni_k_kernel(const struct mf_k_panel *p, bool q6, const struct mf_block_q8_k *x,
                            size_t nc, float *y, size_t ldy, size_t nr, bool add);
/* The integer tile with AVX-VNNI (x86/gemm_q8_vnni.c, -mavxvnni): the same
 * results as mf_avx2_gemm_int8; only after mf_tensor_vnni_active(). */
void mf_avxvnni_gemm_int8(enum memfit_type type, const void *w, size_t w_stride, size_t n,
                          size_t r0, size_t r1, const float *x, size_t xs, size_t n_cols, float *y,
                          size_t ldy);
#endif

#endif

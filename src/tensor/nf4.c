/*
 * bitsandbytes' NF4 (4-bit NormalFloat) and its double quantization of the
 * block scales, as bitsandbytes' CPU reference ("default" backend) computes
 * them, so a tensor quantized here loads in bitsandbytes and vice versa.
 *
 * NF4 does not fit the row traits: its scales live in a separate absmax
 * array (and may themselves be 8-bit codes), and blocks run over the flat
 * tensor rather than per row. So it has its own entry points; the packed
 * code bytes are what the type table's NF4 size (64 elements, 32 bytes)
 * describes.
 *
 * The matrix functions at the end run an NF4 matrix in place (codes and
 * scales as stored, double quantization included): a row's absmax values
 * are decoded into a small stack array, then the row kernel (scalar here,
 * AVX2 in x86/nf4.c, AVX-512BW in x86/nf4_avx512.c) sums each 32 codes
 * against a Q8_0 activation block in integers, using the levels times 127
 * rounded to int8, as llama.cpp's IQ4_NL does with its own non-linear
 * levels. Prompts (many activation rows) go through the x86 integer tiles
 * with the same levels (x86/tile.h: 8 rows' codes looked up once per panel
 * and shared by up to 128 activations); the scalar path dequantizes a
 * row at a time and sums in float.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "memfit/tensor.h"
#include "tensor/blocks.h"
#include "tensor/kernels.h"

/* bitsandbytes' NF4 table (functional.py get_4bit_type("nf4")), ascending. */
static const float nf4_codes[16] = {
    -1.0f,
    -0.6961928009986877f,
    -0.5250730514526367f,
    -0.39491748809814453f,
    -0.28444138169288635f,
    -0.18477343022823334f,
    -0.09105003625154495f,
    0.0f,
    0.07958029955625534f,
    0.16093020141124725f,
    0.24611230194568634f,
    0.33791524171829224f,
    0.44070982933044434f,
    0.5626170039176941f,
    0.7229568362236023f,
    1.0f,
};

/* The smallest absmax bitsandbytes divides by (absmax.clamp(min=1e-38)). */
#define MIN_ABSMAX   1e-38f
#define NESTED_BLOCK 256

const float *memfit_nf4_codebook(void)
{
    return nf4_codes;
}

/* torch.linspace(start, end, steps) in float32, computed as torch's CPU kernel does. */
static void linspace_f32(float start, float end, int steps, float *out)
{
    float step = (end - start) / (float)(steps - 1);
    int halfway = steps / 2;
    for (int i = 0; i < steps; i++)
        out[i] = i < halfway ? start + step * (float)i : end - step * (float)(steps - i - 1);
}

void memfit_nf4_dynamic_map(float out[256])
{
    /* signed, 7 exponent bits, 8 bits: for exponent i the fraction has 2^i
     * steps between 0.1 and 1, whose midpoints are scaled by 10^(i-6) and
     * taken with both signs; then 0 and 1 complete the 256 values. */
    static const double powers[7] = {1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1e0};
    float bounds[65];
    int k = 0;
    for (int i = 0; i < 7; i++) {
        int items = (1 << i) + 1;
        linspace_f32(0.1f, 1.0f, items, bounds);
        for (int j = 0; j + 1 < items; j++) {
            float mean = (bounds[j] + bounds[j + 1]) / 2.0f;
            float v = (float)powers[i] * mean;
            out[k++] = v;
            out[k++] = -v;
        }
    }
    out[k++] = 0.0f;
    out[k++] = 1.0f;
    /* Insertion sort: 256 values, once per call. */
    for (int i = 1; i < 256; i++) {
        float v = out[i];
        int j = i - 1;
        for (; j >= 0 && out[j] > v; j--)
            out[j + 1] = out[j];
        out[j + 1] = v;
    }
}

/* torch.bucketize(v, bounds, right=False): how many bounds are below v. */
static unsigned bucketize(float v, const float *bounds, unsigned n_bounds)
{
    unsigned lo = 0, hi = n_bounds;
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        if (bounds[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/*
 * bitsandbytes' blockwise quantization against a sorted code table: per
 * block absmax, x scaled to [-1, 1], nearest code (ties to the lower). A
 * full block multiplies by 1/absmax; a short last block divides by its
 * absmax, which it also stores clamped to MIN_ABSMAX: both as bitsandbytes.
 * emit(i, code) stores code i.
 */
struct blockwise {
    const float *x;
    uint64_t n;
    uint64_t blocksize;
    const float *bounds;
    unsigned n_bounds;
    float *absmax;
};

static void quantize_blockwise(const struct blockwise *q, void (*emit)(void *, uint64_t, unsigned),
                               void *emit_ctx)
{
    for (uint64_t start = 0, b = 0; start < q->n; start += q->blocksize, b++) {
        uint64_t len = q->n - start < q->blocksize ? q->n - start : q->blocksize;
        const float *x = q->x + start;
        float amax = 0;
        for (uint64_t i = 0; i < len; i++)
            amax = fmaxf(amax, fabsf(x[i]));
        bool full = len == q->blocksize;
        float clamped = fmaxf(amax, MIN_ABSMAX);
        float inv = 1.0f / clamped;
        q->absmax[b] = full ? amax : clamped;
        for (uint64_t i = 0; i < len; i++) {
            float s = full ? x[i] * inv : x[i] / clamped;
            s = fminf(fmaxf(s, -1.0f), 1.0f);
            emit(emit_ctx, start + i, bucketize(s, q->bounds, q->n_bounds));
        }
    }
}

static void emit_nibble(void *ctx, uint64_t i, unsigned code)
{
    uint8_t *codes = ctx;
    if (i % 2 == 0)
        codes[i / 2] = (uint8_t)(code << 4); /* first element: high nibble */
    else
        codes[i / 2] |= (uint8_t)code;
}

static void emit_byte(void *ctx, uint64_t i, unsigned code)
{
    ((uint8_t *)ctx)[i] = (uint8_t)code;
}

static enum memfit_status check_blocksize(uint32_t blocksize)
{
    if (blocksize < 32 || blocksize > 4096 || (blocksize & (blocksize - 1)) != 0)
        return memfit_fail(MEMFIT_E_RANGE, "nf4: blocksize %u: not a power of two in 32..4096",
                           blocksize);
    return MEMFIT_OK;
}

static void midpoints(const float *codes, unsigned n_codes, float *out)
{
    for (unsigned i = 0; i + 1 < n_codes; i++)
        out[i] = (codes[i] + codes[i + 1]) / 2.0f;
}

enum memfit_status memfit_nf4_quantize(const float *x, uint64_t n, uint32_t blocksize,
                                       uint8_t *codes, float *absmax)
{
    enum memfit_status st = check_blocksize(blocksize);
    if (st != MEMFIT_OK)
        return st;
    float bounds[15];
    midpoints(nf4_codes, 16, bounds);
    struct blockwise q = {x, n, blocksize, bounds, 15, absmax};
    quantize_blockwise(&q, emit_nibble, codes);
    if (n % 2) /* bitsandbytes pads an odd tensor with 0.0, whose code is 7 */
        codes[n / 2] |= 7;
    return MEMFIT_OK;
}

enum memfit_status memfit_nf4_dequantize(const uint8_t *codes, const float *absmax, uint64_t n,
                                         uint32_t blocksize, float *out)
{
    enum memfit_status st = check_blocksize(blocksize);
    if (st != MEMFIT_OK)
        return st;
    for (uint64_t i = 0; i < n; i++) {
        unsigned code = i % 2 == 0 ? codes[i / 2] >> 4 : codes[i / 2] & 0xf;
        out[i] = nf4_codes[code] * absmax[i / blocksize];
    }
    return MEMFIT_OK;
}

enum memfit_status memfit_nf4_pack_absmax(const float *absmax, uint64_t n_blocks, uint8_t *qabsmax,
                                          float *nested_absmax, float *offset)
{
    if (n_blocks == 0)
        return memfit_fail(MEMFIT_E_RANGE, "nf4: double quantization of 0 absmax values");
    /* The mean is summed in double; torch's float32 sum may differ in the last bit. */
    double sum = 0;
    for (uint64_t i = 0; i < n_blocks; i++)
        sum += absmax[i];
    float mean = (float)(sum / (double)n_blocks);
    float map[256], bounds[255];
    memfit_nf4_dynamic_map(map);
    midpoints(map, 256, bounds);
    /* Quantize absmax - mean in chunks so no scratch buffer is needed. */
    float centered[NESTED_BLOCK];
    for (uint64_t start = 0; start < n_blocks; start += NESTED_BLOCK) {
        uint64_t len = n_blocks - start < NESTED_BLOCK ? n_blocks - start : NESTED_BLOCK;
        for (uint64_t i = 0; i < len; i++)
            centered[i] = absmax[start + i] - mean;
        struct blockwise q = {centered, len, NESTED_BLOCK,
                              bounds,   255, nested_absmax + start / NESTED_BLOCK};
        quantize_blockwise(&q, emit_byte, qabsmax + start);
    }
    *offset = mean;
    return MEMFIT_OK;
}

enum memfit_status memfit_nf4_unpack_absmax(const uint8_t *qabsmax, const float *nested_absmax,
                                            const float *nested_map, float offset,
                                            uint64_t n_blocks, float *absmax)
{
    for (uint64_t i = 0; i < n_blocks; i++)
        absmax[i] = nested_map[qabsmax[i]] * nested_absmax[i / NESTED_BLOCK] + offset;
    return MEMFIT_OK;
}

/* ---- Matrices used in place --------------------------------------------------------- */

/* round(127 * nf4_codes[i]); test_tensor_nf4 checks the rounding. */
const int8_t mf_nf4_q8[16] = {-127, -88, -67, -50, -36, -23, -12, 0,
                              10,   20,  31,  43,  56,  71,  92,  127};

float mf_nf4_dot_scalar(size_t n, const uint8_t *codes, const float *absmax, unsigned shift,
                        const void *act)
{
    const struct mf_block_q8_0 *y = act;
    float sum = 0;
    for (size_t j = 0; j < n / MF_QK; j++) {
        const uint8_t *c = codes + j * (MF_QK / 2);
        int isum = 0;
        for (int i = 0; i < MF_QK / 2; i++) {
            isum += mf_nf4_q8[c[i] >> 4] * y[j].qs[2 * i];
            isum += mf_nf4_q8[c[i] & 0xf] * y[j].qs[2 * i + 1];
        }
        sum += (float)isum * (absmax[j >> shift] * mf_fp16_to_fp32(y[j].d));
    }
    return sum * (1.0f / 127.0f);
}

static float load_f32(const void *base, uint64_t i)
{
    float v;
    memcpy(&v, (const uint8_t *)base + i * sizeof(float), sizeof(v));
    return v;
}

enum memfit_status memfit_nf4_matrix_check(const struct memfit_nf4_matrix *m)
{
    if (!m || !m->codes || !m->absmax)
        return memfit_fail(MEMFIT_E_MISUSE, "nf4 matrix: NULL codes or absmax");
    enum memfit_status st = check_blocksize(m->blocksize);
    if (st != MEMFIT_OK)
        return st;
    if (m->cols == 0 || m->rows == 0 || m->cols > MEMFIT_NF4_MAX_COLS)
        return memfit_fail(MEMFIT_E_RANGE,
                           "nf4 matrix: %llu x %llu: expected rows >= 1 and 1..%u "
                           "columns",
                           (unsigned long long)m->rows, (unsigned long long)m->cols,
                           MEMFIT_NF4_MAX_COLS);
    if (m->cols % m->blocksize != 0 || m->cols % MF_QK != 0)
        return memfit_fail(MEMFIT_E_FORMAT,
                           "nf4 matrix: rows of %llu elements: not a multiple of the blocksize %u "
                           "and of 32 (blocks would straddle rows)",
                           (unsigned long long)m->cols, m->blocksize);
    if (m->double_quant) {
        if (!m->nested_absmax || !m->nested_map)
            return memfit_fail(MEMFIT_E_MISUSE, "nf4 matrix: double quantization without its "
                                                "nested absmax or map");
        if (m->nested_blocksize == 0 || m->nested_blocksize > 4096 ||
            (m->nested_blocksize & (m->nested_blocksize - 1)) != 0)
            return memfit_fail(MEMFIT_E_FORMAT,
                               "nf4 matrix: nested blocksize %u: expected a power of two 1..4096",
                               m->nested_blocksize);
    }
    return MEMFIT_OK;
}

float mf_nf4_block_absmax(const struct memfit_nf4_matrix *m, uint64_t b)
{
    if (!m->double_quant)
        return load_f32(m->absmax, b);
    uint8_t q = ((const uint8_t *)m->absmax)[b];
    unsigned shift = (unsigned)__builtin_ctz(m->nested_blocksize); /* a power of two */
    return load_f32(m->nested_map, q) * load_f32(m->nested_absmax, b >> shift) + m->offset;
}

void mf_nf4_absmax_range(const struct memfit_nf4_matrix *m, uint64_t b0, size_t count, float *out)
{
    if (!m->double_quant) {
        memcpy(out, (const uint8_t *)m->absmax + b0 * sizeof(float), count * sizeof(float));
        return;
    }
#if defined(__x86_64__)
    mf_nf4_dot_fn dot = mf_nf4_dot_kernel();
    if (dot == mf_avx512vnni_nf4_dot) {
        mf_avx512vnni_nf4_absmax(m, b0, count, out);
        return;
    }
    if (dot == mf_avx512_nf4_dot) {
        mf_avx512_nf4_absmax(m, b0, count, out);
        return;
    }
#endif
    const uint8_t *q = m->absmax;
    /* A power of two (memfit_nf4_matrix_check): a shift, not a division, in this hot loop. */
    unsigned shift = (unsigned)__builtin_ctz(m->nested_blocksize);
    for (uint64_t i = 0; i < count; i++) {
        uint64_t b = b0 + i;
        out[i] = load_f32(m->nested_map, q[b]) * load_f32(m->nested_absmax, b >> shift) + m->offset;
    }
}

void memfit_nf4_row_absmax(const struct memfit_nf4_matrix *m, uint64_t r, float *out)
{
    uint64_t per_row = m->cols / m->blocksize;
    mf_nf4_absmax_range(m, r * per_row, per_row, out);
}

void mf_nf4_matvec_rows_with(mf_nf4_dot_fn dot, const struct memfit_nf4_matrix *m,
                             uint64_t row_begin, uint64_t row_end, const void *act, float *y)
{
#if defined(__x86_64__)
    if (dot == mf_avx512vnni_nf4_dot) { /* the same numbers, the activation arranged once */
        mf_avx512vnni_nf4_matvec_rows(m, row_begin, row_end, act, y);
        return;
    }
    if (dot == mf_avx2_nf4_dot) { /* the same: the activation split once */
        mf_avx2_nf4_matvec_rows(m, row_begin, row_end, act, y);
        return;
    }
#endif
    float absmax[MEMFIT_NF4_MAX_COLS / 32];
    size_t n = (size_t)m->cols;
    unsigned shift = (unsigned)__builtin_ctz(m->blocksize / MF_QK);
    for (uint64_t r = row_begin; r < row_end; r++) {
        memfit_nf4_row_absmax(m, r, absmax);
        y[r - row_begin] = dot(n, m->codes + r * (n / 2), absmax, shift, act);
    }
}

void memfit_nf4_matvec_rows(const struct memfit_nf4_matrix *m, uint64_t row_begin, uint64_t row_end,
                            const void *act, float *y)
{
    mf_nf4_matvec_rows_with(mf_nf4_dot_kernel(), m, row_begin, row_end, act, y);
}

void memfit_nf4_matmul_rows(const struct memfit_nf4_matrix *m, uint64_t row_begin, uint64_t row_end,
                            const float *x, size_t ldx, uint64_t n_cols, float *y, size_t ldy,
                            float *scratch)
{
    size_t n = (size_t)m->cols;
#if defined(__x86_64__)
    if (mf_tensor_simd_active() && n_cols >= MF_GEMM_Q8_MIN_COLS) {
        (mf_tensor_vnni_active() ? mf_avxvnni_gemm_int8 : mf_avx2_gemm_int8)(
            MEMFIT_TYPE_NF4, m, 0, n, (size_t)row_begin, (size_t)row_end, x, ldx, (size_t)n_cols, y,
            ldy);
        return;
    }
#endif
    float absmax[MEMFIT_NF4_MAX_COLS / 32];
    const struct mf_type_traits *f32 = mf_type_traits(MEMFIT_TYPE_F32);
    unsigned shift = (unsigned)__builtin_ctz(m->blocksize);
    for (uint64_t r = row_begin; r < row_end; r++) {
        memfit_nf4_row_absmax(m, r, absmax);
        const uint8_t *c = m->codes + r * (n / 2);
        for (size_t i = 0; i < n / 2; i++) {
            float a = absmax[(2 * i) >> shift];
            scratch[2 * i] = nf4_codes[c[i] >> 4] * a;
            scratch[2 * i + 1] = nf4_codes[c[i] & 0xf] * a;
        }
        for (uint64_t k = 0; k < n_cols; k++)
            y[k * ldy + r] = f32->vec_dot(n, scratch, x + k * ldx);
    }
}

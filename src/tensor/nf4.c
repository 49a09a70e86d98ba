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
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "memfit/tensor.h"

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

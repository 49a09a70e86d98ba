/*
 * Block layouts of the quantized element types, byte for byte as ggml
 * defines them (ggml-common.h), and the scalar fp16/bf16 conversions.
 *
 * A quantized row is an array of blocks; every block holds its own scale(s)
 * as IEEE binary16 stored little-endian (kept here as a uint16_t, which is
 * why the host must be little-endian) followed by packed integers. The
 * static asserts pin each struct to the byte count GGUF files use, so a
 * mapped file can be read through these structs directly.
 */
#ifndef MF_TENSOR_BLOCKS_H
#define MF_TENSOR_BLOCKS_H

#include <math.h>
#include <stdint.h>
#include <string.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "block scales are little-endian binary16 read in place");

#define MF_QK   32  /* elements per block of the 32-element types */
#define MF_QK_K 256 /* elements per super-block of the K-quants */

/* x = (q - 8) * d, q in 0..15: element j in the low nibble of qs[j], j+16 in the high. */
struct mf_block_q4_0 {
    uint16_t d;
    uint8_t qs[MF_QK / 2];
};
_Static_assert(sizeof(struct mf_block_q4_0) == 18, "q4_0 block is 18 bytes");

/* x = q * d + m, q in 0..15, nibbles as in q4_0. */
struct mf_block_q4_1 {
    uint16_t d;
    uint16_t m;
    uint8_t qs[MF_QK / 2];
};
_Static_assert(sizeof(struct mf_block_q4_1) == 20, "q4_1 block is 20 bytes");

/* x = (q - 16) * d, q in 0..31: the fifth bit of element j is bit j of qh (LE u32). */
struct mf_block_q5_0 {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[MF_QK / 2];
};
_Static_assert(sizeof(struct mf_block_q5_0) == 22, "q5_0 block is 22 bytes");

/* x = q * d + m, q in 0..31, bits as in q5_0. */
struct mf_block_q5_1 {
    uint16_t d;
    uint16_t m;
    uint8_t qh[4];
    uint8_t qs[MF_QK / 2];
};
_Static_assert(sizeof(struct mf_block_q5_1) == 24, "q5_1 block is 24 bytes");

/* x = q * d, q in -127..127 (ggml's quantizer never writes -128). */
struct mf_block_q8_0 {
    uint16_t d;
    int8_t qs[MF_QK];
};
_Static_assert(sizeof(struct mf_block_q8_0) == 34, "q8_0 block is 34 bytes");

/* 16 sub-blocks of 16: x = d * (scales[j] & 15) * q - dmin * (scales[j] >> 4), q in 0..3. */
struct mf_block_q2_k {
    uint8_t scales[MF_QK_K / 16];
    uint8_t qs[MF_QK_K / 4];
    uint16_t d;
    uint16_t dmin;
};
_Static_assert(sizeof(struct mf_block_q2_k) == 84, "q2_K block is 84 bytes");

/* 16 sub-blocks of 16: x = d * (s6 - 32) * (q2 - (high bit ? 0 : 4)). */
struct mf_block_q3_k {
    uint8_t hmask[MF_QK_K / 8];
    uint8_t qs[MF_QK_K / 4];
    uint8_t scales[12];
    uint16_t d;
};
_Static_assert(sizeof(struct mf_block_q3_k) == 110, "q3_K block is 110 bytes");

/* 8 sub-blocks of 32: x = d * sc * q - dmin * m, 6-bit sc and m packed in 12 bytes. */
struct mf_block_q4_k {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qs[MF_QK_K / 2];
};
_Static_assert(sizeof(struct mf_block_q4_k) == 144, "q4_K block is 144 bytes");

/* As q4_K with a fifth bit per element in qh. */
struct mf_block_q5_k {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qh[MF_QK_K / 8];
    uint8_t qs[MF_QK_K / 2];
};
_Static_assert(sizeof(struct mf_block_q5_k) == 176, "q5_K block is 176 bytes");

/* 16 sub-blocks of 16: x = d * scales[j] * (q - 32), q in 0..63. */
struct mf_block_q6_k {
    uint8_t ql[MF_QK_K / 2];
    uint8_t qh[MF_QK_K / 4];
    int8_t scales[MF_QK_K / 16];
    uint16_t d;
};
_Static_assert(sizeof(struct mf_block_q6_k) == 210, "q6_K block is 210 bytes");

/* Activations for the K-quant dots: x = d * q; bsums[j] = sum of qs[16j .. 16j+15]. */
struct mf_block_q8_k {
    float d;
    int8_t qs[MF_QK_K];
    int16_t bsums[MF_QK_K / 16];
};
_Static_assert(sizeof(struct mf_block_q8_k) == 292, "q8_K block is 292 bytes");

static inline uint32_t mf_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    return u;
}

static inline float mf_bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

/*
 * binary16 -> binary32, exact. NaNs keep their payload and come out quiet,
 * which is what the F16C instruction does, so both paths give equal bits.
 */
static inline float mf_fp16_to_fp32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f)
        return mf_bits_f32(sign | 0x7f800000u | (mant << 13) | (mant ? 0x400000u : 0));
    if (exp != 0)
        return mf_bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
    /* Zero or subnormal: mant * 2^-24 is exact in binary32. */
    return mf_bits_f32(sign | mf_f32_bits((float)mant * 0x1p-24f));
}

/*
 * binary32 -> binary16, round to nearest even; overflow gives infinity and
 * a NaN keeps the top of its payload, quieted (again as F16C does).
 */
static inline uint16_t mf_fp32_to_fp16(float f)
{
    uint32_t x = mf_f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u)
        return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    if (ax >= 0x477ff000u) /* 65520 and up round past 65504 */
        return sign | 0x7c00u;
    if (ax >= 0x38800000u) { /* normal binary16: rebias, round on the 13 bits dropped */
        uint32_t r = ax - 0x38000000u;
        r += 0xfffu + ((r >> 13) & 1u);
        return (uint16_t)(sign | (r >> 13));
    }
    /* Subnormal: adding 0.5 puts 2^-24 at the last bit; the FPU rounds to even. */
    float t = mf_bits_f32(ax) + 0.5f;
    return (uint16_t)(sign | (mf_f32_bits(t) - 0x3f000000u));
}

static inline float mf_bf16_to_fp32(uint16_t h)
{
    return mf_bits_f32((uint32_t)h << 16);
}

/* Round to nearest even; a NaN is kept and quieted (ggml's rule). */
static inline uint16_t mf_fp32_to_bf16(float f)
{
    uint32_t x = mf_f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40u);
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

/*
 * Round to nearest, ties to even, as ggml's nearest_int does with its
 * 1.5*2^23 trick; out-of-range values are clamped first so the trick stays
 * defined (callers clamp the result to a few bits anyway).
 */
static inline int mf_nearest_int(float v)
{
    if (!(v < 4194303.f))
        v = v != v ? 0.f : 4194303.f;
    if (v < -4194303.f)
        v = -4194303.f;
    float t = v + 12582912.f;
    return (int)(mf_f32_bits(t) & 0x007fffffu) - 0x00400000;
}

/* The 6-bit scale and min of sub-block j (0..7) from q4_K/q5_K's 12 bytes. */
static inline void mf_k4_scale_min(int j, const uint8_t *s, uint8_t *sc, uint8_t *m)
{
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (uint8_t)((s[j + 4] & 0xf) | ((s[j - 4] >> 6) << 4));
        *m = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

/* The signed scale of sub-block j (0..15) from q3_K's 12 bytes. */
static inline int mf_q3k_scale(int j, const uint8_t *s)
{
    int low = j < 8 ? s[j] & 0xf : s[j - 8] >> 4;
    int high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (low | (high << 4)) - 32;
}

#endif

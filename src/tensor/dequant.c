/*
 * Scalar dequantization: every quantized type memfit reads, block by block
 * into floats, following ggml's definitions (ggml-quants.c) so a GGUF row
 * decodes to the same values as in ggml. Element order within each block is
 * documented on the structs in blocks.h and in docs/quantization.md.
 */
#include "tensor/blocks.h"
#include "tensor/kernels.h"

static uint32_t load_u32le(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

void mf_dequant_q4_0(const void *src, float *dst, size_t n)
{
    const struct mf_block_q4_0 *b = src;
    for (size_t i = 0; i < n / MF_QK; i++, b++, dst += MF_QK) {
        float d = mf_fp16_to_fp32(b->d);
        for (int j = 0; j < MF_QK / 2; j++) {
            dst[j] = (float)((b->qs[j] & 0xf) - 8) * d;
            dst[j + MF_QK / 2] = (float)((b->qs[j] >> 4) - 8) * d;
        }
    }
}

void mf_dequant_q4_1(const void *src, float *dst, size_t n)
{
    const struct mf_block_q4_1 *b = src;
    for (size_t i = 0; i < n / MF_QK; i++, b++, dst += MF_QK) {
        float d = mf_fp16_to_fp32(b->d), m = mf_fp16_to_fp32(b->m);
        for (int j = 0; j < MF_QK / 2; j++) {
            dst[j] = (float)(b->qs[j] & 0xf) * d + m;
            dst[j + MF_QK / 2] = (float)(b->qs[j] >> 4) * d + m;
        }
    }
}

/* The 5-bit value of element j of a q5 block (0..31). */
static inline int q5_value(const uint8_t *qs, uint32_t qh, int j)
{
    int nib = j < MF_QK / 2 ? qs[j] & 0xf : qs[j - MF_QK / 2] >> 4;
    return nib | (int)(((qh >> j) & 1u) << 4);
}

void mf_dequant_q5_0(const void *src, float *dst, size_t n)
{
    const struct mf_block_q5_0 *b = src;
    for (size_t i = 0; i < n / MF_QK; i++, b++, dst += MF_QK) {
        float d = mf_fp16_to_fp32(b->d);
        uint32_t qh = load_u32le(b->qh);
        for (int j = 0; j < MF_QK; j++)
            dst[j] = (float)(q5_value(b->qs, qh, j) - 16) * d;
    }
}

void mf_dequant_q5_1(const void *src, float *dst, size_t n)
{
    const struct mf_block_q5_1 *b = src;
    for (size_t i = 0; i < n / MF_QK; i++, b++, dst += MF_QK) {
        float d = mf_fp16_to_fp32(b->d), m = mf_fp16_to_fp32(b->m);
        uint32_t qh = load_u32le(b->qh);
        for (int j = 0; j < MF_QK; j++)
            dst[j] = (float)q5_value(b->qs, qh, j) * d + m;
    }
}

void mf_dequant_q8_0(const void *src, float *dst, size_t n)
{
    const struct mf_block_q8_0 *b = src;
    for (size_t i = 0; i < n / MF_QK; i++, b++, dst += MF_QK) {
        float d = mf_fp16_to_fp32(b->d);
        for (int j = 0; j < MF_QK; j++)
            dst[j] = (float)b->qs[j] * d;
    }
}

/*
 * q2_K and q3_K share a walk: element e of the super-block takes 2 bits of
 * qs[32*(e/128) + e%32] at shift 2*((e%128)/32), and belongs to sub-block e/16.
 */
static inline int k2_low_bits(const uint8_t *qs, int e)
{
    return (qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
}

void mf_dequant_q2_k(const void *src, float *dst, size_t n)
{
    const struct mf_block_q2_k *b = src;
    for (size_t i = 0; i < n / MF_QK_K; i++, b++, dst += MF_QK_K) {
        float d = mf_fp16_to_fp32(b->d), dmin = mf_fp16_to_fp32(b->dmin);
        for (int e = 0; e < MF_QK_K; e++) {
            uint8_t sc = b->scales[e / 16];
            float dl = d * (float)(sc & 0xf), ml = dmin * (float)(sc >> 4);
            dst[e] = dl * (float)k2_low_bits(b->qs, e) - ml;
        }
    }
}

/* The signed 3-bit value of element e of a q3_K block (-4..3). */
static inline int q3k_value(const struct mf_block_q3_k *b, int e)
{
    /* The high-bit mask walks bits 0..7 over the eight 32-element groups. */
    int group = e / 32;
    int high = (b->hmask[e % 32] >> group) & 1;
    return k2_low_bits(b->qs, e) - (high ? 0 : 4);
}

void mf_dequant_q3_k(const void *src, float *dst, size_t n)
{
    const struct mf_block_q3_k *b = src;
    for (size_t i = 0; i < n / MF_QK_K; i++, b++, dst += MF_QK_K) {
        float d = mf_fp16_to_fp32(b->d);
        for (int e = 0; e < MF_QK_K; e++)
            dst[e] = d * (float)mf_q3k_scale(e / 16, b->scales) * (float)q3k_value(b, e);
    }
}

/* Element e of a q4_K/q5_K block: nibble of qs[32*(e/64) + e%32], high half for odd sub-blocks. */
static inline int k4_nibble(const uint8_t *qs, int e)
{
    uint8_t byte = qs[32 * (e / 64) + e % 32];
    return (e / 32) % 2 ? byte >> 4 : byte & 0xf;
}

/* q4_K and q5_K differ only in the fifth bit (qh, NULL for q4_K). */
static inline void k4_dequant(uint16_t d16, uint16_t dmin16, const uint8_t *scales,
                              const uint8_t *qs, const uint8_t *qh, float *dst)
{
    float d = mf_fp16_to_fp32(d16), dmin = mf_fp16_to_fp32(dmin16);
    for (int j = 0; j < MF_QK_K / 32; j++) {
        uint8_t sc, m;
        mf_k4_scale_min(j, scales, &sc, &m);
        float d1 = d * (float)sc, m1 = dmin * (float)m;
        for (int l = 0; l < 32; l++) {
            int q = k4_nibble(qs, 32 * j + l);
            if (qh)
                q += ((qh[l] >> j) & 1) << 4;
            dst[32 * j + l] = d1 * (float)q - m1;
        }
    }
}

void mf_dequant_q4_k(const void *src, float *dst, size_t n)
{
    const struct mf_block_q4_k *b = src;
    for (size_t i = 0; i < n / MF_QK_K; i++, b++, dst += MF_QK_K)
        k4_dequant(b->d, b->dmin, b->scales, b->qs, NULL, dst);
}

void mf_dequant_q5_k(const void *src, float *dst, size_t n)
{
    const struct mf_block_q5_k *b = src;
    for (size_t i = 0; i < n / MF_QK_K; i++, b++, dst += MF_QK_K)
        k4_dequant(b->d, b->dmin, b->scales, b->qs, b->qh, dst);
}

/*
 * Element e of a q6_K block (0..63, before the -32): in half h = e/128 with
 * r = e%128, l = r%32, quarter k = r/32: low nibble of ql[64h + l + 32*(k&1)]
 * (high nibble for k >= 2), high bits 2k..2k+1 of qh[32h + l].
 */
static inline int q6k_value(const struct mf_block_q6_k *b, int e)
{
    int h = e / 128, r = e % 128, l = r % 32, k = r / 32;
    uint8_t lowbyte = b->ql[64 * h + l + 32 * (k & 1)];
    int low = k >= 2 ? lowbyte >> 4 : lowbyte & 0xf;
    int high = (b->qh[32 * h + l] >> (2 * k)) & 3;
    return low | (high << 4);
}

void mf_dequant_q6_k(const void *src, float *dst, size_t n)
{
    const struct mf_block_q6_k *b = src;
    for (size_t i = 0; i < n / MF_QK_K; i++, b++, dst += MF_QK_K) {
        float d = mf_fp16_to_fp32(b->d);
        for (int e = 0; e < MF_QK_K; e++)
            dst[e] = d * (float)b->scales[e / 16] * (float)(q6k_value(b, e) - 32);
    }
}

void mf_dequant_q8_k(const void *src, float *dst, size_t n)
{
    const struct mf_block_q8_k *b = src;
    for (size_t i = 0; i < n / MF_QK_K; i++, b++, dst += MF_QK_K)
        for (int j = 0; j < MF_QK_K; j++)
            dst[j] = b->d * (float)b->qs[j];
}

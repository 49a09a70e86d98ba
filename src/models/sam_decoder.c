/*
 * SAM's prompt encoder and mask decoder (segment_anything/modeling/
 * prompt_encoder.py, mask_decoder.py, transformer.py): their loader, their
 * memory plan and the decode of many prompts against one image embedding.
 *
 * DESIGN. Prompts are independent, so they are decoded one per thread, each
 * in its own area of the caller's workspace; when there are fewer prompts
 * left than threads, each of those is decoded by all threads at once, split
 * by bands of image tokens. Either way every [G*G x C] product runs band by
 * band with the same bands and the same calls, so results do not depend on
 * the thread count or on the other prompts in the call. Layout (layout()
 * gives the plan its number, so the plan is exact by construction), with
 * N = G*G image tokens, C the decoder width, I = C/2 the cross-attention
 * width, T the most tokens a prompt can have, B = BAND rows:
 *   shared, written once per call before the prompts:
 *     pe     [N, C]  the dense positional encoding (depends on the model only)
 *     emb    [N, C]  the image embedding transposed to token rows
 *     k0, v0 [N, I]  layer 0's token-to-image K and V of emb + no_mask_embed,
 *                    shared by every prompt without a mask input
 *     up1t   [4 C/4, C], up2t [4 C/8, C/4]  the transposed convolutions'
 *                    weights as rows, ordered (dy, dx, out channel)
 *   per thread (times the pool's size):
 *     keys   [N, C]  the image side of the two-way transformer
 *     kv     [N, I] x 2  K and V of a token-to-image attention; before the
 *                    transformer, the mask-downscaling convolutions
 *     band   kpe [B, C], q [B, I], o [B, I], out [B, C]: one band of image
 *                    tokens through an image-to-token attention, or of the
 *                    K/V projections; later one band of the upscaling, U
 *                    input rows (U = max(1, B / G)): [2U, 2G, C/4] and
 *                    [4U, 4G, C/8] channels-last
 *     attn   memfit_attention's tiles
 *     tokens [T, C] x 8 (queries, their PE, sums, q/k/v, head outputs,
 *                    projections), hidden [T, max(mlp, iou hidden, C)],
 *                    hidden2 [max(iou hidden, C)], hyper [n_mask_tokens, C/8]
 * The low-res masks are written band by band straight into the caller's
 * output: the upscaled [C/8, 4G, 4G] image never exists whole.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "models/sam.h"

#define BAND     128 /* image-token rows per band: the unit of every [N x C] product */
#define ALIGN    64
#define TWO_PI_F 6.2831855f /* 2 * np.pi as the reference's float32 product sees it */
#define LN2D_EPS 1e-6f      /* LayerNorm2d in the mask downscaling and the upscaling */

struct layout {
    size_t N, G, C, I, C4, C8, S, T, hidden, hidden2, ub, n_bands, n_up_bands;
    size_t mic; /* mask_in_chans */
    /* Shared (byte offsets from the workspace's start). */
    size_t pe, emb, k0, v0, up1t, up2t, shared_bytes;
    /* Inside a thread's area (byte offsets). */
    size_t keys, ka, va, b_kpe, b_q, b_o, b_out, u1, u2, attn, attn_bytes;
    size_t t_q, t_qpe, t_sum, t_Q, t_K, t_V, t_O, t_out, t_hid, t_hid2, t_hyper;
    size_t thread_bytes, total;
};

static size_t align_up(size_t v)
{
    return (v + ALIGN - 1) / ALIGN * ALIGN;
}

static size_t max2(size_t a, size_t b)
{
    return a > b ? a : b;
}

static size_t attn_bytes(size_t n_k, size_t head_dim)
{
    return align_up(memfit_attention_work_bytes(n_k, head_dim));
}

static void layout(const struct memfit_sam *m, struct layout *L)
{
    const struct memfit_sam_info *in = &m->info;
    size_t f = sizeof(float);
    memset(L, 0, sizeof(*L));
    L->G = in->grid;
    L->N = L->G * L->G;
    L->C = in->prompt_dim;
    L->I = m->final_attn.inner;
    L->C4 = L->C / 4;
    L->C8 = L->C / 8;
    L->S = 4 * L->G;
    L->mic = m->mask_in_chans;
    L->T = 1 + (size_t)in->n_mask_tokens + MEMFIT_SAM_MAX_POINTS + 2;
    size_t iou_hidden = m->iou_head.l[0].w.rows;
    L->hidden2 = max2(iou_hidden, L->C);
    L->hidden = max2(in->decoder_mlp, L->hidden2);
    L->ub = max2(1, BAND / L->G);
    if (L->ub > L->G)
        L->ub = L->G;
    L->n_bands = (L->N + BAND - 1) / BAND;
    L->n_up_bands = (L->G + L->ub - 1) / L->ub;
    size_t N = L->N, C = L->C, I = L->I;

    size_t o = 0;
    L->pe = o, o += align_up(N * C * f);
    L->emb = o, o += align_up(N * C * f);
    L->k0 = o, o += align_up(N * I * f);
    L->v0 = o, o += align_up(N * I * f);
    L->up1t = o, o += align_up(C * C * f);
    L->up2t = o, o += align_up(4 * L->C8 * L->C4 * f);
    L->shared_bytes = o;

    /* The mask downscaling inside kv: im2col rows, then the convolution's
     * rows; the second stage reuses both areas. */
    size_t c1 = L->mic / 4;
    size_t dense_a = max2(4 * N * 4, N * c1 * 4), dense_b = max2(4 * N * c1, N * L->mic);
    size_t kv = max2(2 * align_up(N * I * f), align_up(dense_a * f) + align_up(dense_b * f));
    size_t band_tr = 2 * align_up(BAND * C * f) + 2 * align_up(BAND * I * f);
    size_t up_rows = L->ub * L->G; /* input pixels of one upscaling band */
    size_t band_up = align_up(up_rows * 4 * L->C4 * f) + align_up(up_rows * 16 * L->C8 * f);
    size_t hd_cross = I / in->decoder_heads,
           hd_self = m->dec_layers[0].self_attn.inner / in->decoder_heads;
    size_t t = 0;
    L->keys = t, t += align_up(N * C * f);
    L->ka = t, L->va = t + align_up(N * I * f), t += kv;
    L->b_kpe = t, L->u1 = t;
    L->b_q = t + align_up(BAND * C * f);
    L->b_o = L->b_q + align_up(BAND * I * f);
    L->b_out = L->b_o + align_up(BAND * I * f);
    L->u2 = t + align_up(up_rows * 4 * L->C4 * f);
    t += max2(band_tr, band_up);
    L->attn_bytes =
        max2(attn_bytes(N, hd_cross), max2(attn_bytes(L->T, hd_cross), attn_bytes(L->T, hd_self)));
    L->attn = t, t += L->attn_bytes;
    size_t tok = align_up(L->T * C * f);
    L->t_q = t, t += tok;
    L->t_qpe = t, t += tok;
    L->t_sum = t, t += tok;
    L->t_Q = t, t += tok;
    L->t_K = t, t += tok;
    L->t_V = t, t += tok;
    L->t_O = t, t += tok;
    L->t_out = t, t += tok;
    L->t_hid = t, t += align_up(L->T * L->hidden * f);
    L->t_hid2 = t, t += align_up(L->hidden2 * f);
    L->t_hyper = t, t += align_up((size_t)in->n_mask_tokens * L->C8 * f);
    L->thread_bytes = t;
    L->total = L->shared_bytes + t * memfit_threadpool_size(m->pool);
}

uint32_t memfit_sam_mask_count(bool multimask)
{
    return multimask ? 3 : 1;
}

enum memfit_status memfit_sam_decode_plan(const memfit_sam *m, size_t *out_bytes)
{
    if (!m || !out_bytes)
        return memfit_fail(MEMFIT_E_MISUSE, "sam: decode plan: NULL argument");
    struct layout L;
    layout(m, &L);
    *out_bytes = L.total;
    return MEMFIT_OK;
}

/* ---- Pieces ---------------------------------------------------------------- */

/* y[c*ldy + r] = W x_c + b for n rows x (ldx floats apart). */
static void linear(const struct sam_linear *l, const float *x, size_t ldx, size_t n, float *y,
                   size_t ldy)
{
    /* Shapes and types were checked at open: this cannot fail. */
    memfit_matmul_rows(l->w.type, l->w.data, l->w.row_bytes, l->w.cols, 0, l->w.rows, x,
                       ldx * sizeof(float), n, y, ldy);
    if (l->b)
        for (size_t c = 0; c < n; c++)
            for (size_t r = 0; r < l->w.rows; r++)
                y[c * ldy + r] += l->b[r];
}

static void relu(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = x[i] > 0 ? x[i] : 0;
}

static void add_bias_rows(float *x, size_t n_rows, const float *b, size_t d)
{
    for (size_t r = 0; r < n_rows; r++)
        for (size_t i = 0; i < d; i++)
            x[r * d + i] += b[i];
}

/* The random-Fourier encoding of a point in [0, 1]^2 (PositionEmbeddingRandom
 * ._pe_encoding): c' = 2c - 1, v = c' @ gauss, [sin 2 pi v, cos 2 pi v]. */
static void pe_encode(const float *gauss, size_t half, float x, float y, float *out)
{
    x = 2 * x - 1;
    y = 2 * y - 1;
    for (size_t j = 0; j < half; j++) {
        float v = TWO_PI_F * (x * gauss[j] + y * gauss[half + j]);
        out[j] = sinf(v);
        out[half + j] = cosf(v);
    }
}

/* One attention head's parameters over projected rows (ld = inner). */
static void head(const float *q, size_t ldq, const float *k, size_t ldk, const float *v, size_t ldv,
                 float *out, size_t ldo, size_t n_q, size_t n_k, size_t hd, void *work,
                 size_t work_bytes)
{
    struct memfit_attention a = {.q = q,
                                 .k = k,
                                 .v = v,
                                 .out = out,
                                 .ldq = ldq,
                                 .ldk = ldk,
                                 .ldv = ldv,
                                 .ldo = ldo,
                                 .n_q = n_q,
                                 .n_k = n_k,
                                 .head_dim = hd,
                                 .scale = 1.0f / sqrtf((float)hd)};
    /* Sizes come from the plan and the model: this cannot fail. */
    memfit_attention(&a, work, work_bytes);
}

/* ---- One call, one prompt ------------------------------------------------- */

struct call {
    struct memfit_sam *m;
    struct layout L;
    uint8_t *work;
    const float *embedding; /* the caller's [C, G, G] */
    float *pe, *emb, *k0, *v0, *up1t, *up2t;
    const struct memfit_sam_prompt *prompts;
    uint32_t n_out; /* masks per prompt */
    float *low_res, *iou;
};

/* One prompt in flight; the stage fields say what a band job does. */
struct run {
    const struct call *c;
    memfit_threadpool *pool; /* NULL: everything on thread `thread` */
    unsigned thread;         /* the area holding this prompt's buffers */
    size_t index, n_tok;
    float *keys, *ka, *va;
    float *q, *qpe, *sum, *tQ, *tK, *tV, *tO, *tout, *hid, *hid2, *hyper;
    /* Stage: the attention and norm in flight, K/V destinations, the keys
     * K/V are made of (NULL: emb + no_mask_embed, for k0/v0). */
    const struct sam_attention *att;
    const float *norm_w, *norm_b;
    const float *kv_keys;
    float *kout, *vout;
};

static uint8_t *area(const struct call *c, unsigned thread)
{
    return c->work + c->L.shared_bytes + (size_t)thread * c->L.thread_bytes;
}

static void dispatch(struct run *r, uint64_t n, memfit_parallel_fn fn)
{
    if (r->pool)
        memfit_threadpool_parallel_for(r->pool, n, fn, r);
    else
        fn(r, 0, n, r->thread);
}

static void band_span(const struct layout *L, uint64_t band, size_t *p0, size_t *n)
{
    *p0 = band * BAND;
    *n = L->N - *p0 < BAND ? L->N - *p0 : BAND;
}

/* K = k_proj(keys + pe), V = v_proj(keys) for a token-to-image attention. */
static void kv_band(void *ctx, uint64_t begin, uint64_t end, unsigned thread)
{
    struct run *r = ctx;
    const struct call *c = r->c;
    const struct layout *L = &c->L;
    uint8_t *a = area(c, thread);
    float *kpe = (float *)(a + L->b_kpe), *kb = (float *)(a + L->b_out);
    size_t C = L->C, I = r->att->inner;
    for (uint64_t b = begin; b < end; b++) {
        size_t p0, n;
        band_span(L, b, &p0, &n);
        const float *keys = r->kv_keys ? r->kv_keys + p0 * C : kb;
        if (!r->kv_keys)
            for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < C; j++)
                    kb[i * C + j] = c->emb[(p0 + i) * C + j] + c->m->no_mask[j];
        for (size_t i = 0; i < n * C; i++)
            kpe[i] = keys[i] + c->pe[p0 * C + i];
        linear(&r->att->k, kpe, C, n, r->kout + p0 * I, I);
        linear(&r->att->v, keys, C, n, r->vout + p0 * I, I);
    }
}

/* Token-to-image attention heads over all N keys: tO from tQ, ka, va. */
static void t2i_heads(void *ctx, uint64_t begin, uint64_t end, unsigned thread)
{
    struct run *r = ctx;
    const struct layout *L = &r->c->L;
    size_t I = r->att->inner, hd = I / r->c->m->info.decoder_heads;
    for (uint64_t h = begin; h < end; h++)
        head(r->tQ + h * hd, I, r->ka + h * hd, I, r->va + h * hd, I, r->tO + h * hd, I, r->n_tok,
             L->N, hd, area(r->c, thread) + L->attn, L->attn_bytes);
}

/* Image-to-token attention for bands of image tokens (tK, tV made from the
 * tokens): keys += out_proj(attn(q_proj(keys + pe))), then norm4. */
static void i2t_band(void *ctx, uint64_t begin, uint64_t end, unsigned thread)
{
    struct run *r = ctx;
    const struct call *c = r->c;
    const struct layout *L = &c->L;
    uint8_t *a = area(c, thread);
    float *kpe = (float *)(a + L->b_kpe), *qb = (float *)(a + L->b_q);
    float *ob = (float *)(a + L->b_o), *out = (float *)(a + L->b_out);
    size_t C = L->C, I = r->att->inner, hd = I / c->m->info.decoder_heads;
    for (uint64_t b = begin; b < end; b++) {
        size_t p0, n;
        band_span(L, b, &p0, &n);
        float *keys = r->keys + p0 * C;
        for (size_t i = 0; i < n * C; i++)
            kpe[i] = keys[i] + c->pe[p0 * C + i];
        linear(&r->att->q, kpe, C, n, qb, I);
        for (size_t h = 0; h < c->m->info.decoder_heads; h++)
            head(qb + h * hd, I, r->tK + h * hd, I, r->tV + h * hd, I, ob + h * hd, I, n, r->n_tok,
                 hd, a + L->attn, L->attn_bytes);
        linear(&r->att->out, ob, I, n, out, C);
        for (size_t i = 0; i < n * C; i++)
            keys[i] += out[i];
        memfit_layer_norm(keys, C, keys, C, n, C, r->norm_w, r->norm_b, c->m->dec_eps);
    }
}

/* keys = emb (+ the dense embedding already in keys, or + no_mask_embed). */
static void keys_band(void *ctx, uint64_t begin, uint64_t end, unsigned thread)
{
    struct run *r = ctx;
    const struct call *c = r->c;
    size_t C = c->L.C;
    bool dense = c->prompts[r->index].mask_input != NULL;
    (void)thread;
    for (uint64_t b = begin; b < end; b++) {
        size_t p0, n;
        band_span(&c->L, b, &p0, &n);
        float *k = r->keys + p0 * C;
        const float *e = c->emb + p0 * C;
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < C; j++)
                k[i * C + j] =
                    dense ? e[i * C + j] + k[i * C + j] : e[i * C + j] + c->m->no_mask[j];
    }
}

/*
 * Upscaling and masks for bands of ub input rows: ConvTranspose (k = s = 2)
 * as products with the transposed weights, one input row and one dy at a
 * time so the output lands channels-last in raster order; LayerNorm2d, GELU,
 * the second ConvTranspose, GELU; then masks = hyper @ upscaled for the
 * band's 4 * ub output rows, straight into low_res.
 */
static void up_band(void *ctx, uint64_t begin, uint64_t end, unsigned thread)
{
    struct run *r = ctx;
    const struct call *c = r->c;
    const struct memfit_sam *m = c->m;
    const struct layout *L = &c->L;
    uint8_t *a = area(c, thread);
    float *u1 = (float *)(a + L->u1), *u2 = (float *)(a + L->u2);
    size_t G = L->G, C = L->C, C4 = L->C4, C8 = L->C8, S = L->S, f = sizeof(float);
    float *masks = c->low_res + r->index * c->n_out * S * S;
    for (uint64_t b = begin; b < end; b++) {
        size_t y0 = b * L->ub, rows = G - y0 < L->ub ? G - y0 : L->ub;
        for (size_t y = 0; y < rows; y++)
            for (size_t dy = 0; dy < 2; dy++)
                memfit_matmul_rows(MEMFIT_TYPE_F32, c->up1t + dy * 2 * C4 * C, C * f, C, 0, 2 * C4,
                                   r->keys + (y0 + y) * G * C, C * f, G,
                                   u1 + (2 * y + dy) * 2 * G * C4, 2 * C4);
        size_t n1 = 4 * rows * G; /* pixels of the first upscaling */
        add_bias_rows(u1, n1, m->up1_b, C4);
        memfit_layer_norm(u1, C4, u1, C4, n1, C4, m->up_ln_w, m->up_ln_b, LN2D_EPS);
        memfit_gelu(u1, n1 * C4);
        for (size_t y = 0; y < 2 * rows; y++)
            for (size_t dy = 0; dy < 2; dy++)
                memfit_matmul_rows(MEMFIT_TYPE_F32, c->up2t + dy * 2 * C8 * C4, C4 * f, C4, 0,
                                   2 * C8, u1 + y * 2 * G * C4, C4 * f, 2 * G,
                                   u2 + (2 * y + dy) * 4 * G * C8, 2 * C8);
        size_t n2 = 16 * rows * G;
        add_bias_rows(u2, n2, m->up2_b, C8);
        memfit_gelu(u2, n2 * C8);
        memfit_matmul_rows(MEMFIT_TYPE_F32, u2, C8 * f, C8, 0, n2, r->hyper, C8 * f, c->n_out,
                           masks + 4 * y0 * S, S * S);
    }
}

/* The reference's MLP of three layers (ReLU after the first two) on one vector. */
static void mlp3(const struct sam_mlp3 *p, const float *x, float *h1, float *h2, float *out)
{
    linear(&p->l[0], x, 0, 1, h1, 0);
    relu(h1, p->l[0].w.rows);
    linear(&p->l[1], h1, 0, 1, h2, 0);
    relu(h2, p->l[1].w.rows);
    linear(&p->l[2], h2, 0, 1, out, 0);
}

/* An attention among tokens: out = out_proj(attn(q_proj(qin), k_proj(kin), v_proj(vin))). */
static void token_attention(struct run *r, const struct sam_attention *att, const float *qin,
                            const float *kin, const float *vin, float *out)
{
    const struct layout *L = &r->c->L;
    size_t C = L->C, I = att->inner, T = r->n_tok, hd = I / r->c->m->info.decoder_heads;
    uint8_t *a = area(r->c, r->thread);
    linear(&att->q, qin, C, T, r->tQ, I);
    linear(&att->k, kin, C, T, r->tK, I);
    linear(&att->v, vin, C, T, r->tV, I);
    for (size_t h = 0; h < r->c->m->info.decoder_heads; h++)
        head(r->tQ + h * hd, I, r->tK + h * hd, I, r->tV + h * hd, I, r->tO + h * hd, I, T, T, hd,
             a + L->attn, L->attn_bytes);
    linear(&att->out, r->tO, I, T, out, C);
}

static void add_rows(float *dst, const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = a[i] + b[i];
}

/* Queries attend to the image: queries += out_proj(attn(queries + qpe, keys
 * + pe, keys)), then the norm. K/V come from kout/vout (made already when
 * shared). */
static void token_to_image(struct run *r, const struct sam_attention *att, const float *norm_w,
                           const float *norm_b, float eps)
{
    const struct layout *L = &r->c->L;
    size_t C = L->C, T = r->n_tok;
    r->att = att;
    add_rows(r->sum, r->q, r->qpe, T * C);
    linear(&att->q, r->sum, C, T, r->tQ, att->inner);
    dispatch(r, r->c->m->info.decoder_heads, t2i_heads);
    linear(&att->out, r->tO, att->inner, T, r->tout, C);
    for (size_t i = 0; i < T * C; i++)
        r->q[i] += r->tout[i];
    memfit_layer_norm(r->q, C, r->q, C, T, C, norm_w, norm_b, eps);
}

/* The sparse embedding of prompt p into `out` (rows of C); returns the rows. */
static size_t sparse_embed(const struct memfit_sam *m, const struct memfit_sam_prompt *p,
                           float *out)
{
    size_t C = m->info.prompt_dim, half = C / 2, n = 0;
    float size = (float)m->info.image_size;
    for (size_t i = 0; i <= p->n_points; i++) {
        float *e = out + n * C;
        int32_t label;
        if (i < p->n_points) {
            label = p->labels[i];
        } else if (!p->has_box) {
            label = -1; /* the padding point */
        } else {
            break;
        }
        n++;
        if (label == -1) {
            memcpy(e, m->not_a_point, C * sizeof(float));
            continue;
        }
        pe_encode(m->pe_gauss, half, (p->points[2 * i] + 0.5f) / size,
                  (p->points[2 * i + 1] + 0.5f) / size, e);
        for (size_t j = 0; j < C; j++)
            e[j] += m->point_emb[label][j];
    }
    if (p->has_box)
        for (size_t k = 0; k < 2; k++, n++) {
            float *e = out + n * C;
            pe_encode(m->pe_gauss, half, (p->box[2 * k] + 0.5f) / size,
                      (p->box[2 * k + 1] + 0.5f) / size, e);
            for (size_t j = 0; j < C; j++)
                e[j] += m->point_emb[2 + k][j];
        }
    return n;
}

/* mask_downscaling of the prompt's mask input into keys (as token rows):
 * Conv(1 -> mic/4, k2 s2), LN2d, GELU, Conv(-> mic, k2 s2), LN2d, GELU,
 * Conv(-> C, k1). Runs on one thread: its products are small. */
static void dense_embed(struct run *r)
{
    const struct call *c = r->c;
    const struct memfit_sam *m = c->m;
    const struct layout *L = &c->L;
    size_t G = L->G, C = L->C, mic = L->mic, c1 = mic / 4, f = sizeof(float);
    size_t dense_a = max2(4 * L->N * 4, L->N * c1 * 4);
    float *col = r->ka, *conv = r->ka + align_up(dense_a * f) / f;
    const float *mask = c->prompts[r->index].mask_input;
    memfit_im2col(mask, L->S, L->S, 1, 2, 2, 2, 0, 0, 4 * L->N, col);
    memfit_matmul_rows(MEMFIT_TYPE_F32, m->md_conv1_w, 4 * f, 4, 0, c1, col, 4 * f, 4 * L->N, conv,
                       c1);
    add_bias_rows(conv, 4 * L->N, m->md_conv1_b, c1);
    memfit_layer_norm(conv, c1, conv, c1, 4 * L->N, c1, m->md_ln1_w, m->md_ln1_b, LN2D_EPS);
    memfit_gelu(conv, 4 * L->N * c1);
    memfit_im2col(conv, 2 * G, 2 * G, c1, 2, 2, 2, 0, 0, L->N, col);
    memfit_matmul_rows(MEMFIT_TYPE_F32, m->md_conv2_w, c1 * 4 * f, c1 * 4, 0, mic, col, c1 * 4 * f,
                       L->N, conv, mic);
    add_bias_rows(conv, L->N, m->md_conv2_b, mic);
    memfit_layer_norm(conv, mic, conv, mic, L->N, mic, m->md_ln2_w, m->md_ln2_b, LN2D_EPS);
    memfit_gelu(conv, L->N * mic);
    memfit_matmul_rows(MEMFIT_TYPE_F32, m->md_conv3_w, mic * f, mic, 0, C, conv, mic * f, L->N,
                       r->keys, C);
    add_bias_rows(r->keys, L->N, m->md_conv3_b, C);
}

static void decode_prompt(struct run *r)
{
    const struct call *c = r->c;
    const struct memfit_sam *m = c->m;
    const struct layout *L = &c->L;
    const struct memfit_sam_prompt *p = &c->prompts[r->index];
    size_t C = L->C, nmt = m->info.n_mask_tokens;
    uint8_t *a = area(c, r->thread);
    r->keys = (float *)(a + L->keys);
    r->ka = (float *)(a + L->ka);
    r->va = (float *)(a + L->va);
    r->q = (float *)(a + L->t_q);
    r->qpe = (float *)(a + L->t_qpe);
    r->sum = (float *)(a + L->t_sum);
    r->tQ = (float *)(a + L->t_Q);
    r->tK = (float *)(a + L->t_K);
    r->tV = (float *)(a + L->t_V);
    r->tO = (float *)(a + L->t_O);
    r->tout = (float *)(a + L->t_out);
    r->hid = (float *)(a + L->t_hid);
    r->hid2 = (float *)(a + L->t_hid2);
    r->hyper = (float *)(a + L->t_hyper);

    /* tokens = [iou_token, mask_tokens, sparse]; the transformer's query PE
     * is always these original tokens. */
    memcpy(r->q, m->iou_token, C * sizeof(float));
    memcpy(r->q + C, m->mask_tokens, nmt * C * sizeof(float));
    r->n_tok = 1 + nmt + sparse_embed(m, p, r->q + (1 + nmt) * C);
    size_t T = r->n_tok;
    memcpy(r->qpe, r->q, T * C * sizeof(float));

    if (p->mask_input)
        dense_embed(r);
    dispatch(r, L->n_bands, keys_band);

    for (uint32_t l = 0; l < m->info.decoder_depth; l++) {
        const struct sam_dec_layer *d = &m->dec_layers[l];
        if (l == 0) { /* skip_first_layer_pe: the self-attention replaces the queries */
            token_attention(r, &d->self_attn, r->q, r->q, r->q, r->tout);
            memcpy(r->q, r->tout, T * C * sizeof(float));
        } else {
            add_rows(r->sum, r->q, r->qpe, T * C);
            token_attention(r, &d->self_attn, r->sum, r->sum, r->q, r->tout);
            for (size_t i = 0; i < T * C; i++)
                r->q[i] += r->tout[i];
        }
        memfit_layer_norm(r->q, C, r->q, C, T, C, d->norm1_w, d->norm1_b, m->dec_eps);

        if (l == 0 && !p->mask_input) {
            r->ka = c->k0, r->va = c->v0;
        } else {
            r->att = &d->cross_t2i, r->kv_keys = r->keys, r->kout = r->ka, r->vout = r->va;
            dispatch(r, L->n_bands, kv_band);
        }
        token_to_image(r, &d->cross_t2i, d->norm2_w, d->norm2_b, m->dec_eps);
        r->ka = (float *)(a + L->ka), r->va = (float *)(a + L->va);

        linear(&d->mlp1, r->q, C, T, r->hid, d->mlp1.w.rows);
        relu(r->hid, T * d->mlp1.w.rows);
        linear(&d->mlp2, r->hid, d->mlp1.w.rows, T, r->tout, C);
        for (size_t i = 0; i < T * C; i++)
            r->q[i] += r->tout[i];
        memfit_layer_norm(r->q, C, r->q, C, T, C, d->norm3_w, d->norm3_b, m->dec_eps);

        /* The image attends to the tokens: K from queries + qpe, V from queries. */
        add_rows(r->sum, r->q, r->qpe, T * C);
        linear(&d->cross_i2t.k, r->sum, C, T, r->tK, d->cross_i2t.inner);
        linear(&d->cross_i2t.v, r->q, C, T, r->tV, d->cross_i2t.inner);
        r->att = &d->cross_i2t, r->norm_w = d->norm4_w, r->norm_b = d->norm4_b;
        dispatch(r, L->n_bands, i2t_band);
    }
    r->att = &m->final_attn, r->kv_keys = r->keys, r->kout = r->ka, r->vout = r->va;
    dispatch(r, L->n_bands, kv_band);
    token_to_image(r, &m->final_attn, m->norm_final_w, m->norm_final_b, 1e-5f);

    /* Hypernetworks of the masks returned (tokens 1..3 with multimask, else 0). */
    uint32_t first = c->n_out == 1 ? 0 : 1;
    for (uint32_t k = 0; k < c->n_out; k++)
        mlp3(&m->hyper[first + k], r->q + (1 + first + k) * C, r->hid, r->hid2,
             r->hyper + k * L->C8);
    dispatch(r, L->n_up_bands, up_band);

    mlp3(&m->iou_head, r->q, r->hid, r->hid2, r->tout);
    for (uint32_t k = 0; k < c->n_out; k++)
        c->iou[r->index * c->n_out + k] = r->tout[first + k];
}

/* ---- The call -------------------------------------------------------------- */

static void pe_rows(void *ctx, uint64_t begin, uint64_t end, unsigned thread)
{
    struct call *c = ctx;
    size_t G = c->L.G, C = c->L.C;
    (void)thread;
    for (uint64_t i = begin; i < end; i++)
        for (size_t j = 0; j < G; j++)
            pe_encode(c->m->pe_gauss, C / 2, ((float)j + 0.5f) / (float)G,
                      ((float)i + 0.5f) / (float)G, c->pe + (i * G + j) * C);
}

/* The embedding [C, N] to token rows [N, C], 64 tokens a job. */
static void emb_rows(void *ctx, uint64_t begin, uint64_t end, unsigned thread)
{
    struct call *c = ctx;
    size_t N = c->L.N, C = c->L.C;
    (void)thread;
    for (uint64_t b = begin; b < end; b++) {
        size_t p0 = b * 64, p1 = p0 + 64 < N ? p0 + 64 : N;
        for (size_t ch = 0; ch < C; ch++)
            for (size_t p = p0; p < p1; p++)
                c->emb[p * C + ch] = c->embedding[ch * N + p];
    }
}

/* ConvTranspose [in, out, 2, 2] to rows ((dy * 2 + dx) * out + o) of `in`. */
static void transpose_convt(const float *w, size_t in, size_t out, float *rows)
{
    for (size_t i = 0; i < in; i++)
        for (size_t o = 0; o < out; o++)
            for (size_t k = 0; k < 4; k++)
                rows[(k * out + o) * in + i] = w[(i * out + o) * 4 + k];
}

static void outer_prompts(void *ctx, uint64_t begin, uint64_t end, unsigned thread)
{
    const struct call *c = ctx;
    for (uint64_t i = begin; i < end; i++) {
        struct run r = {.c = c, .pool = NULL, .thread = thread, .index = i};
        decode_prompt(&r);
    }
}

static enum memfit_status check_prompt(const struct memfit_sam_prompt *p, size_t i)
{
    if (p->n_points > 0 && (!p->points || !p->labels))
        return memfit_fail(MEMFIT_E_MISUSE, "sam: prompt %zu: %zu points without %s", i,
                           p->n_points, p->points ? "labels" : "coordinates");
    if (p->n_points == 0 && !p->has_box)
        return memfit_fail(MEMFIT_E_RANGE, "sam: prompt %zu has no point and no box", i);
    if (p->n_points > MEMFIT_SAM_MAX_POINTS)
        return memfit_fail(MEMFIT_E_RANGE, "sam: prompt %zu has %zu points (limit %d)", i,
                           p->n_points, MEMFIT_SAM_MAX_POINTS);
    for (size_t j = 0; j < p->n_points; j++) {
        if (p->labels[j] < -1 || p->labels[j] > 1)
            return memfit_fail(MEMFIT_E_RANGE,
                               "sam: prompt %zu: point %zu has label %d (expected -1, 0 or 1)", i,
                               j, (int)p->labels[j]);
        if (!isfinite(p->points[2 * j]) || !isfinite(p->points[2 * j + 1]))
            return memfit_fail(MEMFIT_E_RANGE, "sam: prompt %zu: point %zu is (%g, %g)", i, j,
                               (double)p->points[2 * j], (double)p->points[2 * j + 1]);
    }
    if (p->has_box)
        for (size_t k = 0; k < 4; k++)
            if (!isfinite(p->box[k]))
                return memfit_fail(MEMFIT_E_RANGE, "sam: prompt %zu: box coordinate %zu is %g", i,
                                   k, (double)p->box[k]);
    return MEMFIT_OK;
}

enum memfit_status memfit_sam_decode(memfit_sam *m, const float *embedding,
                                     const struct memfit_sam_prompt *prompts, size_t n,
                                     bool multimask, void *work, size_t work_bytes, float *low_res,
                                     float *iou)
{
    if (!m || (n > 0 && (!embedding || !prompts || !work || !low_res || !iou)))
        return memfit_fail(MEMFIT_E_MISUSE, "sam: decode: NULL argument");
    for (size_t i = 0; i < n; i++) {
        enum memfit_status st = check_prompt(&prompts[i], i);
        if (st != MEMFIT_OK)
            return st;
    }
    if (n == 0)
        return MEMFIT_OK;
    struct call c = {.m = m,
                     .work = work,
                     .embedding = embedding,
                     .prompts = prompts,
                     .n_out = memfit_sam_mask_count(multimask),
                     .low_res = low_res,
                     .iou = iou};
    layout(m, &c.L);
    if (work_bytes < c.L.total)
        return memfit_fail(MEMFIT_E_MISUSE,
                           "sam: decode workspace of %zu bytes, memfit_sam_decode_plan says %zu",
                           work_bytes, c.L.total);
    if ((uintptr_t)work % ALIGN != 0)
        return memfit_fail(MEMFIT_E_MISUSE, "sam: decode workspace not %d-byte aligned", ALIGN);
    const struct layout *L = &c.L;
    c.pe = (float *)(c.work + L->pe);
    c.emb = (float *)(c.work + L->emb);
    c.k0 = (float *)(c.work + L->k0);
    c.v0 = (float *)(c.work + L->v0);
    c.up1t = (float *)(c.work + L->up1t);
    c.up2t = (float *)(c.work + L->up2t);

    memfit_threadpool_parallel_for(m->pool, L->G, pe_rows, &c);
    memfit_threadpool_parallel_for(m->pool, (L->N + 63) / 64, emb_rows, &c);
    transpose_convt(m->up1_w, L->C, L->C4, c.up1t);
    transpose_convt(m->up2_w, L->C4, L->C8, c.up2t);
    bool shared_kv = false;
    for (size_t i = 0; i < n; i++)
        shared_kv |= prompts[i].mask_input == NULL;
    if (shared_kv) {
        struct run r = {.c = &c,
                        .pool = m->pool,
                        .att = &m->dec_layers[0].cross_t2i,
                        .kv_keys = NULL,
                        .kout = c.k0,
                        .vout = c.v0};
        dispatch(&r, L->n_bands, kv_band);
    }

    /* Whole rounds of one prompt per thread, then the rest one at a time
     * with every thread on it. */
    unsigned n_threads = memfit_threadpool_size(m->pool);
    size_t n_outer = n - n % n_threads;
    if (n_outer > 0)
        memfit_threadpool_parallel_for(m->pool, n_outer, outer_prompts, &c);
    for (size_t i = n_outer; i < n; i++) {
        struct run r = {.c = &c, .pool = m->pool, .thread = 0, .index = i};
        decode_prompt(&r);
    }
    return MEMFIT_OK;
}

/* ---- Loader ------------------------------------------------------------------ */

/* The first dimension of a tensor under either name (0 when neither exists:
 * the load that follows names the missing tensor). */
static uint32_t leading_dim(const struct memfit_sam *m, const char *orig, const char *hf)
{
    struct memfit_tensor_info ti;
    if (!m->set)
        return 0;
    if (memfit_tensors_find(m->set, orig, &ti, NULL) == MEMFIT_OK ||
        memfit_tensors_find(m->set, hf, &ti, NULL) == MEMFIT_OK) {
        memfit_clear_error();
        return ti.n_dims > 0 && ti.shape[0] > 0 && ti.shape[0] <= UINT32_MAX ? (uint32_t)ti.shape[0]
                                                                             : 0;
    }
    memfit_clear_error();
    return 0;
}

static enum memfit_status load_linear(struct sam_loader *ld, const char *prefix, uint64_t rows,
                                      uint64_t cols, struct sam_linear *out)
{
    char name[192];
    snprintf(name, sizeof(name), "%s.weight", prefix);
    enum memfit_status st = mf_sam_mat(ld, name, rows, cols, &out->w);
    if (st != MEMFIT_OK)
        return st;
    snprintf(name, sizeof(name), "%s.bias", prefix);
    return mf_sam_vec(ld, name, rows, &out->b);
}

/* weight and bias of n floats each (norms, convolutions as flat vectors). */
static enum memfit_status load_pair(struct sam_loader *ld, const char *prefix, uint64_t n_w,
                                    uint64_t n_b, const float **w, const float **b)
{
    char name[192];
    snprintf(name, sizeof(name), "%s.weight", prefix);
    enum memfit_status st = mf_sam_vec(ld, name, n_w, w);
    if (st != MEMFIT_OK)
        return st;
    snprintf(name, sizeof(name), "%s.bias", prefix);
    return mf_sam_vec(ld, name, n_b, b);
}

static enum memfit_status load_attention(struct sam_loader *ld, const char *prefix, uint32_t dim,
                                         uint32_t inner, struct sam_attention *att)
{
    static const char *const proj[3] = {"q_proj", "k_proj", "v_proj"};
    struct sam_linear *qkv[3] = {&att->q, &att->k, &att->v};
    char name[160];
    att->inner = inner;
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof(name), "%s.%s", prefix, proj[i]);
        enum memfit_status st = load_linear(ld, name, inner, dim, qkv[i]);
        if (st != MEMFIT_OK)
            return st;
    }
    snprintf(name, sizeof(name), "%s.out_proj", prefix);
    return load_linear(ld, name, dim, inner, &att->out);
}

static enum memfit_status load_mlp3(struct sam_loader *ld, const char *prefix, uint32_t in,
                                    uint32_t hidden, uint32_t out, struct sam_mlp3 *p)
{
    uint32_t rows[3] = {hidden, hidden, out}, cols[3] = {in, hidden, hidden};
    char name[160];
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof(name), "%s.layers.%d", prefix, i);
        enum memfit_status st = load_linear(ld, name, rows[i], cols[i], &p->l[i]);
        if (st != MEMFIT_OK)
            return st;
    }
    return MEMFIT_OK;
}

static enum memfit_status load_prompt_encoder(struct sam_loader *ld, struct memfit_sam *m)
{
    uint32_t C = m->info.prompt_dim, mic = m->mask_in_chans, c1 = mic / 4;
    enum memfit_status st = mf_sam_vec(
        ld, "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix", C, &m->pe_gauss);
    char name[96];
    for (int i = 0; i < 4 && st == MEMFIT_OK; i++) {
        snprintf(name, sizeof(name), "prompt_encoder.point_embeddings.%d.weight", i);
        st = mf_sam_vec(ld, name, C, &m->point_emb[i]);
    }
    if (st == MEMFIT_OK)
        st = mf_sam_vec(ld, "prompt_encoder.not_a_point_embed.weight", C, &m->not_a_point);
    if (st == MEMFIT_OK)
        st = mf_sam_vec(ld, "prompt_encoder.no_mask_embed.weight", C, &m->no_mask);
    if (st == MEMFIT_OK)
        st = load_pair(ld, "prompt_encoder.mask_downscaling.0", (uint64_t)c1 * 4, c1,
                       &m->md_conv1_w, &m->md_conv1_b);
    if (st == MEMFIT_OK)
        st = load_pair(ld, "prompt_encoder.mask_downscaling.1", c1, c1, &m->md_ln1_w, &m->md_ln1_b);
    if (st == MEMFIT_OK)
        st = load_pair(ld, "prompt_encoder.mask_downscaling.3", (uint64_t)mic * c1 * 4, mic,
                       &m->md_conv2_w, &m->md_conv2_b);
    if (st == MEMFIT_OK)
        st = load_pair(ld, "prompt_encoder.mask_downscaling.4", mic, mic, &m->md_ln2_w,
                       &m->md_ln2_b);
    if (st == MEMFIT_OK)
        st = load_pair(ld, "prompt_encoder.mask_downscaling.6", (uint64_t)C * mic, C,
                       &m->md_conv3_w, &m->md_conv3_b);
    return st;
}

static enum memfit_status load_two_way(struct sam_loader *ld, struct memfit_sam *m)
{
    const struct memfit_sam_info *in = &m->info;
    uint32_t C = in->prompt_dim;
    char pre[128], name[160];
    for (uint32_t l = 0; l < in->decoder_depth; l++) {
        struct sam_dec_layer *d = &m->dec_layers[l];
        snprintf(pre, sizeof(pre), "mask_decoder.transformer.layers.%u", l);
        struct {
            const char *sub;
            struct sam_attention *att;
            uint32_t inner;
        } atts[3] = {{"self_attn", &d->self_attn, C},
                     {"cross_attn_token_to_image", &d->cross_t2i, C / 2},
                     {"cross_attn_image_to_token", &d->cross_i2t, C / 2}};
        for (int i = 0; i < 3; i++) {
            snprintf(name, sizeof(name), "%s.%s", pre, atts[i].sub);
            enum memfit_status st = load_attention(ld, name, C, atts[i].inner, atts[i].att);
            if (st != MEMFIT_OK)
                return st;
        }
        const float **norms[4][2] = {{&d->norm1_w, &d->norm1_b},
                                     {&d->norm2_w, &d->norm2_b},
                                     {&d->norm3_w, &d->norm3_b},
                                     {&d->norm4_w, &d->norm4_b}};
        for (int i = 0; i < 4; i++) {
            snprintf(name, sizeof(name), "%s.norm%d", pre, i + 1);
            enum memfit_status st = load_pair(ld, name, C, C, norms[i][0], norms[i][1]);
            if (st != MEMFIT_OK)
                return st;
        }
        snprintf(name, sizeof(name), "%s.mlp.lin1", pre);
        enum memfit_status st = load_linear(ld, name, in->decoder_mlp, C, &d->mlp1);
        if (st != MEMFIT_OK)
            return st;
        snprintf(name, sizeof(name), "%s.mlp.lin2", pre);
        st = load_linear(ld, name, C, in->decoder_mlp, &d->mlp2);
        if (st != MEMFIT_OK)
            return st;
    }
    enum memfit_status st = load_attention(ld, "mask_decoder.transformer.final_attn_token_to_image",
                                           C, C / 2, &m->final_attn);
    if (st == MEMFIT_OK)
        st = load_pair(ld, "mask_decoder.transformer.norm_final_attn", C, C, &m->norm_final_w,
                       &m->norm_final_b);
    return st;
}

static enum memfit_status load_heads(struct sam_loader *ld, struct memfit_sam *m,
                                     uint32_t iou_hidden)
{
    const struct memfit_sam_info *in = &m->info;
    uint32_t C = in->prompt_dim, C4 = C / 4, C8 = C / 8;
    enum memfit_status st = mf_sam_vec(ld, "mask_decoder.iou_token.weight", C, &m->iou_token);
    if (st == MEMFIT_OK)
        st = mf_sam_vec(ld, "mask_decoder.mask_tokens.weight", (uint64_t)in->n_mask_tokens * C,
                        &m->mask_tokens);
    if (st == MEMFIT_OK)
        st = load_pair(ld, "mask_decoder.output_upscaling.0", (uint64_t)C * C4 * 4, C4, &m->up1_w,
                       &m->up1_b);
    if (st == MEMFIT_OK)
        st = load_pair(ld, "mask_decoder.output_upscaling.1", C4, C4, &m->up_ln_w, &m->up_ln_b);
    if (st == MEMFIT_OK)
        st = load_pair(ld, "mask_decoder.output_upscaling.3", (uint64_t)C4 * C8 * 4, C8, &m->up2_w,
                       &m->up2_b);
    char name[96];
    for (uint32_t k = 0; k < in->n_mask_tokens && st == MEMFIT_OK; k++) {
        snprintf(name, sizeof(name), "mask_decoder.output_hypernetworks_mlps.%u", k);
        st = load_mlp3(ld, name, C, C, C8, &m->hyper[k]);
    }
    if (st == MEMFIT_OK)
        st = load_mlp3(ld, "mask_decoder.iou_prediction_head", C, iou_hidden, in->n_mask_tokens,
                       &m->iou_head);
    return st;
}

enum memfit_status mf_sam_load_decoder(struct sam_loader *ld, struct memfit_sam *m)
{
    struct memfit_sam_info *in = &m->info;
    if (in->decoder_heads == 0)
        in->decoder_heads = 8;
    if (m->dec_eps == 0)
        m->dec_eps = 1e-5f;
    uint32_t C = in->prompt_dim, H = in->decoder_heads;
    if (C == 0 || C > 65536 || C % 8 != 0 || C % (2 * H) != 0)
        return memfit_fail(MEMFIT_E_FORMAT,
                           "sam: prompt dimension %u: expected a multiple of 8 and of twice the "
                           "%u decoder heads",
                           C, H);
    if (in->n_mask_tokens != 4)
        return memfit_fail(MEMFIT_E_FORMAT,
                           "sam: mask_decoder.mask_tokens.weight has %u tokens (expected 4: one "
                           "single-mask output and 3 multimask)",
                           in->n_mask_tokens);
    if (in->decoder_depth == 0 || in->decoder_depth > 64 || in->decoder_mlp == 0 ||
        in->decoder_mlp > (1u << 20))
        return memfit_fail(MEMFIT_E_FORMAT,
                           "sam: two-way transformer of %u layers, MLP %u: out of range (1..64, "
                           "1..1048576)",
                           in->decoder_depth, in->decoder_mlp);
    if (in->grid == 0 || in->grid > 1024)
        return memfit_fail(MEMFIT_E_FORMAT, "sam: token grid %u out of range (1..1024)", in->grid);
    in->mask_size = 4 * in->grid;
    uint32_t mic = leading_dim(m, "prompt_encoder.mask_downscaling.3.weight",
                               "prompt_encoder.mask_embed.conv2.weight");
    m->mask_in_chans = mic > 0 && mic % 4 == 0 && mic <= 4096 ? mic : 16;
    uint32_t iou_hidden = leading_dim(m, "mask_decoder.iou_prediction_head.layers.0.weight",
                                      "mask_decoder.iou_prediction_head.proj_in.weight");
    if (iou_hidden == 0 || iou_hidden > 65536)
        iou_hidden = C;

    /* The loader runs twice (counting, then converting): allocate once. */
    if (!m->dec_layers)
        m->dec_layers =
            memfit_calloc_in(MEMFIT_ALLOC_MODEL, in->decoder_depth, sizeof(*m->dec_layers));
    if (!m->hyper)
        m->hyper = memfit_calloc_in(MEMFIT_ALLOC_MODEL, in->n_mask_tokens, sizeof(*m->hyper));
    if (!m->dec_layers || !m->hyper)
        return memfit_fail(MEMFIT_E_NOMEM, "sam: decoder layers");
    enum memfit_status st = load_prompt_encoder(ld, m);
    if (st == MEMFIT_OK)
        st = load_two_way(ld, m);
    if (st == MEMFIT_OK)
        st = load_heads(ld, m, iou_hidden);
    return st;
}

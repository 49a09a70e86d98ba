/*
 * DINOv2 forward pass and its memory plan.
 *
 * DESIGN. All activations live in one caller-provided workspace laid out by
 * layout() — the same function gives memfit_vit_plan() its number, so the
 * plan is exact by construction. With BT = batch x tokens:
 *   x    [BT, D]   the residual stream
 *   xn   [BT, D]   LayerNorm output; later the attention output; later fc2's
 *   big  [BT, max(3D, H')]  q|k|v rows, then proj's output, then the MLP
 *                  hidden rows (H' = H, or 2H for SwiGLU); before the first
 *                  block it holds the interpolated position embedding, the
 *                  interpolation taps and one image's gathered patches
 *   per thread: memfit_attention's work area (its tiles and V transposed,
 *               memfit_attention_work_bytes(T, head_dim))
 * Attention is memfit_attention (src/tensor/nn.c): tiled over key blocks
 * with an online softmax (flash attention), so nothing is N x N: memory is
 * linear in tokens.
 *
 * Work is split across the model's thread pool by rows (matmul output rows,
 * token rows, (image, head, query block) items); kernels take no locks.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "models/vit.h"
#include "tensor/kernels.h"

#define QB      64 /* attention query rows per work item */
#define MM_UNIT 24 /* matmul rows per work item (a multiple of the 3-row tile) */
#define ALIGN   64

struct layout {
    uint32_t batch, height, width, h0, w0, n_patch, n_tok;
    size_t bt;                                       /* batch x tokens */
    size_t big_cols;                                 /* floats per token row of `big` */
    size_t n_taps;                                   /* interpolation taps per output sample */
    size_t x, xn, big, threads, thread_bytes, total; /* byte offsets and sizes */
    /* Inside `big` during the embedding (float offsets). */
    size_t pos_out, tmp, taps_y_idx, taps_y_w, taps_x_idx, taps_x_w, gather;
};

static size_t align_up(size_t v)
{
    return (v + ALIGN - 1) / ALIGN * ALIGN;
}

static size_t interp_taps(uint32_t in, uint32_t out, enum memfit_vit_interpolation mode)
{
    if (mode != MEMFIT_VIT_INTERP_REG)
        return 4;
    double scale = (double)in / out;
    double support = scale >= 1 ? 2 * scale : 2;
    return (size_t)ceil(2 * support) + 2;
}

static enum memfit_status layout(const struct memfit_vit *m, uint32_t batch, uint32_t height,
                                 uint32_t width, struct layout *L)
{
    const struct memfit_vit_info *in = &m->info;
    uint32_t P = in->patch_size;
    if (batch == 0)
        return memfit_fail(MEMFIT_E_RANGE, "vit: batch of 0 images");
    if (height == 0 || width == 0 || height % P != 0 || width % P != 0)
        return memfit_fail(MEMFIT_E_RANGE,
                           "vit: image size %ux%u: each side must be a positive multiple of the "
                           "patch size %u",
                           width, height, P);
    if (height > 16384 || width > 16384 || batch > 65536)
        return memfit_fail(MEMFIT_E_RANGE,
                           "vit: %u images of %ux%u: too large (limit 16384 a "
                           "side, 65536 images)",
                           batch, width, height);
    memset(L, 0, sizeof(*L));
    L->batch = batch;
    L->height = height;
    L->width = width;
    L->h0 = height / P;
    L->w0 = width / P;
    L->n_patch = L->h0 * L->w0;
    L->n_tok = 1 + in->n_registers + L->n_patch;
    size_t D = in->dim, G = in->pos_grid, K = 3 * (size_t)P * P;
    L->bt = (size_t)batch * L->n_tok;
    size_t hidden_cols = in->swiglu ? 2 * (size_t)in->mlp_hidden : in->mlp_hidden;
    L->big_cols = 3 * D > hidden_cols ? 3 * D : hidden_cols;
    enum memfit_vit_interpolation mode = in->interpolation;
    L->n_taps = interp_taps(G, L->h0, mode);
    size_t tx = interp_taps(G, L->w0, mode);
    if (tx > L->n_taps)
        L->n_taps = tx;
    /* The embedding phase inside `big` (floats; int32 taps take a float each). */
    size_t f = 0;
    L->pos_out = f, f += ((size_t)L->n_patch + 1) * D;
    L->tmp = f, f += G * L->w0 * D;
    L->taps_y_idx = f, f += L->h0 * L->n_taps;
    L->taps_y_w = f, f += L->h0 * L->n_taps;
    L->taps_x_idx = f, f += L->w0 * L->n_taps;
    L->taps_x_w = f, f += L->w0 * L->n_taps;
    L->gather = f, f += (size_t)L->n_patch * K;
    size_t big_floats = L->bt * L->big_cols;
    if (f > big_floats)
        big_floats = f;
    /* Per thread: the attention's tiles and V transposed. */
    size_t t = align_up(memfit_attention_work_bytes(L->n_tok, in->head_dim));
    L->thread_bytes = t;
    size_t o = 0;
    L->x = o, o += align_up(L->bt * D * sizeof(float));
    L->xn = o, o += align_up(L->bt * D * sizeof(float));
    L->big = o, o += align_up(big_floats * sizeof(float));
    L->threads = o, o += t * memfit_threadpool_size(m->pool);
    L->total = o;
    return MEMFIT_OK;
}

enum memfit_status memfit_vit_plan(const memfit_vit *m, uint32_t batch, uint32_t height,
                                   uint32_t width, size_t *out_bytes)
{
    struct layout L = {0};
    enum memfit_status st = layout(m, batch, height, width, &L);
    if (st == MEMFIT_OK)
        *out_bytes = L.total;
    return st;
}

enum memfit_status memfit_vit_output_floats(const memfit_vit *m, enum memfit_vit_output output,
                                            uint32_t height, uint32_t width, size_t *out_floats)
{
    struct layout L = {0};
    enum memfit_status st = layout(m, 1, height, width, &L);
    if (st != MEMFIT_OK)
        return st;
    size_t D = m->info.dim;
    switch (output) {
    case MEMFIT_VIT_OUTPUT_CLS:
    case MEMFIT_VIT_OUTPUT_MEAN:
        *out_floats = D;
        return MEMFIT_OK;
    case MEMFIT_VIT_OUTPUT_BOTH:
        *out_floats = 2 * D;
        return MEMFIT_OK;
    case MEMFIT_VIT_OUTPUT_PATCHES:
        *out_floats = (size_t)L.n_patch * D;
        return MEMFIT_OK;
    }
    return memfit_fail(MEMFIT_E_RANGE, "vit: output kind %d out of range", (int)output);
}

/* ---- Parallel jobs ---------------------------------------------------------- */

struct fwd {
    struct memfit_vit *m;
    const struct layout *L;
    uint8_t *work;
    float *x, *xn, *big;
};

struct ln_job {
    const float *src;
    float *dst;
    const float *w, *b;
    size_t D, ld_src, ld_dst;
    float eps;
};

static void ln_run(void *ctx, uint64_t begin, uint64_t end, unsigned thread)
{
    const struct ln_job *j = ctx;
    memfit_layer_norm(j->src + begin * j->ld_src, j->ld_src, j->dst + begin * j->ld_dst, j->ld_dst,
                      end - begin, j->D, j->w, j->b, j->eps);
}

struct mm_job {
    const struct vit_mat *w;
    const float *act;
    size_t act_stride, n_cols, ldy;
    float *y;
    const float *bias;
};

static void mm_run(void *ctx, uint64_t begin, uint64_t end, unsigned thread)
{
    const struct mm_job *j = ctx;
    uint64_t r0 = begin * MM_UNIT, r1 = end * MM_UNIT;
    if (r1 > j->w->rows)
        r1 = j->w->rows;
    /* Shapes and types were checked at open: this cannot fail. */
    memfit_matmul_rows(j->w->type, j->w->data, j->w->row_bytes, j->w->cols, r0, r1, j->act,
                       j->act_stride, j->n_cols, j->y, j->ldy);
    if (j->bias)
        for (size_t c = 0; c < j->n_cols; c++) {
            float *y = j->y + c * j->ldy;
            for (uint64_t r = r0; r < r1; r++)
                y[r] += j->bias[r];
        }
}

/* y[c*ldy + r] = W x_c + bias for the n_cols float rows x (stride ldx floats). */
static void linear(struct fwd *f, const struct vit_mat *w, const float *x, size_t ldx,
                   size_t n_cols, float *y, size_t ldy, const float *bias)
{
    struct mm_job j = {.w = w,
                       .act = x,
                       .act_stride = ldx * sizeof(float),
                       .n_cols = n_cols,
                       .ldy = ldy,
                       .y = y,
                       .bias = bias};
    memfit_threadpool_parallel_for(f->m->pool, (w->rows + MM_UNIT - 1) / MM_UNIT, mm_run, &j);
}

struct attn_job {
    const struct layout *L;
    const float *qkv; /* [BT, 3D] */
    float *out;       /* [BT, D] */
    size_t D, hd, heads, n_qb;
    float scale;
    uint8_t *threads;
};

/* Items are (image, head, query block); a thread's consecutive items of one
 * (image, head) go to memfit_attention as one call, so V is transposed once
 * per head a thread touches. */
static void attn_run(void *ctx, uint64_t begin, uint64_t end, unsigned thread)
{
    const struct attn_job *j = ctx;
    const struct layout *L = j->L;
    void *work = j->threads + (size_t)thread * L->thread_bytes;
    size_t T = L->n_tok, D = j->D, hd = j->hd, ld = L->big_cols; /* q|k|v rows in `big` */
    for (uint64_t item = begin; item < end;) {
        size_t bh = item / j->n_qb, qb0 = item % j->n_qb;
        uint64_t stop = (bh + 1) * j->n_qb < end ? (bh + 1) * j->n_qb : end;
        size_t qb1 = qb0 + (size_t)(stop - item);
        size_t h = bh % j->heads, b = bh / j->heads;
        size_t q0 = qb0 * QB, q1 = qb1 * QB < T ? qb1 * QB : T;
        const float *img = j->qkv + b * T * ld;
        struct memfit_attention a = {.q = img + q0 * ld + h * hd,
                                     .k = img + D + h * hd,
                                     .v = img + 2 * D + h * hd,
                                     .out = j->out + (b * T + q0) * D + h * hd,
                                     .ldq = ld,
                                     .ldk = ld,
                                     .ldv = ld,
                                     .ldo = D,
                                     .n_q = q1 - q0,
                                     .n_k = T,
                                     .head_dim = hd,
                                     .scale = j->scale};
        /* The plan sized and aligned `work` for this call: it cannot fail. */
        memfit_attention(&a, work, L->thread_bytes);
        item = stop;
    }
}

struct res_job {
    float *x;
    const float *y, *ls;
    size_t D, ldy;
};

static void res_run(void *ctx, uint64_t begin, uint64_t end, unsigned thread)
{
    const struct res_job *j = ctx;
    for (uint64_t r = begin; r < end; r++) {
        float *x = j->x + r * j->D;
        const float *y = j->y + r * j->ldy;
        for (size_t i = 0; i < j->D; i++)
            x[i] += j->ls[i] * y[i];
    }
}

struct act_job {
    float *h;
    size_t n, ld;
    bool swiglu;
};

static void act_run(void *ctx, uint64_t begin, uint64_t end, unsigned thread)
{
    const struct act_job *j = ctx;
    for (uint64_t r = begin; r < end; r++) {
        float *h = j->h + r * j->ld;
        if (j->swiglu)
            mf_swiglu(h, h + j->n, j->n);
        else
            memfit_gelu(h, j->n);
    }
}

/* ---- Position embedding ------------------------------------------------------ */

static inline float cubic1(float x, float A)
{
    return ((A + 2) * x - (A + 3)) * x * x + 1;
}

static inline float cubic2(float x, float A)
{
    return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
}

/* PyTorch's AA kernel: the cubic with a = -0.5 on |x| < 2. */
static inline float aa_cubic(float x)
{
    const float a = -0.5f;
    x = fabsf(x);
    if (x < 1)
        return cubic1(x, a);
    if (x < 2)
        return cubic2(x, a);
    return 0;
}

/* Sampling taps of one axis (ATen UpSample.h / UpSampleKernel.cpp maths). */
static void axis_taps(uint32_t in, uint32_t out, enum memfit_vit_interpolation mode, size_t n_taps,
                      int32_t *idx, float *w)
{
    for (uint32_t o = 0; o < out; o++) {
        int32_t *ii = idx + o * n_taps;
        float *ww = w + o * n_taps;
        for (size_t k = 0; k < n_taps; k++)
            ii[k] = 0, ww[k] = 0;
        if (mode == MEMFIT_VIT_INTERP_REG) {
            float scale = (float)in / (float)out;
            float support = scale >= 1 ? 2 * scale : 2;
            float center = scale * ((float)o + 0.5f);
            float invscale = scale >= 1 ? 1 / scale : 1;
            int64_t xmin = (int64_t)(center - support + 0.5f);
            if (xmin < 0)
                xmin = 0;
            int64_t xmax = (int64_t)(center + support + 0.5f);
            if (xmax > in)
                xmax = in;
            int64_t size = xmax - xmin;
            if (size > (int64_t)n_taps)
                size = (int64_t)n_taps;
            float total = 0;
            for (int64_t k = 0; k < size; k++) {
                ww[k] = aa_cubic(((float)(k + xmin) - center + 0.5f) * invscale);
                ii[k] = (int32_t)(xmin + k);
                total += ww[k];
            }
            for (int64_t k = 0; k < size && total != 0; k++)
                ww[k] /= total;
        } else {
            const float A = -0.75f;
            float scale = mode == MEMFIT_VIT_INTERP_ORIG
                              ? (float)(1.0 / (((double)out + 0.1) / (double)in))
                              : (float)in / (float)out;
            float src = scale * ((float)o + 0.5f) - 0.5f;
            float fl = floorf(src);
            float t = src - fl;
            int64_t i0 = (int64_t)fl;
            float wt[4] = {cubic2(t + 1, A), cubic1(t, A), cubic1(1 - t, A), cubic2(2 - t, A)};
            for (int k = 0; k < 4; k++) {
                int64_t i = i0 - 1 + k;
                ii[k] = (int32_t)(i < 0 ? 0 : i >= in ? in - 1 : i);
                ww[k] = wt[k];
            }
        }
    }
}

/* The position embedding for an h0 x w0 grid: [1 + N, D], CLS first. */
static const float *position_embedding(struct fwd *f)
{
    const struct memfit_vit *m = f->m;
    const struct layout *L = f->L;
    size_t D = m->info.dim, G = m->info.pos_grid, T = L->n_taps;
    if (L->h0 == G && L->w0 == G)
        return m->pos;
    float *out = f->big + L->pos_out, *tmp = f->big + L->tmp;
    int32_t *iy = (int32_t *)(f->big + L->taps_y_idx), *ix = (int32_t *)(f->big + L->taps_x_idx);
    float *wy = f->big + L->taps_y_w, *wx = f->big + L->taps_x_w;
    axis_taps((uint32_t)G, L->h0, m->info.interpolation, T, iy, wy);
    axis_taps((uint32_t)G, L->w0, m->info.interpolation, T, ix, wx);
    const float *grid = m->pos + D;
    /* Along x: tmp[gy][ox] = sum_k wx * grid[gy][ix]. */
    for (size_t gy = 0; gy < G; gy++)
        for (size_t ox = 0; ox < L->w0; ox++) {
            float *t = tmp + (gy * L->w0 + ox) * D;
            memset(t, 0, D * sizeof(float));
            for (size_t k = 0; k < T; k++) {
                float w = wx[ox * T + k];
                if (w == 0)
                    continue;
                const float *g = grid + (gy * G + (size_t)ix[ox * T + k]) * D;
                for (size_t d = 0; d < D; d++)
                    t[d] += w * g[d];
            }
        }
    memcpy(out, m->pos, D * sizeof(float));
    /* Along y: out[oy][ox] = sum_k wy * tmp[iy][ox]. */
    for (size_t oy = 0; oy < L->h0; oy++)
        for (size_t ox = 0; ox < L->w0; ox++) {
            float *o = out + (1 + oy * L->w0 + ox) * D;
            memset(o, 0, D * sizeof(float));
            for (size_t k = 0; k < T; k++) {
                float w = wy[oy * T + k];
                if (w == 0)
                    continue;
                const float *t = tmp + ((size_t)iy[oy * T + k] * L->w0 + ox) * D;
                for (size_t d = 0; d < D; d++)
                    o[d] += w * t[d];
            }
        }
    return out;
}

/* Token rows of every image: [CLS + pos0, registers, patches + pos]. */
static void embed(struct fwd *f, const float *pixels)
{
    const struct memfit_vit *m = f->m;
    const struct layout *L = f->L;
    size_t D = m->info.dim, P = m->info.patch_size, R = m->info.n_registers;
    size_t K = 3 * P * P, H = L->height, W = L->width, T = L->n_tok;
    const float *pos = position_embedding(f);
    float *gather = f->big + L->gather;
    for (size_t b = 0; b < L->batch; b++) {
        const float *img = pixels + b * 3 * H * W;
        for (size_t py = 0; py < L->h0; py++)
            for (size_t px = 0; px < L->w0; px++) {
                float *g = gather + (py * L->w0 + px) * K;
                for (size_t c = 0; c < 3; c++)
                    for (size_t ky = 0; ky < P; ky++)
                        memcpy(g + (c * P + ky) * P, img + c * H * W + (py * P + ky) * W + px * P,
                               P * sizeof(float));
            }
        float *xb = f->x + b * T * D;
        linear(f, &m->patch, gather, K, L->n_patch, xb + (1 + R) * D, D, m->patch_b);
        for (size_t p = 0; p < L->n_patch; p++)
            for (size_t d = 0; d < D; d++)
                xb[(1 + R + p) * D + d] += pos[(1 + p) * D + d];
        for (size_t d = 0; d < D; d++)
            xb[d] = m->cls[d] + pos[d];
        if (R)
            memcpy(xb + D, m->reg, R * D * sizeof(float));
    }
}

static void block(struct fwd *f, const struct vit_layer *ly, struct attn_job *aj)
{
    const struct memfit_vit *m = f->m;
    const struct layout *L = f->L;
    size_t D = m->info.dim, BT = L->bt, C = L->big_cols;
    float eps = m->info.layer_norm_eps;
    struct ln_job ln = {.src = f->x,
                        .dst = f->xn,
                        .w = ly->norm1_w,
                        .b = ly->norm1_b,
                        .D = D,
                        .ld_src = D,
                        .ld_dst = D,
                        .eps = eps};
    memfit_threadpool_parallel_for(m->pool, BT, ln_run, &ln);
    /* q | k | v into big rows of 3D (stride C). */
    if (ly->n_qkv == 1) {
        linear(f, &ly->qkv[0], f->xn, D, BT, f->big, C, ly->qkv_b[0]);
    } else {
        for (int i = 0; i < 3; i++)
            linear(f, &ly->qkv[i], f->xn, D, BT, f->big + (size_t)i * D, C, ly->qkv_b[i]);
    }
    /* Attention output into xn. */
    aj->qkv = f->big;
    aj->out = f->xn;
    memfit_threadpool_parallel_for(m->pool, L->batch * aj->heads * aj->n_qb, attn_run, aj);
    /* proj into big (stride D), then x += ls1 * that. */
    linear(f, &ly->proj, f->xn, D, BT, f->big, D, ly->proj_b);
    struct res_job res = {.x = f->x, .y = f->big, .ls = ly->ls1, .D = D, .ldy = D};
    memfit_threadpool_parallel_for(m->pool, BT, res_run, &res);
    ln.w = ly->norm2_w;
    ln.b = ly->norm2_b;
    memfit_threadpool_parallel_for(m->pool, BT, ln_run, &ln);
    size_t H = m->info.mlp_hidden, hc = m->info.swiglu ? 2 * H : H;
    linear(f, &ly->fc1, f->xn, D, BT, f->big, hc, ly->fc1_b);
    struct act_job act = {.h = f->big, .n = H, .ld = hc, .swiglu = m->info.swiglu};
    memfit_threadpool_parallel_for(m->pool, BT, act_run, &act);
    linear(f, &ly->fc2, f->big, hc, BT, f->xn, D, ly->fc2_b);
    res.y = f->xn;
    res.ls = ly->ls2;
    memfit_threadpool_parallel_for(m->pool, BT, res_run, &res);
}

static void l2_normalize(float *v, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)v[i] * v[i];
    if (s > 0) {
        float inv = (float)(1.0 / sqrt(s));
        for (size_t i = 0; i < n; i++)
            v[i] *= inv;
    }
}

enum memfit_status memfit_vit_forward(memfit_vit *m, const float *pixels, uint32_t batch,
                                      uint32_t height, uint32_t width,
                                      enum memfit_vit_output output, bool normalize, void *work,
                                      size_t work_bytes, float *out, size_t out_floats)
{
    struct layout L = {0};
    enum memfit_status st = layout(m, batch, height, width, &L);
    if (st != MEMFIT_OK)
        return st;
    size_t per_image = 0;
    if ((st = memfit_vit_output_floats(m, output, height, width, &per_image)) != MEMFIT_OK)
        return st;
    if (!pixels || !out || !work)
        return memfit_fail(MEMFIT_E_MISUSE, "vit: NULL pixels, workspace or output");
    if (work_bytes < L.total || ((uintptr_t)work % ALIGN) != 0)
        return memfit_fail(MEMFIT_E_MISUSE,
                           "vit: workspace of %zu bytes at %p; %zu bytes aligned to %d needed",
                           work_bytes, work, L.total, ALIGN);
    if (out_floats < per_image * batch)
        return memfit_fail(MEMFIT_E_MISUSE, "vit: output of %zu floats, %zu needed", out_floats,
                           per_image * batch);
    struct fwd f = {.m = m, .L = &L, .work = work};
    f.x = (float *)(f.work + L.x);
    f.xn = (float *)(f.work + L.xn);
    f.big = (float *)(f.work + L.big);
    embed(&f, pixels);
    /* The attention job lives on the stack: no allocation in the forward. */
    struct attn_job aj;
    aj.L = &L;
    aj.D = m->info.dim;
    aj.hd = m->info.head_dim;
    aj.heads = m->info.heads;
    aj.n_qb = (L.n_tok + QB - 1) / QB;
    aj.scale = 1.0f / sqrtf((float)m->info.head_dim);
    aj.threads = f.work + L.threads;
    for (uint32_t l = 0; l < m->info.depth; l++)
        block(&f, &m->layers[l], &aj);
    size_t D = m->info.dim, T = L.n_tok, R = m->info.n_registers;
    struct ln_job ln = {.src = f.x,
                        .dst = f.xn,
                        .w = m->norm_w,
                        .b = m->norm_b,
                        .D = D,
                        .ld_src = D,
                        .ld_dst = D,
                        .eps = m->info.layer_norm_eps};
    memfit_threadpool_parallel_for(m->pool, L.bt, ln_run, &ln);
    for (size_t b = 0; b < batch; b++) {
        const float *xb = f.xn + b * T * D;
        float *o = out + b * per_image;
        if (output == MEMFIT_VIT_OUTPUT_PATCHES) {
            memcpy(o, xb + (1 + R) * D, (size_t)L.n_patch * D * sizeof(float));
            if (normalize)
                for (size_t p = 0; p < L.n_patch; p++)
                    l2_normalize(o + p * D, D);
            continue;
        }
        float *mean = o;
        if (output != MEMFIT_VIT_OUTPUT_MEAN) {
            memcpy(o, xb, D * sizeof(float));
            mean = o + D;
        }
        if (output != MEMFIT_VIT_OUTPUT_CLS) {
            for (size_t d = 0; d < D; d++) {
                double s = 0;
                for (size_t p = 0; p < L.n_patch; p++)
                    s += xb[(1 + R + p) * D + d];
                mean[d] = (float)(s / L.n_patch);
            }
        }
        if (normalize)
            l2_normalize(o, per_image);
    }
    return MEMFIT_OK;
}

/*
 * SAM's image encoder and its memory plan.
 *
 * DESIGN. All activations live in one caller-provided workspace laid out by
 * layout(), which also gives memfit_sam_encode_plan() its number: the plan
 * is exact by construction. With T = G * G tokens and Tw = Gp * Gp the
 * token count of the padded window grid (Gp: G rounded up to the window):
 *   x    [T, max(D, C)]    the residual stream; at the end the neck's output
 *   xn   [max(T, Tw), max(D, C)]  LayerNorm output (in window order for a
 *                          windowed block, its padding rows zero), then the
 *                          attention output, then the MLP output
 *   big  [max(T, Tw) * 3D, T * H, T * 9C, T * 3P^2 floats]  q|k|v rows, then
 *                          proj's output, then the MLP hidden rows; before
 *                          the blocks the gathered patches, in the neck the
 *                          3x3 convolution's im2col rows
 *   per thread: memfit_attention's tiles, the relative-position terms of
 *               its queries of one head (2 x tokens x S floats) and one
 *               product of them (S x S)
 * Attention is memfit_attention (tiled, online softmax): nothing is T x T,
 * so a global block at 64 x 64 tokens costs its tiles, not 12 x 4096^2
 * scores.
 *
 * A windowed block works in window order: token (y, x) of the padded grid
 * is row ((y / S) * (Gp / S) + x / S) * S^2 + (y % S) * S + x % S. The
 * padding is zero after norm1 and, as in the reference, not masked: its
 * keys and values are the projections' biases. Work is split across the
 * model's thread pool by rows and by (window, head, query block) items.
 */
#include <math.h>
#include <string.h>

#include "models/sam.h"

#define QB      64 /* queries per attention item */
#define MM_UNIT 24 /* matmul rows per work item */
#define ALIGN   64

struct layout {
    size_t T, Tw, Tmax, G, Gp, S, nws; /* nws: windows per side */
    size_t ldx;                        /* floats per row of x and xn: max(D, C) */
    size_t x, xn, big, threads, thread_bytes, total;
    size_t t_attn, t_rel, t_tmp, attn_bytes, n_k_max, s_max;
};

static size_t align_up(size_t v)
{
    return (v + ALIGN - 1) / ALIGN * ALIGN;
}

static size_t max2(size_t a, size_t b)
{
    return a > b ? a : b;
}

static void layout(const struct memfit_sam *m, struct layout *L)
{
    const struct memfit_sam_info *in = &m->info;
    size_t D = in->dim, C = in->prompt_dim, H = in->mlp_hidden, P = in->patch_size;
    memset(L, 0, sizeof(*L));
    L->G = in->grid;
    L->T = L->G * L->G;
    L->S = in->window ? in->window : in->grid;
    L->Gp = (L->G + L->S - 1) / L->S * L->S;
    L->nws = L->Gp / L->S;
    L->Tw = in->window ? L->Gp * L->Gp : L->T;
    L->Tmax = max2(L->T, L->Tw);
    L->ldx = max2(D, C);
    size_t big = max2(max2(L->Tmax * 3 * D, L->T * H), max2(L->T * 9 * C, L->T * 3 * P * P));
    L->n_k_max = in->n_global ? L->T : 0;
    L->n_k_max = max2(L->n_k_max, in->window ? L->S * L->S : 0);
    L->s_max = max2(in->n_global ? L->G : 0, in->window ? L->S : 0);
    L->attn_bytes = memfit_attention_work_bytes(L->n_k_max, in->head_dim);
    size_t t = 0;
    L->t_attn = t, t += align_up(L->attn_bytes);
    L->t_rel = t, t += align_up(2 * L->n_k_max * L->s_max * sizeof(float));
    L->t_tmp = t, t += align_up(L->s_max * L->s_max * sizeof(float));
    L->thread_bytes = t;
    size_t o = 0;
    L->x = o, o += align_up(L->T * L->ldx * sizeof(float));
    L->xn = o, o += align_up(L->Tmax * L->ldx * sizeof(float));
    L->big = o, o += align_up(big * sizeof(float));
    L->threads = o, o += t * memfit_threadpool_size(m->pool);
    L->total = o;
}

enum memfit_status memfit_sam_encode_plan(const memfit_sam *m, size_t *out_bytes)
{
    struct layout L;
    layout(m, &L);
    *out_bytes = L.total;
    return MEMFIT_OK;
}

/* ---- Parallel jobs ---------------------------------------------------------------------- */

struct enc {
    struct memfit_sam *m;
    const struct layout *L;
    uint8_t *work;
    float *x, *xn, *big;
};

/* The row of token t (of the G x G grid) in window order. */
static size_t win_row(const struct layout *L, size_t t)
{
    size_t y = t / L->G, x = t % L->G, S = L->S;
    return ((y / S) * L->nws + x / S) * S * S + (y % S) * S + x % S;
}

struct ln_job {
    const struct layout *L;
    const float *src;
    float *dst;
    const float *w, *b;
    size_t d, ld_src, ld_dst;
    float eps;
    bool windowed; /* destination rows in window order */
};

static void ln_run(void *ctx, uint64_t begin, uint64_t end, unsigned thread)
{
    (void)thread;
    const struct ln_job *j = ctx;
    for (uint64_t t = begin; t < end; t++) {
        size_t r = j->windowed ? win_row(j->L, t) : t;
        memfit_layer_norm(j->src + t * j->ld_src, j->ld_src, j->dst + r * j->ld_dst, j->ld_dst, 1,
                          j->d, j->w, j->b, j->eps);
    }
}

static void layer_norm(struct enc *e, const float *src, size_t ld_src, float *dst, size_t ld_dst,
                       size_t n, size_t d, const float *w, const float *b, bool windowed)
{
    struct ln_job j = {.L = e->L,
                       .src = src,
                       .dst = dst,
                       .w = w,
                       .b = b,
                       .d = d,
                       .ld_src = ld_src,
                       .ld_dst = ld_dst,
                       .eps = e->m->enc_eps,
                       .windowed = windowed};
    memfit_threadpool_parallel_for(e->m->pool, n, ln_run, &j);
}

struct mm_job {
    const struct vit_mat *w;
    const float *bias;
    const float *act;
    size_t ld_act, n_cols, ldy;
    float *y;
};

static void mm_run(void *ctx, uint64_t begin, uint64_t end, unsigned thread)
{
    (void)thread;
    const struct mm_job *j = ctx;
    uint64_t r0 = begin * MM_UNIT, r1 = end * MM_UNIT;
    if (r1 > j->w->rows)
        r1 = j->w->rows;
    /* Shapes and types were checked at open: this cannot fail. */
    memfit_matmul_rows(j->w->type, j->w->data, j->w->row_bytes, j->w->cols, r0, r1, j->act,
                       j->ld_act * sizeof(float), j->n_cols, j->y, j->ldy);
    if (j->bias)
        for (size_t c = 0; c < j->n_cols; c++) {
            float *y = j->y + c * j->ldy;
            for (uint64_t r = r0; r < r1; r++)
                y[r] += j->bias[r];
        }
}

/* y[c * ldy + r] = W x_c + b for n_cols rows x (ld_act floats apart). */
static void linear(struct enc *e, const struct vit_mat *w, const float *bias, const float *act,
                   size_t ld_act, size_t n_cols, float *y, size_t ldy)
{
    struct mm_job j = {
        .w = w, .bias = bias, .act = act, .ld_act = ld_act, .n_cols = n_cols, .ldy = ldy, .y = y};
    memfit_threadpool_parallel_for(e->m->pool, (w->rows + MM_UNIT - 1) / MM_UNIT, mm_run, &j);
}

struct gelu_job {
    float *h;
    size_t n, ld;
};

static void gelu_run(void *ctx, uint64_t begin, uint64_t end, unsigned thread)
{
    (void)thread;
    const struct gelu_job *j = ctx;
    for (uint64_t r = begin; r < end; r++)
        memfit_gelu(j->h + r * j->ld, j->n);
}

struct res_job {
    const struct layout *L;
    float *x;
    const float *y;
    size_t d, ldx, ldy;
    bool windowed; /* y rows in window order */
};

static void res_run(void *ctx, uint64_t begin, uint64_t end, unsigned thread)
{
    (void)thread;
    const struct res_job *j = ctx;
    for (uint64_t t = begin; t < end; t++) {
        float *x = j->x + t * j->ldx;
        const float *y = j->y + (j->windowed ? win_row(j->L, t) : t) * j->ldy;
        for (size_t i = 0; i < j->d; i++)
            x[i] += y[i];
    }
}

static void residual(struct enc *e, const float *y, size_t ldy, bool windowed)
{
    struct res_job j = {.L = e->L,
                        .x = e->x,
                        .y = y,
                        .d = e->m->info.dim,
                        .ldx = e->L->ldx,
                        .ldy = ldy,
                        .windowed = windowed};
    memfit_threadpool_parallel_for(e->m->pool, e->L->T, res_run, &j);
}

/* ---- Attention -------------------------------------------------------------------------- */

struct attn_job {
    const struct layout *L;
    const struct sam_enc_layer *ly;
    const float *qkv; /* rows of 3D */
    float *out;       /* rows of ldx */
    size_t D, hd, heads, n_qb, grid, n_tok;
    float scale;
    uint8_t *threads;
};

/*
 * The decomposed relative-position terms of queries [q0, q0 + n) of a
 * grid x grid window (unscaled q):
 *   rh[i][kh] = q_i . rel_pos_h[qh - kh + grid - 1], rw[i][kw] likewise.
 * The queries of one grid row share the table rows rel_pos_h[qh .. qh +
 * grid - 1] (in reverse), those of one grid column rel_pos_w's: each group
 * is one matrix product (tmp: grid x grid floats), then reversed.
 */
static void rel_terms(const struct attn_job *j, const float *Q, size_t ldq, size_t q0, size_t n,
                      float *rh, float *rw, float *tmp)
{
    size_t S = j->grid, hd = j->hd, q1 = q0 + n;
    for (int axis = 0; axis < 2; axis++) {
        const float *table = axis ? j->ly->rel_w : j->ly->rel_h;
        float *dst = axis ? rw : rh;
        for (size_t g = 0; g < S; g++) {
            /* Rows: the queries with qh == g; columns: those with qw == g. */
            size_t first, step, count;
            if (axis == 0) {
                first = g * S > q0 ? g * S : q0;
                size_t last = (g + 1) * S < q1 ? (g + 1) * S : q1;
                if (first >= last)
                    continue;
                step = 1, count = last - first;
            } else {
                first = q0 + (g + S - q0 % S) % S;
                if (first >= q1)
                    continue;
                step = S, count = (q1 - first + S - 1) / S;
            }
            /* tmp[c][r] = q_(first + c step) . table[g + r] */
            memfit_matmul_rows(MEMFIT_TYPE_F32, table + g * hd, hd * sizeof(float), hd, 0, S,
                               Q + (first - q0) * ldq, step * ldq * sizeof(float), count, tmp, S);
            for (size_t c = 0; c < count; c++) {
                float *d = dst + (first - q0 + c * step) * S;
                const float *t = tmp + c * S;
                for (size_t k = 0; k < S; k++)
                    d[k] = t[S - 1 - k];
            }
        }
    }
}

/* Items are (window, head, query block), query blocks fastest: a thread's
 * run of blocks of one head is one memfit_attention call, so V is
 * transposed once per head and thread rather than once per block. */
static void attn_run(void *ctx, uint64_t begin, uint64_t end, unsigned thread)
{
    const struct attn_job *j = ctx;
    const struct layout *L = j->L;
    uint8_t *base = j->threads + (size_t)thread * L->thread_bytes;
    float *rh = (float *)(base + L->t_rel), *rw = rh + L->n_k_max * L->s_max;
    size_t D = j->D, hd = j->hd, ld = 3 * D;
    for (uint64_t item = begin; item < end;) {
        size_t qb = item % j->n_qb, wh = item / j->n_qb;
        size_t h = wh % j->heads, w = wh / j->heads;
        uint64_t last = item;
        while (last + 1 < end && (last + 1) / j->n_qb == wh)
            last++;
        size_t q0 = qb * QB, q1 = (last % j->n_qb + 1) * QB;
        if (q1 > j->n_tok)
            q1 = j->n_tok;
        size_t n = q1 - q0;
        const float *rows = j->qkv + w * j->n_tok * ld;
        const float *Q = rows + q0 * ld + h * hd;
        rel_terms(j, Q, ld, q0, n, rh, rw, (float *)(base + L->t_tmp));
        struct memfit_attention a = {.q = Q,
                                     .k = rows + D + h * hd,
                                     .v = rows + 2 * D + h * hd,
                                     .out = j->out + (w * j->n_tok + q0) * L->ldx + h * hd,
                                     .ldq = ld,
                                     .ldk = ld,
                                     .ldv = ld,
                                     .ldo = L->ldx,
                                     .n_q = n,
                                     .n_k = j->n_tok,
                                     .head_dim = hd,
                                     .scale = j->scale,
                                     .rel_h = rh,
                                     .rel_w = rw,
                                     .rel_ld = j->grid,
                                     .k_w = j->grid};
        /* Sizes were planned: this cannot fail. */
        memfit_attention(&a, base + L->t_attn, L->attn_bytes);
        item = last + 1;
    }
}

/* ---- The encoder ------------------------------------------------------------------------- */

static void embed_patches(struct enc *e, const float *pixels)
{
    const struct memfit_sam *m = e->m;
    const struct layout *L = e->L;
    size_t P = m->info.patch_size, K = 3 * P * P, G = L->G, S = m->info.image_size;
    size_t D = m->info.dim;
    for (size_t py = 0; py < G; py++)
        for (size_t px = 0; px < G; px++) {
            float *g = e->big + (py * G + px) * K;
            for (size_t c = 0; c < 3; c++)
                for (size_t ky = 0; ky < P; ky++)
                    memcpy(g + (c * P + ky) * P, pixels + c * S * S + (py * P + ky) * S + px * P,
                           P * sizeof(float));
        }
    linear(e, &m->patch.w, m->patch.b, e->big, K, L->T, e->x, L->ldx);
    for (size_t t = 0; t < L->T; t++)
        for (size_t d = 0; d < D; d++)
            e->x[t * L->ldx + d] += m->pos[t * D + d];
}

static void block(struct enc *e, const struct sam_enc_layer *ly)
{
    struct memfit_sam *m = e->m;
    const struct layout *L = e->L;
    size_t D = m->info.dim, H = m->info.mlp_hidden, ldx = L->ldx;
    bool win = !ly->global;
    size_t rows = win ? L->Tw : L->T;
    if (win && L->Tw > L->T) {
        /* Zero the padding rows: the windowed LayerNorm writes only real tokens. */
        for (size_t y = 0; y < L->Gp; y++)
            for (size_t x = 0; x < L->Gp; x++)
                if (y >= L->G || x >= L->G) {
                    size_t S = L->S;
                    size_t r = ((y / S) * L->nws + x / S) * S * S + (y % S) * S + x % S;
                    memset(e->xn + r * ldx, 0, D * sizeof(float));
                }
    }
    layer_norm(e, e->x, ldx, e->xn, ldx, L->T, D, ly->norm1_w, ly->norm1_b, win);
    linear(e, &ly->qkv.w, ly->qkv.b, e->xn, ldx, rows, e->big, 3 * D);
    struct attn_job aj = {.L = L,
                          .ly = ly,
                          .qkv = e->big,
                          .out = e->xn,
                          .D = D,
                          .hd = m->info.head_dim,
                          .heads = m->info.heads,
                          .grid = win ? L->S : L->G,
                          .scale = 1.0f / sqrtf((float)m->info.head_dim),
                          .threads = e->work + L->threads};
    aj.n_tok = aj.grid * aj.grid;
    aj.n_qb = (aj.n_tok + QB - 1) / QB;
    size_t n_windows = win ? L->nws * L->nws : 1;
    memfit_threadpool_parallel_for(m->pool, n_windows * aj.heads * aj.n_qb, attn_run, &aj);
    linear(e, &ly->proj.w, ly->proj.b, e->xn, ldx, rows, e->big, D);
    residual(e, e->big, D, win);
    layer_norm(e, e->x, ldx, e->xn, ldx, L->T, D, ly->norm2_w, ly->norm2_b, false);
    linear(e, &ly->lin1.w, ly->lin1.b, e->xn, ldx, L->T, e->big, H);
    struct gelu_job gj = {.h = e->big, .n = H, .ld = H};
    memfit_threadpool_parallel_for(m->pool, L->T, gelu_run, &gj);
    linear(e, &ly->lin2.w, ly->lin2.b, e->big, H, L->T, e->xn, ldx);
    residual(e, e->xn, ldx, false);
}

struct im2col_job {
    const float *src;
    float *dst;
    size_t G, C;
};

static void im2col_run(void *ctx, uint64_t begin, uint64_t end, unsigned thread)
{
    (void)thread;
    const struct im2col_job *j = ctx;
    memfit_im2col(j->src, j->G, j->G, j->C, 3, 3, 1, 1, begin, end, j->dst + begin * 9 * j->C);
}

/* Conv1x1 -> LayerNorm2d -> Conv3x3 (pad 1) -> LayerNorm2d; the result in x [T, C]. */
static void neck(struct enc *e)
{
    struct memfit_sam *m = e->m;
    const struct layout *L = e->L;
    size_t C = m->info.prompt_dim, ldx = L->ldx;
    linear(e, &m->neck1, NULL, e->x, ldx, L->T, e->xn, C);
    layer_norm(e, e->xn, C, e->xn, C, L->T, C, m->neck_ln1_w, m->neck_ln1_b, false);
    struct im2col_job ij = {.src = e->xn, .dst = e->big, .G = L->G, .C = C};
    memfit_threadpool_parallel_for(m->pool, L->T, im2col_run, &ij);
    linear(e, &m->neck2, NULL, e->big, 9 * C, L->T, e->x, C);
    layer_norm(e, e->x, C, e->x, C, L->T, C, m->neck_ln2_w, m->neck_ln2_b, false);
}

enum memfit_status memfit_sam_encode(memfit_sam *m, const float *pixels, void *work,
                                     size_t work_bytes, float *embedding)
{
    struct layout L;
    layout(m, &L);
    if (!pixels || !work || !embedding)
        return memfit_fail(MEMFIT_E_MISUSE, "sam: NULL pixels, workspace or embedding");
    if (work_bytes < L.total || ((uintptr_t)work % ALIGN) != 0)
        return memfit_fail(MEMFIT_E_MISUSE,
                           "sam: workspace of %zu bytes at %p; %zu bytes aligned to %d needed",
                           work_bytes, work, L.total, ALIGN);
    struct enc e = {.m = m, .L = &L, .work = work};
    e.x = (float *)(e.work + L.x);
    e.xn = (float *)(e.work + L.xn);
    e.big = (float *)(e.work + L.big);
    embed_patches(&e, pixels);
    for (uint32_t l = 0; l < m->info.depth; l++)
        block(&e, &m->layers[l]);
    neck(&e);
    size_t C = m->info.prompt_dim;
    for (size_t c = 0; c < C; c++)
        for (size_t t = 0; t < L.T; t++)
            embedding[c * L.T + t] = e.x[t * C + c];
    return MEMFIT_OK;
}

/*
 * LLM sessions and the forward pass (Qwen2, LLaMA).
 *
 * DESIGN. A session owns one anonymous mapping laid out by mf_llm_layout()
 * (the function memfit_llm_plan_for() reports, so the plan is exact):
 *   KV cache   per layer K then V, each [n_head_kv][n_ctx] rows of head_dim
 *              elements of kv_type (F16 or Q8_0): one head's keys are
 *              contiguous over positions, so a query scores them row by row.
 *   workspace  for B = n_batch tokens: x [B, E] the residual stream, xn
 *              [B, E] the normed rows (and the products before a residual
 *              add), q [B, Q], k|v [B, 2 KV] before they enter the cache,
 *              att [B, Q], ffn [B, 2F] gate|up, the rotary cos/sin [B, n_rot],
 *              one activation row quantized to Q8_0 and one to Q8_K, and per
 *              thread the attention row (scores over the context, the query
 *              in the cache's dot type, the output accumulator, a value row).
 * Pages of the cache are touched only as tokens arrive.
 *
 * Two paths share the layer code. One token (generation): every matrix is a
 * matrix-vector product of dot products between weight rows, used in place
 * in their stored type, and the activation row quantized once to the dot
 * type (Q8_0 or Q8_K; F32 in place for float weights) for all matrices that
 * read it (q, k and v; gate and up). Several tokens (a prompt): the tensor
 * layer's memfit_matmul_rows (cache-blocked, matrix-matrix). Either way the
 * rows of a matrix (or of a group of matrices fed by the same input) are
 * split across the session's thread pool in one parallel_for; kernels take
 * no locks and the forward allocates nothing.
 *
 * Attention: one item per (token, query head), dealt round-robin to the
 * threads so that late tokens (more keys) spread evenly; scores in F32,
 * scaled by 1/sqrt(head_dim), causal by construction (a token sees the cache
 * up to its own position), softmax with the max subtracted; GQA maps query
 * head h to KV head h / (n_head / n_head_kv).
 */
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "models/llm.h"

struct memfit_llm_session {
    struct memfit_llm *m;
    struct llm_layout L;
    memfit_threadpool *pool;
    uint8_t *map; /* KV cache, then the workspace */
    size_t map_bytes;
    uint8_t *work;
    uint32_t pos;
    const struct mf_type_traits *kv_tr;   /* the cache's type: from_float, to_float, vec_dot */
    const struct mf_type_traits *kv_act;  /* the query's type for the key dot product */
    const struct mf_type_traits *q8_0_tr; /* activation quantizers */
    const struct mf_type_traits *q8_k_tr;
};

/* The state of one forward over nb tokens at positions pos0.. */
struct fwd {
    struct memfit_llm_session *s;
    const struct memfit_llm *m;
    const struct memfit_llm_info *in;
    const struct llm_layout *L;
    uint32_t nb, pos0, layer;
    float *x, *xn, *q, *kv, *att, *ffn, *rope;
    uint8_t *act_q8_0, *act_q8_k;
};

/* ---- Sessions --------------------------------------------------------------------- */

enum memfit_status memfit_llm_session_create(memfit_llm *m, const struct memfit_llm_options *opts,
                                             memfit_llm_session **out)
{
    struct memfit_llm_options defaults;
    if (!m || !out)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_llm_session_create: NULL argument");
    if (!opts) {
        memfit_llm_options_default(&defaults);
        opts = &defaults;
    }
    struct llm_layout L;
    enum memfit_status st = mf_llm_layout(&m->info, opts, &L);
    if (st != MEMFIT_OK)
        return st;
    const struct mf_type_traits *kv_tr = mf_type_traits(L.kv_type);
    const struct mf_type_traits *kv_act = kv_tr ? mf_type_traits(kv_tr->vec_dot_type) : NULL;
    const struct mf_type_traits *q8_0 = mf_type_traits(MEMFIT_TYPE_Q8_0);
    const struct mf_type_traits *q8_k = mf_type_traits(MEMFIT_TYPE_Q8_K);
    if (!kv_tr || !kv_tr->from_float || !kv_tr->to_float || !kv_tr->vec_dot || !kv_act ||
        (kv_tr->vec_dot_type != MEMFIT_TYPE_F32 && !kv_act->from_float) || !q8_0 ||
        !q8_0->from_float || !q8_k || !q8_k->from_float)
        return memfit_fail(MEMFIT_E_UNSUPPORTED, "llm: the tensor layer lacks a KV cache kernel");
    struct memfit_llm_session *s = memfit_calloc_in(MEMFIT_ALLOC_MODEL, 1, sizeof(*s));
    if (!s)
        return MEMFIT_E_NOMEM;
    s->m = m;
    s->L = L;
    s->kv_tr = kv_tr;
    s->kv_act = kv_act;
    s->q8_0_tr = q8_0;
    s->q8_k_tr = q8_k;
    s->map_bytes = L.kv_bytes + L.work_bytes;
    s->map = mf_map_anon(s->map_bytes);
    if (!s->map) {
        memfit_free(s);
        return MEMFIT_E_NOMEM;
    }
    s->work = s->map + L.kv_bytes;
    if ((st = memfit_threadpool_create(L.n_threads, &s->pool)) != MEMFIT_OK) {
        mf_unmap_anon(s->map, s->map_bytes);
        memfit_free(s);
        return st;
    }
    *out = s;
    return MEMFIT_OK;
}

void memfit_llm_session_free(memfit_llm_session *s)
{
    if (!s)
        return;
    memfit_threadpool_destroy(s->pool);
    mf_unmap_anon(s->map, s->map_bytes);
    memfit_free(s);
}

uint32_t memfit_llm_session_pos(const memfit_llm_session *s)
{
    return s->pos;
}

uint32_t memfit_llm_session_ctx(const memfit_llm_session *s)
{
    return s->L.n_ctx;
}

memfit_llm *memfit_llm_session_model(const memfit_llm_session *s)
{
    return s->m;
}

enum memfit_status memfit_llm_session_truncate(memfit_llm_session *s, uint32_t pos)
{
    if (pos > s->pos)
        return memfit_fail(MEMFIT_E_RANGE, "llm: truncate to %u: the session holds %u tokens", pos,
                           s->pos);
    s->pos = pos;
    return MEMFIT_OK;
}

/* ---- Cache addressing -------------------------------------------------------------- */

/* Row of (layer, which 0 = K / 1 = V, kv head, position). */
static inline uint8_t *kv_row(const struct memfit_llm_session *s, uint32_t layer, int which,
                              uint32_t head, uint32_t pos)
{
    const struct llm_layout *L = &s->L;
    return s->map + (2 * (size_t)layer + (size_t)which) * L->kv_layer_bytes +
           ((size_t)head * L->n_ctx + pos) * L->kv_row_bytes;
}

/* ---- Row jobs ---------------------------------------------------------------------- */

static void rms_norm_row(const float *x, float *y, const float *w, size_t n, float eps)
{
    double ss = 0;
    for (size_t i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    float inv = (float)(1.0 / sqrt(ss / (double)n + (double)eps));
    for (size_t i = 0; i < n; i++)
        y[i] = x[i] * inv * w[i];
}

struct norm_job {
    const float *src;
    float *dst;
    const float *w;
    size_t n, row0;
    float eps;
};

static void norm_run(void *ctx, uint64_t begin, uint64_t end, unsigned thread)
{
    const struct norm_job *j = ctx;
    (void)thread;
    for (uint64_t r = j->row0 + begin; r < j->row0 + end; r++)
        rms_norm_row(j->src + r * j->n, j->dst + r * j->n, j->w, j->n, j->eps);
}

/* xn rows [row0, row0 + n_rows) = RMSNorm(x) * w. */
static void norm_rows(struct fwd *f, const float *w, uint32_t row0, uint32_t n_rows)
{
    struct norm_job j = {
        .src = f->x, .dst = f->xn, .w = w, .n = f->in->n_embd, .row0 = row0, .eps = f->in->rms_eps};
    memfit_threadpool_parallel_for(f->s->pool, n_rows, norm_run, &j);
}

static void swiglu_run(void *ctx, uint64_t begin, uint64_t end, unsigned thread)
{
    const struct fwd *f = ctx;
    size_t F = f->in->n_ff;
    (void)thread;
    for (uint64_t r = begin; r < end; r++) {
        float *g = f->ffn + r * 2 * F, *u = g + F;
        for (size_t i = 0; i < F; i++)
            g[i] = g[i] / (1.0f + mf_expf(-g[i])) * u[i];
    }
}

/* Rotates pairs (i, i + n_rot/2) (NEOX) or (2i, 2i+1) of each head by the angles. */
static void rope_heads(float *v, uint32_t n_heads, size_t hd, size_t n_rot, bool neox,
                       const float *cs, const float *sn)
{
    size_t R = n_rot / 2;
    for (uint32_t h = 0; h < n_heads; h++) {
        float *x = v + h * hd;
        for (size_t i = 0; i < R; i++) {
            size_t a = neox ? i : 2 * i, b = neox ? i + R : 2 * i + 1;
            float x0 = x[a], x1 = x[b];
            x[a] = x0 * cs[i] - x1 * sn[i];
            x[b] = x0 * sn[i] + x1 * cs[i];
        }
    }
}

/* Rotary on q and k of each token, then k and v into the cache. */
static void rope_store_run(void *ctx, uint64_t begin, uint64_t end, unsigned thread)
{
    const struct fwd *f = ctx;
    const struct memfit_llm_info *in = f->in;
    size_t hd = in->head_dim, Q = (size_t)in->n_head * hd, KV = (size_t)in->n_head_kv * hd;
    (void)thread;
    for (uint64_t i = begin; i < end; i++) {
        const float *cs = f->rope + i * in->n_rot, *sn = cs + in->n_rot / 2;
        float *k = f->kv + i * 2 * KV, *v = k + KV;
        rope_heads(f->q + i * Q, in->n_head, hd, in->n_rot, in->rope_neox, cs, sn);
        rope_heads(k, in->n_head_kv, hd, in->n_rot, in->rope_neox, cs, sn);
        uint32_t pos = f->pos0 + (uint32_t)i;
        for (uint32_t h = 0; h < in->n_head_kv; h++) {
            f->s->kv_tr->from_float(k + h * hd, kv_row(f->s, f->layer, 0, h, pos), hd);
            f->s->kv_tr->from_float(v + h * hd, kv_row(f->s, f->layer, 1, h, pos), hd);
        }
    }
}

/* cos/sin of every rotary pair for each token of the batch, in double. */
static void rope_table(struct fwd *f)
{
    const struct memfit_llm_info *in = f->in;
    size_t R = in->n_rot / 2;
    for (uint32_t i = 0; i < f->nb; i++) {
        float *cs = f->rope + (size_t)i * in->n_rot, *sn = cs + R;
        double p = (double)(f->pos0 + i) * in->rope_freq_scale;
        for (size_t j = 0; j < R; j++) {
            double theta = p * pow(in->rope_freq_base, -2.0 * (double)j / in->n_rot);
            if (f->m->rope_freqs)
                theta /= f->m->rope_freqs[j];
            cs[j] = (float)cos(theta);
            sn[j] = (float)sin(theta);
        }
    }
}

/* ---- Matrix products ----------------------------------------------------------------- */

/* One matrix of a group: y[c * ldy + r] (+)= W row r . activation c (+ bias[r]). */
struct mm_part {
    const struct llm_mat *w;
    const void *act; /* one token: its activation row in w's dot type */
    const float *x;  /* several tokens: n_cols float rows, ldx floats apart */
    size_t ldx;
    float *y;
    size_t ldy;
    const float *bias;
    float *tmp;    /* several tokens with `residual`: the products land here first */
    bool residual; /* add into y rather than store */
};

struct mm_job {
    struct mm_part p[3];
    int n;
    uint64_t off[4]; /* first row of each part in the group's row numbering */
    size_t n_cols;
    uint8_t *threads; /* the per-thread areas (NF4 weight-row scratch at t_wrow) */
    size_t thread_bytes, t_wrow;
};

/* Stores (or adds) rows [r0, r1) of one token's products v[0..r1-r0) with the bias. */
static void mm_store(const struct mm_part *p, size_t r0, size_t r1, const float *v)
{
    for (size_t r = r0; r < r1; r++) {
        float x = v[r - r0] + (p->bias ? p->bias[r] : 0.0f);
        p->y[r] = p->residual ? p->y[r] + x : x;
    }
}

/* Several tokens: the products in dst (y itself, or tmp for a residual) plus the bias into y. */
static void mm_finish_cols(const struct mm_part *p, size_t n_cols, size_t r0, size_t r1,
                           const float *dst)
{
    for (size_t c = 0; c < n_cols; c++) {
        float *y = p->y + c * p->ldy;
        const float *t = dst + c * p->ldy;
        for (size_t r = r0; r < r1; r++) {
            float v = t[r] + (p->bias ? p->bias[r] : 0.0f);
            y[r] = p->residual ? y[r] + v : v;
        }
    }
}

/* An NF4 matrix (bitsandbytes' layout in place): its own row kernel, or for several tokens
 * each weight row dequantized into the thread's scratch. */
static void mm_part_rows_nf4(const struct mm_part *p, size_t n_cols, size_t r0, size_t r1,
                             float *scratch)
{
    const struct llm_mat *w = p->w;
    if (n_cols == 1 && p->act) {
        float v[64];
        for (size_t r = r0; r < r1; r += 64) {
            size_t e = r + 64 < r1 ? r + 64 : r1;
            memfit_nf4_matvec_rows(&w->nf4, r, e, p->act, v);
            mm_store(p, r, e, v);
        }
        return;
    }
    float *dst = p->residual ? p->tmp : p->y;
    memfit_nf4_matmul_rows(&w->nf4, r0, r1, p->x, p->ldx, n_cols, dst, p->ldy, scratch);
    mm_finish_cols(p, n_cols, r0, r1, dst);
}

static void mm_part_rows(const struct mm_part *p, size_t n_cols, size_t r0, size_t r1,
                         float *scratch)
{
    const struct llm_mat *w = p->w;
    if (w->type == MEMFIT_TYPE_NF4) {
        mm_part_rows_nf4(p, n_cols, r0, r1, scratch);
        return;
    }
    if (n_cols == 1 && p->act) {
        /* The type's multi-row kernel where it has one (the activation prepared once per
         * chunk), bit for bit what w->dot gives each row. */
        const struct mf_type_traits *t = mf_type_traits(w->type);
        const uint8_t *wd = w->data;
        size_t rb = w->row_bytes;
        float v[128];
        for (size_t r = r0; r < r1; r += 128) {
            size_t e = r + 128 < r1 ? r + 128 : r1;
            mf_vec_dot_rows(t, w->cols, wd + r * rb, rb, p->act, v, e - r);
            mm_store(p, r, e, v);
        }
        return;
    }
    float *dst = p->residual ? p->tmp : p->y;
    /* Shapes and types were checked at open: this cannot fail. */
    memfit_matmul_rows(w->type, w->data, w->row_bytes, w->cols, r0, r1, p->x,
                       p->ldx * sizeof(float), n_cols, dst, p->ldy);
    mm_finish_cols(p, n_cols, r0, r1, dst);
}

static void mm_run(void *ctx, uint64_t begin, uint64_t end, unsigned thread)
{
    const struct mm_job *j = ctx;
    float *scratch = (float *)(j->threads + (size_t)thread * j->thread_bytes + j->t_wrow);
    for (int i = 0; i < j->n; i++) {
        uint64_t lo = begin > j->off[i] ? begin : j->off[i];
        uint64_t hi = end < j->off[i + 1] ? end : j->off[i + 1];
        if (lo < hi)
            mm_part_rows(&j->p[i], j->n_cols, (size_t)(lo - j->off[i]), (size_t)(hi - j->off[i]),
                         scratch);
    }
}

static void mm_add(struct mm_job *j, const struct llm_mat *w, float *y, size_t ldy,
                   const float *bias, float *residual_tmp)
{
    struct mm_part *p = &j->p[j->n];
    memset(p, 0, sizeof(*p));
    p->w = w;
    p->y = y;
    p->ldy = ldy;
    p->bias = bias;
    p->residual = residual_tmp != NULL;
    p->tmp = residual_tmp;
    j->off[j->n + 1] = j->off[j->n] + w->rows;
    j->n++;
}

/*
 * Runs a group of matrices that read the same input: n_cols float rows at
 * src, ldx floats apart. One row (generation) goes through the dot
 * products, the input quantized once per dot type; more go through the
 * matrix-matrix kernel.
 */
static void mm_group(struct fwd *f, struct mm_job *j, const float *src, size_t ldx, size_t n_cols)
{
    j->n_cols = n_cols;
    j->threads = f->s->work + f->L->threads;
    j->thread_bytes = f->L->thread_bytes;
    j->t_wrow = f->L->t_wrow;
    bool have_q8_0 = false, have_q8_k = false;
    for (int i = 0; i < j->n; i++) {
        struct mm_part *p = &j->p[i];
        size_t n = p->w->cols;
        p->x = src;
        p->ldx = ldx;
        if (n_cols != 1)
            continue;
        switch (p->w->dot_type) {
        case MEMFIT_TYPE_Q8_0:
            if (!have_q8_0)
                f->s->q8_0_tr->from_float(src, f->act_q8_0, n);
            have_q8_0 = true;
            p->act = f->act_q8_0;
            break;
        case MEMFIT_TYPE_Q8_K:
            if (!have_q8_k)
                f->s->q8_k_tr->from_float(src, f->act_q8_k, n);
            have_q8_k = true;
            p->act = f->act_q8_k;
            break;
        default: /* F32, checked at open */
            p->act = src;
            break;
        }
    }
    memfit_threadpool_parallel_for(f->s->pool, j->off[j->n], mm_run, j);
}

/* ---- Attention ------------------------------------------------------------------- */

struct attn_job {
    struct fwd *f;
    uint64_t n_items, stride;
    float scale;
};

static void attn_item(const struct attn_job *j, uint64_t item, uint8_t *scratch)
{
    struct fwd *f = j->f;
    const struct memfit_llm_session *s = f->s;
    const struct memfit_llm_info *in = f->in;
    const struct llm_layout *L = f->L;
    size_t hd = in->head_dim, Q = (size_t)in->n_head * hd;
    uint32_t i = (uint32_t)(item / in->n_head), h = (uint32_t)(item % in->n_head);
    uint32_t kvh = h / (in->n_head / in->n_head_kv), n_keys = f->pos0 + i + 1;
    float *scores = (float *)(scratch + L->t_scores), *acc = (float *)(scratch + L->t_acc);
    float *vrow = (float *)(scratch + L->t_vrow);
    const float *q = f->q + i * Q + (size_t)h * hd;
    const void *qa = q;
    if (s->kv_tr->vec_dot_type != MEMFIT_TYPE_F32) {
        s->kv_act->from_float(q, scratch + L->t_qrow, hd);
        qa = scratch + L->t_qrow;
    }
    const uint8_t *K = kv_row(s, f->layer, 0, kvh, 0), *V = kv_row(s, f->layer, 1, kvh, 0);
    size_t rb = L->kv_row_bytes;
    mf_vec_dot_fn dot = s->kv_tr->vec_dot;
    float mx = -INFINITY;
    for (uint32_t t = 0; t < n_keys; t++) {
        float v = dot(hd, K + t * rb, qa) * j->scale;
        scores[t] = v;
        if (v > mx)
            mx = v;
    }
    for (uint32_t t = 0; t < n_keys; t++)
        scores[t] -= mx;
    memfit_exp(scores, n_keys);
    float sum = 0;
    memset(acc, 0, hd * sizeof(float));
    mf_to_float_fn to_float = s->kv_tr->to_float;
    for (uint32_t t = 0; t < n_keys; t++) {
        float p = scores[t];
        sum += p;
        to_float(V + t * rb, vrow, hd);
        for (size_t d = 0; d < hd; d++)
            acc[d] += p * vrow[d];
    }
    float inv = 1.0f / sum, *out = f->att + i * Q + (size_t)h * hd;
    for (size_t d = 0; d < hd; d++)
        out[d] = acc[d] * inv;
}

static void attn_run(void *ctx, uint64_t begin, uint64_t end, unsigned thread)
{
    const struct attn_job *j = ctx;
    uint8_t *scratch = j->f->s->work + j->f->L->threads + (size_t)thread * j->f->L->thread_bytes;
    /* Item k of the parallel_for takes items k, k + stride, ...: round-robin. */
    for (uint64_t k = begin; k < end; k++)
        for (uint64_t item = k; item < j->n_items; item += j->stride)
            attn_item(j, item, scratch);
}

static void attention(struct fwd *f)
{
    struct attn_job j = {.f = f,
                         .n_items = (uint64_t)f->nb * f->in->n_head,
                         .scale = 1.0f / sqrtf((float)f->in->head_dim)};
    uint64_t threads = memfit_threadpool_size(f->s->pool);
    j.stride = j.n_items < threads ? j.n_items : threads;
    memfit_threadpool_parallel_for(f->s->pool, j.stride, attn_run, &j);
}

/* ---- The forward ------------------------------------------------------------------- */

static void layer_forward(struct fwd *f, const struct llm_layer *ly)
{
    const struct memfit_llm_info *in = f->in;
    size_t E = in->n_embd, hd = in->head_dim, Q = (size_t)in->n_head * hd;
    size_t KV = (size_t)in->n_head_kv * hd, F = in->n_ff, nb = f->nb;
    struct mm_job j;
    norm_rows(f, ly->attn_norm, 0, f->nb);
    memset(&j, 0, sizeof(j));
    mm_add(&j, &ly->q, f->q, Q, ly->bq, NULL);
    mm_add(&j, &ly->k, f->kv, 2 * KV, ly->bk, NULL);
    mm_add(&j, &ly->v, f->kv + KV, 2 * KV, ly->bv, NULL);
    mm_group(f, &j, f->xn, E, nb);
    memfit_threadpool_parallel_for(f->s->pool, nb, rope_store_run, f);
    attention(f);
    memset(&j, 0, sizeof(j));
    mm_add(&j, &ly->o, f->x, E, ly->bo, f->xn);
    mm_group(f, &j, f->att, Q, nb);
    norm_rows(f, ly->ffn_norm, 0, f->nb);
    memset(&j, 0, sizeof(j));
    mm_add(&j, &ly->gate, f->ffn, 2 * F, NULL, NULL);
    mm_add(&j, &ly->up, f->ffn + F, 2 * F, NULL, NULL);
    mm_group(f, &j, f->xn, E, nb);
    memfit_threadpool_parallel_for(f->s->pool, nb, swiglu_run, f);
    memset(&j, 0, sizeof(j));
    mm_add(&j, &ly->down, f->x, E, NULL, f->xn);
    mm_group(f, &j, f->ffn, 2 * F, nb);
}

struct embed_job {
    struct fwd *f;
    const int32_t *tokens;
};

static void embed_run(void *ctx, uint64_t begin, uint64_t end, unsigned thread)
{
    const struct embed_job *j = ctx;
    const struct llm_mat *e = &j->f->m->tok_embd;
    const struct mf_type_traits *tr = mf_type_traits(e->type);
    (void)thread;
    for (uint64_t i = begin; i < end; i++)
        tr->to_float((const uint8_t *)e->data + (size_t)j->tokens[i] * e->row_bytes,
                     j->f->x + i * e->cols, e->cols);
}

/* nb tokens through the model; logits of the last (or every) token into `logits`. */
static void forward(struct memfit_llm_session *s, const int32_t *tokens, uint32_t nb, float *logits,
                    bool all_logits)
{
    const struct llm_layout *L = &s->L;
    struct fwd f = {.s = s, .m = s->m, .in = &s->m->info, .L = L, .nb = nb, .pos0 = s->pos};
    uint8_t *w = s->work;
    f.x = (float *)(w + L->x);
    f.xn = (float *)(w + L->xn);
    f.q = (float *)(w + L->q);
    f.kv = (float *)(w + L->kv);
    f.att = (float *)(w + L->att);
    f.ffn = (float *)(w + L->ffn);
    f.rope = (float *)(w + L->rope);
    f.act_q8_0 = w + L->act_q8_0;
    f.act_q8_k = w + L->act_q8_k;
    struct embed_job ej = {.f = &f, .tokens = tokens};
    memfit_threadpool_parallel_for(s->pool, nb, embed_run, &ej);
    rope_table(&f);
    for (uint32_t l = 0; l < f.in->n_layer; l++) {
        f.layer = l;
        layer_forward(&f, &s->m->layers[l]);
    }
    if (!logits)
        return;
    size_t E = f.in->n_embd;
    uint32_t row0 = all_logits ? 0 : nb - 1, n_rows = nb - row0;
    norm_rows(&f, s->m->output_norm, row0, n_rows);
    struct mm_job j;
    memset(&j, 0, sizeof(j));
    mm_add(&j, &s->m->output, logits, f.in->n_vocab, NULL, NULL);
    mm_group(&f, &j, f.xn + row0 * E, E, n_rows);
}

enum memfit_status memfit_llm_eval(memfit_llm_session *s, const int32_t *tokens, size_t n,
                                   float *logits, bool all_logits)
{
    if (!s || (!tokens && n))
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_llm_eval: NULL argument");
    if (n == 0)
        return memfit_fail(MEMFIT_E_INVALID, "llm: no tokens to evaluate");
    const struct memfit_llm_info *in = &s->m->info;
    if (n > s->L.n_ctx - s->pos)
        return memfit_fail(MEMFIT_E_RANGE,
                           "llm: %zu new tokens after the %u held exceed the context of %u "
                           "tokens (%zu too many)",
                           n, s->pos, s->L.n_ctx, n - (s->L.n_ctx - s->pos));
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= in->n_vocab)
            return memfit_fail(MEMFIT_E_RANGE,
                               "llm: token %zu of %zu: id %d is outside the vocabulary "
                               "(0..%u)",
                               i, n, (int)tokens[i], in->n_vocab - 1);
    for (size_t c0 = 0; c0 < n; c0 += s->L.n_batch) {
        uint32_t nb = (uint32_t)(n - c0 < s->L.n_batch ? n - c0 : s->L.n_batch);
        bool last = c0 + nb == n;
        float *out = NULL;
        if (logits && all_logits)
            out = logits + c0 * (size_t)in->n_vocab;
        else if (logits && last)
            out = logits;
        forward(s, tokens + c0, nb, out, all_logits);
        s->pos += nb;
    }
    return MEMFIT_OK;
}

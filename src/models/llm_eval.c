/*
 * LLM sessions, groups and the forward pass (Qwen2, LLaMA).
 *
 * DESIGN. A session owns one anonymous mapping laid out by mf_llm_layout()
 * (the function memfit_llm_plan_for() reports, so the plan is exact):
 *   KV cache   per layer K then V, each [n_head_kv][n_ctx] rows of head_dim
 *              elements of kv_type (F16 or Q8_0): one head's keys are
 *              contiguous over positions, so a query scores them row by row.
 *   workspace  for B rows (tokens): x [B, E] the residual stream, xn
 *              [B, E] the normed rows (and the products before a residual
 *              add), q [B, Q], k|v [B, 2 KV] before they enter the cache,
 *              att [B, Q], ffn [B, 2F] gate|up, the rotary cos/sin [B, n_rot],
 *              the rows that go through dot products quantized to Q8_0 and
 *              to Q8_K (one per sequence), the rows' (session, position,
 *              token), and per thread the attention row (scores over the
 *              context, the query in the cache's dot type, the output
 *              accumulator, a value row).
 * Pages of the cache are touched only as tokens arrive.
 *
 * A group (continuous batching) is n sessions of one model, each mapping
 * only its KV cache, sharing one workspace of n_batch + n rows and one
 * thread pool. A forward is a list of rows, each a token of some session at
 * its position: embedding, norms and matrix products run over all rows (the
 * weights read once per forward), RoPE at each row's position, K and V into
 * the row's session, attention of each row against its own session's cache.
 * A session of its own is the group of one: a forward is a chunk of its
 * tokens.
 *
 * The rows of a forward are of two kinds, and a row's kind depends only on
 * its own request, so that its numbers never depend on what else rides in
 * the forward (a sequence batched with others gets the logits it gets alone):
 *   dot rows   a single-token evaluation (generation; or any token with
 *              n_batch 1): every matrix is dot products between weight rows,
 *              used in place in their stored type, and the activation row
 *              quantized once to the dot type (Q8_0 or Q8_K; F32 in place for
 *              float weights) for all matrices that read it. With several dot
 *              rows each weight row is read from memory once and dotted with
 *              every activation row while it is in cache.
 *   segments   a chunk of a prompt (up to n_batch tokens of one request,
 *              chunked from its start as a session alone chunks it): the
 *              tensor layer's memfit_matmul_rows (cache-blocked,
 *              matrix-matrix), one call per segment.
 * Either way the rows of a matrix (or of a group of matrices fed by the same
 * input) are split across the thread pool in one parallel_for (dot rows
 * only: a dynamic one, the threads taking ranges of rows as they go, which
 * cannot change a row's value); kernels take no locks and the forward
 * allocates nothing. Logits are computed only for
 * the rows that need them: a request's last token (a dot row), or every token
 * of an all_logits request. A scored request (memfit_llm_eval_score) has each
 * of its tokens' next-token log-probability and top-n computed from logits a
 * slice of the vocabulary at a time, in the workspace the layers leave free
 * ("Scores" below).
 *
 * Batching: memfit_llm_eval() on a group's session puts its request on the
 * group's pending list and waits; the first waiter that finds no forward
 * running leads one (no thread of its own): it waits briefly for the joined
 * sessions that have not asked yet, takes the pending requests (every
 * single-token request, and prompt chunks while they fit in n_batch rows),
 * runs the forward without the lock, advances the requests and wakes the
 * waiters. A request not finished (a prompt longer than one chunk, or one
 * that did not fit) stays pending for the next forward.
 *
 * Attention: one item per (row, query head), dealt round-robin to the
 * threads so that late tokens (more keys) spread evenly; scores in F32,
 * scaled by 1/sqrt(head_dim), causal by construction (a row sees its
 * session's cache up to its own position), softmax with the max subtracted;
 * GQA maps query head h to KV head h / (n_head / n_head_kv).
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "models/llm.h"

/* One evaluation asked of a session: n tokens, done of them run so far; with scores,
 * tokens[1..n) scored (memfit_llm_eval_score). */
struct llm_req {
    const int32_t *tokens;
    size_t n, done;
    float *logits;
    bool all_logits;
    uint32_t n_top;
    struct memfit_token_score *scores;
};

struct memfit_llm_session {
    struct memfit_llm *m;
    struct llm_layout L;
    memfit_threadpool *pool; /* NULL in a group: the group's */
    uint8_t *map;            /* KV cache, then (on its own) the workspace */
    size_t map_bytes;
    uint8_t *work; /* NULL in a group */
    uint32_t pos;
    uint32_t populated; /* cache positions [0, populated) have their pages (kv_reach) */
    bool populate_off;  /* the kernel cannot populate ranges: pages fault in as written */
    const struct mf_type_traits *kv_tr;   /* the cache's type: from_float, to_float, vec_dot */
    const struct mf_type_traits *kv_act;  /* the query's type for the key dot product */
    const struct mf_type_traits *q8_0_tr; /* activation quantizers */
    const struct mf_type_traits *q8_k_tr;
    struct memfit_llm_group *group; /* NULL on its own */
    /* In a group, under its lock: */
    bool joined, pending;
    struct llm_req req;
};

struct memfit_llm_group {
    struct memfit_llm *m;
    struct llm_layout L;
    memfit_threadpool *pool;
    uint8_t *work;
    memfit_llm_session **sessions; /* n_sessions */
    uint32_t n_sessions;
    pthread_mutex_t lock;
    pthread_cond_t submitted; /* a request was added or a session left */
    pthread_cond_t stepped;   /* a forward ended */
    /* Under lock: */
    memfit_llm_session *pending[LLM_MAX_SEQ]; /* in arrival order */
    uint32_t n_pending;
    bool running;
    uint64_t last_step_ns;
    struct memfit_llm_group_stats stats;
};

/* ---- Forward description ------------------------------------------------------------ */

/* Segment: rows [row0, row0 + n) through the matrix-matrix kernel; dot: one row through the
 * dot products. y: where the products go (logits), or NULL for the matrix's own output. */
struct mm_seg {
    uint32_t row0, n;
    float *y;
};

struct mm_dot {
    uint32_t row;
    float *y;
};

/* The activation rows a matrix product reads. */
struct mm_cols {
    uint32_t n_seg, n_dot;
    struct mm_seg seg[LLM_MAX_SEQ];
    struct mm_dot dot[LLM_MAX_SEQ];
};

/* Rows [row0, row0 + n) scored: row k's logits against next[k], into out[k]. */
struct score_seg {
    uint32_t row0, n, n_top;
    const int32_t *next;
    struct memfit_token_score *out;
};

/* The state of one forward over nb rows. */
struct fwd {
    const struct memfit_llm *m;
    const struct memfit_llm_info *in;
    const struct llm_layout *L;
    memfit_threadpool *pool;
    uint8_t *work;
    const struct memfit_llm_session *s0; /* any session: the traits, equal in a group */
    const struct llm_row *rows;
    uint32_t nb, layer;
    struct mm_cols cols; /* the layers': every row */
    struct mm_cols out;  /* the logits' rows */
    uint32_t n_score;    /* the scored rows' segments */
    struct score_seg score[LLM_MAX_SEQ];
    float *x, *xn, *q, *kv, *att, *ffn, *rope;
    uint8_t *act_q8_0, *act_q8_k;
};

/* ---- Sessions --------------------------------------------------------------------- */

/* A session with layout L: its KV cache mapped, and with `own` its workspace and pool too. */
static enum memfit_status session_new(memfit_llm *m, const struct llm_layout *L, bool own,
                                      memfit_llm_session **out)
{
    const struct mf_type_traits *kv_tr = mf_type_traits(L->kv_type);
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
    s->L = *L;
    s->kv_tr = kv_tr;
    s->kv_act = kv_act;
    s->q8_0_tr = q8_0;
    s->q8_k_tr = q8_k;
    s->map_bytes = L->kv_bytes + (own ? L->work_bytes : 0);
    s->map = mf_map_anon(s->map_bytes);
    if (!s->map) {
        memfit_free(s);
        return MEMFIT_E_NOMEM;
    }
    if (own) {
        s->work = s->map + L->kv_bytes;
        enum memfit_status st = memfit_threadpool_create(L->n_threads, &s->pool);
        if (st != MEMFIT_OK) {
            mf_unmap_anon(s->map, s->map_bytes);
            memfit_free(s);
            return st;
        }
    }
    *out = s;
    return MEMFIT_OK;
}

static void session_destroy(memfit_llm_session *s)
{
    if (!s)
        return;
    memfit_threadpool_destroy(s->pool);
    mf_unmap_anon(s->map, s->map_bytes);
    memfit_free(s);
}

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
    enum memfit_status st = mf_llm_layout(&m->info, opts, 1, &L);
    if (st != MEMFIT_OK)
        return st;
    return session_new(m, &L, true, out);
}

void memfit_llm_session_free(memfit_llm_session *s)
{
    if (s && !s->group)
        session_destroy(s);
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

/*
 * Positions the cache's pages are made present for at a time. A decode step writes each KV
 * head's row at its position, a new page for every (layer, K/V, head) once per 4096 / row bytes
 * positions: some 50 page faults per token on a 1.8B model, ~8 us each in a VM, 2 % of decode.
 * One MADV_POPULATE_WRITE per (layer, K/V, head) range instead makes the next KV_POPULATE
 * positions' pages present in one call each; the pages are the planned cache's, so RSS stays
 * within the plan (at most KV_POPULATE positions ahead of use).
 */
#define KV_POPULATE 64
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

/* Makes the pages of the session's cache positions below `end` present (KV_POPULATE at a
 * time). A kernel without MADV_POPULATE_WRITE (before 5.14) or a refusal turns it off for the
 * session: the pages then fault in as the rows are written, as any anonymous memory. */
static void kv_reach(memfit_llm_session *s, uint32_t end)
{
    const struct llm_layout *L = &s->L;
    if (end <= s->populated || s->populate_off)
        return;
    uint32_t to = (end + KV_POPULATE - 1) / KV_POPULATE * KV_POPULATE;
    to = to < L->n_ctx ? to : L->n_ctx;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    for (uint32_t l = 0; l < s->m->info.n_layer; l++)
        for (int w = 0; w < 2; w++)
            for (uint32_t h = 0; h < s->m->info.n_head_kv; h++) {
                uintptr_t a = (uintptr_t)kv_row(s, l, w, h, s->populated) & ~(page - 1);
                uintptr_t b = ((uintptr_t)kv_row(s, l, w, h, to) + page - 1) & ~(page - 1);
                if (madvise((void *)a, b - a, MADV_POPULATE_WRITE) != 0) {
                    s->populate_off = true;
                    return;
                }
            }
    s->populated = to;
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
    memfit_threadpool_parallel_for(f->pool, n_rows, norm_run, &j);
}

static void swiglu_run(void *ctx, uint64_t begin, uint64_t end, unsigned thread)
{
    const struct fwd *f = ctx;
    size_t F = f->in->n_ff;
    (void)thread;
    for (uint64_t r = begin; r < end; r++)
        mf_swiglu(f->ffn + r * 2 * F, f->ffn + r * 2 * F + F, F);
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

/* Rotary on q and k of each row, then k and v into the row's session's cache. */
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
        const struct memfit_llm_session *s = f->rows[i].s;
        uint32_t pos = f->rows[i].pos;
        for (uint32_t h = 0; h < in->n_head_kv; h++) {
            s->kv_tr->from_float(k + h * hd, kv_row(s, f->layer, 0, h, pos), hd);
            s->kv_tr->from_float(v + h * hd, kv_row(s, f->layer, 1, h, pos), hd);
        }
    }
}

/* cos/sin of every rotary pair for each row at its position, in double. */
static void rope_table(struct fwd *f)
{
    const struct memfit_llm_info *in = f->in;
    size_t R = in->n_rot / 2;
    for (uint32_t i = 0; i < f->nb; i++) {
        float *cs = f->rope + (size_t)i * in->n_rot, *sn = cs + R;
        double p = (double)f->rows[i].pos * in->rope_freq_scale;
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

/* One matrix of a group: y[row * ldy + r] (+)= W row r . activation row (+ bias[r]). */
struct mm_part {
    const struct llm_mat *w;
    const void *act[LLM_MAX_SEQ]; /* dot row i's activation in w's dot type */
    float *y;
    size_t ldy;
    const float *bias;
    float *tmp;    /* segments with `residual`: the products land here first (ldy apart) */
    bool residual; /* add into y rather than store */
};

struct mm_job {
    struct mm_part p[3];
    int n;
    uint64_t off[4]; /* first row of each part in the group's row numbering */
    const struct mm_cols *cols;
    const float *x; /* the activation rows, ldx floats apart */
    size_t ldx;
    uint8_t *threads; /* the per-thread areas (NF4 weight-row scratch at t_wrow) */
    size_t thread_bytes, t_wrow;
};

/* Stores (or adds) rows [r0, r1) of one row's products v[0..r1-r0) with the bias into y: one
 * loop per case, which the compiler vectorizes (v never overlaps y). */
static void mm_store(const struct mm_part *p, float *y, size_t r0, size_t r1, const float *v)
{
    float *restrict yr = y + r0;
    const float *restrict vr = v;
    const float *b = p->bias ? p->bias + r0 : NULL;
    size_t n = r1 - r0;
    if (p->residual && b)
        for (size_t i = 0; i < n; i++)
            yr[i] += vr[i] + b[i];
    else if (p->residual)
        for (size_t i = 0; i < n; i++)
            yr[i] += vr[i];
    else if (b)
        for (size_t i = 0; i < n; i++)
            yr[i] = vr[i] + b[i];
    else
        memcpy(yr, vr, n * sizeof(float));
}

/* A segment: the products in dst (y itself, or tmp for a residual) plus the bias into y. */
static void mm_finish_cols(const struct mm_part *p, size_t n_cols, size_t r0, size_t r1, float *y,
                           const float *dst)
{
    for (size_t c = 0; c < n_cols; c++) {
        float *yc = y + c * p->ldy;
        const float *t = dst + c * p->ldy;
        for (size_t r = r0; r < r1; r++) {
            float v = t[r] + (p->bias ? p->bias[r] : 0.0f);
            yc[r] = p->residual ? yc[r] + v : v;
        }
    }
}

/* Weight rows [r0, r1) against every segment: one matrix-matrix call each. */
static void mm_segments(const struct mm_job *j, const struct mm_part *p, size_t r0, size_t r1,
                        float *scratch)
{
    const struct llm_mat *w = p->w;
    for (uint32_t i = 0; i < j->cols->n_seg; i++) {
        const struct mm_seg *sg = &j->cols->seg[i];
        const float *x = j->x + (size_t)sg->row0 * j->ldx;
        float *y = sg->y ? sg->y : p->y + (size_t)sg->row0 * p->ldy;
        float *dst = p->residual ? p->tmp + (size_t)sg->row0 * p->ldy : y;
        if (w->type == MEMFIT_TYPE_NF4)
            memfit_nf4_matmul_rows(&w->nf4, r0, r1, x, j->ldx, sg->n, dst, p->ldy, scratch);
        else /* Shapes and types were checked at open: this cannot fail. */
            memfit_matmul_rows(w->type, w->data, w->row_bytes, w->cols, r0, r1, x,
                               j->ldx * sizeof(float), sg->n, dst, p->ldy);
        mm_finish_cols(p, sg->n, r0, r1, y, dst);
    }
}

/* Weight rows a dot-row product takes at a time: their products (MM_CHUNK floats per sequence)
 * stay on the stack, and the rows stay in cache while every sequence reads them. */
#define MM_CHUNK 128

/* Weight rows [r0, r1) against every dot row: each weight row read once, dotted with all. */
static void mm_dots(const struct mm_job *j, const struct mm_part *p, size_t r0, size_t r1)
{
    const struct llm_mat *w = p->w;
    uint32_t n_dot = j->cols->n_dot;
    float *ys[LLM_MAX_SEQ];
    for (uint32_t i = 0; i < n_dot; i++) {
        const struct mm_dot *d = &j->cols->dot[i];
        ys[i] = d->y ? d->y : p->y + (size_t)d->row * p->ldy;
    }
    if (w->type == MEMFIT_TYPE_NF4) { /* bitsandbytes' layout in place: its own row kernel */
        float v[MM_CHUNK];
        for (size_t r = r0; r < r1; r += MM_CHUNK) {
            size_t e = r + MM_CHUNK < r1 ? r + MM_CHUNK : r1;
            for (uint32_t i = 0; i < n_dot; i++) {
                memfit_nf4_matvec_rows(&w->nf4, r, e, p->act[i], v);
                mm_store(p, ys[i], r, e, v);
            }
        }
        return;
    }
    const uint8_t *wd = w->data;
    size_t rb = w->row_bytes, n = w->cols;
    const struct mf_type_traits *t = mf_type_traits(w->type);
    mf_vec_dot_cols_fn dot_cols = w->dot_cols;
    if (t->vec_dot_rows_cols && n_dot > 1) {
        /* Chunks of MM_CHUNK rows, each row read once per 4 sequences (the kernel's
         * column group); a row's value is what it is alone. */
        float v[4 * MM_CHUNK];
        for (size_t r = r0; r < r1; r += MM_CHUNK) {
            size_t e = r + MM_CHUNK < r1 ? r + MM_CHUNK : r1;
            for (uint32_t c0 = 0; c0 < n_dot; c0 += 4) {
                uint32_t nc = n_dot - c0 < 4 ? n_dot - c0 : 4;
                t->vec_dot_rows_cols(n, wd + r * rb, rb, (const void *const *)&p->act[c0], nc, v,
                                     MM_CHUNK, e - r);
                for (uint32_t i = 0; i < nc; i++)
                    mm_store(p, ys[c0 + i], r, e, v + (size_t)i * MM_CHUNK);
            }
        }
        return;
    }
    if (t->vec_dot_rows || !dot_cols) {
        /* The type's multi-row kernel (the activation prepared once per chunk), or its
         * vec_dot row by row: each sequence in turn over a chunk of MM_CHUNK rows, which the
         * later sequences read from cache. A row's value is what it is alone. */
        float v[MM_CHUNK];
        bool direct = !p->bias && !p->residual; /* the products are y itself */
        for (size_t r = r0; r < r1; r += MM_CHUNK) {
            size_t e = r + MM_CHUNK < r1 ? r + MM_CHUNK : r1;
            for (uint32_t i = 0; i < n_dot; i++) {
                mf_vec_dot_rows(t, n, wd + r * rb, rb, p->act[i], direct ? ys[i] + r : v, e - r);
                if (!direct)
                    mm_store(p, ys[i], r, e, v);
            }
        }
        return;
    }
    /* The multi-column kernel: each weight block unpacked once for every sequence; a
     * column's value is what it would be alone (dot_cols' contract), so one sequence
     * takes it too. */
    float vs[LLM_MAX_SEQ];
    for (size_t r = r0; r < r1; r++) {
        float b = p->bias ? p->bias[r] : 0.0f;
        dot_cols(n, wd + r * rb, p->act, n_dot, vs);
        for (uint32_t i = 0; i < n_dot; i++) {
            float v = vs[i] + b;
            if (p->residual)
                ys[i][r] += v;
            else
                ys[i][r] = v;
        }
    }
}

static void mm_run(void *ctx, uint64_t begin, uint64_t end, unsigned thread)
{
    const struct mm_job *j = ctx;
    float *scratch = (float *)(j->threads + (size_t)thread * j->thread_bytes + j->t_wrow);
    for (int i = 0; i < j->n; i++) {
        uint64_t lo = begin > j->off[i] ? begin : j->off[i];
        uint64_t hi = end < j->off[i + 1] ? end : j->off[i + 1];
        if (lo >= hi)
            continue;
        size_t r0 = (size_t)(lo - j->off[i]), r1 = (size_t)(hi - j->off[i]);
        if (j->cols->n_seg)
            mm_segments(j, &j->p[i], r0, r1, scratch);
        if (j->cols->n_dot)
            mm_dots(j, &j->p[i], r0, r1);
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

/* Fewest weight rows a thread takes at a time in the dot rows' products (a 2048-column Q4_0
 * matrix: 36 KB, about a microsecond and a half from memory). */
#define MM_DOT_GRAIN 32

/*
 * Runs a group of matrices that read the same input (float rows at src, ldx
 * floats apart) for the rows `cols` names: the dot rows' activations
 * quantized once per dot type, the segments through the matrix-matrix kernel.
 */
static void mm_group(struct fwd *f, struct mm_job *j, const float *src, size_t ldx,
                     const struct mm_cols *cols)
{
    const struct llm_layout *L = f->L;
    j->cols = cols;
    j->x = src;
    j->ldx = ldx;
    j->threads = f->work + L->threads;
    j->thread_bytes = L->thread_bytes;
    j->t_wrow = L->t_wrow;
    bool have_q8_0 = false, have_q8_k = false;
    for (int i = 0; i < j->n; i++) {
        struct mm_part *p = &j->p[i];
        size_t n = p->w->cols;
        for (uint32_t d = 0; d < cols->n_dot; d++) {
            const float *row = src + (size_t)cols->dot[d].row * ldx;
            switch (p->w->dot_type) {
            case MEMFIT_TYPE_Q8_0:
                p->act[d] = f->act_q8_0 + d * L->act_q8_0_bytes;
                if (!have_q8_0)
                    f->s0->q8_0_tr->from_float(row, f->act_q8_0 + d * L->act_q8_0_bytes, n);
                break;
            case MEMFIT_TYPE_Q8_K:
                p->act[d] = f->act_q8_k + d * L->act_q8_k_bytes;
                if (!have_q8_k)
                    f->s0->q8_k_tr->from_float(row, f->act_q8_k + d * L->act_q8_k_bytes, n);
                break;
            default: /* F32, checked at open */
                p->act[d] = row;
                break;
            }
        }
        have_q8_0 |= p->w->dot_type == MEMFIT_TYPE_Q8_0;
        have_q8_k |= p->w->dot_type == MEMFIT_TYPE_Q8_K;
    }
    if (cols->n_seg) /* the matrix-matrix kernel: one static range per thread */
        memfit_threadpool_parallel_for(f->pool, j->off[j->n], mm_run, j);
    else /* dot rows only: each row's value is the same however the rows are split */
        memfit_threadpool_parallel_for_dynamic(f->pool, j->off[j->n], MM_DOT_GRAIN, mm_run, j);
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
    const struct memfit_llm_info *in = f->in;
    const struct llm_layout *L = f->L;
    size_t hd = in->head_dim, Q = (size_t)in->n_head * hd;
    uint32_t i = (uint32_t)(item / in->n_head), h = (uint32_t)(item % in->n_head);
    const struct memfit_llm_session *s = f->rows[i].s;
    uint32_t kvh = h / (in->n_head / in->n_head_kv), n_keys = f->rows[i].pos + 1;
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
    mf_vec_dot_rows(s->kv_tr, hd, K, rb, qa, scores, n_keys);
    float mx = -INFINITY;
    for (uint32_t t = 0; t < n_keys; t++) {
        float v = scores[t] * j->scale;
        scores[t] = v;
        if (v > mx)
            mx = v;
    }
    for (uint32_t t = 0; t < n_keys; t++)
        scores[t] -= mx;
    memfit_exp(scores, n_keys);
    float sum = 0;
    for (uint32_t t = 0; t < n_keys; t++)
        sum += scores[t];
    memset(acc, 0, hd * sizeof(float));
    mf_axpy_rows(s->kv_tr, hd, V, rb, scores, n_keys, acc, vrow);
    float inv = 1.0f / sum, *out = f->att + i * Q + (size_t)h * hd;
    for (size_t d = 0; d < hd; d++)
        out[d] = acc[d] * inv;
}

static void attn_run(void *ctx, uint64_t begin, uint64_t end, unsigned thread)
{
    const struct attn_job *j = ctx;
    uint8_t *scratch = j->f->work + j->f->L->threads + (size_t)thread * j->f->L->thread_bytes;
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
    uint64_t threads = memfit_threadpool_size(f->pool);
    j.stride = j.n_items < threads ? j.n_items : threads;
    memfit_threadpool_parallel_for(f->pool, j.stride, attn_run, &j);
}

/* ---- Scores ------------------------------------------------------------------------ */

/*
 * A scored row's logits are not kept whole (n_batch x n_vocab floats would be
 * tens of MB): the output matrix is run a slice of the vocabulary at a time
 * (ffn's 2 x n_ff floats a row, free once the layers are done) over every
 * scored row, and each slice is folded into the row's running max and sum of
 * exponentials (kept in its att row) and its top-n (kept in its score, as
 * logits until the last slice). Every weight row is still read once a chunk.
 */
struct score_state {
    double sum;   /* of exp(logit - max) over the slices so far */
    float max;    /* the largest logit so far */
    float target; /* the next token's logit, once its slice has come */
};

struct score_job {
    struct fwd *f;
    size_t v0, nv; /* the slice: vocabulary rows [v0, v0 + nv) */
    size_t ld;     /* floats between two rows' slices (2 x n_ff) */
};

/* Slice rows [v0 + begin, v0 + end) of the output matrix against every scored row. */
static void score_mm_run(void *ctx, uint64_t begin, uint64_t end, unsigned thread)
{
    const struct score_job *j = ctx;
    const struct fwd *f = j->f;
    const struct llm_mat *w = &f->m->output;
    size_t E = f->in->n_embd;
    uint8_t *act = f->work + f->L->threads + (size_t)thread * f->L->thread_bytes + f->L->t_wrow;
    for (uint32_t i = 0; i < f->n_score; i++) {
        const struct score_seg *sg = &f->score[i];
        const float *x = f->xn + (size_t)sg->row0 * E;
        float *y = f->ffn + (size_t)sg->row0 * j->ld;
        if (w->type == MEMFIT_TYPE_NF4) { /* its row kernel against each row in Q8_0 */
            for (uint32_t c = 0; c < sg->n; c++) {
                f->s0->q8_0_tr->from_float(x + c * E, act, E);
                memfit_nf4_matvec_rows(&w->nf4, j->v0 + begin, j->v0 + end, act,
                                       y + c * j->ld + begin);
            }
        } else { /* the slice as a matrix of its own; shapes were checked at open */
            memfit_matmul_rows(w->type, (const uint8_t *)w->data + j->v0 * w->row_bytes,
                               w->row_bytes, w->cols, begin, end, x, E * sizeof(float), sg->n, y,
                               j->ld);
        }
    }
}

/* Keeps logit v of `token` if it is among the n_top largest so far (best first; a later id
 * never passes an equal value: ties go to the lower id). */
static void score_top(struct memfit_token_score *o, uint32_t n_top, int32_t token, float v)
{
    uint32_t k = o->n_top < n_top ? o->n_top : n_top - 1;
    if (o->n_top == n_top && v <= o->top[k].logprob)
        return;
    while (k > 0 && o->top[k - 1].logprob < v) {
        o->top[k] = o->top[k - 1];
        k--;
    }
    o->top[k] = (struct memfit_token_logprob){.token = token, .logprob = v};
    if (o->n_top < n_top)
        o->n_top++;
}

/* Folds the slice into scored rows [begin, end) (numbered across the segments). */
static void score_fold_run(void *ctx, uint64_t begin, uint64_t end, unsigned thread)
{
    const struct score_job *j = ctx;
    const struct fwd *f = j->f;
    size_t Q = (size_t)f->in->n_head * f->in->head_dim;
    bool first = j->v0 == 0, last = j->v0 + j->nv == f->in->n_vocab;
    (void)thread;
    uint32_t i = 0, base = 0;
    for (uint64_t r = begin; r < end; r++) {
        while (r - base >= f->score[i].n)
            base += f->score[i++].n;
        const struct score_seg *sg = &f->score[i];
        uint32_t k = (uint32_t)(r - base), row = sg->row0 + k;
        const float *y = f->ffn + row * j->ld;
        struct memfit_token_score *o = &sg->out[k];
        struct score_state st = {.sum = 0, .max = -INFINITY, .target = -INFINITY};
        if (first)
            o->n_top = 0;
        else
            memcpy(&st, f->att + row * Q, sizeof(st));
        float m = st.max;
        for (size_t v = 0; v < j->nv; v++)
            m = y[v] > m ? y[v] : m;
        double sum = st.sum > 0 ? st.sum * exp((double)st.max - (double)m) : 0.0;
        for (size_t v = 0; v < j->nv; v++)
            sum += mf_expf(y[v] - m);
        st.sum = sum;
        st.max = m;
        size_t next = (size_t)sg->next[k];
        if (next >= j->v0 && next < j->v0 + j->nv)
            st.target = y[next - j->v0];
        for (size_t v = 0; sg->n_top && v < j->nv; v++)
            score_top(o, sg->n_top, (int32_t)(j->v0 + v), y[v]);
        if (!last) {
            memcpy(f->att + row * Q, &st, sizeof(st));
            continue;
        }
        float lse = (float)((double)m + log(sum));
        o->token = sg->next[k];
        o->logprob = st.target - lse;
        for (uint32_t t = 0; t < o->n_top; t++)
            o->top[t].logprob -= lse;
    }
}

/* The scored rows' log-softmax at their next tokens, and their top-n. */
static void score_rows(struct fwd *f)
{
    size_t V = f->in->n_vocab;
    struct score_job j = {.f = f, .ld = 2 * (size_t)f->in->n_ff};
    uint32_t n_rows = 0;
    for (uint32_t i = 0; i < f->n_score; i++) {
        norm_rows(f, f->m->output_norm, f->score[i].row0, f->score[i].n);
        n_rows += f->score[i].n;
    }
    for (j.v0 = 0; j.v0 < V; j.v0 += j.nv) {
        j.nv = V - j.v0 < j.ld ? V - j.v0 : j.ld;
        memfit_threadpool_parallel_for(f->pool, j.nv, score_mm_run, &j);
        memfit_threadpool_parallel_for(f->pool, n_rows, score_fold_run, &j);
    }
}

/* ---- The forward ------------------------------------------------------------------- */

static void layer_forward(struct fwd *f, const struct llm_layer *ly)
{
    const struct memfit_llm_info *in = f->in;
    size_t E = in->n_embd, hd = in->head_dim, Q = (size_t)in->n_head * hd;
    size_t KV = (size_t)in->n_head_kv * hd, F = in->n_ff;
    struct mm_job j;
    norm_rows(f, ly->attn_norm, 0, f->nb);
    memset(&j, 0, sizeof(j));
    mm_add(&j, &ly->q, f->q, Q, ly->bq, NULL);
    mm_add(&j, &ly->k, f->kv, 2 * KV, ly->bk, NULL);
    mm_add(&j, &ly->v, f->kv + KV, 2 * KV, ly->bv, NULL);
    mm_group(f, &j, f->xn, E, &f->cols);
    memfit_threadpool_parallel_for(f->pool, f->nb, rope_store_run, f);
    attention(f);
    memset(&j, 0, sizeof(j));
    mm_add(&j, &ly->o, f->x, E, ly->bo, f->xn);
    mm_group(f, &j, f->att, Q, &f->cols);
    norm_rows(f, ly->ffn_norm, 0, f->nb);
    memset(&j, 0, sizeof(j));
    mm_add(&j, &ly->gate, f->ffn, 2 * F, NULL, NULL);
    mm_add(&j, &ly->up, f->ffn + F, 2 * F, NULL, NULL);
    mm_group(f, &j, f->xn, E, &f->cols);
    memfit_threadpool_parallel_for(f->pool, f->nb, swiglu_run, f);
    memset(&j, 0, sizeof(j));
    mm_add(&j, &ly->down, f->x, E, NULL, f->xn);
    mm_group(f, &j, f->ffn, 2 * F, &f->cols);
}

static void embed_run(void *ctx, uint64_t begin, uint64_t end, unsigned thread)
{
    const struct fwd *f = ctx;
    const struct llm_mat *e = &f->m->tok_embd;
    const struct mf_type_traits *tr = mf_type_traits(e->type);
    (void)thread;
    for (uint64_t i = begin; i < end; i++)
        tr->to_float((const uint8_t *)e->data + (size_t)f->rows[i].token * e->row_bytes,
                     f->x + i * e->cols, e->cols);
}

/* A forward in workspace `work` of layout L on `pool`; rows, cols and out filled by the caller. */
static void fwd_init(struct fwd *f, const struct memfit_llm_session *s0, const struct llm_layout *L,
                     memfit_threadpool *pool, uint8_t *work)
{
    memset(f, 0, sizeof(*f));
    f->m = s0->m;
    f->in = &s0->m->info;
    f->L = L;
    f->pool = pool;
    f->work = work;
    f->s0 = s0;
    f->rows = (const struct llm_row *)(work + L->rows);
    f->x = (float *)(work + L->x);
    f->xn = (float *)(work + L->xn);
    f->q = (float *)(work + L->q);
    f->kv = (float *)(work + L->kv);
    f->att = (float *)(work + L->att);
    f->ffn = (float *)(work + L->ffn);
    f->rope = (float *)(work + L->rope);
    f->act_q8_0 = work + L->act_q8_0;
    f->act_q8_k = work + L->act_q8_k;
}

/* Whether a request's tokens go through the dot products (one at a time) rather than in
 * segments: the same answer for a session alone and in a group. */
static bool req_is_dots(const struct llm_req *r, const struct llm_layout *L)
{
    return r->n == 1 || L->n_batch == 1;
}

/* Tokens of request r that the next forward takes: a dot row, or its next chunk. */
static uint32_t req_take(const struct llm_req *r, const struct llm_layout *L)
{
    if (req_is_dots(r, L))
        return 1;
    size_t left = r->n - r->done;
    return (uint32_t)(left < L->n_batch ? left : L->n_batch);
}

/*
 * Lays out the rows of a forward for requests req[0..n) of sessions ses[], taking
 * take[k] tokens of each: segments first, then dot rows; and the rows whose
 * logits are wanted. The rows array is the workspace's.
 */
static void fwd_plan(struct fwd *f, memfit_llm_session *const *ses, const uint32_t *take,
                     uint32_t n)
{
    struct llm_row *rows = (struct llm_row *)(f->work + f->L->rows);
    size_t V = f->in->n_vocab;
    uint32_t row = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (uint32_t k = 0; k < n; k++) {
            memfit_llm_session *s = ses[k];
            const struct llm_req *r = &s->req;
            bool dots = req_is_dots(r, f->L);
            if (dots != (pass == 1))
                continue;
            for (uint32_t t = 0; t < take[k]; t++)
                rows[row + t] =
                    (struct llm_row){.s = s, .pos = s->pos + t, .token = r->tokens[r->done + t]};
            bool last = r->done + take[k] == r->n;
            float *all = r->logits && r->all_logits ? r->logits + r->done * V : NULL;
            if (dots)
                f->cols.dot[f->cols.n_dot++] = (struct mm_dot){.row = row};
            else
                f->cols.seg[f->cols.n_seg++] = (struct mm_seg){.row0 = row, .n = take[k]};
            if (all && !dots)
                f->out.seg[f->out.n_seg++] = (struct mm_seg){.row0 = row, .n = take[k], .y = all};
            else if (all || (r->logits && last))
                f->out.dot[f->out.n_dot++] =
                    (struct mm_dot){.row = row + take[k] - 1, .y = all ? all : r->logits};
            /* Every token but the request's last is scored (its next token is known). */
            size_t scored = r->scores && r->done + 1 < r->n ? r->n - 1 - r->done : 0;
            if (scored)
                f->score[f->n_score++] =
                    (struct score_seg){.row0 = row,
                                       .n = (uint32_t)(scored < take[k] ? scored : take[k]),
                                       .n_top = r->n_top,
                                       .next = r->tokens + r->done + 1,
                                       .out = r->scores + r->done};
            row += take[k];
        }
    }
    f->nb = row;
}

/* The planned rows through the model; logits of the rows f->out names. */
static void forward(struct fwd *f)
{
    memfit_threadpool_parallel_for(f->pool, f->nb, embed_run, f);
    rope_table(f);
    for (uint32_t l = 0; l < f->in->n_layer; l++) {
        f->layer = l;
        layer_forward(f, &f->m->layers[l]);
    }
    if (f->n_score)
        score_rows(f);
    if (f->out.n_seg + f->out.n_dot == 0)
        return;
    for (uint32_t i = 0; i < f->out.n_seg; i++)
        norm_rows(f, f->m->output_norm, f->out.seg[i].row0, f->out.seg[i].n);
    for (uint32_t i = 0; i < f->out.n_dot; i++)
        norm_rows(f, f->m->output_norm, f->out.dot[i].row, 1);
    struct mm_job j;
    memset(&j, 0, sizeof(j));
    mm_add(&j, &f->m->output, NULL, f->in->n_vocab, NULL, NULL);
    mm_group(f, &j, f->xn, f->in->n_embd, &f->out);
}

/* ---- Groups: batching the sessions' evaluations ------------------------------------- */

enum memfit_status memfit_llm_group_create(memfit_llm *m, const struct memfit_llm_options *opts,
                                           uint32_t n_sessions, memfit_llm_group **out)
{
    struct memfit_llm_options defaults;
    if (!m || !out)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_llm_group_create: NULL argument");
    if (!opts) {
        memfit_llm_options_default(&defaults);
        opts = &defaults;
    }
    struct llm_layout L;
    enum memfit_status st = mf_llm_layout(&m->info, opts, n_sessions, &L);
    if (st != MEMFIT_OK)
        return st;
    struct memfit_llm_group *g = memfit_calloc_in(MEMFIT_ALLOC_MODEL, 1, sizeof(*g));
    if (!g)
        return MEMFIT_E_NOMEM;
    g->m = m;
    g->L = L;
    g->sessions = memfit_calloc_in(MEMFIT_ALLOC_MODEL, n_sessions, sizeof(*g->sessions));
    g->work = mf_map_anon(L.work_bytes);
    st = g->sessions && g->work ? MEMFIT_OK : MEMFIT_E_NOMEM;
    if (st == MEMFIT_OK)
        st = memfit_threadpool_create(L.n_threads, &g->pool);
    for (uint32_t i = 0; st == MEMFIT_OK && i < n_sessions; i++) {
        if ((st = session_new(m, &L, false, &g->sessions[i])) == MEMFIT_OK) {
            g->sessions[i]->group = g;
            g->n_sessions++;
        }
    }
    pthread_condattr_t ca;
    bool cond_ok = false;
    if (st == MEMFIT_OK && pthread_condattr_init(&ca) == 0) {
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        if (pthread_cond_init(&g->submitted, &ca) == 0) {
            if (pthread_cond_init(&g->stepped, &ca) == 0) {
                if (pthread_mutex_init(&g->lock, NULL) == 0)
                    cond_ok = true;
                else
                    pthread_cond_destroy(&g->stepped);
            }
            if (!cond_ok)
                pthread_cond_destroy(&g->submitted);
        }
        pthread_condattr_destroy(&ca);
    }
    if (st == MEMFIT_OK && !cond_ok)
        st = memfit_fail(MEMFIT_E_NOMEM, "llm: cannot create a group's lock");
    if (st != MEMFIT_OK) {
        for (uint32_t i = 0; i < g->n_sessions; i++)
            session_destroy(g->sessions[i]);
        memfit_threadpool_destroy(g->pool);
        if (g->work)
            mf_unmap_anon(g->work, L.work_bytes);
        memfit_free(g->sessions);
        memfit_free(g);
        return st;
    }
    *out = g;
    return MEMFIT_OK;
}

void memfit_llm_group_free(memfit_llm_group *g)
{
    if (!g)
        return;
    for (uint32_t i = 0; i < g->n_sessions; i++)
        session_destroy(g->sessions[i]);
    memfit_threadpool_destroy(g->pool);
    mf_unmap_anon(g->work, g->L.work_bytes);
    pthread_mutex_destroy(&g->lock);
    pthread_cond_destroy(&g->submitted);
    pthread_cond_destroy(&g->stepped);
    memfit_free(g->sessions);
    memfit_free(g);
}

memfit_llm_session *memfit_llm_group_session(const memfit_llm_group *g, uint32_t i)
{
    return g && i < g->n_sessions ? g->sessions[i] : NULL;
}

void memfit_llm_group_get_stats(memfit_llm_group *g, struct memfit_llm_group_stats *out)
{
    pthread_mutex_lock(&g->lock);
    *out = g->stats;
    pthread_mutex_unlock(&g->lock);
}

static void set_joined(memfit_llm_session *s, bool joined)
{
    struct memfit_llm_group *g = s ? s->group : NULL;
    if (!g)
        return;
    pthread_mutex_lock(&g->lock);
    s->joined = joined;
    pthread_cond_broadcast(&g->submitted); /* a leader waiting for it waits no more */
    pthread_mutex_unlock(&g->lock);
}

void memfit_llm_session_join(memfit_llm_session *s)
{
    set_joined(s, true);
}

void memfit_llm_session_leave(memfit_llm_session *s)
{
    set_joined(s, false);
}

/* Whether a joined session has not asked for its next token yet (under lock). */
static bool joined_missing(const struct memfit_llm_group *g)
{
    for (uint32_t i = 0; i < g->n_sessions; i++)
        if (g->sessions[i]->joined && !g->sessions[i]->pending)
            return true;
    return false;
}

/* Waits (under lock) a fraction of the last forward's time, 0.5 to 10 ms, for the joined
 * sessions' requests: sequences that generate together stay in one forward. */
static void wait_for_joined(struct memfit_llm_group *g)
{
    uint64_t wait_ns = g->last_step_ns / 8;
    wait_ns = wait_ns < 500000 ? 500000 : wait_ns > 10000000 ? 10000000 : wait_ns;
    uint64_t deadline = memfit_now_ns() + wait_ns;
    struct timespec ts = {.tv_sec = (time_t)(deadline / 1000000000u),
                          .tv_nsec = (long)(deadline % 1000000000u)};
    while (joined_missing(g))
        if (pthread_cond_timedwait(&g->submitted, &g->lock, &ts) == ETIMEDOUT)
            break;
}

/* Runs one forward for the pending requests; called and returning with the lock held. */
static void lead(struct memfit_llm_group *g)
{
    g->running = true;
    wait_for_joined(g);
    memfit_llm_session *ses[LLM_MAX_SEQ];
    uint32_t take[LLM_MAX_SEQ], n = 0, n_seg_rows = 0;
    for (uint32_t i = 0; i < g->n_pending; i++) {
        memfit_llm_session *s = g->pending[i];
        uint32_t t = req_take(&s->req, &g->L);
        if (!req_is_dots(&s->req, &g->L)) {
            if (n_seg_rows + t > g->L.n_batch)
                continue; /* the next forward's: as alone, a chunk is never cut */
            n_seg_rows += t;
        }
        ses[n] = s;
        take[n++] = t;
    }
    struct fwd f;
    fwd_init(&f, ses[0], &g->L, g->pool, g->work);
    fwd_plan(&f, ses, take, n);
    pthread_mutex_unlock(&g->lock);
    uint64_t t0 = memfit_now_ns();
    for (uint32_t k = 0; k < n; k++) /* outside the lock: some syscalls every 64 positions */
        kv_reach(ses[k], ses[k]->pos + take[k]);
    forward(&f);
    uint64_t dt = memfit_now_ns() - t0;
    pthread_mutex_lock(&g->lock);
    for (uint32_t k = 0; k < n; k++) {
        ses[k]->req.done += take[k];
        ses[k]->pos += take[k];
        if (ses[k]->req.done == ses[k]->req.n)
            ses[k]->pending = false;
    }
    uint32_t kept = 0;
    for (uint32_t i = 0; i < g->n_pending; i++)
        if (g->pending[i]->pending)
            g->pending[kept++] = g->pending[i];
    g->n_pending = kept;
    g->last_step_ns = dt;
    g->stats.steps++;
    g->stats.rows += f.nb;
    g->running = false;
    pthread_cond_broadcast(&g->stepped);
}

static void group_eval(memfit_llm_session *s, const struct llm_req *r)
{
    struct memfit_llm_group *g = s->group;
    pthread_mutex_lock(&g->lock);
    s->req = *r;
    s->pending = true;
    g->pending[g->n_pending++] = s;
    pthread_cond_broadcast(&g->submitted);
    while (s->pending) {
        if (!g->running)
            lead(g);
        else
            pthread_cond_wait(&g->stepped, &g->lock);
    }
    pthread_mutex_unlock(&g->lock);
}

/* ---- Evaluation ------------------------------------------------------------------- */

/* Checks request r of session s and runs it (alone, or batched with its group's). */
static enum memfit_status eval_req(memfit_llm_session *s, const struct llm_req *req)
{
    const int32_t *tokens = req->tokens;
    size_t n = req->n;
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
    struct llm_req r = *req;
    if (s->group) {
        group_eval(s, &r);
        return MEMFIT_OK;
    }
    s->req = r;
    while (s->req.done < n) {
        uint32_t take = req_take(&s->req, &s->L);
        struct fwd f;
        fwd_init(&f, s, &s->L, s->pool, s->work);
        fwd_plan(&f, &s, &take, 1);
        kv_reach(s, s->pos + take);
        forward(&f);
        s->req.done += take;
        s->pos += take;
    }
    return MEMFIT_OK;
}

enum memfit_status memfit_llm_eval(memfit_llm_session *s, const int32_t *tokens, size_t n,
                                   float *logits, bool all_logits)
{
    if (!s || (!tokens && n))
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_llm_eval: NULL argument");
    struct llm_req r = {.tokens = tokens, .n = n, .logits = logits, .all_logits = all_logits};
    return eval_req(s, &r);
}

enum memfit_status memfit_llm_eval_score(memfit_llm_session *s, const int32_t *tokens, size_t n,
                                         float *logits, uint32_t n_top,
                                         struct memfit_token_score *scores)
{
    if (!s || !tokens || (!scores && n > 1))
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_llm_eval_score: NULL argument");
    if (n_top > MEMFIT_MAX_TOP_LOGPROBS)
        return memfit_fail(MEMFIT_E_RANGE, "llm: %u top tokens asked; at most %d", n_top,
                           MEMFIT_MAX_TOP_LOGPROBS);
    /* The running sums live in the att rows: never too small for a real model. */
    if ((size_t)s->m->info.n_head * s->m->info.head_dim * sizeof(float) <
        sizeof(struct score_state))
        return memfit_fail(MEMFIT_E_UNSUPPORTED,
                           "llm: scoring needs an attention row of %zu "
                           "bytes",
                           sizeof(struct score_state));
    struct llm_req r = {.tokens = tokens,
                        .n = n,
                        .logits = logits,
                        .n_top = n_top,
                        .scores = n > 1 ? scores : NULL};
    return eval_req(s, &r);
}

/*
 * The SAM family: promptable segmentation and automatic masks with
 * segment-anything v1 models (ViT-B/L/H; original or transformers names;
 * .pth, safetensors or GGUF; any stored type).
 *
 * Memory. The weights stay file mappings. One anonymous mapping, made at
 * load, holds what every request needs: the encoder's workspace, the input
 * pixels and the current image embedding. The decoder's and the mask
 * generator's buffers are allocated per request inside the plan, which
 * counts them for the configured largest image (max_image_size) and batch
 * (points_per_batch); a request beyond those reserves the difference from
 * the budget for its duration, or is refused with the figures.
 *
 * One encoder pass per image: the embedding of each image seen is cached,
 * keyed by the SHA-256 of its size and pixels, each entry a reservation of
 * its own in the budget. When a reservation finds no room the oldest
 * entry is dropped first; the cache never makes a request fail.
 * One request at a time per model (the engine's threads use every core).
 */
#include <math.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "engines/family.h"

extern const struct mf_family mf_family_sam;

#define SAM_DEFAULT_MAX_IMAGE 2048 /* original image side planned for */
#define SAM_DEFAULT_BATCH     16   /* points per batch planned for (the seeds' setting) */
#define SAM_DEFAULT_CACHE     4    /* embeddings kept */
#define ALIGN                 64

struct sam_config {
    char *name;
    bool quantize;
    enum memfit_quantize_target target;
    unsigned n_threads;
    uint32_t max_image_size;
    uint32_t points_per_batch; /* 0: "auto" */
    uint32_t cache_entries;
};

struct cache_entry {
    char digest[MEMFIT_SHA256_HEX_LEN + 1];
    float *embedding;
    memfit_reservation *reservation;
    uint64_t last_use;
};

struct sam_loaded {
    struct sam_config *cfg;
    memfit_sam *sam;
    struct memfit_sam_info info;
    memfit_budget *budget;
    pthread_mutex_t lock; /* one request at a time */
    uint8_t *map;         /* encoder workspace | pixels | embedding */
    size_t map_bytes, enc_bytes;
    float *pixels, *embedding;
    uint64_t planned_extra; /* per-request bytes the plan holds beyond the mapping */
    struct cache_entry *cache;
    uint64_t use_clock;
};

/* ---- Detection and configuration --------------------------------------------------------- */

static bool sam_detect(const memfit_tensors *set)
{
    struct memfit_sam_info info;
    bool yes = memfit_sam_detect(set, &info) == MEMFIT_OK;
    memfit_clear_error();
    return yes;
}

static void sam_config_free(void *config)
{
    struct sam_config *c = config;
    if (!c)
        return;
    memfit_free(c->name);
    memfit_free(c);
}

static enum memfit_status parse_option(struct sam_config *c, const struct mf_family_entry *e,
                                       const struct memfit_manifest_option *o)
{
    if (strcmp(o->key, "quantize") == 0) {
        enum memfit_quantize_target t;
        if (memfit_quantize_target_parse(o->value, &t) != MEMFIT_OK || t == MEMFIT_QUANTIZE_NF4 ||
            t == MEMFIT_QUANTIZE_Q4_K_M) {
            memfit_clear_error();
            return memfit_fail(MEMFIT_E_FORMAT,
                               "%s: model '%s': quantize '%s': expected f32, f16, bf16, q8_0, "
                               "q4_0, q4_k or q6_k",
                               e->where, e->name, o->value);
        }
        c->quantize = true;
        c->target = t;
        return MEMFIT_OK;
    }
    if (strcmp(o->key, "threads") == 0)
        return mf_engine_option_u32(e, o, 4096, &c->n_threads);
    if (strcmp(o->key, "embedding_cache") == 0) {
        if (strcmp(o->value, "0") == 0) {
            c->cache_entries = 0;
            return MEMFIT_OK;
        }
        return mf_engine_option_u32(e, o, 4096, &c->cache_entries);
    }
    if (strcmp(o->key, "points_per_batch") == 0) {
        if (strcasecmp(o->value, "auto") == 0) {
            c->points_per_batch = 0;
            return MEMFIT_OK;
        }
        return mf_engine_option_u32(e, o, 65536, &c->points_per_batch);
    }
    return mf_engine_option_unknown(e, o, &mf_family_sam);
}

static enum memfit_status sam_config_create(const struct mf_family_entry *e, void **out)
{
    struct sam_config *c = memfit_calloc(1, sizeof(*c));
    if (!c)
        return MEMFIT_E_NOMEM;
    const struct memfit_manifest_limits *lim = &e->model->limits;
    c->max_image_size = lim->max_image_size ? (uint32_t)lim->max_image_size : SAM_DEFAULT_MAX_IMAGE;
    c->points_per_batch = lim->max_batch ? (uint32_t)lim->max_batch : SAM_DEFAULT_BATCH;
    c->cache_entries = SAM_DEFAULT_CACHE;
    enum memfit_status st = (c->name = memfit_strdup(e->name)) ? MEMFIT_OK : MEMFIT_E_NOMEM;
    for (size_t i = 0; st == MEMFIT_OK && i < e->model->n_options; i++)
        st = parse_option(c, e, &e->model->options[i]);
    if (st != MEMFIT_OK) {
        sam_config_free(c);
        return st;
    }
    *out = c;
    return MEMFIT_OK;
}

/* ---- Plan ------------------------------------------------------------------------------------ */

static size_t align_up(size_t v)
{
    return (v + ALIGN - 1) / ALIGN * ALIGN;
}

/* Per-request bytes of prompts on a width x height image: the decoder's
 * workspace (none when it fits in the encoder's, idle while decoding), the
 * low-res masks and scores of 3 masks, the full-size logits of one and its
 * upsampling scratch, the 3 masks returned. */
static enum memfit_status prompt_bytes(const memfit_sam *m, uint32_t width, uint32_t height,
                                       uint64_t *out)
{
    struct memfit_sam_info in;
    memfit_sam_get_info(m, &in);
    size_t dec, enc;
    enum memfit_status st = memfit_sam_decode_plan(m, &dec);
    if (st == MEMFIT_OK)
        st = memfit_sam_encode_plan(m, &enc);
    if (st != MEMFIT_OK)
        return st;
    if (dec <= enc)
        dec = 0;
    uint64_t px = (uint64_t)width * height, ms = (uint64_t)in.mask_size * in.mask_size;
    uint64_t S2 = (uint64_t)in.image_size * in.image_size;
    *out = dec + 3 * (ms + 1) * sizeof(float) + (S2 + px) * sizeof(float) + 3 * px;
    return MEMFIT_OK;
}

/* The AMG parameters a request of `batch` points per batch plans with. */
static void amg_for_batch(uint32_t batch, struct memfit_sam_amg_params *p)
{
    *p = memfit_sam_amg_params_default();
    if (batch)
        p->points_per_batch = batch;
}

/* The generator's hooks: embeddings from the model (cached), no reserve. */
static const struct memfit_sam_amg_hooks plan_hooks = {.embed = NULL};

static enum memfit_status amg_plan(const memfit_sam *m, const struct memfit_sam_amg_params *p,
                                   uint32_t w, uint32_t h, size_t *out)
{
    /* Any non-NULL embed callback: the encoder's workspace is the model's own. */
    struct memfit_sam_amg_hooks hooks = plan_hooks;
    hooks.embed = (memfit_sam_embed_fn)1;
    return memfit_sam_amg_plan(m, p, &hooks, w, h, out);
}

/* Per-request bytes beyond the mapping for the largest planned request. */
static enum memfit_status request_bytes(const memfit_sam *m, const struct sam_config *c,
                                        uint64_t *out)
{
    uint64_t prompts;
    enum memfit_status st = prompt_bytes(m, c->max_image_size, c->max_image_size, &prompts);
    if (st != MEMFIT_OK)
        return st;
    struct memfit_sam_amg_params p;
    amg_for_batch(c->points_per_batch ? c->points_per_batch : SAM_DEFAULT_BATCH, &p);
    size_t amg = 0;
    if ((st = amg_plan(m, &p, c->max_image_size, c->max_image_size, &amg)) != MEMFIT_OK)
        return st;
    *out = prompts > amg ? prompts : amg;
    return MEMFIT_OK;
}

/* The mapping: encoder workspace | pixels (3 S^2) | embedding (C G^2). */
static enum memfit_status mapping_bytes(const memfit_sam *m, size_t *enc, size_t *total)
{
    struct memfit_sam_info in;
    memfit_sam_get_info(m, &in);
    enum memfit_status st = memfit_sam_encode_plan(m, enc);
    if (st != MEMFIT_OK)
        return st;
    size_t S2 = (size_t)in.image_size * in.image_size, G2 = (size_t)in.grid * in.grid;
    *total = align_up(*enc) + align_up(3 * S2 * sizeof(float)) +
             align_up((size_t)in.prompt_dim * G2 * sizeof(float));
    return MEMFIT_OK;
}

static void sam_options(const struct sam_config *c, struct memfit_sam_options *o)
{
    memfit_sam_options_default(o);
    o->n_threads = c->n_threads;
}

static enum memfit_status sam_plan(void *config, const char *path, struct memfit_engine_plan *out)
{
    struct sam_config *c = config;
    struct memfit_sam_options o;
    sam_options(c, &o);
    memfit_sam *m;
    enum memfit_status st = memfit_sam_open(path, &o, &m);
    if (st != MEMFIT_OK)
        return st;
    struct memfit_sam_info info;
    memfit_sam_get_info(m, &info);
    size_t enc = 0, map = 0;
    uint64_t extra = 0;
    st = mapping_bytes(m, &enc, &map);
    if (st == MEMFIT_OK)
        st = request_bytes(m, c, &extra);
    memfit_sam_close(m);
    if (st != MEMFIT_OK)
        return st;
    out->max_batch = c->points_per_batch;
    out->max_image_size = c->max_image_size;
    out->cost.bytes[MEMFIT_BUDGET_WEIGHTS] = info.weight_bytes;
    out->cost.bytes[MEMFIT_BUDGET_CONVERTED_WEIGHTS] = info.converted_bytes;
    out->cost.bytes[MEMFIT_BUDGET_WORKSPACE] = map + extra;
    return MEMFIT_OK;
}

/* ---- The `quantize` copy ----------------------------------------------------------------------
 */

static const char *sam_convert_type(const void *config)
{
    const struct sam_config *c = config;
    return c->quantize ? memfit_quantize_target_name(c->target) : NULL;
}

static enum memfit_status sam_convert(void *config, const char *src, const char *dst)
{
    const struct sam_config *c = config;
    struct memfit_quantize_options o;
    memfit_quantize_options_default(&o);
    o.target = c->target;
    o.format = MEMFIT_FORMAT_GGUF;
    o.overwrite = true; /* dst is the caller's fresh temporary file */
    o.n_threads = c->n_threads;
    return memfit_quantize_file(src, dst, &o, NULL);
}

static enum memfit_status sam_convert_estimate(void *config, const char *src,
                                               struct memfit_engine_plan *plan)
{
    const struct sam_config *c = config;
    memfit_tensors *set;
    enum memfit_status st = memfit_tensors_open(src, NULL, &set);
    if (st != MEMFIT_OK)
        return st;
    uint64_t bytes = 0;
    for (size_t i = 0; i < memfit_tensors_count(set) && st == MEMFIT_OK; i++) {
        struct memfit_tensor_info t;
        if ((st = memfit_tensors_get(set, i, &t)) == MEMFIT_OK)
            bytes += memfit_quantize_tensor_bytes(&t, c->target, 0);
    }
    memfit_tensors_close(set);
    if (st != MEMFIT_OK)
        return st;
    /* Every tensor the copy keeps in float is F32 in it: nothing converts at open. */
    plan->cost.bytes[MEMFIT_BUDGET_WEIGHTS] = bytes;
    plan->cost.bytes[MEMFIT_BUDGET_CONVERTED_WEIGHTS] = 0;
    plan->file_bytes = bytes;
    return MEMFIT_OK;
}

/* ---- Load and unload ------------------------------------------------------------------------- */

static void cache_drop(struct cache_entry *e)
{
    memfit_free(e->embedding);
    memfit_budget_release(e->reservation);
    memset(e, 0, sizeof(*e));
}

static void sam_unload(void *config, void *loaded)
{
    (void)config;
    struct sam_loaded *L = loaded;
    for (uint32_t i = 0; L->cache && i < L->cfg->cache_entries; i++)
        cache_drop(&L->cache[i]);
    memfit_free(L->cache);
    memfit_sam_close(L->sam);
    mf_unmap_anon(L->map, L->map_bytes);
    pthread_mutex_destroy(&L->lock);
    memfit_free(L);
}

static enum memfit_status sam_load(void *config, const char *path,
                                   const struct memfit_budget_cost *reserved, memfit_budget *budget,
                                   void **out)
{
    struct sam_config *c = config;
    struct sam_loaded *L = memfit_calloc(1, sizeof(*L));
    if (!L)
        return MEMFIT_E_NOMEM;
    if (pthread_mutex_init(&L->lock, NULL) != 0) {
        memfit_free(L);
        return MEMFIT_E_NOMEM;
    }
    L->cfg = c;
    L->budget = budget;
    struct memfit_sam_options o;
    sam_options(c, &o);
    enum memfit_status st = memfit_sam_open(path, &o, &L->sam);
    if (st == MEMFIT_OK) {
        memfit_sam_get_info(L->sam, &L->info);
        st = mapping_bytes(L->sam, &L->enc_bytes, &L->map_bytes);
    }
    if (st == MEMFIT_OK)
        st = request_bytes(L->sam, c, &L->planned_extra);
    if (st == MEMFIT_OK &&
        L->map_bytes + L->planned_extra > reserved->bytes[MEMFIT_BUDGET_WORKSPACE])
        st = memfit_fail(MEMFIT_E_BUDGET,
                         "model '%s': workspace %llu bytes needed, %llu reserved by the plan",
                         c->name, (unsigned long long)(L->map_bytes + L->planned_extra),
                         (unsigned long long)reserved->bytes[MEMFIT_BUDGET_WORKSPACE]);
    if (st == MEMFIT_OK && !(L->map = mf_map_anon(L->map_bytes)))
        st = MEMFIT_E_NOMEM;
    if (st == MEMFIT_OK && c->cache_entries &&
        !(L->cache = memfit_calloc(c->cache_entries, sizeof(*L->cache))))
        st = MEMFIT_E_NOMEM;
    if (st != MEMFIT_OK) {
        sam_unload(c, L);
        return st;
    }
    size_t S2 = (size_t)L->info.image_size * L->info.image_size;
    L->pixels = (float *)(L->map + align_up(L->enc_bytes));
    L->embedding = (float *)((uint8_t *)L->pixels + align_up(3 * S2 * sizeof(float)));
    *out = L;
    return MEMFIT_OK;
}

/* ---- The embedding cache --------------------------------------------------------------------- */

static size_t embedding_floats(const struct sam_loaded *L)
{
    return (size_t)L->info.prompt_dim * L->info.grid * L->info.grid;
}

static enum memfit_status image_digest(const struct memfit_image *img,
                                       char hex[MEMFIT_SHA256_HEX_LEN + 1])
{
    uint32_t size[2] = {img->width, img->height};
    const void *parts[2] = {size, img->rgb};
    size_t lens[2] = {sizeof(size), (size_t)img->width * img->height * 3};
    return memfit_sha256_parts(parts, lens, 2, hex);
}

static struct cache_entry *cache_find(struct sam_loaded *L, const char *digest)
{
    for (uint32_t i = 0; L->cache && i < L->cfg->cache_entries; i++)
        if (L->cache[i].embedding && strcmp(L->cache[i].digest, digest) == 0) {
            L->cache[i].last_use = ++L->use_clock;
            return &L->cache[i];
        }
    return NULL;
}

/* The least recently used entry (empty ones first), or NULL without a cache. */
static struct cache_entry *cache_victim(struct sam_loaded *L)
{
    struct cache_entry *v = NULL;
    for (uint32_t i = 0; L->cache && i < L->cfg->cache_entries; i++) {
        struct cache_entry *e = &L->cache[i];
        if (!e->embedding)
            return e;
        if (!v || e->last_use < v->last_use)
            v = e;
    }
    return v;
}

/* Keeps L->embedding under `digest` if the budget has room, dropping the
 * oldest entries to make it; otherwise it is simply not kept. */
static void cache_insert(struct sam_loaded *L, const char *digest)
{
    size_t bytes = embedding_floats(L) * sizeof(float);
    struct cache_entry *slot = cache_victim(L);
    if (!slot)
        return;
    if (slot->embedding)
        cache_drop(slot);
    memfit_reservation *r = NULL;
    char owner[160];
    snprintf(owner, sizeof(owner), "%s (embedding cache)", L->cfg->name);
    for (;;) {
        /* Only free room: a cached embedding must not make the budget's
         * evictor unload another model. */
        struct memfit_budget_usage u = {0};
        if (L->budget)
            memfit_budget_get_usage(L->budget, &u);
        if (!L->budget ||
            (u.free_bytes >= bytes && memfit_budget_reserve(L->budget, MEMFIT_BUDGET_WORKSPACE,
                                                            bytes, owner, 0, &r) == MEMFIT_OK))
            break;
        memfit_clear_error();
        struct cache_entry *old = NULL;
        for (uint32_t i = 0; i < L->cfg->cache_entries; i++)
            if (L->cache[i].embedding && (!old || L->cache[i].last_use < old->last_use))
                old = &L->cache[i];
        if (!old)
            return; /* no room even with the cache empty: not kept */
        cache_drop(old);
    }
    float *copy = memfit_malloc(bytes);
    if (!copy) {
        memfit_budget_release(r);
        memfit_clear_error();
        return;
    }
    memcpy(copy, L->embedding, bytes);
    memcpy(slot->digest, digest, sizeof(slot->digest));
    slot->embedding = copy;
    slot->reservation = r;
    slot->last_use = ++L->use_clock;
}

/* L->embedding for `img`: from the cache, or preprocess + encode. */
static enum memfit_status embed_image(struct sam_loaded *L, const struct memfit_image *img,
                                      bool *cached, double *seconds)
{
    char digest[MEMFIT_SHA256_HEX_LEN + 1];
    bool keyed = L->cache && image_digest(img, digest) == MEMFIT_OK;
    memfit_clear_error();
    struct cache_entry *e = keyed ? cache_find(L, digest) : NULL;
    *cached = e != NULL;
    if (e) {
        memcpy(L->embedding, e->embedding, embedding_floats(L) * sizeof(float));
        return MEMFIT_OK;
    }
    uint64_t t0 = memfit_now_ns();
    enum memfit_status st = memfit_sam_preprocess(img, L->info.image_size, L->pixels);
    if (st == MEMFIT_OK)
        st = memfit_sam_encode(L->sam, L->pixels, L->map, L->enc_bytes, L->embedding);
    *seconds = (double)(memfit_now_ns() - t0) / 1e9;
    if (st == MEMFIT_OK && keyed)
        cache_insert(L, digest);
    return st;
}

/* ---- Segmentation --------------------------------------------------------------------------- */

void memfit_segment_params_default(struct memfit_segment_params *p)
{
    memset(p, 0, sizeof(*p));
    p->multimask = true;
    p->amg = memfit_sam_amg_params_default();
    p->amg.points_per_batch = 0; /* the model's planned batch */
}

void memfit_segment_result_free(struct memfit_segment_result *r)
{
    if (!r)
        return;
    memfit_free(r->masks);
    memfit_free(r->iou);
    memfit_free(r->low_res);
    memfit_free(r->embedding);
    memfit_sam_masks_free(&r->records);
    memset(r, 0, sizeof(*r));
}

/* Holds `bytes` of per-request memory: inside the plan, or reserved. */
static enum memfit_status hold_extra(struct sam_loaded *L, uint64_t bytes,
                                     const struct memfit_segment_params *p, memfit_reservation **r)
{
    *r = NULL;
    if (bytes <= L->planned_extra)
        return MEMFIT_OK;
    uint64_t more = bytes - L->planned_extra;
    if (!L->budget)
        return memfit_fail(MEMFIT_E_RANGE,
                           "model '%s': the request needs %llu bytes of workspace; the model is "
                           "planned for %llu",
                           L->cfg->name, (unsigned long long)bytes,
                           (unsigned long long)L->planned_extra);
    return memfit_budget_reserve(L->budget, MEMFIT_BUDGET_WORKSPACE, more, L->cfg->name,
                                 p->timeout_ms, r);
}

static enum memfit_status check_prompt(const struct memfit_segment_params *p,
                                       const struct memfit_image *img)
{
    if (p->n_points == 0 && !p->has_box)
        return memfit_fail(MEMFIT_E_RANGE, "segment: a prompt needs a point or a box");
    if (p->n_points > 4096)
        return memfit_fail(MEMFIT_E_RANGE, "segment: %zu points: at most 4096", p->n_points);
    if (p->n_points && (!p->points || !p->labels))
        return memfit_fail(MEMFIT_E_MISUSE, "segment: points without coordinates or labels");
    for (size_t i = 0; i < p->n_points; i++) {
        float x = p->points[2 * i], y = p->points[2 * i + 1];
        if (!isfinite(x) || !isfinite(y))
            return memfit_fail(MEMFIT_E_RANGE, "segment: point %zu is not finite", i);
        if (p->labels[i] != 0 && p->labels[i] != 1)
            return memfit_fail(MEMFIT_E_RANGE,
                               "segment: point %zu: label %d (1 foreground, 0 background)", i,
                               (int)p->labels[i]);
    }
    if (p->has_box) {
        for (int i = 0; i < 4; i++)
            if (!isfinite(p->box[i]))
                return memfit_fail(MEMFIT_E_RANGE, "segment: box is not finite");
        if (p->box[2] < p->box[0] || p->box[3] < p->box[1])
            return memfit_fail(
                MEMFIT_E_RANGE,
                "segment: box %g,%g,%g,%g: x1 < x0 or y1 < y0 (expected x0,y0,x1,y1)", p->box[0],
                p->box[1], p->box[2], p->box[3]);
    }
    (void)img;
    return MEMFIT_OK;
}

static enum memfit_status segment_prompt(struct sam_loaded *L, const struct memfit_image *img,
                                         const struct memfit_segment_params *p,
                                         struct memfit_segment_result *out)
{
    const struct memfit_sam_info *in = &L->info;
    uint32_t W = img->width, H = img->height, rw, rh;
    memfit_sam_resized_size(in->image_size, W, H, &rw, &rh);
    uint32_t C = memfit_sam_mask_count(p->multimask);
    size_t ms = (size_t)in->mask_size * in->mask_size, px = (size_t)W * H;
    size_t S2 = (size_t)in->image_size * in->image_size;
    size_t dec_bytes;
    enum memfit_status st = memfit_sam_decode_plan(L->sam, &dec_bytes);
    if (st != MEMFIT_OK)
        return st;
    /* Prompt coordinates in the model's frame (apply_coords / apply_boxes). */
    float *pts = NULL;
    void *dec = NULL;
    float *scratch = NULL, *logits = NULL;
    if (p->n_points && !(pts = memfit_malloc(p->n_points * 2 * sizeof(float))))
        return MEMFIT_E_NOMEM;
    /* In double, as the reference's numpy arrays, then float. */
    double sx = (double)rw / W, sy = (double)rh / H;
    for (size_t i = 0; i < p->n_points; i++) {
        pts[2 * i] = (float)(p->points[2 * i] * sx);
        pts[2 * i + 1] = (float)(p->points[2 * i + 1] * sy);
    }
    struct memfit_sam_prompt pr = {.points = pts,
                                   .labels = p->labels,
                                   .n_points = p->n_points,
                                   .has_box = p->has_box,
                                   .mask_input = p->mask_input};
    if (p->has_box) {
        for (int i = 0; i < 4; i++)
            pr.box[i] = (float)(p->box[i] * (i % 2 ? sy : sx));
    }
    out->n_masks = C;
    out->mask_size = in->mask_size;
    /* The encoder's workspace is idle now: the decoder works there when it fits. */
    bool own = dec_bytes > L->enc_bytes;
    dec = own ? mf_map_anon(dec_bytes) : L->map;
    if (!dec || !(out->low_res = memfit_malloc(C * ms * sizeof(float))) ||
        !(out->iou = memfit_malloc(C * sizeof(float))) || !(out->masks = memfit_malloc(C * px)) ||
        !(scratch = memfit_malloc(S2 * sizeof(float))) ||
        !(logits = memfit_malloc(px * sizeof(float))))
        st = MEMFIT_E_NOMEM;
    uint64_t t0 = memfit_now_ns();
    if (st == MEMFIT_OK)
        st = memfit_sam_decode(L->sam, L->embedding, &pr, 1, p->multimask, dec, dec_bytes,
                               out->low_res, out->iou);
    for (uint32_t k = 0; st == MEMFIT_OK && k < C; k++) {
        memfit_sam_postprocess(out->low_res + k * ms, in->mask_size, in->image_size, rw, rh, W, H,
                               scratch, logits);
        uint8_t *mask = out->masks + k * px;
        for (size_t i = 0; i < px; i++)
            mask[i] = logits[i] > 0.0f;
    }
    out->decode_seconds = (double)(memfit_now_ns() - t0) / 1e9;
    if (own)
        mf_unmap_anon(dec, dec_bytes);
    memfit_free(scratch);
    memfit_free(logits);
    memfit_free(pts);
    if (!p->want_low_res) {
        memfit_free(out->low_res);
        out->low_res = NULL;
    }
    return st;
}

/* The embedding callback of the mask generator: the full image's is the
 * one already computed; a crop is encoded through the model's workspace. */
static enum memfit_status amg_embed(void *user, size_t crop_index, const int32_t crop_box[4],
                                    const struct memfit_image *crop, float *embedding)
{
    (void)crop_box;
    struct sam_loaded *L = user;
    if (crop_index == 0) {
        memcpy(embedding, L->embedding, embedding_floats(L) * sizeof(float));
        return MEMFIT_OK;
    }
    enum memfit_status st = memfit_sam_preprocess(crop, L->info.image_size, L->pixels);
    return st != MEMFIT_OK ? st
                           : memfit_sam_encode(L->sam, L->pixels, L->map, L->enc_bytes, embedding);
}

/* The largest batch whose plan fits the budget's room now (at least 1). */
static uint32_t auto_batch(struct sam_loaded *L, const struct memfit_sam_amg_params *base,
                           uint32_t W, uint32_t H)
{
    struct memfit_sam_amg_params p = *base;
    uint64_t room = L->planned_extra;
    if (L->budget) {
        struct memfit_budget_usage u;
        memfit_budget_get_usage(L->budget, &u);
        room += u.free_bytes;
    }
    uint32_t max = (uint32_t)(base->points_per_side * base->points_per_side);
    uint32_t lo = 1, hi = max ? max : 1;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo + 1) / 2;
        size_t need = 0;
        p.points_per_batch = mid;
        if (amg_plan(L->sam, &p, W, H, &need) == MEMFIT_OK && need <= room)
            lo = mid;
        else
            hi = mid - 1;
        memfit_clear_error();
    }
    return lo;
}

/* The generator's data-dependent memory (records, RLEs, NMS state): held
 * in the budget in chunks of at least 1 MiB as it grows. */
struct amg_reserve {
    struct sam_loaded *L;
    const struct memfit_segment_params *p;
    memfit_reservation **held;
    size_t n_held, cap;
    uint64_t used, reserved;
};

static enum memfit_status amg_reserve(void *user, int64_t bytes)
{
    struct amg_reserve *a = user;
    if (bytes <= 0) {
        uint64_t back = (uint64_t)-bytes;
        a->used = back > a->used ? 0 : a->used - back;
        return MEMFIT_OK;
    }
    a->used += (uint64_t)bytes;
    if (a->used <= a->reserved || !a->L->budget)
        return MEMFIT_OK;
    if (a->n_held == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 16;
        memfit_reservation **h = memfit_realloc(a->held, cap * sizeof(*h));
        if (!h)
            return MEMFIT_E_NOMEM;
        a->held = h;
        a->cap = cap;
    }
    uint64_t chunk = a->used - a->reserved;
    if (chunk < (1u << 20))
        chunk = 1u << 20;
    char owner[160];
    snprintf(owner, sizeof(owner), "%s (mask records)", a->L->cfg->name);
    enum memfit_status st = memfit_budget_reserve(a->L->budget, MEMFIT_BUDGET_WORKSPACE, chunk,
                                                  owner, a->p->timeout_ms, &a->held[a->n_held]);
    if (st != MEMFIT_OK)
        return st;
    a->n_held++;
    a->reserved += chunk;
    return MEMFIT_OK;
}

static enum memfit_status segment_auto(struct sam_loaded *L, const struct memfit_image *img,
                                       const struct memfit_segment_params *p,
                                       struct memfit_segment_result *out)
{
    struct memfit_sam_amg_params amg = p->amg;
    /* No batch asked: the model's planned one; "auto" there or here: the
     * largest the budget's room allows now. */
    if (!p->batch_auto && amg.points_per_batch == 0)
        amg.points_per_batch = L->cfg->points_per_batch;
    if (p->batch_auto || amg.points_per_batch == 0)
        amg.points_per_batch = auto_batch(L, &amg, img->width, img->height);
    out->points_per_batch = amg.points_per_batch;
    size_t need = 0;
    enum memfit_status st = memfit_sam_amg_params_check(&amg);
    if (st == MEMFIT_OK)
        st = amg_plan(L->sam, &amg, img->width, img->height, &need);
    memfit_reservation *r = NULL;
    if (st == MEMFIT_OK)
        st = hold_extra(L, need, p, &r);
    if (st != MEMFIT_OK)
        return st;
    out->work_bytes = L->map_bytes + need;
    struct amg_reserve ar = {.L = L, .p = p};
    struct memfit_sam_amg_hooks hooks = {.embed = amg_embed,
                                         .embed_user = L,
                                         .reserve = amg_reserve,
                                         .reserve_user = &ar,
                                         .cancelled = p->cancelled,
                                         .cancel_user = p->cancel_user};
    uint64_t t0 = memfit_now_ns();
    st = memfit_sam_generate(L->sam, img, &amg, &hooks, &out->records);
    out->decode_seconds = (double)(memfit_now_ns() - t0) / 1e9;
    for (size_t i = 0; i < ar.n_held; i++)
        memfit_budget_release(ar.held[i]);
    memfit_free(ar.held);
    memfit_budget_release(r);
    return st;
}

static enum memfit_status sam_segment(void *loaded, const struct memfit_image *img,
                                      const struct memfit_segment_params *p,
                                      struct memfit_segment_result *out)
{
    struct sam_loaded *L = loaded;
    struct memfit_sam_amg_params amg = p->amg;
    if (amg.points_per_batch == 0) /* the model's batch: checked once chosen */
        amg.points_per_batch = 1;
    enum memfit_status st = p->automatic ? memfit_sam_amg_params_check(&amg) : check_prompt(p, img);
    if (st != MEMFIT_OK)
        return st;
    out->width = img->width;
    out->height = img->height;
    out->embedding_dim = L->info.prompt_dim;
    out->grid = L->info.grid;
    pthread_mutex_lock(&L->lock);
    memfit_reservation *r = NULL;
    if (!p->automatic) {
        uint64_t need = 0;
        st = prompt_bytes(L->sam, img->width, img->height, &need);
        if (st == MEMFIT_OK)
            st = hold_extra(L, need, p, &r);
        out->work_bytes = L->map_bytes + need;
    }
    if (st == MEMFIT_OK && p->cancelled && p->cancelled(p->cancel_user))
        st = memfit_fail(MEMFIT_E_CANCELLED, "segment: cancelled");
    if (st == MEMFIT_OK)
        st = embed_image(L, img, &out->embedding_cached, &out->encode_seconds);
    if (st == MEMFIT_OK && p->want_embedding) {
        size_t n = embedding_floats(L);
        if (!(out->embedding = memfit_malloc(n * sizeof(float))))
            st = MEMFIT_E_NOMEM;
        else
            memcpy(out->embedding, L->embedding, n * sizeof(float));
    }
    if (st == MEMFIT_OK)
        st = p->automatic ? segment_auto(L, img, p, out) : segment_prompt(L, img, p, out);
    memfit_budget_release(r);
    pthread_mutex_unlock(&L->lock);
    return st;
}

static memfit_sam *sam_model(void *loaded)
{
    return ((struct sam_loaded *)loaded)->sam;
}

const struct mf_family mf_family_sam = {
    .info =
        {
            .name = "sam",
            .aliases = "segment-anything",
            .summary = "SAM ViT-B/L/H promptable segmentation and automatic masks (.pth, "
                       "safetensors, GGUF)",
            .options = "quantize, threads, points_per_batch, embedding_cache",
            .ops = MEMFIT_ENGINE_OP_SEGMENT,
        },
    .detect = sam_detect,
    .config_create = sam_config_create,
    .config_free = sam_config_free,
    .convert_type = sam_convert_type,
    .convert = sam_convert,
    .convert_estimate = sam_convert_estimate,
    .plan = sam_plan,
    .load = sam_load,
    .unload = sam_unload,
    .segment = sam_segment,
    .sam = sam_model,
};

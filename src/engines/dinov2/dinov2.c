/*
 * The DINOv2 family: image embeddings from ViT-S/B/L/g models (with or
 * without registers; original or transformers names; .pth, safetensors or
 * GGUF; any stored type).
 *
 * Memory: the weights stay file mappings (used in place), the workspace
 * for the planned batch and image size is one anonymous mapping owned by
 * the loaded model, so an unload gives everything back with munmap. A
 * request beyond the plan reserves its own workspace from the budget for
 * its duration. One forward at a time per model (the engine's threads
 * already use every core).
 */
#include <pthread.h>
#include <string.h>

#include "core/alloc.h"
#include "engines/family.h"

extern const struct mf_family mf_family_dinov2;

/* Defaults for a model without limits: one 224 x 224 image per forward. */
#define DINO_DEFAULT_BATCH      1
#define DINO_DEFAULT_IMAGE_SIZE 224

struct dino_config {
    char *name;
    bool quantize;
    enum memfit_type quantize_type;
    unsigned n_threads;
    enum memfit_vit_interpolation interpolation;
    uint32_t max_batch, max_image_size;
};

struct dino_loaded {
    struct dino_config *cfg;
    memfit_vit *vit;
    memfit_budget *budget;
    pthread_mutex_t lock; /* one forward at a time: the engine and the workspace */
    void *work;
    size_t work_bytes;
    uint32_t max_batch, max_image_size, dim, patch;
};

/* ---- Detection and configuration ----------------------------------------------------- */

static bool dino_detect(const memfit_tensors *set)
{
    struct memfit_vit_info info;
    bool yes = memfit_vit_detect(set, &info) == MEMFIT_OK;
    memfit_clear_error();
    return yes;
}

static void dino_config_free(void *config)
{
    struct dino_config *c = config;
    if (!c)
        return;
    memfit_free(c->name);
    memfit_free(c);
}

static enum memfit_status parse_option(struct dino_config *c, const struct mf_family_entry *e,
                                       const struct memfit_manifest_option *o)
{
    if (strcmp(o->key, "quantize") == 0) {
        enum memfit_type t;
        if (memfit_type_from_name(o->value, &t) != MEMFIT_OK ||
            !(t == MEMFIT_TYPE_F32 || t == MEMFIT_TYPE_F16 || t == MEMFIT_TYPE_BF16 ||
              t == MEMFIT_TYPE_Q8_0 || t == MEMFIT_TYPE_Q4_0 || t == MEMFIT_TYPE_Q4_K ||
              t == MEMFIT_TYPE_Q6_K)) {
            memfit_clear_error();
            return memfit_fail(MEMFIT_E_FORMAT,
                               "%s: model '%s': quantize '%s': expected f32, f16, bf16, q8_0, "
                               "q4_0, q4_k or q6_k",
                               e->where, e->name, o->value);
        }
        c->quantize = true;
        c->quantize_type = t;
        return MEMFIT_OK;
    }
    if (strcmp(o->key, "threads") == 0)
        return mf_engine_option_u32(e, o, 4096, &c->n_threads);
    if (strcmp(o->key, "interpolation") == 0) {
        if (memfit_vit_interpolation_parse(o->value, &c->interpolation) != MEMFIT_OK) {
            memfit_clear_error();
            return memfit_fail(MEMFIT_E_FORMAT,
                               "%s: model '%s': interpolation '%s': expected auto, orig, reg or hf",
                               e->where, e->name, o->value);
        }
        return MEMFIT_OK;
    }
    return mf_engine_option_unknown(e, o, &mf_family_dinov2);
}

static enum memfit_status dino_config_create(const struct mf_family_entry *e, void **out)
{
    struct dino_config *c = memfit_calloc(1, sizeof(*c));
    if (!c)
        return MEMFIT_E_NOMEM;
    c->interpolation = MEMFIT_VIT_INTERP_AUTO;
    const struct memfit_manifest_limits *lim = &e->model->limits;
    c->max_batch = lim->max_batch ? (uint32_t)lim->max_batch : DINO_DEFAULT_BATCH;
    c->max_image_size =
        lim->max_image_size ? (uint32_t)lim->max_image_size : DINO_DEFAULT_IMAGE_SIZE;
    enum memfit_status st = (c->name = memfit_strdup(e->name)) ? MEMFIT_OK : MEMFIT_E_NOMEM;
    for (size_t i = 0; st == MEMFIT_OK && i < e->model->n_options; i++)
        st = parse_option(c, e, &e->model->options[i]);
    if (st != MEMFIT_OK) {
        dino_config_free(c);
        return st;
    }
    *out = c;
    return MEMFIT_OK;
}

static void engine_options(const struct dino_config *c, struct memfit_vit_options *o)
{
    memfit_vit_options_default(o);
    o->n_threads = c->n_threads;
    o->interpolation = c->interpolation;
}

/* ---- Plan and the quantized copy --------------------------------------------------------- */

/* Rounds the configured size down to the patch size (at least one patch). */
static uint32_t planned_side(uint32_t size, uint32_t patch)
{
    uint32_t s = size / patch * patch;
    return s ? s : patch;
}

static enum memfit_status dino_plan(void *config, const char *path, struct memfit_engine_plan *out)
{
    struct dino_config *c = config;
    struct memfit_vit_options o;
    engine_options(c, &o);
    memfit_vit *vit;
    enum memfit_status st = memfit_vit_open(path, &o, &vit);
    if (st != MEMFIT_OK)
        return st;
    struct memfit_vit_info info;
    memfit_vit_get_info(vit, &info);
    out->max_batch = c->max_batch;
    out->max_image_size = planned_side(c->max_image_size, info.patch_size);
    size_t work = 0;
    st = memfit_vit_plan(vit, out->max_batch, out->max_image_size, out->max_image_size, &work);
    memfit_vit_close(vit);
    if (st != MEMFIT_OK)
        return st;
    out->cost.bytes[MEMFIT_BUDGET_WEIGHTS] = info.weight_bytes;
    out->cost.bytes[MEMFIT_BUDGET_CONVERTED_WEIGHTS] = info.converted_bytes;
    out->cost.bytes[MEMFIT_BUDGET_WORKSPACE] = work;
    return MEMFIT_OK;
}

static const char *dino_convert_type(const void *config)
{
    const struct dino_config *c = config;
    if (!c->quantize)
        return NULL;
    const struct memfit_type_info *ti = memfit_type_get_info(c->quantize_type);
    return ti ? ti->name : NULL;
}

/* The copy memfit_vit_write_gguf will write (the same per-tensor rule):
 * its tensors are the weights, used in place (1-D parameters are F32 in it,
 * so nothing is converted at open). */
static enum memfit_status dino_convert_estimate(void *config, const char *src,
                                                struct memfit_engine_plan *plan)
{
    const struct dino_config *c = config;
    memfit_tensors *set;
    enum memfit_status st = memfit_tensors_open(src, NULL, &set);
    if (st != MEMFIT_OK)
        return st;
    uint64_t bytes = 0;
    st = memfit_vit_write_bytes(set, c->quantize_type, &bytes);
    memfit_tensors_close(set);
    if (st != MEMFIT_OK)
        return st;
    plan->cost.bytes[MEMFIT_BUDGET_WEIGHTS] = bytes;
    plan->cost.bytes[MEMFIT_BUDGET_CONVERTED_WEIGHTS] = 0;
    plan->file_bytes = bytes;
    return MEMFIT_OK;
}

static enum memfit_status dino_convert(void *config, const char *src, const char *dst)
{
    const struct dino_config *c = config;
    struct memfit_vit_options o;
    engine_options(c, &o);
    memfit_vit *vit;
    enum memfit_status st = memfit_vit_open(src, &o, &vit);
    if (st != MEMFIT_OK)
        return st;
    /* The converted copy keeps the source's interpolation in its metadata. */
    st = memfit_vit_write_gguf(vit, dst, c->quantize_type);
    memfit_vit_close(vit);
    return st;
}

/* ---- Load and unload ------------------------------------------------------------------------ */

static enum memfit_status dino_load(void *config, const char *path,
                                    const struct memfit_budget_cost *reserved,
                                    memfit_budget *budget, void **out)
{
    struct dino_config *c = config;
    struct dino_loaded *L = memfit_calloc(1, sizeof(*L));
    if (!L)
        return MEMFIT_E_NOMEM;
    struct memfit_vit_options o;
    engine_options(c, &o);
    enum memfit_status st = memfit_vit_open(path, &o, &L->vit);
    if (st != MEMFIT_OK) {
        memfit_free(L);
        return st;
    }
    struct memfit_vit_info info;
    memfit_vit_get_info(L->vit, &info);
    L->cfg = c;
    L->budget = budget;
    L->dim = info.dim;
    L->patch = info.patch_size ? info.patch_size : 14;
    L->max_batch = c->max_batch;
    L->max_image_size = planned_side(c->max_image_size, L->patch);
    size_t need = 0;
    st = memfit_vit_plan(L->vit, L->max_batch, L->max_image_size, L->max_image_size, &need);
    if (st == MEMFIT_OK && need > reserved->bytes[MEMFIT_BUDGET_WORKSPACE])
        st = memfit_fail(
            MEMFIT_E_BUDGET, "model '%s': workspace %zu bytes needed, %llu reserved by the plan",
            c->name, need, (unsigned long long)reserved->bytes[MEMFIT_BUDGET_WORKSPACE]);
    if (st == MEMFIT_OK) {
        L->work_bytes = need;
        if (!(L->work = mf_map_anon(need)))
            st = MEMFIT_E_NOMEM;
    }
    if (st == MEMFIT_OK && pthread_mutex_init(&L->lock, NULL) != 0)
        st = MEMFIT_E_NOMEM;
    if (st != MEMFIT_OK) {
        mf_unmap_anon(L->work, L->work_bytes);
        memfit_vit_close(L->vit);
        memfit_free(L);
        return st;
    }
    *out = L;
    return MEMFIT_OK;
}

static void dino_unload(void *config, void *loaded)
{
    (void)config;
    struct dino_loaded *L = loaded;
    memfit_vit_close(L->vit);
    mf_unmap_anon(L->work, L->work_bytes);
    pthread_mutex_destroy(&L->lock);
    memfit_free(L);
}

/* ---- Embedding ------------------------------------------------------------------------------ */

/* One forward through the planned workspace, or one of its own from the
 * budget when the request is larger than the plan. */
static enum memfit_status forward(struct dino_loaded *L, const float *pixels, uint32_t batch,
                                  uint32_t h, uint32_t w, const struct memfit_embed_params *p,
                                  float *out, size_t out_floats)
{
    size_t need;
    enum memfit_status st = memfit_vit_plan(L->vit, batch, h, w, &need);
    if (st != MEMFIT_OK)
        return st;
    memfit_reservation *r = NULL;
    void *work = NULL;
    if (need > L->work_bytes) {
        if (!L->budget)
            return memfit_fail(MEMFIT_E_RANGE,
                               "model '%s': %u images of %ux%u need a %zu-byte workspace; the "
                               "model is planned for %u of %ux%u (%zu bytes)",
                               L->cfg->name, batch, w, h, need, L->max_batch, L->max_image_size,
                               L->max_image_size, L->work_bytes);
        st = memfit_budget_reserve(L->budget, MEMFIT_BUDGET_WORKSPACE, need, L->cfg->name,
                                   p->timeout_ms, &r);
        if (st != MEMFIT_OK)
            return st;
        if (!(work = mf_map_anon(need))) {
            memfit_budget_release(r);
            return MEMFIT_E_NOMEM;
        }
    }
    pthread_mutex_lock(&L->lock);
    st = memfit_vit_forward(L->vit, pixels, batch, h, w, p->output, p->normalize,
                            work ? work : L->work, work ? need : L->work_bytes, out, out_floats);
    pthread_mutex_unlock(&L->lock);
    if (work) {
        mf_unmap_anon(work, need);
        memfit_budget_release(r);
    }
    return st;
}

static enum memfit_status dino_embed_size(void *loaded, const struct memfit_embed_params *p,
                                          uint32_t width, uint32_t height, size_t *out_floats,
                                          uint32_t *out_dim)
{
    struct dino_loaded *L = loaded;
    uint32_t w, h;
    enum memfit_status st = memfit_image_transform_size(&p->transform, width, height, &w, &h);
    size_t n = 0;
    if (st == MEMFIT_OK)
        st = memfit_vit_output_floats(L->vit, p->output, h, w, &n);
    if (st != MEMFIT_OK)
        return st;
    if (out_floats)
        *out_floats = n;
    if (out_dim)
        *out_dim = L->dim;
    return MEMFIT_OK;
}

static enum memfit_status dino_embed(void *loaded, const struct memfit_image *const *images,
                                     size_t n, const struct memfit_embed_params *p, float *out,
                                     size_t out_floats, uint64_t *out_tokens)
{
    struct dino_loaded *L = loaded;
    size_t batch = p->batch ? p->batch : L->max_batch;
    uint64_t tokens = 0;
    size_t done_floats = 0;
    enum memfit_status st = MEMFIT_OK;
    /* Runs of images with the same input size share a forward. */
    for (size_t first = 0; first < n && st == MEMFIT_OK;) {
        uint32_t w = 0, h = 0, w2, h2;
        if (!images[first])
            return memfit_fail(MEMFIT_E_FORMAT, "input[%zu]: not an image", first);
        st = memfit_image_transform_size(&p->transform, images[first]->width, images[first]->height,
                                         &w, &h);
        size_t count = 1;
        while (st == MEMFIT_OK && count < batch && first + count < n && images[first + count] &&
               memfit_image_transform_size(&p->transform, images[first + count]->width,
                                           images[first + count]->height, &w2, &h2) == MEMFIT_OK &&
               w2 == w && h2 == h)
            count++;
        memfit_clear_error();
        size_t per_image = (size_t)3 * w * h, per_out = 0;
        float *pixels = NULL;
        if (st == MEMFIT_OK)
            st = memfit_vit_output_floats(L->vit, p->output, h, w, &per_out);
        if (st == MEMFIT_OK && per_out * count > out_floats - done_floats)
            st = memfit_fail(MEMFIT_E_MISUSE, "embed: output holds %zu floats, %zu needed",
                             out_floats, done_floats + per_out * count);
        if (st == MEMFIT_OK && !(pixels = memfit_malloc(count * per_image * sizeof(float))))
            st = MEMFIT_E_NOMEM;
        for (size_t i = 0; i < count && st == MEMFIT_OK; i++)
            st = memfit_image_transform_apply(&p->transform, images[first + i],
                                              pixels + i * per_image, per_image, NULL, 0);
        if (st == MEMFIT_OK && p->cancelled && p->cancelled(p->cancel_user))
            st = memfit_fail(MEMFIT_E_CANCELLED, "cancelled before image %zu", first);
        if (st == MEMFIT_OK)
            st = forward(L, pixels, (uint32_t)count, h, w, p, out + done_floats, per_out * count);
        memfit_free(pixels);
        /* Tokens as the model sees them: the CLS token and the patches. */
        tokens += (uint64_t)count * (1 + (uint64_t)(h / L->patch) * (w / L->patch));
        done_floats += per_out * count;
        first += count;
    }
    if (st == MEMFIT_OK && out_tokens)
        *out_tokens = tokens;
    return st;
}

static memfit_vit *dino_vit(void *loaded)
{
    return ((struct dino_loaded *)loaded)->vit;
}

const struct mf_family mf_family_dinov2 = {
    .info =
        {
            .name = "dinov2",
            .aliases = "",
            .summary = "DINOv2 ViT-S/B/L/g image embeddings (.pth, safetensors, GGUF)",
            .options = "quantize, threads, interpolation",
            .ops = MEMFIT_ENGINE_OP_EMBED_IMAGE,
        },
    .detect = dino_detect,
    .config_create = dino_config_create,
    .config_free = dino_config_free,
    .convert_type = dino_convert_type,
    .convert = dino_convert,
    .convert_estimate = dino_convert_estimate,
    .plan = dino_plan,
    .load = dino_load,
    .unload = dino_unload,
    .embed_size = dino_embed_size,
    .embed = dino_embed,
    .vit = dino_vit,
};

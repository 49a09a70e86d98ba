/*
 * The DINOv2 embedding engine of `memfit serve` (serve_engines.h).
 *
 * It wraps the manager's DINOv2 driver (memfit_vit_driver) so that a loaded
 * model also knows the batch it was planned for: a request of many images is
 * run in chunks of that batch through the model's own workspace, never
 * reserving more, and the cancel callback is asked between chunks, so a
 * client that leaves stops the work after the chunk in flight.
 *
 * The preprocessing is `memfit embed`'s default (the reference evaluation
 * transform: resize 256, centre crop 224), so the server's embeddings equal
 * the command's, and every image of a request has the same input size,
 * which is what lets them share a forward.
 */
#include <string.h>
#include <strings.h>

#include "serve_engines.h"

struct dino_config {
    memfit_vit_driver_config *vit;
};

struct dino_loaded {
    void *inner; /* the driver's loaded model */
    uint32_t max_batch;
    uint32_t dim, patch;
};

/* ---- Family detection for quick-start models ----------------------------------- */

/* True when the file's tensors are DINOv2's (the CLS token under either naming). */
static enum memfit_status looks_like_dinov2(const char *path, bool *out)
{
    memfit_tensors *set;
    enum memfit_status st = memfit_tensors_open(path, NULL, &set);
    if (st != MEMFIT_OK)
        return st;
    *out = memfit_tensors_find(set, "cls_token", NULL, NULL) == MEMFIT_OK ||
           memfit_tensors_find(set, "embeddings.cls_token", NULL, NULL) == MEMFIT_OK;
    memfit_clear_error();
    memfit_tensors_close(set);
    return MEMFIT_OK;
}

static enum memfit_status dino_config_create(const struct memfit_manifest *manifest,
                                             const struct memfit_manifest_model *model, void *user,
                                             void **out)
{
    (void)user;
    struct memfit_manifest_model entry = *model;
    bool is_auto = entry.family && strcasecmp(entry.family, "auto") == 0;
    if (is_auto && entry.n_sources > 0 && strstr(entry.sources[0], "://") &&
        strncmp(entry.sources[0], "file://", 7) != 0) {
        entry.family = (char *)"dinov2"; /* the driver says what a remote source needs */
    } else if (is_auto && entry.n_sources > 0) {
        bool dino = false;
        const char *path = entry.sources[0] + (strncmp(entry.sources[0], "file://", 7) ? 0 : 7);
        enum memfit_status st = looks_like_dinov2(path, &dino);
        if (st != MEMFIT_OK)
            return st;
        if (!dino)
            return memfit_fail(MEMFIT_E_UNSUPPORTED,
                               "%s: model '%s': not a DINOv2 model (no cls_token tensor); name "
                               "its family in a manifest (engines: dinov2)",
                               entry.sources[0], entry.name);
        entry.family = (char *)"dinov2";
    }
    struct dino_config *c = memfit_calloc(1, sizeof(*c));
    if (!c)
        return MEMFIT_E_NOMEM;
    enum memfit_status st = memfit_vit_driver_config_create(manifest, &entry, &c->vit);
    if (st != MEMFIT_OK) {
        memfit_free(c);
        return st;
    }
    *out = c;
    return MEMFIT_OK;
}

static void dino_config_destroy(void *config, void *user)
{
    (void)user;
    struct dino_config *c = config;
    if (!c)
        return;
    memfit_vit_driver_config_free(c->vit);
    memfit_free(c);
}

/* ---- The driver: the manager's, plus the planned batch ------------------------------ */

static enum memfit_status dino_plan(void *config, const char *identity,
                                    struct memfit_budget_cost *out)
{
    struct dino_config *c = config;
    return memfit_vit_driver.plan(c->vit, identity, out);
}

static enum memfit_status dino_load(void *config, const char *identity,
                                    const struct memfit_budget_cost *reserved, void **out)
{
    struct dino_config *c = config;
    struct dino_loaded *L = memfit_calloc(1, sizeof(*L));
    if (!L)
        return MEMFIT_E_NOMEM;
    enum memfit_status st = memfit_vit_driver.load(c->vit, identity, reserved, &L->inner);
    struct memfit_vit_driver_plan plan;
    if (st == MEMFIT_OK && (st = memfit_vit_driver_plan_get(c->vit, &plan)) != MEMFIT_OK)
        memfit_vit_driver.unload(c->vit, L->inner);
    if (st != MEMFIT_OK) {
        memfit_free(L);
        return st;
    }
    struct memfit_vit_info info;
    memfit_vit_get_info(memfit_vit_driver_engine(L->inner), &info);
    L->max_batch = plan.max_batch ? plan.max_batch : 1;
    L->dim = info.dim;
    L->patch = info.patch_size ? info.patch_size : 14;
    *out = L;
    return MEMFIT_OK;
}

static void dino_unload(void *config, void *model)
{
    struct dino_config *c = config;
    struct dino_loaded *L = model;
    memfit_vit_driver.unload(c->vit, L->inner);
    memfit_free(L);
}

static const struct memfit_model_driver dino_driver = {
    .family = "dinov2",
    .plan = dino_plan,
    .fetch = NULL,
    .load = dino_load,
    .unload = dino_unload,
};

/* ---- Embedding ----------------------------------------------------------------------- */

static size_t dino_dimension(void *model)
{
    return ((struct dino_loaded *)model)->dim;
}

static enum memfit_status dino_embed(void *model, const struct memfit_embed_input *inputs,
                                     size_t n_inputs, float *out, uint64_t *out_tokens,
                                     memfit_cancel_fn cancelled, void *cancel_user)
{
    struct dino_loaded *L = model;
    struct memfit_image_transform tf = memfit_image_transform_default();
    uint32_t w = tf.crop, h = tf.crop; /* every image: the crop */
    size_t per_image = (size_t)3 * w * h;
    size_t batch = n_inputs < L->max_batch ? n_inputs : L->max_batch;
    float *pixels = memfit_malloc(batch * per_image * sizeof(float));
    if (!pixels)
        return MEMFIT_E_NOMEM;
    enum memfit_status st = MEMFIT_OK;
    for (size_t first = 0; first < n_inputs && st == MEMFIT_OK; first += batch) {
        size_t n = n_inputs - first < batch ? n_inputs - first : batch;
        for (size_t i = 0; i < n && st == MEMFIT_OK; i++) {
            const struct memfit_image *img = inputs[first + i].image;
            uint32_t iw, ih;
            if (!img)
                st = memfit_fail(MEMFIT_E_FORMAT, "input[%zu]: not an image", first + i);
            else if ((st = memfit_image_transform_size(&tf, img->width, img->height, &iw, &ih)) ==
                     MEMFIT_OK)
                st = memfit_image_transform_apply(&tf, img, pixels + i * per_image, per_image, NULL,
                                                  0);
        }
        if (st == MEMFIT_OK && cancelled && cancelled(cancel_user))
            st = memfit_fail(MEMFIT_E_CANCELLED, "cancelled before image %zu", first);
        if (st == MEMFIT_OK)
            st = memfit_vit_driver_forward(L->inner, pixels, (uint32_t)n, h, w,
                                           MEMFIT_VIT_OUTPUT_CLS, false, out + first * L->dim,
                                           n * L->dim, 0);
    }
    memfit_free(pixels);
    if (st != MEMFIT_OK)
        return st;
    /* Tokens as the model sees them: the CLS token and the patches. */
    *out_tokens = (uint64_t)n_inputs * (1 + (uint64_t)(h / L->patch) * (w / L->patch));
    return MEMFIT_OK;
}

const struct memfit_embed_engine cli_dinov2_engine = {
    .family = "dinov2",
    .input_kind = MEMFIT_EMBED_INPUT_IMAGE,
    .driver = &dino_driver,
    .config_create = dino_config_create,
    .config_destroy = dino_config_destroy,
    .dimension = dino_dimension,
    .embed = dino_embed,
    .user = NULL,
};

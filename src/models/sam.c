/*
 * SAM loader: recognises segment-anything v1 from its tensors (original
 * checkpoint names or transformers' names, any of the three file formats),
 * reads the geometry from the shapes, checks every shape, and keeps views
 * into the mapping. The image encoder is loaded here; the prompt encoder
 * and the mask decoder by sam_decoder.c through the same primitives.
 *
 * Names are written once, as the original checkpoint spells them; a
 * transformers file is read through the converter's renames (applied in
 * order as substring replacements, as convert_sam_to_hf.py does).
 */
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "models/sam.h"
#include "models/shape.h"

struct sam_loader {
    struct memfit_sam *m;
    bool hf; /* transformers' names */
    struct mf_float_pass floats;
};

void memfit_sam_options_default(struct memfit_sam_options *opts)
{
    memset(opts, 0, sizeof(*opts));
}

/* ---- Names ------------------------------------------------------------------------ */

/* The renames of transformers' converter, in its order (original -> HF). */
static const char *const renames[][2] = {
    {"iou_prediction_head.layers.0", "iou_prediction_head.proj_in"},
    {"iou_prediction_head.layers.1", "iou_prediction_head.layers.0"},
    {"iou_prediction_head.layers.2", "iou_prediction_head.proj_out"},
    {"mask_decoder.output_upscaling.0", "mask_decoder.upscale_conv1"},
    {"mask_decoder.output_upscaling.1", "mask_decoder.upscale_layer_norm"},
    {"mask_decoder.output_upscaling.3", "mask_decoder.upscale_conv2"},
    {"mask_downscaling.0", "mask_embed.conv1"},
    {"mask_downscaling.1", "mask_embed.layer_norm1"},
    {"mask_downscaling.3", "mask_embed.conv2"},
    {"mask_downscaling.4", "mask_embed.layer_norm2"},
    {"mask_downscaling.6", "mask_embed.conv3"},
    {"point_embeddings", "point_embed"},
    {"pe_layer.positional_encoding_gaussian_matrix", "shared_embedding.positional_embedding"},
    {"image_encoder", "vision_encoder"},
    {"neck.0", "neck.conv1"},
    {"neck.1", "neck.layer_norm1"},
    {"neck.2", "neck.conv2"},
    {"neck.3", "neck.layer_norm2"},
    {"patch_embed.proj", "patch_embed.projection"},
    {".norm", ".layer_norm"},
    {"blocks", "layers"},
};

/* Replaces the first occurrence of `from` in buf by `to` (buf holds size bytes). */
static void replace_once(char *buf, size_t size, const char *from, const char *to)
{
    char *at = strstr(buf, from);
    if (!at)
        return;
    char tail[256];
    snprintf(tail, sizeof(tail), "%s", at + strlen(from));
    snprintf(at, size - (size_t)(at - buf), "%s%s", to, tail);
}

/* The hypernetwork MLPs: output_hypernetworks_mlps.K.layers.{0,1,2} ->
 * proj_in, layers.0, proj_out (the converter's regular expression). */
static void rename_hyper(char *buf, size_t size)
{
    static const char *const key = "output_hypernetworks_mlps.";
    char *at = strstr(buf, key);
    if (!at)
        return;
    char *p = at + strlen(key);
    while (*p >= '0' && *p <= '9')
        p++;
    static const char *const from[3] = {".layers.0", ".layers.1", ".layers.2"};
    static const char *const to[3] = {".proj_in", ".layers.0", ".proj_out"};
    for (int i = 0; i < 3; i++)
        if (strncmp(p, from[i], strlen(from[i])) == 0) {
            char tail[256];
            snprintf(tail, sizeof(tail), "%s", p + strlen(from[i]));
            snprintf(p, size - (size_t)(p - buf), "%s%s", to[i], tail);
            return;
        }
}

static void file_name(const struct sam_loader *ld, const char *orig, char *buf, size_t size)
{
    snprintf(buf, size, "%s", orig);
    if (!ld->hf)
        return;
    rename_hyper(buf, size);
    for (size_t i = 0; i < sizeof(renames) / sizeof(renames[0]); i++)
        replace_once(buf, size, renames[i][0], renames[i][1]);
}

/* Finds `name`: OK, E_NOT_FOUND (the error cleared), or another failure. */
static enum memfit_status find_exact(const struct sam_loader *ld, const char *name,
                                     struct memfit_tensor_info *out)
{
    enum memfit_status st = memfit_tensors_find(ld->m->set, name, out, NULL);
    if (st == MEMFIT_E_NOT_FOUND && strlen(name) >= 64) {
        /* A GGUF file stores a long name shortened. */
        char short_name[64];
        if (memfit_gguf_short_name(name, short_name, sizeof(short_name)))
            st = memfit_tensors_find(ld->m->set, short_name, out, NULL);
    }
    if (st == MEMFIT_E_NOT_FOUND)
        memfit_clear_error();
    return st;
}

/* Looks a tensor up by its original name; HF files also keep the Fourier
 * matrix as shared_image_embedding.positional_embedding (tied). */
static enum memfit_status lookup(const struct sam_loader *ld, const char *orig,
                                 struct memfit_tensor_info *out, char *name, size_t size)
{
    file_name(ld, orig, name, size);
    enum memfit_status st = find_exact(ld, name, out);
    if (st == MEMFIT_E_NOT_FOUND && ld->hf && strstr(orig, "positional_encoding_gaussian_matrix")) {
        st = find_exact(ld, "shared_image_embedding.positional_embedding", out);
        if (st == MEMFIT_OK)
            snprintf(name, size, "shared_image_embedding.positional_embedding");
    }
    return st;
}

bool mf_sam_has(struct sam_loader *ld, const char *orig)
{
    char name[256];
    struct memfit_tensor_info t;
    return lookup(ld, orig, &t, name, sizeof(name)) == MEMFIT_OK;
}

static enum memfit_status find(struct sam_loader *ld, const char *orig,
                               struct memfit_tensor_info *out)
{
    char name[256];
    enum memfit_status st = lookup(ld, orig, out, name, sizeof(name));
    if (st == MEMFIT_E_NOT_FOUND)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: SAM tensor %s is missing",
                           memfit_tensors_path(ld->m->set), name);
    if (st != MEMFIT_OK)
        return st;
    ld->m->info.weight_bytes += out->n_bytes;
    return MEMFIT_OK;
}

enum memfit_status mf_sam_vec(struct sam_loader *ld, const char *name, uint64_t n,
                              const float **out)
{
    struct memfit_tensor_info t;
    enum memfit_status st = find(ld, name, &t);
    return st != MEMFIT_OK
               ? st
               : mf_model_vec(ld->m->set, &t, n, &ld->floats, &ld->m->info.converted_bytes, out);
}

enum memfit_status mf_sam_mat(struct sam_loader *ld, const char *name, uint64_t rows, uint64_t cols,
                              struct vit_mat *out)
{
    struct memfit_tensor_info t;
    enum memfit_status st = find(ld, name, &t);
    return st != MEMFIT_OK ? st : mf_model_mat(ld->m->set, &t, rows, cols, true, out);
}

/* ---- Recognition ---------------------------------------------------------------------- */

/* dim `i` of a tensor, or 0 when it is missing. */
static int64_t shape_of(struct sam_loader *ld, const char *orig, unsigned i, unsigned *n_dims)
{
    char name[256];
    struct memfit_tensor_info t;
    if (lookup(ld, orig, &t, name, sizeof(name)) != MEMFIT_OK)
        return 0;
    if (n_dims)
        *n_dims = t.n_dims;
    return i < t.n_dims ? t.shape[i] : 0;
}

static void describe(const memfit_tensors *set, char *buf, size_t size)
{
    struct memfit_meta_value v;
    if (memfit_tensors_meta_find(set, "general.architecture", &v) == MEMFIT_OK &&
        v.type == MEMFIT_META_STRING) {
        snprintf(buf, size, "general.architecture is \"%.*s\"",
                 (int)(v.v.str.len < 64 ? v.v.str.len : 64), v.v.str.data);
        memfit_clear_error();
        return;
    }
    memfit_clear_error();
    struct memfit_tensor_info t;
    if (memfit_tensors_count(set) > 0 && memfit_tensors_get(set, 0, &t) == MEMFIT_OK)
        snprintf(buf, size, "%zu tensors, the first is %s", memfit_tensors_count(set), t.name);
    else
        snprintf(buf, size, "no tensors");
    memfit_clear_error();
}

static const char *variant_name(uint32_t dim, uint32_t depth)
{
    if (dim == 768 && depth == 12)
        return "vit_b";
    if (dim == 1024 && depth == 24)
        return "vit_l";
    if (dim == 1280 && depth == 32)
        return "vit_h";
    return "custom";
}

/* The geometry from the shapes alone (no weight is read). */
static enum memfit_status recognise(struct sam_loader *ld)
{
    struct memfit_sam *m = ld->m;
    struct memfit_sam_info *in = &m->info;
    const char *path = memfit_tensors_path(m->set);
    ld->hf = false;
    char name[256];
    struct memfit_tensor_info t;
    enum memfit_status st = lookup(ld, "image_encoder.pos_embed", &t, name, sizeof(name));
    if (st == MEMFIT_E_NOT_FOUND) {
        ld->hf = true;
        st = lookup(ld, "image_encoder.pos_embed", &t, name, sizeof(name));
        if (st == MEMFIT_E_NOT_FOUND) {
            char what[160];
            describe(m->set, what, sizeof(what));
            return memfit_fail(MEMFIT_E_FORMAT,
                               "%s: not a SAM model: no image_encoder.pos_embed or "
                               "vision_encoder.pos_embed tensor (%s)",
                               path, what);
        }
    }
    if (st != MEMFIT_OK)
        return st;
    in->hf_names = ld->hf;
    unsigned nd = 0;
    /* pos_embed [1, G, G, D] */
    int64_t G = shape_of(ld, "image_encoder.pos_embed", 1, &nd);
    int64_t G2 = shape_of(ld, "image_encoder.pos_embed", 2, NULL);
    int64_t D = shape_of(ld, "image_encoder.pos_embed", 3, NULL);
    if (nd != 4 || G != G2 || G < 1 || G > 1024 || D < 1 || D > 65536) {
        (void)lookup(ld, "image_encoder.pos_embed", &t, name, sizeof(name));
        return mf_shape_error(ld->m->set, &t, "[1, G, G, D]");
    }
    in->grid = (uint32_t)G;
    in->dim = (uint32_t)D;
    /* patch_embed.proj [D, 3, P, P] */
    int64_t P = shape_of(ld, "image_encoder.patch_embed.proj.weight", 2, &nd);
    if (nd != 4 || P < 1 || P > 64 ||
        shape_of(ld, "image_encoder.patch_embed.proj.weight", 0, NULL) != D ||
        shape_of(ld, "image_encoder.patch_embed.proj.weight", 1, NULL) != 3 ||
        shape_of(ld, "image_encoder.patch_embed.proj.weight", 3, NULL) != P) {
        if (lookup(ld, "image_encoder.patch_embed.proj.weight", &t, name, sizeof(name)) !=
            MEMFIT_OK)
            return memfit_fail(MEMFIT_E_FORMAT, "%s: SAM tensor %s is missing", path, name);
        return mf_shape_error(ld->m->set, &t, "[D, 3, P, P]");
    }
    in->patch_size = (uint32_t)P;
    in->image_size = (uint32_t)(G * P);
    /* Blocks: count them; the rel-pos tables give head_dim, the window
     * and which blocks are global ([2G - 1, hd]). */
    uint32_t depth = 0;
    char orig[128];
    for (;; depth++) {
        snprintf(orig, sizeof(orig), "image_encoder.blocks.%u.norm1.weight", depth);
        if (depth >= 4096 || (st = lookup(ld, orig, &t, name, sizeof(name))) == MEMFIT_E_NOT_FOUND)
            break;
        if (st != MEMFIT_OK)
            return st;
    }
    if (depth == 0)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: SAM image encoder without blocks (no %s)", path,
                           ld->hf ? "vision_encoder.layers.0.layer_norm1.weight"
                                  : "image_encoder.blocks.0.norm1.weight");
    in->depth = depth;
    in->n_global = 0;
    in->window = 0;
    in->head_dim = 0;
    for (uint32_t l = 0; l < depth; l++) {
        snprintf(orig, sizeof(orig), "image_encoder.blocks.%u.attn.rel_pos_h", l);
        int64_t rows = shape_of(ld, orig, 0, &nd), hd = shape_of(ld, orig, 1, NULL);
        if (nd != 2 || rows < 1 || rows % 2 == 0 || hd < 1 || D % hd != 0 ||
            (in->head_dim && (uint32_t)hd != in->head_dim)) {
            if (lookup(ld, orig, &t, name, sizeof(name)) != MEMFIT_OK)
                return memfit_fail(MEMFIT_E_FORMAT,
                                   "%s: SAM tensor %s is missing (memfit needs the relative "
                                   "position tables)",
                                   path, name);
            return mf_shape_error(ld->m->set, &t, "[2S - 1, head_dim] with head_dim dividing D");
        }
        in->head_dim = (uint32_t)hd;
        uint32_t S = (uint32_t)(rows + 1) / 2;
        if (S == in->grid) {
            if (in->n_global == MEMFIT_SAM_MAX_GLOBAL)
                return memfit_fail(MEMFIT_E_FORMAT, "%s: more than %d global-attention blocks",
                                   path, MEMFIT_SAM_MAX_GLOBAL);
            in->global[in->n_global++] = l;
        } else if (!in->window || in->window == S) {
            in->window = S;
        } else {
            (void)lookup(ld, orig, &t, name, sizeof(name));
            return memfit_fail(MEMFIT_E_FORMAT,
                               "%s: tensor %s: a window of %u, but earlier blocks have %u", path,
                               name, S, in->window);
        }
    }
    if (in->window > in->grid)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: window %u larger than the token grid %u", path,
                           in->window, in->grid);
    in->heads = in->dim / in->head_dim;
    snprintf(orig, sizeof(orig), "image_encoder.blocks.0.mlp.lin1.weight");
    int64_t H = shape_of(ld, orig, 0, NULL);
    if (H < 1 || H > (1 << 20))
        return memfit_fail(MEMFIT_E_FORMAT, "%s: SAM tensor %s is missing or empty", path,
                           ld->hf ? "vision_encoder.layers.0.mlp.lin1.weight" : orig);
    in->mlp_hidden = (uint32_t)H;
    /* The prompt width from the neck and the decoder's tokens. */
    int64_t C = shape_of(ld, "image_encoder.neck.0.weight", 0, NULL);
    int64_t Cd = shape_of(ld, "mask_decoder.iou_token.weight", 1, NULL);
    int64_t nm = shape_of(ld, "mask_decoder.mask_tokens.weight", 0, NULL);
    int64_t mlp = shape_of(ld, "mask_decoder.transformer.layers.0.mlp.lin1.weight", 0, NULL);
    if (C < 8 || C % 8 != 0 || C > 65536 || Cd != C || nm < 2 || nm > 64 || mlp < 1 ||
        mlp > (1 << 20))
        return memfit_fail(MEMFIT_E_FORMAT,
                           "%s: SAM neck/decoder shapes: neck %lld channels, iou_token %lld, "
                           "%lld mask tokens, decoder MLP %lld (a missing tensor reads 0)",
                           path, (long long)C, (long long)Cd, (long long)nm, (long long)mlp);
    in->prompt_dim = (uint32_t)C;
    in->n_mask_tokens = (uint32_t)nm;
    in->decoder_mlp = (uint32_t)mlp;
    in->decoder_heads = 8;
    uint32_t dd = 0;
    for (;; dd++) {
        snprintf(orig, sizeof(orig), "mask_decoder.transformer.layers.%u.norm1.weight", dd);
        if (dd >= 64 || (st = lookup(ld, orig, &t, name, sizeof(name))) == MEMFIT_E_NOT_FOUND)
            break;
        if (st != MEMFIT_OK)
            return st;
    }
    if (dd == 0)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: SAM mask decoder without two-way blocks", path);
    in->decoder_depth = dd;
    in->mask_size = 4 * in->grid;
    in->variant = variant_name(in->dim, in->depth);
    return MEMFIT_OK;
}

enum memfit_status memfit_sam_detect(const memfit_tensors *set, struct memfit_sam_info *out)
{
    struct memfit_sam m;
    memset(&m, 0, sizeof(m));
    m.set = (memfit_tensors *)(uintptr_t)set; /* only looked up, never modified */
    struct sam_loader ld = {.m = &m};
    enum memfit_status st = recognise(&ld);
    if (st != MEMFIT_OK)
        return st;
    m.info.weight_bytes = 0;
    *out = m.info;
    return MEMFIT_OK;
}

/* ---- Loading ------------------------------------------------------------------------------ */

#define TRY(x)                                                                                     \
    do {                                                                                           \
        if ((st = (x)) != MEMFIT_OK)                                                               \
            return st;                                                                             \
    } while (0)

static enum memfit_status linear(struct sam_loader *ld, const char *prefix, uint64_t rows,
                                 uint64_t cols, bool bias, struct sam_linear *out)
{
    char name[160];
    enum memfit_status st;
    snprintf(name, sizeof(name), "%s.weight", prefix);
    TRY(mf_sam_mat(ld, name, rows, cols, &out->w));
    out->b = NULL;
    if (bias) {
        snprintf(name, sizeof(name), "%s.bias", prefix);
        TRY(mf_sam_vec(ld, name, rows, &out->b));
    }
    return MEMFIT_OK;
}

static enum memfit_status vec(struct sam_loader *ld, const char *prefix, const char *suffix,
                              uint64_t n, const float **out)
{
    char name[160];
    snprintf(name, sizeof(name), "%s%s", prefix, suffix);
    return mf_sam_vec(ld, name, n, out);
}

static enum memfit_status load_block(struct sam_loader *ld, uint32_t l, struct sam_enc_layer *ly)
{
    const struct memfit_sam_info *in = &ld->m->info;
    uint64_t D = in->dim, H = in->mlp_hidden;
    char p[96], q[128];
    enum memfit_status st;
    snprintf(p, sizeof(p), "image_encoder.blocks.%u.", l);
    TRY(vec(ld, p, "norm1.weight", D, &ly->norm1_w));
    TRY(vec(ld, p, "norm1.bias", D, &ly->norm1_b));
    TRY(vec(ld, p, "norm2.weight", D, &ly->norm2_w));
    TRY(vec(ld, p, "norm2.bias", D, &ly->norm2_b));
    snprintf(q, sizeof(q), "%sattn.qkv", p);
    TRY(linear(ld, q, 3 * D, D, true, &ly->qkv));
    snprintf(q, sizeof(q), "%sattn.proj", p);
    TRY(linear(ld, q, D, D, true, &ly->proj));
    snprintf(q, sizeof(q), "%smlp.lin1", p);
    TRY(linear(ld, q, H, D, true, &ly->lin1));
    snprintf(q, sizeof(q), "%smlp.lin2", p);
    TRY(linear(ld, q, D, H, true, &ly->lin2));
    ly->global = false;
    for (uint32_t g = 0; g < in->n_global; g++)
        ly->global |= in->global[g] == l;
    ly->rel_size = ly->global ? in->grid : in->window;
    uint64_t rel = (2 * (uint64_t)ly->rel_size - 1) * in->head_dim;
    TRY(vec(ld, p, "attn.rel_pos_h", rel, &ly->rel_h));
    TRY(vec(ld, p, "attn.rel_pos_w", rel, &ly->rel_w));
    return MEMFIT_OK;
}

static enum memfit_status load_all(void *loader)
{
    struct sam_loader *ld = loader;
    struct memfit_sam *m = ld->m;
    struct memfit_sam_info *in = &m->info;
    uint64_t D = in->dim, P = in->patch_size, G = in->grid, C = in->prompt_dim;
    enum memfit_status st;
    in->weight_bytes = 0;
    in->converted_bytes = 0;
    TRY(linear(ld, "image_encoder.patch_embed.proj", D, 3 * P * P, true, &m->patch));
    TRY(mf_sam_vec(ld, "image_encoder.pos_embed", G * G * D, &m->pos));
    for (uint32_t l = 0; l < in->depth; l++)
        TRY(load_block(ld, l, &m->layers[l]));
    TRY(mf_sam_mat(ld, "image_encoder.neck.0.weight", C, D, &m->neck1));
    TRY(mf_sam_vec(ld, "image_encoder.neck.1.weight", C, &m->neck_ln1_w));
    TRY(mf_sam_vec(ld, "image_encoder.neck.1.bias", C, &m->neck_ln1_b));
    TRY(mf_sam_mat(ld, "image_encoder.neck.2.weight", C, C * 9, &m->neck2));
    TRY(mf_sam_vec(ld, "image_encoder.neck.3.weight", C, &m->neck_ln2_w));
    TRY(mf_sam_vec(ld, "image_encoder.neck.3.bias", C, &m->neck_ln2_b));
    TRY(mf_sam_load_decoder(ld, m));
    in->weight_type = m->layers[0].qkv.w.type;
    return MEMFIT_OK;
}

void memfit_sam_close(memfit_sam *m)
{
    if (!m)
        return;
    memfit_threadpool_destroy(m->pool);
    memfit_free(m->layers);
    memfit_free(m->dec_layers);
    memfit_free(m->hyper);
    memfit_free(m->floats);
    memfit_tensors_close(m->set);
    memfit_free(m);
}

enum memfit_status memfit_sam_open(const char *path, const struct memfit_sam_options *opts,
                                   memfit_sam **out)
{
    struct memfit_sam_options defaults;
    if (!opts) {
        memfit_sam_options_default(&defaults);
        opts = &defaults;
    }
    struct memfit_sam *m = memfit_calloc_in(MEMFIT_ALLOC_MODEL, 1, sizeof(*m));
    if (!m)
        return MEMFIT_E_NOMEM;
    enum memfit_status st = memfit_tensors_open(path, NULL, &m->set);
    if (st != MEMFIT_OK) {
        memfit_free(m);
        return st;
    }
    struct sam_loader ld = {.m = m};
    if ((st = recognise(&ld)) != MEMFIT_OK)
        goto fail;
    m->enc_eps = 1e-6f;
    m->layers = memfit_calloc_in(MEMFIT_ALLOC_MODEL, m->info.depth, sizeof(*m->layers));
    if (!m->layers) {
        st = MEMFIT_E_NOMEM;
        goto fail;
    }
    /* The decoder's arrays are allocated by the first (counting) pass. */
    if ((st = mf_model_load_floats(load_all, &ld, &ld.floats, &m->floats)) != MEMFIT_OK)
        goto fail;
    if ((st = memfit_threadpool_create(opts->n_threads, &m->pool)) != MEMFIT_OK)
        goto fail;
    m->info.n_threads = memfit_threadpool_size(m->pool);
    *out = m;
    return MEMFIT_OK;
fail:
    memfit_sam_close(m);
    return st;
}

void memfit_sam_get_info(const memfit_sam *m, struct memfit_sam_info *out)
{
    *out = m->info;
}

/*
 * DINOv2 loader: finds the tensors of a ViT (original checkpoint names or
 * transformers' names, from any of the three file formats), recognises the
 * variant from them (D from cls_token, depth from the block count, registers,
 * SwiGLU), checks every shape, and keeps views into the mapping. The forward
 * lives in vit_forward.c, the shared internals in vit.h.
 */
#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "models/shape.h"
#include "models/vit.h"

static const char *const interp_names[] = {"auto", "orig", "reg", "hf"};

const char *memfit_vit_interpolation_name(enum memfit_vit_interpolation mode)
{
    return (unsigned)mode < 4 ? interp_names[mode] : "?";
}

enum memfit_status memfit_vit_interpolation_parse(const char *text,
                                                  enum memfit_vit_interpolation *out)
{
    for (unsigned i = 0; i < 4; i++)
        if (text && strcasecmp(text, interp_names[i]) == 0) {
            *out = (enum memfit_vit_interpolation)i;
            return MEMFIT_OK;
        }
    return memfit_fail(MEMFIT_E_RANGE, "interpolation '%s': expected auto, orig, reg or hf",
                       text ? text : "");
}

void memfit_vit_options_default(struct memfit_vit_options *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->interpolation = MEMFIT_VIT_INTERP_AUTO;
}

/* Logical tensor names: [0] original checkpoint, [1] transformers. %d is the block. */
enum name_id {
    N_CLS,
    N_POS,
    N_REG,
    N_PATCH_W,
    N_PATCH_B,
    N_NORM_W,
    N_NORM_B,
    N_NORM1_W,
    N_NORM1_B,
    N_QKV_W,
    N_QKV_B,
    N_Q_W,
    N_Q_B,
    N_K_W,
    N_K_B,
    N_V_W,
    N_V_B,
    N_PROJ_W,
    N_PROJ_B,
    N_LS1,
    N_NORM2_W,
    N_NORM2_B,
    N_FC1_W,
    N_FC1_B,
    N_FC2_W,
    N_FC2_B,
    N_W12_W,
    N_W12_B,
    N_W3_W,
    N_W3_B,
    N_LS2,
    N_COUNT
};

static const char *const names[N_COUNT][2] = {
    [N_CLS] = {"cls_token", "embeddings.cls_token"},
    [N_POS] = {"pos_embed", "embeddings.position_embeddings"},
    [N_REG] = {"register_tokens", "embeddings.register_tokens"},
    [N_PATCH_W] = {"patch_embed.proj.weight", "embeddings.patch_embeddings.projection.weight"},
    [N_PATCH_B] = {"patch_embed.proj.bias", "embeddings.patch_embeddings.projection.bias"},
    [N_NORM_W] = {"norm.weight", "layernorm.weight"},
    [N_NORM_B] = {"norm.bias", "layernorm.bias"},
    [N_NORM1_W] = {"blocks.%d.norm1.weight", "encoder.layer.%d.norm1.weight"},
    [N_NORM1_B] = {"blocks.%d.norm1.bias", "encoder.layer.%d.norm1.bias"},
    [N_QKV_W] = {"blocks.%d.attn.qkv.weight", NULL},
    [N_QKV_B] = {"blocks.%d.attn.qkv.bias", NULL},
    [N_Q_W] = {NULL, "encoder.layer.%d.attention.attention.query.weight"},
    [N_Q_B] = {NULL, "encoder.layer.%d.attention.attention.query.bias"},
    [N_K_W] = {NULL, "encoder.layer.%d.attention.attention.key.weight"},
    [N_K_B] = {NULL, "encoder.layer.%d.attention.attention.key.bias"},
    [N_V_W] = {NULL, "encoder.layer.%d.attention.attention.value.weight"},
    [N_V_B] = {NULL, "encoder.layer.%d.attention.attention.value.bias"},
    [N_PROJ_W] = {"blocks.%d.attn.proj.weight", "encoder.layer.%d.attention.output.dense.weight"},
    [N_PROJ_B] = {"blocks.%d.attn.proj.bias", "encoder.layer.%d.attention.output.dense.bias"},
    [N_LS1] = {"blocks.%d.ls1.gamma", "encoder.layer.%d.layer_scale1.lambda1"},
    [N_NORM2_W] = {"blocks.%d.norm2.weight", "encoder.layer.%d.norm2.weight"},
    [N_NORM2_B] = {"blocks.%d.norm2.bias", "encoder.layer.%d.norm2.bias"},
    [N_FC1_W] = {"blocks.%d.mlp.fc1.weight", "encoder.layer.%d.mlp.fc1.weight"},
    [N_FC1_B] = {"blocks.%d.mlp.fc1.bias", "encoder.layer.%d.mlp.fc1.bias"},
    [N_FC2_W] = {"blocks.%d.mlp.fc2.weight", "encoder.layer.%d.mlp.fc2.weight"},
    [N_FC2_B] = {"blocks.%d.mlp.fc2.bias", "encoder.layer.%d.mlp.fc2.bias"},
    [N_W12_W] = {"blocks.%d.mlp.w12.weight", "encoder.layer.%d.mlp.weights_in.weight"},
    [N_W12_B] = {"blocks.%d.mlp.w12.bias", "encoder.layer.%d.mlp.weights_in.bias"},
    [N_W3_W] = {"blocks.%d.mlp.w3.weight", "encoder.layer.%d.mlp.weights_out.weight"},
    [N_W3_B] = {"blocks.%d.mlp.w3.bias", "encoder.layer.%d.mlp.weights_out.bias"},
    [N_LS2] = {"blocks.%d.ls2.gamma", "encoder.layer.%d.layer_scale2.lambda1"},
};

/* Loader state: the model being built and a cursor into its float buffer. */
struct loader {
    struct memfit_vit *m;
    int naming; /* 0 orig, 1 HF */
    struct mf_float_pass floats;
};

static void tensor_name(const struct loader *ld, enum name_id id, int layer, char *buf, size_t size)
{
    /* The table's patterns hold at most one "%d": the block number. */
    const char *pat = names[id][ld->naming], *mark = strstr(pat, "%d");
    if (mark)
        snprintf(buf, size, "%.*s%d%s", (int)(mark - pat), pat, layer, mark + 2);
    else
        snprintf(buf, size, "%s", pat);
}

static bool has_tensor(const struct loader *ld, enum name_id id, int layer)
{
    char name[128];
    if (!names[id][ld->naming])
        return false;
    tensor_name(ld, id, layer, name, sizeof(name));
    struct memfit_tensor_info info;
    enum memfit_status st = memfit_tensors_find(ld->m->set, name, &info, NULL);
    memfit_clear_error();
    return st == MEMFIT_OK;
}

static enum memfit_status find(const struct loader *ld, enum name_id id, int layer,
                               struct memfit_tensor_info *out)
{
    char name[128];
    tensor_name(ld, id, layer, name, sizeof(name));
    if (memfit_tensors_find(ld->m->set, name, out, NULL) != MEMFIT_OK)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: DINOv2 tensor %s is missing",
                           memfit_tensors_path(ld->m->set), name);
    ld->m->info.weight_bytes += out->n_bytes;
    return MEMFIT_OK;
}

/*
 * A parameter vector of n floats (any leading dims of 1, e.g. [1,1,D]): a
 * pointer into the mapping when stored as aligned F32, else converted into
 * the model's float buffer.
 */
static enum memfit_status get_vec(struct loader *ld, enum name_id id, int layer, uint64_t n,
                                  const float **out)
{
    struct memfit_tensor_info t;
    enum memfit_status st = find(ld, id, layer, &t);
    return st != MEMFIT_OK
               ? st
               : mf_model_vec(ld->m->set, &t, n, &ld->floats, &ld->m->info.converted_bytes, out);
}

/* A weight matrix [rows, cols] (or [rows, ...] flattened when flatten) usable by the matmul. */
static enum memfit_status get_mat(struct loader *ld, enum name_id id, int layer, uint64_t rows,
                                  uint64_t cols, bool flatten, struct vit_mat *out)
{
    struct memfit_tensor_info t;
    enum memfit_status st = find(ld, id, layer, &t);
    return st != MEMFIT_OK ? st : mf_model_mat(ld->m->set, &t, rows, cols, flatten, out);
}

/* A view of rows [r0, r0 + n) of a matrix (rows are contiguous whatever the type). */
static struct vit_mat mat_rows(const struct vit_mat *m, uint32_t r0, uint32_t n)
{
    struct vit_mat v = *m;
    v.data = (const uint8_t *)m->data + (size_t)r0 * m->row_bytes;
    v.rows = n;
    return v;
}

static enum memfit_status load_layer(struct loader *ld, int L, struct vit_layer *ly)
{
    const struct memfit_vit_info *in = &ld->m->info;
    uint32_t D = in->dim;
    enum memfit_status st;
#define TRY(x)                                                                                     \
    do {                                                                                           \
        if ((st = (x)) != MEMFIT_OK)                                                               \
            return st;                                                                             \
    } while (0)
    TRY(get_vec(ld, N_NORM1_W, L, D, &ly->norm1_w));
    TRY(get_vec(ld, N_NORM1_B, L, D, &ly->norm1_b));
    if (in->fused_qkv) {
        /* One [3D, D] tensor: q, k, v are its row ranges, used as one matmul. */
        TRY(get_mat(ld, N_QKV_W, L, 3 * (uint64_t)D, D, false, &ly->qkv[0]));
        ly->n_qkv = 1;
        TRY(get_vec(ld, N_QKV_B, L, 3 * (uint64_t)D, &ly->qkv_b[0]));
    } else {
        static const enum name_id w[3] = {N_Q_W, N_K_W, N_V_W}, b[3] = {N_Q_B, N_K_B, N_V_B};
        for (int i = 0; i < 3; i++) {
            TRY(get_mat(ld, w[i], L, D, D, false, &ly->qkv[i]));
            TRY(get_vec(ld, b[i], L, D, &ly->qkv_b[i]));
        }
        ly->n_qkv = 3;
    }
    TRY(get_mat(ld, N_PROJ_W, L, D, D, false, &ly->proj));
    TRY(get_vec(ld, N_PROJ_B, L, D, &ly->proj_b));
    TRY(get_vec(ld, N_LS1, L, D, &ly->ls1));
    TRY(get_vec(ld, N_NORM2_W, L, D, &ly->norm2_w));
    TRY(get_vec(ld, N_NORM2_B, L, D, &ly->norm2_b));
    uint32_t H = in->mlp_hidden;
    if (in->swiglu) {
        TRY(get_mat(ld, N_W12_W, L, 2 * (uint64_t)H, D, false, &ly->fc1));
        TRY(get_vec(ld, N_W12_B, L, 2 * (uint64_t)H, &ly->fc1_b));
        TRY(get_mat(ld, N_W3_W, L, D, H, false, &ly->fc2));
        TRY(get_vec(ld, N_W3_B, L, D, &ly->fc2_b));
    } else {
        TRY(get_mat(ld, N_FC1_W, L, H, D, false, &ly->fc1));
        TRY(get_vec(ld, N_FC1_B, L, H, &ly->fc1_b));
        TRY(get_mat(ld, N_FC2_W, L, D, H, false, &ly->fc2));
        TRY(get_vec(ld, N_FC2_B, L, D, &ly->fc2_b));
    }
    TRY(get_vec(ld, N_LS2, L, D, &ly->ls2));
    return MEMFIT_OK;
}

static enum memfit_status load_all(void *loader)
{
    struct loader *ld = loader;
    struct memfit_vit *m = ld->m;
    struct memfit_vit_info *in = &m->info;
    uint32_t D = in->dim;
    enum memfit_status st;
    in->weight_bytes = 0;
    in->converted_bytes = 0;
    TRY(get_vec(ld, N_CLS, -1, D, &m->cls));
    TRY(get_vec(ld, N_POS, -1, (1 + (uint64_t)in->pos_grid * in->pos_grid) * D, &m->pos));
    if (in->n_registers)
        TRY(get_vec(ld, N_REG, -1, (uint64_t)in->n_registers * D, &m->reg));
    uint64_t P = in->patch_size;
    TRY(get_mat(ld, N_PATCH_W, -1, D, 3 * P * P, true, &m->patch));
    TRY(get_vec(ld, N_PATCH_B, -1, D, &m->patch_b));
    TRY(get_vec(ld, N_NORM_W, -1, D, &m->norm_w));
    TRY(get_vec(ld, N_NORM_B, -1, D, &m->norm_b));
    for (uint32_t L = 0; L < in->depth; L++)
        TRY(load_layer(ld, (int)L, &m->layers[L]));
    in->weight_type = m->layers[0].qkv[0].type;
    return MEMFIT_OK;
}

/* The directory of `path` joined with "config.json" (caller frees). */
static char *sibling_config(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return memfit_strdup("config.json");
    return memfit_asprintf("%.*s/config.json", (int)(slash - path), path);
}

static bool json_u32(json_t *root, const char *key, uint32_t *out)
{
    json_t *v = json_object_get(root, key);
    if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > 1000000)
        return false;
    *out = (uint32_t)json_integer_value(v);
    return true;
}

/*
 * Reads the HF config.json when there is one and checks it against the
 * tensors; a missing file is fine (hyperparameters stay inferred), an
 * unreadable or contradicting one is E_FORMAT.
 */
static enum memfit_status read_config(struct memfit_vit *m, const char *config_path)
{
    char *own = NULL;
    const char *path = config_path;
    if (!path) {
        own = sibling_config(memfit_tensors_path(m->set));
        if (!own)
            return MEMFIT_E_NOMEM;
        path = own;
        FILE *f = fopen(path, "re");
        if (!f) {
            memfit_free(own);
            return MEMFIT_OK;
        }
        fclose(f);
    }
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    enum memfit_status st = MEMFIT_OK;
    if (!root || !json_is_object(root)) {
        st = memfit_fail(MEMFIT_E_FORMAT, "%s: line %d: %s", path, err.line,
                         root ? "not a JSON object" : err.text);
        goto done;
    }
    struct memfit_vit_info *in = &m->info;
    uint32_t v;
    if (json_u32(root, "hidden_size", &v) && v != in->dim) {
        st = memfit_fail(MEMFIT_E_FORMAT, "%s: hidden_size %u, but the tensors have D = %u", path,
                         v, in->dim);
        goto done;
    }
    if (json_u32(root, "num_hidden_layers", &v) && v != in->depth) {
        st = memfit_fail(MEMFIT_E_FORMAT, "%s: num_hidden_layers %u, but the file has %u blocks",
                         path, v, in->depth);
        goto done;
    }
    if (json_u32(root, "patch_size", &v) && v != in->patch_size) {
        st = memfit_fail(MEMFIT_E_FORMAT, "%s: patch_size %u, but the projection is %ux%u", path, v,
                         in->patch_size, in->patch_size);
        goto done;
    }
    if (json_u32(root, "num_attention_heads", &v)) {
        if (in->dim % v != 0) {
            st = memfit_fail(MEMFIT_E_FORMAT, "%s: num_attention_heads %u does not divide D = %u",
                             path, v, in->dim);
            goto done;
        }
        in->heads = v;
        in->head_dim = in->dim / v;
    }
    json_t *eps = json_object_get(root, "layer_norm_eps");
    if (json_is_number(eps) && json_number_value(eps) > 0 && json_number_value(eps) < 1)
        in->layer_norm_eps = (float)json_number_value(eps);
    in->from_config = true;
done:
    json_decref(root);
    memfit_free(own);
    return st;
}

static uint64_t find_shape0(const struct loader *ld, enum name_id id, int layer, uint32_t dim)
{
    char name[128];
    tensor_name(ld, id, layer, name, sizeof(name));
    struct memfit_tensor_info t;
    if (memfit_tensors_find(ld->m->set, name, &t, NULL) != MEMFIT_OK)
        return 0;
    return dim < t.n_dims ? (uint64_t)t.shape[dim] : 0;
}

/* What the file looks like, for the "not a DINOv2 model" message. */
static void describe_family(const memfit_tensors *set, char *buf, size_t size)
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
}

/* Recognises the variant from the tensors (no weights read). */
static enum memfit_status recognise(struct loader *ld)
{
    struct memfit_vit *m = ld->m;
    struct memfit_vit_info *in = &m->info;
    const char *path = memfit_tensors_path(m->set);
    ld->naming = 0;
    if (!has_tensor(ld, N_CLS, -1)) {
        ld->naming = 1;
        if (!has_tensor(ld, N_CLS, -1)) {
            char what[160];
            describe_family(m->set, what, sizeof(what));
            return memfit_fail(MEMFIT_E_FORMAT,
                               "%s: not a DINOv2 model: no cls_token or embeddings.cls_token "
                               "tensor (%s)",
                               path, what);
        }
    }
    in->hf_names = ld->naming == 1;
    struct memfit_tensor_info t;
    enum memfit_status st = find(ld, N_CLS, -1, &t);
    if (st != MEMFIT_OK)
        return st;
    int64_t D = t.shape[t.n_dims ? t.n_dims - 1 : 0];
    if (t.n_dims < 1 || (uint64_t)D != t.n_elements || D < 64 || D > 65536)
        return mf_shape_error(ld->m->set, &t, "[1, 1, D] with 64 <= D <= 65536");
    in->dim = (uint32_t)D;
    in->head_dim = 64;
    if (D % 64 != 0)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: D = %lld is not a multiple of the head size 64",
                           path, (long long)D);
    in->heads = (uint32_t)(D / 64);
    in->layer_norm_eps = 1e-6f;
    uint32_t depth = 0;
    while (depth < 4096 && has_tensor(ld, N_NORM1_W, (int)depth))
        depth++;
    if (depth == 0) {
        char name[128];
        tensor_name(ld, N_NORM1_W, 0, name, sizeof(name));
        return memfit_fail(MEMFIT_E_FORMAT, "%s: DINOv2 tensor %s is missing (no blocks)", path,
                           name);
    }
    in->depth = depth;
    in->fused_qkv = ld->naming == 0;
    in->swiglu = has_tensor(ld, N_W12_W, 0);
    uint64_t rows = find_shape0(ld, in->swiglu ? N_W12_W : N_FC1_W, 0, 0);
    if (in->swiglu)
        rows /= 2;
    if (rows == 0 || rows > 1u << 20) {
        char name[128];
        tensor_name(ld, in->swiglu ? N_W12_W : N_FC1_W, 0, name, sizeof(name));
        return memfit_fail(MEMFIT_E_FORMAT, "%s: DINOv2 tensor %s is missing or empty", path, name);
    }
    in->mlp_hidden = (uint32_t)rows;
    /* Registers: [1, R, D]. */
    in->n_registers = 0;
    if (has_tensor(ld, N_REG, -1)) {
        if ((st = find(ld, N_REG, -1, &t)) != MEMFIT_OK)
            return st;
        if (t.n_elements % (uint64_t)D != 0 || t.n_elements / (uint64_t)D > 64)
            return mf_shape_error(ld->m->set, &t, "[1, R, D] with R <= 64");
        in->n_registers = (uint32_t)(t.n_elements / (uint64_t)D);
    }
    /* Patch size from the projection [D, 3, P, P]. */
    if ((st = find(ld, N_PATCH_W, -1, &t)) != MEMFIT_OK)
        return st;
    if (t.n_dims != 4 || t.shape[0] != D || t.shape[1] != 3 || t.shape[2] != t.shape[3] ||
        t.shape[2] < 1 || t.shape[2] > 64)
        return mf_shape_error(ld->m->set, &t, "[D, 3, P, P]");
    in->patch_size = (uint32_t)t.shape[2];
    /* Position grid from pos_embed [1, 1 + G*G, D]. */
    if ((st = find(ld, N_POS, -1, &t)) != MEMFIT_OK)
        return st;
    uint64_t n_pos = t.n_elements / (uint64_t)D;
    uint32_t g = (uint32_t)sqrt((double)(n_pos > 0 ? n_pos - 1 : 0));
    while ((uint64_t)(g + 1) * (g + 1) <= n_pos - 1)
        g++;
    while (g > 0 && (uint64_t)g * g > n_pos - 1)
        g--;
    if (t.n_elements % (uint64_t)D != 0 || n_pos < 2 || (uint64_t)g * g + 1 != n_pos)
        return mf_shape_error(ld->m->set, &t, "[1, 1 + G*G, D]");
    in->pos_grid = g;
    return MEMFIT_OK;
}

/* The source's own resize: registers -> REG, HF names -> HF, else ORIG. */
static enum memfit_vit_interpolation default_interpolation(const struct memfit_vit_info *in)
{
    return in->n_registers ? MEMFIT_VIT_INTERP_REG
           : in->hf_names  ? MEMFIT_VIT_INTERP_HF
                           : MEMFIT_VIT_INTERP_ORIG;
}

static void interp_from_meta(struct memfit_vit *m)
{
    struct memfit_meta_value v;
    if (memfit_tensors_meta_find(m->set, MEMFIT_VIT_META_INTERPOLATION, &v) == MEMFIT_OK &&
        v.type == MEMFIT_META_STRING && v.v.str.len < 16) {
        char text[16];
        memcpy(text, v.v.str.data, v.v.str.len);
        text[v.v.str.len] = '\0';
        enum memfit_vit_interpolation mode = MEMFIT_VIT_INTERP_AUTO;
        if (memfit_vit_interpolation_parse(text, &mode) == MEMFIT_OK &&
            mode != MEMFIT_VIT_INTERP_AUTO) {
            m->default_interp = mode;
            m->default_source = "metadata";
        } else {
            memfit_log(MEMFIT_LOG_WARN, "%s: %s = \"%s\" not understood; using the default",
                       memfit_tensors_path(m->set), MEMFIT_VIT_META_INTERPOLATION, text);
        }
    }
    memfit_clear_error();
}

enum memfit_status memfit_vit_detect(const memfit_tensors *set, struct memfit_vit_info *out)
{
    /* recognise() only looks tensors up and reads their shapes; the set is
     * borrowed for it and never modified. */
    struct memfit_vit m;
    memset(&m, 0, sizeof(m));
    m.set = (memfit_tensors *)(uintptr_t)set;
    struct loader ld = {.m = &m};
    enum memfit_status st = recognise(&ld);
    if (st != MEMFIT_OK)
        return st;
    m.default_interp = default_interpolation(&m.info);
    m.default_source = "default";
    interp_from_meta(&m);
    m.info.interpolation = m.default_interp;
    m.info.interpolation_source = m.default_source;
    m.info.weight_bytes = 0; /* only the tensors recognise() looked at: not the model's */
    *out = m.info;
    return MEMFIT_OK;
}

void memfit_vit_close(memfit_vit *m)
{
    if (!m)
        return;
    memfit_threadpool_destroy(m->pool);
    memfit_free(m->layers);
    memfit_free(m->floats);
    memfit_tensors_close(m->set);
    memfit_free(m);
}

enum memfit_status memfit_vit_open(const char *path, const struct memfit_vit_options *opts,
                                   memfit_vit **out)
{
    struct memfit_vit_options defaults;
    if (!opts) {
        memfit_vit_options_default(&defaults);
        opts = &defaults;
    }
    if ((unsigned)opts->interpolation > MEMFIT_VIT_INTERP_HF)
        return memfit_fail(MEMFIT_E_RANGE, "interpolation %d out of range",
                           (int)opts->interpolation);
    struct memfit_vit *m = memfit_calloc_in(MEMFIT_ALLOC_MODEL, 1, sizeof(*m));
    if (!m)
        return MEMFIT_E_NOMEM;
    enum memfit_status st = memfit_tensors_open(path, NULL, &m->set);
    if (st != MEMFIT_OK) {
        memfit_free(m);
        return st;
    }
    struct loader ld = {.m = m};
    if ((st = recognise(&ld)) != MEMFIT_OK)
        goto fail;
    if ((st = read_config(m, opts->config_path)) != MEMFIT_OK)
        goto fail;
    m->layers = memfit_calloc_in(MEMFIT_ALLOC_MODEL, m->info.depth, sizeof(*m->layers));
    if (!m->layers) {
        st = MEMFIT_E_NOMEM;
        goto fail;
    }
    if ((st = mf_model_load_floats(load_all, &ld, &ld.floats, &m->floats)) != MEMFIT_OK)
        goto fail;
    m->default_interp = default_interpolation(&m->info);
    m->default_source = "default";
    interp_from_meta(m);
    if (opts->interpolation != MEMFIT_VIT_INTERP_AUTO) {
        m->default_interp = opts->interpolation;
        m->default_source = "option";
    }
    m->info.interpolation = m->default_interp;
    m->info.interpolation_source = m->default_source;
    if ((st = memfit_threadpool_create(opts->n_threads, &m->pool)) != MEMFIT_OK)
        goto fail;
    m->info.n_threads = memfit_threadpool_size(m->pool);
    *out = m;
    return MEMFIT_OK;
fail:
    memfit_vit_close(m);
    return st;
}

void memfit_vit_get_info(const memfit_vit *m, struct memfit_vit_info *out)
{
    *out = m->info;
}

enum memfit_status memfit_vit_set_interpolation(memfit_vit *m, enum memfit_vit_interpolation mode)
{
    if ((unsigned)mode > MEMFIT_VIT_INTERP_HF)
        return memfit_fail(MEMFIT_E_RANGE, "interpolation %d out of range", (int)mode);
    if (mode == MEMFIT_VIT_INTERP_AUTO) {
        m->info.interpolation = m->default_interp;
        m->info.interpolation_source = m->default_source;
    } else {
        m->info.interpolation = mode;
        m->info.interpolation_source = "option";
    }
    return MEMFIT_OK;
}

/* Used by the forward: row views of the fused qkv (kept here beside the loader). */
struct vit_mat mf_vit_mat_rows(const struct vit_mat *mat, uint32_t r0, uint32_t n)
{
    return mat_rows(mat, r0, n);
}

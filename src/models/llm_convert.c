/*
 * A Hugging Face Qwen2/LLaMA directory (config.json, safetensors, one file
 * or shards named by model.safetensors.index.json, tokenizer.json) assembled
 * into the GGUF the LLM engine opens: the <arch>.* metadata from config.json,
 * the tensors renamed as llama.cpp's converter names them, LLaMA's q/k rows
 * permuted from HF's rotate-half layout to consecutive rotary pairs (the
 * engine's NORM rope), and the tokenizer.ggml.* metadata.
 *
 * Everything is checked before the output is created (every tensor found,
 * no tensor left unmapped, every shape against config.json), then the data
 * is streamed from the mappings in bounded chunks (converted on the thread
 * pool when a type is asked) and the input pages already written are
 * dropped. The writer's temporary file is renamed only at the end: a failure
 * leaves nothing behind.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/json.h"
#include "memfit/format.h"
#include "memfit/models.h"

#define CHUNK_BYTES (8u << 20) /* output bytes converted and written per step */
#define PAD_TYPE    5          /* llama.cpp's token type UNUSED, for "[PAD<id>]" */

void memfit_llm_convert_options_default(struct memfit_llm_convert_options *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->type = MEMFIT_TYPE_F16;
    opts->tokenizer = true;
}

/* ---- config.json ------------------------------------------------------------ */

struct hparams {
    char arch[8]; /* "qwen2" or "llama" */
    uint32_t n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_ctx, n_vocab;
    double rms_eps, rope_theta, rope_linear; /* rope_linear 0: no scaling */
    bool tied, head_dim_given, qkv_bias;
};

static enum memfit_status cfg_u32(const char *path, json_t *root, const char *key, bool required,
                                  uint32_t def, uint32_t max, uint32_t *out)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        if (required)
            return memfit_fail(MEMFIT_E_FORMAT, "%s: %s is missing", path, key);
        *out = def;
        return MEMFIT_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > (json_int_t)max)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: %s: expected an integer 1..%u", path, key, max);
    *out = (uint32_t)json_integer_value(v);
    return MEMFIT_OK;
}

static enum memfit_status cfg_num(const char *path, json_t *root, const char *key, bool required,
                                  double def, double lo, double hi, double *out)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        if (required)
            return memfit_fail(MEMFIT_E_FORMAT, "%s: %s is missing", path, key);
        *out = def;
        return MEMFIT_OK;
    }
    double d = json_number_value(v);
    if (!json_is_number(v) || !(d > lo && d < hi))
        return memfit_fail(MEMFIT_E_FORMAT, "%s: %s: expected a number %g < value < %g", path, key,
                           lo, hi);
    *out = d;
    return MEMFIT_OK;
}

static enum memfit_status read_rope_scaling(const char *path, json_t *root, struct hparams *hp)
{
    json_t *rs = json_object_get(root, "rope_scaling");
    hp->rope_linear = 0;
    if (!rs || json_is_null(rs))
        return MEMFIT_OK;
    if (!json_is_object(rs))
        return memfit_fail(MEMFIT_E_FORMAT, "%s: rope_scaling: expected an object or null", path);
    const char *type = json_string_value(json_object_get(rs, "rope_type"));
    if (!type)
        type = json_string_value(json_object_get(rs, "type"));
    if (!type || strcmp(type, "default") == 0)
        return MEMFIT_OK;
    if (strcmp(type, "linear") != 0)
        return memfit_fail(MEMFIT_E_UNSUPPORTED,
                           "%s: rope_scaling type \"%s\" is not supported (linear only)", path,
                           type);
    return cfg_num(path, rs, "factor", true, 0, 0.0, 1e6, &hp->rope_linear);
}

static enum memfit_status read_config(const char *path, struct hparams *hp)
{
    memset(hp, 0, sizeof(*hp));
    json_error_t err;
    mf_json_clear_alloc_failure();
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    if (!root) {
        if (mf_json_alloc_failed())
            return MEMFIT_E_NOMEM;
        struct stat sb;
        if (stat(path, &sb) != 0)
            return memfit_fail(MEMFIT_E_NOT_FOUND,
                               "%s: %s (a Hugging Face model directory has a config.json)", path,
                               strerror(errno));
        return memfit_fail(MEMFIT_E_FORMAT, "%s: line %d: %s", path, err.line, err.text);
    }
    enum memfit_status st = MEMFIT_OK;
    const char *mt = json_string_value(json_object_get(root, "model_type"));
    if (!json_is_object(root))
        st = memfit_fail(MEMFIT_E_FORMAT, "%s: not a JSON object", path);
    else if (!mt)
        st = memfit_fail(MEMFIT_E_FORMAT, "%s: model_type is missing", path);
    else if (strcmp(mt, "qwen2") != 0 && strcmp(mt, "llama") != 0)
        st = memfit_fail(MEMFIT_E_UNSUPPORTED,
                         "%s: model_type \"%s\" is not supported (qwen2 or llama)", path, mt);
    if (st == MEMFIT_OK) {
        snprintf(hp->arch, sizeof(hp->arch), "%s", mt ? mt : "");
        hp->qkv_bias =
            strcmp(mt, "qwen2") == 0 || json_is_true(json_object_get(root, "attention_bias"));
        hp->tied = json_is_true(json_object_get(root, "tie_word_embeddings"));
    }
#define CFG(x)                                                                                     \
    do {                                                                                           \
        if (st == MEMFIT_OK)                                                                       \
            st = (x);                                                                              \
    } while (0)
    CFG(cfg_u32(path, root, "hidden_size", true, 0, 65536, &hp->n_embd));
    CFG(cfg_u32(path, root, "num_hidden_layers", true, 0, 1024, &hp->n_layer));
    CFG(cfg_u32(path, root, "num_attention_heads", true, 0, 1024, &hp->n_head));
    CFG(cfg_u32(path, root, "num_key_value_heads", false, hp->n_head, 1024, &hp->n_head_kv));
    CFG(cfg_u32(path, root, "intermediate_size", true, 0, 1u << 20, &hp->n_ff));
    CFG(cfg_u32(path, root, "max_position_embeddings", true, 0, 1u << 24, &hp->n_ctx));
    CFG(cfg_u32(path, root, "vocab_size", true, 0, 1u << 24, &hp->n_vocab));
    CFG(cfg_num(path, root, "rms_norm_eps", true, 0, 0.0, 1.0, &hp->rms_eps));
    CFG(cfg_num(path, root, "rope_theta", false, 10000.0, 1.0, 1e12, &hp->rope_theta));
    CFG(read_rope_scaling(path, root, hp));
    if (st == MEMFIT_OK && hp->n_head % hp->n_head_kv != 0)
        st = memfit_fail(MEMFIT_E_FORMAT,
                         "%s: num_key_value_heads = %u does not divide num_attention_heads = %u",
                         path, hp->n_head_kv, hp->n_head);
    hp->head_dim_given = json_object_get(root, "head_dim") != NULL &&
                         !json_is_null(json_object_get(root, "head_dim"));
    if (st == MEMFIT_OK && !hp->head_dim_given && hp->n_embd % hp->n_head != 0)
        st = memfit_fail(MEMFIT_E_FORMAT,
                         "%s: num_attention_heads = %u does not divide hidden_size = %u", path,
                         hp->n_head, hp->n_embd);
    CFG(cfg_u32(path, root, "head_dim", false, hp->n_head ? hp->n_embd / hp->n_head : 0, 4096,
                &hp->head_dim));
    if (st == MEMFIT_OK && hp->head_dim % 2 != 0)
        st = memfit_fail(MEMFIT_E_FORMAT, "%s: head size %u is odd (rotary pairs need it even)",
                         path, hp->head_dim);
#undef CFG
    json_decref(root);
    return st;
}

/* ---- Tensors: HF names to GGUF slots ------------------------------------------ */

/* The per-layer tensors, in the order written. */
static const struct {
    const char *hf, *gguf;
} LAYER_NAMES[] = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.q_proj.bias", "attn_q.bias"},
    {"self_attn.k_proj.bias", "attn_k.bias"},
    {"self_attn.v_proj.bias", "attn_v.bias"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"self_attn.o_proj.bias", "attn_output.bias"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
};
enum { L_NORM, L_Q, L_K, L_V, L_BQ, L_BK, L_BV, L_O, L_BO, L_FFN_NORM, L_GATE, L_UP, L_DOWN, L_N };
enum { S_EMBD, S_NORM, S_OUTPUT, S_LAYERS }; /* global slots; layer l, k at S_LAYERS + l*L_N + k */

struct slot {
    bool found;
    size_t set, index; /* where it is */
};

struct conv {
    const char *dir;
    struct hparams hp;
    memfit_tensors **sets;
    size_t n_sets;
    struct slot *slots;
    size_t n_slots;
    const struct memfit_llm_convert_options *opts;
    bool in_place; /* memfit_llm_open_set: NF4 weights allowed, nothing converted */
};

/* What bitsandbytes saves beside an NF4 weight `P.weight` (P.weight<suffix>). */
static const char *const NF4_SUFFIXES[] = {".absmax",
                                           ".quant_map",
                                           ".nested_absmax",
                                           ".nested_quant_map",
                                           ".quant_state.bitsandbytes__nf4",
                                           ".quant_state.bitsandbytes__fp4"};
#define N_NF4_SUFFIXES (sizeof(NF4_SUFFIXES) / sizeof(NF4_SUFFIXES[0]))

/* True for a bitsandbytes quant-state tensor (it goes with its weight). */
static bool is_nf4_aux(const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < N_NF4_SUFFIXES; i++) {
        size_t n = strlen(NF4_SUFFIXES[i]);
        if (len > n && strcmp(name + len - n, NF4_SUFFIXES[i]) == 0)
            return true;
    }
    return false;
}

static bool is_slot_optional(const struct conv *c, size_t s)
{
    if (s == S_OUTPUT)
        return c->hp.tied;
    if (s < S_LAYERS)
        return false;
    size_t k = (s - S_LAYERS) % L_N;
    return k == L_BO || ((k == L_BQ || k == L_BK || k == L_BV) && !c->hp.qkv_bias);
}

/* The slot of an HF tensor name; SIZE_MAX for a tensor to skip, E_UNSUPPORTED for one unknown. */
static enum memfit_status slot_of(const struct conv *c, const char *set_path, const char *name,
                                  size_t *out)
{
    *out = SIZE_MAX;
    if (is_nf4_aux(name))
        return MEMFIT_OK; /* found again through its weight's name */
    if (strcmp(name, "model.embed_tokens.weight") == 0) {
        *out = S_EMBD;
        return MEMFIT_OK;
    }
    if (strcmp(name, "model.norm.weight") == 0) {
        *out = S_NORM;
        return MEMFIT_OK;
    }
    if (strcmp(name, "lm_head.weight") == 0) {
        /* Tied models may still save the head; the engine reuses the embedding. */
        if (!c->hp.tied)
            *out = S_OUTPUT;
        return MEMFIT_OK;
    }
    unsigned layer;
    int used = 0;
    if (sscanf(name, "model.layers.%u.%n", &layer, &used) == 1 && used > 0) {
        const char *suffix = name + used;
        if (layer >= c->hp.n_layer)
            return memfit_fail(MEMFIT_E_FORMAT,
                               "%s: tensor %s: layer %u beyond num_hidden_layers = %u", set_path,
                               name, layer, c->hp.n_layer);
        if (strcmp(suffix, "self_attn.rotary_emb.inv_freq") == 0)
            return MEMFIT_OK; /* recomputed from rope_theta */
        for (size_t k = 0; k < L_N; k++)
            if (strcmp(suffix, LAYER_NAMES[k].hf) == 0) {
                *out = S_LAYERS + (size_t)layer * L_N + k;
                return MEMFIT_OK;
            }
    }
    return memfit_fail(MEMFIT_E_UNSUPPORTED,
                       "%s: tensor %s: not part of a %s model memfit runs (unknown name)", set_path,
                       name, c->hp.arch);
}

/* The GGUF name and expected shape {rows, cols} (cols 0: 1-D) of slot s. */
static void slot_spec(const struct conv *c, size_t s, char *name, size_t size, uint64_t shape[2])
{
    const struct hparams *hp = &c->hp;
    uint64_t E = hp->n_embd, Q = (uint64_t)hp->n_head * hp->head_dim;
    uint64_t KV = (uint64_t)hp->n_head_kv * hp->head_dim, F = hp->n_ff, V = hp->n_vocab;
    shape[1] = 0;
    if (s < S_LAYERS) {
        static const char *const names[] = {"token_embd.weight", "output_norm.weight",
                                            "output.weight"};
        snprintf(name, size, "%s", names[s]);
        shape[0] = s == S_NORM ? E : V;
        shape[1] = s == S_NORM ? 0 : E;
        return;
    }
    size_t k = (s - S_LAYERS) % L_N;
    snprintf(name, size, "blk.%zu.%s", (s - S_LAYERS) / L_N, LAYER_NAMES[k].gguf);
    static const uint8_t rows_of[L_N] = {0, 1, 2, 2, 1, 2, 2, 0, 0, 0, 3, 3, 0};
    uint64_t rows[4] = {E, Q, KV, F};
    shape[0] = rows[rows_of[k]];
    if (k == L_Q || k == L_K || k == L_V || k == L_GATE || k == L_UP)
        shape[1] = E;
    else if (k == L_O)
        shape[1] = Q;
    else if (k == L_DOWN)
        shape[1] = F;
}

/* Heads whose rows LLaMA permutes (0: not permuted). */
static uint32_t permute_heads(const struct conv *c, size_t s)
{
    if (strcmp(c->hp.arch, "llama") != 0 || s < S_LAYERS)
        return 0;
    size_t k = (s - S_LAYERS) % L_N;
    if (k == L_Q || k == L_BQ)
        return c->hp.n_head;
    if (k == L_K || k == L_BK)
        return c->hp.n_head_kv;
    return 0;
}

static void slot_hf_name(const struct conv *c, size_t s, char *name, size_t size)
{
    static const char *const names[] = {"model.embed_tokens.weight", "model.norm.weight",
                                        "lm_head.weight"};
    (void)c;
    if (s < S_LAYERS)
        snprintf(name, size, "%s", names[s]);
    else
        snprintf(name, size, "model.layers.%zu.%s", (s - S_LAYERS) / L_N,
                 LAYER_NAMES[(s - S_LAYERS) % L_N].hf);
}

static enum memfit_status slot_info(const struct conv *c, size_t s, struct memfit_tensor_info *t)
{
    return memfit_tensors_get(c->sets[c->slots[s].set], c->slots[s].index, t);
}

/* Every tensor of every file into its slot; then every slot the model needs checked. */
static enum memfit_status map_tensors(struct conv *c)
{
    for (size_t f = 0; f < c->n_sets; f++) {
        const char *path = memfit_tensors_path(c->sets[f]);
        for (size_t i = 0; i < memfit_tensors_count(c->sets[f]); i++) {
            struct memfit_tensor_info t;
            memfit_tensors_get(c->sets[f], i, &t);
            size_t s;
            enum memfit_status st = slot_of(c, path, t.name, &s);
            if (st != MEMFIT_OK)
                return st;
            if (s == SIZE_MAX)
                continue;
            if (c->slots[s].found)
                return memfit_fail(MEMFIT_E_FORMAT, "%s: tensor %s is also in %s", path, t.name,
                                   memfit_tensors_path(c->sets[c->slots[s].set]));
            c->slots[s] = (struct slot){true, f, i};
        }
    }
    for (size_t s = 0; s < c->n_slots; s++) {
        char hf[128], gguf[128];
        slot_hf_name(c, s, hf, sizeof(hf));
        if (!c->slots[s].found) {
            if (is_slot_optional(c, s))
                continue;
            return memfit_fail(MEMFIT_E_FORMAT, "%s: tensor %s is missing (a %s model needs it)",
                               c->dir, hf, c->hp.arch);
        }
        struct memfit_tensor_info t;
        slot_info(c, s, &t);
        uint64_t want[2];
        slot_spec(c, s, gguf, sizeof(gguf), want);
        if (t.type == MEMFIT_TYPE_U8 && want[1]) {
            if (c->in_place)
                continue; /* bitsandbytes 4-bit: checked by memfit_tensors_nf4 once composed */
            return memfit_fail(MEMFIT_E_UNSUPPORTED,
                               "%s: tensor %s: U8 (a bitsandbytes 4-bit weight): convert does not "
                               "dequantize it; run the directory as it is (memfit generate %s)",
                               memfit_tensors_path(c->sets[c->slots[s].set]), hf, c->dir);
        }
        bool ok = want[1] ? t.n_dims == 2 && (uint64_t)t.shape[0] == want[0] &&
                                (uint64_t)t.shape[1] == want[1]
                          : t.n_dims == 1 && (uint64_t)t.shape[0] == want[0];
        if (!ok) {
            char got[96] = "[";
            for (uint32_t d = 0; d < t.n_dims; d++)
                snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%lld", d ? ", " : "",
                         (long long)t.shape[d]);
            snprintf(got + strlen(got), sizeof(got) - strlen(got), "]");
            char exp[64];
            if (want[1])
                snprintf(exp, sizeof(exp), "[%llu, %llu]", (unsigned long long)want[0],
                         (unsigned long long)want[1]);
            else
                snprintf(exp, sizeof(exp), "[%llu]", (unsigned long long)want[0]);
            return memfit_fail(MEMFIT_E_FORMAT,
                               "%s: tensor %s: shape %s, but config.json makes it %s",
                               memfit_tensors_path(c->sets[c->slots[s].set]), hf, got, exp);
        }
        if (t.type != MEMFIT_TYPE_F32 && t.type != MEMFIT_TYPE_F16 && t.type != MEMFIT_TYPE_BF16) {
            const struct memfit_type_info *ti = memfit_type_get_info(t.type);
            return memfit_fail(
                MEMFIT_E_UNSUPPORTED, "%s: tensor %s: type %s (expected F32, F16 or BF16)",
                memfit_tensors_path(c->sets[c->slots[s].set]), hf, ti ? ti->name : "unknown");
        }
    }
    return MEMFIT_OK;
}

/* ---- Opening the safetensors files ------------------------------------------- */

static enum memfit_status add_set(struct conv *c, const char *file)
{
    char *path = memfit_asprintf("%s/%s", c->dir, file);
    if (!path)
        return MEMFIT_E_NOMEM;
    memfit_tensors **grown = memfit_realloc(c->sets, (c->n_sets + 1) * sizeof(*grown));
    enum memfit_status st = grown ? MEMFIT_OK : MEMFIT_E_NOMEM;
    if (grown)
        c->sets = grown;
    struct memfit_tensors_options o;
    memfit_tensors_options_default(&o);
    o.format = MEMFIT_FORMAT_SAFETENSORS;
    if (st == MEMFIT_OK)
        st = memfit_tensors_open(path, &o, &c->sets[c->n_sets]);
    if (st == MEMFIT_OK)
        c->n_sets++;
    memfit_free(path);
    return st;
}

static bool file_exists(const char *dir, const char *file, enum memfit_status *st)
{
    char *path = memfit_asprintf("%s/%s", dir, file);
    if (!path) {
        *st = MEMFIT_E_NOMEM;
        return false;
    }
    struct stat sb;
    bool found = stat(path, &sb) == 0;
    memfit_free(path);
    *st = MEMFIT_OK;
    return found;
}

/* The shards model.safetensors.index.json names (each once, in the order first named). */
static enum memfit_status open_index(struct conv *c, const char *index_path)
{
    json_error_t err;
    mf_json_clear_alloc_failure();
    json_t *root = json_load_file(index_path, 0, &err);
    if (!root)
        return mf_json_alloc_failed() ? MEMFIT_E_NOMEM
                                      : memfit_fail(MEMFIT_E_FORMAT, "%s: line %d: %s", index_path,
                                                    err.line, err.text);
    json_t *map = json_object_get(root, "weight_map");
    enum memfit_status st = MEMFIT_OK;
    if (!json_is_object(map) || json_object_size(map) == 0)
        st =
            memfit_fail(MEMFIT_E_FORMAT, "%s: weight_map: expected a non-empty object", index_path);
    const char *key;
    json_t *v;
    json_object_foreach(map, key, v)
    {
        if (st != MEMFIT_OK)
            break;
        const char *file = json_string_value(v);
        if (!file || !file[0] || strchr(file, '/') || strcmp(file, "..") == 0) {
            st = memfit_fail(MEMFIT_E_FORMAT,
                             "%s: weight_map[\"%s\"]: expected a file name in the directory",
                             index_path, key);
            break;
        }
        bool seen = false;
        for (size_t i = 0; i < c->n_sets && !seen; i++) {
            const char *p = memfit_tensors_path(c->sets[i]);
            size_t lp = strlen(p), lf = strlen(file);
            seen = lp > lf && p[lp - lf - 1] == '/' && strcmp(p + lp - lf, file) == 0;
        }
        if (seen)
            continue;
        if (!file_exists(c->dir, file, &st)) {
            if (st == MEMFIT_OK)
                st = memfit_fail(MEMFIT_E_NOT_FOUND,
                                 "%s: weight_map names %s (for %s), which is not in %s", index_path,
                                 file, key, c->dir);
            break;
        }
        st = add_set(c, file);
    }
    json_decref(root);
    return st;
}

static enum memfit_status open_sets(struct conv *c)
{
    enum memfit_status st;
    char *index_path = memfit_asprintf("%s/model.safetensors.index.json", c->dir);
    if (!index_path)
        return MEMFIT_E_NOMEM;
    bool sharded = file_exists(c->dir, "model.safetensors.index.json", &st);
    if (st == MEMFIT_OK && sharded)
        st = open_index(c, index_path);
    else if (st == MEMFIT_OK && file_exists(c->dir, "model.safetensors", &st))
        st = add_set(c, "model.safetensors");
    else if (st == MEMFIT_OK)
        st = memfit_fail(MEMFIT_E_NOT_FOUND,
                         "%s: no model.safetensors or model.safetensors.index.json", c->dir);
    memfit_free(index_path);
    return st;
}

/* ---- Metadata -------------------------------------------------------------------- */

static enum memfit_status set_num(memfit_writer *w, const char *arch, const char *suffix,
                                  enum memfit_meta_type type, double value)
{
    char key[128];
    snprintf(key, sizeof(key), "%s.%s", arch, suffix);
    struct memfit_meta_value v = {.type = type};
    if (type == MEMFIT_META_F32)
        v.v.f = value;
    else
        v.v.u = (uint64_t)value;
    return memfit_writer_set_meta(w, key, &v);
}

static enum memfit_status write_hparams(const struct conv *c, memfit_writer *w, const char *name)
{
    const struct hparams *hp = &c->hp;
    const char *a = hp->arch;
    enum memfit_status st = memfit_writer_set_meta_string(w, "general.architecture", a);
    if (st == MEMFIT_OK)
        st = memfit_writer_set_meta_string(w, "general.name", name);
    const struct {
        const char *suffix;
        enum memfit_meta_type type;
        double value;
    } keys[] = {
        {"context_length", MEMFIT_META_U32, hp->n_ctx},
        {"embedding_length", MEMFIT_META_U32, hp->n_embd},
        {"block_count", MEMFIT_META_U32, hp->n_layer},
        {"feed_forward_length", MEMFIT_META_U32, hp->n_ff},
        {"attention.head_count", MEMFIT_META_U32, hp->n_head},
        {"attention.head_count_kv", MEMFIT_META_U32, hp->n_head_kv},
        {"attention.layer_norm_rms_epsilon", MEMFIT_META_F32, hp->rms_eps},
        {"rope.freq_base", MEMFIT_META_F32, hp->rope_theta},
        {"rope.dimension_count", MEMFIT_META_U32, hp->head_dim},
        {"vocab_size", MEMFIT_META_U32, hp->n_vocab},
    };
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]) && st == MEMFIT_OK; i++)
        st = set_num(w, a, keys[i].suffix, keys[i].type, keys[i].value);
    if (st == MEMFIT_OK && hp->head_dim_given) {
        st = set_num(w, a, "attention.key_length", MEMFIT_META_U32, hp->head_dim);
        if (st == MEMFIT_OK)
            st = set_num(w, a, "attention.value_length", MEMFIT_META_U32, hp->head_dim);
    }
    if (st == MEMFIT_OK && hp->rope_linear > 0) {
        char key[128];
        snprintf(key, sizeof(key), "%s.rope.scaling.type", a);
        st = memfit_writer_set_meta_string(w, key, "linear");
        if (st == MEMFIT_OK)
            st = set_num(w, a, "rope.scaling.factor", MEMFIT_META_F32, hp->rope_linear);
    }
    return st;
}

/*
 * A per-token array padded to n_vocab: tokens with "[PAD<id>]", types with
 * UNUSED, scores with -1000 (llama.cpp's converter pads the same way when
 * the embedding has more rows than the tokenizer has tokens, as Qwen's do).
 */
static enum memfit_status set_padded(memfit_writer *w, const char *key,
                                     const struct memfit_meta_value *v, uint32_t n_vocab)
{
    uint64_t extra = n_vocab - v->v.array.count;
    uint64_t bytes = v->v.array.raw_bytes;
    if (v->v.array.elem_type == MEMFIT_META_STRING)
        bytes += extra * (8 + 20); /* u64 length + "[PAD<id>]" */
    else
        bytes += extra * 4; /* I32 types, F32 scores */
    uint8_t *raw = memfit_malloc((size_t)bytes);
    if (!raw)
        return MEMFIT_E_NOMEM;
    memcpy(raw, v->v.array.raw, (size_t)v->v.array.raw_bytes);
    size_t used = (size_t)v->v.array.raw_bytes;
    for (uint64_t id = v->v.array.count; id < n_vocab; id++) {
        if (v->v.array.elem_type == MEMFIT_META_STRING) {
            char text[24];
            uint64_t len =
                (uint64_t)snprintf(text, sizeof(text), "[PAD%llu]", (unsigned long long)id);
            memcpy(raw + used, &len, 8);
            memcpy(raw + used + 8, text, (size_t)len);
            used += 8 + (size_t)len;
        } else if (v->v.array.elem_type == MEMFIT_META_F32) {
            float score = -1000.0f;
            memcpy(raw + used, &score, 4);
            used += 4;
        } else {
            int32_t type = PAD_TYPE;
            memcpy(raw + used, &type, 4);
            used += 4;
        }
    }
    struct memfit_meta_value padded = *v;
    padded.v.array.count = n_vocab;
    padded.v.array.raw = raw;
    padded.v.array.raw_bytes = used;
    enum memfit_status st = memfit_writer_set_meta(w, key, &padded);
    memfit_free(raw);
    return st;
}

static bool is_per_token(const char *key, const struct memfit_meta_value *v)
{
    return v->type == MEMFIT_META_ARRAY &&
           (strcmp(key, "tokenizer.ggml.tokens") == 0 ||
            strcmp(key, "tokenizer.ggml.token_type") == 0 ||
            strcmp(key, "tokenizer.ggml.scores") == 0) &&
           (v->v.array.elem_type == MEMFIT_META_STRING || v->v.array.elem_type == MEMFIT_META_I32 ||
            v->v.array.elem_type == MEMFIT_META_F32);
}

static enum memfit_status copy_tokenizer(const struct conv *c, const char *tok_path,
                                         const char *tmp_path, memfit_writer *w)
{
    memfit_tensors *set = NULL;
    struct memfit_tensors_options o;
    memfit_tensors_options_default(&o);
    o.format = MEMFIT_FORMAT_GGUF;
    enum memfit_status st = memfit_tensors_open(tmp_path, &o, &set);
    for (size_t i = 0; st == MEMFIT_OK && i < memfit_tensors_meta_count(set); i++) {
        const char *key;
        struct memfit_meta_value v;
        memfit_tensors_meta_get(set, i, &key, &v);
        if (!is_per_token(key, &v) || v.v.array.count == c->hp.n_vocab)
            st = memfit_writer_set_meta(w, key, &v);
        else if (v.v.array.count > c->hp.n_vocab)
            st = memfit_fail(MEMFIT_E_FORMAT,
                             "%s: %llu tokens, but config.json's vocab_size is %u (the "
                             "embedding's rows)",
                             tok_path, (unsigned long long)v.v.array.count, c->hp.n_vocab);
        else
            st = set_padded(w, key, &v, c->hp.n_vocab);
    }
    memfit_tensors_close(set);
    return st;
}

/*
 * The tokenizer metadata, made by memfit_tokenizer_json_to_gguf into a
 * metadata-only GGUF beside the output (the writer API cannot be read back)
 * and copied from there with the per-token arrays padded to vocab_size.
 */
static enum memfit_status write_tokenizer(const struct conv *c, const char *out_path,
                                          memfit_writer *w)
{
    enum memfit_status st;
    if (!file_exists(c->dir, "tokenizer.json", &st))
        return st != MEMFIT_OK
                   ? st
                   : memfit_fail(MEMFIT_E_NOT_FOUND,
                                 "%s/tokenizer.json: not found (convert without a tokenizer "
                                 "to run the model on token ids only)",
                                 c->dir);
    bool have_config = file_exists(c->dir, "tokenizer_config.json", &st);
    if (st != MEMFIT_OK)
        return st;
    char *tok = memfit_asprintf("%s/tokenizer.json", c->dir);
    char *tok_config = memfit_asprintf("%s/tokenizer_config.json", c->dir);
    char *tmp = memfit_asprintf("%s.tokenizer-%ld.gguf", out_path, (long)getpid());
    memfit_writer *tw = NULL;
    bool committed = false;
    st = tok && tok_config && tmp ? MEMFIT_OK : MEMFIT_E_NOMEM;
    if (st == MEMFIT_OK)
        st = memfit_writer_create(tmp, MEMFIT_FORMAT_GGUF, &tw);
    if (st == MEMFIT_OK)
        st = memfit_tokenizer_json_to_gguf(tok, have_config ? tok_config : NULL, tw);
    if (st == MEMFIT_OK) {
        st = memfit_writer_commit(tw);
        committed = st == MEMFIT_OK;
    }
    memfit_writer_destroy(tw);
    if (st == MEMFIT_OK)
        st = copy_tokenizer(c, tok, tmp, w);
    if (committed)
        unlink(tmp);
    memfit_free(tok);
    memfit_free(tok_config);
    memfit_free(tmp);
    return st;
}

/* ---- Tensor data ----------------------------------------------------------------- */

/* The output type of slot s's tensor t under the options. */
static enum memfit_type out_type(const struct conv *c, const struct memfit_tensor_info *t)
{
    if (!c->opts->convert_types)
        return t->type;
    if (t->n_dims < 2)
        return MEMFIT_TYPE_F32;
    const struct memfit_type_info *ti = memfit_type_get_info(c->opts->type);
    if (t->shape[1] % ti->block_size != 0)
        return MEMFIT_TYPE_F16; /* as memfit quantize does with such rows */
    return c->opts->type;
}

/* One chunk of rows [r0, r0 + n) of a tensor seen as rows x cols. */
struct chunk {
    const uint8_t *src;
    enum memfit_type in, out;
    uint64_t cols, in_row, out_row;
    uint32_t heads; /* permute rows within each of this many heads (0: none) */
    uint64_t rows, r0;
    uint8_t *dst;
    float *scratch; /* cols floats per thread */
    enum memfit_status status;
};

/* The source row of output row r: LLaMA's permute (halves -> pairs) undone per head. */
static uint64_t source_row(const struct chunk *k, uint64_t r)
{
    if (!k->heads)
        return r;
    uint64_t per = k->rows / k->heads, h = r / per, j = r % per;
    return h * per + (j % 2) * (per / 2) + j / 2;
}

static void convert_rows(void *ctx, uint64_t begin, uint64_t end, unsigned thread)
{
    struct chunk *k = ctx;
    float *f = k->scratch + (size_t)thread * k->cols;
    for (uint64_t i = begin; i < end; i++) {
        const uint8_t *s = k->src + source_row(k, k->r0 + i) * k->in_row;
        uint8_t *d = k->dst + i * k->out_row;
        if (k->in == k->out) {
            memcpy(d, s, (size_t)k->in_row);
            continue;
        }
        enum memfit_status st = memfit_type_dequantize_row(k->in, s, f, k->cols);
        if (st == MEMFIT_OK)
            st = memfit_type_quantize_row(k->out, f, d, k->cols);
        if (st != MEMFIT_OK)
            k->status = st; /* any thread's failure will do; the kernels cannot fail here */
    }
}

/* Drops the whole pages of [p, p + n) from the process (clean file pages: nothing is lost). */
static void release_pages(const void *p, uint64_t n)
{
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t ps = page > 0 ? (uintptr_t)page : 4096;
    uintptr_t begin = ((uintptr_t)p + ps - 1) / ps * ps, end = ((uintptr_t)p + n) / ps * ps;
    if (end > begin)
        (void)madvise((void *)begin, end - begin, MADV_DONTNEED);
}

static enum memfit_status write_tensor(const struct conv *c, memfit_writer *w, size_t w_index,
                                       size_t s, enum memfit_type out, memfit_threadpool *pool,
                                       uint8_t *buf, float *scratch)
{
    struct memfit_tensor_info t;
    slot_info(c, s, &t);
    struct chunk k = {.src = t.data, .in = t.type, .out = out, .scratch = scratch};
    /* 1-D tensors are rows of one element, so a bias permutes like its weight. */
    k.cols = t.n_dims == 2 ? (uint64_t)t.shape[1] : 1;
    k.rows = t.n_elements / k.cols;
    k.heads = permute_heads(c, s);
    enum memfit_status st = memfit_type_bytes(t.type, k.cols, &k.in_row);
    if (st == MEMFIT_OK)
        st = memfit_type_bytes(out, k.cols, &k.out_row);
    if (st != MEMFIT_OK)
        return st;
    uint64_t per_chunk = CHUNK_BYTES / k.out_row ? CHUNK_BYTES / k.out_row : 1;
    for (k.r0 = 0; k.r0 < k.rows; k.r0 += per_chunk) {
        uint64_t n = k.rows - k.r0 < per_chunk ? k.rows - k.r0 : per_chunk;
        k.dst = buf;
        k.status = MEMFIT_OK;
        memfit_threadpool_parallel_for(k.in == k.out ? NULL : pool, n, convert_rows, &k);
        if (k.status != MEMFIT_OK)
            return memfit_fail(k.status, "%s: %s", t.name, memfit_last_error());
        st = memfit_writer_write_tensor(w, w_index, k.r0 * k.out_row, buf, (size_t)(n * k.out_row));
        if (st != MEMFIT_OK)
            return st;
        if (!k.heads)
            release_pages(k.src + k.r0 * k.in_row, n * k.in_row);
    }
    if (k.heads)
        release_pages(t.data, t.n_bytes);
    return MEMFIT_OK;
}

static enum memfit_status write_tensors(const struct conv *c, memfit_writer *w)
{
    /* Slots in GGUF order: embedding, the layers, final norm, head. */
    size_t *order = memfit_malloc(c->n_slots * sizeof(*order));
    enum memfit_type *types = memfit_malloc(c->n_slots * sizeof(*types));
    memfit_threadpool *pool = NULL;
    uint8_t *buf = NULL;
    float *scratch = NULL;
    enum memfit_status st = order && types ? MEMFIT_OK : MEMFIT_E_NOMEM;
    size_t n = 0;
    uint64_t max_cols = 1, max_row = 1;
    for (size_t i = 0; st == MEMFIT_OK && i < c->n_slots; i++) {
        size_t s = i == 0                ? S_EMBD
                   : i < c->n_slots - 2  ? S_LAYERS + i - 1
                   : i == c->n_slots - 2 ? S_NORM
                                         : S_OUTPUT;
        if (!c->slots[s].found)
            continue;
        struct memfit_tensor_info t;
        slot_info(c, s, &t);
        char name[128];
        uint64_t spec[2];
        slot_spec(c, s, name, sizeof(name), spec);
        types[n] = out_type(c, &t);
        order[n++] = s;
        st = memfit_writer_add_tensor(w, name, types[n - 1], t.n_dims, t.shape);
        uint64_t cols = t.n_dims == 2 ? (uint64_t)t.shape[1] : 1, row = 0;
        if (st == MEMFIT_OK)
            st = memfit_type_bytes(types[n - 1], cols, &row);
        if (cols > max_cols)
            max_cols = cols;
        if (row > max_row)
            max_row = row;
    }
    unsigned threads = 1;
    if (st == MEMFIT_OK && c->opts->convert_types) {
        st = memfit_threadpool_create(c->opts->n_threads, &pool);
        threads = memfit_threadpool_size(pool);
    }
    if (st == MEMFIT_OK) {
        buf = memfit_malloc(CHUNK_BYTES > max_row ? CHUNK_BYTES : (size_t)max_row);
        scratch = memfit_malloc((size_t)max_cols * threads * sizeof(float));
        if (!buf || !scratch)
            st = MEMFIT_E_NOMEM;
    }
    for (size_t i = 0; st == MEMFIT_OK && i < n; i++)
        st = write_tensor(c, w, i, order[i], types[i], pool, buf, scratch);
    memfit_threadpool_destroy(pool);
    memfit_free(buf);
    memfit_free(scratch);
    memfit_free(order);
    memfit_free(types);
    return st;
}

/* ---- The conversion -------------------------------------------------------------- */

static enum memfit_status check_options(const struct memfit_llm_convert_options *o)
{
    if (!o->convert_types)
        return MEMFIT_OK;
    static const enum memfit_type ok[] = {MEMFIT_TYPE_F32,  MEMFIT_TYPE_F16,  MEMFIT_TYPE_BF16,
                                          MEMFIT_TYPE_Q8_0, MEMFIT_TYPE_Q4_0, MEMFIT_TYPE_Q4_K,
                                          MEMFIT_TYPE_Q6_K};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (o->type == ok[i])
            return MEMFIT_OK;
    const struct memfit_type_info *ti = memfit_type_get_info(o->type);
    return memfit_fail(MEMFIT_E_UNSUPPORTED,
                       "memfit_llm_convert_hf: type %s: expected f32, f16, bf16, q8_0, q4_0, "
                       "q4_k or q6_k",
                       ti ? ti->name : "unknown");
}

/* The directory's last component, for general.name. */
static char *base_name(const char *dir)
{
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/')
        len--;
    size_t start = len;
    while (start > 0 && dir[start - 1] != '/')
        start--;
    return memfit_asprintf("%.*s", (int)(len - start), dir + start);
}

/* config.json read, the safetensors opened and every tensor in its slot, checked. */
static enum memfit_status prepare(struct conv *c)
{
    char *config = memfit_asprintf("%s/config.json", c->dir);
    if (!config)
        return MEMFIT_E_NOMEM;
    enum memfit_status st = read_config(config, &c->hp);
    memfit_free(config);
    if (st != MEMFIT_OK)
        return st;
    c->n_slots = S_LAYERS + (size_t)c->hp.n_layer * L_N;
    c->slots = memfit_calloc(c->n_slots, sizeof(*c->slots));
    if (!c->slots)
        return MEMFIT_E_NOMEM;
    if ((st = open_sets(c)) != MEMFIT_OK)
        return st;
    return map_tensors(c);
}

static enum memfit_status convert(struct conv *c, const char *out_path)
{
    enum memfit_status st = prepare(c);
    if (st != MEMFIT_OK)
        return st;
    char *name = base_name(c->dir);
    memfit_writer *w = NULL;
    st = name ? memfit_writer_create(out_path, MEMFIT_FORMAT_GGUF, &w) : MEMFIT_E_NOMEM;
    if (st == MEMFIT_OK)
        st = write_hparams(c, w, name);
    if (st == MEMFIT_OK && c->opts->tokenizer)
        st = write_tokenizer(c, out_path, w);
    if (st == MEMFIT_OK)
        st = write_tensors(c, w);
    if (st == MEMFIT_OK)
        st = memfit_writer_commit(w);
    memfit_writer_destroy(w);
    memfit_free(name);
    return st;
}

enum memfit_status memfit_llm_convert_hf(const char *dir, const char *out_path,
                                         const struct memfit_llm_convert_options *opts)
{
    struct memfit_llm_convert_options defaults;
    if (!dir || !out_path)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_llm_convert_hf: NULL argument");
    if (!opts) {
        memfit_llm_convert_options_default(&defaults);
        opts = &defaults;
    }
    enum memfit_status st = check_options(opts);
    if (st != MEMFIT_OK)
        return st;
    struct conv c = {.dir = dir, .opts = opts};
    st = convert(&c, out_path);
    for (size_t i = 0; i < c.n_sets; i++)
        memfit_tensors_close(c.sets[i]);
    memfit_free(c.sets);
    memfit_free(c.slots);
    return st;
}

/* ---- The directory in place (memfit_llm_open_set) ------------------------------------ */

/*
 * The metadata the engine reads (hparams, tokenizer, and memfit.rope.neox:
 * HF's q/k rows are in rotate-half order, so in place both architectures
 * take NEOX rotary) as a metadata-only GGUF: written to a temporary file,
 * mapped, and unlinked at once, so it lives as long as the set.
 */
static enum memfit_status open_meta(struct conv *c, memfit_tensors **out)
{
    static unsigned counter;
    const char *tmpdir = getenv("TMPDIR");
    char *tmp = memfit_asprintf("%s/memfit-hf-%ld-%u.gguf", tmpdir && *tmpdir ? tmpdir : "/tmp",
                                (long)getpid(), __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED));
    char *name = base_name(c->dir);
    memfit_writer *w = NULL;
    enum memfit_status st = tmp && name ? MEMFIT_OK : MEMFIT_E_NOMEM;
    if (st == MEMFIT_OK)
        st = memfit_writer_create(tmp, MEMFIT_FORMAT_GGUF, &w);
    if (st == MEMFIT_OK)
        st = write_hparams(c, w, name);
    struct memfit_meta_value neox = {.type = MEMFIT_META_BOOL, .v.u = 1};
    if (st == MEMFIT_OK)
        st = memfit_writer_set_meta(w, "memfit.rope.neox", &neox);
    bool have_tok = false;
    if (st == MEMFIT_OK)
        have_tok = file_exists(c->dir, "tokenizer.json", &st);
    if (st == MEMFIT_OK && have_tok)
        st = write_tokenizer(c, tmp, w);
    bool committed = false;
    if (st == MEMFIT_OK)
        committed = (st = memfit_writer_commit(w)) == MEMFIT_OK;
    memfit_writer_destroy(w);
    if (committed) {
        struct memfit_tensors_options o;
        memfit_tensors_options_default(&o);
        o.format = MEMFIT_FORMAT_GGUF;
        st = memfit_tensors_open(tmp, &o, out);
        unlink(tmp);
    }
    memfit_free(tmp);
    memfit_free(name);
    return st;
}

/* The tensor `name` in any of the directory's files. */
static bool find_any(const struct conv *c, const char *name, size_t *set, size_t *index)
{
    for (size_t f = 0; f < c->n_sets; f++) {
        struct memfit_tensor_info t;
        if (memfit_tensors_find(c->sets[f], name, &t, index) == MEMFIT_OK) {
            *set = f;
            return true;
        }
    }
    memfit_clear_error();
    return false;
}

/* Slot s under its GGUF name, with its bitsandbytes quant state when it has one. */
static enum memfit_status compose_slot(const struct conv *c, size_t s, memfit_tensors *set)
{
    char hf[160], gguf[160], aux[200];
    uint64_t want[2];
    slot_hf_name(c, s, hf, sizeof(hf));
    slot_spec(c, s, gguf, sizeof(gguf), want);
    enum memfit_status st =
        memfit_tensors_compose_tensor(set, gguf, c->sets[c->slots[s].set], c->slots[s].index);
    for (size_t i = 0; st == MEMFIT_OK && i < N_NF4_SUFFIXES; i++) {
        size_t f, index;
        snprintf(aux, sizeof(aux), "%s%s", hf, NF4_SUFFIXES[i]);
        if (!find_any(c, aux, &f, &index))
            continue;
        snprintf(aux, sizeof(aux), "%s%s", gguf, NF4_SUFFIXES[i]);
        st = memfit_tensors_compose_tensor(set, aux, c->sets[f], index);
    }
    return st;
}

/* The U8 slots (bitsandbytes 4-bit) read as NF4 and checked against config.json. */
static enum memfit_status check_nf4_slots(const struct conv *c, const memfit_tensors *set)
{
    for (size_t s = 0; s < c->n_slots; s++) {
        char hf[160], gguf[160];
        uint64_t want[2];
        slot_hf_name(c, s, hf, sizeof(hf));
        slot_spec(c, s, gguf, sizeof(gguf), want);
        struct memfit_tensor_info t; /* the shards now belong to the composite */
        if (!c->slots[s].found || memfit_tensors_find(set, gguf, &t, NULL) != MEMFIT_OK ||
            t.type != MEMFIT_TYPE_U8)
            continue;
        struct memfit_nf4_matrix m;
        enum memfit_status st = memfit_tensors_nf4(set, gguf, &m);
        if (st == MEMFIT_E_NOT_FOUND)
            return memfit_fail(MEMFIT_E_UNSUPPORTED,
                               "%s: tensor %s: U8 without a bitsandbytes quant state (memfit runs "
                               "F32, F16, BF16 and bitsandbytes NF4 weights)",
                               c->dir, hf);
        if (st != MEMFIT_OK)
            return st;
        if (s == S_EMBD)
            return memfit_fail(
                MEMFIT_E_UNSUPPORTED,
                "%s: tensor %s: an NF4 token embedding is not supported (transformers "
                "keeps it in float)",
                c->dir, hf);
        if (m.rows != want[0] || m.cols != want[1])
            return memfit_fail(MEMFIT_E_FORMAT,
                               "%s: tensor %s: NF4 shape [%llu, %llu], but config.json makes it "
                               "[%llu, %llu]",
                               c->dir, hf, (unsigned long long)m.rows, (unsigned long long)m.cols,
                               (unsigned long long)want[0], (unsigned long long)want[1]);
    }
    return MEMFIT_OK;
}

static enum memfit_status open_in_place(struct conv *c, memfit_tensors **out)
{
    enum memfit_status st = prepare(c);
    if (st != MEMFIT_OK)
        return st;
    memfit_tensors *meta = NULL, *set = NULL;
    if ((st = open_meta(c, &meta)) != MEMFIT_OK)
        return st;
    if ((st = memfit_tensors_compose_begin(c->dir, MEMFIT_FORMAT_GGUF, &set)) != MEMFIT_OK) {
        memfit_tensors_close(meta);
        return st;
    }
    st = memfit_tensors_compose_adopt(set, meta);
    if (st == MEMFIT_OK)
        st = memfit_tensors_compose_meta(set, meta);
    for (size_t s = 0; st == MEMFIT_OK && s < c->n_slots; s++)
        if (c->slots[s].found)
            st = compose_slot(c, s, set);
    /* The shards go to the composite last: until then conv owns them. */
    for (size_t f = 0; f < c->n_sets; f++) {
        enum memfit_status a = st == MEMFIT_OK ? memfit_tensors_compose_adopt(set, c->sets[f])
                                               : (memfit_tensors_close(c->sets[f]), st);
        c->sets[f] = NULL;
        if (st == MEMFIT_OK)
            st = a;
    }
    if (st == MEMFIT_OK)
        st = memfit_tensors_compose_finish(set);
    if (st == MEMFIT_OK)
        st = check_nf4_slots(c, set);
    if (st != MEMFIT_OK) {
        memfit_tensors_close(set);
        return st;
    }
    *out = set;
    return MEMFIT_OK;
}

enum memfit_status memfit_llm_open_set(const char *path, memfit_tensors **out)
{
    if (!path || !out)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_llm_open_set: NULL argument");
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return memfit_tensors_open(path, NULL, out);
    struct conv c = {.dir = path, .in_place = true};
    struct memfit_llm_convert_options o;
    memfit_llm_convert_options_default(&o);
    c.opts = &o;
    enum memfit_status st = open_in_place(&c, out);
    for (size_t i = 0; i < c.n_sets; i++)
        memfit_tensors_close(c.sets[i]);
    memfit_free(c.sets);
    memfit_free(c.slots);
    return st;
}

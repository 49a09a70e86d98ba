/*
 * LLM loader and planner (Qwen2, LLaMA from GGUF): reads the hyperparameters
 * from the `<arch>.*` metadata, finds and checks every tensor (shape, a type
 * the kernels read and dot), keeps views into the mapping, converts the 1-D
 * parameters that are not F32 into one float buffer, and computes the exact
 * memory of a session (the same layout function the sessions use, so plan
 * and reality cannot drift). Sessions and the forward are in llm_eval.c.
 *
 * memfit_llm_detect runs the loader in its counting mode over the set (no
 * weight read, nothing allocated), so it finds every missing tensor or
 * metadata key that open would, and its info is enough to plan.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "models/llm.h"
#include "models/shape.h"

#define ALIGN 64

void memfit_llm_options_default(struct memfit_llm_options *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->n_batch = 64;
    opts->kv_type = MEMFIT_TYPE_F16;
}

/* ---- Metadata ------------------------------------------------------------------ */

struct loader {
    const memfit_tensors *set;
    const char *path;
    struct memfit_llm_info *info;
    struct memfit_llm *m; /* NULL when only detecting */
    bool counting;        /* count the floats to convert; store nothing */
    size_t n_floats;
    float *next_float;
};

/* `<arch>.<suffix>` into buf ("" if it did not fit: never, arch has at most 15 characters and
 * the suffixes are literals, but GCC cannot see that once this is inlined). */
static const char *arch_key(const struct loader *ld, const char *suffix, char *buf, size_t size)
{
    int n = snprintf(buf, size, "%s.%s", ld->info->arch, suffix);
    if (n < 0 || (size_t)n >= size)
        buf[0] = '\0';
    return buf;
}

/*
 * Looks `<arch>.<suffix>` up: *found false (and OK) when absent and not
 * required, E_FORMAT naming the key when absent and required.
 */
static enum memfit_status find_key(const struct loader *ld, const char *suffix, bool required,
                                   char *key, size_t key_size, struct memfit_meta_value *v,
                                   bool *found)
{
    arch_key(ld, suffix, key, key_size);
    *found = memfit_tensors_meta_find(ld->set, key, v) == MEMFIT_OK;
    if (*found)
        return MEMFIT_OK;
    memfit_clear_error();
    if (required)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: metadata key %s is missing", ld->path, key);
    return MEMFIT_OK;
}

/* An integer key in [lo, hi]; `def` when absent and not required. */
static enum memfit_status meta_u32(const struct loader *ld, const char *suffix, bool required,
                                   uint32_t def, uint32_t lo, uint32_t hi, uint32_t *out)
{
    char key[128];
    struct memfit_meta_value v;
    bool found;
    enum memfit_status st = find_key(ld, suffix, required, key, sizeof(key), &v, &found);
    if (st != MEMFIT_OK || !found) {
        *out = def;
        return st;
    }
    uint64_t u;
    if (memfit_meta_value_u64(&v, &u) != MEMFIT_OK)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: metadata key %s: a %s, expected an integer",
                           ld->path, key, memfit_meta_type_name(v.type));
    if (u < lo || u > hi)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: metadata key %s = %llu, expected %u..%u", ld->path,
                           key, (unsigned long long)u, lo, hi);
    *out = (uint32_t)u;
    return MEMFIT_OK;
}

/* A float key in (lo, hi); `def` when absent and not required. */
static enum memfit_status meta_f32(const struct loader *ld, const char *suffix, bool required,
                                   double def, double lo, double hi, float *out)
{
    char key[128];
    struct memfit_meta_value v;
    bool found;
    enum memfit_status st = find_key(ld, suffix, required, key, sizeof(key), &v, &found);
    if (st != MEMFIT_OK || !found) {
        *out = (float)def;
        return st;
    }
    double d;
    if (memfit_meta_value_f64(&v, &d) != MEMFIT_OK)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: metadata key %s: a %s, expected a number",
                           ld->path, key, memfit_meta_type_name(v.type));
    if (!(d > lo && d < hi))
        return memfit_fail(MEMFIT_E_FORMAT, "%s: metadata key %s = %g, expected %g < value < %g",
                           ld->path, key, d, lo, hi);
    *out = (float)d;
    return MEMFIT_OK;
}

/* A string key copied into buf (truncated); false when absent or not a string. */
static bool meta_str(const memfit_tensors *set, const char *key, char *buf, size_t size)
{
    struct memfit_meta_value v;
    if (memfit_tensors_meta_find(set, key, &v) != MEMFIT_OK || v.type != MEMFIT_META_STRING) {
        memfit_clear_error();
        return false;
    }
    size_t n = v.v.str.len < size - 1 ? (size_t)v.v.str.len : size - 1;
    memcpy(buf, v.v.str.data, n);
    buf[n] = '\0';
    return true;
}

static enum memfit_status read_hparams(struct loader *ld)
{
    struct memfit_llm_info *in = ld->info;
    char arch[64];
    if (!meta_str(ld->set, "general.architecture", arch, sizeof(arch)))
        return memfit_fail(MEMFIT_E_FORMAT,
                           "%s: metadata key general.architecture is missing (not an LLM GGUF)",
                           ld->path);
    if (strcmp(arch, "qwen2") != 0 && strcmp(arch, "llama") != 0)
        return memfit_fail(MEMFIT_E_UNSUPPORTED,
                           "%s: general.architecture \"%s\" is not supported (memfit runs qwen2 "
                           "and llama)",
                           ld->path, arch);
    memcpy(in->arch, arch, strlen(arch) + 1); /* "qwen2" or "llama" fits */
    /* memfit.rope.neox: a Hugging Face directory in place, whose LLaMA q/k rows are not
     * permuted (memfit_llm_open_set) */
    struct memfit_meta_value neox;
    in->rope_neox = strcmp(arch, "qwen2") == 0 ||
                    (memfit_tensors_meta_find(ld->set, "memfit.rope.neox", &neox) == MEMFIT_OK &&
                     neox.type == MEMFIT_META_BOOL && neox.v.u);
    memfit_clear_error();
    enum memfit_status st;
#define TRY(x)                                                                                     \
    do {                                                                                           \
        if ((st = (x)) != MEMFIT_OK)                                                               \
            return st;                                                                             \
    } while (0)
    TRY(meta_u32(ld, "context_length", true, 0, 1, 1u << 24, &in->n_ctx_train));
    TRY(meta_u32(ld, "embedding_length", true, 0, 1, 65536, &in->n_embd));
    TRY(meta_u32(ld, "block_count", true, 0, 1, 1024, &in->n_layer));
    TRY(meta_u32(ld, "feed_forward_length", true, 0, 1, 1u << 20, &in->n_ff));
    TRY(meta_u32(ld, "attention.head_count", true, 0, 1, 1024, &in->n_head));
    TRY(meta_u32(ld, "attention.head_count_kv", false, in->n_head, 1, in->n_head, &in->n_head_kv));
    if (in->n_head % in->n_head_kv != 0)
        return memfit_fail(MEMFIT_E_FORMAT,
                           "%s: %s.attention.head_count_kv = %u does not divide head_count = %u",
                           ld->path, arch, in->n_head_kv, in->n_head);
    uint32_t key_len, value_len;
    TRY(meta_u32(ld, "attention.key_length", false, 0, 2, 4096, &key_len));
    TRY(meta_u32(ld, "attention.value_length", false, key_len, 2, 4096, &value_len));
    if (key_len == 0) {
        if (in->n_embd % in->n_head != 0)
            return memfit_fail(MEMFIT_E_FORMAT,
                               "%s: %s.attention.head_count = %u does not divide "
                               "embedding_length = %u",
                               ld->path, arch, in->n_head, in->n_embd);
        key_len = value_len = in->n_embd / in->n_head;
    }
    if (key_len != value_len || key_len % 2 != 0 || key_len > 4096)
        return memfit_fail(MEMFIT_E_FORMAT,
                           "%s: head size: keys %u, values %u; memfit needs them equal and even",
                           ld->path, key_len, value_len);
    in->head_dim = key_len;
    TRY(meta_u32(ld, "rope.dimension_count", false, in->head_dim, 2, in->head_dim, &in->n_rot));
    if (in->n_rot % 2 != 0)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: %s.rope.dimension_count = %u is odd", ld->path,
                           arch, in->n_rot);
    TRY(meta_f32(ld, "rope.freq_base", false, 10000.0, 1.0, 1e12, &in->rope_freq_base));
    TRY(meta_f32(ld, "attention.layer_norm_rms_epsilon", true, 0, 0.0, 1.0, &in->rms_eps));
    /* Linear scaling divides positions by the factor; the old key name too. */
    char key[128], type[32] = "linear";
    meta_str(ld->set, arch_key(ld, "rope.scaling.type", key, sizeof(key)), type, sizeof(type));
    float factor;
    TRY(meta_f32(ld, "rope.scaling.factor", false, 0.0, -1.0, 1e6, &factor));
    if (factor == 0.0f)
        TRY(meta_f32(ld, "rope.scale_linear", false, 0.0, -1.0, 1e6, &factor));
    in->rope_freq_scale = 1.0f;
    if (strcmp(type, "none") == 0) {
        in->rope_freq_scale = 1.0f;
    } else if (strcmp(type, "linear") == 0) {
        if (factor < 0)
            return memfit_fail(MEMFIT_E_FORMAT, "%s: %s.rope.scaling.factor = %g is negative",
                               ld->path, arch, (double)factor);
        if (factor > 0)
            in->rope_freq_scale = 1.0f / factor;
    } else {
        return memfit_fail(MEMFIT_E_UNSUPPORTED,
                           "%s: %s.rope.scaling.type \"%s\" is not supported (none or linear)",
                           ld->path, arch, type);
    }
    return MEMFIT_OK;
}

/* ---- Tensors --------------------------------------------------------------------- */

static bool has_tensor(const struct loader *ld, const char *name)
{
    struct memfit_tensor_info t;
    enum memfit_status st = memfit_tensors_find(ld->set, name, &t, NULL);
    memfit_clear_error();
    return st == MEMFIT_OK;
}

static enum memfit_status find(struct loader *ld, const char *name, struct memfit_tensor_info *out)
{
    if (memfit_tensors_find(ld->set, name, out, NULL) != MEMFIT_OK)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: %s tensor %s is missing", ld->path, ld->info->arch,
                           name);
    return MEMFIT_OK;
}

static enum memfit_status bad_shape(const struct loader *ld, const struct memfit_tensor_info *t,
                                    const char *expected)
{
    char got[128];
    mf_shape_text(t, got, sizeof(got));
    return memfit_fail(MEMFIT_E_FORMAT, "%s: tensor %s: shape %s, expected %s", ld->path, t->name,
                       got, expected);
}

/* A 1-D parameter of n floats: in place when stored as aligned F32, else converted. */
static enum memfit_status get_vec(struct loader *ld, const char *name, uint64_t n,
                                  const float **out)
{
    struct memfit_tensor_info t;
    enum memfit_status st = find(ld, name, &t);
    if (st != MEMFIT_OK)
        return st;
    if (t.n_elements != n || t.n_dims != 1) {
        char exp[64];
        snprintf(exp, sizeof(exp), "[%llu]", (unsigned long long)n);
        return bad_shape(ld, &t, exp);
    }
    ld->info->weight_bytes += t.n_bytes;
    if (t.type == MEMFIT_TYPE_F32 && ((uintptr_t)t.data & 3) == 0) {
        *out = t.data;
        return MEMFIT_OK;
    }
    if (ld->counting) {
        const struct mf_type_traits *tr = mf_type_traits(t.type);
        const struct memfit_type_info *ti = memfit_type_get_info(t.type);
        if (!tr || !tr->to_float || !ti || n % ti->block_size != 0)
            return memfit_fail(MEMFIT_E_FORMAT, "%s: tensor %s: type %s cannot be read as floats",
                               ld->path, name, ti ? ti->name : "unknown");
        ld->n_floats += n;
        ld->info->converted_bytes += n * sizeof(float);
        *out = NULL;
        return MEMFIT_OK;
    }
    st = memfit_type_dequantize_row(t.type, t.data, ld->next_float, n);
    if (st != MEMFIT_OK)
        return memfit_fail(st, "%s: tensor %s: %s", ld->path, name, memfit_last_error());
    *out = ld->next_float;
    ld->next_float += n;
    return MEMFIT_OK;
}

/* An optional 1-D parameter: NULL when the tensor is absent. */
static enum memfit_status get_opt_vec(struct loader *ld, const char *name, uint64_t n,
                                      const float **out)
{
    *out = NULL;
    if (!has_tensor(ld, name))
        return MEMFIT_OK;
    return get_vec(ld, name, n, out);
}

/* Bytes of an NF4 weight and its quant state. */
static uint64_t nf4_bytes(const struct loader *ld, const char *name)
{
    static const char *const suffixes[] = {"",
                                           ".absmax",
                                           ".quant_map",
                                           ".nested_absmax",
                                           ".nested_quant_map",
                                           ".quant_state.bitsandbytes__nf4"};
    uint64_t bytes = 0;
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        char full[160];
        struct memfit_tensor_info t;
        snprintf(full, sizeof(full), "%s%s", name, suffixes[i]);
        if (memfit_tensors_find(ld->set, full, &t, NULL) == MEMFIT_OK)
            bytes += t.n_bytes;
    }
    memfit_clear_error();
    return bytes;
}

/* A bitsandbytes NF4 weight [rows, cols] (rows 0: any), used in place against Q8_0 activations. */
static enum memfit_status get_nf4(struct loader *ld, const char *name, uint64_t rows, uint64_t cols,
                                  bool count_bytes, struct llm_mat *out)
{
    struct memfit_nf4_matrix m;
    enum memfit_status st = memfit_tensors_nf4(ld->set, name, &m);
    if (st != MEMFIT_OK)
        return st;
    if (m.cols != cols || (rows && m.rows != rows) || m.rows > (uint64_t)1 << 24 ||
        cols % 32 != 0) {
        char exp[64];
        snprintf(exp, sizeof(exp), "[%llu, %llu]", (unsigned long long)(rows ? rows : m.rows),
                 (unsigned long long)cols);
        return memfit_fail(MEMFIT_E_FORMAT, "%s: tensor %s: NF4 shape [%llu, %llu], expected %s",
                           ld->path, name, (unsigned long long)m.rows, (unsigned long long)m.cols,
                           exp);
    }
    if (count_bytes)
        ld->info->weight_bytes += nf4_bytes(ld, name);
    memset(out, 0, sizeof(*out));
    out->type = MEMFIT_TYPE_NF4;
    out->dot_type = MEMFIT_TYPE_Q8_0;
    out->data = m.codes;
    out->row_bytes = (size_t)(cols / 2);
    out->rows = (uint32_t)m.rows;
    out->cols = (uint32_t)cols;
    out->nf4 = m;
    return MEMFIT_OK;
}

/* A weight matrix [rows, cols] the dot products and the matmul can use in place. */
static enum memfit_status get_mat(struct loader *ld, const char *name, uint64_t rows, uint64_t cols,
                                  bool count_bytes, struct llm_mat *out)
{
    struct memfit_tensor_info t;
    enum memfit_status st = find(ld, name, &t);
    if (st != MEMFIT_OK)
        return st;
    if (t.type == MEMFIT_TYPE_U8)
        return get_nf4(ld, name, rows, cols, count_bytes, out);
    if (t.n_dims != 2 || t.shape[1] != (int64_t)cols || (rows && t.shape[0] != (int64_t)rows)) {
        char exp[64];
        if (rows)
            snprintf(exp, sizeof(exp), "[%llu, %llu]", (unsigned long long)rows,
                     (unsigned long long)cols);
        else
            snprintf(exp, sizeof(exp), "[n_vocab, %llu]", (unsigned long long)cols);
        return bad_shape(ld, &t, exp);
    }
    if (t.shape[0] < 1 || t.shape[0] > (int64_t)1 << 24)
        return bad_shape(ld, &t, "1 to 16777216 rows");
    const struct memfit_type_info *ti = memfit_type_get_info(t.type);
    const struct mf_type_traits *tr = mf_type_traits(t.type);
    if (!ti || !tr || !tr->to_float || !tr->vec_dot)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: tensor %s: type %s has no matmul kernel", ld->path,
                           name, ti ? ti->name : "unknown");
    enum memfit_type dot = tr->vec_dot_type;
    if (dot != MEMFIT_TYPE_F32 && dot != MEMFIT_TYPE_Q8_0 && dot != MEMFIT_TYPE_Q8_K)
        return memfit_fail(MEMFIT_E_UNSUPPORTED,
                           "%s: tensor %s: type %s dots with %s activations, which the LLM "
                           "engine does not make",
                           ld->path, name, ti->name, memfit_type_get_info(dot)->name);
    const struct memfit_type_info *di = memfit_type_get_info(dot);
    if (cols % ti->block_size != 0 || cols % di->block_size != 0)
        return memfit_fail(
            MEMFIT_E_FORMAT, "%s: tensor %s: rows of %llu elements: not a multiple of the %s block",
            ld->path, name, (unsigned long long)cols, cols % ti->block_size ? ti->name : di->name);
    uint64_t row_bytes;
    if ((st = memfit_type_bytes(t.type, cols, &row_bytes)) != MEMFIT_OK)
        return st;
    if (count_bytes)
        ld->info->weight_bytes += t.n_bytes;
    out->type = t.type;
    out->dot_type = dot;
    out->dot = tr->vec_dot;
    out->dot_cols = mf_type_dot_cols(t.type);
    out->data = t.data;
    out->row_bytes = (size_t)row_bytes;
    out->rows = (uint32_t)t.shape[0];
    out->cols = (uint32_t)cols;
    return MEMFIT_OK;
}

static enum memfit_status load_layer(struct loader *ld, uint32_t l, struct llm_layer *ly)
{
    const struct memfit_llm_info *in = ld->info;
    uint64_t E = in->n_embd, Q = (uint64_t)in->n_head * in->head_dim;
    uint64_t KV = (uint64_t)in->n_head_kv * in->head_dim, F = in->n_ff;
    char name[96];
    enum memfit_status st;
#define NAME(suffix) (snprintf(name, sizeof(name), "blk.%u.%s", l, suffix), name)
    TRY(get_vec(ld, NAME("attn_norm.weight"), E, &ly->attn_norm));
    TRY(get_mat(ld, NAME("attn_q.weight"), Q, E, true, &ly->q));
    TRY(get_mat(ld, NAME("attn_k.weight"), KV, E, true, &ly->k));
    TRY(get_mat(ld, NAME("attn_v.weight"), KV, E, true, &ly->v));
    TRY(get_opt_vec(ld, NAME("attn_q.bias"), Q, &ly->bq));
    TRY(get_opt_vec(ld, NAME("attn_k.bias"), KV, &ly->bk));
    TRY(get_opt_vec(ld, NAME("attn_v.bias"), KV, &ly->bv));
    /* Biases come as a set: q alone tells the model has them. */
    bool bias = has_tensor(ld, NAME("attn_q.bias"));
    if (l == 0)
        ld->info->qkv_bias = bias;
    if (bias != ld->info->qkv_bias || has_tensor(ld, NAME("attn_k.bias")) != bias ||
        has_tensor(ld, NAME("attn_v.bias")) != bias)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: block %u: %s", ld->path, l,
                           bias ? "attention biases incomplete (q, k and v needed)"
                                : "attention biases missing where block 0 has them");
    TRY(get_mat(ld, NAME("attn_output.weight"), E, Q, true, &ly->o));
    TRY(get_opt_vec(ld, NAME("attn_output.bias"), E, &ly->bo));
    TRY(get_vec(ld, NAME("ffn_norm.weight"), E, &ly->ffn_norm));
    TRY(get_mat(ld, NAME("ffn_gate.weight"), F, E, true, &ly->gate));
    TRY(get_mat(ld, NAME("ffn_up.weight"), F, E, true, &ly->up));
    TRY(get_mat(ld, NAME("ffn_down.weight"), E, F, true, &ly->down));
#undef NAME
    return MEMFIT_OK;
}

/* The vocabulary from token_embd, checked against the tokenizer's and the metadata's. */
static enum memfit_status check_vocab(struct loader *ld, const struct llm_mat *embd)
{
    struct memfit_llm_info *in = ld->info;
    in->n_vocab = embd->rows;
    struct memfit_meta_value v;
    if (memfit_tensors_meta_find(ld->set, "tokenizer.ggml.tokens", &v) == MEMFIT_OK) {
        if (v.type != MEMFIT_META_ARRAY || v.v.array.elem_type != MEMFIT_META_STRING)
            return memfit_fail(MEMFIT_E_FORMAT, "%s: tokenizer.ggml.tokens is not a string array",
                               ld->path);
        if (v.v.array.count != in->n_vocab)
            return memfit_fail(MEMFIT_E_FORMAT,
                               "%s: tokenizer.ggml.tokens has %llu tokens, but token_embd.weight "
                               "has %u rows",
                               ld->path, (unsigned long long)v.v.array.count, in->n_vocab);
    }
    memfit_clear_error();
    uint32_t vocab_size;
    enum memfit_status st =
        meta_u32(ld, "vocab_size", false, in->n_vocab, 1, UINT32_MAX, &vocab_size);
    if (st != MEMFIT_OK)
        return st;
    if (vocab_size != in->n_vocab)
        return memfit_fail(MEMFIT_E_FORMAT,
                           "%s: %s.vocab_size = %u, but token_embd.weight has %u rows", ld->path,
                           in->arch, vocab_size, in->n_vocab);
    return MEMFIT_OK;
}

/* Every tensor, in counting mode (detect, first pass of open) or storing mode. */
static enum memfit_status load_all(struct loader *ld)
{
    struct memfit_llm_info *in = ld->info;
    struct memfit_llm *m = ld->m;
    struct llm_mat embd, output;
    struct llm_layer scratch;
    const float *vec;
    enum memfit_status st;
    in->weight_bytes = 0;
    in->converted_bytes = 0;
    ld->n_floats = 0;
    TRY(get_mat(ld, "token_embd.weight", 0, in->n_embd, true, &embd));
    in->embd_bytes = in->weight_bytes;
    if (embd.type == MEMFIT_TYPE_NF4)
        return memfit_fail(MEMFIT_E_UNSUPPORTED,
                           "%s: token_embd.weight: an NF4 token embedding is not supported",
                           ld->path);
    TRY(check_vocab(ld, &embd));
    in->tied_output = !has_tensor(ld, "output.weight");
    if (in->tied_output)
        output = embd;
    else
        TRY(get_mat(ld, "output.weight", in->n_vocab, in->n_embd, true, &output));
    TRY(get_vec(ld, "output_norm.weight", in->n_embd, &vec));
    if (m) {
        m->tok_embd = embd;
        m->output = output;
        m->output_norm = vec;
    }
    TRY(get_opt_vec(ld, "rope_freqs.weight", in->n_rot / 2, &vec));
    if (m)
        m->rope_freqs = vec;
    for (uint32_t l = 0; l < in->n_layer; l++)
        TRY(load_layer(ld, l, m ? &m->layers[l] : &scratch));
    struct memfit_tensor_info t;
    TRY(find(ld, "blk.0.attn_q.weight", &t));
    in->weight_type = t.type == MEMFIT_TYPE_U8 ? MEMFIT_TYPE_NF4 : t.type; /* get_mat took it */
    return MEMFIT_OK;
}

static enum memfit_status detect(const memfit_tensors *set, struct memfit_llm_info *out)
{
    struct memfit_llm_info info;
    memset(&info, 0, sizeof(info));
    struct loader ld = {
        .set = set, .path = memfit_tensors_path(set), .info = &info, .counting = true};
    if (memfit_tensors_format(set) != MEMFIT_FORMAT_GGUF)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: an LLM must be a GGUF file (this is %s)", ld.path,
                           memfit_format_name(memfit_tensors_format(set)));
    enum memfit_status st = read_hparams(&ld);
    if (st == MEMFIT_OK)
        st = load_all(&ld);
    if (st != MEMFIT_OK)
        return st;
    info.file_bytes = memfit_tensors_file_bytes(set);
    *out = info;
    return MEMFIT_OK;
}

enum memfit_status memfit_llm_detect(const memfit_tensors *set, struct memfit_llm_info *out)
{
    if (!set || !out)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_llm_detect: NULL argument");
    return detect(set, out);
}

void memfit_llm_close(memfit_llm *m)
{
    if (!m)
        return;
    memfit_free(m->layers);
    memfit_free(m->floats);
    memfit_tensors_close(m->set);
    memfit_free(m);
}

enum memfit_status memfit_llm_open(const char *path, memfit_llm **out)
{
    if (!path || !out)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_llm_open: NULL argument");
    struct memfit_llm *m = memfit_calloc_in(MEMFIT_ALLOC_MODEL, 1, sizeof(*m));
    if (!m)
        return MEMFIT_E_NOMEM;
    enum memfit_status st = memfit_llm_open_set(path, &m->set); /* a file or an HF directory */
    if (st != MEMFIT_OK) {
        memfit_free(m);
        return st;
    }
    /* Pass 1 checks everything and counts the floats to convert. */
    if ((st = detect(m->set, &m->info)) != MEMFIT_OK)
        goto fail;
    m->layers = memfit_calloc_in(MEMFIT_ALLOC_MODEL, m->info.n_layer, sizeof(*m->layers));
    if (!m->layers) {
        st = MEMFIT_E_NOMEM;
        goto fail;
    }
    size_t n_floats = (size_t)(m->info.converted_bytes / sizeof(float));
    if (n_floats) {
        m->floats = memfit_malloc_in(MEMFIT_ALLOC_MODEL, n_floats * sizeof(float));
        if (!m->floats) {
            st = MEMFIT_E_NOMEM;
            goto fail;
        }
    }
    /* Pass 2 stores the views and converts. */
    struct memfit_llm_info info = m->info;
    struct loader ld = {.set = m->set,
                        .path = memfit_tensors_path(m->set),
                        .info = &info,
                        .m = m,
                        .next_float = m->floats};
    if ((st = load_all(&ld)) != MEMFIT_OK)
        goto fail;
    m->converted_bytes = m->info.converted_bytes;
    *out = m;
    return MEMFIT_OK;
fail:
    memfit_llm_close(m);
    return st;
}

void memfit_llm_get_info(const memfit_llm *m, struct memfit_llm_info *out)
{
    *out = m->info;
}

const memfit_tensors *memfit_llm_tensors(const memfit_llm *m)
{
    return m->set;
}

/* ---- The plan ------------------------------------------------------------------- */

static size_t align_up(size_t v)
{
    return (v + ALIGN - 1) / ALIGN * ALIGN;
}

/* Bytes of n elements of `type` with n rounded up to its block. */
static size_t row_bytes(enum memfit_type type, size_t n)
{
    const struct memfit_type_info *ti = memfit_type_get_info(type);
    size_t blocks = (n + ti->block_size - 1) / ti->block_size;
    return blocks * ti->type_size;
}

enum memfit_status mf_llm_layout(const struct memfit_llm_info *in,
                                 const struct memfit_llm_options *opts, uint32_t n_seq,
                                 struct llm_layout *L)
{
    memset(L, 0, sizeof(*L));
    if (n_seq == 0 || n_seq > LLM_MAX_SEQ)
        return memfit_fail(MEMFIT_E_RANGE, "llm: %u sessions sharing a forward: expected 1..%d",
                           n_seq, LLM_MAX_SEQ);
    uint64_t max_ctx = (uint64_t)in->n_ctx_train * 8;
    uint32_t n_ctx = opts->n_ctx;
    if (n_ctx == 0)
        n_ctx = in->n_ctx_train < 4096 ? in->n_ctx_train : 4096;
    if (n_ctx == 0 || n_ctx > max_ctx)
        return memfit_fail(MEMFIT_E_RANGE,
                           "llm: context of %u tokens: expected 1..%llu (8 x the training "
                           "context %u)",
                           n_ctx, (unsigned long long)max_ctx, in->n_ctx_train);
    if (opts->n_batch == 0 || opts->n_batch > 65536)
        return memfit_fail(MEMFIT_E_RANGE, "llm: batch of %u tokens: expected 1..65536",
                           opts->n_batch);
    if (opts->kv_type != MEMFIT_TYPE_F16 && opts->kv_type != MEMFIT_TYPE_Q8_0 &&
        opts->kv_type != MEMFIT_TYPE_F32) {
        const struct memfit_type_info *ti = memfit_type_get_info(opts->kv_type);
        return memfit_fail(MEMFIT_E_UNSUPPORTED, "llm: KV cache type %s: expected f16, q8_0 or f32",
                           ti ? ti->name : "unknown");
    }
    if (opts->kv_type == MEMFIT_TYPE_Q8_0 && in->head_dim % 32 != 0)
        return memfit_fail(MEMFIT_E_UNSUPPORTED,
                           "llm: KV cache type q8_0 needs a head size that is a multiple of 32; "
                           "this model's is %u",
                           in->head_dim);
    unsigned threads = opts->n_threads ? opts->n_threads : memfit_cpu_count();
    if (threads > 1024)
        return memfit_fail(MEMFIT_E_RANGE, "llm: %u threads, at most 1024", threads);
    L->n_ctx = n_ctx;
    L->n_batch = opts->n_batch < n_ctx ? opts->n_batch : n_ctx;
    L->n_threads = threads;
    L->kv_type = opts->kv_type;
    L->n_seq = n_seq;
    /* A group's forward: up to n_batch prompt rows and one token of every session. */
    L->n_rows = L->n_batch + (n_seq > 1 ? n_seq : 0);
    size_t hd = in->head_dim, B = L->n_rows, E = in->n_embd;
    size_t Q = (size_t)in->n_head * hd, KV = (size_t)in->n_head_kv * hd, F = in->n_ff;
    /* Sizes stay far below 2^64 with the limits read_hparams enforces, but the
     * context times the layers can still be asked beyond the address space. */
    L->kv_row_bytes = row_bytes(opts->kv_type, hd);
    double kv = 2.0 * in->n_layer * in->n_head_kv * (double)n_ctx * (double)L->kv_row_bytes;
    if (kv > (double)(SIZE_MAX / 4))
        return memfit_fail(MEMFIT_E_RANGE, "llm: a KV cache of %.0f bytes is too large", kv);
    L->kv_layer_bytes = (size_t)in->n_head_kv * n_ctx * L->kv_row_bytes;
    L->kv_bytes = align_up(2 * in->n_layer * L->kv_layer_bytes);
    size_t maxdim = E > Q ? E : Q;
    if (F > maxdim)
        maxdim = F;
    size_t o = 0;
    L->x = o, o += align_up(B * E * sizeof(float));
    L->xn = o, o += align_up(B * E * sizeof(float));
    L->q = o, o += align_up(B * Q * sizeof(float));
    L->kv = o, o += align_up(B * 2 * KV * sizeof(float));
    L->att = o, o += align_up(B * Q * sizeof(float));
    L->ffn = o, o += align_up(B * 2 * F * sizeof(float));
    L->rope = o, o += align_up(B * in->n_rot * sizeof(float)); /* cos, sin per pair */
    /* Rows through the dot products (one per sequence) quantized to each dot type. */
    L->act_q8_0_bytes = align_up(row_bytes(MEMFIT_TYPE_Q8_0, maxdim));
    L->act_q8_k_bytes = align_up(row_bytes(MEMFIT_TYPE_Q8_K, maxdim));
    L->act_q8_0 = o, o += L->act_q8_0_bytes * n_seq;
    L->act_q8_k = o, o += L->act_q8_k_bytes * n_seq;
    L->rows = o, o += align_up(B * sizeof(struct llm_row));
    size_t t = 0;
    L->t_scores = t, t += align_up((size_t)n_ctx * sizeof(float));
    L->t_qrow = t, t += align_up(row_bytes(MEMFIT_TYPE_Q8_0, hd));
    L->t_acc = t, t += align_up(hd * sizeof(float));
    L->t_vrow = t, t += align_up(hd * sizeof(float));
    L->t_wrow = t, t += align_up(maxdim * sizeof(float));
    L->thread_bytes = t;
    L->threads = o, o += t * threads;
    L->work_bytes = o;
    return MEMFIT_OK;
}

static enum memfit_status plan_n(const struct memfit_llm_info *info,
                                 const struct memfit_llm_options *opts, uint32_t n_seq,
                                 struct memfit_llm_plan *out)
{
    struct memfit_llm_options defaults;
    if (!info || !out)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_llm_plan_for: NULL argument");
    if (!opts) {
        memfit_llm_options_default(&defaults);
        opts = &defaults;
    }
    struct llm_layout L;
    enum memfit_status st = mf_llm_layout(info, opts, n_seq, &L);
    if (st != MEMFIT_OK)
        return st;
    out->weight_bytes = info->weight_bytes;
    out->converted_bytes = info->converted_bytes;
    out->kv_bytes = L.kv_bytes;
    out->work_bytes = L.work_bytes;
    return MEMFIT_OK;
}

enum memfit_status memfit_llm_plan_for(const struct memfit_llm_info *info,
                                       const struct memfit_llm_options *opts,
                                       struct memfit_llm_plan *out)
{
    return plan_n(info, opts, 1, out);
}

enum memfit_status memfit_llm_plan_group(const struct memfit_llm_info *info,
                                         const struct memfit_llm_options *opts, uint32_t n_sessions,
                                         struct memfit_llm_plan *out)
{
    return plan_n(info, opts, n_sessions, out);
}

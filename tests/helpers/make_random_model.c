/*
 * make_random_model sam-vit-b|dinov2-vit-b14 OUT.gguf [--type q8_0|f16|f32] [--seed N]:
 * writes a model of random weights in the real shapes and under the
 * original checkpoint names (segment-anything's sam_vit_b, the hub's
 * dinov2_vitb14), as GGUF through memfit's writer, in a few seconds. For
 * the tests and demos that need a model of the real size without its
 * weights: tests/integration/seeds_service.sh serves both in a 512 MiB
 * memory cgroup.
 *
 * Each tensor's type is memfit_quantize_tensor_type's choice for --type
 * (what `memfit quantize` writes): the matrices in the type, norms,
 * biases, tables and embeddings in F32, convolutions whose rows fit no
 * block in F16. Values follow PyTorch's default initialisation, so the
 * activations stay finite: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for linear
 * and convolution weights and their biases, N(0, 1) for nn.Embedding and
 * SAM's Fourier matrix, N(0, 0.02) for position and relative-position
 * tables and the class token, norms 1 and 0, layer scales 1. The random
 * numbers come from splitmix64, so a seed gives the same file everywhere.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memfit/memfit.h"

/* A tensor's name from PREFIX and a suffix; a name too long for the buffer
 * is a bug in this helper, so it stops here rather than write a wrong name. */
static void name_of(char *buf, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void name_of(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap) {
        fprintf(stderr, "make_random_model: tensor name too long: %s...\n", buf);
        exit(1);
    }
}

enum init {
    INIT_UNIFORM, /* U(-bound, bound) */
    INIT_NORMAL,  /* N(0, bound) */
    INIT_CONST,   /* every value = bound */
};

struct spec {
    char name[96];
    uint32_t n_dims;
    int64_t shape[4];
    enum init init;
    float bound;
};

struct model {
    struct spec *t;
    size_t n, cap;
    int failed;
};

static void add(struct model *m, const char *name, enum init init, float bound, uint32_t n_dims,
                int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
    if (m->n == m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 256;
        struct spec *t = memfit_realloc(m->t, cap * sizeof(*t));
        if (!t) {
            m->failed = 1;
            return;
        }
        m->t = t;
        m->cap = cap;
    }
    struct spec *s = &m->t[m->n++];
    memset(s, 0, sizeof(*s));
    snprintf(s->name, sizeof(s->name), "%s", name);
    s->n_dims = n_dims;
    int64_t d[4] = {d0, d1, d2, d3};
    for (uint32_t i = 0; i < 4; i++)
        s->shape[i] = i < n_dims ? d[i] : 1;
    s->init = init;
    s->bound = bound;
}

static float fan_bound(int64_t fan_in)
{
    return (float)(1.0 / sqrt((double)fan_in));
}

/* nn.Linear(in, out) as PREFIX.weight [out, in] and PREFIX.bias [out]. */
static void linear(struct model *m, const char *prefix, int64_t out, int64_t in, int bias)
{
    char name[96];
    name_of(name, sizeof(name), "%s.weight", prefix);
    add(m, name, INIT_UNIFORM, fan_bound(in), 2, out, in, 1, 1);
    if (bias) {
        name_of(name, sizeof(name), "%s.bias", prefix);
        add(m, name, INIT_UNIFORM, fan_bound(in), 1, out, 1, 1, 1);
    }
}

/* LayerNorm(n): PREFIX.weight = 1, PREFIX.bias = 0. */
static void norm(struct model *m, const char *prefix, int64_t n)
{
    char name[96];
    name_of(name, sizeof(name), "%s.weight", prefix);
    add(m, name, INIT_CONST, 1.0f, 1, n, 1, 1, 1);
    name_of(name, sizeof(name), "%s.bias", prefix);
    add(m, name, INIT_CONST, 0.0f, 1, n, 1, 1, 1);
}

/* Conv2d(in, out, k): weight [out, in, k, k], fan_in in*k*k. */
static void conv(struct model *m, const char *prefix, int64_t out, int64_t in, int64_t k, int bias)
{
    char name[96];
    float b = fan_bound(in * k * k);
    name_of(name, sizeof(name), "%s.weight", prefix);
    add(m, name, INIT_UNIFORM, b, 4, out, in, k, k);
    if (bias) {
        name_of(name, sizeof(name), "%s.bias", prefix);
        add(m, name, INIT_UNIFORM, b, 1, out, 1, 1, 1);
    }
}

/* ConvTranspose2d(in, out, k): weight [in, out, k, k]; PyTorch takes its
 * fan_in from dim 1 (out*k*k). */
static void conv_t(struct model *m, const char *prefix, int64_t in, int64_t out, int64_t k)
{
    char name[96];
    float b = fan_bound(out * k * k);
    name_of(name, sizeof(name), "%s.weight", prefix);
    add(m, name, INIT_UNIFORM, b, 4, in, out, k, k);
    name_of(name, sizeof(name), "%s.bias", prefix);
    add(m, name, INIT_UNIFORM, b, 1, out, 1, 1, 1);
}

/* "BLOCK.PART" in buf (96 bytes), for the calls above. */
static const char *at(char *buf, const char *block, const char *part)
{
    snprintf(buf, 96, "%s.%s", block, part);
    return buf;
}

/* ---- SAM ViT-B (segment_anything/build_sam.py, sam_vit_b_01ec64.pth) ------------- */

static void sam_attention(struct model *m, const char *prefix, int64_t dim, int64_t inner)
{
    static const char *const proj[3] = {"q_proj", "k_proj", "v_proj"};
    char name[96];
    for (int i = 0; i < 3; i++) {
        name_of(name, sizeof(name), "%s.%s", prefix, proj[i]);
        linear(m, name, inner, dim, 1);
    }
    name_of(name, sizeof(name), "%s.out_proj", prefix);
    linear(m, name, dim, inner, 1);
}

static void sam_mlp3(struct model *m, const char *prefix, int64_t in, int64_t hidden, int64_t out)
{
    int64_t rows[3] = {hidden, hidden, out}, cols[3] = {in, hidden, hidden};
    char name[96];
    for (int i = 0; i < 3; i++) {
        name_of(name, sizeof(name), "%s.layers.%d", prefix, i);
        linear(m, name, rows[i], cols[i], 1);
    }
}

static void sam_vit_b(struct model *m)
{
    const int64_t D = 768, depth = 12, hd = 64, G = 64, P = 16, window = 14, C = 256;
    const int64_t dec_mlp = 2048, n_mask_tokens = 4, mic = 16;
    char b[64], p[96], name[96];
    conv(m, "image_encoder.patch_embed.proj", D, 3, P, 1);
    add(m, "image_encoder.pos_embed", INIT_NORMAL, 0.02f, 4, 1, G, G, D);
    for (int64_t l = 0; l < depth; l++) {
        int global = l % 3 == 2; /* blocks 2, 5, 8, 11 */
        int64_t rel = 2 * (global ? G : window) - 1;
        snprintf(b, sizeof(b), "image_encoder.blocks.%lld", (long long)l);
        norm(m, at(p, b, "norm1"), D);
        linear(m, at(p, b, "attn.qkv"), 3 * D, D, 1);
        linear(m, at(p, b, "attn.proj"), D, D, 1);
        add(m, at(p, b, "attn.rel_pos_h"), INIT_NORMAL, 0.02f, 2, rel, hd, 1, 1);
        add(m, at(p, b, "attn.rel_pos_w"), INIT_NORMAL, 0.02f, 2, rel, hd, 1, 1);
        norm(m, at(p, b, "norm2"), D);
        linear(m, at(p, b, "mlp.lin1"), 4 * D, D, 1);
        linear(m, at(p, b, "mlp.lin2"), D, 4 * D, 1);
    }
    conv(m, "image_encoder.neck.0", C, D, 1, 0);
    norm(m, "image_encoder.neck.1", C);
    conv(m, "image_encoder.neck.2", C, C, 3, 0);
    norm(m, "image_encoder.neck.3", C);

    add(m, "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix", INIT_NORMAL, 1.0f, 2, 2,
        C / 2, 1, 1);
    for (int i = 0; i < 4; i++) {
        name_of(name, sizeof(name), "prompt_encoder.point_embeddings.%d.weight", i);
        add(m, name, INIT_NORMAL, 1.0f, 2, 1, C, 1, 1);
    }
    add(m, "prompt_encoder.not_a_point_embed.weight", INIT_NORMAL, 1.0f, 2, 1, C, 1, 1);
    conv(m, "prompt_encoder.mask_downscaling.0", mic / 4, 1, 2, 1);
    norm(m, "prompt_encoder.mask_downscaling.1", mic / 4);
    conv(m, "prompt_encoder.mask_downscaling.3", mic, mic / 4, 2, 1);
    norm(m, "prompt_encoder.mask_downscaling.4", mic);
    conv(m, "prompt_encoder.mask_downscaling.6", C, mic, 1, 1);
    add(m, "prompt_encoder.no_mask_embed.weight", INIT_NORMAL, 1.0f, 2, 1, C, 1, 1);

    for (int l = 0; l < 2; l++) {
        snprintf(p, sizeof(p), "mask_decoder.transformer.layers.%d.self_attn", l);
        sam_attention(m, p, C, C);
        snprintf(p, sizeof(p), "mask_decoder.transformer.layers.%d.norm1", l);
        norm(m, p, C);
        snprintf(p, sizeof(p), "mask_decoder.transformer.layers.%d.cross_attn_token_to_image", l);
        sam_attention(m, p, C, C / 2);
        snprintf(p, sizeof(p), "mask_decoder.transformer.layers.%d.norm2", l);
        norm(m, p, C);
        snprintf(p, sizeof(p), "mask_decoder.transformer.layers.%d.mlp.lin1", l);
        linear(m, p, dec_mlp, C, 1);
        snprintf(p, sizeof(p), "mask_decoder.transformer.layers.%d.mlp.lin2", l);
        linear(m, p, C, dec_mlp, 1);
        snprintf(p, sizeof(p), "mask_decoder.transformer.layers.%d.norm3", l);
        norm(m, p, C);
        snprintf(p, sizeof(p), "mask_decoder.transformer.layers.%d.norm4", l);
        norm(m, p, C);
        snprintf(p, sizeof(p), "mask_decoder.transformer.layers.%d.cross_attn_image_to_token", l);
        sam_attention(m, p, C, C / 2);
    }
    sam_attention(m, "mask_decoder.transformer.final_attn_token_to_image", C, C / 2);
    norm(m, "mask_decoder.transformer.norm_final_attn", C);
    add(m, "mask_decoder.iou_token.weight", INIT_NORMAL, 1.0f, 2, 1, C, 1, 1);
    add(m, "mask_decoder.mask_tokens.weight", INIT_NORMAL, 1.0f, 2, n_mask_tokens, C, 1, 1);
    conv_t(m, "mask_decoder.output_upscaling.0", C, C / 4, 2);
    norm(m, "mask_decoder.output_upscaling.1", C / 4);
    conv_t(m, "mask_decoder.output_upscaling.3", C / 4, C / 8, 2);
    for (int k = 0; k < n_mask_tokens; k++) {
        snprintf(p, sizeof(p), "mask_decoder.output_hypernetworks_mlps.%d", k);
        sam_mlp3(m, p, C, C, C / 8);
    }
    sam_mlp3(m, "mask_decoder.iou_prediction_head", C, C, n_mask_tokens);
}

/* ---- DINOv2 ViT-B/14 (dinov2/hub/backbones.py, dinov2_vitb14_pretrain.pth) -------- */

static void dinov2_vit_b14(struct model *m)
{
    const int64_t D = 768, depth = 12, P = 14, G = 37; /* 518 / 14 */
    char b[64], p[96];
    add(m, "cls_token", INIT_NORMAL, 0.02f, 3, 1, 1, D, 1);
    add(m, "pos_embed", INIT_NORMAL, 0.02f, 3, 1, 1 + G * G, D, 1);
    add(m, "mask_token", INIT_CONST, 0.0f, 2, 1, D, 1, 1);
    conv(m, "patch_embed.proj", D, 3, P, 1);
    for (int64_t l = 0; l < depth; l++) {
        snprintf(b, sizeof(b), "blocks.%lld", (long long)l);
        norm(m, at(p, b, "norm1"), D);
        linear(m, at(p, b, "attn.qkv"), 3 * D, D, 1);
        linear(m, at(p, b, "attn.proj"), D, D, 1);
        add(m, at(p, b, "ls1.gamma"), INIT_CONST, 1.0f, 1, D, 1, 1, 1);
        norm(m, at(p, b, "norm2"), D);
        linear(m, at(p, b, "mlp.fc1"), 4 * D, D, 1);
        linear(m, at(p, b, "mlp.fc2"), D, 4 * D, 1);
        add(m, at(p, b, "ls2.gamma"), INIT_CONST, 1.0f, 1, D, 1, 1, 1);
    }
    norm(m, "norm", D);
}

/* ---- Writing ------------------------------------------------------------------------ */

static uint64_t rng_state;

static uint64_t splitmix64(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1): the top 24 bits. */
static float uniform01(void)
{
    return (float)(splitmix64() >> 40) * (1.0f / 16777216.0f);
}

static void fill(const struct spec *s, float *x, size_t n)
{
    switch (s->init) {
    case INIT_UNIFORM:
        for (size_t i = 0; i < n; i++)
            x[i] = s->bound * (2.0f * uniform01() - 1.0f);
        break;
    case INIT_NORMAL:
        /* Box-Muller, two values per pair of draws. */
        for (size_t i = 0; i < n; i += 2) {
            float u1 = ((float)(splitmix64() >> 40) + 0.5f) * (1.0f / 16777216.0f);
            float u2 = uniform01();
            float r = s->bound * sqrtf(-2.0f * logf(u1));
            x[i] = r * cosf(6.2831853f * u2);
            if (i + 1 < n)
                x[i + 1] = r * sinf(6.2831853f * u2);
        }
        break;
    case INIT_CONST:
        for (size_t i = 0; i < n; i++)
            x[i] = s->bound;
        break;
    }
}

static int fail(const char *what)
{
    fprintf(stderr, "make_random_model: %s: %s\n", what, memfit_last_error());
    return 1;
}

static int usage(void)
{
    fprintf(stderr, "usage: make_random_model sam-vit-b|dinov2-vit-b14 OUT.gguf "
                    "[--type q8_0|f16|f32] [--seed N]\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return usage();
    const char *kind = argv[1], *out = argv[2], *type_name = "q8_0";
    uint64_t seed = 1;
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "--type") == 0 && i + 1 < argc) {
            type_name = argv[++i];
        } else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
            char *end;
            seed = strtoull(argv[++i], &end, 10);
            if (*end)
                return usage();
        } else {
            return usage();
        }
    }
    enum memfit_quantize_target target;
    if (memfit_quantize_target_parse(type_name, &target) != MEMFIT_OK ||
        (target != MEMFIT_QUANTIZE_Q8_0 && target != MEMFIT_QUANTIZE_F16 &&
         target != MEMFIT_QUANTIZE_F32)) {
        fprintf(stderr, "make_random_model: --type %s: q8_0, f16 or f32\n", type_name);
        return 2;
    }
    struct model m = {0};
    const char *arch;
    if (strcmp(kind, "sam-vit-b") == 0) {
        sam_vit_b(&m);
        arch = "sam";
    } else if (strcmp(kind, "dinov2-vit-b14") == 0) {
        dinov2_vit_b14(&m);
        arch = "dinov2";
    } else {
        return usage();
    }
    if (m.failed)
        return fail("tensor list");
    rng_state = seed * 0x2545f4914f6cdd1dull + 0x9e3779b97f4a7c15ull;

    memfit_writer *w;
    char title[96];
    snprintf(title, sizeof(title), "%s, random weights (seed %llu)", kind,
             (unsigned long long)seed);
    if (memfit_writer_create(out, MEMFIT_FORMAT_GGUF, &w) != MEMFIT_OK)
        return fail(out);
    if (memfit_writer_set_meta_string(w, "general.architecture", arch) != MEMFIT_OK ||
        memfit_writer_set_meta_string(w, "general.name", title) != MEMFIT_OK)
        return fail("metadata");
    enum memfit_type *types = memfit_calloc(m.n, sizeof(*types));
    if (!types)
        return fail("types");
    uint32_t n_layers = 12;
    uint64_t n_params = 0, largest_row = 0;
    for (size_t i = 0; i < m.n; i++) {
        struct spec *s = &m.t[i];
        struct memfit_tensor_info t = {
            .name = s->name, .type = MEMFIT_TYPE_F32, .n_dims = s->n_dims};
        t.n_elements = 1;
        for (uint32_t d = 0; d < 4; d++) {
            t.shape[d] = d < s->n_dims ? s->shape[d] : 1;
            t.n_elements *= (uint64_t)t.shape[d];
        }
        t.n_bytes = t.n_elements * sizeof(float);
        types[i] = memfit_quantize_tensor_type(&t, target, n_layers, NULL);
        n_params += t.n_elements;
        uint64_t row = (uint64_t)s->shape[s->n_dims - 1];
        if (row > largest_row)
            largest_row = row;
        if (memfit_writer_add_tensor(w, s->name, types[i], s->n_dims, s->shape) != MEMFIT_OK)
            return fail(s->name);
    }
    /* Chunks of whole rows, about 1 Mi floats each. */
    size_t chunk_floats = (size_t)1 << 20;
    if (chunk_floats < largest_row)
        chunk_floats = (size_t)largest_row;
    float *x = memfit_malloc(chunk_floats * sizeof(float));
    uint8_t *enc = memfit_malloc(chunk_floats * sizeof(float));
    if (!x || !enc)
        return fail("buffers");
    uint64_t file_bytes = 0;
    for (size_t i = 0; i < m.n; i++) {
        const struct spec *s = &m.t[i];
        uint64_t row = (uint64_t)s->shape[s->n_dims - 1], total = 1, off = 0;
        for (uint32_t d = 0; d < s->n_dims; d++)
            total *= (uint64_t)s->shape[d];
        uint64_t rows_per_chunk = chunk_floats / row;
        for (uint64_t done = 0; done < total;) {
            uint64_t n = rows_per_chunk * row;
            if (n > total - done)
                n = total - done;
            uint64_t bytes;
            fill(s, x, (size_t)n);
            if (memfit_type_bytes(types[i], n, &bytes) != MEMFIT_OK)
                return fail(s->name);
            for (uint64_t r = 0; r < n; r += row) {
                uint64_t row_bytes = bytes / (n / row);
                if (memfit_type_quantize_row(types[i], x + r, enc + r / row * row_bytes, row) !=
                    MEMFIT_OK)
                    return fail(s->name);
            }
            if (memfit_writer_write_tensor(w, i, off, enc, (size_t)bytes) != MEMFIT_OK)
                return fail(s->name);
            off += bytes;
            done += n;
        }
        file_bytes += off;
    }
    if (memfit_writer_commit(w) != MEMFIT_OK)
        return fail(out);
    memfit_writer_destroy(w);
    printf("%s: %s, %zu tensors, %llu parameters, %.1f MiB of tensor data (%s)\n", out, kind, m.n,
           (unsigned long long)n_params, (double)file_bytes / (1024.0 * 1024.0),
           memfit_quantize_target_name(target));
    memfit_free(x);
    memfit_free(enc);
    memfit_free(types);
    memfit_free(m.t);
    return 0;
}

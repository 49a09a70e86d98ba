/*
 * Unit tests of memfit_llm_convert_hf: the tiny Hugging Face directories of
 * scripts/make_llm_reference.py (tests/fixtures/llm/hf_*: HF names, HF's
 * unpermuted q/k, llama_gqa sharded in two files) converted to GGUF must
 * give the very tensors of the GGUF fixtures (LLaMA's permutation included)
 * and the reference logits (F32 KV: 1e-3, the bound of the engine's own F32
 * test); --type f32 / q8_0; linear rope scaling from config.json; the
 * tokenizer metadata (when the tokenizer converter is in the build) padded to
 * vocab_size; bad directories (missing config.json, unknown model_type,
 * missing tensor, shape against config, unknown tensor, sharded index naming
 * a missing file, no tokenizer.json) answered with errors naming the thing
 * and no file left; the allocation fault walk.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_util.h"
#include "memfit/memfit.h"

#define N_PROMPT 12
#define N_GEN    16

static const char *const MODELS[] = {"qwen2_mha", "qwen2_gqa", "llama_gqa"};
static bool have_tokenizer; /* the build has the tokenizer.json converter */

#define KEEP_TYPES ((enum memfit_type) - 1) /* compare_tensors: types as stored */

static char *fixture(const char *name)
{
    char buf[1024], rel[256];
    snprintf(rel, sizeof(rel), "llm/%s", name);
    return memfit_strdup(mf_test_fixture(rel, buf, sizeof(buf)));
}

/* An absolute fixture path (symlinks made in temporary directories must resolve). */
static char *fixture_abs(const char *name)
{
    char *rel = fixture(name);
    char *abs = realpath(rel, NULL); /* lint: allow: realpath's buffer is released with free */
    assert_non_null(abs);
    char *copy = memfit_strdup(abs);
    free(abs); /* lint: allow: from realpath */
    memfit_free(rel);
    return copy;
}

static char *make_tmp_dir(void)
{
    return mf_test_tmp_dir("memfit_llmconv");
}

/* Entries in a directory ("." and ".." aside). */
static size_t dir_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

static void remove_dir(char *dir)
{
    mf_test_remove_dir(dir);
}

static void write_text(const char *dir, const char *file, const char *text)
{
    char *p = memfit_asprintf("%s/%s", dir, file);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    memfit_free(p);
}

/* A temporary copy (symlinks) of fixture directory hf_<model>, without `skip`. */
static char *copy_dir(const char *model, const char *skip)
{
    char name[64];
    snprintf(name, sizeof(name), "hf_%s", model);
    char *src = fixture_abs(name);
    char *dst = make_tmp_dir();
    DIR *d = opendir(src);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || (skip && strcmp(e->d_name, skip) == 0))
            continue;
        char *from = memfit_asprintf("%s/%s", src, e->d_name);
        char *to = memfit_asprintf("%s/%s", dst, e->d_name);
        assert_int_equal(symlink(from, to), 0);
        memfit_free(from);
        memfit_free(to);
    }
    closedir(d);
    memfit_free(src);
    return dst;
}

/* config.json of the tiny llama_gqa with fields replaced. */
static void write_llama_config(const char *dir, const char *model_type, uint32_t n_ff,
                               const char *rope_scaling)
{
    char *text = memfit_asprintf(
        "{\"model_type\": \"%s\", \"hidden_size\": 64, \"intermediate_size\": %u,\n"
        " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2,\n"
        " \"max_position_embeddings\": 256, \"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0,\n"
        " \"rope_scaling\": %s, \"vocab_size\": 279, \"tie_word_embeddings\": false}\n",
        model_type, n_ff, rope_scaling);
    char *p = memfit_asprintf("%s/config.json", dir);
    unlink(p);
    write_text(dir, "config.json", text);
    memfit_free(p);
    memfit_free(text);
}

static enum memfit_status convert(const char *dir, const char *out, bool tokenizer, bool convert,
                                  enum memfit_type type)
{
    struct memfit_llm_convert_options o;
    memfit_llm_convert_options_default(&o);
    o.tokenizer = tokenizer;
    o.convert_types = convert;
    o.type = type;
    o.n_threads = 2;
    return memfit_llm_convert_hf(dir, out, &o);
}

/* ---- Comparing with the GGUF fixtures -------------------------------------------- */

/* Every tensor of the fixture GGUF is in `path` with its name, shape and bytes (for the
 * kept types) or the bytes of its rows quantized to `type`; the hyperparameters, and the
 * tokenizer metadata when `tokenizer`. */
static void compare_tensors(const char *model, const char *path, enum memfit_type type,
                            bool tokenizer)
{
    char name[96];
    snprintf(name, sizeof(name), "%s.gguf", model);
    char *ref_path = fixture(name);
    memfit_tensors *ref, *got;
    assert_int_equal(memfit_tensors_open(ref_path, NULL, &ref), MEMFIT_OK);
    assert_int_equal(memfit_tensors_open(path, NULL, &got), MEMFIT_OK);
    assert_int_equal(memfit_tensors_count(ref), memfit_tensors_count(got));
    for (size_t i = 0; i < memfit_tensors_count(ref); i++) {
        struct memfit_tensor_info r, g;
        assert_int_equal(memfit_tensors_get(ref, i, &r), MEMFIT_OK);
        if (memfit_tensors_find(got, r.name, &g, NULL) != MEMFIT_OK)
            fail_msg("%s: tensor %s missing", path, r.name);
        assert_int_equal(r.n_dims, g.n_dims);
        for (uint32_t d = 0; d < r.n_dims; d++)
            assert_int_equal(r.shape[d], g.shape[d]);
        enum memfit_type want = type == KEEP_TYPES ? r.type
                                : r.n_dims == 1    ? MEMFIT_TYPE_F32
                                                   : type;
        assert_int_equal(g.type, want);
        if (want == r.type) {
            if (memcmp(r.data, g.data, r.n_bytes) != 0)
                fail_msg("%s: tensor %s differs from %s's", path, r.name, ref_path);
            continue;
        }
        uint64_t cols = (uint64_t)r.shape[r.n_dims - 1], rows = r.n_elements / cols, in_row,
                 out_row;
        assert_int_equal(memfit_type_bytes(r.type, cols, &in_row), MEMFIT_OK);
        assert_int_equal(memfit_type_bytes(want, cols, &out_row), MEMFIT_OK);
        float *f = memfit_malloc(cols * sizeof(float));
        uint8_t *q = memfit_malloc(out_row);
        for (uint64_t row = 0; row < rows; row++) {
            assert_int_equal(
                memfit_type_dequantize_row(r.type, (const uint8_t *)r.data + row * in_row, f, cols),
                MEMFIT_OK);
            assert_int_equal(memfit_type_quantize_row(want, f, q, cols), MEMFIT_OK);
            if (memcmp(q, (const uint8_t *)g.data + row * out_row, out_row) != 0)
                fail_msg("%s: tensor %s row %llu differs", path, r.name, (unsigned long long)row);
        }
        memfit_free(f);
        memfit_free(q);
    }
    /* The hyperparameters: every <arch>.* key of the fixture, same value. */
    for (size_t i = 0; i < memfit_tensors_meta_count(ref); i++) {
        const char *key;
        struct memfit_meta_value rv, gv;
        assert_int_equal(memfit_tensors_meta_get(ref, i, &key, &rv), MEMFIT_OK);
        bool hparam = strncmp(key, "qwen2.", 6) == 0 || strncmp(key, "llama.", 6) == 0 ||
                      strcmp(key, "general.architecture") == 0;
        bool tok = strncmp(key, "tokenizer.", 10) == 0;
        if (!hparam && !(tok && tokenizer))
            continue;
        if (memfit_tensors_meta_find(got, key, &gv) != MEMFIT_OK)
            fail_msg("%s: metadata key %s missing", path, key);
        if (rv.type == MEMFIT_META_STRING) {
            assert_int_equal(gv.type, MEMFIT_META_STRING);
            assert_int_equal(rv.v.str.len, gv.v.str.len);
            assert_memory_equal(rv.v.str.data, gv.v.str.data, rv.v.str.len);
        } else if (rv.type == MEMFIT_META_ARRAY) {
            assert_int_equal(gv.type, MEMFIT_META_ARRAY);
            assert_int_equal(rv.v.array.elem_type, gv.v.array.elem_type);
            assert_int_equal(rv.v.array.count, gv.v.array.count);
            assert_memory_equal(rv.v.array.raw, gv.v.array.raw, rv.v.array.raw_bytes);
        } else {
            double a, b;
            assert_int_equal(memfit_meta_value_f64(&rv, &a), MEMFIT_OK);
            assert_int_equal(memfit_meta_value_f64(&gv, &b), MEMFIT_OK);
            if (a != b)
                fail_msg("%s: %s = %g, fixture %g", path, key, b, a);
        }
    }
    struct memfit_meta_value v;
    assert_int_equal(memfit_tensors_meta_find(got, "tokenizer.ggml.tokens", &v) == MEMFIT_OK,
                     tokenizer);
    memfit_clear_error();
    memfit_tensors_close(ref);
    memfit_tensors_close(got);
    memfit_free(ref_path);
}

/* ---- Logits against the reference ---------------------------------------------- */

struct lcase {
    char name[64], model[64], variant[16];
    int32_t prompt[N_PROMPT], greedy[N_GEN];
};

static bool find_case(const char *case_name, struct lcase *out)
{
    char *path = fixture("cases.txt");
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[1024];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f)) {
        int used = 0;
        if (line[0] == '#' ||
            sscanf(line, "%63s %63s %15s%n", out->name, out->model, out->variant, &used) != 3 ||
            strcmp(out->name, case_name) != 0)
            continue;
        char *p = line + used;
        for (int i = 0; i < N_PROMPT; i++)
            out->prompt[i] = (int32_t)strtol(p, &p, 10);
        p = strchr(p, '|');
        assert_non_null(p);
        p++;
        for (int i = 0; i < N_GEN; i++)
            out->greedy[i] = (int32_t)strtol(p, &p, 10);
        found = true;
    }
    fclose(f);
    memfit_free(path);
    return found;
}

/* max |logit - reference| over the prompt (F32 KV, batch of 64) and greedy agreement. */
static double check_logits(const char *case_name, const char *path, bool *greedy_same)
{
    struct lcase c;
    assert_true(find_case(case_name, &c));
    memfit_llm *m = NULL;
    enum memfit_status st = memfit_llm_open(path, &m);
    if (st != MEMFIT_OK)
        fail_msg("open %s: %s", path, memfit_last_error());
    struct memfit_llm_info info;
    memfit_llm_get_info(m, &info);
    struct memfit_llm_options o;
    memfit_llm_options_default(&o);
    o.kv_type = MEMFIT_TYPE_F32;
    o.n_threads = 2;
    memfit_llm_session *s = NULL;
    assert_int_equal(memfit_llm_session_create(m, &o, &s), MEMFIT_OK);
    size_t n = (size_t)N_PROMPT * info.n_vocab;
    float *logits = memfit_malloc(n * sizeof(float)), *ref = memfit_malloc(n * sizeof(float));
    assert_true(logits && ref);
    assert_int_equal(memfit_llm_eval(s, c.prompt, N_PROMPT, logits, true), MEMFIT_OK);
    char name[128];
    snprintf(name, sizeof(name), "%s.logits.bin", case_name);
    char *ref_path = fixture(name);
    FILE *f = fopen(ref_path, "rb");
    assert_non_null(f);
    assert_int_equal(fread(ref, sizeof(float), n, f), n);
    fclose(f);
    memfit_free(ref_path);
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)logits[i] - (double)ref[i]);
        if (!(d <= worst))
            worst = d;
    }
    /* Greedy continuation from the last prompt logits. */
    float *last = logits + (N_PROMPT - 1) * (size_t)info.n_vocab;
    *greedy_same = true;
    for (int g = 0; g < N_GEN; g++) {
        int32_t best = 0;
        for (uint32_t v = 1; v < info.n_vocab; v++)
            if (last[v] > last[best])
                best = (int32_t)v;
        *greedy_same = *greedy_same && best == c.greedy[g];
        assert_int_equal(memfit_llm_eval(s, &best, 1, last, false), MEMFIT_OK);
    }
    memfit_free(logits);
    memfit_free(ref);
    memfit_llm_session_free(s);
    memfit_llm_close(m);
    return worst;
}

/* ---- Tests ------------------------------------------------------------------------ */

/* Each HF directory gives the fixture's tensors and metadata and the reference logits. */
static void test_convert_matches(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(MODELS) / sizeof(MODELS[0]); i++) {
        char name[64];
        snprintf(name, sizeof(name), "hf_%s", MODELS[i]);
        char *dir = fixture(name);
        char *tmp = make_tmp_dir();
        char *out = memfit_asprintf("%s/%s.gguf", tmp, MODELS[i]);
        enum memfit_status st = convert(dir, out, have_tokenizer, false, MEMFIT_TYPE_F16);
        if (st != MEMFIT_OK)
            fail_msg("convert %s: %s", dir, memfit_last_error());
        assert_int_equal(dir_entries(tmp), 1); /* no temporary file left */
        compare_tensors(MODELS[i], out, KEEP_TYPES, have_tokenizer);
        bool greedy;
        double d = check_logits(MODELS[i], out, &greedy);
        printf("%s: converted from HF, max |logit diff| %.3g (F32 KV), greedy %s, tokenizer %s\n",
               MODELS[i], d, greedy ? "identical" : "DIFFERENT",
               have_tokenizer ? "compared" : "not in this build");
        assert_true(d <= 1e-3);
        assert_true(greedy);
        memfit_free(out);
        remove_dir(tmp);
        memfit_free(dir);
    }
}

/* --type f32 (exact, 1e-3) and q8_0 (the rows quantized as memfit's quantizer does). */
static void test_convert_types(void **state)
{
    (void)state;
    static const enum memfit_type types[] = {MEMFIT_TYPE_F32, MEMFIT_TYPE_Q8_0};
    /* q8_0: the bound of the engine's own Q8_0 test against the reference. */
    static const double bounds[] = {1e-3, 0.75};
    for (size_t t = 0; t < 2; t++)
        for (size_t i = 0; i < sizeof(MODELS) / sizeof(MODELS[0]); i++) {
            char name[64];
            snprintf(name, sizeof(name), "hf_%s", MODELS[i]);
            char *dir = fixture(name);
            char *tmp = make_tmp_dir();
            char *out = memfit_asprintf("%s/out.gguf", tmp);
            enum memfit_status st = convert(dir, out, false, true, types[t]);
            if (st != MEMFIT_OK)
                fail_msg("convert %s: %s", dir, memfit_last_error());
            compare_tensors(MODELS[i], out, types[t], false);
            bool greedy;
            double d = check_logits(MODELS[i], out, &greedy);
            printf("%s --type %s: max |logit diff| %.3g\n", MODELS[i],
                   memfit_type_get_info(types[t])->name, d);
            assert_true(d <= bounds[t]);
            memfit_free(out);
            remove_dir(tmp);
            memfit_free(dir);
        }
}

/* rope_scaling {"type": "linear", "factor": 2} gives the llama_gqa_linear2 reference. */
static void test_convert_linear_rope(void **state)
{
    (void)state;
    char *dir = copy_dir("llama_gqa", "config.json");
    write_llama_config(dir, "llama", 128, "{\"type\": \"linear\", \"factor\": 2.0}");
    char *out = memfit_asprintf("%s/out.gguf", dir);
    assert_int_equal(convert(dir, out, false, false, MEMFIT_TYPE_F16), MEMFIT_OK);
    bool greedy;
    double d = check_logits("llama_gqa_linear2", out, &greedy);
    printf("llama_gqa rope_scaling linear 2: max |logit diff| %.3g\n", d);
    assert_true(d <= 1e-3);
    assert_true(greedy);
    memfit_free(out);
    remove_dir(dir);
}

/* A safetensors copy of hf_qwen2_mha's weights, one tensor dropped or one added. */
static void write_weights(const char *dir, const char *drop, const char *add)
{
    char *src_path = fixture("hf_qwen2_mha/model.safetensors");
    char *dst = memfit_asprintf("%s/model.safetensors", dir);
    unlink(dst);
    memfit_tensors *in;
    assert_int_equal(memfit_tensors_open(src_path, NULL, &in), MEMFIT_OK);
    memfit_writer *w;
    assert_int_equal(memfit_writer_create(dst, MEMFIT_FORMAT_SAFETENSORS, &w), MEMFIT_OK);
    size_t idx[256], n = 0;
    for (size_t i = 0; i < memfit_tensors_count(in); i++) {
        struct memfit_tensor_info t;
        memfit_tensors_get(in, i, &t);
        if (drop && strcmp(t.name, drop) == 0)
            continue;
        assert_int_equal(memfit_writer_add_tensor(w, t.name, t.type, t.n_dims, t.shape), MEMFIT_OK);
        idx[n++] = i;
    }
    int64_t shape[1] = {4};
    float extra[4] = {0};
    if (add)
        assert_int_equal(memfit_writer_add_tensor(w, add, MEMFIT_TYPE_F32, 1, shape), MEMFIT_OK);
    for (size_t k = 0; k < n; k++) {
        struct memfit_tensor_info t;
        memfit_tensors_get(in, idx[k], &t);
        assert_int_equal(memfit_writer_write_tensor(w, k, 0, t.data, t.n_bytes), MEMFIT_OK);
    }
    if (add)
        assert_int_equal(memfit_writer_write_tensor(w, n, 0, extra, sizeof(extra)), MEMFIT_OK);
    assert_int_equal(memfit_writer_commit(w), MEMFIT_OK);
    memfit_writer_destroy(w);
    memfit_tensors_close(in);
    memfit_free(dst);
    memfit_free(src_path);
}

/* Converting `dir` fails with `want`, a message holding `needle`, and no output file. */
static void expect_failure(const char *what, const char *dir, bool tokenizer,
                           enum memfit_status want, const char *needle)
{
    char *tmp = make_tmp_dir();
    char *out = memfit_asprintf("%s/out.gguf", tmp);
    enum memfit_status st = convert(dir, out, tokenizer, false, MEMFIT_TYPE_F16);
    printf("%s: %s: %s\n", what, memfit_status_name(st), memfit_last_error());
    assert_int_equal(st, want);
    if (!strstr(memfit_last_error(), needle))
        fail_msg("%s: message \"%s\" does not name %s", what, memfit_last_error(), needle);
    assert_int_equal(dir_entries(tmp), 0);
    memfit_free(out);
    remove_dir(tmp);
}

static void test_convert_bad_input(void **state)
{
    (void)state;
    char *dir = copy_dir("qwen2_mha", "config.json");
    expect_failure("no config.json", dir, false, MEMFIT_E_NOT_FOUND, "config.json");
    remove_dir(dir);

    dir = copy_dir("llama_gqa", "config.json");
    write_llama_config(dir, "mistral", 128, "null");
    expect_failure("unknown model_type", dir, false, MEMFIT_E_UNSUPPORTED, "mistral");
    write_llama_config(dir, "llama", 96, "null");
    expect_failure("shape against config", dir, false, MEMFIT_E_FORMAT,
                   "model.layers.0.mlp.gate_proj.weight: shape [128, 64], but config.json "
                   "makes it [96, 64]");
    write_llama_config(dir, "llama", 128, "{\"rope_type\": \"yarn\", \"factor\": 4.0}");
    expect_failure("rope scaling", dir, false, MEMFIT_E_UNSUPPORTED, "yarn");
    remove_dir(dir);

    dir = copy_dir("llama_gqa", "model-00002-of-00002.safetensors");
    expect_failure("missing shard", dir, false, MEMFIT_E_NOT_FOUND,
                   "model-00002-of-00002.safetensors");
    remove_dir(dir);

    dir = copy_dir("qwen2_mha", "model.safetensors");
    write_weights(dir, "model.layers.1.mlp.up_proj.weight", NULL);
    expect_failure("missing tensor", dir, false, MEMFIT_E_FORMAT,
                   "model.layers.1.mlp.up_proj.weight is missing");
    write_weights(dir, "model.layers.0.self_attn.k_proj.bias", NULL);
    expect_failure("missing bias", dir, false, MEMFIT_E_FORMAT,
                   "model.layers.0.self_attn.k_proj.bias is missing");
    write_weights(dir, NULL, "model.layers.0.mlp.gate_proj.bias");
    expect_failure("unknown tensor", dir, false, MEMFIT_E_UNSUPPORTED,
                   "model.layers.0.mlp.gate_proj.bias");
    write_weights(dir, NULL, "model.layers.7.input_layernorm.weight");
    expect_failure("layer beyond the config", dir, false, MEMFIT_E_FORMAT,
                   "layer 7 beyond num_hidden_layers = 2");
    remove_dir(dir);

    dir = copy_dir("qwen2_mha", "model.safetensors");
    expect_failure("no weights", dir, false, MEMFIT_E_NOT_FOUND, "model.safetensors");
    remove_dir(dir);

    dir = copy_dir("qwen2_mha", "tokenizer.json");
    expect_failure("no tokenizer.json", dir, true, MEMFIT_E_NOT_FOUND, "tokenizer.json");
    remove_dir(dir);

    expect_failure("not a directory", "/nonexistent/memfit", false, MEMFIT_E_NOT_FOUND,
                   "/nonexistent/memfit/config.json");
    struct memfit_llm_convert_options o;
    memfit_llm_convert_options_default(&o);
    o.convert_types = true;
    o.type = MEMFIT_TYPE_Q5_1;
    assert_int_equal(memfit_llm_convert_hf("x", "y.gguf", &o), MEMFIT_E_UNSUPPORTED);
    assert_int_equal(memfit_llm_convert_hf(NULL, "y.gguf", NULL), MEMFIT_E_MISUSE);
}

/* Fewer tokens than vocab_size: padded with "[PAD<id>]" tokens of type UNUSED. */
static void test_convert_tokenizer_padding(void **state)
{
    (void)state;
    if (!have_tokenizer) {
        printf("tokenizer padding: not checked, no tokenizer.json converter in this build\n");
        return;
    }
    char *dir = copy_dir("qwen2_mha", "tokenizer.json");
    /* The same tokenizer without its last added token ("<|im_end|>", id 278). */
    char *src = fixture("hf_qwen2_mha/tokenizer.json");
    FILE *f = fopen(src, "r");
    assert_non_null(f);
    static char text[1 << 16];
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    char *entry = strstr(text, ",\n    {\n      \"id\": 278,");
    assert_non_null(entry);
    char *end = strstr(entry, "}");
    assert_non_null(end);
    memmove(entry, end + 1, strlen(end + 1) + 1);
    write_text(dir, "tokenizer.json", text);
    char *out = memfit_asprintf("%s/out.gguf", dir);
    enum memfit_status st = convert(dir, out, true, false, MEMFIT_TYPE_F16);
    if (st != MEMFIT_OK)
        fail_msg("convert: %s", memfit_last_error());
    memfit_tensors *set;
    assert_int_equal(memfit_tensors_open(out, NULL, &set), MEMFIT_OK);
    struct memfit_meta_value v, last;
    assert_int_equal(memfit_tensors_meta_find(set, "tokenizer.ggml.tokens", &v), MEMFIT_OK);
    assert_int_equal(v.v.array.count, 279);
    assert_int_equal(memfit_meta_array_get(&v, 278, &last), MEMFIT_OK);
    assert_int_equal(last.v.str.len, strlen("[PAD278]"));
    assert_memory_equal(last.v.str.data, "[PAD278]", last.v.str.len);
    assert_int_equal(memfit_tensors_meta_find(set, "tokenizer.ggml.token_type", &v), MEMFIT_OK);
    assert_int_equal(memfit_meta_array_get(&v, 278, &last), MEMFIT_OK);
    assert_int_equal(last.v.i, 5);
    memfit_tensors_close(set);
    memfit_llm *m;
    assert_int_equal(memfit_llm_open(out, &m), MEMFIT_OK);
    memfit_llm_close(m);
    memfit_free(out);
    memfit_free(src);
    remove_dir(dir);
}

struct walk {
    char *dir, *out;
    bool tokenizer, convert;
};

static enum memfit_status walk_op(void *ctx)
{
    struct walk *w = ctx;
    enum memfit_status st = convert(w->dir, w->out, w->tokenizer, w->convert, MEMFIT_TYPE_Q8_0);
    if (st != MEMFIT_OK)
        assert_int_not_equal(access(w->out, F_OK), 0); /* nothing left behind */
    return st;
}

static void walk_cleanup(void *ctx)
{
    struct walk *w = ctx;
    assert_int_equal(unlink(w->out), 0);
}

/*
 * Every allocation of a conversion failed in turn: E_NOMEM, nothing leaked,
 * no file. The failures are sticky (the n-th allocation and every one after
 * it fail): the one-shot walk cannot run over JSON parsing: jansson 2.14's
 * lexer ignores a failed grow of its saved-text buffer (lex_save), drops
 * that byte and, when it was a string's closing quote, then reads and
 * writes past the buffer (heap corruption: index.json's "lm_head.weight" is
 * such a 16-byte token). With sticky failures the string's own allocation
 * right after fails first, and the parse ends with the out-of-memory flag.
 */
static void test_convert_alloc_failures(void **state)
{
    (void)state;
    static const char *const models[] = {"llama_gqa", "qwen2_mha"};
    for (size_t i = 0; i < 2; i++) {
        char name[64];
        snprintf(name, sizeof(name), "hf_%s", models[i]);
        char *tmp = make_tmp_dir();
        struct walk w = {fixture(name), memfit_asprintf("%s/out.gguf", tmp), have_tokenizer,
                         i == 0};
        unsigned n = mf_test_alloc_failures_sticky(walk_op, walk_cleanup, &w);
        printf("%s: %u allocation failure points%s\n", models[i], n,
               w.convert ? " (q8_0 on the thread pool)" : " (tokenizer when built)");
        assert_int_equal(dir_entries(tmp), 0);
        memfit_free(w.dir);
        memfit_free(w.out);
        remove_dir(tmp);
    }
}

/* Whether this build has the tokenizer.json converter (a placeholder until it is merged). */
static void probe_tokenizer(void)
{
    char *dir = fixture("hf_qwen2_mha");
    char *tmp = make_tmp_dir();
    char *out = memfit_asprintf("%s/probe.gguf", tmp);
    enum memfit_status st = convert(dir, out, true, false, MEMFIT_TYPE_F16);
    have_tokenizer = st == MEMFIT_OK;
    if (!have_tokenizer) {
        printf("note: no tokenizer: %s\n", memfit_last_error());
        assert_int_equal(st, MEMFIT_E_UNSUPPORTED);
        assert_non_null(strstr(memfit_last_error(), "placeholder"));
    }
    unlink(out);
    memfit_free(out);
    remove_dir(tmp);
    memfit_free(dir);
}

int main(void)
{
    probe_tokenizer();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_convert_matches),
        cmocka_unit_test(test_convert_types),
        cmocka_unit_test(test_convert_linear_rope),
        cmocka_unit_test(test_convert_bad_input),
        cmocka_unit_test(test_convert_tokenizer_padding),
        cmocka_unit_test(test_convert_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * The engines layer (src/engines/) on the tiny DINOv2 and LLM fixtures and
 * on GGUF copies made here: models from manifest entries (options, sources
 * relative to the manifest), the plan (known before loading, equal to what
 * the engine reports once open, cached), load through the manager,
 * embeddings equal to the engine's own forward, per-request workspaces
 * beyond the plan from the budget, the `quantize` copy in the cache, an
 * LLM's plan (context, sessions, KV cache) and its refusal with the
 * figures, memfit_engines_open with command-line models, and allocation
 * fault injection over the whole cycle.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_util.h"
#include "memfit/memfit.h"

#define MIB (1024ull * 1024ull)

static char *fixture(const char *name)
{
    char buf[1024];
    const char *p = mf_test_fixture(name, buf, sizeof(buf));
    if (p[0] == '/')
        return memfit_strdup(p);
    char cwd[1024];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    return memfit_asprintf("%s/%s", cwd, p);
}

static char *tmp_file(const char *suffix)
{
    static unsigned counter;
    const char *dir = getenv("TMPDIR");
    return memfit_asprintf("%s/memfit_eng_%d_%u%s", dir ? dir : "/tmp", (int)getpid(), counter++,
                           suffix);
}

static struct memfit_manifest *manifest_text(const char *text, const char *path)
{
    struct memfit_manifest *mf = NULL;
    enum memfit_status st = memfit_manifest_parse_string(text, strlen(text), path, &mf);
    if (st != MEMFIT_OK)
        fprintf(stderr, "%s\n", memfit_last_error());
    assert_int_equal(st, MEMFIT_OK);
    return mf;
}

static struct memfit_manifest *manifest_for(const char *path, const char *extra)
{
    char *text = memfit_asprintf("models:\n"
                                 "  - name: dino\n"
                                 "    family: dinov2\n"
                                 "    sources: [%s]\n"
                                 "    limits: {max_batch: 2, max_image_size: 60}\n"
                                 "%s",
                                 path, extra ? extra : "");
    assert_non_null(text);
    struct memfit_manifest *mf = manifest_text(text, "t.yaml");
    memfit_free(text);
    return mf;
}

static memfit_engine_model *model_for(const char *path, const char *extra)
{
    struct memfit_manifest *mf = manifest_for(path, extra);
    memfit_engine_model *m = NULL;
    assert_int_equal(memfit_engine_model_create(mf, &mf->models[0], &m), MEMFIT_OK);
    memfit_manifest_free(mf);
    return m;
}

static memfit_manager *manager(uint64_t budget)
{
    struct memfit_manager_options o;
    memfit_manager_options_default(&o);
    o.budget_bytes = budget;
    o.reaper_thread = false;
    memfit_manager *mgr;
    assert_int_equal(memfit_manager_create(&o, &mgr), MEMFIT_OK);
    return mgr;
}

static void test_model_errors(void **state)
{
    (void)state;
    memfit_engine_model *m = NULL;
    struct memfit_manifest *mf = manifest_for("/x/m.gguf", "    options: {quantise: q8_0}\n");
    assert_int_equal(memfit_engine_model_create(mf, &mf->models[0], &m), MEMFIT_E_FORMAT);
    assert_non_null(strstr(memfit_last_error(), "unknown option 'quantise'"));
    memfit_manifest_free(mf);
    mf = manifest_for("/x/m.gguf", "    options: {quantize: q9}\n");
    assert_int_equal(memfit_engine_model_create(mf, &mf->models[0], &m), MEMFIT_E_FORMAT);
    assert_non_null(strstr(memfit_last_error(), "quantize 'q9'"));
    memfit_manifest_free(mf);
    const char *text = "models:\n  - name: a\n    family: nope\n    sources: [m.gguf]\n";
    mf = manifest_text(text, "t.yaml");
    assert_int_equal(memfit_engine_model_create(mf, &mf->models[0], &m), MEMFIT_E_UNSUPPORTED);
    assert_non_null(strstr(memfit_last_error(), "unknown family 'nope'"));
    assert_non_null(strstr(memfit_last_error(), "dinov2"));
    memfit_manifest_free(mf);
    /* A remote source with a family: nothing read until planned. */
    mf = manifest_for("s3://bucket/m.gguf", NULL);
    assert_int_equal(memfit_engine_model_create(mf, &mf->models[0], &m), MEMFIT_OK);
    assert_string_equal(memfit_engine_model_name(m), "dino");
    assert_string_equal(memfit_engine_model_family(m)->name, "dinov2");
    memfit_engine_model_destroy(m);
    memfit_manifest_free(mf);
    /* Relative sources are relative to the manifest's directory. */
    text = "models:\n  - name: a\n    family: dinov2\n    sources: [w/m.gguf]\n";
    mf = manifest_text(text, "/srv/conf/memfit.yaml");
    assert_int_equal(memfit_engine_model_create(mf, &mf->models[0], &m), MEMFIT_OK);
    struct memfit_engine_plan p;
    assert_int_equal(memfit_engine_model_plan(m, &p), MEMFIT_E_NOT_FOUND);
    assert_non_null(strstr(memfit_last_error(), "/srv/conf/w/m.gguf"));
    memfit_engine_model_destroy(m);
    memfit_manifest_free(mf);
    /* The name a command-line model is served under. */
    char *name = memfit_engine_source_name("s3://bucket/x/dino.pth?v=2");
    assert_string_equal(name, "dino");
    memfit_free(name);
    /* a directory or repository name keeps its dots; a file's extension goes */
    static const char *const cases[][2] = {{"/models/Qwen1.5-1.8B-Chat", "Qwen1.5-1.8B-Chat"},
                                           {"hf://Qwen/Qwen1.5-1.8B-Chat", "Qwen1.5-1.8B-Chat"},
                                           {"dir/qwen-1.8b.Q4_0.gguf", "qwen-1.8b.Q4_0"},
                                           {"dir/model-v1.5", "model-v1.5"},
                                           {"dir/weights.", "weights."}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        name = memfit_engine_source_name(cases[i][0]);
        assert_string_equal(name, cases[i][1]);
        memfit_free(name);
    }
}

/* The plan equals what the engine reports once the model is open. */
static void check_plan(const char *path)
{
    memfit_engine_model *m = model_for(path, "    options: {threads: 2}\n");
    struct memfit_engine_plan p;
    assert_int_equal(memfit_engine_model_plan(m, &p), MEMFIT_OK);
    struct memfit_vit_options o;
    memfit_vit_options_default(&o);
    o.n_threads = 2;
    memfit_vit *vit;
    assert_int_equal(memfit_vit_open(path, &o, &vit), MEMFIT_OK);
    struct memfit_vit_info info;
    memfit_vit_get_info(vit, &info);
    assert_int_equal(p.max_batch, 2);
    assert_int_equal(p.max_image_size, 56); /* 60 rounded down to the patch size */
    size_t work;
    assert_int_equal(memfit_vit_plan(vit, 2, 56, 56, &work), MEMFIT_OK);
    assert_int_equal(p.cost.bytes[MEMFIT_BUDGET_WEIGHTS], info.weight_bytes);
    assert_int_equal(p.cost.bytes[MEMFIT_BUDGET_CONVERTED_WEIGHTS], info.converted_bytes);
    assert_int_equal(p.cost.bytes[MEMFIT_BUDGET_WORKSPACE], work);
    assert_int_equal(p.cost.bytes[MEMFIT_BUDGET_KV_CACHE], 0);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(p.file_bytes, (uint64_t)sb.st_size);
    assert_true(info.weight_bytes <= (uint64_t)sb.st_size);
    assert_true(info.weight_bytes > (uint64_t)sb.st_size / 2);
    assert_string_equal(p.plan_source, "file");
    assert_string_equal(p.family, "dinov2");
    /* A second plan comes from the cache and is the same. */
    struct memfit_engine_plan p2;
    assert_int_equal(memfit_engine_model_plan(m, &p2), MEMFIT_OK);
    assert_memory_equal(&p.cost, &p2.cost, sizeof(p.cost));
    assert_int_equal(p.file_bytes, p2.file_bytes);
    assert_int_equal(p.max_batch, p2.max_batch);
    assert_int_equal(p.max_image_size, p2.max_image_size);
    assert_false(p.provisional || p2.provisional);
    memfit_vit_close(vit);
    memfit_engine_model_destroy(m);
}

static void test_plan(void **state)
{
    (void)state;
    char *pth = fixture("dinov2/vits_tiny.pth");
    check_plan(pth);
    /* GGUF copies in several types, made here. */
    memfit_vit *vit;
    assert_int_equal(memfit_vit_open(pth, NULL, &vit), MEMFIT_OK);
    const enum memfit_type types[] = {MEMFIT_TYPE_F32, MEMFIT_TYPE_F16, MEMFIT_TYPE_Q8_0};
    for (size_t i = 0; i < 3; i++) {
        char *g = tmp_file(".gguf");
        assert_int_equal(memfit_vit_write_gguf(vit, g, types[i]), MEMFIT_OK);
        check_plan(g);
        unlink(g);
        memfit_free(g);
    }
    memfit_vit_close(vit);
    memfit_free(pth);
}

/* A w x h image of a fixed pattern. */
static struct memfit_image image(uint32_t w, uint32_t h)
{
    struct memfit_image img = {w, h, memfit_malloc((size_t)w * h * 3)};
    assert_non_null(img.rgb);
    for (size_t i = 0; i < (size_t)w * h * 3; i++)
        img.rgb[i] = (uint8_t)(i * 7919 % 251);
    return img;
}

/* Load through the manager, embeddings equal to the engine's, unload. */
static void test_embed_through_manager(void **state)
{
    (void)state;
    char *pth = fixture("dinov2/vits_tiny.pth");
    memfit_engine_model *m = model_for(pth, "    options: {threads: 1}\n");
    memfit_manager *mgr = manager(256 * MIB);
    assert_int_equal(memfit_engine_model_register(m, mgr), MEMFIT_OK);
    struct memfit_engine_plan p;
    assert_int_equal(memfit_engine_model_plan(m, &p), MEMFIT_OK);

    memfit_handle *h;
    assert_int_equal(memfit_manager_acquire(mgr, "dino", 0, &h), MEMFIT_OK);
    assert_ptr_equal(memfit_engine_handle_model(h), m);
    struct memfit_budget_usage u;
    memfit_budget_get_usage(memfit_manager_budget(mgr), &u);
    assert_int_equal(u.reserved_bytes, memfit_budget_cost_total(&p.cost));

    memfit_vit *vit = memfit_engine_vit(h);
    assert_non_null(vit);
    struct memfit_vit_info info;
    memfit_vit_get_info(vit, &info);
    struct memfit_embed_params ep;
    memfit_embed_params_default(&ep);
    ep.transform.mode = MEMFIT_IMAGE_RESIZE_MULTIPLE;
    ep.transform.multiple = info.patch_size;
    struct memfit_image imgs[2] = {image(56, 56), image(56, 56)};
    const struct memfit_image *ptrs[2] = {&imgs[0], &imgs[1]};
    size_t n_out;
    uint32_t dim;
    assert_int_equal(memfit_engine_embed_size(h, &ep, 56, 56, &n_out, &dim), MEMFIT_OK);
    assert_int_equal(dim, info.dim);
    assert_int_equal(n_out, info.dim);
    float *a = memfit_calloc(2 * n_out, sizeof(float));
    float *b = memfit_calloc(2 * n_out, sizeof(float));
    uint64_t tokens = 0;
    assert_int_equal(memfit_engine_embed(h, ptrs, 2, &ep, a, 2 * n_out, &tokens), MEMFIT_OK);
    assert_int_equal(tokens, 2 * (1 + 4 * 4));
    /* The engine's own forward on the same pixels. */
    size_t n_px = 3 * 56 * 56, work;
    float *x = memfit_malloc(2 * n_px * sizeof(float));
    for (int i = 0; i < 2; i++)
        assert_int_equal(
            memfit_image_transform_apply(&ep.transform, &imgs[i], x + i * n_px, n_px, NULL, 0),
            MEMFIT_OK);
    assert_int_equal(memfit_vit_plan(vit, 2, 56, 56, &work), MEMFIT_OK);
    void *ws = mf_map_anon(work);
    assert_int_equal(
        memfit_vit_forward(vit, x, 2, 56, 56, MEMFIT_VIT_OUTPUT_CLS, false, ws, work, b, 2 * n_out),
        MEMFIT_OK);
    mf_unmap_anon(ws, work);
    assert_memory_equal(a, b, 2 * n_out * sizeof(float));

    /* Beyond the plan (70x70): a workspace reserved from the budget for the request. */
    struct memfit_image big = image(70, 70);
    const struct memfit_image *bp[1] = {&big};
    assert_int_equal(memfit_engine_embed(h, bp, 1, &ep, a, n_out, NULL), MEMFIT_OK);
    memfit_budget_get_usage(memfit_manager_budget(mgr), &u);
    assert_int_equal(u.reserved_bytes, memfit_budget_cost_total(&p.cost));
    assert_true(u.peak_reserved_bytes > memfit_budget_cost_total(&p.cost));
    /* Not an image: refused; a family that does not generate says so. */
    const struct memfit_image *none[1] = {NULL};
    assert_int_equal(memfit_engine_embed(h, none, 1, &ep, a, n_out, NULL), MEMFIT_E_FORMAT);
    assert_int_equal(memfit_engine_llm(h, NULL, NULL, NULL), MEMFIT_E_UNSUPPORTED);
    assert_non_null(strstr(memfit_last_error(), "does not generate text"));
    memfit_manager_release(h);
    assert_int_equal(memfit_manager_unload(mgr, "dino"), MEMFIT_OK);
    memfit_budget_get_usage(memfit_manager_budget(mgr), &u);
    assert_int_equal(u.reserved_bytes, 0);

    /* A budget with room for the model but not for a request beyond its plan. */
    memfit_manager_destroy(mgr);
    mgr = manager(memfit_budget_cost_total(&p.cost) + 1024);
    assert_int_equal(memfit_engine_model_register(m, mgr), MEMFIT_OK);
    assert_int_equal(memfit_manager_acquire(mgr, "dino", 0, &h), MEMFIT_OK);
    ep.timeout_ms = 0;
    enum memfit_status st = memfit_engine_embed(h, bp, 1, &ep, a, n_out, NULL);
    assert_true(st == MEMFIT_E_BUDGET || st == MEMFIT_E_TOO_LARGE);
    assert_non_null(strstr(memfit_last_error(), "workspace"));
    memfit_manager_release(h);

    memfit_image_free(&big);
    memfit_image_free(&imgs[0]);
    memfit_image_free(&imgs[1]);
    memfit_free(x);
    memfit_free(a);
    memfit_free(b);
    memfit_manager_destroy(mgr);
    memfit_engine_model_destroy(m);
    memfit_free(pth);
}

/* quantize: q8_0 is written once into the cache and mapped from there; the
 * budget charges the copy's size as the weights. */
static void test_quantize(void **state)
{
    (void)state;
    char *pth = fixture("dinov2/vits_tiny.pth");
    char *dir = tmp_file(".d");
    assert_int_equal(mkdir(dir, 0700), 0);
    char *text = memfit_asprintf("cache_dir: %s\nmodels:\n  - name: q\n    family: dinov2\n"
                                 "    sources: [%s]\n    options: {quantize: q8_0, threads: 1}\n",
                                 dir, pth);
    struct memfit_manifest *mf = manifest_text(text, "q.yaml");
    memfit_engine_model *m;
    assert_int_equal(memfit_engine_model_create(mf, &mf->models[0], &m), MEMFIT_OK);
    memfit_manager *mgr = manager(256 * MIB);
    assert_int_equal(memfit_engine_model_register(m, mgr), MEMFIT_OK);
    struct memfit_engine_plan p;
    assert_int_equal(memfit_engine_model_plan(m, &p), MEMFIT_OK);
    assert_string_equal(p.plan_source, "estimate");
    memfit_handle *h;
    assert_int_equal(memfit_manager_acquire(mgr, "q", 0, &h), MEMFIT_OK);
    struct memfit_vit_info info;
    memfit_vit_get_info(memfit_engine_vit(h), &info);
    assert_int_equal(info.weight_type, MEMFIT_TYPE_Q8_0);
    /* The estimate was the copy's size; planned again, the copy itself. */
    struct memfit_engine_plan after;
    assert_int_equal(memfit_engine_model_plan(m, &after), MEMFIT_OK);
    assert_string_equal(after.plan_source, "file");
    /* The estimate applies memfit_vit_write_gguf's own rule: the copy's
     * tensors, of which the model maps all but unused ones (mask_token): an
     * upper bound within 1 %; the load reserved the exact plan. */
    uint64_t est = p.cost.bytes[MEMFIT_BUDGET_WEIGHTS];
    uint64_t exact = after.cost.bytes[MEMFIT_BUDGET_WEIGHTS];
    assert_true(est >= exact && est - exact <= exact / 100);
    assert_int_equal(p.cost.bytes[MEMFIT_BUDGET_WORKSPACE],
                     after.cost.bytes[MEMFIT_BUDGET_WORKSPACE]);
    assert_true(after.cost.bytes[MEMFIT_BUDGET_WEIGHTS] >= info.weight_bytes);
    struct memfit_budget_usage u;
    memfit_budget_get_usage(memfit_manager_budget(mgr), &u);
    assert_int_equal(u.reserved_bytes, memfit_budget_cost_total(&after.cost));
    char *conv = memfit_asprintf("%s/converted", dir);
    struct stat sb;
    assert_int_equal(stat(conv, &sb), 0); /* the copy lives in the cache */
    memfit_manager_release(h);
    memfit_manager_destroy(mgr);
    memfit_engine_model_destroy(m);
    memfit_manifest_free(mf);
    char *rm = memfit_asprintf("rm -rf '%s'", dir);
    assert_int_equal(system(rm), 0);
    memfit_free(rm);
    memfit_free(conv);
    memfit_free(text);
    memfit_free(dir);
    memfit_free(pth);
}

/* An LLM: planned from its header (context, sessions, KV cache), refused
 * with the figures when it cannot fit, generating through the engines. */
static void test_llm(void **state)
{
    (void)state;
    char *q = fixture("llm/qwen2_gqa.gguf");
    char *text = memfit_asprintf("models:\n  - name: q\n    family: auto\n    sources: [%s]\n"
                                 "    max_concurrency: 2\n    options: {ctx: 128, threads: 1}\n",
                                 q);
    struct memfit_manifest *mf = manifest_text(text, "l.yaml");
    memfit_engine_model *m;
    assert_int_equal(memfit_engine_model_create(mf, &mf->models[0], &m), MEMFIT_OK);
    assert_string_equal(memfit_engine_model_family(m)->name, "qwen2");
    struct memfit_engine_plan p;
    assert_int_equal(memfit_engine_model_plan(m, &p), MEMFIT_OK);
    assert_int_equal(p.n_ctx, 128);
    assert_int_equal(p.n_sessions, 2);
    /* The figures are the engine's own plan. */
    memfit_llm *llm;
    assert_int_equal(memfit_llm_open(q, &llm), MEMFIT_OK);
    struct memfit_llm_info info;
    memfit_llm_get_info(llm, &info);
    struct memfit_llm_options lo;
    memfit_llm_options_default(&lo);
    lo.n_ctx = 128;
    lo.n_threads = 1;
    /* Two sessions are a group (continuous batching): a cache each, one shared workspace. */
    struct memfit_llm_plan lp;
    assert_int_equal(memfit_llm_plan_group(&info, &lo, 2, &lp), MEMFIT_OK);
    memfit_llm_close(llm);
    assert_int_equal(p.cost.bytes[MEMFIT_BUDGET_WEIGHTS], lp.weight_bytes);
    assert_int_equal(p.cost.bytes[MEMFIT_BUDGET_KV_CACHE], 2 * lp.kv_bytes);
    /* The workspace also holds the grammar's vocabulary trie (built lazily). */
    assert_int_equal(p.cost.bytes[MEMFIT_BUDGET_WORKSPACE],
                     lp.work_bytes + memfit_grammar_vocab_plan_bytes(info.n_vocab));
    assert_true(lp.kv_bytes > 0 && lp.weight_bytes > 0);

    /* Too small a budget: refused before the load, with the plan's figures. */
    memfit_manager *mgr = manager(64 * 1024);
    assert_int_equal(memfit_engine_model_register(m, mgr), MEMFIT_OK);
    memfit_handle *h;
    assert_int_equal(memfit_manager_acquire(mgr, "q", 0, &h), MEMFIT_E_TOO_LARGE);
    assert_non_null(strstr(memfit_last_error(), "KV cache"));
    assert_non_null(strstr(memfit_last_error(), "whole budget is 64.0 KiB"));
    memfit_manager_destroy(mgr);

    mgr = manager(64 * MIB);
    assert_int_equal(memfit_engine_model_register(m, mgr), MEMFIT_OK);
    assert_int_equal(memfit_manager_acquire(mgr, "q", 0, &h), MEMFIT_OK);
    struct memfit_budget_usage u;
    memfit_budget_get_usage(memfit_manager_budget(mgr), &u);
    assert_int_equal(u.reserved_bytes, memfit_budget_cost_total(&p.cost));
    uint32_t n_ctx = 0;
    assert_int_equal(memfit_engine_llm(h, NULL, NULL, &n_ctx), MEMFIT_OK);
    assert_int_equal(n_ctx, 128);
    assert_null(memfit_engine_vit(h));
    struct memfit_generation_request req = {.prompt = "Hello", .prompt_len = 5};
    memfit_sampling_default(&req.params.sampling);
    req.params.sampling.temperature = 0;
    req.params.max_tokens = 4;
    memfit_engine_generation *gen;
    uint32_t n_prompt = 0;
    assert_int_equal(memfit_engine_generate_start(h, &req, &gen, &n_prompt), MEMFIT_OK);
    assert_true(n_prompt > 0);
    bool done = false;
    while (!done) {
        const char *t;
        size_t len;
        assert_int_equal(memfit_engine_generate_next(gen, &t, &len, &done), MEMFIT_OK);
    }
    struct memfit_generate_result r;
    memfit_engine_generate_end(gen, &r);
    assert_true(r.n_generated >= 1 && r.n_generated <= 4);
    memfit_manager_release(h);
    memfit_manager_destroy(mgr);
    memfit_engine_model_destroy(m);
    memfit_manifest_free(mf);
    memfit_free(text);
    memfit_free(q);
}

/* memfit_engines_open: a manifest and command-line models under one manager
 * and one budget (the flag wins), the models in that order. */
/* An LLM with `quantize`: the copy written into the cache by
 * memfit_quantize_file (the rule and the bytes the estimate used), its greedy
 * text the same as that of `memfit quantize`'s file run as stored. */
static void greedy(memfit_manager *mgr, const char *name, char *out, size_t cap)
{
    memfit_handle *h;
    assert_int_equal(memfit_manager_acquire(mgr, name, 0, &h), MEMFIT_OK);
    struct memfit_generation_request req = {.prompt = "Hello", .prompt_len = 5};
    memfit_sampling_default(&req.params.sampling);
    req.params.sampling.temperature = 0;
    req.params.max_tokens = 8;
    memfit_engine_generation *gen;
    assert_int_equal(memfit_engine_generate_start(h, &req, &gen, NULL), MEMFIT_OK);
    size_t used = 0;
    bool done = false;
    while (!done) {
        const char *text;
        size_t len;
        assert_int_equal(memfit_engine_generate_next(gen, &text, &len, &done), MEMFIT_OK);
        assert_true(used + len < cap);
        memcpy(out + used, text, len);
        used += len;
    }
    out[used] = '\0';
    memfit_engine_generate_end(gen, NULL);
    memfit_manager_release(h);
}

static void test_llm_quantize(void **state)
{
    (void)state;
    char *q = fixture("llm/qwen2_gqa.gguf");
    char *dir = tmp_file(".d");
    assert_int_equal(mkdir(dir, 0700), 0);
    char *ref = memfit_asprintf("%s/ref.gguf", dir);
    struct memfit_quantize_options qo;
    memfit_quantize_options_default(&qo);
    qo.target = MEMFIT_QUANTIZE_Q8_0;
    qo.n_threads = 1;
    assert_int_equal(memfit_quantize_file(q, ref, &qo, NULL), MEMFIT_OK);
    char *text = memfit_asprintf("cache_dir: %s\nmodels:\n"
                                 "  - {name: q, family: qwen2, sources: [%s], options: {quantize: "
                                 "q8_0, threads: 1, ctx: 64}}\n"
                                 "  - {name: r, family: qwen2, sources: [%s], options: {threads: "
                                 "1, ctx: 64}}\n",
                                 dir, q, ref);
    struct memfit_manifest *mf = manifest_text(text, "lq.yaml");
    memfit_engine_model *m, *r;
    assert_int_equal(memfit_engine_model_create(mf, &mf->models[0], &m), MEMFIT_OK);
    assert_int_equal(memfit_engine_model_create(mf, &mf->models[1], &r), MEMFIT_OK);
    struct memfit_engine_plan before, after, stored;
    assert_int_equal(memfit_engine_model_plan(m, &before), MEMFIT_OK);
    assert_string_equal(before.plan_source, "estimate");
    assert_int_equal(memfit_engine_model_plan(r, &stored), MEMFIT_OK);
    memfit_manager *mgr = manager(64 * MIB);
    assert_int_equal(memfit_engine_model_register(m, mgr), MEMFIT_OK);
    assert_int_equal(memfit_engine_model_register(r, mgr), MEMFIT_OK);
    char a[256], b[256];
    greedy(mgr, "q", a, sizeof(a));
    greedy(mgr, "r", b, sizeof(b));
    assert_string_equal(a, b);
    assert_int_equal(memfit_engine_model_plan(m, &after), MEMFIT_OK);
    assert_string_equal(after.plan_source, "file");
    /* The estimate is the copy's weights, which are those of quantize's file. */
    assert_int_equal(before.cost.bytes[MEMFIT_BUDGET_WEIGHTS],
                     after.cost.bytes[MEMFIT_BUDGET_WEIGHTS]);
    assert_int_equal(memfit_budget_cost_total(&after.cost), memfit_budget_cost_total(&stored.cost));
    memfit_manager_destroy(mgr);
    memfit_engine_model_destroy(m);
    memfit_engine_model_destroy(r);
    memfit_manifest_free(mf);
    char *rm = memfit_asprintf("rm -rf '%s'", dir);
    assert_int_equal(system(rm), 0);
    memfit_free(rm);
    memfit_free(text);
    memfit_free(ref);
    memfit_free(dir);
    memfit_free(q);
}

static void test_engines_open(void **state)
{
    (void)state;
    char *pth = fixture("dinov2/vits_tiny.pth");
    char *q = fixture("llm/qwen2_gqa.gguf");
    char *path = tmp_file(".yaml");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "budget: 32MiB\nmodels:\n  - name: dino\n    family: dinov2\n    sources: [%s]\n",
            pth);
    fclose(f);
    const char *sources[1] = {q};
    const char *options[1] = {"ctx=64"};
    struct memfit_engines_options o;
    memfit_engines_options_default(&o);
    o.manifest_path = path;
    o.sources = sources;
    o.n_sources = 1;
    o.options = options;
    o.n_options = 1;
    memfit_engines *e;
    assert_int_equal(memfit_engines_open(&o, &e), MEMFIT_OK);
    const char *source;
    assert_int_equal(memfit_engines_budget(e, &source), 32 * MIB);
    assert_non_null(strstr(source, "budget 32.0 MiB"));
    assert_int_equal(memfit_engines_count(e), 2);
    assert_string_equal(memfit_engine_model_name(memfit_engines_get(e, 0)), "dino");
    memfit_engine_model *m = memfit_engines_find(e, "qwen2_gqa");
    assert_ptr_equal(m, memfit_engines_get(e, 1));
    struct memfit_engine_plan p;
    assert_int_equal(memfit_engine_model_plan(m, &p), MEMFIT_OK);
    assert_int_equal(p.n_ctx, 64);
    memfit_engines_close(e);
    /* The flag beats the manifest; a bad option names itself. */
    o.budget_bytes = 8 * MIB;
    o.budget_flag = "8M";
    assert_int_equal(memfit_engines_open(&o, &e), MEMFIT_OK);
    assert_int_equal(memfit_engines_budget(e, &source), 8 * MIB);
    assert_string_equal(source, "--budget 8M");
    memfit_engines_close(e);
    options[0] = "ctx";
    assert_int_equal(memfit_engines_open(&o, &e), MEMFIT_E_INVALID);
    assert_non_null(strstr(memfit_last_error(), "expected KEY=VALUE"));
    unlink(path);
    memfit_free(path);
    memfit_free(q);
    memfit_free(pth);
}

struct cycle {
    const char *path;
    const char *extra;
};

static enum memfit_status cycle_op(void *arg)
{
    struct cycle *c = arg;
    char *text = memfit_asprintf("models:\n  - name: d\n    family: dinov2\n    sources: [%s]\n"
                                 "    limits: {max_image_size: 28}\n%s",
                                 c->path, c->extra);
    if (!text)
        return MEMFIT_E_NOMEM;
    struct memfit_manifest *mf = NULL;
    memfit_manager *mgr = NULL;
    memfit_engine_model *m = NULL;
    memfit_handle *h = NULL;
    float *out = NULL;
    struct memfit_image img = {28, 28, NULL};
    struct memfit_manager_options o;
    memfit_manager_options_default(&o);
    o.budget_bytes = 64 * MIB;
    o.reaper_thread = false;
    enum memfit_status st = memfit_manifest_parse_string(text, strlen(text), "c.yaml", &mf);
    if (st == MEMFIT_OK)
        st = memfit_manager_create(&o, &mgr);
    if (st == MEMFIT_OK)
        st = memfit_engine_model_create(mf, &mf->models[0], &m);
    if (st == MEMFIT_OK)
        st = memfit_engine_model_register(m, mgr);
    if (st == MEMFIT_OK)
        st = memfit_manager_acquire(mgr, "d", 0, &h);
    if (st == MEMFIT_OK) {
        img.rgb = memfit_calloc(28 * 28 * 3, 1);
        out = memfit_calloc(1024, sizeof(float));
        if (!img.rgb || !out)
            st = MEMFIT_E_NOMEM;
    }
    struct memfit_embed_params p;
    memfit_embed_params_default(&p);
    p.normalize = true;
    p.transform.mode = MEMFIT_IMAGE_RESIZE_MULTIPLE;
    const struct memfit_image *imgs[1] = {&img};
    if (st == MEMFIT_OK)
        st = memfit_engine_embed(h, imgs, 1, &p, out, 1024, NULL);
    memfit_manager_release(h);
    if (st == MEMFIT_OK)
        st = memfit_manager_unload(mgr, "d");
    memfit_manager_destroy(mgr);
    memfit_engine_model_destroy(m);
    memfit_image_free(&img);
    memfit_free(out);
    memfit_manifest_free(mf);
    memfit_free(text);
    /* A failed load is a FAILED model: the manager reports the family's
     * status, which for an allocation is E_NOMEM. */
    return st;
}

/* The registry: every family listed, found by name and alias, detected from
 * its own files (header only), and a file no family takes named. */
static void test_registry_and_detect(void **state)
{
    (void)state;
    assert_int_equal(memfit_engine_family_count(), 4);
    assert_null(memfit_engine_family_get(4));
    for (size_t i = 0; i < memfit_engine_family_count(); i++) {
        const struct memfit_engine_family_info *f = memfit_engine_family_get(i);
        assert_non_null(f->summary);
        assert_true(f->ops != 0);
        assert_ptr_equal(memfit_engine_family_find(f->name), f);
        assert_non_null(strstr(memfit_engine_family_names(), f->name));
    }
    assert_string_equal(memfit_engine_family_names(), "dinov2, qwen2, llama, sam");
    assert_string_equal(memfit_engine_family_find("LLM")->name, "qwen2");
    assert_string_equal(memfit_engine_family_find("Llama")->name, "llama");
    assert_string_equal(memfit_engine_family_find("Segment-Anything")->name, "sam");
    assert_null(memfit_engine_family_find("sam2"));
    assert_null(memfit_engine_family_find(NULL));
    static const struct {
        const char *file, *family;
    } cases[] = {{"dinov2/vits_tiny.pth", "dinov2"}, {"dinov2/vitreg_tiny.pth", "dinov2"},
                 {"dinov2/vitg_tiny.pth", "dinov2"}, {"llm/qwen2_gqa.gguf", "qwen2"},
                 {"llm/qwen2_mha.gguf", "qwen2"},    {"llm/llama_gqa.gguf", "llama"},
                 {"sam/sam_tiny.pth", "sam"},        {"sam/sam_tiny_hf.safetensors", "sam"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *path = fixture(cases[i].file);
        memfit_tensors *set;
        assert_int_equal(memfit_tensors_open(path, NULL, &set), MEMFIT_OK);
        const struct memfit_engine_family_info *f = NULL;
        assert_int_equal(memfit_engine_detect(set, &f), MEMFIT_OK);
        assert_string_equal(f->name, cases[i].family);
        memfit_tensors_close(set);
        /* "auto" in a manifest comes to the same family. */
        char *text =
            memfit_asprintf("models:\n  - name: m\n    family: auto\n    sources: [%s]\n", path);
        struct memfit_manifest *mf = manifest_text(text, "auto.yaml");
        memfit_engine_model *m;
        assert_int_equal(memfit_engine_model_create(mf, &mf->models[0], &m), MEMFIT_OK);
        assert_string_equal(memfit_engine_model_family(m)->name, cases[i].family);
        memfit_engine_model_destroy(m);
        memfit_manifest_free(mf);
        memfit_free(text);
        memfit_free(path);
    }
    /* A tensor file of no family: E_UNSUPPORTED naming the families. */
    char *path = fixture("llm/hf_qwen2_gqa/model.safetensors");
    memfit_tensors *set;
    assert_int_equal(memfit_tensors_open(path, NULL, &set), MEMFIT_OK);
    const struct memfit_engine_family_info *none = NULL;
    assert_int_equal(memfit_engine_detect(set, &none), MEMFIT_E_UNSUPPORTED);
    assert_non_null(strstr(memfit_last_error(), "families: dinov2, qwen2, llama"));
    assert_null(none);
    memfit_tensors_close(set);
    memfit_free(path);
}

static void test_fault_injection(void **state)
{
    (void)state;
    char *pth = fixture("dinov2/vits_tiny.pth");
    struct cycle c = {pth, "    options: {threads: 1}\n"};
    unsigned n = mf_test_alloc_failures(cycle_op, NULL, &c);
    assert_true(n > 10);
    memfit_free(pth);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry_and_detect),
        cmocka_unit_test(test_model_errors),
        cmocka_unit_test(test_plan),
        cmocka_unit_test(test_embed_through_manager),
        cmocka_unit_test(test_quantize),
        cmocka_unit_test(test_llm),
        cmocka_unit_test(test_llm_quantize),
        cmocka_unit_test(test_engines_open),
        cmocka_unit_test(test_fault_injection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

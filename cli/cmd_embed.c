/*
 * `memfit embed MODEL IMAGE...`: DINOv2 embeddings of images. MODEL is a
 * file, a source URI or the name of a model in a manifest; it goes through
 * the engines and the manager as in `serve` (the cache, the `quantize`
 * copy, the budget and its refusals). The images are decoded and run in
 * batches through the model's planned workspace (a larger batch reserves
 * its own from the budget), and printed as JSON lines or text.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "embed_common.h"
#include "engines_common.h"

const char cmd_embed_help[] =
    "Usage: memfit embed MODEL IMAGE... [options]\n"
    "\n"
    "Computes DINOv2 embeddings of JPEG/PNG images with the model MODEL (a\n"
    "GGUF, safetensors or .pth file, original or transformers tensor names, any\n"
    "weight type memfit reads). Images are resized (shorter side 256, bicubic)\n"
    "and centre-cropped to 224x224, then normalised with the ImageNet mean/std.\n"
    "The model is loaded through the model manager within the memory budget.\n"
    "\n"
    "MODEL is one of:\n"
    "  PATH                   a model file\n"
    "  s3://..., https://..., hf://ORG/REPO/PATH, file:///PATH\n"
    "                         a source, fetched into the cache first (as memfit pull\n"
    "                         does: MEMFIT_CACHE_DIR)\n"
    "  NAME                   a model of the manifest: its sources (fetched likewise;\n"
    "                         local paths relative to the manifest), sha256, limits\n"
    "                         and options (threads, interpolation, quantize); give\n"
    "                         them there (--threads/--interpolation are refused)\n"
    "\n"
    "Options:\n"
    "  --manifest FILE        the manifest to look NAME up in (default ./memfit.yaml\n"
    "                         when it exists)\n"
    "  --budget SIZE          the memory budget (default: MEMFIT_MAX_MEMORY_MB, else\n"
    "                         the manifest's, else 80% of the memory limit)\n"
    "  --output KIND          cls (default), mean (of the patch tokens), both\n"
    "                         (cls then mean) or patches (every patch token)\n"
    "  --normalize            scale each embedding (each token) to unit L2 norm\n"
    "  --json                 one JSON object per image:\n"
    "                         {\"image\", \"width\", \"height\", \"output\", \"embedding\"}\n"
    "  --batch N              images per forward pass (default 1; beyond the model's\n"
    "                         planned batch, the workspace is reserved from the budget)\n"
    "  --threads N            threads (default: the CPUs this process may use)\n"
    "  --no-crop              resize each side to a multiple of the patch size (14)\n"
    "                         instead of cropping\n"
    "  --interpolation MODE   position-embedding resize: orig (bicubic, +0.1 offset),\n"
    "                         reg (antialiased), hf (bicubic to the size); default:\n"
    "                         the model's (file metadata, else from its kind)\n"
    "  --stats                print the budget, timings, peak memory and the planned\n"
    "                         workspace to stderr\n"
    "  -h, --help\n";

struct embed_opts {
    enum memfit_vit_output output;
    bool normalize, json, no_crop, stats;
    unsigned batch;
    const char *manifest, *budget_text;
    uint64_t budget;
    /* Model options from flags: "threads=N", "interpolation=MODE". */
    char option_text[2][48];
    const char *options[2];
    size_t n_options;
    char option_flags[48];
};

static void add_option(struct embed_opts *o, const char *flag, const char *value)
{
    size_t i = o->n_options++;
    snprintf(o->option_text[i], sizeof(o->option_text[i]), "%s=%s", flag + 2, value);
    o->options[i] = o->option_text[i];
    size_t used = strlen(o->option_flags);
    snprintf(o->option_flags + used, sizeof(o->option_flags) - used, "%s%s", used ? ", " : "",
             flag);
}

enum {
    OPT_NORMALIZE = 1,
    OPT_JSON,
    OPT_NO_CROP,
    OPT_STATS,
    OPT_OUTPUT,
    OPT_BATCH,
    OPT_THREADS,
    OPT_INTERPOLATION,
    OPT_MANIFEST,
    OPT_BUDGET,
};

static const struct cli_option options[] = {
    {"normalize", 0, CLI_ARG_NONE, OPT_NORMALIZE},
    {"json", 0, CLI_ARG_NONE, OPT_JSON},
    {"no-crop", 0, CLI_ARG_NONE, OPT_NO_CROP},
    {"stats", 0, CLI_ARG_NONE, OPT_STATS},
    {"output", 0, CLI_ARG_REQUIRED, OPT_OUTPUT},
    {"batch", 0, CLI_ARG_REQUIRED, OPT_BATCH},
    {"threads", 0, CLI_ARG_REQUIRED, OPT_THREADS},
    {"interpolation", 0, CLI_ARG_REQUIRED, OPT_INTERPOLATION},
    {"manifest", 0, CLI_ARG_REQUIRED, OPT_MANIFEST},
    {"budget", 0, CLI_ARG_REQUIRED, OPT_BUDGET},
    {0},
};

/* Returns -1 to go on (MODEL and the images in *paths), else the exit code. */
static int parse_opts(int argc, char **argv, struct embed_opts *o, char ***paths, int *n_paths)
{
    *o = (struct embed_opts){.output = MEMFIT_VIT_OUTPUT_CLS, .batch = 1};
    bool have_threads = false, have_interp = false;
    struct cli_args a;
    cli_args_init(&a, "embed", cmd_embed_help, argc, argv, 0, CLI_TABLES(options));
    int id;
    while ((id = cli_args_next(&a)) > 0) {
        const char *v = a.value;
        long long n;
        enum memfit_vit_interpolation mode;
        switch (id) {
        case OPT_NORMALIZE:
            o->normalize = true;
            break;
        case OPT_JSON:
            o->json = true;
            break;
        case OPT_NO_CROP:
            o->no_crop = true;
            break;
        case OPT_STATS:
            o->stats = true;
            break;
        case OPT_OUTPUT:
            if (!cli_opt_vit_output("embed", v, &o->output))
                return CLI_EXIT_USAGE;
            break;
        case OPT_BATCH:
            if (!cli_opt_int("embed", a.name, v, 1, 1024, &n))
                return CLI_EXIT_USAGE;
            o->batch = (unsigned)n;
            break;
        case OPT_THREADS:
            if (!cli_opt_int("embed", a.name, v, 0, 1024, &n))
                return CLI_EXIT_USAGE;
            if (n > 0 && !have_threads) /* 0: the default */
                add_option(o, "--threads", v);
            have_threads = have_threads || n > 0;
            break;
        case OPT_INTERPOLATION:
            if (memfit_vit_interpolation_parse(v, &mode) != MEMFIT_OK)
                return cli_usage("embed", "--interpolation: %s", memfit_last_error());
            if (!have_interp)
                add_option(o, "--interpolation", v);
            have_interp = true;
            break;
        case OPT_MANIFEST:
            o->manifest = v;
            break;
        default: /* OPT_BUDGET */
            if (!cli_opt_size("embed", a.name, v, &o->budget))
                return CLI_EXIT_USAGE;
            o->budget_text = v;
            break;
        }
    }
    if (id < 0)
        return a.status;
    if (a.n_operands < 2)
        return cli_usage("embed", "needs MODEL and at least one IMAGE");
    *paths = a.operands;
    *n_paths = a.n_operands;
    return -1;
}

/* Timings and sizes for --stats. */
struct embed_stats {
    uint64_t open_ns, decode_ns, forward_ns;
};

/* Embeds images [first, first + n) of `paths` in one call and prints them. */
static int embed_batch(memfit_handle *h, const struct memfit_embed_params *p,
                       const struct embed_opts *o, char **paths, unsigned n,
                       struct embed_stats *stats)
{
    struct memfit_image_limits limits = memfit_image_limits_default();
    struct memfit_image *imgs = memfit_calloc(n, sizeof(*imgs));
    const struct memfit_image **ptrs = memfit_calloc(n, sizeof(*ptrs));
    size_t *offset = memfit_calloc(n + 1, sizeof(*offset));
    float *out = NULL;
    uint32_t dim = 0;
    enum memfit_status st = imgs && ptrs && offset ? MEMFIT_OK : MEMFIT_E_NOMEM;
    const char *failed = NULL;
    uint64_t t0 = memfit_now_ns();
    for (unsigned i = 0; i < n && st == MEMFIT_OK; i++) {
        size_t floats = 0;
        st = memfit_image_load(paths[i], &limits, &imgs[i]);
        if (st == MEMFIT_OK)
            st = memfit_engine_embed_size(h, p, imgs[i].width, imgs[i].height, &floats, &dim);
        if (st != MEMFIT_OK)
            failed = paths[i];
        ptrs[i] = &imgs[i];
        offset[i + 1] = offset[i] + floats;
    }
    uint64_t t1 = memfit_now_ns();
    stats->decode_ns += t1 - t0;
    if (st == MEMFIT_OK && !(out = memfit_malloc((offset[n] ? offset[n] : 1) * sizeof(float))))
        st = MEMFIT_E_NOMEM;
    if (st == MEMFIT_OK)
        st = memfit_engine_embed(h, ptrs, n, p, out, offset[n], NULL);
    stats->forward_ns += memfit_now_ns() - t1;
    for (unsigned i = 0; i < n && st == MEMFIT_OK; i++) {
        uint32_t w = 0, hh = 0;
        (void)memfit_image_transform_size(&p->transform, imgs[i].width, imgs[i].height, &w, &hh);
        cli_print_embedding(o->json, o->output, paths[i], w, hh, out + offset[i],
                            offset[i + 1] - offset[i], dim);
    }
    for (unsigned i = 0; imgs && i < n; i++)
        memfit_image_free(&imgs[i]);
    memfit_free(out);
    memfit_free(offset);
    memfit_free(ptrs);
    memfit_free(imgs);
    if (st == MEMFIT_OK)
        return CLI_EXIT_OK;
    const char *detail = memfit_last_error()[0] ? memfit_last_error() : memfit_status_message(st);
    return failed ? cli_fail("%s: %s", failed, detail) : cli_fail("embed: %s", detail);
}

static void print_stats(memfit_engines *e, memfit_engine_model *m, memfit_handle *h,
                        unsigned n_images, const struct embed_stats *s)
{
    struct memfit_vit_info info;
    memfit_vit_get_info(memfit_engine_vit(h), &info);
    char a[32], b[32];
    fprintf(stderr,
            "model: D=%u depth=%u heads=%u registers=%u %s weights %s (%s), "
            "hyperparameters from %s, interpolation %s (%s), %u threads\n",
            info.dim, info.depth, info.heads, info.n_registers, info.swiglu ? "SwiGLU" : "GELU-MLP",
            memfit_type_get_info(info.weight_type)->name,
            memfit_format_size(info.weight_bytes, a, sizeof(a)),
            info.from_config ? "config.json" : "tensor shapes",
            memfit_vit_interpolation_name(info.interpolation), info.interpolation_source,
            info.n_threads);
    fprintf(stderr,
            "images: %u, open %.3f s, decode %.3f s, preprocess+forward %.3f s "
            "(%.3f s per image)\n",
            n_images, (double)s->open_ns / 1e9, (double)s->decode_ns / 1e9,
            (double)s->forward_ns / 1e9, (double)s->forward_ns / 1e9 / n_images);
    struct memfit_engine_plan p;
    if (memfit_engine_model_plan(m, &p) == MEMFIT_OK)
        fprintf(stderr, "memory: planned workspace %s (batch %u of %ux%u), peak RSS (VmHWM) %s\n",
                memfit_format_size(p.cost.bytes[MEMFIT_BUDGET_WORKSPACE], a, sizeof(a)),
                p.max_batch, p.max_image_size, p.max_image_size,
                memfit_format_size(cli_peak_rss_bytes(), b, sizeof(b)));
    struct memfit_budget_usage u;
    memfit_budget_get_usage(memfit_manager_budget(memfit_engines_manager(e)), &u);
    fprintf(stderr, "budget: peak reserved %s of %s\n",
            memfit_format_size(u.peak_reserved_bytes, a, sizeof(a)),
            memfit_format_size(u.size_bytes, b, sizeof(b)));
}

int cmd_embed(int argc, char **argv)
{
    struct embed_opts o;
    char **paths = NULL;
    int n_paths = 0;
    int rc = parse_opts(argc, argv, &o, &paths, &n_paths);
    if (rc >= 0)
        return rc;
    struct cli_model_spec spec = {
        .command = "embed",
        .model = paths[0],
        .manifest = o.manifest,
        .family = "dinov2",
        .options = o.options,
        .n_options = o.n_options,
        .option_flags = o.option_flags,
        .budget_bytes = o.budget,
        .budget_flag = o.budget_text,
    };
    struct embed_stats stats = {0};
    uint64_t t_open = memfit_now_ns();
    memfit_engines *e = NULL;
    memfit_engine_model *m = NULL;
    memfit_handle *h = NULL;
    rc = cli_open_model(&spec, &e, &m);
    if (rc == CLI_EXIT_OK && !(memfit_engine_model_family(m)->ops & MEMFIT_ENGINE_OP_EMBED_IMAGE))
        rc = cli_fail("embed: model '%s' is of family '%s', which does not embed images",
                      memfit_engine_model_name(m), memfit_engine_model_family(m)->name);
    if (rc == CLI_EXIT_OK && o.stats)
        cli_print_budget(e);
    if (rc == CLI_EXIT_OK)
        rc = cli_acquire("embed", e, m, NULL, &h);
    stats.open_ns = memfit_now_ns() - t_open;
    struct memfit_embed_params p;
    memfit_embed_params_default(&p);
    p.output = o.output;
    p.normalize = o.normalize;
    p.batch = o.batch;
    if (rc == CLI_EXIT_OK && o.no_crop) {
        struct memfit_vit_info info;
        memfit_vit_get_info(memfit_engine_vit(h), &info);
        p.transform.mode = MEMFIT_IMAGE_RESIZE_MULTIPLE;
        p.transform.multiple = info.patch_size;
    }
    unsigned n_images = (unsigned)n_paths - 1;
    for (unsigned first = 0; rc == CLI_EXIT_OK && first < n_images; first += o.batch) {
        unsigned n = n_images - first < o.batch ? n_images - first : o.batch;
        rc = embed_batch(h, &p, &o, paths + 1 + first, n, &stats);
    }
    if (rc == CLI_EXIT_OK && o.stats)
        print_stats(e, m, h, n_images, &stats);
    memfit_manager_release(h);
    memfit_engines_close(e);
    return rc;
}

/*
 * `memfit run MANIFEST MODEL INPUT...`: one-shot inference through the
 * engines and the model manager, as the server does it: the budget resolved
 * and printed, the model planned, fetched and loaded lazily on the first
 * request within the budget, each input one request (acquire, run,
 * release). An image model embeds each INPUT image (printed as `memfit
 * embed` prints); a generating model takes each INPUT as a prompt and
 * prints the text.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "embed_common.h"
#include "engines_common.h"
#include "llm_common.h"

const char cmd_run_help[] =
    "Usage: memfit run MANIFEST MODEL INPUT... [options]\n"
    "\n"
    "Runs MODEL of the manifest (memfit.yaml) on each INPUT through the model\n"
    "manager: the model is fetched and loaded on first use if its planned memory\n"
    "fits the budget, and each INPUT is one request. An image model (dinov2)\n"
    "takes image files and prints embeddings like `memfit embed`; a text model\n"
    "(qwen2, llama) takes each INPUT as a prompt and prints the generated text.\n"
    "The budget and where it came from go to stderr.\n"
    "\n"
    "Options:\n"
    "  --budget SIZE    the memory budget (default: MEMFIT_MAX_MEMORY_MB, else the\n"
    "                   manifest's budget, else 80% of the cgroup limit or memory)\n"
    "  --json           one JSON object per INPUT: an image's as memfit embed --json;\n"
    "                   a prompt's as memfit generate --json, with \"input\" (the\n"
    "                   prompt) in place of \"model\"\n"
    "  --output KIND    cls (default), mean, both or patches\n"
    "  --normalize      scale each embedding to unit L2 norm\n"
    "  --crop N         centre crop side (default 224; the shorter side is first\n"
    "                   resized to N*256/224)\n"
    "  -n, --max-tokens N  text models: tokens to generate (default 256)\n"
    "  --temp T         text models: temperature, 0 = greedy (default 0.8)\n"
    "  --stats          print the model's planned memory and the budget use to stderr\n"
    "  -h, --help\n";

struct run_opts {
    const char *manifest, *model, *budget_text;
    char **inputs;
    int n_inputs;
    uint64_t budget;
    bool json, stats;
    struct memfit_embed_params embed;
    struct memfit_generate_params gen;
};

enum {
    OPT_MAX_TOKENS = 'n',
    OPT_JSON = 1,
    OPT_NORMALIZE,
    OPT_STATS,
    OPT_BUDGET,
    OPT_CROP,
    OPT_OUTPUT,
    OPT_TEMP,
};

static const struct cli_option options[] = {
    {"max-tokens", 'n', CLI_ARG_REQUIRED, OPT_MAX_TOKENS},
    {"json", 0, CLI_ARG_NONE, OPT_JSON},
    {"normalize", 0, CLI_ARG_NONE, OPT_NORMALIZE},
    {"stats", 0, CLI_ARG_NONE, OPT_STATS},
    {"budget", 0, CLI_ARG_REQUIRED, OPT_BUDGET},
    {"crop", 0, CLI_ARG_REQUIRED, OPT_CROP},
    {"output", 0, CLI_ARG_REQUIRED, OPT_OUTPUT},
    {"temp", 0, CLI_ARG_REQUIRED, OPT_TEMP},
    {0},
};

/* Returns -1 to go on, else the exit code (after the help or a usage error). */
static int parse(int argc, char **argv, struct run_opts *o)
{
    struct cli_args a;
    cli_args_init(&a, "run", cmd_run_help, argc, argv, 0, CLI_TABLES(options));
    int id;
    while ((id = cli_args_next(&a)) > 0) {
        const char *v = a.value;
        long long n;
        bool ok = true;
        switch (id) {
        case OPT_JSON:
            o->json = true;
            break;
        case OPT_NORMALIZE:
            o->embed.normalize = true;
            break;
        case OPT_STATS:
            o->stats = true;
            break;
        case OPT_BUDGET:
            ok = cli_opt_size("run", a.name, v, &o->budget);
            o->budget_text = v;
            break;
        case OPT_CROP:
            if ((ok = cli_opt_int("run", a.name, v, 14, 8192, &n))) {
                o->embed.transform.crop = (uint32_t)n;
                o->embed.transform.resize = (uint32_t)(((uint64_t)n * 256 + 112) / 224);
            }
            break;
        case OPT_OUTPUT:
            ok = cli_opt_vit_output("run", v, &o->embed.output);
            break;
        case OPT_MAX_TOKENS:
            if ((ok = cli_opt_int("run", a.name, v, 0, 1 << 24, &n)))
                o->gen.max_tokens = (uint32_t)n;
            break;
        default: /* OPT_TEMP */
            ok = cli_opt_float("run", a.name, v, 0, 100, &o->gen.sampling.temperature);
            break;
        }
        if (!ok)
            return CLI_EXIT_USAGE;
    }
    if (id < 0)
        return a.status;
    if (a.n_operands < 3)
        return cli_usage("run", "needs MANIFEST, MODEL and at least one INPUT");
    o->manifest = a.operands[0];
    o->model = a.operands[1];
    o->inputs = a.operands + 2;
    o->n_inputs = a.n_operands - 2;
    return -1;
}

/* One image: decode, acquire, embed (the transform inside), release, print. */
static int embed_one(const struct run_opts *o, memfit_engines *e, memfit_engine_model *m,
                     const char *path)
{
    struct memfit_image img;
    struct memfit_image_limits limits = memfit_image_limits_default();
    enum memfit_status st = memfit_image_load(path, &limits, &img);
    if (st != MEMFIT_OK)
        return cli_fail("%s: %s", path, memfit_last_error());
    memfit_handle *handle = NULL;
    int rc = cli_acquire("run", e, m, NULL, &handle);
    float *out = NULL;
    size_t n_out = 0;
    uint32_t dim = 0, w = 0, h = 0;
    const struct memfit_image *imgs[1] = {&img};
    if (rc == CLI_EXIT_OK) {
        st = memfit_engine_embed_size(handle, &o->embed, img.width, img.height, &n_out, &dim);
        if (st == MEMFIT_OK)
            st = memfit_image_transform_size(&o->embed.transform, img.width, img.height, &w, &h);
        if (st == MEMFIT_OK && !(out = memfit_malloc(n_out * sizeof(float))))
            st = MEMFIT_E_NOMEM;
        if (st == MEMFIT_OK)
            st = memfit_engine_embed(handle, imgs, 1, &o->embed, out, n_out, NULL);
        if (st == MEMFIT_OK)
            cli_print_embedding(o->json, o->embed.output, path, w, h, out, n_out, dim);
        else
            rc = cli_fail("%s: %s", path,
                          memfit_last_error()[0] ? memfit_last_error() : memfit_status_message(st));
    }
    memfit_manager_release(handle);
    memfit_free(out);
    memfit_image_free(&img);
    return rc;
}

/* One prompt: acquire, generate (printed as it comes, or with --json at the end), release. */
static int generate_one(const struct run_opts *o, memfit_engines *e, memfit_engine_model *m,
                        const char *prompt)
{
    memfit_handle *handle = NULL;
    int rc = cli_acquire("run", e, m, "a smaller ctx or kv: q8_0 in the manifest", &handle);
    if (rc != CLI_EXIT_OK)
        return rc;
    struct memfit_generation_request req = {
        .prompt = prompt, .prompt_len = strlen(prompt), .params = o->gen};
    memfit_engine_generation *gen = NULL;
    struct cli_llm_text all = {0};
    enum memfit_status st = memfit_engine_generate_start(handle, &req, &gen, NULL);
    for (bool done = false; st == MEMFIT_OK && !done;) {
        const char *text;
        size_t len;
        st = memfit_engine_generate_next(gen, &text, &len, &done);
        if (st == MEMFIT_OK && len && o->json)
            cli_llm_collect(&all, text, len);
        else if (st == MEMFIT_OK && len)
            cli_llm_print(NULL, text, len);
    }
    struct memfit_generate_result result = {0};
    memfit_engine_generate_end(gen, &result);
    memfit_manager_release(handle);
    if (st == MEMFIT_OK && all.failed)
        st = memfit_fail(MEMFIT_E_NOMEM, "out of memory for the text");
    if (st != MEMFIT_OK)
        rc = cli_fail("run: %s", memfit_last_error());
    else if (o->json)
        rc = cli_json_print("run", cli_llm_result_json("input", prompt, &all, &result));
    else
        putchar('\n');
    memfit_free(all.text);
    return rc;
}

int cmd_run(int argc, char **argv)
{
    struct run_opts o = {.json = false};
    memfit_embed_params_default(&o.embed);
    o.embed.transform.crop = 224;
    o.embed.transform.resize = 256;
    memfit_sampling_default(&o.gen.sampling);
    o.gen.max_tokens = 256;
    int rc = parse(argc, argv, &o);
    if (rc >= 0)
        return rc;
    memfit_engines *e = NULL;
    rc = cli_open_manifest(o.manifest, o.budget, o.budget_text, &e);
    if (rc != CLI_EXIT_OK)
        return rc;
    cli_print_budget(e);
    memfit_engine_model *m = memfit_engines_find(e, o.model);
    unsigned ops = m ? memfit_engine_model_family(m)->ops : 0;
    if (!m)
        rc = cli_fail("%s: no model '%s'", o.manifest, o.model);
    else if (!(ops & (MEMFIT_ENGINE_OP_EMBED_IMAGE | MEMFIT_ENGINE_OP_GENERATE)))
        rc = cli_fail("run: model '%s' (family %s) neither embeds images nor generates text",
                      o.model, memfit_engine_model_family(m)->name);
    for (int i = 0; i < o.n_inputs && rc == CLI_EXIT_OK; i++)
        rc = ops & MEMFIT_ENGINE_OP_EMBED_IMAGE ? embed_one(&o, e, m, o.inputs[i])
                                                : generate_one(&o, e, m, o.inputs[i]);
    if (o.stats && m) {
        struct memfit_engine_plan p;
        char a[32], b[32];
        if (memfit_engine_model_plan(m, &p) == MEMFIT_OK)
            fprintf(stderr, "model '%s': planned %s (plan from %s)\n", o.model,
                    memfit_format_size(memfit_budget_cost_total(&p.cost), a, sizeof(a)),
                    p.plan_source);
        struct memfit_budget_usage u;
        memfit_budget_get_usage(memfit_manager_budget(memfit_engines_manager(e)), &u);
        fprintf(stderr, "budget: peak reserved %s of %s, %llu refused\n",
                memfit_format_size(u.peak_reserved_bytes, a, sizeof(a)),
                memfit_format_size(u.size_bytes, b, sizeof(b)), (unsigned long long)u.n_refused);
    }
    memfit_engines_close(e);
    return rc;
}

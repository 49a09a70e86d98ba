/*
 * `memfit run MANIFEST MODEL INPUT...`: one-shot inference through the model
 * manager, as a server would do it: the budget resolved and printed, the
 * model planned and loaded lazily on the first request within the budget,
 * each input one request (acquire, forward, release), and a request beyond
 * the model's planned size given its own workspace from the budget. Prints
 * the embeddings as `memfit embed` does.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "embed_common.h"
#include "manager_common.h"

const char cmd_run_help[] =
    "Usage: memfit run MANIFEST MODEL INPUT... [options]\n"
    "\n"
    "Runs MODEL of the manifest (memfit.yaml) on each INPUT image through the\n"
    "model manager: the model is loaded on first use if its planned memory fits\n"
    "the budget, and each image is one request. Prints embeddings like\n"
    "`memfit embed`. The budget and where it came from go to stderr.\n"
    "\n"
    "Options:\n"
    "  --budget SIZE    the memory budget (default: MEMFIT_MAX_MEMORY_MB, else the\n"
    "                   manifest's budget, else 80% of the cgroup limit or memory)\n"
    "  --json           one JSON object per image (as memfit embed --json)\n"
    "  --output KIND    cls (default), mean, both or patches\n"
    "  --normalize      scale each embedding to unit L2 norm\n"
    "  --crop N         centre crop side (default 224; the shorter side is first\n"
    "                   resized to N*256/224)\n"
    "  --stats          print the model's planned memory and the budget use to stderr\n"
    "  -h, --help\n";

struct run_opts {
    const char *manifest, *model;
    char **inputs;
    int n_inputs;
    uint64_t budget;
    bool json, normalize, stats;
    enum memfit_vit_output output;
    uint32_t crop;
};

static int parse(int argc, char **argv, struct run_opts *o)
{
    int n_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        long long v;
        if (strcmp(a, "--json") == 0) {
            o->json = true;
        } else if (strcmp(a, "--normalize") == 0) {
            o->normalize = true;
        } else if (strcmp(a, "--stats") == 0) {
            o->stats = true;
        } else if (strcmp(a, "--budget") == 0) {
            if (!has_value)
                return cli_usage("run", "--budget needs a size");
            if (!cli_opt_size("run", a, argv[++i], &o->budget))
                return CLI_EXIT_USAGE;
        } else if (strcmp(a, "--crop") == 0) {
            if (!has_value)
                return cli_usage("run", "--crop needs a number");
            if (!cli_opt_int("run", a, argv[++i], 14, 8192, &v))
                return CLI_EXIT_USAGE;
            o->crop = (uint32_t)v;
        } else if (strcmp(a, "--output") == 0) {
            if (!has_value)
                return cli_usage("run", "--output needs cls, mean, both or patches");
            unsigned k = 0;
            while (k < 4 && strcmp(argv[i + 1], cli_vit_output_names[k]) != 0)
                k++;
            if (k == 4)
                return cli_usage("run", "--output: unknown kind '%s'", argv[i + 1]);
            o->output = (enum memfit_vit_output)k;
            i++;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage("run", "unknown option '%s'", a);
        } else if (n_pos == 0) {
            o->manifest = a, n_pos++;
        } else if (n_pos == 1) {
            o->model = a, n_pos++;
        } else {
            o->inputs[o->n_inputs++] = argv[i];
        }
    }
    if (!o->model || o->n_inputs == 0)
        return cli_usage("run", "needs MANIFEST, MODEL and at least one INPUT");
    return CLI_EXIT_OK;
}

/* One request: decode, transform, acquire, forward, release, print. */
static int run_one(const struct run_opts *o, struct cli_managed *m, const char *path)
{
    struct memfit_image img;
    struct memfit_image_limits limits = memfit_image_limits_default();
    enum memfit_status st = memfit_image_load(path, &limits, &img);
    if (st != MEMFIT_OK)
        return cli_fail_status(st);
    struct memfit_image_transform tf = memfit_image_transform_default();
    tf.crop = o->crop;
    tf.resize = (uint32_t)(((uint64_t)o->crop * 256 + 112) / 224);
    uint32_t w, h;
    float *pixels = NULL, *out = NULL;
    memfit_handle *handle = NULL;
    int rc = CLI_EXIT_OK;
    if ((st = memfit_image_transform_size(&tf, img.width, img.height, &w, &h)) != MEMFIT_OK)
        goto fail;
    size_t n_px = (size_t)3 * w * h;
    pixels = memfit_malloc(n_px * sizeof(float));
    if (!pixels) {
        st = MEMFIT_E_NOMEM;
        goto fail;
    }
    if ((st = memfit_image_transform_apply(&tf, &img, pixels, n_px, NULL, 0)) != MEMFIT_OK)
        goto fail;
    if ((st = memfit_manager_acquire(m->mgr, o->model, -1, &handle)) != MEMFIT_OK)
        goto fail;
    memfit_vit *vit = memfit_vit_driver_engine(memfit_handle_model(handle));
    struct memfit_vit_info info;
    memfit_vit_get_info(vit, &info);
    size_t n_out;
    if ((st = memfit_vit_output_floats(vit, o->output, h, w, &n_out)) != MEMFIT_OK)
        goto fail;
    out = memfit_malloc(n_out * sizeof(float));
    if (!out) {
        st = MEMFIT_E_NOMEM;
        goto fail;
    }
    st = memfit_vit_driver_forward(memfit_handle_model(handle), pixels, 1, h, w, o->output,
                                   o->normalize, out, n_out, -1);
    if (st != MEMFIT_OK)
        goto fail;
    cli_print_embedding(o->json, o->output, path, w, h, out, n_out, info.dim);
    goto done;
fail:
    rc = cli_fail("%s: %s", path,
                  memfit_last_error()[0] ? memfit_last_error() : memfit_status_message(st));
done:
    memfit_manager_release(handle);
    memfit_free(out);
    memfit_free(pixels);
    memfit_image_free(&img);
    return rc;
}

int cmd_run(int argc, char **argv)
{
    if (cli_wants_help(argc, argv, cmd_run_help))
        return CLI_EXIT_OK;
    struct run_opts o = {.output = MEMFIT_VIT_OUTPUT_CLS, .crop = 224};
    o.inputs = memfit_calloc((size_t)argc, sizeof(char *));
    if (!o.inputs)
        return cli_fail_status(MEMFIT_E_NOMEM);
    int rc = parse(argc, argv, &o);
    if (rc != CLI_EXIT_OK) {
        memfit_free(o.inputs);
        return rc;
    }
    struct cli_managed m;
    rc = cli_managed_open(o.manifest, o.budget, false, &m);
    if (rc != CLI_EXIT_OK) {
        memfit_free(o.inputs);
        return rc;
    }
    if (!memfit_manifest_find(m.manifest, o.model)) {
        rc = cli_fail("%s: no model '%s'", o.manifest, o.model);
        goto done;
    }
    for (int i = 0; i < o.n_inputs && rc == CLI_EXIT_OK; i++)
        rc = run_one(&o, &m, o.inputs[i]);
    if (o.stats) {
        struct memfit_budget_usage u;
        memfit_budget_get_usage(memfit_manager_budget(m.mgr), &u);
        char a[32], b[32];
        fprintf(stderr, "budget: peak reserved %s of %s, %llu refused\n",
                memfit_format_size(u.peak_reserved_bytes, a, sizeof(a)),
                memfit_format_size(u.size_bytes, b, sizeof(b)), (unsigned long long)u.n_refused);
    }
done:
    cli_managed_close(&m);
    memfit_free(o.inputs);
    return rc;
}

/*
 * `memfit embed MODEL IMAGE...`: DINOv2 embeddings of images. MODEL is a
 * file, a source URI (fetched into the cache first) or the name of a model
 * in a manifest (its sources and options). Each image is
 * decoded, put through the reference evaluation transform (or resized to a
 * multiple of the patch size with --no-crop), run in batches through the
 * model with one planned workspace (mapped once, grown only when a larger
 * batch needs it), and printed as JSON lines or text.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "embed_common.h"
#include "fetch_common.h"

const char cmd_embed_help[] =
    "Usage: memfit embed MODEL IMAGE... [options]\n"
    "\n"
    "Computes DINOv2 embeddings of JPEG/PNG images with the model MODEL (a\n"
    "GGUF, safetensors or .pth file, original or transformers tensor names, any\n"
    "weight type memfit reads). Images are resized (shorter side 256, bicubic)\n"
    "and centre-cropped to 224x224, then normalised with the ImageNet mean/std.\n"
    "\n"
    "MODEL is one of:\n"
    "  PATH                   a model file\n"
    "  s3://..., https://..., hf://ORG/REPO/PATH, file:///PATH\n"
    "                         a source, fetched into the cache first (as memfit pull\n"
    "                         does: MEMFIT_CACHE_DIR, progress on a terminal)\n"
    "  NAME                   a model of the manifest: its sources (fetched likewise;\n"
    "                         local paths relative to the manifest), sha256 and\n"
    "                         options (threads, interpolation, quantize); options\n"
    "                         given here win\n"
    "\n"
    "Options:\n"
    "  --manifest FILE        the manifest to look NAME up in (default ./memfit.yaml\n"
    "                         when it exists)\n"
    "  --output KIND          cls (default), mean (of the patch tokens), both\n"
    "                         (cls then mean) or patches (every patch token)\n"
    "  --normalize            scale each embedding (each token) to unit L2 norm\n"
    "  --json                 one JSON object per image:\n"
    "                         {\"image\", \"width\", \"height\", \"output\", \"embedding\"}\n"
    "  --batch N              images per forward pass (default 1)\n"
    "  --threads N            threads (default: the CPUs this process may use)\n"
    "  --no-crop              resize each side to a multiple of 14 instead of cropping\n"
    "  --interpolation MODE   position-embedding resize: orig (bicubic, +0.1 offset),\n"
    "                         reg (antialiased), hf (bicubic to the size); default:\n"
    "                         the model's (file metadata, else from its kind)\n"
    "  --stats                print timings, peak memory and the planned workspace\n"
    "                         to stderr\n"
    "  -h, --help\n";

struct embed_opts {
    enum memfit_vit_output output;
    bool normalize, json, no_crop, stats;
    unsigned batch, threads;
    enum memfit_vit_interpolation interp;
    const char *manifest;
};

/* The process's peak RSS (VmHWM) in bytes, 0 when unreadable. */
static uint64_t peak_rss_bytes(void)
{
    struct memfit_proc_mem pm;
    return memfit_proc_read_ex(NULL, 0, MEMFIT_PROC_STATUS_ONLY, &pm) == MEMFIT_OK ? pm.hwm_bytes
                                                                                   : 0;
}

static int parse_opts(int argc, char **argv, struct embed_opts *o, char ***paths, int *n_paths)
{
    *o = (struct embed_opts){.output = MEMFIT_VIT_OUTPUT_CLS, .batch = 1};
    *n_paths = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        long long v;
        if (strcmp(a, "--output") == 0) {
            if (!has_value)
                return cli_usage("embed", "--output needs cls, mean, both or patches");
            unsigned k = 0;
            while (k < 4 && strcmp(argv[i + 1], cli_vit_output_names[k]) != 0)
                k++;
            if (k == 4)
                return cli_usage("embed", "--output: unknown kind '%s'", argv[i + 1]);
            o->output = (enum memfit_vit_output)k;
            i++;
        } else if (strcmp(a, "--normalize") == 0) {
            o->normalize = true;
        } else if (strcmp(a, "--json") == 0) {
            o->json = true;
        } else if (strcmp(a, "--no-crop") == 0) {
            o->no_crop = true;
        } else if (strcmp(a, "--stats") == 0) {
            o->stats = true;
        } else if (strcmp(a, "--batch") == 0 || strcmp(a, "--threads") == 0) {
            if (!has_value)
                return cli_usage("embed", "%s needs a number", a);
            if (!cli_opt_int("embed", a, argv[i + 1], a[2] == 'b' ? 1 : 0, 1024, &v))
                return CLI_EXIT_USAGE;
            if (a[2] == 'b')
                o->batch = (unsigned)v;
            else
                o->threads = (unsigned)v;
            i++;
        } else if (strcmp(a, "--manifest") == 0) {
            if (!has_value)
                return cli_usage("embed", "--manifest needs a FILE");
            o->manifest = argv[++i];
        } else if (strcmp(a, "--interpolation") == 0) {
            if (!has_value)
                return cli_usage("embed", "--interpolation needs orig, reg or hf");
            if (memfit_vit_interpolation_parse(argv[i + 1], &o->interp) != MEMFIT_OK)
                return cli_usage("embed", "--interpolation: %s", memfit_last_error());
            i++;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage("embed", "unknown option '%s'", a);
        } else {
            (*paths)[(*n_paths)++] = argv[i];
        }
    }
    if (*n_paths < 2)
        return cli_usage("embed", "needs MODEL and at least one IMAGE");
    return CLI_EXIT_OK;
}

/* The model file to open, and what a manifest entry asks of it. */
struct model_source {
    char *path; /* owned */
    bool quantize;
    enum memfit_type quantize_type;
};

static bool path_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* A manifest's local source, relative to the manifest's directory (as the
 * manager reads it). */
static char *manifest_relative(const char *manifest_path, const char *source)
{
    const char *slash = strrchr(manifest_path, '/');
    if (source[0] == '/' || !slash)
        return memfit_strdup(source);
    return memfit_asprintf("%.*s/%s", (int)(slash - manifest_path), manifest_path, source);
}

/* The entry's options (threads, interpolation, quantize), unless given on
 * the command line. */
static int apply_options(const struct memfit_manifest *mf, const struct memfit_manifest_model *m,
                         struct embed_opts *o, struct model_source *src)
{
    for (size_t i = 0; i < m->n_options; i++) {
        const char *k = m->options[i].key, *v = m->options[i].value;
        if (strcmp(k, "threads") == 0) {
            long long n;
            if (memfit_parse_int(v, 1, 4096, &n) != MEMFIT_OK)
                return cli_fail("%s:%u: model '%s': threads '%s': expected 1 to 4096", mf->path,
                                m->line, m->name, v);
            if (!o->threads)
                o->threads = (unsigned)n;
        } else if (strcmp(k, "interpolation") == 0) {
            enum memfit_vit_interpolation mode;
            if (memfit_vit_interpolation_parse(v, &mode) != MEMFIT_OK)
                return cli_fail("%s:%u: model '%s': %s", mf->path, m->line, m->name,
                                memfit_last_error());
            if (o->interp == MEMFIT_VIT_INTERP_AUTO)
                o->interp = mode;
        } else if (strcmp(k, "quantize") == 0) {
            if (memfit_type_from_name(v, &src->quantize_type) != MEMFIT_OK)
                return cli_fail("%s:%u: model '%s': quantize: %s", mf->path, m->line, m->name,
                                memfit_last_error());
            src->quantize = true;
        } else {
            return cli_fail("%s:%u: model '%s': unknown option '%s' for family dinov2 (known: "
                            "quantize, threads, interpolation)",
                            mf->path, m->line, m->name, k);
        }
    }
    return CLI_EXIT_OK;
}

/* The sources of a manifest entry: fetched through the store when any is a
 * URI or a digest is given, else the first local file that exists. */
static int manifest_sources(const struct memfit_manifest *mf, const struct memfit_manifest_model *m,
                            struct model_source *src)
{
    if (m->n_sources == 0)
        return cli_fail("%s:%u: model '%s' has no source", mf->path, m->line, m->name);
    char **local = memfit_calloc(m->n_sources, sizeof(char *));
    if (!local)
        return cli_fail_status(MEMFIT_E_NOMEM);
    bool remote = m->sha256 != NULL;
    int rc = CLI_EXIT_OK;
    for (size_t i = 0; i < m->n_sources && rc == CLI_EXIT_OK; i++) {
        if (cli_is_source_uri(m->sources[i]))
            remote = true;
        local[i] = cli_is_source_uri(m->sources[i]) ? memfit_strdup(m->sources[i])
                                                    : manifest_relative(mf->path, m->sources[i]);
        if (!local[i])
            rc = cli_fail_status(MEMFIT_E_NOMEM);
    }
    if (rc == CLI_EXIT_OK && remote) {
        enum memfit_status st =
            cli_fetch_model((const char *const *)local, m->n_sources, m->sha256, &src->path);
        if (st != MEMFIT_OK)
            rc = cli_fail("model '%s' (%s): %s", m->name, mf->path, memfit_last_error());
    } else if (rc == CLI_EXIT_OK) {
        size_t pick = 0;
        while (pick + 1 < m->n_sources && !path_exists(local[pick]))
            pick++;
        src->path = local[pick];
        local[pick] = NULL;
    }
    for (size_t i = 0; i < m->n_sources; i++)
        memfit_free(local[i]);
    memfit_free(local);
    return rc;
}

/* Lists the manifest's model names into buf ("a, b, c"), for messages. */
static void list_names(const struct memfit_manifest *mf, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < mf->n_models && used < size; i++) {
        int n = snprintf(buf + used, size - used, "%s%s", i ? ", " : "", mf->models[i].name);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    if (mf->n_models == 0)
        snprintf(buf, size, "none");
}

/* MODEL: a source URI (fetched), a file, or a manifest model name. */
static int resolve_model(const char *model, struct embed_opts *o, struct model_source *src)
{
    *src = (struct model_source){0};
    if (cli_is_source_uri(model)) {
        const char *sources[1] = {model};
        enum memfit_status st = cli_fetch_model(sources, 1, NULL, &src->path);
        return st == MEMFIT_OK ? CLI_EXIT_OK : cli_fail_status(st);
    }
    if (path_exists(model) || (!o->manifest && !path_exists(MEMFIT_MANIFEST_DEFAULT_PATH))) {
        if (!path_exists(model))
            return cli_fail("%s: no such model file, and no manifest to look it up as a model "
                            "name (./%s is absent; --manifest FILE names one)",
                            model, MEMFIT_MANIFEST_DEFAULT_PATH);
        src->path = memfit_strdup(model);
        return src->path ? CLI_EXIT_OK : cli_fail_status(MEMFIT_E_NOMEM);
    }
    const char *manifest_path = o->manifest ? o->manifest : MEMFIT_MANIFEST_DEFAULT_PATH;
    struct memfit_manifest *mf;
    enum memfit_status st = memfit_manifest_load(manifest_path, &mf);
    if (st != MEMFIT_OK)
        return cli_fail("%s: not a file, so looked up as a model name: %s", model,
                        memfit_last_error());
    int rc;
    const struct memfit_manifest_model *m = memfit_manifest_find(mf, model);
    if (!m) {
        char names[1024];
        list_names(mf, names, sizeof(names));
        rc = cli_fail("%s: no such file, and no model of that name in manifest %s (its models: "
                      "%s)",
                      model, manifest_path, names);
    } else if (m->family && strcmp(m->family, "dinov2") != 0) {
        rc = cli_fail("%s: model '%s' is of family '%s', not dinov2", manifest_path, model,
                      m->family);
    } else {
        rc = apply_options(mf, m, o, src);
        if (rc == CLI_EXIT_OK)
            rc = manifest_sources(mf, m, src);
    }
    memfit_manifest_free(mf);
    return rc;
}

/* Opens the model; with a manifest's `quantize`, converts it first to a
 * temporary GGUF that is unlinked as soon as it is open (the mapping keeps
 * it alive, nothing is left behind). */
static enum memfit_status open_model(const struct model_source *src,
                                     const struct memfit_vit_options *vo, memfit_vit **out)
{
    enum memfit_status st = memfit_vit_open(src->path, vo, out);
    if (st != MEMFIT_OK || !src->quantize)
        return st;
    const char *tmp = getenv("TMPDIR");
    char *copy =
        memfit_asprintf("%s/memfit-embed-%ld.gguf", tmp && *tmp ? tmp : "/tmp", (long)getpid());
    if (!copy) {
        memfit_vit_close(*out);
        return MEMFIT_E_NOMEM;
    }
    st = memfit_vit_write_gguf(*out, copy, src->quantize_type);
    memfit_vit_close(*out);
    *out = NULL;
    if (st == MEMFIT_OK) {
        st = memfit_vit_open(copy, vo, out);
        unlink(copy);
    }
    memfit_free(copy);
    return st;
}

/* The workspace, mapped once and grown when a batch needs more. */
struct workspace {
    void *p;
    size_t bytes;
};

static bool workspace_ensure(struct workspace *w, size_t bytes)
{
    if (w->bytes >= bytes)
        return true;
    if (w->p)
        munmap(w->p, w->bytes);
    w->p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (w->p == MAP_FAILED) {
        w->p = NULL;
        w->bytes = 0;
        return false;
    }
    w->bytes = bytes;
    return true;
}

int cmd_embed(int argc, char **argv)
{
    if (cli_wants_help(argc, argv, cmd_embed_help))
        return CLI_EXIT_OK;
    char **paths = memfit_calloc((size_t)argc, sizeof(char *));
    if (!paths)
        return cli_fail_status(MEMFIT_E_NOMEM);
    struct embed_opts o;
    int n_paths;
    int rc = parse_opts(argc, argv, &o, &paths, &n_paths);
    if (rc != CLI_EXIT_OK) {
        memfit_free(paths);
        return rc;
    }
    struct memfit_vit_options vo;
    memfit_vit_options_default(&vo);
    memfit_vit *model = NULL;
    struct model_source src;
    if ((rc = resolve_model(paths[0], &o, &src)) != CLI_EXIT_OK) {
        memfit_free(paths);
        return rc;
    }
    vo.n_threads = o.threads;
    vo.interpolation = o.interp;
    uint64_t t_open = memfit_now_ns();
    enum memfit_status st = open_model(&src, &vo, &model);
    memfit_free(src.path);
    if (st != MEMFIT_OK) {
        memfit_free(paths);
        return cli_fail_status(st);
    }
    t_open = memfit_now_ns() - t_open;
    struct memfit_vit_info info;
    memfit_vit_get_info(model, &info);
    struct memfit_image_transform tf = memfit_image_transform_default();
    if (o.no_crop)
        tf.mode = MEMFIT_IMAGE_RESIZE_MULTIPLE;
    tf.multiple = info.patch_size;
    struct memfit_image_limits limits = memfit_image_limits_default();
    unsigned n_images = (unsigned)n_paths - 1;
    struct memfit_image *imgs = memfit_calloc(o.batch, sizeof(*imgs));
    float *pixels = NULL, *out = NULL;
    size_t pixels_cap = 0, out_cap = 0, max_plan = 0;
    struct workspace ws = {0};
    uint64_t t_forward = 0, t_prep = 0;
    rc = CLI_EXIT_OK;
    if (!imgs) {
        rc = cli_fail_status(MEMFIT_E_NOMEM);
        goto done;
    }
    for (unsigned first = 0; first < n_images;) {
        /* A batch: consecutive images whose transformed size is the same. */
        unsigned n = 0;
        uint32_t w = 0, h = 0;
        uint64_t t0 = memfit_now_ns();
        while (n < o.batch && first + n < n_images) {
            const char *path = paths[1 + first + n];
            struct memfit_image img;
            if ((st = memfit_image_load(path, &limits, &img)) != MEMFIT_OK) {
                rc = cli_fail_status(st);
                goto done;
            }
            uint32_t iw, ih;
            if ((st = memfit_image_transform_size(&tf, img.width, img.height, &iw, &ih)) !=
                MEMFIT_OK) {
                memfit_image_free(&img);
                rc = cli_fail_status(st);
                goto done;
            }
            if (n > 0 && (iw != w || ih != h)) {
                memfit_image_free(&img);
                break;
            }
            w = iw, h = ih;
            imgs[n++] = img;
        }
        size_t per_image = (size_t)3 * w * h, per_out, plan;
        if ((st = memfit_vit_output_floats(model, o.output, h, w, &per_out)) != MEMFIT_OK ||
            (st = memfit_vit_plan(model, n, h, w, &plan)) != MEMFIT_OK) {
            rc = cli_fail_status(st);
            goto done;
        }
        if (per_image * n > pixels_cap) {
            memfit_free(pixels);
            pixels_cap = per_image * n;
            pixels = memfit_malloc(pixels_cap * sizeof(float));
        }
        if (per_out * n > out_cap) {
            memfit_free(out);
            out_cap = per_out * n;
            out = memfit_malloc(out_cap * sizeof(float));
        }
        if (!pixels || !out || !workspace_ensure(&ws, plan)) {
            rc = cli_fail("cannot allocate %zu bytes of workspace and buffers", plan);
            goto done;
        }
        if (plan > max_plan)
            max_plan = plan;
        for (unsigned i = 0; i < n; i++) {
            st = memfit_image_transform_apply(&tf, &imgs[i], pixels + i * per_image, per_image,
                                              NULL, 0);
            if (st != MEMFIT_OK) {
                rc = cli_fail("%s: %s", paths[1 + first + i], memfit_last_error());
                goto done;
            }
        }
        uint64_t t1 = memfit_now_ns();
        t_prep += t1 - t0;
        st = memfit_vit_forward(model, pixels, n, h, w, o.output, o.normalize, ws.p, ws.bytes, out,
                                out_cap);
        t_forward += memfit_now_ns() - t1;
        if (st != MEMFIT_OK) {
            rc = cli_fail_status(st);
            goto done;
        }
        for (unsigned i = 0; i < n; i++) {
            cli_print_embedding(o.json, o.output, paths[1 + first + i], w, h, out + i * per_out,
                                per_out, info.dim);
            memfit_image_free(&imgs[i]);
        }
        first += n;
    }
    if (o.stats) {
        char a[32], b[32];
        fprintf(stderr,
                "model: D=%u depth=%u heads=%u registers=%u %s weights %s (%s), "
                "hyperparameters from %s, interpolation %s (%s), %u threads\n",
                info.dim, info.depth, info.heads, info.n_registers,
                info.swiglu ? "SwiGLU" : "GELU-MLP", memfit_type_get_info(info.weight_type)->name,
                memfit_format_size(info.weight_bytes, a, sizeof(a)),
                info.from_config ? "config.json" : "tensor shapes",
                memfit_vit_interpolation_name(info.interpolation), info.interpolation_source,
                info.n_threads);
        fprintf(stderr,
                "images: %u, open %.3f s, decode+preprocess %.3f s, forward %.3f s "
                "(%.3f s per image)\n",
                n_images, (double)t_open / 1e9, (double)t_prep / 1e9, (double)t_forward / 1e9,
                (double)t_forward / 1e9 / n_images);
        fprintf(stderr, "memory: planned workspace %s, peak RSS (VmHWM) %s\n",
                memfit_format_size(max_plan, a, sizeof(a)),
                memfit_format_size(peak_rss_bytes(), b, sizeof(b)));
    }
done:
    for (unsigned i = 0; imgs && i < o.batch; i++)
        memfit_image_free(&imgs[i]);
    memfit_free(imgs);
    memfit_free(pixels);
    memfit_free(out);
    if (ws.p)
        munmap(ws.p, ws.bytes);
    memfit_vit_close(model);
    memfit_free(paths);
    return rc;
}

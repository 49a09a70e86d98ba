/*
 * `memfit quantize IN OUT --type T`: the arguments, the progress display and
 * the summary around memfit_quantize_file (src/models/quantize.c), which
 * does the conversion and picks each tensor's type.
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "fetch_common.h"

const char cmd_quantize_help[] =
    "Usage: memfit quantize IN OUT --type TYPE [--keep PATTERN]... [--threads N]\n"
    "                       [--double-quant] [--force] [--quiet] [--json]\n"
    "\n"
    "Rewrites a model file (.gguf, .safetensors or .pth with F32/F16/BF16 tensors;\n"
    "quantized GGUF tensors are dequantized, then requantized) with its weights\n"
    "converted to TYPE:\n"
    "  f32, f16, bf16          OUT .safetensors or .gguf\n"
    "  q8_0, q4_0, q4_k, q6_k  OUT .gguf\n"
    "  q4_k_m                  OUT .gguf; Q6_K for the output weight and for attn_v /\n"
    "                          ffn_down of llama.cpp's \"more bits\" layers, Q4_K else\n"
    "  nf4                     OUT .safetensors, bitsandbytes' layout (blocksize 64)\n"
    "1-D tensors and norms stay F32; a tensor whose rows are not a multiple of the\n"
    "type's block gets Q4_0 for Q4_K, Q8_0 for Q6_K (as llama.cpp falls back), or\n"
    "else stays F16. Integer tensors are copied. GGUF metadata is copied\n"
    "(strings only to safetensors) and general.file_type is set; a DINOv2 model\n"
    "gets general.architecture and dinov2.interpolation (the source's default)\n"
    "when it lacks them. The output is\n"
    "written to a temporary file renamed at the end: a failure leaves nothing.\n"
    "\n"
    "Options:\n"
    "  --type TYPE       the target type (required)\n"
    "  --keep PATTERN    keep tensors whose name matches this glob in their type\n"
    "                    (repeatable)\n"
    "  --threads N       worker threads (default: the CPUs this process may use)\n"
    "  --double-quant    nf4: quantize the absmax values too (blocks of 256)\n"
    "  --force           overwrite an existing OUT (never the input)\n"
    "  -q, --quiet       print nothing on success: no progress (a live bar on a\n"
    "                    terminal; otherwise a line every 5 s, MEMFIT_PROGRESS_INTERVAL,\n"
    "                    and one at the end) and no summary; errors still go to\n"
    "                    stderr, and --json still prints its object\n"
    "  --json            print one JSON object instead of the summary\n"
    "                    (docs/quantization.md): {\"input\", \"output\", \"format\",\n"
    "                    \"in_file_bytes\", \"out_file_bytes\", \"in_tensor_bytes\",\n"
    "                    \"out_tensor_bytes\", \"seconds\", \"threads\", \"n_tensors\",\n"
    "                    \"tensors_by_type\": {TYPE: N}, \"tensors\": [{\"name\", \"from\",\n"
    "                    \"to\", \"why\"}]}\n"
    "  -h, --help\n";
/* The display: a bar on a terminal, else a plain line every 5 s
 * (MEMFIT_PROGRESS_INTERVAL) and one at the end. */
struct display {
    bool tty, drawn;
    uint64_t start_ns, last_ns, interval_ns;
    char label[300]; /* "memfit quantize: OUT" */
};

static void show_progress(const struct memfit_quantize_progress *p, void *user)
{
    struct display *d = user;
    uint64_t now = memfit_now_ns();
    bool done = p->tensors_done == p->tensors_total;
    if (d->tty) {
        if (d->drawn && now - d->last_ns < 100000000ull && !done)
            return;
        double secs = (double)(now - d->start_ns) / 1e9;
        char extra[64];
        snprintf(extra, sizeof(extra), "%zu/%zu tensors", p->tensors_done, p->tensors_total);
        cli_progress_draw_bar(p->bytes_done, p->bytes_total,
                              secs > 0 ? (double)p->bytes_done / secs : 0, extra);
    } else {
        if (!done && now - (d->drawn ? d->last_ns : d->start_ns) < d->interval_ns)
            return;
        double secs = (double)(now - d->start_ns) / 1e9;
        char extra[96];
        int n =
            snprintf(extra, sizeof(extra), "%zu/%zu tensors", p->tensors_done, p->tensors_total);
        if (done && n > 0 && (size_t)n < sizeof(extra))
            snprintf(extra + n, sizeof(extra) - (size_t)n, ", done in %.1f s", secs);
        cli_progress_print_line(d->label, p->bytes_done, p->bytes_total,
                                secs > 0 ? (double)p->bytes_done / secs : 0, extra);
    }
    d->drawn = true;
    d->last_ns = now;
}

/* The output types of the tensors (at most 64) and how many tensors each; returns how many types.
 */
static size_t count_types(const struct memfit_quantize_report *r, enum memfit_type seen[64],
                          size_t counts[64])
{
    size_t n_seen = 0;
    for (size_t i = 0; i < r->n_tensors; i++) {
        size_t k = 0;
        while (k < n_seen && seen[k] != r->tensors[i].to)
            k++;
        if (k == n_seen && n_seen < 64) {
            seen[n_seen] = r->tensors[i].to;
            counts[n_seen++] = 0;
        }
        if (k < n_seen)
            counts[k]++;
    }
    return n_seen;
}

static const char *type_name(enum memfit_type type)
{
    const struct memfit_type_info *info = memfit_type_get_info(type);
    return info ? info->name : "?";
}

static uint64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* The --json object (docs/quantization.md). */
static json_t *report_json(const char *in, const char *out, const struct memfit_quantize_report *r)
{
    static const char *const why_key[MEMFIT_QUANTIZE_REASON_COUNT] = {
        [MEMFIT_QUANTIZE_REASON_TARGET] = "target",
        [MEMFIT_QUANTIZE_REASON_SMALL] = "small",
        [MEMFIT_QUANTIZE_REASON_KEEP] = "keep",
        [MEMFIT_QUANTIZE_REASON_BLOCK] = "block",
        [MEMFIT_QUANTIZE_REASON_COPY] = "copy",
        [MEMFIT_QUANTIZE_REASON_MORE_BITS] = "more_bits",
    };
    enum memfit_type seen[64];
    size_t counts[64], n_seen = count_types(r, seen, counts);
    json_t *by_type = json_object(), *tensors = json_array();
    for (size_t k = 0; k < n_seen; k++)
        json_object_set_new(by_type, type_name(seen[k]), json_integer((json_int_t)counts[k]));
    for (size_t i = 0; i < r->n_tensors; i++) {
        const struct memfit_quantize_tensor *t = &r->tensors[i];
        const char *why = (unsigned)t->why < MEMFIT_QUANTIZE_REASON_COUNT && why_key[t->why]
                              ? why_key[t->why]
                              : "?";
        json_array_append_new(tensors,
                              json_pack("{s:s, s:s, s:s, s:s}", "name", t->name, "from",
                                        type_name(t->from), "to", type_name(t->to), "why", why));
    }
    return json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:f, s:I, s:I, s:o, s:o}", "input", in,
                     "output", out, "format", memfit_format_name(r->format), "in_file_bytes",
                     (json_int_t)file_size(in), "out_file_bytes", (json_int_t)file_size(out),
                     "in_tensor_bytes", (json_int_t)r->in_bytes, "out_tensor_bytes",
                     (json_int_t)r->out_bytes, "seconds", r->seconds, "threads",
                     (json_int_t)r->n_threads, "n_tensors", (json_int_t)r->n_tensors,
                     "tensors_by_type", by_type, "tensors", tensors);
}

static void print_summary(const char *out, const struct memfit_quantize_report *r)
{
    static const char *const why_text[MEMFIT_QUANTIZE_REASON_COUNT] = {
        [MEMFIT_QUANTIZE_REASON_TARGET] = "target type",
        [MEMFIT_QUANTIZE_REASON_SMALL] = "1-D or norm, kept F32",
        [MEMFIT_QUANTIZE_REASON_KEEP] = "kept (--keep, or NF4's embeddings/output head)",
        [MEMFIT_QUANTIZE_REASON_BLOCK] =
            "row not a multiple of the block: Q4_K -> Q4_0, Q6_K -> Q8_0, else F16",
        [MEMFIT_QUANTIZE_REASON_COPY] = "not a float type, copied",
        [MEMFIT_QUANTIZE_REASON_MORE_BITS] = "q4_k_m: more bits (Q6_K)",
    };
    printf("%s: %zu tensors -> %s\n", out, r->n_tensors, memfit_format_name(r->format));
    /* Tensors per output type, then per reason. */
    enum memfit_type seen[64];
    size_t counts[64], n_seen = count_types(r, seen, counts);
    for (size_t k = 0; k < n_seen; k++)
        printf("  %-6s %zu tensors\n", type_name(seen[k]), counts[k]);
    for (int why = MEMFIT_QUANTIZE_REASON_SMALL; why < MEMFIT_QUANTIZE_REASON_COUNT; why++) {
        size_t n = 0, shown = 0;
        for (size_t i = 0; i < r->n_tensors; i++)
            n += r->tensors[i].why == (enum memfit_quantize_reason)why;
        if (!n)
            continue;
        printf("  %zu %s:", n, why_text[why]);
        for (size_t i = 0; i < r->n_tensors && shown < 4; i++)
            if (r->tensors[i].why == (enum memfit_quantize_reason)why) {
                printf(" %s", r->tensors[i].name);
                shown++;
            }
        printf("%s\n", n > shown ? " ..." : "");
    }
    double secs = r->seconds;
    printf("  %.1f MB -> %.1f MB (ratio %.2f) in %.2f s (%.0f MB/s, %u threads)\n",
           (double)r->in_bytes / 1e6, (double)r->out_bytes / 1e6,
           r->out_bytes ? (double)r->in_bytes / (double)r->out_bytes : 0.0, secs,
           secs > 0 ? (double)r->in_bytes / 1e6 / secs : 0.0, r->n_threads);
    if (r->n_meta_added)
        printf("note: DINOv2 model: %zu metadata entries added (general.architecture, %s)\n",
               r->n_meta_added, MEMFIT_VIT_META_INTERPOLATION);
    if (r->n_meta_skipped)
        printf("note: %zu metadata entries skipped (%s holds strings only)\n", r->n_meta_skipped,
               memfit_format_name(r->format));
}

enum {
    OPT_QUIET = 'q',
    OPT_TYPE = 1,
    OPT_KEEP,
    OPT_THREADS,
    OPT_DOUBLE_QUANT,
    OPT_FORCE,
    OPT_JSON
};

static const struct cli_option options[] = {
    {"quiet", 'q', CLI_ARG_NONE, OPT_QUIET},
    {"type", 0, CLI_ARG_REQUIRED, OPT_TYPE},
    {"keep", 0, CLI_ARG_REQUIRED, OPT_KEEP},
    {"threads", 0, CLI_ARG_REQUIRED, OPT_THREADS},
    {"double-quant", 0, CLI_ARG_NONE, OPT_DOUBLE_QUANT},
    {"force", 0, CLI_ARG_NONE, OPT_FORCE},
    {"json", 0, CLI_ARG_NONE, OPT_JSON},
    {0},
};

/* Returns -1 to go on, else the exit code (after the help or a usage error). */
static int parse_args(int argc, char **argv, const char **paths, const char **keep,
                      struct memfit_quantize_options *o, bool *quiet, bool *json)
{
    bool have_type = false;
    struct cli_args a;
    cli_args_init(&a, "quantize", cmd_quantize_help, argc, argv, 0, CLI_TABLES(options));
    int id;
    while ((id = cli_args_next(&a)) > 0) {
        long long n;
        switch (id) {
        case OPT_TYPE:
            if (memfit_quantize_target_parse(a.value, &o->target) != MEMFIT_OK)
                return cli_usage("quantize",
                                 "unknown --type '%s' (f32, f16, bf16, q8_0, q4_0, q4_k, "
                                 "q6_k, q4_k_m, nf4)",
                                 a.value);
            have_type = true;
            break;
        case OPT_KEEP:
            keep[o->n_keep++] = a.value;
            break;
        case OPT_THREADS:
            if (!cli_opt_int("quantize", a.name, a.value, 1, 256, &n))
                return CLI_EXIT_USAGE;
            o->n_threads = (unsigned)n;
            break;
        case OPT_DOUBLE_QUANT:
            o->double_quant = true;
            break;
        case OPT_FORCE:
            o->overwrite = true;
            break;
        case OPT_JSON:
            *json = true;
            break;
        default: /* OPT_QUIET */
            *quiet = true;
            break;
        }
    }
    if (id < 0)
        return a.status;
    if (!cli_args_at_most(&a, 2))
        return CLI_EXIT_USAGE;
    if (a.n_operands < 2)
        return cli_usage("quantize", "needs IN and OUT");
    paths[0] = a.operands[0];
    paths[1] = a.operands[1];
    if (!have_type)
        return cli_usage("quantize", "needs --type");
    return -1;
}

int cmd_quantize(int argc, char **argv)
{
    struct memfit_quantize_options o;
    memfit_quantize_options_default(&o);
    const char *paths[2] = {NULL, NULL};
    const char **keep = memfit_calloc((size_t)argc, sizeof(*keep));
    if (!keep)
        return cli_fail_status(MEMFIT_E_NOMEM);
    o.keep = keep;
    bool quiet = false, json = false;
    int rc = parse_args(argc, argv, paths, keep, &o, &quiet, &json);
    if (rc >= 0) {
        memfit_free(keep);
        return rc;
    }
    rc = CLI_EXIT_OK;
    struct display d = {.tty = cli_isatty(2),
                        .start_ns = memfit_now_ns(),
                        .interval_ns = cli_progress_interval_ns()};
    snprintf(d.label, sizeof(d.label), "memfit quantize: %.200s", paths[1]);
    if (!quiet) {
        o.progress = show_progress;
        o.progress_user = &d;
    }
    struct cli_progress signals; /* Ctrl-C cancels: the temporary file is removed */
    o.cancel = cli_cancel_on_signals(&signals);
    struct memfit_quantize_report report;
    enum memfit_status st = memfit_quantize_file(paths[0], paths[1], &o, &report);
    cli_fetch_done(&signals);
    if (d.tty && d.drawn)
        fputc('\n', stderr);
    if (st == MEMFIT_OK) {
        if (json)
            rc = cli_json_print("quantize", report_json(paths[0], paths[1], &report));
        else if (!quiet)
            print_summary(paths[1], &report);
        memfit_quantize_report_free(&report);
    } else if (st == MEMFIT_E_INVALID) { /* an option that does not fit the output */
        rc = cli_usage("quantize", "%s", memfit_last_error());
    } else if (st == MEMFIT_E_EXISTS) {
        rc = cli_fail("%s: use --force to overwrite it", memfit_last_error());
    } else {
        rc = cli_fail_status(st);
    }
    memfit_free(keep);
    return rc;
}

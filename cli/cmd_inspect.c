/*
 * `memfit inspect FILE`: what a GGUF, safetensors or .pth file holds —
 * format, metadata, the tensor table, totals per type, the parameter count,
 * and what the weights would take in memory mapped as they are or converted
 * to F16, Q8_0, Q4_K_M, Q4_0 or NF4. Opening is O(metadata): no tensor byte
 * is read.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

const char cmd_inspect_help[] =
    "Usage: memfit inspect FILE [--json] [--all]\n"
    "\n"
    "Shows what a model file holds: its format, metadata (long arrays are\n"
    "summarized by their first values and length), the tensor table (name,\n"
    "type, shape outermost-first, bytes), totals per type, the parameter\n"
    "count, and a memory table: the file mapped as it is, and what the\n"
    "weights would cost as F16, Q8_0, Q4_K_M, Q4_0 and NF4.\n"
    "\n"
    "Memory estimates apply the rule `memfit quantize` writes with: 1-D\n"
    "tensors and norms stay F32, integer tensors are kept; Q4_K_M is Q6_K for\n"
    "the output weight and for attn_v/ffn_down (v_proj/down_proj) of\n"
    "llama.cpp's \"more bits\" layers, Q4_K for the rest; a row not a multiple\n"
    "of the type's block gets Q4_0 for Q4_K, Q8_0 for Q6_K, else F16. NF4 keeps\n"
    "embeddings and the output head in float; the rest is 64-element blocks\n"
    "with an fp32 absmax (4.5 bits/weight).\n"
    "\n"
    "Options:\n"
    "  --json   print one JSON object instead of tables\n"
    "  --all    list every metadata array element and every tensor\n"
    "  -h, --help\n";

#define MAX_ROWS 40 /* tensors listed without --all */

enum target { T_AS_IS, T_F16, T_Q8_0, T_Q4_K_M, T_Q4_0, T_NF4, T_COUNT };
static const char *const target_names[T_COUNT] = {"mapped as-is", "F16",  "Q8_0",
                                                  "Q4_K_M",       "Q4_0", "NF4"};

/* What each column converts to: memfit_quantize_tensor_bytes applies the
 * rule `memfit quantize` writes with. */
static const enum memfit_quantize_target column_target[T_COUNT] = {
    [T_F16] = MEMFIT_QUANTIZE_F16,       [T_Q8_0] = MEMFIT_QUANTIZE_Q8_0,
    [T_Q4_K_M] = MEMFIT_QUANTIZE_Q4_K_M, [T_Q4_0] = MEMFIT_QUANTIZE_Q4_0,
    [T_NF4] = MEMFIT_QUANTIZE_NF4,
};

static uint64_t estimate(const struct memfit_tensor_info *t, enum target target, uint32_t n_layers)
{
    if (target == T_AS_IS)
        return t->n_bytes;
    return memfit_quantize_tensor_bytes(t, column_target[target], n_layers);
}

static void json_string(const char *s, size_t n)
{
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

/* Prints a scalar or string (text: strings quoted and cut at 60 bytes unless json). */
static void print_scalar(const struct memfit_meta_value *v, bool json)
{
    switch (v->type) {
    case MEMFIT_META_STRING:
        if (json) {
            json_string(v->v.str.data, v->v.str.len);
        } else {
            size_t n = v->v.str.len > 60 ? 60 : v->v.str.len;
            putchar('"');
            for (size_t i = 0; i < n; i++) {
                char c = v->v.str.data[i];
                putchar(c == '\n' ? ' ' : c);
            }
            printf("\"%s", v->v.str.len > 60 ? "..." : "");
        }
        break;
    case MEMFIT_META_F32:
    case MEMFIT_META_F64:
        printf("%.9g", v->v.f);
        break;
    case MEMFIT_META_BOOL:
        printf("%s", v->v.u ? "true" : "false");
        break;
    case MEMFIT_META_I8:
    case MEMFIT_META_I16:
    case MEMFIT_META_I32:
    case MEMFIT_META_I64:
        printf("%" PRId64, v->v.i);
        break;
    case MEMFIT_META_ARRAY:
        printf(json ? "\"array of %" PRIu64 "\"" : "[array of %" PRIu64 "]", v->v.array.count);
        break;
    default:
        printf("%" PRIu64, v->v.u);
        break;
    }
}

static void print_value(const struct memfit_meta_value *v, bool json, bool all)
{
    if (v->type != MEMFIT_META_ARRAY) {
        print_scalar(v, json);
        return;
    }
    uint64_t shown = all ? v->v.array.count : 5, cursor = 0, i = 0;
    struct memfit_meta_value e;
    if (json)
        printf("{\"type\": \"%s\", \"length\": %" PRIu64 ", \"values\": [",
               memfit_meta_type_name(v->v.array.elem_type), v->v.array.count);
    else
        printf("%s[%" PRIu64 "] [", memfit_meta_type_name(v->v.array.elem_type), v->v.array.count);
    while (i < shown && memfit_meta_array_next(v, &cursor, &e)) {
        printf(i ? ", " : "");
        print_scalar(&e, json);
        i++;
    }
    if (json)
        printf("]}");
    else
        printf("%s]", v->v.array.count > shown ? ", ..." : "");
}

static void shape_text(const struct memfit_tensor_info *t, char *buf, size_t size)
{
    size_t n = (size_t)snprintf(buf, size, "[");
    for (uint32_t d = 0; d < t->n_dims && n < size; d++)
        n += (size_t)snprintf(buf + n, size - n, "%s%" PRId64, d ? ", " : "", t->shape[d]);
    if (n < size)
        snprintf(buf + n, size - n, "]");
}

struct type_total {
    enum memfit_type type;
    uint64_t count, elements, bytes;
};

enum { OPT_JSON = 1, OPT_ALL };

static const struct cli_option options[] = {
    {"json", 0, CLI_ARG_NONE, OPT_JSON},
    {"all", 0, CLI_ARG_NONE, OPT_ALL},
    {0},
};

int cmd_inspect(int argc, char **argv)
{
    bool json = false, all = false;
    struct cli_args a;
    cli_args_init(&a, "inspect", cmd_inspect_help, argc, argv, 0, CLI_TABLES(options));
    int id;
    while ((id = cli_args_next(&a)) > 0) {
        if (id == OPT_JSON)
            json = true;
        else
            all = true;
    }
    if (id < 0)
        return a.status;
    if (a.n_operands > 1)
        return cli_usage("inspect", "one FILE only ('%s' is extra)", a.operands[1]);
    const char *path = cli_args_operand(&a, 0);
    if (!path)
        return cli_usage("inspect", "missing FILE");
    memfit_tensors *set;
    enum memfit_status st = memfit_tensors_open(path, NULL, &set);
    if (st != MEMFIT_OK)
        return cli_fail_status(st);

    size_t n = memfit_tensors_count(set), n_meta = memfit_tensors_meta_count(set);
    struct type_total totals[64];
    size_t n_totals = 0;
    uint64_t params = 0, est[T_COUNT] = {0};
    struct memfit_tensor_info t;
    uint32_t n_layers = memfit_quantize_layer_count(set);
    for (size_t i = 0; i < n; i++) {
        memfit_tensors_get(set, i, &t);
        params += t.n_elements;
        for (int k = 0; k < T_COUNT; k++)
            est[k] += estimate(&t, (enum target)k, n_layers);
        size_t j = 0;
        while (j < n_totals && totals[j].type != t.type)
            j++;
        if (j == n_totals && n_totals < 64)
            totals[n_totals++] = (struct type_total){t.type, 0, 0, 0};
        if (j < n_totals) {
            totals[j].count++;
            totals[j].elements += t.n_elements;
            totals[j].bytes += t.n_bytes;
        }
    }
    uint64_t file_bytes = memfit_tensors_file_bytes(set);
    char sz[32], sh[160];

    if (json) {
        printf("{\"file\": ");
        json_string(path, strlen(path));
        printf(", \"format\": \"%s\", \"version\": %u, \"file_bytes\": %" PRIu64
               ", \"parameters\": %" PRIu64 ",\n \"metadata\": {",
               memfit_format_name(memfit_tensors_format(set)), memfit_tensors_version(set),
               file_bytes, params);
        for (size_t i = 0; i < n_meta; i++) {
            const char *key;
            struct memfit_meta_value v;
            memfit_tensors_meta_get(set, i, &key, &v);
            printf("%s\n  ", i ? "," : "");
            json_string(key, strlen(key));
            printf(": ");
            print_value(&v, true, all);
        }
        printf("},\n \"tensors\": [");
        for (size_t i = 0; i < n; i++) {
            memfit_tensors_get(set, i, &t);
            shape_text(&t, sh, sizeof(sh));
            printf("%s\n  {\"name\": ", i ? "," : "");
            json_string(t.name, strlen(t.name));
            printf(", \"type\": \"%s\", \"shape\": %s, \"bytes\": %" PRIu64 ", \"offset\": %" PRIu64
                   "}",
                   memfit_type_get_info(t.type)->name, sh, t.n_bytes, t.file_offset);
        }
        printf("],\n \"totals\": [");
        for (size_t j = 0; j < n_totals; j++)
            printf("%s{\"type\": \"%s\", \"tensors\": %" PRIu64 ", \"elements\": %" PRIu64
                   ", \"bytes\": %" PRIu64 "}",
                   j ? ", " : "", memfit_type_get_info(totals[j].type)->name, totals[j].count,
                   totals[j].elements, totals[j].bytes);
        printf("],\n \"memory\": {\"file\": %" PRIu64, file_bytes);
        for (int k = 0; k < T_COUNT; k++)
            printf(", \"%s\": %" PRIu64, k == T_AS_IS ? "weights" : target_names[k], est[k]);
        printf("}}\n");
        memfit_tensors_close(set);
        return CLI_EXIT_OK;
    }

    printf("file:       %s\n", path);
    if (memfit_tensors_version(set))
        printf("format:     %s v%u\n", memfit_format_name(memfit_tensors_format(set)),
               memfit_tensors_version(set));
    else
        printf("format:     %s\n", memfit_format_name(memfit_tensors_format(set)));
    printf("size:       %s (%" PRIu64 " bytes)\n", memfit_format_size(file_bytes, sz, sizeof(sz)),
           file_bytes);
    printf("tensors:    %zu\n", n);
    printf("parameters: %" PRIu64 "\n", params);
    if (n_meta) {
        printf("\nmetadata (%zu):\n", n_meta);
        for (size_t i = 0; i < n_meta; i++) {
            const char *key;
            struct memfit_meta_value v;
            memfit_tensors_meta_get(set, i, &key, &v);
            printf("  %-40s %-7s ", key, memfit_meta_type_name(v.type));
            print_value(&v, false, all);
            putchar('\n');
        }
    }
    printf("\n%-48s %-7s %-24s %12s\n", "tensor", "type", "shape", "bytes");
    for (size_t i = 0; i < n; i++) {
        if (!all && i == MAX_ROWS) {
            printf("  ... %zu more (--all lists them)\n", n - MAX_ROWS);
            break;
        }
        memfit_tensors_get(set, i, &t);
        shape_text(&t, sh, sizeof(sh));
        printf("%-48s %-7s %-24s %12" PRIu64 "\n", t.name, memfit_type_get_info(t.type)->name, sh,
               t.n_bytes);
    }
    printf("\n%-8s %8s %16s %14s\n", "type", "tensors", "elements", "bytes");
    for (size_t j = 0; j < n_totals; j++)
        printf("%-8s %8" PRIu64 " %16" PRIu64 " %14s\n", memfit_type_get_info(totals[j].type)->name,
               totals[j].count, totals[j].elements,
               memfit_format_size(totals[j].bytes, sz, sizeof(sz)));
    printf("\nmemory (weights, as memfit quantize would write them):\n");
    printf("  %-16s %14s\n", "file (mapped)", memfit_format_size(file_bytes, sz, sizeof(sz)));
    for (int k = 0; k < T_COUNT; k++)
        printf("  %-16s %14s\n", target_names[k], memfit_format_size(est[k], sz, sizeof(sz)));
    memfit_tensors_close(set);
    return CLI_EXIT_OK;
}

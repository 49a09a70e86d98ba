/*
 * `memfit convert IN OUT`: copies the tensors (and what metadata the target
 * can hold) of a .pth, safetensors or GGUF file into a GGUF or safetensors
 * file chosen by OUT's extension. Names are kept, or renamed by a file of
 * "old new" lines. Data is streamed from the input's mapping, so memory
 * stays small whatever the model size.
 *
 * `memfit convert HF_DIR OUT.gguf` assembles a Qwen2/LLaMA GGUF from a
 * Hugging Face directory instead (memfit_llm_convert_hf).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "cli.h"

const char cmd_convert_help[] =
    "Usage: memfit convert IN OUT [--rename FILE]\n"
    "       memfit convert HF_DIR OUT.gguf [--type TYPE] [--no-tokenizer] [--threads N]\n"
    "\n"
    "Converts a model file (.pth, .safetensors or .gguf) to GGUF or safetensors,\n"
    "chosen by OUT's extension (.gguf or .safetensors). Tensor names, types\n"
    "and shapes are kept; no type is converted. GGUF metadata goes to GGUF as\n"
    "it is; only string metadata can go to safetensors (others are skipped with\n"
    "a note). Quantized tensors cannot be stored in safetensors. A DINOv2 model\n"
    "gets general.architecture = \"dinov2\" and dinov2.interpolation (the\n"
    "source's default) when it lacks them, so the output behaves the same.\n"
    "\n"
    "With a directory, assembles the GGUF the LLM engine runs from a Hugging Face\n"
    "Qwen2 or LLaMA model: config.json, model.safetensors (or the shards\n"
    "model.safetensors.index.json names), tokenizer.json and tokenizer_config.json.\n"
    "Tensors get llama.cpp's names (LLaMA's q/k rows permuted as its converter\n"
    "does) and keep their types unless --type is given. The output is written to\n"
    "a temporary file renamed at the end: a failure leaves nothing.\n"
    "\n"
    "Options:\n"
    "  --rename FILE   lines \"old new\" rename tensors (# comments, blank lines ok)\n"
    "  --type TYPE     HF_DIR: the 2-D weights in f32, f16, bf16, q8_0, q4_0, q4_k or\n"
    "                  q6_k (rows that do not fit the block stay f16; 1-D tensors f32)\n"
    "  --no-tokenizer  HF_DIR: no tokenizer metadata (the model runs on token ids)\n"
    "  --threads N     HF_DIR: threads converting types (default: the CPUs usable)\n"
    "  -h, --help\n";

struct rename {
    char *from, *to;
};

static void free_renames(struct rename *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        memfit_free(r[i].from);
        memfit_free(r[i].to);
    }
    memfit_free(r);
}

static int load_renames(const char *path, struct rename **out, size_t *out_n)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return cli_fail("%s: cannot open the rename file", path);
    struct rename *r = NULL;
    size_t n = 0, cap = 0, line_no = 0;
    char line[4096];
    while (fgets(line, sizeof(line), f)) {
        line_no++;
        char *save = NULL;
        char *from = strtok_r(line, " \t\r\n", &save);
        if (!from || from[0] == '#')
            continue;
        char *to = strtok_r(NULL, " \t\r\n", &save);
        if (!to || strtok_r(NULL, " \t\r\n", &save)) {
            fclose(f);
            free_renames(r, n);
            return cli_fail("%s:%zu: expected \"old new\"", path, line_no);
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            struct rename *grown = memfit_realloc(r, cap * sizeof(*r));
            if (!grown) {
                fclose(f);
                free_renames(r, n);
                return cli_fail_status(MEMFIT_E_NOMEM);
            }
            r = grown;
        }
        r[n].from = memfit_strdup(from);
        r[n].to = memfit_strdup(to);
        n++;
        if (!r[n - 1].from || !r[n - 1].to) {
            fclose(f);
            free_renames(r, n);
            return cli_fail_status(MEMFIT_E_NOMEM);
        }
    }
    fclose(f);
    *out = r;
    *out_n = n;
    return CLI_EXIT_OK;
}

static enum memfit_status convert(memfit_tensors *in, memfit_writer *w, enum memfit_format fmt,
                                  const struct rename *renames, size_t n_renames, size_t *skipped,
                                  size_t *added)
{
    enum memfit_status st = memfit_rewrite_copy_meta(in, w, fmt, skipped);
    if (st == MEMFIT_OK)
        st = memfit_rewrite_add_vit_meta(in, w, added);
    if (st != MEMFIT_OK)
        return st;
    size_t n = memfit_tensors_count(in);
    struct memfit_tensor_info t;
    for (size_t i = 0; i < n; i++) {
        memfit_tensors_get(in, i, &t);
        const char *name = t.name;
        for (size_t r = 0; r < n_renames; r++)
            if (strcmp(renames[r].from, name) == 0)
                name = renames[r].to;
        if ((st = memfit_writer_add_tensor(w, name, t.type, t.n_dims, t.shape)) != MEMFIT_OK)
            return st;
    }
    for (size_t i = 0; i < n; i++) {
        memfit_tensors_get(in, i, &t);
        st = memfit_rewrite_write_raw(w, i, t.data, t.n_bytes, -1, t.file_offset);
        if (st != MEMFIT_OK)
            return st;
    }
    return memfit_writer_commit(w);
}

static int parse_llm_type(const char *text, enum memfit_type *out)
{
    static const char *const ok[] = {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_k", "q6_k"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (strcasecmp(text, ok[i]) == 0 && memfit_type_from_name(ok[i], out) == MEMFIT_OK)
            return CLI_EXIT_OK;
    return cli_usage("convert", "unknown --type '%s' (f32, f16, bf16, q8_0, q4_0, q4_k, q6_k)",
                     text);
}

static int convert_hf(const char *dir, const char *out_path,
                      const struct memfit_llm_convert_options *o)
{
    if (memfit_format_from_path(out_path) != MEMFIT_FORMAT_GGUF)
        return cli_usage("convert", "a Hugging Face directory converts to OUT.gguf: '%s'",
                         out_path);
    uint64_t t0 = memfit_now_ns();
    enum memfit_status st = memfit_llm_convert_hf(dir, out_path, o);
    if (st != MEMFIT_OK)
        return cli_fail_status(st);
    memfit_tensors *set = NULL;
    if (memfit_tensors_open(out_path, NULL, &set) == MEMFIT_OK) {
        struct memfit_llm_info info;
        bool llm = memfit_llm_detect(set, &info) == MEMFIT_OK;
        struct memfit_meta_value v;
        bool tok = memfit_tensors_meta_find(set, "tokenizer.ggml.tokens", &v) == MEMFIT_OK;
        memfit_clear_error();
        printf("%s: %s, %zu tensors, %.1f MB in %.2f s%s\n", out_path, llm ? info.arch : "?",
               memfit_tensors_count(set), (double)memfit_tensors_file_bytes(set) / 1e6,
               (double)(memfit_now_ns() - t0) / 1e9, tok ? "" : " (no tokenizer)");
        memfit_tensors_close(set);
    }
    return CLI_EXIT_OK;
}

enum { OPT_RENAME = 1, OPT_TYPE, OPT_THREADS, OPT_NO_TOKENIZER };

static const struct cli_option options[] = {
    {"rename", 0, CLI_ARG_REQUIRED, OPT_RENAME},
    {"type", 0, CLI_ARG_REQUIRED, OPT_TYPE},
    {"threads", 0, CLI_ARG_REQUIRED, OPT_THREADS},
    {"no-tokenizer", 0, CLI_ARG_NONE, OPT_NO_TOKENIZER},
    {0},
};

int cmd_convert(int argc, char **argv)
{
    const char *rename_path = NULL;
    struct memfit_llm_convert_options llm;
    memfit_llm_convert_options_default(&llm);
    bool llm_options = false;
    struct cli_args a;
    cli_args_init(&a, "convert", cmd_convert_help, argc, argv, 0, CLI_TABLES(options));
    int id;
    while ((id = cli_args_next(&a)) > 0) {
        long long n;
        int rc;
        switch (id) {
        case OPT_RENAME:
            rename_path = a.value;
            break;
        case OPT_TYPE:
            if ((rc = parse_llm_type(a.value, &llm.type)) != CLI_EXIT_OK)
                return rc;
            llm.convert_types = llm_options = true;
            break;
        case OPT_THREADS:
            if (!cli_opt_int("convert", a.name, a.value, 1, 1024, &n))
                return CLI_EXIT_USAGE;
            llm.n_threads = (unsigned)n;
            llm_options = true;
            break;
        default: /* OPT_NO_TOKENIZER */
            llm.tokenizer = false;
            llm_options = true;
            break;
        }
    }
    if (id < 0)
        return a.status;
    if (!cli_args_at_most(&a, 2))
        return CLI_EXIT_USAGE;
    const char *in_path = cli_args_operand(&a, 0);
    const char *out_path = cli_args_operand(&a, 1);
    if (!in_path || !out_path)
        return cli_usage("convert", "needs IN and OUT");
    struct stat in_st;
    if (stat(in_path, &in_st) == 0 && S_ISDIR(in_st.st_mode)) {
        if (rename_path)
            return cli_usage("convert", "--rename applies to a model file, not a directory");
        return convert_hf(in_path, out_path, &llm);
    }
    if (llm_options)
        return cli_usage("convert", "--type, --threads and --no-tokenizer apply to a Hugging "
                                    "Face directory (use memfit quantize for a file)");
    enum memfit_format fmt = memfit_format_from_path(out_path);
    if (fmt != MEMFIT_FORMAT_GGUF && fmt != MEMFIT_FORMAT_SAFETENSORS)
        return cli_usage("convert", "OUT must end in .gguf or .safetensors: '%s'", out_path);
    struct rename *renames = NULL;
    size_t n_renames = 0;
    if (rename_path) {
        int rc = load_renames(rename_path, &renames, &n_renames);
        if (rc != CLI_EXIT_OK)
            return rc;
    }
    memfit_tensors *in = NULL;
    memfit_writer *w = NULL;
    size_t skipped = 0, added = 0;
    enum memfit_status st = memfit_tensors_open(in_path, NULL, &in);
    if (st == MEMFIT_OK)
        st = memfit_writer_create(out_path, fmt, &w);
    if (st == MEMFIT_OK)
        st = convert(in, w, fmt, renames, n_renames, &skipped, &added);
    int rc = st == MEMFIT_OK ? CLI_EXIT_OK : cli_fail_status(st);
    if (st == MEMFIT_OK) {
        printf("%s: %zu tensors written (%s)\n", out_path, memfit_tensors_count(in),
               memfit_format_name(fmt));
        if (added)
            printf("note: DINOv2 model: %zu metadata entries added (general.architecture, %s)\n",
                   added, MEMFIT_VIT_META_INTERPOLATION);
        if (skipped)
            printf("note: %zu metadata entries skipped (%s holds strings only)\n", skipped,
                   memfit_format_name(fmt));
    }
    memfit_writer_destroy(w);
    memfit_tensors_close(in);
    free_renames(renames, n_renames);
    return rc;
}

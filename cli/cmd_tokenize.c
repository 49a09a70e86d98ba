/*
 * `memfit tokenize MODEL.gguf TEXT...`: the token ids and pieces a GGUF
 * model's tokenizer gives a text (what a prompt costs in context), a file
 * line by line (the parity test against Hugging Face's tokenizers), ids back
 * to text, and `--from-json` to turn a Hugging Face tokenizer.json into a
 * metadata-only GGUF that the rest of memfit reads like a model's.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

const char cmd_tokenize_help[] =
    "Usage: memfit tokenize MODEL.gguf [TEXT...] [options]\n"
    "       memfit tokenize --from-json tokenizer.json [--config tokenizer_config.json]\n"
    "                       --write-gguf OUT.gguf\n"
    "\n"
    "Encodes TEXT (the arguments joined by spaces) with the tokenizer stored in\n"
    "MODEL.gguf's tokenizer.ggml.* metadata and prints each token id with its\n"
    "piece (the bytes it stands for; special tokens in their text form).\n"
    "BOS/EOS are added as the model asks, and text such as <|im_start|> becomes\n"
    "its special token.\n"
    "\n"
    "Options:\n"
    "  --ids-only      print only the ids, space-separated, on one line\n"
    "  --json          print {\"n_tokens\", \"ids\": [...], \"pieces\": [...]} (--lines:\n"
    "                  one object per line, with \"decoded\" and \"round_trip\");\n"
    "                  --decode: {\"n_tokens\", \"text\"}; --info: {\"kind\", \"model\",\n"
    "                  \"pre\", \"n_vocab\", \"bos\", \"eos\", \"eot\", \"pad\", \"unk\",\n"
    "                  \"add_bos\", \"add_eos\", \"chat_template\" (true/false)}\n"
    "  --no-special    plain text: add no BOS/EOS and read special-token text as text\n"
    "  --no-add        add no BOS/EOS (special-token text still parsed)\n"
    "  --file FILE     encode the contents of FILE instead of TEXT\n"
    "  --lines FILE    encode each line of FILE on its own (without its newline)\n"
    "  --nul           with --lines: records end with a NUL byte, not a newline\n"
    "  --decode        TEXT is a list of ids: print the text they decode to\n"
    "  --info          print the tokenizer's kind, pre-tokenizer, size and ids\n"
    "  --from-json F   convert a Hugging Face tokenizer.json (BPE: byte-level or\n"
    "                  byte-fallback SentencePiece style) ...\n"
    "  --config F      ... with its tokenizer_config.json (BOS/EOS, add_bos_token,\n"
    "                  chat_template) ...\n"
    "  --write-gguf O  ... into the GGUF O holding only that metadata (written to\n"
    "                  a temporary file and renamed into place)\n"
    "  -h, --help\n";

/* Writes bytes as a JSON string; bytes that are not UTF-8 become U+FFFD. */
static void put_json_string(FILE *f, const char *s, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            fprintf(f, "\\%c", c);
            i++;
            continue;
        }
        if (c < 0x20 || c == 0x7f) {
            fprintf(f, "\\u%04x", c);
            i++;
            continue;
        }
        if (c < 0x80) {
            fputc(c, f);
            i++;
            continue;
        }
        size_t k = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
        bool ok = k > 0 && c <= 0xF4 && i + k <= n;
        for (size_t j = 1; ok && j < k; j++)
            ok = ((unsigned char)s[i + j] & 0xC0) == 0x80;
        if (ok) {
            fwrite(s + i, 1, k, f);
            i += k;
        } else {
            fputs("\\ufffd", f);
            i++;
        }
    }
    fputc('"', f);
}

struct opts {
    bool ids_only, json, add, parse, decode, info, nul;
};

static int print_ids(const memfit_tokenizer *tok, const int32_t *ids, size_t n,
                     const struct opts *o, const char *text, size_t len, bool as_line)
{
    if (o->ids_only) {
        for (size_t i = 0; i < n; i++)
            printf("%s%d", i ? " " : "", ids[i]);
        putchar('\n');
        return CLI_EXIT_OK;
    }
    if (o->json) {
        printf("{\"n_tokens\": %zu, \"ids\": [", n);
        for (size_t i = 0; i < n; i++)
            printf("%s%d", i ? ", " : "", ids[i]);
        printf("], \"pieces\": [");
        for (size_t i = 0; i < n; i++) {
            const char *p;
            size_t k;
            (void)memfit_tokenizer_piece(tok, ids[i], true, &p, &k);
            if (i)
                fputs(", ", stdout);
            put_json_string(stdout, p, k);
        }
        putchar(']');
        if (as_line) {
            char *dec;
            size_t dlen;
            enum memfit_status st = memfit_tokenizer_decode(tok, ids, n, true, &dec, &dlen);
            if (st != MEMFIT_OK)
                return cli_fail_status(st);
            fputs(", \"decoded\": ", stdout);
            put_json_string(stdout, dec, dlen);
            printf(", \"round_trip\": %s",
                   dlen == len && memcmp(dec, text, len) == 0 ? "true" : "false");
            memfit_free(dec);
        }
        puts("}");
        return CLI_EXIT_OK;
    }
    for (size_t i = 0; i < n; i++) {
        const char *p;
        size_t k;
        (void)memfit_tokenizer_piece(tok, ids[i], true, &p, &k);
        printf("%8d  ", ids[i]);
        put_json_string(stdout, p, k);
        putchar('\n');
    }
    printf("%zu tokens\n", n);
    return CLI_EXIT_OK;
}

static int encode_print(const memfit_tokenizer *tok, const char *text, size_t len,
                        const struct opts *o, bool as_line)
{
    int32_t *ids;
    size_t n;
    enum memfit_status st = memfit_tokenizer_encode(tok, text, len, o->add, o->parse, &ids, &n);
    if (st != MEMFIT_OK)
        return cli_fail_status(st);
    int rc = print_ids(tok, ids, n, o, text, len, as_line);
    memfit_free(ids);
    return rc;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = memfit_malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap)
            break;
        char *nb = memfit_realloc(buf, cap * 2);
        if (!nb) {
            memfit_free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    bool err = ferror(f);
    fclose(f);
    if (err) {
        memfit_free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

static int from_json(const char *json, const char *config, const char *out)
{
    memfit_writer *w;
    enum memfit_status st = memfit_writer_create(out, MEMFIT_FORMAT_GGUF, &w);
    if (st != MEMFIT_OK)
        return cli_fail_status(st);
    st = memfit_tokenizer_json_to_gguf(json, config, w);
    if (st == MEMFIT_OK)
        st = memfit_writer_commit(w);
    memfit_writer_destroy(w);
    if (st != MEMFIT_OK)
        return cli_fail_status(st);
    printf("wrote %s\n", out);
    return CLI_EXIT_OK;
}

static int decode_args(const memfit_tokenizer *tok, int n_text, char **text, bool json)
{
    int32_t *ids = memfit_malloc(sizeof(*ids) * (size_t)(n_text > 0 ? n_text : 1));
    if (!ids)
        return cli_fail_status(MEMFIT_E_NOMEM);
    size_t n = 0;
    for (int i = 0; i < n_text; i++) {
        char *save = NULL, *copy = text[i];
        for (char *t = strtok_r(copy, " ,[]", &save); t; t = strtok_r(NULL, " ,[]", &save)) {
            long long v;
            if (memfit_parse_int(t, 0, INT32_MAX, &v) != MEMFIT_OK) {
                memfit_free(ids);
                return cli_usage("tokenize", "--decode: \"%s\" is not a token id", t);
            }
            if (n == (size_t)n_text) { /* more ids than arguments: grow */
                int32_t *more = memfit_realloc(ids, sizeof(*ids) * n * 2);
                if (!more) {
                    memfit_free(ids);
                    return cli_fail_status(MEMFIT_E_NOMEM);
                }
                ids = more;
                n_text = (int)(n * 2);
            }
            ids[n++] = (int32_t)v;
        }
    }
    char *out;
    size_t len;
    enum memfit_status st = memfit_tokenizer_decode(tok, ids, n, true, &out, &len);
    memfit_free(ids);
    if (st != MEMFIT_OK)
        return cli_fail_status(st);
    int rc = CLI_EXIT_OK;
    if (json) {
        rc = cli_json_print("tokenize", json_pack("{s:I, s:o}", "n_tokens", (json_int_t)n, "text",
                                                  cli_json_text(out, len)));
    } else {
        fwrite(out, 1, len, stdout);
        putchar('\n');
    }
    memfit_free(out);
    return rc;
}

static int print_info(const memfit_tokenizer *tok, bool json)
{
    struct memfit_tokenizer_info in;
    memfit_tokenizer_get_info(tok, &in);
    const char *kind = in.kind == MEMFIT_TOKENIZER_BPE ? "byte-level BPE" : "SentencePiece BPE";
    if (json)
        return cli_json_print(
            "tokenize",
            json_pack("{s:s, s:s?, s:s?, s:I, s:i, s:i, s:i, s:i, s:i, s:b, s:b, s:b}", "kind",
                      kind, "model", in.model, "pre", in.pre, "n_vocab", (json_int_t)in.n_vocab,
                      "bos", (int)in.bos, "eos", (int)in.eos, "eot", (int)in.eot, "pad",
                      (int)in.pad, "unk", (int)in.unk, "add_bos", in.add_bos, "add_eos", in.add_eos,
                      "chat_template", memfit_tokenizer_chat_template(tok) != NULL));
    printf("kind: %s\nmodel: %s\npre: %s\nn_vocab: %u\nbos: %d\neos: %d\neot: %d\npad: %d\n"
           "unk: %d\nadd_bos: %s\nadd_eos: %s\nchat_template: %s\n",
           kind, in.model, in.pre, in.n_vocab, in.bos, in.eos, in.eot, in.pad, in.unk,
           in.add_bos ? "yes" : "no", in.add_eos ? "yes" : "no",
           memfit_tokenizer_chat_template(tok) ? "yes" : "no");
    return CLI_EXIT_OK;
}

static int run(const char *model, int n_text, char **text, const struct opts *o, const char *file,
               const char *lines)
{
    memfit_tensors *set;
    enum memfit_status st = memfit_tensors_open(model, NULL, &set);
    if (st != MEMFIT_OK)
        return cli_fail_status(st);
    memfit_tokenizer *tok;
    st = memfit_tokenizer_from_gguf(set, &tok);
    memfit_tensors_close(set);
    if (st != MEMFIT_OK)
        return cli_fail_status(st);
    int rc = CLI_EXIT_OK;
    if (o->info) {
        rc = print_info(tok, o->json);
    } else if (o->decode) {
        rc = decode_args(tok, n_text, text, o->json);
    } else if (file || lines) {
        size_t len;
        char *buf = read_file(file ? file : lines, &len);
        if (!buf) {
            rc = cli_fail("%s: cannot read", file ? file : lines);
        } else if (file) {
            rc = encode_print(tok, buf, len, o, false);
        } else {
            for (size_t p = 0; p < len && rc == CLI_EXIT_OK;) {
                const char *nl = memchr(buf + p, o->nul ? '\0' : '\n', len - p);
                size_t end = nl ? (size_t)(nl - buf) : len;
                rc = encode_print(tok, buf + p, end - p, o, true);
                p = end + 1;
            }
        }
        memfit_free(buf);
    } else {
        size_t len = 0;
        for (int i = 0; i < n_text; i++)
            len += strlen(text[i]) + 1;
        char *joined = memfit_malloc(len + 1);
        if (!joined) {
            rc = cli_fail_status(MEMFIT_E_NOMEM);
        } else {
            size_t n = 0;
            for (int i = 0; i < n_text; i++) {
                if (i)
                    joined[n++] = ' ';
                memcpy(joined + n, text[i], strlen(text[i]));
                n += strlen(text[i]);
            }
            rc = encode_print(tok, joined, n, o, false);
            memfit_free(joined);
        }
    }
    memfit_tokenizer_free(tok);
    return rc;
}

enum {
    OPT_IDS_ONLY = 1,
    OPT_JSON,
    OPT_NO_SPECIAL,
    OPT_NO_ADD,
    OPT_DECODE,
    OPT_NUL,
    OPT_INFO,
    OPT_FILE,
    OPT_LINES,
    OPT_FROM_JSON,
    OPT_CONFIG,
    OPT_WRITE_GGUF,
};

static const struct cli_option options[] = {
    {"ids-only", 0, CLI_ARG_NONE, OPT_IDS_ONLY},
    {"json", 0, CLI_ARG_NONE, OPT_JSON},
    {"no-special", 0, CLI_ARG_NONE, OPT_NO_SPECIAL},
    {"no-add", 0, CLI_ARG_NONE, OPT_NO_ADD},
    {"decode", 0, CLI_ARG_NONE, OPT_DECODE},
    {"nul", 0, CLI_ARG_NONE, OPT_NUL},
    {"info", 0, CLI_ARG_NONE, OPT_INFO},
    {"file", 0, CLI_ARG_REQUIRED, OPT_FILE},
    {"lines", 0, CLI_ARG_REQUIRED, OPT_LINES},
    {"from-json", 0, CLI_ARG_REQUIRED, OPT_FROM_JSON},
    {"config", 0, CLI_ARG_REQUIRED, OPT_CONFIG},
    {"write-gguf", 0, CLI_ARG_REQUIRED, OPT_WRITE_GGUF},
    {0},
};

int cmd_tokenize(int argc, char **argv)
{
    struct opts o = {.add = true, .parse = true};
    const char *file = NULL, *lines = NULL;
    const char *from_json_path = NULL, *config = NULL, *write_gguf = NULL;
    struct cli_args a;
    cli_args_init(&a, "tokenize", cmd_tokenize_help, argc, argv, 0, CLI_TABLES(options));
    int id;
    while ((id = cli_args_next(&a)) > 0) {
        switch (id) {
        case OPT_IDS_ONLY:
            o.ids_only = true;
            break;
        case OPT_JSON:
            o.json = true;
            break;
        case OPT_NO_SPECIAL:
            o.add = o.parse = false;
            break;
        case OPT_NO_ADD:
            o.add = false;
            break;
        case OPT_DECODE:
            o.decode = true;
            break;
        case OPT_NUL:
            o.nul = true;
            break;
        case OPT_INFO:
            o.info = true;
            break;
        case OPT_FILE:
            file = a.value;
            break;
        case OPT_LINES:
            lines = a.value;
            break;
        case OPT_FROM_JSON:
            from_json_path = a.value;
            break;
        case OPT_CONFIG:
            config = a.value;
            break;
        default: /* OPT_WRITE_GGUF */
            write_gguf = a.value;
            break;
        }
    }
    if (id < 0)
        return a.status;
    if (from_json_path || write_gguf) {
        if (!from_json_path || !write_gguf || a.n_operands)
            return cli_usage("tokenize", "--from-json and --write-gguf go together, without a "
                                         "model or text");
        return from_json(from_json_path, config, write_gguf);
    }
    const char *model = cli_args_operand(&a, 0);
    char **text = a.n_operands ? a.operands + 1 : NULL;
    int n_text = a.n_operands ? a.n_operands - 1 : 0;
    if (!model)
        return cli_usage("tokenize", "a MODEL.gguf is needed");
    if (file && lines)
        return cli_usage("tokenize", "--file and --lines exclude each other");
    if ((file || lines) && n_text)
        return cli_usage("tokenize", "TEXT and --file/--lines exclude each other");
    if (!file && !lines && !n_text && !o.info)
        return cli_usage("tokenize", "no TEXT to encode");
    return run(model, n_text, text, &o, file, lines);
}

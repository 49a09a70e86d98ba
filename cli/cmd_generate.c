/*
 * `memfit generate MODEL -p PROMPT`: text from a Qwen2/LLaMA GGUF model,
 * streamed to stdout as it is generated. The model goes through the engines
 * and the manager as in `serve`: fetched into the cache when remote, its
 * memory (weights mapped, KV cache for the context, workspace) planned and
 * checked against the budget before anything is allocated.
 */
#include <stdio.h>
#include <string.h>

#include "llm_common.h"

const char cmd_generate_help[] =
    "Usage: memfit generate MODEL (-p PROMPT | -f FILE) [options]\n"
    "\n"
    "Generates text with MODEL, a GGUF file of architecture qwen2 (Qwen1.5, Qwen2,\n"
    "Qwen2.5) or llama (LLaMA 2/3 and alike), in any weight type memfit reads\n"
    "(F32, F16, BF16, Q8_0, Q4_0, K-quants). MODEL is a path, a source (s3://,\n"
    "https://, hf://ORG/REPO/FILE, file://; fetched into the cache first) or a\n"
    "manifest model's name. The weights are used in place from the file mapping.\n"
    "Text is written to stdout as it comes.\n"
    "\n"
    "Options:\n"
    "  -p, --prompt TEXT      the prompt\n"
    "  -f, --file FILE        read the prompt from FILE ('-': stdin)\n"
    "  --chat                 send the prompt as a user message through the model's\n"
    "                         chat template (ChatML, LLaMA 2 or LLaMA 3; ChatML when\n"
    "                         the model has none memfit knows), and say which\n"
    "  --system TEXT          with --chat: a system message first\n"
    "  --special              read special-token text in the prompt (\"<|im_start|>\")\n"
    "                         as those tokens (always on with --chat)\n"
    "  --json                 the output is one JSON object (sampling constrained by\n"
    "                         a grammar; OpenAI's response_format json_object)\n"
    "  --json-schema FILE     the output is JSON valid against the JSON Schema in\n"
    "                         FILE (the subset in docs/llm.md; others are "
    "refused)\n" CLI_LLM_OPTIONS_HELP "  -h, --help\n"
    "\n"
    "Exit status: 0 done, 1 failure (the message says why), 2 usage error.\n";

static char *read_all(const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = memfit_malloc(cap);
    while (buf) {
        if (n + 1 >= cap) {
            char *grown = cap < (64u << 20) ? memfit_realloc(buf, cap * 2) : NULL;
            if (!grown) {
                memfit_free(buf);
                buf = NULL;
                break;
            }
            buf = grown;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - 1 - n, f);
        n += got;
        if (got == 0)
            break;
    }
    bool bad = ferror(f);
    if (f != stdin)
        fclose(f);
    if (!buf || bad) {
        memfit_free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

int cmd_generate(int argc, char **argv)
{
    if (cli_wants_help(argc, argv, cmd_generate_help))
        return CLI_EXIT_OK;
    struct cli_llm_opts o;
    cli_llm_opts_default(&o);
    const char *model_path = NULL, *prompt = NULL, *file = NULL, *system = NULL;
    const char *schema_file = NULL;
    bool chat = false, special = false, json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool taken;
        int rc = cli_llm_opt("generate", argc, argv, &i, &o, &taken);
        if (rc != CLI_EXIT_OK)
            return rc;
        if (taken)
            continue;
        if (strcmp(a, "-p") == 0 || strcmp(a, "--prompt") == 0 || strcmp(a, "-f") == 0 ||
            strcmp(a, "--file") == 0 || strcmp(a, "--system") == 0) {
            if (i + 1 >= argc)
                return cli_usage("generate", "%s needs a value", a);
            if (a[1] == 'p' || a[2] == 'p')
                prompt = argv[++i];
            else if (a[1] == 'f' || a[2] == 'f')
                file = argv[++i];
            else
                system = argv[++i];
        } else if (strcmp(a, "--json") == 0) {
            json = true;
        } else if (strcmp(a, "--json-schema") == 0) {
            if (i + 1 >= argc)
                return cli_usage("generate", "%s needs a value", a);
            schema_file = argv[++i];
        } else if (strcmp(a, "--chat") == 0) {
            chat = true;
        } else if (strcmp(a, "--special") == 0) {
            special = true;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage("generate", "unknown option '%s'", a);
        } else if (!model_path) {
            model_path = a;
        } else {
            return cli_usage("generate", "unexpected argument '%s' (quote the prompt: -p \"...\")",
                             a);
        }
    }
    if (!model_path)
        return cli_usage("generate", "needs a MODEL");
    if (!prompt == !file)
        return cli_usage("generate", "needs one of -p PROMPT or -f FILE");
    if (system && !chat)
        return cli_usage("generate", "--system needs --chat");
    if (memfit_sampling_check(&o.sampling) != MEMFIT_OK)
        return cli_usage("generate", "%s", memfit_last_error());
    if (json && schema_file)
        return cli_usage("generate", "--json and --json-schema exclude each other");
    memfit_grammar *grammar = NULL;
    if (json && memfit_grammar_json_object(&grammar) != MEMFIT_OK)
        return cli_fail("generate: %s", memfit_last_error());
    if (schema_file) {
        size_t schema_len;
        char *schema = read_all(schema_file, &schema_len);
        if (!schema)
            return cli_fail("generate: cannot read the JSON schema from %s", schema_file);
        enum memfit_status gst = memfit_grammar_from_json_schema(schema, schema_len, &grammar);
        memfit_free(schema);
        if (gst != MEMFIT_OK)
            return cli_fail("generate: %s: %s", schema_file, memfit_last_error());
    }

    size_t prompt_len = prompt ? strlen(prompt) : 0;
    char *owned = NULL;
    if (file) {
        owned = read_all(file, &prompt_len);
        if (!owned) {
            memfit_grammar_free(grammar);
            return cli_fail("generate: cannot read the prompt from %s", file);
        }
        prompt = owned;
    }
    struct cli_llm m;
    int rc = cli_llm_open("generate", model_path, &o, &m);
    if (rc != CLI_EXIT_OK) {
        memfit_grammar_free(grammar);
        memfit_free(owned);
        return rc;
    }
    char *rendered = NULL;
    enum memfit_status st = MEMFIT_OK;
    if (chat) {
        enum memfit_chat_template tmpl;
        bool recognised;
        memfit_chat_template_detect(memfit_tokenizer_chat_template(m.tok), &tmpl, &recognised);
        fprintf(stderr, "generate: chat template %s (%s)\n", memfit_chat_template_name(tmpl),
                recognised ? "the model's"
                : memfit_tokenizer_chat_template(m.tok)
                    ? "the model's template is not one memfit knows: fallback"
                    : "the model has none: fallback");
        struct memfit_chat_message msgs[2] = {{"system", system}, {"user", prompt}};
        st = memfit_chat_render(tmpl, system ? msgs : msgs + 1, system ? 2 : 1, true, &rendered);
        if (st == MEMFIT_OK) {
            prompt = rendered;
            prompt_len = strlen(rendered);
        }
    }
    int32_t *ids = NULL;
    size_t n_ids = 0;
    if (st == MEMFIT_OK)
        st = memfit_tokenizer_encode(m.tok, prompt, prompt_len, !chat, chat || special, &ids,
                                     &n_ids);
    struct memfit_generate_result result;
    memset(&result, 0, sizeof(result));
    memfit_grammar_vocab *vocab = NULL;
    memfit_grammar_matcher *matcher = NULL;
    if (st == MEMFIT_OK && grammar) {
        st = memfit_grammar_vocab_create(m.tok, &vocab);
        if (st == MEMFIT_OK)
            st = memfit_grammar_matcher_create(grammar, vocab, &matcher);
    }
    if (st == MEMFIT_OK) {
        struct memfit_generate_params p = {
            .prompt = ids,
            .n_prompt = n_ids,
            .max_tokens = o.max_tokens,
            .sampling = o.sampling,
            .stop = o.stop,
            .n_stop = o.n_stop,
            .grammar = matcher,
        };
        st = memfit_llm_generate(m.session, m.tok, &p, cli_llm_print, NULL, &result);
    }
    if (st == MEMFIT_OK) {
        fputs("\n", stdout);
        fflush(stdout);
        if (o.stats)
            cli_llm_stats(&result);
        if (matcher && !memfit_grammar_matcher_is_complete(matcher))
            fprintf(stderr, "generate: the token limit came before the JSON was complete\n");
    }
    int ret = st == MEMFIT_OK ? CLI_EXIT_OK : cli_fail("generate: %s", memfit_last_error());
    memfit_grammar_matcher_free(matcher);
    memfit_grammar_vocab_free(vocab);
    memfit_grammar_free(grammar);
    memfit_free(ids);
    memfit_free(rendered);
    memfit_free(owned);
    cli_llm_close(&m);
    return ret;
}

/*
 * `memfit chat MODEL`: an interactive conversation on the terminal (or any
 * stdin), through the model's chat template. Each turn renders the whole
 * conversation, keeps the KV cache of the part already evaluated (the
 * rendered prompt only grows) and evaluates only what is new.
 */
#include <stdio.h>
#include <string.h>

#include "llm_common.h"

const char cmd_chat_help[] =
    "Usage: memfit chat MODEL [options]\n"
    "\n"
    "Chats with MODEL (a qwen2 or llama GGUF file, a source URI or a manifest\n"
    "model's name, as for memfit generate) on stdin/stdout: type a message\n"
    "and press Enter; the answer streams back. The conversation goes through the\n"
    "model's chat template (ChatML, LLaMA 2 or LLaMA 3; ChatML when it has none\n"
    "memfit knows). Commands: /reset (forget the conversation), /exit (or end of\n"
    "input). When the context is full, the conversation is reset with a notice.\n"
    "\n"
    "Options:\n"
    "  --system TEXT          the system message\n" CLI_LLM_OPTIONS_HELP "  -h, --help\n"
    "\n"
    "Exit status: 0 done, 1 failure (the message says why), 2 usage error.\n";

struct convo {
    struct memfit_chat_message *msgs;
    char **owned; /* the strings of msgs */
    size_t n, cap;
};

static bool convo_add(struct convo *c, const char *role, const char *text, size_t len)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        struct memfit_chat_message *m = memfit_realloc(c->msgs, cap * sizeof(*m));
        if (!m)
            return false;
        c->msgs = m;
        char **o = memfit_realloc(c->owned, cap * sizeof(*o));
        if (!o)
            return false;
        c->owned = o;
        c->cap = cap;
    }
    char *copy = memfit_strndup(text, len);
    if (!copy)
        return false;
    c->owned[c->n] = copy;
    c->msgs[c->n] = (struct memfit_chat_message){.role = role, .content = copy};
    c->n++;
    return true;
}

static void convo_truncate(struct convo *c, size_t n)
{
    while (c->n > n)
        memfit_free(c->owned[--c->n]);
}

/* Collects the answer while printing it. */
static bool on_text(void *ctx, const char *text, size_t len)
{
    cli_llm_collect(ctx, text, len);
    return cli_llm_print(NULL, text, len);
}

enum { OPT_SYSTEM = 1 };

static const struct cli_option options[] = {
    {"system", 0, CLI_ARG_REQUIRED, OPT_SYSTEM},
    {0},
};

int cmd_chat(int argc, char **argv)
{
    struct cli_llm_opts o;
    cli_llm_opts_default(&o);
    o.max_tokens = 0;
    const char *model_path = NULL, *system = NULL;
    struct cli_args a;
    cli_args_init(&a, "chat", cmd_chat_help, argc, argv, 0, CLI_TABLES(options, cli_llm_options));
    int id;
    while ((id = cli_args_next(&a)) > 0) {
        if (id == OPT_SYSTEM)
            system = a.value;
        else if (cli_llm_option("chat", &a, id, &o) != CLI_EXIT_OK)
            return CLI_EXIT_USAGE;
    }
    if (id < 0)
        return a.status;
    if (!cli_args_at_most(&a, 1))
        return CLI_EXIT_USAGE;
    model_path = cli_args_operand(&a, 0);
    if (!model_path)
        return cli_usage("chat", "needs a MODEL");
    if (memfit_sampling_check(&o.sampling) != MEMFIT_OK)
        return cli_usage("chat", "%s", memfit_last_error());
    struct cli_llm m;
    int rc = cli_llm_open("chat", model_path, &o, &m);
    if (rc != CLI_EXIT_OK)
        return rc;
    enum memfit_chat_template tmpl;
    bool recognised;
    memfit_chat_template_detect(memfit_tokenizer_chat_template(m.tok), &tmpl, &recognised);
    bool tty = cli_isatty(0);
    fprintf(stderr, "chat: %s, template %s%s, context %u tokens; /reset, /exit\n", model_path,
            memfit_chat_template_name(tmpl), recognised ? "" : " (fallback)", m.n_ctx);

    struct convo c = {0};
    int32_t *prev = NULL; /* the prompt tokens evaluated last turn */
    size_t n_prev = 0;
    enum memfit_status st = MEMFIT_OK;
    if (system && !convo_add(&c, "system", system, strlen(system)))
        st = MEMFIT_E_NOMEM;
    char line[65536];
    while (st == MEMFIT_OK) {
        if (tty)
            fputs("> ", stdout), fflush(stdout);
        if (!fgets(line, sizeof(line), stdin))
            break;
        size_t len = strcspn(line, "\n");
        line[len] = '\0';
        if (strcmp(line, "/exit") == 0)
            break;
        if (strcmp(line, "/reset") == 0) {
            convo_truncate(&c, system ? 1 : 0);
            n_prev = 0;
            fputs("(conversation reset)\n", stdout);
            continue;
        }
        if (len == 0)
            continue;
        size_t keep = c.n;
        if (!convo_add(&c, "user", line, len)) {
            st = MEMFIT_E_NOMEM;
            break;
        }
        char *text = NULL;
        int32_t *ids = NULL;
        size_t n_ids = 0;
        st = memfit_chat_render(tmpl, c.msgs, c.n, true, &text);
        if (st == MEMFIT_OK)
            st = memfit_tokenizer_encode(m.tok, text, strlen(text), false, true, &ids, &n_ids);
        memfit_free(text);
        if (st == MEMFIT_OK && n_ids + 1 >= m.n_ctx) {
            fprintf(stderr,
                    "chat: the conversation (%zu tokens) fills the context of %u: it "
                    "starts over from this message\n",
                    n_ids, m.n_ctx);
            memfit_free(ids);
            ids = NULL;
            convo_truncate(&c, keep);
            convo_truncate(&c, system ? 1 : 0);
            n_prev = 0;
            if (!convo_add(&c, "user", line, len) ||
                memfit_chat_render(tmpl, c.msgs, c.n, true, &text) != MEMFIT_OK) {
                st = MEMFIT_E_NOMEM;
                break;
            }
            st = memfit_tokenizer_encode(m.tok, text, strlen(text), false, true, &ids, &n_ids);
            memfit_free(text);
            if (st == MEMFIT_OK && n_ids + 1 >= m.n_ctx)
                st = memfit_fail(MEMFIT_E_RANGE, "the message is %zu tokens; the context holds %u",
                                 n_ids, m.n_ctx);
        }
        if (st != MEMFIT_OK) {
            memfit_free(ids);
            break;
        }
        /* Reuse the cache of the common prefix with last turn's prompt. */
        size_t common = 0;
        while (common < n_prev && common < n_ids && prev[common] == ids[common])
            common++;
        if (common == n_ids)
            common = n_ids - 1; /* at least one token to evaluate */
        st = memfit_llm_session_truncate(m.session, (uint32_t)common);
        struct cli_llm_text ans = {0};
        struct memfit_generate_result result;
        memset(&result, 0, sizeof(result));
        if (st == MEMFIT_OK) {
            struct memfit_generate_params p = {
                .prompt = ids + common,
                .n_prompt = n_ids - common,
                .max_tokens = o.max_tokens,
                .sampling = o.sampling,
                .stop = o.stop,
                .n_stop = o.n_stop,
            };
            st = memfit_llm_generate(m.session, m.tok, &p, on_text, &ans, &result);
        }
        fputs("\n", stdout);
        fflush(stdout);
        memfit_free(prev);
        prev = ids;
        n_prev = n_ids;
        if (st == MEMFIT_OK &&
            (ans.failed || !convo_add(&c, "assistant", ans.text ? ans.text : "", ans.len)))
            st = MEMFIT_E_NOMEM;
        memfit_free(ans.text);
        if (st == MEMFIT_OK && o.stats)
            cli_llm_stats(&result);
    }
    int ret = st == MEMFIT_OK ? CLI_EXIT_OK : cli_fail("chat: %s", memfit_last_error());
    memfit_free(prev);
    convo_truncate(&c, 0);
    memfit_free(c.msgs);
    memfit_free(c.owned);
    cli_llm_close(&m);
    return ret;
}

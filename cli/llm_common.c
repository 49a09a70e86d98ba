/*
 * Options, opening (through the engines and the manager) and statistics
 * shared by `memfit generate` and `memfit chat`.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engines_common.h"
#include "llm_common.h"

void cli_llm_opts_default(struct cli_llm_opts *o)
{
    memset(o, 0, sizeof(*o));
    memfit_sampling_default(&o->sampling);
    o->max_tokens = 256;
}

/* Sets the model option of `flag` ("--ctx" -> "ctx=VALUE"), replacing an earlier one. */
static void model_option(struct cli_llm_opts *o, const char *flag, const char *value)
{
    const char *key = flag + 2;
    size_t i = 0, n = strlen(key);
    while (i < o->n_options && !(strncmp(o->options[i], key, n) == 0 && o->options[i][n] == '='))
        i++;
    if (i == o->n_options) {
        size_t used = strlen(o->option_flags);
        snprintf(o->option_flags + used, sizeof(o->option_flags) - used, "%s%s", used ? ", " : "",
                 flag);
        o->n_options++;
    }
    snprintf(o->option_text[i], sizeof(o->option_text[i]), "%s=%s", key, value);
    o->options[i] = o->option_text[i];
}

const struct cli_option cli_llm_options[] = {
    {"max-tokens", 'n', CLI_ARG_REQUIRED, CLI_LLM_OPT_MAX_TOKENS},
    {"ctx", 0, CLI_ARG_REQUIRED, CLI_LLM_OPT_CTX},
    {"kv", 0, CLI_ARG_REQUIRED, CLI_LLM_OPT_KV},
    {"batch", 0, CLI_ARG_REQUIRED, CLI_LLM_OPT_BATCH},
    {"threads", 0, CLI_ARG_REQUIRED, CLI_LLM_OPT_THREADS},
    {"temp", 0, CLI_ARG_REQUIRED, CLI_LLM_OPT_TEMP},
    {"top-k", 0, CLI_ARG_REQUIRED, CLI_LLM_OPT_TOP_K},
    {"top-p", 0, CLI_ARG_REQUIRED, CLI_LLM_OPT_TOP_P},
    {"min-p", 0, CLI_ARG_REQUIRED, CLI_LLM_OPT_MIN_P},
    {"repeat-penalty", 0, CLI_ARG_REQUIRED, CLI_LLM_OPT_REPEAT_PENALTY},
    {"seed", 0, CLI_ARG_REQUIRED, CLI_LLM_OPT_SEED},
    {"stop", 0, CLI_ARG_REQUIRED, CLI_LLM_OPT_STOP},
    {"budget", 0, CLI_ARG_REQUIRED, CLI_LLM_OPT_BUDGET},
    {"manifest", 0, CLI_ARG_REQUIRED, CLI_LLM_OPT_MANIFEST},
    {"stats", 0, CLI_ARG_NONE, CLI_LLM_OPT_STATS},
    {0},
};

int cli_llm_option(const char *command, const struct cli_args *a, int id, struct cli_llm_opts *o)
{
    const char *flag = a->name, *v = a->value;
    long long n;
    switch (id) {
    case CLI_LLM_OPT_MAX_TOKENS:
        if (!cli_opt_int(command, flag, v, 0, 1 << 24, &n))
            return CLI_EXIT_USAGE;
        o->max_tokens = (uint32_t)n;
        break;
    case CLI_LLM_OPT_CTX:
    case CLI_LLM_OPT_BATCH:
    case CLI_LLM_OPT_THREADS:
        if (!cli_opt_int(command, flag, v, id == CLI_LLM_OPT_THREADS ? 0 : 1,
                         id == CLI_LLM_OPT_CTX     ? 1 << 24
                         : id == CLI_LLM_OPT_BATCH ? 4096
                                                   : 1024,
                         &n))
            return CLI_EXIT_USAGE;
        if (n > 0) /* --threads 0: the default */
            model_option(o, flag, v);
        break;
    case CLI_LLM_OPT_KV:
        if (strcasecmp(v, "f16") != 0 && strcasecmp(v, "q8_0") != 0)
            return cli_usage(command, "--kv '%s': expected f16 or q8_0", v);
        model_option(o, flag, v);
        break;
    case CLI_LLM_OPT_MANIFEST:
        o->manifest = v;
        break;
    case CLI_LLM_OPT_TEMP:
        if (!cli_opt_float(command, flag, v, 0, 100, &o->sampling.temperature))
            return CLI_EXIT_USAGE;
        break;
    case CLI_LLM_OPT_TOP_K:
        if (!cli_opt_int(command, flag, v, 0, 1 << 24, &n))
            return CLI_EXIT_USAGE;
        o->sampling.top_k = (uint32_t)n;
        break;
    case CLI_LLM_OPT_TOP_P:
        if (!cli_opt_float(command, flag, v, 1e-6, 1, &o->sampling.top_p))
            return CLI_EXIT_USAGE;
        break;
    case CLI_LLM_OPT_MIN_P:
        if (!cli_opt_float(command, flag, v, 0, 1, &o->sampling.min_p))
            return CLI_EXIT_USAGE;
        break;
    case CLI_LLM_OPT_REPEAT_PENALTY:
        if (!cli_opt_float(command, flag, v, 0.01, 10, &o->sampling.repeat_penalty))
            return CLI_EXIT_USAGE;
        break;
    case CLI_LLM_OPT_SEED:
        if (!cli_opt_int(command, flag, v, 0, INT64_MAX, &n))
            return CLI_EXIT_USAGE;
        o->sampling.seed = (uint64_t)n;
        break;
    case CLI_LLM_OPT_STOP:
        if (o->n_stop == CLI_LLM_MAX_STOP)
            return cli_usage(command, "at most %d --stop strings", CLI_LLM_MAX_STOP);
        if (!v[0])
            return cli_usage(command, "--stop needs a non-empty TEXT");
        o->stop[o->n_stop++] = v;
        break;
    case CLI_LLM_OPT_BUDGET:
        if (!cli_opt_size(command, flag, v, &o->budget_bytes))
            return CLI_EXIT_USAGE;
        o->budget_text = v;
        break;
    case CLI_LLM_OPT_STATS:
        o->stats = true;
        break;
    default:
        return cli_usage(command, "internal error: option %d", id);
    }
    return CLI_EXIT_OK;
}

static double mib(uint64_t bytes)
{
    return (double)bytes / (1024.0 * 1024.0);
}

/* The --stats line of the model: what it is, and the plan the manager reserved. */
static void print_model_stats(const char *command, memfit_engine_model *entry,
                              const struct cli_llm *m)
{
    struct memfit_llm_info info;
    struct memfit_engine_plan p;
    memfit_llm_get_info(m->model, &info);
    if (memfit_engine_model_plan(entry, &p) != MEMFIT_OK)
        return;
    const struct memfit_type_info *ti = memfit_type_get_info(info.weight_type);
    const uint64_t *b = p.cost.bytes;
    fprintf(stderr,
            "%s: %s: %s, %u layers, %u dims, vocabulary %u, weights %s %.1f MiB; context "
            "%u tokens x %u session(s): KV cache %.1f MiB, workspace %.1f MiB; planned %.1f "
            "MiB in all\n",
            command, memfit_engine_model_name(entry), info.arch, info.n_layer, info.n_embd,
            info.n_vocab, ti ? ti->name : "?", mib(b[MEMFIT_BUDGET_WEIGHTS]), p.n_ctx, p.n_sessions,
            mib(b[MEMFIT_BUDGET_KV_CACHE]), mib(b[MEMFIT_BUDGET_WORKSPACE]),
            mib(memfit_budget_cost_total(&p.cost)));
}

int cli_llm_open(const char *command, const char *model, const struct cli_llm_opts *o,
                 struct cli_llm *out)
{
    memset(out, 0, sizeof(*out));
    struct cli_model_spec spec = {
        .command = command,
        .model = model,
        .manifest = o->manifest,
        .options = o->options,
        .n_options = o->n_options,
        .option_flags = o->option_flags,
        .budget_bytes = o->budget_bytes,
        .budget_flag = o->budget_text,
    };
    memfit_engine_model *entry;
    int rc = cli_open_model(&spec, &out->engines, &entry);
    if (rc != CLI_EXIT_OK)
        return rc;
    const struct memfit_engine_family_info *family = memfit_engine_model_family(entry);
    if (!(family->ops & MEMFIT_ENGINE_OP_GENERATE)) {
        cli_llm_close(out);
        return cli_fail("%s: %s: a %s model (from the file's architecture), which does not "
                        "generate text",
                        command, model, family->name);
    }
    if (o->stats)
        cli_print_budget(out->engines);
    /* The plan's context, for the hint when the manager refuses the model. */
    struct memfit_engine_plan p;
    char hint[160] = "";
    if (memfit_engine_model_plan(entry, &p) == MEMFIT_OK)
        snprintf(hint, sizeof(hint),
                 "the plan is for a context of %u tokens: a smaller --ctx or --kv q8_0 needs "
                 "less",
                 p.n_ctx);
    memfit_clear_error();
    rc = cli_acquire(command, out->engines, entry, hint[0] ? hint : NULL, &out->handle);
    enum memfit_status st = MEMFIT_OK;
    if (rc == CLI_EXIT_OK)
        st = memfit_engine_llm(out->handle, &out->model, &out->tok, &out->n_ctx);
    if (rc == CLI_EXIT_OK && st == MEMFIT_OK)
        st = memfit_engine_llm_session_acquire(out->handle, &out->session);
    if (rc == CLI_EXIT_OK && st != MEMFIT_OK)
        rc = cli_fail("%s: %s", command, memfit_last_error());
    if (rc != CLI_EXIT_OK) {
        cli_llm_close(out);
        return rc;
    }
    if (o->stats)
        print_model_stats(command, entry, out);
    return CLI_EXIT_OK;
}

void cli_llm_close(struct cli_llm *m)
{
    memfit_engine_llm_session_release(m->handle, m->session);
    memfit_manager_release(m->handle);
    memfit_engines_close(m->engines);
    memset(m, 0, sizeof(*m));
}

bool cli_llm_print(void *ctx, const char *text, size_t len)
{
    (void)ctx;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return !ferror(stdout);
}

bool cli_llm_collect(void *ctx, const char *text, size_t len)
{
    struct cli_llm_text *t = ctx;
    if (!t->failed && t->len + len + 1 > t->cap) {
        size_t cap = (t->len + len + 1) * 2;
        char *grown = memfit_realloc(t->text, cap);
        if (grown) {
            t->text = grown;
            t->cap = cap;
        } else {
            t->failed = true;
        }
    }
    if (!t->failed) {
        memcpy(t->text + t->len, text, len);
        t->len += len;
        t->text[t->len] = '\0';
    }
    return true;
}

static double per_second(uint32_t n, double seconds)
{
    return seconds > 0 ? n / seconds : 0.0;
}

json_t *cli_llm_result_json(const char *key, const char *value, const struct cli_llm_text *text,
                            const struct memfit_generate_result *r)
{
    static const char *const finish[] = {"stop", "length", "cancelled"};
    return json_pack("{s:s, s:o, s:s, s:{s:I, s:I}, s:{s:f, s:f, s:f, s:f}}", key, value, "text",
                     cli_json_text(text->text ? text->text : "", text->len), "finish_reason",
                     (unsigned)r->finish < 3 ? finish[r->finish] : "?", "tokens", "prompt",
                     (json_int_t)r->n_prompt, "generated", (json_int_t)r->n_generated, "timings",
                     "prompt_s", r->prompt_seconds, "generate_s", r->generate_seconds,
                     "prompt_tokens_per_s", per_second(r->n_prompt, r->prompt_seconds),
                     "generate_tokens_per_s", per_second(r->n_generated, r->generate_seconds));
}

void cli_llm_stats(const struct memfit_generate_result *r)
{
    uint64_t peak = cli_peak_rss_bytes();
    fprintf(stderr,
            "\nprompt: %u tokens in %.3f s (%.1f tokens/s); generation: %u tokens in %.3f s "
            "(%.1f tokens/s); peak RSS %.1f MiB\n",
            r->n_prompt, r->prompt_seconds,
            r->prompt_seconds > 0 ? r->n_prompt / r->prompt_seconds : 0.0, r->n_generated,
            r->generate_seconds,
            r->generate_seconds > 0 ? r->n_generated / r->generate_seconds : 0.0, mib(peak));
}

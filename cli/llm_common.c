/*
 * Options, opening (through the engines and the manager) and statistics
 * shared by `memfit generate` and `memfit chat`.
 */
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

int cli_llm_opt(const char *command, int argc, char **argv, int *i, struct cli_llm_opts *o,
                bool *taken)
{
    const char *a = argv[*i];
    *taken = true;
    static const char *const with_value[] = {
        "-n",     "--max-tokens", "--ctx",     "--kv",    "--batch",          "--threads",
        "--temp", "--top-k",      "--top-p",   "--min-p", "--repeat-penalty", "--seed",
        "--stop", "--budget",     "--manifest"};
    bool known = false;
    for (size_t k = 0; k < sizeof(with_value) / sizeof(*with_value); k++)
        known = known || strcmp(a, with_value[k]) == 0;
    if (strcmp(a, "--stats") == 0) {
        o->stats = true;
        return CLI_EXIT_OK;
    }
    if (!known) {
        *taken = false;
        return CLI_EXIT_OK;
    }
    if (*i + 1 >= argc)
        return cli_usage(command, "%s needs a value", a);
    const char *v = argv[++*i];
    long long n;
    if (strcmp(a, "-n") == 0 || strcmp(a, "--max-tokens") == 0) {
        if (!cli_opt_int(command, a, v, 0, 1 << 24, &n))
            return CLI_EXIT_USAGE;
        o->max_tokens = (uint32_t)n;
    } else if (strcmp(a, "--ctx") == 0 || strcmp(a, "--batch") == 0 ||
               strcmp(a, "--threads") == 0) {
        bool ctx = a[2] == 'c', batch = a[2] == 'b';
        if (!cli_opt_int(command, a, v, ctx || batch ? 1 : 0,
                         ctx     ? 1 << 24
                         : batch ? 4096
                                 : 1024,
                         &n))
            return CLI_EXIT_USAGE;
        if (n > 0) /* --threads 0: the default */
            model_option(o, a, v);
    } else if (strcmp(a, "--kv") == 0) {
        if (strcasecmp(v, "f16") != 0 && strcasecmp(v, "q8_0") != 0)
            return cli_usage(command, "--kv '%s': expected f16 or q8_0", v);
        model_option(o, a, v);
    } else if (strcmp(a, "--manifest") == 0) {
        o->manifest = v;
    } else if (strcmp(a, "--temp") == 0) {
        if (!cli_opt_float(command, a, v, 0, 100, &o->sampling.temperature))
            return CLI_EXIT_USAGE;
    } else if (strcmp(a, "--top-k") == 0) {
        if (!cli_opt_int(command, a, v, 0, 1 << 24, &n))
            return CLI_EXIT_USAGE;
        o->sampling.top_k = (uint32_t)n;
    } else if (strcmp(a, "--top-p") == 0) {
        if (!cli_opt_float(command, a, v, 1e-6, 1, &o->sampling.top_p))
            return CLI_EXIT_USAGE;
    } else if (strcmp(a, "--min-p") == 0) {
        if (!cli_opt_float(command, a, v, 0, 1, &o->sampling.min_p))
            return CLI_EXIT_USAGE;
    } else if (strcmp(a, "--repeat-penalty") == 0) {
        if (!cli_opt_float(command, a, v, 0.01, 10, &o->sampling.repeat_penalty))
            return CLI_EXIT_USAGE;
    } else if (strcmp(a, "--seed") == 0) {
        if (!cli_opt_int(command, a, v, 0, INT64_MAX, &n))
            return CLI_EXIT_USAGE;
        o->sampling.seed = (uint64_t)n;
    } else if (strcmp(a, "--stop") == 0) {
        if (o->n_stop == CLI_LLM_MAX_STOP)
            return cli_usage(command, "at most %d --stop strings", CLI_LLM_MAX_STOP);
        if (!v[0])
            return cli_usage(command, "--stop needs a non-empty TEXT");
        o->stop[o->n_stop++] = v;
    } else if (strcmp(a, "--budget") == 0) {
        if (!cli_opt_size(command, a, v, &o->budget_bytes))
            return CLI_EXIT_USAGE;
        o->budget_text = v;
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

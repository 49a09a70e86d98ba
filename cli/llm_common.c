/* Options, opening and statistics shared by `memfit generate` and `memfit chat`. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "llm_common.h"

void cli_llm_opts_default(struct cli_llm_opts *o)
{
    memset(o, 0, sizeof(*o));
    memfit_llm_options_default(&o->model);
    memfit_sampling_default(&o->sampling);
    o->max_tokens = 256;
}

int cli_llm_opt(const char *command, int argc, char **argv, int *i, struct cli_llm_opts *o,
                bool *taken)
{
    const char *a = argv[*i];
    *taken = true;
    static const char *const with_value[] = {
        "-n",     "--max-tokens", "--ctx",   "--kv",    "--batch",          "--threads",
        "--temp", "--top-k",      "--top-p", "--min-p", "--repeat-penalty", "--seed",
        "--stop", "--budget"};
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
    } else if (strcmp(a, "--ctx") == 0) {
        if (!cli_opt_int(command, a, v, 1, 1 << 24, &n))
            return CLI_EXIT_USAGE;
        o->model.n_ctx = (uint32_t)n;
    } else if (strcmp(a, "--batch") == 0) {
        if (!cli_opt_int(command, a, v, 1, 4096, &n))
            return CLI_EXIT_USAGE;
        o->model.n_batch = (uint32_t)n;
    } else if (strcmp(a, "--threads") == 0) {
        if (!cli_opt_int(command, a, v, 0, 1024, &n))
            return CLI_EXIT_USAGE;
        o->model.n_threads = (unsigned)n;
    } else if (strcmp(a, "--kv") == 0) {
        if (strcasecmp(v, "f16") == 0)
            o->model.kv_type = MEMFIT_TYPE_F16;
        else if (strcasecmp(v, "q8_0") == 0)
            o->model.kv_type = MEMFIT_TYPE_Q8_0;
        else
            return cli_usage(command, "--kv '%s': expected f16 or q8_0", v);
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
    }
    return CLI_EXIT_OK;
}

static double mib(uint64_t bytes)
{
    return (double)bytes / (1024.0 * 1024.0);
}

int cli_llm_open(const char *command, const char *path, const struct cli_llm_opts *o,
                 struct cli_llm *out)
{
    memset(out, 0, sizeof(*out));
    enum memfit_status st = memfit_llm_open(path, &out->model);
    if (st != MEMFIT_OK)
        return cli_fail("%s: %s", command, memfit_last_error());
    memfit_llm_get_info(out->model, &out->info);
    st = memfit_llm_plan_for(&out->info, &o->model, &out->plan);
    if (st != MEMFIT_OK) {
        cli_llm_close(out);
        return cli_fail("%s: %s: %s", command, path, memfit_last_error());
    }
    out->n_ctx = o->model.n_ctx ? o->model.n_ctx
                                : (out->info.n_ctx_train < 4096 ? out->info.n_ctx_train : 4096);
    struct memfit_budget_settings bs;
    memfit_budget_settings_default(&bs);
    bs.flag_bytes = o->budget_bytes;
    uint64_t budget;
    char source[256];
    if ((st = memfit_budget_resolve(&bs, &budget, source, sizeof(source))) != MEMFIT_OK) {
        cli_llm_close(out);
        return cli_fail("%s: %s", command, memfit_last_error());
    }
    uint64_t total = out->plan.weight_bytes + out->plan.converted_bytes + out->plan.kv_bytes +
                     out->plan.work_bytes;
    if (total > budget) {
        cli_llm_close(out);
        return cli_fail("%s: %s with a context of %u tokens needs %.1f MiB (weights %.1f, KV "
                        "cache %.1f, workspace %.1f, converted %.1f); the budget is %.1f MiB (%s): "
                        "use a smaller --ctx, --kv q8_0 or a smaller quantization",
                        command, path, out->n_ctx, mib(total), mib(out->plan.weight_bytes),
                        mib(out->plan.kv_bytes), mib(out->plan.work_bytes),
                        mib(out->plan.converted_bytes), mib(budget), source);
    }
    st = memfit_tokenizer_from_gguf(memfit_llm_tensors(out->model), &out->tok);
    if (st == MEMFIT_OK)
        st = memfit_llm_session_create(out->model, &o->model, &out->session);
    if (st != MEMFIT_OK) {
        cli_llm_close(out);
        return cli_fail("%s: %s: %s", command, path, memfit_last_error());
    }
    if (o->stats)
        fprintf(stderr,
                "%s: %s: %s, %u layers, %u dims, vocabulary %u, weights %s %.1f MiB; context "
                "%u tokens: KV cache %.1f MiB, workspace %.1f MiB\n",
                command, path, out->info.arch, out->info.n_layer, out->info.n_embd,
                out->info.n_vocab,
                memfit_type_get_info(out->info.weight_type)
                    ? memfit_type_get_info(out->info.weight_type)->name
                    : "?",
                mib(out->plan.weight_bytes), out->n_ctx, mib(out->plan.kv_bytes),
                mib(out->plan.work_bytes));
    return CLI_EXIT_OK;
}

void cli_llm_close(struct cli_llm *m)
{
    memfit_llm_session_free(m->session);
    memfit_tokenizer_free(m->tok);
    memfit_llm_close(m->model);
    memset(m, 0, sizeof(*m));
}

bool cli_llm_print(void *ctx, const char *text, size_t len)
{
    (void)ctx;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return !ferror(stdout);
}

void cli_llm_stats(const struct cli_llm *m, const struct memfit_generate_result *r)
{
    (void)m;
    struct memfit_proc_mem pm;
    uint64_t peak =
        memfit_proc_read_ex(NULL, 0, MEMFIT_PROC_STATUS_ONLY, &pm) == MEMFIT_OK ? pm.hwm_bytes : 0;
    fprintf(stderr,
            "\nprompt: %u tokens in %.3f s (%.1f tokens/s); generation: %u tokens in %.3f s "
            "(%.1f tokens/s); peak RSS %.1f MiB\n",
            r->n_prompt, r->prompt_seconds,
            r->prompt_seconds > 0 ? r->n_prompt / r->prompt_seconds : 0.0, r->n_generated,
            r->generate_seconds,
            r->generate_seconds > 0 ? r->n_generated / r->generate_seconds : 0.0, mib(peak));
}

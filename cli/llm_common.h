/*
 * What `memfit generate` and `memfit chat` share: their model and sampling
 * options, opening a model with its tokenizer and one session after
 * checking its memory plan, and the --stats report.
 */
#ifndef MEMFIT_CLI_LLM_COMMON_H
#define MEMFIT_CLI_LLM_COMMON_H

#include <stdbool.h>
#include <stdio.h>

#include "cli.h"

#define CLI_LLM_MAX_STOP 8

struct cli_llm_opts {
    /* Model options from flags, as "key=value" strings (ctx, kv, threads,
     * batch) for the engines, and the flags that gave them. */
    char option_text[4][48];
    const char *options[4];
    size_t n_options;
    char option_flags[64];
    const char *manifest; /* --manifest: MODEL may name one of its models */
    struct memfit_sampling sampling;
    uint32_t max_tokens; /* 0: until the context is full */
    const char *stop[CLI_LLM_MAX_STOP];
    size_t n_stop;
    uint64_t budget_bytes;   /* --budget; 0: none (the budget policy decides) */
    const char *budget_text; /* as written */
    bool stats;
};

void cli_llm_opts_default(struct cli_llm_opts *o);

/* The ids of cli_llm_options (a command's own ids stay below 1000: letters are ids too). */
enum {
    CLI_LLM_OPT_MAX_TOKENS = 1100,
    CLI_LLM_OPT_CTX,
    CLI_LLM_OPT_KV,
    CLI_LLM_OPT_BATCH,
    CLI_LLM_OPT_THREADS,
    CLI_LLM_OPT_TEMP,
    CLI_LLM_OPT_TOP_K,
    CLI_LLM_OPT_TOP_P,
    CLI_LLM_OPT_MIN_P,
    CLI_LLM_OPT_REPEAT_PENALTY,
    CLI_LLM_OPT_SEED,
    CLI_LLM_OPT_STOP,
    CLI_LLM_OPT_BUDGET,
    CLI_LLM_OPT_MANIFEST,
    CLI_LLM_OPT_STATS,
};

/* The model and sampling options of generate and chat: a fragment of their tables. */
extern const struct cli_option cli_llm_options[];

/*
 * Takes option `id` of cli_llm_options (its value in a->value) into *o.
 * Returns CLI_EXIT_OK, or CLI_EXIT_USAGE after printing why.
 */
int cli_llm_option(const char *command, const struct cli_args *a, int id, struct cli_llm_opts *o);

/* The option lines of the help texts. */
#define CLI_LLM_OPTIONS_HELP                                                                       \
    "  -n, --max-tokens N     tokens to generate (default 256; 0: until the context\n"             \
    "                         is full)\n"                                                          \
    "  --ctx N                context in tokens (prompt + answer; default\n"                       \
    "                         min(the model's, 4096)); its KV cache is planned first\n"            \
    "  --kv f16|q8_0          KV cache type (default f16)\n"                                       \
    "  --batch N              prompt tokens per forward pass (default 64)\n"                       \
    "  --threads N            threads (default: the CPUs this process may use)\n"                  \
    "  --temp T               temperature, 0 = greedy (default 0.8)\n"                             \
    "  --top-k K              keep the K most likely tokens, 0 = off (default 40)\n"               \
    "  --top-p P              nucleus sampling, 1 = off (default 0.95)\n"                          \
    "  --min-p P              drop tokens below P x the best one's probability\n"                  \
    "                         (default 0.05)\n"                                                    \
    "  --repeat-penalty R     penalty on the last 64 tokens, 1 = off (default 1)\n"                \
    "  --seed S               random seed (same seed, same text; default 0)\n"                     \
    "  --stop TEXT            stop before TEXT (repeatable, up to 8)\n"                            \
    "  --budget SIZE          refuse to start when the model, KV cache and workspace\n"            \
    "                         need more than SIZE (default: MEMFIT_MAX_MEMORY_MB,\n"               \
    "                         else the manifest's, else 80% of the memory limit)\n"                \
    "  --manifest FILE        MODEL may name a model of FILE (default ./memfit.yaml\n"             \
    "                         when MODEL is not a file); its options come from there\n"            \
    "  --stats                print the memory plan, prompt and generation tokens/s\n"             \
    "                         and peak RSS to stderr\n"

/* A model acquired through the engines and the manager, with one session. */
struct cli_llm {
    memfit_engines *engines;
    memfit_handle *handle;
    memfit_llm *model;
    const memfit_tokenizer *tok;
    memfit_llm_session *session;
    uint32_t n_ctx;
};

/*
 * Opens MODEL (a GGUF path, a source URI, or a manifest model's name)
 * through the engines with the options and budget of `o`, acquires it from
 * the manager (which plans it and refuses it with the figures when it
 * cannot fit the budget) and takes one of its sessions. Prints the error
 * and returns CLI_EXIT_FAILURE on failure.
 */
int cli_llm_open(const char *command, const char *model, const struct cli_llm_opts *o,
                 struct cli_llm *out);
void cli_llm_close(struct cli_llm *m);

/* Writes generated text to stdout as it comes (flushed). */
bool cli_llm_print(void *ctx, const char *text, size_t len);

/* Generated text kept whole (chat's history, generate --json). */
struct cli_llm_text {
    char *text; /* NUL-terminated; memfit_free it */
    size_t len, cap;
    bool failed; /* out of memory: the text is incomplete */
};

/* A memfit_llm_generate callback that appends to a struct cli_llm_text. */
bool cli_llm_collect(void *ctx, const char *text, size_t len);

/*
 * The --json object of one generation (docs/llm.md): {KEY: value, "text",
 * "finish_reason", "tokens": {"prompt", "generated"}, "timings": {...}};
 * KEY is "model" for generate, "input" for run. NULL when out of memory.
 */
struct json_t *cli_llm_result_json(const char *key, const char *value,
                                   const struct cli_llm_text *text,
                                   const struct memfit_generate_result *r);

/* The --stats line for one generation. */
void cli_llm_stats(const struct memfit_generate_result *r);

#endif

/*
 * Shared pieces of the `memfit` command: the table of subcommands, exit
 * codes, and helpers for errors and option values. Each subcommand lives in
 * its own cli/cmd_<name>.c and uses only the public API.
 */
#ifndef MEMFIT_CLI_H
#define MEMFIT_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "memfit/memfit.h"

/* Exit codes, documented in `memfit --help`. */
enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_FAILURE = 1,
    CLI_EXIT_USAGE = 2,
};

/*
 * The subcommands: X(name, one-line summary). Each name has
 * `int cmd_<name>(int argc, char **argv)` (argv[0] is the command name) and
 * `extern const char cmd_<name>_help[]` (the full help text, starting with
 * its usage line).
 */
/* clang-format off */
#define CLI_COMMANDS(X) \
    X(report, "Show memory: machine, container (cgroup), processes, GPUs") \
    X(monitor, "Watch memory over time, with alert levels and actions") \
    X(inspect, "Show what a GGUF, safetensors or .pth model file holds") \
    X(convert, "Convert a model file to GGUF or safetensors") \
    X(analyze, "Report statistics and the leak trend of a monitor log") \
    X(plot, "Draw a monitor log as an SVG or PNG chart, once or live") \
    X(quantize, "Convert a model's weights to F16/BF16, a ggml quant or NF4") \
    X(pull, "Fetch a model file into the cache (S3, HTTP(S), Hugging Face, path)") \
    X(cache, "List, verify, remove and evict cached model files") \
    X(embed, "Compute DINOv2 image embeddings") \
    X(segment, "Segment an image with SAM: points, a box, or automatic masks") \
    X(generate, "Generate text with a Qwen2/LLaMA GGUF model") \
    X(chat, "Chat with a Qwen2/LLaMA GGUF model on the terminal") \
    X(run, "Run a manifest model on inputs through the model manager") \
    X(models, "List a manifest's models, their planned memory and whether they fit") \
    X(serve, "Serve models over HTTP within a memory budget (embeddings, metrics)") \
    X(ps, "List a running memfit serve's models, their state and memory") \
    X(load, "Ask a running memfit serve to load a model now") \
    X(stop, "Ask a running memfit serve to unload a model now") \
    X(cleanup, "Ask a running memfit serve to unload idle models and free memory") \
    X(tokenize, "Encode text with a GGUF model's tokenizer; tokenizer.json to GGUF")
/* clang-format on */

#define CLI_DECLARE(name, summary)                                                                 \
    int cmd_##name(int argc, char **argv);                                                         \
    extern const char cmd_##name##_help[];
CLI_COMMANDS(CLI_DECLARE)
#undef CLI_DECLARE

/* Prints "memfit: <message>" to stderr; returns CLI_EXIT_FAILURE. */
int cli_fail(const char *fmt, ...) MEMFIT_PRINTF(1, 2);

/* Prints "memfit CMD: <message>" and a pointer to the help; returns CLI_EXIT_USAGE. */
int cli_usage(const char *command, const char *fmt, ...) MEMFIT_PRINTF(2, 3);

/* Prints "memfit: <memfit_last_error()>"; returns CLI_EXIT_FAILURE. */
int cli_fail_status(enum memfit_status status);

/* True when the stream is a terminal (and TERM is not "dumb"). */
bool cli_isatty(int fd);

/* Option values; on bad text print a usage error and return false. */
bool cli_opt_size(const char *command, const char *option, const char *text, uint64_t *out);
bool cli_opt_duration(const char *command, const char *option, const char *text, uint64_t *out_ns);
bool cli_opt_percent(const char *command, const char *option, const char *text, double *out);
bool cli_opt_int(const char *command, const char *option, const char *text, long long min,
                 long long max, long long *out);
bool cli_opt_float(const char *command, const char *option, const char *text, double min,
                   double max, float *out);

/*
 * "--name VALUE" or "--name=VALUE" at argv[*i]: the value (advancing *i past
 * a separate one); NULL when argv[*i] is another option, or when the value
 * is missing (then *missing is set, for a usage error).
 */
const char *cli_opt_value(int argc, char **argv, int *i, const char *name, bool *missing);

/* True when argv[i] is "--help" or "-h" for some i; prints the help then. */
bool cli_wants_help(int argc, char **argv, const char *help);

/* Prints a command's help; a line "@FAMILIES@" in it becomes the model
 * families of the engines' registry (name, summary, options), one a line. */
void cli_print_help(const char *help);

#endif

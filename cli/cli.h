/*
 * Shared pieces of the `memfit` command: the table of subcommands, exit
 * codes, and helpers for errors and option values. Each subcommand lives in
 * its own cli/cmd_<name>.c and uses only the public API.
 */
#ifndef MEMFIT_CLI_H
#define MEMFIT_CLI_H

#include <getopt.h>
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
    X(health, "Ask a running memfit serve whether it is alive or ready (exit 0/1/2)") \
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

/* Prints a line scripts wait for ("listening on URL") to stdout: as it is,
 * or with MEMFIT_LOG_FORMAT=json as a JSON log record of level info whose
 * "msg" is the line, so that a log collector reading stdout and stderr sees
 * JSON only. */
void cli_print_record(const char *fmt, ...) MEMFIT_PRINTF(1, 2);

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
 * The command-line parser every command uses: getopt_long behind one table of
 * options per command (plus shared fragments, e.g. cli_llm_options), so that
 * every command takes "--name=VALUE" and "--name VALUE", short options with
 * attached values ("-n2", "-i100ms"), clusters ("-qv"), "--" to end the
 * options, options after operands (GNU permutation; CLI_ARGS_IN_ORDER stops at
 * the first operand instead, for a command that wraps another command), and
 * -h/--help. Unknown options, missing values and values given to options that
 * take none are usage errors naming the option.
 *
 *     struct cli_args a;
 *     cli_args_init(&a, "cmd", cmd_x_help, argc, argv, 0, CLI_TABLES(options, fragment));
 *     int id;
 *     while ((id = cli_args_next(&a)) > 0)
 *         switch (id) { case OPT_X: ... a.value ... }
 *     if (id < 0)
 *         return a.status; // help printed (0) or a usage error printed (2)
 *     // operands: a.operands[0 .. a.n_operands)
 */
enum cli_arg {
    CLI_ARG_NONE = 0,     /* a flag */
    CLI_ARG_REQUIRED = 1, /* "--name VALUE", "--name=VALUE", "-nVALUE", "-n VALUE" */
    CLI_ARG_OPTIONAL = 2, /* "--name" or "--name=VALUE" */
};

/* One option of a table; a table ends with {0}. */
struct cli_option {
    const char *name; /* the long name, without "--" */
    int letter;       /* the short option ('n' for -n), or 0 */
    enum cli_arg arg;
    /* What cli_args_next returns: > 0 and unique among a command's tables (a
     * letter is a good id for an option that has one). A command's own ids
     * stay below 1000; the shared fragments use 1100.., 1200.., 1300... */
    int id;
};

/* A NULL-terminated list of tables for cli_args_init. */
#define CLI_TABLES(...) ((const struct cli_option *const[]){__VA_ARGS__, NULL})

/* At most this many options in the tables of one command. */
#define CLI_ARGS_MAX 80

/* Stop at the first operand (what follows is another command's). */
#define CLI_ARGS_IN_ORDER 1u

struct cli_args {
    /* After each option: */
    const char *value; /* its value (NULL when none was given) */
    const char *name;  /* "--name" as the table spells it, for messages */
    /* After the end: */
    int status;      /* CLI_EXIT_OK (also after --help), or CLI_EXIT_USAGE */
    char **operands; /* the operands, in order, "--" removed */
    int n_operands;
    bool dashdash; /* the options ended with "--" (before operands[0]) */
    /* Private. */
    const char *command, *help;
    int argc;
    char **argv;
    const struct cli_option *table[CLI_ARGS_MAX];
    unsigned char table_of[CLI_ARGS_MAX]; /* which of the tables (0: the help) */
    size_t n;
    struct option longopts[CLI_ARGS_MAX + 2];
    char shortopts[3 * CLI_ARGS_MAX + 8];
    char name_buf[72];
    const char *last_value;
    bool overflow;
};

/*
 * Prepares to parse argv[1..argc) of `command` with the options of `tables`
 * (CLI_TABLES(...)); -h and --help are added. `help` is printed for them.
 * Resets getopt's state, so commands may parse one after another.
 */
void cli_args_init(struct cli_args *a, const char *command, const char *help, int argc, char **argv,
                   unsigned flags, const struct cli_option *const *tables);

/*
 * The next option's id (with a->value and a->name set), 0 at the end (the
 * operands set), or -1 when parsing stopped: the help was printed
 * (a->status CLI_EXIT_OK) or a usage error was (a->status CLI_EXIT_USAGE).
 */
int cli_args_next(struct cli_args *a);

/* After the end: operand i, or NULL when there are fewer. */
const char *cli_args_operand(const struct cli_args *a, int i);

/* After the end: true when there are at most `max` operands; else prints
 * "unexpected argument 'X'" as a usage error and returns false. */
bool cli_args_at_most(const struct cli_args *a, int max);

/* jansson's object (<jansson.h>), for the commands that print JSON. */
struct json_t;

/*
 * --json output: prints `root` on one line of stdout and drops it (NULL: out
 * of memory). Returns CLI_EXIT_OK, or CLI_EXIT_FAILURE after saying why.
 */
int cli_json_print(const char *command, struct json_t *root);

/* A JSON string of `len` bytes of text; bytes that are not UTF-8 become '?'. */
struct json_t *cli_json_text(const char *text, size_t len);

/* Prints a command's help; a line "@FAMILIES@" in it becomes the model
 * families of the engines' registry (name, summary, options), one a line. */
void cli_print_help(const char *help);

#endif

/*
 * What `memfit analyze` and `memfit plot` share: the options that choose
 * and fit the run, opening the log with the exit codes both promise, and
 * the text of the leak rules for their help.
 */
#ifndef MEMFIT_CLI_ANALYZE_COMMON_H
#define MEMFIT_CLI_ANALYZE_COMMON_H

#include "cli.h"

/* The options both commands take besides --warmup and --run. */
#define ANALYZE_WINDOW_HELP                                                                        \
    "  --since D|TIME     read the run from D after its start (90s, 5m, 1h) or from an\n"          \
    "                     RFC 3339 time (2026-11-23T19:45:00Z)\n"                                  \
    "  --until D|TIME     read the run up to D after its start, or up to that time\n"              \
    "  --period D|auto|off  the period of a periodic workload (one epoch, one request\n"           \
    "                     cycle); auto (default) detects it, off fits the samples only\n"

/* The leak rules, as docs/analyze.md states them (kept in step by hand). */
#define ANALYZE_RULES_HELP                                                                         \
    "Trend and leak verdict: after leaving the first 10% of the sampled span out\n"                \
    "(--warmup), an ordinary least-squares line is fitted to memory in use against t\n"            \
    "(and separately to RSS); its slope is shown in MB/h, with MB = 10^6 bytes.\n"                 \
    "When the series is periodic (a period of 4 samples or more found by\n"                        \
    "autocorrelation, or --period) and the fit holds 4 full periods or more, the\n"                \
    "line is fitted to the lowest value of each period instead, so memory that an\n"               \
    "epoch takes and gives back does not hide what it keeps.\n"                                    \
    "  insufficient data  fewer than 10 fitted samples or a fitted span under 10 s\n"              \
    "  leak               slope > 0, R^2 >= 0.8, and the growth over the fitted span\n"            \
    "                     (slope x span) >= 5% of the fitted mean and >= 1 MB\n"                   \
    "  possible leak      the same growth with 0.5 <= R^2 < 0.8\n"                                 \
    "  no leak            anything else (a flat series too)\n"                                     \
    "The verdict judges what the monitor judged: the cgroup's memory in use, or with\n"            \
    "no cgroup limit the watched process tree's RSS (the machine's memory when no\n"               \
    "process was watched).\n"                                                                      \
    "For a leak or possible leak with a known limit, the time until the fitted line\n"             \
    "reaches the limit is shown (\"at this rate the limit is reached in ~N min\").\n"

/* The ids of analyze_window_options (a command's own ids stay below 1000: letters are ids too). */
enum {
    ANALYZE_OPT_WARMUP = 1200,
    ANALYZE_OPT_RUN,
    ANALYZE_OPT_PERIOD,
    ANALYZE_OPT_SINCE,
    ANALYZE_OPT_UNTIL,
};

/* --warmup, --run, --period, --since, --until: a fragment of both commands' tables. */
extern const struct cli_option analyze_window_options[];

/*
 * Takes option `id` of analyze_window_options (its value in a->value) into
 * *opts. Returns CLI_EXIT_OK, or CLI_EXIT_USAGE after printing why.
 */
int analyze_window_option(const char *command, const struct cli_args *a, int id,
                          struct memfit_analyze_options *opts);

/*
 * Opens the log ("-": standard input). Returns CLI_EXIT_OK with *out set; CLI_EXIT_USAGE (2) when
 * the file cannot be read or an option is out of range; CLI_EXIT_FAILURE
 * when the log holds no samples or on another failure. Messages printed.
 */
int analyze_common_open(const char *path, const struct memfit_analyze_options *opts,
                        memfit_analysis **out);

#endif

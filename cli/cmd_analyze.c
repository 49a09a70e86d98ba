/*
 * `memfit analyze`: the report of a monitor log — statistics, alert-level
 * times, OOM events, exit, gaps and the leak verdict — as text or JSON.
 * The numbers come from memfit_analysis_open(); this file only parses the
 * command line and maps failures to exit codes.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "analyze_common.h"

const char cmd_analyze_help[] =
    "Usage: memfit analyze FILE.jsonl [--json] [--warmup PERCENT] [--all-runs] [--run N]\n"
    "                      [--since D|TIME] [--until D|TIME] [--period D|auto|off]\n"
    "\n"
    "Reads a log written by `memfit monitor --log` and reports, for the last run\n"
    "that has samples (or run N, or every run with --all-runs): duration, samples,\n"
    "gaps (steps longer than 3x the interval), min/mean/p50/p95/max of the working\n"
    "set and of RSS, the limit and the peak percent, time in each alert level, level\n"
    "changes, OOM events, the command's exit, pid restarts, skipped lines, and the\n"
    "growth trend with a leak verdict. FILE - reads standard input.\n"
    "\n"
    "Options:\n"
    "  --json             one JSON document (schema in docs/analyze.md)\n"
    "  --warmup PERCENT   share of the sampled span left out of the trend (default 10%)\n"
    "  --all-runs         report every run of the log\n"
    "  --run N            report run N (1 = the first run of the log)\n" ANALYZE_WINDOW_HELP
    "\n" ANALYZE_RULES_HELP "\n"
    "Exit status: 0 report written, 1 the log holds no samples (or another failure),\n"
    "2 usage error or the file cannot be read.\n";

enum { OPT_JSON = 1, OPT_ALL_RUNS };

static const struct cli_option options[] = {
    {"json", 0, CLI_ARG_NONE, OPT_JSON},
    {"all-runs", 0, CLI_ARG_NONE, OPT_ALL_RUNS},
    {0},
};

int cmd_analyze(int argc, char **argv)
{
    struct memfit_analyze_options opts = memfit_analyze_options_default();
    bool json = false;
    struct cli_args args;
    cli_args_init(&args, "analyze", cmd_analyze_help, argc, argv, 0,
                  CLI_TABLES(options, analyze_window_options));
    int id;
    while ((id = cli_args_next(&args)) > 0) {
        if (id == OPT_JSON)
            json = true;
        else if (id == OPT_ALL_RUNS)
            opts.all_runs = true;
        else if (analyze_window_option("analyze", &args, id, &opts) != CLI_EXIT_OK)
            return CLI_EXIT_USAGE;
    }
    if (id < 0)
        return args.status;
    if (args.n_operands > 1)
        return cli_usage("analyze", "one log file only ('%s' and '%s')", args.operands[0],
                         args.operands[1]);
    const char *path = cli_args_operand(&args, 0);
    if (!path)
        return cli_usage("analyze", "missing the log file");

    memfit_analysis *a;
    int rc = analyze_common_open(path, &opts, &a);
    if (rc != CLI_EXIT_OK)
        return rc;
    enum memfit_status st =
        json ? memfit_analysis_write_json(a, stdout) : memfit_analysis_write_report(a, stdout);
    memfit_analysis_close(a);
    return st == MEMFIT_OK ? CLI_EXIT_OK : cli_fail_status(st);
}

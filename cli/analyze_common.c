/* Options and log opening shared by `memfit analyze` and `memfit plot`. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "analyze_common.h"

int analyze_common_option(int argc, char **argv, int i, const char *command,
                          struct memfit_analyze_options *opts)
{
    const char *arg = argv[i];
    bool warmup = strcmp(arg, "--warmup") == 0, run = strcmp(arg, "--run") == 0;
    if (!warmup && !run)
        return 0;
    if (i + 1 >= argc) {
        cli_usage(command, "%s needs a value", arg);
        return -1;
    }
    const char *value = argv[i + 1];
    if (warmup) {
        if (!cli_opt_percent(command, arg, value, &opts->warmup_percent))
            return -1;
        if (opts->warmup_percent > 90.0) {
            cli_usage(command, "--warmup %s: at most 90%%", value);
            return -1;
        }
    } else {
        long long n;
        if (!cli_opt_int(command, arg, value, 1, 1000000000, &n))
            return -1;
        opts->run = (unsigned)n;
    }
    return 2;
}

int analyze_common_open(const char *path, const struct memfit_analyze_options *opts,
                        memfit_analysis **out)
{
    memfit_analysis *a;
    enum memfit_status st = strcmp(path, "-") == 0
                                ? memfit_analysis_open_stream(stdin, "(stdin)", opts, &a)
                                : memfit_analysis_open(path, opts, &a);
    switch (st) {
    case MEMFIT_OK:
        break;
    case MEMFIT_E_NOT_FOUND:
    case MEMFIT_E_PERMISSION:
    case MEMFIT_E_IO:
        fprintf(stderr, "memfit: cannot read the log: %s\n", memfit_last_error());
        return CLI_EXIT_USAGE;
    case MEMFIT_E_RANGE:
        fprintf(stderr, "memfit: %s\n", memfit_last_error());
        return CLI_EXIT_USAGE;
    default:
        return cli_fail_status(st);
    }
    struct memfit_log_info info;
    memfit_analysis_get_info(a, &info);
    struct memfit_run_summary run = {0};
    if (info.n_runs)
        memfit_analysis_get_run(a, info.selected_run, &run);
    if (info.n_samples == 0 || (!opts->all_runs && run.n_samples == 0)) {
        if (info.n_samples == 0)
            cli_fail("%s: no samples (%llu line%s, %u run%s, %llu malformed)", path,
                     (unsigned long long)info.n_lines, info.n_lines == 1 ? "" : "s", info.n_runs,
                     info.n_runs == 1 ? "" : "s", (unsigned long long)info.n_malformed);
        else
            cli_fail("%s: run %u has no samples", path, run.number);
        memfit_analysis_close(a);
        return CLI_EXIT_FAILURE;
    }
    *out = a;
    return CLI_EXIT_OK;
}

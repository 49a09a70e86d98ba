/* Options and log opening shared by `memfit analyze` and `memfit plot`. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "analyze_common.h"

/* --since/--until: a duration from the run's start, or an RFC 3339 time. */
static bool window_bound(const char *command, const char *option, const char *text, double *t_s,
                         double *unix_s)
{
    if (strlen(text) >= 10 && text[4] == '-' && text[7] == '-') {
        if (memfit_analysis_parse_time(text, unix_s) == MEMFIT_OK)
            return true;
        cli_usage(command, "%s: %s", option, memfit_last_error());
        return false;
    }
    uint64_t ns;
    if (!cli_opt_duration(command, option, text, &ns))
        return false;
    *t_s = (double)ns / 1e9;
    return true;
}

const struct cli_option analyze_window_options[] = {
    {"warmup", 0, CLI_ARG_REQUIRED, ANALYZE_OPT_WARMUP},
    {"run", 0, CLI_ARG_REQUIRED, ANALYZE_OPT_RUN},
    {"period", 0, CLI_ARG_REQUIRED, ANALYZE_OPT_PERIOD},
    {"since", 0, CLI_ARG_REQUIRED, ANALYZE_OPT_SINCE},
    {"until", 0, CLI_ARG_REQUIRED, ANALYZE_OPT_UNTIL},
    {0},
};

int analyze_window_option(const char *command, const struct cli_args *a, int id,
                          struct memfit_analyze_options *opts)
{
    const char *arg = a->name, *value = a->value;
    long long n;
    uint64_t ns;
    switch (id) {
    case ANALYZE_OPT_WARMUP:
        if (!cli_opt_percent(command, arg, value, &opts->warmup_percent))
            return CLI_EXIT_USAGE;
        if (opts->warmup_percent > 90.0)
            return cli_usage(command, "--warmup %s: at most 90%%", value);
        break;
    case ANALYZE_OPT_RUN:
        if (!cli_opt_int(command, arg, value, 1, 1000000000, &n))
            return CLI_EXIT_USAGE;
        opts->run = (unsigned)n;
        break;
    case ANALYZE_OPT_PERIOD:
        if (strcmp(value, "off") == 0) {
            opts->period_s = -1.0;
        } else if (strcmp(value, "auto") == 0) {
            opts->period_s = 0.0;
        } else {
            if (!cli_opt_duration(command, arg, value, &ns))
                return CLI_EXIT_USAGE;
            if (ns == 0)
                return cli_usage(command, "--period %s: a period longer than 0, or auto, or off",
                                 value);
            opts->period_s = (double)ns / 1e9;
        }
        break;
    case ANALYZE_OPT_SINCE:
        if (!window_bound(command, arg, value, &opts->since_s, &opts->since_unix_s))
            return CLI_EXIT_USAGE;
        break;
    case ANALYZE_OPT_UNTIL:
        if (!window_bound(command, arg, value, &opts->until_s, &opts->until_unix_s))
            return CLI_EXIT_USAGE;
        break;
    default:
        return cli_usage(command, "internal error: option %d", id);
    }
    if ((id == ANALYZE_OPT_SINCE || id == ANALYZE_OPT_UNTIL) &&
        (opts->since_s > opts->until_s ||
         (!isnan(opts->since_unix_s) && !isnan(opts->until_unix_s) &&
          opts->since_unix_s > opts->until_unix_s)))
        return cli_usage(command, "--until is before --since");
    return CLI_EXIT_OK;
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
        if (info.n_samples == 0 && info.n_outside_window)
            cli_fail("%s: no samples in the window (%llu outside it)", path,
                     (unsigned long long)info.n_outside_window);
        else if (info.n_samples == 0)
            cli_fail("%s: no samples (%llu line%s, %u run%s, %llu malformed)", path,
                     (unsigned long long)info.n_lines, info.n_lines == 1 ? "" : "s", info.n_runs,
                     info.n_runs == 1 ? "" : "s", (unsigned long long)info.n_malformed);
        else
            cli_fail("%s: run %u has no samples%s", path, run.number,
                     info.n_outside_window ? " in the window" : "");
        memfit_analysis_close(a);
        return CLI_EXIT_FAILURE;
    }
    *out = a;
    return CLI_EXIT_OK;
}

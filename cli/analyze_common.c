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

int analyze_common_option(int argc, char **argv, int i, const char *command,
                          struct memfit_analyze_options *opts)
{
    static const char *const names[] = {"--warmup", "--run", "--period", "--since", "--until"};
    const char *arg = argv[i];
    size_t which = 0;
    while (which < sizeof(names) / sizeof(names[0]) && strcmp(arg, names[which]) != 0)
        which++;
    if (which == sizeof(names) / sizeof(names[0]))
        return 0;
    if (i + 1 >= argc) {
        cli_usage(command, "%s needs a value", arg);
        return -1;
    }
    const char *value = argv[i + 1];
    long long n;
    uint64_t ns;
    switch (which) {
    case 0: /* --warmup */
        if (!cli_opt_percent(command, arg, value, &opts->warmup_percent))
            return -1;
        if (opts->warmup_percent > 90.0) {
            cli_usage(command, "--warmup %s: at most 90%%", value);
            return -1;
        }
        break;
    case 1: /* --run */
        if (!cli_opt_int(command, arg, value, 1, 1000000000, &n))
            return -1;
        opts->run = (unsigned)n;
        break;
    case 2: /* --period */
        if (strcmp(value, "off") == 0) {
            opts->period_s = -1.0;
        } else if (strcmp(value, "auto") == 0) {
            opts->period_s = 0.0;
        } else {
            if (!cli_opt_duration(command, arg, value, &ns))
                return -1;
            if (ns == 0) {
                cli_usage(command, "--period %s: a period longer than 0, or auto, or off", value);
                return -1;
            }
            opts->period_s = (double)ns / 1e9;
        }
        break;
    case 3: /* --since */
        if (!window_bound(command, arg, value, &opts->since_s, &opts->since_unix_s))
            return -1;
        break;
    default: /* --until */
        if (!window_bound(command, arg, value, &opts->until_s, &opts->until_unix_s))
            return -1;
        break;
    }
    if (which >= 3 && (opts->since_s > opts->until_s ||
                       (!isnan(opts->since_unix_s) && !isnan(opts->until_unix_s) &&
                        opts->since_unix_s > opts->until_unix_s))) {
        cli_usage(command, "--until is before --since");
        return -1;
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

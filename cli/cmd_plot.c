/*
 * `memfit plot`: draws a monitor log as an SVG chart (working set, RSS,
 * limit, alert bands, level changes, OOM kills, the trend) with
 * memfit_plot_write_svg(), which never leaves a half-written file.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "analyze_common.h"

const char cmd_plot_help[] =
    "Usage: memfit plot FILE.jsonl -o CHART.svg [--title TEXT] [--width PX] [--height PX]\n"
    "                   [--warmup PERCENT] [--run N] [--since D|TIME] [--until D|TIME]\n"
    "                   [--period D|auto|off]\n"
    "\n"
    "Draws the last run of a `memfit monitor --log` file that has samples (or run N)\n"
    "as an SVG chart: memory in use and RSS over time, the limit with the warning and\n"
    "critical bands under it, level changes, OOM kills (red), gaps (grey), and the\n"
    "least-squares trend of memory in use (dashed) over the fitted span. The\n"
    "subtitle gives the verdict, the slope in MB/h (MB = 10^6 bytes), R^2, and the\n"
    "wall-clock start. The chart is written to a temporary file in the same folder\n"
    "and renamed, so CHART.svg is never half-written. FILE - reads standard input.\n"
    "\n"
    "Options:\n"
    "  -o, --output FILE  the SVG to write (required)\n"
    "  --title TEXT       the title (default: \"Memory of <command>\")\n"
    "  --width PX         width, 320 to 10000 (default 1000)\n"
    "  --height PX        height, 240 to 10000 (default 500)\n"
    "  --warmup PERCENT   share of the sampled span left out of the trend (default 10%)\n"
    "  --run N            draw run N (1 = the first run of the log)\n" ANALYZE_WINDOW_HELP "\n"
    "See `memfit help analyze` for the leak rules.\n"
    "\n"
    "Exit status: 0 chart written, 1 the log holds no samples or the chart could not\n"
    "be written, 2 usage error or the log cannot be read.\n";

int cmd_plot(int argc, char **argv)
{
    if (cli_wants_help(argc, argv, cmd_plot_help))
        return CLI_EXIT_OK;
    struct memfit_analyze_options opts = memfit_analyze_options_default();
    struct memfit_plot_options plot = memfit_plot_options_default();
    const char *path = NULL, *output = NULL;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        int used = analyze_common_option(argc, argv, i, "plot", &opts);
        if (used < 0)
            return CLI_EXIT_USAGE;
        if (used > 0) {
            i += used - 1;
            continue;
        }
        bool takes_value = strcmp(arg, "-o") == 0 || strcmp(arg, "--output") == 0 ||
                           strcmp(arg, "--title") == 0 || strcmp(arg, "--width") == 0 ||
                           strcmp(arg, "--height") == 0;
        if (takes_value && i + 1 >= argc)
            return cli_usage("plot", "%s needs a value", arg);
        long long n;
        if (strcmp(arg, "-o") == 0 || strcmp(arg, "--output") == 0) {
            output = argv[++i];
        } else if (strcmp(arg, "--title") == 0) {
            plot.title = argv[++i];
        } else if (strcmp(arg, "--width") == 0) {
            if (!cli_opt_int("plot", arg, argv[++i], 320, 10000, &n))
                return CLI_EXIT_USAGE;
            plot.width = (unsigned)n;
        } else if (strcmp(arg, "--height") == 0) {
            if (!cli_opt_int("plot", arg, argv[++i], 240, 10000, &n))
                return CLI_EXIT_USAGE;
            plot.height = (unsigned)n;
        } else if (arg[0] == '-' && arg[1] != '\0') {
            return cli_usage("plot", "unknown option '%s'", arg);
        } else if (path) {
            return cli_usage("plot", "one log file only ('%s' and '%s')", path, arg);
        } else {
            path = arg;
        }
    }
    if (!path)
        return cli_usage("plot", "missing the log file");
    if (!output || !output[0])
        return cli_usage("plot", "missing -o CHART.svg");

    memfit_analysis *a;
    int rc = analyze_common_open(path, &opts, &a);
    if (rc != CLI_EXIT_OK)
        return rc;
    enum memfit_status st = memfit_plot_write_svg(a, &plot, output);
    memfit_analysis_close(a);
    if (st != MEMFIT_OK)
        return cli_fail_status(st);
    return CLI_EXIT_OK;
}

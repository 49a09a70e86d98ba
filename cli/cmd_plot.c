/*
 * `memfit plot`: draws a monitor log as an SVG or PNG chart (working set,
 * RSS, limit, alert bands, level changes, OOM kills, the trend) with
 * memfit_plot_write(), which never leaves a half-written file; with
 * --every it keeps redrawing (memfit_plot_redraw) while the log grows,
 * until the run's exit record, a long silence, or SIGINT/SIGTERM.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"
#include "analyze_common.h"

const char cmd_plot_help[] =
    "Usage: memfit plot FILE.jsonl -o CHART.svg|CHART.png [--format svg|png]\n"
    "                   [--title TEXT] [--width PX] [--height PX] [--warmup PERCENT]\n"
    "                   [--run N] [--since D|TIME] [--until D|TIME] [--period D|auto|off]\n"
    "                   [--every DURATION [--idle DURATION]]\n"
    "\n"
    "Draws the last run of a `memfit monitor --log` file that has samples (or run N)\n"
    "as a chart: memory in use and RSS over time, the limit with the warning and\n"
    "critical bands under it, level changes, OOM kills (red), gaps (grey), and the\n"
    "least-squares trend of memory in use (dashed) over the fitted span. The\n"
    "subtitle gives the verdict, the slope in MB/h (MB = 10^6 bytes), R^2, and the\n"
    "wall-clock start. The chart is an SVG document, or a PNG image that memfit\n"
    "paints itself (same layout; text in a built-in bitmap font) when CHART ends in\n"
    ".png or --format png is given. It is written to a temporary file in the same\n"
    "folder and renamed, so CHART is never half-written. FILE - reads standard input.\n"
    "\n"
    "Live chart: with --every, the log is read again and the chart rewritten every\n"
    "DURATION while `memfit monitor` appends to it, until the run's exit record is\n"
    "drawn, the log has not changed for --idle, or SIGINT/SIGTERM. A line per\n"
    "redraw goes to standard error (rewritten in place on a terminal). Each redraw\n"
    "reads the whole log, so redraws are spaced to at least 20 times what the last\n"
    "one took (a day of 1 s samples takes about 0.35 s of CPU to read).\n"
    "\n"
    "Options:\n"
    "  -o, --output FILE  the chart to write (required)\n"
    "  --format FORMAT    svg or png (default: png for a name ending in .png, else svg)\n"
    "  --title TEXT       the title (default: \"Memory of <command>\")\n"
    "  --width PX         width, 320 to 10000 (default 1000)\n"
    "  --height PX        height, 240 to 10000 (default 500)\n"
    "  --warmup PERCENT   share of the sampled span left out of the trend (default 10%)\n"
    "  --run N            draw run N (1 = the first run of the log)\n" ANALYZE_WINDOW_HELP
    "  --every DURATION   redraw every DURATION (100ms to 1d: 500ms, 5s, 1m)\n"
    "  --idle DURATION    with --every, stop when the log has not changed for this\n"
    "                     long (default: 10 x --every, at least 5m; 0: never)\n"
    "\n"
    "See `memfit help analyze` for the leak rules.\n"
    "\n"
    "Exit status: 0 chart written (with --every: the run ended, the log went quiet,\n"
    "or a signal stopped it), 1 the log holds no samples or the chart could not be\n"
    "written (with --every: or the log could no longer be read), 2 usage error or\n"
    "the log cannot be read.\n";

static volatile sig_atomic_t stop_signal;

static void on_stop(int sig)
{
    stop_signal = sig;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU time of this process, to weigh what a redraw costs. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Sleeps up to `seconds`; a signal that asks to stop cuts it short. */
static void nap(double seconds)
{
    double end = now_s() + seconds;
    while (!stop_signal) {
        double left = end - now_s();
        if (left <= 0.0)
            break;
        struct timespec ts = {(time_t)left, (long)((left - floor(left)) * 1e9)};
        nanosleep(&ts, NULL);
    }
}

struct log_stamp {
    bool ok;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
};

static struct log_stamp log_stamp(const char *path)
{
    struct stat st;
    struct log_stamp s = {0};
    if (stat(path, &st) == 0)
        s = (struct log_stamp){true, st.st_dev, st.st_ino, st.st_size, st.st_mtim};
    return s;
}

static bool same_stamp(const struct log_stamp *a, const struct log_stamp *b)
{
    return a->ok == b->ok && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

/* One status line: rewritten in place on a terminal, a plain line elsewhere. */
static void status_line(bool tty, const char *fmt, ...) MEMFIT_PRINTF(2, 3);

static void status_line(bool tty, const char *fmt, ...)
{
    char line[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (tty)
        fprintf(stderr, "\r\033[K%s", line);
    else
        fprintf(stderr, "%s\n", line);
    fflush(stderr);
}

/* --every: redraw whenever the log changed, until the run ends, the log
 * stays unchanged for idle_s (0: never), or SIGINT/SIGTERM. */
static int plot_live(const char *path, const struct memfit_analyze_options *opts,
                     const struct memfit_plot_options *plot, const char *output, double every_s,
                     double idle_s)
{
    struct sigaction sa = {0}, old_int, old_term;
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    bool tty = cli_isatty(2);
    struct log_stamp last = {0};
    double changed_at = now_s();
    unsigned long long n_redraws = 0;
    int rc = CLI_EXIT_OK;
    bool first = true;
    double pause_s = every_s;
    while (!stop_signal) {
        struct log_stamp cur = log_stamp(path);
        if (first || !same_stamp(&cur, &last)) {
            last = cur;
            changed_at = now_s();
            double t0 = now_s(), cpu0 = cpu_s();
            struct memfit_plot_redraw_info info;
            enum memfit_status st = memfit_plot_redraw(path, opts, plot, output, &info);
            if (st != MEMFIT_OK) {
                if (tty)
                    fputc('\n', stderr);
                tty = false;
                rc = cli_fail_status(st);
                break;
            }
            first = false;
            if (info.written) {
                n_redraws++;
                status_line(tty, "%s: redrawn (%llu sample%s to t = %.1f s%s) in %.0f ms", output,
                            (unsigned long long)info.n_samples, info.n_samples == 1 ? "" : "s",
                            info.last_sample_s, info.ended ? ", the run has ended" : "",
                            (now_s() - t0) * 1e3);
            } else {
                status_line(tty, "%s: waiting for samples in %s", output, path);
            }
            if (info.ended)
                break;
            /* A redraw reads the whole log (0.35 s of CPU for a day of 1 s
             * samples): space them to at least 20 times their cost, so a
             * short --every on a long log stays under 5 % of a core. */
            pause_s = fmax(every_s, 20.0 * (cpu_s() - cpu0));
        } else if (idle_s > 0.0 && now_s() - changed_at >= idle_s) {
            if (tty)
                fputc('\n', stderr);
            status_line(false, "%s: %s unchanged for %.0f s: stopping", output, path, idle_s);
            if (!n_redraws)
                rc = cli_fail("%s: no samples to draw", path);
            tty = false;
            break;
        }
        nap(pause_s);
    }
    if (tty)
        fputc('\n', stderr);
    if (stop_signal && rc == CLI_EXIT_OK)
        fprintf(stderr, "memfit plot: stopped by %s after %llu redraw%s\n",
                stop_signal == SIGINT ? "SIGINT" : "SIGTERM", n_redraws, n_redraws == 1 ? "" : "s");
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    return rc;
}

enum { OPT_OUTPUT = 'o', OPT_TITLE = 1, OPT_WIDTH, OPT_HEIGHT, OPT_FORMAT, OPT_EVERY, OPT_IDLE };

static const struct cli_option options[] = {
    {"output", 'o', CLI_ARG_REQUIRED, OPT_OUTPUT}, {"title", 0, CLI_ARG_REQUIRED, OPT_TITLE},
    {"width", 0, CLI_ARG_REQUIRED, OPT_WIDTH},     {"height", 0, CLI_ARG_REQUIRED, OPT_HEIGHT},
    {"format", 0, CLI_ARG_REQUIRED, OPT_FORMAT},   {"every", 0, CLI_ARG_REQUIRED, OPT_EVERY},
    {"idle", 0, CLI_ARG_REQUIRED, OPT_IDLE},       {0},
};

int cmd_plot(int argc, char **argv)
{
    struct memfit_analyze_options opts = memfit_analyze_options_default();
    struct memfit_plot_options plot = memfit_plot_options_default();
    const char *output = NULL;
    uint64_t every_ns = 0, idle_ns = 0;
    bool idle_given = false;
    struct cli_args args;
    cli_args_init(&args, "plot", cmd_plot_help, argc, argv, 0,
                  CLI_TABLES(options, analyze_window_options));
    int id;
    while ((id = cli_args_next(&args)) > 0) {
        const char *v = args.value;
        long long n;
        switch (id) {
        case OPT_OUTPUT:
            output = v;
            break;
        case OPT_TITLE:
            plot.title = v;
            break;
        case OPT_WIDTH:
            if (!cli_opt_int("plot", args.name, v, 320, 10000, &n))
                return CLI_EXIT_USAGE;
            plot.width = (unsigned)n;
            break;
        case OPT_HEIGHT:
            if (!cli_opt_int("plot", args.name, v, 240, 10000, &n))
                return CLI_EXIT_USAGE;
            plot.height = (unsigned)n;
            break;
        case OPT_FORMAT:
            if (memfit_plot_format_parse(v, &plot.format) != MEMFIT_OK)
                return cli_usage("plot", "--format: %s", memfit_last_error());
            break;
        case OPT_EVERY:
            if (!cli_opt_duration("plot", args.name, v, &every_ns))
                return CLI_EXIT_USAGE;
            if (every_ns < 100000000ULL || every_ns > 86400000000000ULL)
                return cli_usage("plot", "--every %s: expected 100ms to 1d", v);
            break;
        case OPT_IDLE:
            if (!cli_opt_duration("plot", args.name, v, &idle_ns))
                return CLI_EXIT_USAGE;
            idle_given = true;
            break;
        default:
            if (analyze_window_option("plot", &args, id, &opts) != CLI_EXIT_OK)
                return CLI_EXIT_USAGE;
        }
    }
    if (id < 0)
        return args.status;
    if (args.n_operands > 1)
        return cli_usage("plot", "one log file only ('%s' and '%s')", args.operands[0],
                         args.operands[1]);
    const char *path = cli_args_operand(&args, 0);
    if (!path)
        return cli_usage("plot", "missing the log file");
    if (!output || !output[0])
        return cli_usage("plot", "missing -o CHART.svg or -o CHART.png");
    if (idle_given && !every_ns)
        return cli_usage("plot", "--idle goes with --every");
    if (every_ns) {
        if (strcmp(path, "-") == 0)
            return cli_usage("plot", "--every needs a log file to read again, not -");
        double every_s = (double)every_ns / 1e9;
        double idle_s = idle_given ? (double)idle_ns / 1e9 : fmax(300.0, 10.0 * every_s);
        struct stat st;
        if (stat(path, &st) != 0)
            return cli_usage("plot", "cannot read the log %s: %s", path, strerror(errno));
        return plot_live(path, &opts, &plot, output, every_s, idle_s);
    }

    memfit_analysis *a;
    int rc = analyze_common_open(path, &opts, &a);
    if (rc != CLI_EXIT_OK)
        return rc;
    enum memfit_status st = memfit_plot_write(a, &plot, output);
    memfit_analysis_close(a);
    if (st != MEMFIT_OK)
        return cli_fail_status(st);
    return CLI_EXIT_OK;
}

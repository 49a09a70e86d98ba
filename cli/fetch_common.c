/*
 * Fetching through the store with progress (a bar on a terminal, plain
 * lines in logs) and Ctrl-C handling (see fetch_common.h), for `pull` and
 * the commands that fetch a model before running it.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "fetch_common.h"

static volatile int cancel_flag;

static void on_signal(int sig)
{
    (void)sig;
    __atomic_store_n(&cancel_flag, 1, __ATOMIC_RELAXED);
}

static void format_eta(double seconds, char *buf, size_t size)
{
    if (!(seconds >= 0) || seconds > 99 * 3600) {
        snprintf(buf, size, "--:--");
        return;
    }
    unsigned s = (unsigned)seconds;
    if (s >= 3600)
        snprintf(buf, size, "%u:%02u:%02u", s / 3600, s / 60 % 60, s % 60);
    else
        snprintf(buf, size, "%u:%02u", s / 60, s % 60);
}

void cli_progress_draw_bar(uint64_t done, uint64_t total, double rate, const char *extra)
{
    char d[32], t[32], r[32], eta[32];
    memfit_format_size(done, d, sizeof(d));
    memfit_format_size((uint64_t)rate, r, sizeof(r));
    if (total != MEMFIT_STORE_SIZE_UNKNOWN && total > 0) {
        double frac = (double)done / (double)total;
        char fill[31];
        int n = (int)(frac * 30);
        for (int i = 0; i < 30; i++)
            fill[i] = i < n ? '#' : '.';
        fill[30] = '\0';
        format_eta(rate > 0 ? (double)(total - done) / rate : -1, eta, sizeof(eta));
        fprintf(stderr, "\r[%s] %3d%% %s / %s  %s/s  ETA %s %s\033[K", fill, (int)(frac * 100), d,
                memfit_format_size(total, t, sizeof(t)), r, eta, extra ? extra : "");
    } else {
        fprintf(stderr, "\r%s  %s/s %s\033[K", d, r, extra ? extra : "");
    }
    fflush(stderr);
}

void cli_progress_print_line(const char *label, uint64_t done, uint64_t total, double rate,
                             const char *extra)
{
    char d[32], t[32], r[32];
    memfit_format_size(done, d, sizeof(d));
    memfit_format_size(rate > 0 ? (uint64_t)rate : 0, r, sizeof(r));
    if (total != MEMFIT_STORE_SIZE_UNKNOWN && total > 0)
        fprintf(stderr, "%s %s of %s (%d %%), %s/s%s%s\n", label, d,
                memfit_format_size(total, t, sizeof(t)),
                (int)((double)(done > total ? total : done) * 100.0 / (double)total), r,
                extra ? ", " : "", extra ? extra : "");
    else
        fprintf(stderr, "%s %s, %s/s%s%s\n", label, d, r, extra ? ", " : "", extra ? extra : "");
    fflush(stderr);
}

uint64_t cli_progress_interval_ns(void)
{
    const char *env = getenv("MEMFIT_PROGRESS_INTERVAL");
    uint64_t ns;
    if (env && env[0] && memfit_parse_duration(env, &ns) == MEMFIT_OK && ns > 0)
        return ns;
    return 5000000000ull;
}

static const char *progress_label(const struct cli_progress *b)
{
    return b->label ? b->label : "memfit: download";
}

/* The last plain line: the bytes, the mean rate and the time taken. */
static void end_lines(struct cli_progress *b)
{
    if (!b->lines || !b->drawn || b->ended)
        return;
    b->ended = true;
    double secs = (double)(memfit_now_ns() - b->start_ns) / 1e9;
    char took[48];
    snprintf(took, sizeof(took), "%s in %.1f s", b->done == b->total ? "done" : "stopped", secs);
    cli_progress_print_line(progress_label(b), b->done, b->total,
                            secs > 0 ? (double)b->done / secs : b->rate, took);
}

static int draw_progress(uint64_t done, uint64_t total, double rate, void *user)
{
    struct cli_progress *b = user;
    uint64_t now = memfit_now_ns();
    if (b->lines) {
        b->drawn = true;
        b->done = done;
        b->total = total;
        b->rate = rate;
        if (total != MEMFIT_STORE_SIZE_UNKNOWN && done == total) {
            end_lines(b);
        } else if (now - b->last_ns >= b->interval_ns) {
            b->last_ns = now;
            cli_progress_print_line(progress_label(b), done, total, rate, NULL);
        }
        return 0;
    }
    if (b->drawn && now - b->last_ns < 200000000u && done != total)
        return 0;
    b->last_ns = now;
    b->drawn = true;
    cli_progress_draw_bar(done, total, rate, NULL);
    return 0;
}

const int *cli_cancel_on_signals(struct cli_progress *bar)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    *bar = (struct cli_progress){0};
    sigaction(SIGINT, &sa, &bar->old_int);
    sigaction(SIGTERM, &sa, &bar->old_term);
    bar->signals_taken = true;
    return (const int *)&cancel_flag;
}

void cli_fetch_prepare(struct memfit_fetch_options *fo, struct cli_progress *bar, bool quiet)
{
    fo->cancel = cli_cancel_on_signals(bar);
    if (!quiet) {
        bar->lines = !cli_isatty(2);
        bar->interval_ns = cli_progress_interval_ns();
        bar->start_ns = bar->last_ns = memfit_now_ns();
        fo->progress = draw_progress;
        fo->progress_user = bar;
    }
}

void cli_fetch_done(struct cli_progress *bar)
{
    if (bar->lines)
        end_lines(bar);
    else if (bar->drawn)
        fputc('\n', stderr);
    bar->drawn = false;
    if (bar->signals_taken) { /* Ctrl-C does what it did before the fetch */
        sigaction(SIGINT, &bar->old_int, NULL);
        sigaction(SIGTERM, &bar->old_term, NULL);
        bar->signals_taken = false;
    }
}

bool cli_is_source_uri(const char *model)
{
    return strstr(model, "://") != NULL;
}

/*
 * Fetching through the store with a progress bar and Ctrl-C handling (see
 * fetch_common.h), for `pull`.
 */
#include <signal.h>
#include <stdio.h>
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

static int draw_progress(uint64_t done, uint64_t total, double rate, void *user)
{
    struct cli_progress *b = user;
    uint64_t now = memfit_now_ns();
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
    if (!quiet && cli_isatty(2)) {
        fo->progress = draw_progress;
        fo->progress_user = bar;
    }
}

void cli_fetch_done(struct cli_progress *bar)
{
    if (bar->drawn)
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

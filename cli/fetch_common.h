/*
 * Fetching model files through the store for `memfit pull`: the progress
 * bar on a terminal and the Ctrl-C behaviour (the fetch is cancelled
 * cleanly and the partial download kept). The commands that run models
 * fetch through the engines instead (engines_common.h).
 */
#ifndef MEMFIT_CLI_FETCH_COMMON_H
#define MEMFIT_CLI_FETCH_COMMON_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "memfit/memfit.h"

/* The progress display's state (zero it before use). */
struct cli_progress {
    uint64_t last_ns;
    bool drawn;
    /* Not a terminal: plain lines "LABEL DONE of TOTAL (P %), RATE/s" every
     * interval_ns (MEMFIT_PROGRESS_INTERVAL, default 5 s) and a last one. */
    bool lines, ended;
    const char *label; /* "memfit pull: model.gguf"; NULL: "memfit: download" */
    uint64_t interval_ns, start_ns, done, total;
    double rate;
    bool signals_taken; /* the handlers below are restored by cli_fetch_done */
    struct sigaction old_int, old_term;
};

/*
 * Draws "\r[####......]  42% DONE / TOTAL  RATE/s  ETA m:ss EXTRA" on stderr
 * (TOTAL MEMFIT_STORE_SIZE_UNKNOWN: the bytes and rate only), clearing the
 * rest of the line; `extra` may be NULL. Callers throttle.
 */
void cli_progress_draw_bar(uint64_t done, uint64_t total, double rate, const char *extra);

/*
 * The plain progress line for logs: "LABEL DONE of TOTAL (P %), RATE/s EXTRA\n"
 * on stderr (TOTAL MEMFIT_STORE_SIZE_UNKNOWN: "LABEL DONE, RATE/s EXTRA");
 * `extra` may be NULL.
 */
void cli_progress_print_line(const char *label, uint64_t done, uint64_t total, double rate,
                             const char *extra);

/* How often the plain progress line is printed: MEMFIT_PROGRESS_INTERVAL (a
 * duration, for tests and impatient logs), else 5 s. */
uint64_t cli_progress_interval_ns(void);

/*
 * Makes SIGINT/SIGTERM set the flag it returns (for an operation's `cancel`
 * option) instead of ending the process, so the library removes what it was
 * writing; `bar` is zeroed and keeps the old handlers until cli_fetch_done().
 */
const int *cli_cancel_on_signals(struct cli_progress *bar);

/*
 * Prepares `fo` for a fetch: SIGINT/SIGTERM set the cancel flag it points
 * to, and unless `quiet`, progress goes to stderr: the bar `bar` on a
 * terminal, else a plain line at most every 5 s and one at the end (set
 * bar->label after this call to name the file). Call cli_fetch_done() after.
 */
void cli_fetch_prepare(struct memfit_fetch_options *fo, struct cli_progress *bar, bool quiet);

/* Ends the bar's line when one was drawn (or prints the last plain line),
 * and gives SIGINT/SIGTERM back their handlers from before cli_fetch_prepare. */
void cli_fetch_done(struct cli_progress *bar);

/* True when `model` is a source URI (s3://, https://, hf://, file://...) rather than a path. */
bool cli_is_source_uri(const char *model);

#endif

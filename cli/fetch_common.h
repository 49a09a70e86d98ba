/*
 * Fetching model files through the store for the commands that take a
 * source (`pull`, `embed`): one progress bar on a terminal, one Ctrl-C
 * behaviour (the fetch is cancelled cleanly and the partial download kept).
 */
#ifndef MEMFIT_CLI_FETCH_COMMON_H
#define MEMFIT_CLI_FETCH_COMMON_H

#include <stdbool.h>
#include <stdint.h>

#include "memfit/memfit.h"

/* The progress bar's state (zero it before use). */
struct cli_progress {
    uint64_t last_ns;
    bool drawn;
};

/*
 * Prepares `fo` for an interactive fetch: SIGINT/SIGTERM set the cancel
 * flag it points to, and unless `quiet` or stderr is not a terminal, the
 * progress bar `bar` is drawn on stderr. Call cli_fetch_done() after.
 */
void cli_fetch_prepare(struct memfit_fetch_options *fo, struct cli_progress *bar, bool quiet);

/* Ends the bar's line when one was drawn. */
void cli_fetch_done(struct cli_progress *bar);

/* True when `model` is a source URI (s3://, https://, hf://, file://...) rather than a path. */
bool cli_is_source_uri(const char *model);

/*
 * Fetches one file from `sources` (tried in order) into the default cache
 * (MEMFIT_CACHE_DIR, ...) with the progress bar on a terminal, and returns
 * its cached path in *out_path (free with memfit_free). `sha256` may be
 * NULL. Fails as memfit_store_open / memfit_store_fetch (the message says why).
 */
enum memfit_status cli_fetch_model(const char *const *sources, size_t n_sources, const char *sha256,
                                   char **out_path);

#endif

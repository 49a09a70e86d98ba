/*
 * Opening models for the commands that run them (`run`, `models`, `embed`,
 * `generate`, `chat`) through the engines layer (memfit/engines.h), as
 * `serve` does: one budget policy, the cache, the lazy single-flight load
 * through the manager and the manager's refusals, with the figures and
 * where the budget came from.
 */
#ifndef MEMFIT_CLI_ENGINES_COMMON_H
#define MEMFIT_CLI_ENGINES_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memfit/memfit.h"

/* What a command names: a model file, a source URI or a manifest model. */
struct cli_model_spec {
    const char *command;  /* "embed", for messages */
    const char *model;    /* a path, a source URI, or a manifest model's name */
    const char *manifest; /* --manifest; NULL: ./memfit.yaml when MODEL is no file nor URI */
    const char *family;   /* for a path or URI; NULL: detected from the file */
    /* Model options from flags ("threads=4"), for a path or URI. A manifest
     * model takes its options from the manifest: flags there are an error
     * naming `option_flags` ("--threads, --interpolation"). */
    const char *const *options;
    size_t n_options;
    const char *option_flags;
    uint64_t budget_bytes;   /* --budget; 0: none */
    const char *budget_flag; /* its text as written */
};

/*
 * Opens the engines with the one model `spec` names and finds it. Returns a
 * CLI exit code (the error printed); on CLI_EXIT_OK close *out_engines with
 * memfit_engines_close (*out_model belongs to it).
 */
int cli_open_model(const struct cli_model_spec *spec, memfit_engines **out_engines,
                   memfit_engine_model **out_model);

/*
 * Opens a manifest's models (`run`, `models`) with the budget flag
 * (`budget_flag` its text, or NULL). Returns a CLI exit code (printed).
 */
int cli_open_manifest(const char *path, uint64_t budget_bytes, const char *budget_flag,
                      memfit_engines **out);

/* "budget: SIZE (SOURCE)" on stderr. */
void cli_print_budget(memfit_engines *engines);

/*
 * Acquires `model` through the manager (planned, fetched into the cache when
 * remote, with a line on stderr saying so, and loaded within the budget).
 * A refusal for memory is printed with the budget's size and source and
 * `hint` (what to change, may be NULL). Returns a CLI exit code.
 */
int cli_acquire(const char *command, memfit_engines *engines, memfit_engine_model *model,
                const char *hint, memfit_handle **out);

/* The process's peak RSS (VmHWM) in bytes, 0 when unreadable. */
uint64_t cli_peak_rss_bytes(void);

#endif

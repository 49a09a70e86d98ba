/*
 * Opening a manifest's models under a manager for the commands that use the
 * model manager (`run`, `models`): the manifest, the budget (resolved and
 * printed with where it came from), the manager with the manifest's
 * settings, and the models registered with their drivers.
 */
#ifndef MEMFIT_CLI_MANAGER_COMMON_H
#define MEMFIT_CLI_MANAGER_COMMON_H

#include <stdbool.h>
#include <stdint.h>

#include "memfit/memfit.h"

struct cli_managed {
    struct memfit_manifest *manifest;
    memfit_manager *mgr;
    memfit_vit_driver_config **configs; /* one per manifest model */
    uint64_t budget_bytes;
    char budget_source[256];
};

/*
 * Loads `manifest_path`, resolves the budget (flag `budget_flag` when
 * non-zero > MEMFIT_MAX_MEMORY_MB / MAX_MEMORY_USAGE_MB > the manifest's
 * budget > its percentage, or 80 %, of the cgroup limit or physical memory),
 * prints "budget: SIZE (SOURCE)" to stderr unless `quiet`, creates the
 * manager and registers the models. Returns a CLI exit code (the error is
 * printed); on CLI_EXIT_OK free with cli_managed_close().
 */
int cli_managed_open(const char *manifest_path, uint64_t budget_flag, bool quiet,
                     struct cli_managed *out);

void cli_managed_close(struct cli_managed *m);

#endif

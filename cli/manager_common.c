/*
 * Opening a manifest's models under a manager (see manager_common.h).
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "manager_common.h"

int cli_managed_open(const char *manifest_path, uint64_t budget_flag, bool quiet,
                     struct cli_managed *out)
{
    memset(out, 0, sizeof(*out));
    enum memfit_status st = memfit_manifest_load(manifest_path, &out->manifest);
    if (st != MEMFIT_OK)
        return cli_fail_status(st);
    const struct memfit_manifest *mf = out->manifest;
    struct memfit_budget_settings bs;
    memfit_budget_settings_default(&bs);
    bs.flag_bytes = budget_flag;
    bs.manifest_bytes = mf->budget_bytes;
    bs.manifest_percent = mf->budget_percent;
    bs.manifest_path = mf->path;
    st = memfit_budget_resolve(&bs, &out->budget_bytes, out->budget_source,
                               sizeof(out->budget_source));
    if (st != MEMFIT_OK) {
        cli_managed_close(out);
        return cli_fail_status(st);
    }
    if (!quiet) {
        char b[32];
        fprintf(stderr, "budget: %s (%s)\n", memfit_format_size(out->budget_bytes, b, sizeof(b)),
                out->budget_source);
    }
    struct memfit_manager_options o;
    memfit_manager_options_default(&o);
    o.budget_bytes = out->budget_bytes;
    o.default_keep_alive_s = mf->keep_alive_s;
    o.unloading_enabled = mf->unloading_enabled;
    o.admission_timeout_ms = mf->admission_timeout_ms;
    o.max_queue = mf->max_queue;
    memfit_manifest_apply_pressure(mf, &o);
    o.reaper_thread = false;
    if ((st = memfit_manager_options_from_config(&o)) != MEMFIT_OK ||
        (st = memfit_manager_create(&o, &out->mgr)) != MEMFIT_OK ||
        (st = memfit_manager_register_manifest(out->mgr, mf, &out->configs)) != MEMFIT_OK) {
        cli_managed_close(out);
        return cli_fail_status(st);
    }
    return CLI_EXIT_OK;
}

void cli_managed_close(struct cli_managed *m)
{
    memfit_manager_destroy(m->mgr);
    for (size_t i = 0; m->configs && i < m->manifest->n_models; i++)
        memfit_vit_driver_config_free(m->configs[i]);
    memfit_free(m->configs);
    memfit_manifest_free(m->manifest);
    memset(m, 0, sizeof(*m));
}

/*
 * Opening a manifest's models under a manager (see manager_common.h).
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "manager_common.h"

/* The limit the default budget is a share of: the cgroup's, else MemTotal. */
static uint64_t memory_limit(const char **name)
{
    struct memfit_cgroup *cg = memfit_calloc(1, sizeof(*cg));
    uint64_t limit = 0;
    if (cg && memfit_cgroup_read("", 0, cg) == MEMFIT_OK && cg->limit_bytes != MEMFIT_SYS_UNKNOWN &&
        cg->limit_bytes != 0) {
        limit = cg->limit_bytes;
        *name = "cgroup limit";
    }
    memfit_free(cg);
    memfit_clear_error();
    struct memfit_meminfo mi;
    if (memfit_meminfo_read("", &mi) == MEMFIT_OK && mi.total_bytes != MEMFIT_SYS_UNKNOWN &&
        (limit == 0 || mi.total_bytes < limit)) {
        limit = mi.total_bytes;
        *name = "physical memory";
    }
    memfit_clear_error();
    return limit;
}

static bool env_budget_set(void)
{
    const char *a = memfit_config_get("MEMFIT_MAX_MEMORY_MB");
    const char *b = memfit_config_get("MAX_MEMORY_USAGE_MB");
    return (a && *a) || (b && *b);
}

int cli_managed_open(const char *manifest_path, uint64_t budget_flag, bool quiet,
                     struct cli_managed *out)
{
    memset(out, 0, sizeof(*out));
    enum memfit_status st = memfit_manifest_load(manifest_path, &out->manifest);
    if (st != MEMFIT_OK)
        return cli_fail_status(st);
    const struct memfit_manifest *mf = out->manifest;
    uint64_t explicit_bytes = budget_flag;
    bool from_manifest = false;
    if (!explicit_bytes && !env_budget_set() && mf->budget_bytes) {
        explicit_bytes = mf->budget_bytes;
        from_manifest = true;
    }
    const char *limit_name = "physical memory";
    uint64_t limit = memory_limit(&limit_name);
    st = memfit_budget_resolve_size(explicit_bytes, limit, limit_name, mf->budget_percent,
                                    &out->budget_bytes, out->budget_source,
                                    sizeof(out->budget_source));
    if (st != MEMFIT_OK) {
        cli_managed_close(out);
        return cli_fail_status(st);
    }
    if (from_manifest)
        snprintf(out->budget_source, sizeof(out->budget_source), "%s: budget", mf->path);
    else if (budget_flag)
        snprintf(out->budget_source, sizeof(out->budget_source), "--budget");
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

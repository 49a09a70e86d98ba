/*
 * Opening models through the engines layer (see engines_common.h).
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "engines_common.h"
#include "fetch_common.h"

static bool path_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* "a, b, c" (or "none"): the manifest's model names, for messages. */
static void list_names(memfit_engines *e, char *buf, size_t size)
{
    size_t used = 0;
    snprintf(buf, size, "none");
    for (size_t i = 0; i < memfit_engines_count(e) && used < size; i++) {
        int n = snprintf(buf + used, size - used, "%s%s", i ? ", " : "",
                         memfit_engine_model_name(memfit_engines_get(e, i)));
        if (n < 0)
            break;
        used += (size_t)n;
    }
}

int cli_open_manifest(const char *path, uint64_t budget_bytes, const char *budget_flag,
                      memfit_engines **out)
{
    struct memfit_engines_options o;
    memfit_engines_options_default(&o);
    o.manifest_path = path;
    o.budget_bytes = budget_bytes;
    o.budget_flag = budget_bytes ? budget_flag : NULL;
    enum memfit_status st = memfit_engines_open(&o, out);
    return st == MEMFIT_OK ? CLI_EXIT_OK : cli_fail_status(st);
}

/* MODEL as a manifest model's name. */
static int open_by_name(const struct cli_model_spec *s, memfit_engines **out_e,
                        memfit_engine_model **out_m)
{
    const char *path = s->manifest ? s->manifest : MEMFIT_MANIFEST_DEFAULT_PATH;
    if (s->n_options)
        return cli_fail("%s: %s is model '%s' of manifest %s, which takes its options (%s) "
                        "from the manifest: set them in its `options:`, or name the model "
                        "file instead",
                        s->command, s->model, s->model, path, s->option_flags);
    memfit_engines *e;
    struct memfit_engines_options o;
    memfit_engines_options_default(&o);
    o.manifest_path = path;
    o.budget_bytes = s->budget_bytes;
    o.budget_flag = s->budget_bytes ? s->budget_flag : NULL;
    enum memfit_status st = memfit_engines_open(&o, &e);
    if (st != MEMFIT_OK)
        return cli_fail("%s: %s: not a file, so looked up as a model name: %s", s->command,
                        s->model, memfit_last_error());
    memfit_engine_model *m = memfit_engines_find(e, s->model);
    if (!m) {
        char names[1024];
        list_names(e, names, sizeof(names));
        memfit_engines_close(e);
        return cli_fail("%s: %s: no such file, and no model of that name in manifest %s (its "
                        "models: %s)",
                        s->command, s->model, path, names);
    }
    *out_e = e;
    *out_m = m;
    return CLI_EXIT_OK;
}

int cli_open_model(const struct cli_model_spec *s, memfit_engines **out_e,
                   memfit_engine_model **out_m)
{
    bool is_file = cli_is_source_uri(s->model) || path_exists(s->model);
    if (!is_file && (s->manifest || path_exists(MEMFIT_MANIFEST_DEFAULT_PATH)))
        return open_by_name(s, out_e, out_m);
    if (!is_file)
        return cli_fail("%s: %s: no such model file, and no manifest to look it up as a model "
                        "name (./%s is absent; --manifest FILE names one)",
                        s->command, s->model, MEMFIT_MANIFEST_DEFAULT_PATH);
    const char *sources[1] = {s->model};
    struct memfit_engines_options o;
    memfit_engines_options_default(&o);
    o.sources = sources;
    o.n_sources = 1;
    o.family = s->family;
    o.options = s->options;
    o.n_options = s->n_options;
    o.budget_bytes = s->budget_bytes;
    o.budget_flag = s->budget_bytes ? s->budget_flag : NULL;
    memfit_engines *e;
    enum memfit_status st = memfit_engines_open(&o, &e);
    if (st != MEMFIT_OK)
        return cli_fail("%s: %s", s->command, memfit_last_error());
    *out_e = e;
    *out_m = memfit_engines_get(e, 0);
    return CLI_EXIT_OK;
}

void cli_print_budget(memfit_engines *e)
{
    const char *source;
    char b[32];
    uint64_t size = memfit_engines_budget(e, &source);
    fprintf(stderr, "budget: %s (%s)\n", memfit_format_size(size, b, sizeof(b)), source);
}

int cli_acquire(const char *command, memfit_engines *e, memfit_engine_model *m, const char *hint,
                memfit_handle **out)
{
    /* The store fetches inside the manager: say so before the wait. */
    struct memfit_engine_plan p;
    struct memfit_fetch_options fo = {0};
    struct cli_progress bar = {0};
    if (memfit_engine_model_plan(m, &p) == MEMFIT_OK &&
        (strcmp(p.plan_source, "header") == 0 || strcmp(p.plan_source, "head-size") == 0)) {
        char b[32];
        fprintf(stderr, "%s: fetching model '%s' (%s) into the cache\n", command,
                memfit_engine_model_name(m), memfit_format_size(p.file_bytes, b, sizeof(b)));
        /* The bar on a terminal, and Ctrl-C stops the download cleanly. */
        cli_fetch_prepare(&fo, &bar, false);
        memfit_engine_model_set_fetch(m, fo.progress, fo.progress_user, fo.cancel);
    }
    memfit_clear_error();
    enum memfit_status st =
        memfit_manager_acquire(memfit_engines_manager(e), memfit_engine_model_name(m), -1, out);
    memfit_engine_model_set_fetch(m, NULL, NULL, NULL);
    cli_fetch_done(&bar);
    if (st == MEMFIT_OK)
        return CLI_EXIT_OK;
    const char *detail = memfit_last_error()[0] ? memfit_last_error() : memfit_status_message(st);
    if (st != MEMFIT_E_TOO_LARGE && st != MEMFIT_E_BUDGET && st != MEMFIT_E_TIMEOUT)
        return cli_fail("%s: %s", command, detail);
    const char *source;
    char b[32];
    uint64_t size = memfit_engines_budget(e, &source);
    return cli_fail("%s: %s (budget %s from %s)%s%s", command, detail,
                    memfit_format_size(size, b, sizeof(b)), source, hint ? "; " : "",
                    hint ? hint : "");
}

uint64_t cli_peak_rss_bytes(void)
{
    struct memfit_proc_mem pm;
    return memfit_proc_read_ex(NULL, 0, MEMFIT_PROC_STATUS_ONLY, &pm) == MEMFIT_OK ? pm.hwm_bytes
                                                                                   : 0;
}

/*
 * `memfit models MANIFEST`: the manifest's models with their family,
 * sources, the memory each would reserve by category and in total, and
 * whether that fits the budget. Each model is planned by
 * memfit_engine_model_plan, the function whose figures `serve` and every
 * other command reserve (nothing loaded; a remote model from its header).
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "embed_common.h"
#include "engines_common.h"

const char cmd_models_help[] =
    "Usage: memfit models MANIFEST [options]\n"
    "\n"
    "Lists the models of a manifest (memfit.yaml): family, sources, the memory a\n"
    "load would reserve by category (weights, converted weights, workspace for\n"
    "an image model's max_batch and max_image_size, KV cache for an LLM's context\n"
    "and sessions) and in total, planned from the files' headers without loading\n"
    "them, exactly as `memfit serve` reserves it, and whether it fits the budget\n"
    "(NEVER: more than the whole budget). A remote model not yet cached is\n"
    "planned from its header, read with HTTP Range requests (plan_source\n"
    "\"header\"), or, where the server ignores ranges, from its size alone\n"
    "(\"head-size\": weights only, provisional). The budget and where it came\n"
    "from go to stderr. Exits 1 when a model cannot be planned.\n"
    "The manifest's keys: docs/manifest.md. Families (`family:`, or auto):\n"
    "@FAMILIES@\n"
    "\n"
    "Options:\n"
    "  --budget SIZE    the memory budget (as for memfit run)\n"
    "  --json           one JSON document\n"
    "  -h, --help\n";

static void print_json(memfit_engines *e, size_t index, const struct memfit_manifest_model *mm,
                       enum memfit_status st, const struct memfit_engine_plan *p)
{
    memfit_engine_model *m = memfit_engines_get(e, index);
    uint64_t budget = memfit_engines_budget(e, NULL);
    uint64_t total = st == MEMFIT_OK ? memfit_budget_cost_total(&p->cost) : 0;
    fputs(index ? ", {\"name\": " : "{\"name\": ", stdout);
    cli_print_json_string(mm->name);
    fputs(", \"family\": ", stdout);
    cli_print_json_string(memfit_engine_model_family(m)->name);
    fputs(", \"sources\": [", stdout);
    for (size_t s = 0; s < mm->n_sources; s++) {
        fputs(s ? ", " : "", stdout);
        cli_print_json_string(mm->sources[s]);
    }
    fputs("]", stdout);
    if (st != MEMFIT_OK) {
        fputs(", \"error\": ", stdout);
        cli_print_json_string(memfit_last_error());
        fputs("}", stdout);
        return;
    }
    fputs(", \"planned\": {", stdout);
    for (int c = 0; c < MEMFIT_BUDGET_CATEGORY_COUNT; c++) {
        fputs(c ? ", " : "", stdout);
        cli_print_json_string(memfit_budget_category_name((enum memfit_budget_category)c));
        printf(": %llu", (unsigned long long)p->cost.bytes[c]);
    }
    printf("}, \"total_bytes\": %llu, \"fits\": %s, ", (unsigned long long)total,
           total <= budget ? "true" : "false");
    if (memfit_engine_model_family(m)->ops & MEMFIT_ENGINE_OP_GENERATE)
        printf("\"n_ctx\": %u, \"n_sessions\": %u, ", p->n_ctx, p->n_sessions);
    else
        printf("\"max_batch\": %u, \"max_image_size\": %u, ", p->max_batch, p->max_image_size);
    printf("\"file_bytes\": %llu, \"provisional\": %s, \"plan_source\": ",
           (unsigned long long)p->file_bytes, p->provisional ? "true" : "false");
    cli_print_json_string(p->plan_source ? p->plan_source : "file");
    fputs("}", stdout);
}

static void print_row(memfit_engines *e, size_t index, const struct memfit_manifest_model *mm,
                      enum memfit_status st, const struct memfit_engine_plan *p)
{
    memfit_engine_model *m = memfit_engines_get(e, index);
    const char *family = memfit_engine_model_family(m)->name;
    const char *source;
    uint64_t budget = memfit_engines_budget(e, &source);
    uint64_t total = st == MEMFIT_OK ? memfit_budget_cost_total(&p->cost) : 0;
    char b[6][32];
    if (st == MEMFIT_OK)
        printf("%-16s %-8s %10s %10s %10s %10s %10s  %-5s", mm->name, family,
               memfit_format_size(p->cost.bytes[MEMFIT_BUDGET_WEIGHTS], b[0], 32),
               memfit_format_size(p->cost.bytes[MEMFIT_BUDGET_CONVERTED_WEIGHTS], b[1], 32),
               memfit_format_size(p->cost.bytes[MEMFIT_BUDGET_WORKSPACE], b[2], 32),
               memfit_format_size(p->cost.bytes[MEMFIT_BUDGET_KV_CACHE], b[3], 32),
               memfit_format_size(total, b[4], 32), total <= budget ? "yes" : "NEVER");
    else
        printf("%-16s %-8s %-65s", mm->name, family, "(cannot plan)");
    for (size_t s = 0; s < mm->n_sources; s++)
        printf(" %s", mm->sources[s]);
    putchar('\n');
    if (st != MEMFIT_OK) {
        printf("  error: %s\n", memfit_last_error());
        return;
    }
    if (total > budget)
        printf("  never fits: needs %s, more than the whole budget of %s (%s)\n",
               memfit_format_size(total, b[4], 32), memfit_format_size(budget, b[5], 32), source);
    if (p->provisional)
        printf("  provisional: planned from the file's size (%s), the rest after the fetch\n",
               p->plan_source);
}

enum { OPT_JSON = 1, OPT_BUDGET };

static const struct cli_option options[] = {
    {"json", 0, CLI_ARG_NONE, OPT_JSON},
    {"budget", 0, CLI_ARG_REQUIRED, OPT_BUDGET},
    {0},
};

int cmd_models(int argc, char **argv)
{
    const char *budget_text = NULL;
    bool json = false;
    uint64_t budget = 0;
    struct cli_args a;
    cli_args_init(&a, "models", cmd_models_help, argc, argv, 0, CLI_TABLES(options));
    int id;
    while ((id = cli_args_next(&a)) > 0) {
        if (id == OPT_JSON) {
            json = true;
        } else {
            if (!cli_opt_size("models", a.name, a.value, &budget))
                return CLI_EXIT_USAGE;
            budget_text = a.value;
        }
    }
    if (id < 0)
        return a.status;
    if (!cli_args_at_most(&a, 1))
        return CLI_EXIT_USAGE;
    const char *path = cli_args_operand(&a, 0);
    if (!path)
        return cli_usage("models", "needs MANIFEST");
    memfit_engines *e;
    int rc = cli_open_manifest(path, budget, budget_text, &e);
    if (rc != CLI_EXIT_OK)
        return rc;
    const struct memfit_manifest *mf = memfit_engines_manifest(e);
    const char *source;
    uint64_t size = memfit_engines_budget(e, &source);
    if (json) {
        printf("{\"budget_bytes\": %llu, \"budget_source\": ", (unsigned long long)size);
        cli_print_json_string(source);
        fputs(", \"models\": [", stdout);
    } else {
        cli_print_budget(e);
        printf("%-16s %-8s %10s %10s %10s %10s %10s  %-5s %s\n", "NAME", "FAMILY", "WEIGHTS",
               "CONVERTED", "WORKSPACE", "KV", "TOTAL", "FITS", "SOURCES");
    }
    /* The engines hold the manifest's models first, in its order. */
    for (size_t i = 0; i < mf->n_models; i++) {
        struct memfit_engine_plan p;
        enum memfit_status st = memfit_engine_model_plan(memfit_engines_get(e, i), &p);
        if (st != MEMFIT_OK)
            rc = CLI_EXIT_FAILURE;
        if (json)
            print_json(e, i, &mf->models[i], st, &p);
        else
            print_row(e, i, &mf->models[i], st, &p);
    }
    if (json)
        puts("]}");
    memfit_engines_close(e);
    return rc;
}

/*
 * `memfit models MANIFEST`: the manifest's models with their family,
 * sources, the memory each would reserve (planned from the files' metadata,
 * nothing loaded) by category and in total, and whether that fits the
 * budget.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "embed_common.h"
#include "manager_common.h"

const char cmd_models_help[] =
    "Usage: memfit models MANIFEST [options]\n"
    "\n"
    "Lists the models of a manifest (memfit.yaml): family, sources, the memory a\n"
    "load would reserve by category (weights, converted weights, workspace for\n"
    "the model's max_batch and max_image_size, KV cache) and in total, planned\n"
    "from the files' headers without loading them, and whether it fits the\n"
    "budget. A remote model not yet cached is planned from its header, read with\n"
    "HTTP Range requests (plan_source \"header\"), or, where the server ignores\n"
    "ranges, from its size alone (\"head-size\": weights only, provisional).\n"
    "Exits 1 when a model cannot be planned.\n"
    "\n"
    "Options:\n"
    "  --budget SIZE    the memory budget (as for memfit run)\n"
    "  --json           one JSON document\n"
    "  -h, --help\n";

int cmd_models(int argc, char **argv)
{
    if (cli_wants_help(argc, argv, cmd_models_help))
        return CLI_EXIT_OK;
    const char *path = NULL;
    bool json = false;
    uint64_t budget = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (strcmp(argv[i], "--budget") == 0) {
            if (i + 1 >= argc)
                return cli_usage("models", "--budget needs a size");
            if (!cli_opt_size("models", argv[i], argv[i + 1], &budget))
                return CLI_EXIT_USAGE;
            i++;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return cli_usage("models", "unknown option '%s'", argv[i]);
        } else if (!path) {
            path = argv[i];
        } else {
            return cli_usage("models", "unexpected argument '%s'", argv[i]);
        }
    }
    if (!path)
        return cli_usage("models", "needs MANIFEST");
    struct cli_managed m;
    int rc = cli_managed_open(path, budget, json, &m);
    if (rc != CLI_EXIT_OK)
        return rc;
    const struct memfit_manifest *mf = m.manifest;
    if (json) {
        printf("{\"budget_bytes\": %llu, \"budget_source\": ", (unsigned long long)m.budget_bytes);
        cli_print_json_string(m.budget_source);
        fputs(", \"models\": [", stdout);
    } else {
        printf("%-16s %-8s %10s %10s %10s %10s %10s  %-5s %s\n", "NAME", "FAMILY", "WEIGHTS",
               "CONVERTED", "WORKSPACE", "KV", "TOTAL", "FITS", "SOURCES");
    }
    for (size_t i = 0; i < mf->n_models; i++) {
        const struct memfit_manifest_model *mm = &mf->models[i];
        struct memfit_vit_driver_plan p;
        enum memfit_status st = memfit_vit_driver_plan_get(m.configs[i], &p);
        uint64_t total = st == MEMFIT_OK ? memfit_budget_cost_total(&p.cost) : 0;
        bool fits = st == MEMFIT_OK && total <= m.budget_bytes;
        if (st != MEMFIT_OK)
            rc = CLI_EXIT_FAILURE;
        if (json) {
            fputs(i ? ", {\"name\": " : "{\"name\": ", stdout);
            cli_print_json_string(mm->name);
            fputs(", \"family\": ", stdout);
            cli_print_json_string(mm->family);
            fputs(", \"sources\": [", stdout);
            for (size_t s = 0; s < mm->n_sources; s++) {
                fputs(s ? ", " : "", stdout);
                cli_print_json_string(mm->sources[s]);
            }
            fputs("]", stdout);
            if (st == MEMFIT_OK) {
                fputs(", \"planned\": {", stdout);
                for (int c = 0; c < MEMFIT_BUDGET_CATEGORY_COUNT; c++) {
                    fputs(c ? ", " : "", stdout);
                    cli_print_json_string(
                        memfit_budget_category_name((enum memfit_budget_category)c));
                    printf(": %llu", (unsigned long long)p.cost.bytes[c]);
                }
                printf("}, \"total_bytes\": %llu, \"fits\": %s, \"max_batch\": %u, "
                       "\"max_image_size\": %u, \"file_bytes\": %llu, \"plan_source\": ",
                       (unsigned long long)total, fits ? "true" : "false", p.max_batch,
                       p.max_image_size, (unsigned long long)p.file_bytes);
                cli_print_json_string(p.plan_source ? p.plan_source : "file");
                fputs("}", stdout);
            } else {
                fputs(", \"error\": ", stdout);
                cli_print_json_string(memfit_last_error());
                fputs("}", stdout);
            }
            continue;
        }
        char b[5][32];
        if (st == MEMFIT_OK)
            printf("%-16s %-8s %10s %10s %10s %10s %10s  %-5s", mm->name, mm->family,
                   memfit_format_size(p.cost.bytes[0], b[0], 32),
                   memfit_format_size(p.cost.bytes[1], b[1], 32),
                   memfit_format_size(p.cost.bytes[2], b[2], 32),
                   memfit_format_size(p.cost.bytes[3], b[3], 32),
                   memfit_format_size(total, b[4], 32), fits ? "yes" : "NO");
        else
            printf("%-16s %-8s %-59s", mm->name, mm->family, "(cannot plan)");
        for (size_t s = 0; s < mm->n_sources; s++)
            printf(" %s", mm->sources[s]);
        putchar('\n');
        if (st != MEMFIT_OK)
            printf("  error: %s\n", memfit_last_error());
    }
    if (json)
        puts("]}");
    cli_managed_close(&m);
    return rc;
}

/*
 * Printing DINOv2 embeddings (see embed_common.h): one format for `embed`
 * and `run`.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "embed_common.h"

const char *const cli_vit_output_names[4] = {"cls", "mean", "both", "patches"};

bool cli_opt_vit_output(const char *command, const char *text, enum memfit_vit_output *out)
{
    for (unsigned k = 0; k < 4; k++) {
        if (strcmp(text, cli_vit_output_names[k]) == 0) {
            *out = (enum memfit_vit_output)k;
            return true;
        }
    }
    cli_usage(command, "--output: unknown kind '%s' (cls, mean, both or patches)", text);
    return false;
}

void cli_print_json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

void cli_print_embedding(bool json, enum memfit_vit_output output, const char *name, uint32_t w,
                         uint32_t h, const float *v, size_t n, size_t dim)
{
    if (json) {
        fputs("{\"image\": ", stdout);
        cli_print_json_string(name);
        printf(", \"width\": %u, \"height\": %u, \"output\": \"%s\", \"embedding\": [", w, h,
               cli_vit_output_names[output]);
        bool nested = output == MEMFIT_VIT_OUTPUT_PATCHES;
        for (size_t i = 0; i < n; i++) {
            if (nested && i % dim == 0)
                fputs(i ? "], [" : "[", stdout);
            else if (i)
                fputs(", ", stdout);
            printf("%.7g", (double)v[i]);
        }
        puts(nested ? "]]}" : "]}");
        return;
    }
    printf("%s: %s %zu floats (%ux%u):", name, cli_vit_output_names[output], n, w, h);
    for (size_t i = 0; i < n; i++)
        printf(" %.7g", (double)v[i]);
    putchar('\n');
}

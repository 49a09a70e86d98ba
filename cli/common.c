/* Error printing and option-value helpers shared by the subcommands. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

int cli_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("memfit: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return CLI_EXIT_FAILURE;
}

int cli_usage(const char *command, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "memfit %s: ", command);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nTry 'memfit help %s' for more information.\n", command);
    va_end(ap);
    return CLI_EXIT_USAGE;
}

int cli_fail_status(enum memfit_status status)
{
    const char *detail = memfit_last_error();
    return cli_fail("%s", detail[0] ? detail : memfit_status_message(status));
}

bool cli_isatty(int fd)
{
    const char *term = getenv("TERM");
    return isatty(fd) && !(term && strcmp(term, "dumb") == 0);
}

bool cli_opt_size(const char *command, const char *option, const char *text, uint64_t *out)
{
    if (memfit_parse_size(text, out) == MEMFIT_OK)
        return true;
    cli_usage(command, "%s: %s", option, memfit_last_error());
    return false;
}

bool cli_opt_duration(const char *command, const char *option, const char *text, uint64_t *out_ns)
{
    if (memfit_parse_duration(text, out_ns) == MEMFIT_OK)
        return true;
    cli_usage(command, "%s: %s", option, memfit_last_error());
    return false;
}

bool cli_opt_percent(const char *command, const char *option, const char *text, double *out)
{
    if (memfit_parse_percent(text, out) == MEMFIT_OK)
        return true;
    cli_usage(command, "%s: %s", option, memfit_last_error());
    return false;
}

bool cli_opt_int(const char *command, const char *option, const char *text, long long min,
                 long long max, long long *out)
{
    if (memfit_parse_int(text, min, max, out) == MEMFIT_OK)
        return true;
    cli_usage(command, "%s: %s", option, memfit_last_error());
    return false;
}

bool cli_opt_float(const char *command, const char *option, const char *text, double min,
                   double max, float *out)
{
    char *end;
    double v = strtod(text, &end);
    if (end == text || *end || !(v >= min && v <= max)) {
        cli_usage(command, "%s '%s': expected a number from %g to %g", option, text, min, max);
        return false;
    }
    *out = (float)v;
    return true;
}

void cli_print_help(const char *help)
{
    /* "@FAMILIES@" stands for the families of the engines' registry, one a
     * line, so a new family shows in every help without editing it. */
    const char *mark = strstr(help, "@FAMILIES@\n");
    if (!mark) {
        fputs(help, stdout);
        return;
    }
    fwrite(help, 1, (size_t)(mark - help), stdout);
    for (size_t i = 0; i < memfit_engine_family_count(); i++) {
        const struct memfit_engine_family_info *f = memfit_engine_family_get(i);
        printf("  %-8s %s\n           options: %s%s%s\n", f->name, f->summary, f->options,
               f->aliases[0] ? "; also named: " : "", f->aliases);
    }
    fputs(mark + strlen("@FAMILIES@\n"), stdout);
}

bool cli_wants_help(int argc, char **argv, const char *help)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            cli_print_help(help);
            return true;
        }
    }
    return false;
}

const char *cli_opt_value(int argc, char **argv, int *i, const char *name, bool *missing)
{
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0)
        return NULL;
    if (argv[*i][n] == '=')
        return argv[*i] + n + 1;
    if (argv[*i][n] != '\0')
        return NULL;
    if (*i + 1 >= argc) {
        *missing = true;
        return NULL;
    }
    return argv[++*i];
}

/* Error printing and option-value helpers shared by the subcommands. */
#include <jansson.h>
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

/* The id of -h/--help, which every command takes; the tables use ids > 0. */
#define HELP_ID (-1000)

static const struct cli_option help_options[] = {{"help", 'h', CLI_ARG_NONE, HELP_ID}, {0}};

static bool add_option(struct cli_args *a, const struct cli_option *o, size_t table)
{
    size_t s = strlen(a->shortopts);
    if (a->n == CLI_ARGS_MAX || s + 4 > sizeof(a->shortopts))
        return false;
    static const int has_arg[] = {no_argument, required_argument, optional_argument};
    /* getopt_long gives a long option's val back: 256 + its index is never a letter. */
    a->longopts[a->n] = (struct option){o->name, has_arg[o->arg], NULL, 256 + (int)a->n};
    a->table_of[a->n] = (unsigned char)table;
    a->table[a->n++] = o;
    if (o->letter)
        snprintf(a->shortopts + s, sizeof(a->shortopts) - s, "%c%s", o->letter,
                 o->arg == CLI_ARG_REQUIRED   ? ":"
                 : o->arg == CLI_ARG_OPTIONAL ? "::"
                                              : "");
    return true;
}

void cli_args_init(struct cli_args *a, const char *command, const char *help, int argc, char **argv,
                   unsigned flags, const struct cli_option *const *tables)
{
    memset(a, 0, sizeof(*a));
    a->command = command;
    a->help = help;
    a->argc = argc;
    a->argv = argv;
    /* '+': stop at the first operand; ':': a missing value returns ':'. */
    snprintf(a->shortopts, sizeof(a->shortopts), "%s:", flags & CLI_ARGS_IN_ORDER ? "+" : "");
    bool fits = add_option(a, help_options, 0);
    for (size_t t = 0; tables[t]; t++)
        for (const struct cli_option *o = tables[t]; o->name && fits; o++)
            fits = add_option(a, o, t + 1);
    /* Options of two tables with one id would be taken for each other: a
     * programming error (within a table, one id for two names is an alias). */
    for (size_t i = 0; i < a->n && fits; i++)
        for (size_t j = i + 1; j < a->n && fits; j++)
            fits = a->table[i]->id != a->table[j]->id || a->table_of[i] == a->table_of[j];
    a->overflow = !fits;
    optind = 0; /* glibc: start again, reading the flags of shortopts anew */
    opterr = 0;
}

/* The option getopt_long complained about, as the user wrote its name. */
static const char *bad_option_name(struct cli_args *a)
{
    if (optopt >= 256 && (size_t)(optopt - 256) < a->n) {
        snprintf(a->name_buf, sizeof(a->name_buf), "--%s", a->table[optopt - 256]->name);
    } else if (optopt > 0) {
        snprintf(a->name_buf, sizeof(a->name_buf), "-%c", optopt);
    } else {
        /* An unknown or ambiguous long option: the word, without its value. */
        const char *word = optind > 1 && optind <= a->argc ? a->argv[optind - 1] : "?";
        snprintf(a->name_buf, sizeof(a->name_buf), "%.*s", (int)strcspn(word, "="), word);
    }
    return a->name_buf;
}

int cli_args_next(struct cli_args *a)
{
    if (a->overflow) {
        a->status = cli_usage(
            a->command, "internal error: more than %d options, or two with one id", CLI_ARGS_MAX);
        return -1;
    }
    int c = getopt_long(a->argc, a->argv, a->shortopts, a->longopts, NULL);
    a->value = optarg;
    if (c == -1) {
        a->operands = a->argv + optind;
        a->n_operands = a->argc - optind;
        /* A "--" just before the operands ended the options, unless it was a value. */
        a->dashdash = optind > 1 && strcmp(a->argv[optind - 1], "--") == 0 &&
                      a->argv[optind - 1] != a->last_value;
        a->status = CLI_EXIT_OK;
        return 0;
    }
    const struct cli_option *o = NULL;
    if (c >= 256 && (size_t)(c - 256) < a->n)
        o = a->table[c - 256];
    for (size_t i = 0; c != '?' && c != ':' && c < 256 && !o && i < a->n; i++)
        if (a->table[i]->letter == c)
            o = a->table[i];
    if (!o) {
        const char *name = bad_option_name(a);
        size_t n_prefixed = 0;
        for (size_t i = 0; optopt == 0 && name[1] == '-' && i < a->n; i++)
            n_prefixed += strncmp(a->table[i]->name, name + 2, strlen(name + 2)) == 0;
        if (c == ':')
            a->status = cli_usage(a->command, "option '%s' needs a value", name);
        else if (optopt >= 256)
            a->status = cli_usage(a->command, "option '%s' takes no value", name);
        else if (n_prefixed > 1)
            a->status = cli_usage(a->command, "ambiguous option '%s' (%zu options begin so)", name,
                                  n_prefixed);
        else
            a->status = cli_usage(a->command, "unknown option '%s'", name);
        return -1;
    }
    if (o->id == HELP_ID) {
        cli_print_help(a->help);
        a->status = CLI_EXIT_OK;
        return -1;
    }
    snprintf(a->name_buf, sizeof(a->name_buf), "--%s", o->name);
    a->name = a->name_buf;
    a->last_value = optarg;
    return o->id;
}

int cli_json_print(const char *command, json_t *root)
{
    if (!root)
        return cli_fail("%s: out of memory for the JSON output", command);
    int rc = json_dumpf(root, stdout, JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(root);
    if (rc != 0 || fputc('\n', stdout) == EOF || fflush(stdout) != 0)
        return cli_fail("%s: cannot write the JSON output", command);
    return CLI_EXIT_OK;
}

json_t *cli_json_text(const char *text, size_t len)
{
    json_t *s = json_stringn(text, len);
    if (s || !text)
        return s;
    char *copy = memfit_strndup(text, len);
    if (!copy)
        return NULL;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)copy[i] >= 0x80 || copy[i] == '\0')
            copy[i] = '?';
    s = json_stringn(copy, len);
    memfit_free(copy);
    return s;
}

const char *cli_args_operand(const struct cli_args *a, int i)
{
    return i >= 0 && i < a->n_operands ? a->operands[i] : NULL;
}

bool cli_args_at_most(const struct cli_args *a, int max)
{
    if (a->n_operands <= max)
        return true;
    cli_usage(a->command, "unexpected argument '%s'", a->operands[max]);
    return false;
}

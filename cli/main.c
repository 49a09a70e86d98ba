/*
 * `memfit`: dispatches to the subcommands in CLI_COMMANDS, prints the
 * top-level help and version, installs the log sink (stderr) and loads the
 * `.env` file of the working directory before any subcommand runs.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

struct command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
    const char *help;
};

#define CLI_ENTRY(name, summary) {#name, summary, cmd_##name, cmd_##name##_help},
static const struct command commands[] = {CLI_COMMANDS(CLI_ENTRY){NULL, NULL, NULL, NULL}};
#undef CLI_ENTRY

static void print_usage(FILE *out)
{
    fputs("Usage: memfit [--help] [--version] COMMAND [ARGS...]\n"
          "\n"
          "Run AI models inside the memory a machine or container really has,\n"
          "and see, watch and analyze that memory.\n"
          "\n"
          "Commands:\n",
          out);
    for (const struct command *c = commands; c->name; c++)
        fprintf(out, "  %-10s %s\n", c->name, c->summary);
    fputs("  help CMD   Show the help of a command\n"
          "\n"
          "Exit status: 0 success, 1 failure, 2 usage error (bad option or argument).\n"
          "Settings are read from flags, then MEMFIT_* environment variables (some\n"
          "older names are aliases, e.g. LOG_LEVEL), then a .env file in the\n"
          "working directory. MEMFIT_LOG_LEVEL=error|warn|info|debug|trace.\n",
          out);
}

static const struct command *find_command(const char *name)
{
    for (const struct command *c = commands; c->name; c++)
        if (strcmp(c->name, name) == 0)
            return c;
    return NULL;
}

static void stderr_sink(enum memfit_log_level level, const char *message, void *user)
{
    (void)user;
    fprintf(stderr, "memfit: %s: %s\n", memfit_log_level_name(level), message);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *arg = argv[1];
    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
        print_usage(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(arg, "--version") == 0 || strcmp(arg, "version") == 0) {
        printf("memfit %s\n", memfit_version());
        return CLI_EXIT_OK;
    }
    if (strcmp(arg, "help") == 0) {
        if (argc < 3) {
            print_usage(stdout);
            return CLI_EXIT_OK;
        }
        const struct command *c = find_command(argv[2]);
        if (!c) {
            fprintf(stderr, "memfit: unknown command '%s'\n", argv[2]);
            return CLI_EXIT_USAGE;
        }
        cli_print_help(c->help);
        return CLI_EXIT_OK;
    }
    const struct command *c = find_command(arg);
    if (!c) {
        fprintf(stderr, "memfit: unknown command '%s'\nTry 'memfit --help'.\n", arg);
        return CLI_EXIT_USAGE;
    }

    memfit_log_set_sink(stderr_sink, NULL);
    if (memfit_config_load_dotenv(".env") != MEMFIT_OK)
        return cli_fail("%s", memfit_last_error());
    if (memfit_log_level_from_config() != MEMFIT_OK)
        return cli_usage(arg, "%s", memfit_last_error());
    int rc = c->run(argc - 1, argv + 1);
    memfit_config_reset();
    return rc;
}

/*
 * `memfit`: dispatches to the subcommands in CLI_COMMANDS, prints the
 * top-level help and version, installs the log sink (stderr) and loads the
 * `.env` file of the working directory before any subcommand runs.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
          "Options read the same way in every command: --name=VALUE or --name VALUE,\n"
          "-n2 or -n 2, options before or after the operands (monitor's command starts\n"
          "after --), and -- ends the options. Commands that print data have --json.\n"
          "Exit status: 0 success, 1 failure, 2 usage error (bad option or argument).\n"
          "Settings are read from flags, then MEMFIT_* environment variables (some\n"
          "older names are aliases, e.g. LOG_LEVEL), then a .env file in the\n"
          "working directory. MEMFIT_LOG_LEVEL=error|warn|info|debug|trace;\n"
          "MEMFIT_LOG_FORMAT=json logs one JSON object per line on stderr.\n",
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

/* MEMFIT_LOG_FORMAT=json: one JSON object per line, for log collectors
 * (Loki, CloudWatch, kubectl logs | jq):
 * {"time":"2026-12-07T10:00:00.123Z","level":"info","pid":1,"msg":"..."}.
 * The line is built whole and written with one call, so lines from
 * different threads never interleave. */
static void json_record(FILE *f, enum memfit_log_level level, const char *message)
{
    char line[4096 + 256];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    time_t secs = ts.tv_sec;
    gmtime_r(&secs, &tm);
    int n = snprintf(line, sizeof(line),
                     "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\",\"level\":\"%s\","
                     "\"pid\":%d,\"msg\":\"",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (int)(ts.tv_nsec / 1000000), memfit_log_level_name(level), (int)getpid());
    size_t len = n > 0 ? (size_t)n : 0;
    /* The message, escaped; room is kept for the longest escape and the end. */
    for (const unsigned char *p = (const unsigned char *)message; *p && len + 8 < sizeof(line);
         p++) {
        if (*p == '"' || *p == '\\') {
            line[len++] = '\\';
            line[len++] = (char)*p;
        } else if (*p == '\n') {
            line[len++] = '\\';
            line[len++] = 'n';
        } else if (*p < 0x20) {
            len += (size_t)snprintf(line + len, sizeof(line) - len, "\\u%04x", *p);
        } else {
            line[len++] = (char)*p;
        }
    }
    memcpy(line + len, "\"}\n", 3);
    fwrite(line, 1, len + 3, f);
}

static void json_sink(enum memfit_log_level level, const char *message, void *user)
{
    (void)user;
    json_record(stderr, level, message);
}

static bool log_json; /* MEMFIT_LOG_FORMAT=json */

void cli_print_record(const char *fmt, ...)
{
    char message[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    if (log_json)
        json_record(stdout, MEMFIT_LOG_INFO, message);
    else
        printf("%s\n", message);
}

/* The sink MEMFIT_LOG_FORMAT asks for: text (default) or json. */
static int install_log_sink(const char *command)
{
    const char *format = memfit_config_get("MEMFIT_LOG_FORMAT");
    if (!format || !format[0] || strcmp(format, "text") == 0)
        memfit_log_set_sink(stderr_sink, NULL);
    else if (strcmp(format, "json") == 0) {
        memfit_log_set_sink(json_sink, NULL);
        log_json = true;
    } else
        return cli_usage(command, "MEMFIT_LOG_FORMAT: unknown format '%s' (expected text or json)",
                         format);
    return CLI_EXIT_OK;
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
    int sink_rc = install_log_sink(arg);
    if (sink_rc != CLI_EXIT_OK)
        return sink_rc;
    if (memfit_log_level_from_config() != MEMFIT_OK)
        return cli_usage(arg, "%s", memfit_last_error());
    int rc = c->run(argc - 1, argv + 1);
    memfit_config_reset();
    return rc;
}

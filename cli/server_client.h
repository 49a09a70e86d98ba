/*
 * Talking to a running `memfit serve` from the command line (`cleanup`, `ps`,
 * `load`, `stop`): one HTTP/1.1 request over a plain socket, usually to
 * loopback, so the commands need no HTTP library. The server is --url, else
 * MEMFIT_URL, else http://127.0.0.1:8080; MEMFIT_API_KEY is sent as a bearer
 * token when set.
 */
#ifndef MEMFIT_CLI_SERVER_CLIENT_H
#define MEMFIT_CLI_SERVER_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cli.h"

struct cli_answer {
    int status;    /* the HTTP status */
    char *body;    /* NUL-terminated (chunked bodies decoded); memfit_free it */
    size_t length; /* of body */
};

/* The server's address when no --url is given. */
const char *cli_server_default_url(void);

/*
 * METHOD PATH on the server at URL (http://HOST[:PORT]) with an optional JSON
 * body; waits at most timeout_ns. Returns CLI_EXIT_OK with *out filled, or
 * an exit code after printing why ("is `memfit serve` running?").
 */
int cli_server_call(const char *command, const char *url, const char *method, const char *path,
                    const char *json_body, uint64_t timeout_ns, struct cli_answer *out);

/* Prints a server's error answer ({"error":{"message":...}}) as the
 * command's failure; returns CLI_EXIT_FAILURE. */
int cli_server_failed(const char *command, const char *url, const struct cli_answer *a);

/* The options every such command takes, and their help lines. */
struct cli_server_opts {
    const char *url;
    uint64_t timeout_ns;
    bool json;
};

#define CLI_SERVER_OPTIONS_HELP(default_timeout)                                                   \
    "  --url URL            the server (default $MEMFIT_URL, else http://127.0.0.1:8080)\n"        \
    "  --json               print the server's JSON\n"                                             \
    "  --timeout DURATION   give up after this long (default " default_timeout ")\n"

/* The ids of cli_server_options (a command's own ids stay below 1000: letters are ids too). */
enum { CLI_SERVER_OPT_URL = 1300, CLI_SERVER_OPT_JSON, CLI_SERVER_OPT_TIMEOUT };

/* --url, --json, --timeout: a fragment of the tables of these commands. */
extern const struct cli_option cli_server_options[];

/*
 * Takes option `id` of cli_server_options (its value in a->value) into *o.
 * Returns CLI_EXIT_OK, or CLI_EXIT_USAGE after printing why.
 */
int cli_server_option(const char *command, const struct cli_args *a, int id,
                      struct cli_server_opts *o);

/*
 * `memfit load MODEL` and `memfit stop MODEL`: POST /api/models/MODEL/ACTION
 * (ACTION "load" or "unload") with --url, --timeout and --json; prints what
 * the model holds afterwards.
 */
int cli_model_control(const char *command, const char *action, const char *help, int argc,
                      char **argv);

#endif

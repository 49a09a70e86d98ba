/*
 * `memfit health [URL]`: whether a running `memfit serve` is alive (GET
 * /health) or ready for work (--ready: GET /ready), for scripts and
 * container health checks that have no curl: the answer in a word and in
 * the exit status.
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "server_client.h"

const char cmd_health_help[] =
    "Usage: memfit health [URL] [--ready] [--url URL] [--json] [--timeout DURATION]\n"
    "\n"
    "Asks a running `memfit serve` whether it is healthy: GET /health (the server\n"
    "answers), or with --ready GET /ready (it takes work now: it is not shutting\n"
    "down, and its budget has room or an idle model it may unload). Prints \"ok\"\n"
    "(\"ready\"), or the server's reason.\n"
    "\n"
    "Options:\n"
    "  URL                  the server, as --url\n"
    "  --ready              ask for readiness (GET /ready) rather than "
    "liveness\n" CLI_SERVER_OPTIONS_HELP(
        "5s") "\n"
              "MEMFIT_API_KEY is sent as \"Authorization: Bearer KEY\" when set.\n"
              "Exit status: 0 healthy (ready), 1 not (the server answered otherwise; its\n"
              "reason is printed), 2 unreachable (no answer: no server, or none within the\n"
              "timeout) or a usage error.\n";

enum { OPT_READY = 1 };

static const struct cli_option health_options[] = {
    {"ready", 0, CLI_ARG_NONE, OPT_READY},
    {0},
};

/* The reason of a refusal: the message of {"error": {"message": ...}}, else
 * the status, into buf. */
static const char *reason_of(const struct cli_answer *a, char *buf, size_t size)
{
    json_t *root = json_loadb(a->body, a->length, 0, NULL);
    const char *message =
        json_string_value(json_object_get(json_object_get(root, "error"), "message"));
    if (message)
        snprintf(buf, size, "%s", message);
    else
        snprintf(buf, size, "HTTP %d", a->status);
    json_decref(root);
    return buf;
}

int cmd_health(int argc, char **argv)
{
    struct cli_server_opts o = {cli_server_default_url(), 5ull * 1000000000u, false};
    bool ready = false;
    struct cli_args args;
    cli_args_init(&args, "health", cmd_health_help, argc, argv, 0,
                  CLI_TABLES(health_options, cli_server_options));
    int id;
    while ((id = cli_args_next(&args)) > 0) {
        if (id == OPT_READY)
            ready = true;
        else if (cli_server_option("health", &args, id, &o) != CLI_EXIT_OK)
            return CLI_EXIT_USAGE;
    }
    if (id < 0)
        return args.status;
    if (!cli_args_at_most(&args, 1))
        return CLI_EXIT_USAGE;
    if (args.n_operands == 1)
        o.url = args.operands[0];
    struct cli_answer a;
    int rc = cli_server_call("health", o.url, "GET", ready ? "/ready" : "/health", NULL,
                             o.timeout_ns, &a);
    if (rc == CLI_EXIT_FAILURE)
        return CLI_EXIT_USAGE; /* 2: unreachable (cli_server_call said why) */
    if (rc != CLI_EXIT_OK)
        return rc;
    char reason[512];
    rc = a.status == 200 ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
    if (o.json)
        printf("%s\n", a.body);
    else if (rc == CLI_EXIT_OK)
        printf("%s\n", ready ? "ready" : "ok");
    else
        printf("%s\n", reason_of(&a, reason, sizeof(reason)));
    memfit_free(a.body);
    return rc;
}

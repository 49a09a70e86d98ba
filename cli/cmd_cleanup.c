/*
 * `memfit cleanup`: asks a running `memfit serve` to give memory back
 * (POST /api/cleanup: unload idle models, trim the heap, drop the page cache
 * of weight files no model has loaded) and prints what it freed. A plain
 * HTTP/1.1 request over a socket: the command talks to its own server,
 * usually on loopback, and needs no HTTP library.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "server_client.h"

const char cmd_cleanup_help[] =
    "Usage: memfit cleanup [--url URL] [--timeout DURATION]\n"
    "\n"
    "Asks a running `memfit serve` to free memory now: it unloads idle models,\n"
    "returns freed heap to the system (malloc_trim) and drops the page cache of\n"
    "weight files no loaded model uses. Prints the server's JSON answer.\n"
    "\n"
    "Options:\n"
    "  --url URL            the server (default $MEMFIT_URL, else http://127.0.0.1:8080)\n"
    "  --timeout DURATION   give up after this long (default 30s)\n"
    "\n"
    "MEMFIT_API_KEY is sent as \"Authorization: Bearer KEY\" when set.\n"
    "\n"
    "Exit status: 0 success, 1 failure (no server, or an error answer), 2 usage error.\n";

int cmd_cleanup(int argc, char **argv)
{
    if (cli_wants_help(argc, argv, cmd_cleanup_help))
        return CLI_EXIT_OK;
    const char *url = cli_server_default_url();
    uint64_t timeout_ns = 30ull * 1000000000u;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--url") == 0 && i + 1 < argc)
            url = argv[++i];
        else if (strncmp(argv[i], "--url=", 6) == 0)
            url = argv[i] + 6;
        else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
            if (!cli_opt_duration("cleanup", "--timeout", argv[++i], &timeout_ns))
                return CLI_EXIT_USAGE;
        } else
            return cli_usage("cleanup", "unknown argument '%s'", argv[i]);
    }
    struct cli_answer a;
    int rc = cli_server_call("cleanup", url, "POST", "/api/cleanup", NULL, timeout_ns, &a);
    if (rc != CLI_EXIT_OK)
        return rc;
    if (a.status == 200)
        fputs(a.body, stdout);
    else
        rc = cli_server_failed("cleanup", url, &a);
    memfit_free(a.body);
    return rc;
}

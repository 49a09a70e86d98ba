/*
 * `memfit stop MODEL`: asks a running `memfit serve` to unload a model now
 * (POST /api/models/MODEL/unload), as `ollama stop` does.
 */
#include "cli.h"
#include "server_client.h"

const char cmd_stop_help[] =
    "Usage: memfit stop MODEL [--url URL] [--json] [--timeout DURATION]\n"
    "\n"
    "Unloads MODEL from a running `memfit serve` and returns its memory to the\n"
    "budget. A model busy with requests is not cut off: the server answers 409\n"
    "and it stays loaded. The next request for it loads it again.\n"
    "\n"
    "Options:\n" CLI_SERVER_OPTIONS_HELP("10m") "\n"
                                                "Exit status: 0 unloaded, 1 failure (no server, "
                                                "unknown or busy model), 2 usage error.\n";

int cmd_stop(int argc, char **argv)
{
    return cli_model_control("stop", "unload", cmd_stop_help, argc, argv);
}

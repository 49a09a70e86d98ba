/*
 * `memfit load MODEL`: asks a running `memfit serve` to load a model now
 * (POST /api/models/MODEL/load), fetching it first when it is remote.
 */
#include "cli.h"
#include "server_client.h"

const char cmd_load_help[] =
    "Usage: memfit load MODEL [--url URL] [--json] [--timeout DURATION]\n"
    "\n"
    "Loads MODEL in a running `memfit serve` now rather than on its first request\n"
    "(downloading it into the cache first when it comes from S3, HTTP(S) or the\n"
    "Hugging Face hub). Refused, with the figures, when the memory budget cannot\n"
    "hold it even after unloading idle models. Prints its state and memory.\n"
    "\n"
    "Options:\n" CLI_SERVER_OPTIONS_HELP("10m") "\n"
                                                "Exit status: 0 loaded, 1 failure (no server, "
                                                "unknown model, refused), 2 usage error.\n";

int cmd_load(int argc, char **argv)
{
    return cli_model_control("load", "load", cmd_load_help, argc, argv);
}

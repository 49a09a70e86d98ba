/*
 * `memfit ps`: the models a running `memfit serve` knows, their state and
 * memory, as a table (or its JSON, GET /api/models), like `ollama ps`.
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "server_client.h"

const char cmd_ps_help[] =
    "Usage: memfit ps [--url URL] [--json] [--timeout DURATION]\n"
    "\n"
    "Lists the models of a running `memfit serve`: state (unloaded, loading,\n"
    "loaded, ...), the memory each holds (weights and workspace reserved in the\n"
    "budget), requests in flight, when it was last used and when keep_alive\n"
    "unloads it; then the budget. `memfit load` and `memfit stop` load and unload.\n"
    "\n"
    "Options:\n" CLI_SERVER_OPTIONS_HELP(
        "10s") "\n"
               "MEMFIT_API_KEY is sent as \"Authorization: Bearer KEY\" when set.\n"
               "Exit status: 0 success, 1 failure (no server, or an error answer), 2 usage "
               "error.\n";

/* "3s ago", "5m ago", "2h ago"; "-" for never. */
static const char *ago(double seconds, char *buf, size_t size)
{
    if (seconds < 0)
        snprintf(buf, size, "-");
    else if (seconds < 120)
        snprintf(buf, size, "%.0fs ago", seconds);
    else if (seconds < 7200)
        snprintf(buf, size, "%.0fm ago", seconds / 60);
    else
        snprintf(buf, size, "%.0fh ago", seconds / 3600);
    return buf;
}

static uint64_t u64_of(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
}

static void print_table(json_t *root)
{
    json_t *data = json_object_get(root, "data"), *m;
    size_t i;
    double now_ms = (double)memfit_wall_ns() / 1e6;
    printf("%-24s %-8s %-10s %10s %6s %10s %10s\n", "NAME", "FAMILY", "STATE", "MEMORY", "ACTIVE",
           "LAST USED", "UNLOADS IN");
    json_array_foreach(data, i, m)
    {
        char mem[32], used[32], until[32] = "-";
        const char *name = json_string_value(json_object_get(m, "name"));
        const char *family = json_string_value(json_object_get(m, "family"));
        const char *state = json_string_value(json_object_get(m, "state"));
        uint64_t last = u64_of(m, "last_used_ms");
        json_t *expires = json_object_get(m, "expires_in_s");
        if (json_is_number(expires))
            snprintf(until, sizeof(until), "%.0fs", json_number_value(expires));
        printf("%-24s %-8s %-10s %10s %6llu %10s %10s\n", name ? name : "?", family ? family : "?",
               state ? state : "?", memfit_format_size(u64_of(m, "bytes"), mem, sizeof(mem)),
               (unsigned long long)u64_of(m, "in_use"),
               ago(last ? (now_ms - (double)last) / 1e3 : -1, used, sizeof(used)), until);
    }
    json_t *b = json_object_get(root, "budget");
    char size[32], reserved[32], free_[32];
    const char *level = json_string_value(json_object_get(root, "pressure_level"));
    printf("budget %s: %s reserved, %s free; %llu queued; pressure %s\n",
           memfit_format_size(u64_of(b, "size_bytes"), size, sizeof(size)),
           memfit_format_size(u64_of(b, "reserved_bytes"), reserved, sizeof(reserved)),
           memfit_format_size(u64_of(b, "free_bytes"), free_, sizeof(free_)),
           (unsigned long long)u64_of(root, "queue_depth"), level ? level : "?");
}

int cmd_ps(int argc, char **argv)
{
    struct cli_server_opts o = {cli_server_default_url(), 10ull * 1000000000u, false};
    struct cli_args args;
    cli_args_init(&args, "ps", cmd_ps_help, argc, argv, 0, CLI_TABLES(cli_server_options));
    int id;
    while ((id = cli_args_next(&args)) > 0)
        if (cli_server_option("ps", &args, id, &o) != CLI_EXIT_OK)
            return CLI_EXIT_USAGE;
    if (id < 0)
        return args.status;
    if (!cli_args_at_most(&args, 0))
        return CLI_EXIT_USAGE;
    struct cli_answer a;
    int rc = cli_server_call("ps", o.url, "GET", "/api/models", NULL, o.timeout_ns, &a);
    if (rc != CLI_EXIT_OK)
        return rc;
    json_t *root = a.status == 200 ? json_loadb(a.body, a.length, 0, NULL) : NULL;
    if (a.status != 200)
        rc = cli_server_failed("ps", o.url, &a);
    else if (!json_is_array(json_object_get(root, "data")))
        rc = cli_fail("ps: %s answered something that is not a model list", o.url);
    else if (o.json)
        printf("%s\n", a.body);
    else
        print_table(root);
    json_decref(root);
    memfit_free(a.body);
    return rc;
}

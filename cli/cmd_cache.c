/*
 * `memfit cache`: looks after the model cache — list what is there (and
 * what sits in quarantine), show one entry, re-check every digest, remove an
 * entry, and evict least recently used files down to a size (never one a
 * running process holds).
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"

const char cmd_cache_help[] =
    "Usage: memfit cache [--cache-dir DIR] [--json] ls | info NAME | verify | rm NAME | gc "
    "[--max-size "
    "SIZE]\n"
    "\n"
    "  ls          list cached files, least recently used first, then the\n"
    "              quarantine (downloads whose digest did not match, kept within\n"
    "              MEMFIT_QUARANTINE_MAX_FILES and _MAX_SIZE: 4 files, 1 GiB)\n"
    "  info NAME   one entry, by name, source or digest (prefix of 8+ hex digits)\n"
    "  verify      re-hash every file; bad ones move to quarantine/ (exit 1)\n"
    "  rm NAME     remove an entry (and its file when nothing else points to it)\n"
    "  gc          evict least recently used files down to --max-size (default\n"
    "              MEMFIT_CACHE_MAX_GB), keeping files that running processes use;\n"
    "              also drops stale temp files, refs, old partial downloads and\n"
    "              every quarantined file\n"
    "\n"
    "Options:\n"
    "  --cache-dir DIR   cache directory (default MEMFIT_CACHE_DIR, LOCAL_CACHE_DIR,\n"
    "                    then $XDG_CACHE_HOME/memfit or ~/.cache/memfit)\n"
    "  --max-size SIZE   for gc: e.g. 10GB, 512MiB\n"
    "  --json            one JSON object on stdout (docs/store.md):\n"
    "                    ls: {\"dir\", \"size_bytes\", \"entries\": [ENTRY...],\n"
    "                    \"quarantine\": {\"n_files\", \"size_bytes\", \"max_files\",\n"
    "                    \"max_bytes\", \"files\": [{\"path\", \"digest\", \"size_bytes\",\n"
    "                    \"added_ms\"}]}}; info: ENTRY = {\"name\", \"digest\",\n"
    "                    \"size_bytes\", \"source\", \"path\", \"last_used_ms\", \"in_use\"};\n"
    "                    verify: {\"n_ok\", \"n_bad\", \"read_bytes\"}; rm: {\"removed\"};\n"
    "                    gc: {\"n_removed\", \"removed_bytes\", \"size_bytes\",\n"
    "                    \"n_kept_in_use\", \"n_quarantine_removed\",\n"
    "                    \"quarantine_removed_bytes\"}\n"
    "\n"
    "Exit status: 0 success, 1 failure, 2 usage error.\n";

static void format_time(uint64_t wall_ns, char *buf, size_t size)
{
    time_t t = (time_t)(wall_ns / 1000000000u);
    struct tm tm;
    if (wall_ns == 0 || !localtime_r(&t, &tm) || strftime(buf, size, "%Y-%m-%d %H:%M", &tm) == 0)
        snprintf(buf, size, "-");
}

/* How long ago `wall_ns` was, e.g. "42s", "5m", "3h", "12d". */
static void format_age(uint64_t wall_ns, char *buf, size_t size)
{
    uint64_t now = memfit_wall_ns();
    uint64_t s = now > wall_ns ? (now - wall_ns) / 1000000000u : 0;
    if (s < 120)
        snprintf(buf, size, "%llus", (unsigned long long)s);
    else if (s < 7200)
        snprintf(buf, size, "%llum", (unsigned long long)(s / 60));
    else if (s < 2 * 86400)
        snprintf(buf, size, "%lluh", (unsigned long long)(s / 3600));
    else
        snprintf(buf, size, "%llud", (unsigned long long)(s / 86400));
}

/* The quarantine after the blobs: its totals against its bound, then each file. */
static enum memfit_status print_quarantine(memfit_store *store, json_t *json)
{
    struct memfit_store_quarantined *q;
    size_t n;
    unsigned max_files;
    uint64_t max_bytes;
    enum memfit_status st = memfit_store_quarantine_list(store, &q, &n, &max_files, &max_bytes);
    if (st != MEMFIT_OK)
        return st;
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += q[i].size_bytes;
    json_t *files = json ? json_array() : NULL;
    if (json)
        json_object_set_new(json, "quarantine",
                            json_pack("{s:I, s:I, s:I, s:I, s:o}", "n_files", (json_int_t)n,
                                      "size_bytes", (json_int_t)total, "max_files",
                                      (json_int_t)max_files, "max_bytes", (json_int_t)max_bytes,
                                      "files", json_incref(files)));
    char t[32], m[32];
    if (!json)
        printf("quarantine: %zu files, %s (bound %u files, %s)\n", n,
               memfit_format_size(total, t, sizeof(t)), max_files,
               memfit_format_size(max_bytes, m, sizeof(m)));
    for (size_t i = 0; i < n; i++) {
        char size[32], age[32];
        if (json) {
            json_array_append_new(files,
                                  json_pack("{s:s, s:s, s:I, s:I}", "path", q[i].path, "digest",
                                            q[i].digest, "size_bytes", (json_int_t)q[i].size_bytes,
                                            "added_ms", (json_int_t)(q[i].added_ns / 1000000u)));
            continue;
        }
        format_age(q[i].added_ns, age, sizeof(age));
        printf("  %10s  %6s ago  %s\n", memfit_format_size(q[i].size_bytes, size, sizeof(size)),
               age, q[i].path);
    }
    json_decref(files);
    memfit_store_quarantine_free(q, n);
    return MEMFIT_OK;
}

/* One entry as JSON (ls and info): null for a missing name or source. */
static json_t *entry_json(const struct memfit_store_entry *e)
{
    return json_pack("{s:s?, s:s, s:I, s:s?, s:s, s:I, s:b}", "name", e->name, "digest", e->digest,
                     "size_bytes", (json_int_t)e->size_bytes, "source", e->source, "path", e->path,
                     "last_used_ms", (json_int_t)(e->last_used_ns / 1000000u), "in_use", e->in_use);
}

static int do_ls(memfit_store *store, bool json)
{
    struct memfit_store_entry *e;
    size_t n;
    enum memfit_status st = memfit_store_list(store, &e, &n);
    if (st != MEMFIT_OK)
        return cli_fail_status(st);
    uint64_t total = 0;
    json_t *root = json ? json_object() : NULL, *entries = json ? json_array() : NULL;
    if (!json)
        printf("%-12s  %10s  %-16s  %-6s  %s\n", "DIGEST", "SIZE", "LAST USED", "IN USE", "NAME");
    for (size_t i = 0; i < n; i++) {
        char size[32], when[32];
        if (json) {
            json_array_append_new(entries, entry_json(&e[i]));
        } else {
            format_time(e[i].last_used_ns, when, sizeof(when));
            printf("%.12s  %10s  %-16s  %-6s  %s\n", e[i].digest,
                   memfit_format_size(e[i].size_bytes, size, sizeof(size)), when,
                   e[i].in_use ? "yes" : "", e[i].name ? e[i].name : "(no name)");
        }
        bool counted = false;
        for (size_t j = 0; j < i; j++)
            counted = counted || strcmp(e[j].digest, e[i].digest) == 0;
        if (!counted)
            total += e[i].size_bytes;
    }
    char t[32];
    if (json) {
        json_object_set_new(root, "dir", json_string(memfit_store_dir(store)));
        json_object_set_new(root, "entries", entries);
        json_object_set_new(root, "size_bytes", json_integer((json_int_t)total));
    } else {
        printf("%zu entries, %s in %s\n", n, memfit_format_size(total, t, sizeof(t)),
               memfit_store_dir(store));
    }
    memfit_store_entries_free(e, n);
    st = print_quarantine(store, root);
    if (st != MEMFIT_OK) {
        json_decref(root);
        return cli_fail_status(st);
    }
    return json ? cli_json_print("cache", root) : CLI_EXIT_OK;
}

static int do_info(memfit_store *store, const char *name, bool json)
{
    struct memfit_store_entry e;
    enum memfit_status st = memfit_store_info(store, name, &e);
    if (st != MEMFIT_OK)
        return cli_fail_status(st);
    if (json) {
        int rc = cli_json_print("cache", entry_json(&e));
        memfit_store_entry_clear(&e);
        return rc;
    }
    char size[32], when[32];
    format_time(e.last_used_ns, when, sizeof(when));
    printf("name:      %s\n", e.name ? e.name : "(none)");
    printf("digest:    sha256:%s\n", e.digest);
    printf("size:      %s (%llu bytes)\n", memfit_format_size(e.size_bytes, size, sizeof(size)),
           (unsigned long long)e.size_bytes);
    printf("source:    %s\n", e.source ? e.source : "-");
    printf("path:      %s\n", e.path);
    printf("last used: %s\n", when);
    printf("in use:    %s\n", e.in_use ? "yes" : "no");
    memfit_store_entry_clear(&e);
    return CLI_EXIT_OK;
}

static int do_verify(memfit_store *store, bool json)
{
    struct memfit_store_verify_result r = {0};
    enum memfit_status st = memfit_store_verify(store, &r);
    if (st != MEMFIT_OK && st != MEMFIT_E_CHECKSUM)
        return cli_fail_status(st);
    char b[32];
    if (json) {
        int rc = cli_json_print("cache", json_pack("{s:I, s:I, s:I}", "n_ok", (json_int_t)r.n_ok,
                                                   "n_bad", (json_int_t)r.n_bad, "read_bytes",
                                                   (json_int_t)r.n_bytes));
        if (rc != CLI_EXIT_OK)
            return rc;
    } else {
        printf("%zu ok, %zu bad (%s read)\n", r.n_ok, r.n_bad,
               memfit_format_size(r.n_bytes, b, sizeof(b)));
    }
    return st == MEMFIT_OK ? CLI_EXIT_OK : cli_fail_status(st);
}

static int do_rm(memfit_store *store, const char *name, bool json)
{
    enum memfit_status st = memfit_store_remove(store, name);
    if (st != MEMFIT_OK)
        return cli_fail_status(st);
    if (json)
        return cli_json_print("cache", json_pack("{s:s}", "removed", name));
    printf("removed %s\n", name);
    return CLI_EXIT_OK;
}

static int do_gc(memfit_store *store, uint64_t max_bytes, bool json)
{
    struct memfit_store_gc_result r = {0};
    enum memfit_status st = memfit_store_gc(store, max_bytes, &r);
    if (st != MEMFIT_OK)
        return cli_fail_status(st);
    if (json)
        return cli_json_print(
            "cache",
            json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "n_removed", (json_int_t)r.n_removed,
                      "removed_bytes", (json_int_t)r.removed_bytes, "size_bytes",
                      (json_int_t)r.total_bytes, "n_kept_in_use", (json_int_t)r.n_kept_in_use,
                      "n_quarantine_removed", (json_int_t)r.n_quarantine_removed,
                      "quarantine_removed_bytes", (json_int_t)r.quarantine_removed_bytes));
    char a[32], b[32];
    printf("removed %zu files (%s); cache holds %s", r.n_removed,
           memfit_format_size(r.removed_bytes, a, sizeof(a)),
           memfit_format_size(r.total_bytes, b, sizeof(b)));
    if (r.n_kept_in_use > 0)
        printf("; kept %zu in use", r.n_kept_in_use);
    printf("; removed %zu quarantined files (%s)\n", r.n_quarantine_removed,
           memfit_format_size(r.quarantine_removed_bytes, a, sizeof(a)));
    return CLI_EXIT_OK;
}

enum { OPT_CACHE_DIR = 1, OPT_MAX_SIZE, OPT_JSON };

static const struct cli_option options[] = {
    {"cache-dir", 0, CLI_ARG_REQUIRED, OPT_CACHE_DIR},
    {"max-size", 0, CLI_ARG_REQUIRED, OPT_MAX_SIZE},
    {"json", 0, CLI_ARG_NONE, OPT_JSON},
    {0},
};

int cmd_cache(int argc, char **argv)
{
    struct memfit_store_options so = memfit_store_options_default();
    so.offline = 1; /* nothing here needs the network */
    uint64_t max_bytes = 0;
    bool json = false;
    struct cli_args args;
    cli_args_init(&args, "cache", cmd_cache_help, argc, argv, 0, CLI_TABLES(options));
    int id;
    while ((id = cli_args_next(&args)) > 0) {
        if (id == OPT_CACHE_DIR)
            so.cache_dir = args.value;
        else if (id == OPT_JSON)
            json = true;
        else if (!cli_opt_size("cache", args.name, args.value, &max_bytes))
            return CLI_EXIT_USAGE;
    }
    if (id < 0)
        return args.status;
    if (!cli_args_at_most(&args, 2))
        return CLI_EXIT_USAGE;
    const char *action = cli_args_operand(&args, 0);
    const char *arg = cli_args_operand(&args, 1);
    if (!action)
        return cli_usage("cache", "no action (ls, info, verify, rm or gc)");
    bool needs_arg = strcmp(action, "info") == 0 || strcmp(action, "rm") == 0;
    bool known = needs_arg || strcmp(action, "ls") == 0 || strcmp(action, "verify") == 0 ||
                 strcmp(action, "gc") == 0;
    if (!known)
        return cli_usage("cache", "unknown action '%s'", action);
    if (needs_arg && !arg)
        return cli_usage("cache", "%s needs a NAME", action);
    if (!needs_arg && arg)
        return cli_usage("cache", "unexpected argument '%s'", arg);
    if (max_bytes && strcmp(action, "gc") != 0)
        return cli_usage("cache", "--max-size is for gc");

    memfit_store *store;
    enum memfit_status st = memfit_store_open(&so, &store);
    if (st != MEMFIT_OK)
        return cli_fail_status(st);
    int rc;
    if (strcmp(action, "ls") == 0)
        rc = do_ls(store, json);
    else if (strcmp(action, "info") == 0)
        rc = do_info(store, arg, json);
    else if (strcmp(action, "verify") == 0)
        rc = do_verify(store, json);
    else if (strcmp(action, "rm") == 0)
        rc = do_rm(store, arg, json);
    else
        rc = do_gc(store, max_bytes, json);
    memfit_store_close(store);
    return rc;
}

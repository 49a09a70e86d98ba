/*
 * `memfit cache`: looks after the model cache — list what is there (and
 * what sits in quarantine), show one entry, re-check every digest, remove an
 * entry, and evict least recently used files down to a size (never one a
 * running process holds).
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"

const char cmd_cache_help[] =
    "Usage: memfit cache [--cache-dir DIR] ls | info NAME | verify | rm NAME | gc [--max-size "
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
static enum memfit_status print_quarantine(memfit_store *store)
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
    char t[32], m[32];
    printf("quarantine: %zu files, %s (bound %u files, %s)\n", n,
           memfit_format_size(total, t, sizeof(t)), max_files,
           memfit_format_size(max_bytes, m, sizeof(m)));
    for (size_t i = 0; i < n; i++) {
        char size[32], age[32];
        format_age(q[i].added_ns, age, sizeof(age));
        printf("  %10s  %6s ago  %s\n", memfit_format_size(q[i].size_bytes, size, sizeof(size)),
               age, q[i].path);
    }
    memfit_store_quarantine_free(q, n);
    return MEMFIT_OK;
}

static int do_ls(memfit_store *store)
{
    struct memfit_store_entry *e;
    size_t n;
    enum memfit_status st = memfit_store_list(store, &e, &n);
    if (st != MEMFIT_OK)
        return cli_fail_status(st);
    uint64_t total = 0;
    printf("%-12s  %10s  %-16s  %-6s  %s\n", "DIGEST", "SIZE", "LAST USED", "IN USE", "NAME");
    for (size_t i = 0; i < n; i++) {
        char size[32], when[32];
        format_time(e[i].last_used_ns, when, sizeof(when));
        printf("%.12s  %10s  %-16s  %-6s  %s\n", e[i].digest,
               memfit_format_size(e[i].size_bytes, size, sizeof(size)), when,
               e[i].in_use ? "yes" : "", e[i].name ? e[i].name : "(no name)");
        bool counted = false;
        for (size_t j = 0; j < i; j++)
            counted = counted || strcmp(e[j].digest, e[i].digest) == 0;
        if (!counted)
            total += e[i].size_bytes;
    }
    char t[32];
    printf("%zu entries, %s in %s\n", n, memfit_format_size(total, t, sizeof(t)),
           memfit_store_dir(store));
    memfit_store_entries_free(e, n);
    st = print_quarantine(store);
    return st == MEMFIT_OK ? CLI_EXIT_OK : cli_fail_status(st);
}

static int do_info(memfit_store *store, const char *name)
{
    struct memfit_store_entry e;
    enum memfit_status st = memfit_store_info(store, name, &e);
    if (st != MEMFIT_OK)
        return cli_fail_status(st);
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

static int do_verify(memfit_store *store)
{
    struct memfit_store_verify_result r = {0};
    enum memfit_status st = memfit_store_verify(store, &r);
    if (st != MEMFIT_OK && st != MEMFIT_E_CHECKSUM)
        return cli_fail_status(st);
    char b[32];
    printf("%zu ok, %zu bad (%s read)\n", r.n_ok, r.n_bad,
           memfit_format_size(r.n_bytes, b, sizeof(b)));
    return st == MEMFIT_OK ? CLI_EXIT_OK : cli_fail_status(st);
}

static int do_rm(memfit_store *store, const char *name)
{
    enum memfit_status st = memfit_store_remove(store, name);
    if (st != MEMFIT_OK)
        return cli_fail_status(st);
    printf("removed %s\n", name);
    return CLI_EXIT_OK;
}

static int do_gc(memfit_store *store, uint64_t max_bytes)
{
    struct memfit_store_gc_result r = {0};
    enum memfit_status st = memfit_store_gc(store, max_bytes, &r);
    if (st != MEMFIT_OK)
        return cli_fail_status(st);
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

int cmd_cache(int argc, char **argv)
{
    if (cli_wants_help(argc, argv, cmd_cache_help))
        return CLI_EXIT_OK;
    struct memfit_store_options so = memfit_store_options_default();
    so.offline = 1; /* nothing here needs the network */
    const char *action = NULL, *arg = NULL;
    uint64_t max_bytes = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--cache-dir") == 0 || strcmp(a, "--max-size") == 0) {
            if (i + 1 >= argc)
                return cli_usage("cache", "%s needs a value", a);
            if (a[2] == 'c')
                so.cache_dir = argv[++i];
            else if (!cli_opt_size("cache", a, argv[++i], &max_bytes))
                return CLI_EXIT_USAGE;
        } else if (a[0] == '-' && a[1] != '\0') {
            return cli_usage("cache", "unknown option '%s'", a);
        } else if (!action) {
            action = a;
        } else if (!arg) {
            arg = a;
        } else {
            return cli_usage("cache", "unexpected argument '%s'", a);
        }
    }
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
        rc = do_ls(store);
    else if (strcmp(action, "info") == 0)
        rc = do_info(store, arg);
    else if (strcmp(action, "verify") == 0)
        rc = do_verify(store);
    else if (strcmp(action, "rm") == 0)
        rc = do_rm(store, arg);
    else
        rc = do_gc(store, max_bytes);
    memfit_store_close(store);
    return rc;
}

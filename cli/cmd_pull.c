/*
 * `memfit pull`: fetches a model file into the cache (trying several sources
 * in order) and prints its cached path. Progress goes to stderr: a bar on
 * a terminal, else a plain line every 5 s and one at the end. Ctrl-C cancels cleanly
 * (the partial download is kept and resumed next time).
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "fetch_common.h"

const char cmd_pull_help[] =
    "Usage: memfit pull SOURCE... [--sha256 HEX] [--name NAME] [--cache-dir DIR] [--offline]\n"
    "                   [--json]\n"
    "\n"
    "Fetches one model file into the cache and prints its path. The sources are\n"
    "tried in order; each is retried on network errors with back-off.\n"
    "\n"
    "Sources:\n"
    "  PATH, file:///PATH                  a local file\n"
    "  http://..., https://...             TLS is verified (MEMFIT_CA_BUNDLE adds a CA file)\n"
    "  s3://BUCKET/KEY                     AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/\n"
    "                                      AWS_SESSION_TOKEN, web identity\n"
    "                                      (AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN),\n"
    "                                      ~/.aws/credentials, ~/.aws/config (AWS_PROFILE),\n"
    "                                      or the container endpoint\n"
    "                                      (AWS_CONTAINER_CREDENTIALS_*_URI); AWS_REGION;\n"
    "                                      AWS_ENDPOINT_URL_S3 for S3-compatible (docs/store.md)\n"
    "  hf://ORG/REPO/PATH[@REVISION]       Hugging Face Hub (HF_TOKEN or $HF_HOME/token,\n"
    "                                      HF_ENDPOINT)\n"
    "\n"
    "Options:\n"
    "  --sha256 HEX          expected SHA-256; a mismatch tries the next source\n"
    "  --name NAME           also record the file under NAME (memfit cache info NAME)\n"
    "  --cache-dir DIR       cache directory (default MEMFIT_CACHE_DIR, LOCAL_CACHE_DIR,\n"
    "                        then $XDG_CACHE_HOME/memfit or ~/.cache/memfit)\n"
    "  --offline             use the cache only (also MEMFIT_OFFLINE=1, HF_HUB_OFFLINE=1)\n"
    "  --attempts N          attempts per source (default 4)\n"
    "  --connect-timeout D   connect timeout (default 15s)\n"
    "  --stall-timeout D     give up on a transfer slower than 1 KiB/s for D (default 30s)\n"
    "  --lock-timeout D      wait at most D for another process downloading the same file\n"
    "  -q, --quiet           no progress\n"
    "  --json                print one JSON object instead of the path (docs/store.md):\n"
    "                        {\"name\" (--name or null), \"digest\", \"size_bytes\",\n"
    "                        \"path\", \"source\" (the one used, redacted; null when\n"
    "                        found by name or digest), \"from_cache\" (nothing downloaded)}\n"
    "\n"
    "Progress goes to stderr: a live bar on a terminal; otherwise (logs, CI, kubectl\n"
    "logs) a line every 5 s (MEMFIT_PROGRESS_INTERVAL, a duration, changes it) and\n"
    "one at the end, e.g. \"memfit pull: model.gguf 120 MiB of 335 MiB (36 %), 40 MiB/s\".\n"
    "MEMFIT_CACHE_MAX_GB limits the cache size (least recently used files go first).\n"
    "Exit status: 0 success, 1 failure, 2 usage error.\n";

static bool opt_ms(const char *option, const char *text, unsigned *out)
{
    uint64_t ns;
    if (!cli_opt_duration("pull", option, text, &ns))
        return false;
    uint64_t ms = ns / 1000000u;
    *out = ms > 0xffffffffu ? 0xffffffffu : (unsigned)ms;
    return true;
}

/*
 * "memfit pull: NAME" for the progress lines: the --name, else the last
 * segment of the first source's path, never its host (user:password@) or
 * its query (signed URLs carry secrets there).
 */
static void progress_label(const char *what, char *buf, size_t size)
{
    const char *path = what ? strstr(what, "://") : NULL;
    if (path) {
        path = strchr(path + 3, '/'); /* past the host */
    } else {
        path = what;
    }
    size_t len = path ? strcspn(path, "?#") : 0, start = len;
    while (start > 0 && path[start - 1] != '/')
        start--;
    if (len > start)
        snprintf(buf, size, "memfit pull: %.*s", (int)(len - start > 200 ? 200 : len - start),
                 path + start);
    else
        snprintf(buf, size, "memfit pull: the file");
}

enum {
    OPT_QUIET = 'q',
    OPT_SHA256 = 1,
    OPT_NAME,
    OPT_CACHE_DIR,
    OPT_OFFLINE,
    OPT_ATTEMPTS,
    OPT_CONNECT_TIMEOUT,
    OPT_STALL_TIMEOUT,
    OPT_LOCK_TIMEOUT,
    OPT_JSON,
};

static const struct cli_option options[] = {
    {"quiet", 'q', CLI_ARG_NONE, OPT_QUIET},
    {"sha256", 0, CLI_ARG_REQUIRED, OPT_SHA256},
    {"name", 0, CLI_ARG_REQUIRED, OPT_NAME},
    {"cache-dir", 0, CLI_ARG_REQUIRED, OPT_CACHE_DIR},
    {"offline", 0, CLI_ARG_NONE, OPT_OFFLINE},
    {"attempts", 0, CLI_ARG_REQUIRED, OPT_ATTEMPTS},
    {"connect-timeout", 0, CLI_ARG_REQUIRED, OPT_CONNECT_TIMEOUT},
    {"stall-timeout", 0, CLI_ARG_REQUIRED, OPT_STALL_TIMEOUT},
    {"lock-timeout", 0, CLI_ARG_REQUIRED, OPT_LOCK_TIMEOUT},
    {"json", 0, CLI_ARG_NONE, OPT_JSON},
    {0},
};

/* Returns -1 to go on with the pull, else the exit code (after the help or a usage error). */
static int parse(int argc, char **argv, struct memfit_store_options *so,
                 struct memfit_fetch_options *fo, bool *quiet, bool *json, struct cli_args *a)
{
    cli_args_init(a, "pull", cmd_pull_help, argc, argv, 0, CLI_TABLES(options));
    int id;
    while ((id = cli_args_next(a)) > 0) {
        const char *v = a->value;
        long long n;
        unsigned ms;
        switch (id) {
        case OPT_QUIET:
            *quiet = true;
            break;
        case OPT_JSON:
            *json = true;
            break;
        case OPT_OFFLINE:
            so->offline = 1;
            break;
        case OPT_SHA256:
            fo->sha256 = v;
            break;
        case OPT_NAME:
            fo->name = v;
            break;
        case OPT_CACHE_DIR:
            so->cache_dir = v;
            break;
        case OPT_ATTEMPTS:
            if (!cli_opt_int("pull", a->name, v, 1, 100, &n))
                return CLI_EXIT_USAGE;
            so->max_attempts = (unsigned)n;
            break;
        case OPT_CONNECT_TIMEOUT:
            if (!opt_ms(a->name, v, &so->connect_timeout_ms))
                return CLI_EXIT_USAGE;
            break;
        case OPT_STALL_TIMEOUT:
            if (!opt_ms(a->name, v, &ms))
                return CLI_EXIT_USAGE;
            so->stall_timeout_s = ms < 1000 ? 1 : ms / 1000;
            break;
        default: /* OPT_LOCK_TIMEOUT */
            if (!opt_ms(a->name, v, &so->lock_wait_timeout_ms))
                return CLI_EXIT_USAGE;
            break;
        }
    }
    if (id < 0)
        return a->status;
    if (a->n_operands > 64)
        return cli_usage("pull", "at most 64 sources");
    if (a->n_operands == 0 && !fo->name && !fo->sha256)
        return cli_usage("pull", "no SOURCE given");
    return -1;
}

int cmd_pull(int argc, char **argv)
{
    struct memfit_store_options so = memfit_store_options_default();
    struct memfit_fetch_options fo = {0};
    bool quiet = false, json = false;
    struct cli_args a;
    int rc = parse(argc, argv, &so, &fo, &quiet, &json, &a);
    if (rc >= 0)
        return rc;
    rc = CLI_EXIT_OK;
    const char *const *sources = (const char *const *)a.operands;
    size_t n_sources = (size_t)a.n_operands;

    memfit_store *store;
    enum memfit_status st = memfit_store_open(&so, &store);
    if (st != MEMFIT_OK)
        return cli_fail_status(st);

    struct cli_progress bar;
    cli_fetch_prepare(&fo, &bar, quiet);
    char label[300];
    progress_label(fo.name ? fo.name : n_sources ? sources[0] : NULL, label, sizeof(label));
    bar.label = label;
    struct memfit_fetch_result r;
    st = memfit_store_fetch_detailed(store, sources, n_sources, &fo, &r);
    cli_fetch_done(&bar);
    memfit_store_close(store);
    if (st != MEMFIT_OK)
        return cli_fail_status(st);
    if (json)
        rc = cli_json_print("pull",
                            json_pack("{s:s?, s:s, s:I, s:s, s:s?, s:b}", "name", fo.name, "digest",
                                      r.digest, "size_bytes", (json_int_t)r.size_bytes, "path",
                                      r.path, "source", r.source, "from_cache", r.from_cache));
    else
        printf("%s\n", r.path);
    memfit_fetch_result_clear(&r);
    return rc;
}

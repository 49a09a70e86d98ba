/*
 * `memfit pull`: fetches a model file into the cache (trying several sources
 * in order) and prints its cached path. Progress goes to stderr: a bar on
 * a terminal, else a plain line every 5 s and one at the end. Ctrl-C cancels cleanly
 * (the partial download is kept and resumed next time).
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "fetch_common.h"

const char cmd_pull_help[] =
    "Usage: memfit pull SOURCE... [--sha256 HEX] [--name NAME] [--cache-dir DIR] [--offline]\n"
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

static bool takes_value(const char *option)
{
    static const char *const names[] = {
        "--sha256",          "--name",          "--cache-dir",   "--attempts",
        "--connect-timeout", "--stall-timeout", "--lock-timeout"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(option, names[i]) == 0)
            return true;
    return false;
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

int cmd_pull(int argc, char **argv)
{
    if (cli_wants_help(argc, argv, cmd_pull_help))
        return CLI_EXIT_OK;
    struct memfit_store_options so = memfit_store_options_default();
    struct memfit_fetch_options fo = {0};
    const char *sources[64];
    size_t n_sources = 0;
    bool quiet = false, only_sources = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (!only_sources && takes_value(a) && !next)
            return cli_usage("pull", "%s needs a value", a);
        if (only_sources || a[0] != '-' || strcmp(a, "-") == 0) {
            if (n_sources == sizeof(sources) / sizeof(sources[0]))
                return cli_usage("pull", "at most %zu sources", n_sources);
            sources[n_sources++] = a;
        } else if (strcmp(a, "--") == 0) {
            only_sources = true;
        } else if (strcmp(a, "--offline") == 0) {
            so.offline = 1;
        } else if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0) {
            quiet = true;
        } else if (strcmp(a, "--sha256") == 0) {
            fo.sha256 = argv[++i];
        } else if (strcmp(a, "--name") == 0) {
            fo.name = argv[++i];
        } else if (strcmp(a, "--cache-dir") == 0) {
            so.cache_dir = argv[++i];
        } else if (strcmp(a, "--attempts") == 0) {
            long long n;
            if (!cli_opt_int("pull", a, argv[++i], 1, 100, &n))
                return CLI_EXIT_USAGE;
            so.max_attempts = (unsigned)n;
        } else if (strcmp(a, "--connect-timeout") == 0) {
            if (!opt_ms(a, argv[++i], &so.connect_timeout_ms))
                return CLI_EXIT_USAGE;
        } else if (strcmp(a, "--stall-timeout") == 0) {
            unsigned ms;
            if (!opt_ms(a, argv[++i], &ms))
                return CLI_EXIT_USAGE;
            so.stall_timeout_s = ms < 1000 ? 1 : ms / 1000;
        } else if (strcmp(a, "--lock-timeout") == 0) {
            if (!opt_ms(a, argv[++i], &so.lock_wait_timeout_ms))
                return CLI_EXIT_USAGE;
        } else {
            return cli_usage("pull", "unknown option '%s'", a);
        }
    }
    if (n_sources == 0 && !fo.name && !fo.sha256)
        return cli_usage("pull", "no SOURCE given");

    memfit_store *store;
    enum memfit_status st = memfit_store_open(&so, &store);
    if (st != MEMFIT_OK)
        return cli_fail_status(st);

    struct cli_progress bar;
    cli_fetch_prepare(&fo, &bar, quiet);
    char label[300];
    progress_label(fo.name ? fo.name : n_sources ? sources[0] : NULL, label, sizeof(label));
    bar.label = label;
    char *path = NULL;
    st = memfit_store_fetch(store, sources, n_sources, &fo, &path);
    cli_fetch_done(&bar);
    memfit_store_close(store);
    if (st != MEMFIT_OK)
        return cli_fail_status(st);
    printf("%s\n", path);
    memfit_free(path);
    return CLI_EXIT_OK;
}

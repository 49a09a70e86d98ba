/*
 * `memfit cleanup`: asks a running `memfit serve` to give memory back
 * (POST /api/cleanup: unload idle models, trim the heap, drop the page cache
 * of weight files no model has loaded) and prints what it freed
 * (server_client.h). With --pid it asks any
 * process through its channel directory instead (docs/channel.md), and with
 * --cgroup it reclaims a cgroup's page cache.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "server_client.h"

const char cmd_cleanup_help[] =
    "Usage: memfit cleanup [--url URL] [--timeout DURATION]\n"
    "       memfit cleanup --pid PID [--cgroup [DIR]] [--timeout DURATION] [--json]\n"
    "       memfit cleanup --cgroup [DIR] [--json]\n"
    "\n"
    "Without --pid or --cgroup: asks a running `memfit serve` to free memory now:\n"
    "it unloads idle models, returns freed heap to the system (malloc_trim) and\n"
    "drops the page cache of weight files no loaded model uses. Prints the\n"
    "server's JSON answer.\n"
    "\n"
    "--pid PID asks that process instead, through its channel directory\n"
    "(docs/channel.md): a program under `memfit monitor`, or one that called\n"
    "memfit.answer_cleanup_requests() (the Python package in python/). It runs\n"
    "gc, malloc_trim and torch.cuda.empty_cache and answers; memfit prints the\n"
    "process's RSS before and after as it measured it, and the process's answer.\n"
    "\n"
    "--cgroup reclaims a cgroup's page cache (clean file pages that count against\n"
    "its limit): DIR, else the cgroup of --pid, else memfit's own. v2 through\n"
    "memory.reclaim (with swappiness=0); v1 through memory.force_empty, refused\n"
    "when the machine has swap and the cgroup's memory.swappiness is not 0 (it\n"
    "would push the processes' memory to swap). Prints usage and memory in use\n"
    "before and after.\n"
    "\n"
    "Options:\n"
    "  --url URL            the server (default $MEMFIT_URL, else http://127.0.0.1:8080)\n"
    "  --pid PID            ask this process to clean up\n"
    "  --cgroup [DIR]       reclaim a cgroup's page cache (a directory under\n"
    "                       /sys/fs/cgroup)\n"
    "  --timeout DURATION   give up after this long (default 30s; 10s with --pid)\n"
    "  --json               with --pid/--cgroup: one JSON object on stdout\n"
    "\n"
    "MEMFIT_API_KEY is sent as \"Authorization: Bearer KEY\" when set.\n"
    "\n"
    "Exit status: 0 success, 1 failure (no server, an error answer, a process that\n"
    "has no channel or does not answer, a refused reclaim), 2 usage error.\n";

/* POST /api/cleanup to a `memfit serve` (the default mode). */
static int cleanup_server(const char *url, uint64_t timeout_ns)
{
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

#define GUIDE                                                                                      \
    "in Python: `import memfit; memfit.answer_cleanup_requests()` (python/README.md); other "      \
    "programs: docs/channel.md"

static uint64_t rss_of(pid_t pid)
{
    struct memfit_proc_mem m;
    return memfit_proc_read(NULL, pid, &m) == MEMFIT_OK ? m.rss_bytes : MEMFIT_SYS_UNKNOWN;
}

static const char *mib(uint64_t bytes, char *buf, size_t size)
{
    if (bytes == MEMFIT_SYS_UNKNOWN)
        return "?";
    snprintf(buf, size, "%.1f MiB", (double)bytes / (1024.0 * 1024.0));
    return buf;
}

static long long freed(uint64_t before, uint64_t after)
{
    if (before == MEMFIT_SYS_UNKNOWN || after == MEMFIT_SYS_UNKNOWN)
        return 0;
    return (long long)before - (long long)after;
}

/* A size as JSON: a number, or null when unknown. */
static void json_size(const char *key, uint64_t v, const char *sep)
{
    if (v == MEMFIT_SYS_UNKNOWN)
        printf("\"%s\":null%s", key, sep);
    else
        printf("\"%s\":%llu%s", key, (unsigned long long)v, sep);
}

/* Asks `pid` to clean up through its channel; prints the outcome. */
static int cleanup_process(pid_t pid, uint64_t timeout_ns, bool json)
{
    char dir[MEMFIT_SYS_PATH_MAX];
    enum memfit_status st = memfit_channel_find(NULL, pid, dir, sizeof(dir));
    if (st == MEMFIT_E_NOT_FOUND && kill(pid, 0) == 0)
        return cli_fail("cleanup: %s; to enable it %s", memfit_last_error(), GUIDE);
    if (st != MEMFIT_OK)
        return cli_fail("cleanup: %s", memfit_last_error());
    uint64_t before = rss_of(pid);
    struct memfit_cleanup_answer answer;
    st = memfit_cleanup_request(dir, pid, timeout_ns, &answer);
    if (st == MEMFIT_E_TIMEOUT)
        return cli_fail("cleanup: %s: is it answering requests? %s", memfit_last_error(), GUIDE);
    if (st != MEMFIT_OK)
        return cli_fail("cleanup: %s", memfit_last_error());
    uint64_t after = rss_of(pid);
    if (json) {
        printf("\"process\":{\"pid\":%d,\"channel_dir\":\"", (int)pid);
        for (const char *c = dir; *c; c++)
            printf(*c == '"' || *c == '\\' ? "\\%c" : (unsigned char)*c < 0x20 ? "?" : "%c", *c);
        printf("\",");
        json_size("rss_before_bytes", before, ",");
        json_size("rss_after_bytes", after, ",");
        printf("\"freed_bytes\":%lld,\"answer\":{\"id\":\"%s\",", freed(before, after), answer.id);
        json_size("rss_before_bytes", answer.rss_before_bytes, ",");
        json_size("rss_after_bytes", answer.rss_after_bytes, ",");
        json_size("gpu_freed_bytes", answer.gpu_freed_bytes, ",");
        printf("\"actions\":[");
        for (const char *a = answer.actions; *a;) {
            size_t n = strcspn(a, ",");
            printf("%s\"%.*s\"", a == answer.actions ? "" : ",", (int)n, a);
            a += n + (a[n] == ',');
        }
        printf("]}}");
        return CLI_EXIT_OK;
    }
    char b1[32], b2[32], b3[32], b4[32];
    printf("process %d: RSS %s -> %s (freed %.1f MiB), measured by memfit\n", (int)pid,
           mib(before, b1, sizeof(b1)), mib(after, b2, sizeof(b2)),
           (double)freed(before, after) / (1024.0 * 1024.0));
    printf("its answer: RSS %s -> %s; %s", mib(answer.rss_before_bytes, b3, sizeof(b3)),
           mib(answer.rss_after_bytes, b4, sizeof(b4)),
           answer.actions[0] ? answer.actions : "no actions");
    if (answer.gpu_freed_bytes != MEMFIT_SYS_UNKNOWN && answer.gpu_freed_bytes > 0)
        printf("; GPU cache freed %s", mib(answer.gpu_freed_bytes, b1, sizeof(b1)));
    printf("\n");
    return CLI_EXIT_OK;
}

/* The memory controller version of a cgroup directory, from its files; 0 if none. */
static int cgroup_dir_version(const char *dir)
{
    char path[MEMFIT_SYS_PATH_MAX];
    struct stat st;
    snprintf(path, sizeof(path), "%s/memory.usage_in_bytes", dir);
    if (stat(path, &st) == 0)
        return 1;
    snprintf(path, sizeof(path), "%s/memory.current", dir);
    if (stat(path, &st) == 0)
        return 2;
    snprintf(path, sizeof(path), "%s/memory.stat", dir);
    return stat(path, &st) == 0 ? 2 : 0; /* the v2 root has memory.stat only */
}

static void json_figures(const char *key, const struct memfit_cgroup_figures *f, const char *sep)
{
    printf("\"%s\":{", key);
    json_size("usage_bytes", f->usage_bytes, ",");
    json_size("in_use_bytes", f->in_use_bytes, ",");
    json_size("file_bytes", f->file_bytes, ",");
    json_size("anon_bytes", f->anon_bytes, ",");
    json_size("swap_bytes", f->swap_bytes, "");
    printf("}%s", sep);
}

/* Reclaims the page cache of the cgroup `dir` (NULL: that of pid, 0 = memfit's own). */
static int cleanup_cgroup(const char *dir, pid_t pid, bool json)
{
    struct memfit_cgroup cg;
    int version;
    if (dir) {
        version = cgroup_dir_version(dir);
        if (version == 0)
            return cli_fail("cleanup: --cgroup %s: not a memory cgroup directory (no "
                            "memory.usage_in_bytes or memory.current)",
                            dir);
    } else {
        if (memfit_cgroup_read(NULL, pid, &cg) != MEMFIT_OK)
            return cli_fail("cleanup: %s", memfit_last_error());
        if (cg.memory_version == 0)
            return cli_fail("cleanup: no memory cgroup found for %s",
                            pid ? "the process" : "memfit");
        dir = cg.dir;
        version = cg.memory_version;
    }
    struct memfit_cgroup_reclaim r;
    if (memfit_cgroup_reclaim_cache(dir, version, &r) != MEMFIT_OK)
        return cli_fail("cleanup: %s", memfit_last_error());
    if (json) {
        printf("\"cgroup\":{\"dir\":\"");
        for (const char *c = dir; *c; c++)
            printf(*c == '"' || *c == '\\' ? "\\%c" : (unsigned char)*c < 0x20 ? "?" : "%c", *c);
        printf("\",\"version\":%d,\"method\":\"%s\",", version, r.method);
        json_size("asked_bytes", r.asked_bytes, ",");
        json_figures("before", &r.before, ",");
        json_figures("after", &r.after, ",");
        printf("\"freed_bytes\":%lld}", freed(r.before.usage_bytes, r.after.usage_bytes));
        return CLI_EXIT_OK;
    }
    char b1[32], b2[32], b3[32], b4[32], b5[32], b6[32];
    printf("cgroup %s (v%d, %s): usage %s -> %s (freed %.1f MiB), in use %s -> %s, page "
           "cache %s -> %s\n",
           dir, version, r.method, mib(r.before.usage_bytes, b1, sizeof(b1)),
           mib(r.after.usage_bytes, b2, sizeof(b2)),
           (double)freed(r.before.usage_bytes, r.after.usage_bytes) / (1024.0 * 1024.0),
           mib(r.before.in_use_bytes, b3, sizeof(b3)), mib(r.after.in_use_bytes, b4, sizeof(b4)),
           mib(r.before.file_bytes, b5, sizeof(b5)), mib(r.after.file_bytes, b6, sizeof(b6)));
    return CLI_EXIT_OK;
}

enum { OPT_PID = 1, OPT_CGROUP };

static const struct cli_option options[] = {
    {"pid", 0, CLI_ARG_REQUIRED, OPT_PID},
    {"cgroup", 0, CLI_ARG_OPTIONAL, OPT_CGROUP},
    {0},
};

int cmd_cleanup(int argc, char **argv)
{
    /* --timeout's default depends on what is asked: UINT64_MAX until given. */
    struct cli_server_opts so = {NULL, UINT64_MAX, false};
    const char *cgroup_dir = NULL;
    long long pid = 0;
    bool cgroup = false;
    struct cli_args a;
    cli_args_init(&a, "cleanup", cmd_cleanup_help, argc, argv, 0,
                  CLI_TABLES(options, cli_server_options));
    int id;
    while ((id = cli_args_next(&a)) > 0) {
        if (id == OPT_PID) {
            if (!cli_opt_int("cleanup", a.name, a.value, 1, INT32_MAX, &pid))
                return CLI_EXIT_USAGE;
        } else if (id == OPT_CGROUP) {
            cgroup = true;
            cgroup_dir = a.value;
        } else if (cli_server_option("cleanup", &a, id, &so) != CLI_EXIT_OK) {
            return CLI_EXIT_USAGE;
        }
    }
    if (id < 0)
        return a.status;
    /* --cgroup's directory is optional: "--cgroup DIR" gives it as the one operand. */
    if (cgroup && !cgroup_dir && a.n_operands == 1) {
        cgroup_dir = a.operands[0];
        a.n_operands = 0;
    }
    if (!cli_args_at_most(&a, 0))
        return CLI_EXIT_USAGE;
    const char *url = so.url;
    bool json = so.json, timeout_set = so.timeout_ns != UINT64_MAX;
    uint64_t timeout_ns = so.timeout_ns;
    if (cgroup_dir && !cgroup_dir[0])
        return cli_usage("cleanup", "--cgroup=: empty directory");
    if (!pid && !cgroup) {
        if (json)
            return cli_usage("cleanup", "--json goes with --pid or --cgroup (the server's "
                                        "answer is JSON already)");
        return cleanup_server(url ? url : cli_server_default_url(),
                              timeout_set ? timeout_ns : 30ull * 1000000000u);
    }
    if (url)
        return cli_usage("cleanup", "--url asks a server; it does not go with --pid or --cgroup");
    if (json)
        printf("{");
    int rc = CLI_EXIT_OK;
    if (pid)
        rc = cleanup_process((pid_t)pid, timeout_set ? timeout_ns : 10ull * 1000000000u, json);
    if (rc == CLI_EXIT_OK && cgroup) {
        if (json && pid)
            printf(",");
        rc = cleanup_cgroup(cgroup_dir, (pid_t)pid, json);
    }
    if (json)
        printf("}\n");
    return rc;
}

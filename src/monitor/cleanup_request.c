/*
 * `memfit cleanup --pid PID`'s side of the channel (docs/channel.md, "Asking
 * a process to clean up"): finding the process's channel directory from its
 * environment, writing a request there and waiting for the answer. The
 * answering side is the Python package (python/memfit/_cleanup.py), or any
 * program that follows the document.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/file.h"
#include "core/json.h"
#include "memfit/monitor.h"

#define ENVIRON_MAX (1u << 20) /* the kernel caps a process's environment far lower */
#define POLL_NS     20000000u  /* 20 ms between looks for the answer */

/* Reads ROOT/proc/PID/environ whole; *out is NUL-separated, freed by the caller. */
static enum memfit_status read_environ(const char *root, pid_t pid, char **out, size_t *out_len)
{
    char path[MEMFIT_SYS_PATH_MAX];
    snprintf(path, sizeof(path), "%s/proc/%d/environ", root && strcmp(root, "/") ? root : "",
             (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT)
            return memfit_fail(MEMFIT_E_NOT_FOUND, "no process with pid %d", (int)pid);
        return memfit_fail(mf_io_status(e), "%s: %s (run as its user or as root)", path,
                           strerror(e));
    }
    size_t cap = 8192, len = 0;
    char *buf = memfit_malloc(cap + 1);
    enum memfit_status st = buf ? MEMFIT_OK : MEMFIT_E_NOMEM;
    while (st == MEMFIT_OK) {
        if (len == cap) {
            char *bigger = cap * 2 <= ENVIRON_MAX ? memfit_realloc(buf, cap * 2 + 1) : NULL;
            if (!bigger) {
                st = cap * 2 <= ENVIRON_MAX
                         ? MEMFIT_E_NOMEM
                         : memfit_fail(MEMFIT_E_RANGE, "%s: over %u bytes", path, ENVIRON_MAX);
                break;
            }
            buf = bigger;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            st = memfit_fail(mf_io_status(errno), "%s: %s", path, strerror(errno));
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    if (st != MEMFIT_OK) {
        memfit_free(buf);
        return st;
    }
    buf[len] = '\0';
    *out = buf;
    *out_len = len;
    return MEMFIT_OK;
}

/* The value of NAME in a NUL-separated environment, or NULL. */
static const char *env_value(const char *env, size_t len, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = env; p < env + len; p += strlen(p) + 1)
        if (strncmp(p, name, n) == 0 && p[n] == '=')
            return p + n + 1;
    return NULL;
}

/* True when `dir` is a real directory (not a link) owned by `uid`. */
static bool private_dir_of(const char *dir, uid_t uid)
{
    struct stat st;
    return lstat(dir, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == uid;
}

static enum memfit_status copy_out(char *out, size_t size, const char *dir)
{
    if (strlen(dir) >= size)
        return memfit_fail(MEMFIT_E_RANGE, "channel directory %s: path too long", dir);
    memcpy(out, dir, strlen(dir) + 1);
    return MEMFIT_OK;
}

enum memfit_status memfit_channel_find(const char *root, pid_t pid, char *out, size_t size)
{
    if (pid <= 0 || !out || size == 0)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_channel_find: bad pid or buffer");
    const char *prefix = root && strcmp(root, "/") ? root : "";
    char path[MEMFIT_SYS_PATH_MAX], dir[MEMFIT_SYS_PATH_MAX];
    struct stat proc;
    snprintf(path, sizeof(path), "%s/proc/%d", prefix, (int)pid);
    if (stat(path, &proc) != 0)
        return memfit_fail(MEMFIT_E_NOT_FOUND, "no process with pid %d", (int)pid);
    char *env = NULL;
    size_t len = 0;
    enum memfit_status st = read_environ(root, pid, &env, &len);
    if (st != MEMFIT_OK)
        return st;
    const char *state = env_value(env, len, "MEMFIT_PRESSURE_FILE");
    const char *slash = state ? strrchr(state, '/') : NULL;
    char tried[3][MEMFIT_SYS_PATH_MAX + 32];
    unsigned n_tried = 0;
    if (slash && (size_t)(slash - state) < sizeof(dir)) {
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - state), state);
        if (private_dir_of(dir, proc.st_uid)) {
            memfit_free(env);
            return copy_out(out, size, dir);
        }
        snprintf(tried[n_tried++], sizeof(tried[0]), "%s (MEMFIT_PRESSURE_FILE's)", dir);
    }
    const char *runtime = env_value(env, len, "XDG_RUNTIME_DIR");
    const char *bases[2] = {runtime && runtime[0] ? runtime : "/tmp", "/tmp"};
    for (unsigned i = 0; i < 2 && st == MEMFIT_OK; i++) {
        if (i == 1 && strcmp(bases[0], bases[1]) == 0)
            break;
        snprintf(dir, sizeof(dir), "%s/memfit-%u/pid-%d", bases[i], (unsigned)proc.st_uid,
                 (int)pid);
        if (private_dir_of(dir, proc.st_uid)) {
            memfit_free(env);
            return copy_out(out, size, dir);
        }
        snprintf(tried[n_tried++], sizeof(tried[0]), "%s", dir);
    }
    memfit_free(env);
    return memfit_fail(MEMFIT_E_NOT_FOUND,
                       "process %d has no channel directory (looked at %s%s%s%s%s): it neither "
                       "runs under `memfit monitor` nor answers cleanup requests",
                       (int)pid, tried[0], n_tried > 1 ? ", " : "", n_tried > 1 ? tried[1] : "",
                       n_tried > 2 ? ", " : "", n_tried > 2 ? tried[2] : "");
}

/* Reads cleanup.done; true when it holds the answer to `id` (parsed into *out). */
static enum memfit_status read_answer(const char *path, const char *id,
                                      struct memfit_cleanup_answer *out, bool *matched)
{
    *matched = false;
    mf_json_clear_alloc_failure();
    json_error_t jerr;
    json_t *doc = json_load_file(path, 0, &jerr);
    if (!doc) {
        if (mf_json_alloc_failed())
            return MEMFIT_E_NOMEM;
        if (access(path, F_OK) != 0)
            return MEMFIT_OK; /* not there yet */
        return memfit_fail(MEMFIT_E_FORMAT, "%s: %s", path, jerr.text);
    }
    enum memfit_status st = MEMFIT_OK;
    const char *got = json_string_value(json_object_get(doc, "id"));
    if (!json_is_object(doc)) {
        st = memfit_fail(MEMFIT_E_FORMAT, "%s: not a JSON object", path);
    } else if (got && strcmp(got, id) == 0) {
        struct memfit_cleanup_answer a = {0};
        snprintf(a.id, sizeof(a.id), "%s", got);
        const char *keys[3] = {"rss_before_bytes", "rss_after_bytes", "gpu_freed_bytes"};
        uint64_t *fields[3] = {&a.rss_before_bytes, &a.rss_after_bytes, &a.gpu_freed_bytes};
        for (int i = 0; i < 3; i++) {
            json_t *v = json_object_get(doc, keys[i]);
            *fields[i] = json_is_integer(v) && json_integer_value(v) >= 0
                             ? (uint64_t)json_integer_value(v)
                             : MEMFIT_SYS_UNKNOWN;
        }
        size_t i;
        json_t *action;
        json_array_foreach(json_object_get(doc, "actions"), i, action)
        {
            const char *name = json_string_value(action);
            size_t used = strlen(a.actions);
            if (name && used + strlen(name) + 2 < sizeof(a.actions))
                snprintf(a.actions + used, sizeof(a.actions) - used, "%s%s", used ? "," : "", name);
        }
        *out = a;
        *matched = true;
    }
    json_decref(doc);
    return st;
}

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

enum memfit_status memfit_cleanup_request(const char *channel_dir, pid_t pid, uint64_t timeout_ns,
                                          struct memfit_cleanup_answer *out)
{
    if (!channel_dir || !channel_dir[0] || pid <= 0 || !out)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_cleanup_request: bad arguments");
    char request_path[MEMFIT_SYS_PATH_MAX], done_path[MEMFIT_SYS_PATH_MAX], id[64];
    if ((size_t)snprintf(request_path, sizeof(request_path), "%s/cleanup.request", channel_dir) >=
            sizeof(request_path) ||
        (size_t)snprintf(done_path, sizeof(done_path), "%s/cleanup.done", channel_dir) >=
            sizeof(done_path))
        return memfit_fail(MEMFIT_E_RANGE, "%s: path too long", channel_dir);
    uint64_t wall = memfit_wall_ns();
    snprintf(id, sizeof(id), "%d-%llu", (int)getpid(), (unsigned long long)wall);
    char body[256];
    int n = snprintf(body, sizeof(body),
                     "{\"v\":1,\"id\":\"%s\",\"time\":%.3f,\"from_pid\":%d,\"pid\":%d}\n", id,
                     (double)wall / 1e9, (int)getpid(), (int)pid);
    enum memfit_status st = mf_file_write_atomic(request_path, body, (size_t)n, 0600, false);
    if (st != MEMFIT_OK)
        return st;
    uint64_t deadline = memfit_now_ns() + timeout_ns;
    for (;;) {
        bool matched;
        st = read_answer(done_path, id, out, &matched);
        if (st != MEMFIT_OK || matched)
            return st;
        if (kill(pid, 0) != 0 && errno == ESRCH) {
            unlink(request_path);
            return memfit_fail(MEMFIT_E_NOT_FOUND, "process %d exited before answering", (int)pid);
        }
        if (memfit_now_ns() >= deadline)
            break;
        sleep_ns(POLL_NS);
    }
    /* Withdraw the request, unless the process has just taken it. */
    unlink(request_path);
    return memfit_fail(MEMFIT_E_TIMEOUT,
                       "process %d did not answer the cleanup request in %s within %.1f s",
                       (int)pid, channel_dir, (double)timeout_ns / 1e9);
}

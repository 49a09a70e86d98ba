/*
 * Download locks that survive crashes and weak file systems.
 *
 * The primary mechanism is a lock file created with O_CREAT|O_EXCL, which
 * works across threads, processes and (on any sane file system) hosts. It
 * records who holds it: pid, host name, the process's start time (so a
 * reused pid is not mistaken for the holder) and the creation time. The
 * holder also takes flock(LOCK_EX) on it: where flock works, a waiter that
 * cannot get the flock knows the holder is alive even when it cannot see
 * the pid (another pid namespace on the same host name).
 *
 * A lock is stale when the flock is free and either its holder is on this
 * host and gone (kill(pid, 0) is ESRCH, or the pid now belongs to a process
 * started later), or the file has not been touched (heartbeat) for
 * stale_ms. A stale lock is broken by renaming it to a unique name and
 * checking that what was renamed is the file judged stale; a live lock
 * taken by mistake in that race is put back, and its holder notices at its
 * next heartbeat otherwise (E_BUSY).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "store/internal.h"

bool mf_lock_parse(const char *text, struct mf_lock_owner *out)
{
    long pid = 0;
    unsigned long long start = 0, created = 0;
    char host[256];
    if (sscanf(text, "pid=%ld host=%255s start=%llu created=%llu", &pid, host, &start, &created) !=
            4 ||
        pid <= 0)
        return false;
    memset(out, 0, sizeof(*out));
    out->pid = (pid_t)pid;
    out->start_ticks = start;
    out->created_ns = created;
    snprintf(out->host, sizeof(out->host), "%s", host);
    return true;
}

static uint64_t mtime_ns(const struct stat *st)
{
    return (uint64_t)st->st_mtim.tv_sec * 1000000000u + (uint64_t)st->st_mtim.tv_nsec;
}

/* Staleness of the lock open as `fd` with metadata `st`. */
static bool fd_is_stale(int fd, const struct stat *st, unsigned stale_ms)
{
    /* flock held by someone else: the holder is certainly alive. */
    if (flock(fd, LOCK_SH | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK)
            return false;
    } else {
        flock(fd, LOCK_UN);
    }
    char text[512];
    ssize_t n = pread(fd, text, sizeof(text) - 1, 0);
    struct mf_lock_owner owner;
    bool parsed = false;
    if (n > 0) {
        text[n] = '\0';
        parsed = mf_lock_parse(text, &owner);
    }
    if (parsed && strcmp(owner.host, mf_hostname()) == 0) {
        if (mf_pid_is_dead(owner.pid))
            return true;
        uint64_t start = mf_process_start_ticks(owner.pid);
        if (start != 0 && owner.start_ticks != 0 && start != owner.start_ticks)
            return true; /* the pid was reused by a later process */
    }
    uint64_t now = memfit_wall_ns();
    uint64_t touched = mtime_ns(st);
    return now > touched && (now - touched) / 1000000u > stale_ms;
}

bool mf_lock_is_stale(const char *path, unsigned stale_ms)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    struct stat st;
    bool stale = fstat(fd, &st) == 0 && fd_is_stale(fd, &st, stale_ms);
    close(fd);
    return stale;
}

/* Breaks the lock whose file is (dev, ino); true when the path is free now. */
static bool break_lock(const char *path, dev_t dev, ino_t ino)
{
    char *dir = memfit_strdup(path);
    if (!dir)
        return false;
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    /* Same directory as the lock, so the rename is atomic. */
    char *dest = mf_temp_path(slash ? dir : ".", "stale");
    memfit_free(dir);
    if (!dest)
        return false;
    bool freed = false;
    if (rename(path, dest) == 0) {
        struct stat st;
        if (stat(dest, &st) == 0 && (st.st_dev != dev || st.st_ino != ino)) {
            /* A new holder's lock moved in meanwhile: put it back. */
            if (link(dest, path) != 0)
                memfit_log(MEMFIT_LOG_WARN, "%s: a fresh lock was broken by mistake", path);
        } else {
            memfit_log(MEMFIT_LOG_INFO, "%s: broke a stale lock", path);
            freed = true;
        }
        unlink(dest);
    }
    memfit_free(dest);
    return freed;
}

static enum memfit_status create_lock(const char *path, struct mf_lock *out)
{
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return errno == EEXIST
                   ? MEMFIT_E_EXISTS
                   : memfit_fail(MEMFIT_E_IO, "%s: cannot create lock: %s", path, strerror(errno));
    (void)flock(fd, LOCK_EX | LOCK_NB); /* a helper only; see the top of the file */
    char text[512];
    int n =
        snprintf(text, sizeof(text), "pid=%ld host=%s start=%" PRIu64 " created=%" PRIu64 "\n",
                 (long)getpid(), mf_hostname(), mf_process_start_ticks(getpid()), memfit_wall_ns());
    struct stat st;
    char *copy = memfit_strdup(path);
    if (!copy || write(fd, text, (size_t)n) != n || fstat(fd, &st) != 0) {
        enum memfit_status s =
            copy ? memfit_fail(MEMFIT_E_IO, "%s: cannot write lock: %s", path, strerror(errno))
                 : MEMFIT_E_NOMEM;
        unlink(path);
        close(fd);
        memfit_free(copy);
        return s;
    }
    out->path = copy;
    out->fd = fd;
    out->dev = st.st_dev;
    out->ino = st.st_ino;
    out->last_beat_ns = memfit_now_ns();
    return MEMFIT_OK;
}

/* Describes the holder for a timeout message. */
static void describe_holder(const char *path, char *buf, size_t size)
{
    char *text = NULL;
    struct mf_lock_owner owner;
    if (mf_read_small_file(path, 4096, &text, NULL) == MEMFIT_OK && mf_lock_parse(text, &owner))
        snprintf(buf, size, "pid %ld on %s", (long)owner.pid, owner.host);
    else
        snprintf(buf, size, "another process");
    memfit_free(text);
    memfit_clear_error();
}

enum memfit_status mf_lock_acquire(const char *path, const struct mf_lock_params *params,
                                   struct mf_lock *out, bool *waited)
{
    uint64_t start = memfit_now_ns();
    uint64_t limit_ns = (uint64_t)params->wait_timeout_ms * 1000000u;
    unsigned poll_ms = params->poll_ms ? params->poll_ms : 100;
    bool seen = false;
    for (;;) {
        struct mf_lock lock;
        enum memfit_status st = create_lock(path, &lock);
        if (st == MEMFIT_OK) {
            *out = lock;
            if (waited)
                *waited = seen;
            return MEMFIT_OK;
        }
        if (st != MEMFIT_E_EXISTS)
            return st;
        seen = true;
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue; /* released between our two looks: try again at once */
        struct stat sb;
        bool stale = fstat(fd, &sb) == 0 && fd_is_stale(fd, &sb, params->stale_ms);
        close(fd);
        if (stale && break_lock(path, sb.st_dev, sb.st_ino))
            continue;
        if (memfit_now_ns() - start >= limit_ns) {
            char holder[320];
            describe_holder(path, holder, sizeof(holder));
            return memfit_fail(MEMFIT_E_TIMEOUT,
                               "%s: still held by %s after waiting %u ms (lock_wait_timeout_ms)",
                               path, holder, params->wait_timeout_ms);
        }
        if (!mf_sleep_cancellable(poll_ms, params->cancel))
            return memfit_fail(MEMFIT_E_CANCELLED, "cancelled while waiting for %s", path);
    }
}

enum memfit_status mf_lock_heartbeat(struct mf_lock *lock)
{
    if (!lock->path)
        return MEMFIT_OK;
    uint64_t now = memfit_now_ns();
    if (now - lock->last_beat_ns < 1000000000u)
        return MEMFIT_OK;
    lock->last_beat_ns = now;
    struct stat st;
    if (stat(lock->path, &st) != 0 || st.st_dev != lock->dev || st.st_ino != lock->ino)
        return memfit_fail(MEMFIT_E_BUSY, "%s: lock taken over by another process", lock->path);
    futimens(lock->fd, NULL);
    return MEMFIT_OK;
}

void mf_lock_release(struct mf_lock *lock)
{
    if (!lock || !lock->path)
        return;
    struct stat st;
    if (stat(lock->path, &st) == 0 && st.st_dev == lock->dev && st.st_ino == lock->ino)
        unlink(lock->path);
    close(lock->fd);
    memfit_free(lock->path);
    memset(lock, 0, sizeof(*lock));
    lock->fd = -1;
}

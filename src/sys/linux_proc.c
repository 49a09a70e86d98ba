/*
 * Processes: memory of one process from /proc/PID/status (VmRSS and its
 * anon/file/shmem split, VmSwap, VmHWM) and smaps_rollup (PSS), the sum
 * over a process tree, and the largest processes by RSS
 * (Documentation/filesystems/proc.rst).
 *
 * Processes come and go while /proc is scanned: one that vanishes between
 * the directory listing and the read is skipped, never an error.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "sys/sys_file.h"

static void proc_init(struct memfit_proc_mem *p, pid_t pid)
{
    memset(p, 0, sizeof(*p));
    p->pid = pid;
    p->ppid = -1;
    p->rss_bytes = p->rss_anon_bytes = p->rss_file_bytes = p->rss_shmem_bytes = MEMFIT_SYS_UNKNOWN;
    p->swap_bytes = p->hwm_bytes = MEMFIT_SYS_UNKNOWN;
    p->pss_bytes = p->pss_anon_bytes = p->pss_file_bytes = MEMFIT_SYS_UNKNOWN;
}

static void pid_name(char *out, size_t size, pid_t pid)
{
    if (pid == 0)
        snprintf(out, size, "self");
    else
        snprintf(out, size, "%d", (int)pid);
}

/* Reads status (and smaps_rollup with MEMFIT_PROC_PSS). Returns 0, or the
 * errno of the status file (ENOENT/ESRCH: the process is gone). */
static int read_proc(const char *root, pid_t pid, unsigned flags, struct memfit_proc_mem *p)
{
    char who[24], path[MEMFIT_SYS_PATH_MAX];
    pid_name(who, sizeof(who), pid);
    proc_init(p, pid);
    if (!mf_sys_path(path, sizeof(path), root, "/proc/%s/status", who))
        return ENAMETOOLONG;
    char text[MF_SYS_SMALL_FILE * 2];
    int err = mf_sys_read_text(path, text, sizeof(text), NULL);
    if (err && err != E2BIG)
        return err;
    uint64_t own_pid = MEMFIT_SYS_UNKNOWN, ppid = MEMFIT_SYS_UNKNOWN;
    const struct mf_sys_kv fields[] = {
        {"Pid", &own_pid},
        {"PPid", &ppid},
        {"VmHWM", &p->hwm_bytes},
        {"VmRSS", &p->rss_bytes},
        {"RssAnon", &p->rss_anon_bytes},
        {"RssFile", &p->rss_file_bytes},
        {"RssShmem", &p->rss_shmem_bytes},
        {"VmSwap", &p->swap_bytes},
    };
    const char *bad = NULL;
    if (mf_sys_kv_parse(text, fields, sizeof(fields) / sizeof(fields[0]), &bad) > 0)
        mf_sys_reason_add(p->reason, "status: %s malformed", bad);
    if (own_pid != MEMFIT_SYS_UNKNOWN && own_pid <= (uint64_t)INT32_MAX)
        p->pid = (pid_t)own_pid;
    if (ppid != MEMFIT_SYS_UNKNOWN && ppid <= (uint64_t)INT32_MAX)
        p->ppid = (pid_t)ppid;
    /* status escapes control characters and backslashes of the command name,
     * which is what a table wants to print. */
    if (!mf_sys_find_string(text, "Name", p->name, sizeof(p->name)))
        p->name[0] = '\0';
    char state[8];
    p->state = mf_sys_find_string(text, "State", state, sizeof(state)) ? state[0] : '?';
    if (p->rss_bytes == MEMFIT_SYS_UNKNOWN) {
        /* Kernel threads and zombies have no memory of their own. */
        p->rss_bytes = p->rss_anon_bytes = p->rss_file_bytes = p->rss_shmem_bytes = 0;
        p->swap_bytes = p->hwm_bytes = 0;
        mf_sys_reason_add(p->reason, "no VmRSS (kernel thread or zombie)");
    }
    if (flags & MEMFIT_PROC_PSS) {
        if (!mf_sys_path(path, sizeof(path), root, "/proc/%s/smaps_rollup", who))
            return ENAMETOOLONG;
        err = mf_sys_read_text(path, text, sizeof(text), NULL);
        if (err && err != E2BIG) {
            mf_sys_reason_errno(p->reason, "smaps_rollup", err);
        } else {
            const struct mf_sys_kv pss[] = {
                {"Pss", &p->pss_bytes},
                {"Pss_Anon", &p->pss_anon_bytes},
                {"Pss_File", &p->pss_file_bytes},
            };
            if (mf_sys_kv_parse(text, pss, 3, &bad) > 0)
                mf_sys_reason_add(p->reason, "smaps_rollup: %s malformed", bad);
        }
    }
    return 0;
}

static enum memfit_status proc_error(const char *root, pid_t pid, int err)
{
    if (err == ENOENT || err == ESRCH || err == ENOTDIR)
        return memfit_fail(MEMFIT_E_NOT_FOUND, "no process with pid %d", (int)pid);
    if (err == ENAMETOOLONG)
        return memfit_fail(MEMFIT_E_RANGE, "%s: root path too long", root ? root : "/");
    if (err == EACCES || err == EPERM)
        return memfit_fail(MEMFIT_E_PERMISSION, "/proc/%d/status: %s", (int)pid, strerror(err));
    return memfit_fail(MEMFIT_E_IO, "/proc/%d/status: %s", (int)pid, strerror(err));
}

enum memfit_status memfit_proc_read_ex(const char *root, pid_t pid, unsigned flags,
                                       struct memfit_proc_mem *out)
{
    if (!out || pid < 0)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_proc_read: bad arguments");
    struct memfit_proc_mem p;
    int err = read_proc(root, pid, flags, &p);
    if (err)
        return proc_error(root, pid, err);
    *out = p;
    return MEMFIT_OK;
}

enum memfit_status memfit_proc_read(const char *root, pid_t pid, struct memfit_proc_mem *out)
{
    return memfit_proc_read_ex(root, pid, MEMFIT_PROC_PSS, out);
}

/* ---- scanning /proc ----------------------------------------------------- */

/* A /proc entry's name as a pid; false for "self", "meminfo", ... */
static bool entry_pid(const char *name, pid_t *out)
{
    if (!isdigit((unsigned char)name[0]))
        return false;
    const char *p = name;
    uint64_t v;
    if (!mf_sys_parse_u64(&p, &v) || *p != '\0' || v == 0 || v > (uint64_t)INT32_MAX)
        return false;
    *out = (pid_t)v;
    return true;
}

/* The parent pid from /proc/PID/stat: "pid (comm) state ppid ...". The
 * command may hold spaces and parentheses, so parse after the last ')'. */
static bool read_ppid(const char *root, pid_t pid, pid_t *ppid)
{
    char path[MEMFIT_SYS_PATH_MAX], text[1024];
    if (!mf_sys_path(path, sizeof(path), root, "/proc/%d/stat", (int)pid))
        return false;
    int err = mf_sys_read_text(path, text, sizeof(text), NULL);
    if (err && err != E2BIG)
        return false;
    const char *p = strrchr(text, ')');
    if (!p || p[1] != ' ' || !p[2] || p[3] != ' ')
        return false;
    p += 4;
    uint64_t v;
    if (!mf_sys_parse_u64(&p, &v) || v > (uint64_t)INT32_MAX)
        return false;
    *ppid = (pid_t)v;
    return true;
}

/* Opens ROOT/proc for listing the processes. */
static enum memfit_status open_proc(const char *root, DIR **out)
{
    char path[MEMFIT_SYS_PATH_MAX];
    if (!mf_sys_path(path, sizeof(path), root, "/proc"))
        return memfit_fail(MEMFIT_E_RANGE, "%s: root path too long", root);
    *out = opendir(path);
    if (!*out)
        return memfit_fail(MEMFIT_E_IO, "%s: %s", path, strerror(errno));
    return MEMFIT_OK;
}

struct pid_pair {
    pid_t pid, ppid;
};

static int by_ppid(const void *a, const void *b)
{
    const struct pid_pair *x = a, *y = b;
    return (x->ppid > y->ppid) - (x->ppid < y->ppid);
}

/* Every process's (pid, ppid), sorted by ppid, in a new array. */
static enum memfit_status list_pairs(const char *root, struct pid_pair **out, size_t *n_out)
{
    DIR *d;
    enum memfit_status st = open_proc(root, &d);
    if (st != MEMFIT_OK)
        return st;
    struct pid_pair *pairs = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        pid_t pid, ppid;
        if (!entry_pid(e->d_name, &pid) || !read_ppid(root, pid, &ppid))
            continue;
        if (n == cap) {
            size_t new_cap = cap ? cap * 2 : 256;
            struct pid_pair *grown = memfit_realloc(pairs, new_cap * sizeof(*pairs));
            if (!grown) {
                memfit_free(pairs);
                closedir(d);
                return MEMFIT_E_NOMEM;
            }
            pairs = grown;
            cap = new_cap;
        }
        pairs[n].pid = pid;
        pairs[n].ppid = ppid;
        n++;
    }
    closedir(d);
    if (n > 1)
        qsort(pairs, n, sizeof(*pairs), by_ppid);
    *out = pairs;
    *n_out = n;
    return MEMFIT_OK;
}

static void add_size(uint64_t *sum, uint64_t v)
{
    if (*sum == MEMFIT_SYS_UNKNOWN || v == MEMFIT_SYS_UNKNOWN)
        *sum = MEMFIT_SYS_UNKNOWN;
    else
        *sum += v;
}

enum memfit_status memfit_proc_tree_list(const char *root, pid_t pid, pid_t **out_pids,
                                         size_t *n_pids)
{
    struct memfit_proc_mem self;
    enum memfit_status st = memfit_proc_read_ex(root, pid, MEMFIT_PROC_STATUS_ONLY, &self);
    if (st != MEMFIT_OK)
        return st;
    pid = self.pid; /* "self" resolved through the Pid: line */

    struct pid_pair *pairs = NULL;
    size_t n_pairs = 0;
    st = list_pairs(root, &pairs, &n_pairs);
    if (st != MEMFIT_OK)
        return st;
    /* Breadth-first from the root over the pairs sorted by parent. */
    pid_t *queue = memfit_malloc((n_pairs + 1) * sizeof(*queue));
    if (!queue) {
        memfit_free(pairs);
        return MEMFIT_E_NOMEM;
    }
    size_t head = 0, tail = 0;
    queue[tail++] = pid;
    while (head < tail) {
        pid_t parent = queue[head++];
        size_t lo = 0, hi = n_pairs;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (pairs[mid].ppid < parent)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (size_t i = lo; i < n_pairs && pairs[i].ppid == parent; i++) {
            if (tail > n_pairs || pairs[i].pid == pid)
                continue; /* a cycle can only come from a corrupt tree: stop growing */
            queue[tail++] = pairs[i].pid;
        }
    }
    memfit_free(pairs);
    *out_pids = queue;
    *n_pids = tail;
    return MEMFIT_OK;
}

enum memfit_status memfit_proc_sum(const char *root, const pid_t *pids, size_t n_pids,
                                   unsigned flags, struct memfit_proc_mem *out, unsigned *n_alive)
{
    if (n_pids == 0)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_proc_sum: no pids");
    struct memfit_proc_mem sum;
    enum memfit_status st = memfit_proc_read_ex(root, pids[0], flags, &sum);
    if (st != MEMFIT_OK)
        return st;
    unsigned count = 1;
    for (size_t i = 1; i < n_pids; i++) {
        struct memfit_proc_mem child;
        if (read_proc(root, pids[i], flags, &child) != 0)
            continue; /* exited since it was listed */
        add_size(&sum.rss_bytes, child.rss_bytes);
        add_size(&sum.rss_anon_bytes, child.rss_anon_bytes);
        add_size(&sum.rss_file_bytes, child.rss_file_bytes);
        add_size(&sum.rss_shmem_bytes, child.rss_shmem_bytes);
        add_size(&sum.swap_bytes, child.swap_bytes);
        if (flags & MEMFIT_PROC_PSS) {
            if (child.pss_bytes == MEMFIT_SYS_UNKNOWN && sum.pss_bytes != MEMFIT_SYS_UNKNOWN)
                mf_sys_reason_add(sum.reason, "pid %d: no PSS", (int)child.pid);
            add_size(&sum.pss_bytes, child.pss_bytes);
            add_size(&sum.pss_anon_bytes, child.pss_anon_bytes);
            add_size(&sum.pss_file_bytes, child.pss_file_bytes);
        }
        count++;
    }
    *out = sum;
    if (n_alive)
        *n_alive = count;
    return MEMFIT_OK;
}

uint64_t memfit_proc_count_hint(const char *root)
{
    char path[MEMFIT_SYS_PATH_MAX];
    struct stat st;
    if (!mf_sys_path(path, sizeof(path), root, "/proc") || stat(path, &st) != 0)
        return 0;
    return (uint64_t)st.st_nlink;
}

enum memfit_status memfit_proc_tree_read_ex(const char *root, pid_t pid, unsigned flags,
                                            struct memfit_proc_mem *out, unsigned *n_procs)
{
    pid_t *pids;
    size_t n;
    enum memfit_status st = memfit_proc_tree_list(root, pid, &pids, &n);
    if (st != MEMFIT_OK)
        return st;
    st = memfit_proc_sum(root, pids, n, flags, out, n_procs);
    memfit_free(pids);
    return st;
}

enum memfit_status memfit_proc_tree_read(const char *root, pid_t pid, struct memfit_proc_mem *out,
                                         unsigned *n_procs)
{
    return memfit_proc_tree_read_ex(root, pid, MEMFIT_PROC_PSS, out, n_procs);
}

enum memfit_status memfit_proc_top(const char *root, struct memfit_proc_mem *out, unsigned max,
                                   unsigned *n)
{
    if ((!out && max > 0) || !n)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_proc_top: bad arguments");
    DIR *d;
    enum memfit_status st = open_proc(root, &d);
    if (st != MEMFIT_OK)
        return st;
    unsigned count = 0;
    struct dirent *e;
    struct memfit_proc_mem p;
    while (max > 0 && (e = readdir(d)) != NULL) {
        pid_t pid;
        if (!entry_pid(e->d_name, &pid) || read_proc(root, pid, MEMFIT_PROC_STATUS_ONLY, &p) != 0)
            continue;
        if (count == max && p.rss_bytes <= out[max - 1].rss_bytes)
            continue;
        /* Insertion into the sorted top list; max is small. */
        unsigned i = count < max ? count++ : max - 1;
        while (i > 0 && out[i - 1].rss_bytes < p.rss_bytes) {
            out[i] = out[i - 1];
            i--;
        }
        out[i] = p;
    }
    closedir(d);
    *n = count;
    return MEMFIT_OK;
}

/*
 * The container's memory: the process's memory cgroup, v1 or v2, and the
 * files in its directory (Documentation/admin-guide/cgroup-v2.rst and
 * cgroup-v1/memory.rst).
 *
 * Finding the directory: /proc/PID/cgroup names the cgroup ("4:memory:/x"
 * on v1, "0::/x" on v2); /proc/PID/mountinfo says where each hierarchy is
 * mounted and which cgroup is the mount's root. Inside a container without a
 * cgroup namespace the mount root *is* the container's cgroup
 * (moby/moby#34584), so the directory is mount point + (path - mount root).
 *
 * The effective limit is the tightest over the cgroup and its ancestors:
 * limits are often set on a pod or slice above the container's own cgroup.
 * The working set is usage - inactive_file (what cAdvisor, kubelet and
 * docker stats call working set).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "sys/sys_file.h"

/* v1 writes "no limit" as LONG_MAX rounded down to a page (9223372036854771712
 * with 4 KiB pages); anything this large is no limit whatever the page size. */
#define V1_NO_LIMIT_MIN (1ull << 62)

const char *memfit_cgroup_mode_name(enum memfit_cgroup_mode mode)
{
    switch (mode) {
    case MEMFIT_CGROUP_NONE:
        return "none";
    case MEMFIT_CGROUP_V1:
        return "v1";
    case MEMFIT_CGROUP_V2:
        return "v2";
    case MEMFIT_CGROUP_HYBRID:
        return "hybrid";
    }
    return "unknown";
}

static void cgroup_init(struct memfit_cgroup *c)
{
    memset(c, 0, sizeof(*c));
    uint64_t *sizes[] = {
        &c->limit_bytes,
        &c->own_limit_bytes,
        &c->high_bytes,
        &c->usage_bytes,
        &c->working_set_bytes,
        &c->peak_bytes,
        &c->in_use_bytes,
        &c->anon_bytes,
        &c->file_bytes,
        &c->active_file_bytes,
        &c->inactive_file_bytes,
        &c->shmem_bytes,
        &c->kernel_bytes,
        &c->file_mapped_bytes,
        &c->unevictable_bytes,
        &c->swap_bytes,
        &c->swap_limit_bytes,
        &c->events_low,
        &c->events_high,
        &c->events_max,
        &c->events_oom,
        &c->events_oom_kill,
        &c->failcnt,
    };
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        *sizes[i] = MEMFIT_SYS_UNKNOWN;
    c->pressure.some_avg10 = c->pressure.some_avg60 = c->pressure.some_avg300 = NAN;
    c->pressure.full_avg10 = c->pressure.full_avg60 = c->pressure.full_avg300 = NAN;
    c->pressure.some_total_us = c->pressure.full_total_us = MEMFIT_SYS_UNKNOWN;
}

/* A v1 limit that means "none": the sentinel, or more than the machine has. */
static uint64_t v1_limit(uint64_t v, uint64_t mem_total)
{
    if (v == MEMFIT_SYS_UNKNOWN || v >= V1_NO_LIMIT_MIN ||
        (mem_total != MEMFIT_SYS_UNKNOWN && v >= mem_total))
        return MEMFIT_SYS_UNKNOWN;
    return v;
}

/* Reads DIR/NAME holding one number or "max"; unreadable adds a reason
 * (when `c` is given) and gives UNKNOWN, like "max". */
static uint64_t read_num(const char *dir, const char *name, struct memfit_cgroup *c)
{
    char path[MEMFIT_SYS_PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    uint64_t v;
    int err = mf_sys_read_u64(path, &v, NULL);
    if (err) {
        if (c)
            mf_sys_reason_errno(c->reason, name, err);
        return MEMFIT_SYS_UNKNOWN;
    }
    return v;
}

/* Parses DIR/NAME as "key value" lines into the listed fields. Returns
 * false (with a reason) when the file could not be read. */
static bool read_kv(const char *dir, const char *name, const struct mf_sys_kv *fields, size_t n,
                    struct memfit_cgroup *c)
{
    char path[MEMFIT_SYS_PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    char text[MF_SYS_STAT_FILE];
    int err = mf_sys_read_text(path, text, sizeof(text), NULL);
    if (err && err != E2BIG) {
        mf_sys_reason_errno(c->reason, name, err);
        return false;
    }
    if (err == E2BIG)
        mf_sys_reason_add(c->reason, "%s: longer than %zu bytes, tail ignored", name, sizeof(text));
    const char *bad = NULL;
    unsigned n_bad = mf_sys_kv_parse(text, fields, n, &bad);
    if (n_bad > 0)
        mf_sys_reason_add(c->reason, "%s: %u malformed values (first: %s)", name, n_bad, bad);
    return true;
}

/* Sets the effective limit to `v` found in `dir` when it is tighter. */
static void tighten(struct memfit_cgroup *c, uint64_t v, const char *dir, const char *source)
{
    if (v == MEMFIT_SYS_UNKNOWN || (c->limit_bytes != MEMFIT_SYS_UNKNOWN && v >= c->limit_bytes))
        return;
    c->limit_bytes = v;
    mf_sys_copy(c->limit_dir, sizeof(c->limit_dir), dir);
    mf_sys_copy(c->limit_source, sizeof(c->limit_source), source);
}

/* Walks from dir's parent up to mount_dir (inclusive), tightening the limit
 * with each ancestor's limit file. */
static void walk_ancestors(struct memfit_cgroup *c, const char *dir, const char *mount_dir,
                           const char *file, int version, uint64_t mem_total)
{
    if (!mount_dir)
        return;
    size_t mlen = strlen(mount_dir);
    while (mlen > 1 && mount_dir[mlen - 1] == '/')
        mlen--;
    size_t dlen = strlen(dir);
    if (dlen <= mlen || strncmp(dir, mount_dir, mlen) != 0 || dir[mlen] != '/')
        return; /* not below the mount: nothing to walk */
    char cur[MEMFIT_SYS_PATH_MAX];
    mf_sys_copy(cur, sizeof(cur), dir);
    for (;;) {
        char *slash = strrchr(cur, '/');
        if (!slash || (size_t)(slash - cur) < mlen)
            break;
        *slash = '\0';
        uint64_t v = read_num(cur, file, NULL); /* the mount root may have none: fine */
        if (version == 1)
            v = v1_limit(v, mem_total);
        tighten(c, v, cur, file);
    }
}

static void read_v2(struct memfit_cgroup *c, const char *dir, const char *mount_dir)
{
    c->own_limit_bytes = read_num(dir, "memory.max", c);
    c->high_bytes = read_num(dir, "memory.high", c);
    c->usage_bytes = read_num(dir, "memory.current", c);
    c->peak_bytes = read_num(dir, "memory.peak", c); /* 5.19+ */

    uint64_t kernel_stack = MEMFIT_SYS_UNKNOWN, slab = MEMFIT_SYS_UNKNOWN;
    const struct mf_sys_kv stat[] = {
        {"anon", &c->anon_bytes},
        {"file", &c->file_bytes},
        {"active_file", &c->active_file_bytes},
        {"inactive_file", &c->inactive_file_bytes},
        {"shmem", &c->shmem_bytes},
        {"kernel", &c->kernel_bytes}, /* 5.18+ */
        {"kernel_stack", &kernel_stack},
        {"slab", &slab},
        {"file_mapped", &c->file_mapped_bytes},
        {"unevictable", &c->unevictable_bytes},
    };
    read_kv(dir, "memory.stat", stat, sizeof(stat) / sizeof(stat[0]), c);
    if (c->kernel_bytes == MEMFIT_SYS_UNKNOWN && kernel_stack != MEMFIT_SYS_UNKNOWN &&
        slab != MEMFIT_SYS_UNKNOWN)
        c->kernel_bytes = kernel_stack + slab;

    c->swap_bytes = read_num(dir, "memory.swap.current", c);
    c->swap_limit_bytes = read_num(dir, "memory.swap.max", c);
    const struct mf_sys_kv events[] = {
        {"low", &c->events_low}, {"high", &c->events_high},         {"max", &c->events_max},
        {"oom", &c->events_oom}, {"oom_kill", &c->events_oom_kill},
    };
    read_kv(dir, "memory.events", events, sizeof(events) / sizeof(events[0]), c);

    char path[MEMFIT_SYS_PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/memory.pressure", dir);
    if (memfit_psi_read(path, &c->pressure) != MEMFIT_OK)
        mf_sys_reason_add(c->reason, "%s", memfit_last_error());

    tighten(c, c->own_limit_bytes, dir, "memory.max");
    walk_ancestors(c, dir, mount_dir, "memory.max", 2, MEMFIT_SYS_UNKNOWN);
}

static void read_v1(struct memfit_cgroup *c, const char *dir, const char *mount_dir,
                    uint64_t mem_total)
{
    c->own_limit_bytes = v1_limit(read_num(dir, "memory.limit_in_bytes", c), mem_total);
    c->usage_bytes = read_num(dir, "memory.usage_in_bytes", c);
    c->peak_bytes = read_num(dir, "memory.max_usage_in_bytes", c);

    /* The total_* fields include the descendants, as usage_in_bytes does;
     * the plain ones are the fallback for trees without them. */
    uint64_t plain[7], hier_limit = MEMFIT_SYS_UNKNOWN;
    for (size_t i = 0; i < 7; i++)
        plain[i] = MEMFIT_SYS_UNKNOWN;
    const struct mf_sys_kv stat[] = {
        {"total_rss", &c->anon_bytes},
        {"total_cache", &c->file_bytes},
        {"total_shmem", &c->shmem_bytes},
        {"total_mapped_file", &c->file_mapped_bytes},
        {"total_inactive_file", &c->inactive_file_bytes},
        {"total_active_file", &c->active_file_bytes},
        {"total_unevictable", &c->unevictable_bytes},
        {"rss", &plain[0]},
        {"cache", &plain[1]},
        {"shmem", &plain[2]},
        {"mapped_file", &plain[3]},
        {"inactive_file", &plain[4]},
        {"active_file", &plain[5]},
        {"unevictable", &plain[6]},
        {"hierarchical_memory_limit", &hier_limit},
    };
    read_kv(dir, "memory.stat", stat, sizeof(stat) / sizeof(stat[0]), c);
    for (size_t i = 0; i < 7; i++)
        if (*stat[i].dst == MEMFIT_SYS_UNKNOWN)
            *stat[i].dst = plain[i];

    /* kmem accounting may be off (or the file gone, 6.x): absent is normal. */
    c->kernel_bytes = read_num(dir, "memory.kmem.usage_in_bytes", NULL);

    uint64_t memsw = read_num(dir, "memory.memsw.usage_in_bytes", NULL);
    c->swap_bytes = mf_sys_sub_floor(memsw, c->usage_bytes);
    uint64_t memsw_limit = v1_limit(read_num(dir, "memory.memsw.limit_in_bytes", NULL), mem_total);
    if (memsw == MEMFIT_SYS_UNKNOWN)
        mf_sys_reason_add(c->reason, "no swap accounting (memory.memsw.*)");
    if (c->own_limit_bytes != MEMFIT_SYS_UNKNOWN)
        c->swap_limit_bytes = mf_sys_sub_floor(memsw_limit, c->own_limit_bytes);

    c->failcnt = read_num(dir, "memory.failcnt", c);
    uint64_t kill_disable = MEMFIT_SYS_UNKNOWN, under_oom = MEMFIT_SYS_UNKNOWN;
    const struct mf_sys_kv oom[] = {
        {"oom_kill_disable", &kill_disable},
        {"under_oom", &under_oom},
        {"oom_kill", &c->events_oom_kill}, /* 4.13+ */
    };
    read_kv(dir, "memory.oom_control", oom, sizeof(oom) / sizeof(oom[0]), c);
    c->oom_kill_disable = kill_disable != MEMFIT_SYS_UNKNOWN && kill_disable != 0;
    c->under_oom = under_oom != MEMFIT_SYS_UNKNOWN && under_oom != 0;

    tighten(c, c->own_limit_bytes, dir, "memory.limit_in_bytes");
    walk_ancestors(c, dir, mount_dir, "memory.limit_in_bytes", 1, mem_total);
    /* Covers ancestors above the mount, which a container cannot see. */
    tighten(c, v1_limit(hier_limit, mem_total), dir, "hierarchical_memory_limit");
}

uint64_t memfit_cgroup_in_use_bytes(const struct memfit_cgroup *c)
{
    uint64_t bytes = c->working_set_bytes;
    if (c->usage_bytes == MEMFIT_SYS_UNKNOWN)
        return bytes;
    /* Inactive file pages nobody maps: the ones reclaim takes cheaply. */
    uint64_t cheap = 0;
    if (c->inactive_file_bytes != MEMFIT_SYS_UNKNOWN) {
        uint64_t mapped = c->file_mapped_bytes != MEMFIT_SYS_UNKNOWN ? c->file_mapped_bytes : 0;
        cheap = c->inactive_file_bytes > mapped ? c->inactive_file_bytes - mapped : 0;
    }
    uint64_t judged = mf_sys_sub_floor(c->usage_bytes, cheap);
    if (bytes == MEMFIT_SYS_UNKNOWN || judged > bytes)
        bytes = judged;
    return bytes > c->usage_bytes ? c->usage_bytes : bytes;
}

/* Reads dir into c (already initialised). E_NOT_FOUND when dir is absent. */
static enum memfit_status read_dir_into(struct memfit_cgroup *c, const char *dir,
                                        const char *mount_dir, int version, uint64_t mem_total)
{
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return memfit_fail(MEMFIT_E_NOT_FOUND, "%s: no such cgroup directory", dir);
    mf_sys_copy(c->dir, sizeof(c->dir), dir);
    if (mount_dir)
        mf_sys_copy(c->mount_dir, sizeof(c->mount_dir), mount_dir);
    c->memory_version = version;
    if (version == 2)
        read_v2(c, dir, mount_dir);
    else
        read_v1(c, dir, mount_dir, mem_total);
    c->working_set_bytes = mf_sys_sub_floor(c->usage_bytes, c->inactive_file_bytes);
    if (c->usage_bytes != MEMFIT_SYS_UNKNOWN && c->inactive_file_bytes == MEMFIT_SYS_UNKNOWN)
        c->working_set_bytes = c->usage_bytes; /* no memory.stat: the best bound there is */
    c->in_use_bytes = memfit_cgroup_in_use_bytes(c);
    return MEMFIT_OK;
}

enum memfit_status memfit_cgroup_read_dir(const char *dir, const char *mount_dir, int version,
                                          struct memfit_cgroup *out)
{
    if (!dir || !out || (version != 1 && version != 2))
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_cgroup_read_dir: bad arguments");
    if (strlen(dir) >= MEMFIT_SYS_PATH_MAX)
        return memfit_fail(MEMFIT_E_RANGE, "%s: cgroup path too long", dir);
    struct memfit_cgroup c;
    cgroup_init(&c);
    uint64_t mem_total = MEMFIT_SYS_UNKNOWN;
    if (version == 1) {
        struct memfit_meminfo m;
        if (memfit_meminfo_read(NULL, &m) == MEMFIT_OK)
            mem_total = m.total_bytes;
    }
    enum memfit_status st = read_dir_into(&c, dir, mount_dir, version, mem_total);
    if (st != MEMFIT_OK)
        return st;
    c.mode = version == 2 ? MEMFIT_CGROUP_V2 : MEMFIT_CGROUP_V1;
    *out = c;
    return MEMFIT_OK;
}

/* ---- finding the cgroup of a process ------------------------------------ */

struct mount_choice {
    bool found;
    bool matches; /* the mount root is a prefix of the cgroup path */
    size_t root_len;
    char root[MEMFIT_SYS_PATH_MAX];
    char point[MEMFIT_SYS_PATH_MAX];
};

struct mount_scan {
    const char *mem_path; /* v1 memory cgroup path, or NULL */
    const char *v2_path;  /* the "0::" path, or NULL */
    bool v1_any, v1_mem, v2_any;
    struct mount_choice mem, v2;
};

/* Undoes mountinfo's octal escapes (\040 for a space) in place. */
static void unescape(char *s)
{
    char *w = s;
    for (char *r = s; *r; r++) {
        if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
            r[3] >= '0' && r[3] <= '7') {
            *w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
            r += 3;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
}

/* True when `root` is `path` or one of its ancestors ("/a" for "/a/b"). */
static bool path_under(const char *path, const char *root)
{
    size_t n = strlen(root);
    if (n == 1 && root[0] == '/')
        return path[0] == '/';
    return strncmp(path, root, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

static void consider(struct mount_choice *m, const char *path, const char *root, const char *point)
{
    bool matches = path && path_under(path, root);
    size_t root_len = strlen(root);
    if (m->found && !(matches && (!m->matches || root_len > m->root_len)))
        return;
    if (root_len >= sizeof(m->root) || strlen(point) >= sizeof(m->point))
        return;
    m->found = true;
    m->matches = matches;
    m->root_len = root_len;
    mf_sys_copy(m->root, sizeof(m->root), root);
    mf_sys_copy(m->point, sizeof(m->point), point);
}

/* True when the comma-separated list `opts` holds `word`. */
static bool has_option(const char *opts, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = opts; p && *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == n && strncmp(p, word, n) == 0)
            return true;
        p = comma ? comma + 1 : NULL;
    }
    return false;
}

/* One mountinfo line: "ID PARENT MAJ:MIN ROOT POINT OPTS [OPTIONAL...] - TYPE SOURCE SUPER". */
static bool scan_mount(char *line, size_t len, void *ctx)
{
    struct mount_scan *s = ctx;
    char *tok[64];
    size_t n = 0;
    for (char *save = NULL, *t = strtok_r(line, " ", &save); t && n < 64;
         t = strtok_r(NULL, " ", &save))
        tok[n++] = t;
    size_t dash = 6;
    while (dash < n && strcmp(tok[dash], "-") != 0)
        dash++;
    if (n < 7 || dash + 1 >= n)
        return true; /* not a mount line we understand: skip it */
    const char *type = tok[dash + 1];
    const char *super = dash + 3 < n ? tok[dash + 3] : "";
    char *root = tok[3], *point = tok[4];
    unescape(root);
    unescape(point);
    if (strcmp(type, "cgroup2") == 0) {
        s->v2_any = true;
        consider(&s->v2, s->v2_path, root, point);
    } else if (strcmp(type, "cgroup") == 0) {
        s->v1_any = true;
        if (has_option(super, "memory")) {
            s->v1_mem = true;
            consider(&s->mem, s->mem_path, root, point);
        }
    }
    return true;
}

/* Finds the memory line ("N:a,memory,b:/path") and the v2 line ("0::/path"). */
static void parse_cgroup_file(char *text, char *mem_path, char *v2_path, size_t size)
{
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c2 = '\0';
        const char *controllers = c1 + 1;
        const char *path = c2 + 1;
        if (strncmp(line, "0:", 2) == 0 && controllers[0] == '\0')
            mf_sys_copy(v2_path, size, path);
        else if (has_option(controllers, "memory"))
            mf_sys_copy(mem_path, size, path);
    }
}

/* ROOT + mount point + (path - mount root): the cgroup's directory. When the
 * path is not below the mount root the mount point itself is used. */
static bool cgroup_dir(char *out, size_t size, const char *root, const struct mount_choice *m,
                       const char *path)
{
    const char *suffix = "";
    if (m->matches)
        suffix = m->root_len == 1 ? path : path + m->root_len; /* root "/" keeps the path */
    if (strcmp(suffix, "/") == 0)
        suffix = "";
    size_t plen = strlen(m->point);
    while (plen > 0 && m->point[plen - 1] == '/')
        plen--;
    if (plen == 0 && suffix[0] == '\0')
        return mf_sys_path(out, size, root, "/");
    return mf_sys_path(out, size, root, "%.*s%s", (int)plen, m->point, suffix);
}

enum memfit_status memfit_cgroup_read(const char *root, pid_t pid, struct memfit_cgroup *out)
{
    if (!out || pid < 0)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_cgroup_read: bad arguments");
    struct memfit_cgroup c;
    cgroup_init(&c);
    char who[24];
    if (pid == 0)
        mf_sys_copy(who, sizeof(who), "self");
    else
        snprintf(who, sizeof(who), "%d", (int)pid);

    char path[MEMFIT_SYS_PATH_MAX];
    if (!mf_sys_path(path, sizeof(path), root, "/proc/%s/cgroup", who))
        return memfit_fail(MEMFIT_E_RANGE, "%s: root path too long", root);
    char text[MF_SYS_SMALL_FILE];
    int err = mf_sys_read_text(path, text, sizeof(text), NULL);
    if (err == ENOENT && pid != 0)
        return memfit_fail(MEMFIT_E_NOT_FOUND, "no process with pid %d", (int)pid);
    if (err && err != E2BIG) {
        mf_sys_reason_errno(c.reason, path, err);
        *out = c;
        return MEMFIT_OK;
    }
    char mem_path[MEMFIT_SYS_PATH_MAX] = "", v2_path[MEMFIT_SYS_PATH_MAX] = "";
    parse_cgroup_file(text, mem_path, v2_path, sizeof(mem_path));

    struct mount_scan scan;
    memset(&scan, 0, sizeof(scan));
    struct mount_scan *s = &scan;
    s->mem_path = mem_path[0] ? mem_path : NULL;
    s->v2_path = v2_path[0] ? v2_path : NULL;
    if (!mf_sys_path(path, sizeof(path), root, "/proc/%s/mountinfo", who))
        return memfit_fail(MEMFIT_E_RANGE, "%s: root path too long", root);
    err = mf_sys_read_lines(path, scan_mount, s);
    if (err == ENOENT && pid != 0)
        return memfit_fail(MEMFIT_E_NOT_FOUND, "no process with pid %d", (int)pid);
    if (err) {
        mf_sys_reason_errno(c.reason, path, err);
        *out = c;
        return MEMFIT_OK;
    }
    if (s->v1_any && s->v2_any)
        c.mode = MEMFIT_CGROUP_HYBRID;
    else if (s->v1_any)
        c.mode = MEMFIT_CGROUP_V1;
    else if (s->v2_any)
        c.mode = MEMFIT_CGROUP_V2;

    const struct mount_choice *m = NULL;
    int version = 0;
    if (s->v1_mem && s->mem.found) {
        m = &s->mem, version = 1;
        mf_sys_copy(c.path, sizeof(c.path), mem_path[0] ? mem_path : "/");
    } else if (s->v2.found && s->v2_path) {
        m = &s->v2, version = 2;
        mf_sys_copy(c.path, sizeof(c.path), v2_path);
    }
    if (!m) {
        mf_sys_reason_add(c.reason, c.mode == MEMFIT_CGROUP_NONE ? "no cgroup filesystem mounted"
                                                                 : "no memory cgroup");
        *out = c;
        return MEMFIT_OK;
    }
    if (!m->matches)
        mf_sys_reason_add(c.reason, "cgroup %s is outside the mount root %s: read the mount point",
                          c.path, m->root);

    char dir[MEMFIT_SYS_PATH_MAX], mount_dir[MEMFIT_SYS_PATH_MAX];
    if (!cgroup_dir(dir, sizeof(dir), root, m, c.path) ||
        !mf_sys_path(mount_dir, sizeof(mount_dir), root, "%s", m->point))
        return memfit_fail(MEMFIT_E_RANGE, "%s: cgroup directory path too long", c.path);

    uint64_t mem_total = MEMFIT_SYS_UNKNOWN;
    struct memfit_meminfo mi;
    if (version == 1 && memfit_meminfo_read(root, &mi) == MEMFIT_OK)
        mem_total = mi.total_bytes;
    enum memfit_status st = read_dir_into(&c, dir, mount_dir, version, mem_total);
    if (st == MEMFIT_E_NOT_FOUND) {
        mf_sys_reason_add(c.reason, "%s missing", dir);
        c.memory_version = version;
    } else if (st != MEMFIT_OK) {
        return st;
    }

    /* Hybrid: PSI lives on the unified side, in the process's v2 cgroup. */
    if (version == 1 && s->v2.found && s->v2_path) {
        char v2dir[MEMFIT_SYS_PATH_MAX], ppath[MEMFIT_SYS_PATH_MAX + 32];
        if (cgroup_dir(v2dir, sizeof(v2dir), root, &s->v2, v2_path)) {
            snprintf(ppath, sizeof(ppath), "%s/memory.pressure", v2dir);
            if (memfit_psi_read(ppath, &c.pressure) != MEMFIT_OK)
                mf_sys_reason_add(c.reason, "%s", memfit_last_error());
        }
    }
    *out = c;
    return MEMFIT_OK;
}

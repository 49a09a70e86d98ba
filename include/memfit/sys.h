/*
 * memfit sys: reading the machine's memory as the kernel sees it — the
 * system (/proc/meminfo), the container (cgroup v1, v2 or hybrid), pressure
 * (PSI), processes (/proc/PID) and GPUs (NVML, loaded at run time).
 *
 * Every reader takes a `root` directory ("/" or NULL for the live machine)
 * under which it finds proc/ and sys/fs/cgroup/, so tests run the same code
 * on fixture trees copied from real systems.
 *
 * The result structs are plain values. A field that could not be read is
 * MEMFIT_SYS_UNKNOWN (for counters and sizes) or NaN (for ratios), and the
 * struct's `reason` says why ("memory.stat: Permission denied"). A missing
 * file is not an error: the reader returns MEMFIT_OK with fields absent.
 * Errors are for what makes the whole answer meaningless (no such pid: E_NOT_FOUND).
 */
#ifndef MEMFIT_SYS_H
#define MEMFIT_SYS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "memfit/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* An absent size or counter. */
#define MEMFIT_SYS_UNKNOWN UINT64_MAX

#define MEMFIT_SYS_REASON_MAX 256
#define MEMFIT_SYS_PATH_MAX   512

/* ---- System ------------------------------------------------------------ */

struct memfit_meminfo {
    uint64_t total_bytes;     /* MemTotal */
    uint64_t available_bytes; /* MemAvailable */
    uint64_t free_bytes;      /* MemFree */
    uint64_t buffers_bytes;   /* Buffers */
    uint64_t cached_bytes;    /* Cached */
    uint64_t shmem_bytes;     /* Shmem */
    uint64_t swap_total_bytes;
    uint64_t swap_free_bytes;
    char reason[MEMFIT_SYS_REASON_MAX];
};

/* Reads ROOT/proc/meminfo. E_IO only when the file cannot be read at all. */
MEMFIT_API enum memfit_status memfit_meminfo_read(const char *root, struct memfit_meminfo *out);

/* ---- Pressure stall information ----------------------------------------- */

struct memfit_psi {
    bool present;
    double some_avg10, some_avg60, some_avg300; /* percent of wall time */
    uint64_t some_total_us;
    double full_avg10, full_avg60, full_avg300;
    uint64_t full_total_us;
};

/* Reads a PSI file (/proc/pressure/memory or a cgroup's memory.pressure).
 * A missing file leaves present = false and returns MEMFIT_OK; a malformed
 * one is E_FORMAT naming the path. */
MEMFIT_API enum memfit_status memfit_psi_read(const char *path, struct memfit_psi *out);

/* ---- cgroup ------------------------------------------------------------ */

enum memfit_cgroup_mode {
    MEMFIT_CGROUP_NONE = 0,   /* no cgroup filesystem mounted */
    MEMFIT_CGROUP_V1 = 1,     /* legacy: v1 controllers only */
    MEMFIT_CGROUP_V2 = 2,     /* unified */
    MEMFIT_CGROUP_HYBRID = 3, /* v1 controllers + cgroup2 at .../unified */
};

struct memfit_cgroup {
    enum memfit_cgroup_mode mode;
    int memory_version;                  /* 1 or 2: where the memory controller is; 0 none */
    char path[MEMFIT_SYS_PATH_MAX];      /* the cgroup, as in /proc/PID/cgroup: "/kubepods/x" */
    char dir[MEMFIT_SYS_PATH_MAX];       /* the directory read (under root) */
    char mount_dir[MEMFIT_SYS_PATH_MAX]; /* the cgroup mount it lies in (for read_dir) */
    char limit_dir[MEMFIT_SYS_PATH_MAX]; /* where the effective limit was found */
    /* the file that set it: "memory.max", "memory.limit_in_bytes" or
     * "hierarchical_memory_limit" (v1 memory.stat; may sit above the mount) */
    char limit_source[32];
    uint64_t limit_bytes; /* effective: tightest of the cgroup and its ancestors; UNKNOWN = none */
    uint64_t own_limit_bytes;   /* this cgroup's own memory.max / limit_in_bytes; UNKNOWN = none */
    uint64_t high_bytes;        /* v2 memory.high; UNKNOWN = none or v1 */
    uint64_t usage_bytes;       /* memory.current / usage_in_bytes */
    uint64_t working_set_bytes; /* usage - inactive_file, floored at 0 (the kubelet's) */
    /* What cannot be given back without thrashing, the figure levels judge:
     * usage - max(0, inactive_file - file_mapped), at least the working set,
     * at most usage. The kubelet's working set leaves out inactive file
     * pages, yet weights mapped from a file sit on that list until touched
     * twice: mapped file pages in use count here (docs/memory.md). */
    uint64_t in_use_bytes;
    uint64_t peak_bytes; /* memory.peak / max_usage_in_bytes */
    /* memory.stat (v1: the total_* hierarchical fields) */
    uint64_t anon_bytes, file_bytes, active_file_bytes, inactive_file_bytes;
    uint64_t shmem_bytes, kernel_bytes, file_mapped_bytes, unevictable_bytes;
    uint64_t swap_bytes;       /* memory.swap.current / memsw.usage - usage */
    uint64_t swap_limit_bytes; /* UNKNOWN = none */
    /* events: v2 memory.events; v1 oom_control (oom_kill, under_oom) and failcnt */
    uint64_t events_low, events_high, events_max, events_oom, events_oom_kill;
    uint64_t failcnt;
    bool under_oom;             /* v1 oom_control */
    bool oom_kill_disable;      /* v1 oom_control */
    struct memfit_psi pressure; /* memory.pressure (v2, or the unified side of hybrid) */
    char reason[MEMFIT_SYS_REASON_MAX];
};

/*
 * Finds the memory cgroup of `pid` (0 = the calling process) from
 * ROOT/proc/PID/cgroup and ROOT/proc/PID/mountinfo (the mount root maps
 * container paths), then reads it. mode NONE with fields UNKNOWN is success.
 */
MEMFIT_API enum memfit_status memfit_cgroup_read(const char *root, pid_t pid,
                                                 struct memfit_cgroup *out);

/*
 * Reads a cgroup directory directly (e.g. one a test created), of memory
 * controller `version` 1 or 2. The effective limit walks up the parent
 * directories while they are inside the same cgroup mount `mount_dir`
 * (NULL: only `dir` itself). A v1 limit >= 2^62 or >= the live machine's
 * MemTotal means "no limit". This is the cheap call to repeat: resolve the
 * directory once with memfit_cgroup_read, then sample it with this.
 * E_NOT_FOUND when `dir` does not exist (the cgroup went away).
 */
MEMFIT_API enum memfit_status memfit_cgroup_read_dir(const char *dir, const char *mount_dir,
                                                     int version, struct memfit_cgroup *out);

MEMFIT_API const char *memfit_cgroup_mode_name(enum memfit_cgroup_mode mode);

/* The in_use_bytes rule on a cgroup's other fields (the readers fill
 * in_use_bytes with it; made-up figures in tests go through it too). */
MEMFIT_API uint64_t memfit_cgroup_in_use_bytes(const struct memfit_cgroup *cgroup);

/* Figures of one cgroup before or after memfit_cgroup_reclaim_cache. */
struct memfit_cgroup_figures {
    uint64_t usage_bytes, in_use_bytes, file_bytes, anon_bytes, swap_bytes;
};

/* What memfit_cgroup_reclaim_cache did. */
struct memfit_cgroup_reclaim {
    char method[32];      /* the file written: "memory.reclaim" or "memory.force_empty" */
    uint64_t asked_bytes; /* what memory.reclaim was asked for; 0 for force_empty */
    struct memfit_cgroup_figures before, after;
};

/*
 * Gives the page cache of the cgroup directory `dir` (memory controller
 * `version` 1 or 2) back to the machine, without pushing its processes'
 * memory to swap. v2: writes the cgroup's page cache not mapped by a
 * process to memory.reclaim, with "swappiness=0" where the kernel takes it;
 * where it does not and the cgroup may swap, refuses. v1: writes
 * memory.force_empty, which reclaims everything it can: refused when the
 * machine has swap and the cgroup's memory.swappiness is not 0. The root
 * cgroup is refused (the kernel refuses it too). E_UNSUPPORTED with the
 * reason for a refusal, E_NOT_FOUND / E_PERMISSION naming the file.
 */
MEMFIT_API enum memfit_status memfit_cgroup_reclaim_cache(const char *dir, int version,
                                                          struct memfit_cgroup_reclaim *out);

/* ---- The effective memory limit ------------------------------------------ */

enum memfit_limit_kind {
    MEMFIT_LIMIT_KIND_NONE = 0,   /* neither could be read */
    MEMFIT_LIMIT_KIND_CGROUP = 1, /* the tightest cgroup limit of the process */
    MEMFIT_LIMIT_KIND_MEMORY = 2, /* physical memory (MemTotal) */
};

/* The limit a process is held to, with its name for messages. */
struct memfit_limit {
    enum memfit_limit_kind kind;
    uint64_t bytes; /* MEMFIT_SYS_UNKNOWN when kind is NONE */
    char text[64];  /* "cgroup limit 2.00 GiB", "physical memory 23.4 GiB" */
};

/* "cgroup limit", "physical memory" or "no known memory limit". */
MEMFIT_API const char *memfit_limit_kind_name(enum memfit_limit_kind kind);

/*
 * The rule, on what the caller has already read (either may be NULL): the
 * cgroup's effective limit (memfit_cgroup.limit_bytes, the tightest of it and
 * its ancestors) when it is below MemTotal, else MemTotal, else NONE. The one
 * place that decides the effective limit: the report, the monitor and the
 * default budget all use it.
 */
MEMFIT_API void memfit_limit_choose(const struct memfit_cgroup *cgroup,
                                    const struct memfit_meminfo *system, struct memfit_limit *out);

/*
 * Reads the cgroup of `pid` (0 = the calling process) and ROOT/proc/meminfo
 * and applies memfit_limit_choose(). What cannot be read is left out (kind
 * NONE when nothing could be): MEMFIT_OK all the same. E_NOT_FOUND "no
 * process with pid N" for a missing pid.
 */
MEMFIT_API enum memfit_status memfit_limit_read(const char *root, pid_t pid,
                                                struct memfit_limit *out);

/* ---- Processes --------------------------------------------------------- */

struct memfit_proc_mem {
    pid_t pid;
    pid_t ppid;
    char name[64];      /* /proc/PID/comm */
    char state;         /* State: 'R', 'S', 'D', 'Z' (zombie: exited, not yet reaped), ... */
    uint64_t rss_bytes; /* VmRSS = RssAnon + RssFile + RssShmem */
    uint64_t rss_anon_bytes, rss_file_bytes, rss_shmem_bytes;
    uint64_t swap_bytes;                                /* VmSwap */
    uint64_t hwm_bytes;                                 /* VmHWM: peak RSS */
    uint64_t pss_bytes, pss_anon_bytes, pss_file_bytes; /* smaps_rollup, UNKNOWN if unreadable */
    char reason[MEMFIT_SYS_REASON_MAX];
};

/* Reads ROOT/proc/PID/status (and smaps_rollup when readable). pid 0 is
 * the calling process (ROOT/proc/self). A kernel thread has rss 0.
 * E_NOT_FOUND "no process with pid N" when it does not exist. */
MEMFIT_API enum memfit_status memfit_proc_read(const char *root, pid_t pid,
                                               struct memfit_proc_mem *out);

/* What the _ex readers read besides /proc/PID/status. */
enum memfit_proc_flags {
    MEMFIT_PROC_STATUS_ONLY = 0,
    /* smaps_rollup: precise PSS, but the kernel walks every page table of
     * the process (milliseconds for a process with gigabytes mapped) */
    MEMFIT_PROC_PSS = 1,
};

/* memfit_proc_read with a choice of what to read (flags of memfit_proc_flags). */
MEMFIT_API enum memfit_status memfit_proc_read_ex(const char *root, pid_t pid, unsigned flags,
                                                  struct memfit_proc_mem *out);

/*
 * Sums the process `pid` and all its descendants into `out` (pid and name
 * are the root's; hwm is the root's own, as peaks do not add). n_procs, when
 * not NULL, receives how many processes were summed.
 */
MEMFIT_API enum memfit_status memfit_proc_tree_read(const char *root, pid_t pid,
                                                    struct memfit_proc_mem *out, unsigned *n_procs);

/* memfit_proc_tree_read with flags (memfit_proc_flags). Sums of PSS are
 * UNKNOWN when one member's smaps_rollup was unreadable. E_NOMEM possible. */
/*
 * The process `pid` and its descendants, found by one scan of ROOT/proc:
 * *out_pids (allocated, free with memfit_free) starts with the root's pid
 * ("self" resolved). Costs one read per process on the machine, so callers
 * sampling often keep the list and re-list only when processes came or went
 * (memfit_proc_count_hint) or now and then.
 */
MEMFIT_API enum memfit_status memfit_proc_tree_list(const char *root, pid_t pid, pid_t **out_pids,
                                                    size_t *n_pids);

/*
 * Sums the memory of `pids` into `out` (pid, name and hwm are the first
 * one's). Processes that have exited are skipped; *n_alive (optional)
 * receives how many were summed. E_NOT_FOUND when the first one is gone.
 */
MEMFIT_API enum memfit_status memfit_proc_sum(const char *root, const pid_t *pids, size_t n_pids,
                                              unsigned flags, struct memfit_proc_mem *out,
                                              unsigned *n_alive);

/*
 * A cheap number that changes when processes are created or exit (the link
 * count procfs gives ROOT/proc, which counts the processes); 0 when unknown.
 */
MEMFIT_API uint64_t memfit_proc_count_hint(const char *root);

MEMFIT_API enum memfit_status memfit_proc_tree_read_ex(const char *root, pid_t pid, unsigned flags,
                                                       struct memfit_proc_mem *out,
                                                       unsigned *n_procs);

/*
 * The `max` processes with the largest RSS, largest first, into out[]; *n
 * receives how many were written. smaps_rollup is not read (pss UNKNOWN),
 * to keep this cheap.
 */
MEMFIT_API enum memfit_status memfit_proc_top(const char *root, struct memfit_proc_mem *out,
                                              unsigned max, unsigned *n);

/* ---- What memory levels judge (docs/memory.md) ------------------------- */

/* What the judged figures are about (the monitor log's and state file's "scope"). */
enum memfit_scope {
    MEMFIT_SCOPE_CGROUP = 0,  /* the cgroup's memory in use against its limit */
    MEMFIT_SCOPE_PROCESS = 1, /* no cgroup limit: a watched tree's RSS against
                                 that RSS plus the machine's MemAvailable */
    MEMFIT_SCOPE_MACHINE = 2, /* no cgroup limit, no tree: MemTotal - MemAvailable
                                 against MemTotal */
};

/* "cgroup", "process", "machine". */
MEMFIT_API const char *memfit_scope_name(enum memfit_scope scope);

struct memfit_judged {
    enum memfit_scope scope;
    struct memfit_limit limit;  /* memfit_limit_choose's (the cgroup's, or physical memory) */
    uint64_t working_set_bytes; /* the kubelet's (cgroup), or MemTotal - MemAvailable */
    uint64_t in_use_bytes;      /* what levels judge, in the scope */
    uint64_t limit_bytes;       /* what it is judged against, in the scope */
    uint64_t available_bytes;   /* limit - in use, floored at 0; UNKNOWN when either is */
    double percent;             /* 100 * in use / limit; NaN when unknown */
};

/*
 * The one rule for what memory levels judge (report, monitor and its
 * channel): with a cgroup limit, the cgroup's memory in use (mapped file
 * pages count) against it; without one, a watched process tree (`tree`, may
 * be NULL) by its RSS against that RSS plus MemAvailable, so a leaking
 * program is judged by its own memory, not the machine's; else the machine's
 * MemTotal - MemAvailable against MemTotal. Pure; cgroup may be NULL.
 */
MEMFIT_API void memfit_judge(const struct memfit_cgroup *cgroup,
                             const struct memfit_meminfo *system,
                             const struct memfit_proc_mem *tree, struct memfit_judged *out);

/* ---- GPU --------------------------------------------------------------- */

struct memfit_gpu_device {
    unsigned index;
    char name[96];
    uint64_t total_bytes, used_bytes, free_bytes, reserved_bytes; /* reserved UNKNOWN if no v2 */
};

struct memfit_gpu_process {
    unsigned device;
    pid_t pid;           /* host pid: NVML does not know pid namespaces */
    uint64_t used_bytes; /* UNKNOWN when the driver does not say */
};

#define MEMFIT_GPU_MAX_DEVICES   16
#define MEMFIT_GPU_MAX_PROCESSES 64

struct memfit_gpu_info {
    bool available;                    /* false: "no GPU" is a state, not an error */
    char state[MEMFIT_SYS_REASON_MAX]; /* "no GPU: libnvidia-ml.so.1 not found", "2 devices" */
    char driver_version[64];
    unsigned n_devices;
    struct memfit_gpu_device devices[MEMFIT_GPU_MAX_DEVICES];
    unsigned n_processes;
    struct memfit_gpu_process processes[MEMFIT_GPU_MAX_PROCESSES];
};

/* An NVML session: the library is loaded and initialised once. Not thread-safe. */
typedef struct memfit_gpu memfit_gpu;

/* Loads NVML with dlopen. Succeeds without a GPU too (memfit_gpu_read then
 * reports available = false with the reason). E_NOMEM only. */
MEMFIT_API enum memfit_status memfit_gpu_open(memfit_gpu **out);

/* Reads every device and its processes. */
MEMFIT_API enum memfit_status memfit_gpu_read(memfit_gpu *gpu, struct memfit_gpu_info *out);

/* Shuts NVML down and unloads it; accepts NULL. */
MEMFIT_API void memfit_gpu_close(memfit_gpu *gpu);

/*
 * GPU levels. Each device is judged on its own: the percent of its memory
 * in use (NVML's `used`) against warning, critical and danger thresholds.
 * One rule for the report (one reading), `memfit monitor` and /metrics
 * (which add hysteresis over time: memfit_gpu_level_next in memfit/monitor.h).
 */
#define MEMFIT_GPU_WARNING_PERCENT  80.0
#define MEMFIT_GPU_CRITICAL_PERCENT 90.0
#define MEMFIT_GPU_DANGER_PERCENT   95.0
#define MEMFIT_GPU_LEVEL_UNKNOWN    (-1)

struct memfit_gpu_thresholds {
    double warning_percent;    /* 80 */
    double critical_percent;   /* 90 */
    double danger_percent;     /* 95 */
    double hysteresis_percent; /* 2: a level is left once the value is this far below it */
};

/* The defaults above. */
MEMFIT_API struct memfit_gpu_thresholds memfit_gpu_thresholds_default(void);

/* E_RANGE naming the problem unless 0 <= warning < critical < danger <= 100
 * and 0 <= hysteresis < 50. */
MEMFIT_API enum memfit_status memfit_gpu_thresholds_check(const struct memfit_gpu_thresholds *t);

/* 100 * used / total of one device; NaN when either is unknown or total is 0. */
MEMFIT_API double memfit_gpu_device_percent(const struct memfit_gpu_device *d);

/*
 * The level of one reading, without hysteresis, as the numbers of enum
 * memfit_level (0 ok, 1 warning, 2 critical, 3 danger: the level whose
 * threshold `percent` reaches); MEMFIT_GPU_LEVEL_UNKNOWN for NaN.
 */
MEMFIT_API int memfit_gpu_level_at(const struct memfit_gpu_thresholds *t, double percent);

/* ---- Report: one snapshot of all of the above ----------------------------- */

#define MEMFIT_REPORT_MAX_TOP 64

/* The thresholds of the report's level (the monitor adds hysteresis over time). */
#define MEMFIT_REPORT_WARNING_PERCENT  80.0
#define MEMFIT_REPORT_CRITICAL_PERCENT 90.0
#define MEMFIT_REPORT_DANGER_BYTES     50000000ull /* 50 MB, or 5% of the limit if less */

struct memfit_report_options {
    const char *root; /* NULL or "/": the live machine; else a fixture tree */
    pid_t pid;        /* process tree to report (> 0), and whose cgroup; 0: none, own cgroup */
    unsigned top_n;   /* how many of the largest processes by RSS (<= MAX_TOP) */
    bool gpu;         /* read the GPUs (only ever on the live machine) */
    memfit_gpu *gpu_session; /* borrowed open session to reuse; NULL: open one for the call */
    /* The level's thresholds, as `memfit monitor`'s: warning and critical in
     * percent of the limit (80, 90), danger when less than
     * danger_available_bytes is left (0: the smaller of 50 MB and half the
     * room above critical, i.e. 5% of the limit at critical 90). */
    double warning_percent, critical_percent;
    uint64_t danger_available_bytes;
    struct memfit_gpu_thresholds gpu_thresholds; /* each GPU's level (default 80/90/95) */
};

/*
 * The danger headroom in force for a limit: `configured` when not 0, else
 * the smaller of MEMFIT_REPORT_DANGER_BYTES (50 MB) and half the room above
 * the critical threshold, so that danger lies above critical even for small
 * limits. The rule of both the report and the monitor's levels.
 */
MEMFIT_API uint64_t memfit_danger_headroom_bytes(uint64_t configured, double critical_percent,
                                                 uint64_t limit_bytes);

/* Fills the defaults: live machine, no pid, top 5, GPU on, thresholds 80/90/auto,
 * GPU thresholds 80/90/95. */
MEMFIT_API void memfit_report_options_default(struct memfit_report_options *opts);

struct memfit_report {
    uint64_t time_ns;    /* wall clock when collected, ns since the epoch */
    uint64_t collect_ns; /* how long collecting took */
    char root[MEMFIT_SYS_PATH_MAX];
    struct memfit_meminfo system;
    struct memfit_psi system_pressure; /* ROOT/proc/pressure/memory */
    struct memfit_cgroup cgroup;
    bool has_process;
    struct memfit_proc_mem process; /* sums over the tree of options.pid */
    unsigned process_n_procs;
    unsigned n_top;
    struct memfit_proc_mem top[MEMFIT_REPORT_MAX_TOP]; /* largest RSS first */
    struct memfit_gpu_info gpu;
    /* The summary: how close memory in use is to the limit (memfit_judge). */
    enum memfit_scope scope;    /* cgroup; process (--pid, no cgroup limit); machine */
    uint64_t limit_bytes;       /* the cgroup's effective limit, or MemTotal when none is lower;
                                   in process scope the tree's RSS + MemAvailable */
    char limit_source[16];      /* "cgroup" or "memory" */
    uint64_t working_set_bytes; /* cgroup working set (the kubelet's), or MemTotal - MemAvailable */
    uint64_t in_use_bytes;      /* what levels judge: cgroup in_use_bytes, the tree's RSS, or
                                   the machine's MemTotal - MemAvailable */
    uint64_t available_bytes;   /* limit - in use */
    double percent;             /* 100 * in use / limit; NaN when unknown */
    char level[16];             /* "ok", "warning", "critical", "danger" or "unknown" */
    double warning_percent, critical_percent; /* the thresholds judged with */
    uint64_t danger_available_bytes;          /* in force (automatic resolved); UNKNOWN: no limit */
    char reason[MEMFIT_SYS_REASON_MAX];       /* what could not be read (PSI, top, ...) */
    /* Each GPU's level on this one reading (no hysteresis), per gpu.devices[i]: */
    struct memfit_gpu_thresholds gpu_thresholds; /* judged with */
    double gpu_percent[MEMFIT_GPU_MAX_DEVICES];  /* memfit_gpu_device_percent; NaN: unknown */
    int gpu_level[MEMFIT_GPU_MAX_DEVICES];       /* memfit_gpu_level_at; LEVEL_UNKNOWN */
    char gpu_process_name[MEMFIT_GPU_MAX_PROCESSES][64]; /* per gpu.processes[i]: /proc/PID/comm,
                                                            "" when no such process is seen */
};

/*
 * Reads everything into *out (a large struct, ~40 KB: keep it off small stacks).
 * E_NOT_FOUND "no process with pid N" for a missing options.pid; E_IO when
 * ROOT/proc/meminfo cannot be read; other missing parts are noted in the
 * reasons. opts NULL means the defaults.
 */
MEMFIT_API enum memfit_status memfit_report_collect(const struct memfit_report_options *opts,
                                                    struct memfit_report *out);

/*
 * The report as one JSON object (docs/report-json.md), in a new string the
 * caller frees with memfit_free. E_NOMEM only.
 */
MEMFIT_API enum memfit_status memfit_report_to_json(const struct memfit_report *report,
                                                    char **out_json);

#ifdef __cplusplus
}
#endif

#endif

/*
 * `memfit report`: one look at memory as the kernel sees it — the machine,
 * the container's cgroup (its effective limit and where it comes from, the
 * working set and its split), pressure, a process tree, the largest
 * processes and the GPUs — as a table a person reads at a glance, or as the
 * JSON of docs/report-json.md. Collection is the library's
 * (memfit_report_collect); this file only parses options and prints.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

const char cmd_report_help[] =
    "Usage: memfit report [--json] [--pid PID] [--top N] [--root DIR] [--no-gpu]\n"
    "                     [--warn PCT] [--critical PCT] [--danger-available SIZE]\n"
    "                     [--gpu-warn PCT] [--gpu-critical PCT] [--gpu-danger PCT]\n"
    "\n"
    "Shows the memory of this machine, of its container (cgroup v1 or v2: the\n"
    "effective limit, usage, memory in use, the kubelet's working set, the\n"
    "anon/mapped file/other page cache/shmem/swap split, peak, OOM events), memory\n"
    "pressure (PSI), a process tree, the largest processes by RSS and the GPUs.\n"
    "\n"
    "In use = usage minus the inactive file pages nobody maps: weights mapped from\n"
    "a file count, though the kubelet's working set (usage - inactive file) leaves\n"
    "them out until they are touched twice (docs/memory.md). Without a cgroup\n"
    "limit it is the --pid process tree's RSS, judged against that RSS plus the\n"
    "machine's available memory (as memfit monitor judges it), or else the\n"
    "machine's MemTotal - MemAvailable.\n"
    "\n"
    "The level compares memory in use with the effective limit (the cgroup's\n"
    "when it has one, else physical memory): ok below --warn (80%), warning from\n"
    "it, critical from --critical (90%), danger when less than --danger-available\n"
    "is left (default: the smaller of 50 MB and half the room above critical, 5%\n"
    "of the limit at 90). The same thresholds and rule as memfit monitor's.\n"
    "\n"
    "Options:\n"
    "  --json        print one JSON object (schema: docs/report-json.md)\n"
    "  --pid PID     also report the process PID and its descendants, and use\n"
    "                its cgroup (default: no process, memfit's own cgroup)\n"
    "  --top N       list the N largest processes by RSS (0-64, default 5)\n"
    "  --root DIR    read DIR/proc and DIR/sys instead of the live machine\n"
    "                (for fixture trees; the GPU is then not read)\n"
    "  --no-gpu      do not load NVML\n"
    "  --warn PCT, --critical PCT, --danger-available SIZE\n"
    "                the level's thresholds (warning below critical, 0-100)\n"
    "  --gpu-warn PCT, --gpu-critical PCT, --gpu-danger PCT\n"
    "                each GPU's level, in percent of its own memory in use\n"
    "                (default 80, 90, 95; rising), as memfit monitor judges it\n"
    "\n"
    "Values that could not be read are shown as '-' (null in JSON); the notes\n"
    "at the end say why.\n"
    "\n"
    "Exit status: 0 success, 1 failure, 2 usage error (also: no such --pid).\n";

#define UNKNOWN MEMFIT_SYS_UNKNOWN

/* A size for the table: "1.50 GiB", or "-" when unknown. Rotating buffers
 * so that one printf can hold several. */
static const char *sz(uint64_t bytes)
{
    static char ring[16][32];
    static unsigned next;
    char *buf = ring[next++ % 16];
    if (bytes == UNKNOWN)
        return "-";
    return memfit_format_size(bytes, buf, 32);
}

static const char *num(uint64_t v)
{
    static char ring[8][24];
    static unsigned next;
    char *buf = ring[next++ % 8];
    if (v == UNKNOWN)
        return "-";
    snprintf(buf, 24, "%llu", (unsigned long long)v);
    return buf;
}

/* One table row of up to three "label value" pairs, aligned in columns. */
static void row(const char *l1, const char *v1, const char *l2, const char *v2, const char *l3,
                const char *v3)
{
    printf("  %-13s %10s", l1, v1);
    if (l2)
        printf("   %-13s %10s", l2, v2);
    if (l3)
        printf("   %-13s %10s", l3, v3);
    putchar('\n');
}

static void print_psi(const char *label, const struct memfit_psi *p)
{
    if (!p->present) {
        printf("  %-13s %10s\n", label, "-");
        return;
    }
    printf("  %-13s some %.2f %.2f %.2f   full %.2f %.2f %.2f   (%% of time, avg 10s 60s 300s)\n",
           label, p->some_avg10, p->some_avg60, p->some_avg300, p->full_avg10, p->full_avg60,
           p->full_avg300);
}

static void print_summary(const struct memfit_report *r)
{
    if (isnan(r->percent)) {
        printf("Level          unknown (the memory in use could not be read)\n");
        return;
    }
    const char *from = r->scope == MEMFIT_SCOPE_CGROUP ? "cgroup limit"
                       : r->scope == MEMFIT_SCOPE_PROCESS
                           ? "no cgroup limit: the process tree's RSS, of its RSS + available"
                           : "physical memory, no lower cgroup limit";
    printf("Level          %s: in use %s = %.1f%% of %s (%s), %s left\n", r->level,
           sz(r->in_use_bytes), r->percent, sz(r->limit_bytes), from, sz(r->available_bytes));
    const struct memfit_cgroup *c = &r->cgroup;
    if (strcmp(r->limit_source, "cgroup") == 0 && c->file_bytes != UNKNOWN &&
        c->file_mapped_bytes != UNKNOWN && c->anon_bytes != UNKNOWN) {
        uint64_t other =
            c->file_bytes > c->file_mapped_bytes ? c->file_bytes - c->file_mapped_bytes : 0;
        printf("               anon %s, mapped files %s, other page cache %s, shmem %s, swap %s;\n"
               "               the kubelet's working set (usage - inactive file) is %s\n",
               sz(c->anon_bytes), sz(c->file_mapped_bytes), sz(other), sz(c->shmem_bytes),
               sz(c->swap_bytes), sz(r->working_set_bytes));
    }
}

static void print_system(const struct memfit_report *r)
{
    const struct memfit_meminfo *m = &r->system;
    printf("\nSystem\n");
    uint64_t used = m->total_bytes != UNKNOWN && m->available_bytes != UNKNOWN &&
                            m->total_bytes >= m->available_bytes
                        ? m->total_bytes - m->available_bytes
                        : UNKNOWN;
    uint64_t swap_used = m->swap_total_bytes != UNKNOWN && m->swap_free_bytes != UNKNOWN &&
                                 m->swap_total_bytes >= m->swap_free_bytes
                             ? m->swap_total_bytes - m->swap_free_bytes
                             : UNKNOWN;
    row("total", sz(m->total_bytes), "available", sz(m->available_bytes), "used", sz(used));
    row("cached", sz(m->cached_bytes), "shmem", sz(m->shmem_bytes), "free", sz(m->free_bytes));
    row("swap total", sz(m->swap_total_bytes), "swap used", sz(swap_used), NULL, NULL);
    print_psi("pressure", &r->system_pressure);
}

static void print_cgroup(const struct memfit_cgroup *c)
{
    printf("\nContainer      ");
    if (c->memory_version == 0) {
        printf("no memory cgroup (mode %s)\n", memfit_cgroup_mode_name(c->mode));
        return;
    }
    printf("cgroup v%d (mode %s) %s\n", c->memory_version, memfit_cgroup_mode_name(c->mode),
           c->path);
    if (c->limit_bytes == UNKNOWN)
        printf("  %-13s %10s\n", "limit", "none");
    else
        printf("  %-13s %10s   from %s in %s\n", "limit", sz(c->limit_bytes), c->limit_source,
               c->limit_dir);
    row("usage", sz(c->usage_bytes), "in use", sz(c->in_use_bytes), "working set",
        sz(c->working_set_bytes));
    row("peak", sz(c->peak_bytes), NULL, NULL, NULL, NULL);
    row("anon", sz(c->anon_bytes), "file", sz(c->file_bytes), "shmem", sz(c->shmem_bytes));
    row("active file", sz(c->active_file_bytes), "inactive file", sz(c->inactive_file_bytes),
        "kernel", sz(c->kernel_bytes));
    row("mapped file", sz(c->file_mapped_bytes), "unevictable", sz(c->unevictable_bytes), "high",
        sz(c->high_bytes));
    row("swap", sz(c->swap_bytes), "swap limit", sz(c->swap_limit_bytes), NULL, NULL);
    row("oom", num(c->events_oom), "oom_kill", num(c->events_oom_kill), "failcnt", num(c->failcnt));
    row("events max", num(c->events_max), "events high", num(c->events_high), "under oom",
        c->memory_version == 1 ? (c->under_oom ? "yes" : "no") : "-");
    print_psi("pressure", &c->pressure);
}

static void print_process(const struct memfit_report *r)
{
    const struct memfit_proc_mem *p = &r->process;
    printf("\nProcess        %d (%s)", (int)p->pid, p->name);
    if (r->process_n_procs > 1)
        printf(" and %u descendant%s", r->process_n_procs - 1, r->process_n_procs == 2 ? "" : "s");
    putchar('\n');
    row("rss", sz(p->rss_bytes), "pss", sz(p->pss_bytes), "swap", sz(p->swap_bytes));
    row("rss anon", sz(p->rss_anon_bytes), "rss file", sz(p->rss_file_bytes), "rss shmem",
        sz(p->rss_shmem_bytes));
    row("peak rss", sz(p->hwm_bytes), "pss anon", sz(p->pss_anon_bytes), "pss file",
        sz(p->pss_file_bytes));
}

static void print_top(const struct memfit_report *r)
{
    printf("\nTop %u processes by RSS\n", r->n_top);
    printf("  %8s  %-16s %10s %10s %10s %10s %10s\n", "PID", "NAME", "RSS", "ANON", "FILE", "SHMEM",
           "SWAP");
    for (unsigned i = 0; i < r->n_top; i++) {
        const struct memfit_proc_mem *p = &r->top[i];
        printf("  %8d  %-16.16s %10s %10s %10s %10s %10s\n", (int)p->pid, p->name, sz(p->rss_bytes),
               sz(p->rss_anon_bytes), sz(p->rss_file_bytes), sz(p->rss_shmem_bytes),
               sz(p->swap_bytes));
    }
}

static const char *gpu_level_name(int level)
{
    return level == MEMFIT_GPU_LEVEL_UNKNOWN ? "unknown" : memfit_level_name(level);
}

static void print_gpu(const struct memfit_report *r)
{
    const struct memfit_gpu_info *g = &r->gpu;
    if (!g->available) {
        printf("\nGPU            %s\n", g->state);
        return;
    }
    const struct memfit_gpu_thresholds *t = &r->gpu_thresholds;
    printf("\nGPU            %s, driver %s; levels at %g/%g/%g%% of each GPU's memory\n", g->state,
           g->driver_version[0] ? g->driver_version : "-", t->warning_percent, t->critical_percent,
           t->danger_percent);
    for (unsigned i = 0; i < g->n_devices; i++) {
        const struct memfit_gpu_device *d = &g->devices[i];
        char pct[24] = "-";
        if (!isnan(r->gpu_percent[i]))
            snprintf(pct, sizeof(pct), "%.1f%%", r->gpu_percent[i]);
        printf("  %u %-24.24s %s: used %s of %s (%s), free %s, reserved %s\n", d->index, d->name,
               gpu_level_name(r->gpu_level[i]), sz(d->used_bytes), sz(d->total_bytes), pct,
               sz(d->free_bytes), sz(d->reserved_bytes));
    }
    if (g->n_processes == 0)
        return;
    printf("  %8s  %-16s %4s %10s\n", "PID", "NAME", "GPU", "USED");
    for (unsigned i = 0; i < g->n_processes; i++) {
        const struct memfit_gpu_process *p = &g->processes[i];
        const char *name = r->gpu_process_name[i][0] ? r->gpu_process_name[i] : "-";
        printf("  %8d  %-16.16s %4u %10s\n", (int)p->pid, name, p->device, sz(p->used_bytes));
    }
}

static void print_notes(const struct memfit_report *r)
{
    const char *notes[] = {r->system.reason, r->cgroup.reason,
                           r->has_process ? r->process.reason : "", r->reason};
    bool any = false;
    for (size_t i = 0; i < sizeof(notes) / sizeof(notes[0]); i++) {
        if (!notes[i][0])
            continue;
        if (!any)
            printf("\nNotes\n");
        any = true;
        printf("  %s\n", notes[i]);
    }
}

static void print_human(const struct memfit_report *r)
{
    print_summary(r);
    print_system(r);
    print_cgroup(&r->cgroup);
    if (r->has_process)
        print_process(r);
    if (r->n_top > 0)
        print_top(r);
    print_gpu(r);
    print_notes(r);
}

enum {
    OPT_JSON = 1,
    OPT_NO_GPU,
    OPT_PID,
    OPT_TOP,
    OPT_ROOT,
    OPT_WARN,
    OPT_CRITICAL,
    OPT_DANGER,
    OPT_GPU_WARN,
    OPT_GPU_CRITICAL,
    OPT_GPU_DANGER,
};

static const struct cli_option options[] = {
    {"json", 0, CLI_ARG_NONE, OPT_JSON},
    {"no-gpu", 0, CLI_ARG_NONE, OPT_NO_GPU},
    {"pid", 0, CLI_ARG_REQUIRED, OPT_PID},
    {"top", 0, CLI_ARG_REQUIRED, OPT_TOP},
    {"root", 0, CLI_ARG_REQUIRED, OPT_ROOT},
    {"warn", 0, CLI_ARG_REQUIRED, OPT_WARN},
    {"critical", 0, CLI_ARG_REQUIRED, OPT_CRITICAL},
    {"danger-available", 0, CLI_ARG_REQUIRED, OPT_DANGER},
    {"gpu-warn", 0, CLI_ARG_REQUIRED, OPT_GPU_WARN},
    {"gpu-critical", 0, CLI_ARG_REQUIRED, OPT_GPU_CRITICAL},
    {"gpu-danger", 0, CLI_ARG_REQUIRED, OPT_GPU_DANGER},
    {0},
};

int cmd_report(int argc, char **argv)
{
    struct memfit_report_options opts;
    memfit_report_options_default(&opts);
    bool json = false;
    struct cli_args a;
    cli_args_init(&a, "report", cmd_report_help, argc, argv, 0, CLI_TABLES(options));
    int id;
    while ((id = cli_args_next(&a)) > 0) {
        const char *v = a.value, *name = a.name;
        long long n;
        bool ok = true;
        switch (id) {
        case OPT_JSON:
            json = true;
            break;
        case OPT_NO_GPU:
            opts.gpu = false;
            break;
        case OPT_PID:
            if ((ok = cli_opt_int("report", name, v, 1, INT32_MAX, &n)))
                opts.pid = (pid_t)n;
            break;
        case OPT_TOP:
            if ((ok = cli_opt_int("report", name, v, 0, MEMFIT_REPORT_MAX_TOP, &n)))
                opts.top_n = (unsigned)n;
            break;
        case OPT_ROOT:
            opts.root = v;
            break;
        case OPT_WARN:
            ok = cli_opt_percent("report", name, v, &opts.warning_percent);
            break;
        case OPT_CRITICAL:
            ok = cli_opt_percent("report", name, v, &opts.critical_percent);
            break;
        case OPT_DANGER:
            ok = cli_opt_size("report", name, v, &opts.danger_available_bytes);
            break;
        case OPT_GPU_WARN:
            ok = cli_opt_percent("report", name, v, &opts.gpu_thresholds.warning_percent);
            break;
        case OPT_GPU_CRITICAL:
            ok = cli_opt_percent("report", name, v, &opts.gpu_thresholds.critical_percent);
            break;
        default: /* OPT_GPU_DANGER */
            ok = cli_opt_percent("report", name, v, &opts.gpu_thresholds.danger_percent);
            break;
        }
        if (!ok)
            return CLI_EXIT_USAGE;
    }
    if (id < 0)
        return a.status;
    if (!cli_args_at_most(&a, 0))
        return CLI_EXIT_USAGE;

    static struct memfit_report report; /* ~40 KB: not on the stack */
    enum memfit_status st = memfit_report_collect(&opts, &report);
    if (st == MEMFIT_E_RANGE)
        return cli_usage("report", "%s", memfit_last_error());
    if (st == MEMFIT_E_NOT_FOUND && opts.pid > 0)
        return cli_usage("report", "%s", memfit_last_error());
    if (st != MEMFIT_OK)
        return cli_fail_status(st);
    if (json) {
        char *text = NULL;
        st = memfit_report_to_json(&report, &text);
        if (st != MEMFIT_OK)
            return cli_fail_status(st);
        puts(text);
        memfit_free(text);
    } else {
        print_human(&report);
    }
    if (fflush(stdout) != 0)
        return cli_fail("report: cannot write the output");
    return CLI_EXIT_OK;
}

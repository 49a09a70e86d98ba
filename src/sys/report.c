/*
 * The memory report: one snapshot of the machine, the container, a process
 * tree, the largest processes and the GPUs, with a summary of how close the
 * working set is to the effective limit. `memfit report` prints it; the
 * server will serve the same JSON (docs/report-json.md).
 */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/json.h"
#include "sys/sys_file.h"

void memfit_report_options_default(struct memfit_report_options *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->top_n = 5;
    opts->gpu = true;
    opts->warning_percent = MEMFIT_REPORT_WARNING_PERCENT;
    opts->critical_percent = MEMFIT_REPORT_CRITICAL_PERCENT;
    opts->gpu_thresholds = memfit_gpu_thresholds_default();
}

struct memfit_gpu_thresholds memfit_gpu_thresholds_default(void)
{
    return (struct memfit_gpu_thresholds){
        .warning_percent = MEMFIT_GPU_WARNING_PERCENT,
        .critical_percent = MEMFIT_GPU_CRITICAL_PERCENT,
        .danger_percent = MEMFIT_GPU_DANGER_PERCENT,
        .hysteresis_percent = 2.0,
    };
}

enum memfit_status memfit_gpu_thresholds_check(const struct memfit_gpu_thresholds *t)
{
    if (!t)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_gpu_thresholds_check: NULL thresholds");
    if (!(t->warning_percent >= 0 && t->danger_percent <= 100))
        return memfit_fail(MEMFIT_E_RANGE, "GPU thresholds must lie between 0 and 100 percent");
    if (!(t->warning_percent < t->critical_percent && t->critical_percent < t->danger_percent))
        return memfit_fail(MEMFIT_E_RANGE,
                           "the GPU thresholds must rise: warning %g%% < critical %g%% < "
                           "danger %g%%",
                           t->warning_percent, t->critical_percent, t->danger_percent);
    if (!(t->hysteresis_percent >= 0 && t->hysteresis_percent < 50))
        return memfit_fail(MEMFIT_E_RANGE, "GPU hysteresis %g%% out of range [0, 50)",
                           t->hysteresis_percent);
    return MEMFIT_OK;
}

double memfit_gpu_device_percent(const struct memfit_gpu_device *d)
{
    if (d->used_bytes == MEMFIT_SYS_UNKNOWN || d->total_bytes == MEMFIT_SYS_UNKNOWN ||
        d->total_bytes == 0)
        return NAN;
    return 100.0 * (double)d->used_bytes / (double)d->total_bytes;
}

int memfit_gpu_level_at(const struct memfit_gpu_thresholds *t, double percent)
{
    if (isnan(percent))
        return MEMFIT_GPU_LEVEL_UNKNOWN;
    if (percent >= t->danger_percent)
        return 3;
    if (percent >= t->critical_percent)
        return 2;
    if (percent >= t->warning_percent)
        return 1;
    return 0;
}

static bool live_root(const char *root)
{
    return !root || !root[0] || strcmp(root, "/") == 0;
}

uint64_t memfit_danger_headroom_bytes(uint64_t configured, double critical_percent,
                                      uint64_t limit_bytes)
{
    if (configured)
        return configured;
    double room = (100.0 - critical_percent) / 200.0 * (double)limit_bytes;
    return room < (double)MEMFIT_REPORT_DANGER_BYTES ? (uint64_t)room : MEMFIT_REPORT_DANGER_BYTES;
}

/* The summary fields. The level uses the thresholds on one sample; the
 * monitor's hysteresis only matters over time. */
static void summarise(struct memfit_report *r, const struct memfit_report_options *o)
{
    r->warning_percent = o->warning_percent;
    r->critical_percent = o->critical_percent;
    r->danger_available_bytes = MEMFIT_SYS_UNKNOWN;
    struct memfit_judged j;
    memfit_judge(&r->cgroup, &r->system, r->has_process ? &r->process : NULL, &j);
    r->scope = j.scope;
    r->limit_bytes = j.limit_bytes;
    r->working_set_bytes = j.working_set_bytes;
    r->in_use_bytes = j.in_use_bytes;
    r->available_bytes = j.available_bytes;
    r->percent = j.percent;
    mf_sys_copy(r->limit_source, sizeof(r->limit_source),
                j.limit.kind == MEMFIT_LIMIT_KIND_CGROUP ? "cgroup" : "memory");
    if (isnan(r->percent)) {
        mf_sys_copy(r->level, sizeof(r->level), "unknown");
        return;
    }
    uint64_t danger = memfit_danger_headroom_bytes(o->danger_available_bytes, o->critical_percent,
                                                   r->limit_bytes);
    r->danger_available_bytes = danger;
    const char *level = "ok";
    if (r->available_bytes < danger)
        level = "danger";
    else if (r->percent >= o->critical_percent)
        level = "critical";
    else if (r->percent >= o->warning_percent)
        level = "warning";
    mf_sys_copy(r->level, sizeof(r->level), level);
}

/* Each GPU's percent and level, and the names of the processes using them. */
static void judge_gpus(struct memfit_report *r, const struct memfit_report_options *o)
{
    r->gpu_thresholds = o->gpu_thresholds;
    for (unsigned i = 0; i < MEMFIT_GPU_MAX_DEVICES; i++) {
        r->gpu_percent[i] = NAN;
        r->gpu_level[i] = MEMFIT_GPU_LEVEL_UNKNOWN;
    }
    for (unsigned i = 0; i < r->gpu.n_devices; i++) {
        r->gpu_percent[i] = memfit_gpu_device_percent(&r->gpu.devices[i]);
        r->gpu_level[i] = memfit_gpu_level_at(&o->gpu_thresholds, r->gpu_percent[i]);
    }
    /* NVML's pids are the host's: in another pid namespace they may name
     * nothing here (the name stays ""). */
    for (unsigned i = 0; i < r->gpu.n_processes; i++) {
        struct memfit_proc_mem p;
        if (memfit_proc_read_ex(o->root, r->gpu.processes[i].pid, MEMFIT_PROC_STATUS_ONLY, &p) ==
            MEMFIT_OK)
            mf_sys_copy(r->gpu_process_name[i], sizeof(r->gpu_process_name[i]), p.name);
    }
}

/* Collects into r (zeroed); the public function copies it out on success. */
static enum memfit_status collect(const struct memfit_report_options *opts, struct memfit_report *r)
{
    r->time_ns = memfit_wall_ns();
    mf_sys_copy(r->root, sizeof(r->root), live_root(opts->root) ? "/" : opts->root);

    enum memfit_status st;
    if (opts->pid > 0) {
        st = memfit_proc_tree_read(opts->root, opts->pid, &r->process, &r->process_n_procs);
        if (st != MEMFIT_OK)
            return st;
        r->has_process = true;
    }
    st = memfit_meminfo_read(opts->root, &r->system);
    if (st != MEMFIT_OK)
        return st;

    char path[MEMFIT_SYS_PATH_MAX];
    if (mf_sys_path(path, sizeof(path), opts->root, "/proc/pressure/memory") &&
        memfit_psi_read(path, &r->system_pressure) != MEMFIT_OK)
        mf_sys_reason_add(r->reason, "%s", memfit_last_error());
    st = memfit_cgroup_read(opts->root, opts->pid, &r->cgroup);
    if (st != MEMFIT_OK)
        return st;
    if (opts->top_n > 0 && memfit_proc_top(opts->root, r->top, opts->top_n, &r->n_top) != MEMFIT_OK)
        mf_sys_reason_add(r->reason, "top: %s", memfit_last_error());

    if (!opts->gpu) {
        mf_sys_copy(r->gpu.state, sizeof(r->gpu.state), "no GPU: not read");
    } else if (!live_root(opts->root)) {
        mf_sys_copy(r->gpu.state, sizeof(r->gpu.state), "no GPU: not read under another root");
    } else {
        memfit_gpu *g = opts->gpu_session;
        if (!g && (st = memfit_gpu_open(&g)) != MEMFIT_OK)
            return st;
        st = memfit_gpu_read(g, &r->gpu);
        if (g != opts->gpu_session)
            memfit_gpu_close(g);
        if (st != MEMFIT_OK)
            return st;
    }
    summarise(r, opts);
    judge_gpus(r, opts);
    return MEMFIT_OK;
}

enum memfit_status memfit_report_collect(const struct memfit_report_options *opts,
                                         struct memfit_report *out)
{
    struct memfit_report_options defaults;
    if (!opts) {
        memfit_report_options_default(&defaults);
        opts = &defaults;
    }
    if (!out || opts->pid < 0 || opts->top_n > MEMFIT_REPORT_MAX_TOP)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_report_collect: bad arguments");
    if (!(opts->warning_percent >= 0 && opts->critical_percent <= 100))
        return memfit_fail(MEMFIT_E_RANGE, "thresholds must lie between 0 and 100 percent");
    if (opts->warning_percent >= opts->critical_percent)
        return memfit_fail(MEMFIT_E_RANGE,
                           "the warning threshold (%g%%) must be below the critical one (%g%%)",
                           opts->warning_percent, opts->critical_percent);
    enum memfit_status st = memfit_gpu_thresholds_check(&opts->gpu_thresholds);
    if (st != MEMFIT_OK)
        return st;
    uint64_t start = memfit_now_ns();
    /* Built aside, so that a failed call leaves *out as it was. */
    struct memfit_report *r = memfit_calloc_in(MEMFIT_ALLOC_SYS, 1, sizeof(*r));
    if (!r)
        return MEMFIT_E_NOMEM;
    st = collect(opts, r);
    if (st == MEMFIT_OK) {
        r->collect_ns = memfit_now_ns() - start;
        *out = *r;
    }
    memfit_free(r);
    return st;
}

/* ---- JSON ------------------------------------------------------------------ */

/* Each helper returns false on allocation failure. */
static bool put(json_t *obj, const char *key, json_t *value)
{
    return value && json_object_set_new(obj, key, value) == 0;
}

static bool put_size(json_t *obj, const char *key, uint64_t v)
{
    if (v == MEMFIT_SYS_UNKNOWN || v > (uint64_t)INT64_MAX)
        return put(obj, key, json_null());
    return put(obj, key, json_integer((json_int_t)v));
}

static bool put_real(json_t *obj, const char *key, double v)
{
    if (!isfinite(v))
        return put(obj, key, json_null());
    return put(obj, key, json_real(round(v * 100.0) / 100.0));
}

static bool put_text(json_t *obj, const char *key, const char *text)
{
    return put(obj, key, text && text[0] ? json_string(text) : json_null());
}

static json_t *psi_json(const struct memfit_psi *p)
{
    if (!p->present)
        return json_null();
    json_t *o = json_object();
    if (o && put_real(o, "some_avg10", p->some_avg10) && put_real(o, "some_avg60", p->some_avg60) &&
        put_real(o, "some_avg300", p->some_avg300) &&
        put_size(o, "some_total_us", p->some_total_us) &&
        put_real(o, "full_avg10", p->full_avg10) && put_real(o, "full_avg60", p->full_avg60) &&
        put_real(o, "full_avg300", p->full_avg300) &&
        put_size(o, "full_total_us", p->full_total_us))
        return o;
    json_decref(o);
    return NULL;
}

static json_t *system_json(const struct memfit_report *r)
{
    const struct memfit_meminfo *m = &r->system;
    json_t *o = json_object();
    if (o && put_size(o, "total_bytes", m->total_bytes) &&
        put_size(o, "available_bytes", m->available_bytes) &&
        put_size(o, "used_bytes", mf_sys_sub_floor(m->total_bytes, m->available_bytes)) &&
        put_size(o, "free_bytes", m->free_bytes) &&
        put_size(o, "buffers_bytes", m->buffers_bytes) &&
        put_size(o, "cached_bytes", m->cached_bytes) &&
        put_size(o, "shmem_bytes", m->shmem_bytes) &&
        put_size(o, "swap_total_bytes", m->swap_total_bytes) &&
        put_size(o, "swap_free_bytes", m->swap_free_bytes) &&
        put_size(o, "swap_used_bytes", mf_sys_sub_floor(m->swap_total_bytes, m->swap_free_bytes)) &&
        put(o, "psi", psi_json(&r->system_pressure)) && put_text(o, "reason", m->reason))
        return o;
    json_decref(o);
    return NULL;
}

static json_t *events_json(const struct memfit_cgroup *c)
{
    json_t *o = json_object();
    if (o && put_size(o, "low", c->events_low) && put_size(o, "high", c->events_high) &&
        put_size(o, "max", c->events_max) && put_size(o, "oom", c->events_oom) &&
        put_size(o, "oom_kill", c->events_oom_kill))
        return o;
    json_decref(o);
    return NULL;
}

static json_t *cgroup_json(const struct memfit_cgroup *c)
{
    json_t *o = json_object();
    if (o && put_text(o, "mode", memfit_cgroup_mode_name(c->mode)) &&
        put(o, "version", c->memory_version ? json_integer(c->memory_version) : json_null()) &&
        put_text(o, "path", c->path) && put_text(o, "dir", c->dir) &&
        put_size(o, "limit_bytes", c->limit_bytes) && put_text(o, "limit_dir", c->limit_dir) &&
        put_text(o, "limit_source", c->limit_source) &&
        put_size(o, "own_limit_bytes", c->own_limit_bytes) &&
        put_size(o, "high_bytes", c->high_bytes) && put_size(o, "usage_bytes", c->usage_bytes) &&
        put_size(o, "working_set_bytes", c->working_set_bytes) &&
        put_size(o, "in_use_bytes", c->in_use_bytes) && put_size(o, "peak_bytes", c->peak_bytes) &&
        put_size(o, "anon_bytes", c->anon_bytes) && put_size(o, "file_bytes", c->file_bytes) &&
        put_size(o, "active_file_bytes", c->active_file_bytes) &&
        put_size(o, "inactive_file_bytes", c->inactive_file_bytes) &&
        put_size(o, "shmem_bytes", c->shmem_bytes) &&
        put_size(o, "kernel_bytes", c->kernel_bytes) &&
        put_size(o, "file_mapped_bytes", c->file_mapped_bytes) &&
        put_size(o, "unevictable_bytes", c->unevictable_bytes) &&
        put_size(o, "swap_bytes", c->swap_bytes) &&
        put_size(o, "swap_limit_bytes", c->swap_limit_bytes) && put(o, "events", events_json(c)) &&
        put_size(o, "failcnt", c->failcnt) && put(o, "under_oom", json_boolean(c->under_oom)) &&
        put(o, "oom_kill_disable", json_boolean(c->oom_kill_disable)) &&
        put(o, "psi", psi_json(&c->pressure)) && put_text(o, "reason", c->reason))
        return o;
    json_decref(o);
    return NULL;
}

static json_t *proc_json(const struct memfit_proc_mem *p, bool pss)
{
    json_t *o = json_object();
    if (!(o && put(o, "pid", json_integer(p->pid)) &&
          put(o, "ppid", p->ppid >= 0 ? json_integer(p->ppid) : json_null()) &&
          put_text(o, "name", p->name) && put_size(o, "rss_bytes", p->rss_bytes) &&
          put_size(o, "rss_anon_bytes", p->rss_anon_bytes) &&
          put_size(o, "rss_file_bytes", p->rss_file_bytes) &&
          put_size(o, "rss_shmem_bytes", p->rss_shmem_bytes) &&
          put_size(o, "swap_bytes", p->swap_bytes) && put_size(o, "hwm_bytes", p->hwm_bytes)))
        goto fail;
    if (pss &&
        !(put_size(o, "pss_bytes", p->pss_bytes) &&
          put_size(o, "pss_anon_bytes", p->pss_anon_bytes) &&
          put_size(o, "pss_file_bytes", p->pss_file_bytes) && put_text(o, "reason", p->reason)))
        goto fail;
    return o;
fail:
    json_decref(o);
    return NULL;
}

/* Adds a new empty object or array under key and returns it (borrowed:
 * owned by obj from then on), so a failure later frees everything at once. */
static json_t *put_new(json_t *obj, const char *key, json_t *child)
{
    return put(obj, key, child) ? child : NULL;
}

/* The names of enum memfit_level's numbers (memfit/monitor.h, a layer above). */
static json_t *level_json(int level)
{
    static const char *const names[] = {"ok", "warning", "critical", "danger"};
    return level >= 0 && level <= 3 ? json_string(names[level]) : json_null();
}

static bool gpu_json(json_t *o, const struct memfit_report *r)
{
    const struct memfit_gpu_info *g = &r->gpu;
    const struct memfit_gpu_thresholds *t = &r->gpu_thresholds;
    if (!put(o, "available", json_boolean(g->available)) || !put_text(o, "state", g->state) ||
        !put_text(o, "driver_version", g->driver_version))
        return false;
    json_t *th = put_new(o, "thresholds", json_object());
    if (!th || !put(th, "warning_percent", json_real(t->warning_percent)) ||
        !put(th, "critical_percent", json_real(t->critical_percent)) ||
        !put(th, "danger_percent", json_real(t->danger_percent)))
        return false;
    json_t *devices = put_new(o, "devices", json_array());
    json_t *procs = put_new(o, "processes", json_array());
    if (!devices || !procs)
        return false;
    for (unsigned i = 0; i < g->n_devices; i++) {
        const struct memfit_gpu_device *d = &g->devices[i];
        json_t *dj = json_object();
        if (!dj || json_array_append_new(devices, dj) != 0 ||
            !put(dj, "index", json_integer(d->index)) || !put_text(dj, "name", d->name) ||
            !put_size(dj, "total_bytes", d->total_bytes) ||
            !put_size(dj, "used_bytes", d->used_bytes) ||
            !put_size(dj, "free_bytes", d->free_bytes) ||
            !put_size(dj, "reserved_bytes", d->reserved_bytes) ||
            !put_real(dj, "percent", r->gpu_percent[i]) ||
            !put(dj, "level", level_json(r->gpu_level[i])))
            return false;
    }
    for (unsigned i = 0; i < g->n_processes; i++) {
        const struct memfit_gpu_process *p = &g->processes[i];
        json_t *pj = json_object();
        if (!pj || json_array_append_new(procs, pj) != 0 ||
            !put(pj, "device", json_integer(p->device)) || !put(pj, "pid", json_integer(p->pid)) ||
            !put_text(pj, "name", r->gpu_process_name[i]) ||
            !put_size(pj, "used_bytes", p->used_bytes))
            return false;
    }
    return true;
}

static bool summary_json(json_t *o, const struct memfit_report *r)
{
    if (!(put_text(o, "scope", memfit_scope_name(r->scope)) &&
          put_size(o, "limit_bytes", r->limit_bytes) &&
          put_text(o, "limit_source", r->limit_source) &&
          put_size(o, "working_set_bytes", r->working_set_bytes) &&
          put_size(o, "in_use_bytes", r->in_use_bytes) &&
          put_size(o, "available_bytes", r->available_bytes) &&
          put_real(o, "percent", r->percent) && put_text(o, "level", r->level)))
        return false;
    json_t *t = put_new(o, "thresholds", json_object());
    return t && put(t, "warning_percent", json_real(r->warning_percent)) &&
           put(t, "critical_percent", json_real(r->critical_percent)) &&
           put_size(t, "danger_available_bytes", r->danger_available_bytes);
}

static bool put_time(json_t *o, uint64_t wall_ns)
{
    time_t secs = (time_t)(wall_ns / 1000000000u);
    struct tm tm;
    char text[40];
    if (!gmtime_r(&secs, &tm))
        return put(o, "time", json_null());
    size_t n = strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(text + n, sizeof(text) - n, ".%03uZ", (unsigned)(wall_ns / 1000000u % 1000u));
    return put_text(o, "time", text);
}

static bool report_json(json_t *o, const struct memfit_report *r)
{
    if (!(put(o, "v", json_integer(1)) && put_time(o, r->time_ns) &&
          put_text(o, "memfit_version", memfit_version()) && put_text(o, "root", r->root)))
        return false;
    json_t *summary = put_new(o, "summary", json_object());
    if (!summary || !summary_json(summary, r) || !put(o, "system", system_json(r)) ||
        !put(o, "cgroup", cgroup_json(&r->cgroup)))
        return false;
    if (r->has_process) {
        json_t *proc = put_new(o, "process", proc_json(&r->process, true));
        if (!proc || !put(proc, "n_procs", json_integer(r->process_n_procs)))
            return false;
    } else if (!put(o, "process", json_null())) {
        return false;
    }
    json_t *top = put_new(o, "top", json_array());
    if (!top)
        return false;
    for (unsigned i = 0; i < r->n_top; i++)
        if (json_array_append_new(top, proc_json(&r->top[i], false)) != 0)
            return false;
    json_t *gpu = put_new(o, "gpu", json_object());
    return gpu && gpu_json(gpu, r) && put_text(o, "reason", r->reason) &&
           put_real(o, "collect_ms", (double)r->collect_ns / 1e6);
}

enum memfit_status memfit_report_to_json(const struct memfit_report *report, char **out_json)
{
    if (!report || !out_json)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_report_to_json: NULL argument");
    /* jansson's allocator is process-wide: set it before any use, so that what
     * json_dumps returns is always the wrapper's (whoever called it first). */
    mf_json_init();
    json_t *o = json_object();
    char *text = NULL;
    if (o && report_json(o, report))
        text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    json_decref(o);
    if (!text)
        return memfit_fail(MEMFIT_E_NOMEM, "out of memory building the report JSON");
    char *copy = memfit_strdup(text);
    memfit_free(text);
    if (!copy)
        return MEMFIT_E_NOMEM;
    *out_json = copy;
    return MEMFIT_OK;
}

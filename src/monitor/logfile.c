/*
 * Writer of the monitor's JSON-lines log (docs/monitor-log.md). Each record
 * is one line, flushed at once, so a log survives the monitor being killed
 * and can be tailed while it grows.
 *
 * Samples are the hot path (up to ten a second for hours), so they are
 * formatted straight into a stack buffer with no allocation; the rare
 * records (start, level, action, signal, oom, exit) are built with jansson.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "core/json.h"
#include "memfit/monitor.h"

struct memfit_logfile {
    FILE *f;
    bool owned;
    uint64_t t0_ns;
};

enum memfit_status memfit_logfile_open(const char *path, memfit_logfile **out)
{
    mf_json_init();
    memfit_logfile *log = memfit_calloc_in(MEMFIT_ALLOC_MONITOR, 1, sizeof(*log));
    if (!log)
        return MEMFIT_E_NOMEM;
    if (strcmp(path, "-") == 0) {
        log->f = stdout;
    } else {
        log->f = fopen(path, "a");
        log->owned = true;
        if (!log->f) {
            int err = errno;
            memfit_free(log);
            return memfit_fail(err == EACCES ? MEMFIT_E_PERMISSION : MEMFIT_E_IO, "%s: %s", path,
                               strerror(err));
        }
    }
    *out = log;
    return MEMFIT_OK;
}

void memfit_logfile_close(memfit_logfile *log)
{
    if (!log)
        return;
    if (log->owned)
        fclose(log->f);
    else
        fflush(log->f);
    memfit_free(log);
}

static double seconds_since(const memfit_logfile *log, uint64_t t_ns)
{
    return t_ns >= log->t0_ns ? (double)(t_ns - log->t0_ns) / 1e9 : 0.0;
}

/* A new record with its type, t and time. */
static json_t *record(const memfit_logfile *log, const char *type, uint64_t t_ns)
{
    json_t *r = json_object();
    if (!r)
        return NULL;
    char when[40];
    mf_format_rfc3339(memfit_wall_ns() - (memfit_now_ns() - t_ns), when, sizeof(when));
    if (!mf_json_set_new(r, "type", json_string(type)) ||
        !mf_json_set_new(r, "t", json_real(seconds_since(log, t_ns))) ||
        !mf_json_set_new(r, "time", json_string(when))) {
        json_decref(r);
        return NULL;
    }
    return r;
}

/* Writes and frees the record (r may be NULL after a failed build). */
static enum memfit_status emit(memfit_logfile *log, json_t *r, bool ok)
{
    if (!r || !ok) {
        json_decref(r);
        return memfit_fail(MEMFIT_E_NOMEM, "out of memory building a log record");
    }
    char *line = json_dumps(r, JSON_COMPACT | JSON_REAL_PRECISION(6));
    json_decref(r);
    if (!line)
        return memfit_fail(MEMFIT_E_NOMEM, "out of memory formatting a log record");
    int rc = fputs(line, log->f);
    memfit_free(line);
    if (rc < 0 || fputc('\n', log->f) == EOF || fflush(log->f) != 0)
        return memfit_fail(MEMFIT_E_IO, "writing the monitor log: %s", strerror(errno));
    return MEMFIT_OK;
}

static bool add_thresholds(json_t *r, const struct memfit_alert_thresholds *t, uint64_t limit)
{
    json_t *th = json_object();
    return mf_json_set_new(r, "thresholds", th) &&
           mf_json_set_new(th, "warning_percent", json_real(t->warning_percent)) &&
           mf_json_set_new(th, "critical_percent", json_real(t->critical_percent)) &&
           mf_json_set_u64(th, "danger_available_bytes", memfit_alert_danger_bytes(t, limit)) &&
           mf_json_set_new(th, "hysteresis_percent", json_real(t->hysteresis_percent));
}

enum memfit_status memfit_logfile_write_start(memfit_logfile *log,
                                              const struct memfit_log_start *start,
                                              const struct memfit_sample *first)
{
    log->t0_ns = first->t_ns;
    json_t *r = record(log, "start", first->t_ns);
    if (!r)
        return emit(log, NULL, false);
    char host[256] = "";
    gethostname(host, sizeof(host) - 1);
    bool ok = mf_json_set_new(r, "v", json_integer(1)) &&
              mf_json_set_new(r, "memfit_version", json_string(memfit_version())) &&
              mf_json_set_new(r, "hostname", json_string(host)) &&
              mf_json_set_new(r, "pid", start->pid ? json_integer(start->pid) : json_null()) &&
              mf_json_set_new(r, "interval_s", json_real(start->interval_s)) &&
              mf_json_set_u64(r, "limit_bytes", first->limit_bytes) &&
              mf_json_set_new(
                  r, "limit_source",
                  json_string(first->limit_source == MEMFIT_LIMIT_CGROUP ? "cgroup" : "memory")) &&
              mf_json_set_new(r, "scope", json_string(memfit_scope_name(first->scope))) &&
              add_thresholds(r, &start->thresholds, first->limit_bytes);
    if (ok && start->command) {
        json_t *cmd = json_array();
        ok = mf_json_set_new(r, "command", cmd);
        for (char *const *a = start->command; ok && *a; a++)
            ok = json_array_append_new(cmd, json_string(*a)) == 0;
    }
    if (ok && first->have_cgroup) {
        json_t *cg = json_object();
        ok = mf_json_set_new(r, "cgroup", cg) &&
             mf_json_set_new(cg, "version", json_integer(first->cgroup.memory_version)) &&
             mf_json_set_new(cg, "path", json_string(first->cgroup.path));
    }
    return emit(log, r, ok);
}

/* A JSON line built in a fixed buffer; `full` makes every later append a no-op. */
struct jline {
    char buf[8192];
    size_t len;
    bool full;
    bool first; /* no comma before the next member */
};

static void put_raw(struct jline *j, const char *text, size_t n)
{
    if (j->full || j->len + n >= sizeof(j->buf)) {
        j->full = true;
        return;
    }
    memcpy(j->buf + j->len, text, n);
    j->len += n;
}

/* `"key":` with the comma the previous member needs. Keys are constants. */
static void put_key(struct jline *j, const char *key)
{
    if (!j->first)
        put_raw(j, ",", 1);
    j->first = false;
    put_raw(j, "\"", 1);
    put_raw(j, key, strlen(key));
    put_raw(j, "\":", 2);
}

static void put_u64(struct jline *j, const char *key, uint64_t v)
{
    put_key(j, key);
    if (v == MEMFIT_SYS_UNKNOWN || v > (uint64_t)INT64_MAX) {
        put_raw(j, "null", 4);
        return;
    }
    char digits[24];
    size_t n = 0;
    do {
        digits[sizeof(digits) - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put_raw(j, digits + sizeof(digits) - n, n);
}

static void put_f64(struct jline *j, const char *key, double v)
{
    put_key(j, key);
    char text[32];
    int n = isfinite(v) ? snprintf(text, sizeof(text), "%.6g", v)
                        : snprintf(text, sizeof(text), "null");
    put_raw(j, text, (size_t)n);
}

/* A string known to need no escaping (level names, fixed words). */
static void put_word(struct jline *j, const char *key, const char *word)
{
    put_key(j, key);
    put_raw(j, "\"", 1);
    put_raw(j, word, strlen(word));
    put_raw(j, "\"", 1);
}

static void open_object(struct jline *j, const char *key)
{
    if (key)
        put_key(j, key);
    else if (!j->first)
        put_raw(j, ",", 1);
    put_raw(j, "{", 1);
    j->first = true;
}

static void close_object(struct jline *j)
{
    put_raw(j, "}", 1);
    j->first = false;
}

static void open_array(struct jline *j, const char *key)
{
    put_key(j, key);
    put_raw(j, "[", 1);
    j->first = true;
}

static void close_array(struct jline *j)
{
    put_raw(j, "]", 1);
    j->first = false;
}

/* Each GPU with its percent, level and every process NVML lists on it (the
 * whole machine's: NVML's pids are the host's, which a monitor in a
 * container could not match with the tree it watches). */
static void put_gpus(struct jline *j, const struct memfit_sample *s)
{
    open_array(j, "gpu");
    for (unsigned i = 0; i < s->gpu.n_devices; i++) {
        const struct memfit_gpu_device *d = &s->gpu.devices[i];
        open_object(j, NULL);
        put_u64(j, "index", d->index);
        put_u64(j, "used_bytes", d->used_bytes);
        put_u64(j, "total_bytes", d->total_bytes);
        put_f64(j, "percent", memfit_gpu_device_percent(d));
        put_word(j, "level", memfit_level_name(s->gpu_level[i]));
        open_array(j, "processes");
        for (unsigned k = 0; k < s->gpu.n_processes; k++) {
            const struct memfit_gpu_process *p = &s->gpu.processes[k];
            if (p->device != d->index)
                continue;
            open_object(j, NULL);
            put_u64(j, "pid", (uint64_t)p->pid);
            put_u64(j, "used_bytes", p->used_bytes);
            close_object(j);
        }
        close_array(j);
        close_object(j);
    }
    close_array(j);
}

static void put_sample_details(struct jline *j, const struct memfit_sample *s)
{
    const struct memfit_meminfo *m = &s->system;
    open_object(j, "system");
    put_u64(j, "total_bytes", m->total_bytes);
    put_u64(j, "available_bytes", m->available_bytes);
    put_u64(j, "free_bytes", m->free_bytes);
    put_u64(j, "cached_bytes", m->cached_bytes);
    put_u64(j, "swap_total_bytes", m->swap_total_bytes);
    put_u64(j, "swap_free_bytes", m->swap_free_bytes);
    close_object(j);
    if (s->have_cgroup) {
        const struct memfit_cgroup *c = &s->cgroup;
        open_object(j, "cgroup");
        put_u64(j, "usage_bytes", c->usage_bytes);
        put_u64(j, "working_set_bytes", c->working_set_bytes);
        put_u64(j, "in_use_bytes", c->in_use_bytes);
        put_u64(j, "limit_bytes", c->limit_bytes);
        put_u64(j, "peak_bytes", c->peak_bytes);
        put_u64(j, "anon_bytes", c->anon_bytes);
        put_u64(j, "file_bytes", c->file_bytes);
        put_u64(j, "inactive_file_bytes", c->inactive_file_bytes);
        put_u64(j, "file_mapped_bytes", c->file_mapped_bytes);
        put_u64(j, "shmem_bytes", c->shmem_bytes);
        put_u64(j, "swap_bytes", c->swap_bytes);
        put_u64(j, "oom_kill", c->events_oom_kill);
        put_u64(j, "oom", c->events_oom);
        put_u64(j, "failcnt", c->failcnt);
        close_object(j);
    }
    if (s->have_process) {
        const struct memfit_proc_mem *p = &s->process;
        open_object(j, "process");
        put_u64(j, "pid", (uint64_t)p->pid);
        put_u64(j, "n_procs", s->n_procs);
        put_u64(j, "rss_bytes", p->rss_bytes);
        put_u64(j, "rss_anon_bytes", p->rss_anon_bytes);
        put_u64(j, "rss_file_bytes", p->rss_file_bytes);
        put_u64(j, "rss_shmem_bytes", p->rss_shmem_bytes);
        put_u64(j, "swap_bytes", p->swap_bytes);
        put_u64(j, "pss_bytes", p->pss_bytes);
        close_object(j);
    }
    if (s->psi.present) {
        open_object(j, "psi");
        put_f64(j, "some_avg10", s->psi.some_avg10);
        put_f64(j, "full_avg10", s->psi.full_avg10);
        put_u64(j, "some_total_us", s->psi.some_total_us);
        put_u64(j, "full_total_us", s->psi.full_total_us);
        close_object(j);
    }
    if (s->have_gpu)
        put_gpus(j, s);
}

enum memfit_status memfit_logfile_write_sample(memfit_logfile *log, const struct memfit_sample *s,
                                               enum memfit_level level)
{
    struct jline j = {.first = true};
    char when[40];
    mf_format_rfc3339(s->wall_ns, when, sizeof(when));
    open_object(&j, NULL);
    put_word(&j, "type", "sample");
    put_f64(&j, "t", seconds_since(log, s->t_ns));
    put_word(&j, "time", when);
    put_u64(&j, "working_set_bytes", s->working_set_bytes);
    put_u64(&j, "in_use_bytes", s->in_use_bytes);
    put_u64(&j, "limit_bytes", s->limit_bytes);
    put_f64(&j, "percent", s->percent);
    put_u64(&j, "available_bytes", s->available_bytes);
    put_word(&j, "scope", memfit_scope_name(s->scope));
    put_u64(&j, "rss_bytes", s->have_process ? s->process.rss_bytes : MEMFIT_SYS_UNKNOWN);
    put_word(&j, "level", memfit_level_name(level));
    put_sample_details(&j, s);
    close_object(&j);
    put_raw(&j, "\n", 1);
    if (j.full)
        return memfit_fail(MEMFIT_E_RANGE, "a monitor sample outgrew its %zu-byte line",
                           sizeof(j.buf));
    if (fwrite(j.buf, 1, j.len, log->f) != j.len || fflush(log->f) != 0)
        return memfit_fail(MEMFIT_E_IO, "writing the monitor log: %s", strerror(errno));
    return MEMFIT_OK;
}

enum memfit_status memfit_logfile_write_level(memfit_logfile *log, const struct memfit_sample *s,
                                              enum memfit_level from, enum memfit_level to)
{
    json_t *r = record(log, "level", s->t_ns);
    if (!r)
        return emit(log, NULL, false);
    bool ok = mf_json_set_new(r, "from", json_string(memfit_level_name(from))) &&
              mf_json_set_new(r, "to", json_string(memfit_level_name(to))) &&
              mf_json_set_new(r, "percent", json_real(s->percent)) &&
              mf_json_set_u64(r, "working_set_bytes", s->working_set_bytes) &&
              mf_json_set_u64(r, "in_use_bytes", s->in_use_bytes) &&
              mf_json_set_u64(r, "limit_bytes", s->limit_bytes) &&
              mf_json_set_new(r, "scope", json_string(memfit_scope_name(s->scope)));
    return emit(log, r, ok);
}

enum memfit_status memfit_logfile_write_gpu_level(memfit_logfile *log,
                                                  const struct memfit_sample *s, unsigned device,
                                                  enum memfit_level from, enum memfit_level to)
{
    if (device >= s->gpu.n_devices)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_logfile_write_gpu_level: no device %u", device);
    const struct memfit_gpu_device *d = &s->gpu.devices[device];
    json_t *r = record(log, "gpu_level", s->t_ns);
    if (!r)
        return emit(log, NULL, false);
    double percent = memfit_gpu_device_percent(d);
    bool ok = mf_json_set_new(r, "index", json_integer(d->index)) &&
              mf_json_set_new(r, "from", json_string(memfit_level_name(from))) &&
              mf_json_set_new(r, "to", json_string(memfit_level_name(to))) &&
              mf_json_set_new(r, "percent", isfinite(percent) ? json_real(percent) : json_null()) &&
              mf_json_set_u64(r, "used_bytes", d->used_bytes) &&
              mf_json_set_u64(r, "total_bytes", d->total_bytes);
    return emit(log, r, ok);
}

enum memfit_status memfit_logfile_write_action(memfit_logfile *log, uint64_t t_ns,
                                               enum memfit_level level, const char *command,
                                               int exit_code)
{
    json_t *r = record(log, "action", t_ns);
    if (!r)
        return emit(log, NULL, false);
    bool ok = mf_json_set_new(r, "level", json_string(memfit_level_name(level))) &&
              mf_json_set_new(r, "command", json_string(command)) &&
              mf_json_set_new(r, "exit_code", json_integer(exit_code));
    return emit(log, r, ok);
}

enum memfit_status memfit_logfile_write_signal(memfit_logfile *log, uint64_t t_ns,
                                               const struct memfit_log_signal *sig)
{
    json_t *r = record(log, "signal", t_ns);
    if (!r)
        return emit(log, NULL, false);
    const char *name = sigabbrev_np(sig->signal);
    bool ok = mf_json_set_new(r, "level", json_string(memfit_level_name(sig->level))) &&
              mf_json_set_new(r, "pid", json_integer(sig->pid)) &&
              mf_json_set_new(r, "signal", json_integer(sig->signal)) &&
              mf_json_set_new(r, "name", name ? json_string(name) : json_null()) &&
              mf_json_set_new(r, "repeat", json_boolean(sig->repeat)) &&
              (!sig->error || mf_json_set_new(r, "error", json_string(sig->error)));
    return emit(log, r, ok);
}

enum memfit_status memfit_logfile_write_oom(memfit_logfile *log, uint64_t t_ns,
                                            uint64_t oom_kill_count)
{
    json_t *r = record(log, "oom", t_ns);
    if (!r)
        return emit(log, NULL, false);
    bool ok = mf_json_set_u64(r, "oom_kill", oom_kill_count) &&
              mf_json_set_new(r, "source", json_string("cgroup"));
    return emit(log, r, ok);
}

enum memfit_status memfit_logfile_write_exit(memfit_logfile *log, uint64_t t_ns,
                                             const struct memfit_log_exit *e)
{
    json_t *r = record(log, "exit", t_ns);
    if (!r)
        return emit(log, NULL, false);
    bool ok =
        mf_json_set_new(r, "pid", json_integer(e->pid)) &&
        mf_json_set_new(r, "exit_code", e->signal ? json_null() : json_integer(e->exit_code)) &&
        mf_json_set_new(r, "signal", e->signal ? json_integer(e->signal) : json_null()) &&
        mf_json_set_new(r, "oom_killed", json_boolean(e->oom_killed)) &&
        mf_json_set_u64(r, "peak_rss_bytes", e->peak_rss_bytes) &&
        mf_json_set_u64(r, "peak_working_set_bytes", e->peak_working_set_bytes) &&
        mf_json_set_new(r, "samples", json_integer((json_int_t)e->samples));
    return emit(log, r, ok);
}

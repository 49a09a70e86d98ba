/*
 * The pressure channel (docs/channel.md): after every sample the monitor
 * rewrites state.json in a private directory whose path the watched command
 * gets in MEMFIT_PRESSURE_FILE, so a program can read how memory stands
 * whenever it likes, without a signal handler.
 *
 * The file is replaced by rename() of a temporary file in the same
 * directory (mf_file_write_atomic), so a reader never sees half of one. It
 * is not fsync'ed: it is
 * read live by another process, never after a crash, and a sync per sample
 * (up to a thousand a second) would cost far more than the state is worth.
 *
 * The step (how much one step of the program takes and gives back) comes
 * from a window of recent in-use values kept twice over in a buffer of 2W
 * entries, so the last W values always lie contiguous, oldest first, for
 * the pure memfit_channel_step_bytes().
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/file.h"
#include "memfit/monitor.h"

#define STATE_NAME "state.json"

struct memfit_channel {
    char dir[PATH_MAX];
    char state_path[PATH_MAX];
    bool made_dir; /* remove the directory (and what is in it) on close */
    double interval_s;
    struct memfit_alert_thresholds thresholds;
    uint64_t seq;
    uint64_t *window; /* 2 * n_window values; see the top of the file */
    size_t n_window;
    size_t pos;    /* where the last value went */
    size_t filled; /* values in the window, up to n_window */
};

size_t memfit_channel_window(double interval_s)
{
    size_t n = MEMFIT_CHANNEL_WINDOW_MIN;
    if (interval_s > 0 && MEMFIT_CHANNEL_WINDOW_S / interval_s > (double)n)
        n = MEMFIT_CHANNEL_WINDOW_S / interval_s >= MEMFIT_CHANNEL_WINDOW_MAX
                ? MEMFIT_CHANNEL_WINDOW_MAX
                : (size_t)ceil(MEMFIT_CHANNEL_WINDOW_S / interval_s);
    return n;
}

uint64_t memfit_channel_step_bytes(const uint64_t *in_use_bytes, size_t n)
{
    uint64_t rise = 0, trough = UINT64_MAX;
    for (size_t i = 0; i < n; i++) {
        uint64_t v = in_use_bytes[i];
        if (v == MEMFIT_SYS_UNKNOWN)
            continue;
        if (v < trough)
            trough = v;
        else if (v - trough > rise)
            rise = v - trough;
    }
    return rise < MEMFIT_CHANNEL_NOISE_BYTES ? 0 : rise;
}

int64_t memfit_channel_headroom_bytes(const struct memfit_alert_thresholds *t,
                                      uint64_t in_use_bytes, uint64_t limit_bytes)
{
    if (in_use_bytes == MEMFIT_SYS_UNKNOWN || limit_bytes == MEMFIT_SYS_UNKNOWN || limit_bytes == 0)
        return 0;
    double room = t->warning_percent / 100.0 * (double)limit_bytes - (double)in_use_bytes;
    if (room >= (double)INT64_MAX)
        return INT64_MAX;
    if (room <= (double)INT64_MIN)
        return INT64_MIN;
    return (int64_t)room;
}

double memfit_channel_batch_factor(enum memfit_level level, uint64_t step_bytes,
                                   int64_t headroom_bytes)
{
    if (step_bytes == 0) {
        switch (level) {
        case MEMFIT_LEVEL_OK:
            return 1.0;
        case MEMFIT_LEVEL_WARNING:
            return 0.5;
        case MEMFIT_LEVEL_CRITICAL:
            return 0.25;
        case MEMFIT_LEVEL_DANGER:
            return 0.125;
        }
        return 1.0;
    }
    double step = (double)step_bytes;
    double f = (step + (double)headroom_bytes) / step;
    if (f < MEMFIT_CHANNEL_FACTOR_MIN)
        f = MEMFIT_CHANNEL_FACTOR_MIN;
    if (f > MEMFIT_CHANNEL_FACTOR_MAX)
        f = MEMFIT_CHANNEL_FACTOR_MAX;
    if (level >= MEMFIT_LEVEL_WARNING && f > MEMFIT_CHANNEL_FACTOR_ALERT)
        f = MEMFIT_CHANNEL_FACTOR_ALERT;
    return f;
}

/* A line being formatted into a fixed buffer; `full` once something did not fit. */
struct text {
    char *buf;
    size_t cap, len;
    bool full;
};

MEMFIT_PRINTF(2, 3) static void add(struct text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = t->full ? 0 : vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= t->cap - t->len)
        t->full = true;
    else
        t->len += (size_t)n;
}

/* `,"key":value` for a size, null when unknown. */
static void add_size(struct text *t, const char *key, uint64_t v)
{
    if (v == MEMFIT_SYS_UNKNOWN || v > (uint64_t)INT64_MAX)
        add(t, ",\"%s\":null", key);
    else
        add(t, ",\"%s\":%llu", key, (unsigned long long)v);
}

size_t memfit_channel_format(const struct memfit_channel_state *st, char *buf, size_t cap)
{
    struct text t = {.buf = buf, .cap = cap};
    add(&t, "{\"v\":1,\"seq\":%llu,\"time\":%.3f,\"interval_s\":%g,\"monitor_pid\":%d",
        (unsigned long long)st->seq, (double)st->wall_ns / 1e9, st->interval_s,
        (int)st->monitor_pid);
    if (st->pid > 0)
        add(&t, ",\"pid\":%d", (int)st->pid);
    else
        add(&t, ",\"pid\":null");
    add(&t, ",\"scope\":\"%s\",\"level\":\"%s\",\"level_since\":%.3f,\"percent\":%.2f",
        memfit_scope_name(st->scope), memfit_level_name(st->level),
        (double)st->level_since_wall_ns / 1e9, isfinite(st->percent) ? st->percent : 0.0);
    add_size(&t, "in_use_bytes", st->in_use_bytes);
    add_size(&t, "limit_bytes", st->limit_bytes);
    add_size(&t, "available_bytes", st->available_bytes);
    add(&t, ",\"headroom_bytes\":%lld", (long long)st->headroom_bytes);
    add_size(&t, "step_bytes", st->step_bytes);
    add(&t, ",\"batch_factor\":%.4g", st->batch_factor);
    if (st->n_gpus) {
        add(&t, ",\"gpu\":[");
        for (unsigned i = 0; i < st->n_gpus; i++) {
            const struct memfit_channel_gpu *g = &st->gpus[i];
            add(&t, "%s{\"index\":%u", i ? "," : "", g->index);
            add_size(&t, "used_bytes", g->used_bytes);
            add_size(&t, "total_bytes", g->total_bytes);
            if (isfinite(g->percent))
                add(&t, ",\"percent\":%.2f", g->percent);
            else
                add(&t, ",\"percent\":null");
            add(&t, ",\"level\":\"%s\"}", memfit_level_name(g->level));
        }
        add(&t, "]");
    }
    add(&t, "}\n");
    return t.full ? 0 : t.len;
}

struct memfit_channel_options memfit_channel_options_default(void)
{
    return (struct memfit_channel_options){
        .dir = NULL,
        .interval_s = 1.0,
        .thresholds = memfit_alert_thresholds_default(),
    };
}

static enum memfit_status io_error(int err, const char *what, const char *path)
{
    return memfit_fail(mf_io_status(err), "%s: %s: %s", path, what, strerror(err));
}

/* Makes (or checks) the directory and fills in the paths. */
static enum memfit_status make_dir(memfit_channel *ch, const char *dir)
{
    if (!dir) {
        const char *tmp = getenv("TMPDIR");
        if (!tmp || !tmp[0])
            tmp = "/tmp";
        if ((size_t)snprintf(ch->dir, sizeof(ch->dir), "%s/memfit-channel-XXXXXX", tmp) >=
            sizeof(ch->dir))
            return memfit_fail(MEMFIT_E_RANGE, "channel directory: $TMPDIR too long: %s", tmp);
        if (!mkdtemp(ch->dir))
            return io_error(errno, "cannot create the channel directory", ch->dir);
        ch->made_dir = true;
    } else {
        if ((size_t)snprintf(ch->dir, sizeof(ch->dir), "%s", dir) >= sizeof(ch->dir))
            return memfit_fail(MEMFIT_E_RANGE, "channel directory path too long: %s", dir);
        if (mkdir(dir, 0700) == 0)
            ch->made_dir = true;
        else if (errno != EEXIST)
            return io_error(errno, "cannot create the channel directory", dir);
        struct stat sb;
        if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
            return memfit_fail(MEMFIT_E_IO, "%s: not a directory", dir);
    }
    /* The path goes into the command's environment: make it absolute. */
    if (ch->dir[0] != '/') {
        char abs[PATH_MAX];
        if (!realpath(ch->dir, abs)) {
            enum memfit_status st = io_error(errno, "cannot resolve", ch->dir);
            if (ch->made_dir)
                rmdir(ch->dir);
            return st;
        }
        memcpy(ch->dir, abs, sizeof(ch->dir));
    }
    if ((size_t)snprintf(ch->state_path, sizeof(ch->state_path), "%s/" STATE_NAME, ch->dir) >=
        sizeof(ch->state_path)) {
        if (ch->made_dir)
            rmdir(ch->dir);
        return memfit_fail(MEMFIT_E_RANGE, "channel directory path too long: %s", ch->dir);
    }
    return MEMFIT_OK;
}

enum memfit_status memfit_channel_open(const struct memfit_channel_options *opts,
                                       memfit_channel **out)
{
    struct memfit_channel_options defaults = memfit_channel_options_default();
    if (!opts)
        opts = &defaults;
    if (!out)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_channel_open: no out");
    memfit_channel *ch = memfit_calloc_in(MEMFIT_ALLOC_MONITOR, 1, sizeof(*ch));
    if (!ch)
        return MEMFIT_E_NOMEM;
    ch->interval_s = opts->interval_s;
    ch->thresholds = opts->thresholds;
    ch->n_window = memfit_channel_window(opts->interval_s);
    ch->window = memfit_calloc_in(MEMFIT_ALLOC_MONITOR, 2 * ch->n_window, sizeof(uint64_t));
    if (!ch->window) {
        memfit_free(ch);
        return MEMFIT_E_NOMEM;
    }
    enum memfit_status st = make_dir(ch, opts->dir);
    if (st != MEMFIT_OK) {
        memfit_free(ch->window);
        memfit_free(ch);
        return st;
    }
    *out = ch;
    return MEMFIT_OK;
}

const char *memfit_channel_dir(const memfit_channel *ch)
{
    return ch->dir;
}

const char *memfit_channel_state_path(const memfit_channel *ch)
{
    return ch->state_path;
}

enum memfit_status memfit_channel_update(memfit_channel *ch, const struct memfit_sample *s,
                                         pid_t pid, enum memfit_level level,
                                         uint64_t level_since_wall_ns,
                                         struct memfit_channel_state *out)
{
    if (s->in_use_bytes != MEMFIT_SYS_UNKNOWN) {
        ch->pos = ch->filled ? (ch->pos + 1) % ch->n_window : 0;
        ch->window[ch->pos] = ch->window[ch->pos + ch->n_window] = s->in_use_bytes;
        if (ch->filled < ch->n_window)
            ch->filled++;
    }
    struct memfit_channel_state st = {
        .seq = ch->seq + 1,
        .wall_ns = s->wall_ns,
        .interval_s = ch->interval_s,
        .monitor_pid = getpid(),
        .pid = pid,
        .scope = s->scope,
        .level = level,
        .level_since_wall_ns = level_since_wall_ns,
        .percent = s->percent,
        .in_use_bytes = s->in_use_bytes,
        .limit_bytes = s->limit_bytes,
        .available_bytes = s->available_bytes,
        .headroom_bytes =
            memfit_channel_headroom_bytes(&ch->thresholds, s->in_use_bytes, s->limit_bytes),
    };
    /* The last `filled` values end at pos + n_window (see the top of the file). */
    const uint64_t *recent = ch->window + ch->pos + ch->n_window + 1 - ch->filled;
    st.step_bytes = memfit_channel_step_bytes(recent, ch->filled);
    st.batch_factor = memfit_channel_batch_factor(level, st.step_bytes, st.headroom_bytes);
    if (s->have_gpu) {
        for (unsigned i = 0; i < s->gpu.n_devices && i < MEMFIT_GPU_MAX_DEVICES; i++) {
            const struct memfit_gpu_device *d = &s->gpu.devices[i];
            st.gpus[st.n_gpus++] = (struct memfit_channel_gpu){
                .index = d->index,
                .used_bytes = d->used_bytes,
                .total_bytes = d->total_bytes,
                .percent = memfit_gpu_device_percent(d),
                .level = s->gpu_level[i],
            };
        }
    }
    char line[4096];
    size_t len = memfit_channel_format(&st, line, sizeof(line));
    if (len == 0)
        return memfit_fail(MEMFIT_E_RANGE, "the channel state outgrew its %zu-byte line",
                           sizeof(line));
    enum memfit_status rc = mf_file_write_atomic(ch->state_path, line, len, 0644, false);
    if (rc != MEMFIT_OK)
        return rc;
    ch->seq = st.seq;
    if (out)
        *out = st;
    return MEMFIT_OK;
}

/* Empties and removes a directory the channel made: state.json, and what
 * `memfit cleanup` and the program left there (plain files only). */
static void remove_dir(const char *path)
{
    DIR *d = opendir(path);
    if (d) {
        int fd = dirfd(d);
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
                unlinkat(fd, e->d_name, 0);
        closedir(d);
    }
    rmdir(path);
}

void memfit_channel_close(memfit_channel *ch)
{
    if (!ch)
        return;
    if (ch->made_dir) {
        remove_dir(ch->dir);
    } else {
        unlink(ch->state_path);
    }
    memfit_free(ch->window);
    memfit_free(ch);
}

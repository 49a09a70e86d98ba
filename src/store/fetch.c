/*
 * memfit_store_fetch: getting one file into the cache.
 *
 * 1. The cache first: a blob under the expected digest, or a ref (by name or
 *    by source) whose blob is there, is returned without any network call.
 *    Offline, that is all there is.
 * 2. Then each source in order, under a lock per source so that processes
 *    and threads pulling the same file download it once; a waiter that got
 *    the lock after someone else looks in the cache again first.
 * 3. A download streams into partial/<sha256 of source>, hashing as it
 *    writes (the digest never needs a second read of what was downloaded).
 *    A partial file left by an earlier attempt or process is resumed with
 *    Range, guarded by If-Range (a strong ETag, or Last-Modified): a 200
 *    answer means the object changed and the download restarts from zero.
 *    The prefix a previous process wrote is hashed once when resuming.
 * 4. Network errors, timeouts (connect, stall) and 5xx/429 answers are
 *    retried with exponential back-off and jitter; 4xx answers and digest
 *    mismatches (the file goes to quarantine/) move on to the next source.
 * 5. A finished file is fsync'ed and renamed to blobs/sha256/<digest>, then
 *    the refs are written (temp + fsync + rename); a crash at any point
 *    leaves the old state or the new one.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "store/internal.h"
#include "store/libs.h"

/* Room kept free on the cache's file system beyond the file itself. */
#define DISK_MARGIN_BYTES (64u << 20)
/* Writeback is started every this many bytes (and waited for one chunk behind). */
#define WRITEBACK_CHUNK (32u << 20)
/* The ring between the receiving and the hashing thread. */
#define HASH_RING_BYTES (4u << 20)
/* A progress line in the log at least this often (and at every tenth of the file). */
#define LOG_PROGRESS_NS (5ull * 1000000000ull)

/* Everything one fetch call needs. */
struct fetch {
    memfit_store *store;
    const struct memfit_fetch_options *opts;
    const int *cancel;
    bool has_expected;
    char expected[MEMFIT_SHA256_HEX_LEN + 1];
    struct mf_aws_credentials creds; /* of the current attempt at an S3 source */
};

/* One source's download, kept across its attempts. */
struct download {
    struct fetch *f;
    const struct mf_source *src;
    struct mf_lock lock;
    char *partial_path; /* partial/<key> */
    char *meta_name;    /* <key>.meta, in partial/ */
    int fd;
    struct mf_hasher hasher; /* of the bytes [0, have) of the file once `hashed` */
    bool hashed;
    uint64_t synced;     /* bytes whose writeback was started (sync_file_range) */
    uint64_t have;       /* bytes in the partial file */
    uint64_t total;      /* MEMFIT_STORE_SIZE_UNKNOWN until known */
    char validator[256]; /* If-Range value: a strong ETag or Last-Modified */
    char etag[256];
    /* the current attempt */
    struct mf_http_request *req;
    bool started, discard;
    enum memfit_status abort_status; /* why a callback stopped the transfer */
    /* progress */
    uint64_t last_report_ns, last_report_bytes;
    double rate;
    /* progress in the log: the file's label, this source's start, the last line */
    char log_name[128];
    uint64_t log_start_ns, log_start_bytes;
    uint64_t log_last_ns, log_next_bytes;   /* the next tenth of the file to log */
    bool log_started;                       /* the current attempt logged its start */
    char digest[MEMFIT_SHA256_HEX_LEN + 1]; /* the result */
    bool created_blob;                      /* finish() moved the file into blobs/ */
};

/* ---- Progress, cancellation, heartbeat ----------------------------------- */

/* What the log calls the file: the ref name, or the last path segment of the source. */
static void log_label(const struct fetch *f, const struct mf_source *src, char *buf, size_t size)
{
    if (f->opts && f->opts->name) {
        mf_redact_into(f->opts->name, buf, size);
        return;
    }
    const char *s = src->display;
    size_t end = strcspn(s, "?#");
    size_t base = 0;
    for (size_t i = 0; i + 1 < end; i++)
        if (s[i] == '/')
            base = i + 1;
    const char *at = src->kind == MF_SOURCE_HF ? memchr(s + base, '@', end - base) : NULL;
    if (at) /* hf://org/repo/path@revision */
        end = (size_t)(at - s);
    snprintf(buf, size, "%.*s", (int)(end - base), s + base);
}

/* The next multiple of a tenth of the file above what we have. */
static void log_next_mark(struct download *d)
{
    if (d->total == MEMFIT_STORE_SIZE_UNKNOWN) {
        d->log_next_bytes = UINT64_MAX;
        return;
    }
    uint64_t step = d->total / 10 ? d->total / 10 : 1;
    d->log_next_bytes = d->have - d->have % step + step;
}

/* The start of one attempt's body (fresh or resumed). */
static void log_start(struct download *d)
{
    char have[32], total[32];
    memfit_format_size(d->have, have, sizeof(have));
    if (d->total != MEMFIT_STORE_SIZE_UNKNOWN)
        memfit_format_size(d->total, total, sizeof(total));
    else
        snprintf(total, sizeof(total), "size unknown");
    if (d->have > 0)
        memfit_log(MEMFIT_LOG_INFO, "fetch %s from %s: resuming at %s of %s", d->log_name,
                   d->src->display, have, total);
    else
        memfit_log(MEMFIT_LOG_INFO, "fetch %s from %s: started (%s)", d->log_name, d->src->display,
                   total);
    d->log_started = true;
    d->log_last_ns = memfit_now_ns();
    log_next_mark(d);
}

static void log_progress(struct download *d, uint64_t now)
{
    char have[32], total[32], rate[32];
    memfit_format_size(d->have, have, sizeof(have));
    memfit_format_size((uint64_t)d->rate, rate, sizeof(rate));
    if (d->total != MEMFIT_STORE_SIZE_UNKNOWN && d->total > 0) {
        unsigned pct = (unsigned)((double)d->have * 100.0 / (double)d->total);
        memfit_log(MEMFIT_LOG_INFO, "fetch %s from %s: %u%% (%s of %s, %s/s)", d->log_name,
                   d->src->display, pct, have, memfit_format_size(d->total, total, sizeof(total)),
                   rate);
    } else {
        memfit_log(MEMFIT_LOG_INFO, "fetch %s from %s: %s (%s/s)", d->log_name, d->src->display,
                   have, rate);
    }
    d->log_last_ns = now;
    log_next_mark(d);
}

static void log_done(struct download *d)
{
    uint64_t ns = memfit_now_ns() - d->log_start_ns;
    uint64_t got = d->have - d->log_start_bytes;
    double s = (double)ns / 1e9;
    char size[32], rate[32];
    memfit_format_size(d->have, size, sizeof(size));
    memfit_format_size(s > 0 ? (uint64_t)((double)got / s) : got, rate, sizeof(rate));
    memfit_log(MEMFIT_LOG_INFO, "fetch %s from %s: done, %s in %.1f s (%s/s)", d->log_name,
               d->src->display, size, s, rate);
}

/* Returns non-zero (and sets abort_status) when the transfer must stop. */
static int tick(struct download *d, bool final)
{
    if (mf_cancelled(d->f->cancel)) {
        d->abort_status = memfit_fail(MEMFIT_E_CANCELLED, "%s: cancelled", d->src->display);
        return 1;
    }
    enum memfit_status st = mf_lock_heartbeat(&d->lock);
    if (st != MEMFIT_OK) {
        d->abort_status = st;
        return 1;
    }
    uint64_t now = memfit_now_ns();
    uint64_t dt = now - d->last_report_ns;
    if (!final && dt < 100000000u)
        return 0;
    if (dt > 0 && d->have >= d->last_report_bytes) {
        double inst = (double)(d->have - d->last_report_bytes) * 1e9 / (double)dt;
        d->rate = d->rate == 0 ? inst : 0.7 * d->rate + 0.3 * inst;
    }
    d->last_report_ns = now;
    d->last_report_bytes = d->have;
    if (!final && d->log_started && d->have < d->total &&
        (now - d->log_last_ns >= LOG_PROGRESS_NS || d->have >= d->log_next_bytes))
        log_progress(d, now);
    const struct memfit_fetch_options *o = d->f->opts;
    if (o && o->progress && o->progress(d->have, d->total, d->rate, o->progress_user) != 0) {
        d->abort_status = memfit_fail(MEMFIT_E_CANCELLED, "%s: cancelled by the progress callback",
                                      d->src->display);
        return 1;
    }
    return 0;
}

static int on_xferinfo(void *user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    return tick(user, false);
}

/* ---- The partial file ---------------------------------------------------- */

static enum memfit_status truncate_partial(struct download *d)
{
    if (ftruncate(d->fd, 0) != 0)
        return memfit_fail(MEMFIT_E_IO, "%s: truncate: %s", d->partial_path, strerror(errno));
    d->have = 0;
    d->synced = 0;
    d->log_start_bytes = 0;
    mf_hasher_drain(&d->hasher);
    mf_sha256_final(&d->hasher.sha, d->digest); /* resets the context */
    d->digest[0] = '\0';
    d->hashed = true;
    d->validator[0] = d->etag[0] = '\0';
    d->total = MEMFIT_STORE_SIZE_UNKNOWN;
    return MEMFIT_OK;
}

static enum memfit_status write_meta(struct download *d)
{
    char *text = memfit_asprintf("validator %s\netag %s\ntotal %llu\nsource %s\n", d->validator,
                                 d->etag, (unsigned long long)d->total, d->src->display);
    if (!text)
        return MEMFIT_E_NOMEM;
    enum memfit_status st = mf_write_atomic(d->f->store->partial, d->meta_name, text, strlen(text));
    memfit_free(text);
    return st;
}

/* Reads what an earlier attempt recorded; a partial file without it restarts. */
static void read_meta(struct download *d)
{
    char *path = memfit_asprintf("%s/%s", d->f->store->partial, d->meta_name);
    char *text = NULL;
    if (path && mf_read_small_file(path, 4096, &text, NULL) == MEMFIT_OK) {
        char *line = text;
        while (line && *line) {
            char *nl = strchr(line, '\n');
            if (nl)
                *nl = '\0';
            if (strncmp(line, "validator ", 10) == 0)
                snprintf(d->validator, sizeof(d->validator), "%s", line + 10);
            else if (strncmp(line, "etag ", 5) == 0)
                snprintf(d->etag, sizeof(d->etag), "%s", line + 5);
            else if (strncmp(line, "total ", 6) == 0)
                d->total = strtoull(line + 6, NULL, 10);
            line = nl ? nl + 1 : NULL;
        }
    }
    memfit_clear_error();
    memfit_free(text);
    memfit_free(path);
}

static void remove_meta(struct download *d)
{
    char *path = memfit_asprintf("%s/%s", d->f->store->partial, d->meta_name);
    if (path)
        unlink(path);
    memfit_free(path);
}

static enum memfit_status check_space(struct download *d, uint64_t need)
{
    struct statvfs vfs;
    if (fstatvfs(d->fd, &vfs) != 0)
        return MEMFIT_OK; /* cannot tell: the write will say */
    uint64_t avail = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize;
    if (need > UINT64_MAX - DISK_MARGIN_BYTES || avail < need + DISK_MARGIN_BYTES) {
        char a[32], b[32];
        char c[32];
        return memfit_fail(MEMFIT_E_NOSPACE,
                           "%s: needs %s more, and the cache keeps %s free, but %s has only %s "
                           "free",
                           d->src->display, memfit_format_size(need, a, sizeof(a)),
                           memfit_format_size(DISK_MARGIN_BYTES, c, sizeof(c)), d->f->store->dir,
                           memfit_format_size(avail, b, sizeof(b)));
    }
    return MEMFIT_OK;
}

static enum memfit_status append(struct download *d, const void *data, size_t len)
{
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t n = pwrite(d->fd, p, left, (off_t)(d->have + (len - left)));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            char sz[32];
            if (errno == ENOSPC || errno == EDQUOT)
                return memfit_fail(MEMFIT_E_NOSPACE,
                                   "%s: no space left in %s after %s (the partial download is "
                                   "kept and resumes next time)",
                                   d->src->display, d->f->store->dir,
                                   memfit_format_size(d->have, sz, sizeof(sz)));
            return memfit_fail(MEMFIT_E_IO, "%s: write: %s", d->partial_path, strerror(errno));
        }
        left -= (size_t)n;
        p += n;
    }
    mf_hasher_feed(&d->hasher, data, len);
    d->have += len;
    if (d->have - d->synced >= WRITEBACK_CHUNK) {
        /* Start writing back what came so far, so the final fsync is short and
         * dirty pages (charged to the container's memory) stay few. */
        sync_file_range(d->fd, (off_t)d->synced, (off_t)(d->have - d->synced),
                        SYNC_FILE_RANGE_WRITE);
        if (d->synced > WRITEBACK_CHUNK)
            sync_file_range(d->fd, 0, (off_t)(d->synced - WRITEBACK_CHUNK),
                            SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                SYNC_FILE_RANGE_WAIT_AFTER);
        d->synced = d->have;
    }
    return MEMFIT_OK;
}

/* ---- One HTTP attempt ------------------------------------------------------ */

/* The first body bytes of a response: decide what they mean for the file. */
static enum memfit_status start_body(struct download *d)
{
    const struct mf_http_meta *m = &d->req->meta;
    long status = m->status;
    curl_easy_getinfo(d->req->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200 && status != 206) {
        d->discard = true; /* an error page: mf_http_result reports the status */
        return MEMFIT_OK;
    }
    enum memfit_status st;
    if (status == 206) {
        if (!m->has_content_range || m->range_start != d->have)
            return memfit_fail(MEMFIT_E_NETWORK,
                               "%s: asked for bytes from %llu, got a different range",
                               d->src->display, (unsigned long long)d->have);
        if (m->range_total != MEMFIT_STORE_SIZE_UNKNOWN)
            d->total = m->range_total;
    } else {
        if (d->have > 0) {
            memfit_log(MEMFIT_LOG_INFO,
                       "%s: the file changed since the partial download; "
                       "starting again",
                       d->src->display);
            if ((st = truncate_partial(d)) != MEMFIT_OK)
                return st;
        }
        d->total = m->content_length;
        /* Weak ETags cannot guard a range: fall back to Last-Modified. */
        const char *v = m->etag[0] && strncmp(m->etag, "W/", 2) != 0 ? m->etag : m->last_modified;
        snprintf(d->validator, sizeof(d->validator), "%s", v);
        snprintf(d->etag, sizeof(d->etag), "%s", m->etag);
        if ((st = write_meta(d)) != MEMFIT_OK)
            return st;
    }
    if (d->total != MEMFIT_STORE_SIZE_UNKNOWN) {
        if (d->total < d->have)
            return memfit_fail(MEMFIT_E_NETWORK, "%s: size %llu is below the %llu bytes we have",
                               d->src->display, (unsigned long long)d->total,
                               (unsigned long long)d->have);
        if ((st = check_space(d, d->total - d->have)) != MEMFIT_OK)
            return st;
    }
    log_start(d);
    return MEMFIT_OK;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *user)
{
    struct download *d = user;
    size_t len = size * nmemb;
    if (!d->started) {
        d->started = true;
        d->abort_status = start_body(d);
        if (d->abort_status != MEMFIT_OK)
            return 0;
    }
    if (d->discard)
        return len;
    if (d->total != MEMFIT_STORE_SIZE_UNKNOWN && len > d->total - d->have) {
        d->abort_status = memfit_fail(MEMFIT_E_NETWORK, "%s: more bytes than the %llu announced",
                                      d->src->display, (unsigned long long)d->total);
        return 0;
    }
    d->abort_status = append(d, data, len);
    return d->abort_status == MEMFIT_OK ? len : 0;
}

static enum memfit_status attempt_http(struct download *d, bool *retryable)
{
    struct fetch *f = d->f;
    enum memfit_status st;
    *retryable = false;
    if (d->have > 0 && !d->validator[0]) {
        /* Nothing can tell us whether the object changed since: start over. */
        if ((st = truncate_partial(d)) != MEMFIT_OK)
            return st;
    }
    if (d->have > 0 && !d->hashed) {
        mf_hasher_drain(&d->hasher);
        st = mf_sha256_fd(&d->hasher.sha, d->fd, d->have, d->partial_path, f->cancel);
        if (st != MEMFIT_OK)
            return st;
        d->hashed = true;
    }
    if (d->have > 0 && d->total != MEMFIT_STORE_SIZE_UNKNOWN && d->have >= d->total) {
        if (d->have == d->total)
            return MEMFIT_OK; /* finished before a crash, not yet moved */
        if ((st = truncate_partial(d)) != MEMFIT_OK)
            return st;
    }
    if (d->src->kind == MF_SOURCE_S3) {
        /* Each attempt asks again: temporary credentials may have been renewed
         * (the cache of aws_remote.c makes this cheap). */
        mf_aws_credentials_clear(&f->creds);
        if ((st = mf_aws_credentials_load(&f->creds)) != MEMFIT_OK) {
            *retryable = st == MEMFIT_E_NETWORK || st == MEMFIT_E_TIMEOUT;
            return st;
        }
    }
    struct mf_http_params params = mf_store_http_params(f->store);
    struct mf_http_request req;
    bool resume = d->have > 0;
    st = mf_http_request_init(&req, d->src, &f->creds, &params, false,
                              resume ? d->have : MEMFIT_STORE_SIZE_UNKNOWN, false,
                              resume ? d->validator : NULL);
    if (st != MEMFIT_OK)
        return st;
    d->req = &req;
    d->started = d->discard = d->log_started = false;
    d->abort_status = MEMFIT_OK;
    CURL *c = req.curl;
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, d);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_xferinfo);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, d);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    CURLcode rc = curl_easy_perform(c);
    if (d->abort_status != MEMFIT_OK) {
        st = d->abort_status;
        /* A wrong range or too many bytes: the next attempt starts clean. */
        *retryable = st == MEMFIT_E_NETWORK;
        if (st == MEMFIT_E_NETWORK && truncate_partial(d) != MEMFIT_OK)
            *retryable = false;
    } else {
        st = mf_http_result(&req, (int)rc, d->src->display, retryable);
        long status = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        if (st != MEMFIT_OK && status == 416 && resume) {
            /* Our range is past the end: the object shrank or changed. */
            memfit_log(MEMFIT_LOG_INFO, "%s: range not satisfiable; starting again",
                       d->src->display);
            *retryable = truncate_partial(d) == MEMFIT_OK;
        } else if (st == MEMFIT_OK && !d->started) {
            d->started = true; /* an empty file: no body callback */
            if ((st = start_body(d)) != MEMFIT_OK)
                *retryable = false;
        }
        if (st == MEMFIT_OK && d->total != MEMFIT_STORE_SIZE_UNKNOWN && d->have != d->total) {
            st = memfit_fail(MEMFIT_E_NETWORK, "%s: connection closed after %llu of %llu bytes",
                             d->src->display, (unsigned long long)d->have,
                             (unsigned long long)d->total);
            *retryable = true;
        }
    }
    d->req = NULL;
    mf_http_request_cleanup(&req);
    return st;
}

/* ---- A local file ---------------------------------------------------------- */

/* A local file's "ETag": its size and modification time, so a changed file is fetched again. */
static void local_version(const struct stat *sb, char *buf, size_t size)
{
    snprintf(buf, size, "local-%llu-%lld.%09ld", (unsigned long long)sb->st_size,
             (long long)sb->st_mtim.tv_sec, (long)sb->st_mtim.tv_nsec);
}

/* True when the ref of a local file still describes the file as it is now. */
static bool local_unchanged(const struct mf_source *src, const struct mf_ref *ref)
{
    struct stat sb;
    char now[128];
    if (stat(src->url, &sb) != 0)
        return true; /* gone: the cached copy is all there is */
    local_version(&sb, now, sizeof(now));
    return ref->etag && strcmp(ref->etag, now) == 0;
}

static enum memfit_status attempt_file(struct download *d)
{
    const char *path = d->src->url;
    int in = open(path, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return memfit_fail(errno == ENOENT ? MEMFIT_E_NOT_FOUND : MEMFIT_E_IO, "%s: %s", path,
                           strerror(errno));
    struct stat sb;
    enum memfit_status st = MEMFIT_OK;
    if (fstat(in, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(in);
        return memfit_fail(MEMFIT_E_IO, "%s: not a regular file", path);
    }
    const size_t chunk = 1u << 20;
    char *buf = memfit_malloc_in(MEMFIT_ALLOC_STORE, chunk);
    if (!buf || (st = truncate_partial(d)) != MEMFIT_OK) {
        close(in);
        memfit_free(buf);
        return buf ? st : MEMFIT_E_NOMEM;
    }
    d->total = (uint64_t)sb.st_size;
    st = check_space(d, d->total);
    if (st == MEMFIT_OK)
        log_start(d);
    while (st == MEMFIT_OK) {
        ssize_t n = read(in, buf, chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            st = memfit_fail(MEMFIT_E_IO, "%s: read: %s", path, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        st = append(d, buf, (size_t)n);
        if (st == MEMFIT_OK && tick(d, false))
            st = d->abort_status;
    }
    d->total = d->have; /* what was there when we read it */
    local_version(&sb, d->etag, sizeof(d->etag));
    close(in);
    memfit_free(buf);
    return st;
}

/* ---- Finishing ------------------------------------------------------------- */

/* Moves a complete partial file into blobs/ (or quarantine/ on a digest mismatch). */
static enum memfit_status finish(struct download *d)
{
    memfit_store *s = d->f->store;
    tick(d, true);
    if (fsync(d->fd) != 0)
        return memfit_fail(MEMFIT_E_IO, "%s: fsync: %s", d->partial_path, strerror(errno));
    mf_hasher_drain(&d->hasher);
    mf_sha256_final(&d->hasher.sha, d->digest);
    d->hashed = false; /* the context was reset */
    if (d->f->has_expected && strcmp(d->digest, d->f->expected) != 0) {
        close(d->fd);
        d->fd = -1;
        remove_meta(d);
        char *kept = NULL;
        enum memfit_status qs =
            mf_quarantine_add(s, d->partial_path, d->digest, d->src->display, &kept);
        if (qs == MEMFIT_E_NOMEM)
            return qs;
        char where[600];
        if (kept)
            snprintf(where, sizeof(where), "kept in %s", kept);
        else
            snprintf(where, sizeof(where), "not kept: %s",
                     qs == MEMFIT_OK ? "over the quarantine's bound" : memfit_last_error());
        memfit_free(kept);
        return memfit_fail(MEMFIT_E_CHECKSUM, "%s: sha256 is %s, expected %s (%s)", d->src->display,
                           d->digest, d->f->expected, where);
    }
    char *blob = mf_blob_path(s, d->digest);
    if (!blob)
        return MEMFIT_E_NOMEM;
    fchmod(d->fd, 0444);
    enum memfit_status st = MEMFIT_OK;
    if (mf_blob_exists(s, d->digest, NULL)) {
        unlink(d->partial_path); /* the same content came from elsewhere meanwhile */
    } else if (rename(d->partial_path, blob) != 0) {
        st = memfit_fail(MEMFIT_E_IO, "%s: rename into the cache: %s", blob, strerror(errno));
    } else {
        d->created_blob = true;
    }
    memfit_free(blob);
    if (st != MEMFIT_OK)
        return st;
    close(d->fd);
    d->fd = -1;
    remove_meta(d);
    if ((st = mf_fsync_dir(s->blobs)) == MEMFIT_OK)
        st = mf_fsync_dir(s->partial);
    if (st == MEMFIT_OK)
        log_done(d);
    return st;
}

/* ---- Retry loop per source ------------------------------------------------- */

struct mf_http_params mf_store_http_params(const memfit_store *store)
{
    struct mf_http_params params = {
        .connect_timeout_ms = store->opts.connect_timeout_ms,
        .stall_timeout_s = store->opts.stall_timeout_s,
        .stall_min_bytes_per_s = store->opts.stall_min_bytes_per_s,
        .ca_bundle = store->ca_bundle,
        .max_recv_bytes_per_s = store->opts.max_download_bytes_per_s,
    };
    return params;
}

unsigned mf_store_backoff_ms(const struct memfit_store_options *o, unsigned attempt)
{
    static _Thread_local uint64_t seed;
    if (seed == 0)
        seed = memfit_now_ns() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)&seed;
    seed ^= seed << 13;
    seed ^= seed >> 7;
    seed ^= seed << 17;
    uint64_t delay = o->backoff_initial_ms;
    for (unsigned i = 1; i < attempt && delay < o->backoff_max_ms; i++)
        delay *= 2;
    if (delay > o->backoff_max_ms)
        delay = o->backoff_max_ms;
    /* Jitter: between half and all of it, so clients that failed together spread out. */
    return (unsigned)(delay / 2 + (delay > 1 ? seed % (delay / 2 + 1) : 0));
}

static bool sleep_with_heartbeat(struct download *d, unsigned ms)
{
    while (ms > 0) {
        unsigned step = ms < 200 ? ms : 200;
        if (!mf_sleep_cancellable(step, d->f->cancel))
            return false;
        if (mf_lock_heartbeat(&d->lock) != MEMFIT_OK)
            return false;
        ms -= step;
    }
    return true;
}

/* True when the cache already answers for this source (checked again once the lock is held). */
static bool cached_for_source(struct fetch *f, const struct mf_source *src, char *digest)
{
    if (f->has_expected && mf_blob_exists(f->store, f->expected, NULL)) {
        memcpy(digest, f->expected, sizeof(f->expected));
        return true;
    }
    struct mf_ref ref;
    if (mf_ref_read(f->store, src->uri, &ref) != MEMFIT_OK) {
        memfit_clear_error();
        return false;
    }
    bool ok = mf_blob_exists(f->store, ref.digest, NULL) &&
              (!f->has_expected || strcmp(ref.digest, f->expected) == 0);
    if (ok)
        memcpy(digest, ref.digest, sizeof(ref.digest));
    mf_ref_clear(&ref);
    return ok;
}

static enum memfit_status open_partial(struct download *d)
{
    d->fd = open(d->partial_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (d->fd < 0)
        return memfit_fail(MEMFIT_E_IO, "%s: %s", d->partial_path, strerror(errno));
    struct stat sb;
    if (fstat(d->fd, &sb) != 0)
        return memfit_fail(MEMFIT_E_IO, "%s: %s", d->partial_path, strerror(errno));
    d->have = (uint64_t)sb.st_size;
    d->hashed = d->have == 0;
    d->total = MEMFIT_STORE_SIZE_UNKNOWN;
    if (d->have > 0 && d->src->kind != MF_SOURCE_FILE)
        read_meta(d);
    return MEMFIT_OK;
}

/*
 * Fetches one source into the cache; on success d->digest names the blob
 * and d->etag the version fetched. from_cache tells that a concurrent
 * fetch delivered it while we waited.
 */
static enum memfit_status fetch_source(struct fetch *f, const struct mf_source *src,
                                       struct download *d, bool *from_cache)
{
    memfit_store *s = f->store;
    char key[MEMFIT_SHA256_HEX_LEN + 1];
    enum memfit_status st = mf_sha256_string(src->display, key);
    if (st != MEMFIT_OK)
        return st;
    d->f = f;
    d->src = src;
    d->fd = -1;
    d->total = MEMFIT_STORE_SIZE_UNKNOWN;
    d->last_report_ns = memfit_now_ns();
    d->partial_path = memfit_asprintf("%s/%s", s->partial, key);
    d->meta_name = memfit_asprintf("%s.meta", key);
    char *lock_path = memfit_asprintf("%s/%s.lock", s->partial, key);
    if (!d->partial_path || !d->meta_name || !lock_path) {
        memfit_free(lock_path);
        return MEMFIT_E_NOMEM;
    }
    if ((st = mf_hasher_start(&d->hasher, HASH_RING_BYTES)) != MEMFIT_OK) {
        memfit_free(lock_path);
        return st;
    }
    struct mf_lock_params lp = {
        .wait_timeout_ms = s->opts.lock_wait_timeout_ms,
        .stale_ms = s->opts.stale_lock_ms,
        .cancel = f->cancel,
    };
    bool waited = false;
    st = mf_lock_acquire(lock_path, &lp, &d->lock, &waited);
    memfit_free(lock_path);
    if (st != MEMFIT_OK)
        return st;
    /* Waited or not: another process may have finished this very download
     * between our first look at the cache and taking the lock. */
    (void)waited;
    if (cached_for_source(f, src, d->digest)) {
        *from_cache = true;
        return MEMFIT_OK;
    }
    if ((st = open_partial(d)) != MEMFIT_OK)
        return st;
    log_label(f, src, d->log_name, sizeof(d->log_name));
    d->log_start_ns = memfit_now_ns();
    d->log_start_bytes = d->have;
    unsigned max_attempts = s->opts.max_attempts ? s->opts.max_attempts : 1;
    for (unsigned attempt = 1;; attempt++) {
        bool retryable = false;
        if (src->kind == MF_SOURCE_FILE)
            st = attempt_file(d);
        else
            st = attempt_http(d, &retryable);
        if (st == MEMFIT_OK) {
            st = finish(d);
            break;
        }
        if (!retryable || attempt >= max_attempts)
            break;
        unsigned ms = mf_store_backoff_ms(&s->opts, attempt);
        memfit_log(MEMFIT_LOG_WARN, "%s (attempt %u of %u; retrying in %u ms)", memfit_last_error(),
                   attempt, max_attempts, ms);
        if (!sleep_with_heartbeat(d, ms)) {
            st = mf_cancelled(f->cancel)
                     ? memfit_fail(MEMFIT_E_CANCELLED, "%s: cancelled", src->display)
                     : memfit_fail(MEMFIT_E_BUSY, "%s: download lock lost", src->display);
            break;
        }
    }
    return st;
}

static void download_cleanup(struct download *d)
{
    if (d->fd >= 0) {
        close(d->fd);
        /* A download that failed before its first byte (refused for space, say)
         * leaves no empty partial file and no .meta behind (the lock is held).
         * Nor does one its caller cancelled with MEMFIT_FETCH_CANCEL_DISCARD:
         * the model it was for has been dropped (ModelMesh's unloadModel
         * after a cancelled loadModel). Any other failure or cancellation
         * (Ctrl-C of a pull) keeps it: the next attempt resumes it. */
        bool discard = d->f->cancel && __atomic_load_n(d->f->cancel, __ATOMIC_RELAXED) ==
                                           MEMFIT_FETCH_CANCEL_DISCARD;
        if ((d->have == 0 || discard) && d->partial_path) {
            unlink(d->partial_path);
            if (d->meta_name)
                remove_meta(d);
        }
    }
    mf_lock_release(&d->lock);
    mf_hasher_stop(&d->hasher);
    memfit_free(d->partial_path);
    memfit_free(d->meta_name);
    d->fd = -1;
    d->partial_path = d->meta_name = NULL;
}

/* ---- Refs and the cache lookup --------------------------------------------- */

/* Records `name` -> digest, keeping what `base` knew (source, etag). */
static enum memfit_status record_ref(memfit_store *s, const char *name, const char *digest,
                                     const char *source, const char *etag)
{
    struct mf_ref ref = {0};
    ref.name = (char *)name;
    ref.source = (char *)source;
    ref.etag = (char *)etag;
    memcpy(ref.digest, digest, sizeof(ref.digest));
    mf_blob_exists(s, digest, &ref.size_bytes);
    ref.last_used_ns = memfit_wall_ns();
    return mf_ref_write(s, &ref);
}

/* Takes back the blob a download just made when no ref could be written for
 * it: no lookup would find it, and it would only take room until evicted
 * (best effort: its path is allocated too). */
static void remove_unnamed_blob(memfit_store *s, const char *digest, enum memfit_status st)
{
    char message[512];
    snprintf(message, sizeof(message), "%s", memfit_last_error());
    char *blob = mf_blob_path(s, digest);
    if (blob)
        unlink(blob);
    memfit_free(blob);
    memfit_fail(st, "%s", message); /* the ref's error is the fetch's */
}

/* Looks in the cache; on a hit writes the digest (and *hit_source: the
 * index of the source whose ref matched, or -1) and refreshes the refs' last use. */
static bool lookup_cached(struct fetch *f, const char *name, const struct mf_source *srcs, size_t n,
                          char *digest, int *hit_source)
{
    memfit_store *s = f->store;
    struct mf_ref ref = {0};
    bool found = false;
    const char *hit_name = NULL;
    if (name && mf_ref_read(s, name, &ref) == MEMFIT_OK) {
        found = mf_blob_exists(s, ref.digest, NULL) &&
                (!f->has_expected || strcmp(ref.digest, f->expected) == 0);
        hit_name = name;
        if (!found)
            mf_ref_clear(&ref);
    }
    for (size_t i = 0; !found && i < n; i++) {
        if (mf_ref_read(s, srcs[i].uri, &ref) != MEMFIT_OK)
            continue;
        found = mf_blob_exists(s, ref.digest, NULL) &&
                (!f->has_expected || strcmp(ref.digest, f->expected) == 0) &&
                (srcs[i].kind != MF_SOURCE_FILE || local_unchanged(&srcs[i], &ref));
        hit_name = srcs[i].uri;
        *hit_source = found ? (int)i : -1;
        if (!found)
            mf_ref_clear(&ref);
    }
    if (!found && f->has_expected && mf_blob_exists(s, f->expected, NULL)) {
        memcpy(ref.digest, f->expected, sizeof(ref.digest));
        found = true;
        hit_name = NULL;
    }
    memfit_clear_error();
    if (!found)
        return false;
    memcpy(digest, ref.digest, sizeof(ref.digest));
    /* Last use feeds LRU eviction; failing to record it is not worth failing the fetch. */
    if (hit_name)
        record_ref(s, hit_name, ref.digest, ref.source, ref.etag);
    if (name && (!hit_name || strcmp(hit_name, name) != 0))
        record_ref(s, name, ref.digest, ref.source ? ref.source : (n ? srcs[0].display : NULL),
                   ref.etag);
    memfit_clear_error();
    mf_ref_clear(&ref);
    return true;
}

/* ---- The entry point --------------------------------------------------------- */

static bool name_is_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 1024)
        return false;
    for (const char *p = name; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return false;
    return true;
}

enum memfit_status memfit_store_fetch(memfit_store *store, const char *const *sources,
                                      size_t n_sources, const struct memfit_fetch_options *opts,
                                      char **out_path)
{
    if (!out_path)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_store_fetch: bad arguments");
    struct memfit_fetch_result r;
    enum memfit_status st = memfit_store_fetch_detailed(store, sources, n_sources, opts, &r);
    if (st != MEMFIT_OK)
        return st;
    *out_path = r.path;
    r.path = NULL;
    memfit_fetch_result_clear(&r);
    return MEMFIT_OK;
}

void memfit_fetch_result_clear(struct memfit_fetch_result *r)
{
    if (!r)
        return;
    memfit_free(r->path);
    memfit_free(r->source);
    memset(r, 0, sizeof(*r));
}

enum memfit_status memfit_store_fetch_detailed(memfit_store *store, const char *const *sources,
                                               size_t n_sources,
                                               const struct memfit_fetch_options *opts,
                                               struct memfit_fetch_result *out)
{
    if (!store || !out || (n_sources > 0 && !sources) || n_sources > 64)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_store_fetch: bad arguments");
    const char *name = opts && opts->name ? opts->name : NULL;
    struct fetch f = {.store = store, .opts = opts, .cancel = opts ? opts->cancel : NULL};
    if (opts && opts->sha256) {
        if (!mf_is_sha256_hex(opts->sha256))
            return memfit_fail(MEMFIT_E_RANGE, "sha256 '%.80s' is not 64 hex digits", opts->sha256);
        for (int i = 0; i < MEMFIT_SHA256_HEX_LEN; i++)
            f.expected[i] = (char)((opts->sha256[i] >= 'A' && opts->sha256[i] <= 'F')
                                       ? opts->sha256[i] - 'A' + 'a'
                                       : opts->sha256[i]);
        f.has_expected = true;
    }
    if (name && !name_is_valid(name))
        return memfit_fail(MEMFIT_E_RANGE, "name must be 1 to 1024 printable bytes");
    if (n_sources == 0 && !name && !f.has_expected)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_store_fetch: no source, name or digest");

    struct mf_source *srcs = NULL;
    if (n_sources > 0) {
        srcs = memfit_calloc_in(MEMFIT_ALLOC_STORE, n_sources, sizeof(*srcs));
        if (!srcs)
            return MEMFIT_E_NOMEM;
    }
    struct mf_source_env env;
    mf_source_env_from_config(&env);
    enum memfit_status st = MEMFIT_OK;
    size_t parsed = 0;
    for (; parsed < n_sources && st == MEMFIT_OK; parsed++)
        st = mf_source_parse(sources[parsed], &env, &srcs[parsed]);
    if (st != MEMFIT_OK) {
        parsed--;
        goto done;
    }

    char digest[MEMFIT_SHA256_HEX_LEN + 1] = {0};
    int used = -1;          /* the source that gave the file */
    bool from_cache = true; /* nothing downloaded */
    if (lookup_cached(&f, name, srcs, n_sources, digest, &used))
        goto found;
    if (store->opts.offline) {
        char shown[300];
        mf_redact_into(name ? name : n_sources ? sources[0] : f.expected, shown, sizeof(shown));
        st = memfit_fail(MEMFIT_E_NOT_FOUND,
                         "%s: not in the cache %s, and offline mode (MEMFIT_OFFLINE) allows no "
                         "download",
                         shown, store->dir);
        goto done;
    }
    if (n_sources == 0) {
        st = memfit_fail(MEMFIT_E_NOT_FOUND, "%s: not in the cache and no source given",
                         name ? name : f.expected);
        goto done;
    }
    st = MEMFIT_E_NOT_FOUND;
    for (size_t i = 0; i < n_sources; i++) {
        struct download d = {0};
        from_cache = false;
        st = fetch_source(&f, &srcs[i], &d, &from_cache);
        if (st == MEMFIT_OK) {
            used = (int)i;
            memcpy(digest, d.digest, sizeof(digest));
            char etag[256];
            snprintf(etag, sizeof(etag), "%s", d.etag);
            if (!from_cache)
                st = record_ref(store, srcs[i].uri, digest, srcs[i].display, etag[0] ? etag : NULL);
            if (st != MEMFIT_OK && d.created_blob)
                remove_unnamed_blob(store, digest, st);
            /* The download lock goes only once the source's ref names the blob:
             * a pull that waited on it then finds the file cached (released
             * before, the waiter found no ref and downloaded it again). */
            download_cleanup(&d);
            if (st == MEMFIT_OK && name)
                st = record_ref(store, name, digest, srcs[i].display, etag[0] ? etag : NULL);
            break;
        }
        download_cleanup(&d);
        if (st == MEMFIT_E_CANCELLED || st == MEMFIT_E_NOSPACE || st == MEMFIT_E_NOMEM)
            break;
        if (i + 1 < n_sources)
            memfit_log(MEMFIT_LOG_WARN, "%s; trying the next source, %s", memfit_last_error(),
                       srcs[i + 1].display);
    }
    if (st != MEMFIT_OK)
        goto done;
found:
    if (store->opts.max_cache_bytes > 0 &&
        mf_store_gc(store, store->opts.max_cache_bytes, digest, false, NULL) != MEMFIT_OK)
        memfit_log(MEMFIT_LOG_WARN, "cache size limit: %s", memfit_last_error());
    char *path = mf_blob_path(store, digest);
    char *source = used >= 0 ? memfit_strdup(srcs[used].display) : NULL;
    uint64_t size = 0;
    if (!path || (used >= 0 && !source)) {
        memfit_free(path);
        memfit_free(source);
        st = MEMFIT_E_NOMEM;
        goto done;
    }
    mf_blob_exists(store, digest, &size);
    *out = (struct memfit_fetch_result){
        .path = path,
        .source = source,
        .source_index = used,
        .size_bytes = size,
        .from_cache = from_cache,
    };
    memcpy(out->digest, digest, sizeof(out->digest));
    st = MEMFIT_OK;
done:
    for (size_t i = 0; i < parsed; i++)
        mf_source_clear(&srcs[i]);
    memfit_free(srcs);
    mf_aws_credentials_clear(&f.creds);
    return st;
}

/* ---- Remote size ------------------------------------------------------------- */

static size_t discard_body(char *data, size_t size, size_t nmemb, void *user)
{
    (void)data, (void)user;
    return size * nmemb;
}

/* One HEAD (or a one-byte range GET) of `src`; *size stays UNKNOWN when not told. */
static enum memfit_status head_once(memfit_store *store, const struct mf_source *src,
                                    const struct mf_aws_credentials *creds, bool range,
                                    uint64_t *size, bool *retryable)
{
    struct mf_http_params params = mf_store_http_params(store);
    struct mf_http_request req;
    enum memfit_status st = mf_http_request_init(&req, src, creds, &params, !range,
                                                 MEMFIT_STORE_SIZE_UNKNOWN, range, NULL);
    if (st != MEMFIT_OK)
        return st;
    curl_easy_setopt(req.curl, CURLOPT_WRITEFUNCTION, discard_body);
    CURLcode rc = curl_easy_perform(req.curl);
    st = mf_http_result(&req, (int)rc, src->display, retryable);
    if (st == MEMFIT_OK) {
        const struct mf_http_meta *m = &req.meta;
        if (m->has_content_range && m->range_total != MEMFIT_STORE_SIZE_UNKNOWN)
            *size = m->range_total;
        else if (m->linked_size != MEMFIT_STORE_SIZE_UNKNOWN)
            *size = m->linked_size;
        else if (m->status == 200 && m->content_length != MEMFIT_STORE_SIZE_UNKNOWN)
            *size = m->content_length;
    }
    mf_http_request_cleanup(&req);
    return st;
}

static enum memfit_status head_remote(memfit_store *store, const struct mf_source *src,
                                      uint64_t *out_size)
{
    struct mf_aws_credentials creds = {0};
    enum memfit_status st = MEMFIT_OK;
    if (src->kind == MF_SOURCE_S3 && (st = mf_aws_credentials_load(&creds)) != MEMFIT_OK)
        return st;
    uint64_t size = MEMFIT_STORE_SIZE_UNKNOWN;
    unsigned max_attempts = store->opts.max_attempts ? store->opts.max_attempts : 1;
    for (int pass = 0; pass < 2 && size == MEMFIT_STORE_SIZE_UNKNOWN; pass++) {
        for (unsigned attempt = 1;; attempt++) {
            bool retryable = false;
            st = head_once(store, src, &creds, pass == 1, &size, &retryable);
            if (st == MEMFIT_OK || !retryable || attempt >= max_attempts)
                break;
            mf_sleep_cancellable(mf_store_backoff_ms(&store->opts, attempt), NULL);
        }
        if (st != MEMFIT_OK)
            break;
    }
    mf_aws_credentials_clear(&creds);
    if (st != MEMFIT_OK)
        return st;
    if (size == MEMFIT_STORE_SIZE_UNKNOWN)
        return memfit_fail(MEMFIT_E_UNSUPPORTED, "%s: the server does not tell the size",
                           src->display);
    *out_size = size;
    return MEMFIT_OK;
}

enum memfit_status memfit_store_head(memfit_store *store, const char *source, uint64_t *out_size)
{
    if (!store || !source || !out_size)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_store_head: NULL argument");
    struct mf_source_env env;
    mf_source_env_from_config(&env);
    struct mf_source src;
    enum memfit_status st = mf_source_parse(source, &env, &src);
    if (st != MEMFIT_OK)
        return st;
    struct stat sb;
    struct mf_ref ref;
    if (src.kind == MF_SOURCE_FILE) {
        if (stat(src.url, &sb) == 0 && S_ISREG(sb.st_mode))
            *out_size = (uint64_t)sb.st_size;
        else
            st = memfit_fail(MEMFIT_E_NOT_FOUND, "%s: no such file", src.display);
    } else if (mf_ref_read(store, src.uri, &ref) == MEMFIT_OK) {
        uint64_t size;
        if (mf_blob_exists(store, ref.digest, &size))
            *out_size = size;
        else if (store->opts.offline)
            st = memfit_fail(MEMFIT_E_NOT_FOUND, "%s: not in the cache (offline)", src.display);
        else
            st = head_remote(store, &src, out_size);
        mf_ref_clear(&ref);
    } else if (store->opts.offline) {
        st = memfit_fail(MEMFIT_E_NOT_FOUND, "%s: not in the cache (offline)", src.display);
    } else {
        st = head_remote(store, &src, out_size);
    }
    mf_source_clear(&src);
    return st;
}

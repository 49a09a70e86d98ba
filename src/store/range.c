/*
 * memfit_store_read_range / memfit_store_read_tail: a few bytes of a source's
 * file without fetching it, so a model's header (GGUF key/values and tensor
 * infos, safetensors' JSON, a zip's central directory) can be read and its
 * memory planned before anything is downloaded.
 *
 * A local file or a cached copy is read with pread; a remote one with one
 * HTTP Range request. A server that ignores Range answers 200 with the
 * whole body: the body callback stops the transfer at its first bytes and
 * the call fails with E_UNSUPPORTED, so a multi-gigabyte file is never
 * pulled in by a "header" read.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/internal.h"
#include "store/libs.h"

/* What one range request asks for and receives. */
struct range_req {
    bool suffix;     /* bytes=-length */
    uint64_t offset; /* bytes=offset-(offset+length-1) when not a suffix */
    size_t length;
    uint8_t *buf;
    size_t got;
    bool ignored; /* the server answered 200: Range not supported */
    bool overflow;
    struct mf_http_request *http;
};

static size_t on_range_body(char *data, size_t size, size_t nmemb, void *user)
{
    struct range_req *r = user;
    size_t n = size * nmemb;
    if (r->http->meta.status != 206) {
        /* The whole file is coming (or an error page): read none of it. */
        r->ignored = r->http->meta.status == 200;
        return r->ignored ? 0 : n;
    }
    if (n > r->length - r->got) {
        r->overflow = true;
        return 0;
    }
    memcpy(r->buf + r->got, data, n);
    r->got += n;
    return n;
}

static enum memfit_status range_once(memfit_store *store, const struct mf_source *src,
                                     const struct mf_aws_credentials *creds, struct range_req *r,
                                     uint64_t *start, uint64_t *total, bool *retryable)
{
    struct mf_http_params params = mf_store_http_params(store);
    struct mf_http_request req;
    enum memfit_status st = mf_http_request_init(&req, src, creds, &params, false,
                                                 MEMFIT_STORE_SIZE_UNKNOWN, false, NULL);
    if (st != MEMFIT_OK)
        return st;
    char range[64];
    if (r->suffix)
        snprintf(range, sizeof(range), "-%zu", r->length);
    else
        snprintf(range, sizeof(range), "%llu-%llu", (unsigned long long)r->offset,
                 (unsigned long long)(r->offset + r->length - 1));
    r->got = 0;
    r->ignored = r->overflow = false;
    r->http = &req;
    curl_easy_setopt(req.curl, CURLOPT_RANGE, range);
    curl_easy_setopt(req.curl, CURLOPT_WRITEFUNCTION, on_range_body);
    curl_easy_setopt(req.curl, CURLOPT_WRITEDATA, r);
    CURLcode rc = curl_easy_perform(req.curl);
    const struct mf_http_meta *m = &req.meta;
    *retryable = false;
    if (r->ignored || (rc == CURLE_OK && m->status == 200)) {
        st = memfit_fail(MEMFIT_E_UNSUPPORTED,
                         "%s: the server ignores Range requests (HTTP 200 for bytes=%s)",
                         src->display, range);
    } else if (m->status == 416) {
        st = memfit_fail(MEMFIT_E_RANGE, "%s: bytes=%s is beyond the end of the file (HTTP 416)",
                         src->display, range);
    } else if (r->overflow) {
        st = memfit_fail(MEMFIT_E_NETWORK, "%s: more than the %zu bytes asked for (bytes=%s)",
                         src->display, r->length, range);
    } else if ((st = mf_http_result(&req, (int)rc, src->display, retryable)) == MEMFIT_OK) {
        if (!m->has_content_range)
            st = memfit_fail(MEMFIT_E_UNSUPPORTED, "%s: HTTP 206 without Content-Range",
                             src->display);
        else if (m->range_end - m->range_start + 1 != r->got ||
                 (!r->suffix && m->range_start != r->offset))
            st = memfit_fail(MEMFIT_E_NETWORK,
                             "%s: asked bytes=%s, got %zu bytes for %llu-%llu (a cut transfer?)",
                             src->display, range, r->got, (unsigned long long)m->range_start,
                             (unsigned long long)m->range_end);
        else {
            *start = m->range_start;
            *total = m->range_total;
        }
        *retryable = st == MEMFIT_E_NETWORK;
    }
    mf_http_request_cleanup(&req);
    return st;
}

static enum memfit_status range_remote(memfit_store *store, const struct mf_source *src,
                                       struct range_req *r, uint64_t *start, uint64_t *total)
{
    struct mf_aws_credentials creds = {0};
    enum memfit_status st = MEMFIT_OK;
    if (src->kind == MF_SOURCE_S3 && (st = mf_aws_credentials_load(&creds)) != MEMFIT_OK)
        return st;
    unsigned max_attempts = store->opts.max_attempts ? store->opts.max_attempts : 1;
    for (unsigned attempt = 1;; attempt++) {
        bool retryable = false;
        st = range_once(store, src, &creds, r, start, total, &retryable);
        if (st == MEMFIT_OK || !retryable || attempt >= max_attempts)
            break;
        mf_sleep_cancellable(mf_store_backoff_ms(&store->opts, attempt), NULL);
    }
    mf_aws_credentials_clear(&creds);
    return st;
}

/* pread of [start, start + length) of a local file (or the cached copy). */
static enum memfit_status range_local(const char *path, const char *display, struct range_req *r,
                                      uint64_t *start, uint64_t *total)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return memfit_fail(errno == ENOENT ? MEMFIT_E_NOT_FOUND : MEMFIT_E_IO, "%s: %s", display,
                           strerror(errno));
    struct stat sb;
    enum memfit_status st = MEMFIT_OK;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = memfit_fail(MEMFIT_E_IO, "%s: not a regular file", display);
        goto out;
    }
    uint64_t size = (uint64_t)sb.st_size;
    uint64_t from = r->suffix ? (size > r->length ? size - r->length : 0) : r->offset;
    if (from >= size) {
        st = memfit_fail(MEMFIT_E_RANGE, "%s: offset %llu is at or beyond the file size %llu",
                         display, (unsigned long long)from, (unsigned long long)size);
        goto out;
    }
    size_t want = size - from < r->length ? (size_t)(size - from) : r->length;
    size_t got = 0;
    while (got < want) {
        ssize_t n = pread(fd, r->buf + got, want - got, (off_t)(from + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            st = memfit_fail(MEMFIT_E_IO, "%s: read at %llu: %s", display,
                             (unsigned long long)(from + got),
                             n < 0 ? strerror(errno) : "unexpected end of file");
            goto out;
        }
        got += (size_t)n;
    }
    r->got = got;
    *start = from;
    *total = size;
out:
    close(fd);
    return st;
}

static enum memfit_status read_range(memfit_store *store, const char *source, struct range_req *r,
                                     size_t *out_got, uint64_t *out_offset, uint64_t *out_size)
{
    if (!store || !source || !r->buf || !out_got || r->length == 0)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_store_read_range: NULL argument or length 0");
    if (!r->suffix && r->offset > UINT64_MAX - r->length)
        return memfit_fail(MEMFIT_E_RANGE, "%s: range at %llu of %zu bytes overflows", source,
                           (unsigned long long)r->offset, r->length);
    struct mf_source_env env;
    mf_source_env_from_config(&env);
    struct mf_source src;
    enum memfit_status st = mf_source_parse(source, &env, &src);
    if (st != MEMFIT_OK)
        return st;
    uint64_t start = 0, total = MEMFIT_STORE_SIZE_UNKNOWN;
    /* A source fetched before is read from its cached copy. */
    char *blob = NULL;
    struct mf_ref ref;
    if (src.kind != MF_SOURCE_FILE && mf_ref_read(store, src.uri, &ref) == MEMFIT_OK) {
        if (mf_blob_exists(store, ref.digest, NULL) && !(blob = mf_blob_path(store, ref.digest)))
            st = MEMFIT_E_NOMEM;
        mf_ref_clear(&ref);
    }
    memfit_clear_error();
    if (st == MEMFIT_OK && src.kind == MF_SOURCE_FILE)
        st = range_local(src.url, src.display, r, &start, &total);
    else if (st == MEMFIT_OK && blob)
        st = range_local(blob, src.display, r, &start, &total);
    else if (st == MEMFIT_OK && store->opts.offline)
        st = memfit_fail(MEMFIT_E_NOT_FOUND, "%s: not in the cache (offline)", src.display);
    else if (st == MEMFIT_OK)
        st = range_remote(store, &src, r, &start, &total);
    memfit_free(blob);
    mf_source_clear(&src);
    if (st != MEMFIT_OK)
        return st;
    *out_got = r->got;
    if (out_offset)
        *out_offset = start;
    if (out_size)
        *out_size = total;
    return MEMFIT_OK;
}

enum memfit_status memfit_store_read_range(memfit_store *store, const char *source, uint64_t offset,
                                           size_t length, void *buf, size_t *out_got,
                                           uint64_t *out_file_size)
{
    struct range_req r = {.offset = offset, .length = length, .buf = buf};
    return read_range(store, source, &r, out_got, NULL, out_file_size);
}

enum memfit_status memfit_store_read_tail(memfit_store *store, const char *source, size_t length,
                                          void *buf, size_t *out_got, uint64_t *out_offset,
                                          uint64_t *out_file_size)
{
    struct range_req r = {.suffix = true, .length = length, .buf = buf};
    return read_range(store, source, &r, out_got, out_offset, out_file_size);
}

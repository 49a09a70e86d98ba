/*
 * HTTP(S) requests of the store through libcurl: TLS verification (with an
 * extra CA bundle beside the system one), connect and stall timeouts,
 * redirects, SigV4 signing for S3 (curl's CURLOPT_AWS_SIGV4; the session
 * token and payload hash are headers we add, which curl then signs), a
 * bearer token for the Hugging Face Hub, and parsing of the response headers
 * a resumable download needs (Content-Length, Content-Range, ETag,
 * Last-Modified).
 */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/alloc.h"
#include "store/internal.h"
#include "store/libs.h"

/* SHA-256 of an empty body: GET and HEAD requests carry no payload. */
#define EMPTY_PAYLOAD_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_OK;

static void global_init(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

enum memfit_status mf_http_global_init(void)
{
    enum memfit_status loaded = mf_store_load_curl();
    if (loaded != MEMFIT_OK)
        return loaded;
    pthread_once(&global_once, global_init);
    if (global_rc != CURLE_OK)
        return memfit_fail(MEMFIT_E_NETWORK, "libcurl initialisation failed: %s",
                           curl_easy_strerror(global_rc));
    return MEMFIT_OK;
}

/* A decimal number filling [s, e) exactly. */
static bool parse_u64(const char *s, const char *e, uint64_t *out)
{
    if (s == e || e - s > 20)
        return false;
    uint64_t v = 0;
    for (; s < e; s++) {
        if (!isdigit((unsigned char)*s))
            return false;
        uint64_t d = (uint64_t)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* "bytes START-END/TOTAL", "bytes START-END/(star)" or "bytes (star)/TOTAL". */
static void parse_content_range(const char *s, const char *e, struct mf_http_meta *m)
{
    if (e - s < 6 || strncasecmp(s, "bytes ", 6) != 0)
        return;
    s += 6;
    const char *slash = memchr(s, '/', (size_t)(e - s));
    if (!slash)
        return;
    uint64_t total = MEMFIT_STORE_SIZE_UNKNOWN;
    if (!(slash + 1 < e && slash[1] == '*' && slash + 2 == e) && !parse_u64(slash + 1, e, &total))
        return;
    m->range_total = total;
    const char *dash = memchr(s, '-', (size_t)(slash - s));
    uint64_t a, b;
    if (dash && parse_u64(s, dash, &a) && parse_u64(dash + 1, slash, &b) && a <= b) {
        m->range_start = a;
        m->range_end = b;
        m->has_content_range = true;
    }
}

static void copy_value(char *dst, size_t size, const char *s, const char *e)
{
    /* A validator that does not fit is useless (a cut ETag never matches): drop it. */
    size_t n = (size_t)(e - s);
    if (n >= size) {
        dst[0] = '\0';
        return;
    }
    memcpy(dst, s, n);
    dst[n] = '\0';
}

static size_t on_header(char *data, size_t size, size_t nitems, void *user)
{
    struct mf_http_request *req = user;
    struct mf_http_meta *m = &req->meta;
    size_t len = size * nitems;
    const char *s = data, *e = data + len;
    while (e > s && (e[-1] == '\r' || e[-1] == '\n'))
        e--;
    if (e - s >= 5 && strncmp(s, "HTTP/", 5) == 0) {
        /* A new response (after a redirect or 100 Continue): forget the last. */
        memset(m, 0, sizeof(*m));
        m->content_length = MEMFIT_STORE_SIZE_UNKNOWN;
        m->linked_size = MEMFIT_STORE_SIZE_UNKNOWN;
        m->range_total = MEMFIT_STORE_SIZE_UNKNOWN;
        const char *sp = memchr(s, ' ', (size_t)(e - s));
        uint64_t code;
        if (sp && e - sp >= 4 && parse_u64(sp + 1, sp + 4, &code))
            m->status = (long)code;
        return len;
    }
    const char *colon = memchr(s, ':', (size_t)(e - s));
    if (!colon)
        return len;
    const char *v = colon + 1;
    while (v < e && (*v == ' ' || *v == '\t'))
        v++;
    const char *ve = e;
    while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
        ve--;
    size_t n = (size_t)(colon - s);
#define IS(name) (n == sizeof(name) - 1 && strncasecmp(s, name, n) == 0)
    if (IS("content-length")) {
        if (!parse_u64(v, ve, &m->content_length))
            m->content_length = MEMFIT_STORE_SIZE_UNKNOWN;
    } else if (IS("x-linked-size")) {
        if (!parse_u64(v, ve, &m->linked_size))
            m->linked_size = MEMFIT_STORE_SIZE_UNKNOWN;
    } else if (IS("etag")) {
        copy_value(m->etag, sizeof(m->etag), v, ve);
    } else if (IS("last-modified")) {
        copy_value(m->last_modified, sizeof(m->last_modified), v, ve);
    } else if (IS("content-range")) {
        parse_content_range(v, ve, m);
    }
#undef IS
    return len;
}

static bool add_header(struct mf_http_request *req, const char *line)
{
    struct curl_slist *l = curl_slist_append(req->headers, line);
    if (!l)
        return false;
    req->headers = l;
    return true;
}

static void wipe_slist(struct curl_slist *l)
{
    for (; l; l = l->next)
        explicit_bzero(l->data, strlen(l->data));
}

enum memfit_status mf_http_request_init(struct mf_http_request *req, const struct mf_source *src,
                                        const struct mf_aws_credentials *creds,
                                        const struct mf_http_params *params, bool head,
                                        uint64_t range_from, bool range_one, const char *if_range)
{
    enum memfit_status st = mf_http_global_init();
    if (st != MEMFIT_OK)
        return st;
    memset(req, 0, sizeof(*req));
    req->meta.content_length = MEMFIT_STORE_SIZE_UNKNOWN;
    req->meta.linked_size = MEMFIT_STORE_SIZE_UNKNOWN;
    req->meta.range_total = MEMFIT_STORE_SIZE_UNKNOWN;
    CURL *c = curl_easy_init();
    if (!c)
        return memfit_fail(MEMFIT_E_NOMEM, "out of memory creating an HTTP handle");
    req->curl = c;
    char line[8192];
    bool ok = true;
    ok = ok && curl_easy_setopt(c, CURLOPT_URL, src->url) == CURLE_OK;
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, req->errbuf);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, req);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "memfit/" MEMFIT_VERSION_STRING);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 256L * 1024L);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    if (params->ca_bundle && params->ca_bundle[0]) {
        /* An extra CA file; the system's hashed directory stays trusted too. */
        ok = ok && curl_easy_setopt(c, CURLOPT_CAINFO, params->ca_bundle) == CURLE_OK;
        if (access("/etc/ssl/certs", R_OK) == 0)
            curl_easy_setopt(c, CURLOPT_CAPATH, "/etc/ssl/certs");
    }
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)params->connect_timeout_ms);
    if (params->stall_timeout_s > 0) {
        /* A cap below the stall threshold must not read as a stall. */
        uint64_t low = params->stall_min_bytes_per_s;
        if (params->max_recv_bytes_per_s > 0 && params->max_recv_bytes_per_s / 2 < low)
            low = params->max_recv_bytes_per_s / 2 ? params->max_recv_bytes_per_s / 2 : 1;
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, (long)low);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, (long)params->stall_timeout_s);
    }
    if (params->max_recv_bytes_per_s > 0) {
        /* libcurl reads up to 100 buffers in a row before it looks at the cap: with
         * buffers of 1/256 of a second's worth, a burst stays under half a second. */
        uint64_t buf = params->max_recv_bytes_per_s / 256;
        buf = buf < 16384 ? 16384 : buf > 262144 ? 262144 : buf;
        curl_easy_setopt(c, CURLOPT_BUFFERSIZE, (long)buf);
        curl_easy_setopt(c, CURLOPT_MAX_RECV_SPEED_LARGE, (curl_off_t)params->max_recv_bytes_per_s);
    }
    if (head)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    if (range_one) {
        curl_easy_setopt(c, CURLOPT_RANGE, "0-0");
    } else if (range_from != MEMFIT_STORE_SIZE_UNKNOWN) {
        char range[32];
        snprintf(range, sizeof(range), "%llu-", (unsigned long long)range_from);
        curl_easy_setopt(c, CURLOPT_RANGE, range);
    }
    if (if_range && if_range[0]) {
        snprintf(line, sizeof(line), "If-Range: %s", if_range);
        ok = ok && add_header(req, line);
    }
    if (src->kind == MF_SOURCE_S3 && creds && creds->access_key) {
        /* Signed requests are not followed anywhere else. */
        snprintf(line, sizeof(line), "aws:amz:%s:s3", src->region);
        ok = ok && curl_easy_setopt(c, CURLOPT_AWS_SIGV4, line) == CURLE_OK;
        ok = ok && curl_easy_setopt(c, CURLOPT_USERNAME, creds->access_key) == CURLE_OK;
        ok = ok && curl_easy_setopt(c, CURLOPT_PASSWORD, creds->secret_key) == CURLE_OK;
        ok = ok && add_header(req, "x-amz-content-sha256: " EMPTY_PAYLOAD_SHA256);
        if (creds->session_token) {
            int n = snprintf(line, sizeof(line), "x-amz-security-token: %s", creds->session_token);
            ok = ok && n > 0 && (size_t)n < sizeof(line) && add_header(req, line);
        }
    } else {
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    }
    char *token = NULL;
    if (src->kind == MF_SOURCE_HF && (st = mf_hf_token_load(&token)) != MEMFIT_OK) {
        mf_http_request_cleanup(req);
        return st;
    }
    if (token) {
        /* curl drops a custom Authorization header on a redirect to another
         * host, so the token never reaches the CDN. */
        int n = snprintf(line, sizeof(line), "Authorization: Bearer %s", token);
        ok = ok && n > 0 && (size_t)n < sizeof(line) && add_header(req, line);
        explicit_bzero(token, strlen(token));
        memfit_free(token);
    }
    explicit_bzero(line, sizeof(line));
    if (req->headers)
        ok = ok && curl_easy_setopt(c, CURLOPT_HTTPHEADER, req->headers) == CURLE_OK;
    if (!ok) {
        mf_http_request_cleanup(req);
        return memfit_fail(MEMFIT_E_NOMEM, "%s: out of memory preparing the request", src->display);
    }
    return MEMFIT_OK;
}

enum memfit_status mf_hf_token_load(char **out)
{
    *out = NULL;
    const char *token = memfit_config_get("HF_TOKEN");
    if (token && token[0]) {
        if (!mf_token_is_clean(token, strlen(token)))
            return memfit_fail(MEMFIT_E_FORMAT, "HF_TOKEN holds a control character");
        return (*out = memfit_strdup(token)) ? MEMFIT_OK : MEMFIT_E_NOMEM;
    }
    /* Where `huggingface-cli login` keeps it: HF_TOKEN_PATH, else $HF_HOME/token,
     * HF_HOME defaulting to $XDG_CACHE_HOME/huggingface, then ~/.cache/huggingface. */
    const char *path = memfit_config_get("HF_TOKEN_PATH");
    const char *hf_home = memfit_config_get("HF_HOME");
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    char *owned = NULL;
    if (path && path[0])
        owned = memfit_strdup(path);
    else if (hf_home && hf_home[0])
        owned = memfit_asprintf("%s/token", hf_home);
    else if (xdg && xdg[0])
        owned = memfit_asprintf("%s/huggingface/token", xdg);
    else if (home && home[0])
        owned = memfit_asprintf("%s/.cache/huggingface/token", home);
    else
        return MEMFIT_OK;
    if (!owned)
        return MEMFIT_E_NOMEM;
    enum memfit_status st = MEMFIT_OK;
    if (access(owned, F_OK) == 0)
        st = mf_read_token_file(owned, "Hugging Face token file", out);
    memfit_free(owned);
    return st;
}

void mf_http_request_cleanup(struct mf_http_request *req)
{
    if (!req)
        return;
    if (req->curl)
        curl_easy_cleanup(req->curl);
    wipe_slist(req->headers);
    curl_slist_free_all(req->headers);
    req->curl = NULL;
    req->headers = NULL;
}

enum memfit_status mf_http_result(struct mf_http_request *req, int curl_code, const char *display,
                                  bool *retryable)
{
    CURLcode code = (CURLcode)curl_code;
    char detail[300];
    mf_redact_into(req->errbuf[0] ? req->errbuf : curl_easy_strerror(code), detail, sizeof(detail));
    *retryable = false;
    if (code == CURLE_OK) {
        long status = req->meta.status;
        curl_easy_getinfo(req->curl, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 200 && status < 300)
            return MEMFIT_OK;
        if (status == 404 || status == 410)
            return memfit_fail(MEMFIT_E_NOT_FOUND, "%s: HTTP %ld (not found)", display, status);
        if (status == 401 || status == 403)
            return memfit_fail(MEMFIT_E_PERMISSION, "%s: HTTP %ld (access denied; check %s)",
                               display, status,
                               strncmp(display, "s3:", 3) == 0   ? "the AWS credentials"
                               : strncmp(display, "hf:", 3) == 0 ? "HF_TOKEN or the token file"
                                                                 : "the URL");
        *retryable = status == 408 || status == 425 || status == 429 || status >= 500;
        return memfit_fail(MEMFIT_E_NETWORK, "%s: HTTP %ld", display, status);
    }
    switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
        *retryable = true;
        return memfit_fail(MEMFIT_E_TIMEOUT, "%s: timed out: %s", display, detail);
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        return memfit_fail(MEMFIT_E_NETWORK, "%s: TLS: %s (MEMFIT_CA_BUNDLE adds a CA file)",
                           display, detail);
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_TOO_MANY_REDIRECTS:
    case CURLE_LOGIN_DENIED:
        return memfit_fail(MEMFIT_E_NETWORK, "%s: %s", display, detail);
    case CURLE_OUT_OF_MEMORY:
        return memfit_fail(MEMFIT_E_NOMEM, "%s: %s", display, detail);
    case CURLE_ABORTED_BY_CALLBACK:
        return memfit_fail(MEMFIT_E_CANCELLED, "%s: cancelled", display);
    default:
        *retryable = true;
        return memfit_fail(MEMFIT_E_NETWORK, "%s: %s", display, detail);
    }
}

/*
 * Temporary AWS credentials fetched over HTTP: EKS IRSA's web identity
 * (STS AssumeRoleWithWebIdentity with the token file Kubernetes projects)
 * and the container endpoint of ECS task roles and EKS Pod Identity. They
 * expire, so they are kept in one process-wide cache and fetched again a few
 * minutes before Expiration: a long-running `memfit serve` never signs with
 * expired keys, and its threads share one fetch. Requests are short
 * (2 s to connect, 5 s in all) and every failure names the endpoint and the
 * setting it came from. The answers are parsed strictly: an element or field
 * missing, twice, or with control characters is an error, never a guess.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/json.h"
#include "store/internal.h"
#include "store/libs.h"

#define CONNECT_TIMEOUT_MS 2000L
#define TOTAL_TIMEOUT_MS   5000L
#define MAX_ANSWER_BYTES   (64 * 1024)
/* Credentials without an Expiration are fetched again after this long. */
#define NO_EXPIRY_REFETCH_S 900
#define ECS_HOST            "http://169.254.170.2"
#define STS_VERSION         "2011-06-15"

static bool set(const char *v)
{
    return v && v[0];
}

static void wipe_free(char *secret, size_t len)
{
    if (!secret)
        return;
    explicit_bzero(secret, len);
    memfit_free(secret);
}

/* ---- Times ----------------------------------------------------------------- */

/* Exactly `n` digits at *p, advancing it. */
static bool digits(const char **p, const char *end, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++, (*p)++) {
        if (*p >= end || !isdigit((unsigned char)**p))
            return false;
        v = v * 10 + (**p - '0');
    }
    *out = v;
    return true;
}

static bool expect(const char **p, const char *end, char c)
{
    if (*p >= end || **p != c)
        return false;
    (*p)++;
    return true;
}

bool mf_aws_parse_time(const char *text, size_t len, int64_t *out_s)
{
    const char *p = text, *end = text + len;
    struct tm tm = {0};
    int y, mo, d, h, mi, s;
    if (!(digits(&p, end, 4, &y) && expect(&p, end, '-') && digits(&p, end, 2, &mo) &&
          expect(&p, end, '-') && digits(&p, end, 2, &d) && expect(&p, end, 'T') &&
          digits(&p, end, 2, &h) && expect(&p, end, ':') && digits(&p, end, 2, &mi) &&
          expect(&p, end, ':') && digits(&p, end, 2, &s)))
        return false;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60)
        return false;
    if (p < end && *p == '.') {
        const char *f = ++p;
        while (p < end && isdigit((unsigned char)*p))
            p++;
        if (p == f || p - f > 9)
            return false;
    }
    int offset_s = 0;
    if (p < end && (*p == '+' || *p == '-')) {
        int sign = *p++ == '-' ? -1 : 1, oh, om;
        if (!(digits(&p, end, 2, &oh) && expect(&p, end, ':') && digits(&p, end, 2, &om)) ||
            oh > 23 || om > 59)
            return false;
        offset_s = sign * (oh * 3600 + om * 60);
    } else if (!expect(&p, end, 'Z')) {
        return false;
    }
    if (p != end)
        return false;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = s;
    /* -1 is also 1969-12-31T23:59:59Z: only errno tells an overflow. */
    errno = 0;
    time_t t = timegm(&tm);
    if (t == (time_t)-1 && errno)
        return false;
    *out_s = (int64_t)t - offset_s;
    return true;
}

/* ---- The STS answer (XML) ------------------------------------------------------ */

/* The content of the one <name>...</name> in [s, e) (in *vs, *ve), or false
 * with a reason; a `leaf` holds text only. */
static bool xml_element(const char *s, const char *e, const char *name, bool leaf, const char **vs,
                        const char **ve, const char **why)
{
    char open[64], close[64];
    snprintf(open, sizeof(open), "<%s>", name);
    snprintf(close, sizeof(close), "</%s>", name);
    size_t no = strlen(open), nc = strlen(close);
    const char *a = memmem(s, (size_t)(e - s), open, no);
    if (!a)
        return *why = "missing", false;
    a += no;
    const char *b = memmem(a, (size_t)(e - a), close, nc);
    if (!b)
        return *why = "not closed", false;
    if (memmem(b + nc, (size_t)(e - b - nc), open, no))
        return *why = "given twice", false;
    if (leaf && memchr(a, '<', (size_t)(b - a)))
        return *why = "not plain text", false;
    *vs = a;
    *ve = b;
    return true;
}

/* The element's text with XML's five predefined entities decoded; NULL with
 * *why on a bad character or entity, or on E_NOMEM (then *why is NULL). */
static char *xml_text(const char *s, const char *e, const char **why)
{
    while (s < e && isspace((unsigned char)*s))
        s++;
    while (e > s && isspace((unsigned char)e[-1]))
        e--;
    if (s == e)
        return *why = "empty", NULL;
    char *out = memfit_malloc_in(MEMFIT_ALLOC_STORE, (size_t)(e - s) + 1);
    if (!out)
        return *why = NULL, NULL;
    static const struct {
        const char *name;
        char c;
    } entities[] = {
        {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
    size_t n = 0;
    while (s < e) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f) {
            *why = "holds a control character";
            goto bad;
        }
        if (c != '&') {
            out[n++] = *s++;
            continue;
        }
        size_t i = 0;
        for (; i < sizeof(entities) / sizeof(entities[0]); i++) {
            size_t len = strlen(entities[i].name);
            if ((size_t)(e - s) >= len && memcmp(s, entities[i].name, len) == 0) {
                out[n++] = entities[i].c;
                s += len;
                break;
            }
        }
        if (i == sizeof(entities) / sizeof(entities[0])) {
            *why = "holds an unknown '&' entity";
            goto bad;
        }
    }
    out[n] = '\0';
    return out;
bad:
    wipe_free(out, n);
    return NULL;
}

enum memfit_status mf_aws_parse_sts_xml(const char *text, size_t len,
                                        struct mf_aws_credentials *out, int64_t *expires_s)
{
    const char *end = text + len, *cs, *ce, *why = NULL;
    if (memchr(text, '\0', len))
        return memfit_fail(MEMFIT_E_FORMAT, "STS answer: NUL byte");
    if (!memmem(text, len, "<AssumeRoleWithWebIdentityResult>", 33))
        return memfit_fail(MEMFIT_E_FORMAT,
                           "STS answer: no AssumeRoleWithWebIdentityResult element (not an STS "
                           "answer?)");
    if (!xml_element(text, end, "Credentials", false, &cs, &ce, &why))
        return memfit_fail(MEMFIT_E_FORMAT, "STS answer: Credentials element %s", why);
    static const char *const names[] = {"AccessKeyId", "SecretAccessKey", "SessionToken",
                                        "Expiration"};
    char *values[4] = {NULL, NULL, NULL, NULL};
    enum memfit_status st = MEMFIT_OK;
    for (int i = 0; i < 4 && st == MEMFIT_OK; i++) {
        const char *vs, *ve;
        if (!xml_element(cs, ce, names[i], true, &vs, &ve, &why) ||
            !(values[i] = xml_text(vs, ve, &why)))
            st = why ? memfit_fail(MEMFIT_E_FORMAT, "STS answer: Credentials/%s %s", names[i], why)
                     : MEMFIT_E_NOMEM;
    }
    int64_t expires = 0;
    if (st == MEMFIT_OK && !mf_aws_parse_time(values[3], strlen(values[3]), &expires))
        st = memfit_fail(MEMFIT_E_FORMAT, "STS answer: Expiration '%.40s' is not a UTC time",
                         values[3]);
    if (st != MEMFIT_OK) {
        for (int i = 0; i < 4; i++)
            wipe_free(values[i], values[i] ? strlen(values[i]) : 0);
        return st;
    }
    memfit_free(values[3]);
    *out = (struct mf_aws_credentials){values[0], values[1], values[2], "web identity (STS)"};
    *expires_s = expires;
    return MEMFIT_OK;
}

/* ---- The container answer (JSON) ----------------------------------------------- */

/* obj[name] as a new clean string: OK, E_NOT_FOUND (absent), E_FORMAT, E_NOMEM. */
static enum memfit_status json_field(json_t *obj, const char *name, char **out)
{
    json_t *v = json_object_get(obj, name);
    if (!v)
        return MEMFIT_E_NOT_FOUND;
    if (!json_is_string(v) || json_string_length(v) == 0)
        return memfit_fail(MEMFIT_E_FORMAT, "container credentials: %s is not a non-empty string",
                           name);
    if (!mf_token_is_clean(json_string_value(v), json_string_length(v)))
        return memfit_fail(MEMFIT_E_FORMAT, "container credentials: %s holds a control character",
                           name);
    return (*out = memfit_strdup(json_string_value(v))) ? MEMFIT_OK : MEMFIT_E_NOMEM;
}

enum memfit_status mf_aws_parse_container_json(const char *text, size_t len,
                                               struct mf_aws_credentials *out, int64_t *expires_s)
{
    mf_json_init();
    mf_json_clear_alloc_failure();
    json_error_t err;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    /* jansson can lose an allocation failure and hand back a damaged object. */
    if (mf_json_alloc_failed()) {
        json_decref(root);
        return MEMFIT_E_NOMEM;
    }
    if (!root)
        return memfit_fail(MEMFIT_E_FORMAT, "container credentials: not JSON (line %d: %s)",
                           err.line, err.text);
    struct mf_aws_credentials c = {0};
    char *expiration = NULL;
    int64_t expires = INT64_MAX;
    enum memfit_status st = MEMFIT_OK;
    if (!json_is_object(root))
        st = memfit_fail(MEMFIT_E_FORMAT, "container credentials: not a JSON object");
    static const char *const required[] = {"AccessKeyId", "SecretAccessKey"};
    char **slots[] = {&c.access_key, &c.secret_key};
    for (int i = 0; i < 2 && st == MEMFIT_OK; i++)
        if ((st = json_field(root, required[i], slots[i])) == MEMFIT_E_NOT_FOUND)
            st = memfit_fail(MEMFIT_E_FORMAT, "container credentials: no %s", required[i]);
    if (st == MEMFIT_OK && (st = json_field(root, "Token", &c.session_token)) == MEMFIT_E_NOT_FOUND)
        st = MEMFIT_OK;
    if (st == MEMFIT_OK && (st = json_field(root, "Expiration", &expiration)) == MEMFIT_OK &&
        !mf_aws_parse_time(expiration, strlen(expiration), &expires))
        st = memfit_fail(MEMFIT_E_FORMAT,
                         "container credentials: Expiration '%.40s' is not a UTC time", expiration);
    if (st == MEMFIT_E_NOT_FOUND)
        st = MEMFIT_OK;
    memfit_free(expiration);
    json_decref(root);
    if (st != MEMFIT_OK) {
        mf_aws_credentials_clear(&c);
        return st;
    }
    c.origin = "the container endpoint";
    *out = c;
    *expires_s = expires;
    return MEMFIT_OK;
}

/* ---- Which container endpoints -------------------------------------------------- */

bool mf_aws_container_url_allowed(const char *url)
{
    if (!mf_endpoint_is_valid(url))
        return false;
    if (strncmp(url, "https://", 8) == 0)
        return true;
    const char *h = url + 7, *he;
    if (*h == '[') {
        he = strchr(h, ']');
        if (!he)
            return false;
        he++;
    } else {
        he = h + strcspn(h, ":/");
    }
    if (*he != '\0' && *he != ':' && *he != '/')
        return false;
    size_t n = (size_t)(he - h);
    static const char *const hosts[] = {"localhost", "[::1]", "169.254.170.2", "169.254.170.23",
                                        "[fd00:ec2::23]"};
    for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++)
        if (strlen(hosts[i]) == n && strncasecmp(h, hosts[i], n) == 0)
            return true;
    /* 127.0.0.0/8, written as a dotted quad. */
    unsigned a, b, c, d;
    char tail;
    char host[32];
    if (n >= sizeof(host))
        return false;
    memcpy(host, h, n);
    host[n] = '\0';
    return sscanf(host, "%3u.%3u.%3u.%3u%c", &a, &b, &c, &d, &tail) == 4 && a == 127 && b < 256 &&
           c < 256 && d < 256;
}

/* ---- The cache ---------------------------------------------------------------------- */

static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static char *cache_key;
static struct mf_aws_credentials cache_creds;
static int64_t cache_expires_s;

static void cache_forget(void)
{
    memfit_free(cache_key);
    cache_key = NULL;
    mf_aws_credentials_clear(&cache_creds);
    cache_expires_s = 0;
}

void mf_aws_cache_reset(void)
{
    pthread_mutex_lock(&cache_mu);
    cache_forget();
    pthread_mutex_unlock(&cache_mu);
}

enum memfit_status mf_aws_cache_get(const struct mf_aws_provider *p, int64_t now_s,
                                    struct mf_aws_credentials *out)
{
    pthread_mutex_lock(&cache_mu);
    bool have = cache_key && strcmp(cache_key, p->key) == 0;
    enum memfit_status st = MEMFIT_OK;
    if (!have || now_s >= cache_expires_s - MF_AWS_REFRESH_BEFORE_S) {
        struct mf_aws_credentials fresh = {0};
        int64_t expires = 0;
        char *key = memfit_strdup(p->key);
        st = key ? p->fetch(p->ctx, &fresh, &expires) : MEMFIT_E_NOMEM;
        if (st == MEMFIT_OK) {
            cache_forget();
            cache_key = key;
            cache_creds = fresh;
            cache_expires_s = expires;
            have = true;
        } else {
            memfit_free(key);
            if (have && st != MEMFIT_E_NOMEM && now_s + 60 < cache_expires_s) {
                memfit_log(MEMFIT_LOG_WARN,
                           "%s; using the cached credentials, valid for %" PRId64 " s more",
                           memfit_last_error(), cache_expires_s - now_s);
                st = MEMFIT_OK;
            }
        }
    }
    if (st == MEMFIT_OK)
        st = mf_aws_credentials_copy(out, &cache_creds);
    pthread_mutex_unlock(&cache_mu);
    return st;
}

static int64_t now_s(void)
{
    return (int64_t)(memfit_wall_ns() / 1000000000ull);
}

/* The credentials of a provider through the cache; `key` is taken (NULL: E_NOMEM). */
static enum memfit_status
through_cache(char *key,
              enum memfit_status (*fetch)(void *, struct mf_aws_credentials *, int64_t *),
              void *ctx, struct mf_aws_credentials *out)
{
    enum memfit_status st = MEMFIT_E_NOMEM;
    if (key) {
        struct mf_aws_provider p = {key, fetch, ctx};
        st = mf_aws_cache_get(&p, now_s(), out);
    }
    memfit_free(key);
    return st;
}

/* ---- Requests -------------------------------------------------------------------------- */

struct answer {
    char *data;
    size_t len;
    bool too_big;
};

static size_t on_answer(char *data, size_t size, size_t nmemb, void *user)
{
    struct answer *a = user;
    size_t n = size * nmemb;
    if (a->too_big || a->len + n > MAX_ANSWER_BYTES) {
        a->too_big = true;
        return 0;
    }
    memcpy(a->data + a->len, data, n);
    a->len += n;
    a->data[a->len] = '\0';
    return n;
}

/* A copy of an error answer's text fit for a message: at most 200 bytes, no control characters. */
static void printable(const char *s, size_t n, char *buf, size_t size)
{
    size_t i = 0;
    for (; i < n && i + 1 < size; i++)
        buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? ' ' : s[i];
    buf[i] = '\0';
}

/*
 * One GET (or POST of `form`) of `url` with an optional Authorization value;
 * the answer in *a (NUL-terminated) and the HTTP status in *status. Transport
 * failures fail naming `what`.
 */
static enum memfit_status request(const char *url, const char *what, const char *auth,
                                  const char *form, struct answer *a, long *status)
{
    enum memfit_status st = mf_http_global_init();
    if (st != MEMFIT_OK)
        return st;
    struct mf_http_request req = {0};
    a->data = memfit_malloc_in(MEMFIT_ALLOC_STORE, MAX_ANSWER_BYTES + 1);
    req.curl = curl_easy_init();
    if (!a->data || !req.curl) {
        memfit_free(a->data);
        a->data = NULL;
        if (req.curl)
            curl_easy_cleanup(req.curl);
        return memfit_fail(MEMFIT_E_NOMEM, "%s: out of memory", what);
    }
    a->data[0] = '\0';
    CURL *c = req.curl;
    char line[8192];
    bool ok = curl_easy_setopt(c, CURLOPT_URL, url) == CURLE_OK;
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, req.errbuf);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "memfit/" MEMFIT_VERSION_STRING);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    const char *ca = memfit_config_get("MEMFIT_CA_BUNDLE");
    if (set(ca)) {
        ok = ok && curl_easy_setopt(c, CURLOPT_CAINFO, ca) == CURLE_OK;
        if (access("/etc/ssl/certs", R_OK) == 0)
            curl_easy_setopt(c, CURLOPT_CAPATH, "/etc/ssl/certs");
    }
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, TOTAL_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_answer);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, a);
    if (form)
        ok = ok && curl_easy_setopt(c, CURLOPT_POSTFIELDS, form) == CURLE_OK;
    if (auth) {
        int n = snprintf(line, sizeof(line), "Authorization: %s", auth);
        struct curl_slist *l =
            n > 0 && (size_t)n < sizeof(line) ? curl_slist_append(NULL, line) : NULL;
        explicit_bzero(line, sizeof(line));
        req.headers = l;
        ok = ok && l && curl_easy_setopt(c, CURLOPT_HTTPHEADER, l) == CURLE_OK;
    }
    if (!ok) {
        st = memfit_fail(MEMFIT_E_NOMEM, "%s: out of memory preparing the request", what);
    } else {
        CURLcode rc = curl_easy_perform(c);
        bool retryable;
        if (rc == CURLE_WRITE_ERROR && a->too_big)
            st = memfit_fail(MEMFIT_E_FORMAT, "%s: answer longer than %d bytes", what,
                             MAX_ANSWER_BYTES);
        else if (rc != CURLE_OK)
            st = mf_http_result(&req, (int)rc, what, &retryable);
        else
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    }
    mf_http_request_cleanup(&req);
    if (st != MEMFIT_OK) {
        wipe_free(a->data, a->len);
        a->data = NULL;
    }
    return st;
}

/* The status of a refused request: 4xx (but 408, 429) is a refusal, the rest a failure. */
static enum memfit_status refused_status(long status)
{
    return status >= 400 && status < 500 && status != 408 && status != 429 ? MEMFIT_E_PERMISSION
                                                                           : MEMFIT_E_NETWORK;
}

/*
 * One request and its answer: a refusal fails with the HTTP status and the
 * answer's own explanation (error_text), a success is parsed; every failure
 * names `what`.
 */
static enum memfit_status ask(const char *url, const char *what, const char *auth, const char *form,
                              void (*error_text)(const char *, size_t, char *, size_t),
                              enum memfit_status (*parse)(const char *, size_t,
                                                          struct mf_aws_credentials *, int64_t *),
                              struct mf_aws_credentials *out, int64_t *expires_s)
{
    struct answer a = {0};
    long status = 0;
    enum memfit_status st = request(url, what, auth, form, &a, &status);
    if (st == MEMFIT_OK && (status < 200 || status >= 300)) {
        char detail[300];
        error_text(a.data, a.len, detail, sizeof(detail));
        st = memfit_fail(refused_status(status), "%s: HTTP %ld%s%s", what, status,
                         detail[0] ? ": " : "", detail);
    } else if (st == MEMFIT_OK && (st = parse(a.data, a.len, out, expires_s)) == MEMFIT_E_FORMAT) {
        st = memfit_fail(st, "%s: %s", what, memfit_last_error());
    }
    wipe_free(a.data, a.len);
    return st;
}

/* ---- Web identity (STS) ------------------------------------------------------------------ */

struct web_identity {
    char *endpoint; /* the URL posted to */
    const char *endpoint_origin;
    const char *role_arn;
    const char *token_file;
    const char *session_name; /* or NULL: one is made up */
    char *what;               /* "AWS credentials from STS at URL (role ...)" */
};

static bool valid_session_name(const char *s)
{
    size_t n = strlen(s);
    if (n < 2 || n > 64)
        return false;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || strchr("+=,.@_-", *s)))
            return false;
    return true;
}

void mf_aws_sts_error_text(const char *text, size_t len, char *buf, size_t size)
{
    const char *cs, *ce, *ms, *me, *why;
    char code[64] = "", msg[200] = "";
    if (xml_element(text, text + len, "Code", true, &cs, &ce, &why))
        printable(cs, (size_t)(ce - cs), code, sizeof(code));
    if (xml_element(text, text + len, "Message", true, &ms, &me, &why))
        printable(ms, (size_t)(me - ms), msg, sizeof(msg));
    snprintf(buf, size, "%s%s%s", code, code[0] && msg[0] ? ": " : "", msg);
}

static enum memfit_status web_identity_fetch(void *ctx, struct mf_aws_credentials *out,
                                             int64_t *expires_s)
{
    struct web_identity *w = ctx;
    char *token = NULL, *e_role = NULL, *e_name = NULL, *e_token = NULL, *form = NULL;
    char made_up[64];
    const char *name = w->session_name;
    if (!name) {
        snprintf(made_up, sizeof(made_up), "memfit-%" PRIu64,
                 (uint64_t)(memfit_wall_ns() / 1000000u));
        name = made_up;
    }
    /* Kubernetes rotates the projected token: read it again for each call. */
    enum memfit_status st =
        mf_read_token_file(w->token_file, "AWS_WEB_IDENTITY_TOKEN_FILE", &token);
    if (st != MEMFIT_OK)
        return memfit_fail(st, "%s: %s", w->what, memfit_last_error());
    e_role = mf_percent_encode(w->role_arn, false);
    e_name = mf_percent_encode(name, false);
    e_token = mf_percent_encode(token, false);
    if (e_role && e_name && e_token)
        form = memfit_asprintf("Action=AssumeRoleWithWebIdentity&Version=" STS_VERSION
                               "&RoleArn=%s&RoleSessionName=%s&WebIdentityToken=%s",
                               e_role, e_name, e_token);
    if (!form)
        st = MEMFIT_E_NOMEM;
    else
        st = ask(w->endpoint, w->what, NULL, form, mf_aws_sts_error_text, mf_aws_parse_sts_xml, out,
                 expires_s);
    if (st == MEMFIT_OK)
        memfit_log(MEMFIT_LOG_INFO,
                   "AWS credentials: assumed role %s with web identity, valid "
                   "for %" PRId64 " s",
                   w->role_arn, *expires_s - now_s());
    wipe_free(token, token ? strlen(token) : 0);
    wipe_free(e_token, e_token ? strlen(e_token) : 0);
    wipe_free(form, form ? strlen(form) : 0);
    memfit_free(e_role);
    memfit_free(e_name);
    return st;
}

/* The STS URL: a configured endpoint, else the regional one, else the global one. */
static enum memfit_status sts_endpoint(struct web_identity *w)
{
    struct mf_aws_profile p;
    enum memfit_status st = mf_aws_profile_open(&p);
    if (st != MEMFIT_OK)
        return st;
    char *ep = NULL, *region = NULL;
    const char *region_origin = NULL;
    if ((st = mf_aws_endpoint(&p, "sts", &ep, &w->endpoint_origin)) == MEMFIT_OK && !ep)
        st = mf_aws_region(&p, &region, &region_origin);
    mf_aws_profile_close(&p);
    if (st != MEMFIT_OK)
        return st;
    if (ep && !mf_endpoint_is_valid(ep)) {
        char shown[256];
        mf_redact_into(ep, shown, sizeof(shown));
        st = memfit_fail(MEMFIT_E_RANGE, "STS endpoint '%s' (%s) must be http(s)://HOST[:PORT]",
                         shown, w->endpoint_origin);
    } else if (ep) {
        size_t n = strlen(ep);
        while (n > 0 && ep[n - 1] == '/')
            n--;
        w->endpoint = memfit_asprintf("%.*s/", (int)n, ep);
    } else if (region) {
        if (!mf_region_is_valid(region))
            st = memfit_fail(MEMFIT_E_RANGE, "region '%.64s' (%s) is not a region name", region,
                             region_origin);
        w->endpoint_origin = "the region";
        if (st == MEMFIT_OK)
            w->endpoint = memfit_asprintf("https://sts.%s.amazonaws.com/", region);
    } else {
        w->endpoint_origin = "no region set";
        w->endpoint = memfit_strdup("https://sts.amazonaws.com/");
    }
    memfit_free(ep);
    memfit_free(region);
    if (st == MEMFIT_OK && !w->endpoint)
        st = MEMFIT_E_NOMEM;
    return st;
}

enum memfit_status mf_aws_web_identity_load(struct mf_aws_credentials *out)
{
    struct web_identity w = {0};
    w.token_file = memfit_config_get("AWS_WEB_IDENTITY_TOKEN_FILE");
    w.role_arn = memfit_config_get("AWS_ROLE_ARN");
    w.session_name = memfit_config_get("AWS_ROLE_SESSION_NAME");
    if (!set(w.session_name))
        w.session_name = NULL;
    if (!set(w.role_arn))
        return memfit_fail(MEMFIT_E_RANGE,
                           "AWS credentials from web identity: AWS_WEB_IDENTITY_TOKEN_FILE is set "
                           "but AWS_ROLE_ARN is not");
    if (!mf_token_is_clean(w.role_arn, strlen(w.role_arn)))
        return memfit_fail(MEMFIT_E_RANGE, "AWS_ROLE_ARN: control character");
    if (w.session_name && !valid_session_name(w.session_name))
        return memfit_fail(MEMFIT_E_RANGE,
                           "AWS_ROLE_SESSION_NAME '%.80s' must be 2 to 64 of A-Z a-z 0-9 +=,.@_-",
                           w.session_name);
    enum memfit_status st = sts_endpoint(&w);
    if (st == MEMFIT_OK &&
        !(w.what = memfit_asprintf("AWS credentials from web identity (STS %s from %s, role %s)",
                                   w.endpoint, w.endpoint_origin, w.role_arn)))
        st = MEMFIT_E_NOMEM;
    if (st == MEMFIT_OK)
        st = through_cache(memfit_asprintf("sts\n%s\n%s\n%s\n%s", w.endpoint, w.role_arn,
                                           w.token_file, w.session_name ? w.session_name : ""),
                           web_identity_fetch, &w, out);
    memfit_free(w.endpoint);
    memfit_free(w.what);
    return st;
}

/* ---- The container endpoint ------------------------------------------------------------------ */

struct container {
    char *url;
    const char *url_origin;
    char *what; /* "AWS credentials from the container endpoint URL (VAR)" */
};

void mf_aws_container_error_text(const char *text, size_t len, char *buf, size_t size)
{
    buf[0] = '\0';
    json_t *root = json_loadb(text, len, 0, NULL);
    if (!root)
        return;
    const char *code = json_string_value(json_object_get(root, "code"));
    const char *msg = json_string_value(json_object_get(root, "message"));
    char joined[300];
    snprintf(joined, sizeof(joined), "%s%s%s", code ? code : "", code && msg ? ": " : "",
             msg ? msg : "");
    printable(joined, strlen(joined), buf, size);
    json_decref(root);
}

static enum memfit_status container_fetch(void *ctx, struct mf_aws_credentials *out,
                                          int64_t *expires_s)
{
    struct container *k = ctx;
    char *auth = NULL;
    enum memfit_status st = MEMFIT_OK;
    /* The token file first: EKS Pod Identity rotates it. */
    const char *file = memfit_config_get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
    const char *token = memfit_config_get("AWS_CONTAINER_AUTHORIZATION_TOKEN");
    if (set(file)) {
        if ((st = mf_read_token_file(file, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", &auth)) !=
            MEMFIT_OK)
            return memfit_fail(st, "%s: %s", k->what, memfit_last_error());
    } else if (set(token)) {
        if (!mf_token_is_clean(token, strlen(token)))
            return memfit_fail(MEMFIT_E_FORMAT,
                               "%s: AWS_CONTAINER_AUTHORIZATION_TOKEN holds a control character",
                               k->what);
        if (!(auth = memfit_strdup(token)))
            return MEMFIT_E_NOMEM;
    }
    st = ask(k->url, k->what, auth, NULL, mf_aws_container_error_text, mf_aws_parse_container_json,
             out, expires_s);
    if (st == MEMFIT_OK && *expires_s == INT64_MAX)
        *expires_s = now_s() + NO_EXPIRY_REFETCH_S + MF_AWS_REFRESH_BEFORE_S;
    if (st == MEMFIT_OK)
        memfit_log(MEMFIT_LOG_INFO,
                   "AWS credentials from the container endpoint, valid for %" PRId64 " s",
                   *expires_s - now_s());
    wipe_free(auth, auth ? strlen(auth) : 0);
    return st;
}

enum memfit_status mf_aws_container_load(struct mf_aws_credentials *out)
{
    struct container k = {0};
    const char *rel = memfit_config_get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    const char *full = memfit_config_get("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    char shown[300];
    if (set(rel)) {
        k.url_origin = "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI";
        if (rel[0] != '/' || !mf_token_is_clean(rel, strlen(rel)) || strchr(rel, ' '))
            return memfit_fail(MEMFIT_E_RANGE, "%s must be a path starting with '/'", k.url_origin);
        k.url = memfit_asprintf(ECS_HOST "%s", rel);
    } else {
        k.url_origin = "AWS_CONTAINER_CREDENTIALS_FULL_URI";
        if (!mf_aws_container_url_allowed(full)) {
            mf_redact_into(full, shown, sizeof(shown));
            return memfit_fail(MEMFIT_E_RANGE,
                               "%s '%s': only https, or http to a loopback address, "
                               "169.254.170.2, 169.254.170.23 or fd00:ec2::23, is allowed",
                               k.url_origin, shown);
        }
        k.url = memfit_strdup(full);
    }
    if (!k.url)
        return MEMFIT_E_NOMEM;
    mf_redact_into(k.url, shown, sizeof(shown));
    enum memfit_status st = MEMFIT_OK;
    k.what =
        memfit_asprintf("AWS credentials from the container endpoint %s (%s)", shown, k.url_origin);
    if (!k.what)
        st = MEMFIT_E_NOMEM;
    else
        st = through_cache(memfit_asprintf("container\n%s", k.url), container_fetch, &k, out);
    memfit_free(k.url);
    memfit_free(k.what);
    return st;
}

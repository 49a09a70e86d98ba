/*
 * Source URIs of the model store: what a local path, file://, http(s)://,
 * s3:// and hf:// source turns into, plus the two safety nets every
 * message and cache path goes through: redaction of secrets in URLs, and
 * names that cannot escape the cache directory.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "store/internal.h"

#define MAX_SOURCE_LEN 8192

/* ---- Redaction ---------------------------------------------------------- */

/* Output with a capacity; counts what it would have written (like snprintf). */
struct out {
    char *buf;
    size_t cap, len;
};

static void put(struct out *o, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (o->len + 1 < o->cap)
            o->buf[o->len] = s[i];
        o->len++;
    }
}

static void puts0(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

/* Query parameters whose values are secrets: exact names, then substrings. */
static bool secret_param(const char *name, size_t n)
{
    static const char *const exact[] = {"sig", "awsaccesskeyid", "key-pair-id", "policy", "code"};
    static const char *const parts[] = {"signature",  "credential", "token",  "secret",
                                        "password",   "passwd",     "apikey", "api_key",
                                        "access_key", "auth"};
    char lower[64];
    if (n == 0)
        return false;
    if (n >= sizeof(lower))
        return true; /* unusually long names: do not risk it */
    for (size_t i = 0; i < n; i++)
        lower[i] = (char)tolower((unsigned char)name[i]);
    lower[n] = '\0';
    for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++)
        if (strcmp(lower, exact[i]) == 0)
            return true;
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
        if (strstr(lower, parts[i]))
            return true;
    return false;
}

static bool url_end_char(char c)
{
    return c == '\0' || c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '"' || c == '\'' ||
           c == '<' || c == '>';
}

/* Writes one URL (from its scheme to `end`) with its secrets replaced. */
static void redact_url(struct out *o, const char *url, const char *end)
{
    const char *p = strstr(url, "://");
    p += 3;
    put(o, url, (size_t)(p - url));
    const char *auth_end = p;
    while (auth_end < end && *auth_end != '/' && *auth_end != '?' && *auth_end != '#')
        auth_end++;
    const char *at = NULL;
    for (const char *q = p; q < auth_end; q++)
        if (*q == '@')
            at = q;
    if (at) {
        puts0(o, "REDACTED");
        p = at;
    }
    put(o, p, (size_t)(auth_end - p));
    p = auth_end;
    const char *query = p;
    while (query < end && *query != '?' && *query != '#')
        query++;
    put(o, p, (size_t)(query - p));
    p = query;
    if (p < end && *p == '?') {
        put(o, "?", 1);
        p++;
        while (p < end && *p != '#') {
            const char *amp = p;
            while (amp < end && *amp != '&' && *amp != '#')
                amp++;
            const char *eq = p;
            while (eq < amp && *eq != '=')
                eq++;
            if (eq < amp && secret_param(p, (size_t)(eq - p))) {
                put(o, p, (size_t)(eq - p));
                puts0(o, "=REDACTED");
            } else {
                put(o, p, (size_t)(amp - p));
            }
            p = amp;
            if (p < end && *p == '&') {
                put(o, "&", 1);
                p++;
            }
        }
    }
    put(o, p, (size_t)(end - p));
}

static size_t redact(const char *text, char *buf, size_t cap)
{
    struct out o = {buf, cap, 0};
    const char *p = text;
    for (;;) {
        const char *sep = strstr(p, "://");
        if (!sep) {
            puts0(&o, p);
            break;
        }
        const char *start = sep;
        while (start > p && (isalnum((unsigned char)start[-1]) || start[-1] == '+' ||
                             start[-1] == '-' || start[-1] == '.'))
            start--;
        const char *end = sep + 3;
        while (!url_end_char(*end))
            end++;
        put(&o, p, (size_t)(start - p));
        redact_url(&o, start, end);
        p = end;
    }
    if (cap > 0)
        buf[o.len < cap ? o.len : cap - 1] = '\0';
    return o.len;
}

char *mf_redact(const char *text)
{
    size_t n = redact(text, NULL, 0);
    char *buf = memfit_malloc_in(MEMFIT_ALLOC_STORE, n + 1);
    if (!buf)
        return NULL;
    redact(text, buf, n + 1);
    return buf;
}

void mf_redact_into(const char *text, char *buf, size_t size)
{
    redact(text, buf, size);
}

/* ---- Names and paths ---------------------------------------------------- */

static bool has_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    return false;
}

bool mf_path_is_safe(const char *rel)
{
    size_t len = strlen(rel);
    if (len == 0 || len > 1024 || rel[0] == '/' || has_control(rel) || strchr(rel, '\\'))
        return false;
    const char *p = rel;
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            return false;
        if (!slash)
            break;
        p = slash + 1;
        if (*p == '\0')
            return false; /* trailing slash: an empty last component */
    }
    return true;
}

bool mf_is_sha256_hex(const char *hex)
{
    size_t i;
    for (i = 0; hex[i]; i++)
        if (!isxdigit((unsigned char)hex[i]))
            return false;
    return i == MEMFIT_SHA256_HEX_LEN;
}

char *mf_ref_filename(const char *name)
{
    char digest[MEMFIT_SHA256_HEX_LEN + 1];
    if (mf_sha256_string(name, digest) != MEMFIT_OK)
        return NULL;
    char prefix[97];
    size_t n = 0;
    for (const char *p = name; *p && n < sizeof(prefix) - 1; p++) {
        char c = *p;
        prefix[n++] = (isalnum((unsigned char)c) || c == '.' || c == '_' || c == '-') ? c : '_';
    }
    prefix[n] = '\0';
    if (n == 0)
        return memfit_asprintf("ref-%.16s", digest);
    if (prefix[0] == '.')
        prefix[0] = '_';
    return memfit_asprintf("%s-%.16s", prefix, digest);
}

char *mf_percent_encode(const char *text, bool keep_slash)
{
    static const char hexdig[] = "0123456789ABCDEF";
    size_t n = 0;
    for (const char *p = text; *p; p++) {
        unsigned char c = (unsigned char)*p;
        bool keep =
            isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || (keep_slash && c == '/');
        n += keep ? 1 : 3;
    }
    char *out = memfit_malloc_in(MEMFIT_ALLOC_STORE, n + 1);
    if (!out)
        return NULL;
    char *o = out;
    for (const char *p = text; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' ||
            (keep_slash && c == '/')) {
            *o++ = (char)c;
        } else {
            *o++ = '%';
            *o++ = hexdig[c >> 4];
            *o++ = hexdig[c & 15];
        }
    }
    *o = '\0';
    return out;
}

/* ---- Parsing ------------------------------------------------------------ */

static enum memfit_status bad_source(const char *uri, const char *why)
{
    char shown[512];
    mf_redact_into(uri, shown, sizeof(shown));
    return memfit_fail(MEMFIT_E_RANGE, "source '%s': %s", shown, why);
}

static bool starts_with(const char *s, const char *prefix)
{
    return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

/* Decodes %XX in a file:// path; E_RANGE for %00, a control character or a
 * malformed escape. */
static enum memfit_status percent_decode(const char *text, char **out)
{
    char *buf = memfit_malloc_in(MEMFIT_ALLOC_STORE, strlen(text) + 1);
    if (!buf)
        return MEMFIT_E_NOMEM;
    char *o = buf;
    for (const char *p = text; *p; p++) {
        if (*p != '%') {
            *o++ = *p;
            continue;
        }
        int hi = isxdigit((unsigned char)p[1]) ? p[1] : -1;
        int lo = hi >= 0 && isxdigit((unsigned char)p[2]) ? p[2] : -1;
        if (lo < 0) {
            memfit_free(buf);
            return MEMFIT_E_RANGE;
        }
        int v = (isdigit(hi) ? hi - '0' : (tolower(hi) - 'a' + 10)) * 16 +
                (isdigit(lo) ? lo - '0' : (tolower(lo) - 'a' + 10));
        if (v < 0x20 || v == 0x7f) {
            memfit_free(buf);
            return MEMFIT_E_RANGE;
        }
        *o++ = (char)v;
        p += 2;
    }
    *o = '\0';
    *out = buf;
    return MEMFIT_OK;
}

static bool valid_bucket(const char *b, size_t n)
{
    if (n < 3 || n > 63)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = b[i];
        if (!(islower((unsigned char)c) || isdigit((unsigned char)c) || c == '.' || c == '-'))
            return false;
    }
    return isalnum((unsigned char)b[0]) && isalnum((unsigned char)b[n - 1]);
}

bool mf_region_is_valid(const char *r)
{
    if (!*r || strlen(r) > 64)
        return false;
    for (; *r; r++)
        if (!(islower((unsigned char)*r) || isdigit((unsigned char)*r) || *r == '-'))
            return false;
    return true;
}

/* An endpoint override: http(s)://host[:port][/prefix], no query, no userinfo. */
bool mf_endpoint_is_valid(const char *e)
{
    if (!(starts_with(e, "http://") || starts_with(e, "https://")))
        return false;
    return !has_control(e) && !strchr(e, '?') && !strchr(e, '#') && !strchr(e, '@') &&
           !strchr(e, ' ');
}

/* A Hub org or repo name: [A-Za-z0-9._-]+, not "." or "..". */
static bool valid_hub_name(const char *s, size_t n)
{
    if (n == 0 || n > 96 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '.' || s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

/* The region and endpoint of an S3 source: fixed ones, or the environment's and
 * the AWS config file's (env->aws_from_files). New strings or NULL in *region
 * and *endpoint; E_RANGE naming where a bad value came from. */
static enum memfit_status s3_settings(const struct mf_source_env *env, char **region,
                                      char **endpoint)
{
    *region = *endpoint = NULL;
    const char *region_origin = "AWS_REGION", *endpoint_origin = "AWS_ENDPOINT_URL_S3";
    enum memfit_status st = MEMFIT_OK;
    if (env->aws_from_files) {
        struct mf_aws_profile p;
        if ((st = mf_aws_profile_open(&p)) != MEMFIT_OK)
            return st;
        st = mf_aws_region(&p, region, &region_origin);
        if (st == MEMFIT_OK)
            st = mf_aws_endpoint(&p, "s3", endpoint, &endpoint_origin);
        mf_aws_profile_close(&p);
    } else {
        if (env->aws_region && env->aws_region[0] && !(*region = memfit_strdup(env->aws_region)))
            st = MEMFIT_E_NOMEM;
        if (env->s3_endpoint && env->s3_endpoint[0] &&
            !(*endpoint = memfit_strdup(env->s3_endpoint)))
            st = MEMFIT_E_NOMEM;
    }
    if (st == MEMFIT_OK && !*region && !(*region = memfit_strdup("us-east-1")))
        st = MEMFIT_E_NOMEM;
    if (st == MEMFIT_OK && !mf_region_is_valid(*region)) {
        st = memfit_fail(MEMFIT_E_RANGE, "region '%.64s' (%s) is not a region name", *region,
                         region_origin);
    } else if (st == MEMFIT_OK && *endpoint && !mf_endpoint_is_valid(*endpoint)) {
        char shown[256];
        mf_redact_into(*endpoint, shown, sizeof(shown));
        st = memfit_fail(MEMFIT_E_RANGE, "S3 endpoint '%s' (%s) must be http(s)://HOST[:PORT]",
                         shown, endpoint_origin);
    }
    if (st != MEMFIT_OK) {
        memfit_free(*region);
        memfit_free(*endpoint);
        *region = *endpoint = NULL;
    }
    return st;
}

static enum memfit_status parse_s3(const char *uri, const struct mf_source_env *env,
                                   struct mf_source *s)
{
    const char *rest = uri + 5;
    const char *slash = strchr(rest, '/');
    if (!slash)
        return bad_source(uri, "expected s3://BUCKET/KEY");
    size_t nb = (size_t)(slash - rest);
    if (!valid_bucket(rest, nb))
        return bad_source(uri, "invalid bucket name (3-63 of a-z 0-9 . -)");
    const char *key = slash + 1;
    if (!mf_path_is_safe(key))
        return bad_source(uri, "key must be a relative path without '.' or '..' parts");
    char *region, *ep;
    enum memfit_status st = s3_settings(env, &region, &ep);
    if (st != MEMFIT_OK)
        return st;
    char *enc = mf_percent_encode(key, true);
    if (!enc) {
        s->url = NULL;
    } else if (ep) {
        size_t n = strlen(ep);
        while (n > 0 && ep[n - 1] == '/')
            n--;
        /* Custom endpoints (MinIO, R2, moto) want path-style addressing. */
        s->url = memfit_asprintf("%.*s/%.*s/%s", (int)n, ep, (int)nb, rest, enc);
    } else if (memchr(rest, '.', nb)) {
        /* Dots break the wildcard certificate of virtual-hosted style. */
        s->url = memfit_asprintf("https://s3.%s.amazonaws.com/%.*s/%s", region, (int)nb, rest, enc);
    } else {
        s->url = memfit_asprintf("https://%.*s.s3.%s.amazonaws.com/%s", (int)nb, rest, region, enc);
    }
    memfit_free(enc);
    memfit_free(ep);
    s->region = region;
    return s->url ? MEMFIT_OK : MEMFIT_E_NOMEM;
}

static enum memfit_status parse_hf(const char *uri, const struct mf_source_env *env,
                                   struct mf_source *s)
{
    const char *rest = uri + 5;
    const char *kind = "";
    if (strncmp(rest, "datasets/", 9) == 0) {
        kind = "datasets/";
        rest += 9;
    } else if (strncmp(rest, "spaces/", 7) == 0) {
        kind = "spaces/";
        rest += 7;
    }
    const char *s1 = strchr(rest, '/');
    const char *s2 = s1 ? strchr(s1 + 1, '/') : NULL;
    if (!s1 || !s2 || !s2[1])
        return bad_source(uri, "expected hf://ORG/REPO/PATH[@REVISION]");
    const char *org = rest, *repo = s1 + 1, *path = s2 + 1;
    size_t n_org = (size_t)(s1 - org), n_repo = (size_t)(s2 - repo);
    const char *rev = NULL;
    size_t n_rev = 0;
    /* hf://org/repo@rev/path, or hf://org/repo/path@rev (the last '@'). */
    const char *at = memchr(repo, '@', n_repo);
    size_t n_path = strlen(path);
    if (at) {
        rev = at + 1;
        n_rev = (size_t)(s2 - rev);
        n_repo = (size_t)(at - repo);
    } else {
        const char *last = strrchr(path, '@');
        if (last) {
            rev = last + 1;
            n_rev = strlen(rev);
            n_path = (size_t)(last - path);
        }
    }
    if (!valid_hub_name(org, n_org) || !valid_hub_name(repo, n_repo))
        return bad_source(uri, "invalid organisation or repository name");
    if (rev && (n_rev == 0 || n_rev > 256))
        return bad_source(uri, "empty or overlong revision after '@'");
    char *file = memfit_strndup(path, n_path);
    char *revision = memfit_strndup(rev ? rev : "main", rev ? n_rev : 4);
    char *efile = NULL, *erev = NULL;
    enum memfit_status st = MEMFIT_E_NOMEM;
    if (!file || !revision)
        goto done;
    if (!mf_path_is_safe(file) || has_control(revision)) {
        st = bad_source(uri, "path must be a relative path without '.' or '..' parts");
        goto done;
    }
    efile = mf_percent_encode(file, true);
    erev = mf_percent_encode(revision, false);
    if (!efile || !erev)
        goto done;
    const char *ep =
        env->hf_endpoint && env->hf_endpoint[0] ? env->hf_endpoint : "https://huggingface.co";
    if (!mf_endpoint_is_valid(ep)) {
        st = memfit_fail(MEMFIT_E_RANGE, "HF_ENDPOINT must be http(s)://HOST[:PORT]");
        goto done;
    }
    size_t n_ep = strlen(ep);
    while (n_ep > 0 && ep[n_ep - 1] == '/')
        n_ep--;
    s->url = memfit_asprintf("%.*s/%s%.*s/%.*s/resolve/%s/%s", (int)n_ep, ep, kind, (int)n_org, org,
                             (int)n_repo, repo, erev, efile);
    st = s->url ? MEMFIT_OK : MEMFIT_E_NOMEM;
done:
    memfit_free(file);
    memfit_free(revision);
    memfit_free(efile);
    memfit_free(erev);
    return st;
}

enum memfit_status mf_source_parse(const char *uri, const struct mf_source_env *env,
                                   struct mf_source *out)
{
    if (!uri || !*uri)
        return memfit_fail(MEMFIT_E_RANGE, "empty source");
    if (strlen(uri) > MAX_SOURCE_LEN)
        return memfit_fail(MEMFIT_E_RANGE, "source longer than %d bytes", MAX_SOURCE_LEN);
    if (has_control(uri))
        return bad_source(uri, "control character in source");
    struct mf_source s = {0};
    enum memfit_status st = MEMFIT_OK;
    if (starts_with(uri, "s3://")) {
        s.kind = MF_SOURCE_S3;
        st = parse_s3(uri, env, &s);
    } else if (starts_with(uri, "hf://")) {
        s.kind = MF_SOURCE_HF;
        st = parse_hf(uri, env, &s);
    } else if (starts_with(uri, "http://") || starts_with(uri, "https://")) {
        s.kind = MF_SOURCE_HTTP;
        const char *host = strstr(uri, "://") + 3;
        if (!*host || *host == '/' || strchr(uri, ' '))
            return bad_source(uri, "expected http(s)://HOST/PATH");
        s.url = memfit_strdup(uri);
        st = s.url ? MEMFIT_OK : MEMFIT_E_NOMEM;
    } else if (starts_with(uri, "file://")) {
        s.kind = MF_SOURCE_FILE;
        const char *path = uri + 7;
        if (starts_with(path, "localhost/"))
            path += 9;
        if (*path != '/')
            return bad_source(uri, "expected file:///ABSOLUTE/PATH");
        st = percent_decode(path, &s.url);
        if (st == MEMFIT_E_RANGE)
            return bad_source(uri, "malformed percent escape or control character");
    } else if (strstr(uri, "://")) {
        return bad_source(uri, "unknown scheme (expected a path, file://, http(s)://, s3:// or "
                               "hf://)");
    } else {
        s.kind = MF_SOURCE_FILE;
        /* The same file reached by another relative path is the same source. */
        char *real = realpath(uri, NULL);
        s.url = memfit_strdup(real ? real : uri);
        free(real); /* lint: allow: realpath's buffer comes from libc malloc */
        st = s.url ? MEMFIT_OK : MEMFIT_E_NOMEM;
    }
    if (st == MEMFIT_OK) {
        s.uri = memfit_strdup(s.kind == MF_SOURCE_FILE ? s.url : uri);
        s.display = mf_redact(uri);
        if (!s.uri || !s.display)
            st = MEMFIT_E_NOMEM;
    }
    if (st != MEMFIT_OK) {
        mf_source_clear(&s);
        return st;
    }
    *out = s;
    return MEMFIT_OK;
}

void mf_source_clear(struct mf_source *src)
{
    if (!src)
        return;
    memfit_free(src->uri);
    memfit_free(src->url);
    memfit_free(src->display);
    memfit_free(src->region);
    memset(src, 0, sizeof(*src));
}

void mf_source_env_from_config(struct mf_source_env *out)
{
    out->hf_endpoint = memfit_config_get("HF_ENDPOINT");
    out->aws_region = NULL;
    out->s3_endpoint = NULL;
    out->aws_from_files = true;
}

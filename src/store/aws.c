/*
 * AWS settings for S3 sources: credentials, region and endpoint from the
 * environment and the shared files (~/.aws/credentials, ~/.aws/config; INI
 * parsed here strictly: a line longer than 4 KiB or a NUL byte is an error,
 * not something to guess at), in the order the AWS SDKs document; the
 * temporary credentials of web identity and containers come from
 * aws_remote.c. Secrets are wiped from memory when freed and never put in a
 * message.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "store/internal.h"

#define INI_MAX_LINE 4096

static void trim(const char **s, const char **e)
{
    while (*s < *e && (**s == ' ' || **s == '\t'))
        (*s)++;
    while (*e > *s && ((*e)[-1] == ' ' || (*e)[-1] == '\t' || (*e)[-1] == '\r'))
        (*e)--;
}

static bool span_equals(const char *s, const char *e, const char *word)
{
    size_t n = strlen(word);
    return (size_t)(e - s) == n && memcmp(s, word, n) == 0;
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* A section name matches `want` when their words match; any run of blanks
 * between words counts as one ("[profile   x]" is the profile x). */
static bool section_matches(const char *s, const char *e, const char *want)
{
    while (s < e && *want) {
        if (is_blank(*s)) {
            if (*want != ' ')
                return false;
            while (s < e && is_blank(*s))
                s++;
            want++;
            continue;
        }
        if (*s++ != *want++)
            return false;
    }
    return s == e && !*want;
}

/*
 * The INI lookup behind mf_ini_get and mf_ini_get_nested. A line indented
 * deeper than the property above it continues that property; when that
 * property's value is empty ("s3 =") its continuation lines are its
 * sub-properties ("  endpoint_url = ..."), which only a lookup with `parent`
 * sees.
 */
static enum memfit_status ini_lookup(const char *text, size_t len, const char *section,
                                     const char *parent, const char *key, char **out)
{
    if (memchr(text, '\0', len))
        return memfit_fail(MEMFIT_E_FORMAT, "NUL byte");
    const char *p = text, *end = text + len;
    bool in_section = false;
    bool open = false;        /* a property of the section is open for continuation lines */
    bool open_nested = false; /* ... and its sub-properties are the ones asked for */
    size_t open_indent = 0;
    unsigned line = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        line++;
        if (le - p > INI_MAX_LINE)
            return memfit_fail(MEMFIT_E_FORMAT, "line %u longer than %d bytes", line, INI_MAX_LINE);
        const char *s = p, *e = le;
        trim(&s, &e);
        size_t indent = (size_t)(s - p);
        p = nl ? nl + 1 : end;
        if (s == e || *s == '#' || *s == ';')
            continue;
        if (*s == '[') {
            const char *close = memchr(s, ']', (size_t)(e - s));
            if (!close)
                return memfit_fail(MEMFIT_E_FORMAT, "line %u: unterminated '['", line);
            const char *ns = s + 1, *ne = close;
            trim(&ns, &ne);
            in_section = section_matches(ns, ne, section);
            open = false;
            continue;
        }
        if (!in_section)
            continue;
        const char *eq = memchr(s, '=', (size_t)(e - s));
        bool continuation = open && indent > open_indent;
        if (!eq || (continuation && !open_nested))
            continue; /* a value's continuation, or a nested setting not asked for */
        const char *ks = s, *ke = eq, *vs = eq + 1, *ve = e;
        trim(&ks, &ke);
        trim(&vs, &ve);
        if (!continuation) {
            open = true;
            open_indent = indent;
            open_nested = parent && vs == ve && span_equals(ks, ke, parent);
            if (parent)
                continue;
        }
        if (!span_equals(ks, ke, key))
            continue;
        char *v = memfit_strndup(vs, (size_t)(ve - vs));
        if (!v)
            return MEMFIT_E_NOMEM;
        *out = v;
        return MEMFIT_OK;
    }
    if (parent)
        return memfit_fail(MEMFIT_E_NOT_FOUND, "no %s.%s in [%s]", parent, key, section);
    return memfit_fail(MEMFIT_E_NOT_FOUND, "no %s in [%s]", key, section);
}

enum memfit_status mf_ini_get(const char *text, size_t len, const char *section, const char *key,
                              char **out)
{
    return ini_lookup(text, len, section, NULL, key, out);
}

enum memfit_status mf_ini_get_nested(const char *text, size_t len, const char *section,
                                     const char *parent, const char *key, char **out)
{
    return ini_lookup(text, len, section, parent, key, out);
}

static void wipe_free(char *secret)
{
    if (!secret)
        return;
    explicit_bzero(secret, strlen(secret));
    memfit_free(secret);
}

void mf_aws_credentials_clear(struct mf_aws_credentials *creds)
{
    if (!creds)
        return;
    wipe_free(creds->access_key);
    wipe_free(creds->secret_key);
    wipe_free(creds->session_token);
    memset(creds, 0, sizeof(*creds));
}

static bool set(const char *v)
{
    return v && v[0];
}

enum memfit_status mf_aws_credentials_copy(struct mf_aws_credentials *dst,
                                           const struct mf_aws_credentials *src)
{
    struct mf_aws_credentials c = {0};
    c.access_key = memfit_strdup(src->access_key);
    c.secret_key = memfit_strdup(src->secret_key);
    if (src->session_token)
        c.session_token = memfit_strdup(src->session_token);
    if (!c.access_key || !c.secret_key || (src->session_token && !c.session_token)) {
        mf_aws_credentials_clear(&c);
        return MEMFIT_E_NOMEM;
    }
    c.origin = src->origin;
    *dst = c;
    return MEMFIT_OK;
}

/* ---- The shared files ------------------------------------------------------ */

/* `var`, else ~/`rel`; NULL in *out (and OK) when neither can be known. */
static enum memfit_status file_path(const char *var, const char *rel, char **out)
{
    const char *v = memfit_config_get(var);
    const char *home = getenv("HOME");
    if (set(v))
        *out = memfit_strdup(v);
    else if (set(home))
        *out = memfit_asprintf("%s/%s", home, rel);
    else
        return *out = NULL, MEMFIT_OK;
    return *out ? MEMFIT_OK : MEMFIT_E_NOMEM;
}

static enum memfit_status read_profile_file(const char *path, char **text, size_t *len)
{
    *text = NULL;
    *len = 0;
    if (!path)
        return MEMFIT_OK;
    enum memfit_status st = mf_read_small_file(path, 1 << 20, text, len);
    if (st == MEMFIT_E_NOT_FOUND) {
        memfit_clear_error();
        return MEMFIT_OK;
    }
    return st;
}

enum memfit_status mf_aws_profile_open(struct mf_aws_profile *out)
{
    struct mf_aws_profile p = {0};
    const char *name = memfit_config_get("AWS_PROFILE");
    enum memfit_status st = MEMFIT_E_NOMEM;
    if (!(p.name = memfit_strdup(set(name) ? name : "default")))
        goto fail;
    p.config_section = strcmp(p.name, "default") == 0 ? memfit_strdup("default")
                                                      : memfit_asprintf("profile %s", p.name);
    if (!p.config_section)
        goto fail;
    if ((st = file_path("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials", &p.credentials_path)) !=
            MEMFIT_OK ||
        (st = file_path("AWS_CONFIG_FILE", ".aws/config", &p.config_path)) != MEMFIT_OK ||
        (st = read_profile_file(p.credentials_path, &p.credentials_text, &p.credentials_len)) !=
            MEMFIT_OK ||
        (st = read_profile_file(p.config_path, &p.config_text, &p.config_len)) != MEMFIT_OK)
        goto fail;
    *out = p;
    return MEMFIT_OK;
fail:
    mf_aws_profile_close(&p);
    return st;
}

void mf_aws_profile_close(struct mf_aws_profile *p)
{
    if (!p)
        return;
    if (p->credentials_text)
        explicit_bzero(p->credentials_text, p->credentials_len);
    if (p->config_text)
        explicit_bzero(p->config_text, p->config_len);
    memfit_free(p->credentials_text);
    memfit_free(p->config_text);
    memfit_free(p->credentials_path);
    memfit_free(p->config_path);
    memfit_free(p->config_section);
    memfit_free(p->name);
    memset(p, 0, sizeof(*p));
}

/* One lookup in a profile file: E_NOT_FOUND becomes OK with *out NULL; a
 * malformed file fails naming it. */
static enum memfit_status lookup(const char *path, const char *text, size_t len,
                                 const char *section, const char *parent, const char *key,
                                 char **out)
{
    *out = NULL;
    if (!text)
        return MEMFIT_OK;
    enum memfit_status st = ini_lookup(text, len, section, parent, key, out);
    if (st == MEMFIT_E_NOT_FOUND) {
        memfit_clear_error();
        return MEMFIT_OK;
    }
    if (st == MEMFIT_E_FORMAT)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: %s", path, memfit_last_error());
    return st;
}

enum memfit_status mf_aws_config_get(const struct mf_aws_profile *p, const char *parent,
                                     const char *key, char **out)
{
    enum memfit_status st =
        lookup(p->config_path, p->config_text, p->config_len, p->config_section, parent, key, out);
    /* The default profile may also be spelled [profile default]. */
    if (st == MEMFIT_OK && !*out && strcmp(p->name, "default") == 0)
        st = lookup(p->config_path, p->config_text, p->config_len, "profile default", parent, key,
                    out);
    return st;
}

/* A setting of the environment, else of the config file: *out new or NULL. */
static enum memfit_status env_or_config(const struct mf_aws_profile *p, const char *const *vars,
                                        size_t n_vars, const char *key, char **out,
                                        const char **origin)
{
    for (size_t i = 0; i < n_vars; i++) {
        const char *v = memfit_config_get(vars[i]);
        if (set(v)) {
            *origin = vars[i];
            return (*out = memfit_strdup(v)) ? MEMFIT_OK : MEMFIT_E_NOMEM;
        }
    }
    *origin = "the AWS config file";
    return mf_aws_config_get(p, NULL, key, out);
}

enum memfit_status mf_aws_region(const struct mf_aws_profile *p, char **out, const char **origin)
{
    static const char *const vars[] = {"AWS_REGION", "AWS_DEFAULT_REGION"};
    return env_or_config(p, vars, 2, "region", out, origin);
}

static bool is_true(const char *v)
{
    return v && (strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0);
}

enum memfit_status mf_aws_endpoint(const struct mf_aws_profile *p, const char *service, char **out,
                                   const char **origin)
{
    *out = NULL;
    *origin = NULL;
    char *ignore = NULL;
    const char *ignore_env = memfit_config_get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS");
    enum memfit_status st = MEMFIT_OK;
    if (set(ignore_env)) {
        if (is_true(ignore_env))
            return MEMFIT_OK;
    } else if ((st = mf_aws_config_get(p, NULL, "ignore_configured_endpoint_urls", &ignore)) !=
               MEMFIT_OK) {
        return st;
    }
    bool ignored = is_true(ignore);
    memfit_free(ignore);
    if (ignored)
        return MEMFIT_OK;
    /* AWS_ENDPOINT_URL_<SERVICE>, then AWS_ENDPOINT_URL, then the config file. */
    char var[64];
    snprintf(var, sizeof(var), "AWS_ENDPOINT_URL_%s", service);
    for (char *c = var; *c; c++)
        *c = (char)toupper((unsigned char)*c);
    const char *v = memfit_config_get(var);
    if (!set(v)) {
        v = memfit_config_get("AWS_ENDPOINT_URL");
        *origin = "AWS_ENDPOINT_URL";
    } else {
        *origin = strcmp(service, "s3") == 0 ? "AWS_ENDPOINT_URL_S3" : "AWS_ENDPOINT_URL_STS";
    }
    if (set(v))
        return (*out = memfit_strdup(v)) ? MEMFIT_OK : MEMFIT_E_NOMEM;
    *origin = "the AWS config file";
    /* The profile's "services = NAME" names a [services NAME] section whose
     * nested "s3 =\n  endpoint_url = ..." is the service's endpoint. */
    char *services = NULL;
    if ((st = mf_aws_config_get(p, NULL, "services", &services)) != MEMFIT_OK)
        return st;
    if (services) {
        char *section = memfit_asprintf("services %s", services);
        memfit_free(services);
        if (!section)
            return MEMFIT_E_NOMEM;
        st = lookup(p->config_path, p->config_text, p->config_len, section, service, "endpoint_url",
                    out);
        memfit_free(section);
        if (st != MEMFIT_OK || *out)
            return st;
    }
    /* The same nested form inside the profile itself, then its global endpoint_url. */
    if ((st = mf_aws_config_get(p, service, "endpoint_url", out)) != MEMFIT_OK || *out)
        return st;
    return mf_aws_config_get(p, NULL, "endpoint_url", out);
}

/* ---- The credentials chain ---------------------------------------------------- */

/* The key pair (and token) of [section] in one profile file. */
static enum memfit_status from_file(const char *path, const char *text, size_t len,
                                    const char *section, struct mf_aws_credentials *c)
{
    enum memfit_status st =
        lookup(path, text, len, section, NULL, "aws_access_key_id", &c->access_key);
    if (st == MEMFIT_OK)
        st = lookup(path, text, len, section, NULL, "aws_secret_access_key", &c->secret_key);
    if (st == MEMFIT_OK)
        st = lookup(path, text, len, section, NULL, "aws_session_token", &c->session_token);
    if (st == MEMFIT_OK && !(set(c->access_key) && set(c->secret_key)))
        mf_aws_credentials_clear(c); /* half a key pair is no key pair */
    return st;
}

static enum memfit_status from_profile(struct mf_aws_credentials *c)
{
    struct mf_aws_profile p;
    enum memfit_status st = mf_aws_profile_open(&p);
    if (st != MEMFIT_OK)
        return st;
    st = from_file(p.credentials_path, p.credentials_text, p.credentials_len, p.name, c);
    if (st == MEMFIT_OK && c->access_key) {
        c->origin = "the shared credentials file";
    } else if (st == MEMFIT_OK) {
        st = from_file(p.config_path, p.config_text, p.config_len, p.config_section, c);
        if (st == MEMFIT_OK && !c->access_key && strcmp(p.name, "default") == 0)
            st = from_file(p.config_path, p.config_text, p.config_len, "profile default", c);
        c->origin = "the AWS config file";
    }
    mf_aws_profile_close(&p);
    return st;
}

static enum memfit_status from_env(struct mf_aws_credentials *c)
{
    const char *token = memfit_config_get("AWS_SESSION_TOKEN");
    c->access_key = memfit_strdup(memfit_config_get("AWS_ACCESS_KEY_ID"));
    c->secret_key = memfit_strdup(memfit_config_get("AWS_SECRET_ACCESS_KEY"));
    if (set(token))
        c->session_token = memfit_strdup(token);
    c->origin = "AWS_ACCESS_KEY_ID";
    if (!c->access_key || !c->secret_key || (set(token) && !c->session_token))
        return MEMFIT_E_NOMEM;
    return MEMFIT_OK;
}

enum memfit_status mf_aws_credentials_load(struct mf_aws_credentials *out)
{
    struct mf_aws_credentials c = {0};
    enum memfit_status st;
    if (set(memfit_config_get("AWS_ACCESS_KEY_ID")) &&
        set(memfit_config_get("AWS_SECRET_ACCESS_KEY")))
        st = from_env(&c);
    else if (set(memfit_config_get("AWS_WEB_IDENTITY_TOKEN_FILE")))
        st = mf_aws_web_identity_load(&c);
    else if ((st = from_profile(&c)) == MEMFIT_OK && !c.access_key &&
             (set(memfit_config_get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")) ||
              set(memfit_config_get("AWS_CONTAINER_CREDENTIALS_FULL_URI"))))
        st = mf_aws_container_load(&c);
    if (st != MEMFIT_OK) {
        mf_aws_credentials_clear(&c);
        return st;
    }
    if (c.session_token && !c.session_token[0]) {
        wipe_free(c.session_token);
        c.session_token = NULL;
    }
    if (c.access_key)
        memfit_log(MEMFIT_LOG_DEBUG, "AWS credentials from %s", c.origin);
    else
        c.origin = NULL;
    *out = c;
    return MEMFIT_OK;
}

/*
 * AWS credentials for S3 sources: the standard environment variables, or
 * the shared credentials file (an INI file, parsed here strictly: a line
 * longer than 4 KiB or a NUL byte is an error, not something to guess at).
 * Secrets are wiped from memory when freed and never put in a message.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

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

enum memfit_status mf_ini_get(const char *text, size_t len, const char *section, const char *key,
                              char **out)
{
    if (memchr(text, '\0', len))
        return memfit_fail(MEMFIT_E_FORMAT, "credentials file: NUL byte");
    const char *p = text, *end = text + len;
    bool in_section = false;
    unsigned line = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        line++;
        if (le - p > INI_MAX_LINE)
            return memfit_fail(MEMFIT_E_FORMAT, "credentials file:%u: line longer than %d bytes",
                               line, INI_MAX_LINE);
        const char *s = p, *e = le;
        trim(&s, &e);
        p = nl ? nl + 1 : end;
        if (s == e || *s == '#' || *s == ';')
            continue;
        if (*s == '[') {
            const char *close = memchr(s, ']', (size_t)(e - s));
            if (!close)
                return memfit_fail(MEMFIT_E_FORMAT, "credentials file:%u: unterminated '['", line);
            const char *ns = s + 1, *ne = close;
            trim(&ns, &ne);
            in_section = span_equals(ns, ne, section);
            continue;
        }
        if (!in_section)
            continue;
        const char *eq = memchr(s, '=', (size_t)(e - s));
        if (!eq)
            continue; /* continuation lines of nested settings: not ours */
        const char *ks = s, *ke = eq, *vs = eq + 1, *ve = e;
        trim(&ks, &ke);
        trim(&vs, &ve);
        if (!span_equals(ks, ke, key))
            continue;
        char *v = memfit_strndup(vs, (size_t)(ve - vs));
        if (!v)
            return MEMFIT_E_NOMEM;
        *out = v;
        return MEMFIT_OK;
    }
    return memfit_fail(MEMFIT_E_NOT_FOUND, "credentials file: no %s in [%s]", key, section);
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

/* Optional key: E_NOT_FOUND becomes OK with *out NULL. */
static enum memfit_status ini_optional(const char *text, size_t len, const char *profile,
                                       const char *key, char **out)
{
    enum memfit_status st = mf_ini_get(text, len, profile, key, out);
    if (st == MEMFIT_E_NOT_FOUND) {
        *out = NULL;
        return MEMFIT_OK;
    }
    return st;
}

static enum memfit_status from_file(struct mf_aws_credentials *c)
{
    const char *file = memfit_config_get("AWS_SHARED_CREDENTIALS_FILE");
    char *owned = NULL;
    if (!set(file)) {
        const char *home = getenv("HOME");
        if (!set(home))
            return MEMFIT_OK;
        owned = memfit_asprintf("%s/.aws/credentials", home);
        if (!owned)
            return MEMFIT_E_NOMEM;
        file = owned;
    }
    const char *profile = memfit_config_get("AWS_PROFILE");
    if (!set(profile))
        profile = "default";
    char *text = NULL;
    size_t len = 0;
    enum memfit_status st = mf_read_small_file(file, 1 << 20, &text, &len);
    if (st == MEMFIT_E_NOT_FOUND) {
        memfit_free(owned);
        return MEMFIT_OK;
    }
    if (st != MEMFIT_OK) {
        memfit_free(owned);
        return st;
    }
    st = ini_optional(text, len, profile, "aws_access_key_id", &c->access_key);
    if (st == MEMFIT_OK)
        st = ini_optional(text, len, profile, "aws_secret_access_key", &c->secret_key);
    if (st == MEMFIT_OK)
        st = ini_optional(text, len, profile, "aws_session_token", &c->session_token);
    if (st == MEMFIT_E_FORMAT)
        st = memfit_fail(MEMFIT_E_FORMAT, "%s: %s", file, memfit_last_error());
    explicit_bzero(text, len);
    memfit_free(text);
    memfit_free(owned);
    return st;
}

enum memfit_status mf_aws_credentials_load(struct mf_aws_credentials *out)
{
    struct mf_aws_credentials c = {0};
    enum memfit_status st = MEMFIT_OK;
    const char *id = memfit_config_get("AWS_ACCESS_KEY_ID");
    const char *secret = memfit_config_get("AWS_SECRET_ACCESS_KEY");
    if (set(id) && set(secret)) {
        const char *token = memfit_config_get("AWS_SESSION_TOKEN");
        c.access_key = memfit_strdup(id);
        c.secret_key = memfit_strdup(secret);
        if (set(token))
            c.session_token = memfit_strdup(token);
        if (!c.access_key || !c.secret_key || (set(token) && !c.session_token))
            st = MEMFIT_E_NOMEM;
    } else {
        st = from_file(&c);
    }
    if (st == MEMFIT_OK && !(c.access_key && c.secret_key)) {
        /* Half a key pair is no key pair: go anonymous rather than sign wrongly. */
        mf_aws_credentials_clear(&c);
    }
    if (st != MEMFIT_OK) {
        mf_aws_credentials_clear(&c);
        return st;
    }
    if (c.session_token && !c.session_token[0]) {
        wipe_free(c.session_token);
        c.session_token = NULL;
    }
    *out = c;
    return MEMFIT_OK;
}

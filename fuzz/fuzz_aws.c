/* libFuzzer target for the AWS credential parsers (src/store/aws.c,
 * aws_remote.c): the strict INI of ~/.aws/credentials and ~/.aws/config
 * (sections, nested sub-properties, indentation continuation), the STS
 * AssumeRoleWithWebIdentity answer (XML), the container endpoint's answer
 * (JSON), both error answers and the Expiration times. Every parser sees the
 * whole input. Besides crashes and leaks, it checks that:
 *   - an INI value is the trimmed text of one line of the input, and a second
 *     lookup gives the same answer;
 *   - an STS secret is, byte for byte, the text between its tags (less the
 *     blanks around it, with XML's five entities decoded);
 *   - a container secret is the string jansson reads at its key;
 *   - an error text is NUL-terminated, fits its buffer and holds no control
 *     character;
 *   - every parse gives the same result twice. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/alloc.h"
#include "store/internal.h"

#define MAX_INPUT 16384

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* The value is a trimmed span of one line of the input. */
static void check_ini_value(const char *text, size_t len, const char *v)
{
    size_t n = strlen(v);
    if (memchr(v, '\n', n) || (n && (v[0] == ' ' || v[0] == '\t' || v[n - 1] == ' ' ||
                                     v[n - 1] == '\t' || v[n - 1] == '\r')))
        abort();
    if (n && !memmem(text, len, v, n))
        abort();
}

static void fuzz_ini(const char *text, size_t len, const char *section, const char *parent,
                     const char *key)
{
    char *a = NULL, *b = NULL;
    enum memfit_status sa = parent ? mf_ini_get_nested(text, len, section, parent, key, &a)
                                   : mf_ini_get(text, len, section, key, &a);
    enum memfit_status sb = parent ? mf_ini_get_nested(text, len, section, parent, key, &b)
                                   : mf_ini_get(text, len, section, key, &b);
    if (sa != sb || (sa == MEMFIT_OK && !same(a, b)))
        abort();
    if (sa == MEMFIT_OK)
        check_ini_value(text, len, a);
    memfit_free(a);
    memfit_free(b);
}

/* [s, e) with the blanks around it cut, as the STS parser does. */
static void trim_space(const char **s, const char **e)
{
    while (*s < *e && strchr(" \t\r\n\v\f", **s) && **s)
        (*s)++;
    while (*e > *s && strchr(" \t\r\n\v\f", (*e)[-1]) && (*e)[-1])
        (*e)--;
}

/* The raw text of <name> inside the first <Credentials>, as the parser finds it. */
static bool sts_raw(const char *text, size_t len, const char *name, const char **vs,
                    const char **ve)
{
    const char *end = text + len;
    const char *cs = memmem(text, len, "<Credentials>", 13);
    if (!cs)
        return false;
    cs += 13;
    const char *ce = memmem(cs, (size_t)(end - cs), "</Credentials>", 14);
    if (!ce)
        return false;
    char open[32], close[32];
    size_t no = (size_t)snprintf(open, sizeof(open), "<%s>", name);
    size_t nc = (size_t)snprintf(close, sizeof(close), "</%s>", name);
    const char *a = memmem(cs, (size_t)(ce - cs), open, no);
    if (!a)
        return false;
    a += no;
    const char *b = memmem(a, (size_t)(ce - a), close, nc);
    if (!b)
        return false;
    trim_space(&a, &b);
    *vs = a;
    *ve = b;
    return true;
}

/* The decoded value matches the raw text byte for byte, entities aside. */
static void check_sts_value(const char *text, size_t len, const char *name, const char *v)
{
    const char *s, *e;
    if (!v || !sts_raw(text, len, name, &s, &e))
        abort();
    static const char *const entities[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"};
    static const char decoded[] = "&<>\"'";
    for (; *v; v++) {
        if (s >= e || (unsigned char)*v < 0x20 || *v == 0x7f)
            abort();
        if (*s != '&') {
            if (*s++ != *v)
                abort();
            continue;
        }
        size_t i = 0;
        while (i < 5 && !((size_t)(e - s) >= strlen(entities[i]) &&
                          memcmp(s, entities[i], strlen(entities[i])) == 0))
            i++;
        if (i == 5 || decoded[i] != *v)
            abort();
        s += strlen(entities[i]);
    }
    if (s != e)
        abort();
}

static void check_sts(const char *text, size_t len, const struct mf_aws_credentials *c)
{
    check_sts_value(text, len, "AccessKeyId", c->access_key);
    check_sts_value(text, len, "SecretAccessKey", c->secret_key);
    check_sts_value(text, len, "SessionToken", c->session_token);
}

/* The value equals what jansson reads at `key` (no control character). */
static void check_json_value(json_t *root, const char *key, const char *v)
{
    json_t *j = json_object_get(root, key);
    if (!v) {
        if (j)
            abort();
        return;
    }
    if (!json_is_string(j) || strcmp(json_string_value(j), v) != 0 ||
        !mf_token_is_clean(v, strlen(v)))
        abort();
}

static void check_container(const char *text, size_t len, const struct mf_aws_credentials *c)
{
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
    if (!root || !c->access_key || !c->secret_key)
        abort();
    check_json_value(root, "AccessKeyId", c->access_key);
    check_json_value(root, "SecretAccessKey", c->secret_key);
    check_json_value(root, "Token", c->session_token);
    json_decref(root);
}

/* One answer parsed twice: the same result both times, checked by `check`. */
static void fuzz_answer(const char *text, size_t len,
                        enum memfit_status (*parse)(const char *, size_t,
                                                    struct mf_aws_credentials *, int64_t *),
                        void (*check)(const char *, size_t, const struct mf_aws_credentials *))
{
    struct mf_aws_credentials a = {0}, b = {0};
    int64_t ea = 0, eb = 0;
    enum memfit_status sa = parse(text, len, &a, &ea);
    enum memfit_status sb = parse(text, len, &b, &eb);
    if (sa != sb)
        abort();
    if (sa == MEMFIT_OK) {
        if (ea != eb || !same(a.access_key, b.access_key) || !same(a.secret_key, b.secret_key) ||
            !same(a.session_token, b.session_token))
            abort();
        check(text, len, &a);
    }
    mf_aws_credentials_clear(&a);
    mf_aws_credentials_clear(&b);
}

static void check_error_text(const char *buf, size_t size)
{
    size_t n = strnlen(buf, size);
    if (n == size)
        abort();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f)
            abort();
}

static void fuzz_error_texts(const char *text, size_t len)
{
    char a[64], b[64];
    mf_aws_sts_error_text(text, len, a, sizeof(a));
    check_error_text(a, sizeof(a));
    mf_aws_sts_error_text(text, len, b, sizeof(b));
    if (strcmp(a, b) != 0)
        abort();
    mf_aws_container_error_text(text, len, a, sizeof(a));
    check_error_text(a, sizeof(a));
    mf_aws_container_error_text(text, len, b, sizeof(b));
    if (strcmp(a, b) != 0)
        abort();
}

/* Days from 1970-01-01 to y-m-1 (proleptic Gregorian), d past it added by the caller. */
static int64_t days_from_civil(int64_t y, int64_t m)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400, yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5,
            doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* A plain "YYYY-MM-DDTHH:MM:SSZ": whether it is valid and its seconds, by arithmetic. */
static bool plain_time(const char *t, size_t len, int64_t *out)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:ddZ";
    if (len != 20)
        return false;
    for (size_t i = 0; i < 20; i++)
        if (shape[i] == 'd' ? !(t[i] >= '0' && t[i] <= '9') : t[i] != shape[i])
            return false;
#define NUM(i, n) ((n) == 4 ? (t[i] - '0') * 1000 + (t[i + 1] - '0') * 100 + NUM2(i + 2) : NUM2(i))
#define NUM2(i)   ((t[i] - '0') * 10 + (t[(i) + 1] - '0'))
    int64_t y = NUM(0, 4), mo = NUM2(5), d = NUM2(8), h = NUM2(11), mi = NUM2(14), sec = NUM2(17);
#undef NUM
#undef NUM2
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return false;
    *out = (days_from_civil(y, mo) + d - 1) * 86400 + h * 3600 + mi * 60 + sec;
    return true;
}

static void fuzz_time(const char *text, size_t len)
{
    int64_t a = 0, b = 0;
    bool ok = mf_aws_parse_time(text, len, &a);
    if (ok != mf_aws_parse_time(text, len, &b) || (ok && a != b))
        abort();
    int64_t expected = 0;
    bool plain = plain_time(text, len, &expected);
    if (len == 20 && text[19] == 'Z' && !memchr(text, '.', len) &&
        (plain != ok || (ok && a != expected)))
        abort();
    /* A 'Z' time and the same with a fraction of a second are the same second. */
    if (ok && len >= 20 && len < 64 && text[len - 1] == 'Z' && !memchr(text, '.', len)) {
        char frac[80];
        memcpy(frac, text, len - 1);
        memcpy(frac + len - 1, ".5Z", 3);
        if (!mf_aws_parse_time(frac, len + 2, &b) || a != b)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_INPUT)
        return 0;
    /* A copy of exactly `size` bytes, so ASan sees any read past the end. */
    char *text = memfit_malloc(size ? size : 1);
    if (!text)
        return 0;
    memcpy(text, data, size);

    fuzz_ini(text, size, "default", NULL, "aws_access_key_id");
    fuzz_ini(text, size, "profile dev", NULL, "aws_secret_access_key");
    fuzz_ini(text, size, "default", "s3", "endpoint_url");
    fuzz_ini(text, size, "services x", "sts", "endpoint_url");
    fuzz_answer(text, size, mf_aws_parse_sts_xml, check_sts);
    fuzz_answer(text, size, mf_aws_parse_container_json, check_container);
    fuzz_error_texts(text, size);
    fuzz_time(text, size);
    memfit_clear_error();

    char *str = memfit_strndup(text, size);
    if (str) {
        (void)mf_aws_container_url_allowed(str);
        memfit_free(str);
    }
    memfit_free(text);
    return 0;
}

/* Unit tests of the store's AWS and Hub settings (src/store/aws.c,
 * aws_remote.c, the Hub token of http.c): nested INI settings, the config
 * file's [profile NAME] sections, the order of the credentials chain, region
 * and endpoint from the environment and the config file, the STS XML and
 * container JSON answers (good, missing elements, garbage), the expiry
 * cache (refresh before Expiration, a failed refresh, many threads), the
 * container URL rule, the Hub token file, and allocation fault walks over
 * the parsers. Only closed loopback ports are dialled; the stand-in servers
 * are in tests/integration/store_creds.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/internal.h"
#include "test_util.h"

static char tmp_root[256];

static const char *tmp_path(const char *rel, char *buf, size_t size)
{
    snprintf(buf, size, "%s/%s", tmp_root, rel);
    return buf;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    fclose(f);
}

static const char *const aws_vars[] = {
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_STS",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "HF_TOKEN",
    "HF_TOKEN_PATH",
    "HF_HOME",
    "XDG_CACHE_HOME",
};

/* No AWS or Hub setting from the machine running the tests, and a HOME without files. */
static void clear_env(void)
{
    for (size_t i = 0; i < sizeof(aws_vars) / sizeof(aws_vars[0]); i++)
        unsetenv(aws_vars[i]);
    char home[512];
    setenv("HOME", tmp_path("home", home, sizeof(home)), 1);
    mf_aws_cache_reset();
}

static void expect_error(enum memfit_status got, enum memfit_status want, const char *words)
{
    if (got != want || !strstr(memfit_last_error(), words))
        fprintf(stderr, "got %s '%s', want %s with '%s'\n", memfit_status_name(got),
                memfit_last_error(), memfit_status_name(want), words);
    assert_int_equal(got, want);
    assert_non_null(strstr(memfit_last_error(), words));
}

/* ---- INI nesting ------------------------------------------------------------ */

static const char config[] = "[default]\n"
                             "region = eu-west-3\n"
                             "\n"
                             "[profile   dev]\n"
                             "region=ap-south-1\n"
                             "aws_access_key_id = AKIACONFIG\n"
                             "aws_secret_access_key = configsecret\n"
                             "s3 =\n"
                             "  addressing_style = path\n"
                             "  endpoint_url = http://127.0.0.1:7001\n"
                             "endpoint_url = http://127.0.0.1:7002\n"
                             "services = local\n"
                             "note = first line\n"
                             "  endpoint_url = http://continuation.invalid\n"
                             "\n"
                             "[services local]\n"
                             "sts =\n"
                             "    endpoint_url = http://127.0.0.1:7003\n"
                             "s3 =\n"
                             "    endpoint_url = http://127.0.0.1:7004\n";

static void expect_ini(const char *section, const char *parent, const char *key, const char *want)
{
    char *v = NULL;
    enum memfit_status st =
        parent ? mf_ini_get_nested(config, strlen(config), section, parent, key, &v)
               : mf_ini_get(config, strlen(config), section, key, &v);
    if (!want) {
        assert_int_equal(st, MEMFIT_E_NOT_FOUND);
        return;
    }
    assert_int_equal(st, MEMFIT_OK);
    assert_string_equal(v, want);
    memfit_free(v);
}

static void test_ini_nested(void **state)
{
    (void)state;
    expect_ini("profile dev", NULL, "region", "ap-south-1");
    /* An indented line belongs to the property above it, never to the section. */
    expect_ini("profile dev", NULL, "endpoint_url", "http://127.0.0.1:7002");
    expect_ini("profile dev", NULL, "addressing_style", NULL);
    expect_ini("profile dev", "s3", "addressing_style", "path");
    expect_ini("profile dev", "s3", "endpoint_url", "http://127.0.0.1:7001");
    /* Continuation lines of a property with a value are not sub-properties. */
    expect_ini("profile dev", "note", "endpoint_url", NULL);
    expect_ini("services local", "s3", "endpoint_url", "http://127.0.0.1:7004");
    expect_ini("services local", "sts", "endpoint_url", "http://127.0.0.1:7003");
    expect_ini("services local", "iam", "endpoint_url", NULL);
    expect_ini("dev", NULL, "region", NULL); /* the config file says [profile dev] */
    /* A first property may be indented (as the AWS CLI reads it). */
    static const char indented[] = "[default]\n  region = us-west-2\n  other = 1\n";
    char *v = NULL;
    assert_int_equal(mf_ini_get(indented, strlen(indented), "default", "other", &v), MEMFIT_OK);
    assert_string_equal(v, "1");
    memfit_free(v);
}

/* ---- Profiles, the chain's files, region and endpoint ------------------------- */

static void write_files(const char *credentials, const char *config_text)
{
    char path[512];
    if (credentials) {
        write_text(tmp_path("credentials", path, sizeof(path)), credentials);
        setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);
    }
    if (config_text) {
        write_text(tmp_path("config", path, sizeof(path)), config_text);
        setenv("AWS_CONFIG_FILE", path, 1);
    }
}

static void expect_key(const char *access_key, const char *origin)
{
    struct mf_aws_credentials c;
    enum memfit_status st = mf_aws_credentials_load(&c);
    if (st != MEMFIT_OK)
        fprintf(stderr, "%s\n", memfit_last_error());
    assert_int_equal(st, MEMFIT_OK);
    if (!access_key) {
        assert_null(c.access_key);
        return;
    }
    assert_non_null(c.access_key);
    assert_string_equal(c.access_key, access_key);
    assert_string_equal(c.origin, origin);
    mf_aws_credentials_clear(&c);
}

static void test_credentials_order(void **state)
{
    (void)state;
    clear_env();
    expect_key(NULL, NULL);
    write_files(NULL, config);
    expect_key(NULL, NULL); /* [default] of the config has no key */
    setenv("AWS_PROFILE", "dev", 1);
    expect_key("AKIACONFIG", "the AWS config file");
    /* The credentials file comes before the config file... */
    write_files("[dev]\naws_access_key_id = AKIACREDS\naws_secret_access_key = s\n"
                "[profile dev]\naws_access_key_id = AKIAWRONG\naws_secret_access_key = s\n",
                NULL);
    expect_key("AKIACREDS", "the shared credentials file");
    /* ... half a pair there is no pair: the config's is used. */
    write_files("[dev]\naws_access_key_id = AKIAHALF\n", NULL);
    expect_key("AKIACONFIG", "the AWS config file");
    /* The environment comes first. */
    setenv("AWS_ACCESS_KEY_ID", "AKIAENV", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
    expect_key("AKIAENV", "AWS_ACCESS_KEY_ID");
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    /* [profile default] is the default profile too. */
    unsetenv("AWS_PROFILE");
    write_files("", "[profile default]\naws_access_key_id = AKIADEF\naws_secret_access_key = x\n");
    expect_key("AKIADEF", "the AWS config file");
    /* A malformed config file fails, naming it. */
    write_files("", "[default\n");
    struct mf_aws_credentials c;
    expect_error(mf_aws_credentials_load(&c), MEMFIT_E_FORMAT, "/config: line 1: unterminated");
    clear_env();
}

static void expect_s3_url(const char *want)
{
    struct mf_source_env env;
    mf_source_env_from_config(&env);
    struct mf_source src;
    enum memfit_status st = mf_source_parse("s3://bkt/m.bin", &env, &src);
    if (st != MEMFIT_OK)
        fprintf(stderr, "%s\n", memfit_last_error());
    assert_int_equal(st, MEMFIT_OK);
    assert_string_equal(src.url, want);
    mf_source_clear(&src);
}

static void set_expect(const char *var, const char *value, const char *url)
{
    setenv(var, value, 1);
    expect_s3_url(url);
}

static void test_region_endpoint(void **state)
{
    (void)state;
    clear_env();
    expect_s3_url("https://bkt.s3.us-east-1.amazonaws.com/m.bin");
    write_files(NULL, config);
    expect_s3_url("https://bkt.s3.eu-west-3.amazonaws.com/m.bin");
    set_expect("AWS_DEFAULT_REGION", "us-west-1", "https://bkt.s3.us-west-1.amazonaws.com/m.bin");
    set_expect("AWS_REGION", "ca-central-1", "https://bkt.s3.ca-central-1.amazonaws.com/m.bin");
    unsetenv("AWS_REGION");
    unsetenv("AWS_DEFAULT_REGION");
    /* The profile's services section wins over its nested s3 and its endpoint_url. */
    setenv("AWS_PROFILE", "dev", 1);
    expect_s3_url("http://127.0.0.1:7004/bkt/m.bin");
    struct mf_aws_profile p;
    char *ep = NULL, *region = NULL;
    const char *origin = NULL;
    assert_int_equal(mf_aws_profile_open(&p), MEMFIT_OK);
    assert_int_equal(mf_aws_endpoint(&p, "sts", &ep, &origin), MEMFIT_OK);
    assert_string_equal(ep, "http://127.0.0.1:7003");
    assert_string_equal(origin, "the AWS config file");
    memfit_free(ep);
    assert_int_equal(mf_aws_region(&p, &region, &origin), MEMFIT_OK);
    assert_string_equal(region, "ap-south-1");
    memfit_free(region);
    mf_aws_profile_close(&p);
    write_files(NULL, "[profile dev]\ns3 =\n  endpoint_url = http://127.0.0.1:7001\n"
                      "endpoint_url = http://127.0.0.1:7002\n");
    expect_s3_url("http://127.0.0.1:7001/bkt/m.bin");
    write_files(NULL, "[profile dev]\nendpoint_url = http://127.0.0.1:7002\n");
    expect_s3_url("http://127.0.0.1:7002/bkt/m.bin");
    /* The environment wins: the service's variable, then the global one. */
    set_expect("AWS_ENDPOINT_URL", "http://127.0.0.1:8001", "http://127.0.0.1:8001/bkt/m.bin");
    set_expect("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:8002", "http://127.0.0.1:8002/bkt/m.bin");
    /* ... unless configured endpoints are ignored. */
    set_expect("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true",
               "https://bkt.s3.us-east-1.amazonaws.com/m.bin");
    unsetenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS");
    unsetenv("AWS_ENDPOINT_URL");
    unsetenv("AWS_ENDPOINT_URL_S3");
    write_files(NULL, "[profile dev]\nendpoint_url = http://127.0.0.1:7002\n"
                      "ignore_configured_endpoint_urls = true\n");
    expect_s3_url("https://bkt.s3.us-east-1.amazonaws.com/m.bin");
    /* A bad value says where it came from. */
    write_files(NULL, "[profile dev]\nregion = Not/A/Region\n");
    struct mf_source_env env;
    mf_source_env_from_config(&env);
    struct mf_source src;
    expect_error(mf_source_parse("s3://bkt/m.bin", &env, &src), MEMFIT_E_RANGE,
                 "(the AWS config file) is not a region name");
    write_files(NULL, "[profile dev]\nendpoint_url = ftp://x\n");
    expect_error(mf_source_parse("s3://bkt/m.bin", &env, &src), MEMFIT_E_RANGE,
                 "'ftp://x' (the AWS config file)");
    /* Hub sources do not read the AWS files at all. */
    write_files(NULL, "[default\n");
    assert_int_equal(mf_source_parse("hf://o/r/x.bin", &env, &src), MEMFIT_OK);
    mf_source_clear(&src);
    clear_env();
}

/* ---- Answers ------------------------------------------------------------------ */

#define STS_HEAD                                                                                   \
    "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n"    \
    "  <AssumeRoleWithWebIdentityResult>\n"                                                        \
    "    <SubjectFromWebIdentityToken>system:serviceaccount:ml:memfit</"                           \
    "SubjectFromWebIdentityToken>\n"
#define STS_TAIL                                                                                   \
    "  </AssumeRoleWithWebIdentityResult>\n"                                                       \
    "</AssumeRoleWithWebIdentityResponse>\n"

static enum memfit_status parse_sts(const char *text, struct mf_aws_credentials *c, int64_t *exp)
{
    return mf_aws_parse_sts_xml(text, strlen(text), c, exp);
}

static enum memfit_status parse_json(const char *text, struct mf_aws_credentials *c, int64_t *exp)
{
    return mf_aws_parse_container_json(text, strlen(text), c, exp);
}

static void test_sts_xml(void **state)
{
    (void)state;
    struct mf_aws_credentials c;
    int64_t exp = 0;
    static const char good[] = STS_HEAD "    <Credentials>\n"
                                        "      <SessionToken>FwoG&amp;Zx/y+z==</SessionToken>\n"
                                        "      <SecretAccessKey>wJal/r+K</SecretAccessKey>\n"
                                        "      <Expiration>2024-05-01T12:00:00Z</Expiration>\n"
                                        "      <AccessKeyId>ASIASTS</AccessKeyId>\n"
                                        "    </Credentials>\n" STS_TAIL;
    assert_int_equal(parse_sts(good, &c, &exp), MEMFIT_OK);
    assert_string_equal(c.access_key, "ASIASTS");
    assert_string_equal(c.secret_key, "wJal/r+K");
    assert_string_equal(c.session_token, "FwoG&Zx/y+z==");
    assert_true(exp == 1714564800);
    mf_aws_credentials_clear(&c);

    static const struct {
        const char *text, *words;
    } bad[] = {
        {STS_HEAD "<Credentials><AccessKeyId>A</AccessKeyId><SecretAccessKey>S</SecretAccessKey>"
                  "<Expiration>2024-05-01T12:00:00Z</Expiration></Credentials>" STS_TAIL,
         "SessionToken missing"},
        {STS_HEAD "<Credentials><AccessKeyId>A</AccessKeyId><AccessKeyId>B</AccessKeyId>"
                  "</Credentials>" STS_TAIL,
         "AccessKeyId given twice"},
        {STS_HEAD "<Credentials><AccessKeyId>A</AccessKeyId><SecretAccessKey>S</SecretAccessKey>"
                  "<SessionToken>T</SessionToken><Expiration>tomorrow</Expiration>"
                  "</Credentials>" STS_TAIL,
         "Expiration 'tomorrow' is not a UTC time"},
        {STS_HEAD "<Credentials><AccessKeyId>A&nbsp;</AccessKeyId></Credentials>" STS_TAIL,
         "unknown '&' entity"},
        {STS_HEAD "<Credentials><AccessKeyId><b>A</b></AccessKeyId></Credentials>" STS_TAIL,
         "AccessKeyId not plain text"},
        {STS_HEAD "<Credentials><AccessKeyId></AccessKeyId></Credentials>" STS_TAIL,
         "AccessKeyId empty"},
        {STS_HEAD "<Credentials><AccessKeyId>A\x01</AccessKeyId></Credentials>" STS_TAIL,
         "control character"},
        {STS_HEAD "<Credentials><AccessKeyId>A</AccessKeyId>" STS_TAIL, "Credentials element not "
                                                                        "closed"},
        {STS_HEAD STS_TAIL, "Credentials element missing"},
        {"<html><body>Service Unavailable</body></html>", "not an STS answer"},
        {"\x89PNG garbage \xff\xfe", "not an STS answer"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_error(parse_sts(bad[i].text, &c, &exp), MEMFIT_E_FORMAT, bad[i].words);
    /* A secret is never quoted in a message. */
    expect_error(parse_sts(STS_HEAD "<Credentials><AccessKeyId>A</AccessKeyId><SecretAccessKey>"
                                    "TOPSECRET&bad;</SecretAccessKey></Credentials>" STS_TAIL,
                           &c, &exp),
                 MEMFIT_E_FORMAT, "SecretAccessKey holds an unknown");
    assert_null(strstr(memfit_last_error(), "TOPSECRET"));
}

static void test_container_json(void **state)
{
    (void)state;
    struct mf_aws_credentials c;
    int64_t exp = 0;
    assert_int_equal(parse_json("{\"RoleArn\": \"arn:aws:iam::1:role/x\", \"AccessKeyId\": "
                                "\"ASIAC\", \"SecretAccessKey\": \"s/k+\", \"Token\": \"t==\", "
                                "\"Expiration\": \"2024-05-01T12:00:00.123+02:00\"}",
                                &c, &exp),
                     MEMFIT_OK);
    assert_string_equal(c.access_key, "ASIAC");
    assert_string_equal(c.session_token, "t==");
    assert_true(exp == 1714564800 - 7200);
    mf_aws_credentials_clear(&c);
    assert_int_equal(parse_json("{\"AccessKeyId\": \"A\", \"SecretAccessKey\": \"S\"}", &c, &exp),
                     MEMFIT_OK);
    assert_null(c.session_token);
    assert_true(exp == INT64_MAX);
    mf_aws_credentials_clear(&c);
    expect_error(parse_json("{\"AccessKeyId\": \"A\"}", &c, &exp), MEMFIT_E_FORMAT,
                 "no SecretAccessKey");
    expect_error(parse_json("{\"AccessKeyId\": 5, \"SecretAccessKey\": \"S\"}", &c, &exp),
                 MEMFIT_E_FORMAT, "AccessKeyId is not a non-empty string");
    expect_error(parse_json("{\"AccessKeyId\": \"A\", \"SecretAccessKey\": \"S\", "
                            "\"Expiration\": \"2024-13-01T00:00:00Z\"}",
                            &c, &exp),
                 MEMFIT_E_FORMAT, "is not a UTC time");
    expect_error(parse_json("{\"AccessKeyId\": \"A\", \"SecretAccessKey\": \"S\\n\"}", &c, &exp),
                 MEMFIT_E_FORMAT, "control character");
    expect_error(parse_json("{\"AccessKeyId\": \"A\", \"AccessKeyId\": \"B\"}", &c, &exp),
                 MEMFIT_E_FORMAT, "not JSON");
    expect_error(parse_json("<html>", &c, &exp), MEMFIT_E_FORMAT, "not JSON");
    expect_error(parse_json("[1]", &c, &exp), MEMFIT_E_FORMAT, "not a JSON object");
}

static void test_times(void **state)
{
    (void)state;
    int64_t t = 0;
    assert_true(mf_aws_parse_time("1970-01-01T00:00:00Z", 20, &t) && t == 0);
    /* timegm's answer -1 is a time, not only its error (found by fuzz_aws). */
    assert_true(mf_aws_parse_time("1969-12-31T23:59:59Z", 20, &t) && t == -1);
    assert_true(mf_aws_parse_time("1970-01-01T01:00:00+01:00", 25, &t) && t == 0);
    assert_true(mf_aws_parse_time("2024-05-01T12:00:00.5Z", 22, &t) && t == 1714564800);
    assert_true(mf_aws_parse_time("2024-05-01T12:00:00-01:30", 25, &t) && t == 1714564800 + 5400);
    static const char *const bad[] = {"2024-05-01 12:00:00Z",
                                      "2024-05-01T12:00:00",
                                      "2024-05-01T12:00Z",
                                      "2024-05-01T24:00:00Z",
                                      "2024-05-01T12:00:00.Z",
                                      "2024-05-01T12:00:00Zjunk",
                                      ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(mf_aws_parse_time(bad[i], strlen(bad[i]), &t));
}

static void test_container_urls(void **state)
{
    (void)state;
    static const char *const allowed[] = {
        "http://169.254.170.2/v2/credentials/abc",
        "http://169.254.170.23/v1/credentials",
        "http://[fd00:ec2::23]/v1/credentials",
        "http://127.0.0.1:8080/creds",
        "http://127.1.2.3/x",
        "http://localhost:9/x",
        "http://[::1]:80/x",
        "https://creds.example.com/x",
    };
    static const char *const refused[] = {
        "http://169.254.169.254/latest/meta-data",
        "http://example.com/creds",
        "http://127.0.0.1.example.com/x",
        "http://128.0.0.1/x",
        "http://localhost.evil/x",
        "ftp://127.0.0.1/x",
        "http://user@127.0.0.1/x",
        "http://1270.0.0.1/x",
    };
    for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
        assert_true(mf_aws_container_url_allowed(allowed[i]));
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
        assert_false(mf_aws_container_url_allowed(refused[i]));
}

/* ---- The cache ---------------------------------------------------------------------- */

struct fake {
    int n_fetches;
    int64_t expires_s;
    bool fail;
    unsigned delay_ms;
    pthread_mutex_t mu;
};

static enum memfit_status fake_fetch(void *ctx, struct mf_aws_credentials *out, int64_t *exp)
{
    struct fake *f = ctx;
    pthread_mutex_lock(&f->mu);
    int n = ++f->n_fetches;
    bool fail = f->fail;
    *exp = f->expires_s;
    pthread_mutex_unlock(&f->mu);
    if (f->delay_ms)
        usleep(f->delay_ms * 1000);
    if (fail)
        return memfit_fail(MEMFIT_E_NETWORK, "fake endpoint: down");
    char key[32];
    snprintf(key, sizeof(key), "ASIA%d", n);
    struct mf_aws_credentials c = {(char *)key, (char *)"secret", (char *)"token", "fake"};
    return mf_aws_credentials_copy(out, &c);
}

static void expect_cached(struct mf_aws_provider *p, int64_t now, const char *key)
{
    struct mf_aws_credentials c;
    enum memfit_status st = mf_aws_cache_get(p, now, &c);
    if (!key) {
        assert_int_equal(st, MEMFIT_E_NETWORK);
        return;
    }
    assert_int_equal(st, MEMFIT_OK);
    assert_string_equal(c.access_key, key);
    assert_string_equal(c.session_token, "token");
    mf_aws_credentials_clear(&c);
}

static void test_cache_expiry(void **state)
{
    (void)state;
    mf_aws_cache_reset();
    struct fake f = {.expires_s = 10000, .mu = PTHREAD_MUTEX_INITIALIZER};
    struct mf_aws_provider p = {"fake-a", fake_fetch, &f};
    expect_cached(&p, 1000, "ASIA1");
    expect_cached(&p, 5000, "ASIA1"); /* still fresh: no fetch */
    assert_int_equal(f.n_fetches, 1);
    /* Within the refresh window before Expiration: fetched again. */
    f.expires_s = 20000;
    expect_cached(&p, 10000 - MF_AWS_REFRESH_BEFORE_S, "ASIA2");
    assert_int_equal(f.n_fetches, 2);
    expect_cached(&p, 10000, "ASIA2");
    /* A failed refresh keeps the cached ones while they are valid for a minute... */
    f.fail = true;
    expect_cached(&p, 20000 - 200, "ASIA2");
    assert_int_equal(f.n_fetches, 3);
    /* ... and fails once they are not. */
    expect_cached(&p, 20000 - 30, NULL);
    assert_string_equal(memfit_last_error(), "fake endpoint: down");
    expect_cached(&p, 30000, NULL);
    /* Another provider's settings fetch anew. */
    f.fail = false;
    f.expires_s = 90000;
    expect_cached(&p, 30000, "ASIA6");
    struct mf_aws_provider q = {"fake-b", fake_fetch, &f};
    expect_cached(&q, 30000, "ASIA7");
    mf_aws_cache_reset();
}

struct racer {
    struct mf_aws_provider *p;
    int ok;
};

static void *race(void *arg)
{
    struct racer *r = arg;
    for (int i = 0; i < 20; i++) {
        struct mf_aws_credentials c;
        if (mf_aws_cache_get(r->p, 1000, &c) == MEMFIT_OK && strcmp(c.access_key, "ASIA1") == 0)
            r->ok++;
        mf_aws_credentials_clear(&c);
    }
    return NULL;
}

static void test_cache_threads(void **state)
{
    (void)state;
    mf_aws_cache_reset();
    struct fake f = {.expires_s = 100000, .delay_ms = 50, .mu = PTHREAD_MUTEX_INITIALIZER};
    struct mf_aws_provider p = {"fake-threads", fake_fetch, &f};
    pthread_t threads[8];
    struct racer r[8];
    for (int i = 0; i < 8; i++) {
        r[i] = (struct racer){&p, 0};
        assert_int_equal(pthread_create(&threads[i], NULL, race, &r[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(r[i].ok, 20);
    }
    assert_int_equal(f.n_fetches, 1); /* one fetch served every thread */
    mf_aws_cache_reset();
}

/* ---- Settings refused before any request ---------------------------------------- */

/* Sets `var` and expects the chain to fail with `st` and `words`. */
static void set_expect_error(const char *var, const char *value, enum memfit_status st,
                             const char *words)
{
    struct mf_aws_credentials c;
    setenv(var, value, 1);
    expect_error(mf_aws_credentials_load(&c), st, words);
}

static void test_remote_settings(void **state)
{
    (void)state;
    clear_env();
    char token[512];
    write_text(tmp_path("web-token", token, sizeof(token)), "eyJhbGciOi.payload.sig\n");
    set_expect_error("AWS_WEB_IDENTITY_TOKEN_FILE", token, MEMFIT_E_RANGE, "AWS_ROLE_ARN is not");
    setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/memfit", 1);
    set_expect_error("AWS_ROLE_SESSION_NAME", "bad name", MEMFIT_E_RANGE, "AWS_ROLE_SESSION_NAME");
    unsetenv("AWS_ROLE_SESSION_NAME");
    /* STS at a closed port: the failure names STS, the endpoint and the role. */
    set_expect_error("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:1", MEMFIT_E_NETWORK,
                     "AWS credentials from web identity (STS http://127.0.0.1:1/ from "
                     "AWS_ENDPOINT_URL_STS, role arn:aws:iam::123456789012:role/memfit)");
    set_expect_error("AWS_WEB_IDENTITY_TOKEN_FILE", "/nonexistent/token", MEMFIT_E_NOT_FOUND,
                     "AWS_WEB_IDENTITY_TOKEN_FILE: /nonexistent/token");
    clear_env();
    set_expect_error(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://169.254.169.254/latest", MEMFIT_E_RANGE,
        "AWS_CONTAINER_CREDENTIALS_FULL_URI 'http://169.254.169.254/latest': only https");
    set_expect_error("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:1/creds",
                     MEMFIT_E_NETWORK,
                     "AWS credentials from the container endpoint http://127.0.0.1:1/creds "
                     "(AWS_CONTAINER_CREDENTIALS_FULL_URI)");
    set_expect_error("AWS_CONTAINER_AUTHORIZATION_TOKEN", "bad\r\nX-Injected: 1", MEMFIT_E_FORMAT,
                     "AWS_CONTAINER_AUTHORIZATION_TOKEN holds a control character");
    set_expect_error("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "v2/creds", MEMFIT_E_RANGE,
                     "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI must be a path");
    /* Static keys in a file come before the container. */
    unsetenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    write_files("[default]\naws_access_key_id = AKIAFILE\naws_secret_access_key = s\n", NULL);
    expect_key("AKIAFILE", "the shared credentials file");
    clear_env();
}

/* ---- The Hub token ---------------------------------------------------------------- */

static void expect_hf_token(const char *want)
{
    char *t = NULL;
    enum memfit_status st = mf_hf_token_load(&t);
    if (st != MEMFIT_OK)
        fprintf(stderr, "%s\n", memfit_last_error());
    assert_int_equal(st, MEMFIT_OK);
    if (!want) {
        assert_null(t);
        return;
    }
    assert_non_null(t);
    assert_string_equal(t, want);
    memfit_free(t);
}

static void test_hf_token(void **state)
{
    (void)state;
    clear_env();
    expect_hf_token(NULL);
    char path[512], dir[512];
    /* ~/.cache/huggingface/token, as `huggingface-cli login` writes it. */
    mkdir(tmp_path("home/.cache", dir, sizeof(dir)), 0755);
    mkdir(tmp_path("home/.cache/huggingface", dir, sizeof(dir)), 0755);
    write_text(tmp_path("home/.cache/huggingface/token", path, sizeof(path)), "hf_home\n");
    expect_hf_token("hf_home");
    mkdir(tmp_path("xdg", dir, sizeof(dir)), 0755);
    setenv("XDG_CACHE_HOME", dir, 1);
    expect_hf_token(NULL); /* $XDG_CACHE_HOME/huggingface/token does not exist */
    mkdir(tmp_path("hfhome", dir, sizeof(dir)), 0755);
    setenv("HF_HOME", dir, 1);
    write_text(tmp_path("hfhome/token", path, sizeof(path)), "hf_from_hf_home\r\n");
    expect_hf_token("hf_from_hf_home");
    write_text(tmp_path("elsewhere", path, sizeof(path)), "hf_from_path");
    setenv("HF_TOKEN_PATH", path, 1);
    expect_hf_token("hf_from_path");
    setenv("HF_TOKEN", "hf_from_env", 1);
    expect_hf_token("hf_from_env");
    unsetenv("HF_TOKEN");
    char *t = NULL;
    write_text(path, "hf_a\nb\n");
    expect_error(mf_hf_token_load(&t), MEMFIT_E_FORMAT, "control character");
    assert_null(strstr(memfit_last_error(), "hf_a"));
    write_text(path, "\n");
    expect_error(mf_hf_token_load(&t), MEMFIT_E_FORMAT, "is empty");
    setenv("HF_TOKEN", "hf_\x1b[31m", 1);
    expect_error(mf_hf_token_load(&t), MEMFIT_E_FORMAT, "HF_TOKEN holds a control character");
    clear_env();
}

/* ---- Allocation fault walks --------------------------------------------------------- */

struct walk {
    struct mf_aws_credentials creds;
    struct mf_source src;
    int64_t exp;
    int round;
};

static enum memfit_status sts_op(void *ctx)
{
    struct walk *w = ctx;
    static const char text[] = STS_HEAD "<Credentials><AccessKeyId>A</AccessKeyId>"
                                        "<SecretAccessKey>S&amp;</SecretAccessKey>"
                                        "<SessionToken>T</SessionToken>"
                                        "<Expiration>2024-05-01T12:00:00Z</Expiration>"
                                        "</Credentials>" STS_TAIL;
    static const char json[] = "{\"AccessKeyId\": \"A\", \"SecretAccessKey\": \"S\", \"Token\": "
                               "\"T\", \"Expiration\": \"2024-05-01T12:00:00Z\"}";
    return w->round == 0 ? parse_sts(text, &w->creds, &w->exp)
                         : parse_json(json, &w->creds, &w->exp);
}

static void creds_cleanup(void *ctx)
{
    mf_aws_credentials_clear(&((struct walk *)ctx)->creds);
}

static enum memfit_status chain_op(void *ctx)
{
    return mf_aws_credentials_load(&((struct walk *)ctx)->creds);
}

static enum memfit_status source_op(void *ctx)
{
    struct mf_source_env env;
    mf_source_env_from_config(&env);
    return mf_source_parse("s3://bkt/m.bin", &env, &((struct walk *)ctx)->src);
}

static void source_cleanup(void *ctx)
{
    mf_source_clear(&((struct walk *)ctx)->src);
}

static enum memfit_status cache_op(void *ctx)
{
    struct walk *w = ctx;
    struct fake f = {.expires_s = 10000, .mu = PTHREAD_MUTEX_INITIALIZER};
    struct mf_aws_provider p = {"fake-walk", fake_fetch, &f};
    enum memfit_status st = mf_aws_cache_get(&p, 1000, &w->creds);
    if (st != MEMFIT_OK)
        mf_aws_cache_reset(); /* what a failed call may have cached counts as live */
    return st;
}

static void cache_cleanup(void *ctx)
{
    creds_cleanup(ctx);
    mf_aws_cache_reset();
}

static void test_alloc_failures(void **state)
{
    (void)state;
    struct walk w = {0};
    for (w.round = 0; w.round < 2; w.round++)
        mf_test_alloc_failures(sts_op, creds_cleanup, &w);
    clear_env();
    write_files(NULL, config);
    setenv("AWS_PROFILE", "dev", 1);
    mf_test_alloc_failures(chain_op, creds_cleanup, &w);
    mf_test_alloc_failures(source_op, source_cleanup, &w);
    mf_aws_cache_reset();
    mf_test_alloc_failures(cache_op, cache_cleanup, &w);
    clear_env();
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmp_root, sizeof(tmp_root), "/tmp/memfit-test-aws-XXXXXX");
    if (!mkdtemp(tmp_root))
        return -1;
    char home[512];
    mkdir(tmp_path("home", home, sizeof(home)), 0755);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    mf_aws_cache_reset();
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp_root);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ini_nested),      cmocka_unit_test(test_credentials_order),
        cmocka_unit_test(test_region_endpoint), cmocka_unit_test(test_sts_xml),
        cmocka_unit_test(test_container_json),  cmocka_unit_test(test_times),
        cmocka_unit_test(test_container_urls),  cmocka_unit_test(test_cache_expiry),
        cmocka_unit_test(test_cache_threads),   cmocka_unit_test(test_remote_settings),
        cmocka_unit_test(test_hf_token),        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

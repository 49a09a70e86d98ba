/* Unit tests of src/store's pure parts — source URIs, path safety, redaction,
 * the credentials INI, lock files and their stale recovery, streaming
 * SHA-256, ref files — and of the cache with local-file sources (fetch,
 * verify, list, info, remove, gc with pins, offline), with allocation fault
 * walks over the parsers and a whole fetch. No network is used. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store/internal.h"
#include "test_util.h"

static char tmp_root[256];

static const char *tmp_path(const char *rel, char *buf, size_t size)
{
    snprintf(buf, size, "%s/%s", tmp_root, rel);
    return buf;
}

static void write_bytes(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

/* ---- Sources ------------------------------------------------------------ */

static const struct mf_source_env no_env = {NULL, NULL, NULL, false};

static void expect_url(const char *uri, const struct mf_source_env *env, enum mf_source_kind kind,
                       const char *url)
{
    struct mf_source s;
    assert_int_equal(mf_source_parse(uri, env, &s), MEMFIT_OK);
    assert_int_equal(s.kind, kind);
    assert_string_equal(s.url, url);
    mf_source_clear(&s);
}

static void expect_bad(const char *uri, const struct mf_source_env *env)
{
    struct mf_source s = {0};
    assert_int_equal(mf_source_parse(uri, env, &s), MEMFIT_E_RANGE);
    assert_null(s.url);
}

static void test_source_parse(void **state)
{
    (void)state;
    expect_url("/models/a.gguf", &no_env, MF_SOURCE_FILE, "/models/a.gguf");
    expect_url("file:///models/a%20b.gguf", &no_env, MF_SOURCE_FILE, "/models/a b.gguf");
    expect_url("file://localhost/m/x", &no_env, MF_SOURCE_FILE, "/m/x");
    expect_url("https://example.com/x?y=1", &no_env, MF_SOURCE_HTTP, "https://example.com/x?y=1");
    expect_url("s3://my-bucket/dir/model v1.gguf", &no_env, MF_SOURCE_S3,
               "https://my-bucket.s3.us-east-1.amazonaws.com/dir/model%20v1.gguf");
    struct mf_source_env eu = {NULL, "eu-west-1", NULL, false};
    expect_url("s3://my.bucket/k", &eu, MF_SOURCE_S3,
               "https://s3.eu-west-1.amazonaws.com/my.bucket/k");
    struct mf_source_env minio = {NULL, NULL, "http://127.0.0.1:9000/", false};
    expect_url("s3://bkt/a/b.bin", &minio, MF_SOURCE_S3, "http://127.0.0.1:9000/bkt/a/b.bin");
    expect_url("hf://Qwen/Qwen2-0.5B/model.safetensors", &no_env, MF_SOURCE_HF,
               "https://huggingface.co/Qwen/Qwen2-0.5B/resolve/main/model.safetensors");
    expect_url("hf://org/repo/sub/dir/w.gguf@refs/pr/1", &no_env, MF_SOURCE_HF,
               "https://huggingface.co/org/repo/resolve/refs%2Fpr%2F1/sub/dir/w.gguf");
    expect_url("hf://org/repo@v2/w.gguf", &no_env, MF_SOURCE_HF,
               "https://huggingface.co/org/repo/resolve/v2/w.gguf");
    struct mf_source_env hub = {"http://127.0.0.1:8080", NULL, NULL, false};
    expect_url("hf://datasets/org/data/x.bin", &hub, MF_SOURCE_HF,
               "http://127.0.0.1:8080/datasets/org/data/resolve/main/x.bin");

    struct mf_source s;
    assert_int_equal(mf_source_parse("s3://bkt/k", &eu, &s), MEMFIT_OK);
    assert_string_equal(s.region, "eu-west-1");
    mf_source_clear(&s);

    expect_bad("", &no_env);
    expect_bad("ftp://host/x", &no_env);
    expect_bad("s3://AB/key", &no_env);
    expect_bad("s3://bucket", &no_env);
    expect_bad("s3://bucket/../etc/passwd", &no_env);
    expect_bad("s3://bucket/a/./b", &no_env);
    expect_bad("hf://org/repo/../../x", &no_env);
    expect_bad("hf://org/repo", &no_env);
    expect_bad("hf://org/re po/x", &no_env);
    expect_bad("hf://org/repo/x@", &no_env);
    expect_bad("http://", &no_env);
    expect_bad("/path/with\nnewline", &no_env);
    expect_bad("file://relative/path", &no_env);
    expect_bad("file:///a%00b", &no_env);
    struct mf_source_env bad_ep = {NULL, NULL, "ftp://x", false};
    expect_bad("s3://bkt/k", &bad_ep);
    struct mf_source_env bad_region = {NULL, "../x", NULL, false};
    expect_bad("s3://bkt/k", &bad_region);
    /* A rejected presigned source does not echo its signature. */
    expect_bad("gopher://h/x?X-Amz-Signature=deadbeef", &no_env);
    assert_null(strstr(memfit_last_error(), "deadbeef"));
}

static void test_path_safety(void **state)
{
    (void)state;
    assert_true(mf_path_is_safe("a"));
    assert_true(mf_path_is_safe("a/b.c/..d"));
    assert_false(mf_path_is_safe(""));
    assert_false(mf_path_is_safe("/abs"));
    assert_false(mf_path_is_safe(".."));
    assert_false(mf_path_is_safe("a/../b"));
    assert_false(mf_path_is_safe("a/./b"));
    assert_false(mf_path_is_safe("a//b"));
    assert_false(mf_path_is_safe("a/"));
    assert_false(mf_path_is_safe("a\\..\\b"));
    assert_false(mf_path_is_safe("a\x01"));

    char *f = mf_ref_filename("../../etc/passwd");
    assert_non_null(f);
    assert_null(strchr(f, '/'));
    assert_true(f[0] != '.');
    memfit_free(f);
    f = mf_ref_filename("");
    assert_non_null(f);
    assert_true(strncmp(f, "ref-", 4) == 0);
    memfit_free(f);
    /* Names that sanitize alike still get different files. */
    char *a = mf_ref_filename("a/b"), *b = mf_ref_filename("a_b");
    assert_string_not_equal(a, b);
    memfit_free(a);
    memfit_free(b);
    assert_true(
        mf_is_sha256_hex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    assert_false(mf_is_sha256_hex("e3b0"));
    assert_false(
        mf_is_sha256_hex("g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
}

static void test_redaction(void **state)
{
    (void)state;
    char *r = mf_redact("get https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256"
                        "&X-Amz-Credential=AKIAXXX%2F20240101&X-Amz-Signature=abcdef0123"
                        "&X-Amz-Security-Token=tok&versionId=3 failed");
    assert_non_null(r);
    assert_string_equal(r, "get https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256"
                           "&X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED"
                           "&X-Amz-Security-Token=REDACTED&versionId=3 failed");
    memfit_free(r);
    r = mf_redact("http://user:pass@host:8080/p?token=s3cret#frag and s3://b/k");
    assert_string_equal(r, "http://REDACTED@host:8080/p?token=REDACTED#frag and s3://b/k");
    memfit_free(r);
    r = mf_redact("no urls here");
    assert_string_equal(r, "no urls here");
    memfit_free(r);
    char small[24];
    mf_redact_into("https://h/x?sig=12345678901234567890", small, sizeof(small));
    assert_int_equal(strlen(small), sizeof(small) - 1);
    assert_null(strstr(small, "1234"));
}

/* ---- Credentials --------------------------------------------------------- */

static const char ini[] = "# comment\n"
                          "[default]\n"
                          "aws_access_key_id = AKIADEFAULT\n"
                          "aws_secret_access_key=secretdefault\r\n"
                          "\n"
                          "; other comment\n"
                          "[ prod ]\n"
                          "aws_access_key_id=AKIAPROD\n"
                          "aws_secret_access_key = prod/secret+key \n"
                          "aws_session_token = tok==\n"
                          "s3 =\n"
                          "  max_concurrent_requests = 5\n";

static void test_ini(void **state)
{
    (void)state;
    char *v = NULL;
    assert_int_equal(mf_ini_get(ini, strlen(ini), "default", "aws_secret_access_key", &v),
                     MEMFIT_OK);
    assert_string_equal(v, "secretdefault");
    memfit_free(v);
    assert_int_equal(mf_ini_get(ini, strlen(ini), "prod", "aws_secret_access_key", &v), MEMFIT_OK);
    assert_string_equal(v, "prod/secret+key");
    memfit_free(v);
    assert_int_equal(mf_ini_get(ini, strlen(ini), "default", "aws_session_token", &v),
                     MEMFIT_E_NOT_FOUND);
    assert_int_equal(mf_ini_get(ini, strlen(ini), "nope", "aws_access_key_id", &v),
                     MEMFIT_E_NOT_FOUND);
    /* A NUL byte or an endless line is an error, not a guess. */
    static const char nul[] = "[default]\naws_access_key_id=a\0b\n";
    assert_int_equal(mf_ini_get(nul, sizeof(nul) - 1, "default", "aws_access_key_id", &v),
                     MEMFIT_E_FORMAT);
    char *big = memfit_malloc(10000);
    memset(big, 'a', 9999);
    big[9999] = '\0';
    assert_int_equal(mf_ini_get(big, strlen(big), "default", "x", &v), MEMFIT_E_FORMAT);
    memfit_free(big);
    static const char open[] = "[default\nx=1\n";
    assert_int_equal(mf_ini_get(open, strlen(open), "default", "x", &v), MEMFIT_E_FORMAT);
}

static void clear_aws_env(void)
{
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    unsetenv("AWS_SESSION_TOKEN");
    unsetenv("AWS_PROFILE");
    unsetenv("AWS_SHARED_CREDENTIALS_FILE");
}

static void test_credentials(void **state)
{
    (void)state;
    clear_aws_env();
    char path[512];
    tmp_path("credentials", path, sizeof(path));
    write_bytes(path, ini, strlen(ini));
    setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);
    struct mf_aws_credentials c;
    assert_int_equal(mf_aws_credentials_load(&c), MEMFIT_OK);
    assert_string_equal(c.access_key, "AKIADEFAULT");
    assert_null(c.session_token);
    mf_aws_credentials_clear(&c);
    setenv("AWS_PROFILE", "prod", 1);
    assert_int_equal(mf_aws_credentials_load(&c), MEMFIT_OK);
    assert_string_equal(c.access_key, "AKIAPROD");
    assert_string_equal(c.session_token, "tok==");
    mf_aws_credentials_clear(&c);
    /* The environment wins over the file. */
    setenv("AWS_ACCESS_KEY_ID", "AKIAENV", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
    assert_int_equal(mf_aws_credentials_load(&c), MEMFIT_OK);
    assert_string_equal(c.access_key, "AKIAENV");
    assert_null(c.session_token);
    mf_aws_credentials_clear(&c);
    /* No credentials anywhere: anonymous. */
    clear_aws_env();
    setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials", 1);
    assert_int_equal(mf_aws_credentials_load(&c), MEMFIT_OK);
    assert_null(c.access_key);
    clear_aws_env();
}

/* ---- SHA-256 --------------------------------------------------------------- */

static void test_sha256_streaming(void **state)
{
    (void)state;
    char hex[65];
    assert_int_equal(mf_sha256_string("abc", hex), MEMFIT_OK);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    /* Feeding in uneven pieces gives the digest of the whole. */
    static unsigned char data[100000];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (unsigned char)(i * 7 + (i >> 8));
    struct mf_sha256 h;
    assert_int_equal(mf_sha256_init(&h), MEMFIT_OK);
    mf_sha256_update(&h, data, sizeof(data));
    char whole[65];
    mf_sha256_final(&h, whole);
    size_t off = 0, step = 1;
    while (off < sizeof(data)) {
        size_t n = step < sizeof(data) - off ? step : sizeof(data) - off;
        mf_sha256_update(&h, data + off, n);
        off += n;
        step = step * 3 + 1;
    }
    assert_int_equal(h.n_bytes, sizeof(data));
    mf_sha256_final(&h, hex);
    assert_string_equal(hex, whole);
    /* A resumed download hashes the prefix from the file, then the rest as it comes. */
    char path[512];
    tmp_path("hash.bin", path, sizeof(path));
    write_bytes(path, data, 40000);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(mf_sha256_fd(&h, fd, 40000, path, NULL), MEMFIT_OK);
    mf_sha256_update(&h, data + 40000, sizeof(data) - 40000);
    mf_sha256_final(&h, hex);
    assert_string_equal(hex, whole);
    assert_int_equal(mf_sha256_fd(&h, fd, 50000, path, NULL), MEMFIT_E_IO);
    int cancel = 1;
    assert_int_equal(mf_sha256_fd(&h, fd, 100, path, &cancel), MEMFIT_E_CANCELLED);
    close(fd);
    mf_sha256_free(&h);
}

/* ---- Locks ------------------------------------------------------------------- */

static void write_lock(const char *path, long pid, const char *host, unsigned long long start,
                       long age_s)
{
    char text[512];
    snprintf(text, sizeof(text), "pid=%ld host=%s start=%llu created=1\n", pid, host, start);
    unlink(path);
    write_bytes(path, text, strlen(text));
    struct timespec times[2];
    clock_gettime(CLOCK_REALTIME, &times[0]);
    times[0].tv_sec -= age_s;
    times[1] = times[0];
    assert_int_equal(utimensat(AT_FDCWD, path, times, 0), 0);
}

static void test_lock_stale_recovery(void **state)
{
    (void)state;
    char path[512];
    tmp_path("x.lock", path, sizeof(path));
    struct mf_lock_owner owner;
    assert_true(mf_lock_parse("pid=12 host=h start=3 created=4", &owner));
    assert_int_equal(owner.pid, 12);
    assert_string_equal(owner.host, "h");
    assert_false(mf_lock_parse("pid=x host=h", &owner));
    assert_false(mf_lock_parse("pid=-1 host=h start=3 created=4", &owner));

    /* A holder on this host that died. */
    pid_t child = fork();
    if (child == 0)
        _exit(0);
    waitpid(child, NULL, 0);
    write_lock(path, child, mf_hostname(), 1, 0);
    assert_true(mf_lock_is_stale(path, 60000));
    struct mf_lock_params p = {.wait_timeout_ms = 5000, .stale_ms = 60000, .poll_ms = 10};
    struct mf_lock lock;
    bool waited = false;
    assert_int_equal(mf_lock_acquire(path, &p, &lock, &waited), MEMFIT_OK);
    assert_true(waited);
    assert_int_equal(mf_lock_heartbeat(&lock), MEMFIT_OK);

    /* A live holder (flock held) is waited for, then the wait times out. */
    struct mf_lock second;
    p.wait_timeout_ms = 200;
    assert_int_equal(mf_lock_acquire(path, &p, &second, &waited), MEMFIT_E_TIMEOUT);
    assert_non_null(strstr(memfit_last_error(), "still held by pid"));
    assert_false(mf_lock_is_stale(path, 0));
    mf_lock_release(&lock);
    assert_int_equal(access(path, F_OK), -1);

    /* This pid but another start time: the pid was reused, the holder is gone. */
    write_lock(path, getpid(), mf_hostname(), 1, 0);
    assert_true(mf_lock_is_stale(path, 60000));
    /* Another host: only the missing heartbeat tells. */
    write_lock(path, 1, "some-other-host", 1, 0);
    assert_false(mf_lock_is_stale(path, 60000));
    write_lock(path, 1, "some-other-host", 1, 600);
    assert_true(mf_lock_is_stale(path, 60000));
    p.wait_timeout_ms = 5000;
    assert_int_equal(mf_lock_acquire(path, &p, &lock, &waited), MEMFIT_OK);
    assert_true(waited);
    /* A holder whose lock was broken notices at its next heartbeat. */
    unlink(path);
    write_lock(path, 1, "some-other-host", 1, 0);
    lock.last_beat_ns = 0;
    assert_int_equal(mf_lock_heartbeat(&lock), MEMFIT_E_BUSY);
    mf_lock_release(&lock);
    assert_int_equal(access(path, F_OK), 0); /* not ours: left alone */
    unlink(path);
    /* Cancellation while waiting. */
    assert_int_equal(mf_lock_acquire(path, &p, &lock, NULL), MEMFIT_OK);
    int cancel = 1;
    p.cancel = &cancel;
    assert_int_equal(mf_lock_acquire(path, &p, &second, NULL), MEMFIT_E_CANCELLED);
    mf_lock_release(&lock);
}

/* ---- Refs -------------------------------------------------------------------- */

static void test_ref_parse(void **state)
{
    (void)state;
    struct mf_ref r;
    const char *ok = "memfit-ref 1\nname my model\n"
                     "digest e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
                     "source s3://b/k\nsize 12\netag \"x\"\nlast_used 99\n";
    assert_int_equal(mf_ref_parse(ok, "t", &r), MEMFIT_OK);
    assert_string_equal(r.name, "my model");
    assert_string_equal(r.source, "s3://b/k");
    assert_int_equal(r.size_bytes, 12);
    assert_int_equal(r.last_used_ns, 99);
    mf_ref_clear(&r);
    assert_int_equal(mf_ref_parse("memfit-ref 1\nname x\ndigest abc\n", "t", &r), MEMFIT_E_FORMAT);
    assert_int_equal(mf_ref_parse("name x\n", "t", &r), MEMFIT_E_FORMAT);
    assert_int_equal(mf_ref_parse("memfit-ref 1\nname x\nsize 1x\n", "t", &r), MEMFIT_E_FORMAT);
}

/* ---- The cache with local files ------------------------------------------------- */

static memfit_store *open_store(const char *sub)
{
    char dir[512];
    tmp_path(sub, dir, sizeof(dir));
    struct memfit_store_options o = memfit_store_options_default();
    o.cache_dir = dir;
    o.offline = 0;
    memfit_store *s = NULL;
    assert_int_equal(memfit_store_open(&o, &s), MEMFIT_OK);
    return s;
}

static void make_file(const char *name, size_t size, unsigned seed, char *path, size_t n)
{
    tmp_path(name, path, n);
    unsigned char *buf = memfit_malloc(size);
    for (size_t i = 0; i < size; i++)
        buf[i] = (unsigned char)((i * 131 + seed) ^ (i >> 9));
    write_bytes(path, buf, size);
    memfit_free(buf);
}

static int count_progress(uint64_t done, uint64_t total, double rate, void *user)
{
    (void)rate;
    uint64_t *last = user;
    assert_true(done <= total);
    *last = done;
    return 0;
}

static void test_fetch_local(void **state)
{
    (void)state;
    memfit_store *s = open_store("cache1");
    char a[512], b[512];
    make_file("a.bin", 300000, 1, a, sizeof(a));
    make_file("b.bin", 200000, 2, b, sizeof(b));
    uint64_t last = 0;
    struct memfit_fetch_options fo = {
        .name = "model-a", .progress = count_progress, .progress_user = &last};
    const char *srcs[] = {a};
    char *path = NULL;
    assert_int_equal(memfit_store_fetch(s, srcs, 1, &fo, &path), MEMFIT_OK);
    assert_int_equal(last, 300000);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_size, 300000);
    assert_int_equal(sb.st_mode & 0222, 0); /* blobs are read-only */
    const char *digest = strrchr(path, '/') + 1;
    char expected[65];
    snprintf(expected, sizeof(expected), "%s", digest);

    /* A wrong expected digest: quarantined, the next source is tried. */
    const char *two[] = {b, a};
    char wrong_sha[65];
    memset(wrong_sha, 'f', 64);
    wrong_sha[64] = '\0';
    struct memfit_fetch_options fo2 = {.sha256 = expected};
    char *p2 = NULL;
    memfit_store *s2 = open_store("cache2");
    assert_int_equal(memfit_store_fetch(s2, two, 2, &fo2, &p2), MEMFIT_OK);
    assert_string_equal(strrchr(p2, '/') + 1, expected);
    memfit_free(p2);
    char q[512];
    tmp_path("cache2/quarantine", q, sizeof(q));
    DIR *qd = opendir(q);
    int n_q = 0;
    struct dirent *e;
    while ((e = readdir(qd)))
        n_q += e->d_name[0] != '.';
    closedir(qd);
    assert_int_equal(n_q, 1);
    fo2.sha256 = wrong_sha;
    const char *just_b[] = {b};
    assert_int_equal(memfit_store_fetch(s2, just_b, 1, &fo2, &p2), MEMFIT_E_CHECKSUM);
    fo2.sha256 = "123";
    assert_int_equal(memfit_store_fetch(s2, just_b, 1, &fo2, &p2), MEMFIT_E_RANGE);
    memfit_store_close(s2);

    /* Missing first source falls back to the second. */
    char missing[512];
    tmp_path("missing.bin", missing, sizeof(missing));
    const char *fallback[] = {missing, b};
    char *pb = NULL;
    assert_int_equal(memfit_store_fetch(s, fallback, 2, NULL, &pb), MEMFIT_OK);

    /* Offline: the cache answers by name, by source and by digest; nothing else. */
    memfit_store_close(s);
    char dir[512];
    struct memfit_store_options o = memfit_store_options_default();
    o.cache_dir = tmp_path("cache1", dir, sizeof(dir));
    o.offline = 1;
    assert_int_equal(memfit_store_open(&o, &s), MEMFIT_OK);
    struct memfit_fetch_options by_name = {.name = "model-a"};
    char *p3 = NULL;
    assert_int_equal(memfit_store_fetch(s, NULL, 0, &by_name, &p3), MEMFIT_OK);
    assert_string_equal(p3, path);
    memfit_free(p3);
    struct memfit_fetch_options by_sha = {.sha256 = expected};
    assert_int_equal(memfit_store_fetch(s, NULL, 0, &by_sha, &p3), MEMFIT_OK);
    memfit_free(p3);
    const char *remote[] = {"https://example.invalid/x.bin"};
    assert_int_equal(memfit_store_fetch(s, remote, 1, NULL, &p3), MEMFIT_E_NOT_FOUND);
    assert_non_null(strstr(memfit_last_error(), "offline"));

    /* List, info, verify. */
    struct memfit_store_entry *entries;
    size_t n;
    assert_int_equal(memfit_store_list(s, &entries, &n), MEMFIT_OK);
    assert_int_equal(n, 3); /* model-a, a's path, b's path */
    memfit_store_entries_free(entries, n);
    struct memfit_store_entry info;
    assert_int_equal(memfit_store_info(s, "model-a", &info), MEMFIT_OK);
    assert_string_equal(info.digest, expected);
    assert_int_equal(info.size_bytes, 300000);
    memfit_store_entry_clear(&info);
    char prefix[9];
    memcpy(prefix, expected, 8);
    prefix[8] = '\0';
    assert_int_equal(memfit_store_info(s, prefix, &info), MEMFIT_OK);
    memfit_store_entry_clear(&info);
    assert_int_equal(memfit_store_info(s, "nothing", &info), MEMFIT_E_NOT_FOUND);
    struct memfit_store_verify_result vr;
    assert_int_equal(memfit_store_verify(s, &vr), MEMFIT_OK);
    assert_int_equal(vr.n_ok, 2);

    /* A pinned blob survives gc and remove; unpinned, it goes. */
    assert_int_equal(memfit_store_pin(s, path), MEMFIT_OK);
    struct memfit_store_gc_result gr;
    assert_int_equal(memfit_store_gc(s, 1, &gr), MEMFIT_OK);
    assert_int_equal(gr.n_removed, 1); /* b's blob */
    assert_int_equal(gr.n_kept_in_use, 1);
    assert_int_equal(access(path, F_OK), 0);
    assert_int_equal(access(pb, F_OK), -1);
    assert_int_equal(memfit_store_remove(s, "model-a"), MEMFIT_OK); /* another ref remains */
    assert_int_equal(memfit_store_remove(s, expected), MEMFIT_E_BUSY);
    assert_int_equal(memfit_store_unpin(s, path), MEMFIT_OK);
    assert_int_equal(memfit_store_remove(s, expected), MEMFIT_OK);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(memfit_store_pin(s, path), MEMFIT_E_NOT_FOUND);
    assert_int_equal(memfit_store_list(s, &entries, &n), MEMFIT_OK);
    assert_int_equal(n, 0);
    memfit_store_entries_free(entries, n);

    /* A corrupted blob is caught by verify. */
    memfit_store_close(s);
    s = open_store("cache1");
    assert_int_equal(memfit_store_fetch(s, srcs, 1, NULL, &p3), MEMFIT_OK);
    chmod(p3, 0644);
    int fd = open(p3, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "x", 1, 100), 1);
    close(fd);
    assert_int_equal(memfit_store_verify(s, &vr), MEMFIT_E_CHECKSUM);
    assert_int_equal(vr.n_bad, 1);
    assert_int_equal(access(p3, F_OK), -1);
    memfit_free(p3);
    memfit_free(pb);
    memfit_free(path);
    memfit_store_close(s);
}

/* Several threads fetching the same file get the same blob, written once. */
struct thread_arg {
    memfit_store *store;
    const char *src;
    char *path;
    enum memfit_status st;
};

static void *fetch_thread(void *p)
{
    struct thread_arg *t = p;
    const char *srcs[] = {t->src};
    t->st = memfit_store_fetch(t->store, srcs, 1, NULL, &t->path);
    return NULL;
}

/* Counts the files of `sub`/quarantine and their bytes. */
static size_t count_quarantine(memfit_store *s, uint64_t *bytes)
{
    struct memfit_store_quarantined *q;
    size_t n;
    unsigned max_files;
    uint64_t max_bytes;
    assert_int_equal(memfit_store_quarantine_list(s, &q, &n, &max_files, &max_bytes), MEMFIT_OK);
    *bytes = 0;
    for (size_t i = 0; i < n; i++) {
        *bytes += q[i].size_bytes;
        assert_int_equal(strlen(q[i].digest), 64);
        if (i > 0)
            assert_true(q[i - 1].added_ns <= q[i].added_ns);
    }
    memfit_store_quarantine_free(q, n);
    return n;
}

/* Mismatched downloads stay within the quarantine's bound, oldest out first;
 * one larger than the whole bound is not kept; gc empties it. */
static void test_quarantine_bound(void **state)
{
    (void)state;
    char dir[512];
    struct memfit_store_options o = memfit_store_options_default();
    o.cache_dir = tmp_path("cacheq", dir, sizeof(dir));
    o.offline = 0;
    o.max_quarantine_files = 2;
    o.max_quarantine_bytes = 500000;
    memfit_store *s = NULL;
    assert_int_equal(memfit_store_open(&o, &s), MEMFIT_OK);
    char wrong_sha[65];
    memset(wrong_sha, 'e', 64);
    wrong_sha[64] = '\0';
    struct memfit_fetch_options fo = {.sha256 = wrong_sha};
    char paths[4][512];
    const size_t sizes[] = {100000, 150000, 300000, 600000};
    for (unsigned i = 0; i < 4; i++) {
        char name[32];
        snprintf(name, sizeof(name), "q%u.bin", i);
        make_file(name, sizes[i], 10 + i, paths[i], sizeof(paths[i]));
    }
    char *out = NULL;
    uint64_t bytes;
    for (unsigned i = 0; i < 3; i++) {
        const char *src[] = {paths[i]};
        assert_int_equal(memfit_store_fetch(s, src, 1, &fo, &out), MEMFIT_E_CHECKSUM);
        assert_null(out);
    }
    /* 100000 went for the count; 150000 for the bytes (150000 + 300000 fit). */
    assert_int_equal(count_quarantine(s, &bytes), 2);
    assert_int_equal(bytes, 450000);
    /* Larger than the whole bound: not kept, the others stay. */
    const char *big[] = {paths[3]};
    assert_int_equal(memfit_store_fetch(s, big, 1, &fo, &out), MEMFIT_E_CHECKSUM);
    assert_non_null(strstr(memfit_last_error(), "not kept"));
    assert_int_equal(count_quarantine(s, &bytes), 2);
    assert_int_equal(bytes, 450000);
    /* Nothing left in partial/. */
    char part[512];
    DIR *pd = opendir(tmp_path("cacheq/partial", part, sizeof(part)));
    struct dirent *e;
    int n_partial = 0;
    while ((e = readdir(pd)))
        n_partial += e->d_name[0] != '.';
    closedir(pd);
    assert_int_equal(n_partial, 0);

    struct memfit_store_gc_result r;
    assert_int_equal(memfit_store_gc(s, 0, &r), MEMFIT_OK);
    assert_int_equal(r.n_quarantine_removed, 2);
    assert_int_equal(r.quarantine_removed_bytes, 450000);
    assert_int_equal(count_quarantine(s, &bytes), 0);
    memfit_store_close(s);

    /* The default bound: 4 files and at least 1 GiB. */
    o = memfit_store_options_default();
    o.cache_dir = dir;
    assert_int_equal(memfit_store_open(&o, &s), MEMFIT_OK);
    struct memfit_store_quarantined *q;
    size_t n;
    unsigned max_files;
    uint64_t max_bytes;
    assert_int_equal(memfit_store_quarantine_list(s, &q, &n, &max_files, &max_bytes), MEMFIT_OK);
    assert_int_equal(n, 0);
    assert_int_equal(max_files, 4);
    assert_true(max_bytes >= (1ull << 30));
    memfit_store_quarantine_free(q, n);
    memfit_store_close(s);

    /* verify's moves obey the bound too: two bad blobs, one kept. */
    o.max_quarantine_files = 1;
    assert_int_equal(memfit_store_open(&o, &s), MEMFIT_OK);
    for (unsigned i = 0; i < 2; i++) {
        const char *src[] = {paths[i]};
        assert_int_equal(memfit_store_fetch(s, src, 1, NULL, &out), MEMFIT_OK);
        chmod(out, 0644);
        int fd = open(out, O_WRONLY);
        assert_true(fd >= 0);
        assert_int_equal(pwrite(fd, "x", 1, 10), 1);
        close(fd);
        memfit_free(out);
    }
    struct memfit_store_verify_result vr;
    assert_int_equal(memfit_store_verify(s, &vr), MEMFIT_E_CHECKSUM);
    assert_int_equal(vr.n_bad, 2);
    assert_int_equal(count_quarantine(s, &bytes), 1);
    memfit_store_close(s);

    /* The variables: a bad count is E_RANGE; "0" keeps nothing. */
    o.max_quarantine_files = 0;
    setenv("MEMFIT_QUARANTINE_MAX_FILES", "many", 1);
    s = NULL;
    assert_int_equal(memfit_store_open(&o, &s), MEMFIT_E_RANGE);
    assert_null(s);
    assert_non_null(strstr(memfit_last_error(), "MEMFIT_QUARANTINE_MAX_FILES"));
    setenv("MEMFIT_QUARANTINE_MAX_FILES", "0", 1);
    assert_int_equal(memfit_store_open(&o, &s), MEMFIT_OK);
    const char *src[] = {paths[0]};
    assert_int_equal(memfit_store_fetch(s, src, 1, &fo, &out), MEMFIT_E_CHECKSUM);
    assert_int_equal(count_quarantine(s, &bytes), 1); /* the one verify kept stays */
    unsetenv("MEMFIT_QUARANTINE_MAX_FILES");
    memfit_store_close(s);
}

static void test_fetch_threads(void **state)
{
    (void)state;
    memfit_store *s = open_store("cache3");
    char a[512];
    make_file("t.bin", 2000000, 9, a, sizeof(a));
    struct thread_arg args[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (struct thread_arg){s, a, NULL, MEMFIT_E_IO};
        assert_int_equal(pthread_create(&th[i], NULL, fetch_thread, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].st, MEMFIT_OK);
        assert_string_equal(args[i].path, args[0].path);
    }
    for (int i = 0; i < 4; i++)
        memfit_free(args[i].path);
    memfit_store_close(s);
}

/* ---- Allocation fault walks ------------------------------------------------------- */

struct walk {
    struct mf_source src;
    char *text;
    struct mf_ref ref;
    struct mf_aws_credentials creds;
    memfit_store *store;
    char *path;
    const char *file;
    int round;
};

static enum memfit_status parse_op(void *ctx)
{
    struct walk *w = ctx;
    struct mf_source_env env = {"http://127.0.0.1:1", "eu-west-1", "http://127.0.0.1:2", false};
    static const char *const uris[] = {"s3://bkt/a b/c", "hf://o/r/p/q.bin@refs/pr/1",
                                       "file:///x%20y", "https://h/x?sig=1"};
    return mf_source_parse(uris[w->round % 4], &env, &w->src);
}

static void parse_cleanup(void *ctx)
{
    mf_source_clear(&((struct walk *)ctx)->src);
}

static enum memfit_status redact_op(void *ctx)
{
    struct walk *w = ctx;
    w->text = mf_redact("a https://u:p@h/x?X-Amz-Signature=1&b=2 b");
    if (!w->text)
        return MEMFIT_E_NOMEM;
    char *f = mf_ref_filename(w->text);
    if (!f) {
        memfit_free(w->text);
        w->text = NULL;
        return MEMFIT_E_NOMEM;
    }
    memfit_free(f);
    return MEMFIT_OK;
}

static void text_cleanup(void *ctx)
{
    struct walk *w = ctx;
    memfit_free(w->text);
    w->text = NULL;
}

static enum memfit_status ini_op(void *ctx)
{
    return mf_ini_get(ini, strlen(ini), "prod", "aws_session_token", &((struct walk *)ctx)->text);
}

static enum memfit_status ref_op(void *ctx)
{
    const char *text = "memfit-ref 1\nname m\nsource s\netag e\n"
                       "digest e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n";
    return mf_ref_parse(text, "t", &((struct walk *)ctx)->ref);
}

static void ref_cleanup(void *ctx)
{
    mf_ref_clear(&((struct walk *)ctx)->ref);
}

static enum memfit_status creds_op(void *ctx)
{
    return mf_aws_credentials_load(&((struct walk *)ctx)->creds);
}

static void creds_cleanup(void *ctx)
{
    mf_aws_credentials_clear(&((struct walk *)ctx)->creds);
}

/* Open a fresh cache, fetch a local file under a name, list it, close. */
static enum memfit_status store_op(void *ctx)
{
    struct walk *w = ctx;
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/walk%d", tmp_root, w->round++);
    struct memfit_store_options o = memfit_store_options_default();
    o.cache_dir = dir;
    o.offline = 0;
    memfit_store *s;
    enum memfit_status st = memfit_store_open(&o, &s);
    if (st != MEMFIT_OK)
        return st;
    const char *srcs[] = {w->file};
    struct memfit_fetch_options fo = {.name = "walk"};
    char *path = NULL;
    st = memfit_store_fetch(s, srcs, 1, &fo, &path);
    struct memfit_store_entry *e = NULL;
    size_t n = 0;
    if (st == MEMFIT_OK)
        st = memfit_store_list(s, &e, &n);
    memfit_store_entries_free(e, n);
    memfit_free(path);
    memfit_store_close(s);
    return st;
}

static void test_alloc_failures(void **state)
{
    (void)state;
    struct walk w = {0};
    for (w.round = 0; w.round < 4; w.round++)
        mf_test_alloc_failures(parse_op, parse_cleanup, &w);
    mf_test_alloc_failures(redact_op, text_cleanup, &w);
    mf_test_alloc_failures(ini_op, text_cleanup, &w);
    mf_test_alloc_failures(ref_op, ref_cleanup, &w);
    char path[512];
    tmp_path("credentials", path, sizeof(path));
    write_bytes(path, ini, strlen(ini));
    clear_aws_env();
    setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);
    setenv("AWS_PROFILE", "prod", 1);
    mf_test_alloc_failures(creds_op, creds_cleanup, &w);
    clear_aws_env();
    char file[512];
    make_file("walk.bin", 100000, 5, file, sizeof(file));
    w.file = file;
    w.round = 0;
    mf_test_alloc_failures(store_op, NULL, &w);
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmp_root, sizeof(tmp_root), "/tmp/memfit-test-store-XXXXXX");
    if (!mkdtemp(tmp_root))
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "chmod -R u+w '%s' && rm -rf '%s'", tmp_root, tmp_root);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_source_parse),        cmocka_unit_test(test_path_safety),
        cmocka_unit_test(test_redaction),           cmocka_unit_test(test_ini),
        cmocka_unit_test(test_credentials),         cmocka_unit_test(test_sha256_streaming),
        cmocka_unit_test(test_lock_stale_recovery), cmocka_unit_test(test_ref_parse),
        cmocka_unit_test(test_fetch_local),         cmocka_unit_test(test_quarantine_bound),
        cmocka_unit_test(test_fetch_threads),       cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

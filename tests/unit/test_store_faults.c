/*
 * Allocation-failure walks over the store's network path: a fetch from a
 * small HTTP server run by this test on 127.0.0.1 (one thread, raw sockets,
 * Range and HEAD support, no memfit allocation) with its 1st, 2nd, ...
 * allocation failing until it succeeds. Every failed step returns
 * MEMFIT_E_NOMEM, leaks nothing, and leaves in the cache nothing but a
 * resumable download (see check_left) which the same fetch without a
 * failure then completes. Also walked: the resumption of a partial download
 * (Range + If-Range) and memfit_store_head.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include "memfit/memfit.h"
#include "store/internal.h"
#include "test_util.h"

#define BLOB_BYTES 100000u

static unsigned char blob[BLOB_BYTES];
static char tmp_root[256];

/* ---- A tiny HTTP server ---------------------------------------------------------- */

struct http_server {
    int listen_fd;
    uint16_t port;
    pthread_t thread;
    _Atomic int stop;
    _Atomic unsigned n_requests, n_ranges; /* read by the test thread */
};

static void send_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0)
            return; /* the client went away */
        p += n;
        len -= (size_t)n;
    }
}

/* Answers one request on `fd`: GET or HEAD of /blob.bin, with "Range: bytes=N-[M]". */
static void serve_one(struct http_server *hs, int fd)
{
    char req[8192];
    size_t len = 0;
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    while (len < sizeof(req) - 1) {
        ssize_t n = recv(fd, req + len, sizeof(req) - 1 - len, 0);
        if (n <= 0)
            return;
        len += (size_t)n;
        req[len] = '\0';
        if (strstr(req, "\r\n\r\n"))
            break;
    }
    hs->n_requests++;
    bool head = strncmp(req, "HEAD ", 5) == 0;
    char out[512];
    int n;
    if (!strstr(req, " /blob.bin ")) {
        n = snprintf(out, sizeof(out),
                     "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        send_all(fd, out, (size_t)n);
        return;
    }
    size_t start = 0, end = BLOB_BYTES - 1;
    bool ranged = false;
    const char *range = strcasestr(req, "\r\nRange: bytes=");
    if (range) {
        unsigned long long a, b;
        int k = sscanf(range + 15, "%llu-%llu", &a, &b);
        if (k >= 1 && a < BLOB_BYTES) {
            start = (size_t)a;
            if (k == 2 && b < BLOB_BYTES && b >= a)
                end = (size_t)b;
            ranged = true;
            hs->n_ranges++;
        }
    }
    size_t body = end - start + 1;
    if (ranged)
        n = snprintf(out, sizeof(out),
                     "HTTP/1.1 206 Partial Content\r\nContent-Length: %zu\r\n"
                     "Content-Range: bytes %zu-%zu/%u\r\nETag: \"v1\"\r\n"
                     "Accept-Ranges: bytes\r\nConnection: close\r\n\r\n",
                     body, start, end, BLOB_BYTES);
    else
        n = snprintf(out, sizeof(out),
                     "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nETag: \"v1\"\r\n"
                     "Last-Modified: Mon, 01 Jan 2024 00:00:00 GMT\r\n"
                     "Accept-Ranges: bytes\r\nConnection: close\r\n\r\n",
                     body);
    send_all(fd, out, (size_t)n);
    if (!head)
        send_all(fd, blob + start, body);
}

static void *server_main(void *arg)
{
    struct http_server *hs = arg;
    while (!hs->stop) {
        struct pollfd p = {hs->listen_fd, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0)
            continue;
        int fd = accept(hs->listen_fd, NULL, NULL);
        if (fd < 0)
            continue;
        serve_one(hs, fd);
        shutdown(fd, SHUT_WR);
        close(fd);
    }
    return NULL;
}

static void server_start(struct http_server *hs)
{
    memset(hs, 0, sizeof(*hs));
    hs->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(hs->listen_fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(hs->listen_fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(hs->listen_fd, 16), 0);
    socklen_t alen = sizeof(a);
    assert_int_equal(getsockname(hs->listen_fd, (struct sockaddr *)&a, &alen), 0);
    hs->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&hs->thread, NULL, server_main, hs), 0);
}

static void server_stop(struct http_server *hs)
{
    hs->stop = 1;
    pthread_join(hs->thread, NULL);
    close(hs->listen_fd);
}

/*
 * What a failed step may leave in the cache: nothing; or a resumable
 * download (partial/<key> holding a prefix of the blob, and its .meta):
 * the store keeps what it downloaded so that the next fetch resumes it
 * (docs/store.md) rather than downloading it again after a transient
 * failure; or a blob with the source's ref when only the name's ref could
 * not be written, which the next fetch serves without any request. No
 * unnamed blob, no temporary file, no lock.
 */
static const char *check_partial; /* partial/<key> of the walk's source */
static char left_behind[700];
static bool cached_left; /* a blob or a ref: the next fetch must need no download */

static int check_left(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)ftw;
    if (type != FTW_F && type != FTW_SL)
        return 0;
    size_t n = strlen(check_partial);
    bool partial = strcmp(path, check_partial) == 0;
    bool meta = strncmp(path, check_partial, n) == 0 && strcmp(path + n, ".meta") == 0;
    if (partial && (size_t)sb->st_size <= BLOB_BYTES) {
        static unsigned char got[BLOB_BYTES];
        FILE *f = fopen(path, "rb");
        size_t k = f ? fread(got, 1, sizeof(got), f) : 0;
        if (f)
            fclose(f);
        if (k == (size_t)sb->st_size && memcmp(got, blob, k) == 0)
            return 0;
    }
    if (meta)
        return 0;
    if (strstr(path, "/blobs/sha256/") || strstr(path, "/refs/")) {
        cached_left = true;
        return 0;
    }
    snprintf(left_behind, sizeof(left_behind), "%s", path);
    return 1;
}

/* A file under `dir` that a failed fetch must not leave (NULL when none). */
static const char *wrongly_left(const char *dir, const char *partial)
{
    check_partial = partial;
    cached_left = false;
    left_behind[0] = '\0';
    nftw(dir, check_left, 16, FTW_PHYS);
    return left_behind[0] ? left_behind : NULL;
}

/* ---- The walks ------------------------------------------------------------------ */

struct walk {
    struct http_server *server;
    char url[128];
    int round;
    char dir[512];
    bool resume; /* start each step from a partial download of the first half */
};

static void write_partial(const struct walk *w);

/* partial/<sha256 of the source>: where the store downloads it (src/store/fetch.c). */
static void partial_path(const struct walk *w, char *out, size_t size)
{
    char key[MEMFIT_SHA256_HEX_LEN + 1];
    assert_int_equal(mf_sha256_string(w->url, key), MEMFIT_OK);
    snprintf(out, size, "%s/partial/%s", w->dir, key);
}

static enum memfit_status fetch_op(void *ctx)
{
    struct walk *w = ctx;
    snprintf(w->dir, sizeof(w->dir), "%s/fetch%d", tmp_root, w->round++);
    struct memfit_store_options o = memfit_store_options_default();
    o.cache_dir = w->dir;
    o.offline = 0;
    o.max_attempts = 2;
    o.backoff_initial_ms = 1;
    o.backoff_max_ms = 1;
    memfit_store *s;
    enum memfit_status st = memfit_store_open(&o, &s);
    if (st != MEMFIT_OK)
        return st;
    if (w->resume)
        write_partial(w);
    const char *srcs[] = {w->url};
    struct memfit_fetch_options fo = {.name = "net"};
    char *path = NULL;
    st = memfit_store_fetch(s, srcs, 1, &fo, &path);
    if (st == MEMFIT_OK) {
        FILE *f = fopen(path, "rb");
        static unsigned char got[BLOB_BYTES + 1];
        size_t n = f ? fread(got, 1, sizeof(got), f) : 0;
        if (f)
            fclose(f);
        assert_int_equal(n, BLOB_BYTES);
        assert_memory_equal(got, blob, BLOB_BYTES);
    } else {
        char partial[700];
        partial_path(w, partial, sizeof(partial));
        const char *left = wrongly_left(w->dir, partial);
        if (left)
            fail_msg("allocation failure (%s) left %s in the cache", memfit_last_error(), left);
        /* What is left resumes: the same fetch without a failure succeeds. */
        char message[300];
        snprintf(message, sizeof(message), "%s", memfit_last_error());
        mf_alloc_fail_after(0, false);
        char *again = NULL;
        unsigned requests = w->server->n_requests;
        enum memfit_status st2 = memfit_store_fetch(s, srcs, 1, &fo, &again);
        if (st2 != MEMFIT_OK)
            fail_msg("after '%s', the fetch again: %s", message, memfit_last_error());
        if (cached_left && w->server->n_requests != requests)
            fail_msg("after '%s', the blob left was downloaded again", message);
        memfit_free(again);
        memfit_fail(st, "%s", message);
    }
    memfit_free(path);
    memfit_store_close(s);
    return st;
}

/* partial/<sha256 of the source> with the first half, and its .meta, as an
 * interrupted download leaves them. */
static void write_partial(const struct walk *w)
{
    char path[700], meta[710];
    partial_path(w, path, sizeof(path));
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(blob, 1, BLOB_BYTES / 2, f), BLOB_BYTES / 2);
    fclose(f);
    snprintf(meta, sizeof(meta), "%s.meta", path);
    f = fopen(meta, "wb");
    assert_non_null(f);
    fprintf(f, "validator \"v1\"\netag \"v1\"\ntotal %u\nsource %s\n", BLOB_BYTES, w->url);
    fclose(f);
}

static enum memfit_status head_op(void *ctx)
{
    struct walk *w = ctx;
    struct memfit_store_options o = memfit_store_options_default();
    snprintf(w->dir, sizeof(w->dir), "%s/head", tmp_root);
    o.cache_dir = w->dir;
    o.offline = 0;
    memfit_store *s;
    enum memfit_status st = memfit_store_open(&o, &s);
    if (st != MEMFIT_OK)
        return st;
    uint64_t size = 0;
    st = memfit_store_head(s, w->url, &size);
    if (st == MEMFIT_OK)
        assert_int_equal(size, BLOB_BYTES);
    memfit_store_close(s);
    return st;
}

static void test_fetch_walks(void **state)
{
    (void)state;
    struct http_server hs;
    server_start(&hs);
    static struct walk w;
    memset(&w, 0, sizeof(w));
    w.server = &hs;
    snprintf(w.url, sizeof(w.url), "http://127.0.0.1:%u/blob.bin", (unsigned)hs.port);

    unsigned n = mf_test_alloc_failures(fetch_op, NULL, &w);
    printf("fetch over HTTP: %u steps\n", n);
    assert_true(n > 5);

    w.resume = true;
    unsigned ranges = hs.n_ranges;
    n = mf_test_alloc_failures(fetch_op, NULL, &w);
    printf("fetch resuming a partial download: %u steps\n", n);
    assert_true(n > 5);
    assert_true(hs.n_ranges > ranges); /* the resumptions asked for the second half */

    n = mf_test_alloc_failures(head_op, NULL, &w);
    printf("head over HTTP: %u steps\n", n);
    assert_true(n >= 2);
    server_stop(&hs);
}

static int setup(void **state)
{
    (void)state;
    for (size_t i = 0; i < BLOB_BYTES; i++)
        blob[i] = (unsigned char)(i * 131 + (i >> 8));
    snprintf(tmp_root, sizeof(tmp_root), "/tmp/memfit-test-store-faults-XXXXXX");
    if (!mkdtemp(tmp_root))
        return -1;
    /* No proxy between the test and its own server. */
    unsetenv("http_proxy");
    unsetenv("HTTP_PROXY");
    unsetenv("all_proxy");
    unsetenv("ALL_PROXY");
    memfit_log_set_level(MEMFIT_LOG_ERROR);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "chmod -R u+w '%s' && rm -rf '%s'", tmp_root, tmp_root);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fetch_walks),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

/*
 * Allocation-failure walks over the server: a real memfit_server on
 * 127.0.0.1 (port 0) serving the DINOv2 fixture, driven by a raw-socket HTTP
 * client that allocates nothing through memfit. For each route, the 1st,
 * 2nd, ... allocation after the request is sent fails (one failure per
 * step) until the route succeeds with no failure injected; at every step
 * the answer is a complete HTTP response with the route's status or
 * 500/503 (or the connection is closed), the server still answers /health,
 * and stateless routes leave no allocation behind. At the end the server is
 * destroyed and every allocation is given back. Also: the /metrics text
 * rendering walked directly.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "memfit/memfit.h"
#include "server/internal.h"
#include "server/metrics.h"
#include "test_util.h"

/* A response read whole: status, body offset and length. */
#define RESPONSE_MAX (1u << 20)

struct response {
    int status;     /* 0: the connection closed without a complete response */
    size_t body_at; /* offset of the body in buf */
    size_t len;
    char buf[RESPONSE_MAX];
};

static struct response resp; /* static: 1 MiB, not on the stack */

/* The value of header `name` (case-insensitive) in the head of `r`, or NULL. */
static const char *find_header(const struct response *r, const char *name, size_t *value_len)
{
    size_t n = strlen(name);
    for (const char *p = strstr(r->buf, "\r\n"); p && p < r->buf + r->body_at;
         p = strstr(p, "\r\n")) {
        p += 2;
        if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
            const char *v = p + n + 1;
            while (*v == ' ')
                v++;
            *value_len = (size_t)(strstr(v, "\r\n") - v);
            return v;
        }
    }
    return NULL;
}

/*
 * Sends `request` to 127.0.0.1:port and reads until the server closes.
 * r->status is the HTTP status when the response is complete (status line,
 * headers, and a body of the Content-Length announced), else 0. No memfit
 * allocation; a 30 s receive timeout fails the test (a hang).
 */
static void http_exchange(uint16_t port, const char *request, size_t request_len,
                          struct response *r)
{
    memset(r, 0, offsetof(struct response, buf));
    r->buf[0] = '\0';
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct timeval tv = {30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    for (size_t off = 0; off < request_len;) {
        ssize_t n = send(fd, request + off, request_len - off, MSG_NOSIGNAL);
        if (n <= 0)
            break; /* the server closed early: what it answered is read below */
        off += (size_t)n;
    }
    for (;;) {
        ssize_t n = recv(fd, r->buf + r->len, sizeof(r->buf) - 1 - r->len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            fail_msg("no answer in 30 s to: %.60s", request);
        if (n <= 0)
            break;
        r->len += (size_t)n;
        assert_true(r->len < sizeof(r->buf) - 1);
    }
    close(fd);
    r->buf[r->len] = '\0';
    const char *end = strstr(r->buf, "\r\n\r\n");
    int status;
    if (!end || sscanf(r->buf, "HTTP/1.%*d %d", &status) != 1)
        return;
    r->body_at = (size_t)(end + 4 - r->buf);
    size_t vlen;
    const char *cl = find_header(r, "Content-Length", &vlen);
    if (!cl || strtoull(cl, NULL, 10) != r->len - r->body_at)
        return; /* cut short */
    r->status = status;
}

/* GET (body NULL) or POST a JSON body, Connection: close. */
static void http_call(uint16_t port, const char *method, const char *path, const char *body,
                      size_t body_len, struct response *r)
{
    static char request[1 << 16];
    int n = body ? snprintf(request, sizeof(request),
                            "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                            "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                            method, path, body_len)
                 : snprintf(request, sizeof(request),
                            "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                            method, path);
    assert_true(n > 0 && (size_t)n + body_len < sizeof(request));
    if (body) {
        memcpy(request + n, body, body_len);
        n += (int)body_len;
    }
    http_exchange(port, request, (size_t)n, r);
}

/* ---- The server ------------------------------------------------------------------ */

static char tmp_root[256];

struct fixture {
    memfit_server *srv;
    uint16_t port;
    char *embed_body; /* the POST /v1/embeddings body: the fixture image as a data URL */
    size_t embed_len;
    char *infer_body; /* the same image for POST /v2/models/vits_tiny/infer */
    size_t infer_len;
};

static const char *const b64_digits =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* The embeddings request for `model` with the image file `path`, allocated (before any walk). */
/* The fixture image in a /v1/embeddings body, or (v2) a /v2/models/{name}/infer one. */
static char *embed_request(const char *model, const char *path, bool v2, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    static unsigned char img[1 << 14];
    size_t n = fread(img, 1, sizeof(img), f);
    fclose(f);
    assert_true(n > 0 && n < sizeof(img));
    size_t cap = 200 + 4 * ((n + 2) / 3);
    char *out = memfit_malloc(cap);
    assert_non_null(out);
    size_t o = v2 ? (size_t)snprintf(out, cap,
                                     "{\"inputs\":[{\"name\":\"image\",\"shape\":[1],"
                                     "\"datatype\":\"BYTES\",\"data\":[\"")
                  : (size_t)snprintf(out, cap,
                                     "{\"model\":\"%s\",\"input\":\"data:image/png;base64,", model);
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)img[i] << 16 | (i + 1 < n ? (uint32_t)img[i + 1] << 8 : 0) |
                     (i + 2 < n ? img[i + 2] : 0);
        out[o++] = b64_digits[v >> 18 & 63];
        out[o++] = b64_digits[v >> 12 & 63];
        out[o++] = i + 1 < n ? b64_digits[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? b64_digits[v & 63] : '=';
    }
    o += (size_t)snprintf(out + o, cap - o, v2 ? "\"]}]}" : "\"}");
    *len = o;
    return out;
}

/* Waits until the server's connection threads have given back what they
 * hold (on_completed runs around the close), up to 2 s. */
static uint64_t settle_live(uint64_t want)
{
    uint64_t live = mf_alloc_live_count();
    for (int i = 0; i < 400 && live != want; i++) {
        struct timespec ts = {0, 5 * 1000000L};
        nanosleep(&ts, NULL);
        live = mf_alloc_live_count();
    }
    return live;
}

/* ---- The walk over one route ------------------------------------------------------- */

struct route_walk {
    const char *method, *path;
    const char *body;
    size_t body_len;
    int ok_status;     /* what the route answers without a failure */
    bool stateless;    /* leaves nothing allocated behind: checked at every step */
    const char *reset; /* a POST sent (no injection) before each step, or NULL */
};

/* Whether a failed answer says why: out of memory (the failure injected). */
static bool says_out_of_memory(const struct response *r)
{
    const char *body = r->buf + r->body_at;
    return strstr(body, "out_of_memory") || strstr(body, "out of memory");
}

static unsigned walk_route(struct fixture *fx, const struct route_walk *w)
{
    unsigned n, n_closed = 0, n_failed = 0;
    for (n = 1; n < 100000; n++) {
        if (w->reset) {
            http_call(fx->port, "POST", w->reset, "{}", 2, &resp);
            assert_int_equal(resp.status, 200);
        }
        uint64_t live_before = settle_live(mf_alloc_live_count());
        mf_alloc_fail_after(n, false);
        http_call(fx->port, w->method, w->path, w->body, w->body_len, &resp);
        uint64_t injected = mf_alloc_injected_failures();
        mf_alloc_fail_after(0, false);
        int status = resp.status;
        if (status == 0) {
            n_closed++;
        } else if (status != w->ok_status) {
            if ((status != 500 && status != 503) || !says_out_of_memory(&resp))
                fail_msg("%s %s, allocation %u failed: answered %d: %s", w->method, w->path, n,
                         status, resp.buf + resp.body_at);
            n_failed++;
        }
        /* The server lives on. */
        http_call(fx->port, "GET", "/health", NULL, 0, &resp);
        if (resp.status != 200)
            fail_msg("%s %s, allocation %u failed: /health then answered %d", w->method, w->path, n,
                     resp.status);
        if (w->stateless && settle_live(live_before) != live_before)
            fail_msg("%s %s, allocation %u failed: %lld allocation(s) left behind", w->method,
                     w->path, n, (long long)(mf_alloc_live_count() - live_before));
        if (status == w->ok_status && injected == 0)
            break; /* every allocation of the request has failed once */
    }
    printf("%s %s: %u steps (%u closed, %u answered 500/503)\n", w->method, w->path, n, n_closed,
           n_failed);
    /* Even the request's own record and its body's buffer: a static 503. */
    assert_int_equal(n_closed, 0);
    return n;
}

static void test_route_walks(void **state)
{
    struct fixture *fx = *state;
    static const struct route_walk walks[] = {
        {"GET", "/health", NULL, 0, 200, true, NULL},
        {"GET", "/ready", NULL, 0, 200, true, NULL},
        {"GET", "/", NULL, 0, 200, true, NULL},
        {"GET", "/v1/models", NULL, 0, 200, true, NULL},
        {"GET", "/api/models", NULL, 0, 200, true, NULL},
        {"GET", "/no/such/route", NULL, 0, 404, true, NULL},
        {"GET", "/metrics", NULL, 0, 200, false, NULL},
        {"GET", "/api/memory", NULL, 0, 200, false, NULL},
        {"POST", "/api/cleanup", "{}", 2, 200, false, NULL},
        {"POST", "/api/models/vits_tiny/load", "{}", 2, 200, false, "/api/models/vits_tiny/unload"},
        {"GET", "/v2", NULL, 0, 200, true, NULL},
        {"GET", "/v2/health/ready", NULL, 0, 200, true, NULL},
        {"GET", "/v2/models/vits_tiny", NULL, 0, 200, true, NULL},
        {"GET", "/v2/models/nope/versions/1", NULL, 0, 404, true, NULL},
        {"POST", "/v2/repository/index", "{\"ready\":false}", 15, 200, false, NULL},
        {"POST", "/v2/repository/models/vits_tiny/load", "", 0, 200, false,
         "/v2/repository/models/vits_tiny/unload"},
    };
    for (size_t i = 0; i < sizeof(walks) / sizeof(walks[0]); i++)
        assert_true(walk_route(fx, &walks[i]) >= 2);
    /* The model loaded and run at every step: unloaded before each. */
    struct route_walk embed = {"POST",
                               "/v1/embeddings",
                               fx->embed_body,
                               fx->embed_len,
                               200,
                               false,
                               "/api/models/vits_tiny/unload"};
    assert_true(walk_route(fx, &embed) > 20);
    /* And once loaded: the request alone. */
    embed.reset = "/api/models/vits_tiny/load";
    assert_true(walk_route(fx, &embed) > 5);
    /* The same through the Open Inference Protocol. */
    struct route_walk infer = {
        "POST", "/v2/models/vits_tiny/infer",  fx->infer_body, fx->infer_len, 200,
        false,  "/api/models/vits_tiny/unload"};
    assert_true(walk_route(fx, &infer) > 20);
}

/* ---- The /metrics rendering ----------------------------------------------------------- */

struct metrics_walk {
    struct mf_metrics m;
    struct memfit_manager_status *snap;
    struct mf_mem_sample sample;
    struct mf_server_gauges g;
    char *text;
};

static enum memfit_status metrics_op(void *ctx)
{
    struct metrics_walk *w = ctx;
    struct mf_text t = {0};
    if (!mf_metrics_format(&t, &w->m, w->snap, &w->sample, &w->g)) {
        mf_text_free(&t);
        return MEMFIT_E_NOMEM;
    }
    w->text = mf_text_take(&t, NULL);
    return w->text ? MEMFIT_OK : MEMFIT_E_NOMEM;
}

static void metrics_cleanup(void *ctx)
{
    struct metrics_walk *w = ctx;
    assert_non_null(strstr(w->text, "memfit_model_state{model=\"vits_tiny\""));
    assert_non_null(strstr(w->text, "memfit_http_request_duration_seconds_bucket"));
    memfit_free(w->text);
    w->text = NULL;
}

static void test_metrics_walk(void **state)
{
    struct fixture *fx = *state;
    static struct metrics_walk w;
    memset(&w, 0, sizeof(w));
    for (int r = 0; r < MF_ROUTE_COUNT; r++)
        mf_metrics_observe(&w.m, (enum mf_route)r, r % 2 ? 200 : 503, 1000000u * (unsigned)r);
    assert_int_equal(memfit_manager_snapshot(memfit_server_manager(fx->srv), &w.snap), MEMFIT_OK);
    w.sample.working_set_bytes = 1u << 30;
    w.sample.limit_bytes = 4u << 30;
    w.sample.rss_bytes = 100u << 20;
    w.sample.have_psi = true;
    w.g.queue_capacity = 64;
    unsigned n = mf_test_alloc_failures(metrics_op, metrics_cleanup, &w);
    printf("mf_metrics_format: %u steps\n", n);
    assert_true(n >= 2);
    memfit_free(w.snap);
}

/* ---- Setup ------------------------------------------------------------------------------ */

static uint64_t live_at_start;

static int setup(void **state)
{
    snprintf(tmp_root, sizeof(tmp_root), "/tmp/memfit-test-server-faults-XXXXXX");
    if (!mkdtemp(tmp_root))
        return -1;
    char cache[300];
    snprintf(cache, sizeof(cache), "%s/cache", tmp_root);
    setenv("MEMFIT_CACHE_DIR", cache, 1);
    setenv("MEMFIT_LOG_LEVEL", "error", 1);
    memfit_log_set_level(MEMFIT_LOG_ERROR);
    live_at_start = mf_alloc_live_count();
    static struct fixture fx;
    char model[512], image[512];
    mf_test_fixture("dinov2/vits_tiny.pth", model, sizeof(model));
    mf_test_fixture("images/rgb8.png", image, sizeof(image));
    struct stat sb;
    if (stat(model, &sb) != 0 || stat(image, &sb) != 0)
        MF_TEST_SKIP_ALL("fixtures not found (%s)", model);
    fx.embed_body = embed_request("vits_tiny", image, false, &fx.embed_len);
    fx.infer_body = embed_request("vits_tiny", image, true, &fx.infer_len);
    struct memfit_server_options o;
    memfit_server_options_default(&o);
    o.port = 0;
    const char *sources[] = {model};
    o.model_sources = sources;
    o.n_model_sources = 1;
    o.reaper_thread = false; /* no allocation from a timer between the steps */
    o.budget_bytes = 1ull << 30;
    enum memfit_status st = memfit_server_create(&o, &fx.srv);
    if (st != MEMFIT_OK) {
        if (st == MEMFIT_E_UNSUPPORTED)
            MF_TEST_SKIP_ALL("cannot serve: %s", memfit_last_error());
        fprintf(stderr, "server: %s\n", memfit_last_error());
        return -1;
    }
    /* The thread that plans the models at start allocates: let it end first. */
    if (fx.srv->check_started) {
        pthread_join(fx.srv->check_thread, NULL);
        fx.srv->check_started = false;
    }
    fx.port = memfit_server_port(fx.srv);
    *state = &fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    memfit_server_destroy(fx->srv);
    memfit_free(fx->embed_body);
    memfit_free(fx->infer_body);
    /* Every allocation of the server, its threads and the walks was given back. */
    uint64_t live = mf_alloc_live_count();
    if (live != live_at_start)
        fprintf(stderr, "leak: %llu allocation(s) live after destroy, %llu before create\n",
                (unsigned long long)live, (unsigned long long)live_at_start);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp_root);
    if (system(cmd) != 0)
        return -1;
    return live == live_at_start ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_walk),
        cmocka_unit_test(test_route_walks),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

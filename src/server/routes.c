/*
 * The HTTP routes of the server (the list is in include/memfit/server.h):
 * request bookkeeping (body limits, API key, metrics, cancellation), the
 * model routes (embeddings, completions and chat, segmentation) with their
 * admission control, the model and memory APIs, cleanup, health, metrics,
 * the dashboard and the event stream.
 *
 * Status codes: 400 bad request (JSON, types, base64, image), 401 API key,
 * 403 Host or Origin not allowed (browser safety), 415 not JSON,
 * 404 unknown route or model, 405 method, 409 model busy, 413 body too
 * large, 429 queue full or too many connections of one client
 * (Retry-After), 501 no engine for the family, 503 budget refusal /
 * admission timeout / load failure / not ready / server busy.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "server/internal.h"

/* A request in progress: one per HTTP request, freed by on_completed. */
struct req {
    memfit_server *srv;
    struct MHD_Connection *conn;
    enum mf_route route;
    char name[MF_MODEL_NAME_MAX];
    char version[MF_MODEL_VERSION_MAX]; /* /v2/models/{name}/versions/{version}; "" if none */
    uint64_t start_ns;
    int status; /* the status queued; 0 = none yet */
    int fd;
    char *body;
    size_t body_len, body_cap;
    bool body_mapped; /* body is an anonymous mapping of body_cap bytes */
    bool too_large;
    bool answered; /* an early answer (401, 413, ...) was queued */
    /* Request memory in the budget (see "Request memory" below). */
    struct mf_json_scan scan;
    const struct mf_json_schema *schema; /* NULL: the body is not parsed */
    memfit_reservation *body_res, *parse_res, *input_res;
    bool refused; /* refused while reading: `refusal` is answered once the body ends */
    struct mf_http_error refusal;
    /* An allowed cross-site Origin, echoed in Access-Control-Allow-Origin
     * (the connection's header value: valid until the request completes). */
    const char *cors_origin;
    _Atomic bool cancelled;
    /* the event stream */
    uint64_t ev_seq;
    uint64_t next_sample_ns;
    struct mf_text pending;
    size_t pending_off;
};

/* ---- Answers --------------------------------------------------------------------- */

/* Queues `resp` with the headers every answer carries (CORS for an allowed origin). */
static enum MHD_Result queue(struct req *r, int status, struct MHD_Response *resp)
{
    if (r->cors_origin) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", r->cors_origin);
        MHD_add_response_header(resp, "Vary", "Origin");
    }
    r->status = status;
    enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* The answer when the answer itself could not be allocated: a static 503
 * (libmicrohttpd's own allocation left; without it the connection closes).
 * `r` is NULL when the request's own record could not be allocated. */
static enum MHD_Result respond_no_memory(struct MHD_Connection *conn, struct req *r)
{
    static const char body[] = "{\"error\":{\"message\":\"out of memory\",\"type\":"
                               "\"server_error\",\"code\":\"out_of_memory\"}}\n";
    static const char v2_body[] = "{\"error\":\"out of memory\"}\n";
    bool v2 = r && mf_route_is_v2(r->route);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(v2 ? sizeof(v2_body) - 1 : sizeof(body) - 1,
                                        (void *)(v2 ? v2_body : body), MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    if (r)
        return queue(r, 503, resp);
    enum MHD_Result ret = MHD_queue_response(conn, 503, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result respond(struct req *r, int status, const char *type, char *body, size_t len,
                               const char *h_name, const char *h_value)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer_with_free_callback(len, body, memfit_free);
    if (!resp) {
        memfit_free(body);
        return respond_no_memory(r->conn, r);
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (h_name)
        MHD_add_response_header(resp, h_name, h_value);
    return queue(r, status, resp);
}

static enum MHD_Result respond_text(struct req *r, int status, const char *type, struct mf_text *t)
{
    size_t len;
    char *s = mf_text_take(t, &len);
    if (!s)
        return respond_no_memory(r->conn, r);
    return respond(r, status, type, s, len, NULL, NULL);
}

static enum MHD_Result respond_json(struct req *r, int status, struct mf_text *t)
{
    mf_text_puts(t, "\n");
    return respond_text(r, status, "application/json", t);
}

/* The error with one more header, not logged (refusals that come in floods). */
static enum MHD_Result respond_error_quiet(struct req *r, const struct mf_http_error *e,
                                           const char *h_name, const char *h_value)
{
    char *body;
    size_t len;
    /* The Open Inference Protocol's errors are {"error": "message"}. */
    enum memfit_status st = mf_route_is_v2(r->route) ? mf_v2_error_json(e, &body, &len)
                                                     : mf_http_error_json(e, &body, &len);
    if (st != MEMFIT_OK)
        return respond_no_memory(r->conn, r);
    return respond(r, e->status, "application/json", body, len, h_name, h_value);
}

static enum MHD_Result respond_error_h(struct req *r, const struct mf_http_error *e,
                                       const char *h_name, const char *h_value)
{
    if (e->status >= 500 || e->status == 429)
        memfit_log(MEMFIT_LOG_INFO, "%s -> %d: %s", mf_route_label(r->route), e->status,
                   e->message);
    return respond_error_quiet(r, e, h_name, h_value);
}

static enum MHD_Result respond_error(struct req *r, const struct mf_http_error *e)
{
    return respond_error_h(r, e, NULL, NULL);
}

static enum MHD_Result fail(struct req *r, int status, const char *type, const char *code,
                            const char *message)
{
    struct mf_http_error e;
    mf_http_error_set(&e, status, type, code, "%s", message);
    if (status == 401)
        return respond_error_h(r, &e, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    if (status == 429 || status == 503)
        return respond_error_h(r, &e, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    return respond_error(r, &e);
}

/* An error answer; 429 and 503 carry Retry-After. */
static enum MHD_Result answer_error(struct req *r, const struct mf_http_error *e)
{
    if (e->status == 429 || e->status == 503)
        return respond_error_h(r, e, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    return respond_error(r, e);
}

/* An error of the manager or an engine, as HTTP. */
static enum MHD_Result fail_status(struct req *r, enum memfit_status st)
{
    const char *msg = memfit_last_error();
    switch (st) {
    case MEMFIT_E_NOT_FOUND:
        return fail(r, 404, "invalid_request_error", "model_not_found", msg);
    case MEMFIT_E_BUSY:
        return fail(r, 429, "rate_limit_error", "model_busy", msg);
    case MEMFIT_E_BUDGET:
        return fail(r, 503, "server_error", "insufficient_memory", msg);
    case MEMFIT_E_TOO_LARGE: {
        /* Larger than the whole budget: retrying cannot help, so no Retry-After. */
        struct mf_http_error e;
        mf_http_error_set(&e, 503, "server_error", "model_too_large", "%s", msg);
        return respond_error(r, &e);
    }
    case MEMFIT_E_TIMEOUT:
        return fail(r, 503, "server_error", "timeout", msg);
    case MEMFIT_E_UNSUPPORTED:
        return fail(r, 501, "server_error", "engine_unavailable", msg);
    case MEMFIT_E_FORMAT:
    case MEMFIT_E_RANGE:
        return fail(r, 400, "invalid_request_error", "invalid_input", msg);
    case MEMFIT_E_NOMEM:
        return fail(r, 503, "server_error", "out_of_memory", msg);
    default:
        return fail(r, 503, "server_error", "model_unavailable", msg);
    }
}

/* ---- Request memory ---------------------------------------------------------------------------
 *
 * A request's memory is reserved from the model budget before it is used,
 * like a model's (owner "requests"): the body's bytes before any is read
 * (Content-Length; a chunked body as it grows), then what parsing it will
 * allocate, counted by the streaming scan while the body arrives, before the
 * parser runs. A scan that finds a syntax error or an unknown member refuses
 * the request at that byte: the rest is read and dropped, nothing is built.
 * Reservations take free room only (a body never unloads a model): 503
 * insufficient_memory with the figures when the room is not there now, 413
 * request_too_large when the whole budget could not hold it. Everything is
 * given back when the request completes, and the heap is trimmed after a
 * large one, so memory returns to where it was.
 */

#define BODY_MAP_BYTES   (256u * 1024)  /* larger bodies are mappings: freed at once */
#define TRIM_AFTER_BYTES (1024u * 1024) /* a request that reserved more trims the heap */

static memfit_budget *req_budget(struct req *r)
{
    return memfit_manager_budget(r->srv->mgr);
}

/* Reserves `bytes` of free room into *slot (replacing what it held), or fills *e. */
static bool reserve_request(struct req *r, memfit_reservation **slot, uint64_t bytes,
                            const char *what, struct mf_http_error *e)
{
    memfit_budget_release(*slot);
    *slot = NULL;
    struct memfit_budget_usage u;
    memfit_budget_get_usage(req_budget(r), &u);
    char need[32], free_b[32], size[32];
    memfit_format_size(bytes, need, sizeof(need));
    memfit_format_size(u.free_bytes, free_b, sizeof(free_b));
    memfit_format_size(u.size_bytes, size, sizeof(size));
    if (bytes > u.size_bytes) {
        mf_http_error_set(e, 413, "invalid_request_error", "request_too_large",
                          "this request needs %s of memory %s; the whole memory budget is %s", need,
                          what, size);
        return false;
    }
    enum memfit_status st = bytes > u.free_bytes
                                ? MEMFIT_E_BUDGET
                                : memfit_budget_reserve(req_budget(r), MEMFIT_BUDGET_WORKSPACE,
                                                        bytes, "requests", 0, slot);
    if (st == MEMFIT_E_NOMEM) { /* the reservation's record: not the budget's fault */
        mf_http_error_set(e, 503, "server_error", "out_of_memory", "%s", memfit_last_error());
        return false;
    }
    if (st != MEMFIT_OK) {
        memfit_clear_error();
        mf_http_error_set(e, 503, "server_error", "insufficient_memory",
                          "this request needs %s of memory %s; the budget has %s free of %s now "
                          "(models and other requests hold the rest)",
                          need, what, free_b, size);
        return false;
    }
    return true;
}

static uint64_t reserved(const struct req *r)
{
    return (r->body_res ? memfit_reservation_bytes(r->body_res) : 0) +
           (r->parse_res ? memfit_reservation_bytes(r->parse_res) : 0) +
           (r->input_res ? memfit_reservation_bytes(r->input_res) : 0);
}

static void free_body(struct req *r)
{
    if (r->body_mapped)
        mf_unmap_anon(r->body, r->body_cap);
    else
        memfit_free(r->body);
    r->body = NULL;
    r->body_cap = 0;
    r->body_mapped = false;
}

/* The body has been parsed (what the request needs is copied out): its
 * bytes and their reservation go back at once. */
static void body_parsed(struct req *r)
{
    free_body(r);
    r->body_len = 0;
    memfit_budget_release(r->body_res);
    r->body_res = NULL;
}

/*
 * Room for `more` bytes of decoded input (images) held until the request
 * ends, or *e: 503 insufficient_memory naming the input.
 */
static bool reserve_input(struct req *r, uint64_t more, const char *name, struct mf_http_error *e)
{
    uint64_t have = r->input_res ? memfit_reservation_bytes(r->input_res) : 0;
    char what[64];
    snprintf(what, sizeof(what), "to decode %s", name);
    return reserve_request(r, &r->input_res, have + more, what, e);
}

/* The pixels an image may have to fit in the budget's free room now (3 bytes each). */
static uint64_t room_pixels(struct req *r)
{
    struct memfit_budget_usage u;
    memfit_budget_get_usage(req_budget(r), &u);
    return u.free_bytes / 3;
}

/* ---- Cancellation ------------------------------------------------------------------ */

static bool req_cancelled(void *user)
{
    struct req *r = user;
    if (atomic_load(&r->cancelled))
        return true;
    if (atomic_load(&r->srv->cancel_all)) {
        atomic_store(&r->cancelled, true);
        return true;
    }
    if (r->fd >= 0) {
        char c;
        ssize_t n = recv(r->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            atomic_store(&r->cancelled, true);
            return true;
        }
    }
    return false;
}

/* ---- Small JSON helpers --------------------------------------------------------------- */

static void json_key_string(struct mf_text *t, const char *key, const char *value)
{
    mf_text_printf(t, "\"%s\":", key);
    mf_text_json_string(t, value, strlen(value));
}

/* A time of the manager's (monotonic) clock as wall milliseconds; 0 stays 0. */
static uint64_t mono_to_wall_ms(uint64_t t_ns)
{
    if (!t_ns)
        return 0;
    uint64_t now = memfit_now_ns(), wall = memfit_wall_ns();
    uint64_t ago = now > t_ns ? now - t_ns : 0;
    return (wall > ago ? wall - ago : 0) / 1000000u;
}

static void budget_json(struct mf_text *t, const struct memfit_budget_usage *b)
{
    mf_text_printf(t,
                   "{\"size_bytes\":%" PRIu64 ",\"reserved_bytes\":%" PRIu64
                   ",\"free_bytes\":%" PRIu64 ",\"peak_reserved_bytes\":%" PRIu64
                   ",\"weights_bytes\":%" PRIu64 ",\"converted_weights_bytes\":%" PRIu64
                   ",\"workspace_bytes\":%" PRIu64 ",\"kv_cache_bytes\":%" PRIu64
                   ",\"reservations\":%zu,\"waiting\":%u,\"refused\":%" PRIu64 "}",
                   b->size_bytes, b->reserved_bytes, b->free_bytes, b->peak_reserved_bytes,
                   b->by_category[MEMFIT_BUDGET_WEIGHTS],
                   b->by_category[MEMFIT_BUDGET_CONVERTED_WEIGHTS],
                   b->by_category[MEMFIT_BUDGET_WORKSPACE], b->by_category[MEMFIT_BUDGET_KV_CACHE],
                   b->n_reservations, b->n_waiting, b->n_refused);
}

static void model_json(struct mf_text *t, const struct memfit_model_status *m, uint64_t now)
{
    mf_text_puts(t, "{");
    json_key_string(t, "name", m->name);
    mf_text_puts(t, ",");
    json_key_string(t, "family", m->family);
    mf_text_puts(t, ",");
    json_key_string(t, "state", memfit_model_state_name(m->state));
    mf_text_printf(t,
                   ",\"pinned\":%s,\"keep_alive_s\":%" PRId64
                   ",\"max_concurrency\":%u,\"in_use\":%u,\"waiting\":%u,\"bytes\":%" PRIu64
                   ",\"weights_bytes\":%" PRIu64 ",\"workspace_bytes\":%" PRIu64
                   ",\"load_time_s\":%.3f,\"loaded_at_ms\":%" PRIu64 ",\"last_used_ms\":%" PRIu64,
                   m->pinned ? "true" : "false", m->keep_alive_s, m->max_concurrency, m->in_use,
                   m->waiting, m->total_bytes, m->bytes.bytes[MEMFIT_BUDGET_WEIGHTS],
                   m->bytes.bytes[MEMFIT_BUDGET_WORKSPACE], (double)m->load_time_ns / 1e9,
                   mono_to_wall_ms(m->loaded_at_ns), mono_to_wall_ms(m->last_used_ns));
    if (m->expires_at_ns)
        mf_text_printf(t, ",\"expires_in_s\":%.1f",
                       m->expires_at_ns > now ? (double)(m->expires_at_ns - now) / 1e9 : 0.0);
    if (m->retry_at_ns)
        mf_text_printf(t, ",\"retry_in_s\":%.1f",
                       m->retry_at_ns > now ? (double)(m->retry_at_ns - now) / 1e9 : 0.0);
    mf_text_printf(t,
                   ",\"requests\":%" PRIu64 ",\"loads\":%" PRIu64 ",\"unloads\":%" PRIu64
                   ",\"evictions\":%" PRIu64 ",\"failures\":%" PRIu64 ",\"refusals\":%" PRIu64 ",",
                   m->n_requests, m->n_loads, m->n_unloads, m->n_evictions, m->n_failures,
                   m->n_refusals);
    json_key_string(t, "last_error", m->last_error);
    mf_text_puts(t, "}");
}

/* ---- Routes -------------------------------------------------------------------------- */

static enum MHD_Result respond_literal(struct req *r, const char *json)
{
    struct mf_text t = {0};
    mf_text_puts(&t, json);
    return respond_json(r, 200, &t);
}

/* /health and /v2/health/live. */
static enum MHD_Result route_health(struct req *r)
{
    return respond_literal(r, r->route == MF_ROUTE_V2_LIVE ? "{\"live\":true}"
                                                           : "{\"status\":\"ok\"}");
}

/* Whether the server takes work now (/ready, /v2/health/ready); false with a 503 queued. */
static bool server_ready(struct req *r, enum MHD_Result *ret)
{
    memfit_server *srv = r->srv;
    if (atomic_load(&srv->stopping) || atomic_load(&srv->draining)) {
        *ret = fail(r, 503, "server_error", "not_ready", "the server is shutting down");
        return false;
    }
    struct memfit_manager_status *s;
    if (memfit_manager_snapshot(srv->mgr, &s) != MEMFIT_OK) {
        *ret = fail(r, 503, "server_error", "out_of_memory", memfit_last_error());
        return false;
    }
    bool room = s->budget.free_bytes > 0;
    for (size_t i = 0; !room && i < s->n_models; i++)
        room = s->unloading_enabled && s->models[i].state == MEMFIT_MODEL_READY &&
               !s->models[i].pinned;
    uint64_t used = s->budget.reserved_bytes, size = s->budget.size_bytes;
    memfit_free(s);
    if (!room) {
        char msg[200];
        char a[32], b[32];
        snprintf(msg, sizeof(msg),
                 "the budget is exhausted (%s reserved of %s) and no idle model can be unloaded",
                 memfit_format_size(used, a, sizeof(a)), memfit_format_size(size, b, sizeof(b)));
        *ret = fail(r, 503, "server_error", "not_ready", msg);
        return false;
    }
    return true;
}

/* /ready and /v2/health/ready. */
static enum MHD_Result route_ready(struct req *r)
{
    enum MHD_Result ret;
    if (!server_ready(r, &ret))
        return ret;
    return respond_literal(r, r->route == MF_ROUTE_V2_READY ? "{\"ready\":true}"
                                                            : "{\"status\":\"ready\"}");
}

static void gauges(memfit_server *srv, struct mf_server_gauges *g)
{
    memset(g, 0, sizeof(*g));
    g->connections = atomic_load(&srv->active);
    g->queue_depth = atomic_load(&srv->waiting);
    g->queue_running = atomic_load(&srv->running);
    g->queue_capacity = srv->opt.max_queue;
    g->uptime_ns = memfit_now_ns() - srv->start_ns;
    pthread_mutex_lock(&srv->lock);
    g->reloads = srv->reloads;
    g->reload_failures = srv->reload_failures;
    pthread_mutex_unlock(&srv->lock);
    mf_conns_counts(&srv->conns, &g->connections_open, &g->cut_header_total, &g->cut_request_total);
}

static enum MHD_Result route_metrics(struct req *r)
{
    memfit_server *srv = r->srv;
    struct memfit_manager_status *s;
    if (memfit_manager_snapshot(srv->mgr, &s) != MEMFIT_OK)
        return fail(r, 503, "server_error", "out_of_memory", memfit_last_error());
    struct mf_mem_sample sample;
    mf_server_sample(srv, &sample);
    struct mf_server_gauges g;
    gauges(srv, &g);
    struct mf_text t = {0};
    mf_metrics_format(&t, &srv->metrics, s, &sample, &g);
    memfit_free(s);
    return respond_text(r, 200, "text/plain; version=0.0.4; charset=utf-8", &t);
}

/* OpenAI's model object. */
static void v1_model_json(struct mf_text *t, const struct req *r, const char *name)
{
    mf_text_puts(t, "{");
    json_key_string(t, "id", name);
    mf_text_printf(t, ",\"object\":\"model\",\"created\":%" PRIu64 ",\"owned_by\":\"memfit\"}",
                   r->srv->start_wall_ns / 1000000000u);
}

static enum MHD_Result route_v1_models(struct req *r)
{
    struct memfit_manager_status *s;
    if (memfit_manager_snapshot(r->srv->mgr, &s) != MEMFIT_OK)
        return fail(r, 503, "server_error", "out_of_memory", memfit_last_error());
    struct mf_text t = {0};
    mf_text_puts(&t, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; i < s->n_models; i++) {
        mf_text_puts(&t, i ? "," : "");
        v1_model_json(&t, r, s->models[i].name);
    }
    mf_text_puts(&t, "]}");
    memfit_free(s);
    return respond_json(r, 200, &t);
}

/* GET /v1/models/{name}: the model object, or 404 model_not_found. */
static enum MHD_Result route_v1_model(struct req *r)
{
    struct memfit_manager_status *s;
    if (memfit_manager_snapshot(r->srv->mgr, &s) != MEMFIT_OK)
        return fail(r, 503, "server_error", "out_of_memory", memfit_last_error());
    bool found = false;
    for (size_t i = 0; i < s->n_models && !found; i++)
        found = strcmp(s->models[i].name, r->name) == 0;
    memfit_free(s);
    if (!found) {
        char msg[300];
        snprintf(msg, sizeof(msg), "The model '%s' does not exist (GET /v1/models lists them)",
                 r->name);
        return fail(r, 404, "invalid_request_error", "model_not_found", msg);
    }
    struct mf_text t = {0};
    v1_model_json(&t, r, r->name);
    return respond_json(r, 200, &t);
}

static enum MHD_Result route_models(struct req *r)
{
    struct memfit_manager_status *s;
    if (memfit_manager_snapshot(r->srv->mgr, &s) != MEMFIT_OK)
        return fail(r, 503, "server_error", "out_of_memory", memfit_last_error());
    uint64_t now = memfit_now_ns();
    struct mf_text t = {0};
    mf_text_puts(&t, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; i < s->n_models; i++) {
        if (i)
            mf_text_puts(&t, ",");
        model_json(&t, &s->models[i], now);
    }
    mf_text_puts(&t, "],\"budget\":");
    budget_json(&t, &s->budget);
    mf_text_printf(&t,
                   ",\"queue_depth\":%u,\"max_queue\":%u,\"unloading_enabled\":%s,"
                   "\"pressure_level\":\"%s\",\"admission_paused\":%s}",
                   s->queue_depth, s->max_queue, s->unloading_enabled ? "true" : "false",
                   memfit_level_name(s->pressure_level), s->admission_paused ? "true" : "false");
    memfit_free(s);
    return respond_json(r, 200, &t);
}

/* Loads (waiting) or unloads the model r->name; false with the error queued (409 while in use). */
static bool control_model(struct req *r, bool load, enum MHD_Result *ret)
{
    memfit_server *srv = r->srv;
    enum memfit_status st = load ? memfit_manager_load(srv->mgr, r->name, -1)
                                 : memfit_manager_unload(srv->mgr, r->name);
    if (st == MEMFIT_E_BUSY && !load)
        *ret = fail(r, 409, "invalid_request_error", "model_busy", memfit_last_error());
    else if (st != MEMFIT_OK)
        *ret = fail_status(r, st);
    return st == MEMFIT_OK;
}

static enum MHD_Result route_model_control(struct req *r)
{
    memfit_server *srv = r->srv;
    enum MHD_Result ret;
    if (!control_model(r, r->route == MF_ROUTE_MODEL_LOAD, &ret))
        return ret;
    struct memfit_manager_status *s;
    if (memfit_manager_snapshot(srv->mgr, &s) != MEMFIT_OK)
        return fail(r, 503, "server_error", "out_of_memory", memfit_last_error());
    struct mf_text t = {0};
    for (size_t i = 0; i < s->n_models; i++)
        if (strcmp(s->models[i].name, r->name) == 0)
            model_json(&t, &s->models[i], memfit_now_ns());
    if (t.len == 0)
        mf_text_puts(&t, "{}");
    memfit_free(s);
    return respond_json(r, 200, &t);
}

static enum MHD_Result route_memory(struct req *r)
{
    memfit_server *srv = r->srv;
    struct memfit_report *rep = memfit_calloc_in(MEMFIT_ALLOC_SERVER, 1, sizeof(*rep));
    if (!rep)
        return fail(r, 503, "server_error", "out_of_memory", memfit_last_error());
    char *report = NULL;
    enum memfit_status st = mf_server_report(srv, rep);
    if (st == MEMFIT_OK)
        st = memfit_report_to_json(rep, &report);
    memfit_free(rep);
    if (st == MEMFIT_E_NOMEM)
        return fail(r, 503, "server_error", "out_of_memory", memfit_last_error());
    if (st != MEMFIT_OK)
        return fail(r, 500, "server_error", "report_failed", memfit_last_error());
    struct memfit_manager_status *s;
    if (memfit_manager_snapshot(srv->mgr, &s) != MEMFIT_OK) {
        memfit_free(report);
        return fail(r, 503, "server_error", "out_of_memory", memfit_last_error());
    }
    /* The report's object, with "budget" and "models" added before its end. */
    size_t n = strlen(report);
    while (n > 0 && report[n - 1] != '}')
        n--;
    struct mf_text t = {0};
    mf_text_append(&t, report, n > 0 ? n - 1 : 0);
    memfit_free(report);
    mf_text_puts(&t, ",\"budget\":");
    budget_json(&t, &s->budget);
    mf_text_puts(&t, ",\"models\":[");
    for (size_t i = 0; i < s->n_models; i++) {
        mf_text_puts(&t, i ? ",{" : "{");
        json_key_string(&t, "name", s->models[i].name);
        mf_text_puts(&t, ",");
        json_key_string(&t, "state", memfit_model_state_name(s->models[i].state));
        mf_text_printf(&t, ",\"bytes\":%" PRIu64 "}", s->models[i].total_bytes);
    }
    mf_text_puts(&t, "]}");
    memfit_free(s);
    return respond_json(r, 200, &t);
}

/* Resident page-cache bytes of a file (mincore over a mapping), or 0. */
static uint64_t cached_bytes(int fd, size_t size)
{
    if (size == 0)
        return 0;
    void *map = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED)
        return 0;
    long page = sysconf(_SC_PAGESIZE);
    size_t pages = (size + (size_t)page - 1) / (size_t)page;
    unsigned char *vec = memfit_malloc_in(MEMFIT_ALLOC_SERVER, pages);
    uint64_t resident = 0;
    if (vec && mincore(map, size, vec) == 0)
        for (size_t i = 0; i < pages; i++)
            resident += vec[i] & 1;
    memfit_free(vec);
    munmap(map, size);
    return resident * (uint64_t)page;
}

static uint64_t rss_now(void)
{
    struct memfit_proc_mem p;
    if (memfit_proc_read_ex(NULL, 0, MEMFIT_PROC_STATUS_ONLY, &p) != MEMFIT_OK)
        return 0;
    return p.rss_bytes == MEMFIT_SYS_UNKNOWN ? 0 : p.rss_bytes;
}

static enum MHD_Result route_cleanup(struct req *r)
{
    memfit_server *srv = r->srv;
    memfit_manager *mgr = srv->mgr;
    struct memfit_manager_status *before, *after;
    if (memfit_manager_snapshot(mgr, &before) != MEMFIT_OK)
        return fail(r, 503, "server_error", "out_of_memory", memfit_last_error());
    uint64_t freed = memfit_manager_unload_idle(mgr);
    uint64_t rss_before = rss_now();
    memfit_heap_trim();
    uint64_t rss_after = rss_now();
    if (memfit_manager_snapshot(mgr, &after) != MEMFIT_OK) {
        memfit_free(before);
        return fail(r, 503, "server_error", "out_of_memory", memfit_last_error());
    }
    struct mf_text t = {0};
    mf_text_puts(&t, "{\"unloaded_models\":[");
    bool first = true;
    for (size_t i = 0; i < after->n_models; i++) {
        const struct memfit_model_status *a = &after->models[i];
        for (size_t j = 0; j < before->n_models; j++) {
            const struct memfit_model_status *b = &before->models[j];
            if (strcmp(a->name, b->name) != 0 || a->n_unloads == b->n_unloads)
                continue;
            mf_text_puts(&t, first ? "" : ",");
            mf_text_json_string(&t, a->name, strlen(a->name));
            first = false;
        }
    }
    /* Page cache of the weight files of models not loaded now. */
    mf_text_puts(&t, "],\"files\":[");
    uint64_t dropped_total = 0;
    first = true;
    pthread_mutex_lock(&srv->lock);
    for (struct srv_model *m = srv->models; m; m = m->next) {
        bool loaded = true;
        for (size_t i = 0; i < after->n_models; i++)
            if (strcmp(after->models[i].name, m->name) == 0)
                loaded = after->models[i].state != MEMFIT_MODEL_UNLOADED &&
                         after->models[i].state != MEMFIT_MODEL_FAILED;
        for (size_t f = 0; !loaded && f < m->n_files; f++) {
            int fd = open(m->files[f], O_RDONLY | O_CLOEXEC);
            struct stat st;
            if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
                if (fd >= 0)
                    close(fd);
                continue;
            }
            uint64_t cached = cached_bytes(fd, (size_t)st.st_size);
            posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
            uint64_t left = cached_bytes(fd, (size_t)st.st_size);
            close(fd);
            uint64_t dropped = cached > left ? cached - left : 0;
            dropped_total += dropped;
            mf_text_puts(&t, first ? "{" : ",{");
            json_key_string(&t, "path", m->files[f]);
            mf_text_printf(&t, ",\"dropped_bytes\":%" PRIu64 "}", dropped);
            first = false;
        }
    }
    pthread_mutex_unlock(&srv->lock);
    mf_text_printf(&t,
                   "],\"budget_freed_bytes\":%" PRIu64 ",\"page_cache_dropped_bytes\":%" PRIu64
                   ",\"rss_before_trim_bytes\":%" PRIu64 ",\"rss_after_trim_bytes\":%" PRIu64
                   ",\"heap_trimmed_bytes\":%" PRIu64 "}",
                   freed, dropped_total, rss_before, rss_after,
                   rss_before > rss_after ? rss_before - rss_after : 0);
    memfit_free(before);
    memfit_free(after);
    return respond_json(r, 200, &t);
}

static enum MHD_Result route_dashboard(struct req *r)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        mf_dashboard_html_len, (void *)mf_dashboard_html, MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/html; charset=utf-8");
    MHD_add_response_header(resp, "Content-Security-Policy",
                            "default-src 'self'; script-src 'unsafe-inline'; "
                            "style-src 'unsafe-inline'");
    return queue(r, 200, resp);
}

/* ---- Model requests: lookup, family, admission -------------------------------------------- */

/* What a family does, for the answer to a route it does not serve. */
static const char *family_use(const struct memfit_engine_family_info *f)
{
    if (f->ops & MEMFIT_ENGINE_OP_SEGMENT)
        return "it segments images (use /api/segment)";
    if (f->ops & MEMFIT_ENGINE_OP_GENERATE)
        return "it generates text (/v1/completions, /v1/chat/completions)";
    if (f->ops & MEMFIT_ENGINE_OP_EMBED_IMAGE)
        return "it makes embeddings (/v1/embeddings)";
    return "it serves no route";
}

/* The request's model's family; false with a 404 queued (*ret) when unknown. */
static bool known_model(struct req *r, const char *name,
                        const struct memfit_engine_family_info **family, enum MHD_Result *ret)
{
    memfit_server *srv = r->srv;
    pthread_mutex_lock(&srv->lock);
    struct srv_model *m = mf_server_find_model(srv, name);
    *family = m ? memfit_engine_model_family(m->model) : NULL;
    pthread_mutex_unlock(&srv->lock);
    if (*family)
        return true;
    char msg[300];
    snprintf(msg, sizeof(msg), "The model '%s' does not exist (%s lists them)", name,
             mf_route_is_v2(r->route) ? "POST /v2/repository/index" : "GET /v1/models");
    *ret = fail(r, 404, "invalid_request_error", "model_not_found", msg);
    return false;
}

/*
 * The start of every model request: the model known (else 404), of a
 * family that does `op` (else 400 model_not_supported saying what it does
 * instead), admitted (at most max_queue model requests past this point at
 * once; else 429). false with the answer queued (*ret); on true the caller
 * holds an admission slot and gives it back.
 */
static bool begin_model_request(struct req *r, const char *name, unsigned op, const char *what,
                                enum MHD_Result *ret)
{
    memfit_server *srv = r->srv;
    const struct memfit_engine_family_info *family;
    char msg[400];
    if (!known_model(r, name, &family, ret))
        return false;
    if (!(family->ops & op)) {
        snprintf(msg, sizeof(msg), "model '%s' (%s) %s; %s", name, family->name, what,
                 family_use(family));
        *ret = fail(r, 400, "invalid_request_error", "model_not_supported", msg);
        return false;
    }
    if (atomic_fetch_add(&srv->admitted, 1) < srv->opt.max_queue)
        return true;
    atomic_fetch_sub(&srv->admitted, 1);
    atomic_fetch_add_explicit(&srv->metrics.queue_rejected, 1, memory_order_relaxed);
    snprintf(msg, sizeof(msg), "too many requests at once (max_queue %u); retry later",
             srv->opt.max_queue);
    *ret = fail(r, 429, "rate_limit_error", "queue_full", msg);
    return false;
}

/* ---- Embeddings --------------------------------------------------------------------------- */

struct embed_work {
    struct mf_embed_request req;
    struct memfit_image *images;
    size_t n_images;
    const struct memfit_image **inputs;
    float *out;
    memfit_handle *handle;
    bool admitted, running;
    size_t dim;      /* of each embedding in `out` */
    uint64_t tokens; /* the tokens the model saw */
};

static void embed_work_free(memfit_server *srv, struct embed_work *w)
{
    if (w->handle)
        memfit_manager_release(w->handle);
    if (w->running)
        atomic_fetch_sub(&srv->running, 1);
    if (w->admitted)
        atomic_fetch_sub(&srv->admitted, 1);
    for (size_t i = 0; i < w->n_images; i++)
        memfit_image_free(&w->images[i]);
    memfit_free(w->images);
    memfit_free(w->inputs);
    memfit_free(w->out);
    mf_embed_request_free(&w->req);
}

static void log_cancelled(const struct req *r, const struct embed_work *w, const char *stage)
{
    memfit_log(MEMFIT_LOG_INFO, "%s: model %s: cancelled while %s %zu input(s): %s",
               mf_route_label(r->route), w->req.model, stage, w->req.n_inputs,
               atomic_load(&r->srv->cancel_all) ? "the server is stopping"
                                                : "the client went away");
}

/* Decodes the data-URL images of the request. */
/*
 * Decodes one uploaded image with the server's limits, at most `max_pixels`
 * (what --max-pixels leaves the request) and at most the pixels the
 * budget's free room holds now (checked on its header, before the pixels
 * are allocated), and reserves its pixels. False: *e is the answer (503 out
 * of memory or no room, 400 `too_many` when max_pixels refused it, 400
 * invalid_image).
 */
static bool decode_upload(struct req *r, const uint8_t *bytes, size_t n, const char *name,
                          uint64_t max_pixels, const char *too_many, struct memfit_image *out,
                          struct mf_http_error *e)
{
    struct memfit_image_limits limits = memfit_image_limits_default();
    limits.max_decode_ms = r->srv->opt.max_decode_ms;
    bool request_bound = max_pixels < limits.max_pixels;
    if (request_bound)
        limits.max_pixels = max_pixels;
    uint64_t room = room_pixels(r);
    bool room_bound = room < limits.max_pixels;
    if (room_bound)
        limits.max_pixels = room;
    enum memfit_status st = limits.max_pixels ? memfit_image_decode(bytes, n, name, &limits, out)
                                              : memfit_fail(MEMFIT_E_RANGE, "no pixels allowed");
    if (st == MEMFIT_OK) {
        if (reserve_input(r, (uint64_t)out->width * out->height * 3, name, e))
            return true;
        memfit_image_free(out);
    } else if (st == MEMFIT_E_NOMEM) {
        mf_http_error_set(e, 503, "server_error", "out_of_memory", "%s", memfit_last_error());
    } else if (st == MEMFIT_E_RANGE && room_bound) {
        mf_http_error_set(e, 503, "server_error", "insufficient_memory",
                          "%s: decoding this image needs more than the %llu pixels (3 bytes "
                          "each) the memory budget has free room for now",
                          name, (unsigned long long)room);
    } else if (st == MEMFIT_E_RANGE && request_bound) {
        mf_http_error_set(e, 400, "invalid_request_error", "too_many_pixels", "%s", too_many);
    } else {
        mf_http_error_set(e, 400, "invalid_request_error", "invalid_image", "%s",
                          memfit_last_error());
    }
    return false;
}

static enum MHD_Result decode_images(struct req *r, struct embed_work *w, bool *ok)
{
    *ok = false;
    w->images = memfit_calloc_in(MEMFIT_ALLOC_SERVER, w->req.n_inputs, sizeof(*w->images));
    if (!w->images)
        return fail(r, 503, "server_error", "out_of_memory", memfit_last_error());
    uint64_t pixels_left = r->srv->opt.max_request_pixels;
    for (size_t i = 0; i < w->req.n_inputs; i++) {
        const char *payload;
        size_t payload_len;
        char msg[600];
        if (req_cancelled(r)) { /* a large request decodes for a while: stop if nobody waits */
            log_cancelled(r, w, "decoding");
            return MHD_NO;
        }
        if (w->req.bare_base64 && strncmp(w->req.inputs[i], "data:", 5) != 0) {
            payload = w->req.inputs[i]; /* /v2: bare base64 */
            payload_len = w->req.input_lens[i];
        } else if (mf_data_url_split(w->req.inputs[i], w->req.input_lens[i], &payload,
                                     &payload_len) != MEMFIT_OK) {
            snprintf(msg, sizeof(msg), "input[%zu]: %s", i, memfit_last_error());
            return fail(r, 400, "invalid_request_error", "invalid_image_url", msg);
        }
        uint8_t *bytes;
        size_t n_bytes;
        enum memfit_status st = mf_base64_decode(payload, payload_len, &bytes, &n_bytes);
        if (st == MEMFIT_E_NOMEM)
            return fail(r, 503, "server_error", "out_of_memory", memfit_last_error());
        if (st != MEMFIT_OK) {
            snprintf(msg, sizeof(msg), "input[%zu]: %s", i, memfit_last_error());
            return fail(r, 400, "invalid_request_error", "invalid_base64", msg);
        }
        char name[32], too_many[300];
        snprintf(name, sizeof(name), "input[%zu]", i);
        snprintf(too_many, sizeof(too_many),
                 "input[%zu]: the images of one request may hold %llu pixels in all "
                 "(--max-pixels); this one does not fit in the %llu left",
                 i, (unsigned long long)r->srv->opt.max_request_pixels,
                 (unsigned long long)pixels_left);
        struct mf_http_error e;
        bool decoded =
            decode_upload(r, bytes, n_bytes, name, pixels_left, too_many, &w->images[i], &e);
        memfit_free(bytes);
        if (!decoded)
            return answer_error(r, &e);
        w->n_images++;
        w->inputs[i] = &w->images[i];
        pixels_left -= (uint64_t)w->images[i].width * w->images[i].height;
    }
    *ok = true;
    return MHD_YES;
}

static bool acquire_cancelled(void *user)
{
    return req_cancelled(user);
}

/* Acquires the model, waiting up to the admission timeout; a client that
 * leaves stops the wait (the manager asks between waits). Counted in the
 * queue gauges: waiting meanwhile, running once acquired (the caller
 * counts it down). */
static enum memfit_status acquire(struct req *r, const char *name, memfit_handle **out)
{
    memfit_server *srv = r->srv;
    struct memfit_acquire_options o = {.timeout_ms = srv->opt.admission_timeout_ms,
                                       .cancelled = acquire_cancelled,
                                       .cancel_user = r};
    uint64_t start = memfit_now_ns();
    atomic_fetch_add(&srv->waiting, 1);
    enum memfit_status st = memfit_manager_acquire_ex(srv->mgr, name, &o, out);
    atomic_fetch_sub(&srv->waiting, 1);
    if (st == MEMFIT_OK)
        atomic_fetch_add(&srv->running, 1);
    if (st == MEMFIT_E_TIMEOUT || st == MEMFIT_E_BUDGET)
        return memfit_fail(st, "%s (waited %llu ms for admission)", memfit_last_error(),
                           (unsigned long long)((memfit_now_ns() - start) / 1000000u));
    if (st == MEMFIT_E_CANCELLED)
        return memfit_fail(st, "the client went away");
    return st;
}

/* Appends n floats, comma-separated (9 significant digits: a float32 exactly; not finite: 0). */
static void floats_json(struct mf_text *t, const float *v, size_t n)
{
    for (size_t k = 0; k < n; k++)
        mf_text_printf(t, k ? ",%.9g" : "%.9g", isfinite(v[k]) ? (double)v[k] : 0.0);
}

static void embeddings_json(struct mf_text *t, const struct embed_work *w, size_t dim,
                            uint64_t tokens)
{
    mf_text_puts(t, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; i < w->req.n_inputs; i++) {
        const float *v = w->out + i * dim;
        mf_text_printf(t, "%s{\"object\":\"embedding\",\"index\":%zu,\"embedding\":", i ? "," : "",
                       i);
        if (w->req.base64_output) {
            mf_text_puts(t, "\"");
            mf_text_base64(t, v, dim * sizeof(float)); /* little-endian float32, as OpenAI */
            mf_text_puts(t, "\"}");
            continue;
        }
        mf_text_puts(t, "[");
        floats_json(t, v, dim);
        mf_text_puts(t, "]}");
    }
    mf_text_puts(t, "],\"model\":");
    mf_text_json_string(t, w->req.model, strlen(w->req.model));
    mf_text_printf(t, ",\"usage\":{\"prompt_tokens\":%" PRIu64 ",\"total_tokens\":%" PRIu64 "}}",
                   tokens, tokens);
}

/*
 * Embeds the images of w->req (parsed): the model admitted, the images
 * decoded within the request's limits and reserved, the model acquired, the
 * forwards run into w->out (w->dim floats each). *ok false: the answer is
 * queued (or the request was cancelled).
 */
static enum MHD_Result embed_inputs(struct req *r, struct embed_work *w, bool *ok)
{
    *ok = false;
    enum MHD_Result ret;
    if (!begin_model_request(r, w->req.model, MEMFIT_ENGINE_OP_EMBED_IMAGE,
                             "does not make embeddings", &ret))
        return ret;
    w->admitted = true;

    w->inputs = memfit_calloc_in(MEMFIT_ALLOC_SERVER, w->req.n_inputs, sizeof(*w->inputs));
    if (!w->inputs)
        return fail(r, 503, "server_error", "out_of_memory", memfit_last_error());
    bool decoded;
    ret = decode_images(r, w, &decoded);
    if (!decoded)
        return ret;

    enum memfit_status st = acquire(r, w->req.model, &w->handle);
    if (st == MEMFIT_E_CANCELLED) {
        log_cancelled(r, w, "waiting for the model with");
        return MHD_NO;
    }
    if (st != MEMFIT_OK)
        return fail_status(r, st);
    w->running = true;

    /* The server's transform is `memfit embed`'s default (resize 256, crop
     * 224): every image gives the same size, so they share forwards. */
    struct memfit_embed_params params;
    memfit_embed_params_default(&params);
    params.cancelled = req_cancelled;
    params.cancel_user = r;
    size_t per_image = 0;
    uint32_t dim32 = 0;
    st = memfit_engine_embed_size(w->handle, &params, w->images[0].width, w->images[0].height,
                                  &per_image, &dim32);
    if (st != MEMFIT_OK)
        return fail_status(r, st);
    size_t dim = dim32;
    if (w->req.dimensions && w->req.dimensions != dim) {
        char msg[200];
        snprintf(msg, sizeof(msg), "model '%s' makes %zu-dimensional embeddings, not %llu",
                 w->req.model, dim, (unsigned long long)w->req.dimensions);
        return fail(r, 400, "invalid_request_error", "invalid_value", msg);
    }
    size_t n_floats;
    if (dim == 0 || mf_mul_overflow(dim, w->req.n_inputs, &n_floats) ||
        mf_mul_overflow(n_floats, sizeof(float), &n_floats))
        return fail(r, 500, "server_error", "engine_error", "bad embedding size");
    w->out = memfit_calloc_in(MEMFIT_ALLOC_SERVER, n_floats / sizeof(float), sizeof(float));
    if (!w->out)
        return fail(r, 503, "server_error", "out_of_memory", memfit_last_error());
    st = memfit_engine_embed(w->handle, w->inputs, w->req.n_inputs, &params, w->out,
                             n_floats / sizeof(float), &w->tokens);
    memfit_manager_release(w->handle);
    w->handle = NULL;
    if (st == MEMFIT_E_CANCELLED || (st != MEMFIT_OK && req_cancelled(r))) {
        log_cancelled(r, w, "embedding");
        return MHD_NO;
    }
    if (st != MEMFIT_OK)
        return fail_status(r, st);
    w->dim = dim;
    *ok = true;
    return MHD_YES;
}

static enum MHD_Result run_embeddings(struct req *r, struct embed_work *w)
{
    memfit_server *srv = r->srv;
    struct mf_http_error err;
    enum memfit_status st = mf_embed_request_parse(r->body ? r->body : "", r->body_len,
                                                   srv->opt.max_inputs, &w->req, &err);
    body_parsed(r);
    if (st == MEMFIT_E_NOMEM)
        return fail(r, 503, "server_error", "out_of_memory", memfit_last_error());
    if (st != MEMFIT_OK)
        return respond_error(r, &err);
    bool ok;
    enum MHD_Result ret = embed_inputs(r, w, &ok);
    if (!ok)
        return ret;
    struct mf_text t = {0};
    embeddings_json(&t, w, w->dim, w->tokens);
    return respond_json(r, 200, &t);
}

static enum MHD_Result route_embeddings(struct req *r)
{
    struct embed_work w;
    memset(&w, 0, sizeof(w));
    enum MHD_Result ret = run_embeddings(r, &w);
    embed_work_free(r->srv, &w);
    return ret;
}

/* ---- Segmentation ------------------------------------------------------------------------- */

struct segment_work {
    struct mf_segment_request req;
    struct memfit_image image;
    memfit_handle *handle;
    struct memfit_segment_result result;
    bool admitted, running;
};

static void segment_work_free(memfit_server *srv, struct segment_work *w)
{
    if (w->handle)
        memfit_manager_release(w->handle);
    if (w->running)
        atomic_fetch_sub(&srv->running, 1);
    if (w->admitted)
        atomic_fetch_sub(&srv->admitted, 1);
    memfit_segment_result_free(&w->result);
    memfit_image_free(&w->image);
    mf_segment_request_free(&w->req);
}

static void log_segment_cancelled(const struct req *r, const struct segment_work *w,
                                  const char *stage)
{
    memfit_log(MEMFIT_LOG_INFO, "%s: model %s: cancelled while %s: %s", mf_route_label(r->route),
               w->req.model, stage,
               atomic_load(&r->srv->cancel_all) ? "the server is stopping"
                                                : "the client went away");
}

/* Decodes the request's image within --max-pixels; the encoded bytes are freed. */
static enum MHD_Result decode_segment_image(struct req *r, struct segment_work *w, bool *ok)
{
    char too_many[300];
    snprintf(too_many, sizeof(too_many),
             "image: a request may hold %llu pixels (--max-pixels); this image has more",
             (unsigned long long)r->srv->opt.max_request_pixels);
    struct mf_http_error e;
    *ok = decode_upload(r, w->req.image, w->req.image_bytes, "image",
                        r->srv->opt.max_request_pixels, too_many, &w->image, &e);
    memfit_free(w->req.image);
    w->req.image = NULL;
    return *ok ? MHD_YES : answer_error(r, &e);
}

/* The segmentation parameters of the request on the acquired model; false
 * with an answer queued when the request does not fit the model. */
static bool segment_params(struct req *r, struct segment_work *w, struct memfit_segment_params *p,
                           enum MHD_Result *ret)
{
    const struct mf_segment_request *q = &w->req;
    memfit_segment_params_default(p);
    p->timeout_ms = r->srv->admission_timeout_ms;
    p->cancelled = req_cancelled;
    p->cancel_user = r;
    if (q->automatic) {
        p->automatic = true;
        p->amg = q->amg;
        p->batch_auto = q->batch_auto;
        struct memfit_engine_plan plan;
        /* No batch asked: the model's planned one (its points_per_batch option). */
        if (!q->has_points_per_batch &&
            memfit_engine_model_plan(memfit_engine_handle_model(w->handle), &plan) == MEMFIT_OK) {
            if (plan.max_batch)
                p->amg.points_per_batch = plan.max_batch;
            else
                p->batch_auto = true;
        }
        memfit_clear_error();
        return true;
    }
    p->points = q->points;
    p->labels = q->labels;
    p->n_points = q->n_points;
    p->has_box = q->has_box;
    memcpy(p->box, q->box, sizeof(p->box));
    p->multimask = q->multimask;
    p->want_low_res = q->return_low_res;
    if (q->mask_input) {
        struct memfit_sam_info info;
        memfit_sam_get_info(memfit_engine_sam(w->handle), &info);
        size_t want = (size_t)info.mask_size * info.mask_size;
        if (q->n_mask_input != want) {
            char msg[300];
            snprintf(msg, sizeof(msg),
                     "'mask_input' has %zu float32 values; model '%s' takes %ux%u = %zu (its "
                     "mask_size, as an earlier answer's low_res_masks gives each mask)",
                     q->n_mask_input, q->model, info.mask_size, info.mask_size, want);
            *ret = fail(r, 400, "invalid_request_error", "invalid_value", msg);
            return false;
        }
        p->mask_input = q->mask_input;
    }
    return true;
}

static enum MHD_Result run_segment(struct req *r, struct segment_work *w)
{
    struct mf_http_error err;
    enum memfit_status st =
        mf_segment_request_parse(r->body ? r->body : "", r->body_len, &w->req, &err);
    body_parsed(r);
    if (st == MEMFIT_E_NOMEM)
        return fail(r, 503, "server_error", "out_of_memory", memfit_last_error());
    if (st != MEMFIT_OK)
        return respond_error(r, &err);

    enum MHD_Result ret;
    if (!begin_model_request(r, w->req.model, MEMFIT_ENGINE_OP_SEGMENT, "does not segment images",
                             &ret))
        return ret;
    w->admitted = true;

    bool ok;
    ret = decode_segment_image(r, w, &ok);
    if (!ok)
        return ret;

    st = acquire(r, w->req.model, &w->handle);
    if (st == MEMFIT_E_CANCELLED) {
        log_segment_cancelled(r, w, "waiting for the model");
        return MHD_NO;
    }
    if (st != MEMFIT_OK)
        return fail_status(r, st);
    w->running = true;

    struct memfit_segment_params params;
    if (!segment_params(r, w, &params, &ret))
        return ret;
    st = memfit_engine_segment(w->handle, &w->image, &params, &w->result);
    memfit_manager_release(w->handle);
    w->handle = NULL;
    if (st == MEMFIT_E_CANCELLED || (st != MEMFIT_OK && req_cancelled(r))) {
        log_segment_cancelled(r, w, "segmenting");
        return MHD_NO;
    }
    if (st != MEMFIT_OK)
        return fail_status(r, st);
    struct mf_text t = {0};
    if ((st = mf_segment_response_json(&t, &w->req, &w->result)) != MEMFIT_OK) {
        mf_text_free(&t);
        return fail_status(r, st);
    }
    return respond_json(r, 200, &t);
}

static enum MHD_Result route_segment(struct req *r)
{
    struct segment_work w;
    memset(&w, 0, sizeof(w));
    enum MHD_Result ret = run_segment(r, &w);
    segment_work_free(r->srv, &w);
    return ret;
}

/*
 * A streamed response's reader hands out what it has built up first: copies
 * up to `max` bytes of `t` from *off and returns how many; 0 when all was
 * handed out (the buffer is then emptied for the next piece).
 */
static size_t drain_pending(struct mf_text *t, size_t *off, char *buf, size_t max)
{
    size_t n = t->len - *off;
    if (n == 0) {
        t->len = 0;
        *off = 0;
        return 0;
    }
    if (n > max)
        n = max;
    memcpy(buf, t->data + *off, n);
    *off += n;
    return n;
}

/* ---- Completions and chat ------------------------------------------------------------------ */

/*
 * The logprobs of the tokens of one chunk (streaming) or one choice, kept
 * as the items of the arrays of the route's shape: chat's
 * {"content": [{"token", "logprob", "bytes", "top_logprobs"}], "refusal"},
 * completions' {"tokens", "token_logprobs", "top_logprobs", "text_offset"}.
 */
struct gen_logprobs {
    struct mf_text content;                      /* chat */
    struct mf_text tokens, values, top, offsets; /* completions */
    size_t n;
};

/* A generation in flight: owned by the route, or, when streaming, by the
 * response (freed by gen_stream_free when libmicrohttpd is done with it).
 * The request's n choices are generated one after the other, each with a
 * generation of its own (seed + its index). */
struct gen_work {
    memfit_server *srv;
    struct mf_gen_request req;
    struct memfit_chat_message *messages;
    struct memfit_generation_request g; /* started once per choice */
    uint64_t seed;
    memfit_handle *handle;
    const memfit_tokenizer *tok;
    memfit_engine_generation *gen;
    struct mf_gen_stats *stats; /* NULL when it could not be allocated */
    uint32_t prompt_tokens;
    uint32_t choice, n_choices;
    uint32_t completion_tokens; /* of the choices ended */
    uint64_t start_ns;          /* the request's arrival */
    uint64_t last_token_ns;     /* this choice's last token; 0 before its first */
    bool first_token;           /* the request's first token was seen (time to first token) */
    size_t text_bytes;          /* this choice's text so far (completions' text_offset) */
    char id[40];
    uint64_t created;
    int fd;
    bool admitted, queued, running, role_sent, finished;
    bool echo_pending; /* echo: the prompt (and its logprobs) is yet to be put first */
    struct memfit_generate_result result; /* the last choice ended */
    struct gen_logprobs lp;
    struct mf_text pending;
    size_t pending_off;
    /* tools: the template's conventions, the grammar of a forced call, and
     * (streaming) the text held back while it may still be a call */
    enum memfit_chat_template tmpl;
    memfit_grammar *tool_grammar;
    struct mf_text held;
    bool streaming_content; /* this choice is not a call: its text streams */
};

static void gen_logprobs_clear(struct gen_logprobs *lp)
{
    lp->content.len = lp->tokens.len = lp->values.len = lp->top.len = lp->offsets.len = 0;
    lp->n = 0;
}

static void gen_logprobs_free(struct gen_logprobs *lp)
{
    mf_text_free(&lp->content);
    mf_text_free(&lp->tokens);
    mf_text_free(&lp->values);
    mf_text_free(&lp->top);
    mf_text_free(&lp->offsets);
}

/* Ends the current choice's generation: its session goes back to the model. */
static void gen_end_choice(struct gen_work *w)
{
    if (!w->gen)
        return;
    memfit_engine_generate_end(w->gen, &w->result);
    w->gen = NULL;
    w->completion_tokens += w->result.n_generated;
    if (w->stats)
        atomic_fetch_sub(&w->stats->active, 1);
}

/* Gives the model back, with the request's keep_alive (0: unloaded here, once idle). */
static void gen_release(struct gen_work *w)
{
    gen_end_choice(w);
    if (w->handle) {
        if (w->req.has_keep_alive)
            (void)memfit_manager_release_keep_alive(w->handle, w->req.keep_alive_s);
        else
            memfit_manager_release(w->handle);
        w->handle = NULL;
    }
    if (w->running)
        atomic_fetch_sub(&w->srv->running, 1);
    w->running = false;
}

static void gen_work_free(struct gen_work *w)
{
    memfit_server *srv = w->srv;
    gen_release(w);
    if (w->queued && w->stats)
        atomic_fetch_sub(&w->stats->queued, 1);
    if (w->admitted)
        atomic_fetch_sub(&srv->admitted, 1);
    memfit_free(w->messages);
    memfit_grammar_free(w->tool_grammar);
    mf_text_free(&w->held);
    mf_gen_request_free(&w->req);
    mf_text_free(&w->pending);
    gen_logprobs_free(&w->lp);
    memfit_free(w);
}

static const char *finish_name(enum memfit_finish f)
{
    return f == MEMFIT_FINISH_LENGTH ? "length" : "stop";
}

/* ---- Tool calls ------------------------------------------------------------------------------ */

/* The calls in a choice's text that name the request's tools (at most one
 * without parallel_tool_calls); none when any call names another function,
 * the text then being content. E_NOMEM. */
static enum memfit_status gen_tool_calls(const struct gen_work *w, const char *text, size_t len,
                                         struct memfit_chat_tool_calls *out)
{
    enum memfit_status st = memfit_chat_parse_tool_calls(w->tmpl, text, len, out);
    if (st != MEMFIT_OK)
        return st;
    for (size_t i = 0; i < out->n_calls; i++) {
        bool known = false;
        for (size_t k = 0; k < w->req.n_tools && !known; k++)
            known = strcmp(out->calls[i].name, w->req.tools[k].name) == 0;
        if (known)
            continue;
        memfit_chat_tool_calls_free(out);
        out->content = memfit_malloc_in(MEMFIT_ALLOC_SERVER, len + 1);
        if (!out->content)
            return MEMFIT_E_NOMEM;
        memcpy(out->content, text, len);
        out->content[len] = '\0';
        return MEMFIT_OK;
    }
    if (!w->req.parallel_tool_calls && out->n_calls > 1) {
        for (size_t i = 1; i < out->n_calls; i++) {
            memfit_free((char *)out->calls[i].name);
            memfit_free((char *)out->calls[i].arguments);
        }
        out->n_calls = 1;
    }
    return MEMFIT_OK;
}

/* "tool_calls":[...] (streaming: each with its index). */
static void tool_calls_json(struct mf_text *t, const struct memfit_chat_tool_calls *c, bool stream)
{
    static _Atomic uint64_t counter;
    mf_text_puts(t, "\"tool_calls\":[");
    for (size_t i = 0; i < c->n_calls; i++) {
        uint64_t id =
            memfit_now_ns() ^ (atomic_fetch_add(&counter, 1) * UINT64_C(0x9E3779B97F4A7C15));
        mf_text_printf(t, "%s{", i ? "," : "");
        if (stream)
            mf_text_printf(t, "\"index\":%zu,", i);
        mf_text_printf(
            t, "\"id\":\"call_%016" PRIx64 "\",\"type\":\"function\",\"function\":{\"name\":", id);
        mf_text_json_string(t, c->calls[i].name, strlen(c->calls[i].name));
        mf_text_puts(t, ",\"arguments\":");
        mf_text_json_string(t, c->calls[i].arguments, strlen(c->calls[i].arguments));
        mf_text_puts(t, "}}");
    }
    mf_text_puts(t, "]");
}

/* The grammar of one call of the tools tool_choice allows, in the template's words. */
static enum memfit_status gen_tool_grammar(struct gen_work *w)
{
    const struct mf_gen_request *q = &w->req;
    size_t first = q->tool_choice == MF_TOOL_CHOICE_NAMED ? q->tool_choice_index : 0;
    size_t n = q->tool_choice == MF_TOOL_CHOICE_NAMED ? 1 : q->n_tools;
    struct memfit_grammar_alternative alts[MF_GEN_MAX_TOOLS];
    char *prefixes[MF_GEN_MAX_TOOLS] = {0};
    enum memfit_status st = MEMFIT_OK;
    bool qwen = w->tmpl == MEMFIT_CHAT_QWEN25;
    for (size_t i = 0; i < n && st == MEMFIT_OK; i++) {
        const struct mf_gen_tool *t = &q->tools[first + i];
        struct mf_text p = {0};
        mf_text_printf(&p, "%s{\"name\": \"%s\", \"%s\": ", qwen ? "<tool_call>\n" : "", t->name,
                       qwen ? "arguments" : "parameters");
        if (!(prefixes[i] = mf_text_take(&p, NULL)))
            st = MEMFIT_E_NOMEM;
        alts[i] = (struct memfit_grammar_alternative){
            prefixes[i], t->parameters ? t->parameters : "{\"type\":\"object\"}",
            qwen ? "}\n</tool_call>" : "}"};
    }
    if (st == MEMFIT_OK)
        st = memfit_grammar_from_alternatives(alts, n, &w->tool_grammar);
    for (size_t i = 0; i < n; i++)
        memfit_free(prefixes[i]);
    return st;
}

static void gen_usage(struct mf_text *t, const struct gen_work *w)
{
    uint32_t done = w->completion_tokens; /* of the choices ended: all, once answered */
    mf_text_printf(t,
                   "\"usage\":{\"prompt_tokens\":%" PRIu32 ",\"completion_tokens\":%" PRIu32
                   ",\"total_tokens\":%" PRIu32 "}",
                   w->prompt_tokens, done, w->prompt_tokens + done);
}

static void gen_head(struct mf_text *t, const struct gen_work *w, const char *object)
{
    mf_text_printf(t, "{\"id\":\"%s\",\"object\":\"%s\",\"created\":%" PRIu64 ",\"model\":", w->id,
                   object, w->created);
    mf_text_json_string(t, w->req.model, strlen(w->req.model));
}

/* The length of the valid UTF-8 character at s[0..n), or 0. */
static size_t utf8_char(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t need = c < 0x80                 ? 1
                  : c >= 0xC2 && c <= 0xDF ? 2
                  : c >= 0xE0 && c <= 0xEF ? 3
                  : c >= 0xF0 && c <= 0xF4 ? 4
                                           : 0;
    if (need == 0 || need > n)
        return 0;
    unsigned char lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
    unsigned char hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
    if (need > 1 && (s[1] < lo || s[1] > hi))
        return 0;
    for (size_t k = 2; k < need; k++)
        if ((s[k] & 0xC0) != 0x80)
            return 0;
    return need;
}

/* A token's text as a JSON string: a byte that is no whole UTF-8 character (a
 * token may hold part of one) becomes U+FFFD; "bytes" has the exact bytes. */
static void json_token_text(struct mf_text *t, const char *s, size_t n)
{
    struct mf_text clean = {0};
    const unsigned char *u = (const unsigned char *)s;
    mf_text_puts(&clean, "");
    for (size_t i = 0; i < n;) {
        size_t k = utf8_char(u + i, n - i);
        mf_text_append(&clean, k ? s + i : "\xEF\xBF\xBD", k ? k : 3);
        i += k ? k : 1;
    }
    mf_text_json_string(t, clean.data ? clean.data : "", clean.len);
    t->failed |= clean.failed;
    mf_text_free(&clean);
}

static void json_bytes(struct mf_text *t, const char *s, size_t n)
{
    mf_text_puts(t, "[");
    for (size_t i = 0; i < n; i++)
        mf_text_printf(t, "%s%u", i ? "," : "", (unsigned char)s[i]);
    mf_text_puts(t, "]");
}

/* A log-probability as JSON: -9999 for a banned token (-inf), as OpenAI writes it. */
static void json_logprob(struct mf_text *t, float x)
{
    mf_text_printf(t, "%.7g", isfinite(x) ? (double)x : -9999.0);
}

/* The text of token `id`: its bytes (none for a control token). */
static void token_piece(const struct gen_work *w, int32_t id, const char **s, size_t *n)
{
    if (memfit_tokenizer_piece(w->tok, id, false, s, n) != MEMFIT_OK) {
        *s = "";
        *n = 0;
    }
}

/* One chat "content" entry: {"token", "logprob", "bytes"} (and "top_logprobs" when `top`). */
static void chat_logprob_entry(struct mf_text *t, const struct gen_work *w, int32_t id, float lp,
                               const struct memfit_sampled_token *top)
{
    const char *s;
    size_t n;
    token_piece(w, id, &s, &n);
    mf_text_puts(t, "{\"token\":");
    json_token_text(t, s, n);
    mf_text_puts(t, ",\"logprob\":");
    json_logprob(t, lp);
    mf_text_puts(t, ",\"bytes\":");
    json_bytes(t, s, n);
    if (top) {
        mf_text_puts(t, ",\"top_logprobs\":[");
        for (uint32_t j = 0; j < top->n_top; j++) {
            if (j)
                mf_text_puts(t, ",");
            chat_logprob_entry(t, w, top->top[j].token, top->top[j].logprob, NULL);
        }
        mf_text_puts(t, "]");
    }
    mf_text_puts(t, "}");
}

/* One completions entry: token `id` at byte *offset of the text (advanced past it), its
 * logprob and its top alternatives; both null without `logprob` (the prompt's first token:
 * nothing comes before it). */
static void compl_logprob_entry(struct gen_work *w, int32_t id, const float *logprob,
                                const struct memfit_token_logprob *top, uint32_t n_top,
                                size_t *offset)
{
    struct gen_logprobs *lp = &w->lp;
    const char *sep = lp->n++ ? "," : "";
    const char *s;
    size_t n;
    token_piece(w, id, &s, &n);
    mf_text_puts(&lp->tokens, sep);
    json_token_text(&lp->tokens, s, n);
    mf_text_printf(&lp->offsets, "%s%zu", sep, *offset);
    *offset += n;
    mf_text_puts(&lp->values, sep);
    mf_text_puts(&lp->top, sep);
    if (!logprob) {
        mf_text_puts(&lp->values, "null");
        mf_text_puts(&lp->top, "null");
        return;
    }
    json_logprob(&lp->values, *logprob);
    mf_text_puts(&lp->top, "{");
    for (uint32_t j = 0; j < n_top; j++) {
        token_piece(w, top[j].token, &s, &n);
        if (j)
            mf_text_puts(&lp->top, ",");
        json_token_text(&lp->top, s, n);
        mf_text_puts(&lp->top, ":");
        json_logprob(&lp->top, top[j].logprob);
    }
    mf_text_puts(&lp->top, "}");
}

/* Adds a sampled token to the logprobs of the current chunk or choice. */
static void gen_logprobs_add(struct gen_work *w, const struct memfit_sampled_token *tk)
{
    struct gen_logprobs *lp = &w->lp;
    if (!w->req.chat) {
        compl_logprob_entry(w, tk->token, &tk->logprob, tk->top, tk->n_top, &w->text_bytes);
        return;
    }
    mf_text_puts(&lp->content, lp->n++ ? "," : "");
    chat_logprob_entry(&lp->content, w, tk->token, tk->logprob, tk);
}

/* Echo with logprobs: the prompt's tokens, scored by the engine (the first one null). */
static void gen_prompt_logprobs(struct gen_work *w)
{
    const int32_t *ids;
    const struct memfit_token_score *sc;
    size_t n, offset = 0;
    memfit_engine_generate_prompt(w->gen, &ids, &sc, &n);
    for (size_t i = 0; i < n; i++) {
        const struct memfit_token_score *e = i && sc ? &sc[i - 1] : NULL;
        compl_logprob_entry(w, ids[i], e ? &e->logprob : NULL, e ? e->top : NULL, e ? e->n_top : 0,
                            &offset);
    }
}

/* "logprobs": the object for what was gathered (then cleared), or null without logprobs. */
static void gen_logprobs_json(struct mf_text *t, struct gen_work *w)
{
    struct gen_logprobs *lp = &w->lp;
    mf_text_puts(t, "\"logprobs\":");
    if (!w->req.logprobs) {
        mf_text_puts(t, "null");
        return;
    }
    if (w->req.chat) {
        mf_text_puts(t, "{\"content\":[");
        mf_text_append(t, lp->content.data, lp->content.len);
        mf_text_puts(t, "],\"refusal\":null}");
    } else {
        mf_text_puts(t, "{\"tokens\":[");
        mf_text_append(t, lp->tokens.data, lp->tokens.len);
        mf_text_puts(t, "],\"token_logprobs\":[");
        mf_text_append(t, lp->values.data, lp->values.len);
        mf_text_puts(t, "],\"top_logprobs\":[");
        mf_text_append(t, lp->top.data, lp->top.len);
        mf_text_puts(t, "],\"text_offset\":[");
        mf_text_append(t, lp->offsets.data, lp->offsets.len);
        mf_text_puts(t, "]}");
    }
    bool failed = lp->content.failed || lp->tokens.failed || lp->values.failed || lp->top.failed ||
                  lp->offsets.failed;
    t->failed |= failed;
    gen_logprobs_clear(lp);
}

/* The tokens the last step sampled: counted, timed, and their logprobs gathered. */
static void gen_observe_tokens(struct gen_work *w)
{
    const struct memfit_sampled_token *toks;
    size_t n;
    memfit_engine_generate_tokens(w->gen, &toks, &n);
    for (size_t i = 0; i < n; i++) {
        if (!w->first_token) {
            w->first_token = true;
            mf_metrics_observe_ttft(w->stats, toks[i].t_ns - w->start_ns);
        }
        if (w->last_token_ns)
            mf_metrics_observe_itl(w->stats, toks[i].t_ns - w->last_token_ns);
        w->last_token_ns = toks[i].t_ns;
        if (w->req.logprobs)
            gen_logprobs_add(w, &toks[i]);
    }
    if (w->stats)
        atomic_fetch_add_explicit(&w->stats->generated_tokens, n, memory_order_relaxed);
}

static void gen_chunk(struct gen_work *w, const char *text, size_t len, const char *finish);

/* After a step: with echo, first (once a choice, the prompt now evaluated) the prompt's
 * logprobs, streamed in a chunk of the prompt's text; then the tokens sampled. */
static void gen_observe(struct gen_work *w, bool stream)
{
    if (w->echo_pending) {
        w->echo_pending = false;
        if (w->req.logprobs)
            gen_prompt_logprobs(w);
        if (stream)
            gen_chunk(w, w->req.prompt, w->req.prompt_len, NULL);
    }
    gen_observe_tokens(w);
}

/* One server-sent event with a piece of the current choice's text (or its finish, text NULL). */
static void gen_chunk_calls(struct gen_work *w, const char *text, size_t len, const char *finish,
                            const struct memfit_chat_tool_calls *calls)
{
    struct mf_text *t = &w->pending;
    mf_text_puts(t, "data: ");
    gen_head(t, w, w->req.chat ? "chat.completion.chunk" : "text_completion");
    mf_text_printf(t, ",\"choices\":[{\"index\":%" PRIu32 ",", w->choice);
    if (w->req.chat) {
        mf_text_puts(t, "\"delta\":{");
        if (!w->role_sent) {
            mf_text_puts(t, "\"role\":\"assistant\"");
            w->role_sent = true;
            if (text || calls)
                mf_text_puts(t, ",");
        }
        if (text) {
            mf_text_puts(t, "\"content\":");
            mf_text_json_string(t, text, len);
        }
        if (calls) {
            mf_text_puts(t, text ? "," : "");
            tool_calls_json(t, calls, true);
        }
        mf_text_puts(t, "},");
    } else {
        mf_text_puts(t, "\"text\":");
        mf_text_json_string(t, text ? text : "", text ? len : 0);
        mf_text_puts(t, ",");
    }
    if (finish) {
        mf_text_printf(t, "\"logprobs\":null,\"finish_reason\":\"%s\"}]", finish);
    } else {
        gen_logprobs_json(t, w);
        mf_text_puts(t, ",\"finish_reason\":null}]");
    }
    mf_text_puts(t, "}\n\n");
}

static void gen_chunk(struct gen_work *w, const char *text, size_t len, const char *finish)
{
    gen_chunk_calls(w, text, len, finish, NULL);
}

/* Whether held text (whitespace first skipped) may still grow into a call
 * of the template's form: a start of "<tool_call>" (Qwen2.5), a JSON object
 * or "<|python_tag|>" (LLaMA 3.1). */
static bool may_be_call(const struct gen_work *w)
{
    size_t i = 0, n = w->held.len;
    const char *s = w->held.data;
    while (i < n && (s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r'))
        i++;
    if (i == n)
        return true;
    const char *tag = w->tmpl == MEMFIT_CHAT_QWEN25 ? "<tool_call>" : "<|python_tag|>";
    size_t k = strlen(tag), m = n - i < k ? n - i : k;
    return memcmp(s + i, tag, m) == 0 || (w->tmpl == MEMFIT_CHAT_LLAMA31 && s[i] == '{');
}

/* Streaming with tools: text is held while it may be a call, then streamed as content. */
static void gen_hold(struct gen_work *w, const char *text, size_t len)
{
    mf_text_append(&w->held, text, len);
    if (may_be_call(w))
        return;
    w->streaming_content = true;
    gen_chunk(w, w->held.data ? w->held.data : "", w->held.len, NULL);
    w->held.len = 0;
}

/* The held text at the end of a choice: its calls (the finish reason becomes
 * "tool_calls"), or content. */
static const char *gen_flush_held(struct gen_work *w, const char *finish)
{
    struct memfit_chat_tool_calls c = {0};
    if (w->held.failed ||
        gen_tool_calls(w, w->held.data ? w->held.data : "", w->held.len, &c) != MEMFIT_OK) {
        w->pending.failed = true;
        return finish;
    }
    if (c.n_calls) {
        gen_chunk_calls(w, c.content, c.content ? strlen(c.content) : 0, NULL, &c);
        finish = "tool_calls";
    } else if (c.content) {
        gen_chunk(w, c.content, strlen(c.content), NULL);
    }
    memfit_chat_tool_calls_free(&c);
    w->held.len = 0;
    return finish;
}

/* The end of the stream: the usage (when asked) and [DONE]. */
static void gen_stream_end(struct gen_work *w)
{
    struct mf_text *t = &w->pending;
    if (w->req.include_usage) {
        mf_text_puts(t, "data: ");
        gen_head(t, w, w->req.chat ? "chat.completion.chunk" : "text_completion");
        mf_text_puts(t, ",\"choices\":[],");
        gen_usage(t, w);
        mf_text_puts(t, "}\n\n");
    }
    mf_text_puts(t, "data: [DONE]\n\n");
}

static bool fd_closed(int fd)
{
    char c;
    ssize_t n = fd >= 0 ? recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) : 1;
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* Starts choice w->choice: a generation of its own, seeded seed + index. */
static enum memfit_status gen_start_choice(struct gen_work *w)
{
    w->g.params.sampling.seed = w->seed + w->choice;
    uint32_t n_prompt = 0;
    enum memfit_status st = memfit_engine_generate_start(w->handle, &w->g, &w->gen, &n_prompt);
    if (st != MEMFIT_OK)
        return st;
    w->prompt_tokens = n_prompt;
    w->last_token_ns = 0;
    w->text_bytes = w->req.echo ? w->req.prompt_len : 0;
    w->echo_pending = w->req.echo;
    w->role_sent = false;
    w->held.len = 0;
    w->streaming_content = false;
    if (w->stats) {
        if (w->queued)
            atomic_fetch_sub(&w->stats->queued, 1);
        atomic_fetch_add(&w->stats->active, 1);
        atomic_fetch_add_explicit(&w->stats->prompt_tokens, n_prompt, memory_order_relaxed);
    }
    w->queued = false;
    return MEMFIT_OK;
}

/* Writes an error into a stream whose headers are gone, as OpenAI does. */
static void gen_stream_error(struct gen_work *w)
{
    struct mf_http_error e;
    mf_http_error_set(&e, 500, "server_error", "generation_failed", "%s", memfit_last_error());
    char *body = NULL;
    size_t body_len = 0;
    if (mf_http_error_json(&e, &body, &body_len) == MEMFIT_OK) {
        mf_text_puts(&w->pending, "data: ");
        mf_text_append(&w->pending, body, body_len ? body_len - 1 : 0);
        mf_text_puts(&w->pending, "\n\n");
        memfit_free(body);
    }
    w->finished = true;
    gen_release(w);
}

static ssize_t gen_stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct gen_work *w = cls;
    for (;;) {
        size_t n = drain_pending(&w->pending, &w->pending_off, buf, max);
        if (n)
            return (ssize_t)n;
        if (w->pending.failed)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        if (w->finished)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (atomic_load(&w->srv->cancel_all) || fd_closed(w->fd)) {
            memfit_log(MEMFIT_LOG_INFO, "%s: model %s: generation cancelled after %s",
                       w->req.chat ? "/v1/chat/completions" : "/v1/completions", w->req.model,
                       atomic_load(&w->srv->cancel_all) ? "the server stopped"
                                                        : "the client went away");
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (!w->gen) { /* the next choice */
            if (gen_start_choice(w) != MEMFIT_OK) {
                gen_stream_error(w);
                continue;
            }
        }
        const char *text = NULL;
        size_t len = 0;
        bool done = false;
        enum memfit_status st = memfit_engine_generate_next(w->gen, &text, &len, &done);
        if (st != MEMFIT_OK) {
            gen_stream_error(w);
            continue;
        }
        gen_observe(w, true);
        bool hold = w->req.n_tools && !w->streaming_content;
        if (hold)
            gen_hold(w, text, len);
        else if (len || w->lp.n)
            gen_chunk(w, text, len, NULL);
        if (done) {
            gen_end_choice(w);
            const char *finish = finish_name(w->result.finish);
            if (w->req.n_tools && !w->streaming_content)
                finish = gen_flush_held(w, finish);
            gen_chunk(w, NULL, 0, finish);
            if (++w->choice == w->n_choices) {
                gen_release(w); /* before [DONE]: a keep_alive 0 model is gone when it arrives */
                gen_stream_end(w);
                w->finished = true;
            }
        }
    }
}

static void gen_stream_free(void *cls)
{
    gen_work_free(cls);
}

static enum MHD_Result gen_start(struct req *r, struct gen_work *w, bool *ok);

/* Parses, admits, acquires and starts; on success *out holds a started generation. */
static enum MHD_Result gen_begin(struct req *r, bool chat, struct gen_work *w, bool *ok)
{
    *ok = false;
    struct mf_http_error err;
    enum memfit_status st =
        mf_gen_request_parse(r->body ? r->body : "", r->body_len, chat, &w->req, &err);
    body_parsed(r);
    if (st == MEMFIT_E_NOMEM)
        return fail(r, 503, "server_error", "out_of_memory", memfit_last_error());
    if (st != MEMFIT_OK)
        return respond_error(r, &err);
    return gen_start(r, w, ok);
}

/* The request's sampling parameters, in the library's terms. */
static void gen_params(struct gen_work *w, struct memfit_generate_params *p)
{
    const struct mf_gen_request *q = &w->req;
    memfit_sampling_default(&p->sampling);
    w->seed = q->has_seed ? q->seed : memfit_now_ns();
    if (q->has_temperature)
        p->sampling.temperature = (float)q->temperature;
    if (q->has_top_p)
        p->sampling.top_p = (float)q->top_p;
    if (q->has_top_k)
        p->sampling.top_k = (uint32_t)q->top_k;
    if (q->has_min_p)
        p->sampling.min_p = (float)q->min_p;
    if (q->has_repeat_penalty)
        p->sampling.repeat_penalty = (float)q->repeat_penalty;
    p->sampling.presence_penalty = (float)q->presence_penalty;
    p->sampling.frequency_penalty = (float)q->frequency_penalty;
    p->sampling.logit_bias = q->logit_bias;
    p->sampling.n_logit_bias = q->n_logit_bias;
    p->sampling.logprobs = q->logprobs;
    p->top_logprobs = q->top_logprobs;
    /* Echo with logprobs covers the prompt too (OpenAI's legacy completions). */
    p->prompt_logprobs = q->echo && q->logprobs;
    /* OpenAI's defaults: 16 tokens for completions, the context for chat. */
    p->max_tokens = q->has_max_tokens ? (uint32_t)q->max_tokens : q->chat ? 0 : 16;
    /* Echo with max_tokens 0 scores a prompt: nothing is generated (without echo, 0 is the
     * library's "until the context is full"). */
    p->prompt_only = q->echo && q->has_max_tokens && q->max_tokens == 0;
    p->stop = (const char *const *)q->stop;
    p->n_stop = q->n_stop;
}

/* What the loaded model refuses of the request: tools without a template for them, a
 * logit_bias token beyond its vocabulary. NULL when fine; else the message in msg. */
static const char *gen_model_refusal(struct gen_work *w, memfit_llm *model, char *msg, size_t cap)
{
    if (w->req.n_tools && !memfit_chat_template_has_tools(w->tmpl)) {
        const char *tmpl = memfit_tokenizer_chat_template(w->tok);
        snprintf(msg, cap, "'tools': model '%s': its chat template does not support tools%s",
                 w->req.model,
                 tmpl && strstr(tmpl, "tools")
                     ? " (it defines them, but not in the Qwen2.5 or LLaMA 3.1 form memfit renders)"
                     : "");
        return msg;
    }
    struct memfit_llm_info info;
    memfit_llm_get_info(model, &info);
    for (size_t i = 0; i < w->req.n_logit_bias; i++)
        if ((uint32_t)w->req.logit_bias[i].token >= info.n_vocab) {
            snprintf(msg, cap, "'logit_bias' names token %d; model '%s' has %u tokens",
                     (int)w->req.logit_bias[i].token, w->req.model, info.n_vocab);
            return msg;
        }
    return NULL;
}

/* Admits, acquires and starts the generation of w->req (parsed); *ok: started. */
static enum MHD_Result gen_start(struct req *r, struct gen_work *w, bool *ok)
{
    bool chat = w->req.chat;
    enum memfit_status st;
    *ok = false;
    enum MHD_Result ret;
    if (!begin_model_request(r, w->req.model, MEMFIT_ENGINE_OP_GENERATE, "does not generate text",
                             &ret))
        return ret;
    w->admitted = true;
    w->start_ns = r->start_ns;
    w->n_choices = w->req.n ? w->req.n : 1;

    struct memfit_generation_request *g = &w->g;
    if (chat) {
        w->messages =
            memfit_calloc_in(MEMFIT_ALLOC_SERVER, w->req.n_messages, sizeof(*w->messages));
        if (!w->messages)
            return fail(r, 503, "server_error", "out_of_memory", memfit_last_error());
        for (size_t i = 0; i < w->req.n_messages; i++) {
            w->messages[i].role = w->req.roles[i];
            w->messages[i].content = w->req.contents[i];
            w->messages[i].tool_calls = w->req.tool_calls[i];
            w->messages[i].n_tool_calls = w->req.n_tool_calls[i];
            w->messages[i].tool_call_id = w->req.tool_call_ids[i];
        }
        g->messages = w->messages;
        g->n_messages = w->req.n_messages;
    } else {
        g->prompt = w->req.prompt;
        g->prompt_len = w->req.prompt_len;
    }
    gen_params(w, &g->params);
    g->grammar = w->req.grammar; /* response_format */
    if ((st = memfit_sampling_check(&g->params.sampling)) != MEMFIT_OK)
        return fail(r, 400, "invalid_request_error", "invalid_value", memfit_last_error());

    w->stats = mf_metrics_gen(&r->srv->metrics, w->req.model);
    if (w->stats) {
        atomic_fetch_add(&w->stats->queued, 1);
        w->queued = true;
    }
    st = acquire(r, w->req.model, &w->handle);
    if (st == MEMFIT_E_CANCELLED) {
        memfit_log(MEMFIT_LOG_INFO, "%s: model %s: the client went away while waiting",
                   mf_route_label(r->route), w->req.model);
        return MHD_NO;
    }
    if (st != MEMFIT_OK)
        return fail_status(r, st);
    w->running = true;
    memfit_llm *model = NULL;
    if ((st = memfit_engine_llm(w->handle, &model, &w->tok, NULL)) != MEMFIT_OK)
        return fail_status(r, st);
    memfit_chat_template_detect(memfit_tokenizer_chat_template(w->tok), &w->tmpl, NULL);
    char msg[400];
    if (gen_model_refusal(w, model, msg, sizeof(msg)))
        return fail(r, 400, "invalid_request_error", "unsupported_field", msg);
    if (w->req.n_tools) {
        g->tools_json = w->req.tools_json;
        if (w->req.tool_choice != MF_TOOL_CHOICE_AUTO) {
            st = gen_tool_grammar(w);
            if (st == MEMFIT_E_NOMEM)
                return fail(r, 503, "server_error", "out_of_memory", memfit_last_error());
            if (st != MEMFIT_OK)
                return fail(r, 400, "invalid_request_error", "unsupported_schema",
                            memfit_last_error());
            g->grammar = w->tool_grammar;
        }
    }
    st = gen_start_choice(w);
    if (st == MEMFIT_E_RANGE)
        return fail(r, 400, "invalid_request_error", "context_length_exceeded",
                    memfit_last_error());
    if (st == MEMFIT_E_INVALID)
        return fail(r, 400, "invalid_request_error", "invalid_value", memfit_last_error());
    if (st != MEMFIT_OK)
        return fail_status(r, st);
    static _Atomic uint64_t counter;
    snprintf(w->id, sizeof(w->id), "%s-%016" PRIx64, chat ? "chatcmpl" : "cmpl",
             memfit_now_ns() ^ (atomic_fetch_add(&counter, 1) * UINT64_C(0x9E3779B97F4A7C15)));
    w->created = (uint64_t)time(NULL);
    w->fd = r->fd;
    *ok = true;
    return MHD_YES;
}

/*
 * Runs the current choice (started) to its end, its text appended to *text
 * (which the caller frees) and its logprobs gathered in w->lp; the choice is
 * then ended. *ok false: the answer is queued, or the client left.
 */
static enum MHD_Result gen_collect(struct req *r, struct gen_work *w, struct mf_text *text,
                                   bool *ok)
{
    *ok = false;
    mf_text_puts(text, "");
    enum memfit_status st = MEMFIT_OK;
    for (bool done = false; !done && st == MEMFIT_OK;) {
        if (req_cancelled(r)) {
            memfit_log(MEMFIT_LOG_INFO, "%s: model %s: generation cancelled: %s",
                       mf_route_label(r->route), w->req.model,
                       atomic_load(&r->srv->cancel_all) ? "the server is stopping"
                                                        : "the client went away");
            return MHD_NO;
        }
        const char *piece = NULL;
        size_t len = 0;
        st = memfit_engine_generate_next(w->gen, &piece, &len, &done);
        if (st == MEMFIT_OK) {
            gen_observe(w, false);
            if (len)
                mf_text_append(text, piece, len);
        }
    }
    gen_end_choice(w);
    if (st != MEMFIT_OK)
        return fail_status(r, st);
    *ok = true;
    return MHD_YES;
}

/* Appends the current choice's object to `choices` (a comma first after the first). */
static void gen_choice_json(struct mf_text *t, struct gen_work *w, const struct mf_text *text)
{
    mf_text_printf(t, "%s{\"index\":%" PRIu32 ",", w->choice ? "," : "", w->choice);
    const char *finish = finish_name(w->result.finish);
    if (w->req.chat && w->req.n_tools) {
        struct memfit_chat_tool_calls c = {0};
        if (gen_tool_calls(w, text->data ? text->data : "", text->len, &c) != MEMFIT_OK) {
            t->failed = true;
            return;
        }
        mf_text_puts(t, "\"message\":{\"role\":\"assistant\",\"content\":");
        if (c.content)
            mf_text_json_string(t, c.content, strlen(c.content));
        else
            mf_text_puts(t, c.n_calls ? "null" : "\"\"");
        if (c.n_calls) {
            mf_text_puts(t, ",");
            tool_calls_json(t, &c, false);
            finish = "tool_calls";
        }
        mf_text_puts(t, "},");
        memfit_chat_tool_calls_free(&c);
    } else if (w->req.chat) {
        mf_text_puts(t, "\"message\":{\"role\":\"assistant\",\"content\":");
        mf_text_json_string(t, text->data ? text->data : "", text->len);
        mf_text_puts(t, "},");
    } else {
        mf_text_puts(t, "\"text\":");
        if (w->req.echo) { /* one string: the prompt, then the completion */
            struct mf_text both = {0};
            mf_text_append(&both, w->req.prompt, w->req.prompt_len);
            mf_text_append(&both, text->data ? text->data : "", text->len);
            mf_text_json_string(t, both.data ? both.data : "", both.len);
            t->failed |= both.failed;
            mf_text_free(&both);
        } else {
            mf_text_json_string(t, text->data ? text->data : "", text->len);
        }
        mf_text_puts(t, ",");
    }
    gen_logprobs_json(t, w);
    mf_text_printf(t, ",\"finish_reason\":\"%s\"}", finish);
}

static enum MHD_Result route_generate(struct req *r, bool chat)
{
    struct gen_work *w = memfit_calloc_in(MEMFIT_ALLOC_SERVER, 1, sizeof(*w));
    if (!w)
        return fail(r, 503, "server_error", "out_of_memory", memfit_last_error());
    w->srv = r->srv;
    w->fd = -1;
    bool ok;
    enum MHD_Result ret = gen_begin(r, chat, w, &ok);
    if (!ok) {
        gen_work_free(w);
        return ret;
    }
    if (w->req.stream) { /* an echo's chunk comes with the first step (gen_observe) */
        struct MHD_Response *resp = MHD_create_response_from_callback(
            MHD_SIZE_UNKNOWN, 4096, gen_stream_read, w, gen_stream_free);
        if (!resp) {
            gen_work_free(w);
            return MHD_NO;
        }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        MHD_add_response_header(resp, "X-Accel-Buffering", "no");
        return queue(r, 200, resp);
    }
    struct mf_text choices = {0};
    for (;;) {
        struct mf_text text = {0};
        ret = gen_collect(r, w, &text, &ok);
        if (ok)
            gen_choice_json(&choices, w, &text);
        mf_text_free(&text);
        if (!ok || ++w->choice == w->n_choices)
            break;
        enum memfit_status st = gen_start_choice(w);
        if (st != MEMFIT_OK) {
            ret = fail_status(r, st);
            ok = false;
            break;
        }
    }
    if (!ok) {
        mf_text_free(&choices);
        gen_work_free(w);
        return ret;
    }
    gen_release(w); /* before the answer: a keep_alive 0 model is gone when it arrives */
    struct mf_text t = {0};
    gen_head(&t, w, chat ? "chat.completion" : "text_completion");
    mf_text_puts(&t, ",\"choices\":[");
    mf_text_append(&t, choices.data, choices.len);
    t.failed |= choices.failed;
    mf_text_puts(&t, "],");
    gen_usage(&t, w);
    mf_text_puts(&t, "}");
    mf_text_free(&choices);
    gen_work_free(w);
    return respond_json(r, 200, &t);
}

/* ---- Server-sent events --------------------------------------------------------------------- */

static void sample_event(struct req *r, struct mf_text *t)
{
    memfit_server *srv = r->srv;
    struct mf_mem_sample s;
    mf_server_sample(srv, &s);
    struct memfit_manager_status *snap;
    if (memfit_manager_snapshot(srv->mgr, &snap) != MEMFIT_OK)
        return;
    mf_text_printf(t, "event: sample\ndata: {\"time_ms\":%" PRIu64, s.wall_ms);
    if (s.working_set_bytes != MEMFIT_SYS_UNKNOWN)
        mf_text_printf(t, ",\"working_set_bytes\":%" PRIu64, s.working_set_bytes);
    if (s.in_use_bytes != MEMFIT_SYS_UNKNOWN)
        mf_text_printf(t, ",\"in_use_bytes\":%" PRIu64, s.in_use_bytes);
    if (s.limit_bytes != MEMFIT_SYS_UNKNOWN)
        mf_text_printf(t, ",\"limit_bytes\":%" PRIu64, s.limit_bytes);
    if (s.rss_bytes != MEMFIT_SYS_UNKNOWN)
        mf_text_printf(t, ",\"rss_bytes\":%" PRIu64, s.rss_bytes);
    if (s.have_psi)
        mf_text_printf(t, ",\"psi_some_avg10\":%.2f,\"psi_full_avg10\":%.2f", s.psi_some_avg10,
                       s.psi_full_avg10);
    for (unsigned i = 0; i < s.n_gpus; i++) /* serve --gpu: each GPU's memory and level */
        mf_text_printf(t,
                       "%s{\"index\":%u,\"used_bytes\":%" PRIu64 ",\"total_bytes\":%" PRIu64
                       ",\"level\":\"%s\"}%s",
                       i ? "," : ",\"gpus\":[", s.gpus[i].index, s.gpus[i].used_bytes,
                       s.gpus[i].total_bytes, memfit_level_name(s.gpus[i].level),
                       i + 1 == s.n_gpus ? "]" : "");
    mf_text_printf(t, ",\"queue_depth\":%u,\"running\":%u,\"budget\":", atomic_load(&srv->waiting),
                   atomic_load(&srv->running));
    budget_json(t, &snap->budget);
    mf_text_puts(t, ",\"models\":[");
    uint64_t now = memfit_now_ns();
    for (size_t i = 0; i < snap->n_models; i++) {
        if (i)
            mf_text_puts(t, ",");
        model_json(t, &snap->models[i], now);
    }
    mf_text_puts(t, "]}\n\n");
    memfit_free(snap);
}

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct req *r = cls;
    memfit_server *srv = r->srv;
    for (;;) {
        size_t n = drain_pending(&r->pending, &r->pending_off, buf, max);
        if (n)
            return (ssize_t)n;
        if (r->pending.failed)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        if (atomic_load(&srv->stopping))
            return MHD_CONTENT_READER_END_OF_STREAM;
        pthread_mutex_lock(&srv->lock);
        uint64_t first = srv->event_seq > MF_SERVER_EVENTS ? srv->event_seq - MF_SERVER_EVENTS : 0;
        if (r->ev_seq < first)
            r->ev_seq = first;
        while (r->ev_seq < srv->event_seq) {
            const struct srv_event *e = &srv->events[r->ev_seq % MF_SERVER_EVENTS];
            r->ev_seq++;
            if (e->seq == r->ev_seq && e->json)
                mf_text_printf(&r->pending, "event: model\nid: %" PRIu64 "\ndata: %s\n\n", e->seq,
                               e->json);
        }
        if (r->pending.len == 0 && memfit_now_ns() < r->next_sample_ns &&
            !atomic_load(&srv->stopping)) {
            struct timespec ts;
            uint64_t at = r->next_sample_ns;
            ts.tv_sec = (time_t)(at / 1000000000u);
            ts.tv_nsec = (long)(at % 1000000000u);
            pthread_cond_timedwait(&srv->cond, &srv->lock, &ts);
        }
        pthread_mutex_unlock(&srv->lock);
        if (r->pending.len == 0 && memfit_now_ns() >= r->next_sample_ns) {
            r->next_sample_ns = memfit_now_ns() + 1000000000u;
            sample_event(r, &r->pending);
        }
    }
}

static enum MHD_Result route_events(struct req *r)
{
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, sse_read, r, NULL);
    if (!resp)
        return MHD_NO;
    mf_text_puts(&r->pending, "retry: 2000\n\n");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    return queue(r, 200, resp);
}

/* ---- The Open Inference Protocol (KServe v2) ------------------------------------------------
 *
 * memfit has no model versions: each model is version "1". A model's one
 * input and one output depend on its family: images (BYTES, each element
 * an image as base64) to embeddings (FP32 [n, D]), or a prompt (BYTES [1])
 * to its completion (BYTES [1]). Inference goes through the routes' own
 * code paths (embed_inputs, gen_start/gen_collect): the same admission,
 * limits and memory reservations as /v1/embeddings and /v1/completions.
 */

#define V2_VERSION "1"

/* A family's tensors as the model metadata describes them. */
struct v2_tensors {
    const char *input, *input_shape;
    const char *output, *output_type, *output_shape;
};

/* The tensors of a family, or NULL when it serves no /v2 inference (SAM). */
static const struct v2_tensors *v2_tensors_of(const struct memfit_engine_family_info *f)
{
    static const struct v2_tensors images = {"image", "[-1]", "embedding", "FP32", "[-1,-1]"};
    static const struct v2_tensors text = {"text", "[1]", "text_output", "BYTES", "[1]"};
    if (f->ops & MEMFIT_ENGINE_OP_EMBED_IMAGE)
        return &images;
    if (f->ops & MEMFIT_ENGINE_OP_GENERATE)
        return &text;
    return NULL;
}

/* The Triton repository state of a manager state. */
static const char *v2_state(enum memfit_model_state state)
{
    switch (state) {
    case MEMFIT_MODEL_READY:
    case MEMFIT_MODEL_BUSY:
        return "READY";
    case MEMFIT_MODEL_FETCHING:
    case MEMFIT_MODEL_LOADING:
        return "LOADING";
    case MEMFIT_MODEL_UNLOADING:
        return "UNLOADING";
    case MEMFIT_MODEL_UNLOADED:
    case MEMFIT_MODEL_FAILED:
    default:
        return "UNAVAILABLE";
    }
}

static bool v2_loaded(enum memfit_model_state state)
{
    return state == MEMFIT_MODEL_READY || state == MEMFIT_MODEL_BUSY;
}

/* The model's family (known), or false with 404 queued; also a version other than "1". */
static bool v2_model(struct req *r, const struct memfit_engine_family_info **family,
                     enum MHD_Result *ret)
{
    if (!known_model(r, r->name, family, ret))
        return false;
    if (r->version[0] && strcmp(r->version, V2_VERSION) != 0) {
        char msg[300];
        snprintf(msg, sizeof(msg),
                 "model '%s' has no version '%s' (memfit serves one version of each model, "
                 "\"" V2_VERSION "\")",
                 r->name, r->version);
        *ret = fail(r, 404, "invalid_request_error", "model_not_found", msg);
        return false;
    }
    return true;
}

/* The model's status in a snapshot, or NULL. */
static const struct memfit_model_status *find_status(const struct memfit_manager_status *s,
                                                     const char *name)
{
    for (size_t i = 0; i < s->n_models; i++)
        if (strcmp(s->models[i].name, name) == 0)
            return &s->models[i];
    return NULL;
}

/* A repository index entry {"name", "version", "state", "reason"}. */
static void v2_index_entry(struct mf_text *t, const struct memfit_model_status *m)
{
    mf_text_puts(t, "{");
    json_key_string(t, "name", m->name);
    mf_text_puts(t, ",\"version\":\"" V2_VERSION "\",");
    json_key_string(t, "state", v2_state(m->state));
    mf_text_puts(t, ",");
    if (m->state == MEMFIT_MODEL_FAILED)
        json_key_string(t, "reason", m->last_error);
    else if (m->state == MEMFIT_MODEL_UNLOADED)
        json_key_string(t, "reason", "not loaded: loads on its first inference request");
    else
        json_key_string(t, "reason", "");
    mf_text_puts(t, "}");
}

static enum MHD_Result route_v2_server(struct req *r)
{
    struct mf_text t = {0};
    mf_text_puts(&t, "{\"name\":\"memfit\",");
    json_key_string(&t, "version", memfit_version());
    mf_text_puts(&t, ",\"extensions\":[\"model_repository\"]}");
    return respond_json(r, 200, &t);
}

static void v2_tensor_json(struct mf_text *t, const char *name, const char *type, const char *shape)
{
    mf_text_puts(t, "[{");
    json_key_string(t, "name", name);
    mf_text_printf(t, ",\"datatype\":\"%s\",\"shape\":%s}]", type, shape);
}

static enum MHD_Result route_v2_model(struct req *r)
{
    const struct memfit_engine_family_info *family;
    enum MHD_Result ret;
    if (!v2_model(r, &family, &ret))
        return ret;
    const struct v2_tensors *io = v2_tensors_of(family);
    struct mf_text t = {0};
    mf_text_puts(&t, "{");
    json_key_string(&t, "name", r->name);
    mf_text_printf(&t, ",\"versions\":[\"" V2_VERSION "\"],\"platform\":\"memfit-%s\",\"inputs\":",
                   family->name);
    if (io)
        v2_tensor_json(&t, io->input, "BYTES", io->input_shape);
    else
        mf_text_puts(&t, "[]");
    mf_text_puts(&t, ",\"outputs\":");
    if (io)
        v2_tensor_json(&t, io->output, io->output_type, io->output_shape);
    else
        mf_text_puts(&t, "[]");
    mf_text_puts(&t, "}");
    return respond_json(r, 200, &t);
}

/* Ready = loaded: it answers without a load first. A model that is not
 * loaded is still served (it loads on its first request): 503 says so. */
static enum MHD_Result route_v2_model_ready(struct req *r)
{
    const struct memfit_engine_family_info *family;
    enum MHD_Result ret;
    if (!v2_model(r, &family, &ret))
        return ret;
    struct memfit_manager_status *s;
    if (memfit_manager_snapshot(r->srv->mgr, &s) != MEMFIT_OK)
        return fail(r, 503, "server_error", "out_of_memory", memfit_last_error());
    const struct memfit_model_status *m = find_status(s, r->name);
    char msg[400];
    bool ready = m && v2_loaded(m->state);
    snprintf(msg, sizeof(msg),
             "model '%s' is not loaded (%s): it loads on its first inference request, or on "
             "POST /v2/repository/models/%s/load",
             r->name, m ? memfit_model_state_name(m->state) : "unknown", r->name);
    memfit_free(s);
    if (!ready)
        return fail(r, 503, "server_error", "not_ready", msg);
    struct mf_text t = {0};
    mf_text_puts(&t, "{");
    json_key_string(&t, "name", r->name);
    mf_text_puts(&t, ",\"ready\":true}");
    return respond_json(r, 200, &t);
}

/* The head of an inference answer: {"model_name", "model_version", "id"?, */
static void v2_answer_head(struct mf_text *t, const struct req *r, const struct mf_infer_request *q)
{
    mf_text_puts(t, "{");
    json_key_string(t, "model_name", r->name);
    mf_text_puts(t, ",\"model_version\":\"" V2_VERSION "\",");
    if (q->id) {
        json_key_string(t, "id", q->id);
        mf_text_puts(t, ",");
    }
}

/* The images of q through the embeddings' path; the answer is FP32 [n, D]. */
static enum MHD_Result v2_infer_images(struct req *r, struct mf_infer_request *q,
                                       const struct v2_tensors *io)
{
    struct embed_work w;
    memset(&w, 0, sizeof(w));
    /* The items move into the embeddings request. */
    w.req.model = memfit_strdup(r->name);
    if (!w.req.model)
        return fail(r, 503, "server_error", "out_of_memory", memfit_last_error());
    w.req.inputs = q->items;
    w.req.input_lens = q->item_lens;
    w.req.n_inputs = q->n_items;
    w.req.bare_base64 = true;
    q->items = NULL;
    q->item_lens = NULL;
    q->n_items = 0;
    bool ok;
    enum MHD_Result ret = embed_inputs(r, &w, &ok);
    if (ok) {
        struct mf_text t = {0};
        v2_answer_head(&t, r, q);
        mf_text_puts(&t, "\"outputs\":[{");
        json_key_string(&t, "name", io->output);
        mf_text_printf(&t, ",\"datatype\":\"FP32\",\"shape\":[%zu,%zu],\"data\":[", w.req.n_inputs,
                       w.dim);
        floats_json(&t, w.out, w.req.n_inputs * w.dim);
        mf_text_puts(&t, "]}]}");
        ret = respond_json(r, 200, &t);
    }
    embed_work_free(r->srv, &w);
    return ret;
}

/* The prompt of q through the completions' path (not streamed); the answer is BYTES [1]. */
static enum MHD_Result v2_infer_text(struct req *r, struct mf_infer_request *q,
                                     const struct v2_tensors *io)
{
    if (q->n_items != 1)
        return fail(r, 400, "invalid_request_error", "invalid_value",
                    "a text model takes one prompt: input 'text' must hold one element (shape "
                    "[1])");
    struct gen_work *w = memfit_calloc_in(MEMFIT_ALLOC_SERVER, 1, sizeof(*w));
    if (!w)
        return fail(r, 503, "server_error", "out_of_memory", memfit_last_error());
    w->srv = r->srv;
    w->fd = -1;
    w->req = q->gen; /* the sampling parameters and stop strings move */
    memset(&q->gen, 0, sizeof(q->gen));
    w->req.chat = false;
    w->req.model = memfit_strdup(r->name);
    enum MHD_Result ret;
    if (q->base64) {
        uint8_t *bytes = NULL;
        size_t n = 0;
        enum memfit_status st = mf_base64_decode(q->items[0], q->item_lens[0], &bytes, &n);
        if (st == MEMFIT_E_NOMEM) {
            ret = fail(r, 503, "server_error", "out_of_memory", memfit_last_error());
            goto done;
        }
        if (st != MEMFIT_OK) {
            char msg[300];
            snprintf(msg, sizeof(msg), "input 'text': %s", memfit_last_error());
            ret = fail(r, 400, "invalid_request_error", "invalid_base64", msg);
            goto done;
        }
        w->req.prompt = memfit_malloc_in(MEMFIT_ALLOC_SERVER, n + 1);
        if (w->req.prompt) {
            memcpy(w->req.prompt, bytes, n);
            w->req.prompt[n] = '\0';
        }
        w->req.prompt_len = n;
        memfit_free(bytes);
    } else {
        w->req.prompt = q->items[0]; /* moves */
        w->req.prompt_len = q->item_lens[0];
        q->items[0] = NULL;
    }
    if (!w->req.model || !w->req.prompt) {
        ret = fail(r, 503, "server_error", "out_of_memory", "out of memory");
        goto done;
    }
    bool ok;
    ret = gen_start(r, w, &ok);
    if (!ok)
        goto done;
    struct mf_text text = {0};
    ret = gen_collect(r, w, &text, &ok);
    if (ok) {
        struct mf_text t = {0};
        v2_answer_head(&t, r, q);
        mf_text_printf(&t,
                       "\"parameters\":{\"prompt_tokens\":%" PRIu32
                       ",\"completion_tokens\":%" PRIu32 ",\"finish_reason\":\"%s\"},",
                       w->prompt_tokens, w->result.n_generated, finish_name(w->result.finish));
        mf_text_puts(&t, "\"outputs\":[{");
        json_key_string(&t, "name", io->output);
        mf_text_puts(&t, ",\"datatype\":\"BYTES\",\"shape\":[1],\"data\":[");
        mf_text_json_string(&t, text.data ? text.data : "", text.len);
        mf_text_puts(&t, "]}]}");
        ret = respond_json(r, 200, &t);
    }
    mf_text_free(&text);
done:
    gen_work_free(w);
    return ret;
}

static enum MHD_Result run_v2_infer(struct req *r, struct mf_infer_request *q)
{
    struct mf_http_error err;
    enum memfit_status st = mf_infer_request_parse(r->body ? r->body : "", r->body_len,
                                                   r->srv->opt.max_inputs, q, &err);
    body_parsed(r);
    if (st == MEMFIT_E_NOMEM)
        return fail(r, 503, "server_error", "out_of_memory", memfit_last_error());
    if (st != MEMFIT_OK)
        return respond_error(r, &err);
    const struct memfit_engine_family_info *family;
    enum MHD_Result ret;
    if (!v2_model(r, &family, &ret))
        return ret;
    const struct v2_tensors *io = v2_tensors_of(family);
    char msg[400];
    if (!io) {
        snprintf(msg, sizeof(msg), "model '%s' (%s) has no /v2 inference; %s", r->name,
                 family->name, family_use(family));
        return fail(r, 400, "invalid_request_error", "model_not_supported", msg);
    }
    if (strcmp(q->input_name, io->input) != 0) {
        snprintf(msg, sizeof(msg), "model '%s' has no input '%s'; its input is '%s'", r->name,
                 q->input_name, io->input);
        return fail(r, 400, "invalid_request_error", "invalid_value", msg);
    }
    if (q->output_name && strcmp(q->output_name, io->output) != 0) {
        snprintf(msg, sizeof(msg), "model '%s' has no output '%s'; its output is '%s'", r->name,
                 q->output_name, io->output);
        return fail(r, 400, "invalid_request_error", "invalid_value", msg);
    }
    if (family->ops & MEMFIT_ENGINE_OP_EMBED_IMAGE) {
        if (q->has_gen_params) {
            snprintf(msg, sizeof(msg),
                     "model '%s' makes embeddings: the generation parameters do not apply",
                     r->name);
            return fail(r, 400, "invalid_request_error", "invalid_value", msg);
        }
        return v2_infer_images(r, q, io);
    }
    return v2_infer_text(r, q, io);
}

static enum MHD_Result route_v2_infer(struct req *r)
{
    struct mf_infer_request q;
    memset(&q, 0, sizeof(q));
    enum MHD_Result ret = run_v2_infer(r, &q);
    mf_infer_request_free(&q);
    return ret;
}

/* The body of a repository route; false with a 400 queued. */
static bool v2_repo_body(struct req *r, bool *ready_only, enum MHD_Result *ret)
{
    struct mf_http_error err;
    enum memfit_status st = mf_repo_request_parse(
        r->body ? r->body : "", r->body_len, r->route == MF_ROUTE_V2_REPO_INDEX, ready_only, &err);
    body_parsed(r);
    if (st == MEMFIT_E_NOMEM)
        *ret = fail(r, 503, "server_error", "out_of_memory", memfit_last_error());
    else if (st != MEMFIT_OK)
        *ret = respond_error(r, &err);
    return st == MEMFIT_OK;
}

static enum MHD_Result route_v2_repo_index(struct req *r)
{
    bool ready_only;
    enum MHD_Result ret;
    if (!v2_repo_body(r, &ready_only, &ret))
        return ret;
    struct memfit_manager_status *s;
    if (memfit_manager_snapshot(r->srv->mgr, &s) != MEMFIT_OK)
        return fail(r, 503, "server_error", "out_of_memory", memfit_last_error());
    struct mf_text t = {0};
    mf_text_puts(&t, "[");
    bool first = true;
    for (size_t i = 0; i < s->n_models; i++) {
        if (ready_only && !v2_loaded(s->models[i].state))
            continue;
        if (!first)
            mf_text_puts(&t, ",");
        v2_index_entry(&t, &s->models[i]);
        first = false;
    }
    mf_text_puts(&t, "]");
    memfit_free(s);
    return respond_json(r, 200, &t);
}

/* Load (waits for it) and unload: /api/models/{name}/load|unload; the answer is the index entry. */
static enum MHD_Result route_v2_repo_control(struct req *r)
{
    bool ready_only;
    enum MHD_Result ret;
    if (!v2_repo_body(r, &ready_only, &ret) ||
        !control_model(r, r->route == MF_ROUTE_V2_REPO_LOAD, &ret))
        return ret;
    struct memfit_manager_status *s;
    if (memfit_manager_snapshot(r->srv->mgr, &s) != MEMFIT_OK)
        return fail(r, 503, "server_error", "out_of_memory", memfit_last_error());
    struct mf_text t = {0};
    const struct memfit_model_status *m = find_status(s, r->name);
    if (m)
        v2_index_entry(&t, m);
    else
        mf_text_puts(&t, "{}");
    memfit_free(s);
    return respond_json(r, 200, &t);
}

/* ---- Dispatch -------------------------------------------------------------------------------- */

static enum MHD_Result dispatch(struct req *r)
{
    switch (r->route) {
    case MF_ROUTE_EMBEDDINGS:
        return route_embeddings(r);
    case MF_ROUTE_COMPLETIONS:
        return route_generate(r, false);
    case MF_ROUTE_CHAT:
        return route_generate(r, true);
    case MF_ROUTE_SEGMENT:
        return route_segment(r);
    case MF_ROUTE_V1_MODELS:
        return route_v1_models(r);
    case MF_ROUTE_V1_MODEL:
        return route_v1_model(r);
    case MF_ROUTE_MODELS:
        return route_models(r);
    case MF_ROUTE_MODEL_LOAD:
    case MF_ROUTE_MODEL_UNLOAD:
        return route_model_control(r);
    case MF_ROUTE_MEMORY:
        return route_memory(r);
    case MF_ROUTE_CLEANUP:
        return route_cleanup(r);
    case MF_ROUTE_EVENTS:
        return route_events(r);
    case MF_ROUTE_HEALTH:
    case MF_ROUTE_V2_LIVE:
        return route_health(r);
    case MF_ROUTE_READY:
    case MF_ROUTE_V2_READY:
        return route_ready(r);
    case MF_ROUTE_METRICS:
        return route_metrics(r);
    case MF_ROUTE_DASHBOARD:
        return route_dashboard(r);
    case MF_ROUTE_V2_SERVER:
        return route_v2_server(r);
    case MF_ROUTE_V2_MODEL:
        return route_v2_model(r);
    case MF_ROUTE_V2_MODEL_READY:
        return route_v2_model_ready(r);
    case MF_ROUTE_V2_INFER:
        return route_v2_infer(r);
    case MF_ROUTE_V2_REPO_INDEX:
        return route_v2_repo_index(r);
    case MF_ROUTE_V2_REPO_LOAD:
    case MF_ROUTE_V2_REPO_UNLOAD:
        return route_v2_repo_control(r);
    case MF_ROUTE_OTHER:
    case MF_ROUTE_COUNT:
        break;
    }
    return fail(r, 404, "invalid_request_error", "not_found", "no such route");
}

/* ---- Browser safety ---------------------------------------------------------------------- */

static const char *header(struct req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

/*
 * The host of a Host header without its port ("[::1]" keeps its brackets)
 * in `out`; false for a malformed value (a port that is not digits).
 */
static bool host_name(const char *value, char *out, size_t cap)
{
    const char *end = value[0] == '[' ? strchr(value, ']') : strchr(value, ':');
    if (value[0] == '[' && !end)
        return false;
    if (value[0] == '[')
        end++;
    if (!end)
        end = value + strlen(value);
    if (*end == ':')
        for (const char *p = end + 1; *p; p++)
            if (*p < '0' || *p > '9')
                return false;
    if (*end && *end != ':')
        return false;
    size_t n = (size_t)(end - value);
    if (n == 0 || n >= cap)
        return false;
    memcpy(out, value, n);
    out[n] = '\0';
    return true;
}

static bool loopback_name(const char *name)
{
    if (strcasecmp(name, "localhost") == 0 || strcmp(name, "[::1]") == 0)
        return true;
    struct in_addr a;
    return inet_pton(AF_INET, name, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

/* Whether the Host header may reach this server (always, unless bound to loopback). */
static bool host_allowed(const memfit_server *srv, const char *value)
{
    if (!srv->loopback || !value) /* no Host: HTTP/1.0, not a browser */
        return true;
    char name[256];
    if (!host_name(value, name, sizeof(name)))
        return false;
    if (loopback_name(name))
        return true;
    for (size_t i = 0; i < srv->n_allow_hosts; i++)
        if (strcasecmp(srv->allow_hosts[i], name) == 0 ||
            strcasecmp(srv->allow_hosts[i], value) == 0)
            return true;
    return false;
}

/* Whether `origin` is the server's own (http://HOST) or one of --allow-origin. */
static bool origin_allowed(const memfit_server *srv, const char *origin, const char *host,
                           bool *cross)
{
    *cross = !(host && strncasecmp(origin, "http://", 7) == 0 && strcasecmp(origin + 7, host) == 0);
    if (!*cross)
        return true;
    for (size_t i = 0; i < srv->n_allow_origins; i++)
        if (strcmp(srv->allow_origins[i], "*") == 0 ||
            strcasecmp(srv->allow_origins[i], origin) == 0)
            return true;
    return false;
}

/* Whether a Content-Type is application/json, parameters (charset) allowed. */
static bool json_media_type(const char *type)
{
    if (!type)
        return false;
    size_t n = strlen("application/json");
    if (strncasecmp(type, "application/json", n) != 0)
        return false;
    const char *p = type + n;
    while (*p == ' ' || *p == '\t')
        p++;
    return *p == '\0' || *p == ';';
}

/* The answer to an OPTIONS request: a CORS preflight, or the route's methods. */
static enum MHD_Result respond_options(struct req *r, const char *allowed)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    const char *methods = strcmp(allowed, "GET") == 0 ? "GET, HEAD, OPTIONS" : "POST, OPTIONS";
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, methods);
    if (r->cors_origin) {
        MHD_add_response_header(resp, "Access-Control-Allow-Methods", methods);
        MHD_add_response_header(resp, "Access-Control-Allow-Headers",
                                "Authorization, Content-Type");
        MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
    }
    return queue(r, 204, resp);
}

/* 403 naming the refused header value. */
static enum MHD_Result forbid(struct req *r, const char *code, const char *what, const char *value,
                              const char *why)
{
    char msg[400];
    snprintf(msg, sizeof(msg), "%s '%.200s' is not allowed: %s", what, value, why);
    return fail(r, 403, "invalid_request_error", code, msg);
}

/* The browser checks: Host (DNS rebinding), Origin (cross-site requests), CORS preflight. */
static enum MHD_Result check_browser(struct req *r, const char *method, const char *allowed)
{
    memfit_server *srv = r->srv;
    const char *host = header(r, MHD_HTTP_HEADER_HOST);
    if (!host_allowed(srv, host))
        return forbid(r, "host_not_allowed", "host", host,
                      "this server listens on a loopback address and answers localhost, "
                      "127.x.x.x and [::1] (add names with --allow-host)");
    const char *origin = header(r, MHD_HTTP_HEADER_ORIGIN);
    bool cross = false;
    if (origin && !origin_allowed(srv, origin, host, &cross))
        return forbid(r, "origin_not_allowed", "origin", origin,
                      "pages of other sites cannot call this server (allow it with "
                      "--allow-origin)");
    if (origin && cross)
        r->cors_origin = origin;
    if (strcmp(method, "OPTIONS") == 0 && r->route != MF_ROUTE_OTHER)
        return respond_options(r, allowed);
    return MHD_YES;
}

/* What the framing headers say, over every copy of each (libmicrohttpd's
 * lookup returns only the first). */
struct framing {
    unsigned n_length, n_encoding;
    const char *length;   /* the first Content-Length */
    bool lengths_differ;  /* another Content-Length with another value */
    const char *encoding; /* the first Transfer-Encoding other than "chunked" */
};

static enum MHD_Result on_framing_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                         const char *value)
{
    (void)kind;
    struct framing *f = cls;
    if (!key || !value)
        return MHD_YES;
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
        if (f->n_length++ == 0)
            f->length = value;
        else if (strcmp(f->length, value) != 0)
            f->lengths_differ = true;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        f->n_encoding++;
        if (strcasecmp(value, "chunked") != 0 && !f->encoding)
            f->encoding = value;
    }
    return MHD_YES;
}

/* Refuses a request whose body length is ambiguous (smuggling: two lengths,
 * or a length and an encoding) or encoded in a way this server cannot read,
 * before any of the body is read. */
static enum MHD_Result check_framing(struct req *r, bool *refused)
{
    struct framing f = {0};
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, on_framing_header, &f);
    char msg[160];
    *refused = true;
    if (f.lengths_differ)
        return fail(r, 400, "invalid_request_error", "bad_framing",
                    "several Content-Length headers with different values");
    if (f.n_length && f.n_encoding)
        return fail(r, 400, "invalid_request_error", "bad_framing",
                    "both Content-Length and Transfer-Encoding (send one of them)");
    if (f.encoding) {
        snprintf(msg, sizeof(msg), "Transfer-Encoding '%.64s' is not supported (only chunked)",
                 f.encoding);
        return fail(r, 501, "invalid_request_error", "unsupported_transfer_encoding", msg);
    }
    if (f.n_encoding > 1)
        return fail(r, 400, "invalid_request_error", "bad_framing",
                    "several Transfer-Encoding headers");
    *refused = false;
    return MHD_YES;
}

/*
 * The connection's limits (conn.c): 429 on a connection beyond its client's
 * limit, 503 beyond max_connections requests at once. Queued while only the
 * head was read, so libmicrohttpd reads no body and closes the connection
 * after the answer (Connection: close). Counted and logged by conn.c once
 * every 10 s rather than one line each.
 */
static enum MHD_Result check_connection(struct req *r)
{
    char msg[300];
    struct mf_http_error e;
    switch (mf_server_conn_admit(r->srv, r->conn, r->route, msg, sizeof(msg))) {
    case MF_CONN_CLIENT_LIMIT:
        mf_http_error_set(&e, 429, "rate_limit_error", "too_many_connections", "%s", msg);
        break;
    case MF_CONN_BUSY:
        mf_http_error_set(&e, 503, "server_error", "server_busy", "%s", msg);
        break;
    case MF_CONN_SERVE:
    default:
        return MHD_YES;
    }
    r->answered = true;
    return respond_error_quiet(r, &e, MHD_HTTP_HEADER_RETRY_AFTER, "1");
}

/* Checks done on the headers, before any body is read. */
static enum MHD_Result check_headers(struct req *r, const char *method, const char *allowed)
{
    memfit_server *srv = r->srv;
    r->answered = true;
    bool refused;
    enum MHD_Result framing = check_framing(r, &refused);
    if (refused)
        return framing;
    enum MHD_Result ret = check_browser(r, method, allowed);
    if (ret != MHD_YES || r->status)
        return ret;
    if (r->route == MF_ROUTE_OTHER)
        return fail(r, 404, "invalid_request_error", "not_found",
                    "no such route (see GET / for the dashboard, /v1/models, /api/models, "
                    "/api/memory, /metrics, /v2)");
    bool head = strcmp(method, "HEAD") == 0 && strcmp(allowed, "GET") == 0;
    if (strcmp(method, allowed) != 0 && !head) {
        char msg[100];
        snprintf(msg, sizeof(msg), "method %.16s not allowed here (use %s)", method, allowed);
        struct mf_http_error e;
        mf_http_error_set(&e, 405, "invalid_request_error", "method_not_allowed", "%s", msg);
        return respond_error_h(r, &e, MHD_HTTP_HEADER_ALLOW, allowed);
    }
    if (srv->api_key && r->route != MF_ROUTE_HEALTH && r->route != MF_ROUTE_V2_LIVE &&
        !mf_bearer_ok(
            MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION),
            srv->api_key))
        return fail(r, 401, "authentication_error", "invalid_api_key",
                    "missing or wrong API key (send Authorization: Bearer KEY)");
    if (strcmp(allowed, "POST") == 0 && !json_media_type(header(r, MHD_HTTP_HEADER_CONTENT_TYPE))) {
        const char *type = header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
        char msg[200];
        snprintf(msg, sizeof(msg), "Content-Type %.80s%s: send Content-Type: application/json",
                 type ? type : "missing", type ? " is not accepted" : "");
        return fail(r, 415, "invalid_request_error", "unsupported_media_type", msg);
    }
    const char *cl =
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    long long n;
    if (cl && memfit_parse_int(cl, 0, INT64_MAX, &n) == MEMFIT_OK &&
        (uint64_t)n > srv->opt.max_body_bytes) {
        char msg[160];
        snprintf(msg, sizeof(msg), "the body is %lld bytes; at most %llu are accepted", n,
                 (unsigned long long)srv->opt.max_body_bytes);
        return fail(r, 413, "invalid_request_error", "body_too_large", msg);
    }
    r->answered = false;
    return MHD_YES;
}

/* Stands for the record of a request whose own record could not be
 * allocated (its answer, a static 503, is queued at the headers). */
static struct req no_memory_req;

/* Refuses the request while its body arrives: the body is dropped now, the
 * answer goes out when the client has sent all of it. */
static void refuse(struct req *r, const struct mf_http_error *e)
{
    r->refused = true;
    r->refusal = *e;
    free_body(r);
    r->body_len = 0;
    memfit_budget_release(r->body_res);
    r->body_res = NULL;
}

/* Room for `need` bytes plus the terminating NUL. False: r->refusal says why. */
static bool grow_body(struct req *r, size_t need, bool declared)
{
    if (need + 1 <= r->body_cap)
        return true;
    size_t cap = need + 1;
    if (!declared) { /* chunked: double, each step reserved */
        cap = r->body_cap ? r->body_cap : 4096;
        while (cap < need + 1)
            cap *= 2;
        if (cap > r->srv->opt.max_body_bytes + 1)
            cap = (size_t)r->srv->opt.max_body_bytes + 1;
        struct mf_http_error e;
        if (!reserve_request(r, &r->body_res, cap, "to read its body", &e)) {
            refuse(r, &e);
            return false;
        }
    }
    bool mapped = cap >= BODY_MAP_BYTES;
    char *grown = mapped ? mf_map_anon(cap) : memfit_malloc_in(MEMFIT_ALLOC_SERVER, cap);
    if (!grown) {
        struct mf_http_error e;
        mf_http_error_set(&e, 503, "server_error", "out_of_memory",
                          "out of memory for a request body of %zu bytes", cap);
        refuse(r, &e);
        return false;
    }
    if (r->body_len)
        memcpy(grown, r->body, r->body_len);
    free_body(r);
    r->body = grown;
    r->body_cap = cap;
    r->body_mapped = mapped;
    return true;
}

/* At the headers: the declared body's bytes, reserved before any is read. */
static enum MHD_Result reserve_declared(struct req *r)
{
    r->schema = mf_route_schema(r->route);
    if (r->schema)
        mf_json_scan_init(&r->scan, r->schema);
    const char *cl = header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
    long long n;
    if (!cl || memfit_parse_int(cl, 1, INT64_MAX, &n) != MEMFIT_OK) {
        memfit_clear_error();
        return MHD_YES; /* none (or chunked): reserved as it grows */
    }
    struct mf_http_error e;
    if (!reserve_request(r, &r->body_res, (uint64_t)n + 1, "to read its body", &e) ||
        !grow_body(r, (size_t)n, true)) {
        if (r->refused)
            e = r->refusal;
        r->answered = true;
        return answer_error(r, &e);
    }
    return MHD_YES;
}

/* A piece of the body: kept, scanned, and refused as soon as it must be. */
static void receive(struct req *r, const char *data, size_t n)
{
    memfit_server *srv = r->srv;
    if (r->too_large || r->refused)
        return;
    size_t need;
    if (mf_add_overflow(r->body_len, n, &need) || need > srv->opt.max_body_bytes) {
        r->too_large = true; /* chunked upload past the limit: read and drop the rest */
        free_body(r);
        return;
    }
    if (!grow_body(r, need, false))
        return;
    memcpy(r->body + r->body_len, data, n);
    r->body_len = need;
    r->body[need] = '\0';
    if (!r->schema)
        return;
    struct mf_http_error e;
    if (mf_json_scan_feed(&r->scan, r->body, r->body_len, &e) != MEMFIT_OK) {
        memfit_clear_error();
        refuse(r, &e);
        return;
    }
    uint64_t cost = mf_json_scan_cost(&r->scan) + reserved(r);
    struct memfit_budget_usage u;
    memfit_budget_get_usage(req_budget(r), &u);
    if (cost > u.size_bytes) {
        char a[32], b[32];
        mf_http_error_set(
            &e, 413, "invalid_request_error", "request_too_large",
            "reading and parsing this body would take more than %s of memory (at byte %zu); "
            "the whole memory budget is %s",
            memfit_format_size(cost, a, sizeof(a)), r->body_len,
            memfit_format_size(u.size_bytes, b, sizeof(b)));
        refuse(r, &e);
    }
}

/* The body is complete: its scan finished and its parse reserved. False: answered. */
static bool body_ready(struct req *r, enum MHD_Result *ret)
{
    struct mf_http_error e;
    if (r->refused) {
        *ret = answer_error(r, &r->refusal);
        return false;
    }
    /* The repository extension's bodies may be empty (read as {}). */
    bool may_be_empty = r->route == MF_ROUTE_V2_REPO_INDEX || r->route == MF_ROUTE_V2_REPO_LOAD ||
                        r->route == MF_ROUTE_V2_REPO_UNLOAD;
    if (!r->schema || (may_be_empty && r->body_len == 0))
        return true;
    if (mf_json_scan_feed(&r->scan, r->body ? r->body : (char *)"", r->body_len, &e) != MEMFIT_OK ||
        mf_json_scan_finish(&r->scan, &e) != MEMFIT_OK ||
        !reserve_request(r, &r->parse_res, mf_json_scan_cost(&r->scan), "to parse its body", &e)) {
        memfit_clear_error();
        *ret = answer_error(r, &e);
        return false;
    }
    return true;
}

enum MHD_Result mf_server_on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                     const char *method, const char *version,
                                     const char *upload_data, size_t *upload_data_size,
                                     void **con_cls)
{
    (void)version;
    memfit_server *srv = cls;
    struct req *r = *con_cls;
    if (r == &no_memory_req) { /* answered 503 at the headers: drop the body */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (!r) {
        r = memfit_calloc_in(MEMFIT_ALLOC_SERVER, 1, sizeof(*r));
        if (!r) {
            *con_cls = &no_memory_req;
            return respond_no_memory(conn, NULL);
        }
        r->srv = srv;
        r->conn = conn;
        r->start_ns = memfit_now_ns();
        r->fd = -1;
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci)
            r->fd = ci->connect_fd;
        *con_cls = r;
        atomic_fetch_add(&srv->active, 1);
        mf_server_conn_mark(srv, conn, MF_CONN_BODY); /* the head deadline is met */
        const char *allowed;
        r->route = mf_route_match_version(url, r->name, r->version, &allowed);
        if (mf_route_is_probe(r->route))
            atomic_fetch_add(&srv->probes, 1);
        enum MHD_Result ret = check_headers(r, method, allowed ? allowed : "GET");
        if (!r->answered && ret == MHD_YES)
            ret = check_connection(r);
        if (r->answered || ret != MHD_YES) {
            mf_server_conn_mark(srv, conn, MF_CONN_ANSWER); /* no body will be read */
            return ret;
        }
        ret = reserve_declared(r);
        if (r->answered) /* refused before its body: none will be read */
            mf_server_conn_mark(srv, conn, MF_CONN_ANSWER);
        return ret;
    }
    if (r->answered) { /* an early answer is queued: discard the body */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        receive(r, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    r->answered = true;
    mf_server_conn_mark(srv, conn, MF_CONN_ANSWER); /* the body is in: no more deadlines */
    if (r->too_large) {
        char msg[120];
        snprintf(msg, sizeof(msg), "the body is larger than the %llu bytes accepted",
                 (unsigned long long)srv->opt.max_body_bytes);
        return fail(r, 413, "invalid_request_error", "body_too_large", msg);
    }
    enum MHD_Result ret;
    if (!body_ready(r, &ret))
        return ret;
    return dispatch(r);
}

void mf_server_on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                            enum MHD_RequestTerminationCode toe)
{
    memfit_server *srv = cls;
    struct req *r = *con_cls;
    if (!r)
        return;
    mf_server_conn_mark(srv, conn, MF_CONN_HEAD); /* the next request's head clock starts */
    *con_cls = NULL;
    if (r == &no_memory_req)
        return;
    if (mf_route_is_probe(r->route))
        atomic_fetch_sub(&srv->probes, 1);
    atomic_store(&r->cancelled, true);
    int status = r->status;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && r->route != MF_ROUTE_EVENTS) {
        atomic_fetch_add_explicit(&srv->metrics.cancelled[r->route], 1, memory_order_relaxed);
        if (!status)
            status = 499; /* the client closed the connection before the answer */
    }
    if (status)
        mf_metrics_observe(&srv->metrics, r->route, status, memfit_now_ns() - r->start_ns);
    mf_text_free(&r->pending);
    bool trim = reserved(r) >= TRIM_AFTER_BYTES;
    free_body(r);
    memfit_budget_release(r->body_res);
    memfit_budget_release(r->parse_res);
    memfit_budget_release(r->input_res);
    memfit_free(r);
    if (trim)
        memfit_heap_trim(); /* what the parser built lies in this thread's arena */
    atomic_fetch_sub(&srv->active, 1);
}

/*
 * The server's gRPC front end (`memfit serve --grpc-port`): ModelMesh's
 * model-runtime SPI (mmesh.ModelRuntime, proto/mmesh/model-runtime.proto)
 * and KServe's v2 inference service (inference.GRPCInferenceService,
 * proto/inference/grpc_service.proto). docs/server.md, "ModelMesh".
 *
 * DESIGN. gRPC's C core (libgrpc, loaded at run time: grpc_lib.h) with the
 * messages read and written by grpc_wire.c. One thread polls the completion
 * queue; every call that arrives gets its own thread for its handler (as
 * HTTP requests get one each), at most max_connections at once (beyond:
 * RESOURCE_EXHAUSTED at once). A call holds two references: its handler's
 * answer and the RECV_CLOSE_ON_SERVER operation, which completes when the
 * client cancels (the handler's work is then cancelled) or after the answer.
 *
 * The model runtime drives the server's model table: loadModel adds a model
 * (pinned, no keep_alive: ModelMesh decides what stays) and loads it;
 * unloadModel removes it and returns once the manager holds nothing of it
 * in the budget (the driver unloads before the budget is given back, so
 * then its mapping is gone too); sizes are the manager's reservations and
 * the engines' plans, exact from the header.
 *
 * Inference goes through the HTTP /v2 routes of this very server, over
 * loopback: one implementation of admission, limits and request memory for
 * both protocols. The images or text of a request are base64 in the JSON
 * (4/3 of their size, for the time of the call); the memory the call holds
 * (message, JSON, answer) is reserved in the budget first, so a call that
 * cannot fit is refused with RESOURCE_EXHAUSTED and the figures.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "core/alloc.h"
#include "server/grpc_lib.h"
#include "server/grpc_wire.h"
#include "server/internal.h"

#define LOAD_TIMEOUT_MS      300000u /* told to ModelMesh: a fetch from a store can be slow */
#define MAX_LOADS            2u      /* loads in flight that ModelMesh may ask for */
#define UNLOAD_WAIT_MS       60000u  /* unloadModel's wait for the last handle */
#define MAX_HTTP_ANSWER      (512ull * 1024 * 1024)
#define MM_MODEL_ID_HEADER   "mm-model-id"
#define ANSWER_MESSAGE_BYTES 1024

enum tag_kind { TAG_NEW, TAG_RECV, TAG_SEND, TAG_CLOSE, TAG_SHUTDOWN };

struct gcall;

struct gtag {
    enum tag_kind kind;
    struct gcall *call;
};

/* One call from arrival to its last completion. */
struct gcall {
    struct mf_grpc *g;
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array metadata;
    grpc_byte_buffer *recv;
    int close_cancelled; /* RECV_CLOSE_ON_SERVER's answer */
    _Atomic bool cancelled;
    _Atomic int refs;
    _Atomic int http_fd; /* the loopback request in progress, or -1 */
    struct gtag t_new, t_recv, t_send, t_close;
    /* The answer, kept until its batch completes. */
    grpc_byte_buffer *send;
    grpc_slice status_details;
    bool have_details;
    grpc_metadata_array trailing; /* empty */
};

/* A load in progress, by model id: unloadModel waits for it. */
struct gload {
    char *id;
    struct gload *next;
};

struct mf_grpc {
    memfit_server *srv;
    grpc_server *server;
    grpc_completion_queue *cq;
    uint16_t port;
    pthread_t poller;
    bool poller_started;
    struct gtag t_shutdown;
    _Atomic bool quiesced;
    pthread_mutex_t lock; /* loads, purged, n_calls */
    pthread_cond_t cond;  /* a load or a call ended */
    struct gload *loads;
    bool purged;
    unsigned n_calls;    /* calls alive (poller's references) */
    unsigned n_handlers; /* handler threads running */
    bool shut;           /* the server's shutdown tag came */
    bool inited;         /* grpc_init was called */
};

/* An answer in the making. */
struct answer {
    grpc_status_code code;
    char message[ANSWER_MESSAGE_BYTES];
    struct mf_text body;
};

static void answer_fail(struct answer *a, grpc_status_code code, const char *fmt, ...)
    MEMFIT_PRINTF(3, 4);
static void answer_fail(struct answer *a, grpc_status_code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->message, sizeof(a->message), fmt, ap);
    va_end(ap);
    a->code = code;
}

/* The gRPC status of a library failure (the message is memfit_last_error()'s). */
static grpc_status_code status_code(enum memfit_status st)
{
    switch (st) {
    case MEMFIT_E_NOT_FOUND:
        return GRPC_STATUS_NOT_FOUND;
    case MEMFIT_E_BUDGET:
    case MEMFIT_E_TIMEOUT:
    case MEMFIT_E_TOO_LARGE:
    case MEMFIT_E_NOMEM:
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    case MEMFIT_E_CANCELLED:
        return GRPC_STATUS_CANCELLED;
    case MEMFIT_E_EXISTS:
        return GRPC_STATUS_ALREADY_EXISTS;
    case MEMFIT_E_BUSY:
        return GRPC_STATUS_UNAVAILABLE;
    case MEMFIT_E_FORMAT:
    case MEMFIT_E_RANGE:
    case MEMFIT_E_UNSUPPORTED:
    case MEMFIT_E_INVALID:
        return GRPC_STATUS_INVALID_ARGUMENT;
    default:
        return GRPC_STATUS_INTERNAL;
    }
}

static void answer_status(struct answer *a, enum memfit_status st, const char *what)
{
    answer_fail(a, status_code(st), "%s: %s", what, memfit_last_error());
}

/* ---- Calls ----------------------------------------------------------------------------- */

static void call_unref(struct gcall *c)
{
    if (atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    struct mf_grpc *g = c->g;
    if (c->call)
        mf_grpc.call_unref(c->call);
    if (c->recv)
        mf_grpc.byte_buffer_destroy(c->recv);
    if (c->send)
        mf_grpc.byte_buffer_destroy(c->send);
    if (c->have_details)
        mf_grpc.slice_unref(c->status_details);
    mf_grpc.call_details_destroy(&c->details);
    mf_grpc.metadata_array_destroy(&c->metadata);
    mf_grpc.metadata_array_destroy(&c->trailing);
    memfit_free(c);
    pthread_mutex_lock(&g->lock);
    g->n_calls--;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

/* Waits for the next call (one request outstanding at a time). */
static void post_new(struct mf_grpc *g)
{
    if (atomic_load(&g->quiesced))
        return;
    struct gcall *c = memfit_calloc_in(MEMFIT_ALLOC_SERVER, 1, sizeof(*c));
    if (!c) {
        memfit_log(MEMFIT_LOG_ERROR, "grpc: out of memory: no more calls are taken");
        return;
    }
    c->g = g;
    atomic_store(&c->http_fd, -1);
    atomic_store(&c->refs, 1);
    c->t_new = (struct gtag){TAG_NEW, c};
    c->t_recv = (struct gtag){TAG_RECV, c};
    c->t_send = (struct gtag){TAG_SEND, c};
    c->t_close = (struct gtag){TAG_CLOSE, c};
    mf_grpc.call_details_init(&c->details);
    mf_grpc.metadata_array_init(&c->metadata);
    mf_grpc.metadata_array_init(&c->trailing);
    pthread_mutex_lock(&g->lock);
    g->n_calls++;
    pthread_mutex_unlock(&g->lock);
    if (mf_grpc.server_request_call(g->server, &c->call, &c->details, &c->metadata, g->cq, g->cq,
                                    &c->t_new) != GRPC_CALL_OK)
        call_unref(c);
}

/* Sends the answer: the message when OK, then the status. */
static void send_answer(struct gcall *c, struct answer *a)
{
    grpc_op ops[3];
    memset(ops, 0, sizeof(ops));
    size_t n = 0;
    ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (a->code == GRPC_STATUS_OK && !a->body.failed) {
        grpc_slice s =
            mf_grpc.slice_from_copied_buffer(a->body.data ? a->body.data : "", a->body.len);
        c->send = mf_grpc.raw_byte_buffer_create(&s, 1);
        mf_grpc.slice_unref(s);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = c->send;
    } else if (a->code == GRPC_STATUS_OK) {
        answer_fail(a, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory for the answer");
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = a->code;
    ops[n].data.send_status_from_server.trailing_metadata_count = 0;
    if (a->code != GRPC_STATUS_OK) {
        c->status_details = mf_grpc.slice_from_copied_buffer(a->message, strlen(a->message));
        c->have_details = true;
        ops[n].data.send_status_from_server.status_details = &c->status_details;
    }
    n++;
    if (mf_grpc.call_start_batch(c->call, ops, n, &c->t_send, NULL) != GRPC_CALL_OK)
        call_unref(c); /* the send tag will never come */
}

static bool call_cancelled(void *user)
{
    struct gcall *c = user;
    return atomic_load(&c->cancelled) || atomic_load(&c->g->srv->cancel_all);
}

/* The value of metadata `key` (lower case) as a NUL-terminated copy, or NULL. */
static char *metadata_value(const struct gcall *c, const char *key)
{
    for (size_t i = 0; i < c->metadata.count; i++) {
        const grpc_metadata *m = &c->metadata.metadata[i];
        size_t kl = GRPC_SLICE_LENGTH(m->key);
        if (kl == strlen(key) && memcmp(GRPC_SLICE_START_PTR(m->key), key, kl) == 0)
            return memfit_strndup((const char *)GRPC_SLICE_START_PTR(m->value),
                                  GRPC_SLICE_LENGTH(m->value));
    }
    return NULL;
}

/* ---- Models: the ModelMesh model runtime ------------------------------------------------- */

static void load_begin(struct mf_grpc *g, struct gload *l, const char *id)
{
    l->id = (char *)id;
    pthread_mutex_lock(&g->lock);
    l->next = g->loads;
    g->loads = l;
    pthread_mutex_unlock(&g->lock);
}

static void load_end(struct mf_grpc *g, struct gload *l)
{
    pthread_mutex_lock(&g->lock);
    for (struct gload **p = &g->loads; *p; p = &(*p)->next)
        if (*p == l) {
            *p = l->next;
            break;
        }
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

/* Whether the budget holds anything of `name`. */
static bool budget_holds(memfit_budget *b, const char *name)
{
    struct memfit_budget_owner *owners = NULL;
    size_t n = 0;
    if (memfit_budget_get_owners(b, &owners, &n) != MEMFIT_OK)
        return true; /* cannot tell: keep waiting */
    bool held = false;
    for (size_t i = 0; i < n; i++)
        if (strcmp(owners[i].owner, name) == 0)
            held = true;
    memfit_free(owners);
    return held;
}

/* Waits until no load of `id` runs and the budget holds nothing of it. */
static bool wait_gone(struct mf_grpc *g, const char *id)
{
    uint64_t deadline = memfit_now_ns() + (uint64_t)UNLOAD_WAIT_MS * 1000000u;
    memfit_budget *b = memfit_manager_budget(g->srv->mgr);
    for (;;) {
        bool loading = false;
        pthread_mutex_lock(&g->lock);
        for (struct gload *l = g->loads; l; l = l->next)
            if (strcmp(l->id, id) == 0)
                loading = true;
        if (loading) {
            uint64_t until = memfit_now_ns() + 20000000u;
            struct timespec ts = {(time_t)(until / 1000000000u), (long)(until % 1000000000u)};
            pthread_cond_timedwait(&g->cond, &g->lock, &ts);
        }
        pthread_mutex_unlock(&g->lock);
        if (!loading && !budget_holds(b, id))
            return true;
        if (memfit_now_ns() > deadline)
            return false;
        if (!loading) {
            struct timespec ts = {0, 5 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
}

/* Removes a model added by loadModel and waits for it to be gone. */
static enum memfit_status unload_model(struct mf_grpc *g, const char *id)
{
    enum memfit_status st = mf_server_remove_model(g->srv, id);
    if (st == MEMFIT_E_NOT_FOUND) {
        memfit_clear_error();
        return MEMFIT_OK; /* unknown: nothing to do */
    }
    if (st != MEMFIT_OK)
        return st;
    if (!wait_gone(g, id))
        return memfit_fail(MEMFIT_E_TIMEOUT,
                           "model %s is still in use after %u ms; it is unloaded when its last "
                           "request ends",
                           id, UNLOAD_WAIT_MS);
    return MEMFIT_OK;
}

/* Before the first READY: what a previous ModelMesh left (models it added)
 * goes, and every loaded model is unloaded. */
static void purge(struct mf_grpc *g)
{
    memfit_server *srv = g->srv;
    unsigned removed = 0, unloaded = 0;
    for (;;) {
        char *name = NULL;
        pthread_mutex_lock(&srv->lock);
        for (struct srv_model *m = srv->models; m && !name; m = m->next)
            if (m->dynamic)
                name = memfit_strdup(m->name);
        pthread_mutex_unlock(&srv->lock);
        if (!name)
            break;
        if (unload_model(g, name) != MEMFIT_OK)
            memfit_log(MEMFIT_LOG_WARN, "grpc: purge: %s", memfit_last_error());
        memfit_free(name);
        removed++;
    }
    struct memfit_manager_status *s;
    if (memfit_manager_snapshot(srv->mgr, &s) == MEMFIT_OK) {
        for (size_t i = 0; i < s->n_models; i++)
            if (s->models[i].state == MEMFIT_MODEL_READY &&
                memfit_manager_unload(srv->mgr, s->models[i].name) == MEMFIT_OK)
                unloaded++;
        memfit_free(s);
    }
    memfit_log(MEMFIT_LOG_INFO,
               "grpc: runtimeStatus: purged %u model(s) loaded at run time and unloaded %u",
               removed, unloaded);
}

static void h_runtime_status(struct gcall *c, struct answer *a)
{
    struct mf_grpc *g = c->g;
    pthread_mutex_lock(&g->lock);
    bool first = !g->purged;
    g->purged = true;
    pthread_mutex_unlock(&g->lock);
    if (first)
        purge(g);
    struct memfit_budget_usage u;
    memfit_budget_get_usage(memfit_manager_budget(g->srv->mgr), &u);
    static const char *const methods[] = {"inference.GRPCInferenceService/ModelInfer",
                                          "inference.GRPCInferenceService/ModelMetadata",
                                          "inference.GRPCInferenceService/ModelReady"};
    struct mf_mm_runtime_status s = {
        .status = MF_MM_READY,
        .capacity_bytes = u.size_bytes,
        .max_loading_concurrency = MAX_LOADS,
        .model_loading_timeout_ms = LOAD_TIMEOUT_MS,
        .default_model_size_bytes = u.size_bytes / 8 ? u.size_bytes / 8 : 1,
        .runtime_version = memfit_version(),
        .methods = methods,
        .n_methods = sizeof(methods) / sizeof(methods[0]),
    };
    mf_mm_runtime_status_encode(&s, &a->body);
}

/* A model path ModelMesh's puller gave: a file, or a folder with one model file. */
static enum memfit_status model_source(const char *path, char **out)
{
    struct stat sb;
    if (strstr(path, "://") || stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return (*out = memfit_strdup(path)) ? MEMFIT_OK : MEMFIT_E_NOMEM;
    DIR *d = opendir(path);
    if (!d)
        return memfit_fail(MEMFIT_E_IO, "%s: %s", path, strerror(errno));
    static const char *const exts[] = {".gguf", ".safetensors", ".pth", ".pt", ".bin"};
    char *found = NULL;
    unsigned n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++) {
            size_t el = strlen(exts[i]);
            if (len > el && strcmp(e->d_name + len - el, exts[i]) == 0) {
                n++;
                memfit_free(found);
                found = memfit_asprintf("%s/%s", path, e->d_name);
                break;
            }
        }
    }
    closedir(d);
    if (n == 1 && found) {
        *out = found;
        return MEMFIT_OK;
    }
    memfit_free(found);
    if (n == 1)
        return MEMFIT_E_NOMEM;
    return memfit_fail(MEMFIT_E_INVALID,
                       "%s is a folder with %u model files (.gguf, .safetensors, .pth); name "
                       "the file",
                       path, n);
}

/* The family of a modelType: "" or "auto" detect it; else a family name. */
static bool model_family(const char *type, const char **family, struct answer *a)
{
    *family = "auto";
    if (!type || !type[0] || strcmp(type, "auto") == 0)
        return true;
    const struct memfit_engine_family_info *f = memfit_engine_family_find(type);
    if (!f) {
        answer_fail(a, GRPC_STATUS_INVALID_ARGUMENT,
                    "modelType '%s' is not a family memfit knows (%s); leave it empty or \"auto\" "
                    "to detect the family from the file's header",
                    type, memfit_engine_family_names());
        return false;
    }
    *family = f->name;
    return true;
}

/* Parses a model request with its id (and path when `need_path`). */
static bool model_request(struct gcall *c, const uint8_t *msg, size_t len, bool need_path,
                          struct mf_mm_model_request *r, struct answer *a)
{
    enum memfit_status st = mf_mm_model_request_parse(msg, len, r);
    if (st != MEMFIT_OK) {
        answer_status(a, st, "bad request");
        return false;
    }
    (void)c;
    if (!r->model_id || !r->model_id[0] || strlen(r->model_id) >= MF_MODEL_NAME_MAX) {
        answer_fail(a, GRPC_STATUS_INVALID_ARGUMENT, "modelId must be 1 to %d bytes",
                    MF_MODEL_NAME_MAX - 1);
        return false;
    }
    if (need_path && (!r->model_path || !r->model_path[0])) {
        answer_fail(a, GRPC_STATUS_INVALID_ARGUMENT, "model %s: modelPath is empty", r->model_id);
        return false;
    }
    return true;
}

/* The bytes the manager holds for a loaded model, or 0. */
static uint64_t model_bytes(memfit_server *srv, const char *name, bool *loaded)
{
    struct memfit_manager_status *s;
    uint64_t bytes = 0;
    *loaded = false;
    if (memfit_manager_snapshot(srv->mgr, &s) != MEMFIT_OK)
        return 0;
    for (size_t i = 0; i < s->n_models; i++)
        if (strcmp(s->models[i].name, name) == 0 &&
            (s->models[i].state == MEMFIT_MODEL_READY || s->models[i].state == MEMFIT_MODEL_BUSY)) {
            bytes = s->models[i].total_bytes;
            *loaded = true;
        }
    memfit_free(s);
    return bytes;
}

static void h_load_model(struct gcall *c, const uint8_t *msg, size_t len, struct answer *a)
{
    struct mf_grpc *g = c->g;
    memfit_server *srv = g->srv;
    struct mf_mm_model_request r;
    const char *family;
    char *source = NULL;
    if (!model_request(c, msg, len, true, &r, a))
        return;
    if (!model_family(r.model_type, &family, a))
        goto done;
    enum memfit_status st = model_source(r.model_path, &source);
    if (st != MEMFIT_OK) {
        answer_status(a, st == MEMFIT_E_NOMEM ? st : MEMFIT_E_INVALID, "loadModel");
        goto done;
    }
    struct gload l;
    load_begin(g, &l, r.model_id);
    bool existed = false;
    uint64_t start = memfit_now_ns();
    st = mf_server_add_model(srv, r.model_id, family, source, &existed);
    if (st == MEMFIT_E_EXISTS) {
        answer_status(a, st, "loadModel");
        a->code = GRPC_STATUS_FAILED_PRECONDITION; /* no load was tried */
    } else if (st != MEMFIT_OK) {
        answer_status(a, st, "loadModel");
        if (a->code == GRPC_STATUS_INTERNAL)
            a->code = GRPC_STATUS_INVALID_ARGUMENT;
    } else {
        struct memfit_acquire_options o = {
            .timeout_ms = srv->admission_timeout_ms, .cancelled = call_cancelled, .cancel_user = c};
        memfit_handle *h = NULL;
        st = memfit_manager_acquire_ex(srv->mgr, r.model_id, &o, &h);
        if (st == MEMFIT_OK) {
            bool loaded;
            uint64_t bytes = model_bytes(srv, r.model_id, &loaded);
            memfit_manager_release(h);
            char size[32];
            memfit_log(MEMFIT_LOG_INFO, "grpc: loadModel %s (%s, %s): %s in %.0f ms", r.model_id,
                       family, source, memfit_format_size(bytes, size, sizeof(size)),
                       (double)(memfit_now_ns() - start) / 1e6);
            mf_mm_size_encode(bytes, 0, &a->body);
            atomic_fetch_add_explicit(&srv->metrics.mm_loads[MF_MM_OK], 1, memory_order_relaxed);
        } else {
            bool cancelled = st == MEMFIT_E_CANCELLED || call_cancelled(c);
            atomic_fetch_add_explicit(
                &srv->metrics.mm_loads[cancelled ? MF_MM_CANCELLED : MF_MM_FAILED], 1,
                memory_order_relaxed);
            if (cancelled)
                answer_fail(a, GRPC_STATUS_CANCELLED, "loadModel %s: cancelled", r.model_id);
            else
                answer_status(a, st, "loadModel");
            memfit_log(MEMFIT_LOG_INFO, "grpc: loadModel %s failed: %s", r.model_id, a->message);
            if (!existed) /* nothing stays of a load that failed */
                mf_server_remove_model(srv, r.model_id);
            memfit_clear_error();
        }
    }
    load_end(g, &l);
done:
    memfit_free(source);
    mf_mm_model_request_free(&r);
}

static void h_unload_model(struct gcall *c, const uint8_t *msg, size_t len, struct answer *a)
{
    struct mf_mm_model_request r;
    if (!model_request(c, msg, len, false, &r, a))
        return;
    uint64_t start = memfit_now_ns();
    enum memfit_status st = unload_model(c->g, r.model_id);
    atomic_fetch_add_explicit(
        &c->g->srv->metrics.mm_unloads[st == MEMFIT_OK ? MF_MM_OK : MF_MM_FAILED], 1,
        memory_order_relaxed);
    if (st != MEMFIT_OK)
        answer_status(a, st, "unloadModel");
    else
        memfit_log(MEMFIT_LOG_INFO, "grpc: unloadModel %s in %.0f ms", r.model_id,
                   (double)(memfit_now_ns() - start) / 1e6);
    mf_mm_model_request_free(&r);
}

static void h_predict_size(struct gcall *c, const uint8_t *msg, size_t len, struct answer *a)
{
    struct mf_mm_model_request r;
    const char *family;
    char *source = NULL;
    if (!model_request(c, msg, len, true, &r, a))
        return;
    if (model_family(r.model_type, &family, a)) {
        struct memfit_engine_plan p;
        enum memfit_status st = model_source(r.model_path, &source);
        if (st == MEMFIT_OK)
            st = mf_server_plan_source(c->g->srv, r.model_id, family, source, &p);
        if (st != MEMFIT_OK)
            answer_status(a, st, "predictModelSize");
        else
            mf_mm_size_encode(memfit_budget_cost_total(&p.cost), 0, &a->body);
    }
    memfit_free(source);
    mf_mm_model_request_free(&r);
}

static void h_model_size(struct gcall *c, const uint8_t *msg, size_t len, struct answer *a)
{
    struct mf_mm_model_request r;
    if (!model_request(c, msg, len, false, &r, a))
        return;
    bool loaded;
    uint64_t bytes = model_bytes(c->g->srv, r.model_id, &loaded);
    if (!loaded)
        answer_fail(a, GRPC_STATUS_NOT_FOUND, "model %s is not loaded", r.model_id);
    else
        mf_mm_size_encode(bytes, 0, &a->body);
    mf_mm_model_request_free(&r);
}

/* ---- Inference: through the HTTP /v2 routes over loopback --------------------------------- */

/* Connects to the server's own HTTP port. */
static int http_connect(memfit_server *srv)
{
    const char *host = srv->host;
    if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    else if (strcmp(host, "::") == 0 || strcmp(host, "[::]") == 0)
        host = "::1";
    char h[64];
    size_t hl = strlen(host);
    if (hl >= 2 && host[0] == '[' && hl - 2 < sizeof(h)) {
        memcpy(h, host + 1, hl - 2);
        h[hl - 2] = '\0';
        host = h;
    }
    char port[8];
    snprintf(port, sizeof(port), "%u", (unsigned)srv->port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST}, *ai = NULL;
    if (getaddrinfo(host, port, &hints, &ai) != 0 || !ai)
        return -1;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    return fd;
}

static bool write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/*
 * One HTTP request to the server itself; *status and *body (NUL-terminated,
 * memfit_free) on success. The call's cancellation shuts the socket down,
 * which the route sees as its client gone.
 */
static enum memfit_status http_call(struct gcall *c, const char *method, const char *path,
                                    const char *body, size_t body_len, int *status, char **out,
                                    size_t *out_len)
{
    memfit_server *srv = c->g->srv;
    int fd = http_connect(srv);
    if (fd < 0)
        return memfit_fail(MEMFIT_E_IO, "cannot reach the server's HTTP port %u: %s",
                           (unsigned)srv->port, strerror(errno));
    atomic_store(&c->http_fd, fd);
    if (atomic_load(&c->cancelled))
        shutdown(fd, SHUT_RDWR);
    struct mf_text head = {0}, in = {0};
    mf_text_printf(&head, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n", method,
                   path);
    if (srv->api_key)
        mf_text_printf(&head, "Authorization: Bearer %s\r\n", srv->api_key);
    if (body)
        mf_text_printf(&head, "Content-Type: application/json\r\nContent-Length: %zu\r\n",
                       body_len);
    mf_text_puts(&head, "\r\n");
    enum memfit_status st = MEMFIT_OK;
    if (head.failed)
        st = MEMFIT_E_NOMEM;
    else if (!write_all(fd, head.data, head.len) || (body && !write_all(fd, body, body_len)))
        st = memfit_fail(MEMFIT_E_IO, "sending to the server's HTTP port: %s", strerror(errno));
    if (head.data)
        memset(head.data, 0, head.len); /* the API key */
    mf_text_free(&head);
    char buf[16384];
    while (st == MEMFIT_OK) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            st = memfit_fail(MEMFIT_E_IO, "reading the server's answer: %s", strerror(errno));
        if (n <= 0)
            break;
        if (in.len + (size_t)n > MAX_HTTP_ANSWER)
            st = memfit_fail(MEMFIT_E_RANGE, "the answer is larger than %llu bytes",
                             (unsigned long long)MAX_HTTP_ANSWER);
        else if (!mf_text_append(&in, buf, (size_t)n))
            st = MEMFIT_E_NOMEM;
    }
    atomic_store(&c->http_fd, -1);
    close(fd);
    if (st == MEMFIT_OK && atomic_load(&c->cancelled))
        st = memfit_fail(MEMFIT_E_CANCELLED, "the client cancelled the call");
    const char *end = in.data ? strstr(in.data, "\r\n\r\n") : NULL;
    if (st == MEMFIT_OK && (!end || sscanf(in.data, "HTTP/1.%*d %d", status) != 1))
        st = memfit_fail(MEMFIT_E_IO, "the server's HTTP answer has no status line");
    if (st != MEMFIT_OK) {
        mf_text_free(&in);
        return st;
    }
    size_t off = (size_t)(end + 4 - in.data);
    *out_len = in.len - off;
    memmove(in.data, in.data + off, *out_len);
    in.data[*out_len] = '\0';
    *out = in.data;
    return MEMFIT_OK;
}

/* The gRPC status of an HTTP error answer, its message from {"error": "..."}. */
static void http_error(int status, const char *body, struct answer *a)
{
    json_t *root = json_loads(body, 0, NULL);
    json_t *e = root ? json_object_get(root, "error") : NULL;
    const char *msg = json_is_string(e) ? json_string_value(e) : body;
    grpc_status_code code;
    switch (status) {
    case 400:
        code = GRPC_STATUS_INVALID_ARGUMENT;
        break;
    case 401:
        code = GRPC_STATUS_UNAUTHENTICATED;
        break;
    case 403:
        code = GRPC_STATUS_PERMISSION_DENIED;
        break;
    case 404:
        code = GRPC_STATUS_NOT_FOUND;
        break;
    case 413:
    case 429:
        code = GRPC_STATUS_RESOURCE_EXHAUSTED;
        break;
    case 501:
        code = GRPC_STATUS_UNIMPLEMENTED;
        break;
    case 503:
        code = strstr(msg, "memory") || strstr(msg, "budget") ? GRPC_STATUS_RESOURCE_EXHAUSTED
                                                              : GRPC_STATUS_UNAVAILABLE;
        break;
    default:
        code = GRPC_STATUS_INTERNAL;
    }
    answer_fail(a, code, "%s", msg);
    json_decref(root);
}

/* GETs `path`; its JSON on 200, else NULL with the answer failed. */
static json_t *http_get_json(struct gcall *c, const char *path, int *status, struct answer *a)
{
    char *body = NULL;
    size_t len = 0;
    enum memfit_status st = http_call(c, "GET", path, NULL, 0, status, &body, &len);
    if (st != MEMFIT_OK) {
        answer_status(a, st, path);
        return NULL;
    }
    json_t *root = NULL;
    if (*status != 200)
        http_error(*status, body, a);
    else if (!(root = json_loadb(body, len, 0, NULL)))
        answer_fail(a, GRPC_STATUS_INTERNAL, "%s: the answer is not JSON", path);
    memfit_free(body);
    return root;
}

/* The model a call names: ModelMesh's mm-model-id header, else the request's field. */
static char *model_of(struct gcall *c, char *field)
{
    char *header = metadata_value(c, MM_MODEL_ID_HEADER);
    if (header && header[0]) {
        memfit_free(field);
        return header;
    }
    memfit_free(header);
    return field;
}

/* "/v2/models/NAME" + suffix, or NULL with the answer failed (a name that is no model's). */
static char *model_path(const char *name, const char *suffix, struct answer *a)
{
    if (!name || !name[0] || strlen(name) >= MF_MODEL_NAME_MAX || strpbrk(name, "/?#% \r\n")) {
        answer_fail(a, GRPC_STATUS_INVALID_ARGUMENT, "model name '%s' is not a model's name",
                    name ? name : "");
        return NULL;
    }
    char *p = memfit_asprintf("/v2/models/%s%s", name, suffix);
    if (!p)
        answer_fail(a, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    return p;
}

static void h_server_live(struct gcall *c, struct answer *a)
{
    (void)c;
    mf_pb_put_varint(&a->body, 1, 1);
}

static void h_server_ready(struct gcall *c, struct answer *a)
{
    int status = 0;
    char *body = NULL;
    size_t len;
    if (http_call(c, "GET", "/v2/health/ready", NULL, 0, &status, &body, &len) == MEMFIT_OK &&
        status == 200)
        mf_pb_put_varint(&a->body, 1, 1);
    memfit_clear_error();
    memfit_free(body);
}

static void h_model_ready(struct gcall *c, const uint8_t *msg, size_t len, struct answer *a)
{
    char *name = NULL, *version = NULL;
    enum memfit_status st = mf_v2_name_request_parse(msg, len, &name, &version);
    if (st != MEMFIT_OK) {
        answer_status(a, st, "ModelReady");
        return;
    }
    name = model_of(c, name);
    char *path = model_path(name, "/ready", a);
    int status = 0;
    char *body = NULL;
    size_t n;
    if (path && (st = http_call(c, "GET", path, NULL, 0, &status, &body, &n)) != MEMFIT_OK)
        answer_status(a, st, "ModelReady");
    else if (path && status == 404)
        http_error(status, body, a);
    else if (path && status == 200)
        mf_pb_put_varint(&a->body, 1, 1);
    memfit_free(body);
    memfit_free(path);
    memfit_free(name);
    memfit_free(version);
}

static void h_server_metadata(struct gcall *c, struct answer *a)
{
    int status;
    json_t *root = http_get_json(c, "/v2", &status, a);
    if (!root)
        return;
    json_t *v, *x;
    size_t i;
    if (json_is_string(v = json_object_get(root, "name")))
        mf_pb_put_string(&a->body, 1, json_string_value(v));
    if (json_is_string(v = json_object_get(root, "version")))
        mf_pb_put_string(&a->body, 2, json_string_value(v));
    json_array_foreach(json_object_get(root, "extensions"), i, x)
    {
        if (json_is_string(x))
            mf_pb_put_string(&a->body, 3, json_string_value(x));
    }
    json_decref(root);
}

/* A TensorMetadata {name, datatype, shape} of a JSON tensor, as field `number`. */
static void put_tensor_metadata(struct mf_text *t, uint32_t number, const json_t *tensor)
{
    struct mf_text m = {0}, shape = {0};
    json_t *v;
    size_t i;
    if (json_is_string(v = json_object_get(tensor, "name")))
        mf_pb_put_string(&m, 1, json_string_value(v));
    if (json_is_string(v = json_object_get(tensor, "datatype")))
        mf_pb_put_string(&m, 2, json_string_value(v));
    json_array_foreach(json_object_get(tensor, "shape"), i, v)
    {
        mf_pb_put_raw_varint(&shape, (uint64_t)json_integer_value(v));
    }
    if (shape.len || shape.failed)
        mf_pb_put_bytes(&m, 3, shape.data, shape.len);
    if (shape.failed)
        m.failed = true;
    mf_text_free(&shape);
    if (m.failed)
        t->failed = true;
    else
        mf_pb_put_bytes(t, number, m.data, m.len);
    mf_text_free(&m);
}

static void h_model_metadata(struct gcall *c, const uint8_t *msg, size_t len, struct answer *a)
{
    char *name = NULL, *version = NULL;
    enum memfit_status st = mf_v2_name_request_parse(msg, len, &name, &version);
    if (st != MEMFIT_OK) {
        answer_status(a, st, "ModelMetadata");
        return;
    }
    name = model_of(c, name);
    char *path = model_path(name, "", a);
    int status;
    json_t *root = path ? http_get_json(c, path, &status, a) : NULL;
    if (root) {
        json_t *v, *x;
        size_t i;
        if (json_is_string(v = json_object_get(root, "name")))
            mf_pb_put_string(&a->body, 1, json_string_value(v));
        json_array_foreach(json_object_get(root, "versions"), i, x)
        {
            if (json_is_string(x))
                mf_pb_put_string(&a->body, 2, json_string_value(x));
        }
        if (json_is_string(v = json_object_get(root, "platform")))
            mf_pb_put_string(&a->body, 3, json_string_value(v));
        json_array_foreach(json_object_get(root, "inputs"), i, x)
            put_tensor_metadata(&a->body, 4, x);
        json_array_foreach(json_object_get(root, "outputs"), i, x)
            put_tensor_metadata(&a->body, 5, x);
        json_decref(root);
    }
    memfit_free(path);
    memfit_free(name);
    memfit_free(version);
}

/* A parameter as a JSON member. */
static void param_json(struct mf_text *t, const struct mf_v2_param *p)
{
    mf_text_json_string(t, p->key, strlen(p->key));
    mf_text_puts(t, ":");
    switch (p->kind) {
    case MF_V2_PARAM_BOOL:
        mf_text_puts(t, p->b ? "true" : "false");
        break;
    case MF_V2_PARAM_INT64:
        mf_text_printf(t, "%lld", (long long)p->i);
        break;
    case MF_V2_PARAM_UINT64:
        mf_text_printf(t, "%llu", (unsigned long long)p->u);
        break;
    case MF_V2_PARAM_DOUBLE:
        mf_text_printf(t, "%.17g", p->d);
        break;
    case MF_V2_PARAM_STRING:
    default:
        mf_text_json_string(t, p->s ? p->s : "", p->s ? strlen(p->s) : 0);
        break;
    }
}

/* The /v2 JSON of a ModelInferRequest: every element base64. */
static bool infer_json(const struct mf_v2_infer_request *q, size_t max_items, struct mf_text *t,
                       struct answer *a)
{
    if (q->n_raw && q->n_raw != q->n_inputs) {
        answer_fail(a, GRPC_STATUS_INVALID_ARGUMENT,
                    "raw_input_contents has %zu entries for %zu inputs", q->n_raw, q->n_inputs);
        return false;
    }
    mf_text_puts(t, "{");
    if (q->id) {
        mf_text_puts(t, "\"id\":");
        mf_text_json_string(t, q->id, strlen(q->id));
        mf_text_puts(t, ",");
    }
    if (q->n_params) {
        mf_text_puts(t, "\"parameters\":{");
        for (size_t i = 0; i < q->n_params; i++) {
            mf_text_puts(t, i ? "," : "");
            param_json(t, &q->params[i]);
        }
        mf_text_puts(t, "},");
    }
    mf_text_puts(t, "\"inputs\":[");
    for (size_t i = 0; i < q->n_inputs; i++) {
        const struct mf_v2_input *in = &q->inputs[i];
        const char *type = in->datatype ? in->datatype : "";
        if (strcmp(type, "BYTES") != 0) {
            answer_fail(a, GRPC_STATUS_INVALID_ARGUMENT,
                        "input '%s' has datatype '%.32s'; memfit's models take BYTES (images, "
                        "text)",
                        in->name ? in->name : "", type);
            return false;
        }
        struct mf_v2_bytes *items = in->elements, *split = NULL;
        size_t n = in->n_elements;
        if (q->n_raw) {
            enum memfit_status st = mf_v2_split_raw_bytes(&q->raw[i], max_items, &split, &n);
            if (st != MEMFIT_OK) {
                answer_status(a, st, "ModelInfer");
                return false;
            }
            items = split;
        }
        mf_text_puts(t, i ? ",{\"name\":" : "{\"name\":");
        mf_text_json_string(t, in->name ? in->name : "", in->name ? strlen(in->name) : 0);
        mf_text_puts(t, ",\"datatype\":\"BYTES\",\"shape\":[");
        if (in->n_shape == 0)
            mf_text_printf(t, "%zu", n);
        for (size_t d = 0; d < in->n_shape; d++)
            mf_text_printf(t, d ? ",%lld" : "%lld", (long long)in->shape[d]);
        mf_text_puts(t, "],\"parameters\":{\"content_type\":\"base64\"},\"data\":[");
        for (size_t k = 0; k < n; k++) {
            mf_text_puts(t, k ? ",\"" : "\"");
            mf_text_base64(t, items[k].data, items[k].len);
            mf_text_puts(t, "\"");
        }
        mf_text_puts(t, "]}");
        memfit_free(split);
    }
    mf_text_puts(t, "]");
    if (q->n_outputs) {
        mf_text_puts(t, ",\"outputs\":[");
        for (size_t i = 0; i < q->n_outputs; i++) {
            mf_text_puts(t, i ? ",{\"name\":" : "{\"name\":");
            mf_text_json_string(t, q->outputs[i], strlen(q->outputs[i]));
            mf_text_puts(t, "}");
        }
        mf_text_puts(t, "]");
    }
    mf_text_puts(t, "}");
    if (t->failed)
        answer_fail(a, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory building the request");
    return !t->failed;
}

/* An InferParameter from a JSON value. */
static void put_json_param(struct mf_text *t, uint32_t number, const char *key, json_t *v)
{
    struct mf_v2_param p = {.key = (char *)key};
    if (json_is_boolean(v)) {
        p.kind = MF_V2_PARAM_BOOL;
        p.b = json_is_true(v);
    } else if (json_is_integer(v)) {
        p.kind = MF_V2_PARAM_INT64;
        p.i = json_integer_value(v);
    } else if (json_is_real(v)) {
        p.kind = MF_V2_PARAM_DOUBLE;
        p.d = json_real_value(v);
    } else if (json_is_string(v)) {
        p.kind = MF_V2_PARAM_STRING;
        p.s = (char *)json_string_value(v);
    } else {
        return;
    }
    mf_v2_put_param(t, number, &p);
}

/* The ModelInferResponse of a /v2 JSON answer: FP32 data as raw_output_contents
 * (little-endian), BYTES as contents.bytes_contents. */
static void infer_answer(json_t *root, struct answer *a)
{
    struct mf_text *t = &a->body, raw = {0};
    json_t *v, *out;
    const char *key;
    size_t i, k;
    if (json_is_string(v = json_object_get(root, "model_name")))
        mf_pb_put_string(t, 1, json_string_value(v));
    if (json_is_string(v = json_object_get(root, "model_version")))
        mf_pb_put_string(t, 2, json_string_value(v));
    if (json_is_string(v = json_object_get(root, "id")))
        mf_pb_put_string(t, 3, json_string_value(v));
    json_object_foreach(json_object_get(root, "parameters"), key, v)
    {
        put_json_param(t, 4, key, v);
    }
    bool any_raw = false;
    json_array_foreach(json_object_get(root, "outputs"), i, out)
    {
        struct mf_text m = {0}, shape = {0}, contents = {0};
        const char *type = json_string_value(json_object_get(out, "datatype"));
        if (json_is_string(v = json_object_get(out, "name")))
            mf_pb_put_string(&m, 1, json_string_value(v));
        mf_pb_put_string(&m, 2, type ? type : "");
        json_array_foreach(json_object_get(out, "shape"), k, v)
        {
            mf_pb_put_raw_varint(&shape, (uint64_t)json_integer_value(v));
        }
        mf_pb_put_bytes(&m, 3, shape.data ? shape.data : "", shape.len);
        json_t *data = json_object_get(out, "data");
        if (type && strcmp(type, "FP32") == 0) {
            any_raw = true;
            struct mf_text floats = {0};
            json_array_foreach(data, k, v)
            {
                float f = (float)json_number_value(v);
                uint32_t bits;
                memcpy(&bits, &f, sizeof(bits));
                char le[4] = {(char)bits, (char)(bits >> 8), (char)(bits >> 16),
                              (char)(bits >> 24)};
                mf_text_append(&floats, le, sizeof(le));
            }
            mf_pb_put_bytes(&raw, 6, floats.data ? floats.data : "", floats.len);
            if (floats.failed)
                raw.failed = true;
            mf_text_free(&floats);
        } else {
            json_array_foreach(data, k, v)
            {
                if (json_is_string(v))
                    mf_pb_put_bytes(&contents, 8, json_string_value(v), json_string_length(v));
            }
            mf_pb_put_bytes(&m, 5, contents.data ? contents.data : "", contents.len);
        }
        if (shape.failed || contents.failed || m.failed)
            t->failed = true;
        mf_pb_put_bytes(t, 5, m.data ? m.data : "", m.len);
        mf_text_free(&shape);
        mf_text_free(&contents);
        mf_text_free(&m);
    }
    if (any_raw) {
        if (raw.failed)
            t->failed = true;
        else
            mf_text_append(t, raw.data ? raw.data : "", raw.len);
    }
    mf_text_free(&raw);
}

static void h_model_infer(struct gcall *c, const uint8_t *msg, size_t len, struct answer *a)
{
    memfit_server *srv = c->g->srv;
    memfit_budget *budget = memfit_manager_budget(srv->mgr);
    /* The message, its JSON (base64: 4/3) and the answer, held for the call. */
    uint64_t need = (uint64_t)len * 3 + 65536;
    memfit_reservation *res = NULL;
    enum memfit_status st =
        memfit_budget_reserve(budget, MEMFIT_BUDGET_WORKSPACE, need, "requests", 0, &res);
    if (st != MEMFIT_OK) {
        answer_status(a, st, "ModelInfer");
        a->code = GRPC_STATUS_RESOURCE_EXHAUSTED;
        return;
    }
    struct mf_v2_infer_request q;
    struct mf_text json = {0};
    char *path = NULL, *body = NULL;
    st = mf_v2_infer_request_parse(msg, len, srv->opt.max_inputs, &q);
    if (st != MEMFIT_OK) {
        answer_status(a, st, "ModelInfer");
        goto out;
    }
    q.model_name = model_of(c, q.model_name);
    if (!(path = model_path(q.model_name, "/infer", a)) ||
        !infer_json(&q, srv->opt.max_inputs, &json, a))
        goto free_q;
    int status = 0;
    size_t n;
    st = http_call(c, "POST", path, json.data, json.len, &status, &body, &n);
    mf_text_free(&json);
    if (st != MEMFIT_OK) {
        answer_status(a, st, "ModelInfer");
        goto free_q;
    }
    if (status != 200) {
        http_error(status, body, a);
        goto free_q;
    }
    json_t *root = json_loadb(body, n, 0, NULL);
    if (!root)
        answer_fail(a, GRPC_STATUS_INTERNAL, "ModelInfer: the answer is not JSON");
    else
        infer_answer(root, a);
    json_decref(root);
free_q:
    mf_v2_infer_request_free(&q);
out:
    mf_text_free(&json);
    memfit_free(path);
    memfit_free(body);
    memfit_budget_release(res);
}

/* ---- Dispatch -------------------------------------------------------------------------- */

enum method {
    M_RUNTIME_STATUS,
    M_LOAD,
    M_UNLOAD,
    M_PREDICT,
    M_SIZE,
    M_LIVE,
    M_READY,
    M_MODEL_READY,
    M_SERVER_METADATA,
    M_MODEL_METADATA,
    M_INFER,
    M_UNKNOWN
};
_Static_assert(M_UNKNOWN + 1 == MF_GRPC_METHODS, "metrics.h counts every method");

const char *const mf_grpc_method_names[MF_GRPC_METHODS] = {
    "/mmesh.ModelRuntime/runtimeStatus",
    "/mmesh.ModelRuntime/loadModel",
    "/mmesh.ModelRuntime/unloadModel",
    "/mmesh.ModelRuntime/predictModelSize",
    "/mmesh.ModelRuntime/modelSize",
    "/inference.GRPCInferenceService/ServerLive",
    "/inference.GRPCInferenceService/ServerReady",
    "/inference.GRPCInferenceService/ModelReady",
    "/inference.GRPCInferenceService/ServerMetadata",
    "/inference.GRPCInferenceService/ModelMetadata",
    "/inference.GRPCInferenceService/ModelInfer",
    NULL,
};

static enum method method_of(const grpc_slice *s)
{
    size_t n = GRPC_SLICE_LENGTH(*s);
    for (size_t i = 0; i < M_UNKNOWN; i++)
        if (strlen(mf_grpc_method_names[i]) == n &&
            memcmp(GRPC_SLICE_START_PTR(*s), mf_grpc_method_names[i], n) == 0)
            return (enum method)i;
    return M_UNKNOWN;
}

/* Runs a call's handler and sends its answer (on the call's own thread). */
static void handle(struct gcall *c)
{
    uint64_t start = memfit_now_ns();
    struct mf_metrics *metrics = &c->g->srv->metrics; /* c may be gone once answered */
    struct answer a = {.code = GRPC_STATUS_OK};
    enum method m = method_of(&c->details.method);
    grpc_slice whole = {0};
    bool have = false;
    if (c->recv) {
        grpc_byte_buffer_reader rd;
        if (mf_grpc.byte_buffer_reader_init(&rd, c->recv)) {
            whole = mf_grpc.byte_buffer_reader_readall(&rd);
            mf_grpc.byte_buffer_reader_destroy(&rd);
            have = true;
        }
    }
    const uint8_t *msg = have ? GRPC_SLICE_START_PTR(whole) : (const uint8_t *)"";
    size_t len = have ? GRPC_SLICE_LENGTH(whole) : 0;
    if (!c->recv && m != M_UNKNOWN)
        answer_fail(&a, GRPC_STATUS_INVALID_ARGUMENT, "the call carries no message");
    else
        switch (m) {
        case M_RUNTIME_STATUS:
            h_runtime_status(c, &a);
            break;
        case M_LOAD:
            h_load_model(c, msg, len, &a);
            break;
        case M_UNLOAD:
            h_unload_model(c, msg, len, &a);
            break;
        case M_PREDICT:
            h_predict_size(c, msg, len, &a);
            break;
        case M_SIZE:
            h_model_size(c, msg, len, &a);
            break;
        case M_LIVE:
            h_server_live(c, &a);
            break;
        case M_READY:
            h_server_ready(c, &a);
            break;
        case M_MODEL_READY:
            h_model_ready(c, msg, len, &a);
            break;
        case M_SERVER_METADATA:
            h_server_metadata(c, &a);
            break;
        case M_MODEL_METADATA:
            h_model_metadata(c, msg, len, &a);
            break;
        case M_INFER:
            h_model_infer(c, msg, len, &a);
            break;
        case M_UNKNOWN:
        default:
            answer_fail(&a, GRPC_STATUS_UNIMPLEMENTED, "memfit serves no method %.*s",
                        (int)GRPC_SLICE_LENGTH(c->details.method),
                        (const char *)GRPC_SLICE_START_PTR(c->details.method));
            break;
        }
    if (have)
        mf_grpc.slice_unref(whole);
    memfit_clear_error();
    send_answer(c, &a);
    mf_metrics_observe_grpc(metrics, m, (unsigned)a.code, memfit_now_ns() - start);
    mf_text_free(&a.body);
}

static void *handler_main(void *arg)
{
    struct gcall *c = arg;
    struct mf_grpc *g = c->g;
    atomic_fetch_add(&g->srv->active, 1);
    handle(c);
    atomic_fetch_sub(&g->srv->active, 1);
    pthread_mutex_lock(&g->lock);
    g->n_handlers--;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
    return NULL;
}

/* A call's message arrived: its handler gets a thread (or a refusal). */
static void dispatch(struct gcall *c)
{
    struct mf_grpc *g = c->g;
    pthread_mutex_lock(&g->lock);
    bool room = g->n_handlers < g->srv->opt.max_connections;
    if (room)
        g->n_handlers++;
    pthread_mutex_unlock(&g->lock);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 1024 * 1024);
    bool started = room && pthread_create(&t, &attr, handler_main, c) == 0;
    pthread_attr_destroy(&attr);
    if (started)
        return;
    if (room) {
        pthread_mutex_lock(&g->lock);
        g->n_handlers--;
        pthread_mutex_unlock(&g->lock);
    }
    struct answer a = {0};
    answer_fail(&a, GRPC_STATUS_RESOURCE_EXHAUSTED,
                "%u calls in progress (max_connections): retry later", g->srv->opt.max_connections);
    mf_metrics_observe_grpc(&g->srv->metrics, method_of(&c->details.method), (unsigned)a.code, 0);
    send_answer(c, &a); /* c may be gone after it */
}

/* A new call: read its message, and learn when it ends (or is cancelled). */
static void call_started(struct gcall *c)
{
    atomic_store(&c->refs, 2);
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->close_cancelled;
    if (mf_grpc.call_start_batch(c->call, &op, 1, &c->t_close, NULL) != GRPC_CALL_OK)
        call_unref(c);
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &c->recv;
    if (mf_grpc.call_start_batch(c->call, &op, 1, &c->t_recv, NULL) != GRPC_CALL_OK)
        call_unref(c);
}

static void *poller_main(void *arg)
{
    struct mf_grpc *g = arg;
    gpr_timespec forever = {INT64_MAX, 0, GPR_CLOCK_REALTIME};
    for (;;) {
        grpc_event ev = mf_grpc.cq_next(g->cq, forever, NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        struct gtag *t = ev.tag;
        struct gcall *c = t->call;
        switch (t->kind) {
        case TAG_SHUTDOWN:
            pthread_mutex_lock(&g->lock);
            g->shut = true;
            pthread_cond_broadcast(&g->cond);
            pthread_mutex_unlock(&g->lock);
            break;
        case TAG_NEW:
            if (!ev.success) { /* the server is shutting down */
                call_unref(c);
                break;
            }
            post_new(g);
            call_started(c);
            break;
        case TAG_RECV:
            dispatch(c);
            break;
        case TAG_CLOSE: {
            if (c->close_cancelled) {
                atomic_store(&c->cancelled, true);
                int fd = atomic_load(&c->http_fd);
                if (fd >= 0)
                    shutdown(fd, SHUT_RDWR); /* the HTTP route sees its client gone */
            }
            call_unref(c);
            break;
        }
        case TAG_SEND:
            call_unref(c);
            break;
        }
    }
    return NULL;
}

/* ---- Life ---------------------------------------------------------------------------------- */

enum memfit_status mf_grpc_start(memfit_server *srv, const char *address, struct mf_grpc **out)
{
    enum memfit_status st = mf_grpc_load();
    if (st != MEMFIT_OK)
        return st;
    struct mf_grpc *g = memfit_calloc_in(MEMFIT_ALLOC_SERVER, 1, sizeof(*g));
    if (!g)
        return MEMFIT_E_NOMEM;
    g->srv = srv;
    pthread_mutex_init(&g->lock, NULL);
    mf_server_cond_init(&g->cond);
    g->t_shutdown.kind = TAG_SHUTDOWN;
    mf_grpc.init();
    g->inited = true;
    /* Messages as large as HTTP bodies. */
    grpc_arg args[2] = {
        {.type = GRPC_ARG_INTEGER,
         .key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
         .value.integer =
             srv->opt.max_body_bytes > INT32_MAX ? INT32_MAX : (int)srv->opt.max_body_bytes},
        {.type = GRPC_ARG_INTEGER,
         .key = (char *)GRPC_ARG_MAX_SEND_MESSAGE_LENGTH,
         .value.integer = INT32_MAX},
    };
    grpc_channel_args ca = {.num_args = 2, .args = args};
    g->cq = mf_grpc.cq_create_for_next(NULL);
    g->server = g->cq ? mf_grpc.server_create(&ca, NULL) : NULL;
    if (!g->server) {
        mf_grpc_stop(g);
        return memfit_fail(MEMFIT_E_NOMEM, "grpc: cannot create the server");
    }
    mf_grpc.server_register_cq(g->server, g->cq, NULL);
    grpc_server_credentials *creds = mf_grpc.insecure_server_credentials_create();
    int port = mf_grpc.server_add_http2_port(g->server, address, creds);
    mf_grpc.server_credentials_release(creds);
    if (port <= 0) {
        mf_grpc_stop(g);
        return memfit_fail(MEMFIT_E_IO,
                           "cannot listen for gRPC on %s (in use, or not HOST:PORT "
                           "or unix:PATH)",
                           address);
    }
    g->port = strncmp(address, "unix:", 5) == 0 ? 0 : (uint16_t)port;
    mf_grpc.server_start(g->server);
    post_new(g);
    if (pthread_create(&g->poller, NULL, poller_main, g) != 0) {
        mf_grpc_stop(g);
        return memfit_fail(MEMFIT_E_NOMEM, "grpc: cannot start its thread");
    }
    g->poller_started = true;
    memfit_log(MEMFIT_LOG_INFO,
               "grpc: listening on %s%s%u (ModelMesh model runtime and KServe v2 inference; "
               "libgrpc %s)",
               address, g->port ? ", port " : "", (unsigned)g->port, mf_grpc.version_string());
    *out = g;
    return MEMFIT_OK;
}

uint16_t mf_grpc_port(const struct mf_grpc *g)
{
    return g->port;
}

void mf_grpc_quiesce(struct mf_grpc *g)
{
    if (!g || atomic_exchange(&g->quiesced, true) || !g->server)
        return;
    mf_grpc.server_shutdown_and_notify(g->server, g->cq, &g->t_shutdown);
}

void mf_grpc_stop(struct mf_grpc *g)
{
    if (!g)
        return;
    if (g->server && g->poller_started) {
        mf_grpc_quiesce(g);
        mf_grpc.server_cancel_all_calls(g->server);
        pthread_mutex_lock(&g->lock);
        while (!g->shut || g->n_handlers > 0 || g->n_calls > 0)
            pthread_cond_wait(&g->cond, &g->lock);
        pthread_mutex_unlock(&g->lock);
    }
    if (g->cq)
        mf_grpc.cq_shutdown(g->cq);
    if (g->poller_started)
        pthread_join(g->poller, NULL);
    else if (g->cq) { /* drain what a failed start queued */
        gpr_timespec forever = {INT64_MAX, 0, GPR_CLOCK_REALTIME};
        while (mf_grpc.cq_next(g->cq, forever, NULL).type != GRPC_QUEUE_SHUTDOWN)
            ;
    }
    if (g->server)
        mf_grpc.server_destroy(g->server);
    if (g->cq)
        mf_grpc.cq_destroy(g->cq);
    if (g->inited)
        mf_grpc.shutdown();
    pthread_cond_destroy(&g->cond);
    pthread_mutex_destroy(&g->lock);
    memfit_free(g);
}

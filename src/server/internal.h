/*
 * The server's internal state, shared by server.c (life, models, reload),
 * routes.c (the HTTP handlers) and conn.c (connections: deadlines, limits).
 */
#ifndef MF_SERVER_INTERNAL_H
#define MF_SERVER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/socket.h>

#include "core/json.h"
#include "memfit/monitor.h"
#include "memfit/server.h"
#include "memfit/sys.h"
#include "server/metrics.h"
#include "server/mhd.h"
#include "server/request.h"

/* ---- Connections (conn.c) ------------------------------------------------------ */

/* Where a connection's current request stands; its deadlines depend on it. */
enum mf_conn_phase {
    MF_CONN_HEAD = 0,   /* waiting for a request line and headers */
    MF_CONN_BODY = 1,   /* head received, reading the body */
    MF_CONN_ANSWER = 2, /* request received: answering (no deadline, streams included) */
};

/* Which deadline a connection missed. */
enum mf_conn_cut {
    MF_CONN_CUT_NONE = 0,
    MF_CONN_CUT_HEADER = 1,  /* head not complete within header_timeout */
    MF_CONN_CUT_REQUEST = 2, /* head and body not complete within request_timeout */
};

/* What may happen to a request whose head just arrived. */
enum mf_conn_verdict {
    MF_CONN_SERVE = 0,
    MF_CONN_CLIENT_LIMIT = 1, /* its connection is beyond its client's limit: 429 */
    MF_CONN_BUSY = 2,         /* max_connections requests in progress: 503 */
};

struct mf_conn_limits {
    uint64_t header_timeout_ns;  /* 0: none */
    uint64_t request_timeout_ns; /* 0: none */
    unsigned max_per_client;     /* connections of one client address; 0: no limit */
};

/* The head deadline of a connection beyond its client's limit (if
 * header_timeout is not shorter): its answer would be a 429, so trickling
 * ones die fast. */
#define MF_CONN_OVER_LIMIT_HEADER_NS (2ull * 1000000000u)

struct mf_conn;
struct mf_conn_client;

/* The open connections: each one's client and deadlines. */
struct mf_conns {
    pthread_mutex_t lock; /* guards everything but the counters, and every record */
    pthread_cond_t wake;  /* the watchdog's sleep; signalled to stop it */
    struct mf_conn *head;
    struct mf_conn_client **buckets; /* clients by address hash */
    /* Records made at start, one of each per connection libmicrohttpd may
     * hold: accepting a connection allocates nothing (the heap is used only
     * if they run out). */
    struct mf_conn *conn_pool, *free_conns;
    struct mf_conn_client *client_pool, *free_clients;
    size_t pool_size;
    size_t n_buckets; /* a power of two */
    size_t n_open;
    size_t n_peak; /* the most open since the last heap trim */
    uint64_t n_cut_header, n_cut_request;
    struct mf_conn_limits limits;
    pthread_t watchdog;
    bool watchdog_started, stop;
    _Atomic uint64_t n_refused_client, n_refused_busy; /* since the last log line */
};

/* Initialises the table (E_NOMEM; mf_conns_destroy in every case). `max_open`
 * sizes the hash of clients and the pools of records. */
enum memfit_status mf_conns_init(struct mf_conns *t, const struct mf_conn_limits *limits,
                                 unsigned max_open);
void mf_conns_destroy(struct mf_conns *t);

/* Records a connection from `addr` on socket `fd`, counted for its client
 * (an IPv6 address counts as its /64); marked over its client's limit when
 * the count passes limits.max_per_client. NULL when out of memory (nothing
 * changed). */
struct mf_conn *mf_conns_open(struct mf_conns *t, const struct sockaddr *addr, int fd,
                              uint64_t now_ns);
/* Removes and frees it (NULL: no-op); its socket must still be open. */
void mf_conns_close(struct mf_conns *t, struct mf_conn *c);
/* Moves its request to `phase` (NULL: no-op); MF_CONN_HEAD (a request
 * finished) restarts the head clock. */
void mf_conns_mark(struct mf_conns *t, struct mf_conn *c, enum mf_conn_phase phase,
                   uint64_t now_ns);
/* Whether it was over its client's limit when accepted; *n_client: the client's open connections.
 */
bool mf_conns_over_limit(struct mf_conns *t, struct mf_conn *c, unsigned *n_client);
/* It was refused and closes after its answer: it stops counting for its
 * client now rather than when libmicrohttpd gets to clean it up (a client
 * that reconnects at once would otherwise meet its own closed connections
 * and be refused again). NULL: no-op. */
void mf_conns_release(struct mf_conns *t, struct mf_conn *c);
/* Its client's address as text (valid while it is open). */
const char *mf_conn_address(const struct mf_conn *c);
/* The deadline missed by a request in `phase` for `elapsed_ns` since its clock started. */
enum mf_conn_cut mf_conn_deadline(const struct mf_conn_limits *limits, enum mf_conn_phase phase,
                                  bool over_limit, uint64_t elapsed_ns);
/* The connections open, and those cut by each deadline so far (/metrics). */
void mf_conns_counts(struct mf_conns *t, uint64_t *n_open, uint64_t *n_cut_header,
                     uint64_t *n_cut_request);
/* Shuts down (SHUT_RDWR) every connection past a deadline at `now_ns`,
 * logging one line each; returns how many. */
size_t mf_conns_sweep(struct mf_conns *t, uint64_t now_ns);

/* The connections libmicrohttpd accepts: 2 x max_connections, so that those
 * beyond max_connections get an answer (503) rather than a reset. */
unsigned mf_server_connection_cap(const struct memfit_server_options *o);
/* MHD_OPTION_NOTIFY_CONNECTION: records (STARTED) and forgets (CLOSED). */
void mf_server_on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                             enum MHD_ConnectionNotificationCode code);
/* Marks the request of `conn` (routes.c: head seen, body received, finished). */
void mf_server_conn_mark(memfit_server *srv, struct MHD_Connection *conn, enum mf_conn_phase phase);
/* The verdict on a request whose head arrived on `conn`, with the message of
 * a refusal in `msg`. /health, /ready and /metrics are always served. */
enum mf_conn_verdict mf_server_conn_admit(memfit_server *srv, struct MHD_Connection *conn,
                                          enum mf_route route, char *msg, size_t cap);
/* Starts and stops the watchdog (every 250 ms: the deadlines; every 10 s:
 * one line counting the refusals above). Stop is idempotent. */
enum memfit_status mf_server_conns_start(memfit_server *srv);
void mf_server_conns_stop(memfit_server *srv);

/* One model as the server knows it: who runs it and the files it comes from. */
struct srv_model {
    char *name;
    char *signature; /* the manifest fields; a reload replaces the model when it changes */
    memfit_engine_model *model; /* its family, sources and plan */
    char **files;               /* local source files (page cache cleanup) */
    size_t n_files;
    bool from_manifest;
    bool dynamic;     /* added at run time (gRPC loadModel): a reload keeps it */
    bool kept;        /* reload scratch */
    int fetch_cancel; /* MEMFIT_FETCH_CANCEL_DISCARD: dropped, its download stops and is deleted */
    struct srv_model *next;
};

/* Recent manager events, for the event stream and the dashboard. */
#define MF_SERVER_EVENTS 64

struct srv_event {
    uint64_t seq; /* 0: empty */
    char *json;
};

struct memfit_server {
    struct memfit_server_options opt; /* strings point at the copies below */
    char *host, *manifest_path, *api_key;
    char **sources;
    size_t n_sources;
    unsigned sources_parallel;           /* the quick-start models' max_concurrency */
    char **allow_hosts, **allow_origins; /* copies of the options' lists */
    size_t n_allow_hosts, n_allow_origins;
    bool loopback; /* bound to a loopback address: Host headers are checked */
    memfit_manager *mgr;
    /* The manifest read last (models added at run time take its cache_dir);
     * replaced by a reload, under reload_lock. */
    struct memfit_manifest *manifest;
    struct mf_grpc *grpc; /* the gRPC front end (grpc.c); NULL when off */
    struct MHD_Daemon *daemon;
    uint16_t port;
    uint64_t start_ns, start_wall_ns;
    int64_t admission_timeout_ms; /* the manager's, resolved: work beyond a plan waits as long */

    /* Guards models, graveyard, the event ring, reload counters; `cond`
     * signals new events and shutdown. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_mutex_t reload_lock; /* one reload at a time */
    struct srv_model *models, *graveyard;
    pthread_t check_thread; /* plans the models once after start (check_models_main) */
    bool check_started;
    struct srv_event events[MF_SERVER_EVENTS];
    uint64_t event_seq;
    uint64_t reloads, reload_failures;

    struct mf_metrics metrics;
    struct mf_conns conns;
    _Atomic unsigned active;   /* requests in progress */
    _Atomic unsigned probes;   /* of them, probes (mf_route_is_probe): never refused, not counted */
    _Atomic unsigned admitted; /* model requests waiting or running (max_queue) */
    _Atomic unsigned waiting, running;
    _Atomic bool stopping;   /* no new streams; event streams end */
    _Atomic bool draining;   /* not ready, still serving (memfit_server_drain) */
    _Atomic bool cancel_all; /* the grace period is over */

    pthread_mutex_t sample_lock;
    memfit_sampler *sampler;
    struct memfit_sample *raw_sample;
    struct mf_mem_sample sample;
    uint64_t sampled_ns;
    enum memfit_level gpu_level[MEMFIT_GPU_MAX_DEVICES]; /* per device, judged each sample */

    pthread_mutex_t gpu_lock; /* guards gpu: a memfit_gpu is not thread-safe */
    memfit_gpu *gpu;          /* /api/memory's NVML session: opened on its first use, kept */
};

/* /health, /ready, /metrics and their /v2/health twins: always answered, and not counted against
 * max_connections, so that load never fails a probe and probes never make
 * the server refuse work. */
static inline bool mf_route_is_probe(enum mf_route route)
{
    return route == MF_ROUTE_HEALTH || route == MF_ROUTE_READY || route == MF_ROUTE_METRICS ||
           route == MF_ROUTE_V2_LIVE || route == MF_ROUTE_V2_READY;
}

/* The model named `name` (lock held), or NULL. */
struct srv_model *mf_server_find_model(memfit_server *srv, const char *name);

/* ---- Models added at run time (the gRPC model runtime) ----------------------------- */

/*
 * Adds and registers model `name` from one `source` (a path or source URI)
 * of family `family` ("auto": detected from its header), pinned (the
 * budget's eviction leaves it alone: whoever added it unloads it) and never
 * unloaded by keep_alive. *existed: a dynamic model of that name and source
 * was there already (nothing changed). E_EXISTS for a model of that name
 * from elsewhere or another source; memfit_engine_model_create's failures.
 */
enum memfit_status mf_server_add_model(memfit_server *srv, const char *name, const char *family,
                                       const char *source, bool *existed);

/*
 * Removes a dynamic model: stops its download, unregisters it (unloaded
 * once idle) and keeps its record in the graveyard until the manager
 * releases it (on_released). E_NOT_FOUND when there is no dynamic model of
 * that name.
 */
enum memfit_status mf_server_remove_model(memfit_server *srv, const char *name);

/* Plans a model from `source` without registering or loading it (a header
 * read, no download). Failures as memfit_engine_model_create/plan. */
enum memfit_status mf_server_plan_source(memfit_server *srv, const char *name, const char *family,
                                         const char *source, struct memfit_engine_plan *out);

/* ---- gRPC (grpc.c) ------------------------------------------------------------------- */

struct mf_grpc;

/* Starts the gRPC front end on `address` ("HOST:PORT" or "unix:PATH");
 * E_UNSUPPORTED when libgrpc is missing, E_IO when it cannot listen. */
enum memfit_status mf_grpc_start(memfit_server *srv, const char *address, struct mf_grpc **out);
/* The port it listens on (0 for a unix socket). */
uint16_t mf_grpc_port(const struct mf_grpc *g);
/* Stops taking calls (shutdown's first step); idempotent; NULL: no-op. */
void mf_grpc_quiesce(struct mf_grpc *g);
/* Cancels the calls still running, waits for them and frees everything; NULL: no-op. */
void mf_grpc_stop(struct mf_grpc *g);

/* A condition variable whose timed waits take CLOCK_MONOTONIC (memfit_now_ns) times. */
void mf_server_cond_init(pthread_cond_t *cond);

/* A memory reading at most 0.5 s old. */
void mf_server_sample(memfit_server *srv, struct mf_mem_sample *out);

/* /api/memory's report of this process (no top list). With --gpu its GPUs
 * are read through srv->gpu, one NVML session opened (dlopen'd) on the first
 * call and kept until memfit_server_destroy; calls take turns on it.
 * memfit_report_collect's errors. */
enum memfit_status mf_server_report(memfit_server *srv, struct memfit_report *out);

/* libmicrohttpd callbacks (routes.c). */
enum MHD_Result mf_server_on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                     const char *method, const char *version,
                                     const char *upload_data, size_t *upload_data_size,
                                     void **con_cls);
void mf_server_on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                            enum MHD_RequestTerminationCode toe);

/* The dashboard page (dashboard.c). */
extern const char mf_dashboard_html[];
extern const size_t mf_dashboard_html_len;

#endif

/*
 * The server's internal state, shared by server.c (life, models, reload),
 * routes.c (the HTTP handlers) and events.c (the event stream).
 */
#ifndef MF_SERVER_INTERNAL_H
#define MF_SERVER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "core/json.h"
#include "memfit/monitor.h"
#include "memfit/server.h"
#include "memfit/sys.h"
#include "server/metrics.h"
#include "server/mhd.h"
#include "server/request.h"

/* One model as the server knows it: who runs it and the files it comes from. */
struct srv_model {
    char *name;
    char *signature; /* the manifest fields; a reload replaces the model when it changes */
    memfit_engine_model *model; /* its family, sources and plan */
    char **files;               /* local source files (page cache cleanup) */
    size_t n_files;
    bool from_manifest;
    bool kept; /* reload scratch */
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
    char **allow_hosts, **allow_origins; /* copies of the options' lists */
    size_t n_allow_hosts, n_allow_origins;
    bool loopback; /* bound to a loopback address: Host headers are checked */
    memfit_manager *mgr;
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
    _Atomic unsigned active;   /* requests in progress */
    _Atomic unsigned admitted; /* model requests waiting or running (max_queue) */
    _Atomic unsigned waiting, running;
    _Atomic bool stopping;   /* no new streams; event streams end */
    _Atomic bool cancel_all; /* the grace period is over */

    pthread_mutex_t sample_lock;
    memfit_sampler *sampler;
    struct memfit_sample *raw_sample;
    struct mf_mem_sample sample;
    uint64_t sampled_ns;
};

/* The model named `name` (lock held), or NULL. */
struct srv_model *mf_server_find_model(memfit_server *srv, const char *name);

/* A memory reading at most 0.5 s old. */
void mf_server_sample(memfit_server *srv, struct mf_mem_sample *out);

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

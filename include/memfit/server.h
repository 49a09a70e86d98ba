/*
 * memfit server: the HTTP daemon behind `memfit serve`.
 *
 * One server owns one manager (include/memfit/manager.h) built from a
 * manifest and/or model files named on the command line, and answers:
 *   POST /v1/embeddings            OpenAI embeddings (images as data URLs)
 *   POST /api/segment              SAM masks from prompts or automatic
 *   GET  /v1/models                OpenAI model list
 *   GET  /api/models               model states, bytes, last use
 *   POST /api/models/{name}/load   load now;  .../unload: unload now
 *   GET  /api/memory               the `memfit report` JSON plus the budget
 *   POST /api/cleanup              unload idle models, trim the heap, drop the
 *                                  page cache of unloaded weight files
 *   GET  /api/events               server-sent events: samples and model events
 *   GET  /health, /ready           liveness, readiness
 *   GET  /metrics                  Prometheus text format 0.0.4
 *   GET  /                         the dashboard page
 * Every error is {"error": {"message", "type", "code"}} (docs/server.md).
 *
 * Models are made, planned, fetched and run through the engines layer
 * (memfit/engines.h): the server itself depends on no family. A model whose
 * family is unknown is an error at start (or at a reload) naming the
 * families this build has.
 *
 * Threads: libmicrohttpd runs one thread per connection (at most
 * 2 x max_connections, see below), so a request that waits for a model load
 * or runs a long inference blocks only its own connection. A server handle may be used
 * from any thread; memfit_server_destroy must be the last call.
 */
#ifndef MEMFIT_SERVER_H
#define MEMFIT_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memfit/core.h"
#include "memfit/engines.h"
#include "memfit/manager.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Server ------------------------------------------------------------------ */

struct memfit_server_options {
    const char *host; /* "127.0.0.1" (an IPv4 or IPv6 address, or "localhost") */
    uint16_t port;    /* 8080; 0 = any free port (see memfit_server_port) */
    /* The manifest (memfit.yaml format, see manager.h), or NULL for none. */
    const char *manifest_path;
    /* Quick start: model files or source URIs, each served under its file
     * name without the extension, family "auto" (detected from the file's
     * header, read with Range requests for a remote source) and manifest
     * defaults. */
    const char *const *model_sources;
    size_t n_model_sources;
    /* Required on every route but /health as "Authorization: Bearer KEY"
     * when not NULL or "". Copied; never logged. */
    const char *api_key;
    uint64_t budget_bytes;   /* 0: the manifest's, MEMFIT_MAX_MEMORY_MB, or 80% of the limit */
    uint64_t max_body_bytes; /* 32 MiB: larger bodies get 413 */
    size_t max_header_bytes; /* 32 KiB: per-connection memory for the request line and headers */
    unsigned connection_timeout_s; /* 30: an idle or too slow connection is closed */
    /* 256: requests in progress at once. Connections are accepted up to
     * 2 x max_connections (one thread each), so that a request beyond it is
     * answered 503 server_busy (Retry-After, Connection: close) rather than
     * reset; /health, /ready and /metrics are always answered. */
    unsigned max_connections;
    unsigned max_queue;  /* 64: model requests admitted at once; more get 429 */
    unsigned max_inputs; /* 256: inputs per embedding request */
    /* 64e6: pixels of all the images of one request together. Decoded
     * images are held until the forward (3 bytes a pixel: 192 MB at the
     * default); a request past it gets 400 before the image that crosses it
     * is allocated (its header is read first), so no body of small
     * compressed images can make the server decode gigabytes. */
    uint64_t max_request_pixels;
    int64_t admission_timeout_ms; /* -1: the manifest's (default 30 s) */
    bool gpu;                     /* read GPUs (NVML) for /api/memory; false by default */
    bool reaper_thread;           /* true: keep_alive is applied by a manager thread */
    /* Browser safety (docs/server.md). When `host` is a loopback address,
     * a request's Host header must name a loopback host (localhost,
     * 127.x.x.x, [::1], any port) or one of these names (403
     * host_not_allowed otherwise): a DNS-rebinding page cannot reach the
     * server. Copied. */
    const char *const *allow_hosts;
    size_t n_allow_hosts;
    /* A request whose Origin is not the server's own (http://HOST) gets 403
     * origin_not_allowed unless listed here ("*": any); listed origins get
     * CORS headers and OPTIONS preflights get 204. Copied. */
    const char *const *allow_origins;
    size_t n_allow_origins;
    /* 2000: the wall-clock budget of decoding one uploaded image, in ms (0:
     * none); a decode past it gets 400 invalid_image. A 7000 x 7000
     * image decodes in about 0.3 s on one core as a baseline JPEG, 0.4 s
     * progressive, 0.2 s as a PNG: 2 s leaves room for a busy core while no crafted file can hold a
     * connection thread and a core for longer. Fixed rather than scaled by pixels, as
     * max_request_pixels already bounds the honest work. */
    uint32_t max_decode_ms;
    /* Slow clients (docs/server.md, "Slow clients and limits"). A request's
     * line and headers must be complete within header_timeout_s (10) of its
     * connection's start, or of the end of the previous request on a
     * keep-alive connection; its head and body within request_timeout_s
     * (60) of the same start. Answers, streams included, have no deadline.
     * A late connection is closed and logged. 0: no deadline. */
    unsigned header_timeout_s;
    unsigned request_timeout_s;
    /* 64: connections of one client address at once (an IPv6 client: its
     * /64); 0 = no limit. Requests on the ones beyond get 429
     * too_many_connections (Retry-After, Connection: close) and their head
     * must come within 2 s. Behind a reverse proxy every client has the
     * proxy's address: set 0 there and limit clients in the proxy. */
    unsigned max_client_connections;
    /* gRPC (docs/server.md, "ModelMesh"): ModelMesh's model-runtime SPI
     * (mmesh.ModelRuntime) and KServe's v2 inference service
     * (inference.GRPCInferenceService) on "HOST:PORT" (PORT 0: any free
     * one, see memfit_server_grpc_port) or "unix:PATH". NULL or "": no
     * gRPC. Needs libgrpc29 at run time (loaded on start). */
    const char *grpc_address;
    /* 0: on SIGTERM/SIGINT, memfit_server_run first drains for this long
     * (memfit_server_drain: not ready, still serving) before the graceful
     * stop, for platforms whose load balancer follows /ready but that have
     * no preStop hook (Docker, Render, Knative). */
    uint64_t drain_delay_ms;
    /* Quick start: the max_concurrency of the model_sources models (0:
     * unlimited). For an LLM, that many sessions whose decoding steps are
     * batched together (`serve --parallel N`). */
    unsigned model_parallel;
};

/* Fills the defaults above. */
MEMFIT_API void memfit_server_options_default(struct memfit_server_options *options);

typedef struct memfit_server memfit_server;

/*
 * Reads the manifest, creates the manager and its budget, registers the
 * models, loads the pinned ones and starts listening. Failures: the
 * manifest's (E_NOT_FOUND, E_FORMAT naming file and line), E_RANGE for a
 * bad option or budget, E_EXISTS for two models of one name, E_IO
 * "cannot listen on HOST:PORT: reason", E_NOMEM. A pinned model that
 * fails to load is logged, not fatal (it stays FAILED, see /api/models).
 */
MEMFIT_API enum memfit_status memfit_server_create(const struct memfit_server_options *options,
                                                   memfit_server **out);

/*
 * Whether `host` (a --host value: an address, "[::1]" or "localhost") is a
 * loopback address: 127.0.0.0/8, ::1 or "localhost". memfit_server_create
 * logs a warning when it binds to another one without an API key.
 */
MEMFIT_API bool memfit_server_host_is_loopback(const char *host);

/* The port the server listens on (the one chosen when options.port was 0). */
MEMFIT_API uint16_t memfit_server_port(const memfit_server *server);

/* The port the gRPC front end listens on; 0 when it is off or on a unix socket. */
MEMFIT_API uint16_t memfit_server_grpc_port(const memfit_server *server);

/* The server's manager (borrowed; valid until memfit_server_destroy). */
MEMFIT_API memfit_manager *memfit_server_manager(memfit_server *server);

/*
 * Reads the manifest again: new models are registered, removed ones
 * unregistered (unloaded once idle), changed ones replaced, the budget
 * resized when the manifest names one. On failure (the manifest's errors)
 * nothing changes and the old models keep serving.
 */
MEMFIT_API enum memfit_status memfit_server_reload(memfit_server *server);

/*
 * Stops accepting connections, lets requests in progress finish for up to
 * `grace_ms`, then cancels the rest (their work sees memfit_cancel_fn say
 * true) and closes every connection. Returns how many requests were still
 * running when the grace period ended. Idempotent.
 */
MEMFIT_API unsigned memfit_server_shutdown(memfit_server *server, uint64_t grace_ms);

/*
 * Marks the server not ready: /ready and /v2/health/ready answer 503 and
 * gRPC's ServerReady false, while every other route and call is served as
 * before (load balancers take the replica out before it stops). Idempotent;
 * memfit_server_shutdown ends it.
 */
MEMFIT_API void memfit_server_drain(memfit_server *server);

/* Shuts down (grace 0) if not done, unloads every model, frees everything; NULL is a no-op. */
MEMFIT_API void memfit_server_destroy(memfit_server *server);

/*
 * Blocks SIGTERM, SIGINT and SIGHUP in the calling thread, so that threads
 * created afterwards (the server's) inherit the mask and memfit_server_run
 * receives them with sigwait. Call it before memfit_server_create.
 */
MEMFIT_API enum memfit_status memfit_server_block_signals(void);

/*
 * Serves until SIGTERM or SIGINT: SIGHUP reloads the manifest (logging the
 * result); SIGTERM/SIGINT drain for the options' drain_delay_ms (a second
 * SIGTERM/SIGINT cuts it short), then shut down with `grace_ms`
 * (memfit_server_shutdown).
 * Returns the signal that stopped it. Needs memfit_server_block_signals().
 */
MEMFIT_API int memfit_server_run(memfit_server *server, uint64_t grace_ms);

#ifdef __cplusplus
}
#endif

#endif

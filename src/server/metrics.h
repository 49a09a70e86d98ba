/*
 * The server's own counters (requests by route and status, latency
 * histograms, cancellations) and the Prometheus text exposition (format
 * 0.0.4) of everything /metrics shows: those counters, the budget, the
 * models from a manager snapshot and a memory sample. Counters are relaxed
 * atomics: any connection thread bumps them without a lock.
 */
#ifndef MF_SERVER_METRICS_H
#define MF_SERVER_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "memfit/manager.h"
#include "server/request.h"

/* The statuses counted one by one; others fall under "other". */
#define MF_METRIC_STATUSES(X)                                                                      \
    X(200) X(400) X(401) X(404) X(405) X(413) X(429) X(431) X(499) X(500) X(501) X(503)

enum { MF_N_STATUS_SLOTS = 13 }; /* the list above plus "other" */

/* Latency bucket upper bounds, seconds (+Inf implied). */
#define MF_N_BUCKETS 14

/* Latency histograms of text generation, per model. */
#define MF_N_GEN_BUCKETS 12

struct mf_histogram {
    _Atomic uint64_t count, sum_us;
    _Atomic uint64_t buckets[MF_N_GEN_BUCKETS]; /* not cumulative */
};

/* One model's generation figures (by name: they outlive a manifest reload). */
struct mf_gen_stats {
    struct mf_gen_stats *next;
    char model[MF_MODEL_NAME_MAX];
    _Atomic uint64_t prompt_tokens, generated_tokens;
    _Atomic uint64_t active;  /* sequences generating (holding a session) */
    _Atomic uint64_t queued;  /* admitted, waiting for the model or a session */
    struct mf_histogram ttft; /* request received -> first token sampled */
    struct mf_histogram itl;  /* between two tokens of one sequence */
};

/* gRPC calls: by method (grpc.c's list, in this order, then "other") and
 * status code (the 17 gRPC codes, OK = 0 ... UNAUTHENTICATED = 16). */
#define MF_GRPC_METHODS 12
#define MF_GRPC_CODES   17
/* grpc.c: "/package.Service/method" each, the last NULL ("other"). */
extern const char *const mf_grpc_method_names[MF_GRPC_METHODS];

/* ModelMesh's loadModel and unloadModel, by result. */
enum mf_mm_result { MF_MM_OK = 0, MF_MM_FAILED = 1, MF_MM_CANCELLED = 2, MF_MM_RESULTS = 3 };

struct mf_metrics {
    _Atomic(struct mf_gen_stats *) gen; /* a list: pushed, never removed until freed */
    _Atomic uint64_t count[MF_ROUTE_COUNT][MF_N_STATUS_SLOTS];
    _Atomic uint64_t sum_us[MF_ROUTE_COUNT][MF_N_STATUS_SLOTS];
    _Atomic uint64_t buckets[MF_ROUTE_COUNT][MF_N_STATUS_SLOTS][MF_N_BUCKETS]; /* not cumulative */
    _Atomic uint64_t cancelled[MF_ROUTE_COUNT];
    _Atomic uint64_t queue_rejected; /* 429 by the server's own queue */
    _Atomic uint64_t grpc_count[MF_GRPC_METHODS][MF_GRPC_CODES];
    _Atomic uint64_t grpc_sum_us[MF_GRPC_METHODS][MF_GRPC_CODES];
    _Atomic uint64_t grpc_buckets[MF_GRPC_METHODS][MF_GRPC_CODES][MF_N_BUCKETS];
    _Atomic uint64_t mm_loads[MF_MM_RESULTS], mm_unloads[MF_MM_RESULTS];
};

/* One memory reading for /metrics, the dashboard and the SSE stream. */
struct mf_mem_sample {
    uint64_t wall_ms;
    uint64_t working_set_bytes; /* cgroup working set, or MemTotal - MemAvailable */
    uint64_t in_use_bytes;      /* what levels judge (memfit_sample.in_use_bytes) */
    /* the cgroup's memory by kind (UNKNOWN without a cgroup limit) */
    uint64_t anon_bytes, mapped_file_bytes, other_file_bytes, shmem_bytes, swap_bytes;
    uint64_t limit_bytes; /* effective limit (cgroup or physical memory) */
    uint64_t rss_bytes;   /* this process */
    bool have_psi;
    double psi_some_avg10, psi_full_avg10; /* percent */
    uint64_t psi_some_total_us, psi_full_total_us;
    /* GPUs (serve --gpu): each device's memory and level (with hysteresis,
     * default thresholds), and the processes NVML lists on them. */
    unsigned n_gpus, n_gpu_processes;
    struct mf_gpu_sample {
        unsigned index;
        uint64_t used_bytes, total_bytes;
        enum memfit_level level;
    } gpus[MEMFIT_GPU_MAX_DEVICES];
    struct mf_gpu_process_sample {
        unsigned device;
        pid_t pid;
        uint64_t used_bytes; /* UNKNOWN when the driver does not say */
    } gpu_processes[MEMFIT_GPU_MAX_PROCESSES];
};

/* The generation figures of `model`, made on first use; NULL when out of memory. */
struct mf_gen_stats *mf_metrics_gen(struct mf_metrics *m, const char *model);
void mf_metrics_observe_ttft(struct mf_gen_stats *g, uint64_t ns);
void mf_metrics_observe_itl(struct mf_gen_stats *g, uint64_t ns);
/* Frees the generation figures (the server's end). */
void mf_metrics_free(struct mf_metrics *m);

/* Records one answered request (status: the HTTP status sent). */
void mf_metrics_observe(struct mf_metrics *m, enum mf_route route, int status, uint64_t ns);

/* Records one answered gRPC call (method: index in mf_grpc_method_names;
 * code: its gRPC status). */
void mf_metrics_observe_grpc(struct mf_metrics *m, unsigned method, unsigned code, uint64_t ns);

/* Server-wide gauges /metrics shows besides the snapshot. */
struct mf_server_gauges {
    unsigned connections;    /* requests in progress */
    unsigned queue_depth;    /* embedding requests admitted and waiting for a model */
    unsigned queue_running;  /* embedding requests running */
    unsigned queue_capacity; /* max_queue of the server */
    uint64_t uptime_ns;
    uint64_t reloads, reload_failures;
    uint64_t connections_open;                    /* accepted and not closed */
    uint64_t cut_header_total, cut_request_total; /* closed by the deadlines */
};

/* Appends the whole exposition. `snap` and `sample` may be NULL (left out). */
bool mf_metrics_format(struct mf_text *out, const struct mf_metrics *m,
                       const struct memfit_manager_status *snap, const struct mf_mem_sample *sample,
                       const struct mf_server_gauges *g);

#endif

/*
 * Request counters and the Prometheus text exposition of /metrics (format
 * 0.0.4: "# HELP" and "# TYPE" once per family, base units — bytes,
 * seconds — counters ending in _total, histograms with cumulative buckets
 * up to +Inf plus _sum and _count). Names follow the conventions in
 * docs/server.md: memfit_* for memfit's own figures and the standard
 * process_resident_memory_bytes.
 */
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "server/metrics.h"

static const int status_codes[] = {
#define MF_STATUS_CODE(code) code,
    MF_METRIC_STATUSES(MF_STATUS_CODE)
#undef MF_STATUS_CODE
};

static const double bucket_bounds[MF_N_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                   0.1,    0.25,  0.5,    1,     2.5,  5,     10};

/* Time to first token (includes waiting for the model and the prompt), and between tokens. */
static const double ttft_bounds[MF_N_GEN_BUCKETS] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                     1,    2.5,   5,    10,  30,   60};
static const double itl_bounds[MF_N_GEN_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                    0.1,   0.25,   0.5,   1,    2.5,   5};

struct mf_gen_stats *mf_metrics_gen(struct mf_metrics *m, const char *model)
{
    struct mf_gen_stats *head = atomic_load(&m->gen);
    for (;;) {
        for (struct mf_gen_stats *g = head; g; g = g->next)
            if (strcmp(g->model, model) == 0)
                return g;
        struct mf_gen_stats *g = memfit_calloc_in(MEMFIT_ALLOC_SERVER, 1, sizeof(*g));
        if (!g)
            return NULL;
        snprintf(g->model, sizeof(g->model), "%s", model);
        g->next = head;
        if (atomic_compare_exchange_strong(&m->gen, &head, g))
            return g;
        memfit_free(g); /* another thread pushed first: look again from the new head */
    }
}

void mf_metrics_free(struct mf_metrics *m)
{
    struct mf_gen_stats *g = atomic_exchange(&m->gen, NULL);
    while (g) {
        struct mf_gen_stats *next = g->next;
        memfit_free(g);
        g = next;
    }
}

static void histogram_observe(struct mf_histogram *h, const double *bounds, uint64_t ns)
{
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, ns / 1000, memory_order_relaxed);
    double seconds = (double)ns / 1e9;
    unsigned b = 0;
    while (b < MF_N_GEN_BUCKETS && seconds > bounds[b])
        b++;
    if (b < MF_N_GEN_BUCKETS)
        atomic_fetch_add_explicit(&h->buckets[b], 1, memory_order_relaxed);
}

void mf_metrics_observe_ttft(struct mf_gen_stats *g, uint64_t ns)
{
    if (g)
        histogram_observe(&g->ttft, ttft_bounds, ns);
}

void mf_metrics_observe_itl(struct mf_gen_stats *g, uint64_t ns)
{
    if (g)
        histogram_observe(&g->itl, itl_bounds, ns);
}

static unsigned status_slot(int status)
{
    for (unsigned i = 0; i < sizeof(status_codes) / sizeof(status_codes[0]); i++)
        if (status_codes[i] == status)
            return i;
    return MF_N_STATUS_SLOTS - 1;
}

static const char *const grpc_code_names[MF_GRPC_CODES] = {
    "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
    "DATA_LOSS", "UNAUTHENTICATED"};

/* One observation into a histogram's count, sum and (not cumulative) buckets. */
static void observe(_Atomic uint64_t *count, _Atomic uint64_t *sum_us, _Atomic uint64_t *buckets,
                    uint64_t ns)
{
    atomic_fetch_add_explicit(count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(sum_us, ns / 1000, memory_order_relaxed);
    double seconds = (double)ns / 1e9;
    unsigned b = 0;
    while (b < MF_N_BUCKETS && seconds > bucket_bounds[b])
        b++;
    if (b < MF_N_BUCKETS)
        atomic_fetch_add_explicit(&buckets[b], 1, memory_order_relaxed);
}

void mf_metrics_observe(struct mf_metrics *m, enum mf_route route, int status, uint64_t ns)
{
    if ((unsigned)route >= MF_ROUTE_COUNT)
        route = MF_ROUTE_OTHER;
    unsigned s = status_slot(status);
    observe(&m->count[route][s], &m->sum_us[route][s], m->buckets[route][s], ns);
}

void mf_metrics_observe_grpc(struct mf_metrics *m, unsigned method, unsigned code, uint64_t ns)
{
    if (method >= MF_GRPC_METHODS)
        method = MF_GRPC_METHODS - 1;
    if (code >= MF_GRPC_CODES)
        code = 2; /* UNKNOWN */
    observe(&m->grpc_count[method][code], &m->grpc_sum_us[method][code],
            m->grpc_buckets[method][code], ns);
}

static uint64_t load(const _Atomic uint64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

static void family(struct mf_text *t, const char *name, const char *type, const char *help)
{
    mf_text_printf(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A counter family of two samples told apart by one label (`key`). */
static void counter_pair(struct mf_text *t, const char *name, const char *help, const char *key,
                         const char *a, uint64_t va, const char *b, uint64_t vb)
{
    family(t, name, "counter", help);
    mf_text_printf(t, "%s{%s=\"%s\"} %llu\n", name, key, a, (unsigned long long)va);
    mf_text_printf(t, "%s{%s=\"%s\"} %llu\n", name, key, b, (unsigned long long)vb);
}

/* A label value with \, " and newline escaped (exposition format). */
static void label_value(struct mf_text *t, const char *v)
{
    mf_text_append(t, "\"", 1);
    for (const char *p = v; *p; p++) {
        if (*p == '\\')
            mf_text_append(t, "\\\\", 2);
        else if (*p == '"')
            mf_text_append(t, "\\\"", 2);
        else if (*p == '\n')
            mf_text_append(t, "\\n", 2);
        else
            mf_text_append(t, p, 1);
    }
    mf_text_append(t, "\"", 1);
}

static void sample_u64(struct mf_text *t, const char *name, uint64_t v)
{
    mf_text_printf(t, "%s %llu\n", name, (unsigned long long)v);
}

static void gauge_u64(struct mf_text *t, const char *name, const char *help, uint64_t v)
{
    if (v == UINT64_MAX)
        return; /* unknown: left out rather than a made-up number */
    family(t, name, "gauge", help);
    sample_u64(t, name, v);
}

static void status_label(struct mf_text *t, unsigned slot)
{
    if (slot < MF_N_STATUS_SLOTS - 1)
        mf_text_printf(t, "code=\"%d\"", status_codes[slot]);
    else
        mf_text_puts(t, "code=\"other\"");
}

/* The samples of one histogram series: `labels` (already escaped, without
 * braces) on each; count read first, buckets not cumulative. */
static void histogram_series(struct mf_text *t, const char *name, const char *labels,
                             uint64_t count, const _Atomic uint64_t *buckets, uint64_t sum_us)
{
    uint64_t cumulative = 0;
    for (unsigned b = 0; b < MF_N_BUCKETS; b++) {
        cumulative += load(&buckets[b]);
        mf_text_printf(t, "%s_bucket{%s,le=\"%g\"} %llu\n", name, labels, bucket_bounds[b],
                       (unsigned long long)cumulative);
    }
    /* +Inf must not be below the finite buckets a racing request just bumped. */
    if (count < cumulative)
        count = cumulative;
    mf_text_printf(t, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name, labels, (unsigned long long)count);
    mf_text_printf(t, "%s_sum{%s} %.6f\n", name, labels, (double)sum_us / 1e6);
    mf_text_printf(t, "%s_count{%s} %llu\n", name, labels, (unsigned long long)count);
}

/* A label value escaped into `buf` (label_value's rules), as `key="value"`. */
static const char *labels_of(struct mf_text *buf, const char *key, const char *value,
                             const char *rest)
{
    buf->len = 0;
    if (buf->data)
        buf->data[0] = '\0';
    mf_text_printf(buf, "%s=", key);
    label_value(buf, value);
    mf_text_printf(buf, ",%s", rest);
    return buf->failed || !buf->data ? NULL : buf->data;
}

static void format_grpc(struct mf_text *t, const struct mf_metrics *m)
{
    /* One pass: the counters into t, the histograms into `hist`, appended after. */
    struct mf_text labels = {0}, hist = {0};
    family(t, "memfit_grpc_requests_total", "counter",
           "gRPC calls answered, by method and gRPC status code.");
    family(&hist, "memfit_grpc_request_duration_seconds", "histogram",
           "Time from a gRPC call's message to its answer, by method and gRPC status code.");
    for (unsigned i = 0; i < MF_GRPC_METHODS; i++)
        for (unsigned c = 0; c < MF_GRPC_CODES; c++) {
            uint64_t n = load(&m->grpc_count[i][c]);
            if (!n)
                continue;
            char code[48];
            snprintf(code, sizeof(code), "code=\"%s\"", grpc_code_names[c]);
            const char *l =
                labels_of(&labels, "method",
                          mf_grpc_method_names[i] ? mf_grpc_method_names[i] + 1 : "other", code);
            if (!l)
                continue;
            mf_text_printf(t, "memfit_grpc_requests_total{%s} %llu\n", l, (unsigned long long)n);
            histogram_series(&hist, "memfit_grpc_request_duration_seconds", l, n,
                             m->grpc_buckets[i][c], load(&m->grpc_sum_us[i][c]));
        }
    if (labels.failed || hist.failed)
        t->failed = true;
    else
        mf_text_append(t, hist.data, hist.len);
    mf_text_free(&labels);
    mf_text_free(&hist);
    static const char *const results[MF_MM_RESULTS] = {"ok", "failed", "cancelled"};
    family(t, "memfit_modelmesh_loads_total", "counter", "ModelMesh loadModel calls, by result.");
    for (unsigned r = 0; r < MF_MM_RESULTS; r++)
        mf_text_printf(t, "memfit_modelmesh_loads_total{result=\"%s\"} %llu\n", results[r],
                       (unsigned long long)load(&m->mm_loads[r]));
    family(t, "memfit_modelmesh_unloads_total", "counter",
           "ModelMesh unloadModel calls, by result.");
    for (unsigned r = 0; r < MF_MM_RESULTS - 1; r++)
        mf_text_printf(t, "memfit_modelmesh_unloads_total{result=\"%s\"} %llu\n", results[r],
                       (unsigned long long)load(&m->mm_unloads[r]));
}

static void format_http(struct mf_text *t, const struct mf_metrics *m)
{
    family(t, "memfit_http_requests_total", "counter",
           "HTTP requests answered, by route and status.");
    for (unsigned r = 0; r < MF_ROUTE_COUNT; r++)
        for (unsigned s = 0; s < MF_N_STATUS_SLOTS; s++) {
            uint64_t c = load(&m->count[r][s]);
            if (!c)
                continue;
            mf_text_puts(t, "memfit_http_requests_total{route=");
            label_value(t, mf_route_label(r));
            mf_text_puts(t, ",");
            status_label(t, s);
            mf_text_printf(t, "} %llu\n", (unsigned long long)c);
        }
    family(t, "memfit_http_request_duration_seconds", "histogram",
           "Time from the request's headers to its answer, by route and status.");
    struct mf_text labels = {0};
    for (unsigned r = 0; r < MF_ROUTE_COUNT; r++)
        for (unsigned s = 0; s < MF_N_STATUS_SLOTS; s++) {
            uint64_t c = load(&m->count[r][s]);
            if (!c)
                continue;
            struct mf_text code = {0};
            status_label(&code, s);
            const char *l =
                code.data ? labels_of(&labels, "route", mf_route_label(r), code.data) : NULL;
            if (l)
                histogram_series(t, "memfit_http_request_duration_seconds", l, c, m->buckets[r][s],
                                 load(&m->sum_us[r][s]));
            else
                t->failed = true;
            mf_text_free(&code);
        }
    mf_text_free(&labels);
    family(t, "memfit_http_requests_cancelled_total", "counter",
           "Requests whose client went away before the answer, by route.");
    for (unsigned r = 0; r < MF_ROUTE_COUNT; r++) {
        uint64_t c = load(&m->cancelled[r]);
        if (!c && r != MF_ROUTE_EMBEDDINGS)
            continue;
        mf_text_puts(t, "memfit_http_requests_cancelled_total{route=");
        label_value(t, mf_route_label(r));
        mf_text_printf(t, "} %llu\n", (unsigned long long)c);
    }
    family(t, "memfit_queue_rejected_total", "counter",
           "Embedding requests refused with 429 because the queue was full.");
    sample_u64(t, "memfit_queue_rejected_total", load(&m->queue_rejected));
}

/* One model's histogram: cumulative buckets, +Inf, _sum and _count. */
static void histogram_model(struct mf_text *t, const char *name, const char *model,
                            const struct mf_histogram *h, const double *bounds)
{
    uint64_t c = load(&h->count), cumulative = 0;
    for (unsigned b = 0; b < MF_N_GEN_BUCKETS; b++) {
        cumulative += load(&h->buckets[b]);
        mf_text_printf(t, "%s_bucket{model=", name);
        label_value(t, model);
        mf_text_printf(t, ",le=\"%g\"} %llu\n", bounds[b], (unsigned long long)cumulative);
    }
    c = c > cumulative ? c : cumulative; /* the count was read before racing buckets */
    mf_text_printf(t, "%s_bucket{model=", name);
    label_value(t, model);
    mf_text_printf(t, ",le=\"+Inf\"} %llu\n", (unsigned long long)c);
    mf_text_printf(t, "%s_sum{model=", name);
    label_value(t, model);
    mf_text_printf(t, "} %.6f\n", (double)load(&h->sum_us) / 1e6);
    mf_text_printf(t, "%s_count{model=", name);
    label_value(t, model);
    mf_text_printf(t, "} %llu\n", (unsigned long long)c);
}

/* Text generation per model: tokens, latencies, sequences. */
static void format_gen(struct mf_text *t, const struct mf_metrics *m)
{
    static const struct {
        const char *name, *type, *help;
        size_t offset;
    } counters[] = {
        {"memfit_llm_prompt_tokens_total", "counter", "Prompt tokens evaluated, by model.",
         offsetof(struct mf_gen_stats, prompt_tokens)},
        {"memfit_llm_generated_tokens_total", "counter", "Tokens generated, by model.",
         offsetof(struct mf_gen_stats, generated_tokens)},
        {"memfit_llm_sequences_active", "gauge",
         "Sequences generating now (each holds one of the model's sessions), by model.",
         offsetof(struct mf_gen_stats, active)},
        {"memfit_llm_sequences_queued", "gauge",
         "Generation requests admitted and waiting for the model or a free session, by model.",
         offsetof(struct mf_gen_stats, queued)},
    };
    const struct mf_gen_stats *head = atomic_load(&((struct mf_metrics *)m)->gen);
    for (size_t i = 0; i < sizeof(counters) / sizeof(*counters); i++) {
        family(t, counters[i].name, counters[i].type, counters[i].help);
        for (const struct mf_gen_stats *g = head; g; g = g->next) {
            mf_text_printf(t, "%s{model=", counters[i].name);
            label_value(t, g->model);
            mf_text_printf(
                t, "} %llu\n",
                (unsigned long long)load((
                    const _Atomic uint64_t *)(const void *)((const char *)g + counters[i].offset)));
        }
    }
    family(t, "memfit_llm_time_to_first_token_seconds", "histogram",
           "Time from a generation request's arrival to its first token (waiting for the model, "
           "the prompt), by model.");
    for (const struct mf_gen_stats *g = head; g; g = g->next)
        histogram_model(t, "memfit_llm_time_to_first_token_seconds", g->model, &g->ttft,
                        ttft_bounds);
    family(t, "memfit_llm_inter_token_latency_seconds", "histogram",
           "Time between two tokens of one sequence, by model.");
    for (const struct mf_gen_stats *g = head; g; g = g->next)
        histogram_model(t, "memfit_llm_inter_token_latency_seconds", g->model, &g->itl, itl_bounds);
}

static void per_model_u64(struct mf_text *t, const struct memfit_manager_status *snap,
                          const char *name, const char *type, const char *help, size_t offset)
{
    family(t, name, type, help);
    for (size_t i = 0; i < snap->n_models; i++) {
        const struct memfit_model_status *ms = &snap->models[i];
        uint64_t v;
        memcpy(&v, (const char *)ms + offset, sizeof(v));
        mf_text_printf(t, "%s{model=", name);
        label_value(t, ms->name);
        mf_text_printf(t, "} %llu\n", (unsigned long long)v);
    }
}

static void format_manager(struct mf_text *t, const struct memfit_manager_status *s)
{
    const struct memfit_budget_usage *b = &s->budget;
    gauge_u64(t, "memfit_budget_bytes", "Size of the memory budget.", b->size_bytes);
    family(t, "memfit_budget_reserved_bytes", "gauge",
           "Bytes reserved in the budget, by category.");
    for (unsigned c = 0; c < MEMFIT_BUDGET_CATEGORY_COUNT; c++) {
        static const char *const names[] = {"weights", "converted_weights", "workspace",
                                            "kv_cache"};
        mf_text_printf(t, "memfit_budget_reserved_bytes{category=\"%s\"} %llu\n", names[c],
                       (unsigned long long)b->by_category[c]);
    }
    gauge_u64(t, "memfit_budget_free_bytes", "Budget bytes not reserved.", b->free_bytes);
    gauge_u64(t, "memfit_budget_peak_reserved_bytes", "Most bytes ever reserved at once.",
              b->peak_reserved_bytes);
    family(t, "memfit_budget_refusals_total", "counter",
           "Reservations refused because they did not fit.");
    sample_u64(t, "memfit_budget_refusals_total", b->n_refused);
    gauge_u64(t, "memfit_manager_queue_depth", "Model acquires waiting in the manager now.",
              s->queue_depth);
    gauge_u64(t, "memfit_models", "Models registered.", s->n_models);
    gauge_u64(t, "memfit_pressure_level",
              "Memory pressure level the manager acts on: 0 ok, 1 warning, 2 critical, 3 danger.",
              (uint64_t)s->pressure_level);
    gauge_u64(t, "memfit_admission_paused",
              "1 while memory pressure holds new model acquires back, else 0.",
              s->admission_paused ? 1 : 0);
    gauge_u64(t, "memfit_pressure_working_set_bytes",
              "Memory in use the pressure level was last judged on (0: never sampled).",
              s->pressure_bytes);
    family(t, "memfit_pressure_unloads_total", "counter",
           "Models unloaded or evicted because of memory pressure.");
    sample_u64(t, "memfit_pressure_unloads_total", s->pressure_unloads);

    family(t, "memfit_model_state", "gauge", "1 for the state each model is in, else 0.");
    for (size_t i = 0; i < s->n_models; i++)
        for (int st = MEMFIT_MODEL_UNLOADED; st <= MEMFIT_MODEL_FAILED; st++) {
            mf_text_puts(t, "memfit_model_state{model=");
            label_value(t, s->models[i].name);
            mf_text_printf(t, ",state=\"%s\"} %d\n",
                           memfit_model_state_name((enum memfit_model_state)st),
                           s->models[i].state == (enum memfit_model_state)st);
        }
#define MODEL_FIELD(field) offsetof(struct memfit_model_status, field)
    per_model_u64(t, s, "memfit_model_bytes", "gauge", "Bytes a model holds in the budget.",
                  MODEL_FIELD(total_bytes));
    per_model_u64(t, s, "memfit_model_loads_total", "counter", "Successful loads.",
                  MODEL_FIELD(n_loads));
    per_model_u64(t, s, "memfit_model_unloads_total", "counter", "Unloads, evictions included.",
                  MODEL_FIELD(n_unloads));
    per_model_u64(t, s, "memfit_model_evictions_total", "counter",
                  "Unloads to make room for another reservation.", MODEL_FIELD(n_evictions));
    per_model_u64(t, s, "memfit_model_load_failures_total", "counter", "Failed loads.",
                  MODEL_FIELD(n_failures));
    per_model_u64(t, s, "memfit_model_refusals_total", "counter",
                  "Acquires refused (budget, queue full, timeout).", MODEL_FIELD(n_refusals));
    per_model_u64(t, s, "memfit_model_requests_total", "counter", "Successful acquires.",
                  MODEL_FIELD(n_requests));
#undef MODEL_FIELD
    family(t, "memfit_model_load_duration_seconds", "gauge", "Duration of the last load.");
    for (size_t i = 0; i < s->n_models; i++) {
        mf_text_puts(t, "memfit_model_load_duration_seconds{model=");
        label_value(t, s->models[i].name);
        mf_text_printf(t, "} %.6f\n", (double)s->models[i].load_time_ns / 1e9);
    }
    family(t, "memfit_model_in_use", "gauge", "Handles out on a model (requests running).");
    for (size_t i = 0; i < s->n_models; i++) {
        mf_text_puts(t, "memfit_model_in_use{model=");
        label_value(t, s->models[i].name);
        mf_text_printf(t, "} %u\n", s->models[i].in_use);
    }
}

static void format_sample(struct mf_text *t, const struct mf_mem_sample *s)
{
    gauge_u64(t, "memfit_memory_working_set_bytes",
              "Working set of the container (cgroup usage - inactive file) or of the machine.",
              s->working_set_bytes);
    gauge_u64(t, "memfit_memory_in_use_bytes",
              "Memory in use, the figure levels judge: cgroup usage less the inactive file pages "
              "nobody maps (mapped weights count), or the machine's working set.",
              s->in_use_bytes);
    const struct {
        const char *kind;
        uint64_t v;
    } kinds[] = {{"anon", s->anon_bytes},
                 {"mapped_file", s->mapped_file_bytes},
                 {"other_file", s->other_file_bytes},
                 {"shmem", s->shmem_bytes},
                 {"swap", s->swap_bytes}};
    if (s->anon_bytes != UINT64_MAX) {
        family(t, "memfit_memory_bytes", "gauge",
               "The container's memory by kind: anonymous, mapped files (weights), other page "
               "cache, shmem, swap.");
        for (size_t i = 0; i < sizeof(kinds) / sizeof(*kinds); i++)
            if (kinds[i].v != UINT64_MAX)
                mf_text_printf(t, "memfit_memory_bytes{kind=\"%s\"} %llu\n", kinds[i].kind,
                               (unsigned long long)kinds[i].v);
    }
    gauge_u64(t, "memfit_memory_limit_bytes",
              "Effective memory limit: the cgroup's, or physical memory.", s->limit_bytes);
    gauge_u64(t, "process_resident_memory_bytes", "Resident memory of this process.", s->rss_bytes);
    if (s->have_psi) {
        family(t, "memfit_pressure_memory_waiting_seconds_total", "counter",
               "Time some tasks stalled on memory (PSI some).");
        mf_text_printf(t, "memfit_pressure_memory_waiting_seconds_total %.6f\n",
                       (double)s->psi_some_total_us / 1e6);
        family(t, "memfit_pressure_memory_stalled_seconds_total", "counter",
               "Time all tasks stalled on memory (PSI full).");
        mf_text_printf(t, "memfit_pressure_memory_stalled_seconds_total %.6f\n",
                       (double)s->psi_full_total_us / 1e6);
        family(t, "memfit_pressure_memory_some_ratio", "gauge",
               "Share of the last 10 s some tasks stalled on memory (0-1).");
        mf_text_printf(t, "memfit_pressure_memory_some_ratio %.4f\n", s->psi_some_avg10 / 100.0);
    }
}

/* Each GPU's memory and level, and the processes using them (serve --gpu). */
static void format_gpus(struct mf_text *t, const struct mf_mem_sample *s)
{
    static const struct {
        const char *name, *help;
    } families[] = {
        {"memfit_gpu_memory_used_bytes", "GPU memory in use (NVML), by GPU index."},
        {"memfit_gpu_memory_total_bytes", "GPU memory in all (NVML), by GPU index."},
        {"memfit_gpu_level",
         "Each GPU's memory level: 0 ok, 1 warning (80%), 2 critical (90%), 3 danger (95%)."},
    };
    for (unsigned f = 0; f < sizeof(families) / sizeof(*families); f++) {
        family(t, families[f].name, "gauge", families[f].help);
        for (unsigned i = 0; i < s->n_gpus; i++) {
            const struct mf_gpu_sample *g = &s->gpus[i];
            uint64_t v = f == 0 ? g->used_bytes : f == 1 ? g->total_bytes : (uint64_t)g->level;
            if (v != UINT64_MAX)
                mf_text_printf(t, "%s{gpu=\"%u\"} %llu\n", families[f].name, g->index,
                               (unsigned long long)v);
        }
    }
    family(t, "memfit_gpu_process_memory_bytes", "gauge",
           "GPU memory of each process NVML lists (host pids), by GPU index and pid.");
    for (unsigned i = 0; i < s->n_gpu_processes; i++) {
        const struct mf_gpu_process_sample *p = &s->gpu_processes[i];
        if (p->used_bytes != UINT64_MAX)
            mf_text_printf(t, "memfit_gpu_process_memory_bytes{gpu=\"%u\",pid=\"%d\"} %llu\n",
                           p->device, (int)p->pid, (unsigned long long)p->used_bytes);
    }
}

bool mf_metrics_format(struct mf_text *out, const struct mf_metrics *m,
                       const struct memfit_manager_status *snap, const struct mf_mem_sample *sample,
                       const struct mf_server_gauges *g)
{
    if (g) {
        gauge_u64(out, "memfit_http_requests_in_progress", "HTTP requests being handled now.",
                  g->connections);
        gauge_u64(out, "memfit_queue_depth", "Embedding requests admitted and waiting for a model.",
                  g->queue_depth);
        gauge_u64(out, "memfit_queue_running", "Embedding requests running on a model.",
                  g->queue_running);
        gauge_u64(out, "memfit_queue_capacity",
                  "Embedding requests admitted at once (waiting or running); more get 429.",
                  g->queue_capacity);
        family(out, "memfit_uptime_seconds", "gauge", "Seconds since the server started.");
        mf_text_printf(out, "memfit_uptime_seconds %.3f\n", (double)g->uptime_ns / 1e9);
        counter_pair(out, "memfit_manifest_reloads_total", "Manifest reloads (SIGHUP), by result.",
                     "result", "ok", g->reloads, "error", g->reload_failures);
        gauge_u64(out, "memfit_http_connections", "HTTP connections open.", g->connections_open);
        counter_pair(out, "memfit_http_connections_cut_total",
                     "Connections closed for a request not received in time, by deadline.",
                     "deadline", "header", g->cut_header_total, "request", g->cut_request_total);
    }
    if (m) {
        format_http(out, m);
        format_gen(out, m);
        format_grpc(out, m);
    }
    if (snap)
        format_manager(out, snap);
    if (sample)
        format_sample(out, sample);
    if (sample && sample->n_gpus)
        format_gpus(out, sample);
    return !out->failed;
}

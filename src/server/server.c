/*
 * The HTTP daemon (include/memfit/server.h): libmicrohttpd, the models the
 * manifest and the command line name, and the life of the server (start,
 * reload, graceful shutdown, signals). The routes live in routes.c.
 *
 * DESIGN. Thread per connection (MHD_USE_THREAD_PER_CONNECTION), bounded by
 * 2 x max_connections, an idle timeout and the deadlines of conn.c (a
 * request's head and body; slow clients): a request may wait many
 * seconds for a model load or run a long inference, and it then blocks its
 * own thread only; an event loop with a small worker pool would need every
 * such wait made asynchronous (suspend/resume) for no gain at the
 * concurrency a memory-bound model server runs at. Idle cost: one listening
 * thread; a connection thread's stack is only touched as deep as it goes.
 * A request's work learns that its client went away from a peek at its
 * socket (recv MSG_PEEK: 0 bytes = closed), and that the server is
 * stopping from a flag, through the memfit_cancel_fn engines call.
 *
 * Models: the manager knows them by name; the server keeps, per name, the
 * engine that runs it and the engine's config. A reload (or gRPC's
 * unloadModel) drops entries into a graveyard, since the manager may still
 * unload them through their config; the manager's on_released frees each one
 * when it is done with it, so ModelMesh's load/unload cycles leave nothing.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <time.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/dynlib.h"
#include "server/internal.h"

void memfit_server_options_default(struct memfit_server_options *o)
{
    memset(o, 0, sizeof(*o));
    o->host = "127.0.0.1";
    o->port = 8080;
    o->max_body_bytes = 32ull * 1024 * 1024;
    o->max_header_bytes = 32 * 1024;
    o->connection_timeout_s = 30;
    o->max_connections = 256;
    o->max_queue = 64;
    o->max_inputs = 256;
    o->max_request_pixels = 64000000;
    o->admission_timeout_ms = -1;
    o->reaper_thread = true;
    o->max_decode_ms = 2000;
    o->header_timeout_s = 10;
    o->request_timeout_s = 60;
    o->max_client_connections = 64;
}

/* ---- The model list ----------------------------------------------------------- */

static void free_model(struct srv_model *m)
{
    if (!m)
        return;
    memfit_engine_model_destroy(m->model);
    for (size_t i = 0; i < m->n_files; i++)
        memfit_free(m->files[i]);
    memfit_free(m->files);
    memfit_free(m->name);
    memfit_free(m->signature);
    memfit_free(m);
}

static void free_list(struct srv_model *m)
{
    while (m) {
        struct srv_model *next = m->next;
        free_model(m);
        m = next;
    }
}

/* Everything that, when it changes, makes a reload replace the model. */
static char *model_signature(const struct memfit_manifest_model *e)
{
    struct mf_text t = {0};
    mf_text_printf(&t, "%s|%s|%lld|%d|%u|%llu/%llu/%llu|", e->family ? e->family : "",
                   e->sha256 ? e->sha256 : "", (long long)e->keep_alive_s, e->pin,
                   e->max_concurrency, (unsigned long long)e->limits.max_batch,
                   (unsigned long long)e->limits.max_image_size,
                   (unsigned long long)e->limits.max_context);
    for (size_t i = 0; i < e->n_sources; i++)
        mf_text_printf(&t, "%s;", e->sources[i]);
    for (size_t i = 0; i < e->n_options; i++)
        mf_text_printf(&t, "%s=%s;", e->options[i].key, e->options[i].value);
    return mf_text_take(&t, NULL);
}

static bool is_local_path(const char *source)
{
    return strstr(source, "://") == NULL || strncmp(source, "file://", 7) == 0;
}

/* Builds the server's record of one manifest entry (not registered yet). */
static enum memfit_status make_model(memfit_server *srv, const struct memfit_manifest *mf,
                                     const struct memfit_manifest_model *e, bool from_manifest,
                                     struct srv_model **out)
{
    struct srv_model *m = memfit_calloc_in(MEMFIT_ALLOC_SERVER, 1, sizeof(*m));
    if (!m)
        return MEMFIT_E_NOMEM;
    m->from_manifest = from_manifest;
    m->name = memfit_strdup(e->name);
    m->signature = model_signature(e);
    m->files =
        memfit_calloc_in(MEMFIT_ALLOC_SERVER, e->n_sources ? e->n_sources : 1, sizeof(*m->files));
    if (!m->name || !m->signature || !m->files) {
        free_model(m);
        return MEMFIT_E_NOMEM;
    }
    for (size_t i = 0; i < e->n_sources; i++) {
        if (!is_local_path(e->sources[i]))
            continue;
        const char *path = e->sources[i] + (strncmp(e->sources[i], "file://", 7) == 0 ? 7 : 0);
        if (!(m->files[m->n_files] = memfit_strdup(path))) {
            free_model(m);
            return MEMFIT_E_NOMEM;
        }
        m->n_files++;
    }
    enum memfit_status st = memfit_engine_model_create(mf, e, &m->model);
    if (st != MEMFIT_OK) {
        free_model(m);
        return st;
    }
    *out = m;
    return MEMFIT_OK;
}

static enum memfit_status register_model(memfit_server *srv, struct srv_model *m)
{
    return memfit_engine_model_register(m->model, srv->mgr);
}

/* Builds the list for `mf` plus the command-line models. *out is a new
 * list (not registered). */
static enum memfit_status build_models(memfit_server *srv, const struct memfit_manifest *mf,
                                       struct srv_model **out)
{
    struct srv_model *head = NULL, **tail = &head;
    enum memfit_status st = MEMFIT_OK;
    for (size_t i = 0; i < mf->n_models && st == MEMFIT_OK; i++) {
        st = make_model(srv, mf, &mf->models[i], true, tail);
        if (st == MEMFIT_OK)
            tail = &(*tail)->next;
    }
    for (size_t i = 0; i < srv->n_sources && st == MEMFIT_OK; i++) {
        char *name = memfit_engine_source_name(srv->sources[i]);
        if (!name) {
            st = MEMFIT_E_NOMEM;
            break;
        }
        for (struct srv_model *m = head; m; m = m->next)
            if (strcmp(m->name, name) == 0)
                st = memfit_fail(MEMFIT_E_EXISTS,
                                 "%s: a model named '%s' already exists (each model file is "
                                 "served under its file name without the extension)",
                                 srv->sources[i], name);
        char *sources[1] = {srv->sources[i]};
        struct memfit_manifest_model e = {
            .name = name,
            .family = (char *)"auto",
            .sources = sources,
            .n_sources = 1,
            .keep_alive_s = MEMFIT_KEEP_ALIVE_DEFAULT,
            .max_concurrency = srv->sources_parallel,
        };
        if (st == MEMFIT_OK)
            st = make_model(srv, mf, &e, false, tail);
        if (st == MEMFIT_OK)
            tail = &(*tail)->next;
        memfit_free(name);
    }
    if (st != MEMFIT_OK) {
        free_list(head);
        return st;
    }
    *out = head;
    return MEMFIT_OK;
}

struct srv_model *mf_server_find_model(memfit_server *srv, const char *name)
{
    for (struct srv_model *m = srv->models; m; m = m->next)
        if (strcmp(m->name, name) == 0)
            return m;
    return NULL;
}

/* The manifest entry of a model added at run time. */
static struct memfit_manifest_model run_time_entry(const char *name, const char *family,
                                                   char **source)
{
    return (struct memfit_manifest_model){
        .name = (char *)name,
        .family = (char *)(family && family[0] ? family : "auto"),
        .sources = source,
        .n_sources = 1,
        .keep_alive_s = MEMFIT_KEEP_ALIVE_NEVER_UNLOAD,
        .pin = true,
    };
}

enum memfit_status mf_server_add_model(memfit_server *srv, const char *name, const char *family,
                                       const char *source, bool *existed)
{
    *existed = false;
    char *sources[1] = {(char *)source};
    struct memfit_manifest_model e = run_time_entry(name, family, sources);
    pthread_mutex_lock(&srv->reload_lock);
    pthread_mutex_lock(&srv->lock);
    struct srv_model *old = mf_server_find_model(srv, name);
    char *signature = model_signature(&e);
    bool same = old && old->dynamic && signature && strcmp(old->signature, signature) == 0;
    pthread_mutex_unlock(&srv->lock);
    memfit_free(signature);
    enum memfit_status st = MEMFIT_OK;
    struct srv_model *m = NULL;
    if (same)
        *existed = true;
    else if (old)
        st = memfit_fail(MEMFIT_E_EXISTS,
                         "a model named '%s' is already served (%s); unload it first or use "
                         "another id",
                         name, old->dynamic ? "from another path" : "from the manifest");
    else if ((st = make_model(srv, srv->manifest, &e, false, &m)) == MEMFIT_OK) {
        m->dynamic = true;
        memfit_engine_model_set_fetch(m->model, NULL, NULL, &m->fetch_cancel);
        if ((st = register_model(srv, m)) != MEMFIT_OK) {
            free_model(m);
        } else {
            pthread_mutex_lock(&srv->lock);
            m->next = srv->models;
            srv->models = m;
            pthread_mutex_unlock(&srv->lock);
        }
    }
    pthread_mutex_unlock(&srv->reload_lock);
    return st;
}

enum memfit_status mf_server_remove_model(memfit_server *srv, const char *name)
{
    pthread_mutex_lock(&srv->reload_lock);
    pthread_mutex_lock(&srv->lock);
    struct srv_model **link = &srv->models;
    while (*link && strcmp((*link)->name, name) != 0)
        link = &(*link)->next;
    struct srv_model *m = *link;
    if (m && m->dynamic) {
        *link = m->next;
        __atomic_store_n(&m->fetch_cancel, MEMFIT_FETCH_CANCEL_DISCARD, __ATOMIC_RELAXED);
        m->next = srv->graveyard; /* the manager may unload it later through its config */
        srv->graveyard = m;
    }
    pthread_mutex_unlock(&srv->lock);
    enum memfit_status st = m && m->dynamic ? memfit_manager_unregister(srv->mgr, name)
                                            : memfit_fail(MEMFIT_E_NOT_FOUND,
                                                          "no model named '%s' was loaded at "
                                                          "run time",
                                                          name);
    pthread_mutex_unlock(&srv->reload_lock);
    return st;
}

enum memfit_status mf_server_plan_source(memfit_server *srv, const char *name, const char *family,
                                         const char *source, struct memfit_engine_plan *out)
{
    char *sources[1] = {(char *)source};
    struct memfit_manifest_model e = run_time_entry(name, family, sources);
    memfit_engine_model *model = NULL;
    pthread_mutex_lock(&srv->reload_lock);
    enum memfit_status st = memfit_engine_model_create(srv->manifest, &e, &model);
    pthread_mutex_unlock(&srv->reload_lock);
    if (st == MEMFIT_OK)
        st = memfit_engine_model_plan(model, out);
    memfit_engine_model_destroy(model);
    return st;
}

/* ---- Budget -------------------------------------------------------------------- */

static enum memfit_status resolve_budget(const memfit_server *srv, const struct memfit_manifest *mf,
                                         uint64_t *out)
{
    struct memfit_budget_settings bs;
    memfit_budget_settings_default(&bs);
    bs.flag_bytes = srv->opt.budget_bytes;
    bs.manifest_bytes = mf->budget_bytes;
    bs.manifest_percent = mf->budget_percent;
    bs.manifest_path = mf->path;
    char source[256], size[32];
    enum memfit_status st = memfit_budget_resolve(&bs, out, source, sizeof(source));
    if (st == MEMFIT_OK)
        memfit_log(MEMFIT_LOG_INFO, "budget: %s (%s)", memfit_format_size(*out, size, sizeof(size)),
                   source);
    return st;
}

/* The manager is done with a removed model: its graveyard entry goes. */
static void on_model_released(const char *name, void *config, void *user)
{
    memfit_server *srv = user;
    (void)name;
    pthread_mutex_lock(&srv->lock);
    struct srv_model **link = &srv->graveyard;
    while (*link && (*link)->model != config)
        link = &(*link)->next;
    struct srv_model *m = *link;
    if (m)
        *link = m->next;
    pthread_mutex_unlock(&srv->lock);
    free_model(m);
}

/* ---- Manager events -> the event ring ------------------------------------------ */

static void on_manager_event(const struct memfit_manager_event *e, void *user)
{
    memfit_server *srv = user;
    struct mf_text t = {0};
    mf_text_printf(&t, "{\"time_ms\":%llu,\"kind\":\"%s\",\"model\":",
                   (unsigned long long)(memfit_wall_ns() / 1000000u),
                   memfit_manager_event_name(e->kind));
    mf_text_json_string(&t, e->model, strlen(e->model));
    mf_text_printf(&t,
                   ",\"bytes\":%llu,\"duration_s\":%.3f,\"budget_free_bytes\":%llu,"
                   "\"budget_bytes\":%llu,\"reason\":",
                   (unsigned long long)e->bytes, (double)e->duration_ns / 1e9,
                   (unsigned long long)e->budget_free_bytes,
                   (unsigned long long)e->budget_size_bytes);
    mf_text_json_string(&t, e->reason, strlen(e->reason));
    mf_text_puts(&t, ",\"message\":");
    mf_text_json_string(&t, e->message, strlen(e->message));
    mf_text_puts(&t, "}");
    char *json = mf_text_take(&t, NULL);
    if (!json)
        return; /* an event lost to memory shortage: the counters still have it */
    pthread_mutex_lock(&srv->lock);
    struct srv_event *slot = &srv->events[srv->event_seq % MF_SERVER_EVENTS];
    memfit_free(slot->json);
    slot->json = json;
    slot->seq = ++srv->event_seq;
    pthread_cond_broadcast(&srv->cond);
    pthread_mutex_unlock(&srv->lock);
}

/* ---- Memory sample ---------------------------------------------------------------- */

/* The GPUs of a sample, each judged with hysteresis (sample_lock held). */
static void gpu_sample(memfit_server *srv, const struct memfit_sample *s, struct mf_mem_sample *m)
{
    if (!s->have_gpu)
        return;
    struct memfit_gpu_thresholds t = memfit_gpu_thresholds_default();
    for (unsigned i = 0; i < s->gpu.n_devices && i < MEMFIT_GPU_MAX_DEVICES; i++) {
        const struct memfit_gpu_device *d = &s->gpu.devices[i];
        srv->gpu_level[i] =
            memfit_gpu_level_next(&t, srv->gpu_level[i], d->used_bytes, d->total_bytes);
        m->gpus[m->n_gpus++] = (struct mf_gpu_sample){
            .index = d->index,
            .used_bytes = d->used_bytes,
            .total_bytes = d->total_bytes,
            .level = srv->gpu_level[i],
        };
    }
    for (unsigned i = 0; i < s->gpu.n_processes && i < MEMFIT_GPU_MAX_PROCESSES; i++) {
        const struct memfit_gpu_process *p = &s->gpu.processes[i];
        m->gpu_processes[m->n_gpu_processes++] = (struct mf_gpu_process_sample){
            .device = p->device, .pid = p->pid, .used_bytes = p->used_bytes};
    }
}

void mf_server_sample(memfit_server *srv, struct mf_mem_sample *out)
{
    pthread_mutex_lock(&srv->sample_lock);
    uint64_t now = memfit_now_ns();
    if (srv->sampler && (srv->sampled_ns == 0 || now - srv->sampled_ns >= 500000000u)) {
        struct memfit_sample *s = srv->raw_sample;
        if (memfit_sampler_read(srv->sampler, s) == MEMFIT_OK) {
            struct mf_mem_sample m = {0};
            m.wall_ms = s->wall_ns / 1000000u;
            m.working_set_bytes = s->working_set_bytes;
            m.in_use_bytes = s->in_use_bytes;
            m.limit_bytes = s->limit_bytes;
            const struct memfit_cgroup *cg = &s->cgroup;
            bool by_kind = s->have_cgroup && s->limit_source == MEMFIT_LIMIT_CGROUP;
            m.anon_bytes = by_kind ? cg->anon_bytes : MEMFIT_SYS_UNKNOWN;
            m.mapped_file_bytes = by_kind ? cg->file_mapped_bytes : MEMFIT_SYS_UNKNOWN;
            m.other_file_bytes = by_kind && cg->file_bytes != MEMFIT_SYS_UNKNOWN &&
                                         cg->file_mapped_bytes != MEMFIT_SYS_UNKNOWN
                                     ? (cg->file_bytes > cg->file_mapped_bytes
                                            ? cg->file_bytes - cg->file_mapped_bytes
                                            : 0)
                                     : MEMFIT_SYS_UNKNOWN;
            m.shmem_bytes = by_kind ? cg->shmem_bytes : MEMFIT_SYS_UNKNOWN;
            m.swap_bytes = by_kind ? cg->swap_bytes : MEMFIT_SYS_UNKNOWN;
            m.rss_bytes = s->have_process ? s->process.rss_bytes : MEMFIT_SYS_UNKNOWN;
            const struct memfit_psi *psi =
                s->have_cgroup && s->cgroup.pressure.present ? &s->cgroup.pressure : &s->psi;
            m.have_psi = psi->present;
            m.psi_some_avg10 = psi->some_avg10;
            m.psi_full_avg10 = psi->full_avg10;
            m.psi_some_total_us = psi->some_total_us;
            m.psi_full_total_us = psi->full_total_us;
            gpu_sample(srv, s, &m);
            srv->sample = m;
            srv->sampled_ns = now;
        }
    }
    *out = srv->sample;
    if (out->wall_ms == 0)
        out->wall_ms = memfit_wall_ns() / 1000000u;
    pthread_mutex_unlock(&srv->sample_lock);
}

/* ---- Life ------------------------------------------------------------------------- */

/* libmicrohttpd's log callback: its format comes from the library. */
static void mhd_log(void *cls, const char *fmt, va_list ap) MEMFIT_PRINTF(2, 0);
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && msg[n - 1] == '\n')
        msg[--n] = '\0';
    memfit_log(MEMFIT_LOG_DEBUG, "http: %s", msg);
}

static enum memfit_status parse_address(const char *host, uint16_t port,
                                        struct sockaddr_storage *ss, bool *ipv6)
{
    memset(ss, 0, sizeof(*ss));
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        *ipv6 = false;
        return MEMFIT_OK;
    }
    const char *h = host;
    char buf[64];
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof(buf)) {
        memcpy(buf, host + 1, n - 2);
        buf[n - 2] = '\0';
        h = buf;
    }
    if (inet_pton(AF_INET6, h, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        *ipv6 = true;
        return MEMFIT_OK;
    }
    return memfit_fail(MEMFIT_E_RANGE,
                       "--host %s: not an IPv4 or IPv6 address (e.g. 127.0.0.1, 0.0.0.0, ::1)",
                       host);
}

bool memfit_server_host_is_loopback(const char *host)
{
    if (!host)
        return false;
    if (strcmp(host, "localhost") == 0)
        return true;
    struct sockaddr_storage ss;
    bool ipv6;
    if (parse_address(host, 0, &ss, &ipv6) != MEMFIT_OK) {
        memfit_clear_error();
        return false;
    }
    if (ipv6)
        return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)&ss)->sin6_addr);
    return (ntohl(((const struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24) == 127;
}

/* Copies a list of strings (NULL entries are skipped); false on no memory. */
static bool copy_list(const char *const *src, size_t n, char ***out, size_t *n_out)
{
    *out = memfit_calloc_in(MEMFIT_ALLOC_SERVER, n + 1, sizeof(**out));
    if (!*out)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!src[i])
            continue;
        if (!((*out)[*n_out] = memfit_strdup(src[i])))
            return false;
        (*n_out)++;
    }
    return true;
}

static void free_list_strings(char **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        memfit_free(list[i]);
    memfit_free(list);
}

/*
 * Plans every model once, off the request path, right after start, and
 * warns about a model that can never fit the budget (it would be refused on
 * every request). A remote model's plan reads its header with Range
 * requests: nothing is downloaded. Models are only freed by
 * memfit_server_destroy, which joins this thread first.
 */
static void *check_models_main(void *arg)
{
    memfit_server *srv = arg;
    size_t n = 0;
    pthread_mutex_lock(&srv->lock);
    for (struct srv_model *m = srv->models; m; m = m->next)
        n++;
    memfit_engine_model **list = memfit_calloc_in(MEMFIT_ALLOC_SERVER, n ? n : 1, sizeof(*list));
    n = 0;
    for (struct srv_model *m = srv->models; list && m; m = m->next)
        list[n++] = m->model;
    pthread_mutex_unlock(&srv->lock);
    uint64_t budget = 0;
    struct memfit_budget_usage u;
    memfit_budget_get_usage(memfit_manager_budget(srv->mgr), &u);
    budget = u.size_bytes;
    for (size_t i = 0; list && i < n && !atomic_load(&srv->stopping); i++) {
        struct memfit_engine_plan p;
        const char *name = memfit_engine_model_name(list[i]);
        if (memfit_engine_model_plan(list[i], &p) != MEMFIT_OK) {
            memfit_log(MEMFIT_LOG_WARN, "model %s: cannot be planned yet: %s", name,
                       memfit_last_error());
            continue;
        }
        uint64_t total = memfit_budget_cost_total(&p.cost);
        char a[32], b[32];
        if (total > budget)
            memfit_log(MEMFIT_LOG_WARN,
                       "model %s can never load: it needs %s (%s plan) but the whole budget is "
                       "%s; raise the budget or use a smaller quantization",
                       name, memfit_format_size(total, a, sizeof(a)), p.plan_source,
                       memfit_format_size(budget, b, sizeof(b)));
        else
            memfit_log(MEMFIT_LOG_INFO, "model %s: planned %s (%s plan), budget %s", name,
                       memfit_format_size(total, a, sizeof(a)), p.plan_source,
                       memfit_format_size(budget, b, sizeof(b)));
    }
    memfit_free(list);
    return NULL;
}

static enum memfit_status start_http(memfit_server *srv)
{
    struct sockaddr_storage ss;
    bool ipv6 = false;
    enum memfit_status st = parse_address(srv->host, srv->opt.port, &ss, &ipv6);
    if (st != MEMFIT_OK)
        return st;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (ipv6)
        flags |= MHD_USE_IPv6;
    /* The logger first: libmicrohttpd reports a bad later option through
     * whatever logger is set when it reads it (stderr before this one). */
    srv->daemon = MHD_start_daemon(
        flags, srv->opt.port, NULL, NULL, mf_server_on_request, srv, MHD_OPTION_EXTERNAL_LOGGER,
        mhd_log, srv, MHD_OPTION_SOCK_ADDR, (const struct sockaddr *)&ss,
        MHD_OPTION_CONNECTION_LIMIT, mf_server_connection_cap(&srv->opt),
        MHD_OPTION_NOTIFY_CONNECTION, mf_server_on_connection, srv, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)srv->opt.connection_timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)srv->opt.max_header_bytes, MHD_OPTION_NOTIFY_COMPLETED, mf_server_on_completed, srv,
        MHD_OPTION_THREAD_STACK_SIZE, (size_t)(1024 * 1024), MHD_OPTION_LISTENING_ADDRESS_REUSE,
        (unsigned)1, MHD_OPTION_END);
    if (!srv->daemon) {
        int err = errno;
        return memfit_fail(MEMFIT_E_IO, "cannot listen on %s:%u: %s", srv->host,
                           (unsigned)srv->opt.port, err ? strerror(err) : "libmicrohttpd failed");
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = info ? info->port : srv->opt.port;
    enum memfit_status wd = mf_server_conns_start(srv);
    if (wd != MEMFIT_OK)
        return wd;
    if (!srv->loopback && !srv->api_key) {
        bool v6 = strchr(srv->host, ':') != NULL && srv->host[0] != '[';
        memfit_log(MEMFIT_LOG_WARN,
                   "listening on %s%s%s:%u without an API key: anyone who can reach "
                   "%s%s%s:%u can run and unload models (set MEMFIT_API_KEY, or bind to "
                   "127.0.0.1)",
                   v6 ? "[" : "", srv->host, v6 ? "]" : "", (unsigned)srv->port, v6 ? "[" : "",
                   srv->host, v6 ? "]" : "", (unsigned)srv->port);
    }
    /* memfit serves plain HTTP (TLS belongs to a proxy in front), yet Debian's
     * libmicrohttpd links GnuTLS, whose initialisation left ~2 MB of the TLS
     * stack resident: give those pages back. */
    static const char *const tls_stack[] = {"libgnutls",    "libp11-kit", "libnettle",
                                            "libhogweed",   "libgmp",     "libtasn1",
                                            "libunistring", "libidn2",    "libffi"};
    size_t released = mf_dl_release_clean_pages(tls_stack, sizeof(tls_stack) / sizeof(*tls_stack));
    memfit_log(MEMFIT_LOG_DEBUG, "server: released %zu kB of the TLS libraries' pages",
               released / 1024);
    return MEMFIT_OK;
}

static enum memfit_status load_manifest(memfit_server *srv, struct memfit_manifest **out)
{
    if (srv->manifest_path)
        return memfit_manifest_load(srv->manifest_path, out);
    static const char empty[] = "models: []\n";
    return memfit_manifest_parse_string(empty, sizeof(empty) - 1, "(no manifest)", out);
}

void mf_server_cond_init(pthread_cond_t *cond)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(cond, &ca);
    pthread_condattr_destroy(&ca);
}

static char *copy_or_null(const char *s)
{
    return s ? memfit_strdup(s) : NULL;
}

enum memfit_status memfit_server_create(const struct memfit_server_options *options,
                                        memfit_server **out)
{
    if (!options || !out)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_server_create: NULL argument");
    if (options->max_connections == 0 || options->max_queue == 0 || options->max_inputs == 0 ||
        options->max_body_bytes == 0 || options->max_request_pixels == 0)
        return memfit_fail(MEMFIT_E_RANGE,
                           "server: max_connections, max_queue, max_inputs, max_body_bytes and "
                           "max_request_pixels "
                           "must be at least 1");
    enum memfit_status loaded = mf_server_load_mhd();
    if (loaded != MEMFIT_OK)
        return loaded;
    mf_json_init();
    memfit_server *srv = memfit_calloc_in(MEMFIT_ALLOC_SERVER, 1, sizeof(*srv));
    if (!srv)
        return MEMFIT_E_NOMEM;
    srv->opt = *options;
    srv->start_ns = memfit_now_ns();
    srv->start_wall_ns = memfit_wall_ns();
    pthread_mutex_init(&srv->lock, NULL);
    pthread_mutex_init(&srv->sample_lock, NULL);
    pthread_mutex_init(&srv->gpu_lock, NULL);
    pthread_mutex_init(&srv->reload_lock, NULL);
    mf_server_cond_init(&srv->cond);
    struct mf_conn_limits limits = {
        .header_timeout_ns = (uint64_t)options->header_timeout_s * 1000000000u,
        .request_timeout_ns = (uint64_t)options->request_timeout_s * 1000000000u,
        .max_per_client = options->max_client_connections,
    };
    enum memfit_status st = mf_conns_init(&srv->conns, &limits, mf_server_connection_cap(options));
    if (st != MEMFIT_OK)
        goto fail;
    st = MEMFIT_E_NOMEM;
    srv->host = memfit_strdup(options->host ? options->host : "127.0.0.1");
    srv->manifest_path = copy_or_null(options->manifest_path);
    srv->api_key = options->api_key && options->api_key[0] ? memfit_strdup(options->api_key) : NULL;
    srv->raw_sample = memfit_calloc_in(MEMFIT_ALLOC_SERVER, 1, sizeof(*srv->raw_sample));
    srv->sources =
        memfit_calloc_in(MEMFIT_ALLOC_SERVER, options->n_model_sources + 1, sizeof(*srv->sources));
    if (!srv->host || (options->manifest_path && !srv->manifest_path) ||
        (options->api_key && options->api_key[0] && !srv->api_key) || !srv->raw_sample ||
        !srv->sources)
        goto fail;
    for (size_t i = 0; i < options->n_model_sources; i++) {
        if (!(srv->sources[i] = memfit_strdup(options->model_sources[i])))
            goto fail;
        srv->n_sources++;
    }
    srv->sources_parallel = options->model_parallel;
    if (!copy_list(options->allow_hosts, options->n_allow_hosts, &srv->allow_hosts,
                   &srv->n_allow_hosts) ||
        !copy_list(options->allow_origins, options->n_allow_origins, &srv->allow_origins,
                   &srv->n_allow_origins))
        goto fail;
    srv->loopback = memfit_server_host_is_loopback(srv->host);
    srv->opt.host = srv->host;
    srv->opt.manifest_path = srv->manifest_path;
    srv->opt.api_key = NULL; /* only srv->api_key holds it */
    srv->opt.model_sources = NULL;
    srv->opt.allow_hosts = NULL; /* srv->allow_hosts holds them */
    srv->opt.allow_origins = NULL;
    srv->opt.grpc_address = NULL; /* used only here, in memfit_server_create */

    struct memfit_manifest *mf = NULL;
    st = load_manifest(srv, &mf);
    if (st != MEMFIT_OK)
        goto fail;
    struct memfit_manager_options mo;
    memfit_manager_options_default(&mo);
    memfit_manifest_apply(mf, &mo);
    if (options->admission_timeout_ms >= 0)
        mo.admission_timeout_ms = options->admission_timeout_ms;
    mo.reaper_thread = options->reaper_thread;
    mo.on_event = on_manager_event;
    mo.event_user = srv;
    mo.on_released = on_model_released;
    mo.released_user = srv;
    if ((st = memfit_manager_options_from_config(&mo)) != MEMFIT_OK ||
        (st = resolve_budget(srv, mf, &mo.budget_bytes)) != MEMFIT_OK ||
        (st = memfit_manager_create(&mo, &srv->mgr)) != MEMFIT_OK ||
        (st = build_models(srv, mf, &srv->models)) != MEMFIT_OK) {
        memfit_manifest_free(mf);
        goto fail;
    }
    srv->admission_timeout_ms = mo.admission_timeout_ms;
    for (struct srv_model *m = srv->models; m && st == MEMFIT_OK; m = m->next)
        st = register_model(srv, m);
    srv->manifest = mf;
    if (st != MEMFIT_OK)
        goto fail;

    struct memfit_sampler_options so = memfit_sampler_options_default();
    so.pid = getpid();
    so.gpu = options->gpu; /* one NVML session for the server's life, not one per scrape */
    if (memfit_sampler_create(&so, &srv->sampler) != MEMFIT_OK)
        srv->sampler = NULL; /* samples are then empty: the server still serves */

    if ((st = start_http(srv)) != MEMFIT_OK)
        goto fail;
    if (options->grpc_address && options->grpc_address[0] &&
        (st = mf_grpc_start(srv, options->grpc_address, &srv->grpc)) != MEMFIT_OK)
        goto fail;
    srv->check_started = pthread_create(&srv->check_thread, NULL, check_models_main, srv) == 0;
    if (memfit_manager_load_pinned(srv->mgr, -1) != MEMFIT_OK)
        memfit_log(MEMFIT_LOG_WARN, "pinned model: %s", memfit_last_error());
    *out = srv;
    return MEMFIT_OK;
fail : {
    char message[512];
    snprintf(message, sizeof(message), "%s", memfit_last_error());
    memfit_server_destroy(srv);
    return st == MEMFIT_E_NOMEM ? MEMFIT_E_NOMEM : memfit_fail(st, "%s", message);
}
}

uint16_t memfit_server_port(const memfit_server *srv)
{
    return srv->port;
}

uint16_t memfit_server_grpc_port(const memfit_server *srv)
{
    return srv->grpc ? mf_grpc_port(srv->grpc) : 0;
}

memfit_manager *memfit_server_manager(memfit_server *srv)
{
    return srv->mgr;
}

enum memfit_status memfit_server_reload(memfit_server *srv)
{
    pthread_mutex_lock(&srv->reload_lock);
    struct memfit_manifest *mf = NULL;
    struct srv_model *fresh = NULL;
    enum memfit_status st = load_manifest(srv, &mf);
    if (st == MEMFIT_OK)
        st = build_models(srv, mf, &fresh);
    if (st != MEMFIT_OK) {
        memfit_manifest_free(mf);
        pthread_mutex_lock(&srv->lock);
        srv->reload_failures++;
        pthread_mutex_unlock(&srv->lock);
        pthread_mutex_unlock(&srv->reload_lock);
        return st;
    }
    /* Old models the new list does not keep as they are: unregister. */
    unsigned added = 0, removed = 0, kept = 0;
    pthread_mutex_lock(&srv->lock);
    struct srv_model *old = srv->models, *keep = NULL, **keep_tail = &keep;
    srv->models = NULL;
    pthread_mutex_unlock(&srv->lock);
    while (old) {
        struct srv_model *m = old, *twin = NULL;
        old = old->next;
        m->next = NULL;
        for (struct srv_model *f = fresh; f; f = f->next)
            if (strcmp(f->name, m->name) == 0)
                twin = f;
        if (m->dynamic && twin) { /* the manifest's model of that name loses */
            memfit_log(MEMFIT_LOG_WARN,
                       "reload: model %s is kept as loaded at run time; the manifest's entry of "
                       "that name is ignored until it is unloaded",
                       m->name);
            twin->kept = true;
        }
        if (m->dynamic || (twin && strcmp(twin->signature, m->signature) == 0)) {
            if (twin)
                twin->kept = true;
            *keep_tail = m;
            keep_tail = &m->next;
            kept++;
            continue;
        }
        pthread_mutex_lock(&srv->lock); /* first: unregister may release it at once */
        m->next = srv->graveyard;
        srv->graveyard = m;
        pthread_mutex_unlock(&srv->lock);
        memfit_manager_unregister(srv->mgr, m->name);
        removed++;
    }
    /* New and changed ones: register. */
    struct srv_model **tail = keep_tail;
    while (fresh) {
        struct srv_model *f = fresh;
        fresh = fresh->next;
        f->next = NULL;
        if (f->kept) {
            free_model(f);
            continue;
        }
        enum memfit_status rs = register_model(srv, f);
        if (rs != MEMFIT_OK) {
            memfit_log(MEMFIT_LOG_ERROR, "reload: model %s: %s", f->name, memfit_last_error());
            free_model(f);
            continue;
        }
        *tail = f;
        tail = &f->next;
        added++;
    }
    pthread_mutex_lock(&srv->lock);
    srv->models = keep;
    srv->reloads++;
    pthread_mutex_unlock(&srv->lock);
    uint64_t budget;
    if (resolve_budget(srv, mf, &budget) == MEMFIT_OK)
        memfit_budget_set_size(memfit_manager_budget(srv->mgr), budget);
    else
        memfit_log(MEMFIT_LOG_ERROR, "reload: budget kept: %s", memfit_last_error());
    memfit_log(MEMFIT_LOG_INFO, "manifest reloaded: %u model(s) kept, %u added, %u removed", kept,
               added, removed);
    memfit_manifest_free(srv->manifest);
    srv->manifest = mf;
    pthread_mutex_unlock(&srv->reload_lock);
    memfit_manager_load_pinned(srv->mgr, -1);
    return MEMFIT_OK;
}

unsigned memfit_server_shutdown(memfit_server *srv, uint64_t grace_ms)
{
    if (!srv || !srv->daemon)
        return 0;
    pthread_mutex_lock(&srv->lock);
    atomic_store(&srv->stopping, true);
    pthread_cond_broadcast(&srv->cond); /* event streams end */
    pthread_mutex_unlock(&srv->lock);
    MHD_socket listen_fd = MHD_quiesce_daemon(srv->daemon);
    mf_grpc_quiesce(srv->grpc);
    uint64_t deadline = memfit_now_ns() + grace_ms * 1000000u;
    while (atomic_load(&srv->active) > 0 && memfit_now_ns() < deadline) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    unsigned left = atomic_load(&srv->active);
    if (left)
        memfit_log(MEMFIT_LOG_WARN,
                   "shutdown: %u request(s) still running after %llu ms: cancelled", left,
                   (unsigned long long)grace_ms);
    atomic_store(&srv->cancel_all, true);
    mf_grpc_stop(srv->grpc); /* its inference calls go through HTTP: stopped first */
    srv->grpc = NULL;
    MHD_stop_daemon(srv->daemon);
    srv->daemon = NULL;
    mf_server_conns_stop(srv); /* after the daemon: deadlines hold through the grace period */
    if (listen_fd != MHD_INVALID_SOCKET)
        close(listen_fd);
    return left;
}

enum memfit_status mf_server_report(memfit_server *srv, struct memfit_report *out)
{
    struct memfit_report_options o;
    memfit_report_options_default(&o);
    o.pid = getpid();
    o.gpu = srv->opt.gpu;
    o.top_n = 0;
    if (!o.gpu)
        return memfit_report_collect(&o, out);
    /* One session for the server's life: NVML's init per request costs
     * milliseconds, and the dlopen'd library stays loaded anyway. */
    pthread_mutex_lock(&srv->gpu_lock);
    enum memfit_status st = srv->gpu ? MEMFIT_OK : memfit_gpu_open(&srv->gpu);
    if (st == MEMFIT_OK) {
        o.gpu_session = srv->gpu;
        st = memfit_report_collect(&o, out);
    }
    pthread_mutex_unlock(&srv->gpu_lock);
    return st;
}

void memfit_server_destroy(memfit_server *srv)
{
    if (!srv)
        return;
    memfit_server_shutdown(srv, 0);
    if (srv->check_started)
        pthread_join(srv->check_thread, NULL);
    mf_grpc_stop(srv->grpc);          /* a server that never listened on HTTP */
    memfit_manager_destroy(srv->mgr); /* unloads through the configs freed below */
    memfit_manifest_free(srv->manifest);
    free_list(srv->models);
    free_list(srv->graveyard);
    mf_metrics_free(&srv->metrics);
    memfit_sampler_destroy(srv->sampler);
    memfit_gpu_close(srv->gpu);
    for (size_t i = 0; i < MF_SERVER_EVENTS; i++)
        memfit_free(srv->events[i].json);
    for (size_t i = 0; i < srv->n_sources; i++)
        memfit_free(srv->sources[i]);
    memfit_free(srv->sources);
    free_list_strings(srv->allow_hosts, srv->n_allow_hosts);
    free_list_strings(srv->allow_origins, srv->n_allow_origins);
    mf_conns_destroy(&srv->conns);
    memfit_free(srv->raw_sample);
    memfit_free(srv->host);
    memfit_free(srv->manifest_path);
    if (srv->api_key) {
        memset(srv->api_key, 0, strlen(srv->api_key));
        memfit_free(srv->api_key);
    }
    pthread_cond_destroy(&srv->cond);
    pthread_mutex_destroy(&srv->reload_lock);
    pthread_mutex_destroy(&srv->gpu_lock);
    pthread_mutex_destroy(&srv->sample_lock);
    pthread_mutex_destroy(&srv->lock);
    memfit_free(srv);
}

/* ---- Signals ------------------------------------------------------------------------ */

static void server_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
}

enum memfit_status memfit_server_block_signals(void)
{
    sigset_t set;
    server_signals(&set);
    int err = pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (err)
        return memfit_fail(MEMFIT_E_IO, "cannot block signals: %s", strerror(err));
    return MEMFIT_OK;
}

void memfit_server_drain(memfit_server *srv)
{
    if (srv)
        atomic_store(&srv->draining, true);
}

/* Drains for the options' delay; a SIGTERM/SIGINT in `set` ends it early. */
static void drain_for_delay(memfit_server *srv, const sigset_t *set, int sig)
{
    uint64_t delay_ms = srv->opt.drain_delay_ms;
    memfit_server_drain(srv);
    memfit_log(MEMFIT_LOG_INFO,
               "%s: draining for %llu ms (/ready answers 503, requests are still served; "
               "another signal stops at once), then shutting down",
               sig == SIGTERM ? "SIGTERM" : "SIGINT", (unsigned long long)delay_ms);
    uint64_t deadline = memfit_now_ns() + delay_ms * 1000000u;
    for (uint64_t now; (now = memfit_now_ns()) < deadline;) {
        uint64_t left = deadline - now;
        struct timespec ts = {(time_t)(left / 1000000000u), (long)(left % 1000000000u)};
        int got = sigtimedwait(set, NULL, &ts);
        if (got == SIGTERM || got == SIGINT) {
            memfit_log(MEMFIT_LOG_INFO, "second signal: the drain ends now");
            return;
        }
    }
}

int memfit_server_run(memfit_server *srv, uint64_t grace_ms)
{
    sigset_t set;
    server_signals(&set);
    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            if (memfit_server_reload(srv) != MEMFIT_OK)
                memfit_log(MEMFIT_LOG_ERROR, "reload failed, keeping the old models: %s",
                           memfit_last_error());
            continue;
        }
        if (srv->opt.drain_delay_ms)
            drain_for_delay(srv, &set, sig);
        memfit_log(MEMFIT_LOG_INFO, "%s: shutting down (grace %llu ms)",
                   sig == SIGTERM ? "SIGTERM" : "SIGINT", (unsigned long long)grace_ms);
        memfit_server_shutdown(srv, grace_ms);
        return sig;
    }
}

/*
 * The LLM driver: plans, loads and unloads Qwen2/LLaMA models for the
 * manager (see "The LLM driver" in memfit/manager.h).
 *
 * A loaded model owns a fixed set of sessions, each with its KV cache and
 * workspace in one anonymous mapping, all of them reserved with the model:
 * a request never allocates, so a generation that was admitted cannot fail
 * half-way for memory, and unloading gives everything back with munmap.
 * The number of sessions is the model's max_concurrency (1 when it is
 * unlimited: requests then take turns on the one session).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "memfit/format.h"
#include "memfit/manager.h"

struct memfit_llm_driver_config {
    char *name;
    char *path;
    struct memfit_llm_options opts;
    unsigned n_sessions;
};

struct llm_loaded {
    memfit_llm_driver_config *cfg;
    memfit_llm *model;
    memfit_tokenizer *tok;
    memfit_llm_session **sessions;
    bool *in_use;
    unsigned n_sessions;
    pthread_mutex_t lock;
    pthread_cond_t freed;
};

/* ---- Configuration -------------------------------------------------------- */

void memfit_llm_driver_config_free(memfit_llm_driver_config *cfg)
{
    if (!cfg)
        return;
    memfit_free(cfg->name);
    memfit_free(cfg->path);
    memfit_free(cfg);
}

static enum memfit_status parse_u32(const char *where, const struct memfit_manifest_model *model,
                                    const struct memfit_manifest_option *o, uint32_t max,
                                    uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(o->value, &end, 10);
    if (errno || end == o->value || *end || v == 0 || v > max || o->value[0] == '-')
        return memfit_fail(MEMFIT_E_FORMAT, "%s:%u: model '%s': %s '%s': expected 1 to %u", where,
                           model->line, model->name, o->key, o->value, max);
    *out = (uint32_t)v;
    return MEMFIT_OK;
}

static enum memfit_status parse_option(memfit_llm_driver_config *cfg, const char *where,
                                       const struct memfit_manifest_model *model,
                                       const struct memfit_manifest_option *o)
{
    if (strcmp(o->key, "ctx") == 0)
        return parse_u32(where, model, o, 1u << 24, &cfg->opts.n_ctx);
    if (strcmp(o->key, "batch") == 0)
        return parse_u32(where, model, o, 4096, &cfg->opts.n_batch);
    if (strcmp(o->key, "threads") == 0) {
        uint32_t n;
        enum memfit_status st = parse_u32(where, model, o, 1024, &n);
        cfg->opts.n_threads = n;
        return st;
    }
    if (strcmp(o->key, "kv") == 0) {
        if (strcasecmp(o->value, "f16") == 0)
            cfg->opts.kv_type = MEMFIT_TYPE_F16;
        else if (strcasecmp(o->value, "q8_0") == 0)
            cfg->opts.kv_type = MEMFIT_TYPE_Q8_0;
        else
            return memfit_fail(MEMFIT_E_FORMAT, "%s:%u: model '%s': kv '%s': expected f16 or q8_0",
                               where, model->line, model->name, o->value);
        return MEMFIT_OK;
    }
    return memfit_fail(MEMFIT_E_FORMAT,
                       "%s:%u: model '%s': unknown option '%s' for an LLM (known: ctx, kv, "
                       "threads, batch)",
                       where, model->line, model->name, o->key);
}

static char *resolve_source(const char *manifest_path, const char *source)
{
    if (strncmp(source, "file://", 7) == 0)
        source += 7;
    if (source[0] == '/' || !manifest_path)
        return memfit_strdup(source);
    const char *slash = strrchr(manifest_path, '/');
    if (!slash)
        return memfit_strdup(source);
    return memfit_asprintf("%.*s/%s", (int)(slash - manifest_path), manifest_path, source);
}

bool memfit_llm_driver_family(const char *family)
{
    return family && (strcasecmp(family, "qwen2") == 0 || strcasecmp(family, "llama") == 0 ||
                      strcasecmp(family, "llm") == 0);
}

enum memfit_status memfit_llm_driver_config_create(const struct memfit_manifest *mf,
                                                   const struct memfit_manifest_model *model,
                                                   memfit_llm_driver_config **out)
{
    const char *where = mf->path ? mf->path : "manifest";
    if (!memfit_llm_driver_family(model->family))
        return memfit_fail(MEMFIT_E_UNSUPPORTED,
                           "%s:%u: model '%s': family '%s' is not an LLM (known: qwen2, llama)",
                           where, model->line, model->name, model->family ? model->family : "");
    if (model->n_sources == 0)
        return memfit_fail(MEMFIT_E_FORMAT, "%s:%u: model '%s': no source", where, model->line,
                           model->name);
    const char *src = model->sources[0];
    if (strstr(src, "://") && strncmp(src, "file://", 7) != 0)
        return memfit_fail(MEMFIT_E_UNSUPPORTED,
                           "%s:%u: model '%s': %s: LLMs are loaded from local GGUF files for now "
                           "(fetch it first: memfit pull)",
                           where, model->line, model->name, src);
    memfit_llm_driver_config *cfg = memfit_calloc(1, sizeof(*cfg));
    if (!cfg)
        return MEMFIT_E_NOMEM;
    memfit_llm_options_default(&cfg->opts);
    if (model->limits.max_context)
        cfg->opts.n_ctx = model->limits.max_context > (1u << 24)
                              ? (1u << 24)
                              : (uint32_t)model->limits.max_context;
    cfg->n_sessions = model->max_concurrency ? model->max_concurrency : 1;
    cfg->name = memfit_strdup(model->name);
    cfg->path = resolve_source(mf->path, src);
    enum memfit_status st = cfg->name && cfg->path ? MEMFIT_OK : MEMFIT_E_NOMEM;
    for (size_t i = 0; st == MEMFIT_OK && i < model->n_options; i++)
        st = parse_option(cfg, where, model, &model->options[i]);
    if (st != MEMFIT_OK) {
        memfit_llm_driver_config_free(cfg);
        return st;
    }
    *out = cfg;
    return MEMFIT_OK;
}

const char *memfit_llm_driver_config_path(const memfit_llm_driver_config *cfg)
{
    return cfg->path;
}

/* ---- Plan, load, unload ------------------------------------------------------ */

static enum memfit_status drv_plan(void *config, const char *identity,
                                   struct memfit_budget_cost *out)
{
    (void)identity;
    memfit_llm_driver_config *cfg = config;
    struct memfit_tensors_options to;
    memfit_tensors_options_default(&to);
    memfit_tensors *set;
    enum memfit_status st = memfit_tensors_open(cfg->path, &to, &set);
    if (st != MEMFIT_OK)
        return st;
    struct memfit_llm_info info;
    struct memfit_llm_plan plan;
    st = memfit_llm_detect(set, &info);
    memfit_tensors_close(set);
    if (st == MEMFIT_OK)
        st = memfit_llm_plan_for(&info, &cfg->opts, &plan);
    if (st != MEMFIT_OK)
        return memfit_fail(st, "model '%s': %s", cfg->name, memfit_last_error());
    memset(out, 0, sizeof(*out));
    out->bytes[MEMFIT_BUDGET_WEIGHTS] = plan.weight_bytes;
    out->bytes[MEMFIT_BUDGET_CONVERTED_WEIGHTS] = plan.converted_bytes;
    out->bytes[MEMFIT_BUDGET_KV_CACHE] = plan.kv_bytes * cfg->n_sessions;
    out->bytes[MEMFIT_BUDGET_WORKSPACE] = plan.work_bytes * cfg->n_sessions;
    return MEMFIT_OK;
}

static void drop_page_cache(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
}

static void loaded_free(struct llm_loaded *L)
{
    for (unsigned i = 0; L->sessions && i < L->n_sessions; i++)
        memfit_llm_session_free(L->sessions[i]);
    memfit_free(L->sessions);
    memfit_free(L->in_use);
    memfit_tokenizer_free(L->tok);
    memfit_llm_close(L->model);
    memfit_free(L);
}

static enum memfit_status drv_load(void *config, const char *identity,
                                   const struct memfit_budget_cost *reserved, void **out_model)
{
    (void)identity;
    (void)reserved;
    memfit_llm_driver_config *cfg = config;
    struct llm_loaded *L = memfit_calloc(1, sizeof(*L));
    if (!L)
        return MEMFIT_E_NOMEM;
    L->cfg = cfg;
    enum memfit_status st = memfit_llm_open(cfg->path, &L->model);
    if (st == MEMFIT_OK)
        st = memfit_tokenizer_from_gguf(memfit_llm_tensors(L->model), &L->tok);
    if (st == MEMFIT_OK) {
        L->sessions = memfit_calloc(cfg->n_sessions, sizeof(*L->sessions));
        L->in_use = memfit_calloc(cfg->n_sessions, sizeof(*L->in_use));
        if (!L->sessions || !L->in_use)
            st = MEMFIT_E_NOMEM;
    }
    for (unsigned i = 0; st == MEMFIT_OK && i < cfg->n_sessions; i++) {
        st = memfit_llm_session_create(L->model, &cfg->opts, &L->sessions[i]);
        L->n_sessions += st == MEMFIT_OK;
    }
    if (st != MEMFIT_OK) {
        loaded_free(L);
        return st;
    }
    pthread_mutex_init(&L->lock, NULL);
    pthread_cond_init(&L->freed, NULL);
    *out_model = L;
    return MEMFIT_OK;
}

static void drv_unload(void *config, void *model)
{
    memfit_llm_driver_config *cfg = config;
    struct llm_loaded *L = model;
    pthread_mutex_destroy(&L->lock);
    pthread_cond_destroy(&L->freed);
    loaded_free(L);
    drop_page_cache(cfg->path);
    memfit_heap_trim();
}

const struct memfit_model_driver memfit_llm_driver = {
    .family = "llm",
    .plan = drv_plan,
    .fetch = NULL,
    .load = drv_load,
    .unload = drv_unload,
};

/* ---- Using a loaded model ------------------------------------------------------ */

memfit_llm *memfit_llm_driver_model(void *loaded)
{
    return ((struct llm_loaded *)loaded)->model;
}

const memfit_tokenizer *memfit_llm_driver_tokenizer(void *loaded)
{
    return ((struct llm_loaded *)loaded)->tok;
}

uint32_t memfit_llm_driver_context(void *loaded)
{
    const struct llm_loaded *L = loaded;
    uint32_t n_ctx = L->cfg->opts.n_ctx;
    if (n_ctx == 0) {
        struct memfit_llm_info info;
        memfit_llm_get_info(L->model, &info);
        n_ctx = info.n_ctx_train < 4096 ? info.n_ctx_train : 4096;
    }
    return n_ctx;
}

memfit_llm_session *memfit_llm_driver_session_acquire(void *loaded)
{
    struct llm_loaded *L = loaded;
    pthread_mutex_lock(&L->lock);
    for (;;) {
        for (unsigned i = 0; i < L->n_sessions; i++) {
            if (!L->in_use[i]) {
                L->in_use[i] = true;
                pthread_mutex_unlock(&L->lock);
                (void)memfit_llm_session_truncate(L->sessions[i], 0);
                return L->sessions[i];
            }
        }
        pthread_cond_wait(&L->freed, &L->lock);
    }
}

void memfit_llm_driver_session_release(void *loaded, memfit_llm_session *session)
{
    struct llm_loaded *L = loaded;
    pthread_mutex_lock(&L->lock);
    for (unsigned i = 0; i < L->n_sessions; i++)
        if (L->sessions[i] == session)
            L->in_use[i] = false;
    pthread_cond_signal(&L->freed);
    pthread_mutex_unlock(&L->lock);
}

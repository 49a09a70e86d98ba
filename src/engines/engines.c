/*
 * A manager with its models (memfit/engines.h, "A manager with models"):
 * what `serve`, `run`, `models`, `embed`, `generate` and `chat` open, so
 * they all get one budget policy, one manager and the same models.
 */
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "engines/family.h"

struct memfit_engines {
    struct memfit_manifest *manifest;
    memfit_manager *mgr;
    memfit_engine_model **models;
    size_t n_models;
    uint64_t budget_bytes;
    char budget_source[256];
};

void memfit_engines_options_default(struct memfit_engines_options *o)
{
    memset(o, 0, sizeof(*o));
    o->admission_timeout_ms = -1;
}

void memfit_engines_close(memfit_engines *e)
{
    if (!e)
        return;
    memfit_manager_destroy(e->mgr);
    for (size_t i = 0; i < e->n_models; i++)
        memfit_engine_model_destroy(e->models[i]);
    memfit_free(e->models);
    memfit_manifest_free(e->manifest);
    memfit_free(e);
}

/* The one budget policy (memfit_budget_resolve), as every entry point uses it. */
static enum memfit_status resolve_budget(memfit_engines *e, const struct memfit_engines_options *o)
{
    struct memfit_budget_settings bs;
    memfit_budget_settings_default(&bs);
    bs.flag_bytes = o->budget_bytes;
    if (o->budget_flag)
        bs.flag_text = o->budget_flag;
    bs.manifest_bytes = e->manifest->budget_bytes;
    bs.manifest_percent = e->manifest->budget_percent;
    bs.manifest_path = e->manifest->path;
    return memfit_budget_resolve(&bs, &e->budget_bytes, e->budget_source, sizeof(e->budget_source));
}

static enum memfit_status add_model(memfit_engines *e, const struct memfit_manifest_model *entry)
{
    for (size_t i = 0; i < e->n_models; i++)
        if (strcmp(memfit_engine_model_name(e->models[i]), entry->name) == 0)
            return memfit_fail(MEMFIT_E_EXISTS,
                               "%s: a model named '%s' already exists (a model named on the "
                               "command line is served under its file name without the "
                               "extension)",
                               entry->sources && entry->n_sources ? entry->sources[0] : "",
                               entry->name);
    memfit_engine_model *m;
    enum memfit_status st = memfit_engine_model_create(e->manifest, entry, &m);
    if (st != MEMFIT_OK)
        return st;
    if ((st = memfit_engine_model_register(m, e->mgr)) != MEMFIT_OK) {
        memfit_engine_model_destroy(m);
        return st;
    }
    e->models[e->n_models++] = m;
    return MEMFIT_OK;
}

/* "key=value" strings as manifest options (pointing into `text`). */
static enum memfit_status split_options(const char *const *text, size_t n,
                                        struct memfit_manifest_option *out, char **storage)
{
    for (size_t i = 0; i < n; i++) {
        const char *eq = strchr(text[i], '=');
        if (!eq || eq == text[i])
            return memfit_fail(MEMFIT_E_INVALID, "option '%s': expected KEY=VALUE", text[i]);
        if (!(storage[i] = memfit_strdup(text[i])))
            return MEMFIT_E_NOMEM;
        storage[i][eq - text[i]] = '\0';
        out[i].key = storage[i];
        out[i].value = storage[i] + (eq - text[i]) + 1;
    }
    return MEMFIT_OK;
}

static enum memfit_status add_sources(memfit_engines *e, const struct memfit_engines_options *o)
{
    struct memfit_manifest_option *opts = memfit_calloc(o->n_options + 1, sizeof(*opts));
    char **storage = memfit_calloc(o->n_options + 1, sizeof(*storage));
    enum memfit_status st = opts && storage ? MEMFIT_OK : MEMFIT_E_NOMEM;
    if (st == MEMFIT_OK)
        st = split_options(o->options, o->n_options, opts, storage);
    for (size_t i = 0; st == MEMFIT_OK && i < o->n_sources; i++) {
        char *name = memfit_engine_source_name(o->sources[i]);
        char *sources[1] = {(char *)o->sources[i]};
        struct memfit_manifest_model entry = {
            .name = name,
            .family = (char *)(o->family ? o->family : "auto"),
            .sources = sources,
            .n_sources = 1,
            .options = opts,
            .n_options = o->n_options,
            .keep_alive_s = MEMFIT_KEEP_ALIVE_DEFAULT,
        };
        st = name ? add_model(e, &entry) : MEMFIT_E_NOMEM;
        memfit_free(name);
    }
    for (size_t i = 0; storage && i < o->n_options; i++)
        memfit_free(storage[i]);
    memfit_free(storage);
    memfit_free(opts);
    return st;
}

enum memfit_status memfit_engines_open(const struct memfit_engines_options *o, memfit_engines **out)
{
    if (!o || !out)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_engines_open: NULL argument");
    memfit_engines *e = memfit_calloc(1, sizeof(*e));
    if (!e)
        return MEMFIT_E_NOMEM;
    enum memfit_status st = o->manifest_path
                                ? memfit_manifest_load(o->manifest_path, &e->manifest)
                                : memfit_manifest_parse_string("", 0, "command line", &e->manifest);
    if (st == MEMFIT_OK)
        st = resolve_budget(e, o);
    struct memfit_manager_options mo;
    memfit_manager_options_default(&mo);
    if (st == MEMFIT_OK) {
        const struct memfit_manifest *mf = e->manifest;
        mo.budget_bytes = e->budget_bytes;
        memfit_manifest_apply(mf, &mo);
        if (o->admission_timeout_ms >= 0)
            mo.admission_timeout_ms = o->admission_timeout_ms;
        mo.reaper_thread = o->reaper_thread;
        mo.on_event = o->on_event;
        mo.event_user = o->event_user;
        st = memfit_manager_options_from_config(&mo);
    }
    if (st == MEMFIT_OK)
        st = memfit_manager_create(&mo, &e->mgr);
    if (st == MEMFIT_OK) {
        size_t n = e->manifest->n_models + o->n_sources;
        e->models = memfit_calloc(n ? n : 1, sizeof(*e->models));
        if (!e->models)
            st = MEMFIT_E_NOMEM;
    }
    for (size_t i = 0; st == MEMFIT_OK && i < e->manifest->n_models; i++)
        st = add_model(e, &e->manifest->models[i]);
    if (st == MEMFIT_OK)
        st = add_sources(e, o);
    if (st != MEMFIT_OK) {
        memfit_engines_close(e);
        return st;
    }
    *out = e;
    return MEMFIT_OK;
}

memfit_manager *memfit_engines_manager(memfit_engines *e)
{
    return e->mgr;
}

const struct memfit_manifest *memfit_engines_manifest(const memfit_engines *e)
{
    return e->manifest;
}

uint64_t memfit_engines_budget(const memfit_engines *e, const char **source)
{
    if (source)
        *source = e->budget_source;
    return e->budget_bytes;
}

size_t memfit_engines_count(const memfit_engines *e)
{
    return e->n_models;
}

memfit_engine_model *memfit_engines_get(memfit_engines *e, size_t index)
{
    return index < e->n_models ? e->models[index] : NULL;
}

memfit_engine_model *memfit_engines_find(memfit_engines *e, const char *name)
{
    for (size_t i = 0; name && i < e->n_models; i++)
        if (strcmp(memfit_engine_model_name(e->models[i]), name) == 0)
            return e->models[i];
    return NULL;
}

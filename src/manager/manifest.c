/*
 * The manifest (memfit.yaml): global settings and the list of models, parsed
 * with libyaml into plain structs (struct memfit_manifest).
 *
 * Strict on purpose: a typo in a deployment file must not silently become a
 * default. Unknown keys, duplicate keys, duplicate models, wrong types and
 * bad values are errors that name the file, line and column, and for an
 * unknown key the nearest known one ("did you mean keep_alive?"). Aliases
 * are refused before the document is built, so a small file cannot expand
 * into a huge one.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <yaml.h>

#include "memfit/manager.h"

#define MANIFEST_MAX_BYTES (1u << 20)

struct parse {
    const char *name;
    yaml_document_t *doc;
};

/* ---- Errors ---------------------------------------------------------------- */

static enum memfit_status MEMFIT_PRINTF(3, 4)
    fail_at(const struct parse *p, const yaml_node_t *node, const char *fmt, ...)
{
    char what[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    return memfit_fail(MEMFIT_E_FORMAT, "%s:%zu:%zu: %s", p->name, node->start_mark.line + 1,
                       node->start_mark.column + 1, what);
}

static const char *node_kind(const yaml_node_t *node)
{
    switch (node->type) {
    case YAML_MAPPING_NODE:
        return "a mapping";
    case YAML_SEQUENCE_NODE:
        return "a list";
    default:
        return "a scalar";
    }
}

/* Levenshtein distance, capped: only small distances matter here. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 32 || lb > 32)
        return 99;
    size_t prev[33], cur[33];
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = prev[j - 1] +
                         (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
            size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, sizeof(prev));
    }
    return prev[lb];
}

/* The known key nearest to `key` when it is close enough to be a typo. */
static const char *did_you_mean(const char *key, const char *const *known)
{
    const char *best = NULL;
    size_t best_d = 3;
    for (size_t i = 0; known[i]; i++) {
        size_t d = edit_distance(key, known[i]);
        if (d < best_d && d < strlen(known[i])) {
            best = known[i];
            best_d = d;
        }
    }
    return best;
}

static enum memfit_status unknown_key(const struct parse *p, const yaml_node_t *key_node,
                                      const char *key, const char *where, const char *const *known)
{
    const char *near = did_you_mean(key, known);
    if (near)
        return fail_at(p, key_node, "unknown key '%s' %s (did you mean %s?)", key, where, near);
    return fail_at(p, key_node, "unknown key '%s' %s", key, where);
}

/* ---- Scalars ---------------------------------------------------------------- */

/* The scalar's text, or an error naming what was expected. Scalars holding a
 * NUL byte are refused: they would be cut short as C strings. */
static enum memfit_status scalar(const struct parse *p, const yaml_node_t *node, const char *field,
                                 const char *where, const char *expected, const char **out)
{
    if (node->type != YAML_SCALAR_NODE)
        return fail_at(p, node, "%s %s: expected %s, got %s", field, where, expected,
                       node_kind(node));
    const char *text = (const char *)node->data.scalar.value;
    if (strlen(text) != node->data.scalar.length)
        return fail_at(p, node, "%s %s: contains a NUL byte", field, where);
    *out = text;
    return MEMFIT_OK;
}

static enum memfit_status get_string(const struct parse *p, const yaml_node_t *node,
                                     const char *field, const char *where, char **out)
{
    const char *text = NULL;
    enum memfit_status st = scalar(p, node, field, where, "a string", &text);
    if (st != MEMFIT_OK)
        return st;
    if (!text[0])
        return fail_at(p, node, "%s %s: must not be empty", field, where);
    char *copy = memfit_strdup(text);
    if (!copy)
        return MEMFIT_E_NOMEM;
    memfit_free(*out); /* duplicates are refused earlier; this only guards */
    *out = copy;
    return MEMFIT_OK;
}

static enum memfit_status get_bool(const struct parse *p, const yaml_node_t *node,
                                   const char *field, const char *where, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};
    const char *text = NULL;
    enum memfit_status st = scalar(p, node, field, where, "true or false", &text);
    if (st != MEMFIT_OK)
        return st;
    for (size_t i = 0; i < 3; i++) {
        if (strcasecmp(text, yes[i]) == 0) {
            *out = true;
            return MEMFIT_OK;
        }
        if (strcasecmp(text, no[i]) == 0) {
            *out = false;
            return MEMFIT_OK;
        }
    }
    return fail_at(p, node, "%s %s: expected true or false, got '%s'", field, where, text);
}

static enum memfit_status get_uint(const struct parse *p, const yaml_node_t *node,
                                   const char *field, const char *where, long long max,
                                   uint64_t *out)
{
    const char *text = NULL;
    enum memfit_status st = scalar(p, node, field, where, "a whole number", &text);
    if (st != MEMFIT_OK)
        return st;
    long long v;
    if (memfit_parse_int(text, 0, max, &v) != MEMFIT_OK)
        return fail_at(p, node, "%s %s: expected a whole number from 0 to %lld, got '%s'", field,
                       where, max, text);
    *out = (uint64_t)v;
    return MEMFIT_OK;
}

/* A duration in whole units of `unit_ns` (rounded up), or -1 for "-1"/"never". */
static enum memfit_status get_duration(const struct parse *p, const yaml_node_t *node,
                                       const char *field, const char *where, uint64_t unit_ns,
                                       int64_t *out)
{
    const char *text = NULL;
    enum memfit_status st = scalar(p, node, field, where, "a duration (e.g. 300, 5m, -1)", &text);
    if (st != MEMFIT_OK)
        return st;
    if (strcmp(text, "-1") == 0 || strcasecmp(text, "never") == 0) {
        *out = -1;
        return MEMFIT_OK;
    }
    uint64_t ns;
    if (memfit_parse_duration(text, &ns) != MEMFIT_OK || ns / unit_ns > INT64_MAX - 1)
        return fail_at(p, node, "%s %s: expected a duration (e.g. 300, 5m, -1), got '%s'", field,
                       where, text);
    *out = (int64_t)(ns / unit_ns + (ns % unit_ns != 0));
    return MEMFIT_OK;
}

/* ---- Mappings ----------------------------------------------------------------- */

/* Iterates a mapping, refusing non-scalar and duplicate keys. */
static enum memfit_status check_keys(const struct parse *p, const yaml_node_t *map,
                                     const char *where)
{
    for (yaml_node_pair_t *a = map->data.mapping.pairs.start; a < map->data.mapping.pairs.top;
         a++) {
        yaml_node_t *ka = yaml_document_get_node(p->doc, a->key);
        const char *key = NULL;
        enum memfit_status st = scalar(p, ka, "a key", where, "a plain name", &key);
        if (st != MEMFIT_OK)
            return st;
        for (yaml_node_pair_t *b = map->data.mapping.pairs.start; b < a; b++) {
            yaml_node_t *kb = yaml_document_get_node(p->doc, b->key);
            if (strcmp((const char *)kb->data.scalar.value, key) == 0)
                return fail_at(p, ka, "duplicate key '%s' %s (first at line %zu)", key, where,
                               kb->start_mark.line + 1);
        }
    }
    return MEMFIT_OK;
}

static const yaml_node_t *find_value(const struct parse *p, const yaml_node_t *map, const char *key)
{
    for (yaml_node_pair_t *a = map->data.mapping.pairs.start; a < map->data.mapping.pairs.top;
         a++) {
        yaml_node_t *k = yaml_document_get_node(p->doc, a->key);
        if (k->type == YAML_SCALAR_NODE && strcmp((const char *)k->data.scalar.value, key) == 0)
            return yaml_document_get_node(p->doc, a->value);
    }
    return NULL;
}

/* ---- Models -------------------------------------------------------------------- */

static const char *const model_keys[] = {"name",    "family",     "sources", "sha256",
                                         "options", "keep_alive", "pin",     "max_concurrency",
                                         "limits",  NULL};
static const char *const limit_keys[] = {"max_batch", "max_image_size", "max_context", NULL};
static const char *const top_keys[] = {
    "budget",    "cache_dir", "keep_alive", "unloading", "admission_timeout",
    "max_queue", "pressure",  "models",     NULL};
static const char *const pressure_keys[] = {"warning", "critical", "psi_some", "psi_full", NULL};

static bool valid_model_name(const char *name)
{
    for (const char *c = name; *c; c++)
        if (!isalnum((unsigned char)*c) && !strchr("._-:", *c))
            return false;
    return true;
}

static enum memfit_status parse_sources(const struct parse *p, const yaml_node_t *node,
                                        const char *where, struct memfit_manifest_model *m)
{
    if (node->type != YAML_SEQUENCE_NODE)
        return fail_at(p, node, "sources %s: expected a list of strings, got %s", where,
                       node_kind(node));
    size_t n = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
    if (n == 0)
        return fail_at(p, node, "sources %s: the list is empty", where);
    m->sources = memfit_calloc_in(MEMFIT_ALLOC_MANAGER, n, sizeof(*m->sources));
    if (!m->sources)
        return MEMFIT_E_NOMEM;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = yaml_document_get_node(p->doc, node->data.sequence.items.start[i]);
        enum memfit_status st = get_string(p, item, "a source", where, &m->sources[i]);
        if (st != MEMFIT_OK)
            return st;
        m->n_sources = i + 1;
    }
    return MEMFIT_OK;
}

static enum memfit_status parse_options(const struct parse *p, const yaml_node_t *node,
                                        const char *where, struct memfit_manifest_model *m)
{
    if (node->type != YAML_MAPPING_NODE)
        return fail_at(p, node, "options %s: expected a mapping (e.g. {quantize: q8_0}), got %s",
                       where, node_kind(node));
    enum memfit_status st = check_keys(p, node, where);
    if (st != MEMFIT_OK)
        return st;
    size_t n = (size_t)(node->data.mapping.pairs.top - node->data.mapping.pairs.start);
    if (n == 0)
        return MEMFIT_OK;
    m->options = memfit_calloc_in(MEMFIT_ALLOC_MANAGER, n, sizeof(*m->options));
    if (!m->options)
        return MEMFIT_E_NOMEM;
    for (size_t i = 0; i < n; i++) {
        yaml_node_pair_t *pair = &node->data.mapping.pairs.start[i];
        yaml_node_t *k = yaml_document_get_node(p->doc, pair->key);
        yaml_node_t *v = yaml_document_get_node(p->doc, pair->value);
        struct memfit_manifest_option *o = &m->options[i];
        m->n_options = i + 1;
        st = get_string(p, k, "an option name", where, &o->key);
        if (st == MEMFIT_OK) {
            const char *text = NULL;
            char field[160];
            snprintf(field, sizeof(field), "option %s", o->key);
            st = scalar(p, v, field, where, "a scalar", &text);
            if (st == MEMFIT_OK && !(o->value = memfit_strdup(text)))
                st = MEMFIT_E_NOMEM;
        }
        if (st != MEMFIT_OK)
            return st;
    }
    return MEMFIT_OK;
}

static enum memfit_status parse_limits(const struct parse *p, const yaml_node_t *node,
                                       const char *model_where, struct memfit_manifest_limits *l)
{
    char where[200];
    snprintf(where, sizeof(where), "in limits of %s", model_where + 3 /* past "in " */);
    if (node->type != YAML_MAPPING_NODE)
        return fail_at(p, node, "limits %s: expected a mapping, got %s", model_where,
                       node_kind(node));
    enum memfit_status st = check_keys(p, node, where);
    for (yaml_node_pair_t *a = node->data.mapping.pairs.start;
         st == MEMFIT_OK && a < node->data.mapping.pairs.top; a++) {
        yaml_node_t *k = yaml_document_get_node(p->doc, a->key);
        yaml_node_t *v = yaml_document_get_node(p->doc, a->value);
        const char *key = (const char *)k->data.scalar.value;
        if (strcmp(key, "max_batch") == 0)
            st = get_uint(p, v, key, model_where, 1000000, &l->max_batch);
        else if (strcmp(key, "max_image_size") == 0)
            st = get_uint(p, v, key, model_where, 1000000, &l->max_image_size);
        else if (strcmp(key, "max_context") == 0)
            st = get_uint(p, v, key, model_where, 100000000, &l->max_context);
        else
            st = unknown_key(p, k, key, where, limit_keys);
    }
    return st;
}

static enum memfit_status parse_model(const struct parse *p, const yaml_node_t *node, size_t index,
                                      struct memfit_manifest_model *m)
{
    char where[160];
    snprintf(where, sizeof(where), "in model #%zu", index + 1);
    if (node->type != YAML_MAPPING_NODE)
        return fail_at(p, node,
                       "model #%zu: expected a mapping (name, family, sources, ...), "
                       "got %s",
                       index + 1, node_kind(node));
    m->line = (unsigned)node->start_mark.line + 1;
    m->keep_alive_s = MEMFIT_KEEP_ALIVE_DEFAULT;
    enum memfit_status st = check_keys(p, node, where);
    if (st != MEMFIT_OK)
        return st;
    /* The name first, so every later message can say which model. */
    const yaml_node_t *name = find_value(p, node, "name");
    if (!name)
        return fail_at(p, node, "model #%zu has no name", index + 1);
    if ((st = get_string(p, name, "name", where, &m->name)) != MEMFIT_OK)
        return st;
    if (!valid_model_name(m->name) || strlen(m->name) > 128)
        return fail_at(p, name,
                       "name '%s' in model #%zu: use at most 128 letters, digits, '.', '_', '-', "
                       "':'",
                       m->name, index + 1);
    snprintf(where, sizeof(where), "in model '%s'", m->name);

    for (yaml_node_pair_t *a = node->data.mapping.pairs.start;
         st == MEMFIT_OK && a < node->data.mapping.pairs.top; a++) {
        yaml_node_t *k = yaml_document_get_node(p->doc, a->key);
        yaml_node_t *v = yaml_document_get_node(p->doc, a->value);
        const char *key = (const char *)k->data.scalar.value;
        if (strcmp(key, "name") == 0) {
            continue;
        } else if (strcmp(key, "family") == 0) {
            st = get_string(p, v, key, where, &m->family);
        } else if (strcmp(key, "sources") == 0) {
            st = parse_sources(p, v, where, m);
        } else if (strcmp(key, "sha256") == 0) {
            st = get_string(p, v, key, where, &m->sha256);
            if (st == MEMFIT_OK) {
                bool hex = strlen(m->sha256) == 64;
                for (char *c = m->sha256; hex && *c; c++) {
                    *c = (char)tolower((unsigned char)*c);
                    hex = isxdigit((unsigned char)*c);
                }
                if (!hex)
                    st = fail_at(p, v, "sha256 %s: expected 64 hex digits, got '%s'", where,
                                 (const char *)v->data.scalar.value);
            }
        } else if (strcmp(key, "options") == 0) {
            st = parse_options(p, v, where, m);
        } else if (strcmp(key, "keep_alive") == 0) {
            st = get_duration(p, v, key, where, 1000000000u, &m->keep_alive_s);
        } else if (strcmp(key, "pin") == 0) {
            st = get_bool(p, v, key, where, &m->pin);
        } else if (strcmp(key, "max_concurrency") == 0) {
            uint64_t n = 0;
            st = get_uint(p, v, key, where, 65535, &n);
            m->max_concurrency = (unsigned)n;
        } else if (strcmp(key, "limits") == 0) {
            st = parse_limits(p, v, where, &m->limits);
        } else {
            st = unknown_key(p, k, key, where, model_keys);
        }
    }
    if (st != MEMFIT_OK)
        return st;
    if (!m->family)
        return fail_at(p, node, "model '%s' has no family (e.g. family: dinov2)", m->name);
    if (!m->sources)
        return fail_at(p, node, "model '%s' has no sources (a list of paths or URLs)", m->name);
    return MEMFIT_OK;
}

static enum memfit_status parse_models(const struct parse *p, const yaml_node_t *node,
                                       struct memfit_manifest *mf)
{
    if (node->type != YAML_SEQUENCE_NODE)
        return fail_at(p, node, "models: expected a list of models, got %s", node_kind(node));
    size_t n = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
    if (n == 0)
        return MEMFIT_OK;
    mf->models = memfit_calloc_in(MEMFIT_ALLOC_MANAGER, n, sizeof(*mf->models));
    if (!mf->models)
        return MEMFIT_E_NOMEM;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = yaml_document_get_node(p->doc, node->data.sequence.items.start[i]);
        mf->n_models = i + 1;
        enum memfit_status st = parse_model(p, item, i, &mf->models[i]);
        if (st != MEMFIT_OK)
            return st;
        for (size_t j = 0; j < i; j++)
            if (strcmp(mf->models[j].name, mf->models[i].name) == 0)
                return fail_at(p, find_value(p, item, "name"),
                               "model '%s' is defined twice (first at line %u)", mf->models[i].name,
                               mf->models[j].line);
    }
    return MEMFIT_OK;
}

/* ---- Pressure ------------------------------------------------------------------- */

/* pressure: {warning: 80%, critical: 90%, psi_some: 10, psi_full: 5} (percentages). */
static enum memfit_status parse_pressure(const struct parse *p, const yaml_node_t *node,
                                         struct memfit_manifest *mf)
{
    const char *where = "in pressure";
    if (node->type != YAML_MAPPING_NODE)
        return fail_at(p, node,
                       "pressure: expected a mapping (warning, critical, psi_some, psi_full), "
                       "got %s",
                       node_kind(node));
    enum memfit_status st = check_keys(p, node, where);
    for (yaml_node_pair_t *a = node->data.mapping.pairs.start;
         st == MEMFIT_OK && a < node->data.mapping.pairs.top; a++) {
        yaml_node_t *k = yaml_document_get_node(p->doc, a->key);
        yaml_node_t *v = yaml_document_get_node(p->doc, a->value);
        const char *key = (const char *)k->data.scalar.value;
        double *dst = strcmp(key, "warning") == 0    ? &mf->pressure.warning_percent
                      : strcmp(key, "critical") == 0 ? &mf->pressure.critical_percent
                      : strcmp(key, "psi_some") == 0 ? &mf->pressure.psi_some_percent
                      : strcmp(key, "psi_full") == 0 ? &mf->pressure.psi_full_percent
                                                     : NULL;
        if (!dst) {
            st = unknown_key(p, k, key, where, pressure_keys);
            break;
        }
        const char *text = NULL;
        if ((st = scalar(p, v, key, where, "a percentage (e.g. 80% or 10)", &text)) != MEMFIT_OK)
            break;
        if (memfit_parse_percent(text, dst) != MEMFIT_OK) {
            memfit_clear_error();
            st = fail_at(p, v, "pressure: %s: expected a percentage from 0 to 100, got '%s'", key,
                         text);
        }
    }
    if (st == MEMFIT_OK && mf->pressure.warning_percent >= 0 &&
        mf->pressure.critical_percent >= 0 &&
        mf->pressure.warning_percent >= mf->pressure.critical_percent)
        st = fail_at(p, node, "pressure: warning %g%% must be below critical %g%%",
                     mf->pressure.warning_percent, mf->pressure.critical_percent);
    return st;
}

void memfit_manifest_apply(const struct memfit_manifest *mf, struct memfit_manager_options *o)
{
    o->default_keep_alive_s = mf->keep_alive_s;
    o->unloading_enabled = mf->unloading_enabled;
    o->admission_timeout_ms = mf->admission_timeout_ms;
    o->max_queue = mf->max_queue;
    memfit_manifest_apply_pressure(mf, o);
}

void memfit_manifest_apply_pressure(const struct memfit_manifest *mf,
                                    struct memfit_manager_options *o)
{
    if (mf->pressure.warning_percent >= 0)
        o->pressure_thresholds.warning_percent = mf->pressure.warning_percent;
    if (mf->pressure.critical_percent >= 0)
        o->pressure_thresholds.critical_percent = mf->pressure.critical_percent;
    if (mf->pressure.psi_some_percent >= 0)
        o->pressure_psi_some_percent = mf->pressure.psi_some_percent;
    if (mf->pressure.psi_full_percent >= 0)
        o->pressure_psi_full_percent = mf->pressure.psi_full_percent;
}

/* ---- The document --------------------------------------------------------------- */

static enum memfit_status parse_top(const struct parse *p, const yaml_node_t *root,
                                    struct memfit_manifest *mf)
{
    if (root->type != YAML_MAPPING_NODE)
        return fail_at(p, root, "expected a mapping at the top (budget, models, ...), got %s",
                       node_kind(root));
    const char *where = "at the top level";
    enum memfit_status st = check_keys(p, root, where);
    for (yaml_node_pair_t *a = root->data.mapping.pairs.start;
         st == MEMFIT_OK && a < root->data.mapping.pairs.top; a++) {
        yaml_node_t *k = yaml_document_get_node(p->doc, a->key);
        yaml_node_t *v = yaml_document_get_node(p->doc, a->value);
        const char *key = (const char *)k->data.scalar.value;
        if (strcmp(key, "budget") == 0) {
            const char *text = NULL;
            st = scalar(p, v, key, where, "a size (e.g. 512MB) or a percentage (e.g. 80%)", &text);
            if (st != MEMFIT_OK)
                break;
            if (text[0] && text[strlen(text) - 1] == '%') {
                if (memfit_parse_percent(text, &mf->budget_percent) != MEMFIT_OK ||
                    mf->budget_percent <= 0.0)
                    st = fail_at(p, v, "budget: expected a percentage above 0, got '%s'", text);
            } else if (memfit_parse_size(text, &mf->budget_bytes) != MEMFIT_OK ||
                       mf->budget_bytes == 0) {
                st = fail_at(p, v, "budget: expected a size above 0 (e.g. 512MB, 2GiB), got '%s'",
                             text);
            }
        } else if (strcmp(key, "cache_dir") == 0) {
            st = get_string(p, v, key, where, &mf->cache_dir);
        } else if (strcmp(key, "keep_alive") == 0) {
            st = get_duration(p, v, key, where, 1000000000u, &mf->keep_alive_s);
        } else if (strcmp(key, "unloading") == 0) {
            st = get_bool(p, v, key, where, &mf->unloading_enabled);
        } else if (strcmp(key, "admission_timeout") == 0) {
            st = get_duration(p, v, key, where, 1000000u, &mf->admission_timeout_ms);
        } else if (strcmp(key, "max_queue") == 0) {
            uint64_t n = 0;
            st = get_uint(p, v, key, where, 1000000, &n);
            mf->max_queue = (unsigned)n;
        } else if (strcmp(key, "pressure") == 0) {
            st = parse_pressure(p, v, mf);
        } else if (strcmp(key, "models") == 0) {
            st = parse_models(p, v, mf);
        } else {
            st = unknown_key(p, k, key, where, top_keys);
        }
    }
    return st;
}

static enum memfit_status yaml_error(const char *name, const yaml_parser_t *parser)
{
    if (parser->error == YAML_MEMORY_ERROR)
        return memfit_fail(MEMFIT_E_NOMEM, "%s: out of memory parsing YAML", name);
    if (parser->context)
        return memfit_fail(MEMFIT_E_FORMAT, "%s:%zu:%zu: %s %s", name,
                           parser->problem_mark.line + 1, parser->problem_mark.column + 1,
                           parser->problem ? parser->problem : "invalid YAML", parser->context);
    return memfit_fail(MEMFIT_E_FORMAT, "%s:%zu:%zu: %s", name, parser->problem_mark.line + 1,
                       parser->problem_mark.column + 1,
                       parser->problem ? parser->problem : "invalid YAML");
}

/* Refuses aliases and more than one document before building the tree. */
static enum memfit_status prescan(const char *text, size_t len, const char *name)
{
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        return memfit_fail(MEMFIT_E_NOMEM, "%s: out of memory parsing YAML", name);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    enum memfit_status st = MEMFIT_OK;
    unsigned documents = 0;
    for (bool done = false; !done && st == MEMFIT_OK;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            st = yaml_error(name, &parser);
            break;
        }
        if (ev.type == YAML_ALIAS_EVENT)
            st = memfit_fail(MEMFIT_E_FORMAT, "%s:%zu:%zu: YAML aliases (*%s) are not supported",
                             name, ev.start_mark.line + 1, ev.start_mark.column + 1,
                             (const char *)ev.data.alias.anchor);
        else if (ev.type == YAML_DOCUMENT_START_EVENT && ++documents > 1)
            st = memfit_fail(MEMFIT_E_FORMAT, "%s:%zu:%zu: only one YAML document is allowed", name,
                             ev.start_mark.line + 1, ev.start_mark.column + 1);
        done = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    return st;
}

void memfit_manifest_free(struct memfit_manifest *mf)
{
    if (!mf)
        return;
    for (size_t i = 0; i < mf->n_models; i++) {
        struct memfit_manifest_model *m = &mf->models[i];
        memfit_free(m->name);
        memfit_free(m->family);
        for (size_t j = 0; j < m->n_sources; j++)
            memfit_free(m->sources[j]);
        memfit_free(m->sources);
        memfit_free(m->sha256);
        for (size_t j = 0; j < m->n_options; j++) {
            memfit_free(m->options[j].key);
            memfit_free(m->options[j].value);
        }
        memfit_free(m->options);
    }
    memfit_free(mf->models);
    memfit_free(mf->cache_dir);
    memfit_free(mf->path);
    memfit_free(mf);
}

enum memfit_status memfit_manifest_parse_string(const char *text, size_t len, const char *name,
                                                struct memfit_manifest **out)
{
    if (!text || !out)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_manifest_parse_string: NULL argument");
    if (!name)
        name = MEMFIT_MANIFEST_DEFAULT_PATH;
    enum memfit_status st = prescan(text, len, name);
    if (st != MEMFIT_OK)
        return st;

    struct memfit_manifest *mf = memfit_calloc_in(MEMFIT_ALLOC_MANAGER, 1, sizeof(*mf));
    if (!mf)
        return MEMFIT_E_NOMEM;
    mf->keep_alive_s = 300;
    mf->unloading_enabled = true;
    mf->admission_timeout_ms = 30000;
    mf->max_queue = 512;
    mf->pressure.warning_percent = mf->pressure.critical_percent = -1;
    mf->pressure.psi_some_percent = mf->pressure.psi_full_percent = -1;
    if (!(mf->path = memfit_strdup(name))) {
        memfit_free(mf);
        return MEMFIT_E_NOMEM;
    }

    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) {
        memfit_manifest_free(mf);
        return memfit_fail(MEMFIT_E_NOMEM, "%s: out of memory parsing YAML", name);
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        st = yaml_error(name, &parser);
        yaml_parser_delete(&parser);
        memfit_manifest_free(mf);
        return st;
    }
    yaml_parser_delete(&parser);
    struct parse p = {name, &doc};
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root && !(root->type == YAML_SCALAR_NODE && root->data.scalar.length == 0))
        st = parse_top(&p, root, mf);
    yaml_document_delete(&doc);
    if (st != MEMFIT_OK) {
        memfit_manifest_free(mf);
        return st;
    }
    *out = mf;
    return MEMFIT_OK;
}

enum memfit_status memfit_manifest_load(const char *path, struct memfit_manifest **out)
{
    if (!path || !out)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_manifest_load: NULL argument");
    FILE *f = fopen(path, "rb");
    if (!f)
        return memfit_fail(errno == ENOENT ? MEMFIT_E_NOT_FOUND : MEMFIT_E_IO, "%s: %s", path,
                           strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return memfit_fail(MEMFIT_E_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)sb.st_size > MANIFEST_MAX_BYTES) {
        fclose(f);
        return memfit_fail(MEMFIT_E_RANGE, "%s: %lld bytes, more than the %u a manifest may have",
                           path, (long long)sb.st_size, MANIFEST_MAX_BYTES);
    }
    size_t size = (size_t)sb.st_size;
    char *text = memfit_malloc_in(MEMFIT_ALLOC_MANAGER, size + 1);
    if (!text) {
        fclose(f);
        return MEMFIT_E_NOMEM;
    }
    size_t got = fread(text, 1, size, f);
    bool failed = ferror(f) != 0;
    fclose(f);
    if (failed || got != size) {
        memfit_free(text);
        return memfit_fail(MEMFIT_E_IO, "%s: read error", path);
    }
    text[size] = '\0';
    enum memfit_status st = memfit_manifest_parse_string(text, size, path, out);
    memfit_free(text);
    return st;
}

const struct memfit_manifest_model *memfit_manifest_find(const struct memfit_manifest *manifest,
                                                         const char *name)
{
    if (!manifest || !name)
        return NULL;
    for (size_t i = 0; i < manifest->n_models; i++)
        if (strcmp(manifest->models[i].name, name) == 0)
            return &manifest->models[i];
    return NULL;
}

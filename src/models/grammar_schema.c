/*
 * The JSON Schema subset memfit constrains generation to, compiled to the
 * grammar graph of grammar.h. Every keyword is either enforced, an
 * annotation (title, description, ...), or refused with its place named:
 * a schema is never half applied, so a request that asks for a constraint
 * memfit cannot keep gets a clear error instead of output that does not
 * validate. The supported keywords are listed in docs/llm.md.
 */
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/json.h"
#include "memfit/models.h"
#include "models/grammar.h"

#define MAX_SCHEMA_DEPTH 24

struct compiler {
    memfit_grammar *g;
    char path[512]; /* JSON pointer of the schema being compiled, "#" for the root */
    size_t path_len;
    int depth;
};

/* Appends "/seg" to the path; returns the length to restore. */
static size_t path_push(struct compiler *c, const char *seg)
{
    size_t old = c->path_len;
    int n = snprintf(c->path + old, sizeof(c->path) - old, "/%s", seg);
    if (n > 0)
        c->path_len = old + (size_t)n < sizeof(c->path) ? old + (size_t)n : sizeof(c->path) - 1;
    return old;
}

static void path_pop(struct compiler *c, size_t len)
{
    c->path_len = len;
    c->path[len] = '\0';
}

static const char *const annotations[] = {
    "title",   "description", "$schema",    "$id",      "$comment",
    "default", "examples",    "deprecated", "readOnly", "writeOnly",
};
static const char *const supported[] = {
    "type",      "properties", "required", "additionalProperties",
    "items",     "minItems",   "maxItems", "minLength",
    "maxLength", "enum",       "const",    "anyOf",
    "oneOf",
};

static bool in_list(const char *key, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(key, list[i]) == 0)
            return true;
    return false;
}

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static enum memfit_status compile(struct compiler *c, json_t *schema, uint32_t *out);

/* A count keyword (minItems, ...): a non-negative integer, or `dflt` when absent. */
static enum memfit_status get_count(struct compiler *c, json_t *schema, const char *key,
                                    uint32_t dflt, uint32_t *out)
{
    json_t *v = json_object_get(schema, key);
    if (!v) {
        *out = dflt;
        return MEMFIT_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        json_integer_value(v) >= (json_int_t)MF_G_NONE)
        return memfit_fail(MEMFIT_E_INVALID,
                           "json schema: %s: \"%s\" must be a non-negative integer below %u",
                           c->path, key, MF_G_NONE);
    *out = (uint32_t)json_integer_value(v);
    return MEMFIT_OK;
}

/* min and max keywords, checked against each other. */
static enum memfit_status get_range(struct compiler *c, json_t *schema, const char *kmin,
                                    const char *kmax, uint32_t *min, uint32_t *max)
{
    enum memfit_status st = get_count(c, schema, kmin, 0, min);
    if (st == MEMFIT_OK)
        st = get_count(c, schema, kmax, MF_G_NONE, max);
    if (st == MEMFIT_OK && *min > *max)
        return memfit_fail(MEMFIT_E_INVALID, "json schema: %s: %s %u is above %s %u", c->path, kmin,
                           *min, kmax, *max);
    return st;
}

/* A literal of v's compact JSON text. */
static enum memfit_status add_json_literal(memfit_grammar *g, json_t *v, uint32_t *out)
{
    mf_json_clear_alloc_failure();
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text)
        return MEMFIT_E_NOMEM;
    enum memfit_status st = mf_grammar_add_literal(g, text, strlen(text), out);
    memfit_free(text);
    return st;
}

/* Whether JSON value v is of the schema type named t. */
static bool has_type(json_t *v, const char *t)
{
    if (strcmp(t, "object") == 0)
        return json_is_object(v);
    if (strcmp(t, "array") == 0)
        return json_is_array(v);
    if (strcmp(t, "string") == 0)
        return json_is_string(v);
    if (strcmp(t, "number") == 0)
        return json_is_number(v);
    if (strcmp(t, "integer") == 0)
        return json_is_integer(v);
    if (strcmp(t, "boolean") == 0)
        return json_is_boolean(v);
    return strcmp(t, "null") == 0 && json_is_null(v);
}

/* enum / const: the values as literal texts (each of the schema's types, if given). */
static enum memfit_status compile_enum(struct compiler *c, json_t *schema, uint32_t *out)
{
    json_t *values = json_object_get(schema, "enum"), *one = json_object_get(schema, "const");
    const char *kw = values ? "enum" : "const";
    if (values && one)
        return memfit_fail(MEMFIT_E_UNSUPPORTED,
                           "json schema: %s: \"enum\" together with \"const\" is not supported",
                           c->path);
    const char *key;
    json_t *v;
    json_object_foreach(schema, key, v)
    {
        if (strcmp(key, kw) != 0 && strcmp(key, "type") != 0 &&
            !in_list(key, annotations, COUNT(annotations)))
            return memfit_fail(MEMFIT_E_UNSUPPORTED,
                               "json schema: %s: \"%s\" together with \"%s\" is not supported",
                               c->path, key, kw);
    }
    if (values && !json_is_array(values))
        return memfit_fail(MEMFIT_E_INVALID, "json schema: %s: \"enum\" must be an array", c->path);
    size_t n = values ? json_array_size(values) : 1;
    if (n == 0 || n > MF_G_MAX_SET)
        return memfit_fail(n ? MEMFIT_E_UNSUPPORTED : MEMFIT_E_INVALID,
                           "json schema: %s: \"enum\" has %zu values; memfit takes 1 to %d",
                           c->path, n, MF_G_MAX_SET);
    json_t *type = json_object_get(schema, "type");
    struct mf_gnode node = {
        .kind = MF_G_LITERALS, .n = (uint16_t)n, .max = MF_G_NONE, .sub = MF_G_NONE};
    for (size_t i = 0; i < n; i++) {
        json_t *value = values ? json_array_get(values, i) : one;
        bool typed = !type;
        if (json_is_string(type))
            typed = has_type(value, json_string_value(type));
        for (size_t k = 0; json_is_array(type) && k < json_array_size(type); k++)
            typed |= json_is_string(json_array_get(type, k)) &&
                     has_type(value, json_string_value(json_array_get(type, k)));
        if (!typed)
            return memfit_fail(MEMFIT_E_INVALID,
                               "json schema: %s: \"%s\" value %zu is not of the schema's type",
                               c->path, kw, i);
        uint32_t lit;
        enum memfit_status st = add_json_literal(c->g, value, &lit);
        if (st != MEMFIT_OK)
            return st;
        if (i == 0)
            node.first = lit;
        node.classes |= mf_grammar_class_of((uint8_t)c->g->pool[c->g->lits[lit].off]);
    }
    return mf_grammar_add_node(c->g, &node, out);
}

/* A choice between member nodes, which must start with different bytes. */
static enum memfit_status add_choice(struct compiler *c, const uint32_t *members, size_t n,
                                     const char *what, uint32_t *out)
{
    if (n == 1) {
        *out = members[0];
        return MEMFIT_OK;
    }
    struct mf_gnode node = {
        .kind = MF_G_CHOICE, .n = (uint16_t)n, .max = MF_G_NONE, .sub = MF_G_NONE};
    for (size_t i = 0; i < n; i++) {
        uint8_t cls = c->g->nodes[members[i]].classes;
        if (node.classes & cls)
            return memfit_fail(MEMFIT_E_UNSUPPORTED,
                               "json schema: %s: %s %zu can start like an earlier one (memfit "
                               "needs alternatives of different types)",
                               c->path, what, i);
        node.classes |= cls;
    }
    enum memfit_status st = mf_grammar_add_members(c->g, members, n, &node.first);
    return st == MEMFIT_OK ? mf_grammar_add_node(c->g, &node, out) : st;
}

static enum memfit_status compile_any_of(struct compiler *c, json_t *schema, const char *kw,
                                         uint32_t *out)
{
    json_t *list = json_object_get(schema, kw), *v;
    const char *key;
    json_object_foreach(schema, key, v)
    {
        if (strcmp(key, kw) != 0 && !in_list(key, annotations, COUNT(annotations)))
            return memfit_fail(MEMFIT_E_UNSUPPORTED,
                               "json schema: %s: \"%s\" together with \"%s\" is not supported",
                               c->path, key, kw);
    }
    size_t n = json_is_array(list) ? json_array_size(list) : 0;
    if (n == 0 || n > 16)
        return memfit_fail(MEMFIT_E_INVALID,
                           "json schema: %s: \"%s\" must be an array of 1 to 16 schemas", c->path,
                           kw);
    uint32_t members[MF_G_MAX_SET];
    size_t n_members = 0;
    for (size_t i = 0; i < n; i++) {
        char seg[48];
        snprintf(seg, sizeof(seg), "%s/%zu", kw, i);
        size_t mark = path_push(c, seg);
        uint32_t id;
        enum memfit_status st = compile(c, json_array_get(list, i), &id);
        path_pop(c, mark);
        if (st != MEMFIT_OK)
            return st;
        const struct mf_gnode *node = &c->g->nodes[id];
        size_t adds = node->kind == MF_G_CHOICE ? node->n : 1;
        if (n_members + adds > MF_G_MAX_SET)
            return memfit_fail(MEMFIT_E_UNSUPPORTED, "json schema: %s: more than %d alternatives",
                               c->path, MF_G_MAX_SET);
        if (node->kind == MF_G_CHOICE) /* flattened: its members are alternatives too */
            for (uint32_t k = 0; k < node->n; k++)
                members[n_members++] = c->g->members[node->first + k];
        else
            members[n_members++] = id;
    }
    return add_choice(c, members, n_members, "an alternative of \"anyOf\"/\"oneOf\"", out);
}

static enum memfit_status compile_object(struct compiler *c, json_t *schema, uint32_t *out)
{
    json_t *props = json_object_get(schema, "properties");
    json_t *required = json_object_get(schema, "required");
    json_t *extra = json_object_get(schema, "additionalProperties");
    if (props && !json_is_object(props))
        return memfit_fail(MEMFIT_E_INVALID, "json schema: %s: \"properties\" must be an object",
                           c->path);
    if (required && !json_is_array(required))
        return memfit_fail(MEMFIT_E_INVALID, "json schema: %s: \"required\" must be an array",
                           c->path);
    struct mf_gnode node = {.kind = MF_G_OBJECT, .classes = MF_GC_OBJECT, .max = MF_G_NONE};
    enum memfit_status st = MEMFIT_OK;
    if (!extra || json_is_true(extra)) {
        st = mf_grammar_any(c->g, &node.sub);
    } else if (json_is_false(extra)) {
        node.sub = MF_G_NONE;
    } else {
        size_t mark = path_push(c, "additionalProperties");
        st = compile(c, extra, &node.sub);
        path_pop(c, mark);
    }
    if (st != MEMFIT_OK)
        return st;

    const char *names[MF_G_MAX_SET];
    uint32_t nodes[MF_G_MAX_SET];
    size_t n = 0;
    const char *key;
    json_t *v;
    json_object_foreach(props, key, v)
    {
        if (n == MF_G_MAX_SET)
            return memfit_fail(MEMFIT_E_UNSUPPORTED, "json schema: %s: more than %d properties",
                               c->path, MF_G_MAX_SET);
        char seg[300];
        snprintf(seg, sizeof(seg), "properties/%s", key);
        size_t mark = path_push(c, seg);
        st = compile(c, v, &nodes[n]);
        path_pop(c, mark);
        if (st != MEMFIT_OK)
            return st;
        names[n++] = key;
    }
    for (size_t i = 0; i < json_array_size(required); i++) {
        json_t *r = json_array_get(required, i);
        if (!json_is_string(r))
            return memfit_fail(MEMFIT_E_INVALID,
                               "json schema: %s: \"required\" entry %zu is not a string", c->path,
                               i);
        const char *name = json_string_value(r);
        size_t k = 0;
        while (k < n && strcmp(names[k], name) != 0)
            k++;
        if (k == n) { /* required, not declared: a value of additionalProperties */
            if (node.sub == MF_G_NONE)
                return memfit_fail(MEMFIT_E_INVALID,
                                   "json schema: %s: required property \"%s\" is not in "
                                   "\"properties\" and additionalProperties is false",
                                   c->path, name);
            if (n == MF_G_MAX_SET)
                return memfit_fail(MEMFIT_E_UNSUPPORTED, "json schema: %s: more than %d properties",
                                   c->path, MF_G_MAX_SET);
            names[n] = name;
            nodes[n++] = node.sub;
        }
        node.required |= 1ull << k;
    }
    /* The names as consecutive literals, then the properties (grammar.c relies on it). */
    for (size_t i = 0; i < n && st == MEMFIT_OK; i++) {
        json_t *s = json_string(names[i]);
        uint32_t lit, prop;
        st = s ? add_json_literal(c->g, s, &lit) : MEMFIT_E_NOMEM;
        json_decref(s);
        if (st == MEMFIT_OK)
            st = mf_grammar_add_prop(c->g, lit, nodes[i], &prop);
        if (st == MEMFIT_OK && i == 0)
            node.first = prop;
    }
    node.n = (uint16_t)n;
    return st == MEMFIT_OK ? mf_grammar_add_node(c->g, &node, out) : st;
}

static enum memfit_status compile_type(struct compiler *c, json_t *schema, const char *type,
                                       uint32_t *out)
{
    struct mf_gnode node = {.max = MF_G_NONE, .sub = MF_G_NONE};
    enum memfit_status st;
    if (strcmp(type, "object") == 0)
        return compile_object(c, schema, out);
    if (strcmp(type, "array") == 0) {
        node.kind = MF_G_ARRAY;
        node.classes = MF_GC_ARRAY;
        st = get_range(c, schema, "minItems", "maxItems", &node.min, &node.max);
        json_t *items = json_object_get(schema, "items");
        if (st == MEMFIT_OK && items) {
            size_t mark = path_push(c, "items");
            st = compile(c, items, &node.sub);
            path_pop(c, mark);
        } else if (st == MEMFIT_OK) {
            st = mf_grammar_any(c->g, &node.sub);
        }
    } else if (strcmp(type, "string") == 0) {
        node.kind = MF_G_STRING;
        node.classes = MF_GC_STRING;
        st = get_range(c, schema, "minLength", "maxLength", &node.min, &node.max);
    } else if (strcmp(type, "number") == 0 || strcmp(type, "integer") == 0) {
        node.kind = type[0] == 'n' ? MF_G_NUMBER : MF_G_INTEGER;
        node.classes = MF_GC_NUMBER;
        st = MEMFIT_OK;
    } else if (strcmp(type, "boolean") == 0 || strcmp(type, "null") == 0) {
        node.kind = MF_G_LITERALS;
        bool b = type[0] == 'b';
        node.n = b ? 2 : 1;
        node.classes = b ? MF_GC_TRUE | MF_GC_FALSE : MF_GC_NULL;
        uint32_t lit;
        st = mf_grammar_add_literal(c->g, b ? "true" : "null", 4, &node.first);
        if (st == MEMFIT_OK && b)
            st = mf_grammar_add_literal(c->g, "false", 5, &lit);
    } else {
        return memfit_fail(MEMFIT_E_INVALID, "json schema: %s: unknown type \"%s\"", c->path, type);
    }
    return st == MEMFIT_OK ? mf_grammar_add_node(c->g, &node, out) : st;
}

/* The types a schema without "type" allows, from its keywords. */
static size_t implied_types(json_t *schema, const char **types)
{
    size_t n = 0;
    if (json_object_get(schema, "properties") || json_object_get(schema, "required") ||
        json_object_get(schema, "additionalProperties"))
        types[n++] = "object";
    if (json_object_get(schema, "items") || json_object_get(schema, "minItems") ||
        json_object_get(schema, "maxItems"))
        types[n++] = "array";
    if (json_object_get(schema, "minLength") || json_object_get(schema, "maxLength"))
        types[n++] = "string";
    return n;
}

static enum memfit_status compile_schema(struct compiler *c, json_t *schema, uint32_t *out)
{
    const char *key;
    json_t *v;
    json_object_foreach(schema, key, v)
    {
        if (!in_list(key, supported, COUNT(supported)) &&
            !in_list(key, annotations, COUNT(annotations)))
            return memfit_fail(MEMFIT_E_UNSUPPORTED,
                               "json schema: %s: keyword \"%s\" is not supported", c->path, key);
    }
    if (json_object_get(schema, "enum") || json_object_get(schema, "const"))
        return compile_enum(c, schema, out);
    if (json_object_get(schema, "anyOf"))
        return compile_any_of(c, schema, "anyOf", out);
    if (json_object_get(schema, "oneOf")) /* alternatives of different types: one matches */
        return compile_any_of(c, schema, "oneOf", out);

    const char *types[8];
    size_t n = 0;
    json_t *type = json_object_get(schema, "type");
    if (json_is_string(type)) {
        types[n++] = json_string_value(type);
    } else if (json_is_array(type) && json_array_size(type) >= 1 && json_array_size(type) <= 7) {
        for (size_t i = 0; i < json_array_size(type); i++) {
            json_t *t = json_array_get(type, i);
            if (!json_is_string(t))
                return memfit_fail(MEMFIT_E_INVALID,
                                   "json schema: %s: \"type\" entry %zu is not a string", c->path,
                                   i);
            types[n++] = json_string_value(t);
        }
    } else if (type) {
        return memfit_fail(MEMFIT_E_INVALID,
                           "json schema: %s: \"type\" must be a string or 1 to 7 strings", c->path);
    } else {
        n = implied_types(schema, types);
        if (n == 0)
            return mf_grammar_any(c->g, out);
    }
    uint32_t members[8];
    size_t n_members = 0;
    bool number = false;
    for (size_t i = 0; i < n; i++)
        number |= strcmp(types[i], "number") == 0;
    for (size_t i = 0; i < n; i++) {
        if (number && strcmp(types[i], "integer") == 0)
            continue; /* an integer is a number */
        enum memfit_status st = compile_type(c, schema, types[i], &members[n_members]);
        if (st != MEMFIT_OK)
            return st;
        n_members++;
    }
    return add_choice(c, members, n_members, "type", out);
}

static enum memfit_status compile(struct compiler *c, json_t *schema, uint32_t *out)
{
    if (json_is_true(schema))
        return mf_grammar_any(c->g, out);
    if (json_is_false(schema))
        return memfit_fail(MEMFIT_E_INVALID, "json schema: %s: the schema false allows no value",
                           c->path);
    if (!json_is_object(schema))
        return memfit_fail(MEMFIT_E_INVALID,
                           "json schema: %s: a schema must be an object or a boolean", c->path);
    if (c->depth >= MAX_SCHEMA_DEPTH)
        return memfit_fail(MEMFIT_E_UNSUPPORTED,
                           "json schema: %s: schemas nested more than %d deep", c->path,
                           MAX_SCHEMA_DEPTH);
    c->depth++;
    enum memfit_status st = compile_schema(c, schema, out);
    c->depth--;
    return st;
}

enum memfit_status mf_grammar_compile_schema(memfit_grammar *g, json_t *schema, uint32_t *root)
{
    struct compiler c = {.g = g, .path = "#", .path_len = 1};
    return compile(&c, schema, root);
}

/* Parses len bytes of JSON text; E_FORMAT naming the place, E_NOMEM. */
static enum memfit_status load_schema(const char *text, size_t len, const char *what, json_t **out)
{
    mf_json_init();
    mf_json_clear_alloc_failure();
    json_error_t err;
    *out = json_loadb(text, len, JSON_DECODE_ANY, &err);
    if (*out)
        return MEMFIT_OK;
    return mf_json_alloc_failed() ? MEMFIT_E_NOMEM
                                  : memfit_fail(MEMFIT_E_FORMAT, "%s: line %d column %d: %s", what,
                                                err.line, err.column, err.text);
}

enum memfit_status memfit_grammar_from_json_schema(const char *text, size_t len,
                                                   memfit_grammar **out)
{
    if (!text || !out)
        return memfit_fail(MEMFIT_E_MISUSE, "json schema: NULL argument");
    json_t *schema;
    enum memfit_status st = load_schema(text, len, "json schema", &schema);
    if (st != MEMFIT_OK)
        return st;
    memfit_grammar *g = mf_grammar_new();
    st = g ? mf_grammar_compile_schema(g, schema, &g->root) : MEMFIT_E_NOMEM;
    json_decref(schema);
    if (st == MEMFIT_OK && mf_json_alloc_failed())
        st = MEMFIT_E_NOMEM;
    if (st != MEMFIT_OK) {
        memfit_grammar_free(g);
        return st;
    }
    *out = g;
    return MEMFIT_OK;
}

/* Whether a is a prefix of b (or equal). */
static bool is_prefix(const char *a, const char *b)
{
    return strncmp(a, b, strlen(a)) == 0;
}

static enum memfit_status add_alternative(memfit_grammar *g,
                                          const struct memfit_grammar_alternative *a, size_t i)
{
    struct mf_galt *alt = &g->alts[i];
    alt->suffix = MF_G_NONE;
    enum memfit_status st = mf_grammar_add_literal(g, a->prefix, strlen(a->prefix), &alt->prefix);
    if (st == MEMFIT_OK && a->suffix && a->suffix[0])
        st = mf_grammar_add_literal(g, a->suffix, strlen(a->suffix), &alt->suffix);
    if (st != MEMFIT_OK)
        return st;
    json_t *schema = NULL;
    if (a->schema) {
        char what[48];
        snprintf(what, sizeof(what), "alternative %zu: json schema", i);
        if ((st = load_schema(a->schema, strlen(a->schema), what, &schema)) != MEMFIT_OK)
            return st;
    }
    if (!schema) { /* any JSON object */
        uint32_t any;
        st = mf_grammar_any(g, &any);
        if (st == MEMFIT_OK)
            alt->root = g->members[g->nodes[any].first];
        return st;
    }
    st = mf_grammar_compile_schema(g, schema, &alt->root);
    json_decref(schema);
    if (st != MEMFIT_OK && st != MEMFIT_E_NOMEM)
        return memfit_fail(st, "alternative %zu: %s", i, memfit_last_error());
    return st;
}

enum memfit_status memfit_grammar_from_alternatives(const struct memfit_grammar_alternative *alts,
                                                    size_t n, memfit_grammar **out)
{
    if (!alts || !out || n == 0)
        return memfit_fail(MEMFIT_E_MISUSE, "grammar alternatives: NULL argument or none");
    if (n > MF_G_MAX_SET)
        return memfit_fail(MEMFIT_E_UNSUPPORTED, "grammar: %zu alternatives; at most %d", n,
                           MF_G_MAX_SET);
    for (size_t i = 0; i < n; i++) {
        if (!alts[i].prefix || !alts[i].prefix[0])
            return memfit_fail(MEMFIT_E_INVALID, "grammar: alternative %zu has no prefix", i);
        for (size_t j = 0; j < n; j++)
            if (j != i && is_prefix(alts[i].prefix, alts[j].prefix))
                return memfit_fail(MEMFIT_E_INVALID,
                                   "grammar: the prefix of alternative %zu begins that of %zu", i,
                                   j);
    }
    memfit_grammar *g = mf_grammar_new();
    if (!g)
        return MEMFIT_E_NOMEM;
    enum memfit_status st = MEMFIT_OK;
    g->alts = memfit_calloc_in(MEMFIT_ALLOC_MODEL, n, sizeof(*g->alts));
    if (!g->alts)
        st = MEMFIT_E_NOMEM;
    for (size_t i = 0; i < n && st == MEMFIT_OK; i++) {
        g->n_alts = i + 1;
        st = add_alternative(g, &alts[i], i);
    }
    if (st == MEMFIT_OK && mf_json_alloc_failed())
        st = MEMFIT_E_NOMEM;
    if (st != MEMFIT_OK) {
        memfit_grammar_free(g);
        return st;
    }
    g->root = g->alts[0].root; /* a grammar with a root is a built one */
    *out = g;
    return MEMFIT_OK;
}

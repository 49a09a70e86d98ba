/* libFuzzer target for grammar-constrained sampling (src/models/grammar*.c):
 * the JSON Schema compiler, whose input comes straight from an HTTP
 * request's response_format, and the byte matcher. The input is a schema,
 * a NUL byte, then a text; an empty schema means the json_object grammar.
 * Besides crashes and leaks, it checks that:
 *   - bytes fed one by one are taken exactly when fed all at once;
 *   - a refused byte changes nothing: the bytes taken one by one, the
 *     refused ones skipped, are taken all at once by a new matcher, which
 *     agrees on whether the output is complete;
 *   - a complete output parses with jansson: as an object for json_object,
 *     as JSON of the schema's "type", with its "required" properties and
 *     among its "enum"/"const" values, for a schema;
 *   - json_object takes the compact text jansson writes for any object it
 *     reads (numbers aside, which jansson may write beyond the grammar's
 *     limits, and nesting deeper than the grammar's 63). */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/alloc.h"
#include "core/json.h"
#include "memfit/models.h"

#define MAX_SCHEMA 4096
#define MAX_TEXT   4096
#define MAX_DEPTH  63

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Whether v is of the schema type t (jansson's integers and reals are both numbers). */
static bool has_type(json_t *v, const char *t)
{
    static const struct {
        const char *name;
        json_type a, b;
    } types[] = {
        {"object", JSON_OBJECT, JSON_OBJECT}, {"array", JSON_ARRAY, JSON_ARRAY},
        {"string", JSON_STRING, JSON_STRING}, {"number", JSON_INTEGER, JSON_REAL},
        {"integer", JSON_INTEGER, JSON_REAL}, {"boolean", JSON_TRUE, JSON_FALSE},
        {"null", JSON_NULL, JSON_NULL},
    };
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (strcmp(t, types[i].name) == 0)
            return json_typeof(v) == types[i].a || json_typeof(v) == types[i].b;
    return true; /* not a type the compiler accepts: it refused the schema */
}

/* What the schema's top level says that a value can be checked against. */
static void check_against_schema(const char *schema, size_t schema_len, json_t *v, const char *text,
                                 size_t len)
{
    json_t *s = json_loadb(schema, schema_len, JSON_DECODE_ANY, NULL);
    if (!json_is_object(s)) {
        json_decref(s);
        return;
    }
    json_t *type = json_object_get(s, "type");
    if (json_is_string(type) && !has_type(v, json_string_value(type)))
        abort();
    json_t *required = json_object_get(s, "required");
    size_t i;
    json_t *name;
    if (json_is_object(v) && json_is_array(required))
        json_array_foreach(required, i, name)
        {
            if (json_is_string(name) && !json_object_get(v, json_string_value(name)))
                abort();
        }
    /* enum and const values are written as jansson writes them, so they read back equal. */
    json_t *exact = json_loadb(text, len, JSON_DECODE_ANY, NULL);
    json_t *values = json_object_get(s, "enum"), *one = json_object_get(s, "const");
    if (exact && json_is_array(values)) {
        bool found = false;
        json_array_foreach(values, i, name) found = found || json_equal(name, exact);
        if (!found)
            abort();
    }
    if (exact && one && !json_equal(one, exact))
        abort();
    json_decref(exact);
    json_decref(s);
}

/* A complete output parses (as an object for json_object). */
static void check_complete(const char *schema, size_t schema_len, const char *text, size_t len)
{
    json_error_t err;
    json_t *v = json_loadb(text, len, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &err);
    if (!v || (!schema_len && !json_is_object(v)))
        abort();
    if (schema_len)
        check_against_schema(schema, schema_len, v, text, len);
    json_decref(v);
}

static memfit_grammar_matcher *new_matcher(const memfit_grammar *g)
{
    memfit_grammar_matcher *m = NULL;
    return memfit_grammar_matcher_create(g, NULL, &m) == MEMFIT_OK ? m : NULL;
}

static void fuzz_matcher(const memfit_grammar *g, const char *schema, size_t schema_len,
                         const char *text, size_t len)
{
    char *taken = memfit_malloc(len ? len : 1);
    memfit_grammar_matcher *whole = new_matcher(g), *one = new_matcher(g), *again = new_matcher(g);
    if (!taken || !whole || !one || !again)
        goto out;
    size_t n_taken = 0, first_refused = len;
    bool complete_there = false;
    for (size_t i = 0; i < len; i++) {
        if (memfit_grammar_matcher_accept_bytes(one, text + i, 1) == MEMFIT_OK) {
            taken[n_taken++] = text[i];
            continue;
        }
        if (first_refused == len) {
            first_refused = i;
            complete_there = memfit_grammar_matcher_is_complete(one);
        }
    }
    if (first_refused == len)
        complete_there = memfit_grammar_matcher_is_complete(one);

    /* All at once: taken exactly when each was; a refusal leaves the start state. */
    enum memfit_status st = memfit_grammar_matcher_accept_bytes(whole, text, len);
    if ((st == MEMFIT_OK) != (first_refused == len))
        abort();
    if (st != MEMFIT_OK &&
        memfit_grammar_matcher_accept_bytes(whole, text, first_refused) != MEMFIT_OK)
        abort();
    if (memfit_grammar_matcher_is_complete(whole) != complete_there)
        abort();

    /* The bytes taken, refused ones skipped, are one output. */
    if (memfit_grammar_matcher_accept_bytes(again, taken, n_taken) != MEMFIT_OK ||
        memfit_grammar_matcher_is_complete(again) != memfit_grammar_matcher_is_complete(one))
        abort();
    if (memfit_grammar_matcher_is_complete(again))
        check_complete(schema, schema_len, taken, n_taken);
out:
    memfit_grammar_matcher_free(whole);
    memfit_grammar_matcher_free(one);
    memfit_grammar_matcher_free(again);
    memfit_free(taken);
    memfit_clear_error();
}

static size_t depth_of(json_t *v)
{
    size_t d = 0, i;
    const char *key;
    json_t *item;
    if (json_is_object(v))
        json_object_foreach(v, key, item)
        {
            size_t di = depth_of(item);
            d = di > d ? di : d;
        }
    else if (json_is_array(v))
        json_array_foreach(v, i, item)
        {
            size_t di = depth_of(item);
            d = di > d ? di : d;
        }
    else
        return 0;
    return d + 1;
}

/* json_object takes what jansson writes for an object without numbers. */
static void fuzz_json_object_complete(const memfit_grammar *g, const char *text, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (text[i] >= '0' && text[i] <= '9')
            return;
    json_t *v = json_loadb(text, len, 0, NULL);
    if (!json_is_object(v) || depth_of(v) > MAX_DEPTH) {
        json_decref(v);
        return;
    }
    char *dump = json_dumps(v, JSON_COMPACT);
    memfit_grammar_matcher *m = new_matcher(g);
    if (dump && m &&
        (memfit_grammar_matcher_accept_bytes(m, dump, strlen(dump)) != MEMFIT_OK ||
         !memfit_grammar_matcher_is_complete(m)))
        abort();
    memfit_grammar_matcher_free(m);
    memfit_free(dump); /* jansson allocates through memfit (core/json.h) */
    json_decref(v);
    memfit_clear_error();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mf_json_init();
    const char *in = (const char *)data;
    const char *nul = memchr(in, '\0', size);
    size_t schema_len = nul ? (size_t)(nul - in) : size;
    const char *text = nul ? nul + 1 : in + size;
    size_t text_len = nul ? size - schema_len - 1 : 0;
    if (schema_len > MAX_SCHEMA || text_len > MAX_TEXT)
        return 0;

    /* Copies of exactly their size, so ASan sees any read past the end. */
    char *schema = memfit_malloc(schema_len ? schema_len : 1);
    char *t = memfit_malloc(text_len ? text_len : 1);
    memfit_grammar *g = NULL;
    if (!schema || !t)
        goto out;
    memcpy(schema, in, schema_len);
    memcpy(t, text, text_len);
    enum memfit_status st = schema_len ? memfit_grammar_from_json_schema(schema, schema_len, &g)
                                       : memfit_grammar_json_object(&g);
    if (st == MEMFIT_OK) {
        fuzz_matcher(g, schema, schema_len, t, text_len);
        if (!schema_len)
            fuzz_json_object_complete(g, t, text_len);
    }
    memfit_grammar_free(g);
    memfit_clear_error();
out:
    memfit_free(schema);
    memfit_free(t);
    return 0;
}

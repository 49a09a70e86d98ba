/*
 * The pure parts of the HTTP server (see request.h): everything here works
 * on bytes a client sent, so every length is checked and every failure is
 * a status and a message, never a crash.
 */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/json.h"
#include "server/request.h"

/* ---- Text buffer ------------------------------------------------------------ */

static bool text_reserve(struct mf_text *t, size_t extra)
{
    if (t->failed)
        return false;
    size_t need;
    if (mf_add_overflow(t->len, extra + 1, &need)) {
        t->failed = true;
        return false;
    }
    if (need <= t->cap)
        return true;
    size_t cap = t->cap ? t->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *grown = memfit_realloc(t->data, cap);
    if (!grown) {
        t->failed = true;
        return false;
    }
    t->data = grown;
    t->cap = cap;
    return true;
}

bool mf_text_append(struct mf_text *t, const char *s, size_t n)
{
    if (!text_reserve(t, n))
        return false;
    memcpy(t->data + t->len, s, n);
    t->len += n;
    t->data[t->len] = '\0';
    return true;
}

bool mf_text_puts(struct mf_text *t, const char *s)
{
    return mf_text_append(t, s, strlen(s));
}

bool mf_text_printf(struct mf_text *t, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) {
        t->failed = true;
        return false;
    }
    if ((size_t)n < sizeof(small))
        return mf_text_append(t, small, (size_t)n);
    if (!text_reserve(t, (size_t)n))
        return false;
    va_start(ap, fmt);
    vsnprintf(t->data + t->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
    return true;
}

bool mf_text_json_string(struct mf_text *t, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (!mf_text_append(t, "\"", 1))
        return false;
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        mf_text_append(t, s + start, i - start);
        char esc[7] = {'\\', 0, 0, 0, 0, 0, 0};
        size_t len = 2;
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            len = 6;
        }
        mf_text_append(t, esc, len);
        start = i + 1;
    }
    mf_text_append(t, s + start, n - start);
    return mf_text_append(t, "\"", 1);
}

void mf_text_free(struct mf_text *t)
{
    memfit_free(t->data);
    memset(t, 0, sizeof(*t));
}

char *mf_text_take(struct mf_text *t, size_t *len)
{
    if (t->failed || (!t->data && !text_reserve(t, 0))) {
        mf_text_free(t);
        memfit_fail(MEMFIT_E_NOMEM, "out of memory building a response");
        return NULL;
    }
    char *s = t->data;
    if (len)
        *len = t->len;
    memset(t, 0, sizeof(*t));
    return s;
}

/* ---- Errors ------------------------------------------------------------------ */

void mf_http_error_set(struct mf_http_error *e, int status, const char *type, const char *code,
                       const char *fmt, ...)
{
    e->status = status;
    e->type = type;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
}

/* Hands over a built error body: E_NOMEM when building it failed. */
static enum memfit_status take_body(struct mf_text *t, char **out, size_t *out_len)
{
    size_t len;
    char *s = mf_text_take(t, &len);
    if (!s)
        return MEMFIT_E_NOMEM;
    *out = s;
    *out_len = len;
    return MEMFIT_OK;
}

enum memfit_status mf_http_error_json(const struct mf_http_error *e, char **out, size_t *out_len)
{
    struct mf_text t = {0};
    mf_text_puts(&t, "{\"error\":{\"message\":");
    mf_text_json_string(&t, e->message, strlen(e->message));
    mf_text_puts(&t, ",\"type\":");
    mf_text_json_string(&t, e->type, strlen(e->type));
    mf_text_puts(&t, ",\"code\":");
    if (e->code)
        mf_text_json_string(&t, e->code, strlen(e->code));
    else
        mf_text_puts(&t, "null");
    mf_text_puts(&t, "}}\n");
    return take_body(&t, out, out_len);
}

/* ---- base64 ------------------------------------------------------------------- */

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

enum memfit_status mf_base64_decode(const char *in, size_t len, uint8_t **out, size_t *out_len)
{
    size_t data_len = len;
    if (data_len % 4 == 0 && data_len >= 2) { /* padding: up to two '=' at the very end */
        if (in[data_len - 1] == '=')
            data_len--;
        if (in[data_len - 1] == '=')
            data_len--;
    }
    if (data_len % 4 == 1)
        return memfit_fail(MEMFIT_E_FORMAT,
                           "base64: %zu characters cannot be a whole number of bytes", len);
    for (size_t i = 0; i < data_len; i++)
        if (b64_value((unsigned char)in[i]) < 0)
            return memfit_fail(MEMFIT_E_FORMAT, "base64: invalid character 0x%02x at offset %zu",
                               (unsigned char)in[i], i);
    size_t n = data_len / 4 * 3 + (data_len % 4 ? data_len % 4 - 1 : 0);
    uint8_t *buf = memfit_malloc_in(MEMFIT_ALLOC_SERVER, n ? n : 1);
    if (!buf)
        return MEMFIT_E_NOMEM;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < data_len; i++) {
        acc = (acc << 6) | (uint32_t)b64_value((unsigned char)in[i]);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[o++] = (uint8_t)(acc >> bits);
        }
    }
    /* Leftover bits must be zero (canonical encoding), else the text was cut. */
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) {
        memfit_free(buf);
        return memfit_fail(MEMFIT_E_FORMAT, "base64: the last character has stray bits");
    }
    *out = buf;
    *out_len = o;
    return MEMFIT_OK;
}

bool mf_text_base64(struct mf_text *t, const void *data, size_t len)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const uint8_t *p = data;
    size_t out = (len + 2) / 3 * 4;
    if (!text_reserve(t, out))
        return false;
    char *w = t->data + t->len;
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *w++ = alphabet[v >> 18];
        *w++ = alphabet[(v >> 12) & 63];
        *w++ = alphabet[(v >> 6) & 63];
        *w++ = alphabet[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < len ? (uint32_t)p[i + 1] << 8 : 0);
        *w++ = alphabet[v >> 18];
        *w++ = alphabet[(v >> 12) & 63];
        *w++ = i + 1 < len ? alphabet[(v >> 6) & 63] : '=';
        *w++ = '=';
    }
    t->len += out;
    t->data[t->len] = '\0';
    return true;
}

enum memfit_status mf_data_url_split(const char *url, size_t len, const char **payload,
                                     size_t *payload_len)
{
    if (len < 5 || strncasecmp(url, "data:", 5) != 0)
        return memfit_fail(MEMFIT_E_FORMAT,
                           "an image input must be a data URL (data:image/png;base64,...)");
    const char *comma = memchr(url, ',', len);
    if (!comma)
        return memfit_fail(MEMFIT_E_FORMAT, "data URL without ',' before its data");
    const char *meta = url + 5;
    size_t meta_len = (size_t)(comma - meta);
    static const char b64[] = ";base64";
    if (meta_len < sizeof(b64) - 1 ||
        strncasecmp(comma - (sizeof(b64) - 1), b64, sizeof(b64) - 1) != 0)
        return memfit_fail(MEMFIT_E_FORMAT, "data URL is not base64-encoded (expected ;base64,)");
    size_t type_len = meta_len - (sizeof(b64) - 1);
    if (type_len > 0 && (type_len < 6 || strncasecmp(meta, "image/", 6) != 0))
        return memfit_fail(MEMFIT_E_FORMAT, "data URL media type '%.*s' is not image/*",
                           (int)(type_len > 64 ? 64 : type_len), meta);
    *payload = comma + 1;
    *payload_len = len - (size_t)(comma + 1 - url);
    return MEMFIT_OK;
}

/* ---- The embeddings request ---------------------------------------------------- */

/* Frees n strings, their array and the array of their lengths. */
static void free_strings(char **v, size_t *lens, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        memfit_free(v[i]);
    memfit_free(v);
    memfit_free(lens);
}

void mf_embed_request_free(struct mf_embed_request *r)
{
    if (!r)
        return;
    free_strings(r->inputs, r->input_lens, r->n_inputs);
    memfit_free(r->model);
    memset(r, 0, sizeof(*r));
}

static const char *json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "unknown";
}

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

#define BAD(code, ...)                                                                             \
    do {                                                                                           \
        mf_http_error_set(err, 400, "invalid_request_error", code, __VA_ARGS__);                   \
        st = memfit_fail(MEMFIT_E_FORMAT, "%s", err->message);                                     \
        goto done;                                                                                 \
    } while (0)

/*
 * Parses a request body that must be a JSON object. Client mistakes are
 * E_FORMAT with *err (invalid_json, invalid_type); jansson reports a failed
 * allocation as a syntax error, which the allocation flag on this thread
 * (cleared first) tells apart: E_NOMEM. The flag is checked on success too:
 * jansson's lexer ignores a failed growth of a string's buffer and hands
 * back the string cut short.
 */
static enum memfit_status load_object(const char *body, size_t len, size_t flags, json_t **out,
                                      struct mf_http_error *err)
{
    mf_json_init();
    json_error_t jerr;
    memfit_clear_error();
    mf_json_clear_alloc_failure();
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES | flags, &jerr);
    if (mf_json_alloc_failed()) {
        json_decref(root);
        return memfit_fail(MEMFIT_E_NOMEM, "out of memory parsing the request");
    }
    if (!root) {
        mf_http_error_set(err, 400, "invalid_request_error", "invalid_json",
                          "the body is not valid JSON: %s (line %d, column %d)", jerr.text,
                          jerr.line, jerr.column);
        return memfit_fail(MEMFIT_E_FORMAT, "%s", err->message);
    }
    if (!json_is_object(root)) {
        mf_http_error_set(err, 400, "invalid_request_error", "invalid_type",
                          "the body must be a JSON object, not %s", json_type_name(root));
        json_decref(root);
        return memfit_fail(MEMFIT_E_FORMAT, "%s", err->message);
    }
    *out = root;
    return MEMFIT_OK;
}

/* The request's "model": a string of 1 to MF_MODEL_NAME_MAX-1 bytes without NUL. */
static enum memfit_status model_field(const json_t *root, struct mf_http_error *err)
{
    json_t *model = json_object_get(root, "model");
    if (!model)
        mf_http_error_set(err, 400, "invalid_request_error", "missing_field",
                          "missing field 'model'");
    else if (!json_is_string(model))
        mf_http_error_set(err, 400, "invalid_request_error", "invalid_type",
                          "'model' must be a string, not %s", json_type_name(model));
    else if (json_string_length(model) == 0 || json_string_length(model) >= MF_MODEL_NAME_MAX ||
             strlen(json_string_value(model)) != json_string_length(model))
        mf_http_error_set(err, 400, "invalid_request_error", "invalid_value",
                          "'model' must be 1 to %d characters", MF_MODEL_NAME_MAX - 1);
    else
        return MEMFIT_OK;
    return memfit_fail(MEMFIT_E_FORMAT, "%s", err->message);
}

static enum memfit_status copy_input(struct mf_embed_request *r, size_t i, const json_t *s)
{
    size_t n = json_string_length(s);
    r->inputs[i] = memfit_malloc_in(MEMFIT_ALLOC_SERVER, n + 1);
    if (!r->inputs[i])
        return MEMFIT_E_NOMEM;
    memcpy(r->inputs[i], json_string_value(s), n);
    r->inputs[i][n] = '\0';
    r->input_lens[i] = n;
    return MEMFIT_OK;
}

enum memfit_status mf_embed_request_parse(const char *body, size_t len, size_t max_inputs,
                                          struct mf_embed_request *out, struct mf_http_error *err)
{
    struct mf_embed_request r = {0};
    json_t *root;
    enum memfit_status st = load_object(body, len, JSON_ALLOW_NUL, &root, err);
    if (st != MEMFIT_OK)
        return st;
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        if (strcmp(key, "model") != 0 && strcmp(key, "input") != 0 &&
            strcmp(key, "encoding_format") != 0 && strcmp(key, "dimensions") != 0 &&
            strcmp(key, "user") != 0)
            BAD("invalid_value",
                "unknown field '%.64s' (expected model, input, "
                "encoding_format, dimensions, user)",
                key);
    }
    json_t *model = json_object_get(root, "model");
    if ((st = model_field(root, err)) != MEMFIT_OK)
        goto done;
    json_t *input = json_object_get(root, "input");
    if (!input)
        BAD("missing_field", "missing field 'input'");
    size_t n = 1;
    if (json_is_array(input)) {
        n = json_array_size(input);
        if (n == 0)
            BAD("invalid_value", "'input' is an empty array");
        if (n > max_inputs)
            BAD("too_many_inputs", "'input' has %zu items; at most %zu per request", n, max_inputs);
        size_t i;
        json_t *item;
        json_array_foreach(input, i, item)
        {
            if (!json_is_string(item))
                BAD("invalid_type", "'input[%zu]' must be a string, not %s", i,
                    json_type_name(item));
        }
    } else if (!json_is_string(input)) {
        BAD("invalid_type", "'input' must be a string or an array of strings, not %s",
            json_type_name(input));
    }
    json_t *format = json_object_get(root, "encoding_format");
    if (format && !json_is_null(format)) {
        if (!json_is_string(format))
            BAD("invalid_type", "'encoding_format' must be a string, not %s",
                json_type_name(format));
        if (strcmp(json_string_value(format), "base64") == 0)
            r.base64_output = true;
        else if (strcmp(json_string_value(format), "float") != 0)
            BAD("invalid_value", "'encoding_format' must be \"float\" or \"base64\"");
    }
    json_t *dims = json_object_get(root, "dimensions");
    if (dims && !json_is_null(dims)) {
        if (!json_is_integer(dims))
            BAD("invalid_type", "'dimensions' must be an integer, not %s", json_type_name(dims));
        if (json_integer_value(dims) < 1 || json_integer_value(dims) > 1000000)
            BAD("invalid_value", "'dimensions' must be 1 to 1000000");
        r.dimensions = (uint64_t)json_integer_value(dims);
    }
    json_t *user = json_object_get(root, "user");
    if (user && !json_is_string(user) && !json_is_null(user))
        BAD("invalid_type", "'user' must be a string, not %s", json_type_name(user));

    r.model = memfit_strdup(json_string_value(model));
    r.inputs = memfit_calloc_in(MEMFIT_ALLOC_SERVER, n, sizeof(*r.inputs));
    r.input_lens = memfit_calloc_in(MEMFIT_ALLOC_SERVER, n, sizeof(*r.input_lens));
    if (!r.model || !r.inputs || !r.input_lens) {
        st = MEMFIT_E_NOMEM;
        goto done;
    }
    r.n_inputs = n;
    for (size_t i = 0; i < n && st == MEMFIT_OK; i++)
        st = copy_input(&r, i, json_is_array(input) ? json_array_get(input, i) : input);
done:
    json_decref(root);
    if (st != MEMFIT_OK) {
        mf_embed_request_free(&r);
        return st;
    }
    *out = r;
    return MEMFIT_OK;
}

/* ---- The completions and chat requests ----------------------------------------------- */

void mf_gen_request_free(struct mf_gen_request *r)
{
    memfit_free(r->model);
    memfit_free(r->prompt);
    for (size_t i = 0; i < r->n_messages; i++) {
        memfit_free(r->roles ? r->roles[i] : NULL);
        memfit_free(r->contents ? r->contents[i] : NULL);
    }
    for (size_t i = 0; i < r->n_messages; i++) {
        for (size_t k = 0; r->tool_calls && r->tool_calls[i] && k < r->n_tool_calls[i]; k++) {
            memfit_free((char *)r->tool_calls[i][k].id);
            memfit_free((char *)r->tool_calls[i][k].name);
            memfit_free((char *)r->tool_calls[i][k].arguments);
        }
        memfit_free(r->tool_calls ? r->tool_calls[i] : NULL);
        memfit_free(r->tool_call_ids ? r->tool_call_ids[i] : NULL);
    }
    memfit_free(r->tool_calls);
    memfit_free(r->n_tool_calls);
    memfit_free(r->tool_call_ids);
    for (size_t i = 0; i < r->n_tools; i++) {
        memfit_free(r->tools[i].name);
        memfit_free(r->tools[i].parameters);
    }
    memfit_free(r->tools);
    memfit_free(r->tools_json);
    memfit_free(r->roles);
    memfit_free(r->contents);
    for (size_t i = 0; i < r->n_stop; i++)
        memfit_free(r->stop[i]);
    memfit_free(r->logit_bias);
    memfit_grammar_free(r->grammar);
    memset(r, 0, sizeof(*r));
}

static char *json_strdup(const json_t *s, size_t *len)
{
    size_t n = json_string_length(s);
    char *out = memfit_malloc_in(MEMFIT_ALLOC_SERVER, n + 1);
    if (!out)
        return NULL;
    memcpy(out, json_string_value(s), n);
    out[n] = '\0';
    if (len)
        *len = n;
    return out;
}

/* A number field in [lo, hi]: E_FORMAT (with *err) otherwise. */
static enum memfit_status number_field(const json_t *root, const char *key, double lo, double hi,
                                       bool *has, double *out, struct mf_http_error *err)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v))
        return MEMFIT_OK;
    if (!json_is_number(v)) {
        mf_http_error_set(err, 400, "invalid_request_error", "invalid_type",
                          "'%s' must be a number, not %s", key, json_type_name(v));
        return memfit_fail(MEMFIT_E_FORMAT, "%s", err->message);
    }
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) {
        mf_http_error_set(err, 400, "invalid_request_error", "invalid_value",
                          "'%s' is %g; it must be %g to %g", key, x, lo, hi);
        return memfit_fail(MEMFIT_E_FORMAT, "%s", err->message);
    }
    *has = true;
    *out = x;
    return MEMFIT_OK;
}

static enum memfit_status integer_field(const json_t *root, const char *key, uint64_t hi, bool *has,
                                        uint64_t *out, struct mf_http_error *err)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v))
        return MEMFIT_OK;
    if (!json_is_integer(v)) {
        mf_http_error_set(err, 400, "invalid_request_error", "invalid_type",
                          "'%s' must be an integer, not %s", key, json_type_name(v));
        return memfit_fail(MEMFIT_E_FORMAT, "%s", err->message);
    }
    json_int_t x = json_integer_value(v);
    if (x < 0 || (uint64_t)x > hi) {
        mf_http_error_set(err, 400, "invalid_request_error", "invalid_value",
                          "'%s' is %lld; it must be 0 to %llu", key, (long long)x,
                          (unsigned long long)hi);
        return memfit_fail(MEMFIT_E_FORMAT, "%s", err->message);
    }
    *has = true;
    *out = (uint64_t)x;
    return MEMFIT_OK;
}

/* A message's content: a string, or text parts joined. */
static enum memfit_status message_content(const json_t *c, size_t i, char **out,
                                          struct mf_http_error *err)
{
    enum memfit_status st = MEMFIT_OK;
    if (json_is_string(c)) {
        *out = json_strdup(c, NULL);
        return *out ? MEMFIT_OK : MEMFIT_E_NOMEM;
    }
    if (json_is_null(c)) {
        *out = memfit_strdup("");
        return *out ? MEMFIT_OK : MEMFIT_E_NOMEM;
    }
    if (!json_is_array(c))
        BAD("invalid_type", "'messages[%zu].content' must be a string or an array of parts, not %s",
            i, json_type_name(c));
    struct mf_text t = {0};
    mf_text_puts(&t, "");
    size_t k;
    json_t *part;
    json_array_foreach(c, k, part)
    {
        json_t *type = json_object_get(part, "type");
        json_t *text = json_object_get(part, "text");
        if (!json_is_object(part) || !json_is_string(type) ||
            strcmp(json_string_value(type), "text") != 0 || !json_is_string(text)) {
            mf_text_free(&t);
            BAD("invalid_value",
                "'messages[%zu].content[%zu]' must be {\"type\": \"text\", \"text\": ...} (this "
                "model reads text only)",
                i, k);
        }
        mf_text_append(&t, json_string_value(text), json_string_length(text));
    }
    *out = mf_text_take(&t, NULL);
    return *out ? MEMFIT_OK : MEMFIT_E_NOMEM;
done:
    return st;
}

/*
 * The sampling and length fields of a completions body, or of the
 * parameters of an Open Inference Protocol request: max_tokens
 * (max_completion_tokens), top_k, seed, temperature, top_p, min_p,
 * repeat_penalty (repetition_penalty), stop. E_FORMAT with *err; E_NOMEM.
 */
static enum memfit_status gen_sampling(const json_t *root, struct mf_gen_request *out,
                                       struct mf_http_error *err)
{
    enum memfit_status st = MEMFIT_OK;
    struct mf_gen_request r = *out;
    if ((st = integer_field(root, "max_tokens", 1u << 24, &r.has_max_tokens, &r.max_tokens, err)) !=
            MEMFIT_OK ||
        (st = integer_field(root, "max_completion_tokens", 1u << 24, &r.has_max_tokens,
                            &r.max_tokens, err)) != MEMFIT_OK ||
        (st = integer_field(root, "top_k", 1u << 24, &r.has_top_k, &r.top_k, err)) != MEMFIT_OK ||
        (st = integer_field(root, "seed", UINT64_MAX >> 1, &r.has_seed, &r.seed, err)) != MEMFIT_OK)
        goto done;
    if ((st = number_field(root, "temperature", 0, 2, &r.has_temperature, &r.temperature, err)) !=
            MEMFIT_OK ||
        (st = number_field(root, "top_p", 0, 1, &r.has_top_p, &r.top_p, err)) != MEMFIT_OK ||
        (st = number_field(root, "min_p", 0, 1, &r.has_min_p, &r.min_p, err)) != MEMFIT_OK ||
        (st = number_field(root, "repeat_penalty", 0.01, 10, &r.has_repeat_penalty,
                           &r.repeat_penalty, err)) != MEMFIT_OK ||
        (st = number_field(root, "repetition_penalty", 0.01, 10, &r.has_repeat_penalty,
                           &r.repeat_penalty, err)) != MEMFIT_OK)
        goto done;
    if (r.has_top_p && r.top_p == 0)
        BAD("invalid_value", "'top_p' must be above 0");
    json_t *stop = json_object_get(root, "stop");
    if (stop && !json_is_null(stop)) {
        size_t n = json_is_array(stop) ? json_array_size(stop) : 1;
        if (!json_is_array(stop) && !json_is_string(stop))
            BAD("invalid_type", "'stop' must be a string or an array of strings, not %s",
                json_type_name(stop));
        if (n > MF_GEN_MAX_STOP)
            BAD("invalid_value", "'stop' has %zu strings; at most %d", n, MF_GEN_MAX_STOP);
        for (size_t i = 0; i < n; i++) {
            json_t *sv = json_is_array(stop) ? json_array_get(stop, i) : stop;
            if (!json_is_string(sv))
                BAD("invalid_type", "'stop[%zu]' must be a string, not %s", i, json_type_name(sv));
            if (json_string_length(sv) == 0 || json_string_length(sv) > 256 ||
                strlen(json_string_value(sv)) != json_string_length(sv))
                BAD("invalid_value", "'stop[%zu]' must be 1 to 256 bytes", i);
            if (!(r.stop[i] = json_strdup(sv, NULL))) {
                st = MEMFIT_E_NOMEM;
                goto done;
            }
            r.n_stop++;
        }
    }
done:
    *out = r; /* the stop strings copied so far are freed with the request */
    return st;
}

/*
 * The top-level fields of the completions and chat bodies (also the
 * streaming scan's schemas), each once with the routes that take it: BOTH,
 * COMPL (/v1/completions) or CHAT (/v1/chat/completions).
 */
#define GEN_FIELDS(X)                                                                              \
    X("model", BOTH)                                                                               \
    X("prompt", COMPL)                                                                             \
    X("messages", CHAT)                                                                            \
    X("max_tokens", BOTH)                                                                          \
    X("max_completion_tokens", BOTH)                                                               \
    X("top_k", BOTH)                                                                               \
    X("seed", BOTH)                                                                                \
    X("n", BOTH)                                                                                   \
    X("temperature", BOTH)                                                                         \
    X("top_p", BOTH)                                                                               \
    X("min_p", BOTH)                                                                               \
    X("repeat_penalty", BOTH)                                                                      \
    X("repetition_penalty", BOTH)                                                                  \
    X("stream", BOTH)                                                                              \
    X("stream_options", BOTH)                                                                      \
    X("stop", BOTH)                                                                                \
    X("user", BOTH)                                                                                \
    X("keep_alive", BOTH)                                                                          \
    X("frequency_penalty", BOTH)                                                                   \
    X("presence_penalty", BOTH)                                                                    \
    X("logit_bias", BOTH)                                                                          \
    X("logprobs", BOTH)                                                                            \
    X("top_logprobs", CHAT)                                                                        \
    X("echo", COMPL)                                                                               \
    X("suffix", COMPL)                                                                             \
    X("best_of", COMPL)                                                                            \
    X("tools", CHAT)                                                                               \
    X("tool_choice", CHAT)                                                                         \
    X("parallel_tool_calls", CHAT)                                                                 \
    X("functions", CHAT)                                                                           \
    X("function_call", CHAT)                                                                       \
    X("response_format", CHAT)                                                                     \
    X("modalities", CHAT)                                                                          \
    X("audio", CHAT)                                                                               \
    X("prediction", CHAT)                                                                          \
    X("reasoning_effort", CHAT)                                                                    \
    X("web_search_options", CHAT)                                                                  \
    X("service_tier", BOTH)                                                                        \
    X("store", BOTH)                                                                               \
    X("metadata", BOTH)

#define IN_COMPL_BOTH(name)  name,
#define IN_COMPL_COMPL(name) name,
#define IN_COMPL_CHAT(name)
#define IN_CHAT_BOTH(name) name,
#define IN_CHAT_COMPL(name)
#define IN_CHAT_CHAT(name)        name,
#define COMPL_FIELD(name, routes) IN_COMPL_##routes(name)
#define CHAT_FIELD(name, routes)  IN_CHAT_##routes(name)
static const char *const completion_fields[] = {GEN_FIELDS(COMPL_FIELD)};
static const char *const chat_fields[] = {GEN_FIELDS(CHAT_FIELD)};
#define COMPLETION_FIELDS_TEXT "the /v1/completions fields of docs/server.md"
#define CHAT_FIELDS_TEXT       "the /v1/chat/completions fields of docs/server.md"

static enum memfit_status known_members(const json_t *obj, const char *where,
                                        const char *const *names, size_t n, const char *expected,
                                        struct mf_http_error *err);

/* A field this server does not honour, given a value other than its neutral one. */
#define UNSUPPORTED(...) BAD("unsupported_field", __VA_ARGS__)

/* Whether `v` is absent, null, or equals one of the neutral strings (NULL-terminated list). */
static bool neutral_string(const json_t *v, const char *const *ok)
{
    if (!v || json_is_null(v))
        return true;
    for (; json_is_string(v) && *ok; ok++)
        if (strcmp(json_string_value(v), *ok) == 0)
            return true;
    return false;
}

/* Whether `v` is absent, null, an empty array or an empty object. */
static bool neutral_empty(const json_t *v)
{
    return !v || json_is_null(v) || (json_is_array(v) && json_array_size(v) == 0) ||
           (json_is_object(v) && json_object_size(v) == 0);
}

/* "logit_bias": {"token id": bias in [-100, 100], ...}. */
static enum memfit_status gen_logit_bias(const json_t *bias, struct mf_gen_request *r,
                                         struct mf_http_error *err)
{
    enum memfit_status st = MEMFIT_OK;
    if (!bias || json_is_null(bias))
        return MEMFIT_OK;
    if (!json_is_object(bias))
        BAD("invalid_type", "'logit_bias' must be an object of token id: bias, not %s",
            json_type_name(bias));
    size_t n = json_object_size(bias);
    if (n > MF_GEN_MAX_LOGIT_BIAS)
        BAD("invalid_value", "'logit_bias' has %zu entries; at most %d", n, MF_GEN_MAX_LOGIT_BIAS);
    if (n == 0)
        return MEMFIT_OK;
    r->logit_bias = memfit_calloc_in(MEMFIT_ALLOC_SERVER, n, sizeof(*r->logit_bias));
    if (!r->logit_bias)
        return MEMFIT_E_NOMEM;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)bias, key, v)
    {
        long long id;
        if (memfit_parse_int(key, 0, INT32_MAX, &id) != MEMFIT_OK)
            BAD("invalid_value", "'logit_bias': key '%.32s' is not a token id (0 or more)", key);
        if (!json_is_number(v))
            BAD("invalid_type", "'logit_bias[\"%s\"]' must be a number, not %s", key,
                json_type_name(v));
        double b = json_number_value(v);
        if (!(b >= -100 && b <= 100))
            BAD("invalid_value", "'logit_bias[\"%s\"]' is %g; it must be -100 to 100", key, b);
        r->logit_bias[r->n_logit_bias++] = (struct memfit_logit_bias){(int32_t)id, (float)b};
    }
done:
    return st;
}

/* Ollama's keep_alive: seconds (a number), or a duration string ("5m", "0", "-1"); negative
 * keeps the model loaded. */
static enum memfit_status gen_keep_alive(const json_t *v, struct mf_gen_request *r,
                                         struct mf_http_error *err)
{
    enum memfit_status st = MEMFIT_OK;
    if (!v || json_is_null(v))
        return MEMFIT_OK;
    double seconds;
    if (json_is_number(v)) {
        seconds = json_number_value(v);
    } else if (json_is_string(v)) {
        const char *text = json_string_value(v);
        uint64_t ns;
        if (text[0] == '-' && memfit_parse_duration(text + 1, &ns) == MEMFIT_OK)
            seconds = -1;
        else if (memfit_parse_duration(text, &ns) == MEMFIT_OK)
            seconds = (double)ns / 1e9;
        else
            BAD("invalid_value",
                "'keep_alive' is '%.32s'; expected seconds or a duration (\"5m\", \"0\", "
                "\"-1\")",
                text);
    } else {
        BAD("invalid_type", "'keep_alive' must be a number of seconds or a duration string, not %s",
            json_type_name(v));
    }
    if (!(seconds < 1e15) || seconds != seconds)
        BAD("invalid_value", "'keep_alive' is %g s: too long (use -1 to keep the model loaded)",
            seconds);
    r->has_keep_alive = true;
    r->keep_alive_s = seconds < 0 ? -1 : (int64_t)ceil(seconds);
done:
    return st;
}

/* logprobs / top_logprobs: chat takes a boolean and a count, completions a count. */
static enum memfit_status gen_logprobs(const json_t *root, bool chat, struct mf_gen_request *r,
                                       struct mf_http_error *err)
{
    enum memfit_status st = MEMFIT_OK;
    json_t *lp = json_object_get(root, "logprobs");
    bool has = false;
    uint64_t top = 0;
    if (chat) {
        if (lp && !json_is_null(lp) && !json_is_boolean(lp))
            BAD("invalid_type", "'logprobs' must be a boolean, not %s", json_type_name(lp));
        r->logprobs = json_is_true(lp);
        if ((st = integer_field(root, "top_logprobs", MEMFIT_MAX_TOP_LOGPROBS, &has, &top, err)) !=
            MEMFIT_OK)
            goto done;
        if (has && !r->logprobs)
            BAD("invalid_value", "'top_logprobs' needs 'logprobs': true");
    } else {
        if ((st = integer_field(root, "logprobs", MEMFIT_MAX_TOP_LOGPROBS, &has, &top, err)) !=
            MEMFIT_OK)
            goto done;
        r->logprobs = has;
    }
    r->top_logprobs = (uint32_t)top;
done:
    return st;
}

/*
 * OpenAI's response_format: {"type":"text"} (free text), {"type":
 * "json_object"} (any JSON object) or {"type":"json_schema","json_schema":
 * {"name", "schema", "strict", "description"}}, the schema compiled here so
 * that what memfit does not support is a 400 naming the keyword.
 */
#define NO_MEMORY(...)                                                                             \
    do {                                                                                           \
        mf_http_error_set(err, 503, "server_error", "out_of_memory", __VA_ARGS__);                 \
        st = MEMFIT_E_NOMEM;                                                                       \
        goto done;                                                                                 \
    } while (0)

static enum memfit_status response_format(json_t *v, struct mf_gen_request *r,
                                          struct mf_http_error *err)
{
    enum memfit_status st = MEMFIT_OK;
    char *text = NULL;
    const char *type = json_string_value(json_object_get(v, "type"));
    if (!json_is_object(v) || !type)
        BAD("invalid_type", "'response_format' must be an object with a string 'type'");
    const char *key;
    json_t *member;
    json_object_foreach(v, key, member)
    {
        if (strcmp(key, "type") != 0 && strcmp(key, "json_schema") != 0)
            BAD("invalid_value", "'response_format' has an unknown member '%.64s'", key);
    }
    if (strcmp(type, "text") == 0)
        return MEMFIT_OK;
    if (strcmp(type, "json_object") == 0) {
        if ((st = memfit_grammar_json_object(&r->grammar)) != MEMFIT_OK)
            NO_MEMORY("no memory for the JSON grammar");
        return MEMFIT_OK;
    }
    if (strcmp(type, "json_schema") != 0)
        BAD("invalid_value",
            "'response_format.type' '%.32s' is not one of text, json_object, json_schema", type);
    json_t *js = json_object_get(v, "json_schema");
    if (!json_is_object(js))
        BAD("invalid_type", "'response_format.json_schema' must be an object");
    json_object_foreach(js, key, member)
    {
        static const char *const known[] = {"name", "schema", "strict", "description"};
        bool ok = false;
        for (size_t i = 0; i < N_OF(known) && !ok; i++)
            ok = strcmp(key, known[i]) == 0;
        if (!ok)
            BAD("invalid_value", "'response_format.json_schema' has an unknown member '%.64s'",
                key);
    }
    json_t *schema = json_object_get(js, "schema");
    if (!json_is_object(schema))
        BAD("invalid_type", "'response_format.json_schema.schema' must be an object");
    if (!(text = json_dumps(schema, JSON_COMPACT)))
        NO_MEMORY("no memory for the JSON schema");
    if ((st = memfit_grammar_from_json_schema(text, strlen(text), &r->grammar)) != MEMFIT_OK) {
        if (st == MEMFIT_E_NOMEM)
            NO_MEMORY("no memory to compile the JSON schema");
        BAD("unsupported_schema", "response_format.json_schema: %s", memfit_last_error());
    }
done:
    memfit_free(text); /* json_dumps allocates with memfit's allocator (mf_json_init) */
    return st;
}
#undef NO_MEMORY

/* OpenAI's fields this server does not honour: taken only at their neutral value. */
enum neutral {
    NEUTRAL_FALSE,        /* absent, null or false */
    NEUTRAL_EMPTY,        /* absent, null, [] or {} */
    NEUTRAL_EMPTY_STRING, /* absent, null or "" */
    NEUTRAL_STRINGS,      /* absent, null or one of `ok` */
    NEUTRAL_TEXT_ONLY,    /* absent, null or ["text"] */
    NEUTRAL_NULL,         /* absent or null */
};

enum { ROUTE_COMPL = 1, ROUTE_CHAT = 2, ROUTE_BOTH = 3 };

static const char *const tiers[] = {"auto", "default", NULL};
static const char *const none_auto[] = {"none", "auto", NULL};

static const struct neutral_field {
    const char *name;
    unsigned routes;
    enum neutral kind;
    const char *const *ok;
    const char *refusal; /* NULL: "'name' is not supported" */
} neutral_fields_table[] = {
    {"store", ROUTE_BOTH, NEUTRAL_FALSE, NULL,
     "'store' is not supported (nothing is stored): leave it out or false"},
    {"metadata", ROUTE_BOTH, NEUTRAL_EMPTY, NULL,
     "'metadata' is not supported (nothing is stored)"},
    {"service_tier", ROUTE_BOTH, NEUTRAL_STRINGS, tiers,
     "'service_tier' is not supported: leave it out, \"auto\" or \"default\""},
    {"suffix", ROUTE_COMPL, NEUTRAL_EMPTY_STRING, NULL,
     "'suffix' is not supported (no fill-in-the-middle)"},
    {"functions", ROUTE_CHAT, NEUTRAL_EMPTY, NULL,
     "'functions' is not supported (the deprecated function calling): use 'tools'"},
    {"function_call", ROUTE_CHAT, NEUTRAL_STRINGS, none_auto,
     "'function_call' is not supported (the deprecated function calling): use 'tool_choice'"},
    {"modalities", ROUTE_CHAT, NEUTRAL_TEXT_ONLY, NULL, "'modalities' is not supported: text only"},
    {"audio", ROUTE_CHAT, NEUTRAL_NULL, NULL, NULL},
    {"prediction", ROUTE_CHAT, NEUTRAL_NULL, NULL, NULL},
    {"reasoning_effort", ROUTE_CHAT, NEUTRAL_NULL, NULL, NULL},
    {"web_search_options", ROUTE_CHAT, NEUTRAL_NULL, NULL, NULL},
};

static bool is_neutral(const json_t *v, const struct neutral_field *f)
{
    static const char *const no_strings[] = {NULL};
    switch (f->kind) {
    case NEUTRAL_FALSE:
        return !v || json_is_null(v) || json_is_false(v);
    case NEUTRAL_EMPTY:
        return neutral_empty(v);
    case NEUTRAL_EMPTY_STRING:
        return !v || json_is_null(v) || (json_is_string(v) && json_string_length(v) == 0);
    case NEUTRAL_STRINGS:
        return neutral_string(v, f->ok);
    case NEUTRAL_TEXT_ONLY:
        return !v || json_is_null(v) ||
               (json_is_array(v) && json_array_size(v) == 1 &&
                json_is_string(json_array_get(v, 0)) &&
                strcmp(json_string_value(json_array_get(v, 0)), "text") == 0);
    default:
        return neutral_string(v, no_strings);
    }
}

/* Refuses, naming it, the first field of the route's that is not at its neutral value. */
static enum memfit_status neutral_fields(const json_t *root, bool chat, struct mf_http_error *err)
{
    enum memfit_status st = MEMFIT_OK;
    for (size_t i = 0; i < N_OF(neutral_fields_table); i++) {
        const struct neutral_field *f = &neutral_fields_table[i];
        if (!(f->routes & (chat ? ROUTE_CHAT : ROUTE_COMPL)) ||
            is_neutral(json_object_get(root, f->name), f))
            continue;
        if (f->refusal)
            UNSUPPORTED("%s", f->refusal);
        UNSUPPORTED("'%s' is not supported", f->name);
    }
done:
    return st;
}

/* A function name as OpenAI takes it: 1 to 64 of a-z, A-Z, 0-9, _ and -. */
static bool function_name_ok(const json_t *name)
{
    if (!json_is_string(name) || json_string_length(name) == 0 || json_string_length(name) > 64)
        return false;
    for (const char *p = json_string_value(name); *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-'))
            return false;
    return strlen(json_string_value(name)) == json_string_length(name);
}

/* tools[i]: {"type": "function", "function": {"name", "description"?, "parameters"?, "strict"?}}.
 */
static enum memfit_status gen_tool(json_t *tool, size_t i, struct mf_gen_request *r,
                                   struct mf_http_error *err)
{
    enum memfit_status st = MEMFIT_OK;
    static const char *const tool_keys[] = {"type", "function"};
    static const char *const function_keys[] = {"name", "description", "parameters", "strict"};
    char where[48];
    snprintf(where, sizeof(where), "'tools[%zu]'", i);
    if (!json_is_object(tool))
        BAD("invalid_type", "'tools[%zu]' must be an object, not %s", i, json_type_name(tool));
    if ((st = known_members(tool, where, tool_keys, N_OF(tool_keys), "type, function", err)) !=
        MEMFIT_OK)
        goto done;
    json_t *type = json_object_get(tool, "type");
    if (!json_is_string(type) || strcmp(json_string_value(type), "function") != 0)
        UNSUPPORTED("'tools[%zu].type' must be \"function\" (the only tools this server calls)", i);
    json_t *fn = json_object_get(tool, "function");
    if (!json_is_object(fn))
        BAD(fn ? "invalid_type" : "missing_field", "'tools[%zu].function' must be an object", i);
    snprintf(where, sizeof(where), "'tools[%zu].function'", i);
    if ((st = known_members(fn, where, function_keys, N_OF(function_keys),
                            "name, description, parameters, strict", err)) != MEMFIT_OK)
        goto done;
    json_t *name = json_object_get(fn, "name");
    if (!function_name_ok(name))
        BAD(name ? "invalid_value" : "missing_field",
            "'tools[%zu].function.name' must be 1 to 64 of a-z, A-Z, 0-9, _ and -", i);
    json_t *desc = json_object_get(fn, "description"), *strict = json_object_get(fn, "strict");
    if (desc && !json_is_string(desc) && !json_is_null(desc))
        BAD("invalid_type", "'tools[%zu].function.description' must be a string", i);
    if (strict && !json_is_boolean(strict) && !json_is_null(strict))
        BAD("invalid_type", "'tools[%zu].function.strict' must be a boolean", i);
    json_t *params = json_object_get(fn, "parameters");
    if (params && !json_is_null(params) && !json_is_object(params))
        BAD("invalid_type", "'tools[%zu].function.parameters' must be a JSON Schema object", i);
    for (size_t k = 0; k < i; k++)
        if (strcmp(r->tools[k].name, json_string_value(name)) == 0)
            BAD("invalid_value", "'tools[%zu]': function '%s' is also tools[%zu]", i,
                json_string_value(name), k);
    struct mf_gen_tool *t = &r->tools[i];
    if (!(t->name = json_strdup(name, NULL)) ||
        (json_is_object(params) && !(t->parameters = json_dumps(params, JSON_COMPACT))))
        st = MEMFIT_E_NOMEM;
done:
    return st;
}

/* tool_choice: "none", "auto", "required" or {"type": "function", "function": {"name"}}. */
static enum memfit_status gen_tool_choice(const json_t *v, struct mf_gen_request *r, bool *none,
                                          struct mf_http_error *err)
{
    enum memfit_status st = MEMFIT_OK;
    *none = false;
    if (!v || json_is_null(v))
        return MEMFIT_OK;
    if (json_is_string(v)) {
        const char *c = json_string_value(v);
        if (strcmp(c, "none") == 0)
            *none = true;
        else if (strcmp(c, "required") == 0)
            r->tool_choice = MF_TOOL_CHOICE_REQUIRED;
        else if (strcmp(c, "auto") != 0)
            BAD("invalid_value",
                "'tool_choice' is '%.32s'; expected none, auto, required or "
                "{\"type\": \"function\", \"function\": {\"name\": ...}}",
                c);
        if (!*none && !r->n_tools && r->tool_choice == MF_TOOL_CHOICE_REQUIRED)
            UNSUPPORTED("'tool_choice' needs 'tools'");
        return MEMFIT_OK;
    }
    json_t *type = json_object_get(v, "type");
    json_t *name = json_object_get(json_object_get(v, "function"), "name");
    if (!json_is_object(v) || !json_is_string(type) ||
        strcmp(json_string_value(type), "function") != 0 || !json_is_string(name))
        BAD("invalid_type", "'tool_choice' must be none, auto, required or {\"type\": "
                            "\"function\", \"function\": {\"name\": ...}}");
    if (!r->n_tools)
        UNSUPPORTED("'tool_choice' needs 'tools'");
    for (size_t i = 0; i < r->n_tools; i++)
        if (strcmp(r->tools[i].name, json_string_value(name)) == 0) {
            r->tool_choice = MF_TOOL_CHOICE_NAMED;
            r->tool_choice_index = i;
            return MEMFIT_OK;
        }
    BAD("invalid_value", "'tool_choice' names function '%.64s', which is not in 'tools'",
        json_string_value(name));
done:
    return st;
}

/* The chat body's tools, tool_choice and parallel_tool_calls. */
static enum memfit_status gen_tools(const json_t *root, struct mf_gen_request *r,
                                    struct mf_http_error *err)
{
    enum memfit_status st = MEMFIT_OK;
    json_t *tools = json_object_get(root, "tools");
    json_t *v = json_object_get(root, "parallel_tool_calls");
    if (v && !json_is_null(v) && !json_is_boolean(v))
        BAD("invalid_type", "'parallel_tool_calls' must be a boolean, not %s", json_type_name(v));
    r->parallel_tool_calls = !json_is_false(v);
    if (tools && !json_is_null(tools) && !json_is_array(tools))
        BAD("invalid_type", "'tools' must be an array, not %s", json_type_name(tools));
    size_t n = tools && json_is_array(tools) ? json_array_size(tools) : 0;
    if (n > MF_GEN_MAX_TOOLS)
        BAD("invalid_value", "'tools' has %zu functions; at most %d", n, MF_GEN_MAX_TOOLS);
    if (n) {
        if (!(r->tools = memfit_calloc_in(MEMFIT_ALLOC_SERVER, n, sizeof(*r->tools))))
            return MEMFIT_E_NOMEM;
        for (size_t i = 0; i < n; i++) {
            r->n_tools = i + 1;
            if ((st = gen_tool(json_array_get(tools, i), i, r, err)) != MEMFIT_OK)
                goto done;
        }
    }
    bool none;
    if ((st = gen_tool_choice(json_object_get(root, "tool_choice"), r, &none, err)) != MEMFIT_OK)
        goto done;
    if (none) { /* the model is not told of the tools: a plain answer */
        for (size_t i = 0; i < r->n_tools; i++) {
            memfit_free(r->tools[i].name);
            memfit_free(r->tools[i].parameters);
        }
        memfit_free(r->tools);
        r->tools = NULL;
        r->n_tools = 0;
    }
    if (r->n_tools && !(r->tools_json = json_dumps(tools, JSON_COMPACT)))
        st = MEMFIT_E_NOMEM;
done:
    return st;
}

/*
 * The fields of OpenAI's API beyond the sampling ones: n, the penalties,
 * logit_bias, logprobs, echo, keep_alive, tools; and those this server does
 * not honour, taken only at their neutral values.
 */
static enum memfit_status gen_openai_fields(const json_t *root, bool chat, struct mf_gen_request *r,
                                            struct mf_http_error *err)
{
    enum memfit_status st = MEMFIT_OK;
    bool has = false;
    uint64_t u = 1;
    if ((st = integer_field(root, "n", MF_GEN_MAX_CHOICES, &has, &u, err)) != MEMFIT_OK)
        goto done;
    if (u == 0)
        BAD("invalid_value", "'n' is 0; it must be 1 to %d", MF_GEN_MAX_CHOICES);
    r->n = (uint32_t)u;
    if ((st = number_field(root, "presence_penalty", -2, 2, &has, &r->presence_penalty, err)) !=
            MEMFIT_OK ||
        (st = number_field(root, "frequency_penalty", -2, 2, &has, &r->frequency_penalty, err)) !=
            MEMFIT_OK ||
        (st = gen_logit_bias(json_object_get(root, "logit_bias"), r, err)) != MEMFIT_OK ||
        (st = gen_logprobs(root, chat, r, err)) != MEMFIT_OK ||
        (st = gen_keep_alive(json_object_get(root, "keep_alive"), r, err)) != MEMFIT_OK)
        goto done;

    if ((st = neutral_fields(root, chat, err)) != MEMFIT_OK)
        goto done;
    json_t *v;
    if (!chat) {
        if ((v = json_object_get(root, "echo")) && !json_is_null(v) && !json_is_boolean(v))
            BAD("invalid_type", "'echo' must be a boolean, not %s", json_type_name(v));
        r->echo = json_is_true(v);
        json_t *best = json_object_get(root, "best_of");
        if (best && !json_is_null(best) &&
            !(json_is_integer(best) && (uint64_t)json_integer_value(best) == r->n))
            UNSUPPORTED("'best_of' is not supported (only best_of equal to n)");
        goto done;
    }
    if ((st = gen_tools(root, r, err)) != MEMFIT_OK)
        goto done;
    /* json_object and json_schema: grammar-constrained sampling (docs/llm.md). */
    v = json_object_get(root, "response_format");
    if (v && !json_is_null(v) && (st = response_format(v, r, err)) != MEMFIT_OK)
        goto done;
    if (r->grammar && r->n_tools)
        UNSUPPORTED("'response_format' with 'tools' is not supported (one grammar per answer): "
                    "leave one out, or set 'tool_choice' to \"none\"");
done:
    return st;
}

/* messages[i]'s tool_calls (assistant) and tool_call_id (tool), and no other member. */
static enum memfit_status message_tools(const json_t *m, size_t i, const char *role,
                                        struct mf_gen_request *r, struct mf_http_error *err)
{
    enum memfit_status st = MEMFIT_OK;
    static const char *const keys[] = {"role",       "content",      "name",
                                       "tool_calls", "tool_call_id", "refusal"};
    char where[40];
    snprintf(where, sizeof(where), "'messages[%zu]'", i);
    if ((st = known_members(m, where, keys, N_OF(keys),
                            "role, content, name, tool_calls, tool_call_id", err)) != MEMFIT_OK)
        goto done;
    json_t *name = json_object_get(m, "name"), *refusal = json_object_get(m, "refusal");
    if (name && !json_is_null(name))
        UNSUPPORTED("'messages[%zu].name' is not supported (the templates have no participant "
                    "names)",
                    i);
    if (refusal && !json_is_null(refusal))
        UNSUPPORTED("'messages[%zu].refusal' is not supported", i);
    json_t *id = json_object_get(m, "tool_call_id");
    if (strcmp(role, "tool") == 0) {
        if (!json_is_string(id))
            BAD(id ? "invalid_type" : "missing_field",
                "'messages[%zu].tool_call_id' must be a string (the call a tool message answers)",
                i);
        if (!(r->tool_call_ids[i] = json_strdup(id, NULL)))
            return MEMFIT_E_NOMEM;
    } else if (id && !json_is_null(id)) {
        BAD("invalid_value", "'messages[%zu].tool_call_id' belongs to tool messages only", i);
    }
    json_t *calls = json_object_get(m, "tool_calls");
    if (!calls || json_is_null(calls))
        return MEMFIT_OK;
    if (strcmp(role, "assistant") != 0)
        BAD("invalid_value", "'messages[%zu].tool_calls' belongs to assistant messages only", i);
    if (!json_is_array(calls))
        BAD("invalid_type", "'messages[%zu].tool_calls' must be an array", i);
    size_t n = json_array_size(calls);
    if (n > MF_GEN_MAX_TOOLS)
        BAD("invalid_value", "'messages[%zu].tool_calls' has %zu calls; at most %d", i, n,
            MF_GEN_MAX_TOOLS);
    if (n &&
        !(r->tool_calls[i] = memfit_calloc_in(MEMFIT_ALLOC_SERVER, n, sizeof(**r->tool_calls))))
        return MEMFIT_E_NOMEM;
    for (size_t k = 0; k < n; k++) {
        json_t *c = json_array_get(calls, k);
        json_t *cid = json_object_get(c, "id"), *type = json_object_get(c, "type");
        json_t *fn = json_object_get(c, "function");
        json_t *fname = json_object_get(fn, "name"), *args = json_object_get(fn, "arguments");
        if (!json_is_object(c) || !json_is_string(cid) || !json_is_string(type) ||
            strcmp(json_string_value(type), "function") != 0 || !function_name_ok(fname) ||
            !json_is_string(args))
            BAD("invalid_value",
                "'messages[%zu].tool_calls[%zu]' must be {\"id\": string, \"type\": \"function\", "
                "\"function\": {\"name\": string, \"arguments\": JSON text}}",
                i, k);
        json_t *parsed = json_loadb(json_string_value(args), json_string_length(args), 0, NULL);
        bool object = json_is_object(parsed);
        json_decref(parsed);
        if (!object)
            BAD("invalid_value",
                "'messages[%zu].tool_calls[%zu].function.arguments' must be the JSON text of an "
                "object",
                i, k);
        struct memfit_chat_tool_call *t = &r->tool_calls[i][k];
        r->n_tool_calls[i] = k + 1;
        if (!(t->id = json_strdup(cid, NULL)) || !(t->name = json_strdup(fname, NULL)) ||
            !(t->arguments = json_strdup(args, NULL)))
            return MEMFIT_E_NOMEM;
    }
done:
    return st;
}

enum memfit_status mf_gen_request_parse(const char *body, size_t len, bool chat,
                                        struct mf_gen_request *out, struct mf_http_error *err)
{
    struct mf_gen_request r = {0};
    r.chat = chat;
    json_t *root;
    enum memfit_status st = load_object(body, len, 0, &root, err);
    if (st != MEMFIT_OK)
        return st;
    json_t *model = json_object_get(root, "model");
    if ((st = known_members(root, "the request", chat ? chat_fields : completion_fields,
                            chat ? N_OF(chat_fields) : N_OF(completion_fields),
                            chat ? CHAT_FIELDS_TEXT : COMPLETION_FIELDS_TEXT, err)) != MEMFIT_OK ||
        (st = model_field(root, err)) != MEMFIT_OK)
        goto done;
    if (!(r.model = json_strdup(model, NULL))) {
        st = MEMFIT_E_NOMEM;
        goto done;
    }

    if (chat) {
        json_t *msgs = json_object_get(root, "messages");
        if (!msgs)
            BAD("missing_field", "missing field 'messages'");
        if (!json_is_array(msgs))
            BAD("invalid_type", "'messages' must be an array, not %s", json_type_name(msgs));
        size_t n = json_array_size(msgs);
        if (n == 0)
            BAD("invalid_value", "'messages' is an empty array");
        if (n > MF_GEN_MAX_MESSAGES)
            BAD("invalid_value", "'messages' has %zu items; at most %d", n, MF_GEN_MAX_MESSAGES);
        r.roles = memfit_calloc_in(MEMFIT_ALLOC_SERVER, n, sizeof(*r.roles));
        r.contents = memfit_calloc_in(MEMFIT_ALLOC_SERVER, n, sizeof(*r.contents));
        r.tool_calls = memfit_calloc_in(MEMFIT_ALLOC_SERVER, n, sizeof(*r.tool_calls));
        r.n_tool_calls = memfit_calloc_in(MEMFIT_ALLOC_SERVER, n, sizeof(*r.n_tool_calls));
        r.tool_call_ids = memfit_calloc_in(MEMFIT_ALLOC_SERVER, n, sizeof(*r.tool_call_ids));
        if (!r.roles || !r.contents || !r.tool_calls || !r.n_tool_calls || !r.tool_call_ids) {
            st = MEMFIT_E_NOMEM;
            goto done;
        }
        r.n_messages = n;
        size_t i;
        json_t *m;
        json_array_foreach(msgs, i, m)
        {
            if (!json_is_object(m))
                BAD("invalid_type", "'messages[%zu]' must be an object, not %s", i,
                    json_type_name(m));
            json_t *role = json_object_get(m, "role");
            if (!json_is_string(role))
                BAD(role ? "invalid_type" : "missing_field",
                    "'messages[%zu].role' must be a string", i);
            const char *rv = json_string_value(role);
            if (strcmp(rv, "system") != 0 && strcmp(rv, "user") != 0 &&
                strcmp(rv, "assistant") != 0 && strcmp(rv, "developer") != 0 &&
                strcmp(rv, "tool") != 0)
                BAD("invalid_value",
                    "'messages[%zu].role' is '%.32s'; expected system, developer, user, "
                    "assistant or tool",
                    i, rv);
            /* "developer" is the newer name of "system" in OpenAI's API. */
            r.roles[i] = memfit_strdup(strcmp(rv, "developer") == 0 ? "system" : rv);
            if (!r.roles[i]) {
                st = MEMFIT_E_NOMEM;
                goto done;
            }
            if ((st = message_tools(m, i, rv, &r, err)) != MEMFIT_OK)
                goto done;
            json_t *content = json_object_get(m, "content");
            if (!content && !r.n_tool_calls[i])
                BAD("missing_field", "missing field 'messages[%zu].content'", i);
            if ((st = message_content(content ? content : json_null(), i, &r.contents[i], err)) !=
                MEMFIT_OK)
                goto done;
        }
    } else {
        json_t *prompt = json_object_get(root, "prompt");
        if (!prompt)
            BAD("missing_field", "missing field 'prompt'");
        if (json_is_array(prompt)) {
            if (json_array_size(prompt) != 1 || !json_is_string(json_array_get(prompt, 0)))
                BAD("invalid_value", "'prompt' must be a string or an array of one string "
                                     "(one prompt per request)");
            prompt = json_array_get(prompt, 0);
        }
        if (!json_is_string(prompt))
            BAD("invalid_type", "'prompt' must be a string, not %s", json_type_name(prompt));
        if (!(r.prompt = json_strdup(prompt, &r.prompt_len))) {
            st = MEMFIT_E_NOMEM;
            goto done;
        }
    }

    if ((st = gen_sampling(root, &r, err)) != MEMFIT_OK ||
        (st = gen_openai_fields(root, chat, &r, err)) != MEMFIT_OK)
        goto done;
    json_t *stream = json_object_get(root, "stream");
    if (stream && !json_is_null(stream)) {
        if (!json_is_boolean(stream))
            BAD("invalid_type", "'stream' must be a boolean, not %s", json_type_name(stream));
        r.stream = json_is_true(stream);
    }
    json_t *so = json_object_get(root, "stream_options");
    if (so && !json_is_null(so)) {
        json_t *iu = json_object_get(so, "include_usage");
        if (!json_is_object(so) || (iu && !json_is_boolean(iu)))
            BAD("invalid_type", "'stream_options' must be {\"include_usage\": bool}");
        r.include_usage = json_is_true(iu);
    }
    json_t *user = json_object_get(root, "user");
    if (user && !json_is_string(user) && !json_is_null(user))
        BAD("invalid_type", "'user' must be a string, not %s", json_type_name(user));
done:
    json_decref(root);
    if (st != MEMFIT_OK) {
        mf_gen_request_free(&r);
        return st;
    }
    *out = r;
    return MEMFIT_OK;
}

/* ---- The segmentation request ------------------------------------------------------- */

/* The automatic mask generator's parameters, by the reference's names. */
static const char *const amg_fields[] = {"points_per_side",        "points_per_batch",
                                         "pred_iou_thresh",        "stability_score_thresh",
                                         "stability_score_offset", "box_nms_thresh",
                                         "crop_n_layers",          "crop_nms_thresh",
                                         "crop_overlap_ratio",     "crop_n_points_downscale_factor",
                                         "min_mask_region_area"};
static const char *const prompt_fields[] = {"points",     "labels",           "box",
                                            "mask_input", "multimask_output", "return_low_res"};
static const char *const segment_fields[] = {"model", "image", "auto", "output_mode"};

static bool name_in(const char *key, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(key, names[i]) == 0)
            return true;
    return false;
}

/* The first of `names` present (and not null) in root, or NULL. */
static const char *first_present(const json_t *root, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_object_get(root, names[i]);
        if (v && !json_is_null(v))
            return names[i];
    }
    return NULL;
}

void mf_segment_request_free(struct mf_segment_request *r)
{
    if (!r)
        return;
    memfit_free(r->model);
    memfit_free(r->image);
    memfit_free(r->points);
    memfit_free(r->labels);
    memfit_free(r->mask_input);
    memset(r, 0, sizeof(*r));
}

/* Decodes base64 text of field `key`: E_FORMAT with *err (invalid_base64), E_NOMEM. */
static enum memfit_status base64_field(const char *key, const char *text, size_t len, uint8_t **out,
                                       size_t *out_len, struct mf_http_error *err)
{
    enum memfit_status st = mf_base64_decode(text, len, out, out_len);
    if (st == MEMFIT_E_FORMAT) {
        mf_http_error_set(err, 400, "invalid_request_error", "invalid_base64", "'%s': %s", key,
                          memfit_last_error());
        return memfit_fail(MEMFIT_E_FORMAT, "%s", err->message);
    }
    return st;
}

/* "image": a data URL of an image type, or bare base64. */
static enum memfit_status segment_image(const json_t *v, struct mf_segment_request *r,
                                        struct mf_http_error *err)
{
    enum memfit_status st = MEMFIT_OK;
    if (!v)
        BAD("missing_field", "missing field 'image'");
    if (!json_is_string(v))
        BAD("invalid_type", "'image' must be a string (a data URL or base64), not %s",
            json_type_name(v));
    const char *text = json_string_value(v);
    size_t len = json_string_length(v);
    if (len >= 5 && strncasecmp(text, "data:", 5) == 0 &&
        mf_data_url_split(text, len, &text, &len) != MEMFIT_OK)
        BAD("invalid_image_url", "'image': %s", memfit_last_error());
    if (len == 0)
        BAD("invalid_value", "'image' is empty");
    st = base64_field("image", text, len, &r->image, &r->image_bytes, err);
done:
    return st;
}

/* A JSON number as a finite float, or E_FORMAT naming `what`. */
static enum memfit_status float_value(const json_t *v, const char *what, float *out,
                                      struct mf_http_error *err)
{
    enum memfit_status st = MEMFIT_OK;
    if (!json_is_number(v))
        BAD("invalid_type", "'%s' must be a number, not %s", what, json_type_name(v));
    float x = (float)json_number_value(v);
    if (!isfinite(x))
        BAD("invalid_value", "'%s' is %g: beyond float range", what, json_number_value(v));
    *out = x;
done:
    return st;
}

/* "points": [[x, y], ...] and "labels": [1|0, ...] (default all 1). */
static enum memfit_status segment_points(const json_t *root, struct mf_segment_request *r,
                                         struct mf_http_error *err)
{
    enum memfit_status st = MEMFIT_OK;
    json_t *points = json_object_get(root, "points");
    json_t *labels = json_object_get(root, "labels");
    if (points && json_is_null(points))
        points = NULL;
    if (labels && json_is_null(labels))
        labels = NULL;
    if (points && !json_is_array(points))
        BAD("invalid_type", "'points' must be an array of [x, y] pairs, not %s",
            json_type_name(points));
    if (labels && !json_is_array(labels))
        BAD("invalid_type", "'labels' must be an array of 1 (foreground) or 0 (background), not %s",
            json_type_name(labels));
    size_t n = points ? json_array_size(points) : 0;
    if (labels && json_array_size(labels) != n)
        BAD("invalid_value", "'labels' has %zu items and 'points' %zu; they must match",
            json_array_size(labels), n);
    if (n > MF_SEGMENT_MAX_POINTS)
        BAD("invalid_value", "'points' has %zu items; at most %d", n, MF_SEGMENT_MAX_POINTS);
    if (n == 0)
        return MEMFIT_OK;
    r->points = memfit_calloc_in(MEMFIT_ALLOC_SERVER, 2 * n, sizeof(*r->points));
    r->labels = memfit_calloc_in(MEMFIT_ALLOC_SERVER, n, sizeof(*r->labels));
    if (!r->points || !r->labels)
        return MEMFIT_E_NOMEM;
    for (size_t i = 0; i < n; i++) {
        json_t *p = json_array_get(points, i);
        if (!json_is_array(p) || json_array_size(p) != 2)
            BAD(json_is_array(p) ? "invalid_value" : "invalid_type",
                "'points[%zu]' must be [x, y] (two numbers)", i);
        char what[40];
        for (size_t k = 0; k < 2; k++) {
            snprintf(what, sizeof(what), "points[%zu][%zu]", i, k);
            if ((st = float_value(json_array_get(p, k), what, &r->points[2 * i + k], err)) !=
                MEMFIT_OK)
                return st;
        }
        r->labels[i] = 1;
        json_t *l = labels ? json_array_get(labels, i) : NULL;
        if (l && !json_is_integer(l))
            BAD("invalid_type", "'labels[%zu]' must be 1 or 0, not %s", i, json_type_name(l));
        if (l && json_integer_value(l) != 0 && json_integer_value(l) != 1)
            BAD("invalid_value", "'labels[%zu]' is %lld; 1 (foreground) or 0 (background)", i,
                (long long)json_integer_value(l));
        if (l)
            r->labels[i] = (int32_t)json_integer_value(l);
    }
    r->n_points = n;
done:
    return st;
}

/* "box": [x0, y0, x1, y1] with x0 <= x1, y0 <= y1. */
static enum memfit_status segment_box(const json_t *v, struct mf_segment_request *r,
                                      struct mf_http_error *err)
{
    enum memfit_status st = MEMFIT_OK;
    if (!json_is_array(v) || json_array_size(v) != 4)
        BAD(json_is_array(v) ? "invalid_value" : "invalid_type",
            "'box' must be [x0, y0, x1, y1] (four numbers)");
    static const char *const what[] = {"box[0]", "box[1]", "box[2]", "box[3]"};
    for (size_t k = 0; k < 4; k++)
        if ((st = float_value(json_array_get(v, k), what[k], &r->box[k], err)) != MEMFIT_OK)
            return st;
    if (r->box[2] < r->box[0] || r->box[3] < r->box[1])
        BAD("invalid_value", "'box' [%g, %g, %g, %g]: x1 < x0 or y1 < y0 (expected x0, y0, x1, y1)",
            r->box[0], r->box[1], r->box[2], r->box[3]);
    r->has_box = true;
done:
    return st;
}

/* "mask_input": base64 of little-endian float32 (its size is checked against the model's). */
static enum memfit_status segment_mask_input(const json_t *v, struct mf_segment_request *r,
                                             struct mf_http_error *err)
{
    enum memfit_status st = MEMFIT_OK;
    if (!json_is_string(v))
        BAD("invalid_type", "'mask_input' must be a base64 string, not %s", json_type_name(v));
    uint8_t *bytes;
    size_t n;
    if ((st = base64_field("mask_input", json_string_value(v), json_string_length(v), &bytes, &n,
                           err)) != MEMFIT_OK)
        return st;
    if (n == 0 || n % 4 != 0) {
        memfit_free(bytes);
        BAD("invalid_value", "'mask_input' is %zu bytes: not a whole, non-zero number of float32",
            n);
    }
    /* In place: each value read whole before its own bytes are written. */
    float *f = (float *)(void *)bytes;
    for (size_t i = 0; i < n / 4; i++) {
        uint32_t u = (uint32_t)bytes[4 * i] | (uint32_t)bytes[4 * i + 1] << 8 |
                     (uint32_t)bytes[4 * i + 2] << 16 | (uint32_t)bytes[4 * i + 3] << 24;
        memcpy(&f[i], &u, sizeof(u));
    }
    r->mask_input = f;
    r->n_mask_input = n / 4;
done:
    return st;
}

static enum memfit_status segment_bool(const json_t *root, const char *key, bool *out,
                                       struct mf_http_error *err)
{
    enum memfit_status st = MEMFIT_OK;
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v))
        return MEMFIT_OK;
    if (!json_is_boolean(v))
        BAD("invalid_type", "'%s' must be a boolean, not %s", key, json_type_name(v));
    *out = json_is_true(v);
done:
    return st;
}

/* The generator's parameters: the reference's defaults where not given. */
static enum memfit_status segment_amg(const json_t *root, struct mf_segment_request *r,
                                      struct mf_http_error *err)
{
    enum memfit_status st = MEMFIT_OK;
    struct memfit_sam_amg_params *a = &r->amg;
    bool has = false;
    uint64_t u = 0;
    if ((st = integer_field(root, "points_per_side", 1024, &has, &u, err)) != MEMFIT_OK)
        return st;
    if (has && u == 0)
        BAD("invalid_value", "'points_per_side' is 0; it must be 1 to 1024");
    if (has)
        a->points_per_side = (uint32_t)u;
    json_t *ppb = json_object_get(root, "points_per_batch");
    if (json_is_string(ppb)) {
        if (strcmp(json_string_value(ppb), "auto") != 0)
            BAD("invalid_value", "'points_per_batch' must be an integer or \"auto\", not \"%.32s\"",
                json_string_value(ppb));
        r->batch_auto = r->has_points_per_batch = true;
    } else if (ppb && !json_is_null(ppb) && !json_is_integer(ppb)) {
        BAD("invalid_type", "'points_per_batch' must be an integer or \"auto\", not %s",
            json_type_name(ppb));
    } else {
        has = false;
        if ((st = integer_field(root, "points_per_batch", 65536, &has, &u, err)) != MEMFIT_OK)
            return st;
        if (has && u == 0)
            BAD("invalid_value", "'points_per_batch' is 0; it must be 1 to 65536 or \"auto\"");
        if (has) {
            a->points_per_batch = (uint32_t)u;
            r->has_points_per_batch = true;
        }
    }
    static const struct {
        const char *key;
        double lo, hi;
        size_t offset;
    } reals[] = {
        {"pred_iou_thresh", -1e9, 1e9, offsetof(struct memfit_sam_amg_params, pred_iou_thresh)},
        {"stability_score_thresh", -1e9, 1e9,
         offsetof(struct memfit_sam_amg_params, stability_score_thresh)},
        {"stability_score_offset", 0, 1e9,
         offsetof(struct memfit_sam_amg_params, stability_score_offset)},
        {"box_nms_thresh", 0, 1, offsetof(struct memfit_sam_amg_params, box_nms_thresh)},
        {"crop_nms_thresh", 0, 1, offsetof(struct memfit_sam_amg_params, crop_nms_thresh)},
        {"crop_overlap_ratio", 0, 1, offsetof(struct memfit_sam_amg_params, crop_overlap_ratio)},
    };
    for (size_t i = 0; i < N_OF(reals); i++) {
        has = false;
        double x = 0;
        if ((st = number_field(root, reals[i].key, reals[i].lo, reals[i].hi, &has, &x, err)) !=
            MEMFIT_OK)
            return st;
        if (has)
            memcpy((char *)a + reals[i].offset, &x, sizeof(x));
    }
    has = false;
    if ((st = integer_field(root, "crop_n_layers", 8, &has, &u, err)) != MEMFIT_OK)
        return st;
    if (has)
        a->crop_n_layers = (uint32_t)u;
    has = false;
    if ((st = integer_field(root, "crop_n_points_downscale_factor", 1024, &has, &u, err)) !=
        MEMFIT_OK)
        return st;
    if (has && u == 0)
        BAD("invalid_value", "'crop_n_points_downscale_factor' is 0; it must be 1 to 1024");
    if (has)
        a->crop_n_points_downscale_factor = (uint32_t)u;
    has = false;
    if ((st = integer_field(root, "min_mask_region_area", UINT64_C(1) << 40, &has, &u, err)) !=
        MEMFIT_OK)
        return st;
    if (has)
        a->min_mask_region_area = u;
    /* What the fields cannot show alone (a downscale factor that empties a layer's grid). */
    if (memfit_sam_amg_params_check(a) != MEMFIT_OK)
        BAD("invalid_value", "%s", memfit_last_error());
done:
    return st;
}

enum memfit_status mf_segment_request_parse(const char *body, size_t len,
                                            struct mf_segment_request *out,
                                            struct mf_http_error *err)
{
    struct mf_segment_request r = {0};
    r.amg = memfit_sam_amg_params_default();
    json_t *root;
    enum memfit_status st = load_object(body, len, 0, &root, err);
    if (st != MEMFIT_OK)
        return st;
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        if (!name_in(key, segment_fields, N_OF(segment_fields)) &&
            !name_in(key, prompt_fields, N_OF(prompt_fields)) &&
            !name_in(key, amg_fields, N_OF(amg_fields)))
            BAD("invalid_value",
                "unknown field '%.64s' (expected model, image, points, labels, box, "
                "multimask_output, mask_input, return_low_res, auto, output_mode and the automatic "
                "mask generator's parameters)",
                key);
    }
    json_t *model = json_object_get(root, "model");
    if ((st = model_field(root, err)) != MEMFIT_OK)
        goto done;
    if ((st = segment_bool(root, "auto", &r.automatic, err)) != MEMFIT_OK)
        goto done;
    const char *prompt = first_present(root, prompt_fields, N_OF(prompt_fields));
    const char *amg = first_present(root, amg_fields, N_OF(amg_fields));
    if (r.automatic && prompt)
        BAD("invalid_value", "'%s' is a prompt field; prompts and \"auto\": true are exclusive",
            prompt);
    if (!r.automatic && amg)
        BAD("invalid_value", "'%s' applies to automatic masks only (\"auto\": true)", amg);
    if ((st = segment_image(json_object_get(root, "image"), &r, err)) != MEMFIT_OK)
        goto done;
    json_t *mode = json_object_get(root, "output_mode");
    if (mode && !json_is_null(mode)) {
        static const char *const modes[] = {"uncompressed_rle", "coco_rle", "png"};
        if (!json_is_string(mode))
            BAD("invalid_type", "'output_mode' must be a string, not %s", json_type_name(mode));
        size_t i = 0;
        while (i < N_OF(modes) && strcmp(json_string_value(mode), modes[i]) != 0)
            i++;
        if (i == N_OF(modes))
            BAD("invalid_value",
                "'output_mode' is \"%.32s\"; expected uncompressed_rle, coco_rle or png",
                json_string_value(mode));
        r.output = (enum mf_segment_output)i;
    }
    if (r.automatic) {
        if ((st = segment_amg(root, &r, err)) != MEMFIT_OK)
            goto done;
    } else {
        if ((st = segment_points(root, &r, err)) != MEMFIT_OK)
            goto done;
        json_t *box = json_object_get(root, "box");
        if (box && !json_is_null(box) && (st = segment_box(box, &r, err)) != MEMFIT_OK)
            goto done;
        if (r.n_points == 0 && !r.has_box)
            BAD("missing_field", "a prompt needs 'points' or 'box' (or \"auto\": true for "
                                 "automatic masks)");
        json_t *mask = json_object_get(root, "mask_input");
        if (mask && !json_is_null(mask) && (st = segment_mask_input(mask, &r, err)) != MEMFIT_OK)
            goto done;
        /* The reference's advice: three masks for an ambiguous single point. */
        r.multimask = r.n_points == 1 && !r.has_box;
        if ((st = segment_bool(root, "multimask_output", &r.multimask, err)) != MEMFIT_OK ||
            (st = segment_bool(root, "return_low_res", &r.return_low_res, err)) != MEMFIT_OK)
            goto done;
    }
    if (!(r.model = json_strdup(model, NULL)))
        st = MEMFIT_E_NOMEM;
done:
    json_decref(root);
    if (st != MEMFIT_OK) {
        mf_segment_request_free(&r);
        return st;
    }
    *out = r;
    return MEMFIT_OK;
}

/* ---- The segmentation answer ---------------------------------------------------------- */

/* A float as JSON: non-finite ones (a model's NaN) as null. */
static void json_float(struct mf_text *t, double x)
{
    if (isfinite(x))
        mf_text_printf(t, "%.9g", x);
    else
        mf_text_puts(t, "null");
}

/*
 * One mask's "segmentation" from its RLE: the RLE as counts, the COCO
 * string, or a PNG data URL (then `mask` holds the 0/1 pixels, or NULL to
 * decode the RLE into `gray`, w x h bytes of scratch).
 */
static enum memfit_status segmentation_json(struct mf_text *t, enum mf_segment_output mode,
                                            const uint32_t *counts, size_t n, uint32_t h,
                                            uint32_t w, const uint8_t *mask, uint8_t *gray)
{
    enum memfit_status st = MEMFIT_OK;
    if (mode == MF_SEGMENT_OUTPUT_PNG) {
        size_t px = (size_t)w * h;
        if (!mask && (st = memfit_sam_rle_to_mask(counts, n, h, w, gray)) != MEMFIT_OK)
            return st;
        for (size_t i = 0; i < px; i++)
            gray[i] = (mask ? mask[i] : gray[i]) ? 255 : 0;
        uint8_t *png;
        size_t png_len;
        if ((st = memfit_image_encode_png(gray, w, h, 1, &png, &png_len)) != MEMFIT_OK)
            return st;
        mf_text_puts(t, "\"data:image/png;base64,");
        mf_text_base64(t, png, png_len);
        mf_text_puts(t, "\"");
        memfit_free(png);
        return MEMFIT_OK;
    }
    mf_text_printf(t, "{\"size\":[%" PRIu32 ",%" PRIu32 "],\"counts\":", h, w);
    if (mode == MF_SEGMENT_OUTPUT_COCO) {
        char *coco;
        if ((st = memfit_sam_rle_to_coco(counts, n, &coco)) != MEMFIT_OK)
            return st;
        mf_text_json_string(t, coco, strlen(coco));
        memfit_free(coco);
    } else {
        mf_text_puts(t, "[");
        for (size_t i = 0; i < n; i++)
            mf_text_printf(t, i ? ",%" PRIu32 : "%" PRIu32, counts[i]);
        mf_text_puts(t, "]");
    }
    mf_text_puts(t, "}");
    return MEMFIT_OK;
}

static enum memfit_status prompt_masks_json(struct mf_text *t, const struct mf_segment_request *req,
                                            const struct memfit_segment_result *res, uint8_t *gray)
{
    size_t px = (size_t)res->width * res->height;
    enum memfit_status st = MEMFIT_OK;
    for (uint32_t k = 0; k < res->n_masks && st == MEMFIT_OK; k++) {
        const uint8_t *mask = res->masks + k * px;
        uint32_t *counts = NULL;
        size_t n = 0;
        int32_t box[4];
        if ((st = memfit_sam_mask_to_rle(mask, res->height, res->width, &counts, &n)) !=
                MEMFIT_OK ||
            (st = memfit_sam_mask_to_box(mask, res->height, res->width, box)) != MEMFIT_OK)
            break;
        mf_text_puts(t, k ? ",{\"segmentation\":" : "{\"segmentation\":");
        st = segmentation_json(t, req->output, counts, n, res->height, res->width, mask, gray);
        mf_text_printf(t,
                       ",\"area\":%" PRIu64 ",\"bbox\":[%" PRId32 ",%" PRId32 ",%" PRId32
                       ",%" PRId32 "],\"predicted_iou\":",
                       memfit_sam_rle_area(counts, n), box[0], box[1], box[2] - box[0],
                       box[3] - box[1]);
        json_float(t, res->iou[k]);
        mf_text_puts(t, "}");
        memfit_free(counts);
    }
    return st;
}

static enum memfit_status records_json(struct mf_text *t, const struct mf_segment_request *req,
                                       const struct memfit_segment_result *res, uint8_t *gray)
{
    const struct memfit_sam_masks *rec = &res->records;
    enum memfit_status st = MEMFIT_OK;
    for (size_t i = 0; i < rec->n_masks && st == MEMFIT_OK; i++) {
        const struct memfit_sam_mask *m = &rec->masks[i];
        mf_text_puts(t, i ? ",{\"segmentation\":" : "{\"segmentation\":");
        st = segmentation_json(t, req->output, m->counts, m->n_counts, m->height, m->width, NULL,
                               gray);
        mf_text_printf(t,
                       ",\"area\":%" PRIu64 ",\"bbox\":[%" PRId32 ",%" PRId32 ",%" PRId32
                       ",%" PRId32 "],\"predicted_iou\":",
                       m->area, m->bbox[0], m->bbox[1], m->bbox[2], m->bbox[3]);
        json_float(t, m->predicted_iou);
        mf_text_puts(t, ",\"point_coords\":[[");
        json_float(t, m->point_coords[0]);
        mf_text_puts(t, ",");
        json_float(t, m->point_coords[1]);
        mf_text_puts(t, "]],\"stability_score\":");
        json_float(t, m->stability_score);
        mf_text_printf(t, ",\"crop_box\":[%" PRId32 ",%" PRId32 ",%" PRId32 ",%" PRId32 "]}",
                       m->crop_box[0], m->crop_box[1], m->crop_box[2], m->crop_box[3]);
    }
    return st;
}

enum memfit_status mf_segment_response_json(struct mf_text *t, const struct mf_segment_request *req,
                                            const struct memfit_segment_result *res)
{
    uint8_t *gray = NULL;
    size_t px = (size_t)res->width * res->height;
    if (req->output == MF_SEGMENT_OUTPUT_PNG && px &&
        !(gray = memfit_malloc_in(MEMFIT_ALLOC_SERVER, px)))
        return MEMFIT_E_NOMEM;
    mf_text_puts(t, "{\"model\":");
    mf_text_json_string(t, req->model, strlen(req->model));
    mf_text_printf(t, ",\"width\":%" PRIu32 ",\"height\":%" PRIu32 ",\"masks\":[", res->width,
                   res->height);
    enum memfit_status st =
        req->automatic ? records_json(t, req, res, gray) : prompt_masks_json(t, req, res, gray);
    memfit_free(gray);
    if (st != MEMFIT_OK)
        return st;
    mf_text_printf(t, "],\"embedding_cached\":%s", res->embedding_cached ? "true" : "false");
    if (req->automatic)
        mf_text_printf(t, ",\"points_per_batch\":%" PRIu32, res->points_per_batch);
    if (req->return_low_res && res->low_res) {
        mf_text_printf(t, ",\"mask_size\":%" PRIu32 ",\"low_res_masks\":\"", res->mask_size);
        /* little-endian float32, as the embeddings' base64 */
        mf_text_base64(t, res->low_res,
                       (size_t)res->n_masks * res->mask_size * res->mask_size * sizeof(float));
        mf_text_puts(t, "\"");
    }
    mf_text_printf(t, ",\"timing\":{\"encode_s\":%.6f,\"decode_s\":%.6f}}", res->encode_seconds,
                   res->decode_seconds);
    return t->failed ? MEMFIT_E_NOMEM : MEMFIT_OK;
}

/* ---- The Open Inference Protocol (KServe v2) -------------------------------------------- */

enum memfit_status mf_v2_error_json(const struct mf_http_error *e, char **out, size_t *out_len)
{
    struct mf_text t = {0};
    /* The shape has no code: an allocation failure says so in the message
     * (a library's "no memory for 61x37 pixels" would not, alone). */
    bool oom =
        e->code && strcmp(e->code, "out_of_memory") == 0 && !strstr(e->message, "out of memory");
    char message[sizeof(e->message) + 16];
    snprintf(message, sizeof(message), "%s%s", oom ? "out of memory: " : "", e->message);
    mf_text_puts(&t, "{\"error\":");
    mf_text_json_string(&t, message, strlen(message));
    mf_text_puts(&t, "}\n");
    return take_body(&t, out, out_len);
}

void mf_infer_request_free(struct mf_infer_request *r)
{
    if (!r)
        return;
    free_strings(r->items, r->item_lens, r->n_items);
    memfit_free(r->id);
    memfit_free(r->input_name);
    memfit_free(r->output_name);
    mf_gen_request_free(&r->gen);
    memset(r, 0, sizeof(*r));
}

/* Refuses a member of `obj` not in `names`, naming it and `where`. */
static enum memfit_status known_members(const json_t *obj, const char *where,
                                        const char *const *names, size_t n, const char *expected,
                                        struct mf_http_error *err)
{
    enum memfit_status st = MEMFIT_OK;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        if (!name_in(key, names, n))
            BAD("invalid_value", "unknown field '%.64s' in %s (expected %s)", key, where, expected);
    }
done:
    return st;
}

/* A member that must be an object when present; *out NULL when absent or null. */
static enum memfit_status object_member(const json_t *obj, const char *key, const char *where,
                                        json_t **out, struct mf_http_error *err)
{
    enum memfit_status st = MEMFIT_OK;
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (v && !json_is_null(v) && !json_is_object(v))
        BAD("invalid_type", "'%s' must be an object, not %s", where, json_type_name(v));
    if (v && json_is_object(v))
        *out = v;
done:
    return st;
}

/* A string member of 1..cap-1 bytes without NUL, copied to *out (NULL when absent and optional). */
static enum memfit_status name_member(const json_t *obj, const char *key, const char *where,
                                      bool required, size_t cap, char **out,
                                      struct mf_http_error *err)
{
    enum memfit_status st = MEMFIT_OK;
    json_t *v = json_object_get(obj, key);
    if (!v && !required)
        return MEMFIT_OK;
    if (!v)
        BAD("missing_field", "missing field '%s'", where);
    if (!json_is_string(v))
        BAD("invalid_type", "'%s' must be a string, not %s", where, json_type_name(v));
    if (json_string_length(v) == 0 || json_string_length(v) >= cap ||
        strlen(json_string_value(v)) != json_string_length(v))
        BAD("invalid_value", "'%s' must be 1 to %zu characters", where, cap - 1);
    if (!(*out = json_strdup(v, NULL)))
        st = MEMFIT_E_NOMEM;
done:
    return st;
}

#define V2_MAX_DIMS  16
#define V2_MAX_DEPTH 64

/* Counts the strings of a (nested) data array; anything else is refused. */
static enum memfit_status count_items(const json_t *v, size_t depth, size_t max, size_t *n,
                                      struct mf_http_error *err)
{
    enum memfit_status st = MEMFIT_OK;
    if (json_is_string(v)) {
        if (++*n > max)
            BAD("too_many_inputs",
                "'inputs[0].data' has more than %zu elements; at most %zu per "
                "request",
                max, max);
        return MEMFIT_OK;
    }
    if (!json_is_array(v))
        BAD("invalid_type", "'inputs[0].data' holds %s: the elements of a BYTES tensor are strings",
            json_type_name(v));
    if (depth >= V2_MAX_DEPTH)
        BAD("invalid_value", "'inputs[0].data' is nested more than %d deep", V2_MAX_DEPTH);
    size_t i;
    json_t *item;
    json_array_foreach(v, i, item)
    {
        if ((st = count_items(item, depth + 1, max, n, err)) != MEMFIT_OK)
            return st;
    }
done:
    return st;
}

/* Copies the strings of a data array counted by count_items, row-major. */
static enum memfit_status copy_items(const json_t *v, struct mf_infer_request *r, size_t *at)
{
    if (json_is_string(v)) {
        size_t i = (*at)++;
        r->items[i] = json_strdup(v, &r->item_lens[i]);
        return r->items[i] ? MEMFIT_OK : MEMFIT_E_NOMEM;
    }
    size_t i;
    json_t *item;
    json_array_foreach(v, i, item)
    {
        enum memfit_status st = copy_items(item, r, at);
        if (st != MEMFIT_OK)
            return st;
    }
    return MEMFIT_OK;
}

/* The product of a shape: dimensions are integers >= 0, at most V2_MAX_DIMS of them. */
static enum memfit_status shape_elements(const json_t *shape, uint64_t *n,
                                         struct mf_http_error *err)
{
    enum memfit_status st = MEMFIT_OK;
    if (!shape)
        BAD("missing_field", "missing field 'inputs[0].shape'");
    if (!json_is_array(shape))
        BAD("invalid_type", "'inputs[0].shape' must be an array of integers, not %s",
            json_type_name(shape));
    if (json_array_size(shape) == 0 || json_array_size(shape) > V2_MAX_DIMS)
        BAD("invalid_value", "'inputs[0].shape' must have 1 to %d dimensions", V2_MAX_DIMS);
    uint64_t product = 1;
    size_t i;
    json_t *d;
    json_array_foreach(shape, i, d)
    {
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            BAD("invalid_value", "'inputs[0].shape[%zu]' must be an integer >= 0", i);
        uint64_t x = (uint64_t)json_integer_value(d);
        if (x && product > UINT64_MAX / x)
            BAD("invalid_value", "'inputs[0].shape' holds more than 2^64 elements");
        product *= x;
    }
    *n = product;
done:
    return st;
}

/* The input tensor: one BYTES tensor whose data matches its shape. */
static enum memfit_status infer_input(const json_t *inputs, size_t max_items,
                                      struct mf_infer_request *r, struct mf_http_error *err)
{
    static const char *const fields[] = {"name", "shape", "datatype", "parameters", "data"};
    static const char *const params[] = {"content_type", "binary_data_size"};
    enum memfit_status st = MEMFIT_OK;
    if (!inputs)
        BAD("missing_field", "missing field 'inputs'");
    if (!json_is_array(inputs))
        BAD("invalid_type", "'inputs' must be an array, not %s", json_type_name(inputs));
    if (json_array_size(inputs) != 1)
        BAD("invalid_value", "'inputs' has %zu tensors; memfit's models take one input",
            json_array_size(inputs));
    json_t *in = json_array_get(inputs, 0);
    if (!json_is_object(in))
        BAD("invalid_type", "'inputs[0]' must be an object, not %s", json_type_name(in));
    if ((st = known_members(in, "'inputs[0]'", fields, N_OF(fields),
                            "name, shape, datatype, parameters, data", err)) != MEMFIT_OK ||
        (st = name_member(in, "name", "inputs[0].name", true, MF_MODEL_NAME_MAX, &r->input_name,
                          err)) != MEMFIT_OK)
        goto done;
    json_t *type = json_object_get(in, "datatype");
    if (!type)
        BAD("missing_field", "missing field 'inputs[0].datatype'");
    if (!json_is_string(type))
        BAD("invalid_type", "'inputs[0].datatype' must be a string, not %s", json_type_name(type));
    if (strcmp(json_string_value(type), "BYTES") != 0)
        BAD("invalid_value",
            "input '%s' has datatype '%.32s'; memfit's models take BYTES (images as base64, "
            "text as UTF-8)",
            r->input_name, json_string_value(type));
    json_t *p;
    if ((st = object_member(in, "parameters", "inputs[0].parameters", &p, err)) != MEMFIT_OK ||
        (p && (st = known_members(p, "'inputs[0].parameters'", params, N_OF(params), "content_type",
                                  err)) != MEMFIT_OK))
        goto done;
    if (p && json_object_get(p, "binary_data_size"))
        BAD("invalid_value", "'inputs[0].parameters.binary_data_size': the binary tensor data "
                             "extension is not supported (send the data in the JSON)");
    json_t *ct = p ? json_object_get(p, "content_type") : NULL;
    if (ct && !json_is_null(ct)) {
        if (!json_is_string(ct) || (strcmp(json_string_value(ct), "base64") != 0 &&
                                    strcmp(json_string_value(ct), "str") != 0))
            BAD("invalid_value", "'inputs[0].parameters.content_type' must be \"base64\" or "
                                 "\"str\"");
        r->base64 = strcmp(json_string_value(ct), "base64") == 0;
    }
    uint64_t want = 0;
    if ((st = shape_elements(json_object_get(in, "shape"), &want, err)) != MEMFIT_OK)
        goto done;
    json_t *data = json_object_get(in, "data");
    if (!data)
        BAD("missing_field", "missing field 'inputs[0].data'");
    size_t n = 0;
    if ((st = count_items(data, 0, max_items, &n, err)) != MEMFIT_OK)
        goto done;
    if (n != want)
        BAD("invalid_value", "'inputs[0].data' has %zu elements; its shape says %" PRIu64, n, want);
    if (n == 0)
        BAD("invalid_value", "'inputs[0].data' is empty");
    r->items = memfit_calloc_in(MEMFIT_ALLOC_SERVER, n, sizeof(*r->items));
    r->item_lens = memfit_calloc_in(MEMFIT_ALLOC_SERVER, n, sizeof(*r->item_lens));
    if (!r->items || !r->item_lens)
        return MEMFIT_E_NOMEM;
    r->n_items = n;
    size_t at = 0;
    st = copy_items(data, r, &at);
done:
    return st;
}

/* The outputs asked for: at most one, by name. */
static enum memfit_status infer_outputs(const json_t *outputs, struct mf_infer_request *r,
                                        struct mf_http_error *err)
{
    static const char *const fields[] = {"name", "parameters"};
    static const char *const params[] = {"binary_data"};
    enum memfit_status st = MEMFIT_OK;
    if (!outputs || json_is_null(outputs))
        return MEMFIT_OK;
    if (!json_is_array(outputs))
        BAD("invalid_type", "'outputs' must be an array, not %s", json_type_name(outputs));
    if (json_array_size(outputs) > 1)
        BAD("invalid_value", "'outputs' asks for %zu tensors; memfit's models have one output",
            json_array_size(outputs));
    json_t *out = json_array_get(outputs, 0);
    if (!out)
        return MEMFIT_OK;
    if (!json_is_object(out))
        BAD("invalid_type", "'outputs[0]' must be an object, not %s", json_type_name(out));
    json_t *p;
    if ((st = known_members(out, "'outputs[0]'", fields, N_OF(fields), "name, parameters", err)) !=
            MEMFIT_OK ||
        (st = name_member(out, "name", "outputs[0].name", true, MF_MODEL_NAME_MAX, &r->output_name,
                          err)) != MEMFIT_OK ||
        (st = object_member(out, "parameters", "outputs[0].parameters", &p, err)) != MEMFIT_OK ||
        (p && (st = known_members(p, "'outputs[0].parameters'", params, N_OF(params), "binary_data",
                                  err)) != MEMFIT_OK))
        goto done;
    json_t *binary = p ? json_object_get(p, "binary_data") : NULL;
    if (binary && !json_is_boolean(binary))
        BAD("invalid_type", "'outputs[0].parameters.binary_data' must be a boolean");
done:
    return st;
}

/* The request's parameters: the completions' sampling fields and content_type. */
static enum memfit_status infer_parameters(const json_t *root, struct mf_infer_request *r,
                                           struct mf_http_error *err)
{
    static const char *const params[] = {
        "max_tokens",     "temperature",        "top_p",       "top_k", "min_p", "seed", "stop",
        "repeat_penalty", "repetition_penalty", "content_type"};
    enum memfit_status st;
    json_t *p;
    if ((st = object_member(root, "parameters", "parameters", &p, err)) != MEMFIT_OK || !p)
        return st;
    if ((st = known_members(p, "'parameters'", params, N_OF(params),
                            "max_tokens, temperature, top_p, top_k, min_p, seed, stop, "
                            "repeat_penalty, content_type",
                            err)) != MEMFIT_OK ||
        (st = gen_sampling(p, &r->gen, err)) != MEMFIT_OK)
        return st;
    const struct mf_gen_request *g = &r->gen;
    r->has_gen_params = g->has_max_tokens || g->has_temperature || g->has_top_p || g->has_top_k ||
                        g->has_min_p || g->has_repeat_penalty || g->has_seed || g->n_stop;
    return MEMFIT_OK;
}

enum memfit_status mf_infer_request_parse(const char *body, size_t len, size_t max_items,
                                          struct mf_infer_request *out, struct mf_http_error *err)
{
    static const char *const fields[] = {"id", "parameters", "inputs", "outputs"};
    struct mf_infer_request r = {0};
    json_t *root;
    enum memfit_status st = load_object(body, len, JSON_ALLOW_NUL, &root, err);
    if (st != MEMFIT_OK)
        return st;
    if ((st = known_members(root, "the request", fields, N_OF(fields),
                            "id, parameters, inputs, outputs", err)) != MEMFIT_OK ||
        (st = name_member(root, "id", "id", false, 257, &r.id, err)) != MEMFIT_OK ||
        (st = infer_parameters(root, &r, err)) != MEMFIT_OK ||
        (st = infer_input(json_object_get(root, "inputs"), max_items, &r, err)) != MEMFIT_OK ||
        (st = infer_outputs(json_object_get(root, "outputs"), &r, err)) != MEMFIT_OK)
        goto done;
done:
    json_decref(root);
    if (st != MEMFIT_OK) {
        mf_infer_request_free(&r);
        return st;
    }
    *out = r;
    return MEMFIT_OK;
}

enum memfit_status mf_repo_request_parse(const char *body, size_t len, bool index, bool *ready_only,
                                         struct mf_http_error *err)
{
    static const char *const index_fields[] = {"ready"};
    static const char *const control_fields[] = {"parameters"};
    *ready_only = false;
    if (len == 0)
        return MEMFIT_OK;
    json_t *root;
    enum memfit_status st = load_object(body, len, 0, &root, err);
    if (st != MEMFIT_OK)
        return st;
    json_t *v;
    if (index) {
        if ((st = known_members(root, "the request", index_fields, 1, "ready", err)) != MEMFIT_OK)
            goto done;
        v = json_object_get(root, "ready");
        if (v && !json_is_boolean(v) && !json_is_null(v))
            BAD("invalid_type", "'ready' must be a boolean, not %s", json_type_name(v));
        *ready_only = json_is_true(v);
    } else if ((st = known_members(root, "the request", control_fields, 1, "parameters", err)) !=
                   MEMFIT_OK ||
               (st = object_member(root, "parameters", "parameters", &v, err)) != MEMFIT_OK) {
        goto done;
    } else if (v && json_object_size(v) > 0) {
        BAD("invalid_value",
            "parameter '%.64s' is not supported (memfit takes a model's "
            "configuration from its manifest)",
            json_object_iter_key(json_object_iter(v)));
    }
done:
    json_decref(root);
    return st;
}

/* ---- Routes ------------------------------------------------------------------- */

static const char *const route_labels[] = {
#define MF_ROUTE_LABEL(name, path) path,
    MF_ROUTE_LIST(MF_ROUTE_LABEL)
#undef MF_ROUTE_LABEL
};

const char *mf_route_label(enum mf_route route)
{
    return (unsigned)route < MF_ROUTE_COUNT ? route_labels[route] : "other";
}

static const char *const embed_fields[] = {"model", "input", "encoding_format", "dimensions",
                                           "user"};
static const char *const segment_all_fields[] = {"model",
                                                 "image",
                                                 "auto",
                                                 "output_mode",
                                                 "points",
                                                 "labels",
                                                 "box",
                                                 "mask_input",
                                                 "multimask_output",
                                                 "return_low_res",
                                                 "points_per_side",
                                                 "points_per_batch",
                                                 "pred_iou_thresh",
                                                 "stability_score_thresh",
                                                 "stability_score_offset",
                                                 "box_nms_thresh",
                                                 "crop_n_layers",
                                                 "crop_nms_thresh",
                                                 "crop_overlap_ratio",
                                                 "crop_n_points_downscale_factor",
                                                 "min_mask_region_area"};

static const char *const v2_infer_fields[] = {"id", "parameters", "inputs", "outputs"};
static const char *const v2_index_fields[] = {"ready"};
static const char *const v2_control_fields[] = {"parameters"};

const struct mf_json_schema *mf_route_schema(enum mf_route route)
{
    static const struct mf_json_schema embed = {embed_fields, N_OF(embed_fields), false, NULL};
    static const struct mf_json_schema completions = {completion_fields, N_OF(completion_fields),
                                                      false, COMPLETION_FIELDS_TEXT};
    static const struct mf_json_schema chat = {chat_fields, N_OF(chat_fields), false,
                                               CHAT_FIELDS_TEXT};
    static const struct mf_json_schema segment = {
        segment_all_fields, N_OF(segment_all_fields), false,
        "model, image, points, labels, box, multimask_output, mask_input, return_low_res, auto, "
        "output_mode and the automatic mask generator's parameters"};
    static const struct mf_json_schema infer = {v2_infer_fields, N_OF(v2_infer_fields), false,
                                                NULL};
    static const struct mf_json_schema index = {v2_index_fields, N_OF(v2_index_fields), false,
                                                NULL};
    static const struct mf_json_schema control = {v2_control_fields, N_OF(v2_control_fields), false,
                                                  NULL};
    switch (route) {
    case MF_ROUTE_EMBEDDINGS:
        return &embed;
    case MF_ROUTE_COMPLETIONS:
        return &completions;
    case MF_ROUTE_CHAT:
        return &chat;
    case MF_ROUTE_SEGMENT:
        return &segment;
    case MF_ROUTE_V2_INFER:
        return &infer;
    case MF_ROUTE_V2_REPO_INDEX:
        return &index;
    case MF_ROUTE_V2_REPO_LOAD:
    case MF_ROUTE_V2_REPO_UNLOAD:
        return &control;
    default:
        return NULL;
    }
}

/* "{name}" then "/load" or "/unload" after `prefix` (a path of the form PREFIX{name}/load). */
static enum mf_route control_route(const char *path, const char *prefix, enum mf_route load,
                                   enum mf_route unload, char name[MF_MODEL_NAME_MAX],
                                   const char **allowed)
{
    size_t n = strlen(prefix);
    if (strncmp(path, prefix, n) != 0)
        return MF_ROUTE_OTHER;
    const char *p = path + n;
    const char *slash = strchr(p, '/');
    if (!slash || slash == p || (size_t)(slash - p) >= MF_MODEL_NAME_MAX)
        return MF_ROUTE_OTHER;
    enum mf_route route;
    if (strcmp(slash, "/load") == 0)
        route = load;
    else if (strcmp(slash, "/unload") == 0)
        route = unload;
    else
        return MF_ROUTE_OTHER;
    memcpy(name, p, (size_t)(slash - p));
    name[slash - p] = '\0';
    *allowed = "POST";
    return route;
}

/* Copies the segment at *p (up to '/' or the end) into out[cap]; false when empty or too long. */
static bool path_segment(const char **p, char *out, size_t cap)
{
    size_t n = strcspn(*p, "/");
    if (n == 0 || n >= cap)
        return false;
    memcpy(out, *p, n);
    out[n] = '\0';
    *p += n;
    return true;
}

/* /v2/models/{name}[/versions/{version}][/ready|/infer] */
static enum mf_route v2_model_route(const char *path, char name[MF_MODEL_NAME_MAX],
                                    char version[MF_MODEL_VERSION_MAX], const char **allowed)
{
    static const char prefix[] = "/v2/models/";
    if (strncmp(path, prefix, sizeof(prefix) - 1) != 0)
        return MF_ROUTE_OTHER;
    const char *p = path + sizeof(prefix) - 1;
    if (!path_segment(&p, name, MF_MODEL_NAME_MAX))
        return MF_ROUTE_OTHER;
    if (strncmp(p, "/versions/", 10) == 0) {
        p += 10;
        if (!path_segment(&p, version, MF_MODEL_VERSION_MAX))
            return MF_ROUTE_OTHER;
    }
    *allowed = "GET";
    if (*p == '\0')
        return MF_ROUTE_V2_MODEL;
    if (strcmp(p, "/ready") == 0)
        return MF_ROUTE_V2_MODEL_READY;
    *allowed = "POST";
    if (strcmp(p, "/infer") == 0)
        return MF_ROUTE_V2_INFER;
    *allowed = NULL;
    return MF_ROUTE_OTHER;
}

enum mf_route mf_route_match(const char *path, char name[MF_MODEL_NAME_MAX], const char **allowed)
{
    char version[MF_MODEL_VERSION_MAX];
    return mf_route_match_version(path, name, version, allowed);
}

enum mf_route mf_route_match_version(const char *path, char name[MF_MODEL_NAME_MAX],
                                     char version[MF_MODEL_VERSION_MAX], const char **allowed)
{
    static const struct {
        const char *path;
        enum mf_route route;
        const char *method;
    } fixed[] = {
        {"/v1/embeddings", MF_ROUTE_EMBEDDINGS, "POST"},
        {"/v1/completions", MF_ROUTE_COMPLETIONS, "POST"},
        {"/v1/chat/completions", MF_ROUTE_CHAT, "POST"},
        {"/api/segment", MF_ROUTE_SEGMENT, "POST"},
        {"/v1/models", MF_ROUTE_V1_MODELS, "GET"},
        {"/api/models", MF_ROUTE_MODELS, "GET"},
        {"/api/memory", MF_ROUTE_MEMORY, "GET"},
        {"/api/cleanup", MF_ROUTE_CLEANUP, "POST"},
        {"/api/events", MF_ROUTE_EVENTS, "GET"},
        {"/health", MF_ROUTE_HEALTH, "GET"},
        {"/ready", MF_ROUTE_READY, "GET"},
        {"/metrics", MF_ROUTE_METRICS, "GET"},
        {"/", MF_ROUTE_DASHBOARD, "GET"},
        {"/v2/health/live", MF_ROUTE_V2_LIVE, "GET"},
        {"/v2/health/ready", MF_ROUTE_V2_READY, "GET"},
        {"/v2", MF_ROUTE_V2_SERVER, "GET"},
        {"/v2/repository/index", MF_ROUTE_V2_REPO_INDEX, "POST"},
    };
    *allowed = NULL;
    name[0] = '\0';
    version[0] = '\0';
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        if (strcmp(path, fixed[i].path) == 0) {
            *allowed = fixed[i].method;
            return fixed[i].route;
        }
    }
    enum mf_route route = control_route(path, "/api/models/", MF_ROUTE_MODEL_LOAD,
                                        MF_ROUTE_MODEL_UNLOAD, name, allowed);
    if (route == MF_ROUTE_OTHER)
        route = control_route(path, "/v2/repository/models/", MF_ROUTE_V2_REPO_LOAD,
                              MF_ROUTE_V2_REPO_UNLOAD, name, allowed);
    if (route == MF_ROUTE_OTHER)
        route = v2_model_route(path, name, version, allowed);
    if (route == MF_ROUTE_OTHER && strncmp(path, "/v1/models/", 11) == 0) {
        const char *p = path + 11;
        if (path_segment(&p, name, MF_MODEL_NAME_MAX) && *p == '\0') {
            *allowed = "GET";
            route = MF_ROUTE_V1_MODEL;
        }
    }
    if (route == MF_ROUTE_OTHER) {
        name[0] = '\0';
        version[0] = '\0';
    }
    return route;
}

/* ---- Authentication ------------------------------------------------------------- */

bool mf_ct_equal(const char *given, size_t given_len, const char *expected, size_t expected_len)
{
    volatile unsigned char diff = (unsigned char)(given_len != expected_len);
    for (size_t i = 0; i < expected_len; i++) {
        unsigned char g = i < given_len ? (unsigned char)given[i] : 0;
        diff |= (unsigned char)(g ^ (unsigned char)expected[i]);
    }
    return diff == 0;
}

bool mf_bearer_ok(const char *header, const char *key)
{
    if (!header || !key)
        return false;
    if (strncasecmp(header, "Bearer ", 7) != 0)
        return false;
    const char *token = header + 7;
    while (*token == ' ')
        token++;
    size_t len = strlen(token);
    while (len > 0 && (token[len - 1] == ' ' || token[len - 1] == '\t'))
        len--;
    return mf_ct_equal(token, len, key, strlen(key));
}

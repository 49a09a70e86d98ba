/*
 * The streaming JSON scan of a request body (see request.h): a push
 * tokenizer that checks the body's structure as it arrives, knows the
 * route's top-level members, and counts what parsing the body will cost
 * before anything is built.
 *
 * It checks what decides the structure (brackets, commas, colons, string
 * quotes and escapes, control characters in strings, literals, depth) and
 * leaves the fine grammar (number syntax, UTF-8, \u surrogates, duplicate
 * names) to the parser that runs afterwards on the same bytes: whatever it
 * accepts, the parser reads with the same nesting.
 *
 * A skipped member's value is overwritten in the buffer once it is
 * complete: "null" followed by spaces when it has at least 4 bytes; a value
 * of 1 to 3 bytes (a small number, "", [], {}) is left as it is, costing a
 * single node. The parser then never builds it.
 */
#include <string.h>

#include "server/request.h"

enum {
    S_START,        /* before the top-level object */
    S_KEY_OR_END,   /* after '{' */
    S_KEY,          /* after ',' in an object */
    S_COLON,        /* after a member name */
    S_VALUE,        /* after ':' or ',' in an array */
    S_VALUE_OR_END, /* after '[' */
    S_AFTER,        /* after a value */
    S_STRING,       /* inside a string */
    S_ESCAPE,       /* after a backslash */
    S_UNICODE,      /* inside \uXXXX */
    S_NUMBER,       /* inside a number */
    S_LITERAL,      /* inside true, false or null */
    S_DONE,         /* after the top-level object */
};

void mf_json_scan_init(struct mf_json_scan *s, const struct mf_json_schema *schema)
{
    memset(s, 0, sizeof(*s));
    s->schema = schema;
    s->state = S_START;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static enum memfit_status bad(struct mf_json_scan *s, struct mf_http_error *err, const char *code,
                              const char *what)
{
    s->failed = true;
    mf_http_error_set(err, 400, "invalid_request_error", code, "%s (at byte %zu of the body)", what,
                      s->pos);
    return memfit_fail(MEMFIT_E_FORMAT, "%s", err->message);
}

static bool top_is_object(const struct mf_json_scan *s)
{
    size_t d = s->depth - 1;
    return (s->objects[d / 8] >> (d % 8)) & 1u;
}

/* A value begins at s->pos (a container's value begins at its bracket). */
static void value_begin(struct mf_json_scan *s)
{
    if (s->skipping)
        return;
    if (s->depth == 1 && s->skip_next) {
        s->skip_next = false;
        s->skipping = true;
        s->skip_start = s->pos;
        return;
    }
    s->values++;
    if (s->depth > 0 && !top_is_object(s))
        s->elements++;
}

/* The value that began at skip_start ends before `end`: blank it when it was skipped. */
static void value_end(struct mf_json_scan *s, char *buf, size_t end)
{
    if (!s->skipping || s->depth != 1)
        return;
    s->skipping = false;
    s->skipped++;
    size_t n = end - s->skip_start;
    if (n >= 4) {
        memcpy(buf + s->skip_start, "null", 4);
        memset(buf + s->skip_start + 4, ' ', n - 4);
    }
}

static enum memfit_status push(struct mf_json_scan *s, bool object, struct mf_http_error *err)
{
    if (s->depth >= MF_JSON_MAX_DEPTH)
        return bad(s, err, "invalid_json", "the JSON is nested too deeply (at most 64 levels)");
    size_t d = s->depth++;
    if (object)
        s->objects[d / 8] |= (uint8_t)(1u << (d % 8));
    else
        s->objects[d / 8] &= (uint8_t) ~(1u << (d % 8));
    if (!s->skipping) {
        s->containers++;
        s->objects_n += object;
    }
    return MEMFIT_OK;
}

/* A top-level member name is complete: known, skipped, or refused. */
static enum memfit_status member_name(struct mf_json_scan *s, struct mf_http_error *err)
{
    s->skip_next = false;
    if (!s->schema)
        return MEMFIT_OK;
    if (!s->key_overflow)
        for (size_t i = 0; i < s->schema->n_fields; i++)
            if (strlen(s->schema->fields[i]) == s->key_len &&
                memcmp(s->schema->fields[i], s->key, s->key_len) == 0)
                return MEMFIT_OK;
    if (s->schema->skip_unknown) {
        s->skip_next = true;
        return MEMFIT_OK;
    }
    s->failed = true;
    char list[300] = "";
    size_t used = 0;
    if (s->schema->expected)
        snprintf(list, sizeof(list), "%s", s->schema->expected);
    for (size_t i = 0; !s->schema->expected && i < s->schema->n_fields && used + 1 < sizeof(list);
         i++) {
        int n =
            snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "", s->schema->fields[i]);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    mf_http_error_set(err, 400, "invalid_request_error", "invalid_value",
                      "unknown field '%.*s%s' (expected %s)", (int)s->key_len, s->key,
                      s->key_overflow ? "..." : "", list);
    return memfit_fail(MEMFIT_E_FORMAT, "%s", err->message);
}

/* One byte of a member name at depth 1, unescaped when simple. */
static void key_byte(struct mf_json_scan *s, char c)
{
    if (s->key_len < sizeof(s->key))
        s->key[s->key_len++] = c;
    else
        s->key_overflow = true;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The end of a string (the closing quote at s->pos). */
static enum memfit_status string_end(struct mf_json_scan *s, char *buf, struct mf_http_error *err)
{
    if (s->in_key) {
        s->in_key = false;
        s->state = S_COLON;
        if (!s->skipping) {
            s->members++;
            s->string_bytes += s->string_len;
        }
        return s->depth == 1 ? member_name(s, err) : MEMFIT_OK;
    }
    if (!s->skipping) {
        s->strings++;
        s->string_bytes += s->string_len;
        if (s->string_len > s->max_string)
            s->max_string = s->string_len;
    }
    s->state = S_AFTER;
    value_end(s, buf, s->pos + 1);
    return MEMFIT_OK;
}

/* A container closes at s->pos. */
static void close_container(struct mf_json_scan *s, char *buf)
{
    s->depth--;
    s->state = s->depth == 0 ? S_DONE : S_AFTER;
    value_end(s, buf, s->pos + 1);
}

static enum memfit_status begin_value(struct mf_json_scan *s, char c, struct mf_http_error *err)
{
    static const char *const literals[] = {"true", "false", "null"};
    switch (c) {
    case '{':
    case '[':
        value_begin(s);
        s->state = c == '{' ? S_KEY_OR_END : S_VALUE_OR_END;
        return push(s, c == '{', err);
    case '"':
        value_begin(s);
        s->state = S_STRING;
        s->string_len = 0;
        return MEMFIT_OK;
    case 't':
    case 'f':
    case 'n':
        value_begin(s);
        s->literal = literals[c == 't' ? 0 : c == 'f' ? 1 : 2];
        s->literal_at = 1;
        s->state = S_LITERAL;
        return MEMFIT_OK;
    default:
        if (c == '-' || (c >= '0' && c <= '9')) {
            value_begin(s);
            s->state = S_NUMBER;
            return MEMFIT_OK;
        }
        return bad(s, err, "invalid_json", "the body is not valid JSON: a value was expected");
    }
}

/* One byte in the states outside strings, numbers and literals. */
static enum memfit_status structural(struct mf_json_scan *s, char *buf, char c,
                                     struct mf_http_error *err)
{
    if (is_space(c))
        return MEMFIT_OK;
    switch (s->state) {
    case S_START:
        if (c != '{')
            return bad(s, err, "invalid_type", "the body must be a JSON object");
        return begin_value(s, c, err);
    case S_KEY_OR_END:
    case S_KEY:
        if (c == '}' && s->state == S_KEY_OR_END) {
            close_container(s, buf);
            return MEMFIT_OK;
        }
        if (c != '"')
            return bad(s, err, "invalid_json",
                       "the body is not valid JSON: a member name in quotes was expected");
        s->state = S_STRING;
        s->in_key = true;
        s->key_len = 0;
        s->key_overflow = false;
        s->string_len = 0;
        return MEMFIT_OK;
    case S_COLON:
        if (c != ':')
            return bad(s, err, "invalid_json", "the body is not valid JSON: ':' was expected");
        s->state = S_VALUE;
        return MEMFIT_OK;
    case S_VALUE_OR_END:
        if (c == ']') {
            close_container(s, buf);
            return MEMFIT_OK;
        }
        return begin_value(s, c, err);
    case S_VALUE:
        return begin_value(s, c, err);
    case S_AFTER:
        if (c == ',') {
            s->state = top_is_object(s) ? S_KEY : S_VALUE;
            return MEMFIT_OK;
        }
        if (c == (top_is_object(s) ? '}' : ']')) {
            close_container(s, buf);
            return MEMFIT_OK;
        }
        return bad(s, err, "invalid_json",
                   "the body is not valid JSON: ',' or a closing bracket was expected");
    case S_DONE:
        return bad(s, err, "invalid_json", "the body is not valid JSON: data after the object");
    default:
        return bad(s, err, "invalid_json", "the body is not valid JSON");
    }
}

enum memfit_status mf_json_scan_feed(struct mf_json_scan *s, char *buf, size_t len,
                                     struct mf_http_error *err)
{
    if (s->failed)
        return bad(s, err, "invalid_json", "the body is not valid JSON");
    enum memfit_status st = MEMFIT_OK;
    while (s->pos < len && st == MEMFIT_OK) {
        char c = buf[s->pos];
        switch (s->state) {
        case S_STRING:
            if (c == '"') {
                st = string_end(s, buf, err);
            } else if (c == '\\') {
                s->state = S_ESCAPE;
            } else if ((unsigned char)c < 0x20) {
                st = bad(s, err, "invalid_json",
                         "the body is not valid JSON: a control character in a string");
            } else {
                s->string_len++;
                if (s->in_key && s->depth == 1)
                    key_byte(s, c);
            }
            break;
        case S_ESCAPE: {
            static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
            const char *p = c ? strchr(from, c) : NULL;
            if (c == 'u') {
                s->state = S_UNICODE;
                s->unicode = 0;
                s->unicode_digits = 0;
            } else if (p) {
                s->state = S_STRING;
                s->string_len++;
                if (s->in_key && s->depth == 1)
                    key_byte(s, to[p - from]);
            } else {
                st = bad(s, err, "invalid_json", "the body is not valid JSON: a bad escape");
            }
            break;
        }
        case S_UNICODE: {
            int h = hex_value(c);
            if (h < 0) {
                st = bad(s, err, "invalid_json", "the body is not valid JSON: a bad \\u escape");
                break;
            }
            s->unicode = s->unicode * 16 + (unsigned)h;
            if (++s->unicode_digits == 4) {
                s->state = S_STRING;
                s->string_len += 3; /* at most 3 bytes of UTF-8 (a pair: 6 for 4) */
                if (s->in_key && s->depth == 1) {
                    if (s->unicode < 0x80)
                        key_byte(s, (char)s->unicode);
                    else
                        s->key_overflow = true; /* no field name has one: unknown */
                }
            }
            break;
        }
        case S_NUMBER:
            if ((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-')
                break;
            s->state = S_AFTER;
            value_end(s, buf, s->pos);
            continue; /* the byte after the number is read again in S_AFTER */
        case S_LITERAL:
            if (c != s->literal[s->literal_at]) {
                st = bad(s, err, "invalid_json", "the body is not valid JSON: a bad literal");
                break;
            }
            if (s->literal[++s->literal_at] == '\0') {
                s->state = S_AFTER;
                value_end(s, buf, s->pos + 1);
            }
            break;
        default:
            st = structural(s, buf, c, err);
            break;
        }
        s->pos++;
    }
    return st;
}

enum memfit_status mf_json_scan_finish(struct mf_json_scan *s, struct mf_http_error *err)
{
    if (s->failed)
        return bad(s, err, "invalid_json", "the body is not valid JSON");
    if (s->state == S_START)
        return bad(s, err, "invalid_json", "the body is empty: a JSON object was expected");
    if (s->state != S_DONE)
        return bad(s, err, "invalid_json", "the body is not valid JSON: it ends too early");
    return MEMFIT_OK;
}

/*
 * What jansson (2.14, 64-bit) allocates to build the scanned body, with the
 * allocator's header and glibc's chunk overhead, as measured by
 * test_server_json_scan: a number 64 bytes, a string 80 plus twice its
 * bytes (the value and the parser's copy), an array 160 with 16 a slot, an
 * object 288 (its first hash buckets) with 128 a member plus its name, the
 * lexer's buffer up to twice the longest string.
 */
uint64_t mf_json_scan_cost(const struct mf_json_scan *s)
{
    uint64_t scalars = s->values - s->strings - s->containers;
    uint64_t arrays = s->containers - s->objects_n;
    return 64 * scalars + 80 * s->strings + 160 * arrays + 288 * s->objects_n + 16 * s->elements +
           128 * s->members + 2 * s->string_bytes + 2 * s->max_string + 4096;
}

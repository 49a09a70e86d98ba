/*
 * Chat templates: the prompt text of a conversation for the three template
 * families memfit renders natively, written by hand to give byte for byte
 * what the models' own Jinja templates (tokenizer.chat_template) render
 * through Hugging Face's apply_chat_template — memfit runs no Jinja.
 * tests/fixtures/chat/ holds the real templates and the outputs Jinja2
 * gives for them (scripts/make_chat_fixtures.py); the unit test compares.
 *
 * - ChatML (Qwen1.5/Qwen2-Instruct): "<|im_start|>{role}\n{content}<|im_end|>\n",
 *   with "You are a helpful assistant." as the system message when the
 *   first message is not one; the generation prompt "<|im_start|>assistant\n".
 * - LLaMA 2 chat: "<s>[INST] {content.strip()} [/INST]" per user turn, the
 *   system message folded into the first as "<<SYS>>\n{sys}\n<</SYS>>\n\n"
 *   (the whole strip()ped), " {content.strip()} </s>" per assistant turn;
 *   user and assistant must alternate; no generation prompt of its own.
 * - LLaMA 3 instruct: "<|begin_of_text|>" before the first message, then
 *   "<|start_header_id|>{role}<|end_header_id|>\n\n{content|trim}<|eot_id|>";
 *   the generation prompt "<|start_header_id|>assistant<|end_header_id|>\n\n".
 * - Qwen2.5 (ChatML with tools): the system block names the tools inside
 *   <tools></tools>, one `tool | tojson` per line, and says how to answer
 *   (<tool_call>{"name", "arguments"}</tool_call>); "You are Qwen, created by
 *   Alibaba Cloud. You are a helpful assistant." when no system message; an
 *   assistant's calls follow its content as "\n<tool_call>\n{...}\n</tool_call>";
 *   consecutive tool results share one user turn of
 *   "\n<tool_response>\n{content}\n</tool_response>" each.
 * - LLaMA 3.1: "<|begin_of_text|>" and always a system block ("Environment:
 *   ipython\n" with tools, "Cutting Knowledge Date: December 2023\nToday
 *   Date: 26 Jul 2024\n\n", the system message trimmed); with tools the first
 *   user message is preceded by instructions and each tool as
 *   `tojson(indent=4)`; a call is {"name": "f", "parameters": ARGS}; a tool
 *   result an ipython turn holding its content `| tojson` (a JSON string).
 *   The 3.2/3.3 templates that take today's date (strftime_now) get the 3.1 date.
 * tojson is Hugging Face's (json.dumps, ensure_ascii=False), not Jinja's own.
 * strip()/trim remove Python's whitespace (str.isspace: Unicode spaces and
 * the ASCII separators 0x1C-0x1F included), not just ASCII blanks.
 */
#include <string.h>

#include <stdio.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "core/json.h"
#include "memfit/models.h"

const char *memfit_chat_template_name(enum memfit_chat_template tmpl)
{
    switch (tmpl) {
    case MEMFIT_CHAT_CHATML:
        return "chatml";
    case MEMFIT_CHAT_LLAMA2:
        return "llama2";
    case MEMFIT_CHAT_LLAMA3:
        return "llama3";
    case MEMFIT_CHAT_QWEN25:
        return "qwen2.5";
    case MEMFIT_CHAT_LLAMA31:
        return "llama3.1";
    }
    return "unknown";
}

bool memfit_chat_template_has_tools(enum memfit_chat_template tmpl)
{
    return tmpl == MEMFIT_CHAT_QWEN25 || tmpl == MEMFIT_CHAT_LLAMA31;
}

void memfit_chat_template_detect(const char *template_text, enum memfit_chat_template *out,
                                 bool *recognised)
{
    /* Markers no other family's template contains; LLaMA 3 first (its
     * variants may quote other formats), then ChatML, then [INST] (LLaMA 2,
     * and Mistral's, which it renders closely). */
    enum memfit_chat_template t = MEMFIT_CHAT_CHATML;
    bool known = false;
    if (template_text) {
        /* The 3.1 family writes its ipython environment; Qwen2.5 its own
         * default system message next to its <tool_call> format (Qwen3's
         * template, which has neither, stays plain ChatML). */
        if (strstr(template_text, "<|start_header_id|>"))
            t = strstr(template_text, "Environment: ipython") ? MEMFIT_CHAT_LLAMA31
                                                              : MEMFIT_CHAT_LLAMA3,
            known = true;
        else if (strstr(template_text, "<|im_start|>"))
            t = strstr(template_text, "<tool_call>") &&
                        strstr(template_text, "You are Qwen, created by Alibaba Cloud.")
                    ? MEMFIT_CHAT_QWEN25
                    : MEMFIT_CHAT_CHATML,
            known = true;
        else if (strstr(template_text, "[INST]"))
            t = MEMFIT_CHAT_LLAMA2, known = true;
    }
    if (out)
        *out = t;
    if (recognised)
        *recognised = known;
}

/* ---- output: measured in a first pass (buf NULL), written in a second --- */

struct out {
    char *buf;
    size_t len;
    bool overflow;
};

/* A conversation being rendered. */
struct chat {
    enum memfit_chat_template tmpl;
    const struct memfit_chat_message *m;
    size_t n;
    const int *role; /* ROLE_* of each message */
    bool gen;
    json_t *tools; /* the tools array (not empty), or NULL */
    json_t **args; /* each tool call's arguments in message order; NULL: not JSON */
};

static void put_n(struct out *o, const char *s, size_t n)
{
    if (o->buf)
        memcpy(o->buf + o->len, s, n);
    if (mf_add_overflow(o->len, n, &o->len))
        o->overflow = true;
}

static void put(struct out *o, const char *s)
{
    put_n(o, s, strlen(s));
}

/* ---- Python's str.strip() over UTF-8 -------------------------------------- */

/* Decodes the code point at s[0..n) (n >= 1); its length in *len; -1 for an invalid byte. */
static long decode_at(const unsigned char *s, size_t n, size_t *len)
{
    unsigned c = s[0];
    size_t need = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (need == 0 || need > n) {
        *len = 1;
        return -1;
    }
    long cp = need == 1 ? (long)c : (long)(c & (0x7f >> need));
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            *len = 1;
            return -1;
        }
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    *len = need;
    return cp;
}

/* Python's str.isspace() (Unicode White_Space plus the ASCII separators). */
static bool is_py_space(long cp)
{
    return (cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x20) || cp == 0x85 || cp == 0xa0 ||
           cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 ||
           cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

/* Length of the whitespace at the start of s[0..n). */
static size_t space_prefix(const char *s, size_t n)
{
    size_t i = 0, len;
    while (i < n && is_py_space(decode_at((const unsigned char *)s + i, n - i, &len)))
        i += len;
    return i;
}

/* Length of s[0..n) without the whitespace at its end. */
static size_t without_space_suffix(const char *s, size_t n)
{
    while (n > 0) {
        size_t start = n - 1, len;
        while (start > 0 && n - start < 4 && ((unsigned char)s[start] & 0xc0) == 0x80)
            start--;
        long cp = decode_at((const unsigned char *)s + start, n - start, &len);
        if (start + len != n || !is_py_space(cp))
            break; /* not whitespace, or not a whole character ending here */
        n = start;
    }
    return n;
}

/* Writes the concatenation of the pieces, strip()ped as one string. */
static void put_stripped(struct out *o, const char *const *pieces, size_t n_pieces)
{
    size_t first = 0, first_off = 0, last = n_pieces, last_end = 0;
    for (; first < n_pieces; first++) {
        size_t n = strlen(pieces[first]);
        first_off = space_prefix(pieces[first], n);
        if (first_off < n)
            break;
    }
    while (last > first) {
        last_end = without_space_suffix(pieces[last - 1], strlen(pieces[last - 1]));
        if (last_end > (last - 1 == first ? first_off : 0))
            break;
        last--;
    }
    for (size_t i = first; i < last; i++) {
        size_t from = i == first ? first_off : 0;
        size_t to = i == last - 1 ? last_end : strlen(pieces[i]);
        put_n(o, pieces[i] + from, to - from);
    }
}

/* ---- messages ------------------------------------------------------------ */

static const char *const roles[] = {"system", "user", "assistant", "tool"};
enum { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT, ROLE_TOOL };

static enum memfit_status check_messages(enum memfit_chat_template tmpl,
                                         const struct memfit_chat_message *m, size_t n,
                                         int *role_ids)
{
    bool tools = memfit_chat_template_has_tools(tmpl);
    for (size_t i = 0; i < n; i++) {
        bool calls = m[i].n_tool_calls > 0;
        if (!m[i].role || (!m[i].content && !calls))
            return memfit_fail(MEMFIT_E_INVALID, "chat: message %zu: no %s", i + 1,
                               m[i].role ? "content" : "role");
        role_ids[i] = -1;
        for (int r = 0; r < (tools ? 4 : 3); r++)
            if (strcmp(m[i].role, roles[r]) == 0)
                role_ids[i] = r;
        if (role_ids[i] < 0)
            return memfit_fail(MEMFIT_E_INVALID,
                               "chat: message %zu: role \"%.40s\" is not system, user%s or "
                               "assistant",
                               i + 1, m[i].role, tools ? ", tool" : "");
        if (calls && (role_ids[i] != ROLE_ASSISTANT || !tools || !m[i].tool_calls))
            return memfit_fail(MEMFIT_E_INVALID,
                               "chat: message %zu: tool calls need an assistant message and a "
                               "template with tools (%s has none)",
                               i + 1, memfit_chat_template_name(tmpl));
        if (calls && tmpl == MEMFIT_CHAT_LLAMA31 && m[i].n_tool_calls > 1)
            return memfit_fail(MEMFIT_E_INVALID,
                               "chat (llama3.1): message %zu: %zu tool calls; the template takes "
                               "one per message",
                               i + 1, m[i].n_tool_calls);
        for (size_t k = 0; k < m[i].n_tool_calls; k++)
            if (!m[i].tool_calls[k].name || !m[i].tool_calls[k].arguments)
                return memfit_fail(MEMFIT_E_INVALID,
                                   "chat: message %zu: tool call %zu has no name or arguments",
                                   i + 1, k + 1);
    }
    return MEMFIT_OK;
}

/* ---- Python's json.dumps (ensure_ascii=False), as Hugging Face's tojson ---- */

static void py_string(struct out *o, const char *s, size_t n)
{
    put(o, "\"");
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = c == '"'    ? "\\\""
                          : c == '\\' ? "\\\\"
                          : c == '\n' ? "\\n"
                          : c == '\r' ? "\\r"
                          : c == '\t' ? "\\t"
                          : c == '\b' ? "\\b"
                          : c == '\f' ? "\\f"
                                      : NULL;
        if (!esc && c >= 0x20)
            continue;
        put_n(o, s + run, i - run);
        run = i + 1;
        char hex[8];
        if (!esc) {
            snprintf(hex, sizeof(hex), "\\u%04x", c);
            esc = hex;
        }
        put(o, esc);
    }
    put_n(o, s + run, n - run);
    put(o, "\"");
}

/* repr(float): the shortest digits that read back as x, in fixed notation for
 * exponents -4 to 15 ("1.0", "0.0001"), else "1e+16", "1.5e-05". */
static void py_float(struct out *o, double x)
{
    char e[40], digits[24], buf[64];
    int p = 1;
    for (; p < 17; p++) {
        snprintf(e, sizeof(e), "%.*e", p - 1, x);
        if (strtod(e, NULL) == x)
            break;
    }
    snprintf(e, sizeof(e), "%.*e", p - 1, x);
    const char *q = e;
    bool neg = *q == '-';
    q += neg;
    size_t nd = 0;
    for (; *q && *q != 'e'; q++)
        if (*q != '.')
            digits[nd++] = *q;
    long exp10 = strtol(q + 1, NULL, 10);
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    digits[nd] = '\0';
    size_t k = 0;
    if (neg)
        buf[k++] = '-';
    if (exp10 >= -4 && exp10 < 16) {
        if (exp10 < 0) {
            buf[k++] = '0';
            buf[k++] = '.';
            for (long z = 0; z < -exp10 - 1; z++)
                buf[k++] = '0';
            for (size_t d = 0; d < nd; d++)
                buf[k++] = digits[d];
        } else {
            for (long d = 0; d <= exp10; d++)
                buf[k++] = (size_t)d < nd ? digits[d] : '0';
            buf[k++] = '.';
            if ((size_t)exp10 + 1 >= nd)
                buf[k++] = '0';
            for (size_t d = (size_t)exp10 + 1; d < nd; d++)
                buf[k++] = digits[d];
        }
        buf[k] = '\0';
    } else {
        snprintf(buf + k, sizeof(buf) - k, "%c%s%se%c%02ld", digits[0], nd > 1 ? "." : "",
                 digits + 1, exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
    }
    put(o, buf);
}

static void py_indent(struct out *o, int indent, int level)
{
    put(o, "\n");
    for (int i = 0; i < indent * level; i++)
        put(o, " ");
}

/* json.dumps(v, indent=indent or None): ", " and ": " without indent, "," and
 * ": " with it; keys in the order given. */
static void py_json(struct out *o, const json_t *v, int indent, int level)
{
    char num[32];
    size_t i, n = json_is_object(v)  ? json_object_size(v)
                  : json_is_array(v) ? json_array_size(v)
                                     : 0;
    switch (json_typeof(v)) {
    case JSON_OBJECT:
    case JSON_ARRAY: {
        bool obj = json_is_object(v);
        if (n == 0) {
            put(o, obj ? "{}" : "[]");
            break;
        }
        put(o, obj ? "{" : "[");
        i = 0;
        if (obj) {
            const char *key;
            json_t *member;
            json_object_foreach((json_t *)v, key, member)
            {
                put(o, i++ ? (indent ? "," : ", ") : "");
                if (indent)
                    py_indent(o, indent, level + 1);
                py_string(o, key, strlen(key));
                put(o, ": ");
                py_json(o, member, indent, level + 1);
            }
        } else {
            json_t *item;
            json_array_foreach(v, i, item)
            {
                put(o, i ? (indent ? "," : ", ") : "");
                if (indent)
                    py_indent(o, indent, level + 1);
                py_json(o, item, indent, level + 1);
            }
        }
        if (indent)
            py_indent(o, indent, level);
        put(o, obj ? "}" : "]");
        break;
    }
    case JSON_STRING:
        py_string(o, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        put(o, num);
        break;
    case JSON_REAL:
        py_float(o, json_real_value(v));
        break;
    case JSON_TRUE:
        put(o, "true");
        break;
    case JSON_FALSE:
        put(o, "false");
        break;
    default:
        put(o, "null");
        break;
    }
}

/* A call's arguments | tojson: the JSON value, or the text as a string when it is none. */
static void put_arguments(struct out *o, const struct chat *c, size_t k, const char *text)
{
    if (c->args && c->args[k])
        py_json(o, c->args[k], 0, 0);
    else
        py_string(o, text, strlen(text));
}

/* ---- the templates ------------------------------------------------------- */

static void render_chatml(struct out *o, const struct chat *c)
{
    if (c->n > 0 && c->role[0] != ROLE_SYSTEM)
        put(o, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n");
    for (size_t i = 0; i < c->n; i++) {
        put(o, "<|im_start|>");
        put(o, c->m[i].role);
        put(o, "\n");
        put(o, c->m[i].content);
        put(o, "<|im_end|>\n");
    }
    if (c->gen)
        put(o, "<|im_start|>assistant\n");
}

#define QWEN25_SYSTEM "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

static void render_qwen25(struct out *o, const struct chat *c)
{
    const struct memfit_chat_message *m = c->m;
    bool sys = c->n > 0 && c->role[0] == ROLE_SYSTEM;
    put(o, "<|im_start|>system\n");
    put(o, sys ? m[0].content : QWEN25_SYSTEM);
    if (c->tools) {
        put(o, "\n\n# Tools\n\nYou may call one or more functions to assist with the user "
               "query.\n\nYou are provided with function signatures within <tools></tools> XML "
               "tags:\n<tools>");
        size_t i;
        json_t *tool;
        json_array_foreach(c->tools, i, tool)
        {
            put(o, "\n");
            py_json(o, tool, 0, 0);
        }
        put(o, "\n</tools>\n\nFor each function call, return a json object with function name "
               "and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": "
               "<function-name>, \"arguments\": <args-json-object>}\n</tool_call>");
    }
    put(o, "<|im_end|>\n");
    size_t k = 0; /* the first tool call of message i */
    for (size_t i = 0; i < c->n; k += m[i].n_tool_calls, i++) {
        int r = c->role[i];
        if (r == ROLE_USER || (r == ROLE_SYSTEM && i > 0) ||
            (r == ROLE_ASSISTANT && !m[i].n_tool_calls)) {
            put(o, "<|im_start|>");
            put(o, m[i].role);
            put(o, "\n");
            put(o, m[i].content);
            put(o, "<|im_end|>\n");
        } else if (r == ROLE_ASSISTANT) {
            put(o, "<|im_start|>assistant");
            if (m[i].content && m[i].content[0]) {
                put(o, "\n");
                put(o, m[i].content);
            }
            for (size_t j = 0; j < m[i].n_tool_calls; j++) {
                put(o, "\n<tool_call>\n{\"name\": \"");
                put(o, m[i].tool_calls[j].name);
                put(o, "\", \"arguments\": ");
                put_arguments(o, c, k + j, m[i].tool_calls[j].arguments);
                put(o, "}\n</tool_call>");
            }
            put(o, "<|im_end|>\n");
        } else if (r == ROLE_TOOL) {
            if (i == 0 || c->role[i - 1] != ROLE_TOOL)
                put(o, "<|im_start|>user");
            put(o, "\n<tool_response>\n");
            put(o, m[i].content);
            put(o, "\n</tool_response>");
            if (i + 1 == c->n || c->role[i + 1] != ROLE_TOOL)
                put(o, "<|im_end|>\n");
        }
    }
    if (c->gen)
        put(o, "<|im_start|>assistant\n");
}

static enum memfit_status check_llama2(size_t n, const int *role_ids)
{
    size_t first = n > 0 && role_ids[0] == ROLE_SYSTEM ? 1 : 0;
    for (size_t i = first; i < n; i++) {
        if (role_ids[i] == ROLE_SYSTEM)
            return memfit_fail(MEMFIT_E_INVALID,
                               "chat (llama2): message %zu: a system message can only come first",
                               i + 1);
        if ((role_ids[i] == ROLE_USER) != ((i - first) % 2 == 0))
            return memfit_fail(MEMFIT_E_INVALID,
                               "chat (llama2): message %zu: %s where the template needs %s "
                               "(user and assistant alternate, user first)",
                               i + 1, roles[role_ids[i]],
                               (i - first) % 2 == 0 ? "user" : "assistant");
    }
    return MEMFIT_OK;
}

static void render_llama2(struct out *o, const struct chat *c)
{
    const struct memfit_chat_message *m = c->m;
    size_t first = c->n > 0 && c->role[0] == ROLE_SYSTEM ? 1 : 0;
    for (size_t i = first; i < c->n; i++) {
        const char *pieces[4] = {m[i].content};
        size_t n_pieces = 1;
        if (i == first && first == 1) {
            pieces[0] = "<<SYS>>\n";
            pieces[1] = m[0].content;
            pieces[2] = "\n<</SYS>>\n\n";
            pieces[3] = m[i].content;
            n_pieces = 4;
        }
        put(o, c->role[i] == ROLE_USER ? "<s>[INST] " : " ");
        put_stripped(o, pieces, n_pieces);
        put(o, c->role[i] == ROLE_USER ? " [/INST]" : " </s>");
    }
}

/* "<|start_header_id|>{role}<|end_header_id|>\n\n{content|trim}<|eot_id|>" */
static void llama3_turn(struct out *o, const char *role, const char *content)
{
    put(o, "<|start_header_id|>");
    put(o, role);
    put(o, "<|end_header_id|>\n\n");
    put_stripped(o, &content, 1);
    put(o, "<|eot_id|>");
}

static void render_llama3(struct out *o, const struct chat *c)
{
    for (size_t i = 0; i < c->n; i++) {
        if (i == 0)
            put(o, "<|begin_of_text|>");
        llama3_turn(o, c->m[i].role, c->m[i].content);
    }
    if (c->gen)
        put(o, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

/* With tools the first message after the system one carries them: a user message. */
static enum memfit_status check_llama31(const struct chat *c)
{
    size_t first = c->n > 0 && c->role[0] == ROLE_SYSTEM ? 1 : 0;
    if (c->tools && (first >= c->n || c->role[first] != ROLE_USER))
        return memfit_fail(MEMFIT_E_INVALID,
                           "chat (llama3.1): the tools go into the first user message, and "
                           "message %zu is %s",
                           first + 1, first < c->n ? roles[c->role[first]] : "missing");
    return MEMFIT_OK;
}

static void render_llama31(struct out *o, const struct chat *c)
{
    const struct memfit_chat_message *m = c->m;
    size_t i = 0, k = 0;
    put(o, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n");
    if (c->tools)
        put(o, "Environment: ipython\n");
    put(o, "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n");
    if (c->n > 0 && c->role[0] == ROLE_SYSTEM)
        put_stripped(o, &m[i++].content, 1);
    put(o, "<|eot_id|>");
    if (c->tools) {
        put(o, "<|start_header_id|>user<|end_header_id|>\n\nGiven the following functions, "
               "please respond with a JSON for a function call with its proper arguments that "
               "best answers the given prompt.\n\nRespond in the format {\"name\": function "
               "name, \"parameters\": dictionary of argument name and its value}.Do not use "
               "variables.\n\n");
        size_t t;
        json_t *tool;
        json_array_foreach(c->tools, t, tool)
        {
            py_json(o, tool, 4, 0);
            put(o, "\n\n");
        }
        put_stripped(o, &m[i++].content, 1);
        put(o, "<|eot_id|>");
    }
    for (size_t j = 0; j < i; j++)
        k += m[j].n_tool_calls;
    for (; i < c->n; k += m[i].n_tool_calls, i++) {
        if (c->role[i] == ROLE_TOOL) {
            put(o, "<|start_header_id|>ipython<|end_header_id|>\n\n");
            py_string(o, m[i].content, strlen(m[i].content));
            put(o, "<|eot_id|>");
        } else if (m[i].n_tool_calls) {
            put(o, "<|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": \"");
            put(o, m[i].tool_calls[0].name);
            put(o, "\", \"parameters\": ");
            put_arguments(o, c, k, m[i].tool_calls[0].arguments);
            put(o, "}<|eot_id|>");
        } else {
            llama3_turn(o, m[i].role, m[i].content);
        }
    }
    if (c->gen)
        put(o, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

static void render(struct out *o, const struct chat *c)
{
    switch (c->tmpl) {
    case MEMFIT_CHAT_LLAMA2:
        render_llama2(o, c);
        break;
    case MEMFIT_CHAT_LLAMA3:
        render_llama3(o, c);
        break;
    case MEMFIT_CHAT_QWEN25:
        render_qwen25(o, c);
        break;
    case MEMFIT_CHAT_LLAMA31:
        render_llama31(o, c);
        break;
    default:
        render_chatml(o, c);
        break;
    }
}

/* Parses len bytes of JSON (any value); *out NULL for text that is not JSON. E_NOMEM. */
static enum memfit_status parse_json(const char *text, size_t len, json_t **out)
{
    mf_json_init();
    mf_json_clear_alloc_failure();
    json_error_t err;
    *out = json_loadb(text, len, JSON_DECODE_ANY, &err);
    return !*out && mf_json_alloc_failed() ? MEMFIT_E_NOMEM : MEMFIT_OK;
}

/* The tools array and each call's arguments, parsed; E_INVALID, E_NOMEM. */
static enum memfit_status parse_tools(struct chat *c, const char *tools_json, size_t *n_args)
{
    enum memfit_status st = MEMFIT_OK;
    if (tools_json) {
        if ((st = parse_json(tools_json, strlen(tools_json), &c->tools)) != MEMFIT_OK)
            return st;
        if (!json_is_array(c->tools))
            return memfit_fail(MEMFIT_E_INVALID, "chat: the tools are not a JSON array");
        if (json_array_size(c->tools) == 0) {
            json_decref(c->tools);
            c->tools = NULL;
        }
        if (c->tools && !memfit_chat_template_has_tools(c->tmpl))
            return memfit_fail(MEMFIT_E_INVALID, "chat: template %s does not take tools",
                               memfit_chat_template_name(c->tmpl));
    }
    for (size_t i = 0; i < c->n; i++)
        *n_args += c->m[i].n_tool_calls;
    if (*n_args == 0)
        return MEMFIT_OK;
    c->args = memfit_calloc_in(MEMFIT_ALLOC_MODEL, *n_args, sizeof(*c->args));
    if (!c->args)
        return MEMFIT_E_NOMEM;
    for (size_t i = 0, k = 0; i < c->n && st == MEMFIT_OK; i++)
        for (size_t j = 0; j < c->m[i].n_tool_calls && st == MEMFIT_OK; j++) {
            const char *a = c->m[i].tool_calls[j].arguments;
            st = parse_json(a, strlen(a), &c->args[k++]);
        }
    return st;
}

static void chat_free(struct chat *c, size_t n_args, int *role_ids)
{
    for (size_t k = 0; c->args && k < n_args; k++)
        json_decref(c->args[k]);
    memfit_free(c->args);
    json_decref(c->tools);
    memfit_free(role_ids);
}

enum memfit_status memfit_chat_render_tools(enum memfit_chat_template tmpl,
                                            const struct memfit_chat_message *messages,
                                            size_t n_messages, const char *tools_json,
                                            bool add_generation_prompt, char **out)
{
    if (!out || (n_messages && !messages))
        return memfit_fail(MEMFIT_E_MISUSE, "chat: NULL argument");
    if (tmpl != MEMFIT_CHAT_CHATML && tmpl != MEMFIT_CHAT_LLAMA2 && tmpl != MEMFIT_CHAT_LLAMA3 &&
        tmpl != MEMFIT_CHAT_QWEN25 && tmpl != MEMFIT_CHAT_LLAMA31)
        return memfit_fail(MEMFIT_E_INVALID, "chat: unknown template %d", (int)tmpl);
    int *role_ids = NULL;
    if (n_messages) {
        role_ids = memfit_calloc_in(MEMFIT_ALLOC_MODEL, n_messages, sizeof(int));
        if (!role_ids)
            return MEMFIT_E_NOMEM;
    }
    struct chat c = {tmpl, messages, n_messages, role_ids, add_generation_prompt, NULL, NULL};
    size_t n_args = 0;
    enum memfit_status st = check_messages(tmpl, messages, n_messages, role_ids);
    if (st == MEMFIT_OK && tmpl == MEMFIT_CHAT_LLAMA2)
        st = check_llama2(n_messages, role_ids);
    if (st == MEMFIT_OK)
        st = parse_tools(&c, tools_json, &n_args);
    if (st == MEMFIT_OK && tmpl == MEMFIT_CHAT_LLAMA31)
        st = check_llama31(&c);
    struct out o = {NULL, 0, false};
    if (st == MEMFIT_OK) {
        render(&o, &c);
        if (o.overflow || o.len == SIZE_MAX)
            st = memfit_fail(MEMFIT_E_RANGE, "chat: the prompt of %zu messages overflows memory",
                             n_messages);
    }
    if (st == MEMFIT_OK && !(o.buf = memfit_malloc_in(MEMFIT_ALLOC_MODEL, o.len + 1)))
        st = MEMFIT_E_NOMEM;
    if (st != MEMFIT_OK) {
        chat_free(&c, n_args, role_ids);
        return st;
    }
    size_t measured = o.len;
    o.len = 0;
    render(&o, &c);
    o.buf[measured] = '\0';
    chat_free(&c, n_args, role_ids);
    *out = o.buf;
    return MEMFIT_OK;
}

enum memfit_status memfit_chat_render(enum memfit_chat_template tmpl,
                                      const struct memfit_chat_message *messages, size_t n_messages,
                                      bool add_generation_prompt, char **out)
{
    return memfit_chat_render_tools(tmpl, messages, n_messages, NULL, add_generation_prompt, out);
}

/* ---- tool calls in generated text --------------------------------------- */

void memfit_chat_tool_calls_free(struct memfit_chat_tool_calls *calls)
{
    if (!calls)
        return;
    for (size_t i = 0; i < calls->n_calls; i++) {
        memfit_free((char *)calls->calls[i].name);
        memfit_free((char *)calls->calls[i].arguments);
    }
    memfit_free(calls->calls);
    memfit_free(calls->content);
    memset(calls, 0, sizeof(*calls));
}

/* Bytes of s[0..n) after Python whitespace is skipped / before trailing whitespace. */
static const char *skip_space(const char *s, const char *end)
{
    return s + space_prefix(s, (size_t)(end - s));
}

static const char *find(const char *s, const char *end, const char *needle)
{
    size_t k = strlen(needle);
    for (; (size_t)(end - s) >= k; s++)
        if (memcmp(s, needle, k) == 0)
            return s;
    return NULL;
}

/*
 * The JSON object at [*at, end) as a call {"name": string, args_key: object}
 * (args_key, or "arguments" as well for LLaMA's "parameters"); *at moves past
 * it. false with *nomem for no memory, plain false for no call.
 */
static bool take_call(const char **at, const char *end, const char *args_key,
                      struct memfit_chat_tool_call *call, bool *nomem)
{
    mf_json_init();
    mf_json_clear_alloc_failure();
    json_error_t err;
    json_t *obj = json_loadb(*at, (size_t)(end - *at), JSON_DISABLE_EOF_CHECK, &err);
    if (!obj) {
        *nomem = mf_json_alloc_failed();
        return false;
    }
    json_t *name = json_object_get(obj, "name");
    json_t *args = json_object_get(obj, args_key);
    if (!args)
        args = json_object_get(obj, "arguments");
    bool ok = json_is_object(obj) && json_is_string(name) && json_string_length(name) > 0 &&
              strlen(json_string_value(name)) == json_string_length(name) && json_is_object(args);
    if (ok) {
        char *a = json_dumps(args, JSON_COMPACT);
        char *nm = memfit_strdup(json_string_value(name));
        if (!a || !nm) {
            memfit_free(a);
            memfit_free(nm);
            *nomem = true;
            ok = false;
        } else {
            *call = (struct memfit_chat_tool_call){NULL, nm, a};
            *at += err.position;
        }
    }
    json_decref(obj);
    return ok;
}

/* Appends a call to out (grown by one). */
static bool add_call(struct memfit_chat_tool_calls *out, const struct memfit_chat_tool_call *call)
{
    struct memfit_chat_tool_call *grown =
        memfit_realloc(out->calls, (out->n_calls + 1) * sizeof(*grown));
    if (!grown)
        return false;
    out->calls = grown;
    out->calls[out->n_calls++] = *call;
    return true;
}

/* Qwen2.5: <tool_call> JSON </tool_call>, repeated; the text around is content. */
static bool parse_qwen_calls(const char *text, const char *end, struct memfit_chat_tool_calls *out,
                             struct out *content, bool *nomem)
{
    static const char open[] = "<tool_call>", close[] = "</tool_call>";
    const char *at = text, *tag;
    while ((tag = find(at, end, open))) {
        put_n(content, at, (size_t)(tag - at));
        const char *p = skip_space(tag + strlen(open), end);
        struct memfit_chat_tool_call call;
        if (!take_call(&p, end, "arguments", &call, nomem))
            return false;
        if (!add_call(out, &call)) {
            memfit_free((char *)call.name);
            memfit_free((char *)call.arguments);
            *nomem = true;
            return false;
        }
        p = skip_space(p, end);
        if (p < end) { /* the closing tag may be missing only at the very end */
            if ((size_t)(end - p) < strlen(close) || memcmp(p, close, strlen(close)) != 0)
                return false;
            p += strlen(close);
        }
        at = p;
    }
    put_n(content, at, (size_t)(end - at));
    return out->n_calls > 0;
}

/* LLaMA 3.1: the whole answer is one {"name", "parameters"} object. */
static bool parse_llama_call(const char *text, const char *end, struct memfit_chat_tool_calls *out,
                             bool *nomem)
{
    static const char tag[] = "<|python_tag|>";
    const char *p = skip_space(text, end);
    if ((size_t)(end - p) >= strlen(tag) && memcmp(p, tag, strlen(tag)) == 0)
        p = skip_space(p + strlen(tag), end);
    struct memfit_chat_tool_call call;
    if (p == end || *p != '{' || !take_call(&p, end, "parameters", &call, nomem))
        return false;
    if (skip_space(p, end) != end || !add_call(out, &call)) {
        *nomem = skip_space(p, end) == end;
        memfit_free((char *)call.name);
        memfit_free((char *)call.arguments);
        return false;
    }
    return true;
}

/* content: the text trimmed, NULL when nothing is left. */
static enum memfit_status set_content(struct memfit_chat_tool_calls *out, const char *s, size_t n,
                                      bool trim)
{
    size_t from = trim ? space_prefix(s, n) : 0;
    size_t to = trim ? without_space_suffix(s, n) : n;
    if (to <= from)
        return MEMFIT_OK;
    out->content = memfit_malloc_in(MEMFIT_ALLOC_MODEL, to - from + 1);
    if (!out->content)
        return MEMFIT_E_NOMEM;
    memcpy(out->content, s + from, to - from);
    out->content[to - from] = '\0';
    return MEMFIT_OK;
}

enum memfit_status memfit_chat_parse_tool_calls(enum memfit_chat_template tmpl, const char *text,
                                                size_t len, struct memfit_chat_tool_calls *out)
{
    if (!out || (len && !text))
        return memfit_fail(MEMFIT_E_MISUSE, "chat: NULL argument");
    if (!memfit_chat_template_has_tools(tmpl))
        return memfit_fail(MEMFIT_E_INVALID, "chat: template %s has no tool calls",
                           memfit_chat_template_name(tmpl));
    struct memfit_chat_tool_calls r = {0};
    const char *end = text + len;
    bool nomem = false, found;
    struct out content = {NULL, 0, false};
    char *around = NULL;
    if (tmpl == MEMFIT_CHAT_QWEN25) {
        /* measure the text around the calls, then copy it */
        found = parse_qwen_calls(text, end, &r, &content, &nomem);
        memfit_chat_tool_calls_free(&r);
        if (found && !nomem) {
            content.buf = around = memfit_malloc_in(MEMFIT_ALLOC_MODEL, content.len + 1);
            nomem = !around;
            content.len = 0;
            if (around)
                found = parse_qwen_calls(text, end, &r, &content, &nomem);
        }
    } else {
        found = parse_llama_call(text, end, &r, &nomem);
    }
    enum memfit_status st = nomem ? MEMFIT_E_NOMEM : MEMFIT_OK;
    if (st == MEMFIT_OK && !found) { /* no call: the text as it is */
        memfit_chat_tool_calls_free(&r);
        st = set_content(&r, text, len, false);
    } else if (st == MEMFIT_OK && around) {
        st = set_content(&r, around, content.len, true);
    }
    memfit_free(around);
    if (st != MEMFIT_OK) {
        memfit_chat_tool_calls_free(&r);
        return st;
    }
    *out = r;
    return MEMFIT_OK;
}

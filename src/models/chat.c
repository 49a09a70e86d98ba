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
 * strip()/trim remove Python's whitespace (str.isspace: Unicode spaces and
 * the ASCII separators 0x1C-0x1F included), not just ASCII blanks.
 */
#include <string.h>

#include "core/alloc.h"
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
    }
    return "unknown";
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
        if (strstr(template_text, "<|start_header_id|>"))
            t = MEMFIT_CHAT_LLAMA3, known = true;
        else if (strstr(template_text, "<|im_start|>"))
            t = MEMFIT_CHAT_CHATML, known = true;
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

/* ---- the templates ------------------------------------------------------- */

static const char *const roles[] = {"system", "user", "assistant"};
enum { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT };

static enum memfit_status check_messages(const struct memfit_chat_message *m, size_t n,
                                         int *role_ids)
{
    for (size_t i = 0; i < n; i++) {
        if (!m[i].role || !m[i].content)
            return memfit_fail(MEMFIT_E_INVALID, "chat: message %zu: no %s", i + 1,
                               m[i].role ? "content" : "role");
        role_ids[i] = -1;
        for (int r = 0; r < 3; r++)
            if (strcmp(m[i].role, roles[r]) == 0)
                role_ids[i] = r;
        if (role_ids[i] < 0)
            return memfit_fail(MEMFIT_E_INVALID,
                               "chat: message %zu: role \"%.40s\" is not system, user or assistant",
                               i + 1, m[i].role);
    }
    return MEMFIT_OK;
}

static void render_chatml(struct out *o, const struct memfit_chat_message *m, size_t n,
                          const int *role_ids, bool gen)
{
    if (n > 0 && role_ids[0] != ROLE_SYSTEM)
        put(o, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n");
    for (size_t i = 0; i < n; i++) {
        put(o, "<|im_start|>");
        put(o, m[i].role);
        put(o, "\n");
        put(o, m[i].content);
        put(o, "<|im_end|>\n");
    }
    if (gen)
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

static void render_llama2(struct out *o, const struct memfit_chat_message *m, size_t n,
                          const int *role_ids)
{
    size_t first = n > 0 && role_ids[0] == ROLE_SYSTEM ? 1 : 0;
    for (size_t i = first; i < n; i++) {
        const char *pieces[4] = {m[i].content};
        size_t n_pieces = 1;
        if (i == first && first == 1) {
            pieces[0] = "<<SYS>>\n";
            pieces[1] = m[0].content;
            pieces[2] = "\n<</SYS>>\n\n";
            pieces[3] = m[i].content;
            n_pieces = 4;
        }
        put(o, role_ids[i] == ROLE_USER ? "<s>[INST] " : " ");
        put_stripped(o, pieces, n_pieces);
        put(o, role_ids[i] == ROLE_USER ? " [/INST]" : " </s>");
    }
}

static void render_llama3(struct out *o, const struct memfit_chat_message *m, size_t n, bool gen)
{
    for (size_t i = 0; i < n; i++) {
        if (i == 0)
            put(o, "<|begin_of_text|>");
        put(o, "<|start_header_id|>");
        put(o, m[i].role);
        put(o, "<|end_header_id|>\n\n");
        put_stripped(o, &m[i].content, 1);
        put(o, "<|eot_id|>");
    }
    if (gen)
        put(o, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

static void render(struct out *o, enum memfit_chat_template tmpl,
                   const struct memfit_chat_message *m, size_t n, const int *role_ids, bool gen)
{
    if (tmpl == MEMFIT_CHAT_LLAMA2)
        render_llama2(o, m, n, role_ids);
    else if (tmpl == MEMFIT_CHAT_LLAMA3)
        render_llama3(o, m, n, gen);
    else
        render_chatml(o, m, n, role_ids, gen);
}

enum memfit_status memfit_chat_render(enum memfit_chat_template tmpl,
                                      const struct memfit_chat_message *messages, size_t n_messages,
                                      bool add_generation_prompt, char **out)
{
    if (!out || (n_messages && !messages))
        return memfit_fail(MEMFIT_E_MISUSE, "chat: NULL argument");
    if (tmpl != MEMFIT_CHAT_CHATML && tmpl != MEMFIT_CHAT_LLAMA2 && tmpl != MEMFIT_CHAT_LLAMA3)
        return memfit_fail(MEMFIT_E_INVALID, "chat: unknown template %d", (int)tmpl);
    int *role_ids = NULL;
    if (n_messages) {
        role_ids = memfit_calloc_in(MEMFIT_ALLOC_MODEL, n_messages, sizeof(int));
        if (!role_ids)
            return MEMFIT_E_NOMEM;
    }
    enum memfit_status st = check_messages(messages, n_messages, role_ids);
    if (st == MEMFIT_OK && tmpl == MEMFIT_CHAT_LLAMA2)
        st = check_llama2(n_messages, role_ids);
    if (st != MEMFIT_OK) {
        memfit_free(role_ids);
        return st;
    }
    struct out o = {NULL, 0, false};
    render(&o, tmpl, messages, n_messages, role_ids, add_generation_prompt);
    if (o.overflow || o.len == SIZE_MAX) {
        memfit_free(role_ids);
        return memfit_fail(MEMFIT_E_RANGE, "chat: the prompt of %zu messages overflows memory",
                           n_messages);
    }
    o.buf = memfit_malloc_in(MEMFIT_ALLOC_MODEL, o.len + 1);
    if (!o.buf) {
        memfit_free(role_ids);
        return MEMFIT_E_NOMEM;
    }
    size_t measured = o.len;
    o.len = 0;
    render(&o, tmpl, messages, n_messages, role_ids, add_generation_prompt);
    o.buf[measured] = '\0';
    memfit_free(role_ids);
    *out = o.buf;
    return MEMFIT_OK;
}

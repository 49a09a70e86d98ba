/*
 * Hugging Face tokenizer.json (+ tokenizer_config.json) to the GGUF
 * tokenizer.ggml.* metadata, so a model assembled from safetensors carries a
 * tokenizer memfit_tokenizer_from_gguf() runs.
 *
 * Two shapes are recognised, the ones the GGUF side implements:
 *  - byte-level BPE: model BPE, pre-tokenizer ByteLevel (GPT-2's regex) or
 *    Sequence[Split(regex), ByteLevel]; the regex picks tokenizer.ggml.pre
 *    (qwen2, llama-bpe) by comparison with the known ones.
 *  - SentencePiece-style BPE: model BPE with byte_fallback (LLaMA 2), the
 *    space handled by the normalizer (Prepend + Replace U+2581) or a
 *    Metaspace pre-tokenizer. GGUF's "llama" model merges by score, not by
 *    merge list, so each merged token gets the score -rank of the first merge
 *    that makes it: best score first is then the merge order (the list was
 *    made from SentencePiece's scores in the first place). Tokens no merge
 *    makes get -1e9 so that merging never prefers them.
 * Added tokens become CONTROL (special) or USER_DEFINED, the model's unk
 * UNKNOWN, <0xXX> BYTE (SPM), holes in the id range UNUSED "[PAD<id>]".
 */
#include <stdio.h>
#include <string.h>

#include "core/json.h"
#include "memfit/models.h"
#include "models/tokenizer.h"

static const char HF_QWEN2[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
                               "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char HF_LLAMA3[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{"
    "1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char SPM_SPACE[] = "\xE2\x96\x81";

struct conv {
    const char *path; /* tokenizer.json, for messages */
    json_t *root, *config;
    bool spm;
    const char *pre;
    bool add_space_prefix;
    uint32_t n_vocab;
    const char **text; /* per id, borrowed from the JSON or from pads */
    size_t *text_len;
    int32_t *type;
    float *scores;
    char *pads; /* "[PAD<id>]" texts of holes, NUL-separated */
    int32_t bos, eos, unk, pad;
    bool add_bos, add_eos;
    json_t *model;
};

/* flags: JSON_DECODE_INT_AS_REAL for tokenizer_config.json, whose
 * model_max_length is often 1e30 written as an integer. */
static enum memfit_status load_json(const char *path, size_t flags, json_t **out)
{
    json_error_t err;
    mf_json_clear_alloc_failure();
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES | flags, &err);
    if (!root) {
        if (mf_json_alloc_failed())
            return MEMFIT_E_NOMEM;
        return memfit_fail(err.line < 0 ? MEMFIT_E_IO : MEMFIT_E_FORMAT, "%s: line %d: %s", path,
                           err.line, err.text);
    }
    if (mf_json_alloc_failed()) { /* a value jansson could not allocate went missing */
        json_decref(root);
        return memfit_fail(MEMFIT_E_NOMEM, "%s: out of memory reading the JSON", path);
    }
    if (!json_is_object(root)) {
        json_decref(root);
        return memfit_fail(MEMFIT_E_FORMAT, "%s: not a JSON object", path);
    }
    *out = root;
    return MEMFIT_OK;
}

static const char *type_of(json_t *obj)
{
    json_t *t = json_object_get(obj, "type");
    return json_is_string(t) ? json_string_value(t) : "";
}

/* A byte-level pre-tokenizer: the tokenizer.ggml.pre it means, or NULL. */
static const char *byte_level_pre(json_t *pt)
{
    if (strcmp(type_of(pt), "ByteLevel") == 0) {
        json_t *ur = json_object_get(pt, "use_regex");
        if (json_is_false(ur) || json_is_true(json_object_get(pt, "add_prefix_space")))
            return NULL;
        return "gpt2";
    }
    if (strcmp(type_of(pt), "Sequence") != 0)
        return NULL;
    json_t *list = json_object_get(pt, "pretokenizers");
    if (!json_is_array(list) || json_array_size(list) != 2)
        return NULL;
    json_t *split = json_array_get(list, 0), *bl = json_array_get(list, 1);
    if (strcmp(type_of(split), "Split") != 0 || strcmp(type_of(bl), "ByteLevel") != 0 ||
        json_is_true(json_object_get(bl, "use_regex")) ||
        json_is_true(json_object_get(bl, "add_prefix_space")) ||
        json_is_true(json_object_get(split, "invert")))
        return NULL;
    json_t *beh = json_object_get(split, "behavior");
    if (!json_is_string(beh) || strcmp(json_string_value(beh), "Isolated") != 0)
        return NULL;
    const char *re = json_string_value(json_object_get(json_object_get(split, "pattern"), "Regex"));
    if (!re)
        return NULL;
    if (strcmp(re, HF_QWEN2) == 0)
        return "qwen2";
    if (strcmp(re, HF_LLAMA3) == 0)
        return "llama-bpe";
    return NULL;
}

/* How an SPM tokenizer.json handles spaces; false when memfit cannot run it. */
static bool spm_spaces(json_t *root, bool *prefix)
{
    json_t *norm = json_object_get(root, "normalizer");
    json_t *pt = json_object_get(root, "pre_tokenizer");
    if (json_is_object(pt)) { /* Metaspace: spaces become U+2581 in the pre-tokenizer */
        if (strcmp(type_of(pt), "Metaspace") != 0 || (norm && !json_is_null(norm)))
            return false;
        const char *scheme = json_string_value(json_object_get(pt, "prepend_scheme"));
        *prefix = scheme ? strcmp(scheme, "never") != 0
                         : !json_is_false(json_object_get(pt, "add_prefix_space"));
        return true;
    }
    if (!json_is_object(norm))
        return false;
    json_t *list = json_object_get(norm, "normalizers");
    if (strcmp(type_of(norm), "Sequence") != 0 || !json_is_array(list))
        return false;
    bool replace = false;
    *prefix = false;
    size_t i;
    json_t *n;
    json_array_foreach(list, i, n)
    {
        if (strcmp(type_of(n), "Prepend") == 0) {
            const char *p = json_string_value(json_object_get(n, "prepend"));
            if (!p || strcmp(p, SPM_SPACE) != 0 || i != 0)
                return false;
            *prefix = true;
        } else if (strcmp(type_of(n), "Replace") == 0) {
            const char *from =
                json_string_value(json_object_get(json_object_get(n, "pattern"), "String"));
            const char *to = json_string_value(json_object_get(n, "content"));
            if (!from || !to || strcmp(from, " ") != 0 || strcmp(to, SPM_SPACE) != 0)
                return false;
            replace = true;
        } else {
            return false;
        }
    }
    return replace;
}

static bool is_byte_token(const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    return len == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>' && strchr(hex, s[3]) &&
           strchr(hex, s[4]) && s[3] && s[4];
}

/* An id for a config entry ("<s>" or {"content": "<s>"}), -1 when null/absent. */
static int32_t config_token(const struct conv *c, const char *key)
{
    json_t *v = c->config ? json_object_get(c->config, key) : NULL;
    if (json_is_object(v))
        v = json_object_get(v, "content");
    if (!json_is_string(v))
        return -1;
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    for (uint32_t id = 0; id < c->n_vocab; id++)
        if (c->text_len[id] == len && memcmp(c->text[id], s, len) == 0)
            return (int32_t)id;
    return -1;
}

static enum memfit_status read_vocab(struct conv *c)
{
    json_t *vocab = json_object_get(c->model, "vocab");
    json_t *added = json_object_get(c->root, "added_tokens");
    if (!json_is_object(vocab) || json_object_size(vocab) == 0)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: model.vocab: missing or empty", c->path);
    if (added && !json_is_array(added))
        return memfit_fail(MEMFIT_E_FORMAT, "%s: added_tokens: not an array", c->path);
    const char *key;
    json_t *v;
    json_int_t max_id = -1;
    json_object_foreach(vocab, key, v)
    {
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) >= INT32_MAX / 2)
            return memfit_fail(MEMFIT_E_FORMAT, "%s: model.vocab[\"%s\"]: not a token id", c->path,
                               key);
        if (json_integer_value(v) > max_id)
            max_id = json_integer_value(v);
    }
    size_t i;
    json_array_foreach(added, i, v)
    {
        json_t *id = json_object_get(v, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0 ||
            json_integer_value(id) >= INT32_MAX / 2 ||
            !json_is_string(json_object_get(v, "content")))
            return memfit_fail(MEMFIT_E_FORMAT, "%s: added_tokens[%zu]: no id or content", c->path,
                               i);
        if (json_integer_value(id) > max_id)
            max_id = json_integer_value(id);
    }
    c->n_vocab = (uint32_t)max_id + 1;
    c->text = memfit_calloc(c->n_vocab, sizeof(*c->text));
    c->text_len = memfit_calloc(c->n_vocab, sizeof(*c->text_len));
    c->type = memfit_calloc(c->n_vocab, sizeof(*c->type));
    if (!c->text || !c->text_len || !c->type)
        return MEMFIT_E_NOMEM;
    json_object_foreach(vocab, key, v)
    {
        uint32_t id = (uint32_t)json_integer_value(v);
        if (c->text[id])
            return memfit_fail(MEMFIT_E_FORMAT, "%s: model.vocab: id %u given twice", c->path, id);
        c->text[id] = key;
        c->text_len[id] = strlen(key);
        c->type[id] = c->spm && is_byte_token(key, strlen(key)) ? MF_TOK_BYTE : MF_TOK_NORMAL;
    }
    json_array_foreach(added, i, v)
    {
        uint32_t id = (uint32_t)json_integer_value(json_object_get(v, "id"));
        json_t *content = json_object_get(v, "content");
        c->text[id] = json_string_value(content);
        c->text_len[id] = json_string_length(content);
        c->type[id] =
            json_is_true(json_object_get(v, "special")) ? MF_TOK_CONTROL : MF_TOK_USER_DEFINED;
    }
    size_t holes = 0;
    for (uint32_t id = 0; id < c->n_vocab; id++)
        holes += c->text[id] == NULL;
    if (holes) {
        c->pads = memfit_malloc(holes * 24);
        if (!c->pads)
            return MEMFIT_E_NOMEM;
        char *p = c->pads;
        for (uint32_t id = 0; id < c->n_vocab; id++) {
            if (c->text[id])
                continue;
            int n = snprintf(p, 24, "[PAD%u]", id);
            c->text[id] = p;
            c->text_len[id] = (size_t)n;
            c->type[id] = MF_TOK_UNUSED;
            p += n + 1;
        }
    }
    json_t *unk = json_object_get(c->model, "unk_token");
    c->unk = -1;
    if (json_is_string(unk)) {
        json_t *id = json_object_get(vocab, json_string_value(unk));
        if (json_is_integer(id)) {
            c->unk = (int32_t)json_integer_value(id);
            c->type[c->unk] = MF_TOK_UNKNOWN;
        }
    }
    return MEMFIT_OK;
}

/* merges[i] as its two halves (either "a b" or ["a", "b"]). */
static bool merge_parts(json_t *m, const char **a, size_t *la, const char **b, size_t *lb)
{
    if (json_is_string(m)) {
        const char *s = json_string_value(m);
        size_t len = json_string_length(m);
        const char *sp = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
        if (!sp)
            return false;
        *a = s;
        *la = (size_t)(sp - s);
        *b = sp + 1;
        *lb = len - *la - 1;
        return true;
    }
    if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
        json_is_string(json_array_get(m, 1))) {
        *a = json_string_value(json_array_get(m, 0));
        *la = json_string_length(json_array_get(m, 0));
        *b = json_string_value(json_array_get(m, 1));
        *lb = json_string_length(json_array_get(m, 1));
        return true;
    }
    return false;
}

static enum memfit_status set_str_array(memfit_writer *w, const char *key, size_t n,
                                        const char *const *s, const size_t *len)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += 8 + len[i];
    uint8_t *raw = memfit_malloc(total ? total : 1), *p = raw;
    if (!raw)
        return MEMFIT_E_NOMEM;
    for (size_t i = 0; i < n; i++) {
        uint64_t l = len[i];
        memcpy(p, &l, 8);
        memcpy(p + 8, s[i], len[i]);
        p += 8 + len[i];
    }
    struct memfit_meta_value v;
    memset(&v, 0, sizeof(v));
    v.type = MEMFIT_META_ARRAY;
    v.v.array.elem_type = MEMFIT_META_STRING;
    v.v.array.count = n;
    v.v.array.raw = raw;
    v.v.array.raw_bytes = total;
    enum memfit_status st = memfit_writer_set_meta(w, key, &v);
    memfit_free(raw);
    return st;
}

static enum memfit_status set_scalar(memfit_writer *w, const char *key, enum memfit_meta_type t,
                                     uint64_t u)
{
    struct memfit_meta_value v;
    memset(&v, 0, sizeof(v));
    v.type = t;
    v.v.u = u;
    return memfit_writer_set_meta(w, key, &v);
}

static enum memfit_status set_fixed_array(memfit_writer *w, const char *key,
                                          enum memfit_meta_type t, size_t n, const void *data)
{
    struct memfit_meta_value v;
    memset(&v, 0, sizeof(v));
    v.type = MEMFIT_META_ARRAY;
    v.v.array.elem_type = t;
    v.v.array.count = n;
    v.v.array.raw = data;
    v.v.array.raw_bytes = n * 4;
    return memfit_writer_set_meta(w, key, &v);
}

/* Merges as "a b" strings (BPE), or the scores they imply (SPM). */
static enum memfit_status write_merges(struct conv *c, memfit_writer *w)
{
    json_t *merges = json_object_get(c->model, "merges");
    json_t *vocab = json_object_get(c->model, "vocab");
    if (!json_is_array(merges))
        return memfit_fail(MEMFIT_E_FORMAT, "%s: model.merges: missing", c->path);
    size_t n = json_array_size(merges), i;
    const char **s = memfit_calloc(n ? n : 1, sizeof(*s));
    size_t *len = memfit_calloc(n ? n : 1, sizeof(*len));
    char *buf = NULL;
    size_t cap = 0;
    enum memfit_status st = MEMFIT_OK;
    if (!s || !len) {
        st = MEMFIT_E_NOMEM;
        goto done;
    }
    if (c->spm) {
        c->scores = memfit_malloc(c->n_vocab * sizeof(float));
        if (!c->scores) {
            st = MEMFIT_E_NOMEM;
            goto done;
        }
        for (uint32_t id = 0; id < c->n_vocab; id++)
            c->scores[id] = c->text_len[id] > 0 && c->type[id] == MF_TOK_NORMAL ? -1e9f : 0.0f;
    }
    json_t *m;
    json_array_foreach(merges, i, m)
    {
        const char *a, *b;
        size_t la, lb;
        if (!merge_parts(m, &a, &la, &b, &lb)) {
            st = memfit_fail(MEMFIT_E_FORMAT, "%s: model.merges[%zu]: not \"a b\" nor [a, b]",
                             c->path, i);
            goto done;
        }
        if (la + lb + 2 > cap) {
            cap = (la + lb + 2) * 2;
            char *nb = memfit_realloc(buf, cap);
            if (!nb) {
                st = MEMFIT_E_NOMEM;
                goto done;
            }
            buf = nb;
        }
        memcpy(buf, a, la);
        buf[la] = ' ';
        memcpy(buf + la + 1, b, lb);
        json_t *ida = json_object_getn(vocab, buf, la);
        json_t *idb = json_object_getn(vocab, buf + la + 1, lb);
        memmove(buf + la, buf + la + 1, lb);
        json_t *idr = json_object_getn(vocab, buf, la + lb);
        if (!ida || !idb || !idr) {
            st = memfit_fail(MEMFIT_E_FORMAT,
                             "%s: model.merges[%zu]: \"%.*s %.*s\" names a "
                             "token not in model.vocab",
                             c->path, i, (int)la, a, (int)lb, b);
            goto done;
        }
        if (c->spm) {
            uint32_t id = (uint32_t)json_integer_value(idr);
            if (c->scores[id] == -1e9f)
                c->scores[id] = -(float)i;
        } else if (json_is_string(m)) {
            s[i] = json_string_value(m);
            len[i] = json_string_length(m);
        } else {
            /* An [a, b] pair: the "a b" text lives in the pair's own JSON
             * (a new string value kept by the array) so it outlives buf. */
            char *joined = memfit_malloc(la + lb + 2);
            if (!joined) {
                st = MEMFIT_E_NOMEM;
                goto done;
            }
            memcpy(joined, a, la);
            joined[la] = ' ';
            memcpy(joined + la + 1, b, lb);
            json_t *js = json_stringn_nocheck(joined, la + lb + 1);
            memfit_free(joined);
            if (!js || json_array_set_new(merges, i, js) != 0) {
                st = MEMFIT_E_NOMEM;
                goto done;
            }
            s[i] = json_string_value(json_array_get(merges, i));
            len[i] = la + lb + 1;
        }
    }
    if (c->spm)
        st = set_fixed_array(w, "tokenizer.ggml.scores", MEMFIT_META_F32, c->n_vocab, c->scores);
    else
        st = set_str_array(w, "tokenizer.ggml.merges", n, s, len);
done:
    memfit_free(s);
    memfit_free(len);
    memfit_free(buf);
    return st;
}

/* add_bos/add_eos from the config, else from the post-processor's template. */
static void read_specials(struct conv *c)
{
    c->bos = config_token(c, "bos_token");
    c->eos = config_token(c, "eos_token");
    c->pad = config_token(c, "pad_token");
    int32_t unk = config_token(c, "unk_token");
    if (unk >= 0)
        c->unk = unk;
    json_t *post = json_object_get(c->root, "post_processor");
    json_t *single = json_object_get(post, "single");
    bool tmpl_bos = false, tmpl_eos = false;
    if (strcmp(type_of(post), "TemplateProcessing") == 0 && json_is_array(single) &&
        json_array_size(single) > 0) {
        json_t *first = json_object_get(json_array_get(single, 0), "SpecialToken");
        json_t *last =
            json_object_get(json_array_get(single, json_array_size(single) - 1), "SpecialToken");
        tmpl_bos = first != NULL;
        tmpl_eos = last != NULL && json_array_size(single) > 1;
    }
    json_t *ab = c->config ? json_object_get(c->config, "add_bos_token") : NULL;
    json_t *ae = c->config ? json_object_get(c->config, "add_eos_token") : NULL;
    c->add_bos = json_is_boolean(ab) ? json_is_true(ab) : tmpl_bos;
    c->add_eos = json_is_boolean(ae) ? json_is_true(ae) : tmpl_eos;
}

static const char *chat_template(const struct conv *c)
{
    json_t *t = c->config ? json_object_get(c->config, "chat_template") : NULL;
    if (json_is_string(t))
        return json_string_value(t);
    if (json_is_array(t)) { /* [{"name": "default", "template": ...}, ...] */
        size_t i;
        json_t *e;
        const char *first = NULL;
        json_array_foreach(t, i, e)
        {
            const char *name = json_string_value(json_object_get(e, "name"));
            const char *tmpl = json_string_value(json_object_get(e, "template"));
            if (tmpl && !first)
                first = tmpl;
            if (tmpl && name && strcmp(name, "default") == 0)
                return tmpl;
        }
        return first;
    }
    return NULL;
}

static enum memfit_status convert(struct conv *c, memfit_writer *w)
{
    c->model = json_object_get(c->root, "model");
    if (!json_is_object(c->model))
        return memfit_fail(MEMFIT_E_FORMAT, "%s: model: missing", c->path);
    const char *mt = type_of(c->model);
    if (strcmp(mt, "BPE") != 0 && !(mt[0] == 0 && json_object_get(c->model, "merges")))
        return memfit_fail(MEMFIT_E_UNSUPPORTED,
                           "%s: model.type \"%s\": memfit runs BPE tokenizers only", c->path, mt);
    c->spm = json_is_true(json_object_get(c->model, "byte_fallback"));
    if (c->spm) {
        if (!spm_spaces(c->root, &c->add_space_prefix))
            return memfit_fail(MEMFIT_E_UNSUPPORTED,
                               "%s: normalizer/pre_tokenizer: a byte-fallback BPE memfit runs "
                               "maps spaces to U+2581 (Prepend+Replace or Metaspace)",
                               c->path);
    } else {
        json_t *norm = json_object_get(c->root, "normalizer");
        if (norm && !json_is_null(norm) && strcmp(type_of(norm), "NFC") != 0)
            return memfit_fail(MEMFIT_E_UNSUPPORTED, "%s: normalizer \"%s\" is not supported",
                               c->path, type_of(norm));
        c->pre = byte_level_pre(json_object_get(c->root, "pre_tokenizer"));
        if (!c->pre)
            return memfit_fail(MEMFIT_E_UNSUPPORTED,
                               "%s: pre_tokenizer: not one memfit runs (ByteLevel, or a "
                               "Split with the qwen2 or llama3 regex then ByteLevel)",
                               c->path);
        if (json_is_true(json_object_get(c->model, "ignore_merges")) !=
            (strcmp(c->pre, "llama-bpe") == 0))
            memfit_log(MEMFIT_LOG_WARN,
                       "%s: model.ignore_merges does not match what GGUF's pre \"%s\" implies",
                       c->path, c->pre);
    }
    enum memfit_status st = read_vocab(c);
    if (st != MEMFIT_OK)
        return st;
    read_specials(c);
    const char *tmpl = chat_template(c);
    if ((st = memfit_writer_set_meta_string(w, "tokenizer.ggml.model",
                                            c->spm ? "llama" : "gpt2")) != MEMFIT_OK ||
        (!c->spm &&
         (st = memfit_writer_set_meta_string(w, "tokenizer.ggml.pre", c->pre)) != MEMFIT_OK) ||
        (st = set_str_array(w, "tokenizer.ggml.tokens", c->n_vocab, c->text, c->text_len)) !=
            MEMFIT_OK ||
        (st = set_fixed_array(w, "tokenizer.ggml.token_type", MEMFIT_META_I32, c->n_vocab,
                              c->type)) != MEMFIT_OK ||
        (st = write_merges(c, w)) != MEMFIT_OK)
        return st;
    const struct {
        const char *key;
        int32_t id;
    } ids[] = {{"tokenizer.ggml.bos_token_id", c->bos},
               {"tokenizer.ggml.eos_token_id", c->eos},
               {"tokenizer.ggml.unknown_token_id", c->unk},
               {"tokenizer.ggml.padding_token_id", c->pad}};
    for (size_t i = 0; i < 4; i++)
        if (ids[i].id >= 0 &&
            (st = set_scalar(w, ids[i].key, MEMFIT_META_U32, (uint64_t)ids[i].id)) != MEMFIT_OK)
            return st;
    if ((st = set_scalar(w, "tokenizer.ggml.add_bos_token", MEMFIT_META_BOOL, c->add_bos)) !=
            MEMFIT_OK ||
        (st = set_scalar(w, "tokenizer.ggml.add_eos_token", MEMFIT_META_BOOL, c->add_eos)) !=
            MEMFIT_OK ||
        (c->spm && (st = set_scalar(w, "tokenizer.ggml.add_space_prefix", MEMFIT_META_BOOL,
                                    c->add_space_prefix)) != MEMFIT_OK) ||
        (tmpl &&
         (st = memfit_writer_set_meta_string(w, "tokenizer.chat_template", tmpl)) != MEMFIT_OK))
        return st;
    return MEMFIT_OK;
}

enum memfit_status memfit_tokenizer_json_to_gguf(const char *tokenizer_json,
                                                 const char *tokenizer_config_json,
                                                 memfit_writer *w)
{
    if (!tokenizer_json || !w)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_tokenizer_json_to_gguf: NULL argument");
    struct conv c;
    memset(&c, 0, sizeof(c));
    c.path = tokenizer_json;
    enum memfit_status st = load_json(tokenizer_json, 0, &c.root);
    if (st == MEMFIT_OK && tokenizer_config_json)
        st = load_json(tokenizer_config_json, JSON_DECODE_INT_AS_REAL, &c.config);
    if (st == MEMFIT_OK)
        st = convert(&c, w);
    memfit_free(c.text);
    memfit_free(c.text_len);
    memfit_free(c.type);
    memfit_free(c.scores);
    memfit_free(c.pads);
    if (c.root)
        json_decref(c.root);
    if (c.config)
        json_decref(c.config);
    return st;
}

/*
 * Small tokenizer vocabularies written as GGUF metadata with memfit_writer,
 * shared by the tokenizer unit tests, fuzz target and bench (header-only,
 * no cmocka: builders return a status).
 *
 * tokv_bpe() is a byte-level BPE: the 256 one-byte tokens in
 * bytes_to_unicode form, merges making "hello" and " wor", and the special
 * tokens <|im_start|>, <|im_end|> (CONTROL) and <tool> (USER_DEFINED).
 * tokv_spm() is a SentencePiece BPE: <unk>, <s>, </s>, the 256 <0xXX> byte
 * tokens, letters, and scored pieces that merge "hello" into "▁hello".
 */
#ifndef MF_TOKENIZER_TEST_H
#define MF_TOKENIZER_TEST_H

#include <stdio.h>
#include <string.h>

#include "memfit/format.h"
#include "memfit/models.h"
#include "models/tokenizer.h"

#define TOKV_MAX 512

struct tokv {
    char text[TOKV_MAX][32];
    int32_t type[TOKV_MAX];
    float score[TOKV_MAX];
    size_t n;
    char merges[64][40];
    size_t n_merges;
};

static inline int32_t tokv_add(struct tokv *v, const char *text, int32_t type, float score)
{
    size_t len = strlen(text) < sizeof(v->text[0]) ? strlen(text) : sizeof(v->text[0]) - 1;
    memcpy(v->text[v->n], text, len);
    v->text[v->n][len] = 0;
    v->type[v->n] = type;
    v->score[v->n] = score;
    return (int32_t)v->n++;
}

static inline int32_t tokv_find(const struct tokv *v, const char *text)
{
    for (size_t i = 0; i < v->n; i++)
        if (strcmp(v->text[i], text) == 0)
            return (int32_t)i;
    return -1;
}

/* A merge "a b": adds the merged token too. */
static inline void tokv_merge(struct tokv *v, const char *a, const char *b)
{
    /* the test vocabularies' texts are a few bytes: both fit */
    char *m = v->merges[v->n_merges++];
    size_t la = strlen(a), lb = strlen(b);
    memcpy(m, a, la);
    m[la] = ' ';
    memcpy(m + la + 1, b, lb);
    m[la + 1 + lb] = 0;
    char joined[64];
    memcpy(joined, a, la);
    memcpy(joined + la, b, lb);
    joined[la + lb] = 0;
    if (tokv_find(v, joined) < 0)
        tokv_add(v, joined, MF_TOK_NORMAL, 0);
}

static inline void tokv_bpe(struct tokv *v)
{
    memset(v, 0, sizeof(*v));
    for (int b = 0; b < 256; b++) {
        char s[8];
        s[mf_tok_put_utf8(s, mf_tok_byte_cp((uint8_t)b))] = 0;
        tokv_add(v, s, MF_TOK_NORMAL, 0);
    }
    tokv_merge(v, "h", "e");
    tokv_merge(v, "l", "l");
    tokv_merge(v, "he", "ll");
    tokv_merge(v, "hell", "o");
    tokv_merge(v, "\xC4\xA0", "w"); /* Ġ is the space */
    tokv_merge(v, "o", "r");
    tokv_merge(v, "\xC4\xA0w", "or");
    tokv_add(v, "<|im_start|>", MF_TOK_CONTROL, 0);
    tokv_add(v, "<|im_end|>", MF_TOK_CONTROL, 0);
    tokv_add(v, "<tool>", MF_TOK_USER_DEFINED, 0);
}

static inline void tokv_spm(struct tokv *v)
{
    memset(v, 0, sizeof(*v));
    tokv_add(v, "<unk>", MF_TOK_UNKNOWN, 0);
    tokv_add(v, "<s>", MF_TOK_CONTROL, 0);
    tokv_add(v, "</s>", MF_TOK_CONTROL, 0);
    for (int b = 0; b < 256; b++) {
        char s[8];
        snprintf(s, sizeof(s), "<0x%02X>", b);
        tokv_add(v, s, MF_TOK_BYTE, 0);
    }
    const char *chars[] = {"\xE2\x96\x81", "h", "e", "l", "o", "w", "r", "d", "a", "b", "c"};
    for (size_t i = 0; i < sizeof(chars) / sizeof(chars[0]); i++)
        tokv_add(v, chars[i], MF_TOK_NORMAL, -100.0f - (float)i);
    tokv_add(v, "ll", MF_TOK_NORMAL, -1);
    tokv_add(v, "he", MF_TOK_NORMAL, -2);
    tokv_add(v, "\xE2\x96\x81he", MF_TOK_NORMAL, -3);
    tokv_add(v, "llo", MF_TOK_NORMAL, -4);
    tokv_add(v, "\xE2\x96\x81hello", MF_TOK_NORMAL, -5);
    tokv_add(v, "\xE2\x96\x81w", MF_TOK_NORMAL, -6);
    tokv_add(v, "<tool>", MF_TOK_USER_DEFINED, 0);
}

static inline enum memfit_status tokv_str_array(memfit_writer *w, const char *key, size_t n,
                                                const char *first, size_t stride)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += 8 + strlen(first + i * stride);
    uint8_t *raw = memfit_malloc(total + 1), *p = raw;
    if (!raw)
        return MEMFIT_E_NOMEM;
    for (size_t i = 0; i < n; i++) {
        uint64_t len = strlen(first + i * stride);
        memcpy(p, &len, 8);
        memcpy(p + 8, first + i * stride, len);
        p += 8 + len;
    }
    struct memfit_meta_value val = {.type = MEMFIT_META_ARRAY};
    val.v.array.elem_type = MEMFIT_META_STRING;
    val.v.array.count = n;
    val.v.array.raw = raw;
    val.v.array.raw_bytes = total;
    enum memfit_status st = memfit_writer_set_meta(w, key, &val);
    memfit_free(raw);
    return st;
}

static inline enum memfit_status tokv_u32(memfit_writer *w, const char *key, uint32_t x)
{
    struct memfit_meta_value val = {.type = MEMFIT_META_U32};
    val.v.u = x;
    return memfit_writer_set_meta(w, key, &val);
}

static inline enum memfit_status tokv_bool(memfit_writer *w, const char *key, bool x)
{
    struct memfit_meta_value val = {.type = MEMFIT_META_BOOL};
    val.v.u = x;
    return memfit_writer_set_meta(w, key, &val);
}

/*
 * Writes v as a metadata-only GGUF at path. model: "gpt2" or "llama" (or any
 * text, to test refusals); pre may be NULL. Extra keys go in with `extra`.
 */
typedef enum memfit_status (*tokv_extra)(memfit_writer *w, void *ctx);
static inline enum memfit_status tokv_write(const struct tokv *v, const char *path,
                                            const char *model, const char *pre, tokv_extra extra,
                                            void *ctx)
{
    memfit_writer *w;
    enum memfit_status st = memfit_writer_create(path, MEMFIT_FORMAT_GGUF, &w);
    if (st != MEMFIT_OK)
        return st;
    struct memfit_meta_value arr = {.type = MEMFIT_META_ARRAY};
    arr.v.array.count = v->n;
    arr.v.array.raw_bytes = v->n * 4;
    if ((st = memfit_writer_set_meta_string(w, "tokenizer.ggml.model", model)) != MEMFIT_OK ||
        (pre && (st = memfit_writer_set_meta_string(w, "tokenizer.ggml.pre", pre)) != MEMFIT_OK) ||
        (st = tokv_str_array(w, "tokenizer.ggml.tokens", v->n, v->text[0], sizeof(v->text[0]))) !=
            MEMFIT_OK)
        goto done;
    arr.v.array.elem_type = MEMFIT_META_I32;
    arr.v.array.raw = v->type;
    if ((st = memfit_writer_set_meta(w, "tokenizer.ggml.token_type", &arr)) != MEMFIT_OK)
        goto done;
    arr.v.array.elem_type = MEMFIT_META_F32;
    arr.v.array.raw = v->score;
    if ((st = memfit_writer_set_meta(w, "tokenizer.ggml.scores", &arr)) != MEMFIT_OK)
        goto done;
    if (v->n_merges && (st = tokv_str_array(w, "tokenizer.ggml.merges", v->n_merges, v->merges[0],
                                            sizeof(v->merges[0]))) != MEMFIT_OK)
        goto done;
    if (extra && (st = extra(w, ctx)) != MEMFIT_OK)
        goto done;
    st = memfit_writer_commit(w);
done:
    memfit_writer_destroy(w);
    return st;
}

#endif

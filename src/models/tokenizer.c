/*
 * GGUF tokenizers: the vocabulary of an LLM read from its tokenizer.ggml.*
 * metadata, and encoding/decoding with it.
 *
 * DESIGN. Two algorithms, the two llama.cpp runs for the models memfit serves:
 *  - byte-level BPE ("gpt2"): special tokens are cut out of the text first,
 *    each remaining fragment is split by the pre-tokenizer regex of
 *    tokenizer.ggml.pre (PCRE2, UTF + UCP, JIT-compiled once per tokenizer),
 *    and each piece is merged byte by byte by merge rank. We work on token
 *    ids, not on bytes_to_unicode strings: each byte starts as the id of its
 *    one-character token and a merge is an (id, id) -> (rank, id) lookup, so
 *    nothing is concatenated or hashed in the merge loop. A binary heap keyed
 *    by (rank, position) makes a long word O(n log n), not O(n^2).
 *  - SentencePiece BPE ("llama", LLaMA 2): spaces become U+2581 with a prefix
 *    one, the fragment is split into characters, and the adjacent pair whose
 *    concatenation is a token with the best score merges first (ties: the
 *    leftmost). Characters that end up as no token become <0xXX> byte tokens.
 * The tokenizer is immutable after creation; encode allocates its scratch per
 * call (PCRE2 match data included), so every function is thread-safe.
 *
 * Text is taken as given: no Unicode normalization (Qwen2's NFC is the
 * caller's; see docs/tokenizers.md).
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <string.h>

#include "memfit/models.h"
#include "models/tokenizer.h"

enum pre_kind { PRE_GPT2, PRE_QWEN2, PRE_LLAMA3 };

/* The split regexes (llama.cpp's forms: the (?i:) contractions spelled out). */
static const char RE_GPT2[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char RE_QWEN2[] =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_LLAMA3[] =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* tokenizer.ggml.pre names memfit runs, and what each means. */
static const struct {
    const char *name;
    enum pre_kind kind;
} PRE_NAMES[] = {
    {"default", PRE_GPT2},
    {"gpt2", PRE_GPT2},
    {"gpt-2", PRE_GPT2},
    {"qwen2", PRE_QWEN2},
    {"deepseek-r1-qwen", PRE_QWEN2},
    {"llama3", PRE_LLAMA3},
    {"llama-v3", PRE_LLAMA3},
    {"llama-bpe", PRE_LLAMA3},
    {"falcon3", PRE_LLAMA3},
    {"smaug-bpe", PRE_LLAMA3},
};

/* Control tokens that end generation by their text (llama.cpp's list). */
static const char *const EOG_TEXTS[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",   "<|endoftext|>",
    "<|eom_id|>", "<EOT>",      "_<EOT>",  "<|end_of_text|>",
};

struct tok {
    uint32_t text_off, text_len;   /* tokenizer.ggml.tokens[i] in text_arena */
    uint32_t piece_off, piece_len; /* decoded bytes in piece_arena */
    float score;
    uint8_t type;
};

struct memfit_tokenizer {
    enum memfit_tokenizer_kind kind;
    char *model, *pre, *chat_template;
    uint32_t n_vocab;
    struct tok *toks;
    char *text_arena, *piece_arena;
    struct mf_strmap vocab;  /* text -> id, every token */
    struct mf_strmap pieces; /* BPE: decoded bytes of NORMAL tokens; SPM: text of
                                NORMAL/USER_DEFINED tokens (what merges may form) */
    struct mf_pairmap merges;
    int32_t byte_id[256]; /* BPE: the one-byte token; SPM: <0xXX>; -1: none */
    /* Tokens matched in the text before the pre-tokenizer, grouped by first
     * byte and longest first (leftmost-longest like HF's added vocabulary). */
    int32_t *special;
    uint32_t special_start[257];
    bool first_any[256], first_user[256];
    int32_t bos, eos, eot, eom, pad, unk;
    bool add_bos, add_eos, add_space_prefix, ignore_merges;
    /* SPM: bytes some mergeable token holds; whether no such token has a
     * U+2581 after another character (see spm_fragment) */
    bool in_token[256], split_at_space;
    int32_t eog[16];
    size_t n_eog;
    pcre2_code *re;
    pcre2_general_context *gctx;
    pcre2_match_context *mctx;
};

/* ---- metadata helpers --------------------------------------------------- */

static void *pcre_alloc(PCRE2_SIZE size, void *data)
{
    (void)data;
    return memfit_malloc(size ? size : 1);
}

static void pcre_free(void *p, void *data)
{
    (void)data;
    memfit_free(p);
}

static const char *set_name(const memfit_tensors *set)
{
    const char *p = memfit_tensors_path(set);
    return p ? p : "(tensors)";
}

/* A string key into a new NUL-terminated copy; *out = NULL when absent. */
static enum memfit_status meta_string(const memfit_tensors *set, const char *key, bool required,
                                      char **out)
{
    struct memfit_meta_value v;
    *out = NULL;
    if (memfit_tensors_meta_find(set, key, &v) != MEMFIT_OK) {
        memfit_clear_error();
        if (required)
            return memfit_fail(MEMFIT_E_FORMAT, "%s: %s: missing", set_name(set), key);
        return MEMFIT_OK;
    }
    if (v.type != MEMFIT_META_STRING)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: %s: a %s, not a string", set_name(set), key,
                           memfit_meta_type_name(v.type));
    if (memchr(v.v.str.data, 0, v.v.str.len))
        return memfit_fail(MEMFIT_E_FORMAT, "%s: %s: contains a NUL byte", set_name(set), key);
    *out = memfit_strndup(v.v.str.data, v.v.str.len);
    return *out ? MEMFIT_OK : MEMFIT_E_NOMEM;
}

/* A token id key: -1 when absent; E_FORMAT beyond the vocabulary. */
static enum memfit_status meta_id(const memfit_tensors *set, const char *key, uint32_t n_vocab,
                                  int32_t *out)
{
    struct memfit_meta_value v;
    if (memfit_tensors_meta_find(set, key, &v) != MEMFIT_OK) {
        memfit_clear_error();
        return MEMFIT_OK; /* keep the default */
    }
    uint64_t id;
    if (memfit_meta_value_u64(&v, &id) != MEMFIT_OK)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: %s: a %s, not a token id", set_name(set), key,
                           memfit_meta_type_name(v.type));
    if (id >= n_vocab)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: %s: id %llu beyond the %u tokens", set_name(set),
                           key, (unsigned long long)id, n_vocab);
    *out = (int32_t)id;
    return MEMFIT_OK;
}

static enum memfit_status meta_bool(const memfit_tensors *set, const char *key, bool *out)
{
    struct memfit_meta_value v;
    if (memfit_tensors_meta_find(set, key, &v) != MEMFIT_OK) {
        memfit_clear_error();
        return MEMFIT_OK;
    }
    uint64_t x;
    if (memfit_meta_value_u64(&v, &x) != MEMFIT_OK)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: %s: a %s, not a bool", set_name(set), key,
                           memfit_meta_type_name(v.type));
    *out = x != 0;
    return MEMFIT_OK;
}

/* An array key of `elem` elements (any integer type for MEMFIT_META_I32). */
static enum memfit_status meta_array(const memfit_tensors *set, const char *key,
                                     enum memfit_meta_type elem, bool required, uint64_t count,
                                     struct memfit_meta_value *out, bool *found)
{
    *found = false;
    if (memfit_tensors_meta_find(set, key, out) != MEMFIT_OK) {
        memfit_clear_error();
        if (required)
            return memfit_fail(MEMFIT_E_FORMAT, "%s: %s: missing", set_name(set), key);
        return MEMFIT_OK;
    }
    if (out->type != MEMFIT_META_ARRAY)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: %s: a %s, not an array", set_name(set), key,
                           memfit_meta_type_name(out->type));
    enum memfit_meta_type et = out->v.array.elem_type;
    bool ok = et == elem;
    if (elem == MEMFIT_META_I32)
        ok = et == MEMFIT_META_I32 || et == MEMFIT_META_U32 || et == MEMFIT_META_I8 ||
             et == MEMFIT_META_U8 || et == MEMFIT_META_I16 || et == MEMFIT_META_U16 ||
             et == MEMFIT_META_I64 || et == MEMFIT_META_U64;
    if (elem == MEMFIT_META_F32)
        ok = et == MEMFIT_META_F32 || et == MEMFIT_META_F64;
    if (!ok)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: %s: an array of %s, not of %s", set_name(set), key,
                           memfit_meta_type_name(et), memfit_meta_type_name(elem));
    if (count != UINT64_MAX && out->v.array.count != count)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: %s: %llu entries for %llu tokens", set_name(set),
                           key, (unsigned long long)out->v.array.count, (unsigned long long)count);
    *found = true;
    return MEMFIT_OK;
}

/* ---- building ----------------------------------------------------------- */

void memfit_tokenizer_free(memfit_tokenizer *tok)
{
    if (!tok)
        return;
    memfit_free(tok->model);
    memfit_free(tok->pre);
    memfit_free(tok->chat_template);
    memfit_free(tok->toks);
    memfit_free(tok->text_arena);
    memfit_free(tok->piece_arena);
    mf_strmap_free(&tok->vocab);
    mf_strmap_free(&tok->pieces);
    mf_pairmap_free(&tok->merges);
    memfit_free(tok->special);
    if (tok->re)
        pcre2_code_free(tok->re);
    if (tok->mctx)
        pcre2_match_context_free(tok->mctx);
    if (tok->gctx)
        pcre2_general_context_free(tok->gctx);
    memfit_free(tok);
}

static const char *tok_text(const memfit_tokenizer *tok, int32_t id)
{
    return tok->text_arena + tok->toks[id].text_off;
}

/* Reads the tokens into the arena and the per-token table. */
static enum memfit_status load_tokens(memfit_tokenizer *tok, const memfit_tensors *set)
{
    struct memfit_meta_value arr, e;
    bool found;
    enum memfit_status st = meta_array(set, "tokenizer.ggml.tokens", MEMFIT_META_STRING, true,
                                       UINT64_MAX, &arr, &found);
    if (st != MEMFIT_OK)
        return st;
    uint64_t n = arr.v.array.count;
    if (n == 0 || n > INT32_MAX / 2)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: tokenizer.ggml.tokens: %llu tokens (1 to %d)",
                           set_name(set), (unsigned long long)n, INT32_MAX / 2);
    uint64_t total = 0, cur = 0;
    while (memfit_meta_array_next(&arr, &cur, &e))
        total += e.v.str.len + 1;
    if (total > UINT32_MAX)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: tokenizer.ggml.tokens: %llu bytes of text",
                           set_name(set), (unsigned long long)total);
    tok->n_vocab = (uint32_t)n;
    tok->toks = memfit_calloc(n, sizeof(*tok->toks));
    tok->text_arena = memfit_malloc(total);
    tok->piece_arena = memfit_malloc(total);
    if (!tok->toks || !tok->text_arena || !tok->piece_arena)
        return MEMFIT_E_NOMEM;
    uint32_t off = 0, i = 0;
    cur = 0;
    while (memfit_meta_array_next(&arr, &cur, &e)) {
        memcpy(tok->text_arena + off, e.v.str.data, e.v.str.len);
        tok->text_arena[off + e.v.str.len] = 0;
        tok->toks[i].text_off = off;
        tok->toks[i].text_len = (uint32_t)e.v.str.len;
        tok->toks[i].type = MF_TOK_NORMAL;
        off += (uint32_t)e.v.str.len + 1;
        i++;
    }

    st = meta_array(set, "tokenizer.ggml.token_type", MEMFIT_META_I32, false, n, &arr, &found);
    if (st != MEMFIT_OK)
        return st;
    for (cur = 0, i = 0; found && memfit_meta_array_next(&arr, &cur, &e); i++) {
        int64_t t = (e.type == MEMFIT_META_I8 || e.type == MEMFIT_META_I16 ||
                     e.type == MEMFIT_META_I32 || e.type == MEMFIT_META_I64)
                        ? e.v.i
                        : (int64_t)e.v.u;
        if (t < MF_TOK_NORMAL || t > MF_TOK_BYTE)
            return memfit_fail(MEMFIT_E_FORMAT,
                               "%s: tokenizer.ggml.token_type[%u]: %lld is no token type (1-6)",
                               set_name(set), i, (long long)t);
        tok->toks[i].type = (uint8_t)t;
    }
    st = meta_array(set, "tokenizer.ggml.scores", MEMFIT_META_F32, false, n, &arr, &found);
    if (st != MEMFIT_OK)
        return st;
    for (cur = 0, i = 0; found && memfit_meta_array_next(&arr, &cur, &e); i++)
        tok->toks[i].score = (float)e.v.f;
    return MEMFIT_OK;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* The byte of a "<0xXX>" token, or -1. */
static int byte_token(const char *s, uint32_t len)
{
    if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
        return -1;
    int hi = hexval(s[3]), lo = hexval(s[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

/* What each token stands for in decoded text. */
static void build_pieces(memfit_tokenizer *tok)
{
    uint32_t off = 0;
    for (uint32_t id = 0; id < tok->n_vocab; id++) {
        struct tok *t = &tok->toks[id];
        const char *s = tok->text_arena + t->text_off;
        char *out = tok->piece_arena + off;
        uint32_t n = 0;
        int b = t->type == MF_TOK_BYTE ? byte_token(s, t->text_len) : -1;
        if (b >= 0) {
            out[n++] = (char)b;
        } else if (t->type == MF_TOK_NORMAL && tok->kind == MEMFIT_TOKENIZER_BPE) {
            for (uint32_t i = 0; i < t->text_len;) {
                uint32_t cp;
                size_t k;
                if (!mf_tok_utf8_next((const unsigned char *)s + i, t->text_len - i, &cp, &k)) {
                    out[n++] = s[i++];
                    continue;
                }
                int byte = mf_tok_cp_byte(cp);
                if (byte >= 0) {
                    out[n++] = (char)byte;
                } else {
                    memcpy(out + n, s + i, k);
                    n += (uint32_t)k;
                }
                i += (uint32_t)k;
            }
        } else if (t->type == MF_TOK_NORMAL) { /* SPM: U+2581 is a space */
            for (uint32_t i = 0; i < t->text_len;) {
                if (i + 3 <= t->text_len && memcmp(s + i, "\xE2\x96\x81", 3) == 0) {
                    out[n++] = ' ';
                    i += 3;
                } else {
                    out[n++] = s[i++];
                }
            }
        } else {
            memcpy(out, s, t->text_len);
            n = t->text_len;
        }
        t->piece_off = off;
        t->piece_len = n;
        off += n;
    }
}

static int cmp_special(const void *a, const void *b, const memfit_tokenizer *tok)
{
    const struct tok *x = &tok->toks[*(const int32_t *)a], *y = &tok->toks[*(const int32_t *)b];
    unsigned char fx = (unsigned char)tok->text_arena[x->text_off];
    unsigned char fy = (unsigned char)tok->text_arena[y->text_off];
    if (fx != fy)
        return fx < fy ? -1 : 1;
    if (x->text_len != y->text_len)
        return x->text_len > y->text_len ? -1 : 1;
    return *(const int32_t *)a < *(const int32_t *)b ? -1 : 1;
}

static void sort_special(memfit_tokenizer *tok, size_t n)
{
    /* Insertion sort into place is too slow for 256+ tokens only in theory;
     * n is the count of special tokens (tens to a few hundred). */
    for (size_t i = 1; i < n; i++) {
        int32_t v = tok->special[i];
        size_t j = i;
        while (j > 0 && cmp_special(&tok->special[j - 1], &v, tok) > 0) {
            tok->special[j] = tok->special[j - 1];
            j--;
        }
        tok->special[j] = v;
    }
}

static bool is_special_type(uint8_t type)
{
    return type == MF_TOK_CONTROL || type == MF_TOK_USER_DEFINED || type == MF_TOK_UNKNOWN;
}

static enum memfit_status build_special(memfit_tokenizer *tok)
{
    size_t n = 0;
    for (uint32_t id = 0; id < tok->n_vocab; id++)
        n += is_special_type(tok->toks[id].type) && tok->toks[id].text_len > 0;
    tok->special = memfit_malloc((n ? n : 1) * sizeof(int32_t));
    if (!tok->special)
        return MEMFIT_E_NOMEM;
    n = 0;
    for (uint32_t id = 0; id < tok->n_vocab; id++)
        if (is_special_type(tok->toks[id].type) && tok->toks[id].text_len > 0)
            tok->special[n++] = (int32_t)id;
    sort_special(tok, n);
    memset(tok->special_start, 0, sizeof(tok->special_start));
    for (size_t i = 0; i < n; i++) {
        const struct tok *t = &tok->toks[tok->special[i]];
        unsigned char f = (unsigned char)tok->text_arena[t->text_off];
        tok->special_start[f + 1]++;
        tok->first_any[f] = true;
        if (t->type == MF_TOK_USER_DEFINED)
            tok->first_user[f] = true;
    }
    for (int b = 0; b < 256; b++)
        tok->special_start[b + 1] += tok->special_start[b];
    return MEMFIT_OK;
}

static bool is_space_mark(const char *s, size_t n)
{
    return n >= 3 && memcmp(s, "\xE2\x96\x81", 3) == 0;
}

static enum memfit_status build_maps(memfit_tokenizer *tok)
{
    enum memfit_status st = mf_strmap_init(&tok->vocab, tok->n_vocab, tok->text_arena);
    if (st != MEMFIT_OK)
        return st;
    bool bpe = tok->kind == MEMFIT_TOKENIZER_BPE;
    st = mf_strmap_init(&tok->pieces, tok->n_vocab, bpe ? tok->piece_arena : tok->text_arena);
    if (st != MEMFIT_OK)
        return st;
    for (int b = 0; b < 256; b++)
        tok->byte_id[b] = -1;
    tok->split_at_space = true;
    for (uint32_t id = 0; id < tok->n_vocab; id++) {
        const struct tok *t = &tok->toks[id];
        mf_strmap_put(&tok->vocab, t->text_off, t->text_len, (int32_t)id);
        if (bpe && t->type == MF_TOK_NORMAL) {
            mf_strmap_put(&tok->pieces, t->piece_off, t->piece_len, (int32_t)id);
            if (t->piece_len == 1) {
                unsigned char b = (unsigned char)tok->piece_arena[t->piece_off];
                if (tok->byte_id[b] < 0)
                    tok->byte_id[b] = (int32_t)id;
            }
        } else if (!bpe && (t->type == MF_TOK_NORMAL || t->type == MF_TOK_USER_DEFINED)) {
            mf_strmap_put(&tok->pieces, t->text_off, t->text_len, (int32_t)id);
            const char *s = tok_text(tok, (int32_t)id);
            for (uint32_t i = 0; i < t->text_len; i++) {
                tok->in_token[(unsigned char)s[i]] = true;
                if (i > 0 && is_space_mark(s + i, t->text_len - i) &&
                    !(i >= 3 && is_space_mark(s + i - 3, 3)))
                    tok->split_at_space = false;
            }
        } else if (!bpe && t->type == MF_TOK_BYTE) {
            int b = byte_token(tok_text(tok, (int32_t)id), t->text_len);
            if (b >= 0 && tok->byte_id[b] < 0)
                tok->byte_id[b] = (int32_t)id;
        }
    }
    return MEMFIT_OK;
}

static enum memfit_status load_merges(memfit_tokenizer *tok, const memfit_tensors *set)
{
    struct memfit_meta_value arr, e;
    bool found;
    enum memfit_status st = meta_array(set, "tokenizer.ggml.merges", MEMFIT_META_STRING, true,
                                       UINT64_MAX, &arr, &found);
    if (st != MEMFIT_OK)
        return st;
    if (arr.v.array.count > UINT32_MAX / 4)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: tokenizer.ggml.merges: %llu merges", set_name(set),
                           (unsigned long long)arr.v.array.count);
    st = mf_pairmap_init(&tok->merges, arr.v.array.count);
    if (st != MEMFIT_OK)
        return st;
    size_t cap = 256;
    char *buf = memfit_malloc(cap);
    if (!buf)
        return MEMFIT_E_NOMEM;
    uint64_t cur = 0;
    uint32_t rank = 0;
    while (memfit_meta_array_next(&arr, &cur, &e)) {
        const char *s = e.v.str.data;
        size_t len = e.v.str.len;
        const char *sp = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
        if (!sp) {
            memfit_free(buf);
            return memfit_fail(MEMFIT_E_FORMAT,
                               "%s: tokenizer.ggml.merges[%u]: \"%.*s\" is not \"left right\"",
                               set_name(set), rank, (int)(len > 64 ? 64 : len), s);
        }
        size_t la = (size_t)(sp - s), lb = len - la - 1;
        int32_t a = mf_strmap_get(&tok->vocab, s, la);
        int32_t b = mf_strmap_get(&tok->vocab, sp + 1, lb);
        if (len > cap) {
            char *nb = memfit_realloc(buf, len * 2);
            if (!nb) {
                memfit_free(buf);
                return MEMFIT_E_NOMEM;
            }
            buf = nb;
            cap = len * 2;
        }
        memcpy(buf, s, la);
        memcpy(buf + la, sp + 1, lb);
        int32_t r = a >= 0 && b >= 0 ? mf_strmap_get(&tok->vocab, buf, la + lb) : -1;
        if (r < 0) {
            memfit_free(buf);
            return memfit_fail(MEMFIT_E_FORMAT,
                               "%s: tokenizer.ggml.merges[%u]: \"%.*s\" names %s not in "
                               "tokenizer.ggml.tokens",
                               set_name(set), rank, (int)(len > 64 ? 64 : len), s,
                               a < 0 || b < 0 ? "a token" : "a merged token");
        }
        mf_pairmap_put(&tok->merges, a, b, rank, r);
        rank++;
    }
    memfit_free(buf);
    return MEMFIT_OK;
}

static enum memfit_status compile_regex(memfit_tokenizer *tok, enum pre_kind kind)
{
    const char *re = kind == PRE_QWEN2 ? RE_QWEN2 : kind == PRE_LLAMA3 ? RE_LLAMA3 : RE_GPT2;
    tok->gctx = pcre2_general_context_create(pcre_alloc, pcre_free, NULL);
    if (!tok->gctx)
        return MEMFIT_E_NOMEM;
    pcre2_compile_context *cctx = pcre2_compile_context_create(tok->gctx);
    if (!cctx)
        return MEMFIT_E_NOMEM;
    int err;
    PCRE2_SIZE erroff;
    tok->re = pcre2_compile((PCRE2_SPTR)re, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &err,
                            &erroff, cctx);
    pcre2_compile_context_free(cctx);
    if (!tok->re) {
        if (err == PCRE2_ERROR_HEAP_FAILED)
            return MEMFIT_E_NOMEM;
        PCRE2_UCHAR msg[120];
        pcre2_get_error_message(err, msg, sizeof(msg));
        return memfit_fail(MEMFIT_E_UNSUPPORTED, "tokenizer regex: %s at %zu", (char *)msg,
                           (size_t)erroff);
    }
    /* JIT is an optimization: without it (no JIT support, no executable
     * memory) matching still works through the interpreter. */
    (void)pcre2_jit_compile(tok->re, PCRE2_JIT_COMPLETE);
    tok->mctx = pcre2_match_context_create(tok->gctx);
    return tok->mctx ? MEMFIT_OK : MEMFIT_E_NOMEM;
}

static int32_t find_text(const memfit_tokenizer *tok, const char *text)
{
    return mf_strmap_get(&tok->vocab, text, strlen(text));
}

static void build_eog(memfit_tokenizer *tok)
{
    int32_t cand[3] = {tok->eos, tok->eot, tok->eom};
    for (int i = 0; i < 3; i++)
        if (cand[i] >= 0)
            tok->eog[tok->n_eog++] = cand[i];
    for (size_t i = 0; i < sizeof(EOG_TEXTS) / sizeof(EOG_TEXTS[0]); i++) {
        int32_t id = find_text(tok, EOG_TEXTS[i]);
        if (id < 0 || tok->toks[id].type != MF_TOK_CONTROL || tok->n_eog == 16)
            continue;
        bool dup = false;
        for (size_t j = 0; j < tok->n_eog; j++)
            dup |= tok->eog[j] == id;
        if (!dup)
            tok->eog[tok->n_eog++] = id;
    }
}

static enum memfit_status build(memfit_tokenizer *tok, const memfit_tensors *set)
{
    enum memfit_status st = meta_string(set, "tokenizer.ggml.model", true, &tok->model);
    if (st != MEMFIT_OK)
        return st;
    if (strcmp(tok->model, "gpt2") == 0)
        tok->kind = MEMFIT_TOKENIZER_BPE;
    else if (strcmp(tok->model, "llama") == 0)
        tok->kind = MEMFIT_TOKENIZER_SPM;
    else
        return memfit_fail(MEMFIT_E_UNSUPPORTED,
                           "%s: tokenizer.ggml.model \"%s\": memfit runs \"gpt2\" (byte-level BPE) "
                           "and \"llama\" (SentencePiece BPE)",
                           set_name(set), tok->model);
    if ((st = meta_string(set, "tokenizer.ggml.pre", false, &tok->pre)) != MEMFIT_OK)
        return st;
    if (!tok->pre && !(tok->pre = memfit_strdup("default")))
        return MEMFIT_E_NOMEM;
    enum pre_kind pre = PRE_GPT2;
    if (tok->kind == MEMFIT_TOKENIZER_BPE) {
        size_t i, n = sizeof(PRE_NAMES) / sizeof(PRE_NAMES[0]);
        for (i = 0; i < n && strcmp(PRE_NAMES[i].name, tok->pre) != 0; i++)
            ;
        if (i == n)
            return memfit_fail(MEMFIT_E_UNSUPPORTED,
                               "%s: tokenizer.ggml.pre \"%s\": memfit runs qwen2, llama-bpe "
                               "(llama3), gpt2 and default",
                               set_name(set), tok->pre);
        pre = PRE_NAMES[i].kind;
    }
    if ((st = meta_string(set, "tokenizer.chat_template", false, &tok->chat_template)) !=
            MEMFIT_OK ||
        (st = load_tokens(tok, set)) != MEMFIT_OK)
        return st;
    build_pieces(tok);
    if ((st = build_maps(tok)) != MEMFIT_OK)
        return st;
    if (tok->kind == MEMFIT_TOKENIZER_BPE &&
        ((st = load_merges(tok, set)) != MEMFIT_OK || (st = compile_regex(tok, pre)) != MEMFIT_OK))
        return st;
    if ((st = build_special(tok)) != MEMFIT_OK)
        return st;

    bool spm = tok->kind == MEMFIT_TOKENIZER_SPM;
    tok->bos = tok->eos = tok->eot = tok->eom = tok->pad = tok->unk = -1;
    if (spm) { /* SentencePiece's conventional names when the ids are not given */
        tok->bos = find_text(tok, "<s>");
        tok->eos = find_text(tok, "</s>");
        tok->unk = find_text(tok, "<unk>");
    }
    tok->add_bos = spm || pre == PRE_LLAMA3;
    tok->add_space_prefix = spm;
    tok->ignore_merges = pre == PRE_LLAMA3 && !spm;
    uint32_t nv = tok->n_vocab;
    if ((st = meta_id(set, "tokenizer.ggml.bos_token_id", nv, &tok->bos)) != MEMFIT_OK ||
        (st = meta_id(set, "tokenizer.ggml.eos_token_id", nv, &tok->eos)) != MEMFIT_OK ||
        (st = meta_id(set, "tokenizer.ggml.eot_token_id", nv, &tok->eot)) != MEMFIT_OK ||
        (st = meta_id(set, "tokenizer.ggml.eom_token_id", nv, &tok->eom)) != MEMFIT_OK ||
        (st = meta_id(set, "tokenizer.ggml.padding_token_id", nv, &tok->pad)) != MEMFIT_OK ||
        (st = meta_id(set, "tokenizer.ggml.unknown_token_id", nv, &tok->unk)) != MEMFIT_OK ||
        (st = meta_bool(set, "tokenizer.ggml.add_bos_token", &tok->add_bos)) != MEMFIT_OK ||
        (st = meta_bool(set, "tokenizer.ggml.add_eos_token", &tok->add_eos)) != MEMFIT_OK ||
        (st = meta_bool(set, "tokenizer.ggml.add_space_prefix", &tok->add_space_prefix)) !=
            MEMFIT_OK)
        return st;
    if (tok->eot < 0) { /* chat models end a turn with one of these */
        static const char *const eot_texts[] = {"<|eot_id|>", "<|im_end|>", "<|end|>",
                                                "<end_of_turn>"};
        for (size_t i = 0; i < 4 && tok->eot < 0; i++) {
            int32_t id = find_text(tok, eot_texts[i]);
            if (id >= 0 && tok->toks[id].type == MF_TOK_CONTROL)
                tok->eot = id;
        }
    }
    build_eog(tok);
    return MEMFIT_OK;
}

enum memfit_status memfit_tokenizer_from_gguf(const memfit_tensors *set, memfit_tokenizer **out)
{
    if (!set || !out)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_tokenizer_from_gguf: NULL argument");
    memfit_tokenizer *tok = memfit_calloc(1, sizeof(*tok));
    if (!tok)
        return MEMFIT_E_NOMEM;
    enum memfit_status st = build(tok, set);
    if (st != MEMFIT_OK) {
        memfit_tokenizer_free(tok);
        return st;
    }
    *out = tok;
    return MEMFIT_OK;
}

void memfit_tokenizer_get_info(const memfit_tokenizer *tok, struct memfit_tokenizer_info *out)
{
    memset(out, 0, sizeof(*out));
    out->kind = tok->kind;
    out->model = tok->model;
    out->pre = tok->pre;
    out->n_vocab = tok->n_vocab;
    out->bos = tok->bos;
    out->eos = tok->eos;
    out->eot = tok->eot;
    out->pad = tok->pad;
    out->unk = tok->unk;
    out->add_bos = tok->add_bos && tok->bos >= 0;
    out->add_eos = tok->add_eos && tok->eos >= 0;
}

const char *memfit_tokenizer_chat_template(const memfit_tokenizer *tok)
{
    return tok->chat_template;
}

bool memfit_tokenizer_is_eog(const memfit_tokenizer *tok, int32_t id)
{
    for (size_t i = 0; i < tok->n_eog; i++)
        if (tok->eog[i] == id)
            return true;
    return false;
}

/* ---- encoding ----------------------------------------------------------- */

/* Per-call scratch: the output and the merge workspace. */
struct enc {
    const memfit_tokenizer *tok;
    int32_t *ids;
    size_t n, cap;
    /* symbols of one word: BPE id (or SPM start offset), length, links */
    int32_t *sym_id;
    uint32_t *sym_len;
    int32_t *prev, *next;
    size_t sym_cap;
    struct heap_entry *heap;
    size_t heap_n, heap_cap;
    char *buf; /* SPM: the escaped fragment */
    size_t buf_cap;
    pcre2_match_data *md;
};

struct heap_entry {
    float key;      /* BPE: rank; SPM: -score (both: smallest first) */
    uint32_t left;  /* position of the left symbol */
    uint32_t right; /* SPM: position of the right symbol */
    int32_t a, b;   /* BPE: the ids the pair had when pushed; SPM: size */
};

static enum memfit_status push_id(struct enc *e, int32_t id)
{
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 64;
        int32_t *ids = memfit_realloc(e->ids, cap * sizeof(*ids));
        if (!ids)
            return MEMFIT_E_NOMEM;
        e->ids = ids;
        e->cap = cap;
    }
    e->ids[e->n++] = id;
    return MEMFIT_OK;
}

static enum memfit_status reserve_syms(struct enc *e, size_t n)
{
    if (n <= e->sym_cap)
        return MEMFIT_OK;
    size_t cap = n < 64 ? 64 : n * 2;
    int32_t *id = memfit_realloc(e->sym_id, cap * sizeof(*id));
    if (!id)
        return MEMFIT_E_NOMEM;
    e->sym_id = id;
    uint32_t *len = memfit_realloc(e->sym_len, cap * sizeof(*len));
    if (!len)
        return MEMFIT_E_NOMEM;
    e->sym_len = len;
    int32_t *p = memfit_realloc(e->prev, cap * sizeof(*p));
    if (!p)
        return MEMFIT_E_NOMEM;
    e->prev = p;
    p = memfit_realloc(e->next, cap * sizeof(*p));
    if (!p)
        return MEMFIT_E_NOMEM;
    e->next = p;
    e->sym_cap = cap;
    return MEMFIT_OK;
}

static bool heap_less(const struct heap_entry *x, const struct heap_entry *y)
{
    return x->key < y->key || (x->key == y->key && x->left < y->left);
}

static enum memfit_status heap_push(struct enc *e, struct heap_entry v)
{
    if (e->heap_n == e->heap_cap) {
        size_t cap = e->heap_cap ? e->heap_cap * 2 : 64;
        struct heap_entry *h = memfit_realloc(e->heap, cap * sizeof(*h));
        if (!h)
            return MEMFIT_E_NOMEM;
        e->heap = h;
        e->heap_cap = cap;
    }
    size_t i = e->heap_n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!heap_less(&v, &e->heap[parent]))
            break;
        e->heap[i] = e->heap[parent];
        i = parent;
    }
    e->heap[i] = v;
    return MEMFIT_OK;
}

static struct heap_entry heap_pop(struct enc *e)
{
    struct heap_entry top = e->heap[0], last = e->heap[--e->heap_n];
    size_t i = 0, n = e->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && heap_less(&e->heap[c + 1], &e->heap[c]))
            c++;
        if (!heap_less(&e->heap[c], &last))
            break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    if (n > 0)
        e->heap[i] = last;
    return top;
}

static enum memfit_status bpe_pair(struct enc *e, int32_t left)
{
    if (left < 0)
        return MEMFIT_OK;
    int32_t right = e->next[left];
    if (right < 0)
        return MEMFIT_OK;
    const struct mf_pairmap_slot *m =
        mf_pairmap_get(&e->tok->merges, e->sym_id[left], e->sym_id[right]);
    if (!m)
        return MEMFIT_OK;
    struct heap_entry h = {(float)m->rank, (uint32_t)left, (uint32_t)right, e->sym_id[left],
                           e->sym_id[right]};
    return heap_push(e, h);
}

/* One pre-tokenized piece of byte-level BPE. */
static enum memfit_status bpe_word(struct enc *e, const char *s, size_t n)
{
    const memfit_tokenizer *tok = e->tok;
    if (tok->ignore_merges || n == 1) {
        int32_t id = mf_strmap_get(&tok->pieces, s, n);
        if (id >= 0)
            return push_id(e, id);
    }
    enum memfit_status st = reserve_syms(e, n);
    if (st != MEMFIT_OK)
        return st;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = tok->byte_id[(unsigned char)s[i]];
        if (id < 0)
            continue; /* a byte the vocabulary cannot say is dropped, as llama.cpp does */
        e->sym_id[m] = id;
        e->prev[m] = (int32_t)m - 1;
        e->next[m] = (int32_t)m + 1;
        m++;
    }
    if (m == 0)
        return MEMFIT_OK;
    e->next[m - 1] = -1;
    e->heap_n = 0;
    for (size_t i = 0; i + 1 < m; i++)
        if ((st = bpe_pair(e, (int32_t)i)) != MEMFIT_OK)
            return st;
    while (e->heap_n > 0) {
        struct heap_entry h = heap_pop(e);
        int32_t l = (int32_t)h.left, r = e->next[l];
        /* stale: either side merged since the pair was pushed */
        if (e->sym_id[l] != h.a || r < 0 || (uint32_t)r != h.right || e->sym_id[r] != h.b)
            continue;
        const struct mf_pairmap_slot *mg = mf_pairmap_get(&tok->merges, h.a, h.b);
        e->sym_id[l] = mg->result;
        e->sym_id[r] = -1;
        e->next[l] = e->next[r];
        if (e->next[r] >= 0)
            e->prev[e->next[r]] = l;
        if ((st = bpe_pair(e, e->prev[l])) != MEMFIT_OK || (st = bpe_pair(e, l)) != MEMFIT_OK)
            return st;
    }
    for (int32_t i = 0; i >= 0; i = e->next[i])
        if ((st = push_id(e, e->sym_id[i])) != MEMFIT_OK)
            return st;
    return MEMFIT_OK;
}

/* Splits a fragment with the pre-tokenizer regex; unmatched text between
 * matches is a piece of its own (HF's Split "Isolated"). */
static enum memfit_status bpe_fragment(struct enc *e, const char *s, size_t n)
{
    const memfit_tokenizer *tok = e->tok;
    size_t pos = 0, gap = 0;
    enum memfit_status st;
    uint32_t opts = PCRE2_NO_UTF_CHECK;
    while (pos < n) {
        int rc = pcre2_match(tok->re, (PCRE2_SPTR)s, n, pos, opts, e->md, tok->mctx);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !(opts & PCRE2_NO_JIT)) {
            opts |= PCRE2_NO_JIT; /* a huge run: the interpreter keeps its frames on the heap */
            continue;
        }
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc == PCRE2_ERROR_NOMEMORY || rc == PCRE2_ERROR_HEAPLIMIT)
            return memfit_fail(MEMFIT_E_NOMEM, "tokenizer: out of memory matching the regex");
        if (rc < 0) {
            PCRE2_UCHAR msg[120];
            pcre2_get_error_message(rc, msg, sizeof(msg));
            return memfit_fail(MEMFIT_E_RANGE, "tokenizer: regex match at byte %zu: %s", pos,
                               (char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) { /* the regexes cannot match empty; never loop on one */
            uint32_t cp;
            size_t k = 1;
            (void)mf_tok_utf8_next((const unsigned char *)s + ms, n - ms, &cp, &k);
            pos = ms + k;
            continue;
        }
        if (ms > gap && (st = bpe_word(e, s + gap, ms - gap)) != MEMFIT_OK)
            return st;
        if ((st = bpe_word(e, s + ms, me - ms)) != MEMFIT_OK)
            return st;
        pos = gap = me;
    }
    if (gap < n)
        return bpe_word(e, s + gap, n - gap);
    return MEMFIT_OK;
}

static enum memfit_status spm_pair(struct enc *e, int32_t left, int32_t right)
{
    if (left < 0 || right < 0)
        return MEMFIT_OK;
    uint32_t size = e->sym_len[left] + e->sym_len[right];
    int32_t id = mf_strmap_get(&e->tok->pieces, e->buf + e->sym_id[left], size);
    if (id < 0)
        return MEMFIT_OK;
    struct heap_entry h = {-e->tok->toks[id].score, (uint32_t)left, (uint32_t)right, (int32_t)size,
                           0};
    return heap_push(e, h);
}

/* Emits one final SPM symbol: its token, or its bytes as <0xXX> tokens. */
static enum memfit_status spm_emit(struct enc *e, const char *s, size_t n)
{
    const memfit_tokenizer *tok = e->tok;
    int32_t id = mf_strmap_get(&tok->pieces, s, n);
    if (id >= 0)
        return push_id(e, id);
    for (size_t i = 0; i < n; i++) {
        int32_t b = tok->byte_id[(unsigned char)s[i]];
        if (b < 0)
            b = tok->unk;
        if (b < 0)
            continue;
        enum memfit_status st = push_id(e, b);
        if (st != MEMFIT_OK)
            return st;
    }
    return MEMFIT_OK;
}

/* Merges buf[start, start+len) (SentencePiece's best-score-first loop). */
static enum memfit_status spm_chunk(struct enc *e, size_t start, size_t len)
{
    enum memfit_status st = reserve_syms(e, len);
    if (st != MEMFIT_OK)
        return st;
    size_t m = 0;
    for (size_t off = start; off < start + len;) {
        uint32_t cp;
        size_t k = 1;
        (void)mf_tok_utf8_next((const unsigned char *)e->buf + off, start + len - off, &cp, &k);
        e->sym_id[m] = (int32_t)off; /* SPM symbols are spans of buf */
        e->sym_len[m] = (uint32_t)k;
        e->prev[m] = (int32_t)m - 1;
        e->next[m] = (int32_t)m + 1;
        m++;
        off += k;
    }
    if (m == 0)
        return MEMFIT_OK;
    e->next[m - 1] = -1;
    e->heap_n = 0;
    for (size_t i = 0; i + 1 < m; i++)
        if ((st = spm_pair(e, (int32_t)i, (int32_t)i + 1)) != MEMFIT_OK)
            return st;
    while (e->heap_n > 0) {
        struct heap_entry h = heap_pop(e);
        uint32_t l = h.left, r = h.right;
        if (e->sym_len[l] == 0 || e->sym_len[r] == 0 ||
            e->sym_len[l] + e->sym_len[r] != (uint32_t)h.a)
            continue; /* stale */
        e->sym_len[l] += e->sym_len[r];
        e->sym_len[r] = 0;
        e->next[l] = e->next[r];
        if (e->next[r] >= 0)
            e->prev[e->next[r]] = (int32_t)l;
        if ((st = spm_pair(e, e->prev[l], (int32_t)l)) != MEMFIT_OK ||
            (st = spm_pair(e, (int32_t)l, e->next[l])) != MEMFIT_OK)
            return st;
    }
    for (int32_t i = 0; i >= 0; i = e->next[i])
        if ((st = spm_emit(e, e->buf + e->sym_id[i], e->sym_len[i])) != MEMFIT_OK)
            return st;
    return MEMFIT_OK;
}

/*
 * Escapes a fragment (prefix space when asked, spaces as U+2581) and merges
 * it. No token crosses a boundary where the vocabulary allows none: before a
 * U+2581 that follows another character (when no token has U+2581 after
 * another character, as SentencePiece's whitespace split guarantees), or
 * around a byte no token contains (a newline). Merging each chunk alone
 * gives the same tokens as merging the whole, and keeps the heap small.
 */
static enum memfit_status spm_fragment(struct enc *e, const char *s, size_t n, bool prefix)
{
    const memfit_tokenizer *tok = e->tok;
    size_t need = (n + 1) * 3;
    if (need > e->buf_cap) {
        char *b = memfit_realloc(e->buf, need);
        if (!b)
            return MEMFIT_E_NOMEM;
        e->buf = b;
        e->buf_cap = need;
    }
    size_t len = 0;
    if (prefix) {
        memcpy(e->buf, "\xE2\x96\x81", 3);
        len = 3;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') {
            memcpy(e->buf + len, "\xE2\x96\x81", 3);
            len += 3;
        } else {
            e->buf[len++] = s[i];
        }
    }
    size_t start = 0;
    bool prev_mark = false, prev_free = false;
    enum memfit_status st;
    for (size_t off = 0; off < len;) {
        unsigned char c = (unsigned char)e->buf[off];
        size_t k = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
        bool mark = is_space_mark(e->buf + off, len - off);
        bool free_char = !tok->in_token[c];
        bool cut =
            off > start && ((mark && !prev_mark && tok->split_at_space) || free_char || prev_free);
        if (cut) {
            if ((st = spm_chunk(e, start, off - start)) != MEMFIT_OK)
                return st;
            start = off;
        }
        prev_mark = mark;
        prev_free = free_char;
        off += k;
    }
    return spm_chunk(e, start, len - start);
}

/* The special token starting at s[0..n), or -1 (longest wins). */
static int32_t match_special(const memfit_tokenizer *tok, const char *s, size_t n,
                             bool parse_special)
{
    unsigned char f = (unsigned char)s[0];
    for (uint32_t i = tok->special_start[f]; i < tok->special_start[f + 1]; i++) {
        int32_t id = tok->special[i];
        const struct tok *t = &tok->toks[id];
        if (!parse_special && t->type != MF_TOK_USER_DEFINED)
            continue;
        if (t->text_len <= n && memcmp(tok->text_arena + t->text_off, s, t->text_len) == 0)
            return id;
    }
    return -1;
}

static enum memfit_status encode_fragment(struct enc *e, const char *s, size_t n, bool *prev_sp)
{
    if (n == 0)
        return MEMFIT_OK;
    bool prefix = e->tok->add_space_prefix && *prev_sp;
    *prev_sp = false;
    if (e->tok->kind == MEMFIT_TOKENIZER_BPE)
        return bpe_fragment(e, s, n);
    return spm_fragment(e, s, n, prefix);
}

static enum memfit_status encode_all(struct enc *e, const char *text, size_t len, bool add_special,
                                     bool parse_special)
{
    const memfit_tokenizer *tok = e->tok;
    enum memfit_status st;
    if (add_special && tok->add_bos && tok->bos >= 0 && (st = push_id(e, tok->bos)) != MEMFIT_OK)
        return st;
    if (tok->kind == MEMFIT_TOKENIZER_BPE) {
        e->md = pcre2_match_data_create_from_pattern(tok->re, tok->gctx);
        if (!e->md)
            return MEMFIT_E_NOMEM;
    }
    const bool *first = parse_special ? tok->first_any : tok->first_user;
    bool prev_special = true; /* the SPM prefix space goes before the first fragment */
    size_t frag = 0;
    for (size_t p = 0; p < len; p++) {
        if (!first[(unsigned char)text[p]])
            continue;
        int32_t id = match_special(tok, text + p, len - p, parse_special);
        if (id < 0)
            continue;
        if ((st = encode_fragment(e, text + frag, p - frag, &prev_special)) != MEMFIT_OK ||
            (st = push_id(e, id)) != MEMFIT_OK)
            return st;
        prev_special = true;
        p += tok->toks[id].text_len - 1;
        frag = p + 1;
    }
    if ((st = encode_fragment(e, text + frag, len - frag, &prev_special)) != MEMFIT_OK)
        return st;
    if (add_special && tok->add_eos && tok->eos >= 0 && (st = push_id(e, tok->eos)) != MEMFIT_OK)
        return st;
    return MEMFIT_OK;
}

enum memfit_status memfit_tokenizer_encode(const memfit_tokenizer *tok, const char *text,
                                           size_t len, bool add_special, bool parse_special,
                                           int32_t **out_ids, size_t *out_n)
{
    if (!tok || (!text && len) || !out_ids || !out_n)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_tokenizer_encode: NULL argument");
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t k;
        if ((unsigned char)text[i] < 0x80) {
            i++;
            continue;
        }
        if (!mf_tok_utf8_next((const unsigned char *)text + i, len - i, &cp, &k))
            return memfit_fail(MEMFIT_E_FORMAT,
                               "tokenizer: text is not valid UTF-8 at byte offset %zu (0x%02X)", i,
                               (unsigned char)text[i]);
        i += k;
    }
    struct enc e;
    memset(&e, 0, sizeof(e));
    e.tok = tok;
    enum memfit_status st = encode_all(&e, text, len, add_special, parse_special);
    memfit_free(e.sym_id);
    memfit_free(e.sym_len);
    memfit_free(e.prev);
    memfit_free(e.next);
    memfit_free(e.heap);
    memfit_free(e.buf);
    if (e.md)
        pcre2_match_data_free(e.md);
    if (st != MEMFIT_OK) {
        memfit_free(e.ids);
        return st;
    }
    if (e.n == 0) {
        memfit_free(e.ids);
        e.ids = NULL;
    }
    *out_ids = e.ids;
    *out_n = e.n;
    return MEMFIT_OK;
}

/* ---- decoding ----------------------------------------------------------- */

static bool hidden_unless_special(uint8_t type)
{
    return type == MF_TOK_CONTROL || type == MF_TOK_UNKNOWN || type == MF_TOK_UNUSED;
}

enum memfit_status memfit_tokenizer_piece(const memfit_tokenizer *tok, int32_t id, bool special,
                                          const char **bytes, size_t *len)
{
    if (!tok || !bytes || !len)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_tokenizer_piece: NULL argument");
    if (id < 0 || (uint32_t)id >= tok->n_vocab)
        return memfit_fail(MEMFIT_E_RANGE, "tokenizer: token id %d outside the vocabulary (%u)", id,
                           tok->n_vocab);
    const struct tok *t = &tok->toks[id];
    if (!special && hidden_unless_special(t->type)) {
        *bytes = "";
        *len = 0;
        return MEMFIT_OK;
    }
    *bytes = tok->piece_arena + t->piece_off;
    *len = t->piece_len;
    return MEMFIT_OK;
}

enum memfit_status memfit_tokenizer_decode(const memfit_tokenizer *tok, const int32_t *ids,
                                           size_t n, bool special, char **out, size_t *out_len)
{
    if (!tok || (!ids && n) || !out || !out_len)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_tokenizer_decode: NULL argument");
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || (uint32_t)ids[i] >= tok->n_vocab)
            return memfit_fail(MEMFIT_E_RANGE,
                               "tokenizer: ids[%zu] = %d outside the vocabulary (%u)", i, ids[i],
                               tok->n_vocab);
        total += tok->toks[ids[i]].piece_len;
    }
    char *s = memfit_malloc(total + 1);
    if (!s)
        return MEMFIT_E_NOMEM;
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        const char *b;
        size_t k;
        (void)memfit_tokenizer_piece(tok, ids[i], special, &b, &k);
        memcpy(s + len, b, k);
        len += k;
    }
    /* SentencePiece's decoder strips the space the prefix added (HF's
     * Strip(start=1) on the joined text). */
    if (tok->kind == MEMFIT_TOKENIZER_SPM && tok->add_space_prefix && len > 0 && s[0] == ' ') {
        memmove(s, s + 1, len - 1);
        len--;
    }
    s[len] = 0;
    *out = s;
    *out_len = len;
    return MEMFIT_OK;
}

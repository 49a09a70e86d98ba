/*
 * Internal side of the tokenizers: the small open-addressing hash maps the
 * GGUF loader (tokenizer.c) and the tokenizer.json converter
 * (tokenizer_json.c) share, the GGUF token types, and the byte-level BPE
 * byte <-> code point table. Vocabularies reach 150k tokens and 280k merges:
 * lookups must be O(1) without one allocation per key.
 */
#ifndef MF_MODELS_TOKENIZER_H
#define MF_MODELS_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memfit/core.h"

/* tokenizer.ggml.token_type values (llama.cpp's llama_token_type). */
enum mf_tok_type {
    MF_TOK_UNDEFINED = 0,
    MF_TOK_NORMAL = 1,
    MF_TOK_UNKNOWN = 2,
    MF_TOK_CONTROL = 3,
    MF_TOK_USER_DEFINED = 4,
    MF_TOK_UNUSED = 5,
    MF_TOK_BYTE = 6,
};

/*
 * Byte strings -> int32 id. The map does not own its keys: each slot names
 * `len` bytes at `base + off`, an arena the caller keeps alive and unmoved.
 * Inserting a key already present keeps the first id (the lowest, as
 * vocabularies are inserted in id order).
 */
struct mf_strmap_slot {
    uint32_t hash;
    int32_t id; /* -1: empty */
    uint32_t off;
    uint32_t len;
};
struct mf_strmap {
    struct mf_strmap_slot *slots;
    uint32_t mask;
    uint32_t count;
    const char *base;
};

uint32_t mf_tok_hash(const char *s, size_t len);
/* Room for `n` keys; E_NOMEM. */
enum memfit_status mf_strmap_init(struct mf_strmap *m, size_t n, const char *base);
void mf_strmap_free(struct mf_strmap *m);
/* Adds base[off, off+len) -> id (no-op when the key is present). The map
 * never grows past the room given at init: callers size it first. */
void mf_strmap_put(struct mf_strmap *m, uint32_t off, uint32_t len, int32_t id);
/* The id of `len` bytes at `key`, or -1. */
int32_t mf_strmap_get(const struct mf_strmap *m, const char *key, size_t len);

/* (left id, right id) -> (merge rank, merged id): the BPE merge table. */
struct mf_pairmap_slot {
    uint64_t key; /* UINT64_MAX: empty */
    uint32_t rank;
    int32_t result;
};
struct mf_pairmap {
    struct mf_pairmap_slot *slots;
    uint32_t mask;
};

enum memfit_status mf_pairmap_init(struct mf_pairmap *m, size_t n);
void mf_pairmap_free(struct mf_pairmap *m);
/* Keeps the first (lowest-rank) entry of a pair. */
void mf_pairmap_put(struct mf_pairmap *m, int32_t a, int32_t b, uint32_t rank, int32_t result);
const struct mf_pairmap_slot *mf_pairmap_get(const struct mf_pairmap *m, int32_t a, int32_t b);

/*
 * GPT-2's bytes_to_unicode: printable bytes stand for themselves, the other
 * 68 bytes for U+0100 + their order. mf_tok_byte_cp(b) is the code point of
 * byte b; mf_tok_cp_byte(cp) the byte, or -1 for a code point outside the map.
 */
uint32_t mf_tok_byte_cp(uint8_t b);
int mf_tok_cp_byte(uint32_t cp);

/* Appends code point cp as UTF-8 to out (room for 4); returns the bytes written. */
size_t mf_tok_put_utf8(char *out, uint32_t cp);

/*
 * Decodes the UTF-8 character at s[0..len): its code point and length. Strict
 * (no overlong forms, surrogates or values past U+10FFFF); false when invalid.
 */
bool mf_tok_utf8_next(const unsigned char *s, size_t len, uint32_t *cp, size_t *n);

#endif

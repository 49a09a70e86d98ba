/*
 * The tokenizers' hash maps (byte string -> id, id pair -> merge) and the
 * byte-level BPE byte table: small, allocation-free on lookup, shared by the
 * GGUF loader and the tokenizer.json converter (see tokenizer.h).
 */
#include <string.h>

#include "models/tokenizer.h"

uint32_t mf_tok_hash(const char *s, size_t len)
{
    /* FNV-1a: keys are short token texts, and one multiply per byte is cheap. */
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

static uint32_t room_for(size_t n)
{
    uint32_t cap = 16;
    while (cap < n * 2 && cap < (1u << 31))
        cap <<= 1;
    return cap;
}

enum memfit_status mf_strmap_init(struct mf_strmap *m, size_t n, const char *base)
{
    if (n > (1u << 29))
        return memfit_fail(MEMFIT_E_RANGE, "tokenizer map: %zu keys is too many", n);
    uint32_t cap = room_for(n);
    struct mf_strmap_slot *slots = memfit_malloc(sizeof(*slots) * cap);
    if (!slots)
        return MEMFIT_E_NOMEM;
    for (uint32_t i = 0; i < cap; i++)
        slots[i].id = -1;
    m->slots = slots;
    m->mask = cap - 1;
    m->count = 0;
    m->base = base;
    return MEMFIT_OK;
}

void mf_strmap_free(struct mf_strmap *m)
{
    memfit_free(m->slots);
    memset(m, 0, sizeof(*m));
}

void mf_strmap_put(struct mf_strmap *m, uint32_t off, uint32_t len, int32_t id)
{
    if (m->count >= m->mask / 2 + 1)
        return; /* full to its planned room: callers size the map first */
    const char *key = m->base + off;
    uint32_t h = mf_tok_hash(key, len);
    for (uint32_t i = h & m->mask;; i = (i + 1) & m->mask) {
        struct mf_strmap_slot *s = &m->slots[i];
        if (s->id < 0) {
            s->hash = h;
            s->id = id;
            s->off = off;
            s->len = len;
            m->count++;
            return;
        }
        if (s->hash == h && s->len == len && memcmp(m->base + s->off, key, len) == 0)
            return;
    }
}

int32_t mf_strmap_get(const struct mf_strmap *m, const char *key, size_t len)
{
    if (!m->slots)
        return -1;
    uint32_t h = mf_tok_hash(key, len);
    for (uint32_t i = h & m->mask;; i = (i + 1) & m->mask) {
        const struct mf_strmap_slot *s = &m->slots[i];
        if (s->id < 0)
            return -1;
        if (s->hash == h && s->len == len && memcmp(m->base + s->off, key, len) == 0)
            return s->id;
    }
}

static uint32_t pair_hash(uint64_t key)
{
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdull;
    key ^= key >> 33;
    return (uint32_t)key;
}

enum memfit_status mf_pairmap_init(struct mf_pairmap *m, size_t n)
{
    if (n > (1u << 29))
        return memfit_fail(MEMFIT_E_RANGE, "tokenizer merges: %zu is too many", n);
    uint32_t cap = room_for(n);
    struct mf_pairmap_slot *slots = memfit_malloc(sizeof(*slots) * cap);
    if (!slots)
        return MEMFIT_E_NOMEM;
    for (uint32_t i = 0; i < cap; i++)
        slots[i].key = UINT64_MAX;
    m->slots = slots;
    m->mask = cap - 1;
    return MEMFIT_OK;
}

void mf_pairmap_free(struct mf_pairmap *m)
{
    memfit_free(m->slots);
    memset(m, 0, sizeof(*m));
}

void mf_pairmap_put(struct mf_pairmap *m, int32_t a, int32_t b, uint32_t rank, int32_t result)
{
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    for (uint32_t i = pair_hash(key) & m->mask;; i = (i + 1) & m->mask) {
        struct mf_pairmap_slot *s = &m->slots[i];
        if (s->key == UINT64_MAX) {
            s->key = key;
            s->rank = rank;
            s->result = result;
            return;
        }
        if (s->key == key)
            return;
    }
}

const struct mf_pairmap_slot *mf_pairmap_get(const struct mf_pairmap *m, int32_t a, int32_t b)
{
    if (!m->slots)
        return NULL;
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    for (uint32_t i = pair_hash(key) & m->mask;; i = (i + 1) & m->mask) {
        const struct mf_pairmap_slot *s = &m->slots[i];
        if (s->key == UINT64_MAX)
            return NULL;
        if (s->key == key)
            return s;
    }
}

static bool byte_is_printable(unsigned b)
{
    return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
}

uint32_t mf_tok_byte_cp(uint8_t b)
{
    if (byte_is_printable(b))
        return b;
    uint32_t n = 0; /* how many non-printable bytes come before b */
    for (unsigned c = 0; c < b; c++)
        n += !byte_is_printable(c);
    return 256 + n;
}

int mf_tok_cp_byte(uint32_t cp)
{
    if (cp < 256)
        return byte_is_printable(cp) ? (int)cp : -1;
    if (cp >= 256 + 68)
        return -1;
    uint32_t n = cp - 256;
    for (unsigned c = 0; c < 256; c++)
        if (!byte_is_printable(c) && n-- == 0)
            return (int)c;
    return -1;
}

size_t mf_tok_put_utf8(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

bool mf_tok_utf8_next(const unsigned char *s, size_t len, uint32_t *cp, size_t *n)
{
    if (len == 0)
        return false;
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = c;
        *n = 1;
        return true;
    }
    size_t need;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 2;
        v = c & 0x1F;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        v = c & 0x0F;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        v = c & 0x07;
        min = 0x10000;
    } else {
        return false;
    }
    if (len < need)
        return false;
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return false;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return false;
    *cp = v;
    *n = need;
    return true;
}

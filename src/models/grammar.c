/*
 * Grammar-constrained sampling: the automaton that runs a compiled grammar
 * (grammar.h) over bytes, the byte trie of a vocabulary, and the matcher
 * that turns them into the set of tokens allowed at each step.
 *
 * DESIGN
 * The automaton is a pushdown machine whose stack holds one frame per open
 * value: a container and, above it, the key or value being written in it.
 * A frame is 24 bytes (node, kind, state, a counter and a 64-bit set), the
 * stack at most MAX_FRAMES deep, so a state is a small flat struct that is
 * copied, compared and hashed as bytes. A number or a literal such as 12
 * only knows it has ended when the next byte is not its own: the frame then
 * pops and the byte goes to the frame below.
 *
 * The tokens allowed next are found by walking the vocabulary's byte trie
 * (nodes in depth-first order, each knowing where its subtree ends) with one
 * automaton state per depth: a byte the automaton refuses skips the whole
 * subtree, so in an object, a number or a key only a few thousand of Qwen's
 * 1.1 M trie nodes are visited. Inside a string almost every token fits and
 * the walk visits most of the trie; but there the state repeats from token
 * to token (strings without length limits do not count characters), so the
 * matcher keeps the allowed sets of the last CACHE_SLOTS states and answers
 * a repeated state from there.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "memfit/models.h"
#include "models/grammar.h"

/* ---- building a grammar ------------------------------------------------- */

#define GROW(g, arr, n, cap, extra)                                                                \
    grow((void **)&(g)->arr, &(g)->cap, (g)->n + (extra), sizeof(*(g)->arr))

static enum memfit_status grow(void **arr, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return MEMFIT_OK;
    size_t n = *cap ? *cap * 2 : 16;
    while (n < need)
        n *= 2;
    void *p = memfit_realloc(*arr, n * size);
    if (!p)
        return MEMFIT_E_NOMEM;
    *arr = p;
    *cap = n;
    return MEMFIT_OK;
}

memfit_grammar *mf_grammar_new(void)
{
    memfit_grammar *g = memfit_calloc_in(MEMFIT_ALLOC_MODEL, 1, sizeof(*g));
    if (g) {
        g->root = MF_G_NONE;
        g->any = MF_G_NONE;
    }
    return g;
}

void memfit_grammar_free(memfit_grammar *g)
{
    if (!g)
        return;
    memfit_free(g->nodes);
    memfit_free(g->props);
    memfit_free(g->lits);
    memfit_free(g->members);
    memfit_free(g->pool);
    memfit_free(g->alts);
    memfit_free(g);
}

enum memfit_status mf_grammar_add_node(memfit_grammar *g, const struct mf_gnode *node,
                                       uint32_t *out)
{
    if (g->n_nodes >= MF_G_MAX_NODES)
        return memfit_fail(MEMFIT_E_RANGE, "grammar: more than %d nodes", MF_G_MAX_NODES);
    if (GROW(g, nodes, n_nodes, cap_nodes, 1) != MEMFIT_OK)
        return MEMFIT_E_NOMEM;
    g->nodes[g->n_nodes] = *node;
    *out = (uint32_t)g->n_nodes++;
    return MEMFIT_OK;
}

enum memfit_status mf_grammar_add_literal(memfit_grammar *g, const char *bytes, size_t len,
                                          uint32_t *out)
{
    if (len == 0 || len > UINT32_MAX - g->n_pool)
        return memfit_fail(MEMFIT_E_RANGE, "grammar: literal of %zu bytes", len);
    if (GROW(g, lits, n_lits, cap_lits, 1) != MEMFIT_OK ||
        GROW(g, pool, n_pool, cap_pool, len) != MEMFIT_OK)
        return MEMFIT_E_NOMEM;
    memcpy(g->pool + g->n_pool, bytes, len);
    g->lits[g->n_lits] = (struct mf_glit){(uint32_t)g->n_pool, (uint32_t)len};
    g->n_pool += len;
    *out = (uint32_t)g->n_lits++;
    return MEMFIT_OK;
}

enum memfit_status mf_grammar_add_members(memfit_grammar *g, const uint32_t *ids, size_t n,
                                          uint32_t *first)
{
    if (GROW(g, members, n_members, cap_members, n) != MEMFIT_OK)
        return MEMFIT_E_NOMEM;
    memcpy(g->members + g->n_members, ids, n * sizeof(*ids));
    *first = (uint32_t)g->n_members;
    g->n_members += n;
    return MEMFIT_OK;
}

enum memfit_status mf_grammar_add_prop(memfit_grammar *g, uint32_t name, uint32_t node,
                                       uint32_t *out)
{
    if (GROW(g, props, n_props, cap_props, 1) != MEMFIT_OK)
        return MEMFIT_E_NOMEM;
    g->props[g->n_props] = (struct mf_gprop){name, node};
    *out = (uint32_t)g->n_props++;
    return MEMFIT_OK;
}

uint8_t mf_grammar_class_of(uint8_t b)
{
    switch (b) {
    case '{':
        return MF_GC_OBJECT;
    case '[':
        return MF_GC_ARRAY;
    case '"':
        return MF_GC_STRING;
    case 't':
        return MF_GC_TRUE;
    case 'f':
        return MF_GC_FALSE;
    case 'n':
        return MF_GC_NULL;
    default:
        return b == '-' || (b >= '0' && b <= '9') ? MF_GC_NUMBER : 0;
    }
}

/* A LITERALS node of the given texts. */
static enum memfit_status add_literals(memfit_grammar *g, const char *const *texts, size_t n,
                                       uint32_t *out)
{
    struct mf_gnode node = {
        .kind = MF_G_LITERALS, .n = (uint16_t)n, .max = MF_G_NONE, .sub = MF_G_NONE};
    for (size_t i = 0; i < n; i++) {
        uint32_t lit = 0;
        enum memfit_status st = mf_grammar_add_literal(g, texts[i], strlen(texts[i]), &lit);
        if (st != MEMFIT_OK)
            return st;
        if (i == 0)
            node.first = lit;
        node.classes |= mf_grammar_class_of((uint8_t)texts[i][0]);
    }
    return mf_grammar_add_node(g, &node, out);
}

enum memfit_status mf_grammar_any(memfit_grammar *g, uint32_t *out)
{
    if (g->any != MF_G_NONE) {
        *out = g->any;
        return MEMFIT_OK;
    }
    /* The choice first (its index is what the containers refer to), its
     * members after. */
    struct mf_gnode choice = {
        .kind = MF_G_CHOICE, .n = 6, .max = MF_G_NONE, .sub = MF_G_NONE, .classes = 0x7f};
    uint32_t any, m[6];
    enum memfit_status st = mf_grammar_add_node(g, &choice, &any);
    struct mf_gnode object = {
        .kind = MF_G_OBJECT, .classes = MF_GC_OBJECT, .max = MF_G_NONE, .sub = any};
    struct mf_gnode array = {
        .kind = MF_G_ARRAY, .classes = MF_GC_ARRAY, .max = MF_G_NONE, .sub = any};
    struct mf_gnode string = {
        .kind = MF_G_STRING, .classes = MF_GC_STRING, .max = MF_G_NONE, .sub = MF_G_NONE};
    struct mf_gnode number = {
        .kind = MF_G_NUMBER, .classes = MF_GC_NUMBER, .max = MF_G_NONE, .sub = MF_G_NONE};
    static const char *const bools[] = {"true", "false"}, *const null[] = {"null"};
    if (st == MEMFIT_OK)
        st = mf_grammar_add_node(g, &object, &m[0]);
    if (st == MEMFIT_OK)
        st = mf_grammar_add_node(g, &array, &m[1]);
    if (st == MEMFIT_OK)
        st = mf_grammar_add_node(g, &string, &m[2]);
    if (st == MEMFIT_OK)
        st = mf_grammar_add_node(g, &number, &m[3]);
    if (st == MEMFIT_OK)
        st = add_literals(g, bools, 2, &m[4]);
    if (st == MEMFIT_OK)
        st = add_literals(g, null, 1, &m[5]);
    if (st == MEMFIT_OK)
        st = mf_grammar_add_members(g, m, 6, &g->nodes[any].first);
    if (st != MEMFIT_OK)
        return st;
    g->any = any;
    *out = any;
    return MEMFIT_OK;
}

enum memfit_status memfit_grammar_json_object(memfit_grammar **out)
{
    if (!out)
        return memfit_fail(MEMFIT_E_MISUSE, "grammar: NULL argument");
    memfit_grammar *g = mf_grammar_new();
    if (!g)
        return MEMFIT_E_NOMEM;
    uint32_t any;
    enum memfit_status st = mf_grammar_any(g, &any);
    if (st == MEMFIT_OK)
        g->root = g->members[g->nodes[any].first]; /* the object member */
    if (st != MEMFIT_OK) {
        memfit_grammar_free(g);
        return st;
    }
    *out = g;
    return MEMFIT_OK;
}

/* ---- the automaton ------------------------------------------------------ */

#define MAX_FRAMES      64 /* a container and its open child per level: 31 levels + the root */
#define MAX_WS          20
#define MAX_INT_DIGITS  20
#define MAX_FRAC_DIGITS 20
#define MAX_EXP_DIGITS  2 /* 1e99 at most: every number fits a double */

enum frame_kind {
    F_VALUE,    /* no byte of the value yet */
    F_OBJECT,   /* state: O_* */
    F_ARRAY,    /* state: A_*; count: items begun */
    F_STRING,   /* state: S_*; count: characters (only with a length limit) */
    F_KEY_LIT,  /* a declared name: mask = candidates, count = bytes matched */
    F_KEY_FREE, /* any name (string states), mask/count the declared ones still matching */
    F_NUMBER,   /* state: N_*; count: digits of the current part */
    F_LITERAL,  /* mask = candidates, count = bytes matched */
    F_PREFIX,   /* the prefix of an alternative: mask = candidates, count = bytes matched */
    F_SUFFIX,   /* the suffix of alternative aux: count = bytes matched */
};

enum { O_FIRST, O_NEXT, O_COLON, O_AFTER };
enum { A_FIRST, A_NEXT, A_AFTER };
/* In a string: S_U8 expects aux more continuation bytes (80-BF); the
 * S_U8_* states restrict the first one (no overlong forms, surrogates or
 * code points past U+10FFFF). */
enum { S_IN, S_ESC, S_HEX, S_U8, S_U8_E0, S_U8_ED, S_U8_F0, S_U8_F4 };
enum { N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP };

struct frame {
    uint64_t mask;
    uint32_t count;
    uint16_t node;
    uint8_t kind;
    uint8_t state;
    uint8_t aux;
    uint8_t pad[7]; /* zero: states are compared as bytes */
};

struct gstate {
    uint16_t n; /* frames in use; 0: the value is complete */
    uint8_t ws; /* whitespace bytes in a row */
    uint8_t pad[5];
    struct frame f[MAX_FRAMES];
};

/* The bytes of a state that matter (compared and hashed as they are). */
static inline size_t state_bytes(const struct gstate *s)
{
    return offsetof(struct gstate, f) + s->n * sizeof(struct frame);
}

static void state_init(const memfit_grammar *g, struct gstate *s)
{
    memset(s, 0, offsetof(struct gstate, f) + sizeof(struct frame));
    s->n = 1;
    s->f[0].kind = g->n_alts ? F_PREFIX : F_VALUE;
    s->f[0].node = (uint16_t)g->root;
    if (g->n_alts)
        s->f[0].mask = (g->n_alts >= 64 ? ~0ull : (1ull << g->n_alts) - 1);
}

enum { R_REJECT, R_OK, R_POP_RETRY, R_RETRY };

static inline bool is_ws(uint8_t b)
{
    return b == ' ' || b == '\n' || b == '\t' || b == '\r';
}

static inline const struct mf_glit *lit_of(const memfit_grammar *g, uint32_t i)
{
    return &g->lits[i];
}

/* Candidates of `mask` among literals first.. whose byte at pos is b. */
static uint64_t match_literals(const memfit_grammar *g, uint32_t first, uint64_t mask, uint32_t pos,
                               uint8_t b)
{
    uint64_t out = 0;
    for (uint64_t m = mask; m; m &= m - 1) {
        int i = __builtin_ctzll(m);
        const struct mf_glit *l = lit_of(g, first + (uint32_t)i);
        if (l->len > pos && (uint8_t)g->pool[l->off + pos] == b)
            out |= 1ull << i;
    }
    return out;
}

/* The candidate of `mask` that is exactly pos bytes long, or -1. */
static int literal_done(const memfit_grammar *g, uint32_t first, uint64_t mask, uint32_t pos)
{
    for (uint64_t m = mask; m; m &= m - 1) {
        int i = __builtin_ctzll(m);
        if (lit_of(g, first + (uint32_t)i)->len == pos)
            return i;
    }
    return -1;
}

/* Whether any candidate of `mask` is longer than pos bytes. */
static bool literal_longer(const memfit_grammar *g, uint32_t first, uint64_t mask, uint32_t pos)
{
    for (uint64_t m = mask; m; m &= m - 1)
        if (lit_of(g, first + (uint32_t)__builtin_ctzll(m))->len > pos)
            return true;
    return false;
}

static inline uint64_t all_of(uint32_t n)
{
    return n >= 64 ? ~0ull : (1ull << n) - 1;
}

/* The first byte of a value: picks the choice member and the frame kind. */
static int start_value(const memfit_grammar *g, struct gstate *s, struct frame *f, uint8_t b)
{
    uint32_t id = f->node;
    uint8_t cls = mf_grammar_class_of(b);
    if (!cls)
        return R_REJECT;
    while (g->nodes[id].kind == MF_G_CHOICE) {
        const struct mf_gnode *c = &g->nodes[id];
        uint32_t next = MF_G_NONE;
        for (uint32_t i = 0; i < c->n && next == MF_G_NONE; i++)
            if (g->nodes[g->members[c->first + i]].classes & cls)
                next = g->members[c->first + i];
        if (next == MF_G_NONE)
            return R_REJECT;
        id = next;
    }
    const struct mf_gnode *node = &g->nodes[id];
    if (!(node->classes & cls))
        return R_REJECT;
    memset(f, 0, sizeof(*f));
    f->node = (uint16_t)id;
    switch (node->kind) {
    case MF_G_OBJECT:
    case MF_G_ARRAY:
        if (s->n >= MAX_FRAMES) /* no room for its child */
            return R_REJECT;
        f->kind = node->kind == MF_G_OBJECT ? F_OBJECT : F_ARRAY;
        return R_OK;
    case MF_G_STRING:
        f->kind = F_STRING;
        return R_OK;
    case MF_G_NUMBER:
    case MF_G_INTEGER:
        f->kind = F_NUMBER;
        f->state = b == '-' ? N_MINUS : b == '0' ? N_ZERO : N_INT;
        f->count = f->state == N_INT;
        return R_OK;
    default: /* MF_G_LITERALS */
        f->kind = F_LITERAL;
        f->mask = match_literals(g, node->first, all_of(node->n), 0, b);
        f->count = 1;
        if (!f->mask)
            return R_REJECT;
        if (literal_done(g, node->first, f->mask, 1) >= 0 &&
            !literal_longer(g, node->first, f->mask, 1))
            s->n--;
        return R_OK;
    }
}

/* A structural whitespace byte: allowed up to MAX_WS in a row. */
static int take_ws(struct gstate *s)
{
    return ++s->ws <= MAX_WS ? R_OK : R_REJECT;
}

static void push(struct gstate *s, uint8_t kind, uint32_t node)
{
    struct frame *c = &s->f[s->n++];
    memset(c, 0, sizeof(*c));
    c->kind = kind;
    c->node = (uint16_t)node;
}

/* Whether the object of frame f may take another key. */
static bool can_add_key(const struct mf_gnode *o, const struct frame *f)
{
    return o->sub != MF_G_NONE || (all_of(o->n) & ~f->mask) != 0;
}

static int object_step(const memfit_grammar *g, struct gstate *s, struct frame *f, uint8_t b)
{
    const struct mf_gnode *o = &g->nodes[f->node];
    if (is_ws(b))
        return take_ws(s);
    switch (f->state) {
    case O_FIRST:
    case O_NEXT:
        if (b == '}' && f->state == O_FIRST && o->required == 0) {
            s->n--;
            return R_OK;
        }
        if (b != '"' || !can_add_key(o, f))
            return R_REJECT;
        f->state = O_COLON;
        if (o->sub == MF_G_NONE) {
            push(s, F_KEY_LIT, f->node);
            s->f[s->n - 1].mask = all_of(o->n) & ~f->mask;
        } else {
            push(s, F_KEY_FREE, f->node);
            s->f[s->n - 1].mask = all_of(o->n);
        }
        s->f[s->n - 1].count = 1; /* the opening quote is the names' first byte */
        return R_OK;
    case O_COLON: {
        if (b != ':')
            return R_REJECT;
        f->state = O_AFTER;
        uint32_t child = o->sub;
        if (f->count != MF_G_NONE) {
            f->mask |= 1ull << f->count;
            child = g->props[o->first + f->count].node;
        }
        push(s, F_VALUE, child);
        return R_OK;
    }
    default: /* O_AFTER */
        if (b == ',' && can_add_key(o, f)) {
            f->state = O_NEXT;
            return R_OK;
        }
        if (b == '}' && (o->required & ~f->mask) == 0) {
            s->n--;
            return R_OK;
        }
        return R_REJECT;
    }
}

static int array_step(const memfit_grammar *g, struct gstate *s, struct frame *f, uint8_t b)
{
    const struct mf_gnode *a = &g->nodes[f->node];
    if (is_ws(b))
        return take_ws(s);
    if (f->state == A_AFTER) {
        if (b == ',' && f->count < a->max) {
            f->state = A_NEXT;
            return R_OK;
        }
        if (b == ']' && f->count >= a->min) {
            s->n--;
            return R_OK;
        }
        return R_REJECT;
    }
    if (b == ']' && f->state == A_FIRST && a->min == 0) {
        s->n--;
        return R_OK;
    }
    if (f->state == A_FIRST && a->max == 0)
        return R_REJECT;
    f->count++;
    f->state = A_AFTER;
    push(s, F_VALUE, a->sub);
    return R_RETRY;
}

enum { STR_REJECT, STR_CHAR, STR_MORE, STR_END };

static inline bool is_hex(uint8_t b)
{
    return (b >= '0' && b <= '9') || ((b | 0x20) >= 'a' && (b | 0x20) <= 'f');
}

/*
 * One byte of a string's content. STR_CHAR: it begins a character (to be
 * counted), STR_MORE: it continues one, STR_END: the closing quote.
 */
static int string_byte(struct frame *f, uint8_t b, bool escapes)
{
    switch (f->state) {
    case S_IN:
        if (b == '"')
            return STR_END;
        if (b == '\\') {
            if (!escapes)
                return STR_REJECT;
            f->state = S_ESC;
            return STR_CHAR;
        }
        if (b < 0x20)
            return STR_REJECT;
        if (b < 0x80)
            return STR_CHAR;
        if (b >= 0xC2 && b <= 0xDF) {
            f->state = S_U8;
            f->aux = 1;
        } else if (b >= 0xE0 && b <= 0xEF) {
            f->state = b == 0xE0 ? S_U8_E0 : b == 0xED ? S_U8_ED : S_U8;
            f->aux = 2;
        } else if (b >= 0xF0 && b <= 0xF4) {
            f->state = b == 0xF0 ? S_U8_F0 : b == 0xF4 ? S_U8_F4 : S_U8;
            f->aux = 3;
        } else {
            return STR_REJECT;
        }
        return STR_CHAR;
    case S_ESC:
        if (b == 'u') {
            f->state = S_HEX;
            f->aux = 0;
            return STR_MORE;
        }
        if (!strchr("\"\\/bfnrt", b) || b == 0)
            return STR_REJECT;
        f->state = S_IN;
        return STR_MORE;
    case S_HEX: {
        /* aux: digits seen (bits 0-2), "first digit was D" (bit 3), "all zero" (bit 4) */
        if (!is_hex(b))
            return STR_REJECT;
        unsigned k = f->aux & 7;
        bool zero = b == '0';
        if (k == 0)
            f->aux = (uint8_t)(((b | 0x20) == 'd' ? 8 : 0) | (zero ? 16 : 0));
        else if (k == 1 && (f->aux & 8) && !(b >= '0' && b <= '7'))
            return STR_REJECT; /* \uD800-\uDFFF: a surrogate */
        else if (!zero)
            f->aux &= (uint8_t)~16;
        if (k == 3) {
            if ((f->aux & 16) && zero)
                return STR_REJECT; /* \u0000 */
            f->state = S_IN;
            f->aux = 0;
            return STR_MORE;
        }
        f->aux = (uint8_t)((f->aux & ~7) | (k + 1));
        return STR_MORE;
    }
    default: {
        uint8_t lo = 0x80, hi = 0xBF;
        if (f->state == S_U8_E0)
            lo = 0xA0;
        else if (f->state == S_U8_ED)
            hi = 0x9F;
        else if (f->state == S_U8_F0)
            lo = 0x90;
        else if (f->state == S_U8_F4)
            hi = 0x8F;
        if (b < lo || b > hi)
            return STR_REJECT;
        f->state = --f->aux ? S_U8 : S_IN;
        return STR_MORE;
    }
    }
}

static int string_step(const memfit_grammar *g, struct gstate *s, struct frame *f, uint8_t b)
{
    const struct mf_gnode *node = &g->nodes[f->node];
    bool counted = node->min > 0 || node->max != MF_G_NONE;
    int r = string_byte(f, b, true);
    if (r == STR_REJECT)
        return R_REJECT;
    if (r == STR_END) {
        if (counted && f->count < node->min)
            return R_REJECT;
        s->n--;
        return R_OK;
    }
    if (r == STR_CHAR && counted) {
        if (f->count >= node->max)
            return R_REJECT;
        f->count++;
    }
    return R_OK;
}

/* The key frame ended naming property `prop` (MF_G_NONE: another name). */
static int key_done(struct gstate *s, uint32_t prop)
{
    s->n--;
    s->f[s->n - 1].count = prop;
    return R_OK;
}

/* The literal index of the first declared name of object node o (the
 * compiler adds an object's names as consecutive literals). */
static inline uint32_t names_of(const memfit_grammar *g, const struct mf_gnode *o)
{
    return o->n ? g->props[o->first].name : 0;
}

static int key_step(const memfit_grammar *g, struct gstate *s, struct frame *f, uint8_t b)
{
    const struct mf_gnode *o = &g->nodes[f->node];
    uint32_t names = names_of(g, o);
    if (f->kind == F_KEY_LIT) {
        f->mask = match_literals(g, names, f->mask, f->count, b);
        if (!f->mask)
            return R_REJECT;
        f->count++;
        int done = literal_done(g, names, f->mask, f->count);
        return done >= 0 ? key_done(s, (uint32_t)done) : R_OK;
    }
    /* F_KEY_FREE: a string. With declared names, escapes only where they
     * spell one of those names, so that a name equal to a declared one is
     * always recognised as it. */
    uint64_t next = o->n && f->mask ? match_literals(g, names, f->mask, f->count, b) : 0;
    if (o->n && (f->state == S_ESC || f->state == S_HEX) && !next)
        return R_REJECT;
    int r = string_byte(f, b, o->n == 0 || next != 0);
    if (r == STR_REJECT)
        return R_REJECT;
    f->mask = next;
    f->count = next ? f->count + 1 : 0; /* 0 once none matches: fewer distinct states */
    if (r != STR_END)
        return R_OK;
    int done = f->mask ? literal_done(g, names, f->mask, f->count) : -1;
    if (done >= 0 && (s->f[s->n - 2].mask >> done & 1))
        return R_REJECT; /* a declared property a second time */
    return key_done(s, done >= 0 ? (uint32_t)done : MF_G_NONE);
}

static int number_step(const memfit_grammar *g, struct frame *f, uint8_t b)
{
    bool integer = g->nodes[f->node].kind == MF_G_INTEGER;
    bool digit = b >= '0' && b <= '9';
    switch (f->state) {
    case N_MINUS:
        if (!digit)
            return R_REJECT;
        f->state = b == '0' ? N_ZERO : N_INT;
        f->count = 1;
        return R_OK;
    case N_ZERO:
    case N_INT:
        if (digit && f->state == N_INT && f->count < MAX_INT_DIGITS) {
            f->count++;
            return R_OK;
        }
        break;
    case N_DOT:
        if (!digit)
            return R_REJECT;
        f->state = N_FRAC;
        f->count = 1;
        return R_OK;
    case N_FRAC:
        if (digit && f->count < MAX_FRAC_DIGITS) {
            f->count++;
            return R_OK;
        }
        break;
    case N_E:
        if (b == '+' || b == '-') {
            f->state = N_ESIGN;
            return R_OK;
        }
        /* fall through */
    case N_ESIGN:
        if (!digit)
            return R_REJECT;
        f->state = N_EXP;
        f->count = 1;
        return R_OK;
    default: /* N_EXP */
        if (digit && f->count < MAX_EXP_DIGITS) {
            f->count++;
            return R_OK;
        }
        return R_POP_RETRY;
    }
    /* N_ZERO, N_INT, N_FRAC: a fraction, an exponent, or the end. */
    if (!integer && b == '.' && f->state != N_FRAC) {
        f->state = N_DOT;
        return R_OK;
    }
    if (!integer && (b == 'e' || b == 'E')) {
        f->state = N_E;
        f->count = 0;
        return R_OK;
    }
    return R_POP_RETRY;
}

static int literal_step(const memfit_grammar *g, struct gstate *s, struct frame *f, uint8_t b)
{
    uint32_t first = g->nodes[f->node].first;
    uint64_t next = match_literals(g, first, f->mask, f->count, b);
    if (!next)
        return literal_done(g, first, f->mask, f->count) >= 0 ? R_POP_RETRY : R_REJECT;
    f->mask = next;
    f->count++;
    if (literal_done(g, first, next, f->count) >= 0 && !literal_longer(g, first, next, f->count))
        s->n--;
    return R_OK;
}

/* Whether the frame may end here without a byte of its own (a number or a
 * literal that the next byte would close). */
static bool frame_can_end(const memfit_grammar *g, const struct frame *f)
{
    if (f->kind == F_NUMBER)
        return f->state == N_ZERO || f->state == N_INT || f->state == N_FRAC || f->state == N_EXP;
    if (f->kind == F_LITERAL)
        return literal_done(g, g->nodes[f->node].first, f->mask, f->count) >= 0;
    return false;
}

static bool state_complete(const memfit_grammar *g, const struct gstate *s)
{
    return s->n == 0 || (s->n == 1 && frame_can_end(g, &s->f[0]));
}

/* A byte of the prefixes still matching; the one completed becomes its value
 * (under its suffix). No prefix begins another, so the first complete is the one. */
static int prefix_step(const memfit_grammar *g, struct gstate *s, struct frame *f, uint8_t b)
{
    uint64_t next = 0;
    for (uint64_t m = f->mask; m; m &= m - 1) {
        int i = __builtin_ctzll(m);
        const struct mf_glit *l = lit_of(g, g->alts[i].prefix);
        if (l->len > f->count && (uint8_t)g->pool[l->off + f->count] == b)
            next |= 1ull << i;
    }
    if (!next)
        return R_REJECT;
    f->mask = next;
    f->count++;
    for (uint64_t m = next; m; m &= m - 1) {
        int i = __builtin_ctzll(m);
        if (lit_of(g, g->alts[i].prefix)->len != f->count)
            continue;
        const struct mf_galt *a = &g->alts[i];
        memset(f, 0, sizeof(*f));
        if (a->suffix == MF_G_NONE) {
            f->kind = F_VALUE;
            f->node = (uint16_t)a->root;
        } else {
            f->kind = F_SUFFIX;
            f->aux = (uint8_t)i;
            push(s, F_VALUE, a->root);
        }
        break;
    }
    return R_OK;
}

/* A byte of the suffix after the value (whitespace only as the suffix has it). */
static int suffix_step(const memfit_grammar *g, struct gstate *s, struct frame *f, uint8_t b)
{
    const struct mf_glit *l = lit_of(g, g->alts[f->aux].suffix);
    if ((uint8_t)g->pool[l->off + f->count] != b)
        return R_REJECT;
    if (++f->count == l->len)
        s->n--;
    return R_OK;
}

/* Advances s over byte b; false (s then undefined) when b is refused. */
static bool step(const memfit_grammar *g, struct gstate *s, uint8_t b)
{
    if (!is_ws(b))
        s->ws = 0;
    for (;;) {
        if (s->n == 0)
            return false;
        struct frame *f = &s->f[s->n - 1];
        int r;
        switch (f->kind) {
        case F_VALUE:
            if (is_ws(b)) /* none before the whole value, nor before an alternative's */
                r = s->n == 1 || s->f[s->n - 2].kind == F_SUFFIX ? R_REJECT : take_ws(s);
            else
                r = start_value(g, s, f, b);
            break;
        case F_OBJECT:
            r = object_step(g, s, f, b);
            break;
        case F_ARRAY:
            r = array_step(g, s, f, b);
            break;
        case F_STRING:
            r = string_step(g, s, f, b);
            break;
        case F_KEY_LIT:
        case F_KEY_FREE:
            r = key_step(g, s, f, b);
            break;
        case F_NUMBER:
            r = number_step(g, f, b);
            break;
        case F_PREFIX:
            r = prefix_step(g, s, f, b);
            break;
        case F_SUFFIX:
            r = suffix_step(g, s, f, b);
            break;
        default:
            r = literal_step(g, s, f, b);
            break;
        }
        if (r == R_POP_RETRY)
            s->n--;
        else if (r != R_RETRY)
            return r == R_OK;
    }
}

/* ---- the vocabulary trie ------------------------------------------------ */

/* Trie nodes in depth-first order: node i is the byte at depth `depth` of
 * the prefix its path spells; its subtree is [i + 1, skip). The tokens whose
 * bytes are exactly that prefix are ids[tok .. tok + n_tok). */
struct trie_node {
    uint32_t skip;
    uint32_t tok;
    uint16_t depth;
    uint8_t byte;
    uint8_t n_tok;
};

struct memfit_grammar_vocab {
    const memfit_tokenizer *tok;
    uint32_t n_vocab;
    struct trie_node *nodes;
    size_t n_nodes;
    int32_t *ids; /* tokens with bytes, in byte order */
    size_t n_ids;
    int32_t *eog; /* end-of-generation tokens */
    size_t n_eog;
    uint16_t max_len; /* bytes of the longest token */
};

struct piece {
    const uint8_t *bytes;
    uint32_t len;
    int32_t id;
};

static int cmp_piece(const void *a, const void *b)
{
    const struct piece *x = a, *y = b;
    uint32_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->bytes, y->bytes, n);
    if (c)
        return c;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

void memfit_grammar_vocab_free(memfit_grammar_vocab *v)
{
    if (!v)
        return;
    memfit_free(v->nodes);
    memfit_free(v->ids);
    memfit_free(v->eog);
    memfit_free(v);
}

#define MAX_TOKEN_BYTES 1024 /* longer tokens are never allowed */

/* Trie nodes per token a plan counts. A BPE token is a merge of two tokens,
 * the first of them its prefix, so each adds few nodes: Qwen3's 151,669
 * tokens make ~330 k (2.2 a token; grammar_vocab_check prints the bytes). 4
 * leaves room for vocabularies that share fewer prefixes. */
#define PLAN_NODES_PER_TOKEN 4

uint64_t memfit_grammar_vocab_plan_bytes(uint32_t n_vocab)
{
    /* What memfit_grammar_vocab_create holds at its peak, when the nodes are
     * allocated: the pieces being sorted, the ids, the end-of-generation
     * tokens and the nodes (each array one entry longer than its count). */
    uint64_t n = (uint64_t)n_vocab + 1;
    return sizeof(struct memfit_grammar_vocab) + n * (sizeof(struct piece) + 2 * sizeof(int32_t)) +
           (PLAN_NODES_PER_TOKEN * (uint64_t)n_vocab + 1) * sizeof(struct trie_node);
}

/* Writes the trie nodes of the sorted pieces into v->nodes, or only counts
 * them when v->nodes is NULL. */
static size_t build_trie(memfit_grammar_vocab *v, const struct piece *p, size_t n)
{
    uint32_t open[MAX_TOKEN_BYTES + 1]; /* the node at each depth of the current path */
    struct trie_node *t = v->nodes;
    size_t n_nodes = 0;
    uint32_t path = 0; /* the current path's depth: the previous piece's length */
    for (size_t i = 0; i < n; i++) {
        uint32_t lcp = 0;
        if (i > 0)
            while (lcp < path && lcp < p[i].len && p[i - 1].bytes[lcp] == p[i].bytes[lcp])
                lcp++;
        if (i > 0 && lcp == p[i].len && lcp == path) { /* the same bytes as the previous one */
            if (t && t[open[lcp]].n_tok < UINT8_MAX)
                t[open[lcp]].n_tok++;
            continue;
        }
        for (uint32_t d = lcp + 1; t && d <= path; d++)
            t[open[d]].skip = (uint32_t)n_nodes;
        for (uint32_t d = lcp + 1; d <= p[i].len; d++) {
            if (t)
                t[n_nodes] = (struct trie_node){
                    .depth = (uint16_t)d, .byte = p[i].bytes[d - 1], .tok = (uint32_t)i};
            open[d] = (uint32_t)n_nodes++;
        }
        if (t)
            t[open[p[i].len]].n_tok = 1;
        path = p[i].len;
    }
    for (uint32_t d = 1; t && d <= path; d++)
        t[open[d]].skip = (uint32_t)n_nodes;
    return n_nodes;
}

enum memfit_status memfit_grammar_vocab_create(const memfit_tokenizer *tok,
                                               memfit_grammar_vocab **out)
{
    if (!tok || !out)
        return memfit_fail(MEMFIT_E_MISUSE, "grammar vocab: NULL argument");
    struct memfit_tokenizer_info info;
    memfit_tokenizer_get_info(tok, &info);
    memfit_grammar_vocab *v = memfit_calloc_in(MEMFIT_ALLOC_MODEL, 1, sizeof(*v));
    struct piece *p = memfit_malloc_in(MEMFIT_ALLOC_MODEL, (info.n_vocab + 1) * sizeof(*p));
    if (!v || !p)
        goto nomem;
    v->tok = tok;
    v->n_vocab = info.n_vocab;
    size_t n = 0, n_eog = 0;
    for (uint32_t id = 0; id < info.n_vocab; id++) {
        const char *bytes;
        size_t len;
        if (memfit_tokenizer_is_eog(tok, (int32_t)id)) {
            n_eog++;
            continue;
        }
        if (memfit_tokenizer_piece(tok, (int32_t)id, false, &bytes, &len) != MEMFIT_OK ||
            len == 0 || len > MAX_TOKEN_BYTES)
            continue;
        p[n++] = (struct piece){(const uint8_t *)bytes, (uint32_t)len, (int32_t)id};
        if (len > v->max_len)
            v->max_len = (uint16_t)len;
    }
    v->eog = memfit_malloc_in(MEMFIT_ALLOC_MODEL, (n_eog + 1) * sizeof(int32_t));
    v->ids = memfit_malloc_in(MEMFIT_ALLOC_MODEL, (n + 1) * sizeof(int32_t));
    if (!v->eog || !v->ids)
        goto nomem;
    for (uint32_t id = 0; id < info.n_vocab; id++)
        if (memfit_tokenizer_is_eog(tok, (int32_t)id))
            v->eog[v->n_eog++] = (int32_t)id;
    qsort(p, n, sizeof(*p), cmp_piece);
    for (size_t i = 0; i < n; i++)
        v->ids[i] = p[i].id;
    v->n_ids = n;
    size_t n_nodes = build_trie(v, p, n);
    v->nodes = memfit_malloc_in(MEMFIT_ALLOC_MODEL, (n_nodes + 1) * sizeof(*v->nodes));
    if (!v->nodes)
        goto nomem;
    v->n_nodes = build_trie(v, p, n);
    memfit_free(p);
    *out = v;
    return MEMFIT_OK;
nomem:
    memfit_free(p);
    memfit_grammar_vocab_free(v);
    return MEMFIT_E_NOMEM;
}

/* ---- the matcher ---------------------------------------------------------- */

#define CACHE_SLOTS 8

struct cache_slot {
    uint64_t hash;
    uint64_t used; /* the matcher's tick when last used; 0: empty */
    size_t n_allowed;
    uint64_t *bits;
    struct gstate key;
};

struct memfit_grammar_matcher {
    const memfit_grammar *g;
    const memfit_grammar_vocab *v;
    struct gstate cur;
    struct gstate *walk;      /* [max_len + 1]: the state at each depth of the trie walk */
    const struct gstate **at; /* [max_len + 1]: the state in force at each depth */
    size_t n_words;
    uint64_t tick;
    struct cache_slot *slots; /* [CACHE_SLOTS] */
};

void memfit_grammar_matcher_free(memfit_grammar_matcher *m)
{
    if (!m)
        return;
    for (size_t i = 0; m->slots && i < CACHE_SLOTS; i++)
        memfit_free(m->slots[i].bits);
    memfit_free(m->slots);
    memfit_free(m->walk);
    memfit_free(m->at);
    memfit_free(m);
}

enum memfit_status memfit_grammar_matcher_create(const memfit_grammar *g,
                                                 const memfit_grammar_vocab *v,
                                                 memfit_grammar_matcher **out)
{
    if (!g || !out || g->root == MF_G_NONE)
        return memfit_fail(MEMFIT_E_MISUSE, "grammar matcher: NULL argument");
    memfit_grammar_matcher *m = memfit_calloc_in(MEMFIT_ALLOC_MODEL, 1, sizeof(*m));
    if (!m)
        return MEMFIT_E_NOMEM;
    m->g = g;
    m->v = v;
    state_init(g, &m->cur);
    size_t depth = v ? v->max_len : 0;
    m->walk = memfit_malloc_in(MEMFIT_ALLOC_MODEL, (depth + 1) * sizeof(struct gstate));
    m->at = memfit_malloc_in(MEMFIT_ALLOC_MODEL, (depth + 1) * sizeof(*m->at));
    if (!m->walk || !m->at)
        goto nomem;
    if (v) {
        m->n_words = (v->n_vocab + 63) / 64;
        m->slots = memfit_calloc_in(MEMFIT_ALLOC_MODEL, CACHE_SLOTS, sizeof(*m->slots));
        if (!m->slots)
            goto nomem;
        for (size_t i = 0; i < CACHE_SLOTS; i++) {
            m->slots[i].bits = memfit_malloc_in(MEMFIT_ALLOC_MODEL, m->n_words * sizeof(uint64_t));
            if (!m->slots[i].bits)
                goto nomem;
        }
    }
    *out = m;
    return MEMFIT_OK;
nomem:
    memfit_grammar_matcher_free(m);
    return MEMFIT_E_NOMEM;
}

/* Runs `len` bytes from the current state into m->walk[0]; the offset of
 * the first byte refused, or len. */
static size_t run_bytes(memfit_grammar_matcher *m, const uint8_t *bytes, size_t len)
{
    struct gstate *s = &m->walk[0];
    memcpy(s, &m->cur, state_bytes(&m->cur));
    for (size_t i = 0; i < len; i++)
        if (!step(m->g, s, bytes[i]))
            return i;
    return len;
}

enum memfit_status memfit_grammar_matcher_accept_bytes(memfit_grammar_matcher *m, const char *bytes,
                                                       size_t len)
{
    if (!m || (len && !bytes))
        return memfit_fail(MEMFIT_E_MISUSE, "grammar matcher: NULL argument");
    size_t at = run_bytes(m, (const uint8_t *)bytes, len);
    if (at < len)
        return memfit_fail(MEMFIT_E_INVALID,
                           "grammar: byte %zu (0x%02x) does not continue the output", at,
                           (unsigned)(uint8_t)bytes[at]);
    memcpy(&m->cur, &m->walk[0], state_bytes(&m->walk[0]));
    return MEMFIT_OK;
}

bool memfit_grammar_matcher_is_complete(const memfit_grammar_matcher *m)
{
    return m && state_complete(m->g, &m->cur);
}

enum memfit_status memfit_grammar_matcher_accept_token(memfit_grammar_matcher *m, int32_t id)
{
    if (!m || !m->v)
        return memfit_fail(MEMFIT_E_MISUSE, "grammar matcher: no vocabulary");
    if (id < 0 || (uint32_t)id >= m->v->n_vocab)
        return memfit_fail(MEMFIT_E_RANGE, "grammar: token %d outside the vocabulary of %u",
                           (int)id, m->v->n_vocab);
    if (memfit_tokenizer_is_eog(m->v->tok, id)) {
        if (state_complete(m->g, &m->cur))
            return MEMFIT_OK;
        return memfit_fail(MEMFIT_E_INVALID,
                           "grammar: token %d ends the output before it is "
                           "complete",
                           (int)id);
    }
    const char *bytes;
    size_t len;
    enum memfit_status st = memfit_tokenizer_piece(m->v->tok, id, false, &bytes, &len);
    if (st != MEMFIT_OK)
        return st;
    if (len == 0 || len > MAX_TOKEN_BYTES || run_bytes(m, (const uint8_t *)bytes, len) < len)
        return memfit_fail(MEMFIT_E_INVALID, "grammar: token %d does not continue the output",
                           (int)id);
    memcpy(&m->cur, &m->walk[0], state_bytes(&m->walk[0]));
    return MEMFIT_OK;
}

static uint64_t hash_bytes(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* Whether byte b leaves state s as it is: printable ASCII other than the
 * quote and the backslash inside a string that counts nothing. Most of the
 * trie's bytes are such in a string, where they cost a test, not a copy. */
static inline bool string_noop(const memfit_grammar *g, const struct gstate *s, uint8_t b)
{
    const struct frame *f = &s->f[s->n - 1];
    if (f->state != S_IN || b < 0x20 || b > 0x7f || b == '"' || b == '\\')
        return false;
    if (f->kind == F_STRING)
        return g->nodes[f->node].min == 0 && g->nodes[f->node].max == MF_G_NONE;
    return f->kind == F_KEY_FREE && f->mask == 0;
}

/* The allowed set of the current state, computed into `bits`: the trie
 * walked with one automaton state per depth (at[d], which is w[d] or, when
 * the byte changed nothing, the state above it). */
static size_t walk_trie(memfit_grammar_matcher *m, uint64_t *bits)
{
    const memfit_grammar_vocab *v = m->v;
    const struct trie_node *t = v->nodes;
    const int32_t *ids = v->ids;
    struct gstate *w = m->walk;
    const struct gstate **at = m->at;
    memset(bits, 0, m->n_words * sizeof(uint64_t));
    size_t n_allowed = 0;
    at[0] = &m->cur;
    for (size_t i = 0; i < v->n_nodes;) {
        uint32_t d = t[i].depth;
        const struct gstate *prev = at[d - 1];
        if (prev->n == 0) {
            i = t[i].skip;
            continue;
        }
        if (string_noop(m->g, prev, t[i].byte)) {
            at[d] = prev;
        } else {
            struct gstate *s = &w[d];
            memcpy(s, prev, state_bytes(prev));
            if (!step(m->g, s, t[i].byte)) {
                i = t[i].skip;
                continue;
            }
            at[d] = s;
        }
        for (uint32_t k = 0; k < t[i].n_tok; k++) {
            uint32_t id = (uint32_t)ids[t[i].tok + k];
            bits[id / 64] |= 1ull << (id % 64);
        }
        n_allowed += t[i].n_tok;
        i++;
    }
    if (state_complete(m->g, &m->cur))
        for (size_t k = 0; k < v->n_eog; k++) {
            uint32_t id = (uint32_t)v->eog[k];
            n_allowed += !(bits[id / 64] >> (id % 64) & 1);
            bits[id / 64] |= 1ull << (id % 64);
        }
    return n_allowed;
}

enum memfit_status memfit_grammar_matcher_allowed(memfit_grammar_matcher *m, const uint64_t **bits,
                                                  size_t *n_allowed)
{
    if (!m || !m->v || !bits || !n_allowed)
        return memfit_fail(MEMFIT_E_MISUSE, "grammar matcher: no vocabulary");
    size_t key_len = state_bytes(&m->cur);
    uint64_t h = hash_bytes(&m->cur, key_len);
    struct cache_slot *slot = NULL, *oldest = &m->slots[0];
    for (size_t i = 0; i < CACHE_SLOTS && !slot; i++) {
        struct cache_slot *c = &m->slots[i];
        if (c->used && c->hash == h && memcmp(&c->key, &m->cur, key_len) == 0)
            slot = c;
        else if (c->used < oldest->used)
            oldest = c;
    }
    if (!slot) {
        slot = oldest;
        slot->n_allowed = walk_trie(m, slot->bits);
        slot->hash = h;
        memcpy(&slot->key, &m->cur, key_len);
    }
    slot->used = ++m->tick;
    if (slot->n_allowed == 0 && !state_complete(m->g, &m->cur))
        return memfit_fail(MEMFIT_E_INVALID,
                           "grammar: no token of the vocabulary can continue the output");
    *bits = slot->bits;
    *n_allowed = slot->n_allowed;
    return MEMFIT_OK;
}

enum memfit_status memfit_grammar_matcher_mask_logits(memfit_grammar_matcher *m, float *logits,
                                                      uint32_t n_logits, bool *must_end)
{
    if (!logits || !must_end)
        return memfit_fail(MEMFIT_E_MISUSE, "grammar matcher: NULL argument");
    const uint64_t *bits;
    size_t n_allowed;
    enum memfit_status st = memfit_grammar_matcher_allowed(m, &bits, &n_allowed);
    if (st != MEMFIT_OK)
        return st;
    uint32_t n_vocab = m->v->n_vocab < n_logits ? m->v->n_vocab : n_logits;
    for (uint32_t w = 0; w < (n_vocab + 63) / 64; w++) {
        uint64_t keep = bits[w];
        if (keep == ~0ull)
            continue;
        uint32_t end = (w + 1) * 64 < n_vocab ? (w + 1) * 64 : n_vocab;
        if (keep == 0) { /* the common case outside strings: a plain fill */
            for (uint32_t i = w * 64; i < end; i++)
                logits[i] = -INFINITY;
            continue;
        }
        for (uint32_t i = w * 64; i < end; i++)
            if (!(keep >> (i % 64) & 1))
                logits[i] = -INFINITY;
    }
    for (uint32_t i = n_vocab; i < n_logits; i++)
        logits[i] = -INFINITY;
    /* Complete, and only the end-of-generation tokens are left. */
    size_t n_end = 0;
    if (state_complete(m->g, &m->cur))
        for (size_t k = 0; k < m->v->n_eog; k++)
            n_end += bits[m->v->eog[k] / 64] >> (m->v->eog[k] % 64) & 1;
    *must_end = state_complete(m->g, &m->cur) && n_allowed == n_end;
    return MEMFIT_OK;
}

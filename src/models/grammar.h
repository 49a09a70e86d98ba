/*
 * The compiled form of a grammar, shared by the schema compiler
 * (grammar_schema.c) and the automaton that runs it (grammar.c).
 *
 * A grammar is a graph of nodes, each the set of JSON values one schema
 * allows: an object with declared properties, an array, a string, a number,
 * an integer, a set of literal texts (enum, const, true/false/null), or a
 * choice between nodes that start with different bytes (anyOf, a list of
 * types, any JSON value). "Any JSON value" is a choice whose object and
 * array members refer back to it, so the graph may have cycles.
 */
#ifndef MF_MODELS_GRAMMAR_H
#define MF_MODELS_GRAMMAR_H

#include <stddef.h>
#include <stdint.h>

#include "core/json.h"
#include "memfit/models.h"

enum mf_gnode_kind {
    MF_G_OBJECT = 0,
    MF_G_ARRAY = 1,
    MF_G_STRING = 2,
    MF_G_NUMBER = 3,
    MF_G_INTEGER = 4,
    MF_G_LITERALS = 5,
    MF_G_CHOICE = 6,
};

/* The classes of a value's first byte, which a choice picks its member by. */
enum {
    MF_GC_OBJECT = 1 << 0, /* { */
    MF_GC_ARRAY = 1 << 1,  /* [ */
    MF_GC_STRING = 1 << 2, /* " */
    MF_GC_NUMBER = 1 << 3, /* - 0-9 */
    MF_GC_TRUE = 1 << 4,   /* t */
    MF_GC_FALSE = 1 << 5,  /* f */
    MF_GC_NULL = 1 << 6,   /* n */
};

#define MF_G_NONE      UINT32_MAX /* no node; no limit */
#define MF_G_MAX_SET   64         /* properties of an object, literals of a set */
#define MF_G_MAX_NODES 65535

struct mf_gnode {
    uint8_t kind;      /* enum mf_gnode_kind */
    uint8_t classes;   /* MF_GC_* its values may start with */
    uint16_t n;        /* OBJECT: properties; LITERALS: literals; CHOICE: members */
    uint32_t first;    /* index of the first of them in props, lits or members */
    uint32_t min;      /* ARRAY: items; STRING: characters */
    uint32_t max;      /* the same, MF_G_NONE: no limit */
    uint32_t sub;      /* OBJECT: node of other properties (NONE: none); ARRAY: items */
    uint64_t required; /* OBJECT: bit i set when property i is required */
};

struct mf_gprop {
    uint32_t name; /* literal: the name as a JSON string, quotes included */
    uint32_t node;
};

struct mf_glit {
    uint32_t off, len; /* bytes in the pool */
};

/* One alternative of a grammar of alternatives: literal text, a JSON value, literal text. */
struct mf_galt {
    uint32_t prefix; /* literal (never empty) */
    uint32_t suffix; /* literal, or MF_G_NONE for none */
    uint32_t root;   /* the value's node */
};

struct memfit_grammar {
    struct mf_gnode *nodes;
    size_t n_nodes, cap_nodes;
    struct mf_gprop *props;
    size_t n_props, cap_props;
    struct mf_glit *lits;
    size_t n_lits, cap_lits;
    uint32_t *members;
    size_t n_members, cap_members;
    char *pool;
    size_t n_pool, cap_pool;
    uint32_t root;
    uint32_t any; /* the "any JSON value" choice once made, else MF_G_NONE */
    /* n_alts > 0: the language is one of the alternatives (prefix, value,
     * suffix), not the value at root alone; no prefix is a prefix of another. */
    struct mf_galt *alts;
    size_t n_alts;
};

/* An empty grammar (no nodes). NULL on allocation failure. */
memfit_grammar *mf_grammar_new(void);

/* Appends a node (index in *out); E_NOMEM, E_RANGE past MF_G_MAX_NODES. */
enum memfit_status mf_grammar_add_node(memfit_grammar *g, const struct mf_gnode *node,
                                       uint32_t *out);

/* Appends a literal of len bytes (index in *out). E_NOMEM. */
enum memfit_status mf_grammar_add_literal(memfit_grammar *g, const char *bytes, size_t len,
                                          uint32_t *out);

/* Appends n members (n_members before the call in *first). E_NOMEM. */
enum memfit_status mf_grammar_add_members(memfit_grammar *g, const uint32_t *ids, size_t n,
                                          uint32_t *first);

/* Appends a property (index in *out). E_NOMEM. */
enum memfit_status mf_grammar_add_prop(memfit_grammar *g, uint32_t name, uint32_t node,
                                       uint32_t *out);

/* Compiles a parsed JSON Schema into g (more nodes; the value's node in
 * *root); errors as memfit_grammar_from_json_schema. */
enum memfit_status mf_grammar_compile_schema(memfit_grammar *g, json_t *schema, uint32_t *root);

/* The node of any JSON value, made on first use. */
enum memfit_status mf_grammar_any(memfit_grammar *g, uint32_t *out);

/* The first-byte class of a literal text's first byte (0 for none). */
uint8_t mf_grammar_class_of(uint8_t byte);

#endif

/*
 * The interface a model family implements (internal to the engines layer).
 *
 * A family is one folder under src/engines/ exporting one
 * `const struct mf_family` and one line in registry.c. It sees local files
 * only: the generic code (model.c) resolves sources, fetches them, reads
 * remote headers into stand-in files, writes `quantize` copies into the
 * cache, and drives the manager. So a family's plan of a stand-in (a
 * sparse file holding a remote file's header, its data reading as zeros)
 * and of the real file give the same numbers by construction.
 */
#ifndef MEMFIT_ENGINES_FAMILY_H
#define MEMFIT_ENGINES_FAMILY_H

#include "memfit/engines.h"

/* What a family's config is made from. */
struct mf_family_entry {
    const struct memfit_manifest *manifest;
    const struct memfit_manifest_model *model; /* options, limits, max_concurrency */
    const char *name;                          /* the model's name */
    const char *where;                         /* "memfit.yaml:12" for messages */
};

struct mf_family {
    struct memfit_engine_family_info info;
    /* True when the set (possibly header-only) is this family's; leaves no
     * error behind when false. Required. */
    bool (*detect)(const memfit_tensors *set);
    /* Parses the entry's options and limits into a config. E_FORMAT naming
     * e->where, the option and the values it takes. Required. */
    enum memfit_status (*config_create)(const struct mf_family_entry *e, void **out);
    void (*config_free)(void *cfg);
    /*
     * Optional: the type the `quantize` option asks for ("q8_0"), or NULL
     * when the model is used as stored. When non-NULL, the generic code
     * writes the converted copy with `convert` into the cache once and
     * plans and loads that file instead of the source.
     */
    const char *(*convert_type)(const void *cfg);
    enum memfit_status (*convert)(void *cfg, const char *src_path, const char *dst_path);
    /* Optional: turns `plan`, the source's plan, into the converted copy's
     * (its weights from the source's names and shapes), for the plan before
     * the copy exists. */
    enum memfit_status (*convert_estimate)(void *cfg, const char *src_path,
                                           struct memfit_engine_plan *plan);
    /*
     * The exact plan of the local file `path` (the weights, or a stand-in
     * of their header): out->cost and the family's fields; the generic code
     * fills file_bytes, plan_source and family. Opens the header only.
     * Required.
     */
    enum memfit_status (*plan)(void *cfg, const char *path, struct memfit_engine_plan *out);
    /*
     * Loads `path` within `reserved` (the plan's cost, held for it), with
     * `budget` for per-request workspaces beyond the plan. Required.
     */
    enum memfit_status (*load)(void *cfg, const char *path,
                               const struct memfit_budget_cost *reserved, memfit_budget *budget,
                               void **out);
    /* Frees everything load made; cannot fail. Required. */
    void (*unload)(void *cfg, void *loaded);

    /* Operations, each NULL when the family lacks it (as info.ops says). */
    enum memfit_status (*embed_size)(void *loaded, const struct memfit_embed_params *p,
                                     uint32_t width, uint32_t height, size_t *out_floats,
                                     uint32_t *out_dim);
    enum memfit_status (*embed)(void *loaded, const struct memfit_image *const *images, size_t n,
                                const struct memfit_embed_params *p, float *out, size_t out_floats,
                                uint64_t *out_tokens);
    enum memfit_status (*generate_start)(void *loaded, const struct memfit_generation_request *req,
                                         void **out_gen, uint32_t *out_prompt_tokens);
    enum memfit_status (*generate_next)(void *gen, const char **text, size_t *len, bool *done);
    void (*generate_end)(void *gen, struct memfit_generate_result *result);
    void (*generate_tokens)(const void *gen, const struct memfit_sampled_token **tokens, size_t *n);
    void (*generate_prompt)(const void *gen, const int32_t **tokens,
                            const struct memfit_token_score **scores, size_t *n);
    /* Typed access for callers that need the engine itself. */
    enum memfit_status (*llm)(void *loaded, memfit_llm **model, const memfit_tokenizer **tok,
                              uint32_t *n_ctx);
    enum memfit_status (*llm_session_acquire)(void *loaded, memfit_llm_session **out);
    void (*llm_session_release)(void *loaded, memfit_llm_session *s);
    memfit_vit *(*vit)(void *loaded);
    enum memfit_status (*segment)(void *loaded, const struct memfit_image *image,
                                  const struct memfit_segment_params *p,
                                  struct memfit_segment_result *out);
    memfit_sam *(*sam)(void *loaded);
};

/* The registry (registry.c): the built-in families, in --help order. */
extern const struct mf_family *const mf_families[];
extern const size_t mf_n_families;

/* The family of a public info pointer (one of the registry's). */
const struct mf_family *mf_family_of(const struct memfit_engine_family_info *info);

/* Shared by families: drops the clean page cache of a file nobody maps. */
void mf_engine_drop_page_cache(const char *path);

/* Shared by families: a positive integer option ("threads: 4") in 1..max, or
 * E_FORMAT naming e->where, the model, the option and the range. */
enum memfit_status mf_engine_option_u32(const struct mf_family_entry *e,
                                        const struct memfit_manifest_option *o, uint32_t max,
                                        uint32_t *out);

/* Shared by families: "unknown option 'x' for family dinov2 (known: ...)". */
enum memfit_status mf_engine_option_unknown(const struct mf_family_entry *e,
                                            const struct memfit_manifest_option *o,
                                            const struct mf_family *family);

#endif

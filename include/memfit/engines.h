/*
 * memfit engines: the model families, and the one path from a model entry
 * (a manifest entry, or a file or source URI named on the command line)
 * through the store and the budget to a running model.
 *
 * A family (DINOv2, Qwen2, LLaMA, ...) is one folder under src/engines/ and
 * one line of the built-in registry. It knows how to recognise its files,
 * plan their memory exactly from a header (before any download), load and
 * unload them, and run its typed operations (embed images, generate text).
 * Everything else is done once, here, for every family: sources resolved
 * (paths relative to the manifest, file://, s3://, http(s)://, hf://),
 * headers read with Range requests to plan a remote model before fetching
 * it, the fetch through the verified cache (with progress in the log), the
 * `quantize` option (a converted copy written into the cache once and
 * mapped from there), family detection for "auto", and the manager driver
 * through which the manager loads and unloads every model. The manager
 * knows no family; the server and the commands know only this interface.
 *
 * Walk from an entry to a running model, each layer once:
 *   memfit_engine_model_create  (store: sources; format: header; family)
 *   memfit_engine_model_register (manager)
 *   memfit_manager_acquire -> plan, fetch (store), plan, reserve, load
 *   memfit_engine_embed / memfit_engine_generate_* on the handle
 *
 * Thread safety: a model (memfit_engine_model) may be planned, fetched and
 * loaded from several threads (the manager serialises its loads); the
 * operations on a handle may run concurrently up to the model's
 * max_concurrency.
 */
#ifndef MEMFIT_ENGINES_H
#define MEMFIT_ENGINES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memfit/core.h"
#include "memfit/format.h"
#include "memfit/manager.h"
#include "memfit/models.h"
#include "memfit/store.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Families ---------------------------------------------------------------- */

/* The operations a family runs (bits of memfit_engine_family_info.ops). */
enum memfit_engine_op {
    MEMFIT_ENGINE_OP_EMBED_IMAGE = 1u << 0, /* images in, one embedding each */
    MEMFIT_ENGINE_OP_GENERATE = 1u << 1,    /* text generation (completions, chat) */
    MEMFIT_ENGINE_OP_SEGMENT = 1u << 2,     /* promptable segmentation */
};

struct memfit_engine_family_info {
    const char *name;    /* the manifest's `family`: "dinov2", "qwen2", "llama" */
    const char *aliases; /* other names it answers to, comma separated ("llm"), or "" */
    const char *summary; /* one line for --help */
    const char *options; /* the manifest options it takes: "quantize, threads, ..." */
    unsigned ops;        /* enum memfit_engine_op bits */
};

/* The number of built-in families, and each (index < count; else NULL). */
MEMFIT_API size_t memfit_engine_family_count(void);
MEMFIT_API const struct memfit_engine_family_info *memfit_engine_family_get(size_t index);

/* The family named `name` or one of its aliases (case-insensitive), or NULL. */
MEMFIT_API const struct memfit_engine_family_info *memfit_engine_family_find(const char *name);

/* "dinov2, qwen2, llama": the family names, for messages and --help. Static. */
MEMFIT_API const char *memfit_engine_family_names(void);

/*
 * The family whose files `set` looks like (a header-only set is enough:
 * tensor names, shapes and metadata only). E_UNSUPPORTED with a message
 * saying what the file is (its general.architecture when it has one) when
 * no family takes it.
 */
MEMFIT_API enum memfit_status memfit_engine_detect(const memfit_tensors *set,
                                                   const struct memfit_engine_family_info **out);

/* ---- Models -------------------------------------------------------------------- */

/* A model entry with its family and sources resolved; not loaded. */
typedef struct memfit_engine_model memfit_engine_model;

/* What a load of a model reserves, and what it was planned for. */
struct memfit_engine_plan {
    struct memfit_budget_cost cost;
    uint64_t file_bytes; /* the file the weights are mapped from (the converted copy's
                            with `quantize`, estimated until it is written) */
    /* A remote model not fetched yet whose header could not be read with
     * Range requests: cost is its file size as weights (from HEAD), the
     * exact plan comes after the fetch. */
    bool provisional;
    /* "file" (the local or cached file), "header" (a remote file's header
     * read before the download: the same numbers as "file"), "head-size"
     * (provisional), "estimate" (a `quantize` copy not written yet: its
     * size from the tensor shapes). Static. */
    const char *plan_source;
    const char *family; /* static */
    /* Image families: the batch and the square side the workspace is for. */
    uint32_t max_batch, max_image_size;
    /* Generating families: the context of each session, and the sessions. */
    uint32_t n_ctx, n_sessions;
};

/*
 * Makes the model of one manifest entry: the family from `entry->family`
 * (a name or an alias, or "auto": detected from the file's header, read
 * with Range requests for a remote source), the sources (relative paths
 * against the manifest's directory; remote ones through the store, in the
 * manifest's cache_dir when it has one), the family's options and limits.
 * Nothing is downloaded or loaded (an "auto" remote source whose server
 * ignores Range requests is the exception: it is fetched to be detected,
 * and the log says so).
 * Failures: E_FORMAT naming the manifest, line and option; E_UNSUPPORTED
 * for an unknown family (naming the known ones) or a file no family takes;
 * the store's and format's failures for "auto"; E_NOMEM.
 * `mf` may come from memfit_manifest_parse_string("", 0, "command line", ..)
 * for entries made from the command line. *out is written only on success.
 */
MEMFIT_API enum memfit_status memfit_engine_model_create(const struct memfit_manifest *mf,
                                                         const struct memfit_manifest_model *entry,
                                                         memfit_engine_model **out);

/* Frees a model; NULL is a no-op. A manager it was registered with must be gone. */
MEMFIT_API void memfit_engine_model_destroy(memfit_engine_model *model);

/* The entry's name, and its family (resolved, never "auto"). Borrowed. */
MEMFIT_API const char *memfit_engine_model_name(const memfit_engine_model *model);
MEMFIT_API const struct memfit_engine_family_info *
memfit_engine_model_family(const memfit_engine_model *model);

/*
 * Plans the model without loading it: exact from the local or cached file,
 * or from a remote file's header read with Range requests (no download), or
 * provisional from its size. Cached: planning again reads nothing unless
 * the file changed. The figures are those a load reserves.
 */
MEMFIT_API enum memfit_status memfit_engine_model_plan(memfit_engine_model *model,
                                                       struct memfit_engine_plan *out);

/*
 * Registers the model with `mgr` under its name, with the entry's
 * keep_alive, pin and max_concurrency, through the engines' manager driver.
 * Per-request workspaces beyond the plan come from the manager's budget.
 * The model must outlive the manager. Failures: memfit_manager_register's.
 */
MEMFIT_API enum memfit_status memfit_engine_model_register(memfit_engine_model *model,
                                                           memfit_manager *mgr);

/*
 * Progress and cancellation of the model's downloads (as the store's fetch
 * options: `progress` called with the bytes so far, `cancel` read while
 * fetching); NULL removes them. For a program that draws a progress bar on
 * a terminal; the store logs progress lines whatever is set here. Set it
 * while no load is in flight.
 */
MEMFIT_API void memfit_engine_model_set_fetch(memfit_engine_model *model,
                                              memfit_fetch_progress progress, void *user,
                                              const int *cancel);

/* "dir/dino-s.gguf", "s3://bucket/x/dino.pth?v=2" -> "dino-s", "dino": the name
 * a model named on the command line is served under (only an extension of letters
 * and digits is dropped: "dir/Qwen1.5-1.8B-Chat" keeps its dots). NULL on E_NOMEM. */
MEMFIT_API char *memfit_engine_source_name(const char *source);

/* ---- A manager with models: what every command and the server open -------------- */

typedef struct memfit_engines memfit_engines;

struct memfit_engines_options {
    const char *manifest_path; /* NULL: no manifest */
    /* Models named on the command line (paths or source URIs), each under
     * memfit_engine_source_name(), family `family` (NULL: "auto") and the
     * options `options` ("key=value" strings, as in a manifest). */
    const char *const *sources;
    size_t n_sources;
    const char *family;
    const char *const *options;
    size_t n_options;
    uint64_t budget_bytes;   /* a --budget flag; 0: none (see memfit_budget_resolve) */
    const char *budget_flag; /* the flag's value as written ("512MB"), for the start-up line */
    /* Manager settings beyond the manifest's: */
    int64_t admission_timeout_ms; /* -1: the manifest's */
    bool reaper_thread;
    memfit_manager_event_fn on_event;
    void *event_user;
};

MEMFIT_API void memfit_engines_options_default(struct memfit_engines_options *options);

/*
 * Reads the manifest (if any), resolves the budget (one policy for every
 * entry point), creates the manager and registers every model. Nothing is
 * planned, fetched or loaded. Failures: the manifest's, the budget's,
 * memfit_engine_model_create's (the first entry that fails), E_EXISTS for
 * two models of one name, E_NOMEM.
 */
MEMFIT_API enum memfit_status memfit_engines_open(const struct memfit_engines_options *options,
                                                  memfit_engines **out);

/* Destroys the manager (unloading everything) and the models; NULL is a no-op. */
MEMFIT_API void memfit_engines_close(memfit_engines *engines);

MEMFIT_API memfit_manager *memfit_engines_manager(memfit_engines *engines);
/* The manifest read (an empty one when none was named). Borrowed. */
MEMFIT_API const struct memfit_manifest *memfit_engines_manifest(const memfit_engines *engines);
/* The budget's size and where it came from ("MAX_MEMORY_USAGE_MB=512 (.env)"). */
MEMFIT_API uint64_t memfit_engines_budget(const memfit_engines *engines, const char **source);
/* The models, in manifest order then command-line order. */
MEMFIT_API size_t memfit_engines_count(const memfit_engines *engines);
MEMFIT_API memfit_engine_model *memfit_engines_get(memfit_engines *engines, size_t index);
MEMFIT_API memfit_engine_model *memfit_engines_find(memfit_engines *engines, const char *name);

/* ---- Running a loaded model (with a handle held) --------------------------------- */

/* The model a handle of an engines-registered model holds. */
MEMFIT_API memfit_engine_model *memfit_engine_handle_model(memfit_handle *handle);

struct memfit_embed_params {
    enum memfit_vit_output output;           /* default CLS */
    bool normalize;                          /* unit L2 norm per vector */
    struct memfit_image_transform transform; /* default: memfit_image_transform_default() */
    uint32_t batch; /* images per forward; 0: the batch the model was planned for */
    /* A forward beyond the plan reserves its own workspace: 0 (default) is
     * refused at once (E_BUDGET, the figures) when the budget has no room,
     * > 0 waits that long (E_TIMEOUT), < 0 waits without limit. */
    int64_t timeout_ms;
    memfit_cancel_fn cancelled; /* asked between forwards; may be NULL */
    void *cancel_user;
};

MEMFIT_API void memfit_embed_params_default(struct memfit_embed_params *params);

/*
 * The floats one image of width x height (before the transform) gives, and
 * the embedding size D. E_UNSUPPORTED when the family does not embed
 * images; E_RANGE for a size the transform refuses.
 */
MEMFIT_API enum memfit_status memfit_engine_embed_size(memfit_handle *handle,
                                                       const struct memfit_embed_params *params,
                                                       uint32_t width, uint32_t height,
                                                       size_t *out_floats, uint32_t *out_dim);

/*
 * Embeds `n_images` images: the outputs one after the other in `out`
 * (out_floats in all; each image's share from memfit_engine_embed_size).
 * Images are run in forwards of params->batch of equal input size through
 * the model's planned workspace; a forward beyond the plan reserves its
 * own workspace from the budget for its duration (E_BUDGET/E_TIMEOUT with
 * the figures). *out_tokens (may be NULL) counts the tokens the model saw.
 * E_CANCELLED when params->cancelled said so; E_FORMAT for an input that
 * is not an image; E_UNSUPPORTED for a family that does not embed images.
 */
MEMFIT_API enum memfit_status
memfit_engine_embed(memfit_handle *handle, const struct memfit_image *const *images,
                    size_t n_images, const struct memfit_embed_params *params, float *out,
                    size_t out_floats, uint64_t *out_tokens);

/* A text-generation request (completions, chat). */
struct memfit_generation_request {
    const char *prompt; /* completions: the prompt text; NULL for chat */
    size_t prompt_len;
    const struct memfit_chat_message *messages; /* chat: the conversation */
    size_t n_messages;
    /* Sampling, max_tokens (0: until the context is full) and stop strings;
     * prompt, n_prompt and grammar are the engine's to fill. */
    struct memfit_generate_params params;
    /* NULL, or the grammar the output must follow (memfit_grammar_*): the
     * engine makes the generation's matcher over the model's vocabulary,
     * whose trie it builds on first use and keeps until the model unloads. */
    const memfit_grammar *grammar;
    /* chat: the JSON text of OpenAI's `tools` array the template renders
     * (memfit_chat_render_tools), or NULL */
    const char *tools_json;
};

typedef struct memfit_engine_generation memfit_engine_generation;

/*
 * Starts a generation on a loaded model: renders the conversation with the
 * model's chat template (chat) or takes the prompt, tokenizes it, checks it
 * fits the context (E_RANGE with the figures, before any work; E_INVALID
 * for an empty prompt or text that is not UTF-8), takes one of the model's
 * sessions (waiting while all are in use). *out_prompt_tokens (may be NULL)
 * is the prompt's length. E_UNSUPPORTED for a family that does not generate.
 */
MEMFIT_API enum memfit_status
memfit_engine_generate_start(memfit_handle *handle, const struct memfit_generation_request *req,
                             memfit_engine_generation **out, uint32_t *out_prompt_tokens);

/* Runs until some text is final or the generation ends (*done); *text stays
 * valid until the next call. Failures: those of memfit_llm_eval. */
MEMFIT_API enum memfit_status memfit_engine_generate_next(memfit_engine_generation *gen,
                                                          const char **text, size_t *len,
                                                          bool *done);

/* The tokens the last memfit_engine_generate_next call sampled (with their
 * logprobs when params.sampling.logprobs): see memfit_generation_tokens. */
MEMFIT_API void memfit_engine_generate_tokens(const memfit_engine_generation *gen,
                                              const struct memfit_sampled_token **tokens,
                                              size_t *n);

/* The prompt's tokens and, with params.prompt_logprobs once the first
 * memfit_engine_generate_next call has run, their scores (tokens 1..): see
 * memfit_generation_prompt. Nothing (NULL, 0) for a family without them. */
MEMFIT_API void memfit_engine_generate_prompt(const memfit_engine_generation *gen,
                                              const int32_t **tokens,
                                              const struct memfit_token_score **scores, size_t *n);

/* Ends a generation (finished or not), gives its session back and says how it
 * went (`result` may be NULL). NULL is a no-op. */
MEMFIT_API void memfit_engine_generate_end(memfit_engine_generation *gen,
                                           struct memfit_generate_result *result);

/*
 * The LLM inside a handle, for callers that drive a session themselves
 * (`memfit chat` keeps one conversation's KV cache between turns): the
 * model, its tokenizer and context (any may be NULL), and one of its
 * sessions, taken (emptied) until memfit_engine_llm_session_release.
 * E_UNSUPPORTED for a family that does not generate.
 */
MEMFIT_API enum memfit_status memfit_engine_llm(memfit_handle *handle, memfit_llm **model,
                                                const memfit_tokenizer **tok, uint32_t *n_ctx);
MEMFIT_API enum memfit_status memfit_engine_llm_session_acquire(memfit_handle *handle,
                                                                memfit_llm_session **out);
MEMFIT_API void memfit_engine_llm_session_release(memfit_handle *handle,
                                                  memfit_llm_session *session);

/* ---- Segmentation (SAM) -------------------------------------------------------- */

/* A segmentation request: prompts, or automatic mask generation. */
struct memfit_segment_params {
    /* Prompts, in the image's own pixels (x right, y down): points with
     * labels (1 foreground, 0 background), a box, a low-res mask from an
     * earlier answer (mask_size^2 logits). One prompt of all of them. */
    const float *points; /* n_points (x, y) pairs */
    const int32_t *labels;
    size_t n_points;
    bool has_box;
    float box[4];
    const float *mask_input;
    bool multimask; /* 3 masks (the reference's multimask_output) rather than 1 */
    /* Automatic masks instead of prompts, with the reference's parameters
     * (memfit_segment_params_default: the reference's defaults, but
     * points_per_batch 0: the batch the model is planned for, its
     * `points_per_batch` option, 16 by default). */
    bool automatic;
    struct memfit_sam_amg_params amg;
    bool batch_auto; /* points_per_batch "auto": the largest the budget allows */
    /* What to keep in the result beyond the masks. */
    bool want_low_res;   /* prompts: the low-res logits (n_masks x mask_size^2) */
    bool want_embedding; /* the image embedding (prompt_dim x grid x grid) */
    /* Work beyond the plan (a larger image, a larger batch) reserves its own
     * memory: 0 refuses at once when the budget has no room (E_BUDGET with
     * the figures), > 0 waits that long, < 0 without limit. */
    int64_t timeout_ms;
    memfit_cancel_fn cancelled; /* asked between batches; may be NULL */
    void *cancel_user;
};

MEMFIT_API void memfit_segment_params_default(struct memfit_segment_params *params);

struct memfit_segment_result {
    uint32_t width, height; /* the image's */
    /* Prompts: n_masks masks (height x width bytes, 0/1, one after the
     * other), their predicted IoU, and the low-res logits when asked. */
    uint32_t n_masks;
    uint8_t *masks;
    float *iou;
    float *low_res;
    uint32_t mask_size;
    /* Automatic: the records, as the reference's generate() returns them. */
    struct memfit_sam_masks records;
    /* The embedding when asked (embedding_dim x grid x grid floats). */
    float *embedding;
    uint32_t embedding_dim, grid;
    bool embedding_cached;     /* the encoder did not run: the image was seen before */
    uint32_t points_per_batch; /* automatic: the batch used */
    uint64_t work_bytes;       /* the workspace the request used (planned or reserved) */
    double encode_seconds, decode_seconds;
};

/*
 * Segments one image with a loaded SAM model: one encoder pass per image
 * (the embedding is cached in the budget, keyed by the image's SHA-256, and
 * evicted when the budget needs the room), then the prompt or the
 * automatic mask generator. Free the result with memfit_segment_result_free
 * (also after a failure). E_UNSUPPORTED for a family that does not
 * segment; E_RANGE for a bad prompt or parameter (naming it); E_BUDGET /
 * E_TIMEOUT with the figures when work beyond the plan does not fit;
 * E_CANCELLED.
 */
MEMFIT_API enum memfit_status memfit_engine_segment(memfit_handle *handle,
                                                    const struct memfit_image *image,
                                                    const struct memfit_segment_params *params,
                                                    struct memfit_segment_result *result);

MEMFIT_API void memfit_segment_result_free(struct memfit_segment_result *result);

/* The SAM model inside a handle, or NULL for another family. */
MEMFIT_API memfit_sam *memfit_engine_sam(memfit_handle *handle);

/* The DINOv2 model inside a handle (its info: interpolation, dims), or NULL
 * for another family. Valid while the handle is held. */
MEMFIT_API memfit_vit *memfit_engine_vit(memfit_handle *handle);

#ifdef __cplusplus
}
#endif

#endif

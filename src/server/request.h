/*
 * The pure parts of the HTTP server, kept apart from libmicrohttpd so unit
 * tests and the fuzz target reach them directly: a growable text buffer,
 * JSON string escaping, OpenAI-style error bodies, base64, `data:` URLs,
 * the embeddings, completions and segmentation request parsers, the
 * segmentation answer, route matching and the constant-time comparison of
 * API keys.
 */
#ifndef MF_SERVER_REQUEST_H
#define MF_SERVER_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memfit/core.h"
#include "memfit/engines.h"
#include "memfit/models.h"

/* ---- Text buffer ------------------------------------------------------------ */

/* A string built by appending. An allocation failure is sticky (`failed`):
 * later appends do nothing, so a builder checks once at the end. */
struct mf_text {
    char *data; /* NUL-terminated when len > 0 */
    size_t len, cap;
    bool failed;
};

bool mf_text_append(struct mf_text *t, const char *s, size_t n);
bool mf_text_puts(struct mf_text *t, const char *s);
bool mf_text_printf(struct mf_text *t, const char *fmt, ...) MEMFIT_PRINTF(2, 3);
/* Appends `s` as a JSON string, quotes included. */
bool mf_text_json_string(struct mf_text *t, const char *s, size_t n);
void mf_text_free(struct mf_text *t);
/* Hands the string over (caller frees with memfit_free); NULL and E_NOMEM
 * when any append failed. The buffer is empty afterwards. */
char *mf_text_take(struct mf_text *t, size_t *len);

/* ---- Errors ------------------------------------------------------------------ */

/* An HTTP error in the OpenAI shape {"error": {"message", "type", "code"}}. */
struct mf_http_error {
    int status;       /* HTTP status */
    const char *type; /* "invalid_request_error", "authentication_error", ... */
    const char *code; /* "invalid_json", "model_not_found", ... */
    char message[512];
};

void mf_http_error_set(struct mf_http_error *e, int status, const char *type, const char *code,
                       const char *fmt, ...) MEMFIT_PRINTF(5, 6);

/* The error body as JSON (newline-terminated). E_NOMEM. */
enum memfit_status mf_http_error_json(const struct mf_http_error *e, char **out, size_t *out_len);

/* ---- base64 and data: URLs ---------------------------------------------------- */

/* Decodes standard base64 (RFC 4648 alphabet, padding optional but checked
 * when present). E_FORMAT naming the offset of the first bad character;
 * E_NOMEM. *out (memfit_free) and *out_len written only on success. */
enum memfit_status mf_base64_decode(const char *in, size_t len, uint8_t **out, size_t *out_len);

/* Appends the base64 of `data` (with padding). */
bool mf_text_base64(struct mf_text *t, const void *data, size_t len);

/* Splits "data:image/png;base64,AAAA": *payload and *payload_len point into
 * `url`; the media type must be an image type (or empty) and the encoding
 * base64. E_FORMAT with a message saying what is wrong. */
enum memfit_status mf_data_url_split(const char *url, size_t len, const char **payload,
                                     size_t *payload_len);

/* ---- Streaming scan of a JSON body ----------------------------------------------- */

#define MF_JSON_MAX_DEPTH 64

/* The top-level members a route reads; the others are refused (400) or,
 * with skip_unknown, overwritten with null before the body is parsed. */
struct mf_json_schema {
    const char *const *fields;
    size_t n_fields;
    bool skip_unknown;
    const char *expected; /* the fields as the refusal names them; NULL: the list */
};

/*
 * The scan of a body as it arrives (json_scan.c): its structure is checked,
 * its top-level member names are matched against the schema, and what
 * parsing it will cost is counted before anything is built. The body must
 * be one JSON object nested at most MF_JSON_MAX_DEPTH deep.
 */
struct mf_json_scan {
    const struct mf_json_schema *schema; /* NULL: every member is known */
    size_t pos;                          /* bytes scanned */
    /* what the parser will build (skipped values not counted) */
    uint64_t values, strings, containers, objects_n, elements, members, string_bytes, max_string;
    uint64_t skipped; /* members overwritten */
    /* state */
    int state;
    bool failed, in_key, key_overflow, skip_next, skipping;
    size_t depth, skip_start, key_len;
    uint64_t string_len;
    const char *literal;
    unsigned literal_at, unicode, unicode_digits;
    uint8_t objects[MF_JSON_MAX_DEPTH / 8]; /* per depth: 1 object, 0 array */
    char key[64];
};

void mf_json_scan_init(struct mf_json_scan *s, const struct mf_json_schema *schema);

/*
 * Scans buf[s->pos, len): `buf` holds the whole body received so far (it may
 * have moved since the last call; offsets are kept, not pointers), and
 * skipped members' values in it are overwritten once complete. E_FORMAT with
 * *err (400: invalid_json, invalid_type, or invalid_value for an unknown
 * member) at the first byte that cannot be accepted; every later call fails.
 */
enum memfit_status mf_json_scan_feed(struct mf_json_scan *s, char *buf, size_t len,
                                     struct mf_http_error *err);

/* The body is complete: E_FORMAT with *err unless it was one whole object. */
enum memfit_status mf_json_scan_finish(struct mf_json_scan *s, struct mf_http_error *err);

/* Bytes that parsing what was scanned so far will allocate, at most. */
uint64_t mf_json_scan_cost(const struct mf_json_scan *s);

/* ---- The embeddings request ---------------------------------------------------- */

struct mf_embed_request {
    char *model;
    size_t n_inputs;
    char **inputs; /* each NUL-terminated; may contain NULs (input_lens is exact) */
    size_t *input_lens;
    bool base64_output;  /* encoding_format "base64" (the openai clients' default) */
    uint64_t dimensions; /* 0 = not given */
    bool bare_base64;    /* an input may be bare base64 as well as a data: URL (/v2 infer) */
};

/*
 * Parses {"model", "input", "encoding_format"?, "dimensions"?, "user"?}.
 * `input` is a string or a non-empty array of strings (at most max_inputs).
 * Client mistakes are E_FORMAT with *err filled (status 400 and a code:
 * invalid_json, invalid_type, missing_field, too_many_inputs,
 * invalid_value); E_NOMEM. *out written only on success.
 */
enum memfit_status mf_embed_request_parse(const char *body, size_t len, size_t max_inputs,
                                          struct mf_embed_request *out, struct mf_http_error *err);
void mf_embed_request_free(struct mf_embed_request *r);

/* ---- The completions and chat requests ----------------------------------------------- */

#define MF_GEN_MAX_STOP       4 /* as OpenAI */
#define MF_GEN_MAX_MESSAGES   256
#define MF_GEN_MAX_CHOICES    16   /* n: generated one after the other */
#define MF_GEN_MAX_LOGIT_BIAS 1024 /* OpenAI's limit is 300 */

#define MF_GEN_MAX_TOOLS 64 /* the grammar's alternatives */

/* A function the model may call (chat `tools`). */
struct mf_gen_tool {
    char *name;
    char *parameters; /* its JSON Schema as compact JSON; NULL: none given (any object) */
};

enum mf_tool_choice {
    MF_TOOL_CHOICE_AUTO = 0,     /* the model may call: the answer is parsed */
    MF_TOOL_CHOICE_REQUIRED = 1, /* one call of any tool, forced by a grammar */
    MF_TOOL_CHOICE_NAMED = 2,    /* one call of the named tool, forced by a grammar */
};

struct mf_gen_request {
    char *model;
    bool chat;    /* /v1/chat/completions: `messages`; else `prompt` */
    char *prompt; /* completions */
    size_t prompt_len;
    char **roles; /* chat: n_messages of each */
    char **contents;
    size_t n_messages;
    char *stop[MF_GEN_MAX_STOP];
    size_t n_stop;
    bool stream;
    bool include_usage; /* stream_options.include_usage */
    bool has_max_tokens;
    uint64_t max_tokens;
    /* sampling; has_* false: the server's default */
    bool has_temperature, has_top_p, has_top_k, has_min_p, has_repeat_penalty, has_seed;
    double temperature, top_p, min_p, repeat_penalty;
    uint64_t top_k;
    uint64_t seed;
    /* OpenAI's fields (not in the /v2 parameters) */
    double presence_penalty, frequency_penalty; /* 0: off */
    struct memfit_logit_bias *logit_bias;       /* n_logit_bias, ids unchecked (the route checks) */
    size_t n_logit_bias;
    uint32_t n;            /* choices, 1 to MF_GEN_MAX_CHOICES */
    bool logprobs;         /* chat: logprobs true; completions: logprobs a number */
    uint32_t top_logprobs; /* chat: top_logprobs; completions: the number */
    bool echo;             /* completions: the prompt is put before each choice's text */
    /* chat: tools (tool_choice "none" drops them: n_tools 0) */
    struct mf_gen_tool *tools;
    size_t n_tools;
    char *tools_json; /* the tools array as compact JSON (the template renders it); NULL: none */
    enum mf_tool_choice tool_choice;
    size_t tool_choice_index; /* MF_TOOL_CHOICE_NAMED: the tool named */
    bool parallel_tool_calls; /* false: at most one call per answer */
    /* chat: per message, its tool calls (assistant) and the call it answers (tool) */
    struct memfit_chat_tool_call **tool_calls; /* n_messages of each (NULL: none) */
    size_t *n_tool_calls;
    char **tool_call_ids;
    bool has_keep_alive;
    int64_t keep_alive_s; /* Ollama's: -1 keep loaded, 0 unload after the answer, else seconds */
    /* response_format json_object / json_schema, compiled; NULL: free text */
    memfit_grammar *grammar;
};

/*
 * Parses an OpenAI completions ({"model", "prompt", ...}) or chat
 * completions ({"model", "messages": [{"role", "content"}], ...}) body.
 * Taken: max_tokens / max_completion_tokens, temperature, top_p, stop
 * (string or up to 4 strings), stream, stream_options.include_usage, seed,
 * n, presence/frequency_penalty, logit_bias, logprobs (chat: with
 * top_logprobs), echo (completions), user, keep_alive (Ollama's), tools,
 * tool_choice, parallel_tool_calls and messages with tool_calls or the tool
 * role (chat), and the
 * common extensions top_k, min_p, repeat_penalty (also
 * repetition_penalty). OpenAI's fields this server does not honour are
 * taken only at their neutral value (docs/server.md lists them) and refused
 * otherwise, naming them (400 unsupported_field); unknown fields are
 * refused (400 invalid_value). A message content is a string or an array
 * of {"type": "text", "text"} parts. Client mistakes are E_FORMAT with *err
 * (400: invalid_json, invalid_type, missing_field, invalid_value,
 * unsupported_field); E_NOMEM.
 */
enum memfit_status mf_gen_request_parse(const char *body, size_t len, bool chat,
                                        struct mf_gen_request *out, struct mf_http_error *err);
void mf_gen_request_free(struct mf_gen_request *r);

/* ---- The segmentation request ------------------------------------------------------- */

#define MF_SEGMENT_MAX_POINTS 4096 /* the engine's limit */

/* How each mask is written (the values are the wire's names' order). */
enum mf_segment_output {
    MF_SEGMENT_OUTPUT_RLE = 0,  /* "uncompressed_rle": {"size", "counts": [...]} */
    MF_SEGMENT_OUTPUT_COCO = 1, /* "coco_rle": {"size", "counts": "..."} */
    MF_SEGMENT_OUTPUT_PNG = 2,  /* "png": a data URL of a grayscale 0/255 PNG */
};

struct mf_segment_request {
    char *model;
    uint8_t *image; /* the encoded image (JPEG/PNG bytes), base64-decoded */
    size_t image_bytes;
    /* Prompts, in the image's pixels; automatic is false. */
    float *points; /* n_points (x, y) pairs */
    int32_t *labels;
    size_t n_points;
    bool has_box;
    float box[4];
    bool multimask;    /* multimask_output, or its default (one point, no box) */
    float *mask_input; /* n_mask_input float32 low-res logits, or NULL */
    size_t n_mask_input;
    bool return_low_res;
    /* Automatic masks: the reference's parameters (defaults where not given). */
    bool automatic;
    struct memfit_sam_amg_params amg;
    bool has_points_per_batch; /* else the model's planned batch */
    bool batch_auto;           /* points_per_batch "auto" */
    enum mf_segment_output output;
};

/*
 * Parses {"model", "image", "points"?, "labels"?, "box"?, "multimask_output"?,
 * "mask_input"?, "return_low_res"?, "auto"?, the automatic mask
 * generator's parameters by their reference names?, "output_mode"?}
 * (docs/server.md). `image` is a data URL of an image type or bare base64,
 * decoded here; `mask_input` bare base64 of little-endian float32. Prompts
 * and `auto` are exclusive; unknown fields are refused by name. Client
 * mistakes are E_FORMAT with *err (400: invalid_json, invalid_type,
 * missing_field, invalid_value, invalid_image_url, invalid_base64);
 * E_NOMEM. *out written only on success.
 */
enum memfit_status mf_segment_request_parse(const char *body, size_t len,
                                            struct mf_segment_request *out,
                                            struct mf_http_error *err);
void mf_segment_request_free(struct mf_segment_request *r);

/*
 * Appends the answer {"model", "width", "height", "masks": [...],
 * "embedding_cached", "points_per_batch"? (automatic), "low_res_masks"? and
 * "mask_size"? (prompts with return_low_res), "timing"} for a result of
 * memfit_engine_segment. Prompt masks get their area and bbox (XYWH, w =
 * x_max - x_min as the reference's box_xyxy_to_xywh) from the mask.
 * E_NOMEM (also when an append failed), E_RANGE from the RLE helpers.
 */
enum memfit_status mf_segment_response_json(struct mf_text *t, const struct mf_segment_request *req,
                                            const struct memfit_segment_result *res);

/* ---- The Open Inference Protocol (KServe v2) -------------------------------------------- */

/* The error body of the /v2 routes, {"error": "message"} (newline-terminated). E_NOMEM. */
enum memfit_status mf_v2_error_json(const struct mf_http_error *e, char **out, size_t *out_len);

/* An inference request of /v2/models/{name}/infer: memfit's models take one BYTES input. */
struct mf_infer_request {
    char *id;         /* NULL: none given */
    char *input_name; /* as sent: the route checks it against the model's */
    size_t n_items;   /* the elements of its data, flattened row-major (= the product of shape) */
    char **items;     /* each NUL-terminated; may contain NULs (item_lens is exact) */
    size_t *item_lens;
    bool base64;       /* the input's parameters.content_type is "base64" */
    char *output_name; /* the one output asked for, or NULL (all) */
    /* Generation parameters (request-level `parameters`), in the completions' fields. */
    struct mf_gen_request gen;
    bool has_gen_params; /* any of them given */
};

/*
 * Parses {"id"?, "parameters"?, "inputs": [one {"name", "shape", "datatype":
 * "BYTES", "parameters"?, "data"}], "outputs"?: [at most one {"name",
 * "parameters"?}]}. `data` is an array of strings, flat or nested, whose
 * count is the product of `shape` and at most max_items. Request
 * parameters: max_tokens, temperature, top_p, top_k, min_p, repeat_penalty
 * (repetition_penalty), seed, stop as in the completions request, and
 * content_type (ignored). Input parameters: content_type ("base64" or
 * "str"). Output parameters: binary_data (accepted, the answer is JSON).
 * Other members and parameters are refused by name. Client mistakes are
 * E_FORMAT with *err (400); E_NOMEM. *out written only on success.
 */
enum memfit_status mf_infer_request_parse(const char *body, size_t len, size_t max_items,
                                          struct mf_infer_request *out, struct mf_http_error *err);
void mf_infer_request_free(struct mf_infer_request *r);

/*
 * The body of the repository extension's routes: index takes {"ready"?:
 * bool} (*ready_only), load and unload {"parameters"?: {}} (no parameter is
 * taken). An empty body is {}. E_FORMAT with *err (400).
 */
enum memfit_status mf_repo_request_parse(const char *body, size_t len, bool index, bool *ready_only,
                                         struct mf_http_error *err);

/* ---- Routes ------------------------------------------------------------------- */

/* The routes, in the order /metrics lists them. */
#define MF_ROUTE_LIST(X)                                                                           \
    X(EMBEDDINGS, "/v1/embeddings")                                                                \
    X(COMPLETIONS, "/v1/completions")                                                              \
    X(CHAT, "/v1/chat/completions")                                                                \
    X(SEGMENT, "/api/segment")                                                                     \
    X(V1_MODELS, "/v1/models")                                                                     \
    X(V1_MODEL, "/v1/models/{name}")                                                               \
    X(MODELS, "/api/models")                                                                       \
    X(MODEL_LOAD, "/api/models/{name}/load")                                                       \
    X(MODEL_UNLOAD, "/api/models/{name}/unload")                                                   \
    X(MEMORY, "/api/memory")                                                                       \
    X(CLEANUP, "/api/cleanup")                                                                     \
    X(EVENTS, "/api/events")                                                                       \
    X(HEALTH, "/health")                                                                           \
    X(READY, "/ready")                                                                             \
    X(METRICS, "/metrics")                                                                         \
    X(DASHBOARD, "/")                                                                              \
    X(V2_LIVE, "/v2/health/live")                                                                  \
    X(V2_READY, "/v2/health/ready")                                                                \
    X(V2_SERVER, "/v2")                                                                            \
    X(V2_MODEL, "/v2/models/{name}")                                                               \
    X(V2_MODEL_READY, "/v2/models/{name}/ready")                                                   \
    X(V2_INFER, "/v2/models/{name}/infer")                                                         \
    X(V2_REPO_INDEX, "/v2/repository/index")                                                       \
    X(V2_REPO_LOAD, "/v2/repository/models/{name}/load")                                           \
    X(V2_REPO_UNLOAD, "/v2/repository/models/{name}/unload")                                       \
    X(OTHER, "other")

enum mf_route {
#define MF_ROUTE_ENUM(name, path) MF_ROUTE_##name,
    MF_ROUTE_LIST(MF_ROUTE_ENUM)
#undef MF_ROUTE_ENUM
        MF_ROUTE_COUNT
};

/* The Open Inference Protocol's routes (/v2/...): their errors are {"error": "message"}. */
static inline bool mf_route_is_v2(enum mf_route route)
{
    return route >= MF_ROUTE_V2_LIVE && route <= MF_ROUTE_V2_REPO_UNLOAD;
}

/* The route's label ("/api/models/{name}/load"). */
const char *mf_route_label(enum mf_route route);

/* The schema of a route that parses a JSON body; NULL for the others. */
const struct mf_json_schema *mf_route_schema(enum mf_route route);

#define MF_MODEL_NAME_MAX 128

/*
 * Matches a decoded URL path. For the {name} routes the name is copied to
 * `name` (it must be 1..MF_MODEL_NAME_MAX-1 bytes with no '/'). *allowed
 * receives the method the route takes ("GET" or "POST"), NULL for OTHER.
 */
enum mf_route mf_route_match(const char *path, char name[MF_MODEL_NAME_MAX], const char **allowed);

#define MF_MODEL_VERSION_MAX 32

/*
 * The same, with the version of the Open Inference Protocol's model routes
 * (/v2/models/{name}/versions/{version}[/ready|/infer]) copied to `version`
 * (1..MF_MODEL_VERSION_MAX-1 bytes, no '/'; "" when the path names none).
 */
enum mf_route mf_route_match_version(const char *path, char name[MF_MODEL_NAME_MAX],
                                     char version[MF_MODEL_VERSION_MAX], const char **allowed);

/* ---- Authentication ------------------------------------------------------------- */

/* Compares in time that depends only on the length of `expected`. */
bool mf_ct_equal(const char *given, size_t given_len, const char *expected, size_t expected_len);

/* True when an Authorization header value is "Bearer <key>" (scheme
 * case-insensitive) with the right key, compared in constant time. */
bool mf_bearer_ok(const char *header, const char *key);

#endif

/*
 * The protobuf messages of memfit's gRPC front end (server/grpc.c), read and
 * written by hand: proto/mmesh/model-runtime.proto (ModelMesh's model-runtime
 * SPI) and proto/inference/grpc_service.proto (KServe's v2 inference
 * service). Kept apart from the gRPC library so unit tests and a fuzz target
 * reach them directly.
 *
 * Why by hand: the wire format is four primitives (varint, 64-bit,
 * length-delimited, 32-bit) and memfit reads eleven small messages. A
 * generated codec (protobuf-c) would link libprotobuf-c into every memfit
 * process, or need a code generator at build time, for a parser this file
 * writes in a few hundred lines with every length checked against the bytes
 * that remain and every allocation through memfit's wrapper.
 */
#ifndef MF_SERVER_GRPC_WIRE_H
#define MF_SERVER_GRPC_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memfit/core.h"
#include "server/request.h"

/* ---- The wire format ------------------------------------------------------------ */

enum mf_pb_wire {
    MF_PB_VARINT = 0,
    MF_PB_I64 = 1,
    MF_PB_LEN = 2,
    MF_PB_I32 = 5,
};

struct mf_pb_reader {
    const uint8_t *p, *end;
};

/* One field: `value` for VARINT/I64/I32, `data`/`len` (pointing into the
 * message) for LEN. */
struct mf_pb_field {
    uint32_t number;
    enum mf_pb_wire wire;
    uint64_t value;
    const uint8_t *data;
    size_t len;
};

/* The next field: 1, 0 at the end, -1 when the bytes are not protobuf (a
 * truncated varint or length, a length past the end, a group or unknown
 * wire type, field number 0). */
int mf_pb_next(struct mf_pb_reader *r, struct mf_pb_field *f);

/* Appends a field; false once an append failed (sticky in `t`). */
bool mf_pb_put_varint(struct mf_text *t, uint32_t number, uint64_t value);
bool mf_pb_put_i64(struct mf_text *t, uint32_t number, uint64_t value);
bool mf_pb_put_i32(struct mf_text *t, uint32_t number, uint32_t value);
bool mf_pb_put_bytes(struct mf_text *t, uint32_t number, const void *data, size_t len);
bool mf_pb_put_string(struct mf_text *t, uint32_t number, const char *s);
/* A bare varint, no key: the items of a packed repeated field. */
bool mf_pb_put_raw_varint(struct mf_text *t, uint64_t value);

/* ---- ModelMesh's model runtime (package mmesh) --------------------------------------- */

/* LoadModelRequest and PredictModelSizeRequest (same fields); UnloadModelRequest
 * and ModelSizeRequest have the id only. Strings are NUL-terminated copies. */
struct mf_mm_model_request {
    char *model_id, *model_type, *model_path, *model_key;
};

/* E_FORMAT naming the message when it is not one; E_NOMEM; strings longer
 * than 64 KiB or holding NUL bytes are E_FORMAT. */
enum memfit_status mf_mm_model_request_parse(const uint8_t *data, size_t len,
                                             struct mf_mm_model_request *out);
void mf_mm_model_request_free(struct mf_mm_model_request *r);
/* The request as ModelMesh sends it (NULL strings left out): for tests, the
 * fuzz target's round trip and tools. False when out of memory. */
bool mf_mm_model_request_encode(const struct mf_mm_model_request *r, struct mf_text *t);

/* RuntimeStatusResponse. */
enum mf_mm_status {
    MF_MM_STARTING = 0,
    MF_MM_READY = 1,
    MF_MM_FAILING = 2,
};

struct mf_mm_runtime_status {
    enum mf_mm_status status;
    uint64_t capacity_bytes;
    uint32_t max_loading_concurrency;
    uint32_t model_loading_timeout_ms;
    uint64_t default_model_size_bytes;
    const char *runtime_version;
    /* methodInfos: each method with idInjectionPath [1] (its request's
     * field 1 holds the model name). */
    const char *const *methods;
    size_t n_methods;
    bool limit_model_concurrency;
    bool allow_any_method;
};

bool mf_mm_runtime_status_encode(const struct mf_mm_runtime_status *s, struct mf_text *t);

/* LoadModelResponse {sizeInBytes = 1, maxConcurrency = 2},
 * PredictModelSizeResponse and ModelSizeResponse {sizeInBytes = 1}. */
bool mf_mm_size_encode(uint64_t size_bytes, uint32_t max_concurrency, struct mf_text *t);

/* ---- KServe v2 inference (package inference) ------------------------------------------ */

/* An InferParameter by key; the value as its oneof says. */
enum mf_v2_param_kind {
    MF_V2_PARAM_BOOL = 1,
    MF_V2_PARAM_INT64 = 2,
    MF_V2_PARAM_STRING = 3,
    MF_V2_PARAM_DOUBLE = 4,
    MF_V2_PARAM_UINT64 = 5,
};

struct mf_v2_param {
    char *key;
    enum mf_v2_param_kind kind;
    bool b;
    int64_t i;
    uint64_t u;
    double d;
    char *s;
};

/* A byte string inside the request message (not copied). */
struct mf_v2_bytes {
    const uint8_t *data;
    size_t len;
};

struct mf_v2_input {
    char *name, *datatype;
    int64_t shape[8];
    size_t n_shape;
    struct mf_v2_param *params;
    size_t n_params;
    struct mf_v2_bytes *elements; /* contents.bytes_contents */
    size_t n_elements;
};

/* ModelInferRequest. The byte strings point into the message: it must
 * outlive the request. */
struct mf_v2_infer_request {
    char *model_name, *model_version, *id;
    struct mf_v2_param *params;
    size_t n_params;
    struct mf_v2_input *inputs;
    size_t n_inputs;
    char **outputs; /* requested output names */
    size_t n_outputs;
    struct mf_v2_bytes *raw; /* raw_input_contents */
    size_t n_raw;
};

/* At most `max_items` elements in all (BYTES elements and raw contents);
 * E_FORMAT with a message naming the field; E_NOMEM. */
enum memfit_status mf_v2_infer_request_parse(const uint8_t *data, size_t len, size_t max_items,
                                             struct mf_v2_infer_request *out);
void mf_v2_infer_request_free(struct mf_v2_infer_request *r);
/* The request as a client sends it (shape packed, NULL strings left out);
 * what it decodes to equals `r`. False when out of memory. */
bool mf_v2_infer_request_encode(const struct mf_v2_infer_request *r, struct mf_text *t);
/* Whether two requests hold the same values (a parameter's by its kind;
 * doubles bit for bit): the round-trip check of the tests and fuzz target. */
bool mf_v2_infer_request_same(const struct mf_v2_infer_request *a,
                              const struct mf_v2_infer_request *b);

/* ModelReadyRequest / ModelMetadataRequest: the name (field 1, copied) and
 * version (field 2). */
enum memfit_status mf_v2_name_request_parse(const uint8_t *data, size_t len, char **name,
                                            char **version);
bool mf_v2_name_request_encode(const char *name, const char *version, struct mf_text *t);

/* Appends an InferParameter entry of a map field `number` (key, value). */
bool mf_v2_put_param(struct mf_text *t, uint32_t number, const struct mf_v2_param *p);

/* The elements of a raw BYTES tensor: each a 4-byte little-endian length
 * and its bytes. At most `max_items`; E_FORMAT when the lengths do not add
 * up to the content; E_NOMEM. *out (memfit_free) points into `raw`. */
enum memfit_status mf_v2_split_raw_bytes(const struct mf_v2_bytes *raw, size_t max_items,
                                         struct mf_v2_bytes **out, size_t *n_out);

#endif

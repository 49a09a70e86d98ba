/*
 * Unit tests of the gRPC front end's protobuf codec (src/server/grpc_wire.c):
 * each message's round trip (encode, decode, same values), the field reader
 * on truncated and overlong varints, lengths past the end, groups and field
 * number 0; wrong wire types named in the error; unknown fields of every
 * wire type skipped; nested messages (parameters inside inputs); the limits
 * (strings, inputs, dimensions, parameters, elements); the raw BYTES
 * splitter; and allocation-failure walks over every decoder and encoder.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "server/grpc_wire.h"
#include "test_util.h"

#define BYTES(...) ((const uint8_t[]){__VA_ARGS__}), sizeof((const uint8_t[]){__VA_ARGS__})

static int next(const uint8_t *data, size_t len, struct mf_pb_field *f)
{
    struct mf_pb_reader r = {data, data + len};
    return mf_pb_next(&r, f);
}

/* ---- The field reader ---------------------------------------------------------------- */

static void test_field_reader(void **state)
{
    (void)state;
    struct mf_pb_field f;
    assert_int_equal(next(BYTES(0x08, 0x96, 0x01), &f), 1); /* field 1 = 150 */
    assert_int_equal(f.number, 1);
    assert_int_equal(f.wire, MF_PB_VARINT);
    assert_int_equal(f.value, 150);
    assert_int_equal(next((const uint8_t *)"", 0, &f), 0);
    assert_int_equal(next(BYTES(0x08, 0x96), &f), -1);      /* truncated varint */
    assert_int_equal(next(BYTES(0x88), &f), -1);            /* truncated key */
    assert_int_equal(next(BYTES(0x0a, 0x05, 'a'), &f), -1); /* length past the end */
    assert_int_equal(next(BYTES(0x0a, 0x80), &f), -1);      /* truncated length */
    assert_int_equal(next(BYTES(0x09, 1, 2, 3), &f), -1);   /* short I64 */
    assert_int_equal(next(BYTES(0x0d, 1, 2, 3), &f), -1);   /* short I32 */
    assert_int_equal(next(BYTES(0x0b), &f), -1);            /* start group */
    assert_int_equal(next(BYTES(0x0c), &f), -1);            /* end group */
    assert_int_equal(next(BYTES(0x0e, 0x00), &f), -1);      /* wire type 6 */
    assert_int_equal(next(BYTES(0x00, 0x01), &f), -1);      /* field number 0 */
    /* 11 varint bytes: too long; 10 are the most a uint64 takes. */
    assert_int_equal(
        next(BYTES(0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), &f),
        -1);
    assert_int_equal(
        next(BYTES(0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), &f), 1);
    assert_true(f.value == UINT64_MAX);
    /* An overlong (non-canonical) varint still reads. */
    assert_int_equal(next(BYTES(0x08, 0x81, 0x80, 0x00), &f), 1);
    assert_int_equal(f.value, 1);
    /* The largest field number, and one past it. */
    assert_int_equal(next(BYTES(0xf8, 0xff, 0xff, 0xff, 0x0f, 0x00), &f), 1);
    assert_int_equal(f.number, 0x1fffffff);
    assert_int_equal(next(BYTES(0x80, 0x80, 0x80, 0x80, 0x10, 0x00), &f), -1);
    assert_int_equal(next(BYTES(0x0d, 1, 2, 3, 4), &f), 1);
    assert_int_equal(f.value, 0x04030201);
    assert_int_equal(next(BYTES(0x0a, 0x00), &f), 1); /* empty bytes */
    assert_int_equal(f.len, 0);
}

static void test_field_writers(void **state)
{
    (void)state;
    struct mf_text t = {0};
    assert_true(mf_pb_put_varint(&t, 1, 150));
    assert_true(mf_pb_put_i64(&t, 2, 0x0102030405060708ull));
    assert_true(mf_pb_put_i32(&t, 3, 0x0a0b0c0d));
    assert_true(mf_pb_put_string(&t, 4, "hi"));
    assert_true(mf_pb_put_bytes(&t, 5, "", 0));
    struct mf_pb_reader r = {(const uint8_t *)t.data, (const uint8_t *)t.data + t.len};
    struct mf_pb_field f;
    assert_int_equal(mf_pb_next(&r, &f), 1);
    assert_int_equal(f.value, 150);
    assert_int_equal(mf_pb_next(&r, &f), 1);
    assert_int_equal(f.wire, MF_PB_I64);
    assert_true(f.value == 0x0102030405060708ull);
    assert_int_equal(mf_pb_next(&r, &f), 1);
    assert_int_equal(f.wire, MF_PB_I32);
    assert_int_equal(f.value, 0x0a0b0c0d);
    assert_int_equal(mf_pb_next(&r, &f), 1);
    assert_int_equal(f.len, 2);
    assert_memory_equal(f.data, "hi", 2);
    assert_int_equal(mf_pb_next(&r, &f), 1);
    assert_int_equal(f.number, 5);
    assert_int_equal(f.len, 0);
    assert_int_equal(mf_pb_next(&r, &f), 0);
    mf_text_free(&t);
}

/* ---- ModelMesh ---------------------------------------------------------------------- */

static void test_model_request_round_trip(void **state)
{
    (void)state;
    struct mf_mm_model_request in = {.model_id = "qwen-1",
                                     .model_type = "llm",
                                     .model_path = "/models/qwen/model.gguf",
                                     .model_key = "{}"},
                               out;
    struct mf_text t = {0};
    assert_true(mf_mm_model_request_encode(&in, &t));
    assert_int_equal(mf_mm_model_request_parse((const uint8_t *)t.data, t.len, &out), MEMFIT_OK);
    assert_string_equal(out.model_id, "qwen-1");
    assert_string_equal(out.model_type, "llm");
    assert_string_equal(out.model_path, "/models/qwen/model.gguf");
    assert_string_equal(out.model_key, "{}");
    mf_mm_model_request_free(&out);
    mf_text_free(&t);

    /* Unknown fields of each wire type are skipped; the last id wins. */
    assert_int_equal(mf_mm_model_request_parse(BYTES(0x0a, 1, 'a', 0x28, 0x05,     /* 5: varint */
                                                     0x31, 1, 2, 3, 4, 5, 6, 7, 8, /* 6: I64 */
                                                     0x3d, 1, 2, 3, 4,             /* 7: I32 */
                                                     0x42, 2, 'x', 'y',            /* 8: LEN */
                                                     0x0a, 1, 'b'),
                                               &out),
                     MEMFIT_OK);
    assert_string_equal(out.model_id, "b");
    assert_null(out.model_path);
    mf_mm_model_request_free(&out);

    /* A string field sent as a varint names the field. */
    assert_int_equal(mf_mm_model_request_parse(BYTES(0x18, 0x01), &out), MEMFIT_E_FORMAT);
    assert_non_null(strstr(memfit_last_error(), "modelPath"));
    assert_int_equal(mf_mm_model_request_parse(BYTES(0x0a, 3, 'a', 0, 'b'), &out),
                     MEMFIT_E_FORMAT); /* a NUL byte */
    assert_int_equal(mf_mm_model_request_parse(BYTES(0x0a, 3, 'a'), &out), MEMFIT_E_FORMAT);
    assert_non_null(strstr(memfit_last_error(), "not a protobuf message"));
}

static void test_model_request_limits(void **state)
{
    (void)state;
    size_t n = 64 * 1024 + 1;
    struct mf_text t = {0};
    char *s = memfit_malloc(n + 1);
    assert_non_null(s);
    memset(s, 'a', n);
    s[n] = '\0';
    mf_pb_put_string(&t, 1, s);
    struct mf_mm_model_request out;
    assert_int_equal(mf_mm_model_request_parse((const uint8_t *)t.data, t.len, &out),
                     MEMFIT_E_FORMAT);
    assert_non_null(strstr(memfit_last_error(), "longer than"));
    mf_text_free(&t);
    s[n - 1] = '\0'; /* exactly 64 KiB: taken */
    mf_pb_put_string(&t, 1, s);
    assert_int_equal(mf_mm_model_request_parse((const uint8_t *)t.data, t.len, &out), MEMFIT_OK);
    assert_int_equal(strlen(out.model_id), n - 1);
    mf_mm_model_request_free(&out);
    mf_text_free(&t);
    memfit_free(s);
}

static void test_runtime_status_encode(void **state)
{
    (void)state;
    static const char *const methods[] = {"inference.GRPCInferenceService/ModelInfer"};
    struct mf_mm_runtime_status s = {.status = MF_MM_READY,
                                     .capacity_bytes = 3ull << 30,
                                     .max_loading_concurrency = 2,
                                     .model_loading_timeout_ms = 300000,
                                     .default_model_size_bytes = 1 << 20,
                                     .runtime_version = "1.2.3",
                                     .methods = methods,
                                     .n_methods = 1,
                                     .allow_any_method = true};
    struct mf_text t = {0};
    assert_true(mf_mm_runtime_status_encode(&s, &t));
    struct mf_pb_reader r = {(const uint8_t *)t.data, (const uint8_t *)t.data + t.len};
    struct mf_pb_field f;
    uint64_t seen[11] = {0};
    while (mf_pb_next(&r, &f) == 1) {
        assert_true(f.number <= 10);
        seen[f.number] = f.wire == MF_PB_LEN ? f.len : f.value;
        if (f.number == 8) { /* methodInfos entry {key, value {idInjectionPath [1]}} */
            struct mf_pb_reader e = {f.data, f.data + f.len};
            struct mf_pb_field k, v, p;
            assert_int_equal(mf_pb_next(&e, &k), 1);
            assert_int_equal(k.len, strlen(methods[0]));
            assert_int_equal(mf_pb_next(&e, &v), 1);
            assert_int_equal(v.number, 2);
            struct mf_pb_reader in = {v.data, v.data + v.len};
            assert_int_equal(mf_pb_next(&in, &p), 1);
            assert_int_equal(p.len, 1);
            assert_int_equal(p.data[0], 1);
        }
    }
    assert_int_equal(seen[1], MF_MM_READY);
    assert_true(seen[2] == 3ull << 30);
    assert_int_equal(seen[3], 2);
    assert_int_equal(seen[4], 300000);
    assert_int_equal(seen[5], 1 << 20);
    assert_int_equal(seen[6], 5);
    assert_int_equal(seen[9], 0); /* false: left out */
    assert_int_equal(seen[10], 1);
    mf_text_free(&t);

    assert_true(mf_mm_size_encode(0, 0, &t)); /* all defaults: an empty message */
    assert_int_equal(t.len, 0);
    assert_true(mf_mm_size_encode(12345, 4, &t));
    assert_int_equal(next((const uint8_t *)t.data, t.len, &f), 1);
    assert_int_equal(f.value, 12345);
    mf_text_free(&t);
}

/* ---- KServe v2 ---------------------------------------------------------------------- */

/* A request with every field: parameters of each kind at both levels,
 * two inputs (one with BYTES elements), outputs, raw contents. */
static void full_request(struct mf_v2_infer_request *r, struct mf_v2_param *params,
                         struct mf_v2_input *inputs, struct mf_v2_bytes *elements, char **outputs,
                         struct mf_v2_bytes *raw)
{
    params[0] = (struct mf_v2_param){.key = "max_tokens", .kind = MF_V2_PARAM_INT64, .i = -7};
    params[1] = (struct mf_v2_param){.key = "stream", .kind = MF_V2_PARAM_BOOL, .b = true};
    params[2] = (struct mf_v2_param){.key = "stop", .kind = MF_V2_PARAM_STRING, .s = "\n\n"};
    params[3] = (struct mf_v2_param){.key = "temperature", .kind = MF_V2_PARAM_DOUBLE, .d = 0.25};
    params[4] = (struct mf_v2_param){.key = "seed", .kind = MF_V2_PARAM_UINT64, .u = UINT64_MAX};
    elements[0] = (struct mf_v2_bytes){(const uint8_t *)"hello", 5};
    elements[1] = (struct mf_v2_bytes){(const uint8_t *)"", 0};
    inputs[0] = (struct mf_v2_input){.name = "text",
                                     .datatype = "BYTES",
                                     .shape = {2},
                                     .n_shape = 1,
                                     .params = params + 3,
                                     .n_params = 2,
                                     .elements = elements,
                                     .n_elements = 2};
    inputs[1] = (struct mf_v2_input){
        .name = "image", .datatype = "BYTES", .shape = {1, -1, 300000}, .n_shape = 3};
    outputs[0] = "embedding";
    outputs[1] = "";
    raw[0] = (struct mf_v2_bytes){(const uint8_t *)"\x03\0\0\0abc", 7};
    *r = (struct mf_v2_infer_request){.model_name = "qwen",
                                      .model_version = "1",
                                      .id = "req-42",
                                      .params = params,
                                      .n_params = 3,
                                      .inputs = inputs,
                                      .n_inputs = 2,
                                      .outputs = outputs,
                                      .n_outputs = 2,
                                      .raw = raw,
                                      .n_raw = 1};
}

static void test_infer_round_trip(void **state)
{
    (void)state;
    struct mf_v2_param params[5];
    struct mf_v2_input inputs[2];
    struct mf_v2_bytes elements[2], raw[1];
    char *outputs[2];
    struct mf_v2_infer_request in, out;
    full_request(&in, params, inputs, elements, outputs, raw);
    struct mf_text t = {0};
    assert_true(mf_v2_infer_request_encode(&in, &t));
    assert_int_equal(mf_v2_infer_request_parse((const uint8_t *)t.data, t.len, 16, &out),
                     MEMFIT_OK);
    assert_true(mf_v2_infer_request_same(&in, &out));
    assert_string_equal(out.inputs[0].params[1].key, "seed");
    assert_true(out.inputs[0].params[1].u == UINT64_MAX);
    assert_int_equal(out.inputs[1].shape[1], -1);
    assert_int_equal(out.inputs[0].n_elements, 2);
    assert_memory_equal(out.inputs[0].elements[0].data, "hello", 5);
    /* Elements point into the message, not copies. */
    assert_true(out.inputs[0].elements[0].data >= (const uint8_t *)t.data &&
                out.inputs[0].elements[0].data < (const uint8_t *)t.data + t.len);
    struct mf_v2_bytes *items;
    size_t n;
    assert_int_equal(mf_v2_split_raw_bytes(&out.raw[0], 16, &items, &n), MEMFIT_OK);
    assert_int_equal(n, 1);
    assert_memory_equal(items[0].data, "abc", 3);
    memfit_free(items);
    /* A changed value is told apart. */
    out.inputs[1].shape[2]++;
    assert_false(mf_v2_infer_request_same(&in, &out));
    mf_v2_infer_request_free(&out);
    /* Fewer items than the request holds: refused. */
    assert_int_equal(mf_v2_infer_request_parse((const uint8_t *)t.data, t.len, 1, &out),
                     MEMFIT_E_FORMAT);
    assert_non_null(strstr(memfit_last_error(), "more elements"));
    mf_text_free(&t);

    char *name, *version;
    assert_true(mf_v2_name_request_encode("qwen", NULL, &t));
    assert_int_equal(mf_v2_name_request_parse((const uint8_t *)t.data, t.len, &name, &version),
                     MEMFIT_OK);
    assert_string_equal(name, "qwen");
    assert_null(version);
    memfit_free(name);
    mf_text_free(&t);
    assert_int_equal(mf_v2_name_request_parse(BYTES(0x10, 0x01), &name, &version), MEMFIT_E_FORMAT);
}

/* Shape: unpacked varints and packed runs add up; anything else is refused. */
static void test_infer_shape(void **state)
{
    (void)state;
    struct mf_v2_infer_request out;
    /* inputs { shape: 2 (unpacked), shape: [3, 4] (packed) } */
    assert_int_equal(mf_v2_infer_request_parse(BYTES(0x2a, 6, 0x18, 2, 0x1a, 2, 3, 4), 16, &out),
                     MEMFIT_OK);
    assert_int_equal(out.inputs[0].n_shape, 3);
    assert_int_equal(out.inputs[0].shape[0], 2);
    assert_int_equal(out.inputs[0].shape[2], 4);
    mf_v2_infer_request_free(&out);
    /* shape as I32: wrong wire type. */
    assert_int_equal(mf_v2_infer_request_parse(BYTES(0x2a, 5, 0x1d, 1, 2, 3, 4), 16, &out),
                     MEMFIT_E_FORMAT);
    assert_non_null(strstr(memfit_last_error(), "shape"));
    /* A packed run cut inside a varint. */
    assert_int_equal(mf_v2_infer_request_parse(BYTES(0x2a, 3, 0x1a, 1, 0x80), 16, &out),
                     MEMFIT_E_FORMAT);
    /* Nine dimensions. */
    assert_int_equal(
        mf_v2_infer_request_parse(BYTES(0x2a, 11, 0x1a, 9, 1, 1, 1, 1, 1, 1, 1, 1, 1), 16, &out),
        MEMFIT_E_FORMAT);
    assert_non_null(strstr(memfit_last_error(), "8 dimensions"));
    /* An input's length past the end of the request. */
    assert_int_equal(mf_v2_infer_request_parse(BYTES(0x2a, 9, 0x18, 2), 16, &out), MEMFIT_E_FORMAT);
    /* A nested field past the end of its input (but inside the request). */
    assert_int_equal(mf_v2_infer_request_parse(BYTES(0x2a, 2, 0x0a, 5, 'a', 'b', 'c'), 16, &out),
                     MEMFIT_E_FORMAT);
}

static void test_infer_wrong_types(void **state)
{
    (void)state;
    struct mf_v2_infer_request out;
    /* contents of FP32 (field 2): memfit's models take BYTES. */
    assert_int_equal(mf_v2_infer_request_parse(BYTES(0x2a, 4, 0x2a, 2, 0x10, 0), 16, &out),
                     MEMFIT_E_FORMAT);
    assert_non_null(strstr(memfit_last_error(), "BYTES"));
    /* A double parameter sent as a varint; a bool one as I64. */
    assert_int_equal(
        mf_v2_infer_request_parse(BYTES(0x22, 7, 0x0a, 1, 't', 0x12, 2, 0x20, 1), 16, &out),
        MEMFIT_E_FORMAT);
    assert_non_null(strstr(memfit_last_error(), "double_param"));
    assert_int_equal(
        mf_v2_infer_request_parse(
            BYTES(0x22, 14, 0x0a, 1, 'b', 0x12, 9, 0x09, 1, 0, 0, 0, 0, 0, 0, 0), 16, &out),
        MEMFIT_E_FORMAT);
    /* A parameter with no key. */
    assert_int_equal(mf_v2_infer_request_parse(BYTES(0x22, 4, 0x12, 2, 0x08, 1), 16, &out),
                     MEMFIT_E_FORMAT);
    assert_non_null(strstr(memfit_last_error(), "no name"));
    /* inputs / outputs / raw contents as varints. */
    assert_int_equal(mf_v2_infer_request_parse(BYTES(0x28, 1), 16, &out), MEMFIT_E_FORMAT);
    assert_int_equal(mf_v2_infer_request_parse(BYTES(0x30, 1), 16, &out), MEMFIT_E_FORMAT);
    assert_int_equal(mf_v2_infer_request_parse(BYTES(0x38, 1), 16, &out), MEMFIT_E_FORMAT);
    /* Unknown fields inside an input, a parameter value and contents are skipped. */
    assert_int_equal(mf_v2_infer_request_parse(BYTES(0x2a, 12, 0x78, 1,         /* input.15 */
                                                     0x2a, 4, 0x42, 0, 0x48, 1, /* contents */
                                                     0x22, 2, 0x12, 0),         /* no key */
                                               16, &out),
                     MEMFIT_E_FORMAT);
    assert_int_equal(
        mf_v2_infer_request_parse(
            BYTES(0x2a, 12, 0x78, 1, 0x2a, 4, 0x42, 0, 0x48, 1, 0x22, 2, 0x0a, 0), 16, &out),
        MEMFIT_OK);
    assert_int_equal(out.inputs[0].n_elements, 1);
    assert_int_equal(out.inputs[0].n_params, 1);
    assert_string_equal(out.inputs[0].params[0].key, "");
    mf_v2_infer_request_free(&out);
}

static void test_infer_limits(void **state)
{
    (void)state;
    struct mf_text t = {0};
    struct mf_v2_infer_request out;
    for (int i = 0; i < 17; i++)
        mf_pb_put_bytes(&t, 5, "", 0);
    assert_int_equal(mf_v2_infer_request_parse((const uint8_t *)t.data, t.len, 16, &out),
                     MEMFIT_E_FORMAT);
    assert_non_null(strstr(memfit_last_error(), "16 inputs"));
    mf_text_free(&t);
    struct mf_v2_param p = {.key = "k", .kind = MF_V2_PARAM_BOOL};
    for (int i = 0; i < 65; i++)
        mf_v2_put_param(&t, 4, &p);
    assert_int_equal(mf_v2_infer_request_parse((const uint8_t *)t.data, t.len, 16, &out),
                     MEMFIT_E_FORMAT);
    assert_non_null(strstr(memfit_last_error(), "64 parameters"));
    mf_text_free(&t);
    for (int i = 0; i < 17; i++)
        mf_pb_put_bytes(&t, 7, "", 0);
    assert_int_equal(mf_v2_infer_request_parse((const uint8_t *)t.data, t.len, 16, &out),
                     MEMFIT_E_FORMAT);
    mf_text_free(&t);
}

static void test_split_raw_bytes(void **state)
{
    (void)state;
    struct mf_v2_bytes *items;
    size_t n;
    struct mf_v2_bytes raw = {(const uint8_t *)"\x02\0\0\0hi\0\0\0\0", 10};
    assert_int_equal(mf_v2_split_raw_bytes(&raw, 4, &items, &n), MEMFIT_OK);
    assert_int_equal(n, 2);
    assert_int_equal(items[1].len, 0);
    memfit_free(items);
    raw.len = 9; /* 3 bytes where a length should be */
    assert_int_equal(mf_v2_split_raw_bytes(&raw, 4, &items, &n), MEMFIT_E_FORMAT);
    assert_non_null(strstr(memfit_last_error(), "4-byte length"));
    raw = (struct mf_v2_bytes){(const uint8_t *)"\x09\0\0\0hi", 6};
    assert_int_equal(mf_v2_split_raw_bytes(&raw, 4, &items, &n), MEMFIT_E_FORMAT);
    assert_non_null(strstr(memfit_last_error(), "past the end"));
    raw = (struct mf_v2_bytes){(const uint8_t *)"\0\0\0\0\0\0\0\0", 8};
    assert_int_equal(mf_v2_split_raw_bytes(&raw, 1, &items, &n), MEMFIT_E_FORMAT);
    assert_non_null(strstr(memfit_last_error(), "more than 1"));
    raw.len = 0;
    assert_int_equal(mf_v2_split_raw_bytes(&raw, 1, &items, &n), MEMFIT_OK);
    assert_int_equal(n, 0);
    memfit_free(items);
}

/* ---- Allocation failures ------------------------------------------------------------ */

struct walk {
    struct mf_text msg;
    struct mf_v2_infer_request infer;
    struct mf_mm_model_request model;
    struct mf_v2_bytes *items;
    char *name, *version;
    struct mf_text out;
};

static enum memfit_status parse_infer(void *ctx)
{
    struct walk *w = ctx;
    return mf_v2_infer_request_parse((const uint8_t *)w->msg.data, w->msg.len, 16, &w->infer);
}

static void free_infer(void *ctx)
{
    mf_v2_infer_request_free(&((struct walk *)ctx)->infer);
}

static enum memfit_status encode_infer(void *ctx)
{
    struct walk *w = ctx;
    bool ok = mf_v2_infer_request_encode(&w->infer, &w->out);
    if (!ok)
        mf_text_free(&w->out);
    return ok ? MEMFIT_OK : MEMFIT_E_NOMEM;
}

static void free_out(void *ctx)
{
    mf_text_free(&((struct walk *)ctx)->out);
}

static enum memfit_status parse_model(void *ctx)
{
    struct walk *w = ctx;
    return mf_mm_model_request_parse((const uint8_t *)w->msg.data, w->msg.len, &w->model);
}

static void free_model(void *ctx)
{
    mf_mm_model_request_free(&((struct walk *)ctx)->model);
}

static enum memfit_status parse_name(void *ctx)
{
    struct walk *w = ctx;
    return mf_v2_name_request_parse((const uint8_t *)w->msg.data, w->msg.len, &w->name,
                                    &w->version);
}

static void free_name(void *ctx)
{
    struct walk *w = ctx;
    memfit_free(w->name);
    memfit_free(w->version);
}

static enum memfit_status split_raw(void *ctx)
{
    struct walk *w = ctx;
    struct mf_v2_bytes raw = {(const uint8_t *)w->msg.data, w->msg.len};
    size_t n;
    return mf_v2_split_raw_bytes(&raw, 64, &w->items, &n);
}

static void free_items(void *ctx)
{
    memfit_free(((struct walk *)ctx)->items);
}

static enum memfit_status encode_status(void *ctx)
{
    struct walk *w = ctx;
    static const char *const methods[] = {"a/b", "c/d"};
    struct mf_mm_runtime_status s = {.status = MF_MM_READY,
                                     .capacity_bytes = 1,
                                     .runtime_version = "1",
                                     .methods = methods,
                                     .n_methods = 2};
    bool ok = mf_mm_runtime_status_encode(&s, &w->out);
    if (!ok)
        mf_text_free(&w->out);
    return ok ? MEMFIT_OK : MEMFIT_E_NOMEM;
}

static void test_alloc_failures(void **state)
{
    (void)state;
    struct mf_v2_param params[5];
    struct mf_v2_input inputs[2];
    struct mf_v2_bytes elements[2], raw[1];
    char *outputs[2];
    struct mf_v2_infer_request in;
    full_request(&in, params, inputs, elements, outputs, raw);
    struct walk w = {0};
    assert_true(mf_v2_infer_request_encode(&in, &w.msg));
    assert_true(mf_test_alloc_failures(parse_infer, free_infer, &w) > 5);
    w.infer = in;
    assert_true(mf_test_alloc_failures(encode_infer, free_out, &w) > 5);
    mf_text_free(&w.msg);

    struct mf_mm_model_request m = {
        .model_id = "a", .model_type = "b", .model_path = "/c", .model_key = "d"};
    assert_true(mf_mm_model_request_encode(&m, &w.msg));
    assert_true(mf_test_alloc_failures(parse_model, free_model, &w) >= 4);
    assert_true(mf_test_alloc_failures(parse_name, free_name, &w) >= 2);
    mf_text_free(&w.msg);

    for (int i = 0; i < 20; i++)
        mf_text_append(&w.msg, "\x01\0\0\0x", 5);
    assert_true(mf_test_alloc_failures(split_raw, free_items, &w) >= 2);
    mf_text_free(&w.msg);
    assert_true(mf_test_alloc_failures(encode_status, free_out, &w) >= 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_field_reader),
        cmocka_unit_test(test_field_writers),
        cmocka_unit_test(test_model_request_round_trip),
        cmocka_unit_test(test_model_request_limits),
        cmocka_unit_test(test_runtime_status_encode),
        cmocka_unit_test(test_infer_round_trip),
        cmocka_unit_test(test_infer_shape),
        cmocka_unit_test(test_infer_wrong_types),
        cmocka_unit_test(test_infer_limits),
        cmocka_unit_test(test_split_raw_bytes),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * libFuzzer target for the hand-written protobuf codec of the gRPC front end
 * (src/server/grpc_wire.c): the field reader, every request decoder
 * (ModelMesh's model requests, KServe v2's ModelInferRequest and the
 * name requests) and the raw BYTES splitter, each given the whole input.
 * Oracles: what decodes re-encodes to bytes that decode to the same values
 * (and re-encode to the same bytes: the encoding is canonical); a field
 * sequence re-written field by field reads back the same; the raw splitter's
 * elements, written back with their lengths, are the input itself; the
 * response encoders' output reads back field by field. No crash, no leak
 * (every allocation given back), and what a decoded request holds stays
 * within a bound linear in the input's size.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "memfit/core.h"
#include "server/grpc_wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_ITEMS 256

/* What a decoder may hold for `size` input bytes: arrays grow by doubling
 * (at most twice what they use) with items of at most a few hundred bytes
 * per few input bytes, strings are copies. */
static void check_bounded(uint64_t live_before, size_t size)
{
    struct memfit_alloc_stats s;
    memfit_alloc_get_stats(&s);
    uint64_t held = s.total_live_bytes > live_before ? s.total_live_bytes - live_before : 0;
    if (held > 64 * (uint64_t)size + 64 * 1024)
        abort();
}

/* The bytes of a message built in `t` (an empty one has no buffer). */
static const uint8_t *bytes_of(const struct mf_text *t)
{
    return t->data ? (const uint8_t *)t->data : (const uint8_t *)"";
}

static uint64_t live_bytes(void)
{
    struct memfit_alloc_stats s;
    memfit_alloc_get_stats(&s);
    return s.total_live_bytes;
}

/* Reads every field; false at the first malformed one. */
static size_t read_fields(const uint8_t *data, size_t size, struct mf_pb_field *out, size_t max,
                          bool *ok)
{
    struct mf_pb_reader r = {data, data + size};
    struct mf_pb_field f;
    size_t n = 0;
    int got;
    while ((got = mf_pb_next(&r, &f)) == 1) {
        if (f.wire == MF_PB_LEN && (f.data < data || f.data + f.len > data + size))
            abort(); /* a field must point inside its message */
        if (n < max)
            out[n] = f;
        n++;
    }
    *ok = got == 0;
    return n;
}

/* The field reader: the fields of a well-formed message, written again,
 * read back the same. */
static void fuzz_fields(const uint8_t *data, size_t size)
{
    enum { MAX_FIELDS = 256 };
    static struct mf_pb_field a[MAX_FIELDS], b[MAX_FIELDS];
    bool ok;
    size_t n = read_fields(data, size, a, MAX_FIELDS, &ok);
    if (!ok || n > MAX_FIELDS)
        return;
    struct mf_text t = {0};
    for (size_t i = 0; i < n; i++) {
        switch (a[i].wire) {
        case MF_PB_VARINT:
            mf_pb_put_varint(&t, a[i].number, a[i].value);
            break;
        case MF_PB_I64:
            mf_pb_put_i64(&t, a[i].number, a[i].value);
            break;
        case MF_PB_I32:
            mf_pb_put_i32(&t, a[i].number, (uint32_t)a[i].value);
            break;
        case MF_PB_LEN:
            mf_pb_put_bytes(&t, a[i].number, a[i].data, a[i].len);
            break;
        }
    }
    if (t.failed)
        abort();
    size_t m = read_fields(bytes_of(&t), t.len, b, MAX_FIELDS, &ok);
    if (!ok || m != n)
        abort();
    for (size_t i = 0; i < n; i++)
        if (a[i].number != b[i].number || a[i].wire != b[i].wire ||
            (a[i].wire != MF_PB_LEN && a[i].value != b[i].value) || a[i].len != b[i].len ||
            (a[i].len && memcmp(a[i].data, b[i].data, a[i].len) != 0))
            abort();
    mf_text_free(&t);
}

static bool same_string(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void fuzz_model_request(const uint8_t *data, size_t size)
{
    uint64_t before = live_bytes();
    struct mf_mm_model_request r, back;
    if (mf_mm_model_request_parse(data, size, &r) != MEMFIT_OK)
        return;
    check_bounded(before, size);
    struct mf_text t = {0};
    if (!mf_mm_model_request_encode(&r, &t))
        abort();
    if (mf_mm_model_request_parse(bytes_of(&t), t.len, &back) != MEMFIT_OK)
        abort();
    if (!same_string(r.model_id, back.model_id) || !same_string(r.model_type, back.model_type) ||
        !same_string(r.model_path, back.model_path) || !same_string(r.model_key, back.model_key))
        abort();
    mf_mm_model_request_free(&back);
    mf_mm_model_request_free(&r);
    mf_text_free(&t);
}

static void fuzz_name_request(const uint8_t *data, size_t size)
{
    char *name, *version, *name2, *version2;
    if (mf_v2_name_request_parse(data, size, &name, &version) != MEMFIT_OK)
        return;
    struct mf_text t = {0};
    if (!mf_v2_name_request_encode(name, version, &t))
        abort();
    if (mf_v2_name_request_parse(bytes_of(&t), t.len, &name2, &version2) != MEMFIT_OK)
        abort();
    if (!same_string(name, name2) || !same_string(version, version2))
        abort();
    memfit_free(name);
    memfit_free(version);
    memfit_free(name2);
    memfit_free(version2);
    mf_text_free(&t);
}

/* The raw BYTES contents: the elements with their lengths are the input. */
static void fuzz_raw(const uint8_t *data, size_t size)
{
    struct mf_v2_bytes raw = {data, size}, *items;
    size_t n;
    if (mf_v2_split_raw_bytes(&raw, MAX_ITEMS, &items, &n) != MEMFIT_OK)
        return;
    if (n > MAX_ITEMS)
        abort();
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t le[4] = {(uint8_t)items[i].len, (uint8_t)(items[i].len >> 8),
                         (uint8_t)(items[i].len >> 16), (uint8_t)(items[i].len >> 24)};
        if (at + 4 > size || memcmp(data + at, le, 4) != 0 || items[i].data != data + at + 4)
            abort();
        at += 4 + items[i].len;
    }
    if (at != size)
        abort();
    memfit_free(items);
}

static void fuzz_infer(const uint8_t *data, size_t size)
{
    uint64_t before = live_bytes();
    struct mf_v2_infer_request r, back;
    if (mf_v2_infer_request_parse(data, size, MAX_ITEMS, &r) != MEMFIT_OK)
        return;
    check_bounded(before, size);
    struct mf_text t = {0}, again = {0};
    if (!mf_v2_infer_request_encode(&r, &t))
        abort();
    if (mf_v2_infer_request_parse(bytes_of(&t), t.len, MAX_ITEMS, &back) != MEMFIT_OK)
        abort();
    if (!mf_v2_infer_request_same(&r, &back))
        abort();
    /* Canonical: the re-encoded message encodes to itself. */
    if (!mf_v2_infer_request_encode(&back, &again) || again.len != t.len ||
        (t.len && memcmp(again.data, t.data, t.len) != 0))
        abort();
    mf_v2_infer_request_free(&back);
    mf_v2_infer_request_free(&r);
    mf_text_free(&t);
    mf_text_free(&again);
}

static uint64_t take_u64(const uint8_t **p, const uint8_t *end)
{
    uint64_t v = 0;
    for (int i = 0; i < 8 && *p < end; i++)
        v |= (uint64_t) * (*p)++ << (8 * i);
    return v;
}

/* The response encoders, from values taken from the input. */
static void fuzz_responses(const uint8_t *data, size_t size)
{
    const uint8_t *p = data, *end = data + size;
    static const char *const methods[] = {"a/b", "inference.GRPCInferenceService/ModelInfer"};
    struct mf_mm_runtime_status s = {
        .status = (enum mf_mm_status)(take_u64(&p, end) % 3),
        .capacity_bytes = take_u64(&p, end),
        .max_loading_concurrency = (uint32_t)take_u64(&p, end),
        .model_loading_timeout_ms = (uint32_t)take_u64(&p, end),
        .default_model_size_bytes = take_u64(&p, end),
        .runtime_version = "0.0.0-fuzz",
        .methods = methods,
        .n_methods = take_u64(&p, end) % 3,
        .limit_model_concurrency = size & 1,
        .allow_any_method = size & 2,
    };
    struct mf_text t = {0};
    if (!mf_mm_runtime_status_encode(&s, &t))
        abort();
    struct mf_pb_field f;
    struct mf_pb_reader r = {bytes_of(&t), bytes_of(&t) + t.len};
    int got;
    uint64_t capacity = 0;
    while ((got = mf_pb_next(&r, &f)) == 1)
        if (f.number == 2)
            capacity = f.value;
    if (got != 0 || capacity != s.capacity_bytes)
        abort();
    mf_text_free(&t);
    if (!mf_mm_size_encode(s.capacity_bytes, s.max_loading_concurrency, &t))
        abort();
    r = (struct mf_pb_reader){bytes_of(&t), bytes_of(&t) + t.len};
    uint64_t bytes = 0;
    while ((got = mf_pb_next(&r, &f)) == 1)
        if (f.number == 1)
            bytes = f.value;
    if (got != 0 || bytes != s.capacity_bytes)
        abort();
    mf_text_free(&t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t live = mf_alloc_live_count();
    fuzz_fields(data, size);
    fuzz_model_request(data, size);
    fuzz_name_request(data, size);
    fuzz_infer(data, size);
    fuzz_raw(data, size);
    fuzz_responses(data, size);
    memfit_clear_error();
    if (mf_alloc_live_count() != live)
        abort(); /* a decoder kept something */
    return 0;
}

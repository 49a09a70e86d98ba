/*
 * format_sample OUT.gguf|OUT.safetensors: writes a small model file with
 * the public writer — metadata of every kind GGUF has (GGUF) or string
 * metadata (safetensors), and tensors of several types filled with a fixed
 * pattern — for the interop test and the fuzz seed corpus.
 */
#include <stdio.h>
#include <string.h>

#include "memfit/memfit.h"

static int fail(void)
{
    fprintf(stderr, "format_sample: %s\n", memfit_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: format_sample OUT.gguf|OUT.safetensors\n");
        return 2;
    }
    enum memfit_format fmt = memfit_format_from_path(argv[1]);
    memfit_writer *w;
    if (memfit_writer_create(argv[1], fmt, &w) != MEMFIT_OK)
        return fail();
    bool gguf = fmt == MEMFIT_FORMAT_GGUF;
    if (memfit_writer_set_meta_string(w, "general.architecture", "llama") != MEMFIT_OK ||
        memfit_writer_set_meta_string(w, "general.name", "memfit sample") != MEMFIT_OK)
        return fail();
    if (gguf) {
        struct memfit_meta_value v = {.type = MEMFIT_META_U32, .v.u = 2};
        memfit_writer_set_meta(w, "general.quantization_version", &v);
        v.type = MEMFIT_META_F32;
        v.v.f = 1e-5;
        memfit_writer_set_meta(w, "llama.attention.layer_norm_rms_epsilon", &v);
        v.type = MEMFIT_META_I64;
        v.v.i = -42;
        memfit_writer_set_meta(w, "test.i64", &v);
        v.type = MEMFIT_META_BOOL;
        v.v.u = 1;
        memfit_writer_set_meta(w, "tokenizer.ggml.add_bos_token", &v);
        uint8_t raw[256];
        size_t n = 0;
        const char *tokens[] = {"<s>", "</s>", "hello", "wörld"};
        for (int i = 0; i < 4; i++) {
            uint64_t len = strlen(tokens[i]);
            memcpy(raw + n, &len, 8);
            memcpy(raw + n + 8, tokens[i], len);
            n += 8 + len;
        }
        v.type = MEMFIT_META_ARRAY;
        v.v.array.elem_type = MEMFIT_META_STRING;
        v.v.array.count = 4;
        v.v.array.raw = raw;
        v.v.array.raw_bytes = n;
        memfit_writer_set_meta(w, "tokenizer.ggml.tokens", &v);
        int32_t types[4] = {3, 3, 1, 1};
        v.v.array.elem_type = MEMFIT_META_I32;
        v.v.array.raw = types;
        v.v.array.raw_bytes = sizeof(types);
        if (memfit_writer_set_meta(w, "tokenizer.ggml.token_type", &v) != MEMFIT_OK)
            return fail();
    }
    struct {
        const char *name;
        enum memfit_type type;
        uint32_t n_dims;
        int64_t shape[2];
    } ts[] = {
        {"token_embd.weight", gguf ? MEMFIT_TYPE_Q8_0 : MEMFIT_TYPE_F16, 2, {4, 64}},
        {"blk.0.attn_q.weight", gguf ? MEMFIT_TYPE_Q4_K : MEMFIT_TYPE_BF16, 2, {2, 256}},
        {"blk.0.attn_norm.weight", MEMFIT_TYPE_F32, 1, {64, 0}},
        {"output.weight", MEMFIT_TYPE_F16, 2, {3, 64}},
        {"pos", MEMFIT_TYPE_I32, 1, {5, 0}},
    };
    size_t n_t = sizeof(ts) / sizeof(ts[0]);
    for (size_t i = 0; i < n_t; i++)
        if (memfit_writer_add_tensor(w, ts[i].name, ts[i].type, ts[i].n_dims, ts[i].shape) !=
            MEMFIT_OK)
            return fail();
    static uint8_t data[1 << 16];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 7 + 3);
    for (size_t i = 0; i < n_t; i++) {
        uint64_t n = (uint64_t)ts[i].shape[0] * (ts[i].n_dims > 1 ? (uint64_t)ts[i].shape[1] : 1);
        uint64_t bytes;
        if (memfit_type_bytes(ts[i].type, n, &bytes) != MEMFIT_OK ||
            memfit_writer_write_tensor(w, i, 0, data, (size_t)bytes) != MEMFIT_OK)
            return fail();
    }
    if (memfit_writer_commit(w) != MEMFIT_OK)
        return fail();
    memfit_writer_destroy(w);
    return 0;
}

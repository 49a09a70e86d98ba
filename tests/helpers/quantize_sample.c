/*
 * quantize_sample OUT TYPE [LAYERS [DIM]]: writes a small llama-shaped model
 * (GGUF or safetensors by OUT's extension; TYPE f32, f16 or bf16) of
 * Gaussian weights (sigma 0.02, fixed seed) with the public writer, for
 * tests/integration/quantize.sh and bench/quantize_bench.sh. Tensors:
 * token_embd, per layer attn_norm (1-D), attn_q, attn_v, ffn_down; output
 * norm, output, and odd.weight whose rows (100) fit no quantized block.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memfit/memfit.h"

struct spec {
    char name[64];
    uint32_t n_dims;
    int64_t shape[2];
};

static uint64_t rng = 88172645463325252ull;

static float gauss(void)
{
    /* xorshift64 + Box-Muller: reproducible without libc's rand. */
    double u[2];
    for (int i = 0; i < 2; i++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        u[i] = ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
    }
    return (float)(0.02 * sqrt(-2 * log(u[0])) * cos(6.283185307179586 * u[1]));
}

static int fail(void)
{
    fprintf(stderr, "quantize_sample: %s\n", memfit_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: quantize_sample OUT f32|f16|bf16 [LAYERS [DIM]]\n");
        return 2;
    }
    enum memfit_type type;
    if (memfit_type_from_name(argv[2], &type) != MEMFIT_OK)
        return fail();
    long layers = argc > 3 ? strtol(argv[3], NULL, 10) : 8;
    long dim = argc > 4 ? strtol(argv[4], NULL, 10) : 256;
    if (layers < 1 || layers > 1000 || dim < 256 || dim % 256) {
        fprintf(stderr, "quantize_sample: LAYERS 1..1000, DIM a multiple of 256\n");
        return 2;
    }
    size_t n = 0, cap = (size_t)layers * 4 + 4;
    struct spec *s = memfit_calloc(cap, sizeof(*s));
    if (!s)
        return fail();
    snprintf(s[n].name, sizeof(s[n].name), "token_embd.weight");
    s[n].n_dims = 2, s[n].shape[0] = 64, s[n++].shape[1] = dim;
    for (long l = 0; l < layers; l++) {
        snprintf(s[n].name, sizeof(s[n].name), "blk.%ld.attn_norm.weight", l);
        s[n].n_dims = 1, s[n++].shape[0] = dim;
        snprintf(s[n].name, sizeof(s[n].name), "blk.%ld.attn_q.weight", l);
        s[n].n_dims = 2, s[n].shape[0] = dim, s[n++].shape[1] = dim;
        snprintf(s[n].name, sizeof(s[n].name), "blk.%ld.attn_v.weight", l);
        s[n].n_dims = 2, s[n].shape[0] = dim, s[n++].shape[1] = dim;
        snprintf(s[n].name, sizeof(s[n].name), "blk.%ld.ffn_down.weight", l);
        s[n].n_dims = 2, s[n].shape[0] = dim, s[n++].shape[1] = 2 * dim;
    }
    snprintf(s[n].name, sizeof(s[n].name), "output_norm.weight");
    s[n].n_dims = 1, s[n++].shape[0] = dim;
    snprintf(s[n].name, sizeof(s[n].name), "output.weight");
    s[n].n_dims = 2, s[n].shape[0] = 64, s[n++].shape[1] = dim;
    snprintf(s[n].name, sizeof(s[n].name), "odd.weight");
    s[n].n_dims = 2, s[n].shape[0] = 8, s[n++].shape[1] = 100;

    memfit_writer *w;
    enum memfit_format fmt = memfit_format_from_path(argv[1]);
    if (memfit_writer_create(argv[1], fmt, &w) != MEMFIT_OK ||
        memfit_writer_set_meta_string(w, "general.architecture", "llama") != MEMFIT_OK ||
        memfit_writer_set_meta_string(w, "general.name", "quantize sample") != MEMFIT_OK)
        return fail();
    for (size_t i = 0; i < n; i++)
        if (memfit_writer_add_tensor(w, s[i].name, type, s[i].n_dims, s[i].shape) != MEMFIT_OK)
            return fail();
    /* Rows of up to 2*dim floats at a time keep the writer's memory small. */
    float *row = memfit_malloc((size_t)dim * 2 * sizeof(float));
    uint8_t *enc = memfit_malloc((size_t)dim * 2 * sizeof(float));
    if (!row || !enc)
        return fail();
    for (size_t i = 0; i < n; i++) {
        int64_t rows = s[i].n_dims == 2 ? s[i].shape[0] : 1;
        int64_t len = s[i].shape[s[i].n_dims - 1];
        uint64_t off = 0, bytes;
        if (memfit_type_bytes(type, (uint64_t)len, &bytes) != MEMFIT_OK)
            return fail();
        for (int64_t r = 0; r < rows; r++) {
            for (int64_t k = 0; k < len; k++)
                row[k] = s[i].n_dims == 1 ? 1.0f + gauss() : gauss();
            if (memfit_type_quantize_row(type, row, enc, (uint64_t)len) != MEMFIT_OK ||
                memfit_writer_write_tensor(w, i, off, enc, (size_t)bytes) != MEMFIT_OK)
                return fail();
            off += bytes;
        }
    }
    if (memfit_writer_commit(w) != MEMFIT_OK)
        return fail();
    memfit_writer_destroy(w);
    memfit_free(row);
    memfit_free(enc);
    memfit_free(s);
    return 0;
}

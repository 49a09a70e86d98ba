/*
 * quantize_check IN OUT: for every tensor of IN, prints "name type rel_rmse"
 * where type is the tensor's type in OUT ("nf4" for a bitsandbytes NF4
 * group) and rel_rmse is sqrt(mean((x - x')^2) / mean(x^2)) of OUT's values
 * (dequantized with the library's kernels; NF4 via its absmax, or the
 * double-quantized stats) against IN's. Used by tests/integration/quantize.sh.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memfit/memfit.h"

static int fail(void)
{
    fprintf(stderr, "quantize_check: %s\n", memfit_last_error());
    return 1;
}

/* All n values of tensor t as floats (caller frees), or NULL. */
static float *to_floats(const struct memfit_tensor_info *t)
{
    float *v = memfit_malloc(t->n_elements * sizeof(float) + 1);
    if (v && memfit_type_dequantize_row(t->type, t->data, v, t->n_elements) != MEMFIT_OK) {
        memfit_free(v);
        return NULL;
    }
    return v;
}

static const void *sibling(memfit_tensors *set, const char *name, const char *suffix)
{
    char key[512];
    struct memfit_tensor_info t;
    snprintf(key, sizeof(key), "%s%s", name, suffix);
    return memfit_tensors_find(set, key, &t, NULL) == MEMFIT_OK ? t.data : NULL;
}

static float *nf4_floats(memfit_tensors *set, const struct memfit_tensor_info *t, uint64_t n)
{
    struct memfit_tensor_info am, qs;
    char key[512];
    snprintf(key, sizeof(key), "%s.absmax", t->name);
    if (memfit_tensors_find(set, key, &am, NULL) != MEMFIT_OK)
        return NULL;
    snprintf(key, sizeof(key), "%s.quant_state.bitsandbytes__nf4", t->name);
    if (memfit_tensors_find(set, key, &qs, NULL) != MEMFIT_OK)
        return NULL;
    float *out = memfit_malloc(n * sizeof(float) + 1);
    float *absmax = memfit_malloc(am.n_elements * sizeof(float) + 1);
    if (!out || !absmax)
        return NULL;
    if (am.type == MEMFIT_TYPE_F32) {
        memcpy(absmax, am.data, am.n_elements * sizeof(float));
    } else {
        /* double quant: nested_offset from the JSON */
        char json[1024] = {0};
        memcpy(json, qs.data, qs.n_bytes < 1023 ? qs.n_bytes : 1023);
        const char *p = strstr(json, "\"nested_offset\": ");
        const float *nested = sibling(set, t->name, ".nested_absmax");
        const float *map = sibling(set, t->name, ".nested_quant_map");
        if (!p || !nested || !map)
            return NULL;
        float offset = strtof(p + strlen("\"nested_offset\": "), NULL);
        if (memfit_nf4_unpack_absmax(am.data, nested, map, offset, am.n_elements, absmax) !=
            MEMFIT_OK)
            return NULL;
    }
    if (memfit_nf4_dequantize(t->data, absmax, n, 64, out) != MEMFIT_OK)
        return NULL;
    memfit_free(absmax);
    return out;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: quantize_check IN OUT\n");
        return 2;
    }
    memfit_tensors *in, *out;
    if (memfit_tensors_open(argv[1], NULL, &in) != MEMFIT_OK ||
        memfit_tensors_open(argv[2], NULL, &out) != MEMFIT_OK)
        return fail();
    for (size_t i = 0; i < memfit_tensors_count(in); i++) {
        struct memfit_tensor_info a, b;
        memfit_tensors_get(in, i, &a);
        if (memfit_tensors_find(out, a.name, &b, NULL) != MEMFIT_OK)
            return fail();
        bool nf4 = b.type == MEMFIT_TYPE_U8 && sibling(out, a.name, ".absmax");
        float *x = to_floats(&a);
        float *y = nf4 ? nf4_floats(out, &b, a.n_elements) : to_floats(&b);
        if (!x || !y || (!nf4 && b.n_elements != a.n_elements))
            return fail();
        double err = 0, ref = 0;
        for (uint64_t k = 0; k < a.n_elements; k++) {
            err += ((double)x[k] - y[k]) * ((double)x[k] - y[k]);
            ref += (double)x[k] * x[k];
        }
        printf("%s %s %.3e\n", a.name, nf4 ? "nf4" : memfit_type_get_info(b.type)->name,
               ref > 0 ? sqrt(err / ref) : sqrt(err));
        memfit_free(x);
        memfit_free(y);
    }
    memfit_tensors_close(in);
    memfit_tensors_close(out);
    return 0;
}

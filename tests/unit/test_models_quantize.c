/*
 * Unit tests of the quantization API (src/models/quantize.c): a small
 * llama-like GGUF written here (8 layers, an output head, norms, a row that
 * fits no K-quant block) quantized to q8_0 and q4_k_m, each output tensor's
 * type checked against the mix rule and against memfit_quantize_tensor_type
 * (the rule `memfit inspect` estimates with); NF4 to safetensors with its
 * bitsandbytes side tensors; keep patterns; refusals (missing directory,
 * NF4 to GGUF, existing OUT, OUT = IN, cancel) that leave no file behind;
 * the progress callback; the allocation fault walk.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_util.h"
#include "memfit/memfit.h"

#define N_LAYERS 8
#define ROW      256 /* one Q4_K/Q6_K block per row */

struct fixture {
    char dir[256];
    char in[300];
};

struct spec {
    char name[48];
    int64_t rows, cols; /* rows 0: a 1-D tensor of cols */
};

/* token_embd, per layer attn_norm / attn_q / attn_v / ffn_down, output_norm,
 * output, and odd.weight whose 96-element rows fit 32-blocks only. */
static size_t model_specs(struct spec *s)
{
    static const char *const per_layer[] = {"attn_norm", "attn_q", "attn_v", "ffn_down"};
    size_t n = 0;
    s[n++] = (struct spec){"token_embd.weight", 8, ROW};
    for (int l = 0; l < N_LAYERS; l++)
        for (int k = 0; k < 4; k++) {
            snprintf(s[n].name, sizeof(s[n].name), "blk.%d.%s.weight", l, per_layer[k]);
            s[n].rows = k == 0 ? 0 : 2;
            s[n++].cols = ROW;
        }
    s[n++] = (struct spec){"output_norm.weight", 0, ROW};
    s[n++] = (struct spec){"output.weight", 8, ROW};
    s[n++] = (struct spec){"odd.weight", 4, 96};
    return n;
}

static void write_model(const char *path)
{
    struct spec specs[4 * N_LAYERS + 4];
    size_t n = model_specs(specs);
    memfit_writer *w;
    assert_int_equal(memfit_writer_create(path, MEMFIT_FORMAT_GGUF, &w), MEMFIT_OK);
    assert_int_equal(memfit_writer_set_meta_string(w, "general.architecture", "llama"), MEMFIT_OK);
    for (size_t i = 0; i < n; i++) {
        int64_t shape[2] = {specs[i].rows, specs[i].cols};
        bool flat = specs[i].rows == 0;
        assert_int_equal(memfit_writer_add_tensor(w, specs[i].name, MEMFIT_TYPE_F32, flat ? 1 : 2,
                                                  flat ? &shape[1] : shape),
                         MEMFIT_OK);
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t count = (uint64_t)(specs[i].rows ? specs[i].rows : 1) * (uint64_t)specs[i].cols;
        float *v = memfit_malloc(count * sizeof(float));
        assert_non_null(v);
        for (uint64_t e = 0; e < count; e++)
            v[e] = (float)((e * 37 + i * 11) % 101) / 50.0f - 1.0f;
        assert_int_equal(memfit_writer_write_tensor(w, i, 0, v, count * sizeof(float)), MEMFIT_OK);
        memfit_free(v);
    }
    assert_int_equal(memfit_writer_commit(w), MEMFIT_OK);
    memfit_writer_destroy(w);
}

static int setup(void **state)
{
    struct fixture *f = memfit_calloc(1, sizeof(*f));
    if (!f)
        return -1;
    const char *tmp = getenv("TMPDIR");
    snprintf(f->dir, sizeof(f->dir), "%s/memfit-quantize-XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->in, sizeof(f->in), "%s/in.gguf", f->dir);
    write_model(f->in);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    DIR *d = opendir(f->dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        char p[600];
        snprintf(p, sizeof(p), "%s/%s", f->dir, e->d_name);
        if (e->d_name[0] != '.')
            unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(f->dir);
    memfit_free(f);
    return 0;
}

/* The files in the fixture's directory other than in.gguf and `allowed` (may be NULL). */
static int stray_files(const struct fixture *f, const char *allowed)
{
    int n = 0;
    DIR *d = opendir(f->dir);
    struct dirent *e;
    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.' && strcmp(e->d_name, "in.gguf") != 0 &&
            !(allowed && strcmp(e->d_name, allowed) == 0)) {
            fprintf(stderr, "stray file: %s\n", e->d_name);
            n++;
        }
    closedir(d);
    return n;
}

static enum memfit_type type_in(const char *path, const char *name)
{
    memfit_tensors *set;
    struct memfit_tensor_info t;
    assert_int_equal(memfit_tensors_open(path, NULL, &set), MEMFIT_OK);
    assert_int_equal(memfit_tensors_find(set, name, &t, NULL), MEMFIT_OK);
    enum memfit_type type = t.type;
    memfit_tensors_close(set);
    return type;
}

/* Every tensor of OUT has the type memfit_quantize_tensor_type gives its input tensor. */
static void check_rule(const char *in, const char *out, enum memfit_quantize_target target,
                       const struct memfit_quantize_report *r)
{
    memfit_tensors *set;
    assert_int_equal(memfit_tensors_open(in, NULL, &set), MEMFIT_OK);
    uint32_t n_layers = memfit_quantize_layer_count(set);
    assert_int_equal(n_layers, N_LAYERS);
    assert_int_equal(r->n_tensors, memfit_tensors_count(set));
    for (size_t i = 0; i < memfit_tensors_count(set); i++) {
        struct memfit_tensor_info t;
        enum memfit_quantize_reason why;
        assert_int_equal(memfit_tensors_get(set, i, &t), MEMFIT_OK);
        enum memfit_type want = memfit_quantize_tensor_type(&t, target, n_layers, &why);
        assert_string_equal(r->tensors[i].name, t.name);
        assert_int_equal(r->tensors[i].to, want);
        assert_int_equal(r->tensors[i].why, why);
        assert_int_equal(type_in(out, t.name), want);
    }
    memfit_tensors_close(set);
}

static void test_q8_0(void **state)
{
    struct fixture *f = *state;
    char out[320];
    snprintf(out, sizeof(out), "%s/q8.gguf", f->dir);
    struct memfit_quantize_options o;
    memfit_quantize_options_default(&o);
    assert_int_equal(o.target, MEMFIT_QUANTIZE_Q8_0);
    o.n_threads = 3;
    struct memfit_quantize_report r;
    assert_int_equal(memfit_quantize_file(f->in, out, &o, &r), MEMFIT_OK);
    assert_int_equal(r.format, MEMFIT_FORMAT_GGUF);
    assert_int_equal(r.n_threads, 3);
    assert_true(r.out_bytes < r.in_bytes);
    check_rule(f->in, out, MEMFIT_QUANTIZE_Q8_0, &r);
    assert_int_equal(type_in(out, "blk.1.attn_v.weight"), MEMFIT_TYPE_Q8_0);
    assert_int_equal(type_in(out, "blk.1.attn_norm.weight"), MEMFIT_TYPE_F32);
    assert_int_equal(type_in(out, "odd.weight"), MEMFIT_TYPE_Q8_0);
    memfit_quantize_report_free(&r);
    memfit_quantize_report_free(NULL);
    assert_int_equal(stray_files(f, "q8.gguf"), 0);
}

static void test_q4_k_m_mix(void **state)
{
    struct fixture *f = *state;
    char out[320];
    snprintf(out, sizeof(out), "%s/q4km.gguf", f->dir);
    struct memfit_quantize_options o;
    memfit_quantize_options_default(&o);
    assert_int_equal(memfit_quantize_target_parse("Q4_K_M", &o.target), MEMFIT_OK);
    assert_int_equal(o.target, MEMFIT_QUANTIZE_Q4_K_M);
    assert_string_equal(memfit_quantize_target_name(o.target), "q4_k_m");
    struct memfit_quantize_report r;
    assert_int_equal(memfit_quantize_file(f->in, out, &o, &r), MEMFIT_OK);
    check_rule(f->in, out, MEMFIT_QUANTIZE_Q4_K_M, &r);
    /* llama.cpp's use_more_bits for 8 layers: 0, 3, 6, 7. */
    static const enum memfit_type v[N_LAYERS] = {
        MEMFIT_TYPE_Q6_K, MEMFIT_TYPE_Q4_K, MEMFIT_TYPE_Q4_K, MEMFIT_TYPE_Q6_K,
        MEMFIT_TYPE_Q4_K, MEMFIT_TYPE_Q4_K, MEMFIT_TYPE_Q6_K, MEMFIT_TYPE_Q6_K};
    for (int l = 0; l < N_LAYERS; l++) {
        char name[64];
        snprintf(name, sizeof(name), "blk.%d.attn_v.weight", l);
        assert_int_equal(type_in(out, name), v[l]);
        snprintf(name, sizeof(name), "blk.%d.ffn_down.weight", l);
        assert_int_equal(type_in(out, name), v[l]);
        snprintf(name, sizeof(name), "blk.%d.attn_q.weight", l);
        assert_int_equal(type_in(out, name), MEMFIT_TYPE_Q4_K);
    }
    assert_int_equal(type_in(out, "output.weight"), MEMFIT_TYPE_Q6_K);
    assert_int_equal(type_in(out, "token_embd.weight"), MEMFIT_TYPE_Q4_K);
    assert_int_equal(type_in(out, "output_norm.weight"), MEMFIT_TYPE_F32);
    assert_int_equal(type_in(out, "odd.weight"), MEMFIT_TYPE_Q4_0); /* 96: no 256-block */
    memfit_tensors *set;
    struct memfit_meta_value ft;
    assert_int_equal(memfit_tensors_open(out, NULL, &set), MEMFIT_OK);
    assert_int_equal(memfit_tensors_meta_find(set, "general.file_type", &ft), MEMFIT_OK);
    assert_int_equal(ft.v.u, 15);
    /* The estimate of a converted tensor is what the file holds. */
    struct memfit_tensor_info t;
    assert_int_equal(memfit_tensors_find(set, "blk.0.attn_v.weight", &t, NULL), MEMFIT_OK);
    memfit_tensors_close(set);
    assert_int_equal(memfit_tensors_open(f->in, NULL, &set), MEMFIT_OK);
    struct memfit_tensor_info src;
    assert_int_equal(memfit_tensors_find(set, "blk.0.attn_v.weight", &src, NULL), MEMFIT_OK);
    assert_int_equal(memfit_quantize_tensor_bytes(&src, MEMFIT_QUANTIZE_Q4_K_M, N_LAYERS),
                     t.n_bytes);
    memfit_tensors_close(set);
    memfit_quantize_report_free(&r);
}

static void test_nf4_and_keep(void **state)
{
    struct fixture *f = *state;
    char out[320];
    snprintf(out, sizeof(out), "%s/nf4.safetensors", f->dir);
    const char *keep[] = {"blk.1.*"};
    struct memfit_quantize_options o;
    memfit_quantize_options_default(&o);
    o.target = MEMFIT_QUANTIZE_NF4;
    o.double_quant = true;
    o.keep = keep;
    o.n_keep = 1;
    struct memfit_quantize_report r;
    assert_int_equal(memfit_quantize_file(f->in, out, &o, &r), MEMFIT_OK);
    assert_int_equal(r.format, MEMFIT_FORMAT_SAFETENSORS);
    assert_int_equal(type_in(out, "blk.0.attn_q.weight"), MEMFIT_TYPE_U8);
    assert_int_equal(type_in(out, "blk.0.attn_q.weight.absmax"), MEMFIT_TYPE_U8);
    assert_int_equal(type_in(out, "blk.0.attn_q.weight.nested_absmax"), MEMFIT_TYPE_F32);
    assert_int_equal(type_in(out, "blk.1.attn_q.weight"), MEMFIT_TYPE_F32); /* kept */
    assert_int_equal(type_in(out, "output.weight"), MEMFIT_TYPE_F32);       /* the head */
    for (size_t i = 0; i < r.n_tensors; i++)
        if (strncmp(r.tensors[i].name, "blk.1.", 6) == 0)
            assert_int_equal(r.tensors[i].why, MEMFIT_QUANTIZE_REASON_KEEP);
    memfit_quantize_report_free(&r);
}

static void test_refusals_leave_nothing(void **state)
{
    struct fixture *f = *state;
    char out[320];
    struct memfit_quantize_options o;
    memfit_quantize_options_default(&o);
    struct memfit_quantize_report r = {.n_tensors = 77};

    snprintf(out, sizeof(out), "%s/missing/x.gguf", f->dir);
    assert_int_not_equal(memfit_quantize_file(f->in, out, &o, &r), MEMFIT_OK);
    assert_int_equal(r.n_tensors, 77); /* untouched on failure */

    snprintf(out, sizeof(out), "%s/x.gguf", f->dir);
    o.target = MEMFIT_QUANTIZE_NF4;
    assert_int_equal(memfit_quantize_file(f->in, out, &o, &r), MEMFIT_E_INVALID);
    assert_non_null(strstr(memfit_last_error(), "nf4"));
    o.target = MEMFIT_QUANTIZE_Q4_0;
    snprintf(out, sizeof(out), "%s/x.safetensors", f->dir);
    assert_int_equal(memfit_quantize_file(f->in, out, &o, &r), MEMFIT_E_INVALID);
    o.target = (enum memfit_quantize_target)99;
    assert_int_equal(memfit_quantize_file(f->in, out, &o, &r), MEMFIT_E_INVALID);
    enum memfit_quantize_target t;
    assert_int_equal(memfit_quantize_target_parse("q3_k", &t), MEMFIT_E_INVALID);
    assert_non_null(strstr(memfit_last_error(), "q3_k"));

    memfit_quantize_options_default(&o);
    assert_int_equal(memfit_quantize_file(f->in, f->in, &o, &r), MEMFIT_E_PERMISSION);
    o.overwrite = true;
    assert_int_equal(memfit_quantize_file(f->in, f->in, &o, &r), MEMFIT_E_PERMISSION);

    int cancel = 1;
    o.cancel = &cancel;
    snprintf(out, sizeof(out), "%s/x.gguf", f->dir);
    assert_int_equal(memfit_quantize_file(f->in, out, &o, &r), MEMFIT_E_CANCELLED);
    assert_int_equal(stray_files(f, NULL), 0);

    /* An existing OUT is kept unless overwrite is set. */
    o.cancel = NULL;
    o.overwrite = false;
    assert_int_equal(memfit_quantize_file(f->in, out, &o, NULL), MEMFIT_OK);
    assert_int_equal(memfit_quantize_file(f->in, out, &o, NULL), MEMFIT_E_EXISTS);
    o.overwrite = true;
    assert_int_equal(memfit_quantize_file(f->in, out, &o, NULL), MEMFIT_OK);
    assert_int_equal(stray_files(f, "x.gguf"), 0);
    unlink(out);
}

struct progress_seen {
    size_t calls;
    struct memfit_quantize_progress last;
};

static void on_progress(const struct memfit_quantize_progress *p, void *user)
{
    struct progress_seen *s = user;
    assert_true(p->bytes_done <= p->bytes_total);
    assert_true(p->tensors_done <= p->tensors_total);
    if (s->calls)
        assert_true(p->bytes_done >= s->last.bytes_done);
    s->calls++;
    s->last = *p;
}

static void test_progress(void **state)
{
    struct fixture *f = *state;
    char out[320];
    snprintf(out, sizeof(out), "%s/p.gguf", f->dir);
    struct progress_seen seen = {0};
    struct memfit_quantize_options o;
    memfit_quantize_options_default(&o);
    o.progress = on_progress;
    o.progress_user = &seen;
    struct memfit_quantize_report r;
    assert_int_equal(memfit_quantize_file(f->in, out, &o, &r), MEMFIT_OK);
    assert_true(seen.calls > r.n_tensors);
    assert_int_equal(seen.last.tensors_done, r.n_tensors);
    assert_int_equal(seen.last.bytes_done, seen.last.bytes_total);
    assert_int_equal(seen.last.bytes_total, r.in_bytes);
    memfit_quantize_report_free(&r);
    unlink(out);
}

struct walk {
    const struct fixture *f;
    char out[320];
    enum memfit_quantize_target target;
    struct memfit_quantize_report r;
};

static enum memfit_status walk_op(void *ctx)
{
    struct walk *w = ctx;
    struct memfit_quantize_options o;
    memfit_quantize_options_default(&o);
    o.target = w->target;
    o.n_threads = 1; /* the walk counts allocations: one thread keeps their order */
    o.overwrite = true;
    enum memfit_status st = memfit_quantize_file(w->f->in, w->out, &o, &w->r);
    if (st != MEMFIT_OK)
        assert_int_equal(stray_files(w->f, NULL), 0);
    return st;
}

static void walk_cleanup(void *ctx)
{
    struct walk *w = ctx;
    memfit_quantize_report_free(&w->r);
    unlink(w->out);
}

static void test_alloc_failures(void **state)
{
    struct walk w = {.f = *state, .target = MEMFIT_QUANTIZE_Q4_K_M};
    snprintf(w.out, sizeof(w.out), "%s/walk.gguf", w.f->dir);
    assert_true(mf_test_alloc_failures(walk_op, walk_cleanup, &w) > 5);
    w.target = MEMFIT_QUANTIZE_NF4;
    snprintf(w.out, sizeof(w.out), "%s/walk.safetensors", w.f->dir);
    assert_true(mf_test_alloc_failures(walk_op, walk_cleanup, &w) > 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_q8_0, setup, teardown),
        cmocka_unit_test_setup_teardown(test_q4_k_m_mix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nf4_and_keep, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals_leave_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_progress, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alloc_failures, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

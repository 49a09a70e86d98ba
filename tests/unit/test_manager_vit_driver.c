/*
 * The DINOv2 driver (src/manager/driver_vit.c) on the tiny DINOv2 fixtures
 * and on GGUF copies made here: configuration from a manifest, the plan
 * (known before loading, equal to what the engine reports once open), load,
 * forward through the manager equal to the engine's own forward, per-request
 * workspaces beyond the plan, quantize at load, and allocation fault
 * injection over the whole cycle.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_util.h"
#include "memfit/memfit.h"

#define MIB (1024ull * 1024ull)

static char *fixture(const char *name)
{
    char buf[1024], rel[256];
    snprintf(rel, sizeof(rel), "dinov2/%s", name);
    const char *p = mf_test_fixture(rel, buf, sizeof(buf));
    if (p[0] == '/')
        return memfit_strdup(p);
    char cwd[1024];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    return memfit_asprintf("%s/%s", cwd, p);
}

static char *tmp_file(const char *suffix)
{
    static unsigned counter;
    const char *dir = getenv("TMPDIR");
    return memfit_asprintf("%s/memfit_drv_%d_%u%s", dir ? dir : "/tmp", (int)getpid(), counter++,
                           suffix);
}

static struct memfit_manifest *manifest_for(const char *path, const char *extra)
{
    char *text = memfit_asprintf("models:\n"
                                 "  - name: dino\n"
                                 "    family: dinov2\n"
                                 "    sources: [%s]\n"
                                 "    limits: {max_batch: 2, max_image_size: 60}\n"
                                 "%s",
                                 path, extra ? extra : "");
    assert_non_null(text);
    struct memfit_manifest *mf = NULL;
    enum memfit_status st = memfit_manifest_parse_string(text, strlen(text), "t.yaml", &mf);
    if (st != MEMFIT_OK)
        fprintf(stderr, "%s\n", memfit_last_error());
    assert_int_equal(st, MEMFIT_OK);
    memfit_free(text);
    return mf;
}

static memfit_vit_driver_config *config_for(const char *path, const char *extra)
{
    struct memfit_manifest *mf = manifest_for(path, extra);
    memfit_vit_driver_config *cfg = NULL;
    assert_int_equal(memfit_vit_driver_config_create(mf, &mf->models[0], &cfg), MEMFIT_OK);
    memfit_manifest_free(mf);
    return cfg;
}

static void test_config_errors(void **state)
{
    (void)state;
    memfit_vit_driver_config *cfg = NULL;
    struct memfit_manifest *mf = manifest_for("/x/m.gguf", "    options: {quantise: q8_0}\n");
    assert_int_equal(memfit_vit_driver_config_create(mf, &mf->models[0], &cfg), MEMFIT_E_FORMAT);
    assert_non_null(strstr(memfit_last_error(), "unknown option 'quantise'"));
    memfit_manifest_free(mf);
    mf = manifest_for("/x/m.gguf", "    options: {quantize: q9}\n");
    assert_int_equal(memfit_vit_driver_config_create(mf, &mf->models[0], &cfg), MEMFIT_E_FORMAT);
    assert_non_null(strstr(memfit_last_error(), "quantize 'q9'"));
    memfit_manifest_free(mf);
    /* A remote source is fetched through the store: no local path until then. */
    mf = manifest_for("s3://bucket/m.gguf", NULL);
    assert_int_equal(memfit_vit_driver_config_create(mf, &mf->models[0], &cfg), MEMFIT_OK);
    assert_null(memfit_vit_driver_config_path(cfg));
    memfit_vit_driver_config_free(cfg);
    memfit_manifest_free(mf);
    /* Relative sources are relative to the manifest's directory. */
    const char *text = "models:\n  - name: a\n    family: dinov2\n    sources: [w/m.gguf]\n";
    assert_int_equal(memfit_manifest_parse_string(text, strlen(text), "/srv/conf/memfit.yaml", &mf),
                     MEMFIT_OK);
    assert_int_equal(memfit_vit_driver_config_create(mf, &mf->models[0], &cfg), MEMFIT_OK);
    assert_string_equal(memfit_vit_driver_config_path(cfg), "/srv/conf/w/m.gguf");
    memfit_vit_driver_config_free(cfg);
    memfit_manifest_free(mf);
    /* A missing file fails at plan time, naming it. */
    cfg = config_for("/nonexistent/m.gguf", NULL);
    struct memfit_vit_driver_plan p;
    assert_int_equal(memfit_vit_driver_plan_get(cfg, &p), MEMFIT_E_NOT_FOUND);
    assert_non_null(strstr(memfit_last_error(), "/nonexistent/m.gguf"));
    memfit_vit_driver_config_free(cfg);
}

/* The plan equals what the engine reports once the model is open. */
static void check_plan(const char *path)
{
    memfit_vit_driver_config *cfg = config_for(path, "    options: {threads: 2}\n");
    struct memfit_vit_driver_plan p;
    assert_int_equal(memfit_vit_driver_plan_get(cfg, &p), MEMFIT_OK);
    struct memfit_vit_options o;
    memfit_vit_options_default(&o);
    o.n_threads = 2;
    memfit_vit *vit;
    assert_int_equal(memfit_vit_open(path, &o, &vit), MEMFIT_OK);
    struct memfit_vit_info info;
    memfit_vit_get_info(vit, &info);
    assert_int_equal(p.max_batch, 2);
    assert_int_equal(p.max_image_size, 56); /* 60 rounded down to the patch size */
    size_t work;
    assert_int_equal(memfit_vit_plan(vit, 2, 56, 56, &work), MEMFIT_OK);
    assert_int_equal(p.cost.bytes[MEMFIT_BUDGET_WEIGHTS], info.weight_bytes);
    assert_int_equal(p.cost.bytes[MEMFIT_BUDGET_CONVERTED_WEIGHTS], info.converted_bytes);
    assert_int_equal(p.cost.bytes[MEMFIT_BUDGET_WORKSPACE], work);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(p.file_bytes, (uint64_t)sb.st_size);
    assert_true(info.weight_bytes <= (uint64_t)sb.st_size);
    assert_true(info.weight_bytes > (uint64_t)sb.st_size / 2);
    /* A second plan comes from the cache and is the same. */
    struct memfit_vit_driver_plan p2;
    assert_int_equal(memfit_vit_driver_plan_get(cfg, &p2), MEMFIT_OK);
    assert_memory_equal(&p.cost, &p2.cost, sizeof(p.cost));
    assert_int_equal(p.file_bytes, p2.file_bytes);
    assert_int_equal(p.max_batch, p2.max_batch);
    assert_int_equal(p.max_image_size, p2.max_image_size);
    assert_false(p.provisional || p2.provisional);
    memfit_vit_close(vit);
    memfit_vit_driver_config_free(cfg);
}

static void test_plan(void **state)
{
    (void)state;
    char *pth = fixture("vits_tiny.pth");
    check_plan(pth);
    /* GGUF copies in several types, made here. */
    memfit_vit *vit;
    assert_int_equal(memfit_vit_open(pth, NULL, &vit), MEMFIT_OK);
    const enum memfit_type types[] = {MEMFIT_TYPE_F32, MEMFIT_TYPE_F16, MEMFIT_TYPE_Q8_0};
    for (size_t i = 0; i < 3; i++) {
        char *g = tmp_file(".gguf");
        assert_int_equal(memfit_vit_write_gguf(vit, g, types[i]), MEMFIT_OK);
        check_plan(g);
        unlink(g);
        memfit_free(g);
    }
    memfit_vit_close(vit);
    memfit_free(pth);
}

static float *input(size_t n)
{
    float *x = memfit_malloc(n * sizeof(float));
    assert_non_null(x);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)((int)(i * 7919 % 2001) - 1000) / 500.0f;
    return x;
}

static memfit_manager *manager(uint64_t budget)
{
    struct memfit_manager_options o;
    memfit_manager_options_default(&o);
    o.budget_bytes = budget;
    o.reaper_thread = false;
    memfit_manager *mgr;
    assert_int_equal(memfit_manager_create(&o, &mgr), MEMFIT_OK);
    return mgr;
}

/* Load through the manager, forward equal to the engine's, unload. */
static void test_forward_through_manager(void **state)
{
    (void)state;
    char *pth = fixture("vits_tiny.pth");
    struct memfit_manifest *mf = manifest_for(pth, "    options: {threads: 1}\n");
    memfit_manager *mgr = manager(256 * MIB);
    memfit_vit_driver_config **cfgs;
    assert_int_equal(memfit_manager_register_manifest(mgr, mf, &cfgs), MEMFIT_OK);
    struct memfit_vit_driver_plan p;
    assert_int_equal(memfit_vit_driver_plan_get(cfgs[0], &p), MEMFIT_OK);

    memfit_handle *h;
    assert_int_equal(memfit_manager_acquire(mgr, "dino", 0, &h), MEMFIT_OK);
    struct memfit_budget_usage u;
    memfit_budget_get_usage(memfit_manager_budget(mgr), &u);
    assert_int_equal(u.reserved_bytes, memfit_budget_cost_total(&p.cost));

    memfit_vit *vit = memfit_vit_driver_engine(memfit_handle_model(h));
    struct memfit_vit_info info;
    memfit_vit_get_info(vit, &info);
    size_t n_px = 2 * 3 * 56 * 56;
    float *x = input(n_px);
    float *a = memfit_calloc(2 * info.dim, sizeof(float));
    float *b = memfit_calloc(2 * info.dim, sizeof(float));
    assert_int_equal(memfit_vit_driver_forward(memfit_handle_model(h), x, 2, 56, 56,
                                               MEMFIT_VIT_OUTPUT_CLS, false, a, 2 * info.dim, 0),
                     MEMFIT_OK);
    size_t work;
    assert_int_equal(memfit_vit_plan(vit, 2, 56, 56, &work), MEMFIT_OK);
    void *ws = mf_map_anon(work);
    assert_int_equal(memfit_vit_forward(vit, x, 2, 56, 56, MEMFIT_VIT_OUTPUT_CLS, false, ws, work,
                                        b, 2 * info.dim),
                     MEMFIT_OK);
    mf_unmap_anon(ws, work);
    assert_memory_equal(a, b, 2 * info.dim * sizeof(float));

    /* Beyond the plan (70x70): a workspace reserved for the request. */
    float *big = input(3 * 70 * 70);
    assert_int_equal(memfit_vit_driver_forward(memfit_handle_model(h), big, 1, 70, 70,
                                               MEMFIT_VIT_OUTPUT_CLS, false, a, info.dim, 0),
                     MEMFIT_OK);
    memfit_budget_get_usage(memfit_manager_budget(mgr), &u);
    assert_int_equal(u.reserved_bytes, memfit_budget_cost_total(&p.cost));
    assert_true(u.peak_reserved_bytes > memfit_budget_cost_total(&p.cost));
    /* Without a budget such a request is refused. */
    memfit_vit_driver_config_set_budget(cfgs[0], NULL);
    assert_int_equal(memfit_vit_driver_forward(memfit_handle_model(h), big, 1, 70, 70,
                                               MEMFIT_VIT_OUTPUT_CLS, false, a, info.dim, 0),
                     MEMFIT_E_RANGE);
    memfit_manager_release(h);
    assert_int_equal(memfit_manager_unload(mgr, "dino"), MEMFIT_OK);
    memfit_budget_get_usage(memfit_manager_budget(mgr), &u);
    assert_int_equal(u.reserved_bytes, 0);

    memfit_free(big);
    memfit_free(x);
    memfit_free(a);
    memfit_free(b);
    memfit_manager_destroy(mgr);
    memfit_vit_driver_config_free(cfgs[0]);
    memfit_free(cfgs);
    memfit_manifest_free(mf);
    memfit_free(pth);
}

/* quantize: q8_0 converts at load; the copy is charged as converted weights
 * and leaves no file behind. */
static void test_quantize_at_load(void **state)
{
    (void)state;
    char *pth = fixture("vits_tiny.pth");
    char *dir = tmp_file(".d");
    assert_int_equal(mkdir(dir, 0700), 0);
    char *extra = memfit_asprintf("    options: {quantize: q8_0, threads: 1}\n");
    char *text = memfit_asprintf("cache_dir: %s\nmodels:\n  - name: q\n    family: dinov2\n"
                                 "    sources: [%s]\n%s",
                                 dir, pth, extra);
    struct memfit_manifest *mf;
    assert_int_equal(memfit_manifest_parse_string(text, strlen(text), "q.yaml", &mf), MEMFIT_OK);
    memfit_manager *mgr = manager(256 * MIB);
    memfit_vit_driver_config **cfgs;
    assert_int_equal(memfit_manager_register_manifest(mgr, mf, &cfgs), MEMFIT_OK);
    struct memfit_vit_driver_plan p;
    assert_int_equal(memfit_vit_driver_plan_get(cfgs[0], &p), MEMFIT_OK);
    memfit_handle *h;
    assert_int_equal(memfit_manager_acquire(mgr, "q", 0, &h), MEMFIT_OK);
    struct memfit_vit_info info;
    memfit_vit_get_info(memfit_vit_driver_engine(memfit_handle_model(h)), &info);
    assert_int_equal(info.weight_type, MEMFIT_TYPE_Q8_0);
    /* The estimate covers the copy. */
    assert_true(p.cost.bytes[MEMFIT_BUDGET_CONVERTED_WEIGHTS] >= info.weight_bytes);
    memfit_manager_release(h);
    memfit_manager_destroy(mgr);
    assert_int_equal(rmdir(dir), 0); /* empty: the copy was unlinked */
    memfit_vit_driver_config_free(cfgs[0]);
    memfit_free(cfgs);
    memfit_manifest_free(mf);
    memfit_free(text);
    memfit_free(extra);
    memfit_free(dir);
    memfit_free(pth);
}

struct cycle {
    const char *path;
    const char *extra;
};

static enum memfit_status cycle_op(void *arg)
{
    struct cycle *c = arg;
    char *text = memfit_asprintf("models:\n  - name: d\n    family: dinov2\n    sources: [%s]\n"
                                 "    limits: {max_image_size: 28}\n%s",
                                 c->path, c->extra);
    if (!text)
        return MEMFIT_E_NOMEM;
    struct memfit_manifest *mf = NULL;
    memfit_manager *mgr = NULL;
    memfit_vit_driver_config **cfgs = NULL;
    memfit_handle *h = NULL;
    float *x = NULL, *out = NULL;
    struct memfit_manager_options o;
    memfit_manager_options_default(&o);
    o.budget_bytes = 64 * MIB;
    o.reaper_thread = false;
    enum memfit_status st = memfit_manifest_parse_string(text, strlen(text), "c.yaml", &mf);
    if (st == MEMFIT_OK)
        st = memfit_manager_create(&o, &mgr);
    if (st == MEMFIT_OK)
        st = memfit_manager_register_manifest(mgr, mf, &cfgs);
    if (st == MEMFIT_OK)
        st = memfit_manager_acquire(mgr, "d", 0, &h);
    if (st == MEMFIT_OK) {
        x = memfit_calloc(3 * 28 * 28, sizeof(float));
        out = memfit_calloc(1024, sizeof(float));
        if (!x || !out)
            st = MEMFIT_E_NOMEM;
    }
    if (st == MEMFIT_OK)
        st = memfit_vit_driver_forward(memfit_handle_model(h), x, 1, 28, 28, MEMFIT_VIT_OUTPUT_CLS,
                                       true, out, 1024, 0);
    memfit_manager_release(h);
    if (st == MEMFIT_OK)
        st = memfit_manager_unload(mgr, "d");
    memfit_manager_destroy(mgr);
    if (cfgs) {
        memfit_vit_driver_config_free(cfgs[0]);
        memfit_free(cfgs);
    }
    memfit_free(x);
    memfit_free(out);
    memfit_manifest_free(mf);
    memfit_free(text);
    /* A failed load is a FAILED model: the manager reports the driver's
     * status, which for an allocation is E_NOMEM. */
    return st;
}

static void test_fault_injection(void **state)
{
    (void)state;
    char *pth = fixture("vits_tiny.pth");
    struct cycle c = {pth, "    options: {threads: 1}\n"};
    unsigned n = mf_test_alloc_failures(cycle_op, NULL, &c);
    assert_true(n > 10);
    c.extra = "    options: {threads: 1, quantize: q8_0}\n";
    n = mf_test_alloc_failures(cycle_op, NULL, &c);
    assert_true(n > 10);
    memfit_free(pth);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_errors),           cmocka_unit_test(test_plan),
        cmocka_unit_test(test_forward_through_manager), cmocka_unit_test(test_quantize_at_load),
        cmocka_unit_test(test_fault_injection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Real-memory checks of the model manager with the DINOv2 driver, driven by
 * tests/integration/manager_cgroup.sh inside a memory cgroup:
 *
 *   manager_stress gen DIR
 *       writes a random ViT-S/14-shaped DINOv2 (D 384, depth 4) to
 *       DIR/vits_f32.gguf and converts it to f16, q8_0 and q4_0 copies.
 *   manager_stress stress CGROUP_DIR VERSION BUDGET_MB REQUESTS THREADS MODEL...
 *       REQUESTS requests from THREADS threads over the models in random
 *       order (56x56 images), a thread sampling the cgroup's working set;
 *       then every model unloaded. Prints key=value figures.
 *   manager_stress cycle CGROUP_DIR VERSION BUDGET_MB MODEL...
 *       loads and unloads each model, printing RSS and working set around
 *       each cycle.
 *
 * The shell test judges the figures; this program only fails on a request
 * that ends in neither success nor MEMFIT_E_BUDGET/E_TIMEOUT.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "memfit/memfit.h"

#define MIB (1024ull * 1024ull)

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static int add_tensor(memfit_writer *w, const char *name, uint32_t n_dims, const int64_t *shape,
                      uint64_t *seed)
{
    uint64_t n = 1;
    for (uint32_t i = 0; i < n_dims; i++)
        n *= (uint64_t)shape[i];
    (void)seed;
    return memfit_writer_add_tensor(w, name, MEMFIT_TYPE_F32, n_dims, shape) == MEMFIT_OK ? 0 : -1;
}

/* The tensors of a depth-4 ViT-S/14 in the original names, declared then written. */
static int gen(const char *dir)
{
    char *path = memfit_asprintf("%s/vits_f32.gguf", dir);
    memfit_writer *w;
    if (memfit_writer_create(path, MEMFIT_FORMAT_GGUF, &w) != MEMFIT_OK)
        return 1;
    const int64_t D = 384, H = 1536, DEPTH = 4;
    struct {
        char name[64];
        uint32_t nd;
        int64_t shape[4];
        float scale;
    } t[64];
    size_t n = 0;
#define T(nm, s, nd_, ...)                                                                         \
    do {                                                                                           \
        snprintf(t[n].name, sizeof(t[n].name), "%s", nm);                                          \
        t[n].nd = nd_;                                                                             \
        int64_t sh[] = {__VA_ARGS__};                                                              \
        memcpy(t[n].shape, sh, sizeof(sh));                                                        \
        t[n].scale = s;                                                                            \
        n++;                                                                                       \
    } while (0)
    T("cls_token", 0.02f, 3, 1, 1, D);
    T("pos_embed", 0.02f, 3, 1, 1370, D);
    T("patch_embed.proj.weight", 0.05f, 4, D, 3, 14, 14);
    T("patch_embed.proj.bias", 0.01f, 1, D);
    char nm[64];
    for (int64_t b = 0; b < DEPTH; b++) {
#define B(suffix, s, nd_, ...)                                                                     \
    snprintf(nm, sizeof(nm), "blocks.%lld.%s", (long long)b, suffix);                              \
    T(nm, s, nd_, __VA_ARGS__)
        B("norm1.weight", -1.0f, 1, D);
        B("norm1.bias", 0.01f, 1, D);
        B("attn.qkv.weight", 0.05f, 2, 3 * D, D);
        B("attn.qkv.bias", 0.01f, 1, 3 * D);
        B("attn.proj.weight", 0.05f, 2, D, D);
        B("attn.proj.bias", 0.01f, 1, D);
        B("ls1.gamma", 0.1f, 1, D);
        B("norm2.weight", -1.0f, 1, D);
        B("norm2.bias", 0.01f, 1, D);
        B("mlp.fc1.weight", 0.05f, 2, H, D);
        B("mlp.fc1.bias", 0.01f, 1, H);
        B("mlp.fc2.weight", 0.03f, 2, D, H);
        B("mlp.fc2.bias", 0.01f, 1, D);
        B("ls2.gamma", 0.1f, 1, D);
    }
    T("norm.weight", -1.0f, 1, D);
    T("norm.bias", 0.01f, 1, D);
    uint64_t seed = 88172645463325252ull;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = add_tensor(w, t[i].name, t[i].nd, t[i].shape, &seed);
    for (size_t i = 0; i < n && rc == 0; i++) {
        uint64_t count = 1;
        for (uint32_t k = 0; k < t[i].nd; k++)
            count *= (uint64_t)t[i].shape[k];
        float *v = memfit_malloc(count * sizeof(float));
        for (uint64_t k = 0; k < count; k++) {
            double u = (double)(rng_next(&seed) >> 11) / 9007199254740992.0 - 0.5;
            v[k] = t[i].scale < 0 ? 1.0f + 0.1f * (float)u : t[i].scale * 2.0f * (float)u;
        }
        if (memfit_writer_write_tensor(w, i, 0, v, count * sizeof(float)) != MEMFIT_OK)
            rc = 1;
        memfit_free(v);
    }
    if (rc == 0 && memfit_writer_commit(w) != MEMFIT_OK)
        rc = 1;
    memfit_writer_destroy(w);
    if (rc) {
        fprintf(stderr, "gen: %s\n", memfit_last_error());
        return 1;
    }
    memfit_vit *vit;
    if (memfit_vit_open(path, NULL, &vit) != MEMFIT_OK) {
        fprintf(stderr, "gen: %s\n", memfit_last_error());
        return 1;
    }
    const enum memfit_type types[] = {MEMFIT_TYPE_F16, MEMFIT_TYPE_Q8_0, MEMFIT_TYPE_Q4_0};
    for (int i = 0; i < 3 && rc == 0; i++) {
        char *p = memfit_asprintf("%s/vits_%s.gguf", dir, memfit_type_get_info(types[i])->name);
        if (memfit_vit_write_gguf(vit, p, types[i]) != MEMFIT_OK) {
            fprintf(stderr, "gen: %s\n", memfit_last_error());
            rc = 1;
        }
        memfit_free(p);
    }
    memfit_vit_close(vit);
    memfit_free(path);
    return rc;
}

/* ---- Measuring ---------------------------------------------------------- */

static const char *cg_dir;
static int cg_version;

static uint64_t working_set(void)
{
    struct memfit_cgroup *cg = memfit_calloc(1, sizeof(*cg));
    uint64_t ws = 0;
    if (cg && memfit_cgroup_read_dir(cg_dir, NULL, cg_version, cg) == MEMFIT_OK)
        ws = cg->working_set_bytes;
    memfit_free(cg);
    return ws;
}

static uint64_t rss(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long size = 0, res = 0;
    if (f) {
        if (fscanf(f, "%llu %llu", &size, &res) != 2)
            res = 0;
        fclose(f);
    }
    return res * 4096;
}

static memfit_engines *engines;
static memfit_manager *mgr;

/* The models through the engines layer, as `serve` opens them. */
static int open_models(uint64_t budget_mb, int n, char **paths)
{
    const char *dir = getenv("TMPDIR");
    char path[512];
    snprintf(path, sizeof(path), "%s/memfit-stress-%d.yaml", dir && *dir ? dir : "/tmp",
             (int)getpid());
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        return 1;
    }
    fprintf(f, "models:\n");
    for (int i = 0; i < n; i++)
        fprintf(f,
                "  - name: m%d\n    family: dinov2\n    sources: [%s]\n"
                "    keep_alive: -1\n    limits: {max_image_size: 56}\n"
                "    options: {threads: 1}\n",
                i, paths[i]);
    fclose(f);
    struct memfit_engines_options o;
    memfit_engines_options_default(&o);
    o.manifest_path = path;
    o.budget_bytes = budget_mb * MIB;
    int rc = memfit_engines_open(&o, &engines) == MEMFIT_OK ? 0 : 1;
    unlink(path);
    if (rc) {
        fprintf(stderr, "open: %s\n", memfit_last_error());
        return rc;
    }
    mgr = memfit_engines_manager(engines);
    return 0;
}

static void close_models(void)
{
    memfit_engines_close(engines);
}

/* One 56 x 56 image through a held model. */
static enum memfit_status forward(memfit_handle *h, const struct memfit_image *img, bool normalize,
                                  float *out, int64_t timeout_ms)
{
    struct memfit_embed_params p;
    memfit_embed_params_default(&p);
    p.transform.mode = MEMFIT_IMAGE_RESIZE_MULTIPLE;
    p.normalize = normalize;
    p.timeout_ms = timeout_ms;
    const struct memfit_image *imgs[1] = {img};
    return memfit_engine_embed(h, imgs, 1, &p, out, 384, NULL);
}

static void unload_all(int n)
{
    char name[16];
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "m%d", i);
        memfit_manager_unload(mgr, name);
    }
    memfit_heap_trim();
}

/* ---- Stress -------------------------------------------------------------- */

static int n_models, n_requests;
static _Atomic int next_request, n_ok, n_refused, n_other;
static _Atomic bool sampling;
static _Atomic uint64_t peak_ws;

static void *sampler_main(void *arg)
{
    (void)arg;
    while (atomic_load(&sampling)) {
        uint64_t ws = working_set();
        if (ws > atomic_load(&peak_ws))
            atomic_store(&peak_ws, ws);
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static void *worker_main(void *arg)
{
    uint64_t seed = 0x9E3779B97F4A7C15ull * ((uint64_t)(uintptr_t)arg + 1);
    struct memfit_image img = {56, 56, memfit_calloc(3 * 56 * 56, 1)};
    float *out = memfit_calloc(384, sizeof(float));
    for (size_t i = 0; i < 3 * 56 * 56; i++)
        img.rgb[i] = (uint8_t)rng_next(&seed);
    while (atomic_fetch_add(&next_request, 1) < n_requests) {
        char name[16];
        snprintf(name, sizeof(name), "m%d", (int)(rng_next(&seed) % (uint64_t)n_models));
        memfit_handle *h;
        enum memfit_status st = memfit_manager_acquire(mgr, name, 5000, &h);
        if (st == MEMFIT_OK) {
            st = forward(h, &img, true, out, 5000);
            memfit_manager_release(h);
        }
        if (st == MEMFIT_OK) {
            atomic_fetch_add(&n_ok, 1);
        } else if (st == MEMFIT_E_BUDGET || st == MEMFIT_E_TIMEOUT) {
            atomic_fetch_add(&n_refused, 1);
        } else {
            if (atomic_fetch_add(&n_other, 1) == 0)
                fprintf(stderr, "request %s: %s: %s\n", name, memfit_status_name(st),
                        memfit_last_error());
        }
    }
    memfit_free(img.rgb);
    memfit_free(out);
    return NULL;
}

static int stress(uint64_t budget_mb, int requests, int threads, int n, char **paths)
{
    n_models = n;
    n_requests = requests;
    memfit_heap_trim();
    uint64_t rss0 = rss(), ws0 = working_set();
    if (open_models(budget_mb, n, paths))
        return 1;
    atomic_store(&sampling, true);
    pthread_t sampler, workers[64];
    pthread_create(&sampler, NULL, sampler_main, NULL);
    uint64_t t0 = memfit_now_ns();
    for (int i = 0; i < threads; i++)
        pthread_create(&workers[i], NULL, worker_main, (void *)(uintptr_t)i);
    for (int i = 0; i < threads; i++)
        pthread_join(workers[i], NULL);
    uint64_t t1 = memfit_now_ns();
    atomic_store(&sampling, false);
    pthread_join(sampler, NULL);
    struct memfit_budget_usage u;
    memfit_budget_get_usage(memfit_manager_budget(mgr), &u);
    struct memfit_manager_status *s;
    uint64_t evictions = 0, loads = 0;
    if (memfit_manager_snapshot(mgr, &s) == MEMFIT_OK) {
        for (size_t i = 0; i < s->n_models; i++)
            evictions += s->models[i].n_evictions, loads += s->models[i].n_loads;
        memfit_free(s);
    }
    unload_all(n);
    close_models();
    memfit_heap_trim();
    uint64_t rss1 = rss(), ws1 = working_set();
    printf("served=%d refused=%d other=%d loads=%llu evictions=%llu seconds=%.2f\n",
           atomic_load(&n_ok), atomic_load(&n_refused), atomic_load(&n_other),
           (unsigned long long)loads, (unsigned long long)evictions, (double)(t1 - t0) / 1e9);
    printf("budget=%llu peak_reserved=%llu peak_ws=%llu\n", (unsigned long long)u.size_bytes,
           (unsigned long long)u.peak_reserved_bytes, (unsigned long long)atomic_load(&peak_ws));
    printf("rss_before=%llu rss_after=%llu ws_before=%llu ws_after=%llu\n",
           (unsigned long long)rss0, (unsigned long long)rss1, (unsigned long long)ws0,
           (unsigned long long)ws1);
    return atomic_load(&n_other) ? 1 : 0;
}

static int cycle(uint64_t budget_mb, int n, char **paths)
{
    if (open_models(budget_mb, n, paths))
        return 1;
    char name[16];
    int rc = 0;
    struct memfit_image img = {56, 56, memfit_calloc(3 * 56 * 56, 1)};
    float *out = memfit_calloc(384, sizeof(float));
    for (int i = 0; i < n; i++) {
        memfit_heap_trim();
        uint64_t rss0 = rss(), ws0 = working_set();
        snprintf(name, sizeof(name), "m%d", i);
        memfit_handle *h;
        if (memfit_manager_acquire(mgr, name, 0, &h) != MEMFIT_OK) {
            fprintf(stderr, "cycle %s: %s\n", name, memfit_last_error());
            rc = 1;
            break;
        }
        forward(h, &img, false, out, 0);
        uint64_t rss_l = rss(), ws_l = working_set();
        memfit_manager_release(h);
        memfit_manager_unload(mgr, name);
        uint64_t rss1 = rss(), ws1 = working_set();
        printf("model=%s rss_before=%llu rss_loaded=%llu rss_after=%llu ws_before=%llu "
               "ws_loaded=%llu ws_after=%llu\n",
               paths[i], (unsigned long long)rss0, (unsigned long long)rss_l,
               (unsigned long long)rss1, (unsigned long long)ws0, (unsigned long long)ws_l,
               (unsigned long long)ws1);
    }
    memfit_free(img.rgb);
    memfit_free(out);
    close_models();
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "gen") == 0)
        return gen(argv[2]);
    if (argc >= 8 && strcmp(argv[1], "stress") == 0) {
        cg_dir = argv[2];
        cg_version = atoi(argv[3]);  /* lint: allow: test helper argument */
        int threads = atoi(argv[6]); /* lint: allow: test helper argument */
        if (threads < 1 || threads > 64)
            return 2;
        return stress(strtoull(argv[4], NULL, 10), atoi(argv[5]), /* lint: allow: argument */
                      threads, argc - 7, argv + 7);
    }
    if (argc >= 6 && strcmp(argv[1], "cycle") == 0) {
        cg_dir = argv[2];
        cg_version = atoi(argv[3]); /* lint: allow: test helper argument */
        return cycle(strtoull(argv[4], NULL, 10), argc - 5, argv + 5);
    }
    fprintf(stderr, "usage: manager_stress gen DIR | stress CG VER BUDGET_MB N THREADS MODEL... | "
                    "cycle CG VER BUDGET_MB MODEL...\n");
    return 2;
}

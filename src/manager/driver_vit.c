/*
 * The DINOv2 driver: plans, loads and unloads memfit_vit models for the
 * manager (see "The DINOv2 driver" in memfit/manager.h).
 *
 * It lives in the manager layer because the manager sits above the models:
 * the engine knows nothing of budgets, and the manager core knows nothing of
 * model families; this file is the one place that knows both.
 *
 * Memory: the weights stay file mappings (read in place), the workspace is
 * one anonymous mapping sized by the plan, so an unload gives everything
 * back to the OS at once (munmap), and the page cache of the weight file is
 * dropped with posix_fadvise so the cgroup's working set falls too.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "memfit/format.h"
#include "memfit/manager.h"
#include "memfit/store.h"

struct memfit_vit_driver_config {
    char *name;
    char *path; /* local weights; NULL for a remote source until it is fetched */
    char *cache_dir;
    /* remote sources, fetched through the store */
    char **sources;
    size_t n_sources;
    char *sha256;
    char *store_dir; /* the manifest's cache_dir, or NULL for the store's default */
    bool quantize;
    enum memfit_type quantize_type;
    unsigned n_threads;
    enum memfit_vit_interpolation interpolation;
    uint32_t max_batch, max_image_size;
    memfit_budget *budget;

    pthread_mutex_t lock; /* the cached plan (plans may come from several callers) */
    bool have_plan;
    uint64_t plan_size, plan_mtime_ns, plan_ino;
    struct memfit_vit_driver_plan plan;
    /* A remote model's plan made before its download (from its header, or
     * its size), kept so that planning again makes no request. */
    bool have_remote_plan;
    struct memfit_vit_driver_plan remote_plan;
};

struct vit_loaded {
    memfit_vit_driver_config *cfg;
    memfit_vit *vit;
    pthread_mutex_t lock; /* one forward at a time: the engine and the workspace */
    void *work;
    size_t work_bytes;
    memfit_reservation *extra; /* what the exact plan needed beyond a provisional one */
    uint32_t max_batch, max_image_size;
};

/* ---- Configuration -------------------------------------------------------- */

static bool is_remote(const char *source)
{
    return strstr(source, "://") && strncmp(source, "file://", 7) != 0;
}

/* A source relative to the manifest's directory (the manifest names files
 * beside it, wherever the command runs). */
static char *resolve_source(const char *manifest_path, const char *source)
{
    if (strncmp(source, "file://", 7) == 0)
        source += 7;
    if (source[0] == '/' || !manifest_path)
        return memfit_strdup(source);
    const char *slash = strrchr(manifest_path, '/');
    if (!slash)
        return memfit_strdup(source);
    return memfit_asprintf("%.*s/%s", (int)(slash - manifest_path), manifest_path, source);
}

void memfit_vit_driver_config_free(memfit_vit_driver_config *cfg)
{
    if (!cfg)
        return;
    pthread_mutex_destroy(&cfg->lock);
    memfit_free(cfg->name);
    memfit_free(cfg->path);
    memfit_free(cfg->cache_dir);
    for (size_t i = 0; i < cfg->n_sources; i++)
        memfit_free(cfg->sources[i]);
    memfit_free(cfg->sources);
    memfit_free(cfg->sha256);
    memfit_free(cfg->store_dir);
    memfit_free(cfg);
}

static enum memfit_status parse_option(memfit_vit_driver_config *cfg,
                                       const struct memfit_manifest *mf,
                                       const struct memfit_manifest_model *model,
                                       const struct memfit_manifest_option *o)
{
    const char *where = mf->path ? mf->path : "manifest";
    if (strcmp(o->key, "quantize") == 0) {
        enum memfit_type t;
        if (memfit_type_from_name(o->value, &t) != MEMFIT_OK ||
            !(t == MEMFIT_TYPE_F32 || t == MEMFIT_TYPE_F16 || t == MEMFIT_TYPE_BF16 ||
              t == MEMFIT_TYPE_Q8_0 || t == MEMFIT_TYPE_Q4_0 || t == MEMFIT_TYPE_Q4_K ||
              t == MEMFIT_TYPE_Q6_K)) {
            memfit_clear_error();
            return memfit_fail(MEMFIT_E_FORMAT,
                               "%s:%u: model '%s': quantize '%s': expected f32, f16, bf16, "
                               "q8_0, q4_0, q4_k or q6_k",
                               where, model->line, model->name, o->value);
        }
        cfg->quantize = true;
        cfg->quantize_type = t;
        return MEMFIT_OK;
    }
    if (strcmp(o->key, "threads") == 0) {
        long long n;
        if (memfit_parse_int(o->value, 1, 4096, &n) != MEMFIT_OK) {
            memfit_clear_error();
            return memfit_fail(MEMFIT_E_FORMAT,
                               "%s:%u: model '%s': threads '%s': expected 1 to 4096", where,
                               model->line, model->name, o->value);
        }
        cfg->n_threads = (unsigned)n;
        return MEMFIT_OK;
    }
    if (strcmp(o->key, "interpolation") == 0) {
        if (memfit_vit_interpolation_parse(o->value, &cfg->interpolation) != MEMFIT_OK) {
            memfit_clear_error();
            return memfit_fail(MEMFIT_E_FORMAT,
                               "%s:%u: model '%s': interpolation '%s': expected auto, orig, reg "
                               "or hf",
                               where, model->line, model->name, o->value);
        }
        return MEMFIT_OK;
    }
    return memfit_fail(MEMFIT_E_FORMAT,
                       "%s:%u: model '%s': unknown option '%s' for family dinov2 (known: "
                       "quantize, threads, interpolation)",
                       where, model->line, model->name, o->key);
}

enum memfit_status memfit_vit_driver_config_create(const struct memfit_manifest *mf,
                                                   const struct memfit_manifest_model *model,
                                                   memfit_vit_driver_config **out)
{
    const char *where = mf->path ? mf->path : "manifest";
    if (!model->family || strcasecmp(model->family, "dinov2") != 0)
        return memfit_fail(MEMFIT_E_UNSUPPORTED,
                           "%s:%u: model '%s': family '%s' has no driver (known: dinov2)", where,
                           model->line, model->name, model->family ? model->family : "");
    if (model->n_sources == 0)
        return memfit_fail(MEMFIT_E_FORMAT, "%s:%u: model '%s': no source", where, model->line,
                           model->name);
    memfit_vit_driver_config *cfg = memfit_calloc(1, sizeof(*cfg));
    if (!cfg)
        return MEMFIT_E_NOMEM;
    pthread_mutex_init(&cfg->lock, NULL);
    const char *tmp = getenv("TMPDIR");
    bool remote = is_remote(model->sources[0]);
    bool copied = true;
    cfg->name = memfit_strdup(model->name);
    if (remote) {
        cfg->sources = memfit_calloc(model->n_sources, sizeof(*cfg->sources));
        copied = cfg->sources != NULL;
        for (size_t i = 0; copied && i < model->n_sources; i++) {
            cfg->sources[i] = memfit_strdup(model->sources[i]);
            copied = cfg->sources[i] != NULL;
            cfg->n_sources += copied;
        }
        if (copied && model->sha256)
            copied = (cfg->sha256 = memfit_strdup(model->sha256)) != NULL;
        if (copied && mf->cache_dir)
            copied = (cfg->store_dir = memfit_strdup(mf->cache_dir)) != NULL;
    } else {
        cfg->path = resolve_source(mf->path, model->sources[0]);
        copied = cfg->path != NULL;
    }
    cfg->cache_dir = memfit_strdup(mf->cache_dir ? mf->cache_dir : tmp && *tmp ? tmp : "/tmp");
    cfg->max_batch = model->limits.max_batch ? (uint32_t)model->limits.max_batch
                                             : MEMFIT_VIT_DRIVER_DEFAULT_BATCH;
    cfg->max_image_size = model->limits.max_image_size ? (uint32_t)model->limits.max_image_size
                                                       : MEMFIT_VIT_DRIVER_DEFAULT_IMAGE_SIZE;
    enum memfit_status st = MEMFIT_OK;
    if (!cfg->name || !copied || !cfg->cache_dir)
        st = MEMFIT_E_NOMEM;
    for (size_t i = 0; st == MEMFIT_OK && i < model->n_options; i++)
        st = parse_option(cfg, mf, model, &model->options[i]);
    if (st != MEMFIT_OK) {
        memfit_vit_driver_config_free(cfg);
        return st;
    }
    *out = cfg;
    return MEMFIT_OK;
}

const char *memfit_vit_driver_config_path(const memfit_vit_driver_config *cfg)
{
    return cfg->path;
}

void memfit_vit_driver_config_set_budget(memfit_vit_driver_config *cfg, memfit_budget *budget)
{
    cfg->budget = budget;
}

/* What is read of a remote model's header before deciding to download it:
 * a first range, doubled until the header is whole, up to a limit. */
#define HEADER_FIRST_BYTES (256u << 10)
#define HEADER_MAX_BYTES   (64u << 20)
/* A `.pth`'s first tail read: its central directory for ~1000 tensors. */
#define PTH_TAIL_FIRST_BYTES (64u << 10)

static void engine_options(const memfit_vit_driver_config *cfg, struct memfit_vit_options *o)
{
    memfit_vit_options_default(o);
    o->n_threads = cfg->n_threads;
    o->interpolation = cfg->interpolation;
}

/* ---- Plan ------------------------------------------------------------------- */

/* Bytes of the copy memfit_vit_write_gguf writes in `type`: 2-D weights in
 * the type where their rows fit its block (F16 otherwise), the rest F32. */
static enum memfit_status estimate_converted(const char *path, enum memfit_type type, uint64_t *out)
{
    memfit_tensors *set;
    enum memfit_status st = memfit_tensors_open(path, NULL, &set);
    if (st != MEMFIT_OK)
        return st;
    const struct memfit_type_info *ti = memfit_type_get_info(type);
    uint64_t total = 0;
    size_t n = memfit_tensors_count(set);
    for (size_t i = 0; i < n; i++) {
        struct memfit_tensor_info t;
        if ((st = memfit_tensors_get(set, i, &t)) != MEMFIT_OK)
            break;
        uint64_t bytes = t.n_elements * 4; /* n_elements is checked by the format layer */
        if (t.n_dims >= 2 && t.shape[0] > 0) {
            uint64_t row = t.n_elements / (uint64_t)t.shape[0];
            if (ti && row % ti->block_size == 0) {
                if (memfit_type_bytes(type, t.n_elements, &bytes) != MEMFIT_OK)
                    bytes = t.n_elements * 4;
            } else {
                bytes = t.n_elements * 2;
            }
        }
        total += bytes + 64; /* GGUF alignment and name */
    }
    memfit_tensors_close(set);
    if (st == MEMFIT_OK)
        *out = total + 65536; /* header and metadata */
    return st;
}

/* Rounds the configured size down to the patch size (at least one patch). */
static uint32_t planned_side(uint32_t size, uint32_t patch)
{
    uint32_t s = size / patch * patch;
    return s ? s : patch;
}

/* The exact plan of the model file at `path` (the weights, or a stand-in
 * holding their header: see header_plan). */
static enum memfit_status compute_plan(memfit_vit_driver_config *cfg, const char *path,
                                       uint64_t file_bytes, struct memfit_vit_driver_plan *out)
{
    struct memfit_vit_options o;
    engine_options(cfg, &o);
    memfit_vit *vit;
    enum memfit_status st = memfit_vit_open(path, &o, &vit);
    if (st != MEMFIT_OK)
        return st;
    struct memfit_vit_info info;
    memfit_vit_get_info(vit, &info);
    struct memfit_vit_driver_plan p;
    memset(&p, 0, sizeof(p));
    p.file_bytes = file_bytes;
    p.max_batch = cfg->max_batch;
    p.max_image_size = planned_side(cfg->max_image_size, info.patch_size);
    size_t work = 0;
    st = memfit_vit_plan(vit, p.max_batch, p.max_image_size, p.max_image_size, &work);
    memfit_vit_close(vit);
    if (st != MEMFIT_OK)
        return st;
    p.cost.bytes[MEMFIT_BUDGET_WEIGHTS] = info.weight_bytes;
    p.cost.bytes[MEMFIT_BUDGET_CONVERTED_WEIGHTS] = info.converted_bytes;
    p.cost.bytes[MEMFIT_BUDGET_WORKSPACE] = work;
    if (cfg->quantize) {
        uint64_t copy;
        if ((st = estimate_converted(path, cfg->quantize_type, &copy)) != MEMFIT_OK)
            return st;
        p.cost.bytes[MEMFIT_BUDGET_CONVERTED_WEIGHTS] += copy;
    }
    p.plan_source = "file";
    *out = p;
    return MEMFIT_OK;
}

/* The weights' local path, or NULL while a remote source is not fetched. */
static const char *local_path(memfit_vit_driver_config *cfg)
{
    pthread_mutex_lock(&cfg->lock);
    const char *path = cfg->path;
    pthread_mutex_unlock(&cfg->lock);
    return path;
}

static enum memfit_status open_store(const memfit_vit_driver_config *cfg, int offline,
                                     memfit_store **out)
{
    struct memfit_store_options so = memfit_store_options_default();
    so.cache_dir = cfg->store_dir;
    so.offline = offline;
    return memfit_store_open(&so, out);
}

/* Makes a remote model local through the store (offline: from the cache
 * only, E_NOT_FOUND when it is not there). */
static enum memfit_status make_local(memfit_vit_driver_config *cfg, int offline)
{
    if (local_path(cfg))
        return MEMFIT_OK;
    memfit_store *store;
    enum memfit_status st = open_store(cfg, offline, &store);
    if (st != MEMFIT_OK)
        return st;
    struct memfit_fetch_options fo = {.sha256 = cfg->sha256, .name = cfg->name};
    char *path = NULL;
    st = memfit_store_fetch(store, (const char *const *)cfg->sources, cfg->n_sources, &fo, &path);
    memfit_store_close(store);
    if (st != MEMFIT_OK)
        return st;
    pthread_mutex_lock(&cfg->lock);
    if (!cfg->path) {
        cfg->path = path;
        path = NULL;
    }
    pthread_mutex_unlock(&cfg->lock);
    memfit_free(path);
    return MEMFIT_OK;
}

/* A remote model not cached yet: its size from the first source that tells. */
static enum memfit_status provisional_plan(memfit_vit_driver_config *cfg,
                                           struct memfit_vit_driver_plan *out)
{
    memfit_store *store;
    enum memfit_status st = open_store(cfg, -1, &store);
    if (st != MEMFIT_OK)
        return st;
    uint64_t size = 0;
    st = MEMFIT_E_NOT_FOUND;
    for (size_t i = 0; i < cfg->n_sources && st != MEMFIT_OK; i++)
        st = memfit_store_head(store, cfg->sources[i], &size);
    memfit_store_close(store);
    if (st != MEMFIT_OK)
        return memfit_fail(st, "model '%s': cannot learn its size before fetching: %s", cfg->name,
                           memfit_last_error());
    memset(out, 0, sizeof(*out));
    out->max_batch = cfg->max_batch;
    out->max_image_size = cfg->max_image_size;
    out->file_bytes = size;
    out->cost.bytes[MEMFIT_BUDGET_WEIGHTS] = size;
    out->provisional = true;
    out->plan_source = "head-size";
    return MEMFIT_OK;
}

/*
 * Reads a `.pth`'s header with Range requests: its tail (the zip's central
 * directory), then its data.pkl record, as memfit_tensors_open_pth_header
 * asks. *out_read counts the bytes read.
 */
static enum memfit_status read_pth_header(memfit_vit_driver_config *cfg, memfit_store *store,
                                          const char *source, memfit_tensors **out_set,
                                          size_t *out_read, uint64_t *out_size,
                                          unsigned *out_requests)
{
    size_t tail_len = PTH_TAIL_FIRST_BYTES, rec_len = 0, got = 0, read = 0;
    uint64_t size = MEMFIT_STORE_SIZE_UNKNOWN, rec_off = 0;
    uint8_t *tail = memfit_malloc(tail_len), *rec = NULL;
    if (!tail)
        return MEMFIT_E_NOMEM;
    enum memfit_status st =
        memfit_store_read_tail(store, source, tail_len, tail, &got, NULL, &size);
    unsigned requests = 1;
    memfit_tensors *set = NULL;
    tail_len = got;
    read = got;
    /* A tail, a longer tail, the record, once more for its extra field: a few calls at most. */
    for (int round = 0; st == MEMFIT_OK && !set; round++) {
        if (size == MEMFIT_STORE_SIZE_UNKNOWN) {
            st = memfit_fail(MEMFIT_E_UNSUPPORTED, "%s: the server does not tell the size", source);
            break;
        }
        struct memfit_pth_need need;
        st = memfit_tensors_open_pth_header(tail, tail_len, rec, rec_len, rec_off, size, source,
                                            &set, &need);
        if (st != MEMFIT_OK || set)
            break;
        bool more_tail = need.tail_bytes > tail_len;
        uint64_t want = more_tail ? need.tail_bytes : need.record_bytes;
        if (round >= 4 || want > HEADER_MAX_BYTES) {
            st = memfit_fail(MEMFIT_E_UNSUPPORTED,
                             "model '%s': its header needs more than %u bytes read ahead",
                             cfg->name, HEADER_MAX_BYTES);
            break;
        }
        uint8_t **buf = more_tail ? &tail : &rec;
        uint8_t *grown = memfit_realloc(*buf, (size_t)want ? (size_t)want : 1);
        if (!grown) {
            st = MEMFIT_E_NOMEM;
            break;
        }
        *buf = grown;
        if (more_tail)
            st = memfit_store_read_tail(store, source, (size_t)want, tail, &got, NULL, NULL);
        else
            st = memfit_store_read_range(store, source, need.record_offset, (size_t)want, rec, &got,
                                         NULL);
        requests++;
        if (st == MEMFIT_OK && got != want)
            st = memfit_fail(MEMFIT_E_NETWORK, "%s: %zu of %llu bytes read", source, got,
                             (unsigned long long)want);
        read += got;
        if (more_tail) {
            tail_len = got;
        } else {
            rec_len = got;
            rec_off = need.record_offset;
        }
    }
    memfit_free(tail);
    memfit_free(rec);
    if (st != MEMFIT_OK)
        return st;
    *out_set = set;
    *out_read = read;
    *out_size = size;
    *out_requests = requests;
    return MEMFIT_OK;
}

/*
 * Reads the header of `source` with Range requests (a head grown from
 * HEADER_FIRST_BYTES until memfit_tensors_open_header has all it needs; a
 * `.pth`'s tail and data.pkl) into a header-only set, and checks it is a
 * DINOv2 model. E_UNSUPPORTED when the server ignores ranges, does not
 * tell the size, or the file's layout cannot be read from pieces; E_FORMAT
 * when the header is malformed or not a DINOv2 model.
 */
static enum memfit_status read_header(memfit_vit_driver_config *cfg, memfit_store *store,
                                      const char *source, memfit_tensors **out_set,
                                      size_t *out_read, uint64_t *out_size, unsigned *out_requests)
{
    memfit_tensors *set = NULL;
    size_t have = 0;
    uint64_t size = MEMFIT_STORE_SIZE_UNKNOWN;
    unsigned requests = 0;
    enum memfit_status st;
    if (memfit_format_from_path(source) == MEMFIT_FORMAT_PTH) {
        st = read_pth_header(cfg, store, source, &set, &have, &size, &requests);
    } else {
        size_t cap = HEADER_FIRST_BYTES;
        uint8_t *head = memfit_malloc(cap);
        if (!head)
            return MEMFIT_E_NOMEM;
        st = memfit_store_read_range(store, source, 0, cap, head, &have, &size);
        requests = 1;
        while (st == MEMFIT_OK) {
            if (size == MEMFIT_STORE_SIZE_UNKNOWN) {
                st = memfit_fail(MEMFIT_E_UNSUPPORTED, "%s: the server does not tell the size",
                                 source);
                break;
            }
            uint64_t need = 0;
            st = memfit_tensors_open_header(head, have, size, MEMFIT_FORMAT_UNKNOWN, source, &set,
                                            &need);
            if (st != MEMFIT_OK || set)
                break;
            /* Grow geometrically: a GGUF header's size is only known once read. */
            uint64_t want = need > 2 * (uint64_t)have ? need : 2 * (uint64_t)have;
            if (want > size)
                want = size;
            if (want > HEADER_MAX_BYTES) {
                st = memfit_fail(MEMFIT_E_UNSUPPORTED,
                                 "model '%s': its header needs more than %u bytes read ahead",
                                 cfg->name, HEADER_MAX_BYTES);
                break;
            }
            uint8_t *grown = memfit_realloc(head, (size_t)want);
            if (!grown) {
                st = MEMFIT_E_NOMEM;
                break;
            }
            head = grown;
            size_t got = 0;
            st = memfit_store_read_range(store, source, have, (size_t)want - have, head + have,
                                         &got, NULL);
            requests++;
            if (st == MEMFIT_OK && got == 0)
                st = memfit_fail(MEMFIT_E_NETWORK, "%s: no bytes at offset %zu", source, have);
            have += got;
        }
        memfit_free(head);
    }
    if (st == MEMFIT_OK) {
        struct memfit_vit_info info;
        st = memfit_vit_detect(set, &info);
    }
    if (st != MEMFIT_OK) {
        memfit_tensors_close(set);
        return st;
    }
    *out_set = set;
    *out_read = have;
    *out_size = size;
    *out_requests = requests;
    return MEMFIT_OK;
}

/*
 * The exact plan of a remote model before its download: the pieces of the
 * file its header-only set was read from are written into a sparse
 * stand-in file of the real size in a private directory
 * (memfit_tensors_write_standin: the tensor data reads as zeros, and no
 * config.json lies beside it, as none lies beside a cached blob) and
 * planned by compute_plan, the code that plans a local file, so both give
 * the same numbers by construction.
 */
static enum memfit_status header_plan(memfit_vit_driver_config *cfg, const memfit_tensors *set,
                                      uint64_t size, struct memfit_vit_driver_plan *out)
{
    char *dir = memfit_asprintf("%s/memfit-plan-XXXXXX", cfg->cache_dir);
    if (!dir)
        return MEMFIT_E_NOMEM;
    if (!mkdtemp(dir)) {
        enum memfit_status st =
            memfit_fail(MEMFIT_E_IO, "model '%s': cannot create a directory in %s: %s", cfg->name,
                        cfg->cache_dir, strerror(errno));
        memfit_free(dir);
        return st;
    }
    char *path =
        memfit_asprintf("%s/model.%s", dir, memfit_format_name(memfit_tensors_format(set)));
    enum memfit_status st = path ? memfit_tensors_write_standin(set, path) : MEMFIT_E_NOMEM;
    if (st == MEMFIT_OK)
        st = compute_plan(cfg, path, size, out);
    if (path)
        unlink(path);
    rmdir(dir);
    memfit_free(path);
    memfit_free(dir);
    if (st == MEMFIT_OK)
        out->plan_source = "header";
    return st;
}

/*
 * A remote model not cached yet: the exact plan from its header when a
 * source answers Range requests, else (E_UNSUPPORTED from every source,
 * or no network) the provisional plan from its size. A header that is
 * malformed or not a DINOv2 model is an error at once: the download could
 * only fail after.
 */
static enum memfit_status remote_plan(memfit_vit_driver_config *cfg,
                                      struct memfit_vit_driver_plan *out)
{
    pthread_mutex_lock(&cfg->lock);
    if (cfg->have_remote_plan) {
        *out = cfg->remote_plan;
        pthread_mutex_unlock(&cfg->lock);
        return MEMFIT_OK;
    }
    pthread_mutex_unlock(&cfg->lock);
    memfit_store *store;
    enum memfit_status st = open_store(cfg, -1, &store);
    if (st != MEMFIT_OK)
        return st;
    struct memfit_vit_driver_plan p;
    st = MEMFIT_E_UNSUPPORTED;
    char why[400] = "";
    for (size_t i = 0; i < cfg->n_sources && st != MEMFIT_OK; i++) {
        memfit_tensors *set = NULL;
        size_t have = 0;
        uint64_t size = 0;
        unsigned requests = 0;
        uint64_t t0 = memfit_now_ns();
        st = read_header(cfg, store, cfg->sources[i], &set, &have, &size, &requests);
        if (st == MEMFIT_OK) {
            st = header_plan(cfg, set, size, &p);
            memfit_tensors_close(set);
        }
        if (st == MEMFIT_OK)
            memfit_log(MEMFIT_LOG_INFO,
                       "model '%s': planned from its header before download (%zu of %llu bytes "
                       "read in %u range request(s), %.1f ms): %llu bytes",
                       cfg->name, have, (unsigned long long)size, requests,
                       (double)(memfit_now_ns() - t0) / 1e6,
                       (unsigned long long)memfit_budget_cost_total(&p.cost));
        else if (st == MEMFIT_E_FORMAT || st == MEMFIT_E_NOMEM)
            break;
        else
            snprintf(why, sizeof(why), "%s", memfit_last_error());
    }
    memfit_store_close(store);
    if (st == MEMFIT_E_FORMAT || st == MEMFIT_E_NOMEM)
        return st;
    if (st != MEMFIT_OK) {
        memfit_clear_error();
        if ((st = provisional_plan(cfg, &p)) != MEMFIT_OK)
            return st;
        memfit_log(MEMFIT_LOG_INFO,
                   "model '%s': header not readable before download (%s); planned from its size "
                   "(%llu bytes, workspace unknown until fetched)",
                   cfg->name, why, (unsigned long long)p.file_bytes);
    }
    pthread_mutex_lock(&cfg->lock);
    cfg->remote_plan = p;
    cfg->have_remote_plan = true;
    pthread_mutex_unlock(&cfg->lock);
    *out = p;
    return MEMFIT_OK;
}

enum memfit_status memfit_vit_driver_plan_get(memfit_vit_driver_config *cfg,
                                              struct memfit_vit_driver_plan *out)
{
    if (cfg->n_sources && !local_path(cfg)) {
        enum memfit_status st = make_local(cfg, 1);
        if (st == MEMFIT_E_NOT_FOUND) {
            memfit_clear_error();
            return remote_plan(cfg, out);
        }
        if (st != MEMFIT_OK)
            return st;
    }
    struct stat sb;
    if (stat(cfg->path, &sb) != 0)
        return memfit_fail(errno == ENOENT ? MEMFIT_E_NOT_FOUND : MEMFIT_E_IO, "model '%s': %s: %s",
                           cfg->name, cfg->path, strerror(errno));
    uint64_t mtime = (uint64_t)sb.st_mtim.tv_sec * 1000000000u + (uint64_t)sb.st_mtim.tv_nsec;
    pthread_mutex_lock(&cfg->lock);
    if (cfg->have_plan && cfg->plan_size == (uint64_t)sb.st_size && cfg->plan_mtime_ns == mtime &&
        cfg->plan_ino == (uint64_t)sb.st_ino) {
        *out = cfg->plan;
        pthread_mutex_unlock(&cfg->lock);
        return MEMFIT_OK;
    }
    pthread_mutex_unlock(&cfg->lock);
    struct memfit_vit_driver_plan p;
    enum memfit_status st = compute_plan(cfg, cfg->path, (uint64_t)sb.st_size, &p);
    if (st != MEMFIT_OK)
        return st;
    pthread_mutex_lock(&cfg->lock);
    cfg->plan = p;
    cfg->plan_size = (uint64_t)sb.st_size;
    cfg->plan_mtime_ns = mtime;
    cfg->plan_ino = (uint64_t)sb.st_ino;
    cfg->have_plan = true;
    pthread_mutex_unlock(&cfg->lock);
    *out = p;
    return MEMFIT_OK;
}

static enum memfit_status drv_plan(void *config, const char *identity,
                                   struct memfit_budget_cost *out)
{
    (void)identity;
    struct memfit_vit_driver_plan p;
    enum memfit_status st = memfit_vit_driver_plan_get(config, &p);
    if (st == MEMFIT_OK)
        *out = p.cost;
    return st;
}

/* ---- Load and unload ------------------------------------------------------- */

/* Drops the file's clean page cache. Pages still mapped (by another model
 * or process) are kept by the kernel, so this is safe to do always. */
static void drop_page_cache(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
}

/* Converts the source into a GGUF of the config's type in cache_dir, opens
 * it and unlinks it (the mapping keeps the data). */
static enum memfit_status open_converted(memfit_vit_driver_config *cfg,
                                         const struct memfit_vit_options *o, memfit_vit **out)
{
    struct memfit_vit_options one = *o;
    one.n_threads = 1;
    memfit_vit *src;
    enum memfit_status st = memfit_vit_open(cfg->path, &one, &src);
    if (st != MEMFIT_OK)
        return st;
    char *tmp = memfit_asprintf("%s/memfit-convert-XXXXXX.gguf", cfg->cache_dir);
    if (!tmp) {
        memfit_vit_close(src);
        return MEMFIT_E_NOMEM;
    }
    int fd = mkstemps(tmp, 5);
    if (fd < 0) {
        st = memfit_fail(MEMFIT_E_IO, "model '%s': cannot create a converted copy in %s: %s",
                         cfg->name, cfg->cache_dir, strerror(errno));
        memfit_free(tmp);
        memfit_vit_close(src);
        return st;
    }
    close(fd);
    /* The converted copy keeps the source's interpolation in its metadata. */
    st = memfit_vit_write_gguf(src, tmp, cfg->quantize_type);
    memfit_vit_close(src);
    drop_page_cache(cfg->path);
    if (st == MEMFIT_OK)
        st = memfit_vit_open(tmp, o, out);
    unlink(tmp);
    memfit_free(tmp);
    return st;
}

static enum memfit_status drv_load(void *config, const char *identity,
                                   const struct memfit_budget_cost *reserved, void **out_model)
{
    (void)identity;
    memfit_vit_driver_config *cfg = config;
    if (!local_path(cfg))
        return memfit_fail(MEMFIT_E_MISUSE, "model '%s': load before fetch", cfg->name);
    /* A remote model was admitted on its file size: reserve what the exact
     * plan needs beyond that before mapping anything. */
    memfit_reservation *extra = NULL;
    uint64_t extra_bytes = 0;
    if (cfg->n_sources) {
        struct memfit_vit_driver_plan exact;
        enum memfit_status st = memfit_vit_driver_plan_get(cfg, &exact);
        if (st != MEMFIT_OK)
            return st;
        uint64_t want = memfit_budget_cost_total(&exact.cost);
        uint64_t have = memfit_budget_cost_total(reserved);
        if (want > have && cfg->budget) {
            extra_bytes = want - have;
            st = memfit_budget_reserve(cfg->budget, MEMFIT_BUDGET_WORKSPACE, extra_bytes, cfg->name,
                                       0, &extra);
            if (st != MEMFIT_OK)
                return st;
        }
    }
    struct vit_loaded *L = memfit_calloc(1, sizeof(*L));
    if (!L) {
        memfit_budget_release(extra);
        return MEMFIT_E_NOMEM;
    }
    L->extra = extra;
    struct memfit_vit_options o;
    engine_options(cfg, &o);
    enum memfit_status st =
        cfg->quantize ? open_converted(cfg, &o, &L->vit) : memfit_vit_open(cfg->path, &o, &L->vit);
    if (st != MEMFIT_OK) {
        memfit_budget_release(L->extra);
        memfit_free(L);
        return st;
    }
    struct memfit_vit_info info;
    memfit_vit_get_info(L->vit, &info);
    L->cfg = cfg;
    L->max_batch = cfg->max_batch;
    L->max_image_size = planned_side(cfg->max_image_size, info.patch_size);
    size_t need = 0;
    st = memfit_vit_plan(L->vit, L->max_batch, L->max_image_size, L->max_image_size, &need);
    if (st == MEMFIT_OK && need > reserved->bytes[MEMFIT_BUDGET_WORKSPACE] + extra_bytes) {
        /* The converted model plans more than the source did (the plan
         * comes from the source): refuse rather than overrun the budget. */
        st = memfit_fail(
            MEMFIT_E_BUDGET, "model '%s': workspace %zu bytes needed, %llu reserved by the plan",
            cfg->name, need, (unsigned long long)reserved->bytes[MEMFIT_BUDGET_WORKSPACE]);
    }
    if (st == MEMFIT_OK) {
        L->work_bytes = need;
        L->work = mf_map_anon(need);
        if (!L->work)
            st = MEMFIT_E_NOMEM;
    }
    if (st != MEMFIT_OK) {
        memfit_vit_close(L->vit);
        memfit_budget_release(L->extra);
        memfit_free(L);
        return st;
    }
    pthread_mutex_init(&L->lock, NULL);
    *out_model = L;
    return MEMFIT_OK;
}

static void drv_unload(void *config, void *model)
{
    memfit_vit_driver_config *cfg = config;
    struct vit_loaded *L = model;
    memfit_vit_close(L->vit);
    mf_unmap_anon(L->work, L->work_bytes);
    memfit_budget_release(L->extra);
    pthread_mutex_destroy(&L->lock);
    memfit_free(L);
    if (!cfg->quantize)
        drop_page_cache(cfg->path); /* the converted copy was unlinked: its pages are gone */
    memfit_heap_trim();
}

static enum memfit_status drv_fetch(void *config, const char *identity)
{
    (void)identity;
    memfit_vit_driver_config *cfg = config;
    return cfg->n_sources ? make_local(cfg, -1) : MEMFIT_OK;
}

const struct memfit_model_driver memfit_vit_driver = {
    .family = "dinov2",
    .plan = drv_plan,
    .fetch = drv_fetch,
    .load = drv_load,
    .unload = drv_unload,
};

memfit_vit *memfit_vit_driver_engine(void *loaded)
{
    return ((struct vit_loaded *)loaded)->vit;
}

/* ---- Forward --------------------------------------------------------------- */

enum memfit_status memfit_vit_driver_forward(void *loaded, const float *pixels, uint32_t batch,
                                             uint32_t height, uint32_t width,
                                             enum memfit_vit_output output, bool normalize,
                                             float *out, size_t out_floats, int64_t timeout_ms)
{
    struct vit_loaded *L = loaded;
    size_t need;
    enum memfit_status st = memfit_vit_plan(L->vit, batch, height, width, &need);
    if (st != MEMFIT_OK)
        return st;
    memfit_reservation *r = NULL;
    void *work = NULL;
    if (need > L->work_bytes) {
        /* Beyond the planned request: its own workspace, from the budget. */
        if (!L->cfg->budget)
            return memfit_fail(MEMFIT_E_RANGE,
                               "model '%s': %u images of %ux%u need a %zu-byte workspace; the "
                               "model is planned for %u of %ux%u (%zu bytes)",
                               L->cfg->name, batch, width, height, need, L->max_batch,
                               L->max_image_size, L->max_image_size, L->work_bytes);
        st = memfit_budget_reserve(L->cfg->budget, MEMFIT_BUDGET_WORKSPACE, need, L->cfg->name,
                                   timeout_ms, &r);
        if (st != MEMFIT_OK)
            return st;
        work = mf_map_anon(need);
        if (!work) {
            memfit_budget_release(r);
            return MEMFIT_E_NOMEM;
        }
    }
    pthread_mutex_lock(&L->lock);
    st = memfit_vit_forward(L->vit, pixels, batch, height, width, output, normalize,
                            work ? work : L->work, work ? need : L->work_bytes, out, out_floats);
    pthread_mutex_unlock(&L->lock);
    if (work) {
        mf_unmap_anon(work, need);
        memfit_budget_release(r);
    }
    return st;
}

/* ---- Manifest registration ------------------------------------------------- */

enum memfit_status memfit_manager_register_manifest(memfit_manager *mgr,
                                                    const struct memfit_manifest *mf,
                                                    memfit_vit_driver_config ***out_configs)
{
    size_t n = mf->n_models;
    memfit_vit_driver_config **cfgs = memfit_calloc(n ? n : 1, sizeof(*cfgs));
    if (!cfgs)
        return MEMFIT_E_NOMEM;
    enum memfit_status st = MEMFIT_OK;
    for (size_t i = 0; st == MEMFIT_OK && i < n; i++) {
        const struct memfit_manifest_model *m = &mf->models[i];
        if ((st = memfit_vit_driver_config_create(mf, m, &cfgs[i])) != MEMFIT_OK)
            break;
        memfit_vit_driver_config_set_budget(cfgs[i], memfit_manager_budget(mgr));
        struct memfit_model_options o;
        memfit_model_options_default(&o);
        o.name = m->name;
        o.driver = &memfit_vit_driver;
        o.config = cfgs[i];
        o.keep_alive_s = m->keep_alive_s;
        o.pin = m->pin;
        o.max_concurrency = m->max_concurrency;
        st = memfit_manager_register(mgr, &o);
    }
    if (st != MEMFIT_OK) {
        for (size_t i = 0; i < n; i++)
            memfit_vit_driver_config_free(cfgs[i]);
        memfit_free(cfgs);
        return st;
    }
    *out_configs = cfgs;
    return MEMFIT_OK;
}

/*
 * A model entry of any family: its sources, its plan, its fetch and the
 * manager driver that loads it (memfit/engines.h, "Models").
 *
 * This is the one place that joins the store, the file formats, a family
 * and the manager, so every entry point (the commands, `serve` with a
 * manifest or with model arguments) gets the same cache, plans, fetches
 * and refusals. The family sees local files only: a remote model is
 * planned from its header (read with Range requests into a sparse
 * stand-in file, planned by the family's own code for local files), and
 * fetched into the verified cache before its load.
 *
 * `quantize`: the converted copy is written once into the cache
 * (<cache>/converted/<source sha256>-<family>-<type>.gguf, through a
 * temporary name and a rename, so nothing partial is ever left under the
 * final name) during the fetch, and mapped from there: the budget charges
 * the converted size, never the source plus a copy.
 */
#include <ctype.h>
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
#include "engines/family.h"
#include "memfit/store.h"

/* What is read of a remote model's header before deciding to download it:
 * a first range, doubled until the header is whole, up to a limit. */
#define HEADER_FIRST_BYTES (256u << 10)
#define HEADER_MAX_BYTES   (64u << 20)
/* A `.pth`'s first tail read: its central directory for ~1000 tensors. */
#define PTH_TAIL_FIRST_BYTES (64u << 10)

struct memfit_engine_model {
    char *name;
    char *where; /* "memfit.yaml:12" */
    const struct mf_family *family;
    void *cfg;
    char **sources; /* remote sources, in the order to try (none for a local file) */
    size_t n_sources;
    char *sha256;
    char *store_dir;   /* the manifest's cache_dir, or NULL for the store's default */
    char *scratch_dir; /* where plan stand-ins are written */
    int64_t keep_alive_s;
    bool pin;
    unsigned max_concurrency;
    memfit_budget *budget;          /* per-request workspaces: the manager's */
    memfit_fetch_progress progress; /* memfit_engine_model_set_fetch */
    void *progress_user;
    const int *cancel;

    pthread_mutex_t lock; /* the fields below */
    char *path;           /* the local file: the source, or its cached copy once fetched */
    char *converted;      /* the `quantize` copy once written */
    char *digest_of;      /* the file `digest` is the SHA-256 of (read once) */
    char digest[MEMFIT_SHA256_HEX_LEN + 1];
    bool have_plan;
    uint64_t plan_size, plan_mtime_ns, plan_ino;
    struct memfit_engine_plan plan;
    bool have_remote_plan; /* made before the download: no request when asked again */
    struct memfit_engine_plan remote_plan;
};

/* What the manager's handle points to. */
struct mf_loaded {
    memfit_engine_model *model;
    void *inner;               /* the family's loaded model */
    char *path;                /* the file it maps */
    memfit_reservation *extra; /* what the exact plan needed beyond a provisional one */
};

/* ---- Small pieces --------------------------------------------------------------- */

static bool is_remote(const char *source)
{
    return strstr(source, "://") && strncmp(source, "file://", 7) != 0;
}

/* A source relative to the manifest's directory (the manifest names files
 * beside it, wherever the command runs). */
static char *resolve_local(const char *manifest_path, const char *source)
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

void mf_engine_drop_page_cache(const char *path)
{
    int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    if (fd < 0)
        return;
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
}

enum memfit_status mf_engine_option_u32(const struct mf_family_entry *e,
                                        const struct memfit_manifest_option *o, uint32_t max,
                                        uint32_t *out)
{
    long long v;
    if (memfit_parse_int(o->value, 1, max, &v) != MEMFIT_OK) {
        memfit_clear_error();
        return memfit_fail(MEMFIT_E_FORMAT, "%s: model '%s': %s '%s': expected 1 to %u", e->where,
                           e->name, o->key, o->value, max);
    }
    *out = (uint32_t)v;
    return MEMFIT_OK;
}

enum memfit_status mf_engine_option_unknown(const struct mf_family_entry *e,
                                            const struct memfit_manifest_option *o,
                                            const struct mf_family *family)
{
    return memfit_fail(MEMFIT_E_FORMAT,
                       "%s: model '%s': unknown option '%s' for family %s (known: %s)", e->where,
                       e->name, o->key, family->info.name, family->info.options);
}

static enum memfit_status open_store(const memfit_engine_model *m, int offline, memfit_store **out)
{
    struct memfit_store_options so = memfit_store_options_default();
    so.cache_dir = m->store_dir;
    so.offline = offline;
    return memfit_store_open(&so, out);
}

static char *locked_copy(memfit_engine_model *m, char *const *field)
{
    pthread_mutex_lock(&m->lock);
    char *p = *field ? memfit_strdup(*field) : NULL;
    pthread_mutex_unlock(&m->lock);
    return p;
}

/* ---- Remote headers --------------------------------------------------------------- */

/*
 * Reads a `.pth`'s header with Range requests: its tail (the zip's central
 * directory), then its data.pkl record, as memfit_tensors_open_pth_header
 * asks. *out_read counts the bytes read.
 */
static enum memfit_status read_pth_header(const char *name, memfit_store *store, const char *source,
                                          memfit_tensors **out_set, size_t *out_read,
                                          uint64_t *out_size, unsigned *out_requests)
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
                             "model '%s': its header needs more than %u bytes read ahead", name,
                             HEADER_MAX_BYTES);
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
 * `.pth`'s tail and data.pkl) into a header-only set. E_UNSUPPORTED when
 * the server ignores ranges, does not tell the size, or the file's layout
 * cannot be read from pieces; E_FORMAT when the header is malformed.
 */
static enum memfit_status read_header(const char *name, memfit_store *store, const char *source,
                                      memfit_tensors **out_set, size_t *out_read,
                                      uint64_t *out_size, unsigned *out_requests)
{
    if (memfit_format_from_path(source) == MEMFIT_FORMAT_PTH)
        return read_pth_header(name, store, source, out_set, out_read, out_size, out_requests);
    memfit_tensors *set = NULL;
    size_t have = 0, cap = HEADER_FIRST_BYTES;
    uint64_t size = MEMFIT_STORE_SIZE_UNKNOWN;
    uint8_t *head = memfit_malloc(cap);
    if (!head)
        return MEMFIT_E_NOMEM;
    enum memfit_status st = memfit_store_read_range(store, source, 0, cap, head, &have, &size);
    unsigned requests = 1;
    while (st == MEMFIT_OK) {
        if (size == MEMFIT_STORE_SIZE_UNKNOWN) {
            st = memfit_fail(MEMFIT_E_UNSUPPORTED, "%s: the server does not tell the size", source);
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
                             "model '%s': its header needs more than %u bytes read ahead", name,
                             HEADER_MAX_BYTES);
            break;
        }
        uint8_t *grown = memfit_realloc(head, (size_t)want);
        if (!grown) {
            st = MEMFIT_E_NOMEM;
            break;
        }
        head = grown;
        size_t got = 0;
        st = memfit_store_read_range(store, source, have, (size_t)want - have, head + have, &got,
                                     NULL);
        requests++;
        if (st == MEMFIT_OK && got == 0)
            st = memfit_fail(MEMFIT_E_NETWORK, "%s: no bytes at offset %zu", source, have);
        have += got;
    }
    memfit_free(head);
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

/* The header of the first remote source that gives one (the error of the
 * last one otherwise; E_FORMAT at once: the download could only fail too). */
static enum memfit_status read_any_header(memfit_engine_model *m, memfit_store *store,
                                          memfit_tensors **out_set, uint64_t *out_size, char *why,
                                          size_t why_size)
{
    enum memfit_status st = MEMFIT_E_UNSUPPORTED;
    for (size_t i = 0; i < m->n_sources && st != MEMFIT_OK; i++) {
        size_t have = 0;
        unsigned requests = 0;
        uint64_t t0 = memfit_now_ns();
        st = read_header(m->name, store, m->sources[i], out_set, &have, out_size, &requests);
        if (st == MEMFIT_OK)
            memfit_log(MEMFIT_LOG_INFO,
                       "model '%s': header read before download (%zu of %llu bytes in %u range "
                       "request(s), %.1f ms)",
                       m->name, have, (unsigned long long)*out_size, requests,
                       (double)(memfit_now_ns() - t0) / 1e6);
        else if (st == MEMFIT_E_FORMAT || st == MEMFIT_E_NOMEM)
            return st;
        else
            snprintf(why, why_size, "%s", memfit_last_error());
    }
    return st;
}

/* ---- Family detection ---------------------------------------------------------------- */

size_t memfit_engine_family_count(void)
{
    return mf_n_families;
}

const struct memfit_engine_family_info *memfit_engine_family_get(size_t index)
{
    return index < mf_n_families ? &mf_families[index]->info : NULL;
}

static bool alias_matches(const char *aliases, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = aliases; p && *p;) {
        size_t len = strcspn(p, ",");
        while (*p == ' ' && len) {
            p++;
            len--;
        }
        if (len == n && strncasecmp(p, name, n) == 0)
            return true;
        p += len + (p[len] == ',');
    }
    return false;
}

const struct memfit_engine_family_info *memfit_engine_family_find(const char *name)
{
    for (size_t i = 0; name && i < mf_n_families; i++)
        if (strcasecmp(mf_families[i]->info.name, name) == 0 ||
            alias_matches(mf_families[i]->info.aliases, name))
            return &mf_families[i]->info;
    return NULL;
}

const struct mf_family *mf_family_of(const struct memfit_engine_family_info *info)
{
    for (size_t i = 0; info && i < mf_n_families; i++)
        if (&mf_families[i]->info == info)
            return mf_families[i];
    return NULL;
}

static char family_names[256];

static void make_family_names(void)
{
    size_t used = 0;
    for (size_t i = 0; i < mf_n_families && used < sizeof(family_names); i++)
        used += (size_t)snprintf(family_names + used, sizeof(family_names) - used, "%s%s",
                                 i ? ", " : "", mf_families[i]->info.name);
}

const char *memfit_engine_family_names(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, make_family_names);
    return family_names;
}

enum memfit_status memfit_engine_detect(const memfit_tensors *set,
                                        const struct memfit_engine_family_info **out)
{
    for (size_t i = 0; i < mf_n_families; i++) {
        if (mf_families[i]->detect(set)) {
            memfit_clear_error();
            *out = &mf_families[i]->info;
            return MEMFIT_OK;
        }
    }
    memfit_clear_error();
    struct memfit_meta_value v;
    char arch[64] = "";
    if (memfit_tensors_meta_find(set, "general.architecture", &v) == MEMFIT_OK &&
        v.type == MEMFIT_META_STRING)
        snprintf(arch, sizeof(arch), " (general.architecture '%.*s')",
                 (int)(v.v.str.len < 40 ? v.v.str.len : 40), v.v.str.data);
    memfit_clear_error();
    return memfit_fail(MEMFIT_E_UNSUPPORTED,
                       "%s: no model family takes this file%s (families: %s); name its family "
                       "in a manifest",
                       memfit_tensors_path(set), arch, memfit_engine_family_names());
}

/* ---- Creating a model ------------------------------------------------------------------ */

void memfit_engine_model_destroy(memfit_engine_model *m)
{
    if (!m)
        return;
    if (m->family && m->cfg)
        m->family->config_free(m->cfg);
    pthread_mutex_destroy(&m->lock);
    for (size_t i = 0; i < m->n_sources; i++)
        memfit_free(m->sources[i]);
    memfit_free(m->sources);
    memfit_free(m->name);
    memfit_free(m->where);
    memfit_free(m->sha256);
    memfit_free(m->store_dir);
    memfit_free(m->scratch_dir);
    memfit_free(m->path);
    memfit_free(m->converted);
    memfit_free(m->digest_of);
    memfit_free(m);
}

static enum memfit_status fetch_source(memfit_engine_model *m, int offline);

/* The family of an "auto" entry, from the file's header (a remote file's
 * read with Range requests; fetched when its server ignores them). */
static enum memfit_status detect_family(memfit_engine_model *m)
{
    memfit_tensors *set = NULL;
    enum memfit_status st;
    if (!m->path && m->n_sources) {
        memfit_store *store;
        if ((st = open_store(m, -1, &store)) != MEMFIT_OK)
            return st;
        char why[400] = "";
        uint64_t size = 0;
        st = read_any_header(m, store, &set, &size, why, sizeof(why));
        memfit_store_close(store);
        if (st != MEMFIT_OK && st != MEMFIT_E_FORMAT && st != MEMFIT_E_NOMEM) {
            memfit_log(MEMFIT_LOG_INFO,
                       "model '%s': header not readable before download (%s); fetching it to "
                       "learn its family (name the family in a manifest to fetch on first use)",
                       m->name, why);
            st = fetch_source(m, -1);
        }
        if (st != MEMFIT_OK)
            return st;
    }
    if (!set) {
        struct memfit_tensors_options to;
        memfit_tensors_options_default(&to);
        /* A directory is a Hugging Face repository, which only the LLM families read. */
        struct stat sb;
        st = stat(m->path, &sb) == 0 && S_ISDIR(sb.st_mode)
                 ? memfit_llm_open_set(m->path, &set)
                 : memfit_tensors_open(m->path, &to, &set);
        if (st != MEMFIT_OK)
            return st;
    }
    const struct memfit_engine_family_info *info = NULL;
    st = memfit_engine_detect(set, &info);
    memfit_tensors_close(set);
    if (st != MEMFIT_OK)
        return memfit_fail(st, "model '%s': %s", m->name, memfit_last_error());
    m->family = mf_family_of(info);
    return MEMFIT_OK;
}

static enum memfit_status copy_sources(memfit_engine_model *m, const struct memfit_manifest *mf,
                                       const struct memfit_manifest_model *e)
{
    if (!is_remote(e->sources[0]))
        return (m->path = resolve_local(mf->path, e->sources[0])) ? MEMFIT_OK : MEMFIT_E_NOMEM;
    if (!(m->sources = memfit_calloc(e->n_sources, sizeof(*m->sources))))
        return MEMFIT_E_NOMEM;
    for (size_t i = 0; i < e->n_sources; i++) {
        /* A local path among remote sources is relative to the manifest too. */
        m->sources[i] = is_remote(e->sources[i]) ? memfit_strdup(e->sources[i])
                                                 : resolve_local(mf->path, e->sources[i]);
        if (!m->sources[i])
            return MEMFIT_E_NOMEM;
        m->n_sources++;
    }
    return MEMFIT_OK;
}

enum memfit_status memfit_engine_model_create(const struct memfit_manifest *mf,
                                              const struct memfit_manifest_model *e,
                                              memfit_engine_model **out)
{
    if (!mf || !e || !e->name || !out)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_engine_model_create: NULL argument");
    memfit_engine_model *m = memfit_calloc(1, sizeof(*m));
    if (!m)
        return MEMFIT_E_NOMEM;
    pthread_mutex_init(&m->lock, NULL);
    const char *tmp = getenv("TMPDIR");
    m->name = memfit_strdup(e->name);
    m->where = memfit_asprintf("%s:%u", mf->path ? mf->path : "command line", e->line);
    m->scratch_dir = memfit_strdup(mf->cache_dir ? mf->cache_dir : tmp && *tmp ? tmp : "/tmp");
    m->keep_alive_s = e->keep_alive_s;
    m->pin = e->pin;
    m->max_concurrency = e->max_concurrency;
    enum memfit_status st = MEMFIT_OK;
    if (!m->name || !m->where || !m->scratch_dir ||
        (e->sha256 && !(m->sha256 = memfit_strdup(e->sha256))) ||
        (mf->cache_dir && !(m->store_dir = memfit_strdup(mf->cache_dir))))
        st = MEMFIT_E_NOMEM;
    if (st == MEMFIT_OK && e->n_sources == 0)
        st = memfit_fail(MEMFIT_E_FORMAT, "%s: model '%s': no source", m->where, m->name);
    if (st == MEMFIT_OK)
        st = copy_sources(m, mf, e);
    bool is_auto = !e->family || !e->family[0] || strcasecmp(e->family, "auto") == 0;
    if (st == MEMFIT_OK && !is_auto) {
        m->family = mf_family_of(memfit_engine_family_find(e->family));
        if (!m->family)
            st = memfit_fail(MEMFIT_E_UNSUPPORTED,
                             "%s: model '%s': unknown family '%s' (families: %s)", m->where,
                             m->name, e->family, memfit_engine_family_names());
    } else if (st == MEMFIT_OK) {
        st = detect_family(m);
    }
    if (st == MEMFIT_OK) {
        struct mf_family_entry fe = {
            .manifest = mf, .model = e, .name = m->name, .where = m->where};
        st = m->family->config_create(&fe, &m->cfg);
    }
    if (st != MEMFIT_OK) {
        memfit_engine_model_destroy(m);
        return st;
    }
    *out = m;
    return MEMFIT_OK;
}

const char *memfit_engine_model_name(const memfit_engine_model *m)
{
    return m->name;
}

const struct memfit_engine_family_info *memfit_engine_model_family(const memfit_engine_model *m)
{
    return &m->family->info;
}

void memfit_engine_model_set_fetch(memfit_engine_model *m, memfit_fetch_progress progress,
                                   void *user, const int *cancel)
{
    m->progress = progress;
    m->progress_user = user;
    m->cancel = cancel;
}

char *memfit_engine_source_name(const char *source)
{
    const char *end = source + strcspn(source, "?#");
    const char *base = source;
    for (const char *p = source; p < end; p++)
        if (*p == '/')
            base = p + 1;
    const char *dot = NULL;
    for (const char *p = base + 1; p < end; p++)
        if (*p == '.')
            dot = p;
    /* Only a file extension goes (letters and digits with a letter: "gguf", "pth"): the dots
     * of a directory or repository name stay ("Qwen1.5-1.8B-Chat", not "Qwen1.5-1"). */
    bool ext = dot && dot + 1 < end;
    bool letter = false;
    for (const char *p = dot ? dot + 1 : end; ext && p < end; p++) {
        ext = isalnum((unsigned char)*p);
        letter |= isalpha((unsigned char)*p) != 0;
    }
    if (ext && letter)
        end = dot;
    if (end <= base)
        return memfit_strdup(source);
    return memfit_strndup(base, (size_t)(end - base));
}

/* ---- Fetch and the `quantize` copy ------------------------------------------------------- */

/* Makes a remote model local through the store (offline: from the cache
 * only, E_NOT_FOUND when it is not there). */
static enum memfit_status fetch_source(memfit_engine_model *m, int offline)
{
    pthread_mutex_lock(&m->lock);
    bool have = m->path != NULL;
    pthread_mutex_unlock(&m->lock);
    if (have)
        return MEMFIT_OK;
    memfit_store *store;
    enum memfit_status st = open_store(m, offline, &store);
    if (st != MEMFIT_OK)
        return st;
    struct memfit_fetch_options fo = {.sha256 = m->sha256,
                                      .name = m->name,
                                      .progress = offline == 1 ? NULL : m->progress,
                                      .progress_user = m->progress_user,
                                      .cancel = m->cancel};
    char *path = NULL;
    st = memfit_store_fetch(store, (const char *const *)m->sources, m->n_sources, &fo, &path);
    memfit_store_close(store);
    if (st != MEMFIT_OK)
        return st;
    pthread_mutex_lock(&m->lock);
    if (!m->path) {
        m->path = path;
        path = NULL;
    }
    pthread_mutex_unlock(&m->lock);
    memfit_free(path);
    return MEMFIT_OK;
}

static bool is_hex_digest(const char *s)
{
    size_t n = strspn(s, "0123456789abcdef");
    return n == MEMFIT_SHA256_HEX_LEN && s[n] == '\0';
}

/* The SHA-256 of the local file `src`: a blob of the store is named by it;
 * another file is read once per model (a large source takes a second or
 * so: plans and the fetch ask again). */
static enum memfit_status source_digest(memfit_engine_model *m, const char *src,
                                        const char *store_dir, char out[MEMFIT_SHA256_HEX_LEN + 1])
{
    const char *base = strrchr(src, '/');
    base = base ? base + 1 : src;
    size_t dir_len = strlen(store_dir);
    if (strncmp(src, store_dir, dir_len) == 0 && strncmp(src + dir_len, "/blobs/", 7) == 0 &&
        is_hex_digest(base)) {
        memcpy(out, base, MEMFIT_SHA256_HEX_LEN + 1);
        return MEMFIT_OK;
    }
    pthread_mutex_lock(&m->lock);
    bool known = m->digest_of && strcmp(m->digest_of, src) == 0;
    if (known)
        memcpy(out, m->digest, sizeof(m->digest));
    pthread_mutex_unlock(&m->lock);
    if (known)
        return MEMFIT_OK;
    char digest[MEMFIT_SHA256_HEX_LEN + 1];
    enum memfit_status st = memfit_store_digest_file(src, digest);
    char *copy = st == MEMFIT_OK ? memfit_strdup(src) : NULL;
    if (st == MEMFIT_OK && !copy)
        st = MEMFIT_E_NOMEM;
    if (st != MEMFIT_OK)
        return st;
    pthread_mutex_lock(&m->lock);
    memfit_free(m->digest_of);
    m->digest_of = copy;
    memcpy(m->digest, digest, sizeof(digest));
    pthread_mutex_unlock(&m->lock);
    memcpy(out, digest, sizeof(digest));
    return MEMFIT_OK;
}

/* Where the `quantize` copy of the local file `src` lives in the cache:
 * keyed by the source's content, the family and the type. */
static enum memfit_status converted_path(memfit_engine_model *m, const char *src, const char *type,
                                         char **out)
{
    memfit_store *store;
    enum memfit_status st = open_store(m, 1, &store);
    if (st != MEMFIT_OK)
        return st;
    char digest[MEMFIT_SHA256_HEX_LEN + 1];
    char *dir = NULL;
    if ((st = source_digest(m, src, memfit_store_dir(store), digest)) == MEMFIT_OK &&
        !(dir = memfit_asprintf("%s/converted", memfit_store_dir(store))))
        st = MEMFIT_E_NOMEM;
    memfit_store_close(store);
    if (st != MEMFIT_OK)
        return st;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        st = memfit_fail(MEMFIT_E_IO, "model '%s': cannot create %s: %s", m->name, dir,
                         strerror(errno));
        memfit_free(dir);
        return st;
    }
    *out = memfit_asprintf("%s/%.16s-%s-%s.gguf", dir, digest, m->family->info.name, type);
    memfit_free(dir);
    return *out ? MEMFIT_OK : MEMFIT_E_NOMEM;
}

/* Writes the `quantize` copy (once: an existing copy is used as it is). */
static enum memfit_status make_converted(memfit_engine_model *m, const char *type)
{
    char *src = locked_copy(m, &m->path);
    if (!src)
        return memfit_fail(MEMFIT_E_MISUSE, "model '%s': convert before fetch", m->name);
    char *dst = NULL;
    enum memfit_status st = converted_path(m, src, type, &dst);
    struct stat sb;
    if (st == MEMFIT_OK && stat(dst, &sb) != 0) {
        char *tmp = memfit_asprintf("%s.partial-XXXXXX", dst);
        int fd = tmp ? mkstemp(tmp) : -1;
        if (!tmp)
            st = MEMFIT_E_NOMEM;
        else if (fd < 0)
            st = memfit_fail(MEMFIT_E_IO, "model '%s': cannot create %s: %s", m->name, tmp,
                             strerror(errno));
        if (fd >= 0) {
            close(fd);
            uint64_t t0 = memfit_now_ns();
            memfit_log(MEMFIT_LOG_INFO, "model '%s': writing its %s copy into the cache: %s",
                       m->name, type, dst);
            st = m->family->convert(m->cfg, src, tmp);
            if (st == MEMFIT_OK && rename(tmp, dst) != 0)
                st = memfit_fail(MEMFIT_E_IO, "model '%s': cannot rename %s: %s", m->name, tmp,
                                 strerror(errno));
            if (st != MEMFIT_OK)
                unlink(tmp);
            else if (stat(dst, &sb) == 0)
                memfit_log(MEMFIT_LOG_INFO, "model '%s': %s copy written (%.1f MiB) in %.1f s",
                           m->name, type, (double)sb.st_size / 1048576.0,
                           (double)(memfit_now_ns() - t0) / 1e9);
            mf_engine_drop_page_cache(src);
        }
        memfit_free(tmp);
    }
    if (st == MEMFIT_OK) {
        pthread_mutex_lock(&m->lock);
        memfit_free(m->converted);
        m->converted = dst;
        dst = NULL;
        pthread_mutex_unlock(&m->lock);
    }
    memfit_free(dst);
    memfit_free(src);
    return st;
}

static const char *convert_type(const memfit_engine_model *m)
{
    return m->family->convert_type ? m->family->convert_type(m->cfg) : NULL;
}

/* The FETCHING step: the download, then the `quantize` copy. */
static enum memfit_status make_local(memfit_engine_model *m)
{
    enum memfit_status st = m->n_sources ? fetch_source(m, -1) : MEMFIT_OK;
    const char *type = convert_type(m);
    if (st == MEMFIT_OK && type) {
        pthread_mutex_lock(&m->lock);
        bool done = m->converted != NULL;
        pthread_mutex_unlock(&m->lock);
        if (!done)
            st = make_converted(m, type);
    }
    return st;
}

/* ---- Plans ------------------------------------------------------------------------------ */

/* The family's plan of a local file, with the `quantize` copy's size when
 * the plan is of its source (the copy not written yet). */
static enum memfit_status plan_file(memfit_engine_model *m, const char *path, bool is_source,
                                    uint64_t file_bytes, struct memfit_engine_plan *out)
{
    struct memfit_engine_plan p;
    memset(&p, 0, sizeof(p));
    enum memfit_status st = m->family->plan(m->cfg, path, &p);
    if (st != MEMFIT_OK)
        return st;
    p.family = m->family->info.name;
    if (!p.file_bytes) /* a family reading a directory says what its files hold */
        p.file_bytes = file_bytes;
    p.plan_source = "file";
    if (is_source && convert_type(m) && m->family->convert_estimate) {
        if ((st = m->family->convert_estimate(m->cfg, path, &p)) != MEMFIT_OK)
            return st;
        p.plan_source = "estimate";
    }
    *out = p;
    return MEMFIT_OK;
}

/* A remote model not cached yet whose header is unreadable: its size. */
static enum memfit_status provisional_plan(memfit_engine_model *m, memfit_store *store,
                                           struct memfit_engine_plan *out)
{
    uint64_t size = 0;
    enum memfit_status st = MEMFIT_E_NOT_FOUND;
    for (size_t i = 0; i < m->n_sources && st != MEMFIT_OK; i++)
        st = memfit_store_head(store, m->sources[i], &size);
    if (st != MEMFIT_OK)
        return memfit_fail(st, "model '%s': cannot learn its size before fetching: %s", m->name,
                           memfit_last_error());
    memset(out, 0, sizeof(*out));
    out->family = m->family->info.name;
    out->file_bytes = size;
    out->cost.bytes[MEMFIT_BUDGET_WEIGHTS] = size;
    out->provisional = true;
    out->plan_source = "head-size";
    return MEMFIT_OK;
}

/*
 * The exact plan of a remote model before its download: its header-only
 * set written into a sparse stand-in file of the real size in a private
 * directory (memfit_tensors_write_standin: the tensor data reads as zeros,
 * and no config.json lies beside it, as none lies beside a cached blob) and
 * planned by the family's code for local files.
 */
static enum memfit_status standin_plan(memfit_engine_model *m, const memfit_tensors *set,
                                       uint64_t size, struct memfit_engine_plan *out)
{
    char *dir = memfit_asprintf("%s/memfit-plan-XXXXXX", m->scratch_dir);
    if (!dir)
        return MEMFIT_E_NOMEM;
    if (!mkdtemp(dir)) {
        enum memfit_status st =
            memfit_fail(MEMFIT_E_IO, "model '%s': cannot create a directory in %s: %s", m->name,
                        m->scratch_dir, strerror(errno));
        memfit_free(dir);
        return st;
    }
    char *path =
        memfit_asprintf("%s/model.%s", dir, memfit_format_name(memfit_tensors_format(set)));
    enum memfit_status st = path ? memfit_tensors_write_standin(set, path) : MEMFIT_E_NOMEM;
    if (st == MEMFIT_OK)
        st = plan_file(m, path, true, size, out);
    if (path)
        unlink(path);
    rmdir(dir);
    memfit_free(path);
    memfit_free(dir);
    if (st == MEMFIT_OK && strcmp(out->plan_source, "file") == 0)
        out->plan_source = "header";
    return st;
}

static enum memfit_status remote_plan(memfit_engine_model *m, struct memfit_engine_plan *out)
{
    pthread_mutex_lock(&m->lock);
    bool have = m->have_remote_plan;
    if (have)
        *out = m->remote_plan;
    pthread_mutex_unlock(&m->lock);
    if (have)
        return MEMFIT_OK;
    memfit_store *store;
    enum memfit_status st = open_store(m, -1, &store);
    if (st != MEMFIT_OK)
        return st;
    struct memfit_engine_plan p;
    memset(&p, 0, sizeof(p));
    memfit_tensors *set = NULL;
    uint64_t size = 0;
    char why[400] = "";
    st = read_any_header(m, store, &set, &size, why, sizeof(why));
    if (st == MEMFIT_OK) {
        st = standin_plan(m, set, size, &p);
        memfit_tensors_close(set);
    } else if (st != MEMFIT_E_FORMAT && st != MEMFIT_E_NOMEM) {
        memfit_clear_error();
        st = provisional_plan(m, store, &p);
        if (st == MEMFIT_OK)
            memfit_log(MEMFIT_LOG_INFO,
                       "model '%s': header not readable before download (%s); planned from its "
                       "size (%llu bytes, workspace unknown until fetched)",
                       m->name, why, (unsigned long long)p.file_bytes);
    }
    memfit_store_close(store);
    if (st != MEMFIT_OK)
        return st;
    pthread_mutex_lock(&m->lock);
    m->remote_plan = p;
    m->have_remote_plan = true;
    pthread_mutex_unlock(&m->lock);
    *out = p;
    return MEMFIT_OK;
}

enum memfit_status memfit_engine_model_plan(memfit_engine_model *m, struct memfit_engine_plan *out)
{
    if (m->n_sources) {
        /* Cached already? Then the plan is exact, with no network call. */
        enum memfit_status st = fetch_source(m, 1);
        if (st == MEMFIT_E_NOT_FOUND) {
            memfit_clear_error();
            return remote_plan(m, out);
        }
        if (st != MEMFIT_OK)
            return st;
    }
    const char *type = convert_type(m);
    if (type) {
        /* The copy may be in the cache from an earlier run. */
        pthread_mutex_lock(&m->lock);
        bool known = m->converted != NULL;
        pthread_mutex_unlock(&m->lock);
        char *src = locked_copy(m, &m->path), *dst = NULL;
        struct stat cs;
        if (!known && src && converted_path(m, src, type, &dst) == MEMFIT_OK &&
            stat(dst, &cs) == 0) {
            pthread_mutex_lock(&m->lock);
            if (!m->converted) {
                m->converted = dst;
                dst = NULL;
            }
            pthread_mutex_unlock(&m->lock);
        }
        memfit_clear_error();
        memfit_free(dst);
        memfit_free(src);
    }
    char *conv = locked_copy(m, &m->converted);
    char *path = conv ? conv : locked_copy(m, &m->path);
    if (!path)
        return MEMFIT_E_NOMEM;
    struct stat sb;
    if (stat(path, &sb) != 0) {
        enum memfit_status st = memfit_fail(errno == ENOENT ? MEMFIT_E_NOT_FOUND : MEMFIT_E_IO,
                                            "model '%s': %s: %s", m->name, path, strerror(errno));
        memfit_free(path);
        return st;
    }
    uint64_t mtime = (uint64_t)sb.st_mtim.tv_sec * 1000000000u + (uint64_t)sb.st_mtim.tv_nsec;
    pthread_mutex_lock(&m->lock);
    bool hit = m->have_plan && m->plan_size == (uint64_t)sb.st_size && m->plan_mtime_ns == mtime &&
               m->plan_ino == (uint64_t)sb.st_ino;
    if (hit)
        *out = m->plan;
    pthread_mutex_unlock(&m->lock);
    if (hit) {
        memfit_free(path);
        return MEMFIT_OK;
    }
    struct memfit_engine_plan p;
    enum memfit_status st = plan_file(m, path, conv == NULL, (uint64_t)sb.st_size, &p);
    memfit_free(path);
    if (st != MEMFIT_OK)
        return st;
    pthread_mutex_lock(&m->lock);
    m->plan = p;
    m->plan_size = (uint64_t)sb.st_size;
    m->plan_mtime_ns = mtime;
    m->plan_ino = (uint64_t)sb.st_ino;
    m->have_plan = true;
    pthread_mutex_unlock(&m->lock);
    *out = p;
    return MEMFIT_OK;
}

/* ---- The manager driver ------------------------------------------------------------------- */

static enum memfit_status drv_plan(void *config, const char *identity,
                                   struct memfit_budget_cost *out)
{
    (void)identity;
    struct memfit_engine_plan p;
    enum memfit_status st = memfit_engine_model_plan(config, &p);
    if (st == MEMFIT_OK)
        *out = p.cost;
    return st;
}

static enum memfit_status drv_fetch(void *config, const char *identity)
{
    (void)identity;
    return make_local(config);
}

static enum memfit_status drv_load(void *config, const char *identity,
                                   const struct memfit_budget_cost *reserved, void **out)
{
    (void)identity;
    memfit_engine_model *m = config;
    pthread_mutex_lock(&m->lock);
    const char *file = m->converted ? m->converted : m->path;
    bool fetched = file && (m->converted || !convert_type(m));
    char *path = fetched ? memfit_strdup(file) : NULL;
    pthread_mutex_unlock(&m->lock);
    if (!fetched)
        return memfit_fail(MEMFIT_E_MISUSE, "model '%s': load before fetch", m->name);
    if (!path)
        return MEMFIT_E_NOMEM;
    /* Planned provisionally (a remote file's size): the exact plan's extra
     * is reserved before anything is mapped, or the load is refused. */
    memfit_reservation *extra = NULL;
    struct memfit_budget_cost cost = *reserved;
    struct memfit_engine_plan exact;
    enum memfit_status st = memfit_engine_model_plan(m, &exact);
    uint64_t want = st == MEMFIT_OK ? memfit_budget_cost_total(&exact.cost) : 0;
    uint64_t have = memfit_budget_cost_total(reserved);
    if (st == MEMFIT_OK && want > have && m->budget) {
        st = memfit_budget_reserve(m->budget, MEMFIT_BUDGET_WORKSPACE, want - have, m->name, 0,
                                   &extra);
        if (st == MEMFIT_OK)
            cost = exact.cost;
    }
    struct mf_loaded *L = st == MEMFIT_OK ? memfit_calloc(1, sizeof(*L)) : NULL;
    if (st == MEMFIT_OK && !L)
        st = MEMFIT_E_NOMEM;
    if (st == MEMFIT_OK)
        st = m->family->load(m->cfg, path, &cost, m->budget, &L->inner);
    if (st != MEMFIT_OK) {
        memfit_budget_release(extra);
        memfit_free(L);
        memfit_free(path);
        return st;
    }
    L->model = m;
    L->path = path;
    L->extra = extra;
    *out = L;
    return MEMFIT_OK;
}

static void drv_unload(void *config, void *loaded)
{
    memfit_engine_model *m = config;
    struct mf_loaded *L = loaded;
    m->family->unload(m->cfg, L->inner);
    memfit_budget_release(L->extra);
    mf_engine_drop_page_cache(L->path);
    memfit_free(L->path);
    memfit_free(L);
    memfit_heap_trim();
}

static const struct memfit_model_driver engine_driver = {
    .family = "engine",
    .plan = drv_plan,
    .fetch = drv_fetch,
    .load = drv_load,
    .unload = drv_unload,
};

enum memfit_status memfit_engine_model_register(memfit_engine_model *m, memfit_manager *mgr)
{
    struct memfit_model_options o;
    memfit_model_options_default(&o);
    o.name = m->name;
    o.driver = &engine_driver;
    o.config = m;
    o.keep_alive_s = m->keep_alive_s;
    o.pin = m->pin;
    o.max_concurrency = m->max_concurrency;
    o.family = m->family->info.name;
    m->budget = memfit_manager_budget(mgr);
    return memfit_manager_register(mgr, &o);
}

/* ---- Operations on a handle ------------------------------------------------------------------ */

memfit_engine_model *memfit_engine_handle_model(memfit_handle *handle)
{
    struct mf_loaded *L = handle ? memfit_handle_model(handle) : NULL;
    return L ? L->model : NULL;
}

/* The family and its loaded model behind a handle, when it has `op`. */
static enum memfit_status loaded_for(memfit_handle *h, bool has_op, const char *what,
                                     const struct mf_family **fam, void **inner)
{
    struct mf_loaded *L = h ? memfit_handle_model(h) : NULL;
    if (!L)
        return memfit_fail(MEMFIT_E_MISUSE, "%s: no loaded model", what);
    *fam = L->model->family;
    *inner = L->inner;
    if (!has_op)
        return memfit_fail(MEMFIT_E_UNSUPPORTED, "model '%s' (family %s) does not %s",
                           L->model->name, L->model->family->info.name, what);
    return MEMFIT_OK;
}

static const struct mf_family *family_of_handle(memfit_handle *h)
{
    struct mf_loaded *L = h ? memfit_handle_model(h) : NULL;
    return L ? L->model->family : NULL;
}

void memfit_embed_params_default(struct memfit_embed_params *p)
{
    memset(p, 0, sizeof(*p));
    p->output = MEMFIT_VIT_OUTPUT_CLS;
    p->transform = memfit_image_transform_default();
    p->timeout_ms = 0; /* a one-shot caller would wait for room only it holds */
}

enum memfit_status memfit_engine_embed_size(memfit_handle *h, const struct memfit_embed_params *p,
                                            uint32_t width, uint32_t height, size_t *out_floats,
                                            uint32_t *out_dim)
{
    const struct mf_family *f = family_of_handle(h);
    void *inner = NULL;
    enum memfit_status st = loaded_for(h, f && f->embed_size, "embed images", &f, &inner);
    return st != MEMFIT_OK ? st : f->embed_size(inner, p, width, height, out_floats, out_dim);
}

enum memfit_status memfit_engine_embed(memfit_handle *h, const struct memfit_image *const *images,
                                       size_t n, const struct memfit_embed_params *p, float *out,
                                       size_t out_floats, uint64_t *out_tokens)
{
    const struct mf_family *f = family_of_handle(h);
    void *inner = NULL;
    enum memfit_status st = loaded_for(h, f && f->embed, "embed images", &f, &inner);
    return st != MEMFIT_OK ? st : f->embed(inner, images, n, p, out, out_floats, out_tokens);
}

struct memfit_engine_generation {
    const struct mf_family *family;
    void *gen;
};

enum memfit_status memfit_engine_generate_start(memfit_handle *h,
                                                const struct memfit_generation_request *req,
                                                memfit_engine_generation **out,
                                                uint32_t *out_prompt_tokens)
{
    const struct mf_family *f = family_of_handle(h);
    void *inner = NULL;
    enum memfit_status st = loaded_for(h, f && f->generate_start, "generate text", &f, &inner);
    if (st != MEMFIT_OK)
        return st;
    memfit_engine_generation *g = memfit_calloc(1, sizeof(*g));
    if (!g)
        return MEMFIT_E_NOMEM;
    uint32_t n_prompt = 0;
    g->family = f;
    st = f->generate_start(inner, req, &g->gen, &n_prompt);
    if (st != MEMFIT_OK) {
        memfit_free(g);
        return st;
    }
    if (out_prompt_tokens)
        *out_prompt_tokens = n_prompt;
    *out = g;
    return MEMFIT_OK;
}

enum memfit_status memfit_engine_generate_next(memfit_engine_generation *g, const char **text,
                                               size_t *len, bool *done)
{
    return g->family->generate_next(g->gen, text, len, done);
}

void memfit_engine_generate_tokens(const memfit_engine_generation *g,
                                   const struct memfit_sampled_token **tokens, size_t *n)
{
    *tokens = NULL;
    *n = 0;
    if (g->family->generate_tokens)
        g->family->generate_tokens(g->gen, tokens, n);
}

void memfit_engine_generate_prompt(const memfit_engine_generation *g, const int32_t **tokens,
                                   const struct memfit_token_score **scores, size_t *n)
{
    *tokens = NULL;
    *scores = NULL;
    *n = 0;
    if (g->family->generate_prompt)
        g->family->generate_prompt(g->gen, tokens, scores, n);
}

void memfit_engine_generate_end(memfit_engine_generation *g, struct memfit_generate_result *result)
{
    if (!g)
        return;
    g->family->generate_end(g->gen, result);
    memfit_free(g);
}

enum memfit_status memfit_engine_llm(memfit_handle *h, memfit_llm **model,
                                     const memfit_tokenizer **tok, uint32_t *n_ctx)
{
    const struct mf_family *f = family_of_handle(h);
    void *inner = NULL;
    enum memfit_status st = loaded_for(h, f && f->llm, "generate text", &f, &inner);
    return st != MEMFIT_OK ? st : f->llm(inner, model, tok, n_ctx);
}

enum memfit_status memfit_engine_llm_session_acquire(memfit_handle *h, memfit_llm_session **out)
{
    const struct mf_family *f = family_of_handle(h);
    void *inner = NULL;
    enum memfit_status st = loaded_for(h, f && f->llm_session_acquire, "generate text", &f, &inner);
    return st != MEMFIT_OK ? st : f->llm_session_acquire(inner, out);
}

void memfit_engine_llm_session_release(memfit_handle *h, memfit_llm_session *s)
{
    struct mf_loaded *L = h ? memfit_handle_model(h) : NULL;
    if (L && s && L->model->family->llm_session_release)
        L->model->family->llm_session_release(L->inner, s);
}

memfit_vit *memfit_engine_vit(memfit_handle *h)
{
    struct mf_loaded *L = h ? memfit_handle_model(h) : NULL;
    return L && L->model->family->vit ? L->model->family->vit(L->inner) : NULL;
}

enum memfit_status memfit_engine_segment(memfit_handle *h, const struct memfit_image *image,
                                         const struct memfit_segment_params *p,
                                         struct memfit_segment_result *out)
{
    const struct mf_family *f = family_of_handle(h);
    void *inner = NULL;
    if (out)
        memset(out, 0, sizeof(*out));
    enum memfit_status st = loaded_for(h, f && f->segment, "segment images", &f, &inner);
    if (st != MEMFIT_OK)
        return st;
    if (!image || !image->rgb || !p || !out)
        return memfit_fail(MEMFIT_E_MISUSE, "segment: NULL image, parameters or result");
    return f->segment(inner, image, p, out);
}

memfit_sam *memfit_engine_sam(memfit_handle *h)
{
    struct mf_loaded *L = h ? memfit_handle_model(h) : NULL;
    return L && L->model->family->sam ? L->model->family->sam(L->inner) : NULL;
}

/*
 * The cache directory of the model store: opening it, refs (name or source
 * -> digest), listing, verification, removal, pins and size-limited LRU
 * eviction. Eviction never removes a blob that a running process has
 * pinned (pins/<digest>.<host>.<pid>) or mapped (found in /proc/PID/maps,
 * which is cheap enough at gc time), nor the one just fetched.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "store/internal.h"

/* Interrupted downloads older than this are dropped by gc. */
#define PARTIAL_MAX_AGE_NS (7ull * 24 * 3600 * 1000000000ull)
/* Temp files of a dead process older than this are dropped by gc. */
#define TEMP_MAX_AGE_NS (600ull * 1000000000ull)
/*
 * The quarantine's default bound (docs/store.md). Four files are enough to
 * tell a mirror that always sends the same wrong bytes from one that sends
 * different ones; 1 GiB keeps a typical small model or a truncated large
 * one, and a tenth of a configured cache limit lets a large cache keep one
 * copy of a large model without the quarantine ever rivalling the cache.
 */
#define QUARANTINE_DEFAULT_FILES     4u
#define QUARANTINE_DEFAULT_MIN_BYTES (1ull << 30)

struct memfit_store_options memfit_store_options_default(void)
{
    struct memfit_store_options o = {
        .cache_dir = NULL,
        .max_cache_bytes = 0,
        .offline = -1,
        .ca_bundle = NULL,
        .max_attempts = 4,
        .backoff_initial_ms = 500,
        .backoff_max_ms = 8000,
        .connect_timeout_ms = 15000,
        .stall_timeout_s = 30,
        .stall_min_bytes_per_s = 1024,
        .lock_wait_timeout_ms = 3600000,
        .stale_lock_ms = 120000,
    };
    return o;
}

/* ---- Open / close ------------------------------------------------------------ */

static enum memfit_status parse_bool(const char *name, const char *v, int *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off", ""};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        if (strcasecmp(v, yes[i]) == 0) {
            *out = 1;
            return MEMFIT_OK;
        }
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        if (strcasecmp(v, no[i]) == 0) {
            *out = 0;
            return MEMFIT_OK;
        }
    return memfit_fail(MEMFIT_E_RANGE, "%s: '%s' is not 1/0, true/false, yes/no or on/off", name,
                       v);
}

/* MEMFIT_CACHE_MAX_GB: a plain number is gigabytes (1e9); with a unit, as written. */
static enum memfit_status parse_max_gb(const char *v, uint64_t *out)
{
    bool unit = false;
    for (const char *p = v; *p; p++)
        if (isalpha((unsigned char)*p))
            unit = true;
    uint64_t n;
    enum memfit_status st = memfit_parse_size(v, &n);
    if (st != MEMFIT_OK)
        return memfit_fail(st, "MEMFIT_CACHE_MAX_GB: %s", memfit_last_error());
    if (unit) {
        *out = n;
        return MEMFIT_OK;
    }
    double gb = strtod(v, NULL);
    if (!(gb >= 0 && gb < 1.8e10))
        return memfit_fail(MEMFIT_E_RANGE, "MEMFIT_CACHE_MAX_GB: '%s' out of range", v);
    *out = (uint64_t)(gb * 1e9);
    return MEMFIT_OK;
}

/* MEMFIT_DOWNLOAD_MAX_RATE: bytes per second, with the units of memfit_parse_size. */
static enum memfit_status parse_max_rate(const char *v, uint64_t *out)
{
    uint64_t n;
    enum memfit_status st = memfit_parse_size(v, &n);
    if (st != MEMFIT_OK)
        return memfit_fail(st, "MEMFIT_DOWNLOAD_MAX_RATE: %s", memfit_last_error());
    if (n > (uint64_t)INT64_MAX)
        return memfit_fail(MEMFIT_E_RANGE, "MEMFIT_DOWNLOAD_MAX_RATE: '%s' out of range", v);
    *out = n;
    return MEMFIT_OK;
}

/* MEMFIT_QUARANTINE_MAX_FILES: a plain count. */
static enum memfit_status parse_count(const char *name, const char *v, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long n = strtoul(v, &end, 10);
    if (!isdigit((unsigned char)v[0]) || *end || errno || n > 1000000)
        return memfit_fail(MEMFIT_E_RANGE, "%s: '%s' is not a count from 0 to 1000000", name, v);
    *out = (unsigned)n;
    return MEMFIT_OK;
}

/* Resolves the quarantine bound: the field, else the variable, else the default. */
static enum memfit_status resolve_quarantine(struct memfit_store_options *o)
{
    enum memfit_status st = MEMFIT_OK;
    if (o->max_quarantine_files == 0) {
        const char *v = memfit_config_get("MEMFIT_QUARANTINE_MAX_FILES");
        o->max_quarantine_files = QUARANTINE_DEFAULT_FILES;
        if (v && v[0] &&
            (st = parse_count("MEMFIT_QUARANTINE_MAX_FILES", v, &o->max_quarantine_files)) !=
                MEMFIT_OK)
            return st;
    }
    if (o->max_quarantine_bytes == 0) {
        const char *v = memfit_config_get("MEMFIT_QUARANTINE_MAX_SIZE");
        if (v && v[0]) {
            if ((st = memfit_parse_size(v, &o->max_quarantine_bytes)) != MEMFIT_OK)
                return memfit_fail(st, "MEMFIT_QUARANTINE_MAX_SIZE: %s", memfit_last_error());
        } else {
            uint64_t tenth = o->max_cache_bytes / 10;
            o->max_quarantine_bytes =
                tenth > QUARANTINE_DEFAULT_MIN_BYTES ? tenth : QUARANTINE_DEFAULT_MIN_BYTES;
        }
    }
    return MEMFIT_OK;
}

static char *default_cache_dir(void)
{
    const char *dir = memfit_config_get("MEMFIT_CACHE_DIR");
    if (dir && dir[0])
        return memfit_strdup(dir);
    const char *xdg = getenv("XDG_CACHE_HOME");
    if (xdg && xdg[0] == '/')
        return memfit_asprintf("%s/memfit", xdg);
    const char *home = getenv("HOME");
    if (home && home[0])
        return memfit_asprintf("%s/.cache/memfit", home);
    memfit_fail(MEMFIT_E_NOT_FOUND, "no cache directory: set MEMFIT_CACHE_DIR (or HOME)");
    return NULL;
}

void memfit_store_close(memfit_store *store)
{
    if (!store)
        return;
    memfit_free(store->dir);
    memfit_free(store->blobs);
    memfit_free(store->refs);
    memfit_free(store->partial);
    memfit_free(store->quarantine);
    memfit_free(store->pins);
    memfit_free(store->ca_bundle);
    memfit_free(store);
}

enum memfit_status memfit_store_open(const struct memfit_store_options *opts, memfit_store **out)
{
    if (!out)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_store_open: out is NULL");
    struct memfit_store_options o = opts ? *opts : memfit_store_options_default();
    enum memfit_status st = MEMFIT_OK;
    if (o.offline < 0) {
        const char *v = memfit_config_get("MEMFIT_OFFLINE");
        o.offline = 0;
        if (v && (st = parse_bool("MEMFIT_OFFLINE", v, &o.offline)) != MEMFIT_OK)
            return st;
    }
    if (o.max_cache_bytes == 0) {
        const char *v = memfit_config_get("MEMFIT_CACHE_MAX_GB");
        if (v && v[0] && (st = parse_max_gb(v, &o.max_cache_bytes)) != MEMFIT_OK)
            return st;
    }
    if (o.max_download_bytes_per_s == 0) {
        const char *v = memfit_config_get("MEMFIT_DOWNLOAD_MAX_RATE");
        if (v && v[0] && (st = parse_max_rate(v, &o.max_download_bytes_per_s)) != MEMFIT_OK)
            return st;
    }
    if ((st = resolve_quarantine(&o)) != MEMFIT_OK)
        return st;
    if (o.max_download_bytes_per_s > (uint64_t)INT64_MAX)
        return memfit_fail(MEMFIT_E_RANGE, "max_download_bytes_per_s %llu out of range",
                           (unsigned long long)o.max_download_bytes_per_s);
    memfit_store *s = memfit_calloc_in(MEMFIT_ALLOC_STORE, 1, sizeof(*s));
    if (!s)
        return MEMFIT_E_NOMEM;
    char *given = o.cache_dir && o.cache_dir[0] ? memfit_strdup(o.cache_dir) : default_cache_dir();
    if (!given) {
        memfit_store_close(s);
        return strstr(memfit_last_error(), "MEMFIT_CACHE_DIR") ? MEMFIT_E_NOT_FOUND
                                                               : MEMFIT_E_NOMEM;
    }
    const char *subdirs[] = {"blobs/sha256", "refs", "partial", "quarantine", "pins"};
    for (size_t i = 0; i < sizeof(subdirs) / sizeof(subdirs[0]) && st == MEMFIT_OK; i++) {
        char *p = memfit_asprintf("%s/%s", given, subdirs[i]);
        st = p ? mf_mkdirs(p) : MEMFIT_E_NOMEM;
        memfit_free(p);
    }
    if (st == MEMFIT_OK) {
        char *real = realpath(given, NULL);
        if (!real) {
            st = memfit_fail(MEMFIT_E_IO, "%s: %s", given, strerror(errno));
        } else {
            s->dir = memfit_strdup(real);
            free(real); /* lint: allow: realpath's buffer comes from libc malloc */
        }
    }
    memfit_free(given);
    if (st == MEMFIT_OK && s->dir) {
        s->blobs = memfit_asprintf("%s/blobs/sha256", s->dir);
        s->refs = memfit_asprintf("%s/refs", s->dir);
        s->partial = memfit_asprintf("%s/partial", s->dir);
        s->quarantine = memfit_asprintf("%s/quarantine", s->dir);
        s->pins = memfit_asprintf("%s/pins", s->dir);
    }
    if (st == MEMFIT_OK &&
        (!s->dir || !s->blobs || !s->refs || !s->partial || !s->quarantine || !s->pins))
        st = MEMFIT_E_NOMEM;
    const char *ca = o.ca_bundle ? o.ca_bundle : memfit_config_get("MEMFIT_CA_BUNDLE");
    if (st == MEMFIT_OK && ca && ca[0]) {
        if (access(ca, R_OK) != 0)
            st = memfit_fail(MEMFIT_E_IO, "MEMFIT_CA_BUNDLE: %s: %s", ca, strerror(errno));
        else if (!(s->ca_bundle = memfit_strdup(ca)))
            st = MEMFIT_E_NOMEM;
    }
    if (st != MEMFIT_OK) {
        memfit_store_close(s);
        return st;
    }
    o.cache_dir = NULL;
    o.ca_bundle = NULL;
    s->opts = o;
    *out = s;
    return MEMFIT_OK;
}

const char *memfit_store_dir(const memfit_store *store)
{
    return store ? store->dir : NULL;
}

/* ---- Blobs and refs ------------------------------------------------------------ */

char *mf_blob_path(const memfit_store *store, const char *hex)
{
    return memfit_asprintf("%s/%s", store->blobs, hex);
}

bool mf_blob_exists(const memfit_store *store, const char *hex, uint64_t *size)
{
    char path[4200];
    struct stat st;
    if (!mf_is_sha256_hex(hex) ||
        (size_t)snprintf(path, sizeof(path), "%s/%s", store->blobs, hex) >= sizeof(path) ||
        stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return false;
    if (size)
        *size = (uint64_t)st.st_size;
    return true;
}

void mf_ref_clear(struct mf_ref *ref)
{
    if (!ref)
        return;
    memfit_free(ref->name);
    memfit_free(ref->source);
    memfit_free(ref->etag);
    memset(ref, 0, sizeof(*ref));
}

enum memfit_status mf_ref_parse(const char *text, const char *what, struct mf_ref *out)
{
    struct mf_ref r = {0};
    enum memfit_status st = MEMFIT_OK;
    bool magic = false;
    const char *p = text;
    while (*p && st == MEMFIT_OK) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        const char *sp = memchr(p, ' ', n);
        size_t nk = sp ? (size_t)(sp - p) : n;
        const char *v = sp ? sp + 1 : p + n;
        size_t nv = (size_t)(p + n - v);
#define KEY(k) (nk == sizeof(k) - 1 && memcmp(p, k, nk) == 0)
        char **field = NULL;
        if (KEY("memfit-ref")) {
            magic = nv == 1 && v[0] == '1';
        } else if (KEY("name")) {
            field = &r.name;
        } else if (KEY("source")) {
            field = &r.source;
        } else if (KEY("etag")) {
            field = &r.etag;
        } else if (KEY("digest")) {
            if (nv != MEMFIT_SHA256_HEX_LEN)
                st = memfit_fail(MEMFIT_E_FORMAT, "%s: malformed digest", what);
            else
                memcpy(r.digest, v, nv);
        } else if (KEY("size") || KEY("last_used")) {
            char num[24];
            char *end;
            if (nv == 0 || nv >= sizeof(num)) {
                st = memfit_fail(MEMFIT_E_FORMAT, "%s: malformed number", what);
            } else {
                memcpy(num, v, nv);
                num[nv] = '\0';
                uint64_t x = strtoull(num, &end, 10);
                if (*end || !isdigit((unsigned char)num[0]))
                    st = memfit_fail(MEMFIT_E_FORMAT, "%s: malformed number '%s'", what, num);
                else if (KEY("size"))
                    r.size_bytes = x;
                else
                    r.last_used_ns = x;
            }
        }
#undef KEY
        if (field && !*field && !(*field = memfit_strndup(v, nv)))
            st = MEMFIT_E_NOMEM;
        p = nl ? nl + 1 : p + n;
    }
    if (st == MEMFIT_OK && (!magic || !r.name || !mf_is_sha256_hex(r.digest)))
        st = memfit_fail(MEMFIT_E_FORMAT, "%s: not a memfit ref (missing name or digest)", what);
    if (st != MEMFIT_OK) {
        mf_ref_clear(&r);
        return st;
    }
    *out = r;
    return MEMFIT_OK;
}

static enum memfit_status read_ref_file(const char *path, struct mf_ref *out)
{
    char *text = NULL;
    enum memfit_status st = mf_read_small_file(path, 64 * 1024, &text, NULL);
    if (st == MEMFIT_OK)
        st = mf_ref_parse(text, path, out);
    memfit_free(text);
    return st;
}

/* The path of the ref file of `name` (redacted first). */
static char *ref_path(const memfit_store *store, const char *name)
{
    char *shown = mf_redact(name);
    if (!shown)
        return NULL;
    char *file = mf_ref_filename(shown);
    memfit_free(shown);
    if (!file)
        return NULL;
    char *path = memfit_asprintf("%s/%s", store->refs, file);
    memfit_free(file);
    return path;
}

enum memfit_status mf_ref_read(const memfit_store *store, const char *name, struct mf_ref *out)
{
    char *path = ref_path(store, name);
    if (!path)
        return MEMFIT_E_NOMEM;
    enum memfit_status st = read_ref_file(path, out);
    memfit_free(path);
    return st;
}

/* Copies `text` without control characters, which would break the line format. */
static void clean_value(const char *text, char *buf, size_t size)
{
    mf_redact_into(text ? text : "", buf, size);
    for (char *p = buf; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '_';
}

enum memfit_status mf_ref_write(const memfit_store *store, const struct mf_ref *ref)
{
    char name[2048], source[2048], etag[300];
    clean_value(ref->name, name, sizeof(name));
    clean_value(ref->source, source, sizeof(source));
    clean_value(ref->etag, etag, sizeof(etag));
    char *file = mf_ref_filename(name);
    char *text = memfit_asprintf("memfit-ref 1\nname %s\ndigest %s\nsource %s\nsize %llu\n"
                                 "etag %s\nlast_used %llu\n",
                                 name, ref->digest, source, (unsigned long long)ref->size_bytes,
                                 etag, (unsigned long long)ref->last_used_ns);
    enum memfit_status st = MEMFIT_E_NOMEM;
    if (file && text)
        st = mf_write_atomic(store->refs, file, text, strlen(text));
    memfit_free(file);
    memfit_free(text);
    return st;
}

/* ---- In use: pins and mappings ------------------------------------------------- */

struct digest_set {
    char (*items)[MEMFIT_SHA256_HEX_LEN + 1];
    size_t n, cap;
};

static bool set_has(const struct digest_set *s, const char *hex)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->items[i], hex) == 0)
            return true;
    return false;
}

static enum memfit_status set_add(struct digest_set *s, const char *hex)
{
    if (set_has(s, hex))
        return MEMFIT_OK;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        void *grown = memfit_realloc(s->items, cap * sizeof(*s->items));
        if (!grown)
            return MEMFIT_E_NOMEM;
        s->items = grown;
        s->cap = cap;
    }
    memcpy(s->items[s->n], hex, MEMFIT_SHA256_HEX_LEN);
    s->items[s->n][MEMFIT_SHA256_HEX_LEN] = '\0';
    s->n++;
    return MEMFIT_OK;
}

static bool all_digits(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s))
            return false;
    return true;
}

/* A pin file "<hex>.<host>.<pid>": false when its process is certainly gone. */
static bool pin_is_live(const char *file, char *hex_out)
{
    if (strlen(file) < MEMFIT_SHA256_HEX_LEN + 4 || file[MEMFIT_SHA256_HEX_LEN] != '.')
        return false;
    memcpy(hex_out, file, MEMFIT_SHA256_HEX_LEN);
    hex_out[MEMFIT_SHA256_HEX_LEN] = '\0';
    if (!mf_is_sha256_hex(hex_out))
        return false;
    const char *host = file + MEMFIT_SHA256_HEX_LEN + 1;
    const char *dot = strrchr(host, '.');
    if (!dot || !all_digits(dot + 1))
        return false;
    const char *me = mf_hostname();
    if ((size_t)(dot - host) == strlen(me) && strncmp(host, me, (size_t)(dot - host)) == 0)
        return !mf_pid_is_dead((pid_t)strtol(dot + 1, NULL, 10));
    return true; /* another host's process: we cannot tell, so it counts */
}

/* Digests pinned by live processes (dead processes' pins are removed when `clean`). */
static enum memfit_status collect_pins(const memfit_store *store, bool clean,
                                       struct digest_set *set)
{
    DIR *d = opendir(store->pins);
    if (!d)
        return MEMFIT_OK;
    enum memfit_status st = MEMFIT_OK;
    struct dirent *e;
    while (st == MEMFIT_OK && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char hex[MEMFIT_SHA256_HEX_LEN + 1];
        if (pin_is_live(e->d_name, hex)) {
            st = set_add(set, hex);
        } else if (clean) {
            char *p = memfit_asprintf("%s/%s", store->pins, e->d_name);
            if (p)
                unlink(p);
            memfit_free(p);
        }
    }
    closedir(d);
    return st;
}

/* Digests of blobs mapped by any process we may read the maps of. */
static enum memfit_status collect_mapped(const memfit_store *store, struct digest_set *set)
{
    DIR *proc = opendir("/proc");
    if (!proc)
        return MEMFIT_OK;
    size_t prefix_len = strlen(store->blobs);
    enum memfit_status st = MEMFIT_OK;
    char *line = NULL;
    size_t cap = 0;
    struct dirent *e;
    while (st == MEMFIT_OK && (e = readdir(proc))) {
        if (!all_digits(e->d_name))
            continue;
        char path[300];
        snprintf(path, sizeof(path), "/proc/%s/maps", e->d_name);
        FILE *f = fopen(path, "re");
        if (!f)
            continue; /* gone, or another user's process */
        while (st == MEMFIT_OK && getline(&line, &cap, f) > 0) {
            char *p = strstr(line, store->blobs);
            if (!p || p[prefix_len] != '/')
                continue;
            char *hex = p + prefix_len + 1;
            if (strlen(hex) < MEMFIT_SHA256_HEX_LEN)
                continue;
            char digest[MEMFIT_SHA256_HEX_LEN + 1];
            memcpy(digest, hex, MEMFIT_SHA256_HEX_LEN);
            digest[MEMFIT_SHA256_HEX_LEN] = '\0';
            if (mf_is_sha256_hex(digest))
                st = set_add(set, digest);
        }
        fclose(f);
    }
    free(line); /* lint: allow: getline's buffer comes from libc malloc */
    closedir(proc);
    return st;
}

static enum memfit_status collect_in_use(const memfit_store *store, bool clean,
                                         struct digest_set *set)
{
    enum memfit_status st = collect_pins(store, clean, set);
    return st == MEMFIT_OK ? collect_mapped(store, set) : st;
}

/* ---- Scanning ------------------------------------------------------------------ */

struct blob_info {
    char digest[MEMFIT_SHA256_HEX_LEN + 1];
    uint64_t size_bytes;
    uint64_t last_used_ns;
    bool has_ref;
};

struct scan {
    struct mf_ref *refs;
    char **ref_files;
    size_t n_refs, cap_refs;
    struct blob_info *blobs;
    size_t n_blobs, cap_blobs;
};

static void scan_free(struct scan *s)
{
    for (size_t i = 0; i < s->n_refs; i++) {
        mf_ref_clear(&s->refs[i]);
        memfit_free(s->ref_files[i]);
    }
    memfit_free(s->refs);
    memfit_free(s->ref_files);
    memfit_free(s->blobs);
    memset(s, 0, sizeof(*s));
}

static enum memfit_status scan_refs(const memfit_store *store, struct scan *s)
{
    DIR *d = opendir(store->refs);
    if (!d)
        return memfit_fail(MEMFIT_E_IO, "%s: %s", store->refs, strerror(errno));
    enum memfit_status st = MEMFIT_OK;
    struct dirent *e;
    while (st == MEMFIT_OK && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (s->n_refs == s->cap_refs) {
            size_t cap = s->cap_refs ? s->cap_refs * 2 : 16;
            struct mf_ref *r = memfit_realloc(s->refs, cap * sizeof(*r));
            if (!r) {
                st = MEMFIT_E_NOMEM;
                break;
            }
            s->refs = r;
            char **f = memfit_realloc(s->ref_files, cap * sizeof(*f));
            if (!f) {
                st = MEMFIT_E_NOMEM;
                break;
            }
            s->ref_files = f;
            s->cap_refs = cap;
        }
        char *path = memfit_asprintf("%s/%s", store->refs, e->d_name);
        if (!path) {
            st = MEMFIT_E_NOMEM;
            break;
        }
        struct mf_ref ref;
        enum memfit_status rs = read_ref_file(path, &ref);
        if (rs == MEMFIT_E_NOMEM) {
            st = rs;
        } else if (rs != MEMFIT_OK) {
            memfit_log(MEMFIT_LOG_WARN, "skipping %s", memfit_last_error());
        } else {
            s->refs[s->n_refs] = ref;
            s->ref_files[s->n_refs] = path;
            path = NULL;
            s->n_refs++;
        }
        memfit_free(path);
    }
    closedir(d);
    return st;
}

static enum memfit_status scan_blobs(const memfit_store *store, struct scan *s)
{
    DIR *d = opendir(store->blobs);
    if (!d)
        return memfit_fail(MEMFIT_E_IO, "%s: %s", store->blobs, strerror(errno));
    enum memfit_status st = MEMFIT_OK;
    struct dirent *e;
    while (st == MEMFIT_OK && (e = readdir(d))) {
        if (!mf_is_sha256_hex(e->d_name))
            continue;
        struct stat sb;
        if (fstatat(dirfd(d), e->d_name, &sb, 0) != 0 || !S_ISREG(sb.st_mode))
            continue;
        if (s->n_blobs == s->cap_blobs) {
            size_t cap = s->cap_blobs ? s->cap_blobs * 2 : 16;
            struct blob_info *b = memfit_realloc(s->blobs, cap * sizeof(*b));
            if (!b) {
                st = MEMFIT_E_NOMEM;
                break;
            }
            s->blobs = b;
            s->cap_blobs = cap;
        }
        struct blob_info *b = &s->blobs[s->n_blobs++];
        memset(b, 0, sizeof(*b));
        memcpy(b->digest, e->d_name, MEMFIT_SHA256_HEX_LEN);
        b->size_bytes = (uint64_t)sb.st_size;
        uint64_t m = (uint64_t)sb.st_mtim.tv_sec * 1000000000u + (uint64_t)sb.st_mtim.tv_nsec;
        uint64_t a = (uint64_t)sb.st_atim.tv_sec * 1000000000u + (uint64_t)sb.st_atim.tv_nsec;
        b->last_used_ns = a > m ? a : m;
    }
    closedir(d);
    if (st != MEMFIT_OK)
        return st;
    /* A ref's last use is what we maintain ourselves; atime may be off (noatime). */
    for (size_t i = 0; i < s->n_blobs; i++) {
        struct blob_info *b = &s->blobs[i];
        uint64_t ref_used = 0;
        for (size_t j = 0; j < s->n_refs; j++) {
            if (strcmp(s->refs[j].digest, b->digest) != 0)
                continue;
            b->has_ref = true;
            if (s->refs[j].last_used_ns > ref_used)
                ref_used = s->refs[j].last_used_ns;
        }
        if (b->has_ref)
            b->last_used_ns = ref_used;
    }
    return MEMFIT_OK;
}

static enum memfit_status scan(const memfit_store *store, struct scan *s)
{
    memset(s, 0, sizeof(*s));
    enum memfit_status st = scan_refs(store, s);
    if (st == MEMFIT_OK)
        st = scan_blobs(store, s);
    if (st != MEMFIT_OK)
        scan_free(s);
    return st;
}

static struct blob_info *find_blob(struct scan *s, const char *hex)
{
    for (size_t i = 0; i < s->n_blobs; i++)
        if (strcmp(s->blobs[i].digest, hex) == 0)
            return &s->blobs[i];
    return NULL;
}

/* ---- List / info ------------------------------------------------------------------ */

void memfit_store_entry_clear(struct memfit_store_entry *entry)
{
    if (!entry)
        return;
    memfit_free(entry->name);
    memfit_free(entry->source);
    memfit_free(entry->path);
    memset(entry, 0, sizeof(*entry));
}

void memfit_store_entries_free(struct memfit_store_entry *entries, size_t n)
{
    if (!entries)
        return;
    for (size_t i = 0; i < n; i++)
        memfit_store_entry_clear(&entries[i]);
    memfit_free(entries);
}

static enum memfit_status fill_entry(const memfit_store *store, const struct mf_ref *ref,
                                     const struct blob_info *b, const struct digest_set *in_use,
                                     struct memfit_store_entry *e)
{
    memset(e, 0, sizeof(*e));
    memcpy(e->digest, b->digest, sizeof(e->digest));
    e->size_bytes = b->size_bytes;
    e->last_used_ns = ref ? ref->last_used_ns : b->last_used_ns;
    e->in_use = set_has(in_use, b->digest);
    e->path = mf_blob_path(store, b->digest);
    if (ref) {
        e->name = memfit_strdup(ref->name);
        if (ref->source && ref->source[0])
            e->source = memfit_strdup(ref->source);
    }
    if (!e->path || (ref && !e->name) || (ref && ref->source && ref->source[0] && !e->source)) {
        memfit_store_entry_clear(e);
        return MEMFIT_E_NOMEM;
    }
    return MEMFIT_OK;
}

static int cmp_entry(const void *a, const void *b)
{
    const struct memfit_store_entry *x = a, *y = b;
    if (x->last_used_ns != y->last_used_ns)
        return x->last_used_ns < y->last_used_ns ? -1 : 1;
    return strcmp(x->digest, y->digest);
}

enum memfit_status memfit_store_list(memfit_store *store, struct memfit_store_entry **out,
                                     size_t *n)
{
    if (!store || !out || !n)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_store_list: NULL argument");
    struct scan s;
    enum memfit_status st = scan(store, &s);
    if (st != MEMFIT_OK)
        return st;
    struct digest_set in_use = {0};
    st = collect_in_use(store, false, &in_use);
    size_t cap = s.n_refs + s.n_blobs;
    struct memfit_store_entry *entries = NULL;
    size_t count = 0;
    if (st == MEMFIT_OK && cap > 0) {
        entries = memfit_calloc_in(MEMFIT_ALLOC_STORE, cap, sizeof(*entries));
        if (!entries)
            st = MEMFIT_E_NOMEM;
    }
    for (size_t i = 0; st == MEMFIT_OK && i < s.n_refs; i++) {
        const struct blob_info *b = find_blob(&s, s.refs[i].digest);
        if (b && (st = fill_entry(store, &s.refs[i], b, &in_use, &entries[count])) == MEMFIT_OK)
            count++;
    }
    for (size_t i = 0; st == MEMFIT_OK && i < s.n_blobs; i++) {
        if (!s.blobs[i].has_ref &&
            (st = fill_entry(store, NULL, &s.blobs[i], &in_use, &entries[count])) == MEMFIT_OK)
            count++;
    }
    scan_free(&s);
    memfit_free(in_use.items);
    if (st != MEMFIT_OK) {
        memfit_store_entries_free(entries, count);
        return st;
    }
    if (count > 1)
        qsort(entries, count, sizeof(*entries), cmp_entry);
    *out = entries;
    *n = count;
    return MEMFIT_OK;
}

/* A digest named by a unique prefix of at least 8 hex digits. */
static enum memfit_status match_digest(struct scan *s, const char *text, const char **out)
{
    size_t n = strlen(text);
    if (n < 8 || n > MEMFIT_SHA256_HEX_LEN)
        return MEMFIT_E_NOT_FOUND;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)text[i]))
            return MEMFIT_E_NOT_FOUND;
    const char *found = NULL;
    for (size_t i = 0; i < s->n_blobs; i++) {
        if (strncasecmp(s->blobs[i].digest, text, n) != 0)
            continue;
        if (found)
            return memfit_fail(MEMFIT_E_RANGE, "digest prefix %s is ambiguous", text);
        found = s->blobs[i].digest;
    }
    if (!found)
        return MEMFIT_E_NOT_FOUND;
    *out = found;
    return MEMFIT_OK;
}

/* Finds a name: a ref first, then a digest (prefix). *ref_index is SIZE_MAX for a digest. */
static enum memfit_status resolve(const memfit_store *store, struct scan *s, const char *name,
                                  size_t *ref_index, const char **digest)
{
    char *shown = mf_redact(name);
    if (!shown)
        return MEMFIT_E_NOMEM;
    for (size_t i = 0; i < s->n_refs; i++) {
        if (strcmp(s->refs[i].name, shown) == 0) {
            memfit_free(shown);
            *ref_index = i;
            *digest = s->refs[i].digest;
            return MEMFIT_OK;
        }
    }
    memfit_free(shown);
    enum memfit_status st = match_digest(s, name, digest);
    if (st == MEMFIT_E_NOT_FOUND) {
        char sh[300];
        mf_redact_into(name, sh, sizeof(sh));
        return memfit_fail(MEMFIT_E_NOT_FOUND, "%s: not in the cache %s", sh, store->dir);
    }
    *ref_index = SIZE_MAX;
    return st;
}

enum memfit_status memfit_store_info(memfit_store *store, const char *name,
                                     struct memfit_store_entry *out)
{
    if (!store || !name || !out)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_store_info: NULL argument");
    struct scan s;
    enum memfit_status st = scan(store, &s);
    if (st != MEMFIT_OK)
        return st;
    size_t ri;
    const char *digest;
    struct digest_set in_use = {0};
    st = resolve(store, &s, name, &ri, &digest);
    if (st == MEMFIT_OK)
        st = collect_in_use(store, false, &in_use);
    if (st == MEMFIT_OK) {
        const struct blob_info *b = find_blob(&s, digest);
        const struct mf_ref *ref = ri != SIZE_MAX ? &s.refs[ri] : NULL;
        if (!ref) /* a digest: show the most recent name pointing at it, if any */
            for (size_t i = 0; i < s.n_refs; i++)
                if (strcmp(s.refs[i].digest, digest) == 0 &&
                    (!ref || s.refs[i].last_used_ns > ref->last_used_ns))
                    ref = &s.refs[i];
        if (!b)
            st = memfit_fail(MEMFIT_E_NOT_FOUND, "%s: its blob %s is missing", name, digest);
        else
            st = fill_entry(store, ref, b, &in_use, out);
    }
    memfit_free(in_use.items);
    scan_free(&s);
    return st;
}

/* ---- Verify / remove ---------------------------------------------------------------- */

/* ---- Quarantine ----------------------------------------------------------------------- */

void memfit_store_quarantine_free(struct memfit_store_quarantined *files, size_t n)
{
    if (!files)
        return;
    for (size_t i = 0; i < n; i++)
        memfit_free(files[i].path);
    memfit_free(files);
}

static int cmp_quarantined(const void *a, const void *b)
{
    const struct memfit_store_quarantined *x = a, *y = b;
    if (x->added_ns != y->added_ns)
        return x->added_ns < y->added_ns ? -1 : 1;
    return strcmp(x->path, y->path);
}

/* The regular files of quarantine/ (not temp files), oldest first. */
static enum memfit_status quarantine_scan(const memfit_store *store,
                                          struct memfit_store_quarantined **out, size_t *n_out)
{
    DIR *d = opendir(store->quarantine);
    if (!d) {
        if (errno == ENOENT) {
            *out = NULL;
            *n_out = 0;
            return MEMFIT_OK;
        }
        return memfit_fail(MEMFIT_E_IO, "%s: %s", store->quarantine, strerror(errno));
    }
    struct memfit_store_quarantined *files = NULL;
    size_t n = 0, cap = 0;
    enum memfit_status st = MEMFIT_OK;
    struct dirent *e;
    while (st == MEMFIT_OK && (e = readdir(d))) {
        struct stat sb;
        if (e->d_name[0] == '.' || fstatat(dirfd(d), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 ||
            !S_ISREG(sb.st_mode))
            continue;
        if (n == cap) {
            size_t c = cap ? cap * 2 : 8;
            void *grown = memfit_realloc(files, c * sizeof(*files));
            if (!grown) {
                st = MEMFIT_E_NOMEM;
                break;
            }
            files = grown;
            cap = c;
        }
        struct memfit_store_quarantined *q = &files[n];
        memset(q, 0, sizeof(*q));
        if (!(q->path = memfit_asprintf("%s/%s", store->quarantine, e->d_name))) {
            st = MEMFIT_E_NOMEM;
            break;
        }
        if (strlen(e->d_name) > MEMFIT_SHA256_HEX_LEN && e->d_name[MEMFIT_SHA256_HEX_LEN] == '-') {
            memcpy(q->digest, e->d_name, MEMFIT_SHA256_HEX_LEN);
            if (!mf_is_sha256_hex(q->digest))
                q->digest[0] = '\0';
        }
        q->size_bytes = (uint64_t)sb.st_size;
        q->added_ns = (uint64_t)sb.st_mtim.tv_sec * 1000000000u + (uint64_t)sb.st_mtim.tv_nsec;
        n++;
    }
    closedir(d);
    if (st != MEMFIT_OK) {
        memfit_store_quarantine_free(files, n);
        return st;
    }
    if (n > 1)
        qsort(files, n, sizeof(*files), cmp_quarantined);
    *out = files;
    *n_out = n;
    return MEMFIT_OK;
}

enum memfit_status memfit_store_quarantine_list(memfit_store *store,
                                                struct memfit_store_quarantined **out, size_t *n,
                                                unsigned *max_files, uint64_t *max_bytes)
{
    if (!store || !out || !n)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_store_quarantine_list: NULL argument");
    enum memfit_status st = quarantine_scan(store, out, n);
    if (st == MEMFIT_OK && max_files)
        *max_files = store->opts.max_quarantine_files;
    if (st == MEMFIT_OK && max_bytes)
        *max_bytes = store->opts.max_quarantine_bytes;
    return st;
}

/* Deletes the oldest quarantined files (never `keep`) until the bound holds. */
static enum memfit_status quarantine_trim(const memfit_store *store, const char *keep)
{
    struct memfit_store_quarantined *files;
    size_t n;
    enum memfit_status st = quarantine_scan(store, &files, &n);
    if (st != MEMFIT_OK)
        return st;
    const unsigned max_files = store->opts.max_quarantine_files;
    const uint64_t max_bytes = store->opts.max_quarantine_bytes;
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += files[i].size_bytes;
    size_t count = n;
    char bound[32];
    memfit_format_size(max_bytes, bound, sizeof(bound));
    for (size_t i = 0; i < n && (count > max_files || total > max_bytes); i++) {
        if (keep && strcmp(files[i].path, keep) == 0)
            continue;
        if (unlink(files[i].path) != 0 && errno != ENOENT) {
            st = memfit_fail(MEMFIT_E_IO, "%s: %s", files[i].path, strerror(errno));
            break;
        }
        memfit_log(MEMFIT_LOG_INFO,
                   "quarantine: deleted %s (%llu bytes), the oldest, to stay within %u files "
                   "and %s",
                   files[i].path, (unsigned long long)files[i].size_bytes, max_files, bound);
        count--;
        total -= files[i].size_bytes;
    }
    memfit_store_quarantine_free(files, n);
    return st;
}

enum memfit_status mf_quarantine_add(const memfit_store *store, const char *path, const char *hex,
                                     const char *origin, char **kept)
{
    if (kept)
        *kept = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0)
        return memfit_fail(MEMFIT_E_IO, "%s: %s", path, strerror(errno));
    const uint64_t size = (uint64_t)sb.st_size;
    const unsigned max_files = store->opts.max_quarantine_files;
    const uint64_t max_bytes = store->opts.max_quarantine_bytes;
    if (max_files == 0 || size > max_bytes) {
        unlink(path);
        char bound[32];
        memfit_log(MEMFIT_LOG_WARN,
                   "quarantine: not keeping the file with sha256 %s from %s (%llu bytes): the "
                   "quarantine holds at most %u files and %s",
                   hex, origin ? origin : "an unknown source", (unsigned long long)size, max_files,
                   memfit_format_size(max_bytes, bound, sizeof(bound)));
        return MEMFIT_OK;
    }
    char *to = memfit_asprintf("%s/%s-%llu", store->quarantine, hex,
                               (unsigned long long)(memfit_wall_ns() / 1000000000u));
    if (!to) {
        unlink(path);
        return MEMFIT_E_NOMEM;
    }
    if (rename(path, to) != 0) {
        enum memfit_status st =
            memfit_fail(MEMFIT_E_IO, "%s: rename to quarantine: %s", path, strerror(errno));
        unlink(path);
        memfit_free(to);
        return st;
    }
    /* Its age in quarantine counts from now, not from its last write (a blob
     * found bad by verify may be months old). */
    utimensat(AT_FDCWD, to, NULL, 0);
    /* The file is in; a failure to trim the others is reported, not fatal. */
    if (quarantine_trim(store, to) != MEMFIT_OK)
        memfit_log(MEMFIT_LOG_WARN, "quarantine: %s", memfit_last_error());
    mf_fsync_dir(store->quarantine);
    if (kept)
        *kept = to;
    else
        memfit_free(to);
    return MEMFIT_OK;
}

/* A blob whose content does not match its name (sha256 `actual`) leaves blobs/. */
static enum memfit_status quarantine_blob(const memfit_store *store, const char *hex,
                                          const char *actual)
{
    char *from = mf_blob_path(store, hex);
    if (!from)
        return MEMFIT_E_NOMEM;
    enum memfit_status st = mf_quarantine_add(store, from, actual, from, NULL);
    memfit_free(from);
    return st;
}

enum memfit_status memfit_store_verify(memfit_store *store, struct memfit_store_verify_result *out)
{
    if (!store || !out)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_store_verify: NULL argument");
    struct scan s;
    enum memfit_status st = scan(store, &s);
    if (st != MEMFIT_OK)
        return st;
    struct memfit_store_verify_result r = {0};
    struct mf_sha256 h;
    if ((st = mf_sha256_init(&h)) != MEMFIT_OK) {
        scan_free(&s);
        return st;
    }
    for (size_t i = 0; st == MEMFIT_OK && i < s.n_blobs; i++) {
        char *path = mf_blob_path(store, s.blobs[i].digest);
        if (!path) {
            st = MEMFIT_E_NOMEM;
            break;
        }
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            memfit_free(path);
            continue; /* removed meanwhile */
        }
        posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        st = mf_sha256_fd(&h, fd, s.blobs[i].size_bytes, path, NULL);
        close(fd);
        char hex[MEMFIT_SHA256_HEX_LEN + 1];
        mf_sha256_final(&h, hex);
        if (st == MEMFIT_OK) {
            r.n_bytes += s.blobs[i].size_bytes;
            if (strcmp(hex, s.blobs[i].digest) == 0) {
                r.n_ok++;
            } else {
                r.n_bad++;
                memfit_log(MEMFIT_LOG_WARN, "%s: content has sha256 %s; moved to quarantine", path,
                           hex);
                st = quarantine_blob(store, s.blobs[i].digest, hex);
            }
        }
        memfit_free(path);
    }
    mf_sha256_free(&h);
    scan_free(&s);
    if (st != MEMFIT_OK)
        return st;
    *out = r;
    if (r.n_bad > 0)
        return memfit_fail(MEMFIT_E_CHECKSUM, "%zu of %zu cached files had a wrong digest", r.n_bad,
                           r.n_bad + r.n_ok);
    return MEMFIT_OK;
}

/* Removes refs pointing at `hex` (all when only_file is NULL), then the blob if unreferenced. */
static enum memfit_status remove_blob_and_refs(const memfit_store *store, struct scan *s,
                                               const char *hex, const char *only_file,
                                               bool *blob_removed)
{
    size_t remaining = 0;
    for (size_t i = 0; i < s->n_refs; i++) {
        if (strcmp(s->refs[i].digest, hex) != 0)
            continue;
        if (!only_file || strcmp(s->ref_files[i], only_file) == 0) {
            if (unlink(s->ref_files[i]) != 0 && errno != ENOENT)
                return memfit_fail(MEMFIT_E_IO, "%s: %s", s->ref_files[i], strerror(errno));
        } else {
            remaining++;
        }
    }
    *blob_removed = false;
    if (remaining > 0)
        return MEMFIT_OK;
    char *path = mf_blob_path(store, hex);
    if (!path)
        return MEMFIT_E_NOMEM;
    enum memfit_status st = MEMFIT_OK;
    if (unlink(path) != 0 && errno != ENOENT)
        st = memfit_fail(MEMFIT_E_IO, "%s: %s", path, strerror(errno));
    else
        *blob_removed = true;
    memfit_free(path);
    return st;
}

enum memfit_status memfit_store_remove(memfit_store *store, const char *name)
{
    if (!store || !name)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_store_remove: NULL argument");
    struct scan s;
    enum memfit_status st = scan(store, &s);
    if (st != MEMFIT_OK)
        return st;
    size_t ri;
    const char *digest;
    struct digest_set in_use = {0};
    char hex[MEMFIT_SHA256_HEX_LEN + 1];
    st = resolve(store, &s, name, &ri, &digest);
    if (st == MEMFIT_OK) {
        memcpy(hex, digest, sizeof(hex));
        st = collect_in_use(store, false, &in_use);
    }
    if (st == MEMFIT_OK) {
        bool only_ref = ri != SIZE_MAX;
        size_t others = 0;
        for (size_t i = 0; i < s.n_refs; i++)
            if (strcmp(s.refs[i].digest, hex) == 0 && i != ri)
                others++;
        bool blob_goes = !only_ref || others == 0;
        if (blob_goes && set_has(&in_use, hex) && find_blob(&s, hex)) {
            st = memfit_fail(MEMFIT_E_BUSY,
                             "%s: in use by a running process (pinned or mapped); not removed",
                             name);
        } else {
            bool removed;
            st = remove_blob_and_refs(store, &s, hex, only_ref ? s.ref_files[ri] : NULL, &removed);
            if (st == MEMFIT_OK)
                st = mf_fsync_dir(store->refs);
            if (st == MEMFIT_OK && removed)
                st = mf_fsync_dir(store->blobs);
        }
    }
    memfit_free(in_use.items);
    scan_free(&s);
    return st;
}

/* ---- gc ------------------------------------------------------------------------------ */

/* Removes temp files of dead processes (".tmp.<pid>.<n>.<tag>") older than TEMP_MAX_AGE_NS. */
static void clean_temps(const char *dir, uint64_t now)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, ".tmp.", 5) != 0)
            continue;
        long pid = strtol(e->d_name + 5, NULL, 10);
        struct stat sb;
        if (fstatat(dirfd(d), e->d_name, &sb, 0) != 0)
            continue;
        uint64_t m = (uint64_t)sb.st_mtim.tv_sec * 1000000000u;
        if (now > m && now - m > TEMP_MAX_AGE_NS && mf_pid_is_dead((pid_t)pid))
            unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
}

/* Drops interrupted downloads nobody touched for a week (and whose lock is not held). */
static void clean_partials(const memfit_store *store, uint64_t now)
{
    DIR *d = opendir(store->partial);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!mf_is_sha256_hex(e->d_name))
            continue;
        struct stat sb;
        if (fstatat(dirfd(d), e->d_name, &sb, 0) != 0)
            continue;
        uint64_t m = (uint64_t)sb.st_mtim.tv_sec * 1000000000u;
        if (!(now > m && now - m > PARTIAL_MAX_AGE_NS))
            continue;
        char name[300];
        snprintf(name, sizeof(name), "%s.lock", e->d_name);
        if (faccessat(dirfd(d), name, F_OK, 0) == 0)
            continue;
        unlinkat(dirfd(d), e->d_name, 0);
        snprintf(name, sizeof(name), "%s.meta", e->d_name);
        unlinkat(dirfd(d), name, 0);
    }
    closedir(d);
}

static int cmp_blob_lru(const void *a, const void *b)
{
    const struct blob_info *x = a, *y = b;
    if (x->last_used_ns != y->last_used_ns)
        return x->last_used_ns < y->last_used_ns ? -1 : 1;
    return strcmp(x->digest, y->digest);
}

/* Deletes every quarantined file, counting them in `r`. */
static enum memfit_status quarantine_clear(const memfit_store *store,
                                           struct memfit_store_gc_result *r)
{
    struct memfit_store_quarantined *files = NULL;
    size_t n = 0;
    enum memfit_status st = quarantine_scan(store, &files, &n);
    for (size_t i = 0; st == MEMFIT_OK && i < n; i++) {
        if (unlink(files[i].path) != 0) {
            if (errno != ENOENT)
                st = memfit_fail(MEMFIT_E_IO, "%s: %s", files[i].path, strerror(errno));
            continue;
        }
        memfit_log(MEMFIT_LOG_INFO, "cache: deleted quarantined %s (%llu bytes)", files[i].path,
                   (unsigned long long)files[i].size_bytes);
        r->n_quarantine_removed++;
        r->quarantine_removed_bytes += files[i].size_bytes;
    }
    memfit_store_quarantine_free(files, n);
    if (st == MEMFIT_OK && r->n_quarantine_removed > 0)
        mf_fsync_dir(store->quarantine);
    return st;
}

enum memfit_status mf_store_gc(memfit_store *store, uint64_t max_bytes, const char *protect,
                               bool clear_quarantine, struct memfit_store_gc_result *out)
{
    /* One gc at a time per cache; fetches go on meanwhile. */
    char *gc_lock = memfit_asprintf("%s/.gc.lock", store->dir);
    if (!gc_lock)
        return MEMFIT_E_NOMEM;
    int lfd = open(gc_lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    memfit_free(gc_lock);
    if (lfd >= 0)
        flock(lfd, LOCK_EX);
    uint64_t now = memfit_wall_ns();
    const char *dirs[] = {store->refs, store->blobs, store->partial, store->quarantine, store->dir};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
        clean_temps(dirs[i], now);
    clean_partials(store, now);

    struct memfit_store_gc_result r = {0};
    struct scan s;
    struct digest_set in_use = {0};
    enum memfit_status st = clear_quarantine ? quarantine_clear(store, &r) : MEMFIT_OK;
    if (st != MEMFIT_OK)
        goto unlock;
    st = scan(store, &s);
    if (st != MEMFIT_OK)
        goto unlock;
    st = collect_in_use(store, true, &in_use);
    /* Refs whose blob is gone point nowhere. */
    for (size_t i = 0; st == MEMFIT_OK && i < s.n_refs; i++)
        if (!find_blob(&s, s.refs[i].digest))
            unlink(s.ref_files[i]);
    for (size_t i = 0; i < s.n_blobs; i++)
        r.total_bytes += s.blobs[i].size_bytes;
    if (st == MEMFIT_OK && max_bytes > 0 && r.total_bytes > max_bytes) {
        qsort(s.blobs, s.n_blobs, sizeof(*s.blobs), cmp_blob_lru);
        for (size_t i = 0; i < s.n_blobs && r.total_bytes > max_bytes && st == MEMFIT_OK; i++) {
            const struct blob_info *b = &s.blobs[i];
            if ((protect && strcmp(protect, b->digest) == 0) || set_has(&in_use, b->digest)) {
                r.n_kept_in_use++;
                continue;
            }
            bool removed = false;
            st = remove_blob_and_refs(store, &s, b->digest, NULL, &removed);
            if (st == MEMFIT_OK && removed) {
                memfit_log(MEMFIT_LOG_INFO, "cache: evicted %s (%llu bytes)", b->digest,
                           (unsigned long long)b->size_bytes);
                r.n_removed++;
                r.removed_bytes += b->size_bytes;
                r.total_bytes -= b->size_bytes;
            }
        }
        if (st == MEMFIT_OK && r.total_bytes > max_bytes)
            memfit_log(MEMFIT_LOG_WARN,
                       "cache: %llu bytes remain above the %llu limit; %zu files are in use",
                       (unsigned long long)r.total_bytes, (unsigned long long)max_bytes,
                       r.n_kept_in_use);
    }
    if (st == MEMFIT_OK) {
        mf_fsync_dir(store->refs);
        mf_fsync_dir(store->blobs);
    }
    memfit_free(in_use.items);
    scan_free(&s);
unlock:
    if (lfd >= 0)
        close(lfd);
    if (st == MEMFIT_OK && out)
        *out = r;
    return st;
}

enum memfit_status memfit_store_gc(memfit_store *store, uint64_t max_bytes,
                                   struct memfit_store_gc_result *out)
{
    if (!store)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_store_gc: store is NULL");
    return mf_store_gc(store, max_bytes ? max_bytes : store->opts.max_cache_bytes, NULL, true, out);
}

/* ---- Pins ------------------------------------------------------------------------------- */

/* The digest of a blob path of this store, or E_NOT_FOUND. */
static enum memfit_status blob_digest_of(const memfit_store *store, const char *path, char *hex)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (!mf_is_sha256_hex(base) || !mf_blob_exists(store, base, NULL))
        return memfit_fail(MEMFIT_E_NOT_FOUND, "%s: not a file of the cache %s", path, store->dir);
    memcpy(hex, base, MEMFIT_SHA256_HEX_LEN + 1);
    return MEMFIT_OK;
}

static char *pin_path(const memfit_store *store, const char *hex)
{
    return memfit_asprintf("%s/%s.%s.%ld", store->pins, hex, mf_hostname(), (long)getpid());
}

enum memfit_status memfit_store_pin(memfit_store *store, const char *path)
{
    if (!store || !path)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_store_pin: NULL argument");
    char hex[MEMFIT_SHA256_HEX_LEN + 1];
    enum memfit_status st = blob_digest_of(store, path, hex);
    if (st != MEMFIT_OK)
        return st;
    char *pin = pin_path(store, hex);
    if (!pin)
        return MEMFIT_E_NOMEM;
    int fd = open(pin, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        st = memfit_fail(MEMFIT_E_IO, "%s: %s", pin, strerror(errno));
    else
        close(fd);
    memfit_free(pin);
    return st;
}

enum memfit_status memfit_store_unpin(memfit_store *store, const char *path)
{
    if (!store || !path)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_store_unpin: NULL argument");
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (!mf_is_sha256_hex(base))
        return MEMFIT_OK;
    char *pin = pin_path(store, base);
    if (!pin)
        return MEMFIT_E_NOMEM;
    unlink(pin);
    memfit_free(pin);
    return MEMFIT_OK;
}

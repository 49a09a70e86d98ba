/*
 * Internal pieces of the model store, split so the pure parts (source URIs,
 * path safety, redaction, the AWS credentials INI, lock files, streaming
 * SHA-256) can be unit-tested without a network:
 *   uri.c    source URIs -> what to request; redaction; safe names
 *   aws.c    AWS credentials, region and endpoint
 *   fsutil.c directories, atomic writes, hashing
 *   lock.c   download locks with stale-lock recovery
 *   http.c   libcurl requests (TLS, SigV4, timeouts, response headers)
 *   fetch.c  the fetch algorithm (cache lookup, resume, retries, fallback)
 *   cache.c  open/close, refs, list/info/verify/remove/gc/pins
 */
#ifndef MF_STORE_INTERNAL_H
#define MF_STORE_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "memfit/store.h"

/* ---- Sources (uri.c) --------------------------------------------------- */

enum mf_source_kind {
    MF_SOURCE_FILE = 0,
    MF_SOURCE_HTTP = 1,
    MF_SOURCE_S3 = 2,
    MF_SOURCE_HF = 3,
};

/* Settings a source URI is resolved with (from the configuration, or set by tests). */
struct mf_source_env {
    const char *hf_endpoint; /* HF_ENDPOINT or NULL (https://huggingface.co) */
    const char *aws_region;  /* AWS_REGION / AWS_DEFAULT_REGION or NULL (us-east-1) */
    const char *s3_endpoint; /* AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL or NULL (AWS) */
};

struct mf_source {
    enum mf_source_kind kind;
    char *uri;     /* the source as given */
    char *url;     /* FILE: the local path; otherwise the http(s) URL requested */
    char *display; /* the source as shown in messages (redacted) */
    char *region;  /* S3: the signing region */
};

/* Reads the settings above through memfit_config_get(). */
void mf_source_env_from_config(struct mf_source_env *out);

/*
 * Parses a source URI (see memfit/store.h). E_RANGE naming the (redacted)
 * source for an unknown scheme, an empty or unsafe path, a bad bucket name,
 * control characters; E_NOMEM. `out` is written only on success.
 */
enum memfit_status mf_source_parse(const char *uri, const struct mf_source_env *env,
                                   struct mf_source *out);
void mf_source_clear(struct mf_source *src);

/*
 * Percent-encodes `text` (RFC 3986 unreserved characters kept, and '/' when
 * keep_slash), as S3 SigV4 and the Hub expect. NULL on E_NOMEM.
 */
char *mf_percent_encode(const char *text, bool keep_slash);

/*
 * A copy of `text` with every URL's user:password@ and the values of
 * secret-bearing query parameters (X-Amz-Signature, X-Amz-Credential,
 * X-Amz-Security-Token, Signature, token, sig, ...) replaced by "REDACTED".
 * NULL on E_NOMEM.
 */
char *mf_redact(const char *text);

/* Same, into a fixed buffer (truncated); for messages on paths that must not fail. */
void mf_redact_into(const char *text, char *buf, size_t size);

/*
 * True when `rel` is a safe relative path inside a directory: not empty,
 * not absolute, no "." or ".." component, no empty component, no NUL or
 * control character, at most 1024 bytes.
 */
bool mf_path_is_safe(const char *rel);

/*
 * The file name of the ref of `name`: its characters outside [A-Za-z0-9._-]
 * turned into '_', cut to 96, then '-' and 16 hex digits of its SHA-256 so
 * different names never share a file. Never starts with '.'. NULL on E_NOMEM.
 */
char *mf_ref_filename(const char *name);

/* True when `hex` is exactly 64 hex digits (either case). */
bool mf_is_sha256_hex(const char *hex);

/* ---- AWS (aws.c) ------------------------------------------------------- */

struct mf_aws_credentials {
    char *access_key;
    char *secret_key;
    char *session_token; /* or NULL */
};

/*
 * Looks up `key` in `section` of an INI text (credentials file syntax:
 * [section], key = value, '#' and ';' comments, surrounding spaces trimmed).
 * *out is a new string. E_NOT_FOUND when absent; E_FORMAT for a line longer
 * than 4096 bytes or a NUL byte; E_NOMEM.
 */
enum memfit_status mf_ini_get(const char *text, size_t len, const char *section, const char *key,
                              char **out);

/*
 * Credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and
 * AWS_SESSION_TOKEN), else from the shared credentials file
 * (AWS_SHARED_CREDENTIALS_FILE, default ~/.aws/credentials) section
 * AWS_PROFILE (default "default"). None found: MEMFIT_OK with all fields
 * NULL (anonymous requests). E_FORMAT for a malformed file, E_NOMEM.
 */
enum memfit_status mf_aws_credentials_load(struct mf_aws_credentials *out);

/* Wipes and frees the secrets. */
void mf_aws_credentials_clear(struct mf_aws_credentials *creds);

/* ---- Files and hashing (fsutil.c) -------------------------------------- */

/* Streaming SHA-256 (OpenSSL EVP). */
struct mf_sha256 {
    void *ctx; /* EVP_MD_CTX */
    uint64_t n_bytes;
};
enum memfit_status mf_sha256_init(struct mf_sha256 *h);
void mf_sha256_update(struct mf_sha256 *h, const void *data, size_t len);
/* Writes 64 hex digits and a NUL; the context can be init'ed again after. */
void mf_sha256_final(struct mf_sha256 *h, char hex[MEMFIT_SHA256_HEX_LEN + 1]);
void mf_sha256_free(struct mf_sha256 *h);
/* Digest of a string (for names and partial-download keys). */
enum memfit_status mf_sha256_string(const char *text, char hex[MEMFIT_SHA256_HEX_LEN + 1]);

/*
 * SHA-256 on a second thread (hasher.c): mf_hasher_feed() copies into a
 * ring of ring_bytes and returns; the thread hashes. Drain before reading or
 * resetting `sha` (no feed may run meanwhile). Falls back to inline hashing
 * when no thread can be started. Start: E_NOMEM. Stop accepts a stopped one.
 */
struct mf_hasher {
    struct mf_sha256 sha;
    unsigned char *ring;
    size_t cap;
    uint64_t head, tail; /* bytes fed / hashed, ever */
    bool threaded, stop;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv_data, cv_space;
};
enum memfit_status mf_hasher_start(struct mf_hasher *h, size_t ring_bytes);
void mf_hasher_feed(struct mf_hasher *h, const void *data, size_t len);
void mf_hasher_drain(struct mf_hasher *h);
void mf_hasher_stop(struct mf_hasher *h);

/*
 * Feeds the first `len` bytes of `fd` (from offset 0) into `h`; E_IO naming
 * `path` on a read error or a file shorter than `len`. Checks *cancel.
 */
enum memfit_status mf_sha256_fd(struct mf_sha256 *h, int fd, uint64_t len, const char *path,
                                const int *cancel);

/* mkdir -p with mode 0755; E_IO naming the directory. */
enum memfit_status mf_mkdirs(const char *path);

/* fsync of a directory, so a rename or unlink in it is durable. */
enum memfit_status mf_fsync_dir(const char *dir);

/*
 * Writes `len` bytes to `dir`/`name` atomically: a temp file in the same
 * directory, fsync, rename, fsync of the directory. E_IO / E_NOSPACE naming
 * the file; no temp file is left behind on failure.
 */
enum memfit_status mf_write_atomic(const char *dir, const char *name, const void *data, size_t len);

/*
 * Reads a whole small file (at most max_bytes) into a new NUL-terminated
 * string. E_NOT_FOUND when missing, E_RANGE when larger, E_IO, E_NOMEM.
 */
enum memfit_status mf_read_small_file(const char *path, size_t max_bytes, char **out,
                                      size_t *out_len);

/* This machine's host name (cached; "localhost" when unknown). */
const char *mf_hostname(void);

/* Start time of a process (clock ticks since boot, /proc/PID/stat field 22);
 * 0 when unknown. */
uint64_t mf_process_start_ticks(pid_t pid);

/* True when `pid` on this host is certainly gone (kill(pid, 0) says ESRCH). */
bool mf_pid_is_dead(pid_t pid);

/* A unique temp file name "dir/.tmp.<pid>.<n>.<tag>" (new string, NULL on E_NOMEM). */
char *mf_temp_path(const char *dir, const char *tag);

/* Sleeps `ms` milliseconds in small steps; false when *cancel was set meanwhile. */
bool mf_sleep_cancellable(unsigned ms, const int *cancel);

/* True when *cancel is set (read atomically); NULL means never. */
bool mf_cancelled(const int *cancel);

/* ---- Locks (lock.c) ---------------------------------------------------- */

/*
 * A download lock: `path` created with O_CREAT|O_EXCL and holding
 * "pid=<pid> host=<host> start=<ticks> created=<ns>", plus flock(LOCK_EX)
 * on it as a second signal where flock works. The holder touches the file
 * (heartbeat) while it makes progress.
 */
struct mf_lock {
    char *path;
    int fd;
    dev_t dev;
    ino_t ino;
    uint64_t last_beat_ns;
};

struct mf_lock_params {
    unsigned wait_timeout_ms; /* give up waiting with E_TIMEOUT after this */
    unsigned stale_ms;        /* no heartbeat this long: stale */
    unsigned poll_ms;         /* how often a waiter looks again (default 100 when 0) */
    const int *cancel;
};

/* What a lock file says about its holder. */
struct mf_lock_owner {
    pid_t pid;
    uint64_t start_ticks;
    uint64_t created_ns;
    char host[256];
};

/* Parses a lock file's text; false when malformed (then treated as stale by age only). */
bool mf_lock_parse(const char *text, struct mf_lock_owner *out);

/*
 * Takes the lock, waiting while a live holder has it and breaking a stale
 * one (holder on this host gone or restarted, or no heartbeat for
 * stale_ms where flock does not show it held). *waited tells whether
 * another holder was seen (the caller then looks for its result first).
 * E_TIMEOUT naming the holder, E_CANCELLED, E_IO, E_NOMEM.
 */
enum memfit_status mf_lock_acquire(const char *path, const struct mf_lock_params *params,
                                   struct mf_lock *out, bool *waited);

/*
 * Heartbeat: touches the lock file (at most once a second). E_BUSY when the
 * lock file is no longer ours (another process judged it stale).
 */
enum memfit_status mf_lock_heartbeat(struct mf_lock *lock);

/* Removes the lock file if it is still ours and closes it; accepts an unheld lock. */
void mf_lock_release(struct mf_lock *lock);

/*
 * True when the lock at `path` is stale by the rules above (exposed for
 * tests). A missing file is not stale.
 */
bool mf_lock_is_stale(const char *path, unsigned stale_ms);

/* ---- HTTP (http.c) ----------------------------------------------------- */

struct mf_http_params {
    unsigned connect_timeout_ms;
    unsigned stall_timeout_s;
    unsigned stall_min_bytes_per_s;
    const char *ca_bundle;         /* or NULL */
    uint64_t max_recv_bytes_per_s; /* 0: no cap */
};

/* What the final response's headers said. */
struct mf_http_meta {
    long status;
    uint64_t content_length; /* MEMFIT_STORE_SIZE_UNKNOWN when absent */
    bool has_content_range;
    uint64_t range_start, range_end, range_total; /* total UNKNOWN for "*" */
    uint64_t linked_size;                         /* X-Linked-Size (Hub), or UNKNOWN */
    char etag[256];
    char last_modified[128];
};

/* One request: a configured easy handle and its header list. */
struct mf_http_request {
    void *curl; /* CURL */
    void *headers;
    struct mf_http_meta meta;
    char errbuf[256];
};

/* Initialises libcurl once for the process (thread-safe). */
enum memfit_status mf_http_global_init(void);

/*
 * Prepares a GET (or HEAD with `head`) of `src` with TLS verification, the
 * CA bundle, timeouts, redirects, SigV4 for S3 with credentials, a bearer
 * token for the Hub (HF_TOKEN), `range_from` (MEMFIT_STORE_SIZE_UNKNOWN for
 * none; a one-byte range when range_one) and If-Range `if_range` (or NULL).
 * Header parsing fills req->meta. E_NOMEM, E_NETWORK.
 */
enum memfit_status mf_http_request_init(struct mf_http_request *req, const struct mf_source *src,
                                        const struct mf_aws_credentials *creds,
                                        const struct mf_http_params *params, bool head,
                                        uint64_t range_from, bool range_one, const char *if_range);

/* Frees the handle and wipes the copy of the credentials. */
void mf_http_request_cleanup(struct mf_http_request *req);

/*
 * Maps a finished transfer to a status and message naming `display`:
 * HTTP 404/410 -> E_NOT_FOUND, 401/403 -> E_PERMISSION, timeouts ->
 * E_TIMEOUT, connection failures and 408/429/5xx -> E_NETWORK. *retryable
 * tells whether trying the same source again may help.
 */
enum memfit_status mf_http_result(struct mf_http_request *req, int curl_code, const char *display,
                                  bool *retryable);

/* ---- Requests (fetch.c) ------------------------------------------------ */

/* Delay before retry `attempt` (1-based): exponential from backoff_initial_ms,
 * capped at backoff_max_ms, with jitter down to half. */
unsigned mf_store_backoff_ms(const struct memfit_store_options *o, unsigned attempt);

/* The HTTP settings of a store's requests (timeouts, CA bundle). */
struct mf_http_params mf_store_http_params(const memfit_store *store);

/* ---- The store handle and its refs (cache.c) ---------------------------- */

struct memfit_store {
    char *dir;        /* the cache root, resolved with realpath (matched against /proc/PID/maps) */
    char *blobs;      /* dir/blobs/sha256 */
    char *refs;       /* dir/refs */
    char *partial;    /* dir/partial */
    char *quarantine; /* dir/quarantine */
    char *pins;       /* dir/pins */
    char *ca_bundle;  /* or NULL */
    struct memfit_store_options opts; /* resolved: offline 0/1, max_cache_bytes */
};

/* A ref file: "key value" lines (memfit-ref 1, name, digest, source, size, etag, last_used). */
struct mf_ref {
    char *name;   /* redacted */
    char *source; /* redacted, or NULL */
    char *etag;   /* or NULL */
    char digest[MEMFIT_SHA256_HEX_LEN + 1];
    uint64_t size_bytes;
    uint64_t last_used_ns;
};

/* Parses a ref file's text. E_FORMAT naming `what` when malformed, E_NOMEM. */
enum memfit_status mf_ref_parse(const char *text, const char *what, struct mf_ref *out);

/* Reads the ref of `name` (redacted before lookup). E_NOT_FOUND, E_FORMAT, E_NOMEM. */
enum memfit_status mf_ref_read(const memfit_store *store, const char *name, struct mf_ref *out);

/* Writes (atomically replaces) the ref `ref->name`. */
enum memfit_status mf_ref_write(const memfit_store *store, const struct mf_ref *ref);

void mf_ref_clear(struct mf_ref *ref);

/* "blobs/sha256/<hex>" under the store (new string, NULL on E_NOMEM). */
char *mf_blob_path(const memfit_store *store, const char *hex);

/* True when the blob exists as a regular file; its size in *size (may be NULL). */
bool mf_blob_exists(const memfit_store *store, const char *hex, uint64_t *size);

/*
 * gc with one digest (or NULL) that must not be evicted, for the automatic
 * run after a fetch; `clear_quarantine` also empties quarantine/ (memfit_store_gc).
 */
enum memfit_status mf_store_gc(memfit_store *store, uint64_t max_bytes, const char *protect,
                               bool clear_quarantine, struct memfit_store_gc_result *out);

/*
 * Moves the file at `path` (content sha256 `hex`, from `origin` or NULL)
 * into quarantine/ and deletes the oldest quarantined files until the bound
 * (opts.max_quarantine_files / _bytes) holds again, each logged at INFO. A
 * file larger than the byte bound (or any, when the bound is 0) is deleted
 * instead, logged at WARN. *kept (may be NULL) is the new path, or NULL when
 * the file was not kept. On failure the file at `path` is deleted, never left
 * behind. E_IO, E_NOMEM.
 */
enum memfit_status mf_quarantine_add(const memfit_store *store, const char *path, const char *hex,
                                     const char *origin, char **kept);

#endif

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
    const char *aws_region;  /* a fixed region or NULL (us-east-1) */
    const char *s3_endpoint; /* a fixed S3 endpoint or NULL (AWS) */
    /* Instead of the two above, the environment's and the AWS config file's
     * (mf_aws_region, mf_aws_endpoint), read when an s3:// source is parsed. */
    bool aws_from_files;
};

struct mf_source {
    enum mf_source_kind kind;
    char *uri;     /* the source as given */
    char *url;     /* FILE: the local path; otherwise the http(s) URL requested */
    char *display; /* the source as shown in messages (redacted) */
    char *region;  /* S3: the signing region */
};

/* HF_ENDPOINT through memfit_config_get(), and aws_from_files. */
void mf_source_env_from_config(struct mf_source_env *out);

/*
 * Parses a source URI (see memfit/store.h). E_RANGE naming the (redacted)
 * source for an unknown scheme, an empty or unsafe path, a bad bucket name,
 * control characters; E_NOMEM. `out` is written only on success.
 */
enum memfit_status mf_source_parse(const char *uri, const struct mf_source_env *env,
                                   struct mf_source *out);
void mf_source_clear(struct mf_source *src);

/* True when `url` is http(s)://HOST[:PORT][/PATH] with no query, fragment,
 * user info, space or control character (an endpoint setting). */
bool mf_endpoint_is_valid(const char *url);

/* True when `region` is 1 to 64 of a-z 0-9 '-'. */
bool mf_region_is_valid(const char *region);

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

/* ---- AWS (aws.c, aws_remote.c) ------------------------------------------ */

struct mf_aws_credentials {
    char *access_key;
    char *secret_key;
    char *session_token; /* or NULL */
    const char *origin;  /* where they came from, for messages (static text) */
};

/*
 * Looks up `key` in `section` of an INI text (the AWS files' syntax:
 * [section], key = value, '#' and ';' comments, surrounding spaces trimmed;
 * a line indented deeper than the property above it continues that
 * property). *out is a new string. E_NOT_FOUND when absent; E_FORMAT for a
 * line longer than 4096 bytes, a NUL byte or an unterminated '['; E_NOMEM.
 */
enum memfit_status mf_ini_get(const char *text, size_t len, const char *section, const char *key,
                              char **out);

/* The same for a nested sub-property: "parent =" followed by indented
 * "key = value" lines (the AWS config file's "s3 =\n  endpoint_url = ..."). */
enum memfit_status mf_ini_get_nested(const char *text, size_t len, const char *section,
                                     const char *parent, const char *key, char **out);

/* The AWS profile in use and the text of its two files (NULL when absent). */
struct mf_aws_profile {
    char *name;             /* AWS_PROFILE, else "default" */
    char *config_section;   /* "default" or "profile NAME" */
    char *credentials_path; /* AWS_SHARED_CREDENTIALS_FILE, else ~/.aws/credentials; or NULL */
    char *config_path;      /* AWS_CONFIG_FILE, else ~/.aws/config; or NULL */
    char *credentials_text;
    size_t credentials_len;
    char *config_text;
    size_t config_len;
};

/* Reads both files (a missing one is no error). E_IO, E_RANGE (over 1 MiB), E_NOMEM. */
enum memfit_status mf_aws_profile_open(struct mf_aws_profile *out);
void mf_aws_profile_close(struct mf_aws_profile *p);

/* A setting of the profile's section of the config file ([default] or
 * [profile NAME]), nested under `parent` unless NULL. *out is new, or NULL
 * when absent. E_FORMAT naming the file, E_NOMEM. */
enum memfit_status mf_aws_config_get(const struct mf_aws_profile *p, const char *parent,
                                     const char *key, char **out);

/*
 * The region: AWS_REGION, AWS_DEFAULT_REGION, then `region` in the config
 * file. *out is new, or NULL when none is set; *origin names where it came
 * from (static text).
 */
enum memfit_status mf_aws_region(const struct mf_aws_profile *p, char **out, const char **origin);

/*
 * The endpoint of `service` ("s3", "sts"): AWS_ENDPOINT_URL_<SERVICE>,
 * AWS_ENDPOINT_URL, then the config file (the [services NAME] section the
 * profile's `services` names, a nested "<service> =\n  endpoint_url" in the
 * profile, the profile's `endpoint_url`); none when
 * AWS_IGNORE_CONFIGURED_ENDPOINT_URLS (or the config's
 * ignore_configured_endpoint_urls) is true. *out new or NULL, *origin as above.
 */
enum memfit_status mf_aws_endpoint(const struct mf_aws_profile *p, const char *service, char **out,
                                   const char **origin);

/*
 * Credentials, from the first source that has them:
 *   1. AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN);
 *   2. web identity: AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN (STS);
 *   3. the shared credentials file, section AWS_PROFILE (default "default");
 *   4. the config file, [default] or [profile NAME];
 *   5. the container endpoint (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI / _FULL_URI).
 * None found: MEMFIT_OK with all fields NULL (anonymous requests). A source
 * that is configured but fails fails the call, naming the source and why:
 * E_FORMAT (malformed file or answer), E_PERMISSION (refused), E_NETWORK,
 * E_TIMEOUT, E_RANGE (a bad setting), E_NOMEM. Thread-safe.
 */
enum memfit_status mf_aws_credentials_load(struct mf_aws_credentials *out);

/* Wipes and frees the secrets. */
void mf_aws_credentials_clear(struct mf_aws_credentials *creds);

/* A copy of `src` (which must hold a key pair). E_NOMEM. */
enum memfit_status mf_aws_credentials_copy(struct mf_aws_credentials *dst,
                                           const struct mf_aws_credentials *src);

/* Sources 2 and 5 above, through the cache below (aws_remote.c). */
enum memfit_status mf_aws_web_identity_load(struct mf_aws_credentials *out);
enum memfit_status mf_aws_container_load(struct mf_aws_credentials *out);

/*
 * "2024-05-01T12:00:00Z" (fraction of a second and a +HH:MM offset
 * allowed) to Unix seconds. False when malformed.
 */
bool mf_aws_parse_time(const char *text, size_t len, int64_t *out_s);

/*
 * The Credentials of an STS AssumeRoleWithWebIdentity answer: AccessKeyId,
 * SecretAccessKey, SessionToken and Expiration, each exactly once, with
 * XML's five entities decoded. E_FORMAT saying what is missing or wrong
 * (never quoting a secret), E_NOMEM. `out` is written only on success.
 */
enum memfit_status mf_aws_parse_sts_xml(const char *text, size_t len,
                                        struct mf_aws_credentials *out, int64_t *expires_s);

/*
 * A container endpoint's JSON: AccessKeyId, SecretAccessKey, Token
 * (optional), Expiration (optional: then INT64_MAX). E_FORMAT, E_NOMEM.
 */
enum memfit_status mf_aws_parse_container_json(const char *text, size_t len,
                                               struct mf_aws_credentials *out, int64_t *expires_s);

/*
 * What an error answer says, for the failure message: the Code and Message
 * of an STS answer (XML), the "code" and "message" of a container
 * endpoint's (JSON). Into buf (always NUL-terminated, truncated to size),
 * with control characters turned into spaces; "" when it says nothing.
 */
void mf_aws_sts_error_text(const char *text, size_t len, char *buf, size_t size);
void mf_aws_container_error_text(const char *text, size_t len, char *buf, size_t size);

/*
 * True when a container credentials URL may be used: https to any host, or
 * http to a loopback address (127.0.0.0/8, ::1, localhost) or the ECS and
 * EKS agents (169.254.170.2, 169.254.170.23, fd00:ec2::23).
 */
bool mf_aws_container_url_allowed(const char *url);

/* Temporary credentials are fetched again this long before they expire. */
#define MF_AWS_REFRESH_BEFORE_S 300

/* One provider of temporary credentials, for the cache. */
struct mf_aws_provider {
    const char *key; /* identifies the provider's settings: another key fetches again */
    enum memfit_status (*fetch)(void *ctx, struct mf_aws_credentials *out, int64_t *expires_s);
    void *ctx;
};

/*
 * Credentials of `p` from the process-wide cache, fetched when there are
 * none for p->key or they expire within MF_AWS_REFRESH_BEFORE_S of `now_s`.
 * A failed refresh while the cached ones are still valid for a minute keeps
 * them (logged at WARN). One fetch at a time; thread-safe.
 */
enum memfit_status mf_aws_cache_get(const struct mf_aws_provider *p, int64_t now_s,
                                    struct mf_aws_credentials *out);

/* Forgets the cached credentials (tests). */
void mf_aws_cache_reset(void);

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

/*
 * A secret token kept in a file (a Hub token, a web identity or container
 * authorization token): at most 64 KiB, trailing newline and blanks
 * stripped. E_FORMAT when empty or holding a control character (it goes
 * into a header), the file's errors otherwise; messages start with `what`
 * and never quote the token. *out is new (wipe it when done).
 */
enum memfit_status mf_read_token_file(const char *path, const char *what, char **out);

/* True when `token` has no control character or NUL in its `len` bytes. */
bool mf_token_is_clean(const char *token, size_t len);

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
 * token for the Hub (mf_hf_token_load), `range_from` (MEMFIT_STORE_SIZE_UNKNOWN for
 * none; a one-byte range when range_one) and If-Range `if_range` (or NULL).
 * Header parsing fills req->meta. E_NOMEM, E_NETWORK; for the Hub, the
 * errors of mf_hf_token_load.
 */
enum memfit_status mf_http_request_init(struct mf_http_request *req, const struct mf_source *src,
                                        const struct mf_aws_credentials *creds,
                                        const struct mf_http_params *params, bool head,
                                        uint64_t range_from, bool range_one, const char *if_range);

/*
 * The Hugging Face Hub token: HF_TOKEN, else the file of `huggingface-cli
 * login` (HF_TOKEN_PATH, else $HF_HOME/token, HF_HOME defaulting to
 * $XDG_CACHE_HOME/huggingface or ~/.cache/huggingface). *out is new (wipe
 * it), or NULL when there is none. E_FORMAT for a token with a control
 * character or an empty file, the file's read errors, E_NOMEM.
 */
enum memfit_status mf_hf_token_load(char **out);

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

/*
 * memfit store: model files from local paths, HTTP(S), S3 (or any
 * S3-compatible store) and the Hugging Face Hub, fetched into one verified,
 * content-addressed local cache.
 *
 * Sources, tried in the order given, each with retries:
 *   /abs/path, rel/path, file:///abs/path      a local file (copied and hashed)
 *   http://host/path, https://host/path        TLS verified; extra CA via MEMFIT_CA_BUNDLE
 *   s3://bucket/key                            SigV4 (AWS_* variables or ~/.aws/credentials)
 *   hf://org/repo/path/in/repo[@revision]      .../org/repo/resolve/REVISION/path (HF_TOKEN)
 *
 * The cache directory (MEMFIT_CACHE_DIR, alias LOCAL_CACHE_DIR; default
 * $XDG_CACHE_HOME/memfit or ~/.cache/memfit) holds:
 *   blobs/sha256/<hex>   the files, named by their SHA-256, read-only
 *   refs/<name>          name or source URI -> digest, source, size, etag, last use
 *   partial/<hash>       interrupted downloads, resumed with Range + If-Range
 *   quarantine/          files whose digest did not match what was expected, kept
 *                        for diagnosis within a bound (4 files and 1 GiB by
 *                        default; the oldest go first), emptied by gc
 *   pins/                blobs a running process holds (never evicted)
 * Every change is a temp file + fsync + rename, so a crash leaves the old
 * state or the new one. Processes and threads that pull the same file
 * download it once (lock files with stale-lock recovery).
 *
 * Settings read from the configuration (environment or .env):
 *   MEMFIT_CACHE_MAX_GB        cache size limit (a plain number is GB = 1e9 bytes; or "500MB")
 *   MEMFIT_OFFLINE             1: the cache only (also HF_HUB_OFFLINE)
 *   MEMFIT_CA_BUNDLE           an extra CA file for TLS
 *   MEMFIT_DOWNLOAD_MAX_RATE   bandwidth cap per download in bytes per second, with
 *                              memfit_parse_size units ("2MB", "512KiB"); unset or 0: none
 *   MEMFIT_QUARANTINE_MAX_FILES  how many mismatched files quarantine/ keeps (default 4;
 *                              0: none)
 *   MEMFIT_QUARANTINE_MAX_SIZE   and how many bytes (memfit_parse_size units; default the
 *                              larger of 1 GiB and a tenth of the cache limit; 0: none)
 *
 * Progress goes to the log (INFO), TTY or not (docs/store.md): a start
 * line, a progress line at least every 5 s and at each tenth of the file,
 * and a done line with size, time and rate, e.g.
 *   fetch dino.gguf from s3://bucket/dino.gguf: 40% (40.0 MiB of 100 MiB, 12.3 MiB/s)
 * A failed attempt is logged (WARN) with its cause, and so is the move to
 * the next source, which the line names.
 *
 * Credentials never appear in messages, logs or progress output; signed
 * query strings (X-Amz-Signature, ...) are redacted wherever a URL is shown.
 */
#ifndef MEMFIT_STORE_H
#define MEMFIT_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "memfit/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A size the server did not announce. */
#define MEMFIT_STORE_SIZE_UNKNOWN UINT64_MAX

/* Length of a SHA-256 digest in hex, without the terminating NUL. */
#define MEMFIT_SHA256_HEX_LEN 64

/*
 * Options of a store. Get the defaults with memfit_store_options_default()
 * and change what you need; new fields are appended. A zero or NULL field
 * means "from the configuration" where the comment says so.
 */
struct memfit_store_options {
    const char *cache_dir;          /* NULL: MEMFIT_CACHE_DIR, LOCAL_CACHE_DIR, XDG default */
    uint64_t max_cache_bytes;       /* 0: MEMFIT_CACHE_MAX_GB (GB = 1e9 bytes), else unlimited */
    int offline;                    /* -1: MEMFIT_OFFLINE / HF_HUB_OFFLINE; 0 online; 1 offline */
    const char *ca_bundle;          /* NULL: MEMFIT_CA_BUNDLE; extra CA file for TLS */
    unsigned max_attempts;          /* per source (default 4) */
    unsigned backoff_initial_ms;    /* first retry delay (default 500), doubled each time */
    unsigned backoff_max_ms;        /* delay cap (default 8000); jitter takes it down to 50% */
    unsigned connect_timeout_ms;    /* TCP+TLS connect (default 15000) */
    unsigned stall_timeout_s;       /* abort when slower than stall_min_bytes_per_s this long */
    unsigned stall_min_bytes_per_s; /* (defaults 30 s, 1024 B/s) */
    unsigned lock_wait_timeout_ms;  /* waiting for another downloader (default 3600000) */
    unsigned stale_lock_ms; /* a lock without progress this long is stale (default 120000) */
    uint64_t max_download_bytes_per_s; /* 0: MEMFIT_DOWNLOAD_MAX_RATE, else unlimited */
    /*
     * The quarantine's bound. A mismatched download is evidence worth a look
     * (what did the mirror send?), but one full copy per attempt of a
     * multi-GB model would fill the disk: the last few say as much as all
     * of them. When a file enters and the bound is exceeded, the oldest are
     * deleted; a file larger than the byte bound is not kept at all.
     */
    unsigned max_quarantine_files; /* 0: MEMFIT_QUARANTINE_MAX_FILES, else 4 */
    uint64_t max_quarantine_bytes; /* 0: MEMFIT_QUARANTINE_MAX_SIZE, else the larger of 1 GiB
                                      and max_cache_bytes / 10 */
};

/* The defaults described above. */
MEMFIT_API struct memfit_store_options memfit_store_options_default(void);

/* A cache directory and its settings. Thread-safe: several threads may fetch
 * through one handle at once (each call uses its own connection). */
typedef struct memfit_store memfit_store;

/*
 * Opens (and creates, with its subdirectories) the cache directory. `opts`
 * may be NULL for the defaults. E_IO naming the directory when it cannot be
 * created, E_RANGE for a bad MEMFIT_CACHE_MAX_GB or MEMFIT_OFFLINE value,
 * E_NOMEM. Close with memfit_store_close().
 */
MEMFIT_API enum memfit_status memfit_store_open(const struct memfit_store_options *opts,
                                                memfit_store **out);

/* Closes the handle (the cache stays on disk); accepts NULL. */
MEMFIT_API void memfit_store_close(memfit_store *store);

/* The cache directory in use; valid until memfit_store_close(). */
MEMFIT_API const char *memfit_store_dir(const memfit_store *store);

/*
 * The SHA-256 of the local file at `path` as 64 lowercase hex digits and a
 * NUL (read once, its page cache dropped after). E_NOT_FOUND, E_IO, E_NOMEM.
 */
MEMFIT_API enum memfit_status memfit_store_digest_file(const char *path,
                                                       char out_hex[MEMFIT_SHA256_HEX_LEN + 1]);

/*
 * SHA-256 of the concatenation of n byte ranges (parts[i], lens[i]) into
 * out_hex (64 hex digits and a NUL): content keys such as an image's
 * (its size, then its pixels). E_UNSUPPORTED when libcrypto is missing.
 */
MEMFIT_API enum memfit_status memfit_sha256_parts(const void *const *parts, const size_t *lens,
                                                  size_t n,
                                                  char out_hex[MEMFIT_SHA256_HEX_LEN + 1]);

/*
 * Progress of a fetch: bytes written so far, the total (or
 * MEMFIT_STORE_SIZE_UNKNOWN) and the current rate in bytes per second.
 * Called at most about ten times a second, and once at the end. Return
 * non-zero to cancel the fetch (it then fails with E_CANCELLED).
 */
typedef int (*memfit_fetch_progress)(uint64_t done_bytes, uint64_t total_bytes, double bytes_per_s,
                                     void *user);

struct memfit_fetch_options {
    const char *sha256;             /* expected digest (64 hex digits), or NULL */
    const char *name;               /* also record the result under this ref name, or NULL */
    memfit_fetch_progress progress; /* or NULL */
    void *progress_user;
    /* NULL, or read atomically while fetching: MEMFIT_FETCH_CANCEL (any
     * non-zero value) cancels, keeping what was downloaded to resume it later
     * (Ctrl-C of a pull); MEMFIT_FETCH_CANCEL_DISCARD cancels and deletes it
     * (the model it was for is dropped). */
    const int *cancel;
};

#define MEMFIT_FETCH_CANCEL         1
#define MEMFIT_FETCH_CANCEL_DISCARD 2

/*
 * Makes a local, verified copy of one file and returns its path in the
 * cache (*out_path, free with memfit_free). `sources` are tried in order;
 * each is retried with exponential back-off on network errors, timeouts and
 * 5xx answers, and skipped on 4xx answers or a digest mismatch (the bad file
 * goes to quarantine/). A file already cached under the expected digest,
 * the name or the source is returned without any network call. Offline,
 * only the cache is consulted (E_NOT_FOUND when the file is not there).
 * `opts` may be NULL.
 *
 * Failure: E_NOT_FOUND, E_NETWORK, E_TIMEOUT, E_CHECKSUM (from the last
 * source tried), E_NOSPACE (an interrupted download is kept and resumed next
 * time), E_CANCELLED, E_BUSY/E_TIMEOUT (another process holds the download
 * longer than lock_wait_timeout_ms), E_RANGE (a malformed source or name),
 * E_NOMEM. The message names the (redacted) source and the cause.
 */
MEMFIT_API enum memfit_status memfit_store_fetch(memfit_store *store, const char *const *sources,
                                                 size_t n_sources,
                                                 const struct memfit_fetch_options *opts,
                                                 char **out_path);

/* What memfit_store_fetch_detailed() found; clear it with memfit_fetch_result_clear(). */
struct memfit_fetch_result {
    char *path;       /* the file in the cache */
    char *source;     /* the source that gave it (redacted), NULL when found by name or digest */
    int source_index; /* that source's index in `sources`, or -1 */
    char digest[MEMFIT_SHA256_HEX_LEN + 1];
    uint64_t size_bytes;
    bool from_cache; /* nothing was downloaded: the file was in the cache already */
};

/*
 * memfit_store_fetch() that also says what it found: the digest, the size,
 * the source used and whether the file came from the cache. *out is written
 * only on success. The same failures.
 */
MEMFIT_API enum memfit_status memfit_store_fetch_detailed(memfit_store *store,
                                                          const char *const *sources,
                                                          size_t n_sources,
                                                          const struct memfit_fetch_options *opts,
                                                          struct memfit_fetch_result *out);

/* Frees what a memfit_fetch_result holds and zeroes it; accepts NULL. */
MEMFIT_API void memfit_fetch_result_clear(struct memfit_fetch_result *r);

/*
 * The size of a file without downloading it: a local file's size; the
 * cached copy's when the source was fetched before; otherwise HEAD, or a
 * one-byte Range request when HEAD gives none (offline: E_NOT_FOUND).
 * E_NOT_FOUND, E_PERMISSION, E_NETWORK, E_TIMEOUT, E_UNSUPPORTED (the
 * server does not say), E_RANGE (malformed source).
 */
MEMFIT_API enum memfit_status memfit_store_head(memfit_store *store, const char *source,
                                                uint64_t *out_size);

/*
 * Reads `length` bytes at byte `offset` of one source's file into `buf`
 * without fetching the file: a pread of a local file or of the cached copy
 * (when the source was fetched before), otherwise one HTTP Range request
 * (`bytes=OFFSET-END`; SigV4-signed for S3, HF_TOKEN for the Hub, retried
 * like a fetch). *out_got is the number of bytes read: less than `length`
 * only at the end of the file. *out_file_size (may be NULL) is the file's
 * size as the source reports it (Content-Range), or
 * MEMFIT_STORE_SIZE_UNKNOWN. Used to read a model file's header before
 * deciding to download it.
 *
 * Failure: E_UNSUPPORTED when the server ignores Range (it answered 200
 * with the whole body: the transfer is stopped after the first bytes, the
 * file is not downloaded) so the caller can fall back; E_RANGE when
 * `offset` is at or beyond the end of the file or the source is malformed;
 * E_NOT_FOUND (offline and not cached, or absent), E_PERMISSION,
 * E_NETWORK, E_TIMEOUT, E_IO, E_NOMEM. Nothing is written on failure.
 */
MEMFIT_API enum memfit_status memfit_store_read_range(memfit_store *store, const char *source,
                                                      uint64_t offset, size_t length, void *buf,
                                                      size_t *out_got, uint64_t *out_file_size);

/*
 * Like memfit_store_read_range() for the LAST `length` bytes of the file (a
 * suffix range, `bytes=-LENGTH`: a zip's central directory sits there);
 * the whole file when it is shorter. *out_offset (may be NULL) is the file
 * offset of buf[0]. Same failures (E_RANGE for an empty file).
 */
MEMFIT_API enum memfit_status memfit_store_read_tail(memfit_store *store, const char *source,
                                                     size_t length, void *buf, size_t *out_got,
                                                     uint64_t *out_offset, uint64_t *out_file_size);

/* One cached file as listed by memfit_store_list() or memfit_store_info(). */
struct memfit_store_entry {
    char *name;   /* the ref name or source URI (redacted); NULL for a blob without ref */
    char *source; /* the source it came from (redacted), or NULL */
    char *path;   /* the blob's path */
    char digest[MEMFIT_SHA256_HEX_LEN + 1];
    uint64_t size_bytes;
    uint64_t last_used_ns; /* wall clock, since the Unix epoch */
    bool in_use;           /* pinned or mapped by a running process */
};

/*
 * Lists every ref, and every blob no ref points to, oldest use first.
 * *out is an array of *n entries; free it with memfit_store_entries_free().
 * E_IO, E_NOMEM.
 */
MEMFIT_API enum memfit_status memfit_store_list(memfit_store *store,
                                                struct memfit_store_entry **out, size_t *n);

/* Frees what memfit_store_list() returned; accepts NULL. */
MEMFIT_API void memfit_store_entries_free(struct memfit_store_entry *entries, size_t n);

/*
 * The entry of a ref name, a source URI or a digest (a unique prefix of at
 * least 8 hex digits is enough). Free the strings with
 * memfit_store_entry_clear(). E_NOT_FOUND, E_RANGE (ambiguous prefix).
 */
MEMFIT_API enum memfit_status memfit_store_info(memfit_store *store, const char *name,
                                                struct memfit_store_entry *out);

/* Frees the strings of one entry and zeroes it. */
MEMFIT_API void memfit_store_entry_clear(struct memfit_store_entry *entry);

struct memfit_store_verify_result {
    size_t n_ok;
    size_t n_bad;     /* digest did not match the name: moved to quarantine/ */
    uint64_t n_bytes; /* read */
};

/*
 * Re-reads every blob and checks its SHA-256 against its name; a bad blob
 * is moved to quarantine/ and logged (WARN). E_CHECKSUM when any was bad
 * (the result is written then too), E_IO, E_NOMEM.
 */
MEMFIT_API enum memfit_status memfit_store_verify(memfit_store *store,
                                                  struct memfit_store_verify_result *out);

/*
 * Removes a ref (by name, source or digest) and its blob when no other ref
 * points to it. E_NOT_FOUND; E_BUSY when the blob is pinned or mapped by a
 * running process (nothing is removed then).
 */
MEMFIT_API enum memfit_status memfit_store_remove(memfit_store *store, const char *name);

struct memfit_store_gc_result {
    size_t n_removed;                  /* blobs evicted */
    uint64_t removed_bytes;            /* their size */
    size_t n_kept_in_use;              /* would have been evicted but are in use */
    uint64_t total_bytes;              /* what the cache holds afterwards */
    size_t n_quarantine_removed;       /* quarantined files deleted */
    uint64_t quarantine_removed_bytes; /* their size */
};

/*
 * Evicts least recently used blobs until the cache holds at most
 * `max_bytes` (0: the store's max_cache_bytes; if that is 0 too, evicts
 * nothing), never one that is pinned or mapped by a running process
 * (/proc/PID/maps). Also removes refs to missing blobs, dead processes'
 * pins and temp files, interrupted downloads older than a week, and every
 * quarantined file. `out` may be NULL. E_IO, E_NOMEM.
 */
MEMFIT_API enum memfit_status memfit_store_gc(memfit_store *store, uint64_t max_bytes,
                                              struct memfit_store_gc_result *out);

/* One file of quarantine/ as listed by memfit_store_quarantine_list(). */
struct memfit_store_quarantined {
    char *path;                             /* its path */
    char digest[MEMFIT_SHA256_HEX_LEN + 1]; /* the digest in its name ("" when none) */
    uint64_t size_bytes;
    uint64_t added_ns; /* wall clock when it entered quarantine, since the Unix epoch */
};

/*
 * Lists the quarantined files, oldest first, and the bound they are kept
 * within (*max_files, *max_bytes; either may be NULL). *out is an array of
 * *n entries; free it with memfit_store_quarantine_free(). E_IO, E_NOMEM.
 */
MEMFIT_API enum memfit_status memfit_store_quarantine_list(memfit_store *store,
                                                           struct memfit_store_quarantined **out,
                                                           size_t *n, unsigned *max_files,
                                                           uint64_t *max_bytes);

/* Frees what memfit_store_quarantine_list() returned; accepts NULL. */
MEMFIT_API void memfit_store_quarantine_free(struct memfit_store_quarantined *files, size_t n);

/*
 * Pins the blob at `path` (as returned by memfit_store_fetch) for this
 * process: gc and remove leave it alone until memfit_store_unpin() or the
 * process ends. E_NOT_FOUND when it is not a blob of this cache, E_IO.
 */
MEMFIT_API enum memfit_status memfit_store_pin(memfit_store *store, const char *path);

/* Drops this process's pin of `path`; a missing pin is not an error. */
MEMFIT_API enum memfit_status memfit_store_unpin(memfit_store *store, const char *path);

#ifdef __cplusplus
}
#endif

#endif

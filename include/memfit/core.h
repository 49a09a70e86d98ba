/*
 * memfit core: status codes and error messages, logging, configuration and
 * the small parsers (sizes, durations) every command shares.
 *
 * Errors: every fallible function returns an `enum memfit_status`. The
 * detailed message of the last failure on the calling thread is available
 * from memfit_last_error() until the next failing call on that thread.
 *
 * The library never prints, exits or aborts: it logs through a sink that the
 * program installs with memfit_log_set_sink().
 */
#ifndef MEMFIT_CORE_H
#define MEMFIT_CORE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MEMFIT_API __attribute__((visibility("default")))

#if defined(__GNUC__)
#define MEMFIT_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define MEMFIT_PRINTF(fmt, args)
#endif

/*
 * The status list: X(NAME, value, message). Values never change; new codes are
 * appended. MEMFIT_E_NOMEM is what every failed allocation returns.
 */
#define MEMFIT_STATUS_LIST(X)                                                                      \
    X(OK, 0, "success")                                                                            \
    X(E_NOMEM, 1, "out of memory")                                                                 \
    X(E_IO, 2, "input/output error")                                                               \
    X(E_FORMAT, 3, "malformed input")                                                              \
    X(E_MISUSE, 4, "library misuse")                                                               \
    X(E_NOT_FOUND, 5, "not found")                                                                 \
    X(E_UNSUPPORTED, 6, "not supported")                                                           \
    X(E_BUDGET, 7, "memory budget exceeded")                                                       \
    X(E_RANGE, 8, "value out of range")                                                            \
    X(E_NETWORK, 9, "network error")                                                               \
    X(E_CHECKSUM, 10, "checksum mismatch")                                                         \
    X(E_CANCELLED, 11, "cancelled")                                                                \
    X(E_TIMEOUT, 12, "timed out")                                                                  \
    X(E_BUSY, 13, "resource busy")                                                                 \
    X(E_PERMISSION, 14, "permission denied")                                                       \
    X(E_EXISTS, 15, "already exists")                                                              \
    X(E_NOSPACE, 16, "no space left on device")                                                    \
    X(E_INVALID, 17, "invalid argument")                                                           \
    X(E_TOO_LARGE, 18, "larger than the memory budget")

enum memfit_status {
#define MEMFIT_STATUS_ENUM(name, value, message) MEMFIT_##name = value,
    MEMFIT_STATUS_LIST(MEMFIT_STATUS_ENUM)
#undef MEMFIT_STATUS_ENUM
};

/* The version string, e.g. "0.1.0". */
MEMFIT_API const char *memfit_version(void);

/* The fixed message of a status ("out of memory"); never NULL. */
MEMFIT_API const char *memfit_status_message(enum memfit_status status);

/* The symbolic name of a status ("MEMFIT_E_NOMEM"); never NULL. */
MEMFIT_API const char *memfit_status_name(enum memfit_status status);

/*
 * The detailed message of the last failure on this thread, e.g.
 * "/proc/123/status: No such file or directory". Falls back to the status
 * message when no detail was recorded. Valid until the next failing call on
 * this thread; never NULL.
 */
MEMFIT_API const char *memfit_last_error(void);

/* Clears the thread's last error (memfit_last_error() then returns ""). */
MEMFIT_API void memfit_clear_error(void);

/*
 * Records a detailed message for `status` on this thread and returns
 * `status`, so a failing path can be written `return memfit_fail(...)`.
 * Programs may use it too, for their own errors.
 */
MEMFIT_API enum memfit_status memfit_fail(enum memfit_status status, const char *fmt, ...)
    MEMFIT_PRINTF(2, 3);

/* ---- Logging ----------------------------------------------------------- */

enum memfit_log_level {
    MEMFIT_LOG_ERROR = 0,
    MEMFIT_LOG_WARN = 1,
    MEMFIT_LOG_INFO = 2,
    MEMFIT_LOG_DEBUG = 3,
    MEMFIT_LOG_TRACE = 4,
};

/* Receives one formatted message (no trailing newline). Must be thread-safe. */
typedef void (*memfit_log_sink)(enum memfit_log_level level, const char *message, void *user);

/* Installs the sink (NULL: messages are dropped, the default). */
MEMFIT_API void memfit_log_set_sink(memfit_log_sink sink, void *user);

/* Messages above `level` are dropped before formatting. Default: WARN. */
MEMFIT_API void memfit_log_set_level(enum memfit_log_level level);
MEMFIT_API enum memfit_log_level memfit_log_get_level(void);

/* "error", "warn"/"warning", "info", "debug", "trace" (any case). */
MEMFIT_API enum memfit_status memfit_log_level_parse(const char *text, enum memfit_log_level *out);
MEMFIT_API const char *memfit_log_level_name(enum memfit_log_level level);

/*
 * Sets the level from MEMFIT_LOG_LEVEL (alias LOG_LEVEL) through the
 * configuration lookup; an unknown value is an E_RANGE error naming it.
 */
MEMFIT_API enum memfit_status memfit_log_level_from_config(void);

/* Formats and sends a message to the sink if `level` is enabled. */
MEMFIT_API void memfit_log(enum memfit_log_level level, const char *fmt, ...) MEMFIT_PRINTF(2, 3);

/* ---- Configuration ----------------------------------------------------- */

/*
 * Reads KEY=VALUE lines from a `.env` file (comments, blank lines, an
 * optional `export ` prefix and single or double quotes are understood) into
 * the process-wide configuration table, replacing what an earlier call
 * loaded. A missing file is not an error (the table is just emptied).
 * A malformed line is an E_FORMAT error naming the file and line; nothing
 * is replaced then.
 */
MEMFIT_API enum memfit_status memfit_config_load_dotenv(const char *path);

/*
 * Looks a setting up by its MEMFIT_* name: the environment first, then the
 * alias names existing deployments use (e.g. MAX_MEMORY_USAGE_MB for
 * MEMFIT_MAX_MEMORY_MB), then the `.env` table. Returns NULL when unset.
 * The pointer is valid until the next memfit_config_load_dotenv() or change
 * of the environment; copy it to keep it.
 */
MEMFIT_API const char *memfit_config_get(const char *name);

/* Where a setting was found. */
enum memfit_config_origin {
    MEMFIT_CONFIG_UNSET = 0,
    MEMFIT_CONFIG_ENVIRONMENT = 1,
    MEMFIT_CONFIG_DOTENV = 2, /* the table memfit_config_load_dotenv() read */
};

/*
 * memfit_config_get() that also says which name matched — `name` itself or
 * its alias (a static string) — in *found_name, and where, in *origin, so a
 * message can quote the setting as the user wrote it:
 * "MAX_MEMORY_USAGE_MB=512 (.env)". Both out-parameters are optional and
 * written only when a value is found. Same lifetime rule as memfit_config_get.
 */
MEMFIT_API const char *memfit_config_find(const char *name, const char **found_name,
                                          enum memfit_config_origin *origin);

/* "environment", ".env" or "unset", for messages. */
MEMFIT_API const char *memfit_config_origin_name(enum memfit_config_origin origin);

/* Frees the `.env` table (for leak-checked tests and clean shutdown). */
MEMFIT_API void memfit_config_reset(void);

/* ---- Parsers shared by the commands ------------------------------------ */

/*
 * Parses a byte size: a number with an optional unit B, KB, MB, GB, TB
 * (powers of 1000), KiB, MiB, GiB, TiB (powers of 1024) or K/M/G/T
 * (powers of 1024), case-insensitive, e.g. "512MiB", "1.5GB", "4096".
 * Fractions are allowed; negative, empty, overflowing or trailing-garbage
 * input is an E_RANGE error quoting the text.
 */
MEMFIT_API enum memfit_status memfit_parse_size(const char *text, uint64_t *out_bytes);

/*
 * Parses a duration in seconds, or with a unit ns, us, ms, s, m, h, d:
 * "0.1", "100ms", "5m". Result in nanoseconds. Errors as memfit_parse_size.
 */
MEMFIT_API enum memfit_status memfit_parse_duration(const char *text, uint64_t *out_ns);

/* Parses a percentage "80" or "80%" or "92.5" in [0, 100]. */
MEMFIT_API enum memfit_status memfit_parse_percent(const char *text, double *out_percent);

/* Parses a whole number in [min, max] with no trailing garbage. */
MEMFIT_API enum memfit_status memfit_parse_int(const char *text, long long min, long long max,
                                               long long *out);

/* Writes a human size ("1.5 GiB", "512 KiB", "37 B") into buf; returns buf. */
MEMFIT_API char *memfit_format_size(uint64_t bytes, char *buf, size_t size);

/*
 * Encodes 8-bit pixels (row-major, `channels` 1 = gray or 3 = RGB per
 * pixel) as a PNG into a buffer allocated with memfit_malloc (*out, freed
 * by the caller with memfit_free). E_MISUSE for an empty image or another
 * channel count, E_NOMEM, E_IO for a libpng failure.
 */
MEMFIT_API enum memfit_status memfit_image_encode_png(const uint8_t *pixels, uint32_t width,
                                                      uint32_t height, uint32_t channels,
                                                      uint8_t **out, size_t *out_len);

/* ---- Memory ------------------------------------------------------------ */

/*
 * The allocator wrapper every memfit file uses instead of malloc/free. It
 * counts live bytes by category and can be told to fail (see
 * src/core/alloc.h, for tests). All return NULL on failure and set the
 * thread's last error to E_NOMEM with the size asked; memfit_free(NULL) is a
 * no-op. Memory from these functions must be freed with memfit_free.
 */
enum memfit_alloc_category {
    MEMFIT_ALLOC_GENERAL = 0,
    MEMFIT_ALLOC_SYS = 1,
    MEMFIT_ALLOC_MONITOR = 2,
    MEMFIT_ALLOC_STORE = 3,
    MEMFIT_ALLOC_FORMAT = 4,
    MEMFIT_ALLOC_TENSOR = 5,
    MEMFIT_ALLOC_MODEL = 6,
    MEMFIT_ALLOC_MANAGER = 7,
    MEMFIT_ALLOC_SERVER = 8,
    MEMFIT_ALLOC_CLI = 9,
    MEMFIT_ALLOC_CATEGORY_COUNT
};

MEMFIT_API void *memfit_malloc(size_t size);
MEMFIT_API void *memfit_calloc(size_t count, size_t size);
/* On failure the old block is left untouched (and still owned by the caller). */
MEMFIT_API void *memfit_realloc(void *ptr, size_t size);
MEMFIT_API void memfit_free(void *ptr);
MEMFIT_API char *memfit_strdup(const char *text);
MEMFIT_API char *memfit_strndup(const char *text, size_t max_len);
/* Allocates and formats a string; NULL on failure. */
MEMFIT_API char *memfit_asprintf(const char *fmt, ...) MEMFIT_PRINTF(1, 2);
/* Same as memfit_malloc, counting the bytes under `category`. */
MEMFIT_API void *memfit_malloc_in(enum memfit_alloc_category category, size_t size);
MEMFIT_API void *memfit_calloc_in(enum memfit_alloc_category category, size_t count, size_t size);

/* Live bytes and allocations counted by the wrapper, per category. */
struct memfit_alloc_stats {
    uint64_t live_bytes[MEMFIT_ALLOC_CATEGORY_COUNT];
    uint64_t live_count[MEMFIT_ALLOC_CATEGORY_COUNT];
    uint64_t total_live_bytes;
    uint64_t total_live_count;
    uint64_t peak_bytes;
};
MEMFIT_API void memfit_alloc_get_stats(struct memfit_alloc_stats *out);

/* Returns freed heap memory to the system (glibc malloc_trim). */
MEMFIT_API void memfit_heap_trim(void);

/*
 * An allocation failure schedule, to test that a running program (the
 * daemon: MEMFIT_FAULT_ALLOC, docs/server.md) survives allocations that
 * fail. One mode is set: `every` (the N-th, 2N-th, ... allocation after
 * arming fails), `after` (only the N-th fails) or `random_percent` (each
 * fails with that chance, drawn from `seed` and the allocation's number, so
 * a run can be replayed as far as thread timing allows).
 */
struct memfit_alloc_faults {
    uint64_t every;
    uint64_t after;
    double random_percent; /* (0, 100] */
    uint64_t seed;
};

/*
 * Parses "every=N", "after=N" or "random=PERCENT[,seed=S]" (items separated
 * by commas; N >= 1, PERCENT as memfit_parse_percent, S >= 0, default 0).
 * E_RANGE quoting the text and naming the bad item; *out written only on
 * success.
 */
MEMFIT_API enum memfit_status memfit_alloc_faults_parse(const char *spec,
                                                        struct memfit_alloc_faults *out);

/* Arms the schedule from now on (counting restarts at 0); NULL disarms. */
MEMFIT_API void memfit_alloc_faults_arm(const struct memfit_alloc_faults *faults);

/* Turns an armed schedule off, or back on where it was; async-signal-safe
 * (atomic stores only), for a signal handler. */
MEMFIT_API void memfit_alloc_faults_toggle(void);

/* Allocations failed by injection since the schedule was armed. */
MEMFIT_API uint64_t memfit_alloc_faults_injected(void);

/* ---- Clocks ------------------------------------------------------------ */

/* Monotonic clock in nanoseconds. */
MEMFIT_API uint64_t memfit_now_ns(void);

/* Wall clock in nanoseconds since the Unix epoch. */
MEMFIT_API uint64_t memfit_wall_ns(void);

/* ---- Thread pool --------------------------------------------------------- */

/*
 * A fixed set of worker threads for data-parallel kernels. One owner calls
 * memfit_threadpool_parallel_for() at a time (the handle is not thread-safe);
 * the calling thread takes part in the work. Kernels split rows and take no
 * locks.
 */
typedef struct memfit_threadpool memfit_threadpool;

/*
 * The number of CPUs this process may use: the CPUs in its affinity mask
 * (sched_getaffinity), capped by the cgroup CPU quota (cgroup v2 cpu.max,
 * v1 cpu.cfs_quota_us / cpu.cfs_period_us, rounded up). At least 1.
 */
MEMFIT_API unsigned memfit_cpu_count(void);

/*
 * Starts a pool of `n_threads` threads in all, the caller's included (so
 * n_threads - 1 workers); 0 means memfit_cpu_count(). E_RANGE above 1024,
 * E_NOMEM / E_IO (thread creation failed). Destroy it with
 * memfit_threadpool_destroy().
 */
MEMFIT_API enum memfit_status memfit_threadpool_create(unsigned n_threads, memfit_threadpool **out);

/* Threads in the pool, the caller's included; 1 for a NULL pool. */
MEMFIT_API unsigned memfit_threadpool_size(const memfit_threadpool *pool);

/*
 * Work item range [begin, end) handed to thread `thread` (0 = the caller,
 * < memfit_threadpool_size()).
 */
typedef void (*memfit_parallel_fn)(void *ctx, uint64_t begin, uint64_t end, unsigned thread);

/*
 * Splits [0, n) into at most size() contiguous ranges of near-equal length,
 * runs fn on each (one range per thread, the caller running the first) and
 * returns when all are done. A NULL pool, or n below 2, runs fn(ctx, 0, n, 0)
 * on the caller. Empty ranges are not run.
 */
MEMFIT_API void memfit_threadpool_parallel_for(memfit_threadpool *pool, uint64_t n,
                                               memfit_parallel_fn fn, void *ctx);

/*
 * The same, but the threads take ranges from [0, n) as they go, each a share
 * of what is left and at least `grain` items (0 counts as 1), until none is
 * left: the threads end together even when one runs slower or starts late.
 * A thread may get several ranges; every item is run exactly once. n up to
 * `grain` runs fn(ctx, 0, n, 0) on the caller.
 */
MEMFIT_API void memfit_threadpool_parallel_for_dynamic(memfit_threadpool *pool, uint64_t n,
                                                       uint64_t grain, memfit_parallel_fn fn,
                                                       void *ctx);

/* Stops and joins the workers and frees the pool. NULL is a no-op. */
MEMFIT_API void memfit_threadpool_destroy(memfit_threadpool *pool);

/* True when the work asked for should stop (a client went away, the program
 * stops). Called from the thread doing the work; must be cheap and thread-safe. */
typedef bool (*memfit_cancel_fn)(void *user);

#ifdef __cplusplus
}
#endif

#endif

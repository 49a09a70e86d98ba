/*
 * A small fixed thread pool for data-parallel kernels (matmul rows,
 * attention heads): parallel_for() cuts a range into one contiguous chunk per
 * thread, wakes the workers through a generation counter, runs chunk 0 on the
 * caller and waits for the others. No job queue: the model forward issues one
 * parallel_for per kernel and every chunk is about the same work.
 * parallel_for_dynamic() gives every thread the same static chunk to start
 * with, which it takes from the front in ranges (a quarter of what is left,
 * at least `grain`); a thread done with its own takes ranges of the others'
 * in the same way, so a thread that starts late or runs slower (a worker
 * still waking, a core another process took) does not leave the others
 * waiting at the end: decoding's matrix-vector products, whose rows are
 * independent, run that way. Each thread's ranges follow one another in
 * memory, one stream for the hardware prefetcher; chunks taken from one
 * shared counter (every thread's next range somewhere after the other's)
 * ran those products 4 % slower on a quiet machine.
 *
 * LLM decoding issues about 120-170 parallel_fors per token, a few hundred
 * microseconds apart. A worker asleep on a condition variable takes tens of
 * microseconds to wake (more in a VM), and the caller then waits that long
 * for its chunk: so after each job the workers (and the caller, waiting for
 * them) poll the counters for a while (SPIN_ROUNDS polls, some tens of
 * microseconds on an idle host) before they sleep; the mutex and condition variables stay
 * for the sleepers, who are woken only when someone sleeps. MEMFIT_POOL_SPIN=0
 * turns the polling off (every wait sleeps at once: less CPU burnt on a busy
 * host, slower decoding).
 *
 * memfit_cpu_count() is what "all the CPUs" means in a container: the
 * affinity mask capped by the cgroup CPU quota, so a pod limited to 2 CPUs on
 * a 64-core node starts 2 threads, not 64.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

/* Polls of a counter before sleeping: the first SPIN_PAUSES with a pause instruction (about
 * 20 ns each), the rest with sched_yield(), which on an idle core returns at once but on a
 * busy host lets the other runnable threads go first (so waiting does not starve them).
 * Polling with pauses only for tens of microseconds (saving the VM's slow sched_yield system
 * calls) measured 4x the dispatch overhead of this with other processes on the CPUs. */
#define SPIN_ROUNDS 256
#define SPIN_PAUSES 64

/* A thread's part of a dynamic job, [next, end): taken from the front by its owner and, once
 * they are done with their own, by the other threads (padded: no two share a cache line). */
struct slot {
    _Atomic uint64_t next;
    uint64_t end;
    char pad[48];
};

struct memfit_threadpool {
    unsigned n_threads; /* the caller's included */
    int spin_rounds;    /* SPIN_ROUNDS, or 0 under MEMFIT_POOL_SPIN=0 */
    pthread_t *workers; /* n_threads - 1 */
    unsigned n_started;
    pthread_mutex_t lock;
    pthread_cond_t wake;         /* sleeping workers wait for a new generation */
    pthread_cond_t done;         /* a sleeping caller waits for pending == 0 */
    _Atomic uint64_t generation; /* changed under lock; polled without it */
    _Atomic unsigned pending;    /* workers still on the current job */
    _Atomic bool stop;           /* set under lock */
    unsigned sleepers;           /* workers waiting on `wake` (under lock) */
    bool caller_asleep;          /* the caller waits on `done` (under lock) */
    /* The current job: written before the generation is bumped (release), read after it is
     * seen (acquire). */
    memfit_parallel_fn fn;
    void *ctx;
    uint64_t n;
    uint64_t grain;     /* 0: one static chunk per thread; else ranges taken from the slots */
    struct slot *slots; /* n_threads (dynamic jobs): thread i's static chunk to start with */
};

static inline void cpu_relax(int round)
{
    if (round >= SPIN_PAUSES) {
        sched_yield();
        return;
    }
#if defined(__x86_64__)
    _mm_pause();
#endif
}

struct worker_arg {
    struct memfit_threadpool *pool;
    unsigned index;
};

/* Chunk `i` of `parts` over [0, n): the first n % parts chunks get one more. */
static void chunk(uint64_t n, unsigned parts, unsigned i, uint64_t *begin, uint64_t *end)
{
    uint64_t base = n / parts, extra = n % parts;
    *begin = i * base + (i < extra ? i : extra);
    *end = *begin + base + (i < extra ? 1 : 0);
}

/* Takes the next range of at most a quarter of what slot `sl` has left (at least `grain`
 * items) into [*begin, *end); false when the slot is empty. */
static bool slot_take(struct slot *sl, uint64_t grain, uint64_t *begin, uint64_t *end)
{
    uint64_t b = atomic_load_explicit(&sl->next, memory_order_relaxed);
    while (b < sl->end) {
        uint64_t take = (sl->end - b) / 4;
        take = take < grain ? grain : take;
        uint64_t e = sl->end - b < take ? sl->end : b + take;
        if (atomic_compare_exchange_weak_explicit(&sl->next, &b, e, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            *begin = b;
            *end = e;
            return true;
        }
    }
    return false;
}

/* Runs thread `index`'s share of the current job: its static chunk; or (dynamic jobs) its own
 * slot's ranges in order, then what is left in the other slots, so the threads end together
 * however fast each runs. */
static void run_share(struct memfit_threadpool *pool, unsigned index)
{
    uint64_t n = pool->n, begin, end;
    if (!pool->grain) {
        chunk(n, pool->n_threads, index, &begin, &end);
        if (begin < end)
            pool->fn(pool->ctx, begin, end, index);
        return;
    }
    for (unsigned k = 0; k < pool->n_threads; k++) {
        struct slot *sl = &pool->slots[(index + k) % pool->n_threads];
        while (slot_take(sl, pool->grain, &begin, &end))
            pool->fn(pool->ctx, begin, end, index);
    }
}

static void *worker_main(void *p)
{
    struct memfit_threadpool *pool = ((struct worker_arg *)p)->pool;
    unsigned index = ((struct worker_arg *)p)->index;
    memfit_free(p);
    uint64_t seen = 0;
    for (;;) {
        uint64_t g = atomic_load_explicit(&pool->generation, memory_order_acquire);
        for (int i = 0; i < pool->spin_rounds && g == seen && !atomic_load(&pool->stop); i++) {
            cpu_relax(i);
            g = atomic_load_explicit(&pool->generation, memory_order_acquire);
        }
        if (g == seen) {
            pthread_mutex_lock(&pool->lock);
            pool->sleepers++;
            while (!atomic_load(&pool->stop) && atomic_load(&pool->generation) == seen)
                pthread_cond_wait(&pool->wake, &pool->lock);
            pool->sleepers--;
            pthread_mutex_unlock(&pool->lock);
            g = atomic_load_explicit(&pool->generation, memory_order_acquire);
        }
        if (atomic_load(&pool->stop))
            break;
        seen = g;
        run_share(pool, index);
        if (atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&pool->lock);
            if (pool->caller_asleep)
                pthread_cond_signal(&pool->done);
            pthread_mutex_unlock(&pool->lock);
        }
    }
    return NULL;
}

/* Reads a small text file into buf; false when it cannot be read. */
static bool read_small(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    size_t got = fread(buf, 1, size - 1, f);
    fclose(f);
    buf[got] = '\0';
    return got > 0;
}

/* CPUs allowed by a cgroup v2 "cpu.max" text ("max 100000" or "200000 100000"); 0 = no limit. */
static unsigned quota_v2(const char *text)
{
    char *end;
    if (strncmp(text, "max", 3) == 0)
        return 0;
    double quota = strtod(text, &end);
    double period = strtod(end, NULL);
    if (quota <= 0 || period <= 0)
        return 0;
    double cpus = quota / period;
    unsigned n = (unsigned)cpus;
    return (double)n < cpus ? n + 1 : n;
}

/* The cgroup CPU quota in CPUs (rounded up), 0 when there is none. */
static unsigned cgroup_cpu_quota(void)
{
    char buf[4096], path[4200];
    /* v2: "0::/path" in /proc/self/cgroup names our directory. */
    if (read_small("/proc/self/cgroup", buf, sizeof(buf))) {
        char *line = strstr(buf, "0::");
        if (line && (line == buf || line[-1] == '\n')) {
            char *p = line + 3, *nl = strchr(p, '\n');
            if (nl)
                *nl = '\0';
            /* Walk up: a limit on an ancestor (the pod) applies too. */
            unsigned best = 0;
            for (;;) {
                char text[128];
                snprintf(path, sizeof(path), "/sys/fs/cgroup%s/cpu.max", p);
                if (read_small(path, text, sizeof(text))) {
                    unsigned q = quota_v2(text);
                    if (q && (!best || q < best))
                        best = q;
                }
                char *slash = strrchr(p, '/');
                if (!slash || slash == p)
                    break;
                *slash = '\0';
            }
            char text[128];
            if (read_small("/sys/fs/cgroup/cpu.max", text, sizeof(text))) {
                unsigned q = quota_v2(text);
                if (q && (!best || q < best))
                    best = q;
            }
            return best;
        }
    }
    /* v1, at the usual mount points (a container sees its own cgroup there). */
    static const char *const dirs[] = {"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        char q[64], pe[64];
        snprintf(path, sizeof(path), "%s/cpu.cfs_quota_us", dirs[i]);
        if (!read_small(path, q, sizeof(q)))
            continue;
        snprintf(path, sizeof(path), "%s/cpu.cfs_period_us", dirs[i]);
        if (!read_small(path, pe, sizeof(pe)))
            continue;
        char text[160];
        snprintf(text, sizeof(text), "%s %s", q, pe);
        if (strtod(q, NULL) > 0)
            return quota_v2(text);
    }
    return 0;
}

unsigned memfit_cpu_count(void)
{
    unsigned n = 1;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        int c = CPU_COUNT(&set);
        n = c > 0 ? (unsigned)c : 1;
    }
    unsigned quota = cgroup_cpu_quota();
    if (quota && quota < n)
        n = quota;
    return n;
}

void memfit_threadpool_destroy(memfit_threadpool *pool)
{
    if (!pool)
        return;
    pthread_mutex_lock(&pool->lock);
    atomic_store(&pool->stop, true);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);
    for (unsigned i = 0; i < pool->n_started; i++)
        pthread_join(pool->workers[i], NULL);
    pthread_cond_destroy(&pool->done);
    pthread_cond_destroy(&pool->wake);
    pthread_mutex_destroy(&pool->lock);
    memfit_free(pool->workers);
    memfit_free(pool->slots);
    memfit_free(pool);
}

enum memfit_status memfit_threadpool_create(unsigned n_threads, memfit_threadpool **out)
{
    if (n_threads == 0)
        n_threads = memfit_cpu_count();
    if (n_threads > 1024)
        return memfit_fail(MEMFIT_E_RANGE, "thread pool: %u threads, at most 1024", n_threads);
    struct memfit_threadpool *pool = memfit_calloc(1, sizeof(*pool));
    if (!pool)
        return MEMFIT_E_NOMEM;
    pool->n_threads = n_threads;
    const char *spin = memfit_config_get("MEMFIT_POOL_SPIN");
    pool->spin_rounds = spin && strcmp(spin, "0") == 0 ? 0 : SPIN_ROUNDS;
    if (n_threads > 1) {
        pool->workers = memfit_calloc(n_threads - 1, sizeof(pthread_t));
        pool->slots = memfit_calloc(n_threads, sizeof(struct slot));
        if (!pool->workers || !pool->slots) {
            memfit_free(pool->workers);
            memfit_free(pool->slots);
            memfit_free(pool);
            return MEMFIT_E_NOMEM;
        }
    }
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->wake, NULL);
    pthread_cond_init(&pool->done, NULL);
    for (unsigned i = 1; i < n_threads; i++) {
        struct worker_arg *arg = memfit_malloc(sizeof(*arg));
        if (!arg) {
            memfit_threadpool_destroy(pool);
            return MEMFIT_E_NOMEM;
        }
        arg->pool = pool;
        arg->index = i;
        int rc = pthread_create(&pool->workers[pool->n_started], NULL, worker_main, arg);
        if (rc != 0) {
            memfit_free(arg);
            memfit_threadpool_destroy(pool);
            return memfit_fail(MEMFIT_E_IO, "thread pool: cannot start thread %u of %u: %s", i,
                               n_threads, strerror(rc));
        }
        pool->n_started++;
    }
    *out = pool;
    return MEMFIT_OK;
}

unsigned memfit_threadpool_size(const memfit_threadpool *pool)
{
    return pool ? pool->n_threads : 1;
}

/* A job of n items in static chunks (grain 0) or dynamic ones of at least `grain` items. */
static void run_job(memfit_threadpool *pool, uint64_t n, uint64_t grain, memfit_parallel_fn fn,
                    void *ctx)
{
    if (n == 0)
        return;
    if (!pool || pool->n_threads < 2 || n < 2 || (grain && n <= grain)) {
        fn(ctx, 0, n, 0);
        return;
    }
    pool->fn = fn;
    pool->ctx = ctx;
    pool->n = n;
    pool->grain = grain;
    for (unsigned i = 0; grain && i < pool->n_threads; i++) {
        uint64_t b, e;
        chunk(n, pool->n_threads, i, &b, &e);
        atomic_store_explicit(&pool->slots[i].next, b, memory_order_relaxed);
        pool->slots[i].end = e;
    }
    atomic_store_explicit(&pool->pending, pool->n_threads - 1, memory_order_relaxed);
    pthread_mutex_lock(&pool->lock);
    atomic_fetch_add_explicit(&pool->generation, 1, memory_order_release);
    if (pool->sleepers)
        pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);
    run_share(pool, 0);
    for (int i = 0; i < pool->spin_rounds; i++) {
        if (atomic_load_explicit(&pool->pending, memory_order_acquire) == 0)
            return;
        cpu_relax(i);
    }
    pthread_mutex_lock(&pool->lock);
    pool->caller_asleep = true;
    while (atomic_load_explicit(&pool->pending, memory_order_acquire) > 0)
        pthread_cond_wait(&pool->done, &pool->lock);
    pool->caller_asleep = false;
    pthread_mutex_unlock(&pool->lock);
}

void memfit_threadpool_parallel_for(memfit_threadpool *pool, uint64_t n, memfit_parallel_fn fn,
                                    void *ctx)
{
    run_job(pool, n, 0, fn, ctx);
}

void memfit_threadpool_parallel_for_dynamic(memfit_threadpool *pool, uint64_t n, uint64_t grain,
                                            memfit_parallel_fn fn, void *ctx)
{
    run_job(pool, n, grain ? grain : 1, fn, ctx);
}

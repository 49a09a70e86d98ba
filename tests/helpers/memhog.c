/*
 * memhog: a workload with a known memory shape, for the monitor's tests,
 * benchmarks and demo. It allocates and touches memory in steps:
 *
 *   memhog --step 1MiB --every 100ms --duration 6s     grows 10 MiB/s (a leak)
 *   memhog --step 4MiB --every 50ms                     grows until killed
 *   memhog --steady 20MiB --duration 6s                 holds 20 MiB, churning
 *   memhog --step 2MiB --every 50ms --max 40MiB --cycle frees at max, repeats
 *   memhog --epoch 100MiB --keep 12MiB --every 400ms    a trainer: each epoch takes
 *       100 MiB for 70 % of it and gives them back, and keeps 12 MiB (a leak
 *       under a sawtooth)
 *
 * It prints nothing unless asked (--verbose), so its output never mixes
 * with the monitor's.
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "memfit/core.h"

#define MAX_CHUNKS 65536

static void *chunks[MAX_CHUNKS];
static size_t n_chunks;

static void *take(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    memset(p, 0x5a, bytes); /* touch every page so it counts in RSS */
    return p;
}

static void release_all(size_t bytes)
{
    for (size_t i = 0; i < n_chunks; i++)
        munmap(chunks[i], bytes);
    n_chunks = 0;
}

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static void sleep_until(uint64_t t_ns)
{
    uint64_t now = memfit_now_ns();
    if (t_ns > now)
        sleep_ns(t_ns - now);
}

static int usage(void)
{
    fprintf(stderr, "usage: memhog [--step SIZE] [--every D] [--max SIZE] [--cycle] "
                    "[--steady SIZE] [--epoch SIZE [--keep SIZE]] [--duration D] [--verbose]\n");
    return 2;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"step", required_argument, NULL, 's'},   {"every", required_argument, NULL, 'e'},
        {"max", required_argument, NULL, 'm'},    {"cycle", no_argument, NULL, 'c'},
        {"steady", required_argument, NULL, 'S'}, {"duration", required_argument, NULL, 'd'},
        {"verbose", no_argument, NULL, 'v'},      {"epoch", required_argument, NULL, 'E'},
        {"keep", required_argument, NULL, 'k'},   {NULL, 0, NULL, 0},
    };
    uint64_t step = 1 << 20, every_ns = 100000000u, max = 0, steady = 0, duration_ns = 0;
    uint64_t epoch = 0, keep = 0;
    bool cycle = false, verbose = false;
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        enum memfit_status st = MEMFIT_OK;
        switch (c) {
        case 's':
            st = memfit_parse_size(optarg, &step);
            break;
        case 'e':
            st = memfit_parse_duration(optarg, &every_ns);
            break;
        case 'm':
            st = memfit_parse_size(optarg, &max);
            break;
        case 'S':
            st = memfit_parse_size(optarg, &steady);
            break;
        case 'd':
            st = memfit_parse_duration(optarg, &duration_ns);
            break;
        case 'E':
            st = memfit_parse_size(optarg, &epoch);
            break;
        case 'k':
            st = memfit_parse_size(optarg, &keep);
            break;
        case 'c':
            cycle = true;
            break;
        case 'v':
            verbose = true;
            break;
        default:
            return usage();
        }
        if (st != MEMFIT_OK) {
            fprintf(stderr, "memhog: %s\n", memfit_last_error());
            return 2;
        }
    }
    if (step == 0 || every_ns == 0)
        return usage();
    uint64_t t0 = memfit_now_ns();
    if (epoch) {
        /* Epoch k runs from t0 + k x every, whatever the allocations cost,
         * so the period is exact; the pages are faulted in by the kernel
         * (MAP_POPULATE), which is faster than touching them one by one. */
        for (uint64_t k = 0; !duration_ns || k * every_ns < duration_ns; k++) {
            void *work = mmap(NULL, epoch, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
            if (work == MAP_FAILED ||
                (keep && (n_chunks == MAX_CHUNKS || !(chunks[n_chunks++] = take(keep))))) {
                fprintf(stderr, "memhog: cannot allocate more\n");
                return 1;
            }
            sleep_until(t0 + k * every_ns + every_ns / 10 * 7);
            munmap(work, epoch);
            sleep_until(t0 + (k + 1) * every_ns);
        }
        return 0;
    }
    if (steady) {
        /* Hold `steady` bytes; replace one step of it each interval. */
        while (n_chunks * step < steady && n_chunks < MAX_CHUNKS)
            if (!(chunks[n_chunks++] = take(step)))
                return 1;
        for (size_t i = 0; !duration_ns || memfit_now_ns() - t0 < duration_ns; i++) {
            size_t k = i % n_chunks;
            munmap(chunks[k], step);
            if (!(chunks[k] = take(step)))
                return 1;
            sleep_ns(every_ns);
        }
        return 0;
    }
    while (!duration_ns || memfit_now_ns() - t0 < duration_ns) {
        if (max && (n_chunks + 1) * step > max) {
            if (!cycle) {
                sleep_ns(every_ns);
                continue;
            }
            release_all(step);
        }
        if (n_chunks == MAX_CHUNKS || !(chunks[n_chunks] = take(step))) {
            fprintf(stderr, "memhog: cannot allocate more\n");
            return 1;
        }
        n_chunks++;
        if (verbose)
            fprintf(stderr, "memhog: %zu MiB\n", (size_t)(n_chunks * step >> 20));
        sleep_ns(every_ns);
    }
    return 0;
}

/*
 * Synthetic monitor logs for the analysis and chart tests (header-only):
 * writers for `start`, `sample`, `oom` and `exit` lines in the schema of
 * docs/monitor-log.md, a deterministic noise source, and a scratch folder.
 * The monitor itself is not needed to test what reads its logs.
 */
#ifndef MF_TEST_LOG_GEN_H
#define MF_TEST_LOG_GEN_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char gen_dir[256];

/* Creates the scratch folder once (removed by gen_cleanup). */
static inline const char *gen_path(const char *name, char *buf, size_t size)
{
    if (!gen_dir[0]) {
        snprintf(gen_dir, sizeof(gen_dir), "/tmp/memfit-test-XXXXXX");
        if (!mkdtemp(gen_dir)) {
            perror("mkdtemp");
            exit(1);
        }
    }
    snprintf(buf, size, "%s/%s", gen_dir, name);
    return buf;
}

static inline void gen_cleanup(void)
{
    if (gen_dir[0]) {
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", gen_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", gen_dir);
        gen_dir[0] = '\0';
    }
}

/* Uniform noise in [-1, 1] from a fixed-seed linear congruential generator. */
static uint64_t gen_seed = 12345;
static inline double gen_noise(void)
{
    gen_seed = gen_seed * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(gen_seed >> 11) / (double)(1ULL << 53) * 2.0 - 1.0;
}

static inline void gen_start(FILE *f, double interval_s, uint64_t limit_bytes)
{
    fprintf(f,
            "{\"type\":\"start\",\"v\":1,\"t\":0,\"time\":\"2026-11-23T19:40:00.123Z\","
            "\"memfit_version\":\"0.1.0\",\"hostname\":\"web-1\",\"pid\":100,"
            "\"command\":[\"python3\",\"train.py\"],\"interval_s\":%g,\"limit_bytes\":%llu,"
            "\"limit_source\":\"cgroup\",\"cgroup\":{\"version\":2,\"path\":\"/t\"},"
            "\"thresholds\":{\"warning_percent\":80,\"critical_percent\":90,"
            "\"danger_available_bytes\":%llu,\"hysteresis_percent\":2}}\n",
            interval_s, (unsigned long long)limit_bytes, (unsigned long long)(limit_bytes / 20));
}

/* rss < 0 writes null; pid < 0 leaves `process` out; level NULL leaves it out. */
static inline void gen_sample(FILE *f, double t, double ws, double rss, uint64_t limit_bytes,
                              const char *level, long pid)
{
    fprintf(f,
            "{\"type\":\"sample\",\"t\":%.3f,\"time\":\"2026-11-23T19:40:01.000Z\","
            "\"working_set_bytes\":%.0f,\"limit_bytes\":%llu,\"percent\":%.1f,",
            t, ws, (unsigned long long)limit_bytes, 100.0 * ws / (double)limit_bytes);
    if (rss >= 0.0)
        fprintf(f, "\"rss_bytes\":%.0f,", rss);
    else
        fprintf(f, "\"rss_bytes\":null,");
    if (level)
        fprintf(f, "\"level\":\"%s\",", level);
    if (pid >= 0)
        fprintf(f, "\"process\":{\"pid\":%ld,\"n_procs\":1,\"rss_bytes\":%.0f},", pid,
                rss >= 0.0 ? rss : 0.0);
    fprintf(f, "\"psi\":{\"some_avg10\":0.0,\"full_avg10\":0.0}}\n");
}

static inline void gen_oom(FILE *f, double t)
{
    fprintf(f,
            "{\"type\":\"oom\",\"t\":%.3f,\"time\":\"x\",\"oom_kill\":1,\"source\":\"cgroup\"}\n",
            t);
}

static inline void gen_exit(FILE *f, double t, int code, int sig, int oom_killed)
{
    fprintf(f, "{\"type\":\"exit\",\"t\":%.3f,\"time\":\"x\",\"pid\":100,", t);
    if (sig)
        fprintf(f, "\"exit_code\":null,\"signal\":%d,", sig);
    else
        fprintf(f, "\"exit_code\":%d,\"signal\":null,", code);
    fprintf(f, "\"oom_killed\":%s,\"samples\":1}\n", oom_killed ? "true" : "false");
}

enum gen_shape { GEN_LEAK, GEN_STEADY, GEN_SAWTOOTH };

/*
 * A whole run: n samples every 0.1 s. LEAK grows exactly 1 MB (10^6 bytes)
 * per sample from 50 MB with +-20 kB noise; STEADY stays at 200 MB +-3 MB;
 * SAWTOOTH climbs 100 MB over 5 s and falls back, again and again.
 */
static inline void gen_run(FILE *f, enum gen_shape shape, int n, uint64_t limit)
{
    gen_start(f, 0.1, limit);
    for (int i = 1; i <= n; i++) {
        double t = 0.1 * i, ws;
        if (shape == GEN_LEAK)
            ws = 50e6 + 1e6 * i + 20e3 * gen_noise();
        else if (shape == GEN_STEADY)
            ws = 200e6 + 3e6 * gen_noise();
        else
            ws = 100e6 + 2e6 * (i % 50) + 0.5e6 * gen_noise();
        double pct = 100.0 * ws / (double)limit;
        const char *level = pct >= 90 ? "critical" : pct >= 80 ? "warning" : "ok";
        gen_sample(f, t, ws, ws * 0.9, limit, level, 100);
    }
}

/* Creates the scratch file `name` for writing; its path goes to buf. */
static inline FILE *gen_open(const char *name, char *buf, size_t size)
{
    gen_path(name, buf, size);
    FILE *f = fopen(buf, "w");
    if (!f) {
        perror(buf);
        exit(1);
    }
    return f;
}

/* Writes `text` to the scratch file `name`; returns its path in buf. */
static inline const char *gen_file(const char *name, const char *text, char *buf, size_t size)
{
    FILE *f = gen_open(name, buf, size);
    fputs(text, f);
    fclose(f);
    return buf;
}

#endif

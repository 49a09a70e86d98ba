/*
 * Benchmark of the sys layer: how long one full report takes (goal: under
 * 20 ms), in process (memfit_report_collect) and as a whole command
 * (`memfit report`, started with posix_spawn), and what each reader the
 * monitor repeats every 100 ms costs. Prints medians over N runs.
 * Usage: bench_report [RUNS]   (default 50)
 */
#include <fcntl.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "memfit/memfit.h"

extern char **environ;

#define MAX_RUNS 1000

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static double median_ms(uint64_t *ns, int n)
{
    qsort(ns, (size_t)n, sizeof(*ns), cmp_u64);
    return (double)ns[n / 2] / 1e6;
}

static struct memfit_report report;
static struct memfit_cgroup cgroup;

/* Times op n times; prints the median. */
#define TIME(label, n, op)                                                                         \
    do {                                                                                           \
        static uint64_t t_[MAX_RUNS];                                                              \
        for (int i_ = 0; i_ < (n); i_++) {                                                         \
            uint64_t s_ = memfit_now_ns();                                                         \
            if ((op) != MEMFIT_OK) {                                                               \
                fprintf(stderr, "%s: %s\n", label, memfit_last_error());                           \
                return 1;                                                                          \
            }                                                                                      \
            t_[i_] = memfit_now_ns() - s_;                                                         \
        }                                                                                          \
        printf("%-36s %9.3f ms\n", label, median_ms(t_, n));                                       \
    } while (0)

static enum memfit_status run_command(const char *bin)
{
    char *argv[] = {(char *)bin, "report", NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    int rc = posix_spawn(&pid, bin, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        return memfit_fail(MEMFIT_E_IO, "%s: %s", bin, strerror(rc));
    int status;
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return memfit_fail(MEMFIT_E_IO, "%s report failed", bin);
    return MEMFIT_OK;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? (int)strtol(argv[1], NULL, 10) : 50;
    if (n < 1 || n > MAX_RUNS) {
        fprintf(stderr, "usage: bench_report [RUNS (1-%d)]\n", MAX_RUNS);
        return 2;
    }
    struct memfit_report_options o;
    memfit_report_options_default(&o);
    o.pid = getpid();
    struct memfit_meminfo mi;
    struct memfit_psi psi;
    struct memfit_proc_mem p;
    unsigned np;
    printf("median of %d runs\n", n);
    TIME("report collect (pid, top 5, GPU)", n, memfit_report_collect(&o, &report));
    o.gpu = false;
    TIME("report collect (pid, top 5, no GPU)", n, memfit_report_collect(&o, &report));
    TIME("meminfo", n, memfit_meminfo_read(NULL, &mi));
    TIME("psi /proc/pressure/memory", n, memfit_psi_read("/proc/pressure/memory", &psi));
    TIME("cgroup (find + read)", n, memfit_cgroup_read(NULL, 0, &cgroup));
    if (cgroup.memory_version) {
        TIME("cgroup read_dir (no ancestors)", n,
             memfit_cgroup_read_dir(cgroup.dir, NULL, cgroup.memory_version, &cgroup));
    }
    TIME("proc self, status only", n, memfit_proc_read_ex(NULL, 0, 0, &p));
    TIME("proc self, with smaps_rollup", n, memfit_proc_read(NULL, 0, &p));
    TIME("proc tree of self", n, memfit_proc_tree_read(NULL, 0, &p, &np));
    struct memfit_proc_mem top[5];
    TIME("proc top 5", n, memfit_proc_top(NULL, top, 5, &np));

    char self[PATH_MAX], bin[PATH_MAX + 16];
    ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (len > 0) {
        self[len] = '\0';
        char *slash = strrchr(self, '/');
        if (slash)
            *slash = '\0';
        snprintf(bin, sizeof(bin), "%s/../memfit", self);
        if (access(bin, X_OK) == 0)
            TIME("`memfit report` whole command", n, run_command(bin));
    }
    return 0;
}

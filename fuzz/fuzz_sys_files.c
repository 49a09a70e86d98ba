/*
 * libFuzzer target for the sys readers' parsers: the input is split at
 * "\n===\n" into the contents of /proc/self/cgroup, /proc/self/mountinfo,
 * /proc/self/status (also used as smaps_rollup and meminfo) and a cgroup
 * "key value" file (memory.stat, memory.events, memory.pressure), written
 * into a private root tree that the readers then read as a machine.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "memfit/sys.h"
#include "sys/sys_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char root[64];

static void put(const char *rel, const uint8_t *data, size_t size)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    FILE *f = fopen(path, "wb");
    if (!f)
        return;
    fwrite(data, 1, size, f);
    fclose(f);
}

static void cleanup(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    if (system(cmd) != 0)
        fprintf(stderr, "fuzz_sys_files: could not remove %s\n", root);
}

static void setup(void)
{
    snprintf(root, sizeof(root), "/tmp/memfit_fuzz_XXXXXX");
    if (!mkdtemp(root))
        return;
    atexit(cleanup);
    const char *dirs[] = {"proc", "proc/self", "proc/pressure", "proc/1",
                          "sys",  "sys/fs",    "sys/fs/cgroup", "sys/fs/cgroup/a"};
    char path[256];
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", root, dirs[i]);
        mkdir(path, 0700);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!root[0])
        setup();
    const uint8_t *part[4] = {data, data, data, data};
    size_t len[4] = {size, 0, 0, 0};
    size_t n = 1;
    for (size_t i = 0; i + 5 <= size && n < 4; i++) {
        if (memcmp(data + i, "\n===\n", 5) == 0) {
            len[n - 1] = (size_t)(data + i - part[n - 1]);
            part[n] = data + i + 5;
            len[n] = size - (i + 5);
            n++;
            i += 4;
        }
    }
    put("proc/self/cgroup", part[0], len[0]);
    put("proc/self/mountinfo", part[1], len[1]);
    put("proc/self/status", part[2], len[2]);
    put("proc/self/smaps_rollup", part[2], len[2]);
    put("proc/meminfo", part[2], len[2]);
    put("proc/1/status", part[2], len[2]);
    put("proc/1/stat", part[3], len[3]);
    const char *cg[] = {"memory.stat",       "memory.events",  "memory.pressure",
                        "memory.max",        "memory.current", "memory.limit_in_bytes",
                        "memory.oom_control"};
    char rel[128];
    for (size_t i = 0; i < sizeof(cg) / sizeof(cg[0]); i++) {
        snprintf(rel, sizeof(rel), "sys/fs/cgroup/a/%s", cg[i]);
        put(rel, part[3], len[3]);
        snprintf(rel, sizeof(rel), "sys/fs/cgroup/%s", cg[i]);
        put(rel, part[3], len[3]);
    }
    put("proc/pressure/memory", part[3], len[3]);

    struct memfit_meminfo m;
    struct memfit_psi psi;
    struct memfit_cgroup c;
    struct memfit_proc_mem p;
    unsigned count;
    char path[256];
    memfit_meminfo_read(root, &m);
    snprintf(path, sizeof(path), "%s/proc/pressure/memory", root);
    memfit_psi_read(path, &psi);
    memfit_cgroup_read(root, 0, &c);
    snprintf(path, sizeof(path), "%s/sys/fs/cgroup/a", root);
    char mount[256];
    snprintf(mount, sizeof(mount), "%s/sys/fs/cgroup", root);
    memfit_cgroup_read_dir(path, mount, 1, &c);
    memfit_cgroup_read_dir(path, mount, 2, &c);
    memfit_proc_read(root, 0, &p);
    memfit_proc_tree_read(root, 1, &p, &count);
    return 0;
}

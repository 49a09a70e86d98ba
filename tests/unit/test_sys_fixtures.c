/* Unit tests of src/sys on fixture trees (tests/fixtures/sys/<case>/) copied
 * from real systems: meminfo, PSI, cgroup v1/v2/hybrid (limits, nesting,
 * container mount roots, missing and malformed files) and the process tree.
 * Every value is checked exactly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>

#include "memfit/sys.h"
#include "sys/sys_file.h"
#include "test_util.h"

#define UNKNOWN MEMFIT_SYS_UNKNOWN
#define KIB     1024ull
#define MIB     (1024ull * 1024)

static const char *fixture(const char *name)
{
    static char buf[1024];
    char rel[256];
    snprintf(rel, sizeof(rel), "sys/%s", name);
    return mf_test_fixture(rel, buf, sizeof(buf));
}

/* "<fixture root>/<rel>" for comparing directories the readers report. */
static const char *under(const char *root, const char *rel)
{
    static char buf[2048];
    snprintf(buf, sizeof(buf), "%s/%s", root, rel);
    return buf;
}

static void read_cgroup(const char *name, struct memfit_cgroup *c, char *root, size_t size)
{
    snprintf(root, size, "%s", fixture(name));
    assert_int_equal(memfit_cgroup_read(root, 0, c), MEMFIT_OK);
}

static void test_meminfo(void **state)
{
    (void)state;
    struct memfit_meminfo m;
    assert_int_equal(memfit_meminfo_read(fixture("v2_limit"), &m), MEMFIT_OK);
    assert_int_equal(m.total_bytes, 8388608 * KIB);
    assert_int_equal(m.available_bytes, 6291456 * KIB);
    assert_int_equal(m.free_bytes, 1048576 * KIB);
    assert_int_equal(m.buffers_bytes, 131072 * KIB);
    assert_int_equal(m.cached_bytes, 4194304 * KIB);
    assert_int_equal(m.shmem_bytes, 65536 * KIB);
    assert_int_equal(m.swap_total_bytes, 2097152 * KIB);
    assert_int_equal(m.swap_free_bytes, 1572864 * KIB);
    assert_string_equal(m.reason, "");

    /* A malformed line leaves that field absent, with the reason. */
    assert_int_equal(memfit_meminfo_read(fixture("malformed"), &m), MEMFIT_OK);
    assert_int_equal(m.total_bytes, 8388608 * KIB);
    assert_int_equal(m.free_bytes, UNKNOWN);
    assert_non_null(strstr(m.reason, "MemFree malformed"));

    /* Without MemTotal there is no answer; out stays untouched. */
    m.total_bytes = 42;
    assert_int_equal(memfit_meminfo_read(fixture("no_memtotal"), &m), MEMFIT_E_FORMAT);
    assert_non_null(strstr(memfit_last_error(), "no_memtotal/proc/meminfo: no valid MemTotal"));
    assert_int_equal(m.total_bytes, 42);
    assert_int_equal(memfit_meminfo_read(fixture("does_not_exist"), &m), MEMFIT_E_IO);
}

static void test_psi(void **state)
{
    (void)state;
    struct memfit_psi p;
    char path[2048];
    snprintf(path, sizeof(path), "%s/proc/pressure/memory", fixture("v2_limit"));
    assert_int_equal(memfit_psi_read(path, &p), MEMFIT_OK);
    assert_true(p.present);
    assert_true(p.some_avg10 == 0.12 && p.some_avg60 == 0.05 && p.some_avg300 == 0.01);
    assert_int_equal(p.some_total_us, 81234);
    assert_true(p.full_avg10 == 0.0);
    assert_int_equal(p.full_total_us, 4321);

    snprintf(path, sizeof(path), "%s/proc/pressure/memory", fixture("no_cgroup/missing"));
    assert_int_equal(memfit_psi_read(path, &p), MEMFIT_OK);
    assert_false(p.present);

    snprintf(path, sizeof(path), "%s/proc/pressure/memory", fixture("malformed"));
    assert_int_equal(memfit_psi_read(path, &p), MEMFIT_E_FORMAT);
    assert_non_null(strstr(memfit_last_error(), "malformed/proc/pressure/memory"));
}

static void test_cgroup_v2_limit(void **state)
{
    (void)state;
    struct memfit_cgroup c;
    char root[1024];
    read_cgroup("v2_limit", &c, root, sizeof(root));
    assert_int_equal(c.mode, MEMFIT_CGROUP_V2);
    assert_string_equal(memfit_cgroup_mode_name(c.mode), "v2");
    assert_int_equal(c.memory_version, 2);
    assert_string_equal(c.path, "/system.slice/app.service");
    assert_string_equal(c.dir, under(root, "sys/fs/cgroup/system.slice/app.service"));
    assert_string_equal(c.limit_dir, c.dir);
    assert_string_equal(c.limit_source, "memory.max");
    assert_int_equal(c.limit_bytes, 1073741824);
    assert_int_equal(c.own_limit_bytes, 1073741824);
    assert_int_equal(c.high_bytes, 966367641);
    assert_int_equal(c.usage_bytes, 612368384);
    assert_int_equal(c.peak_bytes, 805306368);
    assert_int_equal(c.anon_bytes, 402653184);
    assert_int_equal(c.file_bytes, 180355072);
    assert_int_equal(c.active_file_bytes, 104857600);
    assert_int_equal(c.inactive_file_bytes, 75497472);
    assert_int_equal(c.shmem_bytes, 8388608);
    assert_int_equal(c.kernel_bytes, 23068672);
    assert_int_equal(c.file_mapped_bytes, 41943040);
    assert_int_equal(c.unevictable_bytes, 0);
    assert_int_equal(c.working_set_bytes, 512 * MIB);
    assert_int_equal(c.swap_bytes, 1048576);
    assert_int_equal(c.swap_limit_bytes, 536870912);
    assert_int_equal(c.events_low, 0);
    assert_int_equal(c.events_high, 4);
    assert_int_equal(c.events_max, 12);
    assert_int_equal(c.events_oom, 1);
    assert_int_equal(c.events_oom_kill, 1);
    assert_int_equal(c.failcnt, UNKNOWN);
    assert_true(c.pressure.present);
    assert_true(c.pressure.some_avg10 == 1.25 && c.pressure.full_avg300 == 0.10);
    assert_int_equal(c.pressure.some_total_us, 1234567);
    assert_int_equal(c.pressure.full_total_us, 456789);
    assert_string_equal(c.reason, "");

    /* read_dir on the same directory gives the same numbers. */
    struct memfit_cgroup d;
    char mount[2048];
    snprintf(mount, sizeof(mount), "%s/sys/fs/cgroup", root);
    assert_int_equal(memfit_cgroup_read_dir(c.dir, mount, 2, &d), MEMFIT_OK);
    assert_int_equal(d.limit_bytes, c.limit_bytes);
    assert_int_equal(d.working_set_bytes, c.working_set_bytes);
    assert_int_equal(memfit_cgroup_read_dir(under(root, "sys/fs/cgroup/gone"), mount, 2, &d),
                     MEMFIT_E_NOT_FOUND);
}

static void test_cgroup_v2_nolimit_old_kernel(void **state)
{
    (void)state;
    struct memfit_cgroup c;
    char root[1024];
    read_cgroup("v2_nolimit", &c, root, sizeof(root));
    assert_int_equal(c.mode, MEMFIT_CGROUP_V2);
    assert_int_equal(c.limit_bytes, UNKNOWN);
    assert_int_equal(c.own_limit_bytes, UNKNOWN);
    assert_string_equal(c.limit_dir, "");
    assert_int_equal(c.peak_bytes, UNKNOWN); /* no memory.peak before 5.19 */
    assert_non_null(strstr(c.reason, "memory.peak missing"));
    /* No "kernel" key before 5.18: kernel_stack + slab. */
    assert_int_equal(c.kernel_bytes, 16777216 / 8 + 16777216 / 2 + 16777216 / 4);
    assert_int_equal(c.working_set_bytes, 209715200 - 25165824);
    assert_int_equal(c.swap_limit_bytes, UNKNOWN);
}

static void test_cgroup_v2_nested(void **state)
{
    (void)state;
    struct memfit_cgroup c;
    char root[1024];
    read_cgroup("v2_nested", &c, root, sizeof(root));
    assert_int_equal(c.own_limit_bytes, 2147483648ull);
    assert_int_equal(c.limit_bytes, 1073741824);
    assert_string_equal(c.limit_dir,
                        under(root,
                              "sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/"
                              "kubepods-burstable-pod6e1c3b8a_4b7d_4c55_9f2e_0d9b5c1a7e3f.slice"));
    assert_string_equal(c.limit_source, "memory.max");
    assert_int_equal(c.working_set_bytes, 734003200 - 20971520);
}

static void test_cgroup_v2_container(void **state)
{
    (void)state;
    struct memfit_cgroup c;
    char root[1024];
    read_cgroup("v2_container", &c, root, sizeof(root));
    assert_int_equal(c.mode, MEMFIT_CGROUP_V2);
    assert_string_equal(c.path, "/");
    assert_string_equal(c.dir, under(root, "sys/fs/cgroup"));
    assert_int_equal(c.limit_bytes, 536870912);
    assert_int_equal(c.working_set_bytes, 104857600 - 8388608);
}

static void test_cgroup_v1_limit(void **state)
{
    (void)state;
    struct memfit_cgroup c;
    char root[1024];
    read_cgroup("v1_limit", &c, root, sizeof(root));
    assert_int_equal(c.mode, MEMFIT_CGROUP_V1);
    assert_int_equal(c.memory_version, 1);
    assert_string_equal(c.path, "/system.slice/app.service");
    assert_string_equal(c.dir, under(root, "sys/fs/cgroup/memory/system.slice/app.service"));
    assert_int_equal(c.limit_bytes, 536870912);
    assert_int_equal(c.own_limit_bytes, 536870912);
    assert_string_equal(c.limit_dir, c.dir);
    assert_string_equal(c.limit_source, "memory.limit_in_bytes");
    assert_int_equal(c.high_bytes, UNKNOWN);
    assert_int_equal(c.usage_bytes, 314572800);
    assert_int_equal(c.peak_bytes, 503316480);
    assert_int_equal(c.anon_bytes, 209715200);
    assert_int_equal(c.file_bytes, 104857600);
    assert_int_equal(c.shmem_bytes, 4194304);
    assert_int_equal(c.file_mapped_bytes, 20971520);
    assert_int_equal(c.inactive_file_bytes, 52428800);
    assert_int_equal(c.active_file_bytes, 52428800);
    assert_int_equal(c.unevictable_bytes, 0);
    assert_int_equal(c.kernel_bytes, 8388608);
    assert_int_equal(c.working_set_bytes, 314572800 - 52428800);
    assert_int_equal(c.swap_bytes, 320864256 - 314572800);
    assert_int_equal(c.swap_limit_bytes, 1073741824 - 536870912);
    assert_int_equal(c.failcnt, 3);
    assert_int_equal(c.events_oom_kill, 2);
    assert_int_equal(c.events_oom, UNKNOWN);
    assert_false(c.under_oom);
    assert_false(c.oom_kill_disable);
    assert_false(c.pressure.present);
    assert_string_equal(c.reason, "");
}

static void test_cgroup_v1_nolimit(void **state)
{
    (void)state;
    struct memfit_cgroup c;
    char root[1024];
    read_cgroup("v1_nolimit", &c, root, sizeof(root));
    assert_int_equal(c.mode, MEMFIT_CGROUP_V1);
    assert_int_equal(c.limit_bytes, UNKNOWN); /* 9223372036854771712 everywhere */
    assert_int_equal(c.own_limit_bytes, UNKNOWN);
    assert_int_equal(c.working_set_bytes, 9662464 - 2408448);
    assert_int_equal(c.swap_bytes, UNKNOWN);
    assert_non_null(strstr(c.reason, "no swap accounting"));
}

static void test_cgroup_hybrid(void **state)
{
    (void)state;
    struct memfit_cgroup c;
    char root[1024];
    read_cgroup("hybrid", &c, root, sizeof(root));
    assert_int_equal(c.mode, MEMFIT_CGROUP_HYBRID);
    assert_string_equal(memfit_cgroup_mode_name(c.mode), "hybrid");
    assert_int_equal(c.memory_version, 1);
    assert_string_equal(c.path, "/process_api/1725aa5d0498f09a7311d9074531e466");
    assert_int_equal(c.own_limit_bytes, UNKNOWN);
    assert_int_equal(c.limit_bytes, 2147483648ull); /* set on the parent */
    assert_string_equal(c.limit_dir, under(root, "sys/fs/cgroup/memory/process_api"));
    assert_string_equal(c.limit_source, "memory.limit_in_bytes");
    assert_int_equal(c.swap_bytes, 9830400 - 9662464);
    assert_int_equal(c.swap_limit_bytes, UNKNOWN);
    /* PSI from the unified side. */
    assert_true(c.pressure.present);
    assert_true(c.pressure.some_avg10 == 0.31);
    assert_int_equal(c.pressure.full_total_us, 17022);
}

static void test_cgroup_v1_container(void **state)
{
    (void)state;
    struct memfit_cgroup c;
    char root[1024];
    read_cgroup("v1_container", &c, root, sizeof(root));
    assert_int_equal(c.mode, MEMFIT_CGROUP_V1);
    assert_string_equal(c.path,
                        "/docker/9d4b6c1f3e2a7b8c5d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e");
    /* The mount root is the container's cgroup: the mount point is its directory. */
    assert_string_equal(c.dir, under(root, "sys/fs/cgroup/memory"));
    assert_int_equal(c.own_limit_bytes, 268435456);
    /* The pod's tighter limit is only visible as hierarchical_memory_limit. */
    assert_int_equal(c.limit_bytes, 209715200);
    assert_string_equal(c.limit_source, "hierarchical_memory_limit");
    assert_int_equal(c.working_set_bytes, 157286400 - 20971520);
    assert_int_equal(c.failcnt, 17);
    assert_string_equal(c.reason, "no swap accounting (memory.memsw.*)");
}

static void test_cgroup_missing_and_malformed(void **state)
{
    (void)state;
    struct memfit_cgroup c;
    char root[1024];
    read_cgroup("missing_stat", &c, root, sizeof(root));
    assert_int_equal(c.limit_bytes, 209715200);
    assert_int_equal(c.anon_bytes, UNKNOWN);
    assert_int_equal(c.inactive_file_bytes, UNKNOWN);
    assert_int_equal(c.working_set_bytes, 104857600); /* usage: the best bound */
    assert_string_equal(c.reason, "memory.stat missing");

    read_cgroup("malformed", &c, root, sizeof(root));
    assert_int_equal(c.own_limit_bytes, UNKNOWN);
    assert_int_equal(c.limit_bytes, UNKNOWN);
    assert_int_equal(c.usage_bytes, 104857600);
    assert_int_equal(c.anon_bytes, UNKNOWN);
    assert_int_equal(c.file_bytes, 1000);
    assert_int_equal(c.inactive_file_bytes, UNKNOWN); /* overflow */
    assert_int_equal(c.active_file_bytes, 500);
    assert_int_equal(c.shmem_bytes, UNKNOWN);
    assert_int_equal(c.working_set_bytes, 104857600);
    assert_int_equal(c.events_low, UNKNOWN);
    assert_int_equal(c.events_oom_kill, 3);
    assert_false(c.pressure.present);
    assert_non_null(strstr(c.reason, "memory.max: malformed"));
    assert_non_null(strstr(c.reason, "memory.stat: 3 malformed values (first: anon)"));
    assert_non_null(strstr(c.reason, "memory.pressure"));

    read_cgroup("no_cgroup", &c, root, sizeof(root));
    assert_int_equal(c.mode, MEMFIT_CGROUP_NONE);
    assert_int_equal(c.memory_version, 0);
    assert_int_equal(c.limit_bytes, UNKNOWN);
    assert_string_equal(c.reason, "no cgroup filesystem mounted");

    assert_int_equal(memfit_cgroup_read(fixture("v2_limit"), 4242, &c), MEMFIT_E_NOT_FOUND);
    assert_string_equal(memfit_last_error(), "no process with pid 4242");
}

static void test_proc_read(void **state)
{
    (void)state;
    const char *root = fixture("proctree");
    struct memfit_proc_mem p;
    assert_int_equal(memfit_proc_read(root, 101, &p), MEMFIT_OK);
    assert_int_equal(p.pid, 101);
    assert_int_equal(p.ppid, 100);
    assert_string_equal(p.name, "python3");
    assert_int_equal(p.rss_bytes, 524288 * KIB);
    assert_int_equal(p.rss_anon_bytes, 409600 * KIB);
    assert_int_equal(p.rss_file_bytes, 102400 * KIB);
    assert_int_equal(p.rss_shmem_bytes, 12288 * KIB);
    assert_int_equal(p.swap_bytes, 2048 * KIB);
    assert_int_equal(p.hwm_bytes, 600000 * KIB);
    assert_int_equal(p.pss_bytes, 480000 * KIB);
    assert_int_equal(p.pss_anon_bytes, 409600 * KIB);
    assert_int_equal(p.pss_file_bytes, 70400 * KIB);

    assert_int_equal(memfit_proc_read(root, 0, &p), MEMFIT_OK); /* self -> 100 */
    assert_int_equal(p.pid, 100);
    assert_string_equal(p.name, "bash");

    assert_int_equal(memfit_proc_read(root, 102, &p), MEMFIT_OK);
    assert_string_equal(p.name, "my (weird) proc");
    assert_int_equal(p.pss_bytes, UNKNOWN);
    assert_string_equal(p.reason, "smaps_rollup missing");

    assert_int_equal(memfit_proc_read_ex(root, 101, MEMFIT_PROC_STATUS_ONLY, &p), MEMFIT_OK);
    assert_int_equal(p.pss_bytes, UNKNOWN);
    assert_string_equal(p.reason, "");

    assert_int_equal(memfit_proc_read(root, 2, &p), MEMFIT_OK); /* kernel thread */
    assert_int_equal(p.rss_bytes, 0);

    p.pid = 77;
    assert_int_equal(memfit_proc_read(root, 999, &p), MEMFIT_E_NOT_FOUND);
    assert_string_equal(memfit_last_error(), "no process with pid 999");
    assert_int_equal(p.pid, 77);
}

static void test_proc_tree(void **state)
{
    (void)state;
    const char *root = fixture("proctree");
    struct memfit_proc_mem t;
    unsigned n = 0;
    assert_int_equal(memfit_proc_tree_read(root, 0, &t, &n), MEMFIT_OK);
    assert_int_equal(n, 4); /* 100, 101, 102 (a grandchild), 103 */
    assert_int_equal(t.pid, 100);
    assert_string_equal(t.name, "bash");
    assert_int_equal(t.rss_bytes, (5120 + 524288 + 65536 + 1024) * KIB);
    assert_int_equal(t.rss_anon_bytes, (2048 + 409600 + 49152 + 256) * KIB);
    assert_int_equal(t.rss_file_bytes, (3072 + 102400 + 16384 + 768) * KIB);
    assert_int_equal(t.rss_shmem_bytes, 12288 * KIB);
    assert_int_equal(t.swap_bytes, 2048 * KIB);
    assert_int_equal(t.hwm_bytes, 5120 * KIB); /* the root's own */
    assert_int_equal(t.pss_bytes, UNKNOWN);    /* 102 has no smaps_rollup */
    assert_non_null(strstr(t.reason, "pid 102: no PSS"));

    assert_int_equal(memfit_proc_tree_read(root, 103, &t, &n), MEMFIT_OK);
    assert_int_equal(n, 1);
    assert_int_equal(t.pss_bytes, 600 * KIB);

    assert_int_equal(memfit_proc_tree_read_ex(root, 1, MEMFIT_PROC_STATUS_ONLY, &t, &n), MEMFIT_OK);
    assert_int_equal(n, 6); /* everything but kthreadd */
    assert_int_equal(t.rss_bytes, (12288 + 5120 + 524288 + 65536 + 1024 + 262144) * KIB);
    assert_int_equal(memfit_proc_tree_read(root, 31337, &t, &n), MEMFIT_E_NOT_FOUND);
}

static void test_proc_top(void **state)
{
    (void)state;
    const char *root = fixture("proctree");
    struct memfit_proc_mem top[10];
    unsigned n = 0;
    assert_int_equal(memfit_proc_top(root, top, 3, &n), MEMFIT_OK);
    assert_int_equal(n, 3);
    assert_int_equal(top[0].pid, 101);
    assert_int_equal(top[1].pid, 200);
    assert_int_equal(top[2].pid, 102);
    assert_int_equal(top[1].rss_bytes, 262144 * KIB);
    assert_int_equal(memfit_proc_top(root, top, 10, &n), MEMFIT_OK);
    assert_int_equal(n, 7);
    for (unsigned i = 1; i < n; i++)
        assert_true(top[i - 1].rss_bytes >= top[i].rss_bytes);
    assert_int_equal(memfit_proc_top(root, top, 0, &n), MEMFIT_OK);
    assert_int_equal(n, 0);
}

struct tree_ctx {
    const char *root;
    struct memfit_proc_mem out;
};

static enum memfit_status tree_op(void *ctx)
{
    struct tree_ctx *t = ctx;
    return memfit_proc_tree_read(t->root, 0, &t->out, NULL);
}

static void test_proc_tree_alloc_failures(void **state)
{
    (void)state;
    struct tree_ctx t = {fixture("proctree"), {0}};
    assert_true(mf_test_alloc_failures(tree_op, NULL, &t) >= 3);
}

static bool count_line(char *line, size_t len, void *ctx)
{
    size_t *seen = ctx;
    assert_int_equal(strlen(line), len);
    if (line[0] == 'x')
        seen[0]++;
    else
        seen[1]++;
    return true;
}

/* The line reader keeps lines across its buffer and skips ones too long. */
static void test_read_lines(void **state)
{
    (void)state;
    const char *path = "test_sys_lines.txt";
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < 3000; i++)
        fprintf(f, "x line %d of a file larger than the buffer\n", i);
    for (int i = 0; i < 20000; i++)
        fputc('y', f);
    fputs("\nx last without newline", f);
    fclose(f);
    size_t seen[2] = {0, 0};
    assert_int_equal(mf_sys_read_lines(path, count_line, seen), 0);
    assert_int_equal(seen[0], 3001);
    assert_int_equal(seen[1], 0);
    remove(path);

    char text[64];
    size_t len;
    f = fopen(path, "w");
    fputs("a 1\nb 2\nc 3333333333333333333333333\n", f);
    fclose(f);
    assert_int_equal(mf_sys_read_text(path, text, 12, &len), E2BIG);
    assert_string_equal(text, "a 1\nb 2\n");
    remove(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_meminfo),
        cmocka_unit_test(test_psi),
        cmocka_unit_test(test_cgroup_v2_limit),
        cmocka_unit_test(test_cgroup_v2_nolimit_old_kernel),
        cmocka_unit_test(test_cgroup_v2_nested),
        cmocka_unit_test(test_cgroup_v2_container),
        cmocka_unit_test(test_cgroup_v1_limit),
        cmocka_unit_test(test_cgroup_v1_nolimit),
        cmocka_unit_test(test_cgroup_hybrid),
        cmocka_unit_test(test_cgroup_v1_container),
        cmocka_unit_test(test_cgroup_missing_and_malformed),
        cmocka_unit_test(test_proc_read),
        cmocka_unit_test(test_proc_tree),
        cmocka_unit_test(test_proc_top),
        cmocka_unit_test(test_proc_tree_alloc_failures),
        cmocka_unit_test(test_read_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests of src/sys on the live machine: only invariants that hold on
 * any Linux system (a container, a VM, cgroup v1, v2 or none), plus the
 * report snapshot and its JSON, with allocation fault injection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "memfit/sys.h"
#include "test_util.h"

#define UNKNOWN MEMFIT_SYS_UNKNOWN

static void test_live_meminfo(void **state)
{
    (void)state;
    struct memfit_meminfo m;
    assert_int_equal(memfit_meminfo_read(NULL, &m), MEMFIT_OK);
    assert_true(m.total_bytes > 0 && m.total_bytes != UNKNOWN);
    assert_true(m.available_bytes <= m.total_bytes);
    assert_int_equal(memfit_meminfo_read("/", &m), MEMFIT_OK);
}

static void test_live_psi(void **state)
{
    (void)state;
    struct memfit_psi p;
    assert_int_equal(memfit_psi_read("/proc/pressure/memory", &p), MEMFIT_OK);
    if (p.present)
        assert_true(p.some_avg10 >= 0 && p.some_avg10 <= 100 && p.some_total_us != UNKNOWN);
}

static void test_live_cgroup(void **state)
{
    (void)state;
    struct memfit_cgroup c;
    assert_int_equal(memfit_cgroup_read(NULL, 0, &c), MEMFIT_OK);
    if (c.memory_version == 0) {
        assert_true(c.reason[0] != '\0');
        return;
    }
    assert_true(c.memory_version == 1 || c.memory_version == 2);
    assert_true(c.mode != MEMFIT_CGROUP_NONE);
    assert_true(c.path[0] == '/');
    if (c.usage_bytes != UNKNOWN && c.working_set_bytes != UNKNOWN)
        assert_true(c.working_set_bytes <= c.usage_bytes);
    if (c.limit_bytes != UNKNOWN && c.own_limit_bytes != UNKNOWN)
        assert_true(c.limit_bytes <= c.own_limit_bytes);
    /* The same process, by pid. */
    struct memfit_cgroup d;
    assert_int_equal(memfit_cgroup_read(NULL, getpid(), &d), MEMFIT_OK);
    assert_string_equal(d.dir, c.dir);
    assert_int_equal(memfit_cgroup_read(NULL, 999999999, &d), MEMFIT_E_NOT_FOUND);
    assert_string_equal(memfit_last_error(), "no process with pid 999999999");
}

static void test_live_proc(void **state)
{
    (void)state;
    struct memfit_proc_mem p;
    assert_int_equal(memfit_proc_read(NULL, getpid(), &p), MEMFIT_OK);
    assert_int_equal(p.pid, getpid());
    assert_int_equal(p.ppid, getppid());
    assert_true(p.rss_bytes > 0 && p.rss_bytes != UNKNOWN);
    assert_true(p.hwm_bytes >= p.rss_bytes / 2); /* counters are asynchronous */
    assert_true(p.name[0] != '\0');
    assert_int_equal(memfit_proc_read(NULL, 0, &p), MEMFIT_OK);
    assert_int_equal(p.pid, getpid());
    assert_int_equal(memfit_proc_read(NULL, 999999999, &p), MEMFIT_E_NOT_FOUND);
    assert_string_equal(memfit_last_error(), "no process with pid 999999999");
}

static void test_live_tree_with_child(void **state)
{
    (void)state;
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        close(ready[0]);
        if (write(ready[1], "x", 1) != 1)
            _exit(1);
        pause();
        _exit(0);
    }
    close(ready[1]);
    char c;
    assert_int_equal(read(ready[0], &c, 1), 1);
    close(ready[0]);

    struct memfit_proc_mem self, tree;
    unsigned n = 0;
    assert_int_equal(memfit_proc_read_ex(NULL, 0, MEMFIT_PROC_STATUS_ONLY, &self), MEMFIT_OK);
    assert_int_equal(memfit_proc_tree_read(NULL, 0, &tree, &n), MEMFIT_OK);
    assert_true(n >= 2);
    assert_int_equal(tree.pid, getpid());
    assert_true(tree.rss_bytes > self.rss_bytes / 2);
    unsigned n_child = 0;
    assert_int_equal(memfit_proc_tree_read(NULL, child, &tree, &n_child), MEMFIT_OK);
    assert_int_equal(n_child, 1);
    assert_int_equal(tree.ppid, getpid());

    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
}

static void test_live_top(void **state)
{
    (void)state;
    struct memfit_proc_mem top[8];
    unsigned n = 0;
    assert_int_equal(memfit_proc_top(NULL, top, 8, &n), MEMFIT_OK);
    assert_true(n >= 1 && n <= 8);
    for (unsigned i = 1; i < n; i++)
        assert_true(top[i - 1].rss_bytes >= top[i].rss_bytes);
    assert_true(top[0].rss_bytes > 0);
}

static struct memfit_report report;

static void test_live_report(void **state)
{
    (void)state;
    struct memfit_report_options o;
    memfit_report_options_default(&o);
    assert_int_equal(o.top_n, 5);
    o.pid = getpid();
    o.top_n = 3;
    assert_int_equal(memfit_report_collect(&o, &report), MEMFIT_OK);
    assert_true(report.has_process);
    assert_int_equal(report.process.pid, getpid());
    assert_true(report.n_top >= 1 && report.n_top <= 3);
    assert_true(report.limit_bytes > 0 && report.limit_bytes <= report.system.total_bytes);
    assert_true(report.working_set_bytes <= report.limit_bytes);
    assert_true(report.percent >= 0 && report.percent <= 100);
    assert_true(strcmp(report.level, "ok") == 0 || strcmp(report.level, "warning") == 0 ||
                strcmp(report.level, "critical") == 0 || strcmp(report.level, "danger") == 0);
    char *json = NULL;
    assert_int_equal(memfit_report_to_json(&report, &json), MEMFIT_OK);
    assert_non_null(strstr(json, "\"summary\""));
    assert_non_null(strstr(json, "\"limit_source\""));
    memfit_free(json);

    o.pid = 999999999;
    report.n_top = 77;
    assert_int_equal(memfit_report_collect(&o, &report), MEMFIT_E_NOT_FOUND);
    assert_int_equal(report.n_top, 77); /* untouched on failure */
}

static enum memfit_status collect_op(void *ctx)
{
    struct memfit_report_options *o = ctx;
    return memfit_report_collect(o, &report);
}

static enum memfit_status json_op(void *ctx)
{
    return memfit_report_to_json(&report, (char **)ctx);
}

static void free_json(void *ctx)
{
    char **json = ctx;
    memfit_free(*json);
    *json = NULL;
}

static void test_report_alloc_failures(void **state)
{
    (void)state;
    struct memfit_report_options o;
    memfit_report_options_default(&o);
    o.pid = getpid();
    assert_true(mf_test_alloc_failures(collect_op, NULL, &o) >= 3);
    char *json = NULL;
    assert_true(mf_test_alloc_failures(json_op, free_json, &json) >= 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_live_meminfo),         cmocka_unit_test(test_live_psi),
        cmocka_unit_test(test_live_cgroup),          cmocka_unit_test(test_live_proc),
        cmocka_unit_test(test_live_tree_with_child), cmocka_unit_test(test_live_top),
        cmocka_unit_test(test_live_report),          cmocka_unit_test(test_report_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

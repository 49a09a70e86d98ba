/* Unit tests of the NVML reader (src/sys/gpu_nvml.c) without a GPU: the test
 * builds fake libnvidia-ml shared libraries with `cc -shared` at run time
 * (a new one with the _v2/_v3 entry points, an old one without, one whose
 * init fails) and loads them through MEMFIT_NVML_LIBRARY. Skipped when no
 * C compiler is available. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <unistd.h>

#include "memfit/sys.h"
#include "test_util.h"

#define GIB (1024ull * 1024 * 1024)
#define MIB (1024ull * 1024)

/* The NVML API as documented, implemented for two fake devices. */
static const char fake_source[] =
    "#include <stdio.h>\n"
    "#include <stdint.h>\n"
    "#include <stdlib.h>\n"
    "typedef struct dev *nvmlDevice_t;\n"
    "struct mem1 { unsigned long long total, free, used; };\n"
    "struct mem2 { unsigned version; unsigned long long total, reserved, free, used; };\n"
    "struct proc1 { unsigned pid; unsigned long long used; };\n"
    "struct proc2 { unsigned pid; unsigned long long used; unsigned gi, ci; };\n"
    "#define GIB (1024ull * 1024 * 1024)\n"
    "static int up;\n"
    "int nvmlInit_v2(void) { if (getenv(\"FAKE_NVML_FAIL\")) return 9; up = 1; return 0; }\n"
    "int nvmlShutdown(void) { up = 0; return 0; }\n"
    "const char *nvmlErrorString(int r) { return r == 9 ? \"Driver Not Loaded\" : \"Unknown\"; }\n"
    "int nvmlSystemGetDriverVersion(char *v, unsigned n) { snprintf(v, n, \"550.54.15\"); "
    "return 0; }\n"
    "int nvmlDeviceGetCount_v2(unsigned *n) { if (!up) return 1; *n = 2; return 0; }\n"
    "int nvmlDeviceGetHandleByIndex_v2(unsigned i, nvmlDevice_t *d) {\n"
    "  if (i >= 2) return 2; *d = (nvmlDevice_t)(uintptr_t)(i + 1); return 0; }\n"
    "int nvmlDeviceGetName(nvmlDevice_t d, char *s, unsigned n) {\n"
    "  snprintf(s, n, \"Fake GPU %u\", (unsigned)(uintptr_t)d - 1); return 0; }\n"
    "int nvmlDeviceGetMemoryInfo(nvmlDevice_t d, struct mem1 *m) {\n"
    "  m->total = 16 * GIB; m->used = 4 * GIB; m->free = 12 * GIB; return 0; }\n"
    "int nvmlDeviceGetComputeRunningProcesses(nvmlDevice_t d, unsigned *n, struct proc1 *p) {\n"
    "  unsigned k = (uintptr_t)d == 1 ? 1 : 0;\n"
    "  if (*n < k) { *n = k; return 7; }\n"
    "  *n = k; if (k) { p[0].pid = 4321; p[0].used = 2 * GIB; } return 0; }\n"
    "#ifndef OLD\n"
    "int nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t d, struct mem2 *m) {\n"
    "  if (m->version != (sizeof(struct mem2) | 2u << 24)) return 2;\n"
    "  m->total = 80 * GIB; m->reserved = GIB / 2; m->used = 10 * GIB;\n"
    "  m->free = 70 * GIB - GIB / 2; return 0; }\n"
    "int nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t d, unsigned *n, struct proc2 *p) "
    "{\n"
    "  unsigned k = (uintptr_t)d == 1 ? 2 : 0;\n"
    "  if (*n < k) { *n = k; return 7; }\n"
    "  *n = k;\n"
    "  if (k) { p[0].pid = 1234; p[0].used = GIB; p[1].pid = 5678; p[1].used = ~0ull; }\n"
    "  return 0; }\n"
    "#endif\n";

static char dir[256];
static char lib_new[512], lib_old[512];

static int setup(void **state)
{
    (void)state;
    if (system("command -v cc >/dev/null 2>&1") != 0)
        MF_TEST_SKIP_ALL("no C compiler (cc) to build the fake NVML library");
    snprintf(dir, sizeof(dir), "/tmp/memfit_nvml_XXXXXX");
    assert_non_null(mkdtemp(dir));
    char src[400], cmd[2048];
    snprintf(src, sizeof(src), "%s/fake_nvml.c", dir);
    FILE *f = fopen(src, "w");
    assert_non_null(f);
    fputs(fake_source, f);
    fclose(f);
    snprintf(lib_new, sizeof(lib_new), "%s/libfake-new.so", dir);
    snprintf(lib_old, sizeof(lib_old), "%s/libfake-old.so", dir);
    /* Sanitizer options of this process must not reach the compiler. */
    snprintf(cmd, sizeof(cmd),
             "env -u ASAN_OPTIONS -u UBSAN_OPTIONS cc -shared -fPIC -o %s %s && "
             "env -u ASAN_OPTIONS -u UBSAN_OPTIONS cc -shared -fPIC -DOLD -o %s %s",
             lib_new, src, lib_old, src);
    if (system(cmd) != 0)
        MF_TEST_SKIP_ALL("cc could not build a shared library");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void read_with(const char *lib, struct memfit_gpu_info *info)
{
    setenv("MEMFIT_NVML_LIBRARY", lib, 1);
    memfit_gpu *g = NULL;
    assert_int_equal(memfit_gpu_open(&g), MEMFIT_OK);
    assert_non_null(g);
    assert_int_equal(memfit_gpu_read(g, info), MEMFIT_OK);
    memfit_gpu_close(g);
    unsetenv("MEMFIT_NVML_LIBRARY");
}

static void test_new_driver(void **state)
{
    (void)state;
    static struct memfit_gpu_info info;
    read_with(lib_new, &info);
    assert_true(info.available);
    assert_string_equal(info.state, "2 devices");
    assert_string_equal(info.driver_version, "550.54.15");
    assert_int_equal(info.n_devices, 2);
    assert_string_equal(info.devices[1].name, "Fake GPU 1");
    assert_int_equal(info.devices[1].index, 1);
    assert_int_equal(info.devices[0].total_bytes, 80 * GIB);
    assert_int_equal(info.devices[0].used_bytes, 10 * GIB);
    assert_int_equal(info.devices[0].reserved_bytes, 512 * MIB);
    assert_int_equal(info.devices[0].free_bytes, 70 * GIB - 512 * MIB);
    assert_int_equal(info.n_processes, 2);
    assert_int_equal(info.processes[0].device, 0);
    assert_int_equal(info.processes[0].pid, 1234);
    assert_int_equal(info.processes[0].used_bytes, GIB);
    assert_int_equal(info.processes[1].pid, 5678);
    assert_int_equal(info.processes[1].used_bytes, MEMFIT_SYS_UNKNOWN); /* not available */
}

static void test_old_driver(void **state)
{
    (void)state;
    static struct memfit_gpu_info info;
    read_with(lib_old, &info);
    assert_true(info.available);
    assert_int_equal(info.n_devices, 2);
    assert_int_equal(info.devices[0].total_bytes, 16 * GIB);
    assert_int_equal(info.devices[0].reserved_bytes, MEMFIT_SYS_UNKNOWN);
    assert_int_equal(info.n_processes, 1);
    assert_int_equal(info.processes[0].pid, 4321);
    assert_int_equal(info.processes[0].used_bytes, 2 * GIB);
}

static void test_no_gpu(void **state)
{
    (void)state;
    static struct memfit_gpu_info info;
    setenv("FAKE_NVML_FAIL", "1", 1);
    read_with(lib_new, &info);
    unsetenv("FAKE_NVML_FAIL");
    assert_false(info.available);
    assert_string_equal(info.state, "no GPU: nvmlInit_v2 failed: Driver Not Loaded (9)");

    char missing[600];
    snprintf(missing, sizeof(missing), "%s/libnvidia-ml.so.1", dir);
    read_with(missing, &info);
    assert_false(info.available);
    assert_non_null(strstr(info.state, "no GPU: "));
    assert_non_null(strstr(info.state, "not found"));
    memfit_gpu_close(NULL);
}

static enum memfit_status open_op(void *ctx)
{
    return memfit_gpu_open((memfit_gpu **)ctx);
}

static void close_op(void *ctx)
{
    memfit_gpu_close(*(memfit_gpu **)ctx);
}

static void test_open_alloc_failures(void **state)
{
    (void)state;
    setenv("MEMFIT_NVML_LIBRARY", lib_new, 1);
    memfit_gpu *g = NULL;
    assert_true(mf_test_alloc_failures(open_op, close_op, &g) >= 1);
    unsetenv("MEMFIT_NVML_LIBRARY");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_driver),
        cmocka_unit_test(test_old_driver),
        cmocka_unit_test(test_no_gpu),
        cmocka_unit_test(test_open_alloc_failures),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

/* Unit tests of the budget every entry point shares (memfit_budget_resolve:
 * flag > environment > .env > manifest > 80% of the effective limit), with
 * the exact source strings printed at start and the messages for bad values.
 * The limit comes from fixture trees (tests/fixtures/sys/). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "memfit/manager.h"
#include "memfit/sys.h"
#include "test_util.h"

#define MIB (1024ull * 1024)
#define GIB (1024ull * MIB)

static char workdir[256];

static void write_dotenv(const char *text)
{
    FILE *f = fopen(".env", "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(memfit_config_load_dotenv(".env"), MEMFIT_OK);
}

static void clear_config(void)
{
    unsetenv("MEMFIT_MAX_MEMORY_MB");
    unsetenv("MAX_MEMORY_USAGE_MB");
    memfit_config_reset();
}

/* Each budget test runs in its own empty working directory, with no setting. */
static int enter_workdir(void **state)
{
    (void)state;
    snprintf(workdir, sizeof(workdir), "%s/memfit-budget-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(workdir) || chdir(workdir) != 0)
        return -1;
    clear_config();
    return 0;
}

static int leave_workdir(void **state)
{
    (void)state;
    clear_config();
    unlink(".env");
    int rc = chdir("/");
    return rc == 0 && rmdir(workdir) == 0 ? 0 : -1;
}

/* Settings with nothing given, the limit read from tests/fixtures/sys/NAME. */
static void settings(struct memfit_budget_settings *s, const char *name)
{
    static char root[1024];
    char rel[256];
    snprintf(rel, sizeof(rel), "sys/%s", name);
    memfit_budget_settings_default(s);
    s->root = mf_test_fixture(rel, root, sizeof(root));
}

static void expect_budget(const struct memfit_budget_settings *s, uint64_t bytes,
                          const char *source)
{
    uint64_t got = 0;
    char text[256];
    enum memfit_status st = memfit_budget_resolve(s, &got, text, sizeof(text));
    if (st != MEMFIT_OK)
        fail_msg("%s", memfit_last_error());
    assert_int_equal(got, bytes);
    assert_string_equal(text, source);
}

static void test_budget_precedence(void **state)
{
    (void)state;
    struct memfit_budget_settings s;
    settings(&s, "v2_limit");
    s.flag_bytes = 300 * MIB;
    s.manifest_bytes = 200 * MIB;
    s.manifest_path = "memfit.yaml";
    setenv("MEMFIT_MAX_MEMORY_MB", "1024", 1);
    write_dotenv("MAX_MEMORY_USAGE_MB=512\n");

    expect_budget(&s, 300 * MIB, "--budget 300 MiB");
    s.flag_text = "300MB";
    expect_budget(&s, 300 * MIB, "--budget 300MB");
    s.flag_bytes = 0;
    expect_budget(&s, 1024 * MIB, "MEMFIT_MAX_MEMORY_MB=1024 (environment)");
    unsetenv("MEMFIT_MAX_MEMORY_MB");
    expect_budget(&s, 512 * MIB, "MAX_MEMORY_USAGE_MB=512 (.env)");
    write_dotenv("# nothing\n");
    expect_budget(&s, 200 * MIB, "memfit.yaml: budget 200 MiB");
    s.manifest_bytes = 0;
    expect_budget(&s, (uint64_t)(GIB * 0.8), "80% of cgroup limit 1.00 GiB");
    /* Without a cgroup limit the default is a share of physical memory. */
    settings(&s, "v2_nolimit");
    expect_budget(&s, (uint64_t)(8 * GIB * 0.8), "80% of physical memory 8.00 GiB");
}

static void test_budget_aliases(void **state)
{
    (void)state;
    struct memfit_budget_settings s;
    settings(&s, "v2_limit");
    /* The older name works alone, in the environment and in .env. */
    setenv("MAX_MEMORY_USAGE_MB", "256", 1);
    expect_budget(&s, 256 * MIB, "MAX_MEMORY_USAGE_MB=256 (environment)");
    /* The MEMFIT_ name wins over its alias in the same place. */
    setenv("MEMFIT_MAX_MEMORY_MB", "1.5GiB", 1);
    expect_budget(&s, 1536 * MIB, "MEMFIT_MAX_MEMORY_MB=1.5GiB (environment)");
    /* The environment, under any name, wins over .env. */
    unsetenv("MEMFIT_MAX_MEMORY_MB");
    write_dotenv("MEMFIT_MAX_MEMORY_MB=128\n");
    expect_budget(&s, 256 * MIB, "MAX_MEMORY_USAGE_MB=256 (environment)");
    unsetenv("MAX_MEMORY_USAGE_MB");
    expect_budget(&s, 128 * MIB, "MEMFIT_MAX_MEMORY_MB=128 (.env)");
    write_dotenv("MAX_MEMORY_USAGE_MB=64\nMEMFIT_MAX_MEMORY_MB=2GiB\n");
    expect_budget(&s, 2 * GIB, "MEMFIT_MAX_MEMORY_MB=2GiB (.env)");
    /* An empty value counts as unset. */
    write_dotenv("MAX_MEMORY_USAGE_MB=\n");
    expect_budget(&s, (uint64_t)(GIB * 0.8), "80% of cgroup limit 1.00 GiB");
}

static void expect_error(const struct memfit_budget_settings *s, enum memfit_status status,
                         const char *message)
{
    uint64_t bytes = 42;
    char source[64] = "untouched";
    assert_int_equal(memfit_budget_resolve(s, &bytes, source, sizeof(source)), status);
    assert_string_equal(memfit_last_error(), message);
    /* A failed call writes nothing. */
    assert_int_equal(bytes, 42);
    assert_string_equal(source, "untouched");
}

static void test_budget_bad_values(void **state)
{
    (void)state;
    struct memfit_budget_settings s;
    settings(&s, "v2_limit");
    write_dotenv("MAX_MEMORY_USAGE_MB=lots\n");
    expect_error(&s, MEMFIT_E_RANGE,
                 "MAX_MEMORY_USAGE_MB=lots (.env): expected a size in MiB or with a unit");
    setenv("MEMFIT_MAX_MEMORY_MB", "0", 1);
    expect_error(&s, MEMFIT_E_RANGE,
                 "MEMFIT_MAX_MEMORY_MB=0 (environment): expected a size in MiB or with a unit");
    setenv("MEMFIT_MAX_MEMORY_MB", "12 parsecs", 1);
    expect_error(&s, MEMFIT_E_RANGE,
                 "MEMFIT_MAX_MEMORY_MB=12 parsecs (environment): expected a size in MiB or with "
                 "a unit");
    /* The flag is above a bad setting: it is never looked at. */
    s.flag_bytes = MIB;
    expect_budget(&s, MIB, "--budget 1.00 MiB");
    clear_config();

    s.flag_bytes = 0;
    s.manifest_path = "/etc/memfit/memfit.yaml";
    s.manifest_percent = 150;
    expect_error(&s, MEMFIT_E_RANGE,
                 "/etc/memfit/memfit.yaml: budget 150%: expected a percent above 0 and at most "
                 "100");
    settings(&s, "does_not_exist");
    s.manifest_path = "/etc/memfit/memfit.yaml";
    s.manifest_percent = 50;
    expect_error(&s, MEMFIT_E_RANGE,
                 "no memory budget: /etc/memfit/memfit.yaml: budget 50% of the memory limit, but "
                 "neither a cgroup limit nor physical memory could be read; give --budget or set "
                 "MEMFIT_MAX_MEMORY_MB");
    s.manifest_percent = 0;
    expect_error(&s, MEMFIT_E_RANGE,
                 "no memory budget: 80% of the memory limit, but neither a cgroup limit nor "
                 "physical memory could be read; give --budget or set MEMFIT_MAX_MEMORY_MB");
    settings(&s, "v2_limit");
    s.pid = 4242;
    expect_error(&s, MEMFIT_E_NOT_FOUND, "no process with pid 4242");

    uint64_t bytes;
    assert_int_equal(memfit_budget_resolve(NULL, &bytes, NULL, 0), MEMFIT_E_MISUSE);
    assert_int_equal(memfit_budget_resolve(&s, NULL, NULL, 0), MEMFIT_E_MISUSE);
}

static void test_budget_percent_of_limit(void **state)
{
    (void)state;
    struct memfit_budget_settings s;
    settings(&s, "v2_limit");
    s.manifest_path = "memfit.yaml";
    s.manifest_percent = 50;
    expect_budget(&s, 512 * MIB, "memfit.yaml: budget 50% of cgroup limit 1.00 GiB");
    s.manifest_percent = 12.5;
    expect_budget(&s, 128 * MIB, "memfit.yaml: budget 12.5% of cgroup limit 1.00 GiB");
    /* The environment still wins over a manifest percent. */
    setenv("MAX_MEMORY_USAGE_MB", "100", 1);
    expect_budget(&s, 100 * MIB, "MAX_MEMORY_USAGE_MB=100 (environment)");
    unsetenv("MAX_MEMORY_USAGE_MB");
    settings(&s, "v2_container");
    s.manifest_percent = 25;
    expect_budget(&s, 128 * MIB, "manifest: budget 25% of cgroup limit 512 MiB");

    /* The source may be left out or cut short; the size is the same. */
    uint64_t bytes = 0;
    assert_int_equal(memfit_budget_resolve(&s, &bytes, NULL, 0), MEMFIT_OK);
    assert_int_equal(bytes, 128 * MIB);
    char small[9];
    assert_int_equal(memfit_budget_resolve(&s, &bytes, small, sizeof(small)), MEMFIT_OK);
    assert_string_equal(small, "manifest");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_budget_precedence, enter_workdir, leave_workdir),
        cmocka_unit_test_setup_teardown(test_budget_aliases, enter_workdir, leave_workdir),
        cmocka_unit_test_setup_teardown(test_budget_bad_values, enter_workdir, leave_workdir),
        cmocka_unit_test_setup_teardown(test_budget_percent_of_limit, enter_workdir, leave_workdir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

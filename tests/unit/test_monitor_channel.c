/* Unit tests of the pressure channel (docs/channel.md): the step measured on
 * a sawtooth, the noise floor, the window size, the batch factor's formula,
 * bounds and no-step defaults, the state line's fields, and the writer's
 * directory, atomic state file and clean-up. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "memfit/monitor.h"
#include "test_util.h"

#define MIB (1024ull * 1024ull)

/* A sawtooth: from `base` up by `amplitude` in `rise_steps`, then back down. */
static void sawtooth(uint64_t *v, size_t n, uint64_t base, uint64_t amplitude, size_t rise_steps)
{
    for (size_t i = 0; i < n; i++)
        v[i] = base + amplitude * (i % (rise_steps + 1)) / rise_steps;
}

static void test_step_of_a_sawtooth(void **state)
{
    (void)state;
    uint64_t v[64];
    sawtooth(v, 64, 500 * MIB, 20 * MIB, 4);
    assert_int_equal(memfit_channel_step_bytes(v, 64), 20 * MIB);
    /* Starting mid-rise, and with some jitter: still about the amplitude. */
    for (size_t i = 0; i < 64; i++)
        v[i] += (i * 7919 % 13) * 4096;
    uint64_t step = memfit_channel_step_bytes(v + 2, 62);
    assert_true(step >= 20 * MIB && step <= 20 * MIB + 13 * 4096);
    /* Unknown values are skipped. */
    v[10] = MEMFIT_SYS_UNKNOWN;
    assert_true(memfit_channel_step_bytes(v, 64) >= 20 * MIB);
}

static void test_step_noise_and_falls(void **state)
{
    (void)state;
    uint64_t flat[32];
    sawtooth(flat, 32, 300 * MIB, MIB - 1, 3); /* rises under 1 MiB: noise */
    assert_int_equal(memfit_channel_step_bytes(flat, 32), 0);
    uint64_t falling[] = {400 * MIB, 300 * MIB, 200 * MIB, 100 * MIB};
    assert_int_equal(memfit_channel_step_bytes(falling, 4), 0);
    assert_int_equal(memfit_channel_step_bytes(falling, 0), 0);
    uint64_t one[] = {100 * MIB, 90 * MIB, 130 * MIB, 95 * MIB, 120 * MIB};
    assert_int_equal(memfit_channel_step_bytes(one, 5), 40 * MIB); /* trough before peak */
}

static void test_window_size(void **state)
{
    (void)state;
    assert_int_equal(memfit_channel_window(1.0), 64);   /* 64 samples > 10 s */
    assert_int_equal(memfit_channel_window(0.5), 64);   /* 20 < 64 */
    assert_int_equal(memfit_channel_window(0.1), 100);  /* 10 s = 100 samples */
    assert_int_equal(memfit_channel_window(0.05), 200); /* 10 s = 200 samples */
    assert_int_equal(memfit_channel_window(0.001), MEMFIT_CHANNEL_WINDOW_MAX);
    assert_int_equal(memfit_channel_window(0.0), 64);
}

static void test_batch_factor(void **state)
{
    (void)state;
    /* No measured step: by level. */
    assert_true(memfit_channel_batch_factor(MEMFIT_LEVEL_OK, 0, 0) == 1.0);
    assert_true(memfit_channel_batch_factor(MEMFIT_LEVEL_WARNING, 0, -5) == 0.5);
    assert_true(memfit_channel_batch_factor(MEMFIT_LEVEL_CRITICAL, 0, 0) == 0.25);
    assert_true(memfit_channel_batch_factor(MEMFIT_LEVEL_DANGER, 0, 0) == 0.125);
    /* (step + headroom) / step. */
    int64_t step = 10 * MIB;
    assert_true(memfit_channel_batch_factor(MEMFIT_LEVEL_OK, step, 5 * MIB) == 1.5);
    assert_true(memfit_channel_batch_factor(MEMFIT_LEVEL_OK, step, 0) == 1.0);
    assert_true(memfit_channel_batch_factor(MEMFIT_LEVEL_OK, step, -7.5 * MIB) == 0.25);
    /* Bounded to [0.125, 2]. */
    assert_true(memfit_channel_batch_factor(MEMFIT_LEVEL_OK, step, 1000 * MIB) == 2.0);
    assert_true(memfit_channel_batch_factor(MEMFIT_LEVEL_CRITICAL, step, -100 * MIB) == 0.125);
    /* At warning and above at most 0.5, even with room left (hysteresis). */
    assert_true(memfit_channel_batch_factor(MEMFIT_LEVEL_WARNING, step, 5 * MIB) == 0.5);
    assert_true(memfit_channel_batch_factor(MEMFIT_LEVEL_WARNING, step, -8 * MIB) ==
                0.2); /* (10 - 8) / 10 */
}

static void test_headroom(void **state)
{
    (void)state;
    struct memfit_alert_thresholds t = memfit_alert_thresholds_default(); /* warning 80 % */
    assert_int_equal(memfit_channel_headroom_bytes(&t, 700 * MIB, 1000 * MIB), 100 * MIB);
    assert_int_equal(memfit_channel_headroom_bytes(&t, 900 * MIB, 1000 * MIB),
                     (int64_t)(-100 * (int64_t)MIB));
    assert_int_equal(memfit_channel_headroom_bytes(&t, MEMFIT_SYS_UNKNOWN, 1000 * MIB), 0);
    assert_int_equal(memfit_channel_headroom_bytes(&t, 1, 0), 0);
}

static void test_format_fields(void **state)
{
    (void)state;
    struct memfit_channel_state st = {
        .seq = 42,
        .wall_ns = 1796601600125000000ull,
        .interval_s = 1.0,
        .monitor_pid = 4321,
        .pid = 4322,
        .scope = MEMFIT_SCOPE_CGROUP,
        .level = MEMFIT_LEVEL_WARNING,
        .level_since_wall_ns = 1796601598100000000ull,
        .percent = 83.4,
        .in_use_bytes = 223789056,
        .limit_bytes = 268435456,
        .available_bytes = MEMFIT_SYS_UNKNOWN,
        .headroom_bytes = -9041920,
        .step_bytes = 20971520,
        .batch_factor = 0.5,
    };
    char line[1024];
    size_t len = memfit_channel_format(&st, line, sizeof(line));
    assert_true(len > 0 && len == strlen(line) && line[len - 1] == '\n');
    assert_true(strchr(line, '\n') == line + len - 1); /* one line */
    json_error_t err;
    json_t *o = json_loads(line, 0, &err);
    assert_non_null(o);
    assert_int_equal(json_integer_value(json_object_get(o, "v")), 1);
    assert_int_equal(json_integer_value(json_object_get(o, "seq")), 42);
    assert_true(fabs(json_real_value(json_object_get(o, "time")) - 1796601600.125) < 1e-3);
    assert_int_equal(json_integer_value(json_object_get(o, "monitor_pid")), 4321);
    assert_int_equal(json_integer_value(json_object_get(o, "pid")), 4322);
    assert_string_equal(json_string_value(json_object_get(o, "scope")), "cgroup");
    assert_string_equal(json_string_value(json_object_get(o, "level")), "warning");
    assert_true(json_is_real(json_object_get(o, "level_since")));
    assert_true(fabs(json_number_value(json_object_get(o, "percent")) - 83.4) < 0.01);
    assert_int_equal(json_integer_value(json_object_get(o, "in_use_bytes")), 223789056);
    assert_int_equal(json_integer_value(json_object_get(o, "limit_bytes")), 268435456);
    assert_true(json_is_null(json_object_get(o, "available_bytes")));
    assert_int_equal(json_integer_value(json_object_get(o, "headroom_bytes")), -9041920);
    assert_int_equal(json_integer_value(json_object_get(o, "step_bytes")), 20971520);
    assert_true(json_number_value(json_object_get(o, "batch_factor")) == 0.5);
    json_decref(o);
    st.pid = 0;
    assert_true(memfit_channel_format(&st, line, sizeof(line)) > 0);
    assert_non_null(strstr(line, "\"pid\":null"));
    /* Too small a buffer: 0, not a cut line. */
    assert_int_equal(memfit_channel_format(&st, line, 40), 0);
}

/* A sample with only what the channel reads. */
static struct memfit_sample sample_of(uint64_t in_use, uint64_t limit)
{
    struct memfit_sample s = {0};
    s.wall_ns = memfit_wall_ns();
    s.scope = MEMFIT_SCOPE_PROCESS;
    s.in_use_bytes = in_use;
    s.limit_bytes = limit;
    s.available_bytes = limit - in_use;
    s.percent = 100.0 * (double)in_use / (double)limit;
    return s;
}

/* Creates an empty DIR/NAME; its path goes to `path`. */
static void make_file(const char *dir, const char *name, char *path, size_t cap)
{
    snprintf(path, cap, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
}

static json_t *read_state(const char *path)
{
    json_error_t err;
    return json_load_file(path, 0, &err);
}

static void test_channel_writes_and_cleans_up(void **state)
{
    (void)state;
    char base[] = "/tmp/memfit-channel-test-XXXXXX";
    assert_non_null(mkdtemp(base));
    setenv("TMPDIR", base, 1);
    struct memfit_channel_options o = memfit_channel_options_default();
    o.interval_s = 0.1;
    memfit_channel *ch = NULL;
    assert_int_equal(memfit_channel_open(&o, &ch), MEMFIT_OK);
    char dir[256];
    snprintf(dir, sizeof(dir), "%s", memfit_channel_dir(ch));
    assert_int_equal(strncmp(dir, base, strlen(base)), 0);
    assert_non_null(strstr(dir, "/memfit-channel-"));
    struct stat sb;
    assert_int_equal(stat(dir, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s", memfit_channel_state_path(ch));
    assert_non_null(strstr(path, "/state.json"));

    /* A sawtooth of 30 MiB over 1000 MiB: the measured step follows it. */
    uint64_t limit = 1000 * MIB;
    struct memfit_channel_state st;
    for (int i = 0; i < 40; i++) {
        struct memfit_sample s = sample_of(500 * MIB + (uint64_t)(i % 4) * 10 * MIB, limit);
        assert_int_equal(memfit_channel_update(ch, &s, 4322, MEMFIT_LEVEL_OK, s.wall_ns, &st),
                         MEMFIT_OK);
        assert_int_equal(st.seq, (uint64_t)i + 1);
        if (i == 0)
            assert_int_equal(st.step_bytes, 0);
    }
    assert_int_equal(st.step_bytes, 30 * MIB);
    /* headroom = 800 - 530 = 270 MiB: room for 9 more steps -> bounded to 2. */
    assert_int_equal(st.headroom_bytes, 270 * (int64_t)MIB);
    assert_true(st.batch_factor == 2.0);
    json_t *j = read_state(path);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "seq")), 40);
    assert_int_equal(json_integer_value(json_object_get(j, "step_bytes")), 30 * MIB);
    assert_int_equal(json_integer_value(json_object_get(j, "monitor_pid")), getpid());
    assert_string_equal(json_string_value(json_object_get(j, "scope")), "process");
    json_decref(j);
    /* No temporary file is left beside it: state.json is all there is. */
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n_entries = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            assert_string_equal(e->d_name, "state.json");
            n_entries++;
        }
    closedir(d);
    assert_int_equal(n_entries, 1);

    /* Files others left in it go too. */
    char extra[PATH_MAX];
    make_file(dir, "cleanup.done", extra, sizeof(extra));
    memfit_channel_close(ch);
    assert_int_not_equal(access(dir, F_OK), 0);
    memfit_channel_close(NULL);
    unsetenv("TMPDIR");
    assert_int_equal(rmdir(base), 0);
}

static void test_channel_given_dir(void **state)
{
    (void)state;
    char base[] = "/tmp/memfit-channel-test-XXXXXX";
    assert_non_null(mkdtemp(base));
    struct memfit_channel_options o = memfit_channel_options_default();
    o.dir = base; /* exists: left in place, less state.json */
    memfit_channel *ch = NULL;
    assert_int_equal(memfit_channel_open(&o, &ch), MEMFIT_OK);
    struct memfit_sample s = sample_of(900 * MIB, 1000 * MIB);
    struct memfit_channel_state st;
    assert_int_equal(memfit_channel_update(ch, &s, 0, MEMFIT_LEVEL_CRITICAL, s.wall_ns, &st),
                     MEMFIT_OK);
    assert_true(st.batch_factor == 0.25); /* no step yet */
    assert_int_equal(access(memfit_channel_state_path(ch), R_OK), 0);
    memfit_channel_close(ch);
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/state.json", base);
    assert_int_not_equal(access(path, F_OK), 0);
    assert_int_equal(access(base, F_OK), 0);

    /* A missing directory is made, and removed on close. */
    char sub[PATH_MAX];
    snprintf(sub, sizeof(sub), "%s/chan", base);
    o.dir = sub;
    assert_int_equal(memfit_channel_open(&o, &ch), MEMFIT_OK);
    assert_int_equal(memfit_channel_update(ch, &s, 0, MEMFIT_LEVEL_CRITICAL, s.wall_ns, NULL),
                     MEMFIT_OK);
    memfit_channel_close(ch);
    assert_int_not_equal(access(sub, F_OK), 0);

    /* Something that is not a directory: an error naming it. */
    char file[PATH_MAX];
    make_file(base, "file", file, sizeof(file));
    o.dir = file;
    assert_int_equal(memfit_channel_open(&o, &ch), MEMFIT_E_IO);
    assert_non_null(strstr(memfit_last_error(), file));
    unlink(file);
    assert_int_equal(rmdir(base), 0);
}

static enum memfit_status open_close(void *ctx)
{
    (void)ctx;
    memfit_channel *ch = NULL;
    enum memfit_status st = memfit_channel_open(NULL, &ch);
    if (st == MEMFIT_OK)
        memfit_channel_close(ch);
    return st;
}

static void test_channel_open_out_of_memory(void **state)
{
    (void)state;
    assert_true(mf_test_alloc_failures(open_close, NULL, NULL) > 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_step_of_a_sawtooth),
        cmocka_unit_test(test_step_noise_and_falls),
        cmocka_unit_test(test_window_size),
        cmocka_unit_test(test_batch_factor),
        cmocka_unit_test(test_headroom),
        cmocka_unit_test(test_format_fields),
        cmocka_unit_test(test_channel_writes_and_cleans_up),
        cmocka_unit_test(test_channel_given_dir),
        cmocka_unit_test(test_channel_open_out_of_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

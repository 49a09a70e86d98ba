/* Unit tests of the alert levels: thresholds, hysteresis (no flapping at a
 * threshold), the automatic danger headroom, and threshold validation; the
 * same for the GPU levels (80/90/95 % of each GPU's memory). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "memfit/monitor.h"

#define MIB (1024ull * 1024ull)

static void test_levels_rise_at_thresholds(void **state)
{
    (void)state;
    struct memfit_alert_thresholds t = memfit_alert_thresholds_default();
    uint64_t limit = 1000 * MIB;
    assert_int_equal(memfit_alert_next(&t, MEMFIT_LEVEL_OK, 799 * MIB, limit), MEMFIT_LEVEL_OK);
    assert_int_equal(memfit_alert_next(&t, MEMFIT_LEVEL_OK, 800 * MIB, limit),
                     MEMFIT_LEVEL_WARNING);
    assert_int_equal(memfit_alert_next(&t, MEMFIT_LEVEL_OK, 900 * MIB, limit),
                     MEMFIT_LEVEL_CRITICAL);
    /* Danger: less than min(50 MB, 5 % of the limit) = 50 MB left. */
    assert_int_equal(memfit_alert_danger_bytes(&t, limit), 50000000);
    assert_int_equal(memfit_alert_next(&t, MEMFIT_LEVEL_OK, limit - 40 * MIB, limit),
                     MEMFIT_LEVEL_DANGER);
    assert_int_equal(memfit_alert_next(&t, MEMFIT_LEVEL_OK, 2 * limit, limit), MEMFIT_LEVEL_DANGER);
}

static void test_hysteresis_prevents_flapping(void **state)
{
    (void)state;
    struct memfit_alert_thresholds t = memfit_alert_thresholds_default();
    uint64_t limit = 1000 * MIB;
    enum memfit_level level = MEMFIT_LEVEL_OK;
    /* Hovering 79.5 % .. 80.5 %: one change to warning, then none. */
    int changes = 0;
    for (int i = 0; i < 100; i++) {
        uint64_t ws = (i % 2 ? 805 : 795) * limit / 1000;
        enum memfit_level next = memfit_alert_next(&t, level, ws, limit);
        changes += next != level;
        level = next;
    }
    assert_int_equal(changes, 1);
    assert_int_equal(level, MEMFIT_LEVEL_WARNING);
    /* Back below 78 % (80 - 2) it leaves warning. */
    assert_int_equal(memfit_alert_next(&t, level, 781 * MIB, limit), MEMFIT_LEVEL_WARNING);
    assert_int_equal(memfit_alert_next(&t, level, 779 * MIB, limit), MEMFIT_LEVEL_OK);
    /* From critical, a drop to 85 % goes to warning, not ok. */
    assert_int_equal(memfit_alert_next(&t, MEMFIT_LEVEL_CRITICAL, 850 * MIB, limit),
                     MEMFIT_LEVEL_WARNING);
    assert_int_equal(memfit_alert_next(&t, MEMFIT_LEVEL_CRITICAL, 890 * MIB, limit),
                     MEMFIT_LEVEL_CRITICAL);
}

static void test_small_limit_danger_above_critical(void **state)
{
    (void)state;
    struct memfit_alert_thresholds t = memfit_alert_thresholds_default();
    uint64_t limit = 64 * MIB;
    uint64_t danger = memfit_alert_danger_bytes(&t, limit);
    assert_true(danger < limit / 10); /* inside the critical band */
    assert_int_equal(memfit_alert_next(&t, MEMFIT_LEVEL_OK, 58 * MIB, limit),
                     MEMFIT_LEVEL_CRITICAL);
    assert_int_equal(memfit_alert_next(&t, MEMFIT_LEVEL_OK, 62 * MIB, limit), MEMFIT_LEVEL_DANGER);
    t.danger_available_bytes = 10 * MIB;
    assert_int_equal(memfit_alert_next(&t, MEMFIT_LEVEL_OK, 55 * MIB, limit), MEMFIT_LEVEL_DANGER);
}

static void test_unknown_values_keep_level(void **state)
{
    (void)state;
    struct memfit_alert_thresholds t = memfit_alert_thresholds_default();
    assert_int_equal(memfit_alert_next(&t, MEMFIT_LEVEL_WARNING, MEMFIT_SYS_UNKNOWN, 100),
                     MEMFIT_LEVEL_WARNING);
    assert_int_equal(memfit_alert_next(&t, MEMFIT_LEVEL_OK, 5, 0), MEMFIT_LEVEL_OK);
}

static void test_threshold_validation(void **state)
{
    (void)state;
    struct memfit_alert_thresholds t = memfit_alert_thresholds_default();
    assert_int_equal(memfit_alert_thresholds_check(&t), MEMFIT_OK);
    t.warning_percent = 95;
    assert_int_equal(memfit_alert_thresholds_check(&t), MEMFIT_E_RANGE);
    t.warning_percent = 80;
    t.hysteresis_percent = 60;
    assert_int_equal(memfit_alert_thresholds_check(&t), MEMFIT_E_RANGE);
    assert_string_equal(memfit_level_name(MEMFIT_LEVEL_CRITICAL), "critical");
}

#define GIB (1024ull * MIB)

static void test_gpu_levels_rise_at_thresholds(void **state)
{
    (void)state;
    struct memfit_gpu_thresholds t = memfit_gpu_thresholds_default();
    assert_true(t.warning_percent == 80 && t.critical_percent == 90 && t.danger_percent == 95);
    uint64_t total = 100 * GIB;
    const struct {
        uint64_t used;
        enum memfit_level want;
    } cases[] = {
        {0, MEMFIT_LEVEL_OK},
        {80 * GIB - 1, MEMFIT_LEVEL_OK},
        {80 * GIB, MEMFIT_LEVEL_WARNING},
        {90 * GIB - 1, MEMFIT_LEVEL_WARNING},
        {90 * GIB, MEMFIT_LEVEL_CRITICAL},
        {95 * GIB, MEMFIT_LEVEL_DANGER},
        {100 * GIB, MEMFIT_LEVEL_DANGER},
        {200 * GIB, MEMFIT_LEVEL_DANGER},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(memfit_gpu_level_next(&t, MEMFIT_LEVEL_OK, cases[i].used, total),
                         cases[i].want);
    /* A jump straight from danger to nothing falls all the way. */
    assert_int_equal(memfit_gpu_level_next(&t, MEMFIT_LEVEL_DANGER, 0, total), MEMFIT_LEVEL_OK);
    /* The one-reading rule of the report agrees, and NaN is unknown. */
    assert_int_equal(memfit_gpu_level_at(&t, 94.9), 2);
    assert_int_equal(memfit_gpu_level_at(&t, NAN), MEMFIT_GPU_LEVEL_UNKNOWN);
    struct memfit_gpu_device d = {.used_bytes = 3 * GIB, .total_bytes = 4 * GIB};
    assert_true(memfit_gpu_device_percent(&d) == 75.0);
    d.total_bytes = 0;
    assert_true(isnan(memfit_gpu_device_percent(&d)));
}

static void test_gpu_hysteresis(void **state)
{
    (void)state;
    struct memfit_gpu_thresholds t = memfit_gpu_thresholds_default();
    uint64_t total = 1000 * GIB;
    /* Hovering at 90 % (in tenths of a percent) from warning: critical at the
     * first reading that reaches 90 %, and no flapping back. */
    static const uint64_t hover[] = {895, 899, 905, 895, 901, 890, 899, 881, 905};
    enum memfit_level level = MEMFIT_LEVEL_WARNING;
    for (size_t i = 0; i < sizeof(hover) / sizeof(hover[0]); i++) {
        level = memfit_gpu_level_next(&t, level, hover[i] * GIB, total);
        assert_int_equal(level, i < 2 ? MEMFIT_LEVEL_WARNING : MEMFIT_LEVEL_CRITICAL);
    }
    /* Leaving needs the reading 2 points below the threshold; an unknown
     * figure, or a total of 0, keeps the level. */
    static const struct {
        enum memfit_level from;
        uint64_t used_tenths, total_tenths;
        enum memfit_level want;
    } steps[] = {
        {MEMFIT_LEVEL_CRITICAL, 881, 1000, MEMFIT_LEVEL_CRITICAL},
        {MEMFIT_LEVEL_CRITICAL, 879, 1000, MEMFIT_LEVEL_WARNING},
        {MEMFIT_LEVEL_DANGER, 930, 1000, MEMFIT_LEVEL_DANGER},
        {MEMFIT_LEVEL_DANGER, 929, 1000, MEMFIT_LEVEL_CRITICAL}, /* not further */
        {MEMFIT_LEVEL_WARNING, MEMFIT_SYS_UNKNOWN, 1000, MEMFIT_LEVEL_WARNING},
        {MEMFIT_LEVEL_WARNING, 10, 0, MEMFIT_LEVEL_WARNING},
    };
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        uint64_t used = steps[i].used_tenths == MEMFIT_SYS_UNKNOWN ? MEMFIT_SYS_UNKNOWN
                                                                   : steps[i].used_tenths * GIB;
        assert_int_equal(
            memfit_gpu_level_next(&t, steps[i].from, used, steps[i].total_tenths * GIB),
            steps[i].want);
    }
    /* No hysteresis: leaving is as immediate as entering. */
    t.hysteresis_percent = 0;
    assert_int_equal(memfit_gpu_level_next(&t, MEMFIT_LEVEL_CRITICAL, 899 * GIB, total),
                     MEMFIT_LEVEL_WARNING);
}

static void test_gpu_threshold_validation(void **state)
{
    (void)state;
    struct memfit_gpu_thresholds t = memfit_gpu_thresholds_default();
    assert_int_equal(memfit_gpu_thresholds_check(&t), MEMFIT_OK);
    t.critical_percent = 96;
    assert_int_equal(memfit_gpu_thresholds_check(&t), MEMFIT_E_RANGE);
    assert_non_null(strstr(memfit_last_error(), "critical 96%"));
    t = memfit_gpu_thresholds_default();
    t.warning_percent = 90;
    assert_int_equal(memfit_gpu_thresholds_check(&t), MEMFIT_E_RANGE);
    t = memfit_gpu_thresholds_default();
    t.danger_percent = 100.5;
    assert_int_equal(memfit_gpu_thresholds_check(&t), MEMFIT_E_RANGE);
    t = memfit_gpu_thresholds_default();
    t.warning_percent = -1;
    assert_int_equal(memfit_gpu_thresholds_check(&t), MEMFIT_E_RANGE);
    t = memfit_gpu_thresholds_default();
    t.critical_percent = NAN;
    assert_int_equal(memfit_gpu_thresholds_check(&t), MEMFIT_E_RANGE);
    t = memfit_gpu_thresholds_default();
    t.hysteresis_percent = 50;
    assert_int_equal(memfit_gpu_thresholds_check(&t), MEMFIT_E_RANGE);
    assert_int_equal(memfit_gpu_thresholds_check(NULL), MEMFIT_E_MISUSE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_levels_rise_at_thresholds),
        cmocka_unit_test(test_hysteresis_prevents_flapping),
        cmocka_unit_test(test_small_limit_danger_above_critical),
        cmocka_unit_test(test_unknown_values_keep_level),
        cmocka_unit_test(test_threshold_validation),
        cmocka_unit_test(test_gpu_levels_rise_at_thresholds),
        cmocka_unit_test(test_gpu_hysteresis),
        cmocka_unit_test(test_gpu_threshold_validation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

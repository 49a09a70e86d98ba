/* Unit tests of the alert levels: thresholds, hysteresis (no flapping at a
 * threshold), the automatic danger headroom, and threshold validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_levels_rise_at_thresholds),
        cmocka_unit_test(test_hysteresis_prevents_flapping),
        cmocka_unit_test(test_small_limit_danger_above_critical),
        cmocka_unit_test(test_unknown_values_keep_level),
        cmocka_unit_test(test_threshold_validation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

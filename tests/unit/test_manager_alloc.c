/* Allocation fault injection over the manager's life: create, register,
 * load (the driver allocates too), snapshot, unload, destroy. Every failed
 * allocation must give MEMFIT_E_NOMEM, leave the manager consistent (a
 * model that failed to register is absent; one that failed to load is
 * UNLOADED and holds no budget) and leak nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_util.h"
#include "unit/manager_fake.h"

struct life {
    struct fake_model model;
    int registered_checks, load_checks;
};

static void check_unloaded(memfit_manager *mgr, size_t n_expected)
{
    struct memfit_manager_status *s;
    /* Injection is one-shot: this snapshot's allocation succeeds. */
    assert_int_equal(memfit_manager_snapshot(mgr, &s), MEMFIT_OK);
    assert_int_equal(s->n_models, n_expected);
    assert_int_equal(s->budget.reserved_bytes, 0);
    for (size_t i = 0; i < s->n_models; i++) {
        assert_int_equal(s->models[i].state, MEMFIT_MODEL_UNLOADED);
        assert_int_equal(s->models[i].in_use, 0);
    }
    memfit_free(s);
}

static enum memfit_status life_op(void *arg)
{
    struct life *l = arg;
    struct memfit_manager_options o;
    memfit_manager_options_default(&o);
    o.budget_bytes = 100 * MIB;
    o.reaper_thread = false;
    memfit_manager *mgr;
    enum memfit_status st = memfit_manager_create(&o, &mgr);
    if (st != MEMFIT_OK)
        return st;
    struct memfit_model_options mo;
    memfit_model_options_default(&mo);
    mo.name = "dino";
    mo.driver = &fake_driver;
    mo.config = &l->model;
    mo.identity = "size=224";
    mo.keep_alive_s = -1;
    st = memfit_manager_register(mgr, &mo);
    if (st != MEMFIT_OK) {
        check_unloaded(mgr, 0);
        l->registered_checks++;
        memfit_manager_destroy(mgr);
        return st;
    }
    memfit_handle *h;
    st = memfit_manager_acquire(mgr, "dino", 0, &h);
    if (st != MEMFIT_OK) {
        check_unloaded(mgr, 1);
        l->load_checks++;
        memfit_manager_destroy(mgr);
        return st;
    }
    memfit_manager_release(h);
    struct memfit_manager_status *s;
    st = memfit_manager_snapshot(mgr, &s);
    if (st == MEMFIT_OK)
        memfit_free(s);
    if (st == MEMFIT_OK)
        st = memfit_manager_unload(mgr, "dino");
    memfit_manager_destroy(mgr);
    return st;
}

static void test_manager_alloc_failures(void **state)
{
    (void)state;
    struct life l = {.model = {.weights_bytes = MIB}};
    unsigned n = mf_test_alloc_failures(life_op, NULL, &l);
    assert_true(n > 6);
    assert_true(l.registered_checks >= 1);
    assert_true(l.load_checks >= 2); /* the reservation and the driver's own allocation */
    assert_int_equal(atomic_load(&l.model.loaded), 0);
    assert_int_equal(atomic_load(&l.model.n_load), atomic_load(&l.model.n_unload) + 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_manager_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests of the manifest parser (src/manager/manifest.c): a full valid
 * file, defaults, every class of error with its line and column, loading
 * from a file, and allocation failures during parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <unistd.h>

#include "test_util.h"
#include "memfit/manager.h"

static const char full[] =
    "# a complete manifest\n"
    "budget: 512MB\n"
    "cache_dir: /var/cache/memfit\n"
    "keep_alive: 5m\n"
    "unloading: false\n"
    "admission_timeout: 2.5s\n"
    "max_queue: 64\n"
    "models:\n"
    "  - name: dino\n"
    "    family: dinov2\n"
    "    sources:\n"
    "      - s3://bucket/dino.gguf\n"
    "      - https://example.com/dino.gguf\n"
    "    sha256: 9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08\n"
    "    options: {quantize: q8_0, threads: 4}\n"
    "    keep_alive: -1\n"
    "    pin: true\n"
    "    max_concurrency: 2\n"
    "    limits: {max_batch: 8, max_image_size: 518}\n"
    "  - name: qwen\n"
    "    family: qwen2\n"
    "    sources: [/models/qwen.gguf]\n"
    "    keep_alive: 90\n"
    "    limits:\n"
    "      max_context: 4096\n";

static void test_full_manifest(void **state)
{
    (void)state;
    struct memfit_manifest *m;
    assert_int_equal(memfit_manifest_parse_string(full, strlen(full), "memfit.yaml", &m),
                     MEMFIT_OK);
    assert_string_equal(m->path, "memfit.yaml");
    assert_int_equal(m->budget_bytes, 512000000);
    assert_true(m->budget_percent == 0.0);
    assert_string_equal(m->cache_dir, "/var/cache/memfit");
    assert_int_equal(m->keep_alive_s, 300);
    assert_false(m->unloading_enabled);
    assert_int_equal(m->admission_timeout_ms, 2500);
    assert_int_equal(m->max_queue, 64);
    assert_int_equal(m->n_models, 2);
    const struct memfit_manifest_model *d = memfit_manifest_find(m, "dino");
    assert_non_null(d);
    assert_string_equal(d->family, "dinov2");
    assert_int_equal(d->n_sources, 2);
    assert_string_equal(d->sources[0], "s3://bucket/dino.gguf");
    assert_string_equal(d->sources[1], "https://example.com/dino.gguf");
    assert_string_equal(d->sha256,
                        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
    assert_int_equal(d->n_options, 2);
    assert_string_equal(d->options[0].key, "quantize");
    assert_string_equal(d->options[0].value, "q8_0");
    assert_string_equal(d->options[1].value, "4");
    assert_int_equal(d->keep_alive_s, -1);
    assert_true(d->pin);
    assert_int_equal(d->max_concurrency, 2);
    assert_int_equal(d->limits.max_batch, 8);
    assert_int_equal(d->limits.max_image_size, 518);
    assert_int_equal(d->limits.max_context, 0);
    assert_int_equal(d->line, 9);
    const struct memfit_manifest_model *q = memfit_manifest_find(m, "qwen");
    assert_non_null(q);
    assert_null(q->sha256);
    assert_int_equal(q->n_options, 0);
    assert_int_equal(q->keep_alive_s, 90);
    assert_false(q->pin);
    assert_int_equal(q->limits.max_context, 4096);
    assert_null(memfit_manifest_find(m, "none"));
    memfit_manifest_free(m);
    memfit_manifest_free(NULL);
}

static void test_defaults_and_empty(void **state)
{
    (void)state;
    struct memfit_manifest *m;
    assert_int_equal(memfit_manifest_parse_string("", 0, NULL, &m), MEMFIT_OK);
    assert_string_equal(m->path, "memfit.yaml");
    assert_int_equal(m->budget_bytes, 0);
    assert_null(m->cache_dir);
    assert_int_equal(m->keep_alive_s, 300);
    assert_true(m->unloading_enabled);
    assert_int_equal(m->admission_timeout_ms, 30000);
    assert_int_equal(m->max_queue, 512);
    assert_int_equal(m->n_models, 0);
    memfit_manifest_free(m);

    const char *text = "budget: 80%\nkeep_alive: never\nmodels: []\n";
    assert_int_equal(memfit_manifest_parse_string(text, strlen(text), "x.yaml", &m), MEMFIT_OK);
    assert_true(m->budget_percent == 80.0);
    assert_int_equal(m->keep_alive_s, -1);
    memfit_manifest_free(m);

    text = "models:\n  - {name: a, family: f, sources: [x]}\n";
    assert_int_equal(memfit_manifest_parse_string(text, strlen(text), "x.yaml", &m), MEMFIT_OK);
    assert_int_equal(m->models[0].keep_alive_s, MEMFIT_KEEP_ALIVE_DEFAULT);
    assert_int_equal(m->models[0].max_concurrency, 0);
    memfit_manifest_free(m);
}

/* Parses `text` and requires E_FORMAT with exactly `message`. */
static void expect_error(const char *text, const char *message)
{
    struct memfit_manifest *m = NULL;
    enum memfit_status st = memfit_manifest_parse_string(text, strlen(text), "memfit.yaml", &m);
    if (st != MEMFIT_E_FORMAT || strcmp(memfit_last_error(), message) != 0)
        fprintf(stderr, "input:\n%s\nstatus %s, message:\n  %s\nexpected:\n  %s\n", text,
                memfit_status_name(st), memfit_last_error(), message);
    assert_int_equal(st, MEMFIT_E_FORMAT);
    assert_null(m);
    assert_string_equal(memfit_last_error(), message);
}

#define MODEL_HEAD "models:\n  - name: dino\n    family: dinov2\n    sources: [a.gguf]\n"

static void test_unknown_keys(void **state)
{
    (void)state;
    expect_error(MODEL_HEAD "    keepalive: 5m\n",
                 "memfit.yaml:5:5: unknown key 'keepalive' in model 'dino' (did you mean "
                 "keep_alive?)");
    expect_error("budgt: 1GB\n",
                 "memfit.yaml:1:1: unknown key 'budgt' at the top level (did you mean budget?)");
    expect_error("colour: blue\n", "memfit.yaml:1:1: unknown key 'colour' at the top level");
    expect_error(MODEL_HEAD "    limits: {max_batches: 2}\n",
                 "memfit.yaml:5:14: unknown key 'max_batches' in limits of model 'dino' (did you "
                 "mean max_batch?)");
    expect_error("models:\n  - family: f\n    nme: x\n", "memfit.yaml:2:5: model #1 has no name");
}

static void test_structure_errors(void **state)
{
    (void)state;
    expect_error("budget: 1GB\nbudget: 2GB\n",
                 "memfit.yaml:2:1: duplicate key 'budget' at the top level (first at line 1)");
    expect_error(MODEL_HEAD "  - name: dino\n    family: x\n    sources: [b]\n",
                 "memfit.yaml:5:11: model 'dino' is defined twice (first at line 2)");
    expect_error("- a\n- b\n",
                 "memfit.yaml:1:1: expected a mapping at the top (budget, models, ...), got a "
                 "list");
    expect_error("models: {name: x}\n",
                 "memfit.yaml:1:9: models: expected a list of models, got a mapping");
    expect_error("models:\n  - just-a-name\n",
                 "memfit.yaml:2:5: model #1: expected a mapping (name, family, sources, ...), got "
                 "a scalar");
    expect_error("models:\n  - name: dino\n    sources: [a]\n",
                 "memfit.yaml:2:5: model 'dino' has no family (e.g. family: dinov2)");
    expect_error("models:\n  - name: dino\n    family: dinov2\n",
                 "memfit.yaml:2:5: model 'dino' has no sources (a list of paths or URLs)");
    expect_error("models:\n  - name: 'a b'\n    family: f\n    sources: [x]\n",
                 "memfit.yaml:2:11: name 'a b' in model #1: use at most 128 letters, digits, "
                 "'.', '_', '-', ':'");
    expect_error("? [a, b]\n: 1\n",
                 "memfit.yaml:1:3: a key at the top level: expected a plain name, got a list");
}

static void test_type_and_value_errors(void **state)
{
    (void)state;
    expect_error(MODEL_HEAD "    keep_alive: soon\n",
                 "memfit.yaml:5:17: keep_alive in model 'dino': expected a duration (e.g. 300, "
                 "5m, -1), got 'soon'");
    expect_error(MODEL_HEAD "    keep_alive: [1]\n",
                 "memfit.yaml:5:17: keep_alive in model 'dino': expected a duration (e.g. 300, "
                 "5m, -1), got a list");
    expect_error(MODEL_HEAD "    pin: maybe\n",
                 "memfit.yaml:5:10: pin in model 'dino': expected true or false, got 'maybe'");
    expect_error(MODEL_HEAD "    max_concurrency: -2\n",
                 "memfit.yaml:5:22: max_concurrency in model 'dino': expected a whole number from "
                 "0 to 65535, got '-2'");
    expect_error(MODEL_HEAD "    sha256: abc\n",
                 "memfit.yaml:5:13: sha256 in model 'dino': expected 64 hex digits, got 'abc'");
    expect_error(MODEL_HEAD "    options: [quantize]\n",
                 "memfit.yaml:5:14: options in model 'dino': expected a mapping (e.g. {quantize: "
                 "q8_0}), got a list");
    expect_error(MODEL_HEAD "    options: {quantize: [a]}\n",
                 "memfit.yaml:5:25: option quantize in model 'dino': expected a scalar, got a "
                 "list");
    expect_error(MODEL_HEAD "    limits: {max_batch: lots}\n",
                 "memfit.yaml:5:25: max_batch in model 'dino': expected a whole number from 0 to "
                 "1000000, got 'lots'");
    expect_error("models:\n  - name: dino\n    family: f\n    sources: s3://x\n",
                 "memfit.yaml:4:14: sources in model 'dino': expected a list of strings, got a "
                 "scalar");
    expect_error("models:\n  - name: dino\n    family: f\n    sources: []\n",
                 "memfit.yaml:4:14: sources in model 'dino': the list is empty");
    expect_error("models:\n  - name: dino\n    family: ''\n    sources: [x]\n",
                 "memfit.yaml:3:13: family in model 'dino': must not be empty");
    expect_error("budget: 0\n",
                 "memfit.yaml:1:9: budget: expected a size above 0 (e.g. 512MB, 2GiB), got '0'");
    expect_error("budget: 120%\n",
                 "memfit.yaml:1:9: budget: expected a percentage above 0, got '120%'");
    expect_error("max_queue: many\n",
                 "memfit.yaml:1:12: max_queue at the top level: expected a whole number from 0 to "
                 "1000000, got 'many'");
    expect_error("unloading: {a: 1}\n", "memfit.yaml:1:12: unloading at the top level: expected "
                                        "true or false, got a mapping");
}

static void test_yaml_errors(void **state)
{
    (void)state;
    expect_error("budget: [1GB\n",
                 "memfit.yaml:2:1: did not find expected ',' or ']' while parsing a flow "
                 "sequence");
    expect_error("base: &b {name: x}\nmodels: [*b]\n",
                 "memfit.yaml:2:10: YAML aliases (*b) are not supported");
    expect_error("budget: 1GB\n---\nbudget: 2GB\n",
                 "memfit.yaml:2:1: only one YAML document is allowed");
    expect_error("a: b\n\tc: d\n", "memfit.yaml:2:1: found a tab character that violates "
                                   "indentation while scanning a plain scalar");
}

static void test_load_file(void **state)
{
    (void)state;
    char path[] = "/tmp/memfit-manifest-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, full, strlen(full)), (ssize_t)strlen(full));
    close(fd);
    struct memfit_manifest *m;
    assert_int_equal(memfit_manifest_load(path, &m), MEMFIT_OK);
    assert_string_equal(m->path, path);
    assert_int_equal(m->n_models, 2);
    memfit_manifest_free(m);
    fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "pin: 1\n", 7), 7);
    close(fd);
    assert_int_equal(memfit_manifest_load(path, &m), MEMFIT_E_FORMAT);
    char expected[256];
    snprintf(expected, sizeof(expected), "%s:1:1: unknown key 'pin' at the top level", path);
    assert_string_equal(memfit_last_error(), expected);
    unlink(path);
    assert_int_equal(memfit_manifest_load(path, &m), MEMFIT_E_NOT_FOUND);
    snprintf(expected, sizeof(expected), "%s: No such file or directory", path);
    assert_string_equal(memfit_last_error(), expected);
    assert_int_equal(memfit_manifest_load("/", &m), MEMFIT_E_IO);
}

struct parse_ctx {
    struct memfit_manifest *m;
};

static enum memfit_status parse_op(void *arg)
{
    struct parse_ctx *c = arg;
    return memfit_manifest_parse_string(full, strlen(full), "memfit.yaml", &c->m);
}

static void parse_cleanup(void *arg)
{
    struct parse_ctx *c = arg;
    memfit_manifest_free(c->m);
    c->m = NULL;
}

static void test_pressure(void **state)
{
    (void)state;
    struct memfit_manifest *m;
    const char *text = "pressure: {warning: 70%, critical: 95, psi_some: 20, psi_full: 2.5%}\n";
    assert_int_equal(memfit_manifest_parse_string(text, strlen(text), "x.yaml", &m), MEMFIT_OK);
    assert_true(m->pressure.warning_percent == 70 && m->pressure.critical_percent == 95);
    assert_true(m->pressure.psi_some_percent == 20 && m->pressure.psi_full_percent == 2.5);
    struct memfit_manager_options o;
    memfit_manager_options_default(&o);
    memfit_manifest_apply_pressure(m, &o);
    assert_true(o.pressure_thresholds.warning_percent == 70);
    assert_true(o.pressure_thresholds.critical_percent == 95);
    assert_true(o.pressure_psi_some_percent == 20 && o.pressure_psi_full_percent == 2.5);
    memfit_manifest_free(m);
    /* Only what is given changes; nothing given, nothing changes. */
    text = "pressure:\n  psi_full: 0\n";
    assert_int_equal(memfit_manifest_parse_string(text, strlen(text), "x.yaml", &m), MEMFIT_OK);
    memfit_manager_options_default(&o);
    memfit_manifest_apply_pressure(m, &o);
    assert_true(o.pressure_thresholds.warning_percent == 80);
    assert_true(o.pressure_psi_some_percent == 10 && o.pressure_psi_full_percent == 0);
    memfit_manifest_free(m);
    assert_int_equal(memfit_manifest_parse_string("", 0, "x.yaml", &m), MEMFIT_OK);
    assert_true(m->pressure.warning_percent < 0 && m->pressure.psi_some_percent < 0);
    memfit_manifest_free(m);

    expect_error("pressure: {psi_som: 5}\n",
                 "memfit.yaml:1:12: unknown key 'psi_som' in pressure (did you mean psi_some?)");
    expect_error("pressure: {warning: 120%}\n",
                 "memfit.yaml:1:21: pressure: warning: expected a percentage from 0 to 100, got "
                 "'120%'");
    expect_error("pressure: {warning: 90%, critical: 80%}\n",
                 "memfit.yaml:1:11: pressure: warning 90% must be below critical 80%");
    expect_error("pressure: 80%\n",
                 "memfit.yaml:1:11: pressure: expected a mapping (warning, critical, psi_some, "
                 "psi_full), got a scalar");
}

static void test_alloc_failures(void **state)
{
    (void)state;
    struct parse_ctx c = {NULL};
    unsigned n = mf_test_alloc_failures(parse_op, parse_cleanup, &c);
    assert_true(n > 15); /* every allocation of the parse was failed once */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_manifest),
        cmocka_unit_test(test_defaults_and_empty),
        cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_structure_errors),
        cmocka_unit_test(test_type_and_value_errors),
        cmocka_unit_test(test_yaml_errors),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_pressure),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

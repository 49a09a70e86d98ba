/* Unit tests of the streaming scan of request bodies (src/server/json_scan.c):
 * valid bodies accepted whole and byte by byte with the same result,
 * malformed ones refused at the byte that breaks them, unknown members
 * refused early (strict routes) or overwritten with null so the parser
 * never builds them (the result then parses to the same known members),
 * the depth limit, and the cost estimate against what jansson really
 * allocates (the allocator's peak) for the shapes of hostile bodies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>

#include "core/json.h"
#include "server/request.h"
#include "test_util.h"

static const char *const fields[] = {"model", "input", "n"};
static const struct mf_json_schema strict = {fields, 3, false, NULL};
static const struct mf_json_schema lenient = {fields, 3, true, NULL};

/* Scans `text` whole (step 0) or `step` bytes at a time; returns the status
 * and leaves the (possibly rewritten) copy in *out. */
static enum memfit_status scan(const char *text, const struct mf_json_schema *schema, size_t step,
                               char **out, struct mf_json_scan *s)
{
    size_t n = strlen(text);
    char *buf = memfit_malloc(n + 1);
    assert_non_null(buf);
    memcpy(buf, text, n + 1);
    struct mf_http_error err;
    mf_json_scan_init(s, schema);
    enum memfit_status st = MEMFIT_OK;
    for (size_t end = step ? 0 : n; st == MEMFIT_OK; end += step) {
        if (end > n)
            end = n;
        st = mf_json_scan_feed(s, buf, end, &err);
        if (end == n)
            break;
    }
    if (st == MEMFIT_OK)
        st = mf_json_scan_finish(s, &err);
    memfit_clear_error();
    *out = buf;
    return st;
}

static void test_valid(void **state)
{
    (void)state;
    const char *ok[] = {
        "{}",
        " { \"model\" : \"m\" , \"input\" : [ \"a\", \"b\\\"}\" ] } \n",
        "{\"input\":[1,-2.5e+3,true,false,null,{},[],{\"x\":[[]]}],\"n\":0}",
        "{\"model\":\"\\u00e9\\n\\\\\",\"input\":{\"k\":\"v\"}}",
        "{\"mod\\u0065l\":\"x\"}", /* an escaped name is the same name */
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(*ok); i++) {
        for (size_t step = 0; step <= 3; step++) {
            char *buf;
            struct mf_json_scan s;
            enum memfit_status st = scan(ok[i], &strict, step, &buf, &s);
            if (st != MEMFIT_OK)
                fprintf(stderr, "refused: %s (step %zu)\n", ok[i], step);
            assert_int_equal(st, MEMFIT_OK);
            assert_string_equal(buf, ok[i]); /* nothing skipped: nothing rewritten */
            memfit_free(buf);
        }
    }
}

static void test_malformed(void **state)
{
    (void)state;
    const char *bad[] = {
        "",
        "   ",
        "[1]",
        "\"s\"",
        "{",
        "{\"a\"}",
        "{\"n\":}",
        "{\"n\" 1}",
        "{\"n\":1,}",
        "{\"input\":[1,]}",
        "{,}",
        "{\"n\":tru}",
        "{\"n\":nul}",
        "{\"n\":1}x",
        "{\"n\":1}{}",
        "{\"n\":\"a\nb\"}",
        "{\"n\":\"\\x\"}",
        "{\"n\":\"\\u12g4\"}",
        "{\"n\":[}",
        "{\"n\":1]",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        for (size_t step = 0; step <= 1; step++) {
            char *buf;
            struct mf_json_scan s;
            enum memfit_status st = scan(bad[i], &lenient, step, &buf, &s);
            if (st != MEMFIT_E_FORMAT)
                fprintf(stderr, "accepted: %s\n", bad[i]);
            assert_int_equal(st, MEMFIT_E_FORMAT);
            memfit_free(buf);
        }
    }
    /* Depth: 64 levels are read, 65 are refused. */
    char deep[200];
    for (int depth = 64; depth <= 65; depth++) {
        size_t n = 0;
        n += (size_t)snprintf(deep + n, sizeof(deep) - n, "{\"input\":");
        for (int i = 1; i < depth; i++)
            deep[n++] = '[';
        for (int i = 1; i < depth; i++)
            deep[n++] = ']';
        deep[n++] = '}';
        deep[n] = '\0';
        char *buf;
        struct mf_json_scan s;
        assert_int_equal(scan(deep, &strict, 0, &buf, &s),
                         depth == 64 ? MEMFIT_OK : MEMFIT_E_FORMAT);
        memfit_free(buf);
    }
}

/* A strict route refuses an unknown member as soon as its name is read,
 * whatever follows; the message names it. */
static void test_unknown_refused(void **state)
{
    (void)state;
    const char *head = "{\"model\":\"m\",\"junk\":[";
    char buf[64];
    snprintf(buf, sizeof(buf), "%s", head);
    struct mf_json_scan s;
    struct mf_http_error err;
    mf_json_scan_init(&s, &strict);
    assert_int_equal(mf_json_scan_feed(&s, buf, strlen(buf), &err), MEMFIT_E_FORMAT);
    assert_int_equal(err.status, 400);
    assert_string_equal(err.code, "invalid_value");
    assert_non_null(strstr(err.message, "unknown field 'junk'"));
    assert_non_null(strstr(err.message, "model, input, n"));
    assert_true(s.pos < strlen(buf)); /* refused at the name, before its value */
    memfit_clear_error();
}

/* A lenient route overwrites unknown members' values: jansson then reads the
 * same known members, and null (or the short value) for the unknown ones. */
static void test_unknown_skipped(void **state)
{
    (void)state;
    mf_json_init();
    const char *bodies[] = {
        "{\"model\":\"m\",\"junk\":[1,2,{\"model\":[3]},\"}]\\\"\"],\"n\":7}",
        "{\"junk\":\"a long string with \\\"quotes\\\" and } ] brackets\",\"input\":[\"x\"]}",
        "{\"a\":1,\"b\":12,\"c\":\"\",\"d\":[],\"e\":{},\"f\":true,\"g\":-1.5e10,\"model\":\"q\"}",
        "{\"junk\":{\"deep\":[[[[{}]]]]}}",
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(*bodies); i++) {
        char *one, *bytes;
        struct mf_json_scan s1, s2;
        assert_int_equal(scan(bodies[i], &lenient, 0, &one, &s1), MEMFIT_OK);
        assert_int_equal(scan(bodies[i], &lenient, 1, &bytes, &s2), MEMFIT_OK);
        assert_string_equal(one, bytes); /* the same rewrite whatever the pieces */
        assert_int_equal(strlen(one), strlen(bodies[i]));
        assert_true(s1.skipped > 0);
        assert_int_equal(s1.values, s2.values);
        json_error_t e;
        json_t *orig = json_loads(bodies[i], 0, &e), *got = json_loads(one, 0, &e);
        assert_non_null(orig);
        assert_non_null(got);
        const char *key;
        json_t *v;
        json_object_foreach(orig, key, v)
        {
            json_t *w = json_object_get(got, key);
            assert_non_null(w);
            bool known =
                strcmp(key, "model") == 0 || strcmp(key, "input") == 0 || strcmp(key, "n") == 0;
            if (known || json_dumpb(v, NULL, 0, JSON_ENCODE_ANY) < 4)
                assert_true(json_equal(v, w));
            else
                assert_true(json_is_null(w));
        }
        json_decref(orig);
        json_decref(got);
        memfit_free(one);
        memfit_free(bytes);
    }
}

/* Bytes jansson allocates to parse `body`: the rise of the allocator's
 * peak (bodies are parsed in growing order, so each sets a new peak). */
static uint64_t parse_peak(const char *body, size_t len)
{
    struct memfit_alloc_stats a, b;
    memfit_alloc_get_stats(&a);
    json_error_t e;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &e);
    assert_non_null(root);
    json_decref(root);
    memfit_alloc_get_stats(&b);
    assert_true(b.peak_bytes > a.peak_bytes);
    return b.peak_bytes - a.total_live_bytes;
}

/* The hostile shapes: numbers, short strings, objects, one long string,
 * nested arrays. The estimate must cover what jansson takes and not be
 * far above it (a legitimate body must not be refused for nothing). */
static void test_cost(void **state)
{
    (void)state;
    mf_json_init();
    const char *item[] = {"1,", "\"ab\",", "{\"k\":1},", "[[1]],", NULL};
    const size_t order[] = {4, 0, 1, 2, 3}; /* the long string first: its peak is the lowest */
    size_t target = 200000;
    for (size_t o = 0; o < 5; o++, target *= 2) {
        size_t shape = order[o];
        char *body = memfit_malloc(target + 64);
        assert_non_null(body);
        size_t n = (size_t)snprintf(body, 64, "{\"input\":%s", shape == 4 ? "\"" : "[");
        if (shape == 4) {
            memset(body + n, 'x', target);
            n += target;
            memcpy(body + n, "\"}", 3);
            n += 2;
        } else {
            size_t k = strlen(item[shape]);
            while (n + k < target) {
                memcpy(body + n, item[shape], k);
                n += k;
            }
            memcpy(body + n, "0]}", 4);
            n += 3;
        }
        struct mf_json_scan s;
        struct mf_http_error err;
        mf_json_scan_init(&s, &strict);
        assert_int_equal(mf_json_scan_feed(&s, body, n, &err), MEMFIT_OK);
        assert_int_equal(mf_json_scan_finish(&s, &err), MEMFIT_OK);
        uint64_t estimate = mf_json_scan_cost(&s), actual = parse_peak(body, n);
        printf("shape %zu: %zu bytes of body, jansson %llu, estimate %llu (%.2fx)\n", shape, n,
               (unsigned long long)actual, (unsigned long long)estimate,
               (double)estimate / (double)actual);
        assert_true(estimate >= actual);
        assert_true(estimate <= 4 * actual);
        memfit_free(body);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_unknown_refused),
        cmocka_unit_test(test_unknown_skipped),
        cmocka_unit_test(test_cost),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

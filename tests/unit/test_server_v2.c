/* Unit tests of the server's Open Inference Protocol (KServe v2) parts: the
 * /v2 route matcher (versions, names, methods), the inference request
 * parser (BYTES tensors flat and nested, shapes, parameters mapped to the
 * completions' fields; every client error refused with a message naming
 * what was wrong; allocation fault walks), the repository extension's
 * bodies, the {"error": "..."} body and the route schemas. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "server/request.h"
#include "test_util.h"

static void expect_route(const char *path, enum mf_route want, const char *name,
                         const char *version, const char *method)
{
    char n[MF_MODEL_NAME_MAX], v[MF_MODEL_VERSION_MAX];
    const char *allowed;
    enum mf_route got = mf_route_match_version(path, n, v, &allowed);
    if (got != want)
        fail_msg("%s: route %s, want %s", path, mf_route_label(got), mf_route_label(want));
    assert_string_equal(n, name);
    assert_string_equal(v, version);
    if (method)
        assert_string_equal(allowed, method);
    else
        assert_null(allowed);
}

static void test_v2_routes(void **state)
{
    (void)state;
    expect_route("/v2", MF_ROUTE_V2_SERVER, "", "", "GET");
    expect_route("/v2/health/live", MF_ROUTE_V2_LIVE, "", "", "GET");
    expect_route("/v2/health/ready", MF_ROUTE_V2_READY, "", "", "GET");
    expect_route("/v2/models/dino", MF_ROUTE_V2_MODEL, "dino", "", "GET");
    expect_route("/v2/models/dino/ready", MF_ROUTE_V2_MODEL_READY, "dino", "", "GET");
    expect_route("/v2/models/dino/infer", MF_ROUTE_V2_INFER, "dino", "", "POST");
    expect_route("/v2/models/dino/versions/1", MF_ROUTE_V2_MODEL, "dino", "1", "GET");
    expect_route("/v2/models/dino/versions/7/ready", MF_ROUTE_V2_MODEL_READY, "dino", "7", "GET");
    expect_route("/v2/models/q.b-1/versions/1/infer", MF_ROUTE_V2_INFER, "q.b-1", "1", "POST");
    expect_route("/v2/models/versions", MF_ROUTE_V2_MODEL, "versions", "", "GET");
    expect_route("/v2/repository/index", MF_ROUTE_V2_REPO_INDEX, "", "", "POST");
    expect_route("/v2/repository/models/dino/load", MF_ROUTE_V2_REPO_LOAD, "dino", "", "POST");
    expect_route("/v2/repository/models/dino/unload", MF_ROUTE_V2_REPO_UNLOAD, "dino", "", "POST");
    const char *other[] = {"/v2/",
                           "/v2/models",
                           "/v2/models/",
                           "/v2/models//infer",
                           "/v2/models/x/",
                           "/v2/models/x/predict",
                           "/v2/models/x/versions",
                           "/v2/models/x/versions/",
                           "/v2/models/x/versions//infer",
                           "/v2/models/x/versions/1/infer/",
                           "/v2/models/x/ready/infer",
                           "/v2/repository/models/x",
                           "/v2/repository/models//load",
                           "/v2/repository/index/x",
                           "/v2/health",
                           "/V2"};
    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++)
        expect_route(other[i], MF_ROUTE_OTHER, "", "", NULL);
    char path[400] = "/v2/models/x/versions/";
    memset(path + 22, '9', 40); /* a version of 40 characters: too long */
    path[62] = '\0';
    expect_route(path, MF_ROUTE_OTHER, "", "", NULL);
    assert_string_equal(mf_route_label(MF_ROUTE_V2_INFER), "/v2/models/{name}/infer");
    assert_true(mf_route_is_v2(MF_ROUTE_V2_LIVE) && mf_route_is_v2(MF_ROUTE_V2_REPO_UNLOAD));
    assert_false(mf_route_is_v2(MF_ROUTE_DASHBOARD) || mf_route_is_v2(MF_ROUTE_OTHER));
    /* The old matcher still answers the same for the old routes. */
    char name[MF_MODEL_NAME_MAX];
    const char *allowed;
    assert_int_equal(mf_route_match("/api/models/a/load", name, &allowed), MF_ROUTE_MODEL_LOAD);
    assert_string_equal(name, "a");
    assert_int_equal(mf_route_match("/v2/models/a/infer", name, &allowed), MF_ROUTE_V2_INFER);
}

static void test_v2_schemas(void **state)
{
    (void)state;
    const struct mf_json_schema *s = mf_route_schema(MF_ROUTE_V2_INFER);
    assert_non_null(s);
    assert_int_equal(s->n_fields, 4);
    assert_false(s->skip_unknown);
    assert_non_null(mf_route_schema(MF_ROUTE_V2_REPO_INDEX));
    assert_non_null(mf_route_schema(MF_ROUTE_V2_REPO_LOAD));
    assert_non_null(mf_route_schema(MF_ROUTE_V2_REPO_UNLOAD));
    assert_null(mf_route_schema(MF_ROUTE_V2_MODEL));
    /* An unknown top-level member is refused at its name by the streaming scan. */
    char body[] = "{\"inputs\":[],\"model\":\"x\"}";
    struct mf_json_scan scan;
    struct mf_http_error e = {0};
    mf_json_scan_init(&scan, s);
    assert_int_equal(mf_json_scan_feed(&scan, body, strlen(body), &e), MEMFIT_E_FORMAT);
    assert_non_null(strstr(e.message, "unknown field 'model'"));
    memfit_clear_error();
}

static void test_v2_parse_images(void **state)
{
    (void)state;
    const char *body = "{\"id\":\"42\",\"inputs\":[{\"name\":\"image\",\"shape\":[2,1],"
                       "\"datatype\":\"BYTES\",\"parameters\":{\"content_type\":\"base64\"},"
                       "\"data\":[[\"QUJD\"],[\"data:image/png;base64,REVG\"]]}],"
                       "\"outputs\":[{\"name\":\"embedding\",\"parameters\":{\"binary_data\":"
                       "false}}]}";
    struct mf_infer_request r;
    struct mf_http_error e = {0};
    assert_int_equal(mf_infer_request_parse(body, strlen(body), 8, &r, &e), MEMFIT_OK);
    assert_string_equal(r.id, "42");
    assert_string_equal(r.input_name, "image");
    assert_true(r.base64);
    assert_int_equal(r.n_items, 2);
    assert_string_equal(r.items[0], "QUJD");
    assert_int_equal(r.item_lens[1], strlen("data:image/png;base64,REVG"));
    assert_string_equal(r.output_name, "embedding");
    assert_false(r.has_gen_params);
    mf_infer_request_free(&r);
    mf_infer_request_free(NULL);

    /* A prompt with the completions' parameters; a NUL inside a string is kept. */
    body = "{\"parameters\":{\"max_tokens\":7,\"temperature\":0,\"top_k\":3,\"seed\":5,"
           "\"stop\":[\"\\n\"],\"content_type\":\"str\"},\"inputs\":[{\"name\":\"text\","
           "\"shape\":[1],\"datatype\":\"BYTES\",\"data\":[\"a\\u0000b\"]}]}";
    assert_int_equal(mf_infer_request_parse(body, strlen(body), 8, &r, &e), MEMFIT_OK);
    assert_null(r.id);
    assert_null(r.output_name);
    assert_true(r.has_gen_params);
    assert_true(r.gen.has_max_tokens && r.gen.max_tokens == 7);
    assert_true(r.gen.has_temperature && r.gen.temperature == 0);
    assert_true(r.gen.has_top_k && r.gen.top_k == 3);
    assert_true(r.gen.has_seed && r.gen.seed == 5);
    assert_int_equal(r.gen.n_stop, 1);
    assert_string_equal(r.gen.stop[0], "\n");
    assert_int_equal(r.n_items, 1);
    assert_int_equal(r.item_lens[0], 3);
    assert_memory_equal(r.items[0], "a\0b", 3);
    assert_false(r.base64);
    mf_infer_request_free(&r);
}

static void expect_infer_error(const char *body, const char *needle)
{
    struct mf_infer_request r;
    struct mf_http_error e = {0};
    enum memfit_status st = mf_infer_request_parse(body, strlen(body), 4, &r, &e);
    if (st != MEMFIT_E_FORMAT)
        fail_msg("%s: status %d, want E_FORMAT", body, (int)st);
    assert_int_equal(e.status, 400);
    if (!strstr(e.message, needle))
        fail_msg("%s: message '%s' lacks '%s'", body, e.message, needle);
    char *json;
    size_t len;
    assert_int_equal(mf_v2_error_json(&e, &json, &len), MEMFIT_OK);
    assert_int_equal(strncmp(json, "{\"error\":\"", 10), 0);
    assert_int_equal(json[len - 1], '\n');
    memfit_free(json);
    memfit_clear_error();
}

#define IN(fields)        WITH("", fields)
#define WITH(pre, fields) "{" pre "\"inputs\":[{\"name\":\"image\"," fields "}]}"
#define OK_IN             "\"shape\":[1],\"datatype\":\"BYTES\",\"data\":[\"QUJD\"]"

static void test_v2_parse_errors(void **state)
{
    (void)state;
    expect_infer_error("", "not valid JSON");
    expect_infer_error("[]", "must be a JSON object");
    expect_infer_error("{}", "missing field 'inputs'");
    expect_infer_error("{\"inputs\":{}}", "'inputs' must be an array");
    expect_infer_error("{\"inputs\":[]}", "has 0 tensors");
    expect_infer_error("{\"inputs\":[1]}", "'inputs[0]' must be an object");
    expect_infer_error("{\"model\":\"x\",\"inputs\":[]}", "unknown field 'model'");
    expect_infer_error(WITH("\"id\":5,", OK_IN), "'id' must be a string");
    expect_infer_error(IN("\"shape\":[1],\"datatype\":\"BYTES\",\"data\":[\"a\"],\"x\":1"),
                       "unknown field 'x' in 'inputs[0]'");
    expect_infer_error("{\"inputs\":[{\"shape\":[1],\"datatype\":\"BYTES\",\"data\":[\"a\"]}]}",
                       "missing field 'inputs[0].name'");
    expect_infer_error(IN("\"shape\":[1],\"data\":[\"a\"]"), "missing field 'inputs[0].datatype'");
    expect_infer_error(IN("\"shape\":[1],\"datatype\":\"FP32\",\"data\":[1.5]"), "datatype 'FP32'");
    expect_infer_error(IN("\"datatype\":\"BYTES\",\"data\":[\"a\"]"),
                       "missing field 'inputs[0].shape'");
    expect_infer_error(IN("\"shape\":[],\"datatype\":\"BYTES\",\"data\":[\"a\"]"),
                       "1 to 16 dimensions");
    expect_infer_error(IN("\"shape\":[-1],\"datatype\":\"BYTES\",\"data\":[\"a\"]"),
                       "'inputs[0].shape[0]' must be an integer >= 0");
    expect_infer_error(IN("\"shape\":[4294967296,4294967296],\"datatype\":\"BYTES\","
                          "\"data\":[\"a\"]"),
                       "more than 2^64");
    expect_infer_error(IN("\"shape\":[2],\"datatype\":\"BYTES\",\"data\":[\"a\"]"),
                       "has 1 elements; its shape says 2");
    expect_infer_error(IN("\"shape\":[0],\"datatype\":\"BYTES\",\"data\":[]"), "is empty");
    expect_infer_error(IN("\"shape\":[1],\"datatype\":\"BYTES\""),
                       "missing field 'inputs[0].data'");
    expect_infer_error(IN("\"shape\":[1],\"datatype\":\"BYTES\",\"data\":[7]"),
                       "holds an integer: the elements of a BYTES tensor are strings");
    expect_infer_error(IN("\"shape\":[5],\"datatype\":\"BYTES\",\"data\":[\"a\",\"b\",\"c\","
                          "\"d\",\"e\"]"),
                       "at most 4 per request");
    expect_infer_error(IN(OK_IN ",\"parameters\":{\"binary_data_size\":4}"),
                       "binary tensor data extension is not supported");
    expect_infer_error(IN(OK_IN ",\"parameters\":{\"content_type\":\"np\"}"),
                       "must be \"base64\" or \"str\"");
    expect_infer_error(IN(OK_IN ",\"parameters\":{\"shm\":1}"),
                       "unknown field 'shm' in 'inputs[0].parameters'");
    expect_infer_error(IN(OK_IN ",\"parameters\":[]"), "'inputs[0].parameters' must be an object");
    expect_infer_error(WITH("\"parameters\":{\"max_new_tokens\":3},", OK_IN),
                       "unknown field 'max_new_tokens' in 'parameters'");
    expect_infer_error(WITH("\"parameters\":{\"temperature\":9},", OK_IN),
                       "'temperature' is 9; it must be 0 to 2");
    expect_infer_error(WITH("\"parameters\":{\"stop\":[1]},", OK_IN), "'stop[0]' must be a string");
    expect_infer_error(WITH("\"parameters\":\"x\",", OK_IN), "'parameters' must be an object");
    expect_infer_error(WITH("\"outputs\":[{\"name\":\"a\"},{\"name\":\"b\"}],", OK_IN),
                       "memfit's models have one output");
    expect_infer_error(WITH("\"outputs\":[{}],", OK_IN), "missing field 'outputs[0].name'");
    expect_infer_error(
        WITH("\"outputs\":[{\"name\":\"e\",\"parameters\":{\"classification\":2}}],", OK_IN),
        "unknown field 'classification' in 'outputs[0].parameters'");
    expect_infer_error(
        WITH("\"outputs\":[{\"name\":\"e\",\"parameters\":{\"binary_data\":1}}],", OK_IN),
        "binary_data' must be a boolean");
    /* Nested too deep. */
    char deep[400] = IN("\"shape\":[1],\"datatype\":\"BYTES\",\"data\":");
    size_t n = strlen(deep) - 3; /* before the closing "}]}" */
    for (int i = 0; i < 70; i++)
        deep[n++] = '[';
    deep[n++] = '"';
    deep[n++] = '"';
    for (int i = 0; i < 70; i++)
        deep[n++] = ']';
    memcpy(deep + n, "}]}", 4);
    expect_infer_error(deep, "nested more than 64 deep");
}

static void test_v2_repo_parse(void **state)
{
    (void)state;
    bool ready = true;
    struct mf_http_error e = {0};
    assert_int_equal(mf_repo_request_parse("", 0, true, &ready, &e), MEMFIT_OK);
    assert_false(ready);
    assert_int_equal(mf_repo_request_parse("{\"ready\":true}", 14, true, &ready, &e), MEMFIT_OK);
    assert_true(ready);
    assert_int_equal(mf_repo_request_parse("{}", 2, false, &ready, &e), MEMFIT_OK);
    const char *ok_control = "{\"parameters\":{}}";
    assert_int_equal(mf_repo_request_parse(ok_control, strlen(ok_control), false, &ready, &e),
                     MEMFIT_OK);
    struct {
        const char *body;
        bool index;
        const char *needle;
    } bad[] = {
        {"{\"ready\":1}", true, "'ready' must be a boolean"},
        {"{\"repository_name\":\"x\"}", true, "unknown field 'repository_name'"},
        {"{\"parameters\":{\"config\":\"{}\"}}", false, "parameter 'config' is not supported"},
        {"{\"parameters\":3}", false, "'parameters' must be an object"},
        {"{\"ready\":true}", false, "unknown field 'ready'"},
        {"[1]", false, "must be a JSON object"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&e, 0, sizeof(e));
        assert_int_equal(
            mf_repo_request_parse(bad[i].body, strlen(bad[i].body), bad[i].index, &ready, &e),
            MEMFIT_E_FORMAT);
        if (e.status != 400 || !strstr(e.message, bad[i].needle))
            fail_msg("%s: %d '%s' lacks '%s'", bad[i].body, e.status, e.message, bad[i].needle);
        memfit_clear_error();
    }
}

static void test_v2_error_json(void **state)
{
    (void)state;
    struct mf_http_error e;
    mf_http_error_set(&e, 404, "invalid_request_error", "model_not_found", "no \"x\"\n");
    char *json;
    size_t len;
    assert_int_equal(mf_v2_error_json(&e, &json, &len), MEMFIT_OK);
    assert_string_equal(json, "{\"error\":\"no \\\"x\\\"\\n\"}\n");
    assert_int_equal(len, strlen(json));
    memfit_free(json);
    /* No code in this shape: an allocation failure says so in its message. */
    mf_http_error_set(&e, 503, "server_error", "out_of_memory", "no memory for 3x3 pixels");
    assert_int_equal(mf_v2_error_json(&e, &json, &len), MEMFIT_OK);
    assert_string_equal(json, "{\"error\":\"out of memory: no memory for 3x3 pixels\"}\n");
    memfit_free(json);
    mf_http_error_set(&e, 503, "server_error", "out_of_memory", "out of memory");
    assert_int_equal(mf_v2_error_json(&e, &json, &len), MEMFIT_OK);
    assert_string_equal(json, "{\"error\":\"out of memory\"}\n");
    memfit_free(json);
}

static struct mf_infer_request walk_req;

static enum memfit_status infer_parse_op(void *ctx)
{
    (void)ctx;
    const char *body = "{\"id\":\"a\",\"parameters\":{\"stop\":[\"x\",\"y\"],\"max_tokens\":3},"
                       "\"inputs\":[{\"name\":\"text\",\"shape\":[3],\"datatype\":\"BYTES\","
                       "\"data\":[\"one\",[\"two\",\"three\"]]}],\"outputs\":[{\"name\":\"o\"}]}";
    struct mf_http_error e;
    return mf_infer_request_parse(body, strlen(body), 8, &walk_req, &e);
}

static void infer_parse_cleanup(void *ctx)
{
    (void)ctx;
    mf_infer_request_free(&walk_req);
}

static enum memfit_status v2_error_op(void *ctx)
{
    struct mf_http_error e;
    mf_http_error_set(&e, 400, "invalid_request_error", "invalid_value", "bad");
    size_t len;
    return mf_v2_error_json(&e, (char **)ctx, &len);
}

static void v2_error_cleanup(void *ctx)
{
    memfit_free(*(char **)ctx);
}

static void test_v2_fault_walks(void **state)
{
    (void)state;
    mf_test_alloc_failures(infer_parse_op, infer_parse_cleanup, NULL);
    char *json = NULL;
    mf_test_alloc_failures(v2_error_op, v2_error_cleanup, &json);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v2_routes),       cmocka_unit_test(test_v2_schemas),
        cmocka_unit_test(test_v2_parse_images), cmocka_unit_test(test_v2_parse_errors),
        cmocka_unit_test(test_v2_repo_parse),   cmocka_unit_test(test_v2_error_json),
        cmocka_unit_test(test_v2_fault_walks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

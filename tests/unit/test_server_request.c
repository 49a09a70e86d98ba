/* Unit tests of the server's pure parts: base64 (round trip, bad input),
 * data URLs, the embeddings and segmentation request parsers (shapes, every
 * client error with its code, allocation fault walks), the segmentation
 * answer (RLE, COCO, PNG; bbox and area from the mask), route matching, the constant-time
 * key check, error bodies, and the /metrics text (HELP/TYPE once per
 * family, label syntax, cumulative histogram buckets ending in +Inf,
 * _sum/_count). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "server/metrics.h"
#include "server/request.h"
#include "test_util.h"

static void test_base64(void **state)
{
    (void)state;
    const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *coded[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (size_t i = 0; i < 7; i++) {
        struct mf_text t = {0};
        mf_text_puts(&t, "");
        assert_true(mf_text_base64(&t, plain[i], strlen(plain[i])));
        assert_string_equal(t.data, coded[i]);
        mf_text_free(&t);
        uint8_t *out;
        size_t n;
        assert_int_equal(mf_base64_decode(coded[i], strlen(coded[i]), &out, &n), MEMFIT_OK);
        assert_int_equal(n, strlen(plain[i]));
        assert_memory_equal(out, plain[i], n);
        memfit_free(out);
    }
    uint8_t *out;
    size_t n;
    assert_int_equal(mf_base64_decode("Zm9vYg", 6, &out, &n), MEMFIT_OK); /* unpadded */
    memfit_free(out);
    const char *bad[] = {"Z", "Zm9v!", "Zm=v", "Zh==", "Zm9vY", "====", "Zg=", "Z g=="};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(mf_base64_decode(bad[i], strlen(bad[i]), &out, &n), MEMFIT_E_FORMAT);
}

static void test_data_url(void **state)
{
    (void)state;
    const char *p;
    size_t n;
    const char *ok = "data:image/png;base64,AAAA";
    assert_int_equal(mf_data_url_split(ok, strlen(ok), &p, &n), MEMFIT_OK);
    assert_int_equal(n, 4);
    assert_memory_equal(p, "AAAA", 4);
    const char *ok2 = "data:;base64,";
    assert_int_equal(mf_data_url_split(ok2, strlen(ok2), &p, &n), MEMFIT_OK);
    assert_int_equal(n, 0);
    const char *bad[] = {"http://x/a.png", "data:image/png,AAAA", "data:text/plain;base64,AA",
                         "data:image/png;base64", "dat"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(mf_data_url_split(bad[i], strlen(bad[i]), &p, &n), MEMFIT_E_FORMAT);
}

static void expect_error(const char *body, const char *code)
{
    struct mf_embed_request r;
    struct mf_http_error e = {0};
    assert_int_equal(mf_embed_request_parse(body, strlen(body), 4, &r, &e), MEMFIT_E_FORMAT);
    assert_int_equal(e.status, 400);
    if (strcmp(e.code, code) != 0)
        fail_msg("%s: code %s, want %s (%s)", body, e.code, code, e.message);
    char *json;
    size_t len;
    assert_int_equal(mf_http_error_json(&e, &json, &len), MEMFIT_OK);
    assert_non_null(strstr(json, "{\"error\":{\"message\":"));
    memfit_free(json);
}

static void test_embed_parse(void **state)
{
    (void)state;
    struct mf_embed_request r;
    struct mf_http_error e;
    const char *one = "{\"model\":\"m\",\"input\":\"a\\u0000b\"}";
    assert_int_equal(mf_embed_request_parse(one, strlen(one), 4, &r, &e), MEMFIT_OK);
    assert_string_equal(r.model, "m");
    assert_int_equal(r.n_inputs, 1);
    assert_int_equal(r.input_lens[0], 3);
    assert_false(r.base64_output);
    mf_embed_request_free(&r);
    const char *many = "{\"model\":\"m\",\"input\":[\"x\",\"yy\"],\"encoding_format\":\"base64\","
                       "\"dimensions\":8,\"user\":\"u\"}";
    assert_int_equal(mf_embed_request_parse(many, strlen(many), 4, &r, &e), MEMFIT_OK);
    assert_int_equal(r.n_inputs, 2);
    assert_string_equal(r.inputs[1], "yy");
    assert_true(r.base64_output);
    assert_int_equal(r.dimensions, 8);
    mf_embed_request_free(&r);

    expect_error("{\"model\":", "invalid_json");
    expect_error("", "invalid_json");
    expect_error("[1]", "invalid_type");
    expect_error("{\"model\":\"m\",\"model\":\"n\",\"input\":\"a\"}", "invalid_json");
    expect_error("{\"input\":\"a\"}", "missing_field");
    expect_error("{\"model\":\"m\"}", "missing_field");
    expect_error("{\"model\":5,\"input\":\"a\"}", "invalid_type");
    expect_error("{\"model\":\"\",\"input\":\"a\"}", "invalid_value");
    expect_error("{\"model\":\"m\",\"input\":5}", "invalid_type");
    expect_error("{\"model\":\"m\",\"input\":[]}", "invalid_value");
    expect_error("{\"model\":\"m\",\"input\":[\"a\",3]}", "invalid_type");
    expect_error("{\"model\":\"m\",\"input\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", "too_many_inputs");
    expect_error("{\"model\":\"m\",\"input\":\"a\",\"encoding_format\":\"hex\"}", "invalid_value");
    expect_error("{\"model\":\"m\",\"input\":\"a\",\"dimensions\":0}", "invalid_value");
    expect_error("{\"model\":\"m\",\"input\":\"a\",\"dimensions\":\"8\"}", "invalid_type");
    expect_error("{\"model\":\"m\",\"input\":\"a\",\"frobnicate\":1}", "invalid_value");
}

static void expect_gen_error(const char *body, bool chat, const char *code)
{
    struct mf_gen_request r;
    struct mf_http_error e;
    assert_int_equal(mf_gen_request_parse(body, strlen(body), chat, &r, &e), MEMFIT_E_FORMAT);
    assert_int_equal(e.status, 400);
    if (strcmp(e.code, code) != 0)
        fail_msg("%s: code %s, expected %s (%s)", body, e.code, code, e.message);
}

static void test_gen_parse(void **state)
{
    (void)state;
    struct mf_gen_request r;
    struct mf_http_error e;
    const char *chat = "{\"model\":\"q\",\"messages\":[{\"role\":\"developer\",\"content\":\"be "
                       "brief\"},{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":"
                       "\"hi \"},{\"type\":\"text\",\"text\":\"there\"}]}],\"stream\":true,"
                       "\"stream_options\":{\"include_usage\":true},\"temperature\":0,"
                       "\"max_tokens\":7,\"stop\":[\"\\n\",\"END\"],\"seed\":42,\"top_k\":5,"
                       "\"frequency_penalty\":0,\"logit_bias\":{},\"tools\":[]}";
    assert_int_equal(mf_gen_request_parse(chat, strlen(chat), true, &r, &e), MEMFIT_OK);
    assert_string_equal(r.model, "q");
    assert_int_equal(r.n_messages, 2);
    assert_string_equal(r.roles[0], "system");
    assert_string_equal(r.contents[1], "hi there");
    assert_true(r.stream && r.include_usage);
    assert_true(r.has_temperature && r.temperature == 0);
    assert_true(r.has_max_tokens && r.max_tokens == 7);
    assert_int_equal(r.n_stop, 2);
    assert_string_equal(r.stop[1], "END");
    assert_true(r.has_seed && r.seed == 42);
    assert_true(r.has_top_k && r.top_k == 5);
    mf_gen_request_free(&r);
    const char *cmpl = "{\"model\":\"q\",\"prompt\":[\"Once\"],\"stop\":\"x\",\"n\":1,"
                       "\"max_completion_tokens\":3,\"repetition_penalty\":1.1}";
    assert_int_equal(mf_gen_request_parse(cmpl, strlen(cmpl), false, &r, &e), MEMFIT_OK);
    assert_string_equal(r.prompt, "Once");
    assert_int_equal(r.n_stop, 1);
    assert_false(r.stream);
    assert_true(r.has_repeat_penalty && r.repeat_penalty > 1.09);
    mf_gen_request_free(&r);

    expect_gen_error("{\"model\":\"q\"}", true, "missing_field");
    expect_gen_error("{\"model\":\"q\"}", false, "missing_field");
    expect_gen_error("{\"model\":\"q\",\"messages\":[]}", true, "invalid_value");
    expect_gen_error("{\"model\":\"q\",\"messages\":{}}", true, "invalid_type");
    expect_gen_error("{\"model\":\"q\",\"messages\":[{\"role\":\"bot\",\"content\":\"x\"}]}", true,
                     "invalid_value");
    expect_gen_error("{\"model\":\"q\",\"messages\":[{\"content\":\"x\"}]}", true, "missing_field");
    expect_gen_error("{\"model\":\"q\",\"messages\":[{\"role\":\"user\"}]}", true, "missing_field");
    expect_gen_error("{\"model\":\"q\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
                     "\"image_url\"}]}]}",
                     true, "invalid_value");
    expect_gen_error("{\"model\":\"q\",\"prompt\":5}", false, "invalid_type");
    expect_gen_error("{\"model\":\"q\",\"prompt\":[\"a\",\"b\"]}", false, "invalid_value");
    expect_gen_error("{\"model\":\"q\",\"prompt\":\"a\",\"temperature\":3}", false,
                     "invalid_value");
    expect_gen_error("{\"model\":\"q\",\"prompt\":\"a\",\"temperature\":\"hot\"}", false,
                     "invalid_type");
    expect_gen_error("{\"model\":\"q\",\"prompt\":\"a\",\"top_p\":0}", false, "invalid_value");
    expect_gen_error("{\"model\":\"q\",\"prompt\":\"a\",\"max_tokens\":-1}", false,
                     "invalid_value");
    expect_gen_error("{\"model\":\"q\",\"prompt\":\"a\",\"max_tokens\":1.5}", false,
                     "invalid_type");
    expect_gen_error("{\"model\":\"q\",\"prompt\":\"a\",\"n\":17}", false, "invalid_value");
    expect_gen_error("{\"model\":\"q\",\"prompt\":\"a\",\"n\":0}", false, "invalid_value");
    expect_gen_error("{\"model\":\"q\",\"prompt\":\"a\",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}",
                     false, "invalid_value");
    expect_gen_error("{\"model\":\"q\",\"prompt\":\"a\",\"stop\":[\"\"]}", false, "invalid_value");
    expect_gen_error("{\"model\":\"q\",\"prompt\":\"a\",\"stream\":\"yes\"}", false,
                     "invalid_type");
    expect_gen_error("{\"model\":\"q\",\"prompt\":\"a\",\"presence_penalty\":2.5}", false,
                     "invalid_value");
    expect_gen_error("{\"model\":\"q\",\"prompt\":\"a\",\"logit_bias\":{\"x\":2}}", false,
                     "invalid_value");
    expect_gen_error("{\"model\":\"q\",\"prompt\":\"a\",\"logit_bias\":{\"1\":-101}}", false,
                     "invalid_value");
    expect_gen_error("{\"model\":\"q\",\"prompt\":\"a\",\"logit_bias\":[1]}", false,
                     "invalid_type");
    expect_gen_error("{\"model\":\"q\",\"prompt\":\"a\\u0000b\"}", false, "invalid_json");
}

/* Each field is honoured or refused by name; unknown ones are refused. */
static void test_gen_openai_fields(void **state)
{
    (void)state;
    struct mf_gen_request r;
    struct mf_http_error e;
    const char *chat = "{\"model\":\"q\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                       "\"n\":3,\"presence_penalty\":0.5,\"frequency_penalty\":-1,"
                       "\"logit_bias\":{\"7\":-100,\"12\":2.5},\"logprobs\":true,"
                       "\"top_logprobs\":4,\"keep_alive\":\"5m\",\"response_format\":{\"type\":"
                       "\"text\"},\"store\":false,\"service_tier\":\"auto\",\"tool_choice\":"
                       "\"none\",\"parallel_tool_calls\":true,\"modalities\":[\"text\"]}";
    assert_int_equal(mf_gen_request_parse(chat, strlen(chat), true, &r, &e), MEMFIT_OK);
    assert_int_equal(r.n, 3);
    assert_true(r.presence_penalty == 0.5 && r.frequency_penalty == -1);
    assert_int_equal(r.n_logit_bias, 2);
    assert_int_equal(r.logit_bias[0].token, 7);
    assert_true(r.logit_bias[0].bias == -100.0f && r.logit_bias[1].bias == 2.5f);
    assert_true(r.logprobs && r.top_logprobs == 4);
    assert_true(r.has_keep_alive && r.keep_alive_s == 300);
    assert_int_equal(r.n_tools, 0);
    mf_gen_request_free(&r);
    /* tools (refused by the route when the template has none), a named choice,
     * and a conversation with a call and its result */
    const char *tools =
        "{\"model\":\"q\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call_1\",\"type\":"
        "\"function\",\"function\":{\"name\":\"get\",\"arguments\":\"{\\\"a\\\":1}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":\"42\"}],"
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get\",\"parameters\":"
        "{\"type\":\"object\"}}},{\"type\":\"function\",\"function\":{\"name\":\"put\","
        "\"description\":\"d\"}}],\"tool_choice\":{\"type\":\"function\",\"function\":"
        "{\"name\":\"put\"}},\"parallel_tool_calls\":false,\"keep_alive\":-1}";
    assert_int_equal(mf_gen_request_parse(tools, strlen(tools), true, &r, &e), MEMFIT_OK);
    assert_int_equal(r.n_tools, 2);
    assert_string_equal(r.tools[0].name, "get");
    assert_string_equal(r.tools[0].parameters, "{\"type\":\"object\"}");
    assert_null(r.tools[1].parameters);
    assert_int_equal(r.tool_choice, MF_TOOL_CHOICE_NAMED);
    assert_int_equal(r.tool_choice_index, 1);
    assert_false(r.parallel_tool_calls);
    assert_non_null(strstr(r.tools_json, "\"name\":\"put\""));
    assert_int_equal(r.n_tool_calls[1], 1);
    assert_string_equal(r.tool_calls[1][0].name, "get");
    assert_string_equal(r.tool_calls[1][0].arguments, "{\"a\":1}");
    assert_string_equal(r.contents[1], "");
    assert_string_equal(r.roles[2], "tool");
    assert_string_equal(r.tool_call_ids[2], "call_1");
    assert_true(r.has_keep_alive && r.keep_alive_s == -1);
    mf_gen_request_free(&r);
    /* tool_choice "none": the tools are dropped */
    const char *none = "{\"model\":\"q\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                       "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],"
                       "\"tool_choice\":\"none\"}";
    assert_int_equal(mf_gen_request_parse(none, strlen(none), true, &r, &e), MEMFIT_OK);
    assert_true(r.n_tools == 0 && !r.tools_json && r.parallel_tool_calls);
    mf_gen_request_free(&r);
    const char *cmpl = "{\"model\":\"q\",\"prompt\":\"x\",\"logprobs\":2,\"keep_alive\":0,"
                       "\"best_of\":2,\"n\":2,\"suffix\":\"\"}";
    assert_int_equal(mf_gen_request_parse(cmpl, strlen(cmpl), false, &r, &e), MEMFIT_OK);
    assert_true(r.logprobs && r.top_logprobs == 2 && !r.echo);
    assert_true(r.has_keep_alive && r.keep_alive_s == 0);
    mf_gen_request_free(&r);
    const char *echo = "{\"model\":\"q\",\"prompt\":\"x\",\"echo\":true,\"keep_alive\":1.5}";
    assert_int_equal(mf_gen_request_parse(echo, strlen(echo), false, &r, &e), MEMFIT_OK);
    assert_true(r.echo && !r.logprobs && r.n == 1 && r.keep_alive_s == 2);
    mf_gen_request_free(&r);
    /* echo with logprobs: the prompt's logprobs too (issue 18) */
    const char *echo_lp = "{\"model\":\"q\",\"prompt\":\"x\",\"echo\":true,\"logprobs\":3,"
                          "\"max_tokens\":0}";
    assert_int_equal(mf_gen_request_parse(echo_lp, strlen(echo_lp), false, &r, &e), MEMFIT_OK);
    assert_true(r.echo && r.logprobs && r.top_logprobs == 3);
    assert_true(r.has_max_tokens && r.max_tokens == 0);
    mf_gen_request_free(&r);

#define CHAT_WITH(extra)                                                                           \
    "{\"model\":\"q\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]," extra "}"
#define CMPL_WITH(extra) "{\"model\":\"q\",\"prompt\":\"x\"," extra "}"
    static const struct {
        const char *body;
        bool chat;
        const char *code, *names;
    } refused[] = {
        {CHAT_WITH("\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"schema\":{"
                   "\"type\":\"integer\",\"minimum\":3}}}"),
         true, "unsupported_schema", "minimum"},
        {CHAT_WITH("\"response_format\":{\"type\":\"xml\"}"), true, "invalid_value", "xml"},
        {CHAT_WITH("\"response_format\":{\"type\":\"json_object\",\"x\":1}"), true, "invalid_value",
         "'x'"},
        {CHAT_WITH("\"response_format\":{\"type\":\"json_schema\"}"), true, "invalid_type",
         "json_schema"},
        {CHAT_WITH("\"frobnicate\":1"), true, "invalid_value", "frobnicate"},
        {CMPL_WITH("\"messages\":[]"), false, "invalid_value", "messages"},
        {CHAT_WITH("\"echo\":true"), true, "invalid_value", "echo"},
        {CMPL_WITH("\"top_logprobs\":2"), false, "invalid_value", "top_logprobs"},
        {CHAT_WITH("\"top_logprobs\":2"), true, "invalid_value", "top_logprobs"},
        {CHAT_WITH("\"logprobs\":2"), true, "invalid_type", "logprobs"},
        {CHAT_WITH("\"logprobs\":true,\"top_logprobs\":21"), true, "invalid_value", "top_logprobs"},
        {CMPL_WITH("\"echo\":1"), false, "invalid_type", "echo"},
        {CMPL_WITH("\"suffix\":\"end\""), false, "unsupported_field", "suffix"},
        {CMPL_WITH("\"best_of\":3"), false, "unsupported_field", "best_of"},
        {CHAT_WITH("\"store\":true"), true, "unsupported_field", "store"},
        {CHAT_WITH("\"metadata\":{\"a\":\"b\"}"), true, "unsupported_field", "metadata"},
        {CHAT_WITH("\"service_tier\":\"flex\""), true, "unsupported_field", "service_tier"},
        {CHAT_WITH("\"tool_choice\":\"required\""), true, "unsupported_field", "tool_choice"},
        {CHAT_WITH("\"functions\":[{}]"), true, "unsupported_field", "functions"},
        {CHAT_WITH("\"tools\":[{\"type\":\"function\"}]"), true, "missing_field", "function"},
        {CHAT_WITH("\"tools\":[{\"type\":\"web\",\"function\":{}}]"), true, "unsupported_field",
         "tools[0].type"},
        {CHAT_WITH("\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"a b\"}}]"), true,
         "invalid_value", "tools[0].function.name"},
        {CHAT_WITH("\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"x\":1}}]"),
         true, "invalid_value", "'x'"},
        {CHAT_WITH("\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}},"
                   "{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]"),
         true, "invalid_value", "tools[1]"},
        {CHAT_WITH("\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],"
                   "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"g\"}}"),
         true, "invalid_value", "'g'"},
        {CHAT_WITH("\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],"
                   "\"response_format\":{\"type\":\"json_object\"}"),
         true, "unsupported_field", "response_format"},
        {"{\"model\":\"q\",\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}", true,
         "missing_field", "tool_call_id"},
        {"{\"model\":\"q\",\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"tool_calls\":[]}]}",
         true, "invalid_value", "tool_calls"},
        {"{\"model\":\"q\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\","
         "\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"[1]\"}}]}]}",
         true, "invalid_value", "arguments"},
        {"{\"model\":\"q\",\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"name\":\"bob\"}]}",
         true, "unsupported_field", "name"},
        {CHAT_WITH("\"audio\":{\"voice\":\"x\"}"), true, "unsupported_field", "audio"},
        {CHAT_WITH("\"modalities\":[\"text\",\"audio\"]"), true, "unsupported_field", "modalities"},
        {CHAT_WITH("\"reasoning_effort\":\"low\""), true, "unsupported_field", "reasoning_effort"},
        {CHAT_WITH("\"keep_alive\":\"soon\""), true, "invalid_value", "keep_alive"},
        {CHAT_WITH("\"keep_alive\":true"), true, "invalid_type", "keep_alive"},
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(*refused); i++) {
        expect_gen_error(refused[i].body, refused[i].chat, refused[i].code);
        assert_int_equal(
            mf_gen_request_parse(refused[i].body, strlen(refused[i].body), refused[i].chat, &r, &e),
            MEMFIT_E_FORMAT);
        if (!strstr(e.message, refused[i].names))
            fail_msg("%s: the message does not name %s: %s", refused[i].body, refused[i].names,
                     e.message);
    }
#undef CHAT_WITH
#undef CMPL_WITH
}

static struct mf_gen_request walk_gen;

static enum memfit_status gen_parse_op(void *ctx)
{
    (void)ctx;
    const char *body = "{\"model\":\"q\",\"messages\":[{\"role\":\"system\",\"content\":\"s\"},"
                       "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"}]}],"
                       "\"stop\":[\"x\",\"y\"]}";
    struct mf_http_error e;
    return mf_gen_request_parse(body, strlen(body), true, &walk_gen, &e);
}

static void gen_parse_cleanup(void *ctx)
{
    (void)ctx;
    mf_gen_request_free(&walk_gen);
}

static struct mf_embed_request walk_req;

static enum memfit_status parse_op(void *ctx)
{
    (void)ctx;
    const char *body = "{\"model\":\"m\",\"input\":[\"first input\",\"second\",\"third\"]}";
    struct mf_http_error e;
    return mf_embed_request_parse(body, strlen(body), 8, &walk_req, &e);
}

static void parse_cleanup(void *ctx)
{
    (void)ctx;
    mf_embed_request_free(&walk_req);
}

static enum memfit_status b64_op(void *ctx)
{
    uint8_t *out;
    size_t n;
    enum memfit_status st = mf_base64_decode("Zm9vYmFy", 8, &out, &n);
    if (st == MEMFIT_OK)
        *(uint8_t **)ctx = out;
    return st;
}

static void b64_cleanup(void *ctx)
{
    memfit_free(*(uint8_t **)ctx);
}

static enum memfit_status error_op(void *ctx)
{
    struct mf_http_error e;
    mf_http_error_set(&e, 404, "invalid_request_error", "model_not_found", "no \"x\"\n");
    size_t len;
    return mf_http_error_json(&e, (char **)ctx, &len);
}

static void error_cleanup(void *ctx)
{
    memfit_free(*(char **)ctx);
}

static void test_fault_walks(void **state)
{
    (void)state;
    mf_test_alloc_failures(parse_op, parse_cleanup, NULL);
    mf_test_alloc_failures(gen_parse_op, gen_parse_cleanup, NULL);
    uint8_t *b64 = NULL;
    mf_test_alloc_failures(b64_op, b64_cleanup, &b64);
    char *json = NULL;
    mf_test_alloc_failures(error_op, error_cleanup, &json);
}

static void test_routes(void **state)
{
    (void)state;
    char name[MF_MODEL_NAME_MAX];
    const char *allowed;
    assert_int_equal(mf_route_match("/v1/embeddings", name, &allowed), MF_ROUTE_EMBEDDINGS);
    assert_string_equal(allowed, "POST");
    assert_int_equal(mf_route_match("/api/segment", name, &allowed), MF_ROUTE_SEGMENT);
    assert_string_equal(allowed, "POST");
    assert_string_equal(mf_route_label(MF_ROUTE_SEGMENT), "/api/segment");
    assert_int_equal(mf_route_match("/health", name, &allowed), MF_ROUTE_HEALTH);
    assert_string_equal(allowed, "GET");
    assert_int_equal(mf_route_match("/api/models/dino-s/load", name, &allowed),
                     MF_ROUTE_MODEL_LOAD);
    assert_string_equal(name, "dino-s");
    assert_int_equal(mf_route_match("/api/models/x/unload", name, &allowed), MF_ROUTE_MODEL_UNLOAD);
    const char *other[] = {"/api/models//load",
                           "/api/models/x/y/load",
                           "/api/models/x",
                           "/api/models/x/loadx",
                           "/v1/embeddings/",
                           "",
                           "/HEALTH"};
    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
        assert_int_equal(mf_route_match(other[i], name, &allowed), MF_ROUTE_OTHER);
        assert_null(allowed);
    }
    char longname[300] = "/api/models/";
    memset(longname + 12, 'a', 200);
    strcpy(longname + 212, "/load"); /* lint: allow: test data of known size */
    assert_int_equal(mf_route_match(longname, name, &allowed), MF_ROUTE_OTHER);
    assert_string_equal(mf_route_label(MF_ROUTE_MODEL_LOAD), "/api/models/{name}/load");
}

static void test_keys(void **state)
{
    (void)state;
    assert_true(mf_ct_equal("abc", 3, "abc", 3));
    assert_false(mf_ct_equal("abd", 3, "abc", 3));
    assert_false(mf_ct_equal("ab", 2, "abc", 3));
    assert_false(mf_ct_equal("abcd", 4, "abc", 3));
    assert_false(mf_ct_equal("", 0, "abc", 3));
    assert_true(mf_bearer_ok("Bearer k3y", "k3y"));
    assert_true(mf_bearer_ok("bearer   k3y ", "k3y"));
    assert_false(mf_bearer_ok("Basic k3y", "k3y"));
    assert_false(mf_bearer_ok("Bearer k3", "k3y"));
    assert_false(mf_bearer_ok(NULL, "k3y"));
}

/* Checks the exposition: every sample's family has HELP and TYPE before it,
 * each once; labels are name="value" pairs; histogram buckets are cumulative
 * and end with +Inf equal to _count. */
static void check_exposition(const char *text)
{
    char families[128][96];
    size_t n_families = 0;
    const char *line = text;
    unsigned long long last_bucket = 0;
    bool in_hist = false;
    while (*line) {
        const char *end = strchr(line, '\n');
        assert_non_null(end);
        char buf[1024];
        size_t len = (size_t)(end - line);
        assert_true(len < sizeof(buf));
        memcpy(buf, line, len);
        buf[len] = '\0';
        line = end + 1;
        if (strncmp(buf, "# HELP ", 7) == 0) {
            char name[96];
            assert_int_equal(sscanf(buf + 7, "%95s", name), 1);
            for (size_t i = 0; i < n_families; i++)
                if (strcmp(families[i], name) == 0)
                    fail_msg("family %s declared twice", name);
            assert_true(n_families < 128);
            snprintf(families[n_families++], 96, "%s", name);
            continue;
        }
        if (strncmp(buf, "# TYPE ", 7) == 0) {
            char name[96], type[32];
            assert_int_equal(sscanf(buf + 7, "%95s %31s", name, type), 2);
            assert_string_equal(name, families[n_families - 1]);
            assert_true(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 ||
                        strcmp(type, "histogram") == 0);
            if (strcmp(type, "counter") == 0)
                assert_non_null(strstr(name, "_total"));
            continue;
        }
        /* A sample: name[{labels}] value */
        size_t nl = strspn(buf, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_:0123456789");
        assert_true(nl > 0);
        char name[96];
        memcpy(name, buf, nl);
        name[nl] = '\0';
        const char *fam = families[n_families - 1];
        size_t fl = strlen(fam);
        assert_true(strncmp(name, fam, fl) == 0);
        const char *suffix = name + fl;
        assert_true(*suffix == '\0' || strcmp(suffix, "_bucket") == 0 ||
                    strcmp(suffix, "_sum") == 0 || strcmp(suffix, "_count") == 0);
        const char *p = buf + nl;
        if (*p == '{') {
            p++;
            while (*p != '}') {
                size_t k = strspn(p, "abcdefghijklmnopqrstuvwxyz_");
                assert_true(k > 0);
                p += k;
                assert_int_equal(*p, '=');
                assert_int_equal(p[1], '"');
                p += 2;
                while (*p != '"') {
                    assert_true(*p != '\0');
                    p += *p == '\\' ? 2 : 1;
                }
                p++;
                if (*p == ',')
                    p++;
            }
            p++;
        }
        assert_int_equal(*p, ' ');
        char *num_end;
        double v = strtod(p + 1, &num_end);
        assert_int_equal(*num_end, '\0');
        if (strcmp(suffix, "_bucket") == 0) {
            unsigned long long b = (unsigned long long)v;
            if (in_hist)
                assert_true(b >= last_bucket);
            last_bucket = b;
            in_hist = strstr(buf, "le=\"+Inf\"") == NULL;
        } else if (strcmp(suffix, "_count") == 0) {
            assert_int_equal((unsigned long long)v, last_bucket);
        }
    }
}

static void test_metrics_format(void **state)
{
    (void)state;
    static struct mf_metrics m;
    memset(&m, 0, sizeof(m));
    mf_metrics_observe(&m, MF_ROUTE_HEALTH, 200, 100000);
    mf_metrics_observe(&m, MF_ROUTE_HEALTH, 200, 3000000000ull);
    mf_metrics_observe(&m, MF_ROUTE_EMBEDDINGS, 429, 20000000000ull); /* past the last bound */
    mf_metrics_observe(&m, MF_ROUTE_OTHER, 418, 1000);
    struct memfit_model_status models[2];
    memset(models, 0, sizeof(models));
    models[0].name = "dino";
    models[0].state = MEMFIT_MODEL_READY;
    models[0].total_bytes = 1234;
    models[1].name = "we\"ird\\name\n";
    struct memfit_manager_status snap;
    memset(&snap, 0, sizeof(snap));
    snap.budget.size_bytes = 1000000;
    snap.n_models = 2;
    snap.models = models;
    struct mf_mem_sample s = {.working_set_bytes = 5,
                              .limit_bytes = 10,
                              .rss_bytes = 3,
                              .have_psi = true,
                              .psi_some_total_us = 1500000};
    struct mf_server_gauges g = {.connections = 1, .queue_capacity = 64};
    struct mf_text t = {0};
    assert_true(mf_metrics_format(&t, &m, &snap, &s, &g));
    check_exposition(t.data);
    assert_non_null(strstr(t.data, "memfit_http_request_duration_seconds_bucket{route=\"/health\","
                                   "code=\"200\",le=\"+Inf\"} 2\n"));
    assert_non_null(strstr(t.data, "memfit_http_requests_total{route=\"other\",code=\"other\"} 1"));
    assert_non_null(strstr(t.data, "memfit_model_bytes{model=\"dino\"} 1234\n"));
    assert_non_null(strstr(t.data, "{model=\"we\\\"ird\\\\name\\n\"}"));
    assert_non_null(strstr(t.data, "memfit_model_state{model=\"dino\",state=\"ready\"} 1\n"));
    assert_non_null(strstr(t.data, "process_resident_memory_bytes 3\n"));
    assert_non_null(strstr(t.data, "memfit_pressure_memory_waiting_seconds_total 1.500000\n"));
    mf_text_free(&t);
}

/* ---- The segmentation request and answer ---------------------------------------------- */

/* "iVBORw0KGgo=" is the PNG signature's first bytes: any base64 will do for the parser. */
#define SEG_IMAGE "\"image\":\"data:image/png;base64,iVBORw0KGgo=\""

static void expect_seg_error(const char *body, const char *code, const char *needle)
{
    struct mf_segment_request r;
    struct mf_http_error e;
    assert_int_equal(mf_segment_request_parse(body, strlen(body), &r, &e), MEMFIT_E_FORMAT);
    assert_int_equal(e.status, 400);
    if (strcmp(e.code, code) != 0 || (needle && !strstr(e.message, needle)))
        fail_msg("%s: code %s (%s), expected %s naming '%s'", body, e.code, e.message, code,
                 needle ? needle : "");
}

static void test_segment_parse(void **state)
{
    (void)state;
    struct mf_segment_request r;
    struct mf_http_error e;
    /* One point: three masks by default; the image from a data URL. mask_input
     * is 2 little-endian float32: 1.0 and -2.0. */
    const char *one = "{\"model\":\"sam\"," SEG_IMAGE ",\"points\":[[10,12.5]],"
                      "\"mask_input\":\"AACAPwAAAMA=\",\"return_low_res\":true}";
    assert_int_equal(mf_segment_request_parse(one, strlen(one), &r, &e), MEMFIT_OK);
    assert_string_equal(r.model, "sam");
    assert_int_equal(r.image_bytes, 8);
    assert_memory_equal(r.image, "\x89PNG\r\n\x1a\n", 8);
    assert_int_equal(r.n_points, 1);
    assert_true(r.points[0] == 10.0f && r.points[1] == 12.5f && r.labels[0] == 1);
    assert_true(r.multimask && !r.has_box && !r.automatic && r.return_low_res);
    assert_int_equal(r.n_mask_input, 2);
    assert_true(r.mask_input[0] == 1.0f && r.mask_input[1] == -2.0f);
    assert_int_equal(r.output, MF_SEGMENT_OUTPUT_RLE);
    mf_segment_request_free(&r);
    /* Bare base64; two points and a box: one mask by default; labels given. */
    const char *box = "{\"model\":\"sam\",\"image\":\"iVBORw0KGgo=\",\"points\":[[1,2],[3,4]],"
                      "\"labels\":[1,0],\"box\":[0,1,20,30],\"output_mode\":\"png\"}";
    assert_int_equal(mf_segment_request_parse(box, strlen(box), &r, &e), MEMFIT_OK);
    assert_int_equal(r.image_bytes, 8);
    assert_int_equal(r.n_points, 2);
    assert_int_equal(r.labels[1], 0);
    assert_true(r.has_box && r.box[2] == 20.0f && r.box[3] == 30.0f);
    assert_false(r.multimask);
    assert_int_equal(r.output, MF_SEGMENT_OUTPUT_PNG);
    mf_segment_request_free(&r);
    const char *forced = "{\"model\":\"sam\"," SEG_IMAGE ",\"box\":[0,0,1,1],"
                         "\"multimask_output\":true,\"output_mode\":\"coco_rle\"}";
    assert_int_equal(mf_segment_request_parse(forced, strlen(forced), &r, &e), MEMFIT_OK);
    assert_true(r.multimask && r.n_points == 0 && r.output == MF_SEGMENT_OUTPUT_COCO);
    mf_segment_request_free(&r);
    /* Automatic: the reference's defaults, some overridden; no batch: the model's. */
    const char *amg = "{\"model\":\"sam\"," SEG_IMAGE ",\"auto\":true,\"points_per_side\":4,"
                      "\"pred_iou_thresh\":-1,\"crop_n_layers\":1,\"min_mask_region_area\":7}";
    assert_int_equal(mf_segment_request_parse(amg, strlen(amg), &r, &e), MEMFIT_OK);
    assert_true(r.automatic && !r.has_points_per_batch && !r.batch_auto);
    assert_int_equal(r.amg.points_per_side, 4);
    assert_true(r.amg.pred_iou_thresh == -1.0 && r.amg.stability_score_thresh == 0.95);
    assert_int_equal(r.amg.crop_n_layers, 1);
    assert_int_equal(r.amg.min_mask_region_area, 7);
    mf_segment_request_free(&r);
    const char *amg_auto = "{\"model\":\"sam\"," SEG_IMAGE ",\"auto\":true,"
                           "\"points_per_batch\":\"auto\"}";
    assert_int_equal(mf_segment_request_parse(amg_auto, strlen(amg_auto), &r, &e), MEMFIT_OK);
    assert_true(r.has_points_per_batch && r.batch_auto);
    mf_segment_request_free(&r);
    const char *amg_8 = "{\"model\":\"sam\"," SEG_IMAGE ",\"auto\":true,\"points_per_batch\":8}";
    assert_int_equal(mf_segment_request_parse(amg_8, strlen(amg_8), &r, &e), MEMFIT_OK);
    assert_true(r.has_points_per_batch && !r.batch_auto && r.amg.points_per_batch == 8);
    mf_segment_request_free(&r);

    const char *P = "{\"model\":\"sam\"," SEG_IMAGE ",\"points\":[[1,2]]";
    char b[512];
#define SEG_BODY(tail) (snprintf(b, sizeof(b), "%s%s}", P, tail), b)
    expect_seg_error("{\"model\":", "invalid_json", NULL);
    expect_seg_error("[]", "invalid_type", NULL);
    expect_seg_error(SEG_BODY(",\"frobnicate\":1"), "invalid_value", "frobnicate");
    expect_seg_error("{" SEG_IMAGE ",\"points\":[[1,2]]}", "missing_field", "model");
    expect_seg_error("{\"model\":\"sam\",\"points\":[[1,2]]}", "missing_field", "image");
    expect_seg_error("{\"model\":\"sam\"," SEG_IMAGE "}", "missing_field", "points");
    expect_seg_error("{\"model\":\"sam\",\"image\":5,\"box\":[0,0,1,1]}", "invalid_type", "image");
    expect_seg_error("{\"model\":\"sam\",\"image\":\"\",\"box\":[0,0,1,1]}", "invalid_value",
                     "image");
    expect_seg_error("{\"model\":\"sam\",\"image\":\"data:text/plain;base64,AAAA\",\"box\":[0,0,1,"
                     "1]}",
                     "invalid_image_url", "image");
    expect_seg_error("{\"model\":\"sam\",\"image\":\"AB$$\",\"box\":[0,0,1,1]}", "invalid_base64",
                     "image");
    expect_seg_error(SEG_BODY(",\"labels\":[1,1]"), "invalid_value", "labels");
    expect_seg_error(SEG_BODY(",\"labels\":[2]"), "invalid_value", "labels[0]");
    expect_seg_error(SEG_BODY(",\"labels\":[true]"), "invalid_type", "labels[0]");
    expect_seg_error(SEG_BODY(",\"labels\":1"), "invalid_type", "labels");
    expect_seg_error("{\"model\":\"sam\"," SEG_IMAGE ",\"points\":[[1,2,3]]}", "invalid_value",
                     "points[0]");
    expect_seg_error("{\"model\":\"sam\"," SEG_IMAGE ",\"points\":[1,2]}", "invalid_type",
                     "points[0]");
    expect_seg_error("{\"model\":\"sam\"," SEG_IMAGE ",\"points\":[[1,\"2\"]]}", "invalid_type",
                     "points[0][1]");
    expect_seg_error("{\"model\":\"sam\"," SEG_IMAGE ",\"points\":[[1e300,2]]}", "invalid_value",
                     "points[0][0]");
    expect_seg_error("{\"model\":\"sam\"," SEG_IMAGE ",\"points\":{}}", "invalid_type", "points");
    expect_seg_error(SEG_BODY(",\"box\":[3,0,1,1]"), "invalid_value", "box");
    expect_seg_error(SEG_BODY(",\"box\":[0,0,1]"), "invalid_value", "box");
    expect_seg_error(SEG_BODY(",\"box\":\"0,0,1,1\""), "invalid_type", "box");
    expect_seg_error(SEG_BODY(",\"multimask_output\":1"), "invalid_type", "multimask_output");
    expect_seg_error(SEG_BODY(",\"return_low_res\":\"yes\""), "invalid_type", "return_low_res");
    expect_seg_error(SEG_BODY(",\"mask_input\":\"AAAA\""), "invalid_value", "mask_input");
    expect_seg_error(SEG_BODY(",\"mask_input\":\"A!AA\""), "invalid_base64", "mask_input");
    expect_seg_error(SEG_BODY(",\"mask_input\":[1]"), "invalid_type", "mask_input");
    expect_seg_error(SEG_BODY(",\"output_mode\":\"binary_mask\""), "invalid_value", "output_mode");
    expect_seg_error(SEG_BODY(",\"output_mode\":2"), "invalid_type", "output_mode");
    expect_seg_error(SEG_BODY(",\"auto\":true"), "invalid_value", "points");
    expect_seg_error(SEG_BODY(",\"auto\":\"yes\""), "invalid_type", "auto");
    expect_seg_error(SEG_BODY(",\"points_per_side\":4"), "invalid_value", "points_per_side");
    const char *A = "{\"model\":\"sam\"," SEG_IMAGE ",\"auto\":true";
#define AMG_BODY(tail) (snprintf(b, sizeof(b), "%s%s}", A, tail), b)
    expect_seg_error(AMG_BODY(",\"box\":[0,0,1,1]"), "invalid_value", "box");
    expect_seg_error(AMG_BODY(",\"return_low_res\":true"), "invalid_value", "return_low_res");
    expect_seg_error(AMG_BODY(",\"points_per_batch\":\"many\""), "invalid_value",
                     "points_per_batch");
    expect_seg_error(AMG_BODY(",\"points_per_batch\":0"), "invalid_value", "points_per_batch");
    expect_seg_error(AMG_BODY(",\"points_per_batch\":1.5"), "invalid_type", "points_per_batch");
    expect_seg_error(AMG_BODY(",\"points_per_batch\":[8]"), "invalid_type", "points_per_batch");
    expect_seg_error(AMG_BODY(",\"points_per_side\":0"), "invalid_value", "points_per_side");
    expect_seg_error(AMG_BODY(",\"points_per_side\":\"4\""), "invalid_type", "points_per_side");
    expect_seg_error(AMG_BODY(",\"box_nms_thresh\":1.5"), "invalid_value", "box_nms_thresh");
    expect_seg_error(AMG_BODY(",\"crop_n_layers\":9"), "invalid_value", "crop_n_layers");
    expect_seg_error(AMG_BODY(",\"crop_n_points_downscale_factor\":0"), "invalid_value",
                     "crop_n_points_downscale_factor");
    expect_seg_error(AMG_BODY(",\"stability_score_offset\":-1"), "invalid_value",
                     "stability_score_offset");
#undef SEG_BODY
#undef AMG_BODY
}

/* A 4 x 3 image with one prompt mask: pixels (1,0), (2,0), (2,1) set. */
static const uint8_t seg_mask[12] = {0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0};
static float seg_iou[1] = {0.5f};
static float seg_low_res[4] = {1, 2, 3, 4};

static void seg_result(struct memfit_segment_result *res)
{
    memset(res, 0, sizeof(*res));
    res->width = 4;
    res->height = 3;
    res->n_masks = 1;
    res->masks = (uint8_t *)seg_mask;
    res->iou = seg_iou;
    res->low_res = seg_low_res;
    res->mask_size = 2;
    res->embedding_cached = true;
}

static void test_segment_response(void **state)
{
    (void)state;
    struct mf_segment_request q = {.model = (char *)"sam", .return_low_res = true};
    struct memfit_segment_result res;
    seg_result(&res);
    struct mf_text t = {0};
    assert_int_equal(mf_segment_response_json(&t, &q, &res), MEMFIT_OK);
    /* Column-major runs: x=0 column 3 unset, (1,0) set, 2 unset, (2,0) (2,1) set, 4 unset.
     * bbox XYWH from the inclusive XYXY [1, 0, 2, 1]: w = 2 - 1. */
    assert_non_null(strstr(t.data, "\"width\":4,\"height\":3,\"masks\":[{\"segmentation\":"
                                   "{\"size\":[3,4],\"counts\":[3,1,2,2,4]},\"area\":3,"
                                   "\"bbox\":[1,0,1,1],\"predicted_iou\":0.5}]"));
    assert_non_null(strstr(t.data, "\"embedding_cached\":true,\"mask_size\":2,"
                                   "\"low_res_masks\":\"AACAPwAAAEAAAEBAAACAQA==\""));
    assert_null(strstr(t.data, "points_per_batch"));
    assert_non_null(strstr(t.data, "\"timing\":{\"encode_s\":"));
    mf_text_free(&t);
    q.output = MF_SEGMENT_OUTPUT_COCO;
    q.return_low_res = false;
    assert_int_equal(mf_segment_response_json(&t, &q, &res), MEMFIT_OK);
    assert_non_null(strstr(t.data, "{\"size\":[3,4],\"counts\":\""));
    assert_null(strstr(t.data, "low_res_masks"));
    mf_text_free(&t);
    q.output = MF_SEGMENT_OUTPUT_PNG;
    assert_int_equal(mf_segment_response_json(&t, &q, &res), MEMFIT_OK);
    assert_non_null(strstr(t.data, "\"segmentation\":\"data:image/png;base64,iVBORw0KGgo"));
    mf_text_free(&t);
    /* Automatic records: the record's own fields, and the batch. */
    uint32_t counts[5] = {3, 1, 2, 2, 4};
    struct memfit_sam_mask m = {.counts = counts,
                                .n_counts = 5,
                                .height = 3,
                                .width = 4,
                                .area = 3,
                                .bbox = {1, 0, 1, 1},
                                .predicted_iou = 0.75f,
                                .point_coords = {1.5, 0.5},
                                .stability_score = 0.25f,
                                .crop_box = {0, 0, 4, 3}};
    memset(&res, 0, sizeof(res));
    res.width = 4;
    res.height = 3;
    res.records.masks = &m;
    res.records.n_masks = 1;
    res.points_per_batch = 16;
    q.automatic = true;
    q.output = MF_SEGMENT_OUTPUT_RLE;
    assert_int_equal(mf_segment_response_json(&t, &q, &res), MEMFIT_OK);
    assert_non_null(strstr(t.data, "\"counts\":[3,1,2,2,4]},\"area\":3,\"bbox\":[1,0,1,1],"
                                   "\"predicted_iou\":0.75,\"point_coords\":[[1.5,0.5]],"
                                   "\"stability_score\":0.25,\"crop_box\":[0,0,4,3]}],"
                                   "\"embedding_cached\":false,\"points_per_batch\":16"));
    mf_text_free(&t);
    q.output = MF_SEGMENT_OUTPUT_PNG;
    assert_int_equal(mf_segment_response_json(&t, &q, &res), MEMFIT_OK);
    assert_non_null(strstr(t.data, "data:image/png;base64,"));
    mf_text_free(&t);
}

static struct mf_segment_request walk_seg;
static const char *walk_seg_body;

static enum memfit_status seg_parse_op(void *ctx)
{
    (void)ctx;
    struct mf_http_error e;
    return mf_segment_request_parse(walk_seg_body, strlen(walk_seg_body), &walk_seg, &e);
}

static void seg_parse_cleanup(void *ctx)
{
    (void)ctx;
    mf_segment_request_free(&walk_seg);
}

/* The answer built under allocation faults: E_NOMEM, nothing left behind. */
static enum memfit_status seg_response_op(void *ctx)
{
    struct mf_text t = {0};
    const struct mf_segment_request *q = ctx;
    struct memfit_segment_result res;
    seg_result(&res);
    enum memfit_status st = mf_segment_response_json(&t, q, &res);
    mf_text_free(&t);
    return st;
}

static void test_segment_fault_walks(void **state)
{
    (void)state;
    walk_seg_body = "{\"model\":\"sam\"," SEG_IMAGE ",\"points\":[[1,2],[3,4]],\"labels\":[1,0],"
                    "\"box\":[0,0,5,5],\"mask_input\":\"AACAPwAAAMA=\"}";
    mf_test_alloc_failures(seg_parse_op, seg_parse_cleanup, NULL);
    walk_seg_body = "{\"model\":\"sam\",\"image\":\"iVBORw0KGgo=\",\"auto\":true,"
                    "\"points_per_batch\":\"auto\",\"crop_n_layers\":1}";
    mf_test_alloc_failures(seg_parse_op, seg_parse_cleanup, NULL);
    for (int mode = MF_SEGMENT_OUTPUT_RLE; mode <= MF_SEGMENT_OUTPUT_PNG; mode++) {
        struct mf_segment_request q = {
            .model = (char *)"sam", .return_low_res = true, .output = (enum mf_segment_output)mode};
        mf_test_alloc_failures(seg_response_op, NULL, &q);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_data_url),
        cmocka_unit_test(test_embed_parse),
        cmocka_unit_test(test_fault_walks),
        cmocka_unit_test(test_routes),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_metrics_format),
        cmocka_unit_test(test_gen_parse),
        cmocka_unit_test(test_gen_openai_fields),
        cmocka_unit_test(test_segment_parse),
        cmocka_unit_test(test_segment_response),
        cmocka_unit_test(test_segment_fault_walks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

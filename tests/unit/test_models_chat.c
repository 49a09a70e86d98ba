/* Unit tests of src/models/chat.c: detection on the models' real template
 * texts (the .jinja files of tests/fixtures/chat), rendering against what Jinja2 renders
 * from those templates (cases.json, written by scripts/make_chat_fixtures.py),
 * the errors, and allocation failures. */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "memfit/models.h"
#include "test_util.h"

/* The whole text of a fixture under tests/fixtures/chat (malloc'ed by the test). */
static char *read_fixture(const char *name)
{
    char rel[256], path[1024];
    snprintf(rel, sizeof(rel), "chat/%s", name);
    FILE *f = fopen(mf_test_fixture(rel, path, sizeof(path)), "rb");
    assert_non_null(f);
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return memfit_strdup(buf);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(memfit_chat_template_name(MEMFIT_CHAT_CHATML), "chatml");
    assert_string_equal(memfit_chat_template_name(MEMFIT_CHAT_LLAMA2), "llama2");
    assert_string_equal(memfit_chat_template_name(MEMFIT_CHAT_LLAMA3), "llama3");
    assert_string_equal(memfit_chat_template_name(MEMFIT_CHAT_QWEN25), "qwen2.5");
    assert_string_equal(memfit_chat_template_name(MEMFIT_CHAT_LLAMA31), "llama3.1");
    assert_true(memfit_chat_template_has_tools(MEMFIT_CHAT_QWEN25));
    assert_true(memfit_chat_template_has_tools(MEMFIT_CHAT_LLAMA31));
    assert_false(memfit_chat_template_has_tools(MEMFIT_CHAT_CHATML));
    assert_false(memfit_chat_template_has_tools(MEMFIT_CHAT_LLAMA3));
    assert_string_equal(memfit_chat_template_name((enum memfit_chat_template)7), "unknown");
}

static void test_detect(void **state)
{
    (void)state;
    const struct {
        const char *file;
        enum memfit_chat_template want;
        bool recognised;
    } cases[] = {
        {"qwen2-instruct.jinja", MEMFIT_CHAT_CHATML, true},
        {"qwen3.jinja", MEMFIT_CHAT_CHATML, true},
        {"llama-2-chat.jinja", MEMFIT_CHAT_LLAMA2, true},
        {"mistral-instruct-v0.1.jinja", MEMFIT_CHAT_LLAMA2, true},
        {"llama-3-instruct.jinja", MEMFIT_CHAT_LLAMA3, true},
        {"llama-3-instruct-first.jinja", MEMFIT_CHAT_LLAMA3, true},
        {"qwen2.5-instruct.jinja", MEMFIT_CHAT_QWEN25, true},
        {"llama-3.1-instruct.jinja", MEMFIT_CHAT_LLAMA31, true},
        {"gemma-it.jinja", MEMFIT_CHAT_CHATML, false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *text = read_fixture(cases[i].file);
        enum memfit_chat_template t = (enum memfit_chat_template)99;
        bool rec = !cases[i].recognised;
        memfit_chat_template_detect(text, &t, &rec);
        if (t != cases[i].want || rec != cases[i].recognised)
            fail_msg("%s: detected %s (recognised %d)", cases[i].file, memfit_chat_template_name(t),
                     rec);
        memfit_free(text);
    }
    enum memfit_chat_template t = MEMFIT_CHAT_LLAMA3;
    bool rec = true;
    memfit_chat_template_detect(NULL, &t, &rec);
    assert_int_equal(t, MEMFIT_CHAT_CHATML);
    assert_false(rec);
    memfit_chat_template_detect("", &t, &rec);
    assert_int_equal(t, MEMFIT_CHAT_CHATML);
    assert_false(rec);
}

/* Every case of cases.json: the template detected from its file, then rendered. */
static void test_rendered_like_jinja(void **state)
{
    (void)state;
    char path[1024];
    json_error_t err;
    json_t *root = json_load_file(mf_test_fixture("chat/cases.json", path, sizeof(path)), 0, &err);
    if (!root)
        fail_msg("cases.json: %s", err.text);
    assert_true(json_array_size(root) >= 40);
    size_t i;
    json_t *c;
    json_array_foreach(root, i, c)
    {
        const char *file = json_string_value(json_object_get(c, "template"));
        const char *name = json_string_value(json_object_get(c, "case"));
        char *text = read_fixture(file);
        enum memfit_chat_template t;
        bool rec;
        memfit_chat_template_detect(text, &t, &rec);
        memfit_free(text);
        assert_true(rec);
        assert_string_equal(memfit_chat_template_name(t),
                            json_string_value(json_object_get(c, "kind")));

        json_t *msgs = json_object_get(c, "messages");
        struct memfit_chat_message m[16];
        memset(m, 0, sizeof(m));
        size_t n = json_array_size(msgs);
        assert_true(n <= 16);
        struct memfit_chat_tool_call calls[16][4];
        for (size_t k = 0; k < n; k++) {
            json_t *mk = json_array_get(msgs, k);
            m[k].role = json_string_value(json_object_get(mk, "role"));
            m[k].content = json_string_value(json_object_get(mk, "content"));
            json_t *tc = json_object_get(mk, "tool_calls");
            assert_true(json_array_size(tc) <= 4);
            for (size_t j = 0; j < json_array_size(tc); j++) {
                json_t *cj = json_array_get(tc, j);
                calls[k][j] = (struct memfit_chat_tool_call){
                    NULL, json_string_value(json_object_get(cj, "name")),
                    json_string_value(json_object_get(cj, "arguments"))};
            }
            m[k].tool_calls = calls[k];
            m[k].n_tool_calls = json_array_size(tc);
        }
        bool gen = json_is_true(json_object_get(c, "add_generation_prompt"));
        char *got = (char *)"untouched";
        json_t *tools = json_object_get(c, "tools");
        char *tools_json = tools ? json_dumps(tools, JSON_COMPACT) : NULL;
        enum memfit_status st = tools_json
                                    ? memfit_chat_render_tools(t, m, n, tools_json, gen, &got)
                                    : memfit_chat_render(t, m, n, gen, &got);
        memfit_free(tools_json); /* jansson allocates through memfit (core/json.c) */
        json_t *want = json_object_get(c, "output");
        if (want) {
            if (st != MEMFIT_OK)
                fail_msg("%s/%s: %s", file, name, memfit_last_error());
            if (strcmp(got, json_string_value(want)) != 0)
                fail_msg("%s/%s:\n got  [%s]\n want [%s]", file, name, got,
                         json_string_value(want));
            memfit_free(got);
        } else {
            if (st != MEMFIT_E_INVALID)
                fail_msg("%s/%s: status %s, want E_INVALID", file, name, memfit_status_name(st));
            assert_string_equal(got, "untouched");
        }
    }
    json_decref(root);
}

static void test_errors(void **state)
{
    (void)state;
    char *out = NULL;
    struct memfit_chat_message tool[] = {{.role = "user", .content = "a"},
                                         {.role = "tool", .content = "b"}};
    assert_int_equal(memfit_chat_render(MEMFIT_CHAT_CHATML, tool, 2, true, &out), MEMFIT_E_INVALID);
    assert_non_null(strstr(memfit_last_error(), "message 2: role \"tool\""));
    struct memfit_chat_message twice[] = {{.role = "system", .content = "s"},
                                          {.role = "user", .content = "a"},
                                          {.role = "user", .content = "b"}};
    assert_int_equal(memfit_chat_render(MEMFIT_CHAT_LLAMA2, twice, 3, true, &out),
                     MEMFIT_E_INVALID);
    assert_non_null(
        strstr(memfit_last_error(), "message 3: user where the template needs assistant"));
    struct memfit_chat_message null_content[] = {{.role = "user", .content = NULL}};
    assert_int_equal(memfit_chat_render(MEMFIT_CHAT_LLAMA3, null_content, 1, true, &out),
                     MEMFIT_E_INVALID);
    assert_int_equal(memfit_chat_render((enum memfit_chat_template)5, tool, 1, true, &out),
                     MEMFIT_E_INVALID);
    assert_int_equal(memfit_chat_render(MEMFIT_CHAT_CHATML, NULL, 1, true, &out), MEMFIT_E_MISUSE);
    assert_null(out);
    /* No messages is fine (NULL array included). */
    assert_int_equal(memfit_chat_render(MEMFIT_CHAT_LLAMA3, NULL, 0, false, &out), MEMFIT_OK);
    assert_string_equal(out, "");
    memfit_free(out);
}

/* Stripping stops at bytes that are not whole characters (never split one). */
static void test_strip_odd_bytes(void **state)
{
    (void)state;
    struct memfit_chat_message m[] = {{.role = "user", .content = "\xe3\x80 x \xe3\x80\x80\x80"}};
    char *out = NULL;
    assert_int_equal(memfit_chat_render(MEMFIT_CHAT_LLAMA3, m, 1, false, &out), MEMFIT_OK);
    assert_string_equal(out, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
                             "\xe3\x80 x \xe3\x80\x80\x80<|eot_id|>");
    memfit_free(out);
    struct memfit_chat_message n[] = {
        {.role = "user", .content = " \xe3\x80\x80x\xc2\xa0\xe2\x80\x80"}};
    assert_int_equal(memfit_chat_render(MEMFIT_CHAT_LLAMA2, n, 1, false, &out), MEMFIT_OK);
    assert_string_equal(out, "<s>[INST] x [/INST]");
    memfit_free(out);
}

/* Parses text with tmpl's tool-call convention; checks calls "name|arguments" and content. */
static void expect_calls(enum memfit_chat_template tmpl, const char *text, const char *const *want,
                         size_t n_want, const char *content)
{
    struct memfit_chat_tool_calls c;
    assert_int_equal(memfit_chat_parse_tool_calls(tmpl, text, strlen(text), &c), MEMFIT_OK);
    if (c.n_calls != n_want)
        fail_msg("[%s]: %zu calls, want %zu", text, c.n_calls, n_want);
    for (size_t i = 0; i < n_want; i++) {
        char got[256];
        snprintf(got, sizeof(got), "%s|%s", c.calls[i].name, c.calls[i].arguments);
        if (strcmp(got, want[i]) != 0)
            fail_msg("[%s]: call %zu is %s, want %s", text, i, got, want[i]);
        assert_null(c.calls[i].id);
    }
    if (content ? !c.content || strcmp(c.content, content) != 0 : c.content != NULL)
        fail_msg("[%s]: content [%s], want [%s]", text, c.content ? c.content : "(null)",
                 content ? content : "(null)");
    memfit_chat_tool_calls_free(&c);
}

static void test_parse_tool_calls(void **state)
{
    (void)state;
    const enum memfit_chat_template Q = MEMFIT_CHAT_QWEN25, L = MEMFIT_CHAT_LLAMA31;
    const char *one[] = {"get|{\"city\":\"Paris\"}"};
    const char *two[] = {"get|{\"city\":\"A\"}", "put|{\"x\":[1,2]}"};
    expect_calls(
        Q, "<tool_call>\n{\"name\": \"get\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
        one, 1, NULL);
    expect_calls(
        Q,
        "Let me look.\n<tool_call>\n{\"name\": \"get\", \"arguments\": {\"city\": \"A\"}}\n"
        "</tool_call>\n<tool_call>{\"name\":\"put\",\"arguments\":{\"x\":[1, 2]}}</tool_call>",
        two, 2, "Let me look.");
    /* the closing tag may be cut off at the very end (a stop string, max_tokens) */
    expect_calls(Q, "<tool_call>\n{\"name\": \"get\", \"arguments\": {\"city\": \"Paris\"}}\n", one,
                 1, NULL);
    /* not calls: the text stays content, as it is */
    const char *not_calls[] = {
        "plain answer",
        "<tool_call>\n{\"name\": \"get\", \"arguments\": {\"city\": ",
        "<tool_call>{\"name\": \"get\", \"arguments\": \"{}\"}</tool_call>",
        "<tool_call>{\"arguments\": {}}</tool_call>",
        "<tool_call>{\"name\": \"get\", \"arguments\": {}} trailing</tool_call>",
        "<tool_call>[1]</tool_call>",
        " ",
    };
    for (size_t i = 0; i < sizeof(not_calls) / sizeof(*not_calls); i++)
        expect_calls(Q, not_calls[i], NULL, 0, not_calls[i]);
    expect_calls(Q, "", NULL, 0, NULL);

    expect_calls(L, "{\"name\": \"get\", \"parameters\": {\"city\": \"Paris\"}}", one, 1, NULL);
    expect_calls(L, " <|python_tag|>{\"name\": \"get\", \"arguments\": {\"city\": \"Paris\"}}\n",
                 one, 1, NULL);
    const char *not_llama[] = {
        "{\"name\": \"get\", \"parameters\": {\"city\": \"Paris\"}} and more",
        "The answer is {\"name\": \"get\", \"parameters\": {}}",
        "{\"name\": \"get\"}",
        "{\"name\": 3, \"parameters\": {}}",
        "{\"name\": \"get\", \"parameters\": {",
    };
    for (size_t i = 0; i < sizeof(not_llama) / sizeof(*not_llama); i++)
        expect_calls(L, not_llama[i], NULL, 0, not_llama[i]);

    struct memfit_chat_tool_calls c;
    assert_int_equal(memfit_chat_parse_tool_calls(MEMFIT_CHAT_CHATML, "x", 1, &c),
                     MEMFIT_E_INVALID);
    assert_int_equal(memfit_chat_parse_tool_calls(Q, NULL, 1, &c), MEMFIT_E_MISUSE);
    memfit_chat_tool_calls_free(NULL);
}

static void test_tool_errors(void **state)
{
    (void)state;
    char *out = NULL;
    const char *tools = "[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]";
    struct memfit_chat_message u[] = {{.role = "user", .content = "a"}};
    /* tools with a template of none; tools that are not an array */
    assert_int_equal(memfit_chat_render_tools(MEMFIT_CHAT_CHATML, u, 1, tools, true, &out),
                     MEMFIT_E_INVALID);
    assert_int_equal(memfit_chat_render_tools(MEMFIT_CHAT_QWEN25, u, 1, "{}", true, &out),
                     MEMFIT_E_INVALID);
    /* an empty array is no tools */
    assert_int_equal(memfit_chat_render_tools(MEMFIT_CHAT_CHATML, u, 1, "[]", true, &out),
                     MEMFIT_OK);
    memfit_free(out);
    out = NULL;
    /* LLaMA 3.1 puts the tools in the first user message: there must be one */
    struct memfit_chat_message a[] = {{.role = "system", .content = "s"},
                                      {.role = "assistant", .content = "a"}};
    assert_int_equal(memfit_chat_render_tools(MEMFIT_CHAT_LLAMA31, a, 2, tools, true, &out),
                     MEMFIT_E_INVALID);
    assert_non_null(strstr(memfit_last_error(), "first user message"));
    /* calls only on assistant messages of templates with tools */
    struct memfit_chat_tool_call call = {NULL, "f", "{}"};
    struct memfit_chat_message c[] = {
        {.role = "user", .content = "a"},
        {.role = "assistant", .tool_calls = &call, .n_tool_calls = 1}};
    assert_int_equal(memfit_chat_render(MEMFIT_CHAT_LLAMA3, c, 2, true, &out), MEMFIT_E_INVALID);
    c[1].role = "user";
    assert_int_equal(memfit_chat_render(MEMFIT_CHAT_QWEN25, c, 2, true, &out), MEMFIT_E_INVALID);
    /* arguments that are not JSON are written as a JSON string (tojson of a string) */
    c[1].role = "assistant";
    call.arguments = "not json";
    assert_int_equal(memfit_chat_render(MEMFIT_CHAT_QWEN25, c, 2, false, &out), MEMFIT_OK);
    assert_non_null(strstr(out, "\"arguments\": \"not json\"}"));
    memfit_free(out);
    assert_null(strstr("", "x"));
}

struct tools_ctx {
    char *out;
    struct memfit_chat_tool_calls calls;
};

static enum memfit_status tools_op(void *p)
{
    struct tools_ctx *c = p;
    struct memfit_chat_tool_call call = {NULL, "f", "{\"a\": [1.5, \"x\"]}"};
    struct memfit_chat_message m[] = {{.role = "user", .content = "u"},
                                      {.role = "assistant", .tool_calls = &call, .n_tool_calls = 1},
                                      {.role = "tool", .content = "r"}};
    enum memfit_status st = memfit_chat_render_tools(
        MEMFIT_CHAT_LLAMA31, m, 3, "[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]", true,
        &c->out);
    if (st != MEMFIT_OK)
        return st;
    const char *text = "x <tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 1}}</tool_call> y";
    st = memfit_chat_parse_tool_calls(MEMFIT_CHAT_QWEN25, text, strlen(text), &c->calls);
    if (st != MEMFIT_OK) { /* a failed operation leaves nothing */
        memfit_free(c->out);
        c->out = NULL;
    }
    return st;
}

static void tools_cleanup(void *p)
{
    struct tools_ctx *c = p;
    memfit_free(c->out);
    c->out = NULL;
    memfit_chat_tool_calls_free(&c->calls);
}

static void test_tools_fault_injection(void **state)
{
    (void)state;
    struct tools_ctx c = {0};
    assert_true(mf_test_alloc_failures(tools_op, tools_cleanup, &c) > 5);
}

struct render_ctx {
    enum memfit_chat_template t;
    char *out;
};

static enum memfit_status render_op(void *p)
{
    struct render_ctx *c = p;
    struct memfit_chat_message m[] = {{.role = "system", .content = "s"},
                                      {.role = "user", .content = "u"},
                                      {.role = "assistant", .content = "a"}};
    return memfit_chat_render(c->t, m, 3, true, &c->out);
}

static void render_cleanup(void *p)
{
    struct render_ctx *c = p;
    memfit_free(c->out);
    c->out = NULL;
}

static void test_render_fault_injection(void **state)
{
    (void)state;
    for (int t = 0; t < 3; t++) {
        struct render_ctx c = {(enum memfit_chat_template)t, NULL};
        assert_int_equal(mf_test_alloc_failures(render_op, render_cleanup, &c), 3);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_detect),
        cmocka_unit_test(test_parse_tool_calls),
        cmocka_unit_test(test_tool_errors),
        cmocka_unit_test(test_tools_fault_injection),
        cmocka_unit_test(test_rendered_like_jinja),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_strip_odd_bytes),
        cmocka_unit_test(test_render_fault_injection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

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
        for (size_t k = 0; k < n; k++) {
            m[k].role = json_string_value(json_object_get(json_array_get(msgs, k), "role"));
            m[k].content = json_string_value(json_object_get(json_array_get(msgs, k), "content"));
        }
        bool gen = json_is_true(json_object_get(c, "add_generation_prompt"));
        char *got = (char *)"untouched";
        enum memfit_status st = memfit_chat_render(t, m, n, gen, &got);
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
        cmocka_unit_test(test_rendered_like_jinja),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_strip_odd_bytes),
        cmocka_unit_test(test_render_fault_injection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

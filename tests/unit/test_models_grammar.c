/*
 * Tests of grammar-constrained sampling (src/models/grammar*.c): the byte
 * automaton of JSON and of the JSON Schema subset on valid, incomplete and
 * invalid texts; schema compile errors naming the keyword or place; the
 * token masks on the fixture vocabulary against brute force (the 151k
 * Qwen vocabulary: tests/integration/grammar_vocab.sh); generation with
 * the tiny Qwen2 model, whose output must be complete JSON; allocation
 * failures.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "memfit/memfit.h"
#include "test_util.h"

enum { BAD, PARTIAL, WHOLE };

/* How far text goes in g: refused, a prefix, or a complete value. */
static int judge(const memfit_grammar *g, const char *text)
{
    memfit_grammar_matcher *m;
    assert_int_equal(memfit_grammar_matcher_create(g, NULL, &m), MEMFIT_OK);
    int r = BAD;
    if (memfit_grammar_matcher_accept_bytes(m, text, strlen(text)) == MEMFIT_OK)
        r = memfit_grammar_matcher_is_complete(m) ? WHOLE : PARTIAL;
    memfit_grammar_matcher_free(m);
    return r;
}

struct judged {
    const char *text;
    int expect;
};

static void judge_all(const memfit_grammar *g, const struct judged *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int got = judge(g, cases[i].text);
        if (got != cases[i].expect)
            fail_msg("'%s': got %d, expected %d", cases[i].text, got, cases[i].expect);
    }
}

static void test_json_object(void **state)
{
    (void)state;
    memfit_grammar *g;
    assert_int_equal(memfit_grammar_json_object(&g), MEMFIT_OK);
    static const struct judged cases[] = {
        {"{}", WHOLE},
        {"{\"a\":1}", WHOLE},
        {"{ \"a\" : [1, -2.5e+10, 0, true, false, null, \"x\", {}, []] }", WHOLE},
        {"{\"k\\n\\u00e9\\\"\": \"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}", WHOLE},
        {"{\"a\":{\"b\":{\"c\":[[[]]]}}}", WHOLE},
        {"{\"a\":1", PARTIAL},
        {"{\"a\":12", PARTIAL},
        {"{\"a\":\"\\u00", PARTIAL},
        {"{\"a\":tr", PARTIAL},
        {"[]", BAD},                           /* json_object: an object */
        {" {}", BAD},                          /* nothing before the value */
        {"{} ", BAD},                          /* nor after */
        {"{\"a\":01}", BAD},                   /* leading zero */
        {"{\"a\":1.}", BAD},                   /* fraction without digits */
        {"{\"a\":-}", BAD},                    /* sign alone */
        {"{\"a\":1e999}", BAD},                /* exponent over 2 digits */
        {"{\"a\",1}", BAD},                    /* comma for colon */
        {"{\"a\":1,}", BAD},                   /* trailing comma */
        {"{a:1}", BAD},                        /* unquoted key */
        {"{\"a\":tru}", BAD},                  /* broken literal */
        {"{\"a\":\"\x01\"}", BAD},             /* control character */
        {"{\"a\":\"\\x\"}", BAD},              /* unknown escape */
        {"{\"a\":\"\\ud800\"}", BAD},          /* surrogate escape */
        {"{\"a\":\"\\u0000\"}", BAD},          /* NUL escape */
        {"{\"a\":\"\xc0\xaf\"}", BAD},         /* overlong UTF-8 */
        {"{\"a\":\"\xed\xa0\x80\"}", BAD},     /* UTF-8 surrogate */
        {"{\"a\":\"\xf4\x90\x80\x80\"}", BAD}, /* past U+10FFFF */
        {"{\"a\":\"\xff\"}", BAD},
        {"{\"a\":                     1}", BAD}, /* 21 spaces in a row */
        {"{\"a\":                    1}", WHOLE},
    };
    judge_all(g, cases, sizeof(cases) / sizeof(cases[0]));
    /* Nesting: 63 containers deep is allowed; a 64th container is not, a scalar is. */
    char deep[200] = "{\"a\":";
    memset(deep + 5, '[', 62);
    deep[67] = '\0';
    assert_int_equal(judge(g, deep), PARTIAL);
    char deeper[sizeof(deep) + 2];
    snprintf(deeper, sizeof(deeper), "%s[", deep);
    assert_int_equal(judge(g, deeper), BAD);
    snprintf(deeper, sizeof(deeper), "%s1", deep);
    assert_int_equal(judge(g, deeper), PARTIAL);
    memfit_grammar_free(g);
}

static memfit_grammar *schema(const char *text)
{
    memfit_grammar *g = NULL;
    enum memfit_status st = memfit_grammar_from_json_schema(text, strlen(text), &g);
    if (st != MEMFIT_OK)
        fail_msg("%s: %s", text, memfit_last_error());
    return g;
}

static void test_schema(void **state)
{
    (void)state;
    memfit_grammar *g =
        schema("{\"type\":\"object\",\"properties\":{"
               "\"n\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":3},"
               "\"i\":{\"type\":\"integer\"},"
               "\"e\":{\"enum\":[\"x\",1,10,null,{\"k\":[1]}]},"
               "\"t\":{\"type\":\"array\",\"items\":{\"type\":\"boolean\"},\"minItems\":1,"
               "\"maxItems\":2},"
               "\"o\":{\"anyOf\":[{\"type\":\"number\"},{\"type\":\"null\"}]},"
               "\"q\\\"\":{\"const\":true}},"
               "\"required\":[\"n\",\"i\"],\"additionalProperties\":false}");
    static const struct judged cases[] = {
        {"{\"n\":\"ab\",\"i\":-3}", WHOLE},
        {"{\"i\":0,\"n\":\"\xc3\xa9\xc3\xa9\xc3\xa9\"}", WHOLE}, /* 3 characters, 6 bytes */
        {"{\"i\":0,\"n\":\"a\",\"e\":10,\"t\":[true,false],\"o\":null,\"q\\\"\":true}", WHOLE},
        {"{\"i\":0,\"n\":\"a\",\"e\":{\"k\":[1]},\"o\":2.5}", WHOLE},
        {"{\"i\":0,\"n\":\"a\",\"e\":1}", WHOLE},
        {"{\"n\":\"ab\"}", BAD}, /* required i missing: no } */
        {"{\"n\":\"\",", BAD},   /* minLength 1 */
        {"{\"n\":\"abcd", BAD},  /* maxLength 3 */
        {"{\"i\":1.5", BAD},     /* an integer */
        {"{\"i\":1e", BAD},
        {"{\"x\":", BAD},              /* not declared */
        {"{\"i\":1,\"i\":", BAD},      /* twice */
        {"{\"i\":1,\"e\":\"y\"", BAD}, /* not in the enum */
        {"{\"i\":1,\"e\":11", BAD},
        {"{\"i\":1,\"t\":[]", BAD},                /* minItems 1 */
        {"{\"i\":1,\"t\":[true,true,", BAD},       /* maxItems 2 */
        {"{\"i\":1,\"o\":\"s\"", BAD},             /* number or null */
        {"{\"i\":1,\"q\\\"\":false", BAD},         /* const true */
        {"{\"i\":1,\"n\":\"a\",\"e\":1", PARTIAL}, /* 1 or 10 */
    };
    judge_all(g, cases, sizeof(cases) / sizeof(cases[0]));
    memfit_grammar_free(g);

    /* Declared names with other names allowed: a declared one is recognised
     * (and not taken twice), others are free; escapes only in declared ones. */
    g = schema("{\"properties\":{\"ab\":{\"type\":\"integer\"}},"
               "\"additionalProperties\":{\"type\":\"string\"}}");
    static const struct judged free_cases[] = {
        {"{\"ab\":1,\"abc\":\"x\",\"a\":\"y\"}", WHOLE},
        {"{\"ab\":\"x\"", BAD},     /* ab is an integer */
        {"{\"abc\":1", BAD},        /* others are strings */
        {"{\"ab\":1,\"ab\":", BAD}, /* ab twice */
        {"{\"a\\u0062\":", BAD},    /* an escape outside a declared name */
    };
    judge_all(g, free_cases, sizeof(free_cases) / sizeof(free_cases[0]));
    memfit_grammar_free(g);

    /* Top-level scalars, type lists, true. */
    g = schema("{\"type\":[\"integer\",\"string\",\"null\"]}");
    static const struct judged scalars[] = {
        {"12", WHOLE}, {"\"s\"", WHOLE}, {"null", WHOLE}, {"1.5", BAD}, {"true", BAD}, {"1", WHOLE},
    };
    judge_all(g, scalars, sizeof(scalars) / sizeof(scalars[0]));
    memfit_grammar_free(g);
    g = schema("true");
    assert_int_equal(judge(g, "[1,{\"a\":null}]"), WHOLE);
    memfit_grammar_free(g);
}

static void refused(const char *text, enum memfit_status expect, const char *needle)
{
    memfit_grammar *g = NULL;
    enum memfit_status st = memfit_grammar_from_json_schema(text, strlen(text), &g);
    if (st != expect || !strstr(memfit_last_error(), needle))
        fail_msg("%s: %s (%s), expected %s with '%s'", text, memfit_status_name(st),
                 memfit_last_error(), memfit_status_name(expect), needle);
    assert_null(g);
}

static void test_schema_errors(void **state)
{
    (void)state;
    refused("{\"type\":\"integer\",\"minimum\":0}", MEMFIT_E_UNSUPPORTED,
            "#: keyword \"minimum\" is not supported");
    refused("{\"properties\":{\"a\":{\"pattern\":\"x\"}}}", MEMFIT_E_UNSUPPORTED,
            "#/properties/a: keyword \"pattern\"");
    refused("{\"items\":{\"allOf\":[]}}", MEMFIT_E_UNSUPPORTED, "#/items: keyword \"allOf\"");
    refused("{\"$ref\":\"#/$defs/x\"}", MEMFIT_E_UNSUPPORTED, "\"$ref\"");
    refused("{\"format\":\"date\"}", MEMFIT_E_UNSUPPORTED, "\"format\"");
    refused("{\"enum\":[1],\"minLength\":1}", MEMFIT_E_UNSUPPORTED, "together with \"enum\"");
    refused("{\"anyOf\":[{\"type\":\"string\"},{\"enum\":[\"a\"]}]}", MEMFIT_E_UNSUPPORTED,
            "can start like an earlier one");
    refused("{\"type\":\"array\",\"minItems\":2,\"maxItems\":1}", MEMFIT_E_INVALID,
            "minItems 2 is above maxItems 1");
    refused("{\"type\":\"string\",\"maxLength\":-1}", MEMFIT_E_INVALID, "\"maxLength\" must be");
    refused("{\"enum\":[]}", MEMFIT_E_INVALID, "\"enum\" has 0 values");
    refused("{\"type\":\"integer\",\"enum\":[\"a\"]}", MEMFIT_E_INVALID,
            "not of the schema's type");
    refused("{\"type\":\"object\",\"required\":[\"a\"],\"additionalProperties\":false}",
            MEMFIT_E_INVALID, "required property \"a\"");
    refused("{\"type\":\"thing\"}", MEMFIT_E_INVALID, "unknown type \"thing\"");
    refused("false", MEMFIT_E_INVALID, "allows no value");
    refused("{\"type\":", MEMFIT_E_FORMAT, "json schema: line 1");
    char deep[1024];
    size_t n = 0;
    for (int i = 0; i < 30; i++)
        n += (size_t)snprintf(deep + n, sizeof(deep) - n, "{\"items\":");
    n += (size_t)snprintf(deep + n, sizeof(deep) - n, "true");
    for (int i = 0; i < 30; i++)
        n += (size_t)snprintf(deep + n, sizeof(deep) - n, "}");
    refused(deep, MEMFIT_E_UNSUPPORTED, "nested more than 24 deep");
}

struct model {
    memfit_llm *model;
    memfit_tokenizer *tok;
    memfit_llm_session *s;
};
static struct model M;

static int setup(void **state)
{
    (void)state;
    char buf[1024];
    const char *path = mf_test_fixture("llm/qwen2_gqa.gguf", buf, sizeof(buf));
    if (memfit_llm_open(path, &M.model) != MEMFIT_OK ||
        memfit_tokenizer_from_gguf(memfit_llm_tensors(M.model), &M.tok) != MEMFIT_OK)
        return -1;
    struct memfit_llm_options o;
    memfit_llm_options_default(&o);
    o.n_ctx = 1024;
    o.n_threads = 1;
    return memfit_llm_session_create(M.model, &o, &M.s) == MEMFIT_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    memfit_llm_session_free(M.s);
    memfit_tokenizer_free(M.tok);
    memfit_llm_close(M.model);
    return 0;
}

/* The planned bytes of the vocabulary trie cover what building it holds:
 * the trie kept (measured by the allocator's counters) and the scratch of
 * the sort freed at the end (16 bytes a token). */
static void test_vocab_plan_bytes(void **state)
{
    (void)state;
    struct memfit_tokenizer_info info;
    memfit_tokenizer_get_info(M.tok, &info);
    struct memfit_alloc_stats before, after;
    memfit_alloc_get_stats(&before);
    memfit_grammar_vocab *v;
    assert_int_equal(memfit_grammar_vocab_create(M.tok, &v), MEMFIT_OK);
    memfit_alloc_get_stats(&after);
    uint64_t kept = after.live_bytes[MEMFIT_ALLOC_MODEL] - before.live_bytes[MEMFIT_ALLOC_MODEL];
    uint64_t planned = memfit_grammar_vocab_plan_bytes(info.n_vocab);
    assert_true(kept > 0);
    assert_true(kept + 16 * (uint64_t)info.n_vocab <= planned);
    memfit_grammar_vocab_free(v);
    assert_true(memfit_grammar_vocab_plan_bytes(2 * info.n_vocab) > planned);
    assert_true(memfit_grammar_vocab_plan_bytes(0) > 0);
}

/* The mask of every state a random walk reaches equals brute force. */
static void test_masks(void **state)
{
    (void)state;
    memfit_grammar *g;
    memfit_grammar_vocab *v;
    assert_int_equal(memfit_grammar_json_object(&g), MEMFIT_OK);
    assert_int_equal(memfit_grammar_vocab_create(M.tok, &v), MEMFIT_OK);
    struct memfit_tokenizer_info info;
    memfit_tokenizer_get_info(M.tok, &info);
    uint64_t rng = 12345;
    for (int walk = 0; walk < 20; walk++) {
        memfit_grammar_matcher *m;
        assert_int_equal(memfit_grammar_matcher_create(g, v, &m), MEMFIT_OK);
        char hist[4096];
        size_t n_hist = 0;
        for (int s = 0; s < 60; s++) {
            const uint64_t *bits;
            size_t n_allowed;
            assert_int_equal(memfit_grammar_matcher_allowed(m, &bits, &n_allowed), MEMFIT_OK);
            int32_t pick[512];
            size_t n = 0;
            for (uint32_t id = 0; id < info.n_vocab; id++) {
                bool got = bits[id / 64] >> (id % 64) & 1;
                memfit_grammar_matcher *b;
                assert_int_equal(memfit_grammar_matcher_create(g, NULL, &b), MEMFIT_OK);
                bool want = memfit_grammar_matcher_accept_bytes(b, hist, n_hist) == MEMFIT_OK;
                const char *p;
                size_t len;
                assert_int_equal(memfit_tokenizer_piece(M.tok, (int32_t)id, false, &p, &len),
                                 MEMFIT_OK);
                if (memfit_tokenizer_is_eog(M.tok, (int32_t)id))
                    want = memfit_grammar_matcher_is_complete(b);
                else
                    want = len && memfit_grammar_matcher_accept_bytes(b, p, len) == MEMFIT_OK;
                memfit_grammar_matcher_free(b);
                if (got != want)
                    fail_msg("walk %d step %d token %u: mask %d, brute force %d", walk, s, id, got,
                             want);
                if (got && !memfit_tokenizer_is_eog(M.tok, (int32_t)id))
                    pick[n++] = (int32_t)id;
            }
            if (n == 0)
                break;
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            int32_t id = pick[(rng >> 33) % n];
            const char *p;
            size_t len;
            memfit_tokenizer_piece(M.tok, id, false, &p, &len);
            assert_int_equal(memfit_grammar_matcher_accept_token(m, id), MEMFIT_OK);
            assert_true(n_hist + len < sizeof(hist));
            memcpy(hist + n_hist, p, len);
            n_hist += len;
        }
        /* A token the mask forbids is refused and changes nothing. */
        int32_t brace = -1;
        for (uint32_t id = 0; id < info.n_vocab && brace < 0; id++) {
            const char *p;
            size_t len;
            memfit_tokenizer_piece(M.tok, (int32_t)id, false, &p, &len);
            if (len == 1 && p[0] == '\x01')
                brace = (int32_t)id;
        }
        if (brace >= 0)
            assert_int_equal(memfit_grammar_matcher_accept_token(m, brace), MEMFIT_E_INVALID);
        memfit_grammar_matcher_free(m);
    }
    memfit_grammar_vocab_free(v);
    memfit_grammar_free(g);
}

/* Generation with the grammar: complete JSON for each seed. The schema
 * bounds the output's length (strings, items, digits and whitespace runs are
 * bounded), so 900 tokens always suffice. */
static void test_generate(void **state)
{
    (void)state;
    memfit_grammar *g =
        schema("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\",\"maxLength\":5},"
               "\"b\":{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"maxItems\":3}},"
               "\"required\":[\"a\",\"b\"],\"additionalProperties\":false}");
    memfit_grammar_vocab *v;
    assert_int_equal(memfit_grammar_vocab_create(M.tok, &v), MEMFIT_OK);
    static const int32_t prompt[4] = {206, 276, 128, 273};
    for (uint64_t seed = 1; seed <= 5; seed++) {
        memfit_grammar_matcher *m;
        assert_int_equal(memfit_grammar_matcher_create(g, v, &m), MEMFIT_OK);
        assert_int_equal(memfit_llm_session_truncate(M.s, 0), MEMFIT_OK);
        struct memfit_generate_params p = {
            .prompt = prompt, .n_prompt = 4, .max_tokens = 900, .grammar = m};
        memfit_sampling_default(&p.sampling);
        p.sampling.seed = seed;
        memfit_generation *gen;
        assert_int_equal(memfit_generation_start(M.s, M.tok, &p, &gen), MEMFIT_OK);
        static char text[1 << 16];
        size_t n = 0;
        for (bool done = false; !done;) {
            const char *t;
            size_t len;
            assert_int_equal(memfit_generation_next(gen, &t, &len, &done), MEMFIT_OK);
            assert_true(n + len < sizeof(text));
            memcpy(text + n, t, len);
            n += len;
        }
        struct memfit_generate_result r;
        memfit_generation_result(gen, &r);
        memfit_generation_free(gen);
        if (r.finish != MEMFIT_FINISH_STOP)
            fail_msg("seed %d: finish %d after %u tokens: %.*s", (int)seed, (int)r.finish,
                     r.n_generated, (int)n, text);
        assert_true(memfit_grammar_matcher_is_complete(m));
        memfit_grammar_matcher *check;
        assert_int_equal(memfit_grammar_matcher_create(g, NULL, &check), MEMFIT_OK);
        assert_int_equal(memfit_grammar_matcher_accept_bytes(check, text, n), MEMFIT_OK);
        assert_true(memfit_grammar_matcher_is_complete(check));
        assert_true(text[0] == '{' && text[n - 1] == '}');
        memfit_grammar_matcher_free(check);
        memfit_grammar_matcher_free(m);
    }
    memfit_grammar_vocab_free(v);
    memfit_grammar_free(g);
}

struct alloc_ctx {
    memfit_grammar *g;
    memfit_grammar_vocab *v;
    memfit_grammar_matcher *m;
};

static enum memfit_status op_compile(void *ctx)
{
    struct alloc_ctx *c = ctx;
    static const char text[] = "{\"type\":\"object\",\"properties\":{\"a\":{\"enum\":[1,\"x\"]},"
                               "\"b\":{\"type\":\"array\",\"items\":true}},\"required\":[\"c\"]}";
    enum memfit_status st = memfit_grammar_from_json_schema(text, sizeof(text) - 1, &c->g);
    if (st != MEMFIT_OK)
        return st;
    st = memfit_grammar_vocab_create(M.tok, &c->v);
    if (st == MEMFIT_OK)
        st = memfit_grammar_matcher_create(c->g, c->v, &c->m);
    if (st != MEMFIT_OK) {
        memfit_grammar_vocab_free(c->v);
        memfit_grammar_free(c->g);
        c->v = NULL;
        c->g = NULL;
    }
    return st;
}

static void cleanup_compile(void *ctx)
{
    struct alloc_ctx *c = ctx;
    memfit_grammar_matcher_free(c->m);
    memfit_grammar_vocab_free(c->v);
    memfit_grammar_free(c->g);
    memset(c, 0, sizeof(*c));
}

/* Alternatives: literal prefix, a value of its schema, literal suffix (tool calls). */
static void test_alternatives(void **state)
{
    (void)state;
    const struct memfit_grammar_alternative alts[] = {
        {"<tool_call>\n{\"name\": \"get\", \"arguments\": ",
         "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},"
         "\"required\":[\"city\"],\"additionalProperties\":false}",
         "}\n</tool_call>"},
        {"<tool_call>\n{\"name\": \"getall\", \"arguments\": ", NULL, "}\n</tool_call>"},
        {"{\"name\": \"x\", \"parameters\": ", "{\"type\":\"integer\"}", NULL},
    };
    memfit_grammar *g;
    assert_int_equal(memfit_grammar_from_alternatives(alts, 3, &g), MEMFIT_OK);
    const struct judged cases[] = {
        {"", PARTIAL},
        {"<tool", PARTIAL},
        {"<tool_call>\n{\"name\": \"ge", PARTIAL},
        {"<tool_call>\n{\"name\": \"get\", \"arguments\": {\"city\": \"Paris\"}", PARTIAL},
        {"<tool_call>\n{\"name\": \"get\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
         WHOLE},
        {"<tool_call>\n{\"name\": \"get\", \"arguments\": {\"town\": \"Paris\"}", BAD},
        {"<tool_call>\n{\"name\": \"get\", \"arguments\":  {", BAD}, /* no extra space */
        {"<tool_call>\n{\"name\": \"get\", \"arguments\": {\"city\": \"P\"} }", BAD},
        {"<tool_call>\n{\"name\": \"getall\", \"arguments\": {\"a\": [1]}}\n</tool_call>", WHOLE},
        {"<tool_call>\n{\"name\": \"getall\", \"arguments\": 3", BAD}, /* an object */
        {"<tool_call>\n{\"name\": \"other\"", BAD},
        {"{\"name\": \"x\", \"parameters\": 42", WHOLE}, /* no suffix: ends with the value */
        {"{\"name\": \"x\", \"parameters\": 42}", BAD},
        {"{\"name\": \"x\", \"parameters\": 4.5", BAD},
        {"plain text", BAD},
    };
    judge_all(g, cases, sizeof(cases) / sizeof(cases[0]));
    memfit_grammar_free(g);

    /* A prefix that begins another, no prefix, a bad schema: refused. */
    const struct memfit_grammar_alternative clash[] = {{"ab", NULL, NULL}, {"abc", NULL, NULL}};
    assert_int_equal(memfit_grammar_from_alternatives(clash, 2, &g), MEMFIT_E_INVALID);
    const struct memfit_grammar_alternative empty[] = {{"", NULL, NULL}};
    assert_int_equal(memfit_grammar_from_alternatives(empty, 1, &g), MEMFIT_E_INVALID);
    const struct memfit_grammar_alternative bad[] = {{"a", "{\"minimum\": 3}", NULL}};
    assert_int_equal(memfit_grammar_from_alternatives(bad, 1, &g), MEMFIT_E_UNSUPPORTED);
    assert_non_null(strstr(memfit_last_error(), "alternative 0"));
    assert_int_equal(memfit_grammar_from_alternatives(alts, 0, &g), MEMFIT_E_MISUSE);
}

static void test_alloc_failures(void **state)
{
    (void)state;
    struct alloc_ctx c = {0};
    assert_true(mf_test_alloc_failures(op_compile, cleanup_compile, &c) > 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_object),   cmocka_unit_test(test_schema),
        cmocka_unit_test(test_schema_errors), cmocka_unit_test(test_masks),
        cmocka_unit_test(test_generate),      cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_alternatives),  cmocka_unit_test(test_vocab_plan_bytes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

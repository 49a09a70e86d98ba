/* Unit tests of the GGUF tokenizers (src/models/tokenizer*.c): byte-level BPE
 * and SentencePiece BPE on small vocabularies written with memfit_writer,
 * special tokens, byte fallback, BOS/EOS, pieces and decoding, invalid
 * UTF-8, bad metadata, tokenizer.json conversion, and allocation failures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <unistd.h>

#include "../tokenizer_test.h"
#include "test_util.h"

static char *tmp_gguf(void)
{
    static unsigned counter;
    const char *dir = getenv("TMPDIR");
    char *p =
        memfit_asprintf("%s/memfit-tok-%d-%u.gguf", dir ? dir : "/tmp", (int)getpid(), counter++);
    assert_non_null(p);
    return p;
}

/* Writes v, opens it, builds the tokenizer (status returned; *out on OK). */
static enum memfit_status load(const struct tokv *v, const char *model, const char *pre,
                               tokv_extra extra, void *ctx, memfit_tokenizer **out)
{
    char *path = tmp_gguf();
    assert_int_equal(tokv_write(v, path, model, pre, extra, ctx), MEMFIT_OK);
    memfit_tensors *set;
    assert_int_equal(memfit_tensors_open(path, NULL, &set), MEMFIT_OK);
    enum memfit_status st = memfit_tokenizer_from_gguf(set, out);
    memfit_tensors_close(set);
    unlink(path);
    memfit_free(path);
    return st;
}

static void expect_ids(const memfit_tokenizer *tok, const char *text, bool add, bool parse,
                       const int32_t *want, size_t n_want)
{
    int32_t *ids;
    size_t n;
    assert_int_equal(memfit_tokenizer_encode(tok, text, strlen(text), add, parse, &ids, &n),
                     MEMFIT_OK);
    if (n != n_want) {
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, "%d ", ids[i]);
        fprintf(stderr, "<- got for \"%s\"\n", text);
    }
    assert_int_equal(n, n_want);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(ids[i], want[i]);
    memfit_free(ids);
}

static void expect_decode(const memfit_tokenizer *tok, const int32_t *ids, size_t n, bool special,
                          const char *want)
{
    char *s;
    size_t len;
    assert_int_equal(memfit_tokenizer_decode(tok, ids, n, special, &s, &len), MEMFIT_OK);
    assert_int_equal(len, strlen(want));
    assert_string_equal(s, want);
    memfit_free(s);
}

static enum memfit_status extra_bos(memfit_writer *w, void *ctx)
{
    const int32_t *ids = ctx;
    enum memfit_status st = tokv_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)ids[0]);
    if (st == MEMFIT_OK)
        st = tokv_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)ids[1]);
    if (st == MEMFIT_OK)
        st = tokv_bool(w, "tokenizer.ggml.add_bos_token", ids[2] != 0);
    return st;
}

static void test_bpe_encode_decode(void **state)
{
    (void)state;
    struct tokv v;
    tokv_bpe(&v);
    memfit_tokenizer *tok;
    assert_int_equal(load(&v, "gpt2", "qwen2", NULL, NULL, &tok), MEMFIT_OK);
    struct memfit_tokenizer_info in;
    memfit_tokenizer_get_info(tok, &in);
    assert_int_equal(in.kind, MEMFIT_TOKENIZER_BPE);
    assert_string_equal(in.pre, "qwen2");
    assert_int_equal(in.n_vocab, v.n);
    assert_false(in.add_bos);
    assert_int_equal(in.bos, -1);

    int32_t hello = tokv_find(&v, "hello"), wor = tokv_find(&v, "\xC4\xA0wor");
    int32_t l = tokv_find(&v, "l"), d = tokv_find(&v, "d");
    int32_t want[] = {hello, wor, l, d};
    expect_ids(tok, "hello world", true, true, want, 4);
    expect_decode(tok, want, 4, false, "hello world");
    const char *p;
    size_t n;
    assert_int_equal(memfit_tokenizer_piece(tok, wor, false, &p, &n), MEMFIT_OK);
    assert_int_equal(n, 4);
    assert_memory_equal(p, " wor", 4);
    assert_int_equal(memfit_tokenizer_piece(tok, (int32_t)v.n, false, &p, &n), MEMFIT_E_RANGE);
    assert_int_equal(memfit_tokenizer_piece(tok, -1, false, &p, &n), MEMFIT_E_RANGE);

    /* A partial UTF-8 character: the piece is the one byte. */
    int32_t first = tokv_find(&v, "\xC3\xA4"); /* byte 0xE4 in bytes_to_unicode form */
    assert_int_equal(memfit_tokenizer_piece(tok, first, false, &p, &n), MEMFIT_OK);
    assert_int_equal(n, 1);
    assert_int_equal((unsigned char)p[0], 0xE4);

    /* qwen2 splits digits one by one; every byte round-trips. */
    const char *text = "x 123\n\n  \xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\x98\x80!";
    int32_t *ids;
    size_t n_ids;
    assert_int_equal(memfit_tokenizer_encode(tok, text, strlen(text), false, false, &ids, &n_ids),
                     MEMFIT_OK);
    char *back;
    size_t back_len;
    assert_int_equal(memfit_tokenizer_decode(tok, ids, n_ids, true, &back, &back_len), MEMFIT_OK);
    assert_string_equal(back, text);
    memfit_free(back);
    memfit_free(ids);

    /* Empty text: no ids, NULL array. */
    assert_int_equal(memfit_tokenizer_encode(tok, "", 0, true, true, &ids, &n_ids), MEMFIT_OK);
    assert_int_equal(n_ids, 0);
    assert_null(ids);
    assert_null(memfit_tokenizer_chat_template(tok));
    memfit_tokenizer_free(tok);
    memfit_tokenizer_free(NULL);
}

static void test_bpe_special_and_bos(void **state)
{
    (void)state;
    struct tokv v;
    tokv_bpe(&v);
    int32_t start = tokv_find(&v, "<|im_start|>"), end = tokv_find(&v, "<|im_end|>");
    int32_t tool = tokv_find(&v, "<tool>"), hello = tokv_find(&v, "hello");
    int32_t ctx[3] = {start, end, 1};
    memfit_tokenizer *tok;
    assert_int_equal(load(&v, "gpt2", NULL, extra_bos, ctx, &tok), MEMFIT_OK);
    struct memfit_tokenizer_info in;
    memfit_tokenizer_get_info(tok, &in);
    assert_string_equal(in.pre, "default");
    assert_true(in.add_bos);
    assert_int_equal(in.bos, start);

    int32_t want[] = {start, start, hello, end, hello};
    expect_ids(tok, "<|im_start|>hello<|im_end|>hello", true, true, want, 5);
    expect_ids(tok, "<|im_start|>hello<|im_end|>hello", false, true, want + 1, 4);
    /* Without parse_special the control text is ordinary text ... */
    int32_t *ids;
    size_t n;
    assert_int_equal(memfit_tokenizer_encode(tok, "<|im_end|>", 10, false, false, &ids, &n),
                     MEMFIT_OK);
    assert_true(n > 1);
    for (size_t i = 0; i < n; i++)
        assert_int_not_equal(ids[i], end);
    memfit_free(ids);
    /* ... but user-defined tokens are always matched. */
    int32_t want_tool[] = {hello, tool, hello};
    expect_ids(tok, "hello<tool>hello", false, false, want_tool, 3);

    /* Control tokens decode to nothing unless special. */
    expect_decode(tok, want, 5, false, "hellohello");
    expect_decode(tok, want, 5, true, "<|im_start|><|im_start|>hello<|im_end|>hello");
    const char *p;
    assert_int_equal(memfit_tokenizer_piece(tok, end, false, &p, &n), MEMFIT_OK);
    assert_int_equal(n, 0);
    assert_int_equal(memfit_tokenizer_piece(tok, tool, false, &p, &n), MEMFIT_OK);
    assert_int_equal(n, 6);

    assert_true(memfit_tokenizer_is_eog(tok, end));
    assert_false(memfit_tokenizer_is_eog(tok, hello));
    assert_false(memfit_tokenizer_is_eog(tok, start));
    memfit_tokenizer_free(tok);
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    struct tokv v;
    tokv_bpe(&v);
    memfit_tokenizer *tok;
    assert_int_equal(load(&v, "gpt2", "llama-bpe", NULL, NULL, &tok), MEMFIT_OK);
    const char *bad[] = {"ab\xFF"
                         "cd",
                         "ab\xC0\xAF", "ab\xED\xA0\x80", "ab\xE4\xBD", "ab\xF4\x90\x80\x80"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int32_t *ids = (int32_t *)0x1;
        size_t n = 77;
        assert_int_equal(memfit_tokenizer_encode(tok, bad[i], strlen(bad[i]), true, true, &ids, &n),
                         MEMFIT_E_FORMAT);
        assert_non_null(strstr(memfit_last_error(), "byte offset 2"));
        assert_int_equal(n, 77); /* untouched on failure */
    }
    memfit_tokenizer_free(tok);
}

static void test_spm(void **state)
{
    (void)state;
    struct tokv v;
    tokv_spm(&v);
    memfit_tokenizer *tok;
    assert_int_equal(load(&v, "llama", NULL, NULL, NULL, &tok), MEMFIT_OK);
    struct memfit_tokenizer_info in;
    memfit_tokenizer_get_info(tok, &in);
    assert_int_equal(in.kind, MEMFIT_TOKENIZER_SPM);
    assert_true(in.add_bos);
    assert_int_equal(in.bos, 1);
    assert_int_equal(in.eos, 2);
    assert_int_equal(in.unk, 0);

    int32_t hello = tokv_find(&v, "\xE2\x96\x81hello"), sp = tokv_find(&v, "\xE2\x96\x81");
    int32_t h = tokv_find(&v, "h"), w = tokv_find(&v, "\xE2\x96\x81w");
    int32_t o = tokv_find(&v, "o"), r = tokv_find(&v, "r"), l = tokv_find(&v, "l");
    int32_t d = tokv_find(&v, "d");
    int32_t want[] = {1, hello, w, o, r, l, d};
    expect_ids(tok, "hello world", true, true, want, 7);
    expect_decode(tok, want, 7, false, "hello world");
    expect_decode(tok, want, 7, true, "<s> hello world");

    /* Byte fallback: é is not in the vocabulary. */
    int32_t want_fb[] = {sp, h, 3 + 0xC3, 3 + 0xA9};
    expect_ids(tok, "h\xC3\xA9", false, true, want_fb, 4);
    expect_decode(tok, want_fb, 4, false, "h\xC3\xA9");
    const char *p;
    size_t n;
    assert_int_equal(memfit_tokenizer_piece(tok, 3 + 0xC3, false, &p, &n), MEMFIT_OK);
    assert_int_equal(n, 1);
    assert_int_equal((unsigned char)p[0], 0xC3);

    /* A special token: the text after it gets the prefix space again. */
    int32_t want_sp[] = {hello, 2, hello};
    expect_ids(tok, "hello</s>hello", false, true, want_sp, 3);
    assert_true(memfit_tokenizer_is_eog(tok, 2));
    memfit_tokenizer_free(tok);
}

/* ---- bad metadata ------------------------------------------------------- */

static enum memfit_status extra_bad_bos(memfit_writer *w, void *ctx)
{
    (void)ctx;
    return tokv_u32(w, "tokenizer.ggml.bos_token_id", 100000);
}

static void expect_refusal(const struct tokv *v, const char *model, const char *pre,
                           tokv_extra extra, enum memfit_status want, const char *needle)
{
    memfit_tokenizer *tok = NULL;
    assert_int_equal(load(v, model, pre, extra, NULL, &tok), want);
    assert_null(tok);
    if (!strstr(memfit_last_error(), needle))
        fprintf(stderr, "message: %s\n", memfit_last_error());
    assert_non_null(strstr(memfit_last_error(), needle));
}

static void test_bad_metadata(void **state)
{
    (void)state;
    struct tokv v;
    tokv_bpe(&v);
    expect_refusal(&v, "bert", NULL, NULL, MEMFIT_E_UNSUPPORTED, "tokenizer.ggml.model");
    expect_refusal(&v, "gpt2", "starcoder-x", NULL, MEMFIT_E_UNSUPPORTED, "tokenizer.ggml.pre");
    expect_refusal(&v, "gpt2", NULL, extra_bad_bos, MEMFIT_E_FORMAT,
                   "tokenizer.ggml.bos_token_id: id 100000");
    tokv_merge(&v, "zz", "q"); /* "zz" is no token */
    expect_refusal(&v, "gpt2", NULL, NULL, MEMFIT_E_FORMAT, "tokenizer.ggml.merges[7]");
    v.n_merges = 0; /* BPE needs merges */
    expect_refusal(&v, "gpt2", NULL, NULL, MEMFIT_E_FORMAT, "tokenizer.ggml.merges: missing");
    tokv_bpe(&v);
    v.type[5] = 9;
    expect_refusal(&v, "gpt2", NULL, NULL, MEMFIT_E_FORMAT, "token_type[5]");

    /* No tokens at all. */
    char *path = tmp_gguf();
    memfit_writer *w;
    assert_int_equal(memfit_writer_create(path, MEMFIT_FORMAT_GGUF, &w), MEMFIT_OK);
    assert_int_equal(memfit_writer_set_meta_string(w, "tokenizer.ggml.model", "gpt2"), MEMFIT_OK);
    assert_int_equal(memfit_writer_commit(w), MEMFIT_OK);
    memfit_writer_destroy(w);
    memfit_tensors *set;
    assert_int_equal(memfit_tensors_open(path, NULL, &set), MEMFIT_OK);
    memfit_tokenizer *tok = NULL;
    assert_int_equal(memfit_tokenizer_from_gguf(set, &tok), MEMFIT_E_FORMAT);
    assert_non_null(strstr(memfit_last_error(), "tokenizer.ggml.tokens: missing"));
    memfit_tensors_close(set);
    unlink(path);
    memfit_free(path);
}

/* ---- long input, JSON conversion, allocation failures -------------------- */

static void test_long_word(void **state)
{
    (void)state;
    struct tokv v;
    tokv_bpe(&v);
    memfit_tokenizer *tok;
    assert_int_equal(load(&v, "gpt2", "gpt2", NULL, NULL, &tok), MEMFIT_OK);
    size_t len = 100000;
    char *text = memfit_malloc(len);
    assert_non_null(text);
    for (size_t i = 0; i < len; i++)
        text[i] = i < len / 2 ? "hello"[i % 5] : (i % 1000 == 0 ? 'x' : ' ');
    int32_t *ids;
    size_t n;
    assert_int_equal(memfit_tokenizer_encode(tok, text, len, false, false, &ids, &n), MEMFIT_OK);
    char *back;
    size_t back_len;
    assert_int_equal(memfit_tokenizer_decode(tok, ids, n, false, &back, &back_len), MEMFIT_OK);
    assert_int_equal(back_len, len);
    assert_memory_equal(back, text, len);
    memfit_free(back);
    memfit_free(ids);
    memfit_free(text);
    memfit_tokenizer_free(tok);
}

static const char TOKENIZER_JSON[] =
    "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"h\": 0, \"e\": 1, \"l\": 2, \"o\": 3, "
    "\"he\": 4, \"ll\": 5, \"hell\": 6, \"hello\": 7, \"\\u0120\": 8, \"w\": 9},"
    " \"merges\": [\"h e\", [\"l\", \"l\"], \"he ll\", \"hell o\"]},"
    " \"added_tokens\": [{\"id\": 11, \"content\": \"<|im_end|>\", \"special\": true},"
    " {\"id\": 12, \"content\": \"<think>\", \"special\": false}],"
    " \"normalizer\": {\"type\": \"NFC\"},"
    " \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": ["
    "{\"type\": \"Split\", \"pattern\": {\"Regex\": "
    "\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}| "
    "?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"},"
    " \"behavior\": \"Isolated\", \"invert\": false},"
    " {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}]}}";
static const char CONFIG_JSON[] =
    "{\"eos_token\": \"<|im_end|>\", \"bos_token\": null, \"model_max_length\": "
    "1000000000000000019884624838656, \"chat_template\": \"{{ messages }}\"}";

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

struct json_ctx {
    char *json, *config, *out;
};

static enum memfit_status json_op(void *p)
{
    struct json_ctx *c = p;
    memfit_writer *w;
    enum memfit_status st = memfit_writer_create(c->out, MEMFIT_FORMAT_GGUF, &w);
    if (st != MEMFIT_OK)
        return st;
    st = memfit_tokenizer_json_to_gguf(c->json, c->config, w);
    if (st == MEMFIT_OK)
        st = memfit_writer_commit(w);
    memfit_writer_destroy(w);
    return st;
}

static void test_json_to_gguf(void **state)
{
    (void)state;
    struct json_ctx c = {tmp_gguf(), tmp_gguf(), tmp_gguf()};
    write_text(c.json, TOKENIZER_JSON);
    write_text(c.config, CONFIG_JSON);
    assert_int_equal(json_op(&c), MEMFIT_OK);
    memfit_tensors *set;
    assert_int_equal(memfit_tensors_open(c.out, NULL, &set), MEMFIT_OK);
    assert_int_equal(memfit_tensors_count(set), 0);
    memfit_tokenizer *tok;
    assert_int_equal(memfit_tokenizer_from_gguf(set, &tok), MEMFIT_OK);
    memfit_tensors_close(set);
    struct memfit_tokenizer_info in;
    memfit_tokenizer_get_info(tok, &in);
    assert_string_equal(in.pre, "qwen2");
    assert_int_equal(in.n_vocab, 13); /* id 10 is a hole: [PAD10] */
    assert_int_equal(in.eos, 11);
    assert_int_equal(in.bos, -1);
    assert_string_equal(memfit_tokenizer_chat_template(tok), "{{ messages }}");
    int32_t want[] = {7, 11, 12, 7};
    expect_ids(tok, "hello<|im_end|><think>hello", false, true, want, 4);
    assert_true(memfit_tokenizer_is_eog(tok, 11));
    memfit_tokenizer_free(tok);

    /* Unknown merge token and an unsupported model are refused by name. */
    write_text(c.json, "{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}");
    assert_int_equal(json_op(&c), MEMFIT_E_UNSUPPORTED);
    assert_non_null(strstr(memfit_last_error(), "model.type"));
    write_text(c.json, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": "
                       "[\"a b\"]}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}");
    assert_int_equal(json_op(&c), MEMFIT_E_FORMAT);
    assert_non_null(strstr(memfit_last_error(), "model.merges[0]"));
    write_text(c.json, "{\"model\": ");
    assert_int_equal(json_op(&c), MEMFIT_E_FORMAT);

    /* Allocation failures while converting leak nothing. (Not with the long
     * integer: jansson asserts when it cannot grow its buffer for a number.) */
    write_text(c.json, TOKENIZER_JSON);
    write_text(c.config,
               "{\"eos_token\": {\"content\": \"<|im_end|>\"}, \"add_bos_token\": false}");
    mf_test_alloc_failures(json_op, NULL, &c);
    unlink(c.json);
    unlink(c.config);
    unlink(c.out);
    memfit_free(c.json);
    memfit_free(c.config);
    memfit_free(c.out);
}

struct walk_ctx {
    memfit_tensors *set;
    memfit_tokenizer *tok;
    const char *text;
    int32_t *ids;
    size_t n;
};

static enum memfit_status from_gguf_op(void *p)
{
    struct walk_ctx *c = p;
    return memfit_tokenizer_from_gguf(c->set, &c->tok);
}

static void from_gguf_cleanup(void *p)
{
    struct walk_ctx *c = p;
    memfit_tokenizer_free(c->tok);
    c->tok = NULL;
}

static enum memfit_status encode_op(void *p)
{
    struct walk_ctx *c = p;
    return memfit_tokenizer_encode(c->tok, c->text, strlen(c->text), true, true, &c->ids, &c->n);
}

static void encode_cleanup(void *p)
{
    struct walk_ctx *c = p;
    memfit_free(c->ids);
    c->ids = NULL;
}

static void walk(const struct tokv *v, const char *model, const char *pre, const char *text)
{
    char *path = tmp_gguf();
    assert_int_equal(tokv_write(v, path, model, pre, NULL, NULL), MEMFIT_OK);
    struct walk_ctx c = {.text = text};
    assert_int_equal(memfit_tensors_open(path, NULL, &c.set), MEMFIT_OK);
    assert_true(mf_test_alloc_failures(from_gguf_op, from_gguf_cleanup, &c) > 5);
    assert_int_equal(memfit_tokenizer_from_gguf(c.set, &c.tok), MEMFIT_OK);
    assert_true(mf_test_alloc_failures(encode_op, encode_cleanup, &c) > 2);
    memfit_tokenizer_free(c.tok);
    memfit_tensors_close(c.set);
    unlink(path);
    memfit_free(path);
}

static void test_alloc_failures(void **state)
{
    (void)state;
    struct tokv v;
    tokv_bpe(&v);
    walk(&v, "gpt2", "qwen2", "<|im_start|>hello world, 123 \xE4\xBD\xA0!");
    tokv_spm(&v);
    walk(&v, "llama", NULL, "hello</s> world h\xC3\xA9");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bpe_encode_decode), cmocka_unit_test(test_bpe_special_and_bos),
        cmocka_unit_test(test_invalid_utf8),      cmocka_unit_test(test_spm),
        cmocka_unit_test(test_bad_metadata),      cmocka_unit_test(test_long_word),
        cmocka_unit_test(test_json_to_gguf),      cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

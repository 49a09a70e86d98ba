/* Unit tests of src/models/textstream.c: characters split across pieces,
 * U+FFFD for ill-formed bytes, stop strings split across pieces, false
 * starts, overlapping stop strings, a stop at the very beginning,
 * cancellation, and allocation failures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "models/textstream.h"
#include "test_util.h"

struct sink {
    char text[1024];
    size_t len;
    int calls;
    int cancel_at; /* the call that returns false (0: never) */
};

static bool collect(void *ctx, const char *text, size_t len)
{
    struct sink *s = ctx;
    assert_true(len > 0);
    assert_true(s->len + len < sizeof(s->text));
    memcpy(s->text + s->len, text, len);
    s->len += len;
    s->text[s->len] = '\0';
    return ++s->calls != s->cancel_at;
}

/* Pushes the pieces (NULL-terminated list) and finishes; what came out, and whether it stopped. */
static bool run(const char *const *stops, size_t n_stops, const char *const *pieces,
                struct sink *out)
{
    struct mf_textstream ts;
    assert_int_equal(mf_textstream_init(&ts, stops, n_stops), MEMFIT_OK);
    memset(out, 0, sizeof(*out));
    bool stopped = false;
    for (size_t i = 0; pieces[i]; i++)
        assert_int_equal(
            mf_textstream_push(&ts, pieces[i], strlen(pieces[i]), collect, out, &stopped),
            MEMFIT_OK);
    bool at_end = true;
    assert_int_equal(mf_textstream_finish(&ts, collect, out, &at_end), MEMFIT_OK);
    assert_int_equal(at_end, stopped);
    mf_textstream_free(&ts);
    return stopped;
}

#define PIECES(...) ((const char *const[]){__VA_ARGS__, NULL})

static void expect(const char *const *stops, size_t n_stops, const char *const *pieces,
                   const char *want, bool want_stop)
{
    struct sink out;
    bool stopped = run(stops, n_stops, pieces, &out);
    if (strcmp(out.text, want) != 0 || stopped != want_stop)
        fail_msg("got [%s] stopped %d, want [%s] stopped %d", out.text, stopped, want, want_stop);
}

static void test_utf8_assembly(void **state)
{
    (void)state;
    /* No stop strings: text passes at once; split characters wait for their bytes. */
    struct mf_textstream ts;
    assert_int_equal(mf_textstream_init(&ts, NULL, 0), MEMFIT_OK);
    struct sink out = {0};
    bool stopped = true;
    assert_int_equal(mf_textstream_push(&ts, "ab", 2, collect, &out, &stopped), MEMFIT_OK);
    assert_false(stopped);
    assert_string_equal(out.text, "ab");
    assert_int_equal(mf_textstream_push(&ts, "\xe2", 1, collect, &out, NULL), MEMFIT_OK);
    assert_int_equal(mf_textstream_push(&ts, "\x82", 1, collect, &out, NULL), MEMFIT_OK);
    assert_string_equal(out.text, "ab"); /* two thirds of the euro sign: nothing yet */
    assert_int_equal(mf_textstream_push(&ts, "\xac!", 2, collect, &out, NULL), MEMFIT_OK);
    assert_string_equal(out.text, "ab\xe2\x82\xac!");
    mf_textstream_free(&ts);

    /* An emoji (4 bytes) in 3 pieces. */
    expect(NULL, 0, PIECES("\xf0", "\x9f\x98", "\x80 ok"), "\xf0\x9f\x98\x80 ok", false);
    /* Ill-formed: a lone continuation, a bad byte, a truncated character before ASCII,
     * an overlong lead, a surrogate, a truncated character at the end. */
    expect(NULL, 0, PIECES("a\x80", "\xff", "\xe2\x82", "x"),
           "a\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdx", false);
    expect(NULL, 0, PIECES("\xe0\x80\xaf"), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", false);
    expect(NULL, 0, PIECES("\xed\xa0\x80"), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", false);
    expect(NULL, 0, PIECES("\xc0\xaf"), "\xef\xbf\xbd\xef\xbf\xbd", false);
    expect(NULL, 0, PIECES("\xf4\x90\x80\x80"), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd",
           false);
    expect(NULL, 0, PIECES("ok\xf0\x9f"), "ok\xef\xbf\xbd", false);
    expect(NULL, 0, PIECES("\xf0\x9f\x98", "\xf0\x9f\x98\x80"), "\xef\xbf\xbd\xf0\x9f\x98\x80",
           false);
}

static void test_stop_strings(void **state)
{
    (void)state;
    const char *const im[] = {"<|im_end|>"};
    /* Split across pieces: nothing of it shows. */
    expect(im, 1, PIECES("Hello", "<|im", "_end", "|>more"), "Hello", true);
    expect(im, 1, PIECES("Hello<|im_end|>", "after"), "Hello", true);
    /* A false start is released once it cannot be the stop string any more. */
    struct mf_textstream ts;
    assert_int_equal(mf_textstream_init(&ts, im, 1), MEMFIT_OK);
    struct sink out = {0};
    bool stopped = true;
    assert_int_equal(mf_textstream_push(&ts, "x <|im", 6, collect, &out, &stopped), MEMFIT_OK);
    assert_string_equal(out.text, "x ");
    assert_false(stopped);
    assert_int_equal(mf_textstream_push(&ts, "port", 4, collect, &out, &stopped), MEMFIT_OK);
    assert_string_equal(out.text, "x <|import");
    assert_false(stopped);
    /* A held start is emitted at the end. */
    assert_int_equal(mf_textstream_push(&ts, " <|im_", 6, collect, &out, NULL), MEMFIT_OK);
    assert_string_equal(out.text, "x <|import ");
    assert_int_equal(mf_textstream_finish(&ts, collect, &out, &stopped), MEMFIT_OK);
    assert_string_equal(out.text, "x <|import <|im_");
    assert_false(stopped);
    /* Finished: later pushes are ignored. */
    assert_int_equal(mf_textstream_push(&ts, "zzz", 3, collect, &out, &stopped), MEMFIT_OK);
    assert_string_equal(out.text, "x <|import <|im_");
    mf_textstream_free(&ts);

    /* At the very beginning: nothing at all. */
    expect(im, 1, PIECES("<|im_end|>", "text"), "", true);
    /* A stop string after a multi-byte character split in the same piece. */
    const char *const dots[] = {"\xe2\x80\xa6\n"};
    expect(dots, 1, PIECES("a\xe2", "\x80", "\xa6", "\nb"), "a", true);
    expect(dots, 1, PIECES("a\xe2", "\x80", "\xa6", "b"),
           "a\xe2\x80\xa6"
           "b",
           false);
    /* Repeated first characters: "aaab" with stop "aab". */
    const char *const aab[] = {"aab"};
    expect(aab, 1, PIECES("a", "a", "a", "b", "c"), "a", true);
    /* Empty stop strings are ignored; the rest still work. */
    const char *const with_empty[] = {"", "END", NULL};
    expect(with_empty, 3, PIECES("abcEN", "Dx"), "abc", true);
}

static void test_overlapping_stops(void **state)
{
    (void)state;
    /* The occurrence that ends first wins, however the text is cut. */
    const char *const abc_b[] = {"abc", "b"};
    expect(abc_b, 2, PIECES("xabc"), "xa", true);
    expect(abc_b, 2, PIECES("xa", "bc"), "xa", true);
    expect(abc_b, 2, PIECES("x", "a", "b", "c"), "xa", true);
    /* Ending at the same place: the longer one (earlier start). */
    const char *const xyz_yz[] = {"yz", "xyz"};
    expect(xyz_yz, 2, PIECES("1xyz2"), "1", true);
    expect(xyz_yz, 2, PIECES("1x", "y", "z2"), "1", true);
    /* One stop string the start of another: the short one ends first. */
    const char *const ab_abcd[] = {"abcd", "ab"};
    expect(ab_abcd, 2, PIECES("-abcd"), "-", true);
    /* Held for the longest possible start among several. */
    const char *const two[] = {"</s>", "<|end|>"};
    struct mf_textstream ts;
    assert_int_equal(mf_textstream_init(&ts, two, 2), MEMFIT_OK);
    struct sink out = {0};
    assert_int_equal(mf_textstream_push(&ts, "a<", 2, collect, &out, NULL), MEMFIT_OK);
    assert_string_equal(out.text, "a");
    assert_int_equal(mf_textstream_push(&ts, "|end", 4, collect, &out, NULL), MEMFIT_OK);
    assert_string_equal(out.text, "a");
    assert_int_equal(mf_textstream_push(&ts, "s>", 2, collect, &out, NULL), MEMFIT_OK);
    assert_string_equal(out.text, "a<|ends>");
    mf_textstream_free(&ts);
}

static void test_cancel_and_errors(void **state)
{
    (void)state;
    struct mf_textstream ts;
    const char *const bad[] = {"ok", "\xff"};
    assert_int_equal(mf_textstream_init(&ts, bad, 2), MEMFIT_E_INVALID);
    assert_non_null(strstr(memfit_last_error(), "stop string 2"));
    mf_textstream_free(&ts); /* harmless after a failed init */

    assert_int_equal(mf_textstream_init(&ts, NULL, 0), MEMFIT_OK);
    struct sink out = {.cancel_at = 2};
    assert_int_equal(mf_textstream_push(&ts, "a", 1, collect, &out, NULL), MEMFIT_OK);
    assert_int_equal(mf_textstream_push(&ts, "b", 1, collect, &out, NULL), MEMFIT_E_CANCELLED);
    assert_string_equal(out.text, "ab");
    mf_textstream_free(&ts);
}

struct init_ctx {
    struct mf_textstream ts;
};

static bool count(void *ctx, const char *text, size_t len)
{
    (void)text;
    *(size_t *)ctx += len;
    return true;
}

static enum memfit_status init_op(void *p)
{
    struct init_ctx *c = p;
    const char *const stops[] = {"<|im_end|>", "\n\n"};
    enum memfit_status st = mf_textstream_init(&c->ts, stops, 2);
    if (st != MEMFIT_OK)
        return st;
    /* A long piece makes the buffer grow; its failure leaves the stream as it was. */
    static char big[5000];
    memset(big, 'x', sizeof(big));
    size_t n = 0;
    st = mf_textstream_push(&c->ts, big, sizeof(big), count, &n, NULL);
    if (st != MEMFIT_OK) {
        assert_int_equal(n, 0);
        struct sink out = {0};
        assert_int_equal(mf_textstream_push(&c->ts, "ab", 2, collect, &out, NULL), MEMFIT_OK);
        assert_string_equal(out.text, "ab");
        mf_textstream_free(&c->ts);
        return st;
    }
    assert_int_equal(n, sizeof(big));
    return st;
}

static void init_cleanup(void *p)
{
    struct init_ctx *c = p;
    mf_textstream_free(&c->ts);
}

static void test_fault_injection(void **state)
{
    (void)state;
    struct init_ctx c;
    assert_int_equal(mf_test_alloc_failures(init_op, init_cleanup, &c), 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_assembly),     cmocka_unit_test(test_stop_strings),
        cmocka_unit_test(test_overlapping_stops), cmocka_unit_test(test_cancel_and_errors),
        cmocka_unit_test(test_fault_injection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

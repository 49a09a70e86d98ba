/* libFuzzer target for the generation text filter (src/models/textstream.c).
 * Input: a byte n (n % 4 stop strings follow, each ended by a NUL), then the
 * text. The text is pushed in pieces of pseudo-random sizes and, separately,
 * in one piece; checks: the same output and stop either way; the output is
 * valid UTF-8 and holds no stop string; for valid UTF-8 text, what was
 * emitted plus what is held is always the text pushed so far, and at the end
 * the output is the text up to the stop string (all of it without one). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "models/textstream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct buf {
    char *p;
    size_t len;
};

static bool append(void *ctx, const char *text, size_t len)
{
    struct buf *b = ctx;
    memcpy(b->p + b->len, text, len);
    b->len += len;
    return true;
}

static bool valid_utf8(const char *s, size_t n)
{
    struct mf_textstream ts;
    if (mf_textstream_init(&ts, NULL, 0) != MEMFIT_OK)
        return false;
    char *tmp = memfit_malloc(3 * n + 8);
    struct buf b = {tmp, 0};
    bool ok = tmp && mf_textstream_push(&ts, s, n, append, &b, NULL) == MEMFIT_OK &&
              mf_textstream_finish(&ts, append, &b, NULL) == MEMFIT_OK && b.len == n &&
              memcmp(tmp, s, n) == 0; /* nothing replaced */
    memfit_free(tmp);
    mf_textstream_free(&ts);
    return ok;
}

static void check(bool ok)
{
    if (!ok)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t n_stops = data[0] % 4, pos = 1;
    char *stops[3] = {NULL, NULL, NULL};
    for (size_t k = 0; k < n_stops; k++) {
        const uint8_t *end = pos < size ? memchr(data + pos, 0, size - pos) : NULL;
        size_t len = end ? (size_t)(end - (data + pos)) : size - pos;
        stops[k] = memfit_strndup((const char *)data + pos, len);
        pos += len + (end ? 1 : 0);
    }
    const char *text = (const char *)data + pos;
    size_t n = size - pos;

    struct mf_textstream a, one;
    char *out_a = memfit_malloc(3 * n + 8), *out_one = memfit_malloc(3 * n + 8);
    if (!out_a || !out_one ||
        mf_textstream_init(&a, (const char *const *)stops, n_stops) != MEMFIT_OK)
        goto done;
    if (mf_textstream_init(&one, (const char *const *)stops, n_stops) != MEMFIT_OK) {
        mf_textstream_free(&a);
        goto done;
    }
    bool text_valid = valid_utf8(text, n);
    struct buf ba = {out_a, 0}, bo = {out_one, 0};
    bool stop_a = false, stop_one = false;
    uint32_t rng = (uint32_t)size * 2654435761u + 1;
    size_t i = 0;
    while (i < n) {
        rng = rng * 1103515245u + 12345u;
        size_t piece = 1 + (rng >> 16) % 7;
        piece = piece > n - i ? n - i : piece;
        check(mf_textstream_push(&a, text + i, piece, append, &ba, &stop_a) == MEMFIT_OK);
        i += piece;
        if (text_valid && !stop_a) { /* emitted + held + partial == pushed */
            check(ba.len + a.n_held + a.n_part == i);
            check(memcmp(out_a, text, ba.len) == 0);
            check(memcmp(a.held, text + ba.len, a.n_held) == 0);
        }
    }
    check(mf_textstream_finish(&a, append, &ba, &stop_a) == MEMFIT_OK);
    check(mf_textstream_push(&one, text, n, append, &bo, &stop_one) == MEMFIT_OK);
    check(mf_textstream_finish(&one, append, &bo, &stop_one) == MEMFIT_OK);

    check(stop_a == stop_one && ba.len == bo.len && memcmp(out_a, out_one, ba.len) == 0);
    check(valid_utf8(out_a, ba.len));
    for (size_t k = 0; k < a.n_stops; k++)
        check(!memmem(out_a, ba.len, a.stops[k].text, a.stops[k].len));
    if (text_valid) {
        check(memcmp(out_a, text, ba.len) == 0);
        if (!stop_a) {
            check(ba.len == n);
        } else {
            bool found = false;
            for (size_t k = 0; k < a.n_stops; k++)
                found |= a.stops[k].len <= n - ba.len &&
                         memcmp(text + ba.len, a.stops[k].text, a.stops[k].len) == 0;
            check(found);
        }
    }
    mf_textstream_free(&a);
    mf_textstream_free(&one);
done:
    memfit_free(out_a);
    memfit_free(out_one);
    for (size_t k = 0; k < 3; k++)
        memfit_free(stops[k]);
    return 0;
}

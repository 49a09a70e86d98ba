/*
 * The streaming text filter of generation (see textstream.h): UTF-8
 * assembly with U+FFFD for ill-formed bytes, then stop-string matching with
 * the hold-back of a possible stop string's start.
 */
#include "models/textstream.h"

#include <string.h>

#include "core/alloc.h"

static const char replacement[3] = {'\xef', '\xbf', '\xbd'}; /* U+FFFD */

/* Bytes of the character a lead byte starts (0: cannot start one). */
static size_t utf8_need(unsigned char b)
{
    return b < 0x80 ? 1 : b < 0xc2 ? 0 : b < 0xe0 ? 2 : b < 0xf0 ? 3 : b < 0xf5 ? 4 : 0;
}

/* Whether b may follow part[0..n) (n >= 1): the second byte's range excludes
 * overlong forms, surrogates and code points above U+10FFFF. */
static bool utf8_next_ok(const unsigned char *part, size_t n, unsigned char b)
{
    if (n == 1) {
        switch (part[0]) {
        case 0xe0:
            return b >= 0xa0 && b <= 0xbf;
        case 0xed:
            return b >= 0x80 && b <= 0x9f;
        case 0xf0:
            return b >= 0x90 && b <= 0xbf;
        case 0xf4:
            return b >= 0x80 && b <= 0x8f;
        }
    }
    return b >= 0x80 && b <= 0xbf;
}

static bool utf8_valid(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        const unsigned char *u = (const unsigned char *)s + i;
        size_t need = utf8_need(u[0]);
        if (need == 0 || need > n - i)
            return false;
        for (size_t k = 1; k < need; k++)
            if (!utf8_next_ok(u, k, u[k]))
                return false;
        i += need;
    }
    return true;
}

enum memfit_status mf_textstream_init(struct mf_textstream *ts, const char *const *stops,
                                      size_t n_stops)
{
    memset(ts, 0, sizeof(*ts));
    size_t text_bytes = 0, max_stop = 0, n = 0;
    for (size_t i = 0; i < n_stops; i++) {
        size_t len = stops[i] ? strlen(stops[i]) : 0;
        if (len == 0)
            continue;
        if (!utf8_valid(stops[i], len))
            return memfit_fail(MEMFIT_E_INVALID, "stop string %zu is not valid UTF-8", i + 1);
        text_bytes += len;
        max_stop = len > max_stop ? len : max_stop;
        n++;
    }
    size_t block = n * sizeof(struct mf_stop_string) + text_bytes;
    struct mf_stop_string *s = NULL;
    if (n) {
        s = memfit_malloc_in(MEMFIT_ALLOC_MODEL, block);
        if (!s)
            return MEMFIT_E_NOMEM;
        char *text = (char *)(s + n);
        for (size_t i = 0, j = 0; i < n_stops; i++) {
            size_t len = stops[i] ? strlen(stops[i]) : 0;
            if (len == 0)
                continue;
            memcpy(text, stops[i], len);
            s[j++] = (struct mf_stop_string){text, len};
            text += len;
        }
    }
    /* Held text never exceeds a stop string's start plus one push; start with room
     * for a few tokens so that pushes rarely grow it. */
    size_t cap = max_stop + 64;
    char *held = memfit_malloc_in(MEMFIT_ALLOC_MODEL, cap);
    if (!held) {
        memfit_free(s);
        return MEMFIT_E_NOMEM;
    }
    ts->stops = s;
    ts->n_stops = n;
    ts->max_stop = max_stop;
    ts->held = held;
    ts->cap_held = cap;
    return MEMFIT_OK;
}

void mf_textstream_free(struct mf_textstream *ts)
{
    if (!ts)
        return;
    memfit_free(ts->stops);
    memfit_free(ts->held);
    memset(ts, 0, sizeof(*ts));
}

/* Room for `more` bytes after the held text. */
static enum memfit_status reserve(struct mf_textstream *ts, size_t more)
{
    size_t need;
    if (mf_add_overflow(ts->n_held, more, &need))
        return memfit_fail(MEMFIT_E_NOMEM, "text stream: %zu bytes", more);
    if (need <= ts->cap_held)
        return MEMFIT_OK;
    size_t cap = ts->cap_held * 2 > need ? ts->cap_held * 2 : need;
    char *p = memfit_realloc(ts->held, cap);
    if (!p)
        return MEMFIT_E_NOMEM;
    ts->held = p;
    ts->cap_held = cap;
    return MEMFIT_OK;
}

static void held_put(struct mf_textstream *ts, const void *p, size_t n)
{
    memcpy(ts->held + ts->n_held, p, n);
    ts->n_held += n;
}

/* Decodes bytes into the held text (room reserved: 3 per byte plus 4). */
static void decode(struct mf_textstream *ts, const unsigned char *b, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = b[i];
        if (ts->n_part > 0) {
            if (utf8_next_ok(ts->part, ts->n_part, c)) {
                ts->part[ts->n_part++] = c;
                if (ts->n_part == utf8_need(ts->part[0])) {
                    held_put(ts, ts->part, ts->n_part);
                    ts->n_part = 0;
                }
                continue;
            }
            held_put(ts, replacement, 3); /* the ill-formed subpart; c starts afresh */
            ts->n_part = 0;
        }
        size_t need = utf8_need(c);
        if (need == 1)
            held_put(ts, &c, 1);
        else if (need == 0)
            held_put(ts, replacement, 3);
        else
            ts->part[ts->n_part++] = c;
    }
}

/* The start of the stop string that ends first at or after byte `from` of the
 * held text (the longest of those ending there), or SIZE_MAX. */
static size_t find_stop(const struct mf_textstream *ts, size_t from)
{
    for (size_t end = from + 1; end <= ts->n_held; end++) {
        size_t best = SIZE_MAX;
        for (size_t k = 0; k < ts->n_stops; k++) {
            size_t len = ts->stops[k].len;
            if (len <= end && (best == SIZE_MAX || end - len < best) &&
                memcmp(ts->held + end - len, ts->stops[k].text, len) == 0)
                best = end - len;
        }
        if (best != SIZE_MAX)
            return best;
    }
    return SIZE_MAX;
}

/* Length of the longest end of the held text that is a proper start of a stop string. */
static size_t stop_prefix_suffix(const struct mf_textstream *ts)
{
    size_t best = 0;
    for (size_t k = 0; k < ts->n_stops; k++) {
        const struct mf_stop_string *s = &ts->stops[k];
        size_t n = s->len - 1 < ts->n_held ? s->len - 1 : ts->n_held;
        for (; n > best; n--)
            if (memcmp(ts->held + ts->n_held - n, s->text, n) == 0) {
                best = n;
                break;
            }
    }
    return best;
}

/* Emits held[0..n) and keeps the rest. */
static enum memfit_status emit_front(struct mf_textstream *ts, size_t n, mf_text_emit_fn emit,
                                     void *ctx)
{
    bool go_on = n == 0 || emit(ctx, ts->held, n);
    memmove(ts->held, ts->held + n, ts->n_held - n);
    ts->n_held -= n;
    return go_on ? MEMFIT_OK : memfit_fail(MEMFIT_E_CANCELLED, "text stream: cancelled");
}

/* After new text from byte `from`: stop, or emit what can no longer start a stop. */
static enum memfit_status settle(struct mf_textstream *ts, size_t from, bool at_end,
                                 mf_text_emit_fn emit, void *ctx, bool *stopped)
{
    size_t stop = find_stop(ts, from);
    enum memfit_status st;
    if (stop != SIZE_MAX) {
        ts->stop_hit = ts->done = true;
        st = emit_front(ts, stop, emit, ctx);
        ts->n_held = 0;
    } else {
        st = emit_front(ts, ts->n_held - (at_end ? 0 : stop_prefix_suffix(ts)), emit, ctx);
        ts->done = at_end;
    }
    if (stopped)
        *stopped = ts->stop_hit;
    return st;
}

enum memfit_status mf_textstream_push(struct mf_textstream *ts, const char *bytes, size_t len,
                                      mf_text_emit_fn emit, void *ctx, bool *stopped)
{
    if (ts->done) {
        if (stopped)
            *stopped = ts->stop_hit;
        return MEMFIT_OK;
    }
    size_t room; /* 3 bytes per byte (all U+FFFD) and an incomplete character's 3 */
    if (mf_mul_overflow(len, 3, &room) || mf_add_overflow(room, 3, &room))
        return memfit_fail(MEMFIT_E_NOMEM, "text stream: a piece of %zu bytes", len);
    enum memfit_status st = reserve(ts, room);
    if (st != MEMFIT_OK)
        return st;
    size_t from = ts->n_held;
    decode(ts, (const unsigned char *)bytes, len);
    return settle(ts, from, false, emit, ctx, stopped);
}

enum memfit_status mf_textstream_finish(struct mf_textstream *ts, mf_text_emit_fn emit, void *ctx,
                                        bool *stopped)
{
    if (ts->done) {
        if (stopped)
            *stopped = ts->stop_hit;
        return MEMFIT_OK;
    }
    enum memfit_status st = reserve(ts, 3);
    if (st != MEMFIT_OK)
        return st;
    size_t from = ts->n_held;
    if (ts->n_part > 0) {
        held_put(ts, replacement, 3);
        ts->n_part = 0;
    }
    return settle(ts, from, true, emit, ctx, stopped);
}

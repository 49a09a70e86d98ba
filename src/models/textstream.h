/*
 * The streaming text filter between the detokenizer and the client during
 * generation (generate.c). Fed the bytes of each sampled token in turn, it
 * passes on only text that is final:
 * - whole UTF-8 characters: an incomplete character at the end is held
 *   until its next bytes come (a token may carry a third of an emoji);
 *   bytes that cannot become a character are replaced by U+FFFD, one per
 *   maximal ill-formed subpart (the Unicode / WHATWG rule);
 * - never text that could still become a stop string: the longest end of
 *   the text that is the start of some stop string is held back.
 * When a stop string is completed, the text before it is emitted and the
 * stream stops (later pushes are ignored). The stop is the occurrence that
 * ends first (the longest one among those ending at the same place), so the
 * result does not depend on how the text was cut into tokens. Stop strings
 * are matched against the text after the U+FFFD replacement.
 */
#ifndef MF_MODELS_TEXTSTREAM_H
#define MF_MODELS_TEXTSTREAM_H

#include <stdbool.h>
#include <stddef.h>

#include "memfit/core.h"

/* Receives a piece of final text (not NUL-terminated, valid during the call);
 * false asks to stop (the client went away). */
typedef bool (*mf_text_emit_fn)(void *ctx, const char *text, size_t len);

struct mf_stop_string {
    const char *text;
    size_t len;
};

struct mf_textstream {
    struct mf_stop_string *stops; /* copies, in one block with their text */
    size_t n_stops;
    size_t max_stop;       /* bytes of the longest stop string */
    unsigned char part[4]; /* the bytes of an incomplete character */
    size_t n_part;
    char *held; /* decoded text not yet emitted: a possible stop string's start */
    size_t n_held, cap_held;
    bool stop_hit; /* a stop string was completed */
    bool done;     /* stopped or finished: pushes are ignored */
};

/*
 * Copies the stop strings (empty ones are ignored). E_INVALID naming the
 * stop string that is not valid UTF-8, E_NOMEM; nothing to free on failure.
 */
enum memfit_status mf_textstream_init(struct mf_textstream *ts, const char *const *stops,
                                      size_t n_stops);

/*
 * Feeds `len` bytes; `emit` gets what became final (zero or more calls).
 * *stopped (may be NULL) tells whether the stream has stopped at a stop
 * string. E_CANCELLED when emit returned false, E_NOMEM (nothing consumed
 * then). After a stop, pushes emit nothing and return OK.
 */
enum memfit_status mf_textstream_push(struct mf_textstream *ts, const char *bytes, size_t len,
                                      mf_text_emit_fn emit, void *ctx, bool *stopped);

/*
 * The end of the text: an incomplete character becomes U+FFFD and all that
 * was held is emitted (up to a stop string that this completes). Statuses as
 * push. The stream is then stopped.
 */
enum memfit_status mf_textstream_finish(struct mf_textstream *ts, mf_text_emit_fn emit, void *ctx,
                                        bool *stopped);

/* Frees the copies and the buffer; safe on a zeroed or failed-init stream. */
void mf_textstream_free(struct mf_textstream *ts);

#endif

/*
 * libFuzzer target for the request side of the HTTP server (src/server/
 * request.h): the embeddings, completions, chat and segmentation request
 * parsers (and the segmentation answer of a parsed request), the data: URL
 * split and the base64 decoder reached through it, base64 on the raw input with a
 * round-trip check (decode(encode(x)) == x), and the route matcher. Any
 * input must parse or fail with a message, never crash, leak or read out
 * of bounds.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "memfit/core.h"
#include "server/request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* base64 of the decoded bytes must decode back to them. */
static void round_trip(const uint8_t *bytes, size_t n)
{
    struct mf_text t = {0};
    mf_text_base64(&t, bytes, n);
    size_t len;
    char *text = mf_text_take(&t, &len);
    if (!text)
        return; /* an empty input gives no text */
    uint8_t *back;
    size_t back_len;
    if (mf_base64_decode(text, len, &back, &back_len) != MEMFIT_OK)
        abort(); /* our own encoding must decode */
    if (back_len != n || memcmp(back, bytes, n) != 0)
        abort();
    memfit_free(back);
    memfit_free(text);
}

static void decode_input(const char *s, size_t len)
{
    const char *payload;
    size_t payload_len;
    if (mf_data_url_split(s, len, &payload, &payload_len) != MEMFIT_OK) {
        memfit_clear_error();
        return;
    }
    uint8_t *bytes;
    size_t n;
    if (mf_base64_decode(payload, payload_len, &bytes, &n) == MEMFIT_OK) {
        round_trip(bytes, n);
        memfit_free(bytes);
    }
    memfit_clear_error();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mf_embed_request req;
    struct mf_http_error err;
    if (mf_embed_request_parse((const char *)data, size, 8, &req, &err) == MEMFIT_OK) {
        for (size_t i = 0; i < req.n_inputs; i++)
            decode_input(req.inputs[i], req.input_lens[i]);
        mf_embed_request_free(&req);
    } else {
        char *json;
        size_t json_len;
        if (mf_http_error_json(&err, &json, &json_len) == MEMFIT_OK)
            memfit_free(json);
    }
    memfit_clear_error();
    for (int chat = 0; chat < 2; chat++) {
        struct mf_gen_request g;
        if (mf_gen_request_parse((const char *)data, size, chat, &g, &err) == MEMFIT_OK) {
            if (g.n_stop > MF_GEN_MAX_STOP || (chat && g.n_messages == 0) || (!chat && !g.prompt))
                abort();
            mf_gen_request_free(&g);
        }
        memfit_clear_error();
    }

    struct mf_segment_request q;
    if (mf_segment_request_parse((const char *)data, size, &q, &err) == MEMFIT_OK) {
        if ((q.automatic && (q.n_points || q.has_box || q.mask_input)) ||
            (!q.automatic && !q.n_points && !q.has_box) || q.n_points > MF_SEGMENT_MAX_POINTS ||
            !q.image || (q.mask_input && q.n_mask_input == 0))
            abort();
        /* The answer to it: one empty 2 x 2 mask, or no records. */
        static const uint8_t mask[4] = {0, 1, 1, 0};
        float iou = 0.5f, low_res[4] = {0};
        struct memfit_segment_result res = {.width = 2, .height = 2};
        if (!q.automatic) {
            res.n_masks = 1;
            res.masks = (uint8_t *)mask;
            res.iou = &iou;
            res.low_res = low_res;
            res.mask_size = 2;
        }
        struct mf_text t = {0};
        (void)mf_segment_response_json(&t, &q, &res);
        mf_text_free(&t);
        mf_segment_request_free(&q);
    }
    memfit_clear_error();

    /* The raw input as base64 and as a data: URL. */
    uint8_t *bytes;
    size_t n;
    if (mf_base64_decode((const char *)data, size, &bytes, &n) == MEMFIT_OK) {
        round_trip(bytes, n);
        memfit_free(bytes);
    }
    decode_input((const char *)data, size);

    /* The input as a URL path (NUL-terminated, as libmicrohttpd gives it). */
    char *path = memfit_malloc(size + 1);
    if (path) {
        memcpy(path, data, size);
        path[size] = '\0';
        char name[MF_MODEL_NAME_MAX];
        const char *allowed;
        (void)mf_route_match(path, name, &allowed);
        memfit_free(path);
    }
    memfit_clear_error();
    return 0;
}

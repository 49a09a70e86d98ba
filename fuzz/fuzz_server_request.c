/*
 * libFuzzer target for the request side of the HTTP server (src/server/
 * request.h): the embeddings, completions, chat and segmentation request
 * parsers (and the segmentation answer of a parsed request), the Open
 * Inference Protocol's inference and repository bodies, the data: URL
 * split and the base64 decoder reached through it, base64 on the raw input with a
 * round-trip check (decode(encode(x)) == x), the route matcher, and the
 * streaming scan of bodies: the same result whole and in pieces, every
 * object jansson reads accepted (within the depth limit), and what a
 * lenient scan rewrote still read by jansson. Any
 * input must parse or fail with a message, never crash, leak or read out
 * of bounds.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/json.h"
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

/* Scans a copy of data in pieces of `step` bytes (0: whole); the copy, rewritten, in *out. */
static enum memfit_status scan_copy(const uint8_t *data, size_t size, size_t step,
                                    const struct mf_json_schema *schema, char **out,
                                    struct mf_http_error *err)
{
    *out = memfit_malloc(size + 1);
    if (!*out)
        return MEMFIT_E_NOMEM;
    memcpy(*out, data, size);
    (*out)[size] = '\0';
    struct mf_json_scan s;
    mf_json_scan_init(&s, schema);
    enum memfit_status st = MEMFIT_OK;
    for (size_t end = step ? 0 : size; st == MEMFIT_OK; end += step) {
        if (end > size)
            end = size;
        st = mf_json_scan_feed(&s, *out, end, err);
        if (end == size)
            break;
    }
    if (st == MEMFIT_OK)
        st = mf_json_scan_finish(&s, err);
    memfit_clear_error();
    return st;
}

static void check_scan(const uint8_t *data, size_t size)
{
    static const char *const known[] = {"model", "input"};
    static const struct mf_json_schema lenient = {known, 2, true, NULL};
    struct mf_http_error err;
    char *whole = NULL, *pieces = NULL;
    enum memfit_status a = scan_copy(data, size, 0, &lenient, &whole, &err);
    bool deep = a == MEMFIT_E_FORMAT && strstr(err.message, "nested too deeply");
    enum memfit_status b =
        scan_copy(data, size, size ? 1 + data[0] % 7 : 1, &lenient, &pieces, &err);
    if (whole && pieces && (a != b || memcmp(whole, pieces, size) != 0))
        abort(); /* the pieces must not matter */
    mf_json_init();
    json_error_t jerr;
    json_t *orig = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &jerr);
    /* An object jansson reads must be accepted (jansson also lets a NUL byte
     * after a number pass, which is not JSON: those are left out). */
    bool nul = memchr(data, 0, size) != NULL;
    if (orig && json_is_object(orig) && a != MEMFIT_OK && !deep && !nul && a != MEMFIT_E_NOMEM)
        abort();
    if (orig && a == MEMFIT_OK && whole) {
        json_t *got = json_loadb(whole, size, JSON_REJECT_DUPLICATES, &jerr);
        if (!got)
            abort(); /* a rewrite must stay readable */
        for (size_t i = 0; i < 2; i++) {
            json_t *v = json_object_get(orig, known[i]);
            if (v && !json_equal(v, json_object_get(got, known[i])))
                abort(); /* known members untouched */
        }
        json_decref(got);
    }
    json_decref(orig);
    memfit_free(whole);
    memfit_free(pieces);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_scan(data, size);
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

    /* The Open Inference Protocol's bodies. */
    struct mf_infer_request v2;
    if (mf_infer_request_parse((const char *)data, size, 8, &v2, &err) == MEMFIT_OK) {
        if (v2.n_items == 0 || v2.n_items > 8 || !v2.input_name || v2.gen.n_stop > MF_GEN_MAX_STOP)
            abort();
        for (size_t i = 0; i < v2.n_items; i++)
            if (!v2.items[i] || v2.items[i][v2.item_lens[i]] != '\0')
                abort();
        mf_infer_request_free(&v2);
    } else {
        char *json;
        size_t json_len;
        if (mf_v2_error_json(&err, &json, &json_len) == MEMFIT_OK)
            memfit_free(json);
    }
    memfit_clear_error();
    bool ready_only;
    (void)mf_repo_request_parse((const char *)data, size, size & 1, &ready_only, &err);
    memfit_clear_error();

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
        char version[MF_MODEL_VERSION_MAX];
        enum mf_route route = mf_route_match_version(path, name, version, &allowed);
        if (route != MF_ROUTE_OTHER && (!allowed || strlen(name) >= MF_MODEL_NAME_MAX ||
                                        strlen(version) >= MF_MODEL_VERSION_MAX))
            abort();
        memfit_free(path);
    }
    memfit_clear_error();
    return 0;
}

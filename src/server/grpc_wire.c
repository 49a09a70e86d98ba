/* The protobuf messages of the gRPC front end (see grpc_wire.h). */
#include <string.h>

#include "core/alloc.h"
#include "server/grpc_wire.h"

#define MAX_STRING_BYTES (64u * 1024)

/* ---- The wire format ------------------------------------------------------------ */

static bool read_varint(struct mf_pb_reader *r, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end)
            return false;
        uint8_t b = *r->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return true;
        }
    }
    return false; /* more than 10 bytes */
}

int mf_pb_next(struct mf_pb_reader *r, struct mf_pb_field *f)
{
    if (r->p >= r->end)
        return 0;
    uint64_t key;
    if (!read_varint(r, &key) || (key >> 3) == 0 || (key >> 3) > 0x1fffffff)
        return -1;
    f->number = (uint32_t)(key >> 3);
    f->wire = (enum mf_pb_wire)(key & 7);
    f->value = 0;
    f->data = NULL;
    f->len = 0;
    size_t left;
    switch (f->wire) {
    case MF_PB_VARINT:
        return read_varint(r, &f->value) ? 1 : -1;
    case MF_PB_I64:
    case MF_PB_I32: {
        size_t n = f->wire == MF_PB_I64 ? 8 : 4;
        if ((size_t)(r->end - r->p) < n)
            return -1;
        for (size_t i = 0; i < n; i++)
            f->value |= (uint64_t)r->p[i] << (8 * i);
        r->p += n;
        return 1;
    }
    case MF_PB_LEN:
        if (!read_varint(r, &f->value))
            return -1;
        left = (size_t)(r->end - r->p);
        if (f->value > left)
            return -1;
        f->data = r->p;
        f->len = (size_t)f->value;
        r->p += f->len;
        return 1;
    default:
        return -1;
    }
}

bool mf_pb_put_raw_varint(struct mf_text *t, uint64_t v)
{
    char buf[10];
    size_t n = 0;
    do {
        buf[n] = (char)(v & 0x7f);
        v >>= 7;
        if (v)
            buf[n] |= (char)0x80;
        n++;
    } while (v);
    return mf_text_append(t, buf, n);
}

bool mf_pb_put_varint(struct mf_text *t, uint32_t number, uint64_t value)
{
    return mf_pb_put_raw_varint(t, (uint64_t)number << 3 | MF_PB_VARINT) &&
           mf_pb_put_raw_varint(t, value);
}

/* A fixed-size field: `n` bytes of `value`, little-endian. */
static bool put_fixed(struct mf_text *t, uint32_t number, enum mf_pb_wire wire, uint64_t value,
                      size_t n)
{
    char le[8];
    for (size_t i = 0; i < n; i++)
        le[i] = (char)(value >> (8 * i));
    return mf_pb_put_raw_varint(t, (uint64_t)number << 3 | wire) && mf_text_append(t, le, n);
}

bool mf_pb_put_i64(struct mf_text *t, uint32_t number, uint64_t value)
{
    return put_fixed(t, number, MF_PB_I64, value, 8);
}

bool mf_pb_put_i32(struct mf_text *t, uint32_t number, uint32_t value)
{
    return put_fixed(t, number, MF_PB_I32, value, 4);
}

bool mf_pb_put_bytes(struct mf_text *t, uint32_t number, const void *data, size_t len)
{
    return mf_pb_put_raw_varint(t, (uint64_t)number << 3 | MF_PB_LEN) &&
           mf_pb_put_raw_varint(t, len) && (len == 0 || mf_text_append(t, data, len));
}

bool mf_pb_put_string(struct mf_text *t, uint32_t number, const char *s)
{
    return mf_pb_put_bytes(t, number, s, strlen(s));
}

/* Appends a message built in `sub` as field `number`; frees `sub`. */
static bool put_message(struct mf_text *t, uint32_t number, struct mf_text *sub)
{
    bool ok = !sub->failed && mf_pb_put_bytes(t, number, sub->data, sub->len);
    if (sub->failed)
        t->failed = true;
    mf_text_free(sub);
    return ok;
}

/* ---- Decoding helpers -------------------------------------------------------------- */

static enum memfit_status bad(const char *message, const char *field)
{
    return memfit_fail(MEMFIT_E_FORMAT, "%s: %s is not a valid protobuf field", message, field);
}

/* A string field as a NUL-terminated copy (replacing an earlier one, as
 * protobuf's last-one-wins). */
static enum memfit_status take_string(const struct mf_pb_field *f, const char *message,
                                      const char *field, char **slot)
{
    if (f->wire != MF_PB_LEN)
        return bad(message, field);
    if (f->len > MAX_STRING_BYTES || memchr(f->data, 0, f->len))
        return memfit_fail(MEMFIT_E_FORMAT, "%s: %s is longer than %u bytes or holds a NUL byte",
                           message, field, MAX_STRING_BYTES);
    char *s = memfit_strndup((const char *)f->data, f->len);
    if (!s)
        return MEMFIT_E_NOMEM;
    memfit_free(*slot);
    *slot = s;
    return MEMFIT_OK;
}

/* Grows an array of `size`-byte items to hold n + 1. */
static bool grow(void **items, size_t n, size_t *cap, size_t size)
{
    if (n < *cap)
        return true;
    size_t want = *cap ? *cap * 2 : 4, bytes;
    if (mf_mul_overflow(want, size, &bytes))
        return false;
    void *p = memfit_realloc(*items, bytes);
    if (!p)
        return false;
    memset((char *)p + *cap * size, 0, (want - *cap) * size);
    *items = p;
    *cap = want;
    return true;
}

/* ---- ModelMesh ------------------------------------------------------------------------ */

void mf_mm_model_request_free(struct mf_mm_model_request *r)
{
    memfit_free(r->model_id);
    memfit_free(r->model_type);
    memfit_free(r->model_path);
    memfit_free(r->model_key);
    memset(r, 0, sizeof(*r));
}

enum memfit_status mf_mm_model_request_parse(const uint8_t *data, size_t len,
                                             struct mf_mm_model_request *out)
{
    static const char *const names[] = {"modelId", "modelType", "modelPath", "modelKey"};
    struct mf_mm_model_request r = {0};
    char **slots[] = {&r.model_id, &r.model_type, &r.model_path, &r.model_key};
    struct mf_pb_reader rd = {data, data + len};
    struct mf_pb_field f;
    enum memfit_status st = MEMFIT_OK;
    int got;
    while (st == MEMFIT_OK && (got = mf_pb_next(&rd, &f)) == 1)
        if (f.number >= 1 && f.number <= 4)
            st = take_string(&f, "model request", names[f.number - 1], slots[f.number - 1]);
    if (st == MEMFIT_OK && got < 0)
        st = memfit_fail(MEMFIT_E_FORMAT, "model request: not a protobuf message");
    if (st != MEMFIT_OK) {
        mf_mm_model_request_free(&r);
        return st;
    }
    *out = r;
    return MEMFIT_OK;
}

/* Appends string field `number` when `s` is set. */
static void put_optional(struct mf_text *t, uint32_t number, const char *s)
{
    if (s)
        mf_pb_put_string(t, number, s);
}

bool mf_mm_model_request_encode(const struct mf_mm_model_request *r, struct mf_text *t)
{
    put_optional(t, 1, r->model_id);
    put_optional(t, 2, r->model_type);
    put_optional(t, 3, r->model_path);
    put_optional(t, 4, r->model_key);
    return !t->failed;
}

bool mf_mm_runtime_status_encode(const struct mf_mm_runtime_status *s, struct mf_text *t)
{
    if (s->status)
        mf_pb_put_varint(t, 1, s->status);
    if (s->capacity_bytes)
        mf_pb_put_varint(t, 2, s->capacity_bytes);
    if (s->max_loading_concurrency)
        mf_pb_put_varint(t, 3, s->max_loading_concurrency);
    if (s->model_loading_timeout_ms)
        mf_pb_put_varint(t, 4, s->model_loading_timeout_ms);
    if (s->default_model_size_bytes)
        mf_pb_put_varint(t, 5, s->default_model_size_bytes);
    if (s->runtime_version && s->runtime_version[0])
        mf_pb_put_string(t, 6, s->runtime_version);
    for (size_t i = 0; i < s->n_methods; i++) {
        /* map<string, MethodInfo> entry {key = 1, value = 2}; MethodInfo
         * {repeated uint32 idInjectionPath = 1} packed: [1]. */
        struct mf_text info = {0}, entry = {0};
        static const char path[] = {1};
        mf_pb_put_bytes(&info, 1, path, sizeof(path));
        mf_pb_put_string(&entry, 1, s->methods[i]);
        put_message(&entry, 2, &info);
        put_message(t, 8, &entry);
    }
    if (s->limit_model_concurrency)
        mf_pb_put_varint(t, 9, 1);
    if (s->allow_any_method)
        mf_pb_put_varint(t, 10, 1);
    return !t->failed;
}

bool mf_mm_size_encode(uint64_t size_bytes, uint32_t max_concurrency, struct mf_text *t)
{
    if (size_bytes)
        mf_pb_put_varint(t, 1, size_bytes);
    if (max_concurrency)
        mf_pb_put_varint(t, 2, max_concurrency);
    return !t->failed;
}

/* ---- KServe v2 ------------------------------------------------------------------------ */

static void free_params(struct mf_v2_param *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        memfit_free(p[i].key);
        memfit_free(p[i].s);
    }
    memfit_free(p);
}

void mf_v2_infer_request_free(struct mf_v2_infer_request *r)
{
    memfit_free(r->model_name);
    memfit_free(r->model_version);
    memfit_free(r->id);
    free_params(r->params, r->n_params);
    for (size_t i = 0; i < r->n_inputs; i++) {
        memfit_free(r->inputs[i].name);
        memfit_free(r->inputs[i].datatype);
        free_params(r->inputs[i].params, r->inputs[i].n_params);
        memfit_free(r->inputs[i].elements);
    }
    memfit_free(r->inputs);
    for (size_t i = 0; i < r->n_outputs; i++)
        memfit_free(r->outputs[i]);
    memfit_free(r->outputs);
    memfit_free(r->raw);
    memset(r, 0, sizeof(*r));
}

/* One map<string, InferParameter> entry into p. */
static enum memfit_status parse_param(const struct mf_pb_field *entry, const char *where,
                                      struct mf_v2_param *p)
{
    if (entry->wire != MF_PB_LEN)
        return bad(where, "parameters");
    struct mf_pb_reader rd = {entry->data, entry->data + entry->len}, vr;
    struct mf_pb_field f, v;
    enum memfit_status st = MEMFIT_OK;
    int got, vgot = 0;
    while (st == MEMFIT_OK && (got = mf_pb_next(&rd, &f)) == 1) {
        if (f.number == 1) {
            st = take_string(&f, where, "parameters key", &p->key);
            continue;
        }
        if (f.number != 2)
            continue;
        if (f.wire != MF_PB_LEN)
            return bad(where, "parameters value");
        vr = (struct mf_pb_reader){f.data, f.data + f.len};
        while (st == MEMFIT_OK && (vgot = mf_pb_next(&vr, &v)) == 1) {
            if (v.number < 1 || v.number > 5)
                continue;
            p->kind = (enum mf_v2_param_kind)v.number;
            if (v.number == MF_V2_PARAM_STRING) {
                st = take_string(&v, where, "string_param", &p->s);
            } else if (v.number == MF_V2_PARAM_DOUBLE) {
                if (v.wire != MF_PB_I64)
                    return bad(where, "double_param");
                memcpy(&p->d, &v.value, sizeof(p->d));
            } else if (v.wire != MF_PB_VARINT) {
                return bad(where, "parameter");
            } else {
                p->b = v.value != 0;
                p->i = (int64_t)v.value;
                p->u = v.value;
            }
        }
        if (vgot < 0)
            return bad(where, "parameters value");
    }
    if (st == MEMFIT_OK && got < 0)
        return bad(where, "parameters");
    if (st == MEMFIT_OK && !p->key)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: a parameter has no name", where);
    return st;
}

static enum memfit_status add_param(const struct mf_pb_field *f, const char *where,
                                    struct mf_v2_param **params, size_t *n, size_t *cap)
{
    if (*n >= 64)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: more than 64 parameters", where);
    if (!grow((void **)params, *n, cap, sizeof(**params)))
        return MEMFIT_E_NOMEM;
    (*n)++;
    return parse_param(f, where, &(*params)[*n - 1]);
}

static enum memfit_status parse_input(const struct mf_pb_field *msg, size_t *items_left,
                                      struct mf_v2_input *in)
{
    static const char where[] = "ModelInferRequest.inputs";
    if (msg->wire != MF_PB_LEN)
        return bad(where, "inputs");
    struct mf_pb_reader rd = {msg->data, msg->data + msg->len};
    struct mf_pb_field f;
    enum memfit_status st = MEMFIT_OK;
    size_t cap_params = 0, cap_el = 0;
    int got;
    while (st == MEMFIT_OK && (got = mf_pb_next(&rd, &f)) == 1) {
        switch (f.number) {
        case 1:
            st = take_string(&f, where, "name", &in->name);
            break;
        case 2:
            st = take_string(&f, where, "datatype", &in->datatype);
            break;
        case 3: { /* repeated int64, packed or not */
            uint64_t v = f.value;
            bool packed = f.wire == MF_PB_LEN;
            if (!packed && f.wire != MF_PB_VARINT)
                return bad(where, "shape");
            struct mf_pb_reader sr = {f.data, packed ? f.data + f.len : NULL};
            do {
                if (packed && sr.p >= sr.end)
                    break;
                if (packed && !read_varint(&sr, &v))
                    return bad(where, "shape"); /* a packed run cut inside a varint */
                if (in->n_shape >= sizeof(in->shape) / sizeof(in->shape[0]))
                    return memfit_fail(MEMFIT_E_FORMAT, "%s: shape has more than 8 dimensions",
                                       where);
                in->shape[in->n_shape++] = (int64_t)v;
            } while (packed);
            break;
        }
        case 4:
            st = add_param(&f, where, &in->params, &in->n_params, &cap_params);
            break;
        case 5: { /* InferTensorContents: the BYTES elements (8) */
            if (f.wire != MF_PB_LEN)
                return bad(where, "contents");
            struct mf_pb_reader cr = {f.data, f.data + f.len};
            struct mf_pb_field c;
            int cgot;
            while ((cgot = mf_pb_next(&cr, &c)) == 1) {
                if (c.number == 8 && c.wire == MF_PB_LEN) {
                    if (*items_left == 0)
                        return memfit_fail(MEMFIT_E_FORMAT, "%s: more elements than %s", where,
                                           "the server takes (--max-inputs)");
                    if (!grow((void **)&in->elements, in->n_elements, &cap_el,
                              sizeof(*in->elements)))
                        return MEMFIT_E_NOMEM;
                    in->elements[in->n_elements++] = (struct mf_v2_bytes){c.data, c.len};
                    (*items_left)--;
                } else if (c.number >= 1 && c.number <= 7) {
                    return memfit_fail(MEMFIT_E_FORMAT,
                                       "%s: contents of a type other than BYTES (field %u); "
                                       "memfit's models take BYTES",
                                       where, (unsigned)c.number);
                }
            }
            if (cgot < 0)
                return bad(where, "contents");
            break;
        }
        default:
            break;
        }
    }
    if (st == MEMFIT_OK && got < 0)
        return bad(where, "an input");
    return st;
}

enum memfit_status mf_v2_infer_request_parse(const uint8_t *data, size_t len, size_t max_items,
                                             struct mf_v2_infer_request *out)
{
    static const char where[] = "ModelInferRequest";
    struct mf_v2_infer_request r = {0};
    struct mf_pb_reader rd = {data, data + len};
    struct mf_pb_field f;
    enum memfit_status st = MEMFIT_OK;
    size_t cap_params = 0, cap_in = 0, cap_out = 0, cap_raw = 0, left = max_items;
    int got;
    while (st == MEMFIT_OK && (got = mf_pb_next(&rd, &f)) == 1) {
        switch (f.number) {
        case 1:
            st = take_string(&f, where, "model_name", &r.model_name);
            break;
        case 2:
            st = take_string(&f, where, "model_version", &r.model_version);
            break;
        case 3:
            st = take_string(&f, where, "id", &r.id);
            break;
        case 4:
            st = add_param(&f, where, &r.params, &r.n_params, &cap_params);
            break;
        case 5:
            if (r.n_inputs >= 16)
                st = memfit_fail(MEMFIT_E_FORMAT, "%s: more than 16 inputs", where);
            else if (!grow((void **)&r.inputs, r.n_inputs, &cap_in, sizeof(*r.inputs)))
                st = MEMFIT_E_NOMEM;
            else
                st = parse_input(&f, &left, &r.inputs[r.n_inputs++]);
            break;
        case 6: {
            if (f.wire != MF_PB_LEN) {
                st = bad(where, "outputs");
                break;
            }
            if (r.n_outputs >= 16) {
                st = memfit_fail(MEMFIT_E_FORMAT, "%s: more than 16 outputs", where);
                break;
            }
            if (!grow((void **)&r.outputs, r.n_outputs, &cap_out, sizeof(*r.outputs))) {
                st = MEMFIT_E_NOMEM;
                break;
            }
            char **slot = &r.outputs[r.n_outputs++];
            struct mf_pb_reader orr = {f.data, f.data + f.len};
            struct mf_pb_field o;
            int ogot;
            while (st == MEMFIT_OK && (ogot = mf_pb_next(&orr, &o)) == 1)
                if (o.number == 1)
                    st = take_string(&o, where, "outputs.name", slot);
            if (st == MEMFIT_OK && ogot < 0)
                st = bad(where, "outputs");
            if (st == MEMFIT_OK && !*slot && !(*slot = memfit_strdup("")))
                st = MEMFIT_E_NOMEM;
            break;
        }
        case 7:
            if (f.wire != MF_PB_LEN)
                st = bad(where, "raw_input_contents");
            else if (r.n_raw >= 16)
                st = memfit_fail(MEMFIT_E_FORMAT, "%s: more than 16 raw_input_contents", where);
            else if (!grow((void **)&r.raw, r.n_raw, &cap_raw, sizeof(*r.raw)))
                st = MEMFIT_E_NOMEM;
            else
                r.raw[r.n_raw++] = (struct mf_v2_bytes){f.data, f.len};
            break;
        default:
            break;
        }
    }
    if (st == MEMFIT_OK && got < 0)
        st = memfit_fail(MEMFIT_E_FORMAT, "%s: not a protobuf message", where);
    if (st != MEMFIT_OK) {
        mf_v2_infer_request_free(&r);
        return st;
    }
    *out = r;
    return MEMFIT_OK;
}

enum memfit_status mf_v2_name_request_parse(const uint8_t *data, size_t len, char **name,
                                            char **version)
{
    struct mf_pb_reader rd = {data, data + len};
    struct mf_pb_field f;
    char *n = NULL, *v = NULL;
    enum memfit_status st = MEMFIT_OK;
    int got;
    while (st == MEMFIT_OK && (got = mf_pb_next(&rd, &f)) == 1) {
        if (f.number == 1)
            st = take_string(&f, "model request", "name", &n);
        else if (f.number == 2)
            st = take_string(&f, "model request", "version", &v);
    }
    if (st == MEMFIT_OK && got < 0)
        st = memfit_fail(MEMFIT_E_FORMAT, "model request: not a protobuf message");
    if (st != MEMFIT_OK) {
        memfit_free(n);
        memfit_free(v);
        return st;
    }
    *name = n;
    *version = v;
    return MEMFIT_OK;
}

bool mf_v2_name_request_encode(const char *name, const char *version, struct mf_text *t)
{
    put_optional(t, 1, name);
    put_optional(t, 2, version);
    return !t->failed;
}

static void put_input(struct mf_text *t, const struct mf_v2_input *in)
{
    struct mf_text m = {0}, shape = {0}, contents = {0};
    put_optional(&m, 1, in->name);
    put_optional(&m, 2, in->datatype);
    for (size_t i = 0; i < in->n_shape; i++)
        mf_pb_put_raw_varint(&shape, (uint64_t)in->shape[i]);
    if (in->n_shape)
        put_message(&m, 3, &shape);
    for (size_t i = 0; i < in->n_params; i++)
        mf_v2_put_param(&m, 4, &in->params[i]);
    for (size_t i = 0; i < in->n_elements; i++)
        mf_pb_put_bytes(&contents, 8, in->elements[i].data, in->elements[i].len);
    if (in->n_elements)
        put_message(&m, 5, &contents);
    mf_text_free(&shape);
    mf_text_free(&contents);
    put_message(t, 5, &m);
}

bool mf_v2_infer_request_encode(const struct mf_v2_infer_request *r, struct mf_text *t)
{
    put_optional(t, 1, r->model_name);
    put_optional(t, 2, r->model_version);
    put_optional(t, 3, r->id);
    for (size_t i = 0; i < r->n_params; i++)
        mf_v2_put_param(t, 4, &r->params[i]);
    for (size_t i = 0; i < r->n_inputs; i++)
        put_input(t, &r->inputs[i]);
    for (size_t i = 0; i < r->n_outputs; i++) {
        struct mf_text o = {0};
        mf_pb_put_string(&o, 1, r->outputs[i]);
        put_message(t, 6, &o);
    }
    for (size_t i = 0; i < r->n_raw; i++)
        mf_pb_put_bytes(t, 7, r->raw[i].data, r->raw[i].len);
    return !t->failed;
}

static bool same_string(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool same_bytes(const struct mf_v2_bytes *a, const struct mf_v2_bytes *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (a[i].len != b[i].len || (a[i].len && memcmp(a[i].data, b[i].data, a[i].len) != 0))
            return false;
    return true;
}

static bool same_params(const struct mf_v2_param *a, size_t na, const struct mf_v2_param *b,
                        size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++) {
        const struct mf_v2_param *x = &a[i], *y = &b[i];
        if (!same_string(x->key, y->key) || x->kind != y->kind)
            return false;
        bool same = true;
        switch (x->kind) {
        case MF_V2_PARAM_BOOL:
            same = x->b == y->b;
            break;
        case MF_V2_PARAM_INT64:
            same = x->i == y->i;
            break;
        case MF_V2_PARAM_STRING:
            same = same_string(x->s ? x->s : "", y->s ? y->s : "");
            break;
        case MF_V2_PARAM_DOUBLE:
            same = memcmp(&x->d, &y->d, sizeof(x->d)) == 0;
            break;
        case MF_V2_PARAM_UINT64:
            same = x->u == y->u;
            break;
        }
        if (!same)
            return false;
    }
    return true;
}

bool mf_v2_infer_request_same(const struct mf_v2_infer_request *a,
                              const struct mf_v2_infer_request *b)
{
    if (!same_string(a->model_name, b->model_name) ||
        !same_string(a->model_version, b->model_version) || !same_string(a->id, b->id) ||
        !same_params(a->params, a->n_params, b->params, b->n_params) ||
        a->n_inputs != b->n_inputs || a->n_outputs != b->n_outputs || a->n_raw != b->n_raw ||
        !same_bytes(a->raw, b->raw, a->n_raw))
        return false;
    for (size_t i = 0; i < a->n_outputs; i++)
        if (!same_string(a->outputs[i], b->outputs[i]))
            return false;
    for (size_t i = 0; i < a->n_inputs; i++) {
        const struct mf_v2_input *x = &a->inputs[i], *y = &b->inputs[i];
        if (!same_string(x->name, y->name) || !same_string(x->datatype, y->datatype) ||
            x->n_shape != y->n_shape ||
            memcmp(x->shape, y->shape, x->n_shape * sizeof(x->shape[0])) != 0 ||
            !same_params(x->params, x->n_params, y->params, y->n_params) ||
            x->n_elements != y->n_elements || !same_bytes(x->elements, y->elements, x->n_elements))
            return false;
    }
    return true;
}

bool mf_v2_put_param(struct mf_text *t, uint32_t number, const struct mf_v2_param *p)
{
    struct mf_text value = {0}, entry = {0};
    switch (p->kind) {
    case MF_V2_PARAM_BOOL:
        mf_pb_put_varint(&value, 1, p->b);
        break;
    case MF_V2_PARAM_INT64:
        mf_pb_put_varint(&value, 2, (uint64_t)p->i);
        break;
    case MF_V2_PARAM_STRING:
        mf_pb_put_string(&value, 3, p->s ? p->s : "");
        break;
    case MF_V2_PARAM_DOUBLE: {
        uint64_t bits;
        memcpy(&bits, &p->d, sizeof(bits));
        mf_pb_put_i64(&value, 4, bits);
        break;
    }
    case MF_V2_PARAM_UINT64:
        mf_pb_put_varint(&value, 5, p->u);
        break;
    }
    mf_pb_put_string(&entry, 1, p->key);
    if (value.data || value.failed)
        put_message(&entry, 2, &value);
    else
        mf_pb_put_bytes(&entry, 2, "", 0);
    return put_message(t, number, &entry);
}

enum memfit_status mf_v2_split_raw_bytes(const struct mf_v2_bytes *raw, size_t max_items,
                                         struct mf_v2_bytes **out, size_t *n_out)
{
    struct mf_v2_bytes *items = NULL;
    size_t n = 0, cap = 0, at = 0;
    while (at < raw->len) {
        if (raw->len - at < 4) {
            memfit_free(items);
            return memfit_fail(MEMFIT_E_FORMAT,
                               "raw_input_contents: %zu byte(s) at offset %zu are not a 4-byte "
                               "length",
                               raw->len - at, at);
        }
        const uint8_t *p = raw->data + at;
        size_t len = (size_t)p[0] | (size_t)p[1] << 8 | (size_t)p[2] << 16 | (size_t)p[3] << 24;
        at += 4;
        if (len > raw->len - at || n >= max_items) {
            memfit_free(items);
            return memfit_fail(MEMFIT_E_FORMAT,
                               n >= max_items ? "raw_input_contents: more than %zu elements"
                                              : "raw_input_contents: element %zu runs past the "
                                                "end",
                               n >= max_items ? max_items : n);
        }
        if (!grow((void **)&items, n, &cap, sizeof(*items))) {
            memfit_free(items);
            return MEMFIT_E_NOMEM;
        }
        items[n++] = (struct mf_v2_bytes){raw->data + at, len};
        at += len;
    }
    *out = items;
    *n_out = n;
    return MEMFIT_OK;
}

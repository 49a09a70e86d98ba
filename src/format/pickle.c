/*
 * The pickle reader behind `.pth` files (see pickle.h): a stack machine over
 * the opcodes protocol 2 (torch.save's default) and the common protocol 4
 * additions emit. Objects live in a table owned by the machine and are all
 * freed when it ends; nothing the pickle names is ever called.
 */
#include <stdio.h>
#include <string.h>

#include "format/pickle.h"
#include "format/set.h"

#define MAX_STACK      (1u << 20)
#define MAX_OBJECTS    (1u << 22)
#define MAX_MEMO       (1u << 20)
#define MAX_MARKS      1000 /* open MARKs: tuple/list nesting while building */
#define MAX_WALK_DEPTH 64   /* nested dicts when flattening the result */
#define MAX_NAME_BYTES 4096 /* a flattened tensor name */

enum kind {
    K_NONE,
    K_BOOL,
    K_INT,
    K_FLOAT,
    K_STR,
    K_TUPLE,
    K_LIST,
    K_DICT,
    K_GLOBAL,
    K_STORAGE,
    K_TENSOR,
};

enum global {
    G_ODICT,
    G_REBUILD_V2,
    G_REBUILD,
    G_PARAMETER,
    G_STORAGE_CLASS,
};

struct obj {
    enum kind kind;
    union {
        int64_t i;
        double f;
        struct {
            char *s;
            size_t len;
        } str;
        struct {
            struct obj **items; /* dicts: key, value, key, value ... */
            size_t n, cap;
        } seq;
        struct {
            enum global which;
            enum memfit_type type; /* storage classes */
        } global;
        struct {
            enum memfit_type type;
            char *key;
            uint64_t numel;
        } storage;
        struct {
            struct obj *storage;
            int64_t offset;
            uint32_t n_dims;
            int64_t shape[MEMFIT_TENSOR_MAX_DIMS];
            int64_t stride[MEMFIT_TENSOR_MAX_DIMS];
        } tensor;
    } u;
};

struct vm {
    const uint8_t *p;
    size_t len, pos;
    const char *path;
    struct obj **objs;
    size_t n_objs, cap_objs;
    struct obj **stack;
    size_t n_stack, cap_stack;
    size_t n_marks;
    struct obj **memo;
    size_t cap_memo, n_memo_used; /* n_memo_used: next index for MEMOIZE */
};

static struct obj mark_sentinel; /* MARK on the stack */

static void vm_free(struct vm *vm)
{
    for (size_t i = 0; i < vm->n_objs; i++) {
        struct obj *o = vm->objs[i];
        if (o->kind == K_STR)
            memfit_free(o->u.str.s);
        else if (o->kind == K_TUPLE || o->kind == K_LIST || o->kind == K_DICT)
            memfit_free(o->u.seq.items);
        else if (o->kind == K_STORAGE)
            memfit_free(o->u.storage.key);
        memfit_free(o);
    }
    memfit_free(vm->objs);
    memfit_free(vm->stack);
    memfit_free(vm->memo);
}

static enum memfit_status grow(void **arr, size_t *cap, size_t need, size_t elem, size_t limit,
                               const struct vm *vm, const char *what)
{
    if (need <= *cap)
        return MEMFIT_OK;
    if (need > limit)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: pickle %s over the limit %zu", vm->path, what,
                           limit);
    size_t n = *cap ? *cap : 64;
    while (n < need)
        n *= 2;
    if (n > limit)
        n = limit;
    void *grown = memfit_realloc(*arr, n * elem);
    if (!grown)
        return MEMFIT_E_NOMEM;
    *arr = grown;
    *cap = n;
    return MEMFIT_OK;
}

static enum memfit_status new_obj(struct vm *vm, enum kind kind, struct obj **out)
{
    enum memfit_status st = grow((void **)&vm->objs, &vm->cap_objs, vm->n_objs + 1,
                                 sizeof(struct obj *), MAX_OBJECTS, vm, "object count");
    if (st != MEMFIT_OK)
        return st;
    struct obj *o = memfit_calloc_in(MEMFIT_ALLOC_FORMAT, 1, sizeof(*o));
    if (!o)
        return MEMFIT_E_NOMEM;
    o->kind = kind;
    vm->objs[vm->n_objs++] = o;
    *out = o;
    return MEMFIT_OK;
}

static enum memfit_status push(struct vm *vm, struct obj *o)
{
    enum memfit_status st = grow((void **)&vm->stack, &vm->cap_stack, vm->n_stack + 1,
                                 sizeof(struct obj *), MAX_STACK, vm, "stack depth");
    if (st != MEMFIT_OK)
        return st;
    vm->stack[vm->n_stack++] = o;
    return MEMFIT_OK;
}

static enum memfit_status push_new(struct vm *vm, enum kind kind, struct obj **out)
{
    struct obj *o;
    enum memfit_status st = new_obj(vm, kind, &o);
    if (st == MEMFIT_OK)
        st = push(vm, o);
    if (st == MEMFIT_OK && out)
        *out = o;
    return st;
}

static enum memfit_status underflow(const struct vm *vm, const char *op)
{
    return memfit_fail(MEMFIT_E_FORMAT, "%s: pickle %s at offset %zu: stack underflow", vm->path,
                       op, vm->pos);
}

/* Pops one object (not a MARK). */
static enum memfit_status pop(struct vm *vm, const char *op, struct obj **out)
{
    if (vm->n_stack == 0 || vm->stack[vm->n_stack - 1] == &mark_sentinel)
        return underflow(vm, op);
    *out = vm->stack[--vm->n_stack];
    return MEMFIT_OK;
}

static enum memfit_status top(struct vm *vm, const char *op, struct obj **out)
{
    if (vm->n_stack == 0 || vm->stack[vm->n_stack - 1] == &mark_sentinel)
        return underflow(vm, op);
    *out = vm->stack[vm->n_stack - 1];
    return MEMFIT_OK;
}

/* Finds the topmost MARK: the objects above it are stack[*start .. n_stack). */
static enum memfit_status find_mark(struct vm *vm, const char *op, size_t *start)
{
    for (size_t i = vm->n_stack; i > 0; i--) {
        if (vm->stack[i - 1] == &mark_sentinel) {
            *start = i;
            return MEMFIT_OK;
        }
    }
    return memfit_fail(MEMFIT_E_FORMAT, "%s: pickle %s at offset %zu without a MARK", vm->path, op,
                       vm->pos);
}

/* Drops the MARK at stack[start - 1] and everything above it. */
static void drop_to_mark(struct vm *vm, size_t start)
{
    vm->n_stack = start - 1;
    vm->n_marks--;
}

static enum memfit_status seq_append(struct vm *vm, struct obj *seq, struct obj *item)
{
    enum memfit_status st = grow((void **)&seq->u.seq.items, &seq->u.seq.cap, seq->u.seq.n + 1,
                                 sizeof(struct obj *), MAX_OBJECTS, vm, "container size");
    if (st == MEMFIT_OK)
        seq->u.seq.items[seq->u.seq.n++] = item;
    return st;
}

static enum memfit_status take(struct vm *vm, size_t n, const char *op, const uint8_t **out)
{
    if (n > vm->len - vm->pos)
        return memfit_fail(MEMFIT_E_FORMAT,
                           "%s: pickle %s at offset %zu: %zu bytes needed, %zu left", vm->path, op,
                           vm->pos, n, vm->len - vm->pos);
    *out = vm->p + vm->pos;
    vm->pos += n;
    return MEMFIT_OK;
}

static enum memfit_status push_str(struct vm *vm, const uint8_t *s, size_t n)
{
    struct obj *o;
    enum memfit_status st = new_obj(vm, K_STR, &o);
    if (st != MEMFIT_OK)
        return st;
    o->u.str.s = memfit_strndup((const char *)s, n);
    if (!o->u.str.s)
        return MEMFIT_E_NOMEM;
    o->u.str.len = n;
    if (memchr(s, '\0', n))
        o->u.str.len = strlen(o->u.str.s); /* names never hold NUL: cut at it */
    return push(vm, o);
}

static enum memfit_status push_int(struct vm *vm, int64_t v)
{
    struct obj *o;
    enum memfit_status st = push_new(vm, K_INT, &o);
    if (st == MEMFIT_OK)
        o->u.i = v;
    return st;
}

static const struct {
    const char *name;
    enum memfit_type type;
} storages[] = {
    {"FloatStorage", MEMFIT_TYPE_F32},     {"HalfStorage", MEMFIT_TYPE_F16},
    {"BFloat16Storage", MEMFIT_TYPE_BF16}, {"DoubleStorage", MEMFIT_TYPE_F64},
    {"LongStorage", MEMFIT_TYPE_I64},      {"IntStorage", MEMFIT_TYPE_I32},
    {"ShortStorage", MEMFIT_TYPE_I16},     {"CharStorage", MEMFIT_TYPE_I8},
    {"ByteStorage", MEMFIT_TYPE_U8},       {"BoolStorage", MEMFIT_TYPE_BOOL},
    {"UntypedStorage", MEMFIT_TYPE_U8},
};

static enum memfit_status push_global(struct vm *vm, const char *module, size_t mlen,
                                      const char *name, size_t nlen)
{
    struct obj *o;
    enum memfit_status st = new_obj(vm, K_GLOBAL, &o);
    if (st != MEMFIT_OK)
        return st;
#define IS(m, n)                                                                                   \
    (mlen == strlen(m) && memcmp(module, m, mlen) == 0 && nlen == strlen(n) &&                     \
     memcmp(name, n, nlen) == 0)
    if (IS("collections", "OrderedDict") || IS("builtins", "dict")) {
        o->u.global.which = G_ODICT;
    } else if (IS("torch._utils", "_rebuild_tensor_v2")) {
        o->u.global.which = G_REBUILD_V2;
    } else if (IS("torch._utils", "_rebuild_tensor")) {
        o->u.global.which = G_REBUILD;
    } else if (IS("torch._utils", "_rebuild_parameter")) {
        o->u.global.which = G_PARAMETER;
    } else {
        bool found = false;
        if (mlen == 5 && memcmp(module, "torch", 5) == 0) {
            for (size_t i = 0; i < sizeof(storages) / sizeof(storages[0]); i++) {
                if (nlen == strlen(storages[i].name) && memcmp(name, storages[i].name, nlen) == 0) {
                    o->u.global.which = G_STORAGE_CLASS;
                    o->u.global.type = storages[i].type;
                    found = true;
                }
            }
        }
        if (!found)
            return memfit_fail(MEMFIT_E_UNSUPPORTED,
                               "%s: pickle global '%.*s.%.*s' not allowed (only PyTorch tensors, "
                               "storages and dicts are read; nothing is executed)",
                               vm->path, (int)(mlen > 100 ? 100 : mlen), module,
                               (int)(nlen > 100 ? 100 : nlen), name);
    }
#undef IS
    return push(vm, o);
}

/* Reads one "\n"-terminated line of GLOBAL's operand. */
static enum memfit_status read_line(struct vm *vm, const char **out, size_t *out_len)
{
    const uint8_t *start = vm->p + vm->pos;
    size_t left = vm->len - vm->pos;
    const uint8_t *nl = memchr(start, '\n', left < 512 ? left : 512);
    if (!nl)
        return memfit_fail(MEMFIT_E_FORMAT,
                           "%s: pickle GLOBAL at offset %zu: name not terminated within 512 bytes",
                           vm->path, vm->pos);
    *out = (const char *)start;
    *out_len = (size_t)(nl - start);
    vm->pos += *out_len + 1;
    return MEMFIT_OK;
}

static bool int_tuple(const struct obj *o, uint32_t max, int64_t *vals, uint32_t *n)
{
    if (o->kind != K_TUPLE && o->kind != K_LIST)
        return false;
    if (o->u.seq.n > max)
        return false;
    for (size_t i = 0; i < o->u.seq.n; i++) {
        if (o->u.seq.items[i]->kind != K_INT)
            return false;
        vals[i] = o->u.seq.items[i]->u.i;
    }
    *n = (uint32_t)o->u.seq.n;
    return true;
}

static enum memfit_status reduce(struct vm *vm, struct obj *callable, struct obj *args)
{
    if (callable->kind != K_GLOBAL)
        return memfit_fail(MEMFIT_E_UNSUPPORTED,
                           "%s: pickle REDUCE at offset %zu calls something not a global", vm->path,
                           vm->pos);
    if (args->kind != K_TUPLE)
        return memfit_fail(MEMFIT_E_FORMAT,
                           "%s: pickle REDUCE at offset %zu: arguments are not a tuple", vm->path,
                           vm->pos);
    size_t n = args->u.seq.n;
    struct obj **a = args->u.seq.items;
    switch (callable->u.global.which) {
    case G_ODICT:
        if (n != 0)
            return memfit_fail(MEMFIT_E_UNSUPPORTED,
                               "%s: pickle at offset %zu: OrderedDict with arguments", vm->path,
                               vm->pos);
        return push_new(vm, K_DICT, NULL);
    case G_PARAMETER:
        if (n < 1 || a[0]->kind != K_TENSOR)
            return memfit_fail(MEMFIT_E_FORMAT,
                               "%s: pickle at offset %zu: _rebuild_parameter without a tensor",
                               vm->path, vm->pos);
        return push(vm, a[0]);
    case G_REBUILD_V2:
    case G_REBUILD: {
        struct obj *t;
        if (n < 4 || a[0]->kind != K_STORAGE || a[1]->kind != K_INT)
            return memfit_fail(MEMFIT_E_FORMAT,
                               "%s: pickle at offset %zu: _rebuild_tensor needs (storage, "
                               "offset, size, stride, ...)",
                               vm->path, vm->pos);
        enum memfit_status st = new_obj(vm, K_TENSOR, &t);
        if (st != MEMFIT_OK)
            return st;
        uint32_t nd_shape, nd_stride;
        if (!int_tuple(a[2], MEMFIT_TENSOR_MAX_DIMS, t->u.tensor.shape, &nd_shape) ||
            !int_tuple(a[3], MEMFIT_TENSOR_MAX_DIMS, t->u.tensor.stride, &nd_stride) ||
            nd_shape != nd_stride)
            return memfit_fail(MEMFIT_E_FORMAT,
                               "%s: pickle at offset %zu: tensor size/stride are not int tuples "
                               "of equal length (at most %d)",
                               vm->path, vm->pos, MEMFIT_TENSOR_MAX_DIMS);
        t->u.tensor.storage = a[0];
        t->u.tensor.offset = a[1]->u.i;
        t->u.tensor.n_dims = nd_shape;
        return push(vm, t);
    }
    default:
        return memfit_fail(MEMFIT_E_UNSUPPORTED,
                           "%s: pickle at offset %zu: a storage class is called directly", vm->path,
                           vm->pos);
    }
}

static enum memfit_status persistent_load(struct vm *vm, struct obj *pid)
{
    if (pid->kind != K_TUPLE || pid->u.seq.n < 5)
        return memfit_fail(MEMFIT_E_FORMAT,
                           "%s: pickle BINPERSID at offset %zu: id is not a 5-tuple", vm->path,
                           vm->pos);
    struct obj **a = pid->u.seq.items;
    if (a[0]->kind != K_STR || strcmp(a[0]->u.str.s, "storage") != 0 || a[1]->kind != K_GLOBAL ||
        a[1]->u.global.which != G_STORAGE_CLASS || a[2]->kind != K_STR || a[4]->kind != K_INT ||
        a[4]->u.i < 0)
        return memfit_fail(MEMFIT_E_FORMAT,
                           "%s: pickle BINPERSID at offset %zu: expected ('storage', "
                           "torch.XStorage, key, location, numel)",
                           vm->path, vm->pos);
    struct obj *s;
    enum memfit_status st = new_obj(vm, K_STORAGE, &s);
    if (st != MEMFIT_OK)
        return st;
    s->u.storage.key = memfit_strdup(a[2]->u.str.s);
    if (!s->u.storage.key)
        return MEMFIT_E_NOMEM;
    s->u.storage.type = a[1]->u.global.type;
    s->u.storage.numel = (uint64_t)a[4]->u.i;
    return push(vm, s);
}

static enum memfit_status memo_put(struct vm *vm, uint64_t idx)
{
    struct obj *o = NULL;
    enum memfit_status st = top(vm, "BINPUT", &o);
    if (st != MEMFIT_OK)
        return st;
    if (idx >= MAX_MEMO || idx > vm->len)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: pickle memo index %llu over the limit %u",
                           vm->path, (unsigned long long)idx, MAX_MEMO);
    if (idx >= vm->cap_memo) {
        size_t old = vm->cap_memo;
        st = grow((void **)&vm->memo, &vm->cap_memo, (size_t)idx + 1, sizeof(struct obj *),
                  MAX_MEMO, vm, "memo size");
        if (st != MEMFIT_OK)
            return st;
        memset(vm->memo + old, 0, (vm->cap_memo - old) * sizeof(struct obj *));
    }
    vm->memo[idx] = o;
    if (idx + 1 > vm->n_memo_used)
        vm->n_memo_used = (size_t)idx + 1;
    return MEMFIT_OK;
}

static enum memfit_status memo_get(struct vm *vm, uint64_t idx)
{
    if (idx >= vm->cap_memo || !vm->memo[idx])
        return memfit_fail(MEMFIT_E_FORMAT, "%s: pickle memo index %llu at offset %zu is unset",
                           vm->path, (unsigned long long)idx, vm->pos);
    return push(vm, vm->memo[idx]);
}

static enum memfit_status run(struct vm *vm, struct obj **result)
{
    enum memfit_status st = MEMFIT_OK;
    const uint8_t *b = NULL;
    struct obj *o = NULL, *k = NULL, *v = NULL;
    size_t start = 0;
    while (st == MEMFIT_OK) {
        if (vm->pos >= vm->len)
            return memfit_fail(MEMFIT_E_FORMAT, "%s: pickle ends without STOP at offset %zu",
                               vm->path, vm->pos);
        size_t at = vm->pos;
        uint8_t op = vm->p[vm->pos++];
        switch (op) {
        case 0x80: /* PROTO */
            if ((st = take(vm, 1, "PROTO", &b)) == MEMFIT_OK && b[0] > 5)
                st = memfit_fail(MEMFIT_E_UNSUPPORTED, "%s: pickle protocol %u", vm->path, b[0]);
            break;
        case 0x95: /* FRAME: a length hint only */
            st = take(vm, 8, "FRAME", &b);
            break;
        case '.': /* STOP */
            return pop(vm, "STOP", result);
        case '(': /* MARK */
            if (vm->n_marks >= MAX_MARKS)
                return memfit_fail(MEMFIT_E_FORMAT,
                                   "%s: pickle nesting deeper than %d at offset %zu", vm->path,
                                   MAX_MARKS, at);
            if ((st = push(vm, &mark_sentinel)) == MEMFIT_OK)
                vm->n_marks++;
            break;
        case '0': /* POP */
            st = pop(vm, "POP", &o);
            break;
        case '1': /* POP_MARK */
            if ((st = find_mark(vm, "POP_MARK", &start)) == MEMFIT_OK)
                drop_to_mark(vm, start);
            break;
        case 'N':
            st = push_new(vm, K_NONE, NULL);
            break;
        case 0x88: /* NEWTRUE */
        case 0x89: /* NEWFALSE */
            if ((st = push_new(vm, K_BOOL, &o)) == MEMFIT_OK)
                o->u.i = op == 0x88;
            break;
        case 'J': /* BININT */
            if ((st = take(vm, 4, "BININT", &b)) == MEMFIT_OK)
                st = push_int(vm, (int32_t)mf_le32(b));
            break;
        case 'K': /* BININT1 */
            if ((st = take(vm, 1, "BININT1", &b)) == MEMFIT_OK)
                st = push_int(vm, b[0]);
            break;
        case 'M': /* BININT2 */
            if ((st = take(vm, 2, "BININT2", &b)) == MEMFIT_OK)
                st = push_int(vm, mf_le16(b));
            break;
        case 0x8a: { /* LONG1 */
            if ((st = take(vm, 1, "LONG1", &b)) != MEMFIT_OK)
                break;
            size_t n = b[0];
            if (n > 8)
                return memfit_fail(MEMFIT_E_UNSUPPORTED,
                                   "%s: pickle LONG1 of %zu bytes at offset %zu (over 64 bits)",
                                   vm->path, n, at);
            if ((st = take(vm, n, "LONG1", &b)) != MEMFIT_OK)
                break;
            uint64_t u = 0;
            for (size_t i = 0; i < n; i++)
                u |= (uint64_t)b[i] << (8 * i);
            if (n > 0 && n < 8 && (b[n - 1] & 0x80))
                u |= ~(uint64_t)0 << (8 * n); /* sign-extend */
            st = push_int(vm, (int64_t)u);
            break;
        }
        case 'G': { /* BINFLOAT, big-endian */
            if ((st = take(vm, 8, "BINFLOAT", &b)) != MEMFIT_OK)
                break;
            uint64_t u = 0;
            for (int i = 0; i < 8; i++)
                u = (u << 8) | b[i];
            if ((st = push_new(vm, K_FLOAT, &o)) == MEMFIT_OK)
                memcpy(&o->u.f, &u, sizeof(u));
            break;
        }
        case 'X':   /* BINUNICODE */
        case 'B':   /* BINBYTES */
        case 'T': { /* BINSTRING */
            if ((st = take(vm, 4, "BINUNICODE", &b)) != MEMFIT_OK)
                break;
            size_t n = mf_le32(b);
            if ((st = take(vm, n, "BINUNICODE", &b)) == MEMFIT_OK)
                st = push_str(vm, b, n);
            break;
        }
        case 0x8c:  /* SHORT_BINUNICODE */
        case 'U':   /* SHORT_BINSTRING */
        case 'C': { /* SHORT_BINBYTES */
            if ((st = take(vm, 1, "SHORT_BINUNICODE", &b)) != MEMFIT_OK)
                break;
            size_t n = b[0];
            if ((st = take(vm, n, "SHORT_BINUNICODE", &b)) == MEMFIT_OK)
                st = push_str(vm, b, n);
            break;
        }
        case 0x8d:   /* BINUNICODE8 */
        case 0x8e: { /* BINBYTES8 */
            if ((st = take(vm, 8, "BINUNICODE8", &b)) != MEMFIT_OK)
                break;
            uint64_t n = mf_le64(b);
            if (n > vm->len - vm->pos)
                return memfit_fail(MEMFIT_E_FORMAT,
                                   "%s: pickle string length %llu at offset %zu beyond the %zu "
                                   "bytes left",
                                   vm->path, (unsigned long long)n, at, vm->len - vm->pos);
            if ((st = take(vm, (size_t)n, "BINUNICODE8", &b)) == MEMFIT_OK)
                st = push_str(vm, b, (size_t)n);
            break;
        }
        case ')': /* EMPTY_TUPLE */
            st = push_new(vm, K_TUPLE, NULL);
            break;
        case ']':  /* EMPTY_LIST */
        case 0x8f: /* EMPTY_SET: kept as a list, never looked into */
            st = push_new(vm, K_LIST, NULL);
            break;
        case '}': /* EMPTY_DICT */
            st = push_new(vm, K_DICT, NULL);
            break;
        case 't':   /* TUPLE */
        case 'l': { /* LIST */
            if ((st = find_mark(vm, "TUPLE", &start)) != MEMFIT_OK)
                break;
            if ((st = new_obj(vm, op == 't' ? K_TUPLE : K_LIST, &o)) != MEMFIT_OK)
                break;
            for (size_t i = start; i < vm->n_stack && st == MEMFIT_OK; i++)
                st = seq_append(vm, o, vm->stack[i]);
            if (st != MEMFIT_OK)
                break;
            drop_to_mark(vm, start);
            st = push(vm, o);
            break;
        }
        case 0x85:   /* TUPLE1 */
        case 0x86:   /* TUPLE2 */
        case 0x87: { /* TUPLE3 */
            size_t n = (size_t)(op - 0x84);
            if (vm->n_stack < n)
                return underflow(vm, "TUPLEn");
            for (size_t i = vm->n_stack - n; i < vm->n_stack; i++)
                if (vm->stack[i] == &mark_sentinel)
                    return underflow(vm, "TUPLEn");
            if ((st = new_obj(vm, K_TUPLE, &o)) != MEMFIT_OK)
                break;
            for (size_t i = vm->n_stack - n; i < vm->n_stack && st == MEMFIT_OK; i++)
                st = seq_append(vm, o, vm->stack[i]);
            if (st != MEMFIT_OK)
                break;
            vm->n_stack -= n;
            st = push(vm, o);
            break;
        }
        case 'a': /* APPEND */
            if ((st = pop(vm, "APPEND", &v)) != MEMFIT_OK ||
                (st = top(vm, "APPEND", &o)) != MEMFIT_OK)
                break;
            if (o->kind != K_LIST)
                return memfit_fail(MEMFIT_E_FORMAT, "%s: pickle APPEND at offset %zu to a non-list",
                                   vm->path, at);
            st = seq_append(vm, o, v);
            break;
        case 'e': /* APPENDS */
            if ((st = find_mark(vm, "APPENDS", &start)) != MEMFIT_OK)
                break;
            if (start < 2 || vm->stack[start - 2] == &mark_sentinel ||
                vm->stack[start - 2]->kind != K_LIST)
                return memfit_fail(MEMFIT_E_FORMAT,
                                   "%s: pickle APPENDS at offset %zu without a list", vm->path, at);
            o = vm->stack[start - 2];
            for (size_t i = start; i < vm->n_stack && st == MEMFIT_OK; i++)
                st = seq_append(vm, o, vm->stack[i]);
            if (st == MEMFIT_OK)
                drop_to_mark(vm, start);
            break;
        case 's': /* SETITEM */
            if ((st = pop(vm, "SETITEM", &v)) != MEMFIT_OK ||
                (st = pop(vm, "SETITEM", &k)) != MEMFIT_OK ||
                (st = top(vm, "SETITEM", &o)) != MEMFIT_OK)
                break;
            if (o->kind != K_DICT)
                return memfit_fail(MEMFIT_E_FORMAT,
                                   "%s: pickle SETITEM at offset %zu on a non-dict", vm->path, at);
            if ((st = seq_append(vm, o, k)) == MEMFIT_OK)
                st = seq_append(vm, o, v);
            break;
        case 'u': /* SETITEMS */
            if ((st = find_mark(vm, "SETITEMS", &start)) != MEMFIT_OK)
                break;
            if (start < 2 || vm->stack[start - 2] == &mark_sentinel ||
                vm->stack[start - 2]->kind != K_DICT || (vm->n_stack - start) % 2 != 0)
                return memfit_fail(MEMFIT_E_FORMAT,
                                   "%s: pickle SETITEMS at offset %zu without a dict or with an "
                                   "odd item count",
                                   vm->path, at);
            o = vm->stack[start - 2];
            for (size_t i = start; i < vm->n_stack && st == MEMFIT_OK; i++)
                st = seq_append(vm, o, vm->stack[i]);
            if (st == MEMFIT_OK)
                drop_to_mark(vm, start);
            break;
        case 'c': { /* GLOBAL */
            const char *m = NULL, *n = NULL;
            size_t ml = 0, nl = 0;
            if ((st = read_line(vm, &m, &ml)) == MEMFIT_OK &&
                (st = read_line(vm, &n, &nl)) == MEMFIT_OK)
                st = push_global(vm, m, ml, n, nl);
            break;
        }
        case 0x93: /* STACK_GLOBAL */
            if ((st = pop(vm, "STACK_GLOBAL", &v)) != MEMFIT_OK ||
                (st = pop(vm, "STACK_GLOBAL", &k)) != MEMFIT_OK)
                break;
            if (k->kind != K_STR || v->kind != K_STR)
                return memfit_fail(MEMFIT_E_FORMAT,
                                   "%s: pickle STACK_GLOBAL at offset %zu: names are not strings",
                                   vm->path, at);
            st = push_global(vm, k->u.str.s, k->u.str.len, v->u.str.s, v->u.str.len);
            break;
        case 'R':    /* REDUCE */
        case 0x81: { /* NEWOBJ */
            if ((st = pop(vm, "REDUCE", &v)) != MEMFIT_OK ||
                (st = pop(vm, "REDUCE", &k)) != MEMFIT_OK)
                break;
            st = reduce(vm, k, v);
            break;
        }
        case 'b': /* BUILD: the state (e.g. OrderedDict's _metadata) is not needed */
            if ((st = pop(vm, "BUILD", &v)) != MEMFIT_OK ||
                (st = top(vm, "BUILD", &o)) != MEMFIT_OK)
                break;
            if (o->kind != K_DICT && o->kind != K_TENSOR)
                return memfit_fail(MEMFIT_E_UNSUPPORTED,
                                   "%s: pickle BUILD at offset %zu on an object memfit does not "
                                   "build",
                                   vm->path, at);
            break;
        case 'Q': /* BINPERSID */
            if ((st = pop(vm, "BINPERSID", &v)) == MEMFIT_OK)
                st = persistent_load(vm, v);
            break;
        case 'q': /* BINPUT */
            if ((st = take(vm, 1, "BINPUT", &b)) == MEMFIT_OK)
                st = memo_put(vm, b[0]);
            break;
        case 'r': /* LONG_BINPUT */
            if ((st = take(vm, 4, "LONG_BINPUT", &b)) == MEMFIT_OK)
                st = memo_put(vm, mf_le32(b));
            break;
        case 0x94: /* MEMOIZE */
            st = memo_put(vm, vm->n_memo_used);
            break;
        case 'h': /* BINGET */
            if ((st = take(vm, 1, "BINGET", &b)) == MEMFIT_OK)
                st = memo_get(vm, b[0]);
            break;
        case 'j': /* LONG_BINGET */
            if ((st = take(vm, 4, "LONG_BINGET", &b)) == MEMFIT_OK)
                st = memo_get(vm, mf_le32(b));
            break;
        default:
            return memfit_fail(MEMFIT_E_UNSUPPORTED,
                               "%s: pickle opcode 0x%02x at offset %zu is not supported", vm->path,
                               op, at);
        }
    }
    return st;
}

struct walk {
    const char *path;
    mf_pickle_tensor_fn fn;
    void *ctx;
    char name[MAX_NAME_BYTES];
};

static enum memfit_status walk_dict(struct walk *w, const struct obj *dict, size_t prefix_len,
                                    unsigned depth)
{
    if (depth > MAX_WALK_DEPTH)
        return memfit_fail(MEMFIT_E_FORMAT,
                           "%s: pickle: dicts nested deeper than %d (a recursive structure?)",
                           w->path, MAX_WALK_DEPTH);
    for (size_t i = 0; i + 1 < dict->u.seq.n; i += 2) {
        const struct obj *k = dict->u.seq.items[i], *v = dict->u.seq.items[i + 1];
        if (v->kind != K_TENSOR && v->kind != K_DICT)
            continue;
        char keybuf[32];
        const char *key;
        size_t klen;
        if (k->kind == K_STR) {
            key = k->u.str.s;
            klen = k->u.str.len;
        } else if (k->kind == K_INT) {
            snprintf(keybuf, sizeof(keybuf), "%lld", (long long)k->u.i);
            key = keybuf;
            klen = strlen(keybuf);
        } else {
            continue; /* tensors under other keys cannot be named */
        }
        size_t sep = prefix_len ? 1 : 0;
        if (prefix_len + sep + klen + 1 > sizeof(w->name))
            return memfit_fail(MEMFIT_E_FORMAT, "%s: tensor name longer than %d bytes", w->path,
                               MAX_NAME_BYTES - 1);
        if (sep)
            w->name[prefix_len] = '.';
        memcpy(w->name + prefix_len + sep, key, klen);
        w->name[prefix_len + sep + klen] = '\0';
        enum memfit_status st;
        if (v->kind == K_DICT) {
            st = walk_dict(w, v, prefix_len + sep + klen, depth + 1);
        } else {
            struct mf_pickle_tensor t;
            memset(&t, 0, sizeof(t));
            t.name = w->name;
            t.type = v->u.tensor.storage->u.storage.type;
            t.n_dims = v->u.tensor.n_dims;
            memcpy(t.shape, v->u.tensor.shape, sizeof(t.shape));
            memcpy(t.stride, v->u.tensor.stride, sizeof(t.stride));
            t.storage_offset = v->u.tensor.offset;
            t.storage_key = v->u.tensor.storage->u.storage.key;
            t.storage_numel = v->u.tensor.storage->u.storage.numel;
            st = w->fn(w->ctx, &t);
        }
        if (st != MEMFIT_OK)
            return st;
        w->name[prefix_len] = '\0';
    }
    return MEMFIT_OK;
}

enum memfit_status mf_pickle_load_state_dict(const uint8_t *data, size_t len, const char *path,
                                             mf_pickle_tensor_fn fn, void *ctx)
{
    struct vm vm;
    memset(&vm, 0, sizeof(vm));
    vm.p = data;
    vm.len = len;
    vm.path = path;
    struct obj *result = NULL;
    enum memfit_status st = run(&vm, &result);
    if (st == MEMFIT_OK && result->kind != K_DICT)
        st = memfit_fail(MEMFIT_E_UNSUPPORTED,
                         "%s: the pickle holds no dict of tensors (a state_dict was expected)",
                         path);
    if (st == MEMFIT_OK) {
        struct walk *w = memfit_malloc_in(MEMFIT_ALLOC_FORMAT, sizeof(*w));
        if (!w) {
            st = MEMFIT_E_NOMEM;
        } else {
            w->path = path;
            w->fn = fn;
            w->ctx = ctx;
            w->name[0] = '\0';
            st = walk_dict(w, result, 0, 0);
            memfit_free(w);
        }
    }
    vm_free(&vm);
    return st;
}

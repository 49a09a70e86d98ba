/*
 * Small-file reading and "key value" parsing for the sys readers. Kernel
 * pseudo-files are read with open/read into stack buffers: no stdio
 * buffering and no allocation, because the monitor samples every 100 ms.
 * Content is never trusted: numbers are checked for overflow, lines that do
 * not parse are reported, never fatal.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "sys/sys_file.h"

bool mf_sys_path(char *out, size_t size, const char *root, const char *fmt, ...)
{
    size_t used = 0;
    if (root && root[0] && strcmp(root, "/") != 0) {
        used = strlen(root);
        while (used > 1 && root[used - 1] == '/')
            used--; /* "fixtures/x/" + "/proc" must not become "x//proc" */
        if (used >= size)
            return false;
        memcpy(out, root, used);
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out + used, size - used, fmt, ap);
    va_end(ap);
    return n >= 0 && (size_t)n < size - used;
}

int mf_sys_read_text(const char *path, char *buf, size_t size, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    size_t used = 0;
    int err = 0;
    while (used + 1 < size) {
        ssize_t n = read(fd, buf + used, size - 1 - used);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            err = errno;
            break;
        }
        if (n == 0)
            break;
        used += (size_t)n;
    }
    if (!err && used + 1 >= size) {
        char extra;
        ssize_t n;
        do
            n = read(fd, &extra, 1);
        while (n < 0 && errno == EINTR);
        if (n > 0) {
            /* Keep whole lines only: a cut number would be read as a wrong one. */
            while (used > 0 && buf[used - 1] != '\n')
                used--;
            err = E2BIG;
        }
    }
    close(fd);
    if (err && err != E2BIG)
        return err;
    buf[used] = '\0';
    if (len)
        *len = used;
    return err;
}

int mf_sys_read_lines(const char *path, mf_sys_line_fn fn, void *ctx)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    char buf[8192];
    size_t used = 0;
    bool skipping = false; /* inside a line longer than the buffer */
    int err = 0;
    for (;;) {
        ssize_t n = read(fd, buf + used, sizeof(buf) - 1 - used);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            err = errno;
            break;
        }
        bool eof = n == 0;
        used += (size_t)n;
        size_t start = 0;
        bool stop = false;
        for (size_t i = 0; i < used && !stop; i++) {
            if (buf[i] != '\n')
                continue;
            buf[i] = '\0';
            if (!skipping)
                stop = !fn(buf + start, i - start, ctx);
            skipping = false;
            start = i + 1;
        }
        if (stop)
            break;
        if (eof) {
            if (start < used && !skipping) {
                buf[used] = '\0';
                fn(buf + start, used - start, ctx);
            }
            break;
        }
        memmove(buf, buf + start, used - start);
        used -= start;
        if (used == sizeof(buf) - 1) {
            skipping = true;
            used = 0;
        }
    }
    close(fd);
    return err;
}

bool mf_sys_parse_u64(const char **p, uint64_t *out)
{
    const char *s = *p;
    while (*s == ' ' || *s == '\t')
        s++;
    if (!isdigit((unsigned char)*s))
        return false;
    uint64_t v = 0;
    while (isdigit((unsigned char)*s)) {
        if (__builtin_mul_overflow(v, 10, &v) ||
            __builtin_add_overflow(v, (uint64_t)(*s - '0'), &v))
            return false;
        s++;
    }
    *out = v;
    *p = s;
    return true;
}

static bool rest_is_blank(const char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\n')
        s++;
    return *s == '\0';
}

int mf_sys_read_u64(const char *path, uint64_t *out, bool *is_max)
{
    char buf[128];
    int err = mf_sys_read_text(path, buf, sizeof(buf), NULL);
    if (err)
        return err == E2BIG ? EINVAL : err;
    const char *p = buf;
    while (*p == ' ')
        p++;
    if (strncmp(p, "max", 3) == 0 && rest_is_blank(p + 3)) {
        *out = MEMFIT_SYS_UNKNOWN;
        if (is_max)
            *is_max = true;
        return 0;
    }
    uint64_t v;
    if (!mf_sys_parse_u64(&p, &v) || !rest_is_blank(p))
        return EINVAL;
    *out = v;
    if (is_max)
        *is_max = false;
    return 0;
}

unsigned mf_sys_kv_parse(const char *text, const struct mf_sys_kv *fields, size_t n_fields,
                         const char **bad_key)
{
    unsigned bad = 0, found = 0;
    const char *line = text;
    /* Kernel files hold each key once: stop as soon as every field is seen. */
    while (*line && found < n_fields) {
        const char *eol = strchr(line, '\n');
        if (!eol)
            eol = line + strlen(line);
        const char *k = line;
        while (k < eol && *k != ':' && *k != ' ' && *k != '\t')
            k++;
        size_t klen = (size_t)(k - line);
        for (size_t i = 0; i < n_fields; i++) {
            const char *key = fields[i].key;
            if (key[0] != line[0] || strncmp(key, line, klen) != 0 || key[klen] != '\0')
                continue;
            found++;
            const char *p = k < eol && *k == ':' ? k + 1 : k;
            uint64_t v;
            bool ok = mf_sys_parse_u64(&p, &v);
            if (ok) {
                while (p < eol && (*p == ' ' || *p == '\t'))
                    p++;
                if (eol - p >= 2 && p[0] == 'k' && p[1] == 'B') {
                    ok = !__builtin_mul_overflow(v, 1024, &v);
                    p += 2;
                }
                while (p < eol && (*p == ' ' || *p == '\t'))
                    p++;
                ok = ok && p == eol;
            }
            if (ok) {
                *fields[i].dst = v;
            } else {
                if (bad == 0 && bad_key)
                    *bad_key = fields[i].key;
                bad++;
            }
            break;
        }
        line = *eol ? eol + 1 : eol;
    }
    return bad;
}

bool mf_sys_find_string(const char *text, const char *key, char *out, size_t size)
{
    size_t klen = strlen(key);
    const char *line = text;
    while (*line) {
        const char *eol = strchr(line, '\n');
        if (!eol)
            eol = line + strlen(line);
        if ((size_t)(eol - line) > klen && memcmp(line, key, klen) == 0 && line[klen] == ':') {
            const char *v = line + klen + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            size_t n = (size_t)(eol - v);
            if (n >= size)
                n = size - 1;
            memcpy(out, v, n);
            out[n] = '\0';
            return true;
        }
        line = *eol ? eol + 1 : eol;
    }
    return false;
}

void mf_sys_reason_add(char *reason, const char *fmt, ...)
{
    size_t used = strnlen(reason, MEMFIT_SYS_REASON_MAX - 1);
    if (used > 0 && used + 2 < MEMFIT_SYS_REASON_MAX) {
        memcpy(reason + used, "; ", 3);
        used += 2;
    }
    if (used + 1 >= MEMFIT_SYS_REASON_MAX)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason + used, MEMFIT_SYS_REASON_MAX - used, fmt, ap);
    va_end(ap);
}

void mf_sys_reason_errno(char *reason, const char *name, int err)
{
    if (err == ENOENT)
        mf_sys_reason_add(reason, "%s missing", name);
    else if (err == EINVAL)
        mf_sys_reason_add(reason, "%s: malformed", name);
    else
        mf_sys_reason_add(reason, "%s: %s", name, strerror(err));
}

uint64_t mf_sys_sub_floor(uint64_t a, uint64_t b)
{
    if (a == MEMFIT_SYS_UNKNOWN || b == MEMFIT_SYS_UNKNOWN)
        return MEMFIT_SYS_UNKNOWN;
    return a > b ? a - b : 0;
}

void mf_sys_copy(char *out, size_t size, const char *text)
{
    size_t n = strnlen(text, size - 1);
    memcpy(out, text, n);
    out[n] = '\0';
}

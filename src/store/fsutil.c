/*
 * File-system and hashing helpers of the store: streaming SHA-256 through
 * OpenSSL's EVP API, mkdir -p, durable atomic writes (temp file, fsync,
 * rename, fsync of the directory), and facts about processes that lock
 * files and pins record (host name, pid liveness, start time).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "store/internal.h"
#include "store/libs.h"

/* ---- SHA-256 ------------------------------------------------------------ */

enum memfit_status mf_sha256_init(struct mf_sha256 *h)
{
    enum memfit_status loaded = mf_store_load_crypto();
    if (loaded != MEMFIT_OK)
        return loaded;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx)
        return memfit_fail(MEMFIT_E_NOMEM, "out of memory creating a SHA-256 context");
    if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        return memfit_fail(MEMFIT_E_NOMEM, "SHA-256 initialisation failed");
    }
    h->ctx = ctx;
    h->n_bytes = 0;
    return MEMFIT_OK;
}

void mf_sha256_update(struct mf_sha256 *h, const void *data, size_t len)
{
    EVP_DigestUpdate(h->ctx, data, len);
    h->n_bytes += len;
}

void mf_sha256_final(struct mf_sha256 *h, char hex[MEMFIT_SHA256_HEX_LEN + 1])
{
    static const char digits[] = "0123456789abcdef";
    unsigned char md[32];
    unsigned int n = 0;
    EVP_DigestFinal_ex(h->ctx, md, &n);
    for (unsigned i = 0; i < 32; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[MEMFIT_SHA256_HEX_LEN] = '\0';
    EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL);
    h->n_bytes = 0;
}

void mf_sha256_free(struct mf_sha256 *h)
{
    if (h && h->ctx) {
        EVP_MD_CTX_free(h->ctx);
        h->ctx = NULL;
    }
}

enum memfit_status memfit_sha256_parts(const void *const *parts, const size_t *lens, size_t n,
                                       char out_hex[MEMFIT_SHA256_HEX_LEN + 1])
{
    struct mf_sha256 h;
    enum memfit_status st = mf_sha256_init(&h);
    if (st != MEMFIT_OK)
        return st;
    for (size_t i = 0; i < n; i++)
        mf_sha256_update(&h, parts[i], lens[i]);
    mf_sha256_final(&h, out_hex);
    mf_sha256_free(&h);
    return MEMFIT_OK;
}

enum memfit_status mf_sha256_string(const char *text, char hex[MEMFIT_SHA256_HEX_LEN + 1])
{
    struct mf_sha256 h;
    enum memfit_status st = mf_sha256_init(&h);
    if (st != MEMFIT_OK)
        return st;
    mf_sha256_update(&h, text, strlen(text));
    mf_sha256_final(&h, hex);
    mf_sha256_free(&h);
    return MEMFIT_OK;
}

bool mf_cancelled(const int *cancel)
{
    return cancel && __atomic_load_n(cancel, __ATOMIC_RELAXED) != 0;
}

enum memfit_status mf_sha256_fd(struct mf_sha256 *h, int fd, uint64_t len, const char *path,
                                const int *cancel)
{
    /* On the heap, not thread-local: a _Thread_local buffer is part of every
     * thread's TLS block, which glibc zeroes at each thread's start, so it
     * cost 64 KiB of resident memory per server connection thread. */
    enum { BUF_BYTES = 1 << 16 };
    unsigned char *buf = memfit_malloc_in(MEMFIT_ALLOC_STORE, BUF_BYTES);
    if (!buf)
        return MEMFIT_E_NOMEM;
    enum memfit_status st = MEMFIT_OK;
    uint64_t off = 0;
    while (off < len && st == MEMFIT_OK) {
        if (mf_cancelled(cancel)) {
            st = memfit_fail(MEMFIT_E_CANCELLED, "%s: cancelled while hashing", path);
            break;
        }
        size_t want = len - off < BUF_BYTES ? (size_t)(len - off) : BUF_BYTES;
        ssize_t n = pread(fd, buf, want, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            st = memfit_fail(MEMFIT_E_IO, "%s: read: %s", path, strerror(errno));
        else if (n == 0)
            st = memfit_fail(MEMFIT_E_IO, "%s: file ends at %llu bytes, expected %llu", path,
                             (unsigned long long)off, (unsigned long long)len);
        else {
            mf_sha256_update(h, buf, (size_t)n);
            off += (uint64_t)n;
        }
    }
    memfit_free(buf);
    return st;
}

/* ---- Directories and atomic writes -------------------------------------- */

enum memfit_status mf_mkdirs(const char *path)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof(buf))
        return memfit_fail(MEMFIT_E_RANGE, "directory path of %zu bytes (limit %zu)", n,
                           sizeof(buf) - 1);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char saved = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return memfit_fail(errno == EACCES ? MEMFIT_E_PERMISSION : MEMFIT_E_IO,
                               "%s: cannot create directory: %s", buf, strerror(errno));
        buf[i] = saved;
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return memfit_fail(MEMFIT_E_IO, "%s: not a directory", path);
    return MEMFIT_OK;
}

enum memfit_status mf_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return memfit_fail(MEMFIT_E_IO, "%s: %s", dir, strerror(errno));
    int rc = fsync(fd);
    int err = errno;
    close(fd);
    if (rc != 0 && err != EINVAL)
        return memfit_fail(MEMFIT_E_IO, "%s: fsync: %s", dir, strerror(err));
    return MEMFIT_OK;
}

char *mf_temp_path(const char *dir, const char *tag)
{
    static _Atomic unsigned long counter;
    unsigned long n = atomic_fetch_add(&counter, 1);
    return memfit_asprintf("%s/.tmp.%ld.%lu.%s", dir, (long)getpid(), n, tag);
}

static enum memfit_status write_all(int fd, const void *data, size_t len, const char *path)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return memfit_fail(errno == ENOSPC || errno == EDQUOT ? MEMFIT_E_NOSPACE : MEMFIT_E_IO,
                               "%s: write: %s", path, strerror(errno));
        p += n;
        len -= (size_t)n;
    }
    return MEMFIT_OK;
}

enum memfit_status mf_write_atomic(const char *dir, const char *name, const void *data, size_t len)
{
    char *tmp = mf_temp_path(dir, "w");
    char *dest = memfit_asprintf("%s/%s", dir, name);
    if (!tmp || !dest) {
        memfit_free(tmp);
        memfit_free(dest);
        return MEMFIT_E_NOMEM;
    }
    enum memfit_status st = MEMFIT_OK;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        st = memfit_fail(MEMFIT_E_IO, "%s: %s", tmp, strerror(errno));
        goto done;
    }
    st = write_all(fd, data, len, tmp);
    if (st == MEMFIT_OK && fsync(fd) != 0)
        st = memfit_fail(MEMFIT_E_IO, "%s: fsync: %s", tmp, strerror(errno));
    if (close(fd) != 0 && st == MEMFIT_OK)
        st = memfit_fail(MEMFIT_E_IO, "%s: close: %s", tmp, strerror(errno));
    if (st == MEMFIT_OK && rename(tmp, dest) != 0)
        st = memfit_fail(MEMFIT_E_IO, "%s: rename: %s", dest, strerror(errno));
    if (st != MEMFIT_OK)
        unlink(tmp);
    else
        st = mf_fsync_dir(dir);
done:
    memfit_free(tmp);
    memfit_free(dest);
    return st;
}

enum memfit_status mf_read_small_file(const char *path, size_t max_bytes, char **out,
                                      size_t *out_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return memfit_fail(errno == ENOENT ? MEMFIT_E_NOT_FOUND : MEMFIT_E_IO, "%s: %s", path,
                           strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int err = errno;
        close(fd);
        return memfit_fail(MEMFIT_E_IO, "%s: %s", path, strerror(err));
    }
    if (!S_ISREG(sb.st_mode) || (uint64_t)sb.st_size > max_bytes) {
        close(fd);
        return memfit_fail(MEMFIT_E_RANGE, "%s: %lld bytes, limit %zu (or not a regular file)",
                           path, (long long)sb.st_size, max_bytes);
    }
    size_t size = (size_t)sb.st_size;
    char *buf = memfit_malloc_in(MEMFIT_ALLOC_STORE, size + 1);
    if (!buf) {
        close(fd);
        return MEMFIT_E_NOMEM;
    }
    size_t got = 0;
    while (got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int err = errno;
            close(fd);
            memfit_free(buf);
            return memfit_fail(MEMFIT_E_IO, "%s: read: %s", path, strerror(err));
        }
        if (n == 0)
            break; /* shrank meanwhile: take what is there */
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    *out = buf;
    if (out_len)
        *out_len = got;
    return MEMFIT_OK;
}

/* ---- Processes ---------------------------------------------------------- */

static char host_name[256];
static pthread_once_t host_once = PTHREAD_ONCE_INIT;

static void read_hostname(void)
{
    if (gethostname(host_name, sizeof(host_name)) != 0 || !host_name[0])
        snprintf(host_name, sizeof(host_name), "localhost");
    host_name[sizeof(host_name) - 1] = '\0';
    /* The name goes into file names and single-line records. */
    for (char *p = host_name; *p; p++)
        if (*p == '/' || (unsigned char)*p < 0x21 || *p == 0x7f)
            *p = '_';
}

const char *mf_hostname(void)
{
    pthread_once(&host_once, read_hostname);
    return host_name;
}

uint64_t mf_process_start_ticks(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    /* The command name may hold spaces and ')': fields start after the last ')'. */
    char *p = strrchr(buf, ')');
    if (!p)
        return 0;
    p++;
    /* Field 3 (state) is the first after ')'; field 22 is the start time. */
    for (int field = 3; field < 22; field++) {
        p = strchr(p + 1, ' ');
        if (!p)
            return 0;
    }
    unsigned long long v = strtoull(p + 1, NULL, 10);
    return (uint64_t)v;
}

bool mf_pid_is_dead(pid_t pid)
{
    if (pid <= 0)
        return true;
    return kill(pid, 0) != 0 && errno == ESRCH;
}

bool mf_sleep_cancellable(unsigned ms, const int *cancel)
{
    while (ms > 0) {
        if (mf_cancelled(cancel))
            return false;
        unsigned step = ms < 50 ? ms : 50;
        struct timespec ts = {0, (long)step * 1000000L};
        nanosleep(&ts, NULL);
        ms -= step;
    }
    return !mf_cancelled(cancel);
}

enum memfit_status mf_read_token_file(const char *path, const char *what, char **out)
{
    char *text = NULL;
    size_t len = 0;
    enum memfit_status st = mf_read_small_file(path, 64 * 1024, &text, &len);
    if (st != MEMFIT_OK) {
        /* The message names the path already; say what the file was for. */
        if (st != MEMFIT_E_NOMEM)
            st = memfit_fail(st, "%s: %s", what, memfit_last_error());
        return st;
    }
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' ' ||
                       text[len - 1] == '\t'))
        len--;
    text[len] = '\0';
    if (len == 0)
        st = memfit_fail(MEMFIT_E_FORMAT, "%s: %s is empty", what, path);
    else if (!mf_token_is_clean(text, len))
        st = memfit_fail(MEMFIT_E_FORMAT, "%s: %s: control character or NUL byte in the token",
                         what, path);
    if (st != MEMFIT_OK) {
        explicit_bzero(text, len);
        memfit_free(text);
        return st;
    }
    *out = text;
    return MEMFIT_OK;
}

bool mf_token_is_clean(const char *token, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)token[i];
        if (c < 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

/*
 * The SHA-256 of a local file, for callers above the store that key
 * derived files (the engines' `quantize` copies) by their source's content.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "store/internal.h"

#define DIGEST_CHUNK (1u << 20)

enum memfit_status memfit_store_digest_file(const char *path,
                                            char out_hex[MEMFIT_SHA256_HEX_LEN + 1])
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return memfit_fail(errno == ENOENT ? MEMFIT_E_NOT_FOUND : MEMFIT_E_IO, "%s: %s", path,
                           strerror(errno));
    unsigned char *buf = memfit_malloc(DIGEST_CHUNK);
    struct mf_sha256 sha;
    enum memfit_status st = buf ? mf_sha256_init(&sha) : MEMFIT_E_NOMEM;
    if (st != MEMFIT_OK) {
        memfit_free(buf);
        close(fd);
        return st;
    }
    for (;;) {
        ssize_t n = read(fd, buf, DIGEST_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            st = memfit_fail(MEMFIT_E_IO, "%s: %s", path, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        mf_sha256_update(&sha, buf, (size_t)n);
    }
    /* The pages read stay cached only as long as the kernel likes. */
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
    memfit_free(buf);
    char hex[MEMFIT_SHA256_HEX_LEN + 1];
    mf_sha256_final(&sha, hex);
    mf_sha256_free(&sha);
    if (st == MEMFIT_OK)
        memcpy(out_hex, hex, sizeof(hex));
    return st;
}

/* Writing a small file atomically (core/file.h). */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/file.h"

enum memfit_status mf_io_status(int e)
{
    return e == ENOSPC || e == EDQUOT                ? MEMFIT_E_NOSPACE
           : e == EACCES || e == EPERM || e == EROFS ? MEMFIT_E_PERMISSION
           : e == ENOENT                             ? MEMFIT_E_NOT_FOUND
                                                     : MEMFIT_E_IO;
}

enum memfit_status mf_file_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
                                        bool sync)
{
    /* The temporary name extends the target's, so it lives in the same
     * folder and rename() replaces the target in one step. */
    char *tmp = memfit_asprintf("%s.tmp.XXXXXX", path);
    if (!tmp)
        return MEMFIT_E_NOMEM;
    enum memfit_status st = MEMFIT_OK;
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int e = errno;
        st = memfit_fail(mf_io_status(e), "%s: cannot create a temporary file: %s", path,
                         strerror(e));
        memfit_free(tmp);
        return st;
    }
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, (const char *)data + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? errno : EIO;
            st = memfit_fail(mf_io_status(e), "%s: writing: %s", tmp, strerror(e));
            break;
        }
        done += (size_t)n;
    }
    if (st == MEMFIT_OK && (fchmod(fd, mode) != 0 || (sync && fsync(fd) != 0))) {
        int e = errno;
        st = memfit_fail(mf_io_status(e), "%s: %s", tmp, strerror(e));
    }
    if (close(fd) != 0 && st == MEMFIT_OK) {
        int e = errno;
        st = memfit_fail(mf_io_status(e), "%s: closing: %s", tmp, strerror(e));
    }
    if (st == MEMFIT_OK && rename(tmp, path) != 0) {
        int e = errno;
        st = memfit_fail(mf_io_status(e), "%s: cannot rename %s to it: %s", path, tmp, strerror(e));
    }
    if (st != MEMFIT_OK)
        unlink(tmp);
    memfit_free(tmp);
    return st;
}

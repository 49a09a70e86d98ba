/*
 * Writing a small file whole and atomically: a temporary file in the same
 * folder, renamed over the target, so a reader never sees half of one (the
 * SVG charts, the cleanup requests of docs/channel.md).
 */
#ifndef MF_CORE_FILE_H
#define MF_CORE_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "memfit/core.h"

/* The status for an errno of a file operation: E_NOSPACE, E_PERMISSION,
 * E_NOT_FOUND or E_IO. */
enum memfit_status mf_io_status(int err);

/*
 * Writes `len` bytes to `path` through "PATH.tmp.XXXXXX" renamed over it,
 * with permissions `mode`; `sync` fsyncs before the rename (for files that
 * must survive a crash). On failure the target is untouched, the temporary
 * file removed, and the error names the path.
 */
enum memfit_status mf_file_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
                                        bool sync);

#endif

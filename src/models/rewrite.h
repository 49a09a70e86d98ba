/*
 * Internal to the models layer: dropping the input pages a rewriter of model
 * files (quantize.c, rewrite.c) no longer needs, so the resident set does not
 * grow with the model size.
 */
#ifndef MEMFIT_MODELS_REWRITE_H
#define MEMFIT_MODELS_REWRITE_H

#include <stdint.h>

/*
 * Drops the input pages of [data, data + n) that the process no longer
 * needs: madvise(MADV_DONTNEED) on the whole pages inside the range (they
 * are clean file pages of a read-only mapping, so nothing is lost; RSS
 * falls) and, when fd >= 0, posix_fadvise(DONTNEED) on the same file range
 * starting at file_offset. file_offset UINT64_MAX (not a view of the file):
 * nothing. Best effort: failures are ignored.
 */
void mf_release_input(int fd, const void *data, uint64_t file_offset, uint64_t n);

#endif

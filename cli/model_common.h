/*
 * Pieces shared by the commands that rewrite model files (`convert`,
 * `quantize`): copying metadata into a writer and streaming a tensor's raw
 * bytes from the input mapping while releasing the pages already copied.
 */
#ifndef MEMFIT_CLI_MODEL_COMMON_H
#define MEMFIT_CLI_MODEL_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "memfit/memfit.h"

/*
 * Copies every metadata entry of `in` into `w`. safetensors holds strings
 * only: other entries (and any the writer refuses as E_UNSUPPORTED) are
 * counted in *skipped instead. Other writer failures are returned.
 */
enum memfit_status cli_copy_meta(memfit_tensors *in, memfit_writer *w, enum memfit_format fmt,
                                 size_t *skipped);

/*
 * When `in` is a DINOv2 model (memfit_vit_detect: tensor names only),
 * writes the keys that keep its behaviour in `w`: general.architecture =
 * "dinov2" and MEMFIT_VIT_META_INTERPOLATION = the source's default
 * interpolation, each only when `in` lacks it (a value already there was
 * copied by cli_copy_meta). *added counts the keys written. Not a DINOv2
 * model: nothing is written. Writer failures are returned.
 */
enum memfit_status cli_add_vit_meta(memfit_tensors *in, memfit_writer *w, size_t *added);

/*
 * Drops the input pages of [data, data + n) that the process no longer
 * needs: madvise(MADV_DONTNEED) on the whole pages inside the range (they
 * are clean file pages of a read-only mapping, so nothing is lost; RSS
 * falls) and, when fd >= 0, posix_fadvise(DONTNEED) on the same file range
 * starting at file_offset. Best effort: failures are ignored.
 */
void cli_release_input(int fd, const void *data, uint64_t file_offset, uint64_t n);

/*
 * Writes n_bytes at `data` as tensor `index` of `w` in 64 MiB chunks, and
 * releases each input chunk once written (cli_release_input with fd and
 * file_offset, the offset of `data` in the input file).
 */
enum memfit_status cli_write_raw(memfit_writer *w, size_t index, const void *data, uint64_t n_bytes,
                                 int fd, uint64_t file_offset);

#endif

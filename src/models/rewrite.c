/*
 * Shared by the rewriters of model files (memfit_quantize_file, `memfit
 * convert`): metadata copying (and the DINOv2 keys a converted file must
 * keep), and raw tensor streaming with release of the input pages already
 * written, so the resident set does not grow with the model size.
 */
#include <fcntl.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <unistd.h>

#include "memfit/models.h"
#include "models/rewrite.h"

enum memfit_status memfit_rewrite_copy_meta(const memfit_tensors *in, memfit_writer *w,
                                            enum memfit_format fmt, size_t *skipped)
{
    for (size_t i = 0; i < memfit_tensors_meta_count(in); i++) {
        const char *key;
        struct memfit_meta_value v;
        memfit_tensors_meta_get(in, i, &key, &v);
        if (fmt == MEMFIT_FORMAT_SAFETENSORS && v.type != MEMFIT_META_STRING) {
            (*skipped)++;
            continue;
        }
        enum memfit_status st = memfit_writer_set_meta(w, key, &v);
        if (st == MEMFIT_E_UNSUPPORTED) {
            (*skipped)++;
            continue;
        }
        if (st != MEMFIT_OK)
            return st;
    }
    return MEMFIT_OK;
}

/* True when the set has the metadata key (any type). */
static bool has_meta(const memfit_tensors *in, const char *key)
{
    struct memfit_meta_value v;
    bool found = memfit_tensors_meta_find(in, key, &v) == MEMFIT_OK;
    memfit_clear_error();
    return found;
}

enum memfit_status memfit_rewrite_add_vit_meta(const memfit_tensors *in, memfit_writer *w,
                                               size_t *added)
{
    struct memfit_vit_info info;
    if (memfit_vit_detect(in, &info) != MEMFIT_OK) {
        memfit_clear_error();
        return MEMFIT_OK; /* not a DINOv2 model: nothing to keep */
    }
    enum memfit_status st;
    if (!has_meta(in, "general.architecture")) {
        if ((st = memfit_writer_set_meta_string(w, "general.architecture", "dinov2")) != MEMFIT_OK)
            return st;
        (*added)++;
    }
    if (!has_meta(in, MEMFIT_VIT_META_INTERPOLATION)) {
        st = memfit_writer_set_meta_string(w, MEMFIT_VIT_META_INTERPOLATION,
                                           memfit_vit_interpolation_name(info.interpolation));
        if (st != MEMFIT_OK)
            return st;
        (*added)++;
    }
    return MEMFIT_OK;
}

void mf_release_input(int fd, const void *data, uint64_t file_offset, uint64_t n)
{
    if (file_offset == UINT64_MAX)
        return; /* not a view of the file (an inflated record): dropping would zero it */
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t ps = page > 0 ? (uintptr_t)page : 4096;
    uintptr_t begin = ((uintptr_t)data + ps - 1) / ps * ps;
    uintptr_t end = ((uintptr_t)data + (uintptr_t)n) / ps * ps;
    if (end > begin)
        (void)madvise((void *)begin, end - begin, MADV_DONTNEED);
    if (fd >= 0 && n)
        (void)posix_fadvise(fd, (off_t)file_offset, (off_t)n, POSIX_FADV_DONTNEED);
}

enum memfit_status memfit_rewrite_write_raw(memfit_writer *w, size_t index, const void *data,
                                            uint64_t n_bytes, int fd, uint64_t file_offset)
{
    const uint64_t max_chunk = 64u << 20; /* bounds each write call and its page-cache burst */
    uint64_t off = 0;
    do {
        uint64_t chunk = n_bytes - off > max_chunk ? max_chunk : n_bytes - off;
        enum memfit_status st =
            memfit_writer_write_tensor(w, index, off, (const char *)data + off, (size_t)chunk);
        if (st != MEMFIT_OK)
            return st;
        mf_release_input(fd, (const char *)data + off, file_offset + off, chunk);
        off += chunk;
    } while (off < n_bytes);
    return MEMFIT_OK;
}

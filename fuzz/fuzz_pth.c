/* libFuzzer target for the pth reader (see fuzz_tensors.h), and for its
 * header-only path (memfit_tensors_open_pth_header): the input is taken
 * as a remote file and read as a caller reads it before a download, a
 * short tail first, then what each call asks for. */
#include "fuzz_tensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_header(const uint8_t *data, size_t size)
{
    size_t tail = size < 64 ? size : 64, rec_len = 0;
    uint64_t rec_off = 0;
    for (int round = 0; round < 6; round++) {
        memfit_tensors *set = NULL;
        struct memfit_pth_need need;
        if (memfit_tensors_open_pth_header(data + size - tail, tail,
                                           rec_len ? data + rec_off : NULL, rec_len, rec_off, size,
                                           "fuzz", &set, &need) != MEMFIT_OK)
            return;
        if (set) {
            for (size_t i = 0; i < memfit_tensors_count(set); i++) {
                struct memfit_tensor_info t;
                memfit_tensors_get(set, i, &t);
                if (t.data || t.file_offset + t.n_bytes > size)
                    __builtin_trap(); /* header-only: no data, offsets within the file */
            }
            memfit_tensors_close(set);
            return;
        }
        if (need.tail_bytes > tail) {
            if (need.tail_bytes > size)
                __builtin_trap();
            tail = (size_t)need.tail_bytes;
        } else {
            if (need.record_offset > size || need.record_bytes > size - need.record_offset ||
                !need.record_bytes)
                __builtin_trap();
            rec_off = need.record_offset;
            rec_len = (size_t)need.record_bytes;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_header(data, size);
    return fuzz_tensors(data, size, MEMFIT_FORMAT_PTH);
}

/* libFuzzer target for the pth reader (see fuzz_tensors.h). */
#include "fuzz_tensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_tensors(data, size, MEMFIT_FORMAT_PTH);
}

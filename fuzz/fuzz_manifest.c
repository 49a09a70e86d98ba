/* libFuzzer target for the manifest parser (memfit_manifest_parse_string):
 * any input must parse or fail with a message, never crash or leak. */
#include <stddef.h>
#include <stdint.h>

#include "memfit/manager.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct memfit_manifest *m = NULL;
    if (memfit_manifest_parse_string((const char *)data, size, "fuzz.yaml", &m) == MEMFIT_OK) {
        for (size_t i = 0; i < m->n_models; i++)
            (void)memfit_manifest_find(m, m->models[i].name);
        memfit_manifest_free(m);
    }
    return 0;
}

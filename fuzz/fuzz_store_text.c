/* libFuzzer target for the store's text parsers: source URIs (with
 * redaction and path checks), the AWS credentials INI (given the raw bytes,
 * NULs included) and ref files (the text up to the first NUL); nothing may
 * crash, leak or read out of bounds. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "store/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = memfit_strndup((const char *)data, size);
    if (!text)
        return 0;

    struct mf_source_env env = {NULL, NULL, NULL, false};
    struct mf_source src;
    if (mf_source_parse(text, &env, &src) == MEMFIT_OK)
        mf_source_clear(&src);
    memfit_free(mf_redact(text));
    (void)mf_path_is_safe(text);
    memfit_free(mf_ref_filename(text));

    char *value = NULL;
    if (mf_ini_get((const char *)data, size, "default", "aws_access_key_id", &value) == MEMFIT_OK)
        memfit_free(value);

    struct mf_ref ref;
    if (mf_ref_parse(text, "fuzz", &ref) == MEMFIT_OK)
        mf_ref_clear(&ref);
    memfit_free(text);
    return 0;
}

/*
 * The built-in model families. Adding a family: its folder under
 * src/engines/, its `extern` in family.h, and one line here.
 */
#include "engines/family.h"

const struct mf_family *const mf_families[] = {
    &mf_family_dinov2,
    &mf_family_qwen2,
    &mf_family_llama,
};

const size_t mf_n_families = sizeof(mf_families) / sizeof(mf_families[0]);

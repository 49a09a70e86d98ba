/*
 * The built-in model families. Adding a family is its folder under
 * src/engines/ (one `const struct mf_family`, see family.h) and its line
 * here; nothing in the manager, the server or the commands changes.
 */
#include "engines/family.h"

extern const struct mf_family mf_family_dinov2; /* dinov2/dinov2.c */
extern const struct mf_family mf_family_qwen2;  /* llm/llm.c */
extern const struct mf_family mf_family_llama;  /* llm/llm.c */
extern const struct mf_family mf_family_sam;    /* sam/sam.c */

const struct mf_family *const mf_families[] = {
    &mf_family_dinov2,
    &mf_family_qwen2,
    &mf_family_llama,
    &mf_family_sam,
};

const size_t mf_n_families = sizeof(mf_families) / sizeof(mf_families[0]);

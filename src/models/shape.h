/*
 * A tensor's shape as text for error messages ("[384, 3, 14, 14]"), shared
 * by the model loaders so every "shape X, expected Y" reads the same.
 */
#ifndef MF_MODELS_SHAPE_H
#define MF_MODELS_SHAPE_H

#include <stddef.h>

#include "memfit/format.h"

/* Writes "[d0, d1, ...]" (outermost first) into buf, truncated to size. */
void mf_shape_text(const struct memfit_tensor_info *t, char *buf, size_t size);

#endif

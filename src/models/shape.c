/*
 * A tensor's shape as text for the model loaders' error messages.
 */
#include <stdio.h>

#include "models/shape.h"

void mf_shape_text(const struct memfit_tensor_info *t, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (uint32_t i = 0; i < t->n_dims && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%lld", i ? ", " : "[",
                                 (long long)t->shape[i]);
    if (used < size)
        snprintf(buf + used, size - used, "]");
}

/*
 * Internal side of the DINOv2 engine: the loaded model (views into the
 * tensor set's mapping) shared by the loader (vit.c), the forward and its
 * memory plan (vit_forward.c) and the GGUF writer (vit_write.c).
 */
#ifndef MF_MODELS_VIT_H
#define MF_MODELS_VIT_H

#include "memfit/format.h"
#include "memfit/models.h"
#include "memfit/tensor.h"
#include "models/shape.h" /* struct vit_mat */

struct vit_layer {
    const float *norm1_w, *norm1_b, *norm2_w, *norm2_b, *ls1, *ls2; /* [D] */
    struct vit_mat qkv[3]; /* fused [3D, D] (n_qkv 1) or query, key, value [D, D] */
    const float *qkv_b[3]; /* [3D] or 3 x [D] */
    int n_qkv;
    struct vit_mat proj; /* [D, D] */
    const float *proj_b; /* [D] */
    struct vit_mat fc1;  /* [H, D], or SwiGLU w12 [2H, D] */
    const float *fc1_b;  /* [H] or [2H] */
    struct vit_mat fc2;  /* [D, H] (w3 for SwiGLU) */
    const float *fc2_b;  /* [D] */
};

struct memfit_vit {
    memfit_tensors *set;
    struct memfit_vit_info info;
    enum memfit_vit_interpolation default_interp;
    const char *default_source;
    memfit_threadpool *pool;
    struct vit_mat patch; /* [D, 3*P*P] (the conv weight [D, 3, P, P] flattened) */
    const float *patch_b; /* [D] */
    const float *cls;     /* [D] */
    const float *pos;     /* [1 + G*G, D] */
    const float *reg;     /* [R, D] or NULL */
    const float *norm_w, *norm_b;
    struct vit_layer *layers; /* [depth] */
    float *floats;            /* 1-D parameters converted to F32 (NULL when all were F32) */
};

struct vit_mat mf_vit_mat_rows(const struct vit_mat *mat, uint32_t r0, uint32_t n);

#endif

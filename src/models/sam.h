/*
 * Internal side of SAM: the loaded model (views into the tensor set's
 * mapping) shared by the loader (sam.c), the image encoder (sam_encoder.c),
 * the prompt encoder and mask decoder (sam_decoder.c) and the pre- and
 * post-processing (sam_image.c).
 *
 * Every matrix is a vit_mat: rows of the stored type, used in place by
 * memfit_matmul_rows. Convolution weights are matrices too: a [out, in,
 * kh, kw] kernel is `out` rows of in*kh*kw (memfit_im2col's column order);
 * a transposed convolution [in, out, 2, 2] is kept as stored and read as
 * floats (`f32` views, converted at open when not F32: they are small).
 * Vectors (biases, norms, embeddings) are F32, converted at open when
 * stored otherwise.
 */
#ifndef MF_MODELS_SAM_H
#define MF_MODELS_SAM_H

#include "models/vit.h"

/* A linear layer: y = W x + b (b may be NULL). */
struct sam_linear {
    struct vit_mat w;
    const float *b;
};

struct sam_enc_layer {
    const float *norm1_w, *norm1_b, *norm2_w, *norm2_b; /* [D] */
    struct sam_linear qkv;                              /* [3D, D] */
    struct sam_linear proj;                             /* [D, D] */
    const float *rel_h, *rel_w;                         /* [2S - 1, head_dim] (S: window or grid) */
    uint32_t rel_size;                                  /* S of this block's tables */
    bool global;
    struct sam_linear lin1; /* [4D, D] */
    struct sam_linear lin2; /* [D, 4D] */
};

/* The decoder's attention: q, k, v map dim -> inner (dim / downsample). */
struct sam_attention {
    struct sam_linear q, k, v, out; /* [inner, dim] x3, [dim, inner] */
    uint32_t inner;
};

struct sam_dec_layer {
    struct sam_attention self_attn; /* inner = dim */
    const float *norm1_w, *norm1_b;
    struct sam_attention cross_t2i; /* tokens to image, inner = dim / 2 */
    const float *norm2_w, *norm2_b;
    struct sam_linear mlp1, mlp2; /* [mlp, dim], [dim, mlp] (ReLU) */
    const float *norm3_w, *norm3_b;
    struct sam_attention cross_i2t; /* image to tokens */
    const float *norm4_w, *norm4_b;
};

struct sam_mlp3 {
    struct sam_linear l[3]; /* ReLU after the first two */
};

struct memfit_sam {
    memfit_tensors *set;
    struct memfit_sam_info info;
    memfit_threadpool *pool;

    /* Image encoder. */
    struct sam_linear patch; /* [D, 3 P P] */
    const float *pos;        /* [G * G, D] */
    struct sam_enc_layer *layers;
    struct vit_mat neck1; /* [C, D] (1x1 conv, no bias), C = prompt_dim */
    const float *neck_ln1_w, *neck_ln1_b;
    struct vit_mat neck2; /* [C, C * 9] (3x3 conv, pad 1, no bias) */
    const float *neck_ln2_w, *neck_ln2_b;
    float enc_eps; /* 1e-6 */

    /* Prompt encoder. */
    const float *pe_gauss;                /* [2, C / 2] */
    const float *point_emb[4];            /* [C] each: negative, positive, box corner 1, corner 2 */
    const float *not_a_point;             /* [C] */
    const float *no_mask;                 /* [C] */
    const float *md_conv1_w, *md_conv1_b; /* [4, 1, 2, 2], [4] */
    const float *md_ln1_w, *md_ln1_b;     /* [4] */
    const float *md_conv2_w, *md_conv2_b; /* [16, 4, 2, 2], [16] */
    const float *md_ln2_w, *md_ln2_b;     /* [16] */
    const float *md_conv3_w, *md_conv3_b; /* [C, 16, 1, 1], [C] */
    uint32_t mask_in_chans;               /* 16 */

    /* Mask decoder. */
    const float *iou_token;   /* [C] */
    const float *mask_tokens; /* [n_mask_tokens, C] */
    struct sam_dec_layer *dec_layers;
    struct sam_attention final_attn;
    const float *norm_final_w, *norm_final_b;
    float dec_eps;                  /* 1e-5 (norm_final: always 1e-5) */
    const float *up1_w, *up1_b;     /* ConvTranspose [C, C/4, 2, 2], [C/4] */
    const float *up_ln_w, *up_ln_b; /* [C/4] */
    const float *up2_w, *up2_b;     /* ConvTranspose [C/4, C/8, 2, 2], [C/8] */
    struct sam_mlp3 *hyper;         /* [n_mask_tokens]: C -> C -> C -> C/8 */
    struct sam_mlp3 iou_head;       /* C -> hidden -> hidden -> n_mask_tokens */

    float *floats; /* parameters converted to F32 at open (NULL when none) */
};

/*
 * The loader's primitives, shared by sam.c (the encoder) and sam_decoder.c
 * (the prompt encoder and the decoder). Names are always the original
 * checkpoint's ("mask_decoder.transformer.layers.0.norm1.weight"); with a
 * transformers file the loader applies the converter's renames. A missing
 * tensor or a wrong shape is E_FORMAT naming the file, the tensor and the
 * shapes. Both count the tensor's bytes into info.weight_bytes.
 */
struct sam_loader;

/* A vector of n floats (any shape with n elements): in place when stored
 * as aligned F32, else converted into the model's float buffer. */
enum memfit_status mf_sam_vec(struct sam_loader *ld, const char *name, uint64_t n,
                              const float **out);

/* A matrix of `rows` rows of `cols` elements (any shape [rows, ...] with
 * rows * cols elements), usable by memfit_matmul_rows in place. */
enum memfit_status mf_sam_mat(struct sam_loader *ld, const char *name, uint64_t rows, uint64_t cols,
                              struct vit_mat *out);

/* Whether the tensor exists (under its transformers name for such a file). */
bool mf_sam_has(struct sam_loader *ld, const char *name);

/* sam_decoder.c: loads the prompt encoder and the mask decoder into m,
 * checking every shape against info.prompt_dim, n_mask_tokens, decoder_mlp
 * and decoder_depth (set by the loader from the shapes before the call). */
enum memfit_status mf_sam_load_decoder(struct sam_loader *ld, struct memfit_sam *m);

/* sam_image.c: memfit_sam_preprocess with the caller's scratch (at least
 * mf_sam_preprocess_scratch_bytes, any alignment; E_MISUSE when short), so a
 * planned caller allocates nothing. The bytes are 0 for a size preprocess
 * refuses (it says why). */
size_t mf_sam_preprocess_scratch_bytes(uint32_t width, uint32_t height, uint32_t image_size);
enum memfit_status mf_sam_preprocess_into(const struct memfit_image *img, uint32_t image_size,
                                          float *out, void *scratch, size_t scratch_bytes);

#endif

/*
 * memfit models: the model families (ViT/DINOv2 now; LLMs and SAM later),
 * their input preprocessing, and the memory plan of each forward pass.
 */
#ifndef MEMFIT_MODELS_H
#define MEMFIT_MODELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memfit/core.h"
#include "memfit/format.h" /* memfit_vit_detect takes a tensor set */
#include "memfit/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ==== Images (src/models/image*.c) ======================================= */

/* An 8-bit RGB image, rows top to bottom, pixels R, G, B interleaved. */
struct memfit_image {
    uint32_t width;
    uint32_t height;
    uint8_t *rgb; /* width * height * 3 bytes, owned by the image */
};

/* Limits applied while decoding untrusted input, before any large allocation
 * (the declared size is checked as soon as the header is read). */
struct memfit_image_limits {
    uint64_t max_pixels;    /* default 50e6 (e.g. 7071 x 7071) */
    uint32_t max_dimension; /* default 20000 */
};

MEMFIT_API struct memfit_image_limits memfit_image_limits_default(void);

/*
 * Decodes a JPEG (baseline, progressive, grayscale, CMYK/YCCK) or PNG (any
 * bit depth, palette, grayscale, alpha dropped) from memory into RGB.
 * Detected by content. E_FORMAT for corrupt/truncated/unknown data, E_RANGE
 * when the declared size breaks the limits (decompression bombs) — both
 * checked before the pixel buffer is allocated. `name` is used in messages.
 *
 * The pixels are those of PIL's Image.open(data).convert("RGB"): alpha is
 * dropped, not composited over a background (a transparent pixel keeps its
 * stored colour); palettes and 1/2/4-bit samples are expanded; 16-bit
 * samples keep their high byte (PIL clips 16-bit grayscale instead: the one
 * difference); CMYK/YCCK becomes RGB with PIL's formula; gamma, ICC profiles
 * and EXIF orientation are ignored, as PIL's open() ignores them. A 0x0 image
 * is E_FORMAT; a JPEG with more than 256 progressive scans is E_FORMAT.
 * `limits` NULL means memfit_image_limits_default(); `name` NULL, "image".
 * `out` is written only on success (free it with memfit_image_free). The
 * pixels are allocated with memfit_malloc; the libraries' own working memory
 * is not counted. Thread-safe (no shared state).
 */
MEMFIT_API enum memfit_status memfit_image_decode(const void *data, size_t size, const char *name,
                                                  const struct memfit_image_limits *limits,
                                                  struct memfit_image *out);

/* Reads and decodes a file (E_IO / E_NOT_FOUND naming the path; the path is
 * the name in messages). */
MEMFIT_API enum memfit_status memfit_image_load(const char *path,
                                                const struct memfit_image_limits *limits,
                                                struct memfit_image *out);

/* Frees the pixels; accepts an image already freed or zeroed. */
MEMFIT_API void memfit_image_free(struct memfit_image *img);

/* How an image becomes the model's input tensor. */
enum memfit_image_resize {
    /* The reference evaluation transform: shorter side to `resize` (256)
     * with bicubic resampling as PIL does it, then a centre crop of `crop`
     * (224). */
    MEMFIT_IMAGE_RESIZE_CROP = 0,
    /* No crop: resize (bicubic, PIL-style) to the nearest multiple of
     * `multiple` (14) of each side, keeping the size when it already is.
     * Halves round up (21 -> 28), and a side is at least `multiple`. */
    MEMFIT_IMAGE_RESIZE_MULTIPLE = 1,
};

struct memfit_image_transform {
    enum memfit_image_resize mode;
    uint32_t resize;   /* shorter side, for RESIZE_CROP (default 256) */
    uint32_t crop;     /* square crop side, for RESIZE_CROP (default 224) */
    uint32_t multiple; /* for RESIZE_MULTIPLE (default 14) */
    float mean[3];     /* default ImageNet (0.485, 0.456, 0.406) */
    float std[3];      /* default ImageNet (0.229, 0.224, 0.225) */
};

MEMFIT_API struct memfit_image_transform memfit_image_transform_default(void);

/*
 * The output size the transform gives for an input of width x height.
 * E_RANGE for an empty input, crop > resize, resize or multiple outside
 * 1..65536, a resized side beyond 2^24, a non-finite mean/std or a zero
 * std; E_MISUSE for an unknown mode. Out-parameters only written on success.
 */
MEMFIT_API enum memfit_status memfit_image_transform_size(const struct memfit_image_transform *t,
                                                          uint32_t width, uint32_t height,
                                                          uint32_t *out_width,
                                                          uint32_t *out_height);

/*
 * Applies the transform: resize, crop, scale to [0,1], normalise, and writes
 * planar float CHW (3 x out_height x out_width) into `out`, which holds
 * `out_floats` floats (E_RANGE if too small). `scratch`/`scratch_bytes` may
 * be NULL/0 to let it allocate its intermediate rows itself; otherwise
 * memfit_image_transform_scratch_bytes() tells how much it needs, so a
 * planned caller allocates nothing here (a smaller scratch is E_RANGE; any
 * alignment is fine).
 *
 * The values are those of torchvision's Resize/CenterCrop/ToTensor/
 * Normalize on a PIL image, bit for bit: PIL's bicubic resampling (a = -0.5,
 * support scaled when downscaling, 8-bit fixed point per pass), the crop at
 * round((size - crop) / 2) half to even, (v / 255 - mean) / std in float.
 * Only the cropped window is resampled. Thread-safe; `img` is not modified.
 */
MEMFIT_API enum memfit_status memfit_image_transform_apply(const struct memfit_image_transform *t,
                                                           const struct memfit_image *img,
                                                           float *out, size_t out_floats,
                                                           void *scratch, size_t scratch_bytes);

/* Scratch bytes memfit_image_transform_apply() needs for a width x height
 * input (rows, coefficient tables: 0.8 MB for 1920x1080 to the 224 crop);
 * 0 when the transform or the size is invalid (transform_size says why). */
MEMFIT_API size_t memfit_image_transform_scratch_bytes(const struct memfit_image_transform *t,
                                                       uint32_t width, uint32_t height);

/* ==== end of images section ============================================ */

/*
 * Spacer: sections are edited separately; keep this comment between them so
 * their changes never touch the same lines.
 */

/* ==== Vision transformers: DINOv2 (src/models/vit*.c) =================== */

/*
 * DINOv2 (ViT-S/B/L/g with patch 14, with or without registers) run on the
 * CPU from weights used in place: the tensor set's mapping is read as it is,
 * in any type the tensor layer reads (F32, F16, BF16, Q8_0, Q4_0, K-quants),
 * never copied or dequantized whole. Only the 1-D parameters (biases, norms,
 * layer scales, CLS/position/register tokens) stored in another type than
 * F32 are converted once to floats at open (about 1 % of the model).
 *
 * The forward takes one caller-provided workspace whose exact size
 * memfit_vit_plan() computes for (batch, height, width) and allocates
 * nothing. Attention is tiled with an online softmax (never N x N), so the
 * workspace grows linearly with the number of tokens.
 *
 * A model handle is not thread-safe: one forward at a time (it uses its own
 * thread pool).
 */
typedef struct memfit_vit memfit_vit;

/* How the 37x37 position grid is resized to the image's patch grid. */
enum memfit_vit_interpolation {
    /* Open: the GGUF key MEMFIT_VIT_META_INTERPOLATION, else the source's
     * default: REG with registers, HF for HF tensor names, ORIG otherwise. */
    MEMFIT_VIT_INTERP_AUTO = 0,
    /* Original non-register models: bicubic A=-0.75 with scale_factor
     * (n+0.1)/37, no antialias (also transformers <= 4.44). */
    MEMFIT_VIT_INTERP_ORIG = 1,
    /* Register models (orig and HF): antialiased bicubic a=-0.5 to the size. */
    MEMFIT_VIT_INTERP_REG = 2,
    /* transformers' Dinov2Model now: bicubic A=-0.75 to the size, no offset. */
    MEMFIT_VIT_INTERP_HF = 3,
};

/* GGUF metadata key (string "orig", "reg" or "hf") read at open. */
#define MEMFIT_VIT_META_INTERPOLATION "dinov2.interpolation"

/* "auto", "orig", "reg", "hf"; never NULL. */
MEMFIT_API const char *memfit_vit_interpolation_name(enum memfit_vit_interpolation mode);

/* Parses the names above (case-insensitive); E_RANGE quoting the text otherwise. */
MEMFIT_API enum memfit_status memfit_vit_interpolation_parse(const char *text,
                                                             enum memfit_vit_interpolation *out);

/* What a forward returns per image. */
enum memfit_vit_output {
    MEMFIT_VIT_OUTPUT_CLS = 0,     /* CLS token after the final norm: D floats */
    MEMFIT_VIT_OUTPUT_MEAN = 1,    /* mean of the patch tokens: D floats */
    MEMFIT_VIT_OUTPUT_BOTH = 2,    /* CLS then mean: 2D floats (HF's classifier input) */
    MEMFIT_VIT_OUTPUT_PATCHES = 3, /* every patch token, row-major (h, w): N x D floats */
};

struct memfit_vit_options {
    unsigned n_threads;                          /* 0 (default): memfit_cpu_count() */
    enum memfit_vit_interpolation interpolation; /* default AUTO */
    /* HF config.json to read the hyperparameters from; NULL (default): the
     * config.json beside the model file when there is one. */
    const char *config_path;
};

MEMFIT_API void memfit_vit_options_default(struct memfit_vit_options *opts);

struct memfit_vit_info {
    uint32_t dim;         /* D */
    uint32_t depth;       /* blocks */
    uint32_t heads;       /* D / head_dim */
    uint32_t head_dim;    /* 64 */
    uint32_t mlp_hidden;  /* fc1 rows, or the SwiGLU hidden size h (w12 has 2h rows) */
    uint32_t patch_size;  /* 14 */
    uint32_t pos_grid;    /* 37 (img_size 518) */
    uint32_t n_registers; /* 0 or 4 */
    bool swiglu;          /* giant-style w12/w3 (weights_in/weights_out) MLP */
    bool hf_names;        /* transformers' names (embeddings.*, encoder.layer.*) */
    bool fused_qkv;       /* one qkv tensor (orig) rather than query/key/value (HF) */
    bool from_config;     /* hyperparameters read from config.json (else inferred from shapes) */
    float layer_norm_eps; /* 1e-6 */
    enum memfit_vit_interpolation interpolation; /* in use (never AUTO) */
    const char *interpolation_source;            /* "option", "metadata" or "default" */
    enum memfit_type weight_type;                /* type of block 0's attention weights */
    uint64_t weight_bytes;                       /* bytes of the tensors the model uses */
    uint64_t converted_bytes;                    /* 1-D parameters converted to F32 at open */
    unsigned n_threads;
};

/*
 * Opens a DINOv2 model from a GGUF, safetensors or .pth file (original or
 * transformers tensor names, as written by memfit convert/quantize too).
 * The family and variant come from the tensors; the hyperparameters from a
 * config.json when there is one, else from the shapes (info.from_config).
 * Failures: those of memfit_tensors_open; E_FORMAT naming the tensor for a
 * missing tensor, a wrong shape, a type without a kernel, or a file that is
 * not a DINOv2 model (naming what it looks like); E_NOMEM. Close the model
 * with memfit_vit_close().
 */
MEMFIT_API enum memfit_status
memfit_vit_open(const char *path, const struct memfit_vit_options *opts, memfit_vit **out);

/*
 * Recognises a DINOv2 model in an open tensor set from its tensor names and
 * shapes alone (no weight is read, nothing is converted or allocated). Fills
 * the fields memfit_vit_open would give for the variant (dim, depth, heads,
 * head_dim, mlp_hidden, patch_size, pos_grid, n_registers, swiglu, hf_names,
 * fused_qkv, layer_norm_eps) and the interpolation it would use by default
 * (interpolation_source "metadata" when the set carries
 * MEMFIT_VIT_META_INTERPOLATION, else "default"); the other fields are zero
 * (no config.json is read, no weight checked). Used by tools that rewrite a
 * model and must keep its default. E_FORMAT (as memfit_vit_open) when the
 * set is not a DINOv2 model; `out` is written only on success. Thread-safe
 * (the set is only read).
 */
MEMFIT_API enum memfit_status memfit_vit_detect(const memfit_tensors *set,
                                                struct memfit_vit_info *out);

/* Closes the file and stops the threads. NULL is a no-op. */
MEMFIT_API void memfit_vit_close(memfit_vit *model);

/* The model's facts (strings owned by the model). */
MEMFIT_API void memfit_vit_get_info(const memfit_vit *model, struct memfit_vit_info *out);

/* Changes the interpolation of later forwards (AUTO: back to the open-time choice). */
MEMFIT_API enum memfit_status memfit_vit_set_interpolation(memfit_vit *model,
                                                           enum memfit_vit_interpolation mode);

/*
 * The exact workspace in bytes a forward of `batch` images of height x width
 * needs (the liveness plan of its activations, the per-thread attention tiles
 * and quantized activation rows included). E_RANGE when a side is not a
 * positive multiple of the patch size, batch is 0, or the size overflows.
 */
MEMFIT_API enum memfit_status memfit_vit_plan(const memfit_vit *model, uint32_t batch,
                                              uint32_t height, uint32_t width, size_t *out_bytes);

/* Floats one image's output takes (E_RANGE as memfit_vit_plan). */
MEMFIT_API enum memfit_status memfit_vit_output_floats(const memfit_vit *model,
                                                       enum memfit_vit_output output,
                                                       uint32_t height, uint32_t width,
                                                       size_t *out_floats);

/*
 * Runs the model on `batch` preprocessed images: `pixels` holds them one
 * after the other, each planar float CHW (3 x height x width, normalised).
 * `work` is the workspace (work_bytes >= memfit_vit_plan(), 64-byte aligned:
 * a mapping from mf_map_anon or the budget). Writes batch x
 * output_floats() floats to `out` (out_floats must be large enough); with
 * `normalize` each output vector (each token for PATCHES) is scaled to unit
 * L2 norm. Allocates nothing. E_RANGE (sizes, batch 0), E_MISUSE (workspace
 * or output too small or misaligned).
 */
MEMFIT_API enum memfit_status memfit_vit_forward(memfit_vit *model, const float *pixels,
                                                 uint32_t batch, uint32_t height, uint32_t width,
                                                 enum memfit_vit_output output, bool normalize,
                                                 void *work, size_t work_bytes, float *out,
                                                 size_t out_floats);

/*
 * Writes the model as a GGUF at `dst_path`: the 2-D weights (and the patch
 * projection) in `type` where their rows fit its block (F16 otherwise), the
 * 1-D parameters in F32, names kept, and the metadata
 * general.architecture = "dinov2" and MEMFIT_VIT_META_INTERPOLATION = the
 * model's interpolation (so a converted file keeps its source's default).
 * `type` is F32, F16, BF16 or a quantizer type (Q8_0, Q4_0, Q4_K, Q6_K).
 * Failures: E_UNSUPPORTED (type), those of the writer, E_NOMEM.
 */
MEMFIT_API enum memfit_status memfit_vit_write_gguf(const memfit_vit *model, const char *dst_path,
                                                    enum memfit_type type);

/* ==== end of ViT section ================================================ */

#ifdef __cplusplus
}
#endif

#endif

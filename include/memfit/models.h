/*
 * memfit models: the model families (ViT/DINOv2, Qwen2/LLaMA LLMs; SAM later),
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
    /* Wall-clock budget of one decode in milliseconds; a decode that runs
     * past it stops with E_TIMEOUT ("... the decode took more than N ms").
     * Checked on a monotonic clock at each JPEG progress call (an iMCU row
     * or scanline) and each PNG row. Default 0: no limit (the CLI); the
     * server passes its max_decode_ms (2000). */
    uint32_t max_decode_ms;
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
 * is E_FORMAT; a JPEG with more than 256 progressive scans is E_FORMAT; a
 * progressive JPEG whose coefficient buffer (libjpeg holds the whole image's
 * DCT coefficients, 2 bytes each) would take more than 6 bytes per pixel of
 * max_pixels is E_RANGE; a decode past limits->max_decode_ms is E_TIMEOUT.
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

/* memfit_image_encode_png() is in memfit/core.h (the monitor's charts use it too). */

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

/*
 * The tensor bytes memfit_vit_write_gguf would write for the model in `set`
 * (a header-only set is enough: the same rule per tensor, from names and
 * shapes). E_UNSUPPORTED for a type it does not write; E_RANGE on overflow.
 */
MEMFIT_API enum memfit_status memfit_vit_write_bytes(const memfit_tensors *set,
                                                     enum memfit_type type, uint64_t *out_bytes);

/* ==== end of ViT section ================================================ */

/* ==== Tokenizers (src/models/tokenizer*.c) ================================ */
/*
 * The vocabularies of GGUF LLMs, read from the `tokenizer.ggml.*` metadata:
 * byte-level BPE (`tokenizer.ggml.model = "gpt2"`, the pre-tokenizer regex
 * chosen by `tokenizer.ggml.pre`: qwen2, llama3/llama-bpe, gpt2, ...; Unicode
 * classes through PCRE2) and SentencePiece-style BPE (`"llama"`, scores,
 * byte fallback <0xXX>, the LLaMA 2 vocabulary). Special and control tokens
 * are matched in the text before the pre-tokenizer when asked.
 *
 * A tokenizer copies what it needs from the metadata at creation (the tensor
 * set may be closed afterwards) and is immutable: every function below may be
 * called from many threads at once.
 */
typedef struct memfit_tokenizer memfit_tokenizer;

enum memfit_tokenizer_kind {
    MEMFIT_TOKENIZER_BPE = 0, /* byte-level BPE ("gpt2") */
    MEMFIT_TOKENIZER_SPM = 1, /* SentencePiece BPE ("llama") */
};

/* Token ids the metadata names (-1: none) and what encoding adds. */
struct memfit_tokenizer_info {
    enum memfit_tokenizer_kind kind;
    const char *model; /* tokenizer.ggml.model, owned by the tokenizer */
    const char *pre;   /* tokenizer.ggml.pre in use ("default" when absent) */
    uint32_t n_vocab;
    int32_t bos, eos, eot, pad, unk;
    bool add_bos; /* encode with add_special puts bos first */
    bool add_eos; /* ... and eos last */
};

/*
 * Builds the tokenizer of a GGUF tensor set. E_FORMAT naming the key for
 * missing or malformed metadata (no tokens, merges that name unknown tokens,
 * an id out of range), E_UNSUPPORTED naming tokenizer.ggml.model or .pre for
 * one memfit does not implement, E_NOMEM. Free with memfit_tokenizer_free().
 */
MEMFIT_API enum memfit_status memfit_tokenizer_from_gguf(const memfit_tensors *set,
                                                         memfit_tokenizer **out);

/* NULL is a no-op. */
MEMFIT_API void memfit_tokenizer_free(memfit_tokenizer *tok);

MEMFIT_API void memfit_tokenizer_get_info(const memfit_tokenizer *tok,
                                          struct memfit_tokenizer_info *out);

/*
 * Token ids of `len` bytes of UTF-8 text. add_special: the BOS/EOS the
 * metadata asks for; parse_special: text like "<|im_start|>" becomes its
 * special token (otherwise it is ordinary text). *out_ids is allocated with
 * memfit_malloc (free with memfit_free; NULL when *out_n is 0). E_FORMAT for
 * text that is not valid UTF-8 (the message names the byte offset), E_NOMEM.
 * No Unicode normalization is applied (see docs/tokenizers.md).
 */
MEMFIT_API enum memfit_status memfit_tokenizer_encode(const memfit_tokenizer *tok, const char *text,
                                                      size_t len, bool add_special,
                                                      bool parse_special, int32_t **out_ids,
                                                      size_t *out_n);

/*
 * The bytes token `id` stands for in decoded text (byte-level BPE: the
 * Unicode-to-byte map undone; SPM: U+2581 as a space, <0xXX> as the byte).
 * Control tokens (BOS, EOS, ...) give their text only with `special`,
 * otherwise 0 bytes. A token may hold part of a UTF-8 character. The bytes
 * stay owned by the tokenizer. E_RANGE for an id outside the vocabulary.
 */
MEMFIT_API enum memfit_status memfit_tokenizer_piece(const memfit_tokenizer *tok, int32_t id,
                                                     bool special, const char **bytes, size_t *len);

/*
 * Text of n tokens (NUL-terminated, allocated with memfit_malloc; *out_len
 * without the NUL), as HF decode with skip_special_tokens = !special: SPM
 * drops one leading space of the text (the one its prefix space made).
 * E_RANGE for an id outside the vocabulary, E_NOMEM.
 */
MEMFIT_API enum memfit_status memfit_tokenizer_decode(const memfit_tokenizer *tok,
                                                      const int32_t *ids, size_t n, bool special,
                                                      char **out, size_t *out_len);

/* True for end-of-generation tokens: eos, eot, and the control tokens the
 * vocabulary marks as such ("<|im_end|>", "<|eot_id|>", "<|endoftext|>"). */
MEMFIT_API bool memfit_tokenizer_is_eog(const memfit_tokenizer *tok, int32_t id);

/* tokenizer.chat_template as stored, or NULL. Owned by the tokenizer. */
MEMFIT_API const char *memfit_tokenizer_chat_template(const memfit_tokenizer *tok);

/*
 * Writes a Hugging Face tokenizer (tokenizer.json, and tokenizer_config.json
 * when not NULL: BOS/EOS, add_bos_token, chat_template) as the
 * tokenizer.ggml.* metadata of a GGUF being written, so a model assembled
 * from safetensors carries its tokenizer. E_FORMAT naming the JSON field,
 * E_UNSUPPORTED for a tokenizer model or pre-tokenizer memfit cannot run,
 * those of the writer.
 */
MEMFIT_API enum memfit_status memfit_tokenizer_json_to_gguf(const char *tokenizer_json,
                                                            const char *tokenizer_config_json,
                                                            memfit_writer *w);

/* ==== Chat templates (src/models/chat.c) =================================== */

enum memfit_chat_template {
    MEMFIT_CHAT_CHATML = 0, /* <|im_start|>role\n...<|im_end|>\n (Qwen); the fallback */
    MEMFIT_CHAT_LLAMA2 = 1, /* <s>[INST] <<SYS>>...<</SYS>> ... [/INST] ... </s> */
    MEMFIT_CHAT_LLAMA3 = 2, /* <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|> */
    /* ChatML as Qwen2.5 writes it: its own default system message, tools in
     * <tools></tools>, calls in <tool_call></tool_call>, results in
     * <tool_response></tool_response>. */
    MEMFIT_CHAT_QWEN25 = 3,
    /* LLaMA 3.1: a system block with "Environment: ipython" and the dates,
     * tools in the first user message, a call as {"name", "parameters"}
     * JSON, results in an ipython turn. */
    MEMFIT_CHAT_LLAMA31 = 4,
};

/* A function call an assistant message made (templates with tools). */
struct memfit_chat_tool_call {
    const char *id;        /* the client's id, or NULL (these templates do not render it) */
    const char *name;      /* the function */
    const char *arguments; /* its arguments: JSON text of an object */
};

struct memfit_chat_message {
    const char *role;    /* "system", "user", "assistant"; "tool" where the template has tools */
    const char *content; /* NULL only for an assistant message with tool calls */
    /* assistant: the calls it made (n_tool_calls 0: none) */
    const struct memfit_chat_tool_call *tool_calls;
    size_t n_tool_calls;
    const char *tool_call_id; /* tool: the call it answers (not rendered), or NULL */
};

/* "chatml", "llama2", "llama3", "qwen2.5", "llama3.1". */
MEMFIT_API const char *memfit_chat_template_name(enum memfit_chat_template tmpl);

/*
 * Recognises the template a model stores (tokenizer.chat_template, may be
 * NULL) among those memfit renders natively. *out is the match, or CHATML
 * with *recognised = false when the text is absent or unknown (the caller
 * says which was chosen).
 */
MEMFIT_API void memfit_chat_template_detect(const char *template_text,
                                            enum memfit_chat_template *out, bool *recognised);

/* Whether memfit renders tools, tool calls and tool results for the template
 * (QWEN25, LLAMA31). */
MEMFIT_API bool memfit_chat_template_has_tools(enum memfit_chat_template tmpl);

/*
 * The prompt text of a conversation as the template renders it (with the
 * BOS text where the template writes it), ending with the assistant header
 * when add_generation_prompt. Encode it with parse_special = true and
 * add_special = false. NUL-terminated, memfit_malloc'ed. E_INVALID for an
 * unknown role or a message order the template cannot express, E_NOMEM.
 */
MEMFIT_API enum memfit_status memfit_chat_render(enum memfit_chat_template tmpl,
                                                 const struct memfit_chat_message *messages,
                                                 size_t n_messages, bool add_generation_prompt,
                                                 char **out);

/*
 * memfit_chat_render with the functions the model may call: tools_json is
 * the JSON text of OpenAI's `tools` array ([{"type": "function", "function":
 * {"name", "description", "parameters"}}]), NULL or "[]" for none; each is
 * written as the template's tojson writes it (Python's json.dumps: ", " and
 * ": ", UTF-8 as is, LLaMA 3.1's with indent 4). Tool calls' arguments are
 * written as JSON values, as the templates expect them. E_INVALID also for
 * tools with a template of none (has_tools false), tools_json that is not a
 * JSON array, or a conversation the template cannot express with them
 * (LLaMA 3.1: no user message to put the tools in, more than one call in a
 * message).
 */
MEMFIT_API enum memfit_status memfit_chat_render_tools(enum memfit_chat_template tmpl,
                                                       const struct memfit_chat_message *messages,
                                                       size_t n_messages, const char *tools_json,
                                                       bool add_generation_prompt, char **out);

/* The tool calls found in a model's answer. */
struct memfit_chat_tool_calls {
    size_t n_calls;
    struct memfit_chat_tool_call *calls; /* id NULL; arguments compact JSON of an object */
    char *content; /* the text around the calls, whitespace trimmed; NULL when none */
};

/*
 * Finds the tool calls in generated text as the template's model writes
 * them: QWEN25 `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`
 * (one or more, text around them is content); LLAMA31 the whole answer one
 * {"name": ..., "parameters": {...}} object (after an optional
 * <|python_tag|>). Text that is not a well-formed call (bad JSON, no name,
 * arguments not an object, an unclosed tag) is no call: out->n_calls is
 * then 0 and the text stays content. E_INVALID for a template without tools,
 * E_NOMEM. *out (memfit_chat_tool_calls_free) written only on success.
 */
MEMFIT_API enum memfit_status memfit_chat_parse_tool_calls(enum memfit_chat_template tmpl,
                                                           const char *text, size_t len,
                                                           struct memfit_chat_tool_calls *out);

/* Frees what memfit_chat_parse_tool_calls wrote (the struct is zeroed). NULL is a no-op. */
MEMFIT_API void memfit_chat_tool_calls_free(struct memfit_chat_tool_calls *calls);

/* ==== Sampling (src/models/sample.c) ======================================== */

struct memfit_sampling {
    float temperature;      /* 0: greedy (argmax, ties to the lowest id); default 0.8; [0, 100] */
    uint32_t top_k;         /* 0: off; default 40 */
    float top_p;            /* 1: off; default 0.95; range (0, 1] */
    float min_p;            /* 0: off; default 0.05; range [0, 1] (relative to the top token) */
    float repeat_penalty;   /* 1: off; default 1.0; range (0, 10] */
    uint32_t repeat_last_n; /* tokens the penalty looks back on; default 64 */
    uint64_t seed;          /* same seed, same output; default 0 (a fixed seed, not random) */
    /* OpenAI's penalties over the tokens this sampler picked (the prompt not
     * included): logit -= count x frequency_penalty + (count > 0) x
     * presence_penalty. 0: off (the default); range [-2, 2]. */
    float presence_penalty;
    float frequency_penalty;
    /* Added to the logits of the tokens named (borrowed: copied by
     * memfit_token_sampler_create); a bias of -100 or less bans the token
     * (-inf). Each bias in [-100, 100]. Default none. */
    const struct memfit_logit_bias *logit_bias;
    size_t n_logit_bias;
    /* Per-request constraint on the next token (grammar-constrained output),
     * or NULL (the default). Borrowed: it must outlive the sampler. */
    const struct memfit_token_constraint *constraint;
    /* The sampler keeps the scratch memfit_token_sampler_logprobs needs. */
    bool logprobs;
};

struct memfit_logit_bias {
    int32_t token;
    float bias;
};

/*
 * A hook that decides which tokens may come next: `mask` gets the logits
 * after the penalties and the logit bias and sets those of forbidden tokens
 * to -inf (any status but OK stops the sampling with it); `accept` (may be
 * NULL) is told the token picked. Both run on the sampling thread.
 */
struct memfit_token_constraint {
    enum memfit_status (*mask)(void *ctx, float *logits, uint32_t n_vocab);
    enum memfit_status (*accept)(void *ctx, int32_t token);
    void *ctx;
};

/* The defaults above (seed 0). */
MEMFIT_API void memfit_sampling_default(struct memfit_sampling *s);

/* E_RANGE naming the first parameter out of its range, and the range (NaN
 * is out of every range). */
MEMFIT_API enum memfit_status memfit_sampling_check(const struct memfit_sampling *s);

typedef struct memfit_token_sampler memfit_token_sampler;

/*
 * A sampler for a vocabulary of n_vocab, with the parameters copied and the
 * PRNG seeded from s->seed. All its scratch is allocated here (12 bytes
 * per top_k entry, or per vocabulary entry with top_k off; none for
 * greedy), so sampling never allocates. E_RANGE from memfit_sampling_check
 * or for n_vocab 0 or above INT32_MAX, E_NOMEM. Not thread-safe; one per
 * generation.
 */
MEMFIT_API enum memfit_status memfit_token_sampler_create(const struct memfit_sampling *s,
                                                          uint32_t n_vocab,
                                                          memfit_token_sampler **out);

/* NULL is a no-op. */
MEMFIT_API void memfit_token_sampler_free(memfit_token_sampler *smp);

/*
 * Picks the next token from n_vocab logits given the tokens so far
 * (`history`, of which the last repeat_last_n are used). Steps, as
 * llama.cpp's default chain: the repetition penalty (each distinct token of
 * the window once: a positive logit divided by the penalty, a negative one
 * multiplied; applied to `logits` in place, the only change made to them);
 * then greedy when temperature is 0; else top-k, top-p on the softmax of
 * what is left (the smallest set of the best tokens whose probability
 * reaches top_p), min-p (tokens at least min_p x the best one's
 * probability), and a draw from softmax(logit / temperature) over the
 * survivors with the sampler's own PRNG (xoshiro256**): the same seed and
 * logits give the same tokens. NaN logits never win; +inf ones are taken as
 * the largest finite value. Before the choice, after the repetition
 * penalty: the presence and frequency penalties, the logit bias, then the
 * constraint's mask (all in place); after it, the token is counted for the
 * penalties and passed to the constraint's accept. E_INVALID when all
 * logits are -inf or NaN, E_RANGE for a history token outside the
 * vocabulary (nothing changed), a constraint's failure.
 */
MEMFIT_API enum memfit_status memfit_token_sampler_sample(memfit_token_sampler *smp, float *logits,
                                                          const int32_t *history, size_t n_history,
                                                          int32_t *out);

#define MEMFIT_MAX_TOP_LOGPROBS 20

struct memfit_token_logprob {
    int32_t token;
    float logprob; /* natural log of its probability; -inf for a banned token */
};

/*
 * The log-probability of `token` and the n_top (at most
 * MEMFIT_MAX_TOP_LOGPROBS) likeliest tokens, best first (ties: the lower
 * id), as the log-softmax of `logits` as memfit_token_sampler_sample left
 * them: after the penalties, the logit bias and the constraint, before
 * temperature and the top-k/top-p/min-p filters (OpenAI's logprobs: the
 * model's distribution, not the sampler's). `top` holds n_top entries
 * (fewer are written when the vocabulary is smaller: *n_written). Needs a
 * sampler created with s->logprobs (E_MISUSE otherwise); never allocates.
 */
MEMFIT_API enum memfit_status memfit_token_sampler_logprobs(memfit_token_sampler *smp,
                                                            const float *logits, int32_t token,
                                                            uint32_t n_top, float *logprob,
                                                            struct memfit_token_logprob *top,
                                                            uint32_t *n_written);

/* ==== Grammar-constrained sampling (src/models/grammar*.c) ================== */
/*
 * JSON output that always parses (OpenAI's response_format json_object) and
 * always validates against a JSON Schema (json_schema), by masking at each
 * step the tokens whose bytes would leave the language. Three objects:
 * - memfit_grammar: a compiled grammar (a JSON Schema subset, or "any JSON
 *   object"), a pushdown automaton over bytes; immutable, thread-safe.
 * - memfit_grammar_vocab: the vocabulary of a tokenizer as a byte trie,
 *   built once per model and shared by every generation (immutable,
 *   thread-safe; borrows the tokenizer, which must outlive it).
 * - memfit_grammar_matcher: one generation's position in the grammar; not
 *   thread-safe. It borrows the grammar and the vocabulary.
 * The language is JSON (RFC 8259) with these limits, so that a generation
 * cannot run away: no whitespace before the value or after it, at most 20
 * whitespace bytes in a row, integer parts of at most 20 digits, fractions
 * of at most 20, exponents of at most 2 digits; no \u escape of a surrogate or of
 * U+0000; strings are valid UTF-8; nesting at most 63 containers deep (any
 * JSON: deeper values are scalars). Object keys with declared properties are
 * written without escapes. See docs/llm.md, "JSON output", for the schema
 * keywords supported.
 */
typedef struct memfit_grammar memfit_grammar;
typedef struct memfit_grammar_vocab memfit_grammar_vocab;
typedef struct memfit_grammar_matcher memfit_grammar_matcher;

/* Any JSON object (response_format {"type": "json_object"}). E_NOMEM. */
MEMFIT_API enum memfit_status memfit_grammar_json_object(memfit_grammar **out);

/*
 * A JSON Schema (len bytes of JSON text, the "schema" member of OpenAI's
 * json_schema) compiled to a grammar whose every complete output validates
 * against it. E_FORMAT for text that is not JSON, E_UNSUPPORTED naming the
 * keyword and its place ("/properties/age: keyword \"minimum\" is not
 * supported") for what memfit does not implement, E_INVALID naming the place
 * for a schema that is wrong or that no value satisfies (minItems above
 * maxItems, an empty enum, a required property additionalProperties false
 * forbids), E_NOMEM. The message is what a 400 answer should say.
 */
MEMFIT_API enum memfit_status memfit_grammar_from_json_schema(const char *schema, size_t len,
                                                              memfit_grammar **out);

/* One alternative of memfit_grammar_from_alternatives. */
struct memfit_grammar_alternative {
    const char *prefix; /* literal text before the value; not empty */
    const char *schema; /* JSON Schema text of the value; NULL: any JSON object */
    const char *suffix; /* literal text after it; NULL or "" for none */
};

/*
 * The language of n (1 to 64) alternatives, each literal text, a JSON value
 * of its schema (no whitespace around it), then literal text: a tool call
 * such as `<tool_call>\n{"name": "f", "arguments": ` ARGS `}\n</tool_call>`,
 * the model committing to one function by the bytes it writes. No prefix may
 * begin another (E_INVALID). Schema errors as memfit_grammar_from_json_schema,
 * naming the alternative. E_NOMEM.
 */
MEMFIT_API enum memfit_status
memfit_grammar_from_alternatives(const struct memfit_grammar_alternative *alts, size_t n,
                                 memfit_grammar **out);

/* NULL is a no-op. */
MEMFIT_API void memfit_grammar_free(memfit_grammar *g);

/*
 * The byte trie of tok's vocabulary (each token's bytes as
 * memfit_tokenizer_piece gives them; tokens of no bytes are never allowed,
 * end-of-generation tokens only where the output is complete). 12 bytes per
 * trie node and 4 per token: 4.4 MiB for Qwen3's 151k tokens (~330 k nodes).
 * E_NOMEM.
 */
MEMFIT_API enum memfit_status memfit_grammar_vocab_create(const memfit_tokenizer *tok,
                                                          memfit_grammar_vocab **out);

/* NULL is a no-op. */
MEMFIT_API void memfit_grammar_vocab_free(memfit_grammar_vocab *v);

/*
 * The bytes memfit_grammar_vocab_create allocates at its peak for a
 * vocabulary of n_vocab tokens, from the count alone, for a memory plan made
 * before the tokenizer is read: the trie counted at 4 nodes a token (Qwen3's
 * 151k tokens make 2.2), its token ids and the sort's scratch: 72 bytes a
 * token, 10.4 MiB for 151k (6.7 MiB measured at the peak). Never fails.
 */
MEMFIT_API uint64_t memfit_grammar_vocab_plan_bytes(uint32_t n_vocab);

/*
 * A matcher at the start of g's language. v may be NULL for a matcher fed
 * bytes only (memfit_grammar_matcher_accept_bytes). Its scratch and a cache
 * of the allowed sets of the last 8 states (one bit per token each) are
 * allocated here. E_NOMEM.
 */
MEMFIT_API enum memfit_status memfit_grammar_matcher_create(const memfit_grammar *g,
                                                            const memfit_grammar_vocab *v,
                                                            memfit_grammar_matcher **out);

/* NULL is a no-op. */
MEMFIT_API void memfit_grammar_matcher_free(memfit_grammar_matcher *m);

/*
 * Advances over len bytes. E_INVALID naming the byte offset when they leave
 * the language (the matcher is then unchanged).
 */
MEMFIT_API enum memfit_status memfit_grammar_matcher_accept_bytes(memfit_grammar_matcher *m,
                                                                  const char *bytes, size_t len);

/*
 * Advances over token id's bytes; an end-of-generation token is accepted
 * only where the output is complete (and changes nothing). E_INVALID when
 * the token is not allowed (matcher unchanged), E_RANGE for an id outside
 * the vocabulary, E_MISUSE without a vocabulary.
 */
MEMFIT_API enum memfit_status memfit_grammar_matcher_accept_token(memfit_grammar_matcher *m,
                                                                  int32_t id);

/* Whether the bytes so far are a whole value of the language. */
MEMFIT_API bool memfit_grammar_matcher_is_complete(const memfit_grammar_matcher *m);

/*
 * The sampler hook: sets logits[i] to -inf for every token i < n_logits the
 * grammar does not allow next (ids beyond the tokenizer's vocabulary
 * included); end-of-generation tokens keep theirs only when the output is
 * complete. *must_end is set when the output is complete and no token can
 * extend it (the generation should end without sampling). E_INVALID when no
 * token at all is allowed (a vocabulary lacking the bytes the grammar needs),
 * E_MISUSE without a vocabulary. Cost: a walk of the trie pruned by the
 * automaton, or a cache hit for a state seen recently (docs/llm.md).
 */
MEMFIT_API enum memfit_status memfit_grammar_matcher_mask_logits(memfit_grammar_matcher *m,
                                                                 float *logits, uint32_t n_logits,
                                                                 bool *must_end);

/*
 * The allowed set of the current state, one bit per token of the
 * tokenizer's vocabulary (bit i of word i / 64; end-of-generation tokens as
 * for mask_logits), owned by the matcher and valid until its next call;
 * *n_allowed counts the set bits. E_MISUSE without a vocabulary, E_INVALID
 * as mask_logits.
 */
MEMFIT_API enum memfit_status
memfit_grammar_matcher_allowed(memfit_grammar_matcher *m, const uint64_t **bits, size_t *n_allowed);

/* ==== LLMs: Qwen2 and LLaMA (src/models/llm*.c) ============================ */
/*
 * Decoder-only transformers from GGUF, general.architecture "qwen2" (q/k/v
 * biases, NEOX rotary) or "llama" (GQA, normal rotary): the weights are used
 * in place from the mapping in any type the tensor layer reads (the
 * activations quantized to the dot type where the kernel wants it); only
 * 1-D norm weights and biases stored in another type are converted to F32 at
 * open. A model is shared and read-only after open; each conversation has a
 * session: its KV cache (F16, Q8_0 or F32) and workspace, one mapping whose size
 * memfit_llm_plan() gives before anything is allocated.
 */
typedef struct memfit_llm memfit_llm;
typedef struct memfit_llm_session memfit_llm_session;

struct memfit_llm_info {
    char arch[16];         /* "qwen2" or "llama" */
    uint32_t n_vocab;      /* rows of token_embd */
    uint32_t n_ctx_train;  /* <arch>.context_length */
    uint32_t n_embd;       /* <arch>.embedding_length */
    uint32_t n_layer;      /* <arch>.block_count */
    uint32_t n_head;       /* <arch>.attention.head_count */
    uint32_t n_head_kv;    /* <arch>.attention.head_count_kv (GQA), else n_head */
    uint32_t head_dim;     /* n_embd / n_head */
    uint32_t n_ff;         /* <arch>.feed_forward_length */
    uint32_t n_rot;        /* rotary dimensions (<arch>.rope.dimension_count, else head_dim) */
    bool rope_neox;        /* rotate halves (qwen2) rather than pairs (llama) */
    float rope_freq_base;  /* default 10000 */
    float rope_freq_scale; /* 1 / <arch>.rope.scaling.factor for linear scaling, else 1 */
    float rms_eps;         /* <arch>.attention.layer_norm_rms_epsilon */
    bool qkv_bias;         /* qwen2 */
    bool tied_output;      /* no output.weight: token_embd is reused */
    enum memfit_type weight_type; /* type of blk.0.attn_q.weight */
    uint64_t weight_bytes;        /* bytes of the tensors the model uses */
    uint64_t converted_bytes;     /* 1-D parameters stored in another type than F32 */
    uint64_t file_bytes;
    uint64_t embd_bytes; /* bytes of token_embd (a decoded token reads one row of it) */
};

struct memfit_llm_options {
    uint32_t n_ctx;           /* tokens a session holds; 0: min(n_ctx_train, 4096) */
    uint32_t n_batch;         /* prompt tokens per forward (matrix-matrix); default 64;
                                 1: every token through the matrix-vector path */
    enum memfit_type kv_type; /* F16 (default), Q8_0 (half the bytes; head_dim % 32 == 0)
                                 or F32 (exact; for tests and debugging) */
    unsigned n_threads;       /* 0 (default): memfit_cpu_count() */
};

MEMFIT_API void memfit_llm_options_default(struct memfit_llm_options *opts);

/* Bytes a model and one session take, known before loading. */
struct memfit_llm_plan {
    uint64_t weight_bytes;    /* mapped file bytes the model reads */
    uint64_t converted_bytes; /* 1-D parameters converted to F32 at open */
    uint64_t kv_bytes;        /* KV cache of one session: 2 x layers x ctx x kv heads x head_dim */
    uint64_t work_bytes;      /* one session's workspace for n_batch tokens: activations,
                                 quantized activation rows, per-thread attention rows (the
                                 logits go straight to the caller's buffer) */
};

/*
 * Recognises an LLM in an open GGUF set from its metadata and tensor shapes
 * (no weight read, nothing allocated). E_UNSUPPORTED naming the architecture
 * for one memfit does not run; E_FORMAT naming the key or tensor that is
 * missing or inconsistent (a vocabulary that does not match the embedding
 * included). `out` written only on success.
 */
MEMFIT_API enum memfit_status memfit_llm_detect(const memfit_tensors *set,
                                                struct memfit_llm_info *out);

/* The plan for a model with `info` under `opts` (opts NULL: defaults), the
 * thread count included (n_threads 0: memfit_cpu_count() now).
 * E_RANGE for a context above n_ctx_train x 8, a batch of 0 or above 65536,
 * more than 1024 threads, or an overflow; E_UNSUPPORTED for a kv_type other
 * than F16/Q8_0/F32, or Q8_0 with a head size that is not a multiple of 32. */
MEMFIT_API enum memfit_status memfit_llm_plan_for(const struct memfit_llm_info *info,
                                                  const struct memfit_llm_options *opts,
                                                  struct memfit_llm_plan *out);

/* The plan for a group of n_sessions sessions (memfit_llm_group_create):
 * kv_bytes is one session's cache (the group holds n_sessions of them),
 * work_bytes the one workspace they share. E_RANGE for n_sessions outside
 * 1..64, else as memfit_llm_plan_for. */
MEMFIT_API enum memfit_status memfit_llm_plan_group(const struct memfit_llm_info *info,
                                                    const struct memfit_llm_options *opts,
                                                    uint32_t n_sessions,
                                                    struct memfit_llm_plan *out);

/* Opens the GGUF at `path` (mapped, never copied). Failures: those of
 * memfit_tensors_open and memfit_llm_detect, E_NOMEM. */
MEMFIT_API enum memfit_status memfit_llm_open(const char *path, memfit_llm **out);

/*
 * The tensor set an LLM at `path` is read from: a file as memfit_tensors_open
 * opens it, or, for a directory, a Hugging Face repository (config.json,
 * model.safetensors or the shards model.safetensors.index.json names,
 * tokenizer.json and tokenizer_config.json when present) seen in place as a
 * composite set: GGUF metadata made from config.json and the tokenizer (a
 * metadata-only GGUF in $TMPDIR, unlinked once mapped), the tensors under
 * llama.cpp's names with their bytes used from the safetensors mappings
 * (F32, F16, BF16, and bitsandbytes NF4 with its quant state, read by
 * memfit_tensors_nf4). Errors as memfit_llm_convert_hf's checks, plus the
 * NF4 ones. Close it with memfit_tensors_close.
 */
MEMFIT_API enum memfit_status memfit_llm_open_set(const char *path, memfit_tensors **out);

/* Closes the file. Every session must be freed first. NULL is a no-op. */
MEMFIT_API void memfit_llm_close(memfit_llm *model);

MEMFIT_API void memfit_llm_get_info(const memfit_llm *model, struct memfit_llm_info *out);

/* The model's tensor set (for its tokenizer: memfit_tokenizer_from_gguf). */
MEMFIT_API const memfit_tensors *memfit_llm_tensors(const memfit_llm *model);

/*
 * A session: KV cache and workspace for opts->n_ctx tokens in one anonymous
 * mapping of plan.kv_bytes + plan.work_bytes, and its thread pool. The KV
 * cache is zero pages until written, so RSS grows with the tokens held.
 * E_RANGE (as plan), E_NOMEM.
 */
MEMFIT_API enum memfit_status memfit_llm_session_create(memfit_llm *model,
                                                        const struct memfit_llm_options *opts,
                                                        memfit_llm_session **out);

MEMFIT_API void memfit_llm_session_free(memfit_llm_session *s);

/* Tokens in the cache now. */
MEMFIT_API uint32_t memfit_llm_session_pos(const memfit_llm_session *s);

/* Tokens the session holds at most (its n_ctx). */
MEMFIT_API uint32_t memfit_llm_session_ctx(const memfit_llm_session *s);

/* The model the session belongs to. */
MEMFIT_API memfit_llm *memfit_llm_session_model(const memfit_llm_session *s);

/* Forgets the cache from position `pos` on (0: a fresh conversation);
 * E_RANGE when pos is beyond the tokens held. */
MEMFIT_API enum memfit_status memfit_llm_session_truncate(memfit_llm_session *s, uint32_t pos);

/*
 * Appends n tokens to the context and runs them through the model, in
 * batches of n_batch (matrix-matrix) or one at a time. logits: NULL, or
 * n_vocab floats receiving the last token's logits (all_logits: n x n_vocab,
 * one row per token). E_RANGE with the figures when pos + n exceeds n_ctx
 * (before any work, nothing changed), E_RANGE for an id outside the
 * vocabulary, E_INVALID for n = 0. Not thread-safe per session; sessions of
 * one model may run at once.
 */
MEMFIT_API enum memfit_status memfit_llm_eval(memfit_llm_session *s, const int32_t *tokens,
                                              size_t n, float *logits, bool all_logits);

/* A token scored in its context: how likely the model found it given the
 * tokens before it, and the likeliest tokens at its place. */
struct memfit_token_score {
    int32_t token;
    float logprob; /* natural log of its probability: the log-softmax of the logits before it */
    uint32_t n_top;
    struct memfit_token_logprob top[MEMFIT_MAX_TOP_LOGPROBS]; /* best first; ties: the lower id */
};

/*
 * memfit_llm_eval (logits: NULL or the last token's, n_vocab floats) that
 * also scores tokens[1..n): scores[i - 1] (n - 1 entries) is token i's
 * log-probability under the raw logits at token i - 1 (no penalty, bias or
 * temperature) and the n_top (0 to MEMFIT_MAX_TOP_LOGPROBS) likeliest
 * tokens there. The logits of a chunk's rows are computed a slice of the
 * vocabulary at a time into the workspace the layers use (2 x n_ff floats a
 * row) and reduced as they come (an online log-sum-exp and top-n), so
 * nothing beyond memfit_llm_plan's workspace is used, and the output matrix
 * is still read once per chunk. tokens[0] is not scored (the logits before
 * it are not kept). E_RANGE for n_top above the limit, else as
 * memfit_llm_eval; scores is written only on success.
 */
MEMFIT_API enum memfit_status memfit_llm_eval_score(memfit_llm_session *s, const int32_t *tokens,
                                                    size_t n, float *logits, uint32_t n_top,
                                                    struct memfit_token_score *scores);

/*
 * A group: n_sessions sessions of one model whose evaluations are batched
 * (continuous batching). Each session has its own KV cache; the group has one
 * workspace and one thread pool, laid out as memfit_llm_plan_group() reports.
 * memfit_llm_eval() on a group's session may be called from several threads
 * at once (one per session): the calls that are waiting when a forward starts
 * go through it together, so a decoding step reads the weights once for all
 * of them, and a prompt's chunk rides along with the others' tokens. A
 * sequence's logits are those it would get alone. A forward waits briefly
 * (a fraction of the last forward's time, at most 10 ms) for the tokens of
 * joined sessions (memfit_llm_session_join) that have not yet asked, so that
 * sequences generating in lockstep stay together; a session that leaves is
 * never waited for. E_RANGE (as the plan), E_NOMEM.
 */
typedef struct memfit_llm_group memfit_llm_group;

MEMFIT_API enum memfit_status memfit_llm_group_create(memfit_llm *model,
                                                      const struct memfit_llm_options *opts,
                                                      uint32_t n_sessions, memfit_llm_group **out);

/* Frees the group and its sessions; no call may be running on them. NULL is a no-op. */
MEMFIT_API void memfit_llm_group_free(memfit_llm_group *g);

/* Session i (< n_sessions) of the group, owned by it (memfit_llm_session_free ignores it). */
MEMFIT_API memfit_llm_session *memfit_llm_group_session(const memfit_llm_group *g, uint32_t i);

/* Forwards run and the rows (tokens) they carried, since the group was created. */
struct memfit_llm_group_stats {
    uint64_t steps, rows;
};

MEMFIT_API void memfit_llm_group_get_stats(memfit_llm_group *g, struct memfit_llm_group_stats *out);

/* A group's session starts (join) or stops (leave) generating: a forward waits
 * briefly for the next token of joined sessions only. Thread-safe; no-ops on
 * a session of its own. */
MEMFIT_API void memfit_llm_session_join(memfit_llm_session *s);
MEMFIT_API void memfit_llm_session_leave(memfit_llm_session *s);

/* ---- Assembling a GGUF from a Hugging Face directory (src/models/llm_convert.c) */

struct memfit_llm_convert_options {
    /* false (default): every tensor keeps its stored type (F32, F16 or BF16).
     * true: the 2-D weights become `type` (F32, F16, BF16, Q8_0, Q4_0, Q4_K,
     * Q6_K; F16 for those whose rows are not a multiple of its block, as
     * memfit quantize does) and the 1-D tensors F32. */
    bool convert_types;
    enum memfit_type type; /* default F16 */
    /* true (default): tokenizer.json (and tokenizer_config.json when there is
     * one) become the tokenizer.ggml.* metadata; a missing tokenizer.json is
     * then E_NOT_FOUND. false: no tokenizer (the model runs on token ids). */
    bool tokenizer;
    unsigned n_threads; /* type conversion; 0 (default): memfit_cpu_count() */
};

MEMFIT_API void memfit_llm_convert_options_default(struct memfit_llm_convert_options *opts);

/*
 * Writes the Qwen2 or LLaMA model of a Hugging Face directory `dir` as a
 * GGUF at `out_path` that memfit_llm_open runs (opts NULL: the defaults).
 * The directory holds config.json (model_type qwen2 or llama: hidden_size,
 * num_hidden_layers, num_attention_heads, num_key_value_heads,
 * intermediate_size, rms_norm_eps, rope_theta, rope_scaling null or linear,
 * max_position_embeddings, vocab_size, tie_word_embeddings, head_dim), the
 * weights in model.safetensors or in the shards model.safetensors.index.json
 * names, and tokenizer.json. Tensors get llama.cpp's GGUF names (token_embd,
 * blk.N.attn_q, ..., output_norm, output; lm_head dropped when tied); LLaMA's
 * q/k weights and biases are permuted as llama.cpp's converter does, so that
 * rotary pairs are consecutive. general.name is the directory's name.
 * Per-token tokenizer arrays shorter than vocab_size are padded with
 * "[PAD<id>]" tokens of type UNUSED.
 *
 * Everything is checked before the output is created; the data is streamed
 * from the mappings in chunks of 8 MiB (memory stays bounded whatever the
 * model's size) into a temporary file renamed over `out_path` only on
 * success: a failure leaves no file behind. Failures: E_NOT_FOUND naming a
 * missing config.json, safetensors file (a shard the index names included)
 * or tokenizer.json; E_UNSUPPORTED naming an unknown model_type, rope
 * scaling, tensor name or tensor type, or a `type` it cannot write; E_FORMAT
 * naming the field of a malformed config.json or index, a missing tensor, a
 * tensor whose shape does not match config.json, a tokenizer larger than
 * vocab_size; those of memfit_tensors_open, memfit_tokenizer_json_to_gguf
 * and the writer; E_NOMEM.
 */
MEMFIT_API enum memfit_status memfit_llm_convert_hf(const char *dir, const char *out_path,
                                                    const struct memfit_llm_convert_options *opts);

/* ---- Quantization (src/models/quantize.c) ------------------------------------ */
/*
 * Rewrites a model file (.gguf, .safetensors or .pth with F32/F16/BF16
 * tensors; quantized GGUF tensors are dequantized, then requantized) with its
 * weights converted to a float type, a ggml quantized type (GGUF output), a
 * llama.cpp-like Q4_K_M mix (GGUF), or bitsandbytes NF4 (safetensors, in the
 * layout bitsandbytes saves). Memory stays bounded whatever the model size:
 * the input is mapped and streamed tensor by tensor in 64 Ki-element pieces.
 *
 * Each tensor's type is memfit_quantize_tensor_type's choice: the rule
 * `memfit quantize` applies and `memfit inspect` estimates with.
 */

/* What the weights become. Values never change. */
enum memfit_quantize_target {
    MEMFIT_QUANTIZE_F32 = 0,
    MEMFIT_QUANTIZE_F16 = 1,
    MEMFIT_QUANTIZE_BF16 = 2,
    MEMFIT_QUANTIZE_Q8_0 = 3,
    MEMFIT_QUANTIZE_Q4_0 = 4,
    MEMFIT_QUANTIZE_Q4_K = 5,
    MEMFIT_QUANTIZE_Q6_K = 6,
    MEMFIT_QUANTIZE_Q4_K_M = 7, /* Q6_K for the output and "more bits" attn_v/ffn_down, Q4_K else */
    MEMFIT_QUANTIZE_NF4 = 8,    /* bitsandbytes NF4, blocksize 64 (safetensors only) */
    MEMFIT_QUANTIZE_TARGET_COUNT = 9
};

/* "f32", "f16", "bf16", "q8_0", "q4_0", "q4_k", "q6_k", "q4_k_m", "nf4"; "?" otherwise. */
MEMFIT_API const char *memfit_quantize_target_name(enum memfit_quantize_target target);

/* Parses the names above (case-insensitive); E_INVALID quoting the text otherwise. */
MEMFIT_API enum memfit_status memfit_quantize_target_parse(const char *text,
                                                           enum memfit_quantize_target *out);

/* Why a tensor got the type it did. Values never change. */
enum memfit_quantize_reason {
    MEMFIT_QUANTIZE_REASON_TARGET = 0,    /* the target type */
    MEMFIT_QUANTIZE_REASON_SMALL = 1,     /* 1-D, a norm or a table read as floats: F32 */
    MEMFIT_QUANTIZE_REASON_KEEP = 2,      /* a keep pattern, or NF4's embeddings/output head */
    MEMFIT_QUANTIZE_REASON_BLOCK = 3,     /* row not a multiple of the block: Q4_0/Q8_0/F16 */
    MEMFIT_QUANTIZE_REASON_COPY = 4,      /* not a type we can read as floats: copied */
    MEMFIT_QUANTIZE_REASON_MORE_BITS = 5, /* q4_k_m: Q6_K */
    MEMFIT_QUANTIZE_REASON_COUNT = 6
};

/*
 * The number of layers of the set, from the highest "blk.N." / "layers.N." /
 * "h.N." in its tensor names plus one (0: none). The Q4_K_M mix needs it.
 */
MEMFIT_API uint32_t memfit_quantize_layer_count(const memfit_tensors *set);

/*
 * The type tensor `t` gets under `target` in a model of `n_layers` layers
 * (memfit_quantize_layer_count), and why (`why` may be NULL): a type that
 * cannot be read as floats is kept; 1-D tensors, norms and the tables a
 * model reads as floats (position embeddings, relative-position tables,
 * learned tokens, SAM's prompt embeddings and small convolutions) become
 * F32; NF4
 * keeps embeddings and the output head in float (F16 if quantized); Q4_K_M
 * gives Q6_K to the output weight and to attn_v/ffn_down (v_proj/down_proj)
 * of llama.cpp's "more bits" layers, Q4_K to the rest; a row (last
 * dimension) not a multiple of the type's block falls back to Q4_0 for
 * Q4_K, Q8_0 for Q6_K, else F16. Keep patterns are not applied here. An
 * unknown target (or t NULL) changes nothing: t's own type (F32 for NULL).
 */
MEMFIT_API enum memfit_type memfit_quantize_tensor_type(const struct memfit_tensor_info *t,
                                                        enum memfit_quantize_target target,
                                                        uint32_t n_layers,
                                                        enum memfit_quantize_reason *why);

/*
 * The bytes tensor `t` takes once converted as above (NF4: the 4-bit codes
 * and an F32 absmax per 64 elements, without the small side tensors).
 */
MEMFIT_API uint64_t memfit_quantize_tensor_bytes(const struct memfit_tensor_info *t,
                                                 enum memfit_quantize_target target,
                                                 uint32_t n_layers);

/* Where a quantization is: input bytes and tensors converted so far, of the totals. */
struct memfit_quantize_progress {
    uint64_t bytes_done, bytes_total;
    size_t tensors_done, tensors_total;
};

/* Called from the converting thread after each chunk and each tensor (often:
 * throttle any drawing). */
typedef void (*memfit_quantize_progress_fn)(const struct memfit_quantize_progress *p, void *user);

struct memfit_quantize_options {
    enum memfit_quantize_target target; /* default Q8_0 */
    enum memfit_format format;          /* GGUF or SAFETENSORS; UNKNOWN (default): OUT's suffix */
    const char *const *keep;            /* globs (fnmatch) of tensors kept in their type */
    size_t n_keep;
    unsigned n_threads;                   /* 0 (default): memfit_cpu_count() */
    bool double_quant;                    /* nf4: quantize the absmax values too (blocks of 256) */
    bool overwrite;                       /* replace an existing OUT (never the input) */
    memfit_quantize_progress_fn progress; /* or NULL */
    void *progress_user;
    const int *cancel; /* or NULL; non-zero (read atomically) cancels, e.g. from a signal */
};

MEMFIT_API void memfit_quantize_options_default(struct memfit_quantize_options *opts);

/* One tensor of the input: its type, the type it got and why. */
struct memfit_quantize_tensor {
    const char *name;
    enum memfit_type from, to;
    enum memfit_quantize_reason why;
};

struct memfit_quantize_report {
    enum memfit_format format; /* of OUT */
    size_t n_tensors;
    struct memfit_quantize_tensor *tensors; /* n_tensors, input order; owned by the report */
    uint64_t in_bytes, out_bytes;           /* tensor data read and written */
    double seconds;
    unsigned n_threads;
    size_t n_meta_skipped; /* metadata entries OUT's format cannot hold */
    size_t n_meta_added;   /* DINOv2 keys the input lacked (general.architecture, interpolation) */
};

/* Frees what the report owns and zeroes it. NULL is a no-op. */
MEMFIT_API void memfit_quantize_report_free(struct memfit_quantize_report *report);

/*
 * Writes the model file `in` converted as `opts` says (NULL: the defaults)
 * to `out`. GGUF metadata is copied (strings only to safetensors),
 * general.file_type is set, and a DINOv2 model gets general.architecture and
 * its interpolation when it lacks them. The data goes to a temporary file
 * beside `out`, renamed over it only on success: a failure leaves nothing.
 * `report` (may be NULL) is written only on success; free it with
 * memfit_quantize_report_free.
 *
 * Failures: E_INVALID naming the option that does not fit (a ggml type to
 * safetensors, NF4 to GGUF, double_quant without NF4, OUT not .gguf or
 * .safetensors); E_EXISTS when `out` exists and overwrite is false;
 * E_PERMISSION when `out` is the input file (same inode); E_CANCELLED; those
 * of memfit_tensors_open, the type conversion (naming the tensor) and the
 * writer (a missing directory, ENOSPC); E_NOMEM.
 */
MEMFIT_API enum memfit_status memfit_quantize_file(const char *in, const char *out,
                                                   const struct memfit_quantize_options *opts,
                                                   struct memfit_quantize_report *report);

/*
 * Pieces shared with other rewriters of model files (`memfit convert`):
 * memfit_rewrite_copy_meta copies every metadata entry of `in` into `w`
 * (safetensors holds strings only: other entries, and any the writer refuses
 * as E_UNSUPPORTED, are counted in *skipped); memfit_rewrite_add_vit_meta
 * writes, for a DINOv2 model (memfit_vit_detect), general.architecture and
 * MEMFIT_VIT_META_INTERPOLATION when `in` lacks them (*added counts them);
 * memfit_rewrite_write_raw writes n_bytes at `data` as tensor `index` in
 * 64 MiB chunks and drops the input pages already written (madvise, and
 * posix_fadvise on `fd` at file_offset when fd >= 0). Writer failures are
 * returned.
 */
MEMFIT_API enum memfit_status memfit_rewrite_copy_meta(const memfit_tensors *in, memfit_writer *w,
                                                       enum memfit_format fmt, size_t *skipped);
MEMFIT_API enum memfit_status memfit_rewrite_add_vit_meta(const memfit_tensors *in,
                                                          memfit_writer *w, size_t *added);
MEMFIT_API enum memfit_status memfit_rewrite_write_raw(memfit_writer *w, size_t index,
                                                       const void *data, uint64_t n_bytes, int fd,
                                                       uint64_t file_offset);

/* ---- Generation (src/models/generate.c) ---------------------------------- */

enum memfit_finish {
    MEMFIT_FINISH_STOP = 0,      /* an end-of-generation token or a stop string */
    MEMFIT_FINISH_LENGTH = 1,    /* max_tokens, or the context is full */
    MEMFIT_FINISH_CANCELLED = 2, /* the callback asked to stop */
};

struct memfit_generate_params {
    const int32_t *prompt; /* tokens appended to the session before generating */
    size_t n_prompt;
    uint32_t max_tokens; /* 0: until the context is full */
    struct memfit_sampling sampling;
    const char *const *stop; /* stop strings (not emitted), n_stop of them */
    size_t n_stop;
    /* With sampling.logprobs: each sampled token's log-probability and its
     * top_logprobs (0 to MEMFIT_MAX_TOP_LOGPROBS) likeliest alternatives. */
    uint32_t top_logprobs;
    /* NULL, or the grammar the output must follow: before each token is
     * sampled, memfit_grammar_matcher_mask_logits (the generation ends with
     * STOP when the output is complete and nothing may follow); after, the
     * token is fed to the matcher. Borrowed; it must outlive the generation.
     * With LENGTH (max_tokens or a full context) the output may be incomplete. */
    memfit_grammar_matcher *grammar;
    /* The prompt's tokens scored as memfit_llm_eval_score does (with the
     * top_logprobs likeliest at each): memfit_generation_prompt. */
    bool prompt_logprobs;
    /* Evaluate (and score) the prompt and sample nothing: the generation
     * ends after it with LENGTH (OpenAI's max_tokens 0 with echo). */
    bool prompt_only;
};

/* A token the generation sampled (end-of-generation tokens are not listed). */
struct memfit_sampled_token {
    int32_t token;
    uint64_t t_ns; /* memfit_now_ns() when it was sampled */
    /* With sampling.logprobs (else 0): memfit_token_sampler_logprobs's figures */
    float logprob;
    uint32_t n_top;
    struct memfit_token_logprob top[MEMFIT_MAX_TOP_LOGPROBS];
};

/*
 * Called with each piece of text as soon as it is final: whole UTF-8
 * characters only, and never text that could still become a stop string.
 * Returns false to cancel (the client went away).
 */
typedef bool (*memfit_generate_fn)(void *ctx, const char *text, size_t len);

struct memfit_generate_result {
    enum memfit_finish finish;
    uint32_t n_prompt;       /* prompt tokens evaluated */
    uint32_t n_generated;    /* tokens sampled */
    double prompt_seconds;   /* time in the prompt's forward passes */
    double generate_seconds; /* time from the first sampled token to the end */
};

/*
 * The same loop, a step at a time, for callers that pull text (an HTTP
 * response written as the client reads it): memfit_generation_start checks
 * the parameters and that the prompt fits (E_RANGE before any work);
 * memfit_generation_next runs the prompt (first call) and then tokens until
 * some text is final or the generation ends (*done; the text of the last
 * call may be non-empty); *text is owned by the generation and valid until
 * the next call. memfit_generation_result says how it went (finish
 * CANCELLED when it was freed before done). The session and tokenizer must
 * outlive the generation; params (and its strings) are copied.
 */
typedef struct memfit_generation memfit_generation;

MEMFIT_API enum memfit_status memfit_generation_start(memfit_llm_session *s,
                                                      const memfit_tokenizer *tok,
                                                      const struct memfit_generate_params *params,
                                                      memfit_generation **out);
MEMFIT_API enum memfit_status memfit_generation_next(memfit_generation *g, const char **text,
                                                     size_t *len, bool *done);
MEMFIT_API void memfit_generation_result(const memfit_generation *g,
                                         struct memfit_generate_result *out);
/* The tokens the last memfit_generation_next call sampled, in order (their
 * text is in that call's text, or held for a later one, or was cut by a stop
 * string); owned by the generation, valid until the next call. */
MEMFIT_API void memfit_generation_tokens(const memfit_generation *g,
                                         const struct memfit_sampled_token **tokens, size_t *n);
/* The prompt's tokens (n_prompt) and, with prompt_logprobs once the first
 * memfit_generation_next call has evaluated it, the scores of tokens 1 to
 * n_prompt - 1 (*scores[i - 1] is token i's; NULL before, or without
 * prompt_logprobs). Owned by the generation, valid until it is freed. */
MEMFIT_API void memfit_generation_prompt(const memfit_generation *g, const int32_t **tokens,
                                         const struct memfit_token_score **scores,
                                         size_t *n_prompt);
MEMFIT_API void memfit_generation_free(memfit_generation *g);

/*
 * Evaluates the prompt, then samples up to max_tokens tokens, streaming
 * their text to `fn`. Stops at an end-of-generation token, a stop string
 * (the text before it is emitted), max_tokens, a full context or
 * cancellation. E_RANGE (prompt longer than the context, before any work),
 * E_RANGE from memfit_sampling_check, the failures of memfit_llm_eval.
 */
MEMFIT_API enum memfit_status memfit_llm_generate(memfit_llm_session *s,
                                                  const memfit_tokenizer *tok,
                                                  const struct memfit_generate_params *params,
                                                  memfit_generate_fn fn, void *ctx,
                                                  struct memfit_generate_result *result);

/* ==== SAM: segment-anything v1 (src/models/sam*.c) ======================== */
/*
 * The model: an image encoder (ViT with windowed and global attention,
 * decomposed relative positions, a convolutional neck), a prompt encoder
 * and a two-way-transformer mask decoder. Weights stay in the file mapping
 * (original `sam_vit_*.pth` names or transformers' `facebook/sam-vit-*`
 * names; .pth, safetensors or GGUF; F32, F16, BF16, Q8_0, Q4_0, ...), as
 * memfit_vit does. The geometry comes from the shapes: the token grid G
 * from pos_embed [1, G, G, D], the patch from the projection, the head
 * size from rel_pos_h ([2S - 1, head_dim]), the window S from the
 * windowed blocks' tables and the global blocks from theirs ([2G - 1]).
 * The input is G * patch pixels a side (1024 for the released models);
 * the image embedding is prompt_dim x G x G (256 x 64 x 64); low-res masks
 * are 4G x 4G (256 x 256).
 */
typedef struct memfit_sam memfit_sam;

struct memfit_sam_options {
    unsigned n_threads; /* 0: one per online CPU */
};

MEMFIT_API void memfit_sam_options_default(struct memfit_sam_options *opts);

#define MEMFIT_SAM_MAX_GLOBAL 16

struct memfit_sam_info {
    const char *variant;      /* "vit_b", "vit_l", "vit_h", or "custom" */
    uint32_t dim;             /* encoder width D: 768 / 1024 / 1280 */
    uint32_t depth;           /* encoder blocks */
    uint32_t heads, head_dim; /* encoder heads (D / head_dim) */
    uint32_t mlp_hidden;      /* lin1 rows (4D) */
    uint32_t patch_size;      /* 16 */
    uint32_t grid;            /* G: 64 */
    uint32_t image_size;      /* G * patch: 1024 */
    uint32_t window;          /* S: 14 */
    uint32_t n_global;
    uint32_t global[MEMFIT_SAM_MAX_GLOBAL]; /* indices of the global blocks */
    uint32_t prompt_dim;                    /* 256: neck output, prompt and decoder width */
    uint32_t decoder_depth;                 /* two-way blocks: 2 */
    uint32_t decoder_heads;                 /* 8 */
    uint32_t decoder_mlp;                   /* 2048 */
    uint32_t n_mask_tokens;                 /* 4: one single-mask output + 3 multimask */
    uint32_t mask_size;                     /* low-res mask side: 4G = 256 */
    bool hf_names;
    enum memfit_type weight_type; /* of block 0's qkv */
    uint64_t weight_bytes;        /* bytes of the tensors the model uses */
    uint64_t converted_bytes;     /* parameters converted to F32 at open */
    unsigned n_threads;
};

/*
 * Opens a SAM model. E_FORMAT naming the tensor for a missing tensor, a
 * wrong shape or a type without a kernel, or naming what the file looks
 * like when it is not SAM; the failures of memfit_tensors_open; E_NOMEM.
 */
MEMFIT_API enum memfit_status
memfit_sam_open(const char *path, const struct memfit_sam_options *opts, memfit_sam **out);

/* Recognises SAM from names and shapes alone (a header-only set is
 * enough); fills the geometry fields of `out`. E_FORMAT when it is not. */
MEMFIT_API enum memfit_status memfit_sam_detect(const memfit_tensors *set,
                                                struct memfit_sam_info *out);

MEMFIT_API void memfit_sam_close(memfit_sam *m);
MEMFIT_API void memfit_sam_get_info(const memfit_sam *m, struct memfit_sam_info *out);

/* The exact workspace of one encoder pass (activations, per-thread tiles). */
MEMFIT_API enum memfit_status memfit_sam_encode_plan(const memfit_sam *m, size_t *out_bytes);

/*
 * Runs the image encoder on `pixels` (3 x S x S planar floats, S =
 * image_size: normalized and zero-padded, as memfit_sam_preprocess makes
 * them) into `embedding` (prompt_dim x G x G floats, channels first, as
 * the reference's image_embeddings[0]). `work`: memfit_sam_encode_plan
 * bytes, 64-byte aligned. E_MISUSE for NULL or a short workspace.
 */
MEMFIT_API enum memfit_status memfit_sam_encode(memfit_sam *m, const float *pixels, void *work,
                                                size_t work_bytes, float *embedding);

/* The most points one prompt may have (the decoder's token buffers are
 * planned for it). */
#define MEMFIT_SAM_MAX_POINTS 64

/* A prompt in the model's input frame (the 1024 frame after the resize). */
struct memfit_sam_prompt {
    const float *points;   /* n_points (x, y) pairs, or NULL */
    const int32_t *labels; /* n_points labels: 1 foreground, 0 background, -1 padding */
    size_t n_points;
    bool has_box;
    float box[4];            /* x0, y0, x1, y1 */
    const float *mask_input; /* mask_size x mask_size logits (a previous low-res mask), or NULL */
};

/* Masks per prompt: 3 with multimask, else 1. */
MEMFIT_API uint32_t memfit_sam_mask_count(bool multimask);

/* The exact workspace memfit_sam_decode needs (per-thread scratch; the
 * same for any number of prompts: prompts are decoded one per thread). */
MEMFIT_API enum memfit_status memfit_sam_decode_plan(const memfit_sam *m, size_t *out_bytes);

/*
 * Runs the prompt encoder and the mask decoder for n prompts against one
 * image embedding: low_res gets n x C x mask_size x mask_size logits and
 * iou n x C scores (C = memfit_sam_mask_count(multimask)), as the
 * reference's predict_torch(..., return_logits=True) low_res_masks and
 * iou_predictions. E_RANGE for a prompt with no point and no box, more than
 * MEMFIT_SAM_MAX_POINTS points, a label outside -1..1, or a non-finite
 * coordinate (nothing is written then); E_MISUSE for a NULL argument, points
 * without labels, or a workspace that is short or not 64-byte aligned.
 * Threads: the model's pool (prompts one per thread, or one prompt split by
 * bands of image tokens); results do not depend on the thread count.
 */
MEMFIT_API enum memfit_status memfit_sam_decode(memfit_sam *m, const float *embedding,
                                                const struct memfit_sam_prompt *prompts, size_t n,
                                                bool multimask, void *work, size_t work_bytes,
                                                float *low_res, float *iou);

/* The resize of the reference's ResizeLongestSide: scale = S / max(h, w),
 * new side = int(side * scale + 0.5). */
MEMFIT_API void memfit_sam_resized_size(uint32_t image_size, uint32_t width, uint32_t height,
                                        uint32_t *out_width, uint32_t *out_height);

/*
 * The reference's preprocessing: resize the longest side to image_size
 * (PIL bilinear, antialiased, as torchvision's resize of a PIL image),
 * normalize with SAM's pixel mean and std (0..255 scale), zero-pad
 * bottom/right: out gets 3 x S x S floats. Allocates its own scratch.
 */
MEMFIT_API enum memfit_status memfit_sam_preprocess(const struct memfit_image *img,
                                                    uint32_t image_size, float *out);

/*
 * The reference's postprocess_masks for one low-res mask: bilinear to
 * image_size (align_corners=False), crop to the resized size, bilinear to
 * height x width: `out` gets height x width logits (threshold at 0 for the
 * mask). `scratch` holds image_size^2 floats.
 */
MEMFIT_API void memfit_sam_postprocess(const float *low_res, uint32_t mask_size,
                                       uint32_t image_size, uint32_t resized_w, uint32_t resized_h,
                                       uint32_t width, uint32_t height, float *scratch, float *out);

/* ---- SAM automatic mask generation: geometry, scores, RLE, NMS ---------- */

/*
 * The model-independent pieces of segment-anything's automatic mask
 * generator (v1 utils/amg.py and automatic_mask_generator.py, torchvision's
 * nms/batched_nms), each reproducing the reference's arithmetic. Masks are
 * row-major [h][w] bytes, nonzero = set. Boxes are XYXY. None of these
 * functions keeps state; they are safe to call from any thread.
 */

/*
 * Writes the n_per_side x n_per_side grid of normalized points (x, y) into
 * `points` (n_per_side * n_per_side * 2 doubles, capacity `n_values`): the
 * coordinates are linspace(1/(2n), 1 - 1/(2n), n) as numpy computes it,
 * ordered row-major over y with x fastest. Double, as the reference keeps
 * the grid in float64 through the scaling to crop and model coordinates.
 * E_RANGE for n_per_side 0, an overflowing size or a too small `n_values`;
 * nothing is written then.
 */
MEMFIT_API enum memfit_status memfit_sam_point_grid(size_t n_per_side, double *points,
                                                    size_t n_values);

/*
 * The points per side of crop layer `layer`: n_per_side / scale^layer,
 * truncated (the reference's int(n / scale**i)). E_RANGE when scale is 0 or
 * the result is 0 (the reference cannot build an empty grid).
 */
MEMFIT_API enum memfit_status memfit_sam_layer_points_per_side(size_t n_per_side, size_t scale,
                                                               size_t layer, size_t *out);

/*
 * The number of crop boxes for `n_layers` crop layers: 1 + sum over
 * i = 1..n_layers of 4^i. E_RANGE above 15 layers.
 */
MEMFIT_API enum memfit_status memfit_sam_crop_box_count(size_t n_layers, size_t *out);

/*
 * The reference's generate_crop_boxes for an im_h x im_w image: the whole
 * image [0, 0, im_w, im_h] (layer 0), then per layer i (1-based) the
 * (2^i)^2 crops with n = 2^i, overlap = int(ratio * short_side * (2 / n)),
 * crop_len = ceil((overlap * (n - 1) + len) / n), x0 = (crop_w - overlap) * k,
 * box = [x0, y0, min(x0 + crop_w, im_w), min(y0 + crop_h, im_h)], x0 in the
 * outer loop. Writes `n` boxes (4 ints each) to `boxes` and their layer to
 * `layers` (may be NULL); size both with memfit_sam_crop_box_count. E_RANGE
 * for a side <= 0, a non-finite or negative ratio, a too small `n_boxes`, or
 * a coordinate beyond int32; nothing is written then.
 */
MEMFIT_API enum memfit_status memfit_sam_crop_boxes(int32_t im_h, int32_t im_w, size_t n_layers,
                                                    double overlap_ratio, int32_t *boxes,
                                                    uint32_t *layers, size_t n_boxes);

/*
 * Stability scores of `n_masks` logit masks (each h*w floats, contiguous):
 * count(logit > threshold + offset) / count(logit > threshold - offset), the
 * cutoffs summed in double and compared in float, the ratio in float. When
 * no logit passes the low cutoff the score is NaN (the reference's 0 / 0),
 * which fails any ">= thresh" filter. SAM uses threshold 0.0, offset 1.0.
 * E_RANGE when n_masks * h * w overflows.
 */
MEMFIT_API enum memfit_status memfit_sam_stability_scores(const float *logits, size_t n_masks,
                                                          size_t h, size_t w, double mask_threshold,
                                                          double offset, float *scores);

/*
 * The bounding box of a mask as batched_mask_to_box computes it: XYXY with
 * inclusive max indices ([x_min, y_min, x_max, y_max]), [0, 0, 0, 0] for an
 * empty mask (and for h or w 0). E_RANGE when h or w exceed INT32_MAX.
 */
MEMFIT_API enum memfit_status memfit_sam_mask_to_box(const uint8_t *mask, size_t h, size_t w,
                                                     int32_t box[4]);

/*
 * The reference's is_box_near_crop_edge for one box in the crop's frame:
 * the box is moved by the crop's (x0, y0), then true when any coordinate is
 * within `atol` (|a - b| <= atol, in float) of the same coordinate of
 * `crop_box` and not within `atol` of that of `orig_box` ([0, 0, W, H]).
 * SAM uses atol 20.
 */
MEMFIT_API bool memfit_sam_box_near_crop_edge(const int32_t box[4], const int32_t crop_box[4],
                                              const int32_t orig_box[4], float atol);

/*
 * Encodes a mask as an uncompressed (COCO) RLE over its column-major
 * (Fortran) order: alternating run lengths starting with zeros, so counts[0]
 * is 0 when the first pixel is set; size is [h, w]. *counts is allocated
 * with memfit_malloc and freed by the caller with memfit_free. E_RANGE for
 * an empty mask or h * w beyond UINT32_MAX, E_NOMEM; *counts and *n_counts
 * are written only on success.
 */
MEMFIT_API enum memfit_status memfit_sam_mask_to_rle(const uint8_t *mask, size_t h, size_t w,
                                                     uint32_t **counts, size_t *n_counts);

/*
 * Decodes an uncompressed RLE into a row-major [h][w] mask of 0/1 bytes.
 * E_RANGE when the counts do not sum to exactly h * w (the reference would
 * leave pixels uninitialized or ignore the excess); nothing is written then.
 */
MEMFIT_API enum memfit_status memfit_sam_rle_to_mask(const uint32_t *counts, size_t n_counts,
                                                     size_t h, size_t w, uint8_t *mask);

/* The area of an RLE mask: the sum of its odd-indexed counts. */
MEMFIT_API uint64_t memfit_sam_rle_area(const uint32_t *counts, size_t n_counts);

/*
 * The compressed form of an uncompressed RLE, as pycocotools' rleToString
 * writes it (the "counts" string of SAM's coco_rle output mode): each
 * count (from the third on, minus the count two before it) in 5-bit groups,
 * low first, 0x20 marking "more", plus 48. *out is a NUL-terminated string
 * allocated with memfit_malloc. E_NOMEM, E_RANGE for an absurd count.
 */
MEMFIT_API enum memfit_status memfit_sam_rle_to_coco(const uint32_t *counts, size_t n_counts,
                                                     char **out);

/*
 * torchvision's box IoU of two XYXY boxes in float, areas (x2 - x1) *
 * (y2 - y1) without +1, intersection sides clamped at 0. NaN when the union
 * is 0.
 */
MEMFIT_API float memfit_sam_box_iou(const float a[4], const float b[4]);

/*
 * Greedy non-maximum suppression as torchvision's CPU nms: boxes (n * 4
 * floats, XYXY) are visited by score descending, ties in index order (a
 * stable sort; NaN scores first, as torch sorts them); each kept box
 * suppresses the later ones whose IoU with it is > iou_threshold. With
 * `categories` (may be NULL) boxes only suppress boxes of the same category,
 * as batched_nms. Writes the kept indices in visiting order to `keep`
 * (capacity n) and their number to *n_keep. E_RANGE when n * 4 overflows,
 * E_NOMEM; *n_keep is written only on success.
 */
MEMFIT_API enum memfit_status memfit_sam_nms(const float *boxes, const float *scores,
                                             const int32_t *categories, size_t n,
                                             float iou_threshold, size_t *keep, size_t *n_keep);

enum memfit_sam_region_mode {
    MEMFIT_SAM_REGION_HOLES = 0,   /* fill small unset regions */
    MEMFIT_SAM_REGION_ISLANDS = 1, /* clear small set regions */
};

/*
 * The reference's remove_small_regions, in place: labels the 8-connected
 * regions of the unset pixels (holes) or of the set pixels (islands) and
 * calls a region small when its area is < area_thresh. Holes: small ones are
 * filled (a hole touching the border counts too). Islands: only the others
 * are kept; when every island is small the largest is kept (the first in
 * the labeling order on a tie). *changed is false, and the mask untouched,
 * when no region is small; otherwise true even if no pixel changed (as the
 * reference). Output pixels are 0/1. Uses 8 bytes per pixel of scratch.
 * E_RANGE for a bad mode or h * w beyond UINT32_MAX - 1, E_NOMEM; the mask is
 * untouched on failure.
 */
MEMFIT_API enum memfit_status memfit_sam_remove_small_regions(uint8_t *mask, size_t h, size_t w,
                                                              double area_thresh,
                                                              enum memfit_sam_region_mode mode,
                                                              bool *changed);

/* ---- SAM automatic mask generation: the generator ------------------------ */

/*
 * The reference's SamAutomaticMaskGenerator (v1): a grid of single-point
 * prompts over the image (and over crops of it), every mask scored, filtered
 * and deduplicated, as automatic_mask_generator.py does, built from the
 * pieces above and memfit_sam_encode / memfit_sam_decode.
 */

/* A grid of normalized prompt points: n_points (x, y) pairs in [0, 1]. */
struct memfit_sam_point_grid {
    const double *points;
    size_t n_points;
};

/* The reference's parameters and defaults. The output mode (binary mask,
 * uncompressed or COCO RLE) is the caller's: records hold uncompressed RLE
 * (memfit_sam_rle_to_mask makes the binary mask). */
struct memfit_sam_amg_params {
    uint32_t points_per_side;      /* 32: a points_per_side^2 grid; 0 with point_grids */
    uint32_t points_per_batch;     /* 64: prompts decoded together */
    double pred_iou_thresh;        /* 0.88: keep iou > this (float compare); <= 0: no filter */
    double stability_score_thresh; /* 0.95: keep score >= this; <= 0: no filter */
    double stability_score_offset; /* 1.0: the cutoffs 0 +- offset */
    double box_nms_thresh;         /* 0.7: NMS IoU within a crop */
    uint32_t crop_n_layers;        /* 0: layer i adds (2^i)^2 crops */
    double crop_nms_thresh;        /* 0.7: NMS IoU across crops */
    double crop_overlap_ratio;     /* 512 / 1500 */
    uint32_t crop_n_points_downscale_factor; /* 1: layer i has points_per_side / f^i a side */
    /* NULL, or crop_n_layers + 1 grids (one per layer, borrowed for the
     * call); exactly one of points_per_side and point_grids is given */
    const struct memfit_sam_point_grid *point_grids;
    uint64_t min_mask_region_area; /* 0: no hole filling / island removal */
};

MEMFIT_API struct memfit_sam_amg_params memfit_sam_amg_params_default(void);

/* E_RANGE naming the parameter and its range: points_per_batch 1..65536,
 * points_per_side 1..4096 (or 0 with point_grids, whose points must be
 * finite), thresholds finite (NMS ones in 0..1), stability_score_offset and
 * crop_overlap_ratio finite and >= 0, crop_n_layers 0..8, downscale factor
 * >= 1 with a non-empty grid in every layer. */
MEMFIT_API enum memfit_status memfit_sam_amg_params_check(const struct memfit_sam_amg_params *p);

/* One generated mask, as the reference's record. */
struct memfit_sam_mask {
    uint32_t *counts; /* uncompressed RLE (memfit_sam_mask_to_rle's order), owned */
    size_t n_counts;
    uint32_t height, width; /* the image's: the RLE's size [h, w] */
    uint64_t area;          /* set pixels: the sum of the odd counts */
    int32_t bbox[4];        /* x, y, w, h: w = x_max - x_min (inclusive max), as the reference */
    float predicted_iou;
    double point_coords[2]; /* the prompt (x, y) in the image */
    float stability_score;
    int32_t crop_box[4]; /* x, y, w, h of the crop the mask came from */
};

struct memfit_sam_masks {
    struct memfit_sam_mask *masks; /* in the reference's order */
    size_t n_masks;
    /* What stays reserved through the hooks' reserve callback and counted
     * against max_data_bytes: the records and their RLEs (give it back
     * after memfit_sam_masks_free) */
    uint64_t data_bytes;
};

/* Frees the records and their RLEs; accepts a zeroed or already freed set. */
MEMFIT_API void memfit_sam_masks_free(struct memfit_sam_masks *masks);

/*
 * Gives the image embedding (prompt_dim x G x G floats, as memfit_sam_encode
 * writes it) of crop `crop_index` (0 is the whole image, crop_box [0, 0, W,
 * H] XYXY, `crop` the image itself; the others are copies of the crop).
 * Lets an engine serve the whole image's embedding from a cache. A status
 * other than OK stops the generation with it.
 */
typedef enum memfit_status (*memfit_sam_embed_fn)(void *user, size_t crop_index,
                                                  const int32_t crop_box[4],
                                                  const struct memfit_image *crop,
                                                  float *embedding);

/*
 * Asked before the generation's data-dependent memory (the records, their
 * RLEs, the per-crop scores and boxes) grows by `bytes`; a status other
 * than OK stops the generation with it (E_BUDGET, say). `bytes` negative
 * gives memory back and its status is ignored.
 */
typedef enum memfit_status (*memfit_sam_reserve_fn)(void *user, int64_t bytes);

/* How a generation gets its embeddings and its data-dependent memory. */
struct memfit_sam_amg_hooks {
    memfit_sam_embed_fn embed; /* NULL: preprocess + encode in a planned workspace */
    void *embed_user;
    memfit_sam_reserve_fn reserve; /* may be NULL */
    void *reserve_user;
    uint64_t max_data_bytes;    /* 0: no cap; else E_BUDGET past it */
    memfit_cancel_fn cancelled; /* asked before each batch; may be NULL (E_CANCELLED) */
    void *cancel_user;
};

/*
 * The exact bytes a generation of a width x height image allocates whatever
 * the image shows: the decoder workspace and one batch of low-res masks
 * (points_per_batch x 3 x mask_size^2 floats), the embedding, one crop-size
 * logits, mask and postprocess scratch (image_size^2 floats), the crop copy
 * with crop layers, the point grid, memfit_sam_remove_small_regions' scratch
 * (8 bytes a pixel, which it allocates per mask) with min_mask_region_area,
 * and, when `hooks` or hooks->embed is NULL, the encoder's workspace, the
 * pixels and the preprocess scratch. Not included, as they depend on what
 * is found: the records (their array at its capacity) and their RLEs, and
 * while an NMS runs the boxes, scores, order and a record's copy of each
 * mask it sees (all through hooks->reserve and max_data_bytes), plus
 * memfit_sam_nms' own 17 bytes per box.
 * E_RANGE for bad parameters or an empty image (nothing written then).
 */
MEMFIT_API enum memfit_status memfit_sam_amg_plan(const memfit_sam *m,
                                                  const struct memfit_sam_amg_params *params,
                                                  const struct memfit_sam_amg_hooks *hooks,
                                                  uint32_t width, uint32_t height,
                                                  size_t *fixed_bytes);

/*
 * Generates the masks of `img` as SamAutomaticMaskGenerator.generate does:
 * crop boxes; per crop its embedding, the point grid scaled to the crop and
 * decoded in batches of points_per_batch (one point, label 1, 3 masks each),
 * per mask the predicted-IoU filter, the upsampling to the crop's size, the
 * stability filter, the box and the crop-edge filter; NMS per crop (by
 * predicted IoU), then across crops (by 1 / crop area); then, with
 * min_mask_region_area, holes filled and islands removed and NMS again
 * (threshold max(box, crop)). Memory is memfit_sam_amg_plan's, allocated
 * once, plus the data-dependent part; masks are upsampled one at a time.
 * `params` NULL: the defaults; `hooks` may be NULL. `out` is written only on
 * success (free it with memfit_sam_masks_free). Errors: those of
 * memfit_sam_amg_params_check, E_RANGE for an empty image, the embed
 * callback's, the reserve callback's, E_BUDGET past max_data_bytes, E_NOMEM.
 */
MEMFIT_API enum memfit_status memfit_sam_generate(memfit_sam *m, const struct memfit_image *img,
                                                  const struct memfit_sam_amg_params *params,
                                                  const struct memfit_sam_amg_hooks *hooks,
                                                  struct memfit_sam_masks *out);

#ifdef __cplusplus
}
#endif

#endif

/*
 * Internal side of the LLM engine (Qwen2, LLaMA): the loaded model, views
 * into the GGUF mapping, shared by the loader and planner (llm.c) and the
 * sessions and forward pass (llm_eval.c).
 */
#ifndef MF_MODELS_LLM_H
#define MF_MODELS_LLM_H

#include "memfit/format.h"
#include "memfit/models.h"
#include "memfit/tensor.h"
#include "tensor/kernels.h"

/* A weight matrix used in place: `rows` rows of `cols` elements of `type`. */
struct llm_mat {
    enum memfit_type type;       /* MEMFIT_TYPE_NF4: bitsandbytes' layout, in `nf4` */
    enum memfit_type dot_type;   /* the activation row type of its dot product */
    mf_vec_dot_fn dot;           /* the kernel in use (the traits' vec_dot); NULL for NF4 */
    mf_vec_dot_cols_fn dot_cols; /* its multi-column kernel, or NULL: dot per column */
    const void *data;
    size_t row_bytes;
    uint32_t rows;
    uint32_t cols;
    struct memfit_nf4_matrix nf4; /* NF4 only: codes and scales in the mapping */
};

struct llm_layer {
    const float *attn_norm, *ffn_norm; /* [n_embd] */
    struct llm_mat q;                  /* [n_head * head_dim, n_embd] */
    struct llm_mat k, v;               /* [n_head_kv * head_dim, n_embd] */
    struct llm_mat o;                  /* [n_embd, n_head * head_dim] */
    const float *bq, *bk, *bv, *bo;    /* biases or NULL */
    struct llm_mat gate, up;           /* [n_ff, n_embd] */
    struct llm_mat down;               /* [n_embd, n_ff] */
};

struct memfit_llm {
    memfit_tensors *set;
    struct memfit_llm_info info;
    uint64_t converted_bytes; /* 1-D parameters converted to F32 */
    struct llm_mat tok_embd;  /* [n_vocab, n_embd] */
    struct llm_mat output;    /* [n_vocab, n_embd]: output.weight or tok_embd when tied */
    const float *output_norm; /* [n_embd] */
    const float *rope_freqs;  /* [n_rot / 2] frequency divisors (rope_freqs.weight) or NULL */
    struct llm_layer *layers; /* [n_layer] */
    float *floats;            /* converted 1-D parameters (NULL when all were F32) */
};

/* Sequences one forward may carry at most (the sessions of a group). */
#define LLM_MAX_SEQ 64

/* One row of a forward: a token of one session at one position. */
struct llm_row {
    struct memfit_llm_session *s;
    uint32_t pos;
    int32_t token;
};

/* Workspace layout for the given info and options (byte offsets): a session's,
 * or a group's of n_seq sessions that share it. */
struct llm_layout {
    uint32_t n_ctx, n_batch;
    uint32_t n_seq;  /* sequences one forward carries: 1, or a group's sessions */
    uint32_t n_rows; /* rows of one forward: n_batch of prompts, plus n_seq tokens (group) */
    unsigned n_threads;
    enum memfit_type kv_type;
    size_t kv_row_bytes;   /* one head's row of head_dim elements of kv_type */
    size_t kv_layer_bytes; /* K (or V) of one layer: n_head_kv x n_ctx rows */
    size_t kv_bytes;       /* K and V of every layer */
    /* Workspace, after the KV cache; offsets from the start of the workspace. */
    size_t x, xn, q, kv, att, ffn, rope, act_q8_0, act_q8_k, rows, threads, thread_bytes;
    size_t act_q8_0_bytes, act_q8_k_bytes;  /* one row of each; n_seq rows of each are held */
    size_t t_scores, t_qrow, t_acc, t_vrow; /* inside one thread's area */
    size_t t_wrow; /* an NF4 weight row dequantized for a prompt (maxdim floats) */
    size_t work_bytes;
};

/* Fills `L` for a model of `info` under `opts` (already defaulted), for n_seq
 * sequences per forward (1: a session of its own); E_RANGE / E_UNSUPPORTED as
 * memfit_llm_plan_for. */
enum memfit_status mf_llm_layout(const struct memfit_llm_info *info,
                                 const struct memfit_llm_options *opts, uint32_t n_seq,
                                 struct llm_layout *L);

#endif

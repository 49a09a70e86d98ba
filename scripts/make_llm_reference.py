#!/usr/bin/python3
"""Makes the LLM test fixtures: tiny random-weight Qwen2 and LLaMA models
written straight to GGUF (a small writer below, no gguf package), and the
logits of an independent PyTorch forward written here by hand from the
published architectures (HF modeling_qwen2 / modeling_llama: RMSNorm in
float, q/k/v projections with Qwen2's biases, rotate_half rotary with
rope_theta and linear scaling, GQA by repeat_kv, causal softmax attention
scaled by 1/sqrt(head_dim), SwiGLU MLP, final norm, lm_head or the tied
embedding). transformers is not used.

The forward runs in float64 from the weights as stored (F16 for the 2-D
matrices, to keep the fixtures small; F32 for norms and biases), so the
C engine's F16 and F32 paths are both checked against exact values.

LLaMA's q/k weights are stored as llama.cpp's converter stores them:
permuted so that rotary pairs are consecutive (NORM rope), while the
reference rotates halves as HF does; a match proves the layout.

Each GGUF also carries a tiny byte-level GPT-2 vocabulary (256 byte tokens
in bytes_to_unicode order, a few merges, "<|endoftext|>", "<|im_start|>",
"<|im_end|>") so tokenizer code can load the same files.

Usage:
  scripts/make_llm_reference.py [OUTDIR]      fixtures (default tests/fixtures/llm)
  scripts/make_llm_reference.py --bench PATH [SHAPE]
                                              a random F16 model for bench_llm
                                              (SHAPE: small (default), qwen1.5-1.8b)

Outputs (little-endian):
  <model>.gguf              the model
  <case>.logits.bin         float32 [n_prompt, n_vocab]: logits at every prompt position
  cases.txt                 one line per case: name model variant, the prompt ids, '|',
                            the 16 greedy continuation ids, '|', the smallest top-1/top-2
                            logit margin seen along the continuation
  hf_<model>/               the same model as a Hugging Face directory (config.json,
                            safetensors with HF names and the unpermuted q/k, tokenizer.json,
                            tokenizer_config.json): `memfit convert` must make of it a GGUF
                            whose logits are the same reference ones; llama_gqa is sharded
                            in two files with model.safetensors.index.json
Variants the C test makes from a model by rewriting its metadata:
  base       as stored
  linear2    <arch>.rope.scaling.type = "linear", <arch>.rope.scaling.factor = 2
  freqs      a rope_freqs.weight tensor [head_dim / 2], value 1 + 0.25 i (LLaMA 3.1 style)
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch

# ---- GGUF writer ----------------------------------------------------------

GGUF_U32, GGUF_I32, GGUF_F32, GGUF_BOOL, GGUF_STRING, GGUF_ARRAY = 4, 5, 6, 7, 8, 9
T_F32, T_F16 = 0, 1
ALIGN = 32


def _str(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def _value(kind, v):
    if kind == GGUF_U32:
        return struct.pack("<I", v)
    if kind == GGUF_I32:
        return struct.pack("<i", v)
    if kind == GGUF_F32:
        return struct.pack("<f", v)
    if kind == GGUF_BOOL:
        return struct.pack("<B", 1 if v else 0)
    if kind == GGUF_STRING:
        return _str(v)
    raise ValueError(kind)


def write_gguf(path, meta, tensors):
    """meta: list of (key, kind, value) with kind a GGUF type id, or
    (key, GGUF_ARRAY, (elem_kind, values)); tensors: list of (name, numpy array)
    (float32 or float16, shape outermost first as numpy has it)."""
    out = bytearray()
    out += b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(meta))
    for key, kind, v in meta:
        out += _str(key) + struct.pack("<I", kind)
        if kind == GGUF_ARRAY:
            ek, vals = v
            out += struct.pack("<IQ", ek, len(vals))
            for x in vals:
                out += _value(ek, x)
        else:
            out += _value(kind, v)
    offset = 0
    blobs = []
    for name, a in tensors:
        a = np.ascontiguousarray(a)
        ttype = T_F16 if a.dtype == np.float16 else T_F32
        assert a.dtype in (np.float16, np.float32)
        out += _str(name) + struct.pack("<I", a.ndim)
        for d in reversed(a.shape):  # ggml's ne[]: innermost first
            out += struct.pack("<Q", d)
        out += struct.pack("<IQ", ttype, offset)
        data = a.tobytes()
        pad = (-len(data)) % ALIGN
        blobs.append(data + b"\0" * pad)
        offset += len(data) + pad
    out += b"\0" * ((-len(out)) % ALIGN)
    with open(path, "wb") as f:
        f.write(out)
        for b in blobs:
            f.write(b)


# ---- Tiny GPT-2 byte-level vocabulary -------------------------------------


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return bs, [chr(c) for c in cs]


MERGES = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a", "e r", "o n", "Ġ s", "r e", "a t",
          "e n", "Ġ w", "o r", "i s", "Ġ o", "Ġ c", "a n", "Ġ b", "e s", "Ġ f"]
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
          "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt "
          "%}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def vocab():
    _, chars = bytes_to_unicode()
    tokens = list(chars)
    for m in MERGES:
        a, b = m.split(" ")
        tokens.append(a + b)
    types = [1] * len(tokens) + [3] * len(SPECIALS)
    tokens += SPECIALS
    assert len(set(tokens)) == len(tokens)
    return tokens, types


def tokenizer_meta(pre):
    tokens, types = vocab()
    eot = tokens.index("<|endoftext|>")
    im_end = tokens.index("<|im_end|>")
    return [
        ("tokenizer.ggml.model", GGUF_STRING, "gpt2"),
        ("tokenizer.ggml.pre", GGUF_STRING, pre),
        ("tokenizer.ggml.tokens", GGUF_ARRAY, (GGUF_STRING, tokens)),
        ("tokenizer.ggml.token_type", GGUF_ARRAY, (GGUF_I32, types)),
        ("tokenizer.ggml.merges", GGUF_ARRAY, (GGUF_STRING, MERGES)),
        ("tokenizer.ggml.bos_token_id", GGUF_U32, eot),
        ("tokenizer.ggml.eos_token_id", GGUF_U32, im_end),
        ("tokenizer.ggml.padding_token_id", GGUF_U32, eot),
        ("tokenizer.ggml.add_bos_token", GGUF_BOOL, False),
        ("tokenizer.chat_template", GGUF_STRING, CHATML),
    ]


# ---- Models ---------------------------------------------------------------


class Config:
    def __init__(self, arch, n_embd, n_head, n_kv, n_ff, n_layer, tied, bias, theta, eps, seed):
        self.arch, self.n_embd, self.n_head, self.n_kv = arch, n_embd, n_head, n_kv
        self.n_ff, self.n_layer, self.tied, self.bias = n_ff, n_layer, tied, bias
        self.theta, self.eps, self.seed = theta, eps, seed
        self.hd = n_embd // n_head
        self.n_vocab = len(vocab()[0])


def make_weights(c):
    """HF-layout weights (q/k not permuted), 2-D rounded to F16, as float64 tensors."""
    g = torch.Generator().manual_seed(c.seed)

    def rn(*shape, std):
        return torch.randn(*shape, generator=g, dtype=torch.float32) * std

    def mat(*shape, std):
        return rn(*shape, std=std).half().double()

    def vec(*shape, std, base=0.0):
        return (base + rn(*shape, std=std)).double()

    E, F, hd = c.n_embd, c.n_ff, c.hd
    # A small embedding keeps a tied head from just echoing the input token.
    w = {"embed": mat(c.n_vocab, E, std=0.3 if c.tied else 1.0)}
    for L in range(c.n_layer):
        p = "l%d." % L
        w[p + "in_norm"] = vec(E, std=0.1, base=1.0)
        # q/k a little large so attention is not uniform.
        w[p + "q"] = mat(c.n_head * hd, E, std=2.0 / math.sqrt(E))
        w[p + "k"] = mat(c.n_kv * hd, E, std=2.0 / math.sqrt(E))
        w[p + "v"] = mat(c.n_kv * hd, E, std=1.0 / math.sqrt(E))
        if c.bias:
            w[p + "bq"] = vec(c.n_head * hd, std=0.2)
            w[p + "bk"] = vec(c.n_kv * hd, std=0.2)
            w[p + "bv"] = vec(c.n_kv * hd, std=0.2)
        w[p + "o"] = mat(E, c.n_head * hd, std=1.0 / math.sqrt(c.n_head * hd))
        w[p + "post_norm"] = vec(E, std=0.1, base=1.0)
        w[p + "gate"] = mat(F, E, std=1.0 / math.sqrt(E))
        w[p + "up"] = mat(F, E, std=1.0 / math.sqrt(E))
        w[p + "down"] = mat(E, F, std=1.0 / math.sqrt(F))
    w["norm"] = vec(E, std=0.1, base=1.0)
    if not c.tied:
        # Large enough that the greedy choice has clear margins.
        w["lm_head"] = mat(c.n_vocab, E, std=3.0 / math.sqrt(E))
    return w


def rms_norm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def forward(c, w, ids, variant):
    """Logits [T, V] for token ids, float64, HF-style."""
    T, E, hd = len(ids), c.n_embd, c.hd
    x = w["embed"][torch.tensor(ids)]
    inv_freq = 1.0 / (c.theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    pos = torch.arange(T, dtype=torch.float64)
    if variant == "linear2":
        pos = pos / 2.0
    if variant == "freqs":
        inv_freq = inv_freq / (1.0 + 0.25 * torch.arange(hd // 2, dtype=torch.float64))
    freqs = torch.outer(pos, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)
    group = c.n_head // c.n_kv
    for L in range(c.n_layer):
        p = "l%d." % L
        h = rms_norm(x, w[p + "in_norm"], c.eps)
        q, k, v = h @ w[p + "q"].T, h @ w[p + "k"].T, h @ w[p + "v"].T
        if c.bias:
            q, k, v = q + w[p + "bq"], k + w[p + "bk"], v + w[p + "bv"]
        q = q.view(T, c.n_head, hd).transpose(0, 1)
        k = k.view(T, c.n_kv, hd).transpose(0, 1)
        v = v.view(T, c.n_kv, hd).transpose(0, 1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(group, dim=0)
        v = v.repeat_interleave(group, dim=0)
        s = q @ k.transpose(1, 2) / math.sqrt(hd) + mask
        a = torch.softmax(s, dim=-1) @ v
        a = a.transpose(0, 1).reshape(T, c.n_head * hd)
        x = x + a @ w[p + "o"].T
        h = rms_norm(x, w[p + "post_norm"], c.eps)
        g = h @ w[p + "gate"].T
        x = x + (g * torch.sigmoid(g) * (h @ w[p + "up"].T)) @ w[p + "down"].T
    x = rms_norm(x, w["norm"], c.eps)
    return x @ (w["embed"] if c.tied else w["lm_head"]).T


def permute(m, n_head):
    """llama.cpp convert_hf_to_gguf's LlamaModel.permute: halves -> consecutive pairs."""
    m = m.numpy() if isinstance(m, torch.Tensor) else m
    return (m.reshape(n_head, 2, m.shape[0] // n_head // 2, *m.shape[1:])
            .swapaxes(1, 2).reshape(m.shape))


def gguf_tensors(c, w):
    def f16(t):
        return t.numpy().astype(np.float16)

    def f32(t):
        return t.numpy().astype(np.float32)

    out = [("token_embd.weight", f16(w["embed"]))]
    for L in range(c.n_layer):
        p, b = "l%d." % L, "blk.%d." % L
        q, k = w[p + "q"], w[p + "k"]
        if c.arch == "llama":
            q = torch.from_numpy(permute(q, c.n_head))
            k = torch.from_numpy(permute(k, c.n_kv))
        out.append((b + "attn_norm.weight", f32(w[p + "in_norm"])))
        out.append((b + "attn_q.weight", f16(q)))
        out.append((b + "attn_k.weight", f16(k)))
        out.append((b + "attn_v.weight", f16(w[p + "v"])))
        if c.bias:
            bq, bk = w[p + "bq"], w[p + "bk"]
            if c.arch == "llama":
                bq = torch.from_numpy(permute(bq, c.n_head))
                bk = torch.from_numpy(permute(bk, c.n_kv))
            out.append((b + "attn_q.bias", f32(bq)))
            out.append((b + "attn_k.bias", f32(bk)))
            out.append((b + "attn_v.bias", f32(w[p + "bv"])))
        out.append((b + "attn_output.weight", f16(w[p + "o"])))
        out.append((b + "ffn_norm.weight", f32(w[p + "post_norm"])))
        out.append((b + "ffn_gate.weight", f16(w[p + "gate"])))
        out.append((b + "ffn_up.weight", f16(w[p + "up"])))
        out.append((b + "ffn_down.weight", f16(w[p + "down"])))
    out.append(("output_norm.weight", f32(w["norm"])))
    if not c.tied:
        out.append(("output.weight", f16(w["lm_head"])))
    return out


def gguf_meta(c, name):
    a = c.arch
    return [
        ("general.architecture", GGUF_STRING, a),
        ("general.name", GGUF_STRING, name),
        ("general.file_type", GGUF_U32, 1),
        (a + ".context_length", GGUF_U32, 256),
        (a + ".embedding_length", GGUF_U32, c.n_embd),
        (a + ".block_count", GGUF_U32, c.n_layer),
        (a + ".feed_forward_length", GGUF_U32, c.n_ff),
        (a + ".attention.head_count", GGUF_U32, c.n_head),
        (a + ".attention.head_count_kv", GGUF_U32, c.n_kv),
        (a + ".rope.dimension_count", GGUF_U32, c.hd),
        (a + ".rope.freq_base", GGUF_F32, c.theta),
        (a + ".attention.layer_norm_rms_epsilon", GGUF_F32, c.eps),
    ] + tokenizer_meta("qwen2" if a == "qwen2" else "llama-bpe")


MODELS = {
    # Qwen1.5-like: MHA, tied embedding (as Qwen2-0.5B), biases, head_dim 32 (KV Q8_0 works).
    "qwen2_mha": Config("qwen2", 64, 2, 2, 128, 2, True, True, 1000000.0, 1e-6, 11),
    # Qwen2.5-like: GQA 4/2, separate output, biases.
    "qwen2_gqa": Config("qwen2", 64, 4, 2, 128, 2, False, True, 10000.0, 1e-6, 12),
    # LLaMA: GQA 4/2, separate output, no biases.
    "llama_gqa": Config("llama", 64, 4, 2, 128, 2, False, False, 10000.0, 1e-5, 13),
}
CASES = [
    ("qwen2_mha", "qwen2_mha", "base"),
    ("qwen2_gqa", "qwen2_gqa", "base"),
    ("llama_gqa", "llama_gqa", "base"),
    ("llama_gqa_linear2", "llama_gqa", "linear2"),
    ("llama_gqa_freqs", "llama_gqa", "freqs"),
]
N_PROMPT, N_GEN = 12, 16


def prompt_ids(seed, n_vocab):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, n_vocab, (N_PROMPT,), generator=g).tolist()


def greedy(c, w, ids, variant):
    ids = list(ids)
    margin = float("inf")
    for _ in range(N_GEN):
        logits = forward(c, w, ids, variant)[-1]
        top = torch.topk(logits, 2).values
        margin = min(margin, float(top[0] - top[1]))
        ids.append(int(torch.argmax(logits)))
    return ids[N_PROMPT:], margin


# ---- The same models as Hugging Face directories --------------------------

ST_DTYPE = {np.dtype(np.float16): "F16", np.dtype(np.float32): "F32"}


def write_safetensors(path, tensors):
    """tensors: list of (name, numpy array); the header as the reference writer lays it out
    (sorted keys, data in the given order, padded with spaces to a multiple of 8)."""
    header, blobs, offset = {}, [], 0
    for name, a in tensors:
        a = np.ascontiguousarray(a)
        data = a.tobytes()
        header[name] = {"dtype": ST_DTYPE[a.dtype], "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * ((-len(text)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for b in blobs:
            f.write(b)
    return offset


def hf_tensors(c, w):
    """HF names, HF layout (q/k rows in halves, never permuted), F16 matrices, F32 vectors."""
    def f16(t):
        return t.numpy().astype(np.float16)

    def f32(t):
        return t.numpy().astype(np.float32)

    out = [("model.embed_tokens.weight", f16(w["embed"]))]
    for L in range(c.n_layer):
        p, b = "l%d." % L, "model.layers.%d." % L
        out.append((b + "input_layernorm.weight", f32(w[p + "in_norm"])))
        for proj in "qkv":
            out.append((b + "self_attn.%s_proj.weight" % proj, f16(w[p + proj])))
            if c.bias:
                out.append((b + "self_attn.%s_proj.bias" % proj, f32(w[p + "b" + proj])))
        out.append((b + "self_attn.o_proj.weight", f16(w[p + "o"])))
        out.append((b + "post_attention_layernorm.weight", f32(w[p + "post_norm"])))
        out.append((b + "mlp.gate_proj.weight", f16(w[p + "gate"])))
        out.append((b + "mlp.up_proj.weight", f16(w[p + "up"])))
        out.append((b + "mlp.down_proj.weight", f16(w[p + "down"])))
    out.append(("model.norm.weight", f32(w["norm"])))
    if not c.tied:
        out.append(("lm_head.weight", f16(w["lm_head"])))
    return out


# The pre-tokenizer regexes of Qwen2's and Llama 3's tokenizer.json (GGUF's "qwen2", "llama-bpe").
HF_REGEX = {
    "qwen2": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+"
             r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    "llama": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+"
             r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
}


def hf_tokenizer(arch):
    """tokenizer.json and tokenizer_config.json for the vocabulary of vocab()."""
    tokens, types = vocab()
    n_base = len(tokens) - len(SPECIALS)
    added = [{"id": n_base + i, "content": s, "single_word": False, "lstrip": False,
              "rstrip": False, "normalized": False, "special": True}
             for i, s in enumerate(SPECIALS)]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                  "use_regex": False}
    tok = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "NFC"} if arch == "qwen2" else None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": HF_REGEX[arch]}, "behavior": "Isolated",
             "invert": False}, byte_level]},
        "post_processor": dict(byte_level, trim_offsets=False),
        "decoder": dict(byte_level, trim_offsets=True),
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": "", "end_of_word_suffix": "", "fuse_unk": False,
                  "byte_fallback": False, "ignore_merges": arch == "llama",
                  "vocab": {t: i for i, t in enumerate(tokens[:n_base])}, "merges": MERGES},
    }
    config = {
        "add_bos_token": False, "add_eos_token": False, "bos_token": "<|endoftext|>",
        "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "unk_token": None,
        "chat_template": CHATML, "model_max_length": 256, "clean_up_tokenization_spaces": False,
        "added_tokens_decoder": {str(a["id"]): {k: v for k, v in a.items() if k != "id"}
                                 for a in added},
        "tokenizer_class": "Qwen2Tokenizer" if arch == "qwen2" else "PreTrainedTokenizerFast",
    }
    return tok, config


def hf_config(c):
    return {
        "architectures": ["Qwen2ForCausalLM" if c.arch == "qwen2" else "LlamaForCausalLM"],
        "model_type": c.arch, "hidden_act": "silu", "torch_dtype": "float16",
        "hidden_size": c.n_embd, "intermediate_size": c.n_ff, "num_hidden_layers": c.n_layer,
        "num_attention_heads": c.n_head, "num_key_value_heads": c.n_kv,
        "max_position_embeddings": 256, "rms_norm_eps": c.eps, "rope_theta": c.theta,
        "rope_scaling": None, "vocab_size": c.n_vocab, "tie_word_embeddings": c.tied,
        "attention_bias": c.bias, "use_cache": True,
    }


def write_hf(outdir, name, c, w, shards):
    d = os.path.join(outdir, "hf_" + name)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        os.unlink(os.path.join(d, f))

    def dump(fname, obj):
        with open(os.path.join(d, fname), "w") as f:
            json.dump(obj, f, indent=2, ensure_ascii=False)
            f.write("\n")

    dump("config.json", hf_config(c))
    tok, tok_config = hf_tokenizer(c.arch)
    dump("tokenizer.json", tok)
    dump("tokenizer_config.json", tok_config)
    tensors = hf_tensors(c, w)
    if shards == 1:
        write_safetensors(os.path.join(d, "model.safetensors"), tensors)
        return
    # Split by layer as transformers' save_pretrained does: whole tensors per file.
    per = (len(tensors) + shards - 1) // shards
    weight_map, total = {}, 0
    for s in range(shards):
        fname = "model-%05d-of-%05d.safetensors" % (s + 1, shards)
        part = tensors[s * per:(s + 1) * per]
        total += write_safetensors(os.path.join(d, fname), part)
        weight_map.update({n: fname for n, _ in part})
    dump("model.safetensors.index.json", {"metadata": {"total_size": total},
                                          "weight_map": dict(sorted(weight_map.items()))})


def make_fixtures(outdir):
    os.makedirs(outdir, exist_ok=True)
    weights = {}
    for name, c in MODELS.items():
        w = make_weights(c)
        weights[name] = w
        write_gguf(os.path.join(outdir, name + ".gguf"), gguf_meta(c, name), gguf_tensors(c, w))
        write_hf(outdir, name, c, w, 2 if name == "llama_gqa" else 1)
    lines = ["# case model variant prompt_ids... | greedy_ids... | min_margin"]
    for case, model, variant in CASES:
        c, w = MODELS[model], weights[model]
        ids = prompt_ids(100 + len(lines), c.n_vocab)
        logits = forward(c, w, ids, variant)
        with open(os.path.join(outdir, case + ".logits.bin"), "wb") as f:
            f.write(logits.numpy().astype("<f4").tobytes())
        cont, margin = greedy(c, w, ids, variant)
        # The C side must reproduce the greedy choice: keep clear of near-ties.
        assert margin > 2e-3, (case, margin)
        lines.append("%s %s %s %s | %s | %.4g" % (case, model, variant, " ".join(map(str, ids)),
                                                  " ".join(map(str, cont)), margin))
        print("%s: logits range %.2f..%.2f, greedy %s, min margin %.4g" %
              (case, float(logits.min()), float(logits.max()), cont, margin))
    with open(os.path.join(outdir, "cases.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


# ---- A random model for bench_llm -----------------------------------------

SHAPES = {
    "small": Config("qwen2", 512, 8, 8, 1408, 8, False, True, 1000000.0, 1e-6, 1),
    "qwen1.5-1.8b": Config("qwen2", 2048, 16, 16, 5504, 24, False, True, 1000000.0, 1e-6, 1),
}


def make_bench(path, shape):
    """F16 weights written tensor by tensor (numpy, never the whole model in memory)."""
    c = SHAPES[shape]
    c.n_vocab_bench = 151936 if shape != "small" else 32000
    rng = np.random.default_rng(1)
    E, F, hd = c.n_embd, c.n_ff, c.hd

    def mat(rows, cols, std):
        return (rng.standard_normal((rows, cols), dtype=np.float32) * std).astype(np.float16)

    def vec(n, base, std):
        return (base + rng.standard_normal(n, dtype=np.float32) * std).astype(np.float32)

    specs = [("token_embd.weight", lambda: mat(c.n_vocab_bench, E, 1.0))]
    for L in range(c.n_layer):
        b = "blk.%d." % L
        specs += [
            (b + "attn_norm.weight", lambda: vec(E, 1.0, 0.1)),
            (b + "attn_q.weight", lambda: mat(c.n_head * hd, E, 1 / math.sqrt(E))),
            (b + "attn_k.weight", lambda: mat(c.n_kv * hd, E, 1 / math.sqrt(E))),
            (b + "attn_v.weight", lambda: mat(c.n_kv * hd, E, 1 / math.sqrt(E))),
            (b + "attn_q.bias", lambda: vec(c.n_head * hd, 0.0, 0.1)),
            (b + "attn_k.bias", lambda: vec(c.n_kv * hd, 0.0, 0.1)),
            (b + "attn_v.bias", lambda: vec(c.n_kv * hd, 0.0, 0.1)),
            (b + "attn_output.weight", lambda: mat(E, c.n_head * hd, 1 / math.sqrt(E))),
            (b + "ffn_norm.weight", lambda: vec(E, 1.0, 0.1)),
            (b + "ffn_gate.weight", lambda: mat(F, E, 1 / math.sqrt(E))),
            (b + "ffn_up.weight", lambda: mat(F, E, 1 / math.sqrt(E))),
            (b + "ffn_down.weight", lambda: mat(E, F, 1 / math.sqrt(F))),
        ]
    specs += [("output_norm.weight", lambda: vec(E, 1.0, 0.1)),
              ("output.weight", lambda: mat(c.n_vocab_bench, E, 1 / math.sqrt(E)))]
    meta = gguf_meta(c, "bench-" + shape)
    # No tokenizer: bench_llm feeds token ids; keep the key count right.
    meta = [m for m in meta if not m[0].startswith("tokenizer.")]
    # Shapes and offsets first (the header), then the data tensor by tensor.
    shapes = []
    for name, _ in specs:
        if name == "token_embd.weight" or name == "output.weight":
            shapes.append((name, (c.n_vocab_bench, E), np.float16))
        elif name.endswith("norm.weight"):
            shapes.append((name, (E,), np.float32))
        elif name.endswith("bias"):
            n = c.n_head * hd if "attn_q" in name else c.n_kv * hd
            shapes.append((name, (n,), np.float32))
        elif "ffn_down" in name:
            shapes.append((name, (E, F), np.float16))
        elif "ffn_" in name:
            shapes.append((name, (F, E), np.float16))
        elif "attn_output" in name:
            shapes.append((name, (E, c.n_head * hd), np.float16))
        elif "attn_q" in name:
            shapes.append((name, (c.n_head * hd, E), np.float16))
        else:
            shapes.append((name, (c.n_kv * hd, E), np.float16))
    head = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(specs), len(meta)))
    for key, kind, v in meta:
        head += _str(key) + struct.pack("<I", kind) + _value(kind, v)
    offset = 0
    for name, shape, dt in shapes:
        head += _str(name) + struct.pack("<I", len(shape))
        for d in reversed(shape):
            head += struct.pack("<Q", d)
        n = int(np.prod(shape)) * np.dtype(dt).itemsize
        head += struct.pack("<IQ", T_F16 if dt == np.float16 else T_F32, offset)
        offset += n + (-n) % ALIGN
    head += b"\0" * ((-len(head)) % ALIGN)
    with open(path, "wb") as f:
        f.write(head)
        for (name, make), (_, shape, dt) in zip(specs, shapes):
            a = make()
            assert a.shape == shape and a.dtype == dt, name
            data = a.tobytes()
            f.write(data + b"\0" * ((-len(data)) % ALIGN))
    print("wrote %s (%s, %.1f MB)" % (path, shape, os.path.getsize(path) / 1e6))


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--bench":
        make_bench(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "small")
    else:
        make_fixtures(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/llm")

#!/usr/bin/python3
"""make_llm_model.py: writes a Qwen2-architecture GGUF with random weights for
the LLM benchmarks (no real weights can be downloaded here).

The default shape is Qwen1.5-1.8B's (n_embd 2048, 24 layers, 16 heads and
16 KV heads, n_ff 5504, vocab 151936, q/k/v biases, untied output head):
about 1.84 G parameters, a 3.7 GB F16 file. --small writes a ~100 M
parameter model of the same architecture for quick runs.

Weights are normal * 0.02 in F16, norms are ones and biases small normals in
F32, so activations stay finite. The metadata follows llama.cpp's GGUF
conventions for arch "qwen2", with a synthetic byte-level GPT-2 style
tokenizer: the 256 byte characters (bytes_to_unicode), filler tokens up to
the vocabulary size, and Qwen's <|endoftext|>, <|im_start|>, <|im_end|>.
The file is written tensor by tensor in chunks, so memory stays small.

Usage: make_llm_model.py [--small] [--seed N] [OUT]
  (default OUT /tmp/memfit_llm_bench/qwen1.8b-f16.gguf, or
   /tmp/memfit_llm_bench/qwen-small-f16.gguf with --small)
"""
import argparse
import os
import struct
import sys

import numpy as np

GGUF_ALIGN = 32
T_U32, T_I32, T_F32, T_BOOL, T_STR, T_ARR = 4, 5, 6, 7, 8, 9
GGML_F32, GGML_F16 = 0, 1
CHUNK = 1 << 22  # elements generated at a time


def bytes_to_unicode():
    """GPT-2's map from the 256 byte values to printable characters."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) +
          list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def gguf_str(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def kv(key, vtype, value):
    out = gguf_str(key) + struct.pack("<I", vtype)
    if vtype == T_STR:
        return out + gguf_str(value)
    if vtype == T_ARR:
        etype, items = value
        out += struct.pack("<IQ", etype, len(items))
        if etype == T_STR:
            return out + b"".join(gguf_str(s) for s in items)
        return out + np.asarray(items, dtype="<i4" if etype == T_I32 else "<u4").tobytes()
    fmt = {T_U32: "<I", T_I32: "<i", T_F32: "<f", T_BOOL: "<?"}[vtype]
    return out + struct.pack(fmt, value)


def shapes(cfg):
    """(name, dims with the row length first, ggml type, kind) in file order."""
    e, f, v = cfg["n_embd"], cfg["n_ff"], cfg["n_vocab"]
    out = [("token_embd.weight", (e, v), GGML_F16, "w")]
    for i in range(cfg["n_layer"]):
        p = "blk.%d." % i
        out += [(p + "attn_norm.weight", (e,), GGML_F32, "one"),
                (p + "attn_q.weight", (e, e), GGML_F16, "w"),
                (p + "attn_q.bias", (e,), GGML_F32, "b"),
                (p + "attn_k.weight", (e, e), GGML_F16, "w"),
                (p + "attn_k.bias", (e,), GGML_F32, "b"),
                (p + "attn_v.weight", (e, e), GGML_F16, "w"),
                (p + "attn_v.bias", (e,), GGML_F32, "b"),
                (p + "attn_output.weight", (e, e), GGML_F16, "w"),
                (p + "ffn_norm.weight", (e,), GGML_F32, "one"),
                (p + "ffn_gate.weight", (e, f), GGML_F16, "w"),
                (p + "ffn_up.weight", (e, f), GGML_F16, "w"),
                (p + "ffn_down.weight", (f, e), GGML_F16, "w")]
    out += [("output_norm.weight", (e,), GGML_F32, "one"),
            ("output.weight", (e, v), GGML_F16, "w")]
    return out


def metadata(cfg):
    b2u = bytes_to_unicode()
    tokens = [b2u[b] for b in range(256)]
    n_special = 3
    eos = cfg["n_vocab"] - 293  # Qwen's 151643 for the full vocabulary
    tokens += ["<f%d>" % i for i in range(len(tokens), eos)]
    tokens += ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokens += ["<|extra_%d|>" % i for i in range(cfg["n_vocab"] - len(tokens))]
    types = [1] * eos + [3] * n_special + [4] * (cfg["n_vocab"] - eos - n_special)
    arch = "qwen2"
    template = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
                "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
                "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
    return [
        kv("general.architecture", T_STR, arch),
        kv("general.name", T_STR, cfg["name"]),
        kv("general.file_type", T_U32, 1),
        kv("general.alignment", T_U32, GGUF_ALIGN),
        kv(arch + ".block_count", T_U32, cfg["n_layer"]),
        kv(arch + ".context_length", T_U32, 32768),
        kv(arch + ".embedding_length", T_U32, cfg["n_embd"]),
        kv(arch + ".feed_forward_length", T_U32, cfg["n_ff"]),
        kv(arch + ".attention.head_count", T_U32, cfg["n_head"]),
        kv(arch + ".attention.head_count_kv", T_U32, cfg["n_head"]),
        kv(arch + ".rope.freq_base", T_F32, 1000000.0),
        kv(arch + ".attention.layer_norm_rms_epsilon", T_F32, 1e-6),
        kv("tokenizer.ggml.model", T_STR, "gpt2"),
        kv("tokenizer.ggml.pre", T_STR, "qwen2"),
        kv("tokenizer.ggml.tokens", T_ARR, (T_STR, tokens)),
        kv("tokenizer.ggml.token_type", T_ARR, (T_I32, types)),
        kv("tokenizer.ggml.merges", T_ARR, (T_STR, ["Ġ Ġ"])),
        kv("tokenizer.ggml.eos_token_id", T_U32, eos + 2),
        kv("tokenizer.ggml.bos_token_id", T_U32, eos),
        kv("tokenizer.ggml.padding_token_id", T_U32, eos),
        kv("tokenizer.ggml.add_bos_token", T_BOOL, False),
        kv("tokenizer.chat_template", T_STR, template),
    ]


def pad(f):
    f.write(b"\0" * (-f.tell() % GGUF_ALIGN))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", nargs="?")
    ap.add_argument("--small", action="store_true", help="~100M-parameter shape")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    if a.small:
        cfg = dict(name="qwen-small-random", n_embd=768, n_layer=8, n_head=12, n_ff=2048,
                   n_vocab=32000)
    else:
        cfg = dict(name="qwen1.5-1.8b-random", n_embd=2048, n_layer=24, n_head=16, n_ff=5504,
                   n_vocab=151936)
    out = a.out or "/tmp/memfit_llm_bench/%s-f16.gguf" % ("qwen-small" if a.small else
                                                          "qwen1.8b")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    rng = np.random.default_rng(a.seed)
    tensors = shapes(cfg)
    meta = metadata(cfg)
    tmp = out + ".part"
    with open(tmp, "wb") as f:
        f.write(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(meta)))
        for m in meta:
            f.write(m)
        offset = 0
        for name, dims, gtype, _ in tensors:
            f.write(gguf_str(name) + struct.pack("<I", len(dims)))
            f.write(struct.pack("<%dQ" % len(dims), *dims))
            f.write(struct.pack("<IQ", gtype, offset))
            n = int(np.prod(dims))
            offset += n * (4 if gtype == GGML_F32 else 2) + (-(n * (4 if gtype == GGML_F32 else 2))
                                                             % GGUF_ALIGN)
        pad(f)
        for name, dims, gtype, kind in tensors:
            n = int(np.prod(dims))
            dt = "<f4" if gtype == GGML_F32 else "<f2"
            for s in range(0, n, CHUNK):
                k = min(CHUNK, n - s)
                if kind == "one":
                    v = np.ones(k, dtype=dt)
                else:
                    v = (rng.standard_normal(k, dtype=np.float32) * 0.02).astype(dt)
                f.write(v.tobytes())
            pad(f)
    os.replace(tmp, out)
    params = sum(int(np.prod(d)) for _, d, _, _ in tensors)
    print("%s: %s, %.2f G parameters, %.2f GB" % (out, cfg["name"], params / 1e9,
                                                   os.path.getsize(out) / 1e9))
    return 0


if __name__ == "__main__":
    sys.exit(main())

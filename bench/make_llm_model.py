#!/usr/bin/python3
"""make_llm_model.py: writes a Qwen2-architecture GGUF with random weights for
the LLM benchmarks (no real weights can be downloaded here). Python standard
library only.

The default shape is Qwen1.5-1.8B's (n_embd 2048, 24 layers, 16 heads and
16 KV heads, n_ff 5504, vocab 151936, q/k/v biases, untied output head):
about 1.84 G parameters, a 3.7 GB F16 file. --small writes a ~100 M
parameter model of the same architecture for quick runs; --layers, --vocab,
--embd, --heads and --ff change those of the chosen shape.

Weights are normal * 0.02 in F16, norms are ones and biases small normals in
F32, so activations stay finite. The normals are drawn once into a pool of
2^24 F16 values (inverse CDF of 16-bit uniforms); each chunk of a tensor is
a slice of the pool at a random offset with random signs, which is fast in
pure Python and leaves the rows of different matrices uncorrelated.

The metadata follows llama.cpp's GGUF conventions for arch "qwen2", with a
synthetic byte-level GPT-2 style tokenizer: the 256 byte characters
(bytes_to_unicode), the merges of every pair of lowercase letters and of a
space with each lowercase letter (each merged token is in the vocabulary),
filler tokens up to the vocabulary size, and Qwen's <|endoftext|>,
<|im_start|>, <|im_end|>. The file is written tensor by tensor in chunks,
so memory stays small.

Usage: make_llm_model.py [--small] [--layers N] [--vocab N] [--embd N] [--heads N]
                         [--ff N] [--seed N] [OUT]
  (default OUT /tmp/memfit_llm_bench/qwen1.8b-f16.gguf, or
   /tmp/memfit_llm_bench/qwen-small-f16.gguf with --small)
"""
import argparse
import array
import os
import random
import statistics
import struct
import sys

GGUF_ALIGN = 32
T_U32, T_I32, T_F32, T_BOOL, T_STR, T_ARR = 4, 5, 6, 7, 8, 9
GGML_F32, GGML_F16 = 0, 1
CHUNK = 1 << 22  # elements generated at a time
POOL = 1 << 24  # normals drawn once
N_SPECIAL = 3


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
        return out + struct.pack("<%d%s" % (len(items), "i" if etype == T_I32 else "I"), *items)
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


def vocabulary(n_vocab):
    """(tokens, token types, merges, id of <|endoftext|>) for n_vocab tokens."""
    b2u = bytes_to_unicode()
    tokens = [b2u[b] for b in range(256)]
    letters = "abcdefghijklmnopqrstuvwxyz"
    pairs = [(b2u[ord(" ")], c) for c in letters] + [(a, c) for a in letters for c in letters]
    eos = n_vocab - 293  # Qwen's 151643 for the full vocabulary
    if eos < len(tokens) + len(pairs):
        raise SystemExit("make_llm_model: --vocab %d is too small (at least %d)" %
                         (n_vocab, len(tokens) + len(pairs) + 293))
    tokens += [a + b for a, b in pairs]
    merges = ["%s %s" % p for p in pairs]
    tokens += ["<f%d>" % i for i in range(len(tokens), eos)]
    tokens += ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokens += ["<|extra_%d|>" % i for i in range(n_vocab - len(tokens))]
    types = [1] * eos + [3] * N_SPECIAL + [4] * (n_vocab - eos - N_SPECIAL)
    return tokens, types, merges, eos


def metadata(cfg):
    tokens, types, merges, eos = vocabulary(cfg["n_vocab"])
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
        kv("tokenizer.ggml.merges", T_ARR, (T_STR, merges)),
        kv("tokenizer.ggml.eos_token_id", T_U32, eos + 2),
        kv("tokenizer.ggml.bos_token_id", T_U32, eos),
        kv("tokenizer.ggml.padding_token_id", T_U32, eos),
        kv("tokenizer.ggml.add_bos_token", T_BOOL, False),
        kv("tokenizer.chat_template", T_STR, template),
    ]


class Normals:
    """Chunks of N(0, 0.02) values as little-endian F16 or F32 bytes."""

    def __init__(self, seed):
        self.rng = random.Random(seed)
        nd = statistics.NormalDist(0.0, 0.02)
        q = [nd.inv_cdf((i + 0.5) / 65536) for i in range(65536)]
        u16 = array.array("H", self.rng.randbytes(2 * POOL))
        if sys.byteorder != "little":
            u16.byteswap()
        self.pool = {}
        for size, fmt in ((2, "<e"), (4, "<f")):
            tbl = [struct.pack(fmt, v) for v in q]
            pool = b"".join(map(tbl.__getitem__, u16))
            sign = int.from_bytes((b"\0" * (size - 1) + b"\x80") * CHUNK, "little")
            self.pool[size] = (pool + pool[:size * CHUNK], sign)

    def chunk(self, k, size):
        pool, sign = self.pool[size]
        off = self.rng.randrange(POOL) * size
        v = int.from_bytes(pool[off:off + k * size], "little")
        flips = int.from_bytes(self.rng.randbytes(k * size), "little") & sign
        return (v ^ flips).to_bytes(k * size, "little")


def pad(f):
    f.write(b"\0" * (-f.tell() % GGUF_ALIGN))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", nargs="?")
    ap.add_argument("--small", action="store_true", help="~100M-parameter shape")
    ap.add_argument("--layers", type=int, help="number of layers (default: the shape's)")
    ap.add_argument("--vocab", type=int, help="vocabulary size (default: the shape's)")
    ap.add_argument("--embd", type=int, help="hidden size (default: the shape's)")
    ap.add_argument("--heads", type=int, help="attention heads (default: the shape's)")
    ap.add_argument("--ff", type=int, help="feed-forward size (default: the shape's)")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    if a.small:
        cfg = dict(name="qwen-small-random", n_embd=768, n_layer=8, n_head=12, n_ff=2048,
                   n_vocab=32000)
    else:
        cfg = dict(name="qwen1.5-1.8b-random", n_embd=2048, n_layer=24, n_head=16, n_ff=5504,
                   n_vocab=151936)
    for opt, key in (("layers", "n_layer"), ("vocab", "n_vocab"), ("embd", "n_embd"),
                     ("heads", "n_head"), ("ff", "n_ff")):
        v = getattr(a, opt)
        if v is not None:
            if v < 1:
                ap.error("--%s must be at least 1" % opt)
            cfg[key] = v
    if cfg["n_embd"] % (32 * cfg["n_head"]) or cfg["n_ff"] % 32:
        ap.error("the head size (--embd / --heads) and --ff must be multiples of 32")
    out = a.out or "/tmp/memfit_llm_bench/%s-f16.gguf" % ("qwen-small" if a.small else
                                                          "qwen1.8b")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tensors = shapes(cfg)
    meta = metadata(cfg)
    normals = Normals(a.seed)
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
            size = (4 if gtype == GGML_F32 else 2) * prod(dims)
            offset += size + (-size % GGUF_ALIGN)
        pad(f)
        for name, dims, gtype, kind in tensors:
            n = prod(dims)
            size = 4 if gtype == GGML_F32 else 2
            for s in range(0, n, CHUNK):
                k = min(CHUNK, n - s)
                if kind == "one":
                    f.write(struct.pack("<e" if size == 2 else "<f", 1.0) * k)
                else:
                    f.write(normals.chunk(k, size))
            pad(f)
    os.replace(tmp, out)
    params = sum(prod(d) for _, d, _, _ in tensors)
    print("%s: %s, %.2f G parameters, %.2f GB" % (out, cfg["name"], params / 1e9,
                                                   os.path.getsize(out) / 1e9))
    return 0


def prod(dims):
    n = 1
    for d in dims:
        n *= d
    return n


if __name__ == "__main__":
    sys.exit(main())

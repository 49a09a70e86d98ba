#!/usr/bin/env python3
"""nf4_check.py ORIG.safetensors NF4.safetensors: reads memfit's NF4 output
the way bitsandbytes loads a 4-bit checkpoint and compares with the original.

Semi-independent: the safetensors header is parsed here with json, the data
with torch.frombuffer; the dequantization follows bitsandbytes' documented
algorithm (QuantState.from_dict + dequantize_4bit): the JSON in
`<name>.quant_state.bitsandbytes__nf4` gives quant_type, blocksize, dtype and
shape; codes are two per byte, first element in the HIGH nibble; value =
quant_map[code] * absmax[i // blocksize]; with double quantization absmax =
nested_quant_map[absmax_u8] * nested_absmax[j // nested_blocksize] +
nested_offset. No memfit code is used, but it was written from the same
reading of bitsandbytes as memfit (there is no bitsandbytes package here).
"""
import json
import struct
import sys

import torch

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "U8": torch.uint8}
NF4 = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
       -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
       0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
       0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0]


def load(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        a, b = info["data_offsets"]
        buf = bytearray(raw[8 + n + a:8 + n + b])
        t = torch.frombuffer(buf, dtype=DTYPES[info["dtype"]]) if b > a else torch.empty(0)
        out[name] = t.reshape(info["shape"])
    return out


def dequant(sd, name):
    qs = json.loads(bytes(sd[name + ".quant_state.bitsandbytes__nf4"].tolist()).decode("utf-8"))
    assert qs["quant_type"] == "nf4" and qs["blocksize"] in (32, 64, 128, 256, 512, 1024, 2048, 4096)
    assert qs["dtype"] in ("float32", "float16", "bfloat16"), qs
    code = sd[name + ".quant_map"].float()
    assert torch.allclose(code, torch.tensor(NF4)), code
    absmax = sd[name + ".absmax"]
    if "nested_blocksize" in qs:
        assert absmax.dtype == torch.uint8 and qs["nested_dtype"] == "float32"
        nb = qs["nested_blocksize"]
        nested = sd[name + ".nested_absmax"].float()
        nmap = sd[name + ".nested_quant_map"].float()
        assert nmap.numel() == 256
        idx = torch.arange(absmax.numel()) // nb
        absmax = nmap[absmax.long()] * nested[idx] + qs["nested_offset"]
    else:
        assert absmax.dtype == torch.float32
    packed = sd[name]
    n = 1
    for d in qs["shape"]:
        n *= d
    assert packed.dtype == torch.uint8 and list(packed.shape) == [(n + 1) // 2, 1], packed.shape
    p = packed.flatten().long()
    codes = torch.stack([p >> 4, p & 15], dim=1).flatten()[:n]
    vals = code[codes] * absmax[torch.arange(n) // qs["blocksize"]]
    return vals.reshape(qs["shape"])


def main():
    orig, q = load(sys.argv[1]), load(sys.argv[2])
    worst = 0.0
    n4 = 0
    for name, x in orig.items():
        x = x.float()
        if name + ".quant_state.bitsandbytes__nf4" in q:
            y = dequant(q, name)
            n4 += 1
        else:
            y = q[name].float()
        assert list(y.shape) == list(x.shape), (name, y.shape, x.shape)
        rmse = float(((x - y) ** 2).mean().sqrt() / (x ** 2).mean().sqrt())
        worst = max(worst, rmse)
        assert rmse < 0.101, (name, rmse)
    assert n4 > 0
    print("nf4_check: %d NF4 tensors, worst relative RMSE %.3e" % (n4, worst))


main()

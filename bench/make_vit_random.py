#!/usr/bin/env python3
"""Writes a DINOv2 ViT-S/B/L/14 with random weights as F32 safetensors, with
the standard library only (no torch, no numpy), for benchmarks that need the
real shapes and sizes but not the real numbers.

Values are small random floats: every byte of the file is drawn at random
and then mapped into a range whose most significant byte gives magnitudes
of 3e-5 to 4e-3, either sign, so no value is NaN, infinite or large. Original tensor names
(cls_token, blocks.N.attn.qkv.weight, ...).

    bench/make_vit_random.py OUT.safetensors [--size s|b|l]
"""
import argparse
import json
import os
import struct

SIZES = {"s": (384, 12, 6), "b": (768, 12, 12), "l": (1024, 24, 16)}


def tensors(dim, depth):
    grid = 37  # img_size 518 / patch 14
    yield "cls_token", [1, 1, dim]
    yield "pos_embed", [1, 1 + grid * grid, dim]
    yield "mask_token", [1, dim]
    yield "patch_embed.proj.weight", [dim, 3, 14, 14]
    yield "patch_embed.proj.bias", [dim]
    for i in range(depth):
        b = "blocks.%d." % i
        yield b + "norm1.weight", [dim]
        yield b + "norm1.bias", [dim]
        yield b + "attn.qkv.weight", [3 * dim, dim]
        yield b + "attn.qkv.bias", [3 * dim]
        yield b + "attn.proj.weight", [dim, dim]
        yield b + "attn.proj.bias", [dim]
        yield b + "ls1.gamma", [dim]
        yield b + "norm2.weight", [dim]
        yield b + "norm2.bias", [dim]
        yield b + "mlp.fc1.weight", [4 * dim, dim]
        yield b + "mlp.fc1.bias", [4 * dim]
        yield b + "mlp.fc2.weight", [dim, 4 * dim]
        yield b + "mlp.fc2.bias", [dim]
        yield b + "ls2.gamma", [dim]
    yield "norm.weight", [dim]
    yield "norm.bias", [dim]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--size", choices=sorted(SIZES), default="b")
    a = ap.parse_args()
    dim, depth, _ = SIZES[a.size]
    header, offset, shapes = {}, 0, list(tensors(dim, depth))
    for name, shape in shapes:
        n = 1
        for s in shape:
            n *= s
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + 4 * n]}
        offset += 4 * n
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    # Any byte -> 0x38..0x3B or 0xB8..0xBB: as the top byte of a
    # little-endian float32, either sign and an exponent of 2^-15..2^-8; as
    # a lower byte, just mantissa bits.
    table = bytes((0x38 + (i & 3)) | (i & 0x80) for i in range(256))
    tmp = a.out + ".partial"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        left = offset
        while left:
            n = min(left, 1 << 24)
            f.write(os.urandom(n).translate(table))
            left -= n
    os.replace(tmp, a.out)
    print("%s: ViT-%s/14, %d tensors, %.1f MiB" % (a.out, a.size.upper(), len(shapes),
                                                  offset / 1048576))


if __name__ == "__main__":
    main()

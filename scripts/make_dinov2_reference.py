#!/usr/bin/python3
"""Makes the DINOv2 test fixtures: tiny random-weight models in the real
architecture (original checkpoint names, F16 tensors, torch.save) and the
outputs of an independent PyTorch reference forward written here from the
published architecture (nn.functional conv2d / layer_norm / exact-erf GELU /
softmax attention / F.interpolate), computed in F32 from the F16-rounded
weights.

Inputs are not stored: both sides make them from the same integer hash,
x = float32(k) / float32(500) with k in [-1000, 1000], so they are identical
bit for bit (see input_tensor() and the C test's make_input()).

Usage:
  scripts/make_dinov2_reference.py [OUTDIR]             fixtures (default tests/fixtures/dinov2)
  scripts/make_dinov2_reference.py --vitb PATH          a random ViT-B/14 .pth (F32, ~350 MB)
  scripts/make_dinov2_reference.py --bench PATH B H W   time the PyTorch forward of PATH

Outputs (float32, little-endian, C order):
  <case>.cls.bin      [B, D]          CLS after the final LayerNorm
  <case>.patches.bin  [B, N, D]       patch tokens after the final LayerNorm (some cases)
"""
import math
import os
import struct
import sys
import time

import torch
import torch.nn.functional as F

PATCH = 14
GRID = 37  # img_size 518 / 14


def make_state(dim, depth, n_reg, swiglu_hidden, seed):
    g = torch.Generator().manual_seed(seed)

    def rn(*shape, std=1.0):
        return torch.randn(*shape, generator=g) * std

    sd = {}
    sd["cls_token"] = rn(1, 1, dim, std=0.5)
    sd["pos_embed"] = rn(1, GRID * GRID + 1, dim, std=0.5)
    sd["mask_token"] = torch.zeros(1, dim)
    if n_reg:
        sd["register_tokens"] = rn(1, n_reg, dim, std=0.5)
    sd["patch_embed.proj.weight"] = rn(dim, 3, PATCH, PATCH, std=1.0 / math.sqrt(3 * PATCH * PATCH))
    sd["patch_embed.proj.bias"] = rn(dim, std=0.1)
    hidden = 4 * dim
    for L in range(depth):
        p = "blocks.%d." % L
        sd[p + "norm1.weight"] = 1.0 + rn(dim, std=0.1)
        sd[p + "norm1.bias"] = rn(dim, std=0.1)
        # q/k weights a little above the usual init so the softmax is not uniform.
        sd[p + "attn.qkv.weight"] = rn(3 * dim, dim, std=1.25 / math.sqrt(dim))
        sd[p + "attn.qkv.bias"] = rn(3 * dim, std=0.1)
        sd[p + "attn.proj.weight"] = rn(dim, dim, std=1.0 / math.sqrt(dim))
        sd[p + "attn.proj.bias"] = rn(dim, std=0.1)
        sd[p + "ls1.gamma"] = 0.5 + rn(dim, std=0.2)
        sd[p + "norm2.weight"] = 1.0 + rn(dim, std=0.1)
        sd[p + "norm2.bias"] = rn(dim, std=0.1)
        if swiglu_hidden:
            h = swiglu_hidden
            sd[p + "mlp.w12.weight"] = rn(2 * h, dim, std=1.0 / math.sqrt(dim))
            sd[p + "mlp.w12.bias"] = rn(2 * h, std=0.1)
            sd[p + "mlp.w3.weight"] = rn(dim, h, std=1.0 / math.sqrt(h))
            sd[p + "mlp.w3.bias"] = rn(dim, std=0.1)
        else:
            sd[p + "mlp.fc1.weight"] = rn(hidden, dim, std=1.0 / math.sqrt(dim))
            sd[p + "mlp.fc1.bias"] = rn(hidden, std=0.1)
            sd[p + "mlp.fc2.weight"] = rn(dim, hidden, std=1.0 / math.sqrt(hidden))
            sd[p + "mlp.fc2.bias"] = rn(dim, std=0.1)
        sd[p + "ls2.gamma"] = 0.5 + rn(dim, std=0.2)
    sd["norm.weight"] = 1.0 + rn(dim, std=0.1)
    sd["norm.bias"] = rn(dim, std=0.1)
    return sd


def input_tensor(batch, height, width, seed):
    """The shared deterministic input: planar float CHW per image."""
    n = batch * 3 * height * width
    idx = torch.arange(n, dtype=torch.int64)
    # A 32-bit integer hash (same constants as the C test), then k in [-1000, 1000].
    h = (idx * 2654435761 + seed * 40503) & 0xFFFFFFFF
    h = h ^ (h >> 15)
    h = (h * 2246822519) & 0xFFFFFFFF
    h = h ^ (h >> 13)
    k = (h % 2001) - 1000
    x = k.to(torch.float32) / torch.tensor(500.0, dtype=torch.float32)
    return x.reshape(batch, 3, height, width)


def interpolate_pos(pos, h0, w0, mode):
    """pos [1, 1+37*37, D] -> [1, 1+h0*w0, D] as the given implementation does it."""
    npatch = h0 * w0
    if npatch == GRID * GRID and h0 == w0:
        return pos
    cls = pos[:, :1]
    grid = pos[:, 1:].reshape(1, GRID, GRID, -1).permute(0, 3, 1, 2)
    if mode == "orig":
        grid = F.interpolate(grid, scale_factor=((h0 + 0.1) / GRID, (w0 + 0.1) / GRID),
                             mode="bicubic", align_corners=False)
    elif mode == "reg":
        grid = F.interpolate(grid, size=(h0, w0), mode="bicubic", align_corners=False,
                             antialias=True)
    else:
        grid = F.interpolate(grid, size=(h0, w0), mode="bicubic", align_corners=False)
    assert grid.shape[-2:] == (h0, w0)
    grid = grid.permute(0, 2, 3, 1).reshape(1, h0 * w0, -1)
    return torch.cat([cls, grid], dim=1)


def forward(sd, x, mode):
    W = {k: v.float() for k, v in sd.items()}
    dim = W["cls_token"].shape[-1]
    heads = dim // 64
    B, _, H, Wd = x.shape
    h0, w0 = H // PATCH, Wd // PATCH
    t = F.conv2d(x, W["patch_embed.proj.weight"], W["patch_embed.proj.bias"], stride=PATCH)
    t = t.flatten(2).transpose(1, 2)
    t = torch.cat([W["cls_token"].expand(B, -1, -1), t], dim=1)
    t = t + interpolate_pos(W["pos_embed"], h0, w0, mode)
    n_reg = 0
    if "register_tokens" in W:
        reg = W["register_tokens"]
        n_reg = reg.shape[1]
        t = torch.cat([t[:, :1], reg.expand(B, -1, -1), t[:, 1:]], dim=1)
    depth = 1 + max(int(k.split(".")[1]) for k in W if k.startswith("blocks."))
    for L in range(depth):
        p = "blocks.%d." % L
        y = F.layer_norm(t, (dim,), W[p + "norm1.weight"], W[p + "norm1.bias"], eps=1e-6)
        qkv = F.linear(y, W[p + "attn.qkv.weight"], W[p + "attn.qkv.bias"])
        T = qkv.shape[1]
        qkv = qkv.reshape(B, T, 3, heads, 64).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * (64 ** -0.5), qkv[1], qkv[2]
        a = torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v
        a = a.transpose(1, 2).reshape(B, T, dim)
        a = F.linear(a, W[p + "attn.proj.weight"], W[p + "attn.proj.bias"])
        t = t + W[p + "ls1.gamma"] * a
        y = F.layer_norm(t, (dim,), W[p + "norm2.weight"], W[p + "norm2.bias"], eps=1e-6)
        if p + "mlp.w12.weight" in W:
            x12 = F.linear(y, W[p + "mlp.w12.weight"], W[p + "mlp.w12.bias"])
            x1, x2 = x12.chunk(2, dim=-1)
            y = F.linear(F.silu(x1) * x2, W[p + "mlp.w3.weight"], W[p + "mlp.w3.bias"])
        else:
            y = F.gelu(F.linear(y, W[p + "mlp.fc1.weight"], W[p + "mlp.fc1.bias"]))
            y = F.linear(y, W[p + "mlp.fc2.weight"], W[p + "mlp.fc2.bias"])
        t = t + W[p + "ls2.gamma"] * y
    t = F.layer_norm(t, (dim,), W["norm.weight"], W["norm.bias"], eps=1e-6)
    return t[:, 0], t[:, 1 + n_reg:]


def save_bin(path, tensor):
    data = tensor.detach().contiguous().to(torch.float32).numpy().tobytes()
    with open(path, "wb") as f:
        f.write(data)


# name: (dim, depth, registers, swiglu hidden, seed)
MODELS = {
    "vits_tiny": (128, 2, 0, 0, 1),
    "vitreg_tiny": (64, 2, 4, 0, 2),
    "vitg_tiny": (64, 1, 0, 128, 3),
}

# (case, model, interpolation mode, batch, height, width, input seed, store patches)
CASES = [
    ("vits_tiny_224", "vits_tiny", "orig", 2, 224, 224, 7, True),
    ("vits_tiny_182x266", "vits_tiny", "orig", 2, 182, 266, 8, True),
    ("vits_tiny_182x266_hf", "vits_tiny", "hf", 2, 182, 266, 8, False),
    ("vits_tiny_182x266_reg", "vits_tiny", "reg", 2, 182, 266, 8, False),
    ("vits_tiny_518", "vits_tiny", "orig", 1, 518, 518, 9, False),
    ("vitreg_tiny_182x266", "vitreg_tiny", "reg", 2, 182, 266, 8, True),
    ("vitreg_tiny_224", "vitreg_tiny", "reg", 2, 224, 224, 7, False),
    ("vitg_tiny_224", "vitg_tiny", "orig", 2, 224, 224, 7, False),
    ("vitg_tiny_182x266", "vitg_tiny", "orig", 2, 182, 266, 8, False),
]


def make_fixtures(outdir):
    os.makedirs(outdir, exist_ok=True)
    states = {}
    for name, (dim, depth, n_reg, swiglu, seed) in MODELS.items():
        sd = {k: v.half() for k, v in make_state(dim, depth, n_reg, swiglu, seed).items()}
        torch.save(sd, os.path.join(outdir, name + ".pth"))
        states[name] = sd
    lines = []
    for case, model, mode, batch, height, width, seed, patches in CASES:
        x = input_tensor(batch, height, width, seed)
        with torch.no_grad():
            cls, pt = forward(states[model], x, mode)
        save_bin(os.path.join(outdir, case + ".cls.bin"), cls)
        if patches:
            save_bin(os.path.join(outdir, case + ".patches.bin"), pt)
        lines.append("%s %s %s %d %d %d %d %d" % (case, model, mode, batch, height, width, seed,
                                                  int(patches)))
    with open(os.path.join(outdir, "cases.txt"), "w") as f:
        f.write("# case model interpolation batch height width input_seed has_patches\n")
        f.write("\n".join(lines) + "\n")


def make_vitb(path):
    sd = make_state(768, 12, 0, 0, 11)
    torch.save(sd, path)


def bench(path, batch, height, width):
    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    sd = torch.load(path)
    x = input_tensor(batch, height, width, 1)
    with torch.inference_mode():
        forward(sd, x, "orig")
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            forward(sd, x, "orig")
            times.append(time.perf_counter() - t0)
    rss = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                rss = int(line.split()[1]) * 1024
    print("torch batch=%d %dx%d latency_s=%.4f peak_rss_mib=%.1f threads=%d" %
          (batch, height, width, min(times), rss / 1048576.0, torch.get_num_threads()))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--vitb":
        make_vitb(sys.argv[2])
    elif len(sys.argv) > 1 and sys.argv[1] == "--bench":
        bench(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    else:
        make_fixtures(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/dinov2")

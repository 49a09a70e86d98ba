#!/usr/bin/python3
"""Makes the SAM (segment-anything v1) test fixtures and times the PyTorch side
of the SAM benchmarks.

The forward below is an independent reference written here from the published
architecture of segment-anything v1 with torch.nn.functional only: the ViT
image encoder (windowed and global blocks, decomposed relative positions,
neck), the prompt encoder (random Fourier features), the two-way-transformer
mask decoder and the mask postprocess. All geometry is read from the tensor
shapes: the token grid from pos_embed, the window from the rel_pos tables, the
head size from their width, the number of mask tokens from mask_tokens. Only
the decoder's 8 heads are a constant (the same in every SAM size).

The tiny model (img 128, patch 16 -> grid 8, D 32, depth 4, 2 heads of 16,
window 3 so windowed blocks pad 8 -> 9, global blocks 1 and 3, mlp 128;
prompt/decoder C 32, 8 heads, depth 2, mlp 64, 4 mask tokens, IoU hidden 32,
upscaling 32 -> 8 -> 4, mask_in_chans 16, low-res masks 32x32) has random
weights with unit-scale activations.

Encoder input (not stored; the C test makes the same one bit for bit): the
already-normalised pixels [1,3,128,128], C order, element i (0-based):
    h = (i * 2654435761 + seed * 40503) mod 2^32
    h = h xor (h >> 15)
    h = (h * 2246822519) mod 2^32
    h = h xor (h >> 13)
    k = (h mod 2001) - 1000                      (integer, in [-1000, 1000])
    x = float32(k) / float32(500)
with seed 5: input_tensor() of scripts/make_dinov2_reference.py, shared with the
DINOv2 fixtures.

Usage:
  scripts/make_sam_reference.py [OUTDIR]         fixtures (default tests/fixtures/sam)
  scripts/make_sam_reference.py --vitb PATH      a random SAM ViT-B .pth in the real shapes (F32)
  scripts/make_sam_reference.py --bench PATH [--threads N] [--runs N]
        times this forward with the checkpoint at PATH: the encoder at 1024x1024
        (best of --runs) and automatic-mask-style decoding of a 32x32 point grid
        in batches of 16; prints one "sam_torch key=value ..." line.
  scripts/make_sam_reference.py --dump PATH OUTDIR
        the checkpoint's embedding of the hashed input and the low-res masks and
        IoU of one point prompt (300, 200, label 1, multimask) as embedding.bin,
        low_res.bin and iou.bin, for bench/bench_sam.c --compare.

cases.txt in the output folder lists every file with its shape and meaning.
"""
import json
import math
import os
import re
import resource
import struct
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_dinov2_reference import input_tensor, save_bin  # noqa: E402  (the shared input hash)

ENC_EPS = 1e-6  # encoder LayerNorms and every LayerNorm2d
DEC_EPS = 1e-5  # the two-way transformer's LayerNorms (nn.LayerNorm's default in the original)
DEC_HEADS = 8
INPUT_SEED = 5

ENC = "image_encoder."
PE = "prompt_encoder."
DEC = "mask_decoder."
TW = "mask_decoder.transformer."


# --- weights ---------------------------------------------------------------------------------


def make_state(dim, depth, head_dim, global_blocks, window, img, patch, out_chans, dec_mlp,
               iou_hidden, seed):
    """Random weights under the original checkpoint names, F32."""
    g = torch.Generator().manual_seed(seed)

    def rn(*shape, std=1.0):
        return torch.randn(*shape, generator=g) * std

    def linear(sd, name, n_out, n_in, bias=True, gain=1.0):
        sd[name + ".weight"] = rn(n_out, n_in, std=gain / math.sqrt(n_in))
        if bias:
            sd[name + ".bias"] = rn(n_out, std=0.1)

    def norm(sd, name, n):
        sd[name + ".weight"] = 1.0 + rn(n, std=0.1)
        sd[name + ".bias"] = rn(n, std=0.1)

    grid = img // patch
    C = out_chans
    sd = {}
    sd[ENC + "patch_embed.proj.weight"] = rn(dim, 3, patch, patch,
                                             std=1.0 / math.sqrt(3 * patch * patch))
    sd[ENC + "patch_embed.proj.bias"] = rn(dim, std=0.1)
    sd[ENC + "pos_embed"] = rn(1, grid, grid, dim, std=0.2)
    for L in range(depth):
        p = ENC + "blocks.%d." % L
        s = grid if L in global_blocks else window
        norm(sd, p + "norm1", dim)
        # q/k a little above the usual init so the softmax is not uniform.
        sd[p + "attn.qkv.weight"] = rn(3 * dim, dim, std=1.25 / math.sqrt(dim))
        sd[p + "attn.qkv.bias"] = rn(3 * dim, std=0.1)
        linear(sd, p + "attn.proj", dim, dim)
        sd[p + "attn.rel_pos_h"] = rn(2 * s - 1, head_dim, std=0.2)
        sd[p + "attn.rel_pos_w"] = rn(2 * s - 1, head_dim, std=0.2)
        norm(sd, p + "norm2", dim)
        linear(sd, p + "mlp.lin1", 4 * dim, dim)
        linear(sd, p + "mlp.lin2", dim, 4 * dim)
    sd[ENC + "neck.0.weight"] = rn(C, dim, 1, 1, std=1.0 / math.sqrt(dim))
    norm(sd, ENC + "neck.1", C)
    sd[ENC + "neck.2.weight"] = rn(C, C, 3, 3, std=1.0 / math.sqrt(9 * C))
    norm(sd, ENC + "neck.3", C)

    mic = 16  # mask_in_chans
    sd[PE + "pe_layer.positional_encoding_gaussian_matrix"] = rn(2, C // 2)
    for i in range(4):
        sd[PE + "point_embeddings.%d.weight" % i] = rn(1, C)
    sd[PE + "not_a_point_embed.weight"] = rn(1, C)
    sd[PE + "mask_downscaling.0.weight"] = rn(mic // 4, 1, 2, 2, std=0.5)
    sd[PE + "mask_downscaling.0.bias"] = rn(mic // 4, std=0.1)
    norm(sd, PE + "mask_downscaling.1", mic // 4)
    sd[PE + "mask_downscaling.3.weight"] = rn(mic, mic // 4, 2, 2, std=1.0 / math.sqrt(mic))
    sd[PE + "mask_downscaling.3.bias"] = rn(mic, std=0.1)
    norm(sd, PE + "mask_downscaling.4", mic)
    sd[PE + "mask_downscaling.6.weight"] = rn(C, mic, 1, 1, std=1.0 / math.sqrt(mic))
    sd[PE + "mask_downscaling.6.bias"] = rn(C, std=0.1)
    sd[PE + "no_mask_embed.weight"] = rn(1, C)

    n_mask = 4
    sd[DEC + "iou_token.weight"] = rn(1, C)
    sd[DEC + "mask_tokens.weight"] = rn(n_mask, C)

    def attention(p, inner):
        for x in ("q", "k", "v"):
            linear(sd, p + x + "_proj", inner, C)
        linear(sd, p + "out_proj", C, inner)

    for L in range(2):
        p = TW + "layers.%d." % L
        attention(p + "self_attn.", C)
        norm(sd, p + "norm1", C)
        attention(p + "cross_attn_token_to_image.", C // 2)
        norm(sd, p + "norm2", C)
        linear(sd, p + "mlp.lin1", dec_mlp, C)
        linear(sd, p + "mlp.lin2", C, dec_mlp)
        norm(sd, p + "norm3", C)
        norm(sd, p + "norm4", C)
        attention(p + "cross_attn_image_to_token.", C // 2)
    attention(TW + "final_attn_token_to_image.", C // 2)
    norm(sd, TW + "norm_final_attn", C)
    sd[DEC + "output_upscaling.0.weight"] = rn(C, C // 4, 2, 2, std=1.0 / math.sqrt(C))
    sd[DEC + "output_upscaling.0.bias"] = rn(C // 4, std=0.1)
    norm(sd, DEC + "output_upscaling.1", C // 4)
    sd[DEC + "output_upscaling.3.weight"] = rn(C // 4, C // 8, 2, 2, std=1.0 / math.sqrt(C // 4))
    sd[DEC + "output_upscaling.3.bias"] = rn(C // 8, std=0.1)
    for i in range(n_mask):
        p = DEC + "output_hypernetworks_mlps.%d.layers." % i
        linear(sd, p + "0", C, C)
        linear(sd, p + "1", C, C)
        # Larger so the mask logits reach past the stability offsets (+-1).
        linear(sd, p + "2", C // 8, C, gain=4.0)
    p = DEC + "iou_prediction_head.layers."
    linear(sd, p + "0", iou_hidden, C)
    linear(sd, p + "1", iou_hidden, iou_hidden)
    linear(sd, p + "2", n_mask, iou_hidden)
    return sd


TINY = dict(dim=32, depth=4, head_dim=16, global_blocks=(1, 3), window=3, img=128, patch=16,
            out_chans=32, dec_mlp=64, iou_hidden=32, seed=21)
VITB = dict(dim=768, depth=12, head_dim=64, global_blocks=(2, 5, 8, 11), window=14, img=1024,
            patch=16, out_chans=256, dec_mlp=2048, iou_hidden=256, seed=22)


# --- image encoder ---------------------------------------------------------------------------


def layer_norm_2d(x, w, b, eps=ENC_EPS):
    """Normalises x [B,C,H,W] over C at each pixel."""
    return F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), w, b, eps).permute(0, 3, 1, 2)


def rel_table(table, n):
    """R[i, j] = table[i - j + n - 1] for a table of 2n-1 rows: [n, n, hd]."""
    assert table.shape[0] == 2 * n - 1, "rel_pos table %s for %d positions" % (
        tuple(table.shape), n)
    idx = torch.arange(n)[:, None] - torch.arange(n)[None, :] + (n - 1)
    return table[idx]


def vit_attention(W, p, x):
    """Attention over all tokens of each x [N,h,w,D] with decomposed relative positions."""
    N, h, w, D = x.shape
    hd = W[p + "rel_pos_h"].shape[1]
    heads = D // hd
    T = h * w
    qkv = F.linear(x, W[p + "qkv.weight"], W[p + "qkv.bias"])
    qkv = qkv.reshape(N, T, 3, heads, hd).permute(2, 0, 3, 1, 4)  # [3,N,heads,T,hd]
    q, k, v = qkv[0], qkv[1], qkv[2]
    logits = (q * hd ** -0.5) @ k.transpose(-2, -1)  # [N,heads,T,T]
    # The relative terms use q before the 1/sqrt(hd) scale.
    qg = q.reshape(N, heads, h, w, hd)
    rh = torch.einsum("nzabc,akc->nzabk", qg, rel_table(W[p + "rel_pos_h"], h))  # [..,h,w,kh]
    rw = torch.einsum("nzabc,bkc->nzabk", qg, rel_table(W[p + "rel_pos_w"], w))  # [..,h,w,kw]
    logits = logits.reshape(N, heads, h, w, h, w) + rh[..., :, None] + rw[..., None, :]
    probs = torch.softmax(logits.reshape(N, heads, T, T), dim=-1)
    out = (probs @ v).transpose(1, 2).reshape(N, h, w, D)
    return F.linear(out, W[p + "proj.weight"], W[p + "proj.bias"])


def vit_block(W, p, t):
    """One encoder block on t [B,H,W,D] (NHWC)."""
    B, H, Wd, D = t.shape
    y = F.layer_norm(t, (D,), W[p + "norm1.weight"], W[p + "norm1.bias"], ENC_EPS)
    s = (W[p + "attn.rel_pos_h"].shape[0] + 1) // 2
    if s == H and (W[p + "attn.rel_pos_w"].shape[0] + 1) // 2 == Wd:
        y = vit_attention(W, p + "attn.", y)
    else:
        # Zero tokens pad the normalised grid to whole windows; nothing masks them out.
        Hp, Wp = H + (-H) % s, Wd + (-Wd) % s
        y = F.pad(y, (0, 0, 0, Wp - Wd, 0, Hp - H))
        y = y.reshape(B, Hp // s, s, Wp // s, s, D).permute(0, 1, 3, 2, 4, 5).reshape(-1, s, s, D)
        y = vit_attention(W, p + "attn.", y)
        y = y.reshape(B, Hp // s, Wp // s, s, s, D).permute(0, 1, 3, 2, 4, 5).reshape(B, Hp, Wp, D)
        y = y[:, :H, :Wd]
    t = t + y
    y = F.layer_norm(t, (D,), W[p + "norm2.weight"], W[p + "norm2.bias"], ENC_EPS)
    y = F.linear(F.gelu(F.linear(y, W[p + "mlp.lin1.weight"], W[p + "mlp.lin1.bias"])),
                 W[p + "mlp.lin2.weight"], W[p + "mlp.lin2.bias"])
    return t + y


def n_indexed(W, prefix):
    return 1 + max(int(k[len(prefix):].split(".")[0]) for k in W if k.startswith(prefix))


def encode_image(W, x, taps=None):
    """x [B,3,S,S] normalised pixels -> image embedding [B,C,G,G]. taps collects each
    block's output [B,G,G,D]."""
    pw = W[ENC + "patch_embed.proj.weight"]
    t = F.conv2d(x, pw, W[ENC + "patch_embed.proj.bias"], stride=pw.shape[-1]).permute(0, 2, 3, 1)
    t = t + W[ENC + "pos_embed"]
    for L in range(n_indexed(W, ENC + "blocks.")):
        t = vit_block(W, ENC + "blocks.%d." % L, t)
        if taps is not None:
            taps.append(t)
    t = t.permute(0, 3, 1, 2)
    t = layer_norm_2d(F.conv2d(t, W[ENC + "neck.0.weight"]),
                      W[ENC + "neck.1.weight"], W[ENC + "neck.1.bias"])
    t = layer_norm_2d(F.conv2d(t, W[ENC + "neck.2.weight"], padding=1),
                      W[ENC + "neck.3.weight"], W[ENC + "neck.3.bias"])
    return t


# --- prompt encoder --------------------------------------------------------------------------


def fourier(W, xy):
    """xy [..., 2] as (x, y) in [0, 1] -> [..., C]: sin and cos of 2*pi*((2xy - 1) @ G)."""
    v = (2.0 * xy - 1.0) @ W[PE + "pe_layer.positional_encoding_gaussian_matrix"]
    v = 2.0 * math.pi * v
    return torch.cat([torch.sin(v), torch.cos(v)], dim=-1)


def dense_pe(W, gh, gw):
    """The positional encoding of the embedding grid's cell centres: [C,gh,gw]."""
    ys = (torch.arange(gh, dtype=torch.float32) + 0.5) / gh
    xs = (torch.arange(gw, dtype=torch.float32) + 0.5) / gw
    xy = torch.stack([xs[None, :].expand(gh, gw), ys[:, None].expand(gh, gw)], dim=-1)
    return fourier(W, xy).permute(2, 0, 1)


def embed_prompts(W, img_hw, grid_hw, points=None, labels=None, box=None, mask=None):
    """points [B,N,2] (x, y) and labels [B,N] (1 fg, 0 bg, -1 none), box [B,4] (x0, y0, x1, y1),
    all in the input frame; mask [B,1,4gh,4gw] low-res logits. -> sparse [B,T,C], dense
    [B,C,gh,gw]."""
    size = torch.tensor([img_hw[1], img_hw[0]], dtype=torch.float32)  # (W, H)
    pe = [W[PE + "point_embeddings.%d.weight" % i][0] for i in range(4)]
    parts = []
    B = 1
    if points is not None:
        B = points.shape[0]
        pts = points + 0.5  # to pixel centres
        if box is None:
            # A padding point stands where the box's two corners would be.
            pts = torch.cat([pts, torch.zeros(B, 1, 2)], dim=1)
            labels = torch.cat([labels, -torch.ones(B, 1, dtype=labels.dtype)], dim=1)
        e = fourier(W, pts / size)
        lab = labels[..., None]
        e = torch.where(lab == -1, W[PE + "not_a_point_embed.weight"][0], e)
        e = e + torch.where(lab == 0, pe[0], torch.zeros_like(pe[0]))
        e = e + torch.where(lab == 1, pe[1], torch.zeros_like(pe[1]))
        parts.append(e)
    if box is not None:
        B = box.shape[0]
        corners = box.reshape(B, 2, 2) + 0.5
        e = fourier(W, corners / size)
        e = e + torch.stack([pe[2], pe[3]])
        parts.append(e)
    C = pe[0].shape[0]
    sparse = torch.cat(parts, dim=1) if parts else torch.zeros(B, 0, C)
    if mask is not None:
        p = PE + "mask_downscaling."
        y = F.conv2d(mask, W[p + "0.weight"], W[p + "0.bias"], stride=2)
        y = F.gelu(layer_norm_2d(y, W[p + "1.weight"], W[p + "1.bias"]))
        y = F.conv2d(y, W[p + "3.weight"], W[p + "3.bias"], stride=2)
        y = F.gelu(layer_norm_2d(y, W[p + "4.weight"], W[p + "4.bias"]))
        dense = F.conv2d(y, W[p + "6.weight"], W[p + "6.bias"])
    else:
        dense = W[PE + "no_mask_embed.weight"].reshape(1, C, 1, 1).expand(B, C, *grid_hw)
    return sparse, dense


# --- mask decoder ----------------------------------------------------------------------------


def dec_attention(W, p, q, k, v):
    """Multi-head attention of q [B,Nq,C] over k, v [B,Nk,C]; the projections may narrow C."""
    q = F.linear(q, W[p + "q_proj.weight"], W[p + "q_proj.bias"])
    k = F.linear(k, W[p + "k_proj.weight"], W[p + "k_proj.bias"])
    v = F.linear(v, W[p + "v_proj.weight"], W[p + "v_proj.bias"])
    B, Nq, inner = q.shape
    c = inner // DEC_HEADS

    def heads(x):
        return x.reshape(B, x.shape[1], DEC_HEADS, c).transpose(1, 2)

    logits = heads(q) @ heads(k).transpose(-2, -1) / math.sqrt(c)
    out = (torch.softmax(logits, dim=-1) @ heads(v)).transpose(1, 2).reshape(B, Nq, inner)
    return F.linear(out, W[p + "out_proj.weight"], W[p + "out_proj.bias"])


def two_way(W, image, image_pe, tokens, eps):
    """tokens [B,T,C] and the image [B,C,h,w] (+ its PE) update each other -> (tokens, image
    tokens [B,hw,C])."""
    keys = image.flatten(2).transpose(1, 2)
    kpe = image_pe.flatten(2).transpose(1, 2)
    queries, qpe = tokens, tokens
    C = tokens.shape[-1]

    def ln(x, name):
        return F.layer_norm(x, (C,), W[name + ".weight"], W[name + ".bias"], eps)

    for L in range(n_indexed(W, TW + "layers.")):
        p = TW + "layers.%d." % L
        if L == 0:
            # The first layer's self-attention sees no PE and replaces the tokens.
            queries = dec_attention(W, p + "self_attn.", queries, queries, queries)
        else:
            q = queries + qpe
            queries = queries + dec_attention(W, p + "self_attn.", q, q, queries)
        queries = ln(queries, p + "norm1")
        queries = queries + dec_attention(W, p + "cross_attn_token_to_image.", queries + qpe,
                                          keys + kpe, keys)
        queries = ln(queries, p + "norm2")
        y = F.relu(F.linear(queries, W[p + "mlp.lin1.weight"], W[p + "mlp.lin1.bias"]))
        queries = ln(queries + F.linear(y, W[p + "mlp.lin2.weight"], W[p + "mlp.lin2.bias"]),
                     p + "norm3")
        keys = keys + dec_attention(W, p + "cross_attn_image_to_token.", keys + kpe,
                                    queries + qpe, queries)
        keys = ln(keys, p + "norm4")
    queries = queries + dec_attention(W, TW + "final_attn_token_to_image.", queries + qpe,
                                      keys + kpe, keys)
    return ln(queries, TW + "norm_final_attn"), keys


def mlp(W, p, x):
    n = n_indexed(W, p)
    for i in range(n):
        x = F.linear(x, W[p + "%d.weight" % i], W[p + "%d.bias" % i])
        if i < n - 1:
            x = F.relu(x)
    return x


def decode_masks(W, embedding, image_pe, sparse, dense, multimask, eps=DEC_EPS):
    """embedding [1,C,h,w] (shared by the B prompts), image_pe [C,h,w], sparse [B,T,C], dense
    [B,C,h,w] -> low-res mask logits [B,M,4h,4w] and IoU predictions [B,M] with M = 3 (masks
    1..3) when multimask, else 1 (mask 0)."""
    B, _, C = sparse.shape
    out_tok = torch.cat([W[DEC + "iou_token.weight"], W[DEC + "mask_tokens.weight"]], dim=0)
    n_mask = W[DEC + "mask_tokens.weight"].shape[0]
    tokens = torch.cat([out_tok[None].expand(B, -1, -1), sparse], dim=1)
    src = embedding + dense
    h, w = src.shape[-2:]
    pos = image_pe[None].expand(B, -1, -1, -1)
    hs, keys = two_way(W, src, pos, tokens, eps)
    up = keys.transpose(1, 2).reshape(B, C, h, w)
    p = DEC + "output_upscaling."
    up = F.conv_transpose2d(up, W[p + "0.weight"], W[p + "0.bias"], stride=2)
    up = F.gelu(layer_norm_2d(up, W[p + "1.weight"], W[p + "1.bias"]))
    up = F.gelu(F.conv_transpose2d(up, W[p + "3.weight"], W[p + "3.bias"], stride=2))
    hyper = torch.stack([mlp(W, DEC + "output_hypernetworks_mlps.%d.layers." % i, hs[:, 1 + i])
                         for i in range(n_mask)], dim=1)  # [B,M,C/8]
    Hm, Wm = up.shape[-2:]
    masks = (hyper @ up.flatten(2)).reshape(B, n_mask, Hm, Wm)
    iou = mlp(W, DEC + "iou_prediction_head.layers.", hs[:, 0])
    sel = slice(1, None) if multimask else slice(0, 1)
    return masks[:, sel], iou[:, sel]


def postprocess(masks, img_size, input_hw, orig_hw):
    """Low-res logits -> the original image's frame: bilinear to the padded input square, crop
    the resized image's area, bilinear to the original size."""
    m = F.interpolate(masks, (img_size, img_size), mode="bilinear", align_corners=False)
    m = m[..., :input_hw[0], :input_hw[1]]
    return F.interpolate(m, orig_hw, mode="bilinear", align_corners=False)


# --- files ---------------------------------------------------------------------------------


HF_RENAMES = [
    # Substring replacements, in order (the HF converter's mapping, §2.7).
    ("mask_decoder.output_upscaling.0", "mask_decoder.upscale_conv1"),
    ("mask_decoder.output_upscaling.1", "mask_decoder.upscale_layer_norm"),
    ("mask_decoder.output_upscaling.3", "mask_decoder.upscale_conv2"),
    ("mask_downscaling.0", "mask_embed.conv1"),
    ("mask_downscaling.1", "mask_embed.layer_norm1"),
    ("mask_downscaling.3", "mask_embed.conv2"),
    ("mask_downscaling.4", "mask_embed.layer_norm2"),
    ("mask_downscaling.6", "mask_embed.conv3"),
    ("point_embeddings", "point_embed"),
    ("pe_layer.positional_encoding_gaussian_matrix", "shared_embedding.positional_embedding"),
    ("image_encoder", "vision_encoder"),
    ("neck.0", "neck.conv1"),
    ("neck.1", "neck.layer_norm1"),
    ("neck.2", "neck.conv2"),
    ("neck.3", "neck.layer_norm2"),
    ("patch_embed.proj", "patch_embed.projection"),
    (".norm", ".layer_norm"),
    ("blocks", "layers"),
]


# The 3-layer heads (IoU, hypernetworks): layers.0/1/2 -> proj_in/layers.0/proj_out.
HF_HEAD = re.compile(r"(mask_decoder\.(?:iou_prediction_head|output_hypernetworks_mlps\.\d+))"
                     r"\.layers\.([012])\.")
HF_HEAD_LAYERS = ("proj_in", "layers.0", "proj_out")


def hf_name(name):
    name = HF_HEAD.sub(lambda m: "%s.%s." % (m.group(1), HF_HEAD_LAYERS[int(m.group(2))]), name)
    for a, b in HF_RENAMES:
        name = name.replace(a, b)
    if name == "prompt_encoder.shared_embedding.positional_embedding":
        # Tied to the model-level copy; save_pretrained keeps this one.
        name = "shared_image_embedding.positional_embedding"
    return name


def write_safetensors(path, tensors):
    """tensors: name -> F16 tensor. 8-byte LE header size, JSON header, then the data."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        assert t.dtype == torch.float16
        data = t.numpy().astype("<f2").tobytes()
        header[name] = {"dtype": "F16", "shape": list(t.shape),
                        "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * ((-len(raw)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for b in blobs:
            f.write(b)


# --- fixtures --------------------------------------------------------------------------------

# name, points [(x, y, label)], box (x0, y0, x1, y1) or None, mask input (a case whose best
# low-res mask is used) or None, multimask
CASES = [
    ("point1_multi", [(37.2, 81.5, 1)], None, None, True),
    ("box_single", [], (10.0, 20.0, 90.0, 110.0), None, False),
    ("mixed_multi", [(20.0, 30.0, 1), (100.0, 64.0, 0)], (5.0, 5.0, 120.0, 100.0), "point1_multi",
     True),
    ("twopoints_single", [(64.0, 64.0, 1), (10.0, 100.0, 1)], None, None, False),
]

ORIG_HW = (150, 200)  # the postprocess case's original image: 200 wide, 150 high
INPUT_HW = (96, 128)  # its resized size in the 128 frame: int(150 * 128/200 + 0.5) = 96


def run_cases(W, emb, eps, img):
    """Every CASES decode against emb [1,C,G,G] -> {name: (sparse, dense, low_res, iou)}."""
    G = emb.shape[-1]
    pe = dense_pe(W, G, G)
    out = {}
    for name, pts, box, mask_from, multi in CASES:
        kw = {}
        if pts:
            kw["points"] = torch.tensor([[[x, y] for x, y, _ in pts]], dtype=torch.float32)
            kw["labels"] = torch.tensor([[lab for _, _, lab in pts]], dtype=torch.int64)
        if box is not None:
            kw["box"] = torch.tensor([box], dtype=torch.float32)
        if mask_from is not None:
            low, iou = out[mask_from][2], out[mask_from][3]
            kw["mask"] = low[:, int(torch.argmax(iou[0]))][:, None]
        sparse, dense = embed_prompts(W, (img, img), (G, G), **kw)
        low, iou = decode_masks(W, emb, pe, sparse, dense, multi, eps)
        out[name] = (sparse, dense, low, iou)
    return out, pe


def case_line(name, pts, box, mask_from, multi):
    p = ",".join("%g:%g:%d" % t for t in pts) or "-"
    b = ":".join("%g" % v for v in box) if box else "-"
    return "case %s multimask=%d points=%s box=%s mask_input=%s" % (
        name, int(multi), p, b, (mask_from + ".best") if mask_from else "-")


def make_fixtures(outdir):
    os.makedirs(outdir, exist_ok=True)
    sd = make_state(**TINY)
    torch.save(sd, os.path.join(outdir, "sam_tiny.pth"))
    sd16 = {k: v.half() for k, v in sd.items()}
    write_safetensors(os.path.join(outdir, "sam_tiny_hf.safetensors"),
                      {hf_name(k): v for k, v in sd16.items()})
    img = TINY["img"]
    x = input_tensor(1, img, img, INPUT_SEED)
    files = []

    def put(name, t, meaning):
        save_bin(os.path.join(outdir, name), t)
        files.append("%s %s %s" % (name, "x".join(str(s) for s in t.shape), meaning))

    with torch.no_grad():
        taps = []
        emb = encode_image(sd, x, taps)
        put("sam_tiny.embedding.bin", emb[0], "image embedding [C,G,G] of the hashed input")
        put("sam_tiny.block0.bin", taps[0][0], "activations after block 0 (windowed) [G,G,D]")
        put("sam_tiny.block1.bin", taps[1][0], "activations after block 1 (global) [G,G,D]")
        res, pe = run_cases(sd, emb, DEC_EPS, img)
        put("pe_dense.bin", pe, "dense positional encoding of the grid [C,G,G]")
        for name, _, _, _, _ in CASES:
            sparse, dense, low, iou = res[name]
            put("sparse_%s.bin" % name, sparse, "prompt encoder sparse tokens [1,T,C]")
            put("dense_%s.bin" % name, dense, "prompt encoder dense embedding [1,C,G,G]")
            put("%s.low_res.bin" % name, low, "low-res mask logits [1,M,4G,4G]")
            put("%s.iou.bin" % name, iou, "IoU predictions [1,M]")
        post = postprocess(res["point1_multi"][2], img, INPUT_HW, ORIG_HW)
        put("post_a.bin", post, "point1_multi masks postprocessed to 200x150 (input 128x96) "
            "[1,3,150,200]")

        # The HF file holds F16: its outputs come from the rounded weights, decoder eps 1e-5.
        w16 = {k: v.float() for k, v in sd16.items()}
        emb16 = encode_image(w16, x)
        put("hf.embedding.bin", emb16[0], "image embedding from the F16 weights [C,G,G]")
        res16, _ = run_cases(w16, emb16, DEC_EPS, img)
        for name, _, _, _, _ in CASES:
            put("hf_%s.low_res.bin" % name, res16[name][2], "low-res masks, F16 weights")
            put("hf_%s.iou.bin" % name, res16[name][3], "IoU, F16 weights")

    with open(os.path.join(outdir, "cases.txt"), "w") as f:
        f.write(CASES_HEADER)
        f.write("\n".join(case_line(*c) for c in CASES) + "\n")
        f.write("# file shape meaning\n")
        f.write("\n".join("file " + s for s in files) + "\n")


CASES_HEADER = """\
# SAM tiny fixtures, made by scripts/make_sam_reference.py (an independent PyTorch reference).
# Every .bin is float32 little-endian, C order, no header.
# sam_tiny.pth: original checkpoint names, F32, torch.save of the state dict.
# sam_tiny_hf.safetensors: the same weights under transformers' names, stored F16; the positional
#   Gaussian is stored as shared_image_embedding.positional_embedding only. Its outputs are the
#   hf*.bin files, computed in F32 from the F16-rounded weights.
# Model: img 128, patch 16 (G=8), D 32, depth 4, 2 heads of 16, window 3 (pad 8->9),
#   global blocks 1 and 3, mlp 128; C 32, decoder 8 heads, depth 2, mlp 64, 4 mask tokens,
#   IoU hidden 32, upscaling 32->8->4, mask_in_chans 16; LayerNorm eps 1e-6 except the
#   decoder transformer's norm1..4 and norm_final_attn, 1e-5.
# Encoder input [1,3,128,128] (already normalised), element i in C order:
#   h = (i*2654435761 + 5*40503) mod 2^32; h ^= h >> 15; h = (h*2246822519) mod 2^32;
#   h ^= h >> 13; k = (h mod 2001) - 1000; x = float32(k) / float32(500)
# Decoder cases use the reference's own embedding (sam_tiny.embedding.bin, or hf.embedding.bin
#   for hf_*); points (x:y:label) and boxes (x0:y0:x1:y1) are in the 128 input frame; a point
#   prompt with no box gets the padding point. mask_input=<case>.best is that case's low-res
#   mask with the highest IoU as [1,1,32,32] (for hf_mixed_multi, hf_point1_multi's).
# M = 3 masks (1..3) with multimask=1, else 1 (mask 0). T = sparse tokens.
# post_a: point1_multi's masks, original image 200x150 (w x h) resized to 128x96: bilinear
#   (align_corners=False) to 128x128, crop [:96,:128], bilinear to 150x200.
"""


# --- checkpoints and benchmark ----------------------------------------------------------------


def make_vitb(path):
    torch.save(make_state(**VITB), path)


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def blas_name():
    libs = []
    with open("/proc/self/maps") as f:
        for line in f:
            base = os.path.basename(line.split()[-1]) if "/" in line else ""
            for key in ("openblas", "mkl_", "blis", "libblas"):
                if key in base and base not in libs:
                    libs.append(base)
    return "+".join(libs) or "unknown"


def bench(path, threads, runs, points_per_side=32, batch=16):
    torch.set_num_threads(threads)
    sd = torch.load(path)
    rss_weights = peak_rss_mib()
    img = sd[ENC + "pos_embed"].shape[1] * sd[ENC + "patch_embed.proj.weight"].shape[-1]
    x = input_tensor(1, img, img, INPUT_SEED)
    with torch.inference_mode():
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            emb = encode_image(sd, x)
            times.append(time.perf_counter() - t0)
        rss_enc = peak_rss_mib()
        G = emb.shape[-1]
        pe = dense_pe(sd, G, G)
        # The automatic mask generator's grid: cell centres, x fastest, in the input frame.
        off = 1.0 / (2 * points_per_side)
        lin = torch.linspace(off, 1 - off, points_per_side, dtype=torch.float64)
        grid = torch.stack([lin[None, :].expand(points_per_side, -1),
                            lin[:, None].expand(-1, points_per_side)], dim=-1).reshape(-1, 2)
        coords = (grid * img).to(torch.float32)
        n = coords.shape[0]
        kept = 0
        t_dec = t_up = t_stab = 0.0
        for i in range(0, n, batch):
            t0 = time.perf_counter()
            pts = coords[i:i + batch, None, :]
            labels = torch.ones(pts.shape[0], 1, dtype=torch.int64)
            sparse, dense = embed_prompts(sd, (img, img), (G, G), points=pts, labels=labels)
            low, iou = decode_masks(sd, emb, pe, sparse, dense, True)
            t1 = time.perf_counter()
            logits = postprocess(low, img, (img, img), (img, img))
            t2 = time.perf_counter()
            # Stability for every mask (the generator scores only those past the IoU filter).
            inter = (logits > 1.0).sum(dim=(-1, -2), dtype=torch.int32)
            union = (logits > -1.0).sum(dim=(-1, -2), dtype=torch.int32)
            stab = inter.float() / union.float()
            kept += int((stab >= 0.95).sum())
            t3 = time.perf_counter()
            t_dec, t_up, t_stab = t_dec + t1 - t0, t_up + t2 - t1, t_stab + t3 - t2
    total = t_dec + t_up + t_stab
    print("sam_torch img=%d encoder_best_s=%.3f encoder_runs=%d points=%d batch=%d amg_s=%.3f "
          "amg_ms_per_point=%.3f decoder_s=%.3f upsample_s=%.3f stability_s=%.3f "
          "rss_weights_mib=%.1f peak_rss_encoder_mib=%.1f peak_rss_mib=%.1f threads=%d blas=%s "
          "stable=%d" %
          (img, min(times), runs, n, batch, total, 1000.0 * total / n, t_dec, t_up, t_stab,
           rss_weights, rss_enc, peak_rss_mib(), torch.get_num_threads(), blas_name(), kept))


def dump(path, outdir):
    sd = torch.load(path)
    img = sd[ENC + "pos_embed"].shape[1] * sd[ENC + "patch_embed.proj.weight"].shape[-1]
    x = input_tensor(1, img, img, INPUT_SEED)
    with torch.inference_mode():
        emb = encode_image(sd, x)
        G = emb.shape[-1]
        sparse, dense = embed_prompts(sd, (img, img), (G, G),
                                      points=torch.tensor([[[300.0, 200.0]]]),
                                      labels=torch.ones(1, 1, dtype=torch.int64))
        low, iou = decode_masks(sd, emb, dense_pe(sd, G, G), sparse, dense, True)
    os.makedirs(outdir, exist_ok=True)
    for name, t in (("embedding", emb), ("low_res", low), ("iou", iou)):
        save_bin(os.path.join(outdir, name + ".bin"), t)


def main(argv):
    if len(argv) > 2 and argv[1] == "--dump":
        dump(argv[2], argv[3])
    elif len(argv) > 1 and argv[1] == "--vitb":
        make_vitb(argv[2])
    elif len(argv) > 1 and argv[1] == "--bench":
        threads, runs = 2, 3
        rest = argv[3:]
        while rest:
            if rest[0] == "--threads":
                threads = int(rest[1])
            elif rest[0] == "--runs":
                runs = int(rest[1])
            else:
                sys.exit("unknown option " + rest[0])
            rest = rest[2:]
        bench(argv[2], threads, runs)
    else:
        make_fixtures(argv[1] if len(argv) > 1 else "tests/fixtures/sam")


if __name__ == "__main__":
    main(sys.argv)

#!/usr/bin/python3
"""Makes the image fixtures of tests/unit/test_models_image*.c.

Run with Debian's /usr/bin/python3 (python3-pil, python3-numpy, and torch
for the normalisation references):

    /usr/bin/python3 scripts/make_image_fixtures.py [--sam]

With --sam only the "sam" section of index.json and its references are
(re)made, from the images already there (re-encoding the JPEGs with another
libjpeg would change every other reference).

It writes tests/fixtures/images/: small test images in every JPEG and PNG
flavour memfit decodes, the reference outputs of the reference pipeline, and
index.json that lists them. The reference pipeline is what DINOv2's
evaluation transform does on a PIL image (torchvision is not installed here,
so its four steps are spelled out with the same calls torchvision makes):
  Resize(256, BICUBIC)  -> PIL Image.resize((w', h'), BICUBIC), the short
                           side to 256, the long side int(256 * long / short)
  CenterCrop(224)       -> crop at int(round((size - 224) / 2.0))
  ToTensor()            -> uint8 HWC -> float32 CHW / 255
  Normalize(mean, std)  -> (x - mean) / std in float32 (torch)

Reference files:
  decode:     8-bit RGB (HWC) of PIL's Image.open(...).convert("RGB"),
              except 16-bit grayscale PNG (see below): raw bytes (.rgb) for
              small images, an 8-bit RGB PNG written by PIL for larger ones;
  transform:  the 8-bit RGB image after resize and crop, stored as PNG (the
              values before /255; lossless and small);
  normalised: float32 CHW after ToTensor and Normalize (torch), .f32;
  sam:        SAM's preprocessing (segment-anything ResizeLongestSide and
              Sam.preprocess): the longest side to `size` with PIL BILINEAR
              (what torchvision's resize of a PIL image calls), side
              int(side * size / longest + 0.5), as an 8-bit PNG; for the
              cases with "norm", also (x - pixel_mean) / pixel_std in float32
              on the 0..255 values (torch), zero-padded to size x size, .f32.

PNG flavours PIL cannot write (16-bit RGB, 1/2/4-bit palettes, Adam7
interlacing, 16-bit RGBA) are written by the small PNG encoder below.

16-bit grayscale: PIL opens it as mode "I" and convert("RGB") clips values
above 255 (so most of the image is white); memfit keeps the high byte, as
libpng's strip_16 and PIL's own 16-bit RGB decoding do. Its reference is
numpy's `v >> 8`.
"""
import io
import json
import os
import struct
import zlib

import numpy as np
from PIL import Image

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "images")
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
SAM_MEAN = (123.675, 116.28, 103.53)
SAM_STD = (58.395, 57.12, 57.375)


# ---- test pictures -------------------------------------------------------

def picture(w, h, seed=1, noise=True):
    """Gradients, a few sharp-edged shapes and a patch of noise (uint8 HxWx3)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 255.0 * x / max(w - 1, 1)
    g = 255.0 * y / max(h - 1, 1)
    b = 127.5 + 127.5 * np.sin((x + 2 * y) / max(w, h) * 6.0)
    img = np.stack([r, g, b], axis=-1)
    # sharp edges: a black bar, a white disc, a saturated red square
    img[(x > w * 0.1) & (x < w * 0.15)] = 0
    img[(x - w * 0.6) ** 2 + (y - h * 0.4) ** 2 < (min(w, h) * 0.2) ** 2] = 255
    img[(x > w * 0.2) & (x < w * 0.35) & (y > h * 0.6) & (y < h * 0.8)] = (255, 0, 0)
    if noise:
        ys, xs = slice(int(h * 0.7), int(h * 0.95)), slice(int(w * 0.6), int(w * 0.9))
        img[ys, xs] = rng.integers(0, 256, img[ys, xs].shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def checkerboard(w, h, cell):
    y, x = np.mgrid[0:h, 0:w]
    v = (((x // cell) + (y // cell)) % 2 * 255).astype(np.uint8)
    return np.stack([v, 255 - v, v // 2], axis=-1)


# ---- a minimal PNG encoder (for what PIL does not write) ------------------

def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def pack_rows(samples, bit_depth):
    """samples: HxN array of sample values -> list of packed row bytes."""
    rows = []
    for row in samples:
        if bit_depth == 16:
            rows.append(row.astype(">u2").tobytes())
        elif bit_depth == 8:
            rows.append(row.astype(np.uint8).tobytes())
        else:
            per = 8 // bit_depth
            out = bytearray((len(row) + per - 1) // per)
            for i, v in enumerate(row):
                out[i // per] |= int(v) << (8 - bit_depth * (i % per + 1))
            rows.append(bytes(out))
    return rows


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
         (0, 1, 1, 2)]


def write_png(path, samples, color_type, bit_depth, palette=None, trns=None, interlace=False):
    """samples: HxWxC array (C = 1, 2, 3 or 4) of raw sample values."""
    h, w = samples.shape[:2]
    c = samples.shape[2]
    raw = bytearray()
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    for x0, y0, dx, dy in passes:
        sub = samples[y0::dy, x0::dx]
        if sub.size == 0:
            continue
        for row in pack_rows(sub.reshape(sub.shape[0], sub.shape[1] * c), bit_depth):
            raw += b"\x00" + row  # filter type None
    data = b"\x89PNG\r\n\x1a\n"
    data += png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0,
                                           1 if interlace else 0))
    if palette is not None:
        data += png_chunk(b"PLTE", bytes(np.asarray(palette, np.uint8).ravel()))
    if trns is not None:
        data += png_chunk(b"tRNS", trns)
    data += png_chunk(b"IDAT", zlib.compress(bytes(raw), 9))
    data += png_chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(data)


# ---- the reference pipeline ------------------------------------------------

def pil_rgb(path):
    return np.asarray(Image.open(path).convert("RGB"))


def resized_size(w, h, resize):
    short, long_ = (w, h) if w <= h else (h, w)
    new_short, new_long = resize, int(resize * long_ / short)
    return (new_short, new_long) if w <= h else (new_long, new_short)


def eval_transform_u8(img, resize, crop):
    """PIL resize of the short side to `resize`, then the centre crop (uint8 HWC)."""
    w, h = img.size
    nw, nh = resized_size(w, h, resize)
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.BICUBIC)
    top = int(round((nh - crop) / 2.0))
    left = int(round((nw - crop) / 2.0))
    return np.asarray(img.crop((left, top, left + crop, top + crop)))


def multiple_u8(img, multiple):
    w, h = img.size
    nw = max(1, (w + multiple // 2) // multiple) * multiple
    nh = max(1, (h + multiple // 2) // multiple) * multiple
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.BICUBIC)
    return np.asarray(img)


def normalise(u8):
    import torch
    t = torch.from_numpy(np.ascontiguousarray(u8.transpose(2, 0, 1))).to(torch.float32).div(255)
    mean = torch.tensor(MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(STD, dtype=torch.float32)[:, None, None]
    return t.sub(mean).div(std).numpy().astype("<f4")


def sam_resized_size(w, h, size):
    scale = size * 1.0 / max(h, w)
    return int(w * scale + 0.5), int(h * scale + 0.5)


def sam_normalise(u8, size):
    import torch
    x = torch.from_numpy(np.ascontiguousarray(u8.transpose(2, 0, 1)))
    mean = torch.tensor(SAM_MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(SAM_STD, dtype=torch.float32)[:, None, None]
    x = (x - mean) / std
    x = torch.nn.functional.pad(x, (0, size - x.shape[2], 0, size - x.shape[1]))
    return x.numpy().astype("<f4")


def sam_cases(index):
    """SAM's resize (and normalisation) of images already in OUT."""
    index["sam"] = []
    cases = [("photo317x211.png", 1024, False),  # upscale, both passes
             ("photo1000x700.jpg", 64, False),   # downscale: the support widens
             ("photo600x400.jpg", 200, False),
             ("photo211x317.png", 128, False),
             ("check40x30.png", 37, False),
             ("tall256x300.png", 300, False),    # no resize at all
             ("tiny1x1.png", 16, False),
             ("tiny3x5.png", 256, False),
             ("photo600x400.jpg", 64, True),
             ("rgb8.png", 48, True)]
    for name, size, norm in cases:
        img = Image.open(os.path.join(OUT, name)).convert("RGB")
        w, h = sam_resized_size(img.size[0], img.size[1], size)
        out = np.asarray(img.resize((w, h), Image.BILINEAR) if (w, h) != img.size else img)
        entry = {"file": name, "size": size, "width": w, "height": h}
        if norm:
            entry["ref"] = "ref/%s.sam%d.f32" % (name, size)
            with open(os.path.join(OUT, entry["ref"]), "wb") as f:
                f.write(sam_normalise(out, size).tobytes())
        else:
            entry["ref"] = "ref/%s.sam%d.png" % (name, size)
            Image.fromarray(out).save(os.path.join(OUT, entry["ref"]), optimize=True)
        index["sam"].append(entry)


def write_index(index):
    with open(os.path.join(OUT, "index.json"), "w") as f:
        json.dump(index, f, indent=1)
        f.write("\n")


# ---- main -----------------------------------------------------------------

def main():
    os.makedirs(os.path.join(OUT, "ref"), exist_ok=True)
    index = {"decode": [], "transform": [], "normalised": []}

    def save(name, arr, **kw):
        Image.fromarray(arr).save(os.path.join(OUT, name), **kw)

    def decode_case(name, ref=None, tolerance=0):
        path = os.path.join(OUT, name)
        ref = pil_rgb(path) if ref is None else ref
        if ref.size <= 16384:
            rel = "ref/" + name + ".rgb"
            with open(os.path.join(OUT, rel), "wb") as f:
                f.write(np.ascontiguousarray(ref).tobytes())
        else:
            rel = "ref/" + name + ".png"
            Image.fromarray(np.ascontiguousarray(ref)).save(os.path.join(OUT, rel), optimize=True)
        index["decode"].append({"file": name, "ref": rel,
                                "width": int(ref.shape[1]), "height": int(ref.shape[0]),
                                "tolerance": tolerance})

    small = picture(61, 37, seed=2)
    # PNG, written by PIL
    save("rgb8.png", small)
    save("gray8.png", small[:, :, 1])
    save("graya8.png", np.dstack([small[:, :, 0], small[:, :, 2]]), )
    Image.fromarray(np.dstack([small, small[:, :, :1]]), "RGBA").save(os.path.join(OUT, "rgba8.png"))
    Image.fromarray(small).convert("1").save(os.path.join(OUT, "gray1.png"))
    pal = Image.fromarray(small).quantize(colors=200)
    pal.save(os.path.join(OUT, "palette8_trns.png"), transparency=3)
    for name in ["rgb8.png", "gray8.png", "graya8.png", "rgba8.png", "gray1.png",
                 "palette8_trns.png"]:
        decode_case(name)
    # PNG, written by hand
    rng = np.random.default_rng(7)
    s16 = (small.astype(np.uint16) * 257 + rng.integers(0, 256, small.shape)).astype(np.uint16)
    write_png(os.path.join(OUT, "rgb16.png"), s16, 2, 16)
    assert (pil_rgb(os.path.join(OUT, "rgb16.png")) == (s16 >> 8)).all()
    decode_case("rgb16.png")
    write_png(os.path.join(OUT, "rgba16.png"), np.dstack([s16, s16[:, :, :1]]), 6, 16)
    decode_case("rgba16.png")
    write_png(os.path.join(OUT, "gray16.png"), s16[:, :, :1], 0, 16)
    g16 = np.repeat((s16[:, :, :1] >> 8).astype(np.uint8), 3, axis=2)
    decode_case("gray16.png", ref=g16)
    for depth in (2, 4):
        v = (small[:, :, 1:2] >> (8 - depth)).astype(np.uint8)
        write_png(os.path.join(OUT, "gray%d.png" % depth), v, 0, depth)
        decode_case("gray%d.png" % depth)
    for depth in (1, 2, 4):
        n = 1 << depth
        palette = rng.integers(0, 256, (n, 3))
        idx = ((small[:, :, 0].astype(np.int32) * n) // 256).astype(np.uint8)[:, :, None]
        write_png(os.path.join(OUT, "palette%d.png" % depth), idx, 3, depth, palette=palette,
                  trns=bytes([0]))
        decode_case("palette%d.png" % depth)
    write_png(os.path.join(OUT, "rgb8_interlaced.png"), small, 2, 8, interlace=True)
    decode_case("rgb8_interlaced.png")
    write_png(os.path.join(OUT, "palette4_interlaced.png"),
              ((small[:, :, 2:3].astype(np.int32) * 16) // 256).astype(np.uint8), 3, 4,
              palette=rng.integers(0, 256, (16, 3)), interlace=True)
    decode_case("palette4_interlaced.png")
    write_png(os.path.join(OUT, "tiny1x1.png"), np.array([[[12, 200, 99]]], np.uint8), 2, 8)
    decode_case("tiny1x1.png")
    write_png(os.path.join(OUT, "tiny3x5.png"), picture(3, 5, noise=False), 2, 8,
              interlace=True)
    decode_case("tiny3x5.png")
    # JPEG, written by PIL (libjpeg-turbo, the same library memfit uses)
    save("baseline420.jpg", small, quality=90)
    save("baseline444.jpg", small, quality=90, subsampling=0)
    save("baseline422.jpg", small, quality=75, subsampling=1)
    save("progressive.jpg", small, quality=85, progressive=True)
    save("gray.jpg", small[:, :, 1], quality=90)
    Image.fromarray(small).convert("CMYK").save(os.path.join(OUT, "cmyk.jpg"), quality=90)
    save("tiny1x1.jpg", np.array([[[12, 200, 99]]], np.uint8), quality=95)
    for name in ["baseline420.jpg", "baseline444.jpg", "baseline422.jpg", "progressive.jpg",
                 "gray.jpg", "cmyk.jpg", "tiny1x1.jpg"]:
        assert Image.open(os.path.join(OUT, name)).format == "JPEG"
        decode_case(name)

    # Transform inputs and references.
    save("photo317x211.png", picture(317, 211, seed=3, noise=False), optimize=True)
    save("photo211x317.png", picture(211, 317, seed=4, noise=False), optimize=True)
    save("photo600x400.jpg", picture(600, 400, seed=5), quality=85)
    save("photo1000x700.jpg", picture(1000, 700, seed=6, noise=False), quality=80)
    save("check40x30.png", checkerboard(40, 30, 5))
    save("square256.png", picture(256, 256, seed=8, noise=False), optimize=True)
    save("tall256x300.png", picture(256, 300, seed=9, noise=False), optimize=True)
    save("wide341x256.jpg", picture(341, 256, seed=10), quality=85)
    # (the two larger JPEGs have no decode reference of their own to keep the
    # fixtures small: their transform references check the decode too)
    for name in ["photo317x211.png", "photo211x317.png", "check40x30.png", "square256.png",
                 "tall256x300.png", "wide341x256.jpg"]:
        decode_case(name)

    def transform_case(name, mode, resize=256, crop=224, multiple=14):
        img = Image.open(os.path.join(OUT, name)).convert("RGB")
        if mode == "crop":
            out = eval_transform_u8(img, resize, crop)
            ref = "ref/%s.crop%d_%d.png" % (name, resize, crop)
        else:
            out = multiple_u8(img, multiple)
            ref = "ref/%s.multiple%d.png" % (name, multiple)
        Image.fromarray(out).save(os.path.join(OUT, ref), optimize=True)
        index["transform"].append({"file": name, "mode": mode, "resize": resize, "crop": crop,
                                   "multiple": multiple, "ref": ref,
                                   "width": int(out.shape[1]), "height": int(out.shape[0])})
        return out

    for name in ["photo317x211.png", "photo211x317.png", "photo600x400.jpg",
                 "photo1000x700.jpg", "check40x30.png", "square256.png", "tall256x300.png",
                 "wide341x256.jpg", "tiny1x1.png", "tiny3x5.png", "gray.jpg", "cmyk.jpg"]:
        transform_case(name, "crop")
    for name, r, c in [("photo1000x700.jpg", 64, 56), ("photo317x211.png", 37, 33),
                       ("check40x30.png", 17, 15), ("photo600x400.jpg", 257, 201)]:
        transform_case(name, "crop", resize=r, crop=c)
    for name in ["rgb8.png", "check40x30.png", "tiny1x1.png", "tiny3x5.png",
                 "photo211x317.png", "baseline420.jpg"]:
        transform_case(name, "multiple")
    transform_case("check40x30.png", "multiple", multiple=16)
    transform_case("tall256x300.png", "multiple", multiple=16)  # vertical pass only
    transform_case("wide341x256.jpg", "multiple", multiple=16)  # horizontal pass only

    for name, r, c in [("photo600x400.jpg", 64, 56), ("rgb8.png", 40, 32)]:
        img = Image.open(os.path.join(OUT, name)).convert("RGB")
        ref = "ref/%s.norm%d_%d.f32" % (name, r, c)
        with open(os.path.join(OUT, ref), "wb") as f:
            f.write(normalise(eval_transform_u8(img, r, c)).tobytes())
        index["normalised"].append({"file": name, "resize": r, "crop": c, "ref": ref,
                                    "mean": MEAN, "std": STD})

    sam_cases(index)
    write_index(index)
    total = sum(os.path.getsize(os.path.join(d, n)) for d, _, ns in os.walk(OUT) for n in ns)
    print("wrote %s: %d bytes" % (OUT, total))


if __name__ == "__main__":
    import sys
    if sys.argv[1:] == ["--sam"]:
        with open(os.path.join(OUT, "index.json")) as f:
            existing = json.load(f)
        sam_cases(existing)
        write_index(existing)
    else:
        main()

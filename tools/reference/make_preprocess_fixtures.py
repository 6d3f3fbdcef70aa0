#!/usr/bin/env python
"""Pillow reference fixtures for image decoding and preprocessing (test/image.test.ts).

Writes, into test/fixtures/preprocess/:
  decode.json        for every test image: size and sha256 of the RGB pixels that transformers'
                     `load_image` gives (ImageOps.exif_transpose + convert("RGB"));
  resize.json        Image.resize((w, h), BICUBIC) outputs for (image, size) pairs: sha256 + samples;
  smart_resize.json  the target-size table (spec §5.2) incl. half-way rounding and error cases;
  preprocess.json    end-to-end `pixel_values` (sha256 of the float32 bytes, grid, samples).
and the small generated edge-case images into test/fixtures/images/gen_*.

Inputs: the copied test images in test/fixtures/images/ plus generated ones (written here:
16-bit / low-bit / tRNS PNGs written by a tiny PNG writer, GIFs by a tiny GIF writer, EXIF and XMP
orientations, CMYK JPEG without an Adobe marker, lossy / alpha / animated WebP) and a synthetic
integer pattern that test/image.test.ts recomputes (`pattern()`).

Environment: Python 3.11, pillow==12.3.0, numpy (see the venv line below). If transformers 5.18 is
importable, the preprocess emulation is also checked against VideoLlama3ImageProcessorPil.

    python3 -m venv .venv-img && .venv-img/bin/pip install pillow==12.3.0 numpy
    .venv-img/bin/python tools/reference/make_preprocess_fixtures.py
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import PIL
from PIL import Image, ImageOps, PngImagePlugin

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "test" / "fixtures" / "images"
OUT = ROOT / "test" / "fixtures" / "preprocess"

# Copied unchanged from the shared test data (see test/fixtures/LICENSES.md).
COPIED = [
    "camera_gray16_256x256.png",
    "chart_bar_line_640x400.png",
    "chelsea.png",
    "chelsea_exif_orient6.jpg",
    "chelsea_lossless.webp",
    "chelsea_palette_226x150.png",
    "chelsea_rgba_226x150.png",
    "coffee_cmyk.jpg",
    "coffee_extreme_wide_1200x40.jpg",
    "coffee_progressive.jpg",
    "diagram_flowchart_800x450.png",
    "document_invoice_816x1056.png",
    "rocket.jpg",
    "text.png",
    "tiny_1x1.png",
]

# Released image budget (spec §5.2) and normalization (§5.3).
PATCH = 14
MIN_PIXELS = 16 * 14 * 14
MAX_PIXELS = 16384 * 14 * 14
MEAN = [0.5, 0.5, 0.5]
STD = [0.5, 0.5, 0.5]


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def load_image(path: Path) -> Image.Image:
    """What transformers.image_utils.load_image does with a file path."""
    im = Image.open(path)
    im = ImageOps.exif_transpose(im)
    return im.convert("RGB")


def pattern(w: int, h: int) -> np.ndarray:
    """Synthetic RGB test image; test/image.test.ts computes the same integers."""
    y, x, c = np.meshgrid(np.arange(h), np.arange(w), np.arange(3), indexing="ij")
    v = ((x * 37 + y * 61 + c * 89) ^ (x * y * 7)) & 255
    return v.astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Tiny writers for the formats Pillow cannot write in every variant.

def png_bytes(width: int, height: int, bit_depth: int, colour_type: int, rows: list[bytes],
              extra: list[tuple[bytes, bytes]] = ()) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    raw = b"".join(b"\x00" + r for r in rows)  # filter type 0 on every row
    body = b"".join(chunk(k, v) for k, v in extra)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + body + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def pack_bits(values: list[int], bits: int) -> bytes:
    out, acc, n = bytearray(), 0, 0
    for v in values:
        acc = (acc << bits) | v
        n += bits
        if n == 8:
            out.append(acc)
            acc, n = 0, 0
    if n:
        out.append(acc << (8 - n))
    return bytes(out)


def lzw_encode(indices: list[int], min_code_size: int) -> bytes:
    """GIF LZW (variable code size, clear when the table fills), packed in sub-blocks."""
    clear, end = 1 << min_code_size, (1 << min_code_size) + 1
    bits = bytearray()
    acc, nacc = 0, 0

    def emit(code: int, size: int) -> None:
        nonlocal acc, nacc
        acc |= code << nacc
        nacc += size
        while nacc >= 8:
            bits.append(acc & 255)
            acc >>= 8
            nacc -= 8

    def reset():
        return {(i,): i for i in range(clear)}, end + 1, min_code_size + 1

    table, nxt, size = reset()
    emit(clear, size)
    w: tuple[int, ...] = ()
    for k in indices:
        wk = w + (k,)
        if wk in table:
            w = wk
            continue
        emit(table[w], size)
        table[wk] = nxt
        if nxt == (1 << size) and size < 12:
            size += 1
        nxt += 1
        if nxt == 4095:
            emit(clear, size)
            table, nxt, size = reset()
        w = (k,)
    if w:
        emit(table[w], size)
    emit(end, size)
    if nacc:
        bits.append(acc & 255)
    out = bytearray([min_code_size])
    for i in range(0, len(bits), 255):
        block = bits[i:i + 255]
        out.append(len(block))
        out += block
    out.append(0)
    return bytes(out)


def gif_bytes(screen: tuple[int, int], frame: tuple[int, int, int, int], indices: list[int], *,
              global_palette: bytes | None = None, local_palette: bytes | None = None,
              transparency: int | None = None, interlace: bool = False, min_code_size: int = 8) -> bytes:
    def table_flags(p: bytes | None) -> int:
        if p is None:
            return 0
        n = len(p) // 3
        size = max(0, n.bit_length() - 2)
        assert 3 << (size + 1) == len(p), "palette length must be 3 * 2^k"
        return 0x80 | size

    out = bytearray(b"GIF89a")
    out += struct.pack("<HHBBB", screen[0], screen[1], table_flags(global_palette) | 0x70, 0, 0)
    if global_palette:
        out += global_palette
    if transparency is not None:
        out += bytes([0x21, 0xF9, 4, 1, 0, 0, transparency, 0])
    x0, y0, fw, fh = frame
    rows = [indices[r * fw:(r + 1) * fw] for r in range(fh)]
    if interlace:
        order = list(range(0, fh, 8)) + list(range(4, fh, 8)) + list(range(2, fh, 4)) + list(range(1, fh, 2))
        rows = [rows[r] for r in order]
    out += b"\x2c" + struct.pack("<HHHHB", x0, y0, fw, fh, table_flags(local_palette) | (0x40 if interlace else 0))
    if local_palette:
        out += local_palette
    out += lzw_encode([v for r in rows for v in r], min_code_size)
    out += b"\x3b"
    return bytes(out)


def exif_with_orientation(o: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = o
    return exif.tobytes()


def xmp_packet(o: int) -> bytes:
    return (b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
            b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
            b'xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="%d"/></rdf:RDF></x:xmpmeta>'
            b'<?xpacket end="w"?>' % o)


def strip_adobe_app14(jpeg: bytes) -> bytes:
    out, p = bytearray(jpeg[:2]), 2
    while p < len(jpeg):
        marker = jpeg[p + 1]
        if marker == 0xDA:
            out += jpeg[p:]
            break
        length = struct.unpack(">H", jpeg[p + 2:p + 4])[0]
        if not (marker == 0xEE and jpeg[p + 4:p + 9] == b"Adobe"):
            out += jpeg[p:p + 2 + length]
        p += 2 + length
    assert b"Adobe" not in out[:200]
    return bytes(out)


def generate_images() -> dict[str, bytes]:
    """The generated edge-case inputs, name -> file bytes (all derived from chelsea.png or synthetic)."""
    rng = np.random.default_rng(20240611)
    cat = Image.open(IMAGES / "chelsea.png").convert("RGB")
    crop = cat.crop((150, 60, 214, 108))  # 64x48 of the cat's face
    files: dict[str, bytes] = {}

    def save(name: str, im: Image.Image, **kw) -> None:
        buf = io.BytesIO()
        im.save(buf, **kw)
        files[name] = buf.getvalue()

    # --- PNG variants -------------------------------------------------------------------------
    w, h = 7, 5
    r16 = rng.integers(0, 65536, size=(h, w, 4), dtype=np.uint16)
    r16[0, :3, 0] = [0, 255, 256]          # around the clipping / high-byte edges
    r16[0, 3:6, 0] = [257, 65280, 65535]
    be = lambda a: a.astype(">u2").tobytes()  # noqa: E731
    files["gen_rgb16.png"] = png_bytes(w, h, 16, 2, [be(r16[y, :, :3]) for y in range(h)])
    files["gen_rgba16.png"] = png_bytes(w, h, 16, 6, [be(r16[y]) for y in range(h)])
    files["gen_gray16_alpha.png"] = png_bytes(w, h, 16, 4, [be(r16[y, :, :2]) for y in range(h)])
    files["gen_gray16_trns.png"] = png_bytes(w, h, 16, 0, [be(r16[y, :, :1]) for y in range(h)],
                                             [(b"tRNS", struct.pack(">H", int(r16[1, 1, 0])))])
    for bits in (1, 2, 4):
        vals = rng.integers(0, 1 << bits, size=(h, w))
        files[f"gen_gray{bits}.png"] = png_bytes(w, h, bits, 0, [pack_bits(list(vals[y]), bits) for y in range(h)])
    g8 = rng.integers(0, 256, size=(h, w, 2), dtype=np.uint8)
    files["gen_gray_alpha.png"] = png_bytes(w, h, 8, 4, [g8[y].tobytes() for y in range(h)])
    files["gen_gray_trns.png"] = png_bytes(w, h, 8, 0, [g8[y, :, 0].tobytes() for y in range(h)],
                                           [(b"tRNS", struct.pack(">H", int(g8[2, 2, 0])))])
    pal = rng.integers(0, 256, size=(16, 3), dtype=np.uint8).tobytes()
    idx = rng.integers(0, 16, size=(h, w))
    files["gen_palette4_trns.png"] = png_bytes(w, h, 4, 3, [pack_bits(list(idx[y]), 4) for y in range(h)],
                                               [(b"PLTE", pal), (b"tRNS", bytes([0, 128, 255, 0]))])
    pal2 = rng.integers(0, 256, size=(4, 3), dtype=np.uint8).tobytes()
    idx2 = rng.integers(0, 4, size=(h, w))
    files["gen_palette2.png"] = png_bytes(w, h, 2, 3, [pack_bits(list(idx2[y]), 2) for y in range(h)],
                                          [(b"PLTE", pal2)])

    # --- Orientation: EXIF 2..8 on a PNG (eXIf chunk), XMP-only on PNG and JPEG -----------------
    small = crop.resize((6, 4), Image.NEAREST)
    for o in range(2, 9):
        save(f"gen_orient{o}.png", small, format="PNG", exif=exif_with_orientation(o))
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp_packet(8).decode())
    save("gen_xmp_orient8.png", small, format="PNG", pnginfo=info)
    save("gen_xmp_orient5.jpg", crop, format="JPEG", quality=90, xmp=xmp_packet(5))
    save("gen_orient3.jpg", crop, format="JPEG", quality=90, exif=exif_with_orientation(3))

    # --- JPEG: grey, CMYK without an Adobe marker, 4:4:4 ----------------------------------------
    save("gen_gray.jpg", crop.convert("L"), format="JPEG", quality=90)
    buf = io.BytesIO()
    crop.convert("CMYK").save(buf, format="JPEG", quality=90)
    files["gen_cmyk_noadobe.jpg"] = strip_adobe_app14(buf.getvalue())
    save("gen_444.jpg", crop, format="JPEG", quality=95, subsampling=0)

    # --- WebP: lossy, lossy + alpha, lossless + alpha keeping hidden colours, animated ----------
    alpha = Image.fromarray(np.where(rng.random((48, 64)) < 0.3, 0, 200).astype(np.uint8))
    rgba = crop.copy()
    rgba.putalpha(alpha)
    save("gen_lossy.webp", crop, format="WEBP", quality=80)
    save("gen_lossy_alpha.webp", rgba, format="WEBP", quality=80)
    save("gen_lossless_alpha.webp", rgba, format="WEBP", lossless=True, exact=True)
    save("gen_anim.webp", crop, format="WEBP", save_all=True, append_images=[crop.rotate(180)], duration=100, lossless=True)

    # --- GIF ------------------------------------------------------------------------------------
    pal8 = rng.integers(0, 256, size=(8, 3), dtype=np.uint8).tobytes()
    fw, fh = 5, 4
    fidx = [int(v) for v in rng.integers(0, 8, size=fw * fh)]
    # frame inside a larger screen, transparent index 3 (its palette colour is not black)
    files["gen_frame_transparent.gif"] = gif_bytes((9, 7), (2, 1, fw, fh), fidx, global_palette=pal8,
                                                   transparency=3, min_code_size=3)
    # same without transparency: outside the frame is index 0
    files["gen_frame_offset.gif"] = gif_bytes((9, 7), (2, 1, fw, fh), fidx, local_palette=pal8, min_code_size=3)
    # the frame extends past the logical screen: the canvas grows
    files["gen_frame_oversize.gif"] = gif_bytes((4, 3), (1, 2, fw, fh), fidx, global_palette=pal8, min_code_size=3)
    # interlaced, 13 rows (all four passes), 2-entry palette but indices 0..3 (2 and 3 are past it)
    iidx = [int(v) for v in rng.integers(0, 4, size=6 * 13)]
    pal2g = bytes([250, 10, 10, 10, 250, 10])
    files["gen_interlaced_short_palette.gif"] = gif_bytes((6, 13), (0, 0, 6, 13), iidx, global_palette=pal2g,
                                                          interlace=True, min_code_size=2)
    # grey-ramp palette (Pillow: mode L) and no palette at all (also mode L)
    ramp = bytes(v for i in range(16) for v in (i, i, i))
    gidx = [int(v) for v in rng.integers(0, 16, size=fw * fh)]
    files["gen_grey_ramp.gif"] = gif_bytes((fw, fh), (0, 0, fw, fh), gidx, global_palette=ramp, min_code_size=4)
    files["gen_no_palette.gif"] = gif_bytes((fw, fh), (0, 0, fw, fh), gidx, min_code_size=4)
    # long LZW stream (table fills, clear codes) from Pillow's own writer, photo content
    q = crop.resize((128, 96), Image.BICUBIC).quantize(colors=200)
    save("gen_photo.gif", q, format="GIF")
    # animated: the first frame counts
    frames = [crop.quantize(colors=64), crop.rotate(180).quantize(colors=64)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100, transparency=5)
    files["gen_anim.gif"] = buf.getvalue()
    return files


# --------------------------------------------------------------------------------------------
# Reference computations

def smart_resize(h: int, w: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Spec §5.2, in Python arithmetic (round = half to even, true division in double)."""
    if max(h, w) / min(h, w) > 200:
        raise ValueError("aspect ratio over 200")
    hb = round(h / factor) * factor
    wb = round(w / factor) * factor
    if hb * wb > max_pixels:
        beta = math.sqrt((h * w) / max_pixels)
        hb = max(factor, math.floor(h / beta / factor) * factor)
        wb = max(factor, math.floor(w / beta / factor) * factor)
    elif hb * wb < min_pixels:
        beta = math.sqrt(min_pixels / (h * w))
        hb = math.ceil(h * beta / factor) * factor
        wb = math.ceil(w * beta / factor) * factor
    return hb, wb


def pixel_values(rgb: Image.Image, patch: int, merge: int, min_pixels: int, max_pixels: int,
                 mean: list[float], std: list[float]) -> tuple[np.ndarray, int, int, int, int]:
    """VideoLlama3ImageProcessorPil on an RGB image, step by step (spec §5.2-§5.4)."""
    w, h = rgb.size
    rh, rw = smart_resize(h, w, patch * merge, min_pixels, max_pixels)
    arr = np.array(rgb.resize((rw, rh), Image.BICUBIC)).transpose(2, 0, 1)  # CHW uint8
    x = (arr.astype(np.float64) * (1 / 255)).astype(np.float32)
    x = ((x.T - np.array(mean, np.float32)) / np.array(std, np.float32)).T
    gh, gw = rh // patch, rw // patch
    p = x.reshape(3, gh // merge, merge, patch, gw // merge, merge, patch).transpose(1, 4, 2, 5, 0, 3, 6)
    return np.ascontiguousarray(p.reshape(gh * gw, 3 * patch * patch), np.float32), gh, gw, rh, rw


def samples(arr: np.ndarray, points: list[tuple[int, int]]) -> list[list[int]]:
    h, w = arr.shape[:2]
    out = []
    for x, y in points:
        x, y = min(max(x, 0), w - 1), min(max(y, 0), h - 1)
        out.append([x, y, *[int(v) for v in arr[y, x]]])
    return out


def resize_cases(decoded: dict[str, Image.Image]) -> list[dict]:
    cases: list[tuple[str, int, int]] = []
    for name, im in decoded.items():
        if name in COPIED:
            rh, rw = smart_resize(im.height, im.width, PATCH, MIN_PIXELS, MAX_PIXELS)
            cases.append((name, rw, rh))
    cases += [
        ("chelsea.png", 224, 224), ("chelsea.png", 97, 31), ("chelsea.png", 800, 600),
        ("chelsea.png", 451, 17), ("chelsea.png", 13, 300), ("chelsea.png", 1, 1),
        ("chelsea.png", 1, 300), ("chelsea.png", 451, 1), ("chelsea.png", 4000, 3),
        ("tiny_1x1.png", 14, 14), ("tiny_1x1.png", 56, 56), ("tiny_1x1.png", 3, 7),
        ("coffee_extreme_wide_1200x40.jpg", 600, 20), ("coffee_extreme_wide_1200x40.jpg", 2800, 14),
        ("text.png", 896, 516), ("text.png", 33, 17),
        ("coffee_cmyk.jpg", 299, 201),
        ("pattern:5x600", 3, 300),    # > 100x taller than wide, shrinking: vertical pass first
        ("pattern:5x600", 5, 100),    # vertical pass only
        ("pattern:5x600", 14, 448),   # widen + shrink height, vertical first
        ("pattern:5x600", 10, 700),   # grows: horizontal first
        ("pattern:4x900", 1, 2),
        ("pattern:600x5", 300, 3),
        ("pattern:37x23", 1000, 3), ("pattern:37x23", 2, 900), ("pattern:37x23", 37, 23),
        ("pattern:1x1", 5, 3),
        ("pattern:1x201", 2, 100),
    ]
    out = []
    for name, ow, oh in cases:
        if name.startswith("pattern:"):
            pw, ph = (int(v) for v in name.split(":")[1].split("x"))
            src = Image.fromarray(pattern(pw, ph))
        else:
            src = decoded[name]
        res = np.array(src.resize((ow, oh), Image.BICUBIC))
        pts = [(0, 0), (ow - 1, oh - 1), (ow // 2, oh // 2), (ow // 3, 2 * oh // 3), (ow - 1, 0)]
        out.append({"image": name, "from": [src.width, src.height], "to": [ow, oh],
                    "sha256": sha(res.tobytes()), "samples": samples(res, pts)})
    return out


def smart_resize_cases() -> list[dict]:
    default = (MIN_PIXELS, MAX_PIXELS)
    table: list[tuple[int, int, int, int, int]] = [
        (1080, 1920, 14, *default),          # sora.png in the integration test: grid 77x137
        (42, 42, 28, 0, 10**9),              # 1.5 -> 2 (even)
        (70, 70, 28, 0, 10**9),              # 2.5 -> 2 (even)
        (98, 126, 28, 0, 10**9),             # 3.5 -> 4, 4.5 -> 4
        (21, 35, 14, 0, 10**9),              # 1.5 -> 2, 2.5 -> 2
        (7, 7, 14, 0, 10**9),                # 0.5 -> 0: size 0 (no min budget)
        (7, 7, 14, *default),                # 0.5 -> 0 -> min branch
        (1, 1, 14, *default),
        (1, 200, 14, *default),              # aspect exactly 200: allowed
        (300, 451, 14, *default),
        (451, 300, 14, *default),
        (40, 1200, 14, *default),
        (1200, 40, 28, *default),
        (10000, 100, 14, *default),
        (8000, 6000, 14, *default),          # max branch
        (100000, 600, 14, *default),
        (4000, 3000, 14, 3136, 12845056),
        (1056, 816, 14, *default),
        (172, 448, 14, *default),
        (360, 640, 28, 3136, 3211264 // 16),  # video-like per-frame budget
        (360, 640, 28, 3136, 200704),
        (720, 1280, 28, 3136, 3211264 // 180),
        (5, 900, 14, *default),
        (3, 600, 14, 56 * 56, 28 * 28 * 1280),  # class defaults
        (2000, 2000, 14, 3136, 14 * 14),        # max below factor^2: max(F, ...)
        (50, 50, 14, 10**6, 10**7),
        (13, 2600, 14, *default),
    ]
    rng = np.random.default_rng(7)
    for _ in range(40):
        h, w = (int(v) for v in rng.integers(1, 5000, size=2))
        if max(h, w) / min(h, w) > 200:
            continue
        f = int(rng.choice([14, 28]))
        table.append((h, w, f, *default))
    out = []
    for h, w, f, lo, hi in table + [(201, 1, 14, *default), (1, 100000, 14, *default), (3, 700, 28, *default)]:
        try:
            rh, rw = smart_resize(h, w, f, lo, hi)
            out.append({"h": h, "w": w, "factor": f, "min": lo, "max": hi, "out": [rh, rw]})
        except ValueError:
            out.append({"h": h, "w": w, "factor": f, "min": lo, "max": hi, "error": "aspect"})
    return out


def preprocess_cases(decoded: dict[str, Image.Image]) -> list[dict]:
    cases = [
        ("chelsea.png", PATCH, 1, MIN_PIXELS, MAX_PIXELS, MEAN, STD),
        ("tiny_1x1.png", PATCH, 1, MIN_PIXELS, MAX_PIXELS, MEAN, STD),
        ("coffee_extreme_wide_1200x40.jpg", PATCH, 1, MIN_PIXELS, MAX_PIXELS, MEAN, STD),
        ("document_invoice_816x1056.png", PATCH, 1, MIN_PIXELS, 200704, MEAN, STD),   # max branch
        ("chelsea_exif_orient6.jpg", PATCH, 2, MIN_PIXELS, 100352, MEAN, STD),         # merge 2 (video order)
        ("rocket.jpg", PATCH, 1, MIN_PIXELS, MAX_PIXELS, [0.48145466, 0.4578275, 0.40821073],
         [0.26862954, 0.26130258, 0.27577711]),                                          # CLIP stats
        ("pattern:29x31", PATCH, 2, 3136, 3211264, MEAN, STD),
    ]
    out = []
    for name, patch, merge, lo, hi, mean, std in cases:
        if name.startswith("pattern:"):
            pw, ph = (int(v) for v in name.split(":")[1].split("x"))
            src = Image.fromarray(pattern(pw, ph))
        else:
            src = decoded[name]
        pv, gh, gw, rh, rw = pixel_values(src, patch, merge, lo, hi, mean, std)
        check_against_transformers(src, pv, patch, merge, lo, hi, mean, std)
        n = pv.shape[0]
        picks = sorted({(0, 0), (n - 1, pv.shape[1] - 1), (n // 2, 1), (n // 3, 200), (n - 1, 0)})
        out.append({
            "image": name, "patchSize": patch, "mergeSize": merge, "minPixels": lo, "maxPixels": hi,
            "mean": mean, "std": std, "gridH": gh, "gridW": gw, "resizedWidth": rw, "resizedHeight": rh,
            "rows": n, "sha256": sha(pv.astype("<f4").tobytes()),
            "samples": [[r, c, float(pv[r, c])] for r, c in picks],
        })
    return out


_TRANSFORMERS_CHECKED: list[str] = []


def check_against_transformers(src, pv, patch, merge, lo, hi, mean, std) -> None:
    try:
        from transformers.models.video_llama_3.image_processing_pil_video_llama_3 import VideoLlama3ImageProcessorPil
    except Exception:  # noqa: BLE001 - optional cross-check
        return
    proc = VideoLlama3ImageProcessorPil(patch_size=patch, merge_size=merge, min_pixels=lo, max_pixels=hi,
                                        image_mean=mean, image_std=std)
    ref = proc(images=[src], return_tensors="np")["pixel_values"]
    assert ref.dtype == np.float32 and ref.shape == pv.shape and np.array_equal(ref, pv), "emulation != transformers"
    _TRANSFORMERS_CHECKED.append(f"{src.size}")


def main() -> None:
    assert PIL.__version__ == "12.3.0", f"expected Pillow 12.3.0, got {PIL.__version__}"
    OUT.mkdir(parents=True, exist_ok=True)
    generated = generate_images()
    for name, data in generated.items():
        (IMAGES / name).write_bytes(data)

    names = COPIED + sorted(generated)
    decoded: dict[str, Image.Image] = {}
    decode = []
    for name in names:
        rgb = load_image(IMAGES / name)
        decoded[name] = rgb
        decode.append({"image": name, "width": rgb.width, "height": rgb.height, "sha256": sha(rgb.tobytes())})

    write = lambda name, obj: (OUT / name).write_text(json.dumps(obj, indent=1) + "\n")  # noqa: E731
    meta = {"generator": f"tools/reference/make_preprocess_fixtures.py, Pillow {PIL.__version__}, numpy {np.__version__}"}
    write("decode.json", {**meta, "images": decode})
    write("resize.json", {**meta, "cases": resize_cases(decoded)})
    write("smart_resize.json", {**meta, "cases": smart_resize_cases()})
    write("preprocess.json", {**meta, "cases": preprocess_cases(decoded)})
    print(f"wrote {len(decode)} decode, fixtures in {OUT}; transformers cross-check on {len(_TRANSFORMERS_CHECKED)} cases",
          file=sys.stderr)


if __name__ == "__main__":
    main()

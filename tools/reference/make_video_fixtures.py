#!/usr/bin/env python
"""Expected values for test/video-preprocess.test.ts (native/media/video.cpp).

Reference: transformers 5.18 `VideoLlama3VideoProcessor` (torch 2.13 CPU). It needs torchvision,
for which only a CUDA-built wheel is available offline; install it into a private venv and blank
its `_meta_registrations.py` and `_autograd_registrations.py` (see /work/shared/spec/trace_tiny.py):

    python3 -m venv .venv-video
    echo "$PWD/.venv-ref/lib/python3.11/site-packages" > .venv-video/lib/python3.11/site-packages/zz_ref.pth
    .venv-video/bin/pip download --no-deps torchvision -d /tmp/tv
    .venv-video/bin/pip install --no-deps --no-index /tmp/tv/torchvision-*.whl
    : > .venv-video/lib/python3.11/site-packages/torchvision/_meta_registrations.py
    : > .venv-video/lib/python3.11/site-packages/torchvision/_autograd_registrations.py
    .venv-video/bin/python tools/reference/make_video_fixtures.py

The processor resizes frames with torchvision (`resize(uint8, BICUBIC, antialias=True)`, which may
differ from Pillow by one level, spec §14.14); this library reproduces that resize for video frames
(media::ResizeFilter::TorchVision). The frames are resized here with that same torchvision call to
the fixed test size and handed to the processor with do_resize=False: its normalization, patchify
and `video_compression_mask` are the reference. (Run on an AVX2 CPU: torch takes a float path for
uint8 bicubic without AVX2.) Other thresholds / std values call the processor's own
`_get_compression_mask` on its output.

Writes test/fixtures/video-preprocess/{frames.bin.gz, video.json}.
"""

import gzip
import json
import os

import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F
from transformers import VideoLlama3VideoProcessor
from transformers.models.video_llama_3.video_processing_video_llama_3 import smart_resize

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "test", "fixtures", "video-preprocess")
TH, TW = 84, 112  # target frame size: grid 6x8, merged 3x4 = 12 tokens
PATCH, MERGE = 14, 2
rng = np.random.default_rng(1234)


def gradient(h, w, phase=0):
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([(x * 2 + phase) % 256, (y * 3 + phase * 2) % 256, ((x + y) + 40) % 256], axis=-1)
    return img.astype(np.uint8)


def square(base, top, left, size, color):
    img = base.copy()
    img[top : top + size, left : left + size] = color
    return img


def token_slice(j):
    bw = TW // (PATCH * MERGE)
    bi, bj = divmod(j, bw)
    b = PATCH * MERGE
    return slice(bi * b, bi * b + b), slice(bj * b, bj * b + b)


def bump(img, j, count, delta, start=0):
    """Adds `delta` to `count` values (flattened token block, channel-interleaved) of token j."""
    out = img.copy().astype(np.int16)
    ys, xs = token_slice(j)
    block = out[ys, xs].reshape(-1)
    block[start : start + count] += delta
    out[ys, xs] = block.reshape(out[ys, xs].shape)
    assert out.min() >= 0 and out.max() <= 255
    return out.astype(np.uint8)


def sequences():
    seqs = []
    g = gradient(TH, TW)
    seqs.append(("static", [g, g, g, g]))
    seqs.append(("moving-square", [square(g, 10 + 3 * k, 5 + 19 * k, 20, (250, 20, 20)) for k in range(5)]))
    g2 = gradient(TH, TW, phase=100)[::-1].copy()
    seqs.append(("cut", [g, g, g2, g2]))
    base = rng.integers(10, 240, size=(TH, TW, 3), dtype=np.uint8)
    for j in (3, 4):  # room for a single +117 / +118 step
        ys, xs = token_slice(j)
        base[ys.start, xs.start, 0] = 5
    f2 = base
    f2 = bump(f2, 0, 117, 1)  # S = 117: dropped
    f2 = bump(f2, 1, 118, 1)  # S = 118: kept
    f2 = bump(f2, 2, 59, 2)  # S = 118: kept
    f2 = bump(f2, 3, 1, 117)  # S = 117: dropped
    f2 = bump(f2, 4, 1, 118)  # S = 118: kept
    f2 = bump(f2, 5, 118, -1)  # S = 118: kept
    f2 = bump(f2, 6, 2352, 0)  # unchanged
    f3 = f2.copy()  # identical: nothing kept -> token 0 forced
    f4 = bump(f3, 7, 117, -1)  # S = 117 only: nothing kept -> token 0 forced
    f5 = bump(f4, 11, 118, 1)  # last token kept, token 0 not forced
    seqs.append(("threshold", [base, f2, f3, f4, f5]))
    # Frames of another size, resized to the target (upscale) with Pillow.
    small = gradient(45, 60, phase=7)
    seqs.append(("resize", [square(small, 5 + 4 * k, 3 + 11 * k, 12, (30, 240, 90)) for k in range(4)]))
    return seqs


def tv_resize(frames):
    """The video processor's resize (torchvision, uint8, antialiased bicubic) to TH x TW."""
    assert "AVX2" in torch.backends.cpu.get_cpu_capability(), "run on an AVX2 CPU (see the docstring)"
    t = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)
    if tuple(t.shape[2:]) != (TH, TW):
        t = F.resize(t, [TH, TW], interpolation=InterpolationMode.BICUBIC, antialias=True)
    return t.permute(0, 2, 3, 1).contiguous().numpy()


def main():
    os.makedirs(OUT, exist_ok=True)
    proc = VideoLlama3VideoProcessor()
    blob = bytearray()
    cases = []
    for name, frames in sequences():
        h, w = frames[0].shape[:2]
        offset = len(blob)
        for f in frames:
            blob += f.tobytes()
        resized = tv_resize(frames)
        out = proc(
            videos=[resized],
            do_resize=False,
            do_sample_frames=False,
            patch_size=PATCH,
            merge_size=MERGE,
            image_mean=[0.5, 0.5, 0.5],
            image_std=[0.5, 0.5, 0.5],
            return_tensors="pt",
        )
        pv = out["pixel_values_videos"]
        thw = out["video_grid_thw"][0].tolist()
        t = len(frames)
        assert thw == [t, TH // PATCH, TW // PATCH], thw
        tokens = (thw[1] // MERGE) * (thw[2] // MERGE)
        mask = out["video_compression_mask"].reshape(t, tokens).to(torch.uint8).tolist()
        rows = thw[1] * thw[2]
        per_frame = pv.reshape(t, rows * pv.shape[1]).double()
        extra = {}
        for thr in (0.05, 0.5):
            m = proc._get_compression_mask(pv, out["video_grid_thw"], out["video_merge_sizes"], threshold=thr)
            extra[str(thr)] = m.reshape(t, tokens).to(torch.uint8).tolist()
        # ImageNet-style per-channel normalization (unequal std), threshold 0.1.
        mean_in, std_in = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
        out_in = proc(
            videos=[resized], do_resize=False, do_sample_frames=False, patch_size=PATCH, merge_size=MERGE,
            image_mean=mean_in, image_std=std_in, return_tensors="pt",
        )
        cases.append(
            {
                "name": name,
                "width": w,
                "height": h,
                "frames": t,
                "offset": offset,
                "gridH": thw[1],
                "gridW": thw[2],
                "mask": mask,
                "maskByThreshold": extra,
                "imagenet": {
                    "mean": mean_in,
                    "std": std_in,
                    "mask": out_in["video_compression_mask"].reshape(t, tokens).to(torch.uint8).tolist(),
                },
                "pixelSum": per_frame.sum(dim=1).tolist(),
                "pixelAbsSum": per_frame.abs().sum(dim=1).tolist(),
                "pixelHead": pv[0, :8].tolist(),
            }
        )
    size_cases = []
    lo, hi = 16 * 28 * 28, 16384 * 28 * 28
    for h, w, t, mn, mx in [
        (720, 1280, 180, lo, hi),
        (720, 1280, 1, lo, hi),
        (720, 1280, 16, lo, hi),
        (1080, 1920, 64, lo, hi),
        (480, 640, 180, lo, hi),
        (360, 640, 7, lo, hi),
        (100, 100, 4, lo, hi),
        (28, 2000, 10, lo, hi),
        (1280, 720, 180, 128 * 28 * 28, 28 * 28 * 768),
        (576, 1024, 32, 128 * 28 * 28, 28 * 28 * 768),
        (50, 60, 2, 0, 12544),
    ]:
        rh, rw = smart_resize(h, w, factor=PATCH * MERGE, min_pixels=mn, max_pixels=mx // t)
        size_cases.append({"h": h, "w": w, "t": t, "min": mn, "max": mx, "out": [rh, rw]})
    with open(os.path.join(OUT, "frames.bin.gz"), "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as f:  # reproducible bytes
            f.write(bytes(blob))
    with open(os.path.join(OUT, "video.json"), "w") as f:
        json.dump({"target": [TH, TW], "patchSize": PATCH, "mergeSize": MERGE, "cases": cases, "sizes": size_cases}, f)
        f.write("\n")
    for c in cases:
        print(c["name"], [sum(m) for m in c["mask"]], {k: [sum(m) for m in v] for k, v in c["maskByThreshold"].items()},
              [sum(m) for m in c["imagenet"]["mask"]])
    print([c["out"] for c in size_cases])


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Peer side of the side-by-side benchmark: HF transformers VideoLlama3ForConditionalGeneration,
VideoLLaMA3-2B shapes (spec §1), random weights, sdpa attention, CPU.

Run (full 2B, bf16, 2 threads, 3 timed reps after 1 warm-up):
    .venv-ref/bin/python tools/bench/torch_bench.py --threads 2 --reps 3 --dtype bfloat16 [--video]
Smoke test (tiny config, seconds):
    .venv-ref/bin/python tools/bench/torch_bench.py --tiny --reps 1 --threads 1 [--video]

Every measurement: 1 untimed warm-up, then --reps timed runs; "median" + all "reps" (seconds).
  vision_448.preprocess_s  VideoLlama3ImageProcessorPil on one 448x448 RGB noise image
                           (min 3136 / max 3211264 px -> grid 32x32 = 1024 patches), median.
  vision_448.encode_s      model.model.get_image_features(...) = ViT + post-LN + merge + projector,
                           inputs already preprocessed, torch.inference_mode().
  ttft_image               preprocess + one full-prompt forward model(input_ids, pixel_values,
                           image_grid_thw, image_merge_sizes, use_cache=True) + argmax of the last
                           logits row (= generate's prefill; this transformers version has no
                           logits_to_keep, so lm_head runs over every prompt position, as in generate;
                           --last-logits-only applies it to the last position only).
  decode.tokens_per_s      32 greedy steps with the KV cache from that prefill (manual loop,
                           1 token per forward), 32 / wall time; median over reps.
  video_16f (--video)      16 noise frames 1280x720, merge 2, per-frame budget longest_edge // 16
                           (spec §6.2; torchvision is absent so the video processor cannot be used:
                           each frame goes through the PIL image processor with factor 28, which
                           emits spec §6.3 merge-block order, concatenated frame-major). Reports
                           preprocess_s, encode_s (get_video_features) and ttft (preprocess + forward
                           + argmax). No token compression (noise frames would keep every token).
                           Default budget 12845056 // 16 -> 672x1176 per frame, grid 48x84, 64512
                           patches, ~16.2k prompt tokens (very slow on CPU); --video-longest-edge 602112
                           (class default) gives 140x252 / 45 tokens per frame like perf-baseline §4.
  video_file (--video-file F)  the file decoded by the ffmpeg CLI (every frame, rgb24, as
                           tools/reference/make_fixtures.py), VideoMetadata + VideoLlama3VideoProcessor
                           (needs torchvision: run with .venv-video/bin/python) sampling at 1 fps, at most
                           --video-max-frames frames, budget --video-longest-edge, token compression on
                           (threshold 0.1), then one forward with video_compression_mask + argmax. "ttft"
                           times all of it (decode included); prompt ids approximate the "Time t.ts:" text.
  --device cuda            model and inputs on the GPU (torch.cuda.synchronize() before each timer stops).
Prints one JSON object on stdout; peak_rss_mib from getrusage (whole process, incl. model build).
"""
import argparse, json, resource, statistics, sys, time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--reps", type=int, default=3)
ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
ap.add_argument("--video", action="store_true")
ap.add_argument("--video-longest-edge", type=int, default=16384 * 28 * 28, help="video pixel budget shared by the frames")
ap.add_argument("--decode-steps", type=int, default=32)
ap.add_argument("--last-logits-only", action="store_true",
                help="prefill runs lm_head on the last position only (default: every position, as generate does here)")
ap.add_argument("--tiny", action="store_true", help="tiny config for smoke tests")
ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
ap.add_argument("--video-file", help="a video file for the video_file measurement (needs torchvision)")
ap.add_argument("--video-max-frames", type=int, default=16)
ap.add_argument("--video-only", action="store_true", help="skip the image and decode measurements")
args = ap.parse_args()
torch.set_num_threads(args.threads)
dtype = getattr(torch, args.dtype)

import transformers
from transformers import VideoLlama3Config, VideoLlama3ForConditionalGeneration
from transformers.initialization import no_init_weights
from transformers.models.video_llama_3.image_processing_pil_video_llama_3 import VideoLlama3ImageProcessorPil

IMG, VID, IM_START, IM_END, NL, USER, ASSISTANT = 151655, 151656, 151644, 151645, 198, 872, 77091
QUESTION = [74785, 279, 2168, 304, 7716, 13]  # "Describe the image in detail." (plausible ids < 151643)

if args.tiny:
    vis = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4)
    txt = dict(hidden_size=128, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
else:
    vis = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16)
    txt = dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2)
cfg = VideoLlama3Config(
    vision_config=dict(num_channels=3, patch_size=14, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6, **vis),
    text_config=dict(model_type="qwen2", vocab_size=151936, hidden_act="silu", max_position_embeddings=32768,
                     rms_norm_eps=1e-6, tie_word_embeddings=True, use_sliding_window=False,
                     rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, **txt),
    image_token_id=IMG, video_token_id=VID, tie_word_embeddings=True)


def build():
    """Allocate directly in `dtype` with initialisation disabled, then fill with cheap small random values."""
    with no_init_weights():
        m = VideoLlama3ForConditionalGeneration._from_config(cfg, dtype=dtype, attn_implementation="sdpa")
    m.tie_weights()  # no_init_weights also skips the tying done by init_weights
    pool = (torch.rand((1 << 20) + 7, generator=torch.Generator().manual_seed(0)) * 0.04 - 0.02).to(dtype)
    with torch.no_grad():
        for name, p in m.named_parameters():  # tied lm_head appears once
            flat = p.view(-1)
            if p.ndim == 1 and "norm" in name and name.endswith("weight"):
                flat.fill_(1.0)
                continue
            for i in range(0, flat.numel(), pool.numel()):
                n = min(pool.numel(), flat.numel() - i)
                flat[i:i + n].copy_(pool[:n])
    return m.eval()


DEV = torch.device(args.device)


def sync():
    if DEV.type == "cuda":
        torch.cuda.synchronize()


def dev(*xs):
    return tuple(x.to(DEV) for x in xs)


t0 = time.perf_counter()
model = build().to(DEV)
build_s = time.perf_counter() - t0
assert model.lm_head.weight.data_ptr() == model.model.language_model.embed_tokens.weight.data_ptr(), "lm_head not tied"

rng = np.random.default_rng(0)
proc = VideoLlama3ImageProcessorPil()
IMG_SIZE = {"shortest_edge": 16 * 14 * 14, "longest_edge": 16384 * 14 * 14}


def timed(fn, reps):
    fn()  # warm-up
    sync()
    out = []
    for _ in range(reps):
        t = time.perf_counter(); fn(); sync(); out.append(time.perf_counter() - t)
    return out


def summary(ts):
    return {"median": round(statistics.median(ts), 4), "reps": [round(x, 4) for x in ts]}


def noise(w, h):
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def prep_image(img):
    o = proc(images=[img], size=IMG_SIZE, merge_size=1, return_tensors="pt")
    return dev(o["pixel_values"], o["image_grid_thw"], o["image_merge_sizes"])


def prefill(ids, **mm):
    if args.last_logits_only:
        out = model.model(input_ids=ids, use_cache=True, **mm)
        return model.lm_head(out.last_hidden_state[0, -1]).argmax(), out.past_key_values
    out = model(input_ids=ids, use_cache=True, **mm)  # attention_mask=None -> causal sdpa, batch 1
    return out.logits[0, -1].argmax(), out.past_key_values


res = {"peer": "transformers", "torch": torch.__version__, "transformers": transformers.__version__,
       "device": torch.cuda.get_device_name() if DEV.type == "cuda" else "cpu",
       "dtype": args.dtype, "threads": args.threads, "reps": args.reps, "tiny": args.tiny,
       "last_logits_only": args.last_logits_only,
       "attn": model.config._attn_implementation, "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
       "build_s": round(build_s, 2)}

with torch.inference_mode():
    if not args.video_only:
        # 1) vision_448
        img = noise(448, 448)
        pre_ts = timed(lambda: prep_image(img), args.reps)
        pv, grid, ms = prep_image(img)
        enc = lambda: model.model.get_image_features(pixel_values=pv, image_grid_thw=grid, image_merge_sizes=ms).pooler_output
        res["vision_448"] = {"grid_thw": grid[0].tolist(), "preprocess_s": round(statistics.median(pre_ts), 4),
                             "preprocess_reps": [round(x, 4) for x in pre_ts], "encode_s": summary(timed(enc, args.reps))}

        # 2) ttft_image + decode
        n_img = int(grid.prod())
        ids = torch.tensor([[IM_START, USER, NL] + [IMG] * n_img + [NL] + QUESTION + [IM_END, NL, IM_START, ASSISTANT, NL]], device=DEV)
        dec_tps = []

        def ttft_and_decode():
            t = time.perf_counter()
            p, g, m = prep_image(img)
            tok, pkv = prefill(ids, pixel_values=p, image_grid_thw=g, image_merge_sizes=m)
            tok = int(tok)
            ttft = time.perf_counter() - t
            t = time.perf_counter()
            for _ in range(args.decode_steps):
                out = model(input_ids=torch.tensor([[tok]], device=DEV), past_key_values=pkv, use_cache=True)
                pkv, tok = out.past_key_values, int(out.logits[0, -1].argmax())
            dec_tps.append(args.decode_steps / (time.perf_counter() - t))
            return ttft

        ttft_and_decode()  # warm-up
        dec_tps.clear()
        ttfts = [ttft_and_decode() for _ in range(args.reps)]
        res["ttft_image"] = {**summary(ttfts), "prompt_tokens": ids.shape[1]}
        res["decode"] = {"steps": args.decode_steps, "tokens_per_s": round(statistics.median(dec_tps), 3),
                         "reps": [round(x, 3) for x in dec_tps]}

    # 3) video_16f
    res["video_16f"] = None
    if args.video:
        try:
            T = 16
            frames = [noise(1280, 720) for _ in range(T)]
            vsize = {"shortest_edge": 16 * 28 * 28, "longest_edge": args.video_longest_edge // T}

            def prep_video():
                o = proc(images=frames, size=vsize, merge_size=2, return_tensors="pt")
                g = o["image_grid_thw"]
                assert (g == g[0]).all()
                return dev(o["pixel_values"], torch.tensor([[T, int(g[0, 1]), int(g[0, 2])]]), torch.tensor([2]))

            vpre = timed(prep_video, args.reps)
            vpv, vgrid, vms = prep_video()
            per_frame = int(vgrid[0, 1] * vgrid[0, 2]) // 4
            vids = [IM_START, USER, NL]
            for k in range(T):  # "Time k.0s:" (~7 ids) + frame tokens, frames joined by ","
                vids += ([11] if k else []) + [1462, 220, 15 + k % 10, 13, 15, 82, 25] + [VID] * per_frame
            vids = torch.tensor([vids + [NL, 74785, 279, 2766, 304, 7716, 13, IM_END, NL, IM_START, ASSISTANT, NL]], device=DEV)
            venc = lambda: model.model.get_video_features(pixel_values_videos=vpv, video_grid_thw=vgrid,
                                                          video_merge_sizes=vms).pooler_output

            def vttft():
                p, g, m = prep_video()
                int(prefill(vids, pixel_values_videos=p, video_grid_thw=g, video_merge_sizes=m)[0])

            res["video_16f"] = {"frames": T, "frame_size": [int(vgrid[0, 1]) * 14, int(vgrid[0, 2]) * 14],
                                "grid_thw": vgrid[0].tolist(), "patches": int(vgrid.prod()), "prompt_tokens": vids.shape[1],
                                "preprocess_s": round(statistics.median(vpre), 4),
                                "encode_s": summary(timed(venc, args.reps)), "ttft": summary(timed(vttft, args.reps))}
        except Exception as e:  # noqa: BLE001
            print(f"video_16f skipped: {type(e).__name__}: {e}", file=sys.stderr)

    # 4) video_file
    res["video_file"] = None
    if args.video_file:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reference"))
        from ffmpeg_frames import decode_video  # the fixtures' decoder (same ffmpeg CLI calls as lib/media/video.ts)
        from transformers import VideoLlama3VideoProcessor  # needs torchvision
        from transformers.video_utils import VideoMetadata

        vproc = VideoLlama3VideoProcessor(size={"shortest_edge": 16 * 28 * 28, "longest_edge": args.video_longest_edge},
                                          patch_size=14, merge_size=2, temporal_patch_size=1, image_mean=[0.5] * 3,
                                          image_std=[0.5] * 3, resample=3, do_convert_rgb=True, fps=1, min_frames=4,
                                          max_frames=args.video_max_frames, use_token_compression=True,
                                          do_sample_frames=True)

        layout = {}

        def file_ttft():
            frames, fps0, _ = decode_video(args.video_file)
            n, h, w = frames.shape[0], frames.shape[1], frames.shape[2]
            meta = VideoMetadata(total_num_frames=n, fps=fps0, duration=n / fps0, width=w, height=h)
            o = vproc(videos=[frames], video_metadata=[meta], return_metadata=True, return_tensors="pt")
            T, gh, gw = o["video_grid_thw"][0].tolist()
            kept = o["video_compression_mask"].view(T, -1).sum(1).tolist()
            ids = [IM_START, USER, NL]
            for k in range(T):  # "Time k.0s:" (~7 ids) + kept tokens, frames joined by ","
                ids += ([11] if k else []) + [1462, 220, 15 + k % 10, 13, 15, 82, 25] + [VID] * int(kept[k])
            ids = torch.tensor([ids + [NL, 74785, 279, 2766, 304, 7716, 13, IM_END, NL, IM_START, ASSISTANT, NL]], device=DEV)
            pv, g, m, mask = dev(o["pixel_values_videos"], o["video_grid_thw"], o["video_merge_sizes"],
                                 o["video_compression_mask"])
            int(prefill(ids, pixel_values_videos=pv, video_grid_thw=g, video_merge_sizes=m, video_compression_mask=mask)[0])
            layout.update(frames=T, frame_size=[gh * 14, gw * 14], patches=T * gh * gw, kept_tokens=int(sum(kept)),
                          tokens_before_pruning=T * (gh // 2) * (gw // 2), prompt_tokens=ids.shape[1])

        res["video_file"] = {"file": args.video_file, "ttft": summary(timed(file_ttft, args.reps))}
        res["video_file"].update(layout)

res["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
print(json.dumps(res))

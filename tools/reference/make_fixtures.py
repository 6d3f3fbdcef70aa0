#!/usr/bin/env python
"""Reference parity fixtures for videollama3-node, produced with HF transformers' `video_llama_3`.

For three tiny random-weight VideoLlama3ForConditionalGeneration configs (f32) this script
  * writes each checkpoint in two layouts: transformers-native (`hf-native/`) and the original
    DAMO-NLP-SG remote-code naming (`hf-orig/`), with tokenizer / preprocessor / generation configs;
  * runs six image cases (real images from test/fixtures/images/) through the transformers
    processor + model and dumps every pipeline stage (captured with forward hooks on the real
    transformers modules, never re-implemented here) as raw little-endian binaries plus a
    manifest.json, together with an 8-token greedy continuation and its top-5 log-probs;
  * when torchvision and PyAV are importable (the .venv-video venv, see make_video_fixtures.py;
    `pip install av` there), also runs five video cases (clips from test/fixtures/videos/, every
    frame decoded with the ffmpeg CLI exactly like lib/media/video.ts and checked equal to PyAV's
    frames, the reference's decoder; sampled / resized / pruned by `VideoLlama3VideoProcessor` at fps=1)
    and writes `video_preprocessor_config.json` into hf-native/ and hf-orig/.

Everything is seeded and offline (the byte-level tokenizer is built locally). See
tools/reference/README.md and test/fixtures/reference/README.md.

Usage (from the repository root):
    .venv-video/bin/python tools/reference/make_fixtures.py [--out test/fixtures/reference]
(.venv-ref/bin/python works too but skips the video cases and their config files; it refuses to
run without torchvision unless --images-only is given, so the video fixtures are never deleted silently.)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

torch.set_num_threads(1)  # identical reduction order regardless of the machine's core count
torch.use_deterministic_algorithms(True)

import PIL  # noqa: E402
import safetensors  # noqa: E402
import tokenizers  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers  # noqa: E402
from transformers import (  # noqa: E402
    GenerationConfig,
    PreTrainedTokenizerFast,
    VideoLlama3Config,
    VideoLlama3ForConditionalGeneration,
    VideoLlama3ImageProcessorPil,
    VideoLlama3Processor,
)
from transformers.image_utils import load_image  # noqa: E402
from transformers.video_utils import VideoMetadata  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402
from transformers.models.video_llama_3.image_processing_pil_video_llama_3 import smart_resize  # noqa: E402

from ffmpeg_frames import decode_video  # noqa: E402  (this folder is on sys.path when run as a script)

try:  # needs torchvision (see make_video_fixtures.py for the .venv-video setup)
    from transformers import VideoLlama3VideoProcessor  # noqa: E402
    VideoLlama3VideoProcessor.__init__  # noqa: B018  (the lazy import raises here without torchvision)
    HAVE_VIDEO = True
except Exception:  # noqa: BLE001
    HAVE_VIDEO = False

REPO = Path(__file__).resolve().parents[2]
IMAGES_DIR = REPO / "test" / "fixtures" / "images"
VIDEOS_DIR = REPO / "test" / "fixtures" / "videos"

# ---------------------------------------------------------------------------------------------
# constants
# ---------------------------------------------------------------------------------------------
PATCH = 14
MIN_TOKENS, MAX_TOKENS = 8, 64
MIN_PIXELS, MAX_PIXELS = MIN_TOKENS * PATCH * PATCH, MAX_TOKENS * PATCH * PATCH  # 1568 .. 12544
MAX_NEW_TOKENS = 8
TOPK = 5

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|image_pad|>", "<|video_pad|>"]
ENDOFTEXT, IM_START, IM_END, IMAGE_PAD, VIDEO_PAD = 256, 257, 258, 259, 260
ORIG_IMAGE = 261  # `<image>` in the original-layout tokenizer

CONFIGS = {
    "tiny-a": dict(seed=1001,
                   vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
                   text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                             num_key_value_heads=2, vocab_size=264),
                   tie=True),
    "tiny-b": dict(seed=1002,
                   vision=dict(hidden_size=48, intermediate_size=80, num_hidden_layers=3, num_attention_heads=3),
                   text=dict(hidden_size=96, intermediate_size=160, num_hidden_layers=3, num_attention_heads=6,
                             num_key_value_heads=2, vocab_size=272),
                   tie=False),
    "tiny-c": dict(seed=1003,
                   vision=dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4),
                   text=dict(hidden_size=128, intermediate_size=192, num_hidden_layers=2, num_attention_heads=4,
                             num_key_value_heads=1, vocab_size=264),
                   tie=True),
}
VISION_COMMON = dict(num_channels=3, patch_size=PATCH, layer_norm_eps=1e-6, hidden_act="gelu_pytorch_tanh")
TEXT_COMMON = dict(rms_norm_eps=1e-6, max_position_embeddings=4096, rope_theta=1e6)

CASES = {
    "photo": (["chelsea.png"], "Describe the image."),
    "document": (["document_invoice_816x1056.png"], "Describe the image."),
    "wide": (["coffee_extreme_wide_1200x40.jpg"], "Describe the image."),
    "exif": (["chelsea_exif_orient6.jpg"], "Describe the image."),
    "multi": (["chelsea.png", "chelsea_palette_226x150.png"], "Compare the images."),
    "tiny": (["tiny_1x1.png"], "Describe the image."),
}

# video: fps 1, 4..12 frames, merge 2 (factor 28), per-frame budget longest_edge // T
MERGE_V = 2
VIDEO_FPS, VIDEO_MIN_FRAMES, VIDEO_MAX_FRAMES = 1, 4, 12
VIDEO_MIN_PIXELS = 4 * 28 * 28                              # 3136
VIDEO_MAX_PIXELS = 8 * 28 * 28 * VIDEO_MAX_FRAMES           # 75264: <= 8 merged tokens per frame at T = 12
VIDEO_PROMPT_TEXT = "What happens?"
VIDEO_CASES = {
    "video-static": "synthetic_static_motion_cut_12s.mp4",
    "video-cuts": "bbb_cuts_10s_640x360.mp4",
    "video-rotated": "rotate90_2s_160x96.mp4",          # display matrix: ignored, as PyAV does
    "video-vp9": "testsrc2_3s_320x240_vp9.webm",        # WebM: PyAV reports 0 frames (see below)
    "video-ntsc": "ntsc2997_5s_201x113_yuv444.mp4",     # 29.97 fps, odd size, 4:4:4
}


# ---------------------------------------------------------------------------------------------
# tokenizer: 256 byte tokens (GPT-2 byte->unicode alphabet, no merges) + specials
# ---------------------------------------------------------------------------------------------
def _byte_alphabet() -> dict[int, str]:
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1))
                 + list(range(ord("\u00ae"), ord("\u00ff") + 1)))
    mapping, extra = {}, 0
    for b in range(256):
        if b in printable:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def build_tokenizer(with_orig_image_token: bool) -> PreTrainedTokenizerFast:
    alphabet = _byte_alphabet()
    core = Tokenizer(models.BPE(vocab={alphabet[b]: b for b in range(256)}, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    core.decoder = decoders.ByteLevel()
    specials = SPECIALS + (["<image>"] if with_orig_image_token else [])
    core.add_special_tokens(specials)
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  bos_token=None)
    want = {"<|endoftext|>": ENDOFTEXT, "<|im_start|>": IM_START, "<|im_end|>": IM_END,
            "<|image_pad|>": IMAGE_PAD, "<|video_pad|>": VIDEO_PAD}
    if with_orig_image_token:
        want["<image>"] = ORIG_IMAGE
    for t, i in want.items():
        assert tok.convert_tokens_to_ids(t) == i, (t, tok.convert_tokens_to_ids(t), i)
    assert len(tok) == 256 + len(specials)
    return tok


class ImageOnlyProcessor(VideoLlama3Processor):
    """VideoLlama3Processor with no video processor. The stock constructor insists on a
    BaseVideoProcessor instance, and the real VideoLlama3VideoProcessor needs torchvision (not
    installed here). Only that type check is relaxed; every image/text code path is inherited."""

    def check_argument_for_proper_class(self, argument_name, argument):
        if argument_name == "video_processor" and argument is None:
            return None
        return super().check_argument_for_proper_class(argument_name, argument)


# ---------------------------------------------------------------------------------------------
# model
# ---------------------------------------------------------------------------------------------
def make_config(spec: dict) -> VideoLlama3Config:
    t = spec["text"]
    text_cfg = dict(model_type="qwen2", vocab_size=t["vocab_size"], hidden_size=t["hidden_size"],
                    intermediate_size=t["intermediate_size"], num_hidden_layers=t["num_hidden_layers"],
                    num_attention_heads=t["num_attention_heads"], num_key_value_heads=t["num_key_value_heads"],
                    rms_norm_eps=TEXT_COMMON["rms_norm_eps"],
                    max_position_embeddings=TEXT_COMMON["max_position_embeddings"],
                    rope_parameters={"rope_type": "default", "rope_theta": TEXT_COMMON["rope_theta"]},
                    tie_word_embeddings=spec["tie"], bos_token_id=ENDOFTEXT, eos_token_id=IM_END,
                    pad_token_id=ENDOFTEXT, use_sliding_window=False)
    cfg = VideoLlama3Config(vision_config=dict(**spec["vision"], **VISION_COMMON), text_config=text_cfg,
                            image_token_id=IMAGE_PAD, video_token_id=VIDEO_PAD, tie_word_embeddings=spec["tie"])
    return cfg


def make_model(spec: dict) -> VideoLlama3ForConditionalGeneration:
    torch.manual_seed(spec["seed"])
    model = VideoLlama3ForConditionalGeneration(make_config(spec)).float().eval()
    # default init leaves norms at 1 / biases at 0: redraw everything with visible magnitude
    with torch.no_grad():
        for name, prm in model.named_parameters():  # tied lm_head is yielded once (shared tensor)
            if prm.dim() == 1:
                base = 1.0 if (name.endswith(".weight") and "norm" in name) else 0.0
                prm.copy_(base + 0.1 * torch.randn_like(prm))
            else:
                prm.copy_(torch.randn_like(prm) / math.sqrt(prm[0].numel()))
    if spec["tie"]:
        assert model.lm_head.weight.data_ptr() == model.model.language_model.embed_tokens.weight.data_ptr()
    else:
        assert model.lm_head.weight.data_ptr() != model.model.language_model.embed_tokens.weight.data_ptr()
    model.generation_config = GenerationConfig(bos_token_id=ENDOFTEXT, eos_token_id=[IM_END, ENDOFTEXT],
                                               pad_token_id=ENDOFTEXT, do_sample=False)
    return model


def image_processor() -> VideoLlama3ImageProcessorPil:
    return VideoLlama3ImageProcessorPil(size={"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS},
                                        patch_size=PATCH, merge_size=1, temporal_patch_size=1,
                                        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
                                        resample=3, do_convert_rgb=True)


# ---------------------------------------------------------------------------------------------
# checkpoint writers
# ---------------------------------------------------------------------------------------------
def _to_json(obj, level: int = 0) -> str:
    """json with 2-space indent, but lists of scalars and small dicts of scalars kept on one line."""
    pad, pad1 = "  " * level, "  " * (level + 1)

    def flat(o):
        return not isinstance(o, (dict, list)) or (
            isinstance(o, dict) and len(o) <= 3 and all(not isinstance(v, (dict, list)) for v in o.values()))

    if isinstance(obj, dict) and obj and not flat(obj):
        items = [f"{pad1}{json.dumps(k)}: {_to_json(v, level + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and obj and not all(flat(v) for v in obj):
        items = [f"{pad1}{_to_json(v, level + 1)}" for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return json.dumps(obj, separators=(", ", ": "))


def _dump_json(path: Path, obj) -> None:
    text = _to_json(obj) + "\n"
    assert json.loads(text) == obj
    path.write_text(text)


def save_native(model, tok, ip, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    ip.save_pretrained(out)
    # the PIL class stores the budget only as size{}; add the legacy min/max_pixels keys too
    pp = json.loads((out / "preprocessor_config.json").read_text())
    pp["min_pixels"], pp["max_pixels"] = MIN_PIXELS, MAX_PIXELS
    _dump_json(out / "preprocessor_config.json", pp)
    names = set(safetensors.safe_open(str(out / "model.safetensors"), "pt").keys())
    assert ("lm_head.weight" in names) == (not model.config.tie_word_embeddings), "lm_head presence"
    # round trip: the saved folder must load back to bit-identical weights
    back = VideoLlama3ForConditionalGeneration.from_pretrained(out, dtype=torch.float32)
    ref_sd, back_sd = model.state_dict(), back.state_dict()
    assert ref_sd.keys() == back_sd.keys()
    assert all(torch.equal(ref_sd[k], back_sd[k]) for k in ref_sd), "reloaded weights differ"


ORIG_RENAMES = [("model.vision_model.", "model.vision_encoder."), ("model.projector.", "model.mm_projector."),
                ("model.language_model.", "model.")]


def save_orig(model, spec: dict, out: Path, write_weights: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tied = spec["tie"]
    tensors = {}
    for name, t in model.state_dict().items():
        if name == "lm_head.weight":
            if tied:
                continue
            new = name
        else:
            new = next(name.replace(a, b, 1) for a, b in ORIG_RENAMES if name.startswith(a))
        tensors[new] = t.detach().to(torch.float32).contiguous().clone()
    # By default the weights are not stored twice: the tests derive hf-orig/model.safetensors from
    # hf-native/model.safetensors by the same renames (test/helpers/reference.ts), keeping fixtures small.
    if write_weights:
        save_file(dict(sorted(tensors.items())), str(out / "model.safetensors"), metadata={"format": "pt"})
    native_names = set(model.state_dict()) - ({"lm_head.weight"} if tied else set())
    assert len(tensors) == len(native_names)

    t, v = spec["text"], spec["vision"]
    cfg = {
        "architectures": ["Videollama3Qwen2ForCausalLM"],
        "model_type": "videollama3_qwen2",
        "hidden_act": "silu",
        "hidden_size": t["hidden_size"],
        "intermediate_size": t["intermediate_size"],
        "num_hidden_layers": t["num_hidden_layers"],
        "num_attention_heads": t["num_attention_heads"],
        "num_key_value_heads": t["num_key_value_heads"],
        "vocab_size": t["vocab_size"],
        "rope_theta": TEXT_COMMON["rope_theta"],
        "rope_scaling": None,
        "rms_norm_eps": TEXT_COMMON["rms_norm_eps"],
        "max_position_embeddings": TEXT_COMMON["max_position_embeddings"],
        "use_sliding_window": False,
        "tie_word_embeddings": tied,
        "bos_token_id": ENDOFTEXT,
        "eos_token_id": IM_END,
        "torch_dtype": "float32",
        "vision_encoder_config": {
            "model_type": "videollama3_vision_encoder",
            "hidden_size": v["hidden_size"],
            "intermediate_size": v["intermediate_size"],
            "num_hidden_layers": v["num_hidden_layers"],
            "num_attention_heads": v["num_attention_heads"],
            "num_channels": VISION_COMMON["num_channels"],
            "patch_size": VISION_COMMON["patch_size"],
            "layer_norm_eps": VISION_COMMON["layer_norm_eps"],
            "hidden_act": VISION_COMMON["hidden_act"],
        },
        "image_token_index": ORIG_IMAGE,
        "mm_projector_type": "mlp2x_gelu",
        "use_token_compression": True,
    }
    _dump_json(out / "config.json", cfg)
    _dump_json(out / "preprocessor_config.json", {
        "image_processor_type": "Videollama3ImageProcessor",
        "processor_class": "Videollama3Qwen2Processor",
        "do_resize": True, "resample": 3,
        "do_rescale": True, "rescale_factor": 1 / 255,
        "do_normalize": True, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
        "do_convert_rgb": True,
        "min_tokens": MIN_TOKENS, "max_tokens": MAX_TOKENS, "patch_size": PATCH,
    })
    _dump_json(out / "generation_config.json", {"bos_token_id": ENDOFTEXT, "eos_token_id": [IM_END, ENDOFTEXT],
                                                "pad_token_id": ENDOFTEXT, "do_sample": False})
    build_tokenizer(with_orig_image_token=True).save_pretrained(out)


# ---------------------------------------------------------------------------------------------
# cases
# ---------------------------------------------------------------------------------------------
def render_prompt(n_images: int, text: str) -> str:
    """spec §10.1: one user turn, images first, no system prompt, generation prompt."""
    return "<|im_start|>user\n" + "<|image_pad|>\n" * n_images + text + "<|im_end|>\n<|im_start|>assistant\n"


class StageRecorder:
    """Forward hooks on the transformers modules; records each stage once (first call)."""

    def __init__(self, model):
        self.model = model
        self.stages: dict[str, torch.Tensor] = {}
        self.handles = []
        self._orig_unshuffle = None

    def _put(self, name, t):
        assert name not in self.stages, f"stage {name} captured twice"
        self.stages[name] = t.detach().clone()

    def __enter__(self):
        vm = self.model.model.vision_model
        self.handles.append(vm.embeddings.register_forward_hook(lambda m, a, o: self._put("patch_embeds", o)))
        for i, layer in enumerate(vm.encoder.layers):
            self.handles.append(layer.register_forward_hook(
                lambda m, a, o, i=i: self._put(f"encoder_layer_{i}", o[0] if isinstance(o, tuple) else o)))
        self.handles.append(vm.post_layernorm.register_forward_hook(lambda m, a, o: self._put("post_layernorm", o)))
        self._orig_unshuffle = vm.pixel_unshuffle

        def unshuffle(*a, **k):
            out = self._orig_unshuffle(*a, **k)
            self._put("merged", out)
            return out

        vm.pixel_unshuffle = unshuffle
        self.handles.append(self.model.model.projector.register_forward_hook(
            lambda m, a, o: self._put("projector", o)))
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        del self.model.model.vision_model.pixel_unshuffle  # drop the instance attribute -> class method again
        return False


def write_bin(path: Path, arr: np.ndarray, dtype: str) -> None:
    np_dtype = {"f32": "<f4", "u8": "u1", "i32": "<i4"}[dtype]
    path.write_bytes(np.ascontiguousarray(arr.astype(np_dtype)).tobytes())


def greedy_record(gen, ids, logits):
    """New token ids, per-step top-5 log-probs and top-2 gaps of a greedy `generate` output,
    checking that step 0 reproduces the prefill logits and each token is its step's top-1."""
    new_tokens = gen.sequences[0, ids.shape[0]:].tolist()
    step_logits = [s[0].float() for s in gen.logits]
    first_diff = float((step_logits[0] - logits[-1]).abs().max())
    assert first_diff < 1e-4, f"generate step-0 logits differ from prefill: {first_diff}"
    top5, gaps = [], []
    for lg in step_logits:
        lp = torch.log_softmax(lg.double(), dim=-1)
        vals, idx = torch.topk(lp, TOPK)
        top5.append([{"id": int(i), "logprob": float(v)} for v, i in zip(vals, idx)])
        gaps.append(float(vals[0] - vals[1]))
    for tok_id, t5 in zip(new_tokens, top5):
        assert tok_id == t5[0]["id"], "greedy token is not the top-1 entry"
    return new_tokens, top5, gaps


def run_case(cfg_name, spec, model, processor, case_name, out: Path, logits_mode: str) -> dict:
    files, text = CASES[case_name]
    images, img_meta = [], []
    for f in files:
        img = load_image(str(IMAGES_DIR / f))  # reference decode: EXIF transpose, then RGB
        rgb = np.asarray(img, dtype=np.uint8)
        assert rgb.ndim == 3 and rgb.shape[2] == 3
        images.append(img)
        h, w = rgb.shape[:2]
        rh, rw = smart_resize(h, w, factor=PATCH, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
        img_meta.append({"file": f"test/fixtures/images/{f}", "decoded_size": [h, w], "resized_size": [rh, rw],
                         "decoded_rgb_sha256": hashlib.sha256(rgb.tobytes()).hexdigest()})

    prompt = render_prompt(len(files), text)
    enc = processor(text=[prompt], images=images, return_tensors="pt")
    ids = enc["input_ids"][0]
    grid = enc["image_grid_thw"]
    assert enc["image_merge_sizes"].tolist() == [1] * len(files)
    for m, g in zip(img_meta, grid.tolist()):
        m["grid_thw"] = g
        assert [g[1] * PATCH, g[2] * PATCH] == m["resized_size"], (m, g)
    img_meta = [{k: im[k] for k in ("file", "decoded_size", "resized_size", "grid_thw", "decoded_rgb_sha256")}
                for im in img_meta]

    # cross-check the processor's text expansion against a hand expansion of the rendered prompt
    pieces = prompt.split("<|image_pad|>")
    assert len(pieces) == len(files) + 1
    manual = pieces[0] + "".join("<|image_pad|>" * (g[0] * g[1] * g[2]) + rest
                                 for g, rest in zip(grid.tolist(), pieces[1:]))
    manual_ids = processor.tokenizer(manual, add_special_tokens=False)["input_ids"]
    assert manual_ids == ids.tolist(), "processor expansion differs from hand expansion"
    assert int((ids == IMAGE_PAD).sum()) == int(grid.prod(dim=1).sum())

    # pixel levels
    pv = enc["pixel_values"]
    assert pv.dtype == torch.float32 and pv.shape[1] == 3 * PATCH * PATCH
    levels = torch.round((pv.double() + 1.0) * 127.5)
    assert levels.min() >= 0 and levels.max() <= 255
    levels_u8 = levels.to(torch.uint8)
    back = ((levels_u8.numpy().astype(np.float32) / np.float32(255.0)) - np.float32(0.5)) / np.float32(0.5)
    pixel_exact = bool(np.array_equal(back, pv.numpy()))

    inputs = {k: enc[k] for k in ("input_ids", "attention_mask", "pixel_values", "image_grid_thw",
                                  "image_merge_sizes")}
    with torch.no_grad():
        with StageRecorder(model) as rec:
            fwd = model(**inputs, use_cache=False)
        stages = rec.stages
        logits = fwd.logits[0].float()
        gen = model.generate(**inputs, do_sample=False, max_new_tokens=MAX_NEW_TOKENS, output_logits=True,
                             return_dict_in_generate=True, repetition_penalty=None, num_beams=1,
                             temperature=None, top_p=None, top_k=None)

    # internal consistency of the captured stages
    n_patches = int(grid.prod(dim=1).sum())
    assert stages["patch_embeds"].shape[0] == n_patches
    assert torch.equal(stages["merged"], stages["post_layernorm"]), "m=1 merge is not the identity"
    assert stages["projector"].shape == (int((ids == IMAGE_PAD).sum()), spec["text"]["hidden_size"])

    new_tokens, top5, gaps = greedy_record(gen, ids, logits)

    # files
    out.mkdir(parents=True, exist_ok=True)
    stage_meta = {}

    def emit(name, arr, dtype):
        write_bin(out / f"{name}.bin", arr, dtype)
        stage_meta[name] = {"file": f"{name}.bin", "dtype": dtype, "shape": list(arr.shape)}

    if pixel_exact:
        emit("pixel_levels", levels_u8.numpy(), "u8")
    else:  # never hit so far; kept so a future processor change cannot silently corrupt the fixture
        emit("pixel_levels", pv.numpy(), "f32")
        stage_meta["pixel_levels"]["note"] = "map back to uint8 levels was not exact: stored normalized f32"
    emit("patch_embeds", stages["patch_embeds"].numpy(), "f32")
    for i in range(spec["vision"]["num_hidden_layers"]):
        emit(f"encoder_layer_{i}", stages[f"encoder_layer_{i}"].numpy(), "f32")
    emit("post_layernorm", stages["post_layernorm"].numpy(), "f32")
    emit("merged", stages["merged"].numpy(), "f32")
    emit("projector", stages["projector"].numpy(), "f32")
    if logits_mode == "full":
        emit("prefill_logits", logits.numpy(), "f32")
    else:
        emit("prefill_logits", logits[-1:].numpy(), "f32")
        stage_meta["prefill_logits"]["note"] = "last prompt position only"

    manifest = {
        "config": cfg_name,
        "case": case_name,
        "images": img_meta,
        "prompt_text": text,
        "prompt": prompt,
        "input_ids": ids.tolist(),
        "image_token_id": IMAGE_PAD,
        "stages": stage_meta,
        "greedy": {
            "tokens": new_tokens,
            "stopped_on_eos": len(new_tokens) < MAX_NEW_TOKENS,
            "top5": top5,
            "top2_gap": gaps,
        },
        "max_new_tokens": MAX_NEW_TOKENS,
    }
    _dump_json(out / "manifest.json", manifest)
    return manifest


# ---------------------------------------------------------------------------------------------
# video cases
# ---------------------------------------------------------------------------------------------
def video_processor():
    return VideoLlama3VideoProcessor(size={"shortest_edge": VIDEO_MIN_PIXELS, "longest_edge": VIDEO_MAX_PIXELS},
                                     patch_size=PATCH, merge_size=MERGE_V, temporal_patch_size=1,
                                     image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5], resample=3,
                                     do_convert_rgb=True, fps=VIDEO_FPS, min_frames=VIDEO_MIN_FRAMES,
                                     max_frames=VIDEO_MAX_FRAMES, use_token_compression=True,
                                     do_sample_frames=True)


def video_processor_json(vp) -> dict:
    d = json.loads(vp.to_json_string())
    d["min_pixels"], d["max_pixels"] = VIDEO_MIN_PIXELS, VIDEO_MAX_PIXELS
    for k, want in (("fps", VIDEO_FPS), ("min_frames", VIDEO_MIN_FRAMES), ("max_frames", VIDEO_MAX_FRAMES),
                    ("use_token_compression", True), ("patch_size", PATCH), ("merge_size", MERGE_V)):
        assert d.get(k) == want, (k, d.get(k))
    assert d["size"] == {"shortest_edge": VIDEO_MIN_PIXELS, "longest_edge": VIDEO_MAX_PIXELS}, d["size"]
    return {k: d[k] for k in sorted(d)}


def render_video_prompt(text: str) -> str:
    """spec §10.1 / §6.5: one user turn, the video, a newline, the text."""
    return "<|im_start|>user\n<|video_pad|>\n" + text + "<|im_end|>\n<|im_start|>assistant\n"


def _levels(pv: torch.Tensor) -> torch.Tensor:
    lv = torch.round((pv.double() + 1.0) * 127.5)
    assert lv.min() >= 0 and lv.max() <= 255
    return lv.to(torch.uint8)


def pyav_frames(path: Path):
    """Every frame as the reference's default video backend (transformers' read_video_pyav) decodes
    it, with the frame count and rate PyAV reports."""
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
        return frames, int(s.frames), float(s.average_rate)


def run_video_case(cfg_name, spec, model, processor, vp, case_name, out: Path) -> dict:
    fname = VIDEO_CASES[case_name]
    frames, fps0, rate = decode_video(VIDEOS_DIR / fname)
    # The reference's own decoder gives the very same RGB frames (checked on every clip); its
    # frame count is the container's, which WebM lacks (0): this library counts WebM frames instead,
    # so the processor gets the counted total here.
    av_frames, av_count, av_fps = pyav_frames(VIDEOS_DIR / fname)
    assert av_frames.shape == frames.shape and np.array_equal(av_frames, frames), f"{fname}: PyAV frames differ"
    assert av_fps == fps0, (av_fps, fps0)
    n_total, h0, w0 = frames.shape[0], frames.shape[1], frames.shape[2]
    meta = VideoMetadata(total_num_frames=n_total, fps=fps0, duration=n_total / fps0, width=w0, height=h0)
    prompt = render_video_prompt(VIDEO_PROMPT_TEXT)
    enc = processor(text=[prompt], videos=[frames], video_metadata=[meta], do_sample_frames=True, fps=VIDEO_FPS,
                    return_metadata=True, return_tensors="pt")
    md = enc["video_metadata"][0]
    indices = [int(i) for i in md.frames_indices]
    timestamps = [float(t) for t in md.timestamps]
    T, gh, gw = enc["video_grid_thw"][0].tolist()
    assert enc["video_merge_sizes"].tolist() == [MERGE_V]
    assert T == len(indices) == len(timestamps)
    # spec §6.1 sampling
    n = math.floor(min(max(n_total / fps0 * VIDEO_FPS, VIDEO_MIN_FRAMES), min(VIDEO_MAX_FRAMES, n_total), n_total))
    assert indices == [math.floor(i * n_total / n) for i in range(n)], (indices, n)
    # timestamps: int32 index tensor / fps -> float32(float32(i) / float32(fps)) (lib frameTimestamp)
    assert all(t == float(np.float32(np.float32(i) / np.float32(fps0))) for t, i in zip(timestamps, indices)), timestamps
    mask = enc["video_compression_mask"].bool()
    tpf = (gh // MERGE_V) * (gw // MERGE_V)
    assert mask.shape == (T * tpf,)
    kept = mask.view(T, tpf).sum(1).tolist()
    ts_text = [f"Time {t:.1f}s:" for t in timestamps]

    # the processor's expansion must equal the hand layout of spec §6.5
    ids = enc["input_ids"][0]
    manual = ("<|im_start|>user\n" + ",".join(t + "<|video_pad|>" * k for t, k in zip(ts_text, kept)) + "\n"
              + VIDEO_PROMPT_TEXT + "<|im_end|>\n<|im_start|>assistant\n")
    assert processor.tokenizer(manual, add_special_tokens=False)["input_ids"] == ids.tolist(), "video expansion"
    assert int((ids == VIDEO_PAD).sum()) == int(mask.sum())

    pv = enc["pixel_values_videos"]
    assert pv.dtype == torch.float32 and pv.shape == (T * gh * gw, 3 * PATCH * PATCH)
    levels_u8 = _levels(pv)
    # the video processor fuses rescale + normalize: (l - 127.5) / 127.5 in f32 (not (l/255 - 0.5)/0.5)
    back = (levels_u8.numpy().astype(np.float32) - np.float32(127.5)) / np.float32(127.5)
    assert np.array_equal(back, pv.numpy()), "pixel levels do not map back exactly"

    rh, rw = gh * PATCH, gw * PATCH

    keys = ("input_ids", "attention_mask", "pixel_values_videos", "video_grid_thw", "video_merge_sizes",
            "video_compression_mask")
    inputs = {k: enc[k] for k in keys}
    proj, llm_in = {}, {}
    h1 = model.model.projector.register_forward_hook(lambda m, a, o: proj.setdefault("out", o.detach().clone()))

    def grab_embeds(m, a, k):
        llm_in.setdefault("embeds", k["inputs_embeds"].detach().clone())

    h2 = model.model.language_model.register_forward_pre_hook(grab_embeds, with_kwargs=True)
    with torch.no_grad():
        try:
            fwd = model(**inputs, use_cache=False)
        finally:
            h1.remove()
            h2.remove()
        logits = fwd.logits[0].float()
        gen = model.generate(**inputs, do_sample=False, max_new_tokens=MAX_NEW_TOKENS, output_logits=True,
                             return_dict_in_generate=True, repetition_penalty=None, num_beams=1,
                             temperature=None, top_p=None, top_k=None)
    assert proj["out"].shape == (T * tpf, spec["text"]["hidden_size"])
    projector_kept = proj["out"][mask]
    assert torch.equal(llm_in["embeds"][0][ids == VIDEO_PAD], projector_kept), "kept rows != LLM input rows"

    new_tokens, top5, gaps = greedy_record(gen, ids, logits)

    out.mkdir(parents=True, exist_ok=True)
    stage_meta = {}

    def emit(name, arr, dtype):
        write_bin(out / f"{name}.bin", arr, dtype)
        stage_meta[name] = {"file": f"{name}.bin", "dtype": dtype, "shape": list(arr.shape)}

    emit("pixel_levels", levels_u8.numpy(), "u8")
    stage_meta["pixel_levels"]["note"] = "pixel_values_videos == (l - 127.5) / 127.5 in f32, exactly"
    emit("video_compression_mask", mask.numpy(), "u8")
    emit("projector_kept", projector_kept.numpy(), "f32")
    emit("prefill_logits", logits[-1:].numpy(), "f32")
    stage_meta["prefill_logits"]["note"] = "last prompt position only"

    manifest = {
        "config": cfg_name,
        "case": case_name,
        "video": {"file": f"test/fixtures/videos/{fname}", "fps": VIDEO_FPS, "decoded_size": [h0, w0],
                  "total_num_frames": n_total, "avg_frame_rate": rate, "native_fps": fps0,
                  "decoded_rgb_sha256": hashlib.sha256(frames.tobytes()).hexdigest(),
                  "pyav_frame_count": av_count, "pyav_equal": True,
                  "sampled_rgb_sha256": [hashlib.sha256(frames[i].tobytes()).hexdigest() for i in indices]},
        "frame_indices": indices,
        "timestamps": timestamps,
        "timestamp_text": ts_text,
        "resized_size": [rh, rw],
        "grid_thw": [T, gh, gw],
        "tokens_per_frame": tpf,
        "kept_per_frame": kept,
        "prompt_text": VIDEO_PROMPT_TEXT,
        "prompt": prompt,
        "input_ids": ids.tolist(),
        "video_token_id": VIDEO_PAD,
        "stages": stage_meta,
        "greedy": {
            "tokens": new_tokens,
            "stopped_on_eos": len(new_tokens) < MAX_NEW_TOKENS,
            "top5": top5,
            "top2_gap": gaps,
        },
        "max_new_tokens": MAX_NEW_TOKENS,
    }
    _dump_json(out / "manifest.json", manifest)
    return manifest


# ---------------------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(REPO / "test" / "fixtures" / "reference"))
    ap.add_argument("--with-orig-weights", action="store_true",
                    help="also write hf-orig/model.safetensors (the tests derive it by renaming)")
    ap.add_argument("--logits", choices=["full", "last"], default="last",
                    help="prefill logits for the last prompt position only (default, keeps the committed "
                         "fixtures small) or for every prompt position (full, about +1.8 MB)")
    ap.add_argument("--media-expected", default=None,
                    help="optional media_expected.json to cross-check decoded RGB sha256 values")
    ap.add_argument("--images-only", action="store_true",
                    help="allow running without torchvision: skips (and deletes) the video cases")
    args = ap.parse_args()
    out_root = Path(args.out)
    if not HAVE_VIDEO and not args.images_only:
        ap.error("torchvision is not importable: run with .venv-video/bin/python, or pass --images-only")
    hf_logging.disable_progress_bar()

    print(f"torch {torch.__version__}  transformers {transformers.__version__}  numpy {np.__version__}  "
          f"pillow {PIL.__version__}  tokenizers {tokenizers.__version__}", flush=True)

    tok = build_tokenizer(with_orig_image_token=False)
    ip = image_processor()
    if HAVE_VIDEO:
        vp = video_processor()
        processor = VideoLlama3Processor(image_processor=ip, tokenizer=tok, video_processor=vp)
    else:
        vp = None
        processor = ImageOnlyProcessor(image_processor=ip, tokenizer=tok, video_processor=None)

    expected = None
    if args.media_expected:
        expected = json.loads(Path(args.media_expected).read_text())["images"]

    for cfg_name, spec in CONFIGS.items():
        cfg_dir = out_root / cfg_name
        if cfg_dir.exists():
            shutil.rmtree(cfg_dir)
        model = make_model(spec)
        save_native(model, tok, ip, cfg_dir / "hf-native")
        save_orig(model, spec, cfg_dir / "hf-orig", args.with_orig_weights)
        for case_name in CASES:
            man = run_case(cfg_name, spec, model, processor, case_name, cfg_dir / case_name, args.logits)
            if expected is not None:
                for im in man["images"]:
                    exp = expected[Path(im["file"]).name]["rgb_sha256"]
                    assert im["decoded_rgb_sha256"] == exp, (im["file"], im["decoded_rgb_sha256"], exp)
            grids = " + ".join("x".join(map(str, im["grid_thw"][1:])) for im in man["images"])
            print(f"{cfg_name:7s} {case_name:9s} grid {grids:13s} L={len(man['input_ids']):4d} "
                  f"greedy {man['greedy']['tokens']} min gap {min(man['greedy']['top2_gap']):.3g}", flush=True)
        if vp is None:
            continue
        vjson = video_processor_json(vp)
        for sub in ("hf-native", "hf-orig"):
            _dump_json(cfg_dir / sub / "video_preprocessor_config.json", vjson)
        for case_name in VIDEO_CASES:
            man = run_video_case(cfg_name, spec, model, processor, vp, case_name, cfg_dir / case_name)
            print(f"{cfg_name:7s} {case_name:12s} T,gh,gw {man['grid_thw']} kept {man['kept_per_frame']} "
                  f"L={len(man['input_ids']):4d} greedy {man['greedy']['tokens']} "
                  f"min gap {min(man['greedy']['top2_gap']):.3g}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

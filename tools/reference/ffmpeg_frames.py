"""Every frame of a video as RGB24 with the same ffprobe / ffmpeg invocations as lib/media/video.ts
(display rotation not applied, as PyAV). Shared by make_fixtures.py and tools/bench/torch_bench.py."""
import json
import subprocess
from fractions import Fraction

import numpy as np


def decode_video(path):
    """(frames [N, H, W, 3] uint8, native fps as float, the rate string it came from)."""
    probe = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
         "stream=width,height,avg_frame_rate,r_frame_rate,nb_frames", "-of", "json", str(path)],
        check=True, capture_output=True).stdout)["streams"][0]
    w, h = int(probe["width"]), int(probe["height"])
    rate = probe.get("avg_frame_rate", "0/0")
    if rate in ("0/0", "", None):
        rate = probe["r_frame_rate"]
    fps0 = float(Fraction(rate))
    raw = subprocess.run(["ffmpeg", "-v", "error", "-noautorotate", "-i", str(path), "-vsync", "passthrough",
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], check=True, capture_output=True).stdout
    assert len(raw) % (w * h * 3) == 0
    frames = np.frombuffer(raw, dtype=np.uint8).reshape(-1, h, w, 3)
    if probe.get("nb_frames", "").isdigit():
        assert int(probe["nb_frames"]) == frames.shape[0], (probe["nb_frames"], frames.shape)
    return frames, fps0, rate

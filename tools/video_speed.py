"""``fastwarp video``'s file side against what it replaced, interleaved round by round (the
machine's load falls on every variant alike): the engine of ``fastwarp video`` (bundled
``base``, mesh motion, ``--expr blink=1``) over the first N frames of a clip, reading and
writing through PyAV (H.264 at the given x264 presets, the audio copied) or through OpenCV
(``VideoCapture`` + the ``mp4v`` ``VideoWriter``, no audio). Prints frames per second, the
median of the rounds after a warm-up round, and each variant's ratio to OpenCV's.

    python tools/video_speed.py [--video ../shared/data/faces/videos/lp_d6.mp4] [--frames 90]
        [--rounds 6] [--presets superfast veryfast]

Pause anything else running on the machine first (a niced background job still drags
torch's OpenMP threads down by an order of magnitude).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    import cv2

    from fastwarp.media import video as V
    from fastwarp.presets import ExprEdit
    from fastwarp.realtime import RealtimeEngine, VideoFileSink, VideoSource

    sys.path.insert(0, str(ROOT / "bench"))
    from test_bench_video_io import _OpenCVWriter

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--video", default=str(ROOT.parent / "shared/data/faces/videos/lp_d6.mp4"))
    p.add_argument("--frames", type=int, default=90)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--presets", nargs="+", default=["superfast", "veryfast"])
    args = p.parse_args(argv)
    variants = ["opencv-mp4v"] + [f"h264-{preset}" for preset in args.presets]
    fps: dict[str, list[float]] = {v: [] for v in variants}
    out = Path(tempfile.mkdtemp()) / "out.mp4"
    default_preset = V.VideoWriter.PRESET
    with RealtimeEngine([ExprEdit("blink", 1.0)], "base", "cpu", runtime="torch") as engine:
        for rnd in range(args.rounds + 1):
            for variant in variants:
                if variant == "opencv-mp4v":
                    source = VideoSource(args.video, capture=cv2.VideoCapture(args.video), live=False)
                    sink = _OpenCVWriter(out, source.fps, (source.width, source.height))
                else:
                    V.VideoWriter.PRESET = variant.split("-", 1)[1]
                    source = VideoSource(args.video)
                    sink = VideoFileSink(out, source)
                start = time.perf_counter()
                stats = engine.run(source, [sink], max_frames=args.frames)
                seconds = time.perf_counter() - start
                sink.close(trim=True)
                source.close()
                if stats.frames != args.frames:
                    raise SystemExit(f"{variant}: {stats.frames} of {args.frames} frames ({stats.error})")
                if rnd:  # the first round warms up
                    fps[variant].append(args.frames / seconds)
    V.VideoWriter.PRESET = default_preset
    base = statistics.median(fps["opencv-mp4v"])
    for variant, values in fps.items():
        median = statistics.median(values)
        print(f"{variant:18s} {median:6.1f} frames/s ({median / base:.3f}x OpenCV's)   rounds: "
              + " ".join(f"{v:.1f}" for v in values))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What bicubic image taps cost against bilinear, interleaved round by round (the machine's
load falls on both alike), on the CPU:

1. the frame composite alone (:meth:`ExpressionEditor.blend`: one ``warp_blend`` with theta on
   a uint8 1080p frame) for a smile on a face about 400 px wide (a real photo scaled into a
   1920 x 1080 frame): milliseconds per call, median;
2. the real-time engine (``lite``, mesh motion, ``--expr smile=1``) over the first N frames of
   a clip held in memory (``RealtimeEngine.process``: landmarks, motion, texture, composite):
   frames per second, median of the rounds after a warm-up round.

``--texture``: instead, the engine with ``texture="mesh"`` (the shipped path before issue 19: for
a mouth edit also without teeth that follow the jaws) against ``texture="regions"`` (the region
textures) on ``--expr blink=1`` (or ``--expr open``, ``smile``), interleaved the same way.

    python tools/resample_speed.py [--photo ../shared/data/faces/images/df_img2.jpg]
        [--video ../shared/data/faces/videos/lp_d6.mp4] [--frames 90] [--rounds 5]

Pause anything else running on the machine first.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODES = ("bilinear", "bicubic")


def composite_ms(photo: Path, rounds: int, calls: int = 20) -> dict[str, float]:
    from fastwarp import ExpressionEditor
    from fastwarp.au import parse_au_edit

    image = cv2.imread(str(photo), cv2.IMREAD_COLOR)
    with ExpressionEditor("lite", "cpu") as editor:
        lm = editor.detect(image)[0]
        face = float((lm[:, :2].max(0) - lm[:, :2].min(0)).max())
        scale = 400.0 / face
        small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        frame = np.zeros((1080, 1920, 3), np.uint8)
        h, w = min(small.shape[0], 1080), min(small.shape[1], 1920)
        frame[:h, :w] = small[:h, :w]
        crop = editor.crop(frame, editor.detect(frame)[0])
        current, target = editor.aus(crop, [parse_au_edit("AU12=+2.5")])
        maps = editor.predict(crop.image, target, current, crop.landmarks)
        times: dict[str, list[float]] = {m: [] for m in MODES}
        for rnd in range(rounds + 1):
            for mode in MODES:
                editor.resample = mode
                editor.blend(frame, crop, maps)
                start = time.perf_counter()
                for _ in range(calls):
                    editor.blend(frame, crop, maps)
                if rnd:  # round 0 warms up
                    times[mode].append((time.perf_counter() - start) / calls * 1e3)
    return {m: statistics.median(v) for m, v in times.items()}


def engine_fps(video: Path, frames: int, rounds: int, variants: dict[str, dict] | None = None,
               expr: str = "smile") -> dict[str, float]:
    """Frames/s of the real-time engine (``lite``, ``--expr <expr>=1``) per variant (keyword
    arguments of :class:`RealtimeEngine`; default: the two ``resample`` modes), interleaved
    frame by frame (each variant edits frame i, then all edit frame i + 1); the median of the
    rounds after a warm-up round."""
    from fastwarp.media.video import VideoReader
    from fastwarp.presets import ExprEdit
    from fastwarp.realtime import RealtimeEngine

    clip = []
    with VideoReader(video) as reader:
        for image, _t in reader:
            clip.append(image)
            if len(clip) >= frames:
                break
    variants = variants or {m: {"resample": m} for m in MODES}
    engines = {}
    for name, kw in variants.items():
        kw = dict(kw)
        split = kw.pop("split_mouth", True)
        cover = kw.pop("cover", None)
        engines[name] = RealtimeEngine([ExprEdit(expr, 1.0)], "lite", "cpu", runtime="torch", **kw)
        if engines[name].editor.mesh_motion is not None:
            engines[name].editor.mesh_motion.split_mouth = split
            if cover is not None:
                engines[name].editor.mesh_motion.cover = cover
    fps: dict[str, list[float]] = {name: [] for name in variants}
    try:
        for rnd in range(rounds + 1):
            # frame by frame in turn: a slow second of the machine falls on every variant alike
            spent = dict.fromkeys(engines, 0.0)
            for engine in engines.values():
                engine.reset()
            for i, f in enumerate(clip):
                for mode, engine in engines.items():
                    start = time.perf_counter()
                    engine.process(f, i / 30.0, i)
                    spent[mode] += time.perf_counter() - start
            if rnd:  # round 0 warms up
                for mode in engines:
                    fps[mode].append(len(clip) / spent[mode])
    finally:
        for engine in engines.values():
            engine.close()
    return {m: statistics.median(v) for m, v in fps.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--photo", type=Path, default=ROOT.parent / "shared/data/faces/images/df_img2.jpg")
    p.add_argument("--video", type=Path, default=ROOT.parent / "shared/data/faces/videos/lp_d6.mp4")
    p.add_argument("--frames", type=int, default=90)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--texture", action="store_true",
                   help="instead: the engine with --texture mesh against --texture regions (issue 19)")
    p.add_argument("--expr", default="blink", help="with --texture: the preset edited at 1 (blink, open, smile)")
    p.add_argument("--refresh", type=int, default=5,
                   help="with --texture: the regions engine's region_refresh (default 5, as fastwarp webcam)")
    p.add_argument("--cover", default=None,
                   help="with --texture: a third variant, the regions engine with MeshMotion.cover set to these "
                        "kinds ('eye+mouth', or 'none'), against the engine's own")
    args = p.parse_args(argv)
    if args.texture:
        variants = {"mesh": {"texture": "mesh", "split_mouth": False},
                    "regions": {"texture": "regions", "region_refresh": args.refresh}}
        if args.cover is not None:
            kinds = () if args.cover == "none" else tuple(args.cover.split("+"))
            variants["cover"] = {"texture": "regions", "region_refresh": args.refresh, "cover": kinds}
        fps = engine_fps(args.video, args.frames, args.rounds, variants, expr=args.expr)
        print(f"real time, lite, {args.expr}=1, region_refresh {args.refresh}, {args.frames} frames of "
              f"{args.video.name}: --texture mesh "
              f"{fps['mesh']:.1f} frames/s, regions {fps['regions']:.1f} frames/s "
              f"({fps['regions'] / fps['mesh']:.3f}x)"
              + (f", regions with cover={args.cover} {fps['cover']:.1f} frames/s ({fps['cover'] / fps['mesh']:.3f}x)"
                 if "cover" in fps else ""))
        return 0
    ms = composite_ms(args.photo, args.rounds)
    print(f"composite, 400 px face on 1080p (uint8, warp_blend with theta): bilinear {ms['bilinear']:.2f} ms, "
          f"bicubic {ms['bicubic']:.2f} ms ({ms['bicubic'] / ms['bilinear']:.2f}x)")
    fps = engine_fps(args.video, args.frames, args.rounds)
    print(f"real time, lite, smile=1, {args.frames} frames of {args.video.name}: bilinear {fps['bilinear']:.1f} "
          f"frames/s, bicubic {fps['bicubic']:.1f} frames/s ({fps['bicubic'] / fps['bilinear']:.3f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

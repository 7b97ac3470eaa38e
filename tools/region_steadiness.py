"""Is a region texture steady in video? A constant blink (``--region eye``) or mouth opening
(``--region mouth``, the ``open`` preset at 0.6) through the real-time engine (``base``, mesh
motion, steady edit, bicubic composite) on held-out clips, with ``texture="regions"`` against
``texture="mesh"`` (the shipped path before issue 19; for the mouth also without the teeth
that follow the jaws, :mod:`fastwarp.face.jaws`).

For each frame t the edit is ``e_t = output_t - input_t`` (float, BGR); its frame-to-frame
change inside the regions is ``mean |e_t - e_{t-1}|`` over the pixels that lie in either
eye's region (:data:`fastwarp.face.regions.EYE` under that frame's landmarks), or the mouth's
(:data:`~fastwarp.face.regions.MOUTH`), in both frames.
Reported per clip: the median over frames of that change, for each texture, and regions /
mesh (issue 19's target: at most 1.2, i.e. no worse than +20 %); and, since a stronger edit
changes more when the head moves, the edit's own size (median of mean |e_t| there) and the
ratio of change per edit size.

    python tools/region_steadiness.py [--region eye|mouth] [--faces ../shared/data/faces] [--frames 90]
        [--clips lp_d3 lp_d12 eamm_surprised sty_src_Obama_clip1 dt_W009_neutral] [--out DIR]

Writes ``region_steadiness.json`` (``--region eye``) or ``mouth_steadiness.json`` into ``--out`` when given.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np

DEFAULT_CLIPS = ("lp_d3", "lp_d12", "eamm_surprised", "sty_src_Obama_clip1", "dt_W009_neutral")
TEXTURES = ("mesh", "regions")


def region_mask(landmarks: np.ndarray, shape, region: str = "eye") -> np.ndarray:
    from fastwarp.face.regions import REGIONS, region_matrix

    spec = REGIONS[region]
    ys, xs = np.mgrid[0:shape[0], 0:shape[1]]
    inside = np.zeros(shape[:2], bool)
    for side in (("right", "left") if region == "eye" else (None,)):
        m = region_matrix(np.asarray(landmarks, np.float64)[None, :, :2], spec, side)[0]
        u = m[0, 0] * xs + m[0, 1] * ys + m[0, 2]
        v = m[1, 0] * xs + m[1, 1] * ys + m[1, 2]
        inside |= (u >= -0.5) & (u <= spec.width - 0.5) & (v >= -0.5) & (v <= spec.height - 0.5)
    return inside


def clip_change(video: Path, texture: str, frames: int, region: str = "eye",
                split_mouth: bool = True, refresh: int = 1) -> tuple[list[float], list[float]]:
    """Per frame: the edit's change from the previous frame and the edit's own size (mean
    |e_t|), both inside the regions of the two frames."""
    from fastwarp.media.video import VideoReader
    from fastwarp.presets import ExprEdit
    from fastwarp.realtime import RealtimeEngine

    changes, sizes, prev = [], [], None
    edit = ExprEdit("blink", 1.0) if region == "eye" else ExprEdit("open", 0.6)
    with RealtimeEngine([edit], "base", "cpu", runtime="torch", texture=texture, region_refresh=refresh) as engine, \
            VideoReader(video) as reader:
        engine.editor.mesh_motion.split_mouth = split_mouth
        for i, (image, t) in enumerate(reader):
            if i >= frames:
                break
            r = engine.process(image, t, i)
            if not r.faces:
                prev = None
                continue
            edit = r.frame.astype(np.float32) - image.astype(np.float32)
            mask = region_mask(r.faces[0].smoothed, image.shape, region)
            if prev is not None:
                both = mask & prev[1]
                if both.any():
                    changes.append(float(np.abs(edit - prev[0])[both].mean()))
                    sizes.append(float(np.abs(edit)[both].mean()))
            prev = (edit, mask)
    return changes, sizes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faces", type=Path, default=Path("../shared/data/faces"))
    ap.add_argument("--clips", nargs="+", default=list(DEFAULT_CLIPS))
    ap.add_argument("--frames", type=int, default=90)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--region", default="eye", choices=("eye", "mouth"))
    ap.add_argument("--refresh", type=int, default=1, help="the regions variant's region_refresh (RealtimeEngine)")
    args = ap.parse_args(argv)
    rows = {}
    print("| clip | frames | mesh: median change | regions | regions / mesh | mesh: edit size | regions | "
          "change per edit size, regions / mesh |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for clip in args.clips:
        # the shipped path: the mesh texture (for the mouth also without teeth that follow the jaws)
        got = {tex: clip_change(args.faces / "videos" / f"{clip}.mp4", tex, args.frames, args.region,
                                split_mouth=tex == "regions" or args.region == "eye",
                                refresh=args.refresh) for tex in TEXTURES}
        med = {tex: statistics.median(v[0]) if v[0] else float("nan") for tex, v in got.items()}
        size = {tex: statistics.median(v[1]) if v[1] else float("nan") for tex, v in got.items()}
        rel = (med["regions"] / size["regions"]) / (med["mesh"] / size["mesh"])
        rows[clip] = {"frames": len(got["mesh"][0]), **{f"{tex}_median": med[tex] for tex in TEXTURES},
                      **{f"{tex}_edit_size": size[tex] for tex in TEXTURES},
                      "ratio": med["regions"] / med["mesh"], "relative_ratio": rel}
        print(f"| {clip} | {len(got['mesh'][0])} | {med['mesh']:.2f} | {med['regions']:.2f} | "
              f"{med['regions'] / med['mesh']:.2f} | {size['mesh']:.2f} | {size['regions']:.2f} | {rel:.2f} |",
              flush=True)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        name = "region_steadiness.json" if args.region == "eye" else "mouth_steadiness.json"
        (args.out / name).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

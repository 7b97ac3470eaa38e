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
        [--refresh N] [--mesh-refresh M] [--sheet PATH]

Writes ``region_steadiness.json`` (``--region eye``) or ``mouth_steadiness.json`` into ``--out`` when given.
``--refresh N`` runs the regions variant's networks on every N-th frame (``region_refresh``, the
face's mesh texture under the regions too); ``--mesh-refresh M`` sets the mesh texture's own
cadence in that variant (1: every frame, as before the real-time engine refreshed it with the
regions). ``--sheet PATH`` writes frames 10 to 15 of the first clip around the region, input |
mesh | regions, at 2x (nearest neighbour), to look at.
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
    from fastwarp.face.regions import REGIONS, region_footprint

    ys, xs = np.mgrid[0:shape[0], 0:shape[1]]
    inside = np.zeros(shape[:2], bool)
    for side in (("right", "left") if region == "eye" else (None,)):
        inside |= region_footprint(landmarks, REGIONS[region], side, xs, ys)
    return inside


def clip_change(video: Path, texture: str, frames: int, region: str = "eye",
                split_mouth: bool = True, refresh: int = 1, mesh_refresh: int | None = None,
                keep: range = range(0)) -> tuple[list[float], list[float], dict]:
    """Per frame: the edit's change from the previous frame and the edit's own size (mean
    |e_t|), both inside the regions of the two frames; and ``{frame: (input, output, landmarks)}``
    for the frames in ``keep``. ``mesh_refresh``: the mesh texture's cadence (None: the engine's)."""
    from fastwarp.media.video import VideoReader
    from fastwarp.presets import ExprEdit
    from fastwarp.realtime import RealtimeEngine

    changes, sizes, prev, kept = [], [], None, {}
    edit = ExprEdit("blink", 1.0) if region == "eye" else ExprEdit("open", 0.6)
    with RealtimeEngine([edit], "base", "cpu", runtime="torch", texture=texture, region_refresh=refresh) as engine, \
            VideoReader(video) as reader:
        engine.editor.mesh_motion.split_mouth = split_mouth
        if mesh_refresh is not None:
            engine.editor.mesh_motion.refresh = mesh_refresh
        for i, (image, t) in enumerate(reader):
            if i >= frames:
                break
            r = engine.process(image, t, i)
            if not r.faces:
                prev = None
                continue
            if i in keep:
                kept[i] = (image, r.frame, r.faces[0].smoothed)
            edit = r.frame.astype(np.float32) - image.astype(np.float32)
            mask = region_mask(r.faces[0].smoothed, image.shape, region)
            if prev is not None:
                both = mask & prev[1]
                if both.any():
                    changes.append(float(np.abs(edit - prev[0])[both].mean()))
                    sizes.append(float(np.abs(edit)[both].mean()))
            prev = (edit, mask)
    return changes, sizes, kept


def write_sheet(path: Path, kept: dict, region: str) -> None:
    """Rows of frames: input | mesh | regions around the region (its box, a quarter wider), at 2x."""
    import cv2

    rows = []
    for i in sorted(kept["mesh"]):
        if i not in kept["regions"]:
            continue
        image, _, landmarks = kept["mesh"][i]
        box = region_mask(landmarks, image.shape, region)
        ys, xs = np.nonzero(box)
        pad_y, pad_x = (ys.max() - ys.min()) // 8, (xs.max() - xs.min()) // 8
        y0, y1 = max(ys.min() - pad_y, 0), ys.max() + pad_y + 1
        x0, x1 = max(xs.min() - pad_x, 0), xs.max() + pad_x + 1
        cells = [image, kept["mesh"][i][1], kept["regions"][i][1]]
        row = np.hstack([c[y0:y1, x0:x1] for c in cells])
        row = cv2.resize(row, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
        cv2.putText(row, f"frame {i}: input | mesh | regions", (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (255, 255, 255), 1, cv2.LINE_AA)
        rows.append(row)
    if not rows:
        raise SystemExit("--sheet: no frame with a face in both variants")
    width = min(r.shape[1] for r in rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.vstack([r[:, :width] for r in rows]), [cv2.IMWRITE_JPEG_QUALITY, 92])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faces", type=Path, default=Path("../shared/data/faces"))
    ap.add_argument("--clips", nargs="+", default=list(DEFAULT_CLIPS))
    ap.add_argument("--frames", type=int, default=90)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--region", default="eye", choices=("eye", "mouth"))
    ap.add_argument("--refresh", type=int, default=1, help="the regions variant's region_refresh (RealtimeEngine)")
    ap.add_argument("--mesh-refresh", type=int, default=None,
                    help="the regions variant's mesh texture cadence (default: the engine's, --refresh)")
    ap.add_argument("--sheet", type=Path, default=None, help="write frames 10-15 of the first clip, input | mesh | "
                                                             "regions, at 2x, to this image")
    args = ap.parse_args(argv)
    rows = {}
    print("| clip | frames | mesh: median change | regions | regions / mesh | mesh: edit size | regions | "
          "change per edit size, regions / mesh |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for n, clip in enumerate(args.clips):
        # the shipped path: the mesh texture (for the mouth also without teeth that follow the jaws)
        keep = range(10, 16) if args.sheet is not None and n == 0 else range(0)
        got = {tex: clip_change(args.faces / "videos" / f"{clip}.mp4", tex, args.frames, args.region,
                                split_mouth=tex == "regions" or args.region == "eye",
                                refresh=args.refresh, mesh_refresh=args.mesh_refresh if tex == "regions" else None,
                                keep=keep) for tex in TEXTURES}
        if keep:
            write_sheet(args.sheet, {tex: v[2] for tex, v in got.items()}, args.region)
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

"""Full-resolution crops (100 %, no resizing) of one edit under several editor settings:
input | variant 1 | variant 2 | ..., the mouth and/or the eyes of each photo, to judge by eye
what a setting keeps, blurs or paints.

    python tools/edit_crops.py --au AU12=+2.5 --variant bilinear:resample=bilinear \\
        --variant bicubic:resample=bicubic --parts mouth right_eye --out docs/evaluation/resample/crops.png
    python tools/edit_crops.py --au AU45=5 --variant mesh:texture=mesh --variant regions:texture=regions \\
        --parts right_eye left_eye --photos 10 --out docs/evaluation/regions/blink_crops.jpg

Each ``--variant NAME:KEY=VALUE[,KEY=VALUE]`` is an :class:`fastwarp.ExpressionEditor` with those
keyword arguments (weights ``base`` unless ``weights=lite``, CPU); ``split_mouth=0`` turns off
the teeth that follow the jaws (:mod:`fastwarp.face.jaws`), the editor before it; ``upper_share=1``
fixes where the jaws part (the editor before each face's own split), ``upper_share=auto`` is the
default; ``lid_floor=0`` warps a closing eye as its landmarks say (the editor before lids that
meet, :mod:`fastwarp.face.lids`); ``unfold=0`` lets the warp fold over where the landmarks cross
(the editor before :mod:`fastwarp.face.fold`); ``brows_from_rest=0`` lets the landmark motion
lift a brow resting below the AU estimator's neutral up to it before the change asked (the
editor before :func:`fastwarp.models.landmark_motion.brow_rest_share`); ``grey_paint=0`` paints
a grey photo in the textures' colours (the editor before :func:`fastwarp.images.achromatic`);
``cover=`` the regions the mesh texture leaves to the region
textures (:attr:`MeshMotion.cover`: ``eye`` by default, ``eye+mouth`` the variant measured and not
kept, ``none``: it paints under all of them, the editor before phase 7); ``lid_contours=warp``
shows the eye network a closing eye's lid lines where the warp's lids meet instead of where its
landmarks put them (phase 8's variant, not kept). Crops are cut around the
landmarks at the photo's own pixels (cut, not resized, to ``--max-side``); a label strip names the
columns.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

import fastwarp.face.fold as fold
import fastwarp.expression_editor as expression_editor
import fastwarp.face.lids as lids
import fastwarp.models.landmark_motion as landmark_motion
from fastwarp import ExpressionEditor
from fastwarp.au import parse_au_edit

#: Landmarks framing each part (MediaPipe FaceMesh indices) and the margin around them.
PARTS = {"mouth": ((61, 291, 0, 17), 0.35), "right_eye": ((33, 133, 159, 145), 0.7),
         "left_eye": ((263, 362, 386, 374), 0.7), "brows": ((70, 300, 105, 334, 145, 374), 0.1)}


def crop_box(landmarks: np.ndarray, points, margin: float, shape, max_side: int) -> tuple[int, int, int, int]:
    p = landmarks[list(points), :2]
    c = p.mean(0)
    half = min((p.max(0) - p.min(0)).max() / 2 * (1 + margin), max_side / 2)
    x0, y0 = np.floor(c - half).astype(int)
    x1, y1 = np.ceil(c + half).astype(int)
    return max(x0, 0), max(y0, 0), min(x1, shape[1]), min(y1, shape[0])


def parse_variant(text: str) -> tuple[str, dict]:
    name, _, spec = text.partition(":")
    options = dict(kv.split("=", 1) for kv in spec.split(",") if kv)
    return name, options


def label(width: int, text: str) -> np.ndarray:
    strip = np.full((22, width, 3), 255, np.uint8)
    cv2.putText(strip, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return strip


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faces", type=Path, default=Path("../shared/data/faces"))
    ap.add_argument("--au", action="append", required=True, help="the edit (repeatable), e.g. AU45=5")
    ap.add_argument("--variant", action="append", required=True, help="NAME:KEY=VALUE[,KEY=VALUE] (repeatable)")
    ap.add_argument("--parts", nargs="+", default=["mouth"], choices=sorted(PARTS))
    ap.add_argument("--photos", default="10", help="a count (the first N photos by name with a face) or names, "
                                                  "comma-separated")
    ap.add_argument("--max-side", type=int, default=360)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    edits = [parse_au_edit(a) for a in args.au]
    variants = [parse_variant(v) for v in args.variant]
    if args.photos.isdigit():
        names, limit = sorted(p.name for p in (args.faces / "images").iterdir()), int(args.photos)
    else:  # names, with or without their extension
        files = {p.stem: p.name for p in (args.faces / "images").iterdir()}
        asked = [n.strip() for n in args.photos.split(",") if n.strip()]
        missing = [n for n in asked if n not in files and n not in files.values()]
        if missing:
            ap.error(f"--photos: no such photo in {args.faces / 'images'}: {', '.join(missing)}")
        names, limit = [files.get(n, n) for n in asked], len(asked)
    editors, floors, unfolds, rests, greys = [], [], [], [], []
    for name, opts in variants:
        split = opts.pop("split_mouth", "1") != "0"
        share = opts.pop("upper_share", None)
        cover = opts.pop("cover", "eye")
        cover = () if cover == "none" else tuple(cover.split("+"))
        contours = opts.pop("lid_contours", "landmarks")
        floors.append(float(opts.pop("lid_floor", lids.LID_FLOOR)))
        unfolds.append(fold.MIN_AREA_RATIO if opts.pop("unfold", "1") != "0" else 0.0)
        rests.append(opts.pop("brows_from_rest", "1") != "0")
        greys.append(expression_editor.achromatic if opts.pop("grey_paint", "1") != "0" else (lambda *_: False))
        ed = ExpressionEditor(opts.pop("weights", "base"), "cpu", **opts)
        if ed.mesh_motion is not None:
            ed.mesh_motion.split_mouth = split
            ed.mesh_motion.upper_share = None if share in (None, "auto") else float(share)
            ed.mesh_motion.cover = cover
        if ed.regions is not None:
            ed.regions.lid_contours = contours
        editors.append((name, ed))

    def edit(i: int, image: np.ndarray) -> np.ndarray:
        kept = lids.LID_FLOOR, fold.MIN_AREA_RATIO, landmark_motion.BROWS_FROM_REST, expression_editor.achromatic
        # (the warps, the motion and the composite read them at each call)
        (lids.LID_FLOOR, fold.MIN_AREA_RATIO, landmark_motion.BROWS_FROM_REST,
         expression_editor.achromatic) = floors[i], unfolds[i], rests[i], greys[i]
        try:
            return editors[i][1].edit(image, edits).frame
        finally:
            lids.LID_FLOOR, fold.MIN_AREA_RATIO, landmark_motion.BROWS_FROM_REST, expression_editor.achromatic = kept
    rows, done = [], 0
    try:
        for name in names:
            if done >= limit:
                break
            image = cv2.imread(str(args.faces / "images" / name), cv2.IMREAD_COLOR)
            faces = editors[0][1].detect(image) if image is not None else []
            if not faces:
                continue
            done += 1
            outs = [edit(i, image) for i in range(len(editors))]
            for part in args.parts:
                points, margin = PARTS[part]
                x0, y0, x1, y1 = crop_box(faces[0], points, margin, image.shape, args.max_side)
                gap = np.full((y1 - y0, 6, 3), 255, np.uint8)
                tiles = [image[y0:y1, x0:x1]] + [o[y0:y1, x0:x1] for o in outs]
                row = np.hstack([t for tile in tiles for t in (tile, gap)][:-1])
                rows.append(np.vstack([label(row.shape[1], f"{name} {part}: input | "
                                             + " | ".join(n for n, _ in editors)), row]))
    finally:
        for _, ed in editors:
            ed.close()
    if not rows:
        raise SystemExit(f"edit_crops: no face found in the photos asked ({args.photos})")
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 6), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), np.vstack(rows))
    print(f"wrote {args.out}: {done} photos, {' '.join(args.au)}, input | {' | '.join(n for n, _ in editors)}, "
          "crops at 100 %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

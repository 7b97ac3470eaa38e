"""Held-out frame pairs through the whole editor (issue 19's pair table against the shipped
texture): the same pairs as ``tools/region_pairs.py``, but edited on the full frame by
:meth:`ExpressionEditor.blend`, so the shipped mesh texture (which runs on the face's 64 px
grid, not on a region) is compared with the region textures on one footing.

For each pair (source frame a, target frame b of one held-out video's track;
:func:`training.region_gan.held_out_rows`, fixed seed, one pair per target):

1. frame b and its landmarks are aligned to frame a by the similarity that best maps b's 468
   mesh landmarks onto a's (OpenCV ``estimateAffinePartial2D``, LMedS): what is left is the
   expression, not the head's motion;
2. the editor moves a's landmarks to b's aligned ones through the face mesh
   (:meth:`MeshMotion.maps_from_motion`: the real target's motion instead of the landmark motion
   model's, AUs from both frames' landmarks) and composites the frame with each variant:

   - ``warp``: the mesh warp alone (no texture; the mouth's inside stretched with its triangles);
   - ``shipped``: the mesh texture on that warp (``--texture mesh`` before issue 19);
   - ``new``: the editor now (teeth that follow the jaws, the mesh texture, the eye and mouth
     region textures on top: ``--texture regions``);
3. the region of the pair's kind (an eye, or the mouth) is cut at b's aligned landmarks from
   each output and from aligned frame b, and PSNR (dB, RGB) is taken over the pixels where the
   region deforms (the mesh's own motion gate, the same weights for every column, as
   ``tools/region_pairs.py``), pooled over the category's pairs; and ``detail``, the mean absolute
   Laplacian of the output's grey levels over the same pixels as a fraction of the real target's
   (1: as much fine structure as the real frame; a blur, which PSNR favours where the exact place
   of the teeth or lashes is uncertain, falls below 1). The weights are the landmarks' own motion
   (closing lids as their landmarks say, ``lid_floor=0``), whatever the variant's warp.

    python tools/frame_pairs.py --kind eye|mouth [--weights base,lite] [--pairs 32]
        [--data /root/fastwarp-runs/regions] [--faces ../shared/data/faces] [--out F.json]
        [--region-weights EYE] [--mouth-weights MOUTH]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fastwarp.face.lids as lids  # noqa: E402
from fastwarp import ExpressionEditor  # noqa: E402
from fastwarp.face.aus import estimate_aus  # noqa: E402
from fastwarp.face.mesh import MESH_POINTS  # noqa: E402
from fastwarp.face.regions import EYE, MOUTH, cut_region, region_matrix, to_region  # noqa: E402
from fastwarp.models.region_texture import region_inputs  # noqa: E402
from training.region_gan import CATEGORIES, held_out_rows  # noqa: E402
from training.regions import held_out_videos, load_regions, video_frames  # noqa: E402

VARIANTS = ("warp", "shipped", "new")
#: Every variant :func:`edit_pair` knows (the last three for diagnosis).
ALL_VARIANTS = VARIANTS + ("jaws", "regions_only", "share1", "regions_raw")


def _psnr(sq: float, n: float) -> float:
    return float(10 * np.log10(255.0 ** 2 / max(sq / max(n, 1e-9), 1e-10)))


def _detail(bgr: np.ndarray, w: np.ndarray) -> float:
    """``sum(w |Laplacian(grey)|)``: the fine structure of a region where ``w`` weighs."""
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.float64)
    return float((np.abs(cv2.Laplacian(grey, cv2.CV_64F, ksize=3)) * w).sum())


class _Pairs:
    """Frames and frame-pixel landmarks of the pairs' videos (landmarks from the region shards)."""

    def __init__(self, data: Path, faces: Path) -> None:
        self.data, self.faces = data, faces
        self.cache: dict[str, tuple[dict[int, np.ndarray], dict[int, np.ndarray]]] = {}

    def load(self, video: str, wanted: set[int]) -> None:
        with np.load(self.data / f"{video}.npz") as z:
            idx, lms = z["frame_idx"], z["landmarks"]
        path = next((self.faces / "videos").glob(f"{video}.*"))
        frames = {}
        for i, frame in video_frames(path):  # decode order, as the shards' frame_idx
            if i in wanted:
                frames[i] = frame
                if len(frames) == len(wanted):
                    break
        self.cache[video] = (frames, {int(i): lms[k] for k, i in enumerate(idx) if int(i) in wanted})

    def get(self, video: str, frame: int) -> tuple[np.ndarray, np.ndarray]:
        frames, lms = self.cache[video]
        return frames[frame], lms[frame]


def _aligned(frame_b: np.ndarray, lm_b: np.ndarray, lm_a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frame b and its landmarks ``[478, 2]`` moved onto frame a by the similarity fit of the mesh."""
    s, _ = cv2.estimateAffinePartial2D(lm_b[:MESH_POINTS, :2].astype(np.float32),
                                       lm_a[:MESH_POINTS, :2].astype(np.float32), method=cv2.LMEDS)
    h, w = frame_b.shape[:2]
    img = cv2.warpAffine(frame_b, s, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    return img, lm_b[:, :2].astype(np.float64) @ s[:, :2].T + s[:, 2]


@torch.no_grad()
def edit_pair(editor: ExpressionEditor, frame_a: np.ndarray, lm_a: np.ndarray, target: np.ndarray,
              variants: tuple[str, ...] = VARIANTS) -> dict[str, np.ndarray]:
    """Frame a edited to the landmarks ``target`` (``[478, 2]`` frame pixels) by each variant
    (of :data:`VARIANTS`; also ``"jaws"``: teeth that follow the jaws with the mesh texture
    alone, ``"regions_only"``: the region textures on the plain mesh warp, ``"share1"``: the editor
    now with the jaws parting at the source's lower lip for every face, as before each face's own
    split, :func:`fastwarp.face.jaws.upper_share`; ``"regions_raw"``: the editor now without the
    mesh texture under the region textures)."""
    crop = editor.crop(frame_a, lm_a)
    mm = editor.mesh_motion
    src = crop.landmarks[:, :2].astype(np.float64)
    tgt = target @ crop.matrix[:, :2].T + crop.matrix[:, 2]
    verts, moved = mm.motion_to(src, tgt, crop.size)
    cur, aim = estimate_aus(src), estimate_aus(tgt)
    texture_model, regions, split, share = mm.texture_model, editor.regions, mm.split_mouth, mm.upper_share
    settings = {"warp": (None, None, False, None), "shipped": (texture_model, None, False, None),
                "new": (texture_model, regions, True, share),
                # for diagnosis: the jaws with the mesh texture alone, the regions without the jaws,
                # and the jaws parting at the lower lip for every face
                "jaws": (texture_model, None, True, share), "regions_only": (texture_model, regions, False, None),
                "share1": (texture_model, regions, True, 1.0),
                # the region textures on the face's warp without the mesh texture under them
                "regions_raw": (None, regions, True, share)}
    out = {}
    try:
        for name in variants:
            tex, reg, jaws, upper = settings[name]
            mm.texture_model, editor.regions, mm.split_mouth, mm.upper_share = tex, reg, jaws, upper
            maps = mm.maps_from_motion(crop.image, crop.landmarks, verts, moved, cur, aim, painter=reg)
            out[name] = editor.blend(frame_a, crop, maps)
    finally:
        mm.texture_model, editor.regions, mm.split_mouth, mm.upper_share = texture_model, regions, split, share
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kind", default="eye", choices=("eye", "mouth"))
    ap.add_argument("--weights", default="base,lite", help="editor weights, comma-separated")
    ap.add_argument("--data", type=Path, default=Path("/root/fastwarp-runs/regions"))
    ap.add_argument("--faces", type=Path, default=Path("../shared/data/faces"))
    ap.add_argument("--pairs", type=int, default=32, help="pairs per category")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--region-weights", default=None,
                    help="an eye region texture checkpoint (path without suffix) for 'new' instead of the bundled one")
    ap.add_argument("--mouth-weights", default=None,
                    help="a mouth region texture checkpoint (path without suffix) for 'new' instead of the bundled one")
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help=f"comma-separated, of {', '.join(ALL_VARIANTS)}")
    ap.add_argument("--sheet", type=Path, default=None, help="a picture sheet of the first pairs (JPEG)")
    ap.add_argument("--lid-floor", type=float, default=None,
                    help="fastwarp.face.lids.LID_FLOOR for every variant (0: closing eyes warped as their "
                         "landmarks say, the editor before phase 7)")
    ap.add_argument("--no-eye-cover", action="store_true",
                    help="the mesh texture paints under the eye region textures too (the editor before phase 7)")
    args = ap.parse_args(argv)
    if args.lid_floor is not None:
        lids.LID_FLOOR = args.lid_floor
    variants = tuple(args.variants.split(","))
    unknown = [v for v in variants if v not in ALL_VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {', '.join(unknown)}: choose from {', '.join(ALL_VARIANTS)}")
    _, val_videos = held_out_videos(args.faces)
    rs = load_regions(args.data, args.kind, val_videos)
    spec = EYE if args.kind == "eye" else MOUTH
    cats = [c for c in CATEGORIES[args.kind] if c != "any"]
    rows_of = {}
    for cat in cats:
        try:
            rows_of[cat] = held_out_rows(rs, args.pairs, seed=3, category=cat, sharpest=False)
        except (ValueError, KeyError):
            continue
    pairs = _Pairs(args.data, args.faces)
    wanted: dict[str, set[int]] = {}
    for rows in rows_of.values():
        for a, b in rows:
            wanted.setdefault(rs.videos[rs.group[a]], set()).update({int(rs.frame[a]), int(rs.frame[b])})
    for video, frames in tqdm(sorted(wanted.items()), desc="decoding", unit="video"):
        pairs.load(video, frames)
    result: dict[str, dict] = {}
    sheet_rows: list[np.ndarray] = []
    for weights in args.weights.split(","):
        editor = ExpressionEditor(weights, "cpu", texture="regions", region_weights=args.region_weights,
                                  mouth_weights=args.mouth_weights)
        editor.mesh_motion.cover = () if args.no_eye_cover else ("eye",)
        names = [f"{v} ({weights})" for v in variants]
        for cat, rows in rows_of.items():
            sq = {n: 0.0 for n in names}
            detail = {n: 0.0 for n in names}
            count, real_detail = 0.0, 0.0
            for a, b in tqdm(rows, desc=f"{weights} {cat}", unit="pair", leave=False):
                video = rs.videos[rs.group[a]]
                side = None if args.kind == "mouth" else ("left" if rs.side[b] == 1 else "right")
                frame_a, lm_a = pairs.get(video, int(rs.frame[a]))
                frame_b, target = _aligned(*pairs.get(video, int(rs.frame[b])), lm_a)
                outs = edit_pair(editor, frame_a, lm_a, target, variants)
                m = region_matrix(target[None], spec, side)[0]
                real = cut_region(frame_b, m, spec)[0].astype(np.float64)
                source = cut_region(frame_a, m, spec)[0]
                rgb = torch.from_numpy(np.ascontiguousarray(source[..., ::-1])).permute(2, 0, 1)[None].float() / 127.5 - 1
                w = region_inputs(rgb, torch.from_numpy(to_region(lm_a[:, :2].astype(np.float64), m))[None].float(),
                                  torch.from_numpy(to_region(target, m))[None].float(), args.kind, [side or "right"],
                                  jaws=False, lid_floor=0.0)["gate"][0, 0].numpy().astype(np.float64)
                cuts = {}
                for v, n in zip(variants, names):
                    cuts[v] = cut_region(outs[v], m, spec)[0]
                    sq[n] += float((((cuts[v].astype(np.float64) - real) ** 2) * w[..., None]).sum())
                    detail[n] += _detail(cuts[v], w)
                count += float(w.sum() * 3)
                real_detail += _detail(real.astype(np.uint8), w)
                if args.sheet is not None and weights == args.weights.split(",")[0] and len(sheet_rows) < 12 \
                        and w.sum() > 0:
                    sheet_rows.append(np.concatenate([source, *(cuts[v] for v in variants), real.astype(np.uint8)], 1))
            result.setdefault(cat, {"pairs": len(rows)}).update({n: _psnr(sq[n], count) for n in names})
            result[cat].setdefault("detail", {}).update({n: detail[n] / max(real_detail, 1e-9) for n in names})
            print(f"| {cat} | {len(rows)} | " + " | ".join(
                f"{n} {result[cat][n]:.2f} dB, detail {result[cat]['detail'][n]:.2f}" for n in names) + " |", flush=True)
        editor.close()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"kind": args.kind, "psnr_db": result}, indent=1) + "\n")
    if args.sheet is not None and sheet_rows:
        args.sheet.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(args.sheet), np.concatenate(sheet_rows, 0), [cv2.IMWRITE_JPEG_QUALITY, 92])
        print(f"sheet (source | {' | '.join(variants)} | real target): {args.sheet}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

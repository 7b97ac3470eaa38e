"""Region data at the face's own resolution (issue 19): each eye and the mouth cut from the
training videos' full-resolution frames (:mod:`fastwarp.face.regions`), with landmarks, the
geometric AU estimate, a landmark-quality filter, and the same-track, same-pose pairs the
region texture is trained on.

Extraction (``python -m training.regions prepare``): every ``stride``-th frame of every video
of a faces folder, FaceMesh in tracking mode (reset per video; a frame without a face starts
a new track), cut into a right eye, a mirrored left eye (``[64, 128]``) and a mouth
(``[128, 128]``). One compressed ``<out>/<video>.npz`` per video (written to a temp file and
renamed, so a crash never leaves half a shard; finished shards are skipped on a rerun) and
``manifest.json`` (counts, the split, the thresholds). Every video is extracted; the split
(:func:`held_out_videos`) decides which ones training may read.

Quality filter (research/eye_closing_experiment.md): the two eye widths within 1.33x of each
other, IOD / eye width in 2.3..3.6, each eye at least 12 px wide, |yaw| and |pitch| at most
0.6 rad, the region's footprint at least 98 % inside the frame.

CLI: ``python -m training.regions prepare --faces ../shared/data/faces --out /root/fastwarp-runs/regions``
and ``python -m training.regions stats --out ...`` (the counts).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np
import torch

from fastwarp._io import atomic_path
from fastwarp.au import AU_NAMES
from fastwarp.face import estimate_aus_batch, head_pose
from fastwarp.face.landmarks import LEFT_EYE_INNER, LEFT_EYE_OUTER, RIGHT_EYE_INNER, RIGHT_EYE_OUTER
from fastwarp.face.jaws import upper_share
from fastwarp.face.regions import (
    EYE,
    LOWER_INNER_LIP,
    MOUTH,
    REGIONS,
    UPPER_INNER_LIP,
    UPPER_OUTER_LIP,
    LOWER_OUTER_LIP,
    cut_region,
    eye_gap,
    mouth_gap,
    region_matrices,
    to_region,
)

from .data import VIDEO_EXTS, manifest_identities, split_videos

__all__ = ["SHIPPED_VALIDATION", "held_out_videos", "prepare_regions", "extract_video", "teeth_fraction",
           "quality_ok", "RegionSet", "load_regions", "region_stats", "CLOSED_GAP", "OPEN_GAP", "MOUTH_OPEN_GAP",
           "TEETH_FRACTION", "video_frames", "main"]

MANIFEST = "manifest.json"
#: Eye gap (lid distance / eye width, :func:`fastwarp.face.regions.eye_gap`) under which an eye
#: counts as closed, and over which as open.
CLOSED_GAP = 0.12
OPEN_GAP = 0.2
#: Inner-lip gap (IOD) from which a mouth counts as open.
MOUTH_OPEN_GAP = 0.08
#: Share of the inner-lip polygon's pixels that look like teeth from which a mouth shows teeth.
TEETH_FRACTION = 0.15
INSIDE_MIN = 0.98

#: The validation videos of the shipped mesh models (fastwarp/weights/motion.json and
#: texture.json, split over the first 88 videos): their people stay held out here too, so
#: the held-out pair tables of docs/evaluation/mesh keep measuring unseen faces.
SHIPPED_VALIDATION = (
    "dt_W009_angry", "dt_W009_contempt", "dt_W009_disgusted", "dt_W009_fear", "dt_W009_happy", "dt_W009_neutral",
    "dt_W009_sad", "dt_W009_surprised", "eamm_fear", "eamm_surprised", "lp_d12", "lp_d3", "lp_s32",
    "st_WDA_AOC_000", "sty_src_Obama_clip1", "sty_src_Obama_clip3", "sty_style_sadfather_clip1",
)


def held_out_videos(faces_dir: str | os.PathLike, names: Sequence[str] | None = None, val_fraction: float = 0.15,
                    seed: int = 0) -> tuple[list[str], list[str]]:
    """``(train, held out)`` video stems: :func:`training.data.split_videos` over the videos
    of ``faces_dir`` by the MANIFEST's ``identity`` column (as the mesh models' training does),
    joined with every person of :data:`SHIPPED_VALIDATION` (held out by the shipped models,
    whose split was drawn over fewer videos). No person is on both sides."""
    faces_dir = Path(faces_dir)
    if names is None:
        names = sorted(p.stem for p in (faces_dir / "videos").iterdir() if p.suffix.lower() in VIDEO_EXTS)
    ids = manifest_identities(faces_dir)
    _, val = split_videos(names, val_fraction, seed, ids)
    who = lambda n: ids.get(n, n)  # noqa: E731
    held_people = {who(n) for n in val} | {who(n) for n in SHIPPED_VALIDATION}
    held = sorted(n for n in names if who(n) in held_people)
    return sorted(n for n in names if n not in set(held)), held


def quality_ok(landmarks: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Landmark quality per face, bool ``[N]`` (the filter of the module docstring, without the
    footprint test)."""
    p = np.asarray(landmarks, np.float64)[..., :2]
    wr = np.linalg.norm(p[:, RIGHT_EYE_OUTER] - p[:, RIGHT_EYE_INNER], axis=-1)
    wl = np.linalg.norm(p[:, LEFT_EYE_OUTER] - p[:, LEFT_EYE_INNER], axis=-1)
    iod = np.linalg.norm(p[:, LEFT_EYE_OUTER] - p[:, RIGHT_EYE_OUTER], axis=-1)
    ratio = np.maximum(wr, wl) / np.maximum(np.minimum(wr, wl), 1e-6)
    rel = iod / np.maximum(0.5 * (wr + wl), 1e-6)
    return ((ratio <= 1.33) & (rel >= 2.3) & (rel <= 3.6) & (np.minimum(wr, wl) >= 12.0)
            & (np.abs(pose) <= 0.6).all(-1))


def teeth_fraction(mouth_bgr: np.ndarray, region_landmarks: np.ndarray) -> float:
    """The share of the inner-lip polygon's pixels that look like teeth (bright and grey:
    HSV saturation under 80 and value over 0.9 x the median value of the skin between the
    outer lip line and the region's border, and over 100); 0 when the polygon covers under
    12 pixels. A rough cue, not a detector."""
    h, w = mouth_bgr.shape[:2]
    pts = np.asarray(region_landmarks, np.float64)[:, :2]
    inner = np.round(pts[list(UPPER_INNER_LIP) + list(LOWER_INNER_LIP[::-1])] * 16).astype(np.int32)
    outer = np.round(pts[list(UPPER_OUTER_LIP) + list(LOWER_OUTER_LIP[::-1])] * 16).astype(np.int32)
    poly = np.zeros((h, w), np.uint8)
    cv2.fillPoly(poly, [inner], 1, cv2.LINE_8, 4)
    if poly.sum() < 12:
        return 0.0
    lips = np.zeros((h, w), np.uint8)
    cv2.fillPoly(lips, [outer], 1, cv2.LINE_8, 4)
    hsv = cv2.cvtColor(mouth_bgr, cv2.COLOR_BGR2HSV)
    skin = hsv[..., 2][lips == 0]
    ref = max(0.9 * float(np.median(skin)) if skin.size else 0.0, 100.0)
    inside = poly.astype(bool)
    teeth = (hsv[..., 1] < 80) & (hsv[..., 2] > ref) & inside
    return float(teeth.sum() / inside.sum())


def video_frames(path: Path, stride: int = 1) -> Iterable[tuple[int, np.ndarray]]:
    """``(index, frame)`` of every ``stride``-th frame of a video, BGR uint8, indices in decode
    order (OpenCV): the ``frame_idx`` of the region shards.

    Raises:
        RuntimeError: OpenCV cannot open the video.
    """
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise RuntimeError(f"OpenCV cannot open video {path}")
    try:
        i = 0
        while True:
            if i % stride == 0:
                ok, frame = cap.read()
                if not ok:
                    return
                yield i, frame
            elif not cap.grab():
                return
            i += 1
    finally:
        cap.release()


def extract_video(path: str | os.PathLike, stride: int = 1) -> dict[str, np.ndarray]:
    """The arrays of one video's shard, for the F frames with a face (every ``stride``-th):

    ``frame_idx`` int32 ``[F]``, ``track`` int32 ``[F]`` (a new track after a frame without a
    face), ``landmarks`` float32 ``[F, 478, 3]`` (frame pixels), ``aus`` float32 ``[F, 17]``,
    ``pose`` float32 ``[F, 2]`` (yaw, pitch), ``ok`` bool ``[F]`` (:func:`quality_ok`),
    ``eye`` uint8 ``[F, 2, 64, 128, 3]`` BGR (right eye, mirrored left eye), ``eye_matrix``
    float64 ``[F, 2, 2, 3]`` (frame -> region), ``eye_inside`` / ``eye_gap`` float32 ``[F, 2]``,
    ``mouth`` uint8 ``[F, 128, 128, 3]``, ``mouth_matrix`` float64 ``[F, 2, 3]``,
    ``mouth_inside`` / ``mouth_gap`` / ``teeth`` float32 ``[F]``, ``frame_size`` int32 ``[2]``
    (H, W).
    """
    from fastwarp.face import FaceMesh

    path = Path(path)
    out: dict[str, list] = {k: [] for k in ("frame_idx", "track", "landmarks", "pose", "eye", "eye_matrix",
                                            "eye_inside", "mouth", "mouth_matrix", "mouth_inside", "teeth")}
    track, lost, size = 0, False, (0, 0)
    with FaceMesh(static_image_mode=False) as mesh:
        for i, frame in video_frames(path, stride):
            size = frame.shape[:2]
            faces = mesh.detect(frame)
            if not faces:
                lost = True
                continue
            if lost:
                track, lost = track + 1, False
            lm = faces[0]
            em = region_matrices(lm[None], "eye")[0]
            mm = region_matrices(lm[None], "mouth")[0]
            eyes = [cut_region(frame, em[s], EYE) for s in range(2)]
            mouth, mouth_inside = cut_region(frame, mm, MOUTH)
            out["frame_idx"].append(i)
            out["track"].append(track)
            out["landmarks"].append(lm)
            out["pose"].append(head_pose(lm))
            out["eye"].append(np.stack([e[0] for e in eyes]))
            out["eye_matrix"].append(em)
            out["eye_inside"].append([e[1] for e in eyes])
            out["mouth"].append(mouth)
            out["mouth_matrix"].append(mm)
            out["mouth_inside"].append(mouth_inside)
            out["teeth"].append(teeth_fraction(mouth, to_region(lm, mm)))
    n = len(out["frame_idx"])
    lms = np.asarray(out["landmarks"], np.float32).reshape(n, 478, 3)
    pose = np.asarray(out["pose"], np.float32).reshape(n, 2)
    arrays = {
        "frame_idx": np.asarray(out["frame_idx"], np.int32),
        "track": np.asarray(out["track"], np.int32),
        "landmarks": lms,
        "aus": estimate_aus_batch(lms) if n else np.zeros((0, len(AU_NAMES)), np.float32),
        "pose": pose,
        "ok": quality_ok(lms, pose) if n else np.zeros(0, bool),
        "eye": np.asarray(out["eye"], np.uint8).reshape(n, 2, EYE.height, EYE.width, 3),
        "eye_matrix": np.asarray(out["eye_matrix"], np.float64).reshape(n, 2, 2, 3),
        "eye_inside": np.asarray(out["eye_inside"], np.float32).reshape(n, 2),
        "eye_gap": eye_gap(lms) if n else np.zeros((0, 2), np.float32),
        "mouth": np.asarray(out["mouth"], np.uint8).reshape(n, MOUTH.height, MOUTH.width, 3),
        "mouth_matrix": np.asarray(out["mouth_matrix"], np.float64).reshape(n, 2, 3),
        "mouth_inside": np.asarray(out["mouth_inside"], np.float32),
        "mouth_gap": mouth_gap(lms) if n else np.zeros(0, np.float32),
        "teeth": np.asarray(out["teeth"], np.float32),
        "frame_size": np.asarray(size, np.int32),
    }
    return arrays


def _savez(tmp: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(tmp, "wb") as f:  # a file object: numpy does not append ".npz"
        np.savez_compressed(f, **arrays)


def prepare_regions(faces_dir: str | os.PathLike, out_dir: str | os.PathLike, *, stride: int = 1,
                    videos: Iterable[str] | None = None, progress: bool = True) -> dict:
    """Extract every video of ``faces_dir/videos`` (or those named) into ``out_dir`` (see the
    module docstring); resumable. Returns the manifest."""
    from tqdm import tqdm

    faces_dir, out_dir = Path(faces_dir), Path(out_dir)
    vdir = faces_dir / "videos"
    paths = sorted(p for p in vdir.iterdir() if p.suffix.lower() in VIDEO_EXTS)
    if videos is not None:
        keep = {Path(v).stem for v in videos}
        paths = [p for p in paths if p.stem in keep]
    if not paths:
        raise FileNotFoundError(f"no videos in {vdir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    mpath = out_dir / MANIFEST
    manifest = json.loads(mpath.read_text()) if mpath.exists() else {}
    train, held = held_out_videos(faces_dir)
    manifest.update({"faces": str(faces_dir), "stride": stride, "train_videos": train, "held_out_videos": held,
                     "regions": {k: {"height": s.height, "width": s.width, "span_iod": s.span,
                                     "offset_iod": list(s.offset)} for k, s in REGIONS.items()},
                     "color": "BGR", "au_names": list(AU_NAMES)})
    entries = manifest.setdefault("videos", {})
    bar = tqdm(paths, desc="regions", unit="video", disable=not progress)
    for p in bar:
        shard = out_dir / f"{p.stem}.npz"
        if shard.exists() and p.stem in entries:
            continue
        bar.set_postfix_str(p.name)
        t0 = time.perf_counter()
        arrays = extract_video(p, stride)
        with atomic_path(shard) as tmp:
            _savez(tmp, arrays)
        entries[p.stem] = {"frames": int(len(arrays["frame_idx"])), "source": str(p),
                           "frame_size": arrays["frame_size"].tolist(), "seconds": round(time.perf_counter() - t0, 1)}
        with atomic_path(mpath) as tmp:
            tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    with atomic_path(mpath) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


# --- loading -----------------------------------------------------------------------------------

@dataclass
class RegionSet:
    """The regions of one kind of some videos, one row per region instance (an eye region per
    eye and frame, or a mouth per frame); rows of one group (video, track, eye side) are
    contiguous.

    Attributes:
        kind: ``"eye"`` or ``"mouth"``.
        images: uint8 ``[R, H, W, 3]`` **RGB**.
        landmarks: float32 ``[R, 478, 2]`` in region pixels (a left eye's mirrored with it).
        aus: float32 ``[R, 17]`` (the frame's).
        pose: float32 ``[R, 2]``.
        gap: float32 ``[R]``: the eye's gap (eye widths) or the mouth's inner-lip gap (IOD).
        teeth: float32 ``[R]`` (mouth; 0 for eyes).
        scale: float32 ``[R]``: region pixels per frame pixel (over 1: upsampled from a small face).
        group: int64 ``[R]``: the (video, track, side) group of each row.
        side: int8 ``[R]``: 0 right eye or mouth, 1 left eye (mirrored).
        video: list of the video stem of each group; frame: int32 ``[R]`` frame index.
        share: float64 ``[R]`` or None (mouth): each source mouth's own jaw split
            (:func:`fastwarp.face.jaws.upper_share`, :func:`mouth_shares`) for the training pairs'
            warp; None: :data:`fastwarp.face.jaws.UPPER_SHARE` for every mouth.
    """

    kind: str
    images: np.ndarray
    landmarks: np.ndarray
    aus: np.ndarray
    pose: np.ndarray
    gap: np.ndarray
    teeth: np.ndarray
    scale: np.ndarray
    group: np.ndarray
    side: np.ndarray
    frame: np.ndarray
    videos: list[str]
    share: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.images)


def mouth_shares(rs: RegionSet) -> np.ndarray:
    """float64 ``[R]``: each mouth region's own jaw split, :func:`fastwarp.face.jaws.upper_share`
    of the region image at its region landmarks (what the editor reads from the frame; ``min(B, G,
    R)`` is the same in RGB). 1 for every row of an eye set."""
    if rs.kind != "mouth":
        return np.ones(len(rs))
    return np.array([upper_share(rs.images[i], rs.landmarks[i]) for i in range(len(rs))], np.float64)


def load_regions(out_dir: str | os.PathLike, kind: str, videos: Sequence[str], *, quality: bool = True) -> RegionSet:
    """The ``kind`` regions of ``videos`` from an extraction folder; with ``quality`` only the
    rows passing the landmark-quality filter with their footprint 98 % inside the frame.

    Raises:
        FileNotFoundError: a video's shard is missing.
    """
    if kind not in REGIONS:
        raise ValueError(f"unknown region kind {kind!r} (expected 'eye' or 'mouth')")
    out_dir = Path(out_dir)
    cols: dict[str, list] = {k: [] for k in ("images", "landmarks", "aus", "pose", "gap", "teeth", "scale", "group",
                                             "side", "frame")}
    names: list[str] = []
    for name in videos:
        shard = out_dir / f"{name}.npz"
        if not shard.is_file():
            raise FileNotFoundError(f"no region shard {shard} (run python -m training.regions prepare)")
        keys = ("frame_idx", "track", "landmarks", "aus", "pose", "ok") + (
            ("eye", "eye_matrix", "eye_inside", "eye_gap") if kind == "eye"
            else ("mouth", "mouth_matrix", "mouth_inside", "mouth_gap", "teeth"))
        with np.load(shard) as z:
            d = {k: z[k] for k in keys}  # (only this kind's images: a shard holds both)
        if len(d["frame_idx"]) == 0:
            continue
        sides = (0, 1) if kind == "eye" else (0,)
        for s in sides:
            if kind == "eye":
                img, mat, inside, gap = d["eye"][:, s], d["eye_matrix"][:, s], d["eye_inside"][:, s], d["eye_gap"][:, s]
                teeth = np.zeros(len(gap), np.float32)
            else:
                img, mat, inside = d["mouth"], d["mouth_matrix"], d["mouth_inside"]
                gap, teeth = d["mouth_gap"], d["teeth"]
            keep = (d["ok"] & (inside >= INSIDE_MIN)) if quality else np.ones(len(gap), bool)
            for t in np.unique(d["track"]):
                rows = np.flatnonzero(keep & (d["track"] == t))
                if len(rows) == 0:
                    continue
                cols["images"].append(img[rows][..., ::-1])
                cols["landmarks"].append(to_region(d["landmarks"][rows], mat[rows]))
                cols["aus"].append(d["aus"][rows])
                cols["pose"].append(d["pose"][rows])
                cols["gap"].append(gap[rows])
                cols["teeth"].append(teeth[rows])
                cols["scale"].append(np.sqrt(np.abs(np.linalg.det(mat[rows][:, :, :2]))).astype(np.float32))
                cols["group"].append(np.full(len(rows), len(names), np.int64))
                cols["side"].append(np.full(len(rows), s, np.int8))
                cols["frame"].append(d["frame_idx"][rows])
                names.append(name)
    spec = REGIONS[kind]

    def cat(k: str, shape: tuple, dt) -> np.ndarray:
        return np.ascontiguousarray(np.concatenate(cols[k])) if cols[k] else np.zeros(shape, dt)

    return RegionSet(kind, cat("images", (0, spec.height, spec.width, 3), np.uint8),
                     cat("landmarks", (0, 478, 2), np.float32),
                     cat("aus", (0, len(AU_NAMES)), np.float32), cat("pose", (0, 2), np.float32),
                     cat("gap", (0,), np.float32), cat("teeth", (0,), np.float32), cat("scale", (0,), np.float32),
                     cat("group", (0,), np.int64), cat("side", (0,), np.int8), cat("frame", (0,), np.int32), names)


def region_stats(out_dir: str | os.PathLike) -> dict:
    """Counts of an extraction folder: frames, regions passing the quality filter, closed and
    open eyes, open mouths, mouths with teeth, region scales; for all videos, the training
    videos and the held-out ones."""
    out_dir = Path(out_dir)
    manifest = json.loads((out_dir / MANIFEST).read_text())
    done = sorted(manifest["videos"])
    result = {}
    for part, names in (("train", manifest["train_videos"]), ("held_out", manifest["held_out_videos"])):
        names = [n for n in names if n in done]
        r: dict = {"videos": len(names), "frames": sum(manifest["videos"][n]["frames"] for n in names)}
        eye = load_regions(out_dir, "eye", names)
        mouth = load_regions(out_dir, "mouth", names)
        r["eye_regions"] = len(eye)
        for t in (0.08, CLOSED_GAP, OPEN_GAP):
            r[f"eyes_gap_under_{t}"] = int((eye.gap < t).sum())
        r["videos_with_closed_eye"] = len({eye.videos[g] for g in np.unique(eye.group[eye.gap < CLOSED_GAP])})
        r["eye_scale_p10_p50_p90"] = np.percentile(eye.scale, [10, 50, 90]).round(2).tolist() if len(eye) else []
        r["eyes_closed_native"] = int(((eye.gap < CLOSED_GAP) & (eye.scale <= 1.0)).sum())
        r["eyes_closed_scale_le_1.5"] = int(((eye.gap < CLOSED_GAP) & (eye.scale <= 1.5)).sum())
        r["mouth_regions"] = len(mouth)
        r["mouths_open"] = int((mouth.gap >= MOUTH_OPEN_GAP).sum())
        r["mouths_wide_open_0.2"] = int((mouth.gap >= 0.2).sum())
        r["mouths_teeth"] = int((mouth.teeth >= TEETH_FRACTION).sum())
        r["mouths_open_teeth"] = int(((mouth.teeth >= TEETH_FRACTION) & (mouth.gap >= MOUTH_OPEN_GAP)).sum())
        r["mouth_scale_p10_p50_p90"] = np.percentile(mouth.scale, [10, 50, 90]).round(2).tolist() if len(mouth) else []
        r["mouths_native"] = int((mouth.scale <= 1.0).sum())
        result[part] = r
    return result


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m training.regions", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="extract the regions of every video")
    p.add_argument("--faces", default="../shared/data/faces")
    p.add_argument("--out", required=True)
    p.add_argument("--stride", type=int, default=1)
    p.add_argument("--videos", nargs="*")
    p.add_argument("--no-progress", action="store_true")
    s = sub.add_parser("stats", help="count the regions of an extraction")
    s.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.cmd == "prepare":
        t0 = time.perf_counter()
        m = prepare_regions(args.faces, args.out, stride=args.stride, videos=args.videos, progress=not args.no_progress)
        n = sum(e["frames"] for e in m["videos"].values())
        print(f"{len(m['videos'])} videos, {n} frames -> {args.out} in {time.perf_counter() - t0:.0f} s")
    else:
        print(json.dumps(region_stats(args.out), indent=1))


if __name__ == "__main__":
    main()

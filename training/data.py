"""Training data: aligned face crops with landmarks, geometric AUs and head pose per video.

``prepare_dataset`` turns every video of a faces folder into one compressed ``.npz`` of
aligned crops (see :func:`prepare_dataset` for the arrays) plus a ``manifest.json``;
``split_videos`` splits videos by identity; ``make_pairs`` draws (source, target) frame
pairs of one video that differ in expression but hardly in head pose.

CLI: ``python -m training.data --faces ../shared/data/faces --out .cache/dataset128 --size 128``
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np

from fastwarp._io import atomic_path
from fastwarp.au import AU_NAMES, NUM_AUS
from fastwarp.face import FaceMesh, align_face, estimate_aus, head_pose

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm")
MANIFEST = "manifest.json"
_MEAD_EMOTIONS = ("angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised")


def identity_key(name: str) -> str:
    """Identity of the person in a clip, from its file name.

    Rules (applied to the stem): MEAD clips ``dt_<speaker>_<emotion>`` → ``dt_<speaker>``
    (``dt_M030_happy`` and ``dt_M030_sad`` are one person); a trailing ``_clip<N>`` or
    ``_clip_<N>`` is dropped (``sty_src_Obama_clip1`` / ``_clip3`` are one person). Every
    other name is its own identity (``lp_d0``, ``lp_d3`` are different people).
    """
    stem = Path(name).stem
    emo = "|".join(_MEAD_EMOTIONS)
    m = re.fullmatch(rf"(dt_[^_]+)_(?:{emo})(?:_\d+)?", stem)
    if m:
        return m.group(1)
    return re.sub(r"_clip_?\d+$", "", stem)


def split_videos(names: Sequence[str], val_fraction: float = 0.1, seed: int = 0) -> tuple[list[str], list[str]]:
    """Split videos into train / validation with no identity in both (see :func:`identity_key`).

    Identity groups are shuffled with ``seed`` and moved to validation until it holds at
    least ``val_fraction`` of the videos; at least one group goes to each side when there
    are two or more groups and ``0 < val_fraction < 1``.

    Returns:
        ``(train, val)``, each sorted.
    Raises:
        ValueError: ``val_fraction`` outside [0, 1].
    """
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"val_fraction must be in [0, 1], got {val_fraction}")
    groups: dict[str, list[str]] = {}
    for n in sorted(set(names)):
        groups.setdefault(identity_key(n), []).append(n)
    keys = sorted(groups)
    np.random.default_rng(seed).shuffle(keys)
    want = val_fraction * len(set(names))
    val: list[str] = []
    for i, k in enumerate(keys):
        if val_fraction <= 0.0 or (len(val) >= want and val):
            break
        if val_fraction < 1.0 and i == len(keys) - 1 and i > 0:
            break  # keep one group for training
        val.extend(groups[k])
    val_set = set(val)
    train = [n for n in sorted(set(names)) if n not in val_set]
    return train, sorted(val)


def _sample_indices(total: int, count: int) -> np.ndarray:
    if total <= 0:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.linspace(0, total - 1, min(count, total)).round().astype(np.int64))


def _read_frames(path: Path, count: int) -> list[tuple[int, np.ndarray]]:
    """Up to ``count`` evenly spaced frames, decoded sequentially (seeking in mp4 is
    slow and not always frame-exact)."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise RuntimeError(f"OpenCV cannot open video {path}")
    try:
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        want = set(_sample_indices(total, count).tolist())
        last = max(want) if want else -1
        frames, i = [], 0
        while i <= last:
            if i in want:
                ok, frame = cap.read()
                if not ok:
                    break
                frames.append((i, frame))
            elif not cap.grab():
                break
            i += 1
        return frames
    finally:
        cap.release()


def _write_manifest(out_dir: Path, manifest: dict) -> None:
    with atomic_path(out_dir / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))


def _process_video(path: Path, mesh: FaceMesh, size: int, frames_per_video: int) -> dict[str, np.ndarray]:
    crops, aus, lms, poses, idx = [], [], [], [], []
    for i, frame in _read_frames(path, frames_per_video):
        faces = mesh.detect(frame)
        if not faces:
            continue
        lm = faces[0]
        crop = align_face(frame, lm, size)
        crops.append(crop.image)
        lms.append(crop.landmarks[:, :2])
        aus.append(estimate_aus(crop.landmarks))
        poses.append(head_pose(lm))
        idx.append(i)
    return {
        "crops": np.asarray(crops, dtype=np.uint8).reshape(-1, size, size, 3),
        "aus": np.asarray(aus, dtype=np.float32).reshape(-1, NUM_AUS),
        "landmarks": np.asarray(lms, dtype=np.float32).reshape(-1, 478, 2),
        "pose": np.asarray(poses, dtype=np.float32).reshape(-1, 2),
        "frame_idx": np.asarray(idx, dtype=np.int32),
    }


def prepare_dataset(faces_dir: str | os.PathLike, out_dir: str | os.PathLike, *, size: int = 128,
                    frames_per_video: int = 40, seed: int = 0, progress: bool = True,
                    videos: Iterable[str] | None = None) -> dict:
    """Detect, align and label faces from every video of ``faces_dir/videos``.

    Per video ``<out_dir>/<stem>.npz`` (compressed) holds, for the F frames with a face:
    ``crops`` uint8 ``[F, S, S, 3]`` **BGR** (OpenCV order, like the rest of fastwarp),
    ``aus`` float32 ``[F, 17]`` (:func:`fastwarp.face.estimate_aus` on the crop
    landmarks), ``landmarks`` float32 ``[F, 478, 2]`` in crop pixels, ``pose`` float32
    ``[F, 2]`` (yaw, pitch) in radians (:func:`fastwarp.face.head_pose`, approximate),
    ``frame_idx`` int32 ``[F]`` (index in the video). Frames are sampled evenly; frames
    without a face are skipped. ``manifest.json`` (written atomically after each video)
    maps each video to its frame count and source file.

    Resumable: videos whose ``.npz`` exists are skipped (each ``.npz`` is written to a
    temp file and renamed, so a crash never leaves a partial one).

    Args:
        faces_dir: folder with a ``videos/`` subfolder.
        out_dir: output folder (created).
        size: crop side in pixels.
        frames_per_video: the most frames sampled per video.
        seed: recorded in the manifest; sampling itself is deterministic (evenly spaced).
        progress: show a tqdm bar.
        videos: optional file names (within ``videos/``) to restrict to.
    Returns:
        The manifest dict.
    Raises:
        FileNotFoundError: no ``videos/`` folder or no videos in it.
    """
    faces_dir, out_dir = Path(faces_dir), Path(out_dir)
    vdir = faces_dir / "videos"
    if not vdir.is_dir():
        raise FileNotFoundError(f"no videos folder at {vdir}")
    paths = sorted(p for p in vdir.iterdir() if p.suffix.lower() in VIDEO_EXTS)
    if videos is not None:
        keep = {Path(v).name for v in videos}
        paths = [p for p in paths if p.name in keep]
    if not paths:
        raise FileNotFoundError(f"no videos ({', '.join(VIDEO_EXTS)}) in {vdir}")
    out_dir.mkdir(parents=True, exist_ok=True)

    manifest_path = out_dir / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest.update({"size": size, "frames_per_video": frames_per_video, "seed": seed,
                     "color": "BGR", "au_names": list(AU_NAMES), "landmarks": "crop pixels [478, 2]",
                     "pose": "yaw, pitch radians (approximate)"})
    entries = manifest.setdefault("videos", {})

    from tqdm import tqdm

    bar = tqdm(paths, desc="videos", unit="video", disable=not progress)
    with FaceMesh(static_image_mode=True) as mesh:
        for path in bar:
            npz = out_dir / f"{path.stem}.npz"
            if npz.exists():
                if path.stem not in entries:  # npz from an interrupted run before its manifest update
                    with np.load(npz) as z:
                        entries[path.stem] = {"frames": int(len(z["frame_idx"])), "source": str(path)}
                continue
            bar.set_postfix_str(path.name)
            arrays = _process_video(path, mesh, size, frames_per_video)
            with atomic_path(npz) as tmp:
                _savez(tmp, arrays)
            entries[path.stem] = {"frames": int(len(arrays["frame_idx"])), "source": str(path)}
            _write_manifest(out_dir, manifest)
    _write_manifest(out_dir, manifest)
    return manifest


def _savez(tmp: str, arrays: dict[str, np.ndarray]) -> None:
    with open(tmp, "wb") as f:  # a file object, so numpy does not append ".npz" to the name
        np.savez_compressed(f, **arrays)


def load_dataset(out_dir: str | os.PathLike) -> dict[str, dict[str, np.ndarray]]:
    """All videos listed in ``out_dir/manifest.json``: ``{stem: {array name: array}}``
    with the arrays described in :func:`prepare_dataset`.

    Raises:
        FileNotFoundError: no manifest in ``out_dir``.
    """
    out_dir = Path(out_dir)
    manifest_path = out_dir / MANIFEST
    if not manifest_path.exists():
        raise FileNotFoundError(f"no {MANIFEST} in {out_dir}; run prepare_dataset first")
    manifest = json.loads(manifest_path.read_text())
    data = {}
    for name in sorted(manifest.get("videos", {})):
        with np.load(out_dir / f"{name}.npz") as z:
            data[name] = {k: z[k] for k in z.files}
    return data


def make_pairs(dataset: dict[str, dict[str, np.ndarray]], videos: Iterable[str], *,
               max_pose_diff: float = 0.15, min_au_diff: float = 1.0, pairs_per_video: int = 50,
               rng: np.random.Generator | None = None) -> list[tuple[str, int, int]]:
    """(video, source index, target index) frame pairs for expression-transfer training.

    A pair qualifies when both |Δyaw| and |Δpitch| are at most ``max_pose_diff`` radians
    (so the target differs from the source by expression, not by head turn) and some AU
    differs by at least ``min_au_diff`` (max-abs over the 17 AUs; else the pair tests
    nothing). Up to ``pairs_per_video`` qualifying ordered pairs are drawn per video
    without replacement. Indices address rows of the video's arrays, not frame numbers.

    Raises:
        KeyError: a video not in ``dataset``.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    pairs: list[tuple[str, int, int]] = []
    for name in videos:
        d = dataset[name]
        pose, aus = d["pose"].astype(np.float64), d["aus"].astype(np.float64)
        if len(pose) < 2:
            continue
        pose_ok = (np.abs(pose[:, None] - pose[None]) <= max_pose_diff).all(-1)
        au_ok = np.abs(aus[:, None] - aus[None]).max(-1) >= min_au_diff
        src, tgt = np.nonzero(pose_ok & au_ok & ~np.eye(len(pose), dtype=bool))
        if len(src) == 0:
            continue
        pick = rng.choice(len(src), size=min(pairs_per_video, len(src)), replace=False)
        pairs.extend((name, int(src[i]), int(tgt[i])) for i in sorted(pick))
    return pairs


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m training.data", description=__doc__.splitlines()[0])
    ap.add_argument("--faces", required=True, help="faces folder with videos/ (e.g. ../shared/data/faces)")
    ap.add_argument("--out", required=True, help="output folder (e.g. .cache/dataset128)")
    ap.add_argument("--size", type=int, default=128, help="crop side in pixels")
    ap.add_argument("--frames-per-video", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    manifest = prepare_dataset(args.faces, args.out, size=args.size, frames_per_video=args.frames_per_video,
                               seed=args.seed, progress=not args.no_progress)
    n = sum(v["frames"] for v in manifest["videos"].values())
    print(f"{len(manifest['videos'])} videos, {n} frames -> {args.out} in {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()

"""Training data: aligned face crops with landmarks, geometric AUs and head pose per video
or photo, and GANimation-layout AU datasets.

``prepare_dataset`` turns every video and photo of a faces folder into one compressed
``.npz`` of aligned crops (see :func:`prepare_dataset` for the arrays) plus a
``manifest.json``; ``split_videos`` splits entries by identity; ``make_pairs`` draws
(source, target) frame pairs of one video that differ in expression but hardly in head
pose. :class:`GanimationDataset` reads a folder in GANimation's layout (``imgs/`` +
``aus_openface.pkl``, Pumarola et al. ECCV 2018), loading the pickle with a restricted
unpickler (docs/design.md: never unpickle untrusted data blindly).

CLI: ``python -m training.data --faces ../shared/data/faces --out .cache/dataset128 --size 128``
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import pickle
import re
import time
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import cv2
import numpy as np

from fastwarp._io import atomic_path
from fastwarp.au import AU_NAMES, NUM_AUS
from fastwarp.face import FaceMesh, align_face, estimate_aus, head_pose

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
PHOTO_PREFIX = "img_"  # entry name of a photo: "img_<stem>", apart from video stems
MANIFEST = "manifest.json"
_MEAD_EMOTIONS = ("angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised")


def identity_key(name: str) -> str:
    """Identity of the person in a clip, from its file name.

    Rules (applied to the stem): MEAD clips ``dt_<speaker>_<emotion>`` → ``dt_<speaker>``
    (``dt_M030_happy`` and ``dt_M030_sad`` are one person); a trailing ``_clip<N>`` or
    ``_clip_<N>`` is dropped (``sty_src_Obama_clip1`` / ``_clip3`` are one person). Every
    other name is its own identity (``lp_d0``, ``lp_d3`` are different people), and so is
    every photo entry ``img_<stem>`` (:func:`prepare_dataset`), whatever its stem.
    """
    base = Path(name).name
    if base.startswith(PHOTO_PREFIX):  # keep dots of the photo's stem: "img_a.b" != "img_a.c"
        return Path(base).stem if Path(base).suffix.lower() in IMAGE_EXTS else base
    stem = Path(name).stem
    emo = "|".join(_MEAD_EMOTIONS)
    m = re.fullmatch(rf"(dt_[^_]+)_(?:{emo})(?:_\d+)?", stem)
    if m:
        return m.group(1)
    return re.sub(r"_clip_?\d+$", "", stem)


def manifest_identities(faces_dir: str | os.PathLike) -> dict[str, str]:
    """The person in each file, from the ``identity`` column of ``faces_dir/MANIFEST.csv``.

    Returns:
        ``{entry name: identity}`` with the dataset's entry names (:func:`prepare_dataset`):
        a video's stem, ``img_<stem>`` for a photo; ``{}`` when there is no MANIFEST.csv or
        it has no ``identity`` column.
    """
    path = Path(faces_dir) / "MANIFEST.csv"
    if not path.is_file():
        return {}
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = {}
    for row in rows:
        ident, file = (row.get("identity") or "").strip(), Path(row.get("file") or "")
        if not ident or not file.name:
            continue
        photo = file.suffix.lower() in IMAGE_EXTS
        out[(PHOTO_PREFIX + file.stem) if photo else file.stem] = ident
    return out


def dataset_identities(data_dir: str | os.PathLike) -> dict[str, str]:
    """:func:`manifest_identities` of the faces folder a dataset cache was prepared from
    (found through the sources its ``manifest.json`` records); ``{}`` when unknown."""
    manifest = Path(data_dir) / MANIFEST
    if not manifest.is_file():
        return {}
    for entry in json.loads(manifest.read_text()).get("videos", {}).values():
        src = Path(entry.get("source", ""))
        for folder in (src.parent, src.parent.parent):
            if (folder / "MANIFEST.csv").is_file():
                return manifest_identities(folder)
    return {}


def split_videos(names: Sequence[str], val_fraction: float = 0.1, seed: int = 0,
                 identities: Mapping[str, str] | None = None) -> tuple[list[str], list[str]]:
    """Split videos into train / validation with no identity in both: the person of
    ``identities`` (e.g. :func:`dataset_identities`, from the faces' MANIFEST.csv) where it
    names one, else :func:`identity_key` of the file name.

    Identity groups are shuffled with ``seed`` and moved to validation until it holds at
    least ``val_fraction`` of the videos; at least one group goes to each side when there
    are two or more groups and ``0 < val_fraction < 1``. Photo entries (``img_*``, one
    frame: no pair to validate on) always go to training and do not count, so adding
    photos to a dataset leaves the video split unchanged.

    Returns:
        ``(train, val)``, each sorted.
    Raises:
        ValueError: ``val_fraction`` outside [0, 1].
    """
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"val_fraction must be in [0, 1], got {val_fraction}")
    photos = sorted(n for n in set(names) if Path(n).name.startswith(PHOTO_PREFIX))
    videos = sorted(set(names) - set(photos))
    groups: dict[str, list[str]] = {}
    for n in videos:
        who = (identities or {}).get(n) or identity_key(n)
        groups.setdefault(who, []).append(n)
    keys = sorted(groups)
    np.random.default_rng(seed).shuffle(keys)
    want = val_fraction * len(videos)
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


def _label_frames(frames: Iterable[tuple[int, np.ndarray]], mesh: FaceMesh, size: int) -> dict[str, np.ndarray]:
    """The arrays of one ``.npz`` (see :func:`prepare_dataset`) for ``(index, BGR frame)``s."""
    crops, aus, lms, poses, idx = [], [], [], [], []
    for i, frame in frames:
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


def _process_video(path: Path, mesh: FaceMesh, size: int, frames_per_video: int) -> dict[str, np.ndarray]:
    return _label_frames(_read_frames(path, frames_per_video), mesh, size)


def _process_photo(path: Path, mesh: FaceMesh, size: int) -> dict[str, np.ndarray]:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"OpenCV cannot read photo {path}")
    return _label_frames([(0, image)], mesh, size)


def _find_sources(faces_dir: Path, videos: Iterable[str] | None,
                  photos: Iterable[str] | None) -> list[tuple[str, str, Path]]:
    """``(entry name, kind, path)`` of every video and photo to prepare, sorted by name."""
    if not faces_dir.is_dir():
        raise FileNotFoundError(f"faces folder not found: {faces_dir} (expected videos/ and/or images/ in it)")
    vdir, idir = faces_dir / "videos", faces_dir / "images"
    if vdir.is_dir() or idir.is_dir():
        video_dirs, photo_dirs = [vdir], [idir]
    else:  # a plain folder of videos and photos
        video_dirs, photo_dirs = [faces_dir], [faces_dir]

    def listing(dirs: list[Path], exts: tuple[str, ...], wanted: Iterable[str] | None, what: str) -> list[Path]:
        found = sorted(p for d in dirs if d.is_dir() for p in d.iterdir() if p.is_file() and p.suffix.lower() in exts)
        if wanted is None:
            return found
        keep = {Path(w).name for w in wanted}
        missing = sorted(keep - {p.name for p in found})
        if missing:
            raise FileNotFoundError(f"{what} not found in {', '.join(map(str, dirs))}: {', '.join(missing)}")
        return [p for p in found if p.name in keep]

    restricted = videos is not None or photos is not None
    vids = listing(video_dirs, VIDEO_EXTS, videos if videos is not None or not restricted else [], "videos")
    pics = listing(photo_dirs, IMAGE_EXTS, photos if photos is not None or not restricted else [], "photos")
    if not vids and not pics:
        where = f"{vdir} or {idir}" if video_dirs[0] != faces_dir else str(faces_dir)
        raise FileNotFoundError(f"no videos ({', '.join(VIDEO_EXTS)}) or photos ({', '.join(IMAGE_EXTS)}) in {where}")
    sources = [(p.stem, "video", p) for p in vids] + [(PHOTO_PREFIX + p.stem, "photo", p) for p in pics]
    seen: dict[str, Path] = {}
    for name, _, path in sources:
        if name in seen:
            raise ValueError(f"{seen[name]} and {path} would both be stored as {name}.npz; rename one")
        seen[name] = path
    return sorted(sources)


def prepare_dataset(faces_dir: str | os.PathLike, out_dir: str | os.PathLike, *, size: int = 128,
                    frames_per_video: int = 40, seed: int = 0, progress: bool = True,
                    videos: Iterable[str] | None = None, photos: Iterable[str] | None = None) -> dict:
    """Detect, align and label faces from every video and photo of ``faces_dir``.

    Sources: videos (``.mp4 .avi .mov .mkv .webm``) from ``faces_dir/videos/`` and photos
    (``.jpg .jpeg .png .webp .bmp``) from ``faces_dir/images/``; when neither subfolder
    exists, the videos and photos directly in ``faces_dir``.

    One ``<out_dir>/<name>.npz`` (compressed) per entry: ``<stem>`` for a video,
    ``img_<stem>`` for a photo (so the two cannot clash; each photo is its own identity for
    :func:`identity_key`). It holds, for the F frames with a face (a photo: F <= 1):
    ``crops`` uint8 ``[F, S, S, 3]`` **BGR** (OpenCV order, like the rest of fastwarp),
    ``aus`` float32 ``[F, 17]`` (:func:`fastwarp.face.estimate_aus` on the crop
    landmarks), ``landmarks`` float32 ``[F, 478, 2]`` in crop pixels, ``pose`` float32
    ``[F, 2]`` (yaw, pitch) in radians (:func:`fastwarp.face.head_pose`, approximate),
    ``frame_idx`` int32 ``[F]`` (index in the video; 0 for a photo). Video frames are
    sampled evenly; frames without a face are skipped; of several faces, the largest is
    kept. ``manifest.json`` (written atomically after each entry) maps, under its
    ``"videos"`` key (the name :func:`load_dataset` reads), each entry — video or photo —
    to ``{"frames": F, "source": path, "kind": "video" | "photo"}``.

    Resumable: entries whose ``.npz`` exists are skipped (each ``.npz`` is written to a
    temp file and renamed, so a crash never leaves a partial one).

    Args:
        faces_dir: folder with ``videos/`` and/or ``images/``, or with the files themselves.
        out_dir: output folder (created).
        size: crop side in pixels.
        frames_per_video: the most frames sampled per video.
        seed: recorded in the manifest; sampling itself is deterministic (evenly spaced).
        progress: show a tqdm bar.
        videos, photos: optional file names to restrict to; when either is given, only the
            named files are prepared (``videos=[...]`` alone prepares no photo).
    Returns:
        The manifest dict.
    Raises:
        FileNotFoundError: ``faces_dir`` missing, no video or photo found, or a named
            video/photo not found.
        ValueError: two files map to one entry name (e.g. ``a.jpg`` and ``a.png``), or
            OpenCV cannot read a photo.
        RuntimeError: OpenCV cannot open a video.
    """
    faces_dir, out_dir = Path(faces_dir), Path(out_dir)
    sources = _find_sources(faces_dir, videos, photos)
    out_dir.mkdir(parents=True, exist_ok=True)

    manifest_path = out_dir / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest.update({"size": size, "frames_per_video": frames_per_video, "seed": seed,
                     "color": "BGR", "au_names": list(AU_NAMES), "landmarks": "crop pixels [478, 2]",
                     "pose": "yaw, pitch radians (approximate)"})
    entries = manifest.setdefault("videos", {})

    from tqdm import tqdm

    bar = tqdm(sources, desc="faces", unit="file", disable=not progress)
    with FaceMesh(static_image_mode=True) as mesh:
        for name, kind, path in bar:
            npz = out_dir / f"{name}.npz"
            if npz.exists():
                if name not in entries:  # npz from an interrupted run before its manifest update
                    with np.load(npz) as z:
                        entries[name] = {"frames": int(len(z["frame_idx"])), "source": str(path), "kind": kind}
                entries[name].setdefault("kind", kind)  # manifests written before photos were supported
                continue
            bar.set_postfix_str(path.name)
            if kind == "video":
                arrays = _process_video(path, mesh, size, frames_per_video)
            else:
                arrays = _process_photo(path, mesh, size)
            with atomic_path(npz) as tmp:
                _savez(tmp, arrays)
            entries[name] = {"frames": int(len(arrays["frame_idx"])), "source": str(path), "kind": kind}
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


# --- GANimation layout ------------------------------------------------------------------

GANIMATION_AUS = "aus_openface.pkl"
GANIMATION_IMGS = "imgs"

# What a pickled dict of numpy arrays needs, under the module names numpy 1.x and 2.x
# (and Python 2, for GANimation's original pickles) write; nothing that can run code.
_PICKLE_ALLOWED: frozenset[tuple[str, str]] = frozenset(
    [(mod, name) for mod in ("numpy.core.multiarray", "numpy._core.multiarray") for name in ("_reconstruct", "scalar")]
    + [(mod, "_frombuffer") for mod in ("numpy.core.numeric", "numpy._core.numeric")]
    + [("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"), ("collections", "OrderedDict")]
    + [(mod, name) for mod in ("builtins", "__builtin__") for name in (
        "dict", "list", "tuple", "set", "frozenset", "str", "bytes", "bytearray", "int", "float", "complex",
        "bool", "unicode", "long")]
)


class _AuUnpickler(pickle.Unpickler):
    """Unpickler that resolves only :data:`_PICKLE_ALLOWED` (numpy arrays, dtypes, scalars,
    plain containers); any other global (``os.system``, ``eval``, ...) is refused before
    it could be called."""

    def __init__(self, file) -> None:
        # latin1: Python 2 pickles of numpy arrays store their bytes as str (numpy's advice).
        super().__init__(file, encoding="latin1")

    def find_class(self, module: str, name: str):
        if (module, name) not in _PICKLE_ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name} (an AU file may hold only numpy "
                                         "arrays and plain containers)")
        return super().find_class(module, name)

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids are not allowed in an AU file")


def load_au_pickle(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a GANimation ``aus_openface.pkl``: a pickled ``{image name: AU vector}`` dict.

    The pickle is read by a restricted unpickler (numpy arrays, dtypes and scalars, and
    builtin containers only), so a malicious file cannot run code (docs/design.md,
    "Checkpoints": never unpickle untrusted data blindly).

    Returns:
        ``{name: float32 [17]}`` with intensities clipped to 0..5, in :data:`AU_NAMES`
        order (OpenFace's, which GANimation uses).
    Raises:
        FileNotFoundError: no such file.
        ValueError: a refused class, a corrupt pickle, not a dict, a key that is not a
            string, or a value that is not 17 finite numbers (the message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"AU file not found: {path}")
    try:
        obj = _AuUnpickler(io.BytesIO(path.read_bytes())).load()
    except pickle.UnpicklingError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    except Exception as exc:  # EOFError, TypeError, ... from a corrupt stream
        raise ValueError(f"{path}: not a readable pickle ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a pickled dict {{image name: AU vector [{NUM_AUS}]}}, "
                         f"got {type(obj).__name__}")
    out: dict[str, np.ndarray] = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise ValueError(f"{path}: keys must be image names (str), got {type(key).__name__} {key!r}")
        try:
            vec = np.asarray(value, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: AUs of {key!r} are not numbers: {exc}") from exc
        if vec.shape != (NUM_AUS,):
            raise ValueError(f"{path}: AUs of {key!r} must have {NUM_AUS} values ({' '.join(AU_NAMES)}), "
                             f"got {vec.size}")
        if not np.isfinite(vec).all():
            raise ValueError(f"{path}: AUs of {key!r} are not finite: {vec}")
        out[key] = np.clip(vec, 0.0, 5.0).astype(np.float32)
    return out


def _read_ids(path: Path) -> set[str]:
    """Image names of a GANimation ``train_ids.csv`` / ``test_ids.csv`` (one per line; a
    line's first comma- or tab-separated field)."""
    ids = set()
    for line in path.read_text().splitlines():
        field = re.split(r"[,\t]", line.strip(), maxsplit=1)[0].strip()
        if field:
            ids.add(field)
    return ids


class GanimationDataset:
    """Face crops with OpenFace AU labels in GANimation's layout (Pumarola et al., ECCV 2018,
    https://github.com/albertpumarola/GANimation)::

        root/imgs/*.jpg           face crops, any size (GANimation: 128x128)
        root/aus_openface.pkl     {image stem or name: float [17]} OpenFace AU intensities
        root/train_ids.csv        optional: training image names, one per line
        root/test_ids.csv         optional: test image names, one per line

    The AUs are in :data:`fastwarp.au.AU_NAMES` order (OpenFace's: AU01 ... AU45). Images
    load lazily (:meth:`crops`); only names and AUs are held in memory.

    Args:
        root: the dataset folder.
        size: crop side ``S`` the images are resized to (``cv2.INTER_AREA``) when they differ.
    Attributes:
        names (list[str]): file names (in ``imgs/``) of the images that exist and have AUs,
            sorted; images without AUs and AUs without an image are left out.
        aus (np.ndarray): float32 ``[N, 17]`` intensities 0..5 (clipped), row i for ``names[i]``.
    Raises:
        FileNotFoundError: no ``imgs/`` folder or no ``aus_openface.pkl``.
        ValueError: a bad AU file (see :func:`load_au_pickle`), no image with AUs, or a bad ``size``.
    """

    def __init__(self, root: str | os.PathLike, size: int = 128) -> None:
        self.root = Path(root)
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"size must be a positive int, got {size!r}")
        self.size = int(size)
        self.image_dir = self.root / GANIMATION_IMGS
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"no {GANIMATION_IMGS}/ folder in {self.root} (GANimation layout: imgs/ and "
                                    f"{GANIMATION_AUS})")
        table = load_au_pickle(self.root / GANIMATION_AUS)
        names, aus = [], []
        for p in sorted(self.image_dir.iterdir()):
            if not (p.is_file() and p.suffix.lower() in IMAGE_EXTS):
                continue
            vec = table.get(p.name, table.get(p.stem))
            if vec is not None:
                names.append(p.name)
                aus.append(vec)
        if not names:
            raise ValueError(f"no image of {self.image_dir} has AUs in {self.root / GANIMATION_AUS} "
                             f"({len(table)} entries, e.g. {sorted(table)[:3]})")
        self.names: list[str] = names
        self.aus: np.ndarray = np.stack(aus).astype(np.float32)

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"GanimationDataset(root={str(self.root)!r}, size={self.size}, images={len(self)})"

    def crops(self, idx: Sequence[int]) -> np.ndarray:
        """Read images ``idx`` (indices into :attr:`names`) from disk.

        Returns:
            uint8 ``[B, S, S, 3]`` **BGR** (``cv2.imread``), resized with ``cv2.INTER_AREA``
            where an image is not ``S x S``.
        Raises:
            IndexError: an index outside ``[-N, N)``.
            ValueError: OpenCV cannot read an image (named).
        """
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        n = len(self.names)
        bad = idx[(idx < -n) | (idx >= n)]
        if bad.size:
            raise IndexError(f"image indices out of range for {n} images: {bad[:5].tolist()}")
        out = np.empty((len(idx), self.size, self.size, 3), np.uint8)
        for k, i in enumerate(idx):
            path = self.image_dir / self.names[i]
            img = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if img is None:
                raise ValueError(f"OpenCV cannot read image {path}")
            if img.shape[:2] != (self.size, self.size):
                img = cv2.resize(img, (self.size, self.size), interpolation=cv2.INTER_AREA)
            out[k] = img
        return out

    def split(self, val_fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Train / validation indices into :attr:`names`.

        With ``train_ids.csv`` and/or ``test_ids.csv`` in the root (GANimation's split; ids
        match an image by file name or stem), validation is the test ids and training the
        train ids; where only one file exists, the other side is every remaining image; with
        both, images in neither are left out. ``val_fraction`` and ``seed`` are then unused.
        Without them, a seeded random split by image: the photos carry no identity label,
        so **each image counts as its own identity** (one person's images may fall on both
        sides). Validation then holds ``round(val_fraction * N)`` images, at least one (and
        at least one left for training) when ``0 < val_fraction < 1`` and ``N >= 2``.

        Returns:
            ``(train_idx, val_idx)``: sorted int64 arrays, disjoint.
        Raises:
            ValueError: ``val_fraction`` outside [0, 1].
        """
        if not 0.0 <= val_fraction <= 1.0:
            raise ValueError(f"val_fraction must be in [0, 1], got {val_fraction}")
        train_csv, test_csv = self.root / "train_ids.csv", self.root / "test_ids.csv"
        n = len(self.names)
        if train_csv.is_file() or test_csv.is_file():
            def member(ids: set[str]) -> np.ndarray:
                return np.array([nm in ids or Path(nm).stem in ids for nm in self.names], dtype=bool)

            val = member(_read_ids(test_csv)) if test_csv.is_file() else None
            train = member(_read_ids(train_csv)) if train_csv.is_file() else None
            if val is None:
                val = ~train
            if train is None:
                train = ~val
            train &= ~val  # an image listed in both counts as test
            return np.flatnonzero(train).astype(np.int64), np.flatnonzero(val).astype(np.int64)
        n_val = int(round(val_fraction * n))
        if 0.0 < val_fraction < 1.0 and n >= 2:
            n_val = min(max(n_val, 1), n - 1)
        perm = np.random.default_rng(seed).permutation(n)
        return np.sort(perm[n_val:]).astype(np.int64), np.sort(perm[:n_val]).astype(np.int64)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m training.data", description=__doc__.splitlines()[0])
    ap.add_argument("--faces", required=True,
                    help="faces folder with videos/ and/or images/, or with the videos and photos themselves "
                         "(e.g. ../shared/data/faces)")
    ap.add_argument("--out", required=True, help="output folder (e.g. .cache/dataset128)")
    ap.add_argument("--size", type=int, default=128, help="crop side in pixels")
    ap.add_argument("--frames-per-video", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    manifest = prepare_dataset(args.faces, args.out, size=args.size, frames_per_video=args.frames_per_video,
                               seed=args.seed, progress=not args.no_progress)
    entries = manifest["videos"].values()
    kinds = [e.get("kind", "video") for e in entries]
    n = sum(e["frames"] for e in entries)
    print(f"{kinds.count('video')} videos, {kinds.count('photo')} photos, {n} frames -> {args.out} "
          f"in {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()

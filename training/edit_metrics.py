"""Edit response, identity and control linearity on photos (docs/design.md, "Evaluation
protocol": edit response on photos, identity, control linearity).

**Edit response.** Five single-purpose edits (:data:`FIVE_EDITS`) run through
:meth:`fastwarp.expression_editor.ExpressionEditor.edit` on each photo; one MediaPipe
FaceMesh (static image mode, separate from the editor's) finds the landmarks of the input
and of the output, and one landmark measure per edit compares them. Every measure is in
units of that face's inter-ocular distance (IOD: outer eye corners 33-263,
:func:`fastwarp.face.inter_ocular_distance`), in the eye-line frame of
:func:`fastwarp.face.aus.eye_line_frame`, so it is invariant to in-plane rotation, uniform
scale and translation of the face (:func:`landmark_measures`):

- ``mouth_width``: mouth-corner distance 61-291 (smile; change in %).
- ``lip_gap``: inner-lip gap, mean of the pairs 13-14, 82-87, 312-317 (mouth open; change
  in IOD).
- ``brow_height``: mean height of the brow landmarks (both brow polygons) above the eye line
  (brows up, frown; change in %).
- ``eyelid_gap``: mean upper-to-lower lid distance of the pairs (159, 145), (158, 153),
  (160, 144), (386, 374), (385, 380), (387, 373) (blink; change in %).

"Change in %" is ``100 * (after - before) / before``; "change in IOD" is ``after - before``.
Photos where FaceMesh finds no face in the input are counted (``no_face``); photos whose
edited output has no face are listed per edit (``lost``), never dropped silently.

**Real faces** (:func:`real_ranges`): the same measures on the videos of the face set: per
video, the change from its most neutral sampled frame (lowest sum of the visible geometric
AUs, :func:`fastwarp.face.estimate_aus_batch`) to its most extreme frame for the edit's
direction (the 95th percentile of the measure across the sampled frames, the 5th for a
decreasing edit), then the distribution of that change across videos.

**Identity** (:class:`FaceEmbedder`): Euclidean distance between dlib's 128-D face
descriptors (``dlib_face_recognition_resnet_model_v1``: D. King's 29-layer ResNet, after
He et al. 2016, trained with a pairwise metric loss; 99.38 % on LFW) of a photo and its
edit, the face placed by dlib's 5-point shape predictor inside a box derived from the
MediaPipe landmarks (:func:`dlib_box`). Both model files come from the
``face_recognition_models`` package. dlib's usual "same person" threshold is 0.6. A
training/evaluation extra (``requirements-eval.txt``): fastwarp's runtime never imports dlib.

**Linearity** (:func:`linearity`): one AU set absolutely to 0, 1, ..., 5 (the others at the
face's current estimate); the response is the geometric estimator's reading of that AU on
the output's landmarks; Pearson r between level and response, and monotonicity, per photo;
also r of its unclipped reading, which sees a brow raised below the estimator's neutral.

CLI::

    python -m training.edit_metrics --faces ../shared/data/faces --weights base [--photos N] [--out DIR]

writes ``table.md``, ``metrics.json`` and ``sheet.jpg`` (one row per photo: input, then the
five edits) atomically.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from fastwarp._io import atomic_path
from fastwarp.au import AU_INDEX, AU_MAX
from fastwarp.face import VISIBLE_AUS, FaceMesh, estimate_aus, estimate_aus_batch
from fastwarp.face.aus import _EYE_VERTICAL_PAIRS, eye_line_frame, geometric_features

__all__ = [
    "EditSpec", "FIVE_EDITS", "MEASURES", "landmark_measures", "measure_change", "measure_edits", "video_change",
    "real_ranges", "FaceEmbedder", "identity_distance", "identity_distances", "identity_references",
    "pearson", "is_monotonic", "linearity", "format_edit_table", "format_identity_references",
    "format_linearity_table", "write_edit_sheet", "list_photos", "main",
]

AUEdit = tuple[str, float, bool]

#: The landmark measures of :func:`landmark_measures` and what they measure.
MEASURES: dict[str, str] = {
    "mouth_width": "mouth-corner distance (61-291)",
    "lip_gap": "inner-lip gap (mean of 13-14, 82-87, 312-317)",
    "brow_height": "mean brow height above the eye line",
    "eyelid_gap": "eyelid gap (mean of 6 upper-lower lid pairs)",
}

_DEFAULT_CACHE = Path(".cache/dataset128")
_IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


@dataclass(frozen=True)
class EditSpec:
    """One single-purpose edit and how its response is judged.

    Attributes:
        name: key in results (``"smile"``).
        edits: ``(AU name, value, relative)`` triples for :meth:`ExpressionEditor.edit`.
        measure: key of :data:`MEASURES`.
        relative: the change is reported in % of the input's value (else in IOD).
        target: the median change the edit must reach, signed (``-12`` = at least 12 %
            down); its sign is the edit's direction.
        real: what real faces do, for the table (from the issue).
        showing: regular expression (case-insensitive) matching the face set's
            ``MANIFEST.csv`` description (the ``notes`` text before the first ``" | "``) of
            videos that show this expression, for :func:`real_ranges`' ``showing`` subset.
    """

    name: str
    edits: tuple[AUEdit, ...]
    measure: str
    relative: bool
    target: float
    real: str = ""
    showing: str = ""

    @property
    def direction(self) -> int:
        return 1 if self.target >= 0 else -1

    @property
    def unit(self) -> str:
        return "%" if self.relative else "IOD"

    @property
    def au_args(self) -> str:
        """The edit as ``fastwarp edit`` arguments: ``--au AU12=+2.5``."""
        return " ".join(f"--au {n}={'+' if rel and v >= 0 else ''}{v:g}" for n, v, rel in self.edits)

    def meets(self, change: float | None) -> bool:
        """Whether ``change`` (in the edit's unit) reaches the target in its direction."""
        return change is not None and math.isfinite(change) and self.direction * change >= abs(self.target)


FIVE_EDITS: tuple[EditSpec, ...] = (
    EditSpec("smile", (("AU12", 2.5, True),), "mouth_width", True, 15.0, "+16 % to +35 %",
             r"smil|laugh|happy|grin"),
    EditSpec("open", (("AU25", 2.0, True), ("AU26", 2.5, True)), "lip_gap", False, 0.25, "up to +0.4 to +0.57 IOD",
             r"mouth open|open mouth|mouth wide|wide open mouth|wide mouth|o-mouth|shout|surpris"),
    EditSpec("brows_up", (("AU01", 2.5, True), ("AU02", 2.5, True)), "brow_height", True, 15.0, "+21 % (surprise)",
             r"brow raise|raised brows|surpris|wide eyes"),
    EditSpec("frown", (("AU04", 3.0, True),), "brow_height", True, -12.0, "-20 % (anger)", r"angry|anger|frown"),
    EditSpec("blink", (("AU45", 5.0, False),), "eyelid_gap", True, -70.0, "-85 % (closed)",
             r"blink|eyes? clos|squeezed shut"),
)
"""The edits of the per-edit table (issue 12), in sheet column order."""


# --- measures ----------------------------------------------------------------------------------

def landmark_measures(landmarks: np.ndarray) -> dict[str, np.ndarray | float]:
    """The edit measures of :data:`MEASURES`, in inter-ocular units.

    Built on :func:`fastwarp.face.aus.geometric_features` (``mouth_w``, ``gap``,
    ``brow_all``) and :func:`~fastwarp.face.aus.eye_line_frame` (the lid pairs), so the
    values are invariant to in-plane rotation, uniform scale and translation.

    Args:
        landmarks: ``[478, 2 or 3]`` or ``[N, 478, 2 or 3]`` FaceMesh landmarks, pixels of
            any frame (z ignored).
    Returns:
        ``{measure: float}`` for one face, ``{measure: float64 [N]}`` for a batch.
    Raises:
        ValueError: wrong shape, non-finite values or coincident eye corners.
    """
    lm = np.asarray(landmarks)
    single = lm.ndim == 2
    batch = lm[None] if single else lm
    feats = geometric_features(batch)
    q = eye_line_frame(batch)
    lids = np.mean([np.linalg.norm(q[:, a] - q[:, b], axis=-1) for a, b in _EYE_VERTICAL_PAIRS], axis=0)
    out = {"mouth_width": feats["mouth_w"], "lip_gap": feats["gap"], "brow_height": feats["brow_all"],
           "eyelid_gap": lids}
    return {k: float(v[0]) for k, v in out.items()} if single else out


def measure_change(before: float, after: float, relative: bool) -> float:
    """``100 * (after - before) / before`` (%) if ``relative`` else ``after - before`` (the
    measure's unit, IOD). A relative change from a value under 1e-6 IOD (e.g. eyes already
    shut) is NaN: there is nothing to take a percentage of."""
    if relative:
        return 100.0 * (after - before) / before if before > 1e-6 else math.nan
    return after - before


def _stats(values: Sequence[float]) -> dict[str, float | int | None]:
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if not len(v):
        return {"n": 0, "median": None, "p25": None, "p75": None}
    return {"n": int(len(v)), "median": float(np.median(v)), "p25": float(np.percentile(v, 25)),
            "p75": float(np.percentile(v, 75))}


# --- photos ------------------------------------------------------------------------------------

def list_photos(faces_dir: str | Path, n: int | None = None) -> list[Path]:
    """The photos of ``faces_dir/images`` sorted by name; with ``n``, ``n`` of them evenly
    spaced over that order (the names group by source, so this mixes sources).

    Raises:
        FileNotFoundError: no ``images`` folder or no photo in it.
    """
    folder = Path(faces_dir) / "images"
    if not folder.is_dir():
        raise FileNotFoundError(f"no images folder in {faces_dir}")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_EXTS)
    if not paths:
        raise FileNotFoundError(f"no photos ({', '.join(_IMAGE_EXTS)}) in {folder}")
    if n is not None and n < len(paths):
        pick = np.unique(np.linspace(0, len(paths) - 1, max(n, 1)).round().astype(int))
        paths = [paths[i] for i in pick]
    return paths


def _iter_photos(photos: Mapping[str, np.ndarray] | Sequence[str | Path]):
    """``(name, BGR image)`` for a ``{name: image}`` mapping or a list of paths (read lazily)."""
    if isinstance(photos, Mapping):
        yield from photos.items()
        return
    for p in photos:
        p = Path(p)
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"OpenCV cannot read photo {p}")
        yield p.stem, img


#: Faces the measuring FaceMesh looks for in a photo: the largest is the one the editor edits,
#: and in its output the same face is found again by place (:func:`_detect_near`). With one face
#: MediaPipe returns the face it detects first, which in a photo of two people can be the other
#: person after the edit (fr_two_people: identity 0.878 against its own edit).
MEASURE_FACES = 4


def _detect(mesh: FaceMesh, image: np.ndarray) -> np.ndarray | None:
    """The largest face (``FaceMesh.detect`` sorts largest first), or None."""
    found = mesh.detect(image)
    return found[0] if found else None


def _detect_near(mesh: FaceMesh, image: np.ndarray, reference: np.ndarray) -> np.ndarray | None:
    """The face of ``image`` whose landmark centre is nearest to ``reference``'s (the same face
    in an edited photo: an edit moves a face's centre by a small fraction of its size), or None."""
    found = mesh.detect(image)
    if not found:
        return None
    centre = np.asarray(reference)[:, :2].mean(0)
    return min(found, key=lambda lm: float(np.linalg.norm(np.asarray(lm)[:, :2].mean(0) - centre)))


def measure_edits(editor, photos: Mapping[str, np.ndarray] | Sequence[str | Path],
                  edits: Sequence[EditSpec] = FIVE_EDITS, *, mesh: FaceMesh | None = None,
                  embedder: "FaceEmbedder | None" = None, keep_images: Iterable[str] = (),
                  progress: bool = True) -> dict:
    """Run each edit on each photo and measure its landmark response.

    Args:
        editor: an :class:`~fastwarp.expression_editor.ExpressionEditor` (anything with
            ``edit(frame_bgr, edits) -> FrameEdit``).
        photos: ``{name: uint8 BGR [H, W, 3]}`` or photo paths (named by their stem).
        edits: the edits (default :data:`FIVE_EDITS`).
        mesh: the measuring FaceMesh (static image mode); default a new one looking for up to
            :data:`MEASURE_FACES` faces, closed after. The photo's largest face is measured (the
            one the editor edits), and in each output the face nearest it (:func:`_detect_near`).
        embedder: a :class:`FaceEmbedder` to add the identity distance photo vs edit
            (``identity``); None skips it.
        keep_images: names of photos whose input, face box and edited frames are kept in
            ``result["images"]`` (for :func:`write_edit_sheet`; not JSON).
        progress: tqdm bar over the photos.
    Returns:
        ``{"edits": {edit: {"au", "measure", "unit", "target", "real"}},
        "photos": {photo: {"face": bool, "before": {measure: IOD}, "edits": {edit: row}}},
        "summary": {edit: {"n", "median", "p25", "p75", "median_delta_iod",
        "median_identity", "lost": [photo, ...], "clipped": [photo, ...], "raised": [photo, ...],
        "meets": bool}},
        "no_face": [photo, ...],
        "n_photos": int}`` where a row is ``{"face_found": bool, "before", "after" (IOD),
        "change" (% or IOD, see the edit's unit), "delta_iod", "au_change" ({AU: target -
        current}), "identity" (dlib distance, if measured)}``; a row whose output has no
        face holds ``face_found: False`` and ``reason`` only. Medians are over the photos
        measured (``n``); NaN changes (relative change of a zero measure) are left out.
        ``clipped`` names the photos where a relative AU change was cut short by the 0..5
        range (e.g. AU12=+2.5 on a face already at 4 moves it by 1); ``raised``, those where
        it went further than asked (the editor's AU consistency: AU26 +2.5 from closed lips
        raises AU25 to the gap that jaw drop opens, :mod:`fastwarp.face.aus`).
    Raises:
        ValueError: a photo path OpenCV cannot read.
    """
    own_mesh = mesh is None
    mesh = mesh or FaceMesh(static_image_mode=True, max_faces=MEASURE_FACES)
    keep = set(keep_images)
    result: dict[str, Any] = {
        "edits": {e.name: {"au": e.au_args, "measure": e.measure, "unit": e.unit, "target": e.target,
                           "real": e.real} for e in edits},
        "photos": {}, "summary": {}, "no_face": [], "n_photos": 0,
    }
    images: dict[str, dict] = {}
    try:
        bar = tqdm(_iter_photos(photos), total=len(photos), desc="edits", unit="photo", disable=not progress)
        for name, image in bar:
            result["n_photos"] += 1
            lm_in = _detect(mesh, image)
            if lm_in is None:
                result["no_face"].append(name)
                result["photos"][name] = {"face": False}
                continue
            before = landmark_measures(lm_in)
            entry = {"face": True, "before": before, "edits": {}}
            desc_in = embedder.embed(image, lm_in) if embedder is not None else None
            kept = {"input": image, "box": _face_box(lm_in), "outputs": {}} if name in keep else None
            for spec in edits:
                res = editor.edit(image, list(spec.edits))
                if kept is not None:
                    kept["outputs"][spec.name] = res.frame if res.face_found else None
                if not res.face_found:
                    entry["edits"][spec.name] = {"face_found": False, "reason": "the editor found no face"}
                    continue
                lm_out = _detect_near(mesh, res.frame, lm_in)
                if lm_out is None:
                    entry["edits"][spec.name] = {"face_found": False, "reason": "no face in the edited photo"}
                    continue
                after = landmark_measures(lm_out)
                b, a = before[spec.measure], after[spec.measure]
                row = {"face_found": True, "before": b, "after": a, "change": measure_change(b, a, spec.relative),
                       "delta_iod": a - b,
                       "au_change": {n: float(res.target_aus[AU_INDEX[n]] - res.current_aus[AU_INDEX[n]])
                                     for n, _, _ in spec.edits}}
                if embedder is not None:
                    row["identity"] = float(np.linalg.norm(embedder.embed(res.frame, lm_out) - desc_in))
                entry["edits"][spec.name] = row
            result["photos"][name] = entry
            if kept is not None:
                images[name] = kept
    finally:
        if own_mesh:
            mesh.close()
    for spec in edits:
        rows = {p: e["edits"][spec.name] for p, e in result["photos"].items() if e["face"]}
        ok = [r for r in rows.values() if r["face_found"]]
        s = _stats([r["change"] for r in ok])
        s["median_delta_iod"] = _stats([r["delta_iod"] for r in ok])["median"]
        s["median_identity"] = _stats([r["identity"] for r in ok if "identity" in r])["median"]
        s["lost"] = [p for p, r in rows.items() if not r["face_found"]]
        # Relative edits are clipped to 0..5: name the photos that got less than asked; and those
        # where an AU moved further than asked (the AU consistency rules: a jaw drop, AU26, needs
        # the lips apart, AU25, at the gap it opens; fastwarp.face.aus).
        s["clipped"] = [p for p, r in rows.items() if r["face_found"] and any(
            rel and (v - r["au_change"][n]) * np.sign(v) > 0.01 for n, v, rel in spec.edits)]
        s["raised"] = [p for p, r in rows.items() if r["face_found"] and any(
            rel and (r["au_change"][n] - v) * np.sign(v) > 0.01 for n, v, rel in spec.edits)]
        s["meets"] = spec.meets(s["median"])
        result["summary"][spec.name] = s
    if keep:
        result["images"] = images
    return result


# --- real faces --------------------------------------------------------------------------------

def video_change(landmarks: np.ndarray, spec: EditSpec, percentile: float = 95.0) -> tuple[float, int]:
    """How far one video's face moves along ``spec``'s measure: from its most neutral frame
    to its extreme in ``spec``'s direction.

    The neutral frame has the lowest sum of the visible geometric AUs
    (:func:`fastwarp.face.estimate_aus_batch` over :data:`fastwarp.face.VISIBLE_AUS`); the
    extreme is the ``percentile``-th percentile of the measure over the frames (the
    ``100 - percentile``-th for a decreasing edit), so one mis-detected frame does not set it.

    Args:
        landmarks: ``[F, 478, 2 or 3]`` of one video, pixels of any frame (full frames or
            aligned crops: the measures are similarity invariant), ``F >= 1``.
        spec: the edit whose measure and direction apply.
        percentile: in 50..100.
    Returns:
        ``(change in the edit's unit, index of the neutral frame)``.
    Raises:
        ValueError: no frame, bad shapes or a percentile outside 50..100.
    """
    lm = np.asarray(landmarks)
    if lm.ndim != 3 or lm.shape[0] < 1:
        raise ValueError(f"landmarks must have shape [F >= 1, 478, 2 or 3], got {lm.shape}")
    if not 50.0 <= percentile <= 100.0:
        raise ValueError(f"percentile must be in 50..100, got {percentile}")
    aus = estimate_aus_batch(lm)[:, [AU_INDEX[a] for a in VISIBLE_AUS]]
    neutral = int(np.argmin(aus.sum(axis=1)))
    values = landmark_measures(lm)[spec.measure]
    extreme = float(np.percentile(values, percentile if spec.direction > 0 else 100.0 - percentile))
    return measure_change(float(values[neutral]), extreme, spec.relative), neutral


def _read_manifest(faces_dir: Path | None) -> dict[str, dict[str, str]]:
    """``{file stem: row}`` of ``faces_dir/MANIFEST.csv`` (empty without one)."""
    path = faces_dir / "MANIFEST.csv" if faces_dir is not None else None
    if path is None or not path.is_file():
        return {}
    with open(path, newline="") as f:
        return {Path(r["file"]).stem: r for r in csv.DictReader(f)}


def _cache_videos(cache: Path) -> dict[str, np.ndarray]:
    """``{video: landmarks [F, 478, 2]}`` of the video entries of a dataset cache
    (:func:`training.data.prepare_dataset`: ``manifest.json`` plus one ``.npz`` each)."""
    manifest = json.loads((cache / "manifest.json").read_text())
    out = {}
    for name, entry in sorted(manifest.get("videos", {}).items()):
        if entry.get("kind", "video") != "video":
            continue
        with np.load(cache / f"{name}.npz") as z:
            if len(z["landmarks"]):
                out[name] = z["landmarks"]
    return out


def _decoded_videos(faces_dir: Path, manifest: Mapping[str, Mapping[str, str]], frames: int, mesh: FaceMesh,
                    progress: bool) -> dict[str, np.ndarray]:
    from .data import _read_frames  # evenly spaced frames, decoded sequentially

    if manifest:
        paths = [faces_dir / r["file"] for r in manifest.values() if r.get("kind", "video") == "video"]
    else:
        paths = sorted((faces_dir / "videos").glob("*.mp4"))
    out = {}
    for path in tqdm(sorted(paths), desc="videos", unit="video", disable=not progress):
        found = [_detect(mesh, frame) for _, frame in _read_frames(path, frames)]
        lms = [f[:, :2] for f in found if f is not None]
        if lms:
            out[path.stem] = np.stack(lms)
    return out


def _spread(named: Sequence[tuple[str, float]], direction: int) -> dict:
    """Distribution of per-video changes in ``direction`` (see :func:`real_ranges`)."""
    named = [(n, c) for n, c in named if math.isfinite(c)]
    if not named:
        return {"n": 0, "median": None, "p75": None, "p90": None, "max": None, "max_video": None}
    signed = np.array([direction * c for _, c in named], dtype=np.float64)
    best = int(np.argmax(signed))
    return {"n": len(named), "median": direction * float(np.median(signed)),
            "p75": direction * float(np.percentile(signed, 75)), "p90": direction * float(np.percentile(signed, 90)),
            "max": named[best][1], "max_video": named[best][0]}


def real_ranges(faces_dir: str | Path | None = None, *, cache: str | Path | None = None,
                edits: Sequence[EditSpec] = FIVE_EDITS, frames: int = 40, percentile: float = 95.0,
                mesh: FaceMesh | None = None, progress: bool = True) -> dict:
    """How far real faces move along each edit's measure, over the videos of the face set.

    Per video :func:`video_change` (neutral frame → extreme frame), then the distribution
    across videos in the edit's direction: ``median``, ``p75`` and ``p90`` are percentiles
    of ``direction * change`` times ``direction`` (for a decreasing edit ``p90`` is the
    10th percentile of the signed change: 90 % of videos move less far), and ``max`` the
    farthest. Talking moves the lips and brows too, so over all videos these mix expression
    and speech; ``showing`` repeats them over the videos whose manifest description names
    the expression (:attr:`EditSpec.showing`).

    Args:
        faces_dir: the face set (``videos/*.mp4`` and ``MANIFEST.csv``, whose ``identity``
            and ``notes`` columns label the videos); used for the videos when ``cache`` is
            None.
        cache: a dataset folder of :mod:`training.data` (``manifest.json``, ``<video>.npz``
            with ``landmarks`` ``[F, 478, 2]`` in crop pixels): its video entries are used
            instead of decoding the videos (much faster; photo entries are skipped).
        edits: the edits (default :data:`FIVE_EDITS`).
        frames: evenly spaced frames decoded per video (videos only; the cache has its own).
        percentile: of the extreme frame, see :func:`video_change`.
        mesh: FaceMesh for decoded videos (static mode); default a new one.
    Returns:
        ``{"source": "cache" | "videos", "path": str, "n_videos": int, "percentile": float,
        "edits": {edit: {"n", "median", "p75", "p90", "max", "max_video", "unit", "showing": {"n",
        "median", "p75", "p90", "max", "max_video", "pattern", "videos"}}},
        "videos": {video: {"identity", "notes", "frames", "neutral_frame",
        "changes": {edit: change}}}}``.
    Raises:
        ValueError: neither ``faces_dir`` nor ``cache``; FileNotFoundError: a missing folder
            or no video with a face.
    """
    if faces_dir is None and cache is None:
        raise ValueError("real_ranges needs faces_dir or cache")
    faces = Path(faces_dir) if faces_dir is not None else None
    manifest = _read_manifest(faces)
    if cache is not None:
        cache = Path(cache)
        if not (cache / "manifest.json").is_file():
            raise FileNotFoundError(f"no manifest.json in the dataset cache {cache}")
        videos, source, where = _cache_videos(cache), "cache", cache
    else:
        if not (faces / "videos").is_dir():
            raise FileNotFoundError(f"no videos folder in {faces}")
        own = mesh is None
        mesh = mesh or FaceMesh(static_image_mode=True)
        try:
            videos = _decoded_videos(faces, manifest, frames, mesh, progress)
        finally:
            if own:
                mesh.close()
        source, where = "videos", faces / "videos"
    if not videos:
        raise FileNotFoundError(f"no video with a detected face in {where}")
    per_video = {}
    for name, lm in videos.items():
        row = manifest.get(name, {})
        changes, neutral = {}, 0
        for spec in edits:
            changes[spec.name], neutral = video_change(lm, spec, percentile)
        per_video[name] = {"identity": row.get("identity", ""), "notes": row.get("notes", ""),
                           "frames": int(len(lm)), "neutral_frame": neutral, "changes": changes}
    stats = {}
    for spec in edits:
        named = [(n, v["changes"][spec.name]) for n, v in per_video.items()]
        stats[spec.name] = _spread(named, spec.direction)
        stats[spec.name]["unit"] = spec.unit
        if spec.showing:
            pattern = re.compile(spec.showing, re.IGNORECASE)
            shows = [(n, c) for n, c in named if pattern.search(per_video[n]["notes"].split(" | ")[0])]
            stats[spec.name]["showing"] = {**_spread(shows, spec.direction), "pattern": spec.showing,
                                           "videos": [n for n, _ in shows]}
    return {"source": source, "path": str(where), "n_videos": len(per_video), "percentile": percentile,
            "edits": stats, "videos": per_video}


# --- identity (dlib: a training/evaluation extra) ---------------------------------------------

# dlib's HOG detector box relative to MediaPipe landmarks, in IOD units of the eye-line
# frame (median over the 50 photos of shared/data/faces where both find the face; spread
# about 0.1 IOD): a square of side 1.68 centred 0.375 below the eye-corner midpoint. The
# 5-point shape predictor was trained on HOG boxes, so its box should look like one.
_DLIB_BOX_SIDE, _DLIB_BOX_DOWN = 1.68, 0.375


def _model_file(name: str) -> Path:
    """A model file of the ``face_recognition_models`` package, found without importing it
    (its ``__init__`` imports ``pkg_resources``, which setuptools >= 81 no longer has)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("face_recognition_models is not installed: pip install -r requirements-eval.txt")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / name
    if not path.is_file():
        raise FileNotFoundError(f"face_recognition_models has no {name} (looked at {path})")
    return path


def dlib_box(landmarks: np.ndarray) -> tuple[int, int, int, int]:
    """``(left, top, right, bottom)`` pixels: the axis-aligned box dlib's HOG face detector
    would draw around a face, from its MediaPipe landmarks (``[478, 2 or 3]``, pixels).

    Why not the HOG detector itself: it misses faces MediaPipe finds (``lp_d8_img``, 1 of
    the 51 photos of the face set), and every face measured here already has landmarks. On
    17 of the photos (every third) the descriptors from this box and from HOG's own box
    differ by 0.02-0.10, far below the 0.6 same-person threshold."""
    lm = np.asarray(landmarks, dtype=np.float64)[:, :2]
    right, left = lm[33], lm[263]
    iod = float(np.linalg.norm(left - right))
    ex = (left - right) / iod
    down = np.array([-ex[1], ex[0]])  # perpendicular to the eye line, towards the chin
    c = 0.5 * (right + left) + _DLIB_BOX_DOWN * iod * down
    h = 0.5 * _DLIB_BOX_SIDE * iod
    return int(round(c[0] - h)), int(round(c[1] - h)), int(round(c[0] + h)), int(round(c[1] + h))


class FaceEmbedder:
    """dlib's face-recognition descriptor of the largest face of a photo.

    Box: from MediaPipe landmarks (:func:`dlib_box`, calibrated to dlib's HOG boxes; given,
    or found by a static-mode :class:`fastwarp.face.FaceMesh` of its own), then
    ``shape_predictor_5_face_landmarks`` places the 5 alignment points and
    ``dlib_face_recognition_resnet_model_v1`` gives the 128-D descriptor
    (``compute_face_descriptor``, no jitter: deterministic).

    Raises:
        ImportError: dlib or face_recognition_models is missing (``pip install -r
            requirements-eval.txt``).
    """

    def __init__(self, mesh: FaceMesh | None = None) -> None:
        import dlib  # an evaluation extra, never imported by fastwarp itself

        self._dlib = dlib
        self._shape = dlib.shape_predictor(str(_model_file("shape_predictor_5_face_landmarks.dat")))
        self._net = dlib.face_recognition_model_v1(str(_model_file("dlib_face_recognition_resnet_model_v1.dat")))
        self._mesh, self._own_mesh = mesh, mesh is None

    def embed(self, image_bgr: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray | None:
        """float64 ``[128]`` descriptor of the face in ``image_bgr`` (uint8 BGR
        ``[H, W, 3]``), or None where no face is found. ``landmarks``: its MediaPipe
        landmarks if already known (``[478, 2 or 3]``, pixels)."""
        if landmarks is None:
            if self._mesh is None:
                self._mesh = FaceMesh(static_image_mode=True)
            landmarks = _detect(self._mesh, image_bgr)
            if landmarks is None:
                return None
        rgb = np.ascontiguousarray(image_bgr[..., ::-1])
        rect = self._dlib.rectangle(*dlib_box(landmarks))
        shape = self._shape(rgb, rect)
        return np.asarray(self._net.compute_face_descriptor(rgb, shape), dtype=np.float64)

    def distance(self, image_a: np.ndarray, image_b: np.ndarray, landmarks_a: np.ndarray | None = None,
                 landmarks_b: np.ndarray | None = None) -> float:
        """Euclidean distance of the two faces' descriptors (0 = same descriptor; dlib
        calls < 0.6 the same person); NaN where either image has no face."""
        a, b = self.embed(image_a, landmarks_a), self.embed(image_b, landmarks_b)
        return math.nan if a is None or b is None else float(np.linalg.norm(a - b))

    def close(self) -> None:
        if self._own_mesh and self._mesh is not None:
            self._mesh.close()
            self._mesh = None

    def __enter__(self) -> "FaceEmbedder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def identity_distance(image_a_bgr: np.ndarray, image_b_bgr: np.ndarray, embedder: FaceEmbedder | None = None) -> float:
    """dlib descriptor distance between the largest faces of two uint8 BGR images (see
    :class:`FaceEmbedder`); NaN where either has no face. Builds (and closes) an embedder
    unless one is given: pass one for many calls, or use :func:`identity_distances`."""
    if embedder is not None:
        return embedder.distance(image_a_bgr, image_b_bgr)
    with FaceEmbedder() as emb:
        return emb.distance(image_a_bgr, image_b_bgr)


def identity_distances(pairs: Iterable[tuple[np.ndarray, np.ndarray]],
                       embedder: FaceEmbedder | None = None) -> np.ndarray:
    """:func:`identity_distance` of every ``(image_a, image_b)`` pair with one embedder:
    float64 ``[P]`` (NaN where a face is missing)."""
    own = embedder is None
    embedder = embedder or FaceEmbedder()
    try:
        return np.array([embedder.distance(a, b) for a, b in pairs], dtype=np.float64)
    finally:
        if own:
            embedder.close()


def identity_references(descriptors: Mapping[str, np.ndarray], identities: Mapping[str, str]) -> dict:
    """Distances that put an edit's identity distance in context: between different
    photos of one person (``same_person``) and between photos of different people
    (``different_people``), median over all such pairs of ``descriptors`` (``{photo:
    [128]}``), persons from ``identities`` (``{photo: identity}``; a photo without one is
    its own person). Returns ``{"same_person": {"n", "median"}, "different_people": ...}``."""
    names = sorted(descriptors)
    same, diff = [], []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            d = float(np.linalg.norm(descriptors[a] - descriptors[b]))
            (same if identities.get(a, a) == identities.get(b, b) else diff).append(d)
    return {"same_person": {"n": len(same), "median": float(np.median(same)) if same else None},
            "different_people": {"n": len(diff), "median": float(np.median(diff)) if diff else None}}


# --- linearity ---------------------------------------------------------------------------------

def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation of ``x`` and ``y`` over the pairs where both are finite. A flat
    ``y`` (the control moves nothing) counts as r = 0; fewer than 2 pairs or a flat ``x``
    give NaN."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 2 or np.ptp(x) == 0:
        return math.nan
    if np.ptp(y) == 0:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


def is_monotonic(y: Sequence[float], tol: float = 0.0) -> bool:
    """Whether ``y`` never falls by more than ``tol`` from one element to the next (NaN
    elements skipped; fewer than 2 finite elements count as monotonic)."""
    v = np.asarray(y, dtype=np.float64)
    v = v[np.isfinite(v)]
    return bool((np.diff(v) >= -tol).all())


def linearity(editor, photos: Mapping[str, np.ndarray] | Sequence[str | Path], aus: Sequence[str] = VISIBLE_AUS,
              levels: Sequence[float] = tuple(range(6)), *, mesh: FaceMesh | None = None, tol: float = 0.05,
              progress: bool = True) -> dict:
    """Response of each AU control swept over ``levels`` (absolute; the other AUs at the
    face's current estimate).

    The response at a level is :func:`fastwarp.face.estimate_aus` of the edited photo's
    landmarks (the measuring FaceMesh) for that AU: with a perfect editor and estimator it
    equals the level, wherever the estimator does not clip. ``responses_raw``: the same reading
    unclipped (:func:`fastwarp.face.aus_torch.estimate_aus_torch` ``raw=True``), which still
    moves where a face rests below the estimator's neutral (most photos' brows: the editor
    raises them from there, :func:`fastwarp.models.landmark_motion.brow_rest_share`, and the
    clipped reading stays 0 until they pass it); ``r_raw`` its Pearson r. Per photo: Pearson r between
    levels and responses (:func:`pearson`), whether the responses are monotonic (never
    falling by more than ``tol`` AU, :func:`is_monotonic`), and the slope of the least-squares
    line (AU read per AU asked). A level whose output has no face reads NaN.

    Args:
        editor: an :class:`~fastwarp.expression_editor.ExpressionEditor`.
        photos: ``{name: image}`` or paths; photos without a face are skipped (listed).
        aus: AU names (default :data:`fastwarp.face.VISIBLE_AUS`: only those the estimator
            sees can be read back).
        levels: absolute intensities in 0..5, increasing.
        mesh: the measuring FaceMesh; default a new static-mode one.
        tol: monotonicity tolerance in AU units.
    Returns:
        ``{"levels": [...], "tol": float, "no_face": [...], "aus": {AU: {"r_median", "r_min",
        "monotonic_photos" (fraction), "curve" (median response per level),
        "curve_monotonic", "slope_median", "n", "meets" (r_median >= 0.95 and the median
        curve monotonic), "r_raw_median", "photos": {photo: {"responses", "r", "monotonic",
        "slope", "responses_raw", "r_raw"}}}}}``.
    Raises:
        ValueError: an unknown AU or a level outside 0..5.
    """
    levels = [float(v) for v in levels]
    if any(not 0.0 <= v <= AU_MAX for v in levels):
        raise ValueError(f"levels must lie in 0..{AU_MAX:g}, got {levels}")
    for a in aus:
        if a not in AU_INDEX:
            raise ValueError(f"unknown AU {a!r}")
    own = mesh is None
    mesh = mesh or FaceMesh(static_image_mode=True, max_faces=MEASURE_FACES)
    per_au: dict[str, dict[str, dict]] = {a: {} for a in aus}
    no_face: list[str] = []
    try:
        items = list(_iter_photos(photos))
        bar = tqdm(total=len(items) * len(aus), desc="linearity", unit="sweep", disable=not progress)
        for name, image in items:
            ref = _detect(mesh, image)
            if ref is None:
                no_face.append(name)
                bar.update(len(aus))
                continue
            for au in aus:
                resp, raw = [], []
                for level in levels:
                    res = editor.edit(image, [(au, level, False)])
                    lm = _detect_near(mesh, res.frame, ref) if res.face_found else None
                    resp.append(float(estimate_aus(lm)[AU_INDEX[au]]) if lm is not None else math.nan)
                    raw.append(_raw_reading(lm, au))
                x, y = np.array(levels), np.array(resp)
                ok = np.isfinite(y)
                slope = float(np.polyfit(x[ok], y[ok], 1)[0]) if ok.sum() >= 2 else math.nan
                per_au[au][name] = {"responses": resp, "r": pearson(x, y), "monotonic": is_monotonic(y, tol),
                                    "slope": slope, "responses_raw": raw, "r_raw": pearson(x, np.array(raw))}
                bar.update(1)
        bar.close()
    finally:
        if own:
            mesh.close()
    out: dict[str, Any] = {"levels": levels, "tol": tol, "no_face": no_face, "aus": {}}
    for au, rows in per_au.items():
        rs = [r["r"] for r in rows.values()]
        curve = [float(np.nanmedian(col)) if np.isfinite(col).any() else math.nan
                 for col in np.array([r["responses"] for r in rows.values()]).reshape(-1, len(levels)).T]
        r_med = _stats(rs)["median"]
        out["aus"][au] = {
            "n": len(rows), "r_median": r_med,
            "r_min": float(np.nanmin(rs)) if np.isfinite(rs).any() else None,
            "monotonic_photos": float(np.mean([r["monotonic"] for r in rows.values()])) if rows else None,
            "curve": curve, "curve_monotonic": is_monotonic(curve, tol),
            "slope_median": _stats([r["slope"] for r in rows.values()])["median"],
            "meets": r_med is not None and r_med >= 0.95 and is_monotonic(curve, tol),
            "r_raw_median": _stats([r["r_raw"] for r in rows.values()])["median"],
            "photos": rows,
        }
    return out


# --- tables ------------------------------------------------------------------------------------

def _num(v: float | None, unit: str, signed: bool = True) -> str:
    if v is None or not math.isfinite(v):
        return "n/a"
    if unit == "%":
        return f"{v:+.1f} %" if signed else f"{v:.1f} %"
    return f"{v:+.3f}" if signed else f"{v:.3f}"


def format_edit_table(result: Mapping, real: Mapping | None = None, edits: Sequence[EditSpec] = FIVE_EDITS) -> str:
    """Markdown table of :func:`measure_edits`' ``result``, one row per edit, with the real
    faces' distribution from :func:`real_ranges` (``real``) next to it.

    Columns: edit, ``--au`` arguments, measure, photos measured, median change (and its
    inter-quartile range) in the edit's unit (% or IOD), median change in IOD, target,
    real faces over all videos (median / p75 / p90, and the farthest video) and over the
    videos whose description names the expression (median / p90, count), median identity
    distance (where measured), and whether the median reaches the target. Lines below the
    table name photos without a face, outputs where the face was lost, and photos where the
    0..5 range cut a relative AU change short.
    """
    head = ["edit", "`--au`", "measure", "photos", "median change", "p25 .. p75", "median Δ (IOD)", "target",
            "real, all videos: median / p75 / p90", "real: farthest video", "real, videos showing it: median / p90 (n)",
            "identity", "meets target"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|---|" + "---:|" * 5 + "---|---|---|---:|---|"]
    notes = []
    for spec in edits:
        s = result["summary"][spec.name]
        u = spec.unit
        r = (real or {}).get("edits", {}).get(spec.name)
        real_txt = f"{_num(r['median'], u)} / {_num(r['p75'], u)} / {_num(r['p90'], u)}" if r else "n/a"
        far = f"{r['max_video']} ({_num(r['max'], u)})" if r and r["max_video"] else "n/a"
        sh = (r or {}).get("showing")
        shows = f"{_num(sh['median'], u)} / {_num(sh['p90'], u)} ({sh['n']})" if sh else "n/a"
        ident = "n/a" if s.get("median_identity") is None else f"{s['median_identity']:.3f}"
        target = f"{'≥' if spec.direction > 0 else '≤'} {_num(spec.target, u)}"
        lines.append(f"| {spec.name} | `{spec.au_args}` | {spec.measure} ({u}) | {s['n']} | "
                     f"**{_num(s['median'], u)}** | {_num(s['p25'], u)} .. {_num(s['p75'], u)} | "
                     f"{_num(s['median_delta_iod'], 'IOD')} | {target} | {real_txt} | {far} | {shows} | {ident} | "
                     f"{'yes' if s['meets'] else 'no'} |")
        if s.get("clipped"):
            notes.append(f"- {spec.name}: the AU change was clipped to 0..{AU_MAX:g} (less than asked) on "
                         f"{len(s['clipped'])} photos: {', '.join(s['clipped'])}")
        if s.get("raised"):
            notes.append(f"- {spec.name}: an AU moved further than asked (the editor's AU consistency, e.g. AU25 "
                         f"with AU26) on {len(s['raised'])} photos: {', '.join(s['raised'])}")
        if s["lost"]:
            notes.append(f"- {spec.name}: face lost in the output of {', '.join(s['lost'])}")
    if result.get("no_face"):
        notes.insert(0, f"- no face found in {len(result['no_face'])} of {result['n_photos']} photos: "
                        f"{', '.join(result['no_face'])}")
    return "\n".join(lines + ([""] + notes if notes else []))


def format_identity_references(refs: Mapping) -> str:
    """One markdown line per reference distance of :func:`identity_references`."""
    out = []
    for key, text in (("same_person", "same person, another photo"), ("different_people", "different people")):
        r = refs.get(key, {})
        med = "n/a" if r.get("median") is None else f"{r['median']:.3f}"
        out.append(f"- {text}: median {med} over {r.get('n', 0)} photo pairs")
    return "\n".join(out)


def _raw_reading(landmarks: np.ndarray | None, au: str) -> float:
    """The geometric estimator's unclipped reading of ``au`` (NaN without landmarks)."""
    if landmarks is None:
        return math.nan
    import torch

    from fastwarp.face.aus_torch import estimate_aus_torch

    lm = torch.as_tensor(np.asarray(landmarks, np.float64)[None, :, :2])
    return float(estimate_aus_torch(lm, raw=True)[0, AU_INDEX[au]])


def format_linearity_table(lin: Mapping) -> str:
    """Markdown table of :func:`linearity`: per AU the photos, median and lowest Pearson r,
    share of photos with a monotonic response, median slope, the median response at each
    level, the median r of the unclipped reading, and whether r ≥ 0.95 with a monotonic median
    curve."""
    levels = lin["levels"]
    lv = ", ".join(f"{v:g}" for v in levels)
    lines = [f"| AU | photos | r (median) | r (min) | monotonic photos | slope (median) | response at {lv} "
             "(median) | r unclipped (median) | r ≥ 0.95 and monotonic |", "|---|" + "---:|" * 7 + "---|"]
    for au, s in lin["aus"].items():
        fmt = lambda v, p=2: "n/a" if v is None or not math.isfinite(v) else f"{v:.{p}f}"  # noqa: E731
        mono = "n/a" if s["monotonic_photos"] is None else f"{100 * s['monotonic_photos']:.0f} %"
        curve = " ".join(fmt(v, 1) for v in s["curve"])
        lines.append(f"| {au} | {s['n']} | {fmt(s['r_median'], 3)} | {fmt(s['r_min'], 3)} | {mono} | "
                     f"{fmt(s['slope_median'])} | {curve} | {fmt(s.get('r_raw_median'), 3)} | "
                     f"{'yes' if s['meets'] else 'no'} |")
    return "\n".join(lines)


# --- picture sheet -----------------------------------------------------------------------------

SHEET_CELL = 256  # side of one face panel in pixels
SHEET_HEADER = 44  # header height (two label lines)
_SHEET_STRIP = 18  # caption strip at the bottom of each panel


def _face_box(landmarks: np.ndarray, margin: float = 1.4) -> tuple[int, int, int, int]:
    """Square ``(x0, y0, x1, y1)`` around the landmarks' bounding box, ``margin`` times its
    larger side (room for an opened jaw and raised brows)."""
    lm = np.asarray(landmarks)[:, :2]
    (x0, y0), (x1, y1) = lm.min(0), lm.max(0)
    cx, cy, h = 0.5 * (x0 + x1), 0.5 * (y0 + y1), 0.5 * margin * max(x1 - x0, y1 - y0)
    return int(round(cx - h)), int(round(cy - h)), int(round(cx + h)), int(round(cy + h))


def _cut(image: np.ndarray, box: tuple[int, int, int, int], cell: int) -> np.ndarray:
    """``box`` of ``image`` (grey outside it) resized to ``cell x cell``."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0, 1)
    m = np.array([[cell / side, 0, -x0 * cell / side], [0, cell / side, -y0 * cell / side]])
    interp = cv2.INTER_AREA if side > cell else cv2.INTER_LINEAR
    return cv2.warpAffine(image, m, (cell, cell), flags=interp, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(64, 64, 64))


def _label(img: np.ndarray, text: str, x: int, y: int, width: int, scale: float = 0.45,
           color: tuple[int, int, int] = (255, 255, 255)) -> None:
    font = cv2.FONT_HERSHEY_SIMPLEX
    while text and cv2.getTextSize(text, font, scale, 1)[0][0] > width - 6:
        text = text[:-3] + ".." if len(text) > 3 else text[:-1]
    cv2.putText(img, text, (x + 4, y), font, scale, color, 1, cv2.LINE_AA)


def _sheet_rows(source, photos, edits: Sequence[EditSpec], n: int) -> list[tuple[str, dict, dict]]:
    """``(photo, {"input", "box", "outputs"}, {edit: caption})`` for the sheet's rows."""
    rows = []
    if isinstance(source, Mapping):  # a measure_edits result with kept images
        if "images" not in source:
            raise ValueError("result has no images: run measure_edits with keep_images=[...]")
        for name, kept in list(source["images"].items())[:n]:
            caps = {}
            for spec in edits:
                r = source["photos"][name]["edits"].get(spec.name, {})
                if r.get("face_found"):
                    ident = f"  id {r['identity']:.2f}" if r.get("identity") is not None and \
                        math.isfinite(r["identity"]) else ""
                    caps[spec.name] = f"{_num(r['change'], spec.unit)}{ident}"
                else:
                    caps[spec.name] = "face lost"
            rows.append((name, kept, caps))
        return rows
    editor = source
    for name, image in _iter_photos(photos):
        if len(rows) >= n:
            break
        faces = editor.detect(image)
        if not faces:
            continue
        outputs = {}
        for spec in edits:
            res = editor.edit(image, list(spec.edits))
            outputs[spec.name] = res.frame if res.face_found else None
        rows.append((name, {"input": image, "box": _face_box(faces[0]), "outputs": outputs}, {}))
    return rows


def write_edit_sheet(path: str | Path, source, photos: Mapping[str, np.ndarray] | Sequence[str | Path] | None = None,
                     edits: Sequence[EditSpec] = FIVE_EDITS, *, n: int = 6, cell: int = SHEET_CELL,
                     quality: int = 92) -> Path:
    """Write a picture sheet (JPEG or any format OpenCV picks from the suffix) atomically.

    One row per photo (up to ``n``), columns: input, then each edit. Every panel is the
    same square face box of the input (1.4 x the input landmarks' bounding box) at
    ``cell`` px, so an edit shows as movement in place. A ``SHEET_HEADER`` px header names
    the columns (edit name, ``--au`` arguments); the input panel names the photo, each edit
    panel carries its measured change (and dlib identity distance) when ``source`` is a
    result. The image is ``(SHEET_HEADER + rows * cell) x ((1 + len(edits)) * cell)``, BGR.

    Args:
        path: output file.
        source: an :class:`~fastwarp.expression_editor.ExpressionEditor` (the edits are run
            on ``photos``, the first ``n`` with a face), or a :func:`measure_edits` result
            made with ``keep_images`` (its kept photos, captioned with their measures).
        photos: ``{name: image}`` or paths; with an editor only.
    Returns:
        ``path``.
    Raises:
        ValueError: no row to draw, ``n < 1`` or a result without images; OSError: the file
            cannot be written (nothing is left at ``path``).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not isinstance(source, Mapping) and photos is None:
        raise ValueError("photos are needed when source is an editor")
    rows = _sheet_rows(source, photos, edits, n)
    if not rows:
        raise ValueError("no photo with a face to draw")
    cols = 1 + len(edits)
    sheet = np.full((SHEET_HEADER + len(rows) * cell, cols * cell, 3), 32, np.uint8)
    _label(sheet, "input", 0, 18, cell)
    for c, spec in enumerate(edits, start=1):
        _label(sheet, spec.name.replace("_", " "), c * cell, 18, cell)
        _label(sheet, spec.au_args.replace("--au ", ""), c * cell, 36, cell, scale=0.4, color=(200, 200, 200))
    for r, (name, kept, caps) in enumerate(rows):
        y = SHEET_HEADER + r * cell
        panels = [("", kept["input"], name)] + [(s.name, kept["outputs"].get(s.name), caps.get(s.name, ""))
                                                for s in edits]
        for c, (_, img, caption) in enumerate(panels):
            x = c * cell
            if img is None:
                _label(sheet, "no face", x, y + cell // 2, cell)
                continue
            sheet[y:y + cell, x:x + cell] = _cut(img, kept["box"], cell)
            if caption:
                sheet[y + cell - _SHEET_STRIP:y + cell, x:x + cell] //= 3
                _label(sheet, caption, x, y + cell - 5, cell, scale=0.42)
    for c in range(1, cols):  # column separators
        sheet[:, c * cell:c * cell + 1] = 160
    path = Path(path)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if path.suffix.lower() in (".jpg", ".jpeg") else []
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), sheet, params):
            raise OSError(f"OpenCV could not write {path}")
    return path


# --- CLI ---------------------------------------------------------------------------------------

def _jsonable(obj):
    """NaN/inf → None and numpy scalars → Python, so metrics.json is strict JSON."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def _have_dlib() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("dlib", "face_recognition_models"))


LEGEND = """\
- Measures from MediaPipe FaceMesh (static mode) on the input photo and on its edit, in units
  of that face's inter-ocular distance (IOD, outer eye corners 33-263), in the eye-line frame
  (invariant to in-plane rotation, scale and translation): mouth_width = corner distance
  61-291; lip_gap = mean inner-lip gap of 13-14, 82-87, 312-317; brow_height = mean height of
  the brow landmarks above the eye line; eyelid_gap = mean distance of 6 upper/lower lid pairs.
- change: % of the input's value (100 (after - before) / before), or IOD for lip_gap; the median
  over photos, p25 .. p75 its spread; median Δ (IOD): after - before in IOD for every measure.
- "+" edits add to the face's current AU estimate (clipped at 5); AU45=5 is absolute.
- real: per video of the face set, the change from its most neutral sampled frame (lowest sum
  of geometric AUs) to its 95th-percentile frame (5th for frown and blink), then median / p75 /
  p90 across videos in the edit's direction; farthest video in brackets. "all videos" mixes
  expression with speech (talking parts the lips, purses and widens the mouth); "videos
  showing it" keeps those whose MANIFEST.csv description names the expression (metrics.json
  has the pattern and the list).
- identity: dlib ResNet face descriptor distance photo vs edit (0 = same descriptor; dlib calls
  < 0.6 the same person), median over photos.
- meets target: the median change reaches the target (issue 12)."""


def main(argv: Sequence[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m training.edit_metrics", description=__doc__.splitlines()[0])
    ap.add_argument("--faces", required=True, help="face set folder (images/, videos/, MANIFEST.csv)")
    ap.add_argument("--weights", default="base", help="bundled weights name (base, lite) or checkpoint path "
                                                      "without suffix (default: base)")
    ap.add_argument("--photos", type=int, default=None, help="photos to edit, evenly spaced by name (default: all)")
    ap.add_argument("--out", default="runs/edits", help="folder for table.md, metrics.json, sheet.jpg")
    ap.add_argument("--cache", default=None, help="dataset cache for the real ranges (default: .cache/dataset128 "
                                                 "when present, else the videos are decoded)")
    ap.add_argument("--no-cache", action="store_true", help="decode the videos for the real ranges")
    ap.add_argument("--frames", type=int, default=40, help="frames per decoded video (real ranges)")
    ap.add_argument("--linearity-photos", type=int, default=8, help="photos of the linearity sweep (0: skip)")
    ap.add_argument("--linearity-aus", default=",".join(VISIBLE_AUS), help="comma-separated AUs to sweep")
    ap.add_argument("--sheet-photos", type=int, default=6, help="rows of sheet.jpg")
    ap.add_argument("--no-identity", action="store_true", help="skip the dlib identity distance")
    ap.add_argument("--device", default="cpu", help="editor device (cpu, cuda)")
    ap.add_argument("--motion", default="auto", choices=("auto", "mesh", "dense"),
                    help="the editor's motion (fastwarp.ExpressionEditor): mesh, dense, or auto (mesh where installed)")
    ap.add_argument("--texture", default="auto", choices=("auto", "regions", "eyes", "mesh", "none"),
                    help="what paints where the warp cannot (ExpressionEditor's texture=)")
    ap.add_argument("--texture-weights", default=None,
                    help="mesh texture checkpoint instead of the bundled one; 'none': the mesh warp alone")
    ap.add_argument("--region-weights", default=None,
                    help="eye region texture checkpoint (path without suffix) instead of the bundled one")
    ap.add_argument("--mouth-weights", default=None,
                    help="mouth region texture checkpoint instead of the bundled one; 'none': no mouth texture")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    faces = Path(args.faces)
    if not (faces / "images").is_dir():
        ap.error(f"--faces: no images folder in {faces}")
    if args.photos is not None and args.photos < 1:
        ap.error("--photos must be >= 1")
    lin_aus = [a.strip().upper() for a in args.linearity_aus.split(",") if a.strip()]
    bad = [a for a in lin_aus if a not in AU_INDEX]
    if bad:
        ap.error(f"--linearity-aus: unknown AU {', '.join(bad)}")
    cache = None
    if not args.no_cache:
        cache = Path(args.cache) if args.cache else (_DEFAULT_CACHE if (_DEFAULT_CACHE / "manifest.json").is_file()
                                                     else None)
        if cache is not None and not (cache / "manifest.json").is_file():
            ap.error(f"--cache: no manifest.json in {cache}")
    use_identity = not args.no_identity and _have_dlib()
    progress = not args.no_progress

    from fastwarp.expression_editor import ExpressionEditor

    t0 = time.perf_counter()
    paths = list_photos(faces, args.photos)
    timings = {}
    editor = ExpressionEditor(args.weights, args.device, motion=args.motion, texture_weights=args.texture_weights,
                              texture=args.texture, region_weights=args.region_weights,
                              mouth_weights=args.mouth_weights)
    with editor, FaceMesh(static_image_mode=True, max_faces=MEASURE_FACES) as mesh:
        embedder = FaceEmbedder(mesh) if use_identity else None
        keep = [paths[i].stem for i in np.unique(np.linspace(0, len(paths) - 1,
                                                             min(args.sheet_photos, len(paths))).round().astype(int))]
        t = time.perf_counter()
        result = measure_edits(editor, paths, mesh=mesh, embedder=embedder, keep_images=keep, progress=progress)
        timings["edits_s"] = time.perf_counter() - t
        refs = None
        if embedder is not None:
            manifest = _read_manifest(faces)
            descs = {}
            for p in paths:
                if result["photos"][p.stem]["face"]:
                    d = embedder.embed(cv2.imread(str(p), cv2.IMREAD_COLOR))
                    if d is not None:
                        descs[p.stem] = d
            refs = identity_references(descs, {k: manifest.get(k, {}).get("identity", k) for k in descs})
        t = time.perf_counter()
        real = real_ranges(faces, cache=cache, frames=args.frames, mesh=mesh, progress=progress)
        timings["real_s"] = time.perf_counter() - t
        lin = None
        if args.linearity_photos > 0 and lin_aus:
            with_face = [p for p in paths if result["photos"][p.stem]["face"]]
            pick = np.unique(np.linspace(0, len(with_face) - 1,
                                         min(args.linearity_photos, len(with_face))).round().astype(int))
            t = time.perf_counter()
            lin = linearity(editor, [with_face[i] for i in pick], lin_aus, mesh=mesh, progress=progress)
            timings["linearity_s"] = time.perf_counter() - t
    images = result.pop("images", {})

    out = Path(args.out)
    table = format_edit_table(result, real)
    real_src = f"dataset cache `{cache}`" if real["source"] == "cache" else f"decoded, {args.frames} frames each"
    parts = [f"# Edit response on photos: `{args.weights}`, {editor.motion} motion\n",
             f"Photos: {result['n_photos']} of `{faces / 'images'}`; real faces: {real['n_videos']} videos "
             f"({real_src}).\n",
             "## Per edit\n", table, ""]
    if refs is not None:
        dists = [r["identity"] for d in result["photos"].values() for r in d.get("edits", {}).values()
                 if isinstance(r, dict) and r.get("identity") is not None]
        if dists:
            p90 = float(np.percentile(dists, 90))
            parts += [f"Identity: the 90th percentile of the descriptor distance between a photo and its edits, over "
                      f"{len(dists)} edits, is **{p90:.3f}** (target <= 0.35: {'met' if p90 <= 0.35 else 'NOT met'}; "
                      f"dlib's same-person threshold is 0.6).\n"]
        parts += ["Identity references (dlib descriptor distance between input photos):\n",
                  format_identity_references(refs), ""]
    elif not args.no_identity:
        parts += ["Identity: not measured (dlib and face_recognition_models are not installed: "
                  "`pip install -r requirements-eval.txt`).\n"]
    if lin is not None:
        parts += [f"## Control linearity ({len(lin['aus'][lin_aus[0]]['photos'])} photos, levels "
                  f"{', '.join(f'{v:g}' for v in lin['levels'])}, response = geometric AU estimate of the output)\n",
                  format_linearity_table(lin), ""]
    parts += ["## Legend\n", LEGEND, ""]
    text = "\n".join(parts)
    timings["total_s"] = time.perf_counter() - t0
    metrics = {"weights": args.weights, "faces": str(faces), "photos": [p.stem for p in paths],
               "edits": result, "real": real, "identity_references": refs, "linearity": lin, "timings": timings}
    paths_out = {"table": out / "table.md", "metrics": out / "metrics.json", "sheet": out / "sheet.jpg"}
    write_edit_sheet(paths_out["sheet"], {**result, "images": images}, n=args.sheet_photos)
    with atomic_path(paths_out["metrics"]) as tmp:
        tmp.write_text(json.dumps(_jsonable(metrics), indent=1, allow_nan=False) + "\n")
    with atomic_path(paths_out["table"]) as tmp:
        tmp.write_text(text)
    print(text)
    for p in paths_out.values():
        print(f"wrote {p}")
    print("timings: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    return metrics


if __name__ == "__main__":
    main()

"""Edit-quality evaluation on held-out video pairs (docs/design.md, "Evaluation protocol").

For pairs (source frame, target frame) of one held-out video, each model edits the source
to the target frame's AUs and its output is compared with the real target frame; the
identity baseline (output = source) and every model are measured on the same pairs.

Metrics (per pair, then the mean over pairs):

- ``l1``: mean absolute error of output vs target, RGB in [-1, 1] units
  (:func:`fastwarp.images.bgr_to_tensor`), over the whole crop.
- ``nme``, ``nme_mouth``, ``nme_eyes``, ``nme_brows``: landmark NME — MediaPipe landmarks
  of output and target (both found on the aligned crops by the same detector), mean point
  distance divided by the target's inter-ocular distance (outer eye corners, the 300-W
  norm), over all 478 points and over each expression region. Unitless.
- ``au_err``: |AU(output) − AU(target)| of the geometric estimator
  (:func:`fastwarp.face.estimate_aus` on those landmarks), mean over
  :data:`fastwarp.face.VISIBLE_AUS`, in AU intensity units (0..5); ``au_err_AUxx`` per AU.
- ``psnr``: peak signal-to-noise ratio in dB inside the face mask (:func:`masked_psnr`),
  uint8 BGR in [0, 255]; ``inf`` where output equals target.
- ``ssim``: SSIM (Wang et al., IEEE TIP 2004; ``skimage.metrics.structural_similarity``)
  averaged over the face mask (:func:`masked_ssim`). Unitless, 1 = identical.

The face mask is the filled face-oval polygon of the *target* crop's landmarks
(:func:`fastwarp.face.face_mask` with ``feather=0``).

CLI: ``python -m training.evaluate --data .cache/dataset128 [--weights NAME=PATH ...] [--out runs/eval]
[--faces ../shared/data/faces]``; with ``--faces``, each model's photo edit metrics
(:mod:`training.edit_metrics`: per-edit response, identity, linearity, picture sheet) go to
``<out>/edits/<name>``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Mapping, Sequence

import cv2
import numpy as np
import torch
from skimage.metrics import structural_similarity
from tqdm import tqdm

from fastwarp._io import atomic_path
from fastwarp.au import AU_INDEX
from fastwarp.images import bgr_to_tensor, tensor_to_bgr
from fastwarp.face import VISIBLE_AUS, FaceMesh, estimate_aus, face_mask, inter_ocular_distance
from fastwarp.face.aus import geometric_features
from fastwarp.face.landmarks import EXPRESSION_REGIONS, OUTER_LIPS
from fastwarp.models import DEFAULT_WEIGHTS, EditorNet, resolve_weights

from .data import dataset_identities, load_dataset, make_pairs, split_videos

__all__ = ["METRICS", "MeshPathModel", "landmark_errors", "evaluation_mask", "mouth_mask", "masked_psnr", "masked_ssim",
           "evaluate_models",
           "evaluate_pairs", "validation_pairs", "format_table", "format_au_table", "grid_columns", "write_grid",
           "run_edit_metrics", "main"]

_VISIBLE = [AU_INDEX[a] for a in VISIBLE_AUS]
#: Columns of :func:`format_table`, in order.
METRICS: tuple[str, ...] = ("l1", "nme", "nme_mouth", "nme_eyes", "nme_brows", "au_err", "psnr", "ssim",
                             "psnr_mouth")
_PIXEL_METRICS = ("l1", "psnr", "ssim")
#: A pair "opens the mouth" when the inner-lip gap grows by this much (IOD units) from source
#: to target (the cache's landmarks); ``psnr_mouth`` is measured on those pairs only.
MOUTH_OPENS = 0.08
_AU_KEYS = tuple(f"au_err_{a}" for a in VISIBLE_AUS)
_RESERVED = ("identity", "n_pairs", "pairs", "mouth_pairs")  # keys of a result that are not model names
_SSIM_WIN = 7  # skimage's default window; it ignores a (win - 1) // 2 border of the SSIM map
GRID_MIN_CELL = 128  # grid panels are upscaled (nearest) to at least this side
GRID_HEADER = 40  # grid header height in pixels (two label lines)

LEGEND = """\
- identity: output = source frame, unedited (the baseline every edit must beat).
- l1: mean |output - target|, RGB in [-1, 1], whole crop (lower is better).
- nme, nme_mouth, nme_eyes, nme_brows: MediaPipe landmark error of output vs target,
  mean point distance / inter-ocular distance (outer eye corners), over all 478 points
  and per expression region (lower is better).
- au_err: |AU(output) - AU(target)| of fastwarp's geometric AU estimator, mean over the
  AUs it sees, intensity units 0..5 (lower is better); au_err per AU in the second table.
- psnr: dB, uint8 BGR in [0, 255], over the target's face-oval mask (higher is better).
- ssim: SSIM (skimage, 7x7 window, data range 255) averaged over that mask (higher is better).
- psnr_mouth: PSNR (dB) inside the target's outer-lip polygon, on the pairs whose inner-lip
  gap grows by 0.08 IOD or more (the mouth opens: what motion alone cannot make).
- pairs: pairs with a face found in both output and target (landmark metrics); l1, psnr
  and ssim are over every pair."""


def landmark_errors(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """NME of landmarks ``pred`` vs ``target`` (``[478, 2+]``, pixels), normalised by the
    target's inter-ocular distance: ``nme`` over all points and ``nme_<region>`` per
    expression region (:data:`fastwarp.face.EXPRESSION_REGIONS`)."""
    iod = inter_ocular_distance(target)
    d = np.linalg.norm(pred[:, :2] - target[:, :2], axis=1) / iod
    out = {"nme": float(d.mean())}
    for region, idx in EXPRESSION_REGIONS.items():
        out[f"nme_{region}"] = float(d[list(idx)].mean())
    return out


def mouth_mask(arrays: dict, pair: tuple[str, int, int], size: int) -> np.ndarray | None:
    """The target's outer-lip polygon (bool ``[size, size]``) where the pair's inner-lip gap
    grows by :data:`MOUTH_OPENS` or more, else None (also without cached landmarks)."""
    if "landmarks" not in arrays:
        return None
    _, s, t = pair
    lm = arrays["landmarks"][[s, t]]
    gap = geometric_features(lm)["gap"]
    if gap[1] - gap[0] < MOUTH_OPENS:
        return None
    out = np.zeros((size, size), np.uint8)
    cv2.fillPoly(out, [np.round(lm[1][list(OUTER_LIPS), :2]).astype(np.int32)], 1)
    return out > 0


def evaluation_mask(landmarks: np.ndarray, size: int) -> np.ndarray:
    """The region PSNR and SSIM are measured in: the filled face-oval polygon of
    ``landmarks`` (``[478, 2+]`` crop pixels) — :func:`fastwarp.face.face_mask` with no
    feathering. Returns bool ``[size, size]``."""
    return face_mask(landmarks, size, feather=0) > 0


def _check_pair(output: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    for name, img in (("output", output), ("target", target)):
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"{name} must be a uint8 [H, W, 3] image, got "
                             f"{getattr(img, 'dtype', type(img).__name__)} {getattr(img, 'shape', '')}")
    if output.shape != target.shape:
        raise ValueError(f"output and target differ in shape: {output.shape} vs {target.shape}")
    mask = np.asarray(mask)
    if mask.shape != output.shape[:2]:
        raise ValueError(f"mask must have shape {output.shape[:2]} (the images' H, W), got {mask.shape}")
    mask = mask.astype(bool)
    if not mask.any():
        raise ValueError("mask is empty: no pixel to measure")
    return mask


def masked_psnr(output: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    """PSNR of ``output`` vs ``target`` inside ``mask``, in dB.

    ``10 * log10(255**2 / MSE)`` with the MSE over the masked pixels and their 3 channels
    (float64, images in [0, 255]).

    Args:
        output, target: uint8 ``[H, W, 3]`` (BGR; the channel order does not matter).
        mask: ``[H, W]``, nonzero = measured.
    Returns:
        PSNR in dB; ``inf`` when the masked pixels are equal.
    Raises:
        ValueError: wrong dtypes or shapes, or an empty mask.
    """
    mask = _check_pair(output, target, mask)
    diff = output[mask].astype(np.float64) - target[mask].astype(np.float64)
    mse = float(np.mean(diff * diff))
    return math.inf if mse == 0.0 else 10.0 * math.log10(255.0 ** 2 / mse)


def masked_ssim(output: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    """Mean SSIM of ``output`` vs ``target`` inside ``mask``.

    The SSIM map of ``skimage.metrics.structural_similarity(output, target, full=True,
    channel_axis=-1, data_range=255)`` (7x7 uniform window, Wang et al. 2004), averaged
    over the channels and over the masked pixels, leaving out the 3-pixel border that
    skimage also leaves out of its mean — so an all-ones mask gives skimage's own mean SSIM.

    Args:
        output, target: uint8 ``[H, W, 3]``, ``H, W >= 7``.
        mask: ``[H, W]``, nonzero = measured.
    Returns:
        Mean SSIM in [-1, 1]; 1 for identical images.
    Raises:
        ValueError: wrong dtypes or shapes, images under 7 pixels a side, or no masked
            pixel away from the border.
    """
    mask = _check_pair(output, target, mask)
    if min(output.shape[:2]) < _SSIM_WIN:
        raise ValueError(f"SSIM needs images of at least {_SSIM_WIN} pixels a side, got {output.shape[:2]}")
    _, ssim_map = structural_similarity(output, target, full=True, channel_axis=-1, data_range=255)
    pad = (_SSIM_WIN - 1) // 2
    inner = np.zeros_like(mask)
    inner[pad:-pad, pad:-pad] = mask[pad:-pad, pad:-pad]
    if not inner.any():
        raise ValueError(f"mask has no pixel more than {pad} pixels from the border")
    return float(ssim_map.mean(axis=-1, dtype=np.float64)[inner].mean())


def _check_models(models: Mapping[str, EditorNet], dataset: dict, pairs: Sequence) -> int:
    """The crop side, after checking that every model takes crops of that size."""
    for name in models:
        if name in _RESERVED:
            raise ValueError(f"model name {name!r} is reserved (reserved: {', '.join(_RESERVED)})")
    if not pairs:
        return 0
    size = int(dataset[pairs[0][0]]["crops"].shape[1])
    for name, model in models.items():
        if int(model.config.image_size) != size:
            raise ValueError(f"model {name!r} takes {model.config.image_size} px crops, the dataset has {size} px")
    return size


def _batch(dataset: dict, chunk: Sequence[tuple[str, int, int]]):
    src = np.stack([dataset[v]["crops"][s] for v, s, _ in chunk])
    tgt = np.stack([dataset[v]["crops"][t] for v, _, t in chunk])
    aus = torch.from_numpy(np.stack([dataset[v]["aus"][t] for v, _, t in chunk]).astype(np.float32))
    src_aus = torch.from_numpy(np.stack([dataset[v]["aus"][s] for v, s, _ in chunk]).astype(np.float32))
    return src, tgt, aus, src_aus


@torch.no_grad()
def evaluate_models(models: Mapping[str, EditorNet], dataset: dict, pairs: Sequence[tuple[str, int, int]],
                    mesh: FaceMesh, batch_size: int = 16, progress: bool = True) -> dict:
    """Mean metrics of the identity baseline and of every model on the same ``pairs``.

    Each model edits the source crop to the target frame's AUs (``model(src, aus_tgt,
    aus_src)``); see the module docstring for the metrics. Pixel metrics (``l1``, ``psnr``,
    ``ssim``) are averaged over every pair; landmark metrics (``nme*``, ``au_err*``) over
    the pairs where MediaPipe finds a face in both the row's output and the target.

    Args:
        models: ``{name: model}`` in table order (e.g. ``{"full": ..., "texture-only": ...}``);
            each takes crops of the dataset's size. Put in eval mode.
        dataset: ``{video: arrays}`` from :func:`training.data.load_dataset` (BGR uint8
            ``crops`` ``[F, S, S, 3]``, ``aus`` ``[F, 17]``, ``landmarks`` ``[F, 478, 2]``
            crop pixels — the face mask's source; without them the target's detected
            landmarks are used and pairs with no face in the target are skipped).
        pairs: ``(video, source row, target row)``, e.g. from :func:`validation_pairs`.
        mesh: a :class:`fastwarp.face.FaceMesh` (static image mode).
    Returns:
        ``{"identity": row, <name>: row, ..., "n_pairs": {row name: int}, "pairs": int}``
        in that order, where a row is ``{metric: float}`` with the keys of :data:`METRICS`
        plus ``au_err_AUxx`` per visible AU (a row with no pair is ``{}``); ``n_pairs``
        counts the pairs with landmark metrics, ``pairs`` those with pixel metrics.
    Raises:
        ValueError: a reserved model name ("identity", "n_pairs", "pairs") or a model whose
            ``config.image_size`` differs from the crops.
        KeyError: a pair's video is not in ``dataset``.
    """
    size = _check_models(models, dataset, pairs)
    for model in models.values():
        model.eval()
    names = ["identity", *models]
    per_pair: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    n_pixel = 0
    for start in tqdm(range(0, len(pairs), batch_size), desc="evaluate", disable=not progress, leave=False):
        chunk = pairs[start:start + batch_size]
        src, tgt, aus, src_aus = _batch(dataset, chunk)
        src_t, tgt_t = bgr_to_tensor(src), bgr_to_tensor(tgt)
        outputs = {"identity": (src, src_t)}
        for name, model in models.items():
            out_t = model(src_t, aus, src_aus).output
            outputs[name] = (tensor_to_bgr(out_t), out_t)
        for i, (video, _, t) in enumerate(chunk):
            found = mesh.detect(tgt[i])
            lm_t = found[0] if found else None
            if "landmarks" in dataset[video]:
                mask = evaluation_mask(dataset[video]["landmarks"][t], size)
            elif lm_t is not None:
                mask = evaluation_mask(lm_t, size)
            else:
                continue
            n_pixel += 1
            mouth = mouth_mask(dataset[video], chunk[i], size)
            for name in names:
                img, img_t = outputs[name][0][i], outputs[name][1][i]
                row = {"l1": float((img_t - tgt_t[i]).abs().mean()), "psnr": masked_psnr(img, tgt[i], mask),
                       "ssim": masked_ssim(img, tgt[i], mask)}
                if mouth is not None:
                    row["psnr_mouth"] = masked_psnr(img, tgt[i], mouth)
                found = mesh.detect(img) if lm_t is not None else []
                if found:
                    row.update(landmark_errors(found[0], lm_t))
                    err = np.abs(estimate_aus(found[0]) - estimate_aus(lm_t))
                    row["au_err"] = float(err[_VISIBLE].mean())
                    row.update({k: float(err[AU_INDEX[a]]) for k, a in zip(_AU_KEYS, VISIBLE_AUS)})
                per_pair[name].append(row)
    result: dict = {}
    counts: dict[str, int] = {}
    for name in names:
        rows = per_pair[name]
        landmark_rows = [r for r in rows if "nme" in r]
        counts[name] = len(landmark_rows)
        agg = {}
        for key in METRICS + _AU_KEYS:
            vals = [r[key] for r in (rows if key in _PIXEL_METRICS else landmark_rows) if key in r]
            if vals:
                agg[key] = float(np.mean(vals))
        result[name] = agg
    result["n_pairs"] = counts
    result["pairs"] = n_pixel
    result["mouth_pairs"] = sum("psnr_mouth" in r for r in per_pair["identity"])
    return result


def evaluate_pairs(model: EditorNet, dataset: dict, pairs: list[tuple[str, int, int]], mesh: FaceMesh,
                   batch_size: int = 16, progress: bool = True) -> dict[str, dict]:
    """One model against the identity baseline: :func:`evaluate_models` with the model named
    ``"model"``.

    Returns:
        ``{"model": row, "identity": row, "n_pairs": {"model": int, "identity": int}}`` (rows
        as in :func:`evaluate_models`).
    """
    result = evaluate_models({"model": model}, dataset, pairs, mesh, batch_size=batch_size, progress=progress)
    return {"model": result["model"], "identity": result["identity"], "n_pairs": result["n_pairs"]}


def validation_pairs(dataset: dict, val_videos: list[str], seed: int = 0, pairs_per_video: int = 12):
    """The fixed evaluation pairs: head pose within 0.15 rad, some AU differing by >= 1."""
    return make_pairs(dataset, val_videos, max_pose_diff=0.15, min_au_diff=1.0, pairs_per_video=pairs_per_video,
                      rng=np.random.default_rng(seed))


def _row_names(result: dict) -> list[str]:
    rest = [k for k in result if k not in _RESERVED]
    return (["identity"] if "identity" in result else []) + rest


def _fmt(key: str, value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if math.isinf(value):
        return "inf"
    return f"{value:.2f}" if key == "psnr" else f"{value:.4f}"


def format_table(result: dict) -> str:
    """Markdown table of a result of :func:`evaluate_models` (or :func:`evaluate_pairs`):
    rows identity, then the models in order; columns :data:`METRICS` and ``pairs``
    (pairs with landmark metrics). Missing values read ``n/a``."""
    counts = result.get("n_pairs", {})
    lines = ["| | " + " | ".join(METRICS) + " | pairs |", "|---|" + "---:|" * (len(METRICS) + 1)]
    for name in _row_names(result):
        vals = result[name]
        lines.append(f"| {name} | " + " | ".join(_fmt(k, vals.get(k)) for k in METRICS)
                     + f" | {counts.get(name, 0)} |")
    return "\n".join(lines)


def format_au_table(result: dict) -> str:
    """Markdown table of the per-AU error ``|AU(output) - AU(target)|`` (intensity units
    0..5) of each row, one column per AU the estimator sees (:data:`fastwarp.face.VISIBLE_AUS`)."""
    lines = ["| | " + " | ".join(VISIBLE_AUS) + " |", "|---|" + "---:|" * len(VISIBLE_AUS)]
    for name in _row_names(result):
        vals = result[name]
        lines.append(f"| {name} | " + " | ".join(_fmt(k, vals.get(k)) for k in _AU_KEYS) + " |")
    return "\n".join(lines)


# --- the mesh path as an evaluated model ------------------------------------------------------

class MeshPathModel:
    """The mesh path (landmark motion + mesh texture, :class:`fastwarp.expression_editor.MeshMotion`)
    in the form :func:`evaluate_models` and :func:`write_grid` take: ``model(src, aus,
    src_aus)`` with an ``output``, ``warped``, ``texture`` and ``mask``. As in the pipeline,
    each source crop's landmarks are found by MediaPipe (a crop with no face is returned
    unedited); the maps are on the crop's grid.

    Args:
        motion: landmark motion checkpoint (path without suffix).
        texture: mesh texture checkpoint, or None for the mesh warp alone.
        size: the crops' side.
        mesh: a :class:`fastwarp.face.FaceMesh` in static image mode.
    """

    def __init__(self, motion: str | Path, texture: str | Path | None, size: int, mesh: FaceMesh) -> None:
        from types import SimpleNamespace

        from fastwarp.expression_editor import MeshMotion
        from fastwarp.models.landmark_motion import LandmarkMotion
        from fastwarp.models.mesh_texture import MeshTexture

        self.config = SimpleNamespace(image_size=size)
        self.motion = "mesh"  # write_grid shows the warped, texture and mask panels
        self.path = MeshMotion(LandmarkMotion.load(motion), MeshTexture.load(texture) if texture else None, size)
        self.detector = mesh

    def eval(self) -> "MeshPathModel":
        return self

    @torch.no_grad()
    def __call__(self, src: torch.Tensor, aus: torch.Tensor, src_aus: torch.Tensor):
        from types import SimpleNamespace

        from fastwarp import ops

        bgr = tensor_to_bgr(src)
        rows = {"output": [], "warped": [], "texture": [], "mask": []}
        for i in range(len(src)):
            faces = self.detector.detect(bgr[i])
            s = src[i:i + 1]
            if not faces:
                maps = (torch.zeros_like(s[:, :2]), torch.zeros_like(s), torch.ones_like(s[:, :1]))
            else:
                m = self.path.maps(bgr[i], faces[0], src_aus[i].numpy(), aus[i].numpy())
                maps = (m.flow, m.texture, m.mask)
            rows["output"].append(ops.warp_blend(s, *maps))
            rows["warped"].append(ops.warp(s, maps[0]))
            rows["texture"].append(maps[1])
            rows["mask"].append(maps[2])
        return SimpleNamespace(**{k: torch.cat(v) for k, v in rows.items()})


# --- picture grid --------------------------------------------------------------------------

def _panels(model: EditorNet) -> tuple[str, ...]:
    return ("output", "warped", "texture", "mask") if getattr(model, "motion", None) is not None else ("output",)


def grid_columns(models: Mapping[str, EditorNet]) -> list[tuple[str, str]]:
    """``(header line 1, header line 2)`` of every column of :func:`write_grid`, in order."""
    cols = [("source", ""), ("target", "")]
    for name, model in models.items():
        cols.extend((name, panel) for panel in _panels(model))
    return cols


def _put_label(img: np.ndarray, text: str, x: int, y: int, width: int, scale: float = 0.42) -> None:
    font = cv2.FONT_HERSHEY_SIMPLEX
    while text and cv2.getTextSize(text, font, scale, 1)[0][0] > width - 6:
        text = text[:-3] + ".." if len(text) > 3 else text[:-1]
    cv2.putText(img, text, (x + 3, y), font, scale, (255, 255, 255), 1, cv2.LINE_AA)


@torch.no_grad()
def write_grid(path: str | Path, models: Mapping[str, EditorNet], dataset: dict,
               pairs: Sequence[tuple[str, int, int]], n: int = 8) -> Path:
    """Write a PNG of ``n`` evenly spaced ``pairs`` (one row each), atomically.

    Columns (:func:`grid_columns`): source | target | per model: output, and for models
    with motion also warped (the source after the flow alone), texture and mask (grey,
    white = keep the warped pixel). Panels are shown at ``cell = max(S, GRID_MIN_CELL)`` px
    (crops, and maps on a smaller grid — ``config.map_size`` — upscaled nearest-neighbour);
    a ``GRID_HEADER`` px header row names each column (model name, panel), a 2 px grey line
    starts each model's group, and the source panel names the pair (video, source -> target
    row) on a dark strip along its bottom.
    The PNG is ``(GRID_HEADER + rows * cell) x (columns * cell)`` pixels, BGR.

    Returns:
        ``path``.
    Raises:
        ValueError: no pairs, ``n < 1``, or a model of another crop size; OSError: the PNG
            cannot be written.
    """
    if not pairs:
        raise ValueError("no pairs to draw")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    size = _check_models(models, dataset, pairs)
    pick = np.unique(np.linspace(0, len(pairs) - 1, min(n, len(pairs))).round().astype(int))
    chunk = [pairs[i] for i in pick]
    src, tgt, aus, src_aus = _batch(dataset, chunk)
    src_t = bgr_to_tensor(src)
    columns: list[np.ndarray] = [src, tgt]  # each [B, S, S, 3] uint8
    for model in models.values():
        model.eval()
        res = model(src_t, aus, src_aus)
        panels = {"output": res.output, "warped": res.warped, "texture": res.texture}
        for panel in _panels(model):
            if panel == "mask":
                grey = (res.mask[:, 0].clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
                columns.append(np.repeat(grey[..., None], 3, axis=-1))
            else:
                columns.append(tensor_to_bgr(panels[panel]))
    cell = max(size, GRID_MIN_CELL)
    labels = grid_columns(models)
    grid = np.full((GRID_HEADER + len(chunk) * cell, len(columns) * cell, 3), 32, np.uint8)
    for c, ((line1, line2), col) in enumerate(zip(labels, columns)):
        x = c * cell
        _put_label(grid, line1, x, 16, cell)
        _put_label(grid, line2, x, 33, cell)
        for r, img in enumerate(col):
            if img.shape[:2] != (cell, cell):  # crops under the minimum, or maps on a smaller grid
                interp = cv2.INTER_NEAREST if img.shape[0] <= cell else cv2.INTER_AREA
                img = cv2.resize(img, (cell, cell), interpolation=interp)
            grid[GRID_HEADER + r * cell:GRID_HEADER + (r + 1) * cell, x:x + cell] = img
    for c in np.cumsum([2] + [len(_panels(m)) for m in models.values()])[:-1]:  # model group separators
        grid[:, c * cell:c * cell + 2] = 160
    for r, (video, s, t) in enumerate(chunk):  # pair name on the source panel, on a dark strip
        y = GRID_HEADER + (r + 1) * cell
        grid[y - 14:y, :cell] //= 3
        _put_label(grid, f"{video} {s}->{t}", 0, y - 4, cell, scale=0.33)
    path = Path(path)
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), grid):
            raise OSError(f"OpenCV could not write {path}")
    return path


# --- CLI -----------------------------------------------------------------------------------

def _parse_weights(specs: Sequence[str] | None, ap: argparse.ArgumentParser) -> dict[str, Path]:
    """``NAME=PATH`` or ``PATH`` (named "model"; PATH may be a bundled name, "base" or
    "lite") → ``{name: checkpoint base}``; none: the bundled "base" weights as "full". Exits through ``ap.error`` naming a missing file."""
    out: dict[str, Path] = {}
    for spec in specs or [f"full={DEFAULT_WEIGHTS}"]:
        name, sep, path = spec.partition("=")
        if not sep or not name or "/" in name or "\\" in name:
            name, path = "model", spec
        if name in out:
            ap.error(f"--weights: model name {name!r} given twice (use NAME=PATH with distinct names)")
        if name in _RESERVED:
            ap.error(f"--weights: model name {name!r} is reserved")
        base = resolve_weights(path)  # a bundled name ("base", "lite") or a path
        missing = [str(p) for p in (base.with_suffix(".safetensors"), base.with_suffix(".json")) if not p.is_file()]
        if missing:
            ap.error(f"--weights {spec}: checkpoint file not found: {', '.join(missing)}")
        out[name] = base
    return out


def run_edit_metrics(faces: str | Path, weights: Mapping[str, Path], out: Path, progress: bool = True) -> dict:
    """:mod:`training.edit_metrics` (its CLI) for every model on the photos of ``faces``,
    into ``out/edits/<name>``; returns ``{name: its metrics}``."""
    from .edit_metrics import main as edit_metrics_main

    return {name: edit_metrics_main(["--faces", str(faces), "--weights", str(path), "--out", str(out / "edits" / name)]
                                    + ([] if progress else ["--no-progress"]))
            for name, path in weights.items()}


def main(argv: Sequence[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="dataset folder from `python -m training.data`")
    ap.add_argument("--weights", action="append", metavar="[NAME=]PATH",
                    help="checkpoint (path without suffix), repeatable; a bare PATH is named 'model' "
                         "(default: the bundled weights as 'full')")
    ap.add_argument("--mesh", action="append", metavar="NAME=MOTION[:TEXTURE]", default=[],
                    help="a mesh-path row: landmark motion checkpoint and optionally a mesh texture checkpoint "
                         "(paths without suffix; 'bundled' for the bundled motion / texture), repeatable")
    ap.add_argument("--out", default="runs/eval", help="folder for table.md, metrics.json, grid.png")
    ap.add_argument("--val-fraction", type=float, default=0.15, help="share of videos held out (by identity)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the split and of the pair draw")
    ap.add_argument("--pairs-per-video", type=int, default=12)
    ap.add_argument("--grid-pairs", type=int, default=8, help="rows of grid.png")
    ap.add_argument("--faces", default=None, help="also measure each model's photo edits (training.edit_metrics) "
                                                 "on this face set, into OUT/edits/NAME")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    weights = _parse_weights(args.weights, ap)
    if not Path(args.data).is_dir():
        ap.error(f"--data: no such folder {args.data}")
    if args.faces is not None and not (Path(args.faces) / "images").is_dir():
        ap.error(f"--faces: no images folder in {args.faces}")

    dataset = load_dataset(args.data)
    _, val = split_videos(sorted(dataset), args.val_fraction, args.seed, dataset_identities(args.data))
    pairs = validation_pairs(dataset, val, args.seed, args.pairs_per_video)
    if not pairs:
        raise SystemExit(f"no validation pairs in {args.data}: validation videos {val or 'none'} have no two frames "
                         "with head pose within 0.15 rad and some AU differing by >= 1")
    models = {name: EditorNet.load(path) for name, path in weights.items()}
    mesh = FaceMesh(static_image_mode=True)
    size = int(next(iter(dataset.values()))["crops"].shape[1])
    for spec in args.mesh:
        name, _, paths = spec.partition("=")
        motion, _, texture = paths.partition(":")
        if not name or not motion or name in models or name in _RESERVED:
            ap.error(f"--mesh {spec}: expected a new NAME=MOTION[:TEXTURE]")
        from fastwarp.expression_editor import MOTION_WEIGHTS, TEXTURE_WEIGHTS

        motion = MOTION_WEIGHTS if motion == "bundled" else motion
        texture = TEXTURE_WEIGHTS if texture == "bundled" else (texture or None)
        try:
            models[name] = MeshPathModel(motion, texture, size, mesh)
        except (FileNotFoundError, ValueError) as e:
            ap.error(f"--mesh {spec}: {e}")
        weights[name] = Path(f"{motion}" + (f" + {texture}" if texture else ""))
    try:
        result = evaluate_models(models, dataset, pairs, mesh, progress=not args.no_progress)
        _write_results(args, val, pairs, weights, models, dataset, result)
    finally:
        mesh.close()
    if args.faces is not None:  # (the editor networks; the photo edits of the mesh path: training.edit_metrics)
        nets = {n: p for n, p in weights.items() if not isinstance(models[n], MeshPathModel)}
        run_edit_metrics(args.faces, nets, Path(args.out), progress=not args.no_progress)
    return result


def _write_results(args, val, pairs, weights, models, dataset, result) -> None:
    """table.md, metrics.json and grid.png of an evaluation, into ``args.out``."""
    out = Path(args.out)
    table, au_table = format_table(result), format_au_table(result)
    sources = ", ".join(f"{n} = `{p}`" for n, p in weights.items())
    text = (f"# Edit quality on held-out pairs\n\nData: `{args.data}`; validation videos (held out by identity, "
            f"seed {args.seed}): {', '.join(val)}; {len(pairs)} pairs (head pose within 0.15 rad, some AU "
            f"differing by >= 1); psnr_mouth over the {result.get('mouth_pairs', 0)} of them where the mouth opens."
            f"\nModels: {sources}.\n\n## Metrics\n\n{table}\n\n## AU error per AU "
            f"(intensity units 0..5)\n\n{au_table}\n\n## Legend\n\n{LEGEND}\n")
    metrics = {"data": str(args.data), "seed": args.seed, "validation_videos": val,
               "weights": {n: str(p) for n, p in weights.items()},
               "pairs": [list(p) for p in pairs], "result": result}
    paths = {"table": out / "table.md", "metrics": out / "metrics.json", "grid": out / "grid.png"}
    with atomic_path(paths["table"]) as tmp:
        tmp.write_text(text)
    with atomic_path(paths["metrics"]) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2) + "\n")  # psnr may be Infinity (Python's JSON)
    write_grid(paths["grid"], models, dataset, pairs, n=args.grid_pairs)
    print(f"validation videos: {', '.join(val)}; {len(pairs)} pairs")
    print(table)
    print()
    print(au_table)
    for p in paths.values():
        print(f"wrote {p}")


if __name__ == "__main__":
    main()

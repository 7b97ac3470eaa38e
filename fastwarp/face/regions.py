"""Face regions at the face's own resolution: each eye and the mouth, cut from the frame by a
similarity transform aligned to the eye line (issue 19; docs/design.md, "Data flow").

A region is a small ``H x W`` image whose pixel centres sit at integers (as everywhere in
fastwarp); :func:`region_matrix` maps frame pixels to it (OpenCV ``warpAffine`` convention,
``region_xy = M[:, :2] @ frame_xy + M[:, 2]``):

- ``eye`` (:data:`EYE`): centred on the eye (the midpoint of its corners) raised by
  0.05 IOD, :data:`EYE`'s ``span`` IOD wide (about two eye widths: lid crease and lower brow
  down to the top of the cheek), x along the eye line. The subject's LEFT eye (the image's
  right on a frontal face) is mirrored, so both eyes look alike: outer corner on the
  region's left, inner corner (nose) on its right. One model serves both.
- ``mouth`` (:data:`MOUTH`): anchored to the subnasale (landmark 2), not to the lips, so
  the region stays put on the face while the lips and jaw move inside it; it spans the lips,
  the cavity of an open mouth, the nasolabial folds and the cheeks beside the corners.

IOD is the outer-eye-corner distance (landmarks 33-263). Anchoring on the eye corners and
the nose keeps a region still when the expression changes: two frames of one face in one
pose give regions in which only the expression moves.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .landmarks import (
    INNER_LIPS,
    LEFT_EYE,
    LEFT_EYE_INNER,
    LEFT_EYE_OUTER,
    NUM_LANDMARKS,
    OUTER_LIPS,
    RIGHT_EYE,
    RIGHT_EYE_INNER,
    RIGHT_EYE_OUTER,
)

__all__ = ["RegionSpec", "EYE", "MOUTH", "REGIONS", "SUBNASALE", "eye_line_axes", "eye_gap_of_points", "region_matrix",
           "region_footprint",
           "region_matrices", "to_region", "cut_region", "eye_gap", "mouth_gap", "contour_map",
           "RIGHT_UPPER_LID", "RIGHT_LOWER_LID", "LEFT_UPPER_LID", "LEFT_LOWER_LID",
           "UPPER_INNER_LIP", "LOWER_INNER_LIP", "UPPER_OUTER_LIP", "LOWER_OUTER_LIP"]

SUBNASALE = 2


@dataclass(frozen=True)
class RegionSpec:
    """Where a region sits on the face and its size.

    Attributes:
        kind: ``"eye"`` or ``"mouth"``.
        height, width: the region in pixels.
        span: the region's width in IOD units (its scale: ``width / (span * IOD)`` region
            pixels per frame pixel).
        offset: ``(dx, dy)`` of the region's centre from its anchor, IOD units in the eye-line
            frame (x towards the image's right on a frontal face, y towards the chin).
    """

    kind: str
    height: int
    width: int
    span: float
    offset: tuple[float, float]


#: Each eye: 64 x 128 px over 0.64 IOD (an eye about 58 px wide, 0.29 IOD).
EYE = RegionSpec("eye", 64, 128, 0.64, (0.0, -0.05))
#: The mouth: 128 x 128 px over 1.1 IOD, centred 0.42 IOD below the subnasale (nostrils to chin).
MOUTH = RegionSpec("mouth", 128, 128, 1.1, (0.0, 0.42))
REGIONS = {"eye": EYE, "mouth": MOUTH}


def _split(loop: tuple[int, ...], start: int, end: int, upper: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The two halves of a contour loop, each from landmark ``start`` to ``end``: the one
    through landmark ``upper`` first."""
    i, j = loop.index(start), loop.index(end)
    n = len(loop)
    a = tuple(loop[(i + k) % n] for k in range((j - i) % n + 1))
    b = tuple(loop[(i - k) % n] for k in range((i - j) % n + 1))
    return (a, b) if upper in a else (b, a)


#: Each eye's lids, outer to inner corner (159 / 386: the upper lid's middle).
RIGHT_UPPER_LID, RIGHT_LOWER_LID = _split(RIGHT_EYE, RIGHT_EYE_OUTER, RIGHT_EYE_INNER, 159)
LEFT_UPPER_LID, LEFT_LOWER_LID = _split(LEFT_EYE, LEFT_EYE_OUTER, LEFT_EYE_INNER, 386)
#: The inner and outer lip lines' upper and lower halves, corner to corner (13 / 0: the upper lip's middle).
UPPER_INNER_LIP, LOWER_INNER_LIP = _split(INNER_LIPS, 78, 308, 13)
UPPER_OUTER_LIP, LOWER_OUTER_LIP = _split(OUTER_LIPS, 61, 291, 0)


def _batch(landmarks: np.ndarray) -> np.ndarray:
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim != 3 or lm.shape[1] != NUM_LANDMARKS or lm.shape[2] not in (2, 3):
        raise ValueError(f"landmarks must have shape [N, {NUM_LANDMARKS}, 2 or 3], got {lm.shape}")
    if not np.isfinite(lm).all():
        raise ValueError("landmarks contain NaN or inf")
    return lm[..., :2]


def eye_line_axes(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(ex, ey, iod)`` of ``[N, 478, 2|3]`` landmarks: unit x along the eye line (right eye
    centre -> left eye centre), unit y perpendicular towards the chin, and the outer-corner
    distance in pixels (each ``[N, 2]``, ``[N, 2]``, ``[N]``).

    Raises:
        ValueError: bad shape, non-finite values, coincident eye corners.
    """
    p = _batch(landmarks)
    rc = 0.5 * (p[:, RIGHT_EYE_OUTER] + p[:, RIGHT_EYE_INNER])
    lc = 0.5 * (p[:, LEFT_EYE_OUTER] + p[:, LEFT_EYE_INNER])
    iod = np.linalg.norm(p[:, LEFT_EYE_OUTER] - p[:, RIGHT_EYE_OUTER], axis=-1)
    ex = lc - rc
    norm = np.linalg.norm(ex, axis=-1, keepdims=True)
    if (iod <= 1e-6).any() or (norm <= 1e-6).any():
        raise ValueError("degenerate landmarks: eye corners coincide")
    ex = ex / norm
    ey = np.stack([-ex[:, 1], ex[:, 0]], axis=-1)
    return ex, ey, iod


def region_matrix(landmarks: np.ndarray, spec: RegionSpec, side: str | None = None) -> np.ndarray:
    """Frame -> region similarity transforms, float64 ``[N, 2, 3]``.

    Args:
        landmarks: ``[N, 478, 2|3]`` FaceMesh landmarks in frame pixels.
        spec: :data:`EYE` or :data:`MOUTH` (or another :class:`RegionSpec` of those kinds).
        side: for an eye, ``"right"`` (the subject's right eye, landmarks 33/133) or ``"left"``
            (263/362, mirrored); None for the mouth.
    Raises:
        ValueError: bad landmarks, an eye without a side, an unknown kind.
    """
    p = _batch(landmarks)
    ex, ey, iod = eye_line_axes(p)
    mirror = False
    if spec.kind == "eye":
        if side == "right":
            anchor = 0.5 * (p[:, RIGHT_EYE_OUTER] + p[:, RIGHT_EYE_INNER])
        elif side == "left":
            anchor = 0.5 * (p[:, LEFT_EYE_OUTER] + p[:, LEFT_EYE_INNER])
            mirror = True
        else:
            raise ValueError(f"an eye region needs side='right' or 'left', got {side!r}")
    elif spec.kind == "mouth":
        if side is not None:
            raise ValueError(f"the mouth region has no side, got {side!r}")
        anchor = p[:, SUBNASALE]
    else:
        raise ValueError(f"unknown region kind {spec.kind!r} (expected 'eye' or 'mouth')")
    centre = anchor + (spec.offset[0] * ex + spec.offset[1] * ey) * iod[:, None]
    s = spec.width / (spec.span * iod)  # region px per frame px
    sx = -s if mirror else s
    m = np.zeros((len(p), 2, 3))
    m[:, 0, :2] = sx[:, None] * ex
    m[:, 1, :2] = s[:, None] * ey
    c = np.array([(spec.width - 1) / 2.0, (spec.height - 1) / 2.0])
    m[:, :, 2] = c - np.einsum("nij,nj->ni", m[:, :, :2], centre)
    return m


def region_footprint(landmarks: np.ndarray, spec: RegionSpec, side: str | None, x: np.ndarray,
                     y: np.ndarray) -> np.ndarray:
    """Whether the points ``(x, y)`` (arrays of one shape, in the landmarks' pixels) fall inside
    the region of ``spec`` and ``side`` (:func:`region_matrix`) cut at ``landmarks`` ``[478, 2|3]``:
    bool, of that shape (inside the region's pixel centres' extent, half a pixel of margin)."""
    m = region_matrix(np.asarray(landmarks, np.float64)[None, :, :2], spec, side)[0]
    u = m[0, 0] * x + m[0, 1] * y + m[0, 2]
    v = m[1, 0] * x + m[1, 1] * y + m[1, 2]
    return (u >= -0.5) & (u <= spec.width - 0.5) & (v >= -0.5) & (v <= spec.height - 0.5)


def region_matrices(landmarks: np.ndarray, kind: str) -> np.ndarray:
    """All regions of ``kind`` of ``[N, 478, 2|3]`` faces: ``[N, 2, 2, 3]`` (right eye, left eye
    mirrored) for ``"eye"``, ``[N, 2, 3]`` for ``"mouth"``."""
    if kind == "eye":
        return np.stack([region_matrix(landmarks, EYE, "right"), region_matrix(landmarks, EYE, "left")], axis=1)
    if kind == "mouth":
        return region_matrix(landmarks, MOUTH)
    raise ValueError(f"unknown region kind {kind!r} (expected 'eye' or 'mouth')")


def to_region(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Points ``[..., P, 2|3]`` (frame pixels) through ``matrix`` ``[..., 2, 3]``: ``[..., P, 2]``
    in region pixels, float32."""
    pts = np.asarray(points, dtype=np.float64)[..., :2]
    m = np.asarray(matrix, dtype=np.float64)
    return (np.einsum("...ij,...pj->...pi", m[..., :2], pts) + m[..., None, :, 2]).astype(np.float32)


def cut_region(frame: np.ndarray, matrix: np.ndarray, spec: RegionSpec) -> tuple[np.ndarray, float]:
    """The region of ``frame`` (``[H, W, C]`` uint8) under ``matrix`` (``[2, 3]``, frame ->
    region): ``(region [spec.height, spec.width, C] uint8, inside)``.

    Where the region is smaller than its footprint (scale < 1), the footprint is first
    area-downsampled (``cv2.INTER_AREA``) to about the region's scale, so a 1080p face does
    not alias; then one bilinear ``warpAffine`` with replicated borders. ``inside`` is the
    fraction of the region's pixel centres that fall inside the frame.
    """
    m = np.asarray(matrix, dtype=np.float64)
    H, W = frame.shape[:2]
    inv = cv2.invertAffineTransform(m)
    ys, xs = np.mgrid[0:spec.height, 0:spec.width]
    fx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    fy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    inside = float(((fx >= -0.5) & (fx <= W - 0.5) & (fy >= -0.5) & (fy <= H - 0.5)).mean())
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    src, mm = frame, m
    if scale < 0.8:
        # Cut the footprint's bounding box (with a margin), shrink it by the region's scale
        # with pixel-area averaging, and warp from that: (x + 0.5) * f - 0.5 maps a pixel
        # centre of the box to the shrunk box.
        pad = 4.0 / scale
        x0, x1 = int(max(np.floor(fx.min() - pad), 0)), int(min(np.ceil(fx.max() + pad), W - 1))
        y0, y1 = int(max(np.floor(fy.min() - pad), 0)), int(min(np.ceil(fy.max() + pad), H - 1))
        if x1 > x0 and y1 > y0:
            box = frame[y0:y1 + 1, x0:x1 + 1]
            bw, bh = box.shape[1], box.shape[0]
            nw, nh = max(int(round(bw * scale)), 2), max(int(round(bh * scale)), 2)
            src = cv2.resize(box, (nw, nh), interpolation=cv2.INTER_AREA)
            fxs, fys = nw / bw, nh / bh
            # small-box pixel u = (x - x0 + 0.5) * fxs - 0.5  =>  x = (u + 0.5) / fxs - 0.5 + x0
            to_frame = np.array([[1 / fxs, 0, 0.5 / fxs - 0.5 + x0], [0, 1 / fys, 0.5 / fys - 0.5 + y0]])
            mm = m[:, :2] @ to_frame[:, :2]
            mm = np.concatenate([mm, (m[:, :2] @ to_frame[:, 2] + m[:, 2])[:, None]], axis=1)
    region = cv2.warpAffine(src, mm, (spec.width, spec.height), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    return region, inside


_EYE_PAIRS = {"right": ((159, 145), (158, 153), (160, 144)), "left": ((386, 374), (385, 380), (387, 373))}
#: The same as index arrays, (right, left) eye: corners [2 (outer, inner), 2], lid pairs [2 (upper, lower), 2, 3].
_EYE_CORNERS = np.array([[RIGHT_EYE_OUTER, LEFT_EYE_OUTER], [RIGHT_EYE_INNER, LEFT_EYE_INNER]])
_EYE_LIDS = np.array([[[a for a, _ in _EYE_PAIRS[side]] for side in ("right", "left")],
                      [[b for _, b in _EYE_PAIRS[side]] for side in ("right", "left")]])


def eye_gap(landmarks: np.ndarray) -> np.ndarray:
    """The lid gap of each eye in eye widths (the mean of three upper/lower lid distances over
    the corner distance): ``[N, 2]`` (right, left) float32; about 0.3 open, under 0.12 closed."""
    return eye_gap_of_points(_batch(landmarks)).astype(np.float32)


def eye_gap_of_points(points: np.ndarray) -> np.ndarray:
    """:func:`eye_gap` of any FaceMesh points ``[N, V, 2]`` (V >= 468: landmarks, or the face
    mesh's vertices with its ring), unchecked, in their dtype: ``[N, 2]`` (right, left)."""
    width = np.linalg.norm(points[:, _EYE_CORNERS[0]] - points[:, _EYE_CORNERS[1]], axis=-1)  # [N, 2]
    gap = np.linalg.norm(points[:, _EYE_LIDS[0]] - points[:, _EYE_LIDS[1]], axis=-1).mean(-1)  # [N, 2, 3] -> [N, 2]
    return gap / np.maximum(width, 1e-6)


def mouth_gap(landmarks: np.ndarray) -> np.ndarray:
    """The inner-lip gap in IOD units (mean of the pairs 13-14, 82-87, 312-317): ``[N]``
    float32 (the measure of AU25/AU26: 0 closed, 0.08 parted, 0.2 wide open)."""
    p = _batch(landmarks)
    _, _, iod = eye_line_axes(p)
    gap = np.mean([np.linalg.norm(p[:, a] - p[:, b], axis=-1) for a, b in ((13, 14), (82, 87), (312, 317))], axis=0)
    return (gap / iod).astype(np.float32)


def contour_map(region_landmarks: np.ndarray, kind: str, height: int, width: int, side: str = "right") -> np.ndarray:
    """The region's target contours, rasterised: float32 ``[2, height, width]`` in 0..1.

    Eye: channel 0 the upper lid, channel 1 the lower lid (antialiased 1 px polylines from
    corner to corner). Mouth: channel 0 the inner lip line (both halves), channel 1 the outer
    lip line. ``region_landmarks`` ``[478, 2]`` are in region pixels; ``side`` names the eye whose
    contour to draw (a mirrored left eye's landmarks were mirrored with it).
    """
    if kind == "eye":
        upper, lower = (RIGHT_UPPER_LID, RIGHT_LOWER_LID) if side == "right" else (LEFT_UPPER_LID, LEFT_LOWER_LID)
        lines = ([upper], [lower])
    elif kind == "mouth":
        lines = ([UPPER_INNER_LIP, LOWER_INNER_LIP], [UPPER_OUTER_LIP, LOWER_OUTER_LIP])
    else:
        raise ValueError(f"unknown region kind {kind!r} (expected 'eye' or 'mouth')")
    out = np.zeros((2, height, width), np.float32)
    shift = 4  # sub-pixel vertices (1/16 px), so the raster follows the landmarks, not their rounding
    for c, chains in enumerate(lines):
        canvas = np.zeros((height, width), np.uint8)
        for chain in chains:
            pts = np.round(np.asarray(region_landmarks, np.float64)[list(chain), :2] * (1 << shift)).astype(np.int32)
            cv2.polylines(canvas, [pts], False, 255, 1, cv2.LINE_AA, shift)
        out[c] = canvas / 255.0
    return out

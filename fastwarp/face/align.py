"""Similarity alignment of a face into a square crop, a feathered face mask, and paste-back.

The crop is defined by a similarity transform (rotation, uniform scale, translation) that
maps a few expression-stable landmarks (eye corners, nose ridge) onto a canonical
template. Mouth and brow points are deliberately left out of the fit so the crop does not
move when the expression changes: an edited face must go back exactly where it came from.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .landmarks import FACE_OVAL, NUM_LANDMARKS, check_bgr_image

# Stable landmarks: outer/inner eye corners and the nose ridge from the bridge (168) to
# the subnasale (2).
_ALIGN_POINTS = (33, 133, 362, 263, 168, 6, 197, 195, 5, 4, 1, 2)
# Their median positions in the eye-line frame (origin between the eye centres, x towards
# the subject's left eye, y towards the chin, unit = outer-eye-corner distance), measured
# over 2731 FaceMesh faces of shared/data/faces (51 photos + 40 frames of each of the 67
# videos); x of the nose ridge set to 0 by symmetry.
_TEMPLATE_IOD = np.array([
    [-0.499, -0.010], [-0.196, 0.010], [0.196, 0.008], [0.501, -0.008],
    [0.0, -0.057], [0.0, 0.033], [0.0, 0.112], [0.0, 0.186],
    [0.0, 0.266], [0.0, 0.364], [0.0, 0.439], [0.0, 0.513],
])
# Same data: brow tops at y = -0.30 (median), chin at 1.33 (1.52 at the 95th percentile,
# i.e. jaw drops), face-oval sides at x = ±0.79. The crop is centred between -0.45 (brows
# plus a strip of forehead, so raised brows stay inside) and 1.52 (open-jaw chin); its side
# is ``face_scale`` times the brow-to-chin height (default 1.2 → 1.96 IOD, leaving about
# 0.2 IOD of background beside the cheeks).
_FACE_TOP, _FACE_CHIN = -0.30, 1.33
_FACE_HEIGHT = _FACE_CHIN - _FACE_TOP
_CROP_CENTRE_Y = 0.5 * (-0.45 + 1.52)
DEFAULT_FACE_SCALE = 1.2


@dataclass
class FaceCrop:
    """An aligned face crop and how it relates to its frame.

    Attributes:
        image: ``[S, S, 3]`` uint8 BGR crop.
        matrix: ``[2, 3]`` float64 similarity transform, frame pixel coords → crop pixel
            coords (``crop_xy = matrix[:, :2] @ frame_xy + matrix[:, 2]``; OpenCV
            ``warpAffine`` convention).
        size: crop side ``S`` in pixels.
        landmarks: float32 ``[478, 2 or 3]`` in crop pixel coords (z, if given, multiplied
            by the transform's scale).
    """

    image: np.ndarray
    matrix: np.ndarray
    size: int
    landmarks: np.ndarray

    @property
    def scale(self) -> float:
        """Crop pixels per frame pixel."""
        return float(np.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))

    @property
    def inverse_matrix(self) -> np.ndarray:
        """``[2, 3]`` float64: crop pixel coords → frame pixel coords."""
        return cv2.invertAffineTransform(self.matrix)


def _check_frame(frame_bgr: np.ndarray, name: str = "frame") -> np.ndarray:
    return check_bgr_image(frame_bgr, name)


def _check_landmarks(landmarks: np.ndarray) -> np.ndarray:
    lm = np.asarray(landmarks)
    if lm.ndim != 2 or lm.shape[0] != NUM_LANDMARKS or lm.shape[1] not in (2, 3):
        raise ValueError(f"landmarks must have shape [{NUM_LANDMARKS}, 2 or 3], got {lm.shape}")
    if not np.isfinite(lm).all():
        raise ValueError("landmarks contain NaN or inf")
    return lm


def _check_size(size: int) -> int:
    if not isinstance(size, (int, np.integer)) or size < 16:
        raise ValueError(f"crop size must be an int >= 16, got {size!r}")
    return int(size)


def canonical_template(size: int, face_scale: float = DEFAULT_FACE_SCALE) -> np.ndarray:
    """Template positions of the alignment landmarks in a ``size``-pixel crop.

    Args:
        size: crop side in pixels.
        face_scale: crop side / template brow-to-chin height (> 1 leaves a margin).
    Returns:
        float64 ``[12, 2]`` crop pixel coords of ``_ALIGN_POINTS``.
    """
    side_iod = face_scale * _FACE_HEIGHT
    centred = _TEMPLATE_IOD - np.array([0.0, _CROP_CENTRE_Y])
    return size * (0.5 + centred / side_iod)


def _umeyama_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (no reflection) mapping ``src`` [N,2] onto ``dst`` [N,2].

    Closed form (Umeyama 1991) rather than ``cv2.estimateAffinePartial2D``: that one
    only offers RANSAC/LMEDS, whose random sampling would make crops non-deterministic.
    """
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var_s = (s ** 2).sum() / len(src)
    if var_s <= 1e-12:
        raise ValueError("degenerate landmarks: alignment points coincide")
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    e = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rot = u @ e @ vt
    scale = float((sig * np.diag(e)).sum() / var_s)
    m = np.empty((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def alignment_matrix(landmarks: np.ndarray, size: int = 128, *,
                     face_scale: float = DEFAULT_FACE_SCALE) -> np.ndarray:
    """The similarity transform :func:`align_face` crops with, without cropping (e.g. to
    choose the crop size from its scale first).

    Args:
        landmarks: ``[478, 2 or 3]`` FaceMesh landmarks of one face in frame pixels.
        size: crop side ``S`` in pixels (>= 16).
        face_scale: as in :func:`align_face`.
    Returns:
        float64 ``[2, 3]``: frame pixel coords → crop pixel coords (``warpAffine`` convention).
    Raises:
        ValueError: bad landmarks, size or face_scale.
    """
    lm = _check_landmarks(landmarks)
    size = _check_size(size)
    if not face_scale > 0:
        raise ValueError(f"face_scale must be > 0, got {face_scale!r}")
    src = lm[list(_ALIGN_POINTS), :2].astype(np.float64)
    return _umeyama_similarity(src, canonical_template(size, face_scale))


def align_face(frame_bgr: np.ndarray, landmarks: np.ndarray, size: int = 128, *,
               face_scale: float = DEFAULT_FACE_SCALE) -> FaceCrop:
    """Crop the face with a similarity transform onto the canonical template.

    The crop spans from a little above the brows to just below an open-jaw chin (about
    ``1.96`` inter-ocular distances at the default ``face_scale``), eyes level, face
    centred. Outside the frame the border pixels are replicated.

    Args:
        frame_bgr: ``[H, W, 3]`` uint8 BGR frame.
        landmarks: ``[478, 2 or 3]`` FaceMesh landmarks of one face in frame pixels.
        size: crop side ``S`` in pixels (>= 16).
        face_scale: crop side / brow-to-chin height of the template (> 0; 1.2 keeps a
            small margin, smaller values crop tighter).
    Returns:
        :class:`FaceCrop` with the ``[S, S, 3]`` uint8 crop.
    Raises:
        ValueError: bad frame, landmarks, size or face_scale.
    """
    frame = _check_frame(frame_bgr)
    lm = _check_landmarks(landmarks)
    size = _check_size(size)
    matrix = alignment_matrix(lm, size, face_scale=face_scale)
    crop = cv2.warpAffine(frame, matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    out_lm = lm.astype(np.float64).copy()
    out_lm[:, :2] = lm[:, :2] @ matrix[:, :2].T + matrix[:, 2]
    if lm.shape[1] == 3:
        out_lm[:, 2] *= np.sqrt(abs(np.linalg.det(matrix[:, :2])))
    return FaceCrop(image=crop, matrix=matrix, size=size, landmarks=out_lm.astype(np.float32))


def face_mask(crop_landmarks: np.ndarray, size: int, feather: int | None = None) -> np.ndarray:
    """Soft mask of the face oval in crop coordinates.

    The filled face-oval polygon is eroded by ``feather`` pixels (square structuring
    element) and then blurred with a Gaussian whose support is the same square, so the
    mask is exactly 0 outside the oval and smoothly reaches 1 about ``2·feather`` pixels
    inside it.

    Args:
        crop_landmarks: ``[478, 2 or 3]`` landmarks in crop pixel coords.
        size: crop side ``S``.
        feather: transition width in pixels (>= 0); default ``round(S / 20)``.
    Returns:
        float32 ``[S, S]`` in [0, 1].
    Raises:
        ValueError: bad landmarks, size or feather.
    """
    lm = _check_landmarks(crop_landmarks)
    size = _check_size(size)
    if feather is None:
        feather = max(1, round(size / 20))
    if not isinstance(feather, (int, np.integer)) or feather < 0:
        raise ValueError(f"feather must be an int >= 0, got {feather!r}")
    poly = np.round(lm[list(FACE_OVAL), :2] * 16).astype(np.int32)  # 4 fractional bits
    hard = np.zeros((size, size), np.uint8)
    cv2.fillPoly(hard, [poly], 255, lineType=cv2.LINE_8, shift=4)
    if feather == 0:
        return (hard > 0).astype(np.float32)
    k = 2 * feather + 1
    eroded = cv2.erode(hard, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)),
                       borderType=cv2.BORDER_CONSTANT, borderValue=0)
    soft = cv2.GaussianBlur(eroded.astype(np.float32) / 255.0, (k, k), feather / 2.0,
                            borderType=cv2.BORDER_CONSTANT)
    # Erode-by-square then blur-by-same-square stays inside the polygon; the product makes
    # "exactly 0 outside" hold even for rounding at the edges.
    soft *= (hard > 0)
    return np.clip(soft, 0.0, 1.0).astype(np.float32)


def paste_back(frame_bgr: np.ndarray, edited_crop_bgr: np.ndarray, crop: FaceCrop,
               mask: np.ndarray | None = None) -> np.ndarray:
    """Warp an edited crop back into its frame and blend it in under the face mask.

    Only the bounding box of the back-warped nonzero mask is touched; every pixel where
    the back-warped mask is exactly 0 is bit-identical to ``frame_bgr``. The input is
    never modified.

    Args:
        frame_bgr: ``[H, W, 3]`` uint8 BGR frame the crop was taken from.
        edited_crop_bgr: ``[S, S, 3]`` BGR crop, uint8 or float in 0..255.
        crop: the :class:`FaceCrop` from :func:`align_face` on this frame.
        mask: ``[S, S]`` float in [0, 1] (default :func:`face_mask` of the crop landmarks).
    Returns:
        New ``[H, W, 3]`` uint8 frame.
    Raises:
        ValueError: shape/dtype mismatches or a mask outside [0, 1].
    """
    frame = _check_frame(frame_bgr)
    s = crop.size
    edited = np.asarray(edited_crop_bgr)
    if edited.shape != (s, s, 3):
        raise ValueError(f"edited crop must have shape ({s}, {s}, 3), got {edited.shape}")
    if not (edited.dtype == np.uint8 or np.issubdtype(edited.dtype, np.floating)):
        raise ValueError(f"edited crop must be uint8 or float in 0..255, got dtype {edited.dtype}")
    if mask is None:
        mask = face_mask(crop.landmarks, s)
    mask = np.asarray(mask, dtype=np.float32)
    if mask.shape != (s, s):
        raise ValueError(f"mask must have shape ({s}, {s}), got {mask.shape}")
    if not (np.isfinite(mask).all() and mask.min() >= 0.0 and mask.max() <= 1.0):
        raise ValueError("mask values must lie in [0, 1]")

    out = frame.copy()
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return out
    inv = crop.inverse_matrix
    # Frame-space bounding box of the nonzero mask (+1 px for bilinear spill).
    corners = np.array([[xs.min() - 1, ys.min() - 1], [xs.max() + 1, ys.min() - 1],
                        [xs.min() - 1, ys.max() + 1], [xs.max() + 1, ys.max() + 1]], np.float64)
    fc = corners @ inv[:, :2].T + inv[:, 2]
    h, w = frame.shape[:2]
    x0, y0 = max(int(np.floor(fc[:, 0].min())), 0), max(int(np.floor(fc[:, 1].min())), 0)
    x1, y1 = min(int(np.ceil(fc[:, 0].max())) + 1, w), min(int(np.ceil(fc[:, 1].max())) + 1, h)
    if x0 >= x1 or y0 >= y1:
        return out
    # Map ROI pixel → crop pixel: crop matrix composed with the ROI offset.
    m_roi = crop.matrix.copy()
    m_roi[:, 2] += crop.matrix[:, :2] @ np.array([x0, y0], np.float64)
    dsize = (x1 - x0, y1 - y0)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    m_back = cv2.warpAffine(mask, m_roi, dsize, flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    face = cv2.warpAffine(edited.astype(np.float32), m_roi, dsize, flags=flags,
                          borderMode=cv2.BORDER_REPLICATE)
    roi = frame[y0:y1, x0:x1].astype(np.float32)
    a = m_back[..., None]
    blended = np.clip(np.rint(roi * (1.0 - a) + np.clip(face, 0, 255) * a), 0, 255).astype(np.uint8)
    out[y0:y1, x0:x1] = np.where(a > 0, blended, frame[y0:y1, x0:x1])
    return out

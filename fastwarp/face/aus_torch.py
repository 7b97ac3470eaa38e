"""The geometric AU estimator of :mod:`fastwarp.face.aus` in PyTorch: differentiable, batched,
on any device, for training losses (the AU-consistency loss of the landmark motion model:
moved landmarks must read the target AUs, GANimation's AU-regression term with an exact
regressor).

:func:`estimate_aus_torch` returns the same numbers as
:func:`fastwarp.face.estimate_aus_batch` (tested against it in float64); the numpy module
stays the runtime estimator and the independent reference. ``raw=True`` returns the read-outs
before the final 0..5 clip and with unclipped feature scores, a piecewise-linear extension
that still has a gradient where the clipped estimate is flat (a face whose brows sit below
the "neutral" calibration value reads AU01 = 0 whatever a small raise does; the raw value
says how far it is from reading anything).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..au import AU_INDEX, AU_MAX, NUM_AUS
from .aus import (
    _ALIASES,
    _CALIBRATION,
    _CHIN,
    _EYE_VERTICAL_PAIRS,
    _INNER_BROW,
    _INNER_LIP_PAIRS,
    _LIP_CORNERS,
    _LOWER_LID,
    _LOWER_LIP_BOTTOM,
    _LOWER_LIP_INNER,
    _OUTER_BROW,
    _SUBNASALE,
    _UPPER_LIP_INNER,
    _UPPER_LIP_TOP,
)
from .landmarks import (
    LEFT_BROW,
    LEFT_EYE_INNER,
    LEFT_EYE_OUTER,
    RIGHT_BROW,
    RIGHT_EYE_INNER,
    RIGHT_EYE_OUTER,
)

__all__ = ["estimate_aus_torch", "eye_line_frame_torch", "eye_line_transform", "to_eye_line", "from_eye_line",
           "feature_scores", "COMPOSITE_AUS"]


def eye_line_frame_torch(landmarks: Tensor) -> Tensor:
    """:func:`fastwarp.face.aus.eye_line_frame` in torch: landmarks in the eye-line frame
    (origin between the eye centres, x towards the subject's left eye, y towards the chin,
    unit = outer-eye-corner distance).

    Args:
        landmarks (Tensor[N, V, 2 or 3]): floating point, V >= 468 (FaceMesh order); z ignored.
    Returns:
        Tensor[N, V, 2] in the input's dtype.
    Raises:
        ValueError: wrong shape or dtype.
    """
    if landmarks.ndim != 3 or landmarks.shape[1] < 468 or landmarks.shape[2] not in (2, 3):
        raise ValueError(f"landmarks must have shape [N, >=468, 2 or 3], got {tuple(landmarks.shape)}")
    if not landmarks.is_floating_point():
        raise ValueError(f"landmarks must be floating point, got {landmarks.dtype}")
    return to_eye_line(landmarks, *eye_line_transform(landmarks))


def eye_line_transform(landmarks: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The similarity of :func:`eye_line_frame_torch`: ``(origin [N, 2], ex [N, 2], iod [N])``
    with ``pixel = origin + iod * (q_x ex + q_y ey)``, ``ey = (-ex_y, ex_x)`` (the chin side)."""
    p = landmarks[..., :2]
    rc = 0.5 * (p[:, RIGHT_EYE_OUTER] + p[:, RIGHT_EYE_INNER])
    lc = 0.5 * (p[:, LEFT_EYE_OUTER] + p[:, LEFT_EYE_INNER])
    iod = torch.linalg.vector_norm(p[:, LEFT_EYE_OUTER] - p[:, RIGHT_EYE_OUTER], dim=-1)
    ex = (lc - rc) / torch.linalg.vector_norm(lc - rc, dim=-1, keepdim=True)
    return 0.5 * (rc + lc), ex, iod


def to_eye_line(landmarks: Tensor, origin: Tensor, ex: Tensor, iod: Tensor) -> Tensor:
    """``landmarks`` ``[N, V, 2+]`` in the eye-line frame of :func:`eye_line_transform`'s output."""
    ey = torch.stack([-ex[:, 1], ex[:, 0]], dim=-1)
    rel = landmarks[..., :2] - origin[:, None]
    q = torch.stack([(rel * ex[:, None]).sum(-1), (rel * ey[:, None]).sum(-1)], dim=-1)
    return q / iod[:, None, None]


def from_eye_line(vectors: Tensor, ex: Tensor, iod: Tensor) -> Tensor:
    """Displacements ``[N, V, 2]`` in the eye-line frame (IOD units) back to pixels."""
    ey = torch.stack([-ex[:, 1], ex[:, 0]], dim=-1)
    return (vectors[..., :1] * ex[:, None] + vectors[..., 1:] * ey[:, None]) * iod[:, None, None]


def _features(q: Tensor) -> dict[str, Tensor]:
    def dist(a, b):
        return torch.linalg.vector_norm(q[:, a] - q[:, b], dim=-1)

    def height(idx):
        return -q[:, list(idx), 1].mean(dim=1)

    def mean_dist(pairs):
        return torch.stack([dist(a, b) for a, b in pairs]).mean(0)

    eye_w = 0.5 * (dist(RIGHT_EYE_OUTER, RIGHT_EYE_INNER) + dist(LEFT_EYE_OUTER, LEFT_EYE_INNER))
    lip_centre_y = 0.65 * q[:, _UPPER_LIP_INNER, 1] + 0.35 * q[:, _LOWER_LIP_INNER, 1]
    return {
        "brow_in": height(_INNER_BROW),
        "brow_out": height(_OUTER_BROW),
        "brow_all": height(LEFT_BROW + RIGHT_BROW),
        "brow_dist": dist(55, 285),
        "ear": mean_dist(_EYE_VERTICAL_PAIRS) / eye_w,
        "lower_lid": -height(_LOWER_LID),
        "mouth_w": dist(*_LIP_CORNERS),
        "corner_raise": lip_centre_y + height(_LIP_CORNERS),
        "gap": mean_dist(_INNER_LIP_PAIRS),
        "chin": q[:, _CHIN, 1] - q[:, _SUBNASALE, 1],
        "ul": q[:, _UPPER_LIP_TOP, 1] - q[:, _SUBNASALE, 1],
        "lip_thick": (q[:, _UPPER_LIP_INNER, 1] - q[:, _UPPER_LIP_TOP, 1])
        + (q[:, _LOWER_LIP_BOTTOM, 1] - q[:, _LOWER_LIP_INNER, 1]),
        "lowlip_chin": q[:, _CHIN, 1] - q[:, _LOWER_LIP_BOTTOM, 1],
    }


#: The AUs read as a weighted mean of two feature scores, and those scores
#: (:func:`feature_scores`): AU12 = 0.6 corner elevation + 0.4 mouth widening, AU04 = mean of
#: brow lowering and brows drawn together, AU26 = 0.7 wide lip gap + 0.3 chin drop.
COMPOSITE_AUS: dict[str, tuple[str, str]] = {"AU12": ("corner_raise", "mouth_w"), "AU04": ("brow_all", "brow_dist"),
                                             "AU26": ("gap_jaw", "chin")}


def feature_scores(landmarks: Tensor, *, raw: bool = False) -> dict[str, Tensor]:
    """The calibrated 0..5 scores of the estimator's features (keys of
    ``fastwarp.face.aus._CALIBRATION``), each ``Tensor[N]``; ``raw``: not clipped. (Also
    ``"_q"``: the eye-line-frame landmarks they were read from.)"""
    q = eye_line_frame_torch(landmarks)
    f = _features(q)

    def score(key: str) -> Tensor:
        neutral, strong = _CALIBRATION[key]
        s = (f[_ALIASES.get(key, key)] - neutral) * (AU_MAX / (strong - neutral))
        return s if raw else s.clamp(0.0, AU_MAX)

    out = {k: score(k) for k in _CALIBRATION}
    out["_q"] = q
    return out


def estimate_aus_torch(landmarks: Tensor, *, raw: bool = False) -> Tensor:
    """Geometric AU intensities (:func:`fastwarp.face.estimate_aus_batch`'s read-outs) in torch.

    Args:
        landmarks (Tensor[N, V, 2 or 3]): FaceMesh landmarks (V >= 468) in any pixel frame,
            floating point; differentiable.
        raw: skip every clip to 0..5 (feature scores and the result): a piecewise-linear
            extension of the estimate, equal to it wherever no clip is active.
    Returns:
        Tensor[N, 17] in the input's dtype, AU order of :data:`fastwarp.au.AU_NAMES`; AUs the
        estimator does not see are 0.
    Raises:
        ValueError: wrong shape or dtype.
    """
    s = feature_scores(landmarks, raw=raw)
    q = s.pop("_q")
    zero = torch.zeros_like(s["ear"])
    au12 = 0.6 * s["corner_raise"] + 0.4 * s["mouth_w"]
    values = {
        "AU01": s["brow_in"], "AU02": s["brow_out"], "AU04": 0.5 * (s["brow_all"] + s["brow_dist"]),
        "AU05": s["ear"], "AU06": torch.minimum(s["lower_lid"], au12),
        "AU07": torch.maximum(s["lower_lid"] - au12, zero), "AU10": s["ul"], "AU12": au12,
        "AU15": s["corner_drop"], "AU17": s["lowlip_chin"],
        "AU20": torch.maximum(s["mouth_w"] - s["corner_raise"], zero), "AU23": s["lip_thick"],
        "AU25": s["gap"], "AU26": 0.7 * s["gap_jaw"] + 0.3 * s["chin"], "AU45": s["ear_blink"],
    }
    out = torch.zeros(q.shape[0], NUM_AUS, dtype=q.dtype, device=q.device)
    for name, v in values.items():
        out[:, AU_INDEX[name]] = v
    return out if raw else out.clamp(0.0, AU_MAX)

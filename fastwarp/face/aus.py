"""Geometric, FACS-inspired Action Unit intensities from FaceMesh landmarks.

This is NOT OpenFace and is not calibrated against FACS-coded data: each AU is a linear
read-out of one or two landmark distance ratios (brow height, eye aspect ratio, mouth
width, lip-corner elevation, inner-lip gap, ...), mapped from a "neutral" value (→ 0) to a
"strong" value (→ 5) and clipped to 0..5. Its numbers are comparable between faces and
frames only in the rough sense that the constants were fitted on the fastwarp face set
(see ``_CALIBRATION``); an AU of 3 here need not match an OpenFace AU of 3.

Invariances: all positions are first expressed in the eye-line frame (origin between the
eye centres, x along the eye line, y perpendicular pointing towards the chin) and divided
by the inter-ocular distance (outer eye corners 33-263), so the estimate is invariant to
in-plane rotation, uniform scale and translation of the landmarks. It is NOT invariant to
out-of-plane head rotation (yaw/pitch foreshorten the ratios) or to identity: there is no
per-person neutral baseline, so a face whose resting brows sit high reads some AU01.

Smoothness: every output is built from distances, linear maps, clip, min and max, so it
is a continuous, piecewise-smooth (Lipschitz) function of the landmark positions.

AUs in :data:`VISIBLE_AUS` are measured (some as rough proxies, see :data:`PROXY_AUS`);
the others are always exactly 0:

- AU09 (nose wrinkler): its evidence is skin wrinkling on the nose bridge, a texture the
  mesh does not see; the alar lift it causes is already the AU10 proxy.
- AU14 (dimpler): a dimple and a small inward pull of the corners, invisible in 2D mesh
  geometry and confounded with AU12/AU20.
"""

from __future__ import annotations

import numpy as np

from ..au import AU_INDEX, AU_MAX, AU_NAMES, NUM_AUS
from .landmarks import (
    LEFT_BROW,
    LEFT_EYE_INNER,
    LEFT_EYE_OUTER,
    NUM_LANDMARKS,
    RIGHT_BROW,
    RIGHT_EYE_INNER,
    RIGHT_EYE_OUTER,
)

VISIBLE_AUS: tuple[str, ...] = (
    "AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU10", "AU12",
    "AU15", "AU17", "AU20", "AU23", "AU25", "AU26", "AU45",
)
"""AUs the estimator measures; all others are always 0."""

PROXY_AUS: tuple[str, ...] = ("AU06", "AU07", "AU10", "AU17", "AU23")
"""Visible AUs read from an indirect cue (see :func:`estimate_aus_batch`); treat as rough."""

# (neutral, strong) value of each geometric feature, in inter-ocular units unless noted.
# Calibration: FaceMesh (refined, static mode) on all 51 photos plus 40 evenly spaced frames
# of each of the 67 videos in shared/data/faces (2731 faces). "neutral" is the percentile
# of the feature below which most resting faces lie, "strong" a high percentile reached
# only by marked expressions; both percentiles are in the comment. Cross-check on the MEAD
# clips (40 frames each, per-clip medians): neutral M030 / W009 read AU12 0.06 / 0.00 vs
# happy 2.01 / 1.27; AU25 ~3.6 on both neutral clips because the speakers are talking;
# identity shows in W009's neutral AU01 2.3 (high resting brows), AU10 1.8 and AU15 1.6,
# and both neutral AU05 ~1.6 (wide-open eyes); surprised reads AU01 2.9 / 4.2, AU05 3.4 / 4.2.
_CALIBRATION: dict[str, tuple[float, float]] = {
    "brow_in": (0.228, 0.317),      # inner-brow height above eye line, p60 -> p99
    "brow_out": (0.204, 0.288),     # outer-brow height, p60 -> p99
    "brow_all": (0.208, 0.129),     # mean brow height, p40 -> p2 (lowering)
    "brow_dist": (0.286, 0.249),    # inner-brow separation, p50 -> p2 (drawn together)
    "ear": (0.313, 0.447),          # eye aspect ratio (opening / width), p60 -> p99
    "ear_blink": (0.241, 0.068),    # same ratio, p25 -> p2 (closing)
    "lower_lid": (0.034, 0.006),    # lower-lid depth below the eye line, p60 -> p3 (raised)
    "mouth_w": (0.555, 0.766),      # mouth-corner distance, p40 -> p97
    "corner_raise": (-0.025, 0.090),  # corners above the lip reference, p30 -> p97 (MEAD
                                      # neutral medians -0.030 / -0.049)
    "corner_drop": (-0.036, -0.078),  # same measure, p20 -> p1 (depressed)
    "gap": (0.010, 0.171),          # inner-lip gap; p12 is 0.003, raised to 0.010 so landmark
                                    # jitter on closed lips stays 0; -> p75 (lips part is
                                    # near-binary, so it saturates early)
    "gap_jaw": (0.113, 0.355),      # inner-lip gap, p50 -> p99 (wide opening)
    "chin": (0.827, 1.014),         # subnasale-to-chin length, p50 -> p99
    "ul": (0.166, 0.090),           # subnasale-to-upper-lip length, p60 -> p2 (lip raised)
    "lip_thick": (0.187, 0.123),    # vermilion height, upper + lower, p50 -> p2 (thinned)
    "lowlip_chin": (0.357, 0.203),  # lower-lip-to-chin length, p50 -> p2 (chin pushed up)
}

# Landmark groups used by the measurements (MediaPipe topology; subject's left/right).
_INNER_BROW = (107, 55, 336, 285)     # innermost upper/lower brow points, both sides
_OUTER_BROW = (70, 63, 46, 53, 300, 293, 276, 283)
_EYE_VERTICAL_PAIRS = ((159, 145), (158, 153), (160, 144), (386, 374), (385, 380), (387, 373))
_LOWER_LID = (145, 374)
_LIP_CORNERS = (61, 291)
_INNER_LIP_PAIRS = ((13, 14), (82, 87), (312, 317))
_UPPER_LIP_TOP, _UPPER_LIP_INNER, _LOWER_LIP_INNER, _LOWER_LIP_BOTTOM = 0, 13, 14, 17
_SUBNASALE, _CHIN = 2, 152


def _as_batch(landmarks: np.ndarray) -> np.ndarray:
    lm = np.asarray(landmarks)
    if lm.ndim != 3 or lm.shape[1] != NUM_LANDMARKS or lm.shape[2] not in (2, 3):
        raise ValueError(f"landmarks must have shape [N, {NUM_LANDMARKS}, 2 or 3], got {lm.shape}")
    lm = lm[..., :2].astype(np.float64)
    if not np.isfinite(lm).all():
        raise ValueError("landmarks contain NaN or inf")
    return lm


def eye_line_frame(landmarks: np.ndarray) -> np.ndarray:
    """Landmarks in the normalised eye-line frame.

    Origin midway between the two eye centres (each the midpoint of its two corners), x
    along the right-eye → left-eye line, y perpendicular towards the chin, unit = the
    inter-ocular (outer-corner) distance.

    Args:
        landmarks: ``[N, 478, 2 or 3]`` in any pixel frame; z is ignored.
    Returns:
        float64 ``[N, 478, 2]``.
    Raises:
        ValueError: bad shape, non-finite values or coincident eye corners.
    """
    p = _as_batch(landmarks)
    rc = 0.5 * (p[:, RIGHT_EYE_OUTER] + p[:, RIGHT_EYE_INNER])
    lc = 0.5 * (p[:, LEFT_EYE_OUTER] + p[:, LEFT_EYE_INNER])
    iod = np.linalg.norm(p[:, LEFT_EYE_OUTER] - p[:, RIGHT_EYE_OUTER], axis=-1)
    if (iod <= 1e-6).any():
        raise ValueError("degenerate landmarks: eye corners coincide")
    ex = lc - rc
    ex /= np.linalg.norm(ex, axis=-1, keepdims=True)
    ey = np.stack([-ex[:, 1], ex[:, 0]], axis=-1)  # +90° in image axes (y down) → towards chin
    rel = p - 0.5 * (rc + lc)[:, None]
    q = np.stack([(rel * ex[:, None]).sum(-1), (rel * ey[:, None]).sum(-1)], axis=-1)
    return q / iod[:, None, None]


def geometric_features(landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """The raw ratios the AUs are read from (keys of ``_CALIBRATION`` minus aliases).

    Args:
        landmarks: ``[N, 478, 2 or 3]``.
    Returns:
        ``{name: float64 [N]}`` in inter-ocular units (``ear`` is unitless).
    """
    q = eye_line_frame(landmarks)

    def dist(a, b):
        return np.linalg.norm(q[:, a] - q[:, b], axis=-1)

    def height(idx):  # mean height above the eye line (+ = towards the forehead)
        return -q[:, list(idx), 1].mean(axis=1)

    eye_w = 0.5 * (dist(RIGHT_EYE_OUTER, RIGHT_EYE_INNER) + dist(LEFT_EYE_OUTER, LEFT_EYE_INNER))
    # Reference for lip-corner elevation: 35% of the way down the inner-lip opening. On
    # the MEAD neutral (talking) clips, resting corners sit there: corner height against the
    # plain inner-lip midpoint rises ~0.15 IOD per IOD of opening (fitted slope 0.11-0.19),
    # so the midpoint would read every open mouth as a smile.
    lip_centre_y = 0.65 * q[:, _UPPER_LIP_INNER, 1] + 0.35 * q[:, _LOWER_LIP_INNER, 1]
    return {
        "brow_in": height(_INNER_BROW),
        "brow_out": height(_OUTER_BROW),
        "brow_all": height(LEFT_BROW + RIGHT_BROW),
        "brow_dist": dist(55, 285),
        "ear": np.mean([dist(a, b) for a, b in _EYE_VERTICAL_PAIRS], axis=0) / eye_w,
        "lower_lid": -height(_LOWER_LID),
        "mouth_w": dist(*_LIP_CORNERS),
        "corner_raise": lip_centre_y + height(_LIP_CORNERS),
        "gap": np.mean([dist(a, b) for a, b in _INNER_LIP_PAIRS], axis=0),
        "chin": q[:, _CHIN, 1] - q[:, _SUBNASALE, 1],
        "ul": q[:, _UPPER_LIP_TOP, 1] - q[:, _SUBNASALE, 1],
        "lip_thick": (q[:, _UPPER_LIP_INNER, 1] - q[:, _UPPER_LIP_TOP, 1])
        + (q[:, _LOWER_LIP_BOTTOM, 1] - q[:, _LOWER_LIP_INNER, 1]),
        "lowlip_chin": q[:, _CHIN, 1] - q[:, _LOWER_LIP_BOTTOM, 1],
    }


_ALIASES = {"ear_blink": "ear", "corner_drop": "corner_raise", "gap_jaw": "gap"}


def _score(feats: dict[str, np.ndarray], key: str) -> np.ndarray:
    """Linear map neutral → 0, strong → 5, clipped to 0..5 (works for either direction)."""
    neutral, strong = _CALIBRATION[key]
    x = feats[_ALIASES.get(key, key)]
    return np.clip((x - neutral) / (strong - neutral) * AU_MAX, 0.0, AU_MAX)


def estimate_aus_batch(landmarks: np.ndarray) -> np.ndarray:
    """AU intensities for a batch of faces. See :func:`estimate_aus`.

    Read-outs (s(·) = calibrated 0..5 score of a feature):

    - AU01 s(inner-brow height); AU02 s(outer-brow height);
      AU04 mean(s(brow lowering), s(inner-brow separation shrinking)).
    - AU05 s(eye aspect ratio above neutral); AU45 s(eye aspect ratio below neutral).
    - AU12 0.6·s(corner elevation above the inner-lip centre) + 0.4·s(mouth widening);
      AU20 max(s(widening) − s(elevation), 0): widening without raise;
      AU15 s(corner depression).
    - AU25 s(inner-lip gap, small range); AU26 0.7·s(inner-lip gap, wide range) +
      0.3·s(chin drop).
    - Proxies: AU06 min(s(lower-lid raise), AU12) (lower lid pushed up during a smile);
      AU07 max(s(lower-lid raise) − AU12, 0); AU10 s(upper lip approaching the nose);
      AU17 s(lower lip approaching the chin); AU23 s(lip thinning).

    Args:
        landmarks: ``[N, 478, 2 or 3]`` landmarks in any pixel frame (z ignored).
    Returns:
        float32 ``[N, 17]`` in 0..5, AU order of :data:`fastwarp.au.AU_NAMES`.
    Raises:
        ValueError: bad shape, non-finite values or degenerate eye corners.
    """
    f = geometric_features(landmarks)
    s = {k: _score(f, k) for k in _CALIBRATION}
    out = np.zeros((len(f["ear"]), NUM_AUS), dtype=np.float64)

    def put(name, value):
        out[:, AU_INDEX[name]] = value

    au12 = 0.6 * s["corner_raise"] + 0.4 * s["mouth_w"]
    put("AU01", s["brow_in"])
    put("AU02", s["brow_out"])
    put("AU04", 0.5 * (s["brow_all"] + s["brow_dist"]))
    put("AU05", s["ear"])
    put("AU06", np.minimum(s["lower_lid"], au12))
    put("AU07", np.maximum(s["lower_lid"] - au12, 0.0))
    put("AU10", s["ul"])
    put("AU12", au12)
    put("AU15", s["corner_drop"])
    put("AU17", s["lowlip_chin"])
    put("AU20", np.maximum(s["mouth_w"] - s["corner_raise"], 0.0))
    put("AU23", s["lip_thick"])
    put("AU25", s["gap"])
    put("AU26", 0.7 * s["gap_jaw"] + 0.3 * s["chin"])
    put("AU45", s["ear_blink"])
    return np.clip(out, 0.0, AU_MAX).astype(np.float32)


def consistent_targets(current, target):
    """Target AUs made consistent with how the estimator reads them (numpy or torch, ``[..., 17]``).

    Some AUs share a landmark measure, so some combinations cannot be read at once: the
    lips cannot part by "AU25 = 2" while the jaw drops by "AU26 = 2.5" (AU26 needs an
    inner-lip gap at which AU25 reads 5), and eyes cannot both widen (AU05) and close (AU45).
    Where an edit raises one, its partner's target follows:

    - AU26 raised: AU25 at least the reading of the smallest gap that gives the AU26 target
      (the gap and the chin contributing equally);
    - AU45 raised above 0: AU05 = 0; AU05 raised above 0: AU45 = 0.

    Args:
        current, target: AU intensities ``[..., 17]`` (0..5), numpy arrays or torch tensors.
    Returns:
        A new target of the same type; equal to ``target`` where no rule applies.
    """
    if isinstance(target, np.ndarray):
        xp, t, c = np, np.array(target, dtype=np.float32, copy=True), np.asarray(current, np.float32)
    else:
        import torch as xp

        t, c = target.clone(), current
    i25, i26, i05, i45 = (AU_INDEX[a] for a in ("AU25", "AU26", "AU05", "AU45"))
    (gap_n, gap_s), (jaw_n, jaw_s) = _CALIBRATION["gap"], _CALIBRATION["gap_jaw"]
    gap = jaw_n + t[..., i26] / AU_MAX * (jaw_s - jaw_n)
    implied = xp.clip((gap - gap_n) / (gap_s - gap_n) * AU_MAX, 0.0, AU_MAX)
    t[..., i25] = xp.where(t[..., i26] > c[..., i26], xp.maximum(t[..., i25], implied), t[..., i25])
    closes = (t[..., i45] > c[..., i45]) & (t[..., i45] > 0)
    widens = (t[..., i05] > c[..., i05]) & (t[..., i05] > 0)
    t[..., i05] = xp.where(closes, 0.0 * t[..., i05], t[..., i05])
    t[..., i45] = xp.where(widens & ~closes, 0.0 * t[..., i45], t[..., i45])
    return t


def estimate_aus(landmarks: np.ndarray) -> np.ndarray:
    """Geometric AU intensities of one face.

    Args:
        landmarks: ``[478, 2 or 3]`` FaceMesh landmarks (pixels of any frame: full image or
            aligned crop; only x, y are used).
    Returns:
        float32 ``[17]`` in 0..5, order of :data:`fastwarp.au.AU_NAMES`; AUs not in
        :data:`VISIBLE_AUS` are exactly 0.
    Raises:
        ValueError: wrong shape, non-finite values, or coincident eye corners.
    """
    lm = np.asarray(landmarks)
    if lm.ndim != 2 or lm.shape[0] != NUM_LANDMARKS or lm.shape[1] not in (2, 3):
        raise ValueError(f"landmarks must have shape [{NUM_LANDMARKS}, 2 or 3], got {lm.shape}")
    return estimate_aus_batch(lm[None])[0]


assert set(VISIBLE_AUS) <= set(AU_NAMES) and set(PROXY_AUS) <= set(VISIBLE_AUS)

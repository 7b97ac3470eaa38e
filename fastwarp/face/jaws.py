"""Teeth that follow the jaws (issue 19): the mouth's flow when the lips part.

Through the face mesh, the triangles across the inner lips stretch as a mouth opens, and
whatever the source mouth shows between its lips (teeth, tongue) is stretched with them into a
column. Here the mouth's inside is split between the jaws instead: what the source shows
between its lips moves rigidly with the upper inner lip (a share :data:`UPPER_SHARE` of it; the
rest would move with the lower inner lip, the jaw), and what opens between them in the target,
the cavity, has no source content (:func:`split_mouth_flow`'s ``cavity``): the texture paints it.

Coordinates along the mouth: for a face, ``c0`` and ``c1`` are the inner lip corners
(landmarks 78, 308), ``ex`` the unit vector ``c0 -> c1``, ``ey`` perpendicular to it towards the
chin; a point ``p`` has ``s = (p - c0) . ex / |c1 - c0|`` (0 at one corner, 1 at the other) and
``v = (p - c0) . ey`` (pixels). The upper and lower inner lip lines are piecewise linear in
``(s, v)`` (an affine image of the polylines), so ``v_upper(s)`` and ``v_lower(s)`` interpolate
their points. For a pixel of the target inside its inner lips, at ``(s, v)``, ``y = v -
v_upper(s)`` below the target's upper lip, with the target's gap ``D = v_lower - v_upper`` and
the source's gap ``Ds`` at the same ``s``: where the mouth opens (``D > Ds``),

- ``y <= f Ds``: the source's ``v_upper(s) + y`` (the upper teeth, moved with the upper lip);
- ``D - y <= (1 - f) Ds``: the source's ``v_lower(s) - (D - y)`` (the lower teeth, with the jaw);
- between: the source's split line, and ``cavity`` = 1;

where ``f`` is where the jaws part in the source, as a fraction of its gap. By default
``f`` = :data:`UPPER_SHARE` = 1: everything the source shows between its lips stays with the
upper lip (a smile shows the upper teeth; the lower ones hide behind the lower lip) and the
lower lip drops away from them. The editor passes each face's own ``f``, :func:`upper_share`:
the lower edge of the upper teeth, found once per face on a profile across the gap averaged
over the mouth's middle (a line per column was tried on four held-out photos: it wandered from
column to column and cut the teeth into stripes). Below that edge the source shows the lower
teeth, the tongue or the dark of the mouth, and those go down with the jaw.

the source point is ``c0' + s |c1' - c0'| ex' + v' ey'`` in the source's own axes (a mouth that
turns or widens keeps its teeth upright). Elsewhere, and where the mouth does not open, the mesh
flow stays as it was.
"""

from __future__ import annotations

from typing import Callable, Sequence

import cv2
import numpy as np
import torch
from torch import Tensor

from .regions import LOWER_INNER_LIP, UPPER_INNER_LIP

__all__ = ["split_mouth_flow", "upper_share", "MOUTH_CORNERS", "UPPER_SHARE"]

#: The inner lip corners (the ends of both inner lip lines).
MOUTH_CORNERS = (78, 308)
#: The share of the source's lip gap that moves with the upper lip (the rest with the jaw) where
#: no face's own is given (:func:`upper_share`).
UPPER_SHARE = 1.0
#: :func:`upper_share`'s profile: the mouth's middle (``s``), samples across the gap, and the
#: teeth's brightness (``min(B, G, R)``, 0..255): the upper teeth's edge is where the profile
#: falls below ``peak - max(TEETH_DROP_MIN, TEETH_DROP * peak)``; below TEETH_DIM the brightest
#: part of the gap's upper 8-60 % is not teeth (no split), and up to TEETH_BRIGHT the split fades in.
_PROFILE_S = np.linspace(0.3, 0.7, 9)
_PROFILE_U = np.linspace(0.0, 1.0, 25)
TEETH_DROP, TEETH_DROP_MIN = 0.4, 30.0
TEETH_DIM, TEETH_BRIGHT = 50.0, 70.0
#: Gaps narrower than this (IOD) show too little to find an edge in: no split.
TEETH_MIN_GAP = 0.03


def _axes(lm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    c0, c1 = lm[MOUTH_CORNERS[0]], lm[MOUTH_CORNERS[1]]
    length = float(np.linalg.norm(c1 - c0))
    ex = (c1 - c0) / max(length, 1e-9)
    return c0, ex, np.array([-ex[1], ex[0]]), max(length, 1e-9)


_CHAINS = (np.array(UPPER_INNER_LIP), np.array(LOWER_INNER_LIP))


def _lip_points(lm: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], ...] | None:
    """Each inner lip line's points as ``(s, v)`` (upper, lower), or None where a line does not
    run corner to corner monotonically (a profile or a folded mouth: no split)."""
    c0, ex, ey, length = _axes(lm)
    out = []
    for chain in _CHAINS:
        d = lm[chain] - c0
        s = d @ ex / length
        if np.any(s[1:] <= s[:-1]):
            return None
        out.append((s, d @ ey))
    return tuple(out)


def _lip_lines(lm: np.ndarray, s_grid: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(v_upper, v_lower)`` at ``s_grid``, or None (:func:`_lip_points`)."""
    points = _lip_points(lm)
    if points is None:
        return None
    (su, vu), (sl, vl) = points
    return np.interp(s_grid, su, vu), np.interp(s_grid, sl, vl)


def _mouth_opens(src: np.ndarray, tgt: np.ndarray) -> bool:
    """Whether the target's inner-lip gap exceeds the source's (clamped at 0) anywhere along the
    mouth, ``s`` in [0, 1]: what :func:`split_mouth_flow` needs a pixel for, tested without
    pixels (about 40 us against 0.3 ms). Both gaps are piecewise linear in ``s`` with kinks at
    the lip points of either face; between kinks, ``min(gap_t, gap_t - gap_s)`` is concave and
    peaks at an end or where the source's gap crosses 0, so those points decide exactly."""
    ps, pt = _lip_points(src), _lip_points(tgt)
    if ps is None or pt is None:
        return True  # (the split decides: it does nothing for such a face)
    s = np.unique(np.clip(np.concatenate([np.array([0.0, 1.0])] + [q[0] for q in ps + pt]), 0.0, 1.0))

    def gaps(points, at):
        (su, vu), (sl, vl) = points
        return np.interp(at, sl, vl) - np.interp(at, su, vu)

    gs = gaps(ps, s)
    cross = np.flatnonzero(gs[:-1] * gs[1:] < 0)
    if len(cross):
        s = np.concatenate([s, s[cross] + (s[cross + 1] - s[cross]) * gs[cross] / (gs[cross] - gs[cross + 1])])
        gs = gaps(ps, s)
    return bool(np.any(gaps(pt, s) > np.maximum(gs, 0.0)))


def teeth_profile(image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, float] | None:
    """The teeth's brightness across the source's lip gap: ``(profile, gap)``, ``profile``
    float64 ``[25]`` at ``u`` = 0 (the upper inner lip) .. 1 (the lower), the mean over the
    mouth's middle (``s`` 0.3..0.7) of ``V (1 - S)`` (HSV, 0..255; that is ``min(B, G, R)``:
    bright and grey, as teeth are; lips and the mouth's dark are not), and ``gap`` the mean gap
    there in pixels; None where the lip lines do not run corner to corner.

    Args:
        image: ``[H, W, 3]`` uint8 BGR.
        landmarks: ``[>=468, 2]`` in the image's pixels.
    """
    lm = np.asarray(landmarks, np.float64)[:, :2]
    lines = _lip_lines(lm, _PROFILE_S)
    if lines is None:
        return None
    vu, vl = lines
    c0, ex, ey, length = _axes(lm)
    v = vu[:, None] + _PROFILE_U[None] * (vl - vu)[:, None]
    p = c0 + (_PROFILE_S * length)[:, None, None] * ex + v[..., None] * ey
    bgr = cv2.remap(np.ascontiguousarray(image), p[..., 0].astype(np.float32), p[..., 1].astype(np.float32),
                    cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float64)
    teeth = bgr.min(-1)  # V (1 - S) of HSV = max - (max - min): bright and grey
    return teeth.mean(0), float(np.mean(vl - vu))


def upper_share(image: np.ndarray, landmarks: np.ndarray) -> float:
    """A face's own :data:`UPPER_SHARE`: where its jaws part, as the fraction of its lip gap from
    the upper inner lip that moves with the upper lip when the mouth opens, in (0, 1].

    On :func:`teeth_profile`, with ``peak`` its brightest sample from 8 % to 60 % of the gap (the
    samples nearer the lip line straddle the lip) and ``drop = max(30, 0.4 peak)``:

    1. the upper teeth: the first sample from the top within ``drop / 2`` of ``peak`` (a lower
       row may be the brighter one);
    2. their edge: the first sample below them under ``peak - drop``;
    3. the split: the darkest sample of the run under that level, refined between samples by a
       parabola (so the share moves smoothly with the image, frame to frame).

    The split sits on the dark line under the upper teeth: below it the lower teeth, the tongue
    and the mouth's dark go down with the jaw, and the cavity that opens repeats the line's dark
    where the textures leave it (at share 1 it repeats the lower lip's inner edge: pink).
    1 (no split): a gap under :data:`TEETH_MIN_GAP` IOD, no bright part (``peak`` under
    :data:`TEETH_DIM`), or no edge. Between :data:`TEETH_DIM` and :data:`TEETH_BRIGHT` the share
    fades from 1 to the split's.

    Args:
        image: ``[H, W, 3]`` uint8 BGR, the frame (or crop) before the edit.
        landmarks: ``[>=468, 2]`` FaceMesh landmarks in the image's pixels.
    """
    lm = np.asarray(landmarks, np.float64)[:, :2]
    got = teeth_profile(image, lm)
    if got is None:
        return UPPER_SHARE
    prof, gap = got
    if gap < TEETH_MIN_GAP * float(np.linalg.norm(lm[263] - lm[33])):
        return UPPER_SHARE
    first, top = (int(np.searchsorted(_PROFILE_U, u, side="left")) for u in (0.08, 0.6 + 1e-9))
    peak = float(prof[first:top].max())
    weight = float(np.clip((peak - TEETH_DIM) / (TEETH_BRIGHT - TEETH_DIM), 0.0, 1.0))
    if weight == 0.0:
        return UPPER_SHARE
    drop = max(TEETH_DROP_MIN, TEETH_DROP * peak)
    level = peak - drop
    k = first + int(np.flatnonzero(prof[first:top] >= peak - 0.5 * drop)[0])
    below = np.flatnonzero(prof[k + 1:] < level)
    if len(below) == 0:
        return UPPER_SHARE
    j = k + 1 + int(below[0])
    run = j + 1
    while run < len(prof) and prof[run] < level:
        run += 1
    m = j + int(np.argmin(prof[j:run]))
    u = float(_PROFILE_U[m])
    if 0 < m < len(prof) - 1:  # the minimum between samples: a parabola through three
        a, b, c = prof[m - 1], prof[m], prof[m + 1]
        curve = a - 2.0 * b + c
        if curve > 1e-9:
            u += float(np.clip(0.5 * (a - c) / curve, -0.5, 0.5)) * (_PROFILE_U[1] - _PROFILE_U[0])
    return float(1.0 - weight * (1.0 - max(u, _PROFILE_U[1])))


def split_mouth_flow(flow: Tensor, source: np.ndarray | Tensor, target: np.ndarray | Tensor,
                     upper_share: float | Sequence[float] | Callable[[int], float] | None = None,
                     ) -> tuple[Tensor, Tensor, Tensor]:
    """The mesh flow with the mouth's inside split between the jaws (module docstring).

    Args:
        flow (Tensor[N, 2, H, W]): backward flow in pixels of its grid (:func:`fastwarp.ops.mesh_flow`),
            float32 or float64.
        source, target: ``[N, >=468, 2]`` landmarks before and after the motion, in pixels of the
            same grid (pixel centres at integers).
        upper_share: each face's ``f`` (module docstring): a float for all, ``[N]``, or a function
            of the face's index, called once for each face whose lips open (by its landmarks,
            whatever the grid; e.g. :func:`upper_share` of its image, which costs about 0.1 ms);
            None: :data:`UPPER_SHARE`.
    Returns:
        ``(flow, cavity, rigid)``: the flow (a new tensor; ``flow`` itself is not written),
        ``cavity`` ``[N, 1, H, W]`` in {0, 1}, 1 where the target's opened mouth has no source
        content, and ``rigid`` (same), 1 where the mouth's inside moved rigidly with a lip (the
        teeth: what no texture should repaint). Where no mouth opens: ``flow`` unchanged, zeros.
    Raises:
        ValueError: landmarks and flow disagree on the batch, or the flow is not ``[N, 2, H, W]``.
    """
    if flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(f"flow must be [N, 2, H, W], got {list(flow.shape)}")
    src = np.asarray(source.detach().cpu() if isinstance(source, Tensor) else source, np.float64)[..., :2]
    tgt = np.asarray(target.detach().cpu() if isinstance(target, Tensor) else target, np.float64)[..., :2]
    N, _, H, W = flow.shape
    if src.shape[0] != N or tgt.shape[0] != N:
        raise ValueError(f"landmarks for {src.shape[0]} and {tgt.shape[0]} faces, flow for {N}")
    if callable(upper_share):
        share_of = upper_share
    else:
        shares = np.broadcast_to(np.asarray(UPPER_SHARE if upper_share is None else upper_share, np.float64), (N,))

        def share_of(n: int) -> float:
            return float(shares[n])
    out = flow.clone()
    cavity = torch.zeros(N, 1, H, W, dtype=flow.dtype, device=flow.device)
    rigid = torch.zeros_like(cavity)
    for n in range(N):
        if not _mouth_opens(src[n], tgt[n]):  # (the cheap test first: most edits open no mouth)
            continue
        f = share_of(n)  # read whenever the lips open, so a finer grid of the same motion splits alike
        inner = tgt[n, list(UPPER_INNER_LIP) + list(LOWER_INNER_LIP)]
        x0, y0 = np.floor(inner.min(0)).astype(int)
        x1, y1 = np.ceil(inner.max(0)).astype(int)
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, W - 1), min(y1, H - 1)
        if x1 < x0 or y1 < y0:
            continue
        ys, xs = np.mgrid[y0:y1 + 1, x0:x1 + 1]
        p = np.stack([xs, ys], -1).reshape(-1, 2).astype(np.float64)
        c0, ex, ey, length = _axes(tgt[n])
        s = (p - c0) @ ex / length
        v = (p - c0) @ ey
        s_in = np.clip(s, 0.0, 1.0)
        lines_t, lines_s = _lip_lines(tgt[n], s_in), _lip_lines(src[n], s_in)
        if lines_t is None or lines_s is None:
            continue
        (vu, vl), (vus, vls) = lines_t, lines_s
        gap_t, gap_s = vl - vu, np.maximum(vls - vus, 0.0)
        inside = (s > 0) & (s < 1) & (v >= vu) & (v <= vl) & (gap_t > gap_s)
        if not inside.any():
            continue
        y = v - vu
        top, bottom = f * gap_s, (1.0 - f) * gap_s
        upper, lower = y <= top, (gap_t - y) <= bottom
        v_src = np.where(upper, vus + y, np.where(lower, vls - (gap_t - y), vus + top))
        c0s, exs, eys, length_s = _axes(src[n])
        q = c0s + (s_in * length_s)[:, None] * exs + v_src[:, None] * eys
        # written back as the bounding box's block (one copy each, not a scatter of pixels)
        box = (slice(y0, y1 + 1), slice(x0, x1 + 1))
        shape = (y1 + 1 - y0, x1 + 1 - x0)
        d = (q - p).T.reshape(2, *shape)
        cut = out[n, :, box[0], box[1]]
        keep = torch.from_numpy(~inside.reshape(shape)).to(flow.device)
        out[n, :, box[0], box[1]] = torch.where(keep, cut, torch.from_numpy(d).to(flow.dtype).to(flow.device))
        hole = inside & ~(upper | lower)
        cavity[n, 0, box[0], box[1]] = torch.from_numpy(hole.reshape(shape)).to(flow.dtype).to(flow.device)
        rigid[n, 0, box[0], box[1]] = torch.from_numpy((inside & (upper | lower)).reshape(shape)).to(flow.dtype).to(
            flow.device)
    return out, cavity, rigid

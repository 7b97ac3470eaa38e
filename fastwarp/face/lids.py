"""Lids that meet: the mesh warp of a closing eye, from what its landmarks mean.

FaceMesh never puts a closed eye's lid landmarks on top of each other: on the training videos'
frames, eyes whose lids visibly meet read a lid gap (:func:`fastwarp.face.regions.eye_gap`) of
0.03 to 0.10 eye widths, against about 0.28 open (``docs/evaluation/regions/README.md``, phase 7).
The landmark motion model reproduces those readings, so a blink's moved lids stay that far apart,
and a mesh warp that takes the landmarks literally leaves a strip of the open eye's iris and
sclera between them, squeezed, where a real closed eye shows none.

:func:`close_lids` moves each closing eye's upper lid line (the seven upper points of FaceMesh's
eye contour) further down, towards the lower lid line, for the warp only: the gap the pixels
get is the gap the landmarks say less FaceMesh's floor,

    g' = g_s * P(g_t) / P(g_s),    P(g) = sqrt(max(g^2 - LID_FLOOR^2, 0)),

with ``g_s`` and ``g_t`` the source's and the target's gaps (eye widths). The source keeps its
gap (``g_t = g_s`` gives ``g' = g_s``), a half-closed eye narrows a little more (0.15 from 0.28:
0.132 at the default floor), and from ``LID_FLOOR`` down the lids meet. Eyes that do not close,
or whose source gap is already at the floor, are left as they are, bit for bit.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .regions import LEFT_LOWER_LID, LEFT_UPPER_LID, RIGHT_LOWER_LID, RIGHT_UPPER_LID, eye_gap_of_points

__all__ = ["LID_FLOOR", "UPPER_LID", "LOWER_LID", "close_lids"]

#: FaceMesh's lid gap (eye widths) on an eye whose lids meet: the pixels' gap is 0 from here.
LID_FLOOR = 0.08
#: Each eye's upper and lower lid line without the corners (:data:`~fastwarp.face.regions.RIGHT_UPPER_LID`
#: and the others, outer to inner corner), paired column by column: (right eye, left eye), 7 points each.
UPPER_LID = (RIGHT_UPPER_LID[1:-1], LEFT_UPPER_LID[1:-1])
LOWER_LID = (RIGHT_LOWER_LID[1:-1], LEFT_LOWER_LID[1:-1])
_UP, _LO = np.array(UPPER_LID), np.array(LOWER_LID)  # [2 (right, left), 7]


def close_lids(vertices: Tensor, displacement: Tensor, floor: float | None = None) -> Tensor:
    """The mesh's displacement with each closing eye's upper lid line moved so the pixels' gap is
    the landmarks' less FaceMesh's floor (module docstring).

    Args:
        vertices, displacement (Tensor[N, V, 2]): the mesh (FaceMesh's 468 points first, as
            :func:`fastwarp.face.mesh.mesh_vertices`) and its motion, any float dtype, any unit.
        floor: the gap (eye widths) at which the lids meet; None: :data:`LID_FLOOR`; 0: no change.
    Returns:
        Tensor like ``displacement``: ``displacement`` itself where no eye closes (no AU change,
        an eye that opens or keeps its gap, a source gap at the floor or under), else a copy with
        the upper lid lines of the closing eyes moved towards their lower lid lines (the lower
        lids, the corners and the rest of the mesh as given), computed in float64.
    """
    floor = LID_FLOOR if floor is None else float(floor)
    if floor <= 0.0:
        return displacement
    d = displacement.detach().cpu().numpy().astype(np.float64)
    if not d.any():
        return displacement
    v = vertices.detach().cpu().numpy().astype(np.float64)
    t = v + d
    g_s, g_t = eye_gap_of_points(v), eye_gap_of_points(t)  # [N, 2]
    closing = (g_t < g_s) & (g_s > floor)
    if not closing.any():
        return displacement
    p_s = np.sqrt(np.maximum(g_s ** 2 - floor ** 2, 0.0))
    p_t = np.sqrt(np.maximum(g_t ** 2 - floor ** 2, 0.0))
    k = np.clip(g_s * p_t / np.maximum(p_s, 1e-12) / np.maximum(g_t, 1e-12), 0.0, 1.0)  # g' / g_t
    # each upper point stays on its line to its lower point, k of the way from it
    lo, up = t[:, _LO], t[:, _UP]  # [N, 2, 7, 2]
    moved = lo - k[:, :, None, None] * (lo - up) - v[:, _UP]
    out = displacement.clone()
    n, eye = np.nonzero(closing)
    rows = torch.from_numpy(moved[n, eye]).to(out.dtype)  # [M, 7, 2]
    for j in range(len(n)):
        out[int(n[j]), torch.from_numpy(_UP[eye[j]])] = rows[j].to(out.device)
    return out

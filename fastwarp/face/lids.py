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

import torch
from torch import Tensor

__all__ = ["LID_FLOOR", "UPPER_LID", "LOWER_LID", "close_lids"]

#: FaceMesh's lid gap (eye widths) on an eye whose lids meet: the pixels' gap is 0 from here.
LID_FLOOR = 0.08
#: Each eye's upper and lower lid line (FaceMesh's eye contour without the corners), paired
#: column by column: (right eye, left eye), 7 points each.
UPPER_LID = ((246, 161, 160, 159, 158, 157, 173), (466, 388, 387, 386, 385, 384, 398))
LOWER_LID = ((7, 163, 144, 145, 153, 154, 155), (249, 390, 373, 374, 380, 381, 382))
#: The eye corners (outer, inner) and the three central pairs :func:`~fastwarp.face.regions.eye_gap` reads.
_CORNERS = ((33, 133), (263, 362))
_GAP = slice(2, 5)


def _gap(p: Tensor, eye: int) -> Tensor:
    up, lo = list(UPPER_LID[eye][_GAP]), list(LOWER_LID[eye][_GAP])
    a, b = _CORNERS[eye]
    width = (p[:, a] - p[:, b]).norm(dim=-1).clamp_min(1e-6)
    return (p[:, up] - p[:, lo]).norm(dim=-1).mean(-1) / width


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
        lids, the corners and the rest of the mesh as given).
    """
    floor = LID_FLOOR if floor is None else float(floor)
    if floor <= 0.0 or not bool(displacement.any()):
        return displacement
    target = vertices + displacement
    out = displacement
    for eye in (0, 1):
        g_s, g_t = _gap(vertices, eye), _gap(target, eye)
        closing = (g_t < g_s) & (g_s > floor)
        if not bool(closing.any()):
            continue
        p_s = (g_s.square() - floor ** 2).clamp_min(0.0).sqrt()
        p_t = (g_t.square() - floor ** 2).clamp_min(0.0).sqrt()
        k = (g_s * p_t / p_s.clamp_min(1e-12) / g_t.clamp_min(1e-12)).clamp(0.0, 1.0)  # g' / g_t
        up, lo = list(UPPER_LID[eye]), list(LOWER_LID[eye])
        # each upper point stays on its line to the lower point, k of the way from it
        moved = target[:, lo] - k[:, None, None] * (target[:, lo] - target[:, up]) - vertices[:, up]
        if out is displacement:
            out = displacement.clone()
        out[:, up] = torch.where(closing[:, None, None], moved, out[:, up])
    return out

"""A warp without fold-overs: the mesh's moved triangles keep their orientation.

The landmark motion model moves each FaceMesh point on its own, and nothing stops a point from
crossing the edge of a triangle it belongs to. A smile does this at the left mouth corner: on 25 of
the 51 evaluation photos (``AU12=+2.5``, ``base``) corner 291 moves out past the line between its
cheek neighbour 287 and the upper lip's 409, and the triangle (287, 291, 409) turns over. The
backward flow (:func:`fastwarp.ops.mesh_flow`) is then ambiguous where the folded triangles overlap,
and the pixels at the moved corner are read from the wrong place: on those photos the warp put the
left corner a median 33 % short of where the landmarks put it (``docs/evaluation/mesh``, phase 9).

:func:`unfold` pulls the points of each folding triangle that move least along with the one that
moves most, by the least fraction that keeps the triangle at :data:`MIN_AREA_RATIO` of its area or
more: the cheek beside a smiling corner goes along with it, as cheeks do. The point that moves most
keeps its motion, so the landmarks the edit asked for are reached. The openings are left to fold:
the triangles across each eye and inside the lips (every vertex on the eye's contour, or on the
lips), which the lids and lips close over by design (:mod:`fastwarp.face.lids`). The mesh's fixed
ring never moves.

:func:`warp_motion` is the displacement the pixels get, in the editor's face warp and in the region
textures' warps (training and editing) alike: lids that meet, then no fold-overs.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from .lids import close_lids
from .mesh import MESH_POINTS, eye_triangles, mesh_triangles, mouth_triangles

__all__ = ["MIN_AREA_RATIO", "SLIVER", "MAX_PASSES", "fold_candidates", "folded", "unfold", "warp_motion"]

#: A moved triangle keeps at least this share of its area, with its orientation.
MIN_AREA_RATIO = 0.1
#: Triangles whose area in the source is under this share of the median triangle's are slivers
#: (a fold-over there covers no pixel; tiny motion turns them over and back): left as they are.
SLIVER = 0.01
#: Passes of :func:`unfold` (a point pulled along can fold its own neighbours, one ring further out).
MAX_PASSES = 16
_BISECT = 12


@lru_cache(maxsize=1)
def fold_candidates() -> np.ndarray:
    """int64 ``[K]``: the triangles :func:`unfold` keeps from folding: all but the eye openings and
    the lips (:func:`~fastwarp.face.mesh.eye_triangles`, :func:`~fastwarp.face.mesh.mouth_triangles`)."""
    keep = np.nonzero(~(eye_triangles() | mouth_triangles()))[0]
    keep.setflags(write=False)
    return keep


@lru_cache(maxsize=1)
def _candidate_triangles() -> np.ndarray:
    """int64 ``[K, 3]``: the vertices of :func:`fold_candidates`."""
    tri = mesh_triangles()[fold_candidates()].astype(np.int64)
    tri.setflags(write=False)
    return tri


_ONE = np.array([[0, 1, 2]])  # one triangle over three points, for :func:`_area`


def _area(p: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Signed areas of ``tri`` ([K, 3]) over points ``p`` ([..., V, 2]): ``[..., K]``."""
    a, b, c = p[..., tri[:, 0], :], p[..., tri[:, 1], :], p[..., tri[:, 2], :]
    return 0.5 * ((b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (c[..., 0] - a[..., 0]))


def folded(vertices: np.ndarray, displacement: np.ndarray, min_ratio: float = 0.0) -> np.ndarray:
    """bool ``[N, K]``: which of :func:`fold_candidates` the displacement turns over (``min_ratio``
    0) or shrinks below ``min_ratio`` of their area.

    Args:
        vertices, displacement: ``[N, V, 2]`` numpy arrays, as :func:`unfold` takes them.
    """
    tri = _candidate_triangles()
    a0 = _area(np.asarray(vertices, np.float64), tri)
    a1 = _area(np.asarray(vertices, np.float64) + np.asarray(displacement, np.float64), tri)
    ratio = a1 / np.where(a0 == 0.0, 1.0, a0)
    return _solid(a0) & (ratio < min_ratio if min_ratio > 0.0 else ratio <= 0.0)


def _solid(a0: np.ndarray) -> np.ndarray:
    """bool like ``a0`` ([N, K] source areas): not a sliver (:data:`SLIVER`)."""
    return np.abs(a0) > SLIVER * np.median(np.abs(a0), axis=-1, keepdims=True)


def unfold(vertices: Tensor, displacement: Tensor, min_ratio: float | None = None) -> Tensor:
    """The mesh's displacement with no fold-overs (module docstring).

    For each triangle of :func:`fold_candidates` (slivers aside, :data:`SLIVER`) that the displacement turns over or shrinks below
    ``min_ratio`` of its area, the smallest ``t`` in 0..1 is found (bisection) for which moving its
    other points by ``d_i + t (d_k - d_i)``, ``k`` the point that moves most, keeps the triangle at
    ``min_ratio``; a point several triangles pull takes the largest ``t``. Repeated up to
    :data:`MAX_PASSES` times, as a pulled point can fold its own neighbours. Ring points
    (``>= MESH_POINTS``) never move; a triangle that only a ring point could save is left.

    Args:
        vertices, displacement (Tensor[N, V, 2]): the mesh (:func:`~fastwarp.face.mesh.mesh_vertices`)
            and its motion, any float dtype, any unit (the result is invariant to a similarity
            transform of both, mirror images included).
        min_ratio: None: :data:`MIN_AREA_RATIO`; 0 or less: ``displacement`` unchanged.
    Returns:
        Tensor like ``displacement``: ``displacement`` itself where nothing folds (no motion
        included), else a copy with the folding triangles' other points moved (computed in float64).
    """
    min_ratio = MIN_AREA_RATIO if min_ratio is None else float(min_ratio)
    if min_ratio <= 0.0:
        return displacement
    d0 = displacement.detach().cpu().numpy().astype(np.float64)
    if not d0.any():
        return displacement
    v = vertices.detach().cpu().numpy().astype(np.float64)
    tri = _candidate_triangles()
    a0 = _area(v, tri)
    solid = _solid(a0)
    d = d0.copy()
    changed = False
    for _ in range(MAX_PASSES):
        a1 = _area(v + d, tri)
        bad = solid & (a1 / np.where(solid, a0, 1.0) < min_ratio)
        n, k = np.nonzero(bad)
        if len(n) == 0:
            break
        t3 = tri[k]  # [M, 3]
        moves = np.linalg.norm(d[n[:, None], t3], axis=-1)  # [M, 3]
        anchor = np.argmax(moves, axis=1)
        pulled = np.ones((len(n), 3), bool)
        pulled[np.arange(len(n)), anchor] = False
        pulled &= t3 < MESH_POINTS  # the ring stays
        target = d[n, t3[np.arange(len(n)), anchor]]  # [M, 2]

        def ratio_at(t: np.ndarray) -> np.ndarray:
            dd = d[n[:, None], t3] + pulled[..., None] * t[:, None, None] * (target[:, None] - d[n[:, None], t3])
            return _area(v[n[:, None], t3] + dd, _ONE)[:, 0] / a0[n, k]

        lo, hi = np.zeros(len(n)), np.ones(len(n))
        ok = ratio_at(hi) >= min_ratio  # (a triangle only the ring could save stays as it is)
        if not ok.any():
            break
        for _ in range(_BISECT):
            mid = 0.5 * (lo + hi)
            good = ratio_at(mid) >= min_ratio
            hi = np.where(good, mid, hi)
            lo = np.where(good, lo, mid)
        # each pulled point takes the largest pull any of its triangles asks for
        rows = np.nonzero(ok[:, None] & pulled)
        face, point, pull = n[rows[0]], t3[rows], hi[rows[0]]
        best = np.full(d.shape[:2], -1.0)
        np.maximum.at(best, (face, point), pull)
        take = pull >= best[face, point]
        face, point, pull, src = face[take], point[take], pull[take], target[rows[0][take]]
        d[face, point] = d[face, point] + pull[:, None] * (src - d[face, point])
        changed = True
    if not changed:
        return displacement
    return torch.from_numpy(d).to(dtype=displacement.dtype, device=displacement.device)


def warp_motion(vertices: Tensor, displacement: Tensor, lid_floor: float | None = None) -> Tensor:
    """The displacement the pixels get from the landmarks' ``displacement``: lids that meet
    (:func:`fastwarp.face.lids.close_lids` with ``lid_floor``), then no fold-overs (:func:`unfold`).
    ``displacement`` itself where neither changes anything."""
    return unfold(vertices, close_lids(vertices, displacement, lid_floor))

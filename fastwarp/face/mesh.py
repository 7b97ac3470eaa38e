"""The face's triangle mesh that landmark motion is rendered through (docs/design.md, "Motion
from landmarks").

Vertices: the 468 FaceMesh points (the 10 iris points are left out: they move with the eye
and would only add slivers) followed by a ring of :data:`RING_SIZE` points, the face oval
scaled by :data:`RING_SCALE` about its centroid. The ring never moves, so a flow rendered
with :func:`fastwarp.ops.mesh_flow` falls linearly to 0 between the face oval and the ring
and is exactly 0 beyond it: the edit fades out over the cheeks, neck and forehead with no
seam. The triangles (``mesh_topology.npz``, built by ``tools/face_mesh_topology.py``) are the
Delaunay triangulation of the median face of the training data, fixed for every face.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from .landmarks import FACE_OVAL, INNER_LIPS, LEFT_EYE, OUTER_LIPS, RIGHT_EYE

__all__ = ["MESH_POINTS", "RING_SCALE", "RING_SIZE", "ring_points", "mesh_vertices", "mesh_triangles",
           "mesh_template", "mouth_triangles", "eye_triangles", "lid_triangles", "texture_regions"]

#: FaceMesh points in the mesh (all but the irises).
MESH_POINTS = 468
#: The ring's distance from the oval's centroid, in multiples of the oval's.
RING_SCALE = 1.3
#: Ring points: one per face-oval point.
RING_SIZE = len(FACE_OVAL)
_TOPOLOGY = Path(__file__).with_name("mesh_topology.npz")


def ring_points(landmarks):
    """The fixed outer ring of a batch of faces.

    Args:
        landmarks: ``[N, >=468, 2]`` numpy array or torch tensor (any pixel frame).
    Returns:
        ``[N, RING_SIZE, 2]``, same type and dtype: ``c + RING_SCALE * (oval - c)`` with ``c``
        the centroid of the face-oval points.
    """
    oval = landmarks[:, list(FACE_OVAL), :2]
    centre = oval.mean(1)[:, None]
    return centre + RING_SCALE * (oval - centre)


def mesh_vertices(landmarks):
    """``[N, MESH_POINTS + RING_SIZE, 2]``: the first 468 landmarks (x, y) and the ring, in
    the landmarks' frame and type (numpy or torch)."""
    pts = landmarks[:, :MESH_POINTS, :2]
    ring = ring_points(landmarks)
    if isinstance(pts, np.ndarray):
        return np.concatenate([pts, ring.astype(pts.dtype)], axis=1)
    import torch

    return torch.cat([pts, ring], dim=1)


@lru_cache(maxsize=1)
def _topology() -> dict[str, np.ndarray]:
    with np.load(_TOPOLOGY) as z:
        return {k: z[k] for k in z.files}


def mesh_triangles() -> np.ndarray:
    """int32 ``[T, 3]`` vertex indices into :func:`mesh_vertices` (read-only)."""
    t = _topology()["triangles"]
    t.setflags(write=False)
    return t


def mesh_template() -> np.ndarray:
    """float32 ``[468, 2]``: the median face in the eye-line frame (IOD units) the
    triangulation was built on."""
    return _topology()["template"].copy()


@lru_cache(maxsize=2)
def _triangles_on(points: tuple[int, ...]) -> np.ndarray:
    on = np.zeros(MESH_POINTS + RING_SIZE, bool)
    on[list(points)] = True
    m = on[mesh_triangles()].all(axis=1)
    m.setflags(write=False)
    return m


def mouth_triangles() -> np.ndarray:
    """bool ``[T]``: the triangles with every vertex on the lips (inner or outer line), the
    ones that open when the lips part (read-only)."""
    return _triangles_on(tuple(INNER_LIPS) + tuple(OUTER_LIPS))


def eye_triangles() -> np.ndarray:
    """bool ``[T]``: the triangles with every vertex on an eye's contour, across the eye
    opening: they shrink when the eye closes (read-only)."""
    return _triangles_on(tuple(LEFT_EYE) + tuple(RIGHT_EYE))


@lru_cache(maxsize=1)
def _lids() -> np.ndarray:
    on = np.zeros(MESH_POINTS + RING_SIZE, bool)
    on[list(LEFT_EYE) + list(RIGHT_EYE)] = True
    count = on[mesh_triangles()].sum(axis=1)
    m = (count >= 1) & (count <= 2)
    m.setflags(write=False)
    return m


def lid_triangles() -> np.ndarray:
    """bool ``[T]``: the ring of triangles around each eye (one or two vertices on its
    contour): the lids' skin, which stretches over the eye when it closes (read-only)."""
    return _lids()


def texture_regions() -> tuple[np.ndarray, np.ndarray]:
    """``(grows, shrinks)``, bool ``[T]`` each: the triangles whose growth (the mouth's gap,
    the lids) and whose loss of area (across the eyes) the mesh texture may paint
    (:func:`fastwarp.models.mesh_texture.opening_map`'s ``region`` and ``closing``)."""
    return mouth_triangles() | lid_triangles(), eye_triangles()

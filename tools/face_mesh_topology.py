"""Builds fastwarp/face/mesh_topology.npz: the triangulation the landmark motion is rendered
through (fastwarp.face.mesh; docs/design.md, "Motion from landmarks").

The 468 FaceMesh points (no irises) plus a ring of ``RING_SCALE`` times the face oval about
its centroid are Delaunay-triangulated on the median face: the median, over near-frontal
faces of the dataset cache (``python -m training.data``), of the landmarks in the eye-line
frame. The topology is then fixed: every face is rendered through the same triangles.

    python tools/face_mesh_topology.py --data .cache/dataset128
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
from pathlib import Path

import numpy as np
from scipy.spatial import Delaunay

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastwarp._io import atomic_path  # noqa: E402
from fastwarp.face.aus import eye_line_frame  # noqa: E402
from fastwarp.face.mesh import MESH_POINTS, ring_points  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "fastwarp" / "face" / "mesh_topology.npz"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=".cache/dataset128")
    args = ap.parse_args()
    qs = []
    for f in sorted(glob.glob(os.path.join(args.data, "*.npz"))):
        d = np.load(f)
        keep = (np.abs(d["pose"]) < 0.12).all(axis=1)
        if keep.any():
            qs.append(eye_line_frame(d["landmarks"][keep]))
    q = np.concatenate(qs)
    template = np.median(q, axis=0)[:MESH_POINTS].astype(np.float32)
    points = np.concatenate([template, ring_points(template[None])[0]])
    triangles = Delaunay(points.astype(np.float64)).simplices.astype(np.int32)
    # A fixed order (sorted by the centroid's row, then column) so rebuilds are reproducible.
    c = points[triangles].mean(axis=1)
    triangles = triangles[np.lexsort((c[:, 0], c[:, 1]))]
    with atomic_path(OUT) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, template=template, triangles=triangles, faces=np.int32(len(q)))
    print(f"{OUT}: {len(points)} vertices, {len(triangles)} triangles, template from {len(q)} faces")


if __name__ == "__main__":
    main()

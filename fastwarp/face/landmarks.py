"""Dense face landmarks from MediaPipe FaceMesh (478 points with irises).

Landmark arrays throughout :mod:`fastwarp.face` are float32 ``[478, 3]`` (or ``[478, 2]``
where depth is not needed): x, y in pixels of the image they were detected on, z in the
same pixel scale (MediaPipe's normalised z times the image width; smaller = closer to the
camera).

"Left" and "right" follow MediaPipe: the SUBJECT's left/right, so on a frontal face
``LEFT_EYE`` lies on the image's right-hand side (outer corner 263), ``RIGHT_EYE`` on the
image's left (outer corner 33).

MediaPipe is imported lazily inside :class:`FaceMesh` so that importing this module (and
the index constants) is cheap.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from .._native_log import quiet_native_stderr

NUM_LANDMARKS = 478


def _chain(edges: Iterable[tuple[int, int]]) -> list[list[int]]:
    """Walk an undirected edge set into its connected paths/loops, each as ordered indices.

    Loops are returned without repeating the first index. Starts at the smallest
    endpoint (or smallest index for a loop) so the order is deterministic.
    """
    adj: dict[int, list[int]] = {}
    for a, b in edges:
        adj.setdefault(a, []).append(b)
        adj.setdefault(b, []).append(a)
    seen: set[int] = set()
    parts: list[list[int]] = []
    while len(seen) < len(adj):
        rest = [v for v in adj if v not in seen]
        ends = [v for v in rest if len(adj[v]) == 1]
        start = min(ends) if ends else min(rest)
        path, prev, cur = [start], None, start
        seen.add(start)
        while True:
            nxt = [n for n in sorted(adj[cur]) if n != prev and n not in seen]
            if not nxt:
                break
            prev, cur = cur, nxt[0]
            path.append(cur)
            seen.add(cur)
        parts.append(path)
    return parts


def _polygon(edges: Iterable[tuple[int, int]]) -> tuple[int, ...]:
    """One closed polygon from a MediaPipe connection set.

    A single loop is returned as is. Two open paths (the upper and lower edge of an
    eyebrow, both running outer → inner in MediaPipe's tables) are joined as
    ``path0 + reversed(path1)`` so the polygon does not self-intersect.
    """
    parts = _chain(edges)
    if len(parts) == 1:
        return tuple(parts[0])
    if len(parts) == 2:
        a, b = parts
        return tuple(a + b[::-1])
    raise ValueError(f"expected 1 loop or 2 paths, got {len(parts)} parts")


def _loops_containing(edges: Iterable[tuple[int, int]], anchor: int) -> tuple[int, ...]:
    for part in _chain(edges):
        if anchor in part:
            return tuple(part)
    raise ValueError(f"landmark {anchor} not in connection set")


def _load_connections():
    """MediaPipe's ``face_mesh_connections`` table module, loaded WITHOUT importing the
    ``mediapipe`` package (which costs ~0.6 s: TFLite, protobuf). The module is plain
    frozensets with no imports of its own."""
    import importlib.util
    import os

    spec = importlib.util.find_spec("mediapipe")
    if spec is None or spec.origin is None:
        raise ImportError("mediapipe is required for fastwarp.face (pip install mediapipe)")
    path = os.path.join(os.path.dirname(spec.origin), "python", "solutions", "face_mesh_connections.py")
    mod_spec = importlib.util.spec_from_file_location("_fastwarp_face_mesh_connections", path)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    return mod


def _build_indices() -> dict[str, tuple[int, ...]]:
    c = _load_connections()

    return {
        "LEFT_EYE": _polygon(c.FACEMESH_LEFT_EYE),
        "RIGHT_EYE": _polygon(c.FACEMESH_RIGHT_EYE),
        "LEFT_BROW": _polygon(c.FACEMESH_LEFT_EYEBROW),
        "RIGHT_BROW": _polygon(c.FACEMESH_RIGHT_EYEBROW),
        # FACEMESH_LIPS holds two loops: the outer vermilion border (through the mouth
        # corners 61/291) and the inner lip line (through 78/308).
        "OUTER_LIPS": _loops_containing(c.FACEMESH_LIPS, 61),
        "INNER_LIPS": _loops_containing(c.FACEMESH_LIPS, 78),
        "FACE_OVAL": _polygon(c.FACEMESH_FACE_OVAL),
        "LEFT_IRIS": _polygon(c.FACEMESH_LEFT_IRIS),
        "RIGHT_IRIS": _polygon(c.FACEMESH_RIGHT_IRIS),
    }


_IDX = _build_indices()
LEFT_EYE: tuple[int, ...] = _IDX["LEFT_EYE"]
RIGHT_EYE: tuple[int, ...] = _IDX["RIGHT_EYE"]
LEFT_BROW: tuple[int, ...] = _IDX["LEFT_BROW"]
RIGHT_BROW: tuple[int, ...] = _IDX["RIGHT_BROW"]
OUTER_LIPS: tuple[int, ...] = _IDX["OUTER_LIPS"]
INNER_LIPS: tuple[int, ...] = _IDX["INNER_LIPS"]
FACE_OVAL: tuple[int, ...] = _IDX["FACE_OVAL"]
LEFT_IRIS: tuple[int, ...] = _IDX["LEFT_IRIS"]
RIGHT_IRIS: tuple[int, ...] = _IDX["RIGHT_IRIS"]

# Named single landmarks of the canonical MediaPipe topology (subject's left/right).
RIGHT_EYE_OUTER, RIGHT_EYE_INNER = 33, 133
LEFT_EYE_OUTER, LEFT_EYE_INNER = 263, 362
NOSE_TIP = 1
CHIN = 152
FOREHEAD = 10
MOUTH_RIGHT, MOUTH_LEFT = 61, 291

EXPRESSION_REGIONS: dict[str, tuple[int, ...]] = {
    "mouth": tuple(sorted(set(OUTER_LIPS) | set(INNER_LIPS))),
    "eyes": tuple(sorted(set(LEFT_EYE) | set(RIGHT_EYE) | set(LEFT_IRIS) | set(RIGHT_IRIS))),
    "brows": tuple(sorted(set(LEFT_BROW) | set(RIGHT_BROW))),
}


def _check_landmarks(lm: np.ndarray, min_dims: int = 2) -> np.ndarray:
    lm = np.asarray(lm)
    if lm.ndim != 2 or lm.shape[0] != NUM_LANDMARKS or lm.shape[1] < min_dims or lm.shape[1] > 3:
        want = f"[{NUM_LANDMARKS}, 3]" if min_dims == 3 else f"[{NUM_LANDMARKS}, 2 or 3]"
        raise ValueError(f"landmarks must have shape {want}, got {lm.shape}")
    if not np.isfinite(lm).all():
        raise ValueError("landmarks contain NaN or inf")
    return lm.astype(np.float64, copy=False)


def inter_ocular_distance(lm: np.ndarray) -> float:
    """Outer-eye-corner distance (landmarks 33 and 263), the 300-W "inter-ocular" NME norm.

    Corners rather than pupils: they do not move with gaze or blinks.

    Args:
        lm: ``[478, 2 or 3]`` landmarks; only x, y are used.
    Returns:
        Distance in the landmarks' units (pixels).
    Raises:
        ValueError: wrong shape, non-finite values, or coincident corners.
    """
    p = _check_landmarks(lm)[:, :2]
    d = float(np.linalg.norm(p[LEFT_EYE_OUTER] - p[RIGHT_EYE_OUTER]))
    if d <= 1e-6:
        raise ValueError("degenerate landmarks: eye corners coincide")
    return d


def head_pose(lm: np.ndarray) -> tuple[float, float]:
    """Approximate head yaw and pitch in radians from 3D FaceMesh landmarks.

    Yaw is the angle of the outer-eye-corner line (33 → 263) out of the image plane
    (``atan2(dz, dx)``); pitch is the angle of the forehead → chin line (10 → 152) out of the
    image plane (``atan2(-dz, dy)``). Both are 0 for a frontal face; positive yaw means the
    subject's left eye is farther from the camera than the right, positive pitch means the
    chin is closer to the camera than the forehead (head tilted up). Accuracy is a few
    degrees at best: MediaPipe's z is a weakly supervised relative depth, and expression
    (jaw drop) moves the chin. Use it to compare poses, not as a calibrated angle.

    Args:
        lm: ``[478, 3]`` landmarks with z in the same pixel scale as x, y.
    Returns:
        ``(yaw, pitch)`` in radians.
    Raises:
        ValueError: landmarks without a z column or of the wrong shape.
    """
    p = _check_landmarks(lm, min_dims=3)
    eye = p[LEFT_EYE_OUTER] - p[RIGHT_EYE_OUTER]
    vert = p[CHIN] - p[FOREHEAD]
    # Measure each axis in its own in-plane direction so in-plane roll does not leak
    # into yaw/pitch.
    yaw = math.atan2(eye[2], math.hypot(eye[0], eye[1]))
    pitch = math.atan2(-vert[2], math.hypot(vert[0], vert[1]))
    return yaw, pitch


def check_bgr_image(image_bgr: np.ndarray, name: str = "image", min_size: int = 1) -> np.ndarray:
    """Raise ``ValueError`` naming ``name`` unless it is a uint8 ``[H, W, 3]`` array of at
    least ``min_size`` pixels a side; return it unchanged."""
    if not isinstance(image_bgr, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(image_bgr).__name__}")
    if image_bgr.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 BGR, got dtype {image_bgr.dtype}")
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ValueError(f"{name} must have shape [H, W, 3] (BGR), got {image_bgr.shape}")
    if image_bgr.shape[0] < min_size or image_bgr.shape[1] < min_size:
        raise ValueError(f"{name} is too small: {image_bgr.shape}")
    return image_bgr


class FaceMesh:
    """MediaPipe FaceMesh (refined: 478 landmarks) returning pixel-space landmarks.

    Use as a context manager or call :meth:`close`. With ``static_image_mode=False``
    MediaPipe tracks across calls, which is faster for consecutive video frames but
    assumes they come from one video. MediaPipe's native log lines on stderr are hidden
    (:func:`fastwarp._native_log.show_native_logs` lets them through).

    Args:
        static_image_mode: detect the face afresh on every image.
        max_faces: the most faces to return.
        min_detection_confidence: face-detector threshold in 0..1.
        min_tracking_confidence: landmark tracking threshold (video mode only).
    """

    def __init__(
        self,
        static_image_mode: bool = True,
        max_faces: int = 1,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
    ) -> None:
        if max_faces < 1:
            raise ValueError(f"max_faces must be >= 1, got {max_faces}")
        if not 0.0 <= min_detection_confidence <= 1.0:
            raise ValueError(f"min_detection_confidence must be in 0..1, got {min_detection_confidence}")
        # The graph logs from C++ straight to fd 2 while it starts (TFLite's XNNPACK line, absl's
        # "Feedback manager" warnings) and when its landmark subgraph first runs on a face:
        # hidden until then (fastwarp's -v shows them).
        self._first_face_seen = False
        with quiet_native_stderr():
            import mediapipe as mp  # lazy: pulls in TFLite and protobuf

            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=static_image_mode,
                max_num_faces=max_faces,
                refine_landmarks=True,
                min_detection_confidence=min_detection_confidence,
                min_tracking_confidence=min_tracking_confidence,
            )
            self._wait_until_started()

    def _wait_until_started(self) -> None:
        # start_run() returns before the graph's threads have opened its calculators (and
        # logged while doing it): wait for them inside the quiet window.
        graph = getattr(self._mesh, "_graph", None)
        if graph is not None:
            graph.wait_until_idle()

    def detect(self, image_bgr: np.ndarray) -> list[np.ndarray]:
        """Landmarks of every face found, largest (by landmark bounding box) first.

        Args:
            image_bgr: ``[H, W, 3]`` uint8 BGR image (OpenCV's layout).
        Returns:
            One float32 ``[478, 3]`` array per face: x, y in pixels of ``image_bgr``, z in
            the same pixel scale. Empty list when no face is found.
        Raises:
            ValueError: not a uint8 3-channel image; RuntimeError: after :meth:`close`.
        """
        img = check_bgr_image(image_bgr, min_size=2)
        if self._mesh is None:
            raise RuntimeError("FaceMesh is closed")
        import cv2

        h, w = img.shape[:2]
        rgb = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_BGR2RGB)
        if self._first_face_seen:
            result = self._mesh.process(rgb)
        else:
            with quiet_native_stderr():
                result = self._mesh.process(rgb)
            self._first_face_seen = bool(result.multi_face_landmarks)
        faces = []
        for face in result.multi_face_landmarks or ():
            arr = np.array([(p.x, p.y, p.z) for p in face.landmark], dtype=np.float32)
            if arr.shape[0] != NUM_LANDMARKS:  # refine_landmarks is on, so this is a bug upstream
                raise RuntimeError(f"MediaPipe returned {arr.shape[0]} landmarks, expected {NUM_LANDMARKS}")
            arr *= np.array([w, h, w], dtype=np.float32)
            faces.append(arr)
        faces.sort(key=lambda a: -float(np.ptp(a[:, 0]) * np.ptp(a[:, 1])))
        return faces

    def reset(self) -> None:
        """Forget what video mode tracked: the next image is detected afresh, as by a new
        FaceMesh (start of another stream). A no-op in static image mode.

        Raises:
            RuntimeError: after :meth:`close`.
        """
        if self._mesh is None:
            raise RuntimeError("FaceMesh is closed")
        with quiet_native_stderr():  # the graph restarts, and logs as it did at first
            self._mesh.reset()
            self._wait_until_started()

    def close(self) -> None:
        """Release the MediaPipe graph; safe to call twice."""
        if self._mesh is not None:
            self._mesh.close()
            self._mesh = None

    def __enter__(self) -> "FaceMesh":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # best effort; the graph holds native threads
        try:
            self.close()
        except Exception:
            pass

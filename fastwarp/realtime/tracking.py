"""Landmark smoothing and face tracks for streams: the One Euro filter (Casiez, Roussel,
Vogel, "1€ Filter", CHI 2012) and :class:`FaceTracker`, one track per face, which smooths each
face's landmarks and, more slowly, the shape its edit starts from (:meth:`FaceTracker.edit_shape`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..face.aus import eye_line_frame
from ..face.landmarks import LEFT_EYE_OUTER, RIGHT_EYE_OUTER

__all__ = ["OneEuroFilter", "FaceTracker"]


class OneEuroFilter:
    """The One Euro filter (Casiez et al., CHI 2012) over arrays, element-wise.

    Each element is low-passed with ``alpha = 1 / (1 + tau / Te)``, ``tau = 1 / (2 pi
    fc)``, ``Te`` the time since the previous sample, and a cutoff that grows with the
    element's speed: ``fc = min_cutoff + beta * |dx_hat| / scale``, where ``dx_hat`` is the
    derivative ``(x - x_hat_prev) / Te`` low-passed at ``d_cutoff``. The first sample (and
    the first after :meth:`reset`) passes through unchanged.

    Args:
        min_cutoff: cutoff in Hz when still (lower: less jitter, more lag at rest), > 0.
        beta: cutoff gain per unit of speed (units of ``x / scale`` per second), >= 0;
            higher: less lag when moving.
        d_cutoff: cutoff of the derivative's low-pass, Hz, > 0.
    Raises:
        ValueError: a parameter outside its range.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0) -> None:
        if not min_cutoff > 0 or not d_cutoff > 0 or not beta >= 0:
            raise ValueError(f"OneEuroFilter needs min_cutoff > 0, d_cutoff > 0, beta >= 0; got "
                             f"min_cutoff={min_cutoff}, beta={beta}, d_cutoff={d_cutoff}")
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self.reset()

    def reset(self) -> None:
        """Forget the past: the next sample passes through unchanged."""
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    @staticmethod
    def _alpha(cutoff, te: float):
        tau = 1.0 / (2.0 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / te)

    def __call__(self, x: np.ndarray, t: float, scale: float = 1.0) -> np.ndarray:
        """Filter one sample.

        Args:
            x: the sample, any shape (the same every call), float.
            t: its time in seconds (increasing; a repeated time returns the previous output).
            scale: the unit speeds are measured in (e.g. the face's inter-ocular distance in
                pixels, so ``beta`` does not depend on the face's size in the image), > 0.
        Returns:
            The filtered sample, float64, ``x``'s shape.
        """
        x = np.asarray(x, np.float64)
        if self._x is None or self._x.shape != x.shape:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), float(t)
            return self._x.copy()
        te = float(t) - self._t
        if te <= 0:
            return self._x.copy()
        dx = (x - self._x) / te
        self._dx = self._dx + self._alpha(self.d_cutoff, te) * (dx - self._dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx) / scale
        self._x = self._x + self._alpha(cutoff, te) * (x - self._x)
        self._t = float(t)
        return self._x.copy()


def _iod(landmarks: np.ndarray) -> float:
    return float(np.linalg.norm(landmarks[LEFT_EYE_OUTER, :2] - landmarks[RIGHT_EYE_OUTER, :2])) or 1.0


@dataclass
class _Track:
    id: int
    filter: OneEuroFilter
    last: np.ndarray
    shape: OneEuroFilter | None = None


class FaceTracker:
    """Face tracks across frames, each with its own :class:`OneEuroFilter` on the landmarks
    and a slower one on the face's shape that the edit is computed from (:meth:`edit_shape`).

    A detection continues the track whose previous (smoothed) eye-corner midpoint lies
    nearest, within ``max_jump`` inter-ocular distances; otherwise it starts a new track
    (its first landmarks pass through unsmoothed). Tracks with no detection in a frame end,
    so a face that leaves and re-enters starts afresh (both filters).

    Why a second filter: an edit is a change of the face's AUs from its current ones (a
    preset moves them a fraction of the way to its values, a relative edit adds to them), and
    the landmark motion model turns it into landmark motion from the face's shape and current
    AUs. Read off each frame's landmarks, the edit follows everything the face does from
    frame to frame: the landmarks' noise (an eye's opening is a few pixels), and speech,
    which the edit would undo (a smile brings the lip corners to the same width in every
    frame, so the mouth stops moving as it talks). With ``steady_edit`` the shape and AUs the
    edit starts from are the face's shape in its eye-line frame (position, size and in-plane
    rotation removed: :func:`fastwarp.face.aus.eye_line_frame`) low-passed along the track,
    so a constant edit is the same motion in every frame, placed on the frame's own
    landmarks: the face's own motion passes through it, and its slower changes (a smile the
    person makes, the eyes narrowing) still change the edit.

    Args:
        min_cutoff, beta, d_cutoff: the landmark filter's parameters (speed in
            inter-ocular distances per second); see :class:`OneEuroFilter`.
        max_jump: the farthest a face may move between frames and stay the same track, in
            inter-ocular distances.
        steady_edit: filter the shape the edit starts from (False: each frame's own, as
            with no smoothing; :meth:`edit_shape` returns None).
        edit_min_cutoff, edit_beta, edit_d_cutoff: that filter's parameters (speed in
            inter-ocular distances per second, in the eye-line frame).
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 20.0, d_cutoff: float = 1.0,
                 max_jump: float = 0.5, *, steady_edit: bool = True, edit_min_cutoff: float = 0.5,
                 edit_beta: float = 0.0, edit_d_cutoff: float = 1.0) -> None:
        self.params = dict(min_cutoff=min_cutoff, beta=beta, d_cutoff=d_cutoff)
        OneEuroFilter(**self.params)  # validate now
        self.edit_params = (dict(min_cutoff=edit_min_cutoff, beta=edit_beta, d_cutoff=edit_d_cutoff)
                            if steady_edit else None)
        if self.edit_params is not None:
            OneEuroFilter(**self.edit_params)
        self.max_jump = float(max_jump)
        self._tracks: list[_Track] = []
        self._next_id = 0

    def reset(self) -> None:
        """End every track."""
        self._tracks = []

    @staticmethod
    def _centre(lm: np.ndarray) -> np.ndarray:
        return 0.5 * (lm[LEFT_EYE_OUTER, :2] + lm[RIGHT_EYE_OUTER, :2])

    def update(self, faces: Sequence[np.ndarray], t: float) -> list[tuple[int, np.ndarray, bool]]:
        """Smooth this frame's faces.

        Args:
            faces: ``[478, 3]`` landmark arrays in frame pixels (any order).
            t: the frame's time in seconds.
        Returns:
            For each face, in the given order: ``(track id, smoothed float32 [478, 3],
            new)``, ``new`` true where the face started a track (unsmoothed).
        """
        pairs = []
        for i, lm in enumerate(faces):
            for j, tr in enumerate(self._tracks):
                d = np.linalg.norm(self._centre(lm) - self._centre(tr.last)) / _iod(tr.last)
                if d <= self.max_jump:
                    pairs.append((d, i, j))
        pairs.sort()
        taken_faces: dict[int, int] = {}
        taken_tracks: set[int] = set()
        for _, i, j in pairs:
            if i not in taken_faces and j not in taken_tracks:
                taken_faces[i] = j
                taken_tracks.add(j)
        out, tracks = [], []
        for i, lm in enumerate(faces):
            new = i not in taken_faces
            if new:
                tr = _Track(self._next_id, OneEuroFilter(**self.params), lm)
                self._next_id += 1
            else:
                tr = self._tracks[taken_faces[i]]
            smoothed = tr.filter(lm, t, scale=_iod(lm)).astype(np.float32)
            tr.last = smoothed
            tracks.append(tr)
            out.append((tr.id, smoothed, new))
        self._tracks = tracks
        return out

    def edit_shape(self, track: int, landmarks: np.ndarray, t: float) -> np.ndarray | None:
        """The face's shape for the edit: ``landmarks`` in the eye-line frame
        (:func:`fastwarp.face.aus.eye_line_frame`: inter-ocular units), low-passed along the
        track. Call once a frame, after :meth:`update`, with a track id it gave.

        Args:
            track: a track id of this frame's :meth:`update`.
            landmarks: ``[478, 2 or 3]`` in any pixel frame (the frame's, the crop's).
            t: the frame's time in seconds.
        Returns:
            float32 ``[478, 2]`` (the frame's own shape on a track's first frame or for a
            track id not current), or None with ``steady_edit=False``.
        """
        if self.edit_params is None:
            return None
        q = eye_line_frame(np.asarray(landmarks)[None])[0]
        tr = next((tr for tr in self._tracks if tr.id == track), None)
        if tr is None:
            return q.astype(np.float32)
        if tr.shape is None:
            tr.shape = OneEuroFilter(**self.edit_params)
        return tr.shape(q, t).astype(np.float32)

"""LandmarkMotion: the motion step made explicit (docs/design.md, "Motion from landmarks").

From a face's FaceMesh landmarks and an AU change it predicts a displacement of every
landmark; :func:`fastwarp.ops.mesh_flow` renders it through the face mesh
(:mod:`fastwarp.face.mesh`) into the dense backward flow the composite warps with.

Model (everything in the eye-line frame of :func:`fastwarp.face.aus.eye_line_frame`: origin
between the eyes, unit = inter-ocular distance, so one model serves faces of any size,
position and in-plane rotation):

    z = (t - c) W + g(c, t - c, s) - g(c, 0, s)          # [K] motion coefficients
    displacement = sum_k z_k B_k                          # [478, 2], IOD units

- ``B`` (``[K, 478, 2]``): the principal components of real expression motion, the landmark
  differences between frames of the training videos (fixed, from the data): every output is
  a mixture of motions real faces make, so no landmark moves alone and the mesh stays smooth.
- ``W`` (``[17, K]``): a per-AU displacement basis (the linear part, GANimation's
  "AU intensity scales the motion").
- ``g``: a small MLP of the current AUs, the AU change and ``s``, the face's shape code (its
  landmarks projected on the principal components of face shape), for what is not linear
  (an eye closes by exactly its own opening). Subtracting ``g(c, 0, s)`` makes a zero AU
  change move nothing, exactly.

At inference (:meth:`LandmarkMotion.forward`) a raised brow AU starts from where the face's brow
rests (:func:`brow_rest_share`): the estimator has no per-person neutral, and most faces' brows rest
below its neutral (anatomy and head pitch, not expression), so the model, trained to reach the
target's absolute reading, would first lift them to it.

Trained by ``python -m training.motion`` (AU-consistency through
:func:`fastwarp.face.aus_torch.estimate_aus_torch`, real motion, rigidity). Checkpoints are
safetensors + JSON, like :class:`~fastwarp.models.EditorNet`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..au import AU_INDEX, AU_MAX, NUM_AUS
from ..face.aus_torch import estimate_aus_torch, eye_line_transform, from_eye_line, to_eye_line
from ..face.landmarks import NUM_LANDMARKS
from .small_checkpoint import SmallModel

__all__ = ["BROW_AUS", "LandmarkMotion", "MotionConfig", "brow_rest_share"]

#: The AUs read from brow height alone (:func:`fastwarp.face.estimate_aus_batch`).
BROW_AUS: tuple[str, ...] = ("AU01", "AU02", "AU04")
_BROW = torch.tensor([AU_INDEX[a] for a in BROW_AUS])

#: Brow AUs counted from where the brows rest (:func:`brow_rest_share`; read at each call).
#: False: the model's own motion, which lifts a brow up to the estimator's neutral first (the
#: editor before it; ``tools/edit_crops.py`` variant ``brows_from_rest=0``).
BROWS_FROM_REST = True


def brow_rest_share(q: Tensor, current: Tensor, target: Tensor) -> Tensor:
    """How much of the model's brow motion a raised brow AU asks for, ``Tensor[N]`` in (0, 1].

    The estimator's brow AUs read 0 below its calibration's neutral (clipped), and the photos'
    brows rest a median 2.9 units of AU01 below it (88 % of the 51 photos: anatomy and head
    pitch; the estimator has no per-person baseline, :mod:`fastwarp.face.aus`). The model,
    trained to reach the target's absolute reading, moves such a brow by the change asked
    *plus* its distance up to neutral: ``AU01=+2.5`` lifted a brow resting 6 units below
    neutral three times as far as one at neutral, and the person's own brow height went with
    it. A relative edit should move the brow by the change asked, from where it rests.

    For the brow AUs raised (``target > current``; :data:`BROW_AUS`) with change ``delta`` and
    raw (unclipped) reading ``r`` of ``q`` (:func:`fastwarp.face.aus_torch.estimate_aus_torch`),
    the share is ``sum(delta) / sum(delta + max(-r, 0))``: 1 where no raised brow rests below
    neutral (or none is raised).

    Args:
        q (Tensor[N, 478, 2]): faces in the eye-line frame (IOD units).
        current, target (Tensor[N, 17]): AU intensities, 0..5.
    """
    delta = (target - current)[:, _BROW].to(q.dtype).clamp(min=0)
    if not bool((delta > 0).any()):  # no brow raised: the estimator need not run (0.4 ms a call)
        return torch.ones(q.shape[0], dtype=q.dtype, device=q.device)
    below = (-estimate_aus_torch(q, raw=True)[:, _BROW]).clamp(min=0)
    asked = delta.sum(1)
    made = (delta + torch.where(delta > 0, below, torch.zeros_like(below))).sum(1)
    return torch.where(made > 0, asked / made.clamp(min=1e-12), torch.ones_like(asked))


@dataclass
class MotionConfig:
    """Architecture of a :class:`LandmarkMotion` (saved next to its weights)."""

    motion_components: int = 48   # K
    shape_components: int = 16    # S
    hidden: int = 128
    # The AU change the model was trained on, per AU (target - current is clamped to it).
    max_change: float = AU_MAX
    extra: dict = field(default_factory=dict)


class LandmarkMotion(SmallModel):
    """Landmark displacements for an AU change (see the module docstring).

    Args:
        config: sizes.
        motion_basis: ``[K, 478, 2]`` principal components of real motion (IOD units);
            default zeros (filled by training or :meth:`load`).
        motion_scale: ``[K]`` their standard deviations (coefficients are predicted in
            these units).
        shape_mean, shape_basis: ``[478, 2]`` and ``[S, 478, 2]``, the face-shape PCA.
    """

    config_class = MotionConfig
    checkpoint_what = "landmark motion"

    def __init__(self, config: MotionConfig | None = None, *, motion_basis: Tensor | None = None,
                 motion_scale: Tensor | None = None, shape_mean: Tensor | None = None,
                 shape_basis: Tensor | None = None) -> None:
        super().__init__()
        self.config = c = config or MotionConfig()
        K, S, V = c.motion_components, c.shape_components, NUM_LANDMARKS
        self.register_buffer("motion_basis", torch.zeros(K, V, 2) if motion_basis is None else motion_basis.float())
        self.register_buffer("motion_scale", torch.ones(K) if motion_scale is None else motion_scale.float())
        self.register_buffer("shape_mean", torch.zeros(V, 2) if shape_mean is None else shape_mean.float())
        self.register_buffer("shape_basis", torch.zeros(S, V, 2) if shape_basis is None else shape_basis.float())
        self.au_basis = nn.Parameter(torch.zeros(NUM_AUS, K))
        self.mlp = nn.Sequential(nn.Linear(2 * NUM_AUS + S, c.hidden), nn.SiLU(), nn.Linear(c.hidden, c.hidden),
                                 nn.SiLU(), nn.Linear(c.hidden, K))

    def coefficients(self, q: Tensor, current: Tensor, target: Tensor) -> Tensor:
        """Motion coefficients ``z`` ``[N, K]`` (in units of ``motion_scale``) for faces
        ``q`` ``[N, 478, 2]`` in the eye-line frame and AU vectors ``[N, 17]`` (0..5)."""
        c = current.to(q.dtype) / AU_MAX
        lim = self.config.max_change / AU_MAX
        delta = (target.to(q.dtype) / AU_MAX - c).clamp(-lim, lim)
        s = torch.einsum("nvd,svd->ns", q - self.shape_mean, self.shape_basis)
        g = self.mlp(torch.cat([c, delta, s], dim=1))
        g0 = self.mlp(torch.cat([c, torch.zeros_like(delta), s], dim=1))
        return delta @ self.au_basis * AU_MAX + g - g0

    def displacement_iod(self, q: Tensor, current: Tensor, target: Tensor) -> Tensor:
        """``[N, 478, 2]`` displacements in the eye-line frame (IOD units)."""
        z = self.coefficients(q, current, target) * self.motion_scale
        return torch.einsum("nk,kvd->nvd", z, self.motion_basis)

    def forward(self, landmarks: Tensor, current: Tensor, target: Tensor, shape: Tensor | None = None) -> Tensor:
        """Displacements of the landmarks, in their own pixel frame.

        Args:
            landmarks (Tensor[N, 478, 2 or 3]): FaceMesh landmarks, pixels of any frame
                (the aligned crop, the map grid, the frame); floating point.
            current, target (Tensor[N, 17]): AU intensities 0..5 (order of
                :data:`fastwarp.au.AU_NAMES`); a change beyond ``config.max_change`` is
                clamped to it.
            shape (Tensor[N, 478, 2] or [478, 2], optional): the face shape the motion is
                computed from, in the eye-line frame (IOD units), e.g. a steady copy of the
                face's (:meth:`fastwarp.realtime.FaceTracker.edit_shape`); the motion is then
                placed by the landmarks' own eye-line frame. Default: the landmarks' own shape.
        Returns:
            Tensor[N, 478, 2]: (dx, dy) in the landmarks' pixels; exactly 0 where
            ``target == current``. A raised brow AU moves the brows from where they rest
            (:func:`brow_rest_share` ``k``): the model's motion for the brow AUs' change alone
            is kept to its share ``k``, ``d = d(c -> t) - (1 - k) d(c -> t_brows)``.
        Raises:
            ValueError: wrong shapes.
        """
        if landmarks.ndim != 3 or landmarks.shape[1] != NUM_LANDMARKS:
            raise ValueError(f"landmarks must have shape [N, {NUM_LANDMARKS}, 2 or 3], got {tuple(landmarks.shape)}")
        n = landmarks.shape[0]
        for name, a in (("current", current), ("target", target)):
            if a.shape != (n, NUM_AUS):
                raise ValueError(f"{name} AUs must have shape [{n}, {NUM_AUS}], got {tuple(a.shape)}")
        lm = landmarks[..., :2].to(self.motion_basis.dtype)
        origin, ex, iod = eye_line_transform(lm)
        if shape is None:
            q = to_eye_line(lm, origin, ex, iod)
        else:
            q = torch.as_tensor(shape, dtype=lm.dtype, device=lm.device)
            q = q.expand(n, -1, -1) if q.ndim == 3 else q[None].expand(n, -1, -1)
        d = self.displacement_iod(q, current, target)
        k = brow_rest_share(q, current, target) if BROWS_FROM_REST else torch.ones(n, dtype=q.dtype, device=q.device)
        if bool((k < 1).any()):
            brows = current.to(q.dtype).clone()
            brows[:, _BROW] = target[:, _BROW].to(q.dtype)
            d = d - (1 - k)[:, None, None] * self.displacement_iod(q, current, brows)
        return from_eye_line(d, ex, iod)

"""Region textures in the editor: paint what the warp cannot make inside each eye (issue 19;
docs/design.md, "Data flow"), at the eye's own resolution, after the face's composite.

For each eye of an edited face (:class:`RegionPainter.paint`):

1. the eye region (:data:`fastwarp.face.regions.EYE`, 64 x 128 px along the eye line, the
   left eye mirrored) is cut from the frame before the edit (:func:`cut_region`);
2. it is warped through the face mesh by the same landmark motion as the face
   (:func:`fastwarp.ops.mesh_flow` on the region's grid, as in training), which gives the
   network its inputs: the warped region, the opening map, the moved lids' contours, the
   motion gate, and the AU change;
3. :class:`~fastwarp.models.region_texture.RegionTexture` returns texture and mask; the mask
   is exactly 1 where no mesh triangle deformed and on the region's border;
4. texture and mask are blended onto the face's composite by one
   :func:`fastwarp.warp_blend` with a zero flow and ``theta`` = the region's matrix: a zero
   flow samples every pixel at its own centre (bilinear and bicubic taps both return the
   pixel itself there), so no frame pixel is resampled a second time; where the mask is 1
   (outside the region, its border, everything that did not deform) the output is the
   composite bit for bit.

The network runs only for an eye whose lids move: the lid gap (:func:`eye_gap`, in eye
widths) of the moved landmarks differs from the face's by :data:`LID_MOTION` or more, and
the region deforms at all. Blinks, half-closed and widened eyes (AU45, AU43, AU05, AU07)
move the gap by 0.06 to 0.3; a smile, a jaw drop, brows or a frown by 0.02 at most (three
photos, measured), and there the mesh texture alone paints as before: a zero edit, or an
edit that does not move the lids, costs nothing here and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

from . import ops
from .face.mesh import MESH_POINTS
from .face.regions import EYE, cut_region, eye_gap, region_matrix, to_region
from .models import WEIGHTS_DIR
from .models.region_texture import RegionTexture, region_inputs

__all__ = ["EYE_WEIGHTS", "EYE_WEIGHTS_LITE", "LID_MOTION", "VIDEO_SMOOTHING", "eye_weights", "TEXTURES", "RegionMotion", "RegionPainter", "eye_weights_installed"]

#: The bundled eye region texture (trained by ``python -m training.region_gan --kind eye``), and
#: its narrower ``lite`` form (8-16-32-64 channels, a quarter of the parameters) that the
#: ``lite`` editor uses where installed.
EYE_WEIGHTS = WEIGHTS_DIR / "region_eye"
EYE_WEIGHTS_LITE = WEIGHTS_DIR / "region_eye_lite"
#: The editor's ``texture=`` choices: the mesh texture and the eye region textures on top
#: ("regions"), the mesh texture alone ("mesh", the texture before issue 19), or none (the
#: warp alone).
TEXTURES = ("auto", "regions", "mesh", "none")
#: The lid gap change (eye widths) from which an eye's region texture runs.
LID_MOTION = 0.03
#: Video: the weight of this frame's texture and mask against the previous frame's, in the
#: region's own coordinates (which move with the face): an exponential moving average that
#: steadies the generator's frame-to-frame noise without dragging the texture behind motion.
VIDEO_SMOOTHING = 0.5


def eye_weights(editor_weights: str | None = None) -> Path:
    """The bundled eye region texture for an editor's weights: ``region_eye_lite`` for
    ``"lite"`` where installed, else ``region_eye``."""
    if editor_weights == "lite" and EYE_WEIGHTS_LITE.with_suffix(".safetensors").is_file():
        return EYE_WEIGHTS_LITE
    return EYE_WEIGHTS


def eye_weights_installed() -> bool:
    return EYE_WEIGHTS.with_suffix(".safetensors").is_file()


@dataclass
class RegionMotion:
    """A face's landmark motion in its crop, for the region textures (mesh motion only).

    Attributes:
        source, target: ``[478, 2]`` float64 landmarks in pixels of the crop, before and after
            the edit (the iris points, 468..477, do not move).
        au_delta: ``[17]`` float32, target minus current AU intensities.
    """

    source: np.ndarray
    target: np.ndarray
    au_delta: np.ndarray


class RegionPainter:
    """The eye region texture of :mod:`fastwarp.region_paint`, applied to a face's composite.

    Args:
        eye: a :class:`RegionTexture` of kind ``"eye"``.
        resample: the image taps of the blend (``warp_blend``'s ``mode``; with a zero flow
            both give the pixel itself, so it only names the kernel path).
    Raises:
        ValueError: ``eye`` is not an eye model of the region's size.
    """

    def __init__(self, eye: RegionTexture, resample: str = "bicubic") -> None:
        c = eye.config
        if c.kind != "eye" or (c.height, c.width) != (EYE.height, EYE.width):
            raise ValueError(f"the eye region texture must be kind 'eye' of {EYE.height}x{EYE.width}, "
                             f"got {c.kind!r} {c.height}x{c.width}")
        self.eye = eye.eval()
        self.resample = resample

    @classmethod
    def load(cls, eye_weights: str | Path | None = None, resample: str = "bicubic") -> "RegionPainter":
        """From checkpoint files (default: the bundled :data:`EYE_WEIGHTS`).

        Raises:
            FileNotFoundError: a file is missing. ValueError: not an eye region texture.
        """
        return cls(RegionTexture.load(eye_weights or EYE_WEIGHTS), resample)

    @torch.no_grad()
    def eye_inputs(self, frame8: np.ndarray, source: np.ndarray, target: np.ndarray,
                   side: str) -> tuple[np.ndarray, dict[str, Tensor]] | None:
        """One eye's ``(matrix [2, 3] frame -> region, inputs)``: the generator's inputs
        (:func:`~fastwarp.models.region_texture.region_inputs`, as in training), or None where
        the region does not deform.

        Args:
            frame8: ``[H, W, 3]`` uint8 BGR, the frame before the edit.
            source, target: ``[478, 2]`` landmarks in frame pixels.
            side: ``"right"`` or ``"left"`` (the subject's).
        """
        matrix = region_matrix(source[None], EYE, side)[0]
        region, _ = cut_region(frame8, matrix, EYE)
        rgb = torch.from_numpy(np.ascontiguousarray(region[..., ::-1])).permute(2, 0, 1)[None].float() / 127.5 - 1.0
        inputs = region_inputs(rgb, torch.from_numpy(to_region(source, matrix))[None],
                               torch.from_numpy(to_region(target, matrix))[None], "eye", [side])
        return (matrix, inputs) if inputs["gate"].any() else None

    @torch.no_grad()
    def eye_maps(self, frame8: np.ndarray, source: np.ndarray, target: np.ndarray, au_delta: np.ndarray,
                 sides: tuple[str, ...] = ("right", "left")) -> dict[str, tuple[np.ndarray, Tensor, Tensor]]:
        """``{side: (matrix, texture [1, 3, 64, 128] RGB [-1, 1], mask [1, 1, 64, 128])}`` for
        each eye of ``sides`` whose lid gap moves by :data:`LID_MOTION` or more and whose
        region deforms, the eyes run as one batch (a small network's convolutions cost little
        more for two images than for one).

        Args:
            frame8, source, target: as :meth:`eye_inputs`.
            au_delta: ``[17]`` target minus current AUs.
        """
        gap = eye_gap(target[None])[0] - eye_gap(source[None])[0]  # (right, left), eye widths
        moving = [side for side in sides if abs(float(gap[0 if side == "right" else 1])) >= LID_MOTION]
        eyes = {side: got for side in moving if (got := self.eye_inputs(frame8, source, target, side)) is not None}
        if not eyes:
            return {}
        batch = {k: torch.cat([inputs[k] for _, inputs in eyes.values()])
                 for k in ("warped", "opening", "contours", "gate")}
        au = torch.from_numpy(np.asarray(au_delta, np.float32))[None].expand(len(eyes), -1)
        texture, mask = self.eye(batch["warped"], batch["opening"], batch["contours"], batch["gate"], au)
        return {side: (matrix, texture[i:i + 1], mask[i:i + 1]) for i, (side, (matrix, _)) in enumerate(eyes.items())}

    @torch.no_grad()
    def paint(self, image: Tensor, frame8: np.ndarray, crop_matrix: np.ndarray, motion: RegionMotion,
              scale: float = 1.0, memory: dict | None = None) -> Tensor:
        """Both eyes painted onto a face's composite.

        Args:
            image (Tensor[1, 3, H, W]): the composite (BGR; uint8, or float32 for a 16-bit
                frame), as :meth:`ExpressionEditor.blend` holds it; never written.
            frame8: ``[H, W, 3]`` uint8 BGR, the frame before this face's edit (the regions
                are cut from it).
            crop_matrix: ``[2, 3]`` frame -> crop (:attr:`FaceCrop.matrix`).
            motion: the face's :class:`RegionMotion`.
            scale: the frame's value of 255 (65535 / 255 for a 16-bit frame composited in
                float32).
            memory: video only: one face track's state across frames (a dict the caller keeps
                per track, empty at its start). Each eye's texture and mask are then
                ``VIDEO_SMOOTHING * this + (1 - VIDEO_SMOOTHING) * previous`` in region
                coordinates; an eye that is not painted forgets its past.
        Returns:
            Tensor like ``image``: the composite, bit for bit where no eye deforms.
        """
        inv = cv2.invertAffineTransform(np.asarray(crop_matrix, np.float64))
        source = motion.source @ inv[:, :2].T + inv[:, 2]
        target = motion.target @ inv[:, :2].T + inv[:, 2]
        out = image
        painted = self.eye_maps(frame8, source, target, motion.au_delta)
        for side in ("right", "left"):
            if side not in painted:
                if memory is not None:
                    memory.pop(side, None)
                continue
            matrix, texture, mask = painted[side]
            if memory is not None:
                if side in memory:
                    a = VIDEO_SMOOTHING
                    texture = a * texture + (1.0 - a) * memory[side][0]
                    mask = a * mask + (1.0 - a) * memory[side][1]
                memory[side] = (texture, mask)
            bgr = (texture.flip(1) + 1.0) * (127.5 * scale)  # RGB [-1, 1] -> the frame's BGR
            theta = torch.from_numpy(matrix[None]).to(device=out.device, dtype=torch.float32)
            zero = torch.zeros(1, 2, EYE.height, EYE.width, device=out.device)
            out = ops.warp_blend(out, zero, bgr.to(out.device), mask.to(out.device), theta=theta, mode=self.resample)
        return out


def region_motion(landmarks: np.ndarray, moved: Tensor, grid: int, crop_size: int, au_delta: np.ndarray) -> RegionMotion:
    """A :class:`RegionMotion` from the mesh path's motion on its ``grid`` (``moved``: the mesh
    vertices' displacement ``[1, V, 2]`` in grid pixels; grid pixels scale to crop pixels by
    ``crop_size / grid``)."""
    source = np.asarray(landmarks, np.float64)[:, :2]
    target = source.copy()
    target[:MESH_POINTS] += moved[0, :MESH_POINTS].double().numpy() * (crop_size / grid)
    return RegionMotion(source, target, np.asarray(au_delta, np.float32))

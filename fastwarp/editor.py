"""End-to-end expression editing of photos and video frames (DESIGN.md, "Data flow").

frame → FaceMesh landmarks → similarity-aligned crop at the face's own resolution →
current AUs (geometric estimate) → target AUs (absolute or relative edits) →
FaceEditor at the model's resolution (128 px by default) → ``fastwarp.warp_blend`` of the
crop at its own resolution with the model's 128 px flow, texture and mask (upsampled
inside the kernel: resolution independence) → paste back under a feathered face mask
(pixels outside the face stay bit-identical).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import cv2
import numpy as np
import torch

from . import backends, ops
from .au import apply_au_edits
from .convert import bgr_to_tensor, tensor_to_bgr
from .face import FaceCrop, FaceMesh, align_face, estimate_aus, paste_back
from .models import FaceEditor

__all__ = ["ExpressionEditor", "FrameEdit", "default_device"]

AUEdit = tuple[str, float, bool]


def default_device() -> str:
    """``"cuda"`` where fastwarp's CUDA kernels and a GPU are available, else ``"cpu"``."""
    return "cuda" if backends()["cuda"] else "cpu"


@dataclass
class FrameEdit:
    """Result of editing one frame.

    Attributes:
        frame: ``[H, W, 3]`` uint8 BGR, the edited frame (the input, copied, if no face).
        face_found: whether a face was found and edited.
        current_aus, target_aus: ``[17]`` float32 intensities 0..5 (None if no face).
        crop: the aligned crop of the input (None if no face).
        edited_crop: ``[S, S, 3]`` uint8 BGR edited crop at crop resolution (None if no face).
    """

    frame: np.ndarray
    face_found: bool
    current_aus: np.ndarray | None = None
    target_aus: np.ndarray | None = None
    crop: FaceCrop | None = None
    edited_crop: np.ndarray | None = None


class ExpressionEditor:
    """Edit the largest face of photos or video frames to target Action Units.

    Args:
        weights: bundled weights name ("base", "lite") or checkpoint path without suffix (default: "base").
        device: ``"cpu"``, ``"cuda"`` or None for :func:`default_device`.
        video: track landmarks across consecutive frames (MediaPipe's video mode) instead
            of detecting afresh in every image.
        max_crop_size: largest crop side in pixels; the crop takes the face's own
            resolution between the model's size and this, so detail is kept where the
            mask keeps the warped image.

    Use as a context manager (or call :meth:`close`) to release MediaPipe.
    """

    def __init__(self, weights: str | None = None, device: str | None = None, *, video: bool = False,
                 max_crop_size: int = 512) -> None:
        self.device = torch.device(device or default_device())
        self.model = FaceEditor.load(weights, map_location=self.device)
        self.size = self.model.config.image_size
        self.max_crop_size = max(int(max_crop_size), self.size)
        self.mesh = FaceMesh(static_image_mode=not video, max_faces=1)

    def __enter__(self) -> "ExpressionEditor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.mesh.close()

    def _crop(self, frame: np.ndarray, landmarks: np.ndarray) -> FaceCrop:
        probe = align_face(frame, landmarks, self.size)
        # The face's own resolution: crop pixels that map 1:1 onto frame pixels.
        native = int(round(self.size / probe.scale))
        side = int(np.clip(native - native % 4, self.size, self.max_crop_size))
        return probe if side == self.size else align_face(frame, landmarks, side)

    @torch.no_grad()
    def edit(self, frame_bgr: np.ndarray, edits: Iterable[AUEdit]) -> FrameEdit:
        """Edit one frame.

        Args:
            frame_bgr: ``[H, W, 3]`` uint8 BGR (OpenCV).
            edits: ``(AU name, value, relative)`` triples, e.g. from
                :func:`fastwarp.au.parse_au_edit`; absolute values set the AU, relative
                ones add to the face's current estimate.
        Returns:
            :class:`FrameEdit`; with no face, the frame comes back unchanged.
        """
        faces = self.mesh.detect(frame_bgr)
        if not faces:
            return FrameEdit(frame=frame_bgr.copy(), face_found=False)
        crop = self._crop(frame_bgr, faces[0])
        current = estimate_aus(crop.landmarks)
        target = apply_au_edits(current, list(edits))
        edited = self.edit_crop(crop.image, target, current)
        return FrameEdit(frame=paste_back(frame_bgr, edited, crop), face_found=True, current_aus=current,
                         target_aus=target, crop=crop, edited_crop=edited)

    @torch.no_grad()
    def edit_crop(self, crop_bgr: np.ndarray, target_aus: Sequence[float] | np.ndarray,
                  current_aus: Sequence[float] | np.ndarray) -> np.ndarray:
        """Edit an aligned crop ``[S', S', 3]`` uint8 BGR (any ``S' >= S``) from its
        ``current_aus`` to ``target_aus`` (``[17]`` each, 0..5); returns the edited crop at
        its own resolution.

        The networks see the crop resized to the model's size; :func:`fastwarp.warp_blend`
        applies their flow, texture and mask to the full-resolution crop, upsampling them
        bilinearly (``align_corners=False``, flow scaled to crop pixels) inside the kernel.
        """
        side = crop_bgr.shape[0]
        small = crop_bgr if side == self.size else cv2.resize(crop_bgr, (self.size, self.size),
                                                              interpolation=cv2.INTER_AREA)
        as_batch = lambda a: torch.as_tensor(np.asarray(a, np.float32), device=self.device)[None]  # noqa: E731
        result = self.model(bgr_to_tensor(small, self.device), as_batch(target_aus), as_batch(current_aus))
        if side == self.size:
            return tensor_to_bgr(result.output)[0]
        image_hr = bgr_to_tensor(crop_bgr, self.device)
        return tensor_to_bgr(ops.warp_blend(image_hr, result.flow, result.texture, result.mask))[0]

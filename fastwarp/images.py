"""Conversions between OpenCV images and the networks' tensors (one place for both
directions, so training, evaluation and inference agree)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["bgr_to_tensor", "tensor_to_bgr"]


def bgr_to_tensor(images: np.ndarray, device: str | torch.device = "cpu") -> Tensor:
    """BGR uint8 images ``[H, W, 3]`` or ``[N, H, W, 3]`` → RGB float32 ``[N, 3, H, W]`` in [-1, 1].

    Raises:
        ValueError: not uint8, or the last dimension is not 3.
    """
    if images.dtype != np.uint8 or images.shape[-1] != 3 or images.ndim not in (3, 4):
        raise ValueError(f"expected uint8 BGR images [H, W, 3] or [N, H, W, 3], got {images.dtype} {images.shape}")
    batch = images[None] if images.ndim == 3 else images
    t = torch.from_numpy(np.ascontiguousarray(batch[..., ::-1])).to(device)
    return t.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def tensor_to_bgr(t: Tensor) -> np.ndarray:
    """RGB ``[N, 3, H, W]`` in [-1, 1] → BGR uint8 ``[N, H, W, 3]`` (rounded, clipped)."""
    if t.dim() != 4 or t.shape[1] != 3:
        raise ValueError(f"expected a tensor [N, 3, H, W], got {list(t.shape)}")
    rgb = ((t.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return np.ascontiguousarray(rgb.permute(0, 2, 3, 1).cpu().numpy()[..., ::-1])

"""Conversions between OpenCV images and the networks' tensors (one place for both
directions, so training, evaluation and inference agree)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["bgr_to_tensor", "tensor_to_bgr", "achromatic", "luma_texture", "LUMA"]

#: Rec. 601 luma weights of (R, G, B), as Pillow's ``convert("L")`` and
#: :func:`fastwarp.media.image.to_grey` use them.
LUMA: tuple[float, float, float] = (0.299, 0.587, 0.114)


def achromatic(bgr: np.ndarray, tol: int = 2) -> bool:
    """Whether a picture is grey (a black-and-white photo or video stored as colour): no
    pixel's three channels differ by more than ``tol`` levels (JPEG's chroma rounding).

    A strided sample is checked first, so a colour picture answers in microseconds.

    Args:
        bgr: ``[H, W, 3]`` uint8 or uint16 (``tol`` in its levels).
    Raises:
        ValueError: not ``[H, W, 3]``.
    """
    if bgr.ndim != 3 or bgr.shape[-1] != 3:
        raise ValueError(f"expected an image [H, W, 3], got {bgr.shape}")
    for view in (bgr[::7, ::7], bgr):
        a = view.astype(np.int32)
        if (np.abs(a[..., 1] - a[..., 0]) > tol).any() or (np.abs(a[..., 2] - a[..., 0]) > tol).any():
            return False
    return True


def luma_texture(texture: Tensor) -> Tensor:
    """RGB ``[N, 3, H, W]`` -> its luma (:data:`LUMA`) in all three channels, same dtype and
    range: what a painted texture may add to a grey picture (no colour).

    Raises:
        ValueError: not ``[N, 3, H, W]``.
    """
    if texture.dim() != 4 or texture.shape[1] != 3:
        raise ValueError(f"expected a texture [N, 3, H, W], got {list(texture.shape)}")
    w = torch.tensor(LUMA, dtype=texture.dtype, device=texture.device).view(1, 3, 1, 1)
    return (texture * w).sum(1, keepdim=True).expand_as(texture).contiguous()


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

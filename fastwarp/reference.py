"""Pure-PyTorch reference of fastwarp's ops: the specification every backend is tested
against (in float64 on CPU) and the baseline every benchmark compares with.

``warp`` is exactly ``F.grid_sample(image, base_grid + normalised_flow, mode="bilinear",
padding_mode=..., align_corners=True)`` (DESIGN.md, "The ops"). ``align_corners=True``
puts pixel centres at integer coordinates, so the flow in pixels is normalised by
``2 / (size - 1)``. A size-1 axis has no extent: grid_sample maps every finite
coordinate onto its only pixel, so its normalising factor is 0 (non-finite flow still
gives NaN coordinates there, as grid_sample would).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["warp", "warp_blend", "normalised_grid"]


def normalised_grid(flow: Tensor) -> Tensor:
    """Sampling grid for ``F.grid_sample(..., align_corners=True)`` from a pixel flow.

    Args:
        flow (Tensor[N, 2, H, W]): ``flow[:, 0]`` = dx, ``flow[:, 1]`` = dy, in pixels.
    Returns:
        Tensor[N, H, W, 2]: ``(x, y)`` in [-1, 1] where the sample stays inside the image.
    """
    _, _, H, W = flow.shape
    opts = dict(dtype=flow.dtype, device=flow.device)
    xs = torch.linspace(-1.0, 1.0, W, **opts)
    ys = torch.linspace(-1.0, 1.0, H, **opts)
    sx = 2.0 / (W - 1) if W > 1 else 0.0
    sy = 2.0 / (H - 1) if H > 1 else 0.0
    gx = xs.view(1, 1, W) + flow[:, 0] * sx
    gy = ys.view(1, H, 1) + flow[:, 1] * sy
    return torch.stack((gx, gy), dim=-1)


def warp(image: Tensor, flow: Tensor, *, padding_mode: str = "border") -> Tensor:
    """Reference backward warp: ``out[n, c, y, x] = bilinear(image[n, c], x + dx, y + dy)``.

    Args:
        image (Tensor[N, C, H, W]): floating point.
        flow (Tensor[N, 2, H, W]): displacement in pixels (dx, dy), same dtype and device.
        padding_mode (str): ``"border"`` or ``"zeros"``.
    Returns:
        Tensor[N, C, H, W].
    """
    return F.grid_sample(image, normalised_grid(flow), mode="bilinear", padding_mode=padding_mode,
                         align_corners=True)


def warp_blend(image: Tensor, flow: Tensor, texture: Tensor, mask: Tensor, *,
               padding_mode: str = "border") -> Tensor:
    """Reference warp-plus-blend: ``mask * warp(image, flow) + (1 - mask) * texture``.

    Args:
        image (Tensor[N, C, H, W]), flow (Tensor[N, 2, H, W]) as in :func:`warp`.
        texture (Tensor[N, C, H, W]): the texture network's image.
        mask (Tensor[N, 1, H, W]): attention mask, 1 keeps the warped pixel (GANimation).
    """
    return mask * warp(image, flow, padding_mode=padding_mode) + (1 - mask) * texture

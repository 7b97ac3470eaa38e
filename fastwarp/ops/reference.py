"""Pure-PyTorch reference of fastwarp's ops: the specification every backend is tested
against (in float64 on CPU) and the baseline every benchmark compares with.

``warp`` is exactly ``F.grid_sample(image, base_grid + normalised_flow, mode="bilinear",
padding_mode=..., align_corners=True)`` (docs/design.md, "The ops"). ``align_corners=True``
puts pixel centres at integer coordinates, so the flow in pixels is normalised by
``2 / (size - 1)``. A size-1 axis has no extent: grid_sample maps every finite
coordinate onto its only pixel, so its normalising factor is 0 (non-finite flow still
gives NaN coordinates there, as grid_sample would).

Resolution independence (docs/design.md): ``flow``, ``texture`` and ``mask`` may share a
smaller size ``h x w`` (``h <= H``, ``w <= W``). They are first brought to the image's
size by :func:`upsample` (``F.interpolate(..., mode="bilinear", align_corners=False)``),
the flow's values scaled by ``W / w`` (dx) and ``H / h`` (dy), so a flow stays in pixels
of the grid it was predicted on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["warp", "warp_blend", "normalised_grid", "upsample", "upsample_flow"]


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


def upsample(t: Tensor, size: tuple[int, int]) -> Tensor:
    """``t`` bilinearly resized to ``size`` = (H, W) with ``align_corners=False``
    (``F.interpolate`` semantics); returned unchanged when it already has that size.

    Args:
        t (Tensor[N, C, h, w]): floating point.
        size: (H, W), each at least the input's.
    Returns:
        Tensor[N, C, H, W].
    """
    if tuple(t.shape[-2:]) == tuple(size):
        return t
    return F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False)


def upsample_flow(flow: Tensor, size: tuple[int, int]) -> Tensor:
    """A flow in pixels of its own ``h x w`` grid, as a flow in pixels of an ``H x W``
    grid: :func:`upsample`, then dx times ``W / w`` and dy times ``H / h``.

    Args:
        flow (Tensor[N, 2, h, w]): (dx, dy) in pixels of the h x w grid.
        size: (H, W).
    Returns:
        Tensor[N, 2, H, W].
    """
    h, w = flow.shape[-2:]
    H, W = size
    if (h, w) == (H, W):
        return flow
    up = upsample(flow, size)
    return torch.stack((up[:, 0] * (W / w), up[:, 1] * (H / h)), dim=1)


def warp(image: Tensor, flow: Tensor, *, padding_mode: str = "border") -> Tensor:
    """Reference backward warp: ``out[n, c, y, x] = bilinear(image[n, c], x + dx, y + dy)``.

    Args:
        image (Tensor[N, C, H, W]): floating point.
        flow (Tensor[N, 2, h, w]): displacement (dx, dy) in pixels, same dtype and device;
            ``h <= H``, ``w <= W`` (upsampled by :func:`upsample_flow`).
        padding_mode (str): ``"border"`` or ``"zeros"``.
    Returns:
        Tensor[N, C, H, W].
    """
    flow = upsample_flow(flow, image.shape[-2:])
    return F.grid_sample(image, normalised_grid(flow), mode="bilinear", padding_mode=padding_mode,
                         align_corners=True)


def warp_blend(image: Tensor, flow: Tensor, texture: Tensor, mask: Tensor, *,
               padding_mode: str = "border") -> Tensor:
    """Reference warp-plus-blend: ``mask * warp(image, flow) + (1 - mask) * texture``.

    Args:
        image (Tensor[N, C, H, W]), flow (Tensor[N, 2, h, w]) as in :func:`warp`.
        texture (Tensor[N, C, h, w]): the texture network's image.
        mask (Tensor[N, 1, h, w]): attention mask, 1 keeps the warped pixel (GANimation).
    Texture and mask are upsampled to H x W by :func:`upsample`.
    """
    size = image.shape[-2:]
    mask = upsample(mask, size)
    return mask * warp(image, flow, padding_mode=padding_mode) + (1 - mask) * upsample(texture, size)

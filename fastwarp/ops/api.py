"""fastwarp's public ops: fused backward warp and warp-plus-blend (docs/design.md, "The ops").

Typed wrappers and ``nn.Module`` forms; :mod:`fastwarp.ops.registry` picks the kernel
(C++ on CPU, CUDA, Triton or the pure-PyTorch reference).
"""

from __future__ import annotations

from torch import Tensor, nn

from . import checks
from .registry import kernel, resolve_backend

__all__ = ["warp", "warp_blend", "Warp", "WarpBlend"]


def warp(image: Tensor, flow: Tensor, *, padding_mode: str = "border", backend: str = "auto") -> Tensor:
    """Backward-warp ``image`` by a dense ``flow`` in pixels, bilinearly.

    ``out[n, c, y, x] = bilinear(image[n, c], x + flow[n, 0, y, x], y + flow[n, 1, y, x])``,
    pixel centres at integer coordinates: exactly ``F.grid_sample(..., mode="bilinear",
    align_corners=True)`` on the equivalent normalised grid (see :mod:`fastwarp.ops.reference`),
    in one fused pass with no grid tensor.

    Args:
        image (Tensor[N, C, H, W]): float16, bfloat16, float32 or float64; contiguous NCHW,
            channels_last or any strided view.
        flow (Tensor[N, 2, h, w]): displacement in pixels, ``flow[:, 0]`` = dx (rightwards),
            ``flow[:, 1]`` = dy (downwards); same dtype and device as image. ``h <= H`` and
            ``w <= W``: a smaller flow is upsampled on the fly (bilinear,
            ``align_corners=False``) and its values scaled by ``W / w`` and ``H / h``, i.e.
            it is in pixels of its own grid (docs/design.md, resolution independence).
        padding_mode (str): ``"border"`` clamps sample coordinates into the image (NaN
            clamps to the first pixel); ``"zeros"`` makes taps outside the image read 0
            (a NaN or infinite coordinate then gives NaN, as grid_sample does).
        backend (str): which kernels run: ``"auto"`` (see :func:`resolve_backend`: the C++
            kernels on CPU, on CUDA the CUDA kernels where compiled in, else Triton),
            ``"cpu"`` (C++, CPU tensors), ``"cuda"`` (CUDA tensors), ``"triton"``
            (:mod:`fastwarp.ops.triton_backend`: CUDA tensors, or CPU tensors under
            ``TRITON_INTERPRET=1``) or ``"reference"`` (:mod:`fastwarp.ops.reference`, pure PyTorch).
            Every backend computes the same function.

    Returns:
        Tensor[N, C, H, W]: in the image's dtype and memory format. Differentiable with
        respect to ``image`` and ``flow``; half precision computes in float32.

    Raises:
        ValueError: wrong rank or shape (``flow.shape[1] != 2``, batch mismatch, flow larger
            than the image), tensors on different devices, unknown ``padding_mode``; unknown
            ``backend``, or tensors on a device the chosen backend does not run on.
        TypeError: integer tensors or mismatched dtypes.
        RuntimeError: ``backend="triton"`` without an importable triton, or ``"cuda"``
            without compiled CUDA kernels.

    Example:
        >>> image = torch.rand(1, 3, 128, 128)
        >>> flow = torch.zeros(1, 2, 128, 128)
        >>> flow[:, 0] = 2.0  # every pixel samples 2 px to its right
        >>> out = fastwarp.warp(image, flow)
    """
    return kernel("warp", backend, image.device)(image, flow, padding_mode)


def warp_blend(image: Tensor, flow: Tensor, texture: Tensor, mask: Tensor, *,
               padding_mode: str = "border", backend: str = "auto") -> Tensor:
    """Warp, then blend with a texture under a mask, fused: ``mask * warp(image, flow) +
    (1 - mask) * texture`` (GANimation's attention convention, Pumarola et al. 2018, eq. 1:
    mask = 1 keeps the warped pixel).

    Args:
        image (Tensor[N, C, H, W]), flow (Tensor[N, 2, h, w]), padding_mode, backend: as in
            :func:`warp`.
        texture (Tensor[N, C, h, w]): the texture network's output, same dtype and device.
        mask (Tensor[N, 1, h, w]): blend weight per pixel, broadcast over channels; not
            clamped by the op.

    flow, texture and mask share one grid ``h x w`` no larger than the image's; when it is
    smaller, all three are upsampled inside the kernel (``F.interpolate(...,
    mode="bilinear", align_corners=False)`` semantics) and the output keeps the image's
    full resolution: the networks can run at 128 px while a 512 px crop keeps its detail.
    Gradients reach the small tensors through the upsampling.

    Returns:
        Tensor[N, C, H, W] in the image's dtype and memory format; differentiable with
        respect to all four tensors.

    Raises:
        ValueError, TypeError, RuntimeError: as :func:`warp`, also for ``texture`` (shape
            ``[N, C, h, w]``) and ``mask`` (``mask.shape[1] != 1``, or not the flow's grid).
    """
    return kernel("warp_blend", backend, image.device)(image, flow, texture, mask, padding_mode)


class Warp(nn.Module):
    """:func:`warp` as a module (no parameters); ``padding_mode`` and ``backend`` as there.

    Raises:
        ValueError: unknown ``padding_mode`` or ``backend``.
    """

    def __init__(self, padding_mode: str = "border", backend: str = "auto") -> None:
        super().__init__()
        if padding_mode not in checks.PADDING_MODES:
            raise ValueError(f"padding_mode must be 'border' or 'zeros', got '{padding_mode}'")
        resolve_backend(backend, "cpu")  # checks the name
        self.padding_mode = padding_mode
        self.backend = backend

    def forward(self, image: Tensor, flow: Tensor) -> Tensor:
        return warp(image, flow, padding_mode=self.padding_mode, backend=self.backend)

    def extra_repr(self) -> str:
        return f"padding_mode={self.padding_mode!r}" + (f", backend={self.backend!r}" if self.backend != "auto" else "")


class WarpBlend(Warp):
    """:func:`warp_blend` as a module (no parameters); ``padding_mode`` and ``backend`` as there."""

    def forward(self, image: Tensor, flow: Tensor, texture: Tensor, mask: Tensor) -> Tensor:  # type: ignore[override]
        return warp_blend(image, flow, texture, mask, padding_mode=self.padding_mode, backend=self.backend)



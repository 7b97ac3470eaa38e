"""fastwarp's ops: fused backward warp and warp-plus-blend (DESIGN.md, "The ops").

The kernels are C++ (CPU) and CUDA torch ops declared in ``csrc/fastwarp.cpp``; this
module registers their fake kernels (shapes only, for ``torch.compile``/``torch.export``)
and autograd formulas, and gives typed wrappers.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from . import _checks

try:
    from . import _C  # noqa: F401  (loading the library runs the op registrations)
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    raise ImportError(
        "fastwarp's compiled kernels (fastwarp._C) are missing or do not match this torch: "
        "build them with `pip install --no-build-isolation -e .` in the repository "
        f"(torch {torch.__version__}); original error: {exc}"
    ) from exc

__all__ = ["warp", "warp_blend", "Warp", "WarpBlend"]

_ops = torch.ops.fastwarp


def warp(image: Tensor, flow: Tensor, *, padding_mode: str = "border") -> Tensor:
    """Backward-warp ``image`` by a dense ``flow`` in pixels, bilinearly.

    ``out[n, c, y, x] = bilinear(image[n, c], x + flow[n, 0, y, x], y + flow[n, 1, y, x])``,
    pixel centres at integer coordinates: exactly ``F.grid_sample(..., mode="bilinear",
    align_corners=True)`` on the equivalent normalised grid (see :mod:`fastwarp.reference`),
    in one fused pass with no grid tensor.

    Args:
        image (Tensor[N, C, H, W]): float16, bfloat16, float32 or float64; contiguous NCHW,
            channels_last or any strided view.
        flow (Tensor[N, 2, h, w]): displacement in pixels, ``flow[:, 0]`` = dx (rightwards),
            ``flow[:, 1]`` = dy (downwards); same dtype and device as image. ``h <= H`` and
            ``w <= W``: a smaller flow is upsampled on the fly (bilinear,
            ``align_corners=False``) and its values scaled by ``W / w`` and ``H / h``, i.e.
            it is in pixels of its own grid (DESIGN.md, resolution independence).
        padding_mode (str): ``"border"`` clamps sample coordinates into the image (NaN
            clamps to the first pixel); ``"zeros"`` makes taps outside the image read 0
            (a NaN or infinite coordinate then gives NaN, as grid_sample does).

    Returns:
        Tensor[N, C, H, W]: in the image's dtype and memory format. Differentiable with
        respect to ``image`` and ``flow``; half precision computes in float32.

    Raises:
        ValueError: wrong rank or shape (``flow.shape[1] != 2``, batch mismatch, flow larger
            than the image), tensors on different devices, unknown ``padding_mode``.
        TypeError: integer tensors or mismatched dtypes.

    Example:
        >>> image = torch.rand(1, 3, 128, 128)
        >>> flow = torch.zeros(1, 2, 128, 128)
        >>> flow[:, 0] = 2.0  # every pixel samples 2 px to its right
        >>> out = fastwarp.warp(image, flow)
    """
    return _ops.warp.default(image, flow, padding_mode)


def warp_blend(image: Tensor, flow: Tensor, texture: Tensor, mask: Tensor, *,
               padding_mode: str = "border") -> Tensor:
    """Warp, then blend with a texture under a mask, fused: ``mask * warp(image, flow) +
    (1 - mask) * texture`` (GANimation's attention convention, Pumarola et al. 2018, eq. 1:
    mask = 1 keeps the warped pixel).

    Args:
        image (Tensor[N, C, H, W]), flow (Tensor[N, 2, h, w]), padding_mode: as in :func:`warp`.
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
        ValueError, TypeError: as :func:`warp`, also for ``texture`` (shape
            ``[N, C, h, w]``) and ``mask`` (``mask.shape[1] != 1``, or not the flow's grid).
    """
    return _ops.warp_blend.default(image, flow, texture, mask, padding_mode)


class Warp(nn.Module):
    """:func:`warp` as a module (no parameters)."""

    def __init__(self, padding_mode: str = "border") -> None:
        super().__init__()
        if padding_mode not in _checks.PADDING_MODES:
            raise ValueError(f"padding_mode must be 'border' or 'zeros', got '{padding_mode}'")
        self.padding_mode = padding_mode

    def forward(self, image: Tensor, flow: Tensor) -> Tensor:
        return warp(image, flow, padding_mode=self.padding_mode)

    def extra_repr(self) -> str:
        return f"padding_mode={self.padding_mode!r}"


class WarpBlend(Warp):
    """:func:`warp_blend` as a module (no parameters)."""

    def forward(self, image: Tensor, flow: Tensor, texture: Tensor, mask: Tensor) -> Tensor:  # type: ignore[override]
        return warp_blend(image, flow, texture, mask, padding_mode=self.padding_mode)


# --- fake kernels: output metadata only, same checks as the C++ kernels -----------------

def _output_like_image(image: Tensor) -> Tensor:
    fmt = torch._prims_common.suggest_memory_format(image)
    return torch.empty(image.shape, dtype=image.dtype, device=image.device, memory_format=fmt)


@torch.library.register_fake("fastwarp::warp")
def _warp_fake(image: Tensor, flow: Tensor, padding_mode: str = "border") -> Tensor:
    _checks.check_warp_args("fastwarp.warp", image, flow, padding_mode=padding_mode)
    return _output_like_image(image)


@torch.library.register_fake("fastwarp::warp_blend")
def _warp_blend_fake(image: Tensor, flow: Tensor, texture: Tensor, mask: Tensor,
                     padding_mode: str = "border") -> Tensor:
    _checks.check_warp_args("fastwarp.warp_blend", image, flow, texture, mask, padding_mode)
    return _output_like_image(image)


def _grads_fake(need: Sequence[bool], tensors: Sequence[Tensor]) -> tuple[Tensor, ...]:
    out = []
    for i, (wanted, t) in enumerate(zip(need, tensors)):
        if not wanted:
            out.append(tensors[0].new_empty((0,)))
        elif i == 0:
            # The image gradient leaves an accumulation buffer in the image's memory format.
            out.append(_output_like_image(t))
        else:
            out.append(torch.empty_like(t))
    return tuple(out)


@torch.library.register_fake("fastwarp::warp_backward")
def _warp_backward_fake(grad_output: Tensor, image: Tensor, flow: Tensor, padding_mode: str,
                        output_mask: Sequence[bool]) -> tuple[Tensor, Tensor]:
    _checks.check_warp_args("fastwarp.warp_backward", image, flow, padding_mode=padding_mode)
    _checks.check_grad_output("fastwarp.warp_backward", grad_output, image)
    return _grads_fake(output_mask, (image, flow))  # type: ignore[return-value]


@torch.library.register_fake("fastwarp::warp_blend_backward")
def _warp_blend_backward_fake(grad_output: Tensor, image: Tensor, flow: Tensor, texture: Tensor, mask: Tensor,
                              padding_mode: str, output_mask: Sequence[bool]) -> tuple[Tensor, ...]:
    _checks.check_warp_args("fastwarp.warp_blend_backward", image, flow, texture, mask, padding_mode)
    _checks.check_grad_output("fastwarp.warp_blend_backward", grad_output, image)
    return _grads_fake(output_mask, (image, flow, texture, mask))


# --- autograd: the backward calls the registered backward op ---------------------------

def _setup_context(ctx, inputs, output) -> None:
    *tensors, padding_mode = inputs
    ctx.save_for_backward(*tensors)
    ctx.padding_mode = padding_mode


def _warp_backward(ctx, grad_output: Tensor):
    image, flow = ctx.saved_tensors
    need = list(ctx.needs_input_grad[:2])
    grads = _ops.warp_backward.default(grad_output, image, flow, ctx.padding_mode, need)
    return tuple(g if wanted else None for g, wanted in zip(grads, need)) + (None,)


def _warp_blend_backward(ctx, grad_output: Tensor):
    image, flow, texture, mask = ctx.saved_tensors
    need = list(ctx.needs_input_grad[:4])
    grads = _ops.warp_blend_backward.default(grad_output, image, flow, texture, mask, ctx.padding_mode, need)
    return tuple(g if wanted else None for g, wanted in zip(grads, need)) + (None,)


torch.library.register_autograd("fastwarp::warp", _warp_backward, setup_context=_setup_context)
torch.library.register_autograd("fastwarp::warp_blend", _warp_blend_backward, setup_context=_setup_context)

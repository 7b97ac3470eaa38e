"""fastwarp's public ops: fused backward warp and warp-plus-blend (docs/design.md, "The ops").

Typed wrappers and ``nn.Module`` forms; :mod:`fastwarp.ops.registry` picks the kernel
(C++ on CPU, CUDA, Triton or the pure-PyTorch reference).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from . import checks
from .registry import kernel, mesh_flow_kernel, resolve_backend

__all__ = ["warp", "warp_blend", "mesh_flow", "Warp", "WarpBlend"]


def warp(image: Tensor, flow: Tensor, *, padding_mode: str = "border", backend: str = "auto",
         theta: Tensor | None = None, mode: str = "bilinear") -> Tensor:
    """Backward-warp ``image`` by a dense ``flow`` in pixels, bilinearly or bicubically.

    ``out[n, c, y, x] = sample(image[n, c], x + flow[n, 0, y, x], y + flow[n, 1, y, x])``,
    pixel centres at integer coordinates: exactly ``F.grid_sample(..., mode=mode,
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
        mode (str): the image taps. ``"bilinear"`` (2 x 2 taps, the default) or
            ``"bicubic"``: 4 x 4 taps with Keys' cubic convolution weights (a = -0.75; R. Keys,
            "Cubic convolution interpolation for digital image processing", IEEE TASSP 1981),
            grid_sample's ``mode="bicubic"``: with ``"border"`` each tap's index is clamped into
            the image, with ``"zeros"`` taps outside read 0; a non-finite coordinate gives NaN
            in either padding mode. Bicubic keeps more of the image's detail at sub-pixel
            offsets (a bilinear tap is a low-pass filter there) and can overshoot: a uint8
            frame is clamped to 0..255 before rounding. The maps' own upsampling (a flow,
            texture or mask smaller than the image) and their sampling at a theta grid stay
            bilinear: only the image taps change.
        backend (str): which kernels run: ``"auto"`` (see :func:`resolve_backend`: the C++
            kernels on CPU, on CUDA the CUDA kernels where compiled in, else Triton),
            ``"cpu"`` (C++, CPU tensors), ``"cuda"`` (CUDA tensors), ``"triton"``
            (:mod:`fastwarp.ops.triton_backend`: CUDA tensors, or CPU tensors under
            ``TRITON_INTERPRET=1``) or ``"reference"`` (:mod:`fastwarp.ops.reference`, pure PyTorch).
            Every backend computes the same function.
        theta (Tensor[N, 2, 3] or None): the frame-space composite (docs/design.md): the
            flow's grid (any ``h x w``) sits on the image where ``(u, v) = theta[n] @ (x, y,
            1)``; the flow is sampled there (bilinear, clamped to the grid) in grid pixels and
            moves the image by ``L^-1 @ flow`` (``L = theta[n, :, :2]``, invertible). Pixels
            outside the grid's footprint (``-0.5 <= u <= w - 0.5``, ``-0.5 <= v <= h - 0.5``)
            are the image's own, bit for bit, and only the footprint is computed. theta's
            dtype is the flow's or float64, on the image's device; it gets no gradient.
            ``theta = [[w/W, 0, 0.5 w/W - 0.5], [0, h/H, 0.5 h/H - 0.5]]`` is the op without
            theta. With theta the image may be a **uint8** frame (an OpenCV ``[H, W, 3]``
            array viewed as a channels_last ``[1, 3, H, W]`` tensor) with float32 maps:
            float32 math, each computed pixel rounded to the nearest integer (ties to even);
            inference only.

    Returns:
        Tensor[N, C, H, W]: in the image's dtype and memory format (a new tensor: the
        image is never written). Differentiable with respect to ``image`` and ``flow``;
        half precision computes in float32.

    Raises:
        ValueError: wrong rank or shape (``flow.shape[1] != 2``, batch mismatch, flow larger
            than the image), tensors on different devices, unknown ``padding_mode``; unknown
            ``backend``, or tensors on a device the chosen backend does not run on.
            A theta that is not ``[N, 2, 3]``, not finite, or whose linear part is not
            invertible.
        TypeError: integer tensors (but a uint8 image with theta) or mismatched dtypes.
        RuntimeError: ``backend="triton"`` without an importable triton, or ``"cuda"``
            without compiled CUDA kernels; a uint8 image while autograd records the maps.

    Example:
        >>> image = torch.rand(1, 3, 128, 128)
        >>> flow = torch.zeros(1, 2, 128, 128)
        >>> flow[:, 0] = 2.0  # every pixel samples 2 px to its right
        >>> out = fastwarp.warp(image, flow)
    """
    if theta is not None:
        _refuse_uint8_under_autograd("fastwarp.warp", image, flow)
        return kernel("warp", backend, image.device, theta=True)(image, flow, theta, padding_mode, mode)
    return kernel("warp", backend, image.device)(image, flow, padding_mode, mode)


def warp_blend(image: Tensor, flow: Tensor, texture: Tensor, mask: Tensor, *,
               padding_mode: str = "border", backend: str = "auto", theta: Tensor | None = None,
               mode: str = "bilinear") -> Tensor:
    """Warp, then blend with a texture under a mask, fused: ``mask * warp(image, flow) +
    (1 - mask) * texture`` (GANimation's attention convention, Pumarola et al. 2018, eq. 1:
    mask = 1 keeps the warped pixel).

    Args:
        image (Tensor[N, C, H, W]), flow (Tensor[N, 2, h, w]), padding_mode, backend, theta, mode:
            as in :func:`warp` (with ``theta``, texture and mask are sampled at each pixel's
            grid position like the flow, and the editor's frame-space composite is one call:
            every face pixel is sampled once from the original frame).
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
    if theta is not None:
        _refuse_uint8_under_autograd("fastwarp.warp_blend", image, flow, texture, mask)
        return kernel("warp_blend", backend, image.device, theta=True)(image, flow, texture, mask, theta, padding_mode,
                                                                        mode)
    return kernel("warp_blend", backend, image.device)(image, flow, texture, mask, padding_mode, mode)


def mesh_flow(vertices: Tensor, displacement: Tensor, triangles: Tensor, size, *,
              backend: str = "auto") -> tuple[Tensor, Tensor]:
    """Render a triangle mesh's motion to a dense backward flow for :func:`warp`, piecewise
    affine through its triangulation (docs/design.md, "mesh_flow").

    The destination mesh is ``dest = vertices + displacement``. For each pixel p of the
    ``H x W`` grid (pixel centres at integers: row i, column j is (x, y) = (j, i), the flow's
    convention), take the lowest-index destination triangle t holding p and p's barycentric
    coordinates b in it; then ``flow(p) = sum_k b_k * vertices[n, t_k] - p``: where p's content
    came from, minus p, so ``warp(image, flow)`` moves the content at each vertex by its
    displacement. It is computed as ``-sum_k b_k * displacement[n, t_k]`` (the same value, as
    ``sum_k b_k dest_k = p`` and ``sum_k b_k = 1``): zero displacement gives a flow of exactly
    0. Pixels in no destination triangle get flow 0: with an outer ring of vertices that do
    not move, the flow falls continuously to 0 outside the mesh.

    Containment (every backend the same, ``csrc/mesh_flow.h``): in the inputs' precision,
    ``area2 = (x1 - x0)(y2 - y0) - (x2 - x0)(y1 - y0)`` of t's destination vertices,
    ``w0 = (x1 - px)(y2 - py) - (x2 - px)(y1 - py)`` and cyclically ``w1``, ``w2``,
    ``b_k = w_k / area2``; p is in t when ``|area2| >= 1e-8`` (float32) or ``1e-12`` (float64)
    and finite (else t is degenerate and skipped), p lies in t's bounding box and every
    ``b_k >= 0``. Either orientation; where several triangles hold p (a shared edge, a folded
    mesh) the lowest index wins. (Triton on a GPU may fuse the edge functions' multiply-adds:
    a pixel within rounding of an edge can then take the neighbouring triangle.)

    Args:
        vertices (Tensor[N, V, 2]): source positions (x, y) in pixels of the output grid,
            float32 or float64.
        displacement (Tensor[N, V, 2]): forward motion of each vertex in pixels, same dtype and
            device.
        triangles (Tensor[T, 3]): vertex indices in ``[0, V)``, int32 or int64, shared by the
            batch, on the vertices' device.
        size: ``(H, W)`` of the flow, each at least 1.
        backend (str): ``"auto"``, ``"cpu"``, ``"cuda"``, ``"triton"`` or ``"reference"``, as
            in :func:`warp`.

    Returns:
        (flow, triangle_index): flow Tensor[N, 2, H, W] in the vertices' dtype (dx, dy in
        pixels), differentiable with respect to vertices and displacement (with A the
        Jacobian of t's destination -> source affine map, ``d flow / d dest_j = -b_j A`` and
        ``d flow / d vertices_j = b_j I`` directly; the CPU backward is deterministic, CUDA
        and Triton add with atomics); triangle_index Tensor[N, H, W] int32, the triangle
        used per pixel, -1 where none (not differentiable).

    Raises:
        ValueError: wrong rank or shape (``vertices.shape[2] != 2``, displacement not the
            vertices' shape, ``triangles.shape[1] != 3``), tensors on different devices, a
            triangle index outside ``[0, V)``, ``size`` not two integers >= 1; unknown
            ``backend`` or one that cannot run on the tensors' device.
        TypeError: vertices not float32/float64, displacement of another dtype, triangles not
            int32/int64, ``size`` not a sequence of integers.

    Example:
        >>> vertices = torch.tensor([[[10., 10.], [50., 10.], [10., 50.]]])
        >>> displacement = torch.tensor([[[0., 0.], [4., 0.], [0., 0.]]])
        >>> flow, index = fastwarp.mesh_flow(vertices, displacement, torch.tensor([[0, 1, 2]]), (64, 64))
        >>> moved = fastwarp.warp(image, flow)
    """
    size = checks.mesh_flow_size("fastwarp.mesh_flow", size)
    checks.check_mesh_flow_args("fastwarp.mesh_flow", vertices, displacement, triangles, size)
    return mesh_flow_kernel(backend, vertices.device)(vertices, displacement, triangles, size)


def _refuse_uint8_under_autograd(op: str, image: Tensor, *maps: Tensor) -> None:
    if image.dtype == torch.uint8 and torch.is_grad_enabled() and any(t.requires_grad for t in maps):
        wants = ", ".join(n for n, t in zip(("flow", "texture", "mask"), maps) if t.requires_grad)
        raise RuntimeError(f"{op}: a uint8 image is for inference only, but autograd records {wants}: "
                           "use a floating-point image to train, or run under torch.no_grad()")


class Warp(nn.Module):
    """:func:`warp` as a module (no parameters); ``padding_mode``, ``backend`` and ``mode`` as there.

    Raises:
        ValueError: unknown ``padding_mode``, ``backend`` or ``mode``.
    """

    def __init__(self, padding_mode: str = "border", backend: str = "auto", mode: str = "bilinear") -> None:
        super().__init__()
        checks.check_modes(type(self).__name__, padding_mode, mode)
        resolve_backend(backend, "cpu")  # checks the name
        self.padding_mode = padding_mode
        self.backend = backend
        self.mode = mode

    def forward(self, image: Tensor, flow: Tensor) -> Tensor:
        return warp(image, flow, padding_mode=self.padding_mode, backend=self.backend, mode=self.mode)

    def extra_repr(self) -> str:
        return (f"padding_mode={self.padding_mode!r}" + (f", mode={self.mode!r}" if self.mode != "bilinear" else "")
                + (f", backend={self.backend!r}" if self.backend != "auto" else ""))


class WarpBlend(Warp):
    """:func:`warp_blend` as a module (no parameters); ``padding_mode``, ``backend`` and ``mode`` as there."""

    def forward(self, image: Tensor, flow: Tensor, texture: Tensor, mask: Tensor) -> Tensor:  # type: ignore[override]
        return warp_blend(image, flow, texture, mask, padding_mode=self.padding_mode, backend=self.backend,
                          mode=self.mode)



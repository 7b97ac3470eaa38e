"""Registration of the C++ ops (``csrc/fastwarp.cpp``) with PyTorch's Python side.

Importing this module loads ``fastwarp._C`` (whose static initialisers declare the op
schemas and register the CPU and CUDA kernels) and registers, for each op:

- a fake (meta) kernel: output metadata only, after the same argument checks as the C++
  kernels (:mod:`fastwarp.ops.checks`), for ``torch.compile`` and ``torch.export``;
- autograd: the backward calls the registered backward op;
- autocast: float32 inputs under ``torch.autocast``, as ``grid_sample``.

:func:`register_op_autograd` and :func:`register_op_autocast` are shared with the Triton
backend (:mod:`fastwarp.ops.triton_backend`). See docs/design.md, "Registration".
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from . import checks

try:
    from .. import _C  # noqa: F401  (loading the library runs the op registrations)
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    raise ImportError(
        "fastwarp's compiled kernels (fastwarp._C) are missing or do not match this torch: "
        "build them with `pip install --no-build-isolation -e .` in the repository "
        f"(torch {torch.__version__}); original error: {exc}"
    ) from exc

__all__ = ["output_like_image", "register_op_autograd", "register_op_autocast", "theta_output_like_image",
           "mesh_flow_outputs", "register_mesh_flow_autograd"]

_ops = torch.ops.fastwarp


# --- fake kernels: output metadata only, same checks as the C++ kernels -----------------

def output_like_image(image: Tensor) -> Tensor:
    fmt = torch._prims_common.suggest_memory_format(image)
    return torch.empty(image.shape, dtype=image.dtype, device=image.device, memory_format=fmt)


@torch.library.register_fake("fastwarp::warp")
def _warp_fake(image: Tensor, flow: Tensor, padding_mode: str = "border", mode: str = "bilinear") -> Tensor:
    checks.check_warp_args("fastwarp.warp", image, flow, padding_mode=padding_mode, mode=mode)
    return output_like_image(image)


@torch.library.register_fake("fastwarp::warp_blend")
def _warp_blend_fake(image: Tensor, flow: Tensor, texture: Tensor, mask: Tensor,
                     padding_mode: str = "border", mode: str = "bilinear") -> Tensor:
    checks.check_warp_args("fastwarp.warp_blend", image, flow, texture, mask, padding_mode, mode)
    return output_like_image(image)


def _grads_fake(need: Sequence[bool], tensors: Sequence[Tensor]) -> tuple[Tensor, ...]:
    out = []
    for i, (wanted, t) in enumerate(zip(need, tensors)):
        if not wanted:
            out.append(tensors[0].new_empty((0,)))
        elif i == 0:
            # The image gradient leaves an accumulation buffer in the image's memory format.
            out.append(output_like_image(t))
        else:
            out.append(torch.empty_like(t))
    return tuple(out)


@torch.library.register_fake("fastwarp::warp_backward")
def _warp_backward_fake(grad_output: Tensor, image: Tensor, flow: Tensor, padding_mode: str, mode: str,
                        output_mask: Sequence[bool]) -> tuple[Tensor, Tensor]:
    checks.check_warp_args("fastwarp.warp_backward", image, flow, padding_mode=padding_mode, mode=mode)
    checks.check_grad_output("fastwarp.warp_backward", grad_output, image)
    return _grads_fake(output_mask, (image, flow))  # type: ignore[return-value]


@torch.library.register_fake("fastwarp::warp_blend_backward")
def _warp_blend_backward_fake(grad_output: Tensor, image: Tensor, flow: Tensor, texture: Tensor, mask: Tensor,
                              padding_mode: str, mode: str, output_mask: Sequence[bool]) -> tuple[Tensor, ...]:
    checks.check_warp_args("fastwarp.warp_blend_backward", image, flow, texture, mask, padding_mode, mode)
    checks.check_grad_output("fastwarp.warp_blend_backward", grad_output, image)
    return _grads_fake(output_mask, (image, flow, texture, mask))


# --- autograd: the backward calls the registered backward op ---------------------------

def _setup_context(ctx, inputs, output) -> None:
    *tensors, padding_mode, mode = inputs
    ctx.save_for_backward(*tensors)
    ctx.padding_mode = padding_mode
    ctx.mode = mode


def register_op_autograd(op, backward_op, no_grad_tensors: int = 0) -> None:
    """Registers autograd for a forward op ``op(*tensors, padding_mode, mode)`` whose backward op is
    ``backward_op(grad_output, *tensors, padding_mode, mode, output_mask)`` (shared by the C++ and
    Triton ops). The last ``no_grad_tensors`` tensors (theta) are passed to the backward but
    get no gradient and no entry in ``output_mask``."""

    def backward(ctx, grad_output: Tensor):
        tensors = ctx.saved_tensors
        k = len(tensors) - no_grad_tensors
        need = list(ctx.needs_input_grad[:k])
        grads = backward_op(grad_output, *tensors, ctx.padding_mode, ctx.mode, need)
        # None for the rest: theta, and padding_mode and mode where autograd lists them (the
        # C++ ops' inputs do, custom ops' not).
        rest = (None,) * (len(ctx.needs_input_grad) - k)
        return tuple(g if wanted else None for g, wanted in zip(grads, need)) + rest

    torch.library.register_autograd(op, backward, setup_context=_setup_context)


register_op_autograd("fastwarp::warp", _ops.warp_backward.default)
register_op_autograd("fastwarp::warp_blend", _ops.warp_blend_backward.default)


def register_op_autocast(op: str) -> None:
    """Under ``torch.autocast`` (mixed-precision training) the op casts its floating-point
    inputs to float32, like ``grid_sample``: a network's half-precision flow, texture and
    mask then meet a float32 image without a dtype error. Outside autocast, inputs must
    share a dtype as before."""
    for device in ("cpu", "cuda"):
        torch.library.register_autocast(op, device, torch.float32)


register_op_autocast("fastwarp::warp")
register_op_autocast("fastwarp::warp_blend")


# --- the frame-space composite (theta): same pattern; theta gets no gradient -------------

def theta_output_like_image(image: Tensor) -> Tensor:
    """The composite's output starts as a copy of the image with the image's own strides
    (``preserve_format``): an OpenCV frame's ``[1, 3, H, W]`` view comes back as one."""
    return torch.empty_like(image, memory_format=torch.preserve_format)


@torch.library.register_fake("fastwarp::warp_theta")
def _warp_theta_fake(image: Tensor, flow: Tensor, theta: Tensor, padding_mode: str = "border",
                     mode: str = "bilinear") -> Tensor:
    checks.check_theta_args("fastwarp.warp", image, flow, None, None, theta, padding_mode, mode=mode)
    return theta_output_like_image(image)


@torch.library.register_fake("fastwarp::warp_blend_theta")
def _warp_blend_theta_fake(image: Tensor, flow: Tensor, texture: Tensor, mask: Tensor, theta: Tensor,
                           padding_mode: str = "border", mode: str = "bilinear") -> Tensor:
    checks.check_theta_args("fastwarp.warp_blend", image, flow, texture, mask, theta, padding_mode, mode=mode)
    return theta_output_like_image(image)


@torch.library.register_fake("fastwarp::warp_theta_backward")
def _warp_theta_backward_fake(grad_output: Tensor, image: Tensor, flow: Tensor, theta: Tensor, padding_mode: str,
                              mode: str, output_mask: Sequence[bool]) -> tuple[Tensor, Tensor]:
    checks.check_theta_args("fastwarp.warp_backward", image, flow, None, None, theta, padding_mode, False, mode)
    checks.check_grad_output("fastwarp.warp_backward", grad_output, image)
    return _grads_fake(output_mask, (image, flow))  # type: ignore[return-value]


@torch.library.register_fake("fastwarp::warp_blend_theta_backward")
def _warp_blend_theta_backward_fake(grad_output: Tensor, image: Tensor, flow: Tensor, texture: Tensor, mask: Tensor,
                                    theta: Tensor, padding_mode: str, mode: str,
                                    output_mask: Sequence[bool]) -> tuple[Tensor, ...]:
    checks.check_theta_args("fastwarp.warp_blend_backward", image, flow, texture, mask, theta, padding_mode, False,
                            mode)
    checks.check_grad_output("fastwarp.warp_blend_backward", grad_output, image)
    return _grads_fake(output_mask, (image, flow, texture, mask))


register_op_autograd("fastwarp::warp_theta", _ops.warp_theta_backward.default, no_grad_tensors=1)
register_op_autograd("fastwarp::warp_blend_theta", _ops.warp_blend_theta_backward.default, no_grad_tensors=1)
register_op_autocast("fastwarp::warp_theta")
register_op_autocast("fastwarp::warp_blend_theta")


# --- mesh_flow (docs/design.md, "mesh_flow"): (flow, triangle_index); gradients for vertices
# and displacement, none for triangles; triangle_index is an integer output (no gradient) ----

def mesh_flow_outputs(vertices: Tensor, size: Sequence[int]) -> tuple[Tensor, Tensor]:
    """Empty (flow [N, 2, H, W] in the vertices' dtype, triangle_index [N, H, W] int32)."""
    N, (H, W) = vertices.shape[0], size
    return (vertices.new_empty((N, 2, H, W)),
            torch.empty((N, H, W), dtype=torch.int32, device=vertices.device))


@torch.library.register_fake("fastwarp::mesh_flow")
def _mesh_flow_fake(vertices: Tensor, displacement: Tensor, triangles: Tensor,
                    size: Sequence[int]) -> tuple[Tensor, Tensor]:
    checks.check_mesh_flow_args("fastwarp.mesh_flow", vertices, displacement, triangles, size)
    return mesh_flow_outputs(vertices, size)


@torch.library.register_fake("fastwarp::mesh_flow_backward")
def _mesh_flow_backward_fake(grad_flow: Tensor, vertices: Tensor, displacement: Tensor, triangles: Tensor,
                             triangle_index: Tensor, output_mask: Sequence[bool]) -> tuple[Tensor, Tensor]:
    checks.check_mesh_flow_backward_args("fastwarp.mesh_flow_backward", grad_flow, vertices, displacement, triangles,
                                         triangle_index)
    return tuple(torch.empty_like(t, memory_format=torch.contiguous_format) if wanted else vertices.new_empty((0,))
                 for t, wanted in zip((vertices, displacement), output_mask))  # type: ignore[return-value]


def register_mesh_flow_autograd(op, backward_op) -> None:
    """Autograd of a mesh_flow op ``op(vertices, displacement, triangles, size) -> (flow,
    triangle_index)`` whose backward op is ``backward_op(grad_flow, vertices, displacement,
    triangles, triangle_index, output_mask) -> (grad_vertices, grad_displacement)`` (shared by
    the C++ and Triton ops)."""

    def setup_context(ctx, inputs, output) -> None:
        vertices, displacement, triangles, _size = inputs
        ctx.save_for_backward(vertices, displacement, triangles, output[1])

    def backward(ctx, grad_flow: Tensor | None, _grad_index):
        vertices, displacement, triangles, triangle_index = ctx.saved_tensors
        need = list(ctx.needs_input_grad[:2])
        rest = (None,) * (len(ctx.needs_input_grad) - 2)
        if grad_flow is None:
            grad_flow = vertices.new_zeros((vertices.shape[0], 2, *triangle_index.shape[1:]))
        grads = backward_op(grad_flow, vertices, displacement, triangles, triangle_index, need)
        return tuple(g if wanted else None for g, wanted in zip(grads, need)) + rest

    torch.library.register_autograd(op, backward, setup_context=setup_context)


register_mesh_flow_autograd("fastwarp::mesh_flow", _ops.mesh_flow_backward.default)
register_op_autocast("fastwarp::mesh_flow")

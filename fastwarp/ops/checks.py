"""Argument checks of the ops, in Python, for the fake (meta) kernels.

They raise the same exception types and messages as the C++ checks in
``csrc/warp_checks.h`` (which guard the real kernels), so a bad call fails the same way
eagerly, under ``torch.compile`` and under ``torch.export``.
"""

from __future__ import annotations

import math

import torch

_C10_DTYPE_NAMES = {
    torch.float16: "Half", torch.bfloat16: "BFloat16", torch.float32: "Float", torch.float64: "Double",
    torch.uint8: "Byte", torch.int8: "Char", torch.int16: "Short", torch.int32: "Int", torch.int64: "Long",
    torch.bool: "Bool", torch.complex64: "ComplexFloat", torch.complex128: "ComplexDouble",
}

PADDING_MODES = ("border", "zeros")
#: The image taps (the ops' ``mode``): grid_sample's bilinear and bicubic (Keys, a = -0.75).
MODES = ("bilinear", "bicubic")


def check_modes(op: str, padding_mode: str, mode: str) -> None:
    """``padding_mode`` and ``mode`` by name, as ``parse_padding``/``parse_mode`` in csrc/warp_checks.h."""
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"{op}: padding_mode must be 'border' or 'zeros', got '{padding_mode}'")
    if mode not in MODES:
        raise ValueError(f"{op}: mode must be 'bilinear' or 'bicubic', got '{mode}'")


def dtype_name(dtype: torch.dtype) -> str:
    return _C10_DTYPE_NAMES.get(dtype, str(dtype))


def shape_str(t: torch.Tensor) -> str:
    return "[" + ", ".join(str(s) for s in t.shape) + "]"


def _check_tensor(op: str, name: str, t: torch.Tensor, image: torch.Tensor,
                  flow: torch.Tensor | None = None) -> None:
    if t.dim() != 4:
        raise ValueError(f"{op}: {name} must be a 4-D tensor, got {t.dim()}-D with shape {shape_str(t)}")
    if not t.dtype.is_floating_point:
        raise TypeError(f"{op}: {name} must be a floating-point tensor (float16, bfloat16, float32 or float64), "
                        f"got {dtype_name(t.dtype)}")
    if t.dtype != image.dtype:
        raise TypeError(f"{op}: {name}.dtype must match image.dtype ({dtype_name(image.dtype)}), "
                        f"got {dtype_name(t.dtype)}")
    if t.device != image.device:
        raise ValueError(f"{op}: {name} must be on the image's device ({image.device}), got {t.device}")
    if t.shape[0] != image.shape[0]:
        raise ValueError(f"{op}: batch mismatch: image has N={image.shape[0]} but {name} has N={t.shape[0]}")
    if flow is None:  # the flow itself: at most the image's size
        if not (1 <= t.shape[2] <= image.shape[2] and 1 <= t.shape[3] <= image.shape[3]):
            raise ValueError(f"{op}: flow's spatial size [h, w] must be at least [1, 1] and at most the "
                             f"image's [H, W] = [{image.shape[2]}, {image.shape[3]}], "
                             f"got [{t.shape[2]}, {t.shape[3]}]")
    elif t.shape[2] != flow.shape[2] or t.shape[3] != flow.shape[3]:
        raise ValueError(f"{op}: {name} must have the flow's spatial size [h, w] = [{flow.shape[2]}, "
                         f"{flow.shape[3]}], got [{t.shape[2]}, {t.shape[3]}]")


def check_warp_args(op: str, image: torch.Tensor, flow: torch.Tensor, texture: torch.Tensor | None = None,
                    mask: torch.Tensor | None = None, padding_mode: str = "border", mode: str = "bilinear") -> None:
    """Raise ``ValueError``/``TypeError`` naming the bad argument, as the C++ kernels do."""
    check_modes(op, padding_mode, mode)
    if image.dim() != 4:
        raise ValueError(f"{op}: image must be a 4-D tensor [N, C, H, W], got {image.dim()}-D with shape "
                         f"{shape_str(image)}")
    if not image.dtype.is_floating_point:
        raise TypeError(f"{op}: image must be a floating-point tensor (float16, bfloat16, float32 or float64), "
                        f"got {dtype_name(image.dtype)}")
    if image.shape[2] < 1 or image.shape[3] < 1:
        raise ValueError(f"{op}: image height and width must be at least 1, got shape {shape_str(image)}")
    if flow.dim() == 4 and flow.shape[1] != 2:
        raise ValueError(f"{op}: flow.shape[1] must be 2 (dx, dy), got {flow.shape[1]}")
    _check_tensor(op, "flow", flow, image)
    if texture is not None:
        if texture.dim() == 4 and texture.shape[1] != image.shape[1]:
            raise ValueError(f"{op}: texture.shape[1] must equal image channels C={image.shape[1]}, "
                             f"got {texture.shape[1]}")
        _check_tensor(op, "texture", texture, image, flow)
    if mask is not None:
        if mask.dim() == 4 and mask.shape[1] != 1:
            raise ValueError(f"{op}: mask.shape[1] must be 1, got {mask.shape[1]}")
        _check_tensor(op, "mask", mask, image, flow)


def check_grad_output(op: str, grad_output: torch.Tensor, image: torch.Tensor) -> None:
    if grad_output.shape != image.shape:
        raise ValueError(f"{op}: grad_output must have the output's shape {shape_str(image)}, "
                         f"got {shape_str(grad_output)}")
    if grad_output.dtype != image.dtype:
        raise TypeError(f"{op}: grad_output.dtype must match image.dtype ({dtype_name(image.dtype)}), "
                        f"got {dtype_name(grad_output.dtype)}")


def check_theta_args(op: str, image: torch.Tensor, flow: torch.Tensor, texture: torch.Tensor | None,
                     mask: torch.Tensor | None, theta: torch.Tensor, padding_mode: str = "border",
                     allow_uint8: bool = True, mode: str = "bilinear") -> None:
    """The frame-space composite's checks (docs/design.md): as ``check_theta_args`` in
    ``csrc/warp_checks.h``, less the values of theta (see :func:`check_theta_values`)."""
    check_modes(op, padding_mode, mode)
    if image.dim() != 4:
        raise ValueError(f"{op}: image must be a 4-D tensor [N, C, H, W], got {image.dim()}-D with shape "
                         f"{shape_str(image)}")
    u8 = image.dtype == torch.uint8
    if not (image.dtype.is_floating_point or (u8 and allow_uint8)):
        raise TypeError(f"{op}: image must be a floating-point tensor (float16, bfloat16, float32 or float64)"
                        f"{' or a uint8 frame' if allow_uint8 else ''}, got {dtype_name(image.dtype)}")
    if image.shape[2] < 1 or image.shape[3] < 1:
        raise ValueError(f"{op}: image height and width must be at least 1, got shape {shape_str(image)}")
    map_dtype = torch.float32 if u8 else image.dtype

    def check_map(name: str, t: torch.Tensor, channels: int, what: str) -> None:
        if t.dim() != 4:
            raise ValueError(f"{op}: {name} must be a 4-D tensor, got {t.dim()}-D with shape {shape_str(t)}")
        if t.shape[1] != channels:
            raise ValueError(f"{op}: {name}.shape[1] must be {what}, got {t.shape[1]}")
        if t.dtype != map_dtype:
            how = "be float32 with a uint8 image" if u8 else "match image.dtype"
            raise TypeError(f"{op}: {name}.dtype must {how} ({dtype_name(map_dtype)}), got {dtype_name(t.dtype)}")
        if t.device != image.device:
            raise ValueError(f"{op}: {name} must be on the image's device ({image.device}), got {t.device}")
        if t.shape[0] != image.shape[0]:
            raise ValueError(f"{op}: batch mismatch: image has N={image.shape[0]} but {name} has N={t.shape[0]}")
        if t.shape[2] != flow.shape[2] or t.shape[3] != flow.shape[3] or t.shape[2] < 1 or t.shape[3] < 1:
            raise ValueError(f"{op}: {name} must have the flow's spatial size [h, w] = [{flow.shape[2]}, "
                             f"{flow.shape[3]}] (at least [1, 1]), got [{t.shape[2]}, {t.shape[3]}]")

    if flow.dim() != 4:
        raise ValueError(f"{op}: flow must be a 4-D tensor, got {flow.dim()}-D with shape {shape_str(flow)}")
    check_map("flow", flow, 2, "2 (dx, dy)")
    if texture is not None:
        check_map("texture", texture, image.shape[1], f"the image's channels C={image.shape[1]}")
    if mask is not None:
        check_map("mask", mask, 1, "1")
    if theta.dim() != 3 or tuple(theta.shape) != (image.shape[0], 2, 3):
        raise ValueError(f"{op}: theta must have shape [N, 2, 3] = [{image.shape[0]}, 2, 3], got {shape_str(theta)}")
    if theta.dtype not in (map_dtype, torch.float64):
        raise TypeError(f"{op}: theta.dtype must be the maps' dtype ({dtype_name(map_dtype)}) or float64, "
                        f"got {dtype_name(theta.dtype)}")
    if theta.device != image.device:
        raise ValueError(f"{op}: theta must be on the image's device ({image.device}), got {theta.device}")


def check_theta_values(op: str, theta: torch.Tensor) -> list[list[float]]:
    """theta's values as Python floats (one list of 6 per image), after checking that each is
    finite with an invertible linear part (the message as the C++ kernels')."""
    values = theta.detach().to("cpu", torch.float64).reshape(-1, 6).tolist()
    for n, t in enumerate(values):
        det = t[0] * t[4] - t[1] * t[3]
        if not (all(math.isfinite(v) for v in t) and det != 0.0 and math.isfinite(det)):
            raise ValueError(f"{op}: theta[{n}] must be finite with an invertible linear part theta[{n}, :, :2] "
                             f"(determinant {_cpp_double(det)})")
    return values


def _cpp_double(v: float) -> str:
    # as C++'s operator<< prints a double (6 significant digits, "nan", "inf")
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:g}"


# --- mesh_flow (docs/design.md, "mesh_flow"): mirror csrc/mesh_flow_checks.h ------------------

MESH_FLOW_DTYPES = (torch.float32, torch.float64)


def size_str(size) -> str:
    return "[" + ", ".join(str(s) for s in size) + "]"


def mesh_flow_size(op: str, size) -> tuple:
    """``size`` as a tuple of ints (SymInts stay), or ``TypeError`` naming it."""
    import operator

    try:
        return tuple(s if isinstance(s, torch.SymInt) else operator.index(s) for s in size)
    except TypeError:
        raise TypeError(f"{op}: size must be (H, W), a sequence of integers, got {size!r}") from None


def check_mesh_flow_args(op: str, vertices: torch.Tensor, displacement: torch.Tensor, triangles: torch.Tensor,
                         size=None) -> None:
    """Raise ``ValueError``/``TypeError`` naming the bad argument of ``mesh_flow``, as the C++
    kernels do: shapes, dtypes, devices and ``size`` (not checked when None: the backward op
    has none); the triangles' values: :func:`check_mesh_flow_values`."""
    if vertices.dim() != 3:
        raise ValueError(f"{op}: vertices must be a 3-D tensor [N, V, 2], got {vertices.dim()}-D with shape "
                         f"{shape_str(vertices)}")
    if vertices.shape[2] != 2:
        raise ValueError(f"{op}: vertices.shape[2] must be 2 (x, y), got {vertices.shape[2]}")
    if vertices.dtype not in MESH_FLOW_DTYPES:
        raise TypeError(f"{op}: vertices must be a float32 or float64 tensor, got {dtype_name(vertices.dtype)}")
    if tuple(displacement.shape) != tuple(vertices.shape):
        raise ValueError(f"{op}: displacement must have the vertices' shape {shape_str(vertices)}, "
                         f"got {shape_str(displacement)}")
    if displacement.dtype != vertices.dtype:
        raise TypeError(f"{op}: displacement.dtype must match vertices.dtype ({dtype_name(vertices.dtype)}), "
                        f"got {dtype_name(displacement.dtype)}")
    if displacement.device != vertices.device:
        raise ValueError(f"{op}: displacement must be on the vertices' device ({vertices.device}), "
                         f"got {displacement.device}")
    if triangles.dim() != 2:
        raise ValueError(f"{op}: triangles must be a 2-D tensor [T, 3], got {triangles.dim()}-D with shape "
                         f"{shape_str(triangles)}")
    if triangles.shape[1] != 3:
        raise ValueError(f"{op}: triangles.shape[1] must be 3 (vertex indices), got {triangles.shape[1]}")
    if triangles.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"{op}: triangles must be an int32 or int64 tensor, got {dtype_name(triangles.dtype)}")
    if triangles.device != vertices.device:
        raise ValueError(f"{op}: triangles must be on the vertices' device ({vertices.device}), "
                         f"got {triangles.device}")
    if size is not None and (len(size) != 2 or not (size[0] >= 1 and size[1] >= 1)):
        raise ValueError(f"{op}: size must be (H, W) with H >= 1 and W >= 1, got {size_str(size)}")


def check_mesh_flow_backward_args(op: str, grad_flow: torch.Tensor, vertices: torch.Tensor,
                                  displacement: torch.Tensor, triangles: torch.Tensor,
                                  triangle_index: torch.Tensor) -> None:
    """The backward op's checks: the forward's, then triangle_index ``[N, H, W]`` int32 and
    grad_flow ``[N, 2, H, W]`` in the vertices' dtype, all on the vertices' device."""
    check_mesh_flow_args(op, vertices, displacement, triangles)
    N = vertices.shape[0]
    if triangle_index.dim() != 3 or triangle_index.shape[0] != N:
        raise ValueError(f"{op}: triangle_index must have shape [N, H, W] with N={N}, "
                         f"got {shape_str(triangle_index)}")
    if triangle_index.dtype != torch.int32:
        raise TypeError(f"{op}: triangle_index must be an int32 tensor, got {dtype_name(triangle_index.dtype)}")
    if triangle_index.device != vertices.device:
        raise ValueError(f"{op}: triangle_index must be on the vertices' device ({vertices.device}), "
                         f"got {triangle_index.device}")
    H, W = triangle_index.shape[1:]
    if tuple(grad_flow.shape) != (N, 2, H, W):
        raise ValueError(f"{op}: grad_flow must have the flow's shape [{N}, 2, {H}, {W}], got {shape_str(grad_flow)}")
    if grad_flow.dtype != vertices.dtype:
        raise TypeError(f"{op}: grad_flow.dtype must match vertices.dtype ({dtype_name(vertices.dtype)}), "
                        f"got {dtype_name(grad_flow.dtype)}")
    if grad_flow.device != vertices.device:
        raise ValueError(f"{op}: grad_flow must be on the vertices' device ({vertices.device}), got {grad_flow.device}")


def check_mesh_flow_values(op: str, vertices: torch.Tensor, triangles: torch.Tensor,
                           triangle_index: torch.Tensor | None = None) -> None:
    """The checks that read values (not on fake or meta tensors): every vertex index in
    ``[0, V)``; with ``triangle_index``, every entry in ``[-1, T)``."""
    from torch._subclasses.fake_tensor import is_fake

    if triangles.device.type == "meta" or is_fake(triangles):
        return
    V, T = vertices.shape[1], triangles.shape[0]
    if triangles.numel():
        lo, hi = (int(v) for v in torch.aminmax(triangles))
        if lo < 0 or hi >= V:
            raise ValueError(f"{op}: triangles must hold vertex indices in [0, V) = [0, {V}), "
                             f"got values from {lo} to {hi}")
    if triangle_index is not None and triangle_index.numel():
        lo, hi = (int(v) for v in torch.aminmax(triangle_index))
        if lo < -1 or hi >= T:
            raise ValueError(f"{op}: triangle_index must hold triangle indices in [-1, T) = [-1, {T}), "
                             f"got values from {lo} to {hi}")

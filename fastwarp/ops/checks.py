"""Argument checks of the ops, in Python, for the fake (meta) kernels.

They raise the same exception types and messages as the C++ checks in
``csrc/warp_checks.h`` (which guard the real kernels), so a bad call fails the same way
eagerly, under ``torch.compile`` and under ``torch.export``.
"""

from __future__ import annotations

import torch

_C10_DTYPE_NAMES = {
    torch.float16: "Half", torch.bfloat16: "BFloat16", torch.float32: "Float", torch.float64: "Double",
    torch.uint8: "Byte", torch.int8: "Char", torch.int16: "Short", torch.int32: "Int", torch.int64: "Long",
    torch.bool: "Bool", torch.complex64: "ComplexFloat", torch.complex128: "ComplexDouble",
}

PADDING_MODES = ("border", "zeros")


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
                    mask: torch.Tensor | None = None, padding_mode: str = "border") -> None:
    """Raise ``ValueError``/``TypeError`` naming the bad argument, as the C++ kernels do."""
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"{op}: padding_mode must be 'border' or 'zeros', got '{padding_mode}'")
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

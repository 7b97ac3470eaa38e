"""fastwarp's ops: fused backward warp and warp-plus-blend (DESIGN.md, "The ops").

The kernels are C++ (CPU) and CUDA torch ops declared in ``csrc/fastwarp.cpp`` and Triton
ops in :mod:`fastwarp.triton_ops` (imported on first use); this module registers the C++
ops' fake kernels (shapes only, for ``torch.compile``/``torch.export``) and autograd
formulas, chooses a backend (:func:`resolve_backend`) and gives typed wrappers.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from . import _checks, reference

try:
    from . import _C  # noqa: F401  (loading the library runs the op registrations)
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    raise ImportError(
        "fastwarp's compiled kernels (fastwarp._C) are missing or do not match this torch: "
        "build them with `pip install --no-build-isolation -e .` in the repository "
        f"(torch {torch.__version__}); original error: {exc}"
    ) from exc

__all__ = ["warp", "warp_blend", "Warp", "WarpBlend", "BACKENDS", "resolve_backend", "backends"]

_ops = torch.ops.fastwarp

#: Names accepted by the ``backend=`` argument of the ops and modules.
BACKENDS = ("auto", "cpu", "cuda", "triton", "reference")

# After the first _has_triton(): "module" is fastwarp.triton_ops or None, "error" why not.
_TRITON: dict[str, ModuleType | str | None] = {}


# The two probes below run once per trace under torch.compile (their results are constants),
# so the ops' Python wrappers trace without graph breaks.
@torch.compiler.assume_constant_result
def _has_triton() -> bool:
    """Whether :mod:`fastwarp.triton_ops` imports; imported on first use (it imports triton,
    and triton reads ``TRITON_INTERPRET`` when it defines the kernels)."""
    if not _TRITON:
        try:
            _TRITON.update(module=importlib.import_module(".triton_ops", __package__), error="")
        except ImportError as exc:
            _TRITON.update(module=None, error=str(exc))
    return _TRITON["module"] is not None


@torch.compiler.assume_constant_result
def _has_cuda_kernels() -> bool:
    return torch._C._dispatch_has_kernel_for_dispatch_key("fastwarp::warp", "CUDA")


def backends() -> dict[str, bool]:
    """Which kernel backends this installation can run (the ``backend=`` names).

    Returns:
        ``{"cpu": True, "cuda": bool, "triton": bool, "reference": True}``: ``"cuda"`` is True
        when the CUDA kernels were compiled into ``fastwarp._C`` and a CUDA device is visible;
        ``"triton"`` when the ``triton`` package imports and either a CUDA device is visible
        or ``TRITON_INTERPRET=1`` was set before fastwarp first used triton (the kernels then
        run on CPU tensors in Triton's interpreter, slowly: for tests).
    """
    cuda_device = torch.cuda.is_available()
    triton_ok = _has_triton() and (cuda_device or _TRITON["module"].INTERPRET)
    return {"cpu": True, "cuda": _has_cuda_kernels() and cuda_device, "triton": triton_ok, "reference": True}


def resolve_backend(backend: str, device: torch.device | str) -> str:
    """The backend that ``backend=`` names for tensors on ``device``.

    ``"auto"`` (the default everywhere) picks, provisionally: CPU tensors (and any device
    other than CUDA, e.g. meta) -> ``"cpu"``, the C++ kernels; CUDA tensors -> ``"cuda"``
    when fastwarp's CUDA kernels are compiled in (``backends()["cuda"]``), else
    ``"triton"`` when triton is available, else ``"reference"``. The order of ``"cuda"`` and
    ``"triton"`` is provisional until GPU benchmarks (bench/) measure one against the other:
    no GPU was available when the Triton kernels were written. Other names are returned as
    they are.

    Raises:
        ValueError: ``backend`` is not one of :data:`BACKENDS`.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(repr(b) for b in BACKENDS)}, got {backend!r}")
    if backend != "auto":
        return backend
    if torch.device(device).type != "cuda":
        return "cpu"
    available = backends()
    return next(b for b in ("cuda", "triton", "reference") if available[b])


def _kernel(op: str, backend: str, device: torch.device) -> Callable[..., Tensor]:
    """The callable ``(*tensors, padding_mode)`` that runs ``op`` ("warp", "warp_blend") for
    ``backend`` on tensors on ``device``, after checking that the backend can run there."""
    name = resolve_backend(backend, device)
    if name == "reference":
        fn = getattr(reference, op)
        return lambda *args: fn(*args[:-1], padding_mode=args[-1])
    where = f"fastwarp.{op}: backend={name!r}"
    if name == "triton":
        if not _has_triton():
            raise RuntimeError(f"{where} needs the triton package, which does not import: {_TRITON['error']}")
        triton_ops = _TRITON["module"]
        if device.type not in ("cuda", "meta") and not (device.type == "cpu" and triton_ops.INTERPRET):
            raise ValueError(f"{where} needs CUDA tensors (or CPU tensors with TRITON_INTERPRET=1 set before "
                             f"fastwarp first uses triton), got {device.type}")
        return getattr(triton_ops, op)
    if device.type not in (name, "meta"):
        raise ValueError(f"{where} needs {name.upper()} tensors, got {device.type}")
    if name == "cuda" and device.type == "cuda" and not backends()["cuda"]:
        raise RuntimeError(f"{where}: fastwarp._C was built without its CUDA kernels")
    return getattr(_ops, op).default


def warp(image: Tensor, flow: Tensor, *, padding_mode: str = "border", backend: str = "auto") -> Tensor:
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
        backend (str): which kernels run: ``"auto"`` (see :func:`resolve_backend`: the C++
            kernels on CPU, on CUDA the CUDA kernels where compiled in, else Triton),
            ``"cpu"`` (C++, CPU tensors), ``"cuda"`` (CUDA tensors), ``"triton"``
            (:mod:`fastwarp.triton_ops`: CUDA tensors, or CPU tensors under
            ``TRITON_INTERPRET=1``) or ``"reference"`` (:mod:`fastwarp.reference`, pure PyTorch).
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
    return _kernel("warp", backend, image.device)(image, flow, padding_mode)


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
    return _kernel("warp_blend", backend, image.device)(image, flow, texture, mask, padding_mode)


class Warp(nn.Module):
    """:func:`warp` as a module (no parameters); ``padding_mode`` and ``backend`` as there.

    Raises:
        ValueError: unknown ``padding_mode`` or ``backend``.
    """

    def __init__(self, padding_mode: str = "border", backend: str = "auto") -> None:
        super().__init__()
        if padding_mode not in _checks.PADDING_MODES:
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


def register_op_autograd(op, backward_op) -> None:
    """Registers autograd for a forward op ``op(*tensors, padding_mode)`` whose backward op is
    ``backward_op(grad_output, *tensors, padding_mode, output_mask)`` (shared by the C++ and
    Triton ops)."""

    def backward(ctx, grad_output: Tensor):
        tensors = ctx.saved_tensors
        need = list(ctx.needs_input_grad[:len(tensors)])
        grads = backward_op(grad_output, *tensors, ctx.padding_mode, need)
        # None for padding_mode where autograd lists it (the C++ ops' inputs do, custom ops' not).
        rest = (None,) * (len(ctx.needs_input_grad) - len(tensors))
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

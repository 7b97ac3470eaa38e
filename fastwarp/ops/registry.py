"""Which backend runs an op: :func:`backends`, :func:`resolve_backend` and :func:`kernel`.

The registry knows the backends (the C++ ops registered by :mod:`fastwarp.ops.registration`,
the Triton ops of :mod:`fastwarp.ops.triton_backend`, imported on first use, and the
pure-PyTorch :mod:`fastwarp.ops.reference`); no backend imports the registry or its
callers (docs/design.md, "Layout").
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Callable

import torch
from torch import Tensor

from . import reference
from . import registration  # noqa: F401  (loads fastwarp._C: the C++ ops exist from here on)

_ops = torch.ops.fastwarp

__all__ = ["BACKENDS", "backends", "build_info", "resolve_backend", "kernel", "mesh_flow_kernel"]

#: Names accepted by the ``backend=`` argument of the ops and modules.
BACKENDS = ("auto", "cpu", "cuda", "triton", "reference")

# After the first _has_triton(): "module" is fastwarp.ops.triton_backend or None, "theta"
# fastwarp.ops.triton_theta, "mesh_flow" fastwarp.ops.triton_mesh_flow, "error" why not.
_TRITON: dict[str, ModuleType | str | None] = {}


# The two probes below run once per trace under torch.compile (their results are constants),
# so the ops' Python wrappers trace without graph breaks.
@torch.compiler.assume_constant_result
def _has_triton() -> bool:
    """Whether :mod:`fastwarp.ops.triton_backend` (and :mod:`fastwarp.ops.triton_theta`, built on
    it) import; imported on first use (they import triton, and triton reads
    ``TRITON_INTERPRET`` when it defines the kernels)."""
    if not _TRITON:
        try:
            _TRITON.update(module=importlib.import_module(".triton_backend", __package__),
                           theta=importlib.import_module(".triton_theta", __package__),
                           mesh_flow=importlib.import_module(".triton_mesh_flow", __package__), error="")
        except ImportError as exc:
            _TRITON.update(module=None, error=str(exc))
    return _TRITON["module"] is not None


@torch.compiler.assume_constant_result
def _has_cuda_kernels() -> bool:
    return torch._C._dispatch_has_kernel_for_dispatch_key("fastwarp::warp", "CUDA")


def build_info() -> dict:
    """How ``fastwarp._C`` was built, whatever this machine can run.

    Returns:
        ``{"cuda_kernels": bool, "cuda_archs": list[str], "cuda_device": bool, "torch": str,
        "torch_cuda": str | None}``: ``cuda_kernels`` is True when the CUDA kernels are compiled
        in and registered under the CUDA dispatch key (also on a machine with no GPU, where
        :func:`backends` says ``"cuda": False``); ``cuda_archs`` the compute capabilities they
        were compiled for (``"8.0"``, ``"9.0"``; ``"8.0+PTX"``: PTX that newer GPUs compile at
        load), empty in a CPU-only build.
    """
    archs = str(_ops._cuda_archs()) if hasattr(_ops, "_cuda_archs") else ""
    return {"cuda_kernels": _has_cuda_kernels(), "cuda_archs": [a for a in archs.split(";") if a],
            "cuda_device": torch.cuda.is_available(), "torch": torch.__version__, "torch_cuda": torch.version.cuda}


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


def kernel(op: str, backend: str, device: torch.device, theta: bool = False) -> Callable[..., Tensor]:
    """The callable ``(*tensors, padding_mode, mode)`` that runs ``op`` ("warp", "warp_blend") for
    ``backend`` on tensors on ``device``, after checking that the backend can run there; with
    ``theta=True`` the frame-space composite ``(*tensors, theta, padding_mode, mode)``."""
    name = resolve_backend(backend, device)
    if name == "reference":
        fn = getattr(reference, op)
        if theta:
            return lambda *args: fn(*args[:-3], theta=args[-3], padding_mode=args[-2], mode=args[-1])
        return lambda *args: fn(*args[:-2], padding_mode=args[-2], mode=args[-1])
    where = f"fastwarp.{op}: backend={name!r}"
    op = f"{op}_theta" if theta else op
    if name == "triton":
        if not _has_triton():
            raise RuntimeError(f"{where} needs the triton package, which does not import: {_TRITON['error']}")
        triton_ops = _TRITON["module"]
        if device.type not in ("cuda", "meta") and not (device.type == "cpu" and triton_ops.INTERPRET):
            raise ValueError(f"{where} needs CUDA tensors (or CPU tensors with TRITON_INTERPRET=1 set before "
                             f"fastwarp first uses triton), got {device.type}")
        return getattr(_TRITON["theta"] if theta else triton_ops, op)
    if device.type not in (name, "meta"):
        raise ValueError(f"{where} needs {name.upper()} tensors, got {device.type}")
    if name == "cuda" and device.type == "cuda" and not backends()["cuda"]:
        raise RuntimeError(f"{where}: fastwarp._C was built without its CUDA kernels")
    return getattr(_ops, op).default




def mesh_flow_kernel(backend: str, device: torch.device) -> Callable[..., tuple[Tensor, Tensor]]:
    """The callable ``(vertices, displacement, triangles, size)`` that runs ``mesh_flow`` for
    ``backend`` on tensors on ``device``, after checking that the backend can run there."""
    name = resolve_backend(backend, device)
    if name == "reference":
        return reference.mesh_flow
    where = f"fastwarp.mesh_flow: backend={name!r}"
    if name == "triton":
        if not _has_triton():
            raise RuntimeError(f"{where} needs the triton package, which does not import: {_TRITON['error']}")
        if device.type not in ("cuda", "meta") and not (device.type == "cpu" and _TRITON["module"].INTERPRET):
            raise ValueError(f"{where} needs CUDA tensors (or CPU tensors with TRITON_INTERPRET=1 set before "
                             f"fastwarp first uses triton), got {device.type}")
        return _TRITON["mesh_flow"].mesh_flow
    if device.type not in (name, "meta"):
        raise ValueError(f"{where} needs {name.upper()} tensors, got {device.type}")
    if name == "cuda" and device.type == "cuda" and not backends()["cuda"]:
        raise RuntimeError(f"{where}: fastwarp._C was built without its CUDA kernels")
    return _ops.mesh_flow.default

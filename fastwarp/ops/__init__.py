"""fastwarp's ops: fused backward warp and warp-plus-blend, with CPU (C++), CUDA and
Triton kernels and a pure-PyTorch reference (docs/design.md, "The ops").

Modules, in import order (each imports only those above it):

- :mod:`~fastwarp.ops.checks`: argument checks (mirror ``csrc/warp_checks.h``);
- :mod:`~fastwarp.ops.reference`: the specification in pure PyTorch (grid_sample);
- :mod:`~fastwarp.ops.registration`: loads ``fastwarp._C``; fake kernels, autograd, autocast;
- :mod:`~fastwarp.ops.triton_backend`: the Triton kernels (imported on first use);
- :mod:`~fastwarp.ops.registry`: :func:`backends`, :func:`resolve_backend`, the dispatch;
- :mod:`~fastwarp.ops.api`: :func:`warp`, :func:`warp_blend`, :func:`mesh_flow`, :class:`Warp`,
  :class:`WarpBlend`.
"""

from __future__ import annotations

from . import reference
from .api import Warp, WarpBlend, mesh_flow, warp, warp_blend
from .registry import BACKENDS, backends, build_info, resolve_backend

__all__ = ["warp", "warp_blend", "mesh_flow", "Warp", "WarpBlend", "BACKENDS", "backends", "build_info",
           "resolve_backend", "reference"]

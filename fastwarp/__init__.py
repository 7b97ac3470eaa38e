"""fastwarp: facial expression editing by Action Units with fused flow-warp kernels.

The ops :func:`warp` and :func:`warp_blend` are torch ops with CPU (C++), CUDA and Triton
kernels (``backend=``, see :func:`backends` and :func:`fastwarp.ops.resolve_backend`);
:mod:`fastwarp.reference` is their pure-PyTorch specification;
:mod:`fastwarp.models` holds the editor networks, :mod:`fastwarp.face` the landmark,
AU and alignment pipeline, :mod:`fastwarp.editor` the end-to-end photo/video editor.
"""

from __future__ import annotations


from . import reference
from .au import AU_NAMES
from .ops import BACKENDS, Warp, WarpBlend, backends, resolve_backend, warp, warp_blend

__version__ = "0.1.0"
__all__ = ["warp", "warp_blend", "Warp", "WarpBlend", "reference", "backends", "BACKENDS", "resolve_backend",
           "AU_NAMES", "__version__"]

"""fastwarp: facial expression editing by Action Units with fused flow-warp kernels.

The ops :func:`warp` and :func:`warp_blend` are torch ops with CPU (C++), CUDA and Triton
kernels (``backend=``, see :func:`backends` and :func:`resolve_backend`), in
:mod:`fastwarp.ops`; :mod:`fastwarp.ops.reference` (also ``fastwarp.reference``) is their
pure-PyTorch specification. :mod:`fastwarp.models` holds the editing network
(:class:`~fastwarp.models.EditorNet`), :mod:`fastwarp.face` the landmark, AU and
alignment steps, :class:`ExpressionEditor` (:mod:`fastwarp.expression_editor`) the
photo/video pipeline, :mod:`fastwarp.realtime` the streaming engine and
:mod:`fastwarp.export` ONNX and TensorRT. The architecture: docs/design.md.
"""

from __future__ import annotations

from .au import AU_NAMES
from .ops import (BACKENDS, Warp, WarpBlend, backends, build_info, mesh_flow, reference, resolve_backend, warp,
                  warp_blend)

__version__ = "0.1.0"
__all__ = ["warp", "warp_blend", "mesh_flow", "Warp", "WarpBlend", "reference", "backends", "build_info", "BACKENDS",
           "resolve_backend",
           "AU_NAMES", "ExpressionEditor", "ExprEdit", "PRESETS", "__version__"]


def __getattr__(name: str):
    # The pipeline imports MediaPipe and OpenCV: loaded on first use, so `import fastwarp`
    # (the ops alone) stays light.
    if name == "ExpressionEditor":
        from .expression_editor import ExpressionEditor

        return ExpressionEditor
    if name in ("ExprEdit", "PRESETS"):  # expression presets (fastwarp.presets)
        from . import presets

        return getattr(presets, name)
    raise AttributeError(f"module 'fastwarp' has no attribute {name!r}")

"""Export of the editing network (docs/design.md, "Export").

- :mod:`~fastwarp.export.graph`: the exported function, its input/output names, opsets;
- :mod:`~fastwarp.export.onnx`: :func:`export_onnx`, :func:`onnx_parity` (ONNX Runtime);
- :mod:`~fastwarp.export.tensorrt`: :func:`export_tensorrt`, :class:`TensorRTRunner`
  (imports TensorRT only when used).

One import direction: ``tensorrt -> onnx -> graph``.
"""

from __future__ import annotations

from .graph import DEFAULT_OPSET, INPUT_NAMES, OPSETS, OUTPUT_NAMES
from .onnx import check_onnx_graph, export_onnx, onnx_opset, onnx_parity
from .tensorrt import TensorRTRunner, TensorRTUnavailableError, engine_parity, export_tensorrt

__all__ = ["OPSETS", "DEFAULT_OPSET", "INPUT_NAMES", "OUTPUT_NAMES", "export_onnx", "onnx_parity", "onnx_opset",
           "check_onnx_graph", "export_tensorrt", "TensorRTRunner", "TensorRTUnavailableError", "engine_parity"]

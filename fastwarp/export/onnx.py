"""Export of the editor network to ONNX, for ONNX Runtime and TensorRT (docs/design.md,
"Export").

The graph is :class:`fastwarp.models.EditorNet` at its own resolution with the warp as
standard ONNX ops: the model runs with ``warp_backend="reference"``, whose
``F.grid_sample`` exports as ``GridSample`` (bilinear, ``align_corners=1``) and whose
blend is elementwise, so any ONNX runtime reads it without fastwarp's custom ops.

Inputs, outputs and opsets: :mod:`fastwarp.export.graph`. The outputs are the
:class:`EditResult` fields, so a runtime can also apply flow, texture and mask to a larger
crop with :func:`fastwarp.warp_blend` (resolution independence). The TensorRT engine is
built from this graph by :mod:`fastwarp.export.tensorrt`.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from .._io import atomic_path
from ..models.editor_net import EditorNet
from .graph import (DEFAULT_OPSET, INPUT_NAMES, OPSETS, OUTPUT_NAMES, ExportGraph, check_opset, example_inputs,
                    float_cpu_copy)

__all__ = ["OPSETS", "DEFAULT_OPSET", "INPUT_NAMES", "OUTPUT_NAMES", "export_onnx", "onnx_parity", "onnx_opset",
           "check_onnx_graph"]


@dataclass
class _ReferenceWarp:
    """Context: the model's warp ops on the pure-PyTorch reference, float32, CPU, eval."""

    model: EditorNet

    def __enter__(self) -> EditorNet:
        self._backend, self._training = self.model.warp_backend, self.model.training
        self.model.warp_backend = "reference"
        return self.model.eval()

    def __exit__(self, *exc) -> None:
        self.model.warp_backend = self._backend
        self.model.train(self._training)


def export_onnx(path: str | os.PathLike, model: EditorNet | None = None, *,
                opset: int = DEFAULT_OPSET) -> Path:
    """Write ``model`` (default: the bundled weights) as an ONNX file at ``path``.

    Args:
        path: the ``.onnx`` file to write; written to a temporary file and renamed, so a
            failed export leaves nothing behind.
        model: a :class:`EditorNet` (moved to float32 on the CPU for the export; the
            caller's module is not changed). Default: ``EditorNet.load()``.
        opset: ONNX opset, 16..19 (see the module docstring).

    Returns:
        The path written.

    Raises:
        ValueError: ``opset`` outside 16..19.
        ImportError: the exporter's packages (``onnx``, ``onnxscript``) are missing.
    """
    check_opset(opset)
    _require("onnx", "onnxscript")
    model = float_cpu_copy(model if model is not None else EditorNet.load())
    path = Path(path)
    args = dict(opset_version=opset, input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES))
    with _ReferenceWarp(model) as m, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporters' notes on their own internals
        inputs = example_inputs(m, 2)
        if opset >= 18:
            # torch.export-based exporter: emits opset 18 natively.
            batch = torch.export.Dim("batch", min=1, max=1024)
            program = torch.onnx.export(ExportGraph(m), inputs, dynamo=True, verbose=False,
                                        dynamic_shapes={name: {0: batch} for name in INPUT_NAMES}, **args)
            with atomic_path(path) as tmp:
                program.save(str(tmp))
        else:
            # Below 18 ONNX's version converter has no Resize adapter, so the TorchScript
            # exporter writes opsets 16 and 17 directly.
            with atomic_path(path) as tmp:
                torch.onnx.export(ExportGraph(m), inputs, str(tmp), dynamo=False,
                                  dynamic_axes={name: {0: "batch"} for name in INPUT_NAMES + OUTPUT_NAMES}, **args)
    return path


def onnx_parity(path: str | os.PathLike, model: EditorNet | None = None, *,
                batch_sizes: tuple[int, ...] = (1, 3), seed: int = 1) -> dict[str, float]:
    """Largest absolute difference between ONNX Runtime (CPU) on ``path`` and PyTorch
    running ``model`` with fastwarp's own kernels, per output, over random inputs of each
    batch size (float32).

    Raises:
        ImportError: ``onnxruntime`` is missing.
    """
    _require("onnxruntime")
    import onnxruntime as ort

    model = float_cpu_copy(model if model is not None else EditorNet.load()).eval()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = dict.fromkeys(OUTPUT_NAMES, 0.0)
    for i, n in enumerate(batch_sizes):
        inputs = example_inputs(model, n, seed + i)
        with torch.no_grad():
            expected = ExportGraph(model)(*inputs)
        got = session.run(list(OUTPUT_NAMES), {k: v.numpy() for k, v in zip(INPUT_NAMES, inputs)})
        for name, e, g in zip(OUTPUT_NAMES, expected, got):
            worst[name] = max(worst[name], float((torch.from_numpy(g) - e).abs().max()))
    return worst


def onnx_opset(path: str | os.PathLike) -> int:
    """The default-domain (``ai.onnx``) opset an ONNX file imports.

    Raises:
        FileNotFoundError: no such file. ValueError: not an ONNX model. ImportError: no ``onnx``.
    """
    return _graph_info(path)[0]


def check_onnx_graph(path: str | os.PathLike) -> None:
    """Check that ``path`` is an editor graph as :func:`export_onnx` writes it, which
    TensorRT's parser reads correctly: opset 16..19, inputs ``image, aus, source_aus`` and
    outputs ``output, flow, texture, mask``.

    Raises:
        FileNotFoundError: no such file. ValueError: another opset, other inputs or outputs,
        not an ONNX model. ImportError: no ``onnx``.
    """
    opset, inputs, outputs = _graph_info(path)
    if opset not in OPSETS:
        raise ValueError(f"{path} uses ONNX opset {opset}; TensorRT needs opset {OPSETS.start}..{OPSETS.stop - 1} "
                         "(GridSample arrives in 16; TensorRT reads opset 20's bilinear GridSample as nearest): "
                         f"re-export it with fastwarp export --format onnx --opset {DEFAULT_OPSET}")
    if inputs != list(INPUT_NAMES) or outputs != list(OUTPUT_NAMES):
        raise ValueError(f"{path} is not a fastwarp editor graph: inputs {inputs}, outputs {outputs}; expected "
                         f"inputs {list(INPUT_NAMES)} and outputs {list(OUTPUT_NAMES)} (fastwarp export --format onnx)")


def _graph_info(path: str | os.PathLike) -> tuple[int, list[str], list[str]]:
    _require("onnx")
    import onnx

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX file not found: {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ValueError(f"{path} is not an ONNX model: {exc}") from exc
    opsets = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not opsets:
        raise ValueError(f"{path} is not an ONNX model (it imports no ai.onnx opset)")
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in initializers]
    return opsets[0], inputs, [o.name for o in model.graph.output]


def _require(*modules: str) -> None:
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"the ONNX export needs {', '.join(missing)}: pip install -r requirements.txt "
                          "(onnx, onnxscript, onnxruntime are pinned there)")

"""Export of the editor network to ONNX, for ONNX Runtime and TensorRT (DESIGN.md; the
real-time issue).

The graph is :class:`fastwarp.models.FaceEditor` at its own resolution with the warp as
standard ONNX ops: the model runs with ``warp_backend="reference"``, whose
``F.grid_sample`` exports as ``GridSample`` (bilinear, ``align_corners=1``) and whose
blend is elementwise, so any ONNX runtime reads it without fastwarp's custom ops.

Inputs (float32, batch dimension dynamic):
    ``image`` [N, 3, S, S] in [-1, 1] (RGB, S = ``config.image_size``, 128 for the bundled
    weights); ``aus`` [N, 17] target AU intensities 0..5 in :data:`fastwarp.AU_NAMES`
    order; ``source_aus`` [N, 17], the face's current AUs (used by ``"delta"``-conditioned
    models such as the bundled ones; ignored by ``"target"`` ones).
Outputs: ``output`` [N, 3, S, S], ``flow`` [N, 2, M, M] (pixels of the M x M grid),
``texture`` [N, 3, M, M], ``mask`` [N, 1, M, M] (M = ``config.map_size``, S unless the
model runs its networks on a smaller grid): the :class:`EditResult` fields, so a
runtime can also apply flow, texture and mask to a larger crop with
:func:`fastwarp.warp_blend` (resolution independence).

Opsets 16 to 19 only: GridSample exists from opset 16, and TensorRT's ONNX parser reads
opset 20's GridSample "linear" mode as nearest.

:func:`export_tensorrt` builds an fp16 TensorRT engine from that graph
(:mod:`fastwarp.tensorrt`; needs TensorRT 10 and a CUDA GPU, which fastwarp's development
machines lack: there it raises :class:`fastwarp.tensorrt.TensorRTUnavailableError`).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ._io import atomic_path
from .au import AU_NAMES
from .models.editor import FaceEditor

__all__ = ["OPSETS", "DEFAULT_OPSET", "INPUT_NAMES", "OUTPUT_NAMES", "export_onnx", "onnx_parity", "onnx_opset",
           "check_onnx_graph", "export_tensorrt"]

OPSETS = range(16, 20)
DEFAULT_OPSET = 18
INPUT_NAMES = ("image", "aus", "source_aus")
OUTPUT_NAMES = ("output", "flow", "texture", "mask")


class _Graph(nn.Module):
    """The exported function: FaceEditor's forward with its outputs as a tuple."""

    def __init__(self, model: FaceEditor) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: Tensor, aus: Tensor, source_aus: Tensor) -> tuple[Tensor, ...]:
        r = self.model(image, aus, source_aus)
        return r.output, r.flow, r.texture, r.mask


def _example_inputs(model: FaceEditor, batch: int, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    size = model.config.image_size
    image = torch.rand(batch, 3, size, size, generator=gen) * 2 - 1
    aus = torch.rand(batch, len(AU_NAMES), generator=gen) * 5
    source_aus = torch.rand(batch, len(AU_NAMES), generator=gen) * 5
    return image, aus, source_aus


@dataclass
class _ReferenceWarp:
    """Context: the model's warp ops on the pure-PyTorch reference, float32, CPU, eval."""

    model: FaceEditor

    def __enter__(self) -> FaceEditor:
        self._backend, self._training = self.model.warp_backend, self.model.training
        self.model.warp_backend = "reference"
        return self.model.eval()

    def __exit__(self, *exc) -> None:
        self.model.warp_backend = self._backend
        self.model.train(self._training)


def export_onnx(path: str | os.PathLike, model: FaceEditor | None = None, *,
                opset: int = DEFAULT_OPSET) -> Path:
    """Write ``model`` (default: the bundled weights) as an ONNX file at ``path``.

    Args:
        path: the ``.onnx`` file to write; written to a temporary file and renamed, so a
            failed export leaves nothing behind.
        model: a :class:`FaceEditor` (moved to float32 on the CPU for the export; the
            caller's module is not changed). Default: ``FaceEditor.load()``.
        opset: ONNX opset, 16..19 (see the module docstring).

    Returns:
        The path written.

    Raises:
        ValueError: ``opset`` outside 16..19.
        ImportError: the exporter's packages (``onnx``, ``onnxscript``) are missing.
    """
    if opset not in OPSETS:
        raise ValueError(f"opset must be in {OPSETS.start}..{OPSETS.stop - 1} (GridSample needs 16; "
                         f"TensorRT reads opset 20's bilinear GridSample as nearest), got {opset}")
    _require("onnx", "onnxscript")
    model = _float_cpu_copy(model if model is not None else FaceEditor.load())
    path = Path(path)
    args = dict(opset_version=opset, input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES))
    with _ReferenceWarp(model) as m, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporters' notes on their own internals
        inputs = _example_inputs(m, 2)
        if opset >= 18:
            # torch.export-based exporter: emits opset 18 natively.
            batch = torch.export.Dim("batch", min=1, max=1024)
            program = torch.onnx.export(_Graph(m), inputs, dynamo=True, verbose=False,
                                        dynamic_shapes={name: {0: batch} for name in INPUT_NAMES}, **args)
            with atomic_path(path) as tmp:
                program.save(str(tmp))
        else:
            # Below 18 ONNX's version converter has no Resize adapter, so the TorchScript
            # exporter writes opsets 16 and 17 directly.
            with atomic_path(path) as tmp:
                torch.onnx.export(_Graph(m), inputs, str(tmp), dynamo=False,
                                  dynamic_axes={name: {0: "batch"} for name in INPUT_NAMES + OUTPUT_NAMES}, **args)
    return path


def onnx_parity(path: str | os.PathLike, model: FaceEditor | None = None, *,
                batch_sizes: tuple[int, ...] = (1, 3), seed: int = 1) -> dict[str, float]:
    """Largest absolute difference between ONNX Runtime (CPU) on ``path`` and PyTorch
    running ``model`` with fastwarp's own kernels, per output, over random inputs of each
    batch size (float32).

    Raises:
        ImportError: ``onnxruntime`` is missing.
    """
    _require("onnxruntime")
    import onnxruntime as ort

    model = _float_cpu_copy(model if model is not None else FaceEditor.load()).eval()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = dict.fromkeys(OUTPUT_NAMES, 0.0)
    for i, n in enumerate(batch_sizes):
        inputs = _example_inputs(model, n, seed + i)
        with torch.no_grad():
            expected = _Graph(model)(*inputs)
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


def export_tensorrt(path: str | os.PathLike, model: FaceEditor | None = None, *,
                    onnx_path: str | os.PathLike | None = None, opset: int = DEFAULT_OPSET,
                    max_batch: int = 32, opt_batch: int = 1) -> Path:
    """Build an fp16 TensorRT engine of ``model`` (default: the bundled weights) at ``path``,
    through the ONNX graph of :func:`export_onnx` (see :mod:`fastwarp.tensorrt`).

    Args:
        path: the engine file; written to a temporary file and renamed, so a failed build
            leaves nothing behind.
        model: the :class:`FaceEditor` to export (not with ``onnx_path``).
        onnx_path: build from this existing ONNX file (checked with :func:`check_onnx_graph`)
            instead of exporting ``model``.
        opset: ONNX opset of the export, 16..19.
        max_batch: the engine accepts batches 1..max_batch.
        opt_batch: the batch TensorRT tunes its kernels for.

    Returns:
        The path written.

    Raises:
        fastwarp.tensorrt.TensorRTUnavailableError: no TensorRT 10 or no CUDA GPU here (the
            message names what is missing; checked before anything is exported).
        ValueError: bad arguments (opset, batch sizes, ``model`` with ``onnx_path``), an
            ONNX file TensorRT would misread, or a graph TensorRT's parser rejects.
        FileNotFoundError: ``onnx_path`` does not exist.
        RuntimeError: TensorRT could not build the engine.
    """
    import tempfile

    from . import tensorrt as trt_engine

    if opset not in OPSETS:
        raise ValueError(f"opset must be in {OPSETS.start}..{OPSETS.stop - 1} (GridSample needs 16; "
                         f"TensorRT reads opset 20's bilinear GridSample as nearest), got {opset}")
    if max_batch < 1:
        raise ValueError(f"max_batch must be at least 1, got {max_batch}")
    if not 1 <= opt_batch <= max_batch:
        raise ValueError(f"opt_batch must be in 1..max_batch ({max_batch}), got {opt_batch}")
    if onnx_path is not None:
        if model is not None:
            raise ValueError("pass either model or onnx_path, not both: an ONNX file is built as it is")
        check_onnx_graph(onnx_path)
    reason = trt_engine.unavailable_reason()
    if reason:  # before the export, which takes a while
        raise trt_engine.TensorRTUnavailableError(reason)
    if onnx_path is not None:
        return trt_engine.build_engine(onnx_path, path, max_batch=max_batch, opt_batch=opt_batch)
    with tempfile.TemporaryDirectory(prefix="fastwarp-trt-") as tmp:
        onnx_file = export_onnx(Path(tmp) / "editor.onnx", model, opset=opset)
        return trt_engine.build_engine(onnx_file, path, max_batch=max_batch, opt_batch=opt_batch)


def _float_cpu_copy(model: FaceEditor) -> FaceEditor:
    copy = FaceEditor(model.config)
    copy.load_state_dict({k: v.detach().float().cpu() for k, v in model.state_dict().items()})
    return copy


def _require(*modules: str) -> None:
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"the ONNX export needs {', '.join(missing)}: pip install -r requirements.txt "
                          "(onnx, onnxscript, onnxruntime are pinned there)")

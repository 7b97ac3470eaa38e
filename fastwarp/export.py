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
Outputs: ``output`` [N, 3, S, S], ``flow`` [N, 2, S, S] (pixels of the S x S grid),
``texture`` [N, 3, S, S], ``mask`` [N, 1, S, S]: the :class:`EditResult` fields, so a
runtime can also apply flow, texture and mask to a larger crop with
:func:`fastwarp.warp_blend` (resolution independence).

Opsets 16 to 19 only: GridSample exists from opset 16, and TensorRT's ONNX parser reads
opset 20's GridSample "linear" mode as nearest.
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

__all__ = ["OPSETS", "DEFAULT_OPSET", "INPUT_NAMES", "OUTPUT_NAMES", "export_onnx", "onnx_parity"]

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

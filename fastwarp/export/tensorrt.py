"""TensorRT engines of the editor network: build an fp16 engine from the ONNX graph of
:mod:`fastwarp.export.onnx` and run it on torch CUDA tensors (the real-time issue).

Needs NVIDIA TensorRT 10 (the ``tensorrt`` Python package) and a CUDA GPU. fastwarp's
development and CI machines cannot install TensorRT (no GPU; the GPU machines have no
TensorRT either, docs/design.md "Machines"), so this module has not run there: it is written
against TensorRT 10's documented Python API, and its tests skip, saying so, where TensorRT
is missing. Where it is missing every entry point raises :class:`TensorRTUnavailableError`
naming what is missing; ``import fastwarp.export.tensorrt`` itself never imports TensorRT.

The engine (:func:`build_engine`, ``fastwarp export --format tensorrt``):

- parsed by TensorRT's ONNX parser from a graph of :func:`fastwarp.export.onnx.export_onnx`,
  opset 16..19 (the parser reads opset 20's bilinear GridSample as nearest);
- ``BuilderFlag.FP16``: TensorRT may run any layer in float16 where it is faster; the
  inputs and outputs stay float32, as in the ONNX graph;
- one optimisation profile: batch 1 .. ``max_batch``, tuned for ``opt_batch``; the other
  dimensions are the graph's static ones (``S = 128`` for the bundled weights).

An engine is specific to the GPU model and the TensorRT version that built it. TensorRT 11
removed ``BuilderFlag.FP16`` (weakly typed builds): :func:`build_engine` refuses it with
that reason; :class:`TensorRTRunner` needs only the runtime API that 10 and 11 share.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from .._io import atomic_path
from ..au import AU_NAMES
from ..models.editor_net import EditorNet
from .graph import INPUT_NAMES, OUTPUT_NAMES, DEFAULT_OPSET, ExportGraph, check_opset, example_inputs, float_cpu_copy
from .onnx import check_onnx_graph, export_onnx

__all__ = ["TensorRTUnavailableError", "EngineOutputs", "TensorRTRunner", "build_engine", "engine_parity",
           "unavailable_reason", "trtexec_command", "DEFAULT_MAX_BATCH", "export_tensorrt"]

DEFAULT_MAX_BATCH = 32


class TensorRTUnavailableError(RuntimeError):
    """TensorRT, a CUDA GPU, or a TensorRT version fastwarp can build with is missing; the
    message says which and what to do instead."""


class EngineOutputs(NamedTuple):
    """The engine's outputs, the ONNX graph's (float32, on the runner's GPU; S the input's
    side, M the networks' grid, ``config.map_size``, = S unless the model sets it smaller):
    output (Tensor[N, 3, S, S]) in [-1, 1]; flow (Tensor[N, 2, M, M]) in pixels of the M x M
    grid; texture (Tensor[N, 3, M, M]); mask (Tensor[N, 1, M, M]), 1 = keep the warped pixel."""

    output: Tensor
    flow: Tensor
    texture: Tensor
    mask: Tensor


# --- availability ------------------------------------------------------------------------

def _has_tensorrt_package() -> bool:
    return importlib.util.find_spec("tensorrt") is not None


def _has_cuda_gpu() -> bool:
    return torch.cuda.is_available()


def trtexec_command(onnx: str | os.PathLike = "fastwarp.onnx", engine: str | os.PathLike = "fastwarp.engine", *,
                    max_batch: int = DEFAULT_MAX_BATCH, opt_batch: int = 1, image_size: int = 128) -> str:
    """The ``trtexec`` command line that builds the same fp16 engine as :func:`build_engine`
    from an ONNX file (for machines with TensorRT's tools but without its Python package)."""

    def shapes(n: int) -> str:
        return f"image:{n}x3x{image_size}x{image_size},aus:{n}x{len(AU_NAMES)},source_aus:{n}x{len(AU_NAMES)}"

    return (f"trtexec --onnx={onnx} --fp16 --minShapes={shapes(1)} --optShapes={shapes(opt_batch)} "
            f"--maxShapes={shapes(max_batch)} --saveEngine={engine}")


def unavailable_reason() -> str | None:
    """Why TensorRT engines cannot be built or run here (one line naming what is missing:
    the ``tensorrt`` package and/or a CUDA GPU), or None where both are present. Does not
    import TensorRT."""
    missing = []
    if not _has_tensorrt_package():
        missing.append("the tensorrt Python package")
    if not _has_cuda_gpu():
        cpu_build = torch.version.cuda is None
        missing.append("a CUDA GPU (torch sees none" + ("; this torch is a CPU-only build" if cpu_build else "") + ")")
    if not missing:
        return None
    return (f"TensorRT engines need NVIDIA TensorRT 10 and a CUDA GPU; missing here: {' and '.join(missing)}. "
            "fastwarp's development and CI machines cannot install TensorRT, so this path is not tested there. "
            "Export ONNX instead (fastwarp export --format onnx -o fastwarp.onnx) and build the fp16 engine where "
            f"TensorRT is installed: {trtexec_command()}")


def _import_tensorrt():
    """The ``tensorrt`` module (version 10 or later), or :class:`TensorRTUnavailableError`."""
    reason = unavailable_reason()
    if reason:
        raise TensorRTUnavailableError(reason)
    try:
        import tensorrt as trt
    except (ImportError, OSError) as exc:  # the package is there but its libraries are not
        raise TensorRTUnavailableError(f"the tensorrt package is installed but does not import ({exc}); "
                                       f"build the engine with trtexec instead: {trtexec_command()}") from exc
    version = getattr(trt, "__version__", "0")
    try:
        major = int(version.split(".")[0])
    except ValueError:
        major = 0
    if major < 10:
        raise TensorRTUnavailableError(f"TensorRT {version} is too old: fastwarp needs TensorRT 10 or later "
                                       "(named I/O tensors, execute_async_v3)")
    return trt


def _logger(trt):
    """A TensorRT logger that prints warnings and errors to stderr and keeps the errors, so
    a failed build can say why."""
    import sys

    errors = {trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR}
    shown = errors | {trt.ILogger.Severity.WARNING}

    class Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg) -> None:
            if severity in errors:
                self.errors.append(str(msg))
            if severity in shown:
                print(f"TensorRT: {msg}", file=sys.stderr)

    return Logger()


# --- build -------------------------------------------------------------------------------

def build_engine(onnx_path: str | os.PathLike, engine_path: str | os.PathLike, *,
                 max_batch: int = DEFAULT_MAX_BATCH, opt_batch: int = 1,
                 workspace_bytes: int | None = None) -> Path:
    """Build an fp16 TensorRT engine from ``onnx_path`` and write it to ``engine_path``.

    Args:
        onnx_path: a graph of :func:`fastwarp.export.onnx.export_onnx` (opset 16..19, dynamic
            batch; :func:`fastwarp.export.export_tensorrt` exports and checks it).
        engine_path: the serialized engine; written to a temporary file and renamed, so a
            failed build leaves nothing behind.
        max_batch: largest batch the engine accepts (its optimisation profile: 1..max_batch).
        opt_batch: the batch TensorRT tunes its kernels for (1: real-time video).
        workspace_bytes: limit of TensorRT's scratch memory (default: TensorRT's, the GPU's).

    Returns:
        ``engine_path``.

    Raises:
        TensorRTUnavailableError: no TensorRT 10 or no CUDA GPU here, or TensorRT 11+ (no
            ``BuilderFlag.FP16``).
        ValueError: bad batch sizes; the parser rejected the graph; an input whose batch is
            fixed or whose other dimensions are dynamic.
        RuntimeError: TensorRT could not build the engine (with its logged errors).
    """
    if max_batch < 1:
        raise ValueError(f"max_batch must be at least 1, got {max_batch}")
    if not 1 <= opt_batch <= max_batch:
        raise ValueError(f"opt_batch must be in 1..max_batch ({max_batch}), got {opt_batch}")
    trt = _import_tensorrt()
    if not hasattr(trt.BuilderFlag, "FP16"):
        raise TensorRTUnavailableError(
            f"TensorRT {trt.__version__} has no BuilderFlag.FP16 (TensorRT 11 removed weakly typed builds): "
            "fastwarp builds its fp16 engine with TensorRT 10.x; with 11, convert the ONNX graph to float16 "
            "(NVIDIA ModelOpt AutoCast) and build it strongly typed with trtexec")
    logger = _logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ValueError(f"TensorRT's ONNX parser rejected {onnx_path}: " + ("; ".join(errors) or "no reason given"))

    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.FP16)
    if workspace_bytes is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shape = tuple(tensor.shape)
        if shape[0] != -1:
            raise ValueError(f"{onnx_path}: input {tensor.name!r} has a fixed batch size {shape[0]} "
                             f"(shape {list(shape)}); export it with fastwarp export --format onnx (dynamic batch)")
        if any(d < 0 for d in shape[1:]):
            raise ValueError(f"{onnx_path}: input {tensor.name!r} has dynamic dimensions besides the batch "
                             f"(shape {list(shape)}); the engine's profile varies only the batch")
        rest = shape[1:]
        profile.set_shape(tensor.name, (1, *rest), (opt_batch, *rest), (max_batch, *rest))
    config.add_optimization_profile(profile)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT could not build the engine: "
                           + ("; ".join(logger.errors[-5:]) or "see its log above"))
    engine_path = Path(engine_path)
    with atomic_path(engine_path) as tmp, open(tmp, "wb") as f:
        f.write(serialized)
    return engine_path


# --- run ---------------------------------------------------------------------------------

def _torch_dtypes(trt) -> dict:
    table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16,
             trt.DataType.INT32: torch.int32, trt.DataType.INT8: torch.int8, trt.DataType.BOOL: torch.bool}
    for name, dtype in (("BF16", torch.bfloat16), ("INT64", torch.int64), ("UINT8", torch.uint8)):
        if hasattr(trt.DataType, name):
            table[getattr(trt.DataType, name)] = dtype
    return table


class TensorRTRunner:
    """Runs an engine of :func:`build_engine` on torch CUDA tensors.

    Args:
        engine_path: the serialized engine (built on this GPU model and TensorRT version).
        device: the CUDA device to run on (default: the current one).

    Call:
        image (Tensor[N, 3, S, S]): RGB in [-1, 1]; aus (Tensor[N, 17]): target AU
        intensities 0..5; source_aus (Tensor[N, 17]): the face's current AUs (the ONNX
        graph's inputs, see :mod:`fastwarp.export`); floating tensors, converted to the
        engine's input dtype (float32) and copied to ``device`` where they are elsewhere.
        ``1 <= N <= max_batch`` (N = 0 gives empty outputs).

    Returns:
        :class:`EngineOutputs`, new tensors on ``device``. The engine runs asynchronously on
        torch's current CUDA stream (``execute_async_v3``), so torch work queued after it on
        that stream sees its results; synchronise before reading them on the host.

    Raises:
        TensorRTUnavailableError: no TensorRT 10+ or no CUDA GPU here.
        FileNotFoundError: no engine file. ValueError: the file is not an engine this
        TensorRT can load, or not one of fastwarp's (its inputs and outputs are named
        image/aus/source_aus and output/flow/texture/mask); bad inputs.

    One execution context per runner: calls from several threads take turns.

    Example::

        runner = TensorRTRunner("fastwarp.engine")
        out = runner(image.cuda(), aus.cuda(), source_aus.cuda()).output
    """

    def __init__(self, engine_path: str | os.PathLike, device: torch.device | str | int | None = None) -> None:
        trt = _import_tensorrt()
        self.path = Path(engine_path)
        if not self.path.is_file():
            raise FileNotFoundError(f"TensorRT engine not found: {self.path}")
        self.device = torch.device("cuda", torch.cuda.current_device()) if device is None else torch.device(device)
        if self.device.type != "cuda":
            raise ValueError(f"device must be a CUDA device, got {self.device}")
        if self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self._logger = _logger(trt)
        with torch.cuda.device(self.device):
            self._runtime = trt.Runtime(self._logger)
            self.engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
            if self.engine is None:
                raise ValueError(f"{self.path} is not an engine TensorRT {trt.__version__} can load on this GPU "
                                 f"(engines are specific to the GPU model and TensorRT version that built them): "
                                 + ("; ".join(self._logger.errors[-3:]) or "no reason given"))
            self.context = self.engine.create_execution_context()
        if self.context is None:
            raise RuntimeError(f"TensorRT could not create an execution context for {self.path} (out of GPU memory?)")

        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if sorted(inputs) != sorted(INPUT_NAMES) or not set(OUTPUT_NAMES) <= set(outputs):
            raise ValueError(f"{self.path} is not a fastwarp editor engine: inputs {inputs}, outputs {outputs}; "
                             f"expected inputs {list(INPUT_NAMES)} and outputs {list(OUTPUT_NAMES)}")
        # Every output needs an address, including any beyond the graph's four (fastwarp's
        # export has none); only the four are returned.
        self._outputs = outputs
        dtypes = _torch_dtypes(trt)
        self.dtypes = {n: dtypes[self.engine.get_tensor_dtype(n)] for n in names}
        linear = getattr(getattr(trt, "TensorFormat", None), "LINEAR", None)
        for n in names:
            if linear is not None and self.engine.get_tensor_format(n) != linear:
                raise ValueError(f"{self.path}: tensor {n!r} is not in the linear (NCHW) format")
        self.shapes = {n: tuple(self.engine.get_tensor_shape(n)) for n in names}
        low, _, high = self.engine.get_tensor_profile_shape("image", 0)
        self.min_batch, self.max_batch = int(low[0]), int(high[0])
        self.image_size = int(self.shapes["image"][2])
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({str(self.path)!r}, device={str(self.device)!r}, "
                f"batch={self.min_batch}..{self.max_batch}, image_size={self.image_size})")

    def _input(self, name: str, t: Tensor, shape: tuple[int, ...]) -> Tensor:
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating tensor, got {t.dtype}")
        if tuple(t.shape) != shape:
            raise ValueError(f"{name} must have shape {list(shape)}, got {list(t.shape)}")
        t = t.to(self.device, self.dtypes[name]).contiguous()
        if t.data_ptr() % 256:  # a view into a larger tensor: TensorRT wants aligned I/O addresses
            t = t.clone()
        return t

    def __call__(self, image: Tensor, aus: Tensor, source_aus: Tensor) -> EngineOutputs:
        if not isinstance(image, Tensor) or image.dim() != 4:
            raise ValueError(f"image must have shape [N, 3, {self.image_size}, {self.image_size}], "
                             f"got {list(image.shape) if isinstance(image, Tensor) else type(image).__name__}")
        n, s = image.shape[0], self.image_size
        if n > self.max_batch or 0 < n < self.min_batch:
            raise ValueError(f"batch {n} is outside the engine's range {self.min_batch}..{self.max_batch} "
                             "(rebuild it with a larger --max-batch, or split the batch)")
        feeds = {"image": self._input("image", image, (n, 3, s, s)),
                 "aus": self._input("aus", aus, (n, len(AU_NAMES))),
                 "source_aus": self._input("source_aus", source_aus, (n, len(AU_NAMES)))}
        if n == 0:
            return EngineOutputs(*(torch.empty((0, *self.shapes[o][1:]), dtype=self.dtypes[o], device=self.device)
                                   for o in OUTPUT_NAMES))
        with self._lock, torch.cuda.device(self.device):
            for name, t in feeds.items():
                if not self.context.set_input_shape(name, tuple(t.shape)):
                    raise ValueError(f"the engine refused {name} of shape {list(t.shape)}")
            results = {}
            for name in self._outputs:
                shape = tuple(self.context.get_tensor_shape(name))
                if any(d < 0 for d in shape):
                    raise RuntimeError(f"TensorRT left output {name!r} with an unresolved shape {list(shape)}")
                results[name] = torch.empty(shape, dtype=self.dtypes[name], device=self.device)
            for name, t in (*feeds.items(), *results.items()):
                if not self.context.set_tensor_address(name, t.data_ptr()):
                    raise RuntimeError(f"TensorRT refused the address of {name!r}")
            stream = torch.cuda.current_stream(self.device)
            if not self.context.execute_async_v3(stream.cuda_stream):
                raise RuntimeError("TensorRT failed to enqueue the engine (execute_async_v3 returned False): "
                                   + ("; ".join(self._logger.errors[-3:]) or "see its log"))
        # The inputs converted above may be freed now: torch's caching allocator reuses
        # their memory only for work queued later on this stream.
        return EngineOutputs(*(results[o] for o in OUTPUT_NAMES))


def engine_parity(engine_path: str | os.PathLike, model=None, *, batch_sizes: tuple[int, ...] = (1, 3),
                  seed: int = 1) -> dict[str, float]:
    """Largest absolute difference, per output, between the engine (fp16 inside) and PyTorch
    running ``model`` (default: the bundled weights) in float32 with fastwarp's kernels on
    the same GPU, over random inputs of each batch size.

    Raises:
        TensorRTUnavailableError: no TensorRT 10+ or no CUDA GPU here.
    """
    runner = TensorRTRunner(engine_path)
    model = float_cpu_copy(model if model is not None else EditorNet.load()).to(runner.device).eval()
    worst = dict.fromkeys(OUTPUT_NAMES, 0.0)
    for i, n in enumerate(batch_sizes):
        inputs = [t.to(runner.device) for t in example_inputs(model, n, seed + i)]
        with torch.no_grad():
            expected = ExportGraph(model)(*inputs)
        got = runner(*inputs)
        for name, e, g in zip(OUTPUT_NAMES, expected, got):
            worst[name] = max(worst[name], float((g.float() - e).abs().max()))
    return worst


def export_tensorrt(path: str | os.PathLike, model: EditorNet | None = None, *,
                    onnx_path: str | os.PathLike | None = None, opset: int = DEFAULT_OPSET,
                    max_batch: int = 32, opt_batch: int = 1) -> Path:
    """Build an fp16 TensorRT engine of ``model`` (default: the bundled weights) at ``path``,
    through the ONNX graph of :func:`export_onnx` (see this module).

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
        TensorRTUnavailableError: no TensorRT 10 or no CUDA GPU here (the
            message names what is missing; checked before anything is exported).
        ValueError: bad arguments (opset, batch sizes, ``model`` with ``onnx_path``), an
            ONNX file TensorRT would misread, or a graph TensorRT's parser rejects.
        FileNotFoundError: ``onnx_path`` does not exist.
        RuntimeError: TensorRT could not build the engine.
    """
    import tempfile

    check_opset(opset)
    if max_batch < 1:
        raise ValueError(f"max_batch must be at least 1, got {max_batch}")
    if not 1 <= opt_batch <= max_batch:
        raise ValueError(f"opt_batch must be in 1..max_batch ({max_batch}), got {opt_batch}")
    if onnx_path is not None:
        if model is not None:
            raise ValueError("pass either model or onnx_path, not both: an ONNX file is built as it is")
        check_onnx_graph(onnx_path)
    reason = unavailable_reason()
    if reason:  # before the export, which takes a while
        raise TensorRTUnavailableError(reason)
    if onnx_path is not None:
        return build_engine(onnx_path, path, max_batch=max_batch, opt_batch=opt_batch)
    with tempfile.TemporaryDirectory(prefix="fastwarp-trt-") as tmp:
        onnx_file = export_onnx(Path(tmp) / "editor.onnx", model, opset=opset)
        return build_engine(onnx_file, path, max_batch=max_batch, opt_batch=opt_batch)

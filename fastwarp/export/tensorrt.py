"""TensorRT engines of the editor network: build an fp16 engine from the ONNX graph of
:mod:`fastwarp.export.onnx` and run it on torch CUDA tensors (the real-time engine's
``runtime="tensorrt"``, ``fastwarp export --format tensorrt``).

Needs NVIDIA TensorRT 10 or 11 (the ``tensorrt`` Python package: ``tensorrt-cu12`` or
``tensorrt-cu13`` with its ``-libs`` and ``-bindings``) and a CUDA GPU. Where either is
missing every entry point raises :class:`TensorRTUnavailableError` naming what is missing;
``import fastwarp.export.tensorrt`` itself never imports TensorRT. fastwarp's development
and CI machines have no GPU, and the ``-libs`` wheels (``libnvinfer``) come only from
pypi.nvidia.com, so the build and run have not run there; CI imports the PyPI
``-bindings`` wheel against stub libraries and checks every TensorRT name this module
uses against it (tests/test_tensorrt.py).

The engine (:func:`build_engine`, ``fastwarp export --format tensorrt``):

- parsed by TensorRT's ONNX parser from a graph of :func:`fastwarp.export.onnx.export_onnx`
  or :func:`export_onnx_fp16`, opset 16..19 (the parser reads opset 20's bilinear
  GridSample as nearest);
- fp16, chosen by what the installed TensorRT has (:func:`precision_mode`), not by its
  version string: where ``BuilderFlag.FP16`` exists (TensorRT 10) a float32 graph is built
  with that flag (TensorRT may run any layer in float16 where it is faster); where it does
  not (TensorRT 11 removed weakly typed builds) a float16 graph of
  :func:`export_onnx_fp16` is built as a strongly typed network
  (``NetworkDefinitionCreationFlag.STRONGLY_TYPED``: each layer runs in the graph's types).
  Either way the inputs and outputs stay float32;
- one optimisation profile: batch 1 .. ``max_batch``, tuned for ``opt_batch``; the other
  dimensions are the graph's static ones (``S = 128`` for the bundled weights).

An engine is specific to the GPU model and the TensorRT version that built it (the
real-time engine's cache keys its engines by both, :mod:`fastwarp.realtime.runners`).
"""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn

from .._io import atomic_path
from ..au import AU_NAMES
from ..models.editor_net import EditorNet
from .graph import INPUT_NAMES, OUTPUT_NAMES, DEFAULT_OPSET, ExportGraph, check_opset, example_inputs, float_cpu_copy
from .onnx import check_onnx_graph, export_onnx

__all__ = ["TensorRTUnavailableError", "EngineOutputs", "TensorRTRunner", "build_engine", "engine_parity",
           "unavailable_reason", "missing_requirements", "trtexec_command", "DEFAULT_MAX_BATCH", "export_tensorrt",
           "export_onnx_fp16", "onnx_is_float16", "precision_mode", "tensorrt_version", "FP16_FLAG",
           "STRONGLY_TYPED"]

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
                    max_batch: int = DEFAULT_MAX_BATCH, opt_batch: int = 1, image_size: int = 128,
                    strongly_typed: bool = False) -> str:
    """The ``trtexec`` command line that builds the same fp16 engine as :func:`build_engine`
    from an ONNX file (for machines with TensorRT's tools but without its Python package):
    ``--fp16`` on a float32 graph (TensorRT 10), or ``strongly_typed`` (``--stronglyTyped``)
    on a float16 graph of :func:`export_onnx_fp16` (TensorRT 11, which has no ``--fp16``)."""

    def shapes(n: int) -> str:
        return f"image:{n}x3x{image_size}x{image_size},aus:{n}x{len(AU_NAMES)},source_aus:{n}x{len(AU_NAMES)}"

    return (f"trtexec --onnx={onnx} {'--stronglyTyped' if strongly_typed else '--fp16'} --minShapes={shapes(1)} "
            f"--optShapes={shapes(opt_batch)} --maxShapes={shapes(max_batch)} --saveEngine={engine}")


def missing_requirements() -> list[str]:
    """What TensorRT engines need and this machine lacks: ``"the tensorrt Python package"``
    and/or ``"a CUDA GPU (...)"``; empty where both are present. Does not import TensorRT."""
    missing = []
    if not _has_tensorrt_package():
        missing.append("the tensorrt Python package")
    if not _has_cuda_gpu():
        cpu_build = torch.version.cuda is None
        missing.append("a CUDA GPU (torch sees none" + ("; this torch is a CPU-only build" if cpu_build else "") + ")")
    return missing


def unavailable_reason() -> str | None:
    """Why TensorRT engines cannot be built or run here (one line naming what is missing:
    the ``tensorrt`` package and/or a CUDA GPU, and what to do instead), or None where both
    are present. Does not import TensorRT."""
    missing = missing_requirements()
    if not missing:
        return None
    return (f"TensorRT engines need NVIDIA TensorRT 10 or 11 and a CUDA GPU; missing here: {' and '.join(missing)}. "
            "Install tensorrt-cu12 or tensorrt-cu13 (its -libs wheel comes from pypi.nvidia.com) on a GPU machine, "
            "or export ONNX instead (fastwarp export --format onnx -o fastwarp.onnx) and build the fp16 engine where "
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


def tensorrt_version() -> str:
    """The installed TensorRT's version string (e.g. ``"11.4.0.106"``).

    Raises:
        TensorRTUnavailableError: no TensorRT 10+ or no CUDA GPU here.
    """
    return str(_import_tensorrt().__version__)


#: :func:`precision_mode`'s answers.
FP16_FLAG, STRONGLY_TYPED = "fp16-flag", "strongly-typed"


def precision_mode(trt=None) -> str:
    """How this TensorRT builds an fp16 engine, by feature rather than version string:
    :data:`FP16_FLAG` (``"fp16-flag"``) where ``BuilderFlag.FP16`` exists (TensorRT 10: a
    float32 graph, the flag lets TensorRT pick float16 per layer), else
    :data:`STRONGLY_TYPED` (``"strongly-typed"``) where
    ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` exists (TensorRT 11: a float16 graph of
    :func:`export_onnx_fp16`, run in its own types).

    Args:
        trt: the ``tensorrt`` module (default: import it).
    Raises:
        TensorRTUnavailableError: no TensorRT 10+ or no CUDA GPU here (``trt`` not given),
            or a TensorRT with neither feature.
    """
    trt = _import_tensorrt() if trt is None else trt
    if hasattr(trt.BuilderFlag, "FP16"):
        return FP16_FLAG
    if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        return STRONGLY_TYPED
    raise TensorRTUnavailableError(f"TensorRT {getattr(trt, '__version__', '?')} has neither BuilderFlag.FP16 nor "
                                   "NetworkDefinitionCreationFlag.STRONGLY_TYPED: fastwarp cannot build fp16 with it")


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


# --- the float16 graph (TensorRT 11) ----------------------------------------------------

class _Float16Graph(nn.Module):
    """:class:`ExportGraph` of a float16 copy of the model between float32 inputs and
    outputs; InstanceNorm stays float32 (its statistics over a 128 x 128 map lose too much
    in float16, as NVIDIA's AutoCast also keeps normalisations in float32)."""

    def __init__(self, model: EditorNet) -> None:
        super().__init__()
        self.net = ExportGraph(model.half())  # (not "graph": torch.fx modules have one)
        for module in model.modules():
            if isinstance(module, nn.InstanceNorm2d):
                module.float()
                module.register_forward_pre_hook(lambda m, args: (args[0].float(),))
                module.register_forward_hook(lambda m, args, out: out.half())

    def forward(self, image: Tensor, aus: Tensor, source_aus: Tensor) -> tuple[Tensor, ...]:
        return tuple(t.float() for t in self.net(image.half(), aus.half(), source_aus.half()))


def export_onnx_fp16(path: str | os.PathLike, model: EditorNet | None = None, *, opset: int = DEFAULT_OPSET) -> Path:
    """Write ``model`` (default: the bundled weights) as a float16 ONNX graph at ``path``:
    the graph of :func:`fastwarp.export.onnx.export_onnx` (same names, shapes, dynamic
    batch) with float16 weights and arithmetic, InstanceNorm in float32, float32 inputs and
    outputs (a ``Cast`` after each input and before each output). TensorRT 11 builds it as
    a strongly typed fp16 engine (:func:`build_engine`).

    Args:
        path: the ``.onnx`` file; written to a temporary file and renamed.
        model: a :class:`EditorNet` (copied; the caller's module is not changed).
        opset: 18 or 19 (torch.export's exporter; the TorchScript exporter of 16 and 17
            would run float16 kernels on the CPU to trace).

    Returns:
        The path written.

    Raises:
        ValueError: ``opset`` outside 18..19. ImportError: ``onnx`` or ``onnxscript`` missing.
    """
    import warnings

    from .onnx import _ReferenceWarp, _require

    check_opset(opset)
    if opset < 18:
        raise ValueError(f"the float16 graph needs opset 18 or 19 (torch.export's exporter), got {opset}")
    _require("onnx", "onnxscript")
    model = float_cpu_copy(model if model is not None else EditorNet.load())
    path = Path(path)
    with _ReferenceWarp(model) as m, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on its own internals
        inputs = example_inputs(m, 2)
        batch = torch.export.Dim("batch", min=1, max=1024)
        program = torch.onnx.export(_Float16Graph(m), inputs, dynamo=True, verbose=False, opset_version=opset,
                                    input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
                                    dynamic_shapes={name: {0: batch} for name in INPUT_NAMES})
        with atomic_path(path) as tmp:
            program.save(str(tmp))
    return path


def onnx_is_float16(path: str | os.PathLike) -> bool:
    """Whether the ONNX graph at ``path`` holds float16 weights (a graph of
    :func:`export_onnx_fp16`) rather than float32 ones only.

    Raises:
        FileNotFoundError: no such file. ValueError: not an ONNX model. ImportError: no ``onnx``.
    """
    from .onnx import _require

    _require("onnx")
    import onnx

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX file not found: {path}")
    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ValueError(f"{path} is not an ONNX model: {exc}") from exc
    return any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.initializer)


# --- build -------------------------------------------------------------------------------

def build_engine(onnx_path: str | os.PathLike, engine_path: str | os.PathLike, *,
                 max_batch: int = DEFAULT_MAX_BATCH, opt_batch: int = 1,
                 workspace_bytes: int | None = None) -> Path:
    """Build an fp16 TensorRT engine from ``onnx_path`` and write it to ``engine_path``.

    With ``BuilderFlag.FP16`` (TensorRT 10) the network is weakly typed and the flag set;
    without it (TensorRT 11) the network is strongly typed and takes its precision from the
    graph, which must then be float16 (:func:`export_onnx_fp16`; see :func:`precision_mode`).

    Args:
        onnx_path: a graph of :func:`fastwarp.export.onnx.export_onnx` (TensorRT 10) or
            :func:`export_onnx_fp16` (TensorRT 11); opset 16..19, dynamic batch
            (:func:`fastwarp.export.export_tensorrt` exports and checks it).
        engine_path: the serialized engine; written to a temporary file and renamed, so a
            failed build leaves nothing behind.
        max_batch: largest batch the engine accepts (its optimisation profile: 1..max_batch).
        opt_batch: the batch TensorRT tunes its kernels for (1: real-time video).
        workspace_bytes: limit of TensorRT's scratch memory (default: TensorRT's, the GPU's).

    Returns:
        ``engine_path``.

    Raises:
        TensorRTUnavailableError: no TensorRT 10+ or no CUDA GPU here.
        ValueError: bad batch sizes; a float32 graph for a strongly typed build; the parser
            rejected the graph; an input whose batch is fixed or whose other dimensions are
            dynamic.
        RuntimeError: TensorRT could not build the engine (with its logged errors).
    """
    if max_batch < 1:
        raise ValueError(f"max_batch must be at least 1, got {max_batch}")
    if not 1 <= opt_batch <= max_batch:
        raise ValueError(f"opt_batch must be in 1..max_batch ({max_batch}), got {opt_batch}")
    trt = _import_tensorrt()
    mode = precision_mode(trt)
    if mode == STRONGLY_TYPED and not onnx_is_float16(onnx_path):
        raise ValueError(f"TensorRT {trt.__version__} builds strongly typed networks (no BuilderFlag.FP16), which run "
                         f"in the graph's own types, and {onnx_path} is a float32 graph: export a float16 one "
                         "(fastwarp.export.tensorrt.export_onnx_fp16, or fastwarp export --format tensorrt without "
                         "--onnx)")
    logger = _logger(trt)
    builder = trt.Builder(logger)
    # TensorRT 10: explicit batch is the only mode, flags 0; 11: strongly typed.
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if mode == STRONGLY_TYPED else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ValueError(f"TensorRT's ONNX parser rejected {onnx_path}: " + ("; ".join(errors) or "no reason given"))

    config = builder.create_builder_config()
    if mode == FP16_FLAG:
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
    through the ONNX graph of :func:`export_onnx` (TensorRT 10, ``BuilderFlag.FP16``) or of
    :func:`export_onnx_fp16` (TensorRT 11, strongly typed; see this module).

    Args:
        path: the engine file; written to a temporary file and renamed, so a failed build
            leaves nothing behind.
        model: the :class:`FaceEditor` to export (not with ``onnx_path``).
        onnx_path: build from this existing ONNX file (checked with :func:`check_onnx_graph`)
            instead of exporting ``model``.
        opset: ONNX opset of the export, 16..19 (18..19 where the graph is float16).
        max_batch: the engine accepts batches 1..max_batch.
        opt_batch: the batch TensorRT tunes its kernels for.

    Returns:
        The path written.

    Raises:
        TensorRTUnavailableError: no TensorRT 10+ or no CUDA GPU here (the message names
            what is missing; checked before anything is exported).
        ValueError: bad arguments (opset, batch sizes, ``model`` with ``onnx_path``), an
            ONNX file TensorRT would misread, a float32 ``onnx_path`` for TensorRT 11, or a
            graph TensorRT's parser rejects.
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
    export = export_onnx_fp16 if precision_mode() == STRONGLY_TYPED else export_onnx
    with tempfile.TemporaryDirectory(prefix="fastwarp-trt-") as tmp:
        onnx_file = export(Path(tmp) / "editor.onnx", model, opset=opset)
        return build_engine(onnx_file, path, max_batch=max_batch, opt_batch=opt_batch)

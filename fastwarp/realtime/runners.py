"""Network runners of the real-time engine (:func:`make_network`): eager PyTorch, ONNX Runtime
on the exported graph (cached on disk), a CUDA graph or ``torch.compile`` on a GPU, a
TensorRT engine on a GPU (built once into a cache from the exported graph, or given), and
``"auto"``, which on a CPU times the candidates on the stream's first faces and keeps the
faster, and on a GPU takes TensorRT where it is installed, else torch.
Every runner returns the flow, texture and mask; ``warp_blend`` stays fastwarp's kernel."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..au import AU_NAMES
from ..expression_editor import Maps, Network, TorchNetwork, default_device
from ..models import WEIGHTS_DIR, EditorNet

__all__ = ["OnnxNetwork", "CudaGraphNetwork", "CompiledNetwork", "TensorRTNetwork", "AutoNetwork", "make_network",
           "RuntimeChoice", "default_weights", "select_runtime", "engine_cache_name", "cached_engine", "RUNTIMES",
           "GPU_GRAPHS", "ENGINE_BATCH"]


RUNTIMES = ("auto", "torch", "onnx", "tensorrt")
#: The batch profile (min, opt, max) of the engines the real-time engine builds: it runs
#: batch 1 (one call per face); a few more are allowed for callers that batch faces.
ENGINE_BATCH = (1, 1, 4)
#: How the GPU runner removes launch overhead: a captured CUDA graph, torch.compile's
#: "reduce-overhead" mode (CUDA graphs through Inductor), or nothing (eager).
GPU_GRAPHS = ("cuda-graph", "compile", "none")


def default_weights(device: str | torch.device | None = None) -> str:
    """The engine's default weights: ``"lite"`` on the CPU when
    ``fastwarp/weights/lite.safetensors`` is installed (a network narrow enough for real
    time on a CPU), else ``"base"``."""
    dev = torch.device(device or default_device())
    return "lite" if dev.type == "cpu" and (WEIGHTS_DIR / "lite.safetensors").is_file() else "base"


def _cache_dir() -> Path:
    if os.environ.get("FASTWARP_CACHE_DIR"):
        return Path(os.environ["FASTWARP_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "fastwarp"


def _model_digest(model: EditorNet) -> str:
    h = hashlib.sha256(json.dumps(asdict(model.config), sort_keys=True, default=str).encode())
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:20]


class OnnxNetwork:
    """The editor networks in ONNX Runtime (CPU), from :func:`fastwarp.export.export_onnx`.

    The graph is exported once per model (a digest of its config and weights, the opset,
    torch's version) into ``cache_dir`` and reused; only its ``flow``, ``texture`` and
    ``mask`` outputs are used (the engine blends at crop resolution with
    :func:`fastwarp.warp_blend`).

    Args:
        model: the :class:`~fastwarp.models.EditorNet` to export (not modified).
        cache_dir: where exported graphs are kept (default ``$FASTWARP_CACHE_DIR/onnx``,
            else ``$XDG_CACHE_HOME/fastwarp/onnx`` or ``~/.cache/fastwarp/onnx``).
        threads: ONNX Runtime's intra-op threads (default torch's thread count).
        opset: 17 (default: TorchScript exporter, under a second) or 18/19 (torch.export,
            several seconds).
    Raises:
        ImportError: onnx, onnxscript or onnxruntime missing; OSError: the cache cannot be
            written.
    """

    name = "onnx"

    def __init__(self, model: EditorNet, *, cache_dir: str | os.PathLike | None = None, threads: int | None = None,
                 opset: int = 17) -> None:
        import importlib.util

        missing = [m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None]
        if missing:
            raise ImportError(f"runtime 'onnx' needs {', '.join(missing)}: pip install -r requirements.txt")
        import onnxruntime as ort

        from ..export.onnx import export_onnx

        self.size = model.config.image_size
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        folder = Path(cache_dir) if cache_dir is not None else _cache_dir() / "onnx"
        self.path = folder / f"editor-{_model_digest(model)}-opset{opset}-torch{torch.__version__.split('+')[0]}.onnx"
        if not self.path.is_file():
            export_onnx(self.path, model, opset=opset)
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or torch.get_num_threads())
        options.inter_op_num_threads = 1
        # Idle intra-op threads sleep instead of spinning: the decode, encode and landmark
        # work shares the cores with them.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])

    def __call__(self, image: Tensor, target_aus: Tensor, current_aus: Tensor) -> Maps:
        feed = {"image": image.detach().float().cpu().numpy(), "aus": target_aus.detach().float().cpu().numpy(),
                "source_aus": current_aus.detach().float().cpu().numpy()}
        flow, texture, mask = self.session.run(["flow", "texture", "mask"], feed)
        return Maps(torch.from_numpy(flow), torch.from_numpy(texture), torch.from_numpy(mask))

    def __repr__(self) -> str:
        return f"OnnxNetwork({self.path.name}, threads={self.session.get_session_options().intra_op_num_threads})"


class CudaGraphNetwork:
    """Batch-1 GPU runner: :class:`~fastwarp.expression_editor.TorchNetwork` (float16 and channels_last
    by default) captured once into a CUDA graph and replayed per frame, so a frame costs
    one graph launch instead of a few hundred kernel launches.

    The returned :class:`~fastwarp.expression_editor.Maps` are the graph's static output buffers:
    the next call overwrites them (the engine blends them before the next call). Other
    batch sizes run eagerly.

    Raises:
        RuntimeError: no CUDA model, or the capture failed (the engine then runs eagerly
            and says why).
    """

    name = "torch-cuda-graph"

    def __init__(self, model: EditorNet, *, dtype: torch.dtype = torch.float16, channels_last: bool = True,
                 warmup: int = 3) -> None:
        self.eager = TorchNetwork(model, dtype=dtype, channels_last=channels_last)
        self.device, self.dtype, self.size = self.eager.device, self.eager.dtype, self.eager.size
        if self.device.type != "cuda":
            raise RuntimeError(f"CUDA graphs need the model on a GPU, got {self.device}")
        s, n = self.size, len(AU_NAMES)
        self._image = torch.zeros(1, 3, s, s, device=self.device, dtype=self.dtype).contiguous(
            memory_format=self.eager.memory_format)
        self._target = torch.zeros(1, n, device=self.device, dtype=self.dtype)
        self._current = torch.zeros(1, n, device=self.device, dtype=self.dtype)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side), torch.no_grad():
            for _ in range(warmup):  # lazy initialisation (cuDNN plans, allocator) off the graph
                self.eager(self._image, self._target, self._current)
        torch.cuda.current_stream(self.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(self.graph):
            self._out = self.eager(self._image, self._target, self._current)

    def __call__(self, image: Tensor, target_aus: Tensor, current_aus: Tensor) -> Maps:
        if image.shape != self._image.shape:
            return self.eager(image, target_aus, current_aus)
        self._image.copy_(image)
        self._target.copy_(target_aus)
        self._current.copy_(current_aus)
        self.graph.replay()
        return self._out

    def __repr__(self) -> str:
        return f"CudaGraphNetwork(device={self.device}, dtype={self.dtype}, memory_format={self.eager.memory_format})"


class CompiledNetwork:
    """GPU runner through ``torch.compile(mode="reduce-overhead")`` (Inductor kernels
    replayed as CUDA graphs) of a float16, channels_last :class:`~fastwarp.expression_editor.TorchNetwork`.
    The first calls compile (seconds to minutes). Outputs are overwritten by the next call."""

    name = "torch-compile"

    def __init__(self, model: EditorNet, *, dtype: torch.dtype = torch.float16, channels_last: bool = True) -> None:
        self.eager = TorchNetwork(model, dtype=dtype, channels_last=channels_last)
        self.device, self.dtype, self.size = self.eager.device, self.eager.dtype, self.eager.size
        self._compiled = torch.compile(self.eager.model, mode="reduce-overhead", dynamic=False)

    @torch.no_grad()
    def __call__(self, image: Tensor, target_aus: Tensor, current_aus: Tensor) -> Maps:
        torch.compiler.cudagraph_mark_step_begin()
        image = image.to(self.dtype).contiguous(memory_format=self.eager.memory_format)
        r = self._compiled(image, target_aus.to(self.dtype), current_aus.to(self.dtype))
        return Maps(r.flow, r.texture, r.mask)

    def __repr__(self) -> str:
        return f"CompiledNetwork(device={self.device}, dtype={self.dtype}, mode='reduce-overhead')"


def engine_cache_name(digest: str, gpu_name: str, tensorrt_version: str, *, image_size: int,
                      batch: tuple[int, int, int] = ENGINE_BATCH, opset: int = 18) -> str:
    """The file name of a cached TensorRT engine: everything an engine depends on, so a
    change of any of them builds a new one. An engine runs only on the GPU model and the
    TensorRT version that built it.

    Args:
        digest: the weights' digest (:func:`_model_digest`: config and every tensor).
        gpu_name: ``torch.cuda.get_device_name()``, e.g. ``"NVIDIA H200"``.
        tensorrt_version: e.g. ``"11.4.0.106"`` (also decides the precision mode).
        image_size: the networks' input side S; batch: the profile (min, opt, max);
        opset: the ONNX graph's opset.
    Returns:
        e.g. ``"editor-<digest>-nvidia-h200-trt11.4.0.106-s128-b1.1.4-opset18.engine"``.
    """
    gpu = re.sub(r"[^a-z0-9]+", "-", gpu_name.lower()).strip("-") or "gpu"
    version = re.sub(r"[^A-Za-z0-9.]+", "-", tensorrt_version)
    low, opt, high = batch
    return f"editor-{digest}-{gpu}-trt{version}-s{image_size}-b{low}.{opt}.{high}-opset{opset}.engine"


def cached_engine(model: EditorNet, cache_dir: str | os.PathLike | None = None, *,
                  batch: tuple[int, int, int] = ENGINE_BATCH, opset: int = 18) -> Path:
    """The TensorRT engine of ``model`` for this GPU and TensorRT, built once into
    ``cache_dir`` (from :func:`fastwarp.export.export_onnx`'s graph with TensorRT 10, or
    :func:`fastwarp.export.tensorrt.export_onnx_fp16`'s with TensorRT 11; see
    :func:`fastwarp.export.tensorrt.build_engine`) and reused. The engine is written to a
    temporary file beside its name and renamed when complete, so a failed or interrupted
    build, or two processes building at once, never leave a partial engine under the name.

    Args:
        model: the :class:`~fastwarp.models.EditorNet` on a CUDA device (not modified).
        cache_dir: default ``$FASTWARP_CACHE_DIR/tensorrt``, else
            ``$XDG_CACHE_HOME/fastwarp/tensorrt`` or ``~/.cache/fastwarp/tensorrt``.
        batch: the engine's batch profile (min, opt, max); min must be 1.
        opset: the ONNX graph's opset (18 or 19).
    Returns:
        The engine's path (:func:`engine_cache_name` in ``cache_dir``).
    Raises:
        TensorRTUnavailableError: no TensorRT 10+ or no CUDA GPU here. ValueError: a
        ``batch`` without min 1 or with opt outside 1..max, or the parser rejected the graph.
        RuntimeError: TensorRT could not build the engine. OSError: the cache cannot be written.
    """
    from .._io import atomic_path
    from ..export import tensorrt as fw_trt
    from ..export.onnx import export_onnx

    if batch[0] != 1:
        raise ValueError(f"the engine's batch profile must start at 1, got {batch}")
    device = next(model.parameters()).device
    version = fw_trt.tensorrt_version()
    gpu = torch.cuda.get_device_name(device)
    folder = Path(cache_dir) if cache_dir is not None else _cache_dir() / "tensorrt"
    path = folder / engine_cache_name(_model_digest(model), gpu, version, image_size=model.config.image_size,
                                      batch=batch, opset=opset)
    if path.is_file():
        return path
    export = fw_trt.export_onnx_fp16 if fw_trt.precision_mode() == fw_trt.STRONGLY_TYPED else export_onnx
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".onnx-", dir=folder) as tmp:
        onnx_file = export(Path(tmp) / "editor.onnx", model, opset=opset)
        with atomic_path(path) as partial:
            fw_trt.build_engine(onnx_file, partial, max_batch=batch[2], opt_batch=batch[1])
    return path


class TensorRTNetwork:
    """GPU runner: the editor networks as a TensorRT engine
    (:class:`fastwarp.export.tensorrt.TensorRTRunner`, fp16 inside, float32 in and out),
    either ``engine`` or the one :func:`cached_engine` builds once for this GPU and
    TensorRT. Only the engine's ``flow``, ``texture`` and ``mask`` are used: the engine
    blends the crop with :func:`fastwarp.warp_blend` itself, as with every runner.

    Args:
        model: the :class:`~fastwarp.models.EditorNet` on a CUDA device (its digest keys
            the cache; not modified).
        engine: a serialized engine of this model (``fastwarp export --format tensorrt``),
            built on this GPU model with this TensorRT version; default: the cached one.
        cache_dir: where built engines are kept (see :func:`cached_engine`).
    Call: ``(image [N, 3, S, S], target_aus [N, 17], current_aus [N, 17])`` on the GPU ->
        :class:`~fastwarp.expression_editor.Maps`, float32 on the GPU, new tensors per
        call, queued on the current CUDA stream.
    Raises:
        TensorRTUnavailableError: no TensorRT 10+ or no CUDA GPU here. ValueError: the
        model is not on a GPU; ``engine`` is not a fastwarp engine this TensorRT loads, or
        its input side differs from the model's. FileNotFoundError: no ``engine`` file.
        RuntimeError: the build failed.
    """

    name = "tensorrt"

    def __init__(self, model: EditorNet, *, engine: str | os.PathLike | None = None,
                 cache_dir: str | os.PathLike | None = None) -> None:
        from ..export.tensorrt import TensorRTRunner

        self.device = next(model.parameters()).device
        if self.device.type != "cuda":
            raise ValueError(f"runtime='tensorrt' runs on a CUDA GPU, but the model is on {self.device}: "
                             "use device='cuda'")
        self.size, self.dtype = model.config.image_size, torch.float32
        self.path = Path(engine) if engine is not None else cached_engine(model, cache_dir)
        self.runner = TensorRTRunner(self.path, self.device)
        if self.runner.image_size != self.size:
            raise ValueError(f"the TensorRT engine {self.path} takes {self.runner.image_size} px images, the model "
                             f"{self.size} px: build it from these weights (fastwarp export --format tensorrt)")

    def __call__(self, image: Tensor, target_aus: Tensor, current_aus: Tensor) -> Maps:
        out = self.runner(image, target_aus, current_aus)
        return Maps(out.flow, out.texture, out.mask)

    def __repr__(self) -> str:
        return f"TensorRTNetwork({self.path.name}, device={self.device})"


@dataclass
class RuntimeChoice:
    """Which network runner the engine uses and why.

    Attributes:
        runtime: ``"torch"``, ``"onnx"``, ``"tensorrt"`` or ``"mesh"`` (the mesh path: no
            editor network runs).
        runner: the runner's name (``torch``, ``torch-cuda-graph``, ``torch-compile``, ``onnx``,
            ``tensorrt``).
        reason: one sentence, e.g. the start-up timings that decided ``auto``.
        measured_ms: median milliseconds per batch-1 call of each runtime timed (``auto``).
    """

    runtime: str
    runner: str
    reason: str
    measured_ms: dict[str, float] = field(default_factory=dict)


def _materialise(maps: Maps) -> None:
    if maps.flow.device.type == "cuda":
        torch.cuda.synchronize(maps.flow.device)


def _warm_up(network: Network, size: int, device: torch.device, calls: int = 2) -> None:
    """A few calls on random input: first-call costs (allocations, plans) out of the way."""
    gen = torch.Generator().manual_seed(0)
    image = (torch.rand(1, 3, size, size, generator=gen) * 2 - 1).to(device)
    aus = (torch.rand(1, len(AU_NAMES), generator=gen) * 5).to(device)
    for _ in range(calls):
        _materialise(network(image, aus, aus.flip(1)))


class AutoNetwork:
    """``runtime="auto"``: runs its candidate runners in turn on the first frames of the
    stream, ``trial_calls`` calls each, then keeps the one with the smallest median time.

    Timing them on real frames, in the running pipeline, measures what matters: how the
    runtimes behave while decoding, landmarks and encoding share the cores (torch's
    OpenMP threads suffer more than ONNX Runtime's from other busy threads). The decision
    and the timings are written into ``choice`` (the engine's :class:`RuntimeChoice`).
    """

    name = "auto"

    def __init__(self, candidates: dict[str, Network], choice: "RuntimeChoice", trial_calls: int = 4) -> None:
        if trial_calls < 1:
            raise ValueError(f"trial_calls must be >= 1, got {trial_calls}")
        self.candidates, self.choice, self.trial_calls = dict(candidates), choice, int(trial_calls)
        self.times: dict[str, list[float]] = {k: [] for k in self.candidates}
        self.chosen: Network | None = None
        first = next(iter(self.candidates.values()))
        self.device, self.dtype, self.size = first.device, first.dtype, first.size
        self._calls = 0

    def __call__(self, image: Tensor, target_aus: Tensor, current_aus: Tensor) -> Maps:
        if self.chosen is not None:
            return self.chosen(image, target_aus, current_aus)
        names = list(self.candidates)
        name = names[self._calls % len(names)]
        self._calls += 1
        t0 = time.perf_counter()
        maps = self.candidates[name](image, target_aus, current_aus)
        _materialise(maps)
        self.times[name].append((time.perf_counter() - t0) * 1e3)
        if all(len(t) >= self.trial_calls for t in self.times.values()):
            self._decide()
        return maps

    def _decide(self) -> None:
        ms = {k: float(np.median(v)) for k, v in self.times.items()}
        best = min(ms, key=ms.get)
        others = ", ".join(f"{k} {v:.1f} ms" for k, v in ms.items() if k != best)
        self.chosen = self.candidates[best]
        self.choice.runtime = self.choice.runner = best
        self.choice.measured_ms = ms
        self.choice.reason = (f"CPU, runtime='auto': {best} {ms[best]:.1f} ms vs {others} per batch-1 call (median "
                              f"of {self.trial_calls} calls each on the stream's first faces), kept {best}")

    def __repr__(self) -> str:
        return f"AutoNetwork({', '.join(self.candidates)}; chosen: {self.choice.runner})"


def select_runtime(runtime: str, device: torch.device | str, *, engine: str | os.PathLike | None = None
                   ) -> tuple[str, str]:
    """Which runtime :func:`make_network` runs for ``runtime`` on ``device``, and why.

    - ``"tensorrt"`` (or any ``runtime`` with an ``engine``, which only ``"auto"`` and
      ``"tensorrt"`` accept): needs the ``tensorrt`` package and a CUDA GPU, and the model
      on that GPU;
    - ``"auto"``: on a GPU, ``"tensorrt"`` where TensorRT is installed, else ``"torch"``;
      on the CPU ``"auto"`` (torch and ONNX Runtime timed on the first faces);
    - ``"torch"``; ``"onnx"`` (CPU only).

    Does not import TensorRT.

    Returns:
        ``(runtime, why)``: one of ``"tensorrt"``, ``"torch"``, ``"onnx"``, ``"auto"``, and
        one clause saying why.
    Raises:
        ValueError: unknown ``runtime``; an ``engine`` with ``"torch"`` or ``"onnx"``;
            ``"onnx"`` on a GPU; ``"tensorrt"`` with the model on the CPU of a machine with a GPU.
        TensorRTUnavailableError: ``"tensorrt"`` where the ``tensorrt`` package or a CUDA GPU
            is missing (the message names which).
    """
    from ..export.tensorrt import TensorRTUnavailableError, missing_requirements

    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    device = torch.device(device)
    if engine is not None:
        if runtime not in ("auto", "tensorrt"):
            raise ValueError(f"a TensorRT engine ({engine}) runs with runtime='tensorrt', not runtime={runtime!r}")
        runtime = "tensorrt"
    if runtime == "tensorrt":
        missing = missing_requirements()
        if missing:
            raise TensorRTUnavailableError(
                f"runtime='tensorrt' needs NVIDIA TensorRT 10 or 11 and a CUDA GPU; missing here: "
                f"{' and '.join(missing)} (install tensorrt-cu12 or tensorrt-cu13 on a GPU machine, or use "
                "runtime='torch')")
        if device.type != "cuda":
            raise ValueError(f"runtime='tensorrt' runs on a CUDA GPU, but the model is on {device}: use device='cuda'")
        return "tensorrt", f"runtime='tensorrt'{' with the given engine' if engine is not None else ''}"
    if device.type == "cuda":
        if runtime == "onnx":
            raise ValueError("runtime='onnx' runs ONNX Runtime on the CPU: use device='cpu', or runtime='torch' "
                             "on the GPU")
        if runtime == "auto":
            missing = missing_requirements()
            if not missing:
                return "tensorrt", "runtime='auto' takes TensorRT on a GPU where it is installed"
            return "torch", f"runtime='auto' takes torch on a GPU without TensorRT ({' and '.join(missing)} missing)"
        return "torch", "runtime='torch'"
    return runtime, f"runtime={runtime!r}"


def make_network(model: EditorNet, runtime: str = "auto", *, half: bool | None = None,
                 channels_last: bool | None = None, gpu_graph: str = "cuda-graph",
                 onnx_cache: str | os.PathLike | None = None, trial_calls: int = 4,
                 engine: str | os.PathLike | None = None,
                 engine_cache: str | os.PathLike | None = None) -> tuple[Network, RuntimeChoice]:
    """The batch-1 network runner for ``model`` (on its device) and why it was chosen
    (:func:`select_runtime` decides which runtime).

    - CPU: ``"torch"`` eager float32; ``"onnx"`` :class:`OnnxNetwork`; ``"auto"`` an
      :class:`AutoNetwork` that times both on the first ``trial_calls`` faces each and then
      keeps the faster (the returned :class:`RuntimeChoice` says ``"auto"`` until then);
      where ONNX Runtime cannot run, torch, saying why.
    - GPU: ``"tensorrt"`` a :class:`TensorRTNetwork` (``engine``, or one built once into
      ``engine_cache``); ``"auto"`` the same where TensorRT is installed, falling back to
      torch, saying why, where the engine cannot be built or loaded; ``"torch"`` (and
      ``"auto"`` without TensorRT) run float16 (``half``, default on) channels_last
      (default on) under ``gpu_graph``: a captured CUDA graph (:class:`CudaGraphNetwork`),
      ``torch.compile(mode="reduce-overhead")`` (:class:`CompiledNetwork`) or ``"none"``
      (eager); a capture that fails falls back to eager, saying why. ``"onnx"`` is CPU only.

    Raises:
        ValueError: unknown ``runtime`` / ``gpu_graph``, ``"onnx"`` with a GPU model,
            ``"tensorrt"`` with a CPU model, an ``engine`` with ``"torch"``/``"onnx"``, a bad
            engine file.
        TensorRTUnavailableError: ``"tensorrt"`` without TensorRT or without a CUDA GPU.
        FileNotFoundError: no ``engine`` file. RuntimeError: ``"tensorrt"``'s build failed.
        ImportError: ``"onnx"`` without onnx / onnxruntime installed.
    """
    if gpu_graph not in GPU_GRAPHS:
        raise ValueError(f"gpu_graph must be one of {', '.join(GPU_GRAPHS)}, got {gpu_graph!r}")
    device = next(model.parameters()).device
    requested = runtime
    runtime, why = select_runtime(runtime, device, engine=engine)
    size = model.config.image_size
    fallback = ""
    if runtime == "tensorrt":
        try:
            trt_net = TensorRTNetwork(model, engine=engine, cache_dir=engine_cache)
        except Exception as exc:  # with runtime='auto' a failed build must not stop the video
            if requested == "tensorrt" or engine is not None:
                raise
            fallback = (f"; TensorRT failed ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''}), so torch")
        else:
            return trt_net, RuntimeChoice("tensorrt", "tensorrt", f"GPU: TensorRT engine {trt_net.path.name}, fp16, "
                                          f"batch 1 ({why}); warp_blend is fastwarp's kernel")
    if device.type == "cuda":
        dtype = torch.float16 if half is None or half else torch.float32
        cl = True if channels_last is None else channels_last
        what = f"{str(dtype).removeprefix('torch.')}{' channels_last' if cl else ''}"
        if gpu_graph == "none":
            return TorchNetwork(model, dtype=dtype, channels_last=cl), RuntimeChoice(
                "torch", "torch", f"GPU: eager torch, {what}, batch 1 (gpu_graph='none'; {why}{fallback})")
        try:
            runner = (CudaGraphNetwork if gpu_graph == "cuda-graph" else CompiledNetwork)(
                model, dtype=dtype, channels_last=cl)
        except Exception as exc:  # a capture that fails must not stop the video
            return TorchNetwork(model, dtype=dtype, channels_last=cl), RuntimeChoice(
                "torch", "torch", f"GPU: eager torch, {what}, batch 1 ({gpu_graph} failed: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}; {why}{fallback})")
        return runner, RuntimeChoice("torch", runner.name, f"GPU: torch {what} batch 1 under {gpu_graph} "
                                     f"({why}{fallback})")

    if half:
        raise ValueError("half=True needs a GPU: float16 convolutions on the CPU are slower than float32")
    if runtime == "torch":
        return TorchNetwork(model), RuntimeChoice("torch", "torch", "CPU: eager torch float32 (runtime='torch')")
    if runtime == "onnx":
        net = OnnxNetwork(model, cache_dir=onnx_cache)
        return net, RuntimeChoice("onnx", "onnx", "CPU: ONNX Runtime (runtime='onnx')")
    eager = TorchNetwork(model)
    try:
        onnx_net = OnnxNetwork(model, cache_dir=onnx_cache)
    except Exception as exc:  # ImportError, or an export that fails: torch still works
        return eager, RuntimeChoice("torch", "torch", f"CPU: torch (ONNX Runtime unavailable: "
                                    f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")
    with torch.no_grad():
        for net in (eager, onnx_net):
            _warm_up(net, size, device)
    choice = RuntimeChoice("auto", "auto", f"CPU, runtime='auto': torch and onnx not yet timed (the first "
                           f"{trial_calls} faces of a stream each decide)")
    return AutoNetwork({"torch": eager, "onnx": onnx_net}, choice, trial_calls), choice

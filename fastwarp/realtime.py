"""Real-time expression editing of a camera or a video stream.

The pipeline (DESIGN.md, "Data flow"), one frame at a time, batch 1::

    decode thread      main thread                                                encode thread
    VideoCapture.read  -> landmarks -> smoothing -> crop -> model -> blend -> paste -> VideoWriter,
          (bounded queue)                                             (bounded queue)  virtual camera

Decoding and encoding run on their own threads behind bounded queues, so the main thread
only edits (on a GPU the landmarks get a thread of their own too, so the CPU's share of
one frame overlaps the GPU's share of the previous one). The editing steps are :class:`fastwarp.editor.ExpressionEditor`'s (the photo
path's own code); this module adds:

- **Landmark smoothing** with the One Euro filter (Casiez, Roussel, Vogel, "1€ Filter: A
  Simple Speed-based Low-pass Filter for Noisy Input in Interactive Systems", CHI 2012):
  a first-order low-pass whose cutoff rises with the landmarks' speed, so a still face
  does not jitter and a moving one does not lag. The crop, the AU estimate and the
  paste-back mask all come from the smoothed landmarks. Each face is a track; a track
  ends (and its filter starts afresh) when its face is lost or jumps.
- **Network runners** (:func:`make_network`): eager PyTorch; on a GPU float16 +
  channels_last under a CUDA graph (or ``torch.compile(mode="reduce-overhead")``); on the
  CPU also ONNX Runtime on :func:`fastwarp.export.export_onnx`'s graph (cached on disk).
  The networks' flow, texture and mask are applied at crop resolution by
  :func:`fastwarp.warp_blend` in every case. ``runtime="auto"`` runs torch and ONNX
  Runtime in turn on the first faces of the stream and keeps the faster
  (:attr:`RealtimeStats.runtime_reason` says which and why).
- **Per-stage timings** (:class:`RealtimeStats`): decode, landmarks, crop, model, blend,
  paste, encode, and the latency from a decoded frame to its encoded output; mean, p50
  and p95 in milliseconds, and end-to-end frames per second.
- **Robustness**: a frame with no face passes through unchanged; with several faces the
  largest is edited, or each with ``all_faces=True``; a camera that stops delivering
  frames, or a file that cannot be decoded to its end, stops the run with one message
  (:attr:`RealtimeStats.error`) after the frames already processed have been written.

Example::

    from fastwarp.au import parse_au_edit
    from fastwarp.realtime import RealtimeEngine, VideoSource, VideoFileSink

    with RealtimeEngine([parse_au_edit("AU12=3")]) as engine, VideoSource(0) as camera:
        sink = VideoFileSink("out.mp4", camera.fps, (camera.width, camera.height))
        stats = engine.run(camera, [sink], max_frames=300)
        sink.close()  # finalises the file
    print(stats.format())
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import queue
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import cv2
import numpy as np
import torch
from torch import Tensor

from .au import AU_INDEX, AU_MAX, AU_NAMES, normalize_au_name
from .editor import AUEdit, ExpressionEditor, Maps, Network, TorchNetwork, default_device
from .face import FaceCrop
from .face.landmarks import LEFT_EYE_OUTER, RIGHT_EYE_OUTER
from .models import WEIGHTS_DIR, FaceEditor

__all__ = [
    "RealtimeEngine", "RealtimeStats", "StageStats", "FrameResult", "FaceResult", "OneEuroFilter", "FaceTracker",
    "OnnxNetwork", "CudaGraphNetwork", "CompiledNetwork", "AutoNetwork", "make_network", "RuntimeChoice",
    "default_weights", "VideoSource", "VideoFileSink", "VirtualCamSink", "LiveControls", "StreamError", "SinkError",
    "FrameSizeError", "STAGES", "RUNTIMES", "GPU_GRAPHS",
]

#: Per-frame stages, in pipeline order (``latency``: from a frame's decoding to its encoding).
STAGES = ("decode", "landmarks", "crop", "model", "blend", "paste", "encode", "latency")
RUNTIMES = ("auto", "torch", "onnx")
#: How the GPU runner removes launch overhead: a captured CUDA graph, torch.compile's
#: "reduce-overhead" mode (CUDA graphs through Inductor), or nothing (eager).
GPU_GRAPHS = ("cuda-graph", "compile", "none")


class StreamError(RuntimeError):
    """The video source failed mid-stream (camera disconnected, file truncated or corrupt),
    or could not be opened; the message names the source and what happened."""


class SinkError(RuntimeError):
    """An output (video file, virtual camera) could not be opened or written."""


class FrameSizeError(ValueError):
    """A frame of a stream differs in size from the stream's first frame."""


def default_weights(device: str | torch.device | None = None) -> str:
    """The engine's default weights: ``"lite"`` on the CPU when
    ``fastwarp/weights/lite.safetensors`` is installed (a network narrow enough for real
    time on a CPU), else ``"base"``."""
    dev = torch.device(device or default_device())
    return "lite" if dev.type == "cpu" and (WEIGHTS_DIR / "lite.safetensors").is_file() else "base"


# --- One Euro filter and face tracks ----------------------------------------------------

class OneEuroFilter:
    """The One Euro filter (Casiez et al., CHI 2012) over arrays, element-wise.

    Each element is low-passed with ``alpha = 1 / (1 + tau / Te)``, ``tau = 1 / (2 pi
    fc)``, ``Te`` the time since the previous sample, and a cutoff that grows with the
    element's speed: ``fc = min_cutoff + beta * |dx_hat| / scale``, where ``dx_hat`` is the
    derivative ``(x - x_hat_prev) / Te`` low-passed at ``d_cutoff``. The first sample (and
    the first after :meth:`reset`) passes through unchanged.

    Args:
        min_cutoff: cutoff in Hz when still (lower: less jitter, more lag at rest), > 0.
        beta: cutoff gain per unit of speed (units of ``x / scale`` per second), >= 0;
            higher: less lag when moving.
        d_cutoff: cutoff of the derivative's low-pass, Hz, > 0.
    Raises:
        ValueError: a parameter outside its range.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0) -> None:
        if not min_cutoff > 0 or not d_cutoff > 0 or not beta >= 0:
            raise ValueError(f"OneEuroFilter needs min_cutoff > 0, d_cutoff > 0, beta >= 0; got "
                             f"min_cutoff={min_cutoff}, beta={beta}, d_cutoff={d_cutoff}")
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self.reset()

    def reset(self) -> None:
        """Forget the past: the next sample passes through unchanged."""
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    @staticmethod
    def _alpha(cutoff, te: float):
        tau = 1.0 / (2.0 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / te)

    def __call__(self, x: np.ndarray, t: float, scale: float = 1.0) -> np.ndarray:
        """Filter one sample.

        Args:
            x: the sample, any shape (the same every call), float.
            t: its time in seconds (increasing; a repeated time returns the previous output).
            scale: the unit speeds are measured in (e.g. the face's inter-ocular distance in
                pixels, so ``beta`` does not depend on the face's size in the image), > 0.
        Returns:
            The filtered sample, float64, ``x``'s shape.
        """
        x = np.asarray(x, np.float64)
        if self._x is None or self._x.shape != x.shape:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), float(t)
            return self._x.copy()
        te = float(t) - self._t
        if te <= 0:
            return self._x.copy()
        dx = (x - self._x) / te
        self._dx = self._dx + self._alpha(self.d_cutoff, te) * (dx - self._dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx) / scale
        self._x = self._x + self._alpha(cutoff, te) * (x - self._x)
        self._t = float(t)
        return self._x.copy()


def _iod(landmarks: np.ndarray) -> float:
    return float(np.linalg.norm(landmarks[LEFT_EYE_OUTER, :2] - landmarks[RIGHT_EYE_OUTER, :2])) or 1.0


@dataclass
class _Track:
    id: int
    filter: OneEuroFilter
    last: np.ndarray


class FaceTracker:
    """Face tracks across frames, each with its own :class:`OneEuroFilter` on the landmarks.

    A detection continues the track whose previous (smoothed) eye-corner midpoint lies
    nearest, within ``max_jump`` inter-ocular distances; otherwise it starts a new track
    (its first landmarks pass through unsmoothed). Tracks with no detection in a frame end,
    so a face that leaves and re-enters starts afresh.

    Args:
        min_cutoff, beta, d_cutoff: the filter's parameters (speed in inter-ocular
            distances per second); see :class:`OneEuroFilter`.
        max_jump: the farthest a face may move between frames and stay the same track, in
            inter-ocular distances.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 20.0, d_cutoff: float = 1.0,
                 max_jump: float = 0.5) -> None:
        self.params = dict(min_cutoff=min_cutoff, beta=beta, d_cutoff=d_cutoff)
        OneEuroFilter(**self.params)  # validate now
        self.max_jump = float(max_jump)
        self._tracks: list[_Track] = []
        self._next_id = 0

    def reset(self) -> None:
        """End every track."""
        self._tracks = []

    @staticmethod
    def _centre(lm: np.ndarray) -> np.ndarray:
        return 0.5 * (lm[LEFT_EYE_OUTER, :2] + lm[RIGHT_EYE_OUTER, :2])

    def update(self, faces: Sequence[np.ndarray], t: float) -> list[tuple[int, np.ndarray, bool]]:
        """Smooth this frame's faces.

        Args:
            faces: ``[478, 3]`` landmark arrays in frame pixels (any order).
            t: the frame's time in seconds.
        Returns:
            For each face, in the given order: ``(track id, smoothed float32 [478, 3],
            new)``, ``new`` true where the face started a track (unsmoothed).
        """
        pairs = []
        for i, lm in enumerate(faces):
            for j, tr in enumerate(self._tracks):
                d = np.linalg.norm(self._centre(lm) - self._centre(tr.last)) / _iod(tr.last)
                if d <= self.max_jump:
                    pairs.append((d, i, j))
        pairs.sort()
        taken_faces: dict[int, int] = {}
        taken_tracks: set[int] = set()
        for _, i, j in pairs:
            if i not in taken_faces and j not in taken_tracks:
                taken_faces[i] = j
                taken_tracks.add(j)
        out, tracks = [], []
        for i, lm in enumerate(faces):
            new = i not in taken_faces
            if new:
                tr = _Track(self._next_id, OneEuroFilter(**self.params), lm)
                self._next_id += 1
            else:
                tr = self._tracks[taken_faces[i]]
            smoothed = tr.filter(lm, t, scale=_iod(lm)).astype(np.float32)
            tr.last = smoothed
            tracks.append(tr)
            out.append((tr.id, smoothed, new))
        self._tracks = tracks
        return out


# --- network runners --------------------------------------------------------------------

def _cache_dir() -> Path:
    if os.environ.get("FASTWARP_CACHE_DIR"):
        return Path(os.environ["FASTWARP_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "fastwarp"


def _model_digest(model: FaceEditor) -> str:
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
        model: the :class:`~fastwarp.models.FaceEditor` to export (not modified).
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

    def __init__(self, model: FaceEditor, *, cache_dir: str | os.PathLike | None = None, threads: int | None = None,
                 opset: int = 17) -> None:
        import importlib.util

        missing = [m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None]
        if missing:
            raise ImportError(f"runtime 'onnx' needs {', '.join(missing)}: pip install -r requirements.txt")
        import onnxruntime as ort

        from .export import export_onnx

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
    """Batch-1 GPU runner: :class:`~fastwarp.editor.TorchNetwork` (float16 and channels_last
    by default) captured once into a CUDA graph and replayed per frame, so a frame costs
    one graph launch instead of a few hundred kernel launches.

    The returned :class:`~fastwarp.editor.Maps` are the graph's static output buffers:
    the next call overwrites them (the engine blends them before the next call). Other
    batch sizes run eagerly.

    Raises:
        RuntimeError: no CUDA model, or the capture failed (the engine then runs eagerly
            and says why).
    """

    name = "torch-cuda-graph"

    def __init__(self, model: FaceEditor, *, dtype: torch.dtype = torch.float16, channels_last: bool = True,
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
    replayed as CUDA graphs) of a float16, channels_last :class:`~fastwarp.editor.TorchNetwork`.
    The first calls compile (seconds to minutes). Outputs are overwritten by the next call."""

    name = "torch-compile"

    def __init__(self, model: FaceEditor, *, dtype: torch.dtype = torch.float16, channels_last: bool = True) -> None:
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


@dataclass
class RuntimeChoice:
    """Which network runner the engine uses and why.

    Attributes:
        runtime: ``"torch"`` or ``"onnx"``.
        runner: the runner's name (``torch``, ``torch-cuda-graph``, ``torch-compile``, ``onnx``).
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


def make_network(model: FaceEditor, runtime: str = "auto", *, half: bool | None = None,
                 channels_last: bool | None = None, gpu_graph: str = "cuda-graph",
                 onnx_cache: str | os.PathLike | None = None, trial_calls: int = 4) -> tuple[Network, RuntimeChoice]:
    """The batch-1 network runner for ``model`` (on its device) and why it was chosen.

    - CPU: ``"torch"`` eager float32; ``"onnx"`` :class:`OnnxNetwork`; ``"auto"`` an
      :class:`AutoNetwork` that times both on the first ``trial_calls`` faces each and then
      keeps the faster (the returned :class:`RuntimeChoice` says ``"auto"`` until then);
      where ONNX Runtime cannot run, torch, saying why.
    - GPU: ``"torch"`` (and ``"auto"``) run float16 (``half``, default on) channels_last
      (default on) under ``gpu_graph``: a captured CUDA graph (:class:`CudaGraphNetwork`),
      ``torch.compile(mode="reduce-overhead")`` (:class:`CompiledNetwork`) or ``"none"``
      (eager); a capture that fails falls back to eager, saying why. ``"onnx"`` is CPU only.

    Raises:
        ValueError: unknown ``runtime`` / ``gpu_graph``, or ``"onnx"`` with a GPU model.
        ImportError: ``"onnx"`` without onnx / onnxruntime installed.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if gpu_graph not in GPU_GRAPHS:
        raise ValueError(f"gpu_graph must be one of {', '.join(GPU_GRAPHS)}, got {gpu_graph!r}")
    device = next(model.parameters()).device
    size = model.config.image_size
    if device.type == "cuda":
        if runtime == "onnx":
            raise ValueError("runtime='onnx' runs ONNX Runtime on the CPU: use device='cpu', or runtime='torch' "
                             "on the GPU")
        dtype = torch.float16 if half is None or half else torch.float32
        cl = True if channels_last is None else channels_last
        what = f"{str(dtype).removeprefix('torch.')}{' channels_last' if cl else ''}"
        if gpu_graph == "none":
            return TorchNetwork(model, dtype=dtype, channels_last=cl), RuntimeChoice(
                "torch", "torch", f"GPU: eager torch, {what}, batch 1 (gpu_graph='none')")
        try:
            runner = (CudaGraphNetwork if gpu_graph == "cuda-graph" else CompiledNetwork)(
                model, dtype=dtype, channels_last=cl)
        except Exception as exc:  # a capture that fails must not stop the video
            return TorchNetwork(model, dtype=dtype, channels_last=cl), RuntimeChoice(
                "torch", "torch", f"GPU: eager torch, {what}, batch 1 ({gpu_graph} failed: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")
        return runner, RuntimeChoice("torch", runner.name, f"GPU: torch {what} batch 1 under {gpu_graph} "
                                     "(runtime='auto' keeps torch on a GPU: ONNX Runtime runs on the CPU here)")

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


# --- statistics --------------------------------------------------------------------------

@dataclass
class StageStats:
    """One stage's per-frame times in milliseconds: ``count`` samples, their mean, median
    (p50) and 95th percentile (p95)."""

    count: int
    mean_ms: float
    p50_ms: float
    p95_ms: float

    @classmethod
    def of(cls, samples_ms: Sequence[float]) -> "StageStats":
        if not samples_ms:
            return cls(0, float("nan"), float("nan"), float("nan"))
        a = np.asarray(samples_ms, np.float64)
        return cls(len(a), float(a.mean()), float(np.percentile(a, 50)), float(np.percentile(a, 95)))


@dataclass
class RealtimeStats:
    """What one :meth:`RealtimeEngine.run` did and how fast.

    Attributes:
        frames: frames written to the sinks (each processed frame, edited or not).
        faces_edited: frames in which at least one face was edited; ``passed_through``:
            frames with no face, written unchanged. ``faces``: faces edited in all.
        dropped: frames of a live camera dropped because editing fell behind (a file
            source never drops).
        skipped: frames the decoder could not read but read past (corrupt data).
        wall_s: from the run's start to its last encoded frame, seconds.
        stop: why the run ended: ``"end"`` (the source ended), ``"max_frames"``,
            ``"stopped"`` (``on_frame`` returned False), ``"interrupted"`` (Ctrl-C),
            ``"read_failed"`` (see ``error``).
        error: the read failure's message (the frames before it were written).
        runtime, runner, runtime_reason, runtime_ms: see :class:`RuntimeChoice`.
        device, weights: where and with what the networks ran.
        samples_ms: per stage (:data:`STAGES`), one sample per frame (model / crop / blend /
            paste: per frame with a face, summed over its faces).
    """

    frames: int = 0
    faces_edited: int = 0
    passed_through: int = 0
    faces: int = 0
    dropped: int = 0
    skipped: int = 0
    wall_s: float = 0.0
    stop: str = ""
    error: str | None = None
    runtime: str = ""
    runner: str = ""
    runtime_reason: str = ""
    runtime_ms: dict[str, float] = field(default_factory=dict)
    device: str = ""
    weights: str = ""
    samples_ms: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})

    @property
    def fps(self) -> float:
        """End-to-end frames per second: frames written over ``wall_s``."""
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    def stage(self, name: str) -> StageStats:
        """:class:`StageStats` of one of :data:`STAGES`."""
        return StageStats.of(self.samples_ms.get(name, []))

    def stages(self) -> dict[str, StageStats]:
        return {s: self.stage(s) for s in STAGES}

    def as_dict(self) -> dict:
        """A JSON-ready summary (no raw samples): counts, fps, runtime, per-stage stats."""
        d = {k: v for k, v in asdict(self).items() if k != "samples_ms"}
        d["fps"] = self.fps
        d["stages"] = {k: asdict(v) for k, v in self.stages().items() if v.count}
        return d

    def format(self) -> str:
        """A table: one row per stage (frames, mean, p50, p95 ms), then frames/s and the runtime."""
        lines = [f"{'stage':<10}{'frames':>8}{'mean ms':>10}{'p50 ms':>10}{'p95 ms':>10}"]
        for name, st in self.stages().items():
            if st.count:
                lines.append(f"{name:<10}{st.count:>8}{st.mean_ms:>10.2f}{st.p50_ms:>10.2f}{st.p95_ms:>10.2f}")
        lines.append(f"end to end: {self.frames} frames in {self.wall_s:.2f} s = {self.fps:.1f} frames/s "
                     f"({self.device}, weights {self.weights}, runtime {self.runner})")
        lines.append(f"runtime: {self.runtime_reason}")
        if self.dropped or self.skipped:
            lines.append(f"dropped {self.dropped} live frames (editing fell behind); skipped {self.skipped} "
                         "undecodable frames")
        return "\n".join(lines)


# --- one frame -------------------------------------------------------------------------

@dataclass
class FaceResult:
    """One edited face of a frame.

    Attributes:
        landmarks: float32 ``[478, 3]`` as FaceMesh found them (frame pixels).
        smoothed: float32 ``[478, 3]`` after the One Euro filter (what the crop, the AUs and
            the mask used; equal to ``landmarks`` with smoothing off or on a new track).
        track: the face's track id; ``new_track``: this frame started it.
        crop: the aligned crop; ``current_aus``, ``target_aus``: float32 ``[17]``, 0..5.
    """

    landmarks: np.ndarray
    smoothed: np.ndarray
    track: int
    new_track: bool
    crop: FaceCrop
    current_aus: np.ndarray
    target_aus: np.ndarray


@dataclass
class FrameResult:
    """One processed frame: ``frame`` ``[H, W, 3]`` uint8 BGR (a copy of the input where no
    face was edited), its ``index`` and time ``t`` (s), the edited ``faces``, how many
    faces FaceMesh found, and this frame's stage times in ms."""

    frame: np.ndarray
    index: int
    t: float
    faces: list[FaceResult]
    faces_found: int
    timings_ms: dict[str, float]

    @property
    def face_found(self) -> bool:
        return bool(self.faces)


# --- sources and sinks -----------------------------------------------------------------

class VideoSource:
    """Frames from OpenCV's ``VideoCapture``: a camera (an int index: live) or a video file.

    Args:
        spec: camera index, or a video file path (which stands in for a camera: it plays
            as fast as it is processed and stops at its end).
        capture: an already opened capture (anything with ``read``, ``get``, ``release``
            and ``isOpened``) to read from instead of opening ``spec``.
        live: treat the source as a live camera (default: ``spec`` is an int): read
            failures are a disconnection, and frames are dropped rather than queued when
            editing falls behind.
    Raises:
        StreamError: the camera or file cannot be opened.

    Attributes: ``fps`` (the source's, or 30 for a camera that reports none), ``width``,
    ``height``, ``frame_count`` (a file's declared count, else None), ``name``.
    """

    def __init__(self, spec: int | str | os.PathLike, *, capture=None, live: bool | None = None) -> None:
        self.live = isinstance(spec, int) if live is None else bool(live)
        self.name = f"camera {spec}" if isinstance(spec, int) else f"video {spec}"
        if capture is None:
            if isinstance(spec, int):
                # OpenCV logs its own warnings when no camera answers; the StreamError below
                # is the one message.
                level = cv2.getLogLevel()
                cv2.setLogLevel(0)  # LOG_LEVEL_SILENT
                try:
                    capture = cv2.VideoCapture(spec)
                finally:
                    cv2.setLogLevel(level)
            else:
                if not Path(spec).is_file():
                    raise StreamError(f"video not found: {spec}")
                capture = cv2.VideoCapture(str(spec))
        self.cap = capture
        if not self.cap.isOpened():
            self.cap.release()
            raise StreamError(f"cannot open camera {spec} (no camera with that index, or another program holds it)"
                              if isinstance(spec, int)
                              else f"cannot read video {spec}: not a video OpenCV can decode")
        fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0 < fps < 1000 else (30.0 if self.live else 25.0)
        self.width = int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        count = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count = count if count > 0 and not self.live else None
        self.frames_read = 0
        self.skipped = 0

    #: Consecutive failed reads after which a camera counts as disconnected, and the pause
    #: between them (a USB camera can miss a frame or two without being gone).
    LIVE_RETRIES, LIVE_RETRY_S = 10, 0.02
    #: Extra reads a file gets past an undecodable frame before it counts as ended.
    FILE_RETRIES = 2

    def read(self) -> np.ndarray | None:
        """The next frame, ``[H, W, 3]`` uint8 BGR, or None at a file's normal end.

        Raises:
            StreamError: a camera stopped delivering frames; a file ended before the frame
                count its container declares (truncated or corrupt).
        """
        ok, frame = self.cap.read()
        retries = self.LIVE_RETRIES if self.live else self.FILE_RETRIES
        failed = 0
        while not ok or frame is None:
            failed += 1
            if failed > retries:
                return self._ended()
            if self.live:
                time.sleep(self.LIVE_RETRY_S)
            ok, frame = self.cap.read()
        if failed and not self.live:
            self.skipped += failed
        self.frames_read += 1
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        elif frame.shape[2] == 4:
            frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
        return frame

    def _ended(self) -> None:
        n = self.frames_read
        if self.live:
            raise StreamError(f"{self.name} stopped delivering frames after {n} frame{'s' * (n != 1)} "
                              "(disconnected?)")
        # One frame of slack: containers without a frame index give an estimate (duration x fps).
        if self.frame_count is not None and n + self.skipped < self.frame_count - 1:
            raise StreamError(f"{self.name}: decoding failed after frame {n} of the {self.frame_count} its "
                              "container declares (truncated or corrupt file)")
        return None

    def close(self) -> None:
        self.cap.release()

    def __enter__(self) -> "VideoSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class VideoFileSink:
    """Writes frames to a video file with OpenCV's ``VideoWriter``.

    Open it on a temporary path (:func:`fastwarp._io.atomic_path`) and :meth:`close` it
    before the rename: ``close`` finalises the container, so the file is a valid video of
    every frame written, whenever the stream stopped.

    Args:
        path: the file to write (its suffix picks the container).
        fps: frames per second recorded in the file.
        size: ``(width, height)``; if the first frame differs (a camera that reported
            another size) the writer is reopened at the frame's size.
        fourcc: codec (default ``mp4v``).
    Raises:
        SinkError: OpenCV cannot write this container/codec.
    """

    def __init__(self, path: str | os.PathLike, fps: float, size: tuple[int, int], fourcc: str = "mp4v") -> None:
        self.path, self.fps, self.fourcc = Path(path), float(fps), fourcc
        self.frames = 0
        self._open(size)

    def _open(self, size: tuple[int, int]) -> None:
        self.size = (int(size[0]), int(size[1]))
        self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, self.size)
        if not self.writer.isOpened():
            raise SinkError(f"cannot write video {self.path} with codec {self.fourcc!r} (try an .mp4 output)")

    def write(self, frame: np.ndarray) -> None:
        size = (frame.shape[1], frame.shape[0])
        if size != self.size:
            if self.frames:
                raise SinkError(f"frame size changed from {self.size[0]}x{self.size[1]} to {size[0]}x{size[1]}")
            self.writer.release()
            self._open(size)
        self.writer.write(frame)
        self.frames += 1

    def close(self) -> None:
        """Finalise the file (safe to call twice)."""
        self.writer.release()


class VirtualCamSink:
    """Sends frames to a virtual camera (pyvirtualcam: v4l2loopback on Linux, OBS on
    Windows/macOS) that video-call applications can pick as a webcam.

    Raises:
        SinkError: pyvirtualcam is missing, or no virtual camera device exists (on Linux:
            no v4l2loopback device; the message says how to create one).
    """

    def __init__(self, width: int, height: int, fps: float) -> None:
        try:
            import pyvirtualcam
        except ImportError:
            raise SinkError("--virtual-cam needs pyvirtualcam (pip install pyvirtualcam)") from None
        try:
            self.cam = pyvirtualcam.Camera(width=int(width), height=int(height), fps=float(fps),
                                           fmt=pyvirtualcam.PixelFormat.BGR)
        except Exception as exc:
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if os.name == "posix" and "v4l2" in detail.lower():
                raise SinkError("--virtual-cam needs a v4l2loopback video device and none was found at "
                                "/dev/video*: load the kernel module first (sudo modprobe v4l2loopback devices=1 "
                                f"exclusive_caps=1); pyvirtualcam said: {detail}") from None
            raise SinkError(f"--virtual-cam: no virtual camera could be opened: {detail}") from None
        self.size = (int(width), int(height))
        self.device = getattr(self.cam, "device", "virtual camera")

    def write(self, frame: np.ndarray) -> None:
        if (frame.shape[1], frame.shape[0]) != self.size:
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        self.cam.send(np.ascontiguousarray(frame))

    def close(self) -> None:
        self.cam.close()


# --- live controls ---------------------------------------------------------------------

class LiveControls:
    """Key bindings that change the AU targets while a preview window runs.

    Keys: ``[`` / ``]`` pick the previous / next AU; ``+`` (or ``=``) and ``-`` change
    the picked AU by ``step``: an AU given absolutely (``AU12=3``) changes its target
    intensity (0..5), any other its change relative to the face (``AU12=+0.5``, -5..5);
    ``0`` removes the picked AU's edit; ``space`` turns editing off and on; ``r`` goes
    back to the command line's edits; ``q`` or Esc quits.

    Args:
        edits: the starting ``(AU, value, relative)`` edits.
        step: the change per key press, AU intensity units.
    """

    HELP = ("keys: [ ] pick AU, + / - change it, 0 clear it, space edit on/off, r reset, q or Esc quit")

    def __init__(self, edits: Iterable[AUEdit] = (), step: float = 0.5) -> None:
        self.initial = [(normalize_au_name(n), float(v), bool(r)) for n, v, r in edits]
        self.step = float(step)
        self.reset()

    def reset(self) -> None:
        """Back to the starting edits, editing on, the first edited AU (else AU12) picked."""
        self.values: dict[str, tuple[float, bool]] = {n: (v, r) for n, v, r in self.initial}
        self.selected = AU_INDEX[self.initial[0][0]] if self.initial else AU_INDEX["AU12"]
        self.enabled = True

    @property
    def selected_name(self) -> str:
        return AU_NAMES[self.selected]

    def edits(self) -> list[AUEdit]:
        """The current edits, in AU order (empty while editing is off)."""
        if not self.enabled:
            return []
        return [(n, v, r) for n in AU_NAMES if n in self.values for v, r in [self.values[n]]]

    def handle_key(self, key: int) -> str | None:
        """Apply one key code (``cv2.waitKey``'s; -1 for none). Returns ``"quit"``,
        ``"changed"`` (the edits changed), ``"selected"`` (another AU picked) or None."""
        if key < 0:
            return None
        ch = chr(key & 0xFF)
        # Lower case only: OpenCV's Qt windows report the arrow keys as 81..84 ("Q".."T").
        if ch in ("q", "\x1b"):
            return "quit"
        if ch == "]":
            self.selected = (self.selected + 1) % len(AU_NAMES)
            return "selected"
        if ch == "[":
            self.selected = (self.selected - 1) % len(AU_NAMES)
            return "selected"
        name = self.selected_name
        if ch in ("+", "=", "-", "_"):
            sign = 1.0 if ch in ("+", "=") else -1.0
            value, relative = self.values.get(name, (0.0, True))
            lo = -AU_MAX if relative else 0.0
            self.values[name] = (float(np.clip(value + sign * self.step, lo, AU_MAX)), relative)
            return "changed"
        if ch == "0":
            return "changed" if self.values.pop(name, None) is not None else None
        if ch == " ":
            self.enabled = not self.enabled
            return "changed"
        if ch == "r":
            self.reset()
            return "changed"
        return None

    def describe(self) -> str:
        """One line: the edits, the picked AU marked with ``>``, and whether editing is on."""
        parts = []
        for n in AU_NAMES:
            if n in self.values or n == self.selected_name:
                v, r = self.values.get(n, (0.0, True))
                text = f"{n}={v:+.1f}" if r else f"{n}={v:.1f}"
                parts.append(f">{text}" if n == self.selected_name else text)
        return ("" if self.enabled else "[editing off] ") + " ".join(parts)


# --- the engine ------------------------------------------------------------------------

_END = object()


class RealtimeEngine:
    """Streaming expression editor: one frame in, one edited frame out, as fast as it goes.

    Args:
        edits: ``(AU, value, relative)`` edits (:func:`fastwarp.au.parse_au_edit`);
            change them while running with :meth:`set_edits`.
        weights: bundled name ("base", "lite") or checkpoint path; default
            :func:`default_weights` ("lite" on a CPU where installed, else "base").
        device: "cpu" or "cuda" (default: CUDA where fastwarp's CUDA kernels run).
        runtime: "auto", "torch" or "onnx" (see :func:`make_network`).
        all_faces: edit every face found (up to ``max_faces``) instead of the largest.
        max_faces: the most faces FaceMesh tracks (default 4: the largest of up to four
            faces is found; 1 is faster, about 5 ms a frame on 2 CPU cores, as FaceMesh then
            re-detects only when it loses its face, but it keeps whichever face it found first).
        smoothing: One Euro parameters for :class:`FaceTracker` (a dict), True for the
            defaults, False for none.
        max_crop_size: largest crop side (see :class:`~fastwarp.editor.ExpressionEditor`).
        half, channels_last, gpu_graph: the GPU runner (see :func:`make_network`).
        onnx_cache: where ONNX exports are cached.
        auto_trial_calls: with ``runtime="auto"`` on a CPU, the faces each runtime edits
            before the faster is kept (:class:`AutoNetwork`).
        model: an already loaded :class:`~fastwarp.models.FaceEditor` (``weights`` ignored).
    Raises:
        FileNotFoundError / ValueError: weights missing or invalid; a bad ``runtime``,
            ``gpu_graph`` or ``max_faces``. ImportError: ``runtime="onnx"`` without ONNX
            Runtime.

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, edits: Iterable[AUEdit] = (), weights: str | os.PathLike | None = None,
                 device: str | None = None, *, runtime: str = "auto", all_faces: bool = False,
                 max_faces: int | None = None, smoothing: bool | dict = True, max_crop_size: int = 512,
                 half: bool | None = None, channels_last: bool | None = None, gpu_graph: str = "cuda-graph",
                 onnx_cache: str | os.PathLike | None = None, auto_trial_calls: int = 4,
                 model: FaceEditor | None = None) -> None:
        self.device = torch.device(device or default_device())
        if model is None:
            self.weights = str(weights) if weights is not None else default_weights(self.device)
            model = FaceEditor.load(self.weights, map_location=self.device)
        else:
            self.weights = str(weights) if weights is not None else "(model)"
            model = model.to(self.device).eval()
        network, self.runtime = make_network(model, runtime, half=half, channels_last=channels_last,
                                             gpu_graph=gpu_graph, onnx_cache=onnx_cache,
                                             trial_calls=auto_trial_calls)
        self.all_faces = bool(all_faces)
        self.max_faces = int(max_faces) if max_faces is not None else 4
        if self.max_faces < 1:
            raise ValueError(f"max_faces must be >= 1, got {max_faces}")
        self.editor = ExpressionEditor(device=str(self.device), video=True, max_crop_size=max_crop_size,
                                       max_faces=self.max_faces, model=model, network=network)
        params = smoothing if isinstance(smoothing, dict) else {}
        self.tracker = FaceTracker(**params) if smoothing is not False else None
        self.edits: list[AUEdit] = list(edits)
        self.stats = self._new_stats()
        self._size: tuple[int, int] | None = None

    def __enter__(self) -> "RealtimeEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.editor.close()

    @property
    def network(self) -> Network:
        return self.editor.network

    def set_edits(self, edits: Iterable[AUEdit]) -> None:
        """Replace the AU edits; the next frame uses them (safe from another thread)."""
        self.edits = list(edits)

    def _new_stats(self) -> RealtimeStats:
        return RealtimeStats(runtime=self.runtime.runtime, runner=self.runtime.runner,
                             runtime_reason=self.runtime.reason, runtime_ms=dict(self.runtime.measured_ms),
                             device=str(self.device), weights=self.weights)

    def reset(self) -> None:
        """Start a new stream: forget FaceMesh's tracking, the face tracks (smoothing starts
        afresh) and the frame size."""
        self.editor.mesh.reset()
        if self.tracker is not None:
            self.tracker.reset()
        self._size = None

    # --- one frame ---------------------------------------------------------------------

    def locate(self, frame_bgr: np.ndarray, t: float, index: int = 0) -> "_Located":
        """The first half of :meth:`process`: landmarks, smoothing, crops and AU targets."""
        size = (frame_bgr.shape[1], frame_bgr.shape[0]) if getattr(frame_bgr, "ndim", 0) == 3 else None
        if self._size is None:
            self._size = size
        elif size != self._size:
            raise FrameSizeError(f"frame {index} changes size from {self._size[0]}x{self._size[1]} to "
                                 f"{frame_bgr.shape[1]}x{frame_bgr.shape[0]}")
        clock = time.perf_counter
        t0 = clock()
        found = self.editor.detect(frame_bgr)
        chosen = found if self.all_faces else found[:1]
        if self.tracker is not None:
            tracked = self.tracker.update(chosen, t)
        else:
            tracked = [(i, lm, True) for i, lm in enumerate(chosen)]
        t1 = clock()
        timings = {"landmarks": (t1 - t0) * 1e3}
        faces, edits = [], list(self.edits)
        for raw, (track, lm, new) in zip(chosen, tracked):
            crop = self.editor.crop(frame_bgr, lm)
            current, target = self.editor.aus(crop, edits)
            faces.append(FaceResult(raw, lm, track, new, crop, current, target))
        if faces:
            timings["crop"] = (clock() - t1) * 1e3
        return _Located(frame_bgr, index, t, faces, len(found), timings)

    @torch.no_grad()
    def render(self, located: "_Located") -> FrameResult:
        """The second half of :meth:`process`: the networks, the blend and the paste-back of
        each located face."""
        clock = time.perf_counter
        out, timings = located.frame, dict(located.timings)
        for face in located.faces:
            t0 = clock()
            maps = self.editor.predict(face.crop.image, face.target_aus, face.current_aus)
            if maps.flow.device.type == "cuda":
                torch.cuda.synchronize(maps.flow.device)  # time the model, not the blend that waits for it
            t1 = clock()
            edited = self.editor.blend(face.crop.image, maps)
            t2 = clock()
            out = self.editor.paste(out, edited, face.crop)
            t3 = clock()
            for stage, dt in (("model", t1 - t0), ("blend", t2 - t1), ("paste", t3 - t2)):
                timings[stage] = timings.get(stage, 0.0) + dt * 1e3
        if not located.faces:
            out = located.frame.copy()
        return FrameResult(out, located.index, located.t, located.faces, located.faces_found, timings)

    def process(self, frame_bgr: np.ndarray, t: float, index: int = 0) -> FrameResult:
        """Edit one frame (on the calling thread) and time its stages.

        Args:
            frame_bgr: ``[H, W, 3]`` uint8 BGR; every frame of a stream has one size.
            t: its time in seconds (increasing; drives the smoothing).
            index: its number in the stream (for messages).
        Returns:
            :class:`FrameResult`; with no face, a copy of the frame.
        Raises:
            ValueError: not a uint8 BGR image; FrameSizeError: a frame size different from
                the stream's.
        """
        return self.render(self.locate(frame_bgr, t, index))

    # --- a stream ----------------------------------------------------------------------

    def run(self, source: VideoSource, sinks: Sequence = (), *, max_frames: int = 0,
            on_frame: Callable[[FrameResult], bool | None] | None = None, queue_size: int = 4,
            landmark_thread: bool | None = None) -> RealtimeStats:
        """Edit a stream: decode on one thread, edit here, encode on another.

        Args:
            source: a :class:`VideoSource` (a camera or a file).
            sinks: objects with ``write(frame)`` (:class:`VideoFileSink`,
                :class:`VirtualCamSink`), written in order on the encode thread; the caller
                closes them.
            max_frames: stop after this many frames (0: until the source ends).
            on_frame: called on this thread with each :class:`FrameResult` before it is
                encoded (a preview window, a progress bar); returning False stops the run.
            queue_size: capacity of the queues between the threads (a live camera's decode
                queue holds one frame, the newest: older ones are dropped when editing falls
                behind, counted in :attr:`RealtimeStats.dropped`).
            landmark_thread: find landmarks and crops on a thread of their own, so that they
                overlap the networks of the previous frame (default: on a GPU, where the
                CPU's steps bound the frame rate; on a CPU the networks already use every core).
        Returns:
            :class:`RealtimeStats` (also :attr:`stats`). A camera that stops delivering
            frames or a file that cannot be decoded to its end ends the run with
            ``stop == "read_failed"`` and ``error`` set; Ctrl-C ends it with
            ``"interrupted"``. Every frame edited before that is written first.
        Raises:
            FrameSizeError: a frame of another size than the first; any error of the
                editing or of a sink is raised too (after the threads have stopped).
        """
        self.reset()
        if landmark_thread is None:
            landmark_thread = self.device.type == "cuda"
        stats = self.stats = self._new_stats()
        stop = threading.Event()
        live = source.live
        # A camera's queues hold one frame: editing never works on a stale one.
        depth = 1 if live else max(1, queue_size)
        decoded: queue.Queue = queue.Queue(maxsize=depth)
        located: queue.Queue = queue.Queue(maxsize=depth)
        encoded: queue.Queue = queue.Queue(maxsize=max(1, queue_size))
        failure: dict[str, BaseException] = {}
        start = time.perf_counter()

        def put(q: queue.Queue, item) -> bool:
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.05)
                    return True
                except queue.Full:
                    continue
            return False

        def get(q: queue.Queue, producer: threading.Thread):
            while not stop.is_set():
                try:
                    return q.get(timeout=0.05)
                except queue.Empty:
                    if not producer.is_alive() and q.empty():
                        return (_END, ("end", None))
            return None

        def decode() -> None:
            index, end = 0, ("end", None)
            try:
                while not stop.is_set():
                    t0 = time.perf_counter()
                    try:
                        frame = source.read()
                    except StreamError as exc:
                        end = ("read_failed", str(exc))
                        break
                    t1 = time.perf_counter()
                    if frame is None:
                        break
                    stats.samples_ms["decode"].append((t1 - t0) * 1e3)
                    t = time.monotonic() if live else index / source.fps
                    item = (index, frame, t, t1)
                    index += 1
                    if live:
                        while True:  # the newest frame wins: drop the oldest when full
                            try:
                                decoded.put_nowait(item)
                                break
                            except queue.Full:
                                try:
                                    decoded.get_nowait()
                                    stats.dropped += 1
                                except queue.Empty:
                                    pass
                    elif not put(decoded, item):
                        return
            except BaseException as exc:  # noqa: BLE001  (re-raised on the main thread)
                failure["decode"] = exc
                end = ("failed", None)
            stats.skipped = getattr(source, "skipped", 0)
            put(decoded, (_END, end))

        def locate() -> None:
            try:
                while True:
                    item = get(decoded, decoder)
                    if item is None:
                        return
                    if item[0] is not _END:
                        index, frame, t, ready = item
                        item = (self.locate(frame, t, index), ready)
                    if not put(located, item) or item[0] is _END:
                        return
            except BaseException as exc:  # noqa: BLE001
                failure["landmarks"] = exc
                put(located, (_END, ("failed", None)))

        def encode() -> None:
            try:
                while True:
                    item = encoded.get()
                    if item is _END:
                        return
                    frame, ready = item
                    t0 = time.perf_counter()
                    for sink in sinks:
                        sink.write(frame)
                    t1 = time.perf_counter()
                    stats.samples_ms["encode"].append((t1 - t0) * 1e3)
                    stats.samples_ms["latency"].append((t1 - ready) * 1e3)
                    stats.frames += 1
            except BaseException as exc:  # noqa: BLE001
                failure["encode"] = exc
                stop.set()

        decoder = threading.Thread(target=decode, name="fastwarp-decode", daemon=True)
        locator = threading.Thread(target=locate, name="fastwarp-landmarks", daemon=True)
        encoder = threading.Thread(target=encode, name="fastwarp-encode", daemon=True)
        threads = [decoder, locator, encoder] if landmark_thread else [decoder, encoder]
        for thread in threads:
            thread.start()
        processed = 0
        try:
            while "encode" not in failure:
                item = get(located, locator) if landmark_thread else get(decoded, decoder)
                if item is None:
                    break
                if item[0] is _END:
                    stats.stop, stats.error = item[1]
                    break
                if landmark_thread:
                    spot, ready = item
                else:
                    index, frame, t, ready = item
                    spot = self.locate(frame, t, index)
                result = self.render(spot)
                for stage, ms in result.timings_ms.items():
                    stats.samples_ms[stage].append(ms)
                if result.faces:
                    stats.faces_edited += 1
                    stats.faces += len(result.faces)
                else:
                    stats.passed_through += 1
                keep_going = on_frame(result) if on_frame is not None else True
                if not put(encoded, (result.frame, ready)):
                    break
                processed += 1
                if keep_going is False:
                    stats.stop = "stopped"
                    break
                if max_frames and processed >= max_frames:
                    stats.stop = "max_frames"
                    break
        except KeyboardInterrupt:
            stats.stop = "interrupted"
        finally:
            stop.set()  # the decoder stops reading; frames already edited are still encoded
            while encoder.is_alive():
                try:
                    encoded.put(_END, timeout=0.05)
                    break
                except queue.Full:
                    continue
            encoder.join()
            for thread in threads:
                thread.join(timeout=5)
            stats.wall_s = time.perf_counter() - start
            # runtime="auto" decides on the stream's first faces.
            stats.runtime, stats.runner = self.runtime.runtime, self.runtime.runner
            stats.runtime_reason, stats.runtime_ms = self.runtime.reason, dict(self.runtime.measured_ms)
        for where in ("encode", "landmarks", "decode"):
            if where in failure:
                raise failure[where]
        if stats.stop == "failed":
            stats.stop = "end"
        return stats


@dataclass
class _Located:
    """A frame with its faces found, smoothed, cropped and their AU targets set."""

    frame: np.ndarray
    index: int
    t: float
    faces: list[FaceResult]
    faces_found: int
    timings: dict[str, float]

"""What fastwarp's benchmarks share: the device, the providers, the cases, the bytes each
op must move, the input rotation and the timing of one call.

Used by ``conftest.py`` and ``test_bench_ops.py`` (pytest puts bench/ on sys.path) and by
the scripts ``run.py`` and ``ratios.py``. Nothing here imports pytest.

Timing (one "round" of pytest-benchmark is one call of the op):

- Inputs rotate through K sets whose total size is at least twice the last-level cache
  (L2 on a GPU, L3 on a CPU) beyond the set in use, so every timed call reads inputs that
  are cold in cache, as a call on a new frame does.
- ``backward`` times only ``out.backward(grad_output)``; the forward of each set runs
  untimed one whole rotation ahead, so the backward too reads cold inputs.
- On CUDA a round is timed with CUDA events around the call. Before it, the GPU is kept
  busy by ``torch.cuda._sleep`` for longer than the host needs to enqueue the call, so
  the events time the kernels back to back, not the host's launch overhead (that host
  time is recorded separately, ``host_us``). pytest-benchmark then reads the event time
  through :class:`GpuClock`, so its statistics, JSON and ``--benchmark-compare`` are in
  GPU time.
"""

from __future__ import annotations

import functools
import inspect
import math
import os
import platform
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import gate
import torch

import fastwarp
from fastwarp import reference

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"

OPS = ("warp", "warp_blend")
MODES = ("forward", "backward", "full")  # full: forward and backward together
# fastwarp-cuda-det: the CUDA kernels under torch.use_deterministic_algorithms(True) (its
# backward; the forward is the same kernel, so forward mode is not repeated for it).
PROVIDERS = ("fastwarp-cuda", "fastwarp-cuda-det", "fastwarp-triton", "fastwarp-cpu", "reference",
             "compiled-reference")
FASTWARP_PROVIDERS = tuple(p for p in PROVIDERS if p.startswith("fastwarp-"))
DETERMINISTIC_SUFFIX = "-det"
DTYPES = ("float32", "bfloat16")


# --- device ------------------------------------------------------------------------------

#: The face set (photos and videos), ``FASTWARP_FACES_DIR`` or ``../shared/data/faces``.
FACES = Path(os.environ.get("FASTWARP_FACES_DIR") or ROOT.parent / "shared" / "data" / "faces")


def face_photo(name: str):
    """A photo of the face set as a uint8 BGR array; skips the benchmark where it is missing."""
    import cv2
    import pytest

    path = FACES / "images" / name
    image = cv2.imread(str(path)) if path.is_file() else None
    if image is None:
        pytest.skip(f"photo {path} not found (set FASTWARP_FACES_DIR)")
    return image


def device() -> torch.device:
    """The device this run benchmarks: ``$FASTWARP_BENCH_DEVICE`` (cpu or cuda), else CUDA
    where a GPU is visible, else the CPU."""
    name = os.environ.get("FASTWARP_BENCH_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"FASTWARP_BENCH_DEVICE must be 'cpu' or 'cuda', got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("FASTWARP_BENCH_DEVICE=cuda, but torch sees no CUDA device")
    return torch.device(name)


def device_kind(dev: torch.device | None = None) -> str:
    """Short name of the hardware: ``cpu``, or the GPU's model (``h100``, ``h200``,
    ``a100``; else its name as a slug). The results and baseline files are named by the
    finer ``environment()["machine_key"]`` (bench/gate.py)."""
    dev = dev or device()
    if dev.type == "cpu":
        return "cpu"
    name = torch.cuda.get_device_name(dev)
    m = re.search(r"\b([A-Z]{1,2}\d{2,4}[A-Z]?)\b", name)
    return m.group(1).lower() if m else re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def cache_bytes(dev: torch.device) -> int:
    """Size of the last-level cache the inputs must not fit in: the GPU's L2, or the CPU's
    largest cache (from sysfs; 32 MiB where it cannot be read)."""
    if dev.type == "cuda":
        return getattr(torch.cuda.get_device_properties(dev), "L2_cache_size", 0) or 50 << 20
    best = 0
    for size_file in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        try:
            text = size_file.read_text().strip().upper()
            best = max(best, int(text.rstrip("KMG")) * {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1], 1))
        except (OSError, ValueError):
            pass
    return best or 32 << 20


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _run(*cmd: str) -> str:
    try:
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


@functools.lru_cache(maxsize=None)
def environment() -> dict:
    """Where and on what this run happens, for the results' machine info."""
    dev = device()
    # --no-optional-locks: read-only queries that never touch the index others work on.
    # FASTWARP_COMMIT names the commit of a copy of the repository without .git (a GPU lease).
    commit = _run("git", "--no-optional-locks", "rev-parse", "HEAD")
    dirty = bool(commit and _run("git", "--no-optional-locks", "status", "--porcelain", "--untracked-files=no",
                                 "--", "csrc", "fastwarp", "setup.py"))
    commit = commit or os.environ.get("FASTWARP_COMMIT") or "unknown"
    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    env = {
        "device": dev.type,
        "device_kind": device_kind(dev),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "threads": torch.get_num_threads(),
        "gpu": None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton": triton_version,
        "fastwarp": fastwarp.__version__,
        "backends": fastwarp.backends(),
        "backend_keyword": HAS_BACKEND_KEYWORD,
        "commit": commit + ("+dirty" if dirty else ""),
        "cache_bytes": cache_bytes(dev),
        "triton_interpret": os.environ.get("TRITON_INTERPRET"),
    }
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        env.update(gpu=props.name, gpu_sms=props.multi_processor_count, gpu_memory_bytes=props.total_memory,
                   gpu_capability=f"{props.major}.{props.minor}",
                   driver=_run("nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader") or None)
    env["machine_key"] = gate.machine_key({"fastwarp_env": env})  # names the results and baseline files
    return env


# --- providers ---------------------------------------------------------------------------

def _has_backend_keyword() -> bool:
    try:
        return all("backend" in inspect.signature(getattr(fastwarp, op)).parameters for op in OPS)
    except (TypeError, ValueError):
        return False


HAS_BACKEND_KEYWORD = _has_backend_keyword()


class Unavailable(Exception):
    """A provider that cannot run here; the message is the skip reason."""


def unavailable_reason(provider: str, dev: torch.device) -> str | None:
    """Why ``provider`` does not run on ``dev`` in this installation, or None."""
    backends = fastwarp.backends()
    if provider == "fastwarp-cpu" and dev.type != "cpu":
        return "fastwarp-cpu is timed by CPU runs (make bench on a machine without a GPU, or FASTWARP_BENCH_DEVICE=cpu)"
    if provider in ("fastwarp-cuda", "fastwarp-cuda" + DETERMINISTIC_SUFFIX):
        if dev.type != "cuda":
            return "fastwarp-cuda needs a GPU run (this run benchmarks the CPU)"
        if not backends.get("cuda"):
            return "fastwarp's CUDA kernels are not built or no GPU is visible (fastwarp.backends()['cuda'] is False)"
    if provider == "fastwarp-triton":
        if dev.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
            return ("fastwarp-triton on the CPU runs only in Triton's interpreter, which is not a performance "
                    "path: set TRITON_INTERPRET=1 to time it anyway")
        if not backends.get("triton"):
            return "fastwarp has no Triton backend here (fastwarp.backends() has no true 'triton')"
        if not HAS_BACKEND_KEYWORD:
            return "fastwarp.warp / warp_blend take no backend= keyword yet, so Triton cannot be chosen"
    return None


_COMPILED: dict[tuple, Callable] = {}


def op_function(provider: str, op: str, compile_key: tuple = ()) -> Callable:
    """The callable benchmarked for ``provider`` and ``op`` (``warp`` or ``warp_blend``).

    fastwarp's backends are chosen with ``backend=`` where the ops take it; before that,
    CPU and CUDA dispatch on the tensors' device. ``compiled-reference`` is
    ``torch.compile(reference.<op>, dynamic=False)``, one compilation per ``compile_key``
    (op, case, dtype): the previous one is dropped and dynamo reset, so no case falls
    back to eager by hitting the recompile limit.
    """
    if provider.startswith("fastwarp-"):
        fn = getattr(fastwarp, op)
        if HAS_BACKEND_KEYWORD:
            return functools.partial(fn, backend=provider.removeprefix("fastwarp-").removesuffix(DETERMINISTIC_SUFFIX))
        if provider == "fastwarp-triton":
            raise Unavailable("fastwarp ops take no backend= keyword yet")
        return fn
    if provider == "reference":
        return getattr(reference, op)
    if provider == "compiled-reference":
        key = (op, *compile_key)
        if key not in _COMPILED:
            _COMPILED.clear()
            torch._dynamo.reset()
            _COMPILED[key] = torch.compile(getattr(reference, op), dynamic=False)
        return _COMPILED[key]
    raise ValueError(f"unknown provider {provider!r}")


# --- cases and bytes ---------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """An image ``[N, C, H, W]`` with flow, texture and mask on an ``h x w`` grid (``h = H``:
    the same size; smaller: the resolution-independent path, upsampled in the op)."""

    N: int
    C: int
    H: int
    W: int
    h: int
    w: int
    cpu: bool  # part of the default CPU run

    @property
    def id(self) -> str:
        base = f"{self.N}x{self.C}x{self.H}x{self.W}"
        if (self.h, self.w) == (self.H, self.W):
            return base
        return base + (f"-flow{self.h}" if self.h == self.w else f"-flow{self.h}x{self.w}")

    @property
    def lowres(self) -> bool:
        return (self.h, self.w) != (self.H, self.W)


# In the order GPU runs use when time is short (conftest runs the compiled reference last).
CASES = (
    Case(32, 3, 256, 256, 256, 256, cpu=False),
    Case(8, 3, 512, 512, 128, 128, cpu=False),
    Case(8, 3, 512, 512, 256, 256, cpu=False),
    Case(1, 3, 1024, 1024, 256, 256, cpu=False),
    Case(8, 3, 256, 256, 256, 256, cpu=True),   # issue 3's CPU target case
    Case(8, 3, 256, 256, 128, 128, cpu=True),   # networks at 128 px, crop at 256: the CPU's resolution-independent case
    Case(8, 3, 128, 128, 128, 128, cpu=True),
)
CASES_BY_ID = {c.id: c for c in CASES}

CPU_SKIP_CASE = ("GPU-scale case: on 2 CPU cores a round takes seconds and the run would take an hour; "
                 "set FASTWARP_BENCH_ALL=1 (or --bench-all) to time it anyway")
CPU_SKIP_DTYPE = "bfloat16 is timed on GPUs; on the CPU set FASTWARP_BENCH_ALL=1 (or --bench-all) to time it anyway"


def tensor_shapes(op: str, case: Case) -> dict[str, tuple[int, ...]]:
    """Shapes of the op's inputs (and of grad_output = the output's shape)."""
    shapes = {"image": (case.N, case.C, case.H, case.W), "flow": (case.N, 2, case.h, case.w)}
    if op == "warp_blend":
        shapes["texture"] = (case.N, case.C, case.h, case.w)
        shapes["mask"] = (case.N, 1, case.h, case.w)
    return shapes


def bytes_moved(op: str, mode: str, case: Case, dtype: torch.dtype) -> int:
    """The fewest bytes the call must move through memory: each input read once, each
    output written once.

    forward: reads the inputs, writes the output. backward: reads grad_output and the
    inputs (the flow gradient needs the image; the mask gradient the warped image and the
    texture), writes one gradient per input. full: both, every tensor counted once.
    """
    numel = sum(math.prod(s) for s in tensor_shapes(op, case).values())
    out = case.N * case.C * case.H * case.W
    per_mode = {"forward": numel + out, "backward": out + numel + numel, "full": numel + out + out + numel}
    return per_mode[mode] * torch.empty((), dtype=dtype).element_size()


# --- inputs --------------------------------------------------------------------------------

@dataclass
class InputSet:
    leaves: list[torch.Tensor]  # image, flow (, texture, mask), requiring grad
    grad_output: torch.Tensor

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.leaves, self.grad_output))

    def clear_grads(self) -> None:
        # Gradients are written fresh each round, never accumulated into old ones.
        for t in self.leaves:
            t.grad = None


def make_input_set(op: str, case: Case, dtype: torch.dtype, dev: torch.device, seed: int) -> InputSet:
    """Random inputs as the networks give them: image, texture and mask in [0, 1], a smooth
    flow of a few pixels (of its own grid): white noise on a grid 8x coarser, bilinearly
    upsampled, 4 px standard deviation, as a motion network predicts a field (per-pixel
    white noise is a cache worst case no network produces). Drawn in float32, then cast,
    so every dtype sees the same values."""
    gen = torch.Generator(device=dev).manual_seed(seed)
    shapes = tensor_shapes(op, case)
    leaves = []
    for name, shape in shapes.items():
        if name == "flow":
            n, _, h, w = shape
            coarse = torch.randn((n, 2, max(1, h // 8), max(1, w // 8)), generator=gen, device=dev)
            t = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
            t = t * (4.0 / t.std().clamp_min(1e-6))
        else:
            t = torch.rand(shape, generator=gen, device=dev)
        leaves.append(t.to(dtype).requires_grad_())
    grad_output = torch.randn(shapes["image"], generator=gen, device=dev).to(dtype)
    return InputSet(leaves, grad_output)


def rotation_size(set_bytes: int, dev: torch.device) -> int:
    """How many input sets to rotate through: the others together at least twice the
    last-level cache, at least 2 sets, at most what fits a memory cap (4 GiB on a GPU,
    1 GiB on the CPU)."""
    k = 1 + math.ceil(2 * cache_bytes(dev) / max(set_bytes, 1))
    cap = (4 << 30) if dev.type == "cuda" else (1 << 30)
    return max(2, min(k, cap // max(set_bytes, 1)))


# --- timing --------------------------------------------------------------------------------

class GpuClock:
    """A timer for pytest-benchmark that reads accumulated GPU time: :class:`TimedCall`
    adds each round's CUDA-event time, so the difference pytest-benchmark takes around a
    round is that round's GPU time."""

    __name__ = "cuda_event_clock"  # how pytest-benchmark names the timer in its JSON

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@functools.lru_cache(maxsize=None)
def _sleep_cycles_per_second() -> float:
    """SM clock cycles per second, as ``torch.cuda._sleep`` counts them: measured after a
    warm-up (an idle GPU clocks far lower), and never taken below 2 GHz, so a headroom in
    seconds is never cut short by a clock that rises later."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    cycles, best = 1_000_000, 0.0
    for _ in range(8):
        start.record()
        torch.cuda._sleep(cycles)
        end.record()
        end.synchronize()
        best = max(best, cycles / (start.elapsed_time(end) * 1e-3))
    return max(best, 2.0e9)


class TimedCall:
    """The rounds of one benchmark: ``setup`` prepares a round untimed and ``target`` is the
    timed call; :meth:`run` hands both to ``benchmark.pedantic``.

    Args:
        call: ``call(i)`` does the timed work on input set ``i`` and returns what it made
            (returned, so freeing it happens outside the timing).
        prepare: ``prepare(i)``, untimed work before the call on set ``i``.
        sets: number of input sets rotated through.
        dev: on CUDA, rounds are timed with events (see the module docstring).
    """

    MIN_HEADROOM_S = 50e-6
    MAX_HEADROOM_S = 5e-3

    def __init__(self, call: Callable[[int], object], sets: int, dev: torch.device,
                 prepare: Callable[[int], None] | None = None) -> None:
        self.call, self.prepare, self.sets = call, prepare, sets
        self.cuda = dev.type == "cuda"
        self.round = 0
        self.warmup = 0
        self.host_s: list[float] = []  # per round, on CUDA: host time to enqueue the call
        self.waited_s: list[float] = []  # per round, on CUDA: from the headroom's launch to the call's end
        self.launch_bound: list[bool] = []  # per round: that outlasted the GPU headroom
        if self.cuda:
            self.clock = GpuClock()
            self.start = torch.cuda.Event(enable_timing=True)
            self.end = torch.cuda.Event(enable_timing=True)
            self.headroom_s = self.MIN_HEADROOM_S
            self.cycles_per_s = _sleep_cycles_per_second()

    def setup(self):
        i = self.round % self.sets
        self.round += 1
        if self.prepare is not None:
            self.prepare(i)
        if self.cuda:
            torch.cuda._sleep(int(self.headroom_s * self.cycles_per_s))
            self._slept_at = time.perf_counter()
        return (i,), {}

    def target(self, i: int):
        if not self.cuda:
            return self.call(i)
        t0 = time.perf_counter()
        self.start.record()
        made = self.call(i)
        self.end.record()
        t1 = time.perf_counter()
        self.end.synchronize()
        self.clock.now += self.start.elapsed_time(self.end) * 1e-3
        self.host_s.append(t1 - t0)
        # From the sleep's launch to the end event's: longer than the headroom, and the GPU
        # may have waited for the host inside the timed region.
        waited = t1 - self._slept_at
        self.launch_bound.append(waited > self.headroom_s)
        self.waited_s.append(waited)
        # Headroom for the next round: 1.5x the recent waits, plus a margin (a compiling
        # first call drops out after three rounds).
        recent = max(self.waited_s[-3:])
        self.headroom_s = min(max(1.5 * recent + 20e-6, self.MIN_HEADROOM_S), self.MAX_HEADROOM_S)
        return made

    def run(self, benchmark, rounds: int, warmup: int) -> None:
        """``benchmark.pedantic`` over ``warmup`` + ``rounds`` rounds; on CUDA,
        pytest-benchmark reads this call's GPU clock (its timer is a fixture attribute,
        read when each round's runner is made)."""
        if self.cuda:
            if not hasattr(benchmark, "_timer"):
                raise RuntimeError("this pytest-benchmark keeps no BenchmarkFixture._timer to replace "
                                   "with the CUDA-event clock: use pytest-benchmark 3.x to 5.x")
            benchmark._timer = self.clock
        self.warmup = warmup
        benchmark.pedantic(self.target, setup=self.setup, rounds=rounds, warmup_rounds=warmup)

    def measure(self, rounds: int, warmup: int = 2) -> list[float]:
        """The rounds' times in seconds, without pytest-benchmark (GPU time on CUDA)."""
        times = []
        for r in range(warmup + rounds):
            (i,), _ = self.setup()
            if self.cuda:
                before = self.clock.now
                self.target(i)
                elapsed = self.clock.now - before
            else:
                t0 = time.perf_counter()
                self.target(i)
                elapsed = time.perf_counter() - t0
            if r >= warmup:
                times.append(elapsed)
        return times

    def info(self) -> dict:
        """On CUDA, over the timed rounds: the median host time to enqueue the call, and
        in how many rounds the host outlasted the GPU headroom (their GPU time may then
        include waiting for the host: launch-bound)."""
        host = sorted(self.host_s[self.warmup:])
        if not host:
            return {}
        return {"host_us": round(host[len(host) // 2] * 1e6, 2),
                "launch_bound_rounds": sum(self.launch_bound[self.warmup:])}


def op_rounds(fn: Callable, mode: str, sets: list[InputSet], dev: torch.device) -> TimedCall:
    """A :class:`TimedCall` of ``fn`` in ``mode`` over the rotating input ``sets``.

    backward: each set's forward runs untimed a whole rotation before its backward (in the
    setup of the round after the set's previous backward), so the backward's inputs are
    as cold as the forward's.
    """
    k = len(sets)
    if mode == "forward":
        return TimedCall(lambda i: fn(*sets[i].leaves), k, dev)

    if mode == "full":
        def call(i):
            out = fn(*sets[i].leaves)
            out.backward(sets[i].grad_output)
            return out
        return TimedCall(call, k, dev, prepare=lambda i: sets[i].clear_grads())

    pending: list[torch.Tensor | None] = [None] * k

    def forward(j):
        sets[j].clear_grads()
        pending[j] = fn(*sets[j].leaves)

    for j in range(k):
        forward(j)

    def prepare(i):
        j = (i - 1) % k
        if pending[j] is None:
            forward(j)

    def call(i):
        out, pending[i] = pending[i], None
        out.backward(sets[i].grad_output)
        return out

    timed = TimedCall(call, k, dev, prepare=prepare)
    timed.pending = pending  # dropped with the TimedCall, freeing the graphs
    return timed


@dataclass
class CopyBandwidth:
    """A device-to-device copy ``dst.copy_(src)`` of a buffer far larger than L2."""

    nbytes: int
    median_s: float
    times: list[float] = field(default_factory=list)

    @property
    def bytes_moved(self) -> int:
        return 2 * self.nbytes  # read once, written once

    @property
    def gbps(self) -> float:
        return self.bytes_moved / self.median_s / 1e9


COPY_BYTES = 512 << 20


def copy_rounds(dev: torch.device, nbytes: int = COPY_BYTES) -> TimedCall:
    src = torch.rand(nbytes // 4, device=dev)
    dst = torch.empty_like(src)
    return TimedCall(lambda i: dst.copy_(src), 1, dev)


def measure_copy_bandwidth(dev: torch.device, nbytes: int = COPY_BYTES, rounds: int = 20) -> CopyBandwidth:
    times = sorted(copy_rounds(dev, nbytes).measure(rounds, warmup=3))
    return CopyBandwidth(nbytes, times[len(times) // 2], times)

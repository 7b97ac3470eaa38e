"""Model-only benchmarks: the editor network's forward, as a video frame needs it.

What is timed: :class:`fastwarp.models.EditorNet`'s forward at 128 px on one batch of
aligned crops (motion net, warp, texture net and ``warp_blend``: the ONNX graph of
:mod:`fastwarp.export`), without face detection, alignment or paste-back. Latency at
batch 1 (a live video frame) and throughput at batch 32, for the bundled weights
``base`` and ``lite`` (``lite`` is skipped, saying so, while its file is missing).

Providers (a run times one device, see harness.device()):

- ``torch-eager``: PyTorch eager, fastwarp's kernels (``backend="auto"``), under
  ``torch.inference_mode``; float32 on the CPU, float16 and channels_last on a GPU.
- ``torch-compile``: ``torch.compile`` of the same (GPU runs; on the CPU only with
  ``--bench-all``: its compilations alone would take minutes on 2 cores).
- ``onnxruntime-cpu``: the ONNX graph (opset 18, exported once per session to a temporary
  file) in ONNX Runtime's CPU provider, float32, with torch's thread count (CPU runs).
- ``tensorrt``: an fp16 TensorRT engine of the same graph (:mod:`fastwarp.export.tensorrt`,
  profile 1..32 tuned for the benchmark's batch, built once per session), where TensorRT
  and a GPU are present; fastwarp's own machines have no TensorRT, so it is skipped there.

Inputs rotate through sets together larger than the last-level cache and GPU rounds are
timed with CUDA events, as for the ops (harness.TimedCall); ``extra_info`` records the
weights, batch, dtype, ``frames_per_s`` (batch over the median) and ``ms_per_frame``.
Names ``test_model[<weights>-b<batch>-<provider>]`` are stable; ``bench/ratios.py`` prints
them as the model table with the real-time issue's target (GPU: base, batch 1, float16,
model + warp_blend within 2 ms per frame).

On the CPU a batch-32 call takes seconds, so there a benchmark runs as many rounds as fit
in ``MODEL_CPU_BUDGET_S`` (at least 3, at most ``--bench-rounds``); by hand::

    python -m pytest bench/test_bench_model.py -q --benchmark-enable --benchmark-json=/tmp/m.json
    python bench/ratios.py /tmp/m.json
"""

from __future__ import annotations

import itertools
import time

import pytest
import torch

import harness
from fastwarp.au import AU_NAMES
from fastwarp.models import WEIGHTS_DIR, EditorNet

WEIGHTS = ("base", "lite")
BATCHES = (1, 32)
MODEL_PROVIDERS = ("torch-eager", "torch-compile", "onnxruntime-cpu", "tensorrt")
MAX_BATCH = max(BATCHES)
MODEL_CPU_BUDGET_S = 10.0  # per benchmark on the CPU: rounds beyond it are dropped (at least 3 run)
ONNX_OPSET = 18


def _params():
    for weights, batch, provider in itertools.product(WEIGHTS, BATCHES, MODEL_PROVIDERS):
        yield pytest.param(weights, batch, provider, id=f"{weights}-b{batch}-{provider}")


def _skip_reason(weights: str, provider: str, dev: torch.device, bench_all: bool) -> str | None:
    if not (WEIGHTS_DIR / f"{weights}.safetensors").is_file():
        return (f"the {weights!r} weights are not in fastwarp/weights yet ({weights}.safetensors is missing); "
                "they are benchmarked once added")
    if provider == "torch-compile" and dev.type == "cpu" and not bench_all:
        return ("torch.compile of the model is timed on GPUs: on 2 CPU cores its compilations alone take minutes "
                "(--bench-all / FASTWARP_BENCH_ALL=1 times it anyway)")
    if provider == "onnxruntime-cpu":
        if dev.type != "cpu":
            return "ONNX Runtime's CPU provider is timed by CPU runs (this run benchmarks the GPU)"
        import importlib.util

        missing = [m for m in ("onnxruntime", "onnx", "onnxscript") if importlib.util.find_spec(m) is None]
        if missing:
            return f"onnxruntime-cpu needs {', '.join(missing)} (pinned in requirements.txt)"
    if provider == "tensorrt":
        if dev.type != "cuda":
            return "TensorRT engines run on a CUDA GPU (this run benchmarks the CPU)"
        from fastwarp.export.tensorrt import unavailable_reason

        reason = unavailable_reason()
        if reason:
            return reason.split(" Export ONNX")[0]
    return None


def _dtype(provider: str, dev: torch.device) -> torch.dtype:
    """float16 on GPUs (TensorRT: inside the engine; its inputs stay float32), float32 on the CPU."""
    if provider == "onnxruntime-cpu" or dev.type == "cpu":
        return torch.float32
    return torch.float16


# --- what each provider runs (built once per session, only the latest kept) ----------------

_CACHE: dict[tuple, object] = {}


def _cached(key: tuple, make):
    if key not in _CACHE:
        _CACHE.clear()  # one model / session / engine alive at a time
        if key[0] == "torch-compile":
            torch._dynamo.reset()
        _CACHE[key] = make()
    return _CACHE[key]


def _eager_model(weights: str, dev: torch.device, dtype: torch.dtype) -> EditorNet:
    model = EditorNet.load(weights).to(dev, dtype).eval()
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


@pytest.fixture(scope="session")
def onnx_files(tmp_path_factory):
    """The ONNX graph of each bundled weights, exported once per session."""
    from fastwarp.export import export_onnx

    folder, files = tmp_path_factory.mktemp("model-onnx"), {}

    def get(weights: str):
        if weights not in files:
            files[weights] = export_onnx(folder / f"{weights}.onnx", EditorNet.load(weights), opset=ONNX_OPSET)
        return files[weights]

    return get


@pytest.fixture(scope="session")
def engine_files(tmp_path_factory):
    """An fp16 TensorRT engine per weights and batch (profile 1..MAX_BATCH tuned for that
    batch), built once per session."""
    from fastwarp.export import export_tensorrt

    folder, files = tmp_path_factory.mktemp("model-trt"), {}

    def get(weights: str, batch: int):
        if (weights, batch) not in files:
            files[weights, batch] = export_tensorrt(folder / f"{weights}-b{batch}.engine", EditorNet.load(weights),
                                                    opset=ONNX_OPSET, max_batch=MAX_BATCH, opt_batch=batch)
        return files[weights, batch]

    return get


def _input_sets(batch: int, size: int, dev: torch.device, dtype: torch.dtype, channels_last: bool,
                set_bytes_hint: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Rotating inputs (image in [-1, 1], target and current AUs in 0..5), drawn in float32
    on the CPU, so every provider sees the same values."""
    k = harness.rotation_size(set_bytes_hint, dev)
    sets = []
    for seed in range(k):
        gen = torch.Generator().manual_seed(seed)
        image = torch.rand(batch, 3, size, size, generator=gen) * 2 - 1
        aus = torch.rand(batch, len(AU_NAMES), generator=gen) * 5
        source = torch.rand(batch, len(AU_NAMES), generator=gen) * 5
        image = image.to(dev, dtype)
        if channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        sets.append((image, aus.to(dev, dtype), source.to(dev, dtype)))
    return sets


def _call(provider: str, weights: str, batch: int, size: int, dev: torch.device, dtype: torch.dtype, request):
    """The timed function of ``provider`` and the number of input sets it rotates through:
    ``call(i)`` runs the model on input set ``i``."""
    nbytes = batch * (3 * size * size + 2 * len(AU_NAMES)) * torch.empty((), dtype=dtype).element_size()
    if provider in ("torch-eager", "torch-compile"):
        if provider == "torch-eager":
            fn = _cached((provider, weights, str(dev), dtype), lambda: _eager_model(weights, dev, dtype))
        else:  # one compilation per batch (dynamic=False), as a deployment would specialise
            fn = _cached((provider, weights, str(dev), dtype, batch),
                         lambda: torch.compile(_eager_model(weights, dev, dtype), dynamic=False))
        sets = _input_sets(batch, size, dev, dtype, dev.type == "cuda", nbytes)

        def call(i):
            with torch.inference_mode():
                return fn(*sets[i])
        return call, len(sets)

    if provider == "onnxruntime-cpu":
        import onnxruntime as ort

        path = request.getfixturevalue("onnx_files")(weights)

        def make_session():
            options = ort.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()
            options.inter_op_num_threads = 1
            return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        session = _cached(("onnxruntime-cpu", weights), make_session)
        sets = [{n: t.numpy() for n, t in zip(("image", "aus", "source_aus"), s)}
                for s in _input_sets(batch, size, torch.device("cpu"), torch.float32, False, nbytes)]
        return (lambda i: session.run(None, sets[i])), len(sets)

    if provider == "tensorrt":
        from fastwarp.export.tensorrt import TensorRTRunner

        path = request.getfixturevalue("engine_files")(weights, batch)
        runner = _cached(("tensorrt", weights, batch), lambda: TensorRTRunner(path))
        fp32 = batch * (3 * size * size + 2 * len(AU_NAMES)) * 4
        sets = _input_sets(batch, size, dev, torch.float32, False, fp32)
        return (lambda i: runner(*sets[i])), len(sets)
    raise ValueError(f"unknown provider {provider!r}")


def _rounds(bench_config, dev: torch.device, first_s: float) -> tuple[int, int]:
    """(rounds, warm-up rounds): the configured ones, but on the CPU no more than fit in
    MODEL_CPU_BUDGET_S, at least 3 (the untimed first call has warmed up already)."""
    rounds, warmup = bench_config.rounds, bench_config.warmup
    if dev.type != "cpu":
        return rounds, warmup
    fit = int(MODEL_CPU_BUDGET_S / max(first_s, 1e-6))
    if fit >= rounds + warmup:
        return rounds, warmup
    return max(3, min(rounds, fit)), min(warmup, 1)


@pytest.mark.parametrize("weights, batch, provider", list(_params()))
def test_model(benchmark, request, bench_config, weights, batch, provider):
    dev = bench_config.device
    reason = _skip_reason(weights, provider, dev, bench_config.all)
    if reason:
        pytest.skip(reason)
    dtype = _dtype(provider, dev)
    config = EditorNet.load(weights).config
    benchmark.group = f"model {weights} b{batch}"
    benchmark.extra_info.update(kind="model", weights=weights, batch=batch, provider=provider,
                                dtype=str(dtype).removeprefix("torch."), image_size=config.image_size,
                                map_size=getattr(config, "map_size", 0) or config.image_size,
                                layout="channels_last" if dev.type == "cuda" and provider.startswith("torch") else "NCHW")
    call, k = _call(provider, weights, batch, config.image_size, dev, dtype, request)
    benchmark.extra_info["input_sets"] = k

    # One untimed call: compiles (torch.compile, ONNX Runtime's first run) and says how
    # long a call takes, for the CPU's round budget.
    t0 = time.perf_counter()
    call(0)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    first_s = time.perf_counter() - t0
    rounds, warmup = _rounds(bench_config, dev, first_s)
    benchmark.extra_info.update(rounds_run=rounds, first_call_s=round(first_s, 3))

    timed = harness.TimedCall(call, k, dev)
    timed.run(benchmark, rounds, warmup)
    benchmark.extra_info.update(timed.info())
    if benchmark.stats:  # (benchmarks disabled: the call ran once, untimed)
        median = benchmark.stats.stats.median
        benchmark.extra_info.update(frames_per_s=round(batch / median, 2), ms_per_frame=round(median / batch * 1e3, 4))

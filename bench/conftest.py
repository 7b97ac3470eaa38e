"""Benchmark session set-up: options, the order benchmarks run in, a time budget, and the
record of where every result was measured.

The device, its model, the CPU, thread count and load, torch / CUDA / Triton / fastwarp
versions and the git commit go into pytest-benchmark's machine info (once per run, the
JSON's ``machine_info.fastwarp_env``) and into each benchmark's ``extra_info``, so numbers
copied out of a JSON file keep their context (bench/results/ outlives the machine).

Options (each also read from the environment, for make and bench/gpu_run.sh):

- ``--bench-rounds`` / ``FASTWARP_BENCH_ROUNDS``, ``--bench-warmup`` /
  ``FASTWARP_BENCH_WARMUP``: timed and warm-up rounds per benchmark (defaults: 20 and 3 on
  the CPU, 40 and 5 on a GPU; the end-to-end benchmarks: one round per 512x512 video and
  one warm-up round). The warm-up absorbs compilation (torch.compile, Triton).
- ``--bench-budget-s`` / ``FASTWARP_BENCH_BUDGET_S``: start no benchmark after this many
  seconds; the rest are skipped with that reason (a GPU lease is short, and a killed
  pytest would lose the JSON).
- ``--bench-all`` / ``FASTWARP_BENCH_ALL=1``: on the CPU, also the GPU-scale cases and
  bfloat16.
"""

from __future__ import annotations

import os
import time

import pytest

import harness


def pytest_addoption(parser):
    group = parser.getgroup("fastwarp benchmarks")
    group.addoption("--bench-rounds", type=int, default=None, help="timed rounds per benchmark")
    group.addoption("--bench-warmup", type=int, default=None, help="warm-up rounds per benchmark")
    group.addoption("--bench-budget-s", type=float, default=None,
                    help="start no benchmark after this many seconds (the rest are skipped)")
    group.addoption("--bench-all", action="store_true", default=False,
                    help="on the CPU, also run the GPU-scale cases and bfloat16")


def _option(config, name: str, env: str, cast):
    value = config.getoption(name)
    if value is None and os.environ.get(env):
        value = cast(os.environ[env])
    return value


class BenchConfig:
    def __init__(self, config):
        self.device = harness.device()
        gpu = self.device.type == "cuda"
        rounds = _option(config, "--bench-rounds", "FASTWARP_BENCH_ROUNDS", int)
        self.rounds_given = rounds is not None  # the end-to-end benchmarks default to one round per video
        self.rounds = rounds or (40 if gpu else 20)
        warmup = _option(config, "--bench-warmup", "FASTWARP_BENCH_WARMUP", int)
        self.warmup = warmup if warmup is not None else (5 if gpu else 3)
        self.budget_s = _option(config, "--bench-budget-s", "FASTWARP_BENCH_BUDGET_S", float)
        self.all = config.getoption("--bench-all") or os.environ.get("FASTWARP_BENCH_ALL") == "1"
        self.started = time.monotonic()


def pytest_configure(config):
    config._fastwarp_bench = BenchConfig(config)


@pytest.fixture(scope="session")
def bench_config(request) -> BenchConfig:
    return request.config._fastwarp_bench


def pytest_collection_modifyitems(config, items):
    # What a short GPU lease must not lose runs first: the copy (every bandwidth fraction
    # needs it), then the ops' own kernels and the eager reference, then the compiled
    # reference, whose compilations (one per op, case and dtype) take most of the time:
    # float32 before bfloat16, cases in harness.CASES order, both ops of a case together.
    case_rank = {c.id: i for i, c in enumerate(harness.CASES)}

    def rank(item):
        params = getattr(getattr(item, "callspec", None), "params", {})
        if params.get("provider") != "compiled-reference":
            return (item.originalname != "test_copy_bandwidth", False)
        return (True, True, params["dtype"] != "float32", case_rank[params["case_id"]], params["op"])

    items.sort(key=rank)  # stable: the order within each rank is the parametrisation's


def pytest_runtest_setup(item):
    cfg = item.config._fastwarp_bench
    if cfg.budget_s is not None and "benchmark" in getattr(item, "fixturenames", ()):
        elapsed = time.monotonic() - cfg.started
        if elapsed > cfg.budget_s:
            pytest.skip(f"time budget of {cfg.budget_s:.0f} s spent (--bench-budget-s / FASTWARP_BENCH_BUDGET_S)")


# --- results' context ----------------------------------------------------------------------

def pytest_benchmark_update_machine_info(config, machine_info):
    env = dict(harness.environment())
    env["loadavg_at_end"] = list(os.getloadavg())
    env["rounds"], env["warmup"] = config._fastwarp_bench.rounds, config._fastwarp_bench.warmup
    copy = getattr(config, "_fastwarp_copy", None)
    if copy is not None:
        env["copy_gbps"] = round(copy.gbps, 1)
    machine_info["fastwarp_env"] = env


# Fields whose difference makes a comparison with a baseline meaningless.
_HARDWARE = ("device", "device_kind", "gpu", "cpu", "cpus", "threads", "torch", "cuda", "triton")


@pytest.hookimpl(tryfirst=True)
def pytest_benchmark_compare_machine_info(config, benchmarksession, machine_info, compared_benchmark):
    # pytest-benchmark's own check warns on any difference at all (commit, load, CPU
    # flags), printing both machine infos whole; say what differs that matters instead,
    # then give its check the current info so it stays quiet.
    now = machine_info.get("fastwarp_env", {})
    then = compared_benchmark.get("machine_info", {}).get("fastwarp_env", {})
    changed = [f"{k}: baseline {then.get(k)!r}, now {now.get(k)!r}" for k in _HARDWARE if now.get(k) != then.get(k)]
    if changed:
        benchmarksession.logger.warning("the baseline was measured on other hardware or software; "
                                        "its comparison means little: " + "; ".join(changed))
    compared_benchmark["machine_info"] = machine_info


def _cpu_seconds() -> tuple[float, float] | None:
    """(CPU seconds all processes have used, of which this process), or None off Linux."""
    try:
        fields = [int(v) for v in open("/proc/stat").readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal: all but idle and iowait are cores
    # taken (steal: by other virtual machines).
    busy = sum(fields[:8]) - fields[3] - fields[4]
    mine = os.times()
    return busy / os.sysconf("SC_CLK_TCK"), mine.user + mine.system


@pytest.fixture(autouse=True)
def _record_environment(request):
    if "benchmark" not in request.fixturenames:
        yield
        return
    benchmark = request.getfixturevalue("benchmark")
    env = harness.environment()
    benchmark.extra_info.update({k: env[k] for k in ("device", "device_kind", "cpu", "gpu", "threads", "torch",
                                                     "cuda", "triton", "commit")})
    # Other processes on the same cores distort CPU timings badly (OpenMP threads wait at
    # barriers for descheduled peers). The 1-min load average counts this run's own
    # threads too; other_cpus is the cores other processes kept busy while the benchmark
    # ran (compile workers of torch.compile, in the warm-up, count among them).
    benchmark.extra_info["loadavg_1min"] = os.getloadavg()[0]
    before, t0 = _cpu_seconds(), time.monotonic()
    yield
    after, wall = _cpu_seconds(), time.monotonic() - t0
    if before and after and wall > 0:
        others = (after[0] - before[0]) - (after[1] - before[1])
        benchmark.extra_info["other_cpus"] = round(max(others, 0.0) / wall, 2)


@pytest.fixture(scope="session")
def copy_bandwidth(request, bench_config):
    """The device-to-device copy bandwidth of this run's GPU (a CopyBandwidth), measured
    once; the bandwidth fraction of every GPU benchmark is relative to it."""
    if bench_config.device.type != "cuda":
        pytest.skip("copy bandwidth is measured on GPU runs only")
    copy = harness.measure_copy_bandwidth(bench_config.device)
    request.config._fastwarp_copy = copy
    return copy


@pytest.fixture(scope="module")
def photo(request):
    """The face set's photo named by the benchmark module's ``PHOTO`` (uint8 BGR); skips where
    it is missing (:func:`harness.face_photo`)."""
    return harness.face_photo(request.module.PHOTO)

"""Benchmark environment: every result records where and on what it ran.

The device (CPU model, GPU name where CUDA is usable), torch and fastwarp versions, the
thread count and the git commit go into pytest-benchmark's machine info (once per run,
in the JSON's "machine_info") and into each benchmark's ``extra_info``, so numbers
copied out of a JSON file keep their context (bench/results/ outlives the machine).
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from pathlib import Path

import pytest
import torch

import fastwarp

ROOT = Path(__file__).resolve().parents[1]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(*args: str) -> str:
    # Read-only queries; --no-optional-locks keeps `git status` from touching the index
    # while others work in the same tree.
    try:
        return subprocess.run(["git", "--no-optional-locks", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


@functools.lru_cache(maxsize=None)
def environment() -> dict:
    commit = _git("rev-parse", "HEAD") or "unknown"
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no", "--", "csrc", "fastwarp", "setup.py"))
    cuda = fastwarp.backends()["cuda"]
    return {
        "cpu": _cpu_model(),
        "gpu": torch.cuda.get_device_name() if cuda else None,
        "torch": torch.__version__,
        "fastwarp": fastwarp.__version__,
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "commit": commit + ("+dirty" if dirty else ""),
    }


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["fastwarp_env"] = environment()


@pytest.fixture(autouse=True)
def _record_environment(request):
    if "benchmark" in request.fixturenames:
        benchmark = request.getfixturevalue("benchmark")
        benchmark.extra_info.update(environment())
        # Other processes on the same cores distort CPU timings badly (OpenMP threads wait
        # at barriers for descheduled peers): the load before each benchmark tells.
        benchmark.extra_info["loadavg_1min"] = os.getloadavg()[0]

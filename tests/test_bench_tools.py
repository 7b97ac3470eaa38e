"""Tests of the benchmark tooling that decides things: which baseline a run is compared with
(bench/gate.py: machine keys, the gate's mode, the ratio gate), which GPU tests a short lease
runs first (bench/gpu_tests.py), and bench/gpu_run.sh's plan, rehearsed with --dry-run.
All on synthetic results and stand-in steps: nothing here times anything.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import gate  # noqa: E402
import gpu_tests  # noqa: E402

GPU_RUN = ROOT / "bench" / "gpu_run.sh"
DEVICE_CALL_LIMIT_S = 600  # the longest command a GPU lease runs (its timeout_s)


def cpu_info(model: str, cpus: int, **extra) -> dict:
    return {"fastwarp_env": {"device": "cpu", "cpu": model, "cpus": cpus, "gpu": None, **extra}}


def gpu_info(name: str) -> dict:
    return {"fastwarp_env": {"device": "cuda", "cpu": "AMD EPYC 9654", "cpus": 16, "gpu": name}}


def bench(group: str, provider: str, median: float) -> dict:
    return {"group": group, "name": f"test_op[{group}-{provider}]", "fullname": f"bench::{group}::{provider}",
            "extra_info": {"provider": provider}, "stats": {"median": median, "min": median * 0.9}}


def results(info: dict, benchmarks: list[dict]) -> dict:
    return {"machine_info": info, "benchmarks": benchmarks}


def write(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


# --- machine keys ------------------------------------------------------------------------------

@pytest.mark.parametrize("model, cpus, key", [
    ("AMD EPYC", 2, "cpu-amd-epyc-2c"),
    ("Intel(R) Xeon(R) Processor", 2, "cpu-intel-xeon-2c"),
    ("Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz", 8, "cpu-intel-xeon-platinum-8481c-8c"),
    ("AMD Ryzen 9 5950X 16-Core Processor", 32, "cpu-amd-ryzen-9-5950x-32c"),
])
def test_cpu_key_names_the_model_and_cores(model, cpus, key):
    assert gate.machine_key(cpu_info(model, cpus)) == key


def test_cores_usable_by_the_process_decide_over_the_machines():
    assert gate.machine_key(cpu_info("AMD EPYC", 64, cpus_available=2)) == "cpu-amd-epyc-2c"


@pytest.mark.parametrize("name, key", [("NVIDIA H200", "h200"), ("NVIDIA H100 80GB HBM3", "h100-80gb-hbm3"),
                                       ("NVIDIA H100 PCIe", "h100-pcie")])
def test_gpu_key_is_the_gpu_not_its_host(name, key):
    assert gate.machine_key(gpu_info(name)) == key
    assert gate.device_type(gpu_info(name)) == "cuda"


def test_files_from_before_fastwarp_env_are_keyed_by_py_cpuinfo():
    info = {"cpu": {"brand_raw": "AMD EPYC", "count": 2}, "fastwarp_env": {"cpu": None, "gpu": None}}
    assert gate.machine_key(info) == "cpu-amd-epyc-2c"


def test_the_committed_cpu_baseline_is_keyed_by_its_metadata():
    found = gate.baselines(ROOT / "bench" / "results")
    keys = {path.name: gate.machine_key(info) for path, info in found.items()}
    assert keys.get("cpu-amd-epyc-2c-baseline.json") == "cpu-amd-epyc-2c"
    assert all(name == f"{key}-baseline.json" for name, key in keys.items())


# --- the gate's decision -----------------------------------------------------------------------

def test_a_baseline_of_this_machine_gates_absolute_times(tmp_path):
    write(tmp_path / "cpu-amd-epyc-2c-baseline.json", results(cpu_info("AMD EPYC", 2), []))
    write(tmp_path / "cpu-intel-xeon-2c-baseline.json", results(cpu_info("Intel(R) Xeon(R) Processor", 2), []))
    g = gate.decide(tmp_path, cpu_info("Intel(R) Xeon(R) Processor", 2))
    assert (g.mode, g.baseline.name, g.key) == ("absolute", "cpu-intel-xeon-2c-baseline.json", "cpu-intel-xeon-2c")


def test_a_baseline_under_an_old_name_is_found_by_its_metadata(tmp_path):
    write(tmp_path / "cpu-baseline.json", results(cpu_info("AMD EPYC", 2), []))
    g = gate.decide(tmp_path, cpu_info("AMD EPYC", 2))
    assert (g.mode, g.baseline.name) == ("absolute", "cpu-baseline.json")


def test_a_file_named_for_this_machine_but_recorded_elsewhere_is_not_its_baseline(tmp_path):
    write(tmp_path / "cpu-intel-xeon-2c-baseline.json", results(cpu_info("AMD EPYC", 2), []))
    g = gate.decide(tmp_path, cpu_info("Intel(R) Xeon(R) Processor", 2))
    assert (g.mode, g.baseline_key) == ("ratios", "cpu-amd-epyc-2c")


def test_same_cpu_other_core_count_is_another_machine(tmp_path):
    write(tmp_path / "cpu-amd-epyc-2c-baseline.json", results(cpu_info("AMD EPYC", 2), []))
    g = gate.decide(tmp_path, cpu_info("AMD EPYC", 8))
    assert (g.key, g.mode, g.baseline.name) == ("cpu-amd-epyc-8c", "ratios", "cpu-amd-epyc-2c-baseline.json")


def test_an_unknown_cpu_takes_ratios_from_a_cpu_baseline_with_as_many_cores(tmp_path):
    write(tmp_path / "cpu-a-16c-baseline.json", results(cpu_info("A", 16), []))
    write(tmp_path / "cpu-b-2c-baseline.json", results(cpu_info("B", 2), []))
    write(tmp_path / "h200-baseline.json", results(gpu_info("NVIDIA H200"), []))
    g = gate.decide(tmp_path, cpu_info("C", 2))
    assert (g.mode, g.baseline.name) == ("ratios", "cpu-b-2c-baseline.json")
    g = gate.decide(tmp_path, cpu_info("C", 4))
    assert (g.mode, g.baseline.name) == ("ratios", "cpu-a-16c-baseline.json")  # first by name


def test_a_gpu_never_compares_with_a_cpu_baseline(tmp_path):
    write(tmp_path / "cpu-amd-epyc-2c-baseline.json", results(cpu_info("AMD EPYC", 2), []))
    write(tmp_path / "broken-baseline.json", results({}, [])).write_text("{not json")
    assert gate.decide(tmp_path, gpu_info("NVIDIA H200")).mode == "none"
    write(tmp_path / "h100-pcie-baseline.json", results(gpu_info("NVIDIA H100 PCIe"), []))
    g = gate.decide(tmp_path, gpu_info("NVIDIA H200"))
    assert (g.key, g.mode, g.baseline_key) == ("h200", "ratios", "h100-pcie")


# --- the ratio gate ----------------------------------------------------------------------------

G = "warp forward 8x3x256x256 float32"


def run_on(info: dict, fastwarp_s: float, reference_s: float, group: str = G) -> dict:
    return results(info, [bench(group, "fastwarp-cpu", fastwarp_s), bench(group, "reference", reference_s),
                          bench(group, "compiled-reference", fastwarp_s / 10)])


def test_ratios_are_taken_within_one_run():
    data = run_on(cpu_info("X", 2), 1.0, 2.0)
    data["benchmarks"] += [bench("composite 1080p face 400", "composite", 1.0),
                           bench("composite 1080p face 400", "chain", 5.0), bench("copy", "torch-copy", 1.0)]
    assert gate.ratios(data) == {(G, "fastwarp-cpu", "reference"): 2.0,
                                 ("composite 1080p face 400", "composite", "chain"): 5.0}
    assert gate.ratios(data, "min") == gate.ratios(data)  # both stats scale alike here


@pytest.mark.parametrize("fastwarp_s, failed", [(1.0, False), (1.3, False), (1.4, True), (0.5, False)])
def test_the_ratio_gate_ignores_the_machines_speed_and_fails_on_a_lower_ratio(fastwarp_s, failed):
    # The other machine is 3x slower at everything; only fastwarp / reference counts.
    there = run_on(cpu_info("Slow", 2), 3.0, 6.0)
    here = run_on(cpu_info("Fast", 2), fastwarp_s, 2.0)
    lines, bad = gate.ratio_gate(here, there, ("median", 25.0))
    assert bool(bad) == failed
    assert any("REGRESSED" in line for line in lines) == failed
    assert "cpu-slow-2c" in lines[0]
    row = next(line for line in lines if line.startswith(G))
    assert row.split()[-2 if failed else -1] == f"{(2.0 / fastwarp_s) / 2.0 * 100 - 100:+.0f}%"


def test_rows_of_one_run_only_never_fail():
    there = run_on(cpu_info("A", 2), 1.0, 2.0, group="warp backward 8x3x128x128 float32")
    here = run_on(cpu_info("B", 2), 1.0, 2.0)
    lines, bad = gate.ratio_gate(here, there, ("median", 25.0))
    assert not bad
    assert any(line.rstrip().endswith("new") for line in lines)
    assert any(line.rstrip().endswith("not run") for line in lines)
    lines, bad = gate.ratio_gate(results(cpu_info("B", 2), []), there, ("median", 25.0))
    assert not bad and lines[-1].startswith("0 of 0 ratio(s)")
    lines, bad = gate.ratio_gate(results(cpu_info("B", 2), []), results(cpu_info("A", 2), []), ("median", 25.0))
    assert not bad and "no ratio to judge" in lines[-1]


# --- the GPU lease's test subsets --------------------------------------------------------------

def synthetic_ids() -> list[str]:
    ids = []
    for backend, op, dtype, layout, shape in itertools.product(
            ("cpu", "cuda", "triton"), ("warp", "warp_blend"), ("torch.float64", "torch.float32"),
            ("contiguous", "channels_last", "strided"), ("2x3x1x1", "1x3x17x19", "5x3x123x77")):
        ids.append(f"tests/test_ops.py::test_forward_matches_reference[{op}-{layout}-{dtype}-{backend}-{shape}]")
    for backend in ("cpu", "cuda", "triton"):
        ids += [f"tests/test_ops.py::test_deterministic_backward[{backend}-torch.float32-warp]",
                f"tests/test_ops.py::test_compile_fullgraph_matches_eager[{backend}-border]",
                f"tests/test_ops.py::test_bad_input_raises[{backend}-flow-rank]"]
    return ids


def test_core_subset_is_a_pairwise_cover_of_each_gpu_backend():
    ids = synthetic_ids()
    kept = gpu_tests.select(ids, "core")
    assert kept == [i for i in ids if i in kept]  # collection order
    for backend in ("cuda", "triton"):
        mine = [gpu_tests.split_id(i)[1] for i in kept if gpu_tests.gpu_backend(gpu_tests.split_id(i)[1]) == backend]
        everything = [gpu_tests.split_id(i)[1] for i in ids if f"-{backend}-" in i and "forward_matches" in i]
        assert 9 <= len(mine) <= len(everything) / 2  # 3 layouts x 3 shapes at least, far fewer than all
        wanted = {p for t in everything for p in itertools.combinations(enumerate(t), 2)}
        got = {p for t in mine for p in itertools.combinations(enumerate(t), 2)}
        assert wanted == got
    assert not [i for i in kept if "-cpu-" in i or "compile" in i or "bad_input" in i or "determinis" in i]


def test_determinism_subset_keeps_every_gpu_case():
    assert gpu_tests.select(synthetic_ids(), "determinism") == [
        "tests/test_ops.py::test_deterministic_backward[cuda-torch.float32-warp]",
        "tests/test_ops.py::test_deterministic_backward[triton-torch.float32-warp]"]
    with pytest.raises(ValueError, match="--gpu-subset must be one of core, determinism, got 'all'"):
        gpu_tests.select([], "all")


def test_the_plugin_deselects_in_a_real_collection():
    env = dict(os.environ, PYTHONPATH=str(ROOT / "bench"))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "gpu_tests",
                           "--gpu-subset", "core", "--collect-only", "-q", "tests/test_theta.py"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ids = [line for line in proc.stdout.splitlines() if "::" in line]
    assert ids and all(gpu_tests.gpu_backend(gpu_tests.split_id(i)[1]) for i in ids)
    assert "deselected" in proc.stdout


# --- bench/gpu_run.sh, rehearsed ---------------------------------------------------------------

def dry_run(tmp_path: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(GPU_RUN), "--dry-run", *args], cwd=ROOT, capture_output=True, text=True, check=False,
                          timeout=120, env={**os.environ, "OUT": str(out), **env})
    steps = (out / "steps.txt").read_text().splitlines()
    return proc, steps


def plan(steps: list[str]) -> dict[str, int]:
    line = next(s for s in steps if s.startswith("plan: "))
    return {name: int(seconds) for name, seconds in
            (part.rsplit(" ", 2)[:2] for part in line.removeprefix("plan: ").split(", "))}


def step_lines(steps: list[str]) -> list[str]:
    return [s.split(":")[0].removeprefix("step ") for s in steps if s.startswith("step ")]


def test_dry_run_plans_the_prioritised_steps_within_a_device_call(tmp_path):
    proc, steps = dry_run(tmp_path)
    assert proc.returncode == 0, proc.stderr
    order = ["deps", "build", "tests", "determinism", "memcheck", "bench"]
    budgets = plan(steps)
    assert list(budgets) == order
    assert step_lines(steps) == order
    # The machine's start (2-4 min) and the copies back need the rest of a 15-minute lease.
    assert sum(budgets.values()) <= 540 <= DEVICE_CALL_LIMIT_S - 30
    assert budgets["bench"] >= 60
    for name, limit in budgets.items():
        line = next(s for s in steps if s.startswith(f"step {name}:"))
        assert f"of {limit} s" in line and "rc=0" in line
    assert steps[-1] == "done: 540 s of 540 s"  # every step counted as its whole limit
    out = tmp_path / "out"
    assert len(list(out.iterdir())) <= 8  # what a lease returns
    for name in order[1:]:
        assert "dry run: would run: " in (out / f"{name}.log").read_text()
    assert "--gpu-subset core" in (out / "tests.log").read_text()
    assert "sanitize_cuda.py --quick" in (out / "memcheck.log").read_text()
    assert "TORCH_CUDA_ARCH_LIST=<this GPU's compute_cap>" in proc.stdout


def test_dry_run_of_the_full_suite_is_its_own_call(tmp_path):
    proc, steps = dry_run(tmp_path, "--full-tests")
    assert proc.returncode == 0, proc.stderr
    assert list(plan(steps)) == step_lines(steps) == ["deps", "build", "tests-full"]
    assert sum(plan(steps).values()) <= DEVICE_CALL_LIMIT_S - 30
    assert "-m 'needs_cuda or triton'" in (tmp_path / "out" / "tests-full.log").read_text()


def test_limits_that_leave_the_last_step_too_little_are_refused(tmp_path):
    proc = subprocess.run(["bash", str(GPU_RUN), "--dry-run"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "OUT": str(tmp_path), "BUILD_LIMIT_S": "480"})
    assert proc.returncode == 2
    assert "leave bench under 60 s of GPU_RUN_BUDGET_S=540" in proc.stderr
    proc = subprocess.run(["bash", str(GPU_RUN), "--bogus"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=False)
    assert (proc.returncode, proc.stderr.strip()) == (
        2, "gpu_run.sh: unknown argument '--bogus' (expected --dry-run, --full-tests or --help)")


def test_a_hung_step_is_stopped_at_its_limit_and_the_next_steps_run(tmp_path):
    proc, steps = dry_run(tmp_path, GPU_RUN_DRY_HANG="tests", TESTS_LIMIT_S="2", GPU_RUN_MIN_STEP_S="1")
    assert proc.returncode == 0, proc.stderr
    tests = next(s for s in steps if s.startswith("step tests:"))
    assert "rc=124 (time limit)" in tests
    assert step_lines(steps) == ["deps", "build", "tests", "determinism", "memcheck", "bench"]


def test_results_are_in_out_after_each_step_while_a_later_one_runs(tmp_path):
    # The lease's own limit kills everything at once: what finished must already be in $OUT.
    out = tmp_path / "out"
    proc = subprocess.Popen(["bash", str(GPU_RUN), "--dry-run"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "OUT": str(out), "GPU_RUN_DRY_HANG": "bench"})
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (out / "bench.log").exists():
            time.sleep(0.1)
        assert (out / "bench.log").exists(), "the bench step never started"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    steps = (out / "steps.txt").read_text().splitlines()
    assert step_lines(steps) == ["deps", "build", "tests", "determinism", "memcheck"]
    assert all((out / f"{name}.log").is_file() for name in ("build", "tests", "determinism", "memcheck"))

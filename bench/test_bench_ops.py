"""Benchmarks of fastwarp's ops against their pure-PyTorch reference, eager and compiled.

Providers (``harness.PROVIDERS``): ``fastwarp-cuda``, ``fastwarp-triton``, ``fastwarp-cpu``
(the op's kernels, chosen with ``backend=`` where the ops take it), ``reference``
(``fastwarp.reference``: F.interpolate + F.grid_sample, eager) and ``compiled-reference``
(``torch.compile`` of the same). A run benchmarks one device (a GPU where one is visible,
else the CPU; ``FASTWARP_BENCH_DEVICE`` overrides); providers that cannot run there are
skipped with the reason: on a CPU, fastwarp-cpu, reference and compiled-reference (Triton
only under ``TRITON_INTERPRET=1``); on a GPU, fastwarp-cuda, fastwarp-triton, reference and
compiled-reference.

Modes: ``forward`` (inputs requiring grad, as in training), ``backward`` (only
``out.backward(grad_output)``, all input gradients; the forward runs untimed) and
``full`` (forward and backward together). Inputs rotate so that every call reads them
cold from memory, and GPU rounds are timed with CUDA events (see harness.py).

Each benchmark records in ``extra_info`` the bytes its call must move (each input read
once, each output written once) and the GB/s it reached; on a GPU also that as a fraction
of the device-to-device copy measured in the same run (``test_copy_bandwidth``) and the
host's time to enqueue the call (``host_us``).

Benchmarks of one op, mode, case and dtype share a group; names
(``test_op[<op>-<mode>-<case>-<dtype>-<provider>]``) are stable, so a run compares with
a saved baseline by name. Run through ``make bench`` (``bench/run.py``); by hand::

    python -m pytest bench -q --benchmark-enable --benchmark-json=/tmp/b.json -k "warp-forward-8x3x256x256"
    python bench/ratios.py /tmp/b.json
"""

from __future__ import annotations

import itertools

import pytest
import torch

import harness
from harness import CASES, CASES_BY_ID, DTYPES, MODES, OPS, PROVIDERS


def _params():
    # Providers innermost: the benchmarks of one group run one after another on one set
    # of inputs (conftest moves the compiled reference to the end).
    for op, case, dtype, mode, provider in itertools.product(OPS, CASES, DTYPES, MODES, PROVIDERS):
        yield pytest.param(op, mode, case.id, dtype, provider, id=f"{op}-{mode}-{case.id}-{dtype}-{provider}")


_INPUTS: dict[tuple, list[harness.InputSet]] = {}


def _input_sets(op: str, case: harness.Case, dtype: torch.dtype, dev: torch.device) -> list[harness.InputSet]:
    """The rotation of input sets for one op, case and dtype, shared by its providers and
    modes (only the latest is kept)."""
    key = (op, case.id, dtype, str(dev))
    if key not in _INPUTS:
        _INPUTS.clear()
        first = harness.make_input_set(op, case, dtype, dev, seed=0)
        k = harness.rotation_size(first.nbytes, dev)
        _INPUTS[key] = [first] + [harness.make_input_set(op, case, dtype, dev, seed=s) for s in range(1, k)]
    return _INPUTS[key]


def _record_speed(benchmark, nbytes: int, copy: harness.CopyBandwidth | None) -> None:
    if not benchmark.stats:  # benchmarks disabled: the call ran once, untimed
        return
    median = benchmark.stats.stats.median
    gbps = nbytes / median / 1e9
    benchmark.extra_info["gbps"] = round(gbps, 2)
    if copy is not None:
        benchmark.extra_info["copy_gbps"] = round(copy.gbps, 1)
        benchmark.extra_info["copy_fraction"] = round(gbps / copy.gbps, 4)


@pytest.mark.parametrize("op, mode, case_id, dtype, provider", list(_params()))
def test_op(benchmark, request, bench_config, op, mode, case_id, dtype, provider):
    dev = bench_config.device
    case = CASES_BY_ID[case_id]
    reason = harness.unavailable_reason(provider, dev)
    if reason:
        pytest.skip(reason)
    if dev.type == "cpu" and not bench_config.all:
        if not case.cpu:
            pytest.skip(harness.CPU_SKIP_CASE)
        if dtype != "float32":
            pytest.skip(harness.CPU_SKIP_DTYPE)
    deterministic = provider.endswith(harness.DETERMINISTIC_SUFFIX)
    if deterministic and mode == "forward":
        pytest.skip("the deterministic flag changes only the backward: forward is fastwarp-cuda's")
    try:
        fn = harness.op_function(provider, op, (case.id, dtype))
    except harness.Unavailable as exc:
        pytest.skip(str(exc))

    torch_dtype = getattr(torch, dtype)
    nbytes = harness.bytes_moved(op, mode, case, torch_dtype)
    benchmark.group = f"{op} {mode} {case.id} {dtype}"
    benchmark.extra_info.update(op=op, mode=mode, case=case.id, shape=[case.N, case.C, case.H, case.W],
                                grid=[case.h, case.w], dtype=dtype, provider=provider, bytes=nbytes)
    copy = request.getfixturevalue("copy_bandwidth") if dev.type == "cuda" else None

    sets = _input_sets(op, case, torch_dtype, dev)
    benchmark.extra_info.update(input_sets=len(sets), set_bytes=sets[0].nbytes)
    timed = harness.op_rounds(fn, mode, sets, dev)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(deterministic or was_deterministic)
        timed.run(benchmark, bench_config.rounds, bench_config.warmup)
        benchmark.extra_info.update(timed.info())
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
        del timed  # with it the pending forward graphs of backward mode
        for s in sets:
            s.clear_grads()
    _record_speed(benchmark, nbytes, copy)


def test_copy_bandwidth(benchmark, bench_config, copy_bandwidth):
    """``dst.copy_(src)`` of a buffer far beyond L2: the bandwidth ceiling the ops'
    fractions are given against (bytes moved: read once plus written once)."""
    dev = bench_config.device
    timed = harness.copy_rounds(dev)
    benchmark.group = "copy"
    nbytes = 2 * harness.COPY_BYTES
    benchmark.extra_info.update(op="copy", mode="forward", provider="torch-copy", dtype="float32", bytes=nbytes)
    timed.run(benchmark, bench_config.rounds, bench_config.warmup)
    _record_speed(benchmark, nbytes, copy_bandwidth)

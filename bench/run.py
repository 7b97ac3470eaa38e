"""Runs the benchmarks of this machine's device, guards against latency regressions and
prints the ratio table (``make bench``, ``make bench-baseline``, bench/gpu_run.sh).

1. The device: a GPU where one is visible, else the CPU (``--device`` or
   ``FASTWARP_BENCH_DEVICE`` choose); the machine's key (bench/gate.py: ``cpu-<model>-<N>c``
   or the GPU's name, e.g. ``cpu-amd-epyc-2c``, ``h200``) names the files.
2. The gate (bench/gate.py): with ``bench/results/<key>-baseline.json`` (or a baseline
   whose metadata names this machine), pytest runs with ``--benchmark-compare=<it>
   --benchmark-compare-fail=<--fail>``: a benchmark slower than there by more than that
   fails the run. On a machine without one, absolute times are not compared: where another
   machine of the same device type has a baseline, each ratio against the reference
   measured in this run must stay within ``--fail`` of that machine's ratio; where none
   has, the run reports and passes.
3. The ratio table of bench/ratios.py, with each row's change against the baseline and
   issue 3's targets; then, on an unknown machine, the ratio gate's table.

``--record-baseline`` runs without comparing and saves the run as this machine's
baseline; ``--promote`` saves the latest run as the baseline without running anything;
``--show-gate`` prints the machine's key and what the run would be judged against. Arguments
run.py does not know go to pytest (``-k``, ``--bench-rounds``, ``--bench-budget-s``, ...).

Usage: python bench/run.py [--fail median:25%] [--record-baseline | --promote | --show-gate]
                           [--device cpu|cuda] [--results-dir DIR] [--copy-to DIR] [PYTEST ARGS]
Exit status: pytest's (non-zero on a failed benchmark or a regression), 1 when the ratio gate
fails, else 0.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import gate
import harness
import ratios

ROOT = harness.ROOT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--fail", default="median:25%", type=str,
                        help="regression threshold STAT:PCT%% for --benchmark-compare-fail (default: median:25%%)")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--record-baseline", action="store_true", help="run, then save the run as the baseline")
    what.add_argument("--promote", action="store_true", help="save the latest run as the baseline; run nothing")
    what.add_argument("--show-gate", action="store_true",
                      help="print this machine's key and what a run would be judged against; run nothing")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="device to benchmark (default: GPU if visible)")
    parser.add_argument("--results-dir", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--copy-to", type=Path, help="also copy the JSON file(s) and the ratio table here")
    parser.add_argument("--pytest-table", action="store_true", help="also print pytest-benchmark's own tables")
    args, pytest_args = parser.parse_known_args(argv)
    ratios.parse_fail(args.fail)  # fail early on a malformed threshold

    if args.device:
        os.environ["FASTWARP_BENCH_DEVICE"] = args.device
    results = args.results_dir.resolve()
    results.mkdir(parents=True, exist_ok=True)
    decision = gate.decide(results, {"fastwarp_env": harness.environment()})
    key = decision.key
    latest, baseline = results / f"{key}-latest.json", results / f"{key}-baseline.json"
    rel = lambda p: os.path.relpath(p, ROOT)  # noqa: E731  (pytest-benchmark prints what it was given)

    if args.show_gate:
        print(f"bench: {decision.describe(args.fail)}")
        return 0
    if args.promote:
        if not latest.is_file():
            print(f"bench: no {rel(latest)} to promote: run make bench first", file=sys.stderr)
            return 2
        shutil.copyfile(latest, baseline)
        print(f"bench: {rel(latest)} is now the baseline {rel(baseline)}")
        return 0

    cmd = [sys.executable, "-m", "pytest", "bench", "-q", "--benchmark-enable", "--benchmark-group-by=group",
           f"--benchmark-json={rel(latest)}"]
    if not args.pytest_table:
        cmd.append("--benchmark-quiet")  # ratios.py prints the table that matters
    mode = "record" if args.record_baseline else decision.mode
    if mode == "absolute":
        cmd += [f"--benchmark-compare={rel(decision.baseline)}", f"--benchmark-compare-fail={args.fail}"]
    if mode == "record":
        print(f"bench: {key}: recording a new baseline {rel(baseline)}")
    else:
        print(f"bench: {decision.describe(args.fail)}")
    cmd += pytest_args
    print("bench: " + " ".join(cmd), flush=True)
    if latest.exists():
        latest.unlink()  # so a crashed run leaves no stale results to report
    rc = _run_pytest(cmd)

    if not latest.is_file():
        print(f"bench: pytest exited with {rc} and wrote no {rel(latest)}", file=sys.stderr)
        return rc or 1
    print(f"\nbench: results in {rel(latest)}\n")
    compare = mode == "absolute"
    ratio_args = [str(latest)] + (["--compare", str(decision.baseline), "--fail", args.fail] if compare else [])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        ratios.main(ratio_args)
    gate_failed = []
    if mode == "ratios":
        lines, gate_failed = gate.ratio_gate(ratios.load(str(latest)), ratios.load(str(decision.baseline)),
                                             ratios.parse_fail(args.fail))
        out.write("\n" + "\n".join(lines) + "\n")
    print(out.getvalue(), end="")

    if args.record_baseline:
        if rc == 0:
            shutil.copyfile(latest, baseline)
            print(f"\nbench: baseline recorded: {rel(baseline)}")
        else:
            print(f"\nbench: pytest exited with {rc}: the baseline was not recorded "
                  f"(`python bench/run.py --promote` records this run anyway)", file=sys.stderr)
    if args.copy_to:
        args.copy_to.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(latest, args.copy_to / latest.name)  # (a recorded baseline is the same file)
        (args.copy_to / f"{key}-ratios.txt").write_text(out.getvalue())
    if rc != 0:
        print(f"\nbench: pytest exited with {rc}"
              + (" (a regression against the baseline, see 'Performance has regressed' above, "
                 "or a failed benchmark)" if compare else " (a failed benchmark)"), file=sys.stderr)
    if gate_failed:
        print(f"\nbench: {len(gate_failed)} ratio(s) against the reference fell more than {args.fail} below "
              f"{decision.baseline_key}'s (the ratio gate above)", file=sys.stderr)
        return rc or 1
    return rc


def _run_pytest(cmd: list[str]) -> int:
    """pytest's exit status. A SIGINT (bench/gpu_run.sh's time limit reaches the whole
    process group) is left to pytest, which then stops and still writes its JSON; this
    process waits for that instead of dying first and killing it."""
    previous = signal.signal(signal.SIGINT, lambda *_: None)  # a handler, not SIG_IGN: pytest must not inherit it
    try:
        return subprocess.run(cmd, cwd=ROOT).returncode
    finally:
        signal.signal(signal.SIGINT, previous)


if __name__ == "__main__":
    sys.exit(main())

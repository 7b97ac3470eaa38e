"""Runs the benchmarks of this machine's device, guards against latency regressions and
prints the ratio table (``make bench``, ``make bench-baseline``, bench/gpu_run.sh).

1. The device: a GPU where one is visible, else the CPU (``--device`` or
   ``FASTWARP_BENCH_DEVICE`` choose); its kind (``cpu``, ``h100``, ``h200``, ...) names
   the files.
2. pytest over bench/, results to ``bench/results/<kind>-latest.json``. Where
   ``bench/results/<kind>-baseline.json`` exists, with ``--benchmark-compare=<it>
   --benchmark-compare-fail=<--fail>``: a benchmark slower than the baseline by more
   than that fails the run. Where none exists, the run goes on and says so.
3. The ratio table of bench/ratios.py, with each row's change against the baseline and
   issue 3's targets.

``--record-baseline`` runs without comparing and saves the run as the baseline;
``--promote`` saves the latest run as the baseline without running anything. Arguments
run.py does not know go to pytest (``-k``, ``--bench-rounds``, ``--bench-budget-s``, ...).

Usage: python bench/run.py [--fail median:25%] [--record-baseline | --promote]
                           [--device cpu|cuda] [--results-dir DIR] [--copy-to DIR] [PYTEST ARGS]
Exit status: pytest's (non-zero on a failed benchmark or a regression), else 0.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

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
    parser.add_argument("--device", choices=("cpu", "cuda"), help="device to benchmark (default: GPU if visible)")
    parser.add_argument("--results-dir", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--copy-to", type=Path, help="also copy the JSON file(s) and the ratio table here")
    parser.add_argument("--pytest-table", action="store_true", help="also print pytest-benchmark's own tables")
    args, pytest_args = parser.parse_known_args(argv)
    ratios.parse_fail(args.fail)  # fail early on a malformed threshold

    if args.device:
        os.environ["FASTWARP_BENCH_DEVICE"] = args.device
    kind = harness.device_kind()
    results = args.results_dir.resolve()
    results.mkdir(parents=True, exist_ok=True)
    latest, baseline = results / f"{kind}-latest.json", results / f"{kind}-baseline.json"
    rel = lambda p: os.path.relpath(p, ROOT)  # noqa: E731  (pytest-benchmark prints what it was given)

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
    compare = not args.record_baseline and baseline.is_file()
    if compare:
        cmd += [f"--benchmark-compare={rel(baseline)}", f"--benchmark-compare-fail={args.fail}"]
        print(f"bench: {kind}: comparing with the baseline {rel(baseline)}; "
              f"a benchmark slower by more than {args.fail} fails the run")
    elif args.record_baseline:
        print(f"bench: {kind}: recording a new baseline {rel(baseline)}")
    else:
        print(f"bench: {kind}: no baseline {rel(baseline)} yet, so nothing to compare with; "
              f"record one with `make bench-baseline` (or `python bench/run.py --promote` after this run)")
    cmd += pytest_args
    print("bench: " + " ".join(cmd), flush=True)
    if latest.exists():
        latest.unlink()  # so a crashed run leaves no stale results to report
    rc = subprocess.run(cmd, cwd=ROOT).returncode

    if not latest.is_file():
        print(f"bench: pytest exited with {rc} and wrote no {rel(latest)}", file=sys.stderr)
        return rc or 1
    print(f"\nbench: results in {rel(latest)}\n")
    ratio_args = [str(latest)] + (["--compare", str(baseline), "--fail", args.fail] if compare else [])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        ratios.main(ratio_args)
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
        (args.copy_to / f"{kind}-ratios.txt").write_text(out.getvalue())
    if rc != 0:
        print(f"\nbench: pytest exited with {rc}"
              + (" (a regression against the baseline, see 'Performance has regressed' above, "
                 "or a failed benchmark)" if compare else " (a failed benchmark)"), file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())

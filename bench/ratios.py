"""The ratio table of a benchmark run, from its pytest-benchmark JSON file.

For every group (op, mode, case, dtype), one row per provider: median and minimum time,
reference / provider and compiled-reference / provider (above 1: the provider is faster;
the ratio of minima beside the first, less sensitive to other processes on the CPU: the
two disagreeing means the run was disturbed), the bandwidth reached (bytes the call must
move over its median time) and, on a GPU, that as a fraction of the device-to-device
copy measured in the same run and the host's time to enqueue the call. With ``--compare BASELINE.json``, each row's median
against the baseline's. Then issue 3's targets, each met or not met.

Usage: python bench/ratios.py RESULTS.json [--compare BASELINE.json] [--fail median:25%]
                              [--strict-targets]
Exit status: 0, or 1 with --strict-targets when a target of this device is not met.
Needs only the standard library (reads GPU results on any machine).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import defaultdict
from dataclasses import dataclass

PROVIDER_ORDER = ("fastwarp-cuda", "fastwarp-cuda-det", "fastwarp-triton", "fastwarp-cpu", "reference",
                  "compiled-reference")


@dataclass(frozen=True)
class Target:
    """``provider`` at least ``min_ratio`` times faster than ``versus`` (medians of one run)
    in ``group``, on runs of ``device`` ("cpu" or "cuda")."""

    device: str
    group: str
    provider: str
    versus: str
    min_ratio: float


# Issue 3's latency targets. ``versus="copy"``: the provider's achieved bandwidth as a
# fraction of the same run's device-to-device copy (min_ratio is that fraction).
#   CPU: float32 8x3x256x256, forward and backward (backward alone, the forward untimed)
#        at least 1.5x faster than the eager reference, both ops.
#   GPU (H100/H200), for the CUDA and the Triton kernels: forward bfloat16 32x3x256x256 at
#        >= 80% of the copy bandwidth, >= 3x the eager reference, >= 1.3x the compiled
#        reference; backward (all gradients) >= 2x eager autograd of the reference; the
#        deterministic backward at most 2x the atomic one; warp_blend 8x3x512x512 with
#        128 px flow/texture/mask >= 5x the reference path.
_GPU = ("fastwarp-cuda", "fastwarp-triton")
TARGETS = (
    tuple(Target("cpu", f"{op} {mode} 8x3x256x256 float32", "fastwarp-cpu", "reference", 1.5)
          for op in ("warp", "warp_blend") for mode in ("forward", "backward"))
    + tuple(Target("cuda", f"{op} forward 32x3x256x256 bfloat16", p, versus, ratio)
            for op in ("warp", "warp_blend") for p in _GPU
            for versus, ratio in (("copy", 0.8), ("reference", 3.0), ("compiled-reference", 1.3)))
    + tuple(Target("cuda", f"{op} backward 32x3x256x256 {dtype}", p, "reference", 2.0)
            for op in ("warp", "warp_blend") for p in _GPU for dtype in ("bfloat16", "float32"))
    + tuple(Target("cuda", f"{op} backward 32x3x256x256 {dtype}", "fastwarp-cuda-det", "fastwarp-cuda", 0.5)
            for op in ("warp", "warp_blend") for dtype in ("bfloat16", "float32"))
    + tuple(Target("cuda", f"warp_blend forward 8x3x512x512-flow128 {dtype}", p, "reference", 5.0)
            for p in _GPU for dtype in ("bfloat16", "float32"))
)


def _provider(bench: dict) -> str:
    return bench.get("extra_info", {}).get("provider") or bench.get("params", {}).get("provider") or bench["name"]


def load(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def by_group(data: dict) -> dict[str, dict[str, dict]]:
    groups: dict[str, dict[str, dict]] = defaultdict(dict)
    for bench in data["benchmarks"]:
        groups[bench["group"] or bench["name"]][_provider(bench)] = bench
    return groups


def parse_fail(expr: str) -> tuple[str, float]:
    """``median:25%`` -> ("median", 25.0): the stat and the percentage of slow-down that
    pytest-benchmark's --benchmark-compare-fail treats as a regression."""
    m = re.fullmatch(r"(min|max|mean|median|stddev|iqr):(\d+(?:\.\d+)?)%", expr)
    if not m:
        raise argparse.ArgumentTypeError(f"expected STAT:PCT%, e.g. median:25%, got {expr!r}")
    return m.group(1), float(m.group(2))


def header(data: dict) -> list[str]:
    env = data.get("machine_info", {}).get("fastwarp_env", {})
    commit = data.get("commit_info", {})
    lines = []
    if env:
        where = env.get("gpu") or env.get("cpu")
        lines.append(f"device: {env.get('device_kind')} ({where}); CPU {env.get('cpu')}, {env.get('cpus')} CPUs, "
                     f"{env.get('threads')} torch threads")
        lines.append(f"torch {env.get('torch')}, CUDA {env.get('cuda')}, Triton {env.get('triton')}, "
                     f"fastwarp {env.get('fastwarp')} (backends {env.get('backends')}, "
                     f"backend= keyword: {env.get('backend_keyword')}), commit {env.get('commit')}")
        if env.get("driver"):
            lines.append(f"driver {env['driver']}, {env.get('gpu_sms')} SMs, L2 {env.get('cache_bytes', 0) / 2**20:.0f} MiB")
    elif commit:
        lines.append(f"commit {commit.get('id')}{' (dirty)' if commit.get('dirty') else ''}")
    info = [b.get("extra_info", {}) for b in data["benchmarks"]]
    loads = [i["loadavg_1min"] for i in info if "loadavg_1min" in i]
    others = [i["other_cpus"] for i in info if "other_cpus" in i]
    if loads:
        lines.append(f"1-min load average before each benchmark: {min(loads):.2f} to {max(loads):.2f} "
                     f"(on {env.get('cpus', '?')} CPUs, this run's own threads included)")
    if others:
        lines.append(f"cores other processes kept busy during each benchmark: {min(others):.2f} to {max(others):.2f}")
        busy = sum(o > 0.25 for o in others)
        if env.get("device") == "cpu" and busy:
            lines.append(f"WARNING: other processes shared the cores during {busy} of {len(others)} benchmarks "
                         "(extra_info.other_cpus > 0.25): with torch's threads waiting for descheduled peers, "
                         "those CPU timings, and their comparison with a baseline, can be many times off")
    return lines


def copy_gbps(data: dict) -> float | None:
    for bench in data["benchmarks"]:
        if bench.get("group") == "copy":
            return bench["extra_info"]["bytes"] / bench["stats"]["median"] / 1e9
    return None


def table(data: dict, baseline: dict | None, fail: tuple[str, float] | None) -> tuple[list[str], list[str]]:
    """The table's lines, and the names of the benchmarks slower than the baseline by more
    than ``fail``'s percentage."""
    groups = by_group(data)
    base = {b["fullname"]: b for b in baseline["benchmarks"]} if baseline else {}
    stat = fail[0] if fail else "median"
    copy = copy_gbps(data)
    cols = ["group", "provider", "median ms", "min ms", "ref/x", "(min)", "compiled/x", "GB/s", "%copy"]
    host = any("host_us" in b.get("extra_info", {}) for b in data["benchmarks"])
    if host:  # GPU runs: the host's time to enqueue the call; * where it outlasted the headroom
        cols.append("host us")
    if baseline:
        cols.append(f"{stat} vs base")
    rows, regressed = [], []
    for group in sorted(g for g in groups if g != "copy"):
        providers = groups[group]
        ref, comp = providers.get("reference"), providers.get("compiled-reference")
        order = sorted(providers, key=lambda p: (PROVIDER_ORDER.index(p) if p in PROVIDER_ORDER else 99, p))
        for i, name in enumerate(order):
            bench = providers[name]
            st = bench["stats"]

            def ratio(other, key="median"):
                if other is None or other is bench:
                    return ""
                return f"{other['stats'][key] / st[key]:.2f}x"

            nbytes = bench.get("extra_info", {}).get("bytes")
            gbps = nbytes / st["median"] / 1e9 if nbytes else None
            row = [group if i == 0 else "", name, f"{st['median'] * 1e3:.3f}", f"{st['min'] * 1e3:.3f}",
                   ratio(ref), ratio(ref, "min"), ratio(comp),
                   f"{gbps:.1f}" if gbps else "", f"{gbps / copy:.0%}" if gbps and copy else ""]
            if host:
                info = bench.get("extra_info", {})
                bound = info.get("launch_bound_rounds", 0) > 0.25 * st.get("rounds", 1)
                row.append(f"{info['host_us']:.0f}{'*' if bound else ''}" if "host_us" in info else "")
            if baseline:
                old = base.get(bench["fullname"])
                if old is None:
                    row.append("new")
                else:
                    change = st[stat] / old["stats"][stat] * 100 - 100
                    bad = fail is not None and change > fail[1]
                    row.append(f"{change:+.0f}%" + (" REGRESSED" if bad else ""))
                    if bad:
                        regressed.append(bench["fullname"])
            rows.append(row)
    widths = [max(len(c), *(len(r[j]) for r in rows)) if rows else len(c) for j, c in enumerate(cols)]
    fmt = lambda r: "  ".join(v.ljust(w) if j < 2 else v.rjust(w) for j, (v, w) in enumerate(zip(r, widths)))  # noqa: E731
    return [fmt(cols)] + [fmt(r) for r in rows], regressed


def _geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def summary(data: dict) -> list[str]:
    """Per provider, mode and dtype, the geometric means over the cases of ref/x,
    compiled/x and the fraction of the copy bandwidth."""
    copy = copy_gbps(data)
    acc: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for group, providers in by_group(data).items():
        ref, comp = providers.get("reference"), providers.get("compiled-reference")
        for name, bench in providers.items():
            info = bench.get("extra_info", {})
            if group == "copy" or name == "reference":
                continue
            key = (name, info.get("mode", "?"), info.get("dtype", "?"))
            median = bench["stats"]["median"]
            acc[key]["n"].append(1.0)
            if ref:
                acc[key]["ref"].append(ref["stats"]["median"] / median)
            if comp and comp is not bench:
                acc[key]["comp"].append(comp["stats"]["median"] / median)
            if copy and info.get("bytes"):
                acc[key]["copy"].append(info["bytes"] / median / 1e9 / copy)
    if not acc:
        return []
    lines = ["summary (geometric means over the cases of each provider, mode and dtype):",
             f"  {'provider':<20}{'mode':<10}{'dtype':<10}{'cases':>6}{'ref/x':>8}{'compiled/x':>12}{'%copy':>7}"]
    order = lambda k: (PROVIDER_ORDER.index(k[0]) if k[0] in PROVIDER_ORDER else 99, k)  # noqa: E731
    for key in sorted(acc, key=order):
        m = acc[key]
        cell = lambda vals, f: f(_geomean(vals)) if vals else ""  # noqa: E731
        lines.append(f"  {key[0]:<20}{key[1]:<10}{key[2]:<10}{len(m['n']):>6}"
                     f"{cell(m['ref'], '{:.2f}x'.format):>8}{cell(m['comp'], '{:.2f}x'.format):>12}"
                     f"{cell(m['copy'], '{:.0%}'.format):>7}")
    return lines


def targets(data: dict) -> tuple[list[str], int]:
    """Lines for the targets of this run's device, and how many are not met."""
    device = data.get("machine_info", {}).get("fastwarp_env", {}).get("device")
    groups = by_group(data)
    lines, unmet = [], 0
    for t in TARGETS:
        if device is not None and t.device != device:
            continue
        g = groups.get(t.group, {})
        if t.versus == "copy":
            what = f"{t.device} {t.group}: {t.provider} >= {t.min_ratio:.0%} of the copy bandwidth"
            copy = copy_gbps(data)
            if t.provider not in g or copy is None:
                lines.append(f"  no data  {what} (not in this run)")
                continue
            bench = g[t.provider]
            r = bench["extra_info"]["bytes"] / bench["stats"]["median"] / 1e9 / copy
            shown = f"{r:.0%}"
        else:
            what = f"{t.device} {t.group}: {t.provider} >= {t.min_ratio:g}x faster than {t.versus}"
            if t.provider not in g or t.versus not in g:
                lines.append(f"  no data  {what} (not in this run)")
                continue
            r = g[t.versus]["stats"]["median"] / g[t.provider]["stats"]["median"]
            shown = f"{r:.2f}x"
        met = r >= t.min_ratio
        unmet += not met
        lines.append(f"  {'met    ' if met else 'NOT MET'}  {what}: {shown}")
    return lines, unmet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", help="pytest-benchmark JSON file (--benchmark-json)")
    parser.add_argument("--compare", metavar="BASELINE", help="a baseline JSON file of the same device kind")
    parser.add_argument("--fail", type=parse_fail, metavar="STAT:PCT%",
                        help="mark rows slower than the baseline by more than this (as --benchmark-compare-fail)")
    parser.add_argument("--strict-targets", action="store_true", help="exit 1 when a target is not met")
    args = parser.parse_args(argv)

    data = load(args.json)
    baseline = load(args.compare) if args.compare else None
    for line in header(data):
        print(line)
    copy = copy_gbps(data)
    if copy:
        print(f"device-to-device copy (dst.copy_(src), read + write): {copy:.1f} GB/s; %copy = GB/s over that")
    if baseline:
        print(f"baseline: {args.compare} (commit {baseline.get('machine_info', {}).get('fastwarp_env', {}).get('commit')})")
    lines, regressed = table(data, baseline, args.fail)
    print()
    print("\n".join(lines))
    if any(b.get("extra_info", {}).get("launch_bound_rounds", 0) > 0.25 * b["stats"].get("rounds", 1)
           for b in data["benchmarks"]):
        print("* the host took longer to enqueue the call than the GPU headroom in over a quarter of the rounds: "
              "the GPU time may include waiting for the host (launch-bound at this size)")
    if baseline and args.fail:
        stat, pct = args.fail
        print(f"\n{len(regressed)} benchmark(s) more than {pct:g}% slower than the baseline ({stat})"
              + ("" if not regressed else ":\n  " + "\n  ".join(regressed)))
    summary_lines = summary(data)
    if summary_lines:
        print()
        print("\n".join(summary_lines))
    target_lines, unmet = targets(data)
    print("\nissue 3 targets (median ratios of this run):")
    print("\n".join(target_lines) if target_lines else "  none for this device yet (bench/ratios.py, TARGETS)")
    return 1 if args.strict_targets and unmet else 0


if __name__ == "__main__":
    sys.exit(main())

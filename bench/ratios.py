"""The ratio table of a benchmark run, from its pytest-benchmark JSON file.

For every group (op, mode, case, dtype), one row per provider: median and minimum time,
reference / provider and compiled-reference / provider (above 1: the provider is faster;
the ratio of minima beside the first, less sensitive to other processes on the CPU: the
two disagreeing means the run was disturbed), the bandwidth reached (bytes the call must
move over its median time) and, on a GPU, that as a fraction of the device-to-device
copy measured in the same run and the host's time to enqueue the call. With ``--compare BASELINE.json``, each row's median
against the baseline's. Then issue 3's targets, each met or not met.

The model benchmarks (test_bench_model.py, groups ``model <weights> b<batch>``) get their
own table: per weights and provider, the latency at batch 1 and the frames per second at
batch 32; then the real-time issue's target (GPU H100/H200, base weights, batch 1, float16:
model + warp_blend within 2 ms per frame), met, NOT MET or unmeasured.

The end-to-end benchmarks (test_bench_e2e.py, groups ``e2e <device>``) get theirs: per
weights and runtime, frames per second and each stage's p50 ms (decode, landmarks, crop,
model, blend, encode, latency); then the real-time issue's end-to-end targets (CPU
2 cores: lite at 128 px >= 25 frames/s on a 512x512 video; GPU: base, batch 1, float16
>= 200 frames/s), met, NOT MET or no data.

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


# The real-time issue's target: on an H100 or H200, the base weights' forward (model +
# warp_blend, 128 px) at batch 1 in float16 within 2 ms per frame. Per frame counts the
# larger of the GPU time and the host's time to enqueue the call (a frame cannot come
# faster than either).
MODEL_TARGET_MS = 2.0
MODEL_TARGET_GPUS = ("h100", "h200")
MODEL_PROVIDER_ORDER = ("torch-eager", "torch-compile", "onnxruntime-cpu", "tensorrt")


def is_model_group(group: str) -> bool:
    return group.startswith("model ")


# The real-time issue's end-to-end targets (bench/test_bench_e2e.py: frames per second of
# fastwarp.realtime over 512x512 videos, decode to encode, batch 1). ``providers``: the
# runs that may meet it (the faster counts: runtime="auto" keeps the faster).
@dataclass(frozen=True)
class E2ETarget:
    device: str
    weights: str
    providers: tuple[str, ...]
    min_fps: float
    what: str
    cpus: int | None = None  # the machine the target is stated for
    image_size: int | None = None


E2E_TARGETS = (
    E2ETarget("cpu", "lite", ("lite-mesh", "lite-torch", "lite-onnx", "lite-mesh-maxfaces1", "lite-torch-maxfaces1",
                              "lite-onnx-maxfaces1"), 25.0,
              "CPU 2 cores, lite at 128 px, end to end on a 512x512 video", cpus=2, image_size=128),
    E2ETarget("cuda", "base", ("base-torch", "base-torch-maxfaces1"), 200.0,
              "GPU, base, batch 1, float16, end to end on a 512x512 video"),
)
E2E_STAGES = ("decode", "landmarks", "crop", "model", "blend", "encode")


def is_e2e_group(group: str) -> bool:
    return group.startswith("e2e")


def is_composite_group(group: str) -> bool:
    return group.startswith("composite ")


def is_mesh_path_group(group: str) -> bool:
    return group.startswith("mesh path ")


def is_bicubic_group(group: str) -> bool:
    return group.startswith("bicubic ")


def is_region_group(group: str) -> bool:
    return group.startswith("region textures ")


def _other_table(group: str) -> bool:
    """Groups with a table of their own (model, end to end, composite, mesh path, region
    textures), not op rows."""
    return (is_model_group(group) or is_e2e_group(group) or is_composite_group(group) or is_mesh_path_group(group)
            or is_bicubic_group(group) or is_region_group(group))


def mesh_path_table(data: dict, baseline: dict | None, fail: tuple[str, float] | None) -> tuple[list[str], list[str]]:
    """Per weights: the mesh path's and the dense path's median ms per edited frame (predict +
    blend, bench/test_bench_mesh_path.py) and dense / mesh."""
    groups = {g: p for g, p in by_group(data).items() if is_mesh_path_group(g)}
    if not groups:
        return [], []
    lines = ["| weights | mesh ms | dense ms | dense / mesh |", "|---|---:|---:|---:|"]
    for group, p in sorted(groups.items()):
        if "mesh" not in p or "dense" not in p:
            continue
        a, b = p["mesh"]["stats"]["median"], p["dense"]["stats"]["median"]
        lines.append(f"| {group.split()[-1]} | {a * 1e3:.2f} | {b * 1e3:.2f} | {b / a:.2f} |")
    return lines, []


def region_table(data: dict, baseline: dict | None, fail: tuple[str, float] | None) -> tuple[list[str], list[str]]:
    """Per edit: the mesh texture's, the region textures' (networks every frame) and the
    region textures' under a refresh of 5 ms per edited frame (bench/test_bench_regions.py;
    the refresh's MEAN over its rounds, a multiple of five, is its cost per frame), and
    mesh / each: the frames/s ratio issue 19 asks to stay at 0.85 or more for ``lite``."""
    groups = {g: p for g, p in by_group(data).items() if is_region_group(g)}
    lines = ["| edit | mesh ms | regions ms | mesh / regions | refresh 5 ms (mean) | mesh / refresh 5 |",
             "|---|---:|---:|---:|---:|---:|"]
    for group, p in sorted(groups.items()):
        if "mesh" not in p:
            continue
        a = p["mesh"]["stats"]["median"]
        row = f"| {group.split()[-1]} | {a * 1e3:.2f} |"
        for name, stat in (("regions", "median"), ("regions-refresh5", "mean")):
            b = p[name]["stats"][stat] if name in p else None
            row += " - | - |" if b is None else f" {b * 1e3:.2f} | {a / b:.3f}x |"
        lines.append(row)
    return (lines, []) if len(lines) > 2 else ([], [])


# Issue 21's targets (bench/test_bench_bicubic.py, (8, 3, 256, 256) float32, one run): fastwarp's
# bicubic forward >= 2x and backward >= 1.5x faster than eager grid_sample's; its forward at
# most 2.5x fastwarp's bilinear forward. (numerator provider, denominator provider, bound, at least?)
BICUBIC_TARGETS = (("forward", "eager-bicubic", "fastwarp-bicubic", 2.0, True),
                   ("backward", "eager-bicubic", "fastwarp-bicubic", 1.5, True),
                   ("forward", "fastwarp-bicubic", "fastwarp-bilinear", 2.5, False))


def bicubic_table(data: dict, baseline: dict | None, fail: tuple[str, float] | None) -> tuple[list[str], list[str]]:
    """Per mode: the three providers' median ms, then issue 21's ratios, met or NOT MET."""
    groups = {g.split()[-1]: p for g, p in by_group(data).items() if is_bicubic_group(g)}
    if not groups:
        return [], []
    lines = ["| mode | fastwarp bicubic ms | fastwarp bilinear ms | eager grid_sample bicubic ms |", "|---|---:|---:|---:|"]
    ms = lambda p, k: f"{p[k]['stats']['median'] * 1e3:.2f}" if k in p else "-"  # noqa: E731
    for mode, p in sorted(groups.items()):
        lines.append(f"| {mode} | {ms(p, 'fastwarp-bicubic')} | {ms(p, 'fastwarp-bilinear')} | {ms(p, 'eager-bicubic')} |")
    for mode, num, den, bound, at_least in BICUBIC_TARGETS:
        p = groups.get(mode, {})
        if num in p and den in p:
            got = p[num]["stats"]["median"] / p[den]["stats"]["median"]
            ok = got >= bound if at_least else got <= bound
            lines.append(f"{'met    ' if ok else 'NOT MET'}  {mode}: {num} / {den} {'>=' if at_least else '<='} "
                         f"{bound:g}x: {got:.2f}x")
    return lines, []


# The one-resampling issue's target (bench/test_bench_composite.py): the frame-space
# composite of a 400 px face on a 1080p frame at least 3x faster than the chain it
# replaced (crop + warp_blend + paste-back), on the CPU, medians of one run.
COMPOSITE_TARGET = ("composite 1080p face 400", 3.0)
# Issue 21: the composite with bicubic taps at most 1.5x the bilinear one's time, same case.
COMPOSITE_BICUBIC_TARGET = ("composite 1080p face 400", 1.5)


def composite_table(data: dict, baseline: dict | None, fail: tuple[str, float] | None) -> tuple[list[str], list[str]]:
    """Per frame and face size: the composite's and the chain's median ms and chain /
    composite; then the target, met or NOT MET."""
    groups = {g: p for g, p in by_group(data).items() if is_composite_group(g)}
    if not groups:
        return [], []
    lines = ["| frame | face px | composite ms | chain ms | chain / composite | bicubic ms | bicubic / bilinear |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for group in sorted(groups, key=lambda g: (int(g.split()[1].rstrip("p")), int(g.split()[-1]))):
        p = groups[group]
        if "composite" not in p or "chain" not in p:
            continue
        a, b = p["composite"]["stats"]["median"], p["chain"]["stats"]["median"]
        c = p["composite-bicubic"]["stats"]["median"] if "composite-bicubic" in p else None
        cubic = f"{c * 1e3:.2f} | {c / a:.2f}x" if c else "- | -"
        lines.append(f"| {group.split()[1]} | {group.split()[-1]} | {a * 1e3:.2f} | {b * 1e3:.2f} | {b / a:.1f}x | "
                     f"{cubic} |")
    group, ratio = COMPOSITE_TARGET
    p = groups.get(group, {})
    if "composite" in p and "chain" in p:
        got = p["chain"]["stats"]["median"] / p["composite"]["stats"]["median"]
        lines.append(f"{'met    ' if got >= ratio else 'NOT MET'}  {group}: chain / composite >= {ratio:g}x: {got:.1f}x")
    group, ratio = COMPOSITE_BICUBIC_TARGET
    p = groups.get(group, {})
    if "composite" in p and "composite-bicubic" in p:
        got = p["composite-bicubic"]["stats"]["median"] / p["composite"]["stats"]["median"]
        lines.append(f"{'met    ' if got <= ratio else 'NOT MET'}  {group}: bicubic / bilinear <= {ratio:g}x: "
                     f"{got:.2f}x")
    return lines, []


def _provider(bench: dict) -> str:
    return bench.get("extra_info", {}).get("provider") or bench.get("params", {}).get("provider") or bench["name"]


def load(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def by_group(data: dict) -> dict[str, dict[str, dict]]:
    groups: dict[str, dict[str, dict]] = defaultdict(dict)
    for bench in data.get("benchmarks", []):
        groups[bench.get("group") or bench["name"]][_provider(bench)] = bench
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
    for group in sorted(g for g in groups if g != "copy" and not _other_table(g)):
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
            if group == "copy" or name == "reference" or _other_table(group):
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


def _change(bench: dict, base: dict, stat: str, fail: tuple[str, float] | None) -> tuple[str, bool]:
    old = base.get(bench["fullname"])
    if old is None:
        return "new", False
    change = bench["stats"][stat] / old["stats"][stat] * 100 - 100
    bad = fail is not None and change > fail[1]
    return f"{change:+.0f}%" + (" REGRESSED" if bad else ""), bad


def model_table(data: dict, baseline: dict | None, fail: tuple[str, float] | None) -> tuple[list[str], list[str]]:
    """The model benchmarks' table (one row per weights, provider and dtype: batch-1
    latency, batch-32 throughput), and the names of those slower than the baseline by more
    than ``fail``'s percentage."""
    rows_by_key: dict[tuple, dict[int, dict]] = defaultdict(dict)
    for bench in data["benchmarks"]:
        info = bench.get("extra_info", {})
        if info.get("kind") != "model" and not is_model_group(bench.get("group") or ""):
            continue
        key = (info.get("weights", "?"), _provider(bench), info.get("dtype", "?"))
        rows_by_key[key][int(info.get("batch", 0))] = bench
    if not rows_by_key:
        return [], []
    base = {b["fullname"]: b for b in baseline["benchmarks"]} if baseline else {}
    stat = fail[0] if fail else "median"
    host = any("host_us" in b.get("extra_info", {}) for per in rows_by_key.values() for b in per.values())
    cols = ["weights", "provider", "dtype", "b1 median ms", "b1 min ms"] + (["b1 host us"] if host else []) + \
           ["b1 frames/s", "b32 median ms", "b32 frames/s", "b32 ms/frame"]
    if baseline:
        cols += [f"b1 {stat} vs base", f"b32 {stat} vs base"]
    order = lambda k: (k[0], MODEL_PROVIDER_ORDER.index(k[1]) if k[1] in MODEL_PROVIDER_ORDER else 99, k)  # noqa: E731
    rows, regressed = [], []
    for key in sorted(rows_by_key, key=order):
        per = rows_by_key[key]
        b1, b32 = per.get(1), per.get(32)
        row = list(key)
        if b1:
            st = b1["stats"]
            row += [f"{st['median'] * 1e3:.2f}", f"{st['min'] * 1e3:.2f}"]
            if host:
                info = b1.get("extra_info", {})
                bound = info.get("launch_bound_rounds", 0) > 0.25 * st.get("rounds", 1)
                row.append(f"{info['host_us']:.0f}{'*' if bound else ''}" if "host_us" in info else "")
            row.append(f"{1 / st['median']:.1f}")
        else:
            row += [""] * (4 if host else 3)
        if b32:
            st = b32["stats"]
            row += [f"{st['median'] * 1e3:.1f}", f"{32 / st['median']:.1f}", f"{st['median'] / 32 * 1e3:.2f}"]
        else:
            row += [""] * 3
        if baseline:
            for bench in (b1, b32):
                if bench is None:
                    row.append("")
                    continue
                text, bad = _change(bench, base, stat, fail)
                row.append(text)
                if bad:
                    regressed.append(bench["fullname"])
        rows.append(row)
    widths = [max(len(c), *(len(r[j]) for r in rows)) for j, c in enumerate(cols)]
    fmt = lambda r: "  ".join(v.ljust(w) if j < 3 else v.rjust(w) for j, (v, w) in enumerate(zip(r, widths)))  # noqa: E731
    return [fmt(cols)] + [fmt(r) for r in rows], regressed


def model_target(data: dict) -> list[str]:
    """The real-time issue's target line(s): met, NOT MET or unmeasured, with the numbers."""
    env = data.get("machine_info", {}).get("fastwarp_env", {})
    kind, device = env.get("device_kind"), env.get("device")
    what = (f"GPU ({'/'.join(k.upper() for k in MODEL_TARGET_GPUS)}) base weights, batch 1, float16, "
            f"model + warp_blend <= {MODEL_TARGET_MS:g} ms per frame")
    candidates = []
    for bench in data["benchmarks"]:
        info = bench.get("extra_info", {})
        if (info.get("kind") == "model" and info.get("weights") == "base" and info.get("batch") == 1
                and info.get("dtype") == "float16"):
            gpu_ms = bench["stats"]["median"] * 1e3
            host_ms = info.get("host_us", 0.0) / 1e3
            candidates.append((max(gpu_ms, host_ms), gpu_ms, host_ms, _provider(bench)))
    if device != "cuda":
        return [f"  unmeasured  {what} (this run timed the {device or 'unknown device'}; the target needs a GPU run)"]
    if not candidates:
        return [f"  unmeasured  {what} (no base batch-1 float16 benchmark in this run)"]
    candidates.sort()
    detail = "; ".join(f"{p} {frame:.2f} ms (GPU {gpu:.2f}, host enqueue {host:.2f})"
                       for frame, gpu, host, p in candidates)
    if kind not in MODEL_TARGET_GPUS:
        return [f"  unmeasured  {what} (this run's GPU is {env.get('gpu') or kind}, not an H100/H200): {detail}"]
    best = candidates[0]
    met = best[0] <= MODEL_TARGET_MS
    return [f"  {'met    ' if met else 'NOT MET'}  {what}: best {best[3]} {best[0]:.2f} ms on {kind}; {detail}"]


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


def e2e_table(data: dict, baseline: dict | None, fail: tuple[str, float] | None) -> tuple[list[str], list[str]]:
    """The end-to-end table (one row per weights-runtime run): frames/s, each stage's p50
    ms, the decode-to-encode latency p50/p95; and the runs slower than the baseline."""
    rows, regressed = [], []
    base = {b["fullname"]: b for b in baseline["benchmarks"]} if baseline else {}
    stat = fail[0] if fail else "median"
    for group, providers in sorted(by_group(data).items()):
        if not is_e2e_group(group):
            continue
        for name in sorted(providers):
            bench = providers[name]
            info = bench.get("extra_info", {})
            stages = info.get("stages", {})
            lat = stages.get("latency")
            row = [group, name, info.get("runner", ""), str(info.get("frames_per_round", "")),
                   f"{bench['stats']['median']:.3f}", f"{info['fps']:.1f}" if "fps" in info else ""]
            row += [f"{stages[s]['p50_ms']:.1f}" if s in stages else "" for s in E2E_STAGES]
            row.append(f"{lat['p50_ms']:.0f}/{lat['p95_ms']:.0f}" if lat else "")
            if baseline:
                text, bad = _change(bench, base, stat, fail)
                row.append(text)
                if bad:
                    regressed.append(bench["fullname"])
            rows.append(row)
    if not rows:
        return [], []
    cols = ["group", "run", "runner", "frames", "median s", "frames/s"] + [f"{s} p50" for s in E2E_STAGES]
    cols.append("latency p50/p95 ms")
    if baseline:
        cols.append(f"{stat} vs base")
    widths = [max(len(c), *(len(r[j]) for r in rows)) for j, c in enumerate(cols)]
    fmt = lambda r: "  ".join(v.ljust(w) if j < 3 else v.rjust(w) for j, (v, w) in enumerate(zip(r, widths)))  # noqa: E731
    return [fmt(cols)] + [fmt(r) for r in rows], regressed


def e2e_targets(data: dict) -> tuple[list[str], int]:
    """Lines for the end-to-end targets of this run's device, and how many are not met."""
    env = data.get("machine_info", {}).get("fastwarp_env", {})
    device = env.get("device")
    runs = {name: b for g, providers in by_group(data).items() if is_e2e_group(g) for name, b in providers.items()}
    lines, unmet = [], 0
    for t in E2E_TARGETS:
        if device is not None and t.device != device:
            continue
        what = f"{t.what}: >= {t.min_fps:g} frames/s"
        found = [(runs[p]["extra_info"]["fps"], p) for p in t.providers
                 if p in runs and "fps" in runs[p].get("extra_info", {})]
        if not found:
            lines.append(f"  no data  {what} (no {' or '.join(t.providers)} run here: weights {t.weights!r} "
                         "not installed, or the benchmark was skipped)")
            continue
        fps, best = max(found)
        notes = []
        size = runs[best]["extra_info"].get("image_size")
        if t.image_size is not None and size is not None and size != t.image_size:
            notes.append(f"its model runs at {size} px, the target is for {t.image_size}")
        if t.cpus is not None and env.get("cpus") not in (None, t.cpus):
            notes.append(f"this machine has {env.get('cpus')} CPUs, the target is for {t.cpus}")
        met = fps >= t.min_fps
        unmet += not met
        lines.append(f"  {'met    ' if met else 'NOT MET'}  {what}: {fps:.1f} frames/s ({best})"
                     + (f" [{'; '.join(notes)}]" if notes else ""))
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
    if len(lines) > 1:  # (a run of the model benchmarks alone has no op rows)
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
    tables = (
        (model_table, "model (EditorNet forward with warp_blend at 128 px; b1: batch 1 latency, median and "
                      "minimum; b32: batch 32, frames/s over its median):", "model"),
        (e2e_table, "end to end (fastwarp.realtime on 512x512 videos: decode, edit, encode on its threads; "
                    "frames/s = frames per round / median round; stage times p50 ms):", "end-to-end"),
        (composite_table, "frame-space composite per face (one warp_blend with theta on the uint8 frame) against "
                          "the chain it replaced (crop + warp_blend + paste-back), medians of this run:", "composite"),
        (mesh_path_table, "mesh motion path against the dense MotionNet path, per edited frame (predict + blend "
                          "on a real photo; landmarks not included), medians of this run:", "mesh path"),
        (bicubic_table, "bicubic image taps, (8, 3, 256, 256) float32 (issue 21), medians of this run:", "bicubic"),
        (region_table, "region textures against the mesh texture alone, lite, per edited frame (predict + blend "
                       "on a real photo; issue 19):", "region textures"),
    )
    for make_table, title, what in tables:
        lines, regressed_rows = make_table(data, baseline, args.fail)
        if lines:
            print("\n" + title)
            print("\n".join(lines))
            if baseline and args.fail and regressed_rows:
                print(f"{len(regressed_rows)} {what} benchmark(s) more than {args.fail[1]:g}% slower than the "
                      "baseline:\n  " + "\n  ".join(regressed_rows))
    target_lines, unmet = targets(data)
    print("\nissue 3 targets (median ratios of this run):")
    print("\n".join(target_lines) if target_lines else "  none for this device yet (bench/ratios.py, TARGETS)")
    print("\nreal-time issue target (per frame: the larger of the GPU's median time and the host's enqueue time):")
    target = model_target(data)
    print("\n".join(target))
    unmet += any(line.lstrip().startswith("NOT MET") for line in target)
    e2e_target_lines, e2e_unmet = e2e_targets(data)
    if e2e_target_lines:
        print("\nreal-time issue targets, end to end (frames/s of this run):")
        print("\n".join(e2e_target_lines))
    return 1 if args.strict_targets and (unmet or e2e_unmet) else 0


if __name__ == "__main__":
    sys.exit(main())

"""Speed of fastwarp against the reference, per benchmark group, from a pytest-benchmark
JSON file (``--benchmark-json``): median times and the ratio reference / fastwarp (above
1: fastwarp is faster), with the ratio of the minimum times beside it (less sensitive to
other processes sharing the CPU; the two disagreeing means the run was disturbed).

Usage: python bench/ratios.py RESULTS.json [--baseline reference] [--provider fastwarp]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", help="pytest-benchmark JSON file")
    parser.add_argument("--baseline", default="reference", help="provider in the numerator (default: reference)")
    parser.add_argument("--provider", default="fastwarp", help="provider in the denominator (default: fastwarp)")
    args = parser.parse_args(argv)

    with open(args.json) as f:
        data = json.load(f)
    medians: dict[str, dict[str, float]] = defaultdict(dict)
    minima: dict[str, dict[str, float]] = defaultdict(dict)
    for bench in data["benchmarks"]:
        provider = bench.get("extra_info", {}).get("provider") or bench.get("params", {}).get("provider")
        group = bench["group"] or bench["name"]
        medians[group][provider] = bench["stats"]["median"]
        minima[group][provider] = bench["stats"]["min"]

    env = data.get("machine_info", {}).get("fastwarp_env", {})
    if env:
        print("  ".join(f"{k}={v}" for k, v in env.items()))
    loads = [b["extra_info"]["loadavg_1min"] for b in data["benchmarks"] if "loadavg_1min" in b.get("extra_info", {})]
    if loads:
        print(f"1-min load average before each benchmark: {min(loads):.2f} to {max(loads):.2f} "
              f"(on {env.get('cpus', '?')} CPUs; near or above that, other processes shared the cores)")
    width = max(len("group"), *(len(g) for g in medians))
    print(f"{'group':<{width}}  {args.provider + ' ms':>12}  {args.baseline + ' ms':>12}  "
          f"{args.baseline + '/' + args.provider:>20}  {'(min/min)':>9}")
    fmt = lambda t: f"{t * 1e3:.3f}" if t is not None else "n/a"  # noqa: E731

    def ratio(times: dict) -> str:
        mine, theirs = times.get(args.provider), times.get(args.baseline)
        return f"{theirs / mine:.2f}x" if mine and theirs else "n/a"

    for group in sorted(medians):
        times = medians[group]
        print(f"{group:<{width}}  {fmt(times.get(args.provider)):>12}  {fmt(times.get(args.baseline)):>12}  "
              f"{ratio(times):>20}  {ratio(minima[group]):>9}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

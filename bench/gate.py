"""Which baseline a benchmark run may be compared with, and the regression gate of runs on
machines that have none (``make bench``, bench/run.py).

Absolute times compare only like with like: the same CPU model with the same number of
cores, or the same GPU. Each results file says where it was measured
(``machine_info.fastwarp_env``, written by bench/conftest.py; py-cpuinfo's
``machine_info.cpu`` for files older than that), and :func:`machine_key` names that
machine: ``cpu-<model>-<N>c`` (``cpu-amd-epyc-2c``: model name from /proc/cpuinfo, N the
cores this process may run on) or the GPU's name (``h200``, ``h100-80gb-hbm3``). Results
and baselines are ``bench/results/<key>-latest.json`` and ``<key>-baseline.json``; a
baseline under another name (``cpu-baseline.json``, from before the keys) is found by the
machine its metadata names.

The gate (:func:`decide`):

- ``absolute``: a baseline of this machine exists; pytest-benchmark compares each median
  with it (``--benchmark-compare-fail``, 25 % by default).
- ``ratios``: this machine has no baseline, another machine of the same device type
  (cpu, cuda) has one; absolute times would measure the machine, so the run is judged on
  ratios measured within itself, against the reference: each fastwarp provider's
  reference / provider (and the frame-space composite's chain / composite) must not fall
  by more than the threshold below that machine's ratio (:func:`ratio_gate`).
- ``none``: no baseline of this device type at all: the run reports and passes.

Needs only the standard library.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ratios import by_group

# Words of a CPU model name that do not tell models apart (its clock is in the model).
_CPU_NOISE = re.compile(r"\((?:r|tm)\)|[®™]|\bcpu\b|\bprocessor\b|\b\d+-core\b|@.*$", re.IGNORECASE)
# Ratio stats the gate can use (a ratio of spreads means nothing).
_RATIO_STATS = ("min", "max", "mean", "median")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def cpu_slug(model: str) -> str:
    """``"Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz"`` -> ``"intel-xeon-platinum-8481c"``."""
    return _slug(_CPU_NOISE.sub(" ", model)) or "unknown"


def gpu_slug(name: str) -> str:
    """``"NVIDIA H200"`` -> ``"h200"``; ``"NVIDIA H100 80GB HBM3"`` -> ``"h100-80gb-hbm3"``."""
    return _slug(re.sub(r"^\s*nvidia\b", "", name, flags=re.IGNORECASE)) or "gpu-unknown"


def device_type(machine_info: dict) -> str:
    """``"cpu"`` or ``"cuda"``: the device a results file's benchmarks ran on."""
    env = machine_info.get("fastwarp_env", {})
    return env.get("device") or ("cuda" if env.get("gpu") else "cpu")


def cores(machine_info: dict) -> int | None:
    env = machine_info.get("fastwarp_env", {})
    return env.get("cpus_available") or env.get("cpus") or machine_info.get("cpu", {}).get("count")


def machine_key(machine_info: dict) -> str:
    """The machine a results file was measured on (its ``machine_info``; for this machine,
    ``{"fastwarp_env": harness.environment()}``): the GPU's name on GPU runs, else
    ``cpu-<model>-<N>c``."""
    env = machine_info.get("fastwarp_env", {})
    if device_type(machine_info) == "cuda":
        return gpu_slug(env.get("gpu") or "")
    model = env.get("cpu") or machine_info.get("cpu", {}).get("brand_raw") or "unknown"
    n = cores(machine_info)
    return f"cpu-{cpu_slug(model)}-{f'{n}c' if n else 'unknown-cores'}"


def _machine_info(path: Path) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f).get("machine_info", {})
    except (OSError, ValueError, AttributeError):
        return None


def baselines(results_dir: Path) -> dict[Path, dict]:
    """Every readable ``*-baseline.json`` in ``results_dir`` and its machine_info."""
    found = {}
    for path in sorted(Path(results_dir).glob("*-baseline.json")):
        info = _machine_info(path)
        if info is not None:
            found[path] = info
    return found


@dataclass(frozen=True)
class Gate:
    """What a run on machine ``key`` is judged against: ``mode`` ``"absolute"`` (times
    against ``baseline``, recorded on this machine), ``"ratios"`` (in-run ratios against
    those of ``baseline``, recorded on another machine of the same device type) or
    ``"none"``."""

    key: str
    mode: str
    baseline: Path | None = None
    baseline_key: str | None = None

    def describe(self, fail: str) -> str:
        where = os.path.relpath(self.baseline) if self.baseline else None
        if self.mode == "absolute":
            return (f"{self.key}: comparing times with this machine's baseline {where}; "
                    f"a benchmark slower by more than {fail} fails the run")
        if self.mode == "ratios":
            return (f"{self.key}: no baseline of this machine, so its absolute times are not compared; "
                    f"the run is judged on ratios against the reference measured in it, each against the same "
                    f"ratio in {where} ({self.baseline_key}): one lower by more than {fail} fails the run")
        return (f"{self.key}: no baseline of this device type, nothing to compare with: the run reports and "
                f"passes; record one with `make bench-baseline` (or `python bench/run.py --promote` after this run)")


def decide(results_dir: Path, machine_info: dict) -> Gate:
    """The gate of a run on the machine ``machine_info`` describes (see the module docstring).

    The baseline of this machine: ``<key>-baseline.json``, else any baseline whose metadata
    names this machine. For ``ratios``: a baseline of the same device type, one with as many
    cores first, then by name.
    """
    key = machine_key(machine_info)
    found = baselines(results_dir)
    exact = Path(results_dir) / f"{key}-baseline.json"
    if exact in found and machine_key(found[exact]) == key:
        return Gate(key, "absolute", exact, key)
    for path, info in found.items():
        if machine_key(info) == key:
            return Gate(key, "absolute", path, key)
    kind, n = device_type(machine_info), cores(machine_info)
    others = [(cores(info) != n, path.name, path, info) for path, info in found.items() if device_type(info) == kind]
    if others:
        _, _, path, info = min(others, key=lambda o: o[:2])
        return Gate(key, "ratios", path, machine_key(info))
    return Gate(key, "none")


# --- the ratio gate ----------------------------------------------------------------------------

def ratios(data: dict, stat: str = "median") -> dict[tuple[str, str, str], float]:
    """``{(group, provider, versus): versus's stat / provider's stat}`` for every ratio the
    gate judges, all from one run: each ``fastwarp-*`` provider against ``reference`` in
    the op groups, and ``composite`` against ``chain`` in the composite groups."""
    stat = stat if stat in _RATIO_STATS else "median"
    found = {}
    for group, providers in by_group(data).items():
        pairs = [(p, "reference") for p in providers if p.startswith("fastwarp-")]
        if group.startswith("composite "):
            pairs.append(("composite", "chain"))
        for provider, versus in pairs:
            if provider in providers and versus in providers:
                found[(group, provider, versus)] = providers[versus]["stats"][stat] / providers[provider]["stats"][stat]
    return found


def ratio_gate(data: dict, reference: dict, fail: tuple[str, float]) -> tuple[list[str], list[str]]:
    """The ratio gate's table and the rows that fail it.

    A row fails when its ratio in ``data`` is lower than in ``reference`` (a baseline of
    another machine) by more than ``fail``'s percentage of that: now < then * (1 - pct/100).
    Rows in one file only are listed (``new``, ``not run``) and never fail.
    """
    stat, pct = fail
    now, then = ratios(data, stat), ratios(reference, stat)
    env = reference.get("machine_info", {})
    lines = [(f"ratio gate: in-run ratios ({stat if stat in _RATIO_STATS else 'median'}) against those of "
              f"{machine_key(env)}; a row fails when its ratio is more than {pct:g}% lower")]
    rows, failed = [], []
    for key in sorted(now.keys() | then.keys()):
        group, provider, versus = key
        a, b = now.get(key), then.get(key)
        if a is None:
            rows.append([group, provider, versus, "", f"{b:.2f}x", "not run"])
            continue
        if b is None:
            rows.append([group, provider, versus, f"{a:.2f}x", "", "new"])
            continue
        change = a / b * 100 - 100
        bad = change < -pct
        rows.append([group, provider, versus, f"{a:.2f}x", f"{b:.2f}x", f"{change:+.0f}%" + (" REGRESSED" if bad else "")])
        if bad:
            failed.append(f"{group} {provider} vs {versus}: {a:.2f}x, was {b:.2f}x")
    if not rows:
        return lines + ["  no ratio to judge in this run (no op or composite benchmark with its reference)"], []
    cols = ["group", "provider", "versus", "now", "there", "change"]
    widths = [max(len(c), *(len(r[j]) for r in rows)) for j, c in enumerate(cols)]
    fmt = lambda r: "  ".join(v.ljust(w) if j < 3 else v.rjust(w) for j, (v, w) in enumerate(zip(r, widths)))
    lines += [fmt(cols)] + [fmt(r) for r in rows]
    judged = sum(1 for r in rows if r[3] and r[4])
    lines.append(f"{len(failed)} of {judged} ratio(s) more than {pct:g}% below {machine_key(env)}'s"
                 + ("" if not failed else ":\n  " + "\n  ".join(failed)))
    return lines, failed

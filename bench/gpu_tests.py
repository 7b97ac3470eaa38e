"""The prioritised CUDA test subsets of bench/gpu_run.sh, as a pytest plugin: a GPU lease
is short, so the first call runs a few cases of every GPU code path, not all ~2,300.

    PYTHONPATH=bench python -m pytest -p gpu_tests --gpu-subset core tests/test_ops.py ...

``--gpu-subset`` keeps, of the tests parametrised over a GPU backend (a ``cuda`` or
``triton`` token in the test's id):

- ``core``: the correctness tests (names in :data:`CORE`: against the reference, the
  identity, bit-for-bit footprints, degenerate and non-finite inputs, half precision),
  per test function and backend a pairwise cover of its parameters: every two values
  of the id (shape and dtype, dtype and op, layout and padding mode, ...) meet in at least
  one kept case (greedy: ~18 of 288 cases of test_forward_matches_reference), so each
  shape runs in float32 (the window and fixed-point backwards) and float64, each layout
  in both ops. torch.compile and export tests are left to the full suite.
- ``determinism``: every case of the determinism tests (names in :data:`DETERMINISM`).

Everything else is deselected (the full suite, ``GPU_RUN_MODE=full``, runs it all).
"""

from __future__ import annotations

import re

CORE = re.compile(r"matches|identity|bit_for_bit|without_theta|is_interpolate|reads_nothing|integer_flow|"
                  r"non_finite|huge_finite|half_precision|empty_batch|zero_channels|constant_flow|inverse_affine|"
                  r"moves_a_dot")
DETERMINISM = re.compile(r"determinis")
# torch.compile and export take seconds a case: the full suite's.
EXCLUDED = re.compile(r"compile|export")
GPU_BACKENDS = ("cuda", "triton")
SUBSETS = ("core", "determinism")


def split_id(nodeid: str) -> tuple[str, tuple[str, ...]]:
    """``"tests/t.py::test_f[a-b-c]"`` -> ``("tests/t.py::test_f", ("a", "b", "c"))``."""
    base, _, params = nodeid.partition("[")
    return base, tuple(params.rstrip("]").split("-")) if params else ()


def gpu_backend(tokens: tuple[str, ...]) -> str | None:
    found = [t for t in tokens if t in GPU_BACKENDS]
    return found[0] if len(found) == 1 else None


def select(nodeids: list[str], subset: str) -> list[str]:
    """The node ids of ``subset`` (see the module docstring), in their collection order."""
    if subset not in SUBSETS:
        raise ValueError(f"--gpu-subset must be one of {', '.join(SUBSETS)}, got {subset!r}")
    pattern = CORE if subset == "core" else DETERMINISM
    groups: dict[tuple[str, str], list[tuple[str, tuple[str, ...]]]] = {}
    for nodeid in nodeids:
        base, tokens = split_id(nodeid)
        backend = gpu_backend(tokens)
        name = base.rpartition("::")[2]
        if backend is None or not pattern.search(name) or EXCLUDED.search(name):
            continue
        groups.setdefault((base, backend), []).append((nodeid, tuple(t for t in tokens if t != backend)))
    kept = set()
    for cases in groups.values():
        if subset == "determinism":
            kept.update(nodeid for nodeid, _ in cases)
            continue
        # Greedily, the case that brings the most pairs of values not yet covered (the first
        # of equals, so the choice is stable).
        def pairs(tokens):
            values = list(enumerate(tokens))
            return {(a, b) for j, b in enumerate(values) for a in values[:j]} or {tuple(values)}

        todo = {nodeid: pairs(tokens) for nodeid, tokens in cases}
        while todo:
            best = max(todo, key=lambda n: len(todo[n]))
            if not todo[best]:
                break
            kept.add(best)
            covered = todo.pop(best)
            todo = {n: left - covered for n, left in todo.items()}
    return [nodeid for nodeid in nodeids if nodeid in kept]


def pytest_addoption(parser):
    parser.getgroup("fastwarp GPU lease").addoption(
        "--gpu-subset", choices=SUBSETS, default=None,
        help="run only this prioritised subset of the GPU tests (bench/gpu_tests.py)")


def pytest_collection_modifyitems(config, items):
    subset = config.getoption("--gpu-subset")
    if subset is None:
        return
    keep = set(select([item.nodeid for item in items], subset))
    deselected = [item for item in items if item.nodeid not in keep]
    items[:] = [item for item in items if item.nodeid in keep]
    config.hook.pytest_deselected(items=deselected)

"""The layout (docs/design.md, "Layout"): no import circle in the fastwarp package, lazy
imports included; no module over ~600 lines; ops, realtime and export are packages; the
library never imports training/; design citations point into the repository; the
architecture picture is drawn from today's imports; the public API keeps its names."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import architecture  # noqa: E402

MAX_MODULE_LINES = 600


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    pkg = tmp_path / "fastwarp"
    for name, text in files.items():
        path = pkg / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return pkg


def test_the_graph_sees_lazy_imports_and_finds_circles(tmp_path):
    """An independent toy package: a circle closed by a function-level import, one closed by
    importlib, and a clean chain."""
    pkg = _package(tmp_path, {
        "__init__.py": "",
        "a.py": "from . import b\n",
        "b.py": "def f():\n    from .a import x\n",
        "sub/__init__.py": "from .c import y\n",
        "sub/c.py": "import importlib\nm = importlib.import_module('.d', __package__)\n",
        "sub/d.py": "from .. import sub\n",
        "e.py": "from .sub import c\nimport fastwarp.a\n",
    })
    graph = architecture.import_graph(pkg)
    assert graph["fastwarp.b"] == {"fastwarp.a"}
    assert graph["fastwarp.sub.c"] == {"fastwarp.sub.d"}
    assert graph["fastwarp.sub.d"] == set()  # its own package's __init__ is implicit
    assert graph["fastwarp.e"] == {"fastwarp.sub.c", "fastwarp.a"}
    assert architecture.find_cycles(graph) == [["fastwarp.a", "fastwarp.b"]]
    graph["fastwarp.sub.d"].add("fastwarp.sub.c")
    assert sorted(architecture.find_cycles(graph)) == [["fastwarp.a", "fastwarp.b"],
                                                       ["fastwarp.sub.c", "fastwarp.sub.d"]]


def test_fastwarp_has_no_import_circle():
    assert architecture.find_cycles(architecture.import_graph()) == []


def test_ops_backends_never_import_their_callers():
    """One direction: api -> registry -> {registration, triton_backend, reference};
    triton_backend -> {registration, checks, triton_cubic (its bicubic device functions)};
    triton_cubic -> nothing of fastwarp."""
    graph = architecture.import_graph()
    ops = {n: {m for m in deps if m.startswith("fastwarp.")} for n, deps in graph.items()
           if n.startswith("fastwarp.ops.")}
    assert ops["fastwarp.ops.checks"] == set()
    assert ops["fastwarp.ops.reference"] == set()
    assert ops["fastwarp.ops.registration"] == {"fastwarp.ops.checks"}
    assert ops["fastwarp.ops.triton_backend"] == {"fastwarp.ops.checks", "fastwarp.ops.registration",
                                                  "fastwarp.ops.triton_cubic"}
    assert ops["fastwarp.ops.triton_cubic"] == set()
    assert "fastwarp.ops.api" not in set().union(*(d for n, d in ops.items() if n != "fastwarp.ops.api"))
    export = {n: deps for n, deps in graph.items() if n.startswith("fastwarp.export.")}
    assert "fastwarp.export.tensorrt" not in export["fastwarp.export.onnx"] | export["fastwarp.export.graph"]


@pytest.mark.parametrize("name, lines", sorted(architecture.line_counts().items()))
def test_no_module_over_600_lines(name, lines):
    assert lines <= MAX_MODULE_LINES, f"{name} has {lines} lines: split it by job"


@pytest.mark.parametrize("package", ["ops", "realtime", "export", "models", "face"])
def test_subpackages(package):
    assert (ROOT / "fastwarp" / package / "__init__.py").is_file()


def test_one_module_named_editor_at_most():
    names = [p.name for p in (ROOT / "fastwarp").rglob("*.py")]
    assert names.count("editor.py") <= 1


def test_the_library_never_imports_training():
    for path in (ROOT / "fastwarp").rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(from|import)\s+training\b", text, re.M), path


def test_design_citations_point_into_the_repository():
    assert (ROOT / "docs" / "design.md").is_file()
    outside = "DESIGN" + ".md"  # (not written out whole, or this file would cite it)
    cited = []
    for folder in ("fastwarp", "csrc", "training", "tests", "bench", "tools"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in (".py", ".h", ".cpp", ".cu", ".cuh", ".sh", ".md", ".toml") and path.is_file():
                if outside in path.read_text(errors="replace"):
                    cited.append(str(path.relative_to(ROOT)))
    for name in ("README.md", "Makefile", "setup.py", "pyproject.toml"):
        if outside in (ROOT / name).read_text():
            cited.append(name)
    assert cited == [], f"these cite a design file outside the repository (use docs/design.md): {cited}"


def test_architecture_picture_is_current():
    """docs/architecture.dot is generated from today's imports (tools/architecture.py)."""
    assert architecture.main(["--check"]) == 0, "run: python tools/architecture.py"
    assert (ROOT / "docs" / "architecture.svg").is_file()


def test_public_api_keeps_its_names():
    import fastwarp
    from fastwarp.models import EditorNet, FaceEditor
    from fastwarp.expression_editor import ExpressionEditor

    assert callable(fastwarp.warp) and callable(fastwarp.warp_blend)
    assert fastwarp.ExpressionEditor is ExpressionEditor
    assert FaceEditor is EditorNet
    assert fastwarp.reference is fastwarp.ops.reference
    assert fastwarp.backends()["cpu"] is True
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        fastwarp.Nope  # noqa: B018

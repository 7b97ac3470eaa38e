"""fastwarp's import graph: the modules of the ``fastwarp`` package and which imports which.

Used twice: ``tests/test_layout.py`` checks the graph (no import circle, lazy imports
included; no module over the size limit), and this script draws it for newcomers::

    python tools/architecture.py            # writes docs/architecture.dot and, where
                                            # Graphviz's `dot` is installed, docs/architecture.svg
    python tools/architecture.py --check    # exit 1 if docs/architecture.dot is stale

Every ``import`` counts, at module level or inside a function (a lazy import is still a
dependency), and so does ``importlib.import_module(".name", __package__)``. A package
is its ``__init__``; a module importing its own package's ``__init__`` is implicit in
Python and not drawn.
"""

from __future__ import annotations

import argparse
import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "fastwarp"
DOCS = ROOT / "docs"

#: Layers of the picture, top to bottom (a module's layer is its first dotted part after
#: ``fastwarp``): the entry points, the pipelines, the networks and face steps, the ops.
LAYERS = {
    "cli": 0, "app": 0, "cli_io": 1, "export": 1, "realtime": 1, "expression_editor": 2, "models": 3, "face": 3,
    "images": 3, "presets": 4, "ops": 4, "au": 4, "_io": 4, "_native_log": 4,
}


def module_names(package: Path = PACKAGE) -> dict[str, Path]:
    """``{"fastwarp.ops.api": path, "fastwarp.ops": path/__init__.py, ...}``."""
    names = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _resolve(importer: str, is_package: bool, module: str | None, level: int) -> str:
    if level == 0:
        return module or ""
    base = importer.split(".")
    if not is_package:
        base = base[:-1]
    base = base[:len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The fastwarp modules that module ``name`` (file ``path``) imports, anywhere in it."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def add(target: str) -> None:
        # the longest known prefix: "fastwarp.ops.api.warp" -> "fastwarp.ops.api"
        parts = target.split(".")
        for i in range(len(parts), 0, -1):
            candidate = ".".join(parts[:i])
            if candidate in known:
                found.add(candidate)
                return

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(name, is_package, node.module, node.level)
            for alias in node.names:  # `from . import ops` imports the module fastwarp.ops
                if f"{target}.{alias.name}" in known:
                    add(f"{target}.{alias.name}")
                else:
                    add(target)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            spec = node.args[0].value
            level = len(spec) - len(spec.lstrip("."))
            add(_resolve(name, is_package, spec.lstrip(".") or None, level) if level else spec)
    # importing one's own enclosing packages is implicit (Python runs their __init__ first)
    return {t for t in found if t != name and not name.startswith(t + ".")}


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """``{module: {modules it imports}}`` over the fastwarp package."""
    names = module_names(package)
    known = set(names)
    return {name: imports_of(name, path, known) for name, path in names.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (or a self-import),
    each as a sorted list: empty when the graph has no circle (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def line_counts(package: Path = PACKAGE) -> dict[str, int]:
    return {name: len(path.read_text().splitlines()) for name, path in module_names(package).items()}


def to_dot(graph: dict[str, set[str]]) -> str:
    """Graphviz source: one box per module, one cluster per package, ranked by :data:`LAYERS`.
    (No line counts: the picture changes only when the imports do.)"""
    def short(name: str) -> str:
        return name.removeprefix("fastwarp.") if name != "fastwarp" else "fastwarp"

    def layer(name: str) -> int:
        parts = name.split(".")
        return LAYERS.get(parts[1], 4) if len(parts) > 1 else 0

    out = ["// generated by tools/architecture.py from fastwarp's imports: do not edit",
           "digraph fastwarp {",
           '  graph [rankdir=TB, fontname="Helvetica", fontsize=11, nodesep=0.25, ranksep=0.55,',
           '         label="fastwarp: modules and their imports (an arrow points at what is imported)", labelloc=t];',
           '  node [shape=box, style="rounded,filled", fillcolor="#f4f4f4", fontname="Helvetica", fontsize=10];',
           '  edge [color="#777777", arrowsize=0.6];']
    colours = {"ops": "#dbe9f6", "realtime": "#e3f2df", "export": "#fbe8d3", "models": "#efe3f5", "face": "#fdf3c8"}
    packages = sorted({n.split(".")[1] for n in graph if n.count(".") >= 2 or
                       (n.count(".") == 1 and any(m.startswith(n + ".") for m in graph))})
    for pkg in packages:
        out.append(f'  subgraph "cluster_{pkg}" {{')
        out.append(f'    label="fastwarp/{pkg}/"; style="rounded,filled"; fillcolor="{colours.get(pkg, "#eeeeee")}";'
                   ' color="#bbbbbb";')
        for n in sorted(graph):
            if n == f"fastwarp.{pkg}" or n.startswith(f"fastwarp.{pkg}."):
                label = "__init__" if n == f"fastwarp.{pkg}" else n.rsplit(".", 1)[1]
                out.append(f'    "{short(n)}" [label="{label}", fillcolor=white];')
        out.append("  }")
    for n in sorted(graph):
        if not any(n == f"fastwarp.{p}" or n.startswith(f"fastwarp.{p}.") for p in packages):
            out.append(f'  "{short(n)}" [label="{short(n)}"];')
    for rank in sorted(set(LAYERS.values())):
        members = [short(n) for n in sorted(graph) if layer(n) == rank and n.count(".") == 1
                   and not any(n == f"fastwarp.{p}" for p in packages)]
        if members:
            out.append("  { rank=same; " + " ".join(f'"{m}";' for m in members) + " }")
    for n in sorted(graph):
        for m in sorted(graph[n]):
            out.append(f'  "{short(n)}" -> "{short(m)}";')
    out.append("}")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/architecture.dot is stale")
    args = parser.parse_args(argv)
    graph = import_graph()
    cycles = find_cycles(graph)
    if cycles:
        print("import circles: " + "; ".join(" <-> ".join(c) for c in cycles), file=sys.stderr)
        return 1
    dot = to_dot(graph)
    dot_path = DOCS / "architecture.dot"
    if args.check:
        if not dot_path.is_file() or dot_path.read_text() != dot:
            print(f"{dot_path.relative_to(ROOT)} is stale: run python tools/architecture.py", file=sys.stderr)
            return 1
        return 0
    DOCS.mkdir(exist_ok=True)
    dot_path.write_text(dot)
    print(f"wrote {dot_path.relative_to(ROOT)}")
    if shutil.which("dot"):
        for fmt in ("svg", "png"):
            target = DOCS / f"architecture.{fmt}"
            subprocess.run(["dot", f"-T{fmt}", "-Gdpi=110", "-o", str(target), str(dot_path)], check=True)
            print(f"wrote {target.relative_to(ROOT)}")
    else:
        print("Graphviz's `dot` is not installed (apt-get install graphviz): the pictures were not redrawn")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

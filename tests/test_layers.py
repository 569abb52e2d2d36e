"""The package's layers: library <- finetune <- experiments <- cli, with no import against that flow.

Every ``import`` / ``from ... import`` statement of ``src/neftune`` is read (function-level and
``TYPE_CHECKING`` ones too, since they run as well), resolved to the neftune module it names,
and checked:

- a module imports only its own layer or the ones below (layers: see ``LAYERS``);
- the kernels import nothing else of neftune;
- no module imports an old path that only ``neftune._moved`` keeps alive;
- the import graph has no cycle;
- every layer package's ``__init__`` docstring says what it may import.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from neftune._moved import MOVED, new_path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "neftune"

#: Module prefix -> layer (the longest prefix wins); anything else of neftune is the library (0).
LAYERS = {
    "neftune.finetune": 1,
    "neftune.experiments": 2,
    "neftune.cli": 3,
    "neftune.__main__": 3,
}
LAYER_NAMES = ("library", "finetune", "experiments", "cli")


def layer(module: str) -> int:
    for prefix, value in sorted(LAYERS.items(), key=lambda kv: -len(kv[0])):
        if module == prefix or module.startswith(prefix + "."):
            return value
    return 0


def module_name(path: Path) -> tuple[str, bool]:
    """``(dotted name, is a package __init__)`` of a file under src/."""
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def modules() -> dict[str, Path]:
    return {module_name(p)[0]: p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, known: set[str]) -> list[tuple[int, str]]:
    """``(line, module)`` for every neftune module ``path`` imports (``from X import name`` names the
    submodule ``X.name`` when that is a module, else ``X``)."""
    name, is_package = module_name(path)
    package = name if is_package else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "neftune"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").split(".")[0] == "neftune":
                target = node.module
            else:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.append((node.lineno, sub if sub in known else target))
    return found


def edges() -> list[tuple[str, int, str]]:
    known = modules()
    out = []
    for name, path in known.items():
        for line, target in imports(path, set(known)):
            if target != name:
                out.append((name, line, target))
    return out


def test_the_walk_sees_the_package():
    names = modules()
    # each layer is present, and the walk resolves relative imports (a known edge is found)
    assert {
        "neftune.noise",
        "neftune.activation.hooks",
        "neftune.finetune.training",
        "neftune.cli.app",
    } <= set(names)
    assert ("neftune.activation.hooks", "neftune.noise") in {(a, b) for a, _, b in edges()}
    assert len(edges()) > 200


def test_no_import_runs_against_the_layers():
    wrong = [
        f"{src} (line {line}, {LAYER_NAMES[layer(src)]}) imports {dst} ({LAYER_NAMES[layer(dst)]})"
        for src, line, dst in edges()
        if layer(dst) > layer(src)
    ]
    assert not wrong, "\n".join(wrong)


def test_the_kernels_import_nothing_else_of_neftune():
    wrong = [
        f"{src}:{line} imports {dst}"
        for src, line, dst in edges()
        if src.startswith("neftune.kernels") and not dst.startswith("neftune.kernels")
    ]
    assert not wrong, "\n".join(wrong)


def test_no_module_imports_an_old_path():
    wrong = [
        f"{src}:{line} imports {dst} (now {new_path(dst)})" for src, line, dst in edges() if new_path(dst)
    ]
    assert not wrong, "\n".join(wrong)
    # and no old path is still a file (the alias would hide it)
    for old in MOVED:
        relative = Path(*old.split("."))
        assert not (SRC / relative).with_suffix(".py").exists() and not (SRC / relative).is_dir(), old


def test_no_import_cycle():
    graph: dict[str, set[str]] = {}
    for src, _, dst in edges():
        graph.setdefault(src, set()).add(dst)
    # Tarjan's strongly connected components: a component of more than one module is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, cycles


@pytest.mark.parametrize(
    "init", sorted(PACKAGE.rglob("__init__.py")), ids=lambda p: str(p.parent.relative_to(SRC))
)
def test_each_package_says_what_it_is_for_and_may_import(init):
    doc = ast.get_docstring(ast.parse(init.read_text())) or ""
    assert "import" in doc and len(doc) > 150, (
        f"{init}: its docstring should say what it is for and may import"
    )


def test_every_layer_package_is_checked():
    found = {str(p.parent.relative_to(PACKAGE)) for p in PACKAGE.rglob("__init__.py")}
    assert {".", "activation", "kernels", "integrations", "finetune", "experiments", "cli"} <= found


def test_a_violation_is_caught(tmp_path, monkeypatch):
    """The check itself: a library module importing the application is reported."""
    fake = tmp_path / "neftune"
    (fake / "finetune").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "finetune" / "__init__.py").write_text("")
    (fake / "finetune" / "training.py").write_text("X = 1\n")
    (fake / "noise.py").write_text("def f():\n    from .finetune.training import X\n    return X\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    bad = [(s, d) for s, _, d in edges() if layer(d) > layer(s)]
    assert bad == [("neftune.noise", "neftune.finetune.training")]

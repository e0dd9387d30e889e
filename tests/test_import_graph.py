"""The package's layout: sub-packages a newcomer can read as the architecture, and no import cycles.

Every ``from .x import`` of a package module counts, also those inside functions (a "late"
import hides a cycle; it does not remove it), and so does the ``__init__`` of each sub-package
a module imports from, which Python runs first. The top-level ``vae_tutorial/__init__.py``
imports every module (the public ``vt.X`` names) and is left out as the implicit parent of all.
"""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import vae_tutorial as vt

PKG = Path(vt.__file__).resolve().parent
SUBPACKAGES = {"maths", "models", "training", "evaluation", "analysis", "display"}
TOP_MODULES = {"__init__", "__main__", "cli", "errors", "check"}


def _name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_package(name: str) -> bool:
    return (PKG.parent / name.replace(".", "/") / "__init__.py").is_file()


def _exists(name: str) -> bool:
    return _is_package(name) or (PKG.parent / (name.replace(".", "/") + ".py")).is_file()


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (relative imports anywhere in the file)."""
    graph: dict[str, set[str]] = {}
    for path in PKG.rglob("*.py"):
        here = _name(path)
        package = here if path.name == "__init__.py" else here.rpartition(".")[0]
        edges = graph.setdefault(here, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom) or node.level == 0:
                continue
            base = package.split(".")
            base = base[: len(base) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
            targets = [target]
            if _is_package(target):  # `from .pkg import module` imports the module too
                targets += [f"{target}.{a.name}" for a in node.names if _exists(f"{target}.{a.name}")]
            for t in targets:
                # Python runs the __init__ of every package on the way (except the root's, see above)
                parts = t.split(".")
                edges.update(".".join(parts[:i]) for i in range(2, len(parts) + 1))
        edges.discard(here)
    return graph


def _cycle(graph):
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if m == "vae_tutorial" and n != "vae_tutorial":
                continue
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert "vae_tutorial.training.train" in graph["vae_tutorial"]  # the walk sees the package
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_modules_live_in_the_sub_packages():
    top = {p.stem for p in PKG.glob("*.py")}
    assert top == TOP_MODULES, f"modules at the top level that belong in a sub-package: {top - TOP_MODULES}"
    subs = {p.parent.name for p in PKG.glob("*/__init__.py")}
    assert subs == SUBPACKAGES
    for sub in SUBPACKAGES:
        doc = importlib.import_module(f"vae_tutorial.{sub}").__doc__
        assert doc and len(doc.split()) > 8, f"vae_tutorial.{sub} needs a docstring saying what it holds"


@pytest.mark.parametrize("old, new", sorted(vt.MODULES.items()))
def test_the_old_module_names_still_work(old, new):
    module = importlib.import_module(f"vae_tutorial.{new}")
    assert getattr(vt, old) is module
    assert importlib.import_module(f"vae_tutorial.{old}") is module


def test_the_old_models_module_is_the_models_package():
    from vae_tutorial.models import VAE, MLPEncoder  # the old module's names, from the package

    assert VAE is vt.VAE and MLPEncoder is vt.MLPEncoder and vt.models.LIKELIHOODS

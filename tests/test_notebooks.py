"""The chapters' notebooks as committed: runnable anywhere, solutions hidden, no stored outputs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from vae_tutorial import notebook

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))


def test_there_are_chapters():
    assert len(CHAPTERS) >= 13


def test_chapters_follow_the_conventions_tool():
    """Header, install cell and hidden solutions are what tools/nbconventions.py writes."""
    run = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "nbconventions.py"), "--check"],
        capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    stored = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and c.get("outputs")]
    assert not stored, f"{path.name}: cells {stored} have stored outputs (clear them before committing)"


def _solution_cells(nb):
    inside, found = False, []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            inside = ("{solution-start}" in cell.source or inside) and "{solution-end}" not in cell.source
        elif inside:
            found.append(cell)
    return found


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_solutions_are_hidden_and_skipped_by_run_all(path):
    nb = nbformat.read(path, as_version=4)
    for cell in _solution_cells(nb):
        head = cell.source.splitlines()[0] if cell.source else ""
        assert notebook.is_solution(cell.source), f"{path.name}: solution cell starts with {head!r}"
        assert cell.metadata.get("jupyter", {}).get("source_hidden") is True, f"{path.name}: {head!r} visible in Jupyter"
        assert cell.metadata.get("cellView") == "form", f"{path.name}: {head!r} visible in Colab"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_install_cell_comes_before_any_import_of_the_package(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "install" in code[0].metadata.get("tags", []), f"{path.name}: the first code cell is not the install cell"
    assert "VAE_TUTORIAL_PIP_SPEC" in code[0].source and "[book]" in code[0].source


class _Shell:
    """Runs cells through a real IPython shell with vae_tutorial's transformer installed."""

    def __init__(self):
        from IPython.core.interactiveshell import InteractiveShell

        self.ip = InteractiveShell.instance()
        assert notebook.register(self.ip)
        assert notebook.register(self.ip)  # idempotent
        assert self.ip.input_transformers_cleanup.count(notebook.skip_unrequested_solutions) == 1

    def run(self, source):
        result = self.ip.run_cell(source)
        return result


@pytest.fixture
def shell(capsys):
    return _Shell()


def test_solution_cell_is_skipped_unless_enabled(shell, monkeypatch, capsys):
    cell = f"{notebook.SOLUTION_TITLE}\nran_solution = 42\nassert False, 'a solution assert'\n"
    monkeypatch.delenv(notebook.SOLUTIONS_ENV, raising=False)
    shell.ip.user_ns.pop("ran_solution", None)
    result = shell.run(cell)
    assert result.success and "ran_solution" not in shell.ip.user_ns
    assert "Solution not run" in capsys.readouterr().out

    monkeypatch.setenv(notebook.SOLUTIONS_ENV, "run")
    result = shell.run(cell)
    assert shell.ip.user_ns["ran_solution"] == 42
    assert not result.success and isinstance(result.error_in_exec, AssertionError)


def test_ordinary_cells_run_whatever_the_setting(shell, monkeypatch):
    monkeypatch.delenv(notebook.SOLUTIONS_ENV, raising=False)
    shell.run("# a comment, then @title Solution later\nordinary = 1\n")
    assert shell.ip.user_ns["ordinary"] == 1


EXECUTED = Path(os.environ.get("VAE_TUTORIAL_BOOK_HTML", ROOT / "_build" / "html")).parent / "jupyter_execute" / "book"


@pytest.mark.browser  # needs the built book, like the browser tests, and runs with them in CI
@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_executed_chapter_shows_a_figure_in_its_own_outputs(path):
    """Jupyter and Colab readers see figures as cell outputs, not only through the book's glue."""
    executed = EXECUTED / path.name
    if not executed.exists():
        reason = f"{executed} not found: build the book first (jupyter-book build .)"
        if os.environ.get("VAE_TUTORIAL_BROWSER_TEST", "") == "require":
            pytest.fail(reason)
        pytest.skip(reason)
    nb = nbformat.read(executed, as_version=4)
    images = [
        i for i, c in enumerate(nb.cells) if c.cell_type == "code"
        for out in c.get("outputs", []) if "image/png" in out.get("data", {})
    ]
    assert images, f"{path.name}: no cell of the executed notebook shows an image"
    hidden = [c for c in _solution_cells(nb) if not c.metadata.get("jupyter", {}).get("source_hidden")]
    assert not hidden, f"{path.name}: {len(hidden)} solution cells are visible in the executed notebook"


def _names(source: str) -> tuple[set, set]:
    """(names a cell binds, names it reads), from its Python syntax (magics dropped)."""
    import ast

    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
    bound, read = set(), set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Name):
            (bound if isinstance(node.ctx, ast.Store) else read).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    return bound, read


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_no_cell_needs_a_name_that_only_a_skipped_solution_defines(path):
    """"Run all" skips solutions, so the chapter's own cells must not depend on them."""
    nb = nbformat.read(path, as_version=4)
    bound, only_in_solutions, bad = set(), set(), []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        names_bound, names_read = _names(cell.source)
        if notebook.is_solution(cell.source):
            only_in_solutions |= names_bound - bound
        else:
            missing = (names_read & only_in_solutions) - names_bound
            if missing:
                bad.append(f"cell {i} reads {sorted(missing)}")
            bound |= names_bound
            only_in_solutions -= names_bound
    assert not bad, f"{path.name}: " + "; ".join(bad)

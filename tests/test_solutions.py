"""Every exercise's solution code is marked as a solution: hidden, and skipped by "Run all".

A chapter's solutions are sphinx-exercise directives in its Markdown cells: the code cells
between a ```{solution-start} and its ```{solution-end} are the solution's code. Each must be
marked by tools/nbconventions.py: first line ``# @title Solution`` (vae_tutorial.display.notebook
skips the cell unless asked to run it), collapsed in JupyterLab (``jupyter.source_hidden``)
and in Colab (``cellView: form``).

The solutions are counted here twice, for every chapter: from the Markdown, by a parser of this
file's own, and from the notebook's marks; the two must agree. The tool once missed every
solution that started in the Markdown cell where the previous one ended (24 solution cells in
11 chapters ran in "Run all" and showed their code); its ``--check`` reran the same function,
so it could not see that.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
import pytest

from vae_tutorial import notebook

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import nbconventions  # noqa: E402

CHAPTERS = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))
# a directive's opening line: ```{solution-start} ch04-ex2, :::{solution-end}, ...
DIRECTIVE = re.compile(r"^\s*(`{3,}|:{3,})\{(solution-start|solution-end)\}\s*(\S*)")


def solutions_in_markdown(nb) -> tuple[dict[str, list[int]], list[str]]:
    """The code cells (by index) of each solution, read from the Markdown line by line, and
    any directive out of place (an end with no start, a start inside a solution)."""
    solutions: dict[str, list[int]] = {}
    errors: list[str] = []
    label = None
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            if label is not None:
                solutions[label].append(i)
            continue
        if cell.cell_type != "markdown":
            continue
        for line in cell.source.splitlines():
            match = DIRECTIVE.match(line)
            if not match:
                continue
            if match.group(2) == "solution-start":
                if label is not None:
                    errors.append(f"cell {i}: a solution starts inside solution {label!r}")
                label = match.group(3) or f"(unlabelled, cell {i})"
                solutions[label] = []
            else:
                if label is None:
                    errors.append(f"cell {i}: a solution ends that never started")
                label = None
    if label is not None:
        errors.append(f"solution {label!r} never ends")
    return solutions, errors


def is_marked(cell) -> bool:
    """A code cell marked as a solution: the title line, and collapsed in Jupyter and Colab."""
    return (notebook.is_solution(cell.source)
            and cell.metadata.get("jupyter", {}).get("source_hidden") is True
            and cell.metadata.get("cellView") == "form")


def compare(nb) -> list[str]:
    """How the notebook's marked solution cells differ from the solutions in its Markdown."""
    solutions, problems = solutions_in_markdown(nb)
    with_code = {label: cells for label, cells in solutions.items() if cells}
    inside = {i for cells in with_code.values() for i in cells}
    marked = {i for i, cell in enumerate(nb.cells) if cell.cell_type == "code" and is_marked(cell)}
    fully_marked = [label for label, cells in with_code.items() if set(cells) <= marked]
    if len(fully_marked) != len(with_code):
        problems.append(f"{len(with_code)} solutions with code in the Markdown, {len(fully_marked)} marked")
    for label, cells in with_code.items():
        for i in cells:
            if i not in marked:
                title = "titled but not collapsed" if notebook.is_solution(nb.cells[i].source) else "not marked"
                problems.append(f"cell {i} of solution {label} is {title}")
    for i in sorted(marked - inside):
        problems.append(f"cell {i} is marked as a solution outside any solution")
    return problems


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_solution_in_the_markdown_is_marked_in_the_notebook(path):
    problems = compare(nbformat.read(path, as_version=4))
    assert not problems, (f"{path.name}: " + "; ".join(problems)
                          + " (python tools/nbconventions.py marks them)")


# --- the tool, on a notebook made for the purpose ----------------------------------------------

def _notebook(*cells: tuple[str, str]):
    nb = nbformat.v4.new_notebook()
    make = {"md": nbformat.v4.new_markdown_cell, "code": nbformat.v4.new_code_cell}
    nb.cells = [make[kind](source) for kind, source in cells]
    return nb


def _exercise(label: str) -> str:
    return f"```{{exercise}}\n:label: {label}\nDo it.\n```\n\n```{{solution-start}} {label}\n:class: dropdown\n```"


END = "```{solution-end}\n```"
TWO_SOLUTIONS = [
    ("md", "# 99. A chapter"),
    ("code", "x = 0"),
    ("md", _exercise("t-ex1")),
    ("code", "a = 1"),
    # one cell ends the first solution, states the next exercise and starts its solution
    ("md", f"{END}\n\nThe next one.\n\n{_exercise('t-ex2')}"),
    ("code", "b = 2"),
    ("code", "b2 = 3"),
    ("md", END),
    ("code", "c = 3"),
]


def _marked_sources(nb) -> list[str]:
    return [cell.source.split("\n")[-1] for cell in nb.cells if cell.cell_type == "code" and is_marked(cell)]


def test_tool_marks_a_solution_that_starts_where_the_previous_one_ends():
    nb = nbconventions.apply(_notebook(*TWO_SOLUTIONS), "99_test")
    assert _marked_sources(nb) == ["a = 1", "b = 2", "b2 = 3"]
    assert not compare(nb)
    solutions, errors = solutions_in_markdown(nb)
    assert solutions == {"t-ex1": [4], "t-ex2": [6, 7]} and not errors  # the install cell is cell 1


def test_the_count_sees_the_solution_that_the_old_tool_missed():
    nb = _notebook(*TWO_SOLUTIONS)
    for cell in nb.cells:  # marked as the old tool did: the first solution only
        if cell.source == "a = 1":
            nbconventions.solution_cell(cell)
    assert compare(nb) == ["2 solutions with code in the Markdown, 1 marked",
                           "cell 5 of solution t-ex2 is not marked", "cell 6 of solution t-ex2 is not marked"]


def test_tool_leaves_code_after_a_solution_without_code_alone():
    # a solution that is all Markdown, opened and closed in one cell; colon fences as well
    nb = _notebook(("md", "# 99. A chapter"),
                   ("md", f"{_exercise('t-ex1')}\n\nBecause.\n\n{END}"),
                   ("code", "after = 1"),
                   ("md", ":::{exercise}\n:label: t-ex2\nDo it.\n:::\n\n:::{solution-start} t-ex2\n:::"),
                   ("code", "inside = 2"),
                   ("md", ":::{solution-end}\n:::"),
                   ("code", "outside = 3"))
    nb = nbconventions.apply(nb, "99_test")
    assert _marked_sources(nb) == ["inside = 2"]
    assert not compare(nb)


def test_tool_is_idempotent_on_solutions():
    once = nbconventions.apply(_notebook(*TWO_SOLUTIONS), "99_test")
    twice = nbconventions.apply(nbformat.reads(nbformat.writes(once), as_version=4), "99_test")
    assert nbformat.writes(twice) == nbformat.writes(once)


def test_markdown_count_reports_directives_out_of_place():
    nb = _notebook(("md", END), ("md", _exercise("t-ex1")), ("md", _exercise("t-ex2")))
    _, errors = solutions_in_markdown(nb)
    assert errors == ["cell 0: a solution ends that never started",
                      "cell 2: a solution starts inside solution 't-ex1'", "solution 't-ex2' never ends"]

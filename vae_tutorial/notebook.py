"""Notebook conveniences: exercise solutions that "Run all" skips but CI and the book execute.

A solution cell is a code cell whose first line is ``SOLUTION_TITLE`` (a Colab form title,
so Colab shows only that title; JupyterLab collapses it through the cell's
``jupyter.source_hidden`` metadata, and the book shows it inside the solution's drop-down).
When ``vae_tutorial`` is imported inside IPython it registers an input transformer: while
``$VAE_TUTORIAL_SOLUTIONS`` is not ``run``, a solution cell prints how to run it instead of
running, so "Run all" does not spoil (or spend time on) the exercises. nbval (through the
repository's ``conftest.py``) and the book build (through ``tools/run_solutions.py``) set the
variable, so every solution is executed and its asserts are checked there.
"""
from __future__ import annotations

import os

SOLUTIONS_ENV = "VAE_TUTORIAL_SOLUTIONS"
SOLUTION_TITLE = "# @title Solution"

_SKIPPED = (
    "print('Solution not run. To run it, delete its first line (# @title Solution), or run "
    "%env " + SOLUTIONS_ENV + "=run once and re-run this cell.')\n"
)


def solutions_enabled() -> bool:
    """True when solution cells should run (``$VAE_TUTORIAL_SOLUTIONS`` is ``run``)."""
    return os.environ.get(SOLUTIONS_ENV, "").strip().lower() == "run"


def is_solution(source: str) -> bool:
    """True for the source of a solution cell: its first line starts with ``SOLUTION_TITLE``."""
    return source.lstrip("\n").startswith(SOLUTION_TITLE)


def skip_unrequested_solutions(lines: list[str]) -> list[str]:
    """IPython input transformer: replace a solution cell by a hint unless solutions are enabled."""
    if lines and is_solution("".join(lines)) and not solutions_enabled():
        return [_SKIPPED]
    return lines


def register(ipython=None) -> bool:
    """Install :func:`skip_unrequested_solutions` in ``ipython`` (the running shell by default).

    Returns False outside IPython. Called once when ``vae_tutorial`` is imported; idempotent.
    """
    if ipython is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return False
        ipython = get_ipython()
    if ipython is None:
        return False
    transformers = ipython.input_transformers_cleanup
    if skip_unrequested_solutions not in transformers:
        transformers.append(skip_unrequested_solutions)
    return True

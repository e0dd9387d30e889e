"""Notebook conveniences: exercise solutions that "Run all" skips but CI and the book execute,
and :func:`glue`, which hands a measured number to the book's prose.

A solution cell is a code cell whose first line is ``SOLUTION_TITLE`` (a Colab form title,
so Colab shows only that title; JupyterLab collapses it through the cell's
``jupyter.source_hidden`` metadata, and the book shows it inside the solution's drop-down).
When ``vae_tutorial`` is imported inside IPython it registers an input transformer: while
``$VAE_TUTORIAL_SOLUTIONS`` is not ``run``, a solution cell prints how to run it instead of
running, so "Run all" does not spoil (or spend time on) the exercises. nbval (through the
repository's ``conftest.py``) and the book build (through ``tools/run_solutions.py``) set the
variable, so every solution is executed and its asserts are checked there.

``glue(name, value, display=False)`` records a value for the ``{glue:text}`` roles of the
prose. It is ``myst_nb.glue`` when myst-nb is installed (the book build, CI, nbval), and
does nothing visible otherwise, so a reader's Jupyter or Colab needs only ``vae-tutorial``,
not Sphinx; the reader notebooks (``tools/reader_notebooks.py``) already carry the values
in their text.
"""
from __future__ import annotations

import os

from ..errors import ArgumentTypeError

SOLUTIONS_ENV = "VAE_TUTORIAL_SOLUTIONS"
SOLUTION_TITLE = "# @title Solution"

_SKIPPED = (
    "print('Solution not run. To run it, delete its first line (# @title Solution), or run "
    "%env " + SOLUTIONS_ENV + "=run once and re-run this cell.')\n"
)


def glue(name: str, value, display: bool = True) -> None:
    """Record ``value`` under ``name`` for the ``{glue:text}`` roles of the book's prose.

    With myst-nb importable this is ``myst_nb.glue(name, value, display)``: the cell's output
    carries the value, and the book substitutes it into the prose. Without myst-nb (a
    reader's Jupyter or Colab) nothing is recorded; ``display=True`` still shows the value,
    as myst-nb would, and ``display=False`` (what the chapters use) shows nothing.

    Args:
        name: the glue key, e.g. ``"ch04_ratio_min"`` (a non-empty ``str``).
        value: any object; the prose formats its ``text/plain`` representation.
        display: also show the value in the cell's output.
    """
    if not isinstance(name, str) or not name:
        raise ArgumentTypeError(f"name must be a non-empty str (the glue key), got {name!r}")
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        if display:
            try:  # IPython comes with ipywidgets, a dependency; plain Python prints
                from IPython.display import display as show
            except ImportError:
                show = print
            show(value)
        return
    myst_glue(name, value, display=display)


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

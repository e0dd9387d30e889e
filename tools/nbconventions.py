"""Keep the chapters' notebooks runnable anywhere: header, install cell, hidden solutions.

    python tools/nbconventions.py            # rewrite book/NN_*.ipynb in place
    python tools/nbconventions.py --check    # exit 1, naming each notebook that differs

For every chapter notebook (``book/NN_*.ipynb``) this makes sure that

* the first Markdown cell has, right under the title, a short header (a quote block) saying
  what the chapter needs, the data it loads, that a GPU is optional, and how long it took in
  the last ``benchmarks/book_runtime.py`` run (``benchmarks/results/book_runtime.json``);
* the second cell installs ``vae-tutorial`` when ``vae_tutorial`` is
  missing (``vae_tutorial.glue`` records glued values when myst-nb is there and does nothing
  visible otherwise, so a reader needs no Sphinx) (Colab, a fresh Jupyter), from ``$VAE_TUTORIAL_PIP_SPEC`` when set and from the
  repository otherwise; pip keeps a torch that is already installed (Colab's);
* every code cell between a ``{solution-start}`` and its ``{solution-end}`` starts with
  ``# @title Solution`` and is collapsed in JupyterLab (``jupyter.source_hidden``) and Colab
  (``cellView: form``); ``vae_tutorial.display.notebook`` skips such cells unless asked to run them.

Notebooks are written with outputs untouched and in nbformat's standard layout, so running
this twice changes nothing. ``tests/test_notebooks.py`` runs ``--check``.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vae_tutorial.display.notebook import SOLUTION_TITLE  # noqa: E402

HEADER_START = "> **Run this chapter.**"
INSTALL_TAG = "install"


def repository_url() -> str:
    """The repository URL, read from its one place: ``_config.yml``'s ``repository.url``."""
    match = re.search(r"^repository:\s*\n\s+url:\s*(\S+)", (ROOT / "_config.yml").read_text(), re.MULTILINE)
    if not match:
        raise SystemExit("_config.yml has no repository.url")
    return match.group(1)


def install_source() -> str:
    return f'''\
# Colab or a fresh Jupyter: install vae-tutorial if it is missing.
# (pip keeps an installed torch and ipywidgets, e.g. Colab's.)
import importlib.util
import os
import subprocess
import sys

if importlib.util.find_spec("vae_tutorial") is None:
    spec = os.environ.get(
        "VAE_TUTORIAL_PIP_SPEC",
        "vae-tutorial @ git+{repository_url()}",
    )
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", spec])'''


DATA_NAMES = {
    "fashion-mnist": "Fashion-MNIST (offline from Debian's `dataset-fashion-mnist`, "
    "otherwise downloaded once, 30 MB)",
    "digits": "scikit-learn's 8×8 digits (installed with scikit-learn)",
}


def data_sentence(nb) -> str:
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    if "load_dataset(" not in code:
        return "none (the chapter makes its own synthetic data)"
    names = set(re.findall(r'DATASET\s*=\s*"([\w-]+)"', code))
    names |= set(re.findall(r'load_dataset\(\s*"([\w-]+)"', code))
    return "; ".join(DATA_NAMES.get(n, n) for n in sorted(names)) or "see the first code cell"


def runtime_sentence(stem: str) -> str:
    path = ROOT / "benchmarks" / "results" / "book_runtime.json"
    try:
        result = json.loads(path.read_text())
        seconds = result["chapters"][stem]
        machine = result["machine"]
    except (OSError, KeyError, ValueError):
        return "not measured yet (`benchmarks/book_runtime.py` measures it)"
    minutes = max(1, round(seconds / 60)) if seconds >= 90 else None
    took = f"about {minutes} min" if minutes else f"about {max(5, 5 * round(seconds / 5)):.0f} s"
    return f"{took} on a {machine['cores']}-core CPU ({machine['cpu']})"


def header(nb, stem: str) -> str:
    return (
        f"{HEADER_START} Needs Python ≥ 3.10 and `vae_tutorial` (the next cell installs it "
        "in Colab or a fresh Jupyter). "
        f"Data: {data_sentence(nb)}. "
        "GPU: optional (`vae_tutorial.get_device()` uses one if present). "
        f"Run time: {runtime_sentence(stem)}."
    )


def with_header(source: str, text: str) -> str:
    lines = source.split("\n")
    if not lines or not lines[0].startswith("# "):
        raise SystemExit(f"the first cell does not start with a '# ' title: {lines[:1]}")
    body = lines[1:]
    # drop an existing header (the quote block right under the title) before writing the new one
    while body and body[0] == "":
        body.pop(0)
    if body and body[0].startswith(HEADER_START):
        while body and body[0].startswith(">"):
            body.pop(0)
        while body and body[0] == "":
            body.pop(0)
    return "\n".join([lines[0], "", text, "", *body]).rstrip("\n")


def solution_cell(cell) -> None:
    if not cell.source.startswith(SOLUTION_TITLE):
        cell.source = f"{SOLUTION_TITLE}\n{cell.source}"
    cell.metadata.setdefault("jupyter", {})["source_hidden"] = True
    cell.metadata["cellView"] = "form"


# A solution's Markdown directive: ```{solution-start} label ... ```{solution-end} (or ::: fences)
SOLUTION_MARKER = re.compile(r"^\s*(?:`{3,}|:{3,})\{solution-(start|end)\}", re.MULTILINE)


def inside_solution_after(source: str, inside: bool) -> bool:
    """Whether a solution is open after a Markdown cell that was entered with ``inside``.

    The cell's last ``{solution-start}`` or ``{solution-end}`` decides: one cell often ends a
    solution, states the next exercise and starts its solution, and the code cells after it
    belong to that solution. (Testing for each marker's presence left every such solution out.)
    """
    markers = SOLUTION_MARKER.findall(source)
    return markers[-1] == "start" if markers else inside


def apply(nb, stem: str):
    cells = nb.cells
    if not cells or cells[0].cell_type != "markdown":
        raise SystemExit(f"{stem}: the first cell must be the Markdown title cell")
    cells[0].source = with_header(cells[0].source, header(nb, stem))
    install = install_source()
    if len(cells) > 1 and INSTALL_TAG in cells[1].metadata.get("tags", []):
        cells[1].source = install
    else:
        cell = nbformat.v4.new_code_cell(install)
        cells.insert(1, cell)
    cells[1].metadata["tags"] = [INSTALL_TAG, "remove-cell"]
    cells[1]["id"] = "install"  # a stable id: rerunning the tool changes nothing
    inside = False
    for cell in cells:
        if cell.cell_type == "markdown":
            inside = inside_solution_after(cell.source, inside)
        elif inside:
            solution_cell(cell)
    return nb


def chapters() -> list[Path]:
    return sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report notebooks that differ; change nothing")
    args = parser.parse_args(argv)
    differ = []
    for path in chapters():
        before = path.read_text()
        nb = nbformat.reads(before, as_version=4)
        after = nbformat.writes(apply(nb, path.stem)) + "\n"
        if after != before:
            differ.append(path.relative_to(ROOT))
            if not args.check:
                path.write_text(after)
    if args.check and differ:
        print("notebooks that do not follow tools/nbconventions.py (run it to fix):")
        for p in differ:
            print(f"  {p}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

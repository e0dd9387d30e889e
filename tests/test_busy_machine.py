"""Chapters 01 and 10 on a machine whose every core is busy, with progress bars on.

The book is built and tested on shared CI machines, laptops and GPUs. Nothing a chapter runs
may depend on how fast the machine is or on what else it is doing (chapter 10 once set its
experiment from a timing and aborted the build on a loaded machine), and a figure cell must
show exactly one image even when ``fit`` draws progress bars inside it (they are on unless
``CI`` or ``TQDM_DISABLE`` is set). This test starts one CPU-burning process per core, runs
each chapter with nbclient as Jupyter would, without ``CI`` and ``TQDM_DISABLE``, and checks
that every cell runs and every figure cell shows one image.

Slow (minutes), so it runs only with ``VAE_TUTORIAL_BUSY_TEST=1``:
``VAE_TUTORIAL_BUSY_TEST=1 python -m pytest tests/test_busy_machine.py -m busy``.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from test_notebooks import figure_cells_with_wrong_image_count

ROOT = Path(__file__).resolve().parents[1]
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

pytestmark = [
    pytest.mark.busy,
    pytest.mark.skipif(os.environ.get("VAE_TUTORIAL_BUSY_TEST") != "1",
                       reason="slow: set VAE_TUTORIAL_BUSY_TEST=1 to run chapters on a busy machine"),
]


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


@pytest.fixture(scope="module")
def busy_machine():
    """One process per core that burns CPU for as long as the module's tests run."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(_cores())]
    try:
        time.sleep(0.5)
        assert all(b.poll() is None for b in burners), "a CPU burner exited early"
        yield len(burners)
    finally:
        for b in burners:
            b.kill()
        for b in burners:
            b.wait(timeout=30)


def _execute(path: Path):
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    # raises CellExecutionError, naming the cell, if any cell fails
    NotebookClient(nb, timeout=1800, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb, time.perf_counter() - start


@pytest.mark.parametrize("chapter", ["01_autoencoders", "10_conv_vae"])
def test_chapter_runs_on_a_busy_machine_with_progress_bars(chapter, busy_machine, monkeypatch, capsys):
    # as a reader's Jupyter runs it: progress bars on (the kernel inherits this environment)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    nb, seconds = _execute(ROOT / "book" / f"{chapter}.ipynb")
    with capsys.disabled():  # the wall time is information for whoever runs this, not a check
        print(f"\n{chapter}: every cell ran in {seconds:.0f} s with {busy_machine} busy cores")
    bars = sum(1 for c in nb.cells if c.cell_type == "code"
               for out in c.get("outputs", []) if WIDGET_VIEW in out.get("data", {}))
    assert bars > 0, "no progress bar was drawn: this run did not test what it should"
    assert figure_cells_with_wrong_image_count(nb) == []

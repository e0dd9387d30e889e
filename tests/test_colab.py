"""Every chapter runs top to bottom where Colab readers run it.

A fresh virtual environment gets only what Colab preinstalls (torch, numpy, scipy, matplotlib,
scikit-learn, tqdm, ipywidgets, ipykernel) plus nbclient, at the versions requirements.txt
pins. Each chapter is copied to a folder outside the repository and executed there; its
install cell must bring in the rest (``vae-tutorial``, the checkout built into a wheel, through
``$VAE_TUTORIAL_PIP_SPEC``). As in Colab, solutions are not run.

The chapters run are the ones Colab opens: the reader notebooks the build writes
(``_build/html/notebooks/book/``, tools/reader_notebooks.py: the MyST resolved, the same code),
so the book must be built first (CI runs this phase after the build).

This builds an environment and executes the whole book once more (minutes), so it runs only
when ``VAE_TUTORIAL_COLAB_TEST=1`` (CI sets it, in its own phase).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))
READER = Path(os.environ.get("VAE_TUTORIAL_BOOK_HTML", ROOT / "_build" / "html")) / "notebooks" / "book"
CHAPTERS = [READER / p.name for p in SOURCES]  # what the Colab button opens
COLAB_PREINSTALLED = ["torch", "numpy", "scipy", "matplotlib", "scikit-learn", "tqdm", "ipywidgets", "ipykernel"]

pytestmark = [
    pytest.mark.colab,
    pytest.mark.skipif(
        os.environ.get("VAE_TUTORIAL_COLAB_TEST") != "1",
        reason="builds a fresh environment and runs every chapter (minutes): set VAE_TUTORIAL_COLAB_TEST=1",
    ),
]

RUNNER = r"""
import sys, time, nbformat
from nbclient import NotebookClient
path, workdir = sys.argv[1], sys.argv[2]
nb = nbformat.read(path, as_version=4)
start = time.perf_counter()
NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": workdir}}).execute()
print(f"{path}: {time.perf_counter() - start:.1f} s")
"""


def _pins() -> list[str]:
    pinned = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line.strip())
        if match:
            pinned[match.group(1).lower()] = match.group(0)
    return [pinned.get(name, name) for name in COLAB_PREINSTALLED] + ["nbclient"]


def _colab_env() -> dict:
    """This process's environment without what would point Python or Jupyter at the checkout."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("VAE_TUTORIAL_", "PYTHONPATH", "JUPYTER"))}


@pytest.fixture(scope="session")
def package_wheel(tmp_path_factory) -> Path:
    """The checkout built once into a wheel, which the install cells install.

    Built once for all pytest-xdist workers (under a file lock, in the folder they share):
    two pip builds from the same source folder at once would race on its build/ folder.
    """
    import fcntl

    shared = tmp_path_factory.getbasetemp().parent
    wheels = shared / "colab-wheel"
    with open(shared / "colab-wheel.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = sorted(wheels.glob("vae_tutorial-*.whl"))
        if not found:
            subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)],
                           check=True, cwd=shared)
            found = sorted(wheels.glob("vae_tutorial-*.whl"))
    return found[0]


@pytest.fixture(scope="module")
def colab_python(tmp_path_factory):
    venv = tmp_path_factory.mktemp("colab") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", *_pins()], check=True)
    probe = subprocess.run([str(python), "-c", "import importlib.util as u; print(u.find_spec('vae_tutorial'), u.find_spec('myst_nb'))"],
                           capture_output=True, text=True, check=True, env=_colab_env(), cwd=venv.parent)
    assert probe.stdout.split() == ["None", "None"], "the fresh environment must not have the package yet"
    return python


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_runs_in_a_colab_like_environment(colab_python, package_wheel, chapter, tmp_path):
    if not chapter.is_file():
        pytest.fail(f"no reader notebook {chapter}: build the book first (python tools/build_books.py en), "
                    "which writes the notebooks that Colab opens")
    workdir = tmp_path / "colab-content"  # outside the repository, like Colab's /content
    workdir.mkdir()
    copy = workdir / chapter.name
    copy.write_bytes(chapter.read_bytes())
    env = _colab_env()
    env["VAE_TUTORIAL_PIP_SPEC"] = f"vae-tutorial @ {package_wheel.as_uri()}"  # the checkout, built
    run = subprocess.run([str(colab_python), "-c", RUNNER, str(copy), str(workdir)],
                         capture_output=True, text=True, env=env, cwd=workdir)
    assert run.returncode == 0, f"{chapter.name} failed in a Colab-like environment:\n{run.stderr[-4000:]}"

"""A reader notebook in a real JupyterLab, driven by Chromium: what a learner sees after "Run All".

JupyterLab is started on 127.0.0.1 (a free port, a token, no browser) with a temporary root
folder holding a copy of a short chapter's reader notebook (``_build/html/notebooks``, written
by tools/reader_notebooks.py). Playwright opens it, runs Run → Run All Cells from the menu, and
waits until every visible cell has its execution number and every solution cell its output,
then checks what the reader sees:

* every figure cell shows its figure (an ``<img>`` that loaded);
* every solution cell is collapsed (JupyterLab shows its one-line placeholder, not its code)
  and Run All skipped it (it printed how to run it);
* no raw MyST role or directive is in the rendered Markdown (``{glue``, ``{doc}``, a
  ```` ```{ ```` or ``:::`` fence);
* no cell ended in an error.

The kernel is this Python's, with this checkout on its path (so the install cell finds
``vae_tutorial`` and does nothing; pip is also cut off from any index, so it could not reach
the network), with
``$VAE_TUTORIAL_SOLUTIONS`` unset as on a reader's machine. Requests from the page to
anything but the local server are blocked.

Needs JupyterLab (requirements.txt), the built book and Chromium at ``/usr/bin/chromium``;
skipped without them, unless ``$VAE_TUTORIAL_BROWSER_TEST=require`` (CI, after the build).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import nbformat
import pytest

from vae_tutorial.display.notebook import SOLUTION_TITLE

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
HTML = Path(os.environ.get("VAE_TUTORIAL_BOOK_HTML", ROOT / "_build" / "html"))
READER = HTML / "notebooks" / "book"
CHROMIUM = Path(os.environ.get("VAE_TUTORIAL_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
REQUIRED = os.environ.get("VAE_TUTORIAL_BROWSER_TEST", "") == "require"
# The shortest chapter by benchmarks/results/book_runtime.json (12 s) that has a figure,
# theorems, labelled equations, citations and three solutions.
CHAPTER = "04_reparameterization"
START_S = 60  # JupyterLab's start on a busy 2-core machine
RUN_MS = 150_000  # Run All: about 15 s here, more on a loaded machine
RAW_MYST = re.compile(r"\{glue|\{doc\}|\{numref\}|\{eq\}|\{cite|\{prf:|\{[a-z:-]+\}`|```\{|:::")


def _missing(reason: str):
    if REQUIRED:
        pytest.fail(f"{reason} ($VAE_TUTORIAL_BROWSER_TEST=require)")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_settings(folder: Path) -> None:
    """JupyterLab's user settings: every cell in the page (no virtual scrolling: the test
    reads all of them) and no news or update checks (no network)."""
    settings = {
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
            "fetchNews": "false", "checkForUpdates": False},
    }
    for name, values in settings.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values), encoding="utf-8")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """``(base_url, token, root)`` of a JupyterLab serving a copy of the chapter's reader notebook."""
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        _missing("JupyterLab is not installed: pip install -r requirements.txt")
    source = READER / f"{CHAPTER}.ipynb"
    if not source.is_file():
        _missing(f"no reader notebook {source}: build the book first")
    try:
        import vae_tutorial  # noqa: F401  (the kernel is this Python)
    except ImportError:
        _missing("vae_tutorial is not installed in this Python: pip install -e .")
    tmp = tmp_path_factory.mktemp("jupyterlab")
    root = tmp / "root"
    root.mkdir()
    shutil.copy(source, root / source.name)
    _write_settings(tmp / "settings")
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ)
    env.pop("VAE_TUTORIAL_SOLUTIONS", None)  # conftest.py runs solutions; a reader's Run All skips them
    env.update(
        JUPYTERLAB_SETTINGS_DIR=str(tmp / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"),
        JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
        JUPYTER_CONFIG_DIR=str(tmp / "config"),  # no user configuration (a password, extensions)
        PIP_NO_INDEX="1",  # the install cell, were it to run, could not reach the network
        OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"),
        TQDM_DISABLE="1",
        MPLBACKEND="module://matplotlib_inline.backend_inline",
        # the kernel imports this checkout's vae_tutorial, installed or not
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p),
    )
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               "--port-retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
               "--ServerApp.terminals_enabled=False", "--LabApp.news_url=None",
               "--LabApp.extension_manager=readonly"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # a CI container runs as root
        command.append("--allow-root")
    server = subprocess.Popen(command, env=env, cwd=root, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    log: list[str] = []
    ready, started = threading.Event(), []

    def read_log():  # until the server says where it runs (and on, so that its pipe never fills)
        for line in server.stderr:
            log.append(line)
            if f"127.0.0.1:{port}/lab" in line:
                started.append(line)
                ready.set()
        ready.set()  # the server exited

    reader = threading.Thread(target=read_log, daemon=True)
    reader.start()
    try:
        if not ready.wait(START_S) or not started:
            pytest.fail("JupyterLab did not start:\n" + "".join(log[-30:]))
        yield f"http://127.0.0.1:{port}", token, root
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        reader.join(timeout=5)


@pytest.fixture(scope="module")
def page(lab):
    if not CHROMIUM.is_file():
        _missing(f"no Chromium at {CHROMIUM}: install it (Debian: apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed: pip install -r requirements.txt")
    base, token, _ = lab
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
        blocked: list[str] = []

        def route(r):
            if r.request.url.startswith(base):
                r.continue_()
            else:
                blocked.append(r.request.url)
                r.abort()

        context.route("**/*", route)
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.blocked = blocked
        page.goto(f"{base}/lab/tree/{CHAPTER}.ipynb?token={token}")
        yield page
        context.close()
        browser.close()


def _kernel_idle(base: str, token: str) -> bool:
    request = urllib.request.Request(f"{base}/api/kernels", headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        kernels = json.load(response)
    return bool(kernels) and all(k["execution_state"] == "idle" for k in kernels)


# Done: no cell queued or running, every visible prompt numbered (an error stops Run All and
# leaves the rest unnumbered, so it is done too), and every cell with hidden input (the
# solutions, whose prompt is hidden with their code) has printed its output.
_RUN_ALL_DONE = """(expected) => {
  const cells = [...document.querySelectorAll('.jp-Notebook .jp-Cell')];
  if (cells.length !== expected) return false;
  const prompts = cells.filter(c => c.classList.contains('jp-CodeCell'))
    .map(c => c.querySelector('.jp-InputArea-prompt')).filter(p => p);
  const texts = prompts.map(p => p.textContent.trim());
  if (texts.some(t => t.includes('*'))) return false;
  if (document.querySelector('.jp-Notebook [data-mime-type="application/vnd.jupyter.stderr"]')
      && texts.some(t => /\\d/.test(t))) return true;
  const hidden = cells.filter(c => c.querySelector('.jp-InputPlaceholder'));
  return texts.every(t => /\\[\\d+\\]/.test(t))
    && hidden.every(c => c.querySelector('.jp-OutputArea-output'));
}"""


def test_run_all_in_jupyterlab_shows_what_the_book_shows(lab, page):
    base, token, root = lab
    nb = nbformat.read(root / f"{CHAPTER}.ipynb", as_version=4)
    figures = [k for k, c in enumerate(nb.cells)
               if c.cell_type == "code" and c.metadata.get("mystnb", {}).get("figure")]
    # solutions by what they are (their first line), not by the metadata that should hide them
    solutions = [k for k, c in enumerate(nb.cells)
                 if c.cell_type == "code" and c.source.startswith(SOLUTION_TITLE)]
    assert figures and solutions, f"{CHAPTER} should have figures and solutions to check"

    page.wait_for_function("(n) => document.querySelectorAll('.jp-Notebook .jp-Cell').length === n",
                           arg=len(nb.cells))
    page.locator(".jp-Notebook").first.click()  # focus the notebook, as a reader would
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    page.wait_for_function(_RUN_ALL_DONE, arg=len(nb.cells), timeout=RUN_MS, polling=500)
    assert _kernel_idle(base, token)

    cells = page.locator(".jp-Notebook .jp-Cell")
    errors = page.locator('.jp-Notebook [data-mime-type="application/vnd.jupyter.stderr"]')
    error_texts = [t for t in errors.all_inner_texts() if re.search(r"Error|Traceback", t)]
    assert not error_texts, f"Run All ended in an error:\n{error_texts[0][-2000:]}"

    # Figures show: an <img> in the figure cell's output, loaded (naturalWidth > 0)
    for k in figures:
        widths = cells.nth(k).locator(".jp-OutputArea-output img").evaluate_all(
            "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
        assert widths and all(w > 0 for w in widths), f"figure cell {k} shows no image: {widths}"

    # Solutions: collapsed (placeholder, no editor) and skipped by Run All
    for k in solutions:
        cell = cells.nth(k)
        assert cell.locator(".jp-InputPlaceholder").count() == 1, f"solution cell {k} is not collapsed"
        assert cell.locator(".jp-InputArea-editor").count() == 0, f"solution cell {k} shows its code"
        body = nb.cells[k].source.splitlines()[1]
        assert body.strip() not in cell.inner_text(), f"solution cell {k}: its code is visible"
        assert "Solution not run" in cell.locator(".jp-OutputArea").inner_text(), (
            f"solution cell {k} was run by Run All")
    # ... and nothing outside the solution cells is collapsed
    assert page.locator(".jp-Notebook .jp-InputPlaceholder").count() == len(solutions)

    # No raw MyST in what the reader reads
    markdown = page.locator(".jp-Notebook .jp-MarkdownOutput").all_inner_texts()
    assert len(markdown) == sum(c.cell_type == "markdown" for c in nb.cells)
    raw = [m.group(0) + " in: " + text[max(0, m.start() - 60): m.end() + 60]
           for text in markdown for m in RAW_MYST.finditer(text)]
    assert not raw, "raw MyST in the rendered Markdown:\n" + "\n".join(raw[:10])
    # and its maths is typeset (JupyterLab's MathJax), not left as TeX
    assert page.locator(".jp-Notebook .jp-MarkdownOutput mjx-container").count() > 0

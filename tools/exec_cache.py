"""One execution of the chapters serves both editions: a shared, checked execution cache.

The book is built with ``execute_notebooks: cache`` (``_config.yml``): myst-nb looks each
notebook up in a jupyter-cache, keyed on the notebook's code cells (and kernel), executes it
only when it is not there, and stores what it executed. Two things make that cache safe to
share between the English and the Chinese build, and between a build and the next one:

* **One place.** Both editions use ``_build/.jupyter_cache`` of the book's root (by default
  myst-nb would give each output folder its own), so the Chinese build, which has the same
  code cells, takes the English build's executed notebooks instead of running them again:
  the two editions show the same numbers and figures by construction.
* **No stale results.** A notebook's outputs also depend on what it imports. The cache
  carries a stamp of the environment: a hash of the ``vae_tutorial`` package that the
  kernels import (every file of it), and the versions of Python, PyTorch and the other
  libraries a chapter's numbers depend on, plus ``$VAE_TUTORIAL_DEVICE``, ``$CI`` and
  ``$TQDM_DISABLE`` (which decide whether progress bars are drawn). When the stamp
  differs, the whole cache is emptied before the build reads it. So a change to the
  package re-executes every chapter, and a change to a chapter re-executes that chapter.
  A second stamp hashes ``benchmarks/results/*.json``: new results drop only the pages that
  read them (the Results page, chapter 5), which run again.

The executed notebooks are also saved where myst-nb saves them, ``_build/jupyter_execute``
(myst-nb's cache mode saves them without outputs).

``prefill(jobs=2)`` executes the chapters that are not in the cache several at a time (each
kernel a separate process; CI uses one per core, with one BLAS thread each), exactly as
myst-nb would (same working folder, timeout and environment), and stores them; the build
that follows finds every chapter cached. ``tools/build_books.py`` calls it before
``jupyter-book build``; without it (``jupyter-book build .``) the build executes the chapters
itself, one after another, into the same cache.

Loaded by Sphinx from ``_config.yml`` (``sphinx.local_extensions``).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from importlib import metadata, util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE_DIR = Path("_build") / ".jupyter_cache"  # relative to the book's root
STAMP = "vae_tutorial-environment.json"
RESULTS_STAMP = "vae_tutorial-results.json"  # the benchmark results that the cached pages read
# The libraries whose version can change a chapter's printed numbers or figures.
LIBRARIES = ("torch", "numpy", "scipy", "scikit-learn", "matplotlib", "myst-nb", "ipykernel")


def cache_dir(root: Path = ROOT) -> Path:
    return (Path(root) / CACHE_DIR).resolve()


def _package_dir() -> Path:
    """The folder of the ``vae_tutorial`` that a kernel started from here imports."""
    spec = util.find_spec("vae_tutorial")  # does not import it (nor torch)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("vae_tutorial is not installed: run `pip install -e .` in the repository")
    return Path(list(spec.submodule_search_locations)[0])


RESULTS = Path("benchmarks") / "results"  # what the Results page reads, relative to the root


def _results_sha256(root: Path = ROOT) -> str:
    """A hash of the benchmark results the Results page shows (new results: new outputs)."""
    digest = hashlib.sha256()
    for path in sorted((Path(root) / RESULTS).glob("*.json")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def environment(root: Path = ROOT) -> dict:
    """What, besides a notebook's code, decides its outputs (see the module docstring)."""
    digest = hashlib.sha256()
    package = _package_dir()
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(path.relative_to(package).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "vae_tutorial_sha256": digest.hexdigest(),
        "python": sys.version.split()[0],
        "versions": versions,
        # the device, and whether progress bars are drawn (they are outputs too)
        **{name: os.environ.get(name, "") for name in ("VAE_TUTORIAL_DEVICE", "CI", "TQDM_DISABLE")},
    }


def reads_results(nb) -> bool:
    """Whether a notebook reads ``benchmarks/results`` (its code names the folder ``"benchmarks"``):
    the Results page, and chapter 5's data-parallel numbers."""
    return any(cell.cell_type == "code" and '"benchmarks"' in cell.source for cell in nb.cells)


def _write_stamp(stamp: Path, value: dict) -> None:
    tmp = stamp.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=1, sort_keys=True), encoding="utf-8")
    tmp.replace(stamp)


def _read_stamp(stamp: Path) -> dict | None:
    try:
        return json.loads(stamp.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def ensure_fresh(path: Path) -> bool:
    """Empty the cache at ``path`` unless it was filled in this environment; True if kept.

    New benchmark results (``benchmarks/results/*.json``) drop only the notebooks that read
    them (:func:`reads_results`): running a benchmark executes the Results page again, not
    the whole book.
    """
    root = Path(path).resolve().parents[1]  # the book root of _build/.jupyter_cache
    stamp, results_stamp = path / STAMP, path / RESULTS_STAMP
    now = environment(root)
    results_now = {"benchmark_results_sha256": _results_sha256(root)}
    kept = _read_stamp(stamp) == now
    new_results = _read_stamp(results_stamp) != results_now
    if not kept:
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True, exist_ok=True)
        _write_stamp(stamp, now)
    elif new_results:
        from jupyter_cache import get_cache

        cache = get_cache(str(path))
        for record in cache.list_cache_records():
            if reads_results(cache.get_cache_bundle(record.pk).nb):
                cache.remove_cache(record.pk)
    if new_results or not kept:
        _write_stamp(results_stamp, results_now)
    return kept


def _execute(path: str, timeout: int) -> tuple[str, object, float, str | None]:
    """Run one notebook as myst-nb's cache mode does (in its own folder); in a worker process."""
    import nbformat
    from jupyter_cache.executors.utils import single_nb_execution

    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    try:
        result = single_nb_execution(nb, cwd=str(Path(path).parent), timeout=timeout,
                                     allow_errors=False, meta_override=True)
    except Exception as e:  # the kernel did not start or died: the build runs it again and reports
        return path, None, time.perf_counter() - start, f"{type(e).__name__}: {e}"
    return path, result.nb, result.time, result.exc_string


def prefill(notebooks: list[Path], *, jobs: int = 2, timeout: int = 600, root: Path = ROOT,
            order: dict[str, float] | None = None) -> dict[str, float]:
    """Execute the ``notebooks`` missing from the cache, ``jobs`` at a time; store them.

    ``order`` maps a notebook's stem to its expected run time: the longest start first, so
    that the last to finish is a short one. Returns the run time of each executed notebook.
    A notebook that fails is not stored: the build executes it again and reports the error
    where it always does. Solution cells run, as in the build (``tools/run_solutions.py``).
    """
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn
    import nbformat

    path = cache_dir(root)
    ensure_fresh(path)
    cache = get_cache(str(path))
    todo = []
    for nb_path in notebooks:
        try:
            cache.match_cache_notebook(nbformat.read(nb_path, as_version=4))
        except KeyError:
            todo.append(Path(nb_path).resolve())
    order = order or {}
    todo.sort(key=lambda p: -order.get(p.stem, 0.0))
    os.environ["VAE_TUTORIAL_SOLUTIONS"] = "run"
    times: dict[str, float] = {}
    if not todo:
        return times
    start = time.perf_counter()
    print(f"executing {len(todo)} notebooks, {jobs} at a time, into {path}", flush=True)
    with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(_execute, str(p), timeout) for p in todo]
        for future in as_completed(futures):
            nb_file, executed, seconds, error = future.result()
            name = Path(nb_file).stem
            if error:
                print(f"  {name}: FAILED after {seconds:.1f} s (the build will report it)", flush=True)
                continue
            cache.cache_notebook_bundle(CacheBundleIn(executed, nb_file, data={"execution_seconds": seconds}),
                                        check_validity=False, overwrite=True)
            times[name] = round(seconds, 1)
            print(f"  {name}: {seconds:.1f} s", flush=True)
    print(f"executed in {time.perf_counter() - start:.0f} s of wall time "
          f"({sum(times.values()):.0f} s of notebook time)", flush=True)
    return times


def _use_shared_cache(app) -> None:
    config = getattr(app.env, "mystnb_config", None)
    if config is None or config.execution_mode != "cache":
        return
    path = cache_dir(Path(app.srcdir))
    ensure_fresh(path)
    app.env.mystnb_config = config.copy(execution_cache_path=str(path))


def _write_executed_notebook(app, doctree) -> None:
    """Save the *executed* notebook in myst-nb's output folder (``_build/jupyter_execute``).

    In cache mode myst-nb 1.4 merges the cached outputs into a copy and saves the notebook it
    read, without outputs; the gettext extraction (figure captions hang on image outputs), the
    reader notebooks and the editions' comparison read the saved one, so it must be executed.
    """
    config = getattr(app.env, "mystnb_config", None)
    if config is None or config.execution_mode != "cache":
        return
    source = Path(app.env.doc2path(app.env.docname))
    if source.suffix != ".ipynb":
        return
    import nbformat
    from jupyter_cache import get_cache

    try:
        _, executed = get_cache(config.execution_cache_path).merge_match_into_notebook(
            nbformat.read(source, as_version=4))
    except KeyError:  # not cached (execution failed): myst-nb has reported it
        return
    target = Path(config.output_folder).joinpath(*f"{app.env.docname}.ipynb".split("/"))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(nbformat.writes(executed), encoding="utf-8")


def _stamp_digest(app) -> str | None:
    try:
        return hashlib.sha256((cache_dir(Path(app.srcdir)) / STAMP).read_bytes()).hexdigest()
    except OSError:
        return None


def _notebooks_executed_again(app, env, added, changed, removed) -> list[str]:
    """Every notebook, when the cache was emptied since Sphinx last read them.

    Sphinx re-reads a page when its source changes; a notebook whose outputs changed because
    the package (or a library, or the environment) did is unchanged as a source. Without
    this, a rebuild after editing ``vae_tutorial`` executed every chapter again and then
    kept the pages of the old executions.
    """
    now, before = _stamp_digest(app), getattr(env, "vae_exec_stamp", None)
    env.vae_exec_stamp = now
    if before is None or before == now:
        return []
    return [doc for doc in env.found_docs
            if doc not in added | changed and str(env.doc2path(doc)).endswith(".ipynb")]


def setup(app):
    # after myst-nb's own builder-inited handler (priority 500), which sets the default path
    app.connect("builder-inited", _use_shared_cache, priority=600)
    app.connect("env-get-outdated", _notebooks_executed_again)
    app.connect("doctree-read", _write_executed_notebook)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

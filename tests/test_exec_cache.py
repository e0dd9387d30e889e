"""The shared execution cache (tools/exec_cache.py): one execution serves every build, and a
change to the package or to a notebook's code executes it again.

A tiny book whose one notebook counts its own executions in a file next to it.
"""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import exec_cache  # noqa: E402

COUNT = """\
from pathlib import Path
runs = Path("runs.txt")
runs.write_text(runs.read_text() + "x" if runs.exists() else "x")
print("value", 42)"""


def _book(root: Path, code: str = COUNT) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = [nbformat.v4.new_markdown_cell("# Page"), nbformat.v4.new_code_cell(code)]
    nbformat.write(nb, root / "page.ipynb")
    (root / "index.md").write_text("# Home\n\n```{toctree}\npage\n```\n", encoding="utf-8")
    return root / "page.ipynb"


def _build(root: Path, out: str, fresh: bool = True) -> str:
    """A Sphinx HTML build in execution-cache mode with the extension; the page's HTML."""
    from sphinx.application import Sphinx
    from sphinx.util.docutils import docutils_namespace

    overrides = {"extensions": ["myst_nb", "exec_cache"], "nb_execution_mode": "cache",
                 "nb_execution_raise_on_error": True, "exclude_patterns": ["_build"]}
    with docutils_namespace():
        app = Sphinx(str(root), None, str(root / out / "html"), str(root / out / ".doctrees"), "html",
                     confoverrides=overrides, status=None, warning=io.StringIO(), freshenv=fresh)
        app.build()
    return (root / out / "html" / "page.html").read_text(encoding="utf-8")


def _runs(root: Path) -> int:
    return len((root / "runs.txt").read_text()) if (root / "runs.txt").exists() else 0


def test_one_execution_serves_both_builds_until_the_package_changes(tmp_path, monkeypatch):
    pytest.importorskip("myst_nb")
    nb = _book(tmp_path)
    assert exec_cache.prefill([nb], jobs=2, root=tmp_path) == {"page": pytest.approx(0, abs=60)}
    assert _runs(tmp_path) == 1
    assert exec_cache.prefill([nb], jobs=2, root=tmp_path) == {}  # nothing left to execute

    english = _build(tmp_path, "_build/en")
    chinese = _build(tmp_path, "_build/zh/_build")  # another output folder: the same cache
    assert _runs(tmp_path) == 1, "a build executed a notebook that was in the cache"
    assert "value 42" in english and "value 42" in chinese
    import nbformat  # the saved notebook is the executed one (myst-nb's cache mode saves the source)

    saved = nbformat.read(tmp_path / "_build" / "en" / "jupyter_execute" / "page.ipynb", as_version=4)
    assert saved.cells[1].outputs[0]["text"].strip() == "value 42"
    stamp = json.loads((tmp_path / "_build" / ".jupyter_cache" / exec_cache.STAMP).read_text())
    assert stamp == exec_cache.environment(tmp_path)

    # another vae_tutorial (or library version): the cache is emptied and the page runs again
    changed = dict(exec_cache.environment(tmp_path), vae_tutorial_sha256="0" * 64)
    monkeypatch.setattr(exec_cache, "environment", lambda root=None: changed)
    _build(tmp_path, "_build/en")
    assert _runs(tmp_path) == 2
    _build(tmp_path, "_build/en")
    assert _runs(tmp_path) == 2


def test_a_rebuild_after_the_package_changed_shows_the_new_outputs(tmp_path, monkeypatch):
    # The notebook's source does not change, so Sphinx would keep its page; but its outputs
    # did (here: a file it reads, as a chapter reads the package), and the cache was emptied.
    pytest.importorskip("myst_nb")
    nb = _book(tmp_path, 'from pathlib import Path\nprint("value", Path("value.txt").read_text())')
    (tmp_path / "value.txt").write_text("first")
    exec_cache.prefill([nb], jobs=1, root=tmp_path)
    assert "value first" in _build(tmp_path, "_build/en", fresh=False)

    (tmp_path / "value.txt").write_text("second")
    changed = dict(exec_cache.environment(tmp_path), vae_tutorial_sha256="0" * 64)
    monkeypatch.setattr(exec_cache, "environment", lambda root=None: changed)
    assert list(exec_cache.prefill([nb], jobs=1, root=tmp_path)) == ["page"]
    page = _build(tmp_path, "_build/en", fresh=False)
    assert "value second" in page and "value first" not in page


def test_a_changed_cell_executes_that_notebook_again(tmp_path):
    pytest.importorskip("myst_nb")
    nb = _book(tmp_path)
    exec_cache.prefill([nb], jobs=1, root=tmp_path)
    _book(tmp_path, COUNT.replace("42", "43"))
    assert list(exec_cache.prefill([nb], jobs=1, root=tmp_path)) == ["page"]
    assert _runs(tmp_path) == 2
    assert "value 43" in _build(tmp_path, "_build/en")
    assert _runs(tmp_path) == 2


def test_a_failing_notebook_is_not_cached(tmp_path, capsys):
    nb = _book(tmp_path, "raise RuntimeError('boom')")
    assert exec_cache.prefill([nb], jobs=1, root=tmp_path) == {}
    assert "page: FAILED" in capsys.readouterr().out
    from jupyter_cache import get_cache

    assert get_cache(str(exec_cache.cache_dir(tmp_path))).list_cache_records() == []


def test_new_benchmark_results_execute_again_only_the_pages_that_read_them(tmp_path):
    """The Results page reads benchmarks/results: an incremental build after a benchmark run
    showed the old numbers until a stamp covered those files; the other pages stay cached."""
    pytest.importorskip("myst_nb")
    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    (results / "quality.json").write_text('{"rows": [1]}')
    page = _book(tmp_path)
    reader = tmp_path / "reader.ipynb"  # counts its runs too, and reads the results
    import nbformat

    nb = nbformat.read(page, as_version=4)
    nb.cells[1].source = ('from pathlib import Path\nruns = Path("reader-runs.txt")\n'
                          'runs.write_text(runs.read_text() + "x" if runs.exists() else "x")\n'
                          'print(Path("benchmarks", "results", "quality.json").read_text())')
    nbformat.write(nb, reader)
    assert exec_cache.reads_results(nb) and not exec_cache.reads_results(nbformat.read(page, as_version=4))
    assert sorted(exec_cache.prefill([page, reader], jobs=1, root=tmp_path)) == ["page", "reader"]
    assert exec_cache.prefill([page, reader], jobs=1, root=tmp_path) == {}
    (results / "quality.json").write_text('{"rows": [2]}')
    assert list(exec_cache.prefill([page, reader], jobs=1, root=tmp_path)) == ["reader"]
    assert _runs(tmp_path) == 1 and (tmp_path / "reader-runs.txt").read_text() == "xx"
    assert exec_cache.prefill([page, reader], jobs=1, root=tmp_path) == {}


def test_the_environment_stamp_covers_the_package_and_libraries():
    env = exec_cache.environment()
    assert len(env["vae_tutorial_sha256"]) == 64
    assert env["versions"]["torch"] and env["versions"]["numpy"]


# ------------------------------------------------------------ the two editions of the real book

EXECUTED = {"en": ROOT / "_build" / "jupyter_execute", "zh": ROOT / "_build" / "zh" / "_build" / "jupyter_execute"}


def _glued(path: Path) -> dict[str, dict]:
    """Every glued value of an executed notebook: key -> its data (all formats), from the
    ``.glue.json`` myst-nb writes beside it, and from its outputs."""
    import nbformat

    glue_json = path.with_name(path.stem + ".glue.json")
    if glue_json.exists():
        return json.loads(glue_json.read_text(encoding="utf-8"))
    nb = nbformat.read(path, as_version=4)
    values = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            if name is not None:
                values[name] = dict(output.get("data", {}))
    return values


def test_both_editions_show_the_same_glued_values():
    import os

    english = sorted(EXECUTED["en"].rglob("*.ipynb"))
    if not english or not EXECUTED["zh"].is_dir():
        if os.environ.get("VAE_TUTORIAL_I18N_TEST") == "require":
            pytest.fail("both editions must be built first: python tools/build_books.py")
        pytest.skip("needs both editions built (python tools/build_books.py)")
    compared = 0
    for path in english:
        twin = EXECUTED["zh"] / path.relative_to(EXECUTED["en"])
        assert twin.is_file(), f"the Chinese build has no {twin.relative_to(ROOT)}"
        mine, theirs = _glued(path), _glued(twin)
        assert mine == theirs, f"{path.stem}: glued values differ between the editions: " + ", ".join(
            sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k)))
        compared += len(mine)
    assert compared > 100, f"only {compared} glued values found in the executed chapters"

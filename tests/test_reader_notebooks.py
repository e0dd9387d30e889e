"""Reader notebooks (tools/reader_notebooks.py): the chapters' MyST as plain Markdown for Jupyter
and Colab, and the package's light notebook runtime (``vt.glue``, ipywidgets 7.7 and 8).

The converter is tested on synthetic Markdown for every construct the chapters use, against a
synthetic index of the web book. When the book has been built (``_build/html/notebooks``
exists; ``$VAE_TUTORIAL_BOOK_HTML`` points elsewhere), its reader notebooks are checked too: no
raw MyST, code cells equal to the sources', a caption under every figure; and the Chinese
edition's (``_build/html/zh/notebooks``): the same cells and code, the prose translated. Those tests are
marked ``browser`` (the tests that need the built book, run by .ci/run after the build); without
a build they are skipped, unless ``$VAE_TUTORIAL_BROWSER_TEST=require`` (as in CI).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
import types
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import reader_notebooks as rn

BASE = "https://example.org/book/"

# Raw MyST that Jupyter and Colab would show as source
RAW_MYST = [
    re.compile(r"\{[a-z][\w:-]*\}`"),  # a role
    re.compile(r"^\s*(?:>\s*)*(`{3,}|:{3,})\{", re.MULTILINE),  # a directive
    re.compile(r"^\s*\([^()\s]+\)=\s*$", re.MULTILINE),  # a target line
    re.compile(r"\$\$\s*\([\w:-]+\)"),  # a dollarmath label
    re.compile(r"^\s*(?:>\s*)*:(label|class|nonumber|name):", re.MULTILINE),  # a directive option
]


def raw_myst(markdown: str) -> list[str]:
    return [m.group(0) for pattern in RAW_MYST for m in pattern.finditer(markdown)]


def make_index() -> rn.BookIndex:
    ch4, ch2, ch7 = "book/04_reparameterization", "book/02_elbo", "book/07_beta"
    index = rn.BookIndex(base_url=BASE)
    index.titles = {ch4: "The reparameterisation trick", ch2: "Latent-variable models and the ELBO",
                    ch7: "β-VAE", "book/bibliography": "Bibliography"}
    index.numbers = {
        ch4: {"figure": {"fig-ch04-variance": (4, 1), "fig-ch04-other": (4, 2)},
              "displaymath": {"equation-ch04-grad": (4, 2), "equation-ch04-score": (4, 4)},
              "theorem": {"ch04-thm-score": (4, 1)},
              "exercise": {"ch04-ex1": (4, 1), "ch04-ex2": (4, 2)}},
        ch2: {"exercise": {"ch02-ex3": (2, 3)}},
        ch7: {"definition": {"def-active-units": (7, 3)}},
    }
    index.numfig_format = {"figure": "Fig. %s", "table": "Table %s", "exercise": "Exercise %s"}
    index.labels = {"fig-ch04-variance": rn.Target(ch4, "fig-ch04-variance", "Total variance"),
                    "fig-ch04-other": rn.Target(ch4, "fig-ch04-other", "Other"),
                    "sec-why": rn.Target(ch4, "sec-why", "Why the gradient is hard")}
    index.equations = {"ch04-grad": ch4, "ch04-score": ch4}
    index.proofs = {"ch04-thm-score": (ch4, "theorem", "theorem"),
                    "def-active-units": (ch7, "definition", "definition")}
    index.exercises = {"ch04-ex1": ch4, "ch04-ex2": ch4, "ch02-ex3": ch2}
    index.citations = {
        "kingma2014auto": (rn.Target("book/bibliography", "id2"), "Kingma and Welling", "2014"),
        "rezende2014stochastic": (rn.Target("book/bibliography", "id3"), "Rezende et al.", "2014"),
    }
    return index


GLUE = {"ratio": {"data": {"text/plain": "29.87654"}},
        "count": {"data": {"text/plain": "12"}},
        "name": {"data": {"text/plain": "'pathwise'"}},
        "table": {"data": {"text/plain": "<table>", "text/markdown": "| a |\n|---|\n| 1 |"}}}


def convert(markdown: str, glue=None) -> tuple[str, list[str]]:
    warnings: list[str] = []
    converter = rn.Converter(make_index(), "book/04_reparameterization", GLUE if glue is None else glue,
                             warnings.append)
    return converter.markdown(markdown), warnings


def url(page: str, anchor: str = "") -> str:
    return f"{BASE}book/{page}.html" + (f"#{anchor}" if anchor else "")


# --- inline roles -------------------------------------------------------------------------------

def test_glued_values_are_formatted_as_myst_nb_formats_them():
    out, warnings = convert("ratio {glue:text}`ratio:.1f`, count {glue:text}`count:d`, "
                            "{glue:text}`name`, {glue:}`ratio` and {glue}`count`.")
    assert out == "ratio 29.9, count 12, pathwise, 29.87654 and 12."
    assert not warnings
    assert convert("{glue:text}`ratio:.0f`–{glue:text}`ratio:.2e`")[0] == "30–2.99e+01"
    assert convert("{glue:md}`table`")[0] == "| a |\n|---|\n| 1 |"


def test_a_missing_glued_value_is_an_em_dash_and_a_warning_never_raw_myst():
    out, warnings = convert("the variance is {glue:text}`absent:.0f` times smaller")
    assert out == "the variance is — times smaller"
    assert len(warnings) == 1 and "absent" in warnings[0]
    out, warnings = convert("{glue:text}`name:.2f`")  # 'pathwise' is not a float
    assert out == "—" and "cannot be formatted" in warnings[0]


def test_doc_links_to_the_web_page_with_its_title():
    out, _ = convert("The ELBO of {doc}`02_elbo`, see {doc}`this chapter <../book/04_reparameterization>`.")
    assert out == (f"The ELBO of [Latent-variable models and the ELBO]({url('02_elbo')}), "
                   f"see [this chapter]({url('04_reparameterization')}).")
    out, warnings = convert("{doc}`99_missing`")
    assert out == "99_missing" and "unknown document" in warnings[0]


def test_numref_eq_ref_and_prf_ref_use_the_web_books_numbers():
    out, warnings = convert("In {numref}`fig-ch04-variance`, by {eq}`ch04-grad`; see "
                            "{ref}`sec-why`, {ref}`ch02-ex3` and {prf:ref}`def-active-units`.")
    assert out == (f"In [Fig. 4.1]({url('04_reparameterization', 'fig-ch04-variance')}), "
                   f"by [(4.2)]({url('04_reparameterization', 'equation-ch04-grad')}); see "
                   f"[Why the gradient is hard]({url('04_reparameterization', 'sec-why')}), "
                   f"[Exercise 2.3]({url('02_elbo', 'ch02-ex3')}) and "
                   f"[Definition 7.3]({url('07_beta', 'def-active-units')}).")
    assert not warnings
    out, _ = convert("{numref}`Figure %s shows <fig-ch04-other>` and {numref}`Plot {number} <fig-ch04-other>`")
    link = url("04_reparameterization", "fig-ch04-other")
    assert out == f"[Figure 4.2 shows]({link}) and [Plot 4.2]({link})"


def test_citations_are_author_year_links_to_the_bibliography():
    bib = f"{BASE}book/bibliography.html"
    out, _ = convert("the trick {cite}`kingma2014auto,rezende2014stochastic`; {cite:p}`kingma2014auto`; "
                     "as {cite:t}`kingma2014auto` show")
    assert out == (f"the trick [[Kingma and Welling, 2014]({bib}#id2), [Rezende et al., 2014]({bib}#id3)]; "
                   f"[[Kingma and Welling, 2014]({bib}#id2)]; as Kingma and Welling [2014]({bib}#id2) show")


def test_roles_inside_code_spans_and_code_blocks_are_left_alone():
    md = "Write `{glue:text}`x`` in Markdown:\n\n```python\nprint('{doc}`02_elbo`')\n```\n\nand {math}`x^2`."
    out, warnings = convert(md)
    assert out == "Write `{glue:text}`x`` in Markdown:\n\n```python\nprint('{doc}`02_elbo`')\n```\n\nand $x^2$."
    assert not warnings


def test_an_unknown_role_is_shown_as_code_with_a_warning():
    out, warnings = convert("press {guilabel}`Run all`")
    assert out == "press `Run all`" and "unknown role" in warnings[0]


# --- blocks -------------------------------------------------------------------------------------

def test_labelled_equations_get_the_web_books_number_as_a_tag():
    out, _ = convert("so\n\n$$\n\\nabla f = g\n$$ (ch04-grad)\n\nand\n\n$$\nx\n$$\n\n(sec-why)=\n## Why")
    assert out == "so\n\n$$\n\\nabla f = g\n\\tag{4.2}\n$$\n\nand\n\n$$\nx\n$$\n\n## Why"
    out, _ = convert("```{math}\n:label: ch04-score\n\na = b\n```")
    assert out == "$$\na = b\n\\tag{4.4}\n$$"


def test_a_theorem_with_nested_maths_and_its_proof_become_blockquotes():
    md = ("````{prf:theorem} Score-function gradient\n:label: ch04-thm-score\n\nIf $q$ is smooth, then\n\n"
          "```{math}\n:label: ch04-score\n\n\\nabla E[f]\n  = E[f \\nabla \\log q].\n```\n````\n\n"
          "```{prf:proof}\nUse {eq}`ch04-grad`.\n```")
    out, warnings = convert(md)
    assert out == (
        f"> [**Theorem 4.1**]({url('04_reparameterization', 'ch04-thm-score')}) (Score-function gradient)\n>\n"
        "> If $q$ is smooth, then\n>\n"
        "> $$\\nabla E[f] = E[f \\nabla \\log q]. \\tag{4.4}$$\n\n"  # one line: no "> " inside the maths
        f"> **Proof.**\n>\n> Use [(4.2)]({url('04_reparameterization', 'equation-ch04-grad')}).\n>\n> ∎")
    assert not warnings and not raw_myst(out)


def test_maths_in_a_blockquote_is_on_one_line():
    out, _ = convert("```{note}\nSince $a =\n  b$ and $c$, costs \\$5, and\n\n$$\nx\n  = y\n$$\n```")
    assert out == "> **Note**\n>\n> Since $a = b$ and $c$, costs \\$5, and\n>\n> $$x = y$$"


def test_exercises_and_gated_solutions():
    md = ("```{exercise}\n:label: ch04-ex1\n\nFix {doc}`02_elbo`.\n```\n\n"
          "```{solution-start} ch04-ex1\n:class: dropdown\n```\n\nBecause.")
    out, _ = convert(md)
    assert out == (f"> **Exercise 4.1**\n>\n> Fix [Latent-variable models and the ELBO]({url('02_elbo')}).\n\n"
                   "**Solution to Exercise 4.1**\n\nBecause.")
    # the end of one solution and the start of the next in one cell
    out, _ = convert("Done.\n\n```{solution-end}\n```\n\n```{exercise}\n:label: ch04-ex2\n\nMore.\n```\n\n"
                     "```{solution-start} ch04-ex2\n:class: dropdown\n```")
    assert out == "Done.\n\n> **Exercise 4.2**\n>\n> More.\n\n**Solution to Exercise 4.2**"
    assert convert("```{solution-end}\n```")[0] == ""


def test_admonitions_in_backtick_and_colon_fences():
    out, _ = convert("```{note}\nThe trick {cite}`kingma2014auto`.\n```")
    assert out == f"> **Note**\n>\n> The trick [[Kingma and Welling, 2014]({BASE}book/bibliography.html#id2)]."
    out, _ = convert(":::{warning}\nCareful.\n:::\n\n::::{admonition} Why {math}`\\sigma`?\n:class: tip\nBecause.\n::::")
    assert out == "> **Warning**\n>\n> Careful.\n\n> **Why $\\sigma$?**\n>\n> Because."


def test_unlabelled_numbered_blocks_take_their_number_from_their_order():
    out, _ = convert("```{exercise}\nFirst.\n```\n\n```{exercise}\nSecond.\n```")
    assert out == "> **Exercise 4.1**\n>\n> First.\n\n> **Exercise 4.2**\n>\n> Second."


# --- runnable alone (Colab) ----------------------------------------------------------------------

REPO = "https://github.com/o/r"
SHA = "0123456789abcdef0123456789abcdef01234567"


def test_install_cells_are_pinned_to_the_commit_the_book_is_built_from():
    import nbconventions

    chapter = synthetic_notebook()
    install = nbformat.v4.new_code_cell(nbconventions.install_source(), id="install",
                                        metadata={"tags": ["install", "remove-cell"]})
    chapter.cells.insert(1, install)
    repository = nbconventions.repository_url()
    rn.add_setup_cells(chapter, repository, SHA)
    assert f'"vae-tutorial @ git+{repository}@{SHA}",' in chapter.cells[1].source
    assert [c.id for c in chapter.cells][:3] == ["intro", "install", "c1"]  # nothing added
    assert unpinned(chapter.cells[1].source) == nbconventions.install_source()
    assert rn.pin_install(nbconventions.install_source(), repository, None) == nbconventions.install_source()


def test_a_page_without_an_install_cell_gets_one_and_the_repositorys_files():
    import nbconventions

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Results", id="title"),
                nbformat.v4.new_code_cell('RESULTS = Path("..") / "benchmarks" / "results"', id="load")]
    repository = nbconventions.repository_url()
    rn.add_setup_cells(nb, repository, SHA)
    assert [c.id for c in nb.cells] == ["title", "reader-install", "reader-files", "load"]
    install, files = nb.cells[1], nb.cells[2]
    assert install.metadata == {"tags": ["install"], "reader_notebook": {"added": "install"}}
    assert install.source == nbconventions.install_source().replace(
        f'git+{repository}"', f'git+{repository}@{SHA}"')
    assert f"{repository}/archive/{SHA}.tar.gz" in files.source
    nbformat.validate(nb)


def test_under_the_title_links_to_the_web_page_and_to_colab():
    page = url("04_reparameterization")
    colab = rn.colab_url(REPO, "notebooks", "zh/book/04_reparameterization.ipynb")
    assert colab == "https://colab.research.google.com/github/o/r/blob/notebooks/zh/book/04_reparameterization.ipynb"
    assert rn.colab_url("https://gitlab.com/o/r", "notebooks", "x.ipynb") is None
    assert rn.colab_url(REPO, "", "x.ipynb") is None
    nb = synthetic_notebook()
    rn.add_links(nb, page, colab)
    assert nb.cells[0].source == (f"# Title\n\n[This page in the web book]({page}) · [Open in Colab]({colab})\n\n"
                                  "See {numref}`fig-ch04-variance`.")
    nb = synthetic_notebook()
    nb.cells[0].source = "No title."
    rn.add_links(nb, page, None, "zh_CN")
    assert nb.cells[0].source == f"[本页的网页版]({page})\n\nNo title."


def _archive(tmp_path: Path) -> Path:
    import tarfile

    tree = tmp_path / "r-0123"
    for name in ("benchmarks/results/quality.json", "book/01_autoencoders.ipynb", "vae_tutorial/x.py"):
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text("{}")
    path = tmp_path / "r.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(tree, arcname=tree.name)
    return path


def test_the_files_cell_fetches_the_results_and_runs_from_the_book_folder(tmp_path, monkeypatch, capsys):
    source = rn.fetch_files_source(REPO, SHA)
    monkeypatch.setenv(rn.ARCHIVE_ENV, _archive(tmp_path).as_uri())
    (tmp_path / "colab").mkdir()
    monkeypatch.chdir(tmp_path / "colab")  # Colab: the notebook alone, in /content
    exec(compile(source, "files-cell", "exec"), {})  # noqa: S102  (the cell as a reader runs it)
    fetched = tmp_path / "colab" / "vae-tutorial-files"
    assert Path.cwd() == fetched / "book"
    assert json.loads(Path("../benchmarks/results/quality.json").read_text()) == {}
    assert sorted(p.name for p in Path("..", "book").glob("[0-9][0-9]_*.ipynb")) == ["01_autoencoders.ipynb"]
    assert not (fetched / "vae_tutorial").exists()  # only the results and the chapter list
    exec(compile(source, "files-cell", "exec"), {})  # noqa: S102  (again: the files are here)
    assert Path.cwd() == fetched / "book"


def test_the_files_cell_says_what_to_do_offline(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(rn.ARCHIVE_ENV, (tmp_path / "absent.tar.gz").as_uri())
    monkeypatch.chdir(tmp_path)
    exec(compile(rn.fetch_files_source(REPO, None), "files-cell", "exec"), {})  # noqa: S102
    out = capsys.readouterr().out
    assert "could not be fetched" in out and f"clone of {REPO}" in out
    assert Path.cwd() == tmp_path
    assert f"{REPO}/archive/main.tar.gz" in rn.fetch_files_source(REPO, None)


# --- a translated edition -----------------------------------------------------------------------

ZH = {  # messages as Sphinx extracts them: line breaks made spaces
    "Why the gradient is hard": "为什么梯度难求",
    "Strip the problem to its core, with {glue:text}`ratio:.1f` and {doc}`02_elbo`.":
        "把问题剥离到最核心的部分，{glue:text}`ratio:.1f` 与 {doc}`02_elbo`。",
    "The trick is old.": "这个技巧由来已久。",
    "hard": "难",  # a short message is never looked for inside a translation
    "(Score-function gradient)": "（得分函数梯度）",
    "If $q$ is smooth, then": "若 $q$ 光滑，则",
    "Proof. Use {eq}`ch04-grad` twice.": "证明。两次使用 {eq}`ch04-grad`。",
    "Fix it.": "修正它。",
    "Variance for $n$ samples.": "$n$ 个样本的方差。",
}


def convert_zh(markdown: str) -> tuple[str, list[str]]:
    warnings: list[str] = []
    converter = rn.Converter(make_index(), "book/04_reparameterization", GLUE, warnings.append,
                             "zh_CN", ZH)
    return converter.markdown(converter.translate(markdown)), warnings


def test_a_translated_page_takes_its_prose_from_the_catalog():
    out, warnings = convert_zh("## Why the gradient is hard\n\nStrip the problem to its core, with\n"
                               "{glue:text}`ratio:.1f` and {doc}`02_elbo`.\n\n> The trick\n> is old.\n\n"
                               "Not in the catalog, hard.")
    assert out == ("## 为什么梯度难求\n\n把问题剥离到最核心的部分，29.9 与 "
                   f"[Latent-variable models and the ELBO]({url('02_elbo')})。\n\n> 这个技巧由来已久。\n\n"
                   "Not in the catalog, 难.")
    assert not warnings


def test_a_translated_page_uses_the_editions_words_for_blocks():
    md = ("````{prf:theorem} Score-function gradient\n:label: ch04-thm-score\n\nIf $q$ is smooth,\nthen\n````\n\n"
          "```{prf:proof}\nUse {eq}`ch04-grad`\ntwice.\n```\n\n"
          "```{exercise}\n:label: ch04-ex1\n\nFix it.\n```\n\n"
          "```{solution-start} ch04-ex1\n:class: dropdown\n```\n\n```{note}\nThe trick is old.\n```")
    out, warnings = convert_zh(md)
    grad = url("04_reparameterization", "equation-ch04-grad")
    assert out == (
        f"> [**定理 4.1**]({url('04_reparameterization', 'ch04-thm-score')}) （得分函数梯度）\n>\n> 若 $q$ 光滑，则\n\n"
        f"> **证明。**\n>\n> 两次使用 [(4.2)]({grad})。\n>\n> ∎\n\n"
        "> **练习 4.1**\n>\n> 修正它。\n\n**解答 练习 4.1**\n\n> **备注**\n>\n> 这个技巧由来已久。")
    assert not warnings and not raw_myst(out)
    converter = rn.Converter(make_index(), "book/04_reparameterization", GLUE, None, "zh_CN", ZH)
    caption = converter.caption({"caption": "Variance for $n$\nsamples.", "name": "fig-ch04-variance"})
    assert caption == "**Fig. 4.1** $n$ 个样本的方差。"  # the format is the build's numfig_format
    assert rn.Converter(make_index(), "x").translate("Why the gradient is hard") == "Why the gradient is hard"


def test_a_catalog_is_read_from_the_compiled_mo_file(tmp_path):
    import polib

    po = polib.POFile()
    po.metadata = {"Content-Type": "text/plain; charset=utf-8"}
    po.append(polib.POEntry(msgid="Why the gradient is hard", msgstr="为什么梯度难求"))
    po.append(polib.POEntry(msgid="Untranslated", msgstr=""))
    folder = tmp_path / "zh_CN" / "LC_MESSAGES" / "book"
    folder.mkdir(parents=True)
    po.save_as_mofile(str(folder / "04_reparameterization.mo"))
    assert rn.read_catalog([tmp_path], "zh_CN", "book/04_reparameterization") == {
        "Why the gradient is hard": "为什么梯度难求"}
    assert rn.read_catalog([tmp_path], "zh_CN", "book/absent") == {}


def test_each_edition_is_in_the_folder_the_books_are_built_to():
    import build_books

    assert rn.edition_prefix(None) == rn.edition_prefix("en") == ""
    for folder, language in build_books.LANGUAGES.items():
        assert rn.edition_prefix(language) == folder + "/"


# --- notebooks ----------------------------------------------------------------------------------

def synthetic_notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Title\n\nSee {numref}`fig-ch04-variance`.", id="intro"),
        nbformat.v4.new_code_cell("from vae_tutorial import glue\nglue('ratio', 29.9, display=False)\n", id="c1",
                                  metadata={"tags": ["remove-cell"]}),
        nbformat.v4.new_code_cell("plt.plot([1, 2])  # {doc}`x` stays\n", id="fig1", metadata={
            "mystnb": {"figure": {"caption": "Variance for $n$ samples, {glue:text}`ratio:.1f` apart.",
                                  "name": "fig-ch04-variance"}}}),
        nbformat.v4.new_markdown_cell("```{solution-start} ch04-ex1\n:class: dropdown\n```", id="sol"),
        nbformat.v4.new_code_cell("# @title Solution\nx = 1\n", id="solcode", metadata={
            "cellView": "form", "jupyter": {"source_hidden": True}}),
        nbformat.v4.new_markdown_cell("```{solution-end}\n```", id="end"),
    ]
    nb.cells[2].outputs = [nbformat.v4.new_output("display_data", data={"image/png": "AAAA"})]
    nb.cells[2].execution_count = 3
    return nb


def test_a_reader_notebook_keeps_its_code_and_adds_captions():
    source = synthetic_notebook()
    warnings: list[str] = []
    nb = rn.convert_notebook(source, rn.Converter(make_index(), "book/04_reparameterization", GLUE,
                                                  warnings.append))
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    originals = [c for c in source.cells if c.cell_type == "code"]
    assert [(c.id, c.source, c.metadata) for c in code] == [(c.id, c.source, c.metadata) for c in originals]
    assert all(c.outputs == [] and c.execution_count is None for c in code)  # for running
    assert [c.id for c in nb.cells] == ["intro", "c1", "fig1", "fig1-caption", "sol", "solcode"]
    caption = nb.cells[3]
    assert caption.cell_type == "markdown"
    assert caption.source == "**Fig. 4.1** Variance for $n$ samples, 29.9 apart."
    assert nb.cells[4].source == "**Solution to Exercise 4.1**"
    assert nb.cells[5].metadata == {"cellView": "form", "jupyter": {"source_hidden": True}}
    assert nb.metadata["reader_notebook"]["url"] == url("04_reparameterization")
    assert not warnings
    assert not any(raw_myst(c.source) for c in nb.cells if c.cell_type == "markdown")
    assert source.cells[2].outputs, "the source notebook is not modified"


def test_glue_is_read_from_myst_nbs_glue_json_or_else_from_the_outputs(tmp_path):
    executed = tmp_path / "ch.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("glue('a', 1.5, display=False)")]
    nb.cells[0].outputs = [nbformat.v4.new_output(
        "display_data", data={"application/papermill.record/text/plain": "1.5"},
        metadata={"scrapbook": {"name": "a", "mime_prefix": "application/papermill.record/"}})]
    nbformat.write(nb, executed)
    assert rn.read_glue(executed) == {"a": {"data": {"text/plain": "1.5"}}}
    (tmp_path / "ch.glue.json").write_text(json.dumps({"a": {"data": {"text/plain": "2.5"}}}))
    assert rn.read_glue(executed)["a"]["data"]["text/plain"] == "2.5"
    assert rn.read_glue(tmp_path / "absent.ipynb") == {}


def test_the_index_is_read_from_a_sphinx_environment():
    from pybtex.database import Entry, Person

    entry = Entry("article", fields={"year": "2014", "title": "Auto-encoding"},
                  persons={"author": [Person("Kingma, Diederik P."), Person("Welling, Max")]})
    citation = types.SimpleNamespace(key="kingma2014auto", citation_id="id2", entry=entry,
                                     bibliography_key=types.SimpleNamespace(docname="book/bibliography"))
    title = types.SimpleNamespace(astext=lambda: "The reparameterisation trick")
    env = types.SimpleNamespace(
        titles={"book/04_reparameterization": title},
        toc_fignumbers={"book/04_reparameterization": {"figure": {"fig-a": (4, 1)}}},
        config=types.SimpleNamespace(numfig_format={"figure": "Fig. %s"}),
        domaindata={"std": {"labels": {"fig-a": ("book/04_reparameterization", "fig-a", "A")},
                            "anonlabels": {"fig-a": ("book/04_reparameterization", "fig-a")}},
                    "math": {"objects": {"ch04-grad": ("book/04_reparameterization", 2)}},
                    "cite": {"citations": [citation]}},
        proof_list={"thm": {"docname": "book/04_reparameterization", "realtype": "theorem",
                            "countertype": "theorem"}},
        sphinx_exercise_registry={"ex": {"type": "exercise", "docname": "book/04_reparameterization"},
                                  "sol": {"type": "solution", "docname": "book/04_reparameterization"}},
    )
    index = rn.BookIndex.from_env(env, BASE)
    assert index.titles == {"book/04_reparameterization": "The reparameterisation trick"}
    assert index.number("book/04_reparameterization", "figure", "fig-a") == "4.1"
    assert index.labels["fig-a"] == rn.Target("book/04_reparameterization", "fig-a", "A")
    assert index.equations == {"ch04-grad": "book/04_reparameterization"}
    assert index.proofs == {"thm": ("book/04_reparameterization", "theorem", "theorem")}
    assert index.exercises == {"ex": "book/04_reparameterization"}
    assert index.citations["kingma2014auto"] == (rn.Target("book/bibliography", "id2"), "Kingma and Welling", "2014")
    many = Entry("article", fields={"year": "{2016}"},
                 persons={"author": [Person("S{\\o}nderby, C."), Person("Raiko, T."), Person("Maal{\\o}e, L.")]})
    assert rn._author_year(many) == ("Sønderby et al.", "2016")


def test_launch_buttons_and_the_download_point_at_the_reader_notebook():
    page = "book/04_reparameterization"
    app = types.SimpleNamespace(
        config=types.SimpleNamespace(reader_notebooks_branch="notebooks", language=None,
                                     html_theme_options={"repository_branch": "main"}),
        env=types.SimpleNamespace(found_docs={page, "book/api"},
                                  doc2path=lambda d: f"/src/{d}.ipynb" if d == page else f"/src/{d}.md"))
    colab = f"https://colab.research.google.com/github/o/r/blob/main/{page}.ipynb"
    binder = f"https://mybinder.org/v2/gh/o/r/main?urlpath=tree/{page}.ipynb"
    context = {"pathto": lambda name, resource: f"../{name}", "header_buttons": [
        {"type": "group", "buttons": [{"url": binder}, {"url": colab}]},
        {"type": "group", "buttons": [{"url": f"../_sources/{page}.ipynb", "label": "download-source-button"}]},
    ]}
    rn.point_buttons_at_reader_notebooks(app, page, "page.html", context, None)
    launch, download = context["header_buttons"]
    assert launch["buttons"][0]["url"] == f"https://mybinder.org/v2/gh/o/r/notebooks?urlpath=tree/{page}.ipynb"
    assert launch["buttons"][1]["url"] == colab.replace("/blob/main/", "/blob/notebooks/")
    assert download["buttons"][0]["url"] == f"../notebooks/{page}.ipynb"
    # the Chinese edition's buttons open its reader notebooks, under zh/ in the same branch
    app.config.language = "zh_CN"
    zh = {"pathto": context["pathto"], "header_buttons": [{"type": "group", "buttons": [
        {"url": binder}, {"url": colab}, {"url": f"../_sources/{page}.ipynb", "label": "download-source-button"}]}]}
    rn.point_buttons_at_reader_notebooks(app, page, "page.html", zh, None)
    assert [b["url"] for b in zh["header_buttons"][0]["buttons"]] == [
        f"https://mybinder.org/v2/gh/o/r/notebooks?urlpath=tree/zh/{page}.ipynb",
        f"https://colab.research.google.com/github/o/r/blob/notebooks/zh/{page}.ipynb",
        f"../notebooks/{page}.ipynb"]  # the zh site's own notebooks/ folder
    md_context = {"pathto": context["pathto"], "header_buttons": [{"url": colab}]}
    rn.point_buttons_at_reader_notebooks(app, "book/api", "page.html", md_context, None)
    assert md_context["header_buttons"][0]["url"] == colab  # a Markdown page has no reader notebook


# --- the built book -----------------------------------------------------------------------------

HTML = Path(os.environ.get("VAE_TUTORIAL_BOOK_HTML", ROOT / "_build" / "html"))
READER = HTML / rn.OUTPUT_DIR
REQUIRED = os.environ.get("VAE_TUTORIAL_BROWSER_TEST", "") == "require"


def reader_notebooks() -> list[Path]:
    if not READER.is_dir():
        if REQUIRED:
            pytest.fail(f"no reader notebooks in {READER}: build the book ($VAE_TUTORIAL_BROWSER_TEST=require)")
        pytest.skip(f"the book is not built ({READER} is missing)")
    return sorted(READER.rglob("*.ipynb"))


def unpinned(source: str) -> str:
    """An install cell's source without the commit the reader notebook pins it to."""
    return re.sub(r'@[0-9a-f]{40}"', '"', source)


@pytest.mark.browser  # needs the built book: CI runs it after the build (tests -m browser)
def test_every_notebook_page_has_a_reader_notebook():
    found = {p.relative_to(READER).as_posix() for p in reader_notebooks()}
    expected = {f"book/{p.name}" for p in (ROOT / "book").glob("*.ipynb")}
    assert found == expected


@pytest.mark.browser  # needs the built book: CI runs it after the build (tests -m browser)
def test_reader_notebooks_have_no_raw_myst_the_sources_code_and_every_caption():
    problems = []
    for path in reader_notebooks():
        page = path.relative_to(READER).with_suffix("").as_posix()
        nb = nbformat.read(path, as_version=4)
        source = nbformat.read(ROOT / f"{page}.ipynb", as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "markdown" and raw_myst(cell.source):
                problems.append(f"{page}: raw MyST {raw_myst(cell.source)[:3]} in cell {cell.get('id')}")
        code = [(c.get("id"), unpinned(c.source), c.metadata) for c in nb.cells
                if c.cell_type == "code" and "added" not in c.metadata.get("reader_notebook", {})]
        if code != [(c.get("id"), c.source, c.metadata) for c in source.cells if c.cell_type == "code"]:
            problems.append(f"{page}: code cells differ from {page}.ipynb")
        colab = f"https://colab.research.google.com/github/vae-tutorial/vae-tutorial/blob/notebooks/{page}.ipynb"
        if f"[Open in Colab]({colab})" not in nb.cells[0].source.split("\n\n")[1]:
            problems.append(f"{page}: no link to the notebook in Colab under its title")
        first = next((c for c in nb.cells if c.cell_type == "code"), None)
        if first is None or "install" not in first.metadata.get("tags", []):
            problems.append(f"{page}: its first code cell does not install vae-tutorial (Colab)")
        html = (HTML / f"{page}.html").read_text(encoding="utf-8") if (HTML / f"{page}.html").exists() else ""
        for k, cell in enumerate(nb.cells):
            figure = cell.get("metadata", {}).get("mystnb", {}).get("figure") if cell.cell_type == "code" else None
            if not figure or not figure.get("caption"):
                continue
            after = nb.cells[k + 1] if k + 1 < len(nb.cells) else None
            if after is None or after.get("metadata", {}).get("reader_notebook", {}).get("caption_of") != cell.get("id"):
                problems.append(f"{page}: figure cell {cell.get('id')} has no caption cell")
            elif f'id="{figure.get("name")}"' in html and not re.match(r"\*\*Fig\. \d+(\.\d+)*\*\* \S", after.source):
                problems.append(f"{page}: the caption of {figure.get('name')} has no number: {after.source[:60]!r}")
        glue_json = HTML.parent / "jupyter_execute" / f"{page}.glue.json"
        if glue_json.exists():  # an executed build: every glued value was found (no "—" was added)
            def dashes(cells):
                return sum(c.source.count("—") for c in cells if c.cell_type == "markdown")
            captions = sum(str(c.metadata.get("mystnb", {}).get("figure", {}).get("caption", "")).count("—")
                           for c in source.cells if c.cell_type == "code")
            if dashes(nb.cells) != dashes(source.cells) + captions:
                problems.append(f"{page}: a glued value is missing (an em dash stands in for it)")
    assert not problems, "\n".join(problems)


@pytest.mark.browser  # needs the built book: CI runs it after the build (tests -m browser)
def test_the_results_reader_notebook_runs_alone_as_in_colab(tmp_path, monkeypatch):
    """Colab opens the Results notebook alone, without ../benchmarks/results: its added cells
    install nothing here (the package is importable) and fetch the repository's archive (here
    one made from this checkout), and every table and figure of the page is drawn."""
    import tarfile

    from nbclient import NotebookClient

    path = READER / "book" / "results.ipynb"
    if not path.is_file():
        reader_notebooks()  # skips, or fails under $VAE_TUTORIAL_BROWSER_TEST=require
        pytest.fail(f"no {path}")
    archive = tmp_path / "repository.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for file in [*ROOT.glob("benchmarks/results/*.json"), *ROOT.glob("book/*.ipynb")]:
            tar.add(file, arcname=f"vae-tutorial-0123/{file.relative_to(ROOT).as_posix()}")
    content = tmp_path / "content"
    content.mkdir()
    monkeypatch.setenv(rn.ARCHIVE_ENV, archive.as_uri())
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # the install cell must not need the network
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(content)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    text = "".join(o.get("text", "") for o in outputs)
    markdown = "".join(o.get("data", {}).get("text/markdown", "") for o in outputs)
    assert "Results read from" in text
    assert "has not been produced yet" not in markdown and "*Measured on" in markdown
    figures = [c for c in nb.cells if c.cell_type == "code" and c.metadata.get("mystnb", {}).get("figure")]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == len(figures)


ZH_READER = HTML / "zh" / rn.OUTPUT_DIR
CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.mark.browser  # needs the built book (both editions): CI runs it after the Chinese build
def test_the_chinese_reader_notebooks_are_the_english_ones_translated():
    english = {p.relative_to(READER).as_posix(): p for p in reader_notebooks()}
    if not (HTML / "zh").is_dir():
        if REQUIRED:
            pytest.fail(f"no Chinese edition in {HTML / 'zh'} ($VAE_TUTORIAL_BROWSER_TEST=require)")
        pytest.skip(f"the Chinese edition is not built ({HTML / 'zh'} is missing)")
    chinese = {p.relative_to(ZH_READER).as_posix(): p for p in sorted(ZH_READER.rglob("*.ipynb"))}
    assert set(chinese) == set(english)
    problems = []
    for name, path in sorted(chinese.items()):
        zh, en = nbformat.read(path, as_version=4), nbformat.read(english[name], as_version=4)
        if [c.get("id") for c in zh.cells] != [c.get("id") for c in en.cells]:
            problems.append(f"{name}: not the English notebook's cells")
        if [(c.source, c.metadata) for c in zh.cells if c.cell_type == "code"] != [
                (c.source, c.metadata) for c in en.cells if c.cell_type == "code"]:
            problems.append(f"{name}: code cells differ from the English reader notebook's")
        prose = [c.source for c in zh.cells if c.cell_type == "markdown" and re.search(r"[A-Za-z]{3}", c.source)]
        english_cells = [c for c in prose if not CJK.search(c)]
        if len(english_cells) > 0.1 * len(prose):  # a new paragraph may wait for its translation
            problems.append(f"{name}: {len(english_cells)} of {len(prose)} Markdown cells are not translated, "
                            f"e.g. {english_cells[0][:80]!r}")
        for cell in zh.cells:
            if cell.cell_type == "markdown" and raw_myst(cell.source):
                problems.append(f"{name}: raw MyST {raw_myst(cell.source)[:3]} in cell {cell.get('id')}")
        links = re.findall(r"\]\((https?://[^)\s]+)\)", "".join(c.source for c in zh.cells if c.cell_type == "markdown"))
        book = zh.metadata["reader_notebook"]["url"].rsplit("/book/", 1)[0]
        if not book.endswith("/zh") or any("/book/" in u and "colab" not in u and not u.startswith(book + "/") for u in links):
            problems.append(f"{name}: links lead out of the Chinese web book ({book})")
        if f"/blob/notebooks/zh/{name})" not in zh.cells[0].source:
            problems.append(f"{name}: the Colab link under its title is not the Chinese notebook")
    assert not problems, "\n".join(problems)


# --- vt.glue and ipywidgets 7.7 / 8 --------------------------------------------------------------

@pytest.fixture
def shell():
    """An IPython shell whose displayed outputs are captured in ``shell.display_pub.outputs``."""
    from IPython.core.displaypub import CapturingDisplayPublisher
    from IPython.core.interactiveshell import InteractiveShell

    was = InteractiveShell.initialized()
    shell = InteractiveShell.instance()
    saved = shell.display_pub
    shell.display_pub = CapturingDisplayPublisher()
    yield shell
    shell.display_pub = saved
    if not was:
        InteractiveShell.clear_instance()


def test_glue_defers_to_myst_nb(shell):
    pytest.importorskip("myst_nb")
    import vae_tutorial as vt

    vt.glue("ch00_value", 0.25, display=False)
    (output,) = shell.display_pub.outputs
    assert output["metadata"]["scrapbook"]["name"] == "ch00_value"
    assert output["data"] == {"application/papermill.record/text/plain": "0.25"}
    vt.glue("ch00_shown", 3, display=True)
    assert shell.display_pub.outputs[-1]["data"] == {"text/plain": "3"}


def test_glue_without_myst_nb_shows_nothing_unless_asked(shell, monkeypatch):
    import vae_tutorial as vt

    monkeypatch.setitem(sys.modules, "myst_nb", None)  # import myst_nb raises ImportError
    vt.glue("ch00_value", 0.25, display=False)
    assert shell.display_pub.outputs == []
    vt.glue("ch00_value", 0.25, display=True)
    assert [o["data"] for o in shell.display_pub.outputs] == [{"text/plain": "0.25"}]
    with pytest.raises(vt.errors.ArgumentTypeError, match="name must be a non-empty str"):
        vt.glue(3, 0.25)


def _explorer():
    import torch

    from vae_tutorial import VAE, MLPDecoder, MLPEncoder
    from vae_tutorial.display.widgets import latent_explorer

    torch.manual_seed(0)
    return latent_explorer(VAE(MLPEncoder((1, 4, 4), [8], 2), MLPDecoder(2, [8], (1, 4, 4))))


def _displayed(shell, widget) -> dict:
    from IPython.display import display

    display(widget)
    (output,) = shell.display_pub.outputs
    return output["data"]


def test_the_explorer_displays_widget_and_html_with_the_installed_ipywidgets(shell):
    # Run with ipywidgets 8 (requirements.txt) and 7.7.1 (Colab): both publish the live widget
    # and the kernel-free HTML in one output.
    data = _displayed(shell, _explorer())
    assert "application/vnd.jupyter.widget-view+json" in data
    assert "vae-explorer-spec" in data["text/html"]


def test_the_explorer_displays_the_same_through_ipywidgets_7s_display_path(shell, monkeypatch):
    # ipywidgets 7 has no Widget._repr_mimebundle_ and displays through _ipython_display_
    import ipywidgets

    from vae_tutorial import widgets

    if hasattr(ipywidgets.Widget, "_repr_mimebundle_"):
        monkeypatch.delattr(ipywidgets.Widget, "_repr_mimebundle_")
    try:
        seven = importlib.reload(widgets)
        assert hasattr(seven._LatentExplorer, "_ipython_display_")
        data = _displayed(shell, seven.latent_explorer(_explorer_model()))
    finally:
        monkeypatch.undo()
        importlib.reload(widgets)
    assert data["application/vnd.jupyter.widget-view+json"]["model_id"]
    assert "vae-explorer-spec" in data["text/html"]
    assert data["text/plain"]


def _explorer_model():
    import torch

    from vae_tutorial import VAE, MLPDecoder, MLPEncoder

    torch.manual_seed(0)
    return VAE(MLPEncoder((1, 4, 4), [8], 2), MLPDecoder(2, [8], (1, 4, 4)))

"""The chapters' notebooks as committed: runnable anywhere, solutions hidden, no stored outputs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from vae_tutorial import notebook

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))


def test_there_are_chapters():
    assert len(CHAPTERS) >= 13


def test_chapters_follow_the_conventions_tool():
    """Header, install cell and hidden solutions are what tools/nbconventions.py writes."""
    run = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "nbconventions.py"), "--check"],
        capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    stored = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and c.get("outputs")]
    assert not stored, f"{path.name}: cells {stored} have stored outputs (clear them before committing)"


def _solution_cells(nb):
    # the tool's own rule: the last {solution-start}/{solution-end} of a Markdown cell decides
    # (one cell may close one solution and open the next)
    sys.path.insert(0, str(ROOT / "tools"))
    from nbconventions import inside_solution_after

    inside, found = False, []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            inside = inside_solution_after(cell.source, inside)
        elif inside:
            found.append(cell)
    return found


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_solutions_are_hidden_and_skipped_by_run_all(path):
    nb = nbformat.read(path, as_version=4)
    for cell in _solution_cells(nb):
        head = cell.source.splitlines()[0] if cell.source else ""
        assert notebook.is_solution(cell.source), f"{path.name}: solution cell starts with {head!r}"
        assert cell.metadata.get("jupyter", {}).get("source_hidden") is True, f"{path.name}: {head!r} visible in Jupyter"
        assert cell.metadata.get("cellView") == "form", f"{path.name}: {head!r} visible in Colab"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_install_cell_comes_before_any_import_of_the_package(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "install" in code[0].metadata.get("tags", []), f"{path.name}: the first code cell is not the install cell"
    assert "VAE_TUTORIAL_PIP_SPEC" in code[0].source and "myst_nb" not in code[0].source


class _Shell:
    """Runs cells through a real IPython shell with vae_tutorial's transformer installed."""

    def __init__(self):
        from IPython.core.interactiveshell import InteractiveShell

        self.ip = InteractiveShell.instance()
        assert notebook.register(self.ip)
        assert notebook.register(self.ip)  # idempotent
        assert self.ip.input_transformers_cleanup.count(notebook.skip_unrequested_solutions) == 1

    def run(self, source):
        result = self.ip.run_cell(source)
        return result


@pytest.fixture
def shell(capsys):
    return _Shell()


def test_solution_cell_is_skipped_unless_enabled(shell, monkeypatch, capsys):
    cell = f"{notebook.SOLUTION_TITLE}\nran_solution = 42\nassert False, 'a solution assert'\n"
    monkeypatch.delenv(notebook.SOLUTIONS_ENV, raising=False)
    shell.ip.user_ns.pop("ran_solution", None)
    result = shell.run(cell)
    assert result.success and "ran_solution" not in shell.ip.user_ns
    assert "Solution not run" in capsys.readouterr().out

    monkeypatch.setenv(notebook.SOLUTIONS_ENV, "run")
    result = shell.run(cell)
    assert shell.ip.user_ns["ran_solution"] == 42
    assert not result.success and isinstance(result.error_in_exec, AssertionError)


def test_ordinary_cells_run_whatever_the_setting(shell, monkeypatch):
    monkeypatch.delenv(notebook.SOLUTIONS_ENV, raising=False)
    shell.run("# a comment, then @title Solution later\nordinary = 1\n")
    assert shell.ip.user_ns["ordinary"] == 1


EXECUTED = Path(os.environ.get("VAE_TUTORIAL_BOOK_HTML", ROOT / "_build" / "html")).parent / "jupyter_execute" / "book"


def _executed(path: Path) -> Path:
    """The build's executed copy of chapter ``path``; skip (fail when required) without a build."""
    executed = EXECUTED / path.name
    if not executed.exists():
        reason = f"{executed} not found: build the book first (jupyter-book build .)"
        if os.environ.get("VAE_TUTORIAL_BROWSER_TEST", "") == "require":
            pytest.fail(reason)
        pytest.skip(reason)
    return executed


@pytest.mark.browser  # needs the built book, like the browser tests, and runs with them in CI
@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_executed_chapter_shows_a_figure_in_its_own_outputs(path):
    """Jupyter and Colab readers see figures as cell outputs, not only through the book's glue."""
    executed = _executed(path)
    nb = nbformat.read(executed, as_version=4)
    images = [
        i for i, c in enumerate(nb.cells) if c.cell_type == "code"
        for out in c.get("outputs", []) if "image/png" in out.get("data", {})
    ]
    assert images, f"{path.name}: no cell of the executed notebook shows an image"
    hidden = [c for c in _solution_cells(nb) if not c.metadata.get("jupyter", {}).get("source_hidden")]
    assert not hidden, f"{path.name}: {len(hidden)} solution cells are visible in the executed notebook"


def _names(source: str) -> tuple[set, set]:
    """(names a cell binds, names it reads), from its Python syntax (magics dropped)."""
    import ast

    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
    bound, read = set(), set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Name):
            (bound if isinstance(node.ctx, ast.Store) else read).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    return bound, read


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_no_cell_needs_a_name_that_only_a_skipped_solution_defines(path):
    """"Run all" skips solutions, so the chapter's own cells must not depend on them."""
    nb = nbformat.read(path, as_version=4)
    bound, only_in_solutions, bad = set(), set(), []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        names_bound, names_read = _names(cell.source)
        if notebook.is_solution(cell.source):
            only_in_solutions |= names_bound - bound
        else:
            missing = (names_read & only_in_solutions) - names_bound
            if missing:
                bad.append(f"cell {i} reads {sorted(missing)}")
            bound |= names_bound
            only_in_solutions -= names_bound
    assert not bad, f"{path.name}: " + "; ".join(bad)


# --- No chapter assert may depend on a timing --------------------------------------------------
# A chapter is executed by the book build and by nbval on busy CI machines, laptops and GPUs; an
# assert on a duration (or a ratio of durations, or a throughput) fails when the machine is
# loaded or different, and aborts the build. The check below reads every chapter's code cells
# (one namespace, as in the kernel), follows values derived from a clock through assignments,
# containers and functions, and fails on any assert that uses one. Names that look like timings
# (t0, t_train, train_s, time_ratio, seconds, elapsed, ...) count as timings whatever their
# source: a glued or loaded time is no more deterministic than a measured one.

_CLOCK_MODULES = {"time", "timeit", "vae_tutorial.training.timing"}
# functions of those modules that return a time or a speed (vae_tutorial.training.timing's
# training_step_flops counts operations: deterministic, not a timing)
_CLOCK_FUNCTIONS = {"time", "time_ns", "perf_counter", "perf_counter_ns", "process_time",
                    "process_time_ns", "monotonic", "monotonic_ns", "thread_time", "thread_time_ns",
                    "clock", "default_timer", "timeit", "repeat", "training_throughput"}
# unambiguous attribute names (timing.training_throughput, time_module.perf_counter, ...)
_CLOCK_ATTRIBUTES = _CLOCK_FUNCTIONS - {"time", "clock", "repeat", "timeit"}
# words of a name (split at "_") that mark a time or a speed
_TIMING_WORDS = {"time", "times", "timing", "timings", "timer", "seconds", "secs", "elapsed",
                 "duration", "durations", "wall", "walltime", "clock", "throughput", "speedup",
                 "sps", "runtime"}
# x_s, log_s, lam_s, mu_s are maths (a scale, the log-SNR at s), not seconds
_MATH_BEFORE_S = {"log", "lam", "lambda", "alpha", "beta", "gamma", "delta", "sigma", "theta",
                  "phi", "eps", "snr", "var", "std", "mean", "scale"}
_MUTATORS = {"append", "extend", "insert", "update", "add", "setdefault", "__setitem__"}


def _looks_like_timing(name: str) -> bool:
    """Whether a name reads as a time or a speed: t_train, train_s, wall_ms, time_ratio,
    cpu_seconds, elapsed, sps_amp (not t, t4, timesteps, log_s, lam_s, second_moment)."""
    words = [w for w in name.lower().split("_") if w]
    if not words:
        return False
    if len(words) > 1 and words[0] == "t":
        return True  # t_train, t_conv
    if len(words) > 1 and words[-1] in ("s", "ms"):
        before = words[-2]
        return len(before) > 2 and before not in _MATH_BEFORE_S  # train_s, wall_ms
    return any(w in _TIMING_WORDS for w in words)


def _strip_magics(source: str) -> str:
    return "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))


class _TimingTaint:
    """Which values of a chapter come from a clock, and which asserts use one.

    The code cells are read in order as one program, as the kernel runs them. A name holds a
    timing after an assignment from an expression that reads a clock (``time.perf_counter()``,
    ``training_throughput(...)``, a function that returns a timing), a name that holds one, a
    timing-like name or key (``history["seconds"]``); it stops holding one when it is assigned
    something else. A container holds one once a timing is stored in it (``d[k] = t``,
    ``rows.append(t)``). Loops are followed twice, both branches of an ``if`` are joined.
    """

    def __init__(self, sources: list[str]):
        import ast

        self.ast = ast
        self.trees = [ast.parse(_strip_magics(s)) for s in sources]
        self.clock_modules: set[str] = set()
        self.tainted: set[str] = set()
        self.found: list[str] = []
        self._returns: list[bool] | None = None
        self._stored: set[str] = set()
        for cell, tree in enumerate(self.trees):
            self._cell = cell
            self._block(tree.body)

    # -- expressions
    def timed(self, expr) -> bool:
        """Whether an expression reads a clock, a timing value or a timing-like name."""
        ast = self.ast
        for node in ast.walk(expr):
            if isinstance(node, ast.Name) and (node.id in self.tainted or _looks_like_timing(node.id)):
                return True
            if isinstance(node, ast.Attribute):
                base = node.value
                if isinstance(base, ast.Name) and base.id in self.clock_modules:
                    return True
                if node.attr in _CLOCK_ATTRIBUTES or _looks_like_timing(node.attr):
                    return True
            if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) \
                    and isinstance(node.slice.value, str) and _looks_like_timing(node.slice.value):
                return True  # history["seconds"], r["train_time"]
        return False

    def _names(self, target):
        ast = self.ast
        if isinstance(target, ast.Name):
            yield target.id, True
        elif isinstance(target, (ast.Subscript, ast.Attribute, ast.Starred)):
            inner = target.value
            while isinstance(inner, (ast.Subscript, ast.Attribute, ast.Starred)):
                inner = inner.value
            if isinstance(inner, ast.Name):
                yield inner.id, isinstance(target, ast.Starred)  # d[k] = ... changes part of d
        elif isinstance(target, (ast.Tuple, ast.List)):
            for t in target.elts:
                yield from self._names(t)

    def _bind(self, target, timed: bool) -> None:
        for name, whole in self._names(target):
            if timed:
                self.tainted.add(name)
                if not whole:
                    self._stored.add(name)
            elif whole:
                self.tainted.discard(name)

    # -- statements
    def _block(self, body) -> None:
        for node in body:
            self._stmt(node)

    def _stmt(self, node) -> None:
        ast = self.ast
        self._check(node)
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in _CLOCK_MODULES:
                    self.clock_modules.add(a.asname or a.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            for a in node.names:
                if node.module in _CLOCK_MODULES and a.name in _CLOCK_FUNCTIONS:
                    self.tainted.add(a.asname or a.name)
                elif a.name == "timing" and node.module == "vae_tutorial":
                    self.clock_modules.add(a.asname or a.name)
        elif isinstance(node, ast.Assign):
            timed = self.timed(node.value)
            for t in node.targets:
                self._bind(t, timed)
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            self._bind(node.target, self.timed(node.value))
        elif isinstance(node, ast.AugAssign):
            if self.timed(node.value):
                self._bind(node.target, True)
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            for _ in range(2):  # a timing stored in one pass is read in the next
                self._bind(node.target, self.timed(node.iter))
                self._block(node.body)
            self._block(node.orelse)
        elif isinstance(node, ast.While):
            for _ in range(2):
                self._block(node.body)
            self._block(node.orelse)
        elif isinstance(node, ast.If):
            before = set(self.tainted)
            self._block(node.body)
            after_body, self.tainted = self.tainted, before
            self._block(node.orelse)
            self.tainted |= after_body
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                if item.optional_vars is not None:
                    self._bind(item.optional_vars, self.timed(item.context_expr))
            self._block(node.body)
        elif isinstance(node, ast.Try):
            for part in (node.body, *(h.body for h in node.handlers), node.orelse, node.finalbody):
                self._block(part)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            self._function(node)
        elif isinstance(node, ast.Return) and node.value is not None and self._returns is not None:
            self._returns.append(self.timed(node.value))
        elif isinstance(node, ast.Expr):
            self._expression_statement(node.value)

    def _expression_statement(self, value) -> None:
        ast = self.ast
        for call in ast.walk(value):
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) \
                    and call.func.attr in _MUTATORS \
                    and any(self.timed(a) for a in [*call.args, *(k.value for k in call.keywords)]):
                self._bind(ast.Subscript(value=call.func.value, slice=ast.Constant(0)), True)
            if isinstance(call, (ast.Yield, ast.YieldFrom)) and call.value is not None \
                    and self._returns is not None:
                self._returns.append(self.timed(call.value))

    def _function(self, node) -> None:
        outer, outer_returns, outer_stored = set(self.tainted), self._returns, self._stored
        self._returns, self._stored = [], set()
        args = node.args
        for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
            if a is not None:
                self.tainted.discard(a.arg)
        self._block(node.body)
        returns_time, stored = any(self._returns), self._stored
        # the function's locals are forgotten; a timing it stores into a container stays
        self.tainted = outer | stored
        self._returns, self._stored = outer_returns, outer_stored | stored
        if returns_time:
            self.tainted.add(node.name)
        else:
            self.tainted.discard(node.name)

    # -- asserts
    def _check(self, node) -> None:
        ast = self.ast
        checked = []
        if isinstance(node, ast.Assert):
            checked = [node.test]
        for call in ast.walk(node) if isinstance(node, ast.Expr) else ():
            if isinstance(call, ast.Call):
                func = call.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name.startswith("assert"):  # np.testing.assert_allclose, torch.testing.assert_close
                    checked += [*call.args, *(k.value for k in call.keywords if k.arg != "msg")]
        if checked and any(self.timed(e) for e in checked):
            self.found.append(f"code cell {self._cell}, line {node.lineno}: "
                              f"{ast.unparse(node).splitlines()[0]}")

    def timing_asserts(self) -> list[str]:
        """``"code cell C, line N: <source>"`` for every assert (or ``assert_*`` call) that
        uses a timing, in the order the kernel would run them."""
        return list(self.found)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_no_chapter_asserts_on_a_timing(path):
    nb = nbformat.read(path, as_version=4)
    found = _TimingTaint([c.source for c in nb.cells if c.cell_type == "code"]).timing_asserts()
    assert not found, (f"{path.name} asserts on a timing (or on a value computed from one), which "
                       "fails on a loaded or different machine; compare counted work "
                       "(vae_tutorial.training.timing.training_step_flops), or print the time without "
                       "asserting on it:\n  " + "\n  ".join(found))


def _cells(*sources: str) -> list[str]:
    return [textwrap.dedent(src).strip() for src in sources]


_TIMED_SOURCES = {
    "elapsed": _cells("""
        import time
        t0 = time.perf_counter()
        run()
        elapsed = time.perf_counter() - t0
        assert elapsed < 5
    """),
    "extrapolated cost (the old ch10)": _cells(
        "import time\nclock = time.process_time if gpu else time.perf_counter",
        """
        def per_image(kind):
            spent = []
            for n in (5, 35):
                start = clock()
                work(kind, n)
                spent.append(clock() - start)
            return spent[1] - spent[0]
        """,
        """
        cost = {k: per_image(k) for k in ("a", "b")}
        ratio = cost["b"] / cost["a"]
        epochs = 3 * round(ratio)
        assert 0.67 < ratio < 1.5
        """,
    ),
    "aliased import": _cells("""
        from time import perf_counter as pc
        start = pc()
        x = 1
        span = pc() - start
        assert span > 0
    """),
    "ratio across cells (ch08's pattern)": _cells(
        """
        import time
        cost = {}
        for k in (1, 10):
            a = time.process_time()
            cost[k] = time.process_time() - a
        """,
        "r = cost[10] / cost[1]\nassert 4 < r < 25",
    ),
    "stored by a function": _cells("""
        import time as clock_module
        spent = {}
        def run(k):
            a = clock_module.monotonic()
            spent[k] = clock_module.monotonic() - a
        run(1)
        assert spent[1] < 2
    """),
    "a budget set by a timing": _cells("""
        import time
        a = time.process_time()
        step()
        cost = time.process_time() - a
        epochs = max(1, round(cost / 0.01))
        history = vt.fit(model, data, epochs=epochs)
        assert history["valid_elbo"][-1] > -300
    """),
    "throughput in a list": _cells("""
        from vae_tutorial.training.timing import training_throughput
        rows = []
        rows.append((1, training_throughput(m, x)))
        assert all(r[1] > 0 for r in rows)
    """),
    "module attribute": _cells("""
        import vae_tutorial as vt
        v = vt.timing.training_throughput(m, x)
        assert v > 100
    """),
    "fit's seconds": _cells("""
        h = vt.fit(m, data, epochs=3)
        wall = sum(h["seconds"])
        assert wall < 60
    """),
    "a time by its name": _cells(
        'time_ratio = json.load(f)["r"]\nassert time_ratio < 1.5',
        "train_s = load()\nassert 0 < train_s",
        "assert t_conv < 2 * t_mlp",
    ),
    "assert_* call": _cells("""
        import time
        t1 = time.time()
        b = 2
        np.testing.assert_allclose(b, time.time() - t1)
    """),
}


@pytest.mark.parametrize("sources", _TIMED_SOURCES.values(), ids=_TIMED_SOURCES.keys())
def test_timing_assert_check_catches_timing_asserts(sources):
    found = _TimingTaint(sources).timing_asserts()
    assert found and all("assert" in f for f in found)


def test_timing_assert_check_accepts_counted_and_unrelated_values():
    sources = _cells(
        """
        import time
        from vae_tutorial.training.timing import training_step_flops, training_throughput
        """,
        """
        flops = {k: training_step_flops(make(k), x) for k in "ab"}
        ratio = flops["b"] / flops["a"]
        assert ratio > 3
        """,
        """
        t0 = time.perf_counter()
        loss = train()
        print(f"{time.perf_counter() - t0:.1f} s")
        h = vt.fit(m, data, epochs=2)
        assert h["valid_elbo"][-1] > h["valid_elbo"][0] and loss < 1
        """,
        """
        rows = [training_throughput(m, x)]
        print(rows)
        rows, cols = grid.nonzero()  # the name is reused for something else
        assert len(rows) == len(cols)
        """,
        """
        t = torch.linspace(0, 1, 10)
        timesteps, t4 = 100, vt.elbo(m, x)
        lam_s, log_s, second_moment = 1.0, 0.5, 2.0
        assert t.max() <= 1 and timesteps > 0 and lam_s > log_s and second_moment > 1
        """,
        """
        def per_image(kind):
            start = time.perf_counter()
            value = evaluate(kind)
            print(time.perf_counter() - start)
            return value
        assert per_image("a") < 0
        """,
    )
    assert _TimingTaint(sources).timing_asserts() == []


# --- A figure cell gives exactly one figure, whatever else it displays -------------------------
# myst-nb wraps every display output of a cell with ``mystnb.figure`` metadata in a figure of
# that name; progress bars of a ``fit`` inside the cell (run without CI) made several figures
# with one name ("Duplicate explicit target name", an error under -W). tools/nb_outputs.py
# wraps only the image. Checked on a tiny notebook whose outputs are stored (no kernel).

_PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgAAIAAAUAAeIhvDMAAAAASUVORK5CYII=")


def _progress_bar(model_id):
    return nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": model_id, "version_major": 2,
                                                     "version_minor": 0},
        "text/plain": "epoch 1/2:   0%|          | 0/79 [00:00<?, ?it/s]"})


def _image():
    return nbformat.v4.new_output("display_data", data={"image/png": _PNG, "text/plain": "<Figure>"})


def _build_figure_page(tmp_path, outputs, extensions):
    """Build a one-page Sphinx project (-W -n); return (exit code, warnings, HTML)."""
    src = tmp_path / "src"
    src.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell("model = train(); plot(model)")
    cell.metadata["mystnb"] = {"figure": {"caption": "The caption.", "name": "fig-x"}}
    cell.outputs = outputs
    nb.cells = [nbformat.v4.new_markdown_cell("# Page\n\nSee {numref}`fig-x`."), cell]
    nbformat.write(nb, src / "index.ipynb")
    (src / "conf.py").write_text(
        f"import sys\nsys.path.insert(0, {str(ROOT / 'tools')!r})\n"
        f"extensions = ['myst_nb', *{extensions!r}]\n"
        "nb_execution_mode = 'off'\nnumfig = True\nexclude_patterns = ['_build']\n")
    # a separate process: the extension patches myst-nb for the process that loads it
    run = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-W", "-n", "--keep-going", "-q",
                          str(src), str(tmp_path / "html")], capture_output=True, text=True, check=False)
    html = tmp_path / "html" / "index.html"
    return run.returncode, run.stderr, html.read_text() if html.exists() else ""


def _figure_outputs():
    return [_progress_bar("a"), nbformat.v4.new_output("stream", name="stdout", text="trained\n"),
            _progress_bar("b"), _image(),
            nbformat.v4.new_output("execute_result", data={"text/plain": "[1, 2]"}, execution_count=1)]


def test_progress_bars_in_a_figure_cell_break_the_build_without_the_extension(tmp_path):
    code, warnings, _ = _build_figure_page(tmp_path, _figure_outputs(), [])
    assert code != 0 and warnings.count('Duplicate explicit target name: "fig-x"') == 3, warnings


def test_a_figure_cell_gives_one_figure_around_its_image(tmp_path):
    code, warnings, html = _build_figure_page(tmp_path, _figure_outputs(), ["nb_outputs"])
    assert code == 0, warnings
    assert html.count("<figure") == 1
    figure = html[html.index("<figure"):html.index("</figure>")]
    assert figure.count("<img") == 1 and "The caption." in figure and 'id="fig-x"' in figure
    outside = html.replace(figure, "")
    # the other outputs are still shown, outside the figure
    assert "trained" in outside and "[1, 2]" in outside and outside.count('"model_id": "') == 2


def test_a_figure_cell_with_two_images_still_fails(tmp_path):
    code, warnings, _ = _build_figure_page(tmp_path, [_image(), _progress_bar("a"), _image()],
                                           ["nb_outputs"])
    assert code != 0 and warnings.count('Duplicate explicit target name: "fig-x"') == 1, warnings


@pytest.mark.browser  # needs the built book, like the browser tests, and runs with them in CI
@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_executed_figure_cells_show_exactly_one_image(path):
    """The rule that makes one figure per figure cell, on the notebooks the build executed."""
    executed = _executed(path)
    assert figure_cells_with_wrong_image_count(nbformat.read(executed, as_version=4)) == []


def figure_cells_with_wrong_image_count(nb) -> list[str]:
    """``"cell <id>: N images"`` for each code cell with ``mystnb.figure`` metadata whose
    outputs do not hold exactly one image (used by tests/test_busy_machine.py too)."""
    bad = []
    for cell in nb.cells:
        if cell.cell_type == "code" and "figure" in cell.metadata.get("mystnb", {}):
            images = sum(1 for out in cell.get("outputs", [])
                         if any(str(m).startswith("image/") for m in out.get("data", {})))
            if images != 1:
                bad.append(f"cell {cell.get('id')}: {images} images")
    return bad


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_figure_cells_carry_alt_text_where_myst_nb_reads_it(path):
    """myst-nb 1.x reads a figure's caption and its image's alt text under the cell's ``mystnb``
    key; ``image``/``figure`` at the top of the metadata are ignored without a warning, and the
    image's alt text is then its file path (chapters 17 and 19 were written so)."""
    nb = nbformat.read(path, as_version=4)
    problems = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        misplaced = sorted({"image", "figure"} & set(cell.metadata))
        if misplaced:
            problems.append(f"cell {i}: {misplaced} at the top of the metadata, not under 'mystnb'")
        mystnb = cell.metadata.get("mystnb", {})
        if "figure" in mystnb:
            alt = mystnb.get("image", {}).get("alt", "")
            if len(alt.split()) < 8:
                problems.append(f"cell {i}: figure {mystnb['figure'].get('name')} has no real alt text")
    assert not problems, "; ".join(problems)

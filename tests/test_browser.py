"""The built HTML book, opened page by page in headless Chromium with the network cut off.

For every page of ``_build/html``: nothing is fetched from anywhere but the local server (a
blocked request means the page needs the internet), no local file is missing, no JavaScript
error reaches the console, every image loads, and every formula is typeset by the vendored
MathJax (no raw TeX left, no MathJax error). The latent-explorer chapter must show its saved
ipywidgets state (sliders and the decoded image) without a kernel.

Needs the built book (``python tools/vendor_assets.py && jupyter-book build .``) and Chromium
at ``/usr/bin/chromium`` (Debian's ``chromium`` package); skipped without them, except when
``$VAE_TUTORIAL_BROWSER_TEST=require`` (as in CI), where their absence is a failure.
``$VAE_TUTORIAL_BOOK_HTML`` points the test at another build folder.
"""
from __future__ import annotations

import functools
import http.server
import os
import re
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
HTML = Path(os.environ.get("VAE_TUTORIAL_BOOK_HTML", ROOT / "_build" / "html"))
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
WIDGET_PAGE = "book/09_latent_space.html"
REQUIRED = os.environ.get("VAE_TUTORIAL_BROWSER_TEST", "") == "require"
TIMEOUT_MS = 60_000



def _is_redirect(path: Path) -> bool:
    """Jupyter Book's index.html is only a ``<meta http-equiv="Refresh">`` to the root page."""
    return 'http-equiv="Refresh"' in path.read_text(encoding="utf-8", errors="replace")[:500]


# Pages are everything Sphinx wrote, not the vendored files under _static.
HTML_FILES = sorted(p for p in HTML.rglob("*.html")
                    if p.relative_to(HTML).parts[0] not in ("_static", "_sources")) if HTML.is_dir() else []
PAGES = [p.relative_to(HTML).as_posix() for p in HTML_FILES if not _is_redirect(p)]


def _missing(reason: str):
    if REQUIRED:
        pytest.fail(f"{reason} ($VAE_TUTORIAL_BROWSER_TEST=require)")
    pytest.skip(reason)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


@pytest.fixture(scope="module")
def site():
    """Base URL of ``HTML`` served on 127.0.0.1 from a thread."""
    if not (HTML / "index.html").is_file():
        _missing(f"the book is not built ({HTML / 'index.html'} is missing): run "
                 "`python tools/vendor_assets.py && jupyter-book build .` first")
    handler = functools.partial(_QuietHandler, directory=str(HTML))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(scope="module")
def browser(site):
    if not CHROMIUM.is_file():
        _missing(f"no Chromium at {CHROMIUM}: install it (Debian: apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed: pip install -r requirements.txt")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class PageVisit:
    """One page opened with every request outside 127.0.0.1 blocked, and what went wrong."""

    def __init__(self, browser, url: str):
        self.context = browser.new_context(service_workers="block")
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.blocked: list[str] = []
        self.missing: list[str] = []
        self.errors: list[str] = []
        self.page.route("**/*", self._route)
        self.page.on("console", lambda msg: msg.type == "error" and self.errors.append(f"console: {msg.text}"))
        self.page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))
        self.page.on("response", lambda r: r.status >= 400 and self.missing.append(f"{r.status} {r.url}"))
        self.page.on("requestfailed", self._failed)
        self.page.goto(url, wait_until="load")

    def _route(self, route):
        host = urlsplit(route.request.url).hostname
        if route.request.url.startswith(("data:", "blob:")) or host == "127.0.0.1":
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort("blockedbyclient")

    def _failed(self, request):
        if request.url not in self.blocked:
            self.missing.append(f"failed ({request.failure}) {request.url}")

    def close(self):
        self.context.close()


@pytest.fixture
def visit(browser, site):
    visits: list[PageVisit] = []

    def open_page(page: str) -> PageVisit:
        visits.append(PageVisit(browser, site + page))
        return visits[-1]

    yield open_page
    for v in visits:
        v.close()


# Runs in the page: typeset state of every formula Sphinx wrote (elements of class "math").
MATHS_STATE = """async () => {
    const maths = [...document.querySelectorAll('.math')];
    if (maths.length === 0) return {maths: 0};
    if (!(window.MathJax && MathJax.startup && MathJax.startup.promise))
        return {maths: maths.length, mathjax: false};
    await MathJax.startup.promise;
    const untypeset = maths.filter(m => !m.querySelector('mjx-container'))
                           .map(m => m.textContent.trim().slice(0, 80));
    // TeX that MathJax could not parse becomes <merror>; an undefined macro, red text
    const errors = Array.from(MathJax.startup.document.math)
        .filter(item => /<merror|mathcolor="red"/.test(MathJax.startup.toMML(item.root)))
        .map(item => item.math.trim().slice(0, 80));
    // raw TeX left in prose: outside code, scripts and typeset maths
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    const raw = [];
    const skip = 'pre, code, kbd, samp, script, style, textarea, mjx-container, .math';
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
        const t = n.textContent;
        if (/\\$\\$|\\\\\\(|\\\\\\[|\\\\[a-zA-Z]{2,}/.test(t) && !n.parentElement.closest(skip))
            raw.push(t.trim().slice(0, 80));
    }
    return {maths: maths.length, mathjax: true, untypeset, errors, raw};
}"""

# Runs in the page: wait for every image (lazy ones included), return those that did not load.
BROKEN_IMAGES = """async () => {
    const images = [...document.images];
    images.forEach(img => { img.loading = 'eager'; });
    await Promise.all(images.map(img => img.complete ? null :
        new Promise(done => { img.addEventListener('load', done); img.addEventListener('error', done); })));
    return images.filter(img => img.naturalWidth === 0)
                 .map(img => (img.currentSrc || img.src || img.alt || '?').slice(0, 120));
}"""


# Runs in the page: Markdown that was printed instead of rendered (a table's |---| row, or
# the |—| that smart quotes turn it into), outside code.
RAW_MARKDOWN = """() => {
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    const skip = 'pre, code, kbd, samp, script, style, textarea';
    const raw = [];
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
        if (/\\|\\s*:?(?:-{3,}|[\u2013\u2014]+):?\\s*\\|/.test(n.textContent) && !n.parentElement.closest(skip))
            raw.push(n.textContent.trim().slice(0, 80));
    }
    return raw;
}"""


def test_index_leads_to_the_preface(visit):
    if not PAGES:
        _missing(f"the book is not built (no HTML in {HTML})")
    v = visit("index.html")
    v.page.wait_for_url("**/book/intro.html")
    assert v.page.locator("h1").first.inner_text().startswith("Variational Autoencoders, Correctly")
    assert not (v.blocked or v.missing or v.errors), (v.blocked, v.missing, v.errors)


@pytest.mark.parametrize("page", PAGES or ["book/intro.html"])
def test_page_renders_offline(visit, page):
    v = visit(page)
    maths = v.page.evaluate(MATHS_STATE)
    broken = v.page.evaluate(BROKEN_IMAGES)
    raw_markdown = v.page.evaluate(RAW_MARKDOWN)
    problems = []
    if raw_markdown:
        problems.append(f"Markdown printed as text instead of rendered: {raw_markdown[:3]}")
    if v.blocked:
        problems.append(f"requests to the network (the page must work offline): {v.blocked}")
    if v.missing:
        problems.append(f"local files missing or failed: {v.missing}")
    if v.errors:
        problems.append(f"JavaScript errors: {v.errors}")
    if broken:
        problems.append(f"images that did not load: {broken}")
    if maths["maths"]:
        if not maths["mathjax"]:
            problems.append(f"{maths['maths']} formulas but MathJax did not load")
        else:
            if maths["untypeset"]:
                problems.append(f"formulas not typeset: {maths['untypeset'][:5]}")
            if maths["errors"]:
                problems.append(f"MathJax errors: {maths['errors'][:5]}")
            if maths["raw"]:
                problems.append(f"raw TeX in the text: {maths['raw'][:5]}")
    assert not problems, f"{page}:\n  " + "\n  ".join(problems)


NOTEBOOK_PAGES = [p for p in PAGES if re.fullmatch(r"book/(\d\d_\w+|results)\.html", p)]


@pytest.mark.parametrize("page", NOTEBOOK_PAGES or ["book/01_autoencoders.html"])
def test_chapter_shows_its_figures(visit, page):
    # Every chapter plots. A kernel that runs with a non-inline Matplotlib backend (for
    # example MPLBACKEND=Agg in the environment) executes cleanly but saves no figures.
    v = visit(page)
    # outputs and {glue:figure}s alike are written to _images/ by the build
    figures = v.page.locator("img[src*='_images/']").count()
    assert figures >= 1, f"{page} shows no figure: were the notebooks executed with Matplotlib's inline backend?"


def test_latent_explorer_shows_saved_widget(visit):
    if WIDGET_PAGE not in PAGES:
        if not PAGES:
            _missing(f"the book is not built (no HTML in {HTML})")
        pytest.fail(f"{WIDGET_PAGE} is not in the built book: the latent-explorer chapter is missing")
    v = visit(WIDGET_PAGE)
    # embed-amd.js replaces each saved widget view with live DOM once RequireJS has loaded it
    v.page.wait_for_selector(".jupyter-widgets .widget-slider", state="attached", timeout=20_000)
    sliders = v.page.locator(".widget-slider").count()
    images = v.page.evaluate("""() => [...document.querySelectorAll('.widget-image')]
        .map(img => img.complete && img.naturalWidth > 0)""")
    assert sliders >= 2, f"expected one slider per latent dimension, found {sliders}"
    assert images and all(images), f"the explorer's decoded image did not render: {images}"
    assert not v.blocked and not v.errors, f"blocked: {v.blocked}; errors: {v.errors}"

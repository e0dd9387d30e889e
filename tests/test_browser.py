r"""The built HTML book, opened page by page in headless Chromium with the network cut off.

For every page of ``_build/html``: nothing is fetched from anywhere but the local server (a
blocked request means the page needs the internet), no local file is missing, no JavaScript
error reaches the console, every image loads, and every formula is typeset by the vendored
MathJax (no raw TeX left, no MathJax error). At 1280×900 and 390×844, every page is also
checked for layout faults, each reported with the page and the element so that the content
can be fixed: literal ``$`` or ``{glue:`` in the text, display maths wider than the column
(1280 px) or with its equation number over it, inline formulas that do not fit their line,
code cells wider than the column (1280 px),
images whose alt text is a file name, ``\|`` rendered as ``|`` in tables, blank gaps left by
hidden widgets, tables cut off, machine paths in outputs, and (print media) code that is
not wrapped. The latent explorer of chapter 9 must decode in the browser, without a
kernel: moving a slider changes the image, whose pixels match ``model.decode(z)``, and
reset and random work. The explorer's HTML is also tested on its own, against PyTorch,
for every likelihood and a conditional model (needs Chromium, not the built book).

Navigation works at every width: at 390 and 768 px the ☰ button opens the table of contents
and the contents button the page's sections, and a link followed from each lands where it
points (the dialog closed); at 1280 px the ☰ button hides and shows the sidebar. Display maths
cut at the column's edge fades out on the side that scrolls (a phone draws no scroll bar), and
no formula shows a scroll bar it does not need in a Chromium that draws classic scroll bars,
as on Windows and Linux desktops (Playwright's Chromium hides them unless told otherwise).

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
CHROMIUM = Path(os.environ.get("VAE_TUTORIAL_CHROMIUM", "/usr/bin/chromium"))  # or another Chromium
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
WIDGET_PAGE = "book/09_latent_space.html"
REQUIRED = os.environ.get("VAE_TUTORIAL_BROWSER_TEST", "") == "require"
TIMEOUT_MS = 60_000



def _is_redirect(path: Path) -> bool:
    """Jupyter Book's index.html is only a ``<meta http-equiv="Refresh">`` to the root page."""
    return 'http-equiv="Refresh"' in path.read_text(encoding="utf-8", errors="replace")[:500]


# Pages are everything Sphinx wrote, not the vendored files under _static.
# The Chinese edition, when built (python tools/build_books.py), is under zh/: its pages are
# tested the same way, and against their English counterparts (test_zh_*).
HTML_FILES = sorted(p for p in HTML.rglob("*.html")
                    if not {"_static", "_sources"} & set(p.relative_to(HTML).parts)) if HTML.is_dir() else []
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
def playwright_api():
    """Playwright's synchronous API (one per thread: every browser below is launched from it)."""
    if not CHROMIUM.is_file():
        _missing(f"no Chromium at {CHROMIUM}: install it (Debian: apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed: pip install -r requirements.txt")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def chromium(playwright_api):
    browser = playwright_api.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def chromium_with_scroll_bars(playwright_api, site):
    """Chromium that draws classic scroll bars, as desktop Chrome and Edge do on Windows and
    Linux: Playwright starts headless Chromium with --hide-scrollbars, which hid every scroll
    bar under an inline formula from this test."""
    browser = playwright_api.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                             ignore_default_args=["--hide-scrollbars"])
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def browser(site, chromium):
    return chromium


class PageVisit:
    """One page opened with every request outside 127.0.0.1 blocked, and what went wrong."""

    def __init__(self, browser, url: str, viewport: tuple[int, int] = (1280, 720), html: str | None = None):
        self.context = browser.new_context(service_workers="block",
                                           viewport={"width": viewport[0], "height": viewport[1]})
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
        if html is None:
            self.page.goto(url, wait_until="load")
        else:
            self.page.set_content(html, wait_until="load")

    def _route(self, route):
        host = urlsplit(route.request.url).hostname
        if route.request.url.startswith(("data:", "blob:")) or host == "127.0.0.1":
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort("blockedbyclient")

    def _failed(self, request):
        # ERR_ABORTED: the page itself cancelled the request (a link followed while a font was
        # still loading); a missing file is a 404 response, reported by the handler above
        if request.url not in self.blocked and "ERR_ABORTED" not in (request.failure or ""):
            self.missing.append(f"failed ({request.failure}) {request.url}")

    def close(self):
        self.context.close()


def _visits(browser, site):
    visits: list[PageVisit] = []

    def open_page(page: str, viewport: tuple[int, int] = (1280, 720)) -> PageVisit:
        visits.append(PageVisit(browser, site + page, viewport))
        return visits[-1]

    return open_page, visits


@pytest.fixture
def visit(browser, site):
    open_page, visits = _visits(browser, site)
    yield open_page
    for v in visits:
        v.close()


@pytest.fixture
def visit_with_scroll_bars(chromium_with_scroll_bars, site):
    """Like ``visit``, in a Chromium that draws classic scroll bars (a Windows or Linux desktop)."""
    open_page, visits = _visits(chromium_with_scroll_bars, site)
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


def _offline_problems(v: PageVisit) -> list[str]:
    """What keeps ``v``'s page from rendering offline: requests to the network, missing files,
    JavaScript errors, images that did not load, formulas MathJax did not typeset, raw TeX or
    Markdown printed as text."""
    maths = v.page.evaluate(MATHS_STATE)
    broken = v.page.evaluate(BROKEN_IMAGES)
    raw_markdown = v.page.evaluate(RAW_MARKDOWN)
    problems = []
    if raw_markdown:
        problems.append(f"Markdown printed as text instead of rendered: {raw_markdown[:3]}")
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
    return problems


def _request_problems(v: PageVisit) -> list[str]:
    problems = []
    if v.blocked:
        problems.append(f"requests to the network (the page must work offline): {v.blocked}")
    if v.missing:
        problems.append(f"local files missing or failed: {v.missing}")
    if v.errors:
        problems.append(f"JavaScript errors: {v.errors}")
    return problems


NOTEBOOK_PAGES = [p for p in PAGES if re.fullmatch(r"(zh/)?book/(\d\d_\w+|results)\.html", p)]


# Runs in the page once MathJax is done: layout faults, each with where it is. Its argument
# says whether display maths must fit the column (at desktop width) or may scroll (phone).
LAYOUT_PROBLEMS = r"""async (mustFit) => {
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
    const out = [];
    const skip = 'pre, code, kbd, samp, script, style, textarea, mjx-container, .math, .vae-explorer';
    const article = document.querySelector('article') || document.querySelector('main') || document.body;
    const column = article.getBoundingClientRect();
    const short = t => t.replace(/\s+/g, ' ').trim().slice(0, 90);
    // where an element is: the nearest section heading before it
    const where = el => {
        let sec = el.closest('section[id]');
        while (sec && /-content$/.test(sec.id)) sec = sec.parentElement.closest('section[id]');  // sphinx-proof's
        const h = sec && sec.querySelector('h1, h2, h3, h4');
        const place = sec ? `§"${short(h ? h.textContent.replace(/#$/, '') : sec.id)}"` : 'top of page';
        const box = el.closest('.admonition, .proof, .exercise, .solution');
        const title = box && box.querySelector('.admonition-title, .proof-title, .exercise-title, .solution-title');
        return title ? `${place}, in "${short(title.textContent)}"` : place;
    };
    const tex = new Map();
    if (window.MathJax && MathJax.startup && MathJax.startup.document)
        for (const item of MathJax.startup.document.math) tex.set(item.typesetRoot, item.math);
    const texOf = el => { const c = el.querySelector('mjx-container'); return short(tex.get(c) || el.textContent); };
    const scrolls = el => /(auto|scroll)/.test(getComputedStyle(el).overflowX);
    const faded = el => [getComputedStyle(el).maskImage, getComputedStyle(el).webkitMaskImage]
        .some(m => m && m !== 'none');

    // 1. markup printed as text: a literal $ (unparsed maths) or a MyST role such as {glue:text}
    const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
        const t = n.textContent;
        if (n.parentElement.closest(skip)) continue;
        if (/\$/.test(t)) out.push(`literal "$" in the text at ${where(n.parentElement)}: "${short(t)}"`);
        if (/\{(glue|glue:\w+|numref|eq|doc|ref|cite(:\w+)?|math)\}|\{glue:/.test(t))
            out.push(`MyST role printed as text at ${where(n.parentElement)}: "${short(t)}"`);
    }
    // 2. display maths: fits its column (desktop), else scrolls in its own box; number beside it
    for (const div of article.querySelectorAll('div.math')) {
        const box = div.querySelector('mjx-container'), formula = box && box.querySelector('mjx-math');
        if (!formula) continue;
        const eqno = div.querySelector('.eqno');
        const name = `${eqno ? 'equation ' + short(eqno.textContent).replace(/#$/, '') : 'unnumbered display'} at ${where(div)}`;
        const width = formula.getBoundingClientRect().width, room = box.clientWidth;
        if (mustFit && width > room + 1)
            out.push(`display maths wider than the column (${Math.round(width)} px in ${Math.round(room)} px), ` +
                     `${name}: ${texOf(div)}`);
        else if (width > room + 1 && !scrolls(box))
            out.push(`display maths cut off without a scroll bar, ${name}: ${texOf(div)}`);
        else if (width > room + 1 && !faded(box))  // a phone shows no scroll bar: the cut looked like the end
            out.push(`display maths cut off with no cue that it scrolls (custom.js marks the box, custom.css ` +
                     `fades its cut edge), ${name}: ${texOf(div)}`);
        if (width <= room + 1 && faded(box))
            out.push(`display maths that fits is faded out at an edge, ${name}: ${texOf(div)}`);
        if (eqno) {
            const b = box.getBoundingClientRect(), e = eqno.getBoundingClientRect();
            if (e.left < b.right - 1 && e.right > b.left + 1 && e.top < b.bottom && e.bottom > b.top)
                out.push(`the number of ${name} is drawn over the formula: ${texOf(div)}`);
        }
        if (div.getBoundingClientRect().right > column.right + 1)
            out.push(`display maths sticks out of the page's column, ${name}: ${texOf(div)}`);
    }
    // 3. inline maths that does not fit its line (clipped, or only visible by scrolling it)
    for (const span of article.querySelectorAll('span.math')) {
        const c = span.querySelector('mjx-container');
        if (!c || span.closest('div.math, .vae-explorer')) continue;
        const block = span.parentElement.closest('p, li, td, th, dd, dt, figcaption, div') || article;
        // (not scrollWidth: MathJax's hidden assistive MathML inflates it)
        const r = span.getBoundingClientRect(), inner = (c.querySelector('mjx-math') || c).getBoundingClientRect();
        const cut = inner.width > r.width + 1 || r.right > block.getBoundingClientRect().right + 1;
        if (cut) out.push(`inline formula does not fit its line (${Math.round(inner.width)} px): move it to ` +
                          `display, at ${where(span)}: ${texOf(span)}`);
    }
    // 4. images whose alt text is a file name, a path or a hash (or that have none)
    for (const img of article.querySelectorAll('img')) {
        if (img.closest('.vae-explorer, .jupyter-widgets')) continue;
        const alt = img.getAttribute('alt');
        const base = (img.getAttribute('src') || '').split('/').pop();
        const fig = img.closest('figure'), number = fig && fig.querySelector('.caption-number');
        const at = `${number ? short(number.textContent) + ' ' : ''}at ${where(img)}`;
        if (alt === null || alt.trim() === '')
            out.push(`image without alt text ${at}: ${base}`);
        else if (/\.(png|jpe?g|gif|svg|webp)$/i.test(alt.trim()) || /^\S*[\\/]\S*$/.test(alt.trim()) ||
                 /^[0-9a-f]{16,}/i.test(alt.trim()) || alt.includes(base))
            out.push(`image whose alt text is a file name ${at}: "${short(alt)}"`);
    }
    // 5. a norm or KL bar in a table: Markdown tables turn \| into |, so KL(q‖p) shows as KL(q|p)
    for (const cell of article.querySelectorAll('td, th')) {
        for (const span of cell.querySelectorAll('span.math')) {
            const t = tex.get(span.querySelector('mjx-container')) || span.textContent;
            // a bare | (not \| \mid \lvert ...) in a formula with a KL: conditionals are \mid here
            if (/KL|D_\{?\\?KL/.test(t) && /(^|[^\\])\|/.test(t))
                out.push(`"\\|" printed as "|" in a table at ${where(cell)}: ${short(t)} (write \\lVert…\\rVert or ‖)`);
        }
        if (/KL\s*\([^()|$]*\|[^()|$]*\)/.test(cell.textContent) && !cell.querySelector('span.math'))
            out.push(`"‖" printed as "|" in a table at ${where(cell)}: ${short(cell.textContent)}`);
    }
    // 6. tables wider than the column with no way to scroll to their last columns
    for (const table of article.querySelectorAll('table')) {
        const r = table.getBoundingClientRect();
        let a = table.parentElement, scrollable = false;
        for (; a && a !== article; a = a.parentElement) if (scrolls(a) && a.scrollWidth > a.clientWidth) scrollable = true;
        const head = `"${short(table.querySelector('tr') ? table.querySelector('tr').textContent : '')}"`;
        if (r.right > column.right + 1 && !scrollable)
            out.push(`table cut off at ${where(table)} (${Math.round(r.width)} px wide): ${head}`);
        else if (mustFit && scrollable)  // at desktop width every column should be in view
            out.push(`table wider than the column (${Math.round(table.scrollWidth)} px): its last columns ` +
                     `need scrolling, at ${where(table)}: ${head}`);
    }
    // 7. blank gaps: output areas with nothing visible in them
    for (const o of article.querySelectorAll('.cell_output > *')) {
        const h = o.getBoundingClientRect().height;
        const media = 'img, canvas, svg, input, button, select, video, iframe';
        if (h > 16 && !o.innerText.trim() && !o.matches(media) && !o.querySelector(media))
            out.push(`blank output area ${Math.round(h)} px high at ${where(o)} (a hidden widget?)`);
    }
    // 8. code cells wider than the column (desktop only: on a phone code scrolls, as expected)
    if (mustFit) for (const pre of article.querySelectorAll('div.cell_input pre')) {
        if (pre.scrollWidth <= pre.clientWidth + 1) continue;
        const lines = pre.textContent.split('\n'), longest = lines.reduce((a, b) => a.length >= b.length ? a : b);
        out.push(`code cell wider than the column (${pre.scrollWidth} px in ${pre.clientWidth} px; ` +
                 `longest line ${longest.length} characters) at ${where(pre)}: "${short(longest)}"`);
    }
    // 9. the build machine's paths in the page (outputs included)
    const paths = article.innerText.match(/[^\s"']*(\/root\/|\/home\/[\w.-]+\/|\/Users\/[\w.-]+\/|site-packages|dist-packages|\/tmp\/ipykernel|\.pyenv\/)[^\s"']*/g) || [];
    for (const p of [...new Set(paths)].slice(0, 5)) out.push(`machine path in the page: ${short(p)}`);
    return out;
}"""

# Runs in the page with print media emulated: code blocks whose lines would be cut on paper.
UNWRAPPED_CODE_IN_PRINT = """() => [...document.querySelectorAll('article pre')]
    .filter(pre => pre.offsetParent !== null && pre.scrollWidth > pre.clientWidth + 1)
    .map(pre => pre.textContent.split('\\n').reduce((a, b) => a.length >= b.length ? a : b).trim().slice(0, 80))"""

SIZES = {"desktop": (1280, 900), "phone": (390, 844)}


@pytest.mark.parametrize("page", PAGES or ["book/intro.html"])
def test_page_at_desktop_width(visit_with_scroll_bars, page):
    """Every page, opened once at 1280×900 in a Chromium that draws classic scroll bars (as on
    Windows and Linux desktops): it renders offline; a chapter shows its figures; its layout
    is sound; no formula shows a scroll bar it does not need; a Chinese page is drawn in a CJK
    font; and its code wraps when printed. (One visit for all of these: opening each page once
    per check made this the longest phase of CI.)"""
    v = visit_with_scroll_bars(page, SIZES["desktop"])
    problems = _offline_problems(v)
    # Every chapter plots. A kernel that runs with a non-inline Matplotlib backend (for
    # example MPLBACKEND=Agg in the environment) executes cleanly but saves no figures;
    # outputs and {glue:figure}s alike are written to _images/ by the build.
    if page in NOTEBOOK_PAGES and v.page.locator("img[src*='_images/']").count() == 0:
        problems.append("no figure: were the notebooks executed with Matplotlib's inline backend?")
    problems += v.page.evaluate(LAYOUT_PROBLEMS, True)
    scroll_bars = v.page.evaluate(NEEDLESS_SCROLL_BARS)
    problems += [f"{p} (of {scroll_bars['inline']} inline formulas)" for p in scroll_bars["problems"][:10]]
    if page.startswith("zh/book/"):
        problems += _cjk_problems(v)
    v.page.emulate_media(media="print")
    problems += [f"code not wrapped when printed: {line!r}" for line in v.page.evaluate(UNWRAPPED_CODE_IN_PRINT)[:5]]
    problems += _request_problems(v)
    assert not problems, f"{page} at 1280×900: {len(problems)} problem(s)\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("page", PAGES or ["book/intro.html"])
def test_page_on_a_phone(visit, page):
    """Every page at 390×844, where display maths may scroll (with a cue) but nothing may be cut,
    and no formula scrolls that fits."""
    v = visit(page, SIZES["phone"])
    problems = v.page.evaluate(LAYOUT_PROBLEMS, False)
    # a phone draws no classic scroll bar, but a formula box can still scroll needlessly
    problems += v.page.evaluate(NEEDLESS_SCROLL_BARS)["problems"][:10] + _request_problems(v)
    assert not problems, f"{page} at 390×844: {len(problems)} problem(s)\n  " + "\n  ".join(problems)


# --- the latent explorer, decoding in the browser -----------------------------------------------

def _floats(b64: str):
    import base64

    import numpy as np
    return np.frombuffer(base64.b64decode(b64), dtype="<f4").astype(np.float64)


def _canvas_bytes(page):
    import numpy as np
    data = page.evaluate("""() => {
        const c = document.querySelector('.vae-explorer canvas');
        return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data);
    }""")
    return np.asarray(data, dtype=np.float64).reshape(-1, 4)[:, 0]  # grey: the red channel


def exercise_explorer(v, decode=None):
    """Drive the explorer on ``v``'s page; ``decode(z, y)`` gives PyTorch's pixels, if known.

    Returns the explorer's API object's state log for further checks.
    """
    import numpy as np
    page = v.page
    page.wait_for_selector(".vae-explorer[data-ready]", state="attached", timeout=20_000)
    api = "document.querySelector('.vae-explorer').vaeExplorer"
    state = lambda: page.evaluate(f"() => ({{z: {api}.z(), y: {api}.y(), pixels: {api}.pixels()}})")  # noqa: E731
    check = page.evaluate(f"() => {api}.check")
    sliders = page.locator(".vae-explorer input[type=range]")
    assert sliders.count() >= 1
    assert page.locator(".vae-explorer-warning").count() == 0, page.locator(".vae-explorer-note").inner_text()
    first, first_canvas = state(), _canvas_bytes(page)
    assert np.abs(np.asarray(first["pixels"]) - _floats(check["mean"])).max() <= 1e-3
    np.testing.assert_allclose(first_canvas, np.round(255 * np.asarray(first["pixels"])), atol=1)

    # move the first slider as a reader would (Playwright sets the range input and fires input)
    sliders.nth(check["moved"]["slider"]).fill(str(check["moved"]["value"]))
    moved, moved_canvas = state(), _canvas_bytes(page)
    assert moved["z"][0] == pytest.approx(check["moved"]["value"]) and moved["z"][1:] == first["z"][1:]
    assert np.abs(moved_canvas - first_canvas).max() > 0, "moving a slider did not change the image"
    error = np.abs(np.asarray(moved["pixels"]) - _floats(check["moved"]["mean"])).max()
    assert error <= 1e-3, f"after moving a slider the pixels differ from model.decode(z) by {error:.2e}"
    np.testing.assert_allclose(moved_canvas, np.round(255 * np.asarray(moved["pixels"])), atol=1)
    if decode is not None:
        assert np.abs(np.asarray(moved["pixels"]) - decode(moved["z"], moved["y"])).max() <= 1e-3

    page.locator(".vae-explorer-random").click()
    drawn = state()
    span = float(sliders.first.get_attribute("max"))
    assert drawn["z"] != moved["z"] and all(abs(c) <= span for c in drawn["z"][:sliders.count()])
    assert np.abs(_canvas_bytes(page) - moved_canvas).max() > 0, "random did not change the image"
    if decode is not None:
        assert np.abs(np.asarray(drawn["pixels"]) - decode(drawn["z"], drawn["y"])).max() <= 1e-3
    page.locator(".vae-explorer-random").click()
    assert state()["z"] != drawn["z"], "two random draws gave the same code"

    page.locator(".vae-explorer-reset").click()
    back = state()
    assert back["z"] == first["z"]
    np.testing.assert_array_equal(_canvas_bytes(page), first_canvas)
    return {"first": first, "moved": moved, "drawn": drawn}


EDITIONS = ["", "zh/"] if (HTML / "zh" / "index.html").is_file() else [""]


@pytest.mark.parametrize("edition", EDITIONS, ids=lambda e: e.strip("/") or "en")
def test_latent_explorer_decodes_without_a_kernel(visit, edition):
    if edition + WIDGET_PAGE not in PAGES:
        if not PAGES:
            _missing(f"the book is not built (no HTML in {HTML})")
        pytest.fail(f"{edition + WIDGET_PAGE} is not in the built book: the latent-explorer chapter is missing")
    v = visit(edition + WIDGET_PAGE)
    assert v.page.locator(".vae-explorer").count() == 1, \
        "the chapter shows no kernel-free explorer (the widget's saved state instead?)"
    log = exercise_explorer(v)
    assert len(log["first"]["z"]) >= 2
    # its labels are in the page's language
    labels = [v.page.locator(f".vae-explorer-{b}").inner_text() for b in ("reset", "random")]
    assert labels == (["重置", "随机 z ~ p(z)"] if edition == "zh/" else ["reset", "random z ~ p(z)"]), labels
    assert not v.blocked and not v.errors, f"blocked: {v.blocked}; errors: {v.errors}"


def _tiny_models():
    import torch

    import vae_tutorial as vt
    shape = (1, 8, 8)
    models = {}
    for likelihood in ("bernoulli", "continuous_bernoulli", "gaussian"):
        torch.manual_seed(0)
        models[likelihood] = vt.VAE(vt.MLPEncoder(shape, [16], 3), vt.MLPDecoder(3, [24, 16], shape),
                                    likelihood=likelihood, **({"gaussian_logvar": 0.0} if likelihood == "gaussian" else {}))
    with torch.no_grad():  # Gaussian means that are images: within [0, 1] (they are clipped for display)
        models["gaussian"].decoder.net[-1].weight.mul_(0.2)
        models["gaussian"].decoder.net[-1].bias.fill_(0.5)
    torch.manual_seed(0)
    models["conditional"] = vt.ConditionalVAE(vt.MLPEncoder(64 + 4, [16], 2), vt.MLPDecoder(2 + 4, [16], shape),
                                              num_classes=4)
    # a decoder whose weights float16 cannot carry closely enough: the page gets float32
    torch.manual_seed(0)
    models["float32"] = vt.VAE(vt.MLPEncoder(shape, [16], 3), vt.MLPDecoder(3, [256], shape))
    with torch.no_grad():
        models["float32"].decoder.net[-1].weight.mul_(40.0)
    return models


@pytest.mark.parametrize("kind", ["bernoulli", "continuous_bernoulli", "gaussian", "conditional", "float32"])
def test_explorer_html_matches_pytorch(chromium, kind):
    import json
    import re

    import numpy as np
    import torch

    from vae_tutorial.display.plots import decode_mean, to_image_array
    from vae_tutorial.display.widgets import latent_explorer
    model = _tiny_models()[kind]
    conditional = kind == "conditional"
    z0 = torch.tensor([0.4, -1.2] + ([2.5] if not conditional else []))
    explorer = latent_explorer(model, z0=z0, y=2 if conditional else None, scale=4)
    page_html = explorer._repr_mimebundle_()["text/html"]
    spec = json.loads(re.search(r'class="vae-explorer-spec">(.*?)</script>', page_html).group(1))
    assert spec["dtype"] == ("float32" if kind == "float32" else "float16")

    def decode(z, y):
        return to_image_array(decode_mean(model, torch.tensor(z)[None], y=y)).reshape(-1).astype(np.float64)

    v = PageVisit(chromium, "", viewport=(390, 844), html=f"<!doctype html><html><body>{page_html}</body></html>")
    try:
        exercise_explorer(v, decode)
        if conditional:
            v.page.locator(".vae-explorer select").select_option("3")
            got = v.page.evaluate("() => document.querySelector('.vae-explorer').vaeExplorer.pixels()")
            z = v.page.evaluate("() => document.querySelector('.vae-explorer').vaeExplorer.z()")
            assert np.abs(np.asarray(got) - decode(z, 3)).max() <= 1e-3
        assert not v.errors and not v.blocked, (v.errors, v.blocked)
    finally:
        v.close()


# --- navigation and scrolling: sidebars at every width, formulas that scroll ----------------------

NAV_PAGE = "book/04_reparameterization.html"  # a chapter with sections, maths and a next chapter
NAV_TARGET = "05_training.html"  # a chapter that the table of contents links to
NARROW = {"small phone": (320, 568), "phone": (390, 844), "tablet": (768, 1024)}  # below 992 px: the sidebars are dialogs


def _nav_page(edition: str) -> str:
    if edition + NAV_PAGE not in PAGES:
        if not PAGES:
            _missing(f"the book is not built (no HTML in {HTML})")
        pytest.fail(f"{edition + NAV_PAGE} is not in the built book")
    return edition + NAV_PAGE


def _the_visible(page, selector: str, what: str):
    buttons = page.locator(f"{selector}:visible")
    assert buttons.count() == 1, f"{buttons.count()} visible {what} ({selector}), expected one"
    return buttons.first


def _opens(page, dialog_id: str, button, what: str) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    button.click()
    try:
        page.wait_for_function(f"() => document.getElementById('{dialog_id}').open", timeout=5_000)
    except PlaywrightTimeout:
        hidden = page.locator(f".{button.get_attribute('class').split()[1]}").count() - 1
        pytest.fail(f"clicking the {what} button did not open #{dialog_id}; the page has {hidden} more "
                    "button(s) of its class, hidden (the theme binds the first: pydata-sphinx-theme 0.17 "
                    "with sphinx-book-theme 1.3 did; requirements.txt pins versions that work)")


@pytest.mark.parametrize("edition", EDITIONS, ids=lambda e: e.strip("/") or "en")
@pytest.mark.parametrize("size", NARROW)
def test_sidebars_open_and_their_links_lead_there(visit, edition, size):
    """Below 992 px: the ☰ button opens the table of contents, the contents button the page's
    sections, and a link followed from each goes where it points, with the dialog closed."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page = _nav_page(edition)
    v = visit(page, NARROW[size])
    pg = v.page
    # the header's buttons and links are all in one row inside the window (they used to stack,
    # half out of the bar and over the text)
    outside = pg.evaluate("""() => {
        const bar = document.querySelector('.bd-header-article').getBoundingClientRect();
        return [...document.querySelectorAll('.bd-header-article .btn')]
            .filter(b => b.offsetParent !== null && !b.closest('.dropdown-menu'))
            .filter(b => { const r = b.getBoundingClientRect();
                           return r.left < 0 || r.right > innerWidth || r.top < bar.top - 1 || r.bottom > bar.bottom + 1; })
            .map(b => b.getAttribute('title') || b.getAttribute('aria-label') || b.textContent.trim());
    }""")
    assert not outside, f"header buttons outside the header bar or the window at {NARROW[size][0]} px: {outside}"
    _opens(pg, "pst-primary-sidebar-modal", _the_visible(pg, ".primary-toggle", "☰ (Toggle primary sidebar)"),
           "☰ (table of contents)")
    chapter = pg.locator(f"#pst-primary-sidebar-modal a[href$='{NAV_TARGET}']:visible")
    assert chapter.count() == 1, f"the table of contents shows no link to {NAV_TARGET}"
    chapter.click()
    pg.wait_for_url(f"**/{edition}book/{NAV_TARGET}")
    assert pg.locator("article h1").first.is_visible(), f"{NAV_TARGET} shows no title"

    pg.go_back(wait_until="load")
    pg.wait_for_url(f"**/{page}")
    _opens(pg, "pst-secondary-sidebar-modal",
           _the_visible(pg, ".secondary-toggle", "contents buttons (Toggle secondary sidebar)"), "contents")
    sections = pg.locator("#pst-secondary-sidebar-modal a[href^='#']:visible")
    assert sections.count() >= 3, f"the page's contents list {sections.count()} sections"
    section = sections.nth(2)  # one well down the page: following it must scroll
    target = section.get_attribute("href")
    section.click()
    pg.wait_for_function("hash => location.hash === hash", arg=target)
    pg.wait_for_function("() => !document.getElementById('pst-secondary-sidebar-modal').open", timeout=5_000)
    # the section's top comes to rest below the sticky header, in the upper half of the screen
    # (the theme scrolls smoothly: wait for it to arrive)
    arrived = """id => { const top = document.getElementById(id).getBoundingClientRect().top;
                         const header = document.querySelector('.bd-header-article').getBoundingClientRect().bottom;
                         return top >= header - 1 && top < innerHeight / 2; }"""
    try:
        pg.wait_for_function(arrived, arg=target.removeprefix("#"), timeout=5_000)
    except PlaywrightTimeout:
        top = pg.evaluate("id => document.getElementById(id).getBoundingClientRect().top", target.removeprefix("#"))
        pytest.fail(f"after following {target} from the contents, its section starts at {top:.0f} px")
    assert not (v.blocked or v.missing or v.errors), (v.blocked, v.missing, v.errors)


@pytest.mark.parametrize("edition", EDITIONS, ids=lambda e: e.strip("/") or "en")
def test_sidebar_button_hides_and_shows_the_table_of_contents_on_desktop(visit, edition):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    v = visit(_nav_page(edition), (1280, 900))
    pg = v.page
    contents = pg.locator(f"#pst-primary-sidebar a[href$='{NAV_TARGET}']")
    assert contents.is_visible(), "the table of contents is not shown at 1280 px"
    assert pg.locator("#pst-secondary-sidebar a[href^='#']:visible").count() >= 3, "no page contents at 1280 px"
    button = _the_visible(pg, ".primary-toggle", "☰ (Toggle primary sidebar)")
    for hidden in (True, False):
        button.click()
        where = "right <= 0" if hidden else "left >= 0"  # slid out of the window, or back in
        try:
            pg.wait_for_function(f"() => document.getElementById('pst-primary-sidebar').getBoundingClientRect().{where}",
                                 timeout=5_000)
        except PlaywrightTimeout:
            pytest.fail(f"at 1280 px the ☰ button did not {'hide' if hidden else 'show'} the table of contents")
        assert not pg.evaluate("() => document.getElementById('pst-primary-sidebar-modal').open"), \
            "at 1280 px the ☰ button opened the table of contents as a dialog instead of hiding the sidebar"
    assert contents.is_visible()
    assert not v.errors, v.errors


# Runs in the page: the side(s) on which the display formula in ``box`` fades out.
FADES = """box => ({left: box.classList.contains('vae-more-left'), right: box.classList.contains('vae-more-right'),
             mask: getComputedStyle(box).maskImage || getComputedStyle(box).webkitMaskImage})"""


@pytest.mark.parametrize("edition", EDITIONS, ids=lambda e: e.strip("/") or "en")
def test_a_figure_opens_at_full_size_on_a_phone(visit, edition):
    """A phone shrinks a wide plot to a third of its size (its labels a few px high): each figure
    is a link to its image, which opens on its own at full size, where it can be zoomed."""
    page = edition + "book/02_elbo.html"
    if page not in PAGES:
        _missing(f"{page} is not built")
    v = visit(page, SIZES["phone"])
    pg = v.page
    figures = pg.evaluate("""() => [...document.querySelectorAll("article img[src*='_images/']")]
        .filter(img => !img.closest('.vae-explorer, .jupyter-widgets'))
        .map(img => ({src: img.src, link: img.closest('a') ? img.closest('a').href : null,
                      shown: img.getBoundingClientRect().width, natural: img.naturalWidth}))""")
    assert figures, f"{page} shows no figure"
    unlinked = [f["src"] for f in figures if f["link"] != f["src"]]
    assert not unlinked, f"figures that do not open at full size: {unlinked}"
    assert any(f["shown"] < f["natural"] for f in figures), "no figure is shrunk on a phone: nothing to test"
    with pg.expect_navigation():
        pg.locator("a.vae-figure-link").first.click()
    assert pg.evaluate("() => document.contentType").startswith("image/"), pg.url
    assert not v.errors, v.errors


def test_cut_display_maths_fades_on_the_side_that_scrolls(visit):
    """On a phone a display formula wider than the column fades out at its cut edge(s), and
    the fades follow the reader's scrolling; one that fits is not faded."""
    page = "book/02_elbo.html"  # Theorem 2.1, the ELBO, is cut at 390 px
    if page not in PAGES:
        _missing(f"{page} is not built")
    v = visit(page, (390, 844))
    pg = v.page
    pg.evaluate("async () => { await MathJax.startup.promise; }")
    boxes = pg.locator("article div.math mjx-container")
    cut = fits = 0
    for i in range(boxes.count()):
        box = boxes.nth(i)
        hidden = box.evaluate("b => b.scrollWidth - b.clientWidth")
        fades = box.evaluate(FADES)
        if hidden <= 1:
            fits += 1
            assert not (fades["left"] or fades["right"]) and fades["mask"] == "none", fades
            continue
        cut += 1
        assert fades["right"] and not fades["left"] and fades["mask"] != "none", \
            f"formula {i}: {hidden} px cut on the right, yet {fades}"
        box.evaluate("b => { b.scrollLeft = (b.scrollWidth - b.clientWidth) / 2; }")
        pg.wait_for_function("b => b.classList.contains('vae-more-left')", arg=box.element_handle())
        assert box.evaluate(FADES)["right"], f"formula {i}: halfway along, the right edge should still fade"
        box.evaluate("b => { b.scrollLeft = b.scrollWidth; }")
        pg.wait_for_function("b => !b.classList.contains('vae-more-right')", arg=box.element_handle())
        end = box.evaluate(FADES)
        assert end["left"] and end["mask"] != "none", f"formula {i} scrolled to its end: {end}"
    assert cut >= 1 and fits >= 1, f"{page} at 390 px: {cut} cut and {fits} fitting display formulas"


# Runs in the page: formulas that show a scroll bar they do not need. A scroll bar takes room
# from the box (offset size larger than client size plus borders); an inline formula never
# scrolls (custom.css); a display formula scrolls only when it is wider than its box.
NEEDLESS_SCROLL_BARS = r"""async () => {
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
    const short = t => t.replace(/\s+/g, ' ').trim().slice(0, 60);
    const bar = el => {
        const s = getComputedStyle(el), px = v => parseFloat(v) || 0;
        return el.offsetHeight - el.clientHeight - px(s.borderTopWidth) - px(s.borderBottomWidth) > 0.5 ||
               el.offsetWidth - el.clientWidth - px(s.borderLeftWidth) - px(s.borderRightWidth) > 0.5;
    };
    const scrollable = el => /(auto|scroll)/.test(getComputedStyle(el).overflowX) && el.scrollWidth > el.clientWidth;
    const inline = [...document.querySelectorAll('article span.math')].filter(s => !s.closest('div.math'));
    const out = [];
    for (const span of inline)
        for (const el of [span, ...span.querySelectorAll('mjx-container')])
            if (bar(el) || scrollable(el)) { out.push(`inline formula with a scroll bar: ${short(span.textContent)}`); break; }
    for (const box of document.querySelectorAll('article div.math mjx-container')) {
        const formula = box.querySelector('mjx-math');
        if (formula && formula.getBoundingClientRect().width <= box.clientWidth + 1 && (bar(box) || box.scrollWidth > box.clientWidth + 1))
            out.push(`display formula that fits but scrolls: ${short(box.textContent)}`);
    }
    return {inline: inline.length, problems: out};
}"""


# --- the Chinese edition (_build/html/zh/, python tools/build_books.py) ---------------------------

ZH_PAGES = [p for p in PAGES if p.startswith("zh/")]
EN_PAGES = [p for p in PAGES if not p.startswith("zh/")]


def _require_zh():
    if not ZH_PAGES:
        _missing(f"the Chinese edition is not built (no {HTML / 'zh'}): run python tools/build_books.py zh")


def test_zh_edition_has_every_page_of_the_english_one():
    _require_zh()
    assert sorted(p.removeprefix("zh/") for p in ZH_PAGES) == sorted(EN_PAGES)


def _switch_target(page: str) -> tuple[str | None, str | None]:
    """The href of ``page``'s link to the other edition, and the page it resolves to."""
    import posixpath

    text = (HTML / page).read_text(encoding="utf-8")
    match = re.search(r'<a href="([^"]+)" class="btn btn-sm language-switch"', text)
    if not match:
        return None, None
    return match.group(1), posixpath.normpath(posixpath.join(posixpath.dirname(page), match.group(1)))


@pytest.mark.parametrize("page", PAGES or ["book/intro.html"])
def test_language_switch_leads_to_the_same_page(page):
    """Every page links to itself in the other edition, and that page links back."""
    if not PAGES:
        _missing(f"the book is not built (no HTML in {HTML})")
    _require_zh()
    href, target = _switch_target(page)
    assert href is not None, f"{page} has no link to the other edition"
    expected = page.removeprefix("zh/") if page.startswith("zh/") else "zh/" + page
    assert target == expected and (HTML / target).is_file(), (page, href, target)
    assert _switch_target(target)[1] == page


def _count(page: str, pattern: str) -> int:
    return len(re.findall(pattern, (HTML / page).read_text(encoding="utf-8")))


@pytest.mark.parametrize("page", [p for p in ZH_PAGES if p.startswith("zh/book/")] or ["zh/book/intro.html"])
def test_zh_page_has_what_the_english_page_has(page):
    """The same figures, formulas, widgets and explorers as the English page (same
    notebooks, same outputs), in a page that says it is in Chinese."""
    _require_zh()
    english = page.removeprefix("zh/")
    html = (HTML / page).read_text(encoding="utf-8")
    assert re.search(r'<html[^>]* lang="zh-CN"', html), "html[lang] is not zh-CN"
    for what, pattern in [("figures", r'<img [^>]*src="[^"]*_images/'),
                          ("display formulas", r'<div class="math'),
                          ("widget views", r"application/vnd\.jupyter\.widget-view\+json"),
                          ("latent explorers", r'class="vae-explorer"'),
                          ("code cells", r'class="cell docutils container"')]:
        assert _count(page, pattern) == _count(english, pattern), f"{page}: not as many {what} as {english}"


# Runs in the page: the computed font of the body text, and whether Chinese characters are
# drawn as distinct glyphs in it (without a CJK font they are all the same .notdef box).
CJK_GLYPHS = """() => {
    const p = [...document.querySelectorAll('article p, article li, article h1, article h2, article .admonition-title')]
        .find(e => /[\\u4e00-\\u9fff]/.test(e.textContent));
    if (!p) return {chinese: false};
    const font = getComputedStyle(p).font;
    const canvas = document.createElement('canvas');
    canvas.width = canvas.height = 64;
    const ctx = canvas.getContext('2d');
    const draw = ch => {
        ctx.clearRect(0, 0, 64, 64);
        ctx.font = font.replace(/\\d+(\\.\\d+)?px/, '48px');
        ctx.fillStyle = '#000';
        ctx.textBaseline = 'top';
        ctx.fillText(ch, 4, 4);
        return Array.from(ctx.getImageData(0, 0, 64, 64).data).join(',');
    };
    const glyphs = ['重', '参', '数', '化', '\\uffff'].map(draw);
    return {chinese: true, font, distinct: new Set(glyphs.slice(0, 4)).size,
            tofu: glyphs.slice(0, 4).filter(g => g === glyphs[4]).length,
            inked: glyphs.slice(0, 4).filter(g => /[1-9]/.test(g)).length};
}"""


def test_a_cjk_font_is_installed():
    import shutil
    import subprocess

    if shutil.which("fc-list") is None:
        pytest.skip("no fontconfig here")
    fonts = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True).stdout
    assert fonts.strip(), "no font covers Chinese: install one (Debian: fonts-noto-cjk; CI does)"


def _cjk_problems(v: PageVisit) -> list[str]:
    """A Chinese page that does not say it is Chinese, or draws its Chinese text as boxes."""
    problems = []
    if v.page.evaluate("() => document.documentElement.lang") != "zh-CN":
        problems.append("html[lang] is not zh-CN")
    glyphs = v.page.evaluate(CJK_GLYPHS)
    if not glyphs["chinese"]:
        problems.append("no Chinese text")
    elif not (glyphs["inked"] == 4 and glyphs["distinct"] == 4 and glyphs["tofu"] == 0):
        problems.append(f"Chinese characters drawn as boxes in {glyphs['font']!r}: {glyphs}")
    # labels that sphinx-togglebutton's JavaScript sets, out of reach of any catalog (custom.js)
    english = v.page.evaluate("""() => [...document.querySelectorAll('button.toggle-button')]
        .map(b => b.getAttribute('aria-label') || '').filter(l => /[A-Za-z]/.test(l))""")
    if english:
        problems.append(f"toggle buttons labelled in English: {sorted(set(english))}")
    return problems


def test_zh_search_finds_reparameterisation_in_chapter_4(visit):
    _require_zh()
    v = visit("zh/search.html?q=%E9%87%8D%E5%8F%82%E6%95%B0%E5%8C%96")  # 重参数化
    v.page.wait_for_function("() => document.querySelectorAll('#search-results li a').length > 0")
    links = v.page.eval_on_selector_all("#search-results li a", "as => as.map(a => a.getAttribute('href'))")
    assert any("book/04_reparameterization" in (href or "") for href in links), links
    assert not v.errors, v.errors

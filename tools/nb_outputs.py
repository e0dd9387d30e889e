"""Sphinx extension: tidy the executed notebooks' outputs for the HTML book.

Three things, all done while or right after myst-nb parses (and executes) a notebook, so that
Jupyter and Colab keep the outputs exactly as the kernel made them:

* **One figure per figure cell.** myst-nb wraps *every* display output of a cell that has
  ``mystnb.figure`` metadata in its own figure node with the cell's caption and name. A
  figure cell that also shows progress bars (``fit`` inside the cell, run without ``CI``) or
  any other non-image display (a glued value, a repr) would then give several figures with
  the same name: a "Duplicate explicit target name" warning each, which ``-W`` makes an
  error, and captions under progress bars. Here only the cell's image outputs (MIME types
  ``image/*``) are wrapped; its other outputs are rendered as ordinary outputs beside the
  figure. A figure cell must still show exactly one image: a second one keeps its own
  figure and its duplicate-name warning.

* **Hidden progress bars.** A closed ``tqdm.notebook`` bar stays in the saved widget state
  with ``layout.visibility = "hidden"`` (tqdm >= 4.6x hides it rather than removing it), and
  the widget manager draws it as an invisible box that still takes up its height: blank
  gaps in the page. Widget outputs whose model is hidden (its layout has ``visibility:
  hidden`` or ``display: none``), or is missing from the saved state, are dropped; a bar
  that is still shown (``leave=True``) stays. Interactive runs are unaffected.
* **Machine paths.** A warning printed by a library names the file that raised it, e.g.
  ``/home/me/.venv/lib/python3.11/site-packages/sklearn/...py:470: ConvergenceWarning``.
  In text outputs (stdout, stderr, ``text/plain``), such paths are shortened to what
  follows ``site-packages/`` (or the standard library's ``pythonX.Y/``), the book's own
  folder to a relative path, IPython's temporary cell files to ``<cell>``, and the home
  folder to ``~``. The warning itself stays visible: fix its cause in the chapter.

Loaded from ``_config.yml`` (``sphinx.local_extensions``).
"""
from __future__ import annotations

import json
import os
import re

from docutils import nodes
from sphinx.errors import ExtensionError

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
DISPLAY_OUTPUTS = ("display_data", "execute_result")
_MODEL_ID = re.compile(r'"model_id"\s*:\s*"([^"]+)"')

_PATH_RULES = [
    # a site-packages or dist-packages folder, anywhere (virtual environments, pyenv, conda, system)
    (re.compile(r"(?:[A-Za-z]:)?[\\/][^\s:'\"<>]*?[\\/](?:site|dist)-packages[\\/]"), ""),
    # the standard library: .../lib/python3.11/warnings.py -> python3.11/warnings.py
    (re.compile(r"(?:[A-Za-z]:)?[\\/][^\s:'\"<>]*?[\\/](python3\.\d+[\\/])"), r"\1"),
    # IPython's file for a cell: /tmp/ipykernel_1234/567.py
    (re.compile(r"[^\s:'\"<>]*[\\/]ipykernel_\d+[\\/]\d+\.py"), "<cell>"),
]


def scrub_paths(text: str, roots: tuple[str, ...] = ()) -> str:
    """``text`` with the build machine's paths shortened (see the module docstring).

    ``roots`` are folders (the book's source folder) replaced by nothing, leaving paths
    relative to them.
    """
    for root in sorted(roots, key=len, reverse=True):
        if root and len(root) > 1:
            text = text.replace(root.rstrip("/\\") + os.sep, "")
    for pattern, replacement in _PATH_RULES:
        text = pattern.sub(replacement, text)
    home = os.path.expanduser("~")
    if home and home not in ("/", "~"):
        text = text.replace(home.rstrip("/\\") + os.sep, "~" + os.sep)
    return text


def _widget_state(env, docname: str) -> dict | None:
    js_files = (getattr(env, "nb_metadata", {}).get(docname) or {}).get("js_files") or {}
    entry = js_files.get("ipywidgets_state")
    if not entry:
        return None
    try:
        return json.loads(entry[1]["body"].replace("<\\/", "</")).get("state", {})
    except (KeyError, TypeError, ValueError):
        return None


def _is_hidden(model_id: str, state: dict) -> bool:
    model = state.get(model_id)
    if model is None:
        return True  # the view has nothing to show
    layout_ref = (model.get("state") or {}).get("layout", "")
    layout = state.get(layout_ref.removeprefix("IPY_MODEL_"), {}) if isinstance(layout_ref, str) else {}
    layout_state = layout.get("state") or {}
    return layout_state.get("visibility") == "hidden" or layout_state.get("display") == "none"


def _drop_hidden_widgets(app, doctree, state: dict) -> int:
    dropped = 0
    for bundle in list(doctree.findall(lambda n: isinstance(n, nodes.container)
                                       and n.get("nb_element") == "mime_bundle")):
        views = [c for c in bundle.children if c.get("mime_type") == WIDGET_VIEW]
        if not views:
            continue
        match = _MODEL_ID.search(views[0].astext())
        if not match or not _is_hidden(match.group(1), state):
            continue
        if any(c.get("mime_type") not in (WIDGET_VIEW, "text/plain") for c in bundle.children):
            continue  # it has another rendering (HTML, an image): keep it
        parent = bundle.parent
        parent.remove(bundle)
        dropped += 1
        # an output container left empty would still take up its padding
        while parent is not None and isinstance(parent, nodes.container) and not parent.children \
                and parent.parent is not None:
            grandparent = parent.parent
            grandparent.remove(parent)
            parent = grandparent
    return dropped


def _scrub_outputs(app, doctree) -> None:
    roots = (str(app.srcdir), os.path.realpath(str(app.srcdir)))
    for block in doctree.findall(nodes.literal_block):
        classes = set(block.get("classes", []))
        if "output" not in classes:
            continue
        text = block.astext()
        clean = scrub_paths(text, roots)
        if clean != text:
            block.children = [nodes.Text(clean)]
            block.rawsource = clean


def _on_doctree_read(app, doctree) -> None:
    docname = app.env.docname
    state = _widget_state(app.env, docname)
    if state is not None:
        _drop_hidden_widgets(app, doctree, state)
    _scrub_outputs(app, doctree)


def is_image_output(output) -> bool:
    """Whether a notebook output is a display of an image (a MIME type ``image/*``)."""
    return output.get("output_type") in DISPLAY_OUTPUTS and any(
        str(mime).startswith("image/") for mime in (output.get("data") or {}))


def _figures_only_around_images() -> None:
    """Make myst-nb's figure options apply to a cell's image outputs only.

    myst-nb 1.x renders a cell's outputs in ``SphinxNbRenderer._render_nb_cell_code_outputs``
    and, for each display output in turn, enters ``create_figure_context(self, options,
    line)``. The wrapper of the first records, in order, which display outputs are images;
    the wrapper of the second takes the next entry and passes no options (no figure) for
    an output that is not an image. Anything else is unchanged.
    """
    from myst_nb import sphinx_ as nb_sphinx

    renderer = nb_sphinx.SphinxNbRenderer
    if getattr(renderer, "_figures_only_around_images", False):
        return
    missing = [name for owner, name in ((renderer, "_render_nb_cell_code_outputs"),
                                        (nb_sphinx, "create_figure_context"))
               if not hasattr(owner, name)]
    if missing:
        raise ExtensionError(f"tools/nb_outputs.py: myst_nb.sphinx_ has no {', '.join(missing)}; this "
                             "myst-nb renders outputs differently: update the figure patch")
    render_outputs = renderer._render_nb_cell_code_outputs
    figure_context = nb_sphinx.create_figure_context

    def _render_outputs(self, token, outputs):
        self._nb_outputs_images = [is_image_output(o) for o in outputs
                                   if o.get("output_type") in DISPLAY_OUTPUTS]
        try:
            return render_outputs(self, token, outputs)
        finally:
            self._nb_outputs_images = None

    def _figure_context(self, figure_options, line):
        images = getattr(self, "_nb_outputs_images", None)
        if images and not images.pop(0):
            figure_options = None
        return figure_context(self, figure_options, line)

    renderer._render_nb_cell_code_outputs = _render_outputs
    nb_sphinx.create_figure_context = _figure_context
    renderer._figures_only_around_images = True


def setup(app):
    _figures_only_around_images()
    app.connect("doctree-read", _on_doctree_read)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

"""Sphinx extension: a page loads only the scripts and styles it uses (issue 20, "Weight").

Three came with every page, or with a page that never used them:

* **The ipywidgets manager.** myst-nb adds the saved widget state, RequireJS, the book's
  ``widgets-setup.js`` and the HTML manager (``embed-amd.js``, 3.6 MB) to every page whose
  notebook has saved widget state, whether or not an output shows a widget. The book shows
  the latent explorer of chapter 9 as HTML that decodes in the browser
  (``nb_mime_priority_overrides``), and drops hidden progress bars (tools/nb_outputs.py), so
  a page may carry widget state but render no widget view. Here, a page whose body has no
  widget view (``application/vnd.jupyter.widget-view+json``) gets none of those scripts. A
  page that does render a widget keeps them all.

* **Font Awesome's JavaScript.** pydata-sphinx-theme loads ``scripts/fontawesome.js``
  (1.5 MB: every Font Awesome icon as SVG data) on every page, "so that users can add custom
  icons" from JavaScript. Its stylesheet already draws every Font Awesome icon with the
  webfonts (``.fa-solid``, ``.fa-bars:before`` ...), and the book adds no custom icon, so the
  icons show the same without it. The theme writes that ``<script>`` from a template macro
  (``static/webpack-macros.html``), not through Sphinx's list of scripts; this extension
  makes a copy of the theme's macro file with that one tag removed, in the build's doctree
  folder, and puts it first on the template path. The copy is made from the installed theme
  at every build, so it follows the theme's version; if the tag is not found there, the
  build stops with an error naming this file (the theme changed: check the icons and update
  it).

* **sphinx-design.** Jupyter Book always loads sphinx-design, whose stylesheet (55 kB) and tab
  script come with every page. A page whose body uses none of its components (no ``sd-``
  class) gets neither.

MathJax is trimmed in ``_config.yml`` (``mathjax_path``/``mathjax3_config``), not here.
Loaded from ``_config.yml`` (``sphinx.local_extensions``); tests/test_page_weight.py checks
the result on the built book.
"""
from __future__ import annotations

import re
from pathlib import Path

from sphinx.errors import ExtensionError

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
SPHINX_DESIGN_FILES = ("sphinx-design.min.css", "design-tabs.js")
_SPHINX_DESIGN_CLASS = re.compile(r"""class=["'][^"']*\bsd-""")
MACROS = "static/webpack-macros.html"  # the template name pydata-sphinx-theme imports
_FONTAWESOME_TAG = re.compile(
    r"[ \t]*(?:<!--[^>]*custom icons[^>]*-->\s*)?"
    r"<script src=\"\{\{ pathto\('_static/scripts/fontawesome\.js', 1\) \}\}[^\"]*\"></script>[ \t]*\n?")


def _filename(asset) -> str:
    return str(getattr(asset, "filename", asset) or "")


def _is_widget_asset(asset, manager_files) -> bool:
    attributes = getattr(asset, "attributes", None) or {}
    # Sphinx names a local script by its path under the output folder: _static/<path>
    return attributes.get("type") == WIDGET_STATE or _filename(asset).removeprefix("_static/") in manager_files


def _drop_unused_widget_manager(app, pagename, templatename, context, doctree) -> None:
    if WIDGET_VIEW in (context.get("body") or ""):
        return  # a widget is drawn from its saved state: it needs the manager
    manager_files = set(getattr(app.config, "nb_ipywidgets_js", None) or {})
    if "script_files" in context:
        context["script_files"][:] = [asset for asset in context["script_files"]
                                      if not _is_widget_asset(asset, manager_files)]


def _drop_unused_sphinx_design(app, pagename, templatename, context, doctree) -> None:
    if _SPHINX_DESIGN_CLASS.search(context.get("body") or ""):
        return
    for key in ("script_files", "css_files"):
        if key in context:
            context[key][:] = [asset for asset in context[key]
                               if _filename(asset).rsplit("/", 1)[-1] not in SPHINX_DESIGN_FILES]


def theme_macros() -> Path | None:
    """The installed pydata-sphinx-theme's ``static/webpack-macros.html`` (None: not installed)."""
    try:
        import pydata_sphinx_theme
    except ImportError:
        return None
    path = Path(pydata_sphinx_theme.__file__).parent / "theme" / "pydata_sphinx_theme" / MACROS
    return path if path.is_file() else None


def macros_without_fontawesome(source: str) -> str:
    """``source`` (the theme's macro file) without the tag that loads ``fontawesome.js``."""
    stripped, count = _FONTAWESOME_TAG.subn("", source)
    if count != 1:
        raise ExtensionError(
            f"tools/page_assets.py: found {count} fontawesome.js tags, not 1, in pydata-sphinx-theme's "
            f"{MACROS}; the theme changed how it loads Font Awesome: check that the icons still show "
            "without the script, then update the pattern")
    return stripped


def _without_fontawesome_js(app, config) -> None:
    source = theme_macros()
    if source is None:
        return  # another theme: nothing to remove
    folder = Path(app.doctreedir) / "page_assets_templates"
    target = folder / MACROS
    target.parent.mkdir(parents=True, exist_ok=True)
    text = macros_without_fontawesome(source.read_text(encoding="utf-8"))
    if not target.is_file() or target.read_text(encoding="utf-8") != text:
        target.write_text(text, encoding="utf-8")
    config.templates_path.insert(0, str(folder))


def setup(app):
    app.connect("config-inited", _without_fontawesome_js)
    # after myst-nb (500) has added a page's widget scripts
    app.connect("html-page-context", _drop_unused_widget_manager, priority=900)
    app.connect("html-page-context", _drop_unused_sphinx_design, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

"""Sphinx extension: keep sphinx-thebe's scripts off the pages of a book that does not use thebe.

Jupyter Book 1.x always loads sphinx-thebe, and sphinx-thebe 0.3.1 adds its configuration as an
inline ``<script>`` on every page, declaring ``const THEBE_JS_URL`` (a CDN address). The build
emits that script twice, so every page logs "Identifier 'THEBE_JS_URL' has already been
declared". The book turns thebe off (``launch_buttons.thebe: false``; chapters launch in Colab
or Binder instead), so this removes thebe's scripts and stylesheet from every page. With thebe
on, it does nothing. Loaded from ``_config.yml`` (``sphinx.local_extensions``).
"""
from __future__ import annotations


def _thebe_on(app) -> bool:
    launch = (app.config.html_theme_options or {}).get("launch_buttons") or {}
    thebe_config = app.config.thebe_config if "thebe_config" in app.config else {}
    return bool(launch.get("thebe")) or bool((thebe_config or {}).get("always_load"))


def _is_thebe(asset) -> bool:
    filename = str(getattr(asset, "filename", asset) or "")
    body = (getattr(asset, "attributes", None) or {}).get("body", "")
    return "sphinx-thebe" in filename or "THEBE_JS_URL" in body


def _drop_thebe(app, pagename, templatename, context, doctree):
    if _thebe_on(app):
        return
    for key in ("script_files", "css_files"):
        if key in context:
            context[key][:] = [asset for asset in context[key] if not _is_thebe(asset)]


def setup(app):
    app.connect("html-page-context", _drop_thebe, priority=900)  # after the other extensions add theirs
    return {"parallel_read_safe": True, "parallel_write_safe": True}

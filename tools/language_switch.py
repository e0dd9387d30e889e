"""Sphinx extension: every page links to the same page in the other edition.

The English book is ``_build/html/`` and the Chinese one ``_build/html/zh/`` (see
``tools/build_books.py``), with the same page names, so the other edition's page is found by
a relative URL: from ``book/04_reparameterization.html``, ``../zh/book/04_reparameterization.html``
(English to Chinese, ``prefix: zh/``) and back with ``prefix: ../``. The link is a button in
the article header, next to the theme's own buttons (on narrow screens too), and the page's
``<head>`` names it as ``<link rel="alternate" hreflang=...>``.

Configured by ``language_switch`` in the Sphinx config: ``{prefix, label, lang, title}``, e.g.
``{prefix: "zh/", label: "中文", lang: "zh-CN", title: "本页的中文版"}``; empty: no link.
Loaded from ``_config.yml`` (``sphinx.local_extensions``).
"""
from __future__ import annotations

from html import escape
from pathlib import Path

TEMPLATE = "language-switch.html"


def other_edition_url(pagename: str, prefix: str) -> str:
    """The relative URL of ``pagename`` in the edition at ``prefix`` (relative to this root)."""
    return "../" * pagename.count("/") + prefix + pagename + ".html"


def _config_inited(app, config) -> None:
    if not config.language_switch:
        return
    config.templates_path.append(str(Path(__file__).parent / "templates"))
    options = config.html_theme_options
    end = options.get("article_header_end") or ["article-header-buttons.html"]
    if isinstance(end, str):
        end = [item.strip() for item in end.split(",") if item.strip()]
    if TEMPLATE not in end:
        options["article_header_end"] = [TEMPLATE, *end]


def _page_context(app, pagename, templatename, context, doctree) -> None:
    switch = app.config.language_switch
    if not switch:
        return
    url = other_edition_url(pagename, switch["prefix"])
    context["language_switch_url"] = url
    context["language_switch_label"] = switch["label"]
    context["language_switch_lang"] = switch["lang"]
    context["language_switch_title"] = switch.get("title", switch["label"])
    link = f'<link rel="alternate" hreflang="{escape(switch["lang"])}" href="{escape(url)}" />\n'
    context["metatags"] = context.get("metatags", "") + link


def setup(app):
    app.add_config_value("language_switch", {}, "html", types=[dict])
    app.connect("config-inited", _config_inited)
    app.connect("html-page-context", _page_context)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

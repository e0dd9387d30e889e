"""Sphinx extension: the theme's tooltips and labels in the edition's language.

Some attributes on every page never reach gettext as the edition's catalogs see them:
sphinx-book-theme writes English literals into its templates (``title="Toggle primary
sidebar"``), looks up others in its own catalog first (whose zh_CN entry for "Print to PDF"
is the Taiwanese 列印成 PDF), and Sphinx's "Link to this heading" is missing from older zh_CN
catalogs. After an HTML build in a language other than English, every ``title``,
``aria-label``, ``placeholder`` and ``data-bs-title`` attribute whose value is a message of the
edition's ``sphinx.mo`` or ``booktheme.mo`` (``locales/<lang>/LC_MESSAGES``) is replaced by
its translation. The catalogs stay the one place where these strings are translated.
"""
from __future__ import annotations

import gettext
import html
import re
from pathlib import Path

CATALOGS = ("sphinx", "booktheme")
ATTRIBUTE = re.compile(r'(\s(?:title|aria-label|placeholder|data-bs-title)=")([^"<>]*)(")')


def translations(srcdir: Path, locale_dirs, language: str) -> gettext.NullTranslations:
    """The edition's theme catalogs, ``sphinx.mo`` first, as one chain of translations."""
    chain = gettext.NullTranslations()
    for folder in locale_dirs:
        for name in CATALOGS:
            po = Path(srcdir, folder, language, "LC_MESSAGES", f"{name}.po")
            mo = po.with_suffix(".mo")
            if po.is_file() and (not mo.is_file() or mo.stat().st_mtime < po.stat().st_mtime):
                _compile(po, mo)  # the .mo files are build products, not committed
            if mo.is_file():
                with mo.open("rb") as f:
                    catalog = gettext.GNUTranslations(f)
                catalog.add_fallback(chain)
                chain = catalog
    return chain


def _compile(po: Path, mo: Path) -> None:
    from babel.messages.mofile import write_mo  # Sphinx's own dependency for catalogs
    from babel.messages.pofile import read_po

    with po.open("rb") as f:
        catalog = read_po(f)
    tmp = mo.with_suffix(".mo.tmp")
    with tmp.open("wb") as f:
        write_mo(f, catalog)
    tmp.replace(mo)


def translate_attributes(text: str, catalog: gettext.NullTranslations) -> str:
    """``text`` (a page's HTML) with every translatable attribute value translated."""
    def one(m):
        value = html.unescape(m[2])
        translated = catalog.gettext(value) if value.strip() else value
        return m[0] if translated == value else m[1] + html.escape(translated, quote=True) + m[3]

    return ATTRIBUTE.sub(one, text)


def _build_finished(app, exception) -> None:
    language = app.config.language
    if exception is not None or app.builder.format != "html" or language in (None, "", "en"):
        return
    catalog = translations(Path(app.srcdir), app.config.locale_dirs, language)
    for page in Path(app.outdir).rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        new = translate_attributes(text, catalog)
        if new != text:
            page.write_text(new, encoding="utf-8")


def setup(app):
    app.connect("build-finished", _build_finished)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

r"""Sphinx extension: what the translated editions translate, and checks that they do.

The Chinese edition is the same sources built with ``language: zh_CN``; Sphinx replaces each
prose message by its translation from ``locales/<lang>/LC_MESSAGES/<docname>.po``
(``gettext_compact: false``: one catalog per page). This extension decides which text of a
page is a message, in both the gettext extraction and the translated build:

* **Cell outputs are not messages.** Text a code cell prints or displays (tables of results,
  numbers, warnings) changes whenever the numbers do, and is the same in every edition:
  everything inside a myst-nb ``cell_code_output`` is marked non-translatable, except figure
  captions and legends (from the cell's ``mystnb`` metadata) and image alt text, which are
  prose.
* **Docstrings are not messages.** The API reference is generated from the package's
  docstrings, which document the code and stay in English; nodes whose source is a docstring
  (``...py:docstring of ...``) and everything inside an object's description (signature,
  docstring, field names, which Sphinx's own catalog translates) are marked
  non-translatable. The API page's own prose is translated.
* **Glue in translated prose.** A paragraph with ``{glue:text}`key``` is re-parsed from its
  translation after the notebook has been read, when myst-nb no longer holds the notebook's
  glue data, so the role would fail with "No key found". In translated text of a notebook
  the role becomes a reference to the same page's glue cache, which myst-nb resolves later
  (``jupyter_execute/<doc>.glue.json``): the same number, formatted the same way.
* **Alt text is a message.** A figure's alt text (``mystnb: image: alt:`` in a cell's
  metadata) is prose, read by screen readers and shown when the image does not load. myst-nb
  puts the image in a *mime bundle* of all the output's formats and picks one per builder in
  a post-transform; the gettext builder picks ``text/plain``, so the image and its alt text
  were gone before the catalog was written. `ExposeAltText` copies each alt-text image out of
  its bundle for the gettext builder; in a translated build Sphinx's Locale translates the
  alt text while the image is still in its bundle, and `CheckTranslated` checks it like any
  other message. (``gettext_additional_targets: [image]`` is not used: it would also make
  every output image's URI, a hash of its pixels, a message.)
* **Every message is translated.** In a build whose language is not English, each message
  of each page is looked up in its catalog before Sphinx translates it. A message with no
  translation (missing, empty or fuzzy) is a warning, ``untranslated message``, so the
  Chinese build under ``-W`` fails when English prose changed without its translation. The
  looked-up messages are written to ``<outdir>/../i18n-messages.json`` ({docname: [msgid]}),
  which ``tests/test_i18n.py`` compares with the committed catalogs.
* **Display maths is translated as it is.** A translated display equation (only its
  ``\text{}`` labels differ) is a literal-type message (``math_block``, like a code block).
  Sphinx's Locale transform re-parses such a translation as reStructuredText literal-block
  notation, ``'::\n\n' + indent(msgstr)``, with the page's own parser; MyST reads that as a
  paragraph "::", whose text then replaces the formula, so the equation rendered as
  ``\[::\]``. Here the translation replaces the node's text directly before Locale runs
  (label, number and environment unchanged), and the node is marked translated, so Locale
  leaves it alone. Untranslated display maths (msgstr == msgid) is unaffected either way.
* **The theme's words.** The theme's own catalogs lack some strings ("Color mode", "System
  Settings", "Repository", "Open issue") and translate others as the English ("© Copyright
  …"). ``locales/<lang>/LC_MESSAGES/sphinx.po`` (Sphinx's domain, which
  pydata-sphinx-theme's templates use) is found through ``locale_dirs`` and comes before
  every other catalog of that domain; ``booktheme.po`` (sphinx-book-theme's buttons) is
  compiled here and registered as that domain's catalog (`UI_CATALOGS`). The search field's
  placeholder, which Jupyter Book sets in English (``search_bar_text``), is translated with
  it.
* **Author–year citations in the page's language.** ``bibtex_reference_style:
  author_year_zh`` is sphinxcontrib-bibtex's ``author_year`` with Chinese joining words:
  「Sønderby 等 [2016]」 and 「Kingma 和 Welling [2014]」 instead of *et al.* and *and*
  (`AuthorYearChinese`). The bibliography's entries stay as they are.
* **The page's language.** Sphinx writes ``<html lang="zh_CN">``; HTML wants a BCP 47 tag,
  ``zh-CN``. A tag ``language_<lang>`` (e.g. ``language_zh_CN``) is set for ``{only}``
  blocks that one edition alone shows.

Loaded from ``_config.yml`` (``sphinx.local_extensions``).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from docutils import nodes
from sphinx import addnodes
from sphinx.locale import init as init_locale
from sphinx.transforms import SphinxTransform
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util import logging
from sphinx.util.i18n import docname_to_domain
from sphinx.util.nodes import LITERAL_TYPE_NODES, extract_messages

logger = logging.getLogger(__name__)

DOCSTRING_SOURCE = ":docstring of "
_PROSE_IN_OUTPUTS = (nodes.caption, nodes.legend)


def _in_substitution_definition(node: nodes.Node) -> bool:
    while node is not None:
        if isinstance(node, nodes.substitution_definition):
            return True
        node = node.parent
    return False


_CJK_ONLY = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef\s\d.:]+")


def is_generated_label(msgid: str) -> bool:
    """A message that is only Chinese was written by an extension in the build's language
    (sphinx-exercise titles an exercise 练习 and its solution 解答 from its own catalog):
    the English sources' messages all have Latin letters, maths or code."""
    # (at least one Chinese character: a table cell "8" of the English is a message)
    return bool(_CJK_ONLY.fullmatch(msgid)) and re.search(r"[\u4e00-\u9fff]", msgid) is not None


def _is_docstring(node: nodes.Node) -> bool:
    return DOCSTRING_SOURCE in (getattr(node, "source", None) or "")


def _in_prose_of_output(node: nodes.Node) -> bool:
    parent = node
    while parent is not None:
        if isinstance(parent, _PROSE_IN_OUTPUTS):
            return True
        if isinstance(parent, nodes.container) and parent.get("nb_element") == "cell_code_output":
            return False
        parent = parent.parent
    return False


class MarkUntranslatable(SphinxTransform):
    """Cell outputs (but not captions) and docstrings are not messages (see the module)."""

    default_priority = 15  # before Locale (20), which reads the same marks

    def apply(self, **kwargs) -> None:
        for output in self.document.findall(
            lambda n: isinstance(n, nodes.container) and n.get("nb_element") == "cell_code_output"
        ):
            for node in output.findall(nodes.TextElement):
                if not _in_prose_of_output(node):
                    node["translatable"] = False
        for node in self.document.findall(nodes.TextElement):
            if _is_docstring(node):
                node["translatable"] = False
                # (and says so in the HTML: tests/test_i18n.py counts English words outside it)
                if isinstance(node, (nodes.paragraph, nodes.title, nodes.rubric, nodes.term, nodes.line)):
                    node["classes"] = [*node.get("classes", []), "docstring"]
        # an object's description (signature, docstring, and field names such as
        # "Parameters", which Sphinx's own catalog already translates)
        for desc in self.document.findall(addnodes.desc):
            for node in desc.findall(nodes.TextElement):
                node["translatable"] = False


def _translating(config) -> bool:
    return bool(config.language) and config.language != "en" and bool(config.locale_dirs)


def _catalog(transform) -> dict[str, str]:
    """The page's translations, as Sphinx's Locale transform finds them (fuzzy ones excluded)."""
    domain = docname_to_domain(transform.env.docname, transform.config.gettext_compact)
    dirs = [Path(transform.env.srcdir, d) for d in transform.config.locale_dirs]
    catalog, has_catalog = init_locale(dirs, transform.config.language, domain)
    return dict(getattr(catalog, "_catalog", {})) if has_catalog else {}


def _check(transform, node, msgid: str, translations: dict[str, str]) -> str | None:
    """Record ``msgid`` as a message of the page; warn if it has no translation."""
    store = transform.env.__dict__.setdefault("nb_i18n_messages", {})
    store.setdefault(transform.env.docname, []).append(msgid)
    msgstr = translations.get(msgid)
    if not msgstr:
        domain = docname_to_domain(transform.env.docname, transform.config.gettext_compact)
        logger.warning(
            "untranslated message (%s.po): %r",
            domain,
            msgid if len(msgid) < 70 else msgid[:67] + "...",
            location=node,
            type="i18n",
            subtype="untranslated",
        )
    return msgstr


def translate_literal(node: nodes.Element, msgstr: str) -> None:
    r"""Give a literal-type node (display maths, a code block) the text ``msgstr``, as it is.

    Sphinx's Locale transform would re-parse ``'::\n\n' + indent(msgstr)``, which only
    reStructuredText reads as a literal block; under MyST it is a paragraph "::" and the
    node's text became "::" (see the module). The node keeps its attributes (an equation's
    label and number, an amsmath environment's ``nowrap``), and is no longer translatable,
    so Locale does not translate it a second time.
    """
    node[:] = [nodes.Text(msgstr)]
    node.rawsource = msgstr
    node["translatable"] = False
    node["translated"] = True


class CheckTranslated(SphinxTransform):
    """Record every message of the page and warn about those without a translation; translate
    display maths (literal-type messages) directly, which Sphinx's Locale would break."""

    default_priority = 19  # after MarkUntranslatable, before Locale translates them

    def apply(self, **kwargs) -> None:
        if not _translating(self.config) or self.app.builder.name == "gettext":
            return
        self.env.__dict__.setdefault("nb_i18n_messages", {})[self.env.docname] = []
        translations = _catalog(self)
        literals = []
        for node, msgid in list(extract_messages(self.document)):
            if isinstance(node, addnodes.toctree) or not msgid.strip():
                continue  # toctrees: TranslateToctrees
            if isinstance(node, nodes.image) and msgid != node.get("alt"):
                continue  # an image's URI (gettext_additional_targets: [image]) is not prose
            if _in_substitution_definition(node):
                continue  # as the gettext builder
            if is_generated_label(msgid):
                continue  # e.g. sphinx-exercise's "练习": an extension's own translation
            msgstr = _check(self, node, msgid, translations)
            if isinstance(node, LITERAL_TYPE_NODES) and msgstr and msgstr != msgid:
                literals.append((node, msgstr))
        for node, msgstr in literals:
            translate_literal(node, msgstr)


class ExposeAltText(SphinxPostTransform):
    """For the gettext builder: a copy of every alt-text image of a cell output, outside its
    mime bundle, so that its alt text is extracted (see the module).

    myst-nb's ``SelectMimeType`` (priority 4) replaces a bundle by the builder's preferred
    format, ``text/plain`` for gettext, which drops the image; the copy is not in a bundle
    and stays, with the original's uid, source and line (the catalog's location comment).
    """

    default_priority = 3
    builders = ("gettext",)

    def run(self, **kwargs) -> None:
        for bundle in list(self.document.findall(
            lambda n: isinstance(n, nodes.container) and n.get("nb_element") == "mime_bundle"
        )):
            copies = []
            for image in bundle.findall(nodes.image):
                if not image.get("alt"):
                    continue
                copy = nodes.image(uri=image["uri"], alt=image["alt"])
                copy.source, copy.line = image.source or bundle.source, image.line or bundle.line
                if hasattr(image, "uid"):
                    copy.uid = image.uid
                copies.append(copy)
            if copies and bundle.parent is not None:
                index = bundle.parent.index(bundle)
                bundle.parent[index + 1:index + 1] = copies


class TranslateToctrees(SphinxTransform):
    """Translate the captions of the toctrees that sphinx-external-toc inserts.

    The parts of ``_toc.yml`` ("Part I: Foundations") become toctree captions on the root
    page after Sphinx's Locale transform has run (sphinx-external-toc inserts them at
    priority 100), so they would stay English; the gettext builder does extract them.
    """

    default_priority = 110

    def apply(self, **kwargs) -> None:
        if not _translating(self.config) or self.app.builder.name == "gettext":
            return
        toctrees = list(self.document.findall(addnodes.toctree))
        if not toctrees:
            return
        translations = _catalog(self)
        for toctree in toctrees:
            for msgid in toctree.extract_original_messages():
                msgstr = _check(self, toctree, msgid, translations)
                if msgstr:
                    toctree.apply_translated_message(msgid, msgstr)


def _purge(app, env, docname) -> None:
    getattr(env, "nb_i18n_messages", {}).pop(docname, None)


def _merge(app, env, docnames, other) -> None:
    store = env.__dict__.setdefault("nb_i18n_messages", {})
    for docname in docnames:
        if docname in getattr(other, "nb_i18n_messages", {}):
            store[docname] = other.nb_i18n_messages[docname]


def _write_messages(app, exception) -> None:
    if exception is not None or not _translating(app.config) or app.builder.name == "gettext":
        return
    store = getattr(app.env, "nb_i18n_messages", {})
    path = Path(app.outdir).parent / "i18n-messages.json"
    path.write_text(
        json.dumps({"language": app.config.language, "messages": store}, ensure_ascii=False,
                   indent=1, sort_keys=True),
        encoding="utf-8",
    )


#: Catalogs of the theme's words, beside the pages' catalogs: sphinx.po is Sphinx's own
#: domain, found through locale_dirs; the others are compiled and registered here.
UI_CATALOGS = ("sphinx", "booktheme")
SEARCH_BAR_TEXT = "Search this book..."  # Jupyter Book's html_theme_options default


def _theme_catalogs(app, config) -> None:
    """Register ``locales/<lang>/LC_MESSAGES/booktheme.po`` (compiled to .mo beside it) and
    translate Jupyter Book's search placeholder (see the module)."""
    if not _translating(config):
        return
    from sphinx.locale import get_translation
    from sphinx.util.i18n import CatalogInfo

    for locale_dir in config.locale_dirs:
        base = Path(app.srcdir, locale_dir)
        for domain in UI_CATALOGS:
            if domain == "sphinx":
                continue  # Sphinx compiles and loads it from locale_dirs, first
            folder = base / config.language / "LC_MESSAGES"
            if (folder / f"{domain}.po").is_file():
                info = CatalogInfo(str(folder), domain, "utf-8")
                if info.is_outdated():
                    info.write_mo(config.language)
                app.add_message_catalog(domain, str(base))
    options = config.html_theme_options
    if options.get("search_bar_text") == SEARCH_BAR_TEXT:
        options["search_bar_text"] = get_translation("booktheme")(SEARCH_BAR_TEXT)


def _register_citation_styles() -> None:
    """``author_year_zh``: sphinxcontrib-bibtex's author–year citations joined in Chinese."""
    try:
        from dataclasses import dataclass, field

        from pybtex.richtext import Text
        from sphinxcontrib.bibtex.plugin import register_plugin
        from sphinxcontrib.bibtex.style.referencing import PersonStyle
        from sphinxcontrib.bibtex.style.referencing.author_year import (
            AuthorYearReferenceStyle,
        )
    except ImportError:  # sphinxcontrib-bibtex not installed: nothing to register
        return

    def chinese_persons() -> PersonStyle:
        return PersonStyle(sep="、", sep2=" 和 ", last_sep=" 和 ", other=Text(" 等"))

    @dataclass
    class AuthorYearChinese(AuthorYearReferenceStyle):
        person: PersonStyle = field(default_factory=chinese_persons)

    register_plugin("sphinxcontrib.bibtex.style.referencing", "author_year_zh", AuthorYearChinese,
                    force=True)


def _add_language_tag(app, config) -> None:
    app.tags.add(f"language_{config.language or 'en'}")


def _html_lang(app, pagename, templatename, context, doctree) -> None:
    if context.get("language"):
        context["language"] = context["language"].replace("_", "-")


class _TranslatedGlueText:
    """Wraps myst-nb's ``{glue:text}`` role for translated paragraphs (see the module)."""

    def __init__(self, role):
        self.role = role

    def __call__(self, name, rawtext, text, lineno, inliner, options=None, content=()):
        document = inliner.document
        env = getattr(document.settings, "env", None)
        if (
            env is not None
            and "nb_renderer" not in document
            and "::" not in text
            and str(document.current_source or "").endswith("<translated>")
        ):
            # myst-nb splits the format off at the last ":", so a key without a format
            # needs its default one spelled out, or "path::key" would split as "path:" + "key"
            text = f"/{env.doc2path(env.docname, base=False)}::{text}" + ("" if ":" in text else ":s")
        return self.role(name, rawtext, text, lineno, inliner, options or {}, content)


def _wrap_glue_role(app, config) -> None:
    domain = app.registry.domains.get("glue")  # registered by myst-nb
    if domain is None or "text" not in domain.roles:
        return
    original = app.registry.domain_roles.get("glue", {}).get("text", domain.roles["text"])
    if not isinstance(original, _TranslatedGlueText):
        app.add_role_to_domain("glue", "text", _TranslatedGlueText(original), override=True)


def setup(app):
    _register_citation_styles()
    app.add_transform(MarkUntranslatable)
    app.add_transform(CheckTranslated)
    app.add_transform(TranslateToctrees)
    app.add_post_transform(ExposeAltText)
    app.connect("config-inited", _add_language_tag)
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)
    app.connect("build-finished", _write_messages)
    app.connect("html-page-context", _html_lang)
    app.connect("config-inited", _wrap_glue_role)
    app.connect("config-inited", _theme_catalogs)
    # env_version: Sphinx reads every page again when it changes; raise it whenever a change
    # here changes the doctrees (2: display maths translated as it is; 3: alt text checked; 4:
    # docstring paragraphs classed "docstring"), or
    # an incremental build keeps the pages read with the old code
    return {"parallel_read_safe": True, "parallel_write_safe": True, "env_version": 4}

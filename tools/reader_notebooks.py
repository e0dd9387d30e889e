"""Sphinx extension: reader notebooks, the chapters as Jupyter and Colab show them best.

The chapters' Markdown is MyST: roles (``{glue:text}``, ``{doc}``, ``{numref}``, ``{eq}``,
``{cite}``), directives (theorems, exercises, notes, labelled maths) and figure captions kept
in cell metadata. Jupyter and Colab render plain Markdown, so there the reader sees the
source, not the book. After the HTML build this extension writes, for every page whose source
is a notebook (the chapters and Results), a *reader notebook* ``<outdir>/notebooks/<page>.ipynb``
(``_build/html/notebooks/book/04_reparameterization.ipynb``), published with the site, in
which the MyST is resolved into plain Markdown:

* glued values are substituted, formatted as in the book, from the executed notebook that
  myst-nb wrote to ``_build/jupyter_execute`` (a value that is missing there, e.g. in a build
  with execution off, becomes an em dash and a warning);
* ``{doc}``, ``{ref}``, ``{numref}``, ``{eq}`` and ``{prf:ref}`` become links to the web book,
  with the titles and numbers of the Sphinx environment (so "Fig. 4.1" and "(4.2)" are the web
  book's numbers); citations become author-year links to the bibliography page;
* theorems, proofs, exercises, solutions and admonitions become a bold title and a
  blockquote; labelled equations get ``\\tag{4.2}``; ``(label)=`` target lines are dropped;
* a figure's caption (the code cell's ``mystnb.figure.caption``) follows the figure's cell as
  a Markdown cell, numbered as in the web book.

Code cells are copied unchanged (source, id and metadata, e.g. the solution cells'
``cellView: form`` and ``jupyter.source_hidden``), without outputs: the notebooks are for
running. The chapters' ``.ipynb`` files stay the single source of truth; reader notebooks are
generated on every build and never edited.

The page's launch buttons (Colab, Binder) and its ".ipynb" download are pointed at the reader
notebooks: Colab and Binder open notebooks from GitHub only, so CI (.github/workflows/book.yml)
pushes ``_build/html/notebooks`` to the branch ``reader_notebooks_branch`` (default
``notebooks``) with the same paths as in the repository, and the buttons' branch is swapped.

A translated edition (the Chinese one, ``language: zh_CN``) gets its own reader notebooks,
``_build/html/zh/notebooks/book/*.ipynb``: the same cells and code, with the prose and
captions taken from the page's catalog (``locales/zh_CN/LC_MESSAGES/book/<page>.mo``, the
messages Sphinx translates the page with) before the MyST is resolved, the converter's own
words ("Exercise", "Proof.", "Note"…) in that language, and links to that edition's pages.
Its buttons open them: ``zh/book/<page>.ipynb`` in the same branch (CI publishes
``_build/html/zh/notebooks`` there under ``zh/``).

Configuration (``sphinx.config``): ``reader_notebooks_base_url`` (the web book's address;
default from the repository URL, ``https://<org>.github.io/<repo>/``; a translated edition
adds its folder, ``zh/``), ``reader_notebooks_branch`` (``""`` leaves the buttons alone).

Run on an existing build, without Sphinx's build step::

    python tools/reader_notebooks.py _build   # _build/.doctrees, and _build/zh/_build if built
"""

from __future__ import annotations

import ast
import copy
import json
import pickle
import posixpath
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

OUTPUT_DIR = "notebooks"
MISSING = "—"  # stands in for a glued value the executed notebook does not have

# ---------------------------------------------------------------------------------------------
# What the converter knows about the web book
# ---------------------------------------------------------------------------------------------


@dataclass
class Target:
    """Where a reference points in the web book: ``docname.html#anchor`` and its link text."""

    docname: str
    anchor: str = ""
    text: str = ""


@dataclass
class BookIndex:
    """Titles, labels and numbers of the web book, taken from the Sphinx environment.

    ``numbers[docname][figtype][node_id]`` is Sphinx's ``env.toc_fignumbers`` (figtypes
    ``figure``, ``displaymath``, ``exercise``, ``theorem``…); ``labels`` the std domain's
    labels (``label -> Target`` with the section name or caption); ``equations`` the math
    domain's (``label -> docname``); ``proofs`` sphinx-proof's (``label -> (docname,
    realtype, countertype)``); ``exercises`` sphinx-exercise's (``label -> docname``);
    ``citations`` the bibtex domain's (``key -> (Target, authors, year)``).
    """

    base_url: str
    titles: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)
    numbers: dict = field(default_factory=dict)
    numfig_format: dict = field(
        default_factory=lambda: {
            "figure": "Fig. %s",
            "table": "Table %s",
            "code-block": "Listing %s",
        }
    )
    equations: dict = field(default_factory=dict)
    proofs: dict = field(default_factory=dict)
    exercises: dict = field(default_factory=dict)
    citations: dict = field(default_factory=dict)

    def url(self, docname: str, anchor: str = "") -> str:
        return (
            self.base_url.rstrip("/")
            + "/"
            + docname
            + ".html"
            + ("#" + anchor if anchor else "")
        )

    def number(self, docname: str, figtype: str, node_id: str) -> str:
        numbers = self.numbers.get(docname, {}).get(figtype, {}).get(node_id)
        return ".".join(map(str, numbers)) if numbers else ""

    def nth_number(self, docname: str, figtype: str, index: int) -> str:
        """The number of the ``index``-th (0-based) object of ``figtype`` in ``docname``."""
        numbers = sorted(self.numbers.get(docname, {}).get(figtype, {}).values())
        return ".".join(map(str, numbers[index])) if index < len(numbers) else ""

    @classmethod
    def from_env(cls, env, base_url: str) -> BookIndex:
        index = cls(base_url=base_url)
        index.titles = {doc: title.astext() for doc, title in env.titles.items()}
        index.numbers = {
            doc: {t: dict(v) for t, v in n.items()}
            for doc, n in env.toc_fignumbers.items()
        }
        index.numfig_format = dict(env.config.numfig_format)
        # env.domaindata rather than env.get_domain(): it is also there in a pickled environment
        std = env.domaindata.get("std", {})
        for label, (docname, labelid, sectname) in std.get("labels", {}).items():
            index.labels[label] = Target(docname, labelid, sectname)
        for label, (docname, labelid) in std.get("anonlabels", {}).items():
            index.labels.setdefault(label, Target(docname, labelid, ""))
        for label, (docname, _number) in (
            env.domaindata.get("math", {}).get("objects", {}).items()
        ):
            index.equations[label] = docname
        for label, info in getattr(env, "proof_list", {}).items():
            index.proofs[label] = (
                info["docname"],
                info["realtype"],
                info["countertype"],
            )
        for label, info in getattr(env, "sphinx_exercise_registry", {}).items():
            if info.get("type") == "exercise":
                index.exercises[label] = info["docname"]
        for citation in env.domaindata.get("cite", {}).get("citations", []):
            if citation.key not in index.citations:
                authors, year = _author_year(citation.entry)
                target = Target(citation.bibliography_key.docname, citation.citation_id)
                index.citations[citation.key] = (target, authors, year)
        return index

    @staticmethod
    def equation_id(label: str) -> str:
        """The anchor of a labelled equation, as sphinx.domains.math makes it."""
        from docutils.nodes import make_id

        return make_id("equation-" + label)


def _plain(text: str) -> str:
    """A BibTeX name or year as text: LaTeX accents decoded (as pybtex does), braces dropped."""
    import codecs

    try:
        import latexcodec  # noqa: F401  (registers the "ulatex" codec; pybtex depends on it)

        text = codecs.decode(text, "ulatex")
    except (ImportError, ValueError):
        pass
    return re.sub(r"[{}]", "", text).strip()


def _author_year(entry) -> tuple[str, str]:
    """("Kingma and Welling", "2014"), as sphinxcontrib-bibtex's author_year style shows them."""
    persons = entry.persons.get("author") or entry.persons.get("editor") or []
    last = [_plain(" ".join(p.prelast_names + p.last_names)) for p in persons]
    if not last:
        authors = _plain(entry.fields.get("title", entry.key))
    elif len(last) == 1:
        authors = last[0]
    elif len(last) == 2:
        authors = f"{last[0]} and {last[1]}"
    else:
        authors = f"{last[0]} et al."
    return authors, _plain(entry.fields.get("year", ""))


# ---------------------------------------------------------------------------------------------
# The converter
# ---------------------------------------------------------------------------------------------

# {role}`content`, or an inline code span (left alone: MyST parses no roles inside code)
_INLINE = re.compile(
    r"\{(?P<role>[a-zA-Z][\w:.+-]*)\}(?P<tick>`+)(?P<content>.+?)(?P=tick)(?!`)|(?P<code>`+).+?(?P=code)(?!`)",
    re.DOTALL,
)
_FENCE_OPEN = re.compile(
    r"^(?P<indent> {0,3})(?P<fence>`{3,}|:{3,})\{(?P<name>[\w:.+-]+)\}[ \t]*(?P<arg>.*?)\s*$"
)
_CODE_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_TARGET = re.compile(r"^ {0,3}\(([^()\s]+)\)=\s*$")
_OPTION = re.compile(r"^:([\w-]+):(?:\s+(.*))?$")
# $$ ... $$ (label): a labelled equation of MyST's dollarmath
_DOLLAR_LABEL = re.compile(
    r"\$\$(?P<body>(?:(?!\$\$).)+?)\$\$[ \t]*\((?P<label>[^()\s]+)\)", re.DOTALL
)
# a space of a message: any white space in the source, a line break and a blockquote's ">" too
_SPACE = r"(?:[ \t]*\n[ \t]*(?:>[ \t]*)*|[ \t]+)"
_EXPLICIT = re.compile(r"^(?P<text>.*?)\s*<(?P<target>[^<>]+)>$", re.DOTALL)

# The words the converter writes itself, per edition (the web book's: Sphinx's, sphinx-proof's
# and sphinx-exercise's own translations, as the Chinese pages show them)
WORDS = {
    "en": {
        "exercise": "Exercise",
        "solution": "Solution",
        "solution_to": "Solution to Exercise {number}",
        "proof": "Proof.",
        "title": " ({title})",
        "web": "This page in the web book",
        "colab": "Open in Colab",
        "kinds": {},
        "admonitions": {},
    },
    "zh": {
        "exercise": "练习",
        "solution": "解答",
        "solution_to": "解答 练习 {number}",
        "proof": "证明。",
        "title": " （{title}）",
        "web": "本页的网页版",
        "colab": "在 Colab 中打开",
        "kinds": {
            "theorem": "定理",
            "definition": "定义",
            "proposition": "命题",
            "lemma": "引理",
            "corollary": "推论",
            "remark": "注",
            "example": "例",
            "algorithm": "算法",
            "assumption": "假设",
            "axiom": "公理",
            "conjecture": "猜想",
            "criterion": "准则",
            "notation": "记号",
            "observation": "观察",
            "property": "性质",
        },
        "admonitions": {
            "note": "备注",
            "tip": "小技巧",
            "hint": "提示",
            "important": "重要",
            "warning": "警告",
            "caution": "小心",
            "attention": "注意",
            "danger": "危险",
            "error": "错误",
            "seealso": "参见",
        },
    },
}

ADMONITIONS = {
    "note": "Note",
    "tip": "Tip",
    "hint": "Hint",
    "important": "Important",
    "warning": "Warning",
    "caution": "Caution",
    "attention": "Attention",
    "danger": "Danger",
    "error": "Error",
    "seealso": "See also",
    "admonition": "",
}


class Converter:
    """Turns the MyST of one page into plain Markdown (Jupyter's and Colab's).

    ``glue`` maps a glue key to its output (``{"data": {"text/plain": ...}}``). Problems (a
    missing value, an unknown label, an unknown role) are reported through ``warn`` and
    leave readable text, never raw MyST.
    """

    def __init__(
        self,
        index: BookIndex,
        docname: str,
        glue: dict | None = None,
        warn: Callable[[str], None] | None = None,
        language: str = "en",
        messages: dict[str, str] | None = None,
    ):
        self.index = index
        self.docname = docname
        self.glue = glue or {}
        self.warn = warn or (lambda message: None)
        self.words = WORDS.get(_short(language), WORDS["en"])
        self.messages = {
            k: v for k, v in (messages or {}).items() if k and v and k != v
        }
        self._patterns: list[tuple[re.Pattern, str]] | None = None
        self._counts: dict[
            str, int
        ] = {}  # unlabelled numbered objects seen, per figtype

    # -- translation ------------------------------------------------------------------------
    def translate(self, text: str) -> str:
        """``text`` (MyST) with every message of the page's catalog replaced by its translation.

        Sphinx's messages are the source of a paragraph, heading, list item, table cell or
        caption with its line breaks made spaces (``sphinx.util.nodes.extract_messages``);
        here a space of a message matches any run of white space, including a line break and
        the ``>`` of a blockquote. Longest messages first, each replaced by a placeholder, so
        a short message is never looked for inside a translation. Without a catalog (the
        English edition) the text is returned as it is.
        """
        if not self.messages:
            return text
        if self._patterns is None:
            self._patterns = []
            for msgid in sorted(self.messages, key=len, reverse=True):
                words = msgid.split()
                if not words:
                    continue
                pattern = _SPACE.join(re.escape(word) for word in words)
                if re.match(r"\w", words[0]):
                    pattern = r"(?<!\w)" + pattern
                if re.search(r"\w$", words[-1]):
                    pattern += r"(?!\w)"
                self._patterns.append((re.compile(pattern), self.messages[msgid]))
        found: list[str] = []

        def hold(msgstr: str) -> Callable[[re.Match], str]:
            def replace(match: re.Match) -> str:
                found.append(msgstr)
                return f"\x00{len(found) - 1}\x00"

            return replace

        for pattern, msgstr in self._patterns:
            if pattern.search(text):
                text = pattern.sub(hold(msgstr), text)
        return re.sub("\x00(\\d+)\x00", lambda m: found[int(m.group(1))], text)

    def _title(self, arg: str) -> str:
        """A directive's title after its name and number: " (Title)", translated as in the
        web book (sphinx-proof's title message is "(Title)")."""
        translated = self.messages.get(f"({arg})")
        if translated:
            return " " + self.inline(translated)
        return self.words["title"].format(title=self.inline(self.translate(arg)))

    def _translated_proof(self, content: str) -> str:
        """sphinx-proof starts a proof's first paragraph with "Proof. ", and that is its
        message ("Proof. By (4.3), ..."); the translation's own "证明。" becomes the title."""
        first, sep, rest = content.strip("\n").partition("\n\n")
        msgstr = self.messages.get("Proof. " + " ".join(first.split()))
        if not msgstr:
            return content
        for head in (self.words["proof"], "Proof.", "Proof"):
            if msgstr.startswith(head):
                msgstr = msgstr[len(head) :].lstrip()
                break
        return msgstr + sep + rest

    # -- inline -------------------------------------------------------------------------------
    def inline(self, text: str) -> str:
        """Resolve the roles in ``text``; code spans are left as they are."""

        def replace(match: re.Match) -> str:
            if match.group("code"):
                return match.group(0)
            return self.role(match.group("role"), match.group("content"))

        text = _DOLLAR_LABEL.sub(self._labelled_dollarmath, text)
        return _INLINE.sub(replace, text)

    def role(self, name: str, content: str) -> str:
        if name in ("glue:text", "glue", "glue:", "glue:any", "glue:md"):
            return self._glue(name, content)
        if name == "math":
            return f"${content}$"
        if name == "doc":
            return self._doc(content)
        if name in (
            "ref",
            "numref",
            "eq",
            "prf:ref",
            "std:ref",
            "std:numref",
            "math:numref",
        ):
            return self._xref(
                name.split(":")[-1] if name != "prf:ref" else name, content
            )
        if name.startswith("cite"):
            return self._cite(name, content)
        if name in ("sup", "sub"):
            return f"<{name}>{content}</{name}>"
        if name in (
            "abbr",
            "term",
            "kbd",
            "code",
            "samp",
            "file",
            "command",
            "program",
            "dfn",
        ):
            text = _EXPLICIT.match(content)
            return (
                f"`{text.group('text') if text else content}`"
                if name != "dfn"
                else f"*{content}*"
            )
        self.warn(f"{self.docname}: unknown role {{{name}}}`{content}`, shown as code")
        return f"`{content}`"

    def _glue(self, name: str, content: str) -> str:
        key, spec = content, ""
        if name == "glue:text":
            key, _, spec = content.rpartition(":") if ":" in content else ("", "", "")
            if not key:
                key, spec = content, "s"
        output = self.glue.get(key)
        data = (output or {}).get("data", {})
        if not data:
            self.warn(
                f"{self.docname}: glued value {key!r} not found (is the notebook executed?); "
                f"shown as {MISSING}"
            )
            return MISSING
        if name != "glue:text" and "text/markdown" in data:
            value = data["text/markdown"]
            return value if isinstance(value, str) else "".join(value)
        if "text/plain" not in data:
            self.warn(
                f"{self.docname}: glued value {key!r} has no text/plain; shown as {MISSING}"
            )
            return MISSING
        plain = data["text/plain"]
        plain = plain if isinstance(plain, str) else "".join(plain)
        try:
            return format_plain_text(plain, spec)
        except Exception as exc:  # noqa: BLE001  (myst-nb reports the same as a warning)
            self.warn(
                f"{self.docname}: glued value {key!r} cannot be formatted with {spec!r}: {exc}"
            )
            return MISSING

    def _target(self, content: str) -> tuple[str | None, str]:
        """``"text <target>"`` -> ("text", "target"); ``"target"`` -> (None, "target")."""
        explicit = _EXPLICIT.match(content)
        if explicit:
            return explicit.group("text"), explicit.group("target").strip()
        return None, content.strip()

    def _doc(self, content: str) -> str:
        text, target = self._target(content)
        target = re.sub(r"\.(ipynb|md|rst)$", "", target)
        docname = (
            target.lstrip("/")
            if target.startswith("/")
            else posixpath.normpath(
                posixpath.join(posixpath.dirname(self.docname), target)
            )
        )
        if docname not in self.index.titles:
            self.warn(f"{self.docname}: unknown document {target!r}")
            return text or target
        return f"[{text or self.index.titles[docname]}]({self.index.url(docname)})"

    def _xref(self, kind: str, content: str) -> str:
        text, label = self._target(content)
        if kind == "eq":
            docname = self.index.equations.get(label)
            if docname is None:
                self.warn(f"{self.docname}: unknown equation {label!r}")
                return f"({label})"
            node_id = self.index.equation_id(label)
            number = self.index.number(docname, "displaymath", node_id)
            return f"[{text or '(' + number + ')'}]({self.index.url(docname, node_id)})"
        if kind == "prf:ref":
            if label not in self.index.proofs:
                self.warn(f"{self.docname}: unknown proof label {label!r}")
                return text or label
            docname, realtype, countertype = self.index.proofs[label]
            number = self.index.number(docname, countertype, label)
            kind = self.words["kinds"].get(realtype, realtype.title())
            return f"[{text or (kind + ' ' + number).strip()}]({self.index.url(docname, label)})"
        if (
            label in self.index.exercises and not text
        ):  # {ref}`ch02-ex3` shows "Exercise 2.3"
            docname = self.index.exercises[label]
            number = self.index.number(docname, "exercise", label)
            fmt = self.index.numfig_format.get("exercise", "Exercise %s")
            return f"[{fmt % number}]({self.index.url(docname, label)})"
        target = self.index.labels.get(label.lower())
        if target is None:
            self.warn(f"{self.docname}: unknown label {label!r}")
            return text or label
        if kind == "numref":
            figtype, number = self._figtype_number(target)
            fmt = text if text else self.index.numfig_format.get(figtype, "%s")
            shown = (
                fmt.replace("%s", number)
                .replace("{number}", number)
                .replace("{name}", target.text)
            )
        else:
            shown = text or target.text or label
        return f"[{shown}]({self.index.url(target.docname, target.anchor)})"

    def _figtype_number(self, target: Target) -> tuple[str, str]:
        for figtype, ids in self.index.numbers.get(target.docname, {}).items():
            if target.anchor in ids:
                return figtype, ".".join(map(str, ids[target.anchor]))
        self.warn(f"{self.docname}: {target.anchor!r} has no number")
        return "figure", "?"

    def _cite(self, name: str, content: str) -> str:
        textual = name in ("cite:t", "cite:ts", "cite:ct", "cite:cts")
        links = []
        for key in [k.strip() for k in content.split(",") if k.strip()]:
            key = re.sub(r"^\{[^{}]*\}|\{[^{}]*\}$", "", key).strip()  # {pre}key{post}
            if key not in self.index.citations:
                self.warn(f"{self.docname}: unknown citation {key!r}")
                links.append(key)
                continue
            target, authors, year = self.index.citations[key]
            url = self.index.url(target.docname, target.anchor)
            links.append(
                f"{authors} [{year}]({url})"
                if textual
                else f"[{authors}, {year}]({url})"
            )
        return ", ".join(links) if textual else "[" + ", ".join(links) + "]"

    def _labelled_dollarmath(self, match: re.Match) -> str:
        label = match.group("label")
        number = self._equation_number(label)
        body = match.group("body").strip("\n")
        return (
            "$$\n" + body + f"\n\\tag{{{number}}}\n$$"
            if number
            else "$$\n" + body + "\n$$"
        )

    def _equation_number(self, label: str) -> str:
        docname = self.index.equations.get(label, self.docname)
        number = self.index.number(
            docname, "displaymath", self.index.equation_id(label)
        )
        if not number:
            self.warn(f"{self.docname}: equation {label!r} has no number")
        return number

    def _numbered(self, figtype: str, label: str | None) -> str:
        """The number of a numbered object: by its label, else by its order in the page."""
        nth = self._counts.get(figtype, 0)
        self._counts[figtype] = nth + 1
        number = self.index.number(self.docname, figtype, label) if label else ""
        return number or self.index.nth_number(self.docname, figtype, nth)

    # -- blocks -------------------------------------------------------------------------------
    def markdown(self, text: str) -> str:
        """Convert one Markdown cell (or a directive's body)."""
        lines = text.split("\n")
        out: list[str] = []
        i = 0
        prose: list[str] = []

        def flush():
            if prose:
                out.append(self.inline("\n".join(prose)))
                prose.clear()

        while i < len(lines):
            line = lines[i]
            if _TARGET.match(line):
                i += 1
                continue
            opening = _FENCE_OPEN.match(line)
            code = _CODE_FENCE.match(line) if not opening else None
            if opening or code:
                flush()
                fence = opening.group("fence") if opening else code.group(1)
                j = i + 1
                closing = re.compile(
                    r"^ {0,3}" + re.escape(fence[0]) + "{" + str(len(fence)) + r",}\s*$"
                )
                while j < len(lines) and not closing.match(lines[j]):
                    j += 1
                if opening:
                    out.append(
                        self.directive(
                            opening.group("name"),
                            opening.group("arg"),
                            lines[i + 1 : j],
                        )
                    )
                else:
                    out.extend(lines[i : j + 1])  # a plain code block: unchanged
                i = j + 1
                continue
            prose.append(line)
            i += 1
        flush()
        return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip("\n")

    def directive(self, name: str, arg: str, body: list[str]) -> str:
        options, body = _options(body)
        label = options.get("label") or options.get("name")
        content = "\n".join(body).strip("\n")
        if name == "math":
            number = self._equation_number(label) if label else ""
            tag = f"\n\\tag{{{number}}}" if number else ""
            return "$$\n" + content + tag + "\n$$"
        if name.startswith("prf:"):
            kind = name[4:]
            if kind == "proof":
                content = self._translated_proof(content)
                title = f"**{self.words['proof']}**" + (self._title(arg) if arg else "")
                return _quote(title + "\n\n" + self.markdown(content) + "\n\n∎")
            countertype = (
                self.index.proofs.get(label, (None, None, kind))[2] if label else kind
            )
            number = "" if "nonumber" in options else self._numbered(countertype, label)
            name = self.words["kinds"].get(kind, kind.title())
            title = f"**{name}{' ' + number if number else ''}**"
            if label and self.docname:
                title = f"[{title}]({self.index.url(self.docname, label)})"
            if arg:
                title += self._title(arg)
            return _quote(title + "\n\n" + self.markdown(content))
        if name in ("exercise", "exercise-start"):
            number = "" if "nonumber" in options else self._numbered("exercise", label)
            title = f"**{self.words['exercise']}{' ' + number if number else ''}**" + (
                self._title(arg) if arg else ""
            )
            return (
                _quote(title + "\n\n" + self.markdown(content))
                if name == "exercise"
                else title
            )
        if name in ("solution", "solution-start"):
            exercise = arg.strip()
            docname = self.index.exercises.get(exercise, self.docname)
            number = self.index.number(docname, "exercise", exercise)
            title = (
                f"**{self.words['solution_to'].format(number=number)}**"
                if number
                else f"**{self.words['solution']}**"
            )
            return (
                _quote(title + "\n\n" + self.markdown(content))
                if name == "solution"
                else title
            )
        if name in ("solution-end", "exercise-end"):
            return ""
        if name in ADMONITIONS or name == "dropdown":
            title = (
                self.inline(arg)
                if arg
                else self.words["admonitions"].get(name, ADMONITIONS.get(name, ""))
            )
            head = f"**{title}**\n\n" if title else ""
            return _quote(head + self.markdown(content))
        if name in (
            "epigraph",
            "pull-quote",
            "highlights",
            "margin",
            "sidebar",
            "div",
            "container",
        ):
            return (
                _quote(self.markdown(content))
                if name != "div"
                else self.markdown(content)
            )
        if name in ("code-block", "code", "sourcecode", "code-cell"):
            return f"```{arg}\n{content}\n```"
        self.warn(
            f"{self.docname}: directive {{{name}}} has no Markdown form; its body is kept"
        )
        return self.markdown(content)

    def caption(self, figure: dict) -> str:
        """The Markdown of a figure's caption (``mystnb.figure`` metadata of a code cell)."""
        name = figure.get("name")
        number = self._numbered("figure", name if name else None)
        if (
            name and name in self.index.labels
        ):  # the number belongs to the figure's node id
            target = self.index.labels[name]
            number = (
                self.index.number(target.docname, "figure", target.anchor) or number
            )
        if not number:
            self.warn(
                f"{self.docname}: figure {name or ''!r} has no number (no image output?)"
            )
        fmt = self.index.numfig_format.get("figure", "Fig. %s")
        head = f"**{fmt % number}**" if number else ""
        text = self.markdown(self.translate(str(figure.get("caption", ""))))
        return (head + " " + text).strip()


def format_plain_text(text: str, spec: str) -> str:
    """A glued text/plain value formatted by ``spec``, exactly as myst-nb's ``{glue:text}``."""
    try:
        from myst_nb.core.variables import format_plain_text as myst_format
    except ImportError:  # the same rules, for a machine without myst-nb
        try:
            value = ast.literal_eval(text)
        except (SyntaxError, ValueError):
            value = text
        if spec == "":
            return str(value)
        kind = spec[-1]
        if kind == "s":
            value = str(value)
        elif kind in "bcdoxX":
            value = int(value)
        elif kind in "eEfFgGn%":
            value = float(value)
        return format(value, spec)
    return myst_format(text, spec)


def _options(body: list[str]) -> tuple[dict, list[str]]:
    """Split a directive's ``:key: value`` lines (or a ``---`` YAML block) from its body."""
    options: dict = {}
    if body and body[0].strip() == "---":
        end = next((k for k in range(1, len(body)) if body[k].strip() == "---"), None)
        if end is not None:
            for line in body[1:end]:
                key, _, value = line.partition(":")
                if key.strip():
                    options[key.strip()] = value.strip()
            return options, body[end + 1 :]
    k = 0
    while k < len(body):
        option = _OPTION.match(body[k])
        if not option:
            break
        options[option.group(1)] = (option.group(2) or "").strip()
        k += 1
    return options, body[k:]


_DISPLAY_MATH = re.compile(r"\$\$(.+?)\$\$", re.DOTALL)
_INLINE_MATH = re.compile(r"(?<![$\\])\$(?![$\s])([^$`]+?)(?<![\\\s])\$(?!\$)")


def _short(language: str | None) -> str:
    """``zh_CN`` -> ``zh``; ``None`` -> ``en``."""
    return (language or "en").replace("-", "_").split("_")[0].lower()


def _quote(markdown: str) -> str:
    """A Markdown blockquote. Maths goes on one line: Jupyter's and Colab's renderers take the
    maths out before they parse the Markdown, and would see the "> " of every line in it."""

    def one_line(match: re.Match) -> str:
        if "\n\n" in match.group(1):  # not maths: a paragraph break between two dollars
            return match.group(0)
        delimiter = "$$" if match.group(0).startswith("$$") else "$"
        parts = [part.strip() for part in match.group(1).split("\n")]
        return delimiter + " ".join(part for part in parts if part) + delimiter

    markdown = _INLINE_MATH.sub(one_line, _DISPLAY_MATH.sub(one_line, markdown))
    lines = markdown.strip("\n").split("\n")
    return "\n".join("> " + line if line.strip() else ">" for line in lines)


# ---------------------------------------------------------------------------------------------
# Notebooks
# ---------------------------------------------------------------------------------------------


def read_glue(executed: Path) -> dict:
    """Glued outputs of an executed notebook: myst-nb's ``.glue.json``, else its outputs."""
    glue_json = executed.with_name(executed.stem + ".glue.json")
    if glue_json.exists():
        return json.loads(glue_json.read_text(encoding="utf-8"))
    if not executed.exists():
        return {}
    glue = {}
    for cell in nbformat.read(executed, as_version=4).cells:
        for output in cell.get("outputs", []):
            scrapbook = output.get("metadata", {}).get("scrapbook")
            if scrapbook:
                prefix = len(scrapbook.get("mime_prefix", ""))
                glue[scrapbook["name"]] = {
                    "data": {k[prefix:]: v for k, v in output.get("data", {}).items()}
                }
    return glue


def convert_notebook(
    source: nbformat.NotebookNode, converter: Converter
) -> nbformat.NotebookNode:
    """The reader notebook of ``source``: Markdown resolved, code cells unchanged, no outputs."""
    nb = copy.deepcopy(source)
    cells = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = converter.markdown(converter.translate(cell.source))
            if cell.source.strip():
                cells.append(cell)
            continue
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cells.append(cell)
        figure = cell.get("metadata", {}).get("mystnb", {}).get("figure")
        if (
            cell.cell_type == "code"
            and figure
            and (figure.get("caption") or figure.get("name"))
        ):
            caption = nbformat.v4.new_markdown_cell(converter.caption(figure))
            if nb.nbformat_minor >= 5:  # cell ids exist from nbformat 4.5 on
                caption.id = _caption_id(cell.get("id"), len(cells))
            else:
                caption.pop("id", None)
            caption.metadata["reader_notebook"] = {"caption_of": cell.get("id")}
            cells.append(caption)
    nb.cells = cells
    nb.metadata["reader_notebook"] = {
        "source": converter.docname,
        "url": converter.index.url(converter.docname),
        "note": "Generated by tools/reader_notebooks.py from the book's source; edit the source.",
    }
    return nb


def _caption_id(code_id: str | None, position: int) -> str:
    base = (code_id or f"cell-{position}")[:54]
    return f"{base}-caption"


# ---------------------------------------------------------------------------------------------
# Runnable where the reader runs it (Colab): the package, the repository's files, the version
# ---------------------------------------------------------------------------------------------

ARCHIVE_ENV = "VAE_TUTORIAL_REPOSITORY_ARCHIVE"  # another archive (tests, a mirror)


def source_ref() -> str | None:
    """The commit the book is built from, when CI says so (``$GITHUB_SHA``): the reader
    notebooks it publishes install that commit's package, not whatever ``main`` is later."""
    sha = __import__("os").environ.get("GITHUB_SHA", "")
    return sha if re.fullmatch(r"[0-9a-f]{40}", sha) else None


def pin_install(source: str, repository: str, ref: str | None) -> str:
    """The install cell's ``git+<repository>`` spec pinned to ``ref`` (a commit)."""
    if not ref:
        return source
    return source.replace(f'git+{repository}"', f'git+{repository}@{ref}"')


def fetch_files_source(repository: str, ref: str | None) -> str:
    """A cell for a page that reads the repository's files (Results: ``../benchmarks/results``,
    ``../book``): where they are missing (Colab opens the notebook alone), it downloads the
    repository's archive at ``ref`` and runs from its ``book/`` folder; offline, it says so and
    the page shows what it shows without them."""
    archive = f"{repository}/archive/{ref or 'main'}.tar.gz"
    return f'''\
# Colab: this page reads the measured results (../benchmarks/results/*.json) and the list of
# chapters (../book) from the repository. Where they are missing, fetch them once.
import io
import os
import tarfile
import urllib.request
from pathlib import Path

if not Path("../benchmarks/results").is_dir():
    url = os.environ.get(
        "{ARCHIVE_ENV}",
        "{archive}",
    )
    here = Path("vae-tutorial-files").resolve()
    try:
        if not here.is_dir():
            with urllib.request.urlopen(url, timeout=60) as response:
                data = io.BytesIO(response.read())
            with tarfile.open(fileobj=data) as tar:
                keep = [
                    m
                    for m in tar.getmembers()
                    if m.isfile()
                    and m.name.split("/")[1:2] in (["benchmarks"], ["book"])
                    and (m.name.endswith(".json") or m.name.endswith(".ipynb"))
                ]
                for m in keep:
                    m.name = "/".join(m.name.split("/")[1:])
                safe = {{"filter": "data"}} if hasattr(tarfile, "data_filter") else {{}}
                tar.extractall(here, members=keep, **safe)
        os.chdir(here / "book")
        print("Results read from", url)
    except (OSError, tarfile.TarError) as error:
        print(
            f"The measured results are not here and could not be fetched ({{error}}).",
            f"Run this notebook from a clone of {repository} (book/results.ipynb).",
        )'''


def add_setup_cells(
    nb: nbformat.NotebookNode, repository: str, ref: str | None
) -> nbformat.NotebookNode:
    """Make a reader notebook runnable alone: the chapters' install cell pinned to ``ref``;
    a page without one (Results) gets it, and, if it reads the repository's files, the cell
    of :func:`fetch_files_source`, both after its title cell. Added cells are marked
    ``metadata.reader_notebook.added``."""
    import nbconventions

    code = [c for c in nb.cells if c.cell_type == "code"]
    installs = [
        c for c in code if nbconventions.INSTALL_TAG in c.metadata.get("tags", [])
    ]
    for cell in installs:
        cell.source = pin_install(cell.source, repository, ref)
    if installs or not code:
        return nb
    added = [("install", pin_install(nbconventions.install_source(), repository, ref))]
    if any("benchmarks" in c.source for c in code):
        added.append(("files", fetch_files_source(repository, ref)))
    first = next((k for k, c in enumerate(nb.cells) if c.cell_type == "code"), 0)
    for offset, (kind, source) in enumerate(added):
        cell = nbformat.v4.new_code_cell(source)
        if nb.nbformat_minor >= 5:
            cell.id = f"reader-{kind}"
        else:
            cell.pop("id", None)
        cell.metadata["tags"] = [nbconventions.INSTALL_TAG] if kind == "install" else []
        cell.metadata["reader_notebook"] = {"added": kind}
        nb.cells.insert(first + offset, cell)
    return nb


COLAB = "https://colab.research.google.com/github/"


def colab_url(repository: str, branch: str, path: str) -> str | None:
    """Colab's address of ``path`` in ``branch`` of a GitHub ``repository`` (else None)."""
    match = re.match(r"https://github\.com/([^/]+/[^/]+?)/?$", repository)
    return f"{COLAB}{match.group(1)}/blob/{branch}/{path}" if match and branch else None


def add_links(
    nb: nbformat.NotebookNode, page_url: str, colab: str | None, language: str = "en"
) -> nbformat.NotebookNode:
    """A line under the notebook's title cell: its page in the web book and, for a notebook
    downloaded or opened elsewhere, the same notebook in Colab (text links: a badge's image
    would be fetched from the network)."""
    words = WORDS.get(_short(language), WORDS["en"])
    links = [f"[{words['web']}]({page_url})"]
    if colab:
        links.append(f"[{words['colab']}]({colab})")
    first = next((c for c in nb.cells if c.cell_type == "markdown"), None)
    if first is not None:
        title, _, rest = first.source.partition("\n")
        if not title.startswith("# "):  # no title line: the links go first
            title, rest = "", first.source
        first.source = "\n\n".join(
            part for part in (title, " · ".join(links), rest.strip("\n")) if part
        )
    return nb


def read_catalog(locale_dirs: list[Path], language: str, domain: str) -> dict[str, str]:
    """The translations of one page (``domain``, e.g. ``book/04_reparameterization``), as
    Sphinx reads them: the compiled ``<dir>/<language>/LC_MESSAGES/<domain>.mo`` of every
    locale folder (fuzzy and untranslated messages are not in a ``.mo``)."""
    import gettext

    messages: dict[str, str] = {}
    for folder in reversed(locale_dirs):  # the first folder wins, as in Sphinx
        path = Path(folder) / language / "LC_MESSAGES" / f"{domain}.mo"
        if path.is_file():
            with open(path, "rb") as f:
                catalog = gettext.GNUTranslations(f)._catalog
            messages.update(
                {k: v for k, v in catalog.items() if isinstance(k, str) and k}
            )
    return messages


def edition_prefix(language: str | None) -> str:
    """Where an edition lives in the site: ``""`` for English, ``"zh/"`` for ``zh_CN`` (the
    folders of tools/build_books.py, ``LANGUAGES``)."""
    short = _short(language)
    return "" if short == "en" else short + "/"


def write_reader_notebooks(
    index: BookIndex,
    srcdir: Path,
    docnames: list[str],
    executed_dir: Path,
    outdir: Path,
    warn: Callable[[str], None],
    language: str = "en",
    catalog: Callable[[str], dict[str, str]] | None = None,
    repository: str | None = None,
    ref: str | None = None,
    branch: str = "notebooks",
) -> list[Path]:
    """Write ``outdir/<docname>.ipynb`` for every docname; returns the paths written.

    A translated edition passes its ``language`` and ``catalog(docname) -> {msgid: msgstr}``:
    the prose and captions are translated before the MyST is resolved; code stays the same.
    ``repository`` (default: ``_config.yml``'s) and ``ref`` (default: :func:`source_ref`)
    make each notebook runnable alone (:func:`add_setup_cells`); ``branch`` is where CI
    publishes the reader notebooks, for the Colab link under the title (:func:`add_links`).
    """
    import nbconventions

    repository = repository or nbconventions.repository_url()
    ref = ref if ref is not None else source_ref()
    written = []
    for docname in docnames:
        source = nbformat.read(srcdir / f"{docname}.ipynb", as_version=4)
        glue = read_glue(executed_dir / f"{docname}.ipynb")
        messages = catalog(docname) if catalog else None
        nb = convert_notebook(
            source, Converter(index, docname, glue, warn, language, messages)
        )
        nb = add_setup_cells(nb, repository, ref)
        path = edition_prefix(language) + f"{docname}.ipynb"
        nb = add_links(
            nb, index.url(docname), colab_url(repository, branch, path), language
        )
        if ref:
            nb.metadata["reader_notebook"]["commit"] = ref
        path = outdir / f"{docname}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, path)
        written.append(path)
    return written


# ---------------------------------------------------------------------------------------------
# Sphinx
# ---------------------------------------------------------------------------------------------


def _base_url(app) -> str:
    url = app.config.reader_notebooks_base_url or app.config.html_baseurl
    if url:
        return url
    repo = (app.config.html_theme_options or {}).get("repository_url", "")
    match = re.match(r"https://github\.com/([^/]+)/([^/]+?)/?$", repo)
    return (
        f"https://{match.group(1).lower()}.github.io/{match.group(2)}/"
        if match
        else "./"
    )


def _notebook_docs(app) -> list[str]:
    env = app.env
    return sorted(d for d in env.found_docs if str(env.doc2path(d)).endswith(".ipynb"))


def _catalogs(env) -> Callable[[str], dict[str, str]] | None:
    """``docname -> {msgid: msgstr}`` of a translated build (None for English)."""
    language = env.config.language
    if _short(language) == "en" or not env.config.locale_dirs:
        return None
    from sphinx.util.i18n import docname_to_domain

    dirs = [Path(env.srcdir, d) for d in env.config.locale_dirs]
    return lambda docname: read_catalog(
        dirs, language, docname_to_domain(docname, env.config.gettext_compact)
    )


def build_finished(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    from sphinx.util import logging

    logger = logging.getLogger(__name__)
    language = app.config.language or "en"
    base = _base_url(app)
    base = base.rstrip("/") + "/" + edition_prefix(language) if base != "./" else base
    index = BookIndex.from_env(app.env, base)
    written = write_reader_notebooks(
        index,
        Path(app.srcdir),
        _notebook_docs(app),
        Path(app.outdir).parent / "jupyter_execute",
        Path(app.outdir) / OUTPUT_DIR,
        lambda message: logger.warning(message, type="reader_notebooks"),
        language,
        _catalogs(app.env),
        branch=app.config.reader_notebooks_branch,
    )
    logger.info(
        f"reader notebooks: {len(written)} written to {Path(app.outdir) / OUTPUT_DIR}"
    )


def _retarget(buttons: list, swap: Callable[[dict], None]) -> None:
    for button in buttons:
        if isinstance(button, dict):
            swap(button)
            _retarget(button.get("buttons", []) or button.get("items", []), swap)


def point_buttons_at_reader_notebooks(
    app, pagename, templatename, context, doctree
) -> None:
    """Colab, Binder and the ".ipynb" download of a notebook page open its reader notebook.

    sphinx-book-theme builds the launch links from the repository and branch
    (``…/blob/<branch>/<page>.ipynb``); here the branch becomes ``reader_notebooks_branch``,
    where CI publishes ``_build/html/notebooks`` with the repository's paths, and a
    translated edition's under its folder (``zh/book/04_reparameterization.ipynb``, from
    ``_build/html/zh/notebooks``).
    """
    branch = app.config.reader_notebooks_branch
    if not branch or pagename not in app.env.found_docs:
        return
    prefix = edition_prefix(app.config.language)
    if not str(app.env.doc2path(pagename)).endswith(".ipynb"):
        return
    source_branch = (app.config.html_theme_options or {}).get(
        "repository_branch", "main"
    ) or "main"
    reader = f"{context['pathto'](OUTPUT_DIR, 1)}/{pagename}.ipynb"

    def swap(button: dict) -> None:
        url = button.get("url", "")
        if "colab" in url:
            button["url"] = url.replace(
                f"/blob/{source_branch}/", f"/blob/{branch}/{prefix}"
            )
        elif "/v2/gh/" in url or "/v2/git/" in url:
            url = re.sub(
                rf"/{re.escape(source_branch)}(\?|$)", rf"/{branch}\1", url, count=1
            )
            button["url"] = re.sub(
                r"(urlpath=(?:tree|lab/tree|notebooks)/)", rf"\1{prefix}", url
            )
        elif button.get("label") == "download-source-button" and url.endswith(".ipynb"):
            button["url"] = reader
            button["tooltip"] = "Download the notebook (for Jupyter)"

    _retarget(context.get("header_buttons", []), swap)


def setup(app):
    app.add_config_value("reader_notebooks_base_url", "", "html")
    app.add_config_value("reader_notebooks_branch", "notebooks", "html")
    app.connect("build-finished", build_finished)
    app.connect("html-page-context", point_buttons_at_reader_notebooks, priority=600)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


def _write_edition(build: Path, html: Path, base: str) -> int:
    """The reader notebooks of the build in ``build`` (``.doctrees``, ``jupyter_execute``),
    written to ``html/notebooks``; returns how many."""
    with open(build / ".doctrees" / "environment.pickle", "rb") as f:
        env = pickle.load(f)
    language = env.config.language or "en"
    warnings: list[str] = []
    docs = sorted(d for d in env.found_docs if str(env.doc2path(d)).endswith(".ipynb"))
    written = write_reader_notebooks(
        BookIndex.from_env(env, base.rstrip("/") + "/" + edition_prefix(language)),
        Path(env.srcdir),
        docs,
        build / "jupyter_execute",
        html / OUTPUT_DIR,
        warnings.append,
        language,
        _catalogs(env),
    )
    for message in sorted(set(warnings)):
        print("warning:", message, file=sys.stderr)
    print(f"{len(written)} reader notebooks in {html / OUTPUT_DIR}")
    return len(written)


def main(argv: list[str]) -> int:
    """``python tools/reader_notebooks.py BUILD_DIR [BASE_URL]``: (re)write the reader notebooks
    of an existing build from its saved environment, without building again: the English
    edition's (``_build/html/notebooks``) and, when it is built, the Chinese one's
    (``_build/zh/_build`` -> ``_build/html/zh/notebooks``, as tools/build_books.py lays it out)."""
    build = Path(argv[0] if argv else "_build")
    base = argv[1] if len(argv) > 1 else "https://vae-tutorial.github.io/vae-tutorial/"
    _write_edition(build, build / "html", base)
    for edition in sorted(build.glob("*/_build/.doctrees/environment.pickle")):
        folder = edition.parents[2].name  # _build/zh/_build/... -> zh
        if (build / "html" / folder).is_dir():
            _write_edition(edition.parents[1], build / "html" / folder, base)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

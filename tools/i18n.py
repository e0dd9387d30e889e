"""The translators' tool: extract the English messages, update the catalogs, check them.

    python tools/i18n.py extract     # English messages -> _build/gettext/book/*.pot
    python tools/i18n.py update      # -> locales/zh_CN/LC_MESSAGES/book/*.po (sphinx-intl)
    python tools/i18n.py stats       # translated / fuzzy / untranslated, per catalog
    python tools/i18n.py check       # msgfmt --check, and every message translated

After the English prose changes: ``extract``, ``update``, translate the messages that
``stats`` counts as untranslated or fuzzy (a changed message comes back fuzzy, with the old
translation to start from; remove the ``#, fuzzy`` flag once it is right), then ``check``.

``extract`` is Sphinx's gettext builder (``jupyter-book build . --builder custom
--custom-builder gettext``), one catalog per page (``gettext_compact: false``). It needs the
executed notebooks, since figure captions are attached to a cell's output: when an English
build has left them in ``_build/jupyter_execute/`` (``python tools/build_books.py en``; or
the Chinese build, in ``_build/zh/_build/jupyter_execute/``), it reads those, in a copy of the
sources with execution off, which takes a minute; otherwise (or with ``--execute``) it
executes every chapter again. Cell outputs and the package's
docstrings are not messages (tools/nb_i18n.py).

``update`` is ``sphinx-intl update -p _build/gettext -l zh_CN -d locales``, then fills in
the messages that have nothing to translate (only maths, code, roles and labels: the
translation is the message itself; `nothing_to_translate`).
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_books import merge  # noqa: E402

LANGUAGE = "zh_CN"
LOCALES = ROOT / "locales"
GETTEXT = ROOT / "_build" / "gettext"
# executed notebooks left by a build: the English one's, else the Chinese one's (the same)
EXECUTED_DIRS = (ROOT / "_build" / "jupyter_execute", ROOT / "_build" / "zh" / "_build" / "jupyter_execute")


def catalogs(language: str = LANGUAGE) -> list[Path]:
    """The language's .po files, one per page (not the theme's words, `ui_catalogs`)."""
    ui = set(ui_catalogs(language))
    return sorted(p for p in (LOCALES / language / "LC_MESSAGES").rglob("*.po") if p not in ui)


def ui_catalogs(language: str = LANGUAGE) -> list[Path]:
    """The catalogs of the theme's words (tools/nb_i18n.py, ``UI_CATALOGS``), written by hand."""
    from nb_i18n import UI_CATALOGS

    folder = LOCALES / language / "LC_MESSAGES"
    return [folder / f"{domain}.po" for domain in UI_CATALOGS if (folder / f"{domain}.po").is_file()]


# What a message may hold that is never translated: inline and display maths, inline code,
# roles with their target ({doc}`02_elbo`), MyST substitutions and HTML entities.
_UNTRANSLATED_SPANS = re.compile(
    r"\$\$.+?\$\$|\$[^$]+\$|``.+?``|`[^`]+`|\{[\w:.-]+\}`[^`]*`|\{\{[^}]*\}\}|&\w+;", re.S
)
_TEXT_IN_MATHS = re.compile(r"\\(?:text|textrm|textit|textbf|mbox|hbox)\s*\{")


def nothing_to_translate(msgid: str) -> bool:
    """True when ``msgid`` has no prose: its translation is the message itself.

    That is, once maths, code and roles are removed, no word of two or more letters is left
    (labels such as ``E1`` and ``(a)`` stay), or the message is display maths (LaTeX with a
    backslash command and no ``$``) without ``\\text{}``, the one part of maths that is
    translated.
    """
    stripped = msgid.strip()
    if "$" not in stripped and "`" not in stripped and re.search(r"\\[A-Za-z]+", stripped) \
            and _latex_words_only(stripped):
        return not _TEXT_IN_MATHS.search(stripped)
    rest = _UNTRANSLATED_SPANS.sub(" ", stripped)
    return not re.search(r"[^\W\d_]{2,}|\b[A-Za-z]\.[A-Za-z]\.|\bn/a\b", rest)


def _latex_words_only(text: str) -> bool:
    """Every run of letters in ``text`` is a LaTeX command, environment or argument name."""
    without_commands = re.sub(r"\\[A-Za-z]+\*?", " ", text)
    without_groups = re.sub(r"\{[^{}]*\}", " ", without_commands)
    return not re.search(r"[A-Za-z]{4,}", without_groups)


def _notebooks_in_toc() -> list[str]:
    toc = (ROOT / "_toc.yml").read_text(encoding="utf-8")
    return [f for f in re.findall(r"file:\s*(\S+)", toc) if (ROOT / f"{f}.ipynb").exists()]


def extract(execute: bool = False) -> Path:
    """Run the gettext builder; return the folder of .pot files (``_build/gettext``)."""
    notebooks = _notebooks_in_toc()
    executed = next((d for d in EXECUTED_DIRS if all((d / f"{nb}.ipynb").exists() for nb in notebooks)), None)
    shutil.rmtree(GETTEXT, ignore_errors=True)
    # (its own --path-output: the gettext builder cannot share the HTML build's doctrees)
    work = ROOT / "_build" / "i18n-extract"
    shutil.rmtree(work, ignore_errors=True)
    if execute or executed is None:
        print("extract: executing every chapter (no executed notebooks from a build)")
        subprocess.run(["jupyter-book", "build", str(ROOT), "--path-output", str(work),
                        "--builder", "custom", "--custom-builder", "gettext"], cwd=ROOT, check=True)
        shutil.move(str(work / "_build" / "gettext"), str(GETTEXT))
        return GETTEXT
    print(f"extract: reading the executed notebooks in {executed.relative_to(ROOT)}")
    source = work / "src"
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        "_build", ".git", "node_modules", "vendor", "*.pt", "__pycache__", ".ipynb_checkpoints"))
    for nb in notebooks:
        shutil.copy2(executed / f"{nb}.ipynb", source / f"{nb}.ipynb")
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    # (glued numbers are not part of any message, and an executed notebook keeps no glue)
    config = merge(config, {"execute": {"execute_notebooks": "off"},
                            "sphinx": {"config": {"suppress_warnings": ["mystnb.glue"]}}})
    sphinx = config.setdefault("sphinx", {})
    sphinx["local_extensions"] = {
        name: str((ROOT / path).resolve()) for name, path in sphinx.get("local_extensions", {}).items()
    }
    config_file = work / "_config.yml"
    config_file.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    subprocess.run(["jupyter-book", "build", str(source), "--config", str(config_file),
                    "--path-output", str(work), "--builder", "custom", "--custom-builder", "gettext"],
                   cwd=source, check=True)
    shutil.move(str(work / "_build" / "gettext"), str(GETTEXT))
    shutil.rmtree(work, ignore_errors=True)
    return GETTEXT


def prefill(language: str = LANGUAGE) -> int:
    """Give every message with `nothing_to_translate` itself as its translation."""
    import polib

    filled = 0
    for path in catalogs(language):
        po = polib.pofile(str(path), wrapwidth=76)
        changed = False
        for entry in po:
            if not entry.obsolete and not entry.msgstr and nothing_to_translate(entry.msgid):
                entry.msgstr = entry.msgid
                changed = True
                filled += 1
        if changed:
            po.save(str(path))
    return filled


def update(language: str = LANGUAGE) -> None:
    """sphinx-intl update from ``_build/gettext``, then `prefill`."""
    if not any(GETTEXT.rglob("*.pot")):
        raise SystemExit("update: no _build/gettext/**/*.pot: run `python tools/i18n.py extract` first")
    subprocess.run([sys.executable, "-m", "sphinx_intl", "update", "-p", str(GETTEXT),
                    "-l", language, "-d", str(LOCALES)], cwd=ROOT, check=True)
    print(f"update: {prefill(language)} messages without prose filled in with themselves")
    print(f"update: {drop_format_flags(language)} python-format and python-brace-format flags removed")


def drop_format_flags(language: str = LANGUAGE) -> int:
    """Remove ``python-format`` and ``python-brace-format`` flags: the messages are Markdown,
    never format strings.

    The extractor flags any message that happens to hold ``% o`` ("… 91.0 % of …") as
    ``python-format``, and ``msgfmt --check`` then rejects a correct translation such as
    "… 91.0 %。"; Babel 2.19 also flags a message with ``{…}`` in its maths
    (``\text{grey}``) as ``python-brace-format``, and a translated ``\text{灰度}`` fails.
    """
    import polib

    dropped = 0
    for path in catalogs(language):
        po = polib.pofile(str(path), wrapwidth=76)
        changed = False
        for entry in po:
            for flag in ("python-format", "no-python-format", "python-brace-format",
                         "no-python-brace-format"):
                if flag in entry.flags:
                    entry.flags.remove(flag)
                    changed = True
                    dropped += not flag.startswith("no-")
        if changed:
            po.save(str(path))
    return dropped


def stats(language: str = LANGUAGE) -> dict[str, dict[str, int]]:
    """Per catalog: messages, translated, fuzzy, untranslated (obsolete ones not counted)."""
    import polib

    table = {}
    for path in catalogs(language):
        po = polib.pofile(str(path))
        entries = [e for e in po if not e.obsolete]
        fuzzy = sum("fuzzy" in e.flags for e in entries)
        untranslated = sum(not e.msgstr and "fuzzy" not in e.flags for e in entries)
        table[str(path.relative_to(LOCALES / language / "LC_MESSAGES"))] = {
            "messages": len(entries), "translated": len(entries) - fuzzy - untranslated,
            "fuzzy": fuzzy, "untranslated": untranslated,
        }
    return table


def check(language: str = LANGUAGE) -> list[str]:
    """Problems: msgfmt --check errors, fuzzy or untranslated messages. Empty: all good."""
    problems = []
    for path in catalogs(language) + ui_catalogs(language):
        result = subprocess.run(["msgfmt", "--check", "-o", "/dev/null", str(path)],
                                capture_output=True, text=True)
        if result.returncode:
            problems.append(f"{path.relative_to(ROOT)}: msgfmt --check: {result.stderr.strip()}")
    for name, row in stats(language).items():
        if row["fuzzy"] or row["untranslated"]:
            problems.append(f"{name}: {row['untranslated']} untranslated, {row['fuzzy']} fuzzy")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("extract", help="English messages into _build/gettext/*.pot")
    p.add_argument("--execute", action="store_true",
                   help="execute the chapters even if an English build left them executed")
    for name, text in [("update", "update the catalogs from _build/gettext (sphinx-intl)"),
                       ("stats", "count translated, fuzzy and untranslated messages"),
                       ("check", "msgfmt --check; fail on fuzzy or untranslated messages")]:
        sub.add_parser(name, help=text).add_argument("-l", "--language", default=LANGUAGE)
    args = parser.parse_args(argv)
    if args.command == "extract":
        print(f"extract: catalogs in {extract(args.execute)}")
    elif args.command == "update":
        update(args.language)
    elif args.command == "stats":
        total = {"messages": 0, "translated": 0, "fuzzy": 0, "untranslated": 0}
        print(f"{'catalog':32} {'messages':>8} {'translated':>10} {'fuzzy':>6} {'untranslated':>12}")
        for name, row in stats(args.language).items():
            print(f"{name:32} {row['messages']:8} {row['translated']:10} {row['fuzzy']:6} "
                  f"{row['untranslated']:12}")
            total = {k: total[k] + row[k] for k in total}
        print(f"{'total':32} {total['messages']:8} {total['translated']:10} {total['fuzzy']:6} "
              f"{total['untranslated']:12}")
    elif args.command == "check":
        problems = check(args.language)
        print("\n".join(problems) or "check: every catalog compiles and every message is translated")
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())

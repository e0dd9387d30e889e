"""Build the English book, the Chinese book, or both, from the same sources.

    python tools/build_books.py            # both: _build/html/ and _build/html/zh/
    python tools/build_books.py en         # English only (= jupyter-book build .)
    python tools/build_books.py zh         # Chinese only, into _build/html/zh/
    python tools/build_books.py --strict   # CI: -W -n --keep-going (any warning fails)

The Chinese edition is built with ``language: zh_CN``: Sphinx replaces every prose message by
its translation from ``locales/zh_CN/LC_MESSAGES/``; code, maths and executed outputs are the
same notebooks' (executed again in that build, with the same seeds). Its configuration is
``_config.yml`` with ``locales/zh_CN/_config.yml`` merged in (`zh_config`), written to
``_build/zh/_config.yml`` at build time: the overrides file holds only what differs, so the
two configurations cannot drift apart. Jupyter Book 1.x puts a build with
``--path-output DIR`` in ``DIR/_build/html``; that folder is moved to ``_build/html/zh``.
The Chinese build also writes ``_build/zh/_build/i18n-messages.json``, every message it
looked up (tools/nb_i18n.py), which tests/test_i18n.py compares with the catalogs.

Execution: before Jupyter Book starts, the chapters missing from the shared execution cache
(``_build/.jupyter_cache``, tools/exec_cache.py) are executed ``--jobs`` at a time (default:
one per core, each kernel with one BLAS thread unless ``OMP_NUM_THREADS`` is set), longest
first by ``benchmarks/results/book_runtime.json``. The build then reads every chapter from the
cache, and the Chinese build reads the English build's: each chapter is executed once for
both editions, and both show the same numbers by construction.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import exec_cache  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LANGUAGES = {"zh": "zh_CN"}
BUILD = ROOT / "_build"
STRICT = ["-W", "-n", "--keep-going"]


def merge(base: dict, overrides: dict) -> dict:
    """``base`` updated by ``overrides``: mappings merged key by key, anything else replaced."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def overrides_path(language: str) -> Path:
    return ROOT / "locales" / language / "_config.yml"


def edition_config(language: str) -> dict:
    """The full Jupyter Book configuration of the edition in ``language`` (e.g. ``zh_CN``).

    Paths that Jupyter Book resolves against the configuration file's folder (the local
    extensions) and those Sphinx resolves against the working directory (the search
    dictionary) are made absolute, since the file is written under ``_build/``.
    """
    english = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    config = merge(english, yaml.safe_load(overrides_path(language).read_text(encoding="utf-8")))
    sphinx = config.setdefault("sphinx", {})
    sphinx["local_extensions"] = {
        name: str((ROOT / path).resolve()) for name, path in sphinx.get("local_extensions", {}).items()
    }
    search = sphinx.get("config", {}).get("html_search_options") or {}
    if "dict" in search:
        search["dict"] = str((ROOT / search["dict"]).resolve())
    return config


def output_dir(edition: str) -> Path:
    """Where ``jupyter-book --path-output`` builds the edition (its own _build inside)."""
    return BUILD / edition


def messages_file(edition: str = "zh") -> Path:
    """The messages the translated build looked up (written by tools/nb_i18n.py)."""
    return output_dir(edition) / "_build" / "i18n-messages.json"


def chapters() -> list[Path]:
    """The notebooks of the table of contents, in its order."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    files = [toc["root"]]
    stack = list(toc.get("parts", [])) + list(toc.get("chapters", []))
    while stack:
        entry = stack.pop(0)
        if "file" in entry:
            files.append(entry["file"])
        stack[0:0] = list(entry.get("chapters", [])) + list(entry.get("sections", []))
    return [ROOT / f"{name}.ipynb" for name in files if (ROOT / f"{name}.ipynb").exists()]


def default_jobs() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def execute(jobs: int) -> None:
    """Fill the shared execution cache, ``jobs`` chapters at a time (tools/exec_cache.py)."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    if str(config.get("execute", {}).get("execute_notebooks")) != "cache":
        return
    if jobs > 1:
        os.environ.setdefault("OMP_NUM_THREADS", "1")  # two kernels on two cores, not four threads
    try:
        runtimes = json.loads((ROOT / "benchmarks/results/book_runtime.json").read_text())["chapters"]
    except (OSError, ValueError, KeyError):
        runtimes = {}
    exec_cache.prefill(chapters(), jobs=jobs, timeout=int(config["execute"].get("timeout", 600)),
                       order=runtimes)


def build_english(extra: list[str]) -> None:
    subprocess.run(["jupyter-book", "build", str(ROOT), *extra], cwd=ROOT, check=True)


def build_translation(edition: str, extra: list[str]) -> Path:
    language = LANGUAGES[edition]
    out = output_dir(edition)
    out.mkdir(parents=True, exist_ok=True)
    config_file = out / "_config.yml"
    config_file.write_text(
        "# Generated by tools/build_books.py from _config.yml and "
        f"locales/{language}/_config.yml: do not edit.\n"
        + yaml.safe_dump(edition_config(language), allow_unicode=True, sort_keys=False),
        encoding="utf-8",
    )
    html = out / "_build" / "html"
    shutil.rmtree(html, ignore_errors=True)
    subprocess.run(
        ["jupyter-book", "build", str(ROOT), "--config", str(config_file),
         "--path-output", str(out), *extra],
        cwd=ROOT,
        check=True,
    )
    target = BUILD / "html" / edition
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(html), str(target))
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("editions", nargs="*", default=[], metavar="{" + ",".join(["en", *LANGUAGES]) + "}",
                        help="which editions (default: all), English first")
    parser.add_argument("--strict", action="store_true",
                        help="as CI: -W -n --keep-going (every warning is an error)")
    parser.add_argument("--jobs", "-j", type=int, default=default_jobs(),
                        help="chapters executed at a time before the build (default: one per core)")
    args = parser.parse_args(argv)
    unknown = [e for e in args.editions if e not in ("en", *LANGUAGES)]
    if unknown:  # (argparse's choices= refuses an empty list of editions on Python < 3.12)
        parser.error(f"unknown edition {unknown[0]!r}: choose from en, {', '.join(LANGUAGES)}")
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, not {args.jobs}")
    extra = STRICT if args.strict else []
    editions = args.editions or ["en", *LANGUAGES]
    execute(args.jobs)
    if "en" in editions:
        build_english(extra)
    for edition in LANGUAGES:
        if edition in editions:
            print(f"{edition} edition: {build_translation(edition, extra)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The Chinese edition's catalogs (locales/zh_CN) and the tools that make and use them.

Fast, no build needed: every message of every catalog is translated and not fuzzy, every
catalog compiles (``msgfmt --check``), a translation keeps the message's maths, code, roles
and link targets, the preface quotes the source article exactly, and the terminology is
used consistently. When a build has run, its messages are compared with the catalogs
(`test_catalogs_match_the_sources`): the Chinese build records every message it looked up
(tools/nb_i18n.py), and ``python tools/i18n.py extract`` leaves .pot files; with neither,
that test is skipped, unless ``VAE_TUTORIAL_I18N_TEST=require`` (CI, after the Chinese
build). So is the check of the built Chinese pages' display maths against their English twins
(`test_built_chinese_pages_keep_their_display_maths`, after both editions are built).

Docstrings: the API reference's docstrings are not translated, and are not messages
(tools/nb_i18n.py keeps them out of the catalogs), so no exemption is needed here.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from docutils import nodes
from docutils.frontend import get_default_settings
from docutils.utils import new_document

polib = pytest.importorskip("polib")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import build_books  # noqa: E402
import i18n  # noqa: E402
import language_switch  # noqa: E402
import nb_i18n  # noqa: E402

LANGUAGE = "zh_CN"
MESSAGES = ROOT / "locales" / LANGUAGE / "LC_MESSAGES"
REQUIRE = os.environ.get("VAE_TUTORIAL_I18N_TEST") == "require"
CATALOGS = i18n.catalogs(LANGUAGE)


def _entries(path: Path):
    return [e for e in polib.pofile(str(path)) if not e.obsolete and e.msgid]


def _catalog_id(path: Path) -> str:
    return path.relative_to(MESSAGES).with_suffix("").as_posix()


def test_there_is_a_catalog_per_page():
    toc = (ROOT / "_toc.yml").read_text(encoding="utf-8")
    pages = re.findall(r"(?:root|file):\s*(\S+)", toc)
    assert sorted(pages) == sorted(_catalog_id(p) for p in CATALOGS)


@pytest.mark.parametrize("path", CATALOGS, ids=_catalog_id)
def test_every_message_is_translated(path):
    entries = _entries(path)
    fuzzy = [e.msgid[:60] for e in entries if "fuzzy" in e.flags]
    untranslated = [e.msgid[:60] for e in entries if not e.msgstr.strip() and "fuzzy" not in e.flags]
    assert not fuzzy and not untranslated, (
        f"{path.name}: {len(untranslated)} untranslated, {len(fuzzy)} fuzzy "
        f"(python tools/i18n.py stats), e.g. {(untranslated + fuzzy)[:3]}"
    )


@pytest.mark.skipif(shutil.which("msgfmt") is None, reason="msgfmt (GNU gettext) is not installed")
@pytest.mark.parametrize("path", CATALOGS, ids=_catalog_id)
def test_catalog_compiles(path):
    result = subprocess.run(["msgfmt", "--check", "-o", os.devnull, str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------- what a translation keeps

_MATHS = re.compile(r"\$\$.+?\$\$|\$[^$\n]+\$", re.S)
_CODE = re.compile(r"``.+?``|`[^`]+`")
# scanned left to right, so that a `$HOME` in code is code and a `x` in maths is maths
_SPAN = re.compile(r"(?P<role>\{[\w:.-]+\}`[^`]*`)|(?P<code>``.+?``|`[^`]+`)"
                   r"|(?P<maths>\$\$.+?\$\$|\$[^$\n]+\$)|\]\((?P<link>[^)\s]+)\)", re.S)
_TEXT_IN_MATHS = re.compile(r"\\(?:text|textrm|textit|textbf|mbox)\s*\{")


def preserved_spans(message: str) -> Counter:
    """What a translation must copy unchanged: maths (but not maths with ``\\text{}``),
    roles (their target, when they have an explicit title: ``{doc}`title <target>```),
    inline code and link targets, as a multiset."""
    spans: Counter = Counter()
    for match in _SPAN.finditer(message):
        kind, span = match.lastgroup, match.group(match.lastgroup)
        if kind == "maths" and _TEXT_IN_MATHS.search(span):
            span = "maths-with-text"
        elif kind == "role":
            name, content = re.match(r"(\{[^}]+\})`([^`]*)`", span).groups()
            target = re.search(r"<([^<>]+)>\s*$", content)
            span = name + (target.group(1) if target else content)
        spans[span] += 1
    return spans


def test_preserved_spans_sees_maths_roles_code_and_links():
    english = "See {doc}`Chapter 2 <02_elbo>`, $q_\\phi$, `fit` and [this](https://x.org)."
    assert preserved_spans(english) == preserved_spans(
        "见{doc}`第 2 章 <02_elbo>`、$q_\\phi$、`fit` 和[此处](https://x.org)。")
    assert preserved_spans(english) != preserved_spans("见第 2 章、$q_\\theta$ 和 `fit`。")
    assert preserved_spans("$\\text{mean}$") == preserved_spans("$\\text{均值}$")
    assert preserved_spans("`$HOME/x` or `$HOME`") == Counter({"`$HOME/x`": 1, "`$HOME`": 1})


def _without_quoted_code(msgstr: str) -> str:
    """``msgstr`` without quotations of the source article's code (「`…`」), which the
    Chinese edition adds next to an erratum: the only code a translation may add."""
    return re.sub(r"「`[^`」]+`」", "「」", msgstr)


@pytest.mark.parametrize("path", CATALOGS, ids=_catalog_id)
def test_translations_keep_maths_code_and_roles(path):
    bad = []
    for entry in _entries(path):
        if not entry.msgstr or entry.msgstr == entry.msgid:
            continue
        if "$" not in entry.msgid and "\\begin{" in entry.msgid:  # display maths
            ok = bool(_TEXT_IN_MATHS.search(entry.msgid))  # only \text{} may change
        else:
            ok = preserved_spans(entry.msgid) == preserved_spans(_without_quoted_code(entry.msgstr))
        if not ok:
            missing = preserved_spans(entry.msgid) - preserved_spans(_without_quoted_code(entry.msgstr))
            extra = preserved_spans(_without_quoted_code(entry.msgstr)) - preserved_spans(entry.msgid)
            bad.append(f"{entry.msgid[:50]!r}: missing {list(missing)[:3]}, added {list(extra)[:3]}")
    assert not bad, f"{path.name}: " + "\n".join(bad[:10])


# ---------------------------------------------------------------- the errata's quotations

def _source_article() -> str | None:
    candidates = [os.environ.get("VAE_TUTORIAL_SOURCE_ARTICLE", "")]
    # the project's shared folder sits beside the repository (as in CI: ../shared/seed/)
    for seed in (Path(__file__).resolve().parents[2] / "shared" / "seed", Path("/work/shared/seed")):
        candidates += [str(p) for p in sorted(seed.glob("*.txt"))]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate).read_text(encoding="utf-8")
    return None


def _normalise(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_errata_quote_the_source_article_exactly():
    """The preface's 「quotations」 of the source article (E1–E14) are its own words."""
    intro = MESSAGES / "book" / "intro.po"
    # a quote of the article's code or formula is set as inline code inside the brackets
    quotes = [q.strip("`") for e in _entries(intro) for q in re.findall(r"「([^」]+)」", e.msgstr)]
    if not quotes:
        pytest.skip("intro.po quotes nothing yet")
    article = _source_article()
    if article is None:
        pytest.skip("the source article is not on this machine (set VAE_TUTORIAL_SOURCE_ARTICLE)")
    flat = _normalise(article)
    wrong = [q for q in quotes if _normalise(q).replace("……", "") not in flat
             and not all(_normalise(part) in flat for part in q.split("……") if part.strip())]
    assert not wrong, f"not in the article: {wrong}"


# ---------------------------------------------------------------- terminology

# variant -> the term of locales/zh_CN/TERMINOLOGY.md (quotations of the article are exempt)
FORBIDDEN = {
    "重新参数化": "重参数化", "再参数化": "重参数化", "重参数技巧": "重参数化技巧",
    "变分自动编码器": "变分自编码器", "自动编码器": "自编码器",
    "证据下限": "证据下界",
    "后验崩塌": "后验坍塌", "后验塌缩": "后验坍塌", "后验崩溃": "后验坍塌",
    "潜变量": "隐变量", "潜在变量": "隐变量", "潜空间": "隐空间", "潜在空间": "隐空间",
    "比特返还": "比特回传", "比特回收": "比特回传",
    "蒙特卡罗": "蒙特卡洛", "小批次": "小批量", "逻辑斯蒂": "逻辑斯谛",
    "摊销推理": "摊销推断", "摊还推断": "摊销推断", "标准误差": "标准误",
    "KL散度": "KL 散度",
    "隐空间浏览器": "隐空间探索器", "交互式浏览器": "探索器",
    # the editor's review of 2026-12-07 (D04-D25, D29)
    "英文原文": "英文版", "批次": "批量", "可分解": "因子化", "两级": "两层",
    "幅图像": "张图像", "幅测试图像": "张图像", "摊付": "分摊", "路径导数梯度": "路径梯度",
    "高斯，学习 σ": "高斯，可学习 σ", "码率–失真": "率失真", "码率-失真": "率失真",
    "正确地理解变分自编码器": "变分自编码器：正确的推导与实现", "GPU 轮": "轮",
    "什么都不是": "不构成概率模型", "梯度更清晰": "信噪比", "梯度更模糊": "信噪比",
    "nats/图像": "每张图像", "每图像": "每张图像", "n/a": "不适用", "零之外": "与零的距离",
    "挂钟时间": "墙钟时间",
    # the full read of 2026-12-07 (issue 22 item 2)
    "倍标准误": "个标准误", "负载均值": "负载平均值",
}
# calques that a fixed string cannot catch: pattern -> what the glossary says instead
FORBIDDEN_PATTERNS = {
    r"百万个": "以万计（490 万个参数）",  # (the number itself may be maths: $\approx 4.9$ 百万个)
    r"小 ?(\{glue:text\}|[\d.,]+)\S* ?倍": "只有……的 1/N",
    r"\d+ ?个(较短的)?轮": "N 轮",
    r"\d+ 位有效数字": "尾数（有效位）",
}
# Chinese typography in the catalogs as written (code and roles included): pattern -> fix
TYPOGRAPHY = {
    r"`, (?=`|\{)": "、 between listed code spans or roles",
    r"` \(`": "full-width parentheses （） around code in Chinese text",
    r"(`|\d) %": "no space before %",
}


@pytest.mark.parametrize("path", CATALOGS, ids=_catalog_id)
def test_terminology_is_consistent(path):
    bad = []
    for entry in _entries(path):
        text = re.sub(r"「[^」]*」", "", entry.msgstr)  # the article's own words stay its own
        text = _MATHS.sub("", _CODE.sub("", text))
        bad += [f"{variant} -> {term}: {entry.msgstr[:40]!r}"
                for variant, term in FORBIDDEN.items() if variant in text]
        bad += [f"{pattern} -> {term}: {entry.msgstr[:40]!r}"
                for pattern, term in FORBIDDEN_PATTERNS.items() if re.search(pattern, text)]
        quoted_out = re.sub(r"「[^」]*」", "", entry.msgstr)
        bad += [f"{pattern}: {fix}: {entry.msgstr[:40]!r}"
                for pattern, fix in TYPOGRAPHY.items() if re.search(pattern, quoted_out)]
    assert not bad, f"{path.name}: " + "\n".join(bad[:10])


def test_the_glossary_rejects_the_reviewed_variants():
    """Each variant the review named fails the terminology check (so none comes back)."""
    def rejected(msgstr: str) -> bool:
        text = _MATHS.sub("", _CODE.sub("", re.sub(r"「[^」]*」", "", msgstr)))
        return (any(v in text for v in FORBIDDEN) or any(re.search(p, text) for p in FORBIDDEN_PATTERNS)
                or any(re.search(p, re.sub(r"「[^」]*」", "", msgstr)) for p in TYPOGRAPHY))
    for variant in ["交互式浏览器", "在批次上取平均", "后验近似可分解", "两级 MLP HVAE", "12,000 幅图像",
                    "能够摊付一次性的启动成本", "（路径导数梯度）", "高斯，学习 σ", "码率–失真权衡",
                    "正确地理解变分自编码器", "需要 $a\\approx 4.9$ 百万个参数", "最多 2,000 个 GPU 轮",
                    "方差都小 {glue:text}`r:.0f` 倍", "每次训练 5 个较短的轮（epoch）", "什么都不是（未归一化）",
                    "使解码器的梯度更清晰", "高出 1 nats/图像", "每图像 nats 数", "n/a", "保持英文原文",
                    "都不到零之外三个标准误", "8 位有效数字（存储 7 位）", "墙上的挂钟时间",
                    "{doc}`04_reparameterization`, {doc}`07_beta`", "`ArgumentError` (`ValueError`)",
                    "{glue:text}`x:.0f` % 的"]:
        assert rejected(variant), variant
    for fine in ["在批量上取平均", "两层 MLP HVAE", "方差只有 1/{glue:text}`r:.0f`", "训练 5 轮（epoch）",
                 "10% 的", "小了 e 的这么多次方倍", "「`a, b`」", "两到三位十进制有效数字",
                 "原文（本书勘误的那篇文章）"]:
        assert not rejected(fine), fine


@pytest.mark.parametrize("path", [p for p in CATALOGS if p.stem != "intro"], ids=_catalog_id)
def test_the_source_article_is_named_at_its_first_use(path):
    """原文 means only the criticised article: in each chapter its first use says so (review
    D04: a reader who starts at chapter 5 would take it for the English original)."""
    for entry in _entries(path):
        text = re.sub(r"「[^」]*」", "", entry.msgstr)
        if "原文" in text:
            assert "原文（本书勘误的那篇文章）" in text.split("原文", 1)[0] + "原文" + text.split("原文", 1)[1][:13], \
                f"{path.name}: the first 原文 is not glossed: {entry.msgstr[:60]!r}"
            return


def test_the_forbidden_variants_are_not_terms():
    terminology = (ROOT / "locales" / LANGUAGE / "TERMINOLOGY.md").read_text(encoding="utf-8")
    table = "\n".join(line for line in terminology.splitlines() if line.startswith("|"))
    assert all(term.split()[-1] in table for term in FORBIDDEN.values())
    assert not [variant for variant in FORBIDDEN if variant in table]


# ---------------------------------------------------------------- catalogs vs sources

def _built_messages() -> dict[str, dict[str, set[str]]]:
    """The messages of the current sources, from whatever build left them: {source: {page:
    msgids}}."""
    found = {}
    record = build_books.messages_file("zh")
    if record.is_file():
        data = json.loads(record.read_text(encoding="utf-8"))
        # (an empty msgid is no message: the caption of the hidden toctree of a page with sections)
        found[str(record)] = {page: {i for i in ids if i.strip()} for page, ids in data["messages"].items()}
    pots = sorted(i18n.GETTEXT.rglob("*.pot"))
    if pots:
        found[str(i18n.GETTEXT)] = {
            p.relative_to(i18n.GETTEXT).with_suffix("").as_posix():
                {e.msgid for e in polib.pofile(str(p)) if e.msgid} for p in pots
        }
    return found


def test_catalogs_match_the_sources():
    """No message of the sources is missing from the catalogs, and no catalog holds a
    message the sources no longer have (update with `python tools/i18n.py update`)."""
    built = _built_messages()
    if not built:
        if REQUIRE:
            pytest.fail("no Chinese build and no extraction: run python tools/build_books.py zh")
        pytest.skip("no build: run python tools/build_books.py zh or python tools/i18n.py extract")
    catalogs = {_catalog_id(p): {e.msgid for e in _entries(p)} for p in CATALOGS}
    problems = []
    for source, pages in built.items():
        for page in sorted(set(pages) | set(catalogs)):
            new = pages.get(page, set()) - catalogs.get(page, set())
            gone = catalogs.get(page, set()) - pages.get(page, set())
            if new:
                problems.append(f"{page}: {len(new)} messages not in the catalog, e.g. {sorted(new)[:2]}")
            if gone:
                problems.append(f"{page}: {len(gone)} catalog messages not in the sources, "
                                f"e.g. {sorted(gone)[:2]}")
        assert not problems, f"compared with {source}:\n" + "\n".join(problems)


# ---------------------------------------------------------------- the tools

def test_nothing_to_translate():
    for msgid in ["E1", "$p(z)=\\mathcal N(0,I)$", "{doc}`02_elbo`", "`model.decode(z)`", "#",
                  "\n\\begin{aligned}\n\\log p &= \\mathrm{ELBO} \\\\\n&\\ge 0\n\\end{aligned}\n"]:
        assert i18n.nothing_to_translate(msgid), msgid
    for msgid in ["The prior $p(z)$", "n/a", "e.g. `x`", "yes",
                  "\\begin{aligned} a &= \\text{mean} \\end{aligned}"]:
        assert not i18n.nothing_to_translate(msgid), msgid


def test_zh_config_is_the_english_one_plus_the_overrides():
    english = build_books.yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    zh = build_books.edition_config(LANGUAGE)
    assert zh["sphinx"]["config"]["language"] == LANGUAGE
    assert zh["sphinx"]["config"]["gettext_compact"] is False
    assert zh["sphinx"]["config"]["locale_dirs"] == ["locales/"]
    assert zh["sphinx"]["config"]["language_switch"]["prefix"] == "../"
    assert zh["sphinx"]["config"]["togglebutton_hint"] == "点击显示"  # not the English default
    assert english["sphinx"]["config"]["language_switch"]["prefix"] == "zh/"
    for key in english:
        if key not in ("title", "author", "sphinx"):
            assert zh[key] == english[key], key
    # what the Chinese edition says in Chinese: the link back, the citations' joining words
    for key, value in english["sphinx"]["config"].items():
        if key not in ("language_switch", "bibtex_reference_style"):
            assert zh["sphinx"]["config"][key] == value, key
    assert zh["sphinx"]["config"]["bibtex_reference_style"] == "author_year_zh"
    assert "{type}" not in zh["sphinx"]["config"]["nb_code_prompt_show"]  # it would say "source"
    assert zh["sphinx"]["extra_extensions"] == english["sphinx"]["extra_extensions"]
    for name, path in zh["sphinx"]["local_extensions"].items():
        assert (Path(path) / f"{name}.py").is_file()
    assert Path(zh["sphinx"]["config"]["html_search_options"]["dict"]).is_file()


def test_language_switch_urls():
    url = language_switch.other_edition_url
    assert url("book/04_reparameterization", "zh/") == "../zh/book/04_reparameterization.html"
    assert url("book/04_reparameterization", "../") == "../../book/04_reparameterization.html"
    assert url("search", "zh/") == "zh/search.html"
    assert url("_modules/vae_tutorial/losses", "../") == "../../../_modules/vae_tutorial/losses.html"


def _document():
    return new_document("book/x.ipynb", get_default_settings())


def test_outputs_and_docstrings_are_not_messages():
    from sphinx import addnodes

    doc = _document()
    prose = nodes.paragraph("The trick", "The trick")
    output = nodes.container(nb_element="cell_code_output")
    printed = nodes.paragraph("| model | bits/dim |", "| model | bits/dim |")
    figure = nodes.figure()
    caption = nodes.caption("A rising line.", "A rising line.")
    figure += caption
    output += [printed, figure]
    docstring = nodes.paragraph("Per-example terms", "Per-example terms")
    docstring.source = "/x/vae_tutorial/maths/losses.py:docstring of vae_tutorial.maths.losses.elbo"
    desc = addnodes.desc()
    field = nodes.field_name("Parameters", "Parameters")
    desc += field
    doc += [prose, output, docstring, desc]
    transform = nb_i18n.MarkUntranslatable(doc)
    transform.apply()
    assert printed["translatable"] is False and field["translatable"] is False
    assert docstring["translatable"] is False and "docstring" in docstring["classes"]
    assert "translatable" not in caption and "translatable" not in prose


def test_labels_written_in_chinese_by_extensions_are_not_messages():
    assert nb_i18n.is_generated_label("练习") and nb_i18n.is_generated_label("解答")
    for msgid in ["Exercise", "The prior $p(z)$", "E1", "原文说 「变分自动编码器」 (E1)"]:
        assert not nb_i18n.is_generated_label(msgid), msgid


def test_search_words_are_whole_words_for_jieba():
    jieba = pytest.importorskip("jieba")
    words = [line.split()[0] for line in
             (ROOT / "locales" / LANGUAGE / "search_dict.txt").read_text(encoding="utf-8").splitlines()
             if line.strip()]
    assert "重参数化" in words
    tokenizer = jieba.Tokenizer()
    tokenizer.load_userdict(str(ROOT / "locales" / LANGUAGE / "search_dict.txt"))
    assert "重参数化" in list(tokenizer.cut_for_search("我们使用重参数化技巧"))
    assert [w for w in words if w not in list(tokenizer.cut_for_search(f"这是{w}。"))] == []


def test_zh_search_index_finds_reparameterisation_in_chapter_4():
    index_file = ROOT / "_build" / "html" / "zh" / "searchindex.js"
    if not index_file.is_file():
        if REQUIRE:
            pytest.fail(f"no {index_file}: run python tools/build_books.py zh")
        pytest.skip("no Chinese build (python tools/build_books.py zh)")
    text = index_file.read_text(encoding="utf-8")
    index = json.loads(text[text.index("(") + 1: text.rindex(")")])
    chapter = index["docnames"].index("book/04_reparameterization")

    def pages(table: str) -> set[int]:
        hit = index[table].get("重参数化", [])
        return {hit} if isinstance(hit, int) else set(hit)

    assert chapter in pages("terms") | pages("titleterms")


# ---------------------------------------------------------------- display maths, as built

def _ws(text: str) -> str:
    return " ".join(text.split())


def built_maths_and_text(html: str) -> tuple[list[tuple[str, str, str]], str]:
    r"""A built page's display equations, as (anchor, number, TeX) in page order, and its text
    outside maths, code and scripts. The TeX is what MathJax typesets (``\[…\]`` included);
    an amsmath environment's anchor is a random uuid, so it is left out."""
    bs4 = pytest.importorskip("bs4")
    soup = bs4.BeautifulSoup(html, "html.parser")
    body = soup.body or soup
    maths = []
    for div in body.find_all("div", class_="math"):
        number = ""
        for eqno in div.find_all("span", class_="eqno"):
            for link in eqno.find_all("a", class_="headerlink"):  # "¶" or the theme's "#"
                link.decompose()
            number = _ws(eqno.get_text())
            eqno.decompose()
        anchor = div.get("id", "")
        if re.fullmatch(r"equation-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", anchor):
            anchor = "equation-<uuid>"
        maths.append((anchor, number, _ws(div.get_text())))
    for tag in body.find_all(["script", "style", "pre", "code"]) + body.find_all(class_="math"):
        if not tag.decomposed:
            tag.decompose()
    return maths, body.get_text(" ")


def _translated(tex: str, msgid: str, msgstr: str) -> str | None:
    r"""``tex``, an English equation as built, with the message ``msgid`` translated; None if
    the equation is not that message. (Sphinx shows a message's blank-line-separated parts
    one by one, each wrapped in ``\begin{split}`` if it has ``\\``.)"""
    ids = [_ws(part) for part in msgid.split("\n\n") if part.strip()]
    strs = [_ws(part) for part in msgstr.split("\n\n") if part.strip()]
    if not ids or len(ids) != len(strs) or not all(part in tex for part in ids):
        return None
    for english, chinese in zip(ids, strs):
        tex = tex.replace(english, chinese)
    return tex


def display_maths_problems(translated_html: str, english_html: str,
                           translations: list[tuple[str, str]]) -> list[str]:
    r"""What is wrong with a translated page's display maths, given the English page and the
    page's catalog (msgid, msgstr): the same equations (count, order, anchors, numbers), each
    one's TeX the English one or its translation, and no "::", "$$" or "\[" outside maths
    and code (a formula that was lost or never typeset)."""
    zh, text = built_maths_and_text(translated_html)
    en, _ = built_maths_and_text(english_html)
    problems = []
    if len(zh) != len(en):
        problems.append(f"{len(zh)} display equations, the English page has {len(en)}")
    for i, ((zh_anchor, zh_number, zh_tex), (en_anchor, en_number, en_tex)) in enumerate(zip(zh, en), 1):
        if (zh_anchor, zh_number) != (en_anchor, en_number):
            problems.append(f"equation {i}: {zh_anchor!r} {zh_number!r}, in English {en_anchor!r} {en_number!r}")
        if zh_tex != en_tex and zh_tex not in {_translated(en_tex, a, b) for a, b in translations}:
            problems.append(f"equation {i} {zh_number}: {zh_tex[:80]!r} is neither the English "
                            f"{en_tex[:80]!r} nor its translation")
    for stray in ("::", "$$", "\\["):
        found = [m.start() for m in re.finditer(re.escape(stray), text)]
        if found:
            context = _ws(text[max(0, found[0] - 40):found[0] + 40])
            problems.append(f"{len(found)}× {stray!r} outside maths and code, e.g. {context!r}")
    return problems


def test_display_maths_problems_are_found():
    """The check of the built pages fails on what K01 did (a formula rendered as "::"), on a
    lost or unnumbered equation and on maths that was never typeset."""
    def page(*bodies):
        return "<html><body>" + "".join(bodies) + "</body></html>"

    def eq(tex, label="", number=""):
        eqno = f'<span class="eqno">({number})<a class="headerlink" href="#x">¶</a></span>' if number else ""
        anchor = f' id="equation-{label}"' if label else ""
        return f'<div class="math notranslate nohighlight"{anchor}>{eqno}\\[{tex}\\]</div>'

    english = page(eq("\\text{bits/dim} = b"), eq("a_{\\text{prior}}", "p", "1"), "<p>Text <code>x[::2]</code></p>")
    catalog = [("\\text{bits/dim} = b", "\\text{比特/维} = b"), ("a_{\\text{prior}}", "a_{\\text{先验}}")]
    assert display_maths_problems(english, english, catalog) == []
    good = page(eq("\\text{比特/维} = b"), eq("a_{\\text{先验}}", "p", "1"), "<p>文本</p>")
    assert display_maths_problems(good, english, catalog) == []
    broken = page(eq("::"), eq("::", "p", "1"))
    assert len(display_maths_problems(broken, english, catalog)) == 2
    assert display_maths_problems(page(eq("\\text{比特/维} = b")), english, catalog)  # one lost
    assert display_maths_problems(page(eq("\\text{比特/维} = b"), eq("a_{\\text{先验}}")), english, catalog)
    assert display_maths_problems(page(eq("\\text{比特/维} = x"), eq("a_{\\text{先验}}", "p", "1")),
                                  english, catalog)  # a translation that is not the catalog's
    raw = page(eq("\\text{比特/维} = b"), eq("a_{\\text{先验}}", "p", "1"), "<p>::</p><p>$$a$$ \\[b\\]</p>")
    assert len(display_maths_problems(raw, english, catalog)) == 3


def _catalog_translations(page: str) -> list[tuple[str, str]]:
    path = MESSAGES / f"{page}.po"
    if not path.is_file():
        return []
    return [(e.msgid, e.msgstr) for e in _entries(path) if e.msgstr and "fuzzy" not in e.flags]


def test_built_chinese_pages_keep_their_display_maths():
    r"""Each built Chinese page has its English twin's display equations (count, anchors,
    numbers), each one's TeX is the English or its catalog translation, and no "::", "$$" or
    "\[" is left outside maths and code (review K01: nine translated equations were "::")."""
    html = ROOT / "_build" / "html"
    pages = [_catalog_id(p) for p in CATALOGS]
    built = [page for page in pages if (html / LANGUAGE.split("_")[0] / f"{page}.html").is_file()
             and (html / f"{page}.html").is_file()]
    if not built:
        if REQUIRE:
            pytest.fail(f"no Chinese and English pages in {html}: run python tools/build_books.py")
        pytest.skip("no build of both editions (python tools/build_books.py)")
    if REQUIRE:
        assert built == pages, f"not built in both editions: {sorted(set(pages) - set(built))}"
    problems = []
    for page in built:
        zh = (html / "zh" / f"{page}.html").read_text(encoding="utf-8")
        en = (html / f"{page}.html").read_text(encoding="utf-8")
        problems += [f"{page}: {p}" for p in display_maths_problems(zh, en, _catalog_translations(page))]
    assert not problems, "\n".join(problems[:20])


# ---------------------------------------------------------------- a translated build, small

# the ways the chapters write display maths: $$…$$ with and without a label, the {math}
# directive, an amsmath environment (myst's amsmath extension); the first four with
# translated \text{} labels, as in chapters 3, 6, 7, 8, 12, 14 and 16, the last one unchanged
DISPLAY_MATHS = [
    "$$\n\\text{bits/dim} = \\frac{-\\log p_\\theta(x)}{D\\,\\ln 2}.\n$$",
    ("$$\n\\begin{aligned}\n-\\mathrm{ELBO}(x) ={}& \\underbrace{a}_{\\text{prior}}\\\\\n"
     " &+ \\underbrace{b}_{\\text{diffusion}}\n\\end{aligned}\n$$ (eq-elbo)"),
    "```{math}\n:label: eq-rate\n\n\\text{rate} = R\n```",
    "\\begin{align}\n\\text{gap} &= c\n\\end{align}",
    "$$\nx + 1 = y\n$$",
]
# msgid (as Sphinx extracts it) -> msgstr
DISPLAY_MATHS_ZH = {
    "\n\\text{bits/dim} = \\frac{-\\log p_\\theta(x)}{D\\,\\ln 2}.\n":
        "\n\\text{比特/维} = \\frac{-\\log p_\\theta(x)}{D\\,\\ln 2}.\n",
    "\n\\begin{aligned}\n-\\mathrm{ELBO}(x) ={}& \\underbrace{a}_{\\text{prior}}\\\\\n"
    " &+ \\underbrace{b}_{\\text{diffusion}}\n\\end{aligned}\n":
        "\n\\begin{aligned}\n-\\mathrm{ELBO}(x) ={}& \\underbrace{a}_{\\text{先验}}\\\\\n"
        " &+ \\underbrace{b}_{\\text{扩散}}\n\\end{aligned}\n",
    "\\text{rate} = R": "\\text{码率} = R",
    "\\begin{align}\n\\text{gap} &= c\n\\end{align}": "\\begin{align}\n\\text{差距} &= c\n\\end{align}",
    "\nx + 1 = y\n": "\nx + 1 = y\n",  # nothing to translate: msgstr = msgid
}


def _tiny_book(root: Path) -> None:
    """One notebook with stored outputs (a glued number, a printed table, a captioned
    figure) and display maths, and its zh_CN catalog with one message left untranslated."""
    import nbformat

    glue = nbformat.v4.new_output("display_data", metadata={"scrapbook": {
        "name": "x", "mime_prefix": "application/papermill.record/"}},
        data={"application/papermill.record/text/plain": "3.14159"})
    table = nbformat.v4.new_output("display_data", data={
        "text/markdown": "| model | bits/dim |\n|---|---|\n| VAE | 0.5 |", "text/plain": "table"})
    png = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA"
           "60e6kgAAAABJRU5ErkJggg==")
    figure = nbformat.v4.new_output("display_data", data={"image/png": png, "text/plain": "fig"})
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = [
        nbformat.v4.new_markdown_cell("# The trick\n\nThe value is {glue:text}`x:.2f` nats ({glue:text}`x` unformatted)."),
        nbformat.v4.new_code_cell("glue('x', x)", outputs=[glue]),
        nbformat.v4.new_code_cell("show_table()", outputs=[table]),
        nbformat.v4.new_code_cell("plot()", outputs=[figure], metadata={"mystnb": {"figure": {
            "name": "fig-line", "caption": "A line that rises."}, "image": {"alt": "A rising line"}}}),
        nbformat.v4.new_markdown_cell("Left in English."),
        nbformat.v4.new_markdown_cell("\n\n".join(DISPLAY_MATHS) + "\n\nSee {eq}`eq-elbo`."),
    ]
    nbformat.write(nb, root / "page.ipynb")
    (root / "index.md").write_text("# Home\n\n```{toctree}\npage\n```\n", encoding="utf-8")
    po = polib.POFile()
    po.metadata = {"Content-Type": "text/plain; charset=UTF-8", "Language": LANGUAGE}
    for msgid, msgstr in [("The trick", "技巧"), ("A line that rises.", "一条上升的直线。"),
                          ("A rising line", "一条上升的线"),
                          ("The value is {glue:text}`x:.2f` nats ({glue:text}`x` unformatted).",
                           "其值为 {glue:text}`x:.2f` nats（未格式化：{glue:text}`x`）。"),
                          ("See {eq}`eq-elbo`.", "见 {eq}`eq-elbo`。"),
                          *DISPLAY_MATHS_ZH.items()]:
        po.append(polib.POEntry(msgid=msgid, msgstr=msgstr))
    (root / "locales" / LANGUAGE / "LC_MESSAGES").mkdir(parents=True)
    po.save(str(root / "locales" / LANGUAGE / "LC_MESSAGES" / "page.po"))


def _sphinx(root: Path, builder: str, language: str, warnings) -> Path:
    from sphinx import locale
    from sphinx.application import Sphinx
    from sphinx.util.docutils import docutils_namespace

    # (an English HTML build beside the translated one: html-en)
    out = root / "_build" / (f"{builder}-en" if language == "en" and builder != "gettext" else builder)
    overrides = {"extensions": ["myst_nb", "nb_i18n"], "nb_execution_mode": "off",
                 "language": language, "locale_dirs": ["locales/"], "gettext_compact": False,
                 "exclude_patterns": ["_build"], "myst_enable_extensions": ["dollarmath", "amsmath"],
                 "myst_dmath_double_inline": True,  # as the book's _config.yml
                 "html_search_language": "en"}  # (jieba's dictionary takes seconds to load)
    # Sphinx caches each page's catalog per process (sphinx.locale.translators), and its
    # Locale transform uses it whatever the build's language: an English build after a
    # Chinese one in the same process would be translated
    locale.translators.clear()
    with docutils_namespace():
        app = Sphinx(str(root), None, str(out), str(root / "_build" / f".doctrees-{out.name}"), builder,
                     confoverrides=overrides, status=None, warning=warnings, freshenv=True)
        app.build()
    return out


def test_a_translated_notebook_page(tmp_path):
    """Outputs are not messages, captions and glued prose are, and the glued number survives
    translation; an untranslated message is a warning and is recorded."""
    import io

    pytest.importorskip("myst_nb")
    _tiny_book(tmp_path)
    warnings = io.StringIO()
    pot = _sphinx(tmp_path, "gettext", "en", warnings) / "page.pot"
    msgids = {e.msgid for e in polib.pofile(str(pot))}
    # (the figure's alt text too, which myst-nb's choice of an output format for the gettext
    # builder, text/plain, used to drop)
    assert msgids == {"The trick", "The value is {glue:text}`x:.2f` nats ({glue:text}`x` unformatted).", "A line that rises.",
                      "A rising line",
                      "Left in English.", "See {eq}`eq-elbo`.", *DISPLAY_MATHS_ZH}
    warnings = io.StringIO()
    html = (_sphinx(tmp_path, "html", LANGUAGE, warnings) / "page.html").read_text(encoding="utf-8")
    assert "其值为 <span class=\"pasted-text\">3.14</span> nats" in html
    # a key without a format too (myst-nb splits "path::key" at its last colon)
    assert "未格式化：<span class=\"pasted-text\">3.14159</span>" in html
    assert "一条上升的直线。" in html and "<h1>技巧" in html
    assert 'alt="一条上升的线"' in html and "A rising line" not in html
    assert re.search(r'<html[^>]* lang="zh-CN"', html)
    assert "bits/dim" in html  # the output, as it is
    log = warnings.getvalue()
    assert "No key" not in log, log
    assert "untranslated message (page.po): 'Left in English.'" in log
    assert log.count("untranslated message (page.po)") == 1, log
    recorded = json.loads((tmp_path / "_build" / "i18n-messages.json").read_text(encoding="utf-8"))
    assert set(recorded["messages"]["page"]) == msgids


def test_generated_labels_are_chinese_only():
    """sphinx-exercise's own 练习 is not a message of the sources; a number such as a table
    cell "8" of the English is one, and must be recorded like any other message."""
    import nb_i18n

    assert nb_i18n.is_generated_label("练习 1.1") and nb_i18n.is_generated_label("解答")
    assert not nb_i18n.is_generated_label("8") and not nb_i18n.is_generated_label("0.5")


def test_translated_display_maths(tmp_path):
    r"""Display maths with translated \text{} labels comes out as the translated formula, with
    its label and number ($$…$$, $$…$$ (label), {math}, an amsmath environment): Sphinx's own
    Locale transform made each of them "::" under MyST (review K01)."""
    import io

    pytest.importorskip("myst_nb")
    _tiny_book(tmp_path)
    english = (_sphinx(tmp_path, "html", "en", io.StringIO()) / "page.html").read_text(encoding="utf-8")
    warnings = io.StringIO()
    html = (_sphinx(tmp_path, "html", LANGUAGE, warnings) / "page.html").read_text(encoding="utf-8")
    maths, _ = built_maths_and_text(html)
    english_maths, _ = built_maths_and_text(english)
    assert len(maths) == len(english_maths) == len(DISPLAY_MATHS)
    translated = [_ws(msgstr) for msgstr in DISPLAY_MATHS_ZH.values()]
    for (anchor, number, tex), msgstr in zip(maths, translated):
        assert msgstr in tex and "::" not in tex, (tex, msgstr)
    assert [m[:2] for m in maths] == [("", ""), ("equation-eq-elbo", "(1)"), ("equation-eq-rate", "(2)"),
                                      ("equation-<uuid>", "(3)"), ("", "")]
    assert '<a class="reference internal" href="#equation-eq-elbo">(1)</a>。' in html  # 见 {eq}
    assert "::" not in html
    assert display_maths_problems(html, english, list(DISPLAY_MATHS_ZH.items())) == []
    # the equations are messages of the page, recorded and translated like the others
    assert warnings.getvalue().count("untranslated message (page.po)") == 1, warnings.getvalue()
    recorded = json.loads((tmp_path / "_build" / "i18n-messages.json").read_text(encoding="utf-8"))
    assert set(DISPLAY_MATHS_ZH) <= set(recorded["messages"]["page"])


# ---------------------------------------------------------------- English left on Chinese pages

# Latin-letter words a Chinese page may show outside code, outputs, figures, docstrings and
# the bibliography, reviewed one by one: names (people, models, libraries, data sets, places),
# units and abbreviations that Chinese technical writing keeps, English glosses that the
# glossary puts in parentheses at a term's first use, and identifiers that appear in prose
# without code markup. Anything else is English that a Chinese reader should not meet.
ENGLISH_ALLOWED = {
    # the link to the English edition, and the gloss of the edition note
    "English", "d2l-zh",
    # people (citations and prose)
    "Kingma", "Welling", "Rezende", "Mohamed", "Wierstra", "Burda", "Grosse", "Salakhutdinov",
    "Sønderby", "Cremer", "Higgins", "Bowman", "Alemi", "Hoffman", "Johnson", "Tipping", "Bishop",
    "Townsend", "Hinton", "Frey", "Child", "Vahdat", "Kautz", "Norouzi", "Rybkin",
    "Loaiza-Ganem", "Cunningham", "Odena", "Xiao", "LeCun", "Clanuwat", "Sohn", "Gulrajani",
    "Chen", "Oord", "van", "den", "Ho", "Jain", "Abbeel", "Salimans", "Theis", "Lucas",
    "Razavi", "Zhao", "Shu", "Dai", "Wipf", "Rolfe", "Jensen", "Bernoulli", "Gauss", "Markov",
    "Lagrange", "Shannon", "Huffman", "Duda", "Williams", "Glynn", "Paisley", "Ranganath",
    "Blei", "Jordan", "Wainwright", "Mnih", "Gregor", "Ladder", "Exemplar",
    # models, methods and data sets
    "VAE", "VAEs", "HVAE", "CVAE", "IWAE", "PCA", "MLP", "ELBO", "KL", "NLL", "SE", "SNR", "ANS",
    "BB-ANS", "NVAE", "PixelCNN", "PixelVAE", "PixelSNAIL", "Fashion-MNIST", "MNIST", "KMNIST",
    "REINFORCE", "Adam", "GAN", "GANs", "RealNVP", "GPT", "ReLU", "PNG", "LSTM", "MCMC", "EM",
    "CDF", "ICLR", "ICML", "NeurIPS", "slerp", "lerp", "logit", "logits", "nats", "nat", "bits",
    "bit", "bits-back", "free", "epoch", "epochs", "mass-covering", "rate", "distortion",
    "one-hot", "argmax", "softmax", "sigmoid", "tanh", "bfloat16", "float32", "float16",
    "float64", "autocast", "docstring", "delta", "Inception",
    # software, services and hardware
    "PyTorch", "NumPy", "SciPy", "TensorFlow", "Keras", "Python", "Jupyter", "JupyterLab",
    "Colab", "Binder", "GitHub", "Debian", "Ubuntu", "pip", "CUDA", "GPU", "GPUs", "CPU", "CPUs",
    "AMD", "EPYC", "Intel", "Apple", "MPS", "BLAS", "OpenMP", "Chromium", "MathJax",
    "scikit-learn", "matplotlib", "ipywidgets", "zlib", "gzip", "bz2", "lzma", "PDF", "HTML",
    "JSON", "SHA-256", "URL", "API", "CI", "FLOPs", "MFLOPs", "jieba",
    # units and file types (the download menu: .ipynb, .md, .pdf)
    "MB", "GB", "KB", "KiB", "s", "ms", "min", "dim", "R²", "ipynb", "md", "pdf",
    # more people cited or named in the prose (often with 等)
    "Baldi", "Hornik", "Kullback", "Leibler", "Larochelle", "Murray", "Locatello", "Rainforth",
    "Shoemake", "White", "Agakov", "Barber", "Flamich", "Havasi", "Gamal", "El", "Li", "Ruan",
    "Camp", "Sohl-Dickstein", "Duvenaud",
    # more models, data sets, algorithms and formats
    "CIFAR-10", "ImageNet", "U-Net", "VQ-VAE", "VDM", "L-BFGS", "L2", "BCE", "rANS", "IDX",
    "FLOP", "NaN", "inf", "cpu", "UvA", "Google", "vae-tutorial", "torchvision",
    # glosses of terms at their first use (the glossary keeps the English in parentheses)
    "two-part", "code", "teacher", "forcing", "variance-preserving",
    # the API page's gloss of the docstrings' own term: “per example”（逐样本）
    "per", "example",
    # identifiers and interface names that the prose quotes as they are: Python's assert,
    # a signal and a key, stderr, Colab's menu (Runtime → Change runtime type), pytorch.org
    # and pytorch/examples (the latent explorer's buttons are labelled in the page's language)
    "assert", "SIGTERM", "Ctrl-C", "stderr", "Runtime", "Change", "runtime", "type", "pytorch",
    "org", "examples",
    # PyTorch's communication back ends, by their names (ch05's appendix on torchrun)
    "gloo", "NCCL",
    # the results page's table shows "not measured" for a chapter without a time; the prose
    # quotes it
    "not", "measured",
}
# words of these shapes are labels, not English: errata E1–E14, numbers such as 1e-12
ENGLISH_ALLOWED |= {
    # Part IV: people cited, and the names of methods and distributions kept as names
    "Tomczak", "Roeder", "Tucker", "Bornschein", "Bengio", "Neal", "Wu", "Jang", "Maddison",
    "VampPrior", "STL", "DReG", "RWS", "AIS", "BDMC", "HMC", "Metropolis", "Gumbel", "Gumbel-max",
    "Gumbel-softmax", "Concrete", "VQ-VAE", "IAF", "MADE", "sg", "ConvHVAE",
}
ENGLISH_ALLOWED_PATTERN = re.compile(r"E\d+|e-\d+")


def visible_english_words(html: str) -> list[str]:
    """The Latin-letter words of a built page that a reader sees, outside code (cells and
    inline), cell outputs, figures, maths, the API's object descriptions and the bibliography."""
    bs4 = pytest.importorskip("bs4")
    soup = bs4.BeautifulSoup(html, "html.parser")
    body = soup.body or soup
    selectors = [
        "script", "style", "noscript", "template", "pre", "code", "kbd", "img", "svg",
        "div.cell_input", "div.cell_output", "div.output", "div.highlight", "figure img",
        ".math", "mjx-container", "dl.py", "div.citation", "div.citation-list",
        "div.bibliography", ".headerlink", "span.pre", ".docstring",
    ]
    for tag in body.select(", ".join(selectors)):
        if not tag.decomposed:
            tag.decompose()
    text = body.get_text(" ")
    text = re.sub(r"\\\(.*?\\\)|\\\[.*?\\\]|\$\$.*?\$\$", " ", text, flags=re.DOTALL)  # untypeset maths
    letters = "A-Za-zÀ-ÖØ-öø-ÿ"  # (not × or ÷)
    words = re.findall(rf"[{letters}][{letters}0-9²'’-]*[{letters}0-9²]|[{letters}]", text)
    # one letter (a variable: T 恤, k, x) is not a word
    return [w for w in words if len(w) > 1 and w not in ENGLISH_ALLOWED
            and not ENGLISH_ALLOWED_PATTERN.fullmatch(w)]


def test_visible_english_words_are_found():
    page = ("<html><body><p>编码器 Encoder 的 <code>model.fit</code> 和 Kingma 等</p>"
            "<div class='cell_output'><pre>loss 1.0</pre></div><p>见 nats 与 \\(x\\)</p>"
            "<dl class='py function'><dd>Per-example terms</dd></dl>"
            "<div class='citation'>An English reference</div><p class='docstring'>Returns x</p>"
            "<p>勘误 E13，×28，1e-12，Sønderby 等</p></body></html>")
    assert visible_english_words(page) == ["Encoder"]


def english_words_per_page(html_root: Path) -> dict[str, list[str]]:
    return {_catalog_id(p): visible_english_words((html_root / f"{_catalog_id(p)}.html").read_text(encoding="utf-8"))
            for p in CATALOGS if (html_root / f"{_catalog_id(p)}.html").is_file()}


def test_chinese_pages_show_no_english_words():
    """Outside code, outputs, figures, maths, docstrings and the bibliography, a Chinese page
    shows no English word but those of `ENGLISH_ALLOWED` (review: "Click to show", "Color
    mode", "Repository", "et al." and the like)."""
    html = ROOT / "_build" / "html" / LANGUAGE.split("_")[0]
    if not (html / "book" / "intro.html").is_file():
        if REQUIRE:
            pytest.fail(f"no Chinese build in {html}: run python tools/build_books.py zh")
        pytest.skip("no Chinese build (python tools/build_books.py zh)")
    found = {page: words for page, words in english_words_per_page(html).items() if words}
    assert not found, "\n".join(f"{page}: {len(words)} English words, e.g. {sorted(set(words))[:12]}"
                                for page, words in found.items())


THEME_STRINGS = ("Toggle primary sidebar", "Toggle secondary sidebar", "Source repositories",
                 "Launch interactive content", "Print to PDF", "Link to this heading",
                 "Link to this definition", "Download the notebook (for Jupyter)")
"""Tooltips the theme and Sphinx write in English or through the theme's own zh catalog."""


def test_theme_attributes_are_translated_from_the_catalogs():
    sys.path.insert(0, str(ROOT / "tools"))
    import theme_strings

    catalog = theme_strings.translations(ROOT, ["locales/"], LANGUAGE)
    page = ('<button class="x" title="Toggle primary sidebar" data-bs-toggle="tooltip">'
            '<a aria-label="Print to PDF" title="Print to PDF">.pdf</a><p title="Toggle">'
            '<input placeholder="Search this book..."><p>Toggle primary sidebar</p>')
    out = theme_strings.translate_attributes(page, catalog)
    assert 'title="切换主侧边栏"' in out and 'aria-label="打印为 PDF"' in out  # not 列印成 PDF
    assert 'placeholder="搜索本书……"' in out
    assert 'title="Toggle"' in out and "<p>Toggle primary sidebar</p>" in out  # text is not touched
    for msgid in THEME_STRINGS:
        assert catalog.gettext(msgid) != msgid, f"{msgid!r} has no translation in sphinx.po or booktheme.po"


def test_built_chinese_pages_have_no_english_theme_tooltips():
    html = ROOT / "_build" / "html" / LANGUAGE.split("_")[0]
    if not (html / "book" / "intro.html").is_file():
        if REQUIRE:
            pytest.fail(f"no Chinese build in {html}: run python tools/build_books.py zh")
        pytest.skip("no Chinese build (python tools/build_books.py zh)")
    found = set()
    for page in html.rglob("book/*.html"):
        text = page.read_text(encoding="utf-8")
        found |= {f"{page.name}: {s}" for s in THEME_STRINGS if f'="{s}"' in text}
    assert not found, sorted(found)[:10]


if __name__ == "__main__":  # python tests/test_i18n.py: the count per page, for a report
    counts = english_words_per_page(ROOT / "_build" / "html" / "zh")
    for page, words in counts.items():
        print(f"{page:28} {len(words):5}  {' '.join(sorted(set(words)))[:150]}")
    print(f"{'total':28} {sum(map(len, counts.values())):5}")

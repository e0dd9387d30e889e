"""Packaging and install paths: one repository URL, the package metadata, the CPU install.

The repository URL is set in one place, ``_config.yml`` (``repository.url``, which Jupyter
Book's launch buttons read); the package metadata, the README, the preface and the chapters'
install cells must agree with it. The ``book`` extra must bring everything the chapters
import, without pinning torch. Binder (and anyone who wants the CPU build) installs
``binder/requirements.txt``: the same pins plus PyTorch's CPU wheel index.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parent.parent
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
REPO_URL = CONFIG["repository"]["url"].rstrip("/")
OWNER, NAME = re.fullmatch(r"https://github\.com/([\w.-]+)/([\w.-]+)", REPO_URL).groups()
PAGES_URL = f"https://{OWNER.lower()}.github.io/{NAME}/"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _texts():
    """(where, text) of every file that may name the repository."""
    files = [ROOT / "README.md", ROOT / "CHANGELOG.md", ROOT / "pyproject.toml",
             *sorted((ROOT / "book").glob("*.md")), *sorted((ROOT / "binder").glob("*"))]
    for path in files:
        if path.is_file():
            yield path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8")
    for path in sorted((ROOT / "book").glob("*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        for i, cell in enumerate(nb["cells"]):
            yield f"{path.relative_to(ROOT).as_posix()} cell {i}", "".join(cell["source"])


def test_repository_url_is_set_once_and_everything_agrees():
    assert CONFIG["launch_buttons"].get("colab_url") and CONFIG["launch_buttons"].get("binderhub_url")
    assert CONFIG["repository"].get("branch") == "main"
    urls = PYPROJECT["project"]["urls"]
    assert urls["Repository"] == REPO_URL
    assert urls["Issues"] == REPO_URL + "/issues"
    assert urls["Homepage"] == PAGES_URL
    assert all(u.startswith((REPO_URL + "/", PAGES_URL)) or u in (REPO_URL, PAGES_URL) for u in urls.values()), urls
    wrong = []
    for where, text in _texts():
        for m in re.finditer(r"github\.com/([\w.-]+)/([\w.-]+?)(?:\.git)?(?=[/\s\"'`)#>]|$)", text):
            owner, name = m.groups()
            ours = owner.lower() == OWNER.lower() or name.lower() in (NAME.lower(), NAME.lower().replace("-", "_"))
            if ours and f"https://github.com/{owner}/{name}" != REPO_URL:
                wrong.append(f"{where}: {m.group(0)}")
        for m in re.finditer(r"https?://[\w.-]+\.github\.io/[\w.-]+/?", text):
            if NAME in m.group(0) and m.group(0).rstrip("/") + "/" != PAGES_URL:
                wrong.append(f"{where}: {m.group(0)}")
    assert not wrong, f"repository URLs that differ from _config.yml's {REPO_URL}:\n  " + "\n  ".join(wrong)


def test_package_metadata():
    project = PYPROJECT["project"]
    assert project["license"] == "MIT"  # an SPDX expression (PEP 639), not the deprecated table
    requires = PYPROJECT["build-system"]["requires"]
    version = re.fullmatch(r"setuptools>=(\d+)", next(r for r in requires if r.startswith("setuptools")))
    assert version and int(version.group(1)) >= 77, "setuptools reads an SPDX license string from version 77"
    extras = project["optional-dependencies"]
    for extra in ("book", "docs"):
        assert not [r for r in extras[extra] if r.startswith("torch")], f"the {extra} extra must not touch torch"
    assert any(r.startswith("myst-nb") for r in extras["book"])
    assert any(r.startswith("jupyter-book") and "<2" in r for r in extras["docs"])
    assert PYPROJECT["tool"]["setuptools"]["package-data"]["vae_tutorial.display"] == ["explorer.js"]
    assert (ROOT / "vae_tutorial" / "display" / "explorer.js").is_file()
    # every sub-package is installed: a missing one imports from a checkout but not from a wheel
    subpackages = sorted(str(p.parent.relative_to(ROOT)).replace("/", ".")
                         for p in (ROOT / "vae_tutorial").glob("*/__init__.py"))
    assert sorted(PYPROJECT["tool"]["setuptools"]["packages"]) == sorted(["vae_tutorial", *subpackages])


# What each module the chapters import is installed by: the package's dependencies or its
# `book` extra (modules of the standard library are fine too).
PROVIDERS = {"torch": "torch", "numpy": "numpy", "sklearn": "scikit-learn", "matplotlib": "matplotlib",
             "tqdm": "tqdm", "ipywidgets": "ipywidgets", "myst_nb": "myst-nb", "IPython": "ipywidgets",
             "PIL": "matplotlib", "scipy": "scipy", "vae_tutorial": None}


def test_the_book_extra_brings_everything_the_chapters_import():
    project = PYPROJECT["project"]
    declared = {re.split(r"[<>=!~ \[;]", r)[0].lower() for r in project["dependencies"] + project["optional-dependencies"]["book"]}
    missing = []
    for path in sorted((ROOT / "book").glob("*.ipynb")):
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] != "code":
                continue
            for m in re.finditer(r"^\s*(?:from|import)\s+([\w]+)", "".join(cell["source"]), re.M):
                module = m.group(1)
                if module in sys.stdlib_module_names:
                    continue
                provider = PROVIDERS.get(module, module)
                if module not in PROVIDERS or (provider is not None and provider not in declared):
                    missing.append(f"{path.name}: import {module}")
    assert not missing, ("chapters import modules that neither the dependencies nor the `book` extra "
                         "install (add them to pyproject.toml and to PROVIDERS here):\n  " + "\n  ".join(sorted(set(missing))))


def _requirements(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def test_binder_installs_the_cpu_build_of_the_pinned_torch():
    binder = _requirements(ROOT / "binder" / "requirements.txt")
    assert f"--extra-index-url {CPU_INDEX}" in binder or f"--index-url {CPU_INDEX}" in binder
    assert "-r ../requirements.txt" in binder  # the same pins, kept in one file
    pins = _requirements(ROOT / "requirements.txt")
    torch_pin = [p for p in pins if re.match(r"torch\b", p)]
    # an exact public version: with the CPU index, 2.13.0+cpu (a local version) satisfies it
    assert len(torch_pin) == 1 and re.fullmatch(r"torch==\d+(\.\d+)+", torch_pin[0]), torch_pin
    assert not [p for p in pins if p.startswith("--")], "requirements.txt must keep CI's offline install: no index URLs"
    assert "pip install --no-deps -e ." in (ROOT / "binder" / "postBuild").read_text()
    assert not (ROOT / "postBuild").exists(), "repo2docker ignores the root's postBuild once binder/ exists"


def _reachable(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5):
            return True
    except Exception:  # noqa: BLE001 - no network, a proxy, a firewall: all mean "cannot check"
        return False


def test_pip_resolves_torch_to_the_cpu_build_with_binders_index(tmp_path):
    if not _reachable(CPU_INDEX + "/torch/"):
        pytest.skip(f"{CPU_INDEX} is not reachable from here")
    torch_pin = next(p for p in _requirements(ROOT / "requirements.txt") if re.match(r"torch\b", p))
    req = tmp_path / "requirements.txt"
    req.write_text(f"--extra-index-url {CPU_INDEX}\n{torch_pin}\n")
    report = tmp_path / "report.json"
    subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--ignore-installed",
                    "--quiet", "--report", str(report), "-r", str(req)], check=True, timeout=600)
    installs = json.loads(report.read_text())["install"]
    versions = [i["metadata"]["version"] for i in installs if i["metadata"]["name"] == "torch"]
    assert versions and versions[0].endswith("+cpu"), versions

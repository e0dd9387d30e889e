"""Fetch the JavaScript the HTML book needs into ``book/_static/vendor/`` (not committed).

The book renders its maths with MathJax 3 and shows the saved state of its ipywidgets with
the widgets HTML manager, which needs RequireJS (only on a page that draws a widget:
tools/page_assets.py). Sphinx and myst-nb would load all three from
CDNs; the book points them at local copies instead (``_config.yml``), so that the built HTML
works with no network at all.

Each package is an exact npm version with the registry's SHA-512 ``integrity`` pinned below:
a tarball that does not match is refused. Tarballs come from ``npm pack`` when ``npm`` is on
the ``PATH``, otherwise straight from the registry's tarball URL (the same file npm fetches).

    python tools/vendor_assets.py            # fetch what is missing
    python tools/vendor_assets.py --force    # fetch again
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT / "book" / "_static" / "vendor"
REGISTRY = "https://registry.npmjs.org"


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    integrity: str  # npm's "dist.integrity" of the tarball
    keep: str  # folder inside the tarball's "package/" to copy ("" = the whole package)
    dest: str  # folder under VENDOR
    skip_suffixes: tuple[str, ...] = ()
    check: str = ""  # a file, relative to dest, that must exist afterwards

    @property
    def tarball_url(self) -> str:
        base = self.name.split("/")[-1]
        return f"{REGISTRY}/{self.name}/-/{base}-{self.version}.tgz"


PACKAGES = (
    # MathJax 3: the pages load startup.js, which fetches the components _config.yml lists
    # (TeX input, CommonHTML output, assistive MathML), with the fonts and the extensions it
    # autoloads (\boldsymbol, \cancel, ...) beside them.
    Package("mathjax", "3.2.2",
            "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw==",
            keep="es5", dest="mathjax/es5", check="startup.js"),
    # The widget manager that renders saved ipywidgets 8 state in static HTML (html-manager 1.x
    # is the ipywidgets 8 line); embed-amd.js loads its Font Awesome files from its own folder.
    Package("@jupyter-widgets/html-manager", "1.0.15",
            "sha512-5thBIV6ymNgmPVOHvzx+gGy8ZSKmSazhtGw4/c4xJDVzRhG9PTeQsRjF3FUTopvFi//SABeNz1yp47bCrJ3CQA==",
            keep="dist", dest="html-manager/dist", skip_suffixes=(".map", ".LICENSE.txt"), check="embed-amd.js"),
    # embed-amd.js is an AMD module: it needs require.js on the page.
    Package("requirejs", "2.3.8",
            "sha512-7/cTSLOdYkNBNJcDMWf+luFvMriVm7eYxp4BcFCsAX0wF421Vyce5SXP17c+Jd5otXKGNehIonFlyQXSowL6Mw==",
            keep="", dest="requirejs", check="require.js"),
)


def _verify(pkg: Package, data: bytes) -> None:
    algo, _, expected = pkg.integrity.partition("-")
    actual = base64.b64encode(hashlib.new(algo, data).digest()).decode()
    if actual != expected:
        raise SystemExit(f"error: {pkg.name}@{pkg.version}: tarball {algo} is {actual}, expected {expected}; "
                         "refusing to use it (a corrupt download or a changed registry file)")


def _download(pkg: Package) -> bytes:
    npm = shutil.which("npm")
    if npm:
        with tempfile.TemporaryDirectory() as tmp:
            out = subprocess.run([npm, "pack", f"{pkg.name}@{pkg.version}", "--json", "--pack-destination", tmp],
                                 check=True, capture_output=True, text=True, cwd=tmp).stdout
            filename = json.loads(out)[0]["filename"].replace("@", "").replace("/", "-")
            return (Path(tmp) / filename).read_bytes()
    with urllib.request.urlopen(pkg.tarball_url, timeout=120) as response:
        return response.read()


def _extract(pkg: Package, data: bytes) -> int:
    dest = VENDOR / pkg.dest
    if dest.exists():
        shutil.rmtree(dest)
    prefix = "package/" + (pkg.keep + "/" if pkg.keep else "")
    count = 0
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            if not member.isfile() or not member.name.startswith(prefix) or member.name.endswith(pkg.skip_suffixes):
                continue
            relative = Path(member.name[len(prefix):])
            if relative.is_absolute() or ".." in relative.parts:
                raise SystemExit(f"error: {pkg.name}: unsafe path {member.name!r} in the tarball")
            target = dest / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(member).read())
            count += 1
    if pkg.check and not (dest / pkg.check).is_file():
        raise SystemExit(f"error: {pkg.name}@{pkg.version} has no {pkg.keep}/{pkg.check}")
    (dest / ".version").write_text(f"{pkg.name}@{pkg.version}\n")
    return count


def is_current(pkg: Package) -> bool:
    """Whether ``pkg`` is already vendored at its pinned version."""
    stamp = VENDOR / pkg.dest / ".version"
    return stamp.is_file() and stamp.read_text().strip() == f"{pkg.name}@{pkg.version}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="fetch even what is already there")
    args = parser.parse_args(argv)
    for pkg in PACKAGES:
        where = VENDOR / pkg.dest
        if not args.force and is_current(pkg):
            print(f"{pkg.name}@{pkg.version}: present in {where.relative_to(ROOT)}")
            continue
        data = _download(pkg)
        _verify(pkg, data)
        count = _extract(pkg, data)
        print(f"{pkg.name}@{pkg.version}: {count} files -> {where.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Sphinx extension: resolve the short cross-references that `vae_tutorial`'s docstrings use.

Docstrings name their neighbours the way a reader of the source does: ``:class:`ConditionalVAE```
inside :mod:`vae_tutorial.display.plots` (which imports it), ``:func:`vae_tutorial.fit``` for a top-level
re-export, ``:meth:`sample``` on a subclass that inherits it. Sphinx only finds objects
documented under the current module or class, so under ``-n`` these would be broken links.

When Sphinx cannot resolve a Python reference made from the package's documentation, this
extension looks the name up as Python would, in the namespace of the module (or class, through
its method resolution order) the docstring belongs to, and links to where that object is
documented. A name the module does not import (a docstring may mention :class:`VAE` without
importing it) links to the one documented object of the package with that name. Anything
else (no such object, or several) is left alone, so Sphinx still warns about it.
Loaded from ``_config.yml`` (``sphinx.local_extensions``).
"""
from __future__ import annotations

import importlib

PACKAGE = "vae_tutorial"


def _canonical_name(modname: str | None, clsname: str | None, target: str) -> str | None:
    """Where the object that ``target`` names in ``modname`` (and class ``clsname``) is defined."""
    if not (modname or "").startswith(PACKAGE):
        return None
    try:
        module = importlib.import_module(modname)
        if clsname and "." not in target:  # a method or attribute, maybe inherited
            for klass in getattr(getattr(module, clsname), "__mro__", ()):
                if target in vars(klass) and klass.__module__.startswith(PACKAGE):
                    return f"{klass.__module__}.{klass.__qualname__}.{target}"
        parts = target.split(".")
        obj = importlib.import_module(PACKAGE) if parts[0] == PACKAGE else getattr(module, parts[0])
        for part in parts[1:]:
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        return None
    owner, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if isinstance(owner, str) and owner.startswith(PACKAGE) and qualname:
        return f"{owner}.{qualname}"
    return None


def _resolve(app, env, node, contnode):
    if node.get("refdomain") != "py":
        return None
    domain = env.get_domain("py")
    target = node["reftarget"].lstrip(".~")
    full = _canonical_name(node.get("py:module"), node.get("py:class"), target)
    if full not in domain.objects:
        same_name = [name for name in domain.objects if name.startswith(PACKAGE + ".") and name.endswith("." + target)]
        full = same_name[0] if len(same_name) == 1 else None
    if full is None:
        return None
    return domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], full, node, contnode)


def setup(app):
    app.connect("missing-reference", _resolve)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

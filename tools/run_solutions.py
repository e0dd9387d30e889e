"""Sphinx extension: execute the exercises' solution cells when the book is built.

Solution cells skip themselves in an interactive notebook unless ``$VAE_TUTORIAL_SOLUTIONS``
is ``run`` (see ``vae_tutorial/display/notebook.py``). Kernels that myst-nb starts inherit this
process's environment, so setting the variable here makes every solution run, and its asserts
count, in the built book. Loaded from ``_config.yml`` (``sphinx.local_extensions``).
"""
from __future__ import annotations

import os


def setup(app):
    os.environ["VAE_TUTORIAL_SOLUTIONS"] = "run"
    return {"parallel_read_safe": True, "parallel_write_safe": True}

"""``python -m vae_tutorial``: the command line of :mod:`vae_tutorial.cli`."""
import sys

from .cli import main

sys.exit(main())

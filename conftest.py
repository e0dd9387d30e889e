"""Repository-wide pytest set-up (loaded for `pytest tests book ...` and for `pytest book` alone).

nbval runs every chapter's kernel with this process's environment: solution cells run there
(and their asserts are checked), although "Run all" in Jupyter or Colab skips them
(see vae_tutorial/display/notebook.py).
"""
import os

os.environ["VAE_TUTORIAL_SOLUTIONS"] = "run"

"""Sphinx configuration of the linvae documentation.

Build: ``pip install ".[docs]" && python -m sphinx -W --keep-going -b html docs docs/_build/html``.

The Markdown pages are read by MyST; the pages of docs/ are also test inputs
(tests/test_docs.py runs their code blocks), so directives on them use colon fences
(``:::{toctree}``), which that test does not take for code blocks.
"""

from __future__ import annotations

import sys
from importlib.metadata import version as _version
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

project = "linvae"
author = "linvae developers"
copyright = "linvae developers"
release = _version("linvae")  # the one version, pyproject.toml's, of the installed package
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx_gallery.gen_gallery",
    "linvae_docs",  # _ext/linvae_docs.py: API from linvae.__all__, CLI from build_parser
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "gallery/README.txt", "auto_examples/*.ipynb",
                    "auto_examples/*.py", "auto_examples/*.zip"]
templates_path: list[str] = []

# -- MyST --------------------------------------------------------------------------------
# dollarmath: $...$ inline and $$...$$ display math (docs/model.md), rendered by MathJax,
# the same syntax GitHub renders. Not amsmath: its top-level \begin{align} is not GitHub's;
# multi-line equations use \begin{aligned} inside $$ instead.
myst_enable_extensions = ["colon_fence", "dollarmath", "deflist"]
# heading anchors (guide.md#the-command-line); model.md also has explicit <a id="..."> ones
myst_heading_anchors = 3

# -- autodoc and napoleon (numpy style) ----------------------------------------------------
autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_ivar = True  # an "Attributes" section as fields, not as duplicate entries
napoleon_use_rtype = False

# -- sphinx-gallery: the small, fast examples of docs/gallery, run at every build ---------
sphinx_gallery_conf = {
    "examples_dirs": "gallery",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "abort_on_example_error": True,
    "download_all_examples": False,
    "remove_config_comments": True,
    "image_scrapers": ("linvae_docs", "matplotlib"),  # linvae's Figures, then pyplot's
    "reset_modules": ("matplotlib",),
    "show_memory": False,
}

# -- HTML ----------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"linvae {release}"
html_static_path: list[str] = []

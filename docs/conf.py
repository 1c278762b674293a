"""Sphinx configuration of skhlm's documentation site (issue 17: work in progress)."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

import skhlm  # noqa: E402

project = "skhlm"
author = "the skhlm developers"
release = skhlm.__version__
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
]
autosummary_generate = True
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
html_theme = "pydata_sphinx_theme"
html_title = "skhlm"
exclude_patterns = ["_build"]

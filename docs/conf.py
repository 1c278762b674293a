"""Sphinx configuration of skhlm's documentation site (docs/README.md)."""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE / "_ext"))

import skhlm  # noqa: E402

project = "skhlm"
author = "the skhlm developers"
copyright = "2026, the skhlm developers"
release = skhlm.__version__
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "source_links",
]
templates_path = ["_templates"]
# The page tables of contents show "fit()", not "RandomInterceptRegressor.fit()".
toc_object_entries_show_parents = "hide"
exclude_patterns = ["_build", "README.md", "auto_examples/*.ipynb", "auto_examples/*.py"]
autosummary_generate = True
# A reference that resolves nowhere is a warning (with -W, an error): broken links
# to skhlm's own objects fail the build. Other projects' names stay plain text,
# since intersphinx would need their inventories from the network at build time.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(sklearn|pandas|numpy|scipy|dask|distributed|formulaic|matplotlib|pyarrow)(\..*)?"),
]
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

# --- numpydoc validation (docstring audit) ---
# Every public object's docstring is checked when the site is built; with -W a
# missing section is an error.
numpydoc_validation_checks = {
    "GL06",  # an unknown section (a misspelt heading drops its content)
    "GL07",  # sections out of numpydoc's order
    "GL08",  # no docstring at all
    "PR01",  # a parameter of the signature not under Parameters
    "PR02",  # a documented parameter the signature does not have
    "PR03",  # Parameters in another order than the signature's
    "PR04",  # a parameter without its type (where shapes are written)
    "PR07",  # a parameter without a description
    "PR10",  # "name: type" (numpydoc reads it as a name, no type)
    "RT01",  # a function or method that returns something has no Returns
    "RT03",  # a returned value without a description
    "SA01",  # no See Also
    "SA04",  # a See Also entry without a description
    "EX01",  # no Examples (pytest runs them: --doctest-modules over skhlm/)
}
# Only what is not ours: scikit-learn's methods that every estimator inherits
# (the class template lists them without their docstrings, so they are not even
# rendered; these patterns keep it so if a page ever documents them).
numpydoc_validation_exclude = {
    r"\.get_params$",
    r"\.set_params$",
    r"\.set_\w+_request$",
    r"\.get_metadata_routing$",
    r"\.set_output$",
    r"\.fit_transform$",
}
# --- end numpydoc validation ---

html_theme = "pydata_sphinx_theme"
html_title = "skhlm"
html_static_path = ["_static"]
html_css_files = ["skhlm.css"]
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}


sphinx_gallery_conf = {
    "examples_dirs": str(HERE.parent / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r".*\.py$",  # run every example, not only plot_*
    "ignore_pattern": r"__init__\.py",
    "reset_argv": "gallery_argv.example_argv",
    "download_all_examples": False,
    "abort_on_example_error": True,
    "remove_config_comments": True,
    "min_reported_time": 1,
    "write_computation_times": False,
}
os.environ.setdefault("MPLBACKEND", "Agg")

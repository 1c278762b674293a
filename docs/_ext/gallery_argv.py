"""The command-line arguments sphinx-gallery gives each example (``reset_argv``)."""

import tempfile
from pathlib import Path


def example_argv(gallery_conf, script_vars):
    """A plot example saves its figure to the folder given: here a scratch one.

    Without it the figure would overwrite the committed ``examples/images``. The
    gallery shows the figure the script leaves open.
    """
    if Path(script_vars["src_file"]).name.startswith("plot_"):
        return [tempfile.mkdtemp(prefix="skhlm_gallery_")]
    return []

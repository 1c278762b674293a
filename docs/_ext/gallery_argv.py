"""The command-line arguments sphinx-gallery gives each example (``reset_argv``)."""

import tempfile
from pathlib import Path

SCRATCH = Path(tempfile.gettempdir()) / "skhlm_gallery"


def example_argv(gallery_conf, script_vars):
    """A plot example saves its figure to the folder given: here one scratch folder.

    Without it the figure would overwrite the committed ``examples/images``. The
    gallery shows the figure the script leaves open; the scratch copy is overwritten
    by the next build.
    """
    if Path(script_vars["src_file"]).name.startswith("plot_"):
        SCRATCH.mkdir(exist_ok=True)
        return [str(SCRATCH)]
    return []

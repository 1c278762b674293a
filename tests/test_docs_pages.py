"""The site's pages are where the README and the index say, and each names its code.

The build itself (``.ci/run``, ``sphinx -W``) checks links, cross-references, the
gallery and the docstrings; these are the cheap checks the test command can make
without Sphinx: every guide page exists, the README links to it, and it opens
with a ``Source:`` line of files that exist.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
DOCS = ROOT / "docs"


def toctree(page):
    """The entries of the toctrees of a docs page."""
    text = (DOCS / page).read_text()
    entries = []
    for block in re.findall(r"\.\. toctree::\n((?:   .*\n|\n)+)", text):
        entries += [line.strip() for line in block.splitlines() if line.strip() and not line.strip().startswith(":")]
    return entries


GUIDE = toctree("user_guide.rst")


def test_the_user_guide_has_the_pages_the_issue_lists():
    assert len(GUIDE) == 12
    assert {"model", "random_slopes", "inference", "prediction", "sklearn", "coming_from", "weights",
            "bigger_than_memory", "mixed_effects", "performance", "robustness"} <= set(GUIDE)
    assert toctree("index.rst") == ["getting_started", "user_guide", "auto_examples/index", "api"]


@pytest.mark.parametrize("page", ["getting_started", *GUIDE])
def test_the_readme_links_each_page(page):
    assert f"(docs/{page}.rst)" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("page", ["index", "getting_started", *GUIDE])
def test_each_page_names_the_code_it_describes(page):
    text = (DOCS / f"{page}.rst").read_text()
    source = re.search(r"^Source: (.*?)\n\n", text, re.M | re.S)
    assert source, f"{page}.rst has no Source: paragraph"
    paths = re.findall(r":source:`(?:[^`<]*<)?([^`>]+)>?`", source.group(1))
    assert paths
    for path in paths:
        assert (ROOT / path).is_file(), f"{page}.rst names {path}, which is not a file"

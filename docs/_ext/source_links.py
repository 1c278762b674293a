"""A ``:source:`` role: a link to a highlighted copy of a file of the repository.

``:source:`skhlm/engine/em.py``` links to ``_source/skhlm/engine/em.py.html``, a page
this extension writes with the file's code, numbered lines and a link back.  Every
user-guide page names the code it describes this way, private modules included,
which Sphinx's ``viewcode`` shows only for modules of documented objects.  A path
that is not a file of the repository is a warning, so ``sphinx -W`` fails on it.
"""

import html
from pathlib import Path

from docutils import nodes
from sphinx.util import logging
from sphinx.util.docutils import SphinxRole

LOGGER = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]


class SourceRole(SphinxRole):
    """``:source:`path``` or ``:source:`text <path>```, a path from the repository root."""

    def run(self):
        text, _, target = self.text.partition(" <")
        path = target.rstrip(">") if target else text
        if not (ROOT / path).is_file():
            LOGGER.warning("source: %s is not a file of the repository", path,
                           location=self.get_location())
            return [nodes.literal(text, text)], []
        sources = self.env.domaindata.setdefault("source_links", {})
        sources.setdefault(path, set()).add(self.env.docname)
        depth = self.env.docname.count("/")
        uri = "../" * depth + f"_source/{path}.html"
        node = nodes.reference(text, "", internal=False, refuri=uri)
        node += nodes.literal(text, text)
        return [node], []


def _merge(app, env, docnames, other):
    mine = env.domaindata.setdefault("source_links", {})
    for path, pages in other.domaindata.get("source_links", {}).items():
        mine.setdefault(path, set()).update(pages)


def _purge(app, env, docname):
    for pages in env.domaindata.get("source_links", {}).values():
        pages.discard(docname)


def _title(app, docname):
    title = app.env.titles.get(docname)
    return html.escape(title.astext() if title is not None else docname)


def _pages(app):
    highlighter = app.builder.highlighter
    for path, pages in sorted(app.env.domaindata.get("source_links", {}).items()):
        if not pages:
            continue
        code = (ROOT / path).read_text(encoding="utf-8")
        language = "python" if path.endswith(".py") else "none"
        body = highlighter.highlight_block(code, language, linenos=True)
        back = ", ".join(
            f'<a href="{"../" * (path.count("/") + 1)}{page}.html">{_title(app, page)}</a>'
            for page in sorted(pages)
        )
        page_html = f"<h1><code>{path}</code></h1><p>Described in: {back}.</p>{body}"
        yield f"_source/{path}", {"title": path, "body": page_html}, "page.html"


def setup(app):
    app.add_role("source", SourceRole())
    app.connect("env-merge-info", _merge)
    app.connect("env-purge-doc", _purge)
    app.connect("html-collect-pages", _pages)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

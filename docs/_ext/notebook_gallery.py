"""The `notebook-gallery` directive: one card per notebook of a folder (title, first
paragraph, its first figure as the picture), each linking the rendered notebook.

    ```{notebook-gallery} gallery
    ```

The figures come from the outputs committed in the notebooks; nothing executes. Thumbnails
are written beside the notebooks (docs/gallery/ is generated and git-ignored).
"""
from __future__ import annotations

import base64
import re
from pathlib import Path

import nbformat
from docutils import nodes
from sphinx.util.docutils import SphinxDirective


def _title_and_blurb(nb) -> tuple[str, str]:
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        lines = cell.source.strip().splitlines()
        if lines and lines[0].startswith("# "):
            paragraphs = "\n".join(lines[1:]).strip().split("\n\n")
            blurb = re.sub(r"\s+", " ", paragraphs[0]) if paragraphs[0] else ""
            return lines[0][2:].strip(), blurb
    return "", ""


def _first_png(nb) -> bytes | None:
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            png = out.get("data", {}).get("image/png")
            if png:
                return base64.b64decode(png)
    return None


class NotebookGallery(SphinxDirective):
    required_arguments = 1  # the folder of notebooks, relative to the current page

    def run(self) -> list[nodes.Node]:
        here = Path(self.env.doc2path(self.env.docname)).parent
        folder = self.arguments[0].strip("/")
        grid = nodes.container(classes=["bm-gallery"])
        for path in sorted((here / folder).glob("*.ipynb")):
            self.env.note_dependency(str(path))
            nb = nbformat.read(path, as_version=4)
            title, blurb = _title_and_blurb(nb)
            target = f"{folder}/{path.stem}.html"
            card = nodes.container(classes=["bm-gallery-card"])
            png = _first_png(nb)
            if png is not None:
                thumbs = here / folder / "_thumbs"
                thumbs.mkdir(exist_ok=True)
                thumb = thumbs / f"{path.stem}.png"
                if not thumb.exists() or thumb.read_bytes() != png:
                    thumb.write_bytes(png)
                image = nodes.image(uri=f"{folder}/_thumbs/{path.stem}.png",
                                    alt=title or path.stem, classes=["bm-gallery-thumb"])
                picture = nodes.paragraph()
                picture += nodes.reference("", "", image, refuri=target, internal=True)
                card += picture
            heading = nodes.paragraph(classes=["bm-gallery-title"])
            heading += nodes.reference("", title or path.stem, refuri=target, internal=True)
            card += heading
            if blurb:
                card += nodes.paragraph(text=blurb.replace("`", ""))
            grid += card
        return [grid]


def setup(app):
    app.add_directive("notebook-gallery", NotebookGallery)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

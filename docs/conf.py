"""Sphinx configuration of the bayesmix documentation site.

Build (from the repository root):  sphinx-build -W -b html docs docs/_build/html

Pages are the Markdown files in docs/ (MyST), the landing page is the top of README.md,
the API reference is generated from docstrings (docs/_ext/public_api.py) and the gallery
renders notebooks/*.ipynb with the outputs committed in them: the build never executes a
notebook (tools/run_notebooks.py refreshes them), so it stays fast and needs no compiler.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
# To preview notebooks executed elsewhere without touching notebooks/ (the default).
NOTEBOOKS = Path(os.environ.get("BAYESMIX_DOCS_NOTEBOOKS", ROOT / "notebooks"))
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(ROOT))  # autodoc imports this checkout's bayesmix


def _sync_gallery() -> None:
    """Copy the notebooks into docs/gallery/ (a generated, git-ignored folder): Sphinx reads
    sources only below its source folder. Unchanged copies keep their timestamps so an
    incremental build does not re-read them; notebooks that left the folder disappear."""
    gallery = DOCS / "gallery"
    gallery.mkdir(exist_ok=True)
    wanted = {p.name: p for p in sorted(NOTEBOOKS.glob("*.ipynb"))}
    for stale in gallery.glob("*.ipynb"):
        if stale.name not in wanted:
            stale.unlink()
    for name, source in wanted.items():
        target = gallery / name
        if not target.exists() or target.read_bytes() != source.read_bytes():
            shutil.copy2(source, target)


_sync_gallery()

project = "bayesmix"
author = "the bayesmix developers"
copyright = "bayesmix developers, BSD-3-Clause"
try:
    from bayesmix import __version__ as release
except Exception:  # noqa: BLE001 -- the API page then reports the import failure itself
    release = ""
version = release

extensions = [
    "myst_nb",               # Markdown pages (MyST) and notebooks
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",  # the summary tables of the API page (no generated pages)
    "sphinx.ext.mathjax",
    "public_api",            # docs/_ext/public_api.py: the API reference from bayesmix.__all__
    "notebook_gallery",      # docs/_ext/notebook_gallery.py: the gallery page's cards
]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "_ext", "**.ipynb_checkpoints", "Thumbs.db", ".DS_Store"]
root_doc = "index"

# Notebooks: render what is committed. A notebook writing to stderr (a warning, a progress
# bar) is a build warning, so `-W` fails on it: the gallery shows no warnings.
nb_execution_mode = "off"
nb_output_stderr = "warn"
nb_merge_streams = True

myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
maximum_signature_line_length = 88   # longer signatures get one parameter per line
default_role = "code"                # docstrings write `fixef()` for code

html_theme = "furo"
html_title = "bayesmix"
html_static_path = ["_static"]
html_css_files = ["bayesmix.css"]
html_show_sourcelink = False

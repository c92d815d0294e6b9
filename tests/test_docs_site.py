"""The documentation site, opened in a real browser (headless Chromium).

The site is built once per session with warnings as errors, or taken from
BAYESMIX_DOCS_HTML when .ci/run has just built it. Each gallery page must show every figure
its notebook holds (img elements loaded, naturalWidth > 0), and the API page must document
`Model`. Needs the `docs` extra and Debian's chromium + chromium-driver; without them the
browser tests skip and say which piece is missing.
"""
from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
# BAYESMIX_DOCS_NOTEBOOKS: the folder docs/conf.py builds the gallery from (default notebooks/)
NOTEBOOKS = sorted(Path(os.environ.get("BAYESMIX_DOCS_NOTEBOOKS", ROOT / "notebooks"))
                   .glob("*.ipynb"))
IMAGE_TYPES = ("image/png", "image/jpeg", "image/svg+xml")
CHROMIUM = os.environ.get("BAYESMIX_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("BAYESMIX_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")


def image_outputs(nb) -> int:
    return sum(any(t in out.get("data", {}) for t in IMAGE_TYPES)
               for cell in nb.cells if cell.cell_type == "code"
               for out in cell.get("outputs", []))


# ---- the committed notebooks (no browser needed) -----------------------------------------

@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_notebook_shows_results(path):
    """The repository page and the gallery show what is committed: every code cell executed,
    figures present, no errors and nothing on stderr (warnings, progress bars)."""
    nb = nbformat.read(path, as_version=4)
    code = {i: c for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.strip()}
    assert code, f"{path.name} has no code cells"
    unexecuted = [i for i, c in code.items() if not c.get("execution_count")]
    assert not unexecuted, (f"{path.name}: cells {unexecuted} committed without outputs; "
                            f"run python tools/run_notebooks.py notebooks/{path.name}")
    noisy = [(i, out.get("output_type"), out.get("name", out.get("ename")))
             for i, c in code.items() for out in c.get("outputs", [])
             if out.get("output_type") == "error"
             or (out.get("output_type") == "stream" and out.get("name") == "stderr")]
    assert not noisy, f"{path.name}: errors or stderr in the committed outputs: {noisy}"
    assert image_outputs(nb) >= 1, f"{path.name}: no figure among the committed outputs"


# ---- the built site in Chromium ------------------------------------------------------------

@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    prebuilt = os.environ.get("BAYESMIX_DOCS_HTML")
    if prebuilt:
        html = Path(prebuilt)
        assert (html / "index.html").is_file(), f"BAYESMIX_DOCS_HTML={prebuilt}: no index.html"
        return html
    pytest.importorskip("sphinx", reason="the docs extra is not installed (pip install -e '.[docs]')")
    pytest.importorskip("myst_nb", reason="the docs extra is not installed (pip install -e '.[docs]')")
    html = tmp_path_factory.mktemp("site") / "html"
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(html.parent / "doctrees"), str(ROOT / "docs"), str(html)],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"sphinx-build -W failed:\n{done.stderr[-4000:]}"
    return html


@pytest.fixture(scope="module")
def base_url(site):
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest's output to the tests
        pass


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="selenium is not installed (the docs extra)")
    for exe, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (Path(exe).is_file() or shutil.which(exe)):
            pytest.skip(f"{exe} not found: install Debian's {package} "
                        f"(apt-get install -y chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--window-size=1280,1600",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _open(browser, url):
    browser.get(url)
    assert browser.execute_script("return document.readyState") == "complete"
    # images can still be decoding after the load event on a busy machine
    browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "Promise.all([...document.images].map(i => i.decode().catch(() => null)))"
        ".then(() => done(null));")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_gallery_page_shows_its_figures(path, browser, base_url):
    expected = image_outputs(nbformat.read(path, as_version=4))
    _open(browser, f"{base_url}/gallery/{path.stem}.html")
    title = browser.execute_script("return document.querySelector('article h1')?.textContent")
    assert title, f"gallery/{path.stem}.html has no page heading"
    images = browser.execute_script(
        "return [...document.querySelectorAll('article .cell_output img')].map("
        "i => ({src: i.currentSrc, ok: i.complete && i.naturalWidth > 0,"
        " width: i.naturalWidth}))")
    broken = [i["src"] for i in images if not i["ok"]]
    assert not broken, f"gallery/{path.stem}.html: figures that did not load: {broken}"
    assert len(images) >= expected, (
        f"gallery/{path.stem}.html shows {len(images)} figures; the notebook holds {expected}")
    stderr_blocks = browser.execute_script(
        "return document.querySelectorAll('article .output.stderr').length")
    assert stderr_blocks == 0, f"gallery/{path.stem}.html shows stderr output"


def test_gallery_index_shows_every_notebook(browser, base_url):
    _open(browser, f"{base_url}/gallery.html")
    links = browser.execute_script(
        "return [...document.querySelectorAll('article a.reference.internal')]"
        ".map(a => a.getAttribute('href'))")
    for path in NOTEBOOKS:
        assert any(h.split("#")[0] == f"gallery/{path.stem}.html" for h in links), (
            f"the gallery page does not link {path.stem}: {links}")
    thumbs = browser.execute_script(
        "return [...document.querySelectorAll('article .bm-gallery img')].map("
        "i => i.complete && i.naturalWidth > 0)")
    expected = sum(image_outputs(nbformat.read(p, as_version=4)) > 0 for p in NOTEBOOKS)
    assert len(thumbs) == expected and all(thumbs), (
        f"gallery cards: {thumbs} loaded, one picture expected per notebook with figures")


def test_api_page_documents_model(browser, base_url):
    _open(browser, f"{base_url}/api.html")
    entry = browser.execute_script(
        "const dt = document.getElementById('bayesmix.Model');"
        "return dt ? dt.textContent : null")
    assert entry is not None, "api.html has no entry for bayesmix.Model"
    assert "Model" in entry and "formula" in entry, entry
    methods = browser.execute_script(
        "return [...document.querySelectorAll('dt[id^=\"bayesmix.Model.\"]')].map(d => d.id)")
    for method in ("fit", "sample"):
        assert f"bayesmix.Model.{method}" in methods, methods

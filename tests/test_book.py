"""The book builds with warnings as errors, and its pages work offline.

The build is the session's ``built_book`` (conftest.py). A headless
Chromium (Debian's, driven by Playwright) opens two chapter pages from a
loopback server and checks that the local MathJax typeset the math, that
every image loaded and that no request left the machine; without Chromium
the test fails and names `make system-deps`. The configuration of
`make book-exec` is checked too.
"""

import functools
import http.server
import shutil
import subprocess
import threading

import pytest
import yaml
from conftest import ROOT, launch_chromium

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("book")]


def test_every_chapter_page_is_built(built_book):
    for stem in [
        "ch01-layer-arithmetic",
        "ch02-lenet",
        "ch03-alexnet",
        "ch04-vgg",
        "ch05-resnet",
        "ch06-inception",
        "ch07-side-by-side",
        "ch08-mobilenet",
        "glossary",
    ]:
        assert (built_book / "book" / f"{stem}.html").exists(), stem
    assert (built_book / "index.html").exists()
    mathjax = list((built_book / "_static").rglob("tex-chtml*.js"))
    assert mathjax, "the offline MathJax was not copied into the book"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        """No line on stderr for each request."""


@pytest.fixture(scope="module")
def server(built_book):
    handler = functools.partial(_QuietHandler, directory=str(built_book))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.mark.browser
@pytest.mark.parametrize(
    "page", ["book/ch01-layer-arithmetic.html", "book/ch06-inception.html"]
)
def test_page_renders_offline(server, page):
    from playwright.sync_api import sync_playwright

    outside = []

    def guard(route):
        url = route.request.url
        if url.startswith(server) or url.startswith("data:"):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            ctx = browser.new_context()
            ctx.route("**/*", guard)
            tab = ctx.new_page()
            tab.goto(
                f"{server}/{page}", wait_until="networkidle", timeout=60000
            )
            tab.wait_for_function(
                "window.MathJax && MathJax.startup && MathJax.startup.promise",
                timeout=30000,
            )
            tab.evaluate("MathJax.startup.promise")
            typeset = tab.locator("mjx-container").count()
            text = tab.inner_text("main")
            images = tab.evaluate(
                """Array.from(document.images).map(i => [
                    i.currentSrc || i.src, i.complete && i.naturalWidth > 0
                ])"""
            )
            shots = ROOT / "test-artifacts"
            shots.mkdir(exist_ok=True)
            tab.screenshot(
                path=str(shots / (page.replace("/", "_") + ".png")),
                full_page=False,
            )
        finally:
            browser.close()
    assert typeset > 0, "no math was typeset by MathJax"
    assert "\\lfloor" not in text and "\\frac" not in text, "raw TeX visible"
    assert images, "the page shows no figure"
    broken = [src for src, ok in images if not ok]
    assert not broken, f"images that did not load: {broken}"
    assert not outside, f"requests that tried to leave the machine: {outside}"


def test_book_exec_builds_the_book_config_with_execution_on(tmp_path):
    """`make book-exec` uses _config.yml with only the execution mode
    changed, and refuses to run when it cannot change it."""

    def exec_config(root):
        target = tmp_path / "exec.yml"
        target.unlink(missing_ok=True)
        result = subprocess.run(
            ["make", "--no-print-directory", "-o", ".venv/.installed"]
            + ["exec-config", f"EXEC_CONFIG={target}"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return result, target

    result, target = exec_config(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    book = yaml.safe_load((ROOT / "_config.yml").read_text())
    executed = yaml.safe_load(target.read_text())
    assert book["execute"]["execute_notebooks"] == "off"
    assert executed["execute"].pop("execute_notebooks") == "cache"
    book["execute"].pop("execute_notebooks")
    assert executed == book

    # a _config.yml that no longer says "off": an error, not a copy
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(ROOT / "Makefile", other)
    (other / ".venv").symlink_to(ROOT / ".venv")
    text = (ROOT / "_config.yml").read_text()
    (other / "_config.yml").write_text(
        text.replace('execute_notebooks: "off"', "execute_notebooks: auto")
    )
    result, target = exec_config(other)
    assert result.returncode != 0 and not target.exists()
    assert "execute_notebooks is 'auto', not 'off'" in result.stderr

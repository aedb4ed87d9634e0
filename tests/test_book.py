"""The book builds with warnings as errors, and its pages work offline.

A headless Chromium (Debian's, driven by Playwright) opens the built
chapter page from a loopback server and checks that the local MathJax
typeset the math, that every image loaded and that no request left the
machine.
"""

import functools
import http.server
import shutil
import subprocess
import threading

import pytest
from conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("book")]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("book")
    jb = ROOT / ".venv" / "bin" / "jupyter-book"
    cmd = [
        str(jb) if jb.exists() else "jupyter-book",
        "build",
        str(ROOT),
        "--path-output",
        str(out),
        "--warningiserror",
        "--nitpick",
        "--keep-going",
        "--builder",
        "html",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (
        result.stdout[-5000:] + result.stderr[-5000:]
    )
    return out / "_build" / "html"


def test_every_chapter_page_is_built(built):
    for stem in [
        "ch01-layer-arithmetic",
        "ch02-lenet",
        "ch03-alexnet",
        "ch04-vgg",
        "ch05-resnet",
        "ch06-inception",
    ]:
        assert (built / "book" / f"{stem}.html").exists(), stem
    assert (built / "index.html").exists()
    mathjax = list((built / "_static").rglob("tex-chtml*.js"))
    assert mathjax, "the offline MathJax was not copied into the book"


@pytest.fixture(scope="module")
def server(built):
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(built)
    )
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    handler.log_message = lambda *a, **k: None
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.mark.browser
@pytest.mark.parametrize(
    "page", ["book/ch01-layer-arithmetic.html", "book/ch06-inception.html"]
)
def test_page_renders_offline(server, page, tmp_path):
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
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
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
            images = tab.evaluate("""Array.from(document.images).map(
                i => [i.currentSrc || i.src, i.complete && i.naturalWidth > 0])""")
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

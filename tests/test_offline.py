"""No page of the built book loads anything from another host.

Reads the HTML and CSS of the book that the session builds once (the
``built_book`` fixture of conftest.py, shared with test_book.py) and lists
every address on another host that a browser would fetch by itself:

* ``src`` (and ``srcset``) of script, img, iframe, audio, video, source,
  track, embed and input; ``href`` of link (stylesheets, icons,
  preloads); ``data`` of object; ``poster`` of video;
* an ``http(s)://`` address inside an inline ``<script>``: sphinx-thebe
  wrote the address of its CDN script (unpkg.com) there, on every page;
* ``@import`` and ``url(...)`` in the book's CSS.

Links that a reader follows (``<a href>``) load nothing and are allowed.
The browser test of test_book.py checks two pages in Chromium as well;
this one reads every page and needs no browser.
"""

import html.parser
import re

import pytest

REMOTE = re.compile(r"^\s*(https?:)?//", re.IGNORECASE)
IN_SCRIPT = re.compile(r"https?://[^\s\"'<>`)]+", re.IGNORECASE)
IN_CSS = re.compile(
    r"""@import\s+(?:url\()?\s*["']?((?:https?:)?//[^"')\s;]+)"""
    r"""|url\(\s*["']?((?:https?:)?//[^"')\s]+)""",
    re.IGNORECASE,
)
# (tag, attribute) pairs whose address the browser fetches by itself.
LOADS = {
    **dict.fromkeys(
        [
            "script",
            "img",
            "iframe",
            "audio",
            "video",
            "source",
            "track",
            "embed",
            "input",
        ],
        ("src", "srcset"),
    ),
    "link": ("href",),
    "object": ("data",),
}
LOADS["video"] += ("poster",)


class _Loads(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.found = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name not in LOADS.get(tag, ()) or not value:
                continue
            urls = (
                [part.split()[0] for part in value.split(",") if part.strip()]
                if name == "srcset"
                else [value]
            )
            self.found += [
                f"<{tag} {name}={url.strip()}>"
                for url in urls
                if REMOTE.match(url)
            ]
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.found += [
                f"<script> {url}" for url in IN_SCRIPT.findall(data)
            ]


def remote_loads(page):
    """What ``page`` (HTML text) would fetch from another host."""
    parser = _Loads()
    parser.feed(page)
    parser.close()
    return parser.found


def remote_css_loads(css):
    """What a style sheet would fetch from another host."""
    return [a or b for a, b in IN_CSS.findall(css)]


def test_the_scan_finds_what_a_browser_would_fetch():
    page = """<html><head>
    <script>const THEBE_JS_URL = "https://unpkg.com/thebe@0.8.2/lib/index.js"
    </script>
    <script src="_static/local.js"></script>
    <script async src="https://cdn.example.org/a.js"></script>
    <link rel="stylesheet" href="//fonts.example.org/f.css">
    <link rel="stylesheet" href="_static/local.css">
    </head><body>
    <a href="https://doi.org/10.1109/5.726791">the paper</a>
    <img src="../_images/a.png" srcset="x.png 1x, https://i.example.org/y.png">
    <p>https://example.org in text is no load</p>
    </body></html>"""
    assert remote_loads(page) == [
        "<script> https://unpkg.com/thebe@0.8.2/lib/index.js",
        "<script src=https://cdn.example.org/a.js>",
        "<link href=//fonts.example.org/f.css>",
        "<img srcset=https://i.example.org/y.png>",
    ]
    css = """@import "../basic.css";
    @import url("https://fonts.example.org/css");
    .a { background: url(images/local.png) }
    .b { background: url('//cdn.example.org/b.png') }"""
    assert remote_css_loads(css) == [
        "https://fonts.example.org/css",
        "//cdn.example.org/b.png",
    ]


@pytest.mark.slow
@pytest.mark.xdist_group("book")
def test_no_built_page_loads_from_another_host(built_book):
    pages = sorted(built_book.rglob("*.html"))
    names = {p.relative_to(built_book).as_posix() for p in pages}
    assert {"index.html", "book/ch01-layer-arithmetic.html"} <= names
    assert any(n.startswith("notebooks/") for n in names), names
    found = {
        p.relative_to(built_book).as_posix(): remote_loads(
            p.read_text(encoding="utf-8")
        )
        for p in pages
    }
    for sheet in sorted(built_book.rglob("*.css")):
        found[sheet.relative_to(built_book).as_posix()] = remote_css_loads(
            sheet.read_text(encoding="utf-8", errors="replace")
        )
    found = {name: urls for name, urls in found.items() if urls}
    assert not found, (
        f"{len(found)} files of the built book load from another host: "
        + "; ".join(f"{name}: {urls}" for name, urls in found.items())
    )

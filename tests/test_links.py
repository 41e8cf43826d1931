"""Internal links and cross-references of the built site resolve: every relative href/src of every page points at a
file of _build/html, and every #anchor at an id of its target page. External hosts are not contacted (the build
machine and CI have no internet) and not checked. Runs over the already built site: no notebook is executed.

Together with the strict build (`-W -n`: unresolved references are errors) this is the book's link check.
"""
from __future__ import annotations

import re
from functools import lru_cache
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from site_pages import SITE, docname, require_site, toc_entries

pytestmark = pytest.mark.site

LINK_ATTRS = {"a": "href", "link": "href", "img": "src", "script": "src", "source": "src", "iframe": "src"}


class _Page(HTMLParser):
    """The ids of a page, its links (tag, url), and cross-reference markup left without a link."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[tuple[str, str]] = []
        self.unresolved: list[str] = []
        self._open_a = 0
        self._capture = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name"):
            if attrs.get(key) and (key == "id" or tag == "a"):
                self.ids.add(attrs[key])
        if tag in LINK_ATTRS and attrs.get(LINK_ATTRS[tag]):
            self.links.append((tag, attrs[LINK_ATTRS[tag]]))
        if tag == "a":
            self._open_a += 1
        classes = (attrs.get("class") or "").split()
        # Sphinx renders a reference it could not resolve as its text with class "xref", outside any link
        if "xref" in classes and not self._open_a:
            self.unresolved.append(f"<{tag} class={attrs.get('class')!r}> ")
            self._capture = True

    def handle_data(self, data):
        if self._capture and data.strip():
            self.unresolved[-1] += data.strip()[:80]
            self._capture = False

    def handle_endtag(self, tag):
        if tag == "a" and self._open_a:
            self._open_a -= 1


def _pages() -> list[Path]:
    site = require_site()
    return sorted(p for p in site.rglob("*.html") if not p.relative_to(site).parts[0].startswith(("_static", "_sources")))


@lru_cache(maxsize=None)
def _parse(path: Path) -> _Page:
    p = _Page()
    p.feed(path.read_text(encoding="utf-8", errors="replace"))
    return p


def _is_external(url: str) -> bool:
    return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", url)) or url.startswith("//")


def test_every_toc_page_was_built():
    site = require_site()
    missing = [e for e in toc_entries() if not (site / f"{docname(e)}.html").exists()]
    assert not missing, f"pages of _toc.yml missing from {site}: {missing}"


def test_internal_links_and_anchors_resolve():
    site = require_site()
    broken, checked = [], 0
    for page in _pages():
        rel_page = page.relative_to(site).as_posix()
        for tag, url in _parse(page).links:
            if _is_external(url) or url in ("#", ""):
                continue
            parts = urlsplit(url)
            target = page if not parts.path else (page.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            checked += 1
            if not target.is_file() or not target.is_relative_to(site.resolve()):
                broken.append(f"{rel_page}: <{tag}> {url} -> no such file")
                continue
            frag = unquote(parts.fragment)
            if frag and target.suffix == ".html" and frag not in _parse(target).ids:
                broken.append(f"{rel_page}: <{tag}> {url} -> no id {frag!r} in {target.relative_to(site.resolve())}")
    assert checked > 0, "no internal link found: is the site empty?"
    assert not broken, f"{len(broken)} broken internal links of {checked}:\n  " + "\n  ".join(broken[:60])


def test_no_unresolved_cross_references():
    """A reference Sphinx could not resolve still renders (as plain text with class xref) when a build runs
    without -n; none may be left in the site."""
    site = require_site()
    found = [f"{p.relative_to(site)}: {x}" for p in _pages() for x in _parse(p).unresolved]
    assert not found, "unresolved cross-references:\n  " + "\n  ".join(found)

"""Every lab says, in one line under its title, where it runs live (Binder, Colab, locally) with links that open the
page it is on, and that the figure above it is its default run; a frontend without widgets gets that line instead of
the lab. The site test reads the widget state saved in the built pages."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from skipnet.widgets import base
from test_labs_common import LABS

ROOT = Path(__file__).resolve().parents[1]


def test_the_package_names_the_repository_of_the_book():
    repo = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
    assert (base.REPOSITORY, base.BRANCH) == (repo["url"].rstrip("/"), repo.get("branch", "main"))


@pytest.mark.parametrize("cls", LABS, ids=lambda c: c.__name__)
def test_each_lab_links_the_page_that_shows_it(cls):
    from site_pages import binder_url
    page = ROOT / f"{cls.page}.md"
    assert page.is_file(), f"{cls.__name__}.page = {cls.page!r} names no page"
    assert re.search(rf"\b{cls.__name__}\(", page.read_text()), f"{cls.page}.md does not show {cls.__name__}"
    links = base.live_links(cls.page)
    assert links["Binder"] == binder_url(page)                      # the page's own Binder button
    notebook = ROOT / links["Colab"].split(f"/blob/{base.BRANCH}/", 1)[1]
    assert notebook.is_file() and re.search(rf"\b{cls.__name__}\(", notebook.read_text()), notebook


@pytest.mark.parametrize("cls", LABS, ids=lambda c: c.__name__)
def test_each_lab_shows_the_line_under_its_title_and_without_widgets(cls):
    lab = cls(threaded=False)
    children = lab.widget.children
    assert children[1] is lab.where and children[2].children[0] is lab.controls[0]   # title, the line, controls
    for text in (lab.where.value, lab._repr_mimebundle_()["text/html"]):
        hrefs = re.findall(r'href="([^"]+)"', text)
        assert hrefs == list(base.live_links(cls.page).values()), text
        assert "figure above is its default run" in text
    assert "application/vnd.jupyter.widget-view+json" in lab._repr_mimebundle_()


def test_a_page_outside_the_book_is_refused():
    with pytest.raises(ValueError, match="page must be a path under book/"):
        base.live_links("intro.md")


@pytest.mark.site
def test_the_static_pages_save_each_labs_line():
    from site_pages import docname, require_site, toc_entries
    site = require_site()
    problems = []
    for entry in toc_entries():
        md = ROOT / f"{docname(entry)}.md"
        shown = [c.__name__ for c in LABS if md.is_file() and re.search(rf"^[\w ,=]*\b{c.__name__}\(", md.read_text(),
                                                                            re.M)]
        html = (site / f"{docname(entry)}.html").read_text(encoding="utf-8")
        if html.count("Runs live on") < len(shown):
            problems.append(f"{docname(entry)}: {len(shown)} labs ({shown}), {html.count('Runs live on')} lines saved")
    assert not problems, "\n".join(problems)

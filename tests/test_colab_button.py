"""The Colab launch button opens the page's notebook under notebooks/ (Colab cannot open the .md page that
sphinx-book-theme links), the Binder button keeps the page, and a page without a notebook shows no Colab button.
The unit tests feed the extension the theme's context; the site test reads the built pages."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("colab_button", ROOT / "scripts" / "colab_button.py")
colab_button = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(colab_button)

REPO = "https://github.com/skipnet-book/why-skip-connections"
COLAB = "https://colab.research.google.com"


def _app(tmp_path, path_to_docs=""):
    opts = {"repository_url": REPO, "repository_branch": "main", "path_to_docs": path_to_docs,
            "launch_buttons": {"colab_url": COLAB, "binderhub_url": "https://mybinder.org"}}
    return SimpleNamespace(config=SimpleNamespace(html_theme_options=opts), confdir=str(tmp_path))


def _context(pagename):
    """The launch group as sphinx-book-theme builds it: every link from the page's own path."""
    binder = f"https://mybinder.org/v2/gh/skipnet-book/why-skip-connections/main?urlpath=lab/tree/{pagename}.md"
    colab = f"{COLAB}/github/skipnet-book/why-skip-connections/blob/main/{pagename}.md"
    return {"header_buttons": [{"label": "download-buttons", "buttons": []},
                               {"label": "launch-buttons", "buttons": [{"text": "Binder", "url": binder},
                                                                       {"text": "Colab", "url": colab}]}]}


def _launch(ctx):
    return {b["text"]: b["url"] for b in ctx["header_buttons"][1]["buttons"]}


@pytest.mark.parametrize("page,notebook", [("book/intro", "notebooks/intro.ipynb"),
                                           ("book/highway/training", "notebooks/highway/training.ipynb")])
def test_colab_opens_the_pages_notebook_and_binder_keeps_the_page(tmp_path, page, notebook):
    (tmp_path / notebook).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / notebook).write_text("{}")
    ctx = _context(page)
    binder = _launch(ctx)["Binder"]
    colab_button._point_colab_at_notebooks(_app(tmp_path), page, "page.html", ctx, None)
    links = _launch(ctx)
    assert links["Colab"] == f"{COLAB}/github/skipnet-book/why-skip-connections/blob/main/{notebook}"
    assert links["Binder"] == binder


def test_a_page_without_a_notebook_loses_the_colab_button(tmp_path):
    ctx = _context("book/verdict")
    colab_button._point_colab_at_notebooks(_app(tmp_path), "book/verdict", "page.html", ctx, None)
    assert set(_launch(ctx)) == {"Binder"}


def test_a_book_in_a_subfolder_links_the_notebook_there(tmp_path):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "intro.ipynb").write_text("{}")
    ctx = _context("book/intro")
    colab_button._point_colab_at_notebooks(_app(tmp_path, "site/"), "book/intro", "page.html", ctx, None)
    assert _launch(ctx)["Colab"].endswith("/blob/main/site/notebooks/intro.ipynb")


@pytest.mark.site
def test_every_notebook_page_of_the_site_has_a_colab_button_to_its_notebook():
    from site_pages import docname, is_notebook, require_site, source, toc_entries
    site = require_site()
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    org_repo = cfg["repository"]["url"].rstrip("/").split("github.com/")[1]
    problems = []
    for entry in toc_entries():
        if not is_notebook(source(entry)):
            continue
        html = (site / f"{docname(entry)}.html").read_text(encoding="utf-8")
        target = colab_button.colab_target(docname(entry))
        want = f"{COLAB}/github/{org_repo}/blob/{cfg['repository'].get('branch', 'main')}/{target}"
        colab = re.findall(r'href="(https://colab\.research\.google\.com/[^"]+)"', html)
        if colab != [want] or not (ROOT / target).is_file():
            problems.append(f"{docname(entry)}: Colab links {colab}, expected [{want}]")
        if f"urlpath=lab/tree/{docname(entry)}.md" not in html:
            problems.append(f"{docname(entry)}: the Binder button no longer opens the page")
    assert not problems, "\n".join(problems)

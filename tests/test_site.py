"""The built site (after `make book`): every TOC page exists, was executed, holds no traceback."""
import re
from pathlib import Path

import pytest

from skipnet import reading

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
pytestmark = pytest.mark.site


def toc_files():
    t = reading.toc(ROOT)
    return [t["root"], *t["main"], *(f for ch in t["main"] for f in t["evidence"][ch]), *t["reference"]]


def notebook_files():
    """The executed pages: the main line and its evidence pages (the reference part holds no code)."""
    t = reading.toc(ROOT)
    return [t["root"], *t["main"], *(f for ch in t["main"] for f in t["evidence"][ch])]


@pytest.fixture(scope="module")
def site():
    if not (HTML / "index.html").exists():
        pytest.fail("the site is not built: run `make book` first (make test does it)")
    return HTML


def test_index_exists(site):
    assert (site / "index.html").exists()


@pytest.mark.parametrize("page", toc_files())
def test_every_toc_page_is_built_without_tracebacks(site, page):
    path = site / f"{page}.html"
    assert path.exists(), f"{page} was not built"
    text = path.read_text()
    for marker in ("Traceback (most recent call last)", "ansi-red-intense-fg", "CellExecutionError"):
        assert marker not in text, f"{page}: an execution error is rendered in the page ({marker})"
    assert "{glue" not in text, f"{page}: an unresolved glue reference"


@pytest.mark.parametrize("page", notebook_files())
def test_chapters_were_executed_and_show_figures(site, page):
    text = (site / f"{page}.html").read_text()
    assert "cell_output" in text, f"{page} shows no executed output"
    assert re.search(r'<img[^>]+src="[^"]+\.png"', text), f"{page} shows no figure"


@pytest.mark.parametrize("page", notebook_files())
def test_no_glued_value_shows_as_a_stray_output(site, page):
    """A glued value is for the text: in the executed notebook its output carries only myst-nb's hidden
    ``application/papermill.record/...`` data, never a displayed ``text/plain`` under a visible cell."""
    import json
    executed = site.parent / "jupyter_execute" / f"{page}.ipynb"
    assert executed.exists(), f"{executed} missing: the build did not execute {page}"
    stray = []
    for cell in json.loads(executed.read_text())["cells"]:
        for out in cell.get("outputs", []):
            name = (out.get("metadata") or {}).get("scrapbook", {}).get("name")
            shown = [k for k in (out.get("data") or {}) if not k.startswith("application/papermill.record/")]
            if name and shown:
                stray.append(name)
    assert not stray, f"{page}: glued values displayed as outputs: {stray[:10]}"

"""The built site (after `make book`): every TOC page exists, was executed, holds no traceback."""
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
pytestmark = pytest.mark.site


def toc_files():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"]] + [c["file"] for c in toc.get("chapters", [])]


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


@pytest.mark.parametrize("page", [p for p in toc_files() if not p.endswith("references")])
def test_chapters_were_executed_and_show_figures(site, page):
    text = (site / f"{page}.html").read_text()
    assert "cell_output" in text, f"{page} shows no executed output"
    assert re.search(r'<img[^>]+src="[^"]+\.png"', text), f"{page} shows no figure"

"""What the site tests share (tests/test_browser.py, tests/test_links.py): where the built site is, which pages the
table of contents lists, which of them are notebooks (and so carry launch buttons), and what their Binder links are.

The book root defaults to the repository and the site to its _build/html; SKIPNET_BOOK_ROOT points the site tests
at another book, SKIPNET_SITE at a site built elsewhere (`jupyter-book build . --path-output DIR` gives DIR/_build/html).
SKIPNET_TOC names the table of contents of such a build (`--toc FILE`). Screenshots go beside the site, to
<site>/../screenshots (_build/screenshots).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from skipnet import reading

ROOT = Path(os.environ.get("SKIPNET_BOOK_ROOT") or Path(__file__).resolve().parents[1])
SITE = Path(os.environ.get("SKIPNET_SITE") or ROOT / "_build" / "html")
SHOTS = SITE.parent / "screenshots"
TOC = Path(os.environ.get("SKIPNET_TOC") or ROOT / "_toc.yml")


def config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def toc_entries() -> list[str]:
    """Every `file:` of _toc.yml, root first, in reading order (parts, chapters and sections alike)."""
    return reading.toc_files(TOC)


def docname(entry: str) -> str:
    """The page name Sphinx gives a TOC entry (its path without the suffix)."""
    return re.sub(r"\.(md|ipynb|rst)$", "", entry)


def source(entry: str) -> Path:
    base = ROOT / docname(entry)
    for suffix in (".md", ".ipynb", ".rst"):
        if base.with_suffix(suffix).exists():
            return base.with_suffix(suffix)
    raise FileNotFoundError(f"_toc.yml lists {entry!r} but no {base}.md/.ipynb/.rst exists")


def is_notebook(path: Path) -> bool:
    """Pages built from notebooks (an .ipynb, or MyST markdown with a kernelspec) get the launch buttons."""
    if path.suffix == ".ipynb":
        return True
    if path.suffix != ".md":
        return False
    m = re.match(r"---\n(.*?)\n---", path.read_text(), re.S)
    return bool(m and "kernelspec" in (yaml.safe_load(m.group(1)) or {}))


def binder_url(path: Path) -> str:
    """The Binder launch link a notebook page must carry, computed from _config.yml (repository, branch,
    path_to_book, binderhub_url, notebook_interface)."""
    cfg = config()
    repo, launch = cfg["repository"], cfg["launch_buttons"]
    m = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+?)(?:\.git)?/?", repo["url"])
    assert m, f"repository.url must be a GitHub repository URL, got {repo['url']!r}"
    org, name = m.groups()
    rel = path.relative_to(ROOT).as_posix()
    book = (repo.get("path_to_book") or "").strip("/")
    in_repo = f"{book}/{rel}" if book else rel
    ui = "lab/tree" if launch.get("notebook_interface") == "jupyterlab" else "tree"
    return f"{launch['binderhub_url'].rstrip('/')}/v2/gh/{org}/{name}/{repo.get('branch', 'main')}?urlpath={ui}/{in_repo}"


def require_site() -> Path:
    """The built site, or a clear failure (never a skip): the site tests run after the build in `make test`."""
    if not (SITE / "index.html").exists():
        pytest.fail(f"no built site at {SITE}: build it first (`make book`, i.e. "
                    f"`jupyter-book build . -W -n --keep-going`), then run `pytest -m site`", pytrace=False)
    return SITE

"""The Colab notebooks of the book: ``notebooks/<page>.ipynb`` made from each notebook page ``book/<page>.md``.

    python scripts/colab_notebooks.py            # (re)write notebooks/
    python scripts/colab_notebooks.py --check    # exit 1, naming each notebook that differs from its page

Colab opens only ``.ipynb`` files from a repository, and the book's pages are MyST markdown. Every page of the table
of contents that is a notebook (main pages and evidence pages alike) gets one, so that the "Colab" launch button of
every page and each lab's Colab link open the page they are on (``scripts/colab_button.py`` points the button here).
A notebook is the page's cells as jupytext reads them, with two cells in front: a note that it is generated, and a
set-up cell (:func:`setup_source`) that installs what Colab lacks: the book's package, from a clone of the
repository named in ``_config.yml`` (the clone also holds the stored sweeps the pages read), with its dependencies
that Colab does not ship (pip leaves torch, numpy and matplotlib alone where they are installed), and the CPU torch
wheel where no torch is installed. Where the package is already importable (Binder, a local clone) it only moves to
the page's folder. ``SKIPNET_CHECKOUT`` names a local checkout to install instead of cloning (the tests).

The notebooks are committed and never edited by hand; ``tests/test_colab_notebooks.py`` fails when one drifts from its
page, and runs each in a clean virtual environment.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import jupytext
import nbformat
import yaml

from skipnet.reading import toc_files

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
BOOK = ROOT / "book"
SCRIPT = "scripts/colab_notebooks.py"


def repository(config: Path | None = None) -> tuple[str, str, str]:
    """(clone URL, branch, path to the book inside the repository) from ``_config.yml``'s ``repository``."""
    repo = yaml.safe_load((config or ROOT / "_config.yml").read_text())["repository"]
    url = repo["url"].rstrip("/")
    if not re.fullmatch(r"https://github\.com/[^/]+/[^/]+", url):
        raise ValueError(f"repository.url in _config.yml must be https://github.com/OWNER/NAME, got {url!r}")
    return url, repo.get("branch") or "main", (repo.get("path_to_book") or "").strip("/")


def toc_entries(toc: Path | None = None) -> list[str]:
    """Every ``file`` of the table of contents, root first, in reading order."""
    return toc_files(toc or ROOT / "_toc.yml")


def is_notebook_page(path: Path) -> bool:
    """A MyST page with a kernelspec (what Jupyter Book executes, and gives launch buttons)."""
    m = re.match(r"---\n(.*?)\n---", path.read_text(), re.S)
    return bool(m and "kernelspec" in (yaml.safe_load(m.group(1)) or {}))


def pages() -> list[Path]:
    """The notebook pages of the table of contents, in reading order."""
    found = [ROOT / f"{entry}.md" for entry in toc_entries()]
    return [p for p in found if p.is_file() and is_notebook_page(p)]


def notebook_path(page: Path) -> Path:
    """``book/highway/training.md`` -> ``notebooks/highway/training.ipynb``."""
    return NOTEBOOKS / page.relative_to(BOOK).with_suffix(".ipynb")


def setup_source(page: Path) -> str:
    url, branch, book = repository()
    folder = page.parent.relative_to(ROOT).as_posix()
    folder = f"{book}/{folder}" if book else folder
    name = url.rsplit("/", 1)[1]
    return f'''\
# Set-up for Colab: run this cell first. It clones the book's repository (its package and the stored results the
# page reads) and installs the package with what Colab lacks; Colab's own torch, numpy, matplotlib and ipywidgets
# stay. Where the package is installed already (Binder, a local clone) it only moves to this page's folder.
import importlib.util, os, site, subprocess, sys
from pathlib import Path

REPOSITORY, BRANCH, PAGE_FOLDER = "{url}", "{branch}", "{folder}"
if importlib.util.find_spec("skipnet") is None:
    checkout = os.environ.get("SKIPNET_CHECKOUT") or os.path.abspath("{name}")    # or a local checkout
    if not os.path.isdir(checkout):
        subprocess.run(["git", "clone", "--quiet", "--depth", "1", "--branch", BRANCH, REPOSITORY, checkout],
                       check=True)
    if importlib.util.find_spec("torch") is None:            # not on Colab: the small CPU build, never CUDA's
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "torch",
                        "--index-url", "https://download.pytorch.org/whl/cpu"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "-e", checkout], check=True)
    for folder in site.getsitepackages():                    # read the new install's .pth without a restart
        site.addsitedir(folder)
    importlib.invalidate_caches()
import skipnet

os.chdir(Path(skipnet.__file__).resolve().parents[2] / PAGE_FOLDER)
'''


def header_source(page: Path) -> str:
    url, branch, _ = repository()
    rel = page.relative_to(ROOT).as_posix()
    return (f"*This notebook is made from the page [`{rel}`]({url}/blob/{branch}/{rel}) by `{SCRIPT}`: change the "
            f"page, not the notebook. Run the set-up cell below first. The page's MyST roles and directives (computed "
            f"numbers in the text, cross-references, citations, exercises) show here as source; the book's site "
            f"shows them filled in. Each lab runs live here; where the widgets cannot show, the figure above it is "
            f"its default run.*")


def make(page: Path) -> str:
    """The notebook of ``page``, as the text written to its file."""
    source = jupytext.read(page)
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": dict(source.metadata.get("kernelspec") or
                                      {"name": "python3", "display_name": "Python 3", "language": "python"}),
                   "language_info": {"name": "python"}}
    cells = [nbformat.v4.new_markdown_cell(header_source(page)),
             nbformat.v4.new_code_cell(setup_source(page), metadata={"tags": ["colab-setup"]})]
    for cell in source.cells:
        meta = {k: v for k, v in cell.metadata.items() if k != "lines_to_next_cell"}
        if cell.cell_type == "code":
            cells.append(nbformat.v4.new_code_cell(cell.source, metadata=meta))
        elif cell.cell_type == "markdown":
            cells.append(nbformat.v4.new_markdown_cell(cell.source, metadata=meta))
        else:
            cells.append(nbformat.v4.new_raw_cell(cell.source, metadata=meta))
    for i, cell in enumerate(cells):
        cell["id"] = f"cell-{i}"                              # stable ids: the same page gives the same file
    nb.cells = cells
    nbformat.validate(nb)
    return nbformat.writes(nb) + "\n"


def stale() -> list[str]:
    """The notebooks that differ from their pages, are missing, or have no page any more."""
    wanted = {notebook_path(p): p for p in pages()}
    out = [str(nb.relative_to(ROOT)) for nb, p in wanted.items() if not nb.is_file() or nb.read_text() != make(p)]
    out += [str(nb.relative_to(ROOT)) + " (no page)" for nb in sorted(NOTEBOOKS.rglob("*.ipynb")) if nb not in wanted]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only check that every notebook matches its page")
    args = ap.parse_args(argv)
    if args.check:
        bad = stale()
        for name in bad:
            print(f"out of date: {name}", file=sys.stderr)
        if bad:
            print(f"run: python {SCRIPT}", file=sys.stderr)
        return 1 if bad else 0
    wanted = {notebook_path(p): p for p in pages()}
    for nb in NOTEBOOKS.rglob("*.ipynb"):
        if nb not in wanted:
            nb.unlink()
    for nb, page in wanted.items():
        nb.parent.mkdir(parents=True, exist_ok=True)
        text = make(page)
        if not nb.is_file() or nb.read_text() != text:
            nb.write_text(text)
            print(f"wrote {nb.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The Colab notebooks (notebooks/, made by scripts/colab_notebooks.py) match their pages, and each runs top to bottom
in a clean virtual environment that holds only what Colab's image ships for the book (Python, pip, torch, numpy,
matplotlib, ipywidgets, and the kernel) plus what its own first cell installs.

The slow test installs torch from a wheel on local disk (``$SKIPNET_WHEELS``, else ``$PIP_FIND_LINKS``), never from
the network: the default PyPI torch on Linux is the multi-GB CUDA build. The first cell installs the package from this
checkout instead of cloning the repository (``SKIPNET_CHECKOUT``); it fetches its other dependencies (scikit-learn)
from the package index as on Colab. It takes about 15 minutes on two cores, so it runs with `make colab-test`
(marker ``colab``), apart from `make test`.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import time
import venv
from pathlib import Path

import nbformat
import pytest
import yaml

from skipnet import reading

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("skipnet_colab_notebooks", ROOT / "scripts" / "colab_notebooks.py")
colab = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(colab)

PAGES = colab.pages()
MAIN = {ROOT / f"{e}.md" for e in [reading.toc(ROOT)["root"], *reading.toc(ROOT)["main"]]}


def _requirement(name: str) -> str:
    """``name==version`` as requirements.txt pins it (the versions the book is tested with)."""
    m = re.search(rf"^{re.escape(name)}==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M | re.I)
    assert m, f"requirements.txt pins no {name}"
    return f"{name}=={m.group(1)}"


def test_every_notebook_page_has_its_notebook_and_none_drifted():
    assert {ROOT / "book" / "intro.md", ROOT / "book" / "highway.md"} <= set(PAGES)
    bad = colab.stale()
    assert not bad, f"notebooks out of date with their pages (run python scripts/colab_notebooks.py): {bad}"


def test_a_notebook_holds_its_page_cells_after_the_setup_cell():
    import jupytext
    page = ROOT / "book" / "verdict.md"
    nb = nbformat.reads((ROOT / "notebooks" / "verdict.ipynb").read_text(), as_version=4)
    src = jupytext.read(page)
    assert [c.source for c in nb.cells[2:]] == [c.source for c in src.cells]
    assert [c.cell_type for c in nb.cells[:2]] == ["markdown", "code"] and "colab-setup" in nb.cells[1].metadata.tags
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"].rstrip("/")
    assert f'"{url}"' in nb.cells[1].source                          # clones the repository the book names


def test_drift_is_found(tmp_path, monkeypatch):
    """A page edited after its notebook was made is reported, and so is a notebook whose page is gone."""
    book, notebooks = tmp_path / "book", tmp_path / "notebooks"
    shutil.copytree(ROOT / "book", book, ignore=shutil.ignore_patterns("data"))
    shutil.copytree(ROOT / "notebooks", notebooks)
    for name in ("_toc.yml", "_config.yml"):
        shutil.copy(ROOT / name, tmp_path / name)
    monkeypatch.setattr(colab, "ROOT", tmp_path)
    monkeypatch.setattr(colab, "BOOK", book)
    monkeypatch.setattr(colab, "NOTEBOOKS", notebooks)
    assert colab.stale() == []
    page = book / "verdict.md"
    page.write_text(page.read_text().replace("import ", "import  ", 1))
    (notebooks / "gone.ipynb").write_text("{}")
    assert colab.stale() == ["notebooks/verdict.ipynb", "notebooks/gone.ipynb (no page)"]


def _local_torch_wheels() -> Path:
    version = _requirement("torch").split("==")[1]
    for folder in [os.environ.get("SKIPNET_WHEELS"), *(os.environ.get("PIP_FIND_LINKS") or "").split()]:
        if folder and Path(folder).is_dir() and list(Path(folder).glob(f"torch-{version}*.whl")):
            return Path(folder)
    pytest.fail(f"no local torch {version} wheel: put one in a folder and name it with SKIPNET_WHEELS "
                "(this test never downloads torch: the default Linux wheel is the CUDA build)", pytrace=False)


@pytest.fixture(scope="module")
def clean_kernel(tmp_path_factory):
    """A fresh venv with Colab's share of the book's needs, registered as the kernel ``colab-like``."""
    base = tmp_path_factory.mktemp("colab")
    env_dir = base / "venv"
    t0 = time.perf_counter()
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    python = env_dir / "bin" / "python"
    wheels = _local_torch_wheels()
    pip_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_FIND_LINKS")}
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--find-links", str(wheels), _requirement("torch"),
                    _requirement("numpy"), _requirement("matplotlib"), _requirement("ipywidgets"),
                    _requirement("ipykernel")], check=True, env=pip_env, timeout=900)
    spec = base / "jupyter" / "kernels" / "colab-like"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Colab-like clean venv", "language": "python"}))
    print(f"\nclean venv ready in {time.perf_counter() - t0:.0f} s")
    return {"python": python, "jupyter_path": base / "jupyter", "cwd": base / "content", "pip_env": pip_env}


def _installed(python: Path, env: dict) -> set[str]:
    out = subprocess.run([str(python), "-m", "pip", "list", "--format=json"], capture_output=True, text=True,
                         check=True, env=env)
    return {d["name"].lower() for d in json.loads(out.stdout)}


@pytest.mark.slow
@pytest.mark.colab
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT / "book").with_suffix("").as_posix())
def test_notebook_runs_top_to_bottom_in_a_clean_environment(page, clean_kernel, monkeypatch, capsys):
    from nbclient import NotebookClient

    python, pip_env = clean_kernel["python"], clean_kernel["pip_env"]
    # each notebook's own first cell installs the package (its dependencies stay from an earlier notebook's)
    subprocess.run([str(python), "-m", "pip", "uninstall", "--quiet", "--yes", "skipnet"], env=pip_env, check=False)
    assert "skipnet" not in _installed(python, pip_env)
    monkeypatch.setenv("JUPYTER_PATH", str(clean_kernel["jupyter_path"]))
    monkeypatch.setenv("SKIPNET_CHECKOUT", str(ROOT))
    for name in ("PYTHONPATH", "MPLBACKEND", "PIP_FIND_LINKS"):        # the kernel finds nothing of this checkout
        monkeypatch.delenv(name, raising=False)
    cwd = clean_kernel["cwd"]
    cwd.mkdir(exist_ok=True)
    nb = nbformat.reads(colab.notebook_path(page).read_text(), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        "import skipnet, sys\n"
        f"assert skipnet.__file__.startswith({str(ROOT / 'code')!r}), skipnet.__file__\n"
        f"assert sys.prefix != sys.base_prefix and sys.prefix.startswith({str(python.parents[1])!r}), sys.prefix\n"))
    t0 = time.perf_counter()
    NotebookClient(nb, timeout=900, kernel_name="colab-like", resources={"metadata": {"path": str(cwd)}}).execute()
    seconds = time.perf_counter() - t0
    with capsys.disabled():
        print(f"\n{colab.notebook_path(page).relative_to(ROOT)}: executed in {seconds:.0f} s")
    installed = _installed(python, pip_env)
    assert "skipnet" in installed and not any(n.startswith("nvidia-") for n in installed)
    assert not {"jupyter-book", "sphinx", "myst-nb"} & installed, "the first cell installs only what the page needs"

"""The chapters run where readers run them: on Binder there is no myst-nb and no Sphinx.

Every chapter glues through :func:`skipnet.notebook.glue`, never imports myst-nb or Sphinx, and shows the code of
the block it trains from the package (``{literalinclude}`` with ``:pyobject:``).
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import jupytext
import numpy as np
import pytest
import torch
from nbclient import NotebookClient

from skipnet import notebook, reading

ROOT = Path(__file__).resolve().parents[1]
_TOC = reading.toc(ROOT)
#: The executable pages of the main line (the opening page and the chapters' main pages); the reference pages
#: (the thread, the glossary, the bibliography) hold no code.
CHAPTERS = [ROOT / f"{f}.md" for f in (_TOC["root"], *_TOC["main"])]
#: Every page that executes: the main line and the evidence pages nested under it.
PAGES = CHAPTERS + [ROOT / f"{f}.md" for ch in _TOC["main"] for f in _TOC["evidence"][ch]]
BLOCKS = {"transformers.md": ("PreLNBlock", "PostLNBlock"),
          "verdict.md": ("noise_evidence",)}        # the closing chapter trains nothing: it shows a verdict's rule


def _code(path: Path) -> str:
    return "\n".join(c.source for c in jupytext.read(path).cells if c.cell_type == "code")


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.relative_to(ROOT / "book").with_suffix("").as_posix())
def test_no_chapter_imports_myst_nb_or_sphinx(path):
    code = _code(path)
    assert not re.search(r"^\s*(from|import)\s+(myst_nb|sphinx)\b", code, re.M), path.name
    assert "myst_nb" not in code and "display=display" not in code
    assert not re.search(r"glue\([^)]*display=True", code), "glued values are never shown as stray outputs"
    assert "def glue" not in code, "glue through skipnet.notebook.glue only"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_chapter_shows_the_code_of_its_block(path):
    text = path.read_text()
    for name in BLOCKS.get(path.name, ("ResidualBlock.forward",)):
        assert re.search(r"```\{literalinclude\} \.\./code/skipnet/[\w/]+\.py\n:pyobject: " + re.escape(name), text), \
            f"{path.name} does not include {name}"


def test_glue_without_myst_nb_runs_and_shows_only_when_asked(monkeypatch):
    shown = []
    monkeypatch.setitem(sys.modules, "myst_nb", None)               # import myst_nb now raises ImportError
    import IPython.display
    monkeypatch.setattr(IPython.display, "display", lambda v: shown.append(v))
    notebook.glue("hidden", np.float64(0.25))
    notebook.glue("shown", np.float32(0.5), display=True)
    assert shown == [0.5] and type(shown[0]) is float


def test_glue_hands_myst_nb_plain_python_numbers(monkeypatch):
    import myst_nb
    calls = []
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display: calls.append((name, value, display)))
    notebook.glue("a", np.float64(0.95))
    notebook.glue("b", np.int64(3))
    notebook.glue("c", torch.tensor(2.5))
    notebook.glue("d", "301,328")
    assert calls == [("a", 0.95, False), ("b", 3, False), ("c", 2.5, False), ("d", "301,328", False)]
    assert [type(v) for _, v, _ in calls] == [float, int, float, str]          # a repr like np.float64(0.95) formats


# every digit survives: a p-value of 0.0023 glued as "p = {glue:text}`p:.3f`" must not print as 0.000
EXACT = [(np.float64(1 / 3), 1 / 3, float), (np.float64(0.0023), 0.0023, float),
         (np.float32(1 / 3), float(np.float32(1 / 3)), float), (np.float64(-2.5e-7), -2.5e-7, float),
         (np.int64(2 ** 40 + 1), 2 ** 40 + 1, int), (np.int32(-7), -7, int), (np.bool_(True), True, bool),
         (np.array(0.0023), 0.0023, float),
         (torch.tensor(1 / 3, dtype=torch.float64), 1 / 3, float),
         (torch.tensor(0.0023, dtype=torch.float64), 0.0023, float),
         (torch.tensor(1 / 3), float(np.float32(1 / 3)), float), (torch.tensor(12_345_678_901), 12_345_678_901, int)]


@pytest.mark.parametrize("value,expected,kind", EXACT, ids=[repr(v) for v, _, _ in EXACT])
def test_glue_hands_on_scalars_exactly_as_python_numbers(monkeypatch, value, expected, kind):
    import myst_nb
    calls = []
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display: calls.append(value))
    notebook.glue("x", value)
    assert calls == [expected] and type(calls[0]) is kind                  # exact: no rounding, no precision lost


def test_glue_leaves_arrays_and_non_numbers_alone(monkeypatch):
    import myst_nb
    calls = []
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display: calls.append(value))
    arr, vec, text = np.array([1 / 3, 0.0023]), torch.tensor([1 / 3]), "301,328"
    for v in (arr, vec, text):
        notebook.glue("x", v)
    assert calls[0] is arr and calls[1] is vec and calls[2] is text


@pytest.mark.slow
def test_every_chapter_starts_in_a_kernel_without_myst_nb_or_sphinx(tmp_path, monkeypatch):
    """Binder's kernel: myst_nb and sphinx cannot be imported. Each chapter's setup cells (up to and including
    the first cell that glues) run there; the full chapters run in the book build."""
    blocker = tmp_path / "blocked"
    for name in ("myst_nb", "sphinx"):
        (blocker / name).mkdir(parents=True)
        (blocker / name / "__init__.py").write_text(f"raise ImportError('{name} is not installed on Binder')\n")
    # the kernel finds the blockers first, then the package under test (not an installed copy of another checkout)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(blocker), str(ROOT / "code")]))
    for path in CHAPTERS:
        nb = jupytext.read(path)
        code = [c for c in nb.cells if c.cell_type == "code"]
        upto = next((i for i, c in enumerate(code) if "glue(" in c.source), 0)
        nb.cells = code[:upto + 1] + [jupytext.reads("import importlib.util\n"
                                                     "assert importlib.util.find_spec('myst_nb').origin.startswith("
                                                     f"{str(blocker)!r})\n"
                                                     "import skipnet\n"
                                                     f"assert skipnet.__file__.startswith({str(ROOT / 'code')!r})\n",
                                                     fmt="py:percent").cells[0]]
        NotebookClient(nb, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()

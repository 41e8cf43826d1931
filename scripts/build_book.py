"""Build the executed HTML site with two chapters executing at a time (what `make book` runs).

    .venv/bin/python scripts/build_book.py [--jobs 2] [--toc _toc.yml] [--out _build]

The same strict build as ``jupyter-book build -W -n --keep-going .`` (a warning or a failing cell fails it), but
Sphinx reads the chapters in ``--jobs`` processes, so myst-nb executes that many chapters at once, each kernel on
one torch thread: on two cores the book executes in about the time of its slowest half instead of its sum.

Two things make that possible:
* ``conf.py`` is generated from ``_config.yml`` (``jupyter-book config sphinx``), then Sphinx is run directly.
* sphinx-external-toc always loads sphinx-multitoc-numbering, which (0.1.3) does not declare whether it is safe
  for parallel reading, so Sphinx would read serially. Its work runs in the main process only (a
  ``builder-inited`` hook and the numbering of toctrees after all documents are read), so it is declared safe
  here, for this build only. Everything else the book loads declares itself safe.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def declare_multitoc_parallel_safe() -> None:
    import sphinx_multitoc_numbering as multitoc

    setup = multitoc.setup

    def safe_setup(app):
        meta = setup(app) or {}
        return {**meta, "parallel_read_safe": True, "parallel_write_safe": True}

    multitoc.setup = safe_setup


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--toc", default="_toc.yml", help="a table of contents inside the repository")
    ap.add_argument("--out", default="_build")
    args = ap.parse_args(argv)
    jb = Path(sys.executable).with_name("jupyter-book")
    toc = (ROOT / args.toc).resolve()                         # jupyter-book wants it inside the book's folder
    subprocess.run([str(jb), "config", "sphinx", str(ROOT), "--toc", str(toc)], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    declare_multitoc_parallel_safe()
    from sphinx.cmd.build import build_main

    out = Path(args.out)
    t0 = time.perf_counter()
    # -E: a fresh environment every time, so every chapter is read and executed again: Sphinx would otherwise skip
    # the chapters whose text did not change, keeping outputs made with an older package
    code = build_main(["-b", "html", "-E", "-j", str(args.jobs), "-W", "-n", "--keep-going",
                       "-d", str(out / ".doctrees"), str(ROOT), str(out / "html")])
    print(f"build {'succeeded' if code == 0 else 'FAILED'} in {time.perf_counter() - t0:.0f} s "
          f"({args.jobs} chapters at a time)")
    return code


if __name__ == "__main__":
    sys.exit(main())

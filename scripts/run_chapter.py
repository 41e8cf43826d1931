"""Execute one chapter (MyST .md or .ipynb) headless, as the book build does, and report time and errors.

    python scripts/run_chapter.py book/highway.md [--timeout 600] [--save out.ipynb]

Exit status 1 if a cell fails. The kernel's working directory is the chapter's folder.
"""
import argparse
import sys
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("chapter")
    ap.add_argument("--timeout", type=int, default=600)
    ap.add_argument("--save", default=None)
    args = ap.parse_args()
    path = Path(args.chapter).resolve()
    nb = jupytext.read(path)
    client = NotebookClient(nb, timeout=args.timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    t0 = time.perf_counter()
    status = 0
    try:
        client.execute()
    except CellExecutionError as e:
        print(e, file=sys.stderr)
        status = 1
    print(f"{path.name}: {'OK' if status == 0 else 'FAILED'} in {time.perf_counter() - t0:.1f} s")
    if args.save:
        nbformat.write(nb, args.save)
    return status


if __name__ == "__main__":
    sys.exit(main())

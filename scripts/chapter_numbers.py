"""Execute chapters headless and write every printed and glued value (timings masked) to a text file,
so that two versions of the package can be compared number by number.

    python scripts/chapter_numbers.py OUT.txt book/intro.md book/highway.md ...   (default: every chapter)
    diff before.txt after.txt

Each line is ``chapter | cell n | glue NAME | value`` or ``chapter | cell n | out | text``. Figures are
left out; anything that looks like a duration (``12.3 s``, ``4 seconds``, ``0:12``) is masked.
"""
from __future__ import annotations

import re
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import jupytext
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
_TIME = re.compile(r"\d+(\.\d+)?\s*(s|sec|seconds|ms|min)\b|\d+:\d\d")


def _mask(text: str) -> str:
    return _TIME.sub("<time>", text)


def chapter_lines(path: str) -> list[str]:
    p = (ROOT / path).resolve()
    nb = jupytext.read(p)
    try:
        NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(p.parent)}}).execute()
    except Exception as e:                                   # report the failing cell, keep the other chapters going
        return [f"{p.name} | FAILED | {type(e).__name__} | {str(e)[-3000:]}"]
    lines = []
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    for i, cell in enumerate(code_cells):
        for out in cell.get("outputs", []):
            name = (out.get("metadata") or {}).get("scrapbook", {}).get("name")
            if out.get("output_type") == "stream":
                text = out.get("text", "")
            else:
                data = {k.replace("application/papermill.record/", ""): v for k, v in (out.get("data") or {}).items()}
                text = data.get("text/markdown") or data.get("text/html") or data.get("text/plain", "")
                if isinstance(text, list):
                    text = "".join(text)
                if "text/html" in data and len(text) > 5000:      # an animation or a widget's page: not numbers
                    text = "<long html output>"
            if isinstance(text, list):
                text = "".join(text)
            if not text or text.startswith("<Figure") or "Widget" in text and text.startswith(("VBox", "HBox")):
                continue
            kind = f"glue {name}" if name else "out"
            for line in str(text).splitlines():
                lines.append(f"{p.name} | cell {i} | {kind} | {_mask(line)}")
    return lines


def main() -> int:
    out, chapters = sys.argv[1], sys.argv[2:] or sorted(str(p.relative_to(ROOT)) for p in (ROOT / "book").glob("*.md")
                                                        if p.name != "references.md")
    with ProcessPoolExecutor(2) as pool:
        results = list(pool.map(chapter_lines, chapters))
    Path(out).write_text("\n".join(line for r in results for line in r) + "\n")
    print(f"{sum(map(len, results))} lines from {len(chapters)} chapters -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

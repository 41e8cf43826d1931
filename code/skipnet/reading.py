"""How long the book takes to read: words of prose per page, and the two paths through it.

The main line is the opening chapter, one main page per chapter and the closing chapter (``_toc.yml``'s
chapters); the evidence pages are the sections nested under them. :func:`prose_words` counts what a reader reads
as prose (code, math, captions and tables left out) and :func:`reading_minutes` turns it into minutes at a stated
pace, with a fixed time per figure.
"""
from __future__ import annotations

import re
from pathlib import Path

__all__ = ["WORDS_PER_MINUTE", "MINUTES_PER_FIGURE", "prose_words", "figures", "toc_files", "toc", "book_pages",
           "reading_minutes", "answer_box"]

#: A careful pace for technical prose with equations nearby (fiction is read at about 250 words a minute).
WORDS_PER_MINUTE = 150
#: Time to read a figure and its caption.
MINUTES_PER_FIGURE = 1.0

_FENCE = re.compile(r"^(`{3,}|~{3,})\s*(\{([\w:-]+)\})?(.*)$")
_PROSE_DIRECTIVES = {"admonition", "note", "tip", "important", "warning", "attention", "caution", "hint", "seealso",
                     "exercise", "dropdown", "margin", "epigraph", "sidebar", "topic"}


def _visible_html(html: str) -> str:
    """What a reader reads of a raw HTML block: its text without tags, scripts, styles or the no-script fallback."""
    html = re.sub(r"<(script|style|noscript)\b.*?</\1>", " ", html, flags=re.S | re.I)
    return "\n".join(" ".join(re.sub(r"<[^>]+>", " ", line).split()) for line in html.splitlines()) + "\n"


def prose_words(text: str) -> int:
    """Words of prose in a MyST page: code cells, code, math, figures (with their captions), tables, front matter,
    comments, labels and directive options left out; the prose inside admonitions and exercises counted, and the
    visible text of raw HTML blocks (a lab's caption is read like prose)."""
    text = re.sub(r"\A---\n.*?\n---\n", "", text, flags=re.S)                       # front matter
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    text = re.sub(r"\$\$.*?\$\$", "", text, flags=re.S)
    text = re.sub(r"^(`{3,})\{raw\} html\n(.*?)^\1$", lambda m: _visible_html(m.group(2)), text, flags=re.S | re.M)
    out, stack = [], []                                   # stack of (fence, counts-as-prose)
    for line in text.splitlines():
        m = _FENCE.match(line.strip())
        if m:
            fence, name = m.group(1), m.group(3)
            if stack and fence == stack[-1][0] and name is None:
                stack.pop()
                continue
            if name is not None or not stack or fence != stack[-1][0]:
                prose = name is not None and name.split(":")[0] in _PROSE_DIRECTIVES
                stack.append((fence, prose and all(p for _, p in stack)))
                continue
        if stack and not stack[-1][1]:
            continue
        s = line.strip()
        if s.startswith(("|", ":", "%", "+++")) or re.fullmatch(r"\(.*\)=", s):
            continue
        s = re.sub(r"\{glue:\w+\}`[^`]*`", " N ", s)                       # a glued number reads as one word
        s = re.sub(r"\{(ref|numref|doc|cite:\w+|cite|term|eq)\}`([^`<]*)(<[^`]*>)?`", r" \2 ", s)
        s = re.sub(r"\$[^$]*\$", " ", s)                                   # inline math
        s = re.sub(r"`[^`]*`", " code ", s)
        out.append(s)
    return len(re.findall(r"[A-Za-z0-9][\w'’.-]*", " ".join(out)))


def answer_box(text: str) -> str:
    """The prose of a MyST page's ``The answer in brief`` admonition, its option lines (``:class: ...``) left out;
    ``ValueError`` when the page has none."""
    m = re.search(r"^(`{3,})\{admonition\} The answer in brief\n(.*?)^\1$", text, flags=re.S | re.M)
    if not m:
        raise ValueError("the page has no 'The answer in brief' box")
    return "\n".join(line for line in m.group(2).splitlines() if not line.startswith(":"))


def figures(text: str) -> int:
    """Named figures of a page: code cells whose output is a figure (``name: fig-...``) and figure directives."""
    return len(re.findall(r"^\s*name:\s*fig-", text, flags=re.M)) + len(re.findall(r"^```+\{figure\}", text,
                                                                                   flags=re.M))


def toc_files(toc_file: str | Path) -> list[str]:
    """Every ``file`` entry of a table of contents (a ``_toc.yml``), root first, in reading order: parts, chapters
    and sections alike."""
    import yaml                                            # a dependency of the book's toolchain, not of the package
    spec = yaml.safe_load(Path(toc_file).read_text())
    out = [spec["root"]] if "root" in spec else []

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                out.append(node["file"])
            for key in ("parts", "chapters", "sections"):
                for child in node.get(key, []) or []:
                    walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk({k: v for k, v in spec.items() if k != "root"})
    return out


def toc(root: str | Path) -> dict:
    """The book's table of contents (``_toc.yml`` under ``root``, the repository) as ``{"root": page, "main":
    [chapter pages of the first part], "evidence": {chapter: [its sections]}, "reference": [pages of the other
    parts]}``, every page a path without suffix. A table without parts has only a main line."""
    import yaml                                            # a dependency of the book's toolchain, not of the package
    data = yaml.safe_load((Path(root) / "_toc.yml").read_text())
    parts = data.get("parts") or [{"chapters": data.get("chapters", [])}]
    out = {"root": data["root"], "main": [], "evidence": {}, "reference": []}

    def sections(node) -> list[str]:
        found = []
        for child in node.get("sections", []) or []:
            found += [child["file"], *sections(child)]
        return found
    for i, part in enumerate(parts):
        for chapter in part.get("chapters", []) or []:
            if i == 0:
                out["main"].append(chapter["file"])
                out["evidence"][chapter["file"]] = sections(chapter)
            else:
                out["reference"] += [chapter["file"], *sections(chapter)]
    return out


def book_pages(root: str | Path) -> tuple[list[Path], list[Path]]:
    """``(main line, evidence pages)`` as files under ``root`` (the repository), in the order of the table of
    contents: the root page and the chapters of the first part, then every section nested under them."""
    t, root = toc(root), Path(root)
    main = [root / f"{f}.md" for f in [t["root"], *t["main"]]]
    evidence = [root / f"{f}.md" for chapter in t["main"] for f in t["evidence"][chapter]]
    return main, evidence


def reading_minutes(pages, words_per_minute: float = WORDS_PER_MINUTE,
                    minutes_per_figure: float = MINUTES_PER_FIGURE) -> dict:
    """Words, figures and minutes of reading for ``pages`` (files)."""
    if words_per_minute <= 0:
        raise ValueError(f"words_per_minute must be positive, got {words_per_minute}")
    texts = [Path(p).read_text() for p in pages]
    words = sum(prose_words(t) for t in texts)
    figs = sum(figures(t) for t in texts)
    return {"pages": len(texts), "words": words, "figures": figs,
            "minutes": words / words_per_minute + figs * minutes_per_figure}

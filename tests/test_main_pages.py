"""The main line (a main page per chapter, read in about 90 minutes) keeps its word budgets.

A main page holds at most 2,000 words of prose (the opening and the closing chapter 1,500), not counting code,
math, figure captions and tables; it opens with "The answer in brief" and ends with "What we could not settle".
The full experiments live on evidence pages, the sections under each chapter in ``_toc.yml``.
"""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: main page -> word budget. A chapter is listed here once its main page is laid out as a main page.
MAIN_PAGES: dict[str, int] = {
    "book/highway.md": 2000,
    "book/intro.md": 1500,
    "book/identity.md": 2000,
    "book/ensemble.md": 2000,
    "book/transformers.md": 2000,
}

_FENCE = re.compile(r"^(`{3,}|~{3,})\s*(\{([\w:-]+)\})?(.*)$")
_PROSE_DIRECTIVES = {"admonition", "note", "tip", "important", "warning", "attention", "caution", "hint", "seealso",
                     "exercise", "dropdown", "margin", "epigraph", "sidebar", "topic"}


def prose_words(text: str) -> int:
    """Words of prose in a MyST page: code cells, code, math, figures (with their captions), tables, front matter,
    comments, labels and directive options left out; the prose inside admonitions and exercises counted."""
    text = re.sub(r"\A---\n.*?\n---\n", "", text, flags=re.S)                       # front matter
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    text = re.sub(r"\$\$.*?\$\$", "", text, flags=re.S)
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
        if s.startswith(("|", ":", "(", "%", "+++")) or re.fullmatch(r"\(.*\)=", s):
            continue
        s = re.sub(r"\{glue:\w+\}`[^`]*`", " N ", s)                       # a glued number reads as one word
        s = re.sub(r"\{(ref|numref|doc|cite:\w+|cite|term|eq)\}`([^`<]*)(<[^`]*>)?`", r" \2 ", s)
        s = re.sub(r"\$[^$]*\$", " ", s)                                   # inline math
        s = re.sub(r"`[^`]*`", " code ", s)
        out.append(s)
    return len(re.findall(r"[A-Za-z0-9][\w'’.-]*", " ".join(out)))


def test_prose_words_counts_prose_only():
    page = """---
jupytext: {}
---
# Title words

(label)=
Two words {glue:text}`x:.2f` and $a+b$ here.

```{code-cell} ipython3
many many many words in code
```

```{admonition} The answer in brief
One two three.
```

```{figure} f.png
A caption with words
```

| a | table |
|---|---|
$$ x = y $$
"""
    # "Title words" 2 + "Two words N and here." 5 + "One two three." 3
    assert prose_words(page) == 10


@pytest.mark.parametrize("page, budget", sorted(MAIN_PAGES.items()))
def test_main_page_within_its_budget_opens_with_the_answer_and_ends_with_what_is_open(page, budget):
    text = (ROOT / page).read_text()
    words = prose_words(text)
    assert words <= budget, f"{page}: {words} words of prose, budget {budget}"
    assert "The answer in brief" in text, f"{page} has no 'The answer in brief' box"
    assert "What we could not settle" in text, f"{page} has no 'What we could not settle' paragraph"


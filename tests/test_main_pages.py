"""The main line (a main page per chapter, read in about 90 minutes) keeps its word budgets.

A main page holds at most 2,000 words of prose (the opening and the closing chapter 1,500), not counting code,
math, figure captions and tables; it opens with "The answer in brief" and ends with "What we could not settle".
The full experiments live on evidence pages, the sections under each chapter in ``_toc.yml``.
"""
from pathlib import Path

import pytest

from skipnet.reading import book_pages, figures, prose_words, reading_minutes

ROOT = Path(__file__).resolve().parents[1]

#: main page -> word budget. A chapter is listed here once its main page is laid out as a main page.
MAIN_PAGES: dict[str, int] = {
    "book/highway.md": 2000,
    "book/intro.md": 1500,
    "book/identity.md": 2000,
    "book/ensemble.md": 2000,
    "book/transformers.md": 2000,
    "book/verdict.md": 1500,
}
#: The main line as a whole (the opening page, the four main pages and the closing chapter).
MAIN_LINE_BUDGET = 12_000

def test_prose_words_counts_prose_only():
    page = """---
jupytext: {}
---
# Title words

(label)=
Two words {glue:text}`x:.2f` and $a+b$ here.
(A line that opens with a bracket.)

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
    # "Title words" 2 + "Two words N and here." 5 + "A line that opens with a bracket." 7 + "One two three." 3
    assert prose_words(page) == 17


@pytest.mark.parametrize("page, budget", sorted(MAIN_PAGES.items()))
def test_main_page_within_its_budget_opens_with_the_answer_and_ends_with_what_is_open(page, budget):
    text = (ROOT / page).read_text()
    words = prose_words(text)
    assert words <= budget, f"{page}: {words} words of prose, budget {budget}"
    assert "The answer in brief" in text, f"{page} has no 'The answer in brief' box"
    assert "What we could not settle" in text, f"{page} has no 'What we could not settle' paragraph"



def test_the_main_line_is_the_toc_chapters_and_fits_its_budget():
    main, evidence = book_pages(ROOT)
    assert [p.relative_to(ROOT).as_posix() for p in main] == [
        "book/intro.md", "book/highway.md", "book/identity.md", "book/ensemble.md", "book/transformers.md",
        "book/verdict.md"]
    assert evidence and all(p.parent.name in ("highway", "identity", "ensemble", "transformers", "verdict")
                            for p in evidence)
    words = sum(prose_words(p.read_text()) for p in main)
    assert words <= MAIN_LINE_BUDGET, f"the main line has {words} words of prose, budget {MAIN_LINE_BUDGET}"


def test_reading_minutes_counts_words_and_figures(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("One two three four five six.\n\n```{code-cell} ipython3\n---\nmystnb:\n  figure:\n"
                    "    name: fig-a\n---\nplot()\n```\n")
    assert figures(page.read_text()) == 1
    r = reading_minutes([page, page], words_per_minute=6, minutes_per_figure=2)
    assert (r["words"], r["figures"], r["minutes"]) == (12, 2, 6.0)
    with pytest.raises(ValueError, match="words_per_minute"):
        reading_minutes([page], words_per_minute=0)


def test_prose_words_reads_the_visible_text_of_raw_html():
    page = """Two words.

```{raw} html
<figure><figcaption><b>Train it</b> here, now.</figcaption><noscript>Needs JavaScript.</noscript></figure>
<script src="x.js">var a = 1;</script>
```
"""
    assert prose_words(page) == 2 + 4                   # "Train it here, now." without tags, script or fallback


def test_answer_box_reads_the_admonitions_prose_and_refuses_a_page_without_one():
    from skipnet.reading import answer_box
    page = "# T\n\n````{admonition} The answer in brief\n:class: important\nOne *claim*.\n\n```python\nx\n```\n````\n\nAfter.\n"
    assert answer_box(page) == "One *claim*.\n\n```python\nx\n```"
    with pytest.raises(ValueError, match="no 'The answer in brief' box"):
        answer_box("# T\n\nNo box.\n")

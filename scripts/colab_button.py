"""A Sphinx extension for the book's build: the "Colab" launch button opens the page's notebook in ``notebooks/``.

sphinx-book-theme builds the Colab link from the page's own path (``.../blob/<branch>/book/intro.md``), and Colab
opens only ``.ipynb`` files; the theme switches to ``.ipynb`` only when one lies beside the page at build time, and
then points the Binder button at it too. Here only the Colab link is changed, to the notebook that
``scripts/colab_notebooks.py`` made from the page (``notebooks/intro.ipynb``); a page without one loses the Colab
button rather than keep a link that fails. Loaded through ``sphinx.local_extensions`` in ``_config.yml``.
"""
from __future__ import annotations

from pathlib import Path

NOTEBOOKS = "notebooks"
BOOK = "book"


def colab_target(pagename: str) -> str | None:
    """``book/highway/training`` -> ``notebooks/highway/training.ipynb`` (None outside ``book/``)."""
    if not pagename.startswith(f"{BOOK}/"):
        return None
    return f"{NOTEBOOKS}/{pagename[len(BOOK) + 1:]}.ipynb"


def _point_colab_at_notebooks(app, pagename, templatename, context, doctree) -> None:
    opts = app.config.html_theme_options or {}
    repo = (opts.get("repository_url") or "").rstrip("/")
    branch = opts.get("repository_branch") or "main"
    colab = (opts.get("launch_buttons") or {}).get("colab_url", "").rstrip("/")
    if not (repo and colab) or not repo.startswith("https://github.com/"):
        return
    target = colab_target(pagename)
    exists = target is not None and (Path(app.confdir) / target).is_file()
    in_repo = "/".join(p for p in ((opts.get("path_to_docs") or "").strip("/"), target or "") if p)
    for group in context.get("header_buttons") or []:
        if group.get("label") != "launch-buttons":
            continue
        buttons = group.get("buttons") or []
        for button in list(buttons):
            if button.get("text") != "Colab":
                continue
            if exists:
                button["url"] = f"{colab}/github/{repo[len('https://github.com/'):]}/blob/{branch}/{in_repo}"
            else:
                buttons.remove(button)


def setup(app):
    # after the theme's add_launch_buttons (priority 501), before the page is rendered
    app.connect("html-page-context", _point_colab_at_notebooks, priority=600)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

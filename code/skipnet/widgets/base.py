"""The machinery every lab shares: controls, Run/Stop buttons, progress, a live image, a message line.

A lab subclasses :class:`Lab` and implements ``compute()`` (which calls experiment functions, passing
``progress=self.report``, the package's progress protocol) and ``render(result) -> Figure``. Pressing Run
starts ``compute`` in a background thread so that the kernel stays free to receive the Stop click; tests
call ``lab.run_button.click()`` and then ``lab.wait()``. A ``ValueError`` from a config or an experiment
(a parameter out of range) is shown in the message line. Every other control callback goes through
:meth:`Lab.safely`, so nothing escapes to crash the kernel or print a traceback into the page.

On the book's static site a lab's Python never runs: the line under its title (:func:`where_it_runs`) links the
places that run it live (Binder, Colab, a local clone), and says that the figure above the lab is its default run
(each page draws it before the lab). A frontend that cannot show widgets shows that line instead of the lab.
"""
from __future__ import annotations

import threading
import time
import traceback
from typing import Any

import ipywidgets as W
import matplotlib
import matplotlib.pyplot as plt

from skipnet.plotting.core import figure_png

__all__ = ["Lab", "where_it_runs", "live_links", "REPOSITORY", "BRANCH"]

#: The book's repository and branch (``_config.yml``'s ``repository``; a test keeps them equal).
REPOSITORY = "https://github.com/skipnet-book/why-skip-connections"
BRANCH = "main"


def live_links(page: str) -> dict[str, str]:
    """Where the page ``page`` (``"book/highway/training"``) runs live: its Binder JupyterLab, its Colab notebook
    (``notebooks/highway/training.ipynb``, made by ``scripts/colab_notebooks.py``) and the README's set-up."""
    if not page.startswith("book/"):
        raise ValueError(f"page must be a path under book/ without its suffix, e.g. 'book/intro', got {page!r}")
    repo = REPOSITORY[len("https://github.com/"):]
    return {"Binder": f"https://mybinder.org/v2/gh/{repo}/{BRANCH}?urlpath=lab/tree/{page}.md",
            "Colab": f"https://colab.research.google.com/github/{repo}/blob/{BRANCH}/notebooks/{page[5:]}.ipynb",
            "locally": f"{REPOSITORY}#reading-it-live"}


def where_it_runs(page: str) -> str:
    """The one line (HTML) a lab shows under its title."""
    links = " or ".join(f'<a href="{url}" target="_blank" rel="noopener">{name}</a>'
                        for name, url in live_links(page).items() if name != "locally")
    return (f"<small>Runs live on {links}, or <a href=\"{live_links(page)['locally']}\" target=\"_blank\" "
            f"rel=\"noopener\">locally</a>; on the static page its controls do nothing and the figure above is its "
            f"default run.</small>")


class Lab:
    """Base class of the book's widgets (see module docstring)."""

    title = "Lab"
    page = "book/intro"       # the page that shows the lab (its Binder and Colab links)
    run_label = "Train"
    min_refresh_s = 0.3
    max_draw_share = 0.2      # live redraws take at most about this share of a run (a figure costs 0.1-1 s)
    auto_run = False          # True: recompute (synchronously) whenever a control changes (instant explorers)

    def __init__(self, controls: list[W.Widget], threaded: bool = True):
        self.controls = controls
        self.threaded = threaded
        self.run_button = W.Button(description=self.run_label, button_style="primary", icon="play")
        self.stop_button = W.Button(description="Stop", button_style="warning", icon="stop", disabled=True)
        self.progress = W.FloatProgress(value=0.0, min=0.0, max=1.0, description="progress",
                                        layout=W.Layout(width="320px"))
        self.message = W.HTML(value="<i>Set the controls and press the button.</i>")
        # hidden until the first figure: an empty Image is a broken-image icon on the static site
        self.image = W.Image(format="png", layout=W.Layout(max_width="100%", display="none"))
        self.run_button.on_click(self.safely(self._on_run))
        if self.auto_run:
            for c in controls:
                c.observe(self.safely(self._on_control_change), names="value")
        self.stop_button.on_click(self.safely(lambda _: self._stop.set()))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_draw = 0.0
        self._draw_cost = 0.0
        self.result: Any = None
        self.error: str | None = None
        self.first_update_s: float | None = None
        self.elapsed_s: float | None = None
        self._t0 = 0.0
        self.where = W.HTML(where_it_runs(self.page))
        self.widget = W.VBox([
            W.HTML(f"<b>{self.title}</b>"),
            self.where,
            W.HBox(controls, layout=W.Layout(flex_flow="row wrap")),
            W.HBox([self.run_button, self.stop_button, self.progress]),
            self.message,
            self.image,
        ])

    # -- to implement --------------------------------------------------------------------------
    def compute(self) -> Any:
        raise NotImplementedError

    def render(self, result: Any) -> matplotlib.figure.Figure:
        raise NotImplementedError

    def summary(self, result: Any) -> str:
        return "Done."

    # -- machinery -----------------------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs):
        """The widget, and for a frontend that cannot show widgets (nbconvert, a viewer, a failing widget manager)
        the title and the line that says where the lab runs."""
        bundle = self.widget._repr_mimebundle_(**kwargs)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        data["text/html"] = f"<p><b>{self.title}</b> (a live lab)<br>{where_it_runs(self.page)}</p>"
        return bundle

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def should_stop(self) -> bool:
        return self._stop.is_set()

    def report(self, fraction: float, text: str = "", partial: Any = None) -> bool:
        """The progress protocol (``progress=self.report``): show progress, redraw from ``partial`` now and
        then, and return ``False`` once Stop was pressed."""
        self.update(fraction, text, partial)
        return not self.should_stop()

    def safely(self, handler):
        """``handler`` for a button or a control, made safe: a ``ValueError`` (a bad setting, an action that
        needs a trained net first) shows in the message line, any other error too; nothing escapes."""
        def wrapped(*args, **kwargs):
            try:
                return handler(*args, **kwargs)
            except ValueError as e:
                self.message.value = f"<span style='color:#b00'>Cannot do that: {e}</span>"
            except Exception as e:              # never let a lab crash the kernel
                self.error = f"{type(e).__name__}: {e}"
                self.message.value = f"<span style='color:#b00'>Error: {self.error}</span>"
        return wrapped

    def update(self, fraction: float, text: str = "", partial: Any = None, force: bool = False) -> None:
        """Report progress; redraw the live figure from ``partial`` at most every ``min_refresh_s``, and
        rarely enough that drawing takes at most ``max_draw_share`` of the time (bench/: drawing took
        three quarters of the opening lab's run with a fixed 0.3 s refresh)."""
        if self.first_update_s is None:
            self.first_update_s = time.perf_counter() - self._t0
        self.progress.value = max(0.0, min(1.0, float(fraction)))
        if text:
            self.message.value = text
        now = time.perf_counter()
        gap = max(self.min_refresh_s, self._draw_cost * (1 - self.max_draw_share) / self.max_draw_share)
        if partial is not None and (force or now - self._last_draw >= gap):
            self._draw(partial, final=False)
            self._last_draw = time.perf_counter()

    def _draw(self, result: Any, final: bool = True) -> None:
        t0 = time.perf_counter()
        with plt.ioff():
            fig = self.render(result)
        self.image.value = figure_png(fig, tight=final)          # live redraws: one rendering, not two
        self.image.layout.display = None
        self._draw_cost = time.perf_counter() - t0

    def _on_control_change(self, _change) -> None:
        threaded, self.threaded = self.threaded, False
        try:
            self._on_run()
        finally:
            self.threaded = threaded

    def _on_run(self, _=None) -> None:
        if self.running:
            return
        self._stop.clear()
        self.result, self.error = None, None
        self.first_update_s, self.elapsed_s = None, None
        self.run_button.disabled, self.stop_button.disabled = True, False
        for c in self.controls:
            c.disabled = True
        self.progress.value = 0.0
        self.message.value = "<i>starting...</i>"
        self._t0 = time.perf_counter()
        if self.threaded:
            self._thread = threading.Thread(target=self._run_safely, daemon=True)
            self._thread.start()
        else:
            self._run_safely()

    def _run_safely(self) -> None:
        try:
            result = self.compute()
            self.result = result
            self._draw(result)
            self.progress.value = 1.0
            self.message.value = self.summary(result)
        except ValueError as e:                 # a parameter out of range: say which and what is accepted
            self.error = str(e)
            self.message.value = f"<span style='color:#b00'>Cannot run: {e}</span>"
        except Exception as e:                  # never let a lab crash the kernel
            self.error = f"{type(e).__name__}: {e}"
            self.message.value = f"<span style='color:#b00'>Error: {self.error}</span>"
            traceback.print_exc()
        finally:
            self.elapsed_s = time.perf_counter() - self._t0
            self.run_button.disabled, self.stop_button.disabled = False, True
            for c in self.controls:
                c.disabled = False

    def wait(self, timeout: float | None = 120.0) -> Any:
        """Block until the current run ends (tests, benchmarks); return its result."""
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"the lab's run did not finish within {timeout} s")
        return self.result

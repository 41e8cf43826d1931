"""The opening chapter's in-browser lab: wall time to train the plain and the residual MLP at the default depth,
in headless Chromium (Debian's, under Playwright), from pressing Train to the final losses on the page.

    .venv/bin/python bench/browser_lab.py [--rounds 3]      # or as a section of bench/run.py

Opens the built site's opening page (_build/html/book/intro.html) from a localhost server, with every other host
blocked; without a built site, a bare page holding only the lab's two scripts (site_assets/skiplab/). The lab
reports its own time (performance.now() from Train to the evaluated results, in the figure's data-seconds); the
benchmark takes the best of ``rounds`` runs and keeps them all, with the load average, since an absolute time
depends on the machine and its load.
"""
from __future__ import annotations

import argparse
import functools
import http.server
import os
import shutil
import tempfile
import threading
from pathlib import Path

from benchlib import ROOT, loadavg

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
BARE_PAGE = """<!doctype html><meta charset="utf-8"><title>skiplab</title>
<figure class="skiplab"><div class="skiplab-app"></div></figure>
<script src="_static/skiplab/digits.js"></script><script src="_static/skiplab/skiplab.js"></script>"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _site() -> tuple[Path, str, Path | None]:
    """The folder to serve, the page in it, and a temporary folder to remove afterwards (bare page only)."""
    built = ROOT / "_build" / "html"
    if (built / "book" / "intro.html").exists():
        return built, "book/intro.html", None
    tmp = Path(tempfile.mkdtemp(prefix="skiplab-bench-"))
    shutil.copytree(ROOT / "site_assets" / "skiplab", tmp / "_static" / "skiplab")
    (tmp / "index.html").write_text(BARE_PAGE)
    return tmp, "index.html", tmp


def browser_lab_section(rounds: int = 3) -> dict:
    from playwright.sync_api import sync_playwright

    folder, page_name, tmp = _site()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}/"
    runs, load0 = [], loadavg()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            for _ in range(rounds):
                context = browser.new_context()
                context.route("**/*", lambda r: r.continue_() if r.request.url.startswith(base) else r.abort())
                page = context.new_page()
                page.goto(base + page_name, wait_until="load")
                fig = page.locator("figure.skiplab").first
                fig.locator("button.skiplab-train").click()
                page.wait_for_function("() => document.querySelector('figure.skiplab').dataset.state !== 'running'",
                                       timeout=300_000)
                runs.append(page.evaluate("""() => { const f = document.querySelector('figure.skiplab');
                    const loss = k => +f.querySelector(`output[data-net="${k}"]`).dataset.trainLoss;
                    return {state: f.dataset.state, engine: f.dataset.engine, blocks: +f.dataset.blocks,
                            seconds: +f.dataset.seconds, plain_loss: loss('plain'), residual_loss: loss('residual')};
                }"""))
                context.close()
            version = browser.version
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    done = [r for r in runs if r["state"] == "done"]
    best = min((r["seconds"] for r in done), default=None)
    return {"browser_lab_train_s": best,
            "browser_lab": {"page": page_name, "chromium": version, "runs": runs, "loadavg_before": load0,
                            "loadavg_after": loadavg()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    res = browser_lab_section(ap.parse_args().rounds)
    lab = res["browser_lab"]
    print(f"Chromium {lab['chromium']}, {lab['page']}, load average {lab['loadavg_before']} -> {lab['loadavg_after']}")
    for r in lab["runs"]:
        print(f"  {r['blocks']} blocks, {r['engine']}: {r['seconds']:.2f} s; final training loss plain "
              f"{r['plain_loss']:.3g}, residual {r['residual_loss']:.3g}")
    print(f"best: {res['browser_lab_train_s']} s")


if __name__ == "__main__":
    main()

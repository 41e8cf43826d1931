"""The built site as a reader sees it, in a real browser with no network.

Debian's Chromium, driven by Playwright, opens every page of _toc.yml from a localhost server over _build/html. Every
request to any other host is blocked and reported, so a page that needs a CDN fails here. For each page: no severe
console error (besides the known harmless ones below), no failed or 404 request, every image loads, every widget view
renders with a non-zero size, all math is typeset by MathJax, every kernel-free scrubber (matplotlib's to_jshtml)
changes its frame when its slider moves, the launch buttons point to Binder with the repository, branch and file of
_config.yml, figures keep an opaque background (legible in the theme's dark mode). A screenshot per page, light and
dark, goes to _build/screenshots/; page weights are printed at the end (and written to
_build/screenshots/page_weights.txt).

Run after the build: `pytest -m site` (part of `make test`). Chromium: `apt-get install chromium chromium-driver`.
"""
from __future__ import annotations

import functools
import gzip
import http.server
import os
import re
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from site_pages import SHOTS, binder_url, config, docname, is_notebook, require_site, source, toc_entries

pytestmark = pytest.mark.site

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# ../shared/TOOLCHAIN.md: without the background-networking flags Chromium floods a closed network with requests.
# (Playwright adds --headless and its own fresh --user-data-dir.)
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]

# Console errors that are known and harmless, each with the reason. Anything else fails the page.
HARMLESS_CONSOLE = {
    # jupyter-book 1.x declares `const THEBE_JS_URL` inline on every page and sphinx-thebe declares it again; Live
    # Code (thebe) is off in this book (readers go to Binder), so nothing uses it.
    "Identifier 'THEBE_JS_URL' has already been declared":
        "duplicate declaration between jupyter-book's inline script and sphinx-thebe; thebe is off",
}
# "Failed to load resource" console lines are not listed here: the request checks below report the same failures
# with their URLs (blocked third-party requests, 4xx/5xx answers, failed local requests).

# Page weight limits (first visit, nothing cached). The shared assets (widget manager ~4.4 MB, MathJax ~1.2 MB) are
# paid once per site visit; the page's own HTML (text, PNG figures, scrubber frames inlined) must stay light.
MAX_PAGE_HTML_MB = 6.0
MAX_PAGE_TOTAL_GZIP_MB = 6.0

PAGES = toc_entries()
WEIGHTS: dict[str, dict] = {}


# ---------------------------------------------------------------------------------------------------------- fixtures
class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def base_url():
    """_build/html served on localhost (a thread), as a static host would serve it."""
    site = require_site()
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium under Playwright. Missing browser: a clear failure, never a skip."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(f"Chromium not found at {CHROMIUM}: the browser test needs it. Install it with "
                    "`apt-get update && apt-get install -y chromium chromium-driver` (as .ci/run does), or set "
                    "CHROMIUM to the browser's path.", pytrace=False)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:  # pragma: no cover - playwright is in requirements.txt
        pytest.fail(f"playwright (Python) is not installed: {e}", pytrace=False)
    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
    except Exception as e:
        pw.stop()
        pytest.fail(f"Chromium at {CHROMIUM} did not start under Playwright: {e}", pytrace=False)
    yield b
    b.close()
    pw.stop()


# ------------------------------------------------------------------------------------------------------------ helpers
def _shot_name(entry: str) -> str:
    return docname(entry).replace("/", "__")


def _local_file(site: Path, url: str, base: str) -> Path | None:
    if not url.startswith(base):
        return None
    path = unquote(urlsplit(url).path).lstrip("/")
    f = site / path
    if f.is_dir():
        f = f / "index.html"
    return f if f.is_file() else None


@functools.lru_cache(maxsize=None)
def _gzip_size(path: Path) -> int:
    return len(gzip.compress(path.read_bytes(), compresslevel=6))


JS_WAIT_IMAGES = """async () => {
  const imgs = Array.from(document.images);
  imgs.forEach(i => { if (i.loading === 'lazy') i.loading = 'eager'; });
  await Promise.all(imgs.map(i => i.complete ? null : new Promise(r => {
    i.addEventListener('load', r); i.addEventListener('error', r); setTimeout(r, 15000); })));
  // an image nobody can see (display: none, e.g. a lab's figure before its first run) is not a broken image
  return imgs.filter(i => !(i.naturalWidth > 0) && i.getClientRects().length > 0)
             .map(i => (i.getAttribute('src') || '(no src) ' + i.id).slice(0, 120));
}"""

JS_WIDGET_VIEWS = """() => Array.from(document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]'))
  .map(s => {
    let area = s.previousElementSibling;
    if (!(area && area.classList.contains('widget-subarea'))) area = null;
    const el = area && area.firstElementChild;
    const r = el ? el.getBoundingClientRect() : {width: 0, height: 0};
    let model = '?'; try { model = JSON.parse(s.textContent).model_id; } catch (e) {}
    return {model: model, rendered: !!el, width: r.width, height: r.height};
  })"""

JS_VIEWS_RENDERED = """() => Array.from(
  document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]')).every(s =>
    s.previousElementSibling && s.previousElementSibling.classList.contains('widget-subarea')
    && s.previousElementSibling.firstElementChild)"""

JS_MATH = """async () => {
  const nodes = Array.from(document.querySelectorAll('.math'));
  if (!nodes.length) return {n: 0};
  if (!(window.MathJax && window.MathJax.startup && window.MathJax.startup.promise))
    return {n: nodes.length, loaded: false};
  await window.MathJax.startup.promise;
  return {
    n: nodes.length, loaded: true,
    untypeset: nodes.filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 80)),
    errors: Array.from(document.querySelectorAll('mjx-merror')).map(e => e.getAttribute('data-mjx-error') || e.textContent),
  };
}"""

JS_EXPAND = """() => {
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  document.querySelectorAll('.toggle-hidden').forEach(e => e.classList.remove('toggle-hidden'));
}"""

# Share of sampled pixels that are not opaque, per content image: a transparent figure puts dark text on the dark theme.
JS_TRANSPARENCY = """() => Array.from(document.querySelectorAll('article img')).filter(i => i.naturalWidth > 0).map(i => {
  const c = document.createElement('canvas');
  c.width = i.naturalWidth; c.height = i.naturalHeight;
  const ctx = c.getContext('2d');
  ctx.drawImage(i, 0, 0);
  let d;
  try { d = ctx.getImageData(0, 0, c.width, c.height).data; } catch (e) { return {src: i.src.slice(0, 100), share: -1}; }
  let n = 0, clear = 0;
  const step = 4 * Math.max(1, Math.floor(d.length / 4 / 5000));
  for (let k = 3; k < d.length; k += step) { n++; if (d[k] < 250) clear++; }
  return {src: (i.getAttribute('src') || i.id).slice(0, 100), share: clear / Math.max(n, 1)};
})"""


class _Visit:
    """A page opened in a fresh browser context where only ``local`` URLs (plus data:/blob:) may load; everything
    else is aborted as if the network were down, and recorded."""

    def __init__(self, browser, url: str, local: str):
        self.local = local
        self.external, self.failed, self.bad_status, self.console, self.requested = [], [], [], [], []
        self.context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
        self.context.route("**/*", self._route)
        page = self.page = self.context.new_page()
        page.on("console", lambda m: self.console.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.console.append(str(getattr(e, "message", e))))
        page.on("request", lambda r: self.requested.append(r.url))
        page.on("requestfailed",
                lambda r: self.failed.append(f"{r.url} ({r.failure})") if r.url.startswith(local) else None)
        page.on("response", lambda r: self.bad_status.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        page.goto(url, wait_until="load", timeout=60_000)
        page.wait_for_load_state("networkidle", timeout=60_000)
        page.evaluate(JS_WAIT_IMAGES)
        if page.locator('script[type="application/vnd.jupyter.widget-view+json"]').count():
            try:  # the manager renders on 'load'; give it time on a busy machine
                page.wait_for_function(JS_VIEWS_RENDERED, timeout=30_000)
            except Exception:
                pass  # content_problems() reports each view that did not render
        page.evaluate("async () => { const m = window.MathJax; if (m && m.startup && m.startup.promise) "
                      "await m.startup.promise; }")

    def _route(self, r):
        u = r.request.url
        if u.startswith(self.local) or u.startswith(("data:", "blob:", "about:")):
            r.continue_()
        else:
            self.external.append(u)
            r.abort("internetdisconnected")

    def content_problems(self) -> list[str]:
        """Math typeset, every widget view rendered with a size, every visible image loaded (collapsed blocks
        are opened first)."""
        page, problems = self.page, []
        math = page.evaluate(JS_MATH)
        if math["n"]:
            if not math["loaded"]:
                problems.append(f"{math['n']} math elements but MathJax did not load")
            else:
                problems += [f"math not typeset: {t!r}" for t in math["untypeset"]]
                problems += [f"MathJax error: {t!r}" for t in math["errors"]]
        page.evaluate(JS_EXPAND)
        page.wait_for_timeout(200)
        problems += [f"image did not load: {s}" for s in page.evaluate(JS_WAIT_IMAGES)]
        for v in page.evaluate(JS_WIDGET_VIEWS):
            if not v["rendered"]:
                problems.append(f"widget view {v['model']} did not render (blank output)")
            elif v["width"] <= 0 or v["height"] <= 0:
                problems.append(f"widget view {v['model']} rendered with size {v['width']}x{v['height']}")
        return problems

    def network_and_console_problems(self) -> list[str]:
        problems = [f"request to a third-party host (the site must be self-contained): {u}"
                    for u in sorted(set(self.external))]
        problems += [f"failed request: {f}" for f in self.failed]
        problems += [f"HTTP {s}" for s in self.bad_status]
        for msg in self.console:
            if msg.startswith("Failed to load resource"):
                continue  # the same failure is reported above with its URL
            if not any(known in msg for known in HARMLESS_CONSOLE):
                problems.append(f"console error: {msg[:300]}")
        return problems

    def close(self):
        self.context.close()


# -------------------------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("entry", PAGES)
def test_page_in_browser(entry, browser, base_url):
    site = require_site()
    name = docname(entry)
    url = base_url + name + ".html"
    assert (site / f"{name}.html").exists(), f"{name}.html is missing from the built site"
    visit = _Visit(browser, url, base_url)
    page = visit.page
    problems: list[str] = []
    try:
        # kernel-free scrubbers: moving the slider shows another frame
        sliders = page.locator("input.anim-slider")
        for k in range(sliders.count()):
            slider = sliders.nth(k)
            img_id = (slider.get_attribute("id") or "").replace("_anim_slider", "_anim_img")
            img = page.locator(f'[id="{img_id}"]')
            if img.count() != 1:
                problems.append(f"scrubber {k}: no frame image #{img_id}")
                continue
            top = int(slider.get_attribute("max") or 0)
            if top < 1:
                problems.append(f"scrubber {k}: only one frame")
                continue
            before = img.get_attribute("src") or ""
            slider.scroll_into_view_if_needed()
            slider.focus()
            page.keyboard.press("End")
            try:
                page.wait_for_function("([id, before]) => document.getElementById(id).src !== before",
                                       arg=[img_id, before], timeout=5_000)
            except Exception:
                problems.append(f"scrubber {k}: moving the slider to frame {top} did not change the frame")
                continue
            state = img.evaluate("i => ({w: i.naturalWidth, v: document.getElementById(i.id.replace('_anim_img', "
                                 "'_anim_slider')).value})")
            if not state["w"] or int(state["v"]) != top:
                problems.append(f"scrubber {k}: frame {state['v']} of {top} shows no image")
            page.keyboard.press("Home")
        page.evaluate("() => window.scrollTo(0, 0)")

        # launch buttons and repository button, from _config.yml
        hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))")
        repo_url = config()["repository"]["url"]
        if config().get("html", {}).get("use_repository_button") and repo_url not in hrefs:
            problems.append(f"no repository button linking {repo_url}")
        binder = [h for h in hrefs if "/v2/gh/" in h]
        if is_notebook(source(entry)):
            want = binder_url(source(entry))
            if want not in binder:
                problems.append(f"launch button should be {want}, found {binder or 'none'}")
            problems += [f"unexpected Binder link {h}" for h in binder if h != want]

        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{_shot_name(entry)}.png"), full_page=True)

        # with every collapsed block open: math, widget views, images
        problems += visit.content_problems()

        # dark mode: figures must bring their own opaque background, then a screenshot to look at
        for img in page.evaluate(JS_TRANSPARENCY):
            if img["share"] < 0:
                problems.append(f"image {img['src']} could not be read back for the dark-mode check")
            elif img["share"] > 0.05:
                problems.append(f"image {img['src']} is {img['share']:.0%} transparent: illegible in dark mode "
                                "(keep matplotlib's white figure background)")
        page.evaluate("() => { if (document.activeElement) document.activeElement.blur(); "
                      "document.documentElement.dataset.theme = 'dark'; "
                      "document.documentElement.dataset.mode = 'dark'; }")
        page.wait_for_timeout(300)
        page.screenshot(path=str(SHOTS / f"{_shot_name(entry)}.dark.png"), full_page=True)

        # scripts loaded twice (e.g. a bundle placed under _static/ that jupyter-book adds to every page)
        srcs = [urlsplit(s).path for s in page.eval_on_selector_all("script[src]", "els => els.map(e => e.src)")]
        problems += [f"script loaded twice: {s}" for s in sorted({s for s in srcs if srcs.count(s) > 1})]
    finally:
        visit.close()
    problems += visit.network_and_console_problems()

    # page weight: every distinct file this page fetched, as stored and as a server would gzip it
    requested = visit.requested
    files = {f for f in (_local_file(site, u, base_url) for u in requested) if f is not None}
    html_file = site / f"{name}.html"
    WEIGHTS[name] = {
        "html": html_file.stat().st_size,
        "total": sum(f.stat().st_size for f in files),
        "gzip": sum(_gzip_size(f) for f in files),
        "requests": len(set(requested)),
        "largest": sorted(((f.stat().st_size, f.relative_to(site).as_posix()) for f in files), reverse=True)[:3],
    }
    assert not problems, f"{name}.html:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("entry", PAGES)
def test_page_from_file_url(entry, browser):
    """The same page opened straight from disk (file://), as by a reader who downloaded the site: math, widgets and
    images still show, with no request leaving the site's folder."""
    site = require_site().resolve()
    visit = _Visit(browser, (site / f"{docname(entry)}.html").as_uri(), site.as_uri() + "/")
    try:
        problems = visit.content_problems()
    finally:
        visit.close()
    problems += visit.network_and_console_problems()
    assert not problems, f"{docname(entry)}.html (file://):\n  " + "\n  ".join(problems)


class _Figures(HTMLParser):
    """Images inside the page's article: their alt text and whether a <figure> with a <figcaption> holds them."""
    VOID = {"img", "br", "hr", "meta", "link", "input", "source", "wbr", "col", "area", "base", "embed", "param", "track"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[list] = []            # [tag, attrs, has_figcaption]
        self.images: list[dict] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "figcaption":
            for item in reversed(self.stack):
                if item[0] == "figure":
                    item[2] = True
                    break
        if tag == "img" and any(t == "article" for t, _, _ in self.stack):
            figure = next((item for item in reversed(self.stack) if item[0] == "figure"), None)
            self.images.append({"src": attrs.get("src") or "", "alt": attrs.get("alt"), "id": attrs.get("id") or "",
                                "figure": figure})
        if tag not in self.VOID:
            self.stack.append([tag, attrs, False])

    def handle_endtag(self, tag):
        for k in range(len(self.stack) - 1, -1, -1):
            if self.stack[k][0] == tag:
                del self.stack[k:]
                break


@pytest.mark.parametrize("entry", PAGES)
def test_figures_have_alt_text_and_captions(entry):
    """Every figure of a page says in words what it shows (alt text) and has a caption. Exempt: scrubber frames
    (their figure is captioned around them) and images a widget draws at run time (not in the static HTML)."""
    site = require_site()
    name = docname(entry)
    p = _Figures()
    p.feed((site / f"{name}.html").read_text(encoding="utf-8"))
    problems = []
    for img in p.images:
        if img["id"].startswith("_anim_img"):
            continue
        src, alt = img["src"], (img["alt"] or "").strip()
        label = src if not src.startswith("data:") else src[:40] + "..."
        if not alt or alt == src or re.search(r"\.(png|jpe?g|svg|gif)$", alt, re.I) or "jupyter_execute" in alt:
            problems.append(f"no alt text: {label} (set mystnb.image.alt in the cell metadata)")
        if img["figure"] is None or not img["figure"][2]:
            problems.append(f"no caption: {label} (set mystnb.figure.caption and name in the cell metadata)")
    assert not problems, f"{name}.html:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("entry", PAGES)
def test_widgets_follow_a_static_figure_and_point_to_binder(entry):
    """On the static site a widget's Python never runs: each widget comes after a plain figure or table (what the
    reader sees), with nothing but prose between the two widgets, and the page says that Binder runs it live."""
    site = require_site()
    html = (site / f"{docname(entry)}.html").read_text(encoding="utf-8")
    start = html.find("<article")
    views = [m.start() for m in re.finditer(r'type="application/vnd\.jupyter\.widget-view\+json"', html)]
    if not views:
        return
    problems = []
    for k, pos in enumerate(views):
        before = html[views[k - 1] if k else start:pos]
        if not re.search(r"<img\b|<table\b", before):
            problems.append(f"widget {k + 1} of {len(views)} has no figure or table between it and the previous one")
    text = re.sub(r"<[^>]+>", " ", html[start:])
    if "Binder" not in text:
        problems.append("the page shows widgets but never says that Binder runs them live")
    assert not problems, f"{docname(entry)}.html:\n  " + "\n  ".join(problems)


def test_site_has_a_kernel_free_explorer():
    """At least one page lets a reader slide a parameter with no kernel (matplotlib to_jshtml scrubber)."""
    site = require_site()
    pages = [docname(e) for e in PAGES if "anim-slider" in (site / f"{docname(e)}.html").read_text(encoding="utf-8")]
    assert pages, "no page of the TOC has a kernel-free scrubber (skipnet.plotting.core.scrubber)"


def test_page_weights(capsys):
    """Prints each page's first-visit weight; fails when a page's own HTML or its whole first load is too heavy."""
    require_site()
    if not WEIGHTS:
        pytest.fail("no page weights recorded: test_page_in_browser did not run", pytrace=False)
    mb = 1e6
    lines = [f"{'page':<28} {'HTML MB':>8} {'all MB':>8} {'gzip MB':>8} {'requests':>8}   largest files"]
    for name, w in WEIGHTS.items():
        largest = ", ".join(f"{p} {s / mb:.1f}" for s, p in w["largest"])
        lines.append(f"{name:<28} {w['html'] / mb:8.2f} {w['total'] / mb:8.2f} {w['gzip'] / mb:8.2f} "
                     f"{w['requests']:8d}   {largest}")
    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS / "page_weights.txt").write_text("\n".join(lines) + "\n")
    with capsys.disabled():
        print("\nPage weights (first visit, nothing cached; gzip = as a compressing server sends it):")
        for line in lines:
            print("  " + line)
    heavy = [f"{n}: HTML {w['html'] / mb:.1f} MB (limit {MAX_PAGE_HTML_MB})" for n, w in WEIGHTS.items()
             if w["html"] / mb > MAX_PAGE_HTML_MB]
    heavy += [f"{n}: first load {w['gzip'] / mb:.1f} MB gzipped (limit {MAX_PAGE_TOTAL_GZIP_MB})"
              for n, w in WEIGHTS.items() if w["gzip"] / mb > MAX_PAGE_TOTAL_GZIP_MB]
    assert not heavy, "pages too heavy:\n  " + "\n  ".join(heavy)

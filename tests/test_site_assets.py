"""The site's self-hosted assets are wired up (no build needed; the browser test checks the built pages):
every local script _config.yml names exists under site_assets/, nothing the book loads points at a CDN, and no
source folder named _static/ exists (jupyter-book would add every .js under it to every page)."""
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "site_assets"


def _sphinx_config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]["config"]


def test_static_path_is_site_assets_not_underscore_static():
    cfg = _sphinx_config()
    assert cfg["html_static_path"] == ["site_assets"]
    assert not (ROOT / "_static").exists(), \
        "a _static/ folder makes jupyter-book add every .js under html_static_path to every page (MathJax's many files too)"


def test_widget_and_math_scripts_are_local_files():
    cfg = _sphinx_config()
    scripts = list(cfg["nb_ipywidgets_js"]) + [cfg["mathjax_path"]]
    for s in scripts:
        assert "://" not in s, f"{s} is loaded from another host"
        assert (ASSETS / s).is_file(), f"{s} is named in _config.yml but site_assets/{s} does not exist"
    names = [Path(s).name for s in cfg["nb_ipywidgets_js"]]
    assert names == ["require.js", "widgets-setup.js", "embed-amd.js"], "require.js, then the set-up, then the manager"


def test_vendored_packages_keep_their_licences():
    vendor = ASSETS / "vendor"
    for pkg in ("requirejs-2.3.4", "html-manager-1.0.6", "mathjax-3.2.2"):
        assert (vendor / pkg / "LICENSE").is_file(), pkg
    assert "SIL OFL" in (vendor / "html-manager-1.0.6" / "dist" / "FONTS-LICENSE.txt").read_text()
    assert list((vendor / "mathjax-3.2.2" / "es5" / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff"))


def test_widget_manager_finds_its_fonts_beside_it():
    """The manager's chunks resolve their font URLs from require.js module URIs; widgets-setup.js maps them onto
    the vendored dist folder, which must hold every woff2 the bundle names."""
    setup = (ASSETS / "widgets-setup.js").read_text()
    dist = ASSETS / "vendor" / "html-manager-1.0.6" / "dist"
    assert '"vendor/html-manager-1.0.6/dist/"' in setup
    bundle = (dist / "embed-amd.js").read_text(encoding="utf-8", errors="replace")
    wanted = set(re.findall(r"[0-9a-f]{20}\.woff2", bundle))
    assert wanted and all((dist / w).is_file() for w in wanted)


def test_scrubber_needs_no_third_party_host():
    import matplotlib.pyplot as plt

    from skipnet.plotting.core import scrubber

    fig, ax = plt.subplots(figsize=(2, 2))
    line, = ax.plot([0, 1], [0, 1])
    html = scrubber(fig, lambda i: line.set_ydata([0, i]), 2).data
    assert "anim-slider" in html
    assert not re.findall(r"""(?:href|src)\s*=\s*["']?(?:https?:)?//""", html)

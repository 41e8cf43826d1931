"""The repository keeps its promises: layout, pins, build settings, no path hacks."""
import re
from pathlib import Path

import yaml

from skipnet import reading

ROOT = Path(__file__).resolve().parents[1]


def test_code_folder_does_not_shadow_stdlib_code_module():
    assert not (ROOT / "code" / "__init__.py").exists()
    import code
    assert hasattr(code, "InteractiveConsole"), "a local 'code' package shadows the standard library"


def test_package_is_imported_from_the_repository():
    import skipnet
    assert Path(skipnet.__file__).resolve().is_relative_to(ROOT / "code" / "skipnet")


def test_no_sys_path_edits():
    offenders = [str(p.relative_to(ROOT)) for folder in ("book", "code", "tests", "scripts", "bench")
                 for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".md", ".ipynb") and p.is_file()
                 and re.search(r"sys\.path\.(insert|append)\(", p.read_text(errors="ignore"))]
    assert offenders == []


def test_requirements_pin_cpu_safe_versions():
    req = (ROOT / "requirements.txt").read_text()
    assert re.search(r"^torch==\d", req, re.M), "torch must be pinned with == (a range pulls a CUDA build)"
    assert re.search(r"^jupyter-book==1\.", req, re.M), "jupyter-book must stay on 1.x"
    assert "download.pytorch.org" not in req, "the CPU wheel index is unreachable in CI: keep it in binder/ only"
    assert re.search(r"^-e \.$", req, re.M), "the package is installed editable"


def test_binder_installs_cpu_torch_on_python_311():
    req = "\n".join(line for line in (ROOT / "binder" / "requirements.txt").read_text().splitlines()
                    if not line.startswith("#"))
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in req
    assert re.search(r"^torch==[\d.]+\+cpu$", req, re.M)
    assert "jupyter-book" not in req and "sphinx" not in req.lower()
    assert (ROOT / "binder" / "runtime.txt").read_text().strip() == "python-3.11"
    post = ROOT / "binder" / "postBuild"
    assert post.stat().st_mode & 0o111, "postBuild must be executable"
    assert "jupytext-config set-default-viewer" in post.read_text()


def test_config_executes_strictly_and_never_reuses_a_stale_cache():
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert cfg["execute"]["execute_notebooks"] == "force"
    assert cfg["execute"]["raise_on_error"] is True
    for pattern in ("_build", ".venv", ".pytest_cache", "**/.ipynb_checkpoints"):
        assert pattern in cfg["exclude_patterns"]
    assert cfg["launch_buttons"]["binderhub_url"] == "https://mybinder.org"
    # Colab opens .ipynb only: its button is pointed at the notebooks made from the pages (scripts/colab_button.py)
    assert "colab_url" not in cfg["launch_buttons"] or cfg["sphinx"]["local_extensions"]["colab_button"] == "scripts/"
    assert "scripts/build_book.py" in (ROOT / "Makefile").read_text()
    build = (ROOT / "scripts" / "build_book.py").read_text()
    assert '"-W", "-n", "--keep-going"' in build and '"-b", "html"' in build      # strict, and every warning listed


def test_makefile_targets_are_phony():
    text = (ROOT / "Makefile").read_text()
    phony = re.search(r"^\.PHONY:(.*)$", text, re.M).group(1).split()
    assert {"book", "test", "bench"} <= set(phony)


def test_every_toc_entry_exists_and_every_chapter_is_in_the_toc():
    t = reading.toc(ROOT)
    files = [t["root"], *t["main"], *(f for f in t["reference"] if f.count("/") == 1)]
    for f in files:
        assert (ROOT / f"{f}.md").exists(), f
    chapters = {str(p.relative_to(ROOT).with_suffix("")) for p in (ROOT / "book").glob("*.md")}
    assert chapters == set(files), f"chapters outside the TOC or missing: {chapters ^ set(files)}"


def test_readme_gives_the_two_commands():
    text = (ROOT / "README.md").read_text()
    assert "make book" in text and "make test" in text
    assert "mybinder.org" in text


def test_bibliography_has_each_key_once():
    text = (ROOT / "book" / "references.bib").read_text()
    keys = re.findall(r"^@\w+\{([^,\s]+),", text, re.M)
    assert keys and len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)

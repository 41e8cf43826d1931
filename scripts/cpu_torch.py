"""The CPU build of torch for the book's venv, never the CUDA one (what ``make env``, and so ``make book`` and
``make test``, run before the requirements).

    python scripts/cpu_torch.py install [--index URL] [--timeout S] [--requirements requirements.txt]
    python scripts/cpu_torch.py check        # exit 1 if a CUDA package (nvidia-*) is installed here

On Linux, PyPI's ``torch==X`` is the CUDA build: about 3 GB of ``nvidia-*`` packages the book never uses. ``install``
asks PyTorch's CPU index (``--index``) whether it answers within ``--timeout`` seconds; if it does, torch ``X+cpu``
comes from there. If not (no network, or a network that cannot reach that host, as on the project's CI), it falls
back to the pinned ``torch==X`` of ``requirements.txt``, but only after a dry run shows that it resolves to no
``nvidia-*`` package (a CPU wheel on local disk, ``PIP_FIND_LINKS``); otherwise it stops and says how to get the CPU
wheel, rather than download the CUDA stack. Elsewhere than Linux PyPI's torch is the CPU build: nothing to do.
Standard library only: it runs in a fresh venv.
"""
from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import urllib.error
import urllib.request
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PYPI = "https://pypi.org/simple"


def pinned_torch(requirements: Path) -> str:
    """The X of the ``torch==X`` line."""
    m = re.search(r"^torch==([0-9][^\s;#+]*)\s*(?:#.*)?$", requirements.read_text(), re.M)
    if not m:
        raise ValueError(f"{requirements} must pin torch exactly (a line torch==X): an open range pulls a CUDA build")
    return m.group(1)


def index_answers(index: str, timeout: float) -> bool:
    """Whether ``index``'s page for torch answers (HTTP 200) within ``timeout`` seconds."""
    if not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    try:
        with urllib.request.urlopen(f"{index.rstrip('/')}/torch/", timeout=timeout) as response:
            return response.status == 200
    except (OSError, ValueError, urllib.error.URLError):      # no route, no name, refused, timed out
        return False


def cuda_packages(names) -> list[str]:
    """The CUDA runtime packages among distribution ``names`` (torch's CUDA build depends on ``nvidia-*``)."""
    return sorted({n for n in names if re.match(r"nvidia[-_]", n.lower())})


def installed_names() -> list[str]:
    return [d.metadata["Name"] or "" for d in metadata.distributions()]


def _pip(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], **kwargs)


def resolves_to(requirement: str) -> list[str]:
    """The names pip would install for ``requirement`` here (a dry run; it reads metadata, it installs nothing)."""
    out = _pip("install", "--dry-run", "--quiet", "--ignore-installed", "--report", "-", requirement,
               capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"pip cannot resolve {requirement}:\n{out.stderr.strip()[-2000:]}")
    return [item["metadata"]["name"] for item in json.loads(out.stdout)["install"]]


def install(version: str, index: str, timeout: float, system: str | None = None) -> int:
    system = system or platform.system()
    if system != "Linux":
        print(f"torch: PyPI's torch=={version} is the CPU build on {system}; requirements.txt installs it")
        return 0
    have = {n.lower(): n for n in installed_names()}
    if "torch" in have and metadata.version("torch").split("+")[0] == version and not cuda_packages(have):
        print(f"torch: {metadata.version('torch')} is installed already, without CUDA packages")
        return 0
    if index_answers(index, timeout):
        print(f"torch: {index} answers; installing torch=={version}+cpu from it")
        return _pip("install", "--quiet", f"torch=={version}+cpu", "--index-url", index,
                    "--extra-index-url", PYPI).returncode
    print(f"torch: {index} did not answer within {timeout:g} s; falling back to the pinned torch=={version}")
    names = resolves_to(f"torch=={version}")
    cuda = cuda_packages(names)
    if cuda:
        print(f"torch=={version} resolves here to the CUDA build ({', '.join(cuda[:4])}, ... about 3 GB), which the "
              f"book never uses, so nothing was installed. Get the CPU wheel torch-{version}+cpu from {index} on a "
              f"machine that reaches it, put it in a folder and run again with PIP_FIND_LINKS=<folder>, or raise "
              f"TORCH_INDEX_TIMEOUT if the index is only slow.", file=sys.stderr)
        return 1
    return _pip("install", "--quiet", f"torch=={version}").returncode


def check() -> int:
    cuda = cuda_packages(installed_names())
    if cuda:
        print(f"CUDA packages are installed in {sys.prefix}: {', '.join(cuda)}. The book runs on the CPU build of "
              f"torch: remove the venv and run `make env` again.", file=sys.stderr)
        return 1
    print(f"no CUDA package in {sys.prefix}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=["install", "check"])
    ap.add_argument("--index", default=CPU_INDEX, help="PyTorch's CPU wheel index")
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds the index may take to answer")
    ap.add_argument("--requirements", default=str(ROOT / "requirements.txt"))
    args = ap.parse_args(argv)
    if args.action == "check":
        return check()
    return install(pinned_torch(Path(args.requirements)), args.index, args.timeout)


if __name__ == "__main__":
    sys.exit(main())

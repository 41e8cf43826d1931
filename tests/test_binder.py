"""Binder builds what the README promises: Python 3.11, CPU-only torch, postBuild run (checked with
repo2docker's dry run, which prints the Dockerfile without a Docker engine)."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_repo2docker_dockerfile_installs_the_binder_requirements():
    exe = Path(sys.executable).with_name("jupyter-repo2docker")
    if not exe.exists():
        pytest.fail("jupyter-repo2docker is not installed (it is in requirements.txt)")
    out = subprocess.run([str(exe), "--no-build", "--debug", str(ROOT)], capture_output=True, text=True, timeout=300)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-2000:]
    assert "python=3.11" in text
    assert re.search(r'pip install --no-cache-dir -r "binder/requirements.txt"', text)
    assert "./binder/postBuild" in text
    # a binder/ folder makes repo2docker ignore the root requirements (which would pull CUDA torch)
    assert '-r "requirements.txt"' not in text

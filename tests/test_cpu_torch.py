"""The set-up never installs CUDA torch (scripts/cpu_torch.py, run by `make env`): it takes PyTorch's CPU index only
when that answers within the timeout, falls back to the pinned wheel only when that resolves to no nvidia-* package,
and this venv holds no CUDA package."""
from __future__ import annotations

import http.server
import importlib.util
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("skipnet_cpu_torch", ROOT / "scripts" / "cpu_torch.py")
cpu_torch = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cpu_torch)


@pytest.fixture
def index():
    """A local index: /torch/ answers after ``delay`` seconds (settable), anything else is 404."""
    state = {"delay": 0.0}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            time.sleep(state["delay"])
            self.send_response(200 if self.path == "/whl/cpu/torch/" else 404)
            self.end_headers()
            self.wfile.write(b"<a href='torch-2.13.0+cpu-cp311-cp311-linux_x86_64.whl'>torch</a>")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/whl/cpu", state
    server.shutdown()


def test_an_index_that_answers_in_time_is_used(index):
    url, _ = index
    assert cpu_torch.index_answers(url, timeout=5)
    assert not cpu_torch.index_answers(url.replace("/cpu", "/cu121"), timeout=5)     # its torch page is missing


def test_an_index_slower_than_the_timeout_counts_as_unreachable(index):
    url, state = index
    state["delay"] = 2.0
    assert not cpu_torch.index_answers(url, timeout=0.3)


def test_an_unreachable_index_counts_as_unreachable():
    assert not cpu_torch.index_answers("http://127.0.0.1:9/whl/cpu", timeout=2)       # the discard port: refused
    assert not cpu_torch.index_answers("http://no-such-host.invalid/whl/cpu", timeout=2)
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        cpu_torch.index_answers("http://127.0.0.1:9/whl/cpu", timeout=0)


def test_the_pinned_version_is_read_and_a_range_is_refused(tmp_path):
    assert cpu_torch.pinned_torch(ROOT / "requirements.txt") == "2.13.0"
    req = tmp_path / "r.txt"
    req.write_text("numpy==2.4.6\ntorch>=2.2\n")
    with pytest.raises(ValueError, match="must pin torch exactly"):
        cpu_torch.pinned_torch(req)


def test_cuda_packages_are_named():
    names = ["torch", "nvidia-cudnn-cu12", "numpy", "nvidia_nccl_cu12", "NVIDIA-cublas-cu12", "nvidiafoo"]
    assert cpu_torch.cuda_packages(names) == ["NVIDIA-cublas-cu12", "nvidia-cudnn-cu12", "nvidia_nccl_cu12"]


def test_the_fallback_refuses_a_cuda_build(monkeypatch, capsys):
    """Index unreachable and the pinned torch resolving to CUDA: nothing is installed, and the message says how to
    get the CPU wheel."""
    monkeypatch.setattr(cpu_torch, "installed_names", lambda: ["pip"])
    monkeypatch.setattr(cpu_torch, "index_answers", lambda index, timeout: False)
    monkeypatch.setattr(cpu_torch, "resolves_to", lambda req: ["torch", "nvidia-cublas-cu12", "sympy"])
    ran = []
    monkeypatch.setattr(cpu_torch, "_pip", lambda *a, **k: ran.append(a))
    assert cpu_torch.install("2.13.0", cpu_torch.CPU_INDEX, 5, system="Linux") == 1
    assert ran == []
    assert "PIP_FIND_LINKS" in capsys.readouterr().err


@pytest.mark.parametrize("answers,resolved,expected", [
    (True, None, ("install", "--quiet", "torch==2.13.0+cpu", "--index-url", "https://download.pytorch.org/whl/cpu",
                  "--extra-index-url", "https://pypi.org/simple")),
    (False, ["torch", "sympy"], ("install", "--quiet", "torch==2.13.0")),
])
def test_the_cpu_index_first_then_the_pinned_cpu_wheel(monkeypatch, answers, resolved, expected):
    class Done:
        returncode = 0

    monkeypatch.setattr(cpu_torch, "installed_names", lambda: ["pip"])
    monkeypatch.setattr(cpu_torch, "index_answers", lambda index, timeout: answers)
    monkeypatch.setattr(cpu_torch, "resolves_to", lambda req: resolved)
    ran = []
    monkeypatch.setattr(cpu_torch, "_pip", lambda *a, **k: ran.append(a) or Done())
    assert cpu_torch.install("2.13.0", cpu_torch.CPU_INDEX, 5, system="Linux") == 0
    assert ran == [expected]
    ran.clear()
    assert cpu_torch.install("2.13.0", cpu_torch.CPU_INDEX, 5, system="Darwin") == 0 and ran == []


def test_the_pinned_torch_resolves_here_without_cuda():
    """What `make env` falls back to on this machine (PyTorch's index unreachable) is a CPU wheel."""
    names = cpu_torch.resolves_to(f"torch=={cpu_torch.pinned_torch(ROOT / 'requirements.txt')}")
    assert "torch" in names and cpu_torch.cuda_packages(names) == []


def test_no_cuda_package_is_installed_in_this_venv():
    assert cpu_torch.check() == 0
    assert cpu_torch.cuda_packages(cpu_torch.installed_names()) == []

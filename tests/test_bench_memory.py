"""The benchmark's memory measure (bench/memory.py) sees a chapter's whole process tree: memory that a forked
grandchild holds (a kernel's worker) counts, and pages it still shares with its parent count once."""
import importlib.util
import sys
from pathlib import Path

import pytest

_path = Path(__file__).resolve().parents[1] / "bench" / "memory.py"
_spec = importlib.util.spec_from_file_location("skipnet_bench_memory", _path)
memory = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(memory)

pytestmark = pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(), reason="needs Linux /proc")

# a child that forks a grandchild; each touches its own 200 MB for about a second, the grandchild also keeps the
# 100 MB it inherited (shared copy-on-write pages, never written again)
TREE = """
import os, time
shared = bytearray(100 * 2**20)
for i in range(0, len(shared), 4096): shared[i] = 1
pid = os.fork()
own = bytearray(200 * 2**20)
for i in range(0, len(own), 4096): own[i] = 1
time.sleep(1.5)
if pid:
    os.waitpid(pid, 0)
"""


def test_the_peak_counts_a_forked_grandchild_and_shared_pages_once():
    run = memory.run_measured([sys.executable, "-c", TREE], every_s=0.05, timeout=60)
    assert run["returncode"] == 0, run["stderr"]
    assert run["peak_processes"] == 2
    # 100 MB shared once + 2 x 200 MB own = 500 MB, plus the interpreters; a sum of RSS would say 600 MB and more
    assert 480 <= run["peak_tree_mb"] <= 560, run
    assert 300 <= run["max_process_rss_mb"] <= 340, run          # the largest single process: 100 + 200 MB

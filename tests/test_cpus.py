"""The workers follow the CPUs this process may really use: its affinity mask and its cgroup's CPU quota (a
mybinder.org pod: one CPU's quota on a host whose many cores ``os.cpu_count()`` reports). The cgroup files are fakes
in a temporary folder laid out as the kernel lays them out."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from skipnet import parallel


def _tree(tmp_path, files: dict[str, str], self_cgroup: str):
    root = tmp_path / "cgroup"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text + "\n")
    root.mkdir(exist_ok=True)
    proc = tmp_path / "self_cgroup"
    proc.write_text(self_cgroup + "\n")
    return root, proc


CASES = {
    # name: (files under the cgroup root, /proc/self/cgroup, CPUs of quota)
    "v2 Binder pod, one CPU": ({"cgroup.controllers": "cpu", "cpu.max": "100000 100000"}, "0::/", 1.0),
    "v2 no quota": ({"cgroup.controllers": "cpu", "cpu.max": "max 100000"}, "0::/", None),
    "v2 quota on a parent": ({"cgroup.controllers": "cpu", "pod/cpu.max": "150000 100000",
                              "pod/box/cpu.max": "max 100000"}, "0::/pod/box", 1.5),
    "v2 the smallest on the way up": ({"cgroup.controllers": "cpu", "pod/cpu.max": "400000 100000",
                                       "pod/box/cpu.max": "50000 50000"}, "0::/pod/box", 1.0),
    "v2 hybrid mount": ({"unified/cpu.max": "200000 100000", "cpu/cpu.cfs_quota_us": "-1",
                         "cpu/cpu.cfs_period_us": "100000"}, "1:cpu:/\n0::/", 2.0),
    "v1 cpu,cpuacct": ({"cpu,cpuacct/cpu.cfs_quota_us": "100000", "cpu,cpuacct/cpu.cfs_period_us": "100000"},
                       "2:cpu,cpuacct:/", 1.0),
    "v1 no quota (-1)": ({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, "3:cpu:/\n2:cpuacct:/",
                         None),
    "v1 host path absent in the container": ({"cpu/cpu.cfs_quota_us": "300000", "cpu/cpu.cfs_period_us": "100000"},
                                             "3:cpu:/docker/abc123", 3.0),
    "no cgroup files": ({}, "0::/", None),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_the_cgroup_quota_is_read_in_cpus(tmp_path, case):
    files, self_cgroup, cpus = CASES[case]
    root, proc = _tree(tmp_path, files, self_cgroup)
    assert parallel.cgroup_cpu_limit(root, proc) == cpus


@pytest.mark.parametrize("affinity,quota,expected", [({0, 1, 2, 3}, None, 4), ({0, 1, 2, 3}, "100000 100000", 1),
                                                     ({0, 1, 2, 3}, "150000 100000", 1),
                                                     ({0, 1, 2, 3}, "300000 100000", 3), ({5}, "800000 100000", 1),
                                                     ({0, 1}, "10000 100000", 1)])
def test_usable_cpus_is_the_affinity_capped_by_the_quota(tmp_path, monkeypatch, affinity, quota, expected):
    files = {"cgroup.controllers": "cpu"} | ({"cpu.max": quota} if quota else {})
    root, proc = _tree(tmp_path, files, "0::/")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: affinity, raising=False)
    assert parallel.usable_cpus(root, proc) == expected


def test_workers_follow_the_quota_and_the_environment_comes_first(tmp_path, monkeypatch):
    root, proc = _tree(tmp_path, {"cgroup.controllers": "cpu", "cpu.max": "100000 100000"}, "0::/")
    monkeypatch.setattr(parallel, "CGROUP_ROOT", root)
    monkeypatch.setattr(parallel, "SELF_CGROUP", proc)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.delenv("SKIPNET_WORKERS", raising=False)
    assert parallel.workers(5) == 1                       # a Binder pod on a 64-core host: no workers
    (root / "cpu.max").write_text("300000 100000\n")
    assert parallel.workers(5) == 3 and parallel.workers(2) == 2
    (root / "cpu.max").write_text("100000 100000\n")
    monkeypatch.setenv("SKIPNET_WORKERS", "4")            # the override stays first
    assert parallel.workers(5) == 4


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no affinity masks on this platform")
def test_a_process_pinned_to_one_cpu_uses_one_worker():
    """As ``taskset -c 0`` runs it: a real child process whose affinity is one CPU."""
    code = "from skipnet import parallel; print(parallel.usable_cpus(), parallel.workers(4))"
    env = {k: v for k, v in os.environ.items() if k != "SKIPNET_WORKERS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env,
                         preexec_fn=lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "1"]

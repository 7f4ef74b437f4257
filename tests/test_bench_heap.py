"""This process's glibc heap (experiments/benchmarks/heap.py): trimming is turned off only when
the memory is there, the glibc calls work where there is glibc, and the peak RSS is this
process's own. The glibc calls change process-wide settings, so they run in a child."""

from __future__ import annotations

import pathlib
import platform
import subprocess
import sys

from experiments.benchmarks import heap

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_room_for_no_trim_wants_twice_the_temporaries_plus_2_gib(monkeypatch):
    gib = 1 << 30
    monkeypatch.setattr(heap, "_mem_available", lambda: 10 * gib)
    assert heap.room_for_no_trim([gib, 2 * gib]) is None  # 2 x 3 + 2 = 8 GiB wanted
    assert heap.room_for_no_trim([4 * gib]) is None  # exactly 10
    assert heap.room_for_no_trim([5 * gib]) == "10.0 GiB available, 12.0 GiB wanted"
    monkeypatch.setattr(heap, "_mem_available", lambda: None)  # no /proc/meminfo: do not hold back
    assert heap.room_for_no_trim([100 * gib]) is None


def test_mem_available_and_max_rss():
    assert heap.max_rss_mib() > 0
    available = heap._mem_available()
    if platform.system() == "Linux":
        assert available is not None and available > 0


def test_disable_trim_and_release_in_a_child():
    code = "from experiments.benchmarks import heap; print(heap.disable_trim(), heap.release_free_memory())"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": ""}, timeout=60)
    assert out.returncode == 0, out.stderr
    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert out.stdout.split() == ([str(glibc)] * 2 if glibc else ["False", "False"])


def test_child_max_rss_is_its_own():
    """VmHWM, not ru_maxrss (which a child inherits from its parent): a bare Python child
    reports its own few tens of MiB."""
    code = "from experiments.benchmarks import heap; print(heap.max_rss_mib())"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": ""}, timeout=60)
    assert out.returncode == 0, out.stderr
    assert 0 < float(out.stdout) < 200

"""What the `griffin-bench train` tests share: a tiny fixed shape on the command line and a
private limits cache whose matmul peak is measured quickly."""

from __future__ import annotations

import math

import pytest

from experiments.benchmarks import limits

TINY = ["--width", "32", "--depth", "3", "--heads", "2", "--lru-width", "32", "--gate-blocks", "4",
        "--window", "8", "--length", "16", "--batch", "2", "--vocab", "32", "--repeats", "2",
        "--matmul-n", "64", "--malloc", "default"]


@pytest.fixture
def small_peak(monkeypatch, tmp_path):
    """A private limits cache whose matmul peak is measured quickly, at n = 256."""
    monkeypatch.setenv("GRIFFIN_CACHE_DIR", str(tmp_path / "cache"))
    real = limits.measure_matmul_peak
    monkeypatch.setattr(limits, "measure_matmul_peak", lambda n, repeats, dtype: real(256, 3, dtype))


def positive(x: float) -> bool:
    return x > 0 and math.isfinite(x)

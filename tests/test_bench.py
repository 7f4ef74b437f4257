"""griffin-bench: the scan benchmark end to end at a tiny shape, the scan variants against a
float64 loop, the matmul-peak cache, and the CLI's plumbing. No test looks at a time."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from experiments import bench
from experiments.benchmarks import configure_malloc, limits, scan_bench, time_interleaved

TINY = ["--batch", "2", "--length", "16", "--width", "8", "--repeats", "2"]


def _scan_float64(a: np.ndarray, x: np.ndarray) -> np.ndarray:
    """h_t = a_t h_{t-1} + x_t over axis 0 from h = 0, one step at a time."""
    a, x = np.asarray(a, np.float64), np.asarray(x, np.float64)
    h, out = np.zeros(a.shape[1:]), np.empty_like(a)
    for t in range(a.shape[0]):
        h = a[t] * h + x[t]
        out[t] = h
    return out


def test_scan_cli_reports_every_variant(tmp_path, capsys):
    out_json = tmp_path / "scan.json"
    result = bench.run(["scan", *TINY, "--unrolls", "1,2,128", "--malloc", "default",
                        "--json", str(out_json)])

    names = [row["name"] for row in result["variants"]]
    assert len(names) == 3 + 5  # three unrolls, associative, chunked, auto, pallas, [B,T,D]
    assert {row["impl"] for row in result["variants"]} == {"sequential", "associative", "chunked", "auto", "pallas"}
    # CPU's 'auto' writes h over x's buffer: timed on donated copies, checked like the rest.
    (auto,) = [row for row in result["variants"] if row["impl"] == "auto"]
    assert auto["timed"] and auto["max_abs_diff"] <= 1e-5 * max(1.0, auto["max_abs_h"])
    assert {row["layout"] for row in result["variants"]} == {scan_bench.TIME_MAJOR, scan_bench.BATCH_MAJOR}
    timed = [row for row in result["variants"] if row["timed"]]
    (pallas,) = [row for row in result["variants"] if row["impl"] == "pallas"]
    # On CPU the Pallas kernel runs in interpret mode: checked against the sequential scan once,
    # at a shape no larger than PALLAS_CHECK_SHAPE, and never timed.
    assert not pallas["timed"] and pallas["mode"] == scan_bench.INTERPRET == "interpret (correctness only)"
    assert "gbps" not in pallas and "ratio" not in pallas and "times_ms" not in pallas
    assert pallas["max_abs_diff"] <= 1e-5 * max(1.0, pallas["max_abs_h"])
    assert pallas["check_shape"] == {"batch": 2, "length": 16, "width": 8}
    assert len(timed) == len(names) - 1
    for row in timed:
        assert row["gbps"] > 0 and math.isfinite(row["gbps"])
        assert row["ratio"] > 0 and math.isfinite(row["ratio"])
        assert len(row["times_ms"]) == 2
    assert result["limit"]["gbps"] > 0
    assert len(result["limit"]["triads"]) >= 2  # XLA and NumPy
    assert result["best"] in names and result["best"] != pallas["name"]
    best = next(row for row in timed if row["name"] == result["best"])
    assert result["target"] == {"x_triad": 0.8, "best_x_triad": best["ratio"], "met": best["ratio"] >= 0.8,
                                "applies": True}
    assert result["bytes"] == 12 * 2 * 16 * 8
    assert result["machine"]["jax_version"] == jax.__version__

    printed = capsys.readouterr().out
    assert "x triad" in printed and "GB/s" in printed
    assert "interpret (correctness only)" in printed and ">= 0.8x the triad" in printed
    for name in names:
        assert name in printed
    assert json.loads(out_json.read_text())["variants"] == json.loads(json.dumps(result["variants"]))


def test_scan_variants_agree_with_a_float64_loop():
    # An odd length exercises lax.scan's unroll remainder; a in (0, 1) as in the benchmark.
    inputs = scan_bench.make_inputs(batch=3, length=37, width=16, seed=1)
    a_tm, x_tm = inputs[scan_bench.TIME_MAJOR]
    assert float(a_tm.min()) > 0 and float(a_tm.max()) < 1
    expected = _scan_float64(a_tm, x_tm)
    variants = scan_bench.build_variants(unrolls=(1, 3, 128), batch_major_unroll=2)
    assert {v.impl for v in variants} == {"sequential", "associative", "chunked", "auto", "pallas"}
    for v in variants:
        a, x = inputs[v.layout]
        h = scan_bench.to_time_major(jax.jit(v.fn)(a, x), v.layout)
        assert h.dtype == np.float32
        np.testing.assert_allclose(np.asarray(h), expected, rtol=1e-5, atol=1e-5, err_msg=v.name)


def test_pallas_is_timed_only_where_it_is_compiled():
    def pallas(platform):
        return [v for v in scan_bench.build_variants((1,), platform=platform) if v.impl == "pallas"]

    assert [v.timed for v in pallas("cpu")] == [False]  # interpret mode: correctness only
    assert [v.timed for v in pallas("cuda")] == [True] and [v.timed for v in pallas("tpu")] == [True]
    assert pallas("rocm") == []  # no kernel
    assert scan_bench.check_shape(8, 2048, 1024) == scan_bench.PALLAS_CHECK_SHAPE
    assert scan_bench.check_shape(2, 16, 8) == (2, 16, 8)


def test_scan_bench_checks_outputs_itself():
    result = scan_bench.run_scan_bench(batch=2, length=24, width=8, repeats=1, unrolls=(1, 4))
    for row in result["variants"]:
        assert row["max_abs_diff"] <= 1e-5 * max(1.0, row["max_abs_h"]), row["name"]


# --------------------------------------------------------------------------- matmul-peak cache


@pytest.fixture
def counted_measure(monkeypatch, tmp_path):
    """A private cache folder and a tiny, counted matmul measurement."""
    monkeypatch.setenv("GRIFFIN_CACHE_DIR", str(tmp_path / "cache"))
    calls = []
    real = limits.measure_matmul_peak

    def measure(n, repeats, dtype):
        calls.append((n, repeats, dtype))
        return real(16, 2, dtype)

    monkeypatch.setattr(limits, "measure_matmul_peak", measure)
    return calls


def test_matmul_peak_is_cached_with_provenance(counted_measure, tmp_path):
    first = limits.matmul_peak()
    assert first["source"] == "measured" and len(counted_measure) == 1
    assert first["flops_per_s"] > 0

    path = tmp_path / "cache" / "limits.json"
    assert limits.cache_path() == path and path.exists()
    (stored,) = json.loads(path.read_text())["matmul_peak"].values()
    for field in ("cpu_model", "threads", "measured_at", "shape", "times_s", "best_s", "flops_per_s"):
        assert field in stored
    assert stored["key"]["jax_version"] == jax.__version__
    assert stored["key"]["backend"] == jax.default_backend()
    assert stored["cpu_model"] == limits.cpu_model()
    assert stored["threads"] == limits.effective_threads()

    second = limits.matmul_peak()
    assert second["source"] == "cache" and len(counted_measure) == 1
    assert second["flops_per_s"] == first["flops_per_s"]
    assert second["measured_at"] == first["measured_at"]


def test_matmul_peak_remeasured_when_key_changes_or_forced(counted_measure, monkeypatch, tmp_path):
    limits.matmul_peak()
    monkeypatch.setattr(limits, "cpu_model", lambda: "Another CPU 9000")
    other = limits.matmul_peak()
    assert other["source"] == "measured" and len(counted_measure) == 2
    assert other["key"]["cpu_model"] == "Another CPU 9000"

    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")  # one thread: a new key
    assert limits.effective_threads() == 1
    assert limits.matmul_peak()["threads"] == 1 and len(counted_measure) == 3

    assert limits.matmul_peak()["source"] == "cache" and len(counted_measure) == 3
    assert limits.matmul_peak(force=True)["source"] == "measured" and len(counted_measure) == 4
    # Every key keeps its own entry.
    entries = json.loads((tmp_path / "cache" / "limits.json").read_text())["matmul_peak"]
    assert len(entries) == 3


def test_matmul_peak_survives_a_corrupt_cache(counted_measure, tmp_path):
    path = tmp_path / "cache" / "limits.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    assert limits.matmul_peak()["source"] == "measured"
    assert limits.matmul_peak()["source"] == "cache" and len(counted_measure) == 1


def test_limits_subcommand(counted_measure, tmp_path, capsys):
    result = bench.run(["limits", "--elements", "4096", "--matmul-n", "16", "--repeats", "2",
                        "--malloc", "default", "--json", str(tmp_path / "limits.json")])
    assert result["bandwidth"]["gbps"] > 0
    assert result["matmul_peak"]["source"] == "measured"
    assert "matmul peak" in capsys.readouterr().out
    assert json.loads((tmp_path / "limits.json").read_text())["command"] == "limits"


# --------------------------------------------------------------------------- plumbing


def test_registering_a_subcommand(monkeypatch, tmp_path):
    monkeypatch.setattr(bench, "SUBCOMMANDS", dict(bench.SUBCOMMANDS))
    seen = {}

    def add_arguments(parser):
        parser.add_argument("--size", type=int, default=3)

    def run(args):
        seen.update(size=args.size, repeats=args.repeats)
        return {"benchmark": "fake", "size": args.size}

    bench.register("fake", "a stand-in", add_arguments, run)
    with pytest.raises(ValueError):
        bench.register("fake", "twice", add_arguments, run)
    out = tmp_path / "fake.json"
    result = bench.run(["fake", "--size", "5", "--repeats", "4", "--malloc", "default", "--json", str(out)])
    assert seen == {"size": 5, "repeats": 4}
    assert result["command"] == "fake" and result["size"] == 5
    assert json.loads(out.read_text())["size"] == 5
    assert bench.main(["fake", "--malloc", "default"]) == 0


def test_time_interleaved_rounds():
    calls = []
    rounds = time_interleaved({"x": lambda: calls.append("x"), "y": lambda: calls.append("y")}, 3)
    assert sorted(calls) == ["x"] * 3 + ["y"] * 3
    assert all(len(v) == 3 and min(v) >= 0 for v in rounds.seconds.values())
    assert all(len(v) == 3 for v in rounds.page_faults.values())
    with pytest.raises(ValueError):
        time_interleaved({"x": lambda: None}, 0)


def test_configure_malloc_modes():
    assert configure_malloc("default") == {"mode": "default", "applied": False}
    with pytest.raises(ValueError):
        configure_malloc("fast")


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="mallopt is glibc's")
def test_malloc_reuse_removes_page_faults_of_fresh_outputs():
    # In a child process: the setting is process-wide and must precede JAX's threads.
    code = textwrap.dedent("""
        from experiments.benchmarks import configure_malloc, time_interleaved
        assert configure_malloc("reuse")["applied"]
        import jax, jax.numpy as jnp
        x = jnp.ones((8 << 20,), jnp.float32)  # 32 MiB in, 32 MiB out
        f = jax.jit(lambda v: v * 2.0)
        jax.block_until_ready(f(x))
        # The heap first grows to hold the outputs still in flight; then freed ones are reused.
        faults = time_interleaved({"f": lambda: jax.block_until_ready(f(x))}, 40).page_faults["f"]
        print(sorted(faults[-20:])[10])  # the median of the last 20 calls
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[-1]) < 1000  # a fresh 32 MiB output takes 8192


def test_ssd_cli_times_each_chunk(tmp_path, capsys):
    """`griffin-bench ssd` at a tiny shape: one row per chunk with its time, work and ratio to
    the matmul peak, and the fastest chunk named."""
    out_json = tmp_path / "ssd.json"
    result = bench.run(["ssd", "--batch", "2", "--length", "24", "--heads", "2", "--head-dim", "4", "--state", "3",
                        "--chunks", "4,7,32", "--repeats", "2", "--json", str(out_json)])
    assert [r["chunk"] for r in result["rows"]] == [4, 7, 32]
    assert all(r["median_ms"] > 0 and r["flops"] > 0 and 0 < r["x_matmul_peak"] for r in result["rows"])
    assert result["fastest_chunk"] in (4, 7, 32) and min(r["x_fastest_time"] for r in result["rows"]) == 1.0
    assert "fastest chunk:" in capsys.readouterr().out
    assert out_json.exists()

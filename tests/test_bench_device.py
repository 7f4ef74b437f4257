"""griffin-bench device: the whole path end to end on CPU in quick mode (copy bandwidth, every
scan variant, the Pallas kernel as an interpret-mode correctness check, the training steps of
both row stand-ins per family, the Griffin/MQA ratios, JSON and Markdown), the time budget
and the memory plan that skip what does not fit, the targets, and bad options. No test looks
at a time."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import pathlib
import re
import shutil
import subprocess
import tomllib

import pytest

from experiments import bench
from experiments.benchmarks import device_bench, device_measure, device_report
from experiments.benchmarks.scan_bench import INTERPRET
from griffin_core import counting
from griffin_core.sizes import model_config

FAMILIES = ("mqa", "hawk", "griffin")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """One quick run through the command line, with its JSON and Markdown files."""
    folder = tmp_path_factory.mktemp("device")
    out_json, out_md = folder / "device.json", folder / "device.md"
    result = bench.run(["device", "--quick", "--malloc", "default", "--json", str(out_json),
                        "--markdown", str(out_md)])
    return result, json.loads(out_json.read_text()), out_md.read_text()


def test_quick_run_measures_every_part(quick):
    result, _, _ = quick
    s = device_bench.QUICK
    assert result["command"] == "device" and result["mode"] == "quick"
    assert result["device"]["platform"] == "cpu" and result["device"]["memory_bytes"] > 0
    assert result["bandwidth"]["gbps"] > 0 and result["bandwidth"]["moved_bytes"] == 2 * s.copy_bytes
    assert result["skipped"] == []

    scan = result["scan"]
    assert scan["lengths"] == [128, 256] and scan["width"] == 64
    for length in scan["lengths"]:
        rows = {r["variant"]: r for r in scan["rows"] if r["length"] == length}
        assert set(rows) == {"sequential", "associative", "chunked", "pallas"}
        for name in ("sequential", "associative", "chunked"):
            r = rows[name]
            assert r["status"] == "timed" and r["gbps"] > 0 and r["x_copy"] > 0 and math.isfinite(r["gbps"])
            assert r["max_abs_diff"] <= 1e-5 * max(1.0, r["max_abs_h"])
        pallas = rows["pallas"]  # interpret mode on CPU: checked against the sequential scan, never timed
        assert pallas["status"] == "correctness_only" and pallas["mode"] == INTERPRET
        assert "gbps" not in pallas and "best_ms" not in pallas
        assert pallas["max_abs_diff"] <= 1e-5 * max(1.0, pallas["max_abs_h"])
    assert all(sp["pallas_over_sequential"] is None for sp in scan["speedups"])

    steps = result["steps"]
    assert steps["dtype"] == "float32" and steps["mfu_basis"]["kind"] == "fraction_of_measured_matmul_peak"
    assert [(r["row"], r["size"], r["family"]) for r in steps["rows"]] == [
        (row, size, f) for row, size in s.rows for f in FAMILIES]
    for r in steps["rows"]:
        assert r["status"] == "timed" and r["batch"] == 4 and r["length"] == 128 and r["remat"] == "none"
        assert r["step_ms"] > 0 and r["tokens_per_s"] > 0 and math.isfinite(r["loss_last"])
        assert r["mfu"] > 0 and r["mfu_kind"] == "fraction_of_measured_matmul_peak"
        assert r["flops_per_step_exact"] == pytest.approx(
            counting.training_flops_per_token(model_config(r["family"], r["size"], 256), 128, "exact") * 4 * 128)

    fig3 = result["fig3"]
    assert fig3["row"] == "400M" and fig3["size"] == "cpu-80k" and fig3["tokens_per_step"] == 512
    assert [(p["length"], p["batch"]) for p in fig3["points"]] == [(128, 4), (256, 2)]
    for p in fig3["points"]:
        assert p["status"] == "timed" and p["griffin_over_mqa"] == pytest.approx(p["griffin_step_ms"] / p["mqa_step_ms"])
    # The shortest length is the 400M row's own measurement, not a second one.
    row = {r["family"]: r for r in steps["rows"] if r["row"] == "400M"}
    assert fig3["points"][0]["mqa_step_ms"] == row["mqa"]["step_ms"]
    assert fig3["points"][0]["griffin_step_ms"] == row["griffin"]["step_ms"]

    fused = result["fused"]  # the Pallas kernels in interpret mode: not timed on CPU
    assert fused["status"] == "not_timed" and "interpret mode" in fused["reason"] and fused["row"] == "400M"

    t = result["targets"]
    assert t["applies"] is False
    assert t["pallas_x_copy"]["met"] is None and t["pallas_over_sequential"]["met"] is None
    assert t["griffin_over_mqa"]["value"] == fig3["points"][0]["griffin_over_mqa"]
    assert t["griffin_over_mqa_falls"]["met"] in (True, False)


def test_fused_kernel_step_is_timed_against_the_unfused_one_where_kernels_compile():
    """The item as it runs on a GPU or TPU (here both steps run, the kernels in interpret
    mode): Griffin at the Fig 3 row with scan_impl=auto and with pallas_fused, and the ratio."""
    s = dataclasses.replace(device_bench.QUICK, step_batch=2, step_length=32)
    basis = device_measure.mfu_basis("float32", quick=True)
    steps = device_bench.Steps(s, "float32", basis, 2**34, device_bench.Budget(600), None, 0)
    skipped: list = []
    with device_bench.Tracker(1, quiet=True) as track:
        fused = device_bench._fused(s, steps, "cuda", track, skipped)
    assert skipped == [] and fused["status"] == "timed" and fused["size"] == "cpu-80k"
    assert fused["fused_over_auto"] == pytest.approx(fused["fused_step_ms"] / fused["auto_step_ms"])
    assert "| 2 | 32 |" in "\n".join(device_report._fused_table(fused))


def test_quick_run_writes_json_and_markdown(quick, capsys):
    result, written, text = quick
    assert written["scan"] == json.loads(json.dumps(result["scan"]))
    assert written["targets"] == json.loads(json.dumps(result["targets"]))
    assert text == device_report.markdown(result)
    for heading in ("# griffin-bench device", "## Scan", "## Training step", "## Fig 3", "## Fused RG-LRU kernel",
                    "## Targets"):
        assert heading in text
    assert "| T | variant | best ms | GB/s | x copy |" in text and "interpret (correctness only)" in text
    assert "| 400M | cpu-80k | griffin | 4 x 128 | none |" in text
    assert "fraction of measured matmul peak" in text and "Griffin / MQA" in text


def test_budget_skips_what_does_not_fit_and_says_why():
    s = dataclasses.replace(device_bench.QUICK, budget_s=1e-3)
    result = device_bench.run_device_bench(s, quick=True, quiet=True)
    assert result["bandwidth"]["gbps"] > 0  # always measured: the scans' limit
    assert all(r["status"] == "skipped" and r["reason"].startswith("time budget") for r in result["scan"]["rows"])
    assert all(r["status"] == "skipped" and r["reason"].startswith("time budget") for r in result["steps"]["rows"])
    assert all(p["status"] == "skipped" for p in result["fig3"]["points"])
    assert len(result["skipped"]) == len(s.scan_lengths) + 3 * len(s.rows) + len(s.fig3_lengths)
    assert all(v["met"] is None for k, v in result["targets"].items() if k != "applies")
    text = device_report.markdown(result)
    assert "## Skipped" in text and "skipped: time budget" in text


def test_budget_refuses_only_what_overruns():
    now = [0.0]
    budget = device_bench.Budget(10.0, clock=lambda: now[0])
    assert budget.refuses(9.0) is None
    now[0] = 4.0
    assert budget.used() == 4.0 and budget.refuses(6.0) is None
    assert budget.refuses(7.0) == "time budget: needs about 7 s, 6 s left"


def test_memory_plan_takes_remat_then_a_smaller_batch():
    cfg = model_config("mqa", "100M", 32_000, dtype="bfloat16")
    need = {remat: counting.memory_per_device(cfg.replace(remat=remat), 8, 2048)["total"] for remat in ("none", "full")}
    assert need["full"] < need["none"]
    frac = device_measure.MEMORY_FRACTION
    plan = device_measure.plan_step(cfg, 8, 2048, int(need["none"] / frac) + 1, shrink_batch=True)
    assert plan[0] == cfg and plan[1] == 8
    plan = device_measure.plan_step(cfg, 8, 2048, int(need["full"] / frac) + 1, shrink_batch=True)
    assert plan[0].remat == "full" and plan[1] == 8
    smaller = counting.memory_per_device(cfg.replace(remat="full"), 2, 2048)["total"]
    plan = device_measure.plan_step(cfg, 8, 2048, int(smaller / frac) + 1, shrink_batch=True)
    assert plan[0].remat == "full" and plan[1] == 2
    refused = device_measure.plan_step(cfg, 8, 2048, int(smaller / frac) + 1, shrink_batch=False)
    assert isinstance(refused, str) and refused.startswith("memory:")
    assert device_measure.plan_step(cfg, 8, 2048, 1 << 20, shrink_batch=True).startswith("memory:")


def test_targets_on_an_accelerator(quick):
    """The targets read from a result as a GPU would give it: the kernel timed at every length."""
    result = copy.deepcopy(quick[0])
    result["device"]["platform"] = "cuda"
    first = result["scan"]["lengths"][0]
    for row in result["scan"]["rows"]:
        if row["variant"] == "pallas" and row["length"] == first:
            row.update(status="timed", x_copy=0.7, best_ms=1.0, gbps=1.0, compile_s=0.1)
    result["scan"]["speedups"][0].update(pallas_over_sequential=3.5, pallas_over_associative=1.5)
    for point, ratio in zip(result["fig3"]["points"], (0.95, 0.9)):
        point["griffin_over_mqa"] = ratio
    t = device_report.targets(result)
    assert t["applies"] is True
    assert [t[k]["met"] for k in ("pallas_x_copy", "pallas_over_sequential", "griffin_over_mqa",
                                  "griffin_over_mqa_falls")] == [True, True, True, True]
    result["fig3"]["points"][1]["griffin_over_mqa"] = 0.99
    result["scan"]["speedups"][0]["pallas_over_sequential"] = 2.0
    t = device_report.targets(result)
    assert t["griffin_over_mqa_falls"]["met"] is False and t["pallas_over_sequential"]["met"] is False
    assert "not met" in device_report.markdown({**result, "targets": t})


@pytest.mark.parametrize("argv, word", [(["--budget", "0"], "--budget"), (["--dtype", "float16"], "--dtype"),
                                        (["--vocab", "-3"], "--vocab")])
def test_bad_options_are_one_line_errors(argv, word, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["device", "--quick", *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and word in err


# --------------------------------------------------------------------------- make device-check

REPO = pathlib.Path(__file__).resolve().parent.parent


def test_accelerator_extras_pin_the_locked_jax():
    (locked,) = re.findall(r"^jax==(\S+)$", (REPO / "requirements.lock").read_text(), re.MULTILINE)
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["gpu"] == [f"jax[cuda12]=={locked}"]
    assert extras["tpu"] == [f"jax[tpu]=={locked}"]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("target, extra, platform", [("device-check", "gpu", "cuda"),
                                                     ("device-check-tpu", "tpu", "tpu")])
def test_make_device_check_installs_the_extra_then_tests_and_measures(target, extra, platform):
    done = subprocess.run(["make", "-n", "-B", target], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    venv = f".venv-{extra}"
    order = [f"-m venv {venv}", f"-r requirements.lock \".[{extra}]\"",
             f"JAX_PLATFORMS={platform} XLA_PYTHON_CLIENT_PREALLOCATE=false {venv}/bin/pytest -p no:cacheprovider -n 0 "
             "tests/test_scan.py tests/test_scan_export.py tests/test_rglru_fused.py tests/test_kernels_gpu_interpret.py",
             f"JAX_PLATFORMS={platform} {venv}/bin/griffin-bench device --json device.json --markdown device.md"]
    found = [next(i for i, line in enumerate(lines) if part in line) for part in order]
    assert found == sorted(found)

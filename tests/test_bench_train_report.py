"""The tables griffin-bench train prints (experiments/benchmarks/train_report.py), from a
made-up result: every family, ratio, ladder row and malloc setting is shown, and the targets
are judged from the result's own `targets`."""

from __future__ import annotations

import copy

import pytest

from experiments.benchmarks.train_report import _ms, _num, render

SHAPE = dict(width=32, depth=3, num_heads=2, lru_width=32, num_gate_blocks=4, local_window=8,
             vocab_size=32, length=16, batch=2)


def _family(name: str, mfu: float) -> dict:
    return {"family": name, "params": 1.5e6, "flops_per_step_exact": 2.5e9, "step_ms": 12.5,
            "tokens_per_s": 2560.0, "mfu": mfu, "mfu_range": [mfu - 0.01, mfu + 0.01], "x_matmul": 0.5,
            "page_faults_per_step": 7.0, "compile_s": 1.25}


def _setting(tokens: float) -> dict:
    return {"tokens_per_s": tokens, "x_matmul": 0.5, "page_faults_per_step": 2e5, "max_rss_mib": 2048,
            "over_default": tokens / 100.0, "x_matmul_over_default": 1.0}


RESULT = {
    "shape": SHAPE, "repeats": 2,
    "machine": {"cpu_model": "Test CPU", "usable_cores": 2, "jax_version": "0.0"},
    "matmul_peak": {"flops_per_s": 2e11, "shape": [2048, 2048], "threads": 2, "measured_at": "today"},
    "matmul_in_run": {"n": 64, "gflops_per_s": 150.0},
    "malloc": {"mode": "reuse", "applied": True, "trim": "off"},
    "families": [_family("mqa", 0.45), _family("hawk", 0.55), _family("griffin", 0.30)],
    "ratios": {"griffin/mqa": {"median": 0.9, "min": 0.8, "max": 1.1},
               "hawk/mqa": {"median": 0.85, "min": 0.8, "max": 0.9}},
    "ladder": {"length": 16, "batch": 2, "rows": [
        {"size": "cpu-30k", "width": 24, "depth": 3, "family": f, "mfu": 0.1, "tokens_per_s": 5e4}
        for f in ("mqa", "hawk", "griffin")]},
    "malloc_comparison": {"children_per_setting": 1, "repeats": 3, "settings": ["default", "reuse"],
                          "families": {"hawk": {"default": _setting(100.0), "reuse": _setting(130.0)}}},
    "targets": {"mfu": 0.40, "griffin/mqa": 1.0, "mfu_met": {"mqa": True, "hawk": True, "griffin": False},
                "griffin/mqa_met": True},
}


def test_render_shows_every_table(capsys):
    render(RESULT)
    out = capsys.readouterr().out
    for text in ("Training step", "mqa", "hawk", "griffin", "45.0%", "30.0%", "trim off",
                 "step time griffin/mqa: 0.900 [0.800-1.100] (target <= 1.0)", "step time hawk/mqa: 0.850",
                 "CPU ladder", "cpu-30k", "24 x 3", "10.0% (50,000)",
                 "glibc malloc", "reuse", "1.30", "200K", "2.0",
                 "of peak", "fraction of measured matmul peak (cpu: no nominal peak)",
                 "CPU ladder  T=16 batch=2: fraction of measured matmul peak",
                 "target: fraction of measured matmul peak >= 40% for every family, griffin/mqa <= 1.0: not met"):
        assert text in out, text


def test_on_an_accelerator_the_figure_is_mfu_against_the_nominal_peak(capsys):
    result = copy.deepcopy(RESULT)
    result["mfu_basis"] = {"kind": "exact_over_nominal_bf16_peak", "label": "MFU", "chip": "TPU v4", "chips": 1,
                           "device_kind": "TPU v4", "flops_per_s": 275e12}
    render(result)
    out = capsys.readouterr().out
    assert "nominal dense bf16 peak of 1 x TPU v4 (275 TFLOP/s)" in out
    assert "matmul peak" not in out.split("x matmul")[0]
    assert "target: MFU >= 40% for every family" in out


@pytest.mark.parametrize("change,verdict", [({}, "not met"), ({"griffin": True}, "met")])
def test_targets_come_from_the_result(change, verdict, capsys):
    result = copy.deepcopy(RESULT)
    result["targets"]["mfu_met"].update(change)
    result["targets"]["griffin/mqa"] = 1.2
    del result["malloc_comparison"]
    result["ladder"]["rows"] = []
    render(result)
    out = capsys.readouterr().out
    assert "(target <= 1.2)" in out and out.rstrip().endswith(f"griffin/mqa <= 1.2: {verdict}")
    assert "CPU ladder" not in out and "glibc malloc" not in out


def test_number_formats():
    assert [_ms(v) for v in (1234.5, 12.34, 0.01234)] == ["1234", "12.3", "0.012"]
    assert [_num(v) for v in (12345.6, 12.34)] == ["12,346", "12.3"]

"""The measurement of griffin-bench train (experiments/benchmarks/train_measure.py): the fixed
shape's configs, the argument checks made before anything is compiled, and the figures taken
from per-round times (step time, tokens/s, MFU, x matmul, ratios). The timing itself runs end
to end in test_bench_train.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from experiments.benchmarks import train_measure
from experiments.benchmarks.train_measure import DEFAULT_SHAPE, FAMILIES, fixed_config, run_train_bench
from griffin_core import counting


@pytest.mark.parametrize("family", FAMILIES)
def test_fixed_config_is_the_issue_shape(family):
    cfg = fixed_config(family, DEFAULT_SHAPE)
    assert cfg.family == family and cfg.dtype == "float32"
    for key in ("width", "depth", "num_heads", "lru_width", "num_gate_blocks", "local_window", "vocab_size"):
        assert getattr(cfg, key) == DEFAULT_SHAPE[key]
    assert DEFAULT_SHAPE["local_window"] * 2 == DEFAULT_SHAPE["length"]  # window = T/2, as in the paper
    assert cfg.lru_width % cfg.num_gate_blocks == 0


@pytest.mark.parametrize("kwargs,match", [
    ({"repeats": 0}, "repeats"), ({"shape": {"batch": 0}}, "shape"),
    ({"families": ["transformer"]}, "families"), ({"families": []}, "families"),
])
def test_bad_arguments_are_rejected_before_measuring(kwargs, match, monkeypatch):
    monkeypatch.setattr(train_measure.limits, "matmul_peak", lambda: pytest.fail("measured"))
    with pytest.raises(ValueError, match=match):
        run_train_bench(**kwargs)


def test_ratio_is_taken_round_by_round():
    ratio = train_measure._ratio({"griffin": [2.0, 4.0, 6.0], "mqa": [1.0, 2.0, 2.0]}, "griffin", "mqa")
    assert ratio == {"median": 2.0, "min": 2.0, "max": 3.0, "per_round": [2.0, 2.0, 3.0]}


def test_row_figures_from_call_times():
    cfg = fixed_config("hawk", DEFAULT_SHAPE)
    flops = 1e9
    runner = SimpleNamespace(cfg=cfg, batch=4, length=8, tokens_per_step=32, flops_per_step=flops, steps=2,
                             compile_s=1.5, first_loss=5.0, losses=[5.0, 4.0, 3.0])
    # three rounds of one call each (2 steps per call): 0.1, 0.2 and 0.15 s per step
    row = train_measure._row("hawk", runner, [0.2, 0.4, 0.3], [100, 300, 200], peak=2e10,
                             probe_flops_per_s=[1e10, 2e10, 1e10])
    assert row["step_ms"] == pytest.approx(150) and row["best_step_ms"] == pytest.approx(100)
    assert row["step_ms_rounds"] == pytest.approx([100, 200, 150])
    assert row["tokens_per_s"] == pytest.approx(32 / 0.15)
    assert row["tokens_per_s_range"] == pytest.approx([32 / 0.2, 32 / 0.1])
    assert row["mfu"] == pytest.approx(flops / 0.15 / 2e10)
    assert row["mfu_range"] == pytest.approx([flops / 0.2 / 2e10, flops / 0.1 / 2e10])
    # x matmul per round: (1e10, 5e9, 6.67e9) FLOP/s over (1e10, 2e10, 1e10)
    assert row["x_matmul"] == pytest.approx(flops / 0.15 / 1e10)
    assert row["x_matmul_range"] == pytest.approx([0.25, 1.0])
    assert row["page_faults_per_step"] == 100
    assert row["params"] == counting.count_params(cfg).total
    assert row["flops_per_token_exact"] == counting.training_flops_per_token(cfg, 8, "exact")
    assert (row["loss_first"], row["loss_last"]) == (5.0, 3.0)


@pytest.mark.parametrize("platform, kind, basis", [
    ("cpu", "cpu", {"kind": "fraction_of_measured_matmul_peak", "label": "fraction of measured matmul peak",
                    "chip": None, "chips": 1, "flops_per_s": 2e11}),
    ("tpu", "TPU v5 lite", {"kind": "exact_over_nominal_bf16_peak", "label": "MFU", "chip": "TPU v5e", "chips": 1,
                            "flops_per_s": 197e12}),
])
def test_mfu_basis_is_one_devices_nominal_peak_or_the_measured_peak(platform, kind, basis, monkeypatch):
    """The step runs on one device: on an 8-chip host the nominal peak is still one chip's."""
    monkeypatch.setattr(train_measure, "devices", lambda: (platform, kind, 8, 1))
    assert train_measure.mfu_basis(2e11) == {**basis, "device_kind": kind}

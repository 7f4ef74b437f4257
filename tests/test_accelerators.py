"""The accelerator table (griffin_core/accelerators.py): which row a JAX device kind names, the
published figures, the TPU planner's figures taken from it; and the MFU a run or benchmark
reports (experiments/mfu.py): a chip's nominal peak times the chips, or on CPU the fraction of
the measured matmul peak. Plain Python: no JAX device is needed."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

from experiments.mfu import LABELS, MEASURED, NOMINAL, nominal_chip, utilisation
from griffin_core import accelerators as acc
from launch.tpu_types import GENERATIONS, parse_pod_type
from run_store.results import MFU_KINDS

TF = 1e12
REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("kind, name", [
    ("TPU v4", "TPU v4"),
    ("TPU v5 lite", "TPU v5e"), ("TPU v5e", "TPU v5e"),
    ("TPU v5", "TPU v5p"), ("TPU v5p", "TPU v5p"),
    ("TPU v6 lite", "TPU v6e"), ("TPU v6e", "TPU v6e"),
    ("NVIDIA A100-SXM4-40GB", "NVIDIA A100 40GB"), ("NVIDIA A100-PCIE-40GB", "NVIDIA A100 40GB"),
    ("NVIDIA A100-SXM4-80GB", "NVIDIA A100 80GB"), ("NVIDIA A100 80GB PCIe", "NVIDIA A100 80GB"),
    ("NVIDIA H100 80GB HBM3", "NVIDIA H100 SXM"), ("NVIDIA H100", "NVIDIA H100 SXM"),
    ("NVIDIA H100 PCIe", "NVIDIA H100 PCIe"),
    ("NVIDIA H200", "NVIDIA H200"), ("  nvidia   h200 ", "NVIDIA H200"),
])
def test_device_kinds_name_their_row(kind, name):
    assert acc.lookup(kind).name == name


@pytest.mark.parametrize("kind", [
    "cpu", "", None, "TPU v4 lite", "TPU v3", "TPU v7x", "NVIDIA A10", "NVIDIA A100", "NVIDIA A100X",
    "NVIDIA H100 NVL", "NVIDIA H200 NVL", "NVIDIA GH200 480GB", "NVIDIA H800", "Tesla V100-SXM2-16GB",
    "AMD Instinct MI300X",
])
def test_unknown_kinds_have_no_row(kind):
    assert acc.lookup(kind) is None


def test_published_figures():
    peaks = {c.name: c.peak_bf16_flops / TF for c in acc.CHIPS}
    assert peaks == {"TPU v4": 275, "TPU v5e": 197, "TPU v5p": 459, "TPU v6e": 918, "NVIDIA A100 40GB": 312,
                     "NVIDIA A100 80GB": 312, "NVIDIA H100 SXM": 989, "NVIDIA H100 PCIe": 756, "NVIDIA H200": 989}
    hbm = {c.name: c.hbm_bytes / acc.GiB for c in acc.CHIPS}
    assert hbm == {"TPU v4": 32, "TPU v5e": 16, "TPU v5p": 95, "TPU v6e": 32, "NVIDIA A100 40GB": 40,
                   "NVIDIA A100 80GB": 80, "NVIDIA H100 SXM": 80, "NVIDIA H100 PCIe": 80, "NVIDIA H200": 141}
    assert len({c.name for c in acc.CHIPS}) == len(acc.CHIPS)


def test_the_tpu_planner_reads_the_table():
    assert set(GENERATIONS) == set(acc.TPU_GENERATIONS) == {"v4", "v5p", "v5litepod", "v6e"}
    for generation, chip in acc.TPU_GENERATIONS.items():
        g = GENERATIONS[generation]
        assert (g.cores_per_chip, g.chips_per_host, g.peak_flops_per_chip, g.hbm_bytes_per_chip) == (
            chip.cores_per_chip, chip.chips_per_host, chip.peak_bf16_flops, chip.hbm_bytes)
    v4 = parse_pod_type("v4-32")
    assert (v4.chips, v4.hosts, v4.spec.peak_flops_per_chip) == (16, 4, 275 * TF)
    assert parse_pod_type("v5litepod-8").spec.hbm_bytes_per_chip == 16 * acc.GiB


def test_the_table_is_plain_python():
    code = ("import sys, griffin_core.accelerators, experiments.mfu, launch.tpu_types; "
            "print(any(m in sys.modules for m in ('jax', 'jaxlib')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- experiments.mfu


def test_the_kinds_are_the_result_schemas_kinds():
    assert (NOMINAL, MEASURED) == MFU_KINDS == ("exact_over_nominal_bf16_peak", "fraction_of_measured_matmul_peak")
    assert LABELS[MEASURED] == "fraction of measured matmul peak"


def test_tpu_v4_divides_by_the_peak_of_every_chip():
    flops = 0.5 * 16 * 275 * TF  # half of 16 chips' peak
    u = utilisation(flops, "tpu", "TPU v4", 16, measured_peak=123.0, processes=4)
    assert u.mfu == pytest.approx(0.5)
    assert (u.kind, u.chip, u.chips) == (NOMINAL, "TPU v4", 16)
    assert u.peak_flops_per_s == pytest.approx(16 * 275 * TF)
    # One chip's peak divided into 16 chips' FLOP/s would report 8.0: never.
    assert utilisation(flops, "tpu", "TPU v4", 1, None).mfu == pytest.approx(8.0)


def test_h100_x8():
    u = utilisation(2.0e15, "gpu", "NVIDIA H100 80GB HBM3", 8, measured_peak=None)
    assert u.mfu == pytest.approx(2.0e15 / (8 * 989 * TF))
    assert (u.kind, u.chip, u.chips) == (NOMINAL, "NVIDIA H100 SXM", 8)


def test_cpu_is_the_fraction_of_the_measured_peak_per_process():
    u = utilisation(1.0e11, "cpu", "cpu", 1, measured_peak=2.0e11)
    assert (u.mfu, u.kind, u.chip, u.chips, u.peak_flops_per_s) == (0.5, MEASURED, None, 1, 2.0e11)
    # Simulated CPU devices of one process share its cores: the process's peak, once.
    assert utilisation(1.0e11, "cpu", "cpu", 8, measured_peak=2.0e11).mfu == pytest.approx(0.5)
    # Two processes (hosts), each with its own measured peak.
    two = utilisation(1.0e11, "cpu", "cpu", 2, measured_peak=2.0e11, processes=2)
    assert (two.mfu, two.chips) == (pytest.approx(0.25), 2)
    # Without a measured peak there is no figure, and never a nominal one on CPU.
    assert utilisation(1.0e11, "cpu", "cpu", 1, measured_peak=None) == (None, None, None, None, None)
    assert nominal_chip("cpu", "TPU v4") is None


def test_an_unknown_accelerator_uses_its_measured_device_peak_times_devices():
    u = utilisation(3.0e14, "gpu", "NVIDIA H100 NVL", 4, measured_peak=1.0e14)
    assert (u.mfu, u.kind, u.chip, u.chips) == (pytest.approx(0.75), MEASURED, "NVIDIA H100 NVL", 4)
    assert utilisation(3.0e14, "gpu", "NVIDIA H100 NVL", 4, measured_peak=None).mfu is None


@pytest.mark.parametrize("flops", [None, 0.0, -1.0])
def test_no_throughput_no_figure(flops):
    assert utilisation(flops, "tpu", "TPU v4", 4, None).kind is None


def test_counts_must_be_positive():
    with pytest.raises(ValueError, match="device_count"):
        utilisation(1.0, "tpu", "TPU v4", 0, None)
    with pytest.raises(ValueError, match="processes"):
        utilisation(1.0, "cpu", "cpu", 1, 1.0, processes=0)

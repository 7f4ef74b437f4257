"""The accelerator chips this project knows: each chip's nominal dense bf16 peak and HBM, and
which chip a JAX `device.device_kind` string names. Plain Python (no JAX): the sweep planner
sizes TPU slices with it, and the runner and `griffin-bench train` divide by its peaks.

Figures are the vendors' published ones, per chip, dense (no structured sparsity):

| chip | bf16 dense TFLOP/s | HBM |
|---|---:|---:|
| TPU v4 | 275 | 32 GiB |
| TPU v5e (v5litepod) | 197 | 16 GiB |
| TPU v5p | 459 | 95 GiB |
| TPU v6e | 918 | 32 GiB |
| NVIDIA A100 40GB / 80GB | 312 | 40 / 80 GiB |
| NVIDIA H100 SXM | 989 | 80 GiB |
| NVIDIA H100 PCIe | 756 | 80 GiB |
| NVIDIA H200 | 989 | 141 GiB |

HBM sizes are the vendors' "GB" read as 2^30 bytes. JAX shows one device per chip for every
row (TPU v4 and v5p run a chip's two TensorCores as one "megacore" device), so a run's device
count is its chip count. Variants whose figures differ and are not in the table (H100 NVL,
H200 NVL, GH200, TPU v4 lite, ...) are unknown: `lookup` returns None for them.
"""

from __future__ import annotations

import dataclasses
import re

GiB = 2**30


@dataclasses.dataclass(frozen=True)
class Chip:
    """One accelerator chip of the table."""

    name: str
    """How results and reports name it ('TPU v4', 'NVIDIA H100 SXM')."""
    peak_bf16_flops: float
    """Nominal dense bf16 matmul FLOP/s of one chip (vendor figure, no sparsity)."""
    hbm_bytes: int
    """High-bandwidth memory of one chip."""
    cores_per_chip: int = 1
    """TPU TensorCores per chip (what Cloud TPU pod-type names count for v4 and v5p)."""
    chips_per_host: int | None = None
    """Chips per TPU VM host of a multi-host slice; None for GPUs (it depends on the machine)."""


TPU_V4 = Chip("TPU v4", 275e12, 32 * GiB, cores_per_chip=2, chips_per_host=4)
TPU_V5E = Chip("TPU v5e", 197e12, 16 * GiB, cores_per_chip=1, chips_per_host=4)
TPU_V5P = Chip("TPU v5p", 459e12, 95 * GiB, cores_per_chip=2, chips_per_host=4)
TPU_V6E = Chip("TPU v6e", 918e12, 32 * GiB, cores_per_chip=1, chips_per_host=4)
A100_40GB = Chip("NVIDIA A100 40GB", 312e12, 40 * GiB)
A100_80GB = Chip("NVIDIA A100 80GB", 312e12, 80 * GiB)
H100_SXM = Chip("NVIDIA H100 SXM", 989e12, 80 * GiB)
H100_PCIE = Chip("NVIDIA H100 PCIe", 756e12, 80 * GiB)
H200 = Chip("NVIDIA H200", 989e12, 141 * GiB)

CHIPS = (TPU_V4, TPU_V5E, TPU_V5P, TPU_V6E, A100_40GB, A100_80GB, H100_SXM, H100_PCIE, H200)
"""Every row of the table."""

TPU_GENERATIONS = {"v4": TPU_V4, "v5p": TPU_V5P, "v5litepod": TPU_V5E, "v6e": TPU_V6E}
"""The TPU rows by the generation prefix of Cloud TPU accelerator types (v4-16, v5litepod-8)."""

_TPU_KINDS = {
    "tpu v4": TPU_V4,
    "tpu v5 lite": TPU_V5E, "tpu v5e": TPU_V5E,
    "tpu v5": TPU_V5P, "tpu v5p": TPU_V5P,
    "tpu v6 lite": TPU_V6E, "tpu v6e": TPU_V6E,
}
"""TPU device kinds as JAX reports them (lower case); older and newer runtimes differ."""

_NVIDIA = re.compile(r"nvidia (a100|h100|h200)\b(.*)")


def _nvidia(model: str, rest: str) -> Chip | None:
    """The row of an NVIDIA device kind's model and the rest of its name (form factor, memory)."""
    if "nvl" in rest:
        return None
    if model == "a100":
        return A100_80GB if "80gb" in rest else A100_40GB if "40gb" in rest else None
    if model == "h100":
        return H100_PCIE if "pcie" in rest else H100_SXM
    return H200


def lookup(device_kind: str | None) -> Chip | None:
    """The table's row for a JAX device kind ('TPU v5 lite', 'NVIDIA A100-SXM4-80GB',
    'NVIDIA H100 80GB HBM3'), or None for a kind the table does not have (CPU included)."""
    kind = " ".join(str(device_kind or "").lower().split())
    if kind in _TPU_KINDS:
        return _TPU_KINDS[kind]
    match = _NVIDIA.fullmatch(kind)
    return _nvidia(match.group(1), match.group(2)) if match else None

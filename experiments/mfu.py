"""Which MFU a run (result.json) or `griffin-bench train` reports, and what it divides by.

- On a chip of the accelerator table (`griffin_core.accelerators`): exact training FLOP/s over
  the chip's nominal dense bf16 peak x the number of chips the work ran on. Kind
  "exact_over_nominal_bf16_peak": it means the same on every machine.
- Elsewhere (CPU, or an accelerator the table lacks): the same FLOP/s over the dense matmul
  peak griffin-bench measured and cached (`limits.matmul_peak`) x the units it was measured
  on. Kind "fraction_of_measured_matmul_peak". On CPU the unit is a process: the peak is
  measured with every thread the process may use, and the CPU devices of one process
  (`--xla_force_host_platform_device_count`) share those threads. On an accelerator it is
  one device.

Never one device's peak divided into the FLOP/s of many. `utilisation` is pure (the devices
come in as values, testable anywhere); `devices` reads them from JAX.
"""

from __future__ import annotations

from typing import NamedTuple

from griffin_core.accelerators import Chip, lookup
from run_store.results import MFU_KINDS

NOMINAL, MEASURED = MFU_KINDS
"""The two kinds (run_store.results.MFU_KINDS): against the nominal bf16 peak, and the
fraction of the measured matmul peak."""

LABELS = {NOMINAL: "MFU", MEASURED: "fraction of measured matmul peak"}
"""How reports name each kind's figure."""


class Utilisation(NamedTuple):
    """One MFU figure and its denominator."""

    mfu: float | None
    kind: str | None
    """One of MFU_KINDS; None when there is no figure."""
    chip: str | None
    """The table's chip name (nominal kind), JAX's device kind (measured peak of an
    accelerator the table lacks), or None (CPU, or no figure)."""
    chips: int | None
    """How many chips (devices; processes on CPU) the per-unit peak was multiplied by."""
    peak_flops_per_s: float | None
    """The denominator: the per-unit peak x `chips`."""


NONE = Utilisation(None, None, None, None, None)


def nominal_chip(platform: str, device_kind: str | None) -> Chip | None:
    """The accelerator table's row for these devices; None on CPU and for unknown kinds."""
    return None if platform == "cpu" else lookup(device_kind)


def utilisation(flops_per_s: float | None, platform: str, device_kind: str | None, device_count: int,
                measured_peak: float | None, processes: int = 1) -> Utilisation:
    """The MFU of work running at `flops_per_s` (exact FLOPs, all devices together) on
    `device_count` devices of `platform` ('cpu', 'tpu', 'gpu') and `device_kind` spread over
    `processes` processes. `measured_peak`: the cached matmul peak of one unit (a process on
    CPU, a device elsewhere), only needed when the chip is not in the table; without it such
    work has no figure."""
    if device_count < 1 or processes < 1:
        raise ValueError(f"device_count and processes must be >= 1, got {device_count}, {processes}")
    if not flops_per_s or flops_per_s <= 0:
        return NONE
    chip = nominal_chip(platform, device_kind)
    if chip is not None:
        peak = chip.peak_bf16_flops * device_count
        return Utilisation(flops_per_s / peak, NOMINAL, chip.name, device_count, peak)
    if not measured_peak or measured_peak <= 0:
        return NONE
    cpu = platform == "cpu"
    units = processes if cpu else device_count
    peak = measured_peak * units
    return Utilisation(flops_per_s / peak, MEASURED, None if cpu else device_kind, units, peak)


def devices() -> tuple[str, str, int, int]:
    """(platform, device kind, device count over all processes, process count) of JAX's
    default backend, which is what a run trains on."""
    import jax

    first = jax.devices()[0]
    return first.platform, first.device_kind, jax.device_count(), jax.process_count()

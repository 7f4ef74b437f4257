"""TPU generations for planning: chips per host, peak bf16 FLOP/s and HBM per chip, taken from
the accelerator table `griffin_core.accelerators` (one source of truth for the figures).
Plain Python (the driver plans TPU sweeps without JAX or a TPU).

Pod-type names follow Cloud TPU: for v2, v3, v4 and v5p the number counts TensorCores (two per
chip: v4-16 has 8 chips), for v5e (`v5litepod`) and v6e it counts chips.
"""

from __future__ import annotations

import dataclasses
import re

from griffin_core.accelerators import TPU_GENERATIONS
from griffin_core.config import ConfigError


@dataclasses.dataclass(frozen=True)
class TpuGeneration:
    cores_per_chip: int
    chips_per_host: int
    peak_flops_per_chip: float  # bf16 dense matmul
    hbm_bytes_per_chip: int


GENERATIONS = {
    generation: TpuGeneration(chip.cores_per_chip, chip.chips_per_host, chip.peak_bf16_flops, chip.hbm_bytes)
    for generation, chip in TPU_GENERATIONS.items()
}
"""The Cloud TPU generations a pod type may name (v4, v5p, v5litepod, v6e), from the table."""


@dataclasses.dataclass(frozen=True)
class TpuSlice:
    pod_type: str
    generation: str
    chips: int
    hosts: int
    spec: TpuGeneration


def parse_pod_type(pod_type: str) -> TpuSlice:
    match = re.fullmatch(rf"({'|'.join(map(re.escape, GENERATIONS))})-(\d+)", pod_type or "")
    if not match:
        raise ConfigError(f"launcher.tpu_type={pod_type!r} is not a TPU pod type; expected e.g. "
                          f"v4-16, v5p-32, v5litepod-16, v6e-8 (generations {sorted(GENERATIONS)})")
    generation, count = match.group(1), int(match.group(2))
    spec = GENERATIONS[generation]
    chips = count // spec.cores_per_chip
    if chips < 1 or count % spec.cores_per_chip:
        raise ConfigError(f"launcher.tpu_type={pod_type!r}: {count} is not a whole number of chips")
    if generation in ("v5litepod", "v6e") and chips <= 8:
        # Single-host slices of these generations hold up to 8 chips on one VM (as Ray sees them).
        return TpuSlice(pod_type, generation, chips, 1, dataclasses.replace(spec, chips_per_host=chips))
    return TpuSlice(pod_type, generation, chips, max(1, -(-chips // spec.chips_per_host)), spec)

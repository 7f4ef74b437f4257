"""Expand a sweep's grid with Hydra's own override grammar.

Axes come from the experiment preset (`experiment.sweep: {key: "a,b"}`) and from the command
line (`family=hawk,griffin size=glob(cpu-*) trainer.seed=range(0,3)`); a command-line axis
replaces the preset's axis of the same key. Plain overrides (one value) apply to every point.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Sequence

from experiments.configuration import UsageError, compose, hydra_context, parse_overrides, to_dict


def split_overrides(overrides: Sequence[str]) -> tuple[list[str], dict[str, list[str]]]:
    """(plain overrides, sweep axes {key: [values as override strings]})."""
    plain, axes = [], {}
    with hydra_context():
        for text, override in zip(overrides, parse_overrides(overrides)):
            if not override.is_sweep_override():
                plain.append(text)
                continue
            values = list(override.sweep_string_iterator())
            if not values:
                raise UsageError(f"sweep {text!r} has no values")
            axes[override.get_key_element()] = values
    return plain, axes


@dataclasses.dataclass(frozen=True)
class Grid:
    """A sweep's points: the plain overrides every point shares, the axes, and one override
    list per point (row-major over the axes). `replaced` names the preset's axes the command
    line replaced: {key: (the preset's values, the command line's)}."""

    plain: list[str]
    axes: dict[str, list[str]]
    points: list[list[str]]
    replaced: dict[str, tuple[list[str], list[str]]]


def expand(overrides: Sequence[str]) -> Grid:
    """The grid of the preset's axes merged with the command line's. A command-line override
    of a preset axis's key replaces that axis, whether it gives several values (a new axis) or
    one (the axis is fixed to it)."""
    plain, cli_axes = split_overrides(overrides)
    preset = to_dict(compose(plain))["experiment"]["sweep"] or {}
    cli_keys = {text.split("=", 1)[0].lstrip("+~") for text in plain} | set(cli_axes)
    replaced = {}
    axes: dict[str, list[str]] = {}
    preset_overrides = [f"{k}={v}" for k, v in preset.items() if k not in cli_keys]
    if preset_overrides:
        _, parsed = split_overrides(preset_overrides)
        single = [o for o in preset_overrides if o.split("=", 1)[0] not in parsed]
        plain = single + plain
        axes.update(parsed)
    for key in preset:
        if key in cli_keys:
            _, parsed = split_overrides([f"{key}={preset[key]}"])
            mine = cli_axes.get(key) or [t.split("=", 1)[1] for t in plain if t.split("=", 1)[0].lstrip("+") == key]
            replaced[key] = (parsed.get(key, [str(preset[key])]), mine)
    axes.update(cli_axes)
    keys = list(axes)
    points = [plain + [f"{k}={v}" for k, v in zip(keys, values)]
              for values in itertools.product(*(axes[k] for k in keys))]
    return Grid(plain, axes, points, replaced)

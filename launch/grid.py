"""Expand a sweep's grid with Hydra's own override grammar.

Axes come from the experiment preset (`experiment.sweep: {key: "a,b"}`) and from the command
line (`family=hawk,griffin size=glob(cpu-*) trainer.seed=range(0,3)`); a command-line axis
replaces the preset's axis of the same key. Plain overrides (one value) apply to every point.
"""

from __future__ import annotations

import itertools
from typing import Sequence

from experiments.configuration import UsageError, compose, to_dict


def split_overrides(overrides: Sequence[str]) -> tuple[list[str], dict[str, list[str]]]:
    """(plain overrides, sweep axes {key: [values as override strings]})."""
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    import conf.schema

    conf.schema.register()
    GlobalHydra.instance().clear()
    plain, axes = [], {}
    # Inside the context Hydra's config loader knows the groups' options, which glob() lists.
    with initialize_config_module(config_module="conf", version_base="1.3"):
        parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
        for text in overrides:
            try:
                (override,) = parser.parse_overrides([text])
                if not override.is_sweep_override():
                    plain.append(text)
                    continue
                values = list(override.sweep_string_iterator())
            except HydraException as err:
                raise UsageError(f"cannot parse override {text!r}: {str(err).splitlines()[0]}") from None
            if not values:
                raise UsageError(f"sweep {text!r} has no values")
            axes[override.get_key_element()] = values
    return plain, axes


def expand(overrides: Sequence[str]) -> tuple[list[str], dict[str, list[str]], list[list[str]]]:
    """Plain overrides, the axes (preset's merged with the command line's), and the grid: one
    override list per point, in row-major order of the axes."""
    plain, cli_axes = split_overrides(overrides)
    preset = to_dict(compose(plain))["experiment"]["sweep"] or {}
    axes: dict[str, list[str]] = {}
    preset_overrides = [f"{k}={v}" for k, v in preset.items() if k not in cli_axes]
    if preset_overrides:
        _, parsed = split_overrides(preset_overrides)
        single = [o for o in preset_overrides if o.split("=", 1)[0] not in parsed]
        plain = single + plain
        axes.update(parsed)
    axes.update(cli_axes)
    keys = list(axes)
    grid = [plain + [f"{k}={v}" for k, v in zip(keys, values)] for values in itertools.product(*(axes[k] for k in keys))]
    return plain, axes, grid

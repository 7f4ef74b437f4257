"""`family=...` on griffin-measure's command line: the families a measurement preset measures.

The sweep presets take `family=mamba2` or `family=hawk,mamba2` (a grid axis); the measurement
presets (`train_speed`, `inference`) measure `experiment.measure.families`, so griffin-measure
reads the same `family=` override (one family, a comma list, `glob()`, or `[a,b]`) as that list,
replacing the preset's, and says so. A family it cannot build is one line naming `family`.
"""

from __future__ import annotations

from typing import Any, Sequence

from experiments.configuration import UsageError, compose, hydra_context, parse_overrides, to_dict
from griffin_core.config import FAMILY_PATTERNS

KEY = "experiment.measure.families"


def split_family(overrides: Sequence[str]) -> tuple[list[str], list[str] | None]:
    """(the other overrides, the families `family=` names or None when it is not given)."""
    rest, families = [], None
    with hydra_context():
        parsed = parse_overrides(overrides)
    for text, override in zip(overrides, parsed):
        if override.key_or_group != "family" or override.is_delete() or override.is_add():
            rest.append(text)
            continue
        if override.is_sweep_override():
            values = list(override.sweep_string_iterator())
        else:
            value = override.value()
            values = [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
        if not values:
            raise UsageError(f"{text!r}: family names no family")
        families = values
    if families is not None:
        if any(text.split("=", 1)[0].lstrip("+~") == KEY for text in rest):
            raise UsageError(f"family={','.join(families)} and {KEY} both name the families: give one of them")
        bad = [f for f in families if f not in FAMILY_PATTERNS]
        if bad:
            raise UsageError(f"family={bad[0]}: not a family griffin-measure can build; "
                             f"known: {', '.join(FAMILY_PATTERNS)}")
        if len(set(families)) != len(families):
            raise UsageError(f"family={','.join(families)} repeats a family")
    return rest, families


def compose_measure(overrides: Sequence[str]) -> tuple[dict[str, Any], str | None]:
    """The composed config (a plain dict) of griffin-measure's overrides, with `family=`'s
    families as experiment.measure.families, and the line saying what they replaced (None
    when `family=` is not given)."""
    rest, families = split_family(overrides)
    cfg = to_dict(compose(rest))
    if families is None:
        return cfg, None
    measure = cfg["experiment"]["measure"]
    preset = list(measure["families"])
    measure["families"] = families
    return cfg, (f"axis family: the command line's {','.join(families)} replaces the preset's "
                 f"{','.join(preset)} ({KEY})")

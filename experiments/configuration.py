"""Compose the Hydra configuration (Compose API) with one-line errors.

`@hydra.main` exits with code 1 and a multi-line trace on a bad override; the commands here
compose with the Compose API instead and turn every configuration error into one line naming
the key, with exit code 2 (see `UsageError`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import typing
from typing import Any, Sequence

from griffin_core.config import ConfigError
from griffin_core.data.errors import DataError
from run_store import StoreError, one_line


class UsageError(Exception):
    """A bad command line, config, data or store file: printed as one line, exit code 2."""


def compose(overrides: Sequence[str] = (), config_name: str = "config") -> Any:
    """The composed config (an OmegaConf DictConfig) for `overrides` in Hydra's grammar."""
    from hydra import compose as hydra_compose
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    import conf.schema

    with hydra_context():
        parsed = parse_overrides(overrides)  # one override at a time, so an error can name it
        try:
            cfg = hydra_compose(config_name=config_name, overrides=list(overrides))
        except (HydraException, OmegaConfBaseException) as err:
            raise UsageError(_hydra_message(err, {o.key_or_group for o in parsed if _is_group(o)})) from None
        except (ValueError, TypeError) as err:  # Hydra's own checks of override values
            raise UsageError(f"cannot apply the overrides {list(overrides)}: {one_line(err)}") from None
    # `+key=value` adds keys even where the schema has none: a typo there must not pass silently.
    unknown = unknown_keys(OmegaConf.to_container(cfg, resolve=False), conf.schema.Config)
    if unknown:
        raise UsageError(f"unknown config key {unknown[0]} (not in the schema; see conf/schema.py)")
    return cfg


def unknown_keys(node: Any, schema: type, prefix: str = "") -> list[str]:
    """Dotted keys of `node` (a plain dict) that the dataclass `schema` does not declare.
    Free-form fields (dicts such as experiment.sweep) are not looked into."""
    hints = typing.get_type_hints(schema)
    out = []
    for key, value in (node or {}).items():
        if key not in hints:
            out.append(f"{prefix}{key}")
        elif dataclasses.is_dataclass(hints[key]) and isinstance(value, dict):
            out += unknown_keys(value, hints[key], f"{prefix}{key}.")
    return out


_OPEN_CONTEXTS = 0
"""How many `hydra_context`s are open: inside one, another reuses it."""


@contextlib.contextmanager
def hydra_context():
    """Hydra initialised on the `conf` package (shipped inside the install), schemas registered.

    Re-entrant: inside an open context (e.g. a plan composing each of its grid points) this
    reuses it, with Hydra's cache of the config files, instead of initialising again (about a
    third of a compose's time)."""
    global _OPEN_CONTEXTS
    if _OPEN_CONTEXTS:
        yield
        return
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    import conf.schema

    conf.schema.register()
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="conf", version_base="1.3"):
        _OPEN_CONTEXTS += 1
        try:
            yield
        finally:
            _OPEN_CONTEXTS -= 1


def parse_overrides(overrides: Sequence[str]) -> list:
    """Hydra's Override objects of `overrides` (inside `hydra_context`, so glob() can list a
    group's options). UsageError naming the override for one that does not parse, has no key,
    or gives a config group a value that is not an option name, or a list (Hydra would merge
    the options' configs into one)."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    loader = GlobalHydra.instance().config_loader()
    parser = OverridesParser.create(config_loader=loader)
    parsed = []
    for text in overrides:
        try:
            (override,) = parser.parse_overrides([text])
        except HydraException as err:
            raise UsageError(f"cannot parse override {text!r}: {str(err).splitlines()[0]}") from None
        if not override.key_or_group:
            raise UsageError(f"override {text!r} has no key: write key=value, e.g. size=cpu-50k")
        group = override.key_or_group
        if loader.repository.group_exists(group) and not override.is_delete():
            values = list(override.sweep_iterator()) if override.is_sweep_override() else [override.value()]
            bad = [v for v in _flat(values) if not isinstance(v, str)]
            if bad:
                options = [o for o in loader.get_group_options(group) if not o.endswith("_schema")]
                raise UsageError(f"{group}={bad[0]!r}: {group} is a config group, so its value must be one of "
                                 f"its options: {', '.join(options)}")
            lists = [v for v in values if isinstance(v, (list, tuple))]
            if lists:
                raise UsageError(_group_list_message(text, group, _flat(lists), loader))
        parsed.append(override)
    return parsed


def _is_group(override: Any) -> bool:
    from hydra.core.global_hydra import GlobalHydra

    return GlobalHydra.instance().config_loader().repository.group_exists(override.key_or_group)


def _group_list_message(text: str, group: str, items: list, loader: Any) -> str:
    """The one line for a config group given a list (`family=[hawk,griffin]`)."""
    options = [o for o in loader.get_group_options(group) if not o.endswith("_schema")]
    hint = (f"write {group}={items[0]}" if len(items) == 1 else
            f"to sweep over several: griffin-sweep {group}={','.join(map(str, items))}")
    line = f"{text}: {group} is a config group, so its value is one of its options, not a list ({hint})"
    unknown = [v for v in items if v not in options]
    if unknown:
        line += f"; {group}/{unknown[0]} is not an option either; available: {', '.join(options)}"
    return line


def _flat(values: Any) -> list:
    """The plain items of an override's value (a list's items, nested lists flattened)."""
    if isinstance(values, (list, tuple)):
        return [v for item in values for v in _flat(item)]
    return [values]


def to_dict(cfg: Any) -> dict:
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as err:
        raise UsageError(_hydra_message(err)) from None


def _hydra_message(err: BaseException, groups: set[str] = frozenset()) -> str:
    """Hydra/OmegaConf messages span several lines (hints, search paths); keep one line that
    names the key and, for an unknown group option, the available ones. `groups`: the
    overrides' keys that are config groups (they take one option, never a list)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    head = lines[0] if lines else type(err).__name__
    if "Available options in" in str(err):
        i = next(i for i, line in enumerate(lines) if line.startswith("Available options in"))
        options = []
        for line in lines[i + 1:]:
            if line.startswith("Config search path"):
                break
            if not line.endswith("_schema"):  # the groups' schemas are not options to choose
                options.append(line)
        head = f"{head}; available: {', '.join(options)}"
    elif "requires --multirun" in head:
        head += " (sweep axes belong to griffin-sweep)"
    elif head.startswith("Ambiguous value for argument"):
        key = head.split("'", 2)[1].split("=", 1)[0].lstrip("+~") if head.count("'") >= 2 else ""
        head += (f" (sweep axes belong to griffin-sweep; {key} is a config group: give one of its options)"
                 if key in groups else " (sweep axes belong to griffin-sweep; a list needs key=[a,b])")
    cause = err.__cause__
    if cause is not None:
        cause_lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
        key = next((line[len("full_key:"):].strip() for line in cause_lines if line.startswith("full_key:")), None)
        reason = cause_lines[0] if cause_lines else type(cause).__name__
        head = f"{head.rstrip('.')}: {reason}" + (f" (key {key})" if key and key not in reason else "")
    return head


USER_ERRORS = (UsageError, ConfigError, DataError, StoreError)

"""Compose the Hydra configuration (Compose API) with one-line errors.

`@hydra.main` exits with code 1 and a multi-line trace on a bad override; the commands here
compose with the Compose API instead and turn every configuration error into one line naming
the key, with exit code 2 (see `UsageError`).
"""

from __future__ import annotations

from typing import Any, Sequence

from griffin_core.config import ConfigError
from griffin_core.data.errors import DataError
from run_store import StoreError, one_line


class UsageError(Exception):
    """A bad command line, config, data or store file: printed as one line, exit code 2."""


def compose(overrides: Sequence[str] = (), config_name: str = "config") -> Any:
    """The composed config (an OmegaConf DictConfig) for `overrides` in Hydra's grammar."""
    from hydra import compose as hydra_compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    import conf.schema

    conf.schema.register()
    GlobalHydra.instance().clear()
    for override in overrides:  # parse one at a time, so an error can name the override
        try:
            _parse_override(override)
        except OverrideParseException as err:
            raise UsageError(f"cannot parse override {override!r}: {str(err).splitlines()[0]}") from None
    try:
        with initialize_config_module(config_module="conf", version_base="1.3"):
            return hydra_compose(config_name=config_name, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as err:
        raise UsageError(_hydra_message(err)) from None


def _parse_override(override: str) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    OverridesParser.create().parse_overrides([override])


def to_dict(cfg: Any) -> dict:
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as err:
        raise UsageError(_hydra_message(err)) from None


def _hydra_message(err: BaseException) -> str:
    """Hydra/OmegaConf messages span several lines (hints, search paths); keep one line that
    names the key and, for an unknown group option, the available ones."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    head = lines[0] if lines else type(err).__name__
    if "Available options in" in str(err):
        i = next(i for i, line in enumerate(lines) if line.startswith("Available options in"))
        options = []
        for line in lines[i + 1:]:
            if line.startswith("Config search path"):
                break
            options.append(line)
        head = f"{head}; available: {', '.join(options)}"
    elif head.startswith("Ambiguous value for argument"):
        head += " (sweep axes belong to griffin-sweep; a list needs key=[a,b])"
    cause = err.__cause__
    if cause is not None:
        cause_lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
        key = next((line[len("full_key:"):].strip() for line in cause_lines if line.startswith("full_key:")), None)
        reason = cause_lines[0] if cause_lines else type(cause).__name__
        head = f"{head.rstrip('.')}: {reason}" + (f" (key {key})" if key and key not in reason else "")
    return head


USER_ERRORS = (UsageError, ConfigError, DataError, StoreError)

"""Compose the Hydra configuration (Compose API) with one-line errors.

`@hydra.main` exits with code 1 and a multi-line trace on a bad override; the commands here
compose with the Compose API instead and turn every configuration error into one line naming
the key, with exit code 2 (see `UsageError`).
"""

from __future__ import annotations

from typing import Any, Sequence

from griffin_core.config import ConfigError
from griffin_core.data.errors import DataError
from griffin_core.run_store import StoreError


class UsageError(Exception):
    """A bad command line, config, data or store file: printed as one line, exit code 2."""


def one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


def compose(overrides: Sequence[str] = (), config_name: str = "config") -> Any:
    """The composed config (an OmegaConf DictConfig) for `overrides` in Hydra's grammar."""
    from hydra import compose as hydra_compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    import conf.schema

    conf.schema.register()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module="conf", version_base="1.3"):
            return hydra_compose(config_name=config_name, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as err:
        raise UsageError(_hydra_message(err)) from None


def to_dict(cfg: Any) -> dict:
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as err:
        raise UsageError(_hydra_message(err)) from None


def _hydra_message(err: BaseException) -> str:
    """Hydra/OmegaConf messages span several lines (full key, object type, hints); keep the
    first sentence and the key."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    key = next((line for line in lines if line.startswith("full_key:")), None)
    head = lines[0] if lines else type(err).__name__
    if err.__cause__ is not None and "Error merging override" in head:
        head = f"{head}: {one_line(err.__cause__).split(' full_key:')[0]}"
    return f"{head} ({key})" if key and key not in head else head


USER_ERRORS = (UsageError, ConfigError, DataError, StoreError)

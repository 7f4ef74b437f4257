"""From a composed config to a validated `RunSpec`: everything a run needs, resolved, in plain
Python (the sweep driver builds one per grid point without importing JAX).

`validate(cfg)` is the one place for cross-field rules; it raises `ConfigError` naming the key,
before anything is written.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

from conf.launcher_fields import check_launcher
from griffin_core import counting
from griffin_core.budget import BudgetSpec, Schedule, make_schedule
from griffin_core.config import FAMILY_FIELDS, NUMERICS_FIELDS, ConfigError, ModelConfig
from griffin_core.data.manifest import ID_LIMITS, find_manifest
from griffin_core.data.tokenizer import load_tokenizer
from griffin_core.optim_config import ADAMW_FIELDS
from griffin_core.parallelism import check_settings
from griffin_core.sizes import SizeSpec, model_config

TEXT_SOURCES = ("embedded", "text", "tokens", "hf")
TASK_SOURCES = ("selective_copy", "induction_heads")
TASK_VOCAB = 16
BYTE_VOCAB = 256
WANDB_MODES = ("auto", "online", "offline", "disabled")
WORKER_MALLOC = ("no_trim", "default")


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One fully resolved run."""

    family: str
    size: str
    model: ModelConfig
    row: SizeSpec
    data: Mapping[str, Any]
    optim: Mapping[str, Any]
    budget: BudgetSpec
    schedule: Schedule
    seed: int
    trainer: Mapping[str, Any]
    config: Mapping[str, Any]
    """The whole resolved config (written to config.yaml and W&B)."""

    def semantic(self) -> dict[str, Any]:
        """What determines the run's results (hashed into its id): never paths, logging,
        launcher or evaluation cadence. (A tokenizer file enters through the data's
        fingerprint, by its hash.)"""
        data = {k: v for k, v in self.data.items() if k not in ("path", "tokenizer")}
        model = self.model.identity()
        return {"model": model, "data": data, "optim": dict(self.optim),
                "budget": dataclasses.asdict(self.budget) | {"label": None},
                "schedule": dataclasses.asdict(self.schedule), "seed": self.seed,
                "spike": {k: self.trainer[k] for k in ("spike_factor", "spike_window", "spike_warmup")}}

    @property
    def budget_label(self) -> str:
        return self.budget.default_label()

    def params(self) -> counting.ParamCount:
        return counting.count_params(self.model)

    def flops(self) -> dict[str, float]:
        return counting.all_training_flops(self.model, self.schedule.seq_len, self.schedule.tokens)


def _positive(section: Mapping[str, Any], key: str, prefix: str, allow_zero: bool = False) -> None:
    value = section[key]
    _finite(section, key, prefix)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise ConfigError(f"{prefix}.{key}={value!r} must be {'non-negative' if allow_zero else 'positive'}")


def _finite(section: Mapping[str, Any], key: str, prefix: str) -> None:
    """ConfigError for an infinite number (nan fails the range checks that follow)."""
    value = section[key]
    if isinstance(value, float) and math.isinf(value):
        raise ConfigError(f"{prefix}.{key}={value!r} must be finite")


def vocab_size(data: Mapping[str, Any]) -> int:
    """The model's vocabulary: the task's, data.vocab_size or the token manifest's for token
    files, the tokenizer's for text (256 for bytes). Reads a manifest or tokenizer file, no data."""
    if data["source"] in TASK_SOURCES:
        return TASK_VOCAB
    if data["source"] == "tokens":
        manifest = find_manifest(data["path"]) if data.get("path") else None
        if not data.get("vocab_size") and manifest is None:
            raise ConfigError("data.vocab_size must be given for a 'tokens' source without a manifest "
                              "(griffin-data manifest writes one)")
        vocab = int(data.get("vocab_size") or manifest.vocab_size)
        dtype = manifest.dtype if manifest else data["token_dtype"]
        if dtype not in ID_LIMITS:
            raise ConfigError(f"data.token_dtype={dtype!r} is unknown; known: {sorted(ID_LIMITS)}")
        if vocab > ID_LIMITS[dtype]:
            where = f"the {dtype} tokens of {manifest.path}" if manifest else f"data.token_dtype={dtype!r}"
            raise ConfigError(f"data.vocab_size={vocab} does not fit {where} (at most {ID_LIMITS[dtype]:,} ids)")
        return vocab
    return load_tokenizer(data.get("tokenizer")).vocab_size


def validate(cfg: Mapping[str, Any]) -> RunSpec:
    """Check every cross-field rule and resolve the run. cfg: the composed config as plain dict."""
    family, size, model_over = cfg["family"], cfg["size"], cfg["model"]
    data, optim, trainer = cfg["data"], cfg["optim"], cfg["trainer"]
    check_launcher(cfg["launcher"])  # griffin-train reads its heartbeat and lease settings too
    if data["source"] not in TEXT_SOURCES + TASK_SOURCES:
        raise ConfigError(f"data.source={data['source']!r} is unknown; known sources: {list(TEXT_SOURCES + TASK_SOURCES)}")
    if data["source"] in ("text", "tokens") and not data.get("path"):
        raise ConfigError(f"data.path must be given for a {data['source']!r} source")
    if data.get("tokenizer") and data["source"] not in ("embedded", "text", "hf"):
        raise ConfigError(f"data.tokenizer applies to embedded, text and hf sources, not {data['source']!r} "
                          f"(a token file's manifest names its tokenizer)")
    for key in ("seq_len", "eval_sequences", "position_eval_factor", "position_eval_docs"):
        _positive(data, key, "data")
    for key in ("lr_ref", "width_ref", "beta1", "beta2", "eps", "min_lr_ratio", "lr_multiplier"):
        _positive(optim, key, "optim")
    if optim["lr"] is not None:
        _positive(optim, "lr", "optim")
    _finite(optim, "lr_exponent", "optim")
    if optim["lr_exponent"] != optim["lr_exponent"]:
        raise ConfigError(f"optim.lr_exponent={optim['lr_exponent']!r} must be a number")
    for key in ("weight_decay", "warmup_fraction", "warmup_min_steps", "clip_norm"):
        _positive(optim, key, "optim", allow_zero=True)
    if not (optim["beta1"] < 1 and optim["beta2"] < 1):
        raise ConfigError(f"optim.beta1/beta2=({optim['beta1']}, {optim['beta2']}) must be below 1")
    if optim["name"] != "adamw":
        raise ConfigError(f"optim.name={optim['name']!r} is unknown; known: ['adamw']")
    if trainer["batch_size"] is not None:
        _positive(trainer, "batch_size", "trainer")
    for key in ("min_steps", "max_batch_tokens", "spike_factor", "spike_window", "microbatches"):
        _positive(trainer, key, "trainer")
    for key in ("eval_every", "checkpoint_every", "spike_warmup", "seed"):
        _positive(trainer, key, "trainer", allow_zero=True)
    if cfg["launcher"]["malloc"] not in WORKER_MALLOC:
        raise ConfigError(f"launcher.malloc={cfg['launcher']['malloc']!r} is unknown; known: {list(WORKER_MALLOC)}")
    if cfg["logger"]["wandb"]["mode"] not in WANDB_MODES:
        raise ConfigError(f"logger.wandb.mode={cfg['logger']['wandb']['mode']!r} is unknown; known: {list(WANDB_MODES)}")

    row = SizeSpec(**size)
    if model_over.get("local_window") is not None:
        _positive(model_over, "local_window", "model")
    window = model_over.get("local_window") or row.local_window
    model = model_config(
        family["name"], row, vocab_size(data), local_window=window,
        **{k: tuple(family[k]) if k == "block_pattern" else family[k] for k in FAMILY_FIELDS},
        **{k: model_over[k] for k in NUMERICS_FIELDS})
    b = trainer["budget"]
    budget = BudgetSpec(rule=b["rule"], value=float(b["value"]), flop_convention=b["flop_convention"], label=b["label"])
    schedule = make_schedule(
        budget, model, row, data["seq_len"], batch_size=trainer["batch_size"], min_steps=trainer["min_steps"],
        max_batch_tokens=trainer["max_batch_tokens"], lr=optim["lr"], lr_multiplier=optim["lr_multiplier"],
        lr_ref=optim["lr_ref"],
        width_ref=optim["width_ref"], lr_exponent=optim["lr_exponent"],
        warmup_fraction=optim["warmup_fraction"], warmup_min_steps=optim["warmup_min_steps"])
    if not math.isfinite(schedule.lr):  # each factor finite, their product not
        raise ConfigError(f"optim.lr_multiplier={optim['lr_multiplier']!r} gives the learning rate {schedule.lr!r}")
    check_settings(trainer["strategy"], trainer["mesh"], trainer["axis_rules"], model)
    if schedule.batch_size % trainer["microbatches"]:
        raise ConfigError(f"trainer.microbatches={trainer['microbatches']} must divide the batch size {schedule.batch_size}")
    resolved_optim = {k: optim[k] for k in ADAMW_FIELDS}
    resolved_optim |= {"lr": schedule.lr, "warmup_steps": schedule.warmup_steps}
    return RunSpec(family=family["name"], size=row.name, model=model, row=row, data=dict(data),
                   optim=resolved_optim, budget=budget, schedule=schedule, seed=int(trainer["seed"]),
                   trainer=dict(trainer), config=dict(cfg))

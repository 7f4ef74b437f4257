"""Fig 3: training step time against sequence length at a fixed number of tokens per step.

For every size row and family, one jitted training step (forward, backward, AdamW, the state
donated as in training: `experiments.benchmarks.step_runner.StepRunner`) is compiled per length
with batch = tokens_per_batch / length, warmed up, and calibrated to run enough steps per timed
call to last `min_call_seconds`. Then all the lengths and families of one size are timed
together in `repeats` rounds, each round in a shuffled order (`time_interleaved`), so that the
drift of a shared machine hits every point alike. A point's ratio is its step time over the
reference's (MQA at the shortest length, or the first family's if MQA is not measured) within
the same round; the median over rounds is reported with its range.

Beside the measured ratio each row carries the ratio predicted by FLOPs
(griffin_core.counting): 'exact' (what an ideal implementation computes; causal attention
counted once per kept logit) and 'as_executed' (what this implementation computes; global
attention evaluates the full T x T logits). Global attention's share of the FLOPs grows as
T / D, so models as narrow as the CPU ladder are far more attention-bound at a given length
than the paper's 400M-7B models (D = 1536-4096); docs/benchmarks.md compares the two regimes.

Points whose estimated training memory (counting.memory_per_device) exceeds
`memory_limit_gb` are skipped and listed, so a preset cannot exhaust a laptop's memory.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, Sequence

from statistics import median
from griffin_core import counting
from griffin_core.config import FAMILY_PATTERNS, ConfigError, ModelConfig
from griffin_core.sizes import get_size, model_config

MODEL_KEYS = ("scan_impl", "scan_unroll", "attention_block_size")
"""Fields of the composed config's `model` group that the measured models take (implementation
choices); the architecture comes from the size row and the measure settings."""
PAPER_CLAIMS = {
    "mqa_400M_ratio": {"4K": 1.17, "8K": 1.46},
    "griffin_ratio_range": [0.93, 1.01],
    "text": "MQA slows with length (400M: 1.17x at 4K, 1.46x at 8K, relative to MQA at 2K); "
            "Griffin stays about flat (0.93x-1.01x).",
}


# --------------------------------------------------------------------------- shared helpers


def measured_config(family: str, size: str, vocab_size: int, dtype: str, local_window: int | None,
                    model: Mapping[str, Any] | None = None) -> ModelConfig:
    """The `family` model at size row `size` as measured: the row's shape, `local_window` (None:
    the row's), `dtype` for computation, and the implementation choices of the config's `model`
    group (scan_impl, scan_unroll, attention_block_size)."""
    overrides: dict[str, Any] = {k: model[k] for k in MODEL_KEYS if model and model.get(k) is not None}
    if local_window is not None:
        overrides["local_window"] = int(local_window)
    return model_config(family, size, vocab_size, dtype=dtype, **overrides)


def check_names(key: str, values: Sequence[str], known: Sequence[str] | None = None) -> tuple[str, ...]:
    """A non-empty list of distinct names (from `known` if given), or ConfigError naming the key."""
    values = tuple(str(v) for v in values or ())
    if not values:
        raise ConfigError(f"experiment.measure.{key} is empty: give at least one value")
    if len(set(values)) != len(values):
        raise ConfigError(f"experiment.measure.{key}={list(values)} repeats a value")
    if known is not None:
        bad = [v for v in values if v not in known]
        if bad:
            raise ConfigError(f"experiment.measure.{key}={list(values)}: {bad} unknown; known: {list(known)}")
    return values


def check_ints(key: str, values: Sequence[int], minimum: int = 1) -> tuple[int, ...]:
    """A non-empty list of distinct integers >= minimum, sorted, or ConfigError naming the key."""
    if not values:
        raise ConfigError(f"experiment.measure.{key} is empty: give at least one value")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise ConfigError(f"experiment.measure.{key}={list(values)}: every value must be an integer >= {minimum}")
        out.append(v)
    if len(set(out)) != len(out):
        raise ConfigError(f"experiment.measure.{key}={list(values)} repeats a value")
    return tuple(sorted(out))


def check_positive(key: str, value: float, integer: bool = False) -> None:
    if isinstance(value, bool) or (integer and not isinstance(value, int)) or not value > 0:
        kind = "a positive integer" if integer else "a positive number"
        raise ConfigError(f"experiment.measure.{key}={value!r} must be {kind}")


# --------------------------------------------------------------------------- settings


def check_common_settings(settings: Any) -> None:
    """The fields every measurement's settings share (sizes, families, repeats, vocab_size,
    local_window, memory_limit_gb, model), checked and normalised in place on a frozen
    dataclass; a bad one is a ConfigError naming its experiment.measure key."""
    object.__setattr__(settings, "sizes", check_names("sizes", settings.sizes))
    for size in settings.sizes:
        get_size(size)  # ConfigError naming the known sizes
    object.__setattr__(settings, "families", check_names("families", settings.families, list(FAMILY_PATTERNS)))
    check_positive("repeats", settings.repeats, integer=True)
    check_positive("vocab_size", settings.vocab_size, integer=True)
    if settings.local_window is not None:
        check_positive("local_window", settings.local_window, integer=True)
    check_positive("memory_limit_gb", settings.memory_limit_gb)
    object.__setattr__(settings, "model", {k: settings.model[k] for k in MODEL_KEYS if k in settings.model})


@dataclasses.dataclass(frozen=True)
class TrainSpeedSettings:
    """What `run_train_speed` measures (from `experiment.measure`, see conf/schema.py)."""

    sizes: tuple[str, ...]
    families: tuple[str, ...]
    lengths: tuple[int, ...]
    tokens_per_batch: int
    vocab_size: int = 256
    dtype: str = "float32"
    local_window: int | None = None
    repeats: int = 3
    seed: int = 0
    min_call_seconds: float = 0.25
    memory_limit_gb: float = 12.0
    model: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        check_common_settings(self)
        object.__setattr__(self, "lengths", check_ints("lengths", self.lengths))
        check_positive("tokens_per_batch", self.tokens_per_batch, integer=True)
        bad = [t for t in self.lengths if self.tokens_per_batch % t]
        if bad:
            raise ConfigError(f"experiment.measure.tokens_per_batch={self.tokens_per_batch} is not a multiple of "
                              f"lengths {bad}: the tokens per step must be the same at every length")
        if self.min_call_seconds < 0:
            raise ConfigError(f"experiment.measure.min_call_seconds={self.min_call_seconds} must be >= 0")
        self.points()  # builds every ModelConfig: a bad dtype or window fails here, naming the field

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "TrainSpeedSettings":
        """From the composed config (a plain dict): `experiment.measure` and the `model` group."""
        m = cfg["experiment"]["measure"]
        return cls(sizes=tuple(m["sizes"]), families=tuple(m["families"]), lengths=tuple(m["lengths"]),
                   tokens_per_batch=m["tokens_per_batch"], vocab_size=m["vocab_size"], dtype=m["dtype"],
                   local_window=m["local_window"], repeats=m["repeats"], seed=m["seed"],
                   min_call_seconds=float(m["min_call_seconds"]),
                   memory_limit_gb=float(m["memory_limit_gb"]),
                   model=dict(cfg.get("model") or {}))

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for k in ("sizes", "families", "lengths"):
            out[k] = list(out[k])
        out["model"] = dict(self.model)
        return out

    def points(self, size: str | None = None) -> list["Point"]:
        """Every (size, length, family) point, sizes outermost, families innermost."""
        out = []
        for s in (size,) if size else self.sizes:
            for length in self.lengths:
                for family in self.families:
                    cfg = measured_config(family, s, self.vocab_size, self.dtype, self.local_window, self.model)
                    out.append(Point(s, family, length, self.tokens_per_batch // length, cfg))
        return out


@dataclasses.dataclass(frozen=True)
class Point:
    size: str
    family: str
    length: int
    batch: int
    cfg: ModelConfig

    @property
    def key(self) -> str:
        return f"{self.size}/{self.family}/{self.length}"

    @property
    def memory_gb(self) -> float:
        return counting.memory_per_device(self.cfg, self.batch, self.length)["total"] / 1e9

    def flops_per_step(self, convention: str) -> float:
        return counting.training_flops_per_token(self.cfg, self.length, convention) * self.batch * self.length


def reference(points: Sequence[Point], families: Sequence[str]) -> Point | None:
    """MQA at the shortest length (else the first family's shortest point)."""
    family = "mqa" if "mqa" in families else families[0]
    candidates = [p for p in points if p.family == family]
    return min(candidates, key=lambda p: p.length) if candidates else None


def plan(settings: TrainSpeedSettings) -> dict[str, Any]:
    """The points with their batch, parameters, FLOPs and memory estimate, and those that would be
    skipped for memory (no JAX)."""
    rows, skipped = [], []
    for size in settings.sizes:
        points = settings.points(size)
        runnable = [p for p in points if p.memory_gb <= settings.memory_limit_gb]
        ref = reference(runnable, settings.families)
        for p in points:
            row = _static_row(p, ref)
            (rows if p in runnable else skipped).append(row)
    for row in skipped:
        row["reason"] = (f"estimated training memory {row['memory_estimate_gb']:.1f} GB > "
                         f"memory_limit_gb={settings.memory_limit_gb:g}")
    return {"rows": rows, "skipped": skipped}


def _static_row(p: Point, ref: Point | None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "size": p.size, "family": p.family, "length": p.length, "batch": p.batch,
        "tokens_per_step": p.batch * p.length, "params": counting.count_params(p.cfg).total,
        "local_window": p.cfg.local_window if "local_attention" in p.cfg.block_types else None,
        "memory_estimate_gb": p.memory_gb,
        "flops_per_step_exact": p.flops_per_step("exact"),
        "flops_per_step_as_executed": p.flops_per_step("as_executed"),
        "reference": ref.key if ref else None,
    }
    for conv in ("exact", "as_executed"):
        row[f"flop_ratio_{conv}"] = p.flops_per_step(conv) / ref.flops_per_step(conv) if ref else None
    return row


# --------------------------------------------------------------------------- measurement


def run_train_speed(settings: TrainSpeedSettings, progress: Callable[[str], None] = lambda s: None
                    ) -> dict[str, Any]:
    """Compile, warm up and time every point (one size at a time); return the JSON-ready table."""
    from experiments.benchmarks import time_interleaved
    from experiments.benchmarks.step_runner import StepRunner

    planned = plan(settings)
    skipped = planned["skipped"]
    skipped_keys = {(r["size"], r["family"], r["length"]) for r in skipped}
    rows: list[dict[str, Any]] = []
    for size in settings.sizes:
        points = [p for p in settings.points(size) if (p.size, p.family, p.length) not in skipped_keys]
        if not points:
            continue
        ref = reference(points, settings.families)
        runners: dict[str, Any] = {}
        for p in points:
            progress(f"compiling {p.key} (batch {p.batch}, est. {p.memory_gb:.2f} GB)")
            runner = StepRunner(p.cfg, p.batch, p.length, settings.seed)
            runner.calibrate(settings.min_call_seconds)
            runners[p.key] = runner
        progress(f"timing {size}: {len(runners)} points x {settings.repeats} rounds")
        rounds = time_interleaved(runners, settings.repeats, settings.seed)
        step_s = {k: [t / runners[k].steps for t in rounds.seconds[k]] for k in runners}
        for p in points:
            r = runners[p.key]
            s = step_s[p.key]
            ratios = [a / b for a, b in zip(s, step_s[ref.key])]
            med = median(s)
            rows.append({
                **_static_row(p, ref),
                "step_ms": 1e3 * med, "best_step_ms": 1e3 * min(s), "step_ms_rounds": [1e3 * t for t in s],
                "steps_per_call": r.steps, "compile_s": r.compile_s,
                "tokens_per_s": p.batch * p.length / med,
                "ratio": median(ratios), "ratio_range": [min(ratios), max(ratios)], "ratio_rounds": ratios,
                "page_faults_per_step": median(rounds.page_faults[p.key]) / r.steps,
                "loss_first": r.first_loss, "loss_last": r.losses[-1],
            })
            if not (math.isfinite(r.first_loss) and math.isfinite(r.losses[-1])):
                rows[-1]["note"] = "non-finite loss"
        del runners
    return {"reference": "MQA at the shortest length, same size and round" if "mqa" in settings.families
            else f"{settings.families[0]} at the shortest length, same size and round",
            "rows": rows, "skipped": skipped, "paper": PAPER_CLAIMS}


def format_table(result: Mapping[str, Any]) -> str:
    """A plain-text table of the rows (for the terminal and docs/benchmarks.md)."""
    head = "| size | family | T | batch | step ms | tokens/s | ratio (range) | FLOP ratio exact / as-executed |"
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['size']} | {r['family']} | {r['length']} | {r['batch']} | {r['step_ms']:.0f} | "
                     f"{r['tokens_per_s']:,.0f} | {r['ratio']:.2f} ({r['ratio_range'][0]:.2f}-"
                     f"{r['ratio_range'][1]:.2f}) | {r['flop_ratio_exact']:.2f} / {r['flop_ratio_as_executed']:.2f} |")
    for r in result.get("skipped", []):
        lines.append(f"| {r['size']} | {r['family']} | {r['length']} | {r['batch']} | skipped: {r['reason']} | | | |")
    return "\n".join(lines)

"""Structured-config schemas: one dataclass per config group, registered in Hydra's ConfigStore.

Sizes and families are registered from griffin_core's tables, and the family, size, model and
optimiser schemas are derived from griffin_core's dataclasses (`derived`), where their fields
are documented: one source of truth. YAML files under conf/ add presets (data, optim, trainer,
logger, launcher, experiment). The other groups' fields are documented here; cross-field rules
live in `experiments.spec.validate`.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any, Dict, Optional, Sequence

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from griffin_core.config import (
    DEFAULT_MLP_EXPANSION, FAMILY_FIELDS, FAMILY_MLP_EXPANSION, FAMILY_PATTERNS, NUMERICS_FIELDS, ModelConfig,
)
from griffin_core.optim_config import OptimSettings
from griffin_core.sizes import ALL_SIZES, SizeSpec


def derived(name: str, source: type, fields: Sequence[str], doc: str,
            extra: Sequence[tuple[str, Any, Any]] = (), required: Sequence[str] = ()) -> type:
    """A schema dataclass whose `fields` take their types and defaults from the griffin_core
    dataclass `source`, where they are documented: one source of truth, this one derived.
    Tuples become lists (Hydra's), fields without a default (or named in `required`) become
    MISSING; `extra` adds (name, type, default) fields of the schema's own."""
    hints = typing.get_type_hints(source)
    defaults = {f.name: f for f in dataclasses.fields(source)}
    spec = []
    for field in (*fields, *required):
        if field in (s[0] for s in spec):
            continue
        kind, default = _hydra_type(hints[field]), defaults[field].default
        if field in required or default is dataclasses.MISSING:
            spec.append((field, kind, dataclasses.field(default=MISSING)))
        elif isinstance(default, (tuple, list)):
            spec.append((field, kind, dataclasses.field(default_factory=lambda d=default: list(d))))
        else:
            spec.append((field, kind, dataclasses.field(default=default)))
    own = [(n, t, dataclasses.field(default=d)) for n, t, d in extra]
    schema = dataclasses.make_dataclass(name, [*own, *spec],
                                        namespace={"__doc__": f"{doc} Fields: {source.__module__}.{source.__name__}."})
    schema.__module__ = __name__
    return schema


def _hydra_type(kind: Any) -> Any:
    """The annotation Hydra's structured configs accept for a griffin_core field type."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (types.UnionType, typing.Union) and type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        return Optional[_hydra_type(inner)]
    if origin in (tuple, list):
        return list[args[0]]
    return kind


FamilyConf = derived("FamilyConf", ModelConfig, FAMILY_FIELDS, "A family: its temporal block pattern and options.",
                     extra=[("name", str, MISSING)], required=("block_pattern",))
SizeConf = derived("SizeConf", SizeSpec, [f.name for f in dataclasses.fields(SizeSpec)],
                   "A size row, shared by the families.")
ModelConf = derived("ModelConf", ModelConfig, NUMERICS_FIELDS,
                    "Numerics of the network built from family + size, and a window override.",
                    extra=[("local_window", Optional[int], None)])
"""`local_window` (None: the size row's) overrides the row's Griffin window, e.g. 128 for
length-256 CPU studies."""
OptimConf = derived("OptimConf", OptimSettings, [f.name for f in dataclasses.fields(OptimSettings)],
                    "The optimiser.")


@dataclasses.dataclass
class DataConf:
    source: str = "embedded"
    """embedded | text | tokens | hf | selective_copy | induction_heads."""
    path: Optional[str] = None
    """File or folder for 'text'; for 'tokens' a .bin file, or a folder with train.bin and val.bin
    or with token shards and their manifest.json (griffin-data prepare)."""
    vocab_size: Optional[int] = None
    """Vocabulary of a 'tokens' source (default: its manifest's; tokenizers and tasks set their own)."""
    token_dtype: str = "uint16"
    """Element type of a 'tokens' file without a manifest: uint16 (nanoGPT), or uint32 for
    vocabularies over 65,536 (a manifest states its own)."""
    tokenizer: Optional[str] = None
    """Tokenizer of embedded, text and hf sources: None or 'bytes' (UTF-8 bytes), or the path of
    a SentencePiece model (.model) or Hugging Face tokenizers file (.json); its sha256 enters
    the data fingerprint. Token files name theirs in their manifest."""
    hf_dataset: Optional[str] = None
    """Hugging Face dataset for 'hf': a local dataset folder (read offline), or `hf://NAME` for
    one on the Hub (the only form that uses the network; needs the `datasets` package)."""
    hf_split: str = "train"
    """Split of the Hugging Face dataset."""
    hf_text_field: str = "text"
    """Text column of the Hugging Face dataset."""
    seq_len: int = 256
    """Training sequence length T."""
    eval_sequences: int = 64
    """Held-out packed sequences per evaluation."""
    position_eval_factor: int = 4
    """Loss by position is measured on unpacked documents of factor x seq_len tokens."""
    position_eval_docs: int = 16
    """How many such documents (fewer if the held-out split has fewer)."""
    task_num_data_tokens: int = 16
    """Selective copying: data tokens to copy."""
    task_eval_lengths: list[int] = dataclasses.field(default_factory=list)
    """Induction heads: evaluation lengths beyond the training length."""


@dataclasses.dataclass
class BudgetConf:
    rule: str = "row_tokens_per_param"
    """row_tokens_per_param: tokens = value x the size row's Hawk non-embedding count, shared by
    the families (the paper's rule); tokens_per_param: value x this model's own count (total);
    paper_tokens: the row's published token count; tokens: value tokens; flops: value FLOPs
    under `flop_convention`; steps: value optimiser steps."""
    value: float = 20.0
    """The rule's number."""
    flop_convention: str = "exact"
    """Convention of a FLOP budget: 6N | 6N_nonembed | exact | as_executed."""
    label: Optional[str] = None
    """Short label in run ids (default derived, e.g. '20tpr')."""


@dataclasses.dataclass
class MeshConf:
    """Sizes of the mesh axes: a size, -1 (this axis takes the devices the others leave), or
    null (1, except the strategy's own axis, which fills when no axis is -1: data for dp,
    fsdp for fsdp and fsdp_tp)."""

    data: Optional[int] = None
    fsdp: Optional[int] = None
    tensor: Optional[int] = None


@dataclasses.dataclass
class TrainerConf:
    budget: BudgetConf = dataclasses.field(default_factory=BudgetConf)
    """How many tokens the run trains on; the step count follows."""
    batch_size: Optional[int] = None
    """Sequences per step; None = the per-size rule (see docs/training.md)."""
    min_steps: int = 300
    """Batch rule: the largest power-of-two batch that still gives at least this many steps."""
    max_batch_tokens: int = 1_048_576
    """Batch rule: upper bound on tokens per step."""
    microbatches: int = 1
    """Gradient accumulation: each step runs the batch in this many slices (same result,
    1/microbatches of the activation memory)."""
    seed: int = 0
    """Initialisation and data order."""
    eval_every: int = 100
    """Held-out evaluation every k steps (and always at the end); 0 = only at the end."""
    checkpoint_every: int = 200
    """Orbax checkpoint every N steps (and always at the end); 0 = only at the end."""
    spike_factor: float = 3.0
    """A loss above spike_factor x the running median of recent steps marks the run DIVERGED."""
    spike_window: int = 50
    """Steps in the running median."""
    spike_warmup: int = 100
    """No spike detection before this step (early losses fall fast)."""
    strategy: str = "dp"
    """Parallelism: dp (replicated parameters), fsdp (ZeRO-3: parameters, gradients and
    optimiser state sharded), fsdp_tp (fsdp plus the paper's tensor parallelism); see
    griffin_core/parallelism.py and docs/training.md, "Parallelism"."""
    mesh: MeshConf = dataclasses.field(default_factory=lambda: MeshConf())
    """Device mesh sizes; their product is the device count."""
    axis_rules: Dict[str, Any] = dataclasses.field(default_factory=dict)
    """Logical axis -> mesh axis (or list, or null to replicate), ahead of the strategy's rules."""
    progress: bool = True
    """Show a progress bar (workers in sweeps turn it off)."""


@dataclasses.dataclass
class WandbConf:
    mode: str = "auto"
    """auto (online if a key and the network are there, else offline) | online | offline | disabled."""
    project: str = "griffin-scaling"
    """W&B project."""
    entity: Optional[str] = None
    """W&B entity (team or user); None = the key's default."""
    dir: Optional[str] = None
    """Where W&B writes its run folders; None = <store root>/wandb."""


@dataclasses.dataclass
class LoggerConf:
    wandb: WandbConf = dataclasses.field(default_factory=WandbConf)
    """Weights & Biases settings."""


@dataclasses.dataclass
class LauncherConf:
    kind: str = "local"
    """local (embedded Ray) | cluster (ray.address) | tpu (slices by resource)."""
    ray_address: Optional[str] = None
    """Existing Ray cluster address for 'cluster' and 'tpu'."""
    cpus_per_run: int = 1
    """CPU runs: cores pinned per run (affinity and XLA thread count)."""
    gpus_per_run: int = 0
    """GPUs per run."""
    reuse_workers: bool = True
    """CPU-only runs: a worker process trains several runs in turn, keeping its imports and
    warm caches (each run re-pins every thread to its own cores). False = a fresh process per
    run. GPU and TPU runs always get a fresh process, which releases the devices."""
    tpu_type: Optional[str] = None
    """TPU pod type, e.g. v4-16 (reserves the slice via TPU-<type>-head)."""
    max_parallel: int = 0
    """Runs at once (0 = as resources allow)."""
    preemption_retries: int = 1000
    """Retries after a preemption or node loss."""
    failure_retries: int = 2
    """Retries after a real error."""
    assumed_mfu: float = 0.4
    """TPU plans: chip-hours are computed at this model-FLOPs utilisation."""
    lease_timeout_s: float = 90.0
    """A run whose owner has not heartbeaten for this long may be taken over."""
    heartbeat_s: float = 30.0
    """How often a running run's owner refreshes its lease."""
    poll_s: float = 5.0
    """How often the driver rechecks a run held by another driver."""
    compile_cache: Optional[str] = None
    """Persistent JAX compilation cache shared by the runs; None = <store root>/jax-cache."""
    ship_code: bool = False
    """cluster/tpu: ship this checkout's packages to the workers with Ray's runtime environment
    (py_modules), for clusters where the package is not installed."""
    num_slices: int = 1
    """tpu: slices per run; more than 1 is a multi-slice run (jax.distributed over every host of
    every slice, with the MEGASCALE_* variables set)."""
    tpu_topology: Optional[str] = None
    """tpu: the slice's chip topology, e.g. 2x2x2 for v4-16; derived from tpu_type when unset."""
    malloc: str = "no_trim"
    """glibc malloc of CPU workers: no_trim (experiments.benchmarks.NO_TRIM_ENV: freed blocks
    stay in the heap for the next step, no page faults; a worker keeps its peak heap) | default."""
    worker_setup_hook: Optional[str] = None
    """'package.module.function' called once in every worker process (and TPU host) before its
    first run: logging handlers, a profiler, the tests' fault injection."""
    distributed_timeout_s: int = 300
    """Multi-host runs: seconds for every host to join jax.distributed, and for a silent host's
    heartbeat before the others give up."""


@dataclasses.dataclass
class StoreConf:
    root: str = "results"
    """Run store root: a local folder (file:///abs is one too) or a bucket URL, gs://BUCKET/... or
    s3://BUCKET/... (run_store.locations.store_root; docs/launching.md)."""
    metrics_flush_s: float = 5.0
    """On a bucket root: metrics rows are written at most this often (seconds), and at every
    evaluation, checkpoint and exit (a bucket rewrites the whole object on each write). Local
    roots append every row."""


@dataclasses.dataclass
class MeasureConf:
    """Settings of a speed measurement preset (`griffin-measure experiment=train_speed|inference`).
    Unused by training runs and sweeps; the measured models are built from `sizes` x
    `families` with the fields below (see experiments/paper/)."""

    kind: str = ""
    """Which measurement griffin-measure runs: train_speed | inference ('' = not a measurement)."""
    families: list[str] = dataclasses.field(default_factory=lambda: ["mqa", "hawk", "griffin"])
    """Families measured, each built from every size row in `sizes`."""
    sizes: list[str] = dataclasses.field(default_factory=list)
    """Size rows (griffin_core.sizes) measured; one figure panel (train_speed) or one set of lines each."""
    vocab_size: int = 256
    """Vocabulary of the measured models (the CPU studies' byte vocabulary by default)."""
    dtype: str = "float32"
    """Compute dtype of the measured models: float32 | bfloat16."""
    local_window: Optional[int] = None
    """Griffin's local-attention window; None = the size row's (the paper uses 1024)."""
    repeats: int = 3
    """Timed rounds (every candidate once per round, shuffled; tables show the median)."""
    seed: int = 0
    """Parameters, data and the shuffling of the rounds."""
    malloc: str = "reuse"
    """glibc malloc setting for the command (experiments.benchmarks.configure_malloc): reuse | default."""
    lengths: list[int] = dataclasses.field(default_factory=list)
    """train_speed: training sequence lengths; the shortest is the reference of the ratios."""
    tokens_per_batch: int = 8192
    """train_speed: tokens per step, fixed across lengths (batch = tokens_per_batch / length)."""
    min_call_seconds: float = 0.25
    """train_speed: each timed call runs enough steps to last this long (small steps are
    dispatch-bound otherwise)."""
    memory_limit_gb: float = 12.0
    """Points that would need more memory are skipped and reported, not run (train_speed: the
    estimate of griffin_core.counting; inference: XLA's memory analysis of the compiled program)."""
    batch: int = 16
    """inference: sequences per batch of the latency measurement (paper: 16)."""
    prefill_lengths: list[int] = dataclasses.field(default_factory=list)
    """inference: prompt lengths of the latency measurement; 0 = an empty prefill (one prompt token)."""
    decode_lengths: list[int] = dataclasses.field(default_factory=list)
    """inference: tokens decoded after each prompt in the latency measurement."""
    sample_lengths: list[int] = dataclasses.field(default_factory=list)
    """inference: tokens sampled after an empty prompt in the throughput measurement."""
    memory_budget_gb: float = 1.0
    """inference: the throughput batch is the largest with parameter bytes + batch x cache bytes
    at the final length (the paper's eq. 5) within this budget."""
    max_batch: int = 128
    """inference: cap on the throughput batch (CPU time); the uncapped batch is reported too."""
    cache_lengths: list[int] = dataclasses.field(default_factory=list)
    """inference: lengths at which the decoding cache bytes per sequence are tabulated."""


@dataclasses.dataclass
class ExperimentConf:
    name: str = "default"
    """Sweep name: the sweep manifest and the W&B group."""
    description: str = ""
    """What this preset reproduces."""
    sweep: dict[str, str] = dataclasses.field(default_factory=dict)
    """Grid axes in Hydra's override grammar, e.g. {family: 'mqa,hawk,griffin', size: 'glob(cpu-*)'}."""
    size_overrides: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    """Extra overrides for the grid points of a size, e.g. {7B: ['launcher.tpu_type=v4-256']}."""
    measure: MeasureConf = dataclasses.field(default_factory=MeasureConf)
    """Settings of a measurement preset (griffin-measure); ignored by training and sweeps."""


@dataclasses.dataclass
class Config:
    family: FamilyConf = MISSING
    size: SizeConf = MISSING
    model: ModelConf = dataclasses.field(default_factory=ModelConf)
    data: DataConf = dataclasses.field(default_factory=DataConf)
    optim: OptimConf = dataclasses.field(default_factory=OptimConf)
    trainer: TrainerConf = dataclasses.field(default_factory=TrainerConf)
    logger: LoggerConf = dataclasses.field(default_factory=LoggerConf)
    launcher: LauncherConf = dataclasses.field(default_factory=LauncherConf)
    store: StoreConf = dataclasses.field(default_factory=StoreConf)
    experiment: ExperimentConf = dataclasses.field(default_factory=ExperimentConf)


@functools.cache
def register() -> None:
    """Register the schemas, and the families and sizes from griffin_core's tables (once per
    process: Hydra's ConfigStore keeps them, and storing 30 structured configs takes ~0.1 s)."""
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    for group, schema in (("data", DataConf), ("optim", OptimConf), ("trainer", TrainerConf),
                          ("logger", LoggerConf), ("launcher", LauncherConf), ("experiment", ExperimentConf)):
        cs.store(group=group, name=f"{group}_schema", node=schema)
    for name, pattern in FAMILY_PATTERNS.items():
        mlp = FAMILY_MLP_EXPANSION.get(name, DEFAULT_MLP_EXPANSION)
        cs.store(group="family", name=name, node=FamilyConf(name=name, block_pattern=list(pattern), mlp_expansion=mlp))
    cs.store(group="family", name="mqa_nope",
             node=FamilyConf(name="mqa_nope", block_pattern=["attention"], use_rope=False))
    for name, row in ALL_SIZES.items():
        cs.store(group="size", name=name, node=SizeConf(**dataclasses.asdict(row)))

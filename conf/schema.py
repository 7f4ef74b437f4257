"""Structured-config schemas: one dataclass per config group, registered in Hydra's ConfigStore.

Sizes and families are registered from griffin_core's tables (one source of truth); YAML files
under conf/ add presets (data, optim, trainer, logger, launcher, experiment). Every field has a
docstring; cross-field rules live in `experiments.validate`.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from griffin_core.config import FAMILY_PATTERNS
from griffin_core.sizes import ALL_SIZES


@dataclasses.dataclass
class FamilyConf:
    name: str = MISSING
    """'mqa', 'hawk', 'griffin' or a new name for a custom pattern."""
    block_pattern: list[str] = MISSING
    """Temporal blocks, repeated over depth: recurrent | attention | local_attention."""
    use_rope: bool = True
    """False: attention without positional information (the NoPE baseline)."""
    rope_fraction: float = 0.5
    """Fraction of each head's dims rotated by RoPE."""
    embed_scale: bool = False
    """Multiply embeddings by sqrt(D) rounded to bfloat16 (RecurrentGemma); off in the paper."""
    logit_softcap: float = 0.0
    """c * tanh(logits / c) when > 0 (RecurrentGemma: 30); off in the paper."""
    lambda_init: str = "ring"
    """RG-LRU decay init: 'ring' (reference code) or 'uniform_ac' (paper text)."""


@dataclasses.dataclass
class SizeConf:
    name: str = MISSING
    """Row label (Hawk's parameter count)."""
    width: int = MISSING
    """D."""
    lru_width: int = MISSING
    """D_RNN."""
    depth: int = MISSING
    """Residual blocks."""
    num_heads: int = MISSING
    """Query heads; head_dim = width / num_heads."""
    num_gate_blocks: int = 16
    """Blocks of the RG-LRU gates."""
    local_window: int = 1024
    """Griffin's local-attention window."""
    paper_tokens: int = 0
    """Training tokens the paper used for this row (0: none given)."""


@dataclasses.dataclass
class ModelConf:
    """Numerics and per-run overrides of the network built from family + size."""

    dtype: str = "float32"
    """Compute dtype: float32 | bfloat16 (parameters and the scan stay fp32)."""
    scan_impl: str = "auto"
    """RG-LRU scan: auto | sequential | associative."""
    scan_unroll: int = 0
    """Sequential scan unroll; 0 = tuned per device."""
    attention_block_size: int = 0
    """Local attention query block; 0 = the window."""
    local_window: Optional[int] = None
    """Override the size row's window (e.g. 128 for length-256 CPU studies)."""
    remat: bool = False
    """Recompute each block's activations in the backward pass (memory for compute)."""


@dataclasses.dataclass
class DataConf:
    source: str = "embedded"
    """embedded | text | tokens | hf | selective_copy | induction_heads."""
    path: Optional[str] = None
    """File or folder for 'text', the .bin token file for 'tokens'."""
    vocab_size: Optional[int] = None
    """Vocabulary of a 'tokens' file (the byte tokenizer and tasks set their own)."""
    token_dtype: str = "uint16"
    """Element type of a 'tokens' file: uint16 (nanoGPT), or uint32 for vocabularies over 65,536."""
    hf_dataset: Optional[str] = None
    """Hugging Face dataset name for 'hf' (needs the `datasets` package and network)."""
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
class OptimConf:
    name: str = "adamw"
    """Only AdamW (optax) is provided."""
    lr: Optional[float] = None
    """Peak learning rate; None = the per-size rule lr_ref * (width_ref / D) ** lr_exponent."""
    lr_ref: float = 1.2e-3
    """Per-size rule: the learning rate at width_ref."""
    width_ref: int = 768
    """Per-size rule: the reference width."""
    lr_exponent: float = 0.5
    """Per-size rule: lr scales as width ** -lr_exponent."""
    lr_multiplier: float = 1.0
    """Multiplies the peak learning rate (given or from the rule): learning-rate sweeps."""
    beta1: float = 0.9
    """AdamW beta1."""
    beta2: float = 0.95
    """AdamW beta2."""
    eps: float = 1e-8
    """AdamW epsilon."""
    weight_decay: float = 0.1
    """Decoupled weight decay (not applied to biases, norm scales or Lambda)."""
    warmup_fraction: float = 0.02
    """Linear warmup over this fraction of the steps (at least warmup_min_steps)."""
    warmup_min_steps: int = 10
    """Lower bound of the warmup."""
    min_lr_ratio: float = 0.1
    """Cosine decay to this fraction of the peak at the run's last step."""
    clip_norm: float = 1.0
    """Global gradient-norm clipping (0 = off)."""


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
    data_parallel: int = -1
    """Devices on the mesh's data axis (-1: all devices / model_parallel)."""
    model_parallel: int = 1
    """Devices on the mesh's model axis."""
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
    """Run store root: a local folder or an fsspec URL (gs://...)."""


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


def register() -> None:
    """Register the schemas, and the families and sizes from griffin_core's tables."""
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    for group, schema in (("data", DataConf), ("optim", OptimConf), ("trainer", TrainerConf),
                          ("logger", LoggerConf), ("launcher", LauncherConf), ("experiment", ExperimentConf)):
        cs.store(group=group, name=f"{group}_schema", node=schema)
    for name, pattern in FAMILY_PATTERNS.items():
        cs.store(group="family", name=name, node=FamilyConf(name=name, block_pattern=list(pattern)))
    cs.store(group="family", name="mqa_nope",
             node=FamilyConf(name="mqa_nope", block_pattern=["attention"], use_rope=False))
    for name, row in ALL_SIZES.items():
        cs.store(group="size", name=name, node=SizeConf(**dataclasses.asdict(row)))

"""Figs 1b and 4: decoding latency, maximum sampling throughput and decoding-cache memory.

Everything runs through the compiled decoding loop, `griffin_core.decode.generate` (prefill,
then one `lax.scan` over the sampled tokens), compiled ahead of time for each shape:

- latency (Fig 1b): a batch of `batch` prompts of `p` tokens (p = 0 is the paper's empty
  prefill: one prompt token, since the first sampled token needs one to condition on), then
  `n` decoded tokens for each n in `decode_lengths`. The whole `generate` call is timed (the
  latency the paper plots) and, separately, the prefill alone (`decode.prefill` jitted with the
  same shapes and cache size). Decode time = median total - median prefill, the prefill
  samples pooled over the decoded lengths of the same prompt (`latency_table`).
- throughput (Fig 4): `L` tokens sampled after an empty prompt, with the largest batch whose
  bytes fit `memory_budget_gb` by the paper's eq. 5, parameter bytes + batch x cache bytes of
  one sequence at its final length (`counting.param_bytes`, `counting.decode_cache_bytes` at
  the allocated cache size 1 + L), capped at `max_batch` so that a CPU run ends in minutes
  (the uncapped batch is reported). Throughput = batch x L / time of the generate call.
- cache: bytes per sequence against length, by the formula and as allocated by
  `griffin_core.model.init_cache` (they agree): a recurrent layer's state is constant, a local
  attention layer's ring buffer is constant at `window` slots, global attention grows.

Timing: all programs are compiled first, then called in rounds in a shuffled order (drift on
a shared machine hits them alike). The first round is the warm-up; a call that took longer
than `WARMUP_COUNTS_S` is counted as a timed sample (its first-call overhead, allocating the
caches, is negligible against seconds of decoding), so the expensive programs run `repeats`
times rather than `repeats + 1`. Reported times are medians.

Memory: a program whose compiled form needs more than `memory_limit_gb` (arguments, outputs
and temporaries by XLA's memory analysis) is not run; its points are listed as skipped. The
prefill of global attention materialises the [B, T, H, T] fp32 logits: at batch 16 and a
4096-token prompt that is about 9 GB for the CPU sizes.
"""

from __future__ import annotations

import dataclasses
import random
import time
from typing import Any, Callable, Mapping, Sequence

from statistics import median
from experiments.paper.train_speed import check_common_settings, check_ints, check_positive, measured_config
from griffin_core import counting
from griffin_core.config import ConfigError, ModelConfig

SAMPLE_TEMPERATURE = 1.0
"""Sampling temperature of every generate call (categorical sampling, as in serving)."""
WARMUP_COUNTS_S = 1.0
"""A warm-up call longer than this counts as a timed sample (see the module doc)."""
PAPER_CLAIMS = {
    "text": "1B models: decode latency with an empty or a 4096-token prefill grows much faster with "
            "decoded length for MQA than for Hawk and Griffin; maximum throughput when sampling "
            "512-4096 tokens: Hawk > Griffin >> MQA (MQA's KV cache limits its batch).",
}


@dataclasses.dataclass(frozen=True)
class InferenceSettings:
    """What `run_inference` measures (from `experiment.measure`, see conf/schema.py)."""

    sizes: tuple[str, ...]
    families: tuple[str, ...]
    batch: int = 16
    prefill_lengths: tuple[int, ...] = (0, 4096)
    decode_lengths: tuple[int, ...] = (128, 256, 512, 1024, 2048, 4096)
    sample_lengths: tuple[int, ...] = (512, 1024, 2048, 4096)
    memory_budget_gb: float = 1.0
    max_batch: int = 128
    cache_lengths: tuple[int, ...] = ()
    vocab_size: int = 256
    dtype: str = "float32"
    local_window: int | None = None
    repeats: int = 2
    seed: int = 0
    memory_limit_gb: float = 12.0
    model: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        check_common_settings(self)
        if not self.decode_lengths and not self.sample_lengths:
            raise ConfigError("experiment.measure.decode_lengths and sample_lengths are both empty: nothing to measure")
        if self.decode_lengths:
            object.__setattr__(self, "decode_lengths", check_ints("decode_lengths", self.decode_lengths))
            object.__setattr__(self, "prefill_lengths", check_ints("prefill_lengths", self.prefill_lengths, 0))
        if self.sample_lengths:
            object.__setattr__(self, "sample_lengths", check_ints("sample_lengths", self.sample_lengths))
        cache = tuple(self.cache_lengths) or tuple(sorted(
            {p + n for p in self.prefill_lengths for n in self.decode_lengths} | set(self.sample_lengths)))
        object.__setattr__(self, "cache_lengths", check_ints("cache_lengths", cache))
        for key in ("batch", "max_batch"):
            check_positive(key, getattr(self, key), integer=True)
        check_positive("memory_budget_gb", self.memory_budget_gb)
        self.configs()  # every ModelConfig builds, or a ConfigError names the field

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "InferenceSettings":
        """From the composed config (a plain dict): `experiment.measure` and the `model` group."""
        m = cfg["experiment"]["measure"]
        return cls(sizes=tuple(m["sizes"]), families=tuple(m["families"]), batch=m["batch"],
                   prefill_lengths=tuple(m["prefill_lengths"]), decode_lengths=tuple(m["decode_lengths"]),
                   sample_lengths=tuple(m["sample_lengths"]), memory_budget_gb=float(m["memory_budget_gb"]),
                   max_batch=m["max_batch"], cache_lengths=tuple(m["cache_lengths"]), vocab_size=m["vocab_size"],
                   dtype=m["dtype"], local_window=m["local_window"], repeats=m["repeats"], seed=m["seed"],
                   memory_limit_gb=float(m["memory_limit_gb"]), model=dict(cfg.get("model") or {}))

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for k, v in out.items():
            if isinstance(v, tuple):
                out[k] = list(v)
        out["model"] = dict(self.model)
        return out

    @property
    def budget_bytes(self) -> float:
        return self.memory_budget_gb * 1e9

    def configs(self) -> dict[tuple[str, str], ModelConfig]:
        return {(s, f): measured_config(f, s, self.vocab_size, self.dtype, self.local_window, self.model)
                for s in self.sizes for f in self.families}


# --------------------------------------------------------------------------- eq. 5


def eq5_bytes(cfg: ModelConfig, batch: int, length: int) -> int:
    """The paper's eq. 5 numerator: parameter bytes + batch x cache bytes at `length`."""
    return counting.param_bytes(cfg) + batch * counting.decode_cache_bytes(cfg, length)


def budget_batch(cfg: ModelConfig, length: int, budget_bytes: float) -> int:
    """The largest batch with eq5_bytes(cfg, batch, length) <= budget_bytes (0 if none fits)."""
    free = budget_bytes - counting.param_bytes(cfg)
    per_seq = counting.decode_cache_bytes(cfg, length)
    return max(0, int(free // per_seq)) if free > 0 else 0


def throughput_batch(cfg: ModelConfig, sample_length: int, budget_bytes: float, cap: int) -> tuple[int, int]:
    """(batch used, batch allowed by the budget) for sampling `sample_length` tokens after a
    one-token prompt: the cache holds 1 + sample_length positions."""
    allowed = budget_batch(cfg, 1 + sample_length, budget_bytes)
    return min(allowed, cap), allowed


def cache_rows(settings: InferenceSettings, allocated: bool = False) -> list[dict[str, Any]]:
    """Decoding-cache bytes per sequence at each of `cache_lengths`, per size and family; with
    `allocated`, also the bytes `init_cache` allocates for one sequence of that cache size."""
    rows = []
    for (size, family), cfg in settings.configs().items():
        for length in settings.cache_lengths:
            row = {"size": size, "family": family, "length": length,
                   "cache_bytes": counting.decode_cache_bytes(cfg, length),
                   "param_bytes": counting.param_bytes(cfg)}
            if allocated:
                row["allocated_bytes"] = allocated_cache_bytes(cfg, length)
            rows.append(row)
    return rows


def allocated_cache_bytes(cfg: ModelConfig, length: int) -> int:
    """Bytes of `init_cache(cfg, 1, length)`, from its shapes (nothing is allocated)."""
    import jax
    import numpy as np

    from griffin_core.model import init_cache

    shapes = jax.eval_shape(lambda: init_cache(cfg, 1, length))
    return int(sum(np.prod(a.shape) * np.dtype(a.dtype).itemsize for a in jax.tree_util.tree_leaves(shapes)))


def plan(settings: InferenceSettings) -> dict[str, Any]:
    """The latency and throughput points with their batches and eq. 5 bytes (no JAX)."""
    latency, throughput, skipped = [], [], []
    for (size, family), cfg in settings.configs().items():
        for p in settings.prefill_lengths if settings.decode_lengths else ():
            for n in settings.decode_lengths:
                prompt = max(p, 1)
                latency.append({"size": size, "family": family, "prefill": p, "prompt_tokens": prompt,
                                "decoded": n, "batch": settings.batch, "cache_size": prompt + n,
                                "eq5_bytes": eq5_bytes(cfg, settings.batch, prompt + n)})
        for length in settings.sample_lengths:
            batch, allowed = throughput_batch(cfg, length, settings.budget_bytes, settings.max_batch)
            row = {"size": size, "family": family, "sample_length": length, "batch": batch,
                   "batch_by_budget": allowed, "capped": allowed > settings.max_batch,
                   "cache_bytes_per_seq": counting.decode_cache_bytes(cfg, 1 + length),
                   "param_bytes": counting.param_bytes(cfg), "eq5_bytes": eq5_bytes(cfg, batch, 1 + length),
                   "budget_bytes": settings.budget_bytes}
            if batch < 1:
                row["reason"] = (f"the parameters and one sequence's cache ({eq5_bytes(cfg, 1, 1 + length):,} bytes) "
                                 f"exceed memory_budget_gb={settings.memory_budget_gb:g}")
                skipped.append(row)
            else:
                throughput.append(row)
    return {"latency": latency, "throughput": throughput, "skipped": skipped, "cache": cache_rows(settings)}


# --------------------------------------------------------------------------- measurement


@dataclasses.dataclass
class _Program:
    call: Callable[[], Any]
    compile_s: float
    memory_bytes: int | None = None
    """Arguments + outputs + temporaries, from XLA's memory analysis (None if unavailable)."""
    seconds: list[float] = dataclasses.field(default_factory=list)
    warmup_s: float = 0.0


def _program_bytes(compiled: Any) -> int | None:
    try:
        m = compiled.memory_analysis()
    except Exception:  # not every backend implements it
        return None
    if m is None:
        return None
    return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes)


def _generate_program(cfg: ModelConfig, params: Any, batch: int, prompt_len: int, num_steps: int, seed: int,
                      prefill_only: bool = False) -> _Program:
    import functools

    import jax
    import jax.numpy as jnp

    from griffin_core import decode

    key = jax.random.PRNGKey(seed)
    prompts = jax.random.randint(key, (batch, prompt_len), 0, cfg.vocab_size, dtype=jnp.int32)
    lengths = jnp.full((batch,), prompt_len, jnp.int32)
    rng = jax.random.fold_in(key, 1)
    t0 = time.perf_counter()
    if prefill_only:
        fn = jax.jit(functools.partial(decode.prefill, cfg), static_argnames=("cache_size",))
        compiled = fn.lower(params, prompts, lengths, cache_size=prompt_len + num_steps).compile()
        call = lambda: jax.block_until_ready(compiled(params, prompts, lengths))  # noqa: E731
    else:
        compiled = decode.generate.lower(cfg, params, prompts, lengths, rng, num_steps=num_steps,
                                         temperature=SAMPLE_TEMPERATURE).compile()
        call = lambda: jax.block_until_ready(compiled(params, prompts, lengths, rng))  # noqa: E731
    return _Program(call, time.perf_counter() - t0, _program_bytes(compiled))


def _time_programs(programs: Mapping[str, _Program], repeats: int, seed: int,
                   progress: Callable[[str], None]) -> None:
    """A shuffled warm-up round (long calls count as samples), then shuffled rounds of the
    programs that still need samples, until each has `repeats`."""
    rng = random.Random(seed)
    names = list(programs)
    for r in range(repeats + 1):
        todo = [n for n in names if len(programs[n].seconds) < repeats]
        if not todo:
            break
        rng.shuffle(todo)
        t_round = time.perf_counter()
        for name in todo:
            prog = programs[name]
            start = time.perf_counter()
            out = prog.call()
            elapsed = time.perf_counter() - start
            del out
            if r == 0:
                prog.warmup_s = elapsed
                if elapsed > WARMUP_COUNTS_S:
                    prog.seconds.append(elapsed)
            else:
                prog.seconds.append(elapsed)
        progress(f"round {r} ({'warm-up' if r == 0 else 'timed'}): {len(todo)} calls, "
                 f"{time.perf_counter() - t_round:.1f} s")


def latency_table(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Medians of latency rows holding their samples (total_ms_rounds, prefill_ms_rounds).

    total_ms and prefill_ms are each point's medians. The decode time subtracts
    prefill_ms_pooled, the median of the prefill samples of every point with the same size,
    family and prefill length: the same prompts, differing only in the cache size they are
    padded to (a memset of at most a few MB, against a prefill that is either one token or
    seconds long), so pooling multiplies the samples of a noisy difference. A non-positive
    decode time (noise) gives None per token.
    """
    pooled: dict[tuple, list[float]] = {}
    for r in rows:
        pooled.setdefault((r["size"], r["family"], r["prefill"]), []).extend(r["prefill_ms_rounds"])
    out = []
    for r in rows:
        pre_pooled = median(pooled[(r["size"], r["family"], r["prefill"])])
        total = median(r["total_ms_rounds"])
        decode = total - pre_pooled
        out.append({**r, "total_ms": total, "prefill_ms": median(r["prefill_ms_rounds"]),
                    "prefill_ms_pooled": pre_pooled, "decode_ms": decode,
                    "decode_ms_per_token": decode / r["decoded"] if decode > 0 else None,
                    "decode_tokens_per_s": 1e3 * r["batch"] * r["decoded"] / decode if decode > 0 else None})
    return out


def run_inference(settings: InferenceSettings, progress: Callable[[str], None] = lambda s: None
                  ) -> dict[str, Any]:
    """Compile every program, time them in interleaved rounds, return the JSON-ready tables."""
    import jax

    from griffin_core.model import init_params

    planned = plan(settings)
    configs = settings.configs()
    params = {k: init_params(cfg, jax.random.PRNGKey(settings.seed)) for k, cfg in configs.items()}
    programs: dict[tuple, _Program] = {}

    def program(size: str, family: str, batch: int, prompt: int, steps: int, prefill_only: bool = False) -> tuple:
        """Compile (once per distinct shape: a latency point and a throughput point with the same
        batch share their program) and return the program's key."""
        key = (size, family, batch, prompt, steps, prefill_only)
        if key not in programs:
            what = "prefill" if prefill_only else "generate"
            progress(f"compiling {what} {size}/{family}: batch {batch}, prompt {prompt}, {steps} steps")
            programs[key] = _generate_program(configs[(size, family)], params[(size, family)], batch, prompt, steps,
                                              settings.seed, prefill_only)
        return key

    lat_keys = [(program(r["size"], r["family"], r["batch"], r["prompt_tokens"], r["decoded"]),
                 program(r["size"], r["family"], r["batch"], r["prompt_tokens"], r["decoded"], True))
                for r in planned["latency"]]
    thr_keys = [program(r["size"], r["family"], r["batch"], 1, r["sample_length"]) for r in planned["throughput"]]
    limit = settings.memory_limit_gb * 1e9
    too_big = {k for k, p in programs.items() if p.memory_bytes is not None and p.memory_bytes > limit}
    for k in too_big:
        progress(f"skipping {'/'.join(map(str, k))}: needs {programs[k].memory_bytes / 1e9:.1f} GB")
    timed = {k: p for k, p in programs.items() if k not in too_big}
    progress(f"timing {len(timed)} programs, {settings.repeats} rounds")
    _time_programs({"/".join(map(str, k)): p for k, p in timed.items()}, settings.repeats, settings.seed, progress)

    skipped = list(planned["skipped"])

    def skip(row: dict, keys: Sequence[tuple]) -> bool:
        big = [programs[k].memory_bytes for k in keys if k in too_big]
        if big:
            skipped.append({**row, "reason": f"the compiled program needs {max(big) / 1e9:.1f} GB (XLA memory "
                                              f"analysis) > memory_limit_gb={settings.memory_limit_gb:g}"})
        return bool(big)

    latency = []
    for row, (total_key, pre_key) in zip(planned["latency"], lat_keys):
        if skip(row, (total_key, pre_key)):
            continue
        total, pre = programs[total_key], programs[pre_key]
        latency.append({
            **row, "total_ms_rounds": [1e3 * t for t in total.seconds],
            "prefill_ms_rounds": [1e3 * t for t in pre.seconds],
            "compile_s": total.compile_s + pre.compile_s, "warmup_ms": 1e3 * total.warmup_s,
            "memory_gb": None if total.memory_bytes is None else max(total.memory_bytes, pre.memory_bytes or 0) / 1e9,
        })
    latency = latency_table(latency)
    throughput = []
    for row, key in zip(planned["throughput"], thr_keys):
        if skip(row, (key,)):
            continue
        prog = programs[key]
        med = median(prog.seconds)
        tokens = row["batch"] * row["sample_length"]
        throughput.append({
            **row, "total_ms": 1e3 * med, "total_ms_rounds": [1e3 * t for t in prog.seconds],
            "tokens_per_s": tokens / med,
            "tokens_per_s_range": [tokens / max(prog.seconds), tokens / min(prog.seconds)],
            "compile_s": prog.compile_s, "warmup_ms": 1e3 * prog.warmup_s,
            "memory_gb": None if prog.memory_bytes is None else prog.memory_bytes / 1e9,
        })
    return {"latency": latency, "throughput": throughput, "skipped": skipped,
            "cache": cache_rows(settings, allocated=True), "sample_temperature": SAMPLE_TEMPERATURE,
            "paper": PAPER_CLAIMS}


def format_tables(result: Mapping[str, Any]) -> str:
    """Plain-text tables of latency, throughput and cache bytes (terminal and docs)."""
    out = ["| size | family | prefill | decoded | total ms | prefill ms (pooled) | decode ms/token |",
           "|---|---|---|---|---|---|---|"]
    for r in result["latency"]:
        per_token = "-" if r["decode_ms_per_token"] is None else f"{r['decode_ms_per_token']:.2f}"
        out.append(f"| {r['size']} | {r['family']} | {r['prefill']} | {r['decoded']} | {r['total_ms']:.0f} | "
                   f"{r['prefill_ms_pooled']:.1f} | {per_token} |")
    out += ["", "| size | family | sampled | batch (budget allows) | eq. 5 MB | tokens/s |",
            "|---|---|---|---|---|---|"]
    for r in result["throughput"]:
        out.append(f"| {r['size']} | {r['family']} | {r['sample_length']} | {r['batch']} ({r['batch_by_budget']:,}) | "
                   f"{r['eq5_bytes'] / 1e6:.1f} | {r['tokens_per_s']:,.0f} |")
    for r in result.get("skipped", []):
        what = (f"sampled {r['sample_length']}" if "sample_length" in r
                else f"prefill {r['prefill']} decode {r['decoded']}")
        out.append(f"| {r['size']} | {r['family']} | {what} | skipped: {r['reason']} | | |")
    lengths = sorted({r["length"] for r in result["cache"]})
    out += ["", "| size | family | " + " | ".join(f"cache KB @{n}" for n in lengths) + " |",
            "|---|---|" + "---|" * len(lengths)]
    by = {}
    for r in result["cache"]:
        by.setdefault((r["size"], r["family"]), {})[r["length"]] = r["cache_bytes"]
    for (size, family), row in by.items():
        out.append(f"| {size} | {family} | " + " | ".join(f"{row[n] / 1e3:,.1f}" for n in lengths) + " |")
    return "\n".join(out)

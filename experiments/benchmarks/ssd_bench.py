"""`griffin-bench ssd`: Mamba-2's chunked SSD (griffin_core/ssd.py), forward + backward, at each
chunk size, against the dense-matmul peak measured on this machine (cached; `griffin-bench
limits`). The work counted is the as-executed FLOPs of the chunked algorithm
(`griffin_core.counting.flops.ssd_as_executed`), x3 for the backward, so a chunk that does more
work at a higher rate can still lose on time: the table shows both, and the fastest chunk is
what `model.ssm_chunk` should be on this machine (docs/benchmarks.md, "Mamba-2's SSD chunk").
"""

from __future__ import annotations

import argparse
from statistics import median
from typing import Any

from run_store.cli import positive_int, positive_int_list

HELP = "Mamba-2's chunked SSD, forward + backward, by chunk size, against the matmul peak"
DEFAULT_CHUNKS = (8, 16, 32, 64)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch", type=positive_int, default=16, help="sequences (default %(default)s)")
    parser.add_argument("--length", type=positive_int, default=256, help="tokens per sequence (default %(default)s)")
    parser.add_argument("--heads", type=positive_int, default=16, help="SSD heads H (default %(default)s: cpu-190k)")
    parser.add_argument("--head-dim", type=positive_int, default=8, help="head dimension P (default %(default)s)")
    parser.add_argument("--state", type=positive_int, default=16, help="state size N (default %(default)s)")
    parser.add_argument("--chunks", type=positive_int_list, default=list(DEFAULT_CHUNKS),
                        help="chunk sizes Q, comma-separated (default %(default)s)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp

    from experiments.benchmarks import limits, time_interleaved
    from griffin_core.config import ModelConfig
    from griffin_core.counting.flops import ssd_as_executed
    from griffin_core.ssd import ssd_chunked

    b, t, h, p, n = args.batch, args.length, args.heads, args.head_dim, args.state
    keys = jax.random.split(jax.random.PRNGKey(args.seed), 5)
    x = jax.random.normal(keys[0], (b, t, h, p))
    dt = jax.nn.softplus(jax.random.normal(keys[1], (b, t, h)) - 3.0)
    a = -jnp.exp(jax.random.normal(keys[2], (h,)))
    bm, cm = (jax.random.normal(k, (b, t, 1, n)) for k in keys[3:5])
    reset = jnp.zeros((b, t), bool).at[:, 0].set(True)
    calls, flops = {}, {}
    for q in args.chunks:
        def loss(x, dt, bm, cm, q=q):
            return jnp.sum(jnp.square(ssd_chunked(x, dt, a, bm, cm, reset, q)[0]))

        step = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))
        jax.block_until_ready(step(x, dt, bm, cm))  # compile and warm up
        calls[q] = lambda step=step: jax.block_until_ready(step(x, dt, bm, cm))
        cfg = ModelConfig(family="mamba2", vocab_size=2, width=h * p // 2, depth=1, num_heads=1, lru_width=1,
                          num_gate_blocks=1, ssm_state=n, ssm_head_dim=p, ssm_chunk=q)
        flops[q] = 3.0 * ssd_as_executed(cfg, t) * b * t
    rounds = time_interleaved(calls, args.repeats or 7, args.seed)
    peak = limits.matmul_peak()["flops_per_s"]
    rows = []
    for q in args.chunks:
        seconds = median(rounds.seconds[q])
        rows.append({"chunk": q, "median_ms": 1e3 * seconds, "flops": flops[q],
                     "gflops_per_s": flops[q] / seconds / 1e9, "x_matmul_peak": flops[q] / seconds / peak})
    fastest = min(rows, key=lambda r: r["median_ms"])
    for r in rows:
        r["x_fastest_time"] = r["median_ms"] / fastest["median_ms"]
    print(f"SSD forward + backward, batch {b} x length {t}, H={h}, P={p}, N={n} (matmul peak {peak / 1e9:.1f} GFLOP/s)")
    print("| chunk | time ms | GFLOP/s (as executed) | x matmul peak | time / fastest |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['chunk']} | {r['median_ms']:.1f} | {r['gflops_per_s']:.2f} | {r['x_matmul_peak']:.3f} | "
              f"{r['x_fastest_time']:.2f} |")
    print(f"fastest chunk: {fastest['chunk']}")
    return {"benchmark": "ssd", "shape": {"batch": b, "length": t, "heads": h, "head_dim": p, "state": n},
            "matmul_peak_flops_per_s": peak, "rows": rows, "fastest_chunk": fastest["chunk"]}

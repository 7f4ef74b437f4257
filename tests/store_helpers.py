"""Shared helpers of the run store's tests: run ids and complete results."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import run_store as rs

SEMANTIC = {
    "model": {"width": 64, "depth": 2, "block_pattern": ("recurrent", "recurrent", "local_attention")},
    "optim": {"lr": 1e-3, "warmup": 100, "betas": (0.9, 0.95)},
    "data": {"seq_len": 128, "batch": 8},
    "budget": {"tokens": 1_000_000},
    "seed": 0,
}


def make_id(semantic=SEMANTIC, **kw):
    args = dict(family="griffin", size="cpu-s", budget="20tpp", semantic=semantic,
                corpus_fingerprint="abc123")
    args.update(kw)
    return rs.compute_run_id(**args)


def valid_result(run_id: str, **over) -> dict:
    """A complete result of the current schema (as the runner writes it)."""
    result = {
        "family": "griffin", "size": "cpu-s", "seed": 0, "params_total": 1000,
        "params_non_embedding": 800, "tokens": 20000, "epochs": 0.5,
        "flops": {"6ND": 1.2e8, "exact": 1.4e8}, "final_train_loss": 3.2,
        "heldout_loss_nats": 3.3, "heldout_bits_per_byte": 1.2,
        "heldout_loss_by_position": [4.0, 3.5, 3.1], "wall_time_s": 12.5, "tokens_per_s": 1600.0,
        "mfu": 0.21, "mfu_kind": "fraction_of_measured_matmul_peak", "mfu_chip": None, "mfu_chips": 1,
        "versions": {"jax": "0.10"},
        "git_sha": None, "corpus_fingerprint": "abc123", "data_source": "embedded",
        "run_id": run_id, "status": "SUCCESS",
    }
    result.update(over)
    return result


def age_lease(lease_file: Path, seconds: float) -> None:
    """Make a lease look `seconds` old: its recorded heartbeat and its mtime (local roots
    heartbeat by touching the file)."""
    then = time.time() - seconds
    lease_file.write_text(json.dumps({**json.loads(lease_file.read_text()), "heartbeat": then}))
    os.utime(lease_file, (then, then))

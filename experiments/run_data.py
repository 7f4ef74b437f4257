"""The data of one run, built from its RunSpec: training batches as a function of the step,
held-out batches, long documents for loss by position, and the fingerprint that enters the run id.
Plain NumPy (no JAX): the sweep driver computes fingerprints without importing JAX."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import numpy as np

from experiments.spec import vocab_size
from griffin_core.data import DataError, HeldoutBatches, TrainBatches, long_documents, make_source, make_task
from griffin_core.data.synthetic import accuracy as task_accuracy

_SOURCE_KINDS = {"embedded": "corpus", "text": "text", "tokens": "tokens", "hf": "hf"}
_TASKS = {"selective_copy": "selective_copying", "induction_heads": "induction_heads"}


def build_source(data: Mapping[str, Any]):
    kind = data["source"]
    # The tokenizer of text sources: 'bytes' unless data.tokenizer names a file (its hash then
    # enters the fingerprint). A token file's manifest names its own.
    tok = {"tokenizer": data["tokenizer"]} if data.get("tokenizer") else {}
    if kind == "embedded":
        return make_source("corpus", **tok)
    if kind == "text":
        return make_source("text", paths=[data["path"]], **tok)
    if kind == "tokens":
        return make_source("tokens", train=data["path"], vocab_size=vocab_size(data), dtype=data["token_dtype"])
    return make_source("hf", path=data["hf_dataset"], text_field=data["hf_text_field"],
                       train_split=data["hf_split"], **tok)


def fingerprint(data: Mapping[str, Any], batch_size: int = 1, seed: int = 0) -> str:
    """Content fingerprint of the run's data (corpus manifest, files, or task definition)."""
    if data["source"] in _TASKS:
        return build_task(data, batch_size, seed).fingerprint()
    source = build_source(data)
    if data["source"] == "tokens":  # a run reads both splits: one missing fails here, not mid-run
        for split in ("train", "heldout"):
            source.num_tokens(split)  # from the manifest (or the files' sizes): DataError naming it
    return source.fingerprint()


def build_task(data: Mapping[str, Any], batch_size: int, seed: int):
    kw = {"num_data_tokens": data["task_num_data_tokens"]} if data["source"] == "selective_copy" else {}
    return make_task(_TASKS[data["source"]], seq_len=data["seq_len"], batch_size=batch_size, seed=seed, **kw)


@dataclasses.dataclass
class RunData:
    train_batch: Callable[[int], dict[str, np.ndarray]]
    """step -> this process's rows of the step's batch, dict of [B_local, T] arrays."""
    heldout: list[dict[str, np.ndarray]]
    """Fixed evaluation batches."""
    position_docs: dict[str, np.ndarray] | None
    """Unpacked held-out documents of factor x T tokens for loss by position (None for tasks)."""
    epochs: Callable[[int], float]
    """steps -> epochs of the training split consumed."""
    fingerprint: str
    bytes_per_token: float | None
    """For bits per byte (1 for the byte tokenizer; None when unknown)."""
    accuracy: Callable[[np.ndarray, dict[str, np.ndarray]], dict[str, float]] | None = None
    length_eval: Callable[[int], dict[str, np.ndarray]] | None = None
    """Synthetic tasks: an evaluation batch at another length (extrapolation)."""


def build_run_data(data: Mapping[str, Any], batch_size: int, seed: int, process_index: int = 0,
                   process_count: int = 1) -> RunData:
    seq_len = data["seq_len"]
    local = batch_size // process_count
    lo = process_index * local
    if data["source"] in _TASKS:
        task = build_task(data, batch_size, seed)
        heldout = [_rows(task.batch(i, split="eval"), lo, local) for i in range(max(1, data["eval_sequences"] // batch_size))]
        return RunData(train_batch=lambda step: _rows(task.batch(step), lo, local), heldout=heldout,
                       position_docs=None, epochs=lambda steps: 0.0, fingerprint=task.fingerprint(),
                       bytes_per_token=None, accuracy=task_accuracy,
                       length_eval=lambda length: _rows(task.batch(0, split="eval", seq_len=length), lo, local))
    source = build_source(data)
    train = TrainBatches(source, seq_len, batch_size, seed=seed, process_index=process_index,
                         process_count=process_count)
    held = HeldoutBatches(source, seq_len, batch_size, max_rows=data["eval_sequences"],
                          process_index=process_index, process_count=process_count)
    length = data["position_eval_factor"] * seq_len
    try:  # reads held-out documents only until it has enough long ones
        docs = long_documents(source, length, max_docs=data["position_eval_docs"])
    except DataError:
        docs = None  # no document that long: no loss by position
    bpt = None
    if source.tokenizer_name == "bytes":
        bpt = 1.0
    elif source.num_bytes("heldout"):  # text through another tokenizer: its bytes per token
        bpt = source.num_bytes("heldout") / source.num_tokens("heldout")
    return RunData(train_batch=train.batch, heldout=list(held), position_docs=docs, epochs=train.epochs,
                   fingerprint=source.fingerprint(), bytes_per_token=bpt)


def _rows(batch: dict[str, np.ndarray], lo: int, n: int) -> dict[str, np.ndarray]:
    return {k: v[lo:lo + n] for k, v in batch.items()}

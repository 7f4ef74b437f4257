"""result.json: a run's final figures as one typed record, written by the runner and read by
analysis (from the store or from a W&B summary).

Schema versions: 2 added `data_source` (the data.source the run trained on, so analysis tells
task runs from text runs without guessing) and `mfu_kind` (what the MFU is a fraction of);
3 (this code) adds `mfu_chip` and `mfu_chips` (which chips, and how many, the MFU's peak is
of) and renames the measured-peak kind (`OLD_MFU_KINDS`). Results of schemas 1 and 2 still
read: `upgrade` fills schema 1's data source from the run's config.yaml when the store has it
(else None), renames the old kind, and leaves the chip fields None. A file of a newer schema
is refused.
"""

from __future__ import annotations

import os
from typing import Any, Literal, Mapping, get_args

import pydantic

from run_store.backends import resolve
from run_store.errors import StoreError
from run_store.jsonfiles import plain, read_json_at
from run_store.locations import RESULT_FILE, join

RESULT_SCHEMA_VERSION = 3
"""Version of result.json's layout. Readers refuse files with a newer version."""

MfuKind = Literal["exact_over_nominal_bf16_peak", "fraction_of_measured_matmul_peak"]
MFU_KINDS = get_args(MfuKind)
"""What `mfu` divides by what (experiments/mfu.py decides):
- "exact_over_nominal_bf16_peak": the run's exact training FLOPs per second over the nominal
  dense bf16 peak of its chip (`mfu_chip`, from griffin_core.accelerators) x its chips
  (`mfu_chips`): the same meaning on every machine.
- "fraction_of_measured_matmul_peak": the same FLOP/s over the dense matmul peak measured on
  the machine (griffin-bench limits) x the units it was measured on (`mfu_chips`: processes
  on CPU, devices on an accelerator the table lacks). Not comparable across machines."""

OLD_MFU_KINDS = {"exact_over_measured_matmul_peak": "fraction_of_measured_matmul_peak"}
"""Kinds of earlier schemas (1 and 2) and their names now. Those runs divided by one
process's measured peak whatever their process count."""


class RunResult(pydantic.BaseModel):
    """result.json. Strict: a string where a number belongs, a bool for an int, or an unknown
    field is an error naming the field. None marks a figure that does not exist (a diverged
    run has no held-out loss; an installed package has no git SHA; MFU needs a throughput and a peak)."""

    model_config = pydantic.ConfigDict(strict=True, extra="forbid", frozen=True)

    schema_version: int = RESULT_SCHEMA_VERSION
    run_id: str
    status: Literal["SUCCESS", "DIVERGED", "FAILED"]
    """The run's outcome when the result was written."""
    family: str
    size: str
    seed: int
    budget: str | None = None
    """The budget's label in the run id ('20tpr', '1e15F')."""
    budget_rule: str | None = None
    budget_value: float | None = None
    params_total: int
    params_non_embedding: int
    tokens: int
    """Training tokens (the budget's, whatever the run reached)."""
    steps: int | None = None
    batch_size: int | None = None
    seq_len: int | None = None
    lr: float | None = None
    """Peak learning rate."""
    flops: dict[str, float]
    """Training FLOPs under each named convention (6N, 6N_nonembed, exact, as_executed)."""
    flop_convention_default: str | None = "exact"
    epochs: float
    """Passes over the training split the run made."""
    final_train_loss: float | None
    heldout_loss_nats: float | None
    heldout_loss_se: float | None = None
    """Standard error of the held-out loss over sequences."""
    heldout_bits_per_byte: float | None
    heldout_loss_by_position: list[float]
    """Mean held-out loss at each position of unpacked long documents (index 0 = position 1)."""
    heldout_accuracy: float | None = None
    """Synthetic tasks: token accuracy on held-out sequences."""
    accuracy_by_length: dict[str, float] | None = None
    """Synthetic tasks: accuracy at each evaluation length (keys are lengths)."""
    wall_time_s: float
    tokens_per_s: float | None
    mfu: float | None
    """Model FLOPs utilisation: exact training FLOP/s over the peak `mfu_kind` names."""
    mfu_kind: MfuKind | None
    """What `mfu` is (see MFU_KINDS); None when there is no MFU."""
    mfu_chip: str | None = None
    """The chip whose peak `mfu` divides by: the accelerator table's name ('TPU v4') for the
    nominal peak, JAX's device kind for the measured peak of an accelerator the table lacks;
    None on CPU, without an MFU, and in results of schema 1 and 2."""
    mfu_chips: int | None = None
    """How many of those the peak was multiplied by: the run's chips (JAX devices over all
    processes); on CPU its processes (the measured peak is one process's cores)."""
    versions: dict[str, str]
    git_sha: str | None
    corpus_fingerprint: str
    """Fingerprint of the data the run trained on (a text corpus or a task generator)."""
    data_source: str | None
    """data.source of the run's config (embedded, text, tokens, hf, selective_copy, ...);
    None only for schema-1 results whose config is not at hand."""

    def to_json(self) -> dict[str, Any]:
        """The record as plain JSON values, every field present."""
        return self.model_dump(mode="python")


FIELDS = tuple(RunResult.model_fields)
"""Every field of result.json."""


def _message(err: pydantic.ValidationError) -> str:
    """pydantic's report on one line: each bad field with what was wrong."""
    parts = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "result"
        if e["type"] == "missing":
            parts.append(f"{where} missing")
        elif e["type"] == "extra_forbidden":
            parts.append(f"{where} is not a result field")
        else:
            parts.append(f"{where}: {e['msg'].lower()} (got {type(e.get('input')).__name__})")
    return "; ".join(parts)


def upgrade(data: Mapping[str, Any], config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A schema-1 or -2 result as this schema. Schema 1: data_source from `config` (the run's
    config.yaml) when given, mfu_kind from whether it has an MFU (schemas 1 and 2 always
    divided exact FLOPs by the measured peak). Schemas 1 and 2: the measured-peak kind under
    its new name; mfu_chip and mfu_chips stay None (not recorded then)."""
    out = dict(data)
    version = out.get("schema_version")
    if version == 1:
        source = ((config or {}).get("data") or {}).get("source") if config else None
        out.setdefault("data_source", source if isinstance(source, str) else None)
        out.setdefault("mfu_kind", "exact_over_measured_matmul_peak" if out.get("mfu") is not None else None)
    if version in (1, 2):
        if isinstance(out.get("mfu_kind"), str):
            out["mfu_kind"] = OLD_MFU_KINDS.get(out["mfu_kind"], out["mfu_kind"])
        out["schema_version"] = RESULT_SCHEMA_VERSION
    return out


def parse_result(data: Any, path: str = RESULT_FILE, config: Mapping[str, Any] | None = None,
                 strict: bool = True) -> RunResult:
    """The RunResult in a JSON object of any known schema; StoreError (one line naming `path`)
    for a newer schema or bad fields. strict=False converts values that mean the same number
    (a W&B summary may hold 1000.0 for an int)."""
    if not isinstance(data, Mapping):
        raise StoreError(f"{path}: a result must be a JSON object, got {type(data).__name__}")
    version = data.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise StoreError(f"{path}: invalid result: no integer 'schema_version'")
    if version > RESULT_SCHEMA_VERSION:
        raise StoreError(f"{path}: result schema_version {version} is newer than this code's "
                         f"{RESULT_SCHEMA_VERSION}; upgrade griffin-scaling to read it")
    try:
        return RunResult.model_validate(upgrade(data, config), strict=strict)
    except pydantic.ValidationError as err:
        raise StoreError(f"{path}: invalid result: {_message(err)}") from None


def make_result(**fields: Any) -> RunResult:
    """A new result of this schema from keyword fields; StoreError names any bad field."""
    try:
        return RunResult.model_validate(plain(fields, "result"))
    except pydantic.ValidationError as err:
        raise StoreError(f"invalid result: {_message(err)}") from None


def read_result_at(backend: Any, path: str, config: Mapping[str, Any] | None = None) -> RunResult | None:
    data = read_json_at(backend, path, "result file")
    return None if data is None else parse_result(data, path, config)


def read_result(run_dir: str | os.PathLike, config: Mapping[str, Any] | None = None) -> RunResult | None:
    """The result.json of a run folder (path or URL), or None if it has none."""
    backend, path = resolve(join(run_dir, RESULT_FILE))
    return read_result_at(backend, path, config)

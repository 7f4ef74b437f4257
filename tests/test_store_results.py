"""run_store.results: the typed result record, its validation, and reading schemas 1 and 2."""

from __future__ import annotations

import json

import pytest

import run_store as rs
from run_store import RunResult, RunStore, StoreError
from store_helpers import make_id, valid_result


def test_a_complete_result_round_trips(tmp_path):
    run_id = make_id()
    store = RunStore(tmp_path)
    with store.acquire(run_id) as lease:
        written = lease.write_result(valid_result(run_id))
    assert isinstance(written, RunResult) and written.schema_version == rs.RESULT_SCHEMA_VERSION
    read = store.read_result(run_id)
    assert read == written
    on_disk = json.loads((tmp_path / "runs" / run_id / "result.json").read_text())
    assert set(on_disk) == set(rs.RESULT_FIELDS)  # every field written, nulls included
    assert read.data_source == "embedded" and read.mfu_kind == "fraction_of_measured_matmul_peak"
    assert (read.mfu_chip, read.mfu_chips) == (None, 1)


def test_a_result_against_a_chips_nominal_peak():
    run_id = make_id()
    data = valid_result(run_id, mfu=0.41, mfu_kind="exact_over_nominal_bf16_peak", mfu_chip="TPU v4", mfu_chips=16)
    result = rs.make_result(**data)
    assert (result.mfu_kind, result.mfu_chip, result.mfu_chips) == ("exact_over_nominal_bf16_peak", "TPU v4", 16)
    assert rs.parse_result(result.to_json()) == result
    # The chip fields are optional: a result written without them reads with None.
    bare = rs.parse_result({k: v for k, v in result.to_json().items() if k not in ("mfu_chip", "mfu_chips")})
    assert (bare.mfu_chip, bare.mfu_chips) == (None, None)


@pytest.mark.parametrize("change, message", [
    ({"params_total": "1000"}, r"params_total: input should be a valid integer \(got str\)"),
    ({"seed": True}, r"seed: input should be a valid integer \(got bool\)"),
    ({"flops": {"6ND": "big"}}, r"flops\.6ND: input should be a valid number"),
    ({"status": "DONE"}, r"status: input should be"),
    ({"mfu_kind": "vendor"}, r"mfu_kind: input should be"),
    ({"mfu_kind": "exact_over_measured_matmul_peak"}, r"mfu_kind: input should be"),  # old name: schema <= 2
    ({"mfu_chips": "16"}, r"mfu_chips: input should be a valid integer"),
    ({"mfu_chip": 4}, r"mfu_chip: input should be a valid string"),
    ({"heldout_loss_by_position": [1.0, "x"]}, r"heldout_loss_by_position\.1"),
    ({"colour": "red"}, r"colour is not a result field"),
])
def test_bad_fields_are_named_on_one_line(change, message):
    run_id = make_id()
    with pytest.raises(StoreError, match=message) as err:
        rs.parse_result({"schema_version": rs.RESULT_SCHEMA_VERSION, **valid_result(run_id), **change})
    assert "\n" not in str(err.value)


def test_missing_fields_and_versions(tmp_path):
    run_id = make_id()
    ok = {"schema_version": rs.RESULT_SCHEMA_VERSION, **valid_result(run_id)}
    missing = {k: v for k, v in ok.items() if k not in ("heldout_bits_per_byte", "mfu")}
    with pytest.raises(StoreError, match="heldout_bits_per_byte missing; mfu missing"):
        rs.parse_result(missing)
    with pytest.raises(StoreError, match="no integer 'schema_version'"):
        rs.parse_result({k: v for k, v in ok.items() if k != "schema_version"})
    # A newer file on disk is refused by the reader, naming the file.
    run_dir = tmp_path / "runs" / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "result.json").write_text(json.dumps({**ok, "schema_version": 99}))
    with pytest.raises(StoreError, match=r"result\.json.*newer"):
        rs.read_result(run_dir)
    (run_dir / "result.json").write_text("[1, 2")
    with pytest.raises(StoreError, match="result.json") as err:
        rs.read_result(run_dir)
    assert "\n" not in str(err.value)
    # write_result validates before writing, and writes nothing when the result is bad.
    (run_dir / "result.json").unlink()
    lease = RunStore(tmp_path).acquire(run_id)
    with pytest.raises(StoreError, match="missing"):
        lease.write_result({"family": "griffin"})
    assert not (run_dir / "result.json").exists()


def test_schema_1_results_still_read_with_the_data_source_from_the_config(tmp_path):
    """The layout before data_source and mfu_kind existed (as earlier sessions' stores hold)."""
    run_id = make_id()
    store = RunStore(tmp_path)
    store.init_run(run_id, {"data": {"source": "selective_copy"}})
    added = ("data_source", "mfu_kind", "mfu_chip", "mfu_chips")
    v1 = {k: v for k, v in valid_result(run_id).items() if k not in added}
    (tmp_path / "runs" / run_id / "result.json").write_text(json.dumps({"schema_version": 1, **v1}))
    result = store.read_result(run_id)
    assert result.schema_version == rs.RESULT_SCHEMA_VERSION
    assert result.data_source == "selective_copy"
    assert result.mfu_kind == "fraction_of_measured_matmul_peak"  # schema 1 always divided by the measured peak
    assert (result.mfu_chip, result.mfu_chips) == (None, None)
    # Without a config at hand the source is unknown, not guessed.
    assert rs.parse_result({"schema_version": 1, **v1}).data_source is None
    assert rs.parse_result({"schema_version": 1, **v1, "mfu": None}).mfu_kind is None


def test_schema_2_results_still_read_with_the_measured_kind_renamed(tmp_path):
    """Schema 2 named the measured-peak kind 'exact_over_measured_matmul_peak' and had no chip
    fields; it reads as this schema with the kind's new name, from a store and leniently (W&B)."""
    run_id = make_id()
    v2 = {k: v for k, v in valid_result(run_id).items() if k not in ("mfu_chip", "mfu_chips")}
    v2 = {**v2, "schema_version": 2, "mfu_kind": "exact_over_measured_matmul_peak"}
    store = RunStore(tmp_path)
    store.init_run(run_id, {"data": {"source": "embedded"}})
    (tmp_path / "runs" / run_id / "result.json").write_text(json.dumps(v2))
    for result in (store.read_result(run_id), rs.parse_result(v2, strict=False)):
        assert result.schema_version == rs.RESULT_SCHEMA_VERSION
        assert (result.mfu, result.mfu_kind) == (0.21, "fraction_of_measured_matmul_peak")
        assert (result.mfu_chip, result.mfu_chips) == (None, None)
    assert rs.parse_result({**v2, "mfu": None, "mfu_kind": None}).mfu_kind is None
    # Only the old name is renamed; a schema-2 file is otherwise checked as strictly as ever.
    with pytest.raises(StoreError, match="mfu_kind: input should be"):
        rs.parse_result({**v2, "mfu_kind": "vendor"})
    with pytest.raises(StoreError, match="mfu_kind missing"):
        rs.parse_result({k: v for k, v in v2.items() if k != "mfu_kind"})


def test_lenient_parsing_for_w_and_b_summaries():
    """W&B may hand back 1000.0 for an int; lenient parsing accepts it, strict does not."""
    run_id = make_id()
    data = {"schema_version": rs.RESULT_SCHEMA_VERSION, **valid_result(run_id), "params_total": 1000.0}
    with pytest.raises(StoreError, match="params_total"):
        rs.parse_result(data)
    assert rs.parse_result(data, strict=False).params_total == 1000

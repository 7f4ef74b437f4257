"""run_store.ids: canonical JSON and content-addressed run ids."""

from __future__ import annotations

import decimal
import json

import pytest

import run_store as rs
from store_helpers import SEMANTIC, make_id


def test_run_id_is_stable_and_content_addressed():
    run_id = make_id()
    assert run_id.startswith("griffin-cpu-s-20tpp-")
    assert len(run_id.rsplit("-", 1)[1]) == rs.HASH_LENGTH
    # Same content, other spellings: key order, tuples vs lists, 1e-3 vs 0.001, 1 vs 1.0.
    respelled = {
        "seed": 0.0,
        "budget": {"tokens": 1e6},
        "data": {"batch": 8, "seq_len": 128},
        "optim": {"betas": [0.9, 0.95], "warmup": 100.0, "lr": decimal.Decimal("0.001")},
        "model": {"block_pattern": ["recurrent", "recurrent", "local_attention"], "depth": 2, "width": 64},
    }
    assert make_id(respelled) == run_id
    assert make_id(dict(SEMANTIC)) == run_id


def test_paths_and_logging_do_not_change_the_id():
    # The caller hashes only the semantic part of its full config.
    def full(**non_semantic):
        return {**SEMANTIC, "paths": {"root": "/somewhere"}, "logger": {"wandb": "online"}, **non_semantic}

    def semantic_part(cfg):
        return {k: cfg[k] for k in ("model", "optim", "data", "budget", "seed")}

    a = full()
    b = full(paths={"root": "/elsewhere", "ckpt": "gs://bucket"}, logger={"wandb": "offline"},
             launcher={"num_cpus": 4})
    assert make_id(semantic_part(a)) == make_id(semantic_part(b))


@pytest.mark.parametrize("change", [
    lambda s: s["model"].update(width=128),
    lambda s: s["optim"].update(lr=2e-3),
    lambda s: s.update(seed=1),
    lambda s: s["data"].update(seq_len=256),
    lambda s: s["budget"].update(tokens=2_000_000),
    lambda s: s["model"].update(extra=None),
])
def test_any_semantic_change_changes_the_id(change):
    changed = json.loads(json.dumps(SEMANTIC))
    change(changed)
    assert make_id(changed) != make_id()


def test_labels_corpus_and_numerics_version_enter_the_id():
    base = make_id()
    assert make_id(corpus_fingerprint="other") != base
    assert make_id(numerics_version="999") != base
    assert make_id(budget="1e15F") != base
    assert make_id(family="hawk").split("-", 1)[1] != base.split("-", 1)[1]
    with pytest.raises(ValueError, match="size label"):
        make_id(size="a/b")


def test_canonical_json():
    assert rs.canonical_json({"b": 1e-3, "a": (1, 2.0)}) == '{"a":[1,2],"b":0.001}'
    special = {"x": -0.0, "y": float("nan"), "z": float("inf")}
    assert rs.canonical_json(special) == '{"x":0,"y":"NaN","z":"Infinity"}'
    assert rs.canonical_json(0.1 + 0.2) == "0.30000000000000004"  # floats are never rounded
    with pytest.raises(TypeError, match="config.a"):
        rs.canonical_json({"a": {1: 2}})
    with pytest.raises(TypeError, match="cannot canonicalise"):
        rs.canonical_json({"a": object()})

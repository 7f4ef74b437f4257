"""Strategies, meshes and the logical-axis rule table (plain Python, no devices)."""

from __future__ import annotations

import pytest

from griffin_core.config import ConfigError
from griffin_core.parallelism import check_batch, check_model, check_settings, resolve_mesh
from griffin_core.sizes import model_config


def test_mesh_fills_the_strategy_axis_or_the_one_marked():
    assert resolve_mesh("dp", {}, 8).sizes == {"data": 8, "fsdp": 1, "tensor": 1}
    assert resolve_mesh("fsdp", {}, 8).sizes == {"data": 1, "fsdp": 8, "tensor": 1}
    assert resolve_mesh("fsdp_tp", {"tensor": 4}, 16).sizes == {"data": 1, "fsdp": 4, "tensor": 4}
    assert resolve_mesh("fsdp_tp", {"data": -1, "fsdp": 2, "tensor": 2}, 16).sizes == {"data": 4, "fsdp": 2, "tensor": 2}
    assert resolve_mesh("dp", {"data": 2, "fsdp": 2, "tensor": 2}, 8).devices == 8


@pytest.mark.parametrize("strategy, sizes, devices, message", [
    ("zero", {}, 8, "trainer.strategy='zero' is unknown"),
    ("dp", {"data": 3}, 8, "is not the device count 8"),
    ("fsdp_tp", {"tensor": 3}, 8, "do not divide the 8 devices"),
    ("dp", {"data": -1, "fsdp": -1}, 8, "only one axis may be -1"),
    ("dp", {"data": 0}, 8, "trainer.mesh.data=0 must be a positive integer or -1"),
    ("dp", {"pipeline": 2}, 8, "unknown axes ['pipeline']"),
])
def test_bad_meshes_are_named(strategy, sizes, devices, message):
    with pytest.raises(ConfigError, match=None) as err:
        resolve_mesh(strategy, sizes, devices)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_rules_are_named():
    with pytest.raises(ConfigError, match=r"trainer.axis_rules.heads: unknown logical axis"):
        resolve_mesh("dp", {}, 8, {"heads": "tensor"})
    with pytest.raises(ConfigError, match=r"unknown mesh axes \['model'\]"):
        resolve_mesh("dp", {}, 8, {"mlp": "model"})


def test_rules_follow_the_paper_under_fsdp_tp():
    mesh = resolve_mesh("fsdp_tp", {"fsdp": 4, "tensor": 2}, 8)
    d, m, r, hd = 64, 192, 88, 16
    # MLP: up-projections on their output, down on its input; FSDP takes the other dimension.
    assert mesh.spec(("embed", "mlp"), (d, m)) == ("fsdp", "tensor")
    assert mesh.spec(("mlp", "embed"), (m, d)) == ("tensor", "fsdp")
    # MQA: query heads split, the key/value head replicated over tensor.
    assert mesh.spec(("embed", "q_heads"), (d, d)) == ("fsdp", "tensor")
    assert mesh.spec(("embed", "kv"), (d, hd)) == ("fsdp", None)
    # Recurrent block: D_RNN split, the gates by whole blocks, Conv1D by channel.
    assert mesh.spec(("embed", "rnn"), (d, r)) == ("fsdp", "tensor")
    assert mesh.spec(("rnn_block", "rnn_gate", None), (8, 11, 11)) == ("tensor", None, None)
    assert mesh.spec(("conv", "rnn"), (4, r)) == (None, "tensor")
    # Embedding on the vocabulary; activations: batch over data x fsdp, logits on vocab.
    assert mesh.spec(("vocab", "embed"), (256, d)) == ("tensor", "fsdp")
    assert mesh.spec(("batch", "length", "act_vocab"), (8, 16, 256)) == ("fsdp", None, "tensor")
    assert mesh.spec(("batch", "length", "act_embed"), (8, 16, d)) == ("fsdp", None, None)
    # Scanned layers are never split; a dimension that does not divide stays whole.
    assert mesh.spec(("layers", "embed", "mlp"), (4, d, m)) == (None, "fsdp", "tensor")
    assert mesh.spec(("embed", "mlp"), (6, 7)) == (None, None)


def test_fsdp_shards_every_large_parameter_and_dp_none():
    fsdp = resolve_mesh("fsdp", {}, 8)
    assert fsdp.spec(("embed", "mlp"), (64, 192)) == ("fsdp", None)
    assert fsdp.spec(("rnn_block", "rnn_gate", None), (8, 16, 16)) == ("fsdp", None, None)
    assert fsdp.spec(("rnn_block", "rnn_gate", None), (4, 16, 16)) == (None, "fsdp", None)
    assert fsdp.spec(("batch", "length"), (16, 32)) == ("fsdp", None)
    dp = resolve_mesh("dp", {"data": 2, "fsdp": 4}, 8)
    assert dp.spec(("embed", "mlp"), (64, 192)) == (None, None)
    assert dp.spec(("batch", "length"), (16, 32)) == (("data", "fsdp"), None)


def test_overrides_come_first():
    mesh = resolve_mesh("fsdp_tp", {"tensor": 2}, 8, {"vocab": None, "act_vocab": None})
    assert mesh.spec(("vocab", "embed"), (256, 64)) == (None, "fsdp")


def test_tensor_size_must_divide_heads_mlp_and_gate_blocks():
    cfg = model_config("griffin", "cpu-190k", 256)  # 4 heads, 8 gate blocks
    check_model(cfg, resolve_mesh("fsdp_tp", {"tensor": 4}, 8))
    with pytest.raises(ConfigError, match=r"trainer.mesh.tensor=8 does not divide model.num_heads=4"):
        check_model(cfg, resolve_mesh("fsdp_tp", {"tensor": 8}, 8))
    with pytest.raises(ConfigError, match=r"model.num_gate_blocks=8"):
        check_settings("fsdp_tp", {"tensor": 16}, None, cfg.replace(num_heads=16))
    with pytest.raises(ConfigError, match=r"trainer.microbatches=2: the batch of 8 sequences"):
        check_batch(resolve_mesh("dp", {}, 8), 8, 2)

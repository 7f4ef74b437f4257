"""Model configs: presets, counts that the planner relies on, and one clear error per bad field."""

from __future__ import annotations

import subprocess
import sys

import pytest

from griffin_core import ConfigError, ModelConfig, model_config
from griffin_core.counting import count_params
from griffin_core.sizes import ALL_SIZES, CPU_SIZES, PAPER_SIZES, get_size


def test_config_modules_import_without_jax():
    code = ("import sys, griffin_core, griffin_core.config, griffin_core.sizes, griffin_core.counting; "
            "assert 'jax' not in sys.modules, 'jax was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_family_patterns():
    assert model_config("mqa", "cpu-30k", 256).block_types == ("attention",) * 3
    assert model_config("hawk", "cpu-30k", 256).block_types == ("recurrent",) * 3
    assert model_config("griffin", "cpu-80k", 256).block_types == (
        "recurrent", "recurrent", "local_attention", "recurrent", "recurrent")
    custom = model_config("custom", "cpu-80k", 256, block_pattern=("recurrent", "attention"))
    assert custom.block_types == ("recurrent", "attention", "recurrent", "attention", "recurrent")


def test_paper_rows_match_reference_counts():
    """Hawk's non-embedding counts with 16 gate blocks: about 94M ... 14.8B; Griffin a little
    below; MQA about 0.8x (hence the paper's 'MQA 6B')."""
    expected = {"100M": 94e6, "200M": 174e6, "400M": 375e6, "1.3B": 1.30e9, "3B": 3.0e9,
                "7B": 7.2e9, "14B": 14.8e9}
    for name, value in expected.items():
        hawk = count_params(model_config("hawk", name, 256_000)).non_embedding
        griffin = count_params(model_config("griffin", name, 256_000)).non_embedding
        mqa = count_params(model_config("mqa", name, 256_000)).non_embedding
        assert abs(hawk / value - 1) < 0.02, (name, hawk)
        assert 0.9 * hawk < griffin < hawk
        assert 0.75 * hawk < mqa < 0.87 * hawk


def test_cpu_ladder_shape_and_range():
    totals = [count_params(model_config("hawk", n, 256)).total for n in CPU_SIZES]
    assert totals == sorted(totals)
    assert 25e3 < totals[0] < 40e3 and 1.2e6 < totals[-1] < 1.6e6
    for spec in CPU_SIZES.values():
        assert spec.depth >= 3
        assert abs(spec.lru_width / spec.width - 4 / 3) < 0.25
        model_config("griffin", spec.name, 256)  # has an attention layer


HAWK = dict(family="hawk", vocab_size=32, width=16, depth=3, num_heads=2, lru_width=24, num_gate_blocks=4)
MAMBA2 = dict(HAWK, family="mamba2", ssm_state=4, ssm_head_dim=8)


@pytest.mark.parametrize("base,field,value,match", [
    (HAWK, "num_heads", 5, "num_heads=5 .*divide width=16"),
    (HAWK, "num_gate_blocks", 5, "num_gate_blocks=5 .*divide lru_width=24"),
    (HAWK, "local_window", 0, "local_window=0"),
    (HAWK, "depth", 0, "depth=0"),
    (HAWK, "width", -4, "width=-4"),
    (HAWK, "block_pattern", ("recurrent", "mamba"), "block_pattern=.*'mamba'.*recurrent"),
    (HAWK, "dtype", "float16", "dtype='float16'.*bfloat16"),
    (HAWK, "scan_impl", "triton", "scan_impl='triton'"),
    (HAWK, "lambda_init", "zeros", "lambda_init='zeros'"),
    (HAWK, "rope_fraction", 1.5, "rope_fraction=1.5"),
    (HAWK, "vocab_size", 2.5, "vocab_size=2.5"),
    (MAMBA2, "ssm_head_dim", 7, "ssm_head_dim=7 .*divide the mixer's inner width ssm_expand \\* width = 32"),
    (MAMBA2, "ssm_state", 0, "ssm_state=0 .*positive integer"),
    (MAMBA2, "ssm_chunk", 0, "ssm_chunk=0 .*positive integer"),
    (MAMBA2, "ssm_groups", 3, "ssm_groups=3 .*divide the mixer's 4 heads"),
    (MAMBA2, "ssm_expand", 1.5, "ssm_expand=1.5 .*positive integer"),
    (MAMBA2, "mlp_expansion", -1, "mlp_expansion=-1 .*non-negative"),
    (MAMBA2, "block_pattern", ("mamba2", "mamba3"), "block_pattern=.*'mamba3'.*mamba2"),
])
def test_bad_fields_raise_one_clear_error(base, field, value, match):
    with pytest.raises(ConfigError, match=match) as info:
        ModelConfig(**{**base, field: value})
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(f"model.{field}=")


def test_mamba2_fields_matter_only_with_a_mamba2_block():
    """A Hawk config ignores the Mamba-2 fields (checked and hashed only with a 'mamba2' block)."""
    hawk = ModelConfig(family="hawk", vocab_size=32, width=16, depth=3, num_heads=2, lru_width=24,
                       num_gate_blocks=4, ssm_head_dim=7)
    assert "ssm_head_dim" not in hawk.identity() and "ssm_head_dim" in hawk.to_dict()
    mamba = model_config("mamba2", "cpu-50k", 256)
    assert mamba.mlp_expansion == 0 and mamba.identity()["ssm_state"] == 10
    assert model_config("mamba2_mlp", "cpu-50k", 256).mlp_expansion == 3


def test_mamba2_matches_hawk_parameters_at_every_row():
    """The authors' stack (no MLPs, about twice the layers) within 5% of Hawk's non-embedding
    parameters at every paper and CPU row."""
    for name in ALL_SIZES:
        vocab = 256_000 if name in PAPER_SIZES else 256
        hawk = count_params(model_config("hawk", name, vocab)).non_embedding
        mamba_cfg = model_config("mamba2", name, vocab)
        mamba = count_params(mamba_cfg).non_embedding
        assert abs(mamba / hawk - 1) < 0.05, (name, mamba, hawk)
        assert 1.5 < mamba_cfg.depth / get_size(name).depth < 2.5
    assert model_config("mamba2", "100M", 256_000).depth == 25  # mamba2-130m has 24 at D = 768 (V = 50K)
    assert model_config("mamba2", "100M", 256_000, depth=24).depth == 24  # an explicit depth wins


def test_griffin_needs_an_attention_layer():
    with pytest.raises(ConfigError, match="depth=2.*no attention layer"):
        ModelConfig(family="griffin", vocab_size=32, width=16, depth=2, num_heads=2, lru_width=24, num_gate_blocks=4)


def test_unknown_family_and_size():
    with pytest.raises(ConfigError, match="family='transformer' is unknown.*griffin"):
        model_config("transformer", "cpu-30k", 256)
    with pytest.raises(ConfigError, match="size='cpu-huge' is unknown"):
        model_config("hawk", "cpu-huge", 256)


def test_dict_round_trip_and_unknown_keys():
    cfg = model_config("griffin", "100M", 256_000)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="no field.*'widht'"):
        ModelConfig.from_dict({**cfg.to_dict(), "widht": 3})


def test_every_size_row_is_valid_for_every_family():
    for name in ALL_SIZES:
        for family in ("mqa", "hawk", "griffin", "mamba2", "mamba2_mlp"):
            model_config(family, name, 256)
    assert set(PAPER_SIZES) == {"100M", "200M", "400M", "1.3B", "3B", "7B", "14B"}

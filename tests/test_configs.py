"""Every config group option and every experiment preset composes and validates; bad
overrides give one line naming the key."""

from __future__ import annotations

import pathlib

import pytest

import conf
from experiments.configuration import UsageError, compose, hydra_context, to_dict
from experiments.spec import validate
from griffin_core.sizes import ALL_SIZES

CONF_DIR = pathlib.Path(conf.__file__).parent
REQUIRED = {"data": {"text": ["data.path=x"], "tokens": ["data.path=x", "data.vocab_size=300"],
                     "hf": ["data.hf_dataset=x"]}}


def _options(group):
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def test_conf_ships_inside_the_package():
    assert (CONF_DIR / "config.yaml").is_file() and _options("data") and _options("optim")


@pytest.mark.parametrize("group", ["data", "optim", "trainer", "logger", "launcher"])
def test_every_group_option_composes(group):
    for option in _options(group):
        extra = REQUIRED.get(group, {}).get(option, [])
        spec = validate(to_dict(compose([f"{group}={option}", *extra])))
        assert spec.schedule.steps >= 1


def test_every_family_and_size_composes():
    for family in ("mqa", "hawk", "griffin", "mamba2", "mamba2_mlp"):
        for size in ALL_SIZES:
            spec = validate(to_dict(compose([f"family={family}", f"size={size}"])))
            assert spec.model.family == family and spec.size == size


def test_mamba2_takes_the_depth_matching_hawk_and_the_rows_state():
    spec = validate(to_dict(compose(["family=mamba2", "size=cpu-190k"])))
    assert (spec.model.depth, spec.model.mlp_expansion, spec.model.ssm_state, spec.model.ssm_head_dim) == (6, 0, 16, 8)
    mlp = validate(to_dict(compose(["family=mamba2_mlp", "size=cpu-190k", "model.ssm_chunk=32"])))
    assert (mlp.model.depth, mlp.model.mlp_expansion, mlp.model.ssm_chunk) == (3, 3, 32)
    # The chunk is an execution field: the run id does not change with it.
    assert "ssm_chunk" not in mlp.semantic()["model"]


def test_every_experiment_preset_composes():
    """Each preset's first grid point composes and validates (all points: the dry-run test)."""
    from launch.grid import expand

    for preset in _options("experiment"):
        grid = expand([f"experiment={preset}"]).points
        cfg = to_dict(compose(grid[0]))
        validate(cfg)
        assert cfg["experiment"]["name"] == preset


@pytest.mark.parametrize("override,match", [
    (["family=transformer"], "family"),
    (["size=cpu-huge"], "size"),
    (["trainer.batch_size=abc"], "trainer.batch_size"),
    (["optim.lrr=1e-3"], "optim.lrr"),
    (["family=hawk,griffin"], "family"),
    (["trainer.seed=[1"], "trainer.seed"),
])
def test_bad_overrides_are_one_line(override, match):
    with pytest.raises(UsageError, match=match) as info:
        compose(override)
    assert "\n" not in str(info.value)


def test_composes_inside_one_open_context_equal_fresh_ones():
    """A plan composes all its points inside one hydra_context: the same configs as composing
    each alone, and a bad point's error leaves the context usable for the next."""
    points = [["family=hawk", "size=cpu-30k"], ["experiment=scaling_cpu", "family=griffin", "optim.lr_ref=1e-3"]]
    fresh = [to_dict(compose(p)) for p in points]
    with hydra_context():
        with pytest.raises(UsageError, match="size"):
            compose(["size=cpu-huge"])
        shared = [to_dict(compose(p)) for p in points]
        with hydra_context():  # nested: reuses the open one
            assert to_dict(compose(points[0])) == fresh[0]
    assert shared == fresh
    assert to_dict(compose(points[1])) == fresh[1]  # and a fresh one works after it closed


def test_model_size_and_optimiser_fields_are_griffin_cores():
    """The Hydra schemas of family, size, model and optim are derived from griffin_core's
    dataclasses: the composed defaults are the dataclasses' defaults, field for field."""
    import dataclasses

    import conf.schema as schema
    from experiments.configuration import compose, to_dict
    from griffin_core.config import FAMILY_FIELDS, NUMERICS_FIELDS, ModelConfig
    from griffin_core.optim_config import OptimSettings, OptimSpec
    from griffin_core.sizes import SizeSpec

    cfg = to_dict(compose(["family=hawk", "size=cpu-30k"]))
    assert cfg["optim"] == dataclasses.asdict(OptimSettings())
    reference = ModelConfig(family="hawk", vocab_size=256, width=16, depth=1, num_heads=1, lru_width=16)
    for field in FAMILY_FIELDS + NUMERICS_FIELDS:
        if field != "block_pattern":
            assert cfg["family" if field in FAMILY_FIELDS else "model"][field] == getattr(reference, field), field
    assert {f.name for f in dataclasses.fields(schema.SizeConf)} == {f.name for f in dataclasses.fields(SizeSpec)}
    assert OptimSpec(lr=1.0, total_steps=1, warmup_steps=0).beta2 == OptimSettings().beta2
    # Derived, not copied: a new default in griffin_core is the schema's at once.
    @dataclasses.dataclass(frozen=True)
    class Settings:
        beta1: float = 0.5
        pattern: tuple[str, ...] = ("a", "b")
        lr: float | None = None

    derived = schema.derived("S", Settings, ["beta1", "pattern", "lr"], "test")
    made = derived()
    assert (made.beta1, made.pattern, made.lr) == (0.5, ["a", "b"], None)

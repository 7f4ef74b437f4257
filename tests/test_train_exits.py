"""The checkpointer is closed on every way out of a run, its asynchronous save finished first:
a run that diverges right after a save, and one whose loop raises after a save. (A normal run:
tests/test_train.py; a kill mid-save: tests/test_resume_and_mesh.py.)"""

from __future__ import annotations

import pathlib

import pytest

import experiments.train as train_module
from experiments.cli import train_main
from griffin_core.checkpoint import Checkpointer

TINY = ["family=hawk", "size=cpu-30k", "data.seq_len=16", "trainer.batch_size=4", "trainer.budget.rule=steps",
        "trainer.budget.value=6", "trainer.checkpoint_every=2", "trainer.eval_every=0",
        "logger.wandb.mode=disabled", "--quiet"]


class SpyCheckpointer(Checkpointer):
    """Saves asynchronously (as on accelerators) and records whether it was closed with its
    last save finished."""

    closed: list[bool] = []

    def __init__(self, directory, *args, **kwargs):
        self.writer = not kwargs.get("read_only", False)
        kwargs["async_save"] = self.writer
        super().__init__(directory, *args, **kwargs)
        self.directory = pathlib.Path(directory)

    def close(self) -> None:
        if self._manager is not None:
            super().close()
            if self.writer:
                SpyCheckpointer.closed.append(not any("tmp" in p.name for p in self.directory.iterdir()))


@pytest.fixture
def spy(monkeypatch):
    SpyCheckpointer.closed = []
    monkeypatch.setattr(train_module, "Checkpointer", SpyCheckpointer)
    return SpyCheckpointer


def _run(tmp_path) -> tuple[int, pathlib.Path]:
    code = train_main([*TINY, f"store.root={tmp_path / 'store'}"])
    (run,) = (tmp_path / "store" / "runs").iterdir()
    return code, run


def test_a_run_diverging_after_a_save_closes_the_checkpointer(spy, tmp_path, monkeypatch):
    real = train_module.DivergenceMonitor.check
    monkeypatch.setattr(train_module.DivergenceMonitor, "check",
                        lambda self, step, loss: "injected divergence" if step == 3 else real(self, step, loss))
    code, run = _run(tmp_path)
    assert code != 0 and '"DIVERGED"' in (run / "status.json").read_text()
    assert spy.closed == [True]  # closed once, the asynchronous save of step 2 complete
    assert (run / "ckpt" / "2").is_dir()


def test_an_exception_after_a_save_closes_the_checkpointer(spy, tmp_path, monkeypatch):
    real = Checkpointer.save

    def save_then_fail(self, step, state):
        real(self, step, state)
        if step == 4:
            raise RuntimeError("injected failure after a save")

    monkeypatch.setattr(SpyCheckpointer, "save", save_then_fail)
    with pytest.raises(RuntimeError, match="injected failure"):
        _run(tmp_path)
    assert spy.closed == [True]
    (run,) = (tmp_path / "store" / "runs").iterdir()
    assert sorted(p.name for p in (run / "ckpt").iterdir() if p.name.isdigit()) == ["2", "4"]

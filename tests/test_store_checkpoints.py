"""run_store.checkpoints: which locations Orbax writes itself, and the staging of the others
(here an fsspec `memory://` root, which Orbax cannot write either): finished steps uploaded and
marked complete, old ones pruned, a cut-off upload never read, a real Orbax checkpoint
restored from the bucket in a fresh folder."""

from __future__ import annotations

import os
import uuid

import pytest

from run_store.checkpoints import COMPLETE, CheckpointFolder, orbax_writes


@pytest.fixture
def remote():
    import fsspec

    root = f"memory://ckpt-{uuid.uuid4().hex[:8]}"
    yield root, fsspec.filesystem("memory")
    fsspec.filesystem("memory").rm(root, recursive=True)


def _step(folder: str, name: str, payload: bytes = b"x") -> None:
    os.makedirs(os.path.join(folder, name, "params", "d"), exist_ok=True)
    with open(os.path.join(folder, name, "params", "d", "blob"), "wb") as f:
        f.write(payload)
    with open(os.path.join(folder, name, "_CHECKPOINT_METADATA"), "wb") as f:
        f.write(b"{}")


@pytest.mark.parametrize("location, direct", [
    ("results/runs/a/ckpt", True), ("/abs/ckpt", True), ("gs://b/r/ckpt", True), ("s3://b/r/ckpt", False),
    ("memory://r/ckpt", False)])
def test_orbax_writes_local_folders_and_gcs_itself(location, direct):
    assert orbax_writes(location) is direct
    with CheckpointFolder(location) as folder:
        assert folder.staged is not direct
        if direct:  # Orbax gets the place itself (a local one made absolute)
            assert folder.path == (location if location.startswith("gs://") else os.path.abspath(location))
        else:  # a fresh local folder
            assert os.path.isdir(folder.path) and not os.listdir(folder.path)
        assert folder.push() == []  # nothing finished: not even a request


def test_finished_steps_go_up_marked_complete_and_old_ones_are_pruned(remote):
    root, fs = remote
    location = f"{root}/runs/r/ckpt"
    with CheckpointFolder(location) as folder:
        assert folder.pull() is None
        _step(folder.path, "2")
        _step(folder.path, "4.orbax-checkpoint-tmp-17")  # Orbax has not finished this one
        assert folder.push() == [2]
        assert folder.push() == []  # nothing new: no upload
        assert fs.exists(f"{location}/2/{COMPLETE}") and fs.cat_file(f"{location}/2/params/d/blob") == b"x"
        assert not fs.exists(f"{location}/4.orbax-checkpoint-tmp-17")
        os.rename(os.path.join(folder.path, "4.orbax-checkpoint-tmp-17"), os.path.join(folder.path, "4"))
        _step(folder.path, "6")
        import shutil

        shutil.rmtree(os.path.join(folder.path, "2"))  # Orbax keeps two
        assert folder.push() == [4, 6]
        staging = folder.path
    assert not os.path.exists(staging)  # the staging folder goes with the run
    assert sorted(n.rsplit("/", 1)[-1] for n in fs.ls(location, detail=False)) == ["4", "6"]


def test_a_cut_off_upload_is_never_read(remote):
    root, fs = remote
    location = f"{root}/runs/r/ckpt"
    with CheckpointFolder(location) as folder:
        _step(folder.path, "4", b"four")
        folder.push()
    fs.pipe_file(f"{location}/6/params/d/blob", b"half")  # an upload cut off before its mark
    with CheckpointFolder(location) as folder:
        assert folder.pull() == 4
        assert sorted(os.listdir(folder.path)) == ["4"]
        assert not os.path.exists(os.path.join(folder.path, "4", COMPLETE))
        with open(os.path.join(folder.path, "4", "params", "d", "blob"), "rb") as f:
            assert f.read() == b"four"
        _step(folder.path, "8")
        folder.push()  # the half upload is removed with the other steps Orbax does not keep
    assert sorted(n.rsplit("/", 1)[-1] for n in fs.ls(location, detail=False)) == ["4", "8"]


def test_an_orbax_checkpoint_restores_from_the_bucket(remote):
    import flax
    import jax
    import jax.numpy as jnp

    from griffin_core.checkpoint import Checkpointer, abstract_like

    @flax.struct.dataclass
    class State:
        step: jax.Array
        params: dict
        opt_state: dict

    root, _ = remote
    location = f"{root}/runs/r/ckpt"
    state = State(step=jnp.asarray(3), params={"w": jnp.arange(6.0).reshape(2, 3)}, opt_state={"m": jnp.ones(3)})
    with CheckpointFolder(location) as folder:
        with Checkpointer(folder.path) as ckpt:
            ckpt.save(3, state)
        assert folder.push() == [3]
    with CheckpointFolder(location) as folder:
        assert folder.pull() == 3
        with Checkpointer(folder.path, read_only=True) as ckpt:
            assert ckpt.latest_step() == 3
            back = ckpt.restore(3, abstract_like(state))
    assert int(back.step) == 3 and (back.params["w"] == state.params["w"]).all() and (back.opt_state["m"] == 1).all()

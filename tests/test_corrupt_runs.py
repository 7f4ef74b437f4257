"""Damaged run folders: a checkpoint Orbax cannot read and a corrupt config.yaml give one line
naming the file or folder, exit code 2, and a store left as it was (a resume used to print
Orbax's 149-line traceback and mark the run FAILED; griffin-eval called a corrupt config.yaml
"no config.yaml")."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from bad_input_setups import TINY
from doc_rows import Rows
from experiments.cli import train_main
from experiments.evaluate import main as eval_main
from run_store import RunStore

REPO = pathlib.Path(__file__).resolve().parents[1]
ROWS = Rows(expected=3)
"""docs/bad_input.md rows: the cases whose line is the same on every run (which array's read
fails first in a truncated checkpoint is not)."""


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> pathlib.Path:
    """A finished run with checkpoints at steps 2 and 4: its store root."""
    root = tmp_path_factory.mktemp("finished") / "store"
    assert train_main([*TINY, "trainer.checkpoint_every=2", f"store.root={root}"]) == 0
    return root


def _run(root: pathlib.Path) -> pathlib.Path:
    (run_id,) = RunStore(root).list_runs()
    return root / "runs" / run_id


def _interrupted(finished: pathlib.Path, folder: pathlib.Path) -> pathlib.Path:
    """A copy of the finished run as one killed long ago: RUNNING, an old heartbeat, no result."""
    root = folder / "store"
    shutil.copytree(finished, root)
    run = _run(root)
    status = json.loads((run / "status.json").read_text())
    (run / "status.json").write_text(json.dumps({**status, "state": "RUNNING", "heartbeat": 1000.0, "updated": 1000.0}))
    (run / "result.json").unlink()
    return root


def _damage(step_folder: pathlib.Path, how: str) -> None:
    if how == "truncated data":
        for f in (step_folder / "params" / "ocdbt.process_0" / "d").iterdir():
            f.write_bytes(b"")
    elif how == "garbled metadata":
        (step_folder / "params" / "_METADATA").write_text("garbage")
    elif how == "params missing":
        shutil.rmtree(step_folder / "params")


def _snapshot(folder: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"<dir>" for p in sorted(folder.rglob("*"))}


def _call(main, args, capsys) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = main(args)
    return code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


@pytest.mark.parametrize("how", ["truncated data", "garbled metadata", "params missing"])
def test_griffin_eval_of_an_unreadable_checkpoint_is_one_line(finished, tmp_path, capsys, how):
    root = tmp_path / "store"
    shutil.copytree(finished, root)
    run = root / "runs" / "hawk-cpu-30k-4st-000000000bad"  # the run copied under another name
    _run(root).rename(run)
    _damage(run / "ckpt" / "4", how)
    before = _snapshot(tmp_path)
    code, lines = _call(eval_main, [str(run)], capsys)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"griffin-eval: error: {run / 'ckpt' / '4'}: corrupt checkpoint ("), lines[0]
    assert _snapshot(tmp_path) == before
    if how == "garbled metadata":
        ROWS.record("griffin-eval", "unreadable checkpoint", str(run), lines[0], tmp_path)


@pytest.mark.parametrize("how", ["truncated data", "garbled metadata"])
def test_a_resume_from_an_unreadable_checkpoint_changes_nothing(finished, tmp_path, capsys, how):
    root = _interrupted(finished, tmp_path)
    step = _run(root) / "ckpt" / "4"
    _damage(step, how)
    before = _snapshot(tmp_path)
    code, lines = _call(train_main, [*TINY, f"store.root={root}"], capsys)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"griffin-train: error: {step}: corrupt checkpoint ("), lines[0]
    assert lines[0].endswith(f"; remove {step} to resume from the checkpoint before it (step 2)"), lines[0]
    assert _snapshot(tmp_path) == before, "the resume changed the store (status, lease, metrics or checkpoints)"
    if how == "garbled metadata":
        ROWS.record("griffin-train", "resume from an unreadable checkpoint", "(a store with the damaged file)",
                    lines[0], tmp_path)


def test_removing_the_named_folder_resumes_from_the_step_before(finished, tmp_path, capsys):
    root = _interrupted(finished, tmp_path)
    _damage(_run(root) / "ckpt" / "4", "truncated data")
    shutil.rmtree(_run(root) / "ckpt" / "4")
    code, lines = _call(train_main, [*TINY, f"store.root={root}"], capsys)
    assert code == 0, lines
    store = RunStore(root)
    assert store.status(_run(root).name).state == "SUCCESS"


def test_without_an_older_checkpoint_the_line_says_to_start_again(finished, tmp_path, capsys):
    root = _interrupted(finished, tmp_path)
    shutil.rmtree(_run(root) / "ckpt" / "2")
    step = _run(root) / "ckpt" / "4"
    _damage(step, "truncated data")
    code, lines = _call(train_main, [*TINY, f"store.root={root}"], capsys)
    assert code == 2 and lines[-1].endswith(f"; remove {step} to train the run from its start"), lines


def _command(module: str, args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


def test_the_processes_print_one_line_and_nothing_at_exit(finished, tmp_path):
    """Orbax abandons its other reads when one fails; they used to print tracebacks before the
    line and at exit (asyncio's 'Task exception was never retrieved', 'Event loop is closed')."""
    root = _interrupted(finished, tmp_path)
    step = _run(root) / "ckpt" / "4"
    _damage(step, "truncated data")
    for module, args, prog in [("experiments.evaluate", [str(_run(root))], "griffin-eval"),
                               ("experiments.cli", [*TINY, f"store.root={root}"], "griffin-train")]:
        out = _command(module, args)
        assert out.returncode == 2, out.stderr
        assert out.stderr.startswith(f"{prog}: error: {step}: corrupt checkpoint (") and out.stderr.count("\n") == 1, \
            out.stderr


def test_griffin_eval_of_a_good_checkpoint_prints_no_warnings(finished, tmp_path):
    """Orbax warned about every read-only checkpoint folder on stderr."""
    root = tmp_path / "store"
    shutil.copytree(finished, root)
    out = _command("experiments.evaluate", [str(_run(root))])
    assert out.returncode == 0 and out.stderr == "", out.stderr


@pytest.mark.parametrize("content, reason", [
    ("family: [\n", "while parsing a flow node"),
    ("family: 3\n", "Invalid type assigned: int is not a subclass of FamilyConf"),
    ("optim: {lr: abc}\n", "Value 'abc' of type 'str' could not be converted to Float"),
    ("- a\n", "a mapping was expected, got list"),
])
def test_griffin_eval_names_a_corrupt_config_file(finished, tmp_path, capsys, content, reason):
    """It said 'not a run folder (no config.yaml)', or printed an OmegaConf traceback."""
    root = tmp_path / "store"
    shutil.copytree(finished, root)
    config = _run(root) / "config.yaml"
    config.write_text(content)
    before = _snapshot(tmp_path)
    code, lines = _call(eval_main, [str(_run(root))], capsys)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"griffin-eval: error: {config}: corrupt config file (") and reason in lines[0], lines[0]
    assert _snapshot(tmp_path) == before
    if content == "family: [\n":
        ROWS.record("griffin-eval", "corrupt config file of a run", str(_run(root)), lines[0], tmp_path)


def test_the_doc_lists_these_cases():
    if not ROWS.complete():
        pytest.skip("run with the cases above (the whole module) to compare the messages")
    missing = ROWS.missing()
    assert not missing, "docs/bad_input.md lacks these rows:\n" + "\n".join(missing)

"""Bad values that used to get past validation: infinite or huge budgets, infinite optimiser
and trainer numbers, a list for a config group, a token manifest without its held-out split.
Each is one line on stderr naming the key or file, exit code 2, and nothing written (the same
contract as tests/test_bad_input.py, whose table these cases can join)."""

from __future__ import annotations

import json
import pathlib
import re

import pytest

from bad_input_setups import TINY
from doc_rows import Rows
from experiments.cli import train_main


def _snapshot(folder: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"<dir>" for p in sorted(folder.rglob("*"))}


def _one_line_exit_2(main, args, folder: pathlib.Path, capsys) -> str:
    before = _snapshot(folder)
    capsys.readouterr()
    try:
        code = main(args)
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert _snapshot(folder) == before, "the command changed files"
    return lines[0]


TRAIN_CASES = {
    "infinite steps": (["trainer.budget.value=inf"], r"trainer\.budget\.value=inf must be finite"),
    "infinite FLOPs": (["trainer.budget.rule=flops", "trainer.budget.value=inf"],
                       r"trainer\.budget\.value=inf must be finite"),
    "more steps than int32": (["trainer.budget.value=1e30"],
                              r"trainer\.budget\.value=1e\+30 \(steps\) gives 1e\+30 steps; a run takes at most "
                              r"2,147,483,647"),
    "steps one past int32": ([f"trainer.budget.value={2**31}"], r"trainer\.budget\.value=2147483648\.0 \(steps\)"),
    "FLOPs buying too many steps": (["trainer.budget.rule=flops", "trainer.budget.value=1e300"],
                                    r"trainer\.budget\.value=1e\+300 \(flops\) gives .* steps"),
    "tokens per parameter overflowing a float": (
        ["trainer.budget.rule=tokens_per_param", "trainer.budget.value=1e305"],
        r"trainer\.budget\.value=1e\+305 \(tokens_per_param\) gives inf steps"),
    "less than one step": (["trainer.budget.value=0.5"],
                           r"trainer\.budget\.value=0\.5 \(steps\) is less than one step"),
    "infinite learning rate": (["optim.lr=inf"], r"optim\.lr=inf must be finite"),
    "negative infinite learning rate": (["optim.lr=-inf"], r"optim\.lr=-inf must be finite"),
    "infinite epsilon": (["optim.eps=inf"], r"optim\.eps=inf must be finite"),
    "infinite weight decay": (["optim.weight_decay=inf"], r"optim\.weight_decay=inf must be finite"),
    "infinite clip norm": (["optim.clip_norm=inf"], r"optim\.clip_norm=inf must be finite"),
    "infinite lr multiplier": (["optim.lr_multiplier=inf"], r"optim\.lr_multiplier=inf must be finite"),
    "infinite lr rule exponent": (["optim.lr_exponent=inf"], r"optim\.lr_exponent=inf must be finite"),
    "nan lr rule exponent": (["optim.lr_exponent=nan"], r"optim\.lr_exponent=nan must be a number"),
    "learning rate overflowing": (["optim.lr=1e300", "optim.lr_multiplier=1e300"],
                                  r"optim\.lr_multiplier=1e\+300 gives the learning rate inf"),
    "infinite spike factor": (["trainer.spike_factor=inf"], r"trainer\.spike_factor=inf must be finite"),
    "list of two options for a group": (["family=[hawk,griffin]"],
                         r"family=\[hawk,griffin\]: family is a config group, so its value is one of its options, "
                         r"not a list \(to sweep over several: griffin-sweep family=hawk,griffin\)$"),
    "one-item list for a group": (["size=[cpu-30k]"], r"size=\[cpu-30k\]: .*not a list \(write size=cpu-30k\)$"),
    "list with an unknown option": (["family=[hawk,nope]"],
                                    r"family=\[hawk,nope\]: .*not a list.*; family/nope is not an option either; "
                                    r"available: .*griffin"),
    "comma list for a group": (["family=hawk,griffin"],
                               r"Ambiguous value .*sweep axes belong to griffin-sweep; family is a config group: give "
                               r"one of its options\)$"),
}


DOCUMENTED = ("infinite steps", "infinite FLOPs", "more steps than int32", "less than one step",
              "infinite learning rate", "infinite clip norm", "learning rate overflowing", "infinite spike factor",
              "list of two options for a group")
"""The cases with a row in docs/bad_input.md (with the sweep and data cases below)."""
ROWS = Rows(expected=len(DOCUMENTED) + 4)


@pytest.mark.parametrize("name", list(TRAIN_CASES))
def test_griffin_train_rejects(name, tmp_path, capsys):
    args, expect = TRAIN_CASES[name]
    line = _one_line_exit_2(train_main, [*TINY, f"store.root={tmp_path / 'store'}", *args], tmp_path, capsys)
    assert line.startswith("griffin-train: error: ") and re.search(expect, line), line
    if name in DOCUMENTED:
        ROWS.record("griffin-train", name, " ".join(args), line, tmp_path)


def test_a_list_for_a_group_is_refused_by_cfg_job_too(tmp_path, capsys):
    """--cfg job printed the merged config (family griffin) with exit 0."""
    line = _one_line_exit_2(train_main, [*TINY, "family=[hawk,griffin]", "--cfg", "job"], tmp_path, capsys)
    assert "family is a config group" in line


def test_griffin_sweep_refuses_a_list_for_a_group(tmp_path, capsys):
    """The sweep planned griffin alone and printed an empty axis value."""
    from launch.cli import sweep_main

    args = ["experiment=smoke_cpu", "family=[hawk,griffin]", "--dry-run", f"store.root={tmp_path / 'store'}"]
    line = _one_line_exit_2(sweep_main, args, tmp_path, capsys)
    assert re.search(r"^griffin-sweep: error: family=\[hawk,griffin\]: .*griffin-sweep family=hawk,griffin", line)
    ROWS.record("griffin-sweep", "list for a group in a sweep", " ".join(args), line, tmp_path)


def test_a_sweep_over_an_infinite_budget_names_the_point(tmp_path, capsys):
    from launch.cli import sweep_main

    args = ["experiment=smoke_cpu", "family=hawk", "trainer.budget.value=inf", "--dry-run",
            f"store.root={tmp_path / 'store'}"]
    line = _one_line_exit_2(sweep_main, args, tmp_path, capsys)
    assert re.search(r"grid point .*trainer\.budget\.value=inf must be finite", line), line
    ROWS.record("griffin-sweep", "infinite budget in a sweep", " ".join(args), line, tmp_path)


def _tokens_without_heldout(folder: pathlib.Path) -> pathlib.Path:
    """A prepared token folder (train and held-out shards) whose manifest lost its held-out split."""
    import numpy as np

    from griffin_core.data import manifest as mf

    data = folder / "tok"
    data.mkdir()
    rng = np.random.default_rng(0)
    for split in ("train", "heldout"):
        rng.integers(0, 250, size=4096).astype(np.uint16).tofile(data / f"{split}-00000.bin")
    mf.write_manifest(mf.describe(data, vocab_size=257, eot_token=256))
    manifest = json.loads((data / "manifest.json").read_text())
    del manifest["splits"]["heldout"]
    (data / "manifest.json").write_text(json.dumps(manifest))
    return data


def test_a_manifest_without_its_heldout_split_is_refused_before_the_run_folder(tmp_path, capsys):
    """The run failed inside training: exit 2, but status.json (FAILED) and config.yaml written."""
    data = _tokens_without_heldout(tmp_path)
    line = _one_line_exit_2(train_main, [*TINY, "data=tokens", f"data.path={data}", f"store.root={tmp_path / 'store'}"],
                            tmp_path, capsys)
    assert line == f"griffin-train: error: token data {data}: no file given for the heldout split"
    ROWS.record("griffin-train", "token manifest without its held-out split", f"data=tokens data.path={data}", line,
                tmp_path)


def test_a_sweep_on_a_manifest_without_its_heldout_split_names_it(tmp_path, capsys):
    from launch.cli import sweep_main

    data = _tokens_without_heldout(tmp_path)
    args = ["experiment=smoke_cpu", "family=hawk", "data=tokens", f"data.path={data}", "--no-live",
            f"store.root={tmp_path / 'store'}"]
    line = _one_line_exit_2(sweep_main, args, tmp_path, capsys)
    assert line.endswith(f"token data {data}: no file given for the heldout split"), line
    ROWS.record("griffin-sweep", "sweep on a token manifest without its held-out split", " ".join(args), line, tmp_path)


def test_the_doc_lists_these_cases():
    if not ROWS.complete():
        pytest.skip("run with the cases above (the whole module) to compare the messages")
    missing = ROWS.missing()
    assert not missing, "docs/bad_input.md lacks these rows:\n" + "\n".join(missing)

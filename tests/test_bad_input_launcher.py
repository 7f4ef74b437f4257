"""Bad launcher settings, bad store roots and a damaged store under griffin-sweep: one line on
stderr naming the key or file, exit code 2, within seconds, and every file as it was (the case's
folder is the working directory too, so a root taken for a relative folder shows up).

Sweeps that get past their plan run in a child process: its whole stderr is checked (Ray's own
lines, printed when Ray starts, included) and a hang is a timeout, not a stuck suite. The rows of
docs/bad_input.md for these cases are checked at the end (`test_the_doc_lists_these_cases`)."""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time
from typing import Callable

import pytest

from bad_input_setups import TINY, Case  # griffin-train's cases pass TINY first (as test_bad_input.py does)

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "bad_input.md"
TRAIN = "griffin-train"
SWEEP = "griffin-sweep"
SMOKE = ["experiment=smoke_cpu", "family=hawk", "size=cpu-30k", "trainer.budget.value=4", "store.root={dir}/store",
         "logger.wandb.mode=disabled", "--no-live"]
CLOSED = {"AWS_ENDPOINT_URL": "http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s",
          "AWS_EC2_METADATA_DISABLED": "true"}
"""A bucket endpoint on a closed port of 127.0.0.1, fake credentials."""


def _store_with(damage: str) -> Callable[[pathlib.Path], None]:
    """{dir}/store: SMOKE's run and its sweep manifest, then the run finished with a corrupt
    result.json (damage="result") or the manifest corrupt (damage="manifest")."""
    def setup(folder: pathlib.Path) -> None:
        from experiments.configuration import compose, to_dict
        from experiments.runner import resolve
        from run_store import RunStore

        args = [a.replace("{dir}", str(folder)) for a in SMOKE if not a.startswith("--")]
        run_id = resolve(to_dict(compose(args))).run_id
        store = RunStore(folder / "store")
        store.init_run(run_id, {"family": {"name": "hawk"}})
        run = folder / "store" / "runs" / run_id
        if damage == "result":
            (run / "status.json").write_text(json.dumps({"state": "SUCCESS", "run_id": run_id, "updated": 1.0}))
            (run / "result.json").write_text('{"oops')
        store.write_sweep("smoke_cpu", {"runs": [run_id]})
        if damage == "manifest":
            (folder / "store" / "sweeps" / "smoke_cpu.json").write_text('{"runs": ')
    return setup


def planned(setting: str, message: str) -> Case:
    """A launcher `setting` on the smoke sweep's dry run, refused by the plan with `message`."""
    return Case(SWEEP, [*SMOKE, setting, "--dry-run"], message)


CASES: dict[str, Case] = {
    # --- store.root: the store takes a local folder, file:///abs, s3://BUCKET/..., gs://BUCKET/...
    "store root of an unknown scheme": Case(TRAIN, ["store.root=foo://x/y"],
                                            r"foo://x/y: the run store does not support foo:// URLs \(store\.root\)"),
    "store root over HTTP": Case(TRAIN, ["store.root=http://127.0.0.1:{port}/x"],
                                 r"does not support http:// URLs \(store\.root\); give a local folder"),
    "bucket URL without a bucket": Case(TRAIN, ["store.root=s3://"], r"s3://: no bucket in the URL \(store\.root\)",
                                        env=CLOSED),
    "bucket URL with a slash missing": Case(TRAIN, ["store.root=s3:/bucket/x"],
                                            r"s3:/bucket/x: a URL with a slash missing \(store\.root\): write "
                                            r"s3://bucket/x"),
    "empty store root": Case(TRAIN, ["store.root="], r"store\.root is empty: give a local folder"),
    "relative file URL": Case(TRAIN, ["store.root=file://store"], r"file:// URL must name an absolute folder"),
    "figures of an unknown scheme": Case("griffin-figures", ["foo://x/y"], r"foo://x/y: the run store does not support"),
    "evaluation of an unknown scheme": Case("griffin-eval", ["foo://x/y/runs/hawk-cpu-30k-4st-0"],
                                            r"foo://x/y: the run store does not support foo:// URLs"),
    "sweep plan on an unknown scheme": Case(SWEEP, [*SMOKE, "store.root=foo://x/y", "--dry-run"],
                                            r"foo://x/y: the run store does not support"),
    # --- launcher settings, checked by the plan (dry runs too)
    "more cores per run than the machine has": planned("launcher.cpus_per_run=100000",
                                                       r"launcher\.cpus_per_run=100000 is more than the \d+ core"),
    "zero cores per run": planned("launcher.cpus_per_run=0",
                                  r"launcher\.cpus_per_run=0 must be a whole number of at least 1"),
    "negative max_parallel": planned("launcher.max_parallel=-1",
                                     r"launcher\.max_parallel=-1 must be a whole number of at least 0"),
    "negative retry budget": planned("launcher.failure_retries=-1", r"launcher\.failure_retries=-1 must be"),
    "zero heartbeat": planned("launcher.heartbeat_s=0",
                              r"launcher\.heartbeat_s=0\.0 must be a positive number of seconds"),
    "heartbeat not below the lease timeout": planned(
        "launcher.heartbeat_s=120", r"launcher\.heartbeat_s=120\.0 must be below launcher\.lease_timeout_s"),
    "zero slices": planned("launcher.num_slices=0", r"launcher\.num_slices=0 must be"),
    "MFU above one": planned("launcher.assumed_mfu=2", r"launcher\.assumed_mfu=2\.0 must be a fraction in \(0, 1\]"),
    "malformed Ray address": planned("launcher.ray_address=nohost",
                                     r"launcher\.ray_address='nohost' is not a Ray address"),
    "TPU topology of another size": Case(SWEEP, [*SMOKE, "launcher=tpu", "launcher.tpu_topology=2x2", "--dry-run"],
                                         r"launcher\.tpu_topology='2x2' has 4 chips, but launcher\.tpu_type='v4-16'"),
    # --- sweeps that would start: refused before Ray starts or the store is written, never a hang
    "unreachable Ray address": Case(SWEEP, [*SMOKE, "launcher.ray_address=127.0.0.1:{port}"],
                                    r"launcher\.ray_address=127\.0\.0\.1:PORT: cannot reach a Ray cluster there: "
                                    r"Connection refused", child=True),
    "more cores per run than the machine has, started": Case(SWEEP, [*SMOKE, "launcher.cpus_per_run=100000"],
                                                             r"launcher\.cpus_per_run=100000 is more than", child=True),
    "negative max_parallel, started": Case(SWEEP, [*SMOKE, "launcher.max_parallel=-1"],
                                           r"launcher\.max_parallel=-1 must be", child=True),
    "corrupt result of a finished run": Case(SWEEP, SMOKE, r"DIR/store/runs/hawk-cpu-30k-4st-\w+/result\.json: "
                                                           r"corrupt result file", _store_with("result"), child=True),
    "corrupt sweep manifest before a sweep": Case(SWEEP, SMOKE, r"DIR/store/sweeps/smoke_cpu\.json: corrupt sweep "
                                                                r"manifest \(.*\); delete it and this sweep writes a "
                                                                r"new one", _store_with("manifest"), child=True),
}
CHILD_TIMEOUT_S = 60
"""A child sweep still going after this long is the hang these cases guard against."""


def _main(command: str):
    from analysis.cli import figures_main
    from experiments.cli import train_main
    from experiments.evaluate import main as eval_main
    from launch.cli import sweep_main

    return {TRAIN: train_main, SWEEP: sweep_main, "griffin-figures": figures_main, "griffin-eval": eval_main}[command]


def _snapshot(folder: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"<dir>" for p in sorted(folder.rglob("*"))}


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(case: Case, args: list[str], folder: pathlib.Path, capsys) -> tuple[int, str]:
    if case.child:
        code = "import sys; from launch.cli import sweep_main; sys.exit(sweep_main(sys.argv[1:]))"
        # Its own session: a hung sweep is stopped with every process it started (an embedded Ray's).
        child = subprocess.Popen([sys.executable, "-c", code, *args], cwd=folder, env=dict(os.environ), text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        try:
            _, err = child.communicate(timeout=CHILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.communicate()
            pytest.fail(f"still running after {CHILD_TIMEOUT_S} s (a hang)")
        return child.returncode, err
    capsys.readouterr()
    try:
        code = _main(case.command)(args)
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


MESSAGES: dict[str, str] = {}


@pytest.mark.parametrize("name", list(CASES))
def test_one_line_exit_2_and_nothing_written(name, tmp_path, capsys, monkeypatch):
    case = CASES[name]
    folder = tmp_path / "case"
    folder.mkdir()
    port = _closed_port()
    monkeypatch.setenv("GRIFFIN_CACHE_DIR", str(tmp_path / ".cache"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(DOC.parents[1]), os.environ.get("PYTHONPATH", "")]))
    for key, value in (case.env or {}).items():
        monkeypatch.setenv(key, value.format(port=port))
    monkeypatch.chdir(folder)
    if case.setup:
        case.setup(folder)
    args = [a.replace("{dir}", str(folder)).replace("{port}", str(port)) for a in case.args]
    if case.command == TRAIN:
        args = [*TINY, f"store.root={folder / 'store'}", *args]
    before = _snapshot(folder)
    start = time.monotonic()
    code, err = _run(case, args, folder, capsys)
    lines = [line.replace(str(folder), "DIR").replace(f"127.0.0.1:{port}", "127.0.0.1:PORT")
             for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1, err  # one line: no traceback, no warnings of Ray's before it
    assert re.search(case.expect, lines[0]), lines[0]
    assert _snapshot(folder) == before, "the command changed files"
    assert time.monotonic() - start < 30
    MESSAGES[name] = re.sub(r"the \d+ core\(s\)", "the N core(s)", lines[0])


def _row(name: str, case: Case) -> str:
    args = "`" + " ".join(a.replace("{dir}", "DIR").replace("{port}", "PORT") for a in case.args) + "`"
    if case.setup:
        args += " on a store whose " + ("finished run's result.json is corrupt" if "result" in name
                                        else "sweeps/smoke_cpu.json is corrupt")
    if case.env:
        args += " with `" + " ".join(f"{k}={v.format(port='PORT')}" for k, v in case.env.items()) + "`"
    return f"| `{case.command}` | {name} | {args} | {MESSAGES.get(name, '?').replace('|', chr(92) + '|')} |"


def test_the_doc_lists_these_cases():
    if len(MESSAGES) < len(CASES):
        pytest.skip("run with the cases above (the whole module) to compare the messages")
    text = DOC.read_text()
    missing = [_row(name, case) for name, case in CASES.items() if _row(name, case) not in text]
    assert not missing, "docs/bad_input.md lacks these rows:\n" + "\n".join(missing)

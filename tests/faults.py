"""Fault injection for tests, kept out of production code.

`install()` wraps `experiments.train.train` in this process (idempotent). The wrapper reads
`<store root>/faults.json` at each run's start, if the test wrote one:

    {"fail_seed": 1}            a run with this seed raises (a real, non-system error)
    {"stall_after_step": 12}    after that step's metrics row, the run hangs (a kill lands mid-run)
    {"step_sleep": 0.1}         seconds slept after each metrics row (a slower machine)
    {"claims_log": "/tmp/x"}    each start of a run appends {"seed", "start"} (the step it
                                starts from) to that local file: a store on a bucket has no
                                worker logs to count claims in

The store root may be a local folder or a bucket URL.

Sweep workers call it through `launcher.worker_setup_hook=faults.install` (run once per
worker process); a `griffin-train` subprocess calls it before `train_main`. The tests folder
is on PYTHONPATH for both (conftest.py).
"""

from __future__ import annotations

import json
import os
import time

FAULTS_FILE = "faults.json"
HOOK = "faults.install"
"""The value tests give `launcher.worker_setup_hook`."""


def write(root: str | os.PathLike, **faults) -> None:
    """Arm faults for the runs of the store at `root` (none: disarm)."""
    from run_store import is_url, join, write_json
    from run_store.backends import resolve

    if is_url(root):
        if faults:
            write_json(join(root, FAULTS_FILE), faults)
        else:
            backend, path = resolve(join(root, FAULTS_FILE))
            backend.remove(path)
        return
    path = os.path.join(os.fspath(root), FAULTS_FILE)
    if not faults:
        if os.path.exists(path):
            os.unlink(path)
        return
    os.makedirs(os.fspath(root), exist_ok=True)
    with open(path, "w") as f:
        json.dump(faults, f)


def _armed(spec) -> dict:
    from run_store import is_url, join, read_json

    root = str(spec.config["store"]["root"])
    if is_url(root):
        try:
            return read_json(join(root, FAULTS_FILE)) or {}
        except (OSError, ValueError):
            return {}
    try:
        with open(os.path.join(str(spec.config["store"]["root"]), FAULTS_FILE)) as f:
            return json.load(f)
    except (OSError, KeyError, ValueError):
        return {}


def install() -> None:
    import experiments.train as train_module

    original = train_module.train
    if getattr(original, "with_faults", False):
        return

    def train(spec, ckpt_dir, write_rows, **kwargs):
        faults = _armed(spec)
        if faults.get("fail_seed") == spec.seed:
            raise RuntimeError(f"fault injection: seed {spec.seed} failing on purpose")
        stall, sleep = faults.get("stall_after_step"), float(faults.get("step_sleep", 0))

        def rows_with_faults(rows):
            write_rows(rows)
            for row in rows:
                time.sleep(sleep)
                if row["step"] == stall:
                    time.sleep(3600)

        if faults.get("claims_log"):
            start_rows = kwargs.get("start_rows", lambda step: 0.0)

            def logged_start(step):
                with open(faults["claims_log"], "a") as f:
                    f.write(json.dumps({"seed": spec.seed, "start": step}) + "\n")
                return start_rows(step)

            kwargs["start_rows"] = logged_start
        return original(spec, ckpt_dir, rows_with_faults, **kwargs)

    train.with_faults = True
    train_module.train = train

"""What the bad-input cases (tests/bad_input_cases.py) are made of: the `Case` record, the
common griffin-train arguments, and the setups that damage a store, a token folder or a table
before a command runs."""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Callable

import numpy as np

from run_store import RunStore

TINY = ["family=hawk", "size=cpu-30k", "data.seq_len=16", "trainer.batch_size=4", "trainer.budget.rule=steps",
        "trainer.budget.value=4", "logger.wandb.mode=disabled", "--quiet"]


@dataclasses.dataclass(frozen=True)
class Case:
    command: str
    args: list[str]
    expect: str
    """A regex the one stderr line must match."""
    setup: Callable[[pathlib.Path], None] | None = None
    """Makes files under the case's folder first (placeholders {dir} in args point there)."""
    notes: str | None = None
    """A regex the lines before the error may match (visible warnings, e.g. runs excluded)."""
    env: dict[str, str | None] | None = None
    """Environment for the case (None: unset); {port} is a closed port on 127.0.0.1, shown as PORT."""
    child: bool = False
    """Run in a child process (sweeps that start Ray): its real stderr, a timeout for a hang."""


def _write(path: pathlib.Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def _corrupt_run(kind: str) -> Callable[[pathlib.Path], None]:
    """A RUNNING run of TINY's config in {dir}/store whose `kind` file is damaged."""
    def setup(folder: pathlib.Path) -> None:
        from experiments.configuration import compose, to_dict
        from experiments.runner import resolve

        ref = resolve(to_dict(compose([*TINY[:-1], f"store.root={folder / 'store'}"])))
        run = folder / "store" / "runs" / ref.run_id
        _write(run / "config.yaml", "family: {name: hawk}\n" if kind != "config" else "family: [\n")
        _write(run / "status.json", json.dumps({"state": "RUNNING", "run_id": ref.run_id}) if kind != "status"
               else '{"state": "RUNN')
        rows = [json.dumps({"step": s, "loss": 1.0}) for s in (1, 2, 3)]
        if kind == "metrics":
            rows[1] = '{"step": 2, "lo'
        _write(run / "metrics.jsonl", "\n".join(rows) + "\n")
    return setup


def _run_without_checkpoint(folder: pathlib.Path) -> None:
    RunStore(folder / "store").init_run("hawk-cpu-30k-4st-000000000000", {"family": {"name": "hawk"}})


def _synthetic_store(folder: pathlib.Path, status: str = "SUCCESS") -> None:
    import pandas as pd

    from analysis.synthetic import write_store

    runs = pd.DataFrame([{"family": "hawk", "size": f"s{i}", "N": 1e5 * 2**i, "D": 2e6 * 2**i, "L": 3.0 - 0.1 * i,
                          "status": status} for i in range(3)])
    write_store(folder / "store", runs, sweep="ladder")


def _tokens_with_manifest(change: str | None = None) -> Callable[[pathlib.Path], None]:
    """{dir}/tok: train.bin and val.bin with their manifest; then train.bin touched or grown."""
    def setup(folder: pathlib.Path) -> None:
        import os

        from griffin_core.data import manifest as mf

        tokens = np.arange(600, dtype=np.uint16) % 300
        _write(folder / "tok" / "train.bin", tokens.tobytes())
        _write(folder / "tok" / "val.bin", tokens[:200].tobytes())
        mf.write_manifest(mf.describe(folder / "tok", 300))
        train = folder / "tok" / "train.bin"
        if change == "mtime":
            st = train.stat()
            os.utime(train, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
        elif change == "size":
            with open(train, "ab") as f:
                f.write(tokens[:10].tobytes())
    return setup


def _tokenizer_file(name: str, content: bytes | None = None, words: int = 0) -> Callable[[pathlib.Path], None]:
    """{dir}/in/a.txt (text) and {dir}/<name>: given bytes, or a word-level tokenizer of `words` ids."""
    def setup(folder: pathlib.Path) -> None:
        _write(folder / "in" / "a.txt", "some text to tokenize\n")
        if words:
            from tokenizers import Tokenizer, models

            Tokenizer(models.WordLevel({f"w{i}": i for i in range(words)}, unk_token="w0")).save(str(folder / name))
        elif content is not None:
            _write(folder / name, content)
    return setup


def _table(text: str, name: str = "t.csv") -> Callable[[pathlib.Path], None]:
    return lambda folder: _write(folder / name, text)


TEXT_OK = "N,D,L\n1e5,2e6,3.0\n2e5,4e6,2.9\n4e5,8e6,2.8\n8e5,1.6e7,2.7\n"
TRAIN = "griffin-train"
NO_CREDENTIALS = {"AWS_ENDPOINT_URL": "http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None,
                  "AWS_SESSION_TOKEN": None, "AWS_PROFILE": None, "AWS_EC2_METADATA_DISABLED": "true",
                  "AWS_CONFIG_FILE": "{dir}/no-aws-config", "AWS_SHARED_CREDENTIALS_FILE": "{dir}/no-aws-credentials"}
"""A bucket reached through a closed port on 127.0.0.1, and no AWS credentials anywhere."""

"""Every command answers bad input with one line on stderr naming the key or file, exit code 2,
and leaves the store as it was. The cases are also docs/bad_input.md's table: with
GRIFFIN_WRITE_DOCS=1 this module rewrites it from what the commands really print."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
from typing import Callable

import numpy as np
import pytest

from run_store import RunStore

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "bad_input.md"
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
CASES: dict[str, Case] = {
    # --- overrides and config values (griffin-train composes like every command)
    "group given a number": Case(TRAIN, ["size=100"], r"size=100: size is a config group.*cpu-30k"),
    "override without a key": Case(TRAIN, ["=3"], r"override '=3' has no key"),
    "unknown group option": Case(TRAIN, ["size=cpu-huge"], r"Could not find 'size/cpu-huge'.*available:.*cpu-30k"),
    "unknown family": Case(TRAIN, ["family=transformer"], r"family/transformer.*available:.*griffin"),
    "list for a group": Case(TRAIN, ["family=[hawk,nope]"], r"family/nope"),
    "unknown key": Case(TRAIN, ["optim.lrr=1"], r"Key 'lrr' not in 'OptimConf'"),
    "unknown key added with +": Case(TRAIN, ["+optim.lrr=1"], r"unknown config key optim\.lrr"),
    "unknown top-level key": Case(TRAIN, ["+foo=1"], r"unknown config key foo"),
    "wrong type": Case(TRAIN, ["trainer.seed=abc"], r"'abc'.*Integer.*trainer\.seed"),
    "unparsable override": Case(TRAIN, ["a..b=1"], r"cannot parse override 'a\.\.b=1'"),
    "sweep axis given to griffin-train": Case(TRAIN, ["size=glob(cpu-*)"], r"sweep axes belong to griffin-sweep"),
    "comma list given to griffin-train": Case(TRAIN, ["family=hawk,griffin"], r"sweep axes belong to griffin-sweep"),
    "deleted required group": Case(TRAIN, ["~size"], r"Missing mandatory value: size"),
    "unknown dtype": Case(TRAIN, ["model.dtype=float64"], r"model\.dtype='float64' is invalid"),
    "unknown scan": Case(TRAIN, ["model.scan_impl=fast"], r"model\.scan_impl='fast' is invalid"),
    "zero window": Case(TRAIN, ["model.local_window=0"], r"local_window"),
    "unknown lambda init": Case(TRAIN, ["family.lambda_init=zeros"], r"model\.lambda_init='zeros' is invalid"),
    "heads not dividing width": Case(TRAIN, ["size.num_heads=5"], r"num_heads=5.*divide width=24"),
    "gate blocks not dividing D_RNN": Case(TRAIN, ["size.num_gate_blocks=3"], r"num_gate_blocks=3.*lru_width=32"),
    "unknown block kind": Case(TRAIN, ["family.block_pattern=[recurrent,mamba3]"],
                               r"model\.block_pattern=.*'mamba3'.*block kinds from .*mamba2"),
    "Mamba-2 head dim not dividing the inner width": Case(
        TRAIN, ["family.block_pattern=[mamba2]", "size.ssm_head_dim=7"],
        r"model\.ssm_head_dim=7 is invalid: must divide the mixer's inner width ssm_expand \* width = 48"),
    "Mamba-2 state size zero": Case(TRAIN, ["family.block_pattern=[mamba2]", "size.ssm_state=0"],
                                    r"model\.ssm_state=0 is invalid: a positive integer"),
    "Mamba-2 chunk zero": Case(TRAIN, ["family.block_pattern=[mamba2]", "model.ssm_chunk=0"],
                               r"model\.ssm_chunk=0 is invalid: a positive integer"),
    "zero sequence length": Case(TRAIN, ["data.seq_len=0"], r"data\.seq_len=0 must be positive"),
    "negative learning rate": Case(TRAIN, ["optim.lr=-0.001"], r"optim\.lr=-0\.001 must be positive"),
    "beta of one": Case(TRAIN, ["optim.beta2=1.0"], r"beta1/beta2.*below 1"),
    "unknown optimiser": Case(TRAIN, ["optim.name=sgd"], r"optim\.name='sgd' is unknown"),
    "zero batch": Case(TRAIN, ["trainer.batch_size=0"], r"trainer\.batch_size=0 must be positive"),
    "microbatches not dividing the batch": Case(TRAIN, ["trainer.microbatches=3"], r"microbatches=3 must divide"),
    "mesh larger than the devices": Case(TRAIN, ["trainer.mesh.data=4"], r"trainer\.mesh: data x fsdp x tensor = "
                                         r"data=4 x fsdp=1 x tensor=1 = 4 is not the device count 1"),
    "two fill axes": Case(TRAIN, ["trainer.mesh.data=-1", "trainer.mesh.fsdp=-1"], r"only one axis may be -1"),
    "unknown strategy": Case(TRAIN, ["trainer.strategy=zero3"], r"trainer\.strategy='zero3' is unknown"),
    "tensor size not dividing the heads": Case(TRAIN, ["trainer.strategy=fsdp_tp", "trainer.mesh.tensor=3"],
                                               r"trainer\.mesh\.tensor=3 does not divide model\.num_heads=2"),
    "tensor size not dividing the gate blocks": Case(
        TRAIN, ["trainer.strategy=fsdp_tp", "trainer.mesh.tensor=8", "size.num_heads=8", "size.width=32"],
        r"trainer\.mesh\.tensor=8 does not divide model\.num_gate_blocks=4"),
    "unknown logical axis in a rule": Case(TRAIN, ["+trainer.axis_rules.heads=tensor"],
                                           r"trainer\.axis_rules\.heads: unknown logical axis"),
    "unknown mesh axis in a rule": Case(TRAIN, ["+trainer.axis_rules.mlp=model"], r"unknown mesh axes \['model'\]"),
    "unknown remat policy": Case(TRAIN, ["model.remat=some"], r"model\.remat='some' is invalid"),
    "zero budget": Case(TRAIN, ["trainer.budget.value=0"], r"budget"),
    "unknown budget rule": Case(TRAIN, ["trainer.budget.rule=vibes"], r"budget.*vibes"),
    "negative evaluation cadence": Case(TRAIN, ["trainer.eval_every=-1"], r"trainer\.eval_every=-1 must be non-negative"),
    "unknown W&B mode": Case(TRAIN, ["logger.wandb.mode=cloud"], r"logger\.wandb\.mode='cloud' is unknown"),
    "unknown malloc setting": Case(TRAIN, ["launcher.malloc=fast"], r"launcher\.malloc='fast' is unknown"),
    "unknown data source": Case(TRAIN, ["data.source=web"], r"data\.source='web' is unknown"),
    "bad flag": Case(TRAIN, ["--fast"], r"griffin-train: error: unrecognized arguments: --fast"),
    "bad --cfg": Case(TRAIN, ["--cfg", "all"], r"argument --cfg: invalid choice: 'all'"),
    # --- data
    "text source without a path": Case(TRAIN, ["data=text"], r"data\.path must be given for a 'text' source"),
    "missing text file": Case(TRAIN, ["data=text", "data.path={dir}/nope.txt"], r"nope\.txt"),
    "empty text folder": Case(TRAIN, ["data=text", "data.path={dir}/empty"], r"empty",
                              lambda d: (d / "empty").mkdir()),
    "binary file as text": Case(TRAIN, ["data=text", "data.path={dir}/b"], r"x\.bin",
                                lambda d: _write(d / "b" / "x.bin", bytes(range(256)) * 8)),
    "token file without a vocabulary": Case(TRAIN, ["data=tokens", "data.path={dir}/t.bin"], r"data\.vocab_size must be given"),
    "token beyond the vocabulary": Case(TRAIN, ["data=tokens", "data.vocab_size=100", "data.path={dir}/t.bin"], r"t\.bin",
                                        lambda d: _write(d / "t.bin", np.arange(400, dtype=np.uint16).tobytes())),
    "token file of odd length": Case(TRAIN, ["data=tokens", "data.vocab_size=300", "data.path={dir}/t.bin"], r"t\.bin",
                                     lambda d: _write(d / "t.bin", b"\x01\x00\x02")),
    "token file modified after its manifest": Case(TRAIN, ["data=tokens", "data.path={dir}/tok"],
                                                   r"DIR/tok/train\.bin: modified after its manifest DIR/tok/manifest\.json",
                                                   _tokens_with_manifest("mtime")),
    "token file of another size than its manifest": Case(
        "griffin-sweep", ["experiment=smoke_cpu", "data=tokens", "data.path={dir}/tok", "store.root={dir}/store"],
        r"grid point .*DIR/tok/train\.bin: 1,220 bytes, but its manifest DIR/tok/manifest\.json says 1,200",
        _tokens_with_manifest("size")),
    "vocabulary larger than the token dtype": Case(TRAIN, ["data=tokens", "data.vocab_size=70000", "data.path={dir}/tok"],
                                                   r"data\.vocab_size=70000 does not fit data\.token_dtype='uint16'",
                                                   lambda d: _write(d / "tok", np.arange(9, dtype=np.uint16).tobytes())),
    "missing tokenizer file": Case(TRAIN, ["data=text", "data.path={dir}/in", "data.tokenizer={dir}/spm.model"],
                                   r"tokenizer file DIR/spm\.model does not exist", _tokenizer_file("spm.model")),
    "corrupt tokenizers file": Case(TRAIN, ["data=text", "data.path={dir}/in", "data.tokenizer={dir}/tok.json"],
                                    r"tokenizer file DIR/tok\.json: not a tokenizers JSON file",
                                    _tokenizer_file("tok.json", b'{"version": "1.0", "truncation": nu')),
    "tokenizer for a token file": Case(TRAIN, ["data=tokens", "data.path={dir}/tok", "data.tokenizer={dir}/spm.model"],
                                       r"data\.tokenizer applies to embedded, text and hf sources, not 'tokens'",
                                       _tokens_with_manifest()),
    # --- griffin-data
    "corrupt SentencePiece model": Case("griffin-data", ["prepare", "{dir}/in", "--out", "{dir}/out", "--tokenizer",
                                                        "{dir}/spm.model"],
                                        r"tokenizer file DIR/spm\.model: not a SentencePiece model",
                                        _tokenizer_file("spm.model", b"\x0a\x05junk" * 40)),
    "vocabulary too large for --dtype": Case("griffin-data", ["prepare", "{dir}/in", "--out", "{dir}/out",
                                                              "--tokenizer", "{dir}/big.json", "--dtype", "uint16"],
                                             r"tokenizer DIR/big\.json: its vocabulary with the separator, 70001 "
                                             r"does not fit uint16 tokens",
                                             _tokenizer_file("big.json", words=70_000)),
    "manifest vocabulary larger than the dtype": Case("griffin-data", ["manifest", "{dir}/tok", "--vocab-size", "70000"],
                                                      r"--vocab-size 70000 does not fit uint16 tokens",
                                                      _tokens_with_manifest()),
    "manifest of a token beyond the vocabulary": Case("griffin-data", ["manifest", "{dir}/tok", "--vocab-size", "200"],
                                                      r"DIR/tok/train\.bin: token 200 at index 200 is >= vocab_size 200",
                                                      _tokens_with_manifest()),
    "prepare without inputs": Case("griffin-data", ["prepare", "--out", "{dir}/out"],
                                   r"prepare: give text files or folders, or --hf-dataset"),
    # --- run store files (the store must stay as it was)
    "corrupt metrics line in a running run": Case(TRAIN, [], r"metrics\.jsonl: corrupt metrics line 2 of 3",
                                                  _corrupt_run("metrics")),
    "corrupt status file": Case(TRAIN, [], r"status\.json: corrupt status file", _corrupt_run("status")),
    "corrupt config file": Case(TRAIN, [], r"config\.yaml: corrupt config file", _corrupt_run("config")),
    "store root is a file": Case(TRAIN, ["store.root={dir}/file"], r"DIR/file: the run store root is a file",
                                lambda d: _write(d / "file", "x")),
    "bucket without credentials": Case(TRAIN, ["store.root=s3://bucket/results"],
                                       r"s3://bucket/results: cannot use the run store \(store\.root\) at "
                                       r"http://127\.0\.0\.1:PORT: NoCredentialsError", env=NO_CREDENTIALS),
    "unreachable bucket endpoint": Case(TRAIN, ["store.root=s3://bucket/results"],
                                        r"s3://bucket/results: cannot use the run store \(store\.root\) at "
                                        r"http://127\.0\.0\.1:PORT: EndpointConnectionError",
                                        env={**NO_CREDENTIALS, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}),
    "sweep on a bucket without credentials": Case("griffin-sweep", ["experiment=smoke_cpu", "family=hawk",
                                                                   "store.root=s3://bucket/results", "--dry-run"],
                                                  r"s3://bucket/results: cannot use the run store \(store\.root\)",
                                                  env=NO_CREDENTIALS),
    "figures of a bucket without credentials": Case("griffin-figures", ["s3://bucket/results"],
                                                    r"s3://bucket/results: cannot use the run store \(store\.root\)",
                                                    env=NO_CREDENTIALS),
    "evaluation on a bucket without credentials": Case("griffin-eval", ["s3://bucket/results/runs/hawk-cpu-30k-4st-0"],
                                                       r"s3://bucket/results: cannot use the run store \(store\.root\)",
                                                       env=NO_CREDENTIALS),
    # --- griffin-sweep
    "unknown experiment": Case("griffin-sweep", ["experiment=nope"], r"experiment/nope.*available:.*scaling_cpu"),
    "bad grid point": Case("griffin-sweep", ["experiment=smoke_cpu", "size.num_heads=2,5", "--dry-run"],
                           r"grid point .*size\.num_heads=5.*divide width"),
    "unknown value on an axis": Case("griffin-sweep", ["experiment=smoke_cpu", "family=hawk,nope", "--dry-run"],
                                     r"grid point .*family=nope.*family/nope"),
    "empty glob": Case("griffin-sweep", ["experiment=smoke_cpu", "size=glob(zzz*)", "--dry-run"], r"has no values"),
    "unknown launcher": Case("griffin-sweep", ["experiment=smoke_cpu", "launcher=moon", "--dry-run"],
                             r"launcher/moon.*available:.*local"),
    "bad sweep flag": Case("griffin-sweep", ["--dryrun"], r"griffin-sweep: error: unrecognized arguments: --dryrun"),
    # A paper size's preset slice and sharding (experiment.size_overrides) yield to the command line's values,
    # which are checked like any other.
    "unknown strategy for a paper size": Case(
        "griffin-sweep", ["experiment=scaling_paper", "family=griffin", "size=100M", "trainer.strategy=zero3", "--dry-run",
                          "store.root={dir}/store"], r"trainer\.strategy='zero3' is unknown"),
    "tensor size not dividing a paper size": Case(
        "griffin-sweep", ["experiment=scaling_paper", "family=griffin", "size=3B", "trainer.mesh.tensor=3", "--dry-run",
                          "store.root={dir}/store"], r"trainer\.mesh\.tensor=3 does not divide model\."),
    "tensor size not dividing Mamba-2's heads": Case(
        "griffin-sweep", ["experiment=scaling_paper", "family=mamba2", "size=7B", "trainer.mesh.tensor=3", "--dry-run",
                          "store.root={dir}/store"], r"trainer\.mesh\.tensor=3 does not divide model\.num_heads=32"),
    "microbatches not dividing a paper batch": Case(
        "griffin-sweep", ["experiment=scaling_paper", "family=griffin", "size=100M", "launcher.tpu_type=v4-8",
                          "trainer.microbatches=3", "trainer.strategy=dp", "--dry-run", "store.root={dir}/store"],
        r"trainer\.microbatches=3 must divide the batch size 512"),
    "mesh larger than a CPU run's device": Case(
        "griffin-sweep", ["experiment=smoke_cpu", "family=griffin", "size=cpu-30k", "trainer.mesh.data=4", "logger=none",
                          "--no-live", "store.root={dir}/store"],
        r"trainer\.mesh: data x fsdp x tensor = data=4 x fsdp=1 x tensor=1 = 4 is not the device count 1 \(each run "
        r"of this launcher has 1 CPU device\)"),
    "unknown family for long_context": Case("griffin-sweep", ["experiment=long_context", "family=nope", "--dry-run",
                                                              "store.root={dir}/store"], r"family/nope.*available:.*mamba2"),
    # --- griffin-figures
    "missing store": Case("griffin-figures", ["{dir}/nope"], r"nope: not a run store"),
    "manifest outside sweeps/": Case("griffin-figures", ["{dir}/x.json"], r"must live in <root>/sweeps"),
    "unknown sweep": Case("griffin-figures", ["{dir}/store", "--sweep", "nope"], r"no such sweep.*ladder",
                          _synthetic_store),
    "unknown convention": Case("griffin-figures", ["{dir}/store", "--convention", "7N"], r"invalid choice: '7N'"),
    "negative bootstrap": Case("griffin-figures", ["{dir}/store", "--bootstrap", "-1"],
                               r"'-1' is not a non-negative integer"),
    "level above one": Case("griffin-figures", ["{dir}/store", "--level", "1.5"], r"'1\.5' is not between 0 and 1"),
    "unknown figure": Case("griffin-figures", ["{dir}/store", "--only", "pie"], r"unknown figure\(s\) \['pie'\]",
                           _synthetic_store),
    "no usable runs": Case("griffin-figures", ["{dir}/store"], r"no usable runs \(3 excluded\)",
                           lambda d: _synthetic_store(d, status="FAILED"), notes=r"analysis: excluding run hawk-.*: FAILED"),
    "corrupt sweep manifest": Case("griffin-figures", ["{dir}/store/sweeps/s.json"], r"s\.json: corrupt sweep manifest",
                                   lambda d: _write(d / "store" / "sweeps" / "s.json", "{")),
    # --- griffin-fit
    "missing table": Case("griffin-fit", ["{dir}/nope.csv", "--form", "powerlaw"], r"nope\.csv: no such file"),
    "unknown form": Case("griffin-fit", ["{dir}/t.csv", "--form", "cubic"], r"argument --form: invalid choice: 'cubic'"),
    "form missing": Case("griffin-fit", ["{dir}/t.csv"], r"the following arguments are required: --form"),
    "unknown table format": Case("griffin-fit", ["{dir}/t.xlsx", "--form", "powerlaw"], r"unknown table format '\.xlsx'",
                                 _table(TEXT_OK, "t.xlsx")),
    "no loss column": Case("griffin-fit", ["{dir}/t.csv", "--form", "powerlaw"], r"needs a column for loss",
                           _table("N,D\n1,2\n")),
    "two loss columns": Case("griffin-fit", ["{dir}/t.csv", "--form", "powerlaw"], r"ambiguous loss column",
                             _table("N,D,L,loss\n1,2,3,3\n")),
    "empty table": Case("griffin-fit", ["{dir}/t.csv", "--form", "powerlaw"], r"t\.csv", _table("")),
    "level of zero": Case("griffin-fit", ["{dir}/t.csv", "--form", "powerlaw", "--level", "0"],
                          r"'0' is not a positive number"),
    "holdout fraction of one": Case("griffin-fit", ["{dir}/t.csv", "--form", "powerlaw", "--holdout-frac", "1"],
                                    r"'1' is not between 0 and 1"),
    # --- griffin-bench
    "zero batch (scan)": Case("griffin-bench", ["scan", "--batch", "0"], r"argument --batch: '0' is not a positive integer"),
    "negative length (scan)": Case("griffin-bench", ["scan", "--length", "-1"], r"'-1' is not a positive integer"),
    "zero repeats": Case("griffin-bench", ["scan", "--repeats", "0"], r"--repeats: '0' is not a positive integer"),
    "unknown benchmark": Case("griffin-bench", ["warp"], r"invalid choice: 'warp'"),
    "zero chunk (ssd)": Case("griffin-bench", ["ssd", "--chunks", "0,16"],
                             r"argument --chunks: expected positive integers, got '0,16'"),
    "zero matmul size": Case("griffin-bench", ["limits", "--matmul-n", "0"], r"'0' is not a positive integer"),
    "negative malloc children": Case("griffin-bench", ["train", "--malloc-children", "-1"],
                                     r"'-1' is not a non-negative integer"),
    "unknown sweep kind": Case("griffin-bench", ["sweep", "--sweeps", "grid"], r"argument --sweeps: 'grid': choose from"),
    # --- griffin-eval
    "not a run folder": Case("griffin-eval", ["{dir}"], r"not a run folder \(no config\.yaml\)"),
    "run without a checkpoint": Case("griffin-eval", ["{dir}/store/runs/hawk-cpu-30k-4st-000000000000"],
                                     r"no checkpoint to evaluate", _run_without_checkpoint),
    "zero evaluation length": Case("griffin-eval", ["{dir}", "--length", "0"], r"'0' is not a positive integer"),
    # --- griffin-measure and griffin-demo
    "not a measurement preset": Case("griffin-measure", ["experiment=smoke_cpu"], r"smoke_cpu is not a measurement preset"),
    "unknown measurement malloc": Case("griffin-measure", ["experiment=train_speed", "experiment.measure.malloc=x"],
                                       r"experiment\.measure\.malloc='x'"),
    "unknown family to measure": Case("griffin-measure", ["experiment=train_speed", "family=nope"],
                                      r"family=nope: not a family griffin-measure can build; known: .*mamba2"),
    "a family griffin-measure cannot build": Case("griffin-measure", ["experiment=inference", "family=hawk,mqa_nope",
                                                                      "--dry-run"], r"family=mqa_nope: not a family"),
    "families given twice": Case("griffin-measure", ["experiment=train_speed", "family=hawk",
                                                     "experiment.measure.families=[mqa]", "--dry-run"],
                                 r"family=hawk and experiment\.measure\.families both name the families"),
    "demo of an unknown experiment": Case("griffin-demo", ["--experiment", "nope", "--root", "{dir}/store"],
                                          r"experiment/nope"),
}


def _main(command: str):
    from analysis.cli import figures_main, fit_main
    from experiments.bench import main as bench_main
    from experiments.cli import train_main
    from experiments.data_cli import main as data_main
    from experiments.evaluate import main as eval_main
    from experiments.measure import main as measure_main
    from launch.cli import sweep_main
    from launch.demo import main as demo_main

    return {"griffin-train": train_main, "griffin-sweep": sweep_main, "griffin-figures": figures_main,
            "griffin-fit": fit_main, "griffin-bench": bench_main, "griffin-eval": eval_main,
            "griffin-measure": measure_main, "griffin-demo": demo_main, "griffin-data": data_main}[command]


def _snapshot(folder: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"<dir>" for p in sorted(folder.rglob("*"))}


def run_case(case: Case, folder: pathlib.Path, capsys) -> tuple[int, str]:
    if case.setup:
        case.setup(folder)
    args = [a.replace("{dir}", str(folder)) for a in case.args]
    if case.command == TRAIN:
        args = [*TINY, f"store.root={folder / 'store'}", *args]
    capsys.readouterr()
    try:
        code = _main(case.command)(args)
    except SystemExit as exit_:  # argparse's errors exit from inside parse_args
        code = exit_.code
    return code, capsys.readouterr().err


MESSAGES: dict[str, str] = {}


@pytest.mark.parametrize("name", list(CASES))
def test_one_line_exit_2_and_nothing_written(name, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GRIFFIN_CACHE_DIR", str(tmp_path / ".cache"))
    case = CASES[name]
    folder = tmp_path / "case"
    folder.mkdir()
    port = _closed_port()
    for key, value in (case.env or {}).items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value.format(port=port, dir=folder))
    if case.setup:
        case.setup(folder)
    before = _snapshot(folder)
    code, err = run_case(dataclasses.replace(case, setup=None), folder, capsys)
    lines = [line.replace(str(folder), "DIR").replace(f"127.0.0.1:{port}", "127.0.0.1:PORT")
             for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert lines and all(case.notes and re.search(case.notes, line) for line in lines[:-1]), err
    assert re.search(case.expect, lines[-1]), lines[-1]
    assert _snapshot(folder) == before, "the command changed files"
    MESSAGES[name] = lines[-1]


def _closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _doc() -> str:
    rows = ["# Bad input: what each command answers", "",
            "Every row is a case of `tests/test_bad_input.py`, run by the test suite: the command exits with",
            "code 2, prints the one line shown, and leaves every file as it was. Regenerate this file",
            "with `GRIFFIN_WRITE_DOCS=1 pytest tests/test_bad_input.py`. `DIR` stands for the case's folder;",
            f"griffin-train cases also pass `{' '.join(TINY)} store.root=DIR/store`.", "",
            f"{len(CASES)} cases.", "", "| command | case | arguments | the one line on stderr |", "|---|---|---|---|"]
    for name, case in CASES.items():
        args = " ".join(a.replace("{dir}", "DIR") for a in case.args) or "(a store with the damaged file)"
        if case.env:
            unset = [k for k, v in case.env.items() if v is None]
            args += "` with `" + " ".join(f"{k}={v.format(port='PORT', dir='DIR')}" for k, v in case.env.items()
                                         if v is not None) + (f"`, unset: `{' '.join(unset)}" if unset else "")
        message = MESSAGES.get(name, "?").replace("|", "\\|")
        rows.append(f"| `{case.command}` | {name} | `{args}` | {message} |")
    return "\n".join(rows) + "\n"


def test_the_doc_lists_every_case_with_its_message():
    if len(MESSAGES) < len(CASES):
        pytest.skip("run with the cases above (the whole module) to compare the messages")
    if os.environ.get("GRIFFIN_WRITE_DOCS"):
        DOC.write_text(_doc())
    assert DOC.read_text() == _doc(), "docs/bad_input.md is stale: GRIFFIN_WRITE_DOCS=1 pytest tests/test_bad_input.py"

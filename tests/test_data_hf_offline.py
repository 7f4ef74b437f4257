"""Hugging Face datasets without the network unless the user asked for the Hub (hf://NAME), and
datasets without a validation split (griffin_core/data/hf_source.py, griffin-data prepare):

- a local path that does not exist is one line naming it, exit 2, and not one socket is
  opened or name looked up (checked in a fresh process whose socket module refuses, with
  HF_HUB_OFFLINE and HF_DATASETS_OFFLINE unset);
- a Hub name with HF_HUB_OFFLINE=1 set by the user is one line, offline too;
- a local folder loads with `datasets` in offline mode (the same refusing socket module);
- no validation split: rows of train are held out by the text source's rule, as files are;
  a held-out or train split named but missing is one line naming it and the splits there.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments.data_cli import main as data_main
from griffin_core.data import DataError, make_source
from griffin_core.data import manifest as mf
from griffin_core.data.hf_source import HFDatasetSource
from griffin_core.data.splits import heldout_keys

pytest.importorskip("datasets")
REPO = Path(__file__).resolve().parents[1]

GUARDED_MAIN = r"""
import socket, sys
def refuse(*args, **kwargs):
    sys.stderr.write(f"NETWORK ATTEMPT {args!r}\n")
    raise OSError("the network is off in this test")
socket.socket.connect = lambda self, *a: refuse(*a)
socket.socket.connect_ex = lambda self, *a: refuse(*a)
socket.getaddrinfo = refuse
socket.create_connection = refuse
from experiments.data_cli import main
sys.exit(main(sys.argv[1:]))
"""


def run_guarded(tmp_path: Path, *argv: str, **env: str) -> subprocess.CompletedProcess:
    """griffin-data in a fresh process whose every connection and name lookup fails loudly."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    clean.update(PYTHONPATH=str(REPO), HF_HOME=str(tmp_path / "hf-home"), **env)
    return subprocess.run([sys.executable, "-c", GUARDED_MAIN, *argv], capture_output=True, text=True,
                          env=clean, cwd=tmp_path, timeout=120)


def write_rows(folder: Path, **splits: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, texts in splits.items():
        (folder / f"{split}.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return folder


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """This process: HF offline variables unset, a fresh HF cache, and every socket refusing."""
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("the network is off in this test")

    monkeypatch.setattr(socket.socket, "connect", lambda self, *a: refuse(*a))
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


def test_a_missing_local_dataset_is_one_line_and_never_touches_the_network(tmp_path):
    result = run_guarded(tmp_path, "prepare", "--hf-dataset", str(tmp_path / "datsets" / "mine"),
                         "--out", str(tmp_path / "out"))
    assert "NETWORK ATTEMPT" not in result.stderr, result.stderr
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (f"griffin-data: error: --hf-dataset {tmp_path / 'datsets' / 'mine'}: no such "
                                     "file or folder (a dataset on the Hub is written hf://NAME)")
    assert not (tmp_path / "out").exists()


def test_a_hub_name_honours_hf_hub_offline(tmp_path):
    result = run_guarded(tmp_path, "prepare", "--hf-dataset", "hf://nobody/nothing-here", "--out",
                         str(tmp_path / "out"), HF_HUB_OFFLINE="1")
    assert "NETWORK ATTEMPT" not in result.stderr, result.stderr
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "griffin-data: error: Hugging Face dataset hf://nobody/nothing-here: cannot load it ("), lines
    assert not (tmp_path / "out").exists()


def test_the_training_source_refuses_a_missing_path_too(tmp_path, no_network):
    with pytest.raises(DataError, match=f"^Hugging Face dataset {tmp_path}/nope: no such file or folder"):
        make_source("hf", path=str(tmp_path / "nope"))
    assert not no_network


def test_a_local_folder_loads_offline(tmp_path, no_network):
    folder = write_rows(tmp_path / "ds", train=["one", "two", "three"], validation=["four"])
    source = make_source("hf", path=str(folder))
    assert source.num_rows("train") == 3 and source.texts("heldout", 0, 5) == ["four"]
    assert not no_network


def test_without_a_validation_split_rows_of_train_are_held_out(tmp_path, no_network):
    texts = [f"document {i}" for i in range(300)]
    folder = write_rows(tmp_path / "ds", train=texts)
    source = HFDatasetSource(str(folder), heldout_fraction=0.05)
    held = sorted(int(k) for k in heldout_keys(map(str, range(300)), 0.05))
    assert 0 < len(held) < 60
    assert source.texts("heldout", 0, 300) == [texts[i] for i in held]
    assert source.texts("train", 0, 300) == [t for i, t in enumerate(texts) if i not in set(held)]
    # The rule enters the fingerprint: another fraction is other data.
    assert source.fingerprint() != HFDatasetSource(str(folder), heldout_fraction=0.1).fingerprint()
    assert source.fingerprint() == HFDatasetSource(str(folder), heldout_fraction=0.05).fingerprint()
    assert not no_network


@pytest.mark.parametrize("option, split, message", [
    ("--hf-heldout-split", "test", "no split 'test' (its splits: ['train']); name the held-out split with "
                                   "--hf-heldout-split"),
    ("--hf-split", "training", "no split 'training' (its splits: ['train']); name the training split with "
                               "--hf-split"),
])
def test_a_named_split_that_is_missing_is_one_line(option, split, message, tmp_path, no_network, capsys):
    folder = write_rows(tmp_path / "ds", train=["a", "b", "c"])
    code = data_main(["prepare", "--hf-dataset", str(folder), option, split, "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert code == 2 and len(err) == 1 and captured.out == "", captured  # no progress bar either
    assert err[0].startswith(f"griffin-data: error: Hugging Face dataset {folder}: {message}"), err
    assert not (tmp_path / "out").exists() and not no_network


def test_prepare_a_dataset_without_validation_split(tmp_path, monkeypatch, capsys):
    """The case that used to end in a 62-line traceback: shards of train and of the rows held out."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    texts = [f"row {i}: " + "text " * 20 for i in range(120)]
    folder = write_rows(tmp_path / "ds", train=texts)
    out = tmp_path / "tokens"
    assert data_main(["prepare", "--hf-dataset", str(folder), "--out", str(out), "--workers", "1"]) == 0
    manifest = mf.read_manifest(out / "manifest.json")
    held = sorted(int(k) for k in heldout_keys(map(str, range(120)), 0.03))
    heldout = np.fromfile(out / manifest.splits["heldout"][0].file, np.dtype(manifest.dtype))
    assert bytes(heldout[:len(texts[held[0]])].astype(np.uint8)) == texts[held[0]].encode()
    assert sum(e.tokens for e in manifest.splits["heldout"]) == sum(len(texts[i]) + 1 for i in held)
    assert sum(e.tokens for e in manifest.splits["train"]) == sum(
        len(t) + 1 for i, t in enumerate(texts) if i not in set(held))

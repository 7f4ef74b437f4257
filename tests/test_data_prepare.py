"""`griffin-data prepare` end to end: a SentencePiece model trained here on the embedded corpus,
text files -> token shards and manifest on an embedded local Ray, a rerun that redoes only
the shard that is missing, and a short griffin-train run on the tokens."""

import json

import numpy as np
import pytest

from experiments.cli import train_main
from experiments.data_cli import main as data_main
from griffin_core.data import load_corpus
from griffin_core.data import manifest as mf
from griffin_core.data.splits import heldout_keys
from griffin_core.data.token_files import TokenFileSource
from griffin_core.data.tokenizer import load_tokenizer
from tokenizer_helpers import train_sentencepiece

TINY = ["family=hawk", "size=cpu-30k", "data.seq_len=32", "trainer.batch_size=4", "trainer.budget.rule=steps",
        "trainer.budget.value=6", "data.eval_sequences=8", "data.position_eval_factor=2", "data.position_eval_docs=2",
        "logger.wandb.mode=disabled", "--quiet"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A slice of the embedded corpus as text files, and a tokenizer trained on all of it."""
    root = tmp_path_factory.mktemp("prepare")
    files = load_corpus()
    for f in files[:80]:
        path = root / "text" / f.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f.data)
    train_sentencepiece([f.data.decode() for f in files[::10]], root / "code.model", vocab_size=512)
    return root


def test_prepare_on_ray_resume_and_train(corpus, tmp_path, capsys):
    out = tmp_path / "tokens"
    args = ["prepare", str(corpus / "text"), "--out", str(out), "--tokenizer", str(corpus / "code.model"),
            "--shard-mb", "0.25", "--heldout-fraction", "0.1", "--workers", "2"]
    assert data_main(args) == 0
    printed = capsys.readouterr().out
    manifest = mf.read_manifest(out / "manifest.json")
    tok = load_tokenizer(corpus / "code.model")
    assert (manifest.dtype, manifest.vocab_size, manifest.eot_token, manifest.tokenizer) == ("uint16", 512, 2, tok.name)
    train = manifest.splits["train"]
    assert len(train) >= 3 and manifest.splits["heldout"]
    assert f"{len(train) + len(manifest.splits['heldout'])} shards (0 already done)" in printed

    # Shards hold the files in key order, each tokenized and followed by the separator.
    keys = sorted(p.relative_to(corpus).as_posix() for p in (corpus / "text").rglob("*") if p.is_file())
    held = heldout_keys(keys, 0.1)
    first = next(k for k in keys if k not in held)
    want = np.append(tok.encode((corpus / first).read_text()), 2)
    assert np.array_equal(np.fromfile(out / train[0].file, np.uint16)[:len(want)], want)

    # A rerun redoes only what is missing.
    lost = out / train[1].file
    lost.unlink()
    kept = (out / train[0].file).stat().st_mtime_ns
    assert data_main(args) == 0
    assert f"({len(train) + len(manifest.splits['heldout']) - 1} already done)" in capsys.readouterr().out
    assert mf.read_manifest(out / "manifest.json").splits["train"][1].sha256 == train[1].sha256  # the same tokens
    assert (out / train[0].file).stat().st_mtime_ns == kept

    # Training reads the vocabulary, separator and dtype from the manifest.
    store = tmp_path / "store"
    assert train_main([*TINY, "data=tokens", f"data.path={out}", f"store.root={store}"]) == 0
    (run,) = (store / "runs").iterdir()
    result = json.loads((run / "result.json").read_text())
    assert result["status"] == "SUCCESS" and result["data_source"] == "tokens"
    assert result["corpus_fingerprint"] == TokenFileSource(out, 512).fingerprint()
    assert 0 < result["heldout_loss_nats"] < np.log(512) + 1


def test_prepare_and_train_from_a_hugging_face_dataset(corpus, tmp_path, capsys, monkeypatch):
    """The Hugging Face path, offline: a dataset folder of JSON lines (train.jsonl and
    validation.jsonl, which `datasets` reads as those splits without the network), prepared
    into shards of 20 rows on Ray, and trained on directly with data=hf."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    texts = [f.data.decode() for f in load_corpus()[:50]]
    folder = tmp_path / "dataset"
    folder.mkdir()
    for name, rows in (("train.jsonl", texts[:44]), ("validation.jsonl", texts[44:])):
        (folder / name).write_text("".join(json.dumps({"text": t}) + "\n" for t in rows))
    out = tmp_path / "tokens"
    assert data_main(["prepare", "--hf-dataset", str(folder), "--out", str(out), "--hf-rows-per-shard", "20",
                      "--workers", "2"]) == 0
    assert "4 shards (0 already done)" in capsys.readouterr().out  # 44 rows: 3 train shards; 6 rows: 1 heldout
    manifest = mf.read_manifest(out / "manifest.json")
    assert [len(manifest.splits[s]) for s in ("train", "heldout")] == [3, 1]
    tok = load_tokenizer("bytes")
    first = np.fromfile(out / manifest.splits["train"][0].file, np.dtype(manifest.dtype))
    want = np.append(tok.encode(texts[0]), manifest.eot_token)
    assert np.array_equal(first[:len(want)], want)

    store = tmp_path / "store"
    assert train_main([*TINY, "data=hf", f"data.hf_dataset={folder}", f"store.root={store}"]) == 0
    (run,) = (store / "runs").iterdir()
    result = json.loads((run / "result.json").read_text())
    assert result["status"] == "SUCCESS" and result["data_source"] == "hf"

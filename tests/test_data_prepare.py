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

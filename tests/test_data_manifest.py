"""Token manifests and sharded token files (griffin_core/data/manifest.py, token_files.py,
token_stream.py): the manifest vouches for files it saw, fingerprints and range checks read
it instead of the tokens, rows across shards equal rows of their concatenation, and
`griffin-data manifest` writes it (also as `python -m experiments.data_cli`)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments.data_cli import main as data_main
from griffin_core.data import manifest as mf
from griffin_core.data.batches import HeldoutBatches, TrainBatches
from griffin_core.data.errors import DataError
from griffin_core.data.packing import PackedStream
from griffin_core.data.token_files import TokenFileSource

REPO = Path(__file__).resolve().parents[1]
EOT, VOCAB = 500, 501


def _docs(rng, n, lo=3, hi=60):
    """n documents [len] of ids < EOT, each ending with the separator."""
    return [np.append(rng.integers(0, EOT, int(rng.integers(lo, hi))), EOT).astype(np.uint16) for _ in range(n)]


def _shards(folder: Path, rng, counts=(7, 1, 12), heldout=5, lengths=(3, 60)) -> dict[str, np.ndarray]:
    """train-*.bin shards of whole documents and one heldout shard; returns each split's concatenation."""
    folder.mkdir(parents=True, exist_ok=True)
    train = []
    for i, n in enumerate(counts):
        arr = np.concatenate(_docs(rng, n, *lengths))
        arr.tofile(folder / f"train-{i:05d}.bin")
        train.append(arr)
    held = np.concatenate(_docs(rng, heldout, 40, 90))
    held.tofile(folder / "heldout-00000.bin")
    return {"train": np.concatenate(train), "heldout": held, "starts": np.cumsum([0] + [len(a) for a in train])}


def _reference(tokens: np.ndarray, shard_starts) -> PackedStream:
    """The in-memory stream: documents start at shard starts and after each separator."""
    starts = set(int(s) for s in shard_starts[:-1]) | set((np.flatnonzero(tokens == EOT) + 1).tolist())
    return PackedStream(tokens, np.array(sorted(s for s in starts if s < len(tokens)), np.int64))


def test_describe_write_read_and_the_source_reads_no_tokens(tmp_path, monkeypatch):
    data = _shards(tmp_path / "d", np.random.default_rng(0))
    manifest = mf.describe(tmp_path / "d", VOCAB, "uint16", eot_token=EOT)
    assert [e.file for e in manifest.splits["train"]] == ["train-00000.bin", "train-00001.bin", "train-00002.bin"]
    assert sum(e.tokens for e in manifest.splits["train"]) == len(data["train"]) and manifest.max_id == EOT
    scanned = TokenFileSource(tmp_path / "d", VOCAB, eot_token=EOT).fingerprint()  # no manifest yet: read once
    mf.write_manifest(manifest)
    assert mf.read_manifest(tmp_path / "d" / "manifest.json") == manifest

    def no_reading(*a, **k):
        raise AssertionError("read a token file")

    monkeypatch.setattr(mf, "scan_file", no_reading)
    monkeypatch.setattr(np, "memmap", no_reading)
    src = TokenFileSource(tmp_path / "d", VOCAB)  # separator, dtype from the manifest
    assert src.fingerprint() == scanned  # the manifest is a record of the content, nothing more
    assert src.num_tokens("train") == len(data["train"]) and src.eot_token == EOT
    assert TokenFileSource(tmp_path / "d", VOCAB + 1).fingerprint() != scanned
    with pytest.raises(DataError, match=r"train-00000\.bin: largest token 500 \(from .*manifest\.json\) is >= vocab_size 500"):
        TokenFileSource(tmp_path / "d", EOT).fingerprint()


def test_a_file_that_disagrees_with_its_manifest_is_refused(tmp_path):
    _shards(tmp_path / "d", np.random.default_rng(1))
    mf.write_manifest(mf.describe(tmp_path / "d", VOCAB, eot_token=EOT))
    shard = tmp_path / "d" / "train-00001.bin"
    st = shard.stat()
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    with pytest.raises(DataError, match=r"train-00001\.bin: modified after its manifest .* was written"):
        TokenFileSource(tmp_path / "d", VOCAB).fingerprint()
    # The remedy the message names: rewrite it (keeping the old vocabulary and separator).
    assert data_main(["manifest", str(tmp_path / "d")]) == 0
    assert TokenFileSource(tmp_path / "d", VOCAB).eot_token == EOT
    with open(shard, "ab") as f:
        f.write(b"\x01\x00")
    with pytest.raises(DataError, match=r"train-00001\.bin: .* bytes, but its manifest .* says"):
        TokenFileSource(tmp_path / "d", VOCAB).fingerprint()
    shard.unlink()
    with pytest.raises(DataError, match=r"train-00001\.bin does not exist \(listed in"):
        TokenFileSource(tmp_path / "d", VOCAB).fingerprint()
    (tmp_path / "d" / "manifest.json").write_text('{"format": "griffin-tokens/1", "dtype"')
    with pytest.raises(DataError, match=r"manifest\.json: corrupt"):
        TokenFileSource(tmp_path / "d", VOCAB).fingerprint()


@pytest.mark.parametrize("lengths", [(3, 60), (600, 5000)])  # short documents, and ones longer than a look back
def test_rows_across_shards_equal_rows_of_the_concatenation(tmp_path, lengths):
    data = _shards(tmp_path / "d", np.random.default_rng(2), counts=(7, 1, 4), lengths=lengths)
    mf.write_manifest(mf.describe(tmp_path / "d", VOCAB, eot_token=EOT))
    src = TokenFileSource(tmp_path / "d", VOCAB)
    ref = _reference(data["train"], data["starts"])
    for t in (1, 7, 64):
        stream = src.row_stream("train")
        ids = np.arange(stream.num_rows(t))
        got, want = stream.rows(ids, t), ref.rows(ids, t)
        for key in want:
            assert np.array_equal(got[key], want[key]), (t, key)
    docs = src.documents("heldout")
    assert np.array_equal(np.concatenate(docs), data["heldout"]) and all(d[-1] == EOT for d in docs)


def test_shards_without_separator_are_one_document_each(tmp_path):
    rng = np.random.default_rng(3)
    parts = [rng.integers(0, 300, n).astype(np.uint16) for n in (40, 25, 61)]
    for i, p in enumerate(parts):
        p.tofile(tmp_path / f"train-{i:05d}.bin")
    src = TokenFileSource(tmp_path, 300)
    stream = src.row_stream("train")
    b = stream.rows(np.arange(stream.num_rows(10)), 10)
    ref = PackedStream(np.concatenate(parts), np.array([0, 40, 65])).rows(np.arange(stream.num_rows(10)), 10)
    assert all(np.array_equal(b[k], ref[k]) for k in ref)
    assert [len(d) for d in src.documents("train")] == [40, 25, 61]


def test_batch_order_is_a_pure_function_over_shards_and_processes_split_it(tmp_path):
    _shards(tmp_path / "d", np.random.default_rng(4), counts=(30, 30, 30))
    mf.write_manifest(mf.describe(tmp_path / "d", VOCAB, eot_token=EOT))
    src = TokenFileSource(tmp_path / "d", VOCAB)
    first = TrainBatches(src, 16, 8, seed=5)
    n = first.num_rows
    ids = np.concatenate([first.row_ids(s) for s in range(2 * n // 8 + 1)])
    assert sorted(ids[:n]) == list(range(n)) and sorted(ids[n:2 * n]) == list(range(n))
    again = TrainBatches(TokenFileSource(tmp_path / "d", VOCAB), 16, 8, seed=5)
    for step in (9, 0, 3):
        assert all(np.array_equal(again.batch(step)[k], first.batch(step)[k]) for k in first.batch(step))
        halves = [TrainBatches(src, 16, 8, seed=5, process_index=p, process_count=2).batch(step) for p in (0, 1)]
        assert all(np.array_equal(np.concatenate([h[k] for h in halves]), first.batch(step)[k]) for k in halves[0])
    assert not np.array_equal(TrainBatches(src, 16, 8, seed=6).row_ids(0), first.row_ids(0))
    held = HeldoutBatches(src, 16, 4, max_rows=6)
    parts = [HeldoutBatches(src, 16, 4, max_rows=6, process_index=p, process_count=2).batch(1) for p in (0, 1)]
    assert all(np.array_equal(np.concatenate([p[k] for p in parts]), held.batch(1)[k]) for k in parts[0])


def test_a_nanogpt_file_gets_the_same_figures_with_and_without_its_manifest(tmp_path):
    tokens = np.random.default_rng(5).integers(0, 1000, 500).astype(np.uint16)
    tokens.tofile(tmp_path / "train.bin")
    tokens[:100].tofile(tmp_path / "val.bin")
    before = TokenFileSource(tmp_path, 1000)
    one = TokenFileSource(tmp_path / "train.bin", 1000, heldout=tmp_path / "val.bin")
    assert before.fingerprint() == one.fingerprint()
    manifest = mf.describe(tmp_path / "train.bin", 1000)  # <file>.manifest.json
    assert manifest.path.name == "train.bin.manifest.json"
    mf.write_manifest(manifest)
    assert TokenFileSource(tmp_path / "train.bin", 1000, heldout=tmp_path / "val.bin").fingerprint() == before.fingerprint()
    assert TokenFileSource(tmp_path, 1000).fingerprint() == before.fingerprint()  # the folder: train.bin's own manifest
    with pytest.raises(DataError, match="does not fit uint16 tokens"):
        TokenFileSource(tmp_path / "train.bin", 70_000).fingerprint()


def test_griffin_data_manifest_as_python_dash_m(tmp_path):
    np.arange(300, dtype=np.uint16).tofile(tmp_path / "train.bin")
    np.arange(50, dtype=np.uint16).tofile(tmp_path / "val.bin")
    run = lambda *args: subprocess.run([sys.executable, "-m", "experiments.data_cli", "manifest", *args],
                                       capture_output=True, text=True, cwd=REPO, timeout=120,
                                       env={**os.environ, "PYTHONPATH": str(REPO)})
    out = run(str(tmp_path), "--vocab-size", "300")
    assert out.returncode == 0, out.stderr
    assert "train 300 tokens, heldout 50 tokens (uint16, vocabulary 300, largest id 299)" in out.stdout
    manifest = mf.read_manifest(tmp_path / "manifest.json")
    assert [e.file for e in manifest.splits["heldout"]] == ["val.bin"] and manifest.eot_token is None
    bad = run(str(tmp_path), "--vocab-size", "299")
    assert bad.returncode == 2 and bad.stderr.strip().endswith("token 299 at index 299 is >= vocab_size 299")
    assert len(bad.stderr.strip().splitlines()) == 1

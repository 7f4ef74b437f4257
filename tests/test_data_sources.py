"""User sources: text files/folders, pre-tokenized token files, Hugging Face (not installed)."""

import importlib.util

import numpy as np
import pytest

from griffin_core.data.batches import TrainBatches
from griffin_core.data.errors import DataError
from griffin_core.data.sources import HFDatasetSource, TextFilesSource, TokenFileSource, make_source
from griffin_core.data.tokenizer import ByteTokenizer


def _folder(tmp_path, n=12):
    root = tmp_path / "texts"
    (root / "sub").mkdir(parents=True)
    for i in range(n):
        where = root / "sub" if i % 2 else root
        (where / f"doc{i}.txt").write_text(f"document {i}: " + "héllo wörld " * (i + 1), encoding="utf-8")
    (root / ".hidden").write_bytes(b"\x00\x01")  # hidden files are skipped
    return root


def test_text_folder_documents_split_and_fingerprint(tmp_path):
    root = _folder(tmp_path)
    src = TextFilesSource(root)
    train, held = src.keys("train"), src.keys("heldout")
    assert len(train) + len(held) == 12 and not set(train) & set(held) and held
    assert all(k.startswith("texts/") for k in train + held)
    text = "".join(ByteTokenizer().decode(d) for d in src.documents("train") + src.documents("heldout"))
    assert "héllo wörld" in text and text.count("document") == 12
    assert src.num_bytes("train") == src.num_tokens("train")
    # The fingerprint follows the content, not the location.
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    root.rename(moved / "texts")
    assert TextFilesSource(moved / "texts").fingerprint() == src.fingerprint()
    (moved / "texts" / "doc0.txt").write_text("changed")
    assert TextFilesSource(moved / "texts").fingerprint() != src.fingerprint()


def test_text_source_errors_name_the_path(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match=f"{missing} does not exist"):
        TextFilesSource(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=f"folder {empty} contains no files"):
        TextFilesSource(empty).documents("train")
    root = _folder(tmp_path)
    blob = root / "sub" / "image.png"
    blob.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(DataError, match=f"{blob} is binary") as info:
        TextFilesSource(root).documents("train")
    assert "\n" not in str(info.value)
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(DataError, match=f"{latin} is not UTF-8"):
        TextFilesSource(latin).fingerprint()


def test_single_file_has_no_heldout_split(tmp_path):
    f = tmp_path / "one.txt"
    f.write_text("just one file of text")
    src = TextFilesSource(f)
    assert src.num_tokens("train") == len("just one file of text")
    with pytest.raises(DataError, match="heldout split is empty"):
        src.documents("heldout")


def test_token_file_roundtrip_and_batches(tmp_path):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 1000, size=500).astype(np.uint16)
    val = rng.integers(0, 1000, size=100).astype(np.uint16)
    train.tofile(tmp_path / "train.bin")
    val.tofile(tmp_path / "val.bin")
    src = make_source("tokens", train=tmp_path, vocab_size=1000)
    assert np.array_equal(src.tokens("train"), train) and np.array_equal(src.tokens("heldout"), val)
    assert isinstance(src.tokens("train"), np.memmap)
    assert src.num_tokens("train") == 500 and src.num_documents("train") == 1
    tb = TrainBatches(src, 16, 4, seed=0)
    b = tb.batch(0)
    r = tb.row_ids(0)[0]
    assert b["tokens"][0].tolist() == train[r * 16:r * 16 + 16].tolist()
    fp = src.fingerprint()
    assert fp == TokenFileSource(tmp_path, vocab_size=1000).fingerprint()
    assert fp != TokenFileSource(tmp_path, vocab_size=1001).fingerprint()


def test_token_file_documents_split_at_eot(tmp_path):
    eot = 9
    np.array([1, 2, eot, 3, eot, 4, 5, 6], np.uint16).tofile(tmp_path / "t.bin")
    src = TokenFileSource(tmp_path / "t.bin", vocab_size=10, eot_token=eot)
    assert [d.tolist() for d in src.documents("train")] == [[1, 2, eot], [3, eot], [4, 5, 6]]
    b = TrainBatches(src, 7, 1).batch(0)
    assert b["segment_pos"][0].tolist() == [0, 1, 2, 0, 1, 0, 1]
    assert b["loss_mask"][0].tolist() == [1, 1, 0, 1, 0, 1, 1]


def test_token_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.bin"
    np.array([1, 2, 300, 4], np.uint16).tofile(bad)
    with pytest.raises(DataError, match=rf"{bad}: token 300 at index 2 is >= vocab_size 256"):
        TokenFileSource(bad, vocab_size=256).tokens("train")
    odd = tmp_path / "odd.bin"
    odd.write_bytes(b"\x01\x00\x02")
    with pytest.raises(DataError, match=f"{odd}: 3 bytes"):
        TokenFileSource(odd, vocab_size=256).tokens("train")
    with pytest.raises(DataError, match="does not exist"):
        TokenFileSource(tmp_path / "none.bin", vocab_size=256).tokens("train")
    with pytest.raises(DataError, match="no file given for the heldout split"):
        TokenFileSource(bad, vocab_size=1000).tokens("heldout")


@pytest.mark.skipif(importlib.util.find_spec("datasets") is not None, reason="datasets is installed")
def test_hf_source_without_datasets_fails_clearly():
    with pytest.raises(DataError, match="needs the `datasets` package"):
        HFDatasetSource("some/dataset")


def test_unknown_kinds_fail():
    with pytest.raises(DataError, match="unknown data source"):
        make_source("nope")
    with pytest.raises(DataError, match="unknown tokenizer"):
        make_source("corpus", tokenizer="gpt7")

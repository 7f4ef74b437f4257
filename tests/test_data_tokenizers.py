"""Tokenizers read from files (griffin_core/data/tokenizer.py): SentencePiece models and Hugging
Face `tokenizers` files, trained here on the embedded corpus (nothing is downloaded). The
file's hash is in the tokenizer's name and so in every fingerprint; a missing or corrupt file
is one DataError naming it; vocabularies over 65,536 ids get uint32 token files."""

import numpy as np
import pytest

from experiments.data_prepare import make_settings, prepare_shard, plan_files
from griffin_core.data import load_corpus
from griffin_core.data import manifest as mf
from griffin_core.data.errors import DataError
from griffin_core.data.sources import TextFilesSource
from griffin_core.data.token_files import TokenFileSource
from griffin_core.data.tokenizer import load_tokenizer
from tokenizer_helpers import train_bpe_json, train_sentencepiece


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return [f.data.decode() for f in load_corpus()[:150]]


def test_sentencepiece_model_file(tmp_path, texts):
    train_sentencepiece(texts, tmp_path / "a.model")
    tok = load_tokenizer(tmp_path / "a.model")
    assert tok.vocab_size == 400 and tok.eot_id == 2 and tok.name.startswith("sentencepiece:")
    ids = tok.encode("def main(argv): return 0")
    assert ids.dtype == np.uint16 and ids.max() < 400 and len(ids) < 25
    assert tok.decode(ids) == "def main(argv): return 0"
    assert load_tokenizer(str(tmp_path / "a.model")) is tok  # loaded once per process


def test_tokenizers_json_file(tmp_path, texts):
    train_bpe_json(texts, tmp_path / "bpe.json")
    tok = load_tokenizer(tmp_path / "bpe.json")
    assert tok.vocab_size == 500 and tok.eot_id == 0 and tok.name.startswith("tokenizers:")
    text = "    for key, value in sorted(items):\n        yield key\n"
    assert tok.decode(tok.encode(text)) == text and len(tok.encode(text)) < len(text) / 2


def test_the_tokenizer_file_enters_the_fingerprint(tmp_path, texts):
    folder = tmp_path / "docs"
    folder.mkdir()
    for i, t in enumerate(texts[:20]):
        (folder / f"{i}.py").write_text(t)
    train_sentencepiece(texts, tmp_path / "a.model", 400)
    train_sentencepiece(texts, tmp_path / "b.model", 300)
    fps = {TextFilesSource(folder).fingerprint(), TextFilesSource(folder, load_tokenizer(tmp_path / "a.model")).fingerprint(),
           TextFilesSource(folder, load_tokenizer(tmp_path / "b.model")).fingerprint()}
    assert len(fps) == 3
    src = TextFilesSource(folder, load_tokenizer(tmp_path / "a.model"))
    assert src.vocab_size == 400 and max(int(d.max()) for d in src.documents("train")) < 400


def test_missing_or_corrupt_tokenizer_files_are_named(tmp_path):
    with pytest.raises(DataError, match=r"tokenizer file .*nope\.model does not exist"):
        load_tokenizer(tmp_path / "nope.model")
    (tmp_path / "bad.model").write_bytes(b"not a protobuf at all" * 10)
    with pytest.raises(DataError, match=r"tokenizer file .*bad\.model: not a SentencePiece model"):
        load_tokenizer(tmp_path / "bad.model")
    (tmp_path / "bad.json").write_text('{"version": "1.0", "model": ')
    with pytest.raises(DataError, match=r"tokenizer file .*bad\.json: not a tokenizers JSON file"):
        load_tokenizer(tmp_path / "bad.json")
    with pytest.raises(DataError, match="unknown tokenizer 'gpt7'"):
        load_tokenizer("gpt7")


def test_a_vocabulary_over_65536_ids_gets_uint32_tokens(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = {f"w{i}": i for i in range(70_000)} | {"<|endoftext|>": 70_000}
    tok = Tokenizer(models.WordLevel(words, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "big.json"))
    with pytest.raises(DataError, match="does not fit uint16 tokens"):
        make_settings(str(tmp_path / "big.json"), "uint16")
    settings = make_settings(str(tmp_path / "big.json"))
    assert (settings.dtype, settings.vocab_size, settings.eot) == ("uint32", 70_001, 70_000)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("w1 w69999 w65536")
    (tmp_path / "in" / "b.txt").write_text("w2 w3")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / ".prepare").mkdir()
    for job in plan_files([tmp_path / "in"], 0.5, 1 << 20):  # in this process: the tokens, not Ray, are tested
        prepare_shard(job, settings, str(tmp_path / "out"))
    tokens = np.fromfile(tmp_path / "out" / "train-00000.bin", dtype=np.uint32)
    assert tokens.tolist() in ([1, 69_999, 65_536, 70_000], [2, 3, 70_000])
    manifest = mf.describe(tmp_path / "out", settings.vocab_size, "uint32", settings.eot)
    assert manifest.max_id == 70_000
    mf.write_manifest(manifest)
    src = TokenFileSource(tmp_path / "out", 70_001)
    assert src.dtype == np.uint32 and src.num_tokens("train") == len(tokens)

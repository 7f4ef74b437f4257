"""Tiny tokenizers trained inside the tests on the embedded corpus's text (nothing is downloaded):
a SentencePiece BPE model and a byte-level BPE `tokenizers` file."""

from __future__ import annotations

import io


def train_sentencepiece(texts: list[str], path, vocab_size: int = 400) -> None:
    """A tiny BPE SentencePiece model of `texts` (lines as sentences), written to `path`."""
    import sentencepiece as spm

    model = io.BytesIO()
    lines = [line for t in texts for line in t.splitlines() if line.strip()]
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=model, vocab_size=vocab_size,
                                   model_type="bpe", input_sentence_size=20_000, minloglevel=2)
    path.write_bytes(model.getvalue())


def train_bpe_json(texts: list[str], path, vocab_size: int = 500) -> None:
    """A byte-level BPE `tokenizers` file of `texts` with an <|endoftext|> token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.save(str(path))

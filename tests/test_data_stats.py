"""Entropies and split summaries."""

import math

import pytest

from griffin_core.data.sources import CorpusSource
from griffin_core.data.stats import bigram_entropy, entropy_reference, split_summary, unigram_entropy
from griffin_core.data.tokenizer import ByteTokenizer


def test_unigram_entropy_of_a_tiny_string_by_hand():
    tok = ByteTokenizer()
    docs = [tok.encode("aab")]
    # p(a) = 2/3, p(b) = 1/3
    expected = -(2 / 3) * math.log2(2 / 3) - (1 / 3) * math.log2(1 / 3)
    assert unigram_entropy(docs, 256) == pytest.approx(expected)
    assert unigram_entropy([tok.encode("abab")], 256) == pytest.approx(1.0)


def test_bigram_conditional_entropy_by_hand():
    tok = ByteTokenizer()
    # Pairs ab, ba, ab, bb: after a always b (0 bits); after b: a or b (1 bit), 2 of 4 pairs.
    assert bigram_entropy([tok.encode("ababb")], 256) == pytest.approx(0.5)
    # Pairs never span documents: "ab" + "ab" has pairs ab, ab only -> 0 bits.
    assert bigram_entropy([tok.encode("ab"), tok.encode("ab")], 256) == pytest.approx(0.0)
    assert bigram_entropy([tok.encode("abab")], 256) == pytest.approx(0.0)


def test_corpus_reference_lines_and_counts():
    src = CorpusSource()
    ref = entropy_reference(src)
    assert 0 < ref["bigram_bits"] < ref["unigram_bits"] < 8
    assert ref["unigram_nats"] == pytest.approx(ref["unigram_bits"] * math.log(2))
    counts = split_summary(src)
    assert counts["heldout_tokens"] >= 300_000 and counts["train_tokens"] >= 20_000_000
    assert counts["train_tokens"] == sum(len(d) for d in src.documents("train"))

"""Data: tokenizers, sources of documents, packing into rows, batches, synthetic tasks, stats.

Plain NumPy and the standard library: importing this package never imports JAX, Hydra, Ray or
W&B, so planners and analysis can use it. Every batch is a dict of NumPy [B, T] arrays
(`BATCH_KEYS`) and a pure function of (seed, step). See docs/data.md.
"""

from griffin_core.data.batches import HeldoutBatches, TrainBatches, count_long_documents, long_documents
from griffin_core.data.corpus import DEFAULT_PACKAGES, load_corpus, load_manifest
from griffin_core.data.errors import DataError
from griffin_core.data.packing import BATCH_KEYS, PackedStream, pack_documents, packed_stream
from griffin_core.data.sources import (CorpusSource, HFDatasetSource, TextFilesSource, TokenFileSource,
                                       TokenSource, make_source)
from griffin_core.data.splits import DEFAULT_HELDOUT_FRACTION, heldout_keys, split_rule
from griffin_core.data.stats import (bigram_entropy, corpus_report, entropy_reference, split_summary,
                                     unigram_entropy)
from griffin_core.data.synthetic import InductionHeads, SelectiveCopying, accuracy, make_task
from griffin_core.data.tokenizer import ByteTokenizer, Tokenizer, get_tokenizer, load_tokenizer

__all__ = [
    "BATCH_KEYS", "ByteTokenizer", "CorpusSource", "DEFAULT_HELDOUT_FRACTION", "DEFAULT_PACKAGES",
    "DataError", "HFDatasetSource", "HeldoutBatches", "InductionHeads", "PackedStream",
    "SelectiveCopying", "TextFilesSource", "TokenFileSource", "TokenSource", "Tokenizer",
    "TrainBatches", "accuracy", "bigram_entropy", "corpus_report",
    "count_long_documents", "entropy_reference", "get_tokenizer", "heldout_keys", "load_corpus",
    "load_manifest", "load_tokenizer", "long_documents", "make_source", "make_task", "pack_documents",
    "packed_stream", "split_rule", "split_summary", "unigram_entropy",
]

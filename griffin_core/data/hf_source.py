"""A Hugging Face `datasets` dataset as a token source, and where it may come from.

Where (`dataset_location`):

- `hf://NAME` (`hf://wikitext`, `hf://user/set`) names a dataset on the Hugging Face Hub:
  `datasets` may download it, which the user asked for by writing `hf://`. HF_HUB_OFFLINE
  and HF_DATASETS_OFFLINE are honoured (then only its local cache is used).
- Anything else is a local path: a dataset folder (`train.jsonl`, `validation.jsonl`, ...) or
  a data file. It must exist (else a DataError naming it, before `datasets` is imported), and
  `datasets` runs in offline mode while it loads: nothing contacts the network.

Splits: `train_split` must exist. `heldout_split`, when given, must exist too. When it is not
given (None), the held-out split is the dataset's `validation` split if it has one, else rows
of the train split held out by the text source's rule (splits.heldout_keys over the row
numbers, `heldout_fraction` of them): as files are held out of a folder of text.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os

import numpy as np

from griffin_core.data.errors import DataError
from griffin_core.data.source_base import TokenSource
from griffin_core.data.splits import DEFAULT_HELDOUT_FRACTION, check_split, heldout_keys, split_rule
from griffin_core.data.tokenizer import ByteTokenizer, Tokenizer

HUB_PREFIX = "hf://"
"""How a dataset on the Hub is named; anything else is a local path."""
DEFAULT_HELDOUT_SPLIT = "validation"
HELDOUT_OPTIONS = "--hf-heldout-split (griffin-data prepare)"
TRAIN_OPTIONS = "--hf-split (griffin-data prepare) or data.hf_split (griffin-train)"


def dataset_location(path: str | os.PathLike, what: str = "Hugging Face dataset") -> tuple[str, bool]:
    """(what `datasets.load_dataset` is given, whether it is a Hub name). DataError (its
    message starts with `what`) for a local path that does not exist, or `hf://` without a name."""
    text = os.fspath(path)
    if text.startswith(HUB_PREFIX):
        name = text[len(HUB_PREFIX):].strip("/")
        if not name:
            raise DataError(f"{what} {text!r}: no dataset name after {HUB_PREFIX}")
        return name, True
    local = os.path.expanduser(text)
    if not os.path.exists(local):
        raise DataError(f"{what} {text}: no such file or folder (a dataset on the Hub is "
                        f"written {HUB_PREFIX}NAME)")
    return local, False


@contextlib.contextmanager
def offline(datasets_module):
    """`datasets` and `huggingface_hub` in offline mode for the block. Both read their
    environment variables once, at import, so their module flags are set (and restored).
    `datasets`' progress bars and warnings are off too: a local folder loads in moments, and
    stderr stays for errors."""
    import huggingface_hub.constants as hub

    bars_off = datasets_module.are_progress_bars_disabled()
    verbosity = datasets_module.logging.get_verbosity()
    datasets_module.disable_progress_bars()
    datasets_module.logging.set_verbosity_error()

    flags = [(hub, "HF_HUB_OFFLINE"), (datasets_module.config, "HF_HUB_OFFLINE"),
             (datasets_module.config, "HF_DATASETS_OFFLINE")]
    flags = [(m, n, getattr(m, n)) for m, n in flags if hasattr(m, n)]
    for module, name, _ in flags:
        setattr(module, name, True)
    try:
        yield
    finally:
        for module, name, value in flags:
            setattr(module, name, value)
        datasets_module.logging.set_verbosity(verbosity)
        if not bars_off:
            datasets_module.enable_progress_bars()


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


class HFDatasetSource(TokenSource):
    """A Hugging Face `datasets` dataset (only if the package is installed; nothing is bundled).

    Each row's `text_field` is one document, tokenized with `tokenizer`. Where the dataset may
    come from and which rows are held out: the module doc.
    """

    def __init__(self, path: str, name: str | None = None, text_field: str = "text",
                 train_split: str = "train", heldout_split: str | None = None,
                 tokenizer: Tokenizer | None = None, revision: str | None = None,
                 heldout_fraction: float = DEFAULT_HELDOUT_FRACTION):
        try:
            self._datasets = importlib.import_module("datasets")
        except ImportError:
            raise DataError("Hugging Face source needs the `datasets` package, which is not "
                            "installed (pip install datasets)") from None
        self._load_path, self.hub = dataset_location(path)
        self.args = dict(path=path, name=name, revision=revision)
        self.text_field = text_field
        self.splits = {"train": train_split, "heldout": heldout_split or DEFAULT_HELDOUT_SPLIT}
        self.heldout_given = heldout_split is not None
        self.heldout_fraction = heldout_fraction
        self.tokenizer = tokenizer or ByteTokenizer()
        self.tokenizer_name = self.tokenizer.name
        self.vocab_size = self.tokenizer.vocab_size
        self._views: dict[str, object] | None = None
        self._carved = False
        self._docs: dict[str, list[np.ndarray]] = {}

    def _load(self):
        """Every split of the dataset (a DatasetDict); a failure is one line naming the dataset."""
        guard = contextlib.nullcontext() if self.hub else offline(self._datasets)
        try:
            with guard:
                return self._datasets.load_dataset(**{**self.args, "path": self._load_path})
        except Exception as err:  # the loader's many error types (missing files, bad JSON, the Hub): one line
            raise DataError(f"Hugging Face dataset {self.args['path']}: cannot load it ({_first_line(err)})") from None

    def _split_views(self) -> dict[str, object]:
        """{'train': Dataset, 'heldout': Dataset} by the rule of the module doc."""
        if self._views is not None:
            return self._views
        loaded = self._load()
        names, where = list(loaded), f"Hugging Face dataset {self.args['path']}"
        train, heldout = self.splits["train"], self.splits["heldout"]
        if train not in loaded:
            raise DataError(f"{where}: no split {train!r} (its splits: {names}); name the training split "
                            f"with {TRAIN_OPTIONS}")
        if heldout in loaded:
            self._views = {"train": loaded[train], "heldout": loaded[heldout]}
        elif self.heldout_given:
            raise DataError(f"{where}: no split {heldout!r} (its splits: {names}); name the held-out split with "
                            f"{HELDOUT_OPTIONS}, or leave it out to hold out rows of {train!r}")
        else:  # no validation split: hold out rows of train, as the text source holds out files
            rows = len(loaded[train])
            held = {int(k) for k in heldout_keys(map(str, range(rows)), self.heldout_fraction)}
            self._views = {"train": loaded[train].select([i for i in range(rows) if i not in held]),
                           "heldout": loaded[train].select(sorted(held))}
            self._carved = True
        return self._views

    def _checked(self, split: str):
        ds = self._split_views()[check_split(split)]
        if self.text_field not in ds.column_names:
            raise DataError(f"Hugging Face dataset {self.args['path']}: no column "
                            f"{self.text_field!r} (columns: {ds.column_names})")
        return ds

    def documents(self, split: str) -> list[np.ndarray]:
        if split not in self._docs:
            docs = [self.tokenizer.encode(row[self.text_field]) for row in self._checked(split)]
            self._docs[split] = [d for d in docs if len(d)]
        return self._docs[split]

    def num_rows(self, split: str) -> int:
        """Rows of the split (documents, before empty ones are dropped)."""
        return len(self._checked(split))

    def texts(self, split: str, start: int, stop: int) -> list[str]:
        """The text of rows [start, stop) of the split: data preparation shards by rows."""
        ds = self._checked(split)
        return list(ds.select(range(start, min(stop, len(ds))))[self.text_field])

    def fingerprint(self) -> str:
        # `datasets` fingerprints each split by content and processing history.
        views = self._split_views()
        fps = [getattr(views[s], "_fingerprint", "") for s in ("train", "heldout")]
        splits = self.splits
        if self._carved:  # rows held out of train: the rule is part of the data
            splits = {"train": splits["train"], "heldout": f"rows of {splits['train']}: "
                                                           f"{split_rule(self.heldout_fraction)}"}
        desc = f"hf\n{self.args}\n{splits}\n{self.text_field}\n{self.tokenizer_name}\n{fps}"
        return hashlib.sha256(desc.encode()).hexdigest()

"""The embedded corpus: manifest verification, split by file, fingerprint, size."""

import json
import subprocess
import sys

import pytest

from griffin_core.data import corpus
from griffin_core.data.errors import DataError
from griffin_core.data.sources import CorpusSource
from griffin_core.data.splits import heldout_keys


@pytest.fixture(scope="module")
def manifest():
    return corpus.load_manifest()


def test_manifest_verifies_on_this_install():
    files = corpus.load_corpus()
    manifest_files = corpus.manifest_entries(corpus.load_manifest())
    assert len(files) == len(manifest_files)
    assert [f.path for f in files] == [p for p, _, _ in manifest_files]


def test_corpus_is_large_and_pinned(manifest):
    total = sum(size for _, size, _ in corpus.manifest_entries(manifest))
    assert total >= 20_000_000
    # Every package is pinned to the version in requirements.lock.
    for pkg in manifest["packages"]:
        assert pkg["version"] and "=" not in pkg["version"]
        assert all(not p.endswith(("_version.py",)) for p, _, _ in pkg["files"])


def _tiny_manifest(manifest, tmp_path, edit):
    """A temporary manifest of three real files, one changed by `edit(entry)`."""
    pkg = dict(manifest["packages"][0])
    pkg["files"] = [list(f) for f in pkg["files"][:3]]
    edit(pkg["files"][1])
    tiny = dict(manifest, packages=[pkg])
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(tiny))
    return path, pkg["files"][1][0]


@pytest.mark.parametrize("what, edit", [
    ("sha256 mismatch", lambda e: e.__setitem__(2, "0" * 64)),
    ("size", lambda e: e.__setitem__(1, e[1] + 1)),
    ("missing", lambda e: e.__setitem__(0, e[0] + ".gone")),
])
def test_altered_manifest_fails_naming_the_file(manifest, tmp_path, what, edit):
    path, name = _tiny_manifest(manifest, tmp_path, edit)
    with pytest.raises(DataError) as info:
        corpus.load_corpus(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert name in msg and what in msg
    assert manifest["packages"][0]["name"] + "==" in msg  # names the pinned version


def test_unaltered_tiny_manifest_passes(manifest, tmp_path):
    path, _ = _tiny_manifest(manifest, tmp_path, lambda e: None)
    assert len(corpus.load_corpus(path)) == 3


def test_missing_package_fails(manifest, tmp_path):
    path, _ = _tiny_manifest(manifest, tmp_path, lambda e: None)
    m = json.loads(path.read_text())
    m["packages"][0]["name"] = "no-such-package-xyz"
    path.write_text(json.dumps(m))
    with pytest.raises(DataError, match="no-such-package-xyz is not installed"):
        corpus.load_corpus(path)


def test_heldout_split_is_by_file_disjoint_and_deterministic(manifest):
    keys = [p for p, _, _ in corpus.manifest_entries(manifest)]
    held = heldout_keys(keys)
    assert held == heldout_keys(list(reversed(keys)))  # order of listing is irrelevant
    assert held == heldout_keys(keys + ["extra/new_file.py"]) - {"extra/new_file.py"}
    assert 0.01 < len(held) / len(keys) < 0.06
    src = CorpusSource()
    train, heldout = set(src.keys("train")), set(src.keys("heldout"))
    assert not train & heldout
    assert heldout <= held and train.isdisjoint(held)
    assert len(src.keys("train")) == len(src.documents("train"))
    assert src.num_tokens("heldout") >= 300_000
    assert src.num_tokens("train") + src.num_tokens("heldout") == sum(
        s for _, s, _ in corpus.manifest_entries(manifest))


def test_fingerprint_is_stable_and_sensitive(manifest, tmp_path):
    fp = CorpusSource().fingerprint()
    assert fp == CorpusSource().fingerprint()
    assert len(fp) == 64
    assert CorpusSource(heldout_fraction=0.05).fingerprint() != fp
    path, _ = _tiny_manifest(manifest, tmp_path, lambda e: None)
    assert CorpusSource(manifest=path).fingerprint() != fp


def test_write_manifest_reproduces_the_shipped_one(tmp_path):
    out = tmp_path / "m.json"
    assert corpus.main(["--write-manifest", "--output", str(out)]) == 0
    assert json.loads(out.read_text()) == corpus.load_manifest()


def test_data_package_imports_no_heavy_frameworks():
    code = ("import sys, griffin_core.data; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'jax','hydra','ray','wandb','omegaconf'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_heldout_rule_is_the_documented_hash_rule(manifest):
    import hashlib

    keys = [p for p, _, _ in corpus.manifest_entries(manifest)]
    by_hand = {k for k in keys
               if int.from_bytes(hashlib.sha256(b"heldout:" + k.encode()).digest()[:8], "big") % 10000 < 300}
    assert heldout_keys(keys, 0.03) == by_hand

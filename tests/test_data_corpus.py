"""The embedded corpus: the shipped archive against its manifest, licences, one-line errors,
loading without the corpus packages installed, split by file, fingerprint, size."""

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from griffin_core.data import corpus, corpus_build
from griffin_core.data.errors import DataError
from griffin_core.data.sources import CorpusSource
from griffin_core.data.splits import heldout_keys

LOCK = corpus_build.DEFAULT_LOCK  # the corpus's own pins (griffin_core/data/corpus_pins.txt)
"""The checkout's lock file (an installed package has none beside it)."""

# The corpus fingerprint every existing run id was made with: it must never change by accident.
FINGERPRINT = "e62b14311569fde53946e7122d2905039d8ea7d8131091a759f20c7b8b41e94d"


@pytest.fixture(scope="module")
def manifest():
    return corpus.load_manifest()


@pytest.fixture(scope="module")
def members(manifest):
    return corpus.read_archive(expected_sha256=manifest["archive"]["sha256"])


def _digest(files) -> str:
    """One hash over (path, bytes) in document order."""
    h = hashlib.sha256()
    for f in files:
        h.update(f.path.encode() + b"\0" + f.data)
    return h.hexdigest()


def test_loaded_corpus_is_what_the_manifest_describes(manifest):
    files = corpus.load_corpus()
    entries = corpus.manifest_entries(manifest)
    assert [f.path for f in files] == [p for p, _, _ in entries]  # same documents, same order
    assert [(len(f.data), hashlib.sha256(f.data).hexdigest()) for f in files] == [(s, h) for _, s, h in entries]
    assert CorpusSource().fingerprint() == FINGERPRINT


def test_archive_matches_the_manifest(manifest, members):
    raw = corpus.archive_path().read_bytes()
    assert len(raw) == manifest["archive"]["size"]
    assert hashlib.sha256(raw).hexdigest() == manifest["archive"]["sha256"]
    licence_entries = [e for p in manifest["packages"] for e in p["license_files"]]
    expected = {corpus.CORPUS_PREFIX + p: (s, h) for p, s, h in corpus.manifest_entries(manifest)}
    expected.update({p: (s, h) for p, s, h in licence_entries})
    assert set(members) == set(expected)  # nothing missing, nothing extra
    for name, data in members.items():
        assert (len(data), hashlib.sha256(data).hexdigest()) == expected[name], name


def test_every_package_has_its_licence_in_the_archive(manifest, members):
    for pkg in manifest["packages"]:
        texts = [members[name] for name, _, _ in pkg["license_files"]]
        assert texts and all(texts), pkg["name"]
        assert any(b"licen" in t.lower() or b"copyright" in t.lower() for t in texts), pkg["name"]
        assert pkg["license"] and pkg["license"] != "unknown", pkg["name"]
        assert all(n.startswith(f"{corpus.LICENSES_PREFIX}{pkg['name']}/") for n, _, _ in pkg["license_files"])


def test_archive_repacks_to_the_same_tar(manifest, members):
    """The shipped archive is exactly what the builder's deterministic packing makes of its files."""
    dists = []
    for pkg in manifest["packages"]:
        files = {p: members[corpus.CORPUS_PREFIX + p] for p, _, _ in pkg["files"]}
        prefix = f"{corpus.LICENSES_PREFIX}{pkg['name']}/"
        licences = {n[len(prefix):]: members[n] for n, _, _ in pkg["license_files"]}
        dists.append(corpus_build.Dist(pkg["name"], pkg["version"], files, licences, pkg["license"], ""))
    tar = corpus_build.pack_tar(dists)
    assert hashlib.sha256(tar).hexdigest() == manifest["archive"]["tar_sha256"]
    small = corpus_build.pack_tar(dists[-2:])
    assert corpus_build.gzip_bytes(small) == corpus_build.gzip_bytes(small)
    assert corpus.read_tar_gz(corpus_build.gzip_bytes(small)).keys() >= {
        corpus.CORPUS_PREFIX + p for p, _, _ in manifest["packages"][-1]["files"]}


def test_corpus_is_large_and_pinned_to_the_lock(manifest):
    total = sum(size for _, size, _ in corpus.manifest_entries(manifest))
    assert total >= 20_000_000
    pins = corpus_build.read_lock(LOCK)
    assert [p["name"] for p in manifest["packages"]] == list(corpus.DEFAULT_PACKAGES)
    for pkg in manifest["packages"]:
        assert pkg["version"] == pins[corpus_build.normalize(pkg["name"])]
        assert all(not p.endswith(corpus.EXCLUDED_NAMES) for p, _, _ in pkg["files"])


def test_selection_rules():
    paths = ["a/x.py", "a/version.py", "a/_version.py", "a/__pycache__/x.cpython-311.pyc", "a/b.md",
             "a/data.json", "a-1.0.dist-info/METADATA", "a-1.0.dist-info/README.md",
             "a-1.0.data/purelib/c/y.py", "a-1.0.data/scripts/tool.py", "../../bin/run.py"]
    assert corpus_build.corpus_paths(paths) == {"a/b.md": "a/b.md", "a/x.py": "a/x.py",
                                                "c/y.py": "a-1.0.data/purelib/c/y.py"}
    lic = ["a-1.0.dist-info/LICENSE", "a-1.0.dist-info/licenses/NOTICE", "a-1.0.dist-info/licenses/LICENSE",
           "a-1.0.dist-info/COPYING.txt", "a-1.0.dist-info/RECORD", "a/LICENSE"]
    assert corpus_build.licence_paths(lic) == {
        "COPYING.txt": "a-1.0.dist-info/COPYING.txt", "LICENSE": "a-1.0.dist-info/LICENSE",
        "licenses/LICENSE": "a-1.0.dist-info/licenses/LICENSE", "NOTICE": "a-1.0.dist-info/licenses/NOTICE"}


def _tiny_manifest(manifest, tmp_path, edit, archive_sha=None):
    """A temporary manifest of three real files, one changed by `edit(entry)`."""
    pkg = dict(manifest["packages"][0])
    pkg["files"] = [list(f) for f in pkg["files"][:3]]
    edit(pkg["files"][1])
    tiny = dict(manifest, packages=[pkg])
    if archive_sha:
        tiny["archive"] = dict(manifest["archive"], sha256=archive_sha)
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
    assert name in msg and what in msg and corpus.ARCHIVE_NAME in msg
    assert manifest["packages"][0]["name"] + "==" in msg  # names the pinned version


def test_unaltered_tiny_manifest_passes(manifest, tmp_path):
    path, _ = _tiny_manifest(manifest, tmp_path, lambda e: None)
    assert len(corpus.load_corpus(path)) == 3


def _one_line_error(call) -> str:
    with pytest.raises(DataError) as info:
        call()
    msg = str(info.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("damage", ["flip", "truncate", "missing"])
def test_damaged_archive_fails_naming_it(tmp_path, monkeypatch, damage):
    bad = tmp_path / corpus.ARCHIVE_NAME
    raw = bytearray(corpus.archive_path().read_bytes())
    if damage == "flip":
        raw[len(raw) // 2] ^= 0xFF
        bad.write_bytes(raw)
    elif damage == "truncate":
        bad.write_bytes(raw[: len(raw) // 3])
    monkeypatch.setattr(corpus, "archive_path", lambda: bad)
    msg = _one_line_error(corpus.load_corpus)
    assert str(bad) in msg and ("missing" if damage == "missing" else "sha256 mismatch") in msg
    assert "corpus_build" in msg  # says how to repair
    assert str(bad) in _one_line_error(lambda: CorpusSource().documents("train"))


def test_unreadable_archive_fails_naming_it(manifest, tmp_path):
    """An archive whose sha256 the manifest accepts but that is no tar.gz still fails in one line."""
    bad = tmp_path / "garbage.tar.gz"
    bad.write_bytes(b"\x1f\x8b not really gzip")
    path, _ = _tiny_manifest(manifest, tmp_path, lambda e: None,
                             archive_sha=hashlib.sha256(bad.read_bytes()).hexdigest())
    msg = _one_line_error(lambda: corpus.load_corpus(path, archive=bad))
    assert str(bad) in msg and "not a readable tar.gz" in msg


def test_old_schema_manifest_fails_in_one_line(tmp_path):
    path = tmp_path / corpus.MANIFEST_NAME
    path.write_text(json.dumps({"schema": 1, "packages": []}))
    assert "schema 1" in _one_line_error(lambda: corpus.load_corpus(path))


def test_loads_without_the_corpus_packages_installed(tmp_path):
    """The reported failure: other versions installed (here: no corpus package, a newer pydantic).

    A subprocess without site (-I -S) sees only the project source and numpy, plus the
    metadata of a pydantic 99.0; it must load the same bytes, so site-packages is never read.
    """
    import numpy

    site = tmp_path / "site"
    site.mkdir()
    np_dir = Path(numpy.__file__).parent
    (site / "numpy").symlink_to(np_dir)
    if np_dir.with_name("numpy.libs").exists():
        (site / "numpy.libs").symlink_to(np_dir.with_name("numpy.libs"))
    fake = site / "pydantic-99.0.dist-info"
    fake.mkdir()
    (fake / "METADATA").write_text("Metadata-Version: 2.1\nName: pydantic\nVersion: 99.0\n")
    (fake / "RECORD").write_text("pydantic/__init__.py,,\n")
    (site / "pydantic").mkdir()
    (site / "pydantic" / "__init__.py").write_text("raise ImportError('not the pinned pydantic')\n")
    # The package alone, copied out of wherever it is installed (site-packages holds the rest).
    root = tmp_path / "src"
    shutil.copytree(Path(corpus.__file__).resolve().parents[1], root / "griffin_core",
                    ignore=shutil.ignore_patterns("__pycache__"))
    code = f"""
import hashlib, importlib.metadata as md, importlib.util, json, sys
sys.path[:0] = [{str(site)!r}, {str(root)!r}]
from griffin_core.data import corpus
from griffin_core.data.sources import CorpusSource
files = corpus.load_corpus()
h = hashlib.sha256()
for f in files:
    h.update(f.path.encode() + b"\\0" + f.data)
print(json.dumps({{"n": len(files), "digest": h.hexdigest(), "fp": CorpusSource().fingerprint(),
                  "module": corpus.__file__, "pydantic": md.version("pydantic"),
                  "visible": [p for p in {list(corpus.DEFAULT_PACKAGES)!r}
                              if importlib.util.find_spec(p.replace("-", "_")) is not None],
                  "site": [p for p in sys.path if "site-packages" in p]}}))
"""
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    files = corpus.load_corpus()
    assert got["site"] == [] and got["pydantic"] == "99.0"
    assert got["visible"] == ["pydantic"]  # only the fake one: no corpus package importable
    assert Path(got["module"]).resolve().is_relative_to(root)
    assert (got["n"], got["digest"], got["fp"]) == (len(files), _digest(files), FINGERPRINT)


def test_installed_build_reproduces_the_archive(manifest):
    """The offline builder (`--from installed`) gives the shipped files and tar, when the lock's
    versions are what is installed (skipped otherwise: that is exactly what no longer matters)."""
    try:
        dists = corpus_build.collect(source="installed", lock=LOCK)
    except DataError as e:
        pytest.skip(f"installed packages differ from the lock: {e}")
    tar = corpus_build.pack_tar(dists)
    assert hashlib.sha256(tar).hexdigest() == manifest["archive"]["tar_sha256"]


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
    assert fp == CorpusSource().fingerprint() == FINGERPRINT
    assert CorpusSource(heldout_fraction=0.05).fingerprint() != fp
    path, _ = _tiny_manifest(manifest, tmp_path, lambda e: None)
    assert CorpusSource(manifest=path).fingerprint() != fp


def test_data_package_imports_no_heavy_frameworks():
    code = ("import sys, griffin_core.data; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'jax','hydra','ray','wandb','omegaconf'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_heldout_rule_is_the_documented_hash_rule(manifest):
    keys = [p for p, _, _ in corpus.manifest_entries(manifest)]
    by_hand = {k for k in keys
               if int.from_bytes(hashlib.sha256(b"heldout:" + k.encode()).digest()[:8], "big") % 10000 < 300}
    assert heldout_keys(keys, 0.03) == by_hand

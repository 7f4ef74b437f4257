"""The embedded default corpus: source files of exactly pinned, pure-Python packages, shipped
inside this package as one compressed archive.

Why an archive and not the installed packages: reading the corpus from site-packages made it
depend on what else is installed (one newer pydantic in the environment and every run on the
default data failed). The archive `corpus.tar.gz` (package data) holds the files themselves,
so the corpus is present and byte-identical wherever this package installs, whatever else is
installed, and nothing outside this package is read at run time.

`corpus_manifest.json` (package data) pins it: the archive's sha256 and, for each package, its
exact version (from requirements.lock), its licence file(s) inside the archive and, for each
corpus file, the path relative to site-packages, the size and the sha256. Loading checks the
archive's sha256, decompresses it once per process, and verifies every file against the
manifest; anything missing or different is a one-line `DataError` naming the archive or file.

The archive is built (from the lock's wheels on PyPI) by `python -m griffin_core.data.corpus_build`;
`python -m griffin_core.data.corpus` verifies it (and `--stats` prints the corpus numbers).
The archive holds gzip, not xz: zlib is in every Python that can install a wheel, while the
`lzma` module is optional in CPython builds, and a missing module would mean a missing corpus.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import sys
import tarfile
import zlib
from pathlib import Path

from griffin_core.data.errors import DataError

MANIFEST_NAME = "corpus_manifest.json"
ARCHIVE_NAME = "corpus.tar.gz"
MANIFEST_SCHEMA = 2
# Member names inside the archive: corpus files under CORPUS_PREFIX + their site-packages path,
# licence texts under LICENSES_PREFIX + '<package>/<file>'.
CORPUS_PREFIX = "corpus/"
LICENSES_PREFIX = "licenses/"

# Pure-Python (py3-none-any) packages pinned in requirements.lock, largest first. Left out on
# purpose: the interpreter's standard library (differs between Python builds), platform
# wheels (ray, numpy, wandb, ...), and packages made mostly of generated code (protobuf
# bindings, OpenTelemetry's generated semantic conventions).
# Runtime dependencies only (not jax, whose version an accelerator install may change, nor the
# test tools): the list the archive was built from, kept so the corpus never silently changes.
DEFAULT_PACKAGES = (
    "pygments", "orbax-checkpoint", "flax", "pydantic", "optax", "rich",
    "fsspec", "anyio", "treescope", "hydra-core", "packaging", "pyparsing",
    "antlr4-python3-runtime", "absl-py", "click", "urllib3", "etils", "jsonschema", "omegaconf",
    "idna", "python-dateutil", "httpx", "httpcore", "markdown-it-py", "opt-einsum", "requests",
    "attrs", "platformdirs", "typing-extensions", "referencing", "h11", "filelock",
)
# Text written by people: source, stubs and docs. Version files are left out: some build
# backends generate them, and they carry almost no text.
SUFFIXES = (".py", ".pyi", ".md", ".rst")
EXCLUDED_NAMES = ("version.py", "_version.py")

_REBUILD = "reinstall the package, or rebuild the archive with `python -m griffin_core.data.corpus_build`"


@dataclasses.dataclass(frozen=True)
class CorpusFile:
    """One verified corpus file: one document."""

    package: str
    """Distribution name, e.g. 'hydra-core'."""
    path: str
    """Path relative to site-packages, e.g. 'hydra/main.py'; the document's key."""
    data: bytes
    """The file's bytes, verified against the manifest."""


def manifest_path() -> Path:
    """The manifest shipped inside this package (found next to this module, never by a fixed path)."""
    return Path(__file__).with_name(MANIFEST_NAME)


def archive_path() -> Path:
    """The corpus archive shipped inside this package, next to this module."""
    return Path(__file__).with_name(ARCHIVE_NAME)


def load_manifest(path: str | Path | None = None) -> dict:
    """Read and sanity-check a manifest (default: the shipped one)."""
    path = Path(path) if path is not None else manifest_path()
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"corpus manifest {path.name} is missing (reinstall the package)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"corpus manifest {path.name} is not valid JSON: {_one_line(e)}") from None
    if manifest.get("schema") != MANIFEST_SCHEMA:
        raise DataError(f"corpus manifest {path.name}: schema {manifest.get('schema')!r}, "
                        f"expected {MANIFEST_SCHEMA} ({_REBUILD})")
    return manifest


def manifest_entries(manifest: dict) -> list[tuple[str, int, str]]:
    """All (path, size, sha256) corpus entries, sorted by path (licence files are not corpus)."""
    return sorted((p, int(s), h) for pkg in manifest["packages"] for p, s, h in pkg["files"])


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def read_tar_gz(data: bytes) -> dict[str, bytes]:
    """Regular-file members of a gzip-compressed tar, by name (raises zlib/tarfile errors)."""
    tar = zlib.decompress(data, wbits=31)  # 31: gzip container
    members: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(tar), mode="r:") as tf:
        for info in tf:
            if info.isfile():
                members[info.name] = tf.extractfile(info).read()
    return members


# Decompressed archives by their sha256: one decompression per process, however many sources,
# manifests (tests use subsets) or calls. About 24 MB of bytes, shared by every CorpusFile.
_ARCHIVES: dict[str, dict[str, bytes]] = {}
_VERIFIED: dict[tuple[str, str], tuple[CorpusFile, ...]] = {}


def read_archive(path: str | Path | None = None, expected_sha256: str | None = None) -> dict[str, bytes]:
    """The archive's members by name, after checking its sha256; cached per content.

    Raises DataError naming the archive if it is missing, unreadable, not what the manifest
    pins (`expected_sha256`), or not a gzip-compressed tar.
    """
    path = Path(path) if path is not None else archive_path()
    try:
        raw = path.read_bytes()
    except OSError as e:
        what = "missing" if isinstance(e, FileNotFoundError) else f"unreadable ({_one_line(e)})"
        raise DataError(f"corpus archive {path}: {what}; {_REBUILD}") from None
    digest = hashlib.sha256(raw).hexdigest()
    if expected_sha256 is not None and digest != expected_sha256:
        raise DataError(f"corpus archive {path}: sha256 mismatch (corrupt, or not the archive "
                        f"{MANIFEST_NAME} pins: {len(raw):,} bytes); {_REBUILD}")
    if digest not in _ARCHIVES:
        try:
            _ARCHIVES[digest] = read_tar_gz(raw)
        except (zlib.error, tarfile.TarError, EOFError, OSError) as e:
            raise DataError(f"corpus archive {path}: not a readable tar.gz ({_one_line(e)}); "
                            f"{_REBUILD}") from None
    return _ARCHIVES[digest]


def load_corpus(path: str | Path | None = None, archive: str | Path | None = None) -> tuple[CorpusFile, ...]:
    """Every corpus file of the manifest at `path`, read from the archive and verified.

    Defaults: the shipped manifest and archive. The result is sorted by path (the document
    order) and cached per (manifest, archive) content. Raises DataError naming the archive,
    or the first file that is missing from it or differs in size or sha256.
    """
    path = Path(path) if path is not None else manifest_path()
    manifest = load_manifest(path)
    info = manifest.get("archive") or {}
    members = read_archive(archive, expected_sha256=info.get("sha256"))
    archive_name = Path(archive).name if archive is not None else ARCHIVE_NAME
    key = (hashlib.sha256(path.read_bytes()).hexdigest(), info.get("sha256") or str(archive))
    if key in _VERIFIED:
        return _VERIFIED[key]
    out = []
    for pkg in manifest["packages"]:
        pin = f"manifest pins {pkg['name']}=={pkg['version']}; {_REBUILD}"
        for rel, size, digest in pkg["files"]:
            data = members.get(CORPUS_PREFIX + rel)
            if data is None:
                raise DataError(f"corpus file {rel}: missing from {archive_name} ({pin})")
            if len(data) != size:
                raise DataError(f"corpus file {rel}: size {len(data)} != {size} in {archive_name} ({pin})")
            if hashlib.sha256(data).hexdigest() != digest:
                raise DataError(f"corpus file {rel}: sha256 mismatch in {archive_name} ({pin})")
            out.append(CorpusFile(package=pkg["name"], path=rel, data=data))
    if not out:
        raise DataError(f"corpus manifest {path.name} lists no files")
    _VERIFIED[key] = tuple(sorted(out, key=lambda f: f.path))
    return _VERIFIED[key]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m griffin_core.data.corpus", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    try:
        files = load_corpus()
        print(f"corpus verified: {len(files)} files, {sum(len(f.data) for f in files):,} bytes "
              f"from {archive_path().name} (its numbers: python -m griffin_core.data.stats)")
        return 0
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

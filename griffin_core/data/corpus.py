"""The embedded default corpus: source files of exactly pinned, pure-Python packages.

Every install from `requirements.lock` puts the same bytes on disk (the packages are
platform-independent `py3-none-any` wheels), so the corpus needs no download and is identical
on every machine. `corpus_manifest.json` (package data) pins it: for each package its exact
version and, for each file, the path relative to site-packages, the size and the sha256.
Loading verifies every byte against the manifest and fails with one line naming the file.

When the lock changes, regenerate the manifest:

    python -m griffin_core.data.corpus --write-manifest
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.metadata as metadata
import json
import sys
from pathlib import Path

from griffin_core.data.errors import DataError

MANIFEST_NAME = "corpus_manifest.json"
MANIFEST_SCHEMA = 1

# Pure-Python (py3-none-any) packages pinned in requirements.lock, largest first. Left out on
# purpose: the interpreter's standard library (differs between Python builds), platform
# wheels (ray, numpy, wandb, ...), and packages made mostly of generated code (protobuf
# bindings, OpenTelemetry's generated semantic conventions).
# Runtime dependencies only (not jax, whose version an accelerator install may change, nor the
# test tools), so every install of the lock file has the same corpus.
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
_EXCLUDED_NAMES = ("version.py", "_version.py")


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


def _listed_files(dist: metadata.Distribution) -> list[str]:
    """Relative paths of a distribution's corpus files, from its RECORD, sorted."""
    out = []
    for f in dist.files or ():
        rel = f.as_posix()
        name = rel.rsplit("/", 1)[-1]
        if (rel.startswith("..") or ".dist-info/" in rel or "__pycache__" in rel
                or not rel.endswith(SUFFIXES) or name in _EXCLUDED_NAMES):
            continue
        out.append(rel)
    return sorted(out)


def build_manifest(packages: tuple[str, ...] = DEFAULT_PACKAGES) -> dict:
    """Describe the installed files of `packages` (what `--write-manifest` saves)."""
    entries = []
    for name in packages:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise DataError(f"corpus package {name} is not installed") from None
        wheel = dist.read_text("WHEEL") or ""
        tags = [line.split(":", 1)[1].strip() for line in wheel.splitlines() if line.startswith("Tag:")]
        if not tags or not all(t.endswith("-none-any") for t in tags):
            raise DataError(f"corpus package {name} is not a pure-Python wheel (tags {tags})")
        files = []
        for rel in _listed_files(dist):
            data = Path(dist.locate_file(rel)).read_bytes()
            files.append([rel, len(data), hashlib.sha256(data).hexdigest()])
        if not files:
            raise DataError(f"corpus package {name} has no {'/'.join(SUFFIXES)} files")
        entries.append({"name": name, "version": dist.version, "files": files})
    return {
        "schema": MANIFEST_SCHEMA,
        "about": "Default corpus: these exact files of these pinned packages. "
                 "Regenerate with: python -m griffin_core.data.corpus --write-manifest",
        "suffixes": list(SUFFIXES),
        "file_fields": ["path", "size", "sha256"],
        "packages": entries,
    }


def dump_manifest(manifest: dict) -> str:
    """JSON with one file entry per line: small diffs when the lock changes."""
    lines = ["{"]
    for key in ("schema", "about", "suffixes", "file_fields"):
        lines.append(f"  {json.dumps(key)}: {json.dumps(manifest[key])},")
    lines.append('  "packages": [')
    for i, pkg in enumerate(manifest["packages"]):
        lines.append(f'    {{"name": {json.dumps(pkg["name"])}, "version": {json.dumps(pkg["version"])}, "files": [')
        rows = [f"      {json.dumps(f)}" for f in pkg["files"]]
        lines.append(",\n".join(rows))
        lines.append("    ]}" + ("," if i + 1 < len(manifest["packages"]) else ""))
    lines.append("  ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


def load_manifest(path: str | Path | None = None) -> dict:
    """Read and sanity-check a manifest (default: the shipped one)."""
    path = Path(path) if path is not None else manifest_path()
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"corpus manifest {path.name} is missing (reinstall the package)") from None
    except json.JSONDecodeError as e:
        raise DataError(f"corpus manifest {path.name} is not valid JSON: {e}") from None
    if manifest.get("schema") != MANIFEST_SCHEMA:
        raise DataError(f"corpus manifest {path.name}: schema {manifest.get('schema')!r}, "
                        f"expected {MANIFEST_SCHEMA}")
    return manifest


def manifest_entries(manifest: dict) -> list[tuple[str, int, str]]:
    """All (path, size, sha256) entries, sorted by path."""
    return sorted((p, int(s), h) for pkg in manifest["packages"] for p, s, h in pkg["files"])


_HINT = ("install requirements.lock, or regenerate the manifest with "
         "`python -m griffin_core.data.corpus --write-manifest`")
_VERIFIED: dict[str, tuple[CorpusFile, ...]] = {}


def load_corpus(path: str | Path | None = None) -> tuple[CorpusFile, ...]:
    """Read and verify every corpus file; the result is cached per manifest content.

    Raises DataError naming the first file that is missing or differs in size or sha256.
    """
    path = Path(path) if path is not None else manifest_path()
    key = hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else str(path)
    if key in _VERIFIED:
        return _VERIFIED[key]
    manifest = load_manifest(path)
    out = []
    for pkg in manifest["packages"]:
        name, version = pkg["name"], pkg["version"]
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise DataError(f"corpus package {name} is not installed "
                            f"(manifest pins {name}=={version}; {_HINT})") from None
        pin = f"manifest pins {name}=={version}; installed {name}=={dist.version}; {_HINT}"
        for rel, size, digest in pkg["files"]:
            try:
                data = Path(dist.locate_file(rel)).read_bytes()
            except FileNotFoundError:
                raise DataError(f"corpus file {rel}: missing ({pin})") from None
            if len(data) != size:
                raise DataError(f"corpus file {rel}: size {len(data)} != {size} ({pin})")
            if hashlib.sha256(data).hexdigest() != digest:
                raise DataError(f"corpus file {rel}: sha256 mismatch ({pin})")
            out.append(CorpusFile(package=name, path=rel, data=data))
    if not out:
        raise DataError(f"corpus manifest {path.name} lists no files")
    _VERIFIED[key] = tuple(sorted(out, key=lambda f: f.path))
    return _VERIFIED[key]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m griffin_core.data.corpus", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write-manifest", action="store_true",
                        help="rebuild the manifest from the installed packages and write it")
    parser.add_argument("--output", default=None, help="where to write (default: the package's own)")
    parser.add_argument("--stats", action="store_true",
                        help="after verifying, print tokens per split and entropies")
    args = parser.parse_args(argv)
    try:
        if args.write_manifest:
            out = Path(args.output) if args.output else manifest_path()
            manifest = build_manifest()
            out.write_text(dump_manifest(manifest), encoding="utf-8")
            n = sum(len(p["files"]) for p in manifest["packages"])
            size = sum(s for _, s, _ in manifest_entries(manifest))
            print(f"wrote {out.name}: {len(manifest['packages'])} packages, {n} files, {size:,} bytes")
            return 0
        files = load_corpus()
        print(f"corpus verified: {len(files)} files, {sum(len(f.data) for f in files):,} bytes")
        if args.stats:
            from griffin_core.data.sources import CorpusSource
            from griffin_core.data.stats import corpus_report

            for k, v in corpus_report(CorpusSource()).items():
                print(f"  {k}: {v}")
        return 0
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

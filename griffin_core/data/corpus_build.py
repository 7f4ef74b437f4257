"""Build the embedded corpus archive and its manifest from the corpus's pins.

    python -m griffin_core.data.corpus_build            # from the pinned wheels (needs PyPI)
    python -m griffin_core.data.corpus_build --check    # rebuild in memory, compare, write nothing
    python -m griffin_core.data.corpus_build --from installed   # offline fallback

Why a build step: the corpus used to be read from the installed packages, so it existed only in
environments holding the lock's exact versions. Now, for every package of `corpus.DEFAULT_PACKAGES`,
this takes the version `corpus_pins.txt` pins (the corpus's own pins, frozen apart from the
project's requirements.lock so that the data set does not move with the dependencies; they
were the lock's versions when the corpus was built), obtains that wheel (`pip download --no-deps
--only-binary=:all:`; a release published only as an sdist is downloaded and built into a wheel
locally), selects the corpus files with the same rules as before (suffixes, exclusions, paths as
installed in site-packages) plus the distribution's licence file(s), and writes one archive
(`corpus.tar.gz`) and `corpus_manifest.json` into the package. Only this step uses the network.

`--from installed` reads the packages installed in the running interpreter instead (they must be
at the lock's versions); a wheel installs its files byte for byte, so the result is the same.

The archive is deterministic: members sorted by name, fixed mtime/uid/gid/mode, no owner names,
PAX format, and a gzip header written here (mtime 0, no file name, fixed OS byte), so rebuilding
with the same zlib gives identical bytes. The manifest also records the sha256 of the
uncompressed tar, which does not depend on the zlib build.
"""

from __future__ import annotations

import argparse
import dataclasses
import email.parser
import hashlib
import importlib.metadata as metadata
import io
import json
import re
import struct
import subprocess
import sys
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path

from griffin_core.data import corpus
from griffin_core.data.errors import DataError

DEFAULT_LOCK = Path(__file__).resolve().parent / "corpus_pins.txt"
MTIME = 946684800  # 2000-01-01T00:00:00Z: any fixed time; 0 makes some tools warn
_LICENCE_STEMS = ("LICENSE", "LICENCE", "COPYING", "NOTICE")
_LICENCE_DIRS = ("licenses/", "license_files/")  # PEP 639 / older hatchling


@dataclasses.dataclass
class Dist:
    """One corpus package as built: its corpus files, licence texts and provenance."""

    name: str
    version: str
    files: dict[str, bytes]
    """Site-packages path -> bytes."""
    licences: dict[str, bytes]
    """Archive name under licenses/<name>/ -> bytes."""
    licence: str
    """Short licence name for the docs table (from the metadata)."""
    origin: str


def normalize(name: str) -> str:
    """PEP 503 name normalization, so 'Hydra_Core' and 'hydra-core' match."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: str | Path = DEFAULT_LOCK) -> dict[str, str]:
    """Normalized name -> exact version of every `name==version` line of a lock file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"lock file {path} not found (pass --lock)") from None
    pins = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", line)
        if m:
            pins[normalize(m.group(1))] = m.group(2)
    return pins


def corpus_paths(paths: Iterable[str]) -> dict[str, str]:
    """Site-packages path -> source path of the corpus files among a wheel's or RECORD's paths.

    A wheel's `<x>.data/purelib|platlib/` files install into site-packages and count; its other
    `.data` files (scripts, headers) and RECORD paths outside site-packages ('..') do not.
    """
    out = {}
    for src in paths:
        rel = src
        m = re.match(r"^[^/]+\.data/(purelib|platlib|[^/]+)/(.*)$", src)
        if m:
            if m.group(1) not in ("purelib", "platlib"):
                continue
            rel = m.group(2)
        name = rel.rsplit("/", 1)[-1]
        if (rel.startswith("..") or ".dist-info/" in rel or "__pycache__" in rel
                or not rel.endswith(corpus.SUFFIXES) or name in corpus.EXCLUDED_NAMES):
            continue
        out[rel] = src
    return dict(sorted(out.items()))


def licence_paths(paths: Iterable[str]) -> dict[str, str]:
    """Archive name -> source path of the licence files in a distribution's `.dist-info`."""
    found = {}
    for src in sorted(paths):
        m = re.match(r"^[^/]+\.dist-info/(.+)$", src)
        if not m:
            continue
        rel = m.group(1)
        in_dir = rel.startswith(_LICENCE_DIRS)
        if in_dir or ("/" not in rel and rel.upper().startswith(_LICENCE_STEMS)):
            short = rel.split("/", 1)[1] if in_dir else rel
            found[short if short not in found else rel] = src
    return found


def _meta_licence(meta) -> tuple[str, bytes]:
    """(short licence name, text made from the metadata) of a distribution's METADATA."""
    classifiers = [c.split("::")[-1].strip() for c in meta.get_all("Classifier") or []
                   if c.startswith("License ::")]
    field = (meta.get("License") or "").strip()
    short = (meta.get("License-Expression") or "").strip()
    if not short:
        short = field if field and "\n" not in field and len(field) <= 40 else "; ".join(classifiers)
    lines = [f"{meta['Name']} {meta['Version']}: the distribution ships no licence file; "
             "its metadata says:", ""]
    for key in ("License-Expression", "License", "Author", "Author-email", "Home-page"):
        if (meta.get(key) or "").strip():
            lines.append(f"{key}: {meta[key].strip()}")
    lines += [f"Classifier: License :: {c}" for c in classifiers]
    return short or "unknown", ("\n".join(lines) + "\n").encode()


def _dist(name: str, version: str, names: list[str], read, meta, origin: str) -> Dist:
    """Select and read a distribution's corpus and licence files (`read(path) -> bytes`)."""
    files = {rel: read(src) for rel, src in corpus_paths(names).items()}
    if not files:
        raise DataError(f"corpus package {name}: no {'/'.join(corpus.SUFFIXES)} files")
    licences = {rel: read(src) for rel, src in licence_paths(names).items()}
    short, text = _meta_licence(meta)
    if not licences:
        licences = {"METADATA-LICENSE.txt": text}
    return Dist(name, version, files, licences, short, origin)


def from_wheel(name: str, version: str, wheel: Path, origin: str) -> Dist:
    """A corpus package from a pure-Python wheel file."""
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if not n.endswith("/")]
        info = [n for n in names if re.match(r"^[^/]+\.dist-info/", n)]
        wheel_meta = next((zf.read(n).decode() for n in info if n.endswith("/WHEEL")), "")
        tags = re.findall(r"^Tag:\s*(\S+)", wheel_meta, re.M)
        if not tags or not all(t.endswith("-none-any") for t in tags):
            raise DataError(f"corpus package {name}: {wheel.name} is not a pure-Python wheel ({tags})")
        meta_file = next(n for n in info if n.endswith("/METADATA"))
        meta = email.parser.Parser().parsestr(zf.read(meta_file).decode("utf-8"))
        if meta["Version"] != version:
            raise DataError(f"corpus package {name}: {wheel.name} is version {meta['Version']}, lock pins {version}")
        return _dist(name, version, names, zf.read, meta, origin)


def _pip(*args: str, cwd: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], cwd=cwd, capture_output=True, text=True)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch(name: str, version: str, workdir: Path) -> Dist:
    """Download the pinned wheel (or build one from the pinned sdist) and read it."""
    spec, out = f"{name}=={version}", workdir / normalize(name)
    r = _pip("download", "--no-deps", "--only-binary=:all:", "-d", str(out / "whl"), spec, cwd=str(workdir))
    wheels = sorted((out / "whl").glob("*.whl"))
    if r.returncode == 0 and len(wheels) == 1:
        return from_wheel(name, version, wheels[0], f"wheel {wheels[0].name} sha256:{_sha(wheels[0])}")
    # No wheel on the index (e.g. antlr4-python3-runtime 4.9.3): fetch the sdist, build a wheel.
    r = _pip("download", "--no-deps", f"--no-binary={name}", "-d", str(out / "sdist"), spec, cwd=str(workdir))
    sdists = sorted((out / "sdist").glob("*"))
    if r.returncode != 0 or len(sdists) != 1:
        tail = " ".join((r.stderr or r.stdout).split()[-30:])
        raise DataError(f"pip could not download {spec} (wheel or sdist): {tail}")
    r = _pip("wheel", "--no-deps", "-w", str(out / "built"), str(sdists[0]), cwd=str(workdir))
    built = sorted((out / "built").glob("*.whl"))
    if r.returncode != 0 or len(built) != 1:
        raise DataError(f"pip could not build a wheel from {sdists[0].name}: "
                        f"{' '.join((r.stderr or r.stdout).split()[-30:])}")
    return from_wheel(name, version, built[0],
                      f"sdist {sdists[0].name} sha256:{_sha(sdists[0])} (no wheel published), built to a wheel")


def from_installed(name: str, version: str) -> Dist:
    """A corpus package from the running interpreter's site-packages (the offline fallback)."""
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        raise DataError(f"corpus package {name} is not installed (lock pins {version})") from None
    if dist.version != version:
        raise DataError(f"corpus package {name}: installed {dist.version}, lock pins {version}")
    names = [f.as_posix() for f in dist.files or ()]
    return _dist(name, version, names, lambda p: Path(dist.locate_file(p)).read_bytes(),
                 dist.metadata, "installed")


def pack_tar(dists: list[Dist]) -> bytes:
    """The uncompressed, deterministic tar of every corpus and licence file, sorted by name."""
    members = {}
    for d in dists:
        for rel, data in d.files.items():
            if corpus.CORPUS_PREFIX + rel in members:
                raise DataError(f"corpus file {rel} is in two packages (second: {d.name})")
            members[corpus.CORPUS_PREFIX + rel] = data
        for rel, data in d.licences.items():
            members[f"{corpus.LICENSES_PREFIX}{d.name}/{rel}"] = data
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:", format=tarfile.PAX_FORMAT) as tf:
        for name in sorted(members):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(members[name]), MTIME, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tf.addfile(info, io.BytesIO(members[name]))
    return buf.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    """gzip of `data` with a fixed header (no name, mtime 0, OS 255): same input, same bytes."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
    body = comp.compress(data) + comp.flush()
    header = b"\x1f\x8b\x08\x00" + struct.pack("<I", 0) + b"\x02\xff"
    return header + body + struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)


def make_manifest(dists: list[Dist], archive: bytes, tar: bytes) -> dict:
    """The manifest describing `dists` and the archive made of them."""
    def entry(name, data):
        return [name, len(data), hashlib.sha256(data).hexdigest()]
    return {
        "schema": corpus.MANIFEST_SCHEMA,
        "about": "Default corpus: these exact files of these pinned packages, shipped in the archive. "
                 "Rebuild with: python -m griffin_core.data.corpus_build",
        "suffixes": list(corpus.SUFFIXES),
        "file_fields": ["path", "size", "sha256"],
        "archive": {"name": corpus.ARCHIVE_NAME, "size": len(archive),
                    "sha256": hashlib.sha256(archive).hexdigest(),
                    "tar_sha256": hashlib.sha256(tar).hexdigest(),
                    "members": f"{corpus.CORPUS_PREFIX}<path>, {corpus.LICENSES_PREFIX}<package>/<file>"},
        "packages": [{
            "name": d.name, "version": d.version, "license": d.licence, "origin": d.origin,
            "license_files": [entry(f"{corpus.LICENSES_PREFIX}{d.name}/{r}", b) for r, b in sorted(d.licences.items())],
            "files": [entry(r, b) for r, b in sorted(d.files.items())],
        } for d in dists],
    }


def dump_manifest(manifest: dict) -> str:
    """JSON with one file entry per line: small diffs when the lock changes."""
    lines = ["{"]
    for key in ("schema", "about", "suffixes", "file_fields", "archive"):
        lines.append(f"  {json.dumps(key)}: {json.dumps(manifest[key])},")
    lines.append('  "packages": [')
    for i, pkg in enumerate(manifest["packages"]):
        head = {k: pkg[k] for k in ("name", "version", "license", "origin", "license_files")}
        lines.append("    " + json.dumps(head)[:-1] + ', "files": [')
        lines.append(",\n".join(f"      {json.dumps(f)}" for f in pkg["files"]))
        lines.append("    ]}" + ("," if i + 1 < len(manifest["packages"]) else ""))
    lines += ["  ]", "}"]
    return "\n".join(lines) + "\n"


def collect(packages: tuple[str, ...] = corpus.DEFAULT_PACKAGES, source: str = "pypi",
            lock: str | Path = DEFAULT_LOCK, log=lambda s: None) -> list[Dist]:
    """Every package at the lock's version, from PyPI wheels ('pypi') or site-packages ('installed')."""
    pins = read_lock(lock)
    missing = [p for p in packages if normalize(p) not in pins]
    if missing:
        raise DataError(f"lock file {Path(lock).name} pins no version of {', '.join(missing)}")
    dists = []
    with tempfile.TemporaryDirectory(prefix="corpus-build-") as tmp:
        for name in packages:
            version = pins[normalize(name)]
            d = fetch(name, version, Path(tmp)) if source == "pypi" else from_installed(name, version)
            log(f"  {name}=={version}: {len(d.files)} files, licence {d.licence} "
                f"({', '.join(d.licences)}) from {d.origin.split(' sha256')[0]}")
            dists.append(d)
    return dists


def build(packages: tuple[str, ...] = corpus.DEFAULT_PACKAGES, source: str = "pypi",
          lock: str | Path = DEFAULT_LOCK, log=lambda s: None) -> tuple[dict, bytes]:
    """(manifest, archive bytes) for `packages` at the lock's versions."""
    dists = collect(packages, source, lock, log)
    tar = pack_tar(dists)
    archive = gzip_bytes(tar)
    return make_manifest(dists, archive, tar), archive


def compare(old: dict, new: dict) -> str:
    """One line saying whether the corpus files (hence fingerprints and run ids) changed."""
    a, b = dict((p, (s, h)) for p, s, h in corpus.manifest_entries(old)), \
        dict((p, (s, h)) for p, s, h in corpus.manifest_entries(new))
    if a == b:
        return "corpus files unchanged (same paths, sizes, sha256): fingerprints and run ids stay valid"
    changed = sum(1 for p in a.keys() & b.keys() if a[p] != b[p])
    return (f"CORPUS CHANGED: {len(b.keys() - a.keys())} files added, {len(a.keys() - b.keys())} removed, "
            f"{changed} changed; the corpus fingerprint (and every run id on it) changes")


def licence_table(manifest: dict) -> str:
    """The docs table of packages and licences (printed by `--table`)."""
    rows = ["| package | version | licence | licence file(s) in the archive |", "|---|---|---|---|"]
    for p in sorted(manifest["packages"], key=lambda p: normalize(p["name"])):
        files = ", ".join(f"`{f[0].split('/', 2)[2]}`" for f in p["license_files"])
        rows.append(f"| {p['name']} | {p['version']} | {p['license']} | {files} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m griffin_core.data.corpus_build", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="source", choices=("pypi", "installed"), default="pypi",
                        help="pypi: download the lock's wheels (default); installed: read site-packages")
    parser.add_argument("--lock", default=str(DEFAULT_LOCK), help="lock file (default: the project's)")
    parser.add_argument("--output-dir", default=None, help="where to write (default: the package's data dir)")
    parser.add_argument("--check", action="store_true", help="rebuild in memory and compare; write nothing")
    parser.add_argument("--table", action="store_true", help="print the docs' licence table of the shipped manifest")
    args = parser.parse_args(argv)
    try:
        if args.table:
            print(licence_table(corpus.load_manifest()))
            return 0
        print(f"building the corpus from {args.source} at the versions of {args.lock}")
        manifest, archive = build(source=args.source, lock=args.lock, log=print)
        out = Path(args.output_dir) if args.output_dir else corpus.manifest_path().parent
        old_path = out / corpus.MANIFEST_NAME
        old = json.loads(old_path.read_text()) if old_path.exists() else None
        n, size = len(corpus.manifest_entries(manifest)), sum(s for _, s, _ in corpus.manifest_entries(manifest))
        print(f"{len(manifest['packages'])} packages, {n} files, {size:,} bytes; "
              f"{corpus.ARCHIVE_NAME} {len(archive):,} bytes sha256 {manifest['archive']['sha256'][:16]}...")
        if old is not None:
            print(compare(old, manifest))
        if args.check:
            shipped = out / corpus.ARCHIVE_NAME
            same_archive = shipped.exists() and shipped.read_bytes() == archive
            same_manifest = old_path.exists() and old_path.read_text() == dump_manifest(manifest)
            print(f"archive {'identical' if same_archive else 'DIFFERS'}, "
                  f"manifest {'identical' if same_manifest else 'DIFFERS'}")
            return 0 if same_archive and same_manifest else 1
        out.mkdir(parents=True, exist_ok=True)
        (out / corpus.ARCHIVE_NAME).write_bytes(archive)
        old_path.write_text(dump_manifest(manifest), encoding="utf-8")
        print(f"wrote {out / corpus.ARCHIVE_NAME} and {old_path}")
        return 0
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

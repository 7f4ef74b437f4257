"""Requests and bytes a griffin-train run sends to an S3 API server, by object, per 1,000 steps
(docs/benchmarks.md, "The run store on a bucket"). Not a test: a measurement, run as

    PYTHONPATH=. .venv/bin/python tests/bucket_requests.py [--steps 1000] [--code DIR] [overrides ...]

It starts moto's S3 server on 127.0.0.1 (tests/bucket_servers.py, which records every
request), runs `griffin-train` in a child process against `s3://bucket/results` with the code in
DIR (default: this checkout; give an exported older commit to measure it), and prints one
Markdown row per kind of object: requests (by method) and bytes sent and received. The child's
exit code is printed too: code before the bucket fixes fails at its final checkpoint, after
every metrics write it makes.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bucket_servers import S3Server, no_cloud_env

HERE = Path(__file__).resolve().parent
TINY = ["family=hawk", "size=cpu-30k", "data.seq_len=16", "trainer.batch_size=4", "trainer.budget.rule=steps",
        "logger.wandb.mode=disabled"]
KINDS = ("metrics.jsonl", "lease", "status.json", "result.json", "config.yaml", "ckpt/", "other")


def kind(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    if "/ckpt/" in path or path.endswith("/ckpt"):
        return "ckpt/"
    if name.startswith("lease.json"):
        return "lease"
    return name if name in KINDS else "other"


def measure(code: Path, steps: int, overrides: list[str]) -> tuple[int, dict]:
    server = S3Server()
    server.recorder.log.clear()  # the bucket's creation
    try:
        with tempfile.TemporaryDirectory() as tmp:
            env = {**os.environ, **no_cloud_env(Path(tmp)), **server.env(), "JAX_PLATFORMS": "cpu",
                   "PYTHONPATH": os.pathsep.join([str(code), os.environ.get("PYTHONPATH", "")])}
            cmd = [sys.executable, "-c", "import sys; from experiments.cli import train_main; sys.exit(train_main())",
                   *TINY, f"trainer.budget.value={steps}", "store.root=s3://bucket/results", "--quiet", *overrides]
            done = subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True)
        table: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        for r in server.recorder.log:
            row = table[kind(r.path)]
            row[r.method] += 1
            row["bytes_in"] += r.bytes_in
            row["bytes_out"] += r.bytes_out
        return done.returncode, table
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--code", type=Path, default=HERE.parent, help="the checkout whose griffin-train runs")
    parser.add_argument("overrides", nargs="*", help="more griffin-train overrides")
    args = parser.parse_args()
    code, table = measure(args.code, args.steps, args.overrides)
    per = 1000 / args.steps
    print(f"griffin-train exit code {code}; per 1,000 steps:")
    print("| object | requests | GET | HEAD | PUT | POST | DELETE | bytes sent | bytes received |")
    print("|---|---|---|---|---|---|---|---|---|")
    total = collections.Counter()
    for name in KINDS:
        row = table.get(name)
        if not row:
            continue
        total.update(row)
        methods = [row[m] for m in ("GET", "HEAD", "PUT", "POST", "DELETE")]
        print(f"| {name} | {sum(methods) * per:,.0f} | " + " | ".join(f"{m * per:,.0f}" for m in methods)
              + f" | {row['bytes_in'] * per:,.0f} | {row['bytes_out'] * per:,.0f} |")
    methods = [total[m] for m in ("GET", "HEAD", "PUT", "POST", "DELETE")]
    print(f"| all | {sum(methods) * per:,.0f} | " + " | ".join(f"{m * per:,.0f}" for m in methods)
          + f" | {total['bytes_in'] * per:,.0f} | {total['bytes_out'] * per:,.0f} |")


if __name__ == "__main__":
    main()

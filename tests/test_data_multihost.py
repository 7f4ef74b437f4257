"""Each process of a multi-host run reads only its own rows of sharded token files: two
`jax.distributed` processes on loopback (gloo on CPU, coordinator on 127.0.0.1, a free port)
build the run's data as training does (experiments.run_data.build_run_data with their
process index and count) and each reads about half the bytes one process reads alone; their
rows together are exactly the one process's batches."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

from griffin_core.data import manifest as mf

REPO = Path(__file__).resolve().parents[1]
EOT = 1000
STEPS, BATCH, SEQ = 12, 16, 256

WORKER = r"""
import json, sys
import numpy as np, psutil
import jax

port, count, index, folder, warm, out = sys.argv[1:]
count, index = int(count), int(index)
if count > 1:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"127.0.0.1:{port}", count, index, initialization_timeout=120)
from experiments.run_data import build_run_data

def data(path):
    return {"source": "tokens", "path": path, "vocab_size": None, "token_dtype": "uint16", "tokenizer": None,
            "seq_len": %(seq)d, "eval_sequences": 32, "position_eval_factor": 1, "position_eval_docs": 1}

# The same code path once on other files first: what is measured is data, not imports.
build_run_data(data(warm), %(batch)d, 0, jax.process_index(), jax.process_count()).train_batch(0)
io = psutil.Process()
before = io.io_counters().read_chars
run = build_run_data(data(folder), %(batch)d, 0, jax.process_index(), jax.process_count())
tokens = [run.train_batch(step)["tokens"] for step in range(%(steps)d)]
read = io.io_counters().read_chars - before
np.save(out + ".npy", np.stack(tokens))
json.dump({"read": read, "index": jax.process_index(), "count": jax.process_count(),
           "heldout_rows": sum(len(b["tokens"]) for b in run.heldout)}, open(out, "w"))
if count > 1:
    jax.distributed.shutdown()
""" % {"seq": SEQ, "batch": BATCH, "steps": STEPS}


def _corpus(folder: Path, seed: int, shards: int = 3) -> Path:
    """Shards of documents (separator EOT) with their manifest: ~1.2 MB of train tokens."""
    rng = np.random.default_rng(seed)
    folder.mkdir()
    for i in range(shards + 1):
        docs = [np.append(rng.integers(0, EOT, int(rng.integers(20, 1500))), EOT) for _ in range(260)]
        name = f"train-{i:05d}.bin" if i < shards else "heldout-00000.bin"
        np.concatenate(docs).astype(np.uint16).tofile(folder / name)
    mf.write_manifest(mf.describe(folder, EOT + 1, eot_token=EOT))
    return folder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(count: int, folder: Path, warm: Path, out: Path) -> list[dict]:
    port = _free_port()
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(port), str(count), str(i), str(folder), str(warm),
                               str(out / f"{count}-{i}.json")], env=env, cwd=REPO, stderr=subprocess.PIPE, text=True)
             for i in range(count)]
    try:
        for p in procs:
            _, err = p.communicate(timeout=240)
            assert p.returncode == 0, err[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return [json.loads((out / f"{count}-{i}.json").read_text()) for i in range(count)]


def test_two_processes_each_read_half_of_what_one_reads(tmp_path):
    folder, warm = _corpus(tmp_path / "tokens", 0), _corpus(tmp_path / "warm", 1)
    one = _run(1, folder, warm, tmp_path)
    two = _run(2, folder, warm, tmp_path)
    assert [r["index"] for r in two] == [0, 1] and all(r["count"] == 2 for r in two)
    # Together the two processes' rows are the one process's batches, in order.
    whole = np.load(tmp_path / "1-0.json.npy")
    halves = [np.load(tmp_path / f"2-{i}.json.npy") for i in range(2)]
    assert whole.shape == (STEPS, BATCH, SEQ) and np.array_equal(np.concatenate(halves, axis=1), whole)
    assert [r["heldout_rows"] for r in two] == [one[0]["heldout_rows"] // 2] * 2
    rows_bytes = STEPS * BATCH * (SEQ + 1) * 2
    print(f"bytes read: one process {one[0]['read']:,}; two processes {two[0]['read']:,} and {two[1]['read']:,} "
          f"(training rows alone: {rows_bytes:,} in all)")
    assert one[0]["read"] >= rows_bytes  # it did read its rows (with pread: counted)
    for r in two:
        assert 0.35 < r["read"] / one[0]["read"] < 0.65, (r["read"], one[0]["read"])

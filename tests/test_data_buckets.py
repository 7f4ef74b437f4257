"""Token shards under a bucket prefix, against moto's S3 API server on 127.0.0.1
(tests/bucket_servers.py): the manifest read from the bucket, rows read as byte ranges (the
server's request log shows how little moves), the same rows, documents and fingerprint as the
local folder the shards came from, a short griffin-train run on them, and one-line errors for a
shard whose size disagrees with the manifest and for a prefix without one."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bucket_servers import S3Server, apply_env, no_cloud_env
from griffin_core.data import manifest as mf
from griffin_core.data.errors import DataError
from griffin_core.data.token_files import TokenFileSource

VOCAB, EOT, SHARD_TOKENS = 300, 0, 100_000


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("data-buckets")
    server = S3Server()
    try:
        with pytest.MonkeyPatch.context() as mp:
            apply_env(mp, {**no_cloud_env(tmp), **server.env()})
            yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def corpus(s3, tmp_path_factory):
    """Two train shards and a heldout shard (uint16, documents ended by EOT) with a manifest, in
    a local folder and uploaded as s3://bucket/corpus."""
    import s3fs

    folder = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    for name in ("train-000.bin", "train-001.bin", "heldout-000.bin"):
        tokens = rng.integers(1, VOCAB, SHARD_TOKENS).astype(np.uint16)
        tokens[rng.integers(0, SHARD_TOKENS, 300)] = EOT
        tokens.tofile(folder / name)
    mf.write_manifest(mf.describe(folder, VOCAB, "uint16", eot_token=EOT))
    s3fs.S3FileSystem().put(str(folder) + "/", "bucket/corpus/", recursive=True)
    return folder


def shard_gets(s3, start: int) -> list:
    return [r for r in s3.recorder.log[start:] if r.method == "GET" and r.path.endswith(".bin")]


def test_rows_documents_and_fingerprint_equal_the_local_folder(s3, corpus):
    local, bucket = TokenFileSource(corpus, VOCAB), TokenFileSource("s3://bucket/corpus", VOCAB)
    assert bucket.fingerprint() == local.fingerprint()
    start = len(s3.recorder.log)
    rows = np.array([0, 7, 3124, 6249, 12498])  # the last crosses into the second shard at T = 16
    got, want = bucket.row_stream("train").rows(rows, 16), local.row_stream("train").rows(rows, 16)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    read = sum(r.bytes_out for r in shard_gets(s3, start))
    assert 0 < read < 64 * 1024, read  # byte ranges (windows and document look-backs), not whole shards
    heldout = bucket.documents("heldout")
    assert [d.tolist() for d in heldout] == [d.tolist() for d in local.documents("heldout")]


def test_a_shard_of_another_size_and_a_prefix_without_manifest(s3, corpus):
    client = s3.client()
    body = client.get_object(Bucket="bucket", Key="corpus/train-001.bin")["Body"].read()
    for key, value in (("changed/train-001.bin", body[:-2]), ("changed/train-000.bin", body),
                       ("changed/heldout-000.bin", body), ("changed/manifest.json", (corpus / "manifest.json").read_bytes()),
                       ("bare/train-000.bin", body)):
        client.put_object(Bucket="bucket", Key=key, Body=value)
    with pytest.raises(DataError, match=r"token file s3://bucket/changed/train-001.bin: 199,998 bytes, but its "
                                        r"manifest s3://bucket/changed/manifest.json says 200,000") as info:
        TokenFileSource("s3://bucket/changed", VOCAB).fingerprint()
    assert "\n" not in str(info.value)
    with pytest.raises(DataError, match=r"token data s3://bucket/bare: no manifest.json under this prefix"):
        TokenFileSource("s3://bucket/bare", VOCAB).fingerprint()


def test_griffin_train_on_shards_in_the_bucket(s3, corpus, tmp_path):
    from experiments.cli import train_main

    store = tmp_path / "store"
    args = ["family=hawk", "size=cpu-30k", "data.source=tokens", "data.path=s3://bucket/corpus", "data.seq_len=16",
            "trainer.batch_size=2", "trainer.budget.rule=steps", "trainer.budget.value=3", "trainer.eval_every=0",
            "data.eval_sequences=2", "data.position_eval_factor=2", "data.position_eval_docs=2",
            "logger.wandb.mode=disabled", f"store.root={store}", "--quiet"]
    assert train_main(args) == 0
    (result,) = store.glob("runs/*/result.json")
    data = json.loads(result.read_text())
    assert data["steps"] == 3 and data["corpus_fingerprint"] == TokenFileSource(corpus, VOCAB).fingerprint()

"""Which server a bucket URL talks to, from the environment variables each library documents.

s3fs (botocore) and gcsfs read their endpoints themselves: `AWS_ENDPOINT_URL` (or
`AWS_ENDPOINT_URL_S3`; fsspec's own `FSSPEC_S3_ENDPOINT_URL`) and `STORAGE_EMULATOR_HOST`. The
store passes what it finds as explicit fsspec storage options too, because fsspec keeps one
filesystem instance per set of options for the life of a process: without the endpoint among
them, a process that changes its endpoint (a test starting its own server) would be handed the
instance made for the previous one.

With `STORAGE_EMULATOR_HOST` set and no token chosen (`FSSPEC_GCS_TOKEN`), gcsfs is given
`token="anon"`, as Google's own client libraries do for an emulator: otherwise it would look
for Google credentials, the metadata server of a GCE machine among them.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

S3_ENDPOINT_VARS = ("FSSPEC_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
"""Where an s3:// URL goes, first set wins (fsspec's variable, then botocore's two)."""
GCS_EMULATOR_VAR = "STORAGE_EMULATOR_HOST"
S3_PROTOCOLS = ("s3", "s3a")
GCS_PROTOCOLS = ("gs", "gcs")


def storage_options(protocol: str | None, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """fsspec storage options for a URL of `protocol` (its scheme): the endpoint, and for a
    GCS emulator an anonymous token. {} for other protocols or when nothing is set."""
    env = os.environ if env is None else env
    if protocol in S3_PROTOCOLS:
        url = next((env[v] for v in S3_ENDPOINT_VARS if env.get(v)), None)
        return {"endpoint_url": url} if url else {}
    if protocol in GCS_PROTOCOLS:
        host = env.get(GCS_EMULATOR_VAR)
        if not host or host == "default":
            return {}
        url = host if host.startswith(("http://", "https://")) else f"http://{host}"
        return {"endpoint_url": url, **({} if env.get("FSSPEC_GCS_TOKEN") else {"token": "anon"})}
    return {}


def endpoint_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The endpoint variables set here, for worker processes on other nodes (never the
    credentials: those stay with each node's own environment)."""
    env = os.environ if env is None else env
    return {v: env[v] for v in (*S3_ENDPOINT_VARS, GCS_EMULATOR_VAR) if env.get(v)}


def endpoint(protocol: str | None, env: Mapping[str, str] | None = None) -> str:
    """The server a URL of `protocol` goes to, for messages: the configured endpoint, or the
    library's default."""
    url = storage_options(protocol, env).get("endpoint_url")
    if url:
        return url
    return {**dict.fromkeys(S3_PROTOCOLS, "AWS S3"), **dict.fromkeys(GCS_PROTOCOLS, "Google Cloud Storage")}.get(
        protocol or "", f"the {protocol} server")

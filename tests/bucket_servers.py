"""S3 and GCS API servers on 127.0.0.1 (free ports) for the object-store tests, and the
environment that points s3fs, gcsfs, TensorStore and Orbax at them and at nothing else.

S3: moto's server application (what `moto_server` runs), served by werkzeug in a thread of the
test process, behind a recorder of every request (method, path, query, bytes in and out).
GCS: gcp-storage-emulator in its own process (tests/gcs_emulator.py, which adds the
ifGenerationMatch=0 precondition the emulator lacks). Each is stopped by the fixture that
started it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import NamedTuple

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def no_cloud_env(tmp: Path) -> dict[str, str]:
    """Variables that keep every client off real clouds and metadata servers: fake AWS keys,
    no EC2 metadata, no AWS config files of this machine's user, no GCE metadata check (and
    its hosts on a closed local port), no Google credentials file."""
    dead = f"127.0.0.1:{free_port()}"
    return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": str(tmp / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "no-aws-credentials"), "NO_GCE_CHECK": "True",
            "GCE_METADATA_HOST": dead, "GCE_METADATA_IP": dead, "GCE_METADATA_ROOT": dead,
            "GOOGLE_APPLICATION_CREDENTIALS": str(tmp / "no-google-credentials.json"),
            "GOOGLE_CLOUD_PROJECT": "test", "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}


class Request(NamedTuple):
    method: str
    path: str
    query: str
    status: int
    bytes_in: int
    bytes_out: int


class Recorder:
    """WSGI middleware keeping every request (method, path, query, status, bytes in and out)."""

    def __init__(self, app):
        self.app = app
        self.log: list[Request] = []
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        status = {}

        def start(code, headers, exc_info=None):
            status["code"] = int(code.split()[0])
            return start_response(code, headers, exc_info)

        body = list(self.app(environ, start))
        with self._lock:
            self.log.append(Request(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""),
                                    environ.get("QUERY_STRING", ""), status.get("code", 0),
                                    int(environ.get("CONTENT_LENGTH") or 0), sum(len(b) for b in body)))
        return body

    def requests(self, path_end: str = "", method: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self.log if r.path.endswith(path_end) and method in (None, r.method)]


class S3Server:
    """moto's S3 API on 127.0.0.1:<free port>, with a request recorder."""

    def __init__(self, bucket: str = "bucket"):
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.bucket = bucket
        self.recorder = Recorder(DomainDispatcherApplication(create_backend_app))
        self._server = make_server("127.0.0.1", self.port, self.recorder, threaded=True,
                                   request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.client().create_bucket(Bucket=bucket)

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.url, aws_access_key_id="testing",
                            aws_secret_access_key="testing", region_name="us-east-1")

    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.url}

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


class GcsServer:
    """gcp-storage-emulator (with the create precondition) in a child process."""

    def __init__(self, bucket: str = "bucket"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.bucket = bucket
        self.process = subprocess.Popen([sys.executable, str(HERE / "gcs_emulator.py"), str(self.port), bucket],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                        text=True)
        line = self.process.stdout.readline()
        if json.loads(line or "{}").get("ready") != self.port:
            self.stop()
            raise RuntimeError(f"the GCS emulator did not start: {line!r}")

    def env(self) -> dict[str, str]:
        """gcsfs and google-cloud-storage read STORAGE_EMULATOR_HOST; TensorStore (Orbax's
        arrays) its own variable and a test token; etils.epath (Orbax's small files) makes its
        gcsfs from fsspec's configuration, so its token comes from FSSPEC_GCS_TOKEN."""
        return {"STORAGE_EMULATOR_HOST": self.url, "TENSORSTORE_GCS_HTTP_URL": self.url,
                "GOOGLE_AUTH_TOKEN_FOR_TESTING": "test-token", "FSSPEC_GCS_TOKEN": "anon"}

    def refused(self) -> int:
        """How many creates the server refused because the object existed."""
        with urllib.request.urlopen(f"{self.url}/_test/preconditions", timeout=10) as answer:
            return json.loads(answer.read())["refused"]

    def requests(self) -> list[tuple[str, str]]:
        """(method, "bucket/object") of every upload ("PUT") and object read ("GET") so far."""
        with urllib.request.urlopen(f"{self.url}/_test/requests", timeout=10) as answer:
            return [tuple(r) for r in json.loads(answer.read())["requests"]]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def apply_env(monkeypatch, env: dict[str, str]) -> None:
    """Set `env` for this process and the processes it starts; fsspec, which reads its FSSPEC_*
    variables once at import, is told again."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    import fsspec.config

    conf = {k: dict(v) for k, v in fsspec.config.conf.items()}
    fsspec.config.set_conf_env(conf, {k: v for k, v in os.environ.items() if k.startswith("FSSPEC_")})
    for key, value in conf.items():
        monkeypatch.setitem(fsspec.config.conf, key, value)
    if env.get("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT") == "false" and "gcsfs" in sys.modules:
        # gcsfs chose its class when first imported: without the emulator's variable then, it
        # took the one that asks a gRPC control plane (which the emulator lacks) about buckets.
        import fsspec.registry
        from gcsfs.core import GCSFileSystem

        registry = sys.modules["fsspec.registry"]._registry  # `fsspec.registry` is also a read-only view
        for name in ("gs", "gcs"):
            monkeypatch.setitem(registry, name, GCSFileSystem)

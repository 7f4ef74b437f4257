"""A GCS API server for the tests: gcp-storage-emulator on 127.0.0.1, in memory, run as its own
process (`python gcs_emulator.py PORT BUCKET`; prints "ready" once it listens).

The emulator ignores generation preconditions: the `ifGenerationMatch=0` that gcsfs sends for
a write-once create (`pipe_file(..., mode="create")`) would overwrite, and TensorStore (Orbax's
arrays on gs://), which updates its manifests by read-modify-write on generations, finds no
generation in a read's headers ("Malformed StorageGeneration"). This process adds what real
GCS does in front of the emulator's handlers: uploads refused with 412 unless ifGenerationMatch
holds, reads carrying `x-goog-generation` and answering ifGenerationNotMatch/ifGenerationMatch;
it counts the 412s it sent (GET /_test/preconditions), so the tests see the store's leases rely
on the server's precondition, not on luck, and lists every upload and object read
(GET /_test/requests), so they can count writes. It also answers `moveTo` (an object moved within its
bucket, which gcsfs's `mv` tries first and the emulator lacks: gcsfs would retry it for half a
minute before copying).
"""

from __future__ import annotations

import json
import logging
import sys
from http import HTTPStatus
from urllib.parse import unquote

from gcp_storage_emulator import server
from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import objects

REFUSED = {"count": 0}
REQUESTS: list[list[str]] = []
"""[method, object name] of every upload ("PUT") and object read ("GET"), in order."""


def _object_name(request) -> str | None:
    if request.query.get("name"):
        return request.query["name"][0]
    data = request.data
    if isinstance(data, dict):
        meta = data.get("meta", data)
        return meta.get("name") if isinstance(meta, dict) else None
    return None


def _generation(storage, bucket: str, name: str | None) -> str | None:
    """The object's current generation, None if there is no such object."""
    try:
        return str(storage.get_file_obj(bucket, name)["generation"])
    except (NotFound, KeyError):
        return None


def _refuse(response) -> None:
    REFUSED["count"] += 1
    response.status = HTTPStatus.PRECONDITION_FAILED
    response.json({"error": {"code": 412, "message": "At least one of the pre-conditions you specified did not hold.",
                             "errors": [{"reason": "conditionNotMet"}]}})


def insert(request, response, storage, *args, **kwargs):
    """The emulator's upload, refused with 412 unless `ifGenerationMatch` holds (0: the object
    must not exist; else its generation must be that one)."""
    wanted = (request.query.get("ifGenerationMatch") or [None])[0]
    if wanted is not None:
        current = _generation(storage, request.params["bucket_name"], _object_name(request))
        if (current is not None) if wanted == "0" else (current != wanted):
            return _refuse(response)
    REQUESTS.append(["PUT", f"{request.params['bucket_name']}/{_object_name(request)}"])
    return objects.insert(request, response, storage, *args, **kwargs)


def conditional_read(handler):
    """The emulator's object read, with what TensorStore relies on: the generation in an
    `x-goog-generation` header, 304 for `ifGenerationNotMatch` of the current generation,
    412 for an `ifGenerationMatch` of another."""
    def read(request, response, storage, *args, **kwargs):
        REQUESTS.append(["GET", f"{request.params['bucket_name']}/{unquote(request.params['object_id'])}"])
        current = _generation(storage, request.params["bucket_name"], request.params["object_id"])
        if current is not None:
            response["x-goog-generation"] = current
            if request.query.get("ifGenerationNotMatch") == [current]:
                response.status = HTTPStatus.NOT_MODIFIED
                return None
            if request.query.get("ifGenerationMatch") not in (None, [current]):
                return _refuse(response)
        return handler(request, response, storage, *args, **kwargs)
    return read


def move(request, response, storage, *args, **kwargs):
    """objects.moveTo (what gcsfs's mv asks first; real GCS moves atomically): the emulator's
    copy, then the source deleted, in this one-threaded server's one request."""
    params = dict(request.params)
    request._parsed_params = {**params, "dest_bucket_name": params["bucket_name"]}
    objects.copy(request, response, storage)
    if response.status == HTTPStatus.OK:
        storage.delete_file(params["bucket_name"], params["object_id"])


def preconditions(request, response, storage):
    response.json({"refused": REFUSED["count"]})


def requests(request, response, storage):
    response.json({"requests": REQUESTS})


def main() -> None:
    port, bucket = int(sys.argv[1]), sys.argv[2]
    logging.basicConfig(level=logging.CRITICAL)  # the emulator logs every 404 as an error
    moves = rf"^{server.settings.API_ENDPOINT}/b/(?P<bucket_name>[-.\w]+)/o/(?P<object_id>.*[^/]+)/moveTo/o/" \
            r"(?P<dest_object_id>.*[^/]+)$"
    replace = {objects.insert: insert, objects.get: conditional_read(objects.get),
               objects.download: conditional_read(objects.download)}
    server.HANDLERS = ((r"^/_test/preconditions$", {server.GET: preconditions}),
                       (r"^/_test/requests$", {server.GET: requests}), (moves, {server.POST: move})) + tuple(
        (regex, {method: replace.get(handler, handler) for method, handler in handlers.items()})
        for regex, handlers in server.HANDLERS)
    emulator = server.create_server("127.0.0.1", port, in_memory=True, default_bucket=bucket)
    emulator.start()
    print(json.dumps({"ready": port}), flush=True)
    try:
        sys.stdin.read()  # until the test closes our stdin (or stops us by pid)
    finally:
        emulator.stop()


if __name__ == "__main__":
    main()

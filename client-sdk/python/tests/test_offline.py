"""The SDK's own logic without the fabricsync server: the resume loop over scripted streams,
error details, and TLS with a bearer token against a small in-process gRPC server."""

from __future__ import annotations

import subprocess
import tempfile
from concurrent import futures
from pathlib import Path
from typing import Any, Iterator, List, Sequence, Union

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from fabricsync.v1 import repository_pb2, repository_pb2_grpc, sync_pb2
from fabricsync_client import (
    AsyncClient,
    Client,
    FailedPrecondition,
    InvalidArgument,
    ResumePolicy,
    Unauthenticated,
    Unavailable,
    error_from_status,
)

FAST = ResumePolicy(max_attempts=2, initial_backoff=0.01)
Script = Sequence[Union[int, Exception]]  # event sequences, or an error to fail the stream with


def progress(sequence: int) -> sync_pb2.StreamSyncProgressResponse:
    event = sync_pb2.SyncProgressEvent(sequence=sequence, run_id="r")
    if sequence == 9:
        event.finished.SetInParent()
    else:
        event.parsing.file_index = sequence
    return sync_pb2.StreamSyncProgressResponse(event=event)


class ScriptedCall:
    def __init__(self, script: Script) -> None:
        self.script, self.cancelled = script, False

    def __iter__(self) -> Iterator[sync_pb2.StreamSyncProgressResponse]:
        for step in self.script:
            if isinstance(step, Exception):
                raise step
            yield progress(step)

    async def __aiter__(self) -> Any:
        for response in self:
            yield response

    def cancel(self) -> bool:
        self.cancelled = True
        return True


class ScriptedRpc:
    """Plays one script per call and records the from_sequence of each request."""

    def __init__(self, *scripts: Script) -> None:
        self.scripts, self.requests, self.calls = list(scripts), [], []  # type: ignore[var-annotated]

    def __call__(self, request: sync_pb2.StreamSyncProgressRequest, timeout: Any = None) -> ScriptedCall:
        self.requests.append(request.from_sequence)
        self.calls.append(ScriptedCall(self.scripts.pop(0)))
        return self.calls[-1]


def scripted_clients(rpc: ScriptedRpc) -> Iterator[Union[Client, AsyncClient]]:
    for cls in (Client, AsyncClient):
        client = cls("127.0.0.1:1", resume=FAST)  # never connects: the stub method is replaced
        client.sync.StreamSyncProgress = rpc  # type: ignore[method-assign, assignment]
        yield client


async def collect(client: Union[Client, AsyncClient], run_id: str, from_sequence: int = 0) -> List[int]:
    if isinstance(client, Client):
        return [e.sequence for e in client.stream_sync_progress(run_id, from_sequence)]
    return [e.sequence async for e in client.stream_sync_progress(run_id, from_sequence)]


@pytest.mark.parametrize("flavor", ["sync", "async"])
async def test_resume_after_unavailable_from_the_last_sequence_without_duplicates(flavor: str) -> None:
    # The server replays 3 after the reconnect: delivered once all the same.
    rpc = ScriptedRpc([1, 2, 3, Unavailable("connection reset")], [3, 4, Unavailable("again")], [5, 9, 10])
    client = list(scripted_clients(rpc))[flavor == "async"]
    assert await collect(client, "r", from_sequence=0) == [1, 2, 3, 4, 5, 9]  # ends at finished
    assert rpc.requests == [0, 3, 4]
    assert all(call.cancelled for call in rpc.calls)


@pytest.mark.parametrize("flavor", ["sync", "async"])
async def test_resume_gives_up_on_other_errors_and_after_max_attempts(flavor: str) -> None:
    rpc = ScriptedRpc([1, FailedPrecondition("no")], [1, Unavailable("1")], [Unavailable("2")], [Unavailable("3")])
    client = list(scripted_clients(rpc))[flavor == "async"]
    with pytest.raises(FailedPrecondition):
        await collect(client, "r", 0)
    with pytest.raises(Unavailable):  # max_attempts=2 reconnects in a row, then the error
        await collect(client, "r", 0)
    assert rpc.requests == [0, 0, 1, 1]


def test_error_details_become_field_violations() -> None:
    bad_request = error_details_pb2.BadRequest(
        field_violations=[error_details_pb2.BadRequest.FieldViolation(field="fabric.name", description="must be a DNS-1123 label")]
    )
    packed = any_pb2.Any()
    packed.Pack(bad_request)
    status = status_pb2.Status(code=3, message="invalid request", details=[packed])
    error = error_from_status(grpc.StatusCode.INVALID_ARGUMENT, "invalid request", [("grpc-status-details-bin", status.SerializeToString())])
    assert isinstance(error, InvalidArgument) and isinstance(error, grpc.RpcError)
    assert [(v.field, v.description) for v in error.field_violations] == [("fabric.name", "must be a DNS-1123 label")]
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details() == "invalid request"
    assert isinstance(error_from_status(grpc.StatusCode.UNAVAILABLE, "down", None), Unavailable)


class EchoRepositories(repository_pb2_grpc.RepositoryServiceServicer):
    """Answers GetRepository with the authorization header it received as the description."""

    def GetRepository(self, request: repository_pb2.GetRepositoryRequest, context: grpc.ServicerContext) -> repository_pb2.GetRepositoryResponse:
        auth = dict(context.invocation_metadata()).get("authorization")
        if auth is None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "no token")
        return repository_pb2.GetRepositoryResponse(repository=repository_pb2.Repository(id=request.id, description=str(auth)))


@pytest.fixture(scope="module")
def tls_server() -> Iterator[tuple[str, str]]:
    """An in-process gRPC server with a self-signed certificate for 127.0.0.1: (address, CA file)."""
    with tempfile.TemporaryDirectory() as tmp:
        key, cert = Path(tmp, "key.pem"), Path(tmp, "cert.pem")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"]
            + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
            check=True,
            capture_output=True,
        )
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        repository_pb2_grpc.add_RepositoryServiceServicer_to_server(EchoRepositories(), server)
        port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())]))
        server.start()
        try:
            yield f"127.0.0.1:{port}", str(cert)
        finally:
            server.stop(None)


def test_tls_and_bearer_token(tls_server: tuple[str, str]) -> None:
    address, ca_file = tls_server
    request = repository_pb2.GetRepositoryRequest(id="x")
    with Client(address, ca_file=ca_file, token="s3cret") as client:
        assert client.repositories.GetRepository(request).repository.description == "Bearer s3cret"
    with Client(address, ca_file=ca_file) as client, pytest.raises(Unauthenticated):
        client.repositories.GetRepository(request)


async def test_tls_and_bearer_token_async(tls_server: tuple[str, str]) -> None:
    address, ca_file = tls_server
    async with AsyncClient(address, ca_file=ca_file, token="s3cret") as client:
        response = await client.repositories.GetRepository(repository_pb2.GetRepositoryRequest(id="x"))
        assert response.repository.description == "Bearer s3cret"
    async with AsyncClient(address, ca_file=ca_file) as client:
        with pytest.raises(Unauthenticated):
            await client.repositories.GetRepository(repository_pb2.GetRepositoryRequest(id="x"))


"""The blocking client."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Callable, Generator, Iterable, Iterator, Optional, Protocol, Sequence, Type, TypeVar

from fabricsync.v1 import (
    access_pb2_grpc,
    drift_pb2,
    drift_pb2_grpc,
    fabric_pb2,
    fabric_pb2_grpc,
    inventory_pb2_grpc,
    repository_pb2,
    repository_pb2_grpc,
    sync_pb2,
    sync_pb2_grpc,
    write_pb2_grpc,
)

from . import _channel
from ._common import PageRequest, PageResponse, ResumePolicy, ResumeState, StreamSpec, drift_spec, progress_spec, watch_spec
from .errors import FabricSyncError

_Req = TypeVar("_Req", bound=PageRequest)
_Resp = TypeVar("_Resp", bound=PageResponse)
_SReq = TypeVar("_SReq")
_SResp = TypeVar("_SResp")
_Item = TypeVar("_Item")
_Event = TypeVar("_Event")
_T = TypeVar("_T", covariant=True)
_Q = TypeVar("_Q", contravariant=True)
_R = TypeVar("_R", covariant=True)


class _Call(Protocol[_T]):
    """What a server-streaming stub method returns: responses, and cancel()."""

    def __iter__(self) -> Iterator[_T]: ...

    def cancel(self) -> bool: ...


class _StreamRpc(Protocol[_Q, _R]):
    """A server-streaming stub method."""

    def __call__(self, request: _Q, *, timeout: Optional[float] = ...) -> _Call[_R]: ...


class Client:
    """A connection to a fabricsync server.

    The generated stubs are `repositories`, `fabrics`, `sync`, `drift` and `access`; every call on them
    carries the token and raises a typed `FabricSyncError`. The methods add paging iterators
    and server-stream helpers that reconnect and resume on UNAVAILABLE.

        with Client("localhost:50051") as client:                    # plaintext
        with Client("fabricsync.example:443", ca_file="ca.pem", token=t) as client:
    """

    def __init__(
        self,
        target: str,
        *,
        tls: bool = False,
        ca_file: Optional[str] = None,
        client_cert_file: Optional[str] = None,
        client_key_file: Optional[str] = None,
        token: Optional[str] = None,
        options: _channel.ChannelOptions = (),
        resume: ResumePolicy = ResumePolicy(),
    ) -> None:
        """TLS when `tls`, `ca_file` (the CA verifying the server; system roots without it) or
        `client_cert_file` (a PEM certificate presented with its key `client_key_file`, for
        servers that verify client certificates), else plaintext. `token` is sent as
        `authorization: Bearer <token>` on every call."""
        credentials = _channel.channel_credentials(tls, ca_file, client_cert_file, client_key_file)
        self.channel = _channel.sync_channel(target, credentials, token, options)
        self.repositories = repository_pb2_grpc.RepositoryServiceStub(self.channel)
        self.fabrics = fabric_pb2_grpc.FabricServiceStub(self.channel)
        self.sync = sync_pb2_grpc.SyncServiceStub(self.channel)
        self.drift = drift_pb2_grpc.DriftServiceStub(self.channel)
        self.access = access_pb2_grpc.AccessServiceStub(self.channel)
        self.write = write_pb2_grpc.WriteServiceStub(self.channel)
        self.inventory = inventory_pb2_grpc.InventoryServiceStub(self.channel)
        self._resume = resume

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, t: Optional[Type[BaseException]], e: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        self.close()

    # Paging: every item matching the filter, fetching pages of page_size (0 = server default).

    def list_repositories(self, filter: str = "", page_size: int = 0) -> Iterator[repository_pb2.Repository]:
        request = repository_pb2.ListRepositoriesRequest(filter=filter, page_size=page_size)
        return _paginate(self.repositories.ListRepositories, request, lambda r: r.repositories)

    def list_fabrics(self, filter: str = "", page_size: int = 0) -> Iterator[fabric_pb2.Fabric]:
        request = fabric_pb2.ListFabricsRequest(filter=filter, page_size=page_size)
        return _paginate(self.fabrics.ListFabrics, request, lambda r: r.fabrics)

    def list_resources(
        self, fabric_id: str, filter: str = "", include_objects: bool = False, page_size: int = 0
    ) -> Iterator[fabric_pb2.Resource]:
        request = fabric_pb2.ListResourcesRequest(fabric_id=fabric_id, filter=filter, include_objects=include_objects, page_size=page_size)
        return _paginate(self.fabrics.ListResources, request, lambda r: r.resources)

    def list_sync_runs(self, filter: str = "", page_size: int = 0) -> Iterator[sync_pb2.SyncRun]:
        request = sync_pb2.ListSyncRunsRequest(filter=filter, page_size=page_size)
        return _paginate(self.sync.ListSyncRuns, request, lambda r: r.runs)

    def list_drifted_resources(self, fabric_id: str, filter: str = "", page_size: int = 0) -> Iterator[drift_pb2.ResourceDrift]:
        request = drift_pb2.ListDriftedResourcesRequest(fabric_id=fabric_id, filter=filter, page_size=page_size)
        return _paginate(self.drift.ListDriftedResources, request, lambda r: r.resources)

    # Server streams, resumed after the last event on UNAVAILABLE, without duplicates. Stop
    # early by leaving the loop (or closing the iterator): that cancels the RPC. `timeout`
    # bounds the whole stream, reconnects included (DeadlineExceeded once it passes).

    def stream_sync_progress(
        self, run_id: str, from_sequence: int = 0, timeout: Optional[float] = None
    ) -> Generator[sync_pb2.SyncProgressEvent, None, None]:
        """A run's progress events after from_sequence, ending with its finished, failed or
        cancelled event."""
        return self._resumed(self.sync.StreamSyncProgress, progress_spec(run_id), from_sequence, timeout)

    def watch_fabric_events(
        self, fabric_id: str, from_sequence: int = 0, kinds: Sequence[str] = (), timeout: Optional[float] = None
    ) -> Generator[sync_pb2.FabricEvent, None, None]:
        """The fabric's cluster events after from_sequence (0 = all stored), then live ones,
        without end; only `kinds` when given."""
        return self._resumed(self.sync.WatchFabricEvents, watch_spec(fabric_id, kinds), from_sequence, timeout)

    def stream_drift(
        self, fabric_id: str, from_sequence: int = 0, timeout: Optional[float] = None
    ) -> Generator[drift_pb2.DriftEvent, None, None]:
        """The fabric's drift changes after from_sequence (0 = all stored), then live ones,
        without end."""
        return self._resumed(self.drift.StreamDrift, drift_spec(fabric_id), from_sequence, timeout)

    def wait_for_run(
        self,
        run_id: str,
        on_event: Optional[Callable[[sync_pb2.SyncProgressEvent], None]] = None,
        timeout: Optional[float] = None,
    ) -> sync_pb2.SyncRun:
        """Follows a run's progress to its end (on_event sees each event), then returns the run."""
        for event in self.stream_sync_progress(run_id, timeout=timeout):
            if on_event is not None:
                on_event(event)
        return self.sync.GetSyncRun(sync_pb2.GetSyncRunRequest(id=run_id)).run

    def _resumed(
        self, rpc: _StreamRpc[_SReq, _SResp], spec: StreamSpec[_SReq, _SResp, _Event], from_sequence: int, timeout: Optional[float]
    ) -> Generator[_Event, None, None]:
        state = ResumeState(from_sequence, self._resume, timeout)
        while True:
            call = rpc(spec.request(state.last_sequence), timeout=state.remaining())
            try:
                for response in call:
                    event = spec.event(response)
                    if state.accept(spec.sequence(event)):
                        yield event
                        if spec.is_last(event):
                            return
                return  # the server ended the stream
            except FabricSyncError as error:
                time.sleep(state.retry_delay(error))
            finally:
                call.cancel()  # left early, failed or done: the RPC ends here


def _paginate(call: Callable[[_Req], _Resp], request: _Req, items: Callable[[_Resp], Iterable[_Item]]) -> Iterator[_Item]:
    while True:
        response = call(request)
        yield from items(response)
        if not response.next_page_token:
            return
        request.page_token = response.next_page_token

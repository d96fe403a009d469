"""What the sync and asyncio clients share: the resume state of the server streams, the
requests and events of each stream, and the page protocol. Only the loops, which must await
or not, are written twice (client.py, aio.py)."""

from __future__ import annotations

import dataclasses
import random
import time
from typing import Callable, Generic, Optional, Protocol, Sequence, TypeVar

from fabricsync.v1 import drift_pb2, sync_pb2

from .errors import DeadlineExceeded, FabricSyncError, Unavailable

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")
_Event = TypeVar("_Event")


class PageRequest(Protocol):
    page_token: str


class PageResponse(Protocol):
    next_page_token: str


@dataclasses.dataclass(frozen=True)
class ResumePolicy:
    """How the stream helpers reconnect after UNAVAILABLE (server restart, dropped
    connection): up to max_attempts times in a row, waiting initial_backoff seconds and then
    twice as long each time (at most max_backoff, with jitter). An event received resets the
    count."""

    max_attempts: int = 8
    initial_backoff: float = 0.2
    max_backoff: float = 5.0


class ResumeState:
    """Position of a resumable stream: the last sequence delivered, the reconnect count and
    the deadline of the whole stream, reconnects included."""

    def __init__(self, from_sequence: int, policy: ResumePolicy, timeout: Optional[float]) -> None:
        self.last_sequence = from_sequence
        self._policy = policy
        self._attempts = 0
        self._deadline = None if timeout is None else time.monotonic() + timeout

    def remaining(self) -> Optional[float]:
        """The timeout of the next attempt: what is left of the stream's; None = no limit."""
        if self._deadline is None:
            return None
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded("the stream's timeout passed")
        return left

    def accept(self, sequence: int) -> bool:
        """Whether an event is new. A reconnect resumes after last_sequence, so this drops
        nothing the server sends in order; it guards against replays all the same."""
        if sequence <= self.last_sequence:
            return False
        self.last_sequence = sequence
        self._attempts = 0
        return True

    def retry_delay(self, error: FabricSyncError) -> float:
        """Seconds to wait before reconnecting after `error`; raises it when it is not
        transient or the attempts are used up."""
        if not isinstance(error, Unavailable) or self._attempts >= self._policy.max_attempts:
            raise error
        delay = min(self._policy.max_backoff, self._policy.initial_backoff * 2.0**self._attempts)
        self._attempts += 1
        return delay * random.uniform(0.8, 1.0)


@dataclasses.dataclass(frozen=True)
class StreamSpec(Generic[_Req, _Resp, _Event]):
    """One resumable stream RPC: its request from a sequence, and its events."""

    request: Callable[[int], _Req]
    event: Callable[[_Resp], _Event]
    sequence: Callable[[_Event], int]
    is_last: Callable[[_Event], bool] = lambda _: False


_TERMINAL = ("finished", "failed", "cancelled")


def progress_spec(run_id: str) -> StreamSpec[sync_pb2.StreamSyncProgressRequest, sync_pb2.StreamSyncProgressResponse, sync_pb2.SyncProgressEvent]:
    """StreamSyncProgress: ends with the run's finished, failed or cancelled event."""
    return StreamSpec(
        request=lambda seq: sync_pb2.StreamSyncProgressRequest(run_id=run_id, from_sequence=seq),
        event=lambda r: r.event,
        sequence=lambda e: e.sequence,
        is_last=lambda e: e.WhichOneof("payload") in _TERMINAL,
    )


def watch_spec(
    fabric_id: str, kinds: Sequence[str]
) -> StreamSpec[sync_pb2.WatchFabricEventsRequest, sync_pb2.WatchFabricEventsResponse, sync_pb2.FabricEvent]:
    """WatchFabricEvents: without end."""
    return StreamSpec(
        request=lambda seq: sync_pb2.WatchFabricEventsRequest(fabric_id=fabric_id, from_sequence=seq, kinds=kinds),
        event=lambda r: r.event,
        sequence=lambda e: e.sequence,
    )


def drift_spec(fabric_id: str) -> StreamSpec[drift_pb2.StreamDriftRequest, drift_pb2.StreamDriftResponse, drift_pb2.DriftEvent]:
    """StreamDrift: without end."""
    return StreamSpec(
        request=lambda seq: drift_pb2.StreamDriftRequest(fabric_id=fabric_id, from_sequence=seq),
        event=lambda r: r.event,
        sequence=lambda e: e.sequence,
    )


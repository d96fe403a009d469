"""The fabricsync connection: one SDK client per process (its channel is shared by the
request threads), and per request the NetBox user's name as the actor of every call."""

from __future__ import annotations

import functools
import threading
from typing import Any
from urllib.parse import quote

from fabricsync_client import Client

from .settings import Settings, load

ACTOR_HEADER = "x-fabricsync-actor"

_lock = threading.Lock()
_current: tuple[Settings, Client] | None = None


def _client(settings: Settings) -> Client:
    """The client for these settings; a changed setting (a rotated token file) makes a new one."""
    global _current
    with _lock:
        if _current is None or _current[0] != settings:
            if _current is not None:
                _current[1].close()
            client = Client(settings.address, tls=settings.tls, ca_file=settings.ca_file, token=settings.token)
            _current = (settings, client)
        return _current[1]


def actor(user: Any) -> str:
    """The user's name as gRPC metadata allows it (printable ASCII; others percent-encoded)."""
    return quote(user.get_username(), safe=" !#$&'()*+,/:;=?@[]~")


class _Bound:
    """A generated stub whose calls carry the actor and the configured deadline."""

    def __init__(self, stub: Any, metadata: tuple[tuple[str, str], ...], timeout: float) -> None:
        self._stub, self._metadata, self._timeout = stub, metadata, timeout

    def __getattr__(self, name: str) -> Any:
        return functools.partial(getattr(self._stub, name), metadata=self._metadata, timeout=self._timeout)


class Fabricsync:
    """The service as one NetBox user sees it: `fs.fabrics.GetFabric(request)` and so on."""

    def __init__(self, user: Any) -> None:
        self.settings = load()
        client = _client(self.settings)
        metadata = ((ACTOR_HEADER, actor(user)),)
        self.repositories = _Bound(client.repositories, metadata, self.settings.timeout)
        self.fabrics = _Bound(client.fabrics, metadata, self.settings.timeout)
        self.sync = _Bound(client.sync, metadata, self.settings.timeout)
        self.drift = _Bound(client.drift, metadata, self.settings.timeout)
        self.inventory = _Bound(client.inventory, metadata, self.settings.timeout)
        # Server streams last longer than one call: their own bound.
        self.streams = _Bound(client.sync, metadata, self.settings.stream_timeout)

"""A fabric's recent cluster events: WatchFabricEvents sends the stored events, then waits for
live ones without end, so the page reads it for a bounded time and keeps the latest."""

from __future__ import annotations

from typing import Any

from django.shortcuts import render
from fabricsync.v1 import sync_pb2
from fabricsync_client import DeadlineExceeded

from .base import ServiceView
from .fabrics import VIEW, fabric_context

SHOWN = 100
READ_FOR = 1.0  # seconds: the stored events come at once; after that only live ones would


class EventsView(ServiceView):
    permission = VIEW

    def get(self, request: Any, pk: str) -> Any:
        context = fabric_context(self.fs, pk, "events")
        kind = request.GET.get("kind", "")
        request_ = sync_pb2.WatchFabricEventsRequest(fabric_id=pk, kinds=[kind] if kind else [])
        events: list[sync_pb2.FabricEvent] = []
        call = self.fs.sync.WatchFabricEvents(request_, timeout=READ_FOR)
        try:
            for response in call:
                events.append(response.event)
                del events[:-SHOWN]
        except DeadlineExceeded:
            pass
        finally:
            call.cancel()
        return render(request, "netbox_fabricsync/events.html", context | {"events": events[::-1], "kind": kind})

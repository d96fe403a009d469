"""Sync runs: the list, and one run's page, live while it goes (a server-sent event stream
relayed from StreamSyncProgress), with its counters, diagnostics and changes when it ends."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import StreamingHttpResponse
from django.shortcuts import redirect, render
from fabricsync.v1 import fabric_pb2, sync_pb2
from fabricsync_client import DeadlineExceeded, FabricSyncError

from .. import present, progress
from ..errors import describe
from .base import ServiceView, page_args, paging
from .fabrics import SYNC, VIEW
from .repositories import repository_of

ACTIVE = (sync_pb2.SYNC_RUN_STATUS_QUEUED, sync_pb2.SYNC_RUN_STATUS_RUNNING)


class RunListView(ServiceView):
    permission = VIEW

    def get(self, request: Any) -> Any:
        fabric_id = request.GET.get("fabric_id", "")
        response = self.fs.sync.ListSyncRuns(sync_pb2.ListSyncRunsRequest(filter=f"fabric_id={fabric_id}" if fabric_id else "", **page_args(request)))
        fabrics = {f.id: f for f in self.fs.fabrics.ListFabrics(fabric_pb2.ListFabricsRequest(page_size=500)).fabrics}
        rows = [{"run": r, "fabric": fabrics.get(r.fabric_id)} for r in response.runs]
        return render(request, "netbox_fabricsync/run_list.html", {"rows": rows, "paging": paging(request, response, len(rows))})


def diagnostics(run: sync_pb2.SyncRun, repository: Any) -> list[dict[str, Any]]:
    return [
        {"diagnostic": d, "link": present.source_link(repository, run.commit, d.file, d.line)}
        for d in run.diagnostics
    ]


class RunView(ServiceView):
    permission = VIEW
    post_permission = SYNC  # cancel

    def get(self, request: Any, pk: str) -> Any:
        run = self.fs.sync.GetSyncRun(sync_pb2.GetSyncRunRequest(id=pk)).run
        fabric = self.fs.fabrics.GetFabric(fabric_pb2.GetFabricRequest(id=run.fabric_id)).fabric
        repository = repository_of(self.fs, fabric)
        return render(request, "netbox_fabricsync/run.html", {
            "run": run, "fabric": fabric, "active": run.status in ACTIVE,
            "diagnostics": diagnostics(run, repository),
            "counters": [(f.name, getattr(run.counters, f.name)) for f in run.counters.DESCRIPTOR.fields],
        })

    def post(self, request: Any, pk: str) -> Any:
        self.fs.sync.CancelSyncRun(sync_pb2.CancelSyncRunRequest(id=pk))
        messages.info(request, "Cancellation requested.")
        return redirect("plugins:netbox_fabricsync:run", pk=pk)


class RunEventsView(ServiceView):
    """text/event-stream of a run's progress after Last-Event-ID (or ?from=). Ends with an
    `end` event after the run's last one, or a `failure` event naming the cause."""

    permission = VIEW

    def get(self, request: Any, pk: str) -> Any:
        start = request.headers.get("Last-Event-ID") or request.GET.get("from") or "0"
        from_sequence = int(start) if start.isdigit() else 0
        call = self.fs.streams.StreamSyncProgress(sync_pb2.StreamSyncProgressRequest(run_id=pk, from_sequence=from_sequence))
        settings = self.fs.settings

        def events() -> Any:
            try:
                for response in call:
                    view = progress.view(response.event)
                    yield progress.sse("progress", view, view["sequence"])
                    if view["terminal"]:
                        yield progress.sse("end", {})
                        return
                yield progress.sse("end", {})
            except DeadlineExceeded:
                return  # this connection's time is up: the browser reconnects after the last id
            except FabricSyncError as e:
                title, message = describe(e, settings)
                yield progress.sse("failure", {"title": title, "message": message})
            finally:
                call.cancel()

        response = StreamingHttpResponse(events(), content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # a proxy in front must not hold events back
        return response

"""A fabric's drift: the summary by status and kind, the drifted resources, one resource's
fields (desired, live, who changed it and when) and diff, and remediation (a dry run first)."""

from __future__ import annotations

from typing import Any

from django.shortcuts import redirect, render
from fabricsync.v1 import drift_pb2, fabric_pb2

from .. import present
from .base import ServiceView, page_args, paging
from .fabrics import VIEW, fabric_context

REMEDIATE = "netbox_fabricsync.remediate_fabric"
_ORPHANED = fabric_pb2.RESOURCE_DRIFT_STATUS_ORPHANED  # deleted (delete_orphans), not reapplied


def _kind_rows(summary: drift_pb2.FabricDriftSummary) -> tuple[list[str], list[dict[str, Any]]]:
    """The by-kind table: one column per status that occurs, one row per kind."""
    statuses = sorted({c.status for k in summary.by_kind for c in k.counts})
    rows = [
        {"kind": k.kind, "counts": [{c.status: c.count for c in k.counts}.get(s, 0) for s in statuses]}
        for k in summary.by_kind
    ]
    return statuses, rows


def _term(status: int) -> str:
    """The ListDriftedResources filter value of a status ('' for in_sync: never listed)."""
    if status == fabric_pb2.RESOURCE_DRIFT_STATUS_IN_SYNC:
        return ""
    return present.label(fabric_pb2.ResourceDriftStatus, status).replace(" ", "_")


def diff_lines(diff: str) -> list[dict[str, str]]:
    """A unified diff's lines, each with its NetBox colour class (added, removed, hunk)."""
    def css(line: str) -> str:
        if line.startswith(("+++", "---")):
            return "fw-bold"
        if line.startswith("+"):
            return "bg-green-lt"
        if line.startswith("-"):
            return "bg-red-lt"
        if line.startswith("@@"):
            return "text-blue"
        return ""
    return [{"text": line, "css": css(line)} for line in diff.splitlines()]


class DriftView(ServiceView):
    permission = VIEW

    def get(self, request: Any, pk: str) -> Any:
        context = fabric_context(self.fs, pk, "drift")
        summary = self.fs.drift.GetFabricDrift(drift_pb2.GetFabricDriftRequest(fabric_id=pk)).summary
        status = request.GET.get("status", "")
        response = self.fs.drift.ListDriftedResources(drift_pb2.ListDriftedResourcesRequest(
            fabric_id=pk, filter=f"status={status}" if status.isidentifier() else "", **page_args(request),
        ))
        statuses, kind_rows = _kind_rows(summary)
        by_status = [{"count": c, "term": _term(c.status)} for c in summary.by_status]
        return render(request, "netbox_fabricsync/drift.html", context | {
            "summary": summary, "by_status": by_status, "kind_statuses": statuses, "kind_rows": kind_rows, "status": status,
            "drifted": [{"drift": d, "key": present.key_query(d.key), "orphan": d.status == _ORPHANED} for d in response.resources],
            "paging": paging(request, response, len(response.resources)),
        })


class ResourceDriftView(ServiceView):
    permission = VIEW

    def get(self, request: Any, pk: str, key: str) -> Any:
        context = fabric_context(self.fs, pk, "drift")
        drift = self.fs.drift.GetResourceDrift(drift_pb2.GetResourceDriftRequest(fabric_id=pk, key=present.parse_key(key))).drift
        return render(request, "netbox_fabricsync/resource_drift.html", context | {
            "drift": drift, "key": key, "diff": diff_lines(drift.unified_diff), "orphan": drift.status == _ORPHANED,
        })


class RemediateView(ServiceView):
    """Remediate the chosen resources (`key` values), or all drifted ones (`all`), and delete the
    chosen orphans (`orphan` values). `dry_run` previews: the run page shows what would change.
    `force` takes the fields back from the managers that changed them (server-side apply force):
    without it a field another manager holds stays as it is."""

    permission = REMEDIATE

    def post(self, request: Any, pk: str) -> Any:
        keys = [] if request.POST.get("all") else [present.parse_key(k) for k in request.POST.getlist("key")]
        orphans = [present.parse_key(k) for k in request.POST.getlist("orphan")]
        run = self.fs.drift.Remediate(drift_pb2.RemediateRequest(
            fabric_id=pk, keys=keys, delete_orphans=orphans, dry_run=bool(request.POST.get("dry_run")), force=bool(request.POST.get("force")),
        )).run
        return redirect("plugins:netbox_fabricsync:run", pk=run.id)

"""Fabrics: list, detail, create, edit, delete, and the actions on one fabric (pull, apply, full
sync, detect drift, test the cluster connection, the RBAC manifests)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from fabricsync.v1 import drift_pb2, fabric_pb2, sync_pb2
from fabricsync_client import FabricSyncError, InvalidArgument
from google.protobuf import duration_pb2, field_mask_pb2

from ..forms import FabricForm, SyncForm
from .base import ServiceView, page_args, paging
from .repositories import repositories_by_id, repository_of

VIEW, ADD, CHANGE, DELETE, SYNC = (f"netbox_fabricsync.{a}_fabric" for a in ("view", "add", "change", "delete", "sync"))

_MODES = {"pull": sync_pb2.SYNC_MODE_PULL, "apply": sync_pb2.SYNC_MODE_APPLY, "full": sync_pb2.SYNC_MODE_FULL}
_POLICY_FLAGS = ("self_heal", "prune", "allow_empty", "strict_references")
_CLUSTER_FIELDS = ("server_url", "ca_certificate_pem", "namespace")


def get_fabric(fs: Any, pk: str) -> fabric_pb2.Fabric:
    return fs.fabrics.GetFabric(fabric_pb2.GetFabricRequest(id=pk)).fabric


def fabric_context(fs: Any, pk: str, tab: str) -> dict[str, Any]:
    """What the header and tabs of every fabric page need."""
    return {"fabric": get_fabric(fs, pk), "tab": tab}


class FabricListView(ServiceView):
    permission = VIEW

    def get(self, request: Any) -> Any:
        args = page_args(request) | {"page_size": 100}
        response = self.fs.fabrics.ListFabrics(fabric_pb2.ListFabricsRequest(**args))
        repositories = repositories_by_id(self.fs)
        rows = [{"fabric": f, "repository": repositories.get(f.repository_id)} for f in response.fabrics]
        return render(request, "netbox_fabricsync/fabric_list.html", {"rows": rows, "paging": paging(request, response, len(rows))})


class FabricView(ServiceView):
    permission = VIEW

    def get(self, request: Any, pk: str) -> Any:
        context = fabric_context(self.fs, pk, "overview")
        # The last run as the fabric records it (status, time, commit, error): ListSyncRuns
        # would bring each run's changes too, thousands for a large fabric.
        return render(request, "netbox_fabricsync/fabric.html", context | {"repository": repository_of(self.fs, context["fabric"])})


def _fabric_message(data: dict[str, Any], pk: str | None) -> fabric_pb2.Fabric:
    interval = data["auto_sync_interval"] or 0
    return fabric_pb2.Fabric(
        id=pk or "", name=data["name"], description=data["description"], repository_id=data["repository_id"],
        git_ref=data["git_ref"], gitops_path=data["gitops_path"],
        sync_policy=fabric_pb2.SyncPolicy(auto_sync_interval=duration_pb2.Duration(seconds=interval), **{f: data[f] for f in _POLICY_FLAGS}),
    )


def _cluster(data: dict[str, Any]) -> fabric_pb2.ClusterConnectionInput:
    return fabric_pb2.ClusterConnectionInput(bearer_token=data["bearer_token"], **{f: data[f] for f in _CLUSTER_FIELDS})


def _initial(fabric: fabric_pb2.Fabric) -> dict[str, Any]:
    policy = fabric.sync_policy
    return {
        "name": fabric.name, "description": fabric.description, "repository_id": fabric.repository_id,
        "git_ref": fabric.git_ref, "gitops_path": fabric.gitops_path, "etag": fabric.etag,
        "auto_sync_interval": policy.auto_sync_interval.seconds or None,
        **{f: getattr(policy, f) for f in _POLICY_FLAGS},
        **{f: getattr(fabric.cluster, f) for f in _CLUSTER_FIELDS},
    }


class FabricEditView(ServiceView):
    """Create (no pk) or edit; on edit only the fields changed from the stored values (an update
    mask), with the etag read when the form was shown."""

    def required_permission(self, request: Any) -> str:
        return CHANGE if self.kwargs.get("pk") else ADD

    def _form(self, *args: Any, **kwargs: Any) -> FabricForm:
        repositories = [(r.id, r.name) for r in repositories_by_id(self.fs).values()]
        return FabricForm(*args, repositories=repositories, **kwargs)

    def _stored(self, pk: str | None) -> dict[str, Any] | None:
        return _initial(get_fabric(self.fs, pk)) if pk else None

    def get(self, request: Any, pk: str | None = None) -> Any:
        return self._render(request, self._form(initial=self._stored(pk)), pk)

    def post(self, request: Any, pk: str | None = None) -> Any:
        form = self._form(request.POST, initial=self._stored(pk))
        if not form.is_valid():
            return self._render(request, form, pk)
        data = form.cleaned_data
        try:
            if pk:
                fabric = self._update(pk, form)
            else:
                request_ = fabric_pb2.CreateFabricRequest(fabric=_fabric_message(data, None))
                if data["server_url"]:
                    request_.cluster.CopyFrom(_cluster(data))
                fabric = self.fs.fabrics.CreateFabric(request_).fabric
        except InvalidArgument as e:
            if form.add_service_error(e):
                return self._render(request, form, pk)
            return self._render(request, form, pk, self.banner(e))
        except FabricSyncError as e:
            return self._render(request, form, pk, self.banner(e))
        messages.success(request, f"Fabric {fabric.name} saved.")
        return redirect("plugins:netbox_fabricsync:fabric", pk=fabric.id)

    def _update(self, pk: str, form: FabricForm) -> fabric_pb2.Fabric:
        data = form.cleaned_data
        changed = set(form.changed_data)
        paths = [f for f in ("name", "description", "repository_id", "git_ref", "gitops_path") if f in changed]
        paths += [f"sync_policy.{f}" for f in (*_POLICY_FLAGS, "auto_sync_interval") if f in changed]
        paths += [f"cluster.{f}" for f in _CLUSTER_FIELDS if f in changed]
        if data["bearer_token"]:
            paths.append("cluster.bearer_token")
        request = fabric_pb2.UpdateFabricRequest(
            fabric=_fabric_message(data, pk), update_mask=field_mask_pb2.FieldMask(paths=paths), cluster=_cluster(data), etag=data["etag"],
        )
        return self.fs.fabrics.UpdateFabric(request).fabric

    def _render(self, request: Any, form: FabricForm, pk: str | None, error: Any = None) -> Any:
        cancel = reverse("plugins:netbox_fabricsync:fabric", kwargs={"pk": pk}) if pk else reverse("plugins:netbox_fabricsync:fabric_list")
        return render(request, "netbox_fabricsync/edit.html", {
            "form": form, "title": "Edit fabric" if pk else "Add a fabric", "cancel_url": cancel, "error": error,
        }, status=400 if error or form.errors else 200)


class FabricDeleteView(ServiceView):
    permission = DELETE

    def get(self, request: Any, pk: str) -> Any:
        fabric = get_fabric(self.fs, pk)
        return render(request, "netbox_fabricsync/delete.html", {
            "name": fabric.name, "what": "fabric", "etag": fabric.etag,
            "cancel_url": reverse("plugins:netbox_fabricsync:fabric", kwargs={"pk": pk}),
        })

    def post(self, request: Any, pk: str) -> Any:
        self.fs.fabrics.DeleteFabric(fabric_pb2.DeleteFabricRequest(id=pk, etag=request.POST.get("etag", "")))
        messages.success(request, "Fabric deleted.")
        return redirect("plugins:netbox_fabricsync:fabric_list")


class FabricSyncView(ServiceView):
    """Pull, Apply or Full sync: starts the run and opens its live page."""

    permission = SYNC

    def post(self, request: Any, pk: str) -> Any:
        form = SyncForm(request.POST)
        if not form.is_valid():
            messages.error(request, "Choose pull, apply or full sync.")
            return redirect("plugins:netbox_fabricsync:fabric", pk=pk)
        response = self.fs.sync.StartSync(sync_pb2.StartSyncRequest(
            fabric_id=pk, mode=_MODES[form.cleaned_data["mode"]], dry_run=form.cleaned_data["dry_run"],
        ))
        if response.already_active:
            messages.warning(request, "A run of this fabric is already active: showing it.")
        return redirect("plugins:netbox_fabricsync:run", pk=response.run.id)


class FabricDetectDriftView(ServiceView):
    permission = SYNC

    def post(self, request: Any, pk: str) -> Any:
        summary = self.fs.drift.DetectDrift(drift_pb2.DetectDriftRequest(fabric_id=pk)).summary
        messages.success(request, f"Drift detected: {summary.drift_count} resources differ from Git.")
        return redirect("plugins:netbox_fabricsync:fabric_drift", pk=pk)


class FabricTestClusterView(ServiceView):
    permission = SYNC

    def post(self, request: Any, pk: str) -> Any:
        context = fabric_context(self.fs, pk, "overview")
        test = self.fs.fabrics.TestClusterConnection(fabric_pb2.TestClusterConnectionRequest(id=pk))
        return render(request, "netbox_fabricsync/cluster_test.html", context | {"test": test})


class FabricRbacView(ServiceView):
    """The ServiceAccount, Role and binding fabricsync needs in the cluster, as a YAML download."""

    permission = CHANGE

    def get(self, request: Any, pk: str) -> Any:
        fabric = get_fabric(self.fs, pk)
        manifests = self.fs.fabrics.GenerateRbacManifests(fabric_pb2.GenerateRbacManifestsRequest(fabric_id=pk))
        response = HttpResponse(manifests.yaml, content_type="application/yaml")
        response["Content-Disposition"] = f'attachment; filename="fabricsync-rbac-{fabric.name}.yaml"'
        return response

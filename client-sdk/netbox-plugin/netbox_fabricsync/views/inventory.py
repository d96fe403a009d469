"""A fabric's cluster inventory: the imported objects over ListInventoryObjects (its filters,
server-side pages) and one of them (GetInventoryObject), of the fabric's own cluster and its
extra inventory clusters (ListInventoryClusters, read-only here), an import (a run of mode
INVENTORY), what runs behind a switch port and on a Server, and Sync to NetBox (a dry run first,
then the confirm with its per-object log)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.shortcuts import redirect, render
from fabricsync.v1 import inventory_pb2
from fabricsync_client import InvalidArgument

from .. import netbox_store, netbox_sync
from ..errors import status_of
from ..forms import InventoryFilterForm, SwitchPortForm
from .base import ServiceView, error_page, page_args, paging
from .fabrics import SYNC, VIEW, fabric_context

# What a Sync to NetBox needs besides the plugin's sync permission. The Site, role, type and
# Cluster it makes once need none of their own: they exist for these objects.
NETBOX_PERMISSIONS = ("dcim.add_device", "dcim.change_device", "virtualization.add_virtualmachine", "virtualization.change_virtualmachine")


def inventory_clusters(fs: Any, pk: str) -> list[inventory_pb2.InventoryCluster]:
    """The fabric's extra inventory clusters, by name (their tokens are never returned)."""
    return list(fs.inventory.ListInventoryClusters(inventory_pb2.ListInventoryClustersRequest(fabric_id=pk)).clusters)


class InventoryView(ServiceView):
    permission = VIEW

    def get(self, request: Any, pk: str) -> Any:
        context = fabric_context(self.fs, pk, "inventory")
        clusters = inventory_clusters(self.fs, pk)
        form = InventoryFilterForm(request.GET, clusters=[c.name for c in clusters])
        response = self.fs.inventory.ListInventoryObjects(inventory_pb2.ListInventoryObjectsRequest(fabric_id=pk, filter=form.filter(), **page_args(request)))
        return render(request, "netbox_fabricsync/inventory.html", context | {
            "objects": response.objects, "filter_form": form, "port_form": SwitchPortForm(), "paging": paging(request, response, len(response.objects)),
            "clusters": clusters,
        })


class InventoryObjectView(ServiceView):
    """One imported object (?cluster=&kind=&namespace=&name=, cluster empty for the fabric's
    own) and, for a node, pod or VM, the Server it runs on."""

    permission = VIEW

    def get(self, request: Any, pk: str) -> Any:
        context = fabric_context(self.fs, pk, "inventory")
        request_ = inventory_pb2.GetInventoryObjectRequest(fabric_id=pk, **{f: request.GET.get(f, "") for f in ("cluster", "kind", "namespace", "name")})
        response = self.fs.inventory.GetInventoryObject(request_)
        return render(request, "netbox_fabricsync/inventory_object.html", context | {
            "object": response.object, "server": response.server if response.HasField("server") else None,
        })


class ServerInventoryView(ServiceView):
    """What a Server of the fabric hosts: its nodes (of any of the fabric's clusters), ports, pods and VMs."""

    permission = VIEW

    def get(self, request: Any, pk: str, server: str) -> Any:
        context = fabric_context(self.fs, pk, "inventory")
        response = self.fs.inventory.GetServerInventory(inventory_pb2.GetServerInventoryRequest(fabric_id=pk, server=server))
        return render(request, "netbox_fabricsync/server_inventory.html", context | {"server": response.server})


class InventoryImportView(ServiceView):
    """Import inventory: starts the run and opens its live page."""

    permission = SYNC

    def post(self, request: Any, pk: str) -> Any:
        request_ = inventory_pb2.StartInventoryImportRequest(fabric_id=pk, dry_run=bool(request.POST.get("dry_run")))
        response = self.fs.inventory.StartInventoryImport(request_)
        if response.already_active:
            messages.warning(request, "An import of this fabric is already active: showing it.")
        return redirect("plugins:netbox_fabricsync:run", pk=response.run.id)


class SwitchPortView(ServiceView):
    """What runs behind a switch port; a port the service refuses keeps the form, with a banner."""

    permission = VIEW

    def get(self, request: Any, pk: str) -> Any:
        context = fabric_context(self.fs, pk, "inventory")
        form = SwitchPortForm(request.GET or None)
        servers, error, status = [], None, 200
        if form.is_valid():
            try:
                request_ = inventory_pb2.ListBehindSwitchPortRequest(fabric_id=pk, switch_port=form.cleaned_data["switch_port"])
                servers = self.fs.inventory.ListBehindSwitchPort(request_).servers
            except InvalidArgument as e:
                error, status = self.banner(e), status_of(e)
        return render(request, "netbox_fabricsync/switch_port.html", context | {"form": form, "servers": servers, "error": error}, status=status)


def inventory_of(fs: Any, pk: str, kind: str) -> list[inventory_pb2.InventoryObject]:
    """Every imported object of a kind, page after page."""
    request = inventory_pb2.ListInventoryObjectsRequest(fabric_id=pk, filter=f"kind={kind}", page_size=500)
    found: list[inventory_pb2.InventoryObject] = []
    while True:
        response = fs.inventory.ListInventoryObjects(request)
        found += response.objects
        if not response.next_page_token:
            return found
        request.page_token = response.next_page_token


class NetBoxSyncView(ServiceView):
    """Sync to NetBox. GET is the dry run: per object what would be created, updated or stay
    unchanged. POST applies the plan and shows the log; it carries the preview's fingerprint, and
    a plan that changed since (a new import, an edit in NetBox) is shown again, not applied."""

    permission = VIEW

    def get(self, request: Any, pk: str) -> Any:
        context = fabric_context(self.fs, pk, "inventory")
        return self._render(request, context, self._plan(context["fabric"].name, pk))

    def post(self, request: Any, pk: str) -> Any:
        missing = missing_permissions(request.user)
        if missing:
            return error_page(request, "Not allowed", f"Sync to NetBox needs the permissions {', '.join(missing)}.", 403)
        context = fabric_context(self.fs, pk, "inventory")
        items = self._plan(context["fabric"].name, pk)
        if netbox_sync.fingerprint(items) != request.POST.get("fingerprint"):
            messages.warning(request, "The inventory or NetBox changed since the preview: check the plan again.")
            return self._render(request, context, items, status=409)
        return self._render(request, context, netbox_store.apply(items, context["fabric"].name, request.user), applied=True)

    def _plan(self, fabric: str, pk: str) -> list[netbox_sync.Item]:
        """Of every cluster of the fabric: each kind is listed across them."""
        kinds = {kind: inventory_of(self.fs, pk, kind) for kind in ("node", "virtualmachine", "virtualmachineinstance")}
        placement = netbox_store.placement(fabric)
        clusters = netbox_sync.netbox_clusters(placement, kinds["virtualmachine"])
        return netbox_sync.plan(
            placement, kinds["node"], kinds["virtualmachine"], kinds["virtualmachineinstance"],
            netbox_store.devices(fabric), netbox_store.virtual_machines(clusters),
        )

    def _render(self, request: Any, context: dict[str, Any], items: list[netbox_sync.Item], applied: bool = False, status: int = 200) -> Any:
        return render(request, "netbox_fabricsync/netbox_sync.html", context | {
            "items": items, "counts": netbox_sync.counts(items), "fingerprint": netbox_sync.fingerprint(items), "applied": applied,
            "placement": netbox_store.placement(context["fabric"].name), "missing": missing_permissions(request.user),
        }, status=status)


def missing_permissions(user: Any) -> list[str]:
    return [p for p in (SYNC, *NETBOX_PERMISSIONS) if not user.has_perm(p)]

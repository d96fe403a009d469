"""On NetBox's Device pages: the fabricsync fabric whose Switch or Server has the device's
name, with its role, its Connections and its drift status."""

from __future__ import annotations

import re
from typing import Any

from fabricsync.v1 import fabric_pb2
from fabricsync_client import FabricSyncError
from netbox.plugins import PluginTemplateExtension

from . import present
from .errors import describe
from .service import Fabricsync
from .settings import ConfigError

KINDS = ("Switch", "Server")
_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")


def device_memberships(fs: Fabricsync, name: str) -> list[dict[str, Any]]:
    """Each fabric having a Switch or Server of this name, with that resource and the fabric's
    Connections naming it (Hedgehog names a Connection after its ends, joined by '--')."""
    if not _NAME.match(name):
        return []  # no Hedgehog object has such a name (nor could the filter carry it)
    found = []
    request = fabric_pb2.ListFabricsRequest(page_size=500)
    for fabric in fs.fabrics.ListFabrics(request).fabrics:
        for kind in KINDS:
            listed = fs.fabrics.ListResources(fabric_pb2.ListResourcesRequest(fabric_id=fabric.id, filter=f"kind={kind} name={name}", page_size=1))
            if not listed.resources:
                continue
            resource = fs.fabrics.GetResource(fabric_pb2.GetResourceRequest(fabric_id=fabric.id, id=listed.resources[0].id)).resource
            spec = present.struct_dict(resource.desired).get("spec", {})
            found.append({
                "fabric": fabric, "resource": resource, "role": spec.get("role") or kind.lower(),
                "key": present.key_query(resource.key), "connections": _connections(fs, fabric.id, name),
            })
    return found


def _connections(fs: Fabricsync, fabric_id: str, name: str) -> list[fabric_pb2.Resource]:
    found = []
    request = fabric_pb2.ListResourcesRequest(fabric_id=fabric_id, filter="kind=Connection", page_size=500)
    while True:
        response = fs.fabrics.ListResources(request)
        found += [r for r in response.resources if name in _ends(r.key.name)]
        if not response.next_page_token:
            return found
        request.page_token = response.next_page_token


def _ends(connection_name: str) -> set[str]:
    return set(connection_name.split("--"))


class DevicePanel(PluginTemplateExtension):
    models = ["dcim.device"]

    def right_page(self) -> str:
        request = self.context["request"]
        if not request.user.has_perm("netbox_fabricsync.view_fabric"):
            return ""
        device = self.context["object"]
        context: dict[str, Any] = {"memberships": [], "error": None}
        try:
            fs = Fabricsync(request.user)
        except ConfigError as e:
            context["error"] = {"title": "fabricsync plugin not configured", "message": str(e)}
        else:
            try:
                context["memberships"] = device_memberships(fs, device.name or "")
            except FabricSyncError as e:
                title, message = describe(e, fs.settings)
                context["error"] = {"title": title, "message": message}
        if not context["memberships"] and not context["error"]:
            return ""
        return self.render("netbox_fabricsync/device_panel.html", extra_context=context)


template_extensions = [DevicePanel]

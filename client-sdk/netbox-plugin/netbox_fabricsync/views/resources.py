"""A fabric's resources: the table over ListResources (its filters, server-side pages) and one
resource with its desired and live objects."""

from __future__ import annotations

from typing import Any

from django.shortcuts import render
from fabricsync.v1 import fabric_pb2

from .. import present
from ..forms import ResourceFilterForm
from .base import ServiceView, page_args, paging
from .fabrics import VIEW, fabric_context


class ResourceListView(ServiceView):
    permission = VIEW

    def get(self, request: Any, pk: str) -> Any:
        context = fabric_context(self.fs, pk, "resources")
        form = ResourceFilterForm(request.GET)
        response = self.fs.fabrics.ListResources(fabric_pb2.ListResourcesRequest(fabric_id=pk, filter=form.filter(), **page_args(request)))
        return render(request, "netbox_fabricsync/resources.html", context | {
            "resources": response.resources, "filter_form": form, "paging": paging(request, response, len(response.resources)),
        })


class ResourceView(ServiceView):
    permission = VIEW

    def get(self, request: Any, pk: str, key: str) -> Any:
        context = fabric_context(self.fs, pk, "resources")
        resource = self.fs.fabrics.GetResource(fabric_pb2.GetResourceRequest(fabric_id=pk, key=present.parse_key(key))).resource
        return render(request, "netbox_fabricsync/resource.html", context | {
            "resource": resource, "desired": present.to_yaml(resource.desired), "live": present.to_yaml(resource.live),
        })

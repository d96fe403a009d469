"""Plan a ref: what a pull of a branch, tag or commit would change, and every diagnostic, before
it is merged (PlanSync: nothing is stored)."""

from __future__ import annotations

from typing import Any

from django.shortcuts import render
from fabricsync.v1 import sync_pb2

from ..forms import PlanForm
from .base import ServiceView
from .fabrics import VIEW, fabric_context
from .repositories import repository_of
from .runs import diagnostics


class PlanView(ServiceView):
    permission = VIEW

    def get(self, request: Any, pk: str) -> Any:
        context = fabric_context(self.fs, pk, "plan")
        form = PlanForm(request.GET or None)
        plan = None
        if form.is_valid():
            plan = self.fs.sync.PlanSync(sync_pb2.PlanSyncRequest(fabric_id=pk, ref=form.cleaned_data["ref"]))
            context["diagnostics"] = diagnostics(plan, repository_of(self.fs, context["fabric"]))
        return render(request, "netbox_fabricsync/plan.html", context | {"form": form, "plan": plan})

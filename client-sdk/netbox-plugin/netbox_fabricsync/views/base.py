"""What every page shares: NetBox login and permissions checked before any call, and a
fabricsync error (or a wrong setting) shown as a banner on a NetBox page, never a 500."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.shortcuts import render
from django.views import View
from fabricsync_client import FabricSyncError

from ..errors import describe, status_of
from ..service import Fabricsync
from ..settings import ConfigError

PAGE_SIZE = 50


class ServiceView(View):
    """A page backed by fabricsync calls. `permission` is the NetBox permission its GET needs,
    `post_permission` the one its POST needs (default: the same)."""

    permission: str = ""
    post_permission: str = ""
    fs: Fabricsync

    def required_permission(self, request: Any) -> str:
        if request.method == "POST" and self.post_permission:
            return self.post_permission
        return self.permission

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not request.user.has_perm(self.required_permission(request)):
            raise PermissionDenied(f"You need the permission {self.required_permission(request)}.")
        try:
            self.fs = Fabricsync(request.user)
        except ConfigError as e:
            return error_page(request, "fabricsync plugin not configured", str(e), 503)
        try:
            return super().dispatch(request, *args, **kwargs)
        except FabricSyncError as e:
            title, message = describe(e, self.fs.settings)
            return error_page(request, title, message, status_of(e))

    def banner(self, error: FabricSyncError) -> dict[str, str]:
        """The context of an error banner on a page that still renders (a form)."""
        title, message = describe(error, self.fs.settings)
        return {"title": title, "message": message}


def error_page(request: Any, title: str, message: str, status: int) -> Any:
    return render(request, "netbox_fabricsync/error.html", {"error": {"title": title, "message": message}}, status=status)


def page_args(request: Any) -> dict[str, Any]:
    """The paging of a List request from the query string (page tokens are the server's)."""
    return {"page_size": PAGE_SIZE, "page_token": request.GET.get("page_token", "")}


def paging(request: Any, response: Any, shown: int) -> dict[str, Any]:
    """The context of the pager under a list: how many, and links to the first and next page."""
    query = request.GET.copy()
    query.pop("page_token", None)
    first = query.urlencode()
    query["page_token"] = response.next_page_token
    return {
        "total": response.total_size,
        "shown": shown,
        "first_query": first,
        "next_query": query.urlencode() if response.next_page_token else "",
        "is_first": not request.GET.get("page_token"),
    }

"""Repositories: list, detail, create, edit, delete, test connection."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from fabricsync.v1 import repository_pb2
from fabricsync_client import FabricSyncError, InvalidArgument
from google.protobuf import field_mask_pb2

from ..forms import RepositoryForm
from .base import ServiceView, page_args, paging

VIEW, ADD, CHANGE, DELETE = (f"netbox_fabricsync.{a}_repository" for a in ("view", "add", "change", "delete"))


def _auth(data: dict[str, Any]) -> repository_pb2.RepositoryAuth:
    kind, secret, username = data["auth_type"], data["secret"], data["username"]
    if kind == "token":
        return repository_pb2.RepositoryAuth(token=repository_pb2.TokenAuth(token=secret, username=username))
    if kind == "basic":
        return repository_pb2.RepositoryAuth(basic=repository_pb2.BasicAuth(username=username, password=secret))
    if kind == "ssh_key":
        return repository_pb2.RepositoryAuth(ssh_key=repository_pb2.SshKeyAuth(private_key=secret, known_hosts=data["known_hosts"]))
    return repository_pb2.RepositoryAuth(none=repository_pb2.NoAuth())


_AUTH_NAMES = {repository_pb2.AUTH_TYPE_TOKEN: "token", repository_pb2.AUTH_TYPE_BASIC: "basic", repository_pb2.AUTH_TYPE_SSH_KEY: "ssh_key"}


def _initial(repo: repository_pb2.Repository) -> dict[str, Any]:
    return {
        "name": repo.name, "description": repo.description, "url": repo.url,
        "provider": repository_pb2.Provider.Name(repo.provider or repository_pb2.PROVIDER_GENERIC),
        "auth_type": _AUTH_NAMES.get(repo.auth.type, "none"), "username": repo.auth.username, "etag": repo.etag,
    }


def repositories_by_id(fs: Any) -> dict[str, repository_pb2.Repository]:
    """Every repository by id (for names and forge links on fabric pages)."""
    found: dict[str, repository_pb2.Repository] = {}
    request = repository_pb2.ListRepositoriesRequest(page_size=500)
    while True:
        response = fs.repositories.ListRepositories(request)
        found.update((r.id, r) for r in response.repositories)
        if not response.next_page_token:
            return found
        request.page_token = response.next_page_token


def repository_of(fs: Any, fabric: Any) -> repository_pb2.Repository:
    """A fabric's repository (one in use cannot be deleted)."""
    return fs.repositories.GetRepository(repository_pb2.GetRepositoryRequest(id=fabric.repository_id)).repository


class RepositoryListView(ServiceView):
    permission = VIEW

    def get(self, request: Any) -> Any:
        response = self.fs.repositories.ListRepositories(repository_pb2.ListRepositoriesRequest(**page_args(request)))
        return render(request, "netbox_fabricsync/repository_list.html", {
            "repositories": response.repositories, "paging": paging(request, response, len(response.repositories)),
        })


class RepositoryView(ServiceView):
    permission = VIEW
    post_permission = CHANGE  # the connection test

    def get(self, request: Any, pk: str, test: Any = None) -> Any:
        repo = self.fs.repositories.GetRepository(repository_pb2.GetRepositoryRequest(id=pk)).repository
        return render(request, "netbox_fabricsync/repository.html", {"repository": repo, "test": test})

    def post(self, request: Any, pk: str) -> Any:
        test = self.fs.repositories.TestRepositoryConnection(repository_pb2.TestRepositoryConnectionRequest(id=pk))
        return self.get(request, pk, test)


class RepositoryEditView(ServiceView):
    """Create (no pk) or edit. On edit only the fields changed from the stored values are sent
    (an update mask), with the etag read when the form was shown, so that a change made since
    is refused (ABORTED) rather than overwritten."""

    def required_permission(self, request: Any) -> str:
        return CHANGE if self.kwargs.get("pk") else ADD

    def _stored(self, pk: str | None) -> dict[str, Any]:
        return _initial(self.fs.repositories.GetRepository(repository_pb2.GetRepositoryRequest(id=pk)).repository) if pk else {}

    def get(self, request: Any, pk: str | None = None) -> Any:
        return self._render(request, RepositoryForm(initial=self._stored(pk)), pk)

    def post(self, request: Any, pk: str | None = None) -> Any:
        form = RepositoryForm(request.POST, initial=self._stored(pk))
        if not form.is_valid():
            return self._render(request, form, pk)
        data = form.cleaned_data
        repo = repository_pb2.Repository(
            id=pk or "", name=data["name"], description=data["description"], url=data["url"],
            provider=repository_pb2.Provider.Value(data["provider"]),
        )
        try:
            if pk:
                repo = self._update(pk, form, repo)
            else:
                repo = self.fs.repositories.CreateRepository(repository_pb2.CreateRepositoryRequest(repository=repo, auth=_auth(data))).repository
        except InvalidArgument as e:
            if form.add_service_error(e):
                return self._render(request, form, pk)
            return self._render(request, form, pk, self.banner(e))
        except FabricSyncError as e:
            return self._render(request, form, pk, self.banner(e))
        messages.success(request, f"Repository {repo.name} saved.")
        return redirect("plugins:netbox_fabricsync:repository", pk=repo.id)

    def _update(self, pk: str, form: RepositoryForm, repo: repository_pb2.Repository) -> repository_pb2.Repository:
        data = form.cleaned_data
        paths = [f for f in ("name", "description", "url", "provider") if f in form.changed_data]
        auth_changed = bool(data["secret"]) or any(f in form.changed_data for f in ("auth_type", "username", "known_hosts"))
        request = repository_pb2.UpdateRepositoryRequest(repository=repo, etag=data["etag"])
        if auth_changed:
            paths.append("auth")
            request.auth.CopyFrom(_auth(data))
        request.update_mask.CopyFrom(field_mask_pb2.FieldMask(paths=paths))
        return self.fs.repositories.UpdateRepository(request).repository

    def _render(self, request: Any, form: RepositoryForm, pk: str | None, error: Any = None) -> Any:
        cancel = reverse("plugins:netbox_fabricsync:repository", kwargs={"pk": pk}) if pk else reverse("plugins:netbox_fabricsync:repository_list")
        return render(request, "netbox_fabricsync/edit.html", {
            "form": form, "title": "Edit repository" if pk else "Add a repository", "cancel_url": cancel, "error": error,
        }, status=400 if error or form.errors else 200)


class RepositoryDeleteView(ServiceView):
    permission = DELETE

    def get(self, request: Any, pk: str) -> Any:
        repo = self.fs.repositories.GetRepository(repository_pb2.GetRepositoryRequest(id=pk)).repository
        return render(request, "netbox_fabricsync/delete.html", {
            "name": repo.name, "what": "repository", "etag": repo.etag,
            "cancel_url": reverse("plugins:netbox_fabricsync:repository", kwargs={"pk": pk}),
        })

    def post(self, request: Any, pk: str) -> Any:
        self.fs.repositories.DeleteRepository(repository_pb2.DeleteRepositoryRequest(id=pk, etag=request.POST.get("etag", "")))
        messages.success(request, "Repository deleted.")
        return redirect("plugins:netbox_fabricsync:repository_list")

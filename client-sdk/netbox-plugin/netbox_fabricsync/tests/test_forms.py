"""The forms create, edit and delete through the service; the service's field violations land
on the field they name; secrets are write-only; a stale etag is explained."""

from django.test import TestCase
from django.urls import reverse
from fabricsync.v1 import fabric_pb2, repository_pb2
from fabricsync_client import NotFound

from netbox_fabricsync.tests import support
from netbox_fabricsync.tests.support import sdk, unique


def url(name, **kwargs):
    return reverse(f"plugins:netbox_fabricsync:{name}", kwargs=kwargs)


def get_repository(pk):
    return sdk().repositories.GetRepository(repository_pb2.GetRepositoryRequest(id=pk)).repository


def get_fabric(pk):
    return sdk().fabrics.GetFabric(fabric_pb2.GetFabricRequest(id=pk)).fabric


REPOSITORY = {"url": support.GIT_URL, "provider": "PROVIDER_GENERIC", "auth_type": "none", "description": "", "username": "", "secret": "", "known_hosts": ""}


class FormTests(TestCase):
    def setUp(self):
        self.client.force_login(support.superuser())

    def test_repository_create_edit_delete(self):
        name = unique("form-repo")
        response = self.client.post(url("repository_add"), REPOSITORY | {"name": name})
        self.assertEqual(response.status_code, 302, response.content[:3000])
        pk = response.url.rstrip("/").split("/")[-1]
        self.assertEqual(get_repository(pk).name, name)

        form = self.client.get(url("repository_edit", pk=pk)).context["form"]
        edited = form.initial | {"description": "lab fabric", "url": "https://127.0.0.1:9/fabric.git", "auth_type": "token", "secret": "ghp-very-secret", "username": "bot"}
        response = self.client.post(url("repository_edit", pk=pk), edited)
        self.assertEqual(response.status_code, 302, response.context and (response.context["form"].errors, response.context["error"]))
        repository = get_repository(pk)
        self.assertEqual((repository.description, repository.auth.type, repository.auth.has_secret), ("lab fabric", repository_pb2.AUTH_TYPE_TOKEN, True))
        for page in (url("repository", pk=pk), url("repository_edit", pk=pk), url("repository_list")):
            self.assertNotIn("ghp-very-secret", self.client.get(page).content.decode())
        self.assertContains(self.client.get(url("repository", pk=pk)), 'id="secret-state">set')

        # An edit made from a stale page: the service refuses it (ABORTED), explained.
        stale = self.client.post(url("repository_edit", pk=pk), form.initial | {"description": "again"})
        self.assertContains(stale, "Someone changed this object", status_code=400)
        self.assertEqual(get_repository(pk).description, "lab fabric")

        self.assertContains(self.client.get(url("repository_delete", pk=pk)), "Delete the repository")
        self.assertEqual(self.client.post(url("repository_delete", pk=pk), {"etag": get_repository(pk).etag}).status_code, 302)
        with self.assertRaises(NotFound):
            get_repository(pk)
        self.assertContains(self.client.get(url("repository", pk=pk)), "fabricsync has no such object", status_code=404)

    def test_repository_field_violation_on_its_field(self):
        response = self.client.post(url("repository_add"), REPOSITORY | {"name": unique("bad"), "auth_type": "token", "secret": "t"})
        self.assertIn("token credentials need an https:// URL", response.context["form"].errors["auth_type"][0])
        response = self.client.post(url("repository_add"), REPOSITORY | {"name": unique("bad"), "url": "nowhere"})
        self.assertEqual(response.status_code, 400)
        self.assertIn("url", response.context["form"].errors)
        response = self.client.post(url("repository_add"), REPOSITORY | {"name": "Not A Name"})
        self.assertIn("name", response.context["form"].errors)

    def test_fabric_create_edit_delete_with_write_only_token(self):
        repository = support.create_repository()
        name = unique("form-fab")
        data = {
            "name": name, "description": "", "repository_id": repository.id, "git_ref": "main", "gitops_path": "fabric",
            "server_url": support.ENV["FABRICSYNC_KUBE_URL"], "ca_certificate_pem": "", "bearer_token": "cluster-secret-token",
            "namespace": "default", "auto_sync_interval": "", "prune": "on",
        }
        response = self.client.post(url("fabric_add"), data)
        self.assertEqual(response.status_code, 302, response.content[:3000])
        pk = response.url.rstrip("/").split("/")[-1]
        fabric = get_fabric(pk)
        self.assertEqual((fabric.name, fabric.gitops_path, fabric.cluster.has_bearer_token, fabric.sync_policy.prune), (name, "fabric", True, True))

        form = self.client.get(url("fabric_edit", pk=pk)).context["form"]
        self.assertNotIn("cluster-secret-token", self.client.get(url("fabric_edit", pk=pk)).content.decode())
        edited = {k: v for k, v in form.initial.items() if v not in (None, False) and k != "prune"} | {"git_ref": "release-1", "auto_sync_interval": "300", "bearer_token": ""}
        self.assertEqual(self.client.post(url("fabric_edit", pk=pk), edited).status_code, 302)
        fabric = get_fabric(pk)
        self.assertEqual((fabric.git_ref, fabric.sync_policy.auto_sync_interval.seconds, fabric.cluster.has_bearer_token), ("release-1", 300, True))
        self.assertFalse(fabric.sync_policy.prune)  # unchecked on the form

        bad = self.client.post(url("fabric_edit", pk=pk), edited | {"etag": get_fabric(pk).etag, "server_url": "ftp://cluster"})
        self.assertEqual(bad.status_code, 400)
        self.assertIn("server_url", bad.context["form"].errors)

        self.assertEqual(self.client.post(url("fabric_delete", pk=pk), {"etag": get_fabric(pk).etag}).status_code, 302)
        with self.assertRaises(NotFound):
            get_fabric(pk)
        self.assertNotIn(name, self.client.get(url("fabric_list")).content.decode())

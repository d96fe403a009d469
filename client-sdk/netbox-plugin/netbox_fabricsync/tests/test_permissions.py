"""NetBox permissions decide before any call: a denied user gets 403 even with fabricsync
unreachable (a call would have shown the unreachable banner instead)."""

from core.models import ObjectType
from django.contrib.auth import get_user_model
from django.test import TestCase, override_settings
from django.urls import reverse
from users.models import ObjectPermission

from netbox_fabricsync.models import Fabric, Repository
from netbox_fabricsync.tests import support


def url(name, **kwargs):
    return reverse(f"plugins:netbox_fabricsync:{name}", kwargs=kwargs)


def user_with(name, model, actions):
    user = get_user_model().objects.create_user(name, password="x")
    grant(user, model, actions)
    return user


def grant(user, model, actions, constraints=None):
    permission = ObjectPermission.objects.create(name=f"{user.username}-{model.__name__}", actions=actions, constraints=constraints)
    permission.object_types.add(ObjectType.objects.get_for_model(model))
    permission.users.add(user)


class PermissionTests(TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.fabric = support.create_fabric(support.create_repository(), namespace=None)

    def test_anonymous_is_sent_to_login(self):
        response = self.client.get(url("fabric_list"))
        self.assertEqual(response.status_code, 302)
        self.assertIn("/login/", response.url)

    def test_denied_before_any_call(self):
        self.client.force_login(get_user_model().objects.create_user("nobody", password="x"))
        with override_settings(PLUGINS_CONFIG={"netbox_fabricsync": {"address": support.closed_address()}}):
            pages = ("fabric_list", "repository_list", "run_list")
            fabric_pages = ("fabric", "fabric_inventory", "fabric_inventory_object", "fabric_switch_port", "fabric_netbox_sync")
            for page in [url(p) for p in pages] + [url(p, pk=self.fabric.id) for p in fabric_pages]:
                self.assertEqual(self.client.get(page).status_code, 403, page)
            self.assertEqual(self.client.post(url("fabric_sync", pk=self.fabric.id), {"mode": "pull"}).status_code, 403)
            self.assertEqual(self.client.post(url("fabric_inventory_import", pk=self.fabric.id)).status_code, 403)

    def test_view_only_user_sees_but_cannot_sync_change_or_remediate(self):
        self.client.force_login(user_with("viewer", Fabric, ["view"]))
        page = self.client.get(url("fabric", pk=self.fabric.id))
        self.assertEqual(page.status_code, 200)
        self.assertNotContains(page, 'id="pull"')
        self.assertNotContains(page, "/edit/")
        self.assertEqual(self.client.get(url("repository_list")).status_code, 403)
        self.assertEqual(self.client.post(url("fabric_sync", pk=self.fabric.id), {"mode": "pull"}).status_code, 403)
        self.assertEqual(self.client.get(url("fabric_edit", pk=self.fabric.id)).status_code, 403)
        self.assertEqual(self.client.post(url("fabric_remediate", pk=self.fabric.id), {"all": "1"}).status_code, 403)

    def test_sync_permission_allows_a_pull_not_a_remediation(self):
        self.client.force_login(user_with("operator", Fabric, ["view", "sync"]))
        self.assertContains(self.client.get(url("fabric", pk=self.fabric.id)), 'id="pull"')
        response = self.client.post(url("fabric_sync", pk=self.fabric.id), {"mode": "pull", "dry_run": "on"})
        self.assertEqual(response.status_code, 302)
        self.assertIn("/runs/", response.url)
        self.assertEqual(self.client.post(url("fabric_remediate", pk=self.fabric.id), {"all": "1"}).status_code, 403)

    def test_repository_permissions(self):
        self.client.force_login(user_with("repo-viewer", Repository, ["view"]))
        self.assertEqual(self.client.get(url("repository_list")).status_code, 200)
        self.assertEqual(self.client.get(url("repository_add")).status_code, 403)
        self.assertEqual(self.client.post(url("repository", pk=self.fabric.repository_id)).status_code, 403)  # test connection

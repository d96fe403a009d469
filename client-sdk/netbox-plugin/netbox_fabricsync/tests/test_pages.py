"""Every page against the real fabricsync: a demo fabric pulled and applied to the real
kube-apiserver, one of its VPCs patched with kubectl (drift, events), and a wiring fabric
(Switches, Servers, Connections) for paging and the Device panel."""

from dcim.models import Device, DeviceRole, DeviceType, Manufacturer, Site
from django.test import TestCase
from django.urls import reverse
from fabricsync.v1 import drift_pb2, fabric_pb2, repository_pb2, sync_pb2

from netbox_fabricsync.present import key_query
from netbox_fabricsync.tests import support
from netbox_fabricsync.tests.support import PATCHED, poll, sdk


def url(name, **kwargs):
    return reverse(f"plugins:netbox_fabricsync:{name}", kwargs=kwargs)



class PageAssertions:
    """Page checks whose failures name the missing text, not the whole page."""

    def shows(self, page, text):
        self.assertTrue(text in page, f"{text!r} is not on the page")

    def lacks(self, page, text):
        self.assertFalse(text in page, f"{text!r} is on the page")


class FabricPagesTests(PageAssertions, TestCase):
    # Remediation restores the patch it undoes, so the tests share one applied fabric.
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.fabric = support.drifted_fabric()
        cls.repository = sdk().repositories.GetRepository(repository_pb2.GetRepositoryRequest(id=cls.fabric.repository_id)).repository
        support.add_wiring()
        cls.wiring = support.create_fabric(cls.repository, path=support.WIRING, namespace=None)
        support.run_to_end(cls.wiring.id, sync_pb2.SYNC_MODE_PULL)

    def setUp(self):
        self.client.force_login(support.superuser())
        self.vpc_key = self.resource_key("VPC", PATCHED)

    def resource_key(self, kind, name, fabric=None):
        listed = sdk().fabrics.ListResources(fabric_pb2.ListResourcesRequest(fabric_id=(fabric or self.fabric).id, filter=f"kind={kind} name={name}"))
        self.assertEqual(len(listed.resources), 1, listed)
        return key_query(listed.resources[0].key)

    def get(self, path, status=200):
        response = self.client.get(path)
        self.assertEqual(response.status_code, status, response.content[-3000:])
        return response.content.decode()

    def test_menu_and_fabric_list_with_statuses_and_counts(self):
        page = self.get(url("fabric_list"))
        self.shows(page, self.fabric.name)
        self.shows(page, self.repository.name)
        self.shows(page, '<span class="badge text-bg-green">synced</span>')
        self.shows(page, '<span class="badge text-bg-orange">drifted</span>')
        self.shows(page, '<span class="badge text-bg-green">active</span>')
        self.shows(page, "VPC&nbsp;4")
        self.assertIn("Sync runs", page)  # the menu
        self.shows(page, url("run_list"))

    def test_fabric_detail(self):
        page = self.get(url("fabric", pk=self.fabric.id))
        fabric = sdk().fabrics.GetFabric(fabric_pb2.GetFabricRequest(id=self.fabric.id)).fabric
        for text in (self.repository.name, "<code>fabric</code>", fabric.last_synced_commit, 'id="pull"', 'id="apply"', 'id="full-sync"', 'id="detect-drift"', 'id="test-cluster"', "Bearer token</th><td>set"):
            self.shows(page, text)
        self.lacks(page, support.ENV["FABRICSYNC_KUBE_TOKEN"])
        self.shows(page, f'{url("run_list")}?fabric_id={self.fabric.id}')

    def test_resources_tab_filters_and_server_side_pages(self):
        page = self.get(url("fabric_resources", pk=self.fabric.id) + "?kind=VPC")
        self.shows(page, "Showing 4 of 4")
        self.shows(page, PATCHED)
        self.assertNotIn("VPCAttachment", page.split("<tbody>")[1])
        page = self.get(url("fabric_resources", pk=self.fabric.id) + "?drift_status=drifted")
        self.shows(page, "Showing 1 of 1")
        bad = self.get(url("fabric_resources", pk=self.fabric.id) + "?kind=a%20b")
        self.assertIn("Letters, digits", bad)
        first = self.client.get(url("fabric_resources", pk=self.wiring.id))
        self.assertContains(first, "Showing 50 of 81")
        token = first.context["paging"]["next_query"]
        self.assertTrue(token)
        self.assertContains(self.client.get(url("fabric_resources", pk=self.wiring.id) + "?" + token), "Showing 31 of 81")

    def test_health_column_filter_and_header(self):
        # The watch tells health a few seconds after it saw the applied objects.
        healthy = lambda: sdk().fabrics.ListResources(fabric_pb2.ListResourcesRequest(fabric_id=self.fabric.id, filter="health=healthy"))
        listed = poll("healthy resources", healthy, lambda r: r.total_size > 0)
        page = self.get(url("fabric_resources", pk=self.fabric.id) + "?health=healthy")
        self.shows(page, f"Showing {listed.total_size} of {listed.total_size}")
        self.shows(page, '<td title="in the cluster"><span class="badge text-bg-green">healthy</span></td>')
        self.lacks(page.split("<tbody>")[1], "missing</span>")
        self.shows(self.get(url("fabric", pk=self.fabric.id)), "health <span class=\"badge")

    def test_resource_page_with_desired_and_live(self):
        response = self.client.get(url("resource", pk=self.fabric.id, key=self.vpc_key))
        self.assertEqual(response.status_code, 200)
        self.assertIn("vlan: 1131", response.context["desired"])
        self.assertIn("vlan: 1198", response.context["live"])
        page = response.content.decode()
        resource = response.context["resource"]
        self.assertTrue(resource.uid)
        for text in (resource.uid, "kubectl-patch", "applied", "demo.yaml"):
            self.shows(page, text)

    def test_drift_tab_field_and_diff(self):
        page = self.get(url("fabric_drift", pk=self.fabric.id))
        self.shows(page, PATCHED)
        self.shows(page, "/spec/subnets/subnet-1/vlan")
        self.shows(page, "kubectl-patch")
        self.shows(page, "1 differ")
        page = self.get(url("resource_drift", pk=self.fabric.id, key=self.vpc_key))
        for text in ("<code>/spec/subnets/subnet-1/vlan</code>", "<code>1131</code>", "<code>1198</code>", "kubectl-patch", "bg-red-lt", "bg-green-lt"):
            self.shows(page, text)


    def test_pull_button_run_page_and_live_stream_with_resume(self):
        response = self.client.post(url("fabric_sync", pk=self.fabric.id), {"mode": "pull"})
        self.assertEqual(response.status_code, 302)
        run_id = response.url.rstrip("/").split("/")[-1]
        stream = self.client.get(url("run_events", pk=run_id))
        self.assertEqual(stream["Content-Type"], "text/event-stream")
        body = b"".join(stream.streaming_content).decode()
        events = [block for block in body.split("\n\n") if block]
        self.assertTrue(events[0].startswith("id: "), events)
        self.assertIn('"stage": "finished"', events[-2])
        self.assertEqual(events[-1], "event: end\ndata: {}")
        ids = [int(e.split("\n")[0][4:]) for e in events if e.startswith("id: ")]
        # A reconnecting browser sends the last id it showed: only later events come.
        resumed = b"".join(self.client.get(url("run_events", pk=run_id), HTTP_LAST_EVENT_ID=str(ids[0])).streaming_content).decode()
        self.assertEqual([int(line[4:]) for line in resumed.split("\n") if line.startswith("id: ")], ids[1:])

        page = self.get(url("run", pk=run_id))
        self.shows(page, 'id="run-outcome">succeeded')
        self.shows(page, 'id="diagnostics"')
        self.assertIn(self.fabric.name, self.get(url("run_list") + f"?fabric_id={self.fabric.id}"))

    def test_plan_a_ref_shows_changes_and_diagnostics(self):
        branch = support.unique("plan")
        support.git("checkout", "-q", "-b", branch)
        try:
            with open(f"{support.GIT_DIR}/fabric/broken.yaml", "w") as f:
                f.write("apiVersion: vpc.githedgehog.com/v1beta1\nkind: VPC\nmetadata:\n  name: Not_A_Name\nspec: {}\n")
            support.git("add", ".")
            support.git("commit", "-q", "-m", "a broken VPC")
        finally:
            support.git("checkout", "-q", "main")
        response = self.client.get(url("fabric_plan", pk=self.fabric.id) + f"?ref={branch}")
        self.assertEqual(response.status_code, 200)
        plan = response.context["plan"]
        self.assertFalse(plan.valid)
        self.assertTrue(plan.diagnostics)
        page = response.content.decode()
        self.shows(page, "Not valid")
        self.shows(page, "fabric/broken.yaml")
        self.shows(page, plan.diagnostics[0].code)
        self.assertIn("Plan", self.get(url("fabric_plan", pk=self.fabric.id)))

    def test_cluster_events(self):
        page = self.get(url("fabric_events", pk=self.fabric.id) + "?kind=VPC")
        self.shows(page, "kubectl-patch")
        self.shows(page, '<span class="badge text-bg-blue">modified</span>')
        self.assertNotIn("VPCAttachment", page.split("<tbody>")[1])

    def test_repository_pages_and_connection_test(self):
        self.assertIn(self.repository.name, self.get(url("repository_list")))
        page = self.get(url("repository", pk=self.repository.id))
        self.shows(page, support.GIT_URL)
        self.shows(page, 'id="secret-state">not set')
        response = self.client.post(url("repository", pk=self.repository.id))
        self.assertContains(response, "Reachable")
        self.assertContains(response, "Default branch <strong>main</strong>")

    def test_cluster_connection_rbac_and_detect_drift(self):
        response = self.client.post(url("fabric_test_cluster", pk=self.fabric.id))
        self.assertContains(response, "Cluster reachable")
        self.assertContains(response, "vpc.githedgehog.com")
        rbac = self.client.get(url("fabric_rbac", pk=self.fabric.id))
        self.assertEqual(rbac.status_code, 200)
        self.assertIn("attachment", rbac["Content-Disposition"])
        self.assertIn("kind: ServiceAccount", rbac.content.decode())
        response = self.client.post(url("fabric_detect_drift", pk=self.fabric.id), follow=True)
        self.assertContains(response, "Drift detected")

    def test_device_panel(self):
        site = Site.objects.create(name="lab", slug="lab")
        maker = Manufacturer.objects.create(name="Celestica", slug="celestica")
        device_type = DeviceType.objects.create(manufacturer=maker, model="DS3000", slug="ds3000")
        role = DeviceRole.objects.create(name="leaf", slug="leaf")
        device = Device.objects.create(name=support.WIRING_SWITCH, site=site, device_type=device_type, role=role)
        page = self.get(device.get_absolute_url())
        self.shows(page, 'id="fabricsync-device"')
        self.shows(page, self.wiring.name)
        self.shows(page, support.WIRING_CONNECTION)
        other = Device.objects.create(name="not-in-any-fabric", site=site, device_type=device_type, role=role)
        self.assertNotIn('id="fabricsync-device"', self.get(other.get_absolute_url()))

    def test_remediate_dry_run_preview_then_remediate(self):
        key = self.vpc_key
        # Remediate: the dry-run preview changes nothing, then the real run puts Git's value back.
        response = self.client.post(url("fabric_remediate", pk=self.fabric.id), {"key": key, "dry_run": "1", "force": "on"})
        self.assertEqual(response.status_code, 302)
        run = sdk().wait_for_run(response.url.rstrip("/").split("/")[-1], timeout=120)
        self.assertTrue(run.dry_run)
        self.assertEqual(run.status, sync_pb2.SYNC_RUN_STATUS_SUCCEEDED, run)
        self.assertIn("1198", support.live_vlan("default"))
        # All drifted resources (no key chosen), previewed.
        response = self.client.post(url("fabric_remediate", pk=self.fabric.id), {"all": "1", "key": key, "dry_run": "1", "force": "on"})
        run = sdk().wait_for_run(response.url.rstrip("/").split("/")[-1], timeout=120)
        self.assertEqual((run.mode, run.dry_run, run.status), (sync_pb2.SYNC_MODE_APPLY, True, sync_pb2.SYNC_RUN_STATUS_SUCCEEDED))
        self.assertIn("1198", support.live_vlan("default"))
        response = self.client.post(url("fabric_remediate", pk=self.fabric.id), {"key": key, "force": "on"})
        run = sdk().wait_for_run(response.url.rstrip("/").split("/")[-1], timeout=120)
        self.assertEqual((run.dry_run, run.status), (False, sync_pb2.SYNC_RUN_STATUS_SUCCEEDED))
        self.assertIn("1131", support.live_vlan("default"))
        page = self.get(url("run", pk=run.id))
        self.shows(page, 'id="counters"')
        # The fixture's state for the other tests: the patch again, drift again.
        support.patch_vlan("default", 1198)
        poll("drifted again", lambda: sdk().drift.GetFabricDrift(drift_pb2.GetFabricDriftRequest(fabric_id=self.fabric.id)).summary, lambda s: s.drift_count == 1)

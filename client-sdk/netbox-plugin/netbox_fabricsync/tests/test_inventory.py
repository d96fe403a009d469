"""The Inventory tab and Sync to NetBox against the real fabricsync: nodes, pods and a KubeVirt
VM with its VMI made in the real kube-apiserver as a kubelet and KubeVirt would report them (no
kubelet runs), imported into the wiring fabric, whose Server server-0000-01 is one of the nodes. A second fabric
reads the same kube-apiserver twice: as its own cluster and as the extra inventory cluster
"edge", so that each object is there twice, once per cluster."""

import json
import os
import subprocess

from core.models import ObjectChange
from dcim.models import Device
from django.test import TestCase
from django.urls import reverse
from fabricsync.v1 import fabric_pb2, inventory_pb2, sync_pb2
from google.protobuf import field_mask_pb2
from virtualization.models import VirtualMachine

from netbox_fabricsync.models import Fabric
from netbox_fabricsync.tests import support
from netbox_fabricsync.tests.support import sdk
from netbox_fabricsync.tests.test_permissions import grant, user_with

NAMESPACE = "inventory-test"
NODE = "server-0000-01"  # a Server of the wiring fabric, linked to leaf-0000-a/E1/1 and leaf-0000-b/E1/1
SPARE = "worker-spare"  # a node that is no Server
PORT = "leaf-0000-a/E1/1"
BATCH = 55  # pods on SPARE, for more than one page
OBJECTS = 2 + 1 + BATCH + 1 + 2 + 1  # nodes, the namespace, pods, VMs, the VMI
EDGE = "edge"  # the second fabric's extra inventory cluster: the same kube-apiserver


def url(name, **kwargs):
    return reverse(f"plugins:netbox_fabricsync:{name}", kwargs=kwargs)


def node(name):
    support.kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}))
    status = {"status": {
        "capacity": {"cpu": "16", "memory": "65536Mi", "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
        "nodeInfo": {"kubeletVersion": "v1.31.2", "machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "", "osImage": "",
                     "containerRuntimeVersion": "", "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64"},
    }}
    support.kubectl("patch", "node", name, "--subresource=status", "--type=merge", "-p", json.dumps(status))


def pod(name, on):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NAMESPACE}, "spec": {
        "nodeName": on, "automountServiceAccountToken": False, "containers": [{"name": "app", "image": "quay.io/example/app:1"}],
    }}


def what_runs():
    """Two Ready nodes; web-1 and the running VM vm-cirros on NODE, BATCH pods on SPARE, and
    vm-idle, a VM without an instance."""
    node(NODE)
    node(SPARE)
    support.kubectl("create", "namespace", NAMESPACE)
    # Pods need the namespace's default ServiceAccount, which a controller makes.
    account = [support.ENV["FABRICSYNC_KUBECTL"], "get", "serviceaccount", "default", "-n", NAMESPACE]
    support.poll("default ServiceAccount", lambda: subprocess.run(account, capture_output=True).returncode, lambda code: code == 0)
    pods = [pod("web-1", NODE)] + [pod(f"batch-{i:02}", SPARE) for i in range(BATCH)]
    support.kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": pods}))
    support.kubectl("apply", "-f", os.path.join(support.KUBEVIRT, "kubevirt-crds-minimal.yaml"))
    support.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/virtualmachines.kubevirt.io", "crd/virtualmachineinstances.kubevirt.io")
    support.kubectl("apply", "-n", NAMESPACE, "-f", os.path.join(support.KUBEVIRT, "vm-cirros.yaml"))
    idle = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": {"name": "vm-idle", "namespace": NAMESPACE}, "spec": {"running": False}}
    vmi = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance", "metadata": {"name": "vm-cirros", "namespace": NAMESPACE, "labels": {"vm.kubevirt.io/name": "vm-cirros"}}, "spec": {}}
    support.kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": [idle, vmi]}))
    running = {"status": {"phase": "Running", "nodeName": NODE, "interfaces": [{"name": "default", "ipAddress": "10.244.1.7"}]}}
    support.kubectl("patch", "virtualmachineinstances.kubevirt.io", "vm-cirros", "-n", NAMESPACE, "--subresource=status", "--type=merge", "-p", json.dumps(running))


def wiring_fabric():
    """The wiring fabric pulled, its inventory kept to the test's namespace (the fixture's
    cluster holds other tests' objects too)."""
    fabric = support.create_fabric(support.create_repository(), path=support.WIRING)
    support.run_to_end(fabric.id, sync_pb2.SYNC_MODE_PULL)
    settings = fabric_pb2.InventorySettings(namespace_regex=f"^{NAMESPACE}$")
    sdk().fabrics.UpdateFabric(fabric_pb2.UpdateFabricRequest(
        fabric=fabric_pb2.Fabric(id=fabric.id, inventory=settings), update_mask=field_mask_pb2.FieldMask(paths=["inventory"]),
    ))
    return fabric


class InventoryTests(TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        support.add_wiring()
        cls.fabric = wiring_fabric()
        cls.multi = wiring_fabric()
        connection = support.cluster_input(namespace="")
        sdk().inventory.PutInventoryCluster(inventory_pb2.PutInventoryClusterRequest(fabric_id=cls.multi.id, name=EDGE, connection=connection))
        what_runs()
        support.import_inventory(cls.fabric.id)
        support.import_inventory(cls.multi.id)

    def setUp(self):
        self.client.force_login(support.superuser())

    def get(self, path, status=200):
        response = self.client.get(path)
        self.assertEqual(response.status_code, status, response.content[-3000:])
        return response

    def test_inventory_tab_with_pages_and_filters(self):
        tab = url("fabric_inventory", pk=self.fabric.id)
        first = self.get(tab)
        self.assertContains(first, f"Showing 50 of {OBJECTS}")
        for text in ('id="tab-inventory"', 'id="import-inventory"', 'id="netbox-sync"', 'id="switch-port-form"'):
            self.assertContains(first, text)
        self.assertContains(self.get(tab + "?" + first.context["paging"]["next_query"]), f"Showing {OBJECTS - 50} of {OBJECTS}")
        nodes = self.get(tab + "?kind=node")
        self.assertContains(nodes, "Showing 2 of 2")
        self.assertEqual([o.name for o in nodes.context["objects"]], [NODE, SPARE])
        on_node = self.get(tab + f"?node={NODE}")
        self.assertEqual(sorted((o.kind, o.name) for o in on_node.context["objects"]), [("pod", "web-1"), ("virtualmachineinstance", "vm-cirros")])
        vms = self.get(tab + f"?workload=vm&namespace={NAMESPACE}")
        self.assertContains(vms, "Showing 3 of 3")
        self.assertContains(vms, '<span class="badge text-bg-purple">vm</span>', count=3)
        self.assertContains(self.get(tab + "?kind=pod&workload=container"), f"Showing 50 of {BATCH + 1}")
        self.assertContains(self.get(tab + "?node=a%20b"), "Letters, digits")

    def test_import_button_and_the_run_page(self):
        response = self.client.post(url("fabric_inventory_import", pk=self.fabric.id), {"dry_run": "on"})
        self.assertEqual(response.status_code, 302)
        run_id = response.url.rstrip("/").split("/")[-1]
        body = b"".join(self.client.get(url("run_events", pk=run_id)).streaming_content).decode()
        self.assertIn('"stage": "inventory"', body)
        self.assertIn(f'"text": "Pod: {BATCH + 1} of {BATCH + 1} kept"', body)
        self.assertIn('"text": "VirtualMachine: 2 of 2 kept"', body)
        run = sdk().wait_for_run(run_id, timeout=120)
        self.assertTrue(run.dry_run)
        self.assertEqual((run.counters.created, run.counters.unchanged), (0, OBJECTS))
        page = self.get(url("run", pk=run_id))
        self.assertContains(page, 'id="run-outcome">succeeded')
        self.assertContains(page, "Inventory of")

    def test_the_cluster_column_the_clusters_and_the_filter(self):
        own = self.get(url("fabric_inventory", pk=self.fabric.id))
        self.assertNotContains(own, "<th>Cluster</th>")
        self.assertContains(own, "None: the fabric's own cluster only")
        self.assertNotIn("cluster", own.context["filter_form"].fields)

        tab = url("fabric_inventory", pk=self.multi.id)
        page = self.get(tab)
        self.assertContains(page, f"Showing 50 of {2 * OBJECTS}")
        self.assertContains(page, "<th>Cluster</th>")
        clusters = page.content.decode().split('id="inventory-clusters"')[1]
        self.assertIn(f'<a href="?cluster={EDGE}">{EDGE}</a>', clusters)
        self.assertIn(f"<code>{support.ENV['FABRICSYNC_KUBE_URL']}</code>", clusters)
        self.assertIn('<span class="badge text-bg-green">stored</span>', clusters)
        self.assertNotContains(page, support.ENV["FABRICSYNC_KUBE_TOKEN"])
        self.assertContains(page, "PutInventoryCluster")
        # The own cluster's objects come first, an em dash in the Cluster column.
        self.assertEqual({o.cluster for o in page.context["objects"]}, {""})
        self.assertContains(page, """<td><span class="text-secondary" title="the fabric's own cluster">&mdash;</span></td>""", count=50)

        nodes = self.get(tab + "?kind=node")
        self.assertEqual([(o.cluster, o.name) for o in nodes.context["objects"]], [("", NODE), ("", SPARE), (EDGE, NODE), (EDGE, SPARE)])
        self.assertContains(nodes, f"<td>{EDGE}</td>", count=2)
        detail = url("fabric_inventory_object", pk=self.multi.id)
        self.assertContains(nodes, f'href="{detail}?cluster={EDGE}&amp;kind=node&amp;name={NODE}"')
        self.assertContains(nodes, f'href="{detail}?kind=node&amp;name={NODE}"')

        edge = self.get(tab + f"?cluster={EDGE}")
        self.assertContains(edge, f"Showing 50 of {OBJECTS}")
        self.assertEqual({o.cluster for o in edge.context["objects"]}, {EDGE})
        self.assertEqual(edge.context["filter_form"].fields["cluster"].choices, [("", "Any"), (EDGE, EDGE)])
        self.assertRegex(edge.content.decode(), rf'<option value="{EDGE}"\s+selected\s*>{EDGE}</option>')
        on_node = self.get(tab + f"?cluster={EDGE}&node={NODE}")
        self.assertEqual(sorted((o.cluster, o.kind, o.name) for o in on_node.context["objects"]), [(EDGE, "pod", "web-1"), (EDGE, "virtualmachineinstance", "vm-cirros")])
        self.assertContains(on_node, f'href="{detail}?cluster={EDGE}&amp;kind=pod&amp;namespace={NAMESPACE}&amp;name=web-1"')
        self.assertContains(self.get(tab + "?cluster=nowhere"), "Select a valid choice")

    def test_an_object_of_each_cluster(self):
        detail = url("fabric_inventory_object", pk=self.multi.id)
        pod = self.get(detail + f"?cluster={EDGE}&kind=pod&namespace={NAMESPACE}&name=web-1")
        self.assertEqual((pod.context["object"].cluster, pod.context["object"].node), (EDGE, NODE))
        self.assertContains(pod, f'<td id="object-cluster">{EDGE}</td>')
        self.assertContains(pod, f'href="{detail}?cluster={EDGE}&amp;kind=node&amp;name={NODE}"')
        server = pod.context["server"]
        self.assertEqual((server.server, [(n.cluster, n.name) for n in server.node_refs]), (NODE, [("", NODE), (EDGE, NODE)]))
        self.assertEqual(sorted((w.cluster, w.name) for w in server.workloads), [("", "vm-cirros"), ("", "web-1"), (EDGE, "vm-cirros"), (EDGE, "web-1")])
        own = self.get(detail + f"?kind=node&name={NODE}")
        self.assertEqual(own.context["object"].cluster, "")
        self.assertContains(own, '<td id="object-cluster"><span class="text-secondary" title="the fabric\'s own cluster">&mdash;</span></td>')
        self.assertContains(own, url("fabric_server_inventory", pk=self.multi.id, server=NODE))
        spare = self.get(detail + f"?cluster={EDGE}&kind=node&name={SPARE}")
        self.assertContains(spare, 'id="no-server"')
        self.assertContains(self.get(detail + f"?cluster=nowhere&kind=node&name={NODE}", status=404), 'id="fabricsync-error"', status_code=404)

        on_server = self.get(url("fabric_server_inventory", pk=self.multi.id, server=NODE))
        self.assertContains(on_server, f'<td>{EDGE}</td><td><a href="{detail}?cluster={EDGE}&amp;kind=node&amp;name={NODE}">{NODE}</a></td>')
        self.assertContains(on_server, f'href="{detail}?cluster={EDGE}&amp;kind=virtualmachineinstance&amp;namespace={NAMESPACE}&amp;name=vm-cirros"')

    def test_behind_a_switch_port_in_two_clusters(self):
        page = self.get(url("fabric_switch_port", pk=self.multi.id) + f"?switch_port={PORT}")
        [server] = page.context["servers"]
        self.assertEqual([(n.cluster, n.name) for n in server.node_refs], [("", NODE), (EDGE, NODE)])
        self.assertEqual(sorted((w.cluster, w.kind, w.name) for w in server.workloads), [
            ("", "pod", "web-1"), ("", "virtualmachineinstance", "vm-cirros"), (EDGE, "pod", "web-1"), (EDGE, "virtualmachineinstance", "vm-cirros"),
        ])
        self.assertContains(page, f"{NODE}</a> ({EDGE})")
        self.assertContains(page, f"<td>{EDGE}</td>", count=3)  # its node, its pod, its VM

    def test_sync_to_netbox_of_two_clusters(self):
        # Each node is in both clusters: no Device. Each VM is in both: one per NetBox Cluster.
        edge_cluster = f"{self.multi.name} / {EDGE}"
        page = url("fabric_netbox_sync", pk=self.multi.id)
        preview = self.get(page)
        self.assertEqual([(i.model, i.name, i.cluster, i.action) for i in preview.context["items"]], [
            ("device", NODE, "", "skip"), ("device", NODE, EDGE, "skip"), ("device", SPARE, "", "skip"), ("device", SPARE, EDGE, "skip"),
            ("virtual machine", "vm-cirros", "", "create"), ("virtual machine", "vm-idle", "", "create"),
            ("virtual machine", "vm-cirros", EDGE, "create"), ("virtual machine", "vm-idle", EDGE, "create"),
        ])
        reason = f"node {NODE} is in the clusters &#x27;&#x27; (the fabric&#x27;s own) and &#x27;{EDGE}&#x27;"
        self.assertContains(preview, reason, count=2)
        self.assertEqual([i.fields["cluster"] for i in preview.context["items"][4:]], [self.multi.name] * 2 + [edge_cluster] * 2)
        log = self.client.post(page, {"fingerprint": preview.context["fingerprint"]})
        self.assertEqual([(i.name, i.cluster, i.action) for i in log.context["items"]], [
            (NODE, "", "skipped"), (NODE, EDGE, "skipped"), (SPARE, "", "skipped"), (SPARE, EDGE, "skipped"),
            ("vm-cirros", "", "created"), ("vm-idle", "", "created"), ("vm-cirros", EDGE, "created"), ("vm-idle", EDGE, "created"),
        ])
        self.assertFalse(Device.objects.filter(site__name=self.multi.name).exists(), "a skipped node is never applied")
        vms = VirtualMachine.objects.filter(site__name=self.multi.name)
        self.assertEqual(sorted((vm.cluster.name, vm.name, vm.status) for vm in vms), [
            (self.multi.name, "vm-cirros", "active"), (self.multi.name, "vm-idle", "offline"), (edge_cluster, "vm-cirros", "active"), (edge_cluster, "vm-idle", "offline"),
        ])
        self.assertEqual({vm.device for vm in vms}, {None})
        self.assertEqual({vm.cluster.type.name for vm in vms}, {"KubeVirt"})
        # Again: nothing changes, the nodes are skipped again.
        _, again = self.sync_of(self.multi, {(i.model, i.name, i.cluster): "skip" if i.model == "device" else "unchanged" for i in preview.context["items"]})
        self.assertEqual({i.action for i in again.context["items"]}, {"skipped", "unchanged"})
        self.assertEqual(VirtualMachine.objects.filter(site__name=self.multi.name).count(), 4)

    def sync_of(self, fabric, expected):
        """The dry run, then its confirm; both as {(model, name, cluster): action}."""
        preview = self.get(url("fabric_netbox_sync", pk=fabric.id))
        self.assertEqual({(i.model, i.name, i.cluster): i.action for i in preview.context["items"]}, expected)
        log = self.client.post(url("fabric_netbox_sync", pk=fabric.id), {"fingerprint": preview.context["fingerprint"]})
        self.assertEqual(log.status_code, 200, log.content[-3000:])
        return preview, log

    def test_behind_a_switch_port(self):
        page = self.get(url("fabric_switch_port", pk=self.fabric.id) + f"?switch_port={PORT}")
        [server] = page.context["servers"]
        self.assertEqual((server.server, [(n.cluster, n.name) for n in server.node_refs]), (NODE, [("", NODE)]))
        for text in ("<code>leaf-0000-b/E1/1</code>", "<code>enp2s1</code>", "web-1", "vm-cirros", '<span class="badge text-bg-purple">vm</span>', '<span class="badge text-bg-blue">container</span>'):
            self.assertContains(page, text)
        self.assertContains(self.get(url("fabric_switch_port", pk=self.fabric.id) + "?switch_port=leaf-0000-a/E1/48"), 'id="no-servers"')
        bad = self.get(url("fabric_switch_port", pk=self.fabric.id) + "?switch_port=no-port", status=400)
        self.assertContains(bad, 'id="fabricsync-error"', status_code=400)
        self.assertContains(bad, 'value="no-port"', status_code=400)

    def sync(self, expected, status=200):
        """The dry run, then its confirm; both as {(model, name): action}."""
        preview = self.get(url("fabric_netbox_sync", pk=self.fabric.id))
        self.assertEqual({(i.model, i.name): i.action for i in preview.context["items"]}, expected)
        log = self.client.post(url("fabric_netbox_sync", pk=self.fabric.id), {"fingerprint": preview.context["fingerprint"]})
        self.assertEqual(log.status_code, status, log.content[-3000:])
        return preview, log

    def test_sync_to_netbox_dry_run_confirm_and_again(self):
        planned = {("device", NODE): "create", ("device", SPARE): "create", ("virtual machine", "vm-cirros"): "create", ("virtual machine", "vm-idle"): "create"}
        preview = self.get(url("fabric_netbox_sync", pk=self.fabric.id))
        self.assertEqual({(i.model, i.name): i.action for i in preview.context["items"]}, planned)
        items = {i.name: i for i in preview.context["items"]}
        self.assertEqual((items["vm-cirros"].fields["device"], items["vm-cirros"].fields["status"]), (NODE, "active"))
        self.assertEqual((items["vm-idle"].fields["device"], items["vm-idle"].fields["status"]), ("", "offline"))
        self.assertContains(preview, 'id="netbox-apply"')
        self.assertFalse(Device.objects.filter(name__in=[NODE, SPARE]).exists(), "a dry run creates nothing")
        self.assertFalse(VirtualMachine.objects.filter(name="vm-cirros").exists())

        log = self.client.post(url("fabric_netbox_sync", pk=self.fabric.id), {"fingerprint": preview.context["fingerprint"]})
        self.assertEqual({i.name: i.action for i in log.context["items"]}, {NODE: "created", SPARE: "created", "vm-cirros": "created", "vm-idle": "created"})
        device = Device.objects.get(name=NODE)
        self.assertEqual(
            (device.site.name, device.role.name, device.device_type.full_name, device.cluster.name, device.cluster.type.name, device.status),
            (self.fabric.name, "Kubernetes node", "Kubernetes Node", self.fabric.name, "KubeVirt", "active"),
        )
        vm = VirtualMachine.objects.get(name="vm-cirros")
        self.assertEqual((vm.device, vm.cluster, vm.site, vm.status), (device, device.cluster, device.site, "active"))
        idle = VirtualMachine.objects.get(name="vm-idle")
        self.assertEqual((idle.device, idle.status), (None, "offline"))
        self.assertContains(log, device.get_absolute_url())
        self.assertTrue(ObjectChange.objects.filter(changed_object_id=device.pk, user_name="admin").exists(), "in NetBox's change log")

        # Again: nothing changes. After an edit in NetBox the plan updates that field back, and
        # a confirm of an older preview is shown again instead of applied.
        unchanged = {key: "unchanged" for key in planned}
        _, again = self.sync(unchanged)
        self.assertEqual({i.action for i in again.context["items"]}, {"unchanged"})
        stale = self.get(url("fabric_netbox_sync", pk=self.fabric.id)).context["fingerprint"]
        Device.objects.filter(name=SPARE).update(status="planned")
        refused = self.client.post(url("fabric_netbox_sync", pk=self.fabric.id), {"fingerprint": stale})
        self.assertContains(refused, "changed since the preview", status_code=409)
        self.assertEqual(Device.objects.get(name=SPARE).status, "planned")
        preview, log = self.sync(unchanged | {("device", SPARE): "update"})
        self.assertEqual(next(i for i in preview.context["items"] if i.name == SPARE).changes, {"status": ("planned", "active")})
        self.assertContains(preview, "<code>status</code> planned &rarr; active")
        self.assertEqual(Device.objects.get(name=SPARE).status, "active")
        self.sync(unchanged)

    def test_sync_to_netbox_needs_the_sync_and_netbox_permissions(self):
        page = url("fabric_netbox_sync", pk=self.fabric.id)
        self.client.force_login(user_with("inventory-viewer", Fabric, ["view"]))
        tab = self.get(url("fabric_inventory", pk=self.fabric.id))
        self.assertNotContains(tab, 'id="import-inventory"')
        self.assertEqual(self.client.post(url("fabric_inventory_import", pk=self.fabric.id)).status_code, 403)
        preview = self.get(page)
        self.assertContains(preview, 'id="sync-not-allowed"')
        self.assertNotContains(preview, 'id="netbox-apply"')
        refused = self.client.post(page, {"fingerprint": preview.context["fingerprint"]})
        self.assertContains(refused, 'id="fabricsync-error"', status_code=403)
        self.assertContains(refused, "netbox_fabricsync.sync_fabric", status_code=403)

        operator = user_with("inventory-operator", Fabric, ["view", "sync"])
        self.client.force_login(operator)
        refused = self.client.post(page, {"fingerprint": preview.context["fingerprint"]})
        self.assertContains(refused, "dcim.add_device, dcim.change_device, virtualization.add_virtualmachine", status_code=403)
        self.assertNotContains(refused, "sync_fabric", status_code=403)
        self.assertFalse(Device.objects.filter(name=NODE).exists())

        # Permissions with constraints bound each object, as in NetBox's own edit views: what
        # they exclude fails alone, with the reason, and so does the VM on a Device not made.
        grant(operator, Device, ["add", "change"], constraints={"name": SPARE})
        grant(operator, VirtualMachine, ["add", "change"])
        self.assertNotContains(self.get(page), 'id="sync-not-allowed"')
        planned = {("device", NODE): "create", ("device", SPARE): "create", ("virtual machine", "vm-cirros"): "create", ("virtual machine", "vm-idle"): "create"}
        _, log = self.sync(planned)
        log = {i.name: i for i in log.context["items"]}
        self.assertEqual({name: i.action for name, i in log.items()}, {NODE: "failed", SPARE: "created", "vm-cirros": "failed", "vm-idle": "created"})
        self.assertEqual(log[NODE].reason, "the constraints of your NetBox permission to add it exclude it")
        self.assertIn(f"its node's Device {NODE} is not in NetBox", log["vm-cirros"].reason)
        self.assertFalse(Device.objects.filter(name=NODE).exists())
        grant(operator, Device, ["add", "change"])
        self.sync(planned | {("device", SPARE): "unchanged", ("virtual machine", "vm-idle"): "unchanged"})
        self.assertEqual(VirtualMachine.objects.get(name="vm-cirros").device, Device.objects.get(name=NODE))

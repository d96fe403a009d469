"""Sync to NetBox's plan, without NetBox: what is created, updated or unchanged, where a VM
runs, the names a NetBox cluster cannot hold twice, and objects of several clusters (a NetBox
Cluster each; a node name in two of them skipped)."""

from django.test import SimpleTestCase
from fabricsync.v1 import inventory_pb2
from google.protobuf import struct_pb2

from netbox_fabricsync import netbox_sync
from netbox_fabricsync.netbox_sync import Existing, Placement

PLACE = Placement(site="fab", role="Kubernetes node", device_type="Kubernetes Node", cluster="fab")
DEVICE = {"site": "fab", "role": "Kubernetes node", "device_type": "Kubernetes Node", "cluster": "fab", "status": "active"}


def obj(kind, name, namespace="", node="", vm="", **facts):
    struct = struct_pb2.Struct()
    struct.update(facts)
    return inventory_pb2.InventoryObject(kind=kind, namespace=namespace, name=name, node=node, vm=vm, facts=struct)


class PlanTests(SimpleTestCase):
    def test_devices_created_updated_and_unchanged(self):
        nodes = [obj("node", "n3", ready=False), obj("node", "n1", ready=True), obj("node", "n2", ready=True)]
        existing = {"n1": Existing(DEVICE, "/dcim/devices/1/"), "n3": Existing(DEVICE | {"role": "server"})}
        items = netbox_sync.plan(PLACE, nodes, [], [], existing, {})
        self.assertEqual([(i.name, i.action) for i in items], [("n1", "unchanged"), ("n2", "create"), ("n3", "update")])
        self.assertEqual(items[0].url, "/dcim/devices/1/")
        self.assertEqual(items[1].fields, DEVICE)
        self.assertEqual(items[2].changes, {"role": ("server", "Kubernetes node"), "status": ("active", "offline")})
        self.assertEqual(netbox_sync.counts(items), [("create", 1), ("update", 1), ("unchanged", 1)])

    def test_a_vm_is_on_its_node_while_its_instance_runs_there(self):
        nodes = [obj("node", "n1", ready=True)]
        vms = [obj("virtualmachine", "on-n1", "a"), obj("virtualmachine", "elsewhere", "a"), obj("virtualmachine", "stopped", "a")]
        vmis = [
            obj("virtualmachineinstance", "on-n1", "a", node="n1", vm="on-n1", phase="Running"),
            obj("virtualmachineinstance", "elsewhere", "a", node="not-imported", vm="elsewhere", phase="Running"),
            obj("virtualmachineinstance", "stopped", "b", node="n1", vm="stopped", phase="Running"),  # another namespace's
        ]
        items = {i.name: i for i in netbox_sync.plan(PLACE, nodes, vms, vmis, {}, {})}
        self.assertEqual(items["on-n1"].fields, {"site": "fab", "cluster": "fab", "device": "n1", "status": "active"})
        self.assertEqual((items["on-n1"].model, items["on-n1"].source), ("virtual machine", "a/on-n1"))
        self.assertEqual((items["elsewhere"].fields["device"], items["elsewhere"].fields["status"]), ("", "active"))
        self.assertEqual((items["stopped"].fields["device"], items["stopped"].fields["status"]), ("", "offline"))

    def test_vms_of_one_name_in_two_namespaces_fail(self):
        vms = [obj("virtualmachine", "db", "b"), obj("virtualmachine", "db", "a"), obj("virtualmachine", "web", "a")]
        items = netbox_sync.plan(PLACE, [], vms, [], {}, {("fab", "web"): Existing({"site": "fab", "cluster": "fab", "device": "", "status": "offline"})})
        self.assertEqual([(i.source, i.action) for i in items], [("a/db", "failed"), ("b/db", "failed"), ("a/web", "unchanged")])
        self.assertIn("namespaces a, b", items[0].reason)

    def test_the_fingerprint_follows_the_plan(self):
        nodes = [obj("node", "n1", ready=True)]
        first = netbox_sync.plan(PLACE, nodes, [], [], {}, {})
        self.assertEqual(netbox_sync.fingerprint(first), netbox_sync.fingerprint(netbox_sync.plan(PLACE, nodes, [], [], {}, {})))
        done = netbox_sync.plan(PLACE, nodes, [], [], {"n1": Existing(DEVICE)}, {})
        self.assertNotEqual(netbox_sync.fingerprint(first), netbox_sync.fingerprint(done))


def edge(kind, name, namespace="", node="", vm="", **facts):
    """An object of the extra inventory cluster "edge"."""
    o = obj(kind, name, namespace, node, vm, **facts)
    o.cluster = "edge"
    return o


def netbox_after(items):
    """What NetBox holds once the plan is applied: its Devices by name, its VMs by (Cluster, name)."""
    devices = {i.name: Existing(i.fields) for i in items if i.model == "device" and i.action in ("create", "update", "unchanged")}
    vms = {(i.fields["cluster"], i.name): Existing(i.fields) for i in items if i.model == "virtual machine" and i.action in ("create", "update", "unchanged")}
    return devices, vms


class ClusterTests(SimpleTestCase):
    """Objects of the fabric's own cluster ("") and of an extra inventory cluster ("edge")."""

    def test_each_cluster_is_a_netbox_cluster(self):
        self.assertEqual((PLACE.cluster_of(""), PLACE.cluster_of("edge")), ("fab", "fab / edge"))
        nodes = [obj("node", "n1", ready=True), edge("node", "e1", ready=True)]
        vms = [obj("virtualmachine", "web", "a"), edge("virtualmachine", "db", "a")]
        vmis = [
            obj("virtualmachineinstance", "web", "a", node="n1", vm="web", phase="Running"),
            edge("virtualmachineinstance", "db", "a", node="e1", vm="db", phase="Running"),
        ]
        items = {(i.model, i.name): i for i in netbox_sync.plan(PLACE, nodes, vms, vmis, {}, {})}
        self.assertEqual(items[("device", "n1")].fields, DEVICE)
        self.assertEqual(items[("device", "e1")].fields, DEVICE | {"cluster": "fab / edge"})
        self.assertEqual(items[("virtual machine", "web")].fields, {"site": "fab", "cluster": "fab", "device": "n1", "status": "active"})
        self.assertEqual(items[("virtual machine", "db")].fields, {"site": "fab", "cluster": "fab / edge", "device": "e1", "status": "active"})
        self.assertEqual({i.action for i in items.values()}, {"create"})
        self.assertEqual({k: i.cluster for k, i in items.items()}, {("device", "n1"): "", ("device", "e1"): "edge", ("virtual machine", "web"): "", ("virtual machine", "db"): "edge"})
        self.assertEqual(netbox_sync.netbox_clusters(PLACE, vms), ["fab", "fab / edge"])

    def test_a_vm_is_not_on_a_node_of_another_cluster(self):
        # The VMI in edge runs on a node named n1, but n1 is a node of the own cluster only.
        nodes = [obj("node", "n1", ready=True)]
        vms = [edge("virtualmachine", "db", "a")]
        vmis = [edge("virtualmachineinstance", "db", "a", node="n1", vm="db", phase="Running")]
        [_, vm] = netbox_sync.plan(PLACE, nodes, vms, vmis, {}, {})
        self.assertEqual((vm.fields["device"], vm.fields["status"]), ("", "active"))

    def test_a_node_name_in_two_clusters_is_skipped(self):
        nodes = [edge("node", "server-2", ready=True), obj("node", "server-2", ready=False), obj("node", "n1", ready=True)]
        vms = [obj("virtualmachine", "vm-1", "a")]
        vmis = [obj("virtualmachineinstance", "vm-1", "a", node="server-2", vm="vm-1", phase="Running")]
        # NetBox holds a Device server-2 from a sync before "edge" was added: it is left alone.
        existing = {"server-2": Existing(DEVICE | {"status": "planned"}, "/dcim/devices/2/")}
        items = netbox_sync.plan(PLACE, nodes, vms, vmis, existing, {})
        self.assertEqual([(i.model, i.name, i.cluster, i.action) for i in items], [
            ("device", "n1", "", "create"), ("device", "server-2", "", "skip"), ("device", "server-2", "edge", "skip"), ("virtual machine", "vm-1", "", "create"),
        ])
        self.assertEqual(items[1].reason, "node server-2 is in the clusters '' (the fabric's own) and 'edge': a Device is one per name in the Site, so it is skipped")
        self.assertEqual((items[1].fields, items[1].changes), ({}, {}))
        self.assertEqual(items[3].fields["device"], "", "a VM is not placed on a skipped node's Device")
        self.assertEqual(netbox_sync.counts(items), [("create", 2), ("skip", 2)])
        # The same, listed in another order: the same plan (no flip-flop).
        again = netbox_sync.plan(PLACE, list(reversed(nodes)), vms, vmis, existing, {})
        self.assertEqual(netbox_sync.fingerprint(items), netbox_sync.fingerprint(again))

    def test_vms_of_one_name_in_two_clusters_are_two_vms(self):
        vms = [edge("virtualmachine", "db", "a"), obj("virtualmachine", "db", "a")]
        own = {"site": "fab", "cluster": "fab", "device": "", "status": "offline"}
        items = netbox_sync.plan(PLACE, [], vms, [], {}, {("fab", "db"): Existing(own, "/virtualization/virtual-machines/1/")})
        self.assertEqual([(i.name, i.cluster, i.fields["cluster"], i.action) for i in items], [("db", "", "fab", "unchanged"), ("db", "edge", "fab / edge", "create")])
        self.assertEqual(items[0].url, "/virtualization/virtual-machines/1/")

    def test_a_second_sync_changes_nothing(self):
        nodes = [obj("node", "n1", ready=True), edge("node", "n1", ready=True), edge("node", "e1", ready=False)]
        vms = [obj("virtualmachine", "db", "a"), edge("virtualmachine", "db", "a"), edge("virtualmachine", "web", "b")]
        vmis = [edge("virtualmachineinstance", "web", "b", node="e1", vm="web", phase="Running")]
        first = netbox_sync.plan(PLACE, nodes, vms, vmis, {}, {})
        self.assertEqual([(i.name, i.cluster, i.action) for i in first], [
            ("e1", "edge", "create"), ("n1", "", "skip"), ("n1", "edge", "skip"), ("db", "", "create"), ("db", "edge", "create"), ("web", "edge", "create"),
        ])
        second = netbox_sync.plan(PLACE, nodes, vms, vmis, *netbox_after(first))
        self.assertEqual([(i.name, i.cluster, i.action) for i in second], [
            ("e1", "edge", "unchanged"), ("n1", "", "skip"), ("n1", "edge", "skip"), ("db", "", "unchanged"), ("db", "edge", "unchanged"), ("web", "edge", "unchanged"),
        ])
        self.assertEqual(next(i for i in second if i.name == "web").fields["device"], "e1")
        self.assertEqual(netbox_sync.fingerprint(second), netbox_sync.fingerprint(netbox_sync.plan(PLACE, nodes, vms, vmis, *netbox_after(second))))

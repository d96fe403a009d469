"""Sync to NetBox's plan, without NetBox: what is created, updated or unchanged, where a VM
runs, and the names a NetBox cluster cannot hold twice."""

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
        items = netbox_sync.plan(PLACE, [], vms, [], {}, {"web": Existing({"site": "fab", "cluster": "fab", "device": "", "status": "offline"})})
        self.assertEqual([(i.source, i.action) for i in items], [("a/db", "failed"), ("b/db", "failed"), ("a/web", "unchanged")])
        self.assertIn("namespaces a, b", items[0].reason)

    def test_the_fingerprint_follows_the_plan(self):
        nodes = [obj("node", "n1", ready=True)]
        first = netbox_sync.plan(PLACE, nodes, [], [], {}, {})
        self.assertEqual(netbox_sync.fingerprint(first), netbox_sync.fingerprint(netbox_sync.plan(PLACE, nodes, [], [], {}, {})))
        done = netbox_sync.plan(PLACE, nodes, [], [], {"n1": Existing(DEVICE)}, {})
        self.assertNotEqual(netbox_sync.fingerprint(first), netbox_sync.fingerprint(done))

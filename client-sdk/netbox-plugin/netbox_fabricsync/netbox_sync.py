"""Sync to NetBox as plain data (no Django here): a dcim Device per imported node and a
virtualization VirtualMachine per KubeVirt VirtualMachine, compared field by field with what
NetBox holds. Related objects are compared by name, not database id, because a dry run has to
name a Site or Cluster that does not exist yet."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from typing import Iterable

from fabricsync.v1 import inventory_pb2

from .present import struct_dict

DEVICE, VIRTUAL_MACHINE = "device", "virtual machine"
CREATE, UPDATE, UNCHANGED, FAILED = "create", "update", "unchanged", "failed"
# What the log says once a planned action has been applied.
DONE = {CREATE: "created", UPDATE: "updated", UNCHANGED: "unchanged", FAILED: "failed"}


@dataclasses.dataclass(frozen=True)
class Placement:
    """The names of the related objects: the Site, DeviceRole, DeviceType (its full name) and
    Cluster."""

    site: str
    role: str
    device_type: str
    cluster: str


@dataclasses.dataclass(frozen=True)
class Existing:
    """A NetBox object as the plan sees it: the fields the sync sets, and its page."""

    fields: dict[str, str]
    url: str = ""


@dataclasses.dataclass(frozen=True)
class Item:
    """One object of the plan (action: create, update, unchanged, failed), or of the log once
    applied (created, updated, unchanged, failed)."""

    model: str
    name: str
    source: str  # the inventory object it comes from
    action: str
    fields: dict[str, str]  # what the sync sets
    changes: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)  # field: (NetBox's, the sync's)
    reason: str = ""
    url: str = ""


def plan(
    placement: Placement,
    nodes: Iterable[inventory_pb2.InventoryObject],
    vms: Iterable[inventory_pb2.InventoryObject],
    vmis: Iterable[inventory_pb2.InventoryObject],
    devices: dict[str, Existing],
    virtual_machines: dict[str, Existing],
) -> list[Item]:
    """The Devices first (a VM names its node's Device), each kind by name."""
    nodes = sorted(nodes, key=lambda n: n.name)
    known = {n.name for n in nodes}
    items = [_compare(DEVICE, n.name, f"node {n.name}", _device(n, placement), devices.get(n.name)) for n in nodes]
    instances = {(i.namespace, i.vm or i.name): i for i in vmis}
    by_name: dict[str, list[inventory_pb2.InventoryObject]] = {}
    for vm in vms:
        by_name.setdefault(vm.name, []).append(vm)
    for name, same in sorted(by_name.items()):
        if len(same) > 1:
            # A NetBox cluster holds one VM of a name; guessing which one would flip between syncs.
            namespaces = ", ".join(sorted(v.namespace for v in same))
            reason = f"VMs named {name} in the namespaces {namespaces}: a NetBox cluster holds only one"
            items += [Item(VIRTUAL_MACHINE, name, f"{v.namespace}/{name}", FAILED, {}, reason=reason) for v in sorted(same, key=lambda v: v.namespace)]
            continue
        vm = same[0]
        fields = _virtual_machine(instances.get((vm.namespace, name)), known, placement)
        items.append(_compare(VIRTUAL_MACHINE, name, f"{vm.namespace}/{name}", fields, virtual_machines.get(name)))
    return items


def _device(node: inventory_pb2.InventoryObject, placement: Placement) -> dict[str, str]:
    return {
        "site": placement.site, "role": placement.role, "device_type": placement.device_type, "cluster": placement.cluster,
        "status": "active" if struct_dict(node.facts).get("ready") is True else "offline",
    }


def _virtual_machine(vmi: inventory_pb2.InventoryObject | None, known: set[str], placement: Placement) -> dict[str, str]:
    """On its node's Device while its VMI runs on a node the sync makes a Device of."""
    running = vmi is not None and struct_dict(vmi.facts).get("phase") == "Running"
    return {
        "site": placement.site, "cluster": placement.cluster,
        "device": vmi.node if vmi is not None and vmi.node in known else "",
        "status": "active" if running else "offline",
    }


def _compare(model: str, name: str, source: str, fields: dict[str, str], existing: Existing | None) -> Item:
    if existing is None:
        return Item(model, name, source, CREATE, fields)
    changes = {f: (existing.fields.get(f, ""), v) for f, v in fields.items() if existing.fields.get(f, "") != v}
    return Item(model, name, source, UPDATE if changes else UNCHANGED, fields, changes, url=existing.url)


def fingerprint(items: Iterable[Item]) -> str:
    """A digest of a plan, so that the confirm applies the plan its preview showed and no other."""
    data = [(i.model, i.name, i.source, i.action, i.fields, sorted(i.changes.items()), i.reason) for i in items]
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:32]


def counts(items: Iterable[Item]) -> list[tuple[str, int]]:
    """(action, how many) in the order of the actions, those that occur."""
    found = Counter(i.action for i in items)
    order = [*DONE, *DONE.values()]
    return sorted(found.items(), key=lambda a: order.index(a[0]))

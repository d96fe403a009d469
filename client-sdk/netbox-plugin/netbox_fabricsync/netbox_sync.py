"""Sync to NetBox as plain data (no Django here): a dcim Device per imported node and a
virtualization VirtualMachine per KubeVirt VirtualMachine, compared field by field with what
NetBox holds. Related objects are compared by name, not database id, because a dry run has to
name a Site or Cluster that does not exist yet.

The objects come from the fabric's own cluster (`cluster` empty) and from its extra inventory
clusters. Each of those is a NetBox Cluster (Placement.cluster_of); Devices are one per node
name in the fabric's Site, so a node name found in two clusters is skipped, not merged."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from typing import Callable, Iterable, TypeVar

from fabricsync.v1 import inventory_pb2

from .present import struct_dict

K = TypeVar("K")

DEVICE, VIRTUAL_MACHINE = "device", "virtual machine"
CREATE, UPDATE, UNCHANGED, SKIP, FAILED = "create", "update", "unchanged", "skip", "failed"
# What the log says once a planned action has been applied.
DONE = {CREATE: "created", UPDATE: "updated", UNCHANGED: "unchanged", SKIP: "skipped", FAILED: "failed"}


@dataclasses.dataclass(frozen=True)
class Placement:
    """The names of the related objects: the Site, DeviceRole, DeviceType (its full name) and
    Cluster."""

    site: str
    role: str
    device_type: str
    cluster: str  # the NetBox Cluster of the fabric's own cluster

    def cluster_of(self, inventory_cluster: str) -> str:
        """The NetBox Cluster of an inventory cluster: the fabric's own is `cluster` (the
        fabric's name), an extra one "<fabric> / <its name>"."""
        return f"{self.cluster} / {inventory_cluster}" if inventory_cluster else self.cluster


@dataclasses.dataclass(frozen=True)
class Existing:
    """A NetBox object as the plan sees it: the fields the sync sets, and its page."""

    fields: dict[str, str]
    url: str = ""


@dataclasses.dataclass(frozen=True)
class Item:
    """One object of the plan (action: create, update, unchanged, skip, failed), or of the log
    once applied (created, updated, unchanged, skipped, failed)."""

    model: str
    name: str
    source: str  # the inventory object it comes from
    action: str
    fields: dict[str, str]  # what the sync sets
    changes: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)  # field: (NetBox's, the sync's)
    reason: str = ""
    url: str = ""
    cluster: str = ""  # the inventory cluster of `source`: empty for the fabric's own


def plan(
    placement: Placement,
    nodes: Iterable[inventory_pb2.InventoryObject],
    vms: Iterable[inventory_pb2.InventoryObject],
    vmis: Iterable[inventory_pb2.InventoryObject],
    devices: dict[str, Existing],
    virtual_machines: dict[tuple[str, str], Existing],
) -> list[Item]:
    """The Devices first (a VM names its node's Device), by name; then the VMs by cluster and
    name. `devices` are NetBox's by name, `virtual_machines` by (NetBox Cluster, name)."""
    items: list[Item] = []
    placed: set[tuple[str, str]] = set()  # (cluster, node) of the nodes that are a Device
    for name, same in sorted(_group(nodes, lambda n: n.name).items()):
        if len(same) > 1:
            # One Device per name in the fabric's Site: taking either would flip between syncs.
            clusters = sorted(n.cluster for n in same)
            reason = f"node {name} is in the clusters {_and(_quoted(c) for c in clusters)}: a Device is one per name in the Site, so it is skipped"
            items += [Item(DEVICE, name, f"node {name}", SKIP, {}, reason=reason, cluster=c) for c in clusters]
            continue
        node = same[0]
        placed.add((node.cluster, name))
        items.append(_compare(DEVICE, name, f"node {name}", _device(node, placement), devices.get(name), node.cluster))
    instances = {(i.cluster, i.namespace, i.vm or i.name): i for i in vmis}
    for (cluster, name), same in sorted(_group(vms, lambda v: (v.cluster, v.name)).items()):
        if len(same) > 1:
            # A NetBox cluster holds one VM of a name; guessing which one would flip between syncs.
            namespaces = ", ".join(sorted(v.namespace for v in same))
            reason = f"VMs named {name} in the namespaces {namespaces}: a NetBox cluster holds only one"
            items += [Item(VIRTUAL_MACHINE, name, f"{v.namespace}/{name}", FAILED, {}, reason=reason, cluster=cluster) for v in sorted(same, key=lambda v: v.namespace)]
            continue
        vm = same[0]
        fields = _virtual_machine(cluster, instances.get((cluster, vm.namespace, name)), placed, placement)
        items.append(_compare(VIRTUAL_MACHINE, name, f"{vm.namespace}/{name}", fields, virtual_machines.get((fields["cluster"], name)), cluster))
    return items


def netbox_clusters(placement: Placement, objects: Iterable[inventory_pb2.InventoryObject]) -> list[str]:
    """The NetBox Clusters of the objects' inventory clusters, by name."""
    return sorted({placement.cluster_of(o.cluster) for o in objects})


def _group(objects: Iterable[inventory_pb2.InventoryObject], key: Callable[[inventory_pb2.InventoryObject], K]) -> dict[K, list[inventory_pb2.InventoryObject]]:
    groups: dict[K, list[inventory_pb2.InventoryObject]] = {}
    for o in objects:
        groups.setdefault(key(o), []).append(o)
    return groups


def _quoted(cluster: str) -> str:
    return f"'{cluster}'" + (" (the fabric's own)" if not cluster else "")


def _and(words: Iterable[str]) -> str:
    words = list(words)
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def _device(node: inventory_pb2.InventoryObject, placement: Placement) -> dict[str, str]:
    return {
        "site": placement.site, "role": placement.role, "device_type": placement.device_type, "cluster": placement.cluster_of(node.cluster),
        "status": "active" if struct_dict(node.facts).get("ready") is True else "offline",
    }


def _virtual_machine(cluster: str, vmi: inventory_pb2.InventoryObject | None, placed: set[tuple[str, str]], placement: Placement) -> dict[str, str]:
    """In its cluster's NetBox Cluster; on its node's Device while its VMI runs on a node of its
    cluster that the sync makes a Device of."""
    running = vmi is not None and struct_dict(vmi.facts).get("phase") == "Running"
    return {
        "site": placement.site, "cluster": placement.cluster_of(cluster),
        "device": vmi.node if vmi is not None and (cluster, vmi.node) in placed else "",
        "status": "active" if running else "offline",
    }


def _compare(model: str, name: str, source: str, fields: dict[str, str], existing: Existing | None, cluster: str) -> Item:
    if existing is None:
        return Item(model, name, source, CREATE, fields, cluster=cluster)
    changes = {f: (existing.fields.get(f, ""), v) for f, v in fields.items() if existing.fields.get(f, "") != v}
    return Item(model, name, source, UPDATE if changes else UNCHANGED, fields, changes, url=existing.url, cluster=cluster)


def fingerprint(items: Iterable[Item]) -> str:
    """A digest of a plan, so that the confirm applies the plan its preview showed and no other."""
    data = [(i.model, i.name, i.source, i.cluster, i.action, i.fields, sorted(i.changes.items()), i.reason) for i in items]
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:32]


def counts(items: Iterable[Item]) -> list[tuple[str, int]]:
    """(action, how many) in the order of the actions, those that occur."""
    found = Counter(i.action for i in items)
    order = [*DONE, *DONE.values()]
    return sorted(found.items(), key=lambda a: order.index(a[0]))

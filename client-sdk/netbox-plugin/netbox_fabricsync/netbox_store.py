"""The NetBox side of Sync to NetBox: reads the objects the plan compares with into plain data
(netbox_sync), and writes a plan one object at a time. Each object is validated the way
NetBox's own forms validate it (full_clean) and saved in its own transaction, so a refused
object fails alone and the log says why. Each change goes into NetBox's change log under the
user of the request."""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable

from dcim.models import Device, DeviceRole, DeviceType, Manufacturer, Site
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db import IntegrityError, transaction
from django.utils.text import slugify
from utilities.exceptions import PermissionsViolation
from virtualization.models import Cluster, ClusterType, VirtualMachine

from .netbox_sync import CREATE, DEVICE, DONE, FAILED, UPDATE, Existing, Item, Placement

# The related objects: made when missing, and an existing one with the same slug is reused. The
# Site is the fabric's (named after it); a Cluster has no slug, so it is found by name (one per
# inventory cluster of the fabric: Placement.cluster_of).
ROLE = ("Kubernetes node", "kubernetes-node")
MANUFACTURER = ("Kubernetes", "kubernetes")
DEVICE_TYPE = ("Node", "kubernetes-node")
CLUSTER_TYPE = ("KubeVirt", "kubevirt")


@dataclasses.dataclass(frozen=True)
class _Related:
    site: Site
    role: DeviceRole
    device_type: DeviceType
    clusters: dict[str, Cluster]  # by name


def _site(fabric: str) -> Site | None:
    return Site.objects.filter(slug=slugify(fabric)).first()


def _device_type() -> DeviceType | None:
    return DeviceType.objects.filter(manufacturer__slug=MANUFACTURER[1], slug=DEVICE_TYPE[1]).select_related("manufacturer").first()


def placement(fabric: str) -> Placement:
    """The names of the related objects that exist, else of those the sync would make."""
    site, role, device_type = _site(fabric), DeviceRole.objects.filter(slug=ROLE[1]).first(), _device_type()
    return Placement(
        site=site.name if site else fabric, role=role.name if role else ROLE[0],
        device_type=device_type.full_name if device_type else f"{MANUFACTURER[0]} {DEVICE_TYPE[0]}", cluster=fabric,
    )


def devices(fabric: str) -> dict[str, Existing]:
    """The Devices of the fabric's Site, by name."""
    found = Device.objects.filter(site__slug=slugify(fabric)).exclude(name=None).select_related("site", "role", "device_type__manufacturer", "cluster")
    return {d.name: Existing(_device_fields(d), d.get_absolute_url()) for d in found}


def virtual_machines(clusters: Iterable[str]) -> dict[tuple[str, str], Existing]:
    """The VirtualMachines of the named Clusters, by (Cluster, name)."""
    found = VirtualMachine.objects.filter(cluster__name__in=list(clusters)).select_related("site", "cluster", "device")
    return {(vm.cluster.name, vm.name): Existing(_vm_fields(vm), vm.get_absolute_url()) for vm in found}


def _device_fields(d: Device) -> dict[str, str]:
    return {
        "site": d.site.name, "role": d.role.name, "device_type": d.device_type.full_name,
        "cluster": d.cluster.name if d.cluster else "", "status": d.status,
    }


def _vm_fields(vm: VirtualMachine) -> dict[str, str]:
    return {
        "site": vm.site.name if vm.site else "", "cluster": vm.cluster.name if vm.cluster else "",
        "device": vm.device.name if vm.device else "", "status": vm.status,
    }


def apply(items: list[Item], fabric: str, user: Any) -> list[Item]:
    """The log: each item as applied (created, updated, unchanged) or failed with the reason.
    The user's NetBox permissions bound each written object as in NetBox's own edit views: one
    their constraints do not cover is rolled back."""
    if not any(_writes(i) for i in items):
        return [_done(i) for i in items]
    try:
        with transaction.atomic():
            related = _related(fabric, sorted({i.fields["cluster"] for i in items if _writes(i)}))
    except (ValidationError, IntegrityError) as e:
        reason = f"the fabric's Site, DeviceRole, DeviceType or Clusters: {_reason(e)}"
        return [dataclasses.replace(i, action=FAILED, reason=reason) if _writes(i) else _done(i) for i in items]
    return [_apply(i, related, user) if _writes(i) else _done(i) for i in items]


def _writes(item: Item) -> bool:
    return item.action in (CREATE, UPDATE)


def _done(item: Item, **changed: Any) -> Item:
    return dataclasses.replace(item, action=DONE[item.action], **changed)


def _related(fabric: str, clusters: list[str]) -> _Related:
    site = _site(fabric) or _made(Site(name=fabric, slug=slugify(fabric)))
    role = DeviceRole.objects.filter(slug=ROLE[1]).first() or _made(DeviceRole(name=ROLE[0], slug=ROLE[1], vm_role=False))
    device_type = _device_type()
    if device_type is None:
        maker = Manufacturer.objects.filter(slug=MANUFACTURER[1]).first() or _made(Manufacturer(name=MANUFACTURER[0], slug=MANUFACTURER[1]))
        device_type = _made(DeviceType(manufacturer=maker, model=DEVICE_TYPE[0], slug=DEVICE_TYPE[1]))
    found = {}
    for name in clusters:
        cluster = Cluster.objects.filter(name=name).first()
        if cluster is None:
            kind = ClusterType.objects.filter(slug=CLUSTER_TYPE[1]).first() or _made(ClusterType(name=CLUSTER_TYPE[0], slug=CLUSTER_TYPE[1]))
            cluster = _made(Cluster(name=name, type=kind, scope=site))
        found[name] = cluster
    return _Related(site, role, device_type, found)


def _made(obj: Any) -> Any:
    obj.full_clean()
    obj.save()
    return obj


def _apply(item: Item, related: _Related, user: Any) -> Item:
    action = "add" if item.action == CREATE else "change"
    try:
        with transaction.atomic():
            obj = _write_device(item, related) if item.model == DEVICE else _write_vm(item, related)
            if not type(obj).objects.restrict(user, action).filter(pk=obj.pk).exists():
                raise PermissionsViolation
    except PermissionsViolation:
        return dataclasses.replace(item, action=FAILED, reason=f"the constraints of your NetBox permission to {action} it exclude it")
    except (ValidationError, IntegrityError, ObjectDoesNotExist) as e:
        return dataclasses.replace(item, action=FAILED, reason=_reason(e))
    return _done(item, url=obj.get_absolute_url())


def _existing(model: Any, item: Item, **lookup: Any) -> Any:
    """A new object to create, or the one to update with its change log's "before" taken."""
    if item.action == CREATE:
        return model(name=item.name)
    obj = model.objects.get(name=item.name, **lookup)
    obj.snapshot()
    return obj


def _write_device(item: Item, related: _Related) -> Device:
    device = _existing(Device, item, site=related.site)
    device.site, device.role, device.device_type = related.site, related.role, related.device_type
    device.cluster = related.clusters[item.fields["cluster"]]
    device.status = item.fields["status"]
    return _made(device)


def _write_vm(item: Item, related: _Related) -> VirtualMachine:
    cluster = related.clusters[item.fields["cluster"]]
    vm = _existing(VirtualMachine, item, cluster=cluster)
    host = item.fields["device"]
    vm.site, vm.cluster, vm.status = related.site, cluster, item.fields["status"]
    try:
        vm.device = Device.objects.get(site=related.site, name=host) if host else None
    except Device.DoesNotExist:
        raise ValidationError(f"its node's Device {host} is not in NetBox") from None
    return _made(vm)


def _reason(error: Exception) -> str:
    if isinstance(error, ValidationError):
        if hasattr(error, "error_dict"):
            return "; ".join(f"{field}: {' '.join(messages)}" for field, messages in error.message_dict.items())
        return " ".join(error.messages)
    return str(error)


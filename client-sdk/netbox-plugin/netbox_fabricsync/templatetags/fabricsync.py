"""Filters for the plugin's templates: status badges, times, YAML, resource keys."""

from django import template
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from .. import present

register = template.Library()


@register.filter
def status(value, enum_name):
    """An enum value as a NetBox badge: {{ fabric.sync_status|status:"sync_status" }}."""
    b = present.badge(present.ENUMS[enum_name], value)
    return format_html('<span class="badge text-bg-{}">{}</span>', b["colour"], b["text"])


@register.filter
def badge(text):
    """A status word as a NetBox badge of its colour: {{ item.action|badge }}."""
    return format_html('<span class="badge text-bg-{}">{}</span>', present.colour(text), text)


@register.filter
def cluster_label(name):
    """An inventory cluster: its name, or an em dash for the fabric's own (empty)."""
    if name:
        return name
    return mark_safe('<span class="text-secondary" title="the fabric\'s own cluster">&mdash;</span>')


@register.simple_tag
def inventory_url(fabric_id, obj, kind=""):
    """The page of an imported object (an InventoryObject, HostedWorkload or, with kind="node",
    an InventoryNode), with its cluster."""
    path = reverse("plugins:netbox_fabricsync:fabric_inventory_object", kwargs={"pk": fabric_id})
    return f"{path}?{present.inventory_query(kind or obj.kind, getattr(obj, 'namespace', ''), obj.name, obj.cluster)}"


@register.filter
def enum_label(value, enum_name):
    return present.label(present.ENUMS[enum_name], value)


@register.filter
def ts(timestamp):
    """A protobuf Timestamp as a datetime (None when unset), for NetBox's isodatetime."""
    return present.when(timestamp)


@register.filter
def as_yaml(message):
    return present.to_yaml(message)


@register.filter
def value_text(value):
    return present.value_text(value)


@register.filter
def key_text(key):
    return present.key_text(key)


@register.filter
def key_query(key):
    return present.key_query(key)


@register.filter
def seconds(duration):
    """A protobuf Duration in milliseconds, for latencies."""
    return round(duration.seconds * 1000 + duration.nanos / 1e6)

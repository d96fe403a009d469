"""Protobuf values as a page shows them: enum labels with NetBox badge colours, times, YAML,
links into a known forge. Pure functions, so the templates stay simple."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

import yaml
from fabricsync.v1 import common_pb2, fabric_pb2, inventory_pb2, repository_pb2, sync_pb2
from google.protobuf import json_format

# Badge colour (NetBox's text-bg-* names) of each status label.
_COLOURS = {
    "reachable": "green", "failed": "red", "unknown": "secondary",
    "never synced": "secondary", "syncing": "blue", "synced": "green",
    "in sync": "green", "drifted": "orange", "missing": "red", "orphaned": "purple", "contested": "yellow",
    "inactive": "secondary", "starting": "blue", "active": "green", "error": "red",
    "queued": "secondary", "running": "blue", "succeeded": "green", "cancelled": "yellow",
    "pending": "secondary", "applied": "green", "unchanged": "cyan",
    "create": "green", "update": "blue", "delete": "red",
    "added": "green", "modified": "blue", "deleted": "red", "warning": "yellow",
    "healthy": "green", "progressing": "blue", "degraded": "red", "health changed": "cyan",
    "container": "blue", "vm": "purple", "created": "green", "updated": "blue", "skip": "yellow", "skipped": "yellow",
}


def label(enum: Any, value: int) -> str:
    """SYNC_STATUS_NEVER_SYNCED -> 'never synced' (the enum's prefix dropped)."""
    name = enum.Name(value)
    prefix = "_".join(enum.Name(0).split("_")[:-1]) + "_"  # of X_UNSPECIFIED
    return name.removeprefix(prefix).lower().replace("_", " ")


def colour(text: str) -> str:
    return _COLOURS.get(text, "secondary")


def badge(enum: Any, value: int) -> dict[str, str]:
    text = label(enum, value)
    return {"text": text, "colour": colour(text)}


def when(timestamp: Any) -> datetime | None:
    """A Timestamp as an aware datetime (None when unset), for NetBox's date filters."""
    if not timestamp.seconds and not timestamp.nanos:
        return None
    return timestamp.ToDatetime(tzinfo=timezone.utc)


def key_text(key: common_pb2.ResourceKey) -> str:
    return f"{key.kind} {key.namespace + '/' if key.namespace else ''}{key.name}"


def key_query(key: common_pb2.ResourceKey) -> str:
    """A resource key in a URL (group/version/kind/namespace/name)."""
    return "/".join([key.group or "-", key.version or "-", key.kind, key.namespace or "-", key.name])


def parse_key(text: str) -> common_pb2.ResourceKey:
    group, version, kind, namespace, name = (text.split("/") + [""] * 5)[:5]
    return common_pb2.ResourceKey(
        group="" if group == "-" else group, version="" if version == "-" else version, kind=kind,
        namespace="" if namespace == "-" else namespace, name=name,
    )


def to_yaml(message: Any) -> str:
    """A Struct (or Value) as YAML, in the order of the object."""
    if not message.ListFields():
        return ""
    return yaml.safe_dump(json_format.MessageToDict(message), sort_keys=False, default_flow_style=False)


def value_text(value: Any) -> str:
    """A google.protobuf.Value in one line (absent: an em dash)."""
    if value.WhichOneof("kind") is None:
        return "—"
    data = json_format.MessageToDict(value)
    if isinstance(data, float) and data.is_integer():
        return str(int(data))  # JSON numbers arrive as doubles: a vlan is 1131, not 1131.0
    if isinstance(data, (dict, list)):
        return yaml.safe_dump(data, default_flow_style=True).strip()
    return str(data)


_FORGE_BLOB = {
    repository_pb2.PROVIDER_GITHUB: "{base}/blob/{commit}/{path}#L{line}",
    repository_pb2.PROVIDER_GITLAB: "{base}/-/blob/{commit}/{path}#L{line}",
    repository_pb2.PROVIDER_GITEA: "{base}/src/commit/{commit}/{path}#L{line}",
    repository_pb2.PROVIDER_BITBUCKET: "{base}/src/{commit}/{path}#lines-{line}",
}


def source_link(repository: repository_pb2.Repository | None, commit: str, path: str, line: int) -> str:
    """A link to a file's line in the repository's forge; '' when the forge is not known or the
    URL is not a web one (ssh, file)."""
    if repository is None or not commit or not path:
        return ""
    template = _FORGE_BLOB.get(repository.provider)
    url = repository.url
    if template is None or not url.startswith(("https://", "http://")):
        return ""
    base = url.removesuffix("/").removesuffix(".git")
    return template.format(base=base, commit=commit, path=path.lstrip("/"), line=max(line, 1))


# Enum types, for the templates' sake named once here.
ENUMS = {
    "connection": common_pb2.ConnectionStatus,
    "severity": common_pb2.Severity,
    "sync_status": fabric_pb2.SyncStatus,
    "drift_status": fabric_pb2.DriftStatus,
    "watch_status": fabric_pb2.WatchStatus,
    "apply_status": fabric_pb2.ApplyStatus,
    "resource_drift": fabric_pb2.ResourceDriftStatus,
    "health": common_pb2.ResourceHealth,
    "run_status": sync_pb2.SyncRunStatus,
    "mode": sync_pb2.SyncMode,
    "trigger": sync_pb2.SyncTrigger,
    "action": sync_pb2.ChangeAction,
    "event_type": sync_pb2.FabricEventType,
    "provider": repository_pb2.Provider,
    "auth": repository_pb2.AuthType,
    "repo_failure": repository_pb2.ConnectionFailure,
    "cluster_failure": fabric_pb2.ClusterFailure,
    "workload": inventory_pb2.WorkloadType,
}


def inventory_query(kind: str, namespace: str, name: str, cluster: str) -> str:
    """The query string of an imported object's page (its cluster empty for the fabric's own)."""
    return urlencode({k: v for k, v in (("cluster", cluster), ("kind", kind), ("namespace", namespace), ("name", name)) if v})


def struct_dict(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message) if message.ListFields() else {}

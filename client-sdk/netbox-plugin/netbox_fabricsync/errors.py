"""What a user reads when fabricsync refuses or cannot be reached: the cause in words, with the
address when the connection is at fault. Never a secret: messages come from the status, which
the server keeps free of secrets, and the settings' token is never part of them."""

from __future__ import annotations

import re

import grpc
from fabricsync_client import FabricSyncError

from .settings import Settings

_TLS = re.compile(r"ssl|tls|certificate|handshake", re.IGNORECASE)


def describe(error: FabricSyncError, settings: Settings) -> tuple[str, str]:
    """(title, message) of an error banner."""
    code, message, address = error.code(), error.message, settings.address
    if code == grpc.StatusCode.UNAVAILABLE:
        if _TLS.search(message):
            return "TLS failure", f"The TLS connection to fabricsync at {address} failed: {message}"
        return "fabricsync unreachable", f"fabricsync at {address} is unreachable: {message}"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return "fabricsync timed out", f"fabricsync at {address} did not answer within {settings.timeout:g} s."
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return "Token refused", (
            f"fabricsync at {address} refused the plugin's token (expired, revoked or wrong): {message}. "
            "Set a valid token in PLUGINS_CONFIG['netbox_fabricsync']."
        )
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return "Not allowed by fabricsync", f"The plugin's fabricsync token may not do this: {message}"
    if code == grpc.StatusCode.NOT_FOUND:
        return "Not found", f"fabricsync has no such object: {message}"
    if code == grpc.StatusCode.ABORTED:
        return "Changed meanwhile", (
            f"{message}. Someone changed this object (or started a run) since the page was loaded: "
            "reload the page and try again."
        )
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return "Not possible now", f"fabricsync cannot do this in the current state: {message}"
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        violations = "; ".join(f"{v.field}: {v.description}" for v in error.field_violations)
        return "Invalid request", violations or message
    if code == grpc.StatusCode.ALREADY_EXISTS:
        return "Already exists", message
    return "fabricsync error", f"fabricsync at {address} answered {code.name}: {message}"


def status_of(error: FabricSyncError) -> int:
    """The HTTP status of a page showing this error: never 500."""
    return {
        grpc.StatusCode.NOT_FOUND: 404,
        grpc.StatusCode.INVALID_ARGUMENT: 400,
        grpc.StatusCode.FAILED_PRECONDITION: 409,
        grpc.StatusCode.ABORTED: 409,
        grpc.StatusCode.ALREADY_EXISTS: 409,
        grpc.StatusCode.PERMISSION_DENIED: 403,
    }.get(error.code(), 503)

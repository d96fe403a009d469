"""Typed errors of the fabricsync API, built from a gRPC status and its google.rpc details.

Every call made through a `Client` or `AsyncClient` (the helpers and the raw stubs alike)
raises a `FabricSyncError` subclass chosen by the status code. They subclass `grpc.RpcError`,
so code that catches that keeps working; `code()` and `details()` behave as on gRPC's errors.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Iterable, Optional, Tuple, Type, Union

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

# Trailing metadata key carrying the serialized google.rpc.Status with its details.
_STATUS_DETAILS_KEY = "grpc-status-details-bin"


@dataclasses.dataclass(frozen=True)
class FieldViolation:
    """One invalid request field (a google.rpc.BadRequest field violation)."""

    #: Path of the field in the request, e.g. "repository.name" or "update_mask.paths[0]".
    field: str
    #: What is wrong with it.
    description: str


class FabricSyncError(grpc.RpcError):
    """A failed fabricsync call. Subclasses name the status code."""

    #: The status code of the class; the instance's code() may differ only for this base class.
    status_code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        code: Optional[grpc.StatusCode] = None,
        details: Iterable[any_pb2.Any] = (),
    ) -> None:
        self._code = code or self.status_code
        #: The status message.
        self.message = message
        #: The google.rpc.Status details, packed (see field_violations for BadRequest).
        self.status_details: Tuple[any_pb2.Any, ...] = tuple(details)
        super().__init__(f"{self._code.name}: {message}")

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self.message

    @property
    def field_violations(self) -> Tuple[FieldViolation, ...]:
        """The BadRequest field violations of the details (INVALID_ARGUMENT), in order."""
        found = []
        for detail in self.status_details:
            bad_request = error_details_pb2.BadRequest()
            if detail.Unpack(bad_request):
                found += [FieldViolation(v.field, v.description) for v in bad_request.field_violations]
        return tuple(found)


class Cancelled(FabricSyncError):
    status_code = grpc.StatusCode.CANCELLED


class Unknown(FabricSyncError):
    status_code = grpc.StatusCode.UNKNOWN


class InvalidArgument(FabricSyncError):
    """A bad request; field_violations names each bad field."""

    status_code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(FabricSyncError):
    status_code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(FabricSyncError):
    status_code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(FabricSyncError):
    status_code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(FabricSyncError):
    status_code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(FabricSyncError):
    status_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(FabricSyncError):
    status_code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(FabricSyncError):
    """A stale etag, or another run is active: read again and retry."""

    status_code = grpc.StatusCode.ABORTED


class OutOfRange(FabricSyncError):
    status_code = grpc.StatusCode.OUT_OF_RANGE


class Unimplemented(FabricSyncError):
    status_code = grpc.StatusCode.UNIMPLEMENTED


class Internal(FabricSyncError):
    status_code = grpc.StatusCode.INTERNAL


class Unavailable(FabricSyncError):
    """The server or the connection is gone for now; the stream helpers resume on it."""

    status_code = grpc.StatusCode.UNAVAILABLE


class DataLoss(FabricSyncError):
    status_code = grpc.StatusCode.DATA_LOSS


class Unauthenticated(FabricSyncError):
    status_code = grpc.StatusCode.UNAUTHENTICATED


_BY_CODE: Dict[grpc.StatusCode, Type[FabricSyncError]] = {
    cls.status_code: cls
    for cls in (
        Cancelled,
        Unknown,
        InvalidArgument,
        DeadlineExceeded,
        NotFound,
        AlreadyExists,
        PermissionDenied,
        ResourceExhausted,
        FailedPrecondition,
        Aborted,
        OutOfRange,
        Unimplemented,
        Internal,
        Unavailable,
        DataLoss,
        Unauthenticated,
    )
}

_Metadata = Iterable[Tuple[str, Union[str, bytes]]]


def error_from_status(code: grpc.StatusCode, message: str, trailing_metadata: Optional[_Metadata]) -> FabricSyncError:
    """The typed error of a status, with the details from its trailing metadata."""
    details: Tuple[any_pb2.Any, ...] = ()
    for key, value in trailing_metadata or ():
        if key == _STATUS_DETAILS_KEY and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            details = tuple(status.details)
    cls = _BY_CODE.get(code, FabricSyncError)
    return cls(message, code=code, details=details)


def from_rpc_error(error: grpc.RpcError) -> FabricSyncError:
    """The typed error of a gRPC error, sync (grpc.RpcError) or asyncio (grpc.aio.AioRpcError).

    Only needed for calls made on a channel that is not a Client's."""
    if isinstance(error, FabricSyncError):
        return error
    # A sync grpc.RpcError raised by a call is also a grpc.Call; aio's AioRpcError has the same
    # methods. Anything else (none is known) is UNKNOWN.
    call: Any = error
    try:
        code, message, metadata = call.code(), call.details() or "", call.trailing_metadata()
    except AttributeError:
        return Unknown(str(error))
    return error_from_status(code, message, metadata)

"""Python client of the fabricsync gRPC API.

The messages and stubs are generated into the `fabricsync.v1` package (e.g.
`from fabricsync.v1 import repository_pb2`); this package adds the connection (TLS or
plaintext, bearer token), paging iterators, server-stream helpers that resume after a
dropped connection, and typed errors. `Client` blocks; `AsyncClient` is its asyncio twin.
"""

from ._common import ResumePolicy
from .aio import AsyncClient
from .client import Client
from .errors import (
    Aborted,
    AlreadyExists,
    Cancelled,
    DataLoss,
    DeadlineExceeded,
    FabricSyncError,
    FailedPrecondition,
    FieldViolation,
    Internal,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    Unknown,
    error_from_status,
    from_rpc_error,
)

__all__ = [
    "Aborted",
    "AlreadyExists",
    "AsyncClient",
    "Cancelled",
    "Client",
    "DataLoss",
    "DeadlineExceeded",
    "FabricSyncError",
    "FailedPrecondition",
    "FieldViolation",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "ResourceExhausted",
    "ResumePolicy",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Unknown",
    "error_from_status",
    "from_rpc_error",
]

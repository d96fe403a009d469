"""Channels: TLS or plaintext, and interceptors that add the bearer token to every call and
turn gRPC errors into typed FabricSyncError subclasses, for the helpers and raw stubs alike.

The token goes in metadata through an interceptor rather than grpc call credentials because
gRPC refuses call credentials on plaintext channels (a server behind a TLS-terminating proxy
or on loopback still wants the token).
"""

from __future__ import annotations

import collections
from typing import Any, AsyncIterator, Awaitable, Callable, List, Optional, Sequence, Tuple, TypeVar, Union

import grpc
import grpc.aio

from .errors import from_rpc_error

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")

#: gRPC channel options, e.g. ("grpc.keepalive_time_ms", 30000).
ChannelOptions = Sequence[Tuple[str, Any]]


def _read(path: Optional[str]) -> Optional[bytes]:
    if path is None:
        return None
    with open(path, "rb") as f:
        return f.read()


def channel_credentials(
    tls: bool, ca_file: Optional[str], client_cert_file: Optional[str] = None, client_key_file: Optional[str] = None
) -> Optional[grpc.ChannelCredentials]:
    """TLS credentials verifying the server with the CA file (system roots when None), and
    presenting the client certificate with its key when given (mutual TLS), or None for
    plaintext. A CA file or a client certificate implies TLS."""
    if (client_cert_file is None) != (client_key_file is None):
        raise ValueError("client_cert_file and client_key_file go together")
    if not tls and ca_file is None and client_cert_file is None:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=_read(ca_file), private_key=_read(client_key_file), certificate_chain=_read(client_cert_file)
    )


def _with_token(metadata: Optional[Sequence[Tuple[str, Union[str, bytes]]]], token: Optional[str]) -> List[Tuple[str, Union[str, bytes]]]:
    pairs = list(metadata or ())
    if token:
        pairs.append(("authorization", f"Bearer {token}"))
    return pairs


class _CallDetails(
    collections.namedtuple("_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")),
    grpc.ClientCallDetails,
):
    """grpc.ClientCallDetails is abstract; this is the usual concrete form of it."""


class _SyncStream:
    """A server stream whose errors are typed; everything else goes to the underlying call."""

    def __init__(self, call: Any) -> None:
        self._call = call

    def __iter__(self) -> "_SyncStream":
        return self

    def __next__(self) -> Any:
        try:
            return next(self._call)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    def __getattr__(self, name: str) -> Any:  # cancel(), code(), is_active(), ...
        return getattr(self._call, name)


class SyncInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Adds the token; raises typed errors from blocking calls and streams (not from future())."""

    def __init__(self, token: Optional[str]) -> None:
        self._token = token

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        return _CallDetails(
            details.method,
            details.timeout,
            tuple(_with_token(details.metadata, self._token)),
            details.credentials,
            details.wait_for_ready,
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Any, client_call_details: grpc.ClientCallDetails, request: Any) -> Any:
        outcome = continuation(self._details(client_call_details), request)
        # A blocking call's outcome is already complete; a future() one is left as it is.
        if outcome.done() and outcome.exception() is not None:
            raise from_rpc_error(outcome.exception()) from None
        return outcome

    def intercept_unary_stream(self, continuation: Any, client_call_details: grpc.ClientCallDetails, request: Any) -> Any:
        return _SyncStream(continuation(self._details(client_call_details), request))


def sync_channel(target: str, credentials: Optional[grpc.ChannelCredentials], token: Optional[str], options: ChannelOptions) -> grpc.Channel:
    channel = grpc.secure_channel(target, credentials, options) if credentials else grpc.insecure_channel(target, options)
    return grpc.intercept_channel(channel, SyncInterceptor(token))


class _AsyncUnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, token: Optional[str]) -> None:
        self._token = token

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, _Req], Awaitable[grpc.aio.UnaryUnaryCall[_Req, _Resp]]],
        client_call_details: grpc.aio.ClientCallDetails,
        request: _Req,
    ) -> Union[_Resp, grpc.aio.UnaryUnaryCall[_Req, _Resp]]:
        call = await continuation(_async_details(client_call_details, self._token), request)
        try:
            return await call
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None


class _AsyncUnaryStream(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, token: Optional[str]) -> None:
        self._token = token

    async def intercept_unary_stream(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, _Req], Awaitable[grpc.aio.UnaryStreamCall[_Req, _Resp]]],
        client_call_details: grpc.aio.ClientCallDetails,
        request: _Req,
    ) -> Union[AsyncIterator[_Resp], grpc.aio.UnaryStreamCall[_Req, _Resp]]:
        call = await continuation(_async_details(client_call_details, self._token), request)

        async def responses() -> AsyncIterator[_Resp]:
            try:
                async for response in call:
                    yield response
            except grpc.RpcError as e:
                raise from_rpc_error(e) from None
            finally:
                call.cancel()  # the consumer stopped early: end the RPC now, not at collection

        return responses()


def _async_details(details: grpc.aio.ClientCallDetails, token: Optional[str]) -> grpc.aio.ClientCallDetails:
    metadata = grpc.aio.Metadata(*_with_token(tuple(details.metadata or ()), token))
    return grpc.aio.ClientCallDetails(details.method, details.timeout, metadata, details.credentials, details.wait_for_ready)


def async_channel(target: str, credentials: Optional[grpc.ChannelCredentials], token: Optional[str], options: ChannelOptions) -> grpc.aio.Channel:
    interceptors: List[grpc.aio.ClientInterceptor] = [_AsyncUnaryUnary(token), _AsyncUnaryStream(token)]
    if credentials:
        return grpc.aio.secure_channel(target, credentials, options, interceptors=interceptors)
    return grpc.aio.insecure_channel(target, options, interceptors=interceptors)

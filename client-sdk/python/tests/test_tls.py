"""The SDK against a real fabricsync server that serves TLS and verifies client certificates,
as `FABRICSYNC_FIXTURE_TLS=1 tests/sdk-fixture.sh` starts it (client-sdk/python/test.sh runs
this file under such a fixture; under the plaintext one these tests skip)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Optional

import pytest

from fabricsync.v1 import repository_pb2
from fabricsync_client import AsyncClient, Client, FabricSyncError, Unavailable

pytestmark = pytest.mark.skipif(
    os.environ.get("FABRICSYNC_TLS") != "1", reason="needs FABRICSYNC_FIXTURE_TLS=1 tests/sdk-fixture.sh (client-sdk/python/test.sh)"
)

LIST = repository_pb2.ListRepositoriesRequest(page_size=1)


def env(name: str) -> str:
    return os.environ[name]


def token() -> Optional[str]:
    return os.environ.get("FABRICSYNC_TOKEN") or None


def test_tls_with_ca_file() -> None:
    with Client(env("FABRICSYNC_ADDR"), ca_file=env("FABRICSYNC_CA_FILE"), token=token()) as client:
        client.repositories.ListRepositories(LIST, timeout=10)
    # The system roots do not trust the fixture's CA.
    with Client(env("FABRICSYNC_ADDR"), tls=True, token=token()) as client, pytest.raises(Unavailable):
        client.repositories.ListRepositories(LIST, timeout=10)


def test_mtls_with_client_certificate() -> None:
    with Client(
        env("FABRICSYNC_ADDR"),
        ca_file=env("FABRICSYNC_CA_FILE"),
        client_cert_file=env("FABRICSYNC_CLIENT_CERT"),
        client_key_file=env("FABRICSYNC_CLIENT_KEY"),
        token=token(),
    ) as client:
        client.repositories.ListRepositories(LIST, timeout=10)
    with pytest.raises(ValueError):
        Client(env("FABRICSYNC_ADDR"), client_cert_file=env("FABRICSYNC_CLIENT_CERT"))


def test_mtls_refuses_a_certificate_of_another_ca(tmp_path: Path) -> None:
    key, cert = tmp_path / "rogue.key", tmp_path / "rogue.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/O=fabricsync-tests/CN=sdk-client", "-addext", "extendedKeyUsage=clientAuth"],
        check=True,
        capture_output=True,
    )
    with Client(env("FABRICSYNC_ADDR"), ca_file=env("FABRICSYNC_CA_FILE"), client_cert_file=str(cert), client_key_file=str(key)) as client:
        with pytest.raises(Unavailable):
            client.repositories.ListRepositories(LIST, timeout=10)


def test_plaintext_client_cannot_talk_to_it() -> None:
    with Client(env("FABRICSYNC_ADDR")) as client, pytest.raises(FabricSyncError):
        client.repositories.ListRepositories(LIST, timeout=5)


async def test_async_client_with_mtls() -> None:
    async with AsyncClient(
        env("FABRICSYNC_ADDR"),
        ca_file=env("FABRICSYNC_CA_FILE"),
        client_cert_file=env("FABRICSYNC_CLIENT_CERT"),
        client_key_file=env("FABRICSYNC_CLIENT_KEY"),
        token=token(),
    ) as client:
        await client.repositories.ListRepositories(LIST, timeout=10)

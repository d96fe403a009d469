"""Fixtures over tests/sdk-fixture.sh's real server, Kubernetes API server and Git repository."""

from __future__ import annotations

from typing import Iterator

import pytest
from helpers import Env

from fabricsync_client import Client


@pytest.fixture(scope="session")
def env() -> Env:
    return Env.from_environ()


@pytest.fixture(scope="session")
def client(env: Env) -> Iterator[Client]:
    with Client(env.addr, token=env.token) as c:
        yield c

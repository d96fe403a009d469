"""RepositoryService through the SDK against the real server: CRUD with paging, field masks
and etags, typed errors with their field violations, and the connection test."""

from __future__ import annotations

import uuid

import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from helpers import Env, unique

from fabricsync.v1 import common_pb2, repository_pb2 as pb
from fabricsync_client import Aborted, AlreadyExists, AsyncClient, Client, InvalidArgument, NotFound


def create_request(name: str, url: str) -> pb.CreateRepositoryRequest:
    return pb.CreateRepositoryRequest(repository=pb.Repository(name=name, url=url, description="first"))


def describe(repo: pb.Repository, description: str, etag: str) -> pb.UpdateRepositoryRequest:
    return pb.UpdateRepositoryRequest(
        repository=pb.Repository(id=repo.id, description=description), update_mask=FieldMask(paths=["description"]), etag=etag
    )


def test_repository_lifecycle(client: Client, env: Env) -> None:
    names = sorted(unique("repo") for _ in range(3))
    created = [client.repositories.CreateRepository(create_request(n, env.git_url)).repository for n in names]
    assert all(r.id and r.etag for r in created)
    assert created[0].auth.type == pb.AUTH_TYPE_NONE and not created[0].auth.has_secret

    got = client.repositories.GetRepository(pb.GetRepositoryRequest(id=created[0].id)).repository
    assert (got.name, got.url, got.description, got.etag) == (names[0], env.git_url, "first", created[0].etag)
    assert got.connection_status == common_pb2.CONNECTION_STATUS_UNKNOWN

    # One item a page: the iterator follows next_page_token through every page, in name order.
    listed = [r.name for r in client.list_repositories(page_size=1)]
    assert set(names) <= set(listed) and listed == sorted(listed) and len(listed) == len(set(listed))
    assert [r.id for r in client.list_repositories(filter=f"name={names[1]}")] == [created[1].id]
    with pytest.raises(InvalidArgument) as bad_filter:
        list(client.list_repositories(filter="colour=blue"))
    assert [v.field for v in bad_filter.value.field_violations] == ["filter"]

    # Update what the mask names, checked against the etag read; the old etag is then stale.
    updated = client.repositories.UpdateRepository(describe(got, "second", got.etag)).repository
    assert (updated.description, updated.name, updated.url) == ("second", names[0], env.git_url)
    assert updated.etag != got.etag
    with pytest.raises(Aborted) as stale:
        client.repositories.UpdateRepository(describe(got, "third", got.etag))
    assert "etag" in stale.value.message
    assert client.repositories.GetRepository(pb.GetRepositoryRequest(id=got.id)).repository.description == "second"

    # Bad input names each bad field of the request.
    with pytest.raises(InvalidArgument) as invalid:
        client.repositories.CreateRepository(create_request("Not A Label", "ftp://example.com/x.git"))
    assert [v.field for v in invalid.value.field_violations] == ["repository.name", "repository.url"]
    assert "DNS-1123" in invalid.value.field_violations[0].description
    with pytest.raises(AlreadyExists):
        client.repositories.CreateRepository(create_request(names[0], env.git_url))
    with pytest.raises(NotFound):
        client.repositories.GetRepository(pb.GetRepositoryRequest(id=str(uuid.uuid4())))

    # The connection test lists the remote's refs and records the outcome.
    tested = client.repositories.TestRepositoryConnection(pb.TestRepositoryConnectionRequest(id=got.id))
    assert tested.reachable and tested.failure == pb.CONNECTION_FAILURE_UNSPECIFIED, tested.message
    assert tested.ref_count >= 1 and tested.default_branch == "main"
    assert tested.repository.connection_status == common_pb2.CONNECTION_STATUS_REACHABLE

    for repo in created:
        client.repositories.DeleteRepository(pb.DeleteRepositoryRequest(id=repo.id))
    assert not set(names) & {r.name for r in client.list_repositories()}


async def test_repository_lifecycle_async(env: Env) -> None:
    async with AsyncClient(env.addr, token=env.token) as client:
        names = sorted(unique("arepo") for _ in range(2))
        created = [(await client.repositories.CreateRepository(create_request(n, env.git_url))).repository for n in names]
        got = (await client.repositories.GetRepository(pb.GetRepositoryRequest(id=created[1].id))).repository
        assert got.name == names[1]
        listed = [r.name async for r in client.list_repositories(page_size=1)]
        assert set(names) <= set(listed) and listed == sorted(listed)

        updated = (await client.repositories.UpdateRepository(describe(got, "async", got.etag))).repository
        assert updated.description == "async" and updated.etag != got.etag
        with pytest.raises(Aborted):
            await client.repositories.UpdateRepository(describe(got, "stale", got.etag))
        with pytest.raises(InvalidArgument) as invalid:
            await client.repositories.UpdateRepository(
                pb.UpdateRepositoryRequest(repository=pb.Repository(id=got.id), update_mask=FieldMask(paths=["colour"]))
            )
        assert [v.field for v in invalid.value.field_violations] == ["update_mask"]
        with pytest.raises(NotFound):
            await client.repositories.TestRepositoryConnection(pb.TestRepositoryConnectionRequest(id=str(uuid.uuid4())))
        tested = await client.repositories.TestRepositoryConnection(pb.TestRepositoryConnectionRequest(id=got.id))
        assert tested.reachable, tested.message

        with pytest.raises(Aborted):
            await client.repositories.DeleteRepository(pb.DeleteRepositoryRequest(id=got.id, etag=got.etag))
        for repo in created:
            await client.repositories.DeleteRepository(pb.DeleteRepositoryRequest(id=repo.id))
        with pytest.raises(NotFound):
            await client.repositories.GetRepository(pb.GetRepositoryRequest(id=got.id))

"""Roles through the SDK against the real server: a viewer reads but cannot start runs, an
operator can, a call without a token is refused, and WhoAmI names the caller."""

from __future__ import annotations

import pytest
from helpers import Env

from fabricsync.v1 import access_pb2, fabric_pb2, sync_pb2
from fabricsync_client import Client, PermissionDenied, Unauthenticated


def test_roles_decide_what_a_token_may_do(env: Env) -> None:
    with Client(env.addr, token=env.token) as admin:
        fabrics = list(admin.list_fabrics())
        me = admin.access.WhoAmI(access_pb2.WhoAmIRequest())
        assert me.principal == "admin" and me.role == access_pb2.ROLE_ADMIN
    with Client(env.addr, token=env.viewer_token) as viewer:
        assert [f.id for f in viewer.list_fabrics()] == [f.id for f in fabrics]
        assert viewer.access.WhoAmI(access_pb2.WhoAmIRequest()).role == access_pb2.ROLE_VIEWER
        if fabrics:
            start = sync_pb2.StartSyncRequest(fabric_id=fabrics[0].id, mode=sync_pb2.SYNC_MODE_PULL, dry_run=True)
            with pytest.raises(PermissionDenied, match="needs role operator"):
                viewer.sync.StartSync(start)
        with pytest.raises(PermissionDenied):
            viewer.access.ListTokens(access_pb2.ListTokensRequest())
    with Client(env.addr, token=env.operator_token) as operator:
        assert operator.access.WhoAmI(access_pb2.WhoAmIRequest()).role == access_pb2.ROLE_OPERATOR
    with Client(env.addr) as anonymous, pytest.raises(Unauthenticated, match="missing credentials"):
        anonymous.fabrics.ListFabrics(fabric_pb2.ListFabricsRequest())

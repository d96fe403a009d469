"""A fabric end to end through the SDK against the real server and Kubernetes API server:
create, pull with streamed progress, apply, watch events, drift, each with resuming; in
order, on one fabric (the tests build on each other)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import subprocess
from typing import Callable, Generator, Iterable, List, Optional, TypeVar

import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from helpers import CuttableProxy, Env, poll, unique

from fabricsync.v1 import common_pb2, drift_pb2, fabric_pb2, repository_pb2, sync_pb2, write_pb2
from fabricsync_client import Aborted, AsyncClient, Client, FailedPrecondition, NotFound, ResumePolicy

T = TypeVar("T")
LABEL = "fabricsync.dev/fabric"
# The demo-gitops sample: 9 objects in 4 files (demo.reset.yaml is all comments).
OBJECTS = {"VPC": 4, "VPCAttachment": 3, "VPCPeering": 1, "ExternalPeering": 1}
PATCHED = ("vpc.githedgehog.com", "VPC", "demo-vpc-3")  # its subnet-1 vlan is 1131 in Git


@dataclasses.dataclass
class Flow:
    """What the tests of this module hand on to the next."""

    fabric: fabric_pb2.Fabric
    repository: repository_pb2.Repository
    pull_run: Optional[sync_pb2.SyncRun] = None
    modified: Optional[sync_pb2.FabricEvent] = None


@pytest.fixture(scope="module")
def flow(client: Client, env: Env) -> Flow:
    name = unique("demo")
    repo = client.repositories.CreateRepository(
        repository_pb2.CreateRepositoryRequest(repository=repository_pb2.Repository(name=name, url=env.git_url))
    ).repository
    with open(env.kube_ca_file) as f:
        cluster = fabric_pb2.ClusterConnectionInput(server_url=env.kube_url, ca_certificate_pem=f.read(), bearer_token=env.kube_token)
    fabric = fabric_pb2.Fabric(name=name, repository_id=repo.id, git_ref="main", gitops_path=env.gitops_path)
    created = client.fabrics.CreateFabric(fabric_pb2.CreateFabricRequest(fabric=fabric, cluster=cluster)).fabric
    return Flow(fabric=created, repository=repo)


def take_until(events: Generator[T, None, None], done: Callable[[T], bool]) -> List[T]:
    """Events up to and including the first done one; closing the stream after it."""
    taken: List[T] = []
    with contextlib.closing(events):
        for event in events:
            taken.append(event)
            if done(event):
                return taken
    raise AssertionError(f"the stream ended before the awaited event; got {taken}")


def sequences(events: Iterable[sync_pb2.SyncProgressEvent | sync_pb2.FabricEvent | drift_pb2.DriftEvent]) -> List[int]:
    return [e.sequence for e in events]


def is_patch(event: sync_pb2.FabricEvent) -> bool:
    return event.type == sync_pb2.FABRIC_EVENT_TYPE_MODIFIED and event.key.name == PATCHED[2] and event.field_manager == "kubectl-patch"


def test_fabric_create_get_list_and_cluster_connection(client: Client, flow: Flow) -> None:
    fabric = client.fabrics.GetFabric(fabric_pb2.GetFabricRequest(id=flow.fabric.id)).fabric
    assert fabric.name == flow.fabric.name and fabric.repository_id == flow.repository.id
    assert fabric.cluster.has_bearer_token and fabric.cluster.namespace == "default"
    assert fabric.sync_status == fabric_pb2.SYNC_STATUS_NEVER_SYNCED
    assert [f.id for f in client.list_fabrics(filter=f"name={fabric.name}")] == [fabric.id]
    assert fabric.id in [f.id for f in client.list_fabrics(page_size=1)]

    tested = client.fabrics.TestClusterConnection(fabric_pb2.TestClusterConnectionRequest(id=fabric.id))
    assert tested.reachable and tested.failure == fabric_pb2.CLUSTER_FAILURE_UNSPECIFIED, tested.message
    assert any(crd.kind == "VPC" and crd.group == "vpc.githedgehog.com" for crd in tested.crds)
    assert tested.permissions and all(p.allowed for p in tested.permissions)

    # An update with a field mask and the etag read.
    mask = FieldMask(paths=["sync_policy.prune"])
    update = fabric_pb2.UpdateFabricRequest(
        fabric=fabric_pb2.Fabric(id=fabric.id, sync_policy=fabric_pb2.SyncPolicy(prune=True)), update_mask=mask, etag=fabric.etag
    )
    updated = client.fabrics.UpdateFabric(update).fabric
    assert updated.sync_policy.prune and updated.etag != fabric.etag
    with pytest.raises(Aborted):
        client.fabrics.UpdateFabric(update)
    flow.fabric = updated


def test_pull_streams_progress_to_the_end(client: Client, flow: Flow) -> None:
    started = client.sync.StartSync(sync_pb2.StartSyncRequest(fabric_id=flow.fabric.id, mode=sync_pb2.SYNC_MODE_PULL))
    assert not started.already_active and started.run.mode == sync_pb2.SYNC_MODE_PULL
    events = list(client.stream_sync_progress(started.run.id, timeout=120))

    stages = [e.WhichOneof("payload") for e in events]
    assert stages[0] == "queued" and stages[-1] == "finished", stages
    for stage in ("fetching", "parsing", "validating", "persisting"):
        assert stage in stages
    assert all(a < b for a, b in itertools.pairwise(sequences(events)))
    counters = events[-1].finished.counters
    objects = sum(OBJECTS.values())
    assert (counters.files, counters.documents, counters.created, counters.errors) == (4, objects, objects, 0), counters

    run = client.sync.GetSyncRun(sync_pb2.GetSyncRunRequest(id=started.run.id)).run
    # References to objects the sample does not hold (switches, connections) are warnings.
    warnings = [d for d in run.diagnostics if d.severity == common_pb2.SEVERITY_WARNING]
    assert counters.warnings == len(warnings) > 0 and all(d.code == "ref.unresolved" for d in warnings)
    assert run.status == sync_pb2.SYNC_RUN_STATUS_SUCCEEDED and run.last_sequence == events[-1].sequence
    assert run.commit and run.commit == events[-1].finished.commit
    assert {k.kind: k.count for k in run.kind_counts} == OBJECTS

    # Two items a page: five pages, every stored object once.
    stored = list(client.list_resources(flow.fabric.id, page_size=2))
    assert len(stored) == objects and len({r.id for r in stored}) == objects
    vpcs = list(client.list_resources(flow.fabric.id, filter="kind=VPC", include_objects=True))
    assert len(vpcs) == OBJECTS["VPC"] and all(r.desired.fields["spec"] for r in vpcs)
    flow.pull_run = run


def test_a_change_is_written_to_git_on_a_review_branch(client: Client, flow: Flow, env: Env) -> None:
    key = common_pb2.ResourceKey(group="vpc.githedgehog.com", kind="VPC", namespace="default", name="demo-vpc-1")
    vpc = client.fabrics.GetResource(fabric_pb2.GetResourceRequest(fabric_id=flow.fabric.id, key=key)).resource.desired
    vpc["spec"]["subnets"]["default"]["dhcp"]["range"]["end"] = "10.10.101.70"
    branch = unique("review/sdk-python")
    request = write_pb2.ChangeObjectsRequest(
        fabric_id=flow.fabric.id,
        changes=[write_pb2.ObjectChange(upsert=vpc)],
        commit=write_pb2.CommitOptions(message="sdk-python: a smaller DHCP range", branch=branch),
    )
    result = client.write.ChangeObjects(request).result
    assert result.outcome == write_pb2.WRITE_OUTCOME_COMMITTED and result.branch == branch, result
    assert [f.path for f in result.files] == ["fabric/pre-demo.yaml"], result.files
    assert "+          end: 10.10.101.70" in result.files[0].diff, result.files[0].diff
    assert not result.run_id, "a review branch is not pulled"
    head = subprocess.run(["git", "-C", env.git_dir, "rev-parse", branch], capture_output=True, text=True, check=True)
    assert head.stdout.strip() == result.commit


def test_progress_resumes_from_a_sequence_without_duplicates_or_gaps(client: Client, flow: Flow) -> None:
    assert flow.pull_run is not None
    run_id = flow.pull_run.id
    everything = list(client.stream_sync_progress(run_id, timeout=60))
    # Cancel mid-way (leaving the loop cancels the RPC), then resume after the last event seen.
    head = list(itertools.islice(client.stream_sync_progress(run_id, timeout=60), 3))
    tail = list(client.stream_sync_progress(run_id, from_sequence=head[-1].sequence, timeout=60))
    assert sequences(head + tail) == sequences(everything)
    assert head + tail == everything
    # After the last event of a finished run there is nothing more, and the stream ends.
    assert list(client.stream_sync_progress(run_id, from_sequence=flow.pull_run.last_sequence, timeout=60)) == []


async def test_apply_reaches_the_cluster(env: Env, flow: Flow) -> None:
    async with AsyncClient(env.addr, token=env.token) as client:
        request = sync_pb2.StartSyncRequest(fabric_id=flow.fabric.id, mode=sync_pb2.SYNC_MODE_APPLY)
        run = (await client.sync.StartSync(request)).run
        events = [e async for e in client.stream_sync_progress(run.id, timeout=120)]
        assert events[-1].WhichOneof("payload") == "finished", events[-1]
        applying = [e.applying for e in events if e.WhichOneof("payload") == "applying"]
        objects = sum(OBJECTS.values())
        assert applying and (applying[-1].done, applying[-1].total) == (objects, objects)
        assert events[-1].finished.counters.applied == objects

        # wait_for_run on a finished run: the replayed events, then the run.
        seen: List[sync_pb2.SyncProgressEvent] = []
        done = await client.wait_for_run(run.id, on_event=seen.append, timeout=60)
        assert done.status == sync_pb2.SYNC_RUN_STATUS_SUCCEEDED and seen == events
        runs = [r async for r in client.list_sync_runs(filter=f"fabric_id={flow.fabric.id}", page_size=1)]
        assert [r.mode for r in runs] == [sync_pb2.SYNC_MODE_APPLY, sync_pb2.SYNC_MODE_PULL]

    vpcs = env.kubectl_run("get", "vpcs.vpc.githedgehog.com", "-n", "default", "-l", f"{LABEL}={flow.fabric.name}", "-o", "name")
    assert sorted(vpcs.split()) == sorted(f"vpc.vpc.githedgehog.com/{n}" for n in ("demo-vpc-1", "demo-vpc-2", "demo-vpc-3", "vpc-test"))


def patch_vlan(env: Env, vlan: int) -> None:
    body = json.dumps({"spec": {"subnets": {"subnet-1": {"vlan": vlan}}}})
    env.kubectl_run("patch", "vpcs.vpc.githedgehog.com", PATCHED[2], "-n", "default", "--type", "merge", "-p", body)


def test_watch_events_and_resume(client: Client, env: Env, flow: Flow) -> None:
    get = lambda: client.fabrics.GetFabric(fabric_pb2.GetFabricRequest(id=flow.fabric.id)).fabric  # noqa: E731
    poll("watch active", get, lambda f: f.watch_status == fabric_pb2.WATCH_STATUS_ACTIVE)
    # Active means every kind was listed, not that the apply's last wave was seen: wait until
    # the watch stored every applied object, so its ADDED events come before the patch's.
    live = lambda: [r.live_resource_version for r in client.list_resources(flow.fabric.id)]  # noqa: E731
    poll("the watch saw the apply", live, lambda versions: len(versions) == sum(OBJECTS.values()) and all(versions))
    patch_vlan(env, 1198)

    # From 0: every applied object's ADDED, then the patch, with who made it.
    events = take_until(client.watch_fabric_events(flow.fabric.id, timeout=60), is_patch)
    added = {(e.key.kind, e.key.name) for e in events if e.type == sync_pb2.FABRIC_EVENT_TYPE_ADDED}
    assert len(added) == sum(OBJECTS.values()) and ("VPC", "demo-vpc-3") in added
    assert all(a < b for a, b in itertools.pairwise(sequences(events)))
    modified = events[-1]
    assert modified.object.fields["spec"].struct_value.fields["subnets"].struct_value.fields["subnet-1"].struct_value.fields["vlan"].number_value == 1198
    assert modified.resource_version and modified.key.namespace == "default"

    # Cancelled after three events and resumed from the last one: the same events, once each.
    head = list(itertools.islice(client.watch_fabric_events(flow.fabric.id, timeout=60), 3))
    tail = take_until(client.watch_fabric_events(flow.fabric.id, from_sequence=head[-1].sequence, timeout=60), is_patch)
    assert sequences(head + tail) == sequences(events)

    # The kinds filter.
    vpc_only = take_until(client.watch_fabric_events(flow.fabric.id, kinds=["VPC"], timeout=60), is_patch)
    assert {e.key.kind for e in vpc_only} == {"VPC"} and len(vpc_only) == OBJECTS["VPC"] + 1
    flow.modified = modified


async def test_watch_resumes_after_a_dropped_connection(env: Env, flow: Flow) -> None:
    assert flow.modified is not None
    last = flow.modified.sequence
    proxy = CuttableProxy(env.addr)
    received: "asyncio.Queue[sync_pb2.FabricEvent]" = asyncio.Queue()
    try:
        async with AsyncClient(proxy.address, token=env.token, resume=ResumePolicy(initial_backoff=0.05)) as client:

            async def consume() -> None:
                async with contextlib.aclosing(client.watch_fabric_events(flow.fabric.id, from_sequence=last, timeout=90)) as events:
                    async for event in events:
                        await received.put(event)

            consumer = asyncio.create_task(consume())
            await asyncio.to_thread(poll, "stream connected", lambda: proxy.accepted, lambda n: n >= 1, 30)
            await asyncio.sleep(0.5)
            proxy.cut()  # the open stream fails with UNAVAILABLE; the helper reconnects
            await asyncio.to_thread(patch_vlan, env, 1197)
            event = await asyncio.wait_for(received.get(), 60)
            consumer.cancel()
    finally:
        proxy.close()
    assert proxy.accepted >= 2, "the stream did not reconnect"
    assert event.sequence > last and is_patch(event), event
    assert event.object.fields["spec"].struct_value.fields["subnets"].struct_value.fields["subnet-1"].struct_value.fields["vlan"].number_value == 1197
    assert received.empty()


def drifted_key() -> common_pb2.ResourceKey:
    return common_pb2.ResourceKey(group=PATCHED[0], kind=PATCHED[1], namespace="default", name=PATCHED[2])


def test_drift_names_the_field_and_who_changed_it(client: Client, flow: Flow) -> None:
    request = drift_pb2.GetResourceDriftRequest(fabric_id=flow.fabric.id, key=drifted_key())
    # Drifted since the first patch; wait for the live value of the last one (1197).
    drift = poll(
        "drifted to 1197",
        lambda: client.drift.GetResourceDrift(request).drift,
        lambda d: d.status == fabric_pb2.RESOURCE_DRIFT_STATUS_DRIFTED and any(f.live.number_value == 1197 for f in d.fields),
    )
    assert [f.path for f in drift.fields] == ["/spec/subnets/subnet-1/vlan"], drift
    field = drift.fields[0]
    assert (field.desired.number_value, field.live.number_value) == (1131, 1197)
    assert field.managers[0].manager == "kubectl-patch", field.managers
    assert "vlan" in drift.unified_diff and 0 < drift.score <= 1

    summary = client.drift.GetFabricDrift(drift_pb2.GetFabricDriftRequest(fabric_id=flow.fabric.id)).summary
    assert summary.drift_status == fabric_pb2.DRIFT_STATUS_DRIFTED and summary.drift_count == 1, summary
    listed = list(client.list_drifted_resources(flow.fabric.id, page_size=1))
    assert [(d.key.kind, d.key.name) for d in listed] == [("VPC", PATCHED[2])]
    assert list(client.list_drifted_resources(flow.fabric.id, filter="status=missing")) == []
    with pytest.raises(NotFound):
        missing = common_pb2.ResourceKey(group=PATCHED[0], kind="VPC", namespace="default", name="nowhere")
        client.drift.GetResourceDrift(drift_pb2.GetResourceDriftRequest(fabric_id=flow.fabric.id, key=missing))


async def test_drift_stream_and_resume(env: Env, flow: Flow) -> None:
    def is_drifted(e: drift_pb2.DriftEvent) -> bool:
        return e.drift.key.name == PATCHED[2] and e.drift.status == fabric_pb2.RESOURCE_DRIFT_STATUS_DRIFTED

    async def until_drifted(from_sequence: int = 0, limit: Optional[int] = None) -> List[drift_pb2.DriftEvent]:
        taken: List[drift_pb2.DriftEvent] = []
        async with contextlib.aclosing(client.stream_drift(flow.fabric.id, from_sequence=from_sequence, timeout=60)) as events:
            async for event in events:
                taken.append(event)
                if is_drifted(event) or len(taken) == limit:
                    return taken
        raise AssertionError(f"the drift stream ended early: {taken}")

    async with AsyncClient(env.addr, token=env.token) as client:
        everything = await until_drifted()
        assert all(a < b for a, b in itertools.pairwise(sequences(everything)))
        assert everything[-1].drift.fields[0].path == "/spec/subnets/subnet-1/vlan"
        head = await until_drifted(limit=2) if len(everything) > 2 else everything[:1]
        tail = await until_drifted(from_sequence=head[-1].sequence)
        assert sequences(head + tail) == sequences(everything)

        summary = (await client.drift.DetectDrift(drift_pb2.DetectDriftRequest(fabric_id=flow.fabric.id))).summary
        assert summary.drift_count == 1 and summary.drift_status == fabric_pb2.DRIFT_STATUS_DRIFTED


def test_delete_fabric_then_repository(client: Client, flow: Flow) -> None:
    repo_id, fabric_id = flow.repository.id, flow.fabric.id
    with pytest.raises(FailedPrecondition) as in_use:
        client.repositories.DeleteRepository(repository_pb2.DeleteRepositoryRequest(id=repo_id))
    assert flow.fabric.name in in_use.value.message
    fabric = client.fabrics.GetFabric(fabric_pb2.GetFabricRequest(id=fabric_id)).fabric
    client.fabrics.DeleteFabric(fabric_pb2.DeleteFabricRequest(id=fabric_id, etag=fabric.etag))
    client.repositories.DeleteRepository(repository_pb2.DeleteRepositoryRequest(id=repo_id))
    with pytest.raises(NotFound):
        client.fabrics.GetFabric(fabric_pb2.GetFabricRequest(id=fabric_id))
    with pytest.raises(NotFound):
        list(client.watch_fabric_events(fabric_id, timeout=10))

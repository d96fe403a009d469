"""What the tests share: the real parts that tests/sdk-fixture.sh started (a fabricsync server,
a Git repository, a kube-apiserver), an SDK client to set up state, and NetBox users."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import uuid
from typing import Any, Callable, TypeVar

from django.contrib.auth import get_user_model
from fabricsync.v1 import drift_pb2, fabric_pb2, inventory_pb2, repository_pb2, sync_pb2
from fabricsync_client import Client

T = TypeVar("T")
ENV = os.environ
ADDR = ENV["FABRICSYNC_ADDR"]
GIT_URL, GIT_DIR = ENV["FABRICSYNC_GIT_URL"], ENV["FABRICSYNC_GIT_DIR"]
WIRING = "generated/fabric"  # a generated fabric of 81 objects (Switches, Servers, Connections, VPCs)
WIRING_SWITCH = "leaf-0000-a"
WIRING_CONNECTION = "spine-01--fabric--leaf-0000-a"
PATCHED = "demo-vpc-3"  # a VPC of the demo fabric; its subnet-1 vlan is 1131 in Git

_client: Client | None = None


def sdk() -> Client:
    """The tests' own client (setting state up and checking it), with the fixture's token."""
    global _client
    if _client is None:
        _client = Client(ADDR, token=ENV.get("FABRICSYNC_TOKEN") or None)
    return _client


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def poll(what: str, get: Callable[[], T], done: Callable[[T], bool], timeout: float = 60) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = get()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"{what}: not reached in {timeout} s; last: {value}"
        time.sleep(0.2)


def kubectl(*args: str, stdin: str | None = None) -> str:
    out = subprocess.run([ENV["FABRICSYNC_KUBECTL"], *args], input=stdin, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"kubectl {' '.join(args)}: {out.stderr}"
    return out.stdout


def cluster_input(namespace: str = "default") -> fabric_pb2.ClusterConnectionInput:
    with open(ENV["FABRICSYNC_KUBE_CA_FILE"]) as f:
        return fabric_pb2.ClusterConnectionInput(server_url=ENV["FABRICSYNC_KUBE_URL"], ca_certificate_pem=f.read(), bearer_token=ENV["FABRICSYNC_KUBE_TOKEN"], namespace=namespace)


def create_repository(name: str | None = None) -> repository_pb2.Repository:
    repository = repository_pb2.Repository(name=name or unique("repo"), url=GIT_URL)
    return sdk().repositories.CreateRepository(repository_pb2.CreateRepositoryRequest(repository=repository)).repository


def create_fabric(repository: repository_pb2.Repository, path: str = ENV["FABRICSYNC_GITOPS_PATH"], namespace: str | None = "default") -> fabric_pb2.Fabric:
    """A fabric of the repository's directory; with a cluster connection unless namespace is None."""
    fabric = fabric_pb2.Fabric(name=unique("fab"), repository_id=repository.id, git_ref="main", gitops_path=path)
    request = fabric_pb2.CreateFabricRequest(fabric=fabric, cluster=cluster_input(namespace) if namespace else None)
    return sdk().fabrics.CreateFabric(request).fabric


def patch_vlan(namespace: str, vlan: int) -> None:
    body = json.dumps({"spec": {"subnets": {"subnet-1": {"vlan": vlan}}}})
    kubectl("patch", "vpcs.vpc.githedgehog.com", PATCHED, "-n", namespace, "--type", "merge", "-p", body)


def live_vlan(namespace: str) -> str:
    return kubectl("get", "vpcs.vpc.githedgehog.com", PATCHED, "-n", namespace, "-o", "jsonpath={.spec.subnets.subnet-1.vlan}")


def drifted_fabric() -> fabric_pb2.Fabric:
    """The demo fabric pulled and applied, watched, with the PATCHED VPC's vlan changed by
    kubectl (1131 in Git, 1198 live): one drifted resource."""
    namespace = "default"
    fabric = create_fabric(create_repository(), namespace=namespace)
    run_to_end(fabric.id, sync_pb2.SYNC_MODE_PULL)
    run_to_end(fabric.id, sync_pb2.SYNC_MODE_APPLY)
    get = lambda: sdk().fabrics.GetFabric(fabric_pb2.GetFabricRequest(id=fabric.id)).fabric  # noqa: E731
    poll("watch active", get, lambda f: f.watch_status == fabric_pb2.WATCH_STATUS_ACTIVE)
    patch_vlan(namespace, 1198)
    drift = lambda: sdk().drift.GetFabricDrift(drift_pb2.GetFabricDriftRequest(fabric_id=fabric.id)).summary  # noqa: E731
    poll("drifted", drift, lambda s: s.drift_count == 1)
    return get()


def run_to_end(fabric_id: str, mode: int) -> sync_pb2.SyncRun:
    run = sdk().sync.StartSync(sync_pb2.StartSyncRequest(fabric_id=fabric_id, mode=mode)).run
    done = sdk().wait_for_run(run.id, timeout=120)
    assert done.status == sync_pb2.SYNC_RUN_STATUS_SUCCEEDED, done
    return done


def import_inventory(fabric_id: str) -> sync_pb2.SyncRun:
    run = sdk().inventory.StartInventoryImport(inventory_pb2.StartInventoryImportRequest(fabric_id=fabric_id)).run
    done = sdk().wait_for_run(run.id, timeout=120)
    assert done.status == sync_pb2.SYNC_RUN_STATUS_SUCCEEDED, done
    return done


_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../../../.."))
_SAMPLES = os.path.join(_ROOT, "server/tests/data/samples")
KUBEVIRT = os.path.join(_ROOT, "server/tests/data/kubevirt")  # KubeVirt's CRDs and example VM


def git(*args: str) -> None:
    subprocess.run(["git", "-C", GIT_DIR, "-c", "user.name=test", "-c", "user.email=test@example.com", *args], check=True)


def _commit_dir(path: str, files: dict[str, str]) -> str:
    """Commits the files into a directory of the fixture's repository (once); returns it."""
    target = os.path.join(GIT_DIR, path)
    if not os.path.isdir(target):
        os.makedirs(target)
        for name, text in files.items():
            with open(os.path.join(target, name), "w") as f:
                f.write(text)
        git("add", ".")
        git("commit", "-q", "-m", f"add {path}")
    return path


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def add_wiring() -> str:
    """A fabric that `fabricsync generate` writes (Switches, Servers, Connections), committed."""
    target = os.path.join(GIT_DIR, os.path.dirname(WIRING))
    if not os.path.isdir(target):
        binary = ENV.get("FABRICSYNC_BIN") or os.path.join(_ROOT, "target/debug/fabricsync")
        subprocess.run([binary, "generate", "--resources", "60", "--out", target], check=True, capture_output=True)
        git("add", ".")
        git("commit", "-q", "-m", "a generated fabric")
    return WIRING


def demo_in_namespace(namespace: str) -> str:
    """The demo fabric with its objects in another namespace, so that several fabrics can be
    applied to the one cluster without sharing objects."""
    demo = os.path.join(_SAMPLES, "demo-gitops")
    files = {n: _read(os.path.join(demo, n)).replace("namespace: default", f"namespace: {namespace}") for n in os.listdir(demo)}
    return _commit_dir(f"demo-{namespace}", files)


def superuser(name: str = "admin") -> Any:
    return get_user_model().objects.create_user(name, password="x", is_superuser=True)


def closed_address() -> str:
    """A loopback address where nothing listens (a stopped fabricsync)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"

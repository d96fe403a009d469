"""Registers a Git repository and a fabric, pulls it with live progress, lists what was stored.

    python pull_fabric.py --addr localhost:50051 --git-url file:///path/to/repo --path fabric \
        [--ca-file ca.pem] [--token TOKEN] [--name demo]
"""

from __future__ import annotations

import argparse
import sys

from fabricsync.v1 import fabric_pb2, repository_pb2, sync_pb2

from fabricsync_client import AlreadyExists, Client, FabricSyncError, InvalidArgument


def show(event: sync_pb2.SyncProgressEvent) -> None:
    stage = event.WhichOneof("payload")
    if stage == "parsing":
        print(f"  parsing {event.parsing.file_index}/{event.parsing.file_count} {event.parsing.path}")
    elif stage == "finished":
        print(f"  finished at {event.finished.commit[:12]}: {event.finished.counters.created} created")
    elif stage == "failed":
        print(f"  failed: {event.failed.message}")
    else:
        print(f"  {stage}")


def run(client: Client, name: str, git_url: str, path: str) -> int:
    try:
        repo = client.repositories.CreateRepository(
            repository_pb2.CreateRepositoryRequest(repository=repository_pb2.Repository(name=name, url=git_url))
        ).repository
    except AlreadyExists:
        repo = next(client.list_repositories(filter=f"name={name}"))
    except InvalidArgument as e:
        for violation in e.field_violations:  # one per bad field, named by its request path
            print(f"{violation.field}: {violation.description}", file=sys.stderr)
        return 2

    fabric = fabric_pb2.Fabric(name=name, repository_id=repo.id, gitops_path=path)
    try:
        fabric = client.fabrics.CreateFabric(fabric_pb2.CreateFabricRequest(fabric=fabric)).fabric
    except AlreadyExists:
        fabric = next(client.list_fabrics(filter=f"name={name}"))

    started = client.sync.StartSync(sync_pb2.StartSyncRequest(fabric_id=fabric.id, mode=sync_pb2.SYNC_MODE_PULL))
    print(f"run {started.run.id}")
    done = client.wait_for_run(started.run.id, on_event=show)
    if done.status != sync_pb2.SYNC_RUN_STATUS_SUCCEEDED:
        print(f"run {sync_pb2.SyncRunStatus.Name(done.status)}: {done.error}", file=sys.stderr)
        return 1
    for resource in client.list_resources(fabric.id, page_size=100):
        print(f"{resource.key.kind} {resource.key.namespace}/{resource.key.name}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--addr", default="localhost:50051")
    parser.add_argument("--ca-file", help="CA of the server's certificate (TLS); plaintext without it")
    parser.add_argument("--token", help="bearer token sent on every call")
    parser.add_argument("--git-url", required=True)
    parser.add_argument("--path", default="", help="the fabric's directory in the repository")
    parser.add_argument("--name", default="demo")
    args = parser.parse_args()
    try:
        with Client(args.addr, ca_file=args.ca_file, token=args.token) as client:
            return run(client, args.name, args.git_url, args.path)
    except FabricSyncError as e:
        print(f"fabricsync: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

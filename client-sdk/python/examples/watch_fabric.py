"""Follows a fabric's cluster events and drift changes with asyncio, resuming after dropped
connections; prints each and stops after --limit events of each stream (0 = never).

    python watch_fabric.py --addr localhost:50051 --fabric NAME [--from-sequence N] [--limit N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from typing import AsyncGenerator, Callable, TypeVar

from fabricsync.v1 import drift_pb2, fabric_pb2, sync_pb2

from fabricsync_client import AsyncClient, FabricSyncError, NotFound

E = TypeVar("E")


async def follow(events: AsyncGenerator[E, None], show: Callable[[E], str], limit: int) -> None:
    # aclosing: leaving the loop early cancels the RPC at once.
    async with contextlib.aclosing(events) as stream:
        count = 0
        async for event in stream:
            print(show(event), flush=True)
            count += 1
            if count == limit:
                return


def show_event(e: sync_pb2.FabricEvent) -> str:
    kind = sync_pb2.FabricEventType.Name(e.type).removeprefix("FABRIC_EVENT_TYPE_")
    return f"event {e.sequence} {kind} {e.key.kind} {e.key.namespace}/{e.key.name} by {e.field_manager or '?'}"


def show_drift(e: drift_pb2.DriftEvent) -> str:
    status = fabric_pb2.ResourceDriftStatus.Name(e.drift.status).removeprefix("RESOURCE_DRIFT_STATUS_")
    fields = ", ".join(f.path for f in e.drift.fields)
    return f"drift {e.sequence} {e.drift.key.kind} {e.drift.key.name} {status} {fields}".rstrip()


async def watch(client: AsyncClient, name: str, from_sequence: int, limit: int) -> int:
    fabric = None
    async for f in client.list_fabrics(filter=f"name={name}"):
        fabric = f
    if fabric is None:
        print(f"no fabric named {name}", file=sys.stderr)
        return 1
    await asyncio.gather(
        follow(client.watch_fabric_events(fabric.id, from_sequence), show_event, limit),
        follow(client.stream_drift(fabric.id, from_sequence), show_drift, limit),
    )
    return 0


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--addr", default="localhost:50051")
    parser.add_argument("--ca-file")
    parser.add_argument("--token")
    parser.add_argument("--fabric", required=True, help="fabric name")
    parser.add_argument("--from-sequence", type=int, default=0, help="resume after this sequence (0 = all stored events)")
    parser.add_argument("--limit", type=int, default=0)
    args = parser.parse_args()
    try:
        async with AsyncClient(args.addr, ca_file=args.ca_file, token=args.token) as client:
            return await watch(client, args.fabric, args.from_sequence, args.limit)
    except NotFound as e:
        print(f"not found: {e.message}", file=sys.stderr)
        return 1
    except FabricSyncError as e:
        print(f"fabricsync: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

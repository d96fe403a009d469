"""A run's progress events as the live run page shows them: one line of stage and numbers,
and a server-sent event carrying it with the event's sequence as its id (so a reconnecting
browser resumes after the last event it showed, through Last-Event-ID, on any worker)."""

from __future__ import annotations

import json
from typing import Any

from fabricsync.v1 import sync_pb2

from .present import key_text

TERMINAL = ("finished", "failed", "cancelled")


def view(event: sync_pb2.SyncProgressEvent) -> dict[str, Any]:
    """{stage, text, done, total, wave, terminal} of one progress event."""
    stage = event.WhichOneof("payload") or "unknown"
    body = getattr(event, stage) if stage != "unknown" else None
    done = total = wave = 0
    text = stage
    if stage == "fetching":
        text = f"fetching: {body.objects} objects, {body.bytes} bytes"
    elif stage == "parsing":
        done, total = body.file_index, body.file_count
        text = f"parsing {body.path} ({done} of {total} files)"
    elif stage == "validating":
        text = f"validating {body.documents} documents"
    elif stage == "persisting":
        done, total = body.done, body.total
        text = f"persisting {done} of {total}"
    elif stage == "applying":
        done, total, wave = body.done, body.total, body.wave
        text = f"applying wave {wave}: {done} of {total}" + (f" ({key_text(body.key)})" if body.key.kind else "")
    elif stage == "rollout":
        done, total = body.up_to_date, body.total
        waiting = f"; waiting for {', '.join(body.waiting_for)}" if body.waiting_for else ""
        text = f"rolled out on {done} of {total} switches{waiting}"
    elif stage == "inventory":
        kind = f"{body.kind} ({body.cluster})" if body.cluster else body.kind  # of an extra inventory cluster
        text = f"{kind}: {body.kept} of {body.listed} kept" if body.served else f"{kind}: not served by the cluster"
    elif stage == "finished":
        text = f"finished at {body.commit[:12]}" if body.commit else "finished"
    elif stage == "failed":
        text = f"failed: {body.message}"
    elif stage == "warning":
        text = f"warning {body.code}: {body.message}"
    return {"sequence": event.sequence, "stage": stage, "text": text, "done": done, "total": total, "wave": wave, "terminal": stage in TERMINAL}


def sse(name: str, data: dict[str, Any], event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data)}\n\n"

"""Server-side render times of the plugin's pages (NetBox's own request handling, in process,
with the real gRPC calls to fabricsync): the fabric list with 100 fabrics, the fabric detail,
the resources tab and the drift tab of a 10,000-resource fabric, and the time from pressing
Pull to the first progress event relayed to the browser. Run by dev/bench.sh inside
`netbox shell`; prints a Markdown table."""

import os
import statistics
import subprocess
import time

from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from fabricsync.v1 import fabric_pb2, sync_pb2

from netbox_fabricsync.tests import support

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "20"))


def url(name, **kwargs):
    return reverse(f"plugins:netbox_fabricsync:{name}", kwargs=kwargs)


def timed(fn):
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def summary(samples):
    samples = sorted(samples)
    return f"{statistics.median(samples):.0f} ms", f"{samples[int(len(samples) * 0.95) - 1]:.0f} ms"


def main():
    big_dir = os.path.join(support.GIT_DIR, "big")
    if not os.path.isdir(big_dir):
        subprocess.run([os.environ.get("FABRICSYNC_BIN", "target/debug/fabricsync"), "generate", "--resources", "10000", "--out", big_dir], check=True, capture_output=True)
        support.git("add", ".")
        support.git("commit", "-q", "-m", "a 10,000-object fabric")
    repository = support.create_repository()
    big = support.create_fabric(repository, path="big", namespace=None)
    started = time.perf_counter()
    pulled = support.run_to_end(big.id, sync_pb2.SYNC_MODE_PULL)
    pull_seconds = time.perf_counter() - started
    for _ in range(99):
        support.create_fabric(repository, namespace=None)
    total = support.sdk().fabrics.ListFabrics(fabric_pb2.ListFabricsRequest(page_size=1)).total_size
    small = support.create_fabric(repository, namespace=None)

    user, _ = get_user_model().objects.get_or_create(username="bench", defaults={"is_superuser": True})
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)

    def page(path):
        def get():
            response = client.get(path)
            assert response.status_code == 200, (path, response.status_code, response.content[:500])
        return get

    pages = {
        f"fabric list ({total} fabrics, 100 a page)": page(url("fabric_list")),
        "fabric detail (10,000 resources)": page(url("fabric", pk=big.id)),
        "resources tab (10,000 resources, 50 a page)": page(url("fabric_resources", pk=big.id)),
        "resources tab, filtered kind=Connection": page(url("fabric_resources", pk=big.id) + "?kind=Connection"),
        "drift tab (10,000 resources)": page(url("fabric_drift", pk=big.id)),
    }
    # For comparison: one of NetBox's own list pages (no fabricsync call), and the gRPC calls
    # of the fabric detail and list pages alone.
    fs = support.sdk()
    pages["NetBox's own site list (for comparison)"] = page("/dcim/sites/")
    calls = {
        "gRPC alone: ListFabrics(100)": lambda: fs.fabrics.ListFabrics(fabric_pb2.ListFabricsRequest(page_size=100)),
        "gRPC alone: GetFabric": lambda: fs.fabrics.GetFabric(fabric_pb2.GetFabricRequest(id=big.id)),
        "gRPC alone: ListSyncRuns(5)": lambda: fs.sync.ListSyncRuns(sync_pb2.ListSyncRunsRequest(filter=f"fabric_id={big.id}", page_size=5)),
    }
    rows = []
    for name, call in calls.items():
        call()
        rows.append((name, *summary([timed(call) for _ in range(ROUNDS)])))
    for name, get in pages.items():
        get()  # warm: the channel, templates
        rows.append((name, *summary([timed(get) for _ in range(ROUNDS)])))

    def pull_to_first_progress():
        start = time.perf_counter()
        response = client.post(url("fabric_sync", pk=small.id), {"mode": "pull"})
        run_id = response.url.rstrip("/").split("/")[-1]
        stream = client.get(url("run_events", pk=run_id))
        chunks = iter(stream.streaming_content)
        first = next(chunks)
        elapsed = (time.perf_counter() - start) * 1000
        assert b"event: progress" in first, first
        for _ in chunks:  # to the run's end, so that the next press starts a new run
            pass
        return elapsed

    rows.append(("Pull pressed to first progress event", *summary([pull_to_first_progress() for _ in range(ROUNDS)])))
    print(f"\n10,000-resource fabric: {pulled.counters.documents} documents pulled in {pull_seconds:.1f} s; {ROUNDS} rounds per row\n")
    print("| page | median | p95 |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


main()

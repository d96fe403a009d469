"""The peer of a fabricsync pull, done the way the Python NetBox plugin does it: clone or fetch
the repository, yaml.safe_load_all every file, and upsert each object with psycopg into an
equivalent table. Prints one JSON line of timings (seconds)."""

import argparse
import hashlib
import json
import os
import subprocess
import tempfile
import time

import psycopg
import yaml

TABLE = """
CREATE TABLE IF NOT EXISTS baseline_resources (
    api_group text NOT NULL, kind text NOT NULL, namespace text NOT NULL, name text NOT NULL,
    desired jsonb NOT NULL, desired_hash text NOT NULL, source_file text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (api_group, kind, namespace, name))
"""
UPSERT = """
INSERT INTO baseline_resources (api_group, kind, namespace, name, desired, desired_hash, source_file)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (api_group, kind, namespace, name) DO UPDATE
SET desired = EXCLUDED.desired, desired_hash = EXCLUDED.desired_hash,
    source_file = EXCLUDED.source_file, updated_at = now()
"""


def pull(url, checkout, gitops, conn):
    """One pull; returns (seconds per stage, objects)."""
    times = {}
    started = time.perf_counter()
    if os.path.isdir(checkout):
        subprocess.run(["git", "-C", checkout, "pull", "-q", "--ff-only"], check=True)
    else:
        subprocess.run(["git", "clone", "-q", url, checkout], check=True)
    times["git"] = time.perf_counter() - started

    mark = time.perf_counter()
    objects = []
    root = os.path.join(checkout, gitops)
    for folder, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            if not name.endswith((".yaml", ".yml")):
                continue
            path = os.path.join(folder, name)
            with open(path, encoding="utf-8") as handle:
                for doc in yaml.safe_load_all(handle):
                    if isinstance(doc, dict) and "kind" in doc:
                        objects.append((os.path.relpath(path, checkout), doc))
    times["parse"] = time.perf_counter() - mark

    mark = time.perf_counter()
    with conn.cursor() as cur:
        for source, doc in objects:
            group = doc.get("apiVersion", "").split("/")[0]
            meta = doc.get("metadata") or {}
            body = json.dumps(doc, sort_keys=True, default=str)
            cur.execute(UPSERT, (group, doc["kind"], meta.get("namespace", "default"), meta.get("name", ""),
                                 body, hashlib.sha256(body.encode()).hexdigest(), source))
    conn.commit()
    times["db"] = time.perf_counter() - mark
    times["total"] = time.perf_counter() - started
    return times, len(objects)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repo", required=True, help="path of the Git repository to pull")
    parser.add_argument("--gitops", default="fabric")
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--change-file", required=True, help="repository-relative file to edit for the one-change pull")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with psycopg.connect(args.database_url) as conn, tempfile.TemporaryDirectory() as work:
        conn.execute(TABLE)
        conn.execute("TRUNCATE baseline_resources")
        conn.commit()
        checkout = os.path.join(work, "checkout")
        first, objects = pull("file://" + args.repo, checkout, args.gitops, conn)
        noop = [pull("file://" + args.repo, checkout, args.gitops, conn)[0] for _ in range(args.repeat)]
        changed = []
        for i in range(args.repeat):
            path = os.path.join(args.repo, args.change_file)
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(f"# baseline edit {i}\n")
            subprocess.run(["git", "-C", args.repo, "commit", "-q", "-am", f"baseline edit {i}"], check=True)
            changed.append(pull("file://" + args.repo, checkout, args.gitops, conn)[0])
    median = lambda runs: sorted(runs, key=lambda t: t["total"])[len(runs) // 2]
    print(json.dumps({"objects": objects, "first": first, "noop": median(noop), "one_change": median(changed)}))


if __name__ == "__main__":
    main()

"""The examples run against the real server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers import Env, unique

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_pull_fabric_example(env: Env) -> None:
    name = unique("example")
    args = ["--addr", env.addr, "--token", env.token, "--git-url", env.git_url, "--path", env.gitops_path, "--name", name]
    out = subprocess.run([sys.executable, EXAMPLES / "pull_fabric.py", *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("run ") and "  queued" in lines and any(line.startswith("  finished at ") for line in lines)
    assert "VPC default/demo-vpc-1" in lines and "VPCPeering default/demo-vpc-1--demo-vpc-2" in lines
    # Run again: the repository and fabric exist (ALREADY_EXISTS is handled), nothing changes.
    again = subprocess.run([sys.executable, EXAMPLES / "pull_fabric.py", *args], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "  finished at" in again.stdout and ": 0 created" in again.stdout, again.stdout + again.stderr

    bad = subprocess.run([sys.executable, EXAMPLES / "pull_fabric.py", *args[:8], "--name", "Bad Name"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("repository.name: "), bad.stderr


def test_watch_fabric_example_reports_a_missing_fabric(env: Env) -> None:
    args = ["--addr", env.addr, "--token", env.token, "--fabric", unique("nowhere"), "--limit", "1"]
    out = subprocess.run([sys.executable, EXAMPLES / "watch_fabric.py", *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "no fabric named" in out.stderr, out.stderr

"""Test helpers: the fixture's environment, kubectl, polling, and a TCP proxy whose
connections can be cut to make a real server's streams fail with UNAVAILABLE."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import threading
import time
import uuid
from typing import Callable, List, TypeVar

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Env:
    """What tests/sdk-fixture.sh exports."""

    addr: str
    git_url: str
    git_dir: str
    gitops_path: str
    kube_url: str
    kube_ca_file: str
    kube_token: str
    kubectl: str
    token: str
    viewer_token: str
    operator_token: str

    @staticmethod
    def from_environ() -> "Env":
        e = os.environ
        return Env(
            addr=e["FABRICSYNC_ADDR"],
            git_url=e["FABRICSYNC_GIT_URL"],
            git_dir=e["FABRICSYNC_GIT_DIR"],
            gitops_path=e["FABRICSYNC_GITOPS_PATH"],
            kube_url=e["FABRICSYNC_KUBE_URL"],
            kube_ca_file=e["FABRICSYNC_KUBE_CA_FILE"],
            kube_token=e["FABRICSYNC_KUBE_TOKEN"],
            kubectl=e["FABRICSYNC_KUBECTL"],
            token=e["FABRICSYNC_TOKEN"],
            viewer_token=e["FABRICSYNC_VIEWER_TOKEN"],
            operator_token=e["FABRICSYNC_OPERATOR_TOKEN"],
        )

    def kubectl_run(self, *args: str) -> str:
        out = subprocess.run([self.kubectl, *args], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, f"kubectl {' '.join(args)}: {out.stderr}"
        return out.stdout


def unique(prefix: str) -> str:
    """A DNS-1123 name no other test (or earlier run on the same server) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def poll(what: str, get: Callable[[], T], done: Callable[[T], bool], timeout: float = 60) -> T:
    """Calls get() until done(value), every 0.2 s; fails after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = get()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"{what}: not reached in {timeout} s; last: {value}"
        time.sleep(0.2)


class CuttableProxy:
    """Forwards loopback TCP connections to the server; cut() drops every open connection
    (the client sees UNAVAILABLE) and new ones are accepted as before."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self._target = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self.accepted = 0
        self._sockets: List[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._target)
            with self._lock:
                self.accepted += 1
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.cut()


"""Redis servers the tests start themselves: a 3-master Redis Cluster, a Sentinel.

Each server is the machine's ``redis-server`` on a free loopback port, without persistence,
in a temporary folder, and ends with the test session (by its pid; also when the test
process dies, through ``PR_SET_PDEATHSIG``). Missing ``redis-server`` skips the tests with
the reason, or fails them under ``IOPROFILER_REQUIRE_REDIS_CLUSTER=1`` (CI).

The cluster is put together by hand (``CLUSTER ADDSLOTSRANGE`` and ``CLUSTER MEET``), not with
``redis-cli --cluster create``, which waits in whole seconds: it is ready in well under one.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis

from ioprofiler.memcached import _die_with_parent

HOST = "127.0.0.1"
REQUIRE = "IOPROFILER_REQUIRE_REDIS_CLUSTER"
SLOTS = 16384


def server_or_skip() -> str:
    """The ``redis-server`` program, or skip (a failure under ``REQUIRE=1``)."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.path.exists(binary):
        reason = "redis-server is not installed (Debian: apt-get install redis-server)"
        if os.environ.get(REQUIRE) == "1":
            pytest.fail(f"{reason} ({REQUIRE}=1 makes this a failure)")
        pytest.skip(reason)
    return binary


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            port = sock.getsockname()[1]
        if port + 10000 < 65536 and _bindable(port + 10000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


class RedisServer:
    """One ``redis-server`` on ``port``; ``lines`` are its configuration file's lines."""

    def __init__(self, binary: str, folder: Path, port: int, *lines: str, sentinel=False):
        self.port = port
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        conf = folder / "redis.conf"
        base = [f"port {port}", f"bind {HOST}", f'dir "{folder}"', "daemonize no"]
        if not sentinel:
            base += ['save ""', "appendonly no"]
        conf.write_text("\n".join([*base, *lines]) + "\n")
        command = [binary, str(conf)] + (["--sentinel"] if sentinel else [])
        self.log = folder / "server.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
            )
        self.client = redis.Redis(HOST, port, socket_connect_timeout=1)
        self._wait()

    def _wait(self) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                self.client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.02)
        self.stop()
        log = self.log.read_text()
        raise RuntimeError(f"redis-server on port {self.port} did not start: {log}")

    def stop(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def cluster_info(client: redis.Redis) -> dict[str, str]:
    info = client.execute_command("CLUSTER INFO")  # redis-py parses it into a dict
    return {str(k): str(v) for k, v in info.items()}


def wait_until(check, what: str, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.02)


class Cluster:
    """Three masters sharing the 16384 slots; ``nodes[i].port``, ``ports``."""

    def __init__(self, binary: str, folder: Path, count: int = 3) -> None:
        self.nodes: list[RedisServer] = []
        try:
            for i in range(count):
                port = free_cluster_port()
                self.nodes.append(
                    RedisServer(
                        binary,
                        folder / f"node{i}",
                        port,
                        "cluster-enabled yes",
                        f'cluster-config-file "{folder}/node{i}/nodes.conf"',
                        "cluster-node-timeout 5000",
                    )
                )
            self._assemble()
        except BaseException:
            self.stop()
            raise

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    def _assemble(self) -> None:
        share = SLOTS // len(self.nodes)
        for i, node in enumerate(self.nodes):
            last = SLOTS - 1 if i == len(self.nodes) - 1 else (i + 1) * share - 1
            node.client.execute_command("CLUSTER ADDSLOTSRANGE", i * share, last)
        for node in self.nodes[1:]:
            node.client.execute_command("CLUSTER MEET", HOST, self.nodes[0].port)

        def ready() -> bool:
            for node in self.nodes:
                info = cluster_info(node.client)
                if info.get("cluster_state") != "ok":
                    return False
                if int(info.get("cluster_known_nodes", 0)) != len(self.nodes):
                    return False
                if len(node.client.execute_command("CLUSTER SLOTS")) != len(self.nodes):
                    return False
            return True

        wait_until(ready, "the cluster's state to be ok on every node")

    def node_of(self, key: str) -> RedisServer:
        """The node serving ``key``'s slot."""
        slot = self.nodes[0].client.execute_command("CLUSTER KEYSLOT", key)
        for start, end, primary, *_replicas in self.nodes[0].client.execute_command(
            "CLUSTER SLOTS"
        ):
            if start <= slot <= end:
                return next(n for n in self.nodes if n.port == int(primary[1]))
        raise LookupError(key)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class SentinelSetup:
    """A master, one replica of it, and a Sentinel watching them as ``mymaster``."""

    NAME = "mymaster"

    def __init__(self, binary: str, folder: Path) -> None:
        self.servers: list[RedisServer] = []
        try:
            self.master = self._start(binary, folder / "master")
            self.replica = self._start(
                binary, folder / "replica", f"replicaof {HOST} {self.master.port}"
            )
            self.sentinel = self._start(
                binary,
                folder / "sentinel",
                f"sentinel monitor {self.NAME} {HOST} {self.master.port} 1",
                f"sentinel down-after-milliseconds {self.NAME} 60000",
                sentinel=True,
            )
            wait_until(self._ready, "the sentinel to see its master and replica")
        except BaseException:
            self.stop()
            raise

    def _start(self, binary: str, folder: Path, *lines: str, sentinel=False) -> RedisServer:
        server = RedisServer(binary, folder, free_port(), *lines, sentinel=sentinel)
        self.servers.append(server)
        return server

    def _ready(self) -> bool:
        client = self.sentinel.client
        master = client.execute_command("SENTINEL GET-MASTER-ADDR-BY-NAME", self.NAME)
        if not master or int(master[1]) != self.master.port:
            return False
        for fields in client.execute_command("SENTINEL REPLICAS", self.NAME):
            replica = {_text(k): _text(v) for k, v in fields.items()}
            if replica.get("port") == str(self.replica.port):
                return replica.get("flags") == "slave"  # what redis-py's slave_for asks
        return False

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]

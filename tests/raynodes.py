"""A real multi-node Ray cluster on the loopback interface: one ``ray start --head --block`` process and
N ``ray start --address ... --block`` worker processes, each with its own ports, a short
temp dir and token authentication, stopped by the PIDs this helper started (never Ray's
stop-everything command, which stops every cluster on the machine).

The nodes run the interpreter of this virtual environment, found on their PATH the way a
cluster image puts its own Python first, so a job's ``python`` entrypoint is the cluster's.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
# The nodes' address: loopback, but not 127.0.0.1. Ray's CLI and clients (the dashboard
# agent's included) swap an explicit 127.0.0.1/localhost for the machine's routable address
# (ray._private.services.resolve_ip_for_localhost), where a loopback-only node does not
# listen; any other 127.x address is kept as given and stays on the loopback interface.
IP = "127.0.0.2"


# Ports handed out by this process: a port found free is not bound until its node starts,
# so later picks must skip it (two nodes given the same port was a real race here).
_TAKEN: set[int] = set()


def _free(p: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("", p))  # free on every address, loopback included
        except OSError:
            return False
    return True


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports free now and never handed out before by this process, chosen
    outside the kernel's ephemeral range (where clients' own ports come from)."""
    rng = secrets.SystemRandom()
    out: list[int] = []
    for _ in range(20_000):
        if len(out) == n:
            break
        p = rng.randrange(10000, 30000)
        if p not in _TAKEN and _free(p):
            _TAKEN.add(p)
            out.append(p)
    if len(out) < n:
        raise RuntimeError("no free ports")
    return out


def _worker_range(width: int = 40) -> tuple[int, int]:
    """A block of ports none of which is in use or handed out (Ray's workers bind there)."""
    rng = secrets.SystemRandom()
    for _ in range(500):
        lo = rng.randrange(30000 - width, 32000)
        block = range(lo, lo + width)
        if all(p not in _TAKEN and _free(p) for p in block):
            _TAKEN.update(block)
            return lo, lo + width - 1
    raise RuntimeError("no free block of worker ports")


def stop_groups(procs: list[subprocess.Popen[bytes]], grace_s: float = 20) -> None:
    """SIGTERM each process group these started (newest first), SIGKILL what outlives the
    grace period. Only our own PIDs: no stop-all command and no name-based kill."""
    for p in reversed(procs):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGTERM)
    for p in reversed(procs):
        try:
            p.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)


@dataclass
class Node:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    cpus: int
    manager_port: int

    @property
    def pid(self) -> int:
        return self.proc.pid


@dataclass
class RayNodes:
    head_port: int
    dashboard_port: int
    token: str
    temp_dir: Path
    env: dict[str, str]
    nodes: list[Node] = field(default_factory=list)
    killed: set[str] = field(default_factory=set)

    @property
    def address(self) -> str:
        return f"{IP}:{self.head_port}"

    @property
    def jobs_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def _start(self, name: str, head: bool, cpus: int, extra_env: dict[str, str]) -> Node:
        ports = free_ports(7)
        lo, hi = _worker_range()
        tmp = self.temp_dir / name
        tmp.mkdir(parents=True, exist_ok=True)
        args = [
            str(BIN / "ray"),
            "start",
            "--block",
            f"--node-ip-address={IP}",
            f"--num-cpus={cpus}",
            "--num-gpus=0",
            f"--object-store-memory={200 * 1024 * 1024}",
            f"--node-manager-port={ports[0]}",
            f"--object-manager-port={ports[1]}",
            f"--dashboard-agent-listen-port={ports[2]}",
            f"--dashboard-agent-grpc-port={ports[3]}",
            f"--metrics-export-port={ports[4]}",
            f"--runtime-env-agent-port={ports[5]}",
            f"--min-worker-port={lo}",
            f"--max-worker-port={hi}",
            "--disable-usage-stats",
        ]
        if head:
            args += [
                "--head",
                f"--port={self.head_port}",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={self.dashboard_port}",
                "--include-dashboard=true",
                f"--ray-client-server-port={ports[6]}",
                f"--temp-dir={tmp}",
            ]
        else:
            args += [f"--address={self.address}", f"--temp-dir={tmp}"]
        log = self.temp_dir / f"{name}.log"
        with open(log, "wb") as fh:
            proc = subprocess.Popen(
                args,
                stdout=fh,
                stderr=subprocess.STDOUT,
                env={**self.env, **extra_env},
                start_new_session=True,  # its own process group: stopped together, by PID
            )
        node = Node(name, proc, log, cpus, ports[0])
        self.nodes.append(node)
        return node

    def alive_nodes(self) -> list[dict[str, Any]]:
        out = subprocess.run(
            [str(BIN / "python"), "-c", _ALIVE, self.address],
            env={**self.env, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if out.returncode != 0:
            return []
        import json

        return list(json.loads(out.stdout.strip().splitlines()[-1]))

    def wait_for(self, n: int, timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node.name not in self.killed and node.proc.poll() is not None:
                    raise RuntimeError(f"{node.name} exited: {node.log.read_text()[-3000:]}")
            if len(self.alive_nodes()) >= n:
                return
            time.sleep(2)
        raise TimeoutError(f"{n} nodes not alive after {timeout_s} s")

    def node_of(self, node_id: str) -> Node:
        """The process of the node with this Ray node id."""
        port = next(n["port"] for n in self.alive_nodes() if n["id"] == node_id)
        return next(n for n in self.nodes if n.manager_port == port)

    def add_worker(self, cpus: int = 1) -> Node:
        """One more worker node (e.g. to replace a killed one)."""
        node = self._start(f"worker{len(self.nodes)}", False, cpus, {})
        return node

    def kill(self, node: Node, sig: int = signal.SIGKILL) -> None:
        """Kill a node's whole process group (its raylet, workers, agents)."""
        self.killed.add(node.name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.pid, sig)

    def stop(self) -> list[int]:
        """Stop every node this helper started, workers first; return PIDs still alive."""
        for node in reversed(self.nodes):
            self.kill(node, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for node in reversed(self.nodes):
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        for node in self.nodes:
            self.kill(node, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.proc.wait(timeout=10)
        # Anything else that names our temp dir was started by these nodes.
        from engine.procs import processes_mentioning

        left = processes_mentioning(str(self.temp_dir))
        for p in left:
            with contextlib.suppress(Exception):
                p.kill()
        time.sleep(0.5)
        still = [p.pid for p in processes_mentioning(str(self.temp_dir))]
        if not still:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
        return still


_ALIVE = """
import json, os, sys
import ray
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
print(json.dumps([{"id": n["NodeID"], "cpus": n["Resources"].get("CPU", 0),
                   "resources": n["Resources"], "ip": n["NodeManagerAddress"],
                   "port": n["NodeManagerPort"]} for n in ray.nodes() if n["Alive"]]))
"""


def start_cluster(
    workers: int = 2,
    worker_cpus: int = 1,
    head_cpus: int = 0,
    extra_env: dict[str, str] | None = None,
) -> RayNodes:
    """Head + ``workers`` worker nodes, token auth on; the caller must ``stop()`` it."""
    head_port, dash = free_ports(2)
    temp_dir = Path(tempfile.mkdtemp(prefix="irn-", dir="/tmp"))
    token = secrets.token_hex(16)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "PYTEST_"))},
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_DEDUP_LOGS": "0",
        **(extra_env or {}),
    }
    c = RayNodes(head_port, dash, token, temp_dir, env)
    try:
        c._start("head", True, head_cpus, {})
        time.sleep(3)
        for i in range(workers):
            c._start(f"worker{i + 1}", False, worker_cpus, {})
        c.wait_for(1 + workers, timeout_s=90)
    except BaseException:
        logs = "\n".join(f"--- {n.name}\n{n.log.read_text()[-2000:]}" for n in c.nodes)
        c.stop()
        raise RuntimeError(f"the cluster did not start; node logs:\n{logs}") from None
    return c

"""A private Ray head on this machine, for tests and CI: own ports, own temp dir, stopped alone.

    with LocalHead(num_cpus=2, resources={"driver": 4}) as head:
        JobSubmissionClient(head.dashboard_url).submit_job(...)

`ray stop` kills every Ray process of every user on the machine, so this never calls it: the head
runs as `ray start --head --block` in its own process group, and `stop()` kills that process tree
plus anything else whose command line names this head's temp dir, and their children.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

PORT_FLAGS = ("port", "dashboard-port", "ray-client-server-port", "node-manager-port",
              "object-manager-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
              "runtime-env-agent-port", "metrics-export-port")


def free_ports(n: int) -> list[int]:
    """`n` distinct ports free right now (held open together so they differ)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class LocalHead:
    """`ray start --head --block` on free ports with a private temp dir; `stop()` kills only it."""

    def __init__(self, num_cpus: int = 2, num_gpus: int | None = None, resources: dict | None = None,
                 env: dict | None = None, extra_args: list[str] | None = None, start_timeout_s: float = 90):
        self.ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS))))
        # Below the kernel's ephemeral range (where free_ports() picks) and above Ray's default
        # worker ports (10002-19999) of other users' embedded Rays.
        lo = random.randrange(20000, 29800)
        self.worker_ports = (lo, lo + 199)
        # Short path: Ray's unix sockets live under it and are limited to ~107 characters.
        self.temp_dir = tempfile.mkdtemp(prefix="ray_bsp_", dir="/tmp")
        self.num_cpus, self.num_gpus, self.resources = num_cpus, num_gpus, resources or {}
        self.env = {**os.environ, "RAY_AUTH_MODE": "disabled", **(env or {})}
        self.extra_args = list(extra_args or [])
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen | None = None
        self.log_path = Path(self.temp_dir) / "ray_start.log"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.ports['port']}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['dashboard-port']}"

    def command(self) -> list[str]:
        beside = Path(sys.executable).with_name("ray")    # this venv's ray, else the one on PATH
        ray = str(beside) if beside.is_file() else (shutil.which("ray") or "ray")
        cmd = [ray, "start", "--head", "--block", "--disable-usage-stats", "--include-dashboard=true",
               f"--temp-dir={self.temp_dir}", f"--num-cpus={self.num_cpus}",
               "--dashboard-host=127.0.0.1", "--node-ip-address=127.0.0.1",
               f"--min-worker-port={self.worker_ports[0]}", f"--max-worker-port={self.worker_ports[1]}"]
        cmd += [f"--{flag}={port}" for flag, port in self.ports.items()]
        if self.num_gpus is not None:
            cmd.append(f"--num-gpus={self.num_gpus}")
        if self.resources:
            cmd.append(f"--resources={json.dumps(self.resources)}")
        return cmd + self.extra_args

    def start(self) -> "LocalHead":
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(self.command(), env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        try:
            self._wait_for_dashboard()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_for_dashboard(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.dashboard_url}/api/version", timeout=2) as r:
                    if r.status == 200:
                        return
            except urllib.error.HTTPError as exc:
                if exc.code in (401, 403):  # up, with token authentication on
                    return
            except OSError:
                pass
            time.sleep(1)
        raise TimeoutError(f"the Ray head did not come up in {self.start_timeout_s:.0f} s:\n"
                           f"{self.log_path.read_text()[-3000:]}")

    def _own_pids(self) -> set[int]:
        """This head's processes: the `ray start` tree, any process naming its temp dir, their children."""
        import psutil

        pids: set[int] = set()
        if self.proc is not None:
            try:
                root = psutil.Process(self.proc.pid)
                pids |= {root.pid, *(c.pid for c in root.children(recursive=True))}
            except psutil.NoSuchProcess:
                pass
        markers = (self.temp_dir,)
        for p in psutil.process_iter(["pid", "cmdline", "uids"]):
            try:
                if p.info["uids"] and p.info["uids"].real != os.getuid():
                    continue
                cmdline = " ".join(p.info["cmdline"] or [])
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            if any(m in cmdline for m in markers) and p.pid != os.getpid():
                pids.add(p.pid)
        # Descendants of those (job drivers are children of the job supervisor's worker).
        for pid in list(pids):
            try:
                pids |= {c.pid for c in psutil.Process(pid).children(recursive=True)}
            except psutil.NoSuchProcess:
                pass
        pids.discard(os.getpid())
        return pids

    def stop(self, grace_s: float = 10) -> None:
        """Kill this head's processes only: SIGTERM, then SIGKILL what is left after `grace_s`."""
        import psutil

        pids = self._own_pids()
        procs = []
        for pid in pids:
            try:
                procs.append(psutil.Process(pid))
            except psutil.NoSuchProcess:
                pass
        for p in procs:
            try:
                p.send_signal(signal.SIGTERM)
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(procs, timeout=grace_s)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=5)
        if self.proc is not None:
            self.proc.wait(timeout=5)
            self.proc = None
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> "LocalHead":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

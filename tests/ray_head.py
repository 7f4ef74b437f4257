"""A real Ray head for the tests, as users start one: `ray start --head` on 127.0.0.1 with
free ports, the dashboard and its job server, and token authentication with a token of its
own (so no file under the home directory is read or written). `stop()` stops exactly this
head's processes, by process id: those whose command line names its private temp folder
(which no other Ray on the machine shares: an embedded Ray of another test keeps running) and
their descendants (workers, agents, job drivers: Ray renames their command lines)."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import psutil

RAY = os.path.join(os.path.dirname(sys.executable), "ray")
"""The venv's own `ray` command."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RayHead:
    def __init__(self, num_cpus: int = 2):
        # Short, private: Ray's socket paths live under it (a unix socket path has ~100 bytes).
        self.temp_dir = tempfile.mkdtemp(prefix="rayhead-")
        self.token = secrets.token_hex(32)
        self.token_path = os.path.join(self.temp_dir, "auth_token")
        with open(self.token_path, "w") as f:
            f.write(self.token)
        self.gcs_port, self.dashboard_port = free_port(), free_port()
        self.num_cpus = num_cpus
        self.log = os.path.join(self.temp_dir, "ray-start.log")

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    def env(self) -> dict[str, str]:
        """The environment of this head and of every command that talks to it: the venv's
        commands first on PATH (as in an activated venv: a job's `python` is the venv's), Ray
        on loopback, no usage reports, this head's token, and no PYTHONPATH (a job finds the
        project through its runtime environment, as on a real cluster)."""
        env = dict(os.environ)
        env.update(PATH=os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")]),
                   RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_USAGE_STATS_ENABLED="0",
                   RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=self.token_path)
        for key in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "PYTHONPATH"):
            env.pop(key, None)
        return env

    def start(self, timeout_s: float = 120.0) -> "RayHead":
        cmd = [RAY, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={self.gcs_port}",
               "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}",
               f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
               "--min-worker-port=0", "--max-worker-port=0", f"--num-cpus={self.num_cpus}",
               f"--temp-dir={self.temp_dir}", "--disable-usage-stats"]
        try:
            with open(self.log, "w") as log:
                code = subprocess.run(cmd, env=self.env(), stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s,
                                      start_new_session=True).returncode
        except subprocess.TimeoutExpired:
            code = f"no answer within {timeout_s}s"
        if code != 0:
            tail = open(self.log).read()[-3000:]
            self.stop()
            hint = ("\nRay's dashboard (the job server) needs the `ray[default]` extra's packages"
                    if "missing packages" in tail else "")
            raise RuntimeError(f"ray start failed ({code}):\n{tail}{hint}")
        return self

    def processes(self) -> list[psutil.Process]:
        """This head's processes (those naming its temp folder) and all their descendants."""
        mine: dict[int, psutil.Process] = {}
        for proc in psutil.process_iter(["pid", "cmdline"]):
            try:
                if proc.pid != os.getpid() and any(self.temp_dir in a for a in proc.info["cmdline"] or ()):
                    mine[proc.pid] = proc
                    mine.update((c.pid, c) for c in proc.children(recursive=True))
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        mine.pop(os.getpid(), None)
        return list(mine.values())

    def stop(self, grace_s: float = 2.0) -> None:
        procs = self.processes()
        for proc in procs:
            try:
                proc.send_signal(signal.SIGTERM)
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(procs, timeout=grace_s)
        for proc in alive + self.processes():
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=5)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def wait_for(self, predicate, timeout_s: float, what: str, every_s: float = 0.5):
        """Poll `predicate` until it returns something truthy; fail naming `what`."""
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(every_s)
        raise TimeoutError(f"{what} not within {timeout_s}s")

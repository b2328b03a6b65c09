"""Starting, watching and stopping the processes a benchmark run owns.

Everything here acts on PIDs the suite started itself (and their descendants, found through
/proc), never on process names: other work shares this machine.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from humtemp.procstat import descendants


@dataclass
class Service:
    """One started server: its Popen, the URL it answers on and where its output goes."""

    name: str
    popen: subprocess.Popen
    url: str
    log_path: Path
    extra_pids: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def pids(self) -> list[int]:
        """The main process and all its descendants (e.g. --workers N)."""
        return [self.pid, *descendants(self.pid)]

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


def start(name: str, cmd: list[str], url: str, log_path: Path, env: dict[str, str]) -> Service:
    """Start `cmd` in the log's directory with its output in `log_path` (a file: a full pipe
    would stall the server; the cwd matters because `python -m` puts it first on sys.path)."""
    log = log_path.open("wb")
    popen = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=log_path.parent
    )
    log.close()
    return Service(name=name, popen=popen, url=url, log_path=log_path)


def wait_http(service: Service, path: str, timeout: float = 30.0) -> None:
    """Poll `path` until it answers 200; fail early with the log if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.popen.poll() is not None:
            raise RuntimeError(
                f"{service.name} exited with {service.popen.returncode}:\n{service.log_tail()}"
            )
        try:
            with urllib.request.urlopen(service.url + path, timeout=1) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{service.name} not ready after {timeout}s:\n{service.log_tail()}")


def stop(service: Service, timeout: float = 15.0) -> None:
    """SIGTERM the main PID (graceful drain), then SIGKILL whatever of its tree is left."""
    tree = service.pids()
    if service.popen.poll() is None:
        service.popen.send_signal(signal.SIGTERM)
        try:
            service.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            service.popen.kill()
            service.popen.wait(5)
    for pid in tree[1:]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

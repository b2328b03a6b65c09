"""Starting humtemp for tests: in-process (aiohttp test server) or as a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import requests

from tests.support.redis_server import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]


class HumtempProcess:
    """``python -m humtemp serve`` in a subprocess, for signal and CLI tests."""

    def __init__(self, env: Mapping[str, str], cwd: Path, args: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = cwd / f"humtemp-{self.port}.log"
        # Run this checkout's humtemp, whatever else is pip-installed.
        path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
        full_env = {**os.environ, "PYTHONPATH": path, **env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "humtemp", "serve", "--port", str(self.port), *args],
            env=full_env, cwd=cwd, stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 20.0) -> HumtempProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"humtemp exited early:\n{self.log.read_text()}")
            try:
                if requests.get(self.base + "/readyz", timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"humtemp not ready:\n{self.log.read_text()}")

    def terminate(self, timeout: float = 30.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

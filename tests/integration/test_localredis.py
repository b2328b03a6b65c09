"""The one local redis-server launcher: starts, survives kill -9 with its data, stops."""

from __future__ import annotations

from pathlib import Path

import pytest

from humtemp.localredis import LocalRedis, free_port


def test_kill_and_restart_keeps_port_and_acknowledged_data(tmp_path: Path) -> None:
    server = LocalRedis(tmp_path / "s", "s", appendfsync="always").start()
    try:
        port = server.port
        server.client().set("k", "v")
        server.kill()
        server.start()
        assert server.port == port
        assert server.client().get("k") == b"v"
        assert server.spec == f"s=redis://127.0.0.1:{port}/0"
    finally:
        server.stop()
    assert server.proc is not None and server.proc.poll() is not None


def test_a_server_that_cannot_start_says_why(tmp_path: Path) -> None:
    server = LocalRedis(tmp_path / "bad", "bad", appendfsync="sometimes")
    with pytest.raises(RuntimeError, match=r"did not start.*appendfsync"):
        server.start(timeout=5)
    assert server.proc is not None and server.proc.poll() is not None


def test_free_port_is_bindable() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", free_port()))

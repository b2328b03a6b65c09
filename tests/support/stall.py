"""Stalling a real redis-server on purpose: a busy script holds its one thread."""

from __future__ import annotations

import threading
import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support.redis_server import RedisServer

BUSY_LUA = """
local t = redis.call('TIME')
local until_us = (t[1] * 1000000 + t[2]) + ARGV[1] * 1000000
repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] >= until_us
return 1
"""


def stall(server: RedisServer, seconds: float) -> threading.Thread:
    """Block the whole redis-server (a busy script), as a stalled disk or CPU would."""
    thread = threading.Thread(target=server.client().eval, args=(BUSY_LUA, 0, seconds))
    thread.start()
    probe = redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=0.1,
                        retry=Retry(NoBackoff(), 0))
    deadline = time.monotonic() + seconds / 2
    while time.monotonic() < deadline:  # stalled once a PING stops being answered
        try:
            probe.ping()
        except redis.TimeoutError:
            return thread
        time.sleep(0.01)
    raise AssertionError("the stall script did not start")

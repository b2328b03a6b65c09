"""A tiny in-memory stand-in for humtemp's API, to test the load-test verifier itself.

It can be told to lose data (drop every Nth acknowledged observation) so tests prove
verification fails when it should.  It is not humtemp: the real service is tested by
test_loadtest_smoke.py.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class FakeService:
    duration: int = 86400
    lose_every: int = 0  # acknowledge but drop every Nth observation
    data: dict[tuple[str, int], list[float]] = field(default_factory=dict)
    seen: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bucket(self, ts: int) -> int:
        return ts // self.duration * self.duration

    def store(self, obs: dict) -> None:
        with self.lock:
            self.seen += 1
            if self.lose_every and self.seen % self.lose_every == 0:
                return
            agg = self.data.setdefault((obs["lab_id"], self.bucket(int(obs["timestamp"]))),
                                       [0, 0.0, 0.0])
            agg[0] += 1
            agg[1] += obs["temp"]
            agg[2] += obs["humidity"]

    def current(self, offset: int) -> int:
        return self.bucket(int(time.time())) + offset * self.duration

    def app(self) -> web.Application:
        async def one(request: web.Request) -> web.Response:
            self.store(await request.json())
            return web.json_response(None)

        async def many(request: web.Request) -> web.Response:
            text = await request.text()
            if request.content_type == "application/x-ndjson":
                items = [json.loads(line) for line in text.splitlines() if line.strip()]
            else:
                items = json.loads(text)
            for o in items:
                self.store(o)
            return web.json_response({"accepted": len(items)})

        async def lab(request: web.Request) -> web.Response:
            start = self.current(int(request.query.get("offset", -1)))
            n, st, sh = self.data.get((request.query["lab_id"], start), [0, 0.0, 0.0])
            return web.json_response({
                "lab_id": request.query["lab_id"], "bucket_start": start,
                "bucket_end": start + self.duration, "count": n,
                "avg_temp": st / n if n else None, "avg_humidity": sh / n if n else None})

        async def summary(request: web.Request) -> web.Response:
            start = self.current(int(request.query.get("offset", -1)))
            items = [{"lab_id": lab_id, "avg_temp": st / n, "avg_humidity": sh / n}
                     for (lab_id, b), (n, st, sh) in sorted(self.data.items()) if b == start]
            return web.json_response(items)

        async def detail(request: web.Request) -> web.Response:
            start = self.current(int(request.query.get("offset", -1)))
            labs = [{"lab_id": lab_id, "count": n, "avg_temp": st / n, "avg_humidity": sh / n}
                    for (lab_id, b), (n, st, sh) in sorted(self.data.items()) if b == start]
            return web.json_response({"bucket_start": start, "bucket_end": start + self.duration,
                                      "partial": False, "missing_shards": [], "labs": labs})

        app = web.Application()
        app.add_routes([web.post("/observation", one), web.post("/observations", many),
                        web.get("/summary/lab", lab), web.get("/summary", summary),
                        web.get("/summary/detail", detail)])
        return app


@contextmanager
def serve(fake: FakeService) -> Iterator[str]:
    """Run the fake on a free loopback port in a background thread; yields its base URL."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict = {}

    async def start() -> None:
        runner = web.AppRunner(fake.app())
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        box["runner"] = runner
        box["port"] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        ready.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(start()),
                                              loop.run_forever()), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield f"http://127.0.0.1:{box['port']}"
    finally:
        asyncio.run_coroutine_threadsafe(box["runner"].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)

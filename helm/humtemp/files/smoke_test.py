"""humtemp smoke test: post one observation and read it back (stdlib only).

Run by the chart's `helm test` Pod with the app image's python, and by the container image
test in CI. HUMTEMP_URL is the service base URL. The lab id is unique per run, so the
expected count is exactly 1 however often the test runs; offsets 0 and -1 are both read so a
bucket boundary between the write and the read cannot fail the test.
"""

import json
import os
import time
import urllib.request

BASE = os.environ.get("HUMTEMP_URL", "http://127.0.0.1:8000").rstrip("/")
TIMEOUT = float(os.environ.get("HUMTEMP_SMOKE_TIMEOUT", "10"))


def call(path: str, body: dict | None = None) -> object:
    """GET (or POST JSON when body is given) and decode the JSON answer; raises on non-2xx."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method="GET" if body is None else "POST")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
        return json.loads(resp.read() or b"null")


def main() -> None:
    """Check health, write one observation, read its lab summary back."""
    assert call("/healthz") == {"status": "ok"}
    ready = call("/readyz")
    print("readyz:", ready)
    lab = f"smoke.{time.time_ns()}"
    obs = {"lab_id": lab, "timestamp": int(time.time()) - 10, "temp": 21.5, "humidity": 40.0}
    call("/observation", obs)
    count = 0
    for offset in (0, -1):
        summary = call(f"/summary/lab?lab_id={lab}&offset={offset}")
        assert isinstance(summary, dict) and summary["lab_id"] == lab, summary
        count += summary["count"]
        if summary["count"]:
            assert summary["avg_temp"] == 21.5 and summary["avg_humidity"] == 40.0, summary
    assert count == 1, f"expected the observation back exactly once, got count {count}"
    print(f"ok: {lab} stored and read back")


if __name__ == "__main__":
    main()

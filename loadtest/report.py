"""Turn Locust's outputs (--json-file, --csv-full-history) into a JSON report and a PNG plot."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any


def percentile(hist: dict[Any, int], q: float) -> float | None:
    """q-quantile (0..1) of Locust's rounded response-time histogram {ms: count}."""
    items = sorted((float(k), v) for k, v in hist.items())
    total = sum(v for _, v in items)
    if not total:
        return None
    need, seen = q * total, 0
    for ms, count in items:
        seen += count
        if seen >= need:
            return ms
    return items[-1][0]


def _merge_hist(entries: list[dict[str, Any]]) -> dict[float, int]:
    merged: dict[float, int] = {}
    for e in entries:
        for k, v in e["response_times"].items():
            merged[float(k)] = merged.get(float(k), 0) + v
    return merged


def summarize_stats(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals and per-endpoint numbers from Locust's --json-file content."""
    if not entries:
        return {"requests": 0, "failures": 0, "rps": 0.0, "p50_ms": None, "p95_ms": None,
                "duration_s": 0.0, "endpoints": {}}
    start = min(e["start_time"] for e in entries)
    end = max(e["last_request_timestamp"] or start for e in entries)
    duration = max(end - start, 1e-9)
    endpoints = {}
    for e in entries:
        endpoints[f"{e['method']} {e['name']}"] = {
            "requests": e["num_requests"], "failures": e["num_failures"],
            "rps": e["num_requests"] / duration,
            "p50_ms": percentile(e["response_times"], 0.50),
            "p95_ms": percentile(e["response_times"], 0.95),
            "max_ms": e["max_response_time"],
        }
    hist = _merge_hist(entries)
    requests = sum(e["num_requests"] for e in entries)
    return {
        "requests": requests,
        "failures": sum(e["num_failures"] for e in entries),
        "rps": requests / duration,
        "p50_ms": percentile(hist, 0.50),
        "p95_ms": percentile(hist, 0.95),
        "p99_ms": percentile(hist, 0.99),
        "duration_s": duration,
        "endpoints": endpoints,
    }


def read_history(csv_path: Path, window: float = 3.0) -> list[tuple[float, float, float | None]]:
    """(timestamp, req/s, p95 ms) of the Aggregated series.

    req/s is recomputed from "Total Request Count" over a `window`-second span: Locust's
    own Requests/s column is a lagging rolling figure (workers report every 3 s).
    """
    rows: list[tuple[float, int, float | None]] = []
    if not csv_path.exists():
        return []
    with csv_path.open() as f:
        for row in csv.DictReader(f):
            if row.get("Name") != "Aggregated":
                continue
            p95 = row.get("95%", "N/A")
            rows.append((float(row["Timestamp"]), int(row["Total Request Count"]),
                         None if p95 in ("N/A", "", None) else float(p95)))
    out = []
    for i, (t, count, p95) in enumerate(rows):
        j = i
        while j > 0 and rows[j][0] > t - window:
            j -= 1
        span = t - rows[j][0]
        out.append((t, (count - rows[j][1]) / span if span > 0 else 0.0, p95))
    return out


def plot(history: list[tuple[float, float, float | None]], png: Path, title: str) -> None:
    """Throughput and p95 over time (matplotlib, Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = history[0][0] if history else 0.0
    xs = [t - t0 for t, _, _ in history]
    fig, (ax1, ax2) = plt.subplots(2, 1, sharex=True, figsize=(9, 6))
    ax1.plot(xs, [r for _, r, _ in history], color="tab:blue")
    ax1.set_ylabel("requests/s")
    ax1.set_title(title)
    ax1.grid(True, alpha=0.3)
    ax2.plot(xs, [p if p is not None else float("nan") for _, _, p in history], color="tab:red")
    ax2.set_ylabel("p95 latency (ms)")
    ax2.set_xlabel("seconds since start")
    ax2.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def load_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default

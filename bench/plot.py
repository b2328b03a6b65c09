"""PNG of throughput and p99 versus connections, humtemp against the bare server."""

from __future__ import annotations

from pathlib import Path


def plot(result: dict, path: Path) -> None:
    """Needs matplotlib (the ``bench`` extra), imported here so ``--help`` works without."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # backend chosen first

    levels = result["ingest"]["by_connections"]
    conns = sorted(int(c) for c in levels)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, style in (("humtemp", "o-"), ("bare", "s--")):
        left.plot(conns, [levels[str(c)][name]["rps"] for c in conns], style, label=name)
        right.plot(conns, [levels[str(c)][name]["p99_ms"] for c in conns], style, label=name)
    left.set(title="POST /observation throughput", xlabel="connections", ylabel="req/s")
    right.set(title="POST /observation p99 latency", xlabel="connections", ylabel="p99 (ms)")
    for axis in (left, right):
        axis.set_xticks(conns)
        axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
        axis.legend()
    rounds = result["options"]["rounds"]
    fig.suptitle(f"humtemp vs bare aiohttp, wrk -t1, median of {rounds} rounds")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

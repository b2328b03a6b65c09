"""Judge a result against the issue's targets and print it as a table."""

from __future__ import annotations


def _target(name: str, value: float | None, op: str, limit: float, unit: str = "") -> dict:
    passed = None if value is None else (value >= limit if op == ">=" else value <= limit)
    return {"name": name, "value": value, "target": f"{op} {limit}{unit}", "pass": passed}


def evaluate(result: dict, main_connections: int) -> list[dict]:
    """One entry per target of the issue; pass is None when the run did not measure it."""
    ingest = result["ingest"]["by_connections"].get(str(main_connections))
    batch = result["batch"]["humtemp"]
    summary_10k = result["summary"]["by_labs"].get("10000")
    errors = (
        sum(
            level["humtemp"]["non_2xx"] + level["humtemp"]["socket_errors"]
            for level in result["ingest"]["by_connections"].values()
        )
        + batch["non_2xx"]
        + batch["socket_errors"]
    )
    return [
        _target(
            f"POST /observation req/s humtemp / bare (c{main_connections})",
            ingest["ratio_rps"] if ingest else None,
            ">=",
            0.7,
            "x",
        ),
        _target("non-2xx + socket errors on humtemp ingest", errors, "<=", 0),
        _target(
            f"p99 humtemp / bare (c{main_connections})",
            ingest["ratio_p99"] if ingest else None,
            "<=",
            3,
            "x",
        ),
        _target("batch ingestion obs/s (batches of 100)", batch["obs_per_s"], ">=", 150_000),
        _target(
            "GET /summary p50 ms, 10k labs over 3 shards",
            summary_10k["p50_ms"] if summary_10k else None,
            "<=",
            50,
            " ms",
        ),
        _target(
            f"Redis CPU us/obs, POST /observation c{main_connections}",
            ingest["humtemp"]["redis_cpu_us_per_obs"] if ingest else None,
            "<=",
            5,
            " us",
        ),
        _target(
            "Redis CPU us/obs, batched",
            batch["redis_cpu_us_per_obs"],
            "<=",
            5,
            " us",
        ),
    ]


def print_report(result: dict) -> None:
    """Human-readable summary of the JSON result."""
    print("\n== POST /observation (median of rounds)")
    print(
        f"{'conns':>5} {'target':<8} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'non2xx':>6} {'CPU us/req (process, redis, wrk)':<34} {'obs/flush':>9} ratio"
    )
    for conns, level in result["ingest"]["by_connections"].items():
        for name in ("humtemp", "bare"):
            row = level[name]
            cpu = row["cpu_us_per_request"]
            ratio = (f"{level['ratio_rps']:.3f}x rps (paired {level.get('ratio_rps_paired')}x) "
                     f"{level['ratio_p99']:.2f}x p99")
            print(
                f"{conns:>5} {name:<8} {row['rps']:>9,.0f} {row['p50_ms']:>7.2f} "
                f"{row['p99_ms']:>7.2f} {row['non_2xx']:>6} "
                f"{cpu.get(name, 0):>8.1f} {cpu.get('redis', 0):>8.1f} {cpu.get('wrk', 0):>8.1f}"
                f"{'':>9} {row.get('obs_per_flush') or '':>9} {ratio if name == 'humtemp' else ''}"
            )
    multi = result["multiworker"]
    print(
        f"\n== --workers {multi['workers']} vs 1 (c{multi['connections']}): "
        f"{multi['ratio_rps']}x req/s; CPU share per process {multi['cpu_share_per_process']}; "
        f"connections per pid {multi['connections_per_pid']}"
    )
    batch = result["batch"]
    print(
        f"\n== batch of {batch['batch_size']}: humtemp {batch['humtemp']['obs_per_s']:,} obs/s "
        f"(bare parse {batch['bare']['obs_per_s']:,}); Redis "
        f"{batch['humtemp']['redis_cpu_us_per_obs']} us/obs; "
        f"{batch['humtemp'].get('obs_per_flush')} obs per flush"
    )
    print("\n== GET /summary?offset=0")
    for labs, row in result["summary"]["by_labs"].items():
        print(
            f"{labs:>7} labs: p50 {row['p50_ms']:.1f} ms p99 {row['p99_ms']:.1f} ms "
            f"({row['requests']} requests)"
        )
    print(
        f"\nload average at start {result.get('load_average_start')}, "
        f"end {result.get('load_average_end')} (2 = both cores busy)"
    )
    print("\n== targets")
    for target in result["targets"]:
        verdict = {True: "PASS", False: "FAIL", None: "n/a "}[target["pass"]]
        print(f"{verdict} {target['name']}: {target['value']} (target {target['target']})")

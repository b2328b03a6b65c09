"""Scenario parameters: Locust command-line flags, each with a HUMTEMP_LT_* env default."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

DEFAULT_MIX = "sensor=8,gateway=1,dashboard=1"


def add_arguments(parser: Any) -> None:
    """Register the --ht-* flags on Locust's (configargparse) parser."""
    group = parser.add_argument_group("humtemp scenarios")
    add = group.add_argument
    add("--ht-labs", type=int, default=1000, env_var="HUMTEMP_LT_LABS",
        help="size of the lab pool (sensor users map onto it; gateways/dashboards pick from it)")
    add("--ht-batch-size", type=int, default=100, env_var="HUMTEMP_LT_BATCH_SIZE",
        help="observations per POST /observations")
    add("--ht-sensor-pacing", type=float, default=30.0, env_var="HUMTEMP_LT_SENSOR_PACING",
        help="seconds between a sensor's posts (constant pacing); 0 = flat out")
    add("--ht-gateway-pacing", type=float, default=1.0, env_var="HUMTEMP_LT_GATEWAY_PACING",
        help="seconds between a gateway's batches; 0 = flat out")
    add("--ht-dashboard-pacing", type=float, default=5.0, env_var="HUMTEMP_LT_DASHBOARD_PACING",
        help="seconds between a dashboard's reads; 0 = flat out")
    add("--ht-mix", default=DEFAULT_MIX, env_var="HUMTEMP_LT_MIX",
        help="user-class weights, the read/write mix: sensor=N,gateway=N,dashboard=N")
    add("--ht-prefix", default=f"lt-{uuid.uuid4().hex[:8]}-", env_var="HUMTEMP_LT_PREFIX",
        help="lab id prefix, unique per run so verification sees only this run's data")
    add("--ht-jitter", type=int, default=2, env_var="HUMTEMP_LT_JITTER",
        help="timestamps are now minus up to this many seconds")
    add("--ht-step-users", type=int, default=50, env_var="HUMTEMP_LT_STEP_USERS",
        help="StepShape (loadtest/shapes.py): users added per step")
    add("--ht-step-seconds", type=float, default=30.0, env_var="HUMTEMP_LT_STEP_SECONDS",
        help="StepShape: seconds each step lasts")
    add("--ht-steps", type=int, default=5, env_var="HUMTEMP_LT_STEPS",
        help="StepShape: number of steps before the test stops")
    add("--ht-verify", default="true", env_var="HUMTEMP_LT_VERIFY",
        help="verify acknowledged writes against the service at the end (true/false)")
    add("--ht-verify-labs", type=int, default=1000, env_var="HUMTEMP_LT_VERIFY_LABS",
        help="lab-buckets also checked one by one via /summary/lab (0 = all); every lab is "
             "checked via /summary/detail and /summary regardless")
    # on the parser itself: only it knows Locust's is_secret (masked in the web UI)
    parser.add_argument("--ht-token", default="", env_var="HUMTEMP_LT_TOKEN", is_secret=True,
                        help="bearer token sent with every request (the service's "
                             "HUMTEMP_INGEST_TOKENS / HUMTEMP_READ_TOKENS)")
    parser.add_argument("--ht-read-token", default="", env_var="HUMTEMP_LT_READ_TOKEN",
                        is_secret=True, help="bearer token for reads, if not --ht-token")
    add("--ht-verify-file", default="", env_var="HUMTEMP_LT_VERIFY_FILE",
        help="write the verification result as JSON here")


@dataclass(frozen=True)
class Scenario:
    labs: int
    batch_size: int
    sensor_pacing: float
    gateway_pacing: float
    dashboard_pacing: float
    weights: dict[str, int]
    prefix: str
    jitter: int
    verify: bool
    verify_file: str
    verify_labs: int
    token: str
    read_token: str

    @classmethod
    def from_options(cls, opts: Any) -> Scenario:
        return cls(
            labs=max(1, int(opts.ht_labs)),
            batch_size=max(1, int(opts.ht_batch_size)),
            sensor_pacing=float(opts.ht_sensor_pacing),
            gateway_pacing=float(opts.ht_gateway_pacing),
            dashboard_pacing=float(opts.ht_dashboard_pacing),
            weights=parse_mix(opts.ht_mix),
            prefix=str(opts.ht_prefix),
            jitter=int(opts.ht_jitter),
            verify=str(opts.ht_verify).lower() not in ("0", "false", "no", "off"),
            verify_file=str(opts.ht_verify_file or ""),
            verify_labs=int(opts.ht_verify_labs),
            token=str(opts.ht_token or ""),
            read_token=str(opts.ht_read_token or opts.ht_token or ""),
        )


def parse_mix(text: str) -> dict[str, int]:
    """'sensor=8,gateway=1' -> {'sensor': 8, 'gateway': 1}; unknown names are an error."""
    weights: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        if name not in ("sensor", "gateway", "dashboard"):
            raise ValueError(f"--ht-mix: unknown scenario {name!r}")
        weights[name] = int(value or 1)
    return weights

"""Scenario parameters: Locust command-line flags, each with a HUMTEMP_LT_* env default."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from loadtest.retry import RetryPolicy

DEFAULT_MIX = "sensor=8,gateway=1,dashboard=1"


# (name, type, default, help): flag --ht-<name>, env HUMTEMP_LT_<NAME>
FLAGS: list[tuple[str, type, Any, str]] = [
    ("labs", int, 1000,
     "size of the lab pool (sensor users map onto it; gateways/dashboards pick from it)"),
    ("batch-size", int, 100, "observations per POST /observations"),
    ("sensor-pacing", float, 30.0,
     "seconds between a sensor's posts (constant pacing); 0 = flat out"),
    ("gateway-pacing", float, 1.0, "seconds between a gateway's batches; 0 = flat out"),
    ("dashboard-pacing", float, 5.0, "seconds between a dashboard's reads; 0 = flat out"),
    ("mix", str, DEFAULT_MIX,
     "user-class weights, the read/write mix: sensor=N,gateway=N,dashboard=N"),
    ("prefix", str, f"lt-{uuid.uuid4().hex[:8]}-",
     "lab id prefix, unique per run so verification sees only this run's data"),
    ("jitter", int, 2, "timestamps are now minus up to this many seconds"),
    ("step-users", int, 50, "StepShape (loadtest/shapes.py): users added per step"),
    ("step-seconds", float, 30.0, "StepShape: seconds each step lasts"),
    ("steps", int, 5, "StepShape: number of steps before the test stops"),
    ("verify", str, "true",
     "verify acknowledged writes against the service at the end (true/false)"),
    ("verify-labs", int, 1000,
     "lab-buckets also checked one by one via /summary/lab (0 = all); every lab is "
     "checked via /summary/detail and /summary regardless"),
    ("verify-file", str, "", "write the verification result as JSON here"),
    ("keys", str, "gateway",
     "which writes carry an Idempotency-Key (and are retried): gateway, all or none"),
    ("retries", int, 30,
     "attempts per keyed write in all: a 5xx, connection error or timeout is retried with "
     "the same key and body, after Retry-After (1 = never retry)"),
    ("retry-seconds", float, 60.0, "no retry of a keyed write starts later than this"),
    ("blind-retries", str, "false",
     "retry writes without a key too, as a naive client would: a negative control that "
     "shows the double counting keys prevent"),
    ("recovered-ok", str, "false",
     "a failed attempt whose write a retry stored later does not make Locust exit 1 "
     "(true for fault-injection runs)"),
]

KEYED = {"gateway": frozenset({"gateway"}), "all": frozenset({"sensor", "gateway"}),
         "none": frozenset()}


def add_arguments(parser: Any) -> None:
    """Register the --ht-* flags on Locust's (configargparse) parser."""
    group = parser.add_argument_group("humtemp scenarios")
    for name, kind, default, text in FLAGS:
        env = "HUMTEMP_LT_" + name.upper().replace("-", "_")
        group.add_argument(f"--ht-{name}", type=kind, default=default, env_var=env, help=text)
    # on the parser itself: only it knows Locust's is_secret (masked in the web UI)
    parser.add_argument("--ht-token", default="", env_var="HUMTEMP_LT_TOKEN", is_secret=True,
                        help="bearer token sent with every request (the service's "
                             "HUMTEMP_INGEST_TOKENS / HUMTEMP_READ_TOKENS)")
    parser.add_argument("--ht-read-token", default="", env_var="HUMTEMP_LT_READ_TOKEN",
                        is_secret=True, help="bearer token for reads, if not --ht-token")


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
    keyed: frozenset[str]
    retry: RetryPolicy
    blind_retries: bool
    recovered_ok: bool

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
            verify=_true(opts.ht_verify),
            verify_file=str(opts.ht_verify_file or ""),
            verify_labs=int(opts.ht_verify_labs),
            token=str(opts.ht_token or ""),
            read_token=str(opts.ht_read_token or opts.ht_token or ""),
            keyed=parse_keys(opts.ht_keys),
            retry=RetryPolicy(max(1, int(opts.ht_retries)), float(opts.ht_retry_seconds)),
            blind_retries=_true(opts.ht_blind_retries),
            recovered_ok=_true(opts.ht_recovered_ok),
        )


def _true(text: Any) -> bool:
    return str(text).lower() not in ("0", "false", "no", "off")


def parse_keys(text: str) -> frozenset[str]:
    """--ht-keys: the scenarios whose writes carry an Idempotency-Key."""
    if text not in KEYED:
        raise ValueError(f"--ht-keys: {text!r} is not one of {sorted(KEYED)}")
    return KEYED[text]


def parse_mix(text: str) -> dict[str, int]:
    """'sensor=8,gateway=1' -> {'sensor': 8, 'gateway': 1}; unknown names are an error."""
    weights: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        if name not in ("sensor", "gateway", "dashboard"):
            raise ValueError(f"--ht-mix: unknown scenario {name!r}")
        weights[name] = int(value or 1)
    return weights


def prefix_for_test(base: str, test_number: int) -> str:
    """Lab prefix of the n-th test of one Locust process: the given one first, then base + rN-."""
    return base if test_number <= 1 else f"{base}r{test_number}-"

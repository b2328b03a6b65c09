"""Load shapes for the humtemp scenarios: a step ramp to find where latency bends.

Use it as a second locustfile (Locust picks up a shape class it finds):

    locust -f loadtest/locustfile.py,loadtest/shapes.py --headless --processes 4 \\
        --ht-sensor-pacing 0 --ht-step-users 50 --ht-step-seconds 30 --ht-steps 6 SensorUser

Each step adds --ht-step-users users and holds them --ht-step-seconds; after --ht-steps
steps the test stops by itself (and verification runs).  Compare the per-step
throughput and p95 in the --csv-full-history output: the knee is where throughput
stops growing with users while p95 climbs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from locust import LoadTestShape

# locust only puts loadtest/ on sys.path; not resolve(): a Kubernetes ConfigMap mount makes
# every file a symlink into a hidden ..data directory
sys.path.insert(0, str(Path(__file__).absolute().parent.parent))

from loadtest.workload import step_target


class StepShape(LoadTestShape):
    """step_users more users every step_seconds, for `steps` steps (--ht-step-* flags)."""

    def _opts(self) -> Any:
        return self.runner.environment.parsed_options  # type: ignore[union-attr]

    def tick(self) -> tuple[int, float] | None:
        opts = self._opts()
        users = step_target(self.get_run_time(), int(opts.ht_step_users),
                            float(opts.ht_step_seconds), int(opts.ht_steps))
        return None if users is None else (users, float(opts.ht_step_users))

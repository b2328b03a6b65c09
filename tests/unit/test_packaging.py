"""The optional extras the tools' one-line messages point to exist and hold what the
tools import."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def _extras() -> dict[str, set[str]]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    return {name: {re.split(r"[<>=!~; ]", req, maxsplit=1)[0] for req in reqs}
            for name, reqs in project["optional-dependencies"].items()}


def test_loadtest_and_bench_extras_hold_what_the_tools_need() -> None:
    extras = _extras()
    assert {"locust", "matplotlib"} <= extras["loadtest"]
    assert {"matplotlib", "py-spy"} <= extras["bench"]


def test_the_test_extra_includes_both_tool_extras() -> None:
    assert "humtemp[loadtest,bench]" in _extras()["test"]

"""The tier map names tests that exist: a renamed file or test must not silently leave
a slow test in the inner loop."""

from __future__ import annotations

import importlib
from pathlib import Path

from tests.conftest import TIERS

TESTS = Path(__file__).resolve().parents[1]


def _module(name: str) -> str:
    found = list(TESTS.glob(f"*/{name}.py"))
    assert len(found) == 1, f"TIERS names {name}, which is {len(found)} test files"
    return ".".join(found[0].relative_to(TESTS.parent).with_suffix("").parts)


def test_every_tier_entry_names_an_existing_module_or_test() -> None:
    for key in TIERS:
        module, _, function = key.partition("::")
        path = _module(module)
        if function:
            assert hasattr(importlib.import_module(path), function), key


def test_markers_are_declared() -> None:
    """pytest runs with --strict-markers: an undeclared marker would fail collection."""
    declared = (TESTS.parent / "pyproject.toml").read_text()
    for markers in TIERS.values():
        for marker in markers:
            assert f'"{marker}: ' in declared, marker

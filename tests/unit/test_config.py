"""Configuration: names, defaults, the original settings, and one-line errors."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from humtemp.cli import build_parser
from humtemp.config import OPTIONS, ConfigError, Settings, ShardSpec, load_settings

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_the_original_services() -> None:
    s = load_settings({})
    assert (s.host, s.port, s.workers) == ("127.0.0.1", 8000, 1)
    assert (s.bucket_offset, s.bucket_duration, s.bucket_retention) == (0, 86400, 2)
    assert s.embedded


def test_shard_list_with_names_and_default_names() -> None:
    s = load_settings({"HUMTEMP_REDIS_URLS":
                       "east=redis://10.0.0.1:6379/0, redis://h2:6380/2,unix:///tmp/r.sock"})
    assert s.shards() == (
        ShardSpec("east", "redis://10.0.0.1:6379/0"),
        ShardSpec("h2:6380/2", "redis://h2:6380/2"),
        ShardSpec("/tmp/r.sock", "unix:///tmp/r.sock"),
    )
    assert not s.embedded


def test_password_with_equals_sign_is_not_a_name() -> None:
    s = load_settings({"HUMTEMP_REDIS_URLS": "rediss://:pa=ss@host:6379/0"})
    assert s.shards()[0].name == "host:6379/0"


def test_original_single_instance_settings() -> None:
    s = load_settings({"HUMTEMP_REDIS_HOST": "db", "HUMTEMP_REDIS_PORT": "6390",
                       "HUMTEMP_REDIS_DB": "3"})
    assert s.shards() == (ShardSpec("db:6390/3", "redis://db:6390/3"),)


def test_cli_overrides_environment() -> None:
    s = load_settings({"HUMTEMP_PORT": "9000"}, {"port": "9100"})
    assert s.port == 9100


def test_offset_is_parsed_as_iso8601() -> None:
    s = load_settings({"HUMTEMP_BUCKET_OFFSET": "2020-01-01T06:00:00+02:00"})
    assert s.bucket_offset == 1577851200


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"HUMTEMP_REDIS_URLS": "http://x:1"}, "HUMTEMP_REDIS_URLS"),
        ({"HUMTEMP_REDIS_URLS": "a=redis://x:1,a=redis://y:2"}, "HUMTEMP_REDIS_URLS"),
        ({"HUMTEMP_REDIS_URLS": "redis://x:99999"}, "HUMTEMP_REDIS_URLS"),
        ({"HUMTEMP_REDIS_URLS": "redis://x:1/abc"}, "HUMTEMP_REDIS_URLS"),
        ({"HUMTEMP_BUCKET_DURATION": "0"}, "HUMTEMP_BUCKET_DURATION"),
        ({"HUMTEMP_BUCKET_DURATION": "-5"}, "HUMTEMP_BUCKET_DURATION"),
        ({"HUMTEMP_BUCKET_OFFSET": "yesterday"}, "HUMTEMP_BUCKET_OFFSET"),
        ({"HUMTEMP_BUCKET_OFFSET": "2020-01-01T00:00:00"}, "HUMTEMP_BUCKET_OFFSET"),
        ({"HUMTEMP_PORT": "http"}, "HUMTEMP_PORT"),
        ({"HUMTEMP_ON_SHARD_DOWN": "ignore"}, "HUMTEMP_ON_SHARD_DOWN"),
        ({"HUMTEMP_REDIS_TIMEOUT": "nan"}, "HUMTEMP_REDIS_TIMEOUT"),
    ],
)
def test_invalid_settings_name_the_setting(env: dict[str, str], setting: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(env)
    assert err.value.setting == setting
    assert str(err.value).startswith(setting)


def test_help_documents_every_setting_once() -> None:
    serve_help = build_parser()._subparsers._group_actions[0].choices["serve"].format_help()  # type: ignore[union-attr]
    words = " ".join(serve_help.split())  # argparse wraps lines
    options = serve_help.split("options:", 1)[1]  # below the usage block
    for option in OPTIONS:
        assert words.count(f"env {option.env}") == 1, option.env
        mentions = re.findall(rf"(?<![\w-]){re.escape(option.flag)}(?![\w-])", options)
        assert len(mentions) == 1, option.flag


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["serve", "--bucket-duration", "0"], {}, "--bucket-duration"),
        (["serve", "--no-such-option"], {}, "--no-such-option"),
        (["serve"], {"HUMTEMP_REDIS_URLS": "bogus://x"}, "HUMTEMP_REDIS_URLS"),
        (["serve"], {"HUMTEMP_BUCKET_OFFSET": "nope"}, "HUMTEMP_BUCKET_OFFSET"),
    ],
)
def test_cli_exits_non_zero_with_one_line(args: list[str], env: dict[str, str], needle: str
                                          ) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "humtemp", *args], capture_output=True, text=True, timeout=30,
        env={**os.environ, **env, "HUMTEMP_PORT": "1", "PYTHONPATH": str(REPO_ROOT)},
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert needle in lines[0]


def test_cli_help_lists_settings() -> None:
    proc = subprocess.run([sys.executable, "-m", "humtemp", "--help"], capture_output=True,
                          text=True, timeout=30, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert proc.returncode == 0
    assert "HUMTEMP_REDIS_URLS" in proc.stdout and "serve" in proc.stdout


def test_settings_fields_are_the_options() -> None:
    """``Settings`` has no defaults of its own: each field is one option, filled by it."""
    assert [f.name for f in dataclasses.fields(Settings)] == [o.name for o in OPTIONS]
    defaults = load_settings({})
    for option in OPTIONS:
        expected = None if option.default is None else option.parse(option.env, option.default)
        assert getattr(defaults, option.name) == expected, option.name


def _readme_settings_table() -> dict[str, str]:
    """``{env name: default}`` from the README's table of settings."""
    text = (REPO_ROOT / "README.md").read_text()
    table = text[text.index("| variable | default | meaning |"):].split("\n\n", 1)[0]
    rows = {}
    for line in table.splitlines()[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert cells[0].strip("`") not in rows, f"two rows for {cells[0]}"
        rows[cells[0].strip("`")] = cells[1].strip("`")
    return rows


def test_readme_table_is_the_options_table() -> None:
    table = _readme_settings_table()
    assert sorted(table) == sorted(option.env for option in OPTIONS), "one row per option"
    for option in OPTIONS:
        assert table[option.env] == (option.default or "–"), option.env

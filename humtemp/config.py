"""Settings: one immutable object built from the environment and the command line.

Every setting has an environment variable ``HUMTEMP_<NAME>`` and a ``--<name>`` flag
(flags win). Invalid values raise :class:`ConfigError` naming the setting, so the CLI can
exit with one clear line before it binds a port.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

ENV_PREFIX = "HUMTEMP_"
REDIS_SCHEMES = ("redis", "rediss", "unix")


class ConfigError(ValueError):
    """A setting has an invalid value; ``setting`` names it (e.g. HUMTEMP_PORT)."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting


@dataclass(frozen=True, slots=True)
class ShardSpec:
    """One Redis shard: the ring hashes ``name``, the client connects to ``url``."""

    name: str
    url: str


def _parse_int(setting: str, raw: str, minimum: int | None = None) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(setting, f"expected an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ConfigError(setting, f"must be >= {minimum}, got {value}")
    return value


def _parse_float(setting: str, raw: str, minimum_exclusive: float | None = 0.0) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(setting, f"expected a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise ConfigError(setting, f"must be finite, got {raw!r}")
    if minimum_exclusive is not None and value <= minimum_exclusive:
        raise ConfigError(setting, f"must be > {minimum_exclusive:g}, got {raw!r}")
    return value


def _parse_offset(setting: str, raw: str) -> int:
    """ISO-8601 with a timezone, as the original service required."""
    try:
        moment = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise ConfigError(setting, f"not an ISO-8601 date-time: {raw!r}") from None
    if moment.utcoffset() is None:
        raise ConfigError(setting, f"needs a timezone, e.g. {raw.strip()}+00:00")
    return int(moment.timestamp())


def _default_shard_name(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    db = (parts.path or "/0").lstrip("/") or "0"
    return f"{parts.hostname}:{parts.port or 6379}/{db}"


def parse_shard_list(setting: str, raw: str) -> tuple[ShardSpec, ...]:
    """Parse ``[name=]url,[name=]url``; names must be unique (the ring hashes them)."""
    shards: list[ShardSpec] = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        name = ""
        url = item
        scheme_at = item.find("://")
        eq_at = item.find("=")
        if eq_at != -1 and (scheme_at == -1 or eq_at < scheme_at):
            name, url = item[:eq_at].strip(), item[eq_at + 1 :].strip()
            if not name:
                raise ConfigError(setting, f"empty shard name in {item!r}")
        parts = urlsplit(url)
        if parts.scheme not in REDIS_SCHEMES:
            raise ConfigError(
                setting, f"{url!r}: scheme must be one of redis://, rediss://, unix://"
            )
        if parts.scheme == "unix" and not parts.path:
            raise ConfigError(setting, f"{url!r}: unix:// needs a socket path")
        if parts.scheme != "unix":
            if not parts.hostname:
                raise ConfigError(setting, f"{url!r}: missing host")
            try:
                _ = parts.port
            except ValueError:
                raise ConfigError(setting, f"{url!r}: invalid port") from None
            db = (parts.path or "").lstrip("/")
            if db and not db.isdigit():
                raise ConfigError(setting, f"{url!r}: database must be a number, got {db!r}")
        shards.append(ShardSpec(name or _default_shard_name(url), url))
    if not shards:
        raise ConfigError(setting, "no shard given")
    names = [s.name for s in shards]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(setting, f"duplicate shard name(s): {', '.join(duplicates)}")
    return tuple(shards)


@dataclass(frozen=True, slots=True)
class Option:
    """Describes one setting for the environment, the CLI and ``--help``."""

    name: str
    help: str
    parse: Callable[[str, str], Any]
    default: str | None
    metavar: str = "VALUE"

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def _choice(*allowed: str) -> Callable[[str, str], str]:
    def parse(setting: str, raw: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            raise ConfigError(setting, f"must be one of {', '.join(allowed)}, got {raw!r}")
        return value

    return parse


def _text(setting: str, raw: str) -> str:
    return raw.strip()


def _port(setting: str, raw: str) -> int:
    value = _parse_int(setting, raw, minimum=0)
    if value > 65535:
        raise ConfigError(setting, f"must be <= 65535, got {value}")
    return value


def _tokens(setting: str, raw: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in raw.split(",") if t.strip())


def _bool(setting: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(setting, f"expected true or false, got {raw!r}")


OPTIONS: tuple[Option, ...] = (
    Option("host", "address to listen on", _text, "127.0.0.1", "HOST"),
    Option("port", "TCP port to listen on", _port, "8000", "PORT"),
    Option("workers", "server processes sharing the port (SO_REUSEPORT)",
           lambda s, r: _parse_int(s, r, 1), "1", "N"),
    Option("redis_urls",
           "comma-separated shards, each [name=]redis://host:port/db, rediss://... or "
           "unix:///path; the ring hashes the names (default name: host:port/db)",
           parse_shard_list, None, "URLS"),
    Option("redis_host", "single Redis host (original setting; used if REDIS_URLS is unset)",
           _text, None, "HOST"),
    Option("redis_port", "single Redis port (original setting)", _port, None, "PORT"),
    Option("redis_db", "single Redis database (original setting)",
           lambda s, r: _parse_int(s, r, 0), None, "DB"),
    Option("data_dir", "embedded mode: where local redis-server shards keep their AOF",
           _text, "./humtemp-data", "DIR"),
    Option("embedded_shards", "embedded mode: how many local redis-server shards to start",
           lambda s, r: _parse_int(s, r, 1), "2", "N"),
    Option("bucket_offset", "ISO-8601 instant bucket boundaries align to",
           _parse_offset, "1970-01-01T00:00:00+00:00", "ISO8601"),
    Option("bucket_duration", "bucket length in seconds",
           lambda s, r: _parse_int(s, r, 1), "86400", "SECONDS"),
    Option("bucket_retention", "buckets kept, including the current one",
           lambda s, r: _parse_int(s, r, 1), "2", "N"),
    Option("key_prefix", "prefix of every Redis key (lets deployments share a Redis)",
           _text, "humtemp:", "PREFIX"),
    Option("max_body_bytes", "largest accepted request body (413 above)",
           lambda s, r: _parse_int(s, r, 256), "1048576", "BYTES"),
    Option("max_batch_items", "most observations in one POST /observations",
           lambda s, r: _parse_int(s, r, 1), "10000", "N"),
    Option("max_batch_labs", "most distinct labs in one POST /observations",
           lambda s, r: _parse_int(s, r, 1), "10000", "N"),
    Option("redis_connect_timeout", "seconds to wait for a shard connection",
           _parse_float, "0.5", "SECONDS"),
    Option("redis_timeout", "seconds to wait for a shard's answer to a command",
           _parse_float, "1.5", "SECONDS"),
    Option("flush_linger", "seconds a shard's flush waits for more observations to join it",
           lambda s, r: _parse_float(s, r, None), "0", "SECONDS"),
    Option("max_pending", "observations queued per shard before answering 503",
           lambda s, r: _parse_int(s, r, 1), "50000", "N"),
    Option("read_connections",
           "read connections per shard; more concurrent reads wait for one (never an error)",
           lambda s, r: _parse_int(s, r, 1), "4", "N"),
    Option("read_cache_seconds",
           "seconds a finished /summary or /summary/detail answer is reused by identical "
           "reads (0: only reads running at the same time share one fan-out)",
           lambda s, r: _parse_float(s, r, None), "1", "SECONDS"),
    Option("read_cache_bytes",
           "largest read body kept for sharing and caching; a larger read streams "
           "through this much memory per fan-out",
           lambda s, r: _parse_int(s, r, 4096), "8388608", "BYTES"),
    Option("max_labs_per_bucket",
           "labs a bucket may hold before writes creating new labs get 429 "
           "lab_limit_reached (0: no limit)",
           lambda s, r: _parse_int(s, r, 0), "0", "N"),
    Option("on_shard_down", "writes for a down shard: reroute to the next live shard, or reject",
           _choice("reroute", "reject"), "reroute", "POLICY"),
    Option("min_live_shards", "/readyz answers 503 below this many live shards",
           lambda s, r: _parse_int(s, r, 0), "1", "N"),
    Option("probe_interval", "seconds between health probes of a down shard",
           _parse_float, "0.5", "SECONDS"),
    Option("exactly_once", "drop repeated (lab_id, timestamp) pairs within a bucket",
           _bool, "false", "BOOL"),
    Option("idempotency_ttl",
           "seconds a shard remembers an Idempotency-Key (a retry after that counts again)",
           lambda s, r: _parse_int(s, r, 1), "120", "SECONDS"),
    Option("ingest_tokens", "comma-separated bearer tokens required for writes (empty: open)",
           _tokens, "", "TOKENS"),
    Option("read_tokens", "comma-separated bearer tokens required for reads (empty: open)",
           _tokens, "", "TOKENS"),
    Option("client_timeout",
           "seconds a client may take to send a request's headers, and again its body, "
           "or stay idle between requests; then its connection is closed",
           _parse_float, "30", "SECONDS"),
    Option("shutdown_timeout", "seconds to finish in-flight requests and drain on SIGTERM",
           _parse_float, "25", "SECONDS"),
    Option("log_level", "log level", _choice("debug", "info", "warning", "error"),
           "info", "LEVEL"),
)
OPTIONS_BY_NAME = {o.name: o for o in OPTIONS}


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting humtemp reads; build with :func:`load_settings` (``load_settings({})``
    for the defaults). The fields have no defaults of their own: ``OPTIONS`` owns them,
    and the README table is checked against it (tests/unit/test_config.py)."""

    host: str
    port: int
    workers: int
    redis_urls: tuple[ShardSpec, ...] | None
    redis_host: str | None
    redis_port: int | None
    redis_db: int | None
    data_dir: str
    embedded_shards: int
    bucket_offset: int
    bucket_duration: int
    bucket_retention: int
    key_prefix: str
    max_body_bytes: int
    max_batch_items: int
    max_batch_labs: int
    redis_connect_timeout: float
    redis_timeout: float
    flush_linger: float
    max_pending: int
    read_connections: int
    read_cache_seconds: float
    read_cache_bytes: int
    max_labs_per_bucket: int
    on_shard_down: str
    min_live_shards: int
    probe_interval: float
    exactly_once: bool
    idempotency_ttl: int
    ingest_tokens: tuple[str, ...]
    read_tokens: tuple[str, ...]
    client_timeout: float
    shutdown_timeout: float
    log_level: str

    @property
    def embedded(self) -> bool:
        """No Redis configured at all: humtemp runs its own local shards."""
        return self.redis_urls is None and self.redis_host is None and self.redis_port is None

    @property
    def shard_deadline(self) -> float:
        """Longest a single shard operation may take: connect, then answer."""
        return self.redis_connect_timeout + self.redis_timeout

    def shards(self) -> tuple[ShardSpec, ...]:
        """The configured shards (not for embedded mode, whose shards are started later)."""
        if self.redis_urls is not None:
            return self.redis_urls
        host = self.redis_host or "localhost"
        port = self.redis_port or 6379
        url = f"redis://{host}:{port}/{self.redis_db or 0}"
        return (ShardSpec(_default_shard_name(url), url),)


def load_settings(
    environ: Mapping[str, str] | None = None, overrides: Mapping[str, str | None] | None = None
) -> Settings:
    """Build settings from ``environ`` (default: os.environ), then raw CLI ``overrides``."""
    environ = os.environ if environ is None else environ
    raw: dict[str, tuple[str, str]] = {}
    for option in OPTIONS:
        if option.env in environ and environ[option.env].strip() != "":
            raw[option.name] = (option.env, environ[option.env])
    for name, value in (overrides or {}).items():
        if value is not None:
            raw[name] = (OPTIONS_BY_NAME[name].flag, value)
    values: dict[str, Any] = {}
    for option in OPTIONS:
        if option.name in raw:
            setting, text = raw[option.name]
            values[option.name] = option.parse(setting, text)
        else:  # a default is text too, made a value by the option's own parser
            values[option.name] = (
                None if option.default is None else option.parse(option.env, option.default))
    settings = Settings(**values)
    if settings.min_live_shards > len(settings.redis_urls or ()) and settings.redis_urls:
        raise ConfigError(
            OPTIONS_BY_NAME["min_live_shards"].env,
            f"{settings.min_live_shards} exceeds the {len(settings.redis_urls)} configured shards",
        )
    return settings

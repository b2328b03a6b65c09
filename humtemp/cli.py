"""``humtemp`` command line: ``humtemp serve`` with a flag for every setting."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from humtemp import __version__
from humtemp.config import OPTIONS, ConfigError, load_settings

DESCRIPTION = """\
humtemp ingests temperature/humidity observations and aggregates them on write
into time buckets held in N Redis shards (consistent-hash ring over shard names).
With no Redis configured it starts its own local redis-server shards (embedded mode).

Every setting can also be given as an environment variable; flags win."""
EMBEDDED_NOTE = "HUMTEMP_REDIS_URLS unset and HUMTEMP_REDIS_HOST/PORT unset => embedded mode."


class OneLineParser(argparse.ArgumentParser):
    """Errors as one line naming the problem, not the whole usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="humtemp", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_settings_table(),
    )
    parser.add_argument("--version", action="version", version=f"humtemp {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    # Each setting once: as its flag, with env variable and default in the flag's help
    # (`humtemp --help` shows the same settings as a table, by environment variable).
    serve = commands.add_parser(
        "serve", help="run the HTTP service",
        description="Run the HTTP service. Every flag can also be given as an environment "
                    "variable; flags win.", epilog=EMBEDDED_NOTE,
    )
    for option in OPTIONS:
        default = f" (default: {option.default})" if option.default is not None else ""
        serve.add_argument(
            option.flag, dest=option.name, metavar=option.metavar, default=None,
            help=f"{option.help}; env {option.env}{default}",
        )
    return parser


def _settings_table() -> str:
    lines = ["settings (environment variable / flag, default):"]
    for option in OPTIONS:
        default = option.default if option.default is not None else "-"
        lines.append(f"  {option.env:<32} {option.flag:<26} {default}")
        lines.append(f"      {option.help}")
    lines.append("")
    lines.append(f"  {EMBEDDED_NOTE}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "serve":
        parser.print_help()
        return 2
    overrides = {o.name: getattr(args, o.name) for o in OPTIONS}
    try:
        settings = load_settings(overrides=overrides)
    except ConfigError as exc:
        print(f"humtemp: invalid configuration: {exc}", file=sys.stderr)
        return 2
    from humtemp.server import run

    return run(settings)


if __name__ == "__main__":
    sys.exit(main())

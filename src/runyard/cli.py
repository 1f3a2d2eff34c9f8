"""The ``runyard`` command."""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Sequence

import trio

from . import __version__, client_cli, logs
from .config import ConfigError, Settings, load
from .errors import StoreUnusable

_D = Settings()  # the defaults, for help texts


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help=f"run the server (SQLite, demo agents, {_D.host}:{_D.port})")
    p.add_argument("--host", help=f"address to bind (default {_D.host})")
    p.add_argument("--port", type=int, help=f"TCP port (default {_D.port}; 0 picks a free one)")
    p.add_argument(
        "--db", help=f"SQLite file or postgresql:// URL, runyard[postgres] (default {_D.db})"
    )
    p.add_argument(
        "--bus", help="redis:// or unix:// URL of a Redis for replicas' live events, runyard[redis]"
    )
    p.add_argument("--config", help="a runyard.toml (default ./runyard.toml if present)")
    p.add_argument("--durability", choices=["events", "final"], help="what is committed when")
    p.add_argument("--grace", type=float, help="seconds runs may finish at shutdown")
    p.add_argument("--no-demo-agents", action="store_true", help="serve only configured agents")
    p.add_argument("--langgraph-json", help="serve the graphs of this langgraph.json")
    p.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback --host without tokens (anyone can use it)",
    )
    p.add_argument(
        "--log-format", choices=logs.FORMATS, help=f"how log lines look (default {_D.log_format})"
    )
    p.add_argument(
        "--log-level", choices=logs.LEVELS, help=f"the least level logged (default {_D.log_level})"
    )
    p.add_argument("--check", action="store_true", help="validate the configuration and exit")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runyard",
        description="Run long-running agent runs detached from their clients.",
        epilog=client_cli.EXIT_HELP,
    )
    parser.add_argument("--version", action="version", version=f"runyard {__version__}")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="runyard COMMAND -h tells more"
    )
    _serve_parser(sub)
    client_cli.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    return client_cli.run_command(args)


def _serve(args: argparse.Namespace) -> int:
    from .server import check_bus

    overrides = {
        "host": args.host,
        "port": args.port,
        "db": args.db,
        "bus": args.bus,
        "durability": args.durability,
        "grace": args.grace,
        "demo_agents": False if args.no_demo_agents else None,
        "insecure": True if args.insecure else None,
        "langgraph_json": args.langgraph_json,
        "log_format": args.log_format,
        "log_level": args.log_level,
    }
    try:
        settings = load(args.config, overrides=overrides)
        settings.registry()
        settings.check_exposure()
        check_bus(settings)
    except ConfigError as exc:
        print(f"runyard: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print(f"runyard: configuration is valid ({len(settings.registry().names())} agents)")
        return 0
    logs.configure(settings.log_format, settings.log_level)
    try:
        status = trio.run(_run, settings)
    except StoreUnusable as exc:
        print(f"runyard: {exc.detail}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"runyard: cannot listen on {settings.host}:{settings.port} ({exc.strerror})",
              file=sys.stderr)  # fmt: skip
        return 1
    return status


async def _run(settings: Settings) -> int:
    from .server import serve

    tune_gc()
    return await serve(settings, handle_signals=True)


# Container allocations between young collections (CPython's default is 700).
GC_YOUNG_THRESHOLD = 10_000


def tune_gc() -> None:
    """Keep the cycle collector off the request path of a server process.

    Everything alive at start-up (modules, classes, the app) is moved out of
    the collector's reach, and young collections run 14x less often: a burst
    of requests allocates many short-lived objects, and with the defaults the
    collections it triggers (full ones included) took about a quarter of the
    server's CPU in workload 3; tuned, about a tenth (docs/benchmarks.md).
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


if __name__ == "__main__":
    raise SystemExit(main())

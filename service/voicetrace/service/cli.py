"""`voicetrace` command line: serve, token, emulator, demo, dev."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from voicetrace.service.langfuse_cli import add_langfuse_parser
from voicetrace.service.settings import Settings
from voicetrace.service.voice.tools import ToolRegistry


def _serve(args: argparse.Namespace) -> int:
    from voicetrace.service.app import create_app
    from voicetrace.service.server import VoiceServer, uvicorn_config
    from voicetrace.telemetry.targets import plan_exports

    overrides = {
        k: v
        for k, v in {"host": args.host, "port": args.port, "log_level": args.log_level}.items()
        if v is not None
    }
    settings = Settings(**overrides)
    settings.check_servable()
    # A bad exporter variable (an unknown protocol, grpc not installed…) is a message here,
    # before uvicorn starts, not a failed application startup.
    plan_exports(os.environ)
    tools = load_tools(args.tools, settings.tool_timeout_s) if args.tools else None
    app = create_app(settings, tools=tools)
    config = uvicorn_config(
        app,
        settings.host,
        settings.port,
        settings.log_level,
        settings.max_frame_bytes,
        settings=settings,
    )
    VoiceServer(config, app, grace_s=settings.shutdown_grace_s).run()
    return 0


def load_tools(spec: str, timeout_s: float) -> ToolRegistry:
    """`module:factory` → the `ToolRegistry` that `factory(timeout_s=…)` returns."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"--tools takes MODULE:FACTORY, got {spec!r}")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"--tools {spec}: {exc}") from None
    registry = factory(timeout_s=timeout_s)
    if not isinstance(registry, ToolRegistry):
        raise ValueError(f"--tools {spec} returned {type(registry).__name__}, not a ToolRegistry")
    return registry


def _token(args: argparse.Namespace) -> int:
    from voicetrace.service.api.auth import mint_token

    settings = Settings()
    ttl = args.ttl if args.ttl is not None else settings.jwt_ttl_s
    secret = settings.jwt_secret.get_secret_value()
    print(mint_token(args.user, secret, ttl_s=ttl, roles=args.role or ()))
    return 0


def _emulator(args: argparse.Namespace) -> int:
    from voicetrace.emulator import run_emulator_cli

    run_emulator_cli(args.port, args.scenario)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from voicetrace.demo.run import run_demo

    return asyncio.run(run_demo(verbose=not args.quiet))


def _dev(args: argparse.Namespace) -> int:
    from voicetrace.emulator import Scenario
    from voicetrace.service.dev import run_dev

    scenario = Scenario.load(args.scenario) if args.scenario else None
    return asyncio.run(run_dev(args.host, args.port, scenario=scenario, user=args.user))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voicetrace", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the voice service (uvicorn)")
    serve.add_argument("--host", help="bind address (default from VOICETRACE_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default from VOICETRACE_PORT or 8000)")
    serve.add_argument("--log-level", choices=["critical", "error", "warning", "info", "debug"])
    serve.add_argument(
        "--tools",
        metavar="MODULE:FACTORY",
        help="tools the model may call, e.g. voicetrace.demo.tools:demo_registry (default: none)",
    )
    serve.set_defaults(func=_serve)

    token = sub.add_parser("token", help="mint a development bearer token")
    token.add_argument("--user", required=True, help="user id (the token's subject)")
    token.add_argument("--ttl", type=int, help="lifetime in seconds (default VOICETRACE_JWT_TTL_S)")
    token.add_argument(
        "--role", action="append", help="a role claim, e.g. admin (all costs, set budgets)"
    )
    token.set_defaults(func=_token)

    emulator = sub.add_parser("emulator", help="run the local Gemini Live emulator")
    emulator.add_argument("--port", type=int, default=0, help="port (0 picks a free one)")
    emulator.add_argument("--scenario", help="JSON scenario file (what spoken turns say, …)")
    emulator.set_defaults(func=_emulator)

    demo = sub.add_parser("demo", help="offline demo: emulator + service + a scripted conversation")
    demo.add_argument("--quiet", action="store_true", help="print only the trace tree")
    demo.set_defaults(func=_demo)

    dev = sub.add_parser("dev", help="emulator + service + the browser client: prints a login URL")
    dev.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    dev.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks one)")
    dev.add_argument("--user", default="dev-user", help="the login token's user id")
    dev.add_argument("--scenario", help="emulator scenario JSON (what spoken turns say, …)")
    dev.set_defaults(func=_dev)
    add_langfuse_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command: Callable[[argparse.Namespace], int] = args.func
    try:
        return command(args)
    except KeyboardInterrupt:
        return 130
    except ValueError as exc:  # settings validation and bad arguments: a message, not a trace
        print(f"voicetrace: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""`voicetrace langfuse sync-models`: register the priced Live models as Langfuse model definitions.

Credentials come from the standard Langfuse variables (`LANGFUSE_PUBLIC_KEY`,
`LANGFUSE_SECRET_KEY`, `LANGFUSE_HOST` or `LANGFUSE_BASE_URL`), the price file from
`VOICETRACE_PRICES_FILE` (Settings) or `--prices`. Secrets are never printed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from voicetrace.telemetry.langfuse_export import LANGFUSE_DEFAULT_HOST
from voicetrace.telemetry.langfuse_models import api_upsert, model_definitions, sync_models
from voicetrace.telemetry.prices import PriceTable


def add_langfuse_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `langfuse sync-models` to the `voicetrace` command (called from cli.build_parser)."""
    langfuse = sub.add_parser("langfuse", help="Langfuse helpers")
    commands = langfuse.add_subparsers(dest="langfuse_command", required=True)
    sync = commands.add_parser(
        "sync-models", help="register the price file's models as Langfuse model definitions"
    )
    sync.add_argument("--prices", type=Path, help="price file (default VOICETRACE_PRICES_FILE)")
    sync.add_argument("--dry-run", action="store_true", help="print, do not send")
    sync.set_defaults(func=_sync_models)


def _sync_models(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    prices_file = args.prices
    if prices_file is None:
        from voicetrace.service.settings import Settings

        prices_file = Settings().prices_file
    table = PriceTable.load(prices_file)  # a bad file: ValueError → `voicetrace: …`, exit 2
    if args.dry_run:
        for d in model_definitions(table):
            print(f"{d.id}\t{d.match_pattern}\t{len(d.prices)} prices")
        return 0
    public, secret = env.get("LANGFUSE_PUBLIC_KEY"), env.get("LANGFUSE_SECRET_KEY")
    if not public or not secret:
        raise ValueError("set LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY to sync models")
    host = env.get("LANGFUSE_HOST") or env.get("LANGFUSE_BASE_URL") or LANGFUSE_DEFAULT_HOST
    try:
        upsert = api_upsert(public, secret, host)
    except ImportError:
        raise ValueError(
            "sync-models needs the langfuse extra: pip install 'voicetrace[langfuse]'"
        ) from None
    try:
        synced = sync_models(table, upsert)
    except Exception as exc:  # the API's or the network's error, without any credential
        status = getattr(exc, "status_code", None)
        why = f"HTTP {status}: {getattr(exc, 'body', '')}" if status else type(exc).__name__
        print(
            f"voicetrace: Langfuse refused the model definitions at {host} ({why})", file=sys.stderr
        )
        return 1
    for d in synced:
        print(f"synced {d.model_name} → {d.id}")
    print(f"{len(synced)} model definitions registered at {host}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run only the `langfuse` commands (tests; `python -m voicetrace.service.langfuse_cli`)."""
    parser = argparse.ArgumentParser(prog="voicetrace")
    add_langfuse_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ValueError as exc:
        print(f"voicetrace: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
